/* Error responses the gateway itself sends: JSON for programs, a small HTML page for browsers. */
#include "gateway/error_page.h"

#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

#include "util/json.h"

/* The quality and place of one media range in an Accept header. */
typedef struct gw_error_accept_match {
    int quality;     /* thousandths (RFC 9110 §12.4.2), -1 when the range is absent */
    size_t position; /* index of the range among the header's elements */
} gw_error_accept_match_t;

static bool gw_error_is_space(char character) { return character == ' ' || character == '\t'; }

/* Parses a qvalue ("0", "0.5", "1.000"); anything malformed counts as 1, the
 * default, so a sloppy client is not turned away from what it asked for. */
static int gw_error_parse_quality(const char *text, size_t length) {
    if (length == 0 || (text[0] != '0' && text[0] != '1'))
        return 1000;
    int quality = (text[0] - '0') * 1000;
    if (length == 1)
        return quality;
    if (text[1] != '.' || length > 5)
        return 1000;
    int scale = 100;
    for (size_t index = 2; index < length; index++) {
        if (text[index] < '0' || text[index] > '9')
            return 1000;
        quality += (text[index] - '0') * scale;
        scale /= 10;
    }
    return quality > 1000 ? 1000 : quality;
}

/* Finds the first element of accept whose media range is media_type (case-insensitive). */
static gw_error_accept_match_t gw_error_accept_find(const char *accept, const char *media_type) {
    gw_error_accept_match_t match = {.quality = -1, .position = 0};
    size_t media_type_length = strlen(media_type);
    size_t position = 0;
    const char *element = accept;
    while (*element != '\0') {
        const char *element_end = strchr(element, ',');
        if (element_end == NULL)
            element_end = element + strlen(element);
        const char *range = element;
        while (range < element_end && gw_error_is_space(*range))
            range++;
        const char *range_end = range;
        while (range_end < element_end && *range_end != ';')
            range_end++;
        const char *parameters = range_end;
        while (range_end > range && gw_error_is_space(range_end[-1]))
            range_end--;
        if ((size_t)(range_end - range) == media_type_length &&
            strncasecmp(range, media_type, media_type_length) == 0) {
            match.quality = 1000;
            match.position = position;
            /* Parameters are ";name=value" pairs; only q matters here. */
            while (parameters < element_end) {
                const char *name = parameters + 1;
                const char *name_end = name;
                while (name_end < element_end && *name_end != ';')
                    name_end++;
                while (name < name_end && gw_error_is_space(*name))
                    name++;
                if (name_end - name >= 2 && (name[0] == 'q' || name[0] == 'Q')) {
                    const char *value = name + 1;
                    while (value < name_end && gw_error_is_space(*value))
                        value++;
                    if (value < name_end && *value == '=') {
                        value++;
                        while (value < name_end && gw_error_is_space(*value))
                            value++;
                        const char *value_end = name_end;
                        while (value_end > value && gw_error_is_space(value_end[-1]))
                            value_end--;
                        match.quality = gw_error_parse_quality(value, (size_t)(value_end - value));
                    }
                }
                parameters = name_end;
            }
            return match;
        }
        position++;
        element = *element_end == ',' ? element_end + 1 : element_end;
    }
    return match;
}

/* True when accept ranks application/json above text/html: by quality, and
 * at equal quality by order, since clients list what they want first. */
static bool gw_error_accept_prefers_json(const char *accept) {
    gw_error_accept_match_t json = gw_error_accept_find(accept, "application/json");
    if (json.quality <= 0)
        return false;
    gw_error_accept_match_t html = gw_error_accept_find(accept, "text/html");
    if (html.quality < 0)
        return true;
    if (json.quality != html.quality)
        return json.quality > html.quality;
    return json.position < html.position;
}

/* True for "navigate" with optional surrounding whitespace, in any case. */
static bool gw_error_is_navigate(const char *mode) {
    static const char navigate[] = "navigate";
    while (gw_error_is_space(*mode))
        mode++;
    size_t length = strlen(mode);
    while (length > 0 && gw_error_is_space(mode[length - 1]))
        length--;
    return length == sizeof(navigate) - 1 && strncasecmp(mode, navigate, length) == 0;
}

bool gw_error_wants_html(const gw_error_client_t *client) {
    if (client == NULL || client->user_agent == NULL)
        return false;
    /* Every mainstream browser sends "Mozilla/"; curl, wget, HTTP libraries
     * and SDKs do not, so this alone keeps programs on JSON. */
    if (strstr(client->user_agent, "Mozilla/") == NULL)
        return false;
    if (client->has_x_requested_with)
        return false;
    /* fetch() and XMLHttpRequest send cors, same-origin or no-cors: scripts
     * read the body, so they get JSON even from a browser. */
    if (client->sec_fetch_mode != NULL && !gw_error_is_navigate(client->sec_fetch_mode))
        return false;
    if (client->accept != NULL && gw_error_accept_prefers_json(client->accept))
        return false;
    return true;
}

const char *gw_status_reason(int status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static int gw_error_add_text(struct evbuffer *body, const char *text) {
    return evbuffer_add(body, text, strlen(text));
}

/* Appends text escaped for a JSON string, in stack-sized pieces. */
static int gw_error_add_json_string(struct evbuffer *body, const char *text) {
    char piece[256];
    size_t length = strlen(text);
    while (length > 0) {
        size_t consumed;
        size_t written = json_escape_into(piece, sizeof(piece), text, length, &consumed);
        if (evbuffer_add(body, piece, written) != 0)
            return -1;
        text += consumed;
        length -= consumed;
    }
    return 0;
}

/* Appends text with the five characters that mean something in HTML replaced
 * by entities, so a message or sandbox ID cannot inject markup. */
static int gw_error_add_html_text(struct evbuffer *body, const char *text) {
    const char *span = text;
    for (const char *cursor = text;; cursor++) {
        const char *entity;
        switch (*cursor) {
        case '&': entity = "&amp;"; break;
        case '<': entity = "&lt;"; break;
        case '>': entity = "&gt;"; break;
        case '"': entity = "&quot;"; break;
        case '\'': entity = "&#39;"; break;
        case '\0': return evbuffer_add(body, span, (size_t)(cursor - span));
        default: continue;
        }
        if (evbuffer_add(body, span, (size_t)(cursor - span)) != 0 ||
            evbuffer_add(body, entity, strlen(entity)) != 0)
            return -1;
        span = cursor + 1;
    }
}

static int gw_error_add_json_body(struct evbuffer *body, int status, const char *message,
                                  const char *sandbox_id, int port) {
    if (gw_error_add_text(body, "{\"sandboxId\": \"") != 0 ||
        gw_error_add_json_string(body, sandbox_id) != 0 ||
        gw_error_add_text(body, "\", \"message\": \"") != 0 ||
        gw_error_add_json_string(body, message) != 0 || gw_error_add_text(body, "\", ") != 0)
        return -1;
    if (port > 0 && evbuffer_add_printf(body, "\"port\": %d, ", port) < 0)
        return -1;
    return evbuffer_add_printf(body, "\"code\": %d}", status) < 0 ? -1 : 0;
}

/* Self-contained on purpose: the page must render when nothing else is
 * reachable, and must not make the browser fetch from any origin. */
static const char gw_error_html_head[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<style>body{font-family:system-ui,-apple-system,sans-serif;max-width:40rem;"
    "margin:4rem auto;padding:0 1rem;color:#1f2328;line-height:1.5}"
    "h1{font-size:1.5rem;margin-bottom:.5rem}"
    ".detail{color:#59636e;font-size:.875rem}"
    "code{font-family:ui-monospace,monospace}</style>\n";

/* Appends length bytes of text HTML-escaped, NUL bytes left out. */
static int gw_error_add_html_bytes(struct evbuffer *body, const char *text, size_t length) {
    char piece[512];
    size_t count = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i == length || count == sizeof(piece) - 1) {
            piece[count] = '\0';
            if (gw_error_add_html_text(body, piece) != 0)
                return -1;
            count = 0;
        }
        if (i < length && text[i] != '\0')
            piece[count++] = text[i];
    }
    return 0;
}

static int gw_hex_value(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

bool gw_query_next(const char **cursor, const char **pair, size_t *length) {
    if (*cursor == NULL)
        return false;
    const char *end = strchr(*cursor, '&');
    *pair = *cursor;
    *length = end != NULL ? (size_t)(end - *cursor) : strlen(*cursor);
    *cursor = end != NULL ? end + 1 : NULL;
    return true;
}

bool gw_query_pair_is(const char *pair, size_t length, const char *name) {
    size_t name_length = strlen(name);
    return length >= name_length && memcmp(pair, name, name_length) == 0 &&
           (length == name_length || pair[name_length] == '=');
}

size_t gw_query_decode(const char *text, size_t length, char *out) {
    size_t written = 0;
    for (size_t i = 0; i < length; i++) {
        int high, low;
        if (text[i] == '+') {
            out[written++] = ' ';
        } else if (text[i] == '%' && i + 2 < length && (high = gw_hex_value(text[i + 1])) >= 0 &&
                   (low = gw_hex_value(text[i + 2])) >= 0) {
            out[written++] = (char)(high * 16 + low);
            i += 2;
        } else {
            out[written++] = text[i];
        }
    }
    return written;
}

/* The form of the 403 page for a missing credential: it asks for the token
 * and sends it as e2b_traffic_access_token (method get, no script), the
 * target's other query parameters as hidden inputs, all HTML-escaped. */
static int gw_error_add_token_form(struct evbuffer *body, const char *target) {
    const char *query = strchr(target, '?');
    size_t path_length = query != NULL ? (size_t)(query - target) : strlen(target);
    if (gw_error_add_text(body, "<form method=\"get\" action=\"") != 0 ||
        gw_error_add_html_bytes(body, target, path_length) != 0 ||
        gw_error_add_text(body, "\">\n<p><label>Access token <input type=\"password\" "
                                "name=\"" GW_TOKEN_PARAMETER "\" autocomplete=\"off\" "
                                "required autofocus></label>\n") != 0)
        return -1;
    const char *cursor = query != NULL ? query + 1 : NULL;
    const char *at;
    size_t pair;
    while (gw_query_next(&cursor, &at, &pair)) {
        const char *equals = memchr(at, '=', pair);
        size_t name_length = equals != NULL ? (size_t)(equals - at) : pair;
        char decoded[2048];
        if (pair > 0 && pair < sizeof(decoded) && !gw_query_pair_is(at, pair, GW_TOKEN_PARAMETER)) {
            size_t name = gw_query_decode(at, name_length, decoded);
            if (gw_error_add_text(body, "<input type=\"hidden\" name=\"") != 0 ||
                gw_error_add_html_bytes(body, decoded, name) != 0 ||
                gw_error_add_text(body, "\" value=\"") != 0)
                return -1;
            size_t value =
                equals != NULL ? gw_query_decode(equals + 1, pair - name_length - 1, decoded) : 0;
            if (gw_error_add_html_bytes(body, decoded, value) != 0 ||
                gw_error_add_text(body, "\">\n") != 0)
                return -1;
        }
    }
    return gw_error_add_text(body, "<button type=\"submit\">Open</button></p>\n</form>\n");
}

static int gw_error_add_html_body(struct evbuffer *body, int status, const char *message,
                                  const char *sandbox_id, int port, const char *form_target) {
    const char *reason = gw_status_reason(status);
    if (evbuffer_add(body, gw_error_html_head, sizeof(gw_error_html_head) - 1) != 0 ||
        evbuffer_add_printf(body, "<title>%d ", status) < 0 ||
        gw_error_add_html_text(body, reason) != 0 ||
        evbuffer_add_printf(body, "</title>\n</head>\n<body>\n<h1>%d ", status) < 0 ||
        gw_error_add_html_text(body, reason) != 0 || gw_error_add_text(body, "</h1>\n<p>") != 0 ||
        gw_error_add_html_text(body, message) != 0 || gw_error_add_text(body, "</p>\n") != 0)
        return -1;
    if (sandbox_id[0] != '\0' || port > 0) {
        if (gw_error_add_text(body, "<p class=\"detail\">") != 0)
            return -1;
        if (sandbox_id[0] != '\0' &&
            (gw_error_add_text(body, "Sandbox <code>") != 0 ||
             gw_error_add_html_text(body, sandbox_id) != 0 ||
             evbuffer_add_printf(body, "</code>%s", port > 0 ? ", " : "") < 0))
            return -1;
        if (port > 0 && evbuffer_add_printf(body, "port <code>%d</code>", port) < 0)
            return -1;
        if (gw_error_add_text(body, "</p>\n") != 0)
            return -1;
    }
    if (form_target != NULL && gw_error_add_token_form(body, form_target) != 0)
        return -1;
    return gw_error_add_text(body, "</body>\n</html>\n");
}

bool gw_error_head_wants_html(const gw_head_t *head) {
    gw_error_client_t browser = {0};
    const gw_header_t *header;
    if ((header = gw_head_find(head, "user-agent", 10)) != NULL)
        browser.user_agent = header->value;
    if ((header = gw_head_find(head, "accept", 6)) != NULL)
        browser.accept = header->value;
    if ((header = gw_head_find(head, "sec-fetch-mode", 14)) != NULL)
        browser.sec_fetch_mode = header->value;
    browser.has_x_requested_with = gw_head_find(head, "x-requested-with", 16) != NULL;
    return gw_error_wants_html(&browser);
}

int gw_error_render_body(struct evbuffer *body, int status, const char *message,
                         const char *sandbox_id, int port, bool html, const char *form_target) {
    if (message == NULL)
        message = gw_status_reason(status);
    if (sandbox_id == NULL)
        sandbox_id = "";
    return html ? gw_error_add_html_body(body, status, message, sandbox_id, port, form_target)
                : gw_error_add_json_body(body, status, message, sandbox_id, port);
}

const char *gw_error_content_type(bool html) {
    return html ? "text/html; charset=utf-8" : "application/json";
}

int gw_error_render(struct evbuffer *out, int status, const char *message, const char *sandbox_id,
                    int port, bool html, bool close, const gw_error_extra_t *extra) {
    /* The response is built aside and moved into out whole, so a failure
     * halfway never leaves a partial response queued for the client. */
    struct evbuffer *response = evbuffer_new();
    struct evbuffer *body = evbuffer_new();
    int result = -1;
    size_t length;
    if (response == NULL || body == NULL)
        goto done;
    if (gw_error_render_body(body, status, message, sandbox_id, port, html,
                             extra != NULL ? extra->form_target : NULL) != 0)
        goto done;
    /* A page's script can read why it was refused (DESIGN "Private sandboxes in a browser"). */
    if (evbuffer_add_printf(response,
                            "HTTP/1.1 %d %s\r\n"
                            "Content-Type: %s\r\n"
                            "Content-Length: %zu\r\n"
                            "Cache-Control: no-store\r\n",
                            status, gw_status_reason(status), gw_error_content_type(html),
                            evbuffer_get_length(body)) < 0 ||
        (extra != NULL && extra->origin != NULL &&
         evbuffer_add_printf(response,
                             "Access-Control-Allow-Origin: %.*s\r\n"
                             "Access-Control-Allow-Credentials: true\r\n"
                             "Vary: Origin\r\n",
                             (int)extra->origin_length, extra->origin) < 0) ||
        evbuffer_add_printf(response, "Connection: %s\r\n\r\n",
                            close ? "close" : "keep-alive") < 0 ||
        evbuffer_add_buffer(response, body) != 0)
        goto done;
    /* Measured before it is added: out may be a TLS stream's, which takes
     * what is added at once. */
    length = evbuffer_get_length(response);
    if (evbuffer_add_buffer(out, response) != 0)
        goto done;
    result = (int)length;
done:
    if (body != NULL)
        evbuffer_free(body);
    if (response != NULL)
        evbuffer_free(response);
    return result;
}

/* ---- gRPC (DESIGN "gRPC and HTTP/2 to sandboxes") ---- */

bool gw_content_type_is_grpc(const char *value, size_t length) {
    static const char type[] = "application/grpc";
    size_t type_length = sizeof(type) - 1;
    if (length < type_length || strncasecmp(value, type, type_length) != 0)
        return false;
    return length == type_length || value[type_length] == '+' || value[type_length] == ';';
}

bool gw_head_is_grpc(const gw_head_t *head) {
    const gw_header_t *type = gw_head_find(head, "content-type", 12);
    return type != NULL && gw_content_type_is_grpc(type->value, type->value_length);
}

int gw_grpc_status(int status, const char *message) {
    enum {
        GRPC_INVALID_ARGUMENT = 3,
        GRPC_DEADLINE_EXCEEDED = 4,
        GRPC_NOT_FOUND = 5,
        GRPC_PERMISSION_DENIED = 7,
        GRPC_RESOURCE_EXHAUSTED = 8,
        GRPC_FAILED_PRECONDITION = 9,
        GRPC_INTERNAL = 13,
        GRPC_UNAVAILABLE = 14,
    };
    switch (status) {
    case 400:
        return GRPC_INVALID_ARGUMENT;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 409:
        return GRPC_FAILED_PRECONDITION;
    case 429:
    case 431:
        return GRPC_RESOURCE_EXHAUSTED;
    case 504:
        return GRPC_DEADLINE_EXCEEDED;
    case 502:
        return message != NULL && strcmp(message, GW_MESSAGE_SANDBOX_NOT_FOUND) == 0
                   ? GRPC_NOT_FOUND
                   : GRPC_UNAVAILABLE;
    case 421:
        return 0;
    case 503:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_INTERNAL; /* 500, 508 */
    }
}

size_t gw_grpc_message(const char *message, char *out, size_t size) {
    static const char hex[] = "0123456789ABCDEF";
    size_t written = 0;
    for (const unsigned char *at = (const unsigned char *)message; *at != '\0'; at++) {
        bool plain = *at >= 0x20 && *at <= 0x7e && *at != '%';
        size_t need = plain ? 1 : 3;
        if (written + need >= size)
            break;
        if (plain) {
            out[written++] = (char)*at;
        } else {
            out[written++] = '%';
            out[written++] = hex[*at >> 4];
            out[written++] = hex[*at & 0xf];
        }
    }
    if (size > 0)
        out[written] = '\0';
    return written;
}
