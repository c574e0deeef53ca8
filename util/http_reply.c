/* Replies of the small evhttp servers (the admin endpoints of both binaries). */
#include "util/http_reply.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>

void http_reply(struct evhttp_request *request, int status, const char *reason,
                const char *content_type, struct evbuffer *body) {
    struct evkeyvalq *headers = evhttp_request_get_output_headers(request);
    evhttp_add_header(headers, "Content-Type", content_type);
    if (evhttp_request_get_command(request) == EVHTTP_REQ_HEAD) {
        char length[24];
        snprintf(length, sizeof(length), "%zu", evbuffer_get_length(body));
        evhttp_add_header(headers, "Content-Length", length);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(request, status, reason, body);
}
