/* Socket I/O for plain sockets beside libevent's bufferevents: fewer system calls, and splice. */
#ifndef SGW_GATEWAY_IO_H
#define SGW_GATEWAY_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>

struct event;
struct event_base;
struct evbuffer_cb_entry;

/* Who reads a bufferevent's socket. libevent 2.1 asks FIONREAD before every
 * read (a proxied keep-alive request then costs six system calls, not four)
 * and reads at most 4 KiB; for a plain socket the gateway reads itself, with one
 * recv() into the bufferevent's input, and runs the bufferevent's own read
 * and event callbacks as libevent would. A TLS bufferevent (plain false)
 * keeps libevent's reads: every call below then acts on the bufferevent. */
typedef struct gw_io_reader {
    struct bufferevent *bev;
    /* bev's socket and buffers, kept beside the reader's state: a request
     * touches fewer cache lines of the bufferevent (with a thousand
     * connections, each such line is a miss). */
    int fd;
    struct evbuffer *input;
    struct evbuffer *output;
    /* The callbacks a read runs; on_read NULL: bev's, asked at every read
     * (libevent's TLS changes those of the socket under it as it goes). */
    bufferevent_data_cb on_read;
    bufferevent_event_cb on_event;
    void *callback_arg;
    struct event *event;                /* EV_READ | EV_PERSIST; NULL: libevent reads */
    struct evbuffer_cb_entry *on_drain; /* resumes reading below the high watermark */
    size_t high;                        /* reading pauses while the input holds this; 0: never */
    bool wanted;                        /* the owner enabled reading */
    bool added;                         /* event is in the loop */
    bool filled;                        /* the last read filled its space: more may wait */
} gw_io_reader_t;

/* Sets up reader for bev (reading disabled, no high watermark); returns 0, or
 * -1 when memory is exhausted. reader must not move afterwards. */
int gw_io_reader_init(gw_io_reader_t *reader, struct bufferevent *bev, bool plain);

/* Reads run these (with bev) instead of bev's callbacks, sparing a look at
 * the bufferevent per read; for an owner whose callbacks never change. */
void gw_io_reader_callbacks(gw_io_reader_t *reader, bufferevent_data_cb on_read,
                            bufferevent_event_cb on_event, void *arg);

/* Releases what init took; call before freeing the bufferevent. Idempotent. */
void gw_io_reader_free(gw_io_reader_t *reader);

/* Reading on or off (bufferevent_enable/disable of EV_READ). End of stream or
 * an error turns it off, as libevent does, before the event callback runs. */
void gw_io_read_enable(gw_io_reader_t *reader);
void gw_io_read_disable(gw_io_reader_t *reader);

/* The input's high watermark (0: none): reading pauses while the input holds
 * that much and resumes when it is drained below. */
void gw_io_read_watermark(gw_io_reader_t *reader, size_t high);

/* After a read callback: reads more of what a plain socket holds, until the
 * input holds limit bytes or the socket is drained, so a large body moves in
 * few calls of up to 64 KiB. Returns the bytes read; an end of file or an
 * error is left for the next readiness to report. */
size_t gw_io_read_more(gw_io_reader_t *reader, size_t limit);

/* Writes a plain socket bufferevent's output (reader's bev) now, and enables
 * EV_WRITE only when the socket cannot take it all: libevent would otherwise
 * add and remove an EPOLLOUT registration and wait a loop turn for every
 * response. */
void gw_io_flush(gw_io_reader_t *reader);

/* gw_io_flush for the last bytes before the socket is closed or shut for
 * writing: they are sent with MSG_MORE, so the kernel holds the short tail
 * back and the close's FIN goes out in the same segment: a segment fewer,
 * and the client ACKs data and FIN at once. The caller must close or shut the
 * socket, or write more without MSG_MORE, or the tail waits. */
void gw_io_flush_last(gw_io_reader_t *reader);

/* A plain bufferevent's write callback ran: with its output empty, EV_WRITE
 * goes off again so the next flush writes directly. */
void gw_io_written(gw_io_reader_t *reader, bool plain);

/* The socket bufferevent under a TLS bufferevent (libevent's OpenSSL
 * filter). libevent's TLS over a socket reads each record with two read()s
 * and adds and removes an EPOLLOUT registration around every response; over
 * the filter, the gateway reads the socket itself (one recv per readiness,
 * records are decrypted from memory) and sends what TLS wrote once the
 * current callbacks are done, so a response costs one send. */
typedef struct gw_io_socket {
    gw_io_reader_t reader;               /* reads the socket; runs the filter's callbacks */
    struct event *flush;                 /* activated when the output changes */
    struct evbuffer_cb_entry *on_output; /* watches the output */
    size_t high;                         /* write and read-ahead bound */
    bool flush_scheduled;
    void (*drained)(void *arg);          /* called once when the output is sent, if set */
    void *drained_arg;
} gw_io_socket_t;

/* Takes over underlying, the socket bufferevent a TLS filter was just made
 * over: libevent's own reads and writes of it stop, the gateway's start. TLS
 * writes at most high bytes ahead of the socket, and at most high encrypted
 * bytes are read ahead. Returns 0, or -1 when memory is exhausted.
 * socket_io must not move afterwards. */
int gw_io_socket_init(gw_io_socket_t *socket_io, struct bufferevent *underlying, size_t high);

/* Sends what TLS wrote and the socket takes at once (a last alert or
 * close_notify), then releases what init took; call before freeing the
 * filter. Idempotent (and harmless on a zeroed socket). */
void gw_io_socket_free(gw_io_socket_t *socket_io);

/* Sends what TLS wrote as far as the socket takes it now, calling nothing:
 * the flush already scheduled does the rest (EV_WRITE, telling TLS). Does
 * nothing on a socket not initialised (a plain connection's). */
void gw_io_socket_send(gw_io_socket_t *socket_io);

/* When TLS output still waits for the socket: arranges for drained(arg) to be
 * called from the loop once it is sent, and returns true. Returns false when
 * nothing waits, or the socket was not initialised (drained is not called). */
bool gw_io_socket_when_drained(gw_io_socket_t *socket_io, void (*drained)(void *arg),
                               void *arg);

/* Moves a known number of bytes from one plain socket to another through a
 * pipe with splice(2): the bytes never enter user space (a large sized
 * response body). Backpressure is the pipe: reading the source pauses while
 * the destination cannot take what the pipe holds. */
typedef struct gw_io_splice gw_io_splice_t;

/* Called once when the move ends: error 0 when every byte reached the
 * destination's kernel buffer, else an errno (EPIPE: the source ended early).
 * The callback frees the splice with gw_io_splice_free. */
typedef void (*gw_io_splice_done_cb)(gw_io_splice_t *splice, int error, void *arg);

/* Starts moving length bytes from socket from to socket to on base; returns
 * the splice, or NULL (errno set; nothing moved) when no pipe or event can be
 * had. done is never called from inside this call. */
gw_io_splice_t *gw_io_splice_start(struct event_base *base, int from, int to, uint64_t length,
                                   gw_io_splice_done_cb done, void *arg);

/* The bytes delivered to the destination so far. */
uint64_t gw_io_splice_moved(const gw_io_splice_t *splice);

/* Stops and frees (pipe and events). NULL is allowed. */
void gw_io_splice_free(gw_io_splice_t *splice);

#endif
