/* The agent's admin_listen: GET /metrics (Prometheus text) and GET /health, over evhttp. */
#include "egress/admin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "util/error.h"
#include "util/http_reply.h"

struct egress_admin {
    struct evhttp *http;
    const egress_metrics_t *metrics;
};

static void egress_admin_request(struct evhttp_request *request, void *argument) {
    egress_admin_t *admin = argument;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(request));
    struct evbuffer *body = evhttp_request_get_output_buffer(request);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(request);
    enum evhttp_cmd_type method = evhttp_request_get_command(request);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(headers, "Allow", "GET, HEAD");
        evhttp_send_error(request, 405, "Method Not Allowed");
        return;
    }
    if (path != NULL && strcmp(path, "/metrics") == 0) {
        if (egress_metrics_render(admin->metrics, body) != 0) {
            evhttp_send_error(request, 500, "Out of memory");
            return;
        }
        http_reply(request, 200, "OK", "text/plain; version=0.0.4", body);
        return;
    }
    if (path != NULL && strcmp(path, "/health") == 0) {
        evbuffer_add(body, "healthy\n", 8);
        http_reply(request, 200, "OK", "text/plain", body);
        return;
    }
    evhttp_send_error(request, 404, "Not Found");
}

egress_admin_t *egress_admin_new(struct event_base *base, const char *address,
                                 const egress_metrics_t *metrics, char *error, size_t error_size) {
    egress_admin_t *admin = calloc(1, sizeof(*admin));
    if (admin == NULL) {
        error_format(error, error_size, "out of memory");
        return NULL;
    }
    admin->metrics = metrics;
    struct sockaddr_storage socket_address;
    int length = (int)sizeof(socket_address);
    if (evutil_parse_sockaddr_port(address, (struct sockaddr *)&socket_address, &length) != 0) {
        error_format(error, error_size, "admin_listen \"%s\" is not ADDR:PORT", address);
        goto fail;
    }
    admin->http = evhttp_new(base);
    if (admin->http == NULL) {
        error_format(error, error_size, "out of memory");
        goto fail;
    }
    evhttp_set_allowed_methods(admin->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_headers_size(admin->http, 8192);
    evhttp_set_max_body_size(admin->http, 0);
    evhttp_set_timeout(admin->http, 10);
    evhttp_set_gencb(admin->http, egress_admin_request, admin);
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 64,
        (struct sockaddr *)&socket_address, length);
    if (listener == NULL) {
        error_format(error, error_size, "admin_listen %s: %s", address, strerror(errno));
        goto fail;
    }
    if (evhttp_bind_listener(admin->http, listener) == NULL) {
        evconnlistener_free(listener);
        error_format(error, error_size, "admin_listen %s: out of memory", address);
        goto fail;
    }
    return admin;

fail:
    egress_admin_free(admin);
    return NULL;
}

void egress_admin_free(egress_admin_t *admin) {
    if (admin == NULL)
        return;
    if (admin->http != NULL)
        evhttp_free(admin->http);
    free(admin);
}
