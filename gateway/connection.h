/* An HTTP/1.1 client connection: its requests one after another, a tunnel after 101. */
#ifndef SGW_GATEWAY_CONNECTION_H
#define SGW_GATEWAY_CONNECTION_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "gateway/exchange.h"
#include "gateway/http1.h"
#include "gateway/transport.h"
#include "gateway/tunnel.h"
#include "util/arena.h"

struct event;
struct gw_listen;
struct gw_worker;

/* Every state a client connection can be in (gw_conn_set_state logs each
 * change); its request is the exchange's. */
typedef enum gw_conn_state {
    GW_CONN_READING_PROXY, /* proxy_protocol listener: waiting for the PROXY header */
    GW_CONN_READING_HEAD,  /* waiting for a request head (header or idle timeout) */
    GW_CONN_EXCHANGE,      /* the head is complete: the exchange routes and proxies it */
    GW_CONN_TUNNEL,        /* after 101: raw bytes both ways */
    GW_CONN_H2,            /* HTTP/2: the streams run in conn->h2 */
    GW_CONN_CLOSING,       /* the last response leaves, then the client's last bytes are read */
    GW_CONN_CLOSED,        /* finalized; freed once no handler of it runs */
} gw_conn_state_t;

typedef struct gw_conn {
    LIST_ENTRY(gw_conn) link;
    struct gw_worker *worker;
    const struct gw_listen *listen; /* the listener that accepted it */
    gw_conn_state_t state;
    int handlers; /* handlers of it running: freeing waits until none is */
    gw_transport_t transport;
    struct event *timer;     /* wakes up at or before deadline_ms */
    uint64_t deadline_ms;    /* the current state's deadline (monotonic); 0: none */
    uint64_t timer_armed_ms; /* when the timer is set to fire; 0: not armed */
    char address_text[64];   /* the client's address: the PROXY header's source, if any */
    bool https;           /* X-Forwarded-Proto: https (TLS listener, or the balancer's SSL TLV) */
    bool protocol_chosen; /* HTTP/1.1 or HTTP/2 was decided by ALPN or the first bytes */
    bool lingering;       /* CLOSING: reading what the client still sends */
    struct gw_h2 *h2;     /* the HTTP/2 side, or NULL */
    arena_t arena;        /* per request; reset between requests */
    llhttp_t request_parser;
    gw_head_t request_head;
    size_t request_head_bytes;
    size_t trailer_bytes;   /* of the request's trailer section, bounded by max_header_size */
    gw_exchange_t exchange; /* the current request */
    gw_tunnel_t tunnel;
    uint64_t bytes_discarded; /* read while lingering before close */
} gw_conn_t;

/* Takes over an accepted socket of worker; closes fd on failure. */
void gw_conn_accept(struct gw_worker *worker, const struct gw_listen *listen, int fd,
                    const struct sockaddr *address, int address_length);

/* Draining: closes the connection if it is idle between requests; one with a
 * request in flight closes after its response (which says Connection: close). */
void gw_conn_drain(gw_conn_t *conn);

/* Handlers of the connection run between enter and leave: a close meanwhile
 * frees the memory when the last of them returns. */
void gw_conn_enter(gw_conn_t *conn);
void gw_conn_leave(gw_conn_t *conn);

/* The connection's one deadline, milliseconds from now; or none. */
void gw_conn_set_deadline(gw_conn_t *conn, uint64_t milliseconds);
void gw_conn_clear_deadline(gw_conn_t *conn);

/* Closes once everything written so far has reached the kernel. */
void gw_conn_close_after_flush(gw_conn_t *conn);

/* The one finalizer: logs and releases the request in flight, closes the
 * streams; the memory goes once no handler of the connection runs.
 * Idempotent. */
void gw_conn_close(gw_conn_t *conn);

#endif
