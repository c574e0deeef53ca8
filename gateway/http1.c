/* The HTTP/1.1 codec: heads collected from llhttp, checked and rewritten; no sockets. */
#include "gateway/http1.h"

#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

#include "auth/cookie.h"
#include "auth/token.h"

/* ---- collecting a head from llhttp's span callbacks ---- */

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

void gw_head_reset(gw_head_t *head, arena_t *arena) {
    memset(head, 0, sizeof(*head));
    head->arena = arena;
}

static int gw_head_on_target(llhttp_t *parser, const char *at, size_t length) {
    gw_head_t *head = parser->data;
    if (head->target_length == 0)
        head->target_offset = (size_t)(at - head->piece_start);
    if (gw_text_append(head->arena, &head->target, &head->target_length, &head->target_capacity, at,
                       length) < 0)
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

static bool gw_ascii_prefix(const char *text, size_t length, const char *prefix) {
    size_t prefix_length = strlen(prefix);
    return length >= prefix_length && strncasecmp(text, prefix, prefix_length) == 0;
}

static gw_header_kind_t gw_header_classify(const char *name, size_t length) {
#define GW_IS(literal) (length == sizeof(literal) - 1 && strncasecmp(name, literal, length) == 0)
    switch (length) {
    case 2:
        return GW_IS("te") ? GW_HEADER_HOP_BY_HOP : GW_HEADER_OTHER;
    case 3:
        return GW_IS("via") ? GW_HEADER_VIA : GW_HEADER_OTHER;
    case 4:
        return GW_IS("host") ? GW_HEADER_HOST : GW_HEADER_OTHER;
    case 6: /* the first byte first: "Accept" is in nearly every request */
        if ((name[0] | 0x20) == 'c')
            return GW_IS("cookie") ? GW_HEADER_COOKIE : GW_HEADER_OTHER;
        if ((name[0] | 0x20) == 'o')
            return GW_IS("origin") ? GW_HEADER_ORIGIN : GW_HEADER_OTHER;
        return GW_HEADER_OTHER;
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
        if (GW_IS("http2-settings"))
            return GW_HEADER_HOP_BY_HOP; /* only ever part of an Upgrade: h2c */
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

/* Notes what a Connection field names, as it ends. */
static void gw_head_note_connection(gw_head_t *head, const char *value, size_t value_length) {
    if (!gw_connection_names_fields(value, value_length))
        return;
    if (head->connection_count < 4)
        head->connection_headers[head->connection_count] = head->header_count;
    head->connection_count++;
    if (gw_list_has(value, value_length, "content-length", 14) ||
        gw_list_has(value, value_length, "transfer-encoding", 17) ||
        gw_list_has(value, value_length, "host", 4))
        head->connection_names_framing = true;
}

/* Appends a field whose name and value live in the head's arena, classified
 * and noted as the head's checks want it. */
static inline void gw_head_append(gw_head_t *head, const char *name, size_t name_length,
                           const char *value, size_t value_length) {
    if (head->header_count == head->header_capacity) {
        size_t new_capacity = head->header_capacity ? head->header_capacity * 2 : 16;
        gw_header_t *grown = arena_alloc(head->arena, new_capacity * sizeof(*grown));
        if (grown == NULL) {
            head->failed = true;
            return;
        }
        if (head->header_count > 0)
            memcpy(grown, head->headers, head->header_count * sizeof(*grown));
        head->headers = grown;
        head->header_capacity = new_capacity;
    }
    gw_header_kind_t kind = gw_header_classify(name, name_length);
    if (kind == GW_HEADER_CONNECTION)
        gw_head_note_connection(head, value, value_length);
    if (head->kind_count[kind]++ == 0)
        head->kind_first[kind] = (uint32_t)head->header_count;
    head->headers[head->header_count++] = (gw_header_t){
        .kind = kind,
        .name = name,
        .name_length = name_length,
        .value = value,
        .value_length = value_length,
    };
}

static int gw_head_on_value_complete(llhttp_t *parser) {
    gw_head_t *head = parser->data;
    if (head->failed)
        return 0;
    /* RFC 9110 §5.5: a field value excludes trailing whitespace. */
    size_t value_length = head->value_length;
    while (value_length > 0 &&
           (head->value[value_length - 1] == ' ' || head->value[value_length - 1] == '\t'))
        value_length--;
    gw_head_append(head, head->field ? head->field : "", head->field_length,
                   head->value ? head->value : "", value_length);
    head->field = NULL;
    head->field_length = head->field_capacity = 0;
    head->value = NULL;
    head->value_length = head->value_capacity = 0;
    return 0;
}

int gw_head_add(gw_head_t *head, const char *name, size_t name_length, const char *value,
                size_t value_length) {
    char *copy = arena_alloc(head->arena, name_length + value_length + 2);
    if (copy == NULL) {
        head->failed = true;
        return -1;
    }
    memcpy(copy, name, name_length);
    copy[name_length] = '\0';
    memcpy(copy + name_length + 1, value, value_length);
    copy[name_length + 1 + value_length] = '\0';
    gw_head_append(head, copy, name_length, copy + name_length + 1, value_length);
    return head->failed ? -1 : 0;
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
    return head->extension_bytes > GW_HTTP1_CHUNK_EXTENSION_MAX ? -1 : 0;
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

/* The last chunk of a response body: what follows is its trailer section,
 * passed on raw to HTTP/1.1 clients and as trailers to HTTP/2 streams. */
static int gw_head_on_response_chunk_header(llhttp_t *parser) {
    gw_head_t *head = parser->data;
    head->extension_bytes = 0;
    if (parser->content_length == 0) {
        head->in_trailers = true;
        head->trailer_start = head->header_count;
    }
    return 0;
}

/* Body bytes without their framing, for a side that wants them decoded. */
static int gw_head_on_body(llhttp_t *parser, const char *at, size_t length) {
    gw_head_t *head = parser->data;
    if (head->body_sink != NULL && evbuffer_add(head->body_sink, at, length) != 0)
        head->failed = true;
    return 0;
}

/* Pausing at the end of each message keeps pipelined bytes unread. */
static int gw_head_on_message_complete(llhttp_t *parser) {
    gw_head_t *head = parser->data;
    head->message_complete = true;
    return HPE_PAUSED;
}

static llhttp_settings_t gw_request_settings;
static llhttp_settings_t gw_response_settings;
static llhttp_settings_t gw_decoded_settings; /* a response whose body goes to body_sink */
/* (a request's body goes to body_sink too when it is set) */

/* Fills both settings once (the first parser of any thread; racing threads
 * write the same values). */
static void gw_http1_settings_init(void) {
    static int done;
    if (__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        return;
    llhttp_settings_t *all[] = {&gw_request_settings, &gw_response_settings, &gw_decoded_settings};
    for (size_t i = 0; i < 3; i++) {
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
    /* A chunked request body to an HTTP/2 sandbox, without its framing (body_sink). */
    gw_request_settings.on_body = gw_head_on_body;
    gw_response_settings.on_status = gw_head_on_target;
    gw_response_settings.on_chunk_header = gw_head_on_response_chunk_header;
    gw_decoded_settings = gw_response_settings;
    gw_decoded_settings.on_body = gw_head_on_body;
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

void gw_http1_request_init(llhttp_t *parser, gw_head_t *head) {
    gw_http1_settings_init();
    llhttp_init(parser, HTTP_REQUEST, &gw_request_settings);
    parser->data = head;
}

void gw_http1_response_init(llhttp_t *parser, gw_head_t *head, bool head_request, bool decoded) {
    gw_http1_settings_init();
    llhttp_init(parser, HTTP_RESPONSE, decoded ? &gw_decoded_settings : &gw_response_settings);
    parser->data = head;
    head->skip_body = head_request;
}

size_t gw_http1_parse(llhttp_t *parser, const char *data, size_t length, llhttp_errno_t *error) {
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
    /* RFC 9112 §3: a request line ends with its HTTP-version; one that ended
     * without (HTTP/0.9) would otherwise wait for a head that never comes.
     * Empty lines before the request line are allowed (§2.2). */
    if (parser->type == HTTP_REQUEST && !head->version_seen && head->target != NULL &&
        head->target_offset < taken &&
        memchr(data + head->target_offset, '\n', taken - head->target_offset) != NULL)
        *error = HPE_INVALID_VERSION;
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

/* ---- reading a head ---- */

static bool gw_name_is(const gw_header_t *header, const char *name, size_t length) {
    return header->name_length == length && strncasecmp(header->name, name, length) == 0;
}

const gw_header_t *gw_head_find(const gw_head_t *head, const char *name, size_t length) {
    for (size_t i = 0; i < head->header_count; i++) {
        if (gw_name_is(&head->headers[i], name, length))
            return &head->headers[i];
    }
    return NULL;
}

bool gw_head_is_hop_by_hop(const gw_head_t *head, const gw_header_t *header) {
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

/* True if a Via field names instance (RFC 9110 §7.6.3: "protocol received-by
 * [comment]", a list): the request went round a loop through a balancer, NAT
 * or another gateway back here. */
static bool gw_head_passed(const gw_head_t *head, const char *instance, size_t instance_length) {
    for (size_t i = head->kind_first[GW_HEADER_VIA]; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (header->kind != GW_HEADER_VIA)
            continue;
        const char *element;
        size_t length, cursor = 0;
        while (gw_list_next(header->value, header->value_length, &cursor, &element, &length)) {
            size_t at = 0;
            while (at < length && element[at] != ' ' && element[at] != '\t')
                at++; /* the protocol */
            while (at < length && (element[at] == ' ' || element[at] == '\t'))
                at++;
            size_t end = at;
            while (end < length && element[end] != ' ' && element[end] != '\t')
                end++;
            if (end - at == instance_length && memcmp(element + at, instance, instance_length) == 0)
                return true;
        }
    }
    return false;
}

/* RFC 9112 §3.2.2: an absolute-form target's authority replaces Host, and
 * its path is what the sandbox gets. Returns false when memory is exhausted. */
static bool gw_request_absolute_form(const gw_head_t *head, gw_request_t *request) {
    const char *target = head->target;
    size_t target_length = head->target_length;
    size_t scheme_length = gw_ascii_prefix(target, target_length, "http://")    ? 7
                           : gw_ascii_prefix(target, target_length, "https://") ? 8
                                                                                : 0;
    if (scheme_length == 0)
        return true;
    request->authority = target + scheme_length;
    request->authority_length = strcspn(request->authority, "/?#");
    const char *rest = request->authority + request->authority_length;
    if (*rest == '\0' || *rest == '#') {
        request->path = "/";
    } else if (*rest == '?') {
        /* "http://h?q" has the origin-form "/?q" (RFC 9112 §3.2.1). */
        char *path = arena_alloc(head->arena, strlen(rest) + 2);
        if (path == NULL)
            return false;
        path[0] = '/';
        strcpy(path + 1, rest);
        request->path = path;
    } else {
        request->path = rest;
    }
    return true;
}

/* The E2b-Sandbox-Id and E2b-Sandbox-Port fields, which route a request to the
 * shared host (the kind holds both; their names differ in length). */
static void gw_request_shared_fields(const gw_head_t *head, route_shared_fields_t *shared) {
    for (size_t i = head->kind_first[GW_HEADER_ROUTING]; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (header->kind != GW_HEADER_ROUTING)
            continue;
        if (header->name_length == 14 && shared->id_count++ == 0) {
            shared->id = header->value;
            shared->id_length = header->value_length;
        } else if (header->name_length == 16 && shared->port_count++ == 0) {
            shared->port = header->value;
            shared->port_length = header->value_length;
        }
    }
}

static const char *const gw_idempotent_methods[] = {"GET", "HEAD",   "OPTIONS",
                                                    "PUT", "DELETE", "TRACE"};

bool gw_method_known(const char *method) {
#define GW_METHOD_IS(number, name, text)                                                           \
    if (strcmp(method, #text) == 0)                                                                \
        return true;
    HTTP_METHOD_MAP(GW_METHOD_IS)
#undef GW_METHOD_IS
    return false;
}

bool gw_method_idempotent(const char *method) {
    for (size_t i = 0; i < sizeof(gw_idempotent_methods) / sizeof(gw_idempotent_methods[0]); i++) {
        if (strcmp(method, gw_idempotent_methods[i]) == 0)
            return true;
    }
    return false;
}

gw_request_verdict_t gw_http1_request_check(const gw_head_t *head, llhttp_t *parser,
                                            const char *instance, size_t instance_length,
                                            gw_request_t *request) {
    memset(request, 0, sizeof(*request));
    if (head->failed)
        return GW_REQUEST_NO_MEMORY;
    request->method = llhttp_method_name(llhttp_get_method(parser));
    request->path = head->target;
    request->keep_alive = llhttp_should_keep_alive(parser);
    request->has_body = (parser->flags & F_CHUNKED) || parser->content_length > 0;
    request->upgrade = parser->upgrade;
    request->http10 = llhttp_get_http_minor(parser) == 0;
    request->idempotent = gw_method_idempotent(request->method);
    /* DESIGN "What the sandbox receives": Upgrade: h2c is never an upgrade
     * (HTTP/2 is offered by prior knowledge alone); the request is served as
     * HTTP/1.1 without it and its HTTP2-Settings. */
    if (request->upgrade && head->kind_count[GW_HEADER_UPGRADE] > 0) {
        const gw_header_t *upgrade = &head->headers[head->kind_first[GW_HEADER_UPGRADE]];
        if (gw_list_has(upgrade->value, upgrade->value_length, "h2c", 3))
            request->upgrade = false;
    }
    if (llhttp_get_http_major(parser) != 1 || llhttp_get_method(parser) == HTTP_CONNECT ||
        head->target == NULL)
        return GW_REQUEST_MALFORMED;
    if (!gw_request_absolute_form(head, request))
        return GW_REQUEST_NO_MEMORY;
    size_t hosts = head->kind_count[GW_HEADER_HOST];
    if (hosts > 0 && request->authority == NULL) {
        const gw_header_t *host = &head->headers[head->kind_first[GW_HEADER_HOST]];
        request->authority = host->value;
        request->authority_length = host->value_length;
    }
    /* RFC 9112 §6.1: the gateway passes bodies through unchanged, so the only
     * transfer coding it accepts is a single "chunked" (any other coding, or
     * chunked not last, leaves the length unknown: a smuggling vector); in an
     * HTTP/1.0 request any Transfer-Encoding is faulty framing. */
    size_t codings = head->kind_count[GW_HEADER_TRANSFER_ENCODING];
    bool chunked_only = true;
    if (codings == 1) {
        const gw_header_t *coding = &head->headers[head->kind_first[GW_HEADER_TRANSFER_ENCODING]];
        chunked_only = coding->value_length == 7 && strncasecmp(coding->value, "chunked", 7) == 0;
    }
    /* RFC 9112 §3.2: one Host. Two tokens: which one counts would be the
     * sender's choice. */
    if (hosts > 1 || codings > 1 || !chunked_only || (codings > 0 && request->http10) ||
        head->connection_names_framing)
        return GW_REQUEST_MALFORMED;
    return gw_request_check_fields(head, instance, instance_length, request);
}

gw_request_verdict_t gw_request_check_fields(const gw_head_t *head, const char *instance,
                                             size_t instance_length, gw_request_t *request) {
    size_t tokens = head->kind_count[GW_HEADER_TOKEN];
    if (tokens > 1)
        return GW_REQUEST_MALFORMED;
    if (tokens == 1) {
        const gw_header_t *token = &head->headers[head->kind_first[GW_HEADER_TOKEN]];
        request->token = token->value;
        request->token_length = token->value_length;
    }
    if (head->kind_count[GW_HEADER_ROUTING] > 0)
        gw_request_shared_fields(head, &request->shared);
    if (request->authority == NULL || request->authority_length == 0)
        return GW_REQUEST_NO_AUTHORITY;
    if (head->kind_count[GW_HEADER_VIA] > 0 && gw_head_passed(head, instance, instance_length))
        return GW_REQUEST_LOOP;
    return GW_REQUEST_OK;
}

/* ---- writing heads ---- */

/* Appends to a head being written into out (whose capacity the caller sized
 * from the parts). */
#define GW_PUT(data, count)                                                                        \
    do {                                                                                           \
        memcpy(out + length, (data), (count));                                                     \
        length += (count);                                                                         \
    } while (0)
#define GW_PUT_LITERAL(literal) GW_PUT(literal, sizeof(literal) - 1)
#define GW_PUT_FIELD(header)                                                                       \
    do {                                                                                           \
        GW_PUT((header)->name, (header)->name_length);                                             \
        GW_PUT_LITERAL(": ");                                                                      \
        GW_PUT((header)->value, (header)->value_length);                                           \
        GW_PUT_LITERAL("\r\n");                                                                    \
    } while (0)

/* Room for fields first to last of head, each as "name: value\r\n". */
static size_t gw_fields_size(const gw_head_t *head, size_t first, size_t last) {
    size_t size = 0;
    for (size_t i = first; i < last; i++)
        size += head->headers[i].name_length + head->headers[i].value_length + 4;
    return size;
}

/* Writes a Cookie value without the gateway's access cookie (RFC 6265 §4.2.1:
 * "name=value" pairs joined by "; "): the sandbox never sees it. Returns the
 * length written into out (at most length bytes), 0 when no cookie is left. */
static size_t gw_cookie_filter(const char *value, size_t length, char *out) {
    static const char name[] = AUTH_COOKIE_NAME "=";
    size_t written = 0;
    size_t at = 0;
    while (at < length) {
        size_t end = at;
        while (end < length && value[end] != ';')
            end++;
        size_t start = at;
        while (start < end && (value[start] == ' ' || value[start] == '\t'))
            start++;
        size_t pair = end - start;
        bool ours = pair >= sizeof(name) - 1 && memcmp(value + start, name, sizeof(name) - 1) == 0;
        if (pair > 0 && !ours) {
            if (written > 0) {
                memcpy(out + written, "; ", 2);
                written += 2;
            }
            memcpy(out + written, value + start, pair);
            written += pair;
        }
        at = end + 1;
    }
    return written;
}

/* True if an Origin is the request's own: "http://" or "https://" and the
 * client's Host exactly (the host part case-insensitive). */
static bool gw_origin_is_own(const gw_header_t *origin, const gw_request_t *request) {
    size_t scheme = gw_ascii_prefix(origin->value, origin->value_length, "https://") ? 8
                    : gw_ascii_prefix(origin->value, origin->value_length, "http://") ? 7
                                                                                      : 0;
    return scheme > 0 && origin->value_length - scheme == request->authority_length &&
           strncasecmp(origin->value + scheme, request->authority, request->authority_length) == 0;
}

int gw_http1_request_head_write(const gw_head_t *head, const gw_request_t *request,
                                const gw_forward_t *forward, arena_t *arena, char **result,
                                size_t *result_length, bool *closes) {
    size_t path_length = strlen(request->path);
    /* A filtered Cookie may turn each ";" into "; ": room for its value twice. */
    size_t cookies = 0;
    for (size_t i = head->kind_first[GW_HEADER_COOKIE];
         head->kind_count[GW_HEADER_COOKIE] > 0 && i < head->header_count; i++)
        cookies += head->headers[i].kind == GW_HEADER_COOKIE ? head->headers[i].value_length : 0;
    size_t capacity = 256 + strlen(request->method) + path_length + forward->host_length +
                      request->authority_length + forward->instance_length +
                      gw_fields_size(head, 0, head->header_count) + cookies +
                      forward->host_length;
    char *out = arena_alloc(arena, capacity);
    if (out == NULL)
        return -1;
    size_t length = 0;
    GW_PUT(request->method, strlen(request->method));
    GW_PUT_LITERAL(" ");
    GW_PUT(request->path, path_length);
    if (request->http10)
        GW_PUT_LITERAL(" HTTP/1.0\r\nHost: ");
    else
        GW_PUT_LITERAL(" HTTP/1.1\r\nHost: ");
    GW_PUT(forward->host, forward->host_length);
    GW_PUT_LITERAL("\r\n");
    for (size_t i = 0; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (header->kind == GW_HEADER_UPGRADE && request->upgrade) {
            /* kept on upgrade requests, with Connection: upgrade below */
        } else if (header->kind == GW_HEADER_HOST || header->kind == GW_HEADER_FORWARDED ||
                   header->kind == GW_HEADER_TOKEN || header->kind == GW_HEADER_ROUTING ||
                   gw_head_is_hop_by_hop(head, header)) {
            continue;
        } else if (header->kind == GW_HEADER_ORIGIN && forward->masked &&
                   gw_origin_is_own(header, request)) {
            /* DESIGN "What the sandbox receives": an app that compares Origin
             * with Host (Jupyter, CSRF checks) sees a same-origin request. */
            if (gw_ascii_prefix(header->value, header->value_length, "https://"))
                GW_PUT_LITERAL("Origin: https://");
            else
                GW_PUT_LITERAL("Origin: http://");
            GW_PUT(forward->host, forward->host_length);
            GW_PUT_LITERAL("\r\n");
            continue;
        } else if (header->kind == GW_HEADER_COOKIE &&
                   memmem(header->value, header->value_length, AUTH_COOKIE_NAME "=",
                          sizeof(AUTH_COOKIE_NAME)) != NULL) {
            size_t start = length;
            GW_PUT(header->name, header->name_length);
            GW_PUT_LITERAL(": ");
            size_t kept = gw_cookie_filter(header->value, header->value_length, out + length);
            if (kept == 0) {
                length = start; /* nothing else in it: the field goes */
                continue;
            }
            length += kept;
            GW_PUT_LITERAL("\r\n");
            continue;
        }
        GW_PUT_FIELD(header);
    }
    if (forward->masked) {
        GW_PUT_LITERAL("X-Forwarded-Host: ");
        GW_PUT(request->authority, request->authority_length);
        GW_PUT_LITERAL("\r\n");
    }
    GW_PUT_LITERAL("X-Forwarded-For: ");
    GW_PUT(forward->client_address, strlen(forward->client_address));
    if (forward->https)
        GW_PUT_LITERAL("\r\nX-Forwarded-Proto: https\r\n");
    else
        GW_PUT_LITERAL("\r\nX-Forwarded-Proto: http\r\n");
    /* RFC 9110 §7.6.3, and how a loop through other hops is found. */
    GW_PUT_LITERAL("Via: 1.1 ");
    GW_PUT(forward->instance, forward->instance_length);
    GW_PUT_LITERAL("\r\n");
    if (request->upgrade)
        GW_PUT_LITERAL("Connection: upgrade\r\n");
    else if (request->http10)
        GW_PUT_LITERAL("Connection: close\r\n");
    GW_PUT_LITERAL("\r\n");
    *closes = request->http10 && !request->upgrade;
    *result = out;
    *result_length = length;
    return 0;
}

int gw_http1_response_head_write(const gw_head_t *head, int status, bool close, arena_t *arena,
                                 char **result, size_t *result_length) {
    size_t capacity = 64 + head->target_length + gw_fields_size(head, 0, head->header_count);
    /* One buffer, so the caller adds it with one evbuffer_add. */
    char *out = arena_alloc(arena, capacity);
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
        } else if (gw_head_is_hop_by_hop(head, header)) {
            continue;
        }
        GW_PUT_FIELD(header);
    }
    if (status == 101)
        GW_PUT_LITERAL("Connection: upgrade\r\n");
    else if (close)
        GW_PUT_LITERAL("Connection: close\r\n");
    GW_PUT_LITERAL("\r\n");
    *result = out;
    *result_length = length;
    return 0;
}

int gw_http1_trailers_write(const gw_head_t *head, arena_t *arena, char **result,
                            size_t *result_length) {
    char *out =
        arena_alloc(arena, 2 + gw_fields_size(head, head->trailer_start, head->header_count));
    if (out == NULL)
        return -1;
    size_t length = 0;
    for (size_t i = head->trailer_start; i < head->header_count; i++) {
        const gw_header_t *header = &head->headers[i];
        if (header->kind != GW_HEADER_OTHER || gw_head_is_hop_by_hop(head, header))
            continue;
        GW_PUT_FIELD(header);
    }
    GW_PUT_LITERAL("\r\n");
    *result = out;
    *result_length = length;
    return 0;
}
