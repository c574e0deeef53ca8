/* HTTP/2 to sandboxes (h2c, prior knowledge): pooled sessions that carry many streams. */
#ifndef SGW_GATEWAY_UPSTREAM_H2_H
#define SGW_GATEWAY_UPSTREAM_H2_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "gateway/http1.h"
#include "util/strmap.h"

struct evbuffer;
struct gw_worker;

typedef struct gw_h2up_stream gw_h2up_stream_t;
typedef struct gw_h2up_session gw_h2up_session_t;

/* How a stream ended without a whole response. */
typedef enum gw_h2up_failure {
    GW_H2UP_RESET,       /* the sandbox reset it (RST_STREAM): the client's stream is reset too */
    GW_H2UP_LOST,        /* the connection ended under it */
    GW_H2UP_REFUSED,     /* not processed (GOAWAY, REFUSED_STREAM): safe to send again */
    GW_H2UP_NO_H2,       /* the port closed the connection before any SETTINGS: no HTTP/2 there */
    GW_H2UP_UNREACHABLE, /* the dial failed or timed out */
} gw_h2up_failure_t;

/* The stream's owner (an exchange). Each call may end the stream
 * (gw_h2up_stream_close); nothing of it is touched afterwards. */
typedef struct gw_h2up_handler {
    /* A response head (informational when status < 200) is in head; end: no
     * body or trailers follow. */
    void (*headers)(void *owner, const gw_head_t *head, int status, bool end);
    /* Body bytes were appended to the owner's output (gw_h2up_open's). */
    void (*data)(void *owner, size_t length);
    /* The trailers were added to head (after its trailer_start); the stream ended. */
    void (*trailers)(void *owner, const gw_head_t *head);
    /* The stream ended after its body. */
    void (*end)(void *owner);
    void (*failed)(void *owner, gw_h2up_failure_t failure, int error);
    /* The request body buffer drained below half: more may be added. */
    void (*writable)(void *owner);
} gw_h2up_handler_t;

/* The worker's sessions, by pool key (sandbox lifetime, addr, port). */
typedef struct gw_h2up_pool {
    strmap_t sessions; /* key -> gw_h2up_session_t list head */
    TAILQ_HEAD(gw_h2up_idle, gw_h2up_session) idle; /* no stream, idle longest first */
    struct gw_worker *worker;
} gw_h2up_pool_t;

int gw_h2up_pool_init(gw_h2up_pool_t *pool, struct gw_worker *worker);

/* The process is out of descriptors: closes up to count sessions without a
 * stream, those idle longest first (each an eviction); returns how many. */
size_t gw_h2up_pool_shed(gw_h2up_pool_t *pool, size_t count);

/* Closes every session (their streams fail first) and frees. */
void gw_h2up_pool_free(gw_h2up_pool_t *pool);

/* Opens a stream to key's sandbox at address with the request fields (the
 * pseudo-fields first), on a session of the pool with room, or a new one.
 * end: the request has no body. Response body bytes go to *response_output
 * (which the owner sets and drains, telling gw_h2up_consume); response fields
 * collect in head. Returns the stream, or NULL (errno set). */
gw_h2up_stream_t *gw_h2up_open(gw_h2up_pool_t *pool, const struct sockaddr *address,
                               socklen_t address_length, const char *key, size_t key_length,
                               const nghttp2_nv *fields, size_t count, bool end, gw_head_t *head,
                               struct evbuffer *response_output, const gw_h2up_handler_t *handler,
                               void *owner);

/* The request body buffer: the owner appends, then calls gw_h2up_flush. */
struct evbuffer *gw_h2up_request_body(gw_h2up_stream_t *stream);

/* How much more the request body buffer takes before the owner must wait for writable. */
size_t gw_h2up_request_room(gw_h2up_stream_t *stream);

/* Sends what was appended; end: the request body is complete (END_STREAM). */
void gw_h2up_flush(gw_h2up_stream_t *stream, bool end);

/* The owner took length bytes of the response body: the stream's window reopens by as much. */
void gw_h2up_consume(gw_h2up_stream_t *stream, size_t length);

/* Ends the stream (RST_STREAM CANCEL unless it completed) and frees it. NULL is allowed. */
void gw_h2up_stream_close(gw_h2up_stream_t *stream);

#endif
