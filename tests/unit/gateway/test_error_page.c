/* Unit tests for gateway/error_page.c: JSON or HTML, headers, escaping, and who gets which. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/error_page.h"

static const char *const chrome_user_agent =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36";
static const char *const chrome_navigation_accept =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

/* A rendered response split into its parts; text owns the memory. */
typedef struct response {
    char *text;
    char *status_line;
    char *headers; /* "Name: value\r\n" lines, ending with \r\n */
    char *body;
    size_t body_length;
} response_t;

static response_t render(int status, const char *message, const char *sandbox_id, int port,
                         bool html, bool close) {
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    int rendered = gw_error_render(out, status, message, sandbox_id, port, html, close, NULL);
    size_t length = evbuffer_get_length(out);
    assert_int_equal(rendered, (int)length); /* what it returns is what it added */
    response_t response = {0};
    response.text = malloc(length + 1);
    assert_non_null(response.text);
    assert_int_equal(evbuffer_remove(out, response.text, length), (int)length);
    response.text[length] = '\0';
    evbuffer_free(out);

    char *head_end = strstr(response.text, "\r\n\r\n");
    assert_non_null(head_end);
    response.body = head_end + 4;
    response.body_length = length - (size_t)(response.body - response.text);
    head_end[2] = '\0';
    response.status_line = response.text;
    char *status_line_end = strstr(response.text, "\r\n");
    *status_line_end = '\0';
    response.headers = status_line_end + 2;
    return response;
}

/* Returns the value of header name (exact case, as the gateway writes it), or fails. */
static char *header_value(const response_t *response, const char *name, char *value,
                          size_t size) {
    size_t name_length = strlen(name);
    for (const char *line = response->headers; *line != '\0';) {
        const char *line_end = strstr(line, "\r\n");
        assert_non_null(line_end);
        if (strncmp(line, name, name_length) == 0 && line[name_length] == ':') {
            const char *start = line + name_length + 2;
            size_t length = (size_t)(line_end - start);
            assert_true(length < size);
            memcpy(value, start, length);
            value[length] = '\0';
            return value;
        }
        line = line_end + 2;
    }
    fail_msg("no header %s", name);
    return NULL;
}

/* A parsed error body: the four keys the gateway writes, in order of appearance. */
typedef struct error_body {
    char sandbox_id[256];
    char message[256];
    long port; /* -1 when absent */
    long code;
    char keys[4][16];
    int key_count;
} error_body_t;

/* Decodes one JSON string at *cursor (past its opening quote) into out. */
static void parse_json_string(const char **cursor, char *out, size_t size) {
    size_t length = 0;
    const char *at = *cursor;
    while (*at != '"') {
        assert_true(*at != '\0');
        assert_true((unsigned char)*at >= 0x20); /* RFC 8259 §7: controls must be escaped */
        char decoded = *at;
        if (*at == '\\') {
            at++;
            switch (*at) {
            case '"': decoded = '"'; break;
            case '\\': decoded = '\\'; break;
            case '/': decoded = '/'; break;
            case 'b': decoded = '\b'; break;
            case 'f': decoded = '\f'; break;
            case 'n': decoded = '\n'; break;
            case 'r': decoded = '\r'; break;
            case 't': decoded = '\t'; break;
            case 'u': {
                char hex[5] = {at[1], at[2], at[3], at[4], '\0'};
                char *hex_end;
                long code_point = strtol(hex, &hex_end, 16);
                assert_true(hex_end == hex + 4);
                assert_true(code_point < 0x80); /* the gateway escapes only ASCII */
                decoded = (char)code_point;
                at += 4;
                break;
            }
            default: fail_msg("bad escape \\%c", *at);
            }
        }
        assert_true(length + 1 < size);
        out[length++] = decoded;
        at++;
    }
    out[length] = '\0';
    *cursor = at + 1;
}

static error_body_t parse_error_body(const char *json) {
    error_body_t body = {.port = -1, .code = -1};
    const char *cursor = json;
    assert_int_equal(*cursor++, '{');
    for (;;) {
        assert_int_equal(*cursor++, '"');
        assert_true(body.key_count < 4);
        char *key = body.keys[body.key_count++];
        parse_json_string(&cursor, key, sizeof(body.keys[0]));
        assert_int_equal(*cursor++, ':');
        while (*cursor == ' ')
            cursor++;
        if (strcmp(key, "sandboxId") == 0 || strcmp(key, "message") == 0) {
            assert_int_equal(*cursor++, '"');
            char *value = strcmp(key, "sandboxId") == 0 ? body.sandbox_id : body.message;
            parse_json_string(&cursor, value, sizeof(body.message));
        } else {
            char *number_end;
            long number = strtol(cursor, &number_end, 10);
            assert_true(number_end > cursor);
            cursor = number_end;
            if (strcmp(key, "port") == 0)
                body.port = number;
            else if (strcmp(key, "code") == 0)
                body.code = number;
            else
                fail_msg("unexpected key %s", key);
        }
        if (*cursor == '}')
            break;
        assert_int_equal(*cursor++, ',');
        while (*cursor == ' ')
            cursor++;
    }
    assert_int_equal(cursor[1], '\0');
    return body;
}

static void test_json_response_exact(void **state) {
    (void)state;
    response_t response = render(502, "The sandbox was not found", "i62mff4ahtrdfdkyn2esc", 0,
                                 false, false);
    assert_string_equal(response.status_line, "HTTP/1.1 502 Bad Gateway");
    assert_string_equal(response.headers,
                        "Content-Type: application/json\r\n"
                        "Content-Length: 91\r\n"
                        "Cache-Control: no-store\r\n"
                        "Connection: keep-alive\r\n");
    assert_string_equal(response.body, "{\"sandboxId\": \"i62mff4ahtrdfdkyn2esc\", "
                                       "\"message\": \"The sandbox was not found\", \"code\": 502}");
    assert_int_equal(response.body_length, 91);
    free(response.text);
}

static void test_json_response_with_port(void **state) {
    (void)state;
    response_t response = render(502, "The sandbox is running but port is not open", "abc",
                                 3000, false, true);
    assert_string_equal(response.body, "{\"sandboxId\": \"abc\", \"message\": \"The sandbox is "
                                       "running but port is not open\", \"port\": 3000, "
                                       "\"code\": 502}");
    error_body_t body = parse_error_body(response.body);
    assert_int_equal(body.key_count, 4);
    assert_string_equal(body.keys[0], "sandboxId");
    assert_string_equal(body.keys[1], "message");
    assert_string_equal(body.keys[2], "port");
    assert_string_equal(body.keys[3], "code");
    assert_int_equal(body.port, 3000);
    free(response.text);
}

static void test_json_escaping_parses_back_exactly(void **state) {
    (void)state;
    const char message[] = "say \"no\" \\ to\nnew\rlines\t\x01\x1f\x7f and caf\xc3\xa9";
    const char sandbox_id[] = "id\"with\\odd\x02";
    response_t response = render(400, message, sandbox_id, 8080, false, true);
    error_body_t body = parse_error_body(response.body);
    assert_string_equal(body.message, message);
    assert_string_equal(body.sandbox_id, sandbox_id);
    assert_int_equal(body.port, 8080);
    assert_int_equal(body.code, 400);
    assert_non_null(strstr(response.body, "\\\"no\\\" \\\\ to\\u000anew\\u000dlines\\u0009"
                                          "\\u0001\\u001f\\u007f and caf\xc3\xa9"));
    free(response.text);
}

static void test_json_null_sandbox_and_no_port(void **state) {
    (void)state;
    response_t response = render(421, "Misdirected request", NULL, 0, false, true);
    assert_string_equal(response.body,
                        "{\"sandboxId\": \"\", \"message\": \"Misdirected request\", \"code\": 421}");
    assert_string_equal(response.status_line, "HTTP/1.1 421 Misdirected Request");
    free(response.text);
}

static void test_null_message_is_the_reason_phrase(void **state) {
    (void)state;
    response_t response = render(431, NULL, NULL, 0, false, true);
    error_body_t body = parse_error_body(response.body);
    assert_string_equal(body.message, "Request Header Fields Too Large");
    free(response.text);
}

static void test_content_length_matches_body(void **state) {
    (void)state;
    const int statuses[] = {400, 403, 408, 421, 429, 431, 502, 503, 504};
    char value[64];
    for (size_t index = 0; index < sizeof(statuses) / sizeof(statuses[0]); index++) {
        for (int html = 0; html <= 1; html++) {
            response_t response = render(statuses[index], "a <message> & \"more\"", "sbx", 3000,
                                         html, false);
            char expected[32];
            snprintf(expected, sizeof(expected), "%zu", response.body_length);
            assert_string_equal(header_value(&response, "Content-Length", value, sizeof(value)),
                                expected);
            assert_int_equal(strlen(response.body), response.body_length);
            free(response.text);
        }
    }
}

static void test_connection_header_follows_close(void **state) {
    (void)state;
    char value[64];
    response_t closing = render(400, "Bad request", NULL, 0, false, true);
    assert_string_equal(header_value(&closing, "Connection", value, sizeof(value)), "close");
    assert_string_equal(header_value(&closing, "Cache-Control", value, sizeof(value)), "no-store");
    free(closing.text);
    response_t kept = render(502, "The sandbox was not found", "x", 0, true, false);
    assert_string_equal(header_value(&kept, "Connection", value, sizeof(value)), "keep-alive");
    assert_string_equal(header_value(&kept, "Cache-Control", value, sizeof(value)), "no-store");
    free(kept.text);
}

static void test_html_page(void **state) {
    (void)state;
    char value[64];
    response_t response = render(502, "The sandbox is running but port is not open",
                                 "i62mff4ahtrdfdkyn2esc", 3000, true, false);
    assert_string_equal(response.status_line, "HTTP/1.1 502 Bad Gateway");
    assert_string_equal(header_value(&response, "Content-Type", value, sizeof(value)),
                        "text/html; charset=utf-8");
    assert_true(strncmp(response.body, "<!DOCTYPE html>", 15) == 0);
    assert_non_null(strstr(response.body, "<title>502 Bad Gateway</title>"));
    assert_non_null(strstr(response.body, "<h1>502 Bad Gateway</h1>"));
    assert_non_null(strstr(response.body, "The sandbox is running but port is not open"));
    assert_non_null(strstr(response.body, "i62mff4ahtrdfdkyn2esc"));
    assert_non_null(strstr(response.body, "3000"));
    /* Self-contained: nothing the browser would fetch. */
    assert_null(strstr(response.body, "http://"));
    assert_null(strstr(response.body, "https://"));
    assert_null(strstr(response.body, "src="));
    assert_null(strstr(response.body, "href="));
    assert_non_null(strstr(response.body, "</html>\n"));
    free(response.text);
}

static void test_html_escapes_everything(void **state) {
    (void)state;
    response_t response = render(403, "<script>alert('x')</script> & \"q\"", "<b>id</b>", 0, true,
                                 true);
    assert_null(strstr(response.body, "<script>"));
    assert_null(strstr(response.body, "<b>"));
    assert_non_null(strstr(response.body, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; "
                                          "&amp; &quot;q&quot;"));
    assert_non_null(strstr(response.body, "&lt;b&gt;id&lt;/b&gt;"));
    assert_null(strstr(response.body, "port <code>"));
    free(response.text);
}

static void test_html_without_sandbox_or_port(void **state) {
    (void)state;
    response_t response = render(421, "Misdirected request", NULL, 0, true, true);
    assert_non_null(strstr(response.body, "<title>421 Misdirected Request</title>"));
    assert_null(strstr(response.body, "Sandbox"));
    free(response.text);
}

static void test_status_reasons(void **state) {
    (void)state;
    assert_string_equal(gw_status_reason(200), "OK");
    assert_string_equal(gw_status_reason(400), "Bad Request");
    assert_string_equal(gw_status_reason(403), "Forbidden");
    assert_string_equal(gw_status_reason(404), "Not Found");
    assert_string_equal(gw_status_reason(408), "Request Timeout");
    assert_string_equal(gw_status_reason(421), "Misdirected Request");
    assert_string_equal(gw_status_reason(429), "Too Many Requests");
    assert_string_equal(gw_status_reason(431), "Request Header Fields Too Large");
    assert_string_equal(gw_status_reason(500), "Internal Server Error");
    assert_string_equal(gw_status_reason(502), "Bad Gateway");
    assert_string_equal(gw_status_reason(503), "Service Unavailable");
    assert_string_equal(gw_status_reason(504), "Gateway Timeout");
    assert_string_equal(gw_status_reason(299), "Unknown");
    assert_string_equal(gw_status_reason(-1), "Unknown");
}

static void test_chrome_navigation_wants_html(void **state) {
    (void)state;
    gw_error_client_t client = {.user_agent = chrome_user_agent,
                                .accept = chrome_navigation_accept,
                                .sec_fetch_mode = "navigate"};
    assert_true(gw_error_wants_html(&client));
    client.sec_fetch_mode = NULL;
    assert_true(gw_error_wants_html(&client));
    client.sec_fetch_mode = "Navigate";
    assert_true(gw_error_wants_html(&client));
}

static void test_other_browsers_want_html(void **state) {
    (void)state;
    const char *const user_agents[] = {
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    };
    for (size_t index = 0; index < sizeof(user_agents) / sizeof(user_agents[0]); index++) {
        gw_error_client_t client = {.user_agent = user_agents[index],
                                    .accept = "text/html,application/xhtml+xml,*/*;q=0.8"};
        assert_true(gw_error_wants_html(&client));
    }
}

static void test_browser_without_accept_or_with_any_wants_html(void **state) {
    (void)state;
    gw_error_client_t client = {.user_agent = chrome_user_agent};
    assert_true(gw_error_wants_html(&client));
    client.accept = "*/*";
    assert_true(gw_error_wants_html(&client));
}

static void test_programs_get_json(void **state) {
    (void)state;
    const char *const user_agents[] = {"curl/8.5.0", "Wget/1.21.4", "python-requests/2.31.0",
                                       "Go-http-client/1.1", ""};
    for (size_t index = 0; index < sizeof(user_agents) / sizeof(user_agents[0]); index++) {
        gw_error_client_t client = {.user_agent = user_agents[index], .accept = "*/*"};
        assert_false(gw_error_wants_html(&client));
    }
    gw_error_client_t no_user_agent = {.accept = chrome_navigation_accept};
    assert_false(gw_error_wants_html(&no_user_agent));
    assert_false(gw_error_wants_html(NULL));
}

static void test_browser_preferring_json_gets_json(void **state) {
    (void)state;
    gw_error_client_t client = {.user_agent = chrome_user_agent, .accept = "application/json"};
    assert_false(gw_error_wants_html(&client));
    client.accept = "application/json, text/plain, */*";
    assert_false(gw_error_wants_html(&client));
    client.accept = "Application/JSON;charset=utf-8, text/html";
    assert_false(gw_error_wants_html(&client));
    client.accept = "text/html;q=0.5, application/json";
    assert_false(gw_error_wants_html(&client));
    /* Listed, but after HTML or ranked below it: the browser wants the page. */
    client.accept = "text/html, application/json";
    assert_true(gw_error_wants_html(&client));
    client.accept = "application/json;q=0.9, text/html";
    assert_true(gw_error_wants_html(&client));
    client.accept = "application/json;q=0, */*";
    assert_true(gw_error_wants_html(&client));
    client.accept = "application/jsonx, text/plain";
    assert_true(gw_error_wants_html(&client));
}

static void test_x_requested_with_gets_json(void **state) {
    (void)state;
    gw_error_client_t client = {.user_agent = chrome_user_agent,
                                .accept = chrome_navigation_accept,
                                .has_x_requested_with = true};
    assert_false(gw_error_wants_html(&client));
}

static void test_fetch_modes_other_than_navigate_get_json(void **state) {
    (void)state;
    const char *const modes[] = {"cors", "no-cors", "same-origin", "websocket", "CORS", ""};
    for (size_t index = 0; index < sizeof(modes) / sizeof(modes[0]); index++) {
        gw_error_client_t client = {.user_agent = chrome_user_agent,
                                    .accept = "*/*",
                                    .sec_fetch_mode = modes[index]};
        assert_false(gw_error_wants_html(&client));
    }
}

static void test_grpc_content_types(void **state) {
    (void)state;
    static const char *const grpc[] = {"application/grpc", "application/grpc+proto",
                                       "Application/GRPC+json", "application/grpc;charset=x"};
    static const char *const other[] = {"application/grpc-web",
                                        "application/grpc-web+proto",
                                        "application/grpcx",
                                        "application/json",
                                        "",
                                        "application/grp"};
    for (size_t i = 0; i < sizeof(grpc) / sizeof(grpc[0]); i++)
        assert_true(gw_content_type_is_grpc(grpc[i], strlen(grpc[i])));
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_false(gw_content_type_is_grpc(other[i], strlen(other[i])));
}

static void test_grpc_statuses(void **state) {
    (void)state;
    assert_int_equal(gw_grpc_status(400, "Bad request"), 3);
    assert_int_equal(gw_grpc_status(403, "x"), 7);
    assert_int_equal(gw_grpc_status(409, "The sandbox is paused"), 9);
    assert_int_equal(gw_grpc_status(429, "x"), 8);
    assert_int_equal(gw_grpc_status(431, "x"), 8);
    assert_int_equal(gw_grpc_status(502, GW_MESSAGE_SANDBOX_NOT_FOUND), 5);
    assert_int_equal(gw_grpc_status(502, "The sandbox record is invalid"), 14);
    assert_int_equal(gw_grpc_status(503, "x"), 14);
    assert_int_equal(gw_grpc_status(504, "x"), 4);
    assert_int_equal(gw_grpc_status(508, "Loop detected"), 13);
    assert_int_equal(gw_grpc_status(500, "Out of memory"), 13);
    assert_int_equal(gw_grpc_status(421, "Misdirected request"), 0);
}

static void test_grpc_message_encoding(void **state) {
    (void)state;
    char out[16];
    assert_int_equal(gw_grpc_message("limit: 5", out, sizeof(out)), 8);
    assert_string_equal(out, "limit: 5");
    assert_int_equal(gw_grpc_message("50% \xc3\xa9\n", out, sizeof(out)), 15);
    assert_string_equal(out, "50%25 %C3%A9%0A");
    /* Cut short, never in the middle of an escape. */
    assert_int_equal(gw_grpc_message("abcdefghijklm%", out, sizeof(out)), 13);
    assert_string_equal(out, "abcdefghijklm");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_response_exact),
        cmocka_unit_test(test_json_response_with_port),
        cmocka_unit_test(test_json_escaping_parses_back_exactly),
        cmocka_unit_test(test_json_null_sandbox_and_no_port),
        cmocka_unit_test(test_null_message_is_the_reason_phrase),
        cmocka_unit_test(test_content_length_matches_body),
        cmocka_unit_test(test_connection_header_follows_close),
        cmocka_unit_test(test_html_page),
        cmocka_unit_test(test_html_escapes_everything),
        cmocka_unit_test(test_html_without_sandbox_or_port),
        cmocka_unit_test(test_status_reasons),
        cmocka_unit_test(test_chrome_navigation_wants_html),
        cmocka_unit_test(test_other_browsers_want_html),
        cmocka_unit_test(test_browser_without_accept_or_with_any_wants_html),
        cmocka_unit_test(test_programs_get_json),
        cmocka_unit_test(test_browser_preferring_json_gets_json),
        cmocka_unit_test(test_x_requested_with_gets_json),
        cmocka_unit_test(test_fetch_modes_other_than_navigate_get_json),
        cmocka_unit_test(test_grpc_content_types),
        cmocka_unit_test(test_grpc_statuses),
        cmocka_unit_test(test_grpc_message_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
