/* A byte stream to a client or a sandbox behind one table of operations: a plain socket or TLS. */
#ifndef SGW_GATEWAY_TRANSPORT_H
#define SGW_GATEWAY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "gateway/io.h"

struct event_base;
struct tls_context;

/* What happened to a stream besides bytes arriving or leaving. */
typedef enum gw_transport_event {
    GW_TRANSPORT_CONNECTED, /* a dial completed */
    GW_TRANSPORT_EOF,       /* the peer ended its sending side */
    GW_TRANSPORT_ERROR,     /* reset or another error (reading stops); errno says which */
    GW_TRANSPORT_TIMEOUT,   /* a dial outlasted its timeout */
} gw_transport_event_t;

/* The owner's side: called from the event loop; each may free the owner and
 * the transport (nothing of either is touched after the call). */
typedef struct gw_transport_handler {
    void (*readable)(void *owner);                          /* the input grew */
    void (*writable)(void *owner);                          /* the output drained to its low mark */
    void (*event)(void *owner, gw_transport_event_t event); /* see gw_transport_event_t */
} gw_transport_handler_t;

/* What a kind of stream can do; callers ask these, never whether it is TLS. */
enum {
    /* Its output is the socket's: once empty, every byte is in the kernel, the
     * last bytes can carry the FIN, and a body can move to its fd by splice. */
    GW_TRANSPORT_RAW = 1 << 0,
    /* It reads on after the peer ended its side, and ends its own alone. */
    GW_TRANSPORT_HALF_CLOSE = 1 << 1,
};

typedef struct gw_transport gw_transport_t;

/* One kind of stream (plain, TLS). */
typedef struct gw_transport_ops {
    const char *name;
    unsigned features;
    /* Gathers what is written until flush, so a response leaves in as few
     * records as it can (TLS seals every write it is given apart). */
    void (*hold)(gw_transport_t *transport);
    /* Writes the output now, as far as the peer takes it; the rest goes as it
     * drains. last: the stream is closed or shut after these bytes. */
    void (*flush)(gw_transport_t *transport, bool last);
    /* Ends the sending side (FIN, or TLS close_notify), the output being empty. */
    void (*shutdown_write)(gw_transport_t *transport);
    /* When bytes wait below the output (TLS records not in the kernel yet):
     * calls drained(arg) from the loop once they are sent, and returns true. */
    bool (*when_drained)(gw_transport_t *transport, void (*drained)(void *arg), void *arg);
    /* Releases everything; the socket is closed. */
    void (*close)(gw_transport_t *transport);
} gw_transport_ops_t;

struct gw_transport {
    const gw_transport_ops_t *ops;
    struct bufferevent *bev; /* TLS: whose input and output the owner reads and writes */
    gw_io_reader_t reader;   /* plain: owns the socket; TLS: reads bev (gateway/io.h) */
    gw_io_socket_t socket;   /* TLS: the socket under bev */
    const gw_transport_handler_t *handler;
    void *owner;
    size_t write_low; /* TLS: bev's, set only when it changes (gw_transport_write_low) */
    bool open;        /* until gw_transport_close */
};

/* Takes over an accepted socket as a plain stream; returns 0, or -1 (fd is
 * closed) when memory is exhausted. transport must not move afterwards. */
int gw_transport_accept(gw_transport_t *transport, struct event_base *base, int fd);

/* Starts a non-blocking dial of address (its port set), the outcome reported
 * as GW_TRANSPORT_CONNECTED, ERROR or TIMEOUT (after timeout_ms); returns 0,
 * or -1 with errno set. */
int gw_transport_dial(gw_transport_t *transport, struct event_base *base,
                      const struct sockaddr *address, socklen_t address_length,
                      uint64_t timeout_ms);

/* Turns a plain stream into TLS terminated over its socket (bytes already
 * read, after a PROXY header, feed the handshake). Returns 0, or -1 when
 * memory is exhausted (the stream is then closed). */
int gw_transport_start_tls(gw_transport_t *transport, struct tls_context *context);

/* Who hears of the stream from now on. */
void gw_transport_set_handler(gw_transport_t *transport, const gw_transport_handler_t *handler,
                              void *owner);

/* The input the owner reads, the output it writes. */
static inline struct evbuffer *gw_transport_input(const gw_transport_t *transport) {
    return transport->reader.input;
}
static inline struct evbuffer *gw_transport_output(const gw_transport_t *transport) {
    return transport->reader.output;
}

/* An idle plain stream parks its empty buffers (gw_io_plain_park); true if
 * it did. Until unparked, only the handler's readable and event calls (a
 * readiness unparks it), and gw_transport_close, may happen. */
static inline bool gw_transport_park(gw_transport_t *transport) {
    return gw_io_plain_park(&transport->reader); /* a TLS stream's reader has its bev: never */
}

/* A parked stream's buffers back (nothing to do for one not parked);
 * returns 0, or -1 when memory is exhausted (the stream must be closed). */
static inline int gw_transport_unpark(gw_transport_t *transport) {
    return gw_io_plain_unpark(&transport->reader);
}

/* True if the stream's kind has every feature in features. */
static inline bool gw_transport_can(const gw_transport_t *transport, unsigned features) {
    return (transport->ops->features & features) == features;
}

/* Reading on or off; an end of stream or an error turns it off. */
static inline void gw_transport_read(gw_transport_t *transport, bool on) {
    if (on)
        gw_io_read_enable(&transport->reader);
    else
        gw_io_read_disable(&transport->reader);
}

/* Reading pauses while the input holds high bytes (0: never). */
void gw_transport_read_limit(gw_transport_t *transport, size_t high);

/* After a readable call: reads on while the socket holds bytes and the input
 * less than limit, so a large body moves in few calls. */
void gw_transport_read_more(gw_transport_t *transport, size_t limit);

/* readable is called from the loop, for bytes already in the input. */
void gw_transport_read_again(gw_transport_t *transport);

/* writable is called once the output drained to low bytes (0: empty). */
static inline void gw_transport_write_low(gw_transport_t *transport, size_t low) {
    if (transport->bev == NULL) {
        gw_io_write_low(&transport->reader, low);
        return;
    }
    if (transport->write_low != low) {
        transport->write_low = low;
        bufferevent_setwatermark(transport->bev, EV_WRITE, low, 0);
    }
}

static inline void gw_transport_hold(gw_transport_t *transport) { transport->ops->hold(transport); }
static inline void gw_transport_flush(gw_transport_t *transport, bool last) {
    transport->ops->flush(transport, last);
}
/* gw_transport_flush(transport, false) for a caller that does not look at the
 * output again in this loop turn: a plain stream's bytes may leave with the
 * turn's other sends (gw_io_flush_soon). */
static inline void gw_transport_flush_soon(gw_transport_t *transport) {
    if (transport->bev == NULL)
        gw_io_flush_soon(&transport->reader);
    else
        transport->ops->flush(transport, false);
}
static inline void gw_transport_shutdown_write(gw_transport_t *transport) {
    transport->ops->shutdown_write(transport);
}
static inline bool gw_transport_when_drained(gw_transport_t *transport, void (*drained)(void *arg),
                                             void *arg) {
    return transport->ops->when_drained(transport, drained, arg);
}

/* True if the TLS handshake agreed on HTTP/2 by ALPN (never for a plain stream). */
bool gw_transport_alpn_h2(const gw_transport_t *transport);

/* The socket, for splice (GW_TRANSPORT_RAW streams) or options; what a plain
 * stream's flush left for the batch is sent first, so that bytes written to
 * the socket directly come after it. */
int gw_transport_fd(gw_transport_t *transport);

/* Closes and releases the stream. Idempotent. */
void gw_transport_close(gw_transport_t *transport);

#endif
