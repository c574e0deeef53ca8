/* Socket I/O: plain sockets on their own buffers, the socket under TLS, and splice. */
#ifndef SGW_GATEWAY_IO_H
#define SGW_GATEWAY_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>

struct event;
struct event_base;
struct evbuffer_cb_entry;

/* Where a plain socket's read stands in this thread's batch. */
typedef enum {
    GW_IO_READ_NONE,   /* not in it */
    GW_IO_READ_QUEUED, /* readable: waits for the batch's next round */
    GW_IO_READ_MADE,   /* read in a round: its callbacks are due */
} gw_io_read_batch_t;

/* Who reads and writes a socket, in one of three ways:
 * - a plain socket (gw_io_plain_init): the reader owns it, its two buffers
 *   and its two events, and calls its owner's callbacks (with bev NULL).
 *   libevent's socket bufferevent would ask FIONREAD before every read (a
 *   proxied keep-alive request would cost six system calls, not four), read
 *   at most 4 KiB, and run its output's callback at every change of it;
 * - the socket bufferevent under a TLS filter (gw_io_reader_init, reads_socket
 *   true): the gateway reads into bev's input with one recv() and runs bev's
 *   read and event callbacks as libevent would; libevent writes what the
 *   direct send leaves;
 * - a TLS bufferevent (reads_socket false): libevent reads and writes; every call
 *   below then acts on the bufferevent. */
typedef struct gw_io_reader {
    struct bufferevent *bev; /* NULL: a plain socket the reader owns */
    /* bev's socket and buffers, kept beside the reader's state: a request
     * touches fewer cache lines of the bufferevent (with a thousand
     * connections, each such line is a miss). */
    int fd;
    struct evbuffer *input;
    struct evbuffer *output;
    /* The callbacks a read runs; on_read NULL: bev's, asked at every read
     * (libevent's TLS changes those of the socket under it as it goes). */
    bufferevent_data_cb on_read;
    bufferevent_data_cb on_write; /* a plain socket's: the output drained to write_low */
    bufferevent_event_cb on_event;
    void *callback_arg;
    struct event *event;                /* EV_READ | EV_PERSIST; NULL: libevent reads */
    struct event *write_event;          /* a plain socket's EV_WRITE | EV_PERSIST, and its dial's */
    struct evbuffer_cb_entry *on_drain; /* while reading waits for room: resumes it */
    size_t high;                        /* reading pauses while the input holds this; 0: never */
    size_t write_low;                   /* a plain socket's on_write mark */
    int dial_error;                     /* a plain socket's connect() failed at once with it */
    bool wanted;                        /* the owner enabled reading */
    bool added;                         /* event is in the loop */
    bool filled;                        /* the last read filled its space: more may wait */
    bool replay;                        /* a plain socket's next read event only runs on_read */
    bool writing;                       /* write_event is in the loop */
    bool dialling;                      /* a plain socket's dial is under way */
    bool queued;                        /* a plain socket's flush waits for the batch */
    unsigned char read_batch;           /* gw_io_read_batch_t */
    bool held;                          /* the batch read bytes while reading was off */
    unsigned read_slot;                 /* the batched read's entry and landing buffer */
    TAILQ_ENTRY(gw_io_reader) batch_link; /* in the batch's queue of sends while queued */
    TAILQ_ENTRY(gw_io_reader) read_link;  /* in the batch's reads or deliveries */
} gw_io_reader_t;

/* Takes over fd, a connected or dialling plain socket: its buffers and events
 * (reading disabled, no high watermark). Returns 0, or -1 when memory is
 * exhausted (fd is then closed). reader must not move afterwards. */
int gw_io_plain_init(gw_io_reader_t *reader, struct event_base *base, int fd);

/* Starts a non-blocking connect of a plain socket to address. Its outcome
 * reaches on_event from the loop, never from this call: BEV_EVENT_CONNECTED,
 * BEV_EVENT_ERROR (errno says why) or, after timeout_ms, BEV_EVENT_TIMEOUT. */
void gw_io_plain_connect(gw_io_reader_t *reader, const struct sockaddr *address,
                         socklen_t address_length, uint64_t timeout_ms);

/* Frees a plain socket's buffers and events, and closes it unless
 * keep_socket (the caller took the socket, and the unread input first).
 * Idempotent. */
void gw_io_plain_free(gw_io_reader_t *reader, bool keep_socket);

/* A plain socket that idles (a pooled sandbox connection) gives its two
 * buffers, both empty, to the thread's stock, and its next use takes the
 * stock's: with thousands of idle sockets each one's own are cold, where the
 * stock's were in use a moment ago. A readiness while parked takes buffers
 * from the stock and reads as usual (ENOMEM to on_event when there are none
 * to take); nothing but that, gw_io_plain_unpark and gw_io_plain_free may
 * happen to a parked socket. Returns true if parked; false, changing
 * nothing, when bytes, a drain callback, a batched read or send, or a dial
 * are pending. */
bool gw_io_plain_park(gw_io_reader_t *reader);

/* Gives a parked socket buffers again (none to give one not parked);
 * returns 0, or -1 when memory is exhausted (then only gw_io_plain_free may
 * follow). */
int gw_io_plain_unpark(gw_io_reader_t *reader);

/* Frees the calling thread's stock of buffers: when its loop is done. */
void gw_io_stock_clear(void);

/* A plain socket's on_write runs once its output drained to low bytes. */
static inline void gw_io_write_low(gw_io_reader_t *reader, size_t low) { reader->write_low = low; }

/* Sets up reader for bev (reading disabled, no high watermark); returns 0, or
 * -1 when memory is exhausted. reader must not move afterwards. */
int gw_io_reader_init(gw_io_reader_t *reader, struct bufferevent *bev, bool reads_socket);

/* Reads run these instead of bev's callbacks, sparing a look at the
 * bufferevent per read; for an owner whose callbacks never change. A plain
 * socket's writes run on_write. */
void gw_io_reader_callbacks(gw_io_reader_t *reader, bufferevent_data_cb on_read,
                            bufferevent_data_cb on_write, bufferevent_event_cb on_event, void *arg);

/* Releases what gw_io_reader_init took; call before freeing the bufferevent.
 * Idempotent. */
void gw_io_reader_free(gw_io_reader_t *reader);

/* on_read runs from the loop for the bytes already in the input. */
void gw_io_read_again(gw_io_reader_t *reader);

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

/* Writes the output now, and waits for EV_WRITE only when the socket cannot
 * take it all (libevent's bufferevent would add and remove an EPOLLOUT
 * registration and wait a loop turn for every response). A dialling plain
 * socket writes once connected. */
void gw_io_flush(gw_io_reader_t *reader);

/* gw_io_flush, for a caller that does not look at the output again in this
 * loop turn: on a thread with a batch (gw_io_batch_start), a plain socket's
 * output of at most 64 KiB is sent at the end of the turn, with the turn's
 * other sends. A flush, free or shutdown of the socket before then sends it
 * first. */
void gw_io_flush_soon(gw_io_reader_t *reader);

/* Sends now what gw_io_flush_soon left for the batch: before the socket is
 * written by other means (splice). */
void gw_io_send_queued(gw_io_reader_t *reader);

/* Shuts a plain socket for writing, after what its output holds for the
 * batch. */
void gw_io_shutdown_write(gw_io_reader_t *reader);

/* The reads and sends of this thread's plain sockets are batched: a loop
 * turn's readiness callbacks and flushes queue them, and after the turn's
 * callbacks one io_uring_enter(2) makes the reads (each a non-blocking recv
 * into a landing buffer of the batch), the owners' callbacks run, and one more
 * makes the sends they queued (each a non-blocking sendmsg). Every operation
 * is done before its call returns, as the system call would be. On this
 * machine a system call costs about 0.9 microseconds of entry and exit alone,
 * a quarter of a proxied request's time in the kernel. A read that fills its
 * buffer (a large body) is followed by reads made at once, and only
 * gw_io_flush_soon's sends wait for the batch.
 * Returns 0, or -1 with errno set (io_uring not allowed, or no memory):
 * reads and sends are then one system call each, as without a batch. Call on
 * the loop's thread. */
int gw_io_batch_start(struct event_base *base);

/* Ends this thread's batch (sending what it holds first). Idempotent. */
void gw_io_batch_stop(void);

/* gw_io_flush for the last bytes before the socket is closed or shut for
 * writing: they are sent with MSG_MORE, so the kernel holds the short tail
 * back and the close's FIN goes out in the same segment: a segment fewer,
 * and the client ACKs data and FIN at once. The caller must close or shut the
 * socket, or write more without MSG_MORE, or the tail waits. */
void gw_io_flush_last(gw_io_reader_t *reader);

/* The write callback of the socket bufferevent under TLS ran: with its output
 * empty, EV_WRITE goes off again so the next flush writes directly. */
void gw_io_written(gw_io_reader_t *reader);

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
