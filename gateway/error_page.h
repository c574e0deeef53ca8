/* Error responses the gateway itself sends: JSON for programs, a small HTML page for browsers. */
#ifndef SGW_GATEWAY_ERROR_PAGE_H
#define SGW_GATEWAY_ERROR_PAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/http1.h"

struct evbuffer;

/* What of the request decides between JSON and HTML; NULL for an absent header. */
typedef struct gw_error_client {
    const char *user_agent;
    const char *accept;
    const char *sec_fetch_mode;
    bool has_x_requested_with;
} gw_error_client_t;

/* True for a browser navigation: a browser-like User-Agent (Mozilla/...), an
 * Accept that does not prefer application/json over text/html, no
 * X-Requested-With, and Sec-Fetch-Mode absent or "navigate". */
bool gw_error_wants_html(const gw_error_client_t *client);

/* gw_error_wants_html of a complete request head's fields. */
bool gw_error_head_wants_html(const gw_head_t *head);

/* The reason phrase of status ("Bad Gateway"). */
const char *gw_status_reason(int status);

/* The message of a 502 for an unknown sandbox (grpc-status NOT_FOUND). */
#define GW_MESSAGE_SANDBOX_NOT_FOUND "The sandbox was not found"

/* The query parameter that carries the token once (DESIGN "Private sandboxes in a browser"). */
#define GW_TOKEN_PARAMETER "e2b_traffic_access_token"

/* What an error response may carry besides its message. */
typedef struct gw_error_extra {
    const char *origin; /* the request's Origin (not NUL-terminated), or NULL: CORS fields */
    size_t origin_length;
    /* The request target, or NULL: the HTML page asks for the token in a form
     * (403 for a missing credential in a browser). */
    const char *form_target;
} gw_error_extra_t;

/* The next pair of a query (what follows a target's "?"), from *cursor on:
 * *pair and its *length (an empty one too); false when none is left. */
bool gw_query_next(const char **cursor, const char **pair, size_t *length);

/* True if a pair's name (what stands before its "=", or all of it) is name. */
bool gw_query_pair_is(const char *pair, size_t length, const char *name);

/* Percent-decodes a query component ("+" is a space) into out (length bytes at
 * most); returns the bytes written. */
size_t gw_query_decode(const char *text, size_t length, char *out);

/* Appends a whole HTTP/1.1 response: status line, Content-Type, Content-Length,
 * "Connection: close" when close is set (else keep-alive), Cache-Control:
 * no-store, and the body {"sandboxId": "...", "message": "...", "code": N}
 * (with "port": N when port > 0; sandbox_id may be NULL, message NULL means
 * the reason phrase) or the HTML page with the same message, all escaped.
 * Returns its length in bytes, or -1 when memory is exhausted (out is then
 * left unchanged). */
int gw_error_render(struct evbuffer *out, int status, const char *message, const char *sandbox_id,
                    int port, bool html, bool close, const gw_error_extra_t *extra);

/* Appends the body alone (as gw_error_render's) to body; returns 0, or -1
 * when memory is exhausted. For a side that frames responses itself. */
int gw_error_render_body(struct evbuffer *body, int status, const char *message,
                         const char *sandbox_id, int port, bool html, const char *form_target);

/* The Content-Type of that body. */
const char *gw_error_content_type(bool html);

/* True for a gRPC request's Content-Type (DESIGN "gRPC and HTTP/2 to
 * sandboxes"): application/grpc, application/grpc+<codec> or
 * application/grpc;<parameters>, in any case; gRPC-Web is not gRPC. */
bool gw_content_type_is_grpc(const char *value, size_t length);

/* True if a complete request head carries such a Content-Type. */
bool gw_head_is_grpc(const gw_head_t *head);

/* The grpc-status of the gateway's own answer status with message (a 502 for
 * an unknown sandbox is NOT_FOUND); 0 when the answer stays HTTP (421). */
int gw_grpc_status(int status, const char *message);

/* message as grpc-message wants it: percent-encoded outside printable ASCII
 * and "%", into out of size bytes (cut short, never mid-escape); returns its
 * length. */
size_t gw_grpc_message(const char *message, char *out, size_t size);

#endif
