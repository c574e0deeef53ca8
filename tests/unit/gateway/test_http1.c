/* Unit tests of gateway/http1.c: heads checked and rewritten, table by table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "gateway/http1.h"

/* A parsed message: the parser, its head and the arena they use. */
typedef struct parsed {
    arena_t arena;
    llhttp_t parser;
    gw_head_t head;
    llhttp_errno_t error; /* of the last piece */
} parsed_t;

/* Feeds text to a request (or response) parser in pieces of at most piece
 * bytes (0: one piece), as the gateway does: pausing at the head's end. */
static parsed_t *parse(const char *text, bool request, size_t piece) {
    parsed_t *parsed = calloc(1, sizeof(*parsed));
    assert_non_null(parsed);
    arena_init(&parsed->arena, 4096);
    gw_head_reset(&parsed->head, &parsed->arena);
    if (request)
        gw_http1_request_init(&parsed->parser, &parsed->head);
    else
        gw_http1_response_init(&parsed->parser, &parsed->head, false, false);
    size_t length = strlen(text);
    size_t offset = 0;
    while (offset < length) {
        size_t count = piece == 0 || length - offset < piece ? length - offset : piece;
        size_t taken = gw_http1_parse(&parsed->parser, text + offset, count, &parsed->error);
        offset += taken;
        if (parsed->error != HPE_OK && parsed->error != HPE_PAUSED)
            break;
        if (parsed->head.head_complete || (taken == 0 && count > 0))
            break;
    }
    return parsed;
}

static void parsed_free(parsed_t *parsed) {
    arena_free(&parsed->arena);
    free(parsed);
}

static gw_request_verdict_t check(parsed_t *parsed, gw_request_t *request) {
    return gw_http1_request_check(&parsed->head, &parsed->parser, "gw-1", 4, request);
}

/* ---- request checks ---- */

static const struct {
    const char *name;
    const char *text;
    gw_request_verdict_t verdict;
} request_cases[] = {
    {"plain GET", "GET / HTTP/1.1\r\nHost: 3000-a.e2b.app\r\n\r\n", GW_REQUEST_OK},
    {"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", GW_REQUEST_OK},
    {"absolute form wins", "GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n", GW_REQUEST_OK},
    {"no Host", "GET / HTTP/1.1\r\n\r\n", GW_REQUEST_NO_AUTHORITY},
    {"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", GW_REQUEST_NO_AUTHORITY},
    {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", GW_REQUEST_MALFORMED},
    {"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", GW_REQUEST_MALFORMED},
    {"HTTP/0.9 with fields", "GET /\r\nHost: a\r\n\r\n", GW_REQUEST_MALFORMED},
    {"gzip coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
     GW_REQUEST_MALFORMED},
    {"chunked twice",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     "Transfer-Encoding: chunked\r\n\r\n",
     GW_REQUEST_MALFORMED},
    {"chunked in 1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
     GW_REQUEST_MALFORMED},
    {"Connection names Content-Length",
     "POST / HTTP/1.1\r\nHost: a\r\n"
     "Connection: content-length\r\nContent-Length: 1\r\n\r\n",
     GW_REQUEST_MALFORMED},
    {"Connection names Transfer-Encoding",
     "POST / HTTP/1.1\r\nHost: a\r\nConnection: close, "
     "Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
     GW_REQUEST_MALFORMED},
    {"Connection names Host", "GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n",
     GW_REQUEST_MALFORMED},
    {"Connection names another field", "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-a\r\n\r\n",
     GW_REQUEST_OK},
    {"two tokens",
     "GET / HTTP/1.1\r\nHost: a\r\ne2b-traffic-access-token: x\r\n"
     "E2B-Traffic-Access-Token: x\r\n\r\n",
     GW_REQUEST_MALFORMED},
    {"one token", "GET / HTTP/1.1\r\nHost: a\r\ne2b-traffic-access-token: x\r\n\r\n",
     GW_REQUEST_OK},
    {"own Via", "GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 gw-1\r\n\r\n", GW_REQUEST_LOOP},
    {"own Via in a list", "GET / HTTP/1.1\r\nHost: a\r\nVia: 1.0 lb, HTTP/1.1 gw-1 (x)\r\n\r\n",
     GW_REQUEST_LOOP},
    {"another Via", "GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 gw-10, 1.1 gw\r\n\r\n", GW_REQUEST_OK},
};

static void test_request_checks(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(request_cases) / sizeof(request_cases[0]); i++) {
        for (size_t piece = 0; piece <= 3; piece += 3) {
            parsed_t *parsed = parse(request_cases[i].text, true, piece);
            gw_request_verdict_t verdict = GW_REQUEST_MALFORMED;
            if (parsed->head.head_complete)
                verdict = check(parsed, &(gw_request_t){0});
            if (verdict != request_cases[i].verdict)
                fail_msg("%s (pieces of %zu): verdict %d, expected %d", request_cases[i].name,
                         piece, verdict, request_cases[i].verdict);
            parsed_free(parsed);
        }
    }
}

static void test_request_fields(void **state) {
    (void)state;
    parsed_t *parsed = parse("PUT http://3000-a.e2b.app?q=1 HTTP/1.1\r\nHost: other\r\n"
                             "e2b-traffic-access-token: t0k\r\nContent-Length: 3\r\n\r\n",
                             true, 0);
    gw_request_t request;
    assert_int_equal(check(parsed, &request), GW_REQUEST_OK);
    assert_string_equal(request.method, "PUT");
    assert_string_equal(request.path, "/?q=1");
    assert_int_equal(request.authority_length, strlen("3000-a.e2b.app"));
    assert_memory_equal(request.authority, "3000-a.e2b.app", request.authority_length);
    assert_int_equal(request.token_length, 3);
    assert_memory_equal(request.token, "t0k", 3);
    assert_true(request.keep_alive && request.has_body && request.idempotent);
    assert_false(request.upgrade || request.http10);
    parsed_free(parsed);

    parsed = parse("POST /p HTTP/1.0\r\nHost: a\r\n\r\n", true, 0);
    assert_int_equal(check(parsed, &request), GW_REQUEST_OK);
    assert_false(request.keep_alive || request.idempotent || request.has_body);
    assert_true(request.http10);
    assert_null(request.token);
    parsed_free(parsed);
}

static void test_http09_refused_at_its_line_end(void **state) {
    (void)state;
    /* Without the check the parser would wait for fields that never come. */
    parsed_t *parsed = parse("GET /\r\n", true, 0);
    assert_int_equal(parsed->error, HPE_INVALID_VERSION);
    parsed_free(parsed);
    parsed = parse("GET /\r\n", true, 1);
    assert_int_equal(parsed->error, HPE_INVALID_VERSION);
    parsed_free(parsed);
    /* An empty line before a request line is allowed (RFC 9112 §2.2). */
    parsed = parse("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", true, 2);
    assert_true(parsed->head.head_complete);
    parsed_free(parsed);
}

/* ---- the sandbox's request head ---- */

static char *rewrite(const char *text, bool masked, bool https) {
    static char result[2048];
    parsed_t *parsed = parse(text, true, 0);
    gw_request_t request;
    assert_int_equal(check(parsed, &request), GW_REQUEST_OK);
    gw_forward_t forward = {
        .host = masked ? "localhost:3000" : request.authority,
        .host_length = masked ? 14 : request.authority_length,
        .masked = masked,
        .client_address = "192.0.2.1",
        .https = https,
        .instance = "gw-1",
        .instance_length = 4,
    };
    char *out;
    size_t length;
    bool closes;
    assert_int_equal(gw_http1_request_head_write(&parsed->head, &request, &forward, &parsed->arena,
                                                 &out, &length, &closes),
                     0);
    assert_true(length < sizeof(result));
    memcpy(result, out, length);
    result[length] = '\0';
    assert_int_equal(closes, request.http10 && !request.upgrade);
    parsed_free(parsed);
    return result;
}

static const struct {
    const char *name;
    const char *request;
    bool masked;
    const char *expected;
} rewrite_cases[] = {
    {"fields kept, ours added", "GET /a?b HTTP/1.1\r\nHost: 3000-a.e2b.app\r\nAccept: */*\r\n\r\n",
     false,
     "GET /a?b HTTP/1.1\r\nHost: 3000-a.e2b.app\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.1\r\n"
     "X-Forwarded-Proto: http\r\nVia: 1.1 gw-1\r\n\r\n"},
    {"mask", "GET / HTTP/1.1\r\nHost: 3000-a.e2b.app:443\r\n\r\n", true,
     "GET / HTTP/1.1\r\nHost: localhost:3000\r\nX-Forwarded-Host: 3000-a.e2b.app:443\r\n"
     "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nVia: 1.1 gw-1\r\n\r\n"},
    {"forwarded, token and routing fields removed",
     "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=x\r\n"
     "X-Forwarded-Host: evil\r\ne2b-traffic-access-token: t\r\nE2b-Sandbox-Id: x\r\n"
     "E2b-Sandbox-Port: 1\r\nX-Kept: 1\r\n\r\n",
     false,
     "GET / HTTP/1.1\r\nHost: a\r\nX-Kept: 1\r\nX-Forwarded-For: 192.0.2.1\r\n"
     "X-Forwarded-Proto: http\r\nVia: 1.1 gw-1\r\n\r\n"},
    {"hop-by-hop removed",
     "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n"
     "Keep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nUpgrade: h2c\r\n"
     "X-B: 2\r\n\r\n",
     false,
     "GET / HTTP/1.1\r\nHost: a\r\nX-B: 2\r\nX-Forwarded-For: 192.0.2.1\r\n"
     "X-Forwarded-Proto: http\r\nVia: 1.1 gw-1\r\n\r\n"},
    {"upgrade kept",
     "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false,
     "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nX-Forwarded-For: 192.0.2.1\r\n"
     "X-Forwarded-Proto: http\r\nVia: 1.1 gw-1\r\nConnection: upgrade\r\n\r\n"},
    {"HTTP/1.0 closes", "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", false,
     "GET / HTTP/1.0\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\n"
     "Via: 1.1 gw-1\r\nConnection: close\r\n\r\n"},
    {"a client's Via stays, ours last", "GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 lb\r\n\r\n", false,
     "GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 lb\r\nX-Forwarded-For: 192.0.2.1\r\n"
     "X-Forwarded-Proto: http\r\nVia: 1.1 gw-1\r\n\r\n"},
    {"framing kept", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false,
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 192.0.2.1\r\n"
     "X-Forwarded-Proto: http\r\nVia: 1.1 gw-1\r\n\r\n"},
};

static void test_request_rewrites(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(rewrite_cases) / sizeof(rewrite_cases[0]); i++) {
        const char *got = rewrite(rewrite_cases[i].request, rewrite_cases[i].masked, false);
        if (strcmp(got, rewrite_cases[i].expected) != 0)
            fail_msg("%s:\n%s\nexpected\n%s", rewrite_cases[i].name, got,
                     rewrite_cases[i].expected);
    }
    assert_non_null(strstr(rewrite("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, true),
                           "X-Forwarded-Proto: https\r\n"));
}

/* ---- response heads and trailers ---- */

static void test_response_heads(void **state) {
    (void)state;
    static const struct {
        const char *response;
        bool close;
        const char *expected;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n"
         "Keep-Alive: timeout=5\r\nX-B: 2\r\n\r\n",
         false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-B: 2\r\n\r\n"},
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", true,
         "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
        {"HTTP/1.0 200 Fine\r\nTransfer-Encoding: chunked\r\n\r\n", false,
         "HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
         false,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parsed_t *parsed = parse(cases[i].response, false, 0);
        assert_true(parsed->head.head_complete);
        char *out;
        size_t length;
        assert_int_equal(
            gw_http1_response_head_write(&parsed->head, llhttp_get_status_code(&parsed->parser),
                                         cases[i].close, &parsed->arena, &out, &length),
            0);
        if (length != strlen(cases[i].expected) || memcmp(out, cases[i].expected, length) != 0)
            fail_msg("case %zu: %.*s", i, (int)length, out);
        parsed_free(parsed);
    }
    /* A response whose Connection names its framing is marked for a 502. */
    parsed_t *parsed = parse(
        "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n", false, 0);
    assert_true(parsed->head.connection_names_framing);
    parsed_free(parsed);
}

static void test_trailers(void **state) {
    (void)state;
    static const char text[] =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3;ext=1\r\nabc\r\n0\r\nX-Sum: 9\r\ne2b-traffic-access-token: t\r\nHost: b\r\n"
        "Forwarded: for=x\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 3\r\nKeep-Alive: 1\r\n"
        "E2b-Sandbox-Port: 1\r\nX-Last: 1\r\n\r\n";
    parsed_t *parsed = parse(text, true, 0);
    gw_request_t request;
    assert_int_equal(check(parsed, &request), GW_REQUEST_OK);
    /* The body, up to the pause at the last chunk, then the trailer section. */
    size_t offset = strstr(text, "\r\n\r\n") + 4 - text;
    llhttp_errno_t error = HPE_OK;
    while (!parsed->head.message_complete && offset < sizeof(text) - 1) {
        offset += gw_http1_parse(&parsed->parser, text + offset, sizeof(text) - 1 - offset, &error);
        assert_true(error == HPE_OK || error == HPE_PAUSED);
    }
    assert_true(parsed->head.in_trailers && parsed->head.message_complete);
    char *out;
    size_t length;
    assert_int_equal(gw_http1_trailers_write(&parsed->head, &parsed->arena, &out, &length), 0);
    assert_int_equal(length, strlen("X-Sum: 9\r\nX-Last: 1\r\n\r\n"));
    assert_memory_equal(out, "X-Sum: 9\r\nX-Last: 1\r\n\r\n", length);
    parsed_free(parsed);
}

static void test_chunk_extension_limit(void **state) {
    (void)state;
    static char text[8192];
    int length = snprintf(text, sizeof(text),
                          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;e=");
    memset(text + length, 'x', GW_HTTP1_CHUNK_EXTENSION_MAX);
    memcpy(text + length + GW_HTTP1_CHUNK_EXTENSION_MAX, "\r\na\r\n0\r\n\r\n", 11);
    parsed_t *parsed = parse(text, true, 0);
    size_t offset = strstr(text, "\r\n\r\n") + 4 - text;
    llhttp_errno_t error = HPE_OK;
    gw_http1_parse(&parsed->parser, text + offset, strlen(text) - offset, &error);
    assert_int_not_equal(error, HPE_OK);
    assert_int_not_equal(error, HPE_PAUSED);
    parsed_free(parsed);
}

/* ---- decoded response bodies (an HTTP/2 client's) ---- */

/* A chunked response split into pieces of every size: the sink gets the body
 * without framing, and the trailers follow the head's fields. */
static void test_decoded_body_and_trailers(void **state) {
    (void)state;
    static const char text[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                               "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: abc\r\n"
                               "Grpc-Status: 0\r\n\r\n";
    for (size_t piece = 1; piece <= sizeof(text); piece++) {
        arena_t arena;
        arena_init(&arena, 4096);
        gw_head_t head;
        gw_head_reset(&head, &arena);
        llhttp_t parser;
        gw_http1_response_init(&parser, &head, false, true);
        struct evbuffer *body = evbuffer_new();
        assert_non_null(body);
        size_t offset = 0, length = sizeof(text) - 1;
        while (offset < length && !head.message_complete) {
            size_t count = length - offset < piece ? length - offset : piece;
            head.body_sink = body;
            llhttp_errno_t error;
            size_t taken = gw_http1_parse(&parser, text + offset, count, &error);
            assert_true(error == HPE_OK || error == HPE_PAUSED);
            if (head.head_complete)
                head.head_complete = false; /* read on, as the exchange does */
            offset += taken;
        }
        assert_true(head.message_complete);
        assert_int_equal(evbuffer_get_length(body), 11);
        char out[11];
        evbuffer_remove(body, out, sizeof(out));
        assert_memory_equal(out, "hello world", 11);
        assert_true(head.in_trailers);
        assert_int_equal(head.header_count - head.trailer_start, 2);
        assert_memory_equal(head.headers[head.trailer_start].name, "X-Sum", 5);
        assert_memory_equal(head.headers[head.trailer_start + 1].value, "0", 1);
        evbuffer_free(body);
        arena_free(&arena);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_checks),
        cmocka_unit_test(test_decoded_body_and_trailers),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_http09_refused_at_its_line_end),
        cmocka_unit_test(test_request_rewrites),
        cmocka_unit_test(test_response_heads),
        cmocka_unit_test(test_trailers),
        cmocka_unit_test(test_chunk_extension_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
