/* A client connection and the proxy state machine that serves its requests. */
#ifndef SGW_GATEWAY_CLIENT_H
#define SGW_GATEWAY_CLIENT_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "gateway/io.h"
#include "routing/catalog.h"
#include "routing/host.h"
#include "routing/limit.h"
#include "util/arena.h"

struct bufferevent;
struct event;
struct gw_worker;
struct gw_upstream;
struct gw_listen;

/* Every state a client connection can be in. The request and the response
 * have their own states below; the connection state says who acts next. */
typedef enum gw_client_state {
    GW_CLIENT_READING_PROXY, /* proxy_protocol listener: waiting for the PROXY header */
    GW_CLIENT_READING_HEAD, /* waiting for a whole request head (header or idle timeout) */
    GW_CLIENT_ROUTING,      /* head parsed; waiting for the catalog */
    GW_CLIENT_CONNECTING,   /* dialling the sandbox; a refused dial is retried */
    GW_CLIENT_PROXYING,     /* request and response streaming through an upstream */
    GW_CLIENT_TUNNEL,       /* after 101: raw bytes both ways */
    GW_CLIENT_CLOSING,      /* flushing a last response, then close */
} gw_client_state_t;

typedef enum gw_request_state {
    GW_REQUEST_HEAD, /* head not complete yet */
    GW_REQUEST_BODY, /* head sent upstream; body bytes pass as they arrive */
    GW_REQUEST_DONE, /* the whole request was read */
} gw_request_state_t;

typedef enum gw_response_state {
    GW_RESPONSE_NONE, /* nothing from the sandbox yet */
    GW_RESPONSE_HEAD, /* reading a (possibly informational) response head */
    GW_RESPONSE_BODY, /* final head sent to the client; body passes as it arrives */
    GW_RESPONSE_DONE,
} gw_response_state_t;

/* The fields the gateway acts on, recognised once when a field ends. */
typedef enum gw_header_kind {
    GW_HEADER_OTHER = 0,
    GW_HEADER_HOST,
    GW_HEADER_CONNECTION,
    GW_HEADER_HOP_BY_HOP, /* Keep-Alive, Proxy-Connection, TE */
    GW_HEADER_UPGRADE,
    GW_HEADER_TRANSFER_ENCODING,
    GW_HEADER_FORWARDED,  /* Forwarded and X-Forwarded-*: replaced, never trusted */
    GW_HEADER_TOKEN,      /* e2b-traffic-access-token */
    GW_HEADER_CONTENT_LENGTH,
    GW_HEADER_ROUTING,    /* E2b-Sandbox-Id, E2b-Sandbox-Port: the gateway's, never the sandbox's */
    GW_HEADER_VIA,        /* passes; loop detection reads it */
    GW_HEADER_KIND_COUNT
} gw_header_kind_t;

typedef struct gw_header {
    gw_header_kind_t kind;
    const char *name;
    size_t name_length;
    const char *value;
    size_t value_length;
} gw_header_t;

/* A message head as llhttp delivers it, collected into the request arena. */
typedef struct gw_head {
    arena_t *arena;
    char *target; /* request target, or the status reason of a response */
    size_t target_length;
    size_t target_capacity;
    gw_header_t *headers;
    size_t header_count;
    size_t header_capacity;
    char *field; /* the header field or value being received */
    size_t field_length;
    size_t field_capacity;
    char *value;
    size_t value_length;
    size_t value_capacity;
    /* Connection fields naming other fields (gw_is_hop_by_hop looks them up):
     * their indexes, and how many; above 4 every field is searched. */
    size_t connection_headers[4];
    size_t connection_count;
    /* Fields of each kind seen, and the index of the first: the head's checks
     * need no pass over every field. */
    uint32_t kind_count[GW_HEADER_KIND_COUNT];
    uint32_t kind_first[GW_HEADER_KIND_COUNT];
    /* A Connection field names Content-Length, Transfer-Encoding or Host:
     * removing that field while the message keeps its framing is smuggling
     * (RFC 9110 §7.6.1 allows naming them; a proxy cannot honour it). */
    bool connection_names_framing;
    bool version_seen;    /* a request line's HTTP-version was read */
    size_t target_offset; /* where the target began in the piece being parsed (0: before it) */
    size_t trailer_start; /* headers from here on are trailers (after a chunked body) */
    bool in_trailers;     /* the last chunk was read: what follows is the trailer section */
    size_t extension_bytes; /* of the current chunk's extensions */
    bool head_complete;
    bool message_complete;
    bool skip_body; /* response to HEAD: no body whatever the headers say */
    bool failed;    /* out of memory while collecting */
    bool folded;    /* an obsolete line fold was seen */
    const char *piece_start;   /* the input llhttp is running on, to look one byte back */
    char previous_byte;        /* the last byte of the piece before */
} gw_head_t;

typedef struct gw_client {
    LIST_ENTRY(gw_client) link;
    struct gw_worker *worker;
    const struct gw_listen *listen; /* the listener that accepted it */
    bool plain;                     /* a plain socket: direct reads and writes (gateway/io.c) */
    struct bufferevent *bev;
    gw_io_reader_t reader;   /* reads bev: gateway/io.c for a plain socket, else libevent */
    gw_io_socket_t tls_socket; /* the socket under bev when bev is TLS (gateway/io.h) */
    struct event *timer;     /* wakes up at or before deadline_ms */
    uint64_t deadline_ms;    /* the current state's deadline (monotonic); 0: none */
    uint64_t timer_armed_ms; /* when the timer is set to fire; 0: not armed */
    gw_client_state_t state;
    char address_text[64]; /* the client's address: the PROXY header's source, if any */
    bool https;            /* X-Forwarded-Proto: https (TLS listener, or the balancer's SSL TLV) */
    arena_t arena; /* per request; reset between requests */

    /* The current request. */
    gw_request_state_t request_state;
    llhttp_t request_parser;
    gw_head_t request_head;
    size_t request_head_bytes;
    bool request_started; /* a byte of this request arrived */
    bool request_keep_alive;
    bool request_has_body;
    bool request_idempotent;
    bool request_upgrade;
    const char *method;
    const char *path;             /* origin-form target: sent upstream and logged */
    char *tunnel_path;            /* a tunnel's own copy of path (its arena is freed) */
    const char *client_authority; /* the Host (or absolute-form authority) as sent */
    size_t client_authority_length;
    route_target_t target;
    bool routed;
    route_waiter_t waiter;
    route_record_t *record;
    route_limit_t *limit;
    char *upstream_head; /* the rewritten request head, kept for one retry */
    bool upstream_closes; /* that head says Connection: close: the connection is not reused */
    size_t upstream_head_length;
    struct sockaddr_storage upstream_address;
    socklen_t upstream_address_length;
    char *pool_key; /* in the arena */
    size_t pool_key_length;
    uint64_t dial_started_ms;
    uint64_t retry_delay_ms;
    bool retried_on_fresh;
    uint64_t body_forwarded;
    size_t trailer_bytes; /* of the request's trailer section, bounded by max_header_size */
    uint64_t bytes_received;
    uint64_t bytes_sent;
    uint64_t started_us;
    int status;

    /* The upstream of the current request and its response. */
    struct gw_upstream *upstream;
    gw_response_state_t response_state;
    llhttp_t response_parser;
    gw_head_t response_head;
    size_t response_head_bytes;
    bool response_sent; /* a byte of the final response reached the client output */
    gw_io_splice_t *splice; /* a large sized body moving socket to socket, or NULL */
    bool upstream_eof;  /* the sandbox closed its side; pending bytes still pass */
    bool close_after_response;
    uint64_t last_activity_ms; /* tunnel idle accounting */
    bool tunnel_client_eof;    /* the client ended its sending side */
    bool tunnel_upstream_eof;  /* the sandbox ended its sending side */
    bool tunnel_client_shut;   /* that end was passed on to the client */
    bool tunnel_upstream_shut; /* the client's end was passed on to the sandbox */
    uint64_t bytes_discarded;  /* read while lingering before close */
} gw_client_t;

/* Takes over an accepted socket of worker; closes fd on failure. */
void gw_client_accept(struct gw_worker *worker, const struct gw_listen *listen, int fd,
                      const struct sockaddr *address, int address_length);

/* Draining: closes the connection if it is idle between requests; one with a
 * request in flight closes after its response (which says Connection: close). */
void gw_client_drain(gw_client_t *client);

/* Closes the connection at once, with its upstream; the one finalizer every
 * failure path ends in. */
void gw_client_close(gw_client_t *client);

#endif
