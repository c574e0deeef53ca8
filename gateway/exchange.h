/* One proxied request, whatever protocol carried it: route, upstream, response, log line. */
#ifndef SGW_GATEWAY_EXCHANGE_H
#define SGW_GATEWAY_EXCHANGE_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/error_page.h"
#include "gateway/http1.h"
#include "gateway/io.h"
#include "gateway/metrics.h"
#include "gateway/resume.h"
#include "routing/catalog.h"
#include "routing/decision.h"
#include "routing/host.h"
#include "routing/limit.h"
#include "util/arena.h"

struct evbuffer;
struct gw_upstream;
struct gw_worker;

/* Each direction buffers at most this much before reading from the other side
 * stops (backpressure); reading resumes when it drains below half. */
enum { GW_BUFFER_HIGH = 256 * 1024, GW_BUFFER_LOW = GW_BUFFER_HIGH / 2 };
/* Input read ahead of parsing: bounds memory while a head is routed. */
enum { GW_READ_HIGH = 64 * 1024 };

/* Every state an exchange can be in (gw_exchange_set_state logs each change). */
typedef enum gw_exchange_state {
    GW_EXCHANGE_IDLE,       /* no request yet, or between two */
    GW_EXCHANGE_READING,    /* the request's first byte arrived; its head is being read */
    GW_EXCHANGE_ROUTING,    /* head checked; waiting for the catalog */
    GW_EXCHANGE_RESUMING,   /* the sandbox is paused: held until its record says running */
    GW_EXCHANGE_CONNECTING, /* dialling the sandbox, or pausing before another dial */
    GW_EXCHANGE_PROXYING,   /* head sent: the request and the response stream */
    GW_EXCHANGE_TUNNEL,     /* after 101: the side carries raw bytes; logged when it ends */
    GW_EXCHANGE_DONE,       /* answered (or given up) and logged; resources released */
} gw_exchange_state_t;

typedef enum gw_request_state {
    GW_REQUEST_HEAD, /* head not complete yet */
    GW_REQUEST_BODY, /* head sent upstream; body bytes pass as they arrive */
    GW_REQUEST_DONE, /* the whole request was read */
} gw_request_state_t;

typedef enum gw_response_state {
    GW_RESPONSE_NONE, /* nothing from the sandbox yet */
    GW_RESPONSE_HEAD, /* reading a (possibly informational) response head */
    GW_RESPONSE_BODY, /* final head passed on; the body passes as it arrives */
    GW_RESPONSE_DONE,
} gw_response_state_t;

typedef struct gw_exchange gw_exchange_t;

/* A field of a response the gateway makes itself (a request field's value
 * is not NUL-terminated where it ends: hence its length). */
typedef struct gw_field {
    const char *name;
    const char *value;
    size_t value_length;
} gw_field_t;

/* The client side of an exchange: an HTTP/1.1 connection today, an HTTP/2
 * stream later. The exchange calls these; each may end the request. */
typedef struct gw_exchange_side {
    /* The side takes response bodies without their HTTP/1.1 framing (an
     * HTTP/2 stream); else they pass as the sandbox framed them. */
    bool decoded_body;
    /* The exchange's own callbacks (upstream, catalog, splice) run between
     * enter and leave, so that a close the side is asked for meanwhile waits
     * until they return. */
    void (*enter)(void *side);
    void (*leave)(void *side);
    /* The exchange waits for something until milliseconds from now (0: no
     * deadline); when it passes the side calls gw_exchange_timeout. */
    void (*deadline)(void *side, uint64_t milliseconds);
    /* The upstream can take request body bytes (first after the head, and
     * again once its output drained): the side passes what it has. */
    void (*request_ready)(void *side);
    /* Where response bytes go: the side's output; *room is what it takes
     * before the exchange must wait for gw_exchange_response_ready. The body
     * arrives as the sandbox framed it (chunked framing included), which an
     * HTTP/1.1 client takes as it is, or decoded (decoded_body); a decoded
     * response's trailers are in the exchange's response_head when finished
     * is called. */
    struct evbuffer *(*response_output)(void *side, size_t *room);
    /* The response head to pass on (an informational one when !final); close:
     * the side closes after this response. Returns 0, or -1 when memory is
     * exhausted. */
    int (*response_head)(void *side, const gw_head_t *head, int status, bool final, bool close);
    /* Gathers what follows until flush (gw_transport_hold); flush writes it. */
    void (*hold)(void *side);
    void (*flush)(void *side);
    /* The side's output is full: call gw_exchange_response_ready once it drained. */
    void (*response_wait)(void *side);
    /* A socket a sized body may move to by splice, or -1. */
    int (*splice_fd)(void *side);
    /* A response of the gateway's own: renders it (status, message) for the
     * request, keeping the connection when keep_alive. */
    void (*error)(void *side, int status, const char *message, bool keep_alive);
    /* A response of the gateway's own without a body (a redirect, a CORS
     * preflight's 204) with these fields, then as finished. */
    void (*respond)(void *side, int status, const gw_field_t *fields, size_t count,
                    bool keep_alive);
    /* The response is complete in the side's output and the exchange logged
     * and released: the side goes on (keep_alive) or closes. */
    void (*finished)(void *side, bool keep_alive);
    /* Nothing can be answered any more (the response was cut short): close. */
    void (*abort)(void *side);
    /* The sandbox switched protocols (101): from now on the side carries raw
     * bytes between itself and the upstream's transport. */
    void (*upgraded)(void *side, struct gw_upstream *upstream);
} gw_exchange_side_t;

struct gw_exchange {
    struct gw_worker *worker;
    const gw_exchange_side_t *side;
    void *side_arg;
    arena_t *arena; /* the request's (the side resets it between requests) */
    gw_exchange_state_t state;
    gw_request_state_t request_state;
    gw_response_state_t response_state;
    const char *client_address; /* X-Forwarded-For and the log */
    bool https;                 /* X-Forwarded-Proto */
    gw_protocol_t protocol;     /* the client's, for the log and the metrics */

    /* The request. */
    const gw_head_t *request_head; /* the side's, for the error page and the rewrite */
    gw_request_t request;
    route_target_t target;
    bool routed;      /* target is known (the log and error pages name it) */
    struct gw_activity_entry *activity; /* its sandbox's, while routed (NULL: not counted) */
    bool shared_host; /* routed by E2b-Sandbox-Id/-Port: no browser credentials there */
    bool grpc;        /* its Content-Type is gRPC's (gw_head_is_grpc) */
    bool token_form;  /* a browser's 403 for a missing credential asks for the token */
    route_waiter_t waiter;
    gw_hold_t hold; /* while RESUMING; its waited_us for the log after */
    bool held;
    route_record_t *record;
    route_limit_t *limit;
    route_decision_t decision;
    char *upstream_head; /* the rewritten request head, kept for one retry */
    size_t upstream_head_length;
    bool upstream_closes; /* that head says Connection: close: the connection is not reused */
    uint64_t dial_started_ms;
    uint64_t retry_delay_ms;
    bool retried_on_fresh;
    uint64_t body_forwarded;

    /* The upstream and its response. */
    struct gw_upstream *upstream;
    struct gw_h2up_stream *h2up; /* instead: a stream on an h2c session (gRPC, h2c_ports) */
    size_t h2up_unconsumed;      /* its body bytes the side has not taken yet */
    bool h2up_retried;           /* sent again once after the sandbox refused the stream */
    bool h2up_chunked;           /* its body goes chunked to an HTTP/1.1 client */
    struct evbuffer *h2up_body;  /* its body for an HTTP/1.1 client, before the framing */
    llhttp_t response_parser;
    gw_head_t response_head;
    size_t response_head_bytes;
    bool response_sent; /* a byte of the final response reached the side */
    bool close_after_response;
    bool upstream_eof;      /* the sandbox closed its side; pending bytes still pass */
    gw_io_splice_t *splice; /* a large sized body moving socket to socket, or NULL */
    bool deadline_set;      /* the side holds a deadline of the exchange's */

    /* The log line. */
    uint64_t started_us;
    uint64_t bytes_received;
    uint64_t bytes_sent;
    int status;        /* 0 until a response (or a decision to close without one) */
    char *tunnel_path; /* a tunnel's own copy of the path (the arena is given back) */
};

/* Prepares an exchange for a side; allocates nothing. */
void gw_exchange_init(gw_exchange_t *exchange, struct gw_worker *worker,
                      const gw_exchange_side_t *side, void *side_arg, arena_t *arena,
                      const char *client_address, bool https);

/* A request's first byte arrived (a kept-alive connection's next request, or
 * the connection's first): the exchange starts reading it. */
void gw_exchange_begin(gw_exchange_t *exchange);

/* The request's head is complete and checked (request, whose strings live in
 * the arena): routes it to its sandbox and sends it there. */
void gw_exchange_start(gw_exchange_t *exchange, const gw_head_t *head, const gw_request_t *request);

/* The request's head is complete but refused before routing (status,
 * message): answered as gw_exchange_fail answers. */
void gw_exchange_refuse(gw_exchange_t *exchange, const gw_head_t *head, const gw_request_t *request,
                        int status, const char *message);

/* The upstream's output, where the side writes request body bytes. */
struct evbuffer *gw_exchange_request_output(const gw_exchange_t *exchange);

/* True when the request body goes framed as HTTP/1.1 (chunked when its
 * length is unknown); false for a stream to the sandbox, whose frames carry
 * it as it is. */
static inline bool gw_exchange_request_framed(const gw_exchange_t *exchange) {
    return exchange->h2up == NULL;
}

/* How many more request bytes the upstream's output takes now (it writes
 * what the socket takes first when full); 0: the side waits for
 * request_ready. */
size_t gw_exchange_request_room(gw_exchange_t *exchange);

/* bytes of the request body were written to the request output. */
static inline void gw_exchange_request_sent(gw_exchange_t *exchange, size_t bytes) {
    exchange->body_forwarded += bytes;
}

/* Writes the request output to the sandbox now. */
void gw_exchange_request_flush(gw_exchange_t *exchange);

/* The whole request was read and written to the request output. */
void gw_exchange_request_done(gw_exchange_t *exchange);

/* The side's output drained: response bytes may pass again. */
void gw_exchange_response_ready(gw_exchange_t *exchange);

/* The deadline the exchange asked for passed. */
void gw_exchange_timeout(gw_exchange_t *exchange);

/* What the side's error response carries besides the message: CORS fields
 * for a request with Origin, and the token form (DESIGN "Private sandboxes in
 * a browser"). head is the side's request head (NULL before one). */
void gw_exchange_error_extra(const gw_exchange_t *exchange, const gw_head_t *head,
                             gw_error_extra_t *extra);

/* The gateway's own answer (status, message): rendered by the side when no
 * response byte went out yet, else the side aborts. Idempotent. */
void gw_exchange_fail(gw_exchange_t *exchange, int status, const char *message);

/* The one finalizer: logs the request (status 499 when nothing was answered,
 * the client having gone) and counts it, releases the route, the limit, the
 * catalog wait, the splice and the upstream (back to the pool when a complete
 * response left it reusable). Idempotent. */
void gw_exchange_finish(gw_exchange_t *exchange);

/* Back to IDLE for the connection's next request, or before the side is
 * freed (after finish). */
void gw_exchange_reset(gw_exchange_t *exchange);

/* Bytes of the request read from the client, for the log. */
static inline void gw_exchange_count_received(gw_exchange_t *exchange, size_t bytes) {
    exchange->bytes_received += bytes;
}

/* Bytes of the response passed to the client, for the log. */
static inline void gw_exchange_count_sent(gw_exchange_t *exchange, size_t bytes) {
    exchange->bytes_sent += bytes;
}

#endif
