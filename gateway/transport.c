/* A byte stream to a client or a sandbox behind one table of operations: a plain socket or TLS. */
#include "gateway/transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>

#include "tls/tls.h"

/* Encrypted bytes a TLS stream reads ahead, and writes ahead of its socket. */
enum { GW_TRANSPORT_TLS_SOCKET_HIGH = 64 * 1024 };
/* The most plaintext one TLS record carries (RFC 8446 §5.1). */
enum { GW_TRANSPORT_TLS_RECORD = 16 * 1024 };

/* ---- libevent's callbacks, passed on to the owner ---- */

static void gw_transport_on_read(struct bufferevent *bev, void *arg) {
    (void)bev;
    gw_transport_t *transport = arg;
    transport->handler->readable(transport->owner);
}

static void gw_transport_on_write(struct bufferevent *bev, void *arg) {
    (void)bev;
    gw_transport_t *transport = arg;
    transport->handler->writable(transport->owner);
}

static void gw_transport_on_event(struct bufferevent *bev, short events, void *arg) {
    (void)bev;
    gw_transport_t *transport = arg;
    gw_transport_event_t event;
    if (events & BEV_EVENT_CONNECTED) {
        /* A TLS handshake completing is no news to the owner. */
        if (!gw_transport_can(transport, GW_TRANSPORT_RAW))
            return;
        event = GW_TRANSPORT_CONNECTED;
    } else if (events & BEV_EVENT_TIMEOUT) {
        event = GW_TRANSPORT_TIMEOUT;
    } else if (events & BEV_EVENT_EOF) {
        event = GW_TRANSPORT_EOF;
    } else {
        event = GW_TRANSPORT_ERROR;
    }
    transport->handler->event(transport->owner, event);
}

/* ---- plain sockets ---- */

static void gw_plain_hold(gw_transport_t *transport) { (void)transport; }

static void gw_plain_flush(gw_transport_t *transport, bool last) {
    if (last)
        gw_io_flush_last(&transport->reader);
    else
        gw_io_flush(&transport->reader);
}

static void gw_plain_shutdown_write(gw_transport_t *transport) {
    gw_io_shutdown_write(&transport->reader);
}

static bool gw_plain_when_drained(gw_transport_t *transport, void (*drained)(void *arg),
                                  void *arg) {
    (void)transport;
    (void)drained;
    (void)arg;
    return false; /* an empty output is in the kernel already */
}

static void gw_plain_close(gw_transport_t *transport) {
    gw_io_plain_free(&transport->reader, false);
}

static const gw_transport_ops_t gw_plain_ops = {
    .name = "plain",
    .features = GW_TRANSPORT_RAW | GW_TRANSPORT_HALF_CLOSE,
    .hold = gw_plain_hold,
    .flush = gw_plain_flush,
    .shutdown_write = gw_plain_shutdown_write,
    .when_drained = gw_plain_when_drained,
    .close = gw_plain_close,
};

/* ---- TLS over libevent's OpenSSL filter, the gateway reading and writing the socket ---- */

/* libevent's filter seals a record for every write into it, as it comes: a
 * response head and its body would leave as two records, and a client would
 * need two reads. While held, the filter's EV_WRITE is off, and the flush
 * seals what gathered: the first record's worth made contiguous (one record),
 * then the rest. */
static void gw_tls_hold(gw_transport_t *transport) {
    bufferevent_disable(transport->bev, EV_WRITE);
}

static void gw_tls_flush(gw_transport_t *transport, bool last) {
    (void)last;
    struct evbuffer *output = gw_transport_output(transport);
    size_t length = evbuffer_get_length(output);
    if (length > 1)
        evbuffer_pullup(
            output,
            (ev_ssize_t)(length < GW_TRANSPORT_TLS_RECORD ? length : GW_TRANSPORT_TLS_RECORD));
    bufferevent_enable(transport->bev, EV_WRITE);
    gw_io_socket_send(&transport->socket);
}

static void gw_tls_shutdown_write(gw_transport_t *transport) {
    tls_bufferevent_shutdown_write(transport->bev);
}

static bool gw_tls_when_drained(gw_transport_t *transport, void (*drained)(void *arg), void *arg) {
    return gw_io_socket_when_drained(&transport->socket, drained, arg);
}

static void gw_tls_close(gw_transport_t *transport) {
    gw_io_reader_free(&transport->reader);
    gw_io_socket_free(&transport->socket);
    bufferevent_free(transport->bev);
}

static const gw_transport_ops_t gw_tls_ops = {
    .name = "tls",
    .features = 0,
    .hold = gw_tls_hold,
    .flush = gw_tls_flush,
    .shutdown_write = gw_tls_shutdown_write,
    .when_drained = gw_tls_when_drained,
    .close = gw_tls_close,
};

bool gw_transport_alpn_h2(const gw_transport_t *transport) {
    if (transport->ops != &gw_tls_ops)
        return false;
    const unsigned char *protocol = NULL;
    unsigned int length = 0;
    SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(transport->bev), &protocol, &length);
    return length == 2 && memcmp(protocol, "h2", 2) == 0;
}

/* ---- life cycle ---- */

/* A plain stream: the reader owns the socket (gateway/io.h). Returns 0, or
 * -1 when memory is exhausted (fd is then closed). */
static int gw_transport_plain(gw_transport_t *transport, struct event_base *base, int fd) {
    *transport = (gw_transport_t){.ops = &gw_plain_ops};
    if (gw_io_plain_init(&transport->reader, base, fd) < 0) {
        errno = ENOMEM;
        return -1;
    }
    gw_io_reader_callbacks(&transport->reader, gw_transport_on_read, gw_transport_on_write,
                           gw_transport_on_event, transport);
    transport->open = true;
    return 0;
}

int gw_transport_accept(gw_transport_t *transport, struct event_base *base, int fd) {
    /* TCP_NODELAY comes from the listening socket (Linux copies it to
     * accepted ones): one system call less per connection. */
    return gw_transport_plain(transport, base, fd);
}

int gw_transport_dial(gw_transport_t *transport, struct event_base *base,
                      const struct sockaddr *address, socklen_t address_length,
                      uint64_t timeout_ms) {
    int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (gw_transport_plain(transport, base, fd) < 0)
        return -1;
    gw_io_plain_connect(&transport->reader, address, address_length, timeout_ms);
    return 0;
}

int gw_transport_start_tls(gw_transport_t *transport, struct tls_context *context) {
    /* libevent's TLS filter runs over a socket bufferevent: one is made for
     * the socket, and what was read already (after a PROXY header, the
     * ClientHello) goes into its input for the handshake. */
    gw_io_reader_t *plain = &transport->reader;
    struct event_base *base = event_get_base(plain->event);
    struct bufferevent *socket_bev = bufferevent_socket_new(base, plain->fd, BEV_OPT_CLOSE_ON_FREE);
    if (socket_bev == NULL) {
        gw_transport_close(transport);
        return -1;
    }
    struct evbuffer *socket_input = bufferevent_get_input(socket_bev);
    evbuffer_unfreeze(socket_input, 0);
    int moved = evbuffer_add_buffer(socket_input, plain->input);
    evbuffer_freeze(socket_input, 0);
    gw_io_plain_free(plain, true); /* the socket is socket_bev's now */
    transport->open = false;
    struct bufferevent *wrapped =
        moved < 0 ? NULL : tls_bufferevent_wrap(context, base, socket_bev);
    if (wrapped == NULL) {
        bufferevent_free(socket_bev);
        return -1;
    }
    transport->bev = wrapped;
    transport->ops = &gw_tls_ops;
    transport->open = true;
    transport->write_low = 0; /* a new bufferevent's */
    if (gw_io_socket_init(&transport->socket, socket_bev, GW_TRANSPORT_TLS_SOCKET_HIGH) < 0 ||
        gw_io_reader_init(&transport->reader, wrapped, false) < 0) {
        gw_transport_close(transport);
        return -1;
    }
    /* TLS writes through libevent: a new bufferevent starts with EV_WRITE
     * enabled. */
    bufferevent_setcb(wrapped, gw_transport_on_read, gw_transport_on_write, gw_transport_on_event,
                      transport);
    gw_io_reader_callbacks(&transport->reader, gw_transport_on_read, gw_transport_on_write,
                           gw_transport_on_event, transport);
    bufferevent_enable(wrapped, EV_WRITE);
    return 0;
}

void gw_transport_set_handler(gw_transport_t *transport, const gw_transport_handler_t *handler,
                              void *owner) {
    transport->handler = handler;
    transport->owner = owner;
}

void gw_transport_read_limit(gw_transport_t *transport, size_t high) {
    gw_io_read_watermark(&transport->reader, high);
}

void gw_transport_read_more(gw_transport_t *transport, size_t limit) {
    gw_io_read_more(&transport->reader, limit);
}

void gw_transport_read_again(gw_transport_t *transport) { gw_io_read_again(&transport->reader); }

int gw_transport_fd(gw_transport_t *transport) {
    if (transport->bev == NULL)
        gw_io_send_queued(&transport->reader);
    return transport->reader.fd;
}

void gw_transport_close(gw_transport_t *transport) {
    if (!transport->open)
        return;
    transport->open = false;
    transport->ops->close(transport);
    transport->bev = NULL;
}
