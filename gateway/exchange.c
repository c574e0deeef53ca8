/* One proxied request, whatever protocol carried it: route, upstream, response, log line. */
#include "gateway/exchange.h"

#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/activity.h"
#include "gateway/upstream.h"
#include "gateway/upstream_h2.h"
#include "gateway/worker.h"
#include "util/clock.h"
#include "util/log.h"

/* A sized response body at least this large moves by splice (gateway/io.h). */
enum { GW_SPLICE_MIN = 64 * 1024 };
/* A sandbox's response head may be larger than a client's request head. */
enum { GW_RESPONSE_HEAD_MAX = 64 * 1024 };
/* First and longest pause between dials of a port that refused. */
enum { GW_RETRY_FIRST_MS = 25, GW_RETRY_MAX_MS = 250 };
/* The longest path a tunnel keeps for its access-log line (the log cuts at 2 KiB too). */
enum { GW_TUNNEL_PATH_MAX = 2048 };

static const char GW_MESSAGE_NOT_FOUND[] = GW_MESSAGE_SANDBOX_NOT_FOUND;
static const char GW_MESSAGE_PORT_CLOSED[] = "The sandbox is running but port is not open";
static const char GW_MESSAGE_UNAVAILABLE[] = "Sandbox routing is temporarily unavailable";
static const char GW_MESSAGE_TIMEOUT[] = "The sandbox did not respond in time";
static const char GW_MESSAGE_MISDIRECTED[] = "Misdirected request";
static const char GW_MESSAGE_MALFORMED_RECORD[] = "The sandbox record is invalid";
static const char GW_MESSAGE_UPSTREAM_CLOSED[] =
    "The sandbox closed the connection without a response";
static const char GW_MESSAGE_NO_MEMORY[] = "Out of memory";
static const char GW_MESSAGE_PAUSED[] = "The sandbox is paused";
static const char GW_MESSAGE_NOT_RESUMED[] = "The sandbox did not resume in time";
static const char GW_MESSAGE_GRPC_HTTP1[] = "gRPC needs HTTP/2";
static const char GW_MESSAGE_NO_H2[] = "The sandbox port does not speak HTTP/2";

/* What a streaming step left behind: the exchange still proxying, or ended
 * (finished, failed, or handed to a tunnel). */
typedef enum gw_step { GW_STEP_CONTINUE, GW_STEP_ENDED } gw_step_t;

/* What went wrong with the upstream, for gw_exchange_next. */
typedef enum gw_failure {
    GW_FAILURE_DIAL,         /* the dial could not even start */
    GW_FAILURE_REFUSED,      /* the dial failed (errno in the call) */
    GW_FAILURE_DIAL_TIMEOUT, /* upstream_connect_timeout passed */
    GW_FAILURE_LOST,         /* the connection ended before any response byte */
} gw_failure_t;

static const gw_transport_handler_t gw_exchange_upstream_handler;

static const char *const gw_exchange_state_names[] = {
    [GW_EXCHANGE_IDLE] = "idle",         [GW_EXCHANGE_READING] = "reading",
    [GW_EXCHANGE_ROUTING] = "routing",   [GW_EXCHANGE_RESUMING] = "resuming",
    [GW_EXCHANGE_CONNECTING] = "connecting",
    [GW_EXCHANGE_PROXYING] = "proxying", [GW_EXCHANGE_TUNNEL] = "tunnel",
    [GW_EXCHANGE_DONE] = "done",
};

/* Every change of state passes here. */
static void gw_exchange_set_state(gw_exchange_t *exchange, gw_exchange_state_t state) {
    log_debug("request of %s: %s -> %s", exchange->client_address,
              gw_exchange_state_names[exchange->state], gw_exchange_state_names[state]);
    exchange->state = state;
}

static struct evbuffer *gw_upstream_input(const gw_exchange_t *exchange) {
    return gw_transport_input(&exchange->upstream->transport);
}

static struct evbuffer *gw_upstream_output(const gw_exchange_t *exchange) {
    return gw_transport_output(&exchange->upstream->transport);
}

void gw_exchange_init(gw_exchange_t *exchange, struct gw_worker *worker,
                      const gw_exchange_side_t *side, void *side_arg, arena_t *arena,
                      const char *client_address, bool https) {
    memset(exchange, 0, sizeof(*exchange));
    exchange->worker = worker;
    exchange->side = side;
    exchange->side_arg = side_arg;
    exchange->arena = arena;
    exchange->client_address = client_address;
    exchange->https = https;
}

void gw_exchange_begin(gw_exchange_t *exchange) {
    if (exchange->started_us == 0)
        exchange->started_us = clock_us();
    gw_exchange_set_state(exchange, GW_EXCHANGE_READING);
}

void gw_exchange_reset(gw_exchange_t *exchange) {
    /* Field by field: this runs for every request, and the parser, the
     * response head and the decision are set up before each use anyway. */
    free(exchange->tunnel_path);
    exchange->tunnel_path = NULL;
    exchange->state = GW_EXCHANGE_IDLE;
    exchange->request_state = GW_REQUEST_HEAD;
    exchange->response_state = GW_RESPONSE_NONE;
    exchange->request_head = NULL;
    memset(&exchange->request, 0, sizeof(exchange->request));
    exchange->routed = false;
    exchange->activity = NULL;
    exchange->shared_host = false;
    exchange->grpc = false;
    exchange->token_form = false;
    exchange->waiter.pending = NULL;
    exchange->held = false;
    exchange->record = NULL;
    exchange->limit = NULL;
    exchange->upstream_head = NULL;
    exchange->upstream_closes = false;
    exchange->retried_on_fresh = false;
    exchange->body_forwarded = 0;
    exchange->upstream = NULL;
    exchange->h2up = NULL;
    exchange->h2up_unconsumed = 0;
    exchange->h2up_retried = false;
    exchange->h2up_chunked = false;
    exchange->response_head_bytes = 0;
    exchange->response_sent = false;
    exchange->close_after_response = false;
    exchange->upstream_eof = false;
    exchange->splice = NULL;
    exchange->deadline_set = false;
    exchange->started_us = 0;
    exchange->bytes_received = 0;
    exchange->bytes_sent = 0;
    exchange->status = 0;
}

/* The exchange's deadline (0: none), told to the side only when it changes. */
static void gw_exchange_deadline(gw_exchange_t *exchange, uint64_t milliseconds) {
    if (milliseconds == 0 && !exchange->deadline_set)
        return;
    exchange->deadline_set = milliseconds != 0;
    exchange->side->deadline(exchange->side_arg, milliseconds);
}

/* ---- the end ---- */

/* The target as the access log shows it: the token parameter's value is
 * REDACTED (out holds GW_TUNNEL_PATH_MAX + 1 bytes; the log cuts there too). */
static const char *gw_exchange_logged_path(const char *path, char *out) {
    static const char parameter[] = GW_TOKEN_PARAMETER "=";
    const char *query = path != NULL ? strchr(path, '?') : NULL;
    if (query == NULL || strstr(query, parameter) == NULL)
        return path;
    /* The path and "?", then each pair, ours with its value replaced: as far
     * as GW_TUNNEL_PATH_MAX bytes go. */
    int written = snprintf(out, GW_TUNNEL_PATH_MAX + 1, "%.*s", (int)(query + 1 - path), path);
    const char *cursor = query + 1, *pair;
    size_t length;
    for (bool first = true; written < GW_TUNNEL_PATH_MAX && gw_query_next(&cursor, &pair, &length);
         first = false) {
        bool ours =
            length >= sizeof(parameter) - 1 && gw_query_pair_is(pair, length, GW_TOKEN_PARAMETER);
        written +=
            snprintf(out + written, (size_t)(GW_TUNNEL_PATH_MAX + 1 - written), "%s%.*s",
                     first ? "" : "&", ours ? (int)sizeof(parameter) - 1 : (int)length, pair);
        if (ours && written < GW_TUNNEL_PATH_MAX)
            written +=
                snprintf(out + written, (size_t)(GW_TUNNEL_PATH_MAX + 1 - written), "REDACTED");
    }
    return out;
}

static void gw_exchange_log(gw_exchange_t *exchange) {
    gw_worker_t *worker = exchange->worker;
    uint64_t duration_us = clock_us() - exchange->started_us;
    /* A request the client gave up on before any answer: counted as "none",
     * logged as nginx does, 499. */
    gw_metrics_observe_request(&worker->metrics, exchange->protocol, exchange->status, duration_us);
    if (worker->server->access_log == NULL)
        return;
    char logged_path[GW_TUNNEL_PATH_MAX + 1];
    gw_access_entry_t entry = {
        .client = exchange->client_address,
        .sandbox_id = exchange->routed ? exchange->target.sandbox_id : NULL,
        .port = exchange->routed ? exchange->target.port : 0,
        .method = exchange->request.method ? exchange->request.method : "-",
        .path = gw_exchange_logged_path(exchange->request.path, logged_path),
        .status = exchange->status != 0 ? exchange->status : 499,
        .bytes_received = exchange->bytes_received,
        .bytes_sent = exchange->bytes_sent,
        .duration_us = duration_us,
        .protocol = gw_protocol_name(exchange->protocol),
        .held = exchange->held,
        .held_us = exchange->hold.waited_us,
    };
    gw_access_log_write(worker->server->access_log, &entry);
}

/* The sandbox's own framing decides whether its connection can carry another
 * request after a complete response, unless the head sent to it said close
 * (RFC 9112 §9.6: the server closes after this response, whatever its own head
 * says). */
static bool gw_exchange_upstream_reusable(const gw_exchange_t *exchange) {
    return exchange->state == GW_EXCHANGE_PROXYING &&
           exchange->response_state == GW_RESPONSE_DONE &&
           exchange->request_state == GW_REQUEST_DONE && !exchange->upstream_closes &&
           !exchange->upstream_eof && llhttp_should_keep_alive(&exchange->response_parser) &&
           evbuffer_get_length(gw_upstream_input(exchange)) == 0;
}

void gw_exchange_finish(gw_exchange_t *exchange) {
    if (exchange->state == GW_EXCHANGE_IDLE || exchange->state == GW_EXCHANGE_DONE)
        return;
    bool upstream_reusable = exchange->upstream != NULL && gw_exchange_upstream_reusable(exchange);
    gw_resume_cancel(&exchange->hold, GW_RESUME_GONE); /* still held: the client went away */
    gw_exchange_log(exchange);
    gw_activity_ended(exchange->activity, exchange->bytes_received, exchange->bytes_sent);
    exchange->activity = NULL;
    gw_exchange_set_state(exchange, GW_EXCHANGE_DONE);
    route_catalog_cancel(&exchange->waiter);
    gw_h2up_stream_close(exchange->h2up); /* cancels the sandbox's side unless it completed */
    exchange->h2up = NULL;
    if (exchange->h2up_body != NULL) {
        evbuffer_free(exchange->h2up_body);
        exchange->h2up_body = NULL;
    }
    gw_io_splice_free(exchange->splice);
    exchange->splice = NULL;
    route_record_unref(exchange->record);
    exchange->record = NULL;
    route_limit_release(exchange->limit);
    exchange->limit = NULL;
    if (exchange->upstream != NULL) {
        if (upstream_reusable) {
            exchange->upstream->requests++;
            gw_pool_put(&exchange->worker->pool, exchange->upstream);
        } else {
            gw_upstream_close(exchange->upstream);
        }
        exchange->upstream = NULL;
    }
}

/* Whether the client's connection can serve another request after the
 * gateway's own answer: before the body was read, only if there is no body
 * to skip. */
static bool gw_exchange_keeps_connection(const gw_exchange_t *exchange, int status) {
    const gw_request_t *request = &exchange->request;
    bool keep_alive = request->keep_alive && !exchange->worker->draining && status != 400 &&
                      status != 408 && status != 431 &&
                      (exchange->request_state == GW_REQUEST_DONE ||
                       (exchange->request_state != GW_REQUEST_HEAD && !request->has_body &&
                        !request->upgrade && exchange->body_forwarded == 0));
    if (exchange->request_state == GW_REQUEST_BODY && exchange->upstream != NULL)
        keep_alive = false;
    return keep_alive;
}

void gw_exchange_fail(gw_exchange_t *exchange, int status, const char *message) {
    if (exchange->state == GW_EXCHANGE_DONE)
        return;
    if (exchange->state == GW_EXCHANGE_IDLE)
        gw_exchange_begin(exchange);
    if (exchange->response_sent || exchange->state == GW_EXCHANGE_TUNNEL) {
        /* A started response can only end in a close. */
        exchange->side->abort(exchange->side_arg);
        return;
    }
    exchange->status = status;
    exchange->side->error(exchange->side_arg, status, message,
                          gw_exchange_keeps_connection(exchange, status));
}

/* A response of the gateway's own without a body, before anything was sent
 * to the sandbox. */
static void gw_exchange_respond(gw_exchange_t *exchange, int status, const gw_field_t *fields,
                                size_t count) {
    exchange->status = status;
    exchange->side->respond(exchange->side_arg, status, fields, count,
                            gw_exchange_keeps_connection(exchange, status));
}

void gw_exchange_error_extra(const gw_exchange_t *exchange, const gw_head_t *head,
                             gw_error_extra_t *extra) {
    memset(extra, 0, sizeof(*extra));
    if (head == NULL || !head->head_complete)
        return;
    const gw_header_t *origin = gw_head_find(head, "origin", 6);
    if (origin != NULL) {
        extra->origin = origin->value;
        extra->origin_length = origin->value_length;
    }
    if (exchange->token_form)
        extra->form_target = exchange->request.path;
}

/* ---- routing ---- */

static void gw_exchange_routed(route_lookup_status_t status, route_record_t *record, void *arg);
static void gw_exchange_dial(gw_exchange_t *exchange);
static void gw_exchange_h2up_open(gw_exchange_t *exchange);
static void gw_exchange_upstream_ready(gw_exchange_t *exchange);

/* The request's head is complete: what follows it is its body. */
static void gw_exchange_take_request(gw_exchange_t *exchange, const gw_head_t *head,
                                     const gw_request_t *request) {
    exchange->request_head = head;
    exchange->request = *request;
    exchange->request_state = GW_REQUEST_BODY;
    exchange->grpc = gw_head_is_grpc(head);
}

void gw_exchange_refuse(gw_exchange_t *exchange, const gw_head_t *head, const gw_request_t *request,
                        int status, const char *message) {
    gw_exchange_take_request(exchange, head, request);
    gw_exchange_fail(exchange, status, message);
}

void gw_exchange_start(gw_exchange_t *exchange, const gw_head_t *head,
                       const gw_request_t *request) {
    gw_exchange_take_request(exchange, head, request);
    if (exchange->protocol == GW_PROTOCOL_HTTP1 && exchange->grpc) {
        gw_exchange_fail(exchange, 505, GW_MESSAGE_GRPC_HTTP1);
        return;
    }
    const gw_config_t *config = exchange->worker->config;
    exchange->shared_host = route_host_is_shared(request->authority, request->authority_length,
                                                 config->domains, config->domain_count);
    route_host_status_t host_status =
        exchange->shared_host
            ? route_parse_shared(&request->shared, &exchange->target)
            : route_parse_host(request->authority, request->authority_length, config->domains,
                               config->domain_count, &exchange->target);
    if (host_status == ROUTE_HOST_FOREIGN_DOMAIN) {
        gw_exchange_fail(exchange, 421, GW_MESSAGE_MISDIRECTED);
        return;
    }
    if (host_status != ROUTE_HOST_OK) {
        gw_exchange_fail(exchange, 400, route_host_status_message(host_status));
        return;
    }
    exchange->routed = true;
    gw_exchange_set_state(exchange, GW_EXCHANGE_ROUTING);
    route_lookup_status_t lookup_status;
    route_record_t *record = NULL;
    int answered = route_catalog_lookup(exchange->worker->catalog, exchange->target.sandbox_id,
                                        &exchange->waiter, gw_exchange_routed, exchange,
                                        &lookup_status, &record);
    /* DESIGN "Activity": every routed request counts, whatever its answer,
     * and before it (a lookup that waits for Redis is under way). A cached
     * record remembers where its counters are. */
    exchange->activity =
        gw_activity_started(exchange->worker->activity, exchange->target.sandbox_id,
                            answered == 1 && record != NULL ? &record->activity_hint : NULL);
    if (answered == 1)
        gw_exchange_routed(lookup_status, record, exchange);
}

/* ---- private sandboxes in a browser (DESIGN "Auth") ---- */

/* The value of the query parameter name in target ("/p?a=1&name=v"), or NULL. */
static const char *gw_query_find(const char *target, const char *name, size_t *length) {
    const char *query = strchr(target, '?');
    const char *cursor = query != NULL ? query + 1 : NULL, *pair;
    size_t pair_length, name_length = strlen(name);
    while (gw_query_next(&cursor, &pair, &pair_length)) {
        if (pair_length > name_length && gw_query_pair_is(pair, pair_length, name)) {
            *length = pair_length - name_length - 1;
            return pair + name_length + 1;
        }
    }
    return NULL;
}

/* target without the query parameter name, other parameters in order, no "?"
 * when none is left; in the arena. */
static char *gw_query_without(const char *target, const char *name, arena_t *arena) {
    size_t length = strlen(target);
    char *out = arena_alloc(arena, length + 1);
    if (out == NULL)
        return NULL;
    const char *query = strchr(target, '?');
    size_t path = query != NULL ? (size_t)(query - target) : length;
    memcpy(out, target, path);
    size_t written = path;
    const char *cursor = query != NULL ? query + 1 : NULL, *pair;
    size_t pair_length;
    while (gw_query_next(&cursor, &pair, &pair_length)) {
        if (pair_length == 0 || gw_query_pair_is(pair, pair_length, name))
            continue;
        out[written] = written == path ? '?' : '&';
        written++;
        memcpy(out + written, pair, pair_length);
        written += pair_length;
    }
    out[written] = '\0';
    return out;
}

/* True if a Cookie of the request holds a valid access cookie for record. */
static bool gw_exchange_cookie_valid(gw_exchange_t *exchange, const route_record_t *record) {
    const gw_head_t *head = exchange->request_head;
    if (head == NULL || head->kind_count[GW_HEADER_COOKIE] == 0 || !record->secret.present)
        return false;
    /* The cookie is a credential only where the request cannot be a cross-site
     * forgery: every sandbox of the domain is the same site. */
    const gw_header_t *site = gw_head_find(head, "sec-fetch-site", 14);
    const gw_header_t *mode = gw_head_find(head, "sec-fetch-mode", 14);
    const char *method = exchange->request.method;
    bool navigation = mode != NULL && mode->value_length == 8 &&
                      memcmp(mode->value, "navigate", 8) == 0 &&
                      (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
    if (site != NULL && !navigation &&
        !(site->value_length == 11 && memcmp(site->value, "same-origin", 11) == 0) &&
        !(site->value_length == 4 && memcmp(site->value, "none", 4) == 0))
        return false;
    auth_cookie_key_t key;
    gw_server_cookie_key(exchange->worker->server, &key);
    uint64_t now = (uint64_t)time(NULL);
    bool valid = false;
    static const char name[] = AUTH_COOKIE_NAME "=";
    for (size_t i = head->kind_first[GW_HEADER_COOKIE]; i < head->header_count && !valid; i++) {
        const gw_header_t *cookie = &head->headers[i];
        if (cookie->kind != GW_HEADER_COOKIE)
            continue;
        const char *at = cookie->value, *end = cookie->value + cookie->value_length;
        while (at < end && !valid) {
            while (at < end && (*at == ' ' || *at == ';'))
                at++;
            const char *stop = memchr(at, ';', (size_t)(end - at));
            if (stop == NULL)
                stop = end;
            size_t pair = (size_t)(stop - at);
            if (pair > sizeof(name) - 1 && memcmp(at, name, sizeof(name) - 1) == 0)
                valid = auth_cookie_valid(&key, record->sandbox_id, record->secret.digest,
                                          at + sizeof(name) - 1, pair - (sizeof(name) - 1), now);
            at = stop;
        }
    }
    sodium_memzero(&key, sizeof(key));
    return valid;
}

/* The token once in the URL: 302 to the URL without it, with the cookie. */
static void gw_exchange_token_redirect(gw_exchange_t *exchange, const route_record_t *record) {
    const gw_config_t *config = exchange->worker->config;
    char *location = gw_query_without(exchange->request.path, GW_TOKEN_PARAMETER, exchange->arena);
    char *cookie = arena_alloc(exchange->arena, AUTH_COOKIE_VALUE_MAX + 128);
    if (location == NULL || cookie == NULL) {
        gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
        return;
    }
    auth_cookie_key_t key;
    gw_server_cookie_key(exchange->worker->server, &key);
    uint64_t ttl = config->auth_cookie_ttl_ms / 1000;
    char value[AUTH_COOKIE_VALUE_MAX];
    auth_cookie_make(&key, record->sandbox_id, record->secret.digest, (uint64_t)time(NULL) + ttl,
                     value);
    sodium_memzero(&key, sizeof(key));
    snprintf(cookie, AUTH_COOKIE_VALUE_MAX + 128,
             AUTH_COOKIE_NAME "=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%llu%s", value,
             (unsigned long long)ttl, exchange->https ? "; Secure" : "");
    gw_field_t fields[] = {
        {"Location", location, strlen(location)},
        {"Set-Cookie", cookie, strlen(cookie)},
        {"Cache-Control", "no-store", 8},
    };
    gw_exchange_respond(exchange, 302, fields, sizeof(fields) / sizeof(fields[0]));
}

/* A CORS preflight to a private sandbox carries no credential: the gateway
 * answers it, never with Access-Control-Allow-Credentials. */
static bool gw_exchange_preflight(gw_exchange_t *exchange) {
    const gw_head_t *head = exchange->request_head;
    if (strcmp(exchange->request.method, "OPTIONS") != 0 || head == NULL)
        return false;
    const gw_header_t *origin = gw_head_find(head, "origin", 6);
    const gw_header_t *method = gw_head_find(head, "access-control-request-method", 29);
    if (origin == NULL || method == NULL)
        return false;
    const gw_header_t *headers = gw_head_find(head, "access-control-request-headers", 30);
    gw_field_t fields[6];
    size_t count = 0;
    fields[count++] =
        (gw_field_t){"Access-Control-Allow-Origin", origin->value, origin->value_length};
    fields[count++] =
        (gw_field_t){"Access-Control-Allow-Methods", method->value, method->value_length};
    if (headers != NULL)
        fields[count++] =
            (gw_field_t){"Access-Control-Allow-Headers", headers->value, headers->value_length};
    fields[count++] = (gw_field_t){"Access-Control-Max-Age", "600", 3};
    fields[count++] = (gw_field_t){"Vary", "Origin", 6};
    gw_exchange_respond(exchange, 204, fields, count);
    return true;
}

/* A private sandbox's request without the token header, on a <port>-<id>
 * host: a preflight is answered, the token in the URL sets the cookie, a
 * valid cookie admits. Returns GW_STEP_ENDED when the request was answered;
 * else *admitted says whether a cookie admits it. */
static gw_step_t gw_exchange_browser_credentials(gw_exchange_t *exchange,
                                                 const route_record_t *record, bool *admitted) {
    *admitted = false;
    if (gw_exchange_preflight(exchange))
        return GW_STEP_ENDED;
    if (exchange->request.token != NULL)
        return GW_STEP_CONTINUE; /* the header decides, whatever the cookie says */
    const char *method = exchange->request.method;
    size_t length;
    const char *given = gw_query_find(exchange->request.path, GW_TOKEN_PARAMETER, &length);
    /* An empty parameter is no credential (the form came back empty). */
    if (given != NULL && length > 0 &&
        (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)) {
        char *token = arena_alloc(exchange->arena, length + 1);
        if (token == NULL) {
            gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
            return GW_STEP_ENDED;
        }
        size_t token_length = gw_query_decode(given, length, token);
        auth_result_t result = auth_token_check(&record->secret, token, token_length);
        sodium_memzero(token, token_length);
        if (result != AUTH_OK)
            gw_exchange_fail(exchange, 403, auth_result_message(AUTH_INVALID));
        else
            gw_exchange_token_redirect(exchange, record);
        return GW_STEP_ENDED;
    }
    *admitted = gw_exchange_cookie_valid(exchange, record);
    exchange->token_form = !*admitted;
    return GW_STEP_CONTINUE;
}

static void gw_exchange_resumed(gw_hold_t *hold, bool drained, route_lookup_status_t status,
                                route_record_t *record, void *arg);

/* The sandbox is paused and may be woken: the request waits for it, up to
 * resume_timeout, its bytes left unread. */
static void gw_exchange_hold(gw_exchange_t *exchange) {
    gw_worker_t *worker = exchange->worker;
    if (gw_resume_hold(worker->resume, &exchange->hold, exchange->target.sandbox_id,
                       gw_exchange_resumed, exchange) < 0) {
        gw_exchange_fail(exchange, 503, GW_MESSAGE_UNAVAILABLE);
        return;
    }
    exchange->held = true;
    gw_exchange_set_state(exchange, GW_EXCHANGE_RESUMING);
    gw_exchange_deadline(exchange, worker->config->resume_timeout_ms);
}

/* The record decides, counts the request against the sandbox's
 * limit, writes the sandbox's head, and takes or dials a connection. */
static void gw_exchange_proceed(gw_exchange_t *exchange, route_record_t *record) {
    route_decision_t *decision = &exchange->decision;
    const gw_request_t *request = &exchange->request;
    bool cookie_admits = false;
    if (!record->allow_public_traffic && !exchange->shared_host &&
        !route_record_port_public(record, exchange->target.port) &&
        gw_exchange_browser_credentials(exchange, record, &cookie_admits) == GW_STEP_ENDED)
        return;
    if (route_decide(record, exchange->target.port, &exchange->worker->server->address_policy,
                     request->token, request->token_length, cookie_admits, exchange->arena,
                     decision) < 0) {
        gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
        return;
    }
    if (decision->status != 0) {
        gw_exchange_fail(exchange, decision->status, decision->message);
        return;
    }
    /* DESIGN "Auto-resume", after the credential: a sandbox that may not be
     * woken (auto_resume false, or a private one through a public port). */
    if (record->paused &&
        (!record->auto_resume || (!record->allow_public_traffic &&
                                  route_record_port_public(record, exchange->target.port)))) {
        gw_exchange_fail(exchange, 409, GW_MESSAGE_PAUSED);
        return;
    }
    /* A request released from a hold kept its place under the limit. */
    if (record->max_connections > 0 && exchange->limit == NULL) {
        route_limit_status_t limit =
            route_limit_acquire(record->sandbox_id, record->max_connections, &exchange->limit);
        if (limit != ROUTE_LIMIT_ADMITTED) {
            char message[128];
            snprintf(message, sizeof(message),
                     "The sandbox has too many concurrent incoming connections (limit: %ld)",
                     record->max_connections);
            if (limit == ROUTE_LIMIT_REACHED)
                gw_exchange_fail(exchange, 429, message);
            else
                gw_exchange_fail(exchange, 503, GW_MESSAGE_UNAVAILABLE);
            return;
        }
    }
    if (record->paused) {
        gw_exchange_hold(exchange);
        return;
    }
    const gw_server_t *server = exchange->worker->server;
    gw_forward_t forward = {
        .host = decision->host != NULL ? decision->host : request->authority,
        .host_length = decision->host != NULL ? decision->host_length : request->authority_length,
        .masked = decision->host != NULL,
        .client_address = exchange->client_address,
        .https = exchange->https,
        .instance = server->instance,
        .instance_length = server->instance_length,
    };
    if (gw_http1_request_head_write(exchange->request_head, request, &forward, exchange->arena,
                                    &exchange->upstream_head, &exchange->upstream_head_length,
                                    &exchange->upstream_closes) < 0) {
        gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
        return;
    }
    /* DESIGN "gRPC and HTTP/2 to sandboxes": a stream on an h2c session (an
     * HTTP/1.1 client's gRPC was refused 505 before). */
    if (!request->upgrade &&
        (route_record_port_h2c(record, exchange->target.port) || exchange->grpc)) {
        gw_exchange_h2up_open(exchange);
        return;
    }
    exchange->dial_started_ms = clock_coarse_ms();
    exchange->retry_delay_ms = GW_RETRY_FIRST_MS;
    gw_exchange_set_state(exchange, GW_EXCHANGE_CONNECTING);
    exchange->upstream =
        gw_pool_take(&exchange->worker->pool, &record->pool_hint, exchange->target.port,
                     decision->pool_key, decision->pool_key_length);
    if (exchange->upstream != NULL)
        gw_exchange_upstream_ready(exchange);
    else
        gw_exchange_dial(exchange);
}

/* The catalog answered (at once, or later from the loop). */
static void gw_exchange_routed(route_lookup_status_t status, route_record_t *record, void *arg) {
    gw_exchange_t *exchange = arg;
    exchange->side->enter(exchange->side_arg);
    route_record_unref(exchange->record); /* the paused one, after a hold */
    exchange->record = record;
    switch (status) {
    case ROUTE_LOOKUP_UNAVAILABLE:
        gw_exchange_fail(exchange, 503, GW_MESSAGE_UNAVAILABLE);
        break;
    case ROUTE_LOOKUP_NOT_FOUND:
        gw_exchange_fail(exchange, 502, GW_MESSAGE_NOT_FOUND);
        break;
    case ROUTE_LOOKUP_MALFORMED:
        log_error("sandbox %s: malformed catalog record: %s", exchange->target.sandbox_id,
                  record && record->error ? record->error : "unknown");
        gw_exchange_fail(exchange, 502, GW_MESSAGE_MALFORMED_RECORD);
        break;
    case ROUTE_LOOKUP_FOUND:
        gw_exchange_proceed(exchange, record);
        break;
    }
    exchange->side->leave(exchange->side_arg);
}

/* The hold ended: the record changed (usually: it runs now, at its new addr),
 * or the gateway drains. */
static void gw_exchange_resumed(gw_hold_t *hold, bool drained, route_lookup_status_t status,
                                route_record_t *record, void *arg) {
    (void)hold; /* exchange->hold: its waited_us is set */
    gw_exchange_t *exchange = arg;
    gw_exchange_deadline(exchange, 0);
    if (drained) {
        exchange->side->enter(exchange->side_arg);
        gw_exchange_fail(exchange, 503, GW_MESSAGE_UNAVAILABLE);
        exchange->side->leave(exchange->side_arg);
        return;
    }
    gw_exchange_routed(status, record, exchange);
}

/* ---- a stream to the sandbox over h2c ---- */

static void gw_exchange_response_done(gw_exchange_t *exchange);

/* The request fields for the sandbox's HTTP/2 server, from the head written
 * for HTTP/1.1 (so every rewrite of DESIGN "What the sandbox receives"
 * applies): the pseudo-fields from its request line and Host, the rest but
 * HTTP/1.1's connection fields, and TE: trailers where the client sent it.
 * Returns the count, or -1 when memory is exhausted. */
static int gw_exchange_h2up_fields(gw_exchange_t *exchange, nghttp2_nv **out) {
    const char *text = exchange->upstream_head, *end = text + exchange->upstream_head_length;
    size_t lines = 0;
    for (const char *at = text; at < end; at++)
        lines += *at == '\n';
    nghttp2_nv *fields = arena_alloc(exchange->arena, (lines + 4) * sizeof(*fields));
    if (fields == NULL)
        return -1;
    const char *line_end = memchr(text, '\r', (size_t)(end - text));
    const char *space = memchr(text, ' ', (size_t)(line_end - text));
    const char *target = space + 1;
    const char *target_end = memchr(target, ' ', (size_t)(line_end - target));
    size_t count = 0;
    fields[count++] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)text, 7, (size_t)(space - text),
                                   NGHTTP2_NV_FLAG_NONE};
    fields[count++] =
        (nghttp2_nv){(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE};
    size_t authority = count++;
    fields[authority] =
        (nghttp2_nv){(uint8_t *)":authority", (uint8_t *)"", 10, 0, NGHTTP2_NV_FLAG_NONE};
    fields[count++] = (nghttp2_nv){(uint8_t *)":path", (uint8_t *)target, 5,
                                   (size_t)(target_end - target), NGHTTP2_NV_FLAG_NONE};
    static const char *const dropped[] = {"connection",        "keep-alive", "proxy-connection",
                                          "transfer-encoding", "upgrade",    "te"};
    for (const char *line = line_end + 2; line < end; line = line_end + 2) {
        line_end = memchr(line, '\r', (size_t)(end - line));
        if (line_end == NULL || line_end == line)
            break;
        const char *colon = memchr(line, ':', (size_t)(line_end - line));
        if (colon == NULL)
            continue;
        size_t name_length = (size_t)(colon - line);
        const char *value = colon + 1;
        while (value < line_end && (*value == ' ' || *value == '\t'))
            value++;
        size_t value_length = (size_t)(line_end - value);
        uint8_t *name = arena_alloc(exchange->arena, name_length);
        if (name == NULL)
            return -1;
        for (size_t i = 0; i < name_length; i++)
            name[i] = (uint8_t)(line[i] >= 'A' && line[i] <= 'Z' ? line[i] + 32 : line[i]);
        if (name_length == 4 && memcmp(name, "host", 4) == 0) {
            fields[authority].value = (uint8_t *)value;
            fields[authority].valuelen = value_length;
            continue;
        }
        bool drop = false;
        for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]) && !drop; i++)
            drop = name_length == strlen(dropped[i]) && memcmp(name, dropped[i], name_length) == 0;
        if (!drop)
            fields[count++] = (nghttp2_nv){name, (uint8_t *)value, name_length, value_length,
                                           NGHTTP2_NV_FLAG_NONE};
    }
    const gw_header_t *te = gw_head_find(exchange->request_head, "te", 2);
    if (te != NULL && te->value_length == 8 && strncasecmp(te->value, "trailers", 8) == 0)
        fields[count++] =
            (nghttp2_nv){(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, NGHTTP2_NV_FLAG_NONE};
    *out = fields;
    return (int)count;
}

static void gw_exchange_h2up_headers(void *owner, const gw_head_t *head, int status, bool end) {
    gw_exchange_t *exchange = owner;
    exchange->side->enter(exchange->side_arg);
    if (status < 200) {
        if (exchange->side->response_head(exchange->side_arg, head, status, false, false) < 0)
            gw_exchange_fail(exchange, 502, GW_MESSAGE_NO_MEMORY);
    } else {
        gw_exchange_deadline(exchange, 0);
        exchange->status = status;
        exchange->response_state = end ? GW_RESPONSE_DONE : GW_RESPONSE_BODY;
        const gw_request_t *request = &exchange->request;
        exchange->close_after_response = exchange->close_after_response ||
                                         exchange->worker->draining || !request->keep_alive ||
                                         exchange->request_state != GW_REQUEST_DONE;
        /* An HTTP/1.1 client needs a framing where the sandbox gave no length
         * and a body may follow: chunks, or a length of 0 when it ended with its head. */
        bool unframed = !exchange->side->decoded_body && status != 204 && status != 304 &&
                        strcmp(request->method, "HEAD") != 0 &&
                        head->kind_count[GW_HEADER_CONTENT_LENGTH] == 0;
        exchange->h2up_chunked = unframed && !end;
        bool empty = unframed && end;
        if ((exchange->h2up_chunked &&
             gw_head_add(&exchange->response_head, "transfer-encoding", 17, "chunked", 7) < 0) ||
            (empty && gw_head_add(&exchange->response_head, "content-length", 14, "0", 1) < 0)) {
            gw_exchange_fail(exchange, 502, GW_MESSAGE_NO_MEMORY);
            exchange->side->leave(exchange->side_arg);
            return;
        }
        if (exchange->side->response_head(exchange->side_arg, head, status, true,
                                          exchange->close_after_response) < 0) {
            gw_exchange_fail(exchange, 502, GW_MESSAGE_NO_MEMORY);
        } else {
            exchange->response_sent = true;
            if (end)
                gw_exchange_response_done(exchange);
            else
                exchange->side->flush(exchange->side_arg);
        }
    }
    exchange->side->leave(exchange->side_arg);
}

static void gw_exchange_h2up_data(void *owner, size_t length) {
    gw_exchange_t *exchange = owner;
    exchange->side->enter(exchange->side_arg);
    exchange->bytes_sent += length;
    size_t room;
    struct evbuffer *output = exchange->side->response_output(exchange->side_arg, &room);
    if (exchange->h2up_body != NULL) {
        if (exchange->h2up_chunked)
            evbuffer_add_printf(output, "%zx\r\n", length);
        evbuffer_remove_buffer(exchange->h2up_body, output, length);
        if (exchange->h2up_chunked)
            evbuffer_add(output, "\r\n", 2);
    }
    if (room > 0 && exchange->h2up_unconsumed == 0) {
        gw_h2up_consume(exchange->h2up, length);
    } else {
        /* The client is slow: the sandbox's window stays shut until it drained. */
        exchange->h2up_unconsumed += length;
        exchange->side->response_wait(exchange->side_arg);
    }
    exchange->side->flush(exchange->side_arg);
    exchange->side->leave(exchange->side_arg);
}

static void gw_exchange_h2up_ended(void *owner) {
    gw_exchange_t *exchange = owner;
    exchange->side->enter(exchange->side_arg);
    exchange->response_state = GW_RESPONSE_DONE;
    if (exchange->h2up_chunked) {
        /* The last chunk, and the trailers as an HTTP/1.1 trailer section. */
        struct evbuffer *output = exchange->side->response_output(exchange->side_arg, &(size_t){0});
        char *trailers = "\r\n";
        size_t length = 2;
        const gw_head_t *head = &exchange->response_head;
        if (head->in_trailers &&
            gw_http1_trailers_write(head, exchange->arena, &trailers, &length) < 0) {
            exchange->side->abort(exchange->side_arg);
            exchange->side->leave(exchange->side_arg);
            return;
        }
        evbuffer_add(output, "0\r\n", 3);
        evbuffer_add(output, trailers, length);
        exchange->side->flush(exchange->side_arg);
    }
    gw_exchange_response_done(exchange);
    exchange->side->leave(exchange->side_arg);
}

static void gw_exchange_h2up_trailers(void *owner, const gw_head_t *head) {
    (void)head; /* the exchange's response head: the side (or the chunked end) reads them */
    gw_exchange_h2up_ended(owner);
}

static void gw_exchange_h2up_failed(void *owner, gw_h2up_failure_t failure, int error) {
    gw_exchange_t *exchange = owner;
    exchange->side->enter(exchange->side_arg);
    gw_h2up_stream_close(exchange->h2up);
    exchange->h2up = NULL;
    if (failure == GW_H2UP_REFUSED && !exchange->h2up_retried && exchange->body_forwarded == 0) {
        /* Not processed (a GOAWAY below it): sent again once, on another session. */
        exchange->h2up_retried = true;
        gw_exchange_h2up_open(exchange);
    } else if (failure == GW_H2UP_UNREACHABLE) {
        GW_METRIC_ADD(&exchange->worker->metrics, upstream_dial_errors, 1);
        if (error == ETIMEDOUT)
            gw_exchange_fail(exchange, 504, GW_MESSAGE_TIMEOUT);
        else
            gw_exchange_fail(exchange, 502, GW_MESSAGE_PORT_CLOSED);
    } else if (failure == GW_H2UP_NO_H2) {
        gw_exchange_fail(exchange, 502, GW_MESSAGE_NO_H2);
    } else if (failure == GW_H2UP_RESET) {
        /* DESIGN: the sandbox's reset resets the client's stream. */
        exchange->side->abort(exchange->side_arg);
    } else {
        gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
    }
    exchange->side->leave(exchange->side_arg);
}

static void gw_exchange_h2up_writable(void *owner) {
    gw_exchange_t *exchange = owner;
    exchange->side->enter(exchange->side_arg);
    if (exchange->state == GW_EXCHANGE_PROXYING && exchange->request_state == GW_REQUEST_BODY)
        exchange->side->request_ready(exchange->side_arg);
    exchange->side->leave(exchange->side_arg);
}

static const gw_h2up_handler_t gw_exchange_h2up_handler = {
    .headers = gw_exchange_h2up_headers,
    .data = gw_exchange_h2up_data,
    .trailers = gw_exchange_h2up_trailers,
    .end = gw_exchange_h2up_ended,
    .failed = gw_exchange_h2up_failed,
    .writable = gw_exchange_h2up_writable,
};

/* Opens the request's stream (the head written already); its body follows as the side passes it. */
static void gw_exchange_h2up_open(gw_exchange_t *exchange) {
    nghttp2_nv *fields;
    int count = gw_exchange_h2up_fields(exchange, &fields);
    if (count < 0) {
        gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
        return;
    }
    const route_decision_t *decision = &exchange->decision;
    size_t room;
    struct evbuffer *output = exchange->side->response_output(exchange->side_arg, &room);
    if (!exchange->side->decoded_body) {
        /* An HTTP/1.1 client: the body is framed on its way (gw_exchange_h2up_data). */
        if (exchange->h2up_body == NULL)
            exchange->h2up_body = evbuffer_new();
        if (exchange->h2up_body == NULL) {
            gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
            return;
        }
        output = exchange->h2up_body;
    }
    bool body = exchange->request.has_body;
    gw_head_reset(&exchange->response_head, exchange->arena);
    exchange->h2up =
        gw_h2up_open(&exchange->worker->h2up_pool, &decision->address.any, decision->address_length,
                     decision->pool_key, decision->pool_key_length, fields, (size_t)count, !body,
                     &exchange->response_head, output, &gw_exchange_h2up_handler, exchange);
    if (exchange->h2up == NULL) {
        gw_exchange_fail(exchange, 502, GW_MESSAGE_PORT_CLOSED);
        return;
    }
    gw_exchange_set_state(exchange, GW_EXCHANGE_PROXYING);
    exchange->response_state = GW_RESPONSE_HEAD;
    if (body)
        exchange->side->request_ready(exchange->side_arg);
    else
        exchange->request_state = GW_REQUEST_DONE;
    if (exchange->request_state == GW_REQUEST_DONE && exchange->response_state == GW_RESPONSE_HEAD)
        gw_exchange_deadline(exchange, exchange->worker->config->upstream_response_timeout_ms);
}

/* ---- the upstream connection ---- */

/* The one place that decides whether a failure with the upstream is tried
 * again (nginx's ngx_http_upstream_next): within upstream_connect_retry, a
 * refused dial (a port that opens late) and a dial this process had no
 * descriptor for (clients finishing free some); and a reused connection lost
 * before any response byte, once, for an idempotent request whose body was
 * not sent (RFC 9110 §9.2.2). Anything else is answered. */
static void gw_exchange_next(gw_exchange_t *exchange, gw_failure_t failure, int error) {
    gw_worker_t *worker = exchange->worker;
    bool reused = exchange->upstream != NULL && exchange->upstream->requests > 0;
    gw_upstream_close(exchange->upstream);
    exchange->upstream = NULL;
    const gw_request_t *request = &exchange->request;
    if (failure == GW_FAILURE_LOST) {
        if (reused && !exchange->retried_on_fresh && request->idempotent &&
            exchange->body_forwarded == 0 && !request->has_body) {
            exchange->retried_on_fresh = true;
            gw_exchange_set_state(exchange, GW_EXCHANGE_CONNECTING);
            exchange->dial_started_ms = clock_coarse_ms();
            gw_exchange_dial(exchange);
            return;
        }
        gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
        return;
    }
    uint64_t elapsed = clock_coarse_ms() - exchange->dial_started_ms;
    bool again = (failure == GW_FAILURE_REFUSED && error == ECONNREFUSED) ||
                 (failure == GW_FAILURE_DIAL && (error == EMFILE || error == ENFILE));
    if (again && elapsed < worker->config->upstream_connect_retry_ms) {
        uint64_t delay = exchange->retry_delay_ms;
        uint64_t remaining = worker->config->upstream_connect_retry_ms - elapsed;
        if (delay > remaining)
            delay = remaining;
        exchange->retry_delay_ms = exchange->retry_delay_ms * 2 > GW_RETRY_MAX_MS
                                       ? GW_RETRY_MAX_MS
                                       : exchange->retry_delay_ms * 2;
        gw_exchange_deadline(exchange, delay);
        return;
    }
    GW_METRIC_ADD(&worker->metrics, upstream_dial_errors, 1);
    if (failure == GW_FAILURE_DIAL_TIMEOUT) {
        gw_exchange_fail(exchange, 504, GW_MESSAGE_TIMEOUT);
        return;
    }
    if (failure == GW_FAILURE_DIAL)
        log_warn("sandbox %s: cannot dial port %u: %s", exchange->target.sandbox_id,
                 (unsigned)exchange->target.port, strerror(error));
    else
        log_debug("sandbox %s: port %u not reachable: %s", exchange->target.sandbox_id,
                  (unsigned)exchange->target.port, strerror(error));
    gw_exchange_fail(exchange, 502, GW_MESSAGE_PORT_CLOSED);
}

static void gw_exchange_dial(gw_exchange_t *exchange) {
    const route_decision_t *decision = &exchange->decision;
    exchange->upstream =
        gw_upstream_dial(exchange->worker, &decision->address.any, decision->address_length,
                         decision->pool_key, decision->pool_key_length);
    if (exchange->upstream == NULL) {
        gw_exchange_next(exchange, GW_FAILURE_DIAL, errno);
        return;
    }
    gw_transport_set_handler(&exchange->upstream->transport, &gw_exchange_upstream_handler,
                             exchange);
}

static void gw_exchange_forward_response(gw_exchange_t *exchange);

/* The upstream is connected (or taken from the pool): send the head, and let
 * the side pass the body. */
static void gw_exchange_upstream_ready(gw_exchange_t *exchange) {
    gw_upstream_t *upstream = exchange->upstream;
    gw_upstream_set_state(upstream, GW_UPSTREAM_BUSY);
    gw_transport_set_handler(&upstream->transport, &gw_exchange_upstream_handler, exchange);
    gw_transport_read_limit(&upstream->transport, GW_READ_HIGH);
    gw_transport_write_low(&upstream->transport, 0);
    gw_transport_read(&upstream->transport, true);
    gw_exchange_set_state(exchange, GW_EXCHANGE_PROXYING);
    exchange->upstream_eof = false; /* a retry's fresh connection */
    exchange->response_state = GW_RESPONSE_HEAD;
    gw_head_reset(&exchange->response_head, exchange->arena);
    gw_http1_response_init(&exchange->response_parser, &exchange->response_head,
                           strcmp(exchange->request.method, "HEAD") == 0,
                           exchange->side->decoded_body);
    evbuffer_add(gw_upstream_output(exchange), exchange->upstream_head,
                 exchange->upstream_head_length);
    GW_METRIC_ADD(&exchange->worker->metrics, upstream_requests, 1);
    exchange->side->request_ready(exchange->side_arg);
}

static void gw_exchange_upstream_ended(gw_exchange_t *exchange);

static void gw_exchange_on_upstream_event(void *arg, gw_transport_event_t event) {
    gw_exchange_t *exchange = arg;
    int error = errno;
    exchange->side->enter(exchange->side_arg);
    if (exchange->state == GW_EXCHANGE_CONNECTING) {
        if (event == GW_TRANSPORT_CONNECTED)
            gw_exchange_upstream_ready(exchange);
        else if (event == GW_TRANSPORT_TIMEOUT)
            gw_exchange_next(exchange, GW_FAILURE_DIAL_TIMEOUT, ETIMEDOUT);
        else
            gw_exchange_next(exchange, GW_FAILURE_REFUSED, error ? error : ECONNREFUSED);
    } else if (exchange->state == GW_EXCHANGE_PROXYING) {
        /* EOF or an error from the sandbox. Bytes it sent before closing
         * still pass first; backpressure may hold some until the side
         * drains (gw_exchange_response_ready finishes then). */
        exchange->upstream_eof = true;
        gw_exchange_forward_response(exchange);
        if (exchange->state == GW_EXCHANGE_PROXYING &&
            evbuffer_get_length(gw_upstream_input(exchange)) == 0)
            gw_exchange_upstream_ended(exchange);
    }
    exchange->side->leave(exchange->side_arg);
}

/* A sandbox that writes its answer in pieces without TCP_NODELAY (Python's
 * http.server sends the head, then the body) holds each piece back until the
 * one before is acknowledged (Nagle), and on a kept-alive connection the
 * kernel delays that acknowledgement up to 40 ms: every such answer would
 * take 40 ms more. While an answer is unfinished it is acknowledged at once. */
static void gw_exchange_acknowledge_now(gw_exchange_t *exchange) {
    if (exchange->state != GW_EXCHANGE_PROXYING || exchange->upstream == NULL ||
        (exchange->response_state != GW_RESPONSE_HEAD &&
         exchange->response_state != GW_RESPONSE_BODY))
        return;
    int on = 1;
    setsockopt(gw_transport_fd(&exchange->upstream->transport), IPPROTO_TCP, TCP_QUICKACK, &on,
               sizeof(on));
}

static void gw_exchange_on_upstream_readable(void *arg) {
    gw_exchange_t *exchange = arg;
    exchange->side->enter(exchange->side_arg);
    gw_transport_read_more(&exchange->upstream->transport, GW_BUFFER_HIGH);
    if (exchange->state == GW_EXCHANGE_PROXYING) {
        gw_exchange_forward_response(exchange);
        gw_exchange_acknowledge_now(exchange);
    }
    exchange->side->leave(exchange->side_arg);
}

/* The upstream's output drained to its low mark: the side may pass more body. */
static void gw_exchange_on_upstream_writable(void *arg) {
    gw_exchange_t *exchange = arg;
    exchange->side->enter(exchange->side_arg);
    gw_transport_write_low(&exchange->upstream->transport, 0);
    if (exchange->state == GW_EXCHANGE_PROXYING && exchange->request_state == GW_REQUEST_BODY)
        exchange->side->request_ready(exchange->side_arg);
    exchange->side->leave(exchange->side_arg);
}

static const gw_transport_handler_t gw_exchange_upstream_handler = {
    .readable = gw_exchange_on_upstream_readable,
    .writable = gw_exchange_on_upstream_writable,
    .event = gw_exchange_on_upstream_event,
};

void gw_exchange_timeout(gw_exchange_t *exchange) {
    if (exchange->state == GW_EXCHANGE_RESUMING) {
        gw_resume_cancel(&exchange->hold, GW_RESUME_TIMEOUT);
        gw_exchange_fail(exchange, 504, GW_MESSAGE_NOT_RESUMED);
    } else if (exchange->state == GW_EXCHANGE_CONNECTING)
        gw_exchange_dial(exchange); /* the pause after a refused dial ended */
    else if (exchange->state == GW_EXCHANGE_PROXYING)
        gw_exchange_fail(exchange, 504, GW_MESSAGE_TIMEOUT);
}

/* ---- the request body ---- */

struct evbuffer *gw_exchange_request_output(const gw_exchange_t *exchange) {
    if (exchange->h2up != NULL)
        return gw_h2up_request_body(exchange->h2up);
    return exchange->upstream != NULL ? gw_upstream_output(exchange) : NULL;
}

size_t gw_exchange_request_room(gw_exchange_t *exchange) {
    if (exchange->h2up != NULL)
        return gw_h2up_request_room(exchange->h2up);
    gw_transport_t *transport = &exchange->upstream->transport;
    struct evbuffer *output = gw_transport_output(transport);
    size_t queued = evbuffer_get_length(output);
    if (queued >= GW_BUFFER_HIGH) {
        /* Full: write what the socket takes; wait only if it stays full (the
         * writable call, at the low mark, resumes the side). */
        gw_transport_flush(transport, false);
        queued = evbuffer_get_length(output);
    }
    if (queued >= GW_BUFFER_HIGH) {
        gw_transport_write_low(transport, GW_BUFFER_LOW);
        return 0;
    }
    return GW_BUFFER_HIGH - queued;
}

void gw_exchange_request_flush(gw_exchange_t *exchange) {
    if (exchange->h2up != NULL)
        gw_h2up_flush(exchange->h2up, false);
    else
        gw_transport_flush_soon(&exchange->upstream->transport);
}

void gw_exchange_request_done(gw_exchange_t *exchange) {
    if (exchange->h2up != NULL)
        gw_h2up_flush(exchange->h2up, true);
    else
        gw_transport_flush_soon(&exchange->upstream->transport);
    exchange->request_state = GW_REQUEST_DONE;
    /* From the whole request sent, the first response byte has
     * upstream_response_timeout. */
    if (exchange->response_state == GW_RESPONSE_HEAD && !exchange->response_sent)
        gw_exchange_deadline(exchange, exchange->worker->config->upstream_response_timeout_ms);
}

/* ---- the response ---- */

/* The tunnel keeps the request's path for its log line; the rest of the
 * request's memory goes back with the arena. */
static void gw_exchange_upgrade(gw_exchange_t *exchange) {
    size_t path_length = strnlen(exchange->request.path, GW_TUNNEL_PATH_MAX);
    exchange->tunnel_path = malloc(path_length + 1);
    if (exchange->tunnel_path != NULL) {
        memcpy(exchange->tunnel_path, exchange->request.path, path_length);
        exchange->tunnel_path[path_length] = '\0';
    }
    exchange->request.path = exchange->tunnel_path;
    exchange->request.authority = NULL;
    exchange->request.token = NULL;
    exchange->request_head = NULL;
    gw_head_reset(&exchange->response_head, NULL);
    exchange->request_state = GW_REQUEST_DONE;
    exchange->response_state = GW_RESPONSE_DONE;
    gw_exchange_set_state(exchange, GW_EXCHANGE_TUNNEL);
    exchange->side->upgraded(exchange->side_arg, exchange->upstream);
}

/* The response head is complete: pass it on and decide what follows. */
static gw_step_t gw_exchange_response_head(gw_exchange_t *exchange) {
    llhttp_t *parser = &exchange->response_parser;
    const gw_head_t *head = &exchange->response_head;
    int status = llhttp_get_status_code(parser);
    if (head->connection_names_framing) {
        log_warn("sandbox %s: bad response: Connection names a framing field",
                 exchange->target.sandbox_id);
        gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
        return GW_STEP_ENDED;
    }
    if (head->failed)
        goto out_of_memory;
    if (status >= 100 && status < 200 && status != 101) {
        /* Informational (100 Continue, 103 Early Hints): pass on, read on. */
        if (exchange->side->response_head(exchange->side_arg, head, status, false, false) < 0)
            goto out_of_memory;
        return GW_STEP_CONTINUE;
    }
    gw_exchange_deadline(exchange, 0);
    const gw_request_t *request = &exchange->request;
    if (status == 101 && !request->upgrade) {
        log_warn("sandbox %s: bad response: 101 to a request that asked for no upgrade",
                 exchange->target.sandbox_id);
        gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
        return GW_STEP_ENDED;
    }
    if (status == 101) {
        if (exchange->side->response_head(exchange->side_arg, head, status, true, false) < 0)
            goto out_of_memory;
        exchange->response_sent = true;
        exchange->status = status;
        gw_exchange_upgrade(exchange);
        return GW_STEP_ENDED;
    }
    /* Keep the client only if the response has its own length, the request
     * ended, and both sides want to keep the connection. */
    exchange->close_after_response = exchange->close_after_response || exchange->worker->draining ||
                                     !request->keep_alive || llhttp_message_needs_eof(parser) ||
                                     exchange->request_state != GW_REQUEST_DONE || request->upgrade;
    if (exchange->side->response_head(exchange->side_arg, head, status, true,
                                      exchange->close_after_response) < 0)
        goto out_of_memory;
    exchange->response_sent = true;
    exchange->status = status;
    exchange->response_state = GW_RESPONSE_BODY;
    return GW_STEP_CONTINUE;
out_of_memory:
    gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
    return GW_STEP_ENDED;
}

/* The response is complete in the side's output. */
static void gw_exchange_response_done(gw_exchange_t *exchange) {
    exchange->response_state = GW_RESPONSE_DONE;
    if (exchange->request_state != GW_REQUEST_DONE) {
        /* The sandbox answered before the whole request arrived: the rest of
         * the body cannot be told apart from a next request. */
        exchange->side->finished(exchange->side_arg, false);
        return;
    }
    exchange->side->finished(exchange->side_arg, !exchange->close_after_response);
}

/* Parses one piece of the upstream's input: a head is collected, a body
 * passes raw. Returns the step, and sets *stop when nothing more can be taken
 * now. */
static gw_step_t gw_exchange_response_piece(gw_exchange_t *exchange, bool *head_just_completed,
                                            bool *stop) {
    struct evbuffer *input = gw_upstream_input(exchange);
    size_t room;
    struct evbuffer *output = exchange->side->response_output(exchange->side_arg, &room);
    gw_head_t *head = &exchange->response_head;
    *stop = false;
    if (room == 0) {
        gw_transport_read(&exchange->upstream->transport, false);
        exchange->side->response_wait(exchange->side_arg);
        *stop = true;
        return GW_STEP_CONTINUE;
    }
    struct evbuffer_iovec piece = {.iov_base = (void *)"", .iov_len = 0};
    if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1 || piece.iov_len == 0) {
        /* After a head, an empty run completes a response without a body. */
        if (!*head_just_completed) {
            *stop = true;
            return GW_STEP_CONTINUE;
        }
        piece.iov_base = (void *)"";
        piece.iov_len = 0;
    }
    *head_just_completed = false;
    bool in_head = exchange->response_state == GW_RESPONSE_HEAD;
    if (in_head) {
        gw_exchange_deadline(exchange, 0);
        size_t allowed = GW_RESPONSE_HEAD_MAX + 1 - exchange->response_head_bytes;
        if (piece.iov_len > allowed)
            piece.iov_len = allowed;
    } else if (piece.iov_len > room) {
        piece.iov_len = room;
    }
    /* Only a chunked body differs from its bytes on the wire: others move as
     * they are, without a copy. */
    bool decoded = !in_head && exchange->side->decoded_body &&
                   (exchange->response_parser.flags & F_CHUNKED) != 0;
    size_t output_before = 0;
    if (decoded) {
        output_before = evbuffer_get_length(output);
        head->body_sink = output;
    }
    llhttp_errno_t error;
    size_t taken =
        gw_http1_parse(&exchange->response_parser, piece.iov_base, piece.iov_len, &error);
    if (decoded)
        head->body_sink = NULL;
    if (in_head) {
        evbuffer_drain(input, taken);
        exchange->response_head_bytes += taken;
    } else if (decoded) {
        evbuffer_drain(input, taken);
        exchange->bytes_sent += evbuffer_get_length(output) - output_before;
        if (head->failed) {
            gw_exchange_fail(exchange, 502, GW_MESSAGE_NO_MEMORY);
            return GW_STEP_ENDED;
        }
    } else if (taken > 0) {
        evbuffer_remove_buffer(input, output, taken);
        exchange->bytes_sent += taken;
    }
    if (error != HPE_OK && error != HPE_PAUSED && error != HPE_PAUSED_UPGRADE) {
        log_warn("sandbox %s: bad response: %s", exchange->target.sandbox_id,
                 llhttp_errno_name(error));
        gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
        return GW_STEP_ENDED;
    }
    if (head->head_complete && in_head) {
        head->head_complete = false;
        if (gw_exchange_response_head(exchange) == GW_STEP_ENDED)
            return GW_STEP_ENDED;
        *head_just_completed = true;
    }
    if (head->message_complete) {
        head->message_complete = false;
        if (exchange->response_state == GW_RESPONSE_HEAD) {
            /* An informational response ended; the final one follows. */
            gw_head_reset(head, exchange->arena);
            head->skip_body = strcmp(exchange->request.method, "HEAD") == 0;
            exchange->response_head_bytes = 0;
            return GW_STEP_CONTINUE;
        }
        gw_exchange_response_done(exchange);
        return GW_STEP_ENDED;
    }
    if (in_head && exchange->response_head_bytes > GW_RESPONSE_HEAD_MAX) {
        log_warn("sandbox %s: response head over %d bytes", exchange->target.sandbox_id,
                 GW_RESPONSE_HEAD_MAX);
        gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
        return GW_STEP_ENDED;
    }
    if (taken == 0 && piece.iov_len > 0)
        *stop = true;
    return GW_STEP_CONTINUE;
}

/* The spliced rest of a body arrived (or the move failed). */
static void gw_exchange_splice_done(gw_io_splice_t *splice, int error, void *arg) {
    gw_exchange_t *exchange = arg;
    exchange->side->enter(exchange->side_arg);
    exchange->bytes_sent += gw_io_splice_moved(splice);
    gw_io_splice_free(splice);
    exchange->splice = NULL;
    if (error != 0) {
        log_debug("sandbox %s: response body cut short: %s", exchange->target.sandbox_id,
                  strerror(error));
        exchange->side->abort(exchange->side_arg); /* a started response can only close */
    } else {
        gw_exchange_response_done(exchange);
    }
    exchange->side->leave(exchange->side_arg);
}

/* The rest of a large body of known length goes from the sandbox's socket to
 * the client's without entering user space, once nothing is buffered either
 * way. llhttp is not shown those bytes: the length is all it would check.
 * Without a pipe the copying path simply carries on. */
static void gw_exchange_try_splice(gw_exchange_t *exchange) {
    const llhttp_t *parser = &exchange->response_parser;
    if (exchange->splice != NULL || exchange->response_state != GW_RESPONSE_BODY ||
        exchange->upstream_eof || (parser->flags & F_CONTENT_LENGTH) == 0 ||
        (parser->flags & F_CHUNKED) != 0 || parser->content_length < GW_SPLICE_MIN ||
        evbuffer_get_length(gw_upstream_input(exchange)) > 0)
        return;
    int to = exchange->side->splice_fd(exchange->side_arg);
    size_t room;
    struct evbuffer *output = exchange->side->response_output(exchange->side_arg, &room);
    if (to < 0 || evbuffer_get_length(output) > 0)
        return;
    exchange->splice =
        gw_io_splice_start(exchange->worker->base, gw_transport_fd(&exchange->upstream->transport),
                           to, parser->content_length, gw_exchange_splice_done, exchange);
    if (exchange->splice != NULL)
        gw_transport_read(&exchange->upstream->transport, false);
}

/* Passes what the sandbox sent, then writes it to the client at once. */
static void gw_exchange_forward_response(gw_exchange_t *exchange) {
    exchange->side->hold(exchange->side_arg);
    bool head_just_completed = false;
    bool stop = false;
    while (!stop) {
        if (gw_exchange_response_piece(exchange, &head_just_completed, &stop) == GW_STEP_ENDED)
            return;
    }
    exchange->side->flush(exchange->side_arg);
    gw_exchange_try_splice(exchange);
}

/* The sandbox closed its side and every byte it sent was passed on. */
static void gw_exchange_upstream_ended(gw_exchange_t *exchange) {
    if (exchange->response_state == GW_RESPONSE_BODY &&
        llhttp_message_needs_eof(&exchange->response_parser)) {
        /* RFC 9112 §6.3: a response without a length ends when the connection does. */
        llhttp_finish(&exchange->response_parser);
        exchange->close_after_response = true;
        gw_exchange_response_done(exchange);
        return;
    }
    if (exchange->response_state == GW_RESPONSE_HEAD && exchange->response_head_bytes == 0) {
        gw_exchange_next(exchange, GW_FAILURE_LOST, 0);
        return;
    }
    /* Cut short mid-response: a started response can only end in a close. */
    gw_exchange_fail(exchange, 502, GW_MESSAGE_UPSTREAM_CLOSED);
}

void gw_exchange_response_ready(gw_exchange_t *exchange) {
    if (exchange->state == GW_EXCHANGE_PROXYING && exchange->h2up != NULL) {
        /* The client drained: the sandbox may send what it held back. */
        gw_h2up_consume(exchange->h2up, exchange->h2up_unconsumed);
        exchange->h2up_unconsumed = 0;
        return;
    }
    if (exchange->state != GW_EXCHANGE_PROXYING || exchange->upstream == NULL)
        return;
    if (!exchange->upstream_eof) {
        gw_transport_read(&exchange->upstream->transport, true);
        gw_exchange_forward_response(exchange);
        return;
    }
    gw_exchange_forward_response(exchange);
    if (exchange->state == GW_EXCHANGE_PROXYING && exchange->upstream != NULL &&
        evbuffer_get_length(gw_upstream_input(exchange)) == 0)
        gw_exchange_upstream_ended(exchange);
}
