/* The admin endpoint (admin_listen): GET /health for load balancers, GET /metrics for Prometheus. */
#include "gateway/admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/metrics.h"
#include "gateway/worker.h"
#include "util/http_reply.h"
#include "util/log.h"

struct gw_admin {
    struct evhttp *http;
    gw_server_t *server;
};

/* 503 "starting" until a catalog connection was up once, 503 "draining"
 * after SIGTERM, else 200: a later Redis outage keeps it 200 because cached
 * routes still serve. */
static int gw_admin_health(const gw_server_t *server, const char **text) {
    if (__atomic_load_n(&server->draining, __ATOMIC_ACQUIRE)) {
        *text = "draining\n";
        return 503;
    }
    for (size_t i = 0; i < server->worker_count; i++) {
        const route_catalog_t *catalog = server->workers[i].catalog;
        if (catalog != NULL && route_catalog_ever_connected(catalog)) {
            *text = "healthy\n";
            return 200;
        }
    }
    *text = "starting\n";
    return 503;
}

static void gw_admin_handle(struct evhttp_request *request, void *arg) {
    gw_admin_t *admin = arg;
    const char *uri = evhttp_request_get_uri(request);
    size_t path_length = strcspn(uri, "?");
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        evhttp_send_error(request, 500, NULL);
        return;
    }
    struct evkeyvalq *headers = evhttp_request_get_output_headers(request);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    enum evhttp_cmd_type command = evhttp_request_get_command(request);
    bool get = command == EVHTTP_REQ_GET || command == EVHTTP_REQ_HEAD;
    static const char *const text_type = "text/plain; charset=utf-8";
    if (get && path_length == 7 && strncmp(uri, "/health", 7) == 0) {
        const char *text;
        int status = gw_admin_health(admin->server, &text);
        evbuffer_add(body, text, strlen(text));
        http_reply(request, status, status == 200 ? "OK" : "Service Unavailable", text_type, body);
    } else if (get && path_length == 8 && strncmp(uri, "/metrics", 8) == 0) {
        gw_metrics_render(body, admin->server);
        http_reply(request, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
    } else {
        evbuffer_add(body, "not found\n", 10);
        http_reply(request, 404, "Not Found", text_type, body);
    }
    evbuffer_free(body);
}

gw_admin_t *gw_admin_new(struct event_base *base, gw_server_t *server) {
    const gw_listen_t *listen = &server->config.admin_listen;
    gw_admin_t *admin = calloc(1, sizeof(*admin));
    if (admin == NULL)
        return NULL;
    admin->server = server;
    admin->http = evhttp_new(base);
    if (admin->http == NULL)
        goto fail;
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;
    if (listen->address.ss_family == AF_INET6)
        flags |= LEV_OPT_BIND_IPV6ONLY;
    struct evconnlistener *listener =
        evconnlistener_new_bind(base, NULL, NULL, flags, 128,
                                (const struct sockaddr *)&listen->address,
                                (int)listen->address_length);
    if (listener == NULL) {
        log_error("%s:%d: cannot listen on %s: %s", server->config.path, listen->line,
                  listen->text, strerror(errno));
        goto fail;
    }
    if (evhttp_bind_listener(admin->http, listener) == NULL) {
        evconnlistener_free(listener);
        goto fail;
    }
    /* A health check is one small request: no reason to hold big ones. */
    evhttp_set_max_headers_size(admin->http, 8192);
    evhttp_set_max_body_size(admin->http, 0);
    evhttp_set_timeout(admin->http, 10);
    evhttp_set_allowed_methods(admin->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(admin->http, gw_admin_handle, admin);
    log_info("admin endpoint on %s (/health, /metrics)", listen->text);
    return admin;
fail:
    gw_admin_free(admin);
    return NULL;
}

void gw_admin_free(gw_admin_t *admin) {
    if (admin == NULL)
        return;
    if (admin->http != NULL)
        evhttp_free(admin->http);
    free(admin);
}
