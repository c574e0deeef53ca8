/* Unit tests for util/json.c: JSON string escaping and where it cuts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "util/json.h"

/* Escapes text into a buffer big enough for all of it; returns the NUL-terminated result. */
static const char *escape_all(const char *text, size_t length) {
    static char out[1024];
    size_t consumed;
    size_t written = json_escape_into(out, sizeof(out) - 1, text, length, &consumed);
    assert_int_equal(consumed, length);
    out[written] = '\0';
    return out;
}

static void test_plain_text_is_copied(void **state) {
    (void)state;
    assert_string_equal(escape_all("/index.html?a=1&b=2", 19), "/index.html?a=1&b=2");
    assert_string_equal(escape_all("", 0), "");
}

static void test_quote_and_backslash_get_a_backslash(void **state) {
    (void)state;
    assert_string_equal(escape_all("say \"hi\" \\o/", 12), "say \\\"hi\\\" \\\\o/");
}

static void test_control_bytes_become_unicode_escapes(void **state) {
    (void)state;
    const char text[] = "a\nb\r\tc\x01\x1f\x7f";
    assert_string_equal(escape_all(text, sizeof(text) - 1),
                        "a\\u000ab\\u000d\\u0009c\\u0001\\u001f\\u007f");
    const char with_nul[] = {'x', '\0', 'y'};
    assert_string_equal(escape_all(with_nul, sizeof(with_nul)), "x\\u0000y");
}

static void test_utf8_is_copied(void **state) {
    (void)state;
    assert_string_equal(escape_all("caf\xc3\xa9 \xe2\x82\xac", 9), "caf\xc3\xa9 \xe2\x82\xac");
}

static void test_cut_never_splits_an_escape(void **state) {
    (void)state;
    char out[16];
    size_t consumed;
    /* Room for "ab" and 3 bytes: the 6-byte \u0001 does not fit and is left out whole. */
    size_t written = json_escape_into(out, 5, "ab\x01z", 4, &consumed);
    assert_int_equal(written, 2);
    assert_int_equal(consumed, 2);
    assert_memory_equal(out, "ab", 2);
    /* Room for 3 bytes of \"\" stops after one whole \". */
    written = json_escape_into(out, 3, "\"\"", 2, &consumed);
    assert_int_equal(written, 2);
    assert_int_equal(consumed, 1);
    assert_memory_equal(out, "\\\"", 2);
}

static void test_cut_never_splits_utf8(void **state) {
    (void)state;
    char out[16];
    size_t consumed;
    /* "a€" is 4 bytes; with room for 3 the euro sign is left out whole. */
    size_t written = json_escape_into(out, 3, "a\xe2\x82\xac", 4, &consumed);
    assert_int_equal(written, 1);
    assert_int_equal(consumed, 1);
    /* A complete sequence before the cut is kept. */
    written = json_escape_into(out, 3, "\xc3\xa9\xc3\xa9", 4, &consumed);
    assert_int_equal(written, 2);
    assert_int_equal(consumed, 2);
    /* Stray continuation bytes (invalid UTF-8) are cut where the room ends. */
    written = json_escape_into(out, 2, "\x80\x80\x80\x80\x80", 5, &consumed);
    assert_int_equal(written, 2);
    assert_int_equal(consumed, 2);
}

static void test_consumed_lets_a_caller_continue_in_pieces(void **state) {
    (void)state;
    const char text[] = "\"quoted\"\n\x02 caf\xc3\xa9 \\ end";
    const char *expected = escape_all(text, sizeof(text) - 1);
    char whole[256] = {0};
    size_t whole_length = 0;
    const char *cursor = text;
    size_t remaining = sizeof(text) - 1;
    while (remaining > 0) {
        char piece[JSON_ESCAPE_MAX_SEQUENCE];
        size_t consumed;
        size_t written = json_escape_into(piece, sizeof(piece), cursor, remaining, &consumed);
        assert_true(consumed > 0);
        memcpy(whole + whole_length, piece, written);
        whole_length += written;
        cursor += consumed;
        remaining -= consumed;
    }
    assert_string_equal(whole, expected);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_is_copied),
        cmocka_unit_test(test_quote_and_backslash_get_a_backslash),
        cmocka_unit_test(test_control_bytes_become_unicode_escapes),
        cmocka_unit_test(test_utf8_is_copied),
        cmocka_unit_test(test_cut_never_splits_an_escape),
        cmocka_unit_test(test_cut_never_splits_utf8),
        cmocka_unit_test(test_consumed_lets_a_caller_continue_in_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
