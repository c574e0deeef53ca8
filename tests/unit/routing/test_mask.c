/* Unit tests of routing/mask.c: ${PORT} expansion and template validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "routing/mask.h"

static void assert_expands(const char *template_text, uint16_t port, const char *expected) {
    char out[512];
    int length = route_mask_expand(template_text, port, out, sizeof(out));
    assert_int_equal(length, (int)strlen(expected));
    assert_string_equal(out, expected);
}

static void assert_refused(const char *template_text) {
    char out[512];
    assert_false(route_mask_valid(template_text));
    assert_int_equal(route_mask_expand(template_text, 3000, out, sizeof(out)), -1);
    assert_string_equal(out, "");
}

static void test_no_placeholder(void **state) {
    (void)state;
    assert_expands("localhost", 3000, "localhost");
    assert_expands("localhost:8080", 3000, "localhost:8080");
}

static void test_one_placeholder(void **state) {
    (void)state;
    assert_expands("localhost:${PORT}", 3000, "localhost:3000");
    assert_expands("${PORT}", 1, "1");
    assert_expands("${PORT}.example.com", 65535, "65535.example.com");
}

static void test_several_placeholders(void **state) {
    (void)state;
    assert_expands("p${PORT}.local:${PORT}", 8080, "p8080.local:8080");
    assert_expands("${PORT}${PORT}${PORT}", 42, "424242");
}

static void test_partial_placeholders_kept(void **state) {
    (void)state;
    assert_expands("localhost:${POR", 3000, "localhost:${POR");
    assert_expands("localhost:$PORT", 3000, "localhost:$PORT");
    assert_expands("localhost:${port}", 3000, "localhost:${port}");
    assert_expands("$${PORT}}", 3000, "$3000}");
    assert_expands("${", 3000, "${");
    assert_expands("$", 3000, "$");
}

static void test_refused(void **state) {
    (void)state;
    assert_refused("");
    assert_refused("local host");
    assert_refused("localhost\r\nX-Injected: 1");
    assert_refused("localhost\n");
    assert_refused("localhost\r");
    assert_refused("\tlocalhost");
    assert_refused("local\x01host");
    assert_refused("local\x1b" "host");
    assert_refused("localhost\x7f");
    assert_false(route_mask_valid(NULL));
    char out[16];
    assert_int_equal(route_mask_expand(NULL, 3000, out, sizeof(out)), -1);
}

static void test_length_limit(void **state) {
    (void)state;
    char text[300];
    memset(text, 'a', sizeof(text));
    text[255] = '\0';
    assert_true(route_mask_valid(text));
    text[255] = 'a';
    text[256] = '\0';
    assert_false(route_mask_valid(text));
}

static void test_output_too_small(void **state) {
    (void)state;
    char out[15];
    /* "localhost:3000" is 14 bytes and its NUL makes 15. */
    assert_int_equal(route_mask_expand("localhost:${PORT}", 3000, out, 15), 14);
    assert_string_equal(out, "localhost:3000");
    assert_int_equal(route_mask_expand("localhost:${PORT}", 3000, out, 14), -1);
    assert_string_equal(out, "");
    assert_int_equal(route_mask_expand("localhost:${PORT}", 30000, out, 15), -1);
    assert_int_equal(route_mask_expand("localhost", 3000, out, 9), -1);
    assert_int_equal(route_mask_expand("localhost", 3000, out, 1), -1);
    assert_int_equal(route_mask_expand("localhost", 3000, out, 0), -1);
    assert_int_equal(route_mask_expand("localhost", 3000, NULL, 0), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_placeholder),
        cmocka_unit_test(test_one_placeholder),
        cmocka_unit_test(test_several_placeholders),
        cmocka_unit_test(test_partial_placeholders_kept),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_output_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
