/* The HTTP/1.1 codec: heads collected from llhttp, checked and rewritten; no sockets. */
#ifndef SGW_GATEWAY_HTTP1_H
#define SGW_GATEWAY_HTTP1_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#include "routing/host.h"
#include "util/arena.h"

/* The fields the gateway acts on, recognised once when a field ends. */
typedef enum gw_header_kind {
    GW_HEADER_OTHER = 0,
    GW_HEADER_HOST,
    GW_HEADER_CONNECTION,
    GW_HEADER_HOP_BY_HOP, /* Keep-Alive, Proxy-Connection, TE, HTTP2-Settings */
    GW_HEADER_UPGRADE,
    GW_HEADER_TRANSFER_ENCODING,
    GW_HEADER_FORWARDED, /* Forwarded and X-Forwarded-*: replaced, never trusted */
    GW_HEADER_TOKEN,     /* e2b-traffic-access-token */
    GW_HEADER_CONTENT_LENGTH,
    GW_HEADER_ROUTING, /* E2b-Sandbox-Id, E2b-Sandbox-Port: the gateway's, never the sandbox's */
    GW_HEADER_VIA,     /* passes; loop detection reads it */
    GW_HEADER_COOKIE,  /* passes without the gateway's access cookie */
    GW_HEADER_ORIGIN,  /* the request's own origin follows a mask */
    GW_HEADER_KIND_COUNT
} gw_header_kind_t;

typedef struct gw_header {
    gw_header_kind_t kind;
    const char *name;
    size_t name_length;
    const char *value;
    size_t value_length;
} gw_header_t;

/* A message head as llhttp delivers it, collected into an arena (a parser's data). */
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
    /* Connection fields naming other fields (gw_head_is_hop_by_hop looks them
     * up): their indexes, and how many; above 4 every field is searched. */
    size_t connection_headers[4];
    size_t connection_count;
    /* A Connection field names Content-Length, Transfer-Encoding or Host:
     * removing that field while the message keeps its framing is smuggling
     * (RFC 9110 §7.6.1 allows naming them; a proxy cannot honour it). */
    bool connection_names_framing;
    /* Fields of each kind seen, and the index of the first: the head's checks
     * need no pass over every field. */
    uint32_t kind_count[GW_HEADER_KIND_COUNT];
    uint32_t kind_first[GW_HEADER_KIND_COUNT];
    bool version_seen;      /* a request line's HTTP-version was read */
    size_t target_offset;   /* where the target began in the piece being parsed (0: before it) */
    size_t trailer_start;   /* headers from here on are trailers (after a chunked body) */
    bool in_trailers;       /* the last chunk was read: what follows is the trailer section */
    struct evbuffer *body_sink; /* response body bytes without framing go here, when set */
    size_t extension_bytes; /* of the current chunk's extensions */
    bool head_complete;
    bool message_complete;
    bool skip_body;          /* response to HEAD: no body whatever the headers say */
    bool failed;             /* out of memory while collecting */
    bool folded;             /* an obsolete line fold was seen */
    const char *piece_start; /* the input llhttp is running on, to look one byte back */
    char previous_byte;      /* the last byte of the piece before */
} gw_head_t;

/* A request head that passed gw_http1_request_check: what routing and the
 * sandbox's head are made of. Strings point into the head's arena. */
typedef struct gw_request {
    const char *method;
    const char *path;      /* origin-form target: sent upstream and logged */
    const char *authority; /* the Host (or absolute-form authority) as sent */
    size_t authority_length;
    const char *token; /* e2b-traffic-access-token, or NULL */
    size_t token_length;
    route_shared_fields_t shared; /* E2b-Sandbox-Id / -Port, for the shared host */
    bool keep_alive; /* the client wants the connection kept */
    bool has_body;
    bool idempotent; /* RFC 9110 §9.2.2 */
    bool upgrade;
    bool http10;
} gw_request_t;

/* Why a complete request head is refused (gw_http1_request_check). */
typedef enum gw_request_verdict {
    GW_REQUEST_OK = 0,
    GW_REQUEST_MALFORMED,    /* 400 Bad request, then close */
    GW_REQUEST_NO_AUTHORITY, /* 400 Invalid host: no Host and no absolute-form target */
    GW_REQUEST_LOOP,         /* 508 Loop detected: this gateway's own Via */
    GW_REQUEST_NO_MEMORY,    /* 500 */
} gw_request_verdict_t;

/* What the sandbox's request head carries besides the client's fields. */
typedef struct gw_forward {
    const char *host; /* the Host to send: the client's authority, or the expanded mask */
    size_t host_length;
    bool masked;                /* host is a mask: X-Forwarded-Host carries the client's */
    const char *client_address; /* X-Forwarded-For */
    bool https;                 /* X-Forwarded-Proto */
    const char *instance;       /* Via: 1.1 <instance> */
    size_t instance_length;
} gw_forward_t;

/* The most bytes of extensions one chunk may carry (DESIGN "What the sandbox receives"). */
enum { GW_HTTP1_CHUNK_EXTENSION_MAX = 4096 };

/* Prepares head to collect a new message into arena. */
void gw_head_reset(gw_head_t *head, arena_t *arena);

/* Starts parser on a request (or a response: to HEAD when head_request; its
 * body without framing into head->body_sink when decoded) whose head is
 * collected into head. */
void gw_http1_request_init(llhttp_t *parser, gw_head_t *head);
void gw_http1_response_init(llhttp_t *parser, gw_head_t *head, bool head_request, bool decoded);

/* Feeds one contiguous piece to parser; returns the bytes it took and sets
 * *error (HPE_OK, HPE_PAUSED at the end of a head, of a message or at a
 * request's last chunk, or a parse error). A request line that ended without
 * an HTTP-version (HTTP/0.9) is HPE_INVALID_VERSION. */
size_t gw_http1_parse(llhttp_t *parser, const char *data, size_t length, llhttp_errno_t *error);

/* Adds a field (copied into the head's arena), as a parser adds one: for
 * heads that come from elsewhere (HTTP/2). Returns 0, or -1 when memory is
 * exhausted. */
int gw_head_add(gw_head_t *head, const char *name, size_t name_length, const char *value,
                size_t value_length);

/* The first field named name (case-insensitive), or NULL. */
const gw_header_t *gw_head_find(const gw_head_t *head, const char *name, size_t length);

/* RFC 9110 §7.6.1: Connection and the fields it names, and the classic
 * hop-by-hop fields, are for one hop only. */
bool gw_head_is_hop_by_hop(const gw_head_t *head, const gw_header_t *header);

/* A method llhttp parses in a request line: what an HTTP/1.1 client can send,
 * and so what the sandbox's parser is sure to take from an HTTP/2 one. */
bool gw_method_known(const char *method);

/* RFC 9110 §9.2.2: GET, HEAD, OPTIONS, PUT, DELETE, TRACE. */
bool gw_method_idempotent(const char *method);

/* Checks a complete request head (RFC 9112 framing: one Host, a single
 * chunked coding and none in HTTP/1.0, no Connection naming a framing field,
 * one token, no Via naming instance) and fills request. */
gw_request_verdict_t gw_http1_request_check(const gw_head_t *head, llhttp_t *parser,
                                            const char *instance, size_t instance_length,
                                            gw_request_t *request);

/* The checks of gw_http1_request_check that hold whatever the protocol (one
 * token, an authority, no Via naming instance), on a request whose method,
 * path and authority are set: fills its token and shared-host fields. */
gw_request_verdict_t gw_request_check_fields(const gw_head_t *head, const char *instance,
                                             size_t instance_length, gw_request_t *request);

/* Writes the request head the sandbox receives (DESIGN "What the sandbox
 * receives") into arena; returns 0, or -1 when memory is exhausted. Sets
 * *closes when it says Connection: close (an HTTP/1.0 request). */
int gw_http1_request_head_write(const gw_head_t *head, const gw_request_t *request,
                                const gw_forward_t *forward, arena_t *arena, char **out,
                                size_t *length, bool *closes);

/* Writes the response head the client receives: the sandbox's less
 * hop-by-hop fields, with the gateway's Connection (upgrade on 101, close when
 * close). Returns 0, or -1 when memory is exhausted. */
int gw_http1_response_head_write(const gw_head_t *head, int status, bool close, arena_t *arena,
                                 char **out, size_t *length);

/* Writes a request's trailer section and the empty line that ends the message:
 * a trailer passes only as it would pass as a header, framing fields (RFC
 * 9110 §6.5.1) never. Returns 0, or -1 when memory is exhausted. */
int gw_http1_trailers_write(const gw_head_t *head, arena_t *arena, char **out, size_t *length);

#endif
