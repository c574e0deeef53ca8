/* Fuzz target: the HTTP/1.1 codec alone (gateway/http1.c), no sockets: heads parsed in pieces,
 * checked and rewritten, and every head it writes read back by a strict llhttp parser.
 *
 * Input: one mode byte, then a message. Mode bit 0: a response (else a request); bits 1-3: the
 * size of the pieces it is fed in (fuzz_piece_sizes); bit 4: the sandbox's Host is a mask.
 *
 * Oracles: a head the gateway writes for the sandbox parses strictly, with one Host (the one it
 * was given), one X-Forwarded-For, at most one framing field, the gateway's Via last, and no
 * token, Forwarded, X-Forwarded-* but its own, E2b-Sandbox-* or hop-by-hop field; its trailers
 * carry none of those nor a framing field; a response head it writes parses with the same status
 * and no hop-by-hop field but its own Connection. */
#include <llhttp.h>
#include <strings.h>

#include "auth/token.h"
#include "gateway/http1.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t fuzz_piece_sizes[8] = {0, 1, 2, 3, 7, 16, 64, 1000};

static const char FUZZ_MASK[] = "localhost:3000";
static const char FUZZ_VIA[] = "1.1 fuzz-gw";

/* ---- reading back what the codec wrote ---- */

typedef struct readback {
    char name[64];
    size_t name_length;
    char value[256];
    size_t value_length;
    bool response;
    bool trailers; /* reading a trailer section */
    int hosts, forwarded_fors, lengths, codings, ours;
    bool last_via_ours;
    char host[256];
} readback_t;

static int readback_on_field(llhttp_t *parser, const char *at, size_t length) {
    readback_t *readback = parser->data;
    fuzz_append(readback->name, &readback->name_length, sizeof(readback->name), at, length);
    return 0;
}

static int readback_on_value(llhttp_t *parser, const char *at, size_t length) {
    readback_t *readback = parser->data;
    fuzz_append(readback->value, &readback->value_length, sizeof(readback->value), at, length);
    return 0;
}

static bool readback_is(const readback_t *readback, const char *name) {
    return readback->name_length == strlen(name) &&
           strncasecmp(readback->name, name, readback->name_length) == 0;
}

static bool readback_value_is(const readback_t *readback, const char *value) {
    return readback->value_length == strlen(value) &&
           memcmp(readback->value, value, readback->value_length) == 0;
}

static int readback_on_value_complete(llhttp_t *parser) {
    readback_t *readback = parser->data;
    /* Hop-by-hop fields never pass; the gateway's own Connection does. */
    FUZZ_CHECK(!readback_is(readback, "keep-alive") && !readback_is(readback, "te") &&
               !readback_is(readback, "proxy-connection"));
    if (readback_is(readback, "connection"))
        FUZZ_CHECK(readback_value_is(readback, "close") || readback_value_is(readback, "upgrade"));
    if (!readback->response) {
        FUZZ_CHECK(!readback_is(readback, AUTH_TOKEN_HEADER));
        FUZZ_CHECK(!readback_is(readback, "forwarded"));
        FUZZ_CHECK(!readback_is(readback, "e2b-sandbox-id") &&
                   !readback_is(readback, "e2b-sandbox-port"));
        bool forwarded_prefix =
            readback->name_length >= 12 && strncasecmp(readback->name, "x-forwarded-", 12) == 0;
        if (readback->trailers) {
            FUZZ_CHECK(!forwarded_prefix && !readback_is(readback, "host"));
            FUZZ_CHECK(!readback_is(readback, "content-length") &&
                       !readback_is(readback, "transfer-encoding"));
        } else if (readback_is(readback, "host")) {
            readback->hosts++;
            size_t length = readback->value_length < 255 ? readback->value_length : 255;
            memcpy(readback->host, readback->value, length);
            readback->host[length] = '\0';
        } else if (readback_is(readback, "x-forwarded-for")) {
            readback->forwarded_fors++;
            FUZZ_CHECK(readback_value_is(readback, "192.0.2.1"));
        } else if (forwarded_prefix) {
            FUZZ_CHECK(readback_is(readback, "x-forwarded-proto") ||
                       readback_is(readback, "x-forwarded-host"));
        } else if (readback_is(readback, "via")) {
            readback->last_via_ours = readback_value_is(readback, FUZZ_VIA);
            readback->ours += readback->last_via_ours;
        }
    }
    if (!readback->trailers) {
        readback->lengths += readback_is(readback, "content-length");
        readback->codings += readback_is(readback, "transfer-encoding");
    }
    readback->name_length = readback->value_length = 0;
    return 0;
}

/* Parses text (a head the codec wrote) strictly; the checks run as fields end. */
static void readback_head(const char *text, size_t length, bool response, readback_t *readback) {
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_header_field = readback_on_field;
    settings.on_header_value = readback_on_value;
    settings.on_header_value_complete = readback_on_value_complete;
    llhttp_t parser;
    llhttp_init(&parser, response ? HTTP_RESPONSE : HTTP_REQUEST, &settings);
    parser.data = readback;
    readback->response = response;
    llhttp_errno_t error = llhttp_execute(&parser, text, length);
    if (error != HPE_OK && error != HPE_PAUSED_UPGRADE) {
        fprintf(stderr, "a written head does not parse: %s (%s)\n%.*s\n", llhttp_errno_name(error),
                llhttp_get_error_reason(&parser), (int)length, text);
        FUZZ_CHECK(error == HPE_OK);
    }
}

/* ---- the codec ---- */

/* Feeds data in pieces until the head is complete (or the message, with
 * trailers); returns the bytes taken, the last error in *error. */
static size_t feed(llhttp_t *parser, gw_head_t *head, const uint8_t *data, size_t size,
                   size_t piece, bool to_message_end, llhttp_errno_t *error) {
    size_t offset = 0;
    *error = HPE_OK;
    while (offset < size) {
        size_t count = piece == 0 || size - offset < piece ? size - offset : piece;
        size_t taken = gw_http1_parse(parser, (const char *)data + offset, count, error);
        offset += taken;
        if (*error != HPE_OK && *error != HPE_PAUSED)
            break;
        if (to_message_end ? head->message_complete : head->head_complete)
            break;
        if (taken == 0 && count > 0)
            break;
    }
    return offset;
}

static void fuzz_request(const uint8_t *data, size_t size, size_t piece, bool masked) {
    arena_t arena;
    arena_init(&arena, 4096);
    gw_head_t head;
    gw_head_reset(&head, &arena);
    llhttp_t parser;
    gw_http1_request_init(&parser, &head);
    llhttp_errno_t error;
    size_t offset = feed(&parser, &head, data, size, piece, false, &error);
    gw_request_t request;
    if (!head.head_complete ||
        gw_http1_request_check(&head, &parser, "fuzz-gw", 7, &request) != GW_REQUEST_OK)
        goto done;
    gw_forward_t forward = {
        .host = masked ? FUZZ_MASK : request.authority,
        .host_length = masked ? strlen(FUZZ_MASK) : request.authority_length,
        .masked = masked,
        .client_address = "192.0.2.1",
        .instance = "fuzz-gw",
        .instance_length = 7,
    };
    char *out;
    size_t length;
    bool closes;
    if (gw_http1_request_head_write(&head, &request, &forward, &arena, &out, &length, &closes) < 0)
        goto done;
    readback_t readback = {0};
    readback_head(out, length, false, &readback);
    FUZZ_CHECK(readback.hosts == 1 && readback.forwarded_fors == 1);
    FUZZ_CHECK(strlen(readback.host) == forward.host_length ||
               forward.host_length >= sizeof(readback.host) - 1);
    FUZZ_CHECK(readback.lengths + readback.codings <= 1);
    FUZZ_CHECK(readback.ours == 1 && readback.last_via_ours);

    /* The body: a trailer section the codec writes reads back clean. */
    if (!request.has_body || (parser.flags & F_CHUNKED) == 0)
        goto done;
    feed(&parser, &head, data + offset, size - offset, piece, true, &error);
    if (!head.message_complete || !head.in_trailers)
        goto done;
    if (gw_http1_trailers_write(&head, &arena, &out, &length) < 0)
        goto done;
    /* A chunked message of no data, then the trailers. */
    static const char prefix[] =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    char *message = arena_alloc(&arena, sizeof(prefix) + length);
    if (message == NULL)
        goto done;
    memcpy(message, prefix, sizeof(prefix) - 1);
    memcpy(message + sizeof(prefix) - 1, out, length);
    readback_t trailers = {0};
    readback_head(message, sizeof(prefix) - 1 + length, false, &trailers);
done:
    arena_free(&arena);
}

static void fuzz_response(const uint8_t *data, size_t size, size_t piece, bool close) {
    arena_t arena;
    arena_init(&arena, 4096);
    gw_head_t head;
    gw_head_reset(&head, &arena);
    llhttp_t parser;
    gw_http1_response_init(&parser, &head, false, false);
    llhttp_errno_t error;
    feed(&parser, &head, data, size, piece, false, &error);
    if (!head.head_complete || head.connection_names_framing || head.failed)
        goto done; /* the exchange answers 502 */
    int status = llhttp_get_status_code(&parser);
    char *out;
    size_t length;
    if (gw_http1_response_head_write(&head, status, close, &arena, &out, &length) < 0)
        goto done;
    readback_t readback = {0};
    readback_head(out, length, true, &readback);
    FUZZ_CHECK(length >= 12 && out[9] == '0' + status / 100 % 10 &&
               out[10] == '0' + status / 10 % 10 && out[11] == '0' + status % 10);
done:
    arena_free(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    unsigned mode = data[0];
    size_t piece = fuzz_piece_sizes[(mode >> 1) & 7];
    if (mode & 1)
        fuzz_response(data + 1, size - 1, piece, (mode & 16) != 0);
    else
        fuzz_request(data + 1, size - 1, piece, (mode & 16) != 0);
    return 0;
}
