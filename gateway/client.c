/* A client connection and the proxy state machine that serves its requests. */
#include "gateway/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth/token.h"
#include "gateway/error_page.h"
#include "gateway/io.h"
#include "gateway/proxy_protocol.h"
#include "gateway/upstream.h"
#include "gateway/worker.h"
#include "routing/mask.h"
#include "tls/tls.h"
#include "util/log.h"

/* Each direction buffers at most this much before reading from the other side
 * stops (backpressure); reading resumes when it drains below half. */
enum { GW_BUFFER_HIGH = 256 * 1024, GW_BUFFER_LOW = GW_BUFFER_HIGH / 2 };
/* Input read ahead of parsing: bounds memory while a head is routed. */
enum { GW_READ_HIGH = 64 * 1024 };
/* Encrypted bytes a TLS connection reads ahead, and writes ahead of its socket. */
enum { GW_TLS_SOCKET_HIGH = 64 * 1024 };
/* The most plaintext one TLS record carries (RFC 8446 §5.1). */
enum { GW_TLS_RECORD = 16 * 1024 };
/* A sized response body at least this large moves by splice (gateway/io.h). */
enum { GW_SPLICE_MIN = 64 * 1024 };
/* A sandbox's response head may be larger than a client's request head. */
enum { GW_RESPONSE_HEAD_MAX = 64 * 1024 };
/* First and longest pause between dials of a port that refused. */
enum { GW_RETRY_FIRST_MS = 25, GW_RETRY_MAX_MS = 250 };
enum { GW_ARENA_BLOCK = 4096 };
/* The longest path a tunnel keeps for its access-log line (the log cuts at 2 KiB too). */
enum { GW_TUNNEL_PATH_MAX = 2048 };
/* The most bytes of extensions one chunk may carry (DESIGN "What the sandbox receives"). */
enum { GW_CHUNK_EXTENSION_MAX = 4096 };
/* How long and how much a closing connection reads before it closes anyway. */
enum { GW_LINGER_MS = 2000, GW_LINGER_MAX_BYTES = 1024 * 1024 };

static const char GW_MESSAGE_BAD_REQUEST[] = "Bad request";
static const char GW_MESSAGE_NOT_FOUND[] = "The sandbox was not found";
static const char GW_MESSAGE_PORT_CLOSED[] = "The sandbox is running but port is not open";
static const char GW_MESSAGE_UNAVAILABLE[] = "Sandbox routing is temporarily unavailable";
static const char GW_MESSAGE_TIMEOUT[] = "The sandbox did not respond in time";
static const char GW_MESSAGE_MISDIRECTED[] = "Misdirected request";
static const char GW_MESSAGE_MALFORMED_RECORD[] = "The sandbox record is invalid";
static const char GW_MESSAGE_UPSTREAM_CLOSED[] = "The sandbox closed the connection without a response";
static const char GW_MESSAGE_HEAD_TOO_LARGE[] = "Request header too large";
static const char GW_MESSAGE_HEAD_TIMEOUT[] = "Request header timeout";
static const char GW_MESSAGE_ADDRESS_REFUSED[] = "The sandbox address is not allowed";
static const char GW_MESSAGE_LOOP[] = "Loop detected";

static void gw_client_read(struct bufferevent *bev, void *arg);
static void gw_client_write(struct bufferevent *bev, void *arg);
static void gw_client_event(struct bufferevent *bev, short events, void *arg);
static void gw_upstream_read(struct bufferevent *bev, void *arg);
static void gw_upstream_write(struct bufferevent *bev, void *arg);
static void gw_upstream_event(struct bufferevent *bev, short events, void *arg);
static void gw_client_timer(evutil_socket_t fd, short events, void *arg);
static void gw_client_parse_head(gw_client_t *client);
static void gw_client_parse_proxy_header(gw_client_t *client);
static void gw_client_forward_request(gw_client_t *client);
/* What a streaming step left behind: the request still proxying on this
 * upstream, or ended (the client moved on to its next request or is freed). */
typedef enum gw_step { GW_STEP_CONTINUE, GW_STEP_ENDED } gw_step_t;

static gw_step_t gw_client_forward_response(gw_client_t *client);
static void gw_client_upstream_lost(gw_client_t *client);
static void gw_client_upstream_ended(gw_client_t *client);
static void gw_client_dial(gw_client_t *client);
static void gw_client_fail(gw_client_t *client, int status, const char *message);
static void gw_tunnel_half_close(gw_client_t *client);
static void gw_tunnel_pass(gw_client_t *client, struct bufferevent *from, struct bufferevent *to);

static uint64_t gw_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static uint64_t gw_now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000;
}

/* Sets the current state's deadline, milliseconds from now. The timer event
 * is only ever moved earlier: a later deadline is found when the timer fires
 * early and re-arms itself, which saves an event_add per state change. */
static void gw_client_set_deadline(gw_client_t *client, uint64_t milliseconds) {
    client->deadline_ms = gw_now_ms() + milliseconds;
    if (client->timer_armed_ms != 0 && client->timer_armed_ms <= client->deadline_ms)
        return;
    struct timeval delay = {.tv_sec = (time_t)(milliseconds / 1000),
                            .tv_usec = (suseconds_t)(milliseconds % 1000) * 1000};
    evtimer_add(client->timer, &delay);
    client->timer_armed_ms = client->deadline_ms;
}

/* The current state has no deadline; a pending timer will find none. */
static void gw_client_clear_deadline(gw_client_t *client) { client->deadline_ms = 0; }

/* libevent's TLS filter seals a record for every write into it, as it comes:
 * a response head and its body would go out as two records, and a client then
 * needs two reads for them. While a response is passed on the filter is held
 * (its EV_WRITE off), and gw_client_flush seals what gathered: the first
 * record's worth made contiguous (one record), then the rest. */
static void gw_client_hold_records(gw_client_t *client) {
    if (!client->plain)
        bufferevent_disable(client->bev, EV_WRITE);
}

/* Writes the client's output now: a plain socket directly; TLS seals the held
 * records and sends them with one send. */
static void gw_client_flush(gw_client_t *client) {
    if (client->plain) {
        gw_io_flush(client->bev);
        return;
    }
    struct evbuffer *output = bufferevent_get_output(client->bev);
    size_t length = evbuffer_get_length(output);
    if (length > 1)
        evbuffer_pullup(output, (ev_ssize_t)(length < GW_TLS_RECORD ? length : GW_TLS_RECORD));
    bufferevent_enable(client->bev, EV_WRITE);
    gw_io_socket_send(&client->tls_socket);
}

/* ---- message heads, collected from llhttp's span callbacks ---- */

/* Appends to a growing arena string; returns 0 or -1. */
static int gw_text_append(arena_t *arena, char **text, size_t *length, size_t *capacity,
                          const char *at, size_t count) {
    if (*length + count + 1 > *capacity) {
        size_t new_capacity = *capacity ? *capacity * 2 : 64;
        while (new_capacity < *length + count + 1)
            new_capacity *= 2;
        char *grown = arena_alloc(arena, new_capacity);
        if (grown == NULL)
            return -1;
        if (*length > 0)
            memcpy(grown, *text, *length);
        *text = grown;
        *capacity = new_capacity;
    }
    memcpy(*text + *length, at, count);
    *length += count;
    (*text)[*length] = '\0';
    return 0;
}

static void gw_head_reset(gw_head_t *head, arena_t *arena) {
    memset(head, 0, sizeof(*head));
    head->arena = arena;
}

static int gw_head_on_target(llhttp_t *parser, const char *at, size_t length) {
    gw_head_t *head = parser->data;
    if (head->target_length == 0)
        head->target_offset = (size_t)(at - head->piece_start);
    if (gw_text_append(head->arena, &head->target, &head->target_length, &head->target_capacity,
                       at, length) < 0)
        head->failed = true;
    return 0;
}

static int gw_head_on_field(llhttp_t *parser, const char *at, size_t length) {
    gw_head_t *head = parser->data;
    if (gw_text_append(head->arena, &head->field, &head->field_length, &head->field_capacity, at,
                       length) < 0)
        head->failed = true;
    return 0;
}

static int gw_head_on_value(llhttp_t *parser, const char *at, size_t length) {
    gw_head_t *head = parser->data;
    /* RFC 9112 §5.2: a value continued on a line that starts with whitespace
     * (obs-fold) is rejected; llhttp passes it as a span that starts right
     * after a line feed. */
    const char *back = at;
    while (back > head->piece_start && (back[-1] == ' ' || back[-1] == '\t'))
        back--;
    char before = back > head->piece_start ? back[-1] : head->previous_byte;
    if (length > 0 && before == '\n') {
        head->folded = true;
        return -1;
    }
    if (gw_text_append(head->arena, &head->value, &head->value_length, &head->value_capacity, at,
                       length) < 0)
        head->failed = true;
    return 0;
}

static bool gw_ascii_prefix(const char *text, size_t length, const char *prefix);

static gw_header_kind_t gw_header_classify(const char *name, size_t length) {
#define GW_IS(literal) (length == sizeof(literal) - 1 && strncasecmp(name, literal, length) == 0)
    switch (length) {
    case 2:
        return GW_IS("te") ? GW_HEADER_HOP_BY_HOP : GW_HEADER_OTHER;
    case 3:
        return GW_IS("via") ? GW_HEADER_VIA : GW_HEADER_OTHER;
    case 4:
        return GW_IS("host") ? GW_HEADER_HOST : GW_HEADER_OTHER;
    case 7:
        return GW_IS("upgrade") ? GW_HEADER_UPGRADE : GW_HEADER_OTHER;
    case 9:
        return GW_IS("forwarded") ? GW_HEADER_FORWARDED : GW_HEADER_OTHER;
    case 10:
        return GW_IS("connection")   ? GW_HEADER_CONNECTION
               : GW_IS("keep-alive") ? GW_HEADER_HOP_BY_HOP
                                     : GW_HEADER_OTHER;
    case 14:
        if (GW_IS("content-length"))
            return GW_HEADER_CONTENT_LENGTH;
        if (GW_IS("e2b-sandbox-id"))
            return GW_HEADER_ROUTING;
        break;
    case 16:
        if (GW_IS("proxy-connection"))
            return GW_HEADER_HOP_BY_HOP;
        if (GW_IS("e2b-sandbox-port"))
            return GW_HEADER_ROUTING;
        break; /* X-Forwarded-Host, -Port: below */
    case 17:
        if (GW_IS("transfer-encoding"))
            return GW_HEADER_TRANSFER_ENCODING;
        break;
    case sizeof(AUTH_TOKEN_HEADER) - 1:
        if (GW_IS(AUTH_TOKEN_HEADER))
            return GW_HEADER_TOKEN;
        break;
    default:
        break;
    }
#undef GW_IS
    return gw_ascii_prefix(name, length, "x-forwarded-") ? GW_HEADER_FORWARDED : GW_HEADER_OTHER;
}

/* The next element of a comma-separated list (RFC 9110 §5.6.1) from *cursor
 * on, without its surrounding blanks; false at the end of value. */
static bool gw_list_next(const char *value, size_t value_length, size_t *cursor,
                         const char **element, size_t *element_length) {
    size_t i = *cursor;
    for (;;) {
        while (i < value_length && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        if (i == value_length) {
            *cursor = i;
            return false;
        }
        size_t start = i;
        while (i < value_length && value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end > start) {
            *cursor = i;
            *element = value + start;
            *element_length = end - start;
            return true;
        }
    }
}

/* True if value, a comma-separated list, holds token (case-insensitive). */
static bool gw_list_has(const char *value, size_t value_length, const char *token,
                        size_t token_length) {
    const char *element;
    size_t length, cursor = 0;
    while (gw_list_next(value, value_length, &cursor, &element, &length)) {
        if (length == token_length && strncasecmp(element, token, token_length) == 0)
            return true;
    }
    return false;
}

/* Whether a Connection value names a field that only it makes hop-by-hop:
 * any option but keep-alive and upgrade, whose fields (Keep-Alive, Upgrade)
 * go by their kind anyway. Most messages carry only those, and then no field
 * needs looking up in it. */
static bool gw_connection_names_fields(const char *value, size_t value_length) {
    const char *element;
    size_t length, cursor = 0;
    while (gw_list_next(value, value_length, &cursor, &element, &length)) {
        if (!(length == 10 && strncasecmp(element, "keep-alive", 10) == 0) &&
            !(length == 7 && strncasecmp(element, "upgrade", 7) == 0))
            return true;
    }
    return false;
}

static int gw_head_on_value_complete(llhttp_t *parser) {
    gw_head_t *head = parser->data;
    if (head->failed)
        return 0;
    if (head->header_count == head->header_capacity) {
        size_t new_capacity = head->header_capacity ? head->header_capacity * 2 : 16;
        gw_header_t *grown = arena_alloc(head->arena, new_capacity * sizeof(*grown));
        if (grown == NULL) {
            head->failed = true;
            return 0;
        }
        if (head->header_count > 0)
            memcpy(grown, head->headers, head->header_count * sizeof(*grown));
        head->headers = grown;
        head->header_capacity = new_capacity;
    }
    /* RFC 9110 §5.5: a field value excludes trailing whitespace. */
    size_t value_length = head->value_length;
    while (value_length > 0 &&
           (head->value[value_length - 1] == ' ' || head->value[value_length - 1] == '\t'))
        value_length--;
    gw_header_kind_t kind = gw_header_classify(head->field, head->field_length);
    if (kind == GW_HEADER_CONNECTION && gw_connection_names_fields(head->value, value_length)) {
        if (head->connection_count < 4)
            head->connection_headers[head->connection_count] = head->header_count;
        head->connection_count++;
        if (gw_list_has(head->value, value_length, "content-length", 14) ||
            gw_list_has(head->value, value_length, "transfer-encoding", 17) ||
            gw_list_has(head->value, value_length, "host", 4))
            head->connection_names_framing = true;
    }
    if (head->kind_count[kind]++ == 0)
        head->kind_first[kind] = (uint32_t)head->header_count;
    head->headers[head->header_count++] = (gw_header_t){
        .kind = kind,
        .name = head->field ? head->field : "",
        .name_length = head->field_length,
        .value = head->value ? head->value : "",
        .value_length = value_length,
    };
    head->field = NULL;
    head->field_length = head->field_capacity = 0;
    head->value = NULL;
    head->value_length = head->value_capacity = 0;
    return 0;
}

/* Pausing at the end of the head lets the gateway route and rewrite it
 * before a byte of the body is read. */
static int gw_head_on_headers_complete(llhttp_t *parser) {
    gw_head_t *head = parser->data;
    head->head_complete = true;
    int status = parser->type == HTTP_RESPONSE ? parser->status_code : 0;
    /* RFC 9110 §6.4.1: a response to HEAD, a 1xx (but 101, which becomes a
     * tunnel), a 204 or a 304 has no body whatever its Content-Length says. */
    if (head->skip_body || (status >= 100 && status < 200 && status != 101) || status == 204 ||
        status == 304) {
        /* llhttp: 1 means "no body"; the message then completes at once. */
        return 1;
    }
    return HPE_PAUSED;
}

static int gw_head_on_version_complete(llhttp_t *parser) {
    ((gw_head_t *)parser->data)->version_seen = true;
    return 0;
}

/* RFC 9112 §7.1.1 sets no limit on chunk extensions; the gateway passes them
 * on, so it bounds them as it bounds a head. */
static int gw_head_on_chunk_extension(llhttp_t *parser, const char *at, size_t length) {
    (void)at;
    gw_head_t *head = parser->data;
    head->extension_bytes += length;
    return head->extension_bytes > GW_CHUNK_EXTENSION_MAX ? -1 : 0;
}

/* The last chunk of a request body: pausing here lets the trailer section
 * that follows be filtered like a head (RFC 9110 §6.5) instead of passing raw. */
static int gw_head_on_chunk_header(llhttp_t *parser) {
    gw_head_t *head = parser->data;
    head->extension_bytes = 0;
    if (parser->content_length != 0)
        return 0;
    head->in_trailers = true;
    head->trailer_start = head->header_count;
    return HPE_PAUSED;
}

/* Pausing at the end of each message keeps pipelined bytes unread. */
static int gw_head_on_message_complete(llhttp_t *parser) {
    gw_head_t *head = parser->data;
    head->message_complete = true;
    return HPE_PAUSED;
}

static llhttp_settings_t gw_request_settings;
static llhttp_settings_t gw_response_settings;

static void gw_parser_settings_init(void) {
    static bool done;
    if (done)
        return;
    llhttp_settings_t *all[] = {&gw_request_settings, &gw_response_settings};
    for (size_t i = 0; i < 2; i++) {
        llhttp_settings_init(all[i]);
        all[i]->on_header_field = gw_head_on_field;
        all[i]->on_header_value = gw_head_on_value;
        all[i]->on_header_value_complete = gw_head_on_value_complete;
        all[i]->on_headers_complete = gw_head_on_headers_complete;
        all[i]->on_message_complete = gw_head_on_message_complete;
        all[i]->on_chunk_extension_name = gw_head_on_chunk_extension;
        all[i]->on_chunk_extension_value = gw_head_on_chunk_extension;
    }
    gw_request_settings.on_url = gw_head_on_target;
    gw_request_settings.on_version_complete = gw_head_on_version_complete;
    gw_request_settings.on_chunk_header = gw_head_on_chunk_header;
    gw_response_settings.on_status = gw_head_on_target;
    done = true;
}

static bool gw_name_is(const gw_header_t *header, const char *name, size_t length) {
    return header->name_length == length && strncasecmp(header->name, name, length) == 0;
}

static const gw_header_t *gw_head_find(const gw_head_t *head, const char *name, size_t length) {
    for (size_t i = 0; i < head->header_count; i++) {
        if (gw_name_is(&head->headers[i], name, length))
            return &head->headers[i];
    }
    return NULL;
}

/* RFC 9110 §7.6.1: Connection and the fields it names, and the classic
 * hop-by-hop fields, are for one hop only. */
static bool gw_is_hop_by_hop(const gw_head_t *head, const gw_header_t *header) {
    if (header->kind == GW_HEADER_CONNECTION || header->kind == GW_HEADER_HOP_BY_HOP ||
        header->kind == GW_HEADER_UPGRADE)
        return true;
    /* A Connection naming a framing field makes the message bad
     * (connection_names_framing): only other fields are looked up. */
    if (head->connection_count == 0)
        return false;
    bool all = head->connection_count > 4;
    size_t count = all ? head->header_count : head->connection_count;
    for (size_t i = 0; i < count; i++) {
        const gw_header_t *connection = &head->headers[all ? i : head->connection_headers[i]];
        if (connection->kind == GW_HEADER_CONNECTION &&
            gw_list_has(connection->value, connection->value_length, header->name,
                        header->name_length))
            return true;
    }
    return false;
}

/* ---- request lifecycle ---- */

static void gw_client_reset_request(gw_client_t *client) {
    arena_reset(&client->arena);
    client->request_state = GW_REQUEST_HEAD;
    gw_head_reset(&client->request_head, &client->arena);
    llhttp_init(&client->request_parser, HTTP_REQUEST, &gw_request_settings);
    client->request_parser.data = &client->request_head;
    client->request_head_bytes = 0;
    client->request_started = false;
    client->request_keep_alive = false;
    client->request_has_body = false;
    client->request_idempotent = false;
    client->request_upgrade = false;
    client->method = NULL;
    client->path = NULL;
    client->routed = false;
    memset(&client->target, 0, sizeof(client->target));
    client->upstream_head = NULL;
    client->upstream_closes = false;
    client->upstream_head_length = 0;
    client->retried_on_fresh = false;
    client->body_forwarded = 0;
    client->trailer_bytes = 0;
    client->bytes_received = 0;
    client->bytes_sent = 0;
    client->status = 0;
    client->response_state = GW_RESPONSE_NONE;
    gw_head_reset(&client->response_head, &client->arena);
    client->response_head_bytes = 0;
    client->response_sent = false;
    client->upstream_eof = false;
    client->close_after_response = false;
}

static void gw_client_log_request(gw_client_t *client) {
    gw_worker_t *worker = client->worker;
    uint64_t duration_us = gw_now_us() - client->started_us;
    gw_metrics_observe_request(&worker->metrics, client->status, duration_us);
    if (worker->server->access_log == NULL)
        return;
    gw_access_entry_t entry = {
        .client = client->address_text,
        .sandbox_id = client->routed ? client->target.sandbox_id : NULL,
        .port = client->routed ? client->target.port : 0,
        .method = client->method ? client->method : "-",
        .path = client->path,
        .status = client->status,
        .bytes_received = client->bytes_received,
        .bytes_sent = client->bytes_sent,
        .duration_us = duration_us,
    };
    gw_access_log_write(worker->server->access_log, &entry);
}

/* Releases what the current request holds: catalog wait, route, limit, upstream. */
static void gw_client_release_request(gw_client_t *client, bool upstream_reusable) {
    route_catalog_cancel(&client->waiter);
    gw_io_splice_free(client->splice);
    client->splice = NULL;
    route_record_unref(client->record);
    client->record = NULL;
    if (client->limit != NULL) {
        route_limit_release(client->limit);
        client->limit = NULL;
    }
    if (client->upstream != NULL) {
        if (upstream_reusable) {
            client->upstream->requests++;
            gw_pool_put(&client->worker->pool, client->upstream);
        } else {
            gw_upstream_close(client->upstream);
        }
        client->upstream = NULL;
    }
}

void gw_client_close(gw_client_t *client) {
    if (client->started_us != 0 && client->request_started && client->status != 0)
        gw_client_log_request(client);
    gw_client_release_request(client, false);
    if (client->state == GW_CLIENT_TUNNEL)
        GW_METRIC_ADD(&client->worker->metrics, tunnels, -1);
    GW_METRIC_ADD(&client->worker->metrics, client_connections, -1);
    if (client->timer != NULL)
        event_free(client->timer);
    gw_io_reader_free(&client->reader);
    gw_io_socket_free(&client->tls_socket);
    if (client->bev != NULL)
        bufferevent_free(client->bev);
    arena_free(&client->arena);
    free(client->tunnel_path);
    gw_worker_t *worker = client->worker;
    LIST_REMOVE(client, link);
    free(client);
    gw_worker_client_closed(worker);
}

static void gw_client_linger(gw_client_t *client);

static void gw_client_linger_after_drain(void *arg) { gw_client_linger(arg); }

/* Discards what a closing client still sends, up to a bound. */
static void gw_client_linger_read(struct bufferevent *bev, void *arg) {
    gw_client_t *client = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    client->bytes_discarded += evbuffer_get_length(input);
    evbuffer_drain(input, evbuffer_get_length(input));
    if (client->bytes_discarded > GW_LINGER_MAX_BYTES)
        gw_client_close(client);
}

static void gw_client_linger_event(struct bufferevent *bev, short events, void *arg) {
    (void)bev;
    (void)events;
    gw_client_close(arg);
}

/* The last response is in the kernel: half-close and read until the client
 * closes too. Closing with unread bytes would make the kernel send a reset,
 * which can destroy the response before the client reads it (RFC 9112 §9.6).
 * When the whole request was read and nothing else arrived, there is nothing
 * to reset over, and the connection closes at once (as nginx's lingering_close
 * on: it lingers only when more data may come). */
static void gw_client_linger(gw_client_t *client) {
    /* Only a plain socket: a TLS bufferevent may still hold encrypted bytes
     * below its (empty) output, which its shutdown flushes. */
    if (client->plain && client->request_state == GW_REQUEST_DONE &&
        evbuffer_get_length(bufferevent_get_input(client->bev)) == 0) {
        gw_client_close(client);
        return;
    }
    /* The last records must reach the kernel before the close_notify and
     * the close: closing would drop them. */
    if (gw_io_socket_when_drained(&client->tls_socket, gw_client_linger_after_drain, client))
        return;
    tls_bufferevent_shutdown_write(client->bev);
    bufferevent_setcb(client->bev, gw_client_linger_read, NULL, gw_client_linger_event, client);
    gw_io_read_watermark(&client->reader, 0);
    gw_io_read_enable(&client->reader);
    gw_client_set_deadline(client, GW_LINGER_MS);
}

/* Closes once everything written so far has reached the kernel. */
static void gw_client_close_after_flush(gw_client_t *client) {
    client->state = GW_CLIENT_CLOSING;
    gw_io_read_disable(&client->reader);
    if (evbuffer_get_length(bufferevent_get_output(client->bev)) == 0) {
        gw_client_linger(client);
        return;
    }
    bufferevent_setwatermark(client->bev, EV_WRITE, 0, 0);
    bufferevent_enable(client->bev, EV_WRITE);
}

/* Waits for the next request on a kept-alive connection. */
static void gw_client_wait_next_request(gw_client_t *client) {
    gw_client_reset_request(client);
    client->state = GW_CLIENT_READING_HEAD;
    client->started_us = 0;
    gw_client_set_deadline(client, client->worker->config->client_idle_timeout_ms);
    bufferevent_setwatermark(client->bev, EV_WRITE, 0, 0);
    gw_io_read_enable(&client->reader);
    /* Pipelined bytes may be waiting already; parse them from the loop, not
     * from here, so a long pipeline never deepens the stack. */
    if (evbuffer_get_length(bufferevent_get_input(client->bev)) > 0)
        bufferevent_trigger(client->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

/* The request's response is complete in the client's output. */
static void gw_client_end_request(gw_client_t *client, bool keep_alive, bool upstream_reusable) {
    keep_alive = keep_alive && !client->worker->draining;
    /* A plain connection that closes now sends its FIN with the last bytes. */
    if (client->plain && !keep_alive)
        gw_io_flush_last(client->bev);
    else
        gw_client_flush(client);
    gw_client_log_request(client);
    client->request_started = false; /* logged: gw_client_close must not log it again */
    gw_client_release_request(client, upstream_reusable);
    gw_client_clear_deadline(client);
    if (keep_alive)
        gw_client_wait_next_request(client);
    else
        gw_client_close_after_flush(client);
}

/* Sends a response of the gateway's own. It is the one error path of a
 * request: idempotent, and once a response byte went out it can only close. */
static void gw_client_fail(gw_client_t *client, int status, const char *message) {
    if (client->state == GW_CLIENT_CLOSING)
        return;
    if (client->response_sent || client->state == GW_CLIENT_TUNNEL) {
        gw_client_close(client);
        return;
    }
    /* Before the body was read, the connection can serve another request
     * only if there is no body to skip. */
    bool keep_alive = client->request_keep_alive && !client->worker->draining && status != 400 && status != 408 &&
                      status != 431 &&
                      (client->request_state == GW_REQUEST_DONE ||
                       (client->request_state != GW_REQUEST_HEAD && !client->request_has_body &&
                        !client->request_upgrade && client->body_forwarded == 0));
    if (client->request_state == GW_REQUEST_BODY && client->upstream != NULL)
        keep_alive = false;
    gw_error_client_t browser = {0};
    const gw_header_t *header;
    const gw_head_t *head = &client->request_head;
    if (client->request_state != GW_REQUEST_HEAD || head->head_complete) {
        if ((header = gw_head_find(head, "user-agent", 10)) != NULL)
            browser.user_agent = header->value;
        if ((header = gw_head_find(head, "accept", 6)) != NULL)
            browser.accept = header->value;
        if ((header = gw_head_find(head, "sec-fetch-mode", 14)) != NULL)
            browser.sec_fetch_mode = header->value;
        browser.has_x_requested_with = gw_head_find(head, "x-requested-with", 16) != NULL;
    }
    struct evbuffer *output = bufferevent_get_output(client->bev);
    size_t before = evbuffer_get_length(output);
    gw_error_render(output, status, message, client->routed ? client->target.sandbox_id : NULL,
                    client->routed ? client->target.port : 0, gw_error_wants_html(&browser),
                    !keep_alive);
    client->bytes_sent += evbuffer_get_length(output) - before;
    client->status = status;
    client->request_started = true;
    if (client->started_us == 0)
        client->started_us = gw_now_us();
    gw_client_end_request(client, keep_alive, false);
}

/* ---- routing ---- */

static bool gw_ascii_prefix(const char *text, size_t length, const char *prefix) {
    size_t prefix_length = strlen(prefix);
    return length >= prefix_length && strncasecmp(text, prefix, prefix_length) == 0;
}

static const char *const gw_idempotent_methods[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE",
                                                     "TRACE"};

static void gw_client_routed(route_lookup_status_t status, route_record_t *record, void *arg);

/* True if the request carries this gateway's own Via entry (RFC 9110 §7.6.3:
 * "protocol received-by [comment]", a list): it went round a loop through a
 * balancer, NAT or another gateway back here. */
static bool gw_client_passed_here(const gw_client_t *client) {
    const gw_head_t *head = &client->request_head;
    const gw_server_t *server = client->worker->server;
    for (size_t i = 0; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (header->kind != GW_HEADER_VIA)
            continue;
        const char *element;
        size_t length, cursor = 0;
        while (gw_list_next(header->value, header->value_length, &cursor, &element, &length)) {
            size_t protocol = 0;
            while (protocol < length && element[protocol] != ' ' && element[protocol] != '\t')
                protocol++;
            const char *received_by = element + protocol;
            size_t rest = length - protocol;
            while (rest > 0 && (*received_by == ' ' || *received_by == '\t')) {
                received_by++;
                rest--;
            }
            size_t name_length = 0;
            while (name_length < rest && received_by[name_length] != ' ' &&
                   received_by[name_length] != '\t')
                name_length++;
            if (name_length == server->instance_length &&
                memcmp(received_by, server->instance, name_length) == 0)
                return true;
        }
    }
    return false;
}

/* The request head is complete: check it, find its sandbox, and route it. */
static void gw_client_head_complete(gw_client_t *client) {
    gw_head_t *head = &client->request_head;
    llhttp_t *parser = &client->request_parser;
    if (head->failed) {
        gw_client_fail(client, 500, "Out of memory");
        return;
    }
    gw_client_clear_deadline(client);
    client->request_state = GW_REQUEST_BODY;
    client->method = llhttp_method_name(llhttp_get_method(parser));
    client->path = head->target;
    client->request_keep_alive = llhttp_should_keep_alive(parser);
    client->request_has_body = (parser->flags & F_CHUNKED) || parser->content_length > 0;
    client->request_upgrade = parser->upgrade;
    for (size_t i = 0; i < sizeof(gw_idempotent_methods) / sizeof(gw_idempotent_methods[0]); i++) {
        if (strcmp(client->method, gw_idempotent_methods[i]) == 0)
            client->request_idempotent = true;
    }
    if (llhttp_get_http_major(parser) != 1 || llhttp_get_method(parser) == HTTP_CONNECT ||
        head->target == NULL) {
        client->request_keep_alive = false;
        gw_client_fail(client, 400, GW_MESSAGE_BAD_REQUEST);
        return;
    }

    /* RFC 9112 §3.2.2: an absolute-form target's authority replaces Host. */
    const char *authority = NULL;
    size_t authority_length = 0;
    const char *target = head->target;
    size_t target_length = head->target_length;
    size_t scheme_length = gw_ascii_prefix(target, target_length, "http://")    ? 7
                           : gw_ascii_prefix(target, target_length, "https://") ? 8
                                                                                : 0;
    if (scheme_length > 0) {
        authority = target + scheme_length;
        authority_length = strcspn(authority, "/?#");
        const char *rest = authority + authority_length;
        if (*rest == '\0' || *rest == '#') {
            client->path = "/";
        } else if (*rest == '?') {
            /* "http://h?q" has the origin-form "/?q" (RFC 9112 §3.2.1). */
            char *path = arena_alloc(&client->arena, strlen(rest) + 2);
            if (path == NULL) {
                gw_client_fail(client, 500, "Out of memory");
                return;
            }
            path[0] = '/';
            strcpy(path + 1, rest);
            client->path = path;
        } else {
            client->path = rest;
        }
    }
    size_t host_count = head->kind_count[GW_HEADER_HOST];
    if (host_count > 0 && scheme_length == 0) {
        const gw_header_t *host = &head->headers[head->kind_first[GW_HEADER_HOST]];
        authority = host->value;
        authority_length = host->value_length;
    }
    /* RFC 9112 §6.1: the gateway passes bodies through unchanged, so the only
     * transfer coding it accepts is a single "chunked" (any other coding, or
     * chunked not last, leaves the length unknown: a smuggling vector). */
    size_t transfer_encodings = head->kind_count[GW_HEADER_TRANSFER_ENCODING];
    bool transfer_encoding_valid = true;
    if (transfer_encodings == 1) {
        const gw_header_t *coding =
            &head->headers[head->kind_first[GW_HEADER_TRANSFER_ENCODING]];
        transfer_encoding_valid =
            coding->value_length == 7 && strncasecmp(coding->value, "chunked", 7) == 0;
    }
    size_t tokens = head->kind_count[GW_HEADER_TOKEN];
    /* RFC 9112 §3.2: more than one Host is an error. RFC 9112 §6.1: a
     * Transfer-Encoding in an HTTP/1.0 request is faulty framing. A Connection
     * naming a framing field would have it removed under the body it frames.
     * Two tokens: which one counts would be the attacker's choice. */
    if (host_count > 1 || transfer_encodings > 1 || !transfer_encoding_valid ||
        (transfer_encodings > 0 && llhttp_get_http_minor(parser) == 0) ||
        head->connection_names_framing || tokens > 1) {
        client->request_keep_alive = false;
        gw_client_fail(client, 400, GW_MESSAGE_BAD_REQUEST);
        return;
    }
    if (authority == NULL || authority_length == 0) {
        gw_client_fail(client, 400, route_host_status_message(ROUTE_HOST_INVALID_HOST));
        return;
    }
    client->client_authority = authority;
    client->client_authority_length = authority_length;
    if (head->kind_count[GW_HEADER_VIA] > 0 && gw_client_passed_here(client)) {
        gw_client_fail(client, 508, GW_MESSAGE_LOOP);
        return;
    }

    route_host_status_t host_status =
        route_parse_host(authority, authority_length, client->worker->config->domains,
                         client->worker->config->domain_count, &client->target);
    if (host_status == ROUTE_HOST_FOREIGN_DOMAIN) {
        gw_client_fail(client, 421, GW_MESSAGE_MISDIRECTED);
        return;
    }
    if (host_status != ROUTE_HOST_OK) {
        gw_client_fail(client, 400, route_host_status_message(host_status));
        return;
    }
    client->routed = true;
    /* Reading stays on while routing: what arrives meanwhile waits in the
     * input buffer (its read watermark bounds it), with no epoll change. */
    client->state = GW_CLIENT_ROUTING;
    route_lookup_status_t lookup_status;
    route_record_t *record = NULL;
    if (route_catalog_lookup(client->worker->catalog, client->target.sandbox_id, &client->waiter,
                             gw_client_routed, client, &lookup_status, &record) == 1)
        gw_client_routed(lookup_status, record, client);
}

/* Appends to a head being written into out (whose capacity the caller sized
 * from the parts); both head writers below use it. */
#define GW_PUT(data, count)                                                                        \
    do {                                                                                           \
        memcpy(out + length, (data), (count));                                                     \
        length += (count);                                                                         \
    } while (0)
#define GW_PUT_LITERAL(literal) GW_PUT(literal, sizeof(literal) - 1)

/* Writes the request head the sandbox receives (DESIGN "What the sandbox receives"). */
static int gw_client_rewrite_head(gw_client_t *client, const route_record_t *record) {
    const gw_head_t *head = &client->request_head;
    const char *client_host = client->client_authority;
    size_t client_host_length = client->client_authority_length;
    size_t path_length = strlen(client->path);
    char masked_host[300];
    int masked_length = -1;
    if (record->mask_request_host != NULL) {
        masked_length = route_mask_expand(record->mask_request_host, client->target.port,
                                          masked_host, sizeof(masked_host));
        if (masked_length < 0)
            return -1;
    }
    bool http10 = llhttp_get_http_minor(&client->request_parser) == 0;
    const gw_server_t *server = client->worker->server;
    size_t capacity = 256 + path_length + client_host_length * 2 + sizeof(masked_host) +
                      server->instance_length;
    for (size_t i = 0; i < head->header_count; i++)
        capacity += head->headers[i].name_length + head->headers[i].value_length + 4;
    char *out = arena_alloc(&client->arena, capacity);
    if (out == NULL)
        return -1;
    size_t length = 0;
    GW_PUT(client->method, strlen(client->method));
    GW_PUT_LITERAL(" ");
    GW_PUT(client->path, path_length);
    if (http10)
        GW_PUT_LITERAL(" HTTP/1.0\r\n");
    else
        GW_PUT_LITERAL(" HTTP/1.1\r\n");
    GW_PUT_LITERAL("Host: ");
    if (masked_length >= 0)
        GW_PUT(masked_host, (size_t)masked_length);
    else
        GW_PUT(client_host, client_host_length);
    GW_PUT_LITERAL("\r\n");
    for (size_t i = 0; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (header->kind == GW_HEADER_UPGRADE && client->request_upgrade) {
            /* kept on upgrade requests, with Connection: upgrade below */
        } else if (header->kind == GW_HEADER_HOST || header->kind == GW_HEADER_FORWARDED ||
                   header->kind == GW_HEADER_TOKEN || header->kind == GW_HEADER_ROUTING ||
                   gw_is_hop_by_hop(head, header)) {
            continue;
        }
        GW_PUT(header->name, header->name_length);
        GW_PUT_LITERAL(": ");
        GW_PUT(header->value, header->value_length);
        GW_PUT_LITERAL("\r\n");
    }
    if (masked_length >= 0) {
        GW_PUT_LITERAL("X-Forwarded-Host: ");
        GW_PUT(client_host, client_host_length);
        GW_PUT_LITERAL("\r\n");
    }
    GW_PUT_LITERAL("X-Forwarded-For: ");
    GW_PUT(client->address_text, strlen(client->address_text));
    if (client->https)
        GW_PUT_LITERAL("\r\nX-Forwarded-Proto: https\r\n");
    else
        GW_PUT_LITERAL("\r\nX-Forwarded-Proto: http\r\n");
    /* RFC 9110 §7.6.3, and how a loop through other hops is found. */
    GW_PUT_LITERAL("Via: 1.1 ");
    GW_PUT(server->instance, server->instance_length);
    GW_PUT_LITERAL("\r\n");
    if (client->request_upgrade)
        GW_PUT_LITERAL("Connection: upgrade\r\n");
    else if (http10)
        GW_PUT_LITERAL("Connection: close\r\n");
    GW_PUT_LITERAL("\r\n");
    client->upstream_closes = http10;
    client->upstream_head = out;
    client->upstream_head_length = length;
    return 0;
}

static void gw_client_routed(route_lookup_status_t status, route_record_t *record, void *arg) {
    gw_client_t *client = arg;
    client->record = record;
    switch (status) {
    case ROUTE_LOOKUP_UNAVAILABLE:
        gw_client_fail(client, 503, GW_MESSAGE_UNAVAILABLE);
        return;
    case ROUTE_LOOKUP_NOT_FOUND:
        gw_client_fail(client, 502, GW_MESSAGE_NOT_FOUND);
        return;
    case ROUTE_LOOKUP_MALFORMED:
        log_error("sandbox %s: malformed catalog record: %s", client->target.sandbox_id,
                  record && record->error ? record->error : "unknown");
        gw_client_fail(client, 502, GW_MESSAGE_MALFORMED_RECORD);
        return;
    case ROUTE_LOOKUP_FOUND:
        break;
    }
    memcpy(&client->upstream_address, &record->address, record->address_length);
    client->upstream_address_length = record->address_length;
    if (client->upstream_address.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&client->upstream_address)->sin6_port = htons(client->target.port);
    else
        ((struct sockaddr_in *)&client->upstream_address)->sin_port = htons(client->target.port);
    const route_address_policy_t *policy = &client->worker->server->address_policy;
    if (!record->address_checked) {
        record->address_refused =
            route_address_refused(policy, (const struct sockaddr *)&record->address);
        record->address_checked = true;
    }
    if (record->address_refused) {
        log_warn("sandbox %s: record points at a refused address %s", record->sandbox_id,
                 record->address_text);
        gw_client_fail(client, 502, GW_MESSAGE_ADDRESS_REFUSED);
        return;
    }
    if (route_address_is_own(policy, (const struct sockaddr *)&client->upstream_address)) {
        log_warn("sandbox %s: record points at the gateway itself (%s port %u)",
                 record->sandbox_id, record->address_text, (unsigned)client->target.port);
        gw_client_fail(client, 508, GW_MESSAGE_LOOP);
        return;
    }
    if (!record->allow_public_traffic) {
        const gw_header_t *token =
            gw_head_find(&client->request_head, AUTH_TOKEN_HEADER, sizeof(AUTH_TOKEN_HEADER) - 1);
        auth_result_t result = auth_token_check(&record->secret, token ? token->value : NULL,
                                                token ? token->value_length : 0);
        if (result != AUTH_OK) {
            gw_client_fail(client, 403, auth_result_message(result));
            return;
        }
    }
    if (record->max_connections > 0) {
        client->limit = route_limit_acquire(record->sandbox_id, record->max_connections);
        if (client->limit == NULL) {
            char message[128];
            snprintf(message, sizeof(message),
                     "The sandbox has too many concurrent incoming connections (limit: %ld)",
                     record->max_connections);
            gw_client_fail(client, 429, message);
            return;
        }
    }
    if (gw_client_rewrite_head(client, record) < 0) {
        log_error("sandbox %s: cannot expand mask_request_host", record->sandbox_id);
        gw_client_fail(client, 502, GW_MESSAGE_MALFORMED_RECORD);
        return;
    }
    client->pool_key = gw_pool_key(&client->arena, record, client->target.port,
                                   &client->pool_key_length);
    if (client->pool_key == NULL) {
        gw_client_fail(client, 500, "Out of memory");
        return;
    }
    client->dial_started_ms = gw_now_ms();
    client->retry_delay_ms = GW_RETRY_FIRST_MS;
    client->state = GW_CLIENT_CONNECTING;
    client->upstream = gw_pool_take(&client->worker->pool, client->pool_key,
                                    client->pool_key_length);
    if (client->upstream != NULL) {
        gw_upstream_event(client->upstream->bev, BEV_EVENT_CONNECTED, client);
        return;
    }
    gw_client_dial(client);
}

/* ---- upstream connection ---- */

static void gw_client_dial(gw_client_t *client) {
    gw_worker_t *worker = client->worker;
    client->upstream =
        gw_upstream_dial(worker, (struct sockaddr *)&client->upstream_address,
                         client->upstream_address_length, client->pool_key, client->pool_key_length);
    if (client->upstream == NULL) {
        GW_METRIC_ADD(&worker->metrics, upstream_dial_errors, 1);
        log_warn("sandbox %s: cannot dial port %u: %s", client->target.sandbox_id,
                 (unsigned)client->target.port, strerror(errno));
        gw_client_fail(client, 502, GW_MESSAGE_PORT_CLOSED);
        return;
    }
    uint64_t timeout_ms = worker->config->upstream_connect_timeout_ms;
    struct timeval timeout = {.tv_sec = (time_t)(timeout_ms / 1000),
                              .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(client->upstream->bev, NULL, &timeout);
    bufferevent_setcb(client->upstream->bev, NULL, NULL, gw_upstream_event, client);
}

/* The upstream is connected (or taken from the pool): send the request. */
static void gw_client_upstream_ready(gw_client_t *client) {
    struct bufferevent *upstream = client->upstream->bev;
    client->upstream->state = GW_UPSTREAM_BUSY;
    bufferevent_setcb(upstream, gw_upstream_read, gw_upstream_write, gw_upstream_event, client);
    gw_io_read_watermark(&client->upstream->reader, GW_READ_HIGH);
    bufferevent_setwatermark(upstream, EV_WRITE, 0, 0);
    /* Upstream sockets are plain: writes go out directly (gw_io_flush). */
    bufferevent_disable(upstream, EV_WRITE);
    gw_io_read_enable(&client->upstream->reader);
    client->state = GW_CLIENT_PROXYING;
    client->upstream_eof = false; /* a retry's fresh connection */
    client->response_state = GW_RESPONSE_HEAD;
    gw_head_reset(&client->response_head, &client->arena);
    client->response_head.skip_body = strcmp(client->method, "HEAD") == 0;
    llhttp_init(&client->response_parser, HTTP_RESPONSE, &gw_response_settings);
    client->response_parser.data = &client->response_head;
    evbuffer_add(bufferevent_get_output(upstream), client->upstream_head,
                 client->upstream_head_length);
    GW_METRIC_ADD(&client->worker->metrics, upstream_requests, 1);
    gw_io_read_enable(&client->reader);
    gw_client_forward_request(client);
}

static void gw_client_retry_or_fail(gw_client_t *client, int error) {
    gw_worker_t *worker = client->worker;
    uint64_t elapsed = gw_now_ms() - client->dial_started_ms;
    gw_upstream_close(client->upstream);
    client->upstream = NULL;
    if (error == ECONNREFUSED && elapsed < worker->config->upstream_connect_retry_ms) {
        /* The port may open late (a dev server still starting): try again. */
        uint64_t delay = client->retry_delay_ms;
        uint64_t remaining = worker->config->upstream_connect_retry_ms - elapsed;
        if (delay > remaining)
            delay = remaining;
        client->retry_delay_ms = client->retry_delay_ms * 2 > GW_RETRY_MAX_MS
                                     ? GW_RETRY_MAX_MS
                                     : client->retry_delay_ms * 2;
        gw_client_set_deadline(client, delay);
        return;
    }
    GW_METRIC_ADD(&worker->metrics, upstream_dial_errors, 1);
    log_debug("sandbox %s: port %u not reachable: %s", client->target.sandbox_id,
              (unsigned)client->target.port, strerror(error));
    gw_client_fail(client, 502, GW_MESSAGE_PORT_CLOSED);
}

/* An upstream failed before any response byte. RFC 9110 §9.2.2: an idempotent
 * request whose body was not sent may be repeated on a fresh connection. */
static void gw_client_upstream_lost(gw_client_t *client) {
    bool reused = client->upstream->requests > 0;
    if (reused && !client->retried_on_fresh && client->request_idempotent &&
        client->body_forwarded == 0 && !client->request_has_body) {
        client->retried_on_fresh = true;
        gw_upstream_close(client->upstream);
        client->upstream = NULL;
        client->state = GW_CLIENT_CONNECTING;
        client->dial_started_ms = gw_now_ms();
        gw_client_dial(client);
        return;
    }
    gw_client_fail(client, 502, GW_MESSAGE_UPSTREAM_CLOSED);
}

static void gw_upstream_event(struct bufferevent *bev, short events, void *arg) {
    (void)bev;
    gw_client_t *client = arg;
    if (client->state == GW_CLIENT_CONNECTING) {
        if (events & BEV_EVENT_CONNECTED) {
            if (client->upstream->state == GW_UPSTREAM_CONNECTING)
                bufferevent_set_timeouts(bev, NULL, NULL); /* the connect timeout */
            gw_client_upstream_ready(client);
        } else if (events & BEV_EVENT_TIMEOUT) {
            GW_METRIC_ADD(&client->worker->metrics, upstream_dial_errors, 1);
            gw_client_fail(client, 504, GW_MESSAGE_TIMEOUT);
        } else {
            int error = EVUTIL_SOCKET_ERROR();
            gw_client_retry_or_fail(client, error ? error : ECONNREFUSED);
        }
        return;
    }
    if (client->state == GW_CLIENT_TUNNEL) {
        if (events & BEV_EVENT_EOF) {
            gw_tunnel_pass(client, bev, client->bev);
            client->tunnel_upstream_eof = true;
            gw_tunnel_half_close(client);
        } else {
            gw_client_close(client);
        }
        return;
    }
    /* PROXYING: EOF or an error from the sandbox. Bytes it sent before
     * closing still pass first; backpressure may hold some until the client
     * drains (gw_client_write finishes then). */
    client->upstream_eof = true;
    if (gw_client_forward_response(client) == GW_STEP_ENDED)
        return;
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        return;
    gw_client_upstream_ended(client);
}

/* ---- streaming ---- */

/* Feeds one contiguous piece of input to parser; returns the bytes it took and
 * sets *error (HPE_OK, HPE_PAUSED or a parse error). */
static size_t gw_parse_piece(llhttp_t *parser, const char *data, size_t length,
                             llhttp_errno_t *error) {
    gw_head_t *head = parser->data;
    head->piece_start = data;
    head->target_offset = 0;
    *error = llhttp_execute(parser, data, length);
    size_t taken = length;
    if (*error != HPE_OK) {
        const char *position = llhttp_get_error_pos(parser);
        if (*error == HPE_PAUSED)
            llhttp_resume(parser);
        taken = position == NULL || position < data ? 0 : (size_t)(position - data);
    }
    /* Remember the last byte that is not a blank, for the obs-fold check of
     * a value whose span starts in the next piece. */
    for (size_t i = taken; i > 0; i--) {
        if (data[i - 1] != ' ' && data[i - 1] != '\t') {
            head->previous_byte = data[i - 1];
            break;
        }
    }
    return taken;
}

static void gw_client_request_done(gw_client_t *client) {
    client->request_state = GW_REQUEST_DONE;
    /* Pipelined requests wait unparsed in the input buffer (bounded by its
     * read watermark) until this response ends; reading stays enabled so a
     * closing client is noticed, and no epoll change is paid per request. */
    if (client->response_state == GW_RESPONSE_HEAD && !client->response_sent)
        gw_client_set_deadline(client, client->worker->config->upstream_response_timeout_ms);
}

/* Writes the request's trailer section to the sandbox, and the empty line
 * that ends the message: a trailer passes only as it would pass as a header
 * (DESIGN "What the sandbox receives"), and framing fields, which RFC 9110
 * §6.5.1 forbids in trailers, never. Returns 0, or -1 when memory is exhausted. */
static int gw_client_write_trailers(gw_client_t *client, struct evbuffer *output) {
    const gw_head_t *head = &client->request_head;
    size_t capacity = 2;
    for (size_t i = head->trailer_start; i < head->header_count; i++)
        capacity += head->headers[i].name_length + head->headers[i].value_length + 4;
    char *out = arena_alloc(&client->arena, capacity);
    if (out == NULL)
        return -1;
    size_t length = 0;
    for (size_t i = head->trailer_start; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (header->kind != GW_HEADER_OTHER || gw_is_hop_by_hop(head, header))
            continue;
        GW_PUT(header->name, header->name_length);
        GW_PUT_LITERAL(": ");
        GW_PUT(header->value, header->value_length);
        GW_PUT_LITERAL("\r\n");
    }
    GW_PUT_LITERAL("\r\n");
    evbuffer_add(output, out, length);
    return 0;
}

/* Passes request body bytes to the sandbox as they arrive, raw (chunked
 * framing included), until the request ends or the upstream is full. */
static void gw_client_forward_request(gw_client_t *client) {
    struct evbuffer *input = bufferevent_get_input(client->bev);
    struct evbuffer *output = bufferevent_get_output(client->upstream->bev);
    bool first = true;
    while (client->request_state == GW_REQUEST_BODY) {
        size_t queued = evbuffer_get_length(output);
        if (queued >= GW_BUFFER_HIGH) {
            /* Full: write what the socket takes; pause only if it stays full
             * (then the write callback, at the low watermark, resumes). */
            gw_io_flush(client->upstream->bev);
            queued = evbuffer_get_length(output);
        }
        if (queued >= GW_BUFFER_HIGH) {
            gw_io_read_disable(&client->reader);
            bufferevent_setwatermark(client->upstream->bev, EV_WRITE, GW_BUFFER_LOW, 0);
            return;
        }
        struct evbuffer_iovec piece = {.iov_base = (void *)"", .iov_len = 0};
        if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1 || piece.iov_len == 0) {
            /* An empty run still completes a message without a body. */
            if (!first)
                break;
            piece.iov_base = (void *)"";
            piece.iov_len = 0;
        }
        first = false;
        if (piece.iov_len > GW_BUFFER_HIGH - queued)
            piece.iov_len = GW_BUFFER_HIGH - queued;
        llhttp_errno_t error;
        gw_head_t *head = &client->request_head;
        bool in_trailers = head->in_trailers;
        size_t taken = gw_parse_piece(&client->request_parser, piece.iov_base, piece.iov_len,
                                      &error);
        if (in_trailers) {
            /* Collected by the parser and written filtered at the end. */
            evbuffer_drain(input, taken);
            client->trailer_bytes += taken;
            if (client->trailer_bytes > client->worker->config->max_header_size)
                error = HPE_USER;
        } else if (taken > 0) {
            evbuffer_remove_buffer(input, output, taken);
            client->body_forwarded += taken;
        }
        client->bytes_received += taken;
        if (error == HPE_PAUSED && head->message_complete) {
            if (head->in_trailers && gw_client_write_trailers(client, output) < 0) {
                gw_client_fail(client, 500, "Out of memory");
                return;
            }
            gw_io_flush(client->upstream->bev);
            gw_client_request_done(client);
            return;
        }
        if (error != HPE_OK && error != HPE_PAUSED) {
            log_debug("client %s: bad request body: %s", client->address_text,
                      llhttp_errno_name(error));
            client->request_keep_alive = false;
            gw_client_fail(client, 400, GW_MESSAGE_BAD_REQUEST);
            return;
        }
        if (taken == 0 && piece.iov_len > 0)
            break;
    }
    gw_io_flush(client->upstream->bev);
}

/* Appends the response head the client receives: the sandbox's, less
 * hop-by-hop fields, with the gateway's Connection. */
static int gw_client_write_response_head(gw_client_t *client, bool final) {
    const gw_head_t *head = &client->response_head;
    int status = llhttp_get_status_code(&client->response_parser);
    size_t capacity = 64 + head->target_length;
    for (size_t i = 0; i < head->header_count; i++)
        capacity += head->headers[i].name_length + head->headers[i].value_length + 4;
    /* One buffer and one evbuffer_add: each add runs libevent's callbacks. */
    char *out = arena_alloc(&client->arena, capacity);
    if (out == NULL)
        return -1;
    size_t length = 0;
    GW_PUT_LITERAL("HTTP/1.1 ");
    /* llhttp accepts three-digit codes only (RFC 9110 §15). */
    out[length++] = (char)('0' + status / 100 % 10);
    out[length++] = (char)('0' + status / 10 % 10);
    out[length++] = (char)('0' + status % 10);
    out[length++] = ' ';
    if (head->target != NULL)
        GW_PUT(head->target, head->target_length);
    GW_PUT_LITERAL("\r\n");
    for (size_t i = 0; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (status == 101 && header->kind == GW_HEADER_UPGRADE) {
            /* the protocol switched to */
        } else if (gw_is_hop_by_hop(head, header)) {
            continue;
        }
        GW_PUT(header->name, header->name_length);
        GW_PUT_LITERAL(": ");
        GW_PUT(header->value, header->value_length);
        GW_PUT_LITERAL("\r\n");
    }
    if (status == 101)
        GW_PUT_LITERAL("Connection: upgrade\r\n");
    else if (final && client->close_after_response)
        GW_PUT_LITERAL("Connection: close\r\n");
    GW_PUT_LITERAL("\r\n");
    evbuffer_add(bufferevent_get_output(client->bev), out, length);
    client->bytes_sent += length;
    return status;
}

static void gw_client_start_tunnel(gw_client_t *client);

/* The response head is complete: forward it and decide what follows. */
static gw_step_t gw_client_response_head(gw_client_t *client) {
    llhttp_t *parser = &client->response_parser;
    int status = llhttp_get_status_code(parser);
    if (client->response_head.connection_names_framing) {
        log_warn("sandbox %s: bad response: Connection names a framing field",
                 client->target.sandbox_id);
        gw_client_fail(client, 502, GW_MESSAGE_UPSTREAM_CLOSED);
        return GW_STEP_ENDED;
    }
    if (client->response_head.failed) {
        gw_client_fail(client, 502, GW_MESSAGE_UPSTREAM_CLOSED);
        return GW_STEP_ENDED;
    }
    if (status >= 100 && status < 200 && status != 101) {
        /* Informational (100 Continue, 103 Early Hints): forward, then read on. */
        if (gw_client_write_response_head(client, false) < 0)
            goto out_of_memory;
        return GW_STEP_CONTINUE;
    }
    gw_client_clear_deadline(client);
    if (status == 101 && client->request_upgrade) {
        if (gw_client_write_response_head(client, true) < 0)
            goto out_of_memory;
        client->response_sent = true;
        client->status = status;
        gw_client_start_tunnel(client);
        return GW_STEP_ENDED;
    }
    /* Keep the client only if the response has its own length, the request
     * ended, and both sides want to keep the connection. */
    client->close_after_response = client->worker->draining || !client->request_keep_alive ||
                                   llhttp_message_needs_eof(parser) ||
                                   client->request_state != GW_REQUEST_DONE ||
                                   client->request_upgrade || status == 101;
    if (gw_client_write_response_head(client, true) < 0)
        goto out_of_memory;
    client->response_sent = true;
    client->status = status;
    client->response_state = GW_RESPONSE_BODY;
    return GW_STEP_CONTINUE;
out_of_memory:
    gw_client_fail(client, 502, GW_MESSAGE_UPSTREAM_CLOSED);
    return GW_STEP_ENDED;
}

static void gw_client_response_done(gw_client_t *client) {
    client->response_state = GW_RESPONSE_DONE;
    /* The sandbox's own framing decides whether its connection can carry
     * another request, unless the head sent to it said close (RFC 9112 §9.6:
     * the server closes after this response, whatever its own head says). */
    bool upstream_reusable = !client->upstream_closes &&
                             llhttp_should_keep_alive(&client->response_parser) &&
                             !client->upstream_eof && client->request_state == GW_REQUEST_DONE &&
                             evbuffer_get_length(bufferevent_get_input(client->upstream->bev)) == 0;
    if (client->request_state != GW_REQUEST_DONE) {
        /* The sandbox answered before the whole request arrived: the rest of
         * the body cannot be told apart from a next request. */
        gw_client_end_request(client, false, false);
        return;
    }
    gw_client_end_request(client, !client->close_after_response, upstream_reusable);
}

/* Passes response bytes to the client as they arrive; heads are rewritten,
 * bodies pass raw until the message ends or the client's output is full. */
static gw_step_t gw_client_forward_response_pieces(gw_client_t *client) {
    struct evbuffer *input = bufferevent_get_input(client->upstream->bev);
    struct evbuffer *output = bufferevent_get_output(client->bev);
    llhttp_t *parser = &client->response_parser;
    gw_head_t *head = &client->response_head;
    bool head_just_completed = false;
    for (;;) {
        size_t queued = evbuffer_get_length(output);
        if (queued >= GW_BUFFER_HIGH) {
            gw_client_flush(client); /* as in gw_client_forward_request */
            queued = evbuffer_get_length(output);
        }
        if (queued >= GW_BUFFER_HIGH) {
            gw_io_read_disable(&client->upstream->reader);
            bufferevent_setwatermark(client->bev, EV_WRITE, GW_BUFFER_LOW, 0);
            return GW_STEP_CONTINUE;
        }
        struct evbuffer_iovec piece = {.iov_base = (void *)"", .iov_len = 0};
        if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1 || piece.iov_len == 0) {
            /* After a head, an empty run completes a response without a body. */
            if (!head_just_completed)
                return GW_STEP_CONTINUE;
            piece.iov_base = (void *)"";
            piece.iov_len = 0;
        }
        head_just_completed = false;
        bool in_head = client->response_state == GW_RESPONSE_HEAD;
        if (in_head) {
            gw_client_clear_deadline(client);
            size_t allowed = GW_RESPONSE_HEAD_MAX + 1 - client->response_head_bytes;
            if (piece.iov_len > allowed)
                piece.iov_len = allowed;
        } else if (piece.iov_len > GW_BUFFER_HIGH - queued) {
            piece.iov_len = GW_BUFFER_HIGH - queued;
        }
        llhttp_errno_t error;
        size_t taken = gw_parse_piece(parser, piece.iov_base, piece.iov_len, &error);
        if (in_head) {
            evbuffer_drain(input, taken);
            client->response_head_bytes += taken;
        } else if (taken > 0) {
            evbuffer_remove_buffer(input, output, taken);
            client->bytes_sent += taken;
        }
        if (error != HPE_OK && error != HPE_PAUSED && error != HPE_PAUSED_UPGRADE) {
            log_warn("sandbox %s: bad response: %s", client->target.sandbox_id,
                     llhttp_errno_name(error));
            gw_client_fail(client, 502, GW_MESSAGE_UPSTREAM_CLOSED);
            return GW_STEP_ENDED;
        }
        if (head->head_complete && in_head) {
            head->head_complete = false;
            if (gw_client_response_head(client) == GW_STEP_ENDED)
                return GW_STEP_ENDED;
            head_just_completed = true;
        }
        if (head->message_complete) {
            head->message_complete = false;
            if (client->response_state == GW_RESPONSE_HEAD) {
                /* An informational response ended; the final one follows. */
                gw_head_reset(head, &client->arena);
                head->skip_body = strcmp(client->method, "HEAD") == 0;
                client->response_head_bytes = 0;
                continue;
            }
            gw_client_response_done(client);
            return GW_STEP_ENDED;
        }
        if (in_head && client->response_head_bytes > GW_RESPONSE_HEAD_MAX) {
            log_warn("sandbox %s: response head over %d bytes", client->target.sandbox_id,
                     GW_RESPONSE_HEAD_MAX);
            gw_client_fail(client, 502, GW_MESSAGE_UPSTREAM_CLOSED);
            return GW_STEP_ENDED;
        }
    }
}

/* The spliced rest of a body arrived (or the move failed). */
static void gw_client_splice_done(gw_io_splice_t *splice, int error, void *arg) {
    gw_client_t *client = arg;
    client->bytes_sent += gw_io_splice_moved(splice);
    gw_io_splice_free(splice);
    client->splice = NULL;
    if (error != 0) {
        log_debug("sandbox %s: response body cut short: %s", client->target.sandbox_id,
                  strerror(error));
        gw_client_close(client); /* a started response can only end in a close */
        return;
    }
    gw_client_response_done(client);
}

/* The rest of a large body of known length goes from the sandbox's socket to
 * a plain client's without entering user space, once nothing is buffered
 * either way. llhttp is not shown those bytes: the length is all it would
 * check. Without a pipe the copying path simply carries on. */
static void gw_client_try_splice(gw_client_t *client) {
    const llhttp_t *parser = &client->response_parser;
    if (!client->plain || client->splice != NULL || client->response_state != GW_RESPONSE_BODY ||
        client->upstream_eof || (parser->flags & F_CONTENT_LENGTH) == 0 ||
        (parser->flags & F_CHUNKED) != 0 || parser->content_length < GW_SPLICE_MIN ||
        evbuffer_get_length(bufferevent_get_input(client->upstream->bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(client->bev)) > 0)
        return;
    client->splice = gw_io_splice_start(
        client->worker->base, bufferevent_getfd(client->upstream->bev),
        bufferevent_getfd(client->bev), parser->content_length, gw_client_splice_done, client);
    if (client->splice != NULL)
        gw_io_read_disable(&client->upstream->reader);
}

/* Streams what the sandbox sent, then writes it to the client at once. */
static gw_step_t gw_client_forward_response(gw_client_t *client) {
    gw_client_hold_records(client);
    if (gw_client_forward_response_pieces(client) == GW_STEP_ENDED)
        return GW_STEP_ENDED;
    gw_client_flush(client);
    gw_client_try_splice(client);
    return GW_STEP_CONTINUE;
}

/* The sandbox closed its side and every byte it sent was passed on. */
static void gw_client_upstream_ended(gw_client_t *client) {
    if (client->response_state == GW_RESPONSE_BODY &&
        llhttp_message_needs_eof(&client->response_parser)) {
        /* RFC 9112 §6.3: a response without a length ends when the connection does. */
        llhttp_finish(&client->response_parser);
        client->close_after_response = true;
        gw_client_response_done(client);
        return;
    }
    if (client->response_state == GW_RESPONSE_HEAD && client->response_head_bytes == 0) {
        gw_client_upstream_lost(client);
        return;
    }
    /* Cut short mid-response: a started response can only end in a close. */
    gw_client_fail(client, 502, GW_MESSAGE_UPSTREAM_CLOSED);
}

/* ---- tunnel (after 101 Switching Protocols) ---- */

static void gw_tunnel_pass(gw_client_t *client, struct bufferevent *from, struct bufferevent *to) {
    struct evbuffer *output = bufferevent_get_output(to);
    struct evbuffer *input = bufferevent_get_input(from);
    size_t length = evbuffer_get_length(input);
    if (from == client->bev)
        client->bytes_received += length;
    else
        client->bytes_sent += length;
    evbuffer_add_buffer(output, input);
    client->last_activity_ms = gw_now_ms();
    if (to == client->bev)
        gw_client_flush(client);
    else
        gw_io_flush(to);
    if (evbuffer_get_length(output) >= GW_BUFFER_HIGH) {
        gw_io_read_disable(from == client->bev ? &client->reader : &client->upstream->reader);
        bufferevent_setwatermark(to, EV_WRITE, GW_BUFFER_LOW, 0);
    }
}

/* Passes each side's end-of-stream on once the bytes before it were
 * delivered, so a WebSocket or other protocol can finish its close exchange;
 * the pair closes when both directions ended. */
static void gw_tunnel_half_close(gw_client_t *client) {
    struct bufferevent *upstream = client->upstream->bev;
    if (client->tunnel_client_eof && !client->tunnel_upstream_shut &&
        evbuffer_get_length(bufferevent_get_output(upstream)) == 0) {
        shutdown(bufferevent_getfd(upstream), SHUT_WR);
        client->tunnel_upstream_shut = true;
    }
    if (client->tunnel_upstream_eof && !client->tunnel_client_shut &&
        evbuffer_get_length(bufferevent_get_output(client->bev)) == 0) {
        tls_bufferevent_shutdown_write(client->bev);
        client->tunnel_client_shut = true;
    }
    if (client->tunnel_upstream_shut && client->tunnel_client_shut)
        gw_client_close(client);
}

static void gw_client_start_tunnel(gw_client_t *client) {
    /* A tunnel may stay open for hours: give back the request's arena and
     * keep only the path its access-log line needs. */
    size_t path_length = strnlen(client->path, GW_TUNNEL_PATH_MAX);
    client->tunnel_path = malloc(path_length + 1);
    if (client->tunnel_path != NULL) {
        memcpy(client->tunnel_path, client->path, path_length);
        client->tunnel_path[path_length] = '\0';
    }
    client->path = client->tunnel_path;
    client->client_authority = NULL;
    gw_head_reset(&client->request_head, &client->arena);
    gw_head_reset(&client->response_head, &client->arena);
    arena_free(&client->arena);
    client->state = GW_CLIENT_TUNNEL;
    GW_METRIC_ADD(&client->worker->metrics, tunnels, 1);
    client->request_state = GW_REQUEST_DONE;
    client->response_state = GW_RESPONSE_DONE;
    client->last_activity_ms = gw_now_ms();
    gw_client_set_deadline(client, client->worker->config->tunnel_idle_timeout_ms);
    gw_io_read_enable(&client->reader);
    gw_io_read_enable(&client->upstream->reader);
    gw_tunnel_pass(client, client->upstream->bev, client->bev);
    gw_tunnel_pass(client, client->bev, client->upstream->bev);
}

/* ---- bufferevent callbacks ---- */

static void gw_client_read(struct bufferevent *bev, void *arg) {
    gw_client_t *client = arg;
    switch (client->state) {
    case GW_CLIENT_READING_PROXY:
        gw_client_parse_proxy_header(client);
        break;
    case GW_CLIENT_READING_HEAD:
        gw_client_parse_head(client);
        break;
    case GW_CLIENT_PROXYING:
        if (client->request_state == GW_REQUEST_BODY) {
            gw_io_read_more(&client->reader, GW_BUFFER_HIGH);
            gw_client_forward_request(client);
        }
        break;
    case GW_CLIENT_TUNNEL:
        gw_io_read_more(&client->reader, GW_BUFFER_HIGH);
        gw_tunnel_pass(client, bev, client->upstream->bev);
        break;
    default:
        break; /* ROUTING, CONNECTING: bytes wait for the upstream */
    }
}

static void gw_upstream_read(struct bufferevent *bev, void *arg) {
    gw_client_t *client = arg;
    gw_io_read_more(&client->upstream->reader, GW_BUFFER_HIGH);
    if (client->state == GW_CLIENT_TUNNEL)
        gw_tunnel_pass(client, bev, client->bev);
    else if (client->state == GW_CLIENT_PROXYING)
        gw_client_forward_response(client);
}

/* The client's output drained below its low watermark. */
static void gw_client_write(struct bufferevent *bev, void *arg) {
    gw_client_t *client = arg;
    gw_io_written(bev, client->plain);
    if (client->state == GW_CLIENT_CLOSING) {
        gw_client_linger(client);
        return;
    }
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    if (client->upstream == NULL)
        return;
    if (client->state == GW_CLIENT_PROXYING) {
        if (!client->upstream_eof) {
            gw_io_read_enable(&client->upstream->reader);
            gw_client_forward_response(client);
        } else if (gw_client_forward_response(client) == GW_STEP_CONTINUE &&
                   evbuffer_get_length(bufferevent_get_input(client->upstream->bev)) == 0) {
            gw_client_upstream_ended(client);
        }
    } else if (client->state == GW_CLIENT_TUNNEL) {
        if (!client->tunnel_upstream_eof) {
            gw_io_read_enable(&client->upstream->reader);
            gw_tunnel_pass(client, client->upstream->bev, bev);
        }
        gw_tunnel_half_close(client);
    }
}

/* The upstream's output drained below its low watermark. */
static void gw_upstream_write(struct bufferevent *bev, void *arg) {
    gw_client_t *client = arg;
    gw_io_written(bev, true);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    if (client->state == GW_CLIENT_PROXYING && client->request_state == GW_REQUEST_BODY) {
        gw_io_read_enable(&client->reader);
        gw_client_forward_request(client);
    } else if (client->state == GW_CLIENT_TUNNEL) {
        if (!client->tunnel_client_eof) {
            gw_io_read_enable(&client->reader);
            gw_tunnel_pass(client, client->bev, bev);
        }
        gw_tunnel_half_close(client);
    }
}

static void gw_client_event(struct bufferevent *bev, short events, void *arg) {
    (void)bev;
    gw_client_t *client = arg;
    if (events & BEV_EVENT_CONNECTED)
        return; /* a TLS handshake completed */
    /* libevent's TLS bufferevent stops writing too once it read the end of
     * the stream, so only a plain client can half-close and still read. */
    if ((events & BEV_EVENT_EOF) && client->plain && client->state == GW_CLIENT_PROXYING &&
        client->request_state == GW_REQUEST_DONE) {
        /* A client may shut down its sending side and still await the
         * response (RFC 9112 §9.6); the connection ends after it. */
        client->close_after_response = true;
        return;
    }
    if ((events & BEV_EVENT_EOF) && client->state == GW_CLIENT_TUNNEL) {
        gw_tunnel_pass(client, client->bev, client->upstream->bev);
        client->tunnel_client_eof = true;
        if (!client->plain)
            client->tunnel_client_shut = true; /* nothing can reach it any more */
        gw_tunnel_half_close(client);
        return;
    }
    /* The client went away or failed: nothing can be answered any more. */
    gw_client_close(client);
}

static void gw_client_timer(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_client_t *client = arg;
    client->timer_armed_ms = 0;
    if (client->deadline_ms == 0)
        return;
    uint64_t now = gw_now_ms();
    if (now < client->deadline_ms) {
        gw_client_set_deadline(client, client->deadline_ms - now);
        return;
    }
    client->deadline_ms = 0;
    switch (client->state) {
    case GW_CLIENT_READING_PROXY:
        gw_client_close(client); /* no PROXY header in time */
        break;
    case GW_CLIENT_READING_HEAD:
        if (client->request_started) {
            client->request_keep_alive = false;
            gw_client_fail(client, 408, GW_MESSAGE_HEAD_TIMEOUT);
        } else {
            gw_client_close(client); /* idle keep-alive connection */
        }
        break;
    case GW_CLIENT_CONNECTING:
        gw_client_dial(client); /* the pause after a refused dial ended */
        break;
    case GW_CLIENT_PROXYING:
        gw_client_fail(client, 504, GW_MESSAGE_TIMEOUT);
        break;
    case GW_CLIENT_TUNNEL: {
        uint64_t idle = gw_now_ms() - client->last_activity_ms;
        uint64_t limit = client->worker->config->tunnel_idle_timeout_ms;
        if (idle >= limit)
            gw_client_close(client);
        else
            gw_client_set_deadline(client, limit - idle);
        break;
    }
    case GW_CLIENT_CLOSING:
        gw_client_close(client); /* lingered long enough */
        break;
    default:
        break;
    }
}

/* ---- reading request heads ---- */

static void gw_client_parse_head(gw_client_t *client) {
    struct evbuffer *input = bufferevent_get_input(client->bev);
    size_t limit = client->worker->config->max_header_size;
    while (client->state == GW_CLIENT_READING_HEAD) {
        struct evbuffer_iovec piece;
        if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1 || piece.iov_len == 0)
            return;
        if (!client->request_started) {
            client->request_started = true;
            if (client->started_us == 0) {
                /* On a kept-alive connection the header timeout runs from
                 * the request's first byte (from accept for the first one). */
                client->started_us = gw_now_us();
                gw_client_set_deadline(client, client->worker->config->client_header_timeout_ms);
            }
        }
        /* Never hand llhttp more than fits under the limit, so an oversized
         * head costs at most max_header_size of memory. */
        if (piece.iov_len > limit + 1 - client->request_head_bytes)
            piece.iov_len = limit + 1 - client->request_head_bytes;
        llhttp_errno_t error;
        size_t taken = gw_parse_piece(&client->request_parser, piece.iov_base, piece.iov_len,
                                      &error);
        /* RFC 9112 §3: a request line ends with its HTTP-version; one that
         * ended without (HTTP/0.9) would otherwise wait for a head that never
         * comes. Empty lines before the request line are allowed (§2.2). */
        const gw_head_t *head = &client->request_head;
        if (!head->version_seen && head->target != NULL && head->target_offset < taken &&
            memchr((const char *)piece.iov_base + head->target_offset, '\n',
                   taken - head->target_offset) != NULL)
            error = HPE_INVALID_VERSION;
        evbuffer_drain(input, taken);
        client->request_head_bytes += taken;
        client->bytes_received += taken;
        if (error == HPE_PAUSED && client->request_head.head_complete) {
            if (client->request_head_bytes > limit) {
                client->request_keep_alive = false;
                gw_client_fail(client, 431, GW_MESSAGE_HEAD_TOO_LARGE);
                return;
            }
            gw_client_head_complete(client);
            return;
        }
        if (error != HPE_OK) {
            log_debug("client %s: bad request: %s (%s)", client->address_text,
                      llhttp_errno_name(error), llhttp_get_error_reason(&client->request_parser));
            client->request_keep_alive = false;
            client->method = NULL;
            gw_client_fail(client, 400, GW_MESSAGE_BAD_REQUEST);
            return;
        }
        if (client->request_head_bytes > limit) {
            client->request_keep_alive = false;
            gw_client_fail(client, 431, GW_MESSAGE_HEAD_TOO_LARGE);
            return;
        }
    }
}

/* Returns 0, or -1 when memory is exhausted. */
static int gw_client_setup_bev(gw_client_t *client) {
    gw_io_reader_free(&client->reader);
    if (gw_io_reader_init(&client->reader, client->bev, client->plain) < 0)
        return -1;
    bufferevent_setcb(client->bev, gw_client_read, gw_client_write, gw_client_event, client);
    gw_io_read_watermark(&client->reader, GW_READ_HIGH);
    /* A plain socket writes directly (gw_io_flush); TLS writes through
     * libevent. (A new bufferevent starts with EV_WRITE enabled.) */
    if (client->plain)
        bufferevent_disable(client->bev, EV_WRITE);
    else
        bufferevent_enable(client->bev, EV_WRITE);
    gw_io_read_enable(&client->reader);
    return 0;
}

/* Puts TLS over the client's socket bufferevent (at accept, or after a PROXY
 * header): libevent's OpenSSL filter does TLS, the gateway reads and writes
 * the socket under it (gw_io_socket_t). Returns 0, or -1 when memory is
 * exhausted. */
static int gw_client_start_tls(gw_client_t *client) {
    struct bufferevent *socket_bev = client->bev;
    gw_io_reader_free(&client->reader);
    struct bufferevent *wrapped =
        tls_bufferevent_wrap(client->worker->server->tls, client->worker->base, socket_bev);
    if (wrapped == NULL)
        return -1;
    client->bev = wrapped;
    if (gw_io_socket_init(&client->tls_socket, socket_bev, GW_TLS_SOCKET_HIGH) < 0)
        return -1;
    return gw_client_setup_bev(client);
}

/* Dotted-quad text of an IPv4 address; glibc's inet_ntop formats it with
 * sprintf, a sixth of the instructions a short connection costs. out holds
 * at least 16 bytes. */
static void gw_ipv4_text(const uint8_t *bytes, char *out) {
    char *cursor = out;
    for (int i = 0; i < 4; i++) {
        unsigned value = bytes[i];
        if (value >= 100)
            *cursor++ = (char)('0' + value / 100);
        if (value >= 10)
            *cursor++ = (char)('0' + value / 10 % 10);
        *cursor++ = (char)('0' + value % 10);
        *cursor++ = i < 3 ? '.' : '\0';
    }
}

/* Writes an address as X-Forwarded-For wants it (IPv4-mapped IPv6 as IPv4);
 * out_size is at least INET6_ADDRSTRLEN. */
static void gw_address_text(const struct sockaddr *address, char *out, size_t out_size) {
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
            gw_ipv4_text(&v6->sin6_addr.s6_addr[12], out);
        else
            inet_ntop(AF_INET6, &v6->sin6_addr, out, (socklen_t)out_size);
    } else {
        gw_ipv4_text((const uint8_t *)&((const struct sockaddr_in *)address)->sin_addr, out);
    }
}

/* A proxy_protocol listener's connection starts with the balancer's PROXY
 * header; without a valid one the connection is closed, never served. */
static void gw_client_parse_proxy_header(gw_client_t *client) {
    struct evbuffer *input = bufferevent_get_input(client->bev);
    size_t available = evbuffer_get_length(input);
    if (available > GW_PROXY_HEADER_MAX)
        available = GW_PROXY_HEADER_MAX;
    const uint8_t *data = evbuffer_pullup(input, (ev_ssize_t)available);
    gw_proxy_header_t header;
    gw_proxy_status_t status = gw_proxy_protocol_parse(data, available, &header);
    if (status == GW_PROXY_NEED_MORE && available < GW_PROXY_HEADER_MAX)
        return;
    if (status != GW_PROXY_DONE) {
        log_debug("client %s: no valid PROXY header; closing", client->address_text);
        gw_client_close(client);
        return;
    }
    evbuffer_drain(input, header.length);
    if (!header.local)
        gw_address_text((const struct sockaddr *)&header.source, client->address_text,
                        sizeof(client->address_text));
    if (header.ssl)
        client->https = true;
    client->state = GW_CLIENT_READING_HEAD;
    if (client->listen->tls) {
        /* TLS starts after the PROXY header: the handshake reads what follows. */
        if (gw_client_start_tls(client) < 0)
            gw_client_close(client);
        return;
    }
    gw_client_parse_head(client);
}

void gw_client_accept(gw_worker_t *worker, const gw_listen_t *listen, int fd,
                      const struct sockaddr *address, int address_length) {
    (void)address_length;
    gw_parser_settings_init();
    gw_client_t *client = calloc(1, sizeof(*client));
    if (client == NULL) {
        close(fd);
        return;
    }
    client->worker = worker;
    client->listen = listen;
    client->plain = !listen->tls;
    LIST_INSERT_HEAD(&worker->clients, client, link);
    worker->client_count++;
    GW_METRIC_ADD(&worker->metrics, client_connections, 1);
    arena_init(&client->arena, GW_ARENA_BLOCK);
    gw_address_text(address, client->address_text, sizeof(client->address_text));
    client->https = listen->tls;
    /* TCP_NODELAY comes from the listening socket (Linux copies it to
     * accepted ones): one system call less per connection. */
    client->bev = bufferevent_socket_new(worker->base, fd, BEV_OPT_CLOSE_ON_FREE);
    client->timer = evtimer_new(worker->base, gw_client_timer, client);
    if (client->bev == NULL || client->timer == NULL) {
        if (client->bev == NULL)
            close(fd);
        gw_client_close(client);
        return;
    }
    gw_client_reset_request(client);
    client->state = listen->proxy_protocol ? GW_CLIENT_READING_PROXY : GW_CLIENT_READING_HEAD;
    /* The one place that knows about TLS: a TLS bufferevent reads and writes
     * plaintext like a socket one (a PROXY header comes before TLS). */
    bool tls_now = listen->tls && !listen->proxy_protocol;
    if ((tls_now ? gw_client_start_tls(client) : gw_client_setup_bev(client)) < 0) {
        gw_client_close(client);
        return;
    }
    /* From accept, the whole head must arrive within client_header_timeout. */
    client->started_us = gw_now_us();
    gw_client_set_deadline(client, worker->config->client_header_timeout_ms);
}

void gw_client_drain(gw_client_t *client) {
    /* A kept-alive connection between requests, or one still waiting for
     * its PROXY header, has nothing in flight. */
    if ((client->state == GW_CLIENT_READING_HEAD && !client->request_started) ||
        client->state == GW_CLIENT_READING_PROXY)
        gw_client_close(client);
}
