/* Unit tests of routing/host.c: every rule of DESIGN "Hostnames" and hostile authorities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "routing/host.h"

static char domain_main[] = "e2b.app";
static char domain_europe[] = "eu.e2b.app";
static char domain_local[] = "sandbox.localhost";
static char *const test_domains[] = {domain_main, domain_europe, domain_local};
enum { TEST_DOMAIN_COUNT = sizeof(test_domains) / sizeof(test_domains[0]) };

static route_host_status_t parse_bytes(const char *authority, size_t length,
                                       route_target_t *target) {
    return route_parse_host(authority, length, test_domains, TEST_DOMAIN_COUNT, target);
}

static route_host_status_t parse(const char *authority, route_target_t *target) {
    return parse_bytes(authority, strlen(authority), target);
}

static void assert_routes(const char *authority, uint16_t port, const char *sandbox_id) {
    route_target_t target;
    route_host_status_t status = parse(authority, &target);
    if (status != ROUTE_HOST_OK)
        fail_msg("\"%s\": status %d, expected OK", authority, (int)status);
    assert_int_equal(target.port, port);
    assert_string_equal(target.sandbox_id, sandbox_id);
}

static void assert_status(const char *authority, route_host_status_t expected) {
    route_target_t target;
    route_host_status_t status = parse(authority, &target);
    if (status != expected)
        fail_msg("\"%s\": status %d, expected %d", authority, (int)status, (int)expected);
    if (status != ROUTE_HOST_OK) {
        assert_int_equal(target.port, 0);
        assert_string_equal(target.sandbox_id, "");
    }
}

static void test_plain(void **state) {
    (void)state;
    assert_routes("3000-i62mff4ahtrdfdkyn2esc.e2b.app", 3000, "i62mff4ahtrdfdkyn2esc");
    assert_routes("1-a.e2b.app", 1, "a");
    assert_routes("65535-z9.e2b.app", 65535, "z9");
    assert_routes("8080-abc.sandbox.localhost", 8080, "abc");
}

static void test_ignored_suffix(void **state) {
    (void)state;
    assert_routes("3000-abc-anything.e2b.app", 3000, "abc");
    assert_routes("3000-abc-x-y-z.e2b.app", 3000, "abc");
    assert_routes("3000-abc-.e2b.app", 3000, "abc");
}

static void test_empty_and_no_dash(void **state) {
    (void)state;
    route_target_t target;
    assert_int_equal(parse_bytes("", 0, &target), ROUTE_HOST_INVALID_HOST);
    assert_int_equal(route_parse_host(NULL, 0, test_domains, TEST_DOMAIN_COUNT, &target),
                     ROUTE_HOST_INVALID_HOST);
    assert_status(":8080", ROUTE_HOST_INVALID_HOST);
    assert_status(".", ROUTE_HOST_INVALID_HOST);
    assert_status("3000abc.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("abc.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status(".e2b.app", ROUTE_HOST_INVALID_HOST);
}

static void test_bare_domain(void **state) {
    (void)state;
    assert_status("e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("E2B.app.", ROUTE_HOST_INVALID_HOST);
    assert_status("e2b.app:443", ROUTE_HOST_INVALID_HOST);
    assert_status("eu.e2b.app", ROUTE_HOST_INVALID_HOST);
}

static void test_more_labels(void **state) {
    (void)state;
    assert_status("3000-abc.x.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("www.3000-abc.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc..e2b.app", ROUTE_HOST_INVALID_HOST);
}

static void test_bad_ports(void **state) {
    (void)state;
    assert_status("0-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("00000-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("65536-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("99999-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("3a00-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("100000-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("003000-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("+300-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("-300-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("-.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("--.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("${PORT}-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
    assert_status("0x10-abc.e2b.app", ROUTE_HOST_INVALID_PORT);
}

static void test_leading_zeros(void **state) {
    (void)state;
    assert_routes("03000-abc.e2b.app", 3000, "abc");
    assert_routes("00001-abc.e2b.app", 1, "abc");
}

static void test_bad_ids(void **state) {
    (void)state;
    assert_status("3000-.e2b.app", ROUTE_HOST_INVALID_ID);
    assert_status("3000--abc.e2b.app", ROUTE_HOST_INVALID_ID);
    assert_status("3000-ab_c.e2b.app", ROUTE_HOST_INVALID_ID);
    assert_status("3000-ab~c.e2b.app", ROUTE_HOST_INVALID_ID);
    assert_status("3000-ab%41.e2b.app", ROUTE_HOST_INVALID_ID);
    assert_status("3000-ab@c.e2b.app", ROUTE_HOST_INVALID_ID);
    /* A dot inside the ID makes it two labels. */
    assert_status("3000-ab.c.e2b.app", ROUTE_HOST_INVALID_HOST);
}

static void test_id_length(void **state) {
    (void)state;
    char id63[64];
    memset(id63, 'a', 63);
    id63[63] = '\0';
    char host[128];
    snprintf(host, sizeof(host), "3000-%s.e2b.app", id63);
    assert_routes(host, 3000, id63);
    snprintf(host, sizeof(host), "3000-%sb.e2b.app", id63);
    assert_status(host, ROUTE_HOST_INVALID_ID);
    snprintf(host, sizeof(host), "3000-%s-ignored.e2b.app", id63);
    assert_routes(host, 3000, id63);
}

static void test_uppercase(void **state) {
    (void)state;
    assert_routes("3000-ABCdef.E2B.APP", 3000, "abcdef");
    assert_routes("3000-I62MFF4AHTRDFDKYN2ESC.e2b.App", 3000, "i62mff4ahtrdfdkyn2esc");
}

static void test_trailing_dot(void **state) {
    (void)state;
    assert_routes("3000-abc.e2b.app.", 3000, "abc");
    assert_routes("3000-abc.e2b.app.:8443", 3000, "abc");
    assert_status("3000-abc.e2b.app..", ROUTE_HOST_FOREIGN_DOMAIN);
}

static void test_port_suffix(void **state) {
    (void)state;
    assert_routes("3000-abc.e2b.app:8080", 3000, "abc");
    assert_routes("3000-abc.e2b.app:", 3000, "abc");
    assert_status("3000-abc.e2b.app:80a", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc.e2b.app:-1", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc.e2b.app:80:80", ROUTE_HOST_INVALID_HOST);
}

static void test_foreign_domain(void **state) {
    (void)state;
    assert_status("3000-abc.example.com", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("3000-abc.xe2b.app", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("3000-abc.e2b.app.evil.com", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("3000-abc.e2b.ap", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("app", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("127.0.0.1", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("127.0.0.1:80", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("[::1]", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("[::1]:8080", ROUTE_HOST_FOREIGN_DOMAIN);
    assert_status("[3000-abc.e2b.app]:80", ROUTE_HOST_FOREIGN_DOMAIN);
}

static void test_no_domains(void **state) {
    (void)state;
    route_target_t target;
    assert_int_equal(route_parse_host("3000-abc.e2b.app", 16, NULL, 0, &target),
                     ROUTE_HOST_FOREIGN_DOMAIN);
}

static void test_longest_domain_wins(void **state) {
    (void)state;
    assert_routes("3000-abc.eu.e2b.app", 3000, "abc");
    assert_status("3000-abc.x.eu.e2b.app", ROUTE_HOST_INVALID_HOST);

    /* The order of the configured domains does not matter. */
    static char *const reversed[] = {domain_europe, domain_main};
    route_target_t target;
    const char *host = "8000-xyz.eu.e2b.app";
    assert_int_equal(route_parse_host(host, strlen(host), reversed, 2, &target), ROUTE_HOST_OK);
    assert_string_equal(target.sandbox_id, "xyz");

    /* With only the shorter domain, "eu" is one label too many. */
    static char *const only_main[] = {domain_main};
    assert_int_equal(route_parse_host(host, strlen(host), only_main, 1, &target),
                     ROUTE_HOST_INVALID_HOST);
}

static void test_absolute_form_authority(void **state) {
    (void)state;
    /* The caller passes the authority of "http://host:port/path" in place: not
     * NUL-terminated, followed by the path. */
    const char *url = "http://3000-Abc.E2B.app:443/path?x=1";
    const char *authority = url + strlen("http://");
    size_t length = strcspn(authority, "/");
    route_target_t target;
    assert_int_equal(parse_bytes(authority, length, &target), ROUTE_HOST_OK);
    assert_int_equal(target.port, 3000);
    assert_string_equal(target.sandbox_id, "abc");

    /* Only length bytes count: a longer buffer is not read past it. */
    const char *buffer = "3000-abc.e2b.appXXXX";
    assert_int_equal(parse_bytes(buffer, 16, &target), ROUTE_HOST_OK);
    assert_string_equal(target.sandbox_id, "abc");
}

static void test_hostile_bytes(void **state) {
    (void)state;
    route_target_t target;
    static const char with_nul[] = "3000-ab\0c.e2b.app";
    assert_int_equal(parse_bytes(with_nul, sizeof(with_nul) - 1, &target),
                     ROUTE_HOST_INVALID_HOST);
    static const char trailing_nul[] = "3000-abc.e2b.app\0";
    assert_int_equal(parse_bytes(trailing_nul, sizeof(trailing_nul) - 1, &target),
                     ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc.e2b.app ", ROUTE_HOST_INVALID_HOST);
    assert_status(" 3000-abc.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("3000 -abc.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc\t.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc.e2b.app\r\nX-Injected: 1", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc\x7f.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-ab\xc3\xa9.e2b.app", ROUTE_HOST_INVALID_HOST);
    assert_status("3000-abc.e2b.app/x", ROUTE_HOST_FOREIGN_DOMAIN);
}

static bool shared(const char *authority) {
    return route_host_is_shared(authority, strlen(authority), test_domains, TEST_DOMAIN_COUNT);
}

static void test_shared_host_names(void **state) {
    (void)state;
    assert_true(shared("sandbox.e2b.app"));
    assert_true(shared("SANDBOX.E2B.APP:443"));
    assert_true(shared("sandbox.eu.e2b.app."));
    assert_true(shared("localhost"));
    assert_true(shared("localhost:8080"));
    assert_true(shared("127.0.0.1:3000"));
    assert_true(shared("10.1.2.3"));
    assert_true(shared("[::1]:8080"));
    assert_true(shared("[2001:db8::5]"));
    assert_false(shared("3000-abc.e2b.app"));
    assert_false(shared("sandbox.example.com"));
    assert_false(shared("sandbox.e2b.app.evil"));
    assert_false(shared("xsandbox.e2b.app"));
    assert_false(shared("localhost.e2b.app"));
    assert_false(shared("[::1"));
    assert_false(shared("[zz::1]"));
    assert_false(shared("1.2.3"));
    assert_false(shared("localhost:80x"));
    assert_false(shared(""));
}

static route_host_status_t parse_shared(const char *id, const char *port, unsigned count,
                                        route_target_t *target) {
    route_shared_fields_t fields = {
        .id = id,
        .id_length = id ? strlen(id) : 0,
        .id_count = id ? count : 0,
        .port = port,
        .port_length = port ? strlen(port) : 0,
        .port_count = port ? 1 : 0,
    };
    return route_parse_shared(&fields, target);
}

static void test_shared_host_fields(void **state) {
    (void)state;
    route_target_t target;
    assert_int_equal(parse_shared("Abc123", "49983", 1, &target), ROUTE_HOST_OK);
    assert_string_equal(target.sandbox_id, "abc123");
    assert_int_equal(target.port, 49983);
    assert_int_equal(parse_shared(NULL, "80", 1, &target), ROUTE_HOST_MISSING_ID);
    assert_int_equal(parse_shared(NULL, NULL, 1, &target), ROUTE_HOST_MISSING_ID);
    assert_int_equal(parse_shared("abc", NULL, 1, &target), ROUTE_HOST_MISSING_PORT);
    assert_int_equal(parse_shared("abc", "80", 2, &target), ROUTE_HOST_INVALID_ID);
    assert_int_equal(parse_shared("ab-c", "80", 1, &target), ROUTE_HOST_INVALID_ID);
    assert_int_equal(parse_shared("", "80", 1, &target), ROUTE_HOST_INVALID_ID);
    assert_int_equal(parse_shared("abc", "0", 1, &target), ROUTE_HOST_INVALID_PORT);
    assert_int_equal(parse_shared("abc", "65536", 1, &target), ROUTE_HOST_INVALID_PORT);
    assert_int_equal(parse_shared("abc", "+80", 1, &target), ROUTE_HOST_INVALID_PORT);
    assert_int_equal(parse_shared("abc", "", 1, &target), ROUTE_HOST_INVALID_PORT);
    assert_string_equal(route_host_status_message(ROUTE_HOST_MISSING_ID),
                        "Missing header E2b-Sandbox-Id");
    assert_string_equal(route_host_status_message(ROUTE_HOST_MISSING_PORT),
                        "Missing header E2b-Sandbox-Port");
}

static void test_status_messages(void **state) {
    (void)state;
    assert_string_equal(route_host_status_message(ROUTE_HOST_INVALID_HOST), "Invalid host");
    assert_string_equal(route_host_status_message(ROUTE_HOST_INVALID_PORT),
                        "Invalid sandbox port");
    assert_string_equal(route_host_status_message(ROUTE_HOST_INVALID_ID), "Invalid sandbox ID");
    assert_null(route_host_status_message(ROUTE_HOST_OK));
    assert_null(route_host_status_message(ROUTE_HOST_FOREIGN_DOMAIN));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_ignored_suffix),
        cmocka_unit_test(test_empty_and_no_dash),
        cmocka_unit_test(test_bare_domain),
        cmocka_unit_test(test_more_labels),
        cmocka_unit_test(test_bad_ports),
        cmocka_unit_test(test_leading_zeros),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_id_length),
        cmocka_unit_test(test_uppercase),
        cmocka_unit_test(test_trailing_dot),
        cmocka_unit_test(test_port_suffix),
        cmocka_unit_test(test_foreign_domain),
        cmocka_unit_test(test_no_domains),
        cmocka_unit_test(test_longest_domain_wins),
        cmocka_unit_test(test_absolute_form_authority),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_shared_host_names),
        cmocka_unit_test(test_shared_host_fields),
        cmocka_unit_test(test_status_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
