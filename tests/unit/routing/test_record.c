/* Unit tests of routing/record.c: catalog hashes into route records, good and malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "routing/record.h"

enum { TEST_FIELDS_MAX = 16 };

static int setup(void **state) {
    (void)state;
    return auth_init();
}

/* Parses pairs given as "field", "value", ..., NULL (NUL-terminated strings). */
static route_record_t *parse_pairs(const char *first_field, ...) {
    const char *fields[TEST_FIELDS_MAX];
    const char *values[TEST_FIELDS_MAX];
    size_t field_lengths[TEST_FIELDS_MAX];
    size_t value_lengths[TEST_FIELDS_MAX];
    size_t count = 0;
    va_list arguments;
    va_start(arguments, first_field);
    for (const char *field = first_field; field != NULL; field = va_arg(arguments, const char *)) {
        assert_true(count < TEST_FIELDS_MAX);
        const char *value = va_arg(arguments, const char *);
        fields[count] = field;
        field_lengths[count] = strlen(field);
        values[count] = value;
        value_lengths[count] = strlen(value);
        count++;
    }
    va_end(arguments);
    route_record_t *record =
        route_record_parse("abc", count, fields, field_lengths, values, value_lengths);
    assert_non_null(record);
    return record;
}

/* Parses one addr plus one field given with an explicit length (may hold NULs). */
static route_record_t *parse_with_bytes(const char *field, const char *value, size_t length) {
    const char *fields[] = {"addr", field};
    size_t field_lengths[] = {4, strlen(field)};
    const char *values[] = {"10.0.0.1", value};
    size_t value_lengths[] = {8, length};
    route_record_t *record =
        route_record_parse("abc", 2, fields, field_lengths, values, value_lengths);
    assert_non_null(record);
    return record;
}

static void assert_malformed(route_record_t *record, const char *reason_part) {
    assert_non_null(record->error);
    if (strstr(record->error, reason_part) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", record->error, reason_part);
    route_record_unref(record);
}

static void test_minimal_ipv4(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.11.12.13", NULL);
    assert_null(record->error);
    assert_int_equal(record->references, 1);
    assert_string_equal(record->sandbox_id, "abc");
    assert_string_equal(record->execution_id, "");
    assert_string_equal(record->address_text, "10.11.12.13");
    assert_int_equal(record->address_length, sizeof(struct sockaddr_in));
    const struct sockaddr_in *address = (const struct sockaddr_in *)&record->address;
    assert_int_equal(address->sin_family, AF_INET);
    assert_int_equal(address->sin_port, 0);
    assert_int_equal(ntohl(address->sin_addr.s_addr), 0x0a0b0c0d);
    assert_true(record->allow_public_traffic);
    assert_false(record->secret.present);
    assert_null(record->mask_request_host);
    assert_int_equal(record->max_connections, 0);
    route_record_unref(record);
}

static void test_ipv6(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "fd00::1:2", NULL);
    assert_null(record->error);
    assert_int_equal(record->address_length, sizeof(struct sockaddr_in6));
    const struct sockaddr_in6 *address = (const struct sockaddr_in6 *)&record->address;
    assert_int_equal(address->sin6_family, AF_INET6);
    assert_int_equal(address->sin6_port, 0);
    struct in6_addr expected;
    assert_int_equal(inet_pton(AF_INET6, "fd00::1:2", &expected), 1);
    assert_memory_equal(&address->sin6_addr, &expected, sizeof(expected));
    assert_string_equal(record->address_text, "fd00::1:2");
    route_record_unref(record);
}

static void test_full_record(void **state) {
    (void)state;
    route_record_t *record =
        parse_pairs("addr", "10.0.0.2", "execution_id", "exec-42", "allow_public_traffic",
                    "false", "traffic_access_token", "tok", "mask_request_host",
                    "localhost:${PORT}", "max_connections", "25", "netns", "ns-abc", "deny_out",
                    "0.0.0.0/0", "allow_out", "1.1.1.1", "allow_internet_access", "false", NULL);
    assert_null(record->error);
    assert_string_equal(record->execution_id, "exec-42");
    assert_false(record->allow_public_traffic);
    assert_true(record->secret.present);
    assert_int_equal(auth_token_check(&record->secret, "tok", 3), AUTH_OK);
    assert_int_equal(auth_token_check(&record->secret, "tok2", 4), AUTH_INVALID);
    assert_string_equal(record->mask_request_host, "localhost:${PORT}");
    assert_int_equal(record->max_connections, 25);
    route_record_unref(record);
}

static void test_public_ports(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.0.0.1", "public_ports", "49983, 8080,1", NULL);
    assert_null(record->error);
    assert_int_equal(record->public_port_count, 3);
    assert_true(route_record_port_public(record, 49983));
    assert_true(route_record_port_public(record, 8080));
    assert_true(route_record_port_public(record, 1));
    assert_false(route_record_port_public(record, 3000));
    route_record_unref(record);

    record = parse_pairs("addr", "10.0.0.1", NULL);
    assert_false(route_record_port_public(record, 49983));
    route_record_unref(record);

    assert_malformed(parse_pairs("addr", "10.0.0.1", "public_ports", "0", NULL), "public_ports");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "public_ports", "65536", NULL),
                     "public_ports");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "public_ports", "80,", NULL), "public_ports");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "public_ports", "80;81", NULL),
                     "public_ports");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "public_ports", "*", NULL), "public_ports");
}

static void test_h2c_ports(void **state) {
    (void)state;
    route_record_t *record =
        parse_pairs("addr", "10.0.0.1", "h2c_ports", "50051, 8080", "public_ports", "1", NULL);
    assert_null(record->error);
    assert_true(route_record_port_h2c(record, 50051));
    assert_true(route_record_port_h2c(record, 8080));
    assert_false(route_record_port_h2c(record, 1));
    assert_true(route_record_port_public(record, 1));
    route_record_unref(record);

    record = parse_pairs("addr", "10.0.0.1", "h2c_ports", "*", NULL);
    assert_null(record->error);
    assert_true(route_record_port_h2c(record, 1) && route_record_port_h2c(record, 65535));
    route_record_unref(record);

    record = parse_pairs("addr", "10.0.0.1", NULL);
    assert_false(route_record_port_h2c(record, 50051));
    route_record_unref(record);

    assert_malformed(parse_pairs("addr", "10.0.0.1", "h2c_ports", "50051,x", NULL), "h2c_ports");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "h2c_ports", "*,80", NULL), "h2c_ports");
    /* A bad public_ports is reported as itself, h2c_ports or not. */
    assert_malformed(parse_pairs("addr", "10.0.0.1", "public_ports", "x", "h2c_ports", "80", NULL),
                     "public_ports");
}

static void test_state_and_auto_resume(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.0.0.1", NULL);
    assert_false(record->paused);
    assert_true(record->auto_resume);
    route_record_unref(record);
    record = parse_pairs("addr", "10.0.0.1", "state", "paused", "auto_resume", "false", NULL);
    assert_null(record->error);
    assert_true(record->paused);
    assert_false(record->auto_resume);
    route_record_unref(record);
    record = parse_pairs("addr", "10.0.0.1", "state", "running", "auto_resume", "true", NULL);
    assert_null(record->error);
    assert_false(record->paused);
    assert_true(record->auto_resume);
    route_record_unref(record);
    assert_malformed(parse_pairs("addr", "10.0.0.1", "state", "Paused", NULL), "state");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "state", "", NULL), "state");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "auto_resume", "yes", NULL), "auto_resume");
}

static void test_allow_public_traffic_values(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "true", NULL);
    assert_null(record->error);
    assert_true(record->allow_public_traffic);
    route_record_unref(record);

    assert_malformed(parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "TRUE", NULL),
                     "allow_public_traffic");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "1", NULL),
                     "allow_public_traffic");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "", NULL),
                     "allow_public_traffic");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "false ", NULL),
                     "allow_public_traffic");
    assert_malformed(parse_with_bytes("allow_public_traffic", "true\0", 5),
                     "allow_public_traffic");
}

static void test_bad_addresses(void **state) {
    (void)state;
    assert_malformed(parse_pairs("execution_id", "x", NULL), "addr is missing");
    assert_malformed(parse_pairs("addr", "x", NULL), "addr \"x\" is not an IP address");
    assert_malformed(parse_pairs("addr", "", NULL), "addr");
    assert_malformed(parse_pairs("addr", "localhost", NULL), "addr");
    assert_malformed(parse_pairs("addr", "10.0.0.1:8080", NULL), "addr");
    assert_malformed(parse_pairs("addr", "10.0.0", NULL), "addr");
    assert_malformed(parse_pairs("addr", "10.0.0.256", NULL), "addr");
    assert_malformed(parse_pairs("addr", " 10.0.0.1", NULL), "addr");
    assert_malformed(parse_pairs("addr", "[fd00::1]", NULL), "addr");
    assert_malformed(parse_pairs("addr", "fe80::1%eth0", NULL), "addr");
    char long_address[200];
    memset(long_address, '1', sizeof(long_address) - 1);
    long_address[sizeof(long_address) - 1] = '\0';
    assert_malformed(parse_pairs("addr", long_address, NULL), "...");
    /* A NUL hidden inside: "10.0.0.1\0evil" must not pass as 10.0.0.1. */
    const char *fields[] = {"addr"};
    size_t field_lengths[] = {4};
    const char *values[] = {"10.0.0.1\0evil"};
    size_t value_lengths[] = {13};
    route_record_t *record =
        route_record_parse("abc", 1, fields, field_lengths, values, value_lengths);
    assert_non_null(record);
    assert_malformed(record, "addr \"10.0.0.1\\x00evil\"");
}

static void test_error_escapes_control_bytes(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "x\r\nlevel=error \"forged\"", NULL);
    assert_non_null(record->error);
    assert_null(strchr(record->error, '\r'));
    assert_null(strchr(record->error, '\n'));
    assert_non_null(strstr(record->error, "x\\x0d\\x0alevel=error \\x22forged\\x22"));
    route_record_unref(record);
}

static void test_values_not_terminated(void **state) {
    (void)state;
    const char buffer[] = "10.0.0.7XYZexec-1XYZ";
    const char *fields[] = {"addrXX", "execution_idXX"};
    size_t field_lengths[] = {4, 12};
    const char *values[] = {buffer, buffer + 11};
    size_t value_lengths[] = {8, 6};
    route_record_t *record =
        route_record_parse("abc", 2, fields, field_lengths, values, value_lengths);
    assert_non_null(record);
    assert_null(record->error);
    assert_string_equal(record->address_text, "10.0.0.7");
    assert_string_equal(record->execution_id, "exec-1");
    route_record_unref(record);
}

static void test_field_names_exact(void **state) {
    (void)state;
    /* "Addr" and "addr " are other fields, so addr is missing. */
    assert_malformed(parse_pairs("Addr", "10.0.0.1", "addr ", "10.0.0.1", NULL),
                     "addr is missing");
}

static void test_pool_key_prefix_holds_every_field_whole(void **state) {
    (void)state;
    static char long_execution[1001];
    memset(long_execution, 'e', sizeof(long_execution) - 1);
    route_record_t *record =
        parse_pairs("addr", "10.0.0.1", "execution_id", long_execution, NULL);
    assert_null(record->error);
    static char expected[1100];
    snprintf(expected, sizeof(expected), "abc\n%s\n10.0.0.1\n", long_execution);
    assert_string_equal(record->pool_key_prefix, expected);
    assert_int_equal(record->pool_key_prefix_length, strlen(expected));
    route_record_unref(record);
    /* A newline in execution_id cannot make two lifetimes' keys meet: the address and the
     * port follow the last two newlines, the ID precedes the first. */
    route_record_t *tricky = parse_pairs("addr", "10.0.0.2", "execution_id", "1\n10.0.0.1", NULL);
    route_record_t *plain = parse_pairs("addr", "10.0.0.1", "execution_id", "1", NULL);
    assert_string_not_equal(tricky->pool_key_prefix, plain->pool_key_prefix);
    route_record_unref(tricky);
    route_record_unref(plain);
}

static void test_over_64_kib_is_malformed(void **state) {
    (void)state;
    static char big[64 * 1024];
    memset(big, 'h', sizeof(big));
    /* 64 KiB of mask plus the address: over the limit, whatever the field. */
    route_record_t *record = parse_with_bytes("mask_request_host", big, sizeof(big));
    assert_malformed(record, "over 65536");
    record = parse_with_bytes("execution_id", big, sizeof(big) - 8);
    assert_null(record->error);
    route_record_unref(record);
    record = parse_with_bytes("traffic_access_token", big, sizeof(big) - 7);
    assert_malformed(record, "fields hold 65537 bytes");
}

static void test_parse_fields_in_table_order(void **state) {
    (void)state;
    route_record_value_t values[ROUTE_RECORD_FIELD_COUNT] = {{0}};
    for (size_t i = 0; i < ROUTE_RECORD_FIELD_COUNT; i++) {
        if (strcmp(route_record_fields[i], "addr") == 0)
            values[i] = (route_record_value_t){"10.0.0.3", 8};
        else if (strcmp(route_record_fields[i], "max_connections") == 0)
            values[i] = (route_record_value_t){"12", 2};
    }
    route_record_t *record = route_record_parse_fields("abc", values);
    assert_non_null(record);
    assert_null(record->error);
    assert_string_equal(record->address_text, "10.0.0.3");
    assert_int_equal(record->max_connections, 12);
    route_record_unref(record);
}

static void test_execution_id_with_nul(void **state) {
    (void)state;
    assert_malformed(parse_with_bytes("execution_id", "a\0b", 3), "execution_id");
}

static void test_token_sha256_preferred(void **state) {
    (void)state;
    /* SHA-256 of "secret-token". */
    static const char digest[] =
        "930bbdc51b6aed5c2a5678fd6e28dee7a05e8a4b643cfc0b4427c3efb86c0d94";
    route_record_t *record =
        parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "false", "traffic_access_token",
                    "other-token", "traffic_access_token_sha256", digest, NULL);
    assert_null(record->error);
    assert_true(record->secret.present);
    assert_int_equal(auth_token_check(&record->secret, "secret-token", 12), AUTH_OK);
    assert_int_equal(auth_token_check(&record->secret, "other-token", 11), AUTH_INVALID);
    route_record_unref(record);

    assert_malformed(parse_pairs("addr", "10.0.0.1", "traffic_access_token", "tok",
                                 "traffic_access_token_sha256", "abcd", NULL),
                     "traffic_access_token_sha256");
    /* Bad hex is malformed even for a public sandbox. */
    char bad[sizeof(digest)];
    memcpy(bad, digest, sizeof(digest));
    bad[5] = 'x';
    route_record_t *bad_record =
        parse_pairs("addr", "10.0.0.1", "traffic_access_token_sha256", bad, NULL);
    assert_non_null(bad_record->error);
    assert_null(strstr(bad_record->error, bad)); /* digests are not logged */
    assert_false(bad_record->secret.present);
    route_record_unref(bad_record);
}

static void test_empty_tokens_mean_none(void **state) {
    (void)state;
    route_record_t *record =
        parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "false", "traffic_access_token",
                    "", "traffic_access_token_sha256", "", NULL);
    assert_null(record->error);
    assert_false(record->secret.present);
    assert_int_equal(auth_token_check(&record->secret, "", 0), AUTH_INVALID);
    route_record_unref(record);

    /* An empty digest field falls back to the plain token. */
    record = parse_pairs("addr", "10.0.0.1", "traffic_access_token", "tok",
                         "traffic_access_token_sha256", "", NULL);
    assert_null(record->error);
    assert_int_equal(auth_token_check(&record->secret, "tok", 3), AUTH_OK);
    route_record_unref(record);
}

static void test_private_without_token(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.0.0.1", "allow_public_traffic", "false", NULL);
    assert_null(record->error);
    assert_false(record->allow_public_traffic);
    assert_false(record->secret.present);
    assert_int_equal(auth_token_check(&record->secret, NULL, 0), AUTH_MISSING);
    assert_int_equal(auth_token_check(&record->secret, "x", 1), AUTH_INVALID);
    route_record_unref(record);
}

static void test_masks(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.0.0.1", "mask_request_host", "", NULL);
    assert_null(record->error);
    assert_null(record->mask_request_host);
    route_record_unref(record);

    assert_malformed(parse_pairs("addr", "10.0.0.1", "mask_request_host", "local host", NULL),
                     "mask_request_host \"local host\"");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "mask_request_host", "a\r\nb: c", NULL),
                     "mask_request_host");
    assert_malformed(parse_pairs("addr", "10.0.0.1", "mask_request_host", "a\tb", NULL),
                     "mask_request_host");
    assert_malformed(parse_with_bytes("mask_request_host", "localhost\0\r\nX: y", 15),
                     "mask_request_host");
    char long_mask[300];
    memset(long_mask, 'a', sizeof(long_mask) - 1);
    long_mask[sizeof(long_mask) - 1] = '\0';
    route_record_t *long_record =
        parse_pairs("addr", "10.0.0.1", "mask_request_host", long_mask, NULL);
    assert_non_null(long_record->error);
    assert_null(long_record->mask_request_host);
    route_record_unref(long_record);
}

static void test_max_connections(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.0.0.1", "max_connections", "1", NULL);
    assert_null(record->error);
    assert_int_equal(record->max_connections, 1);
    route_record_unref(record);

    record = parse_pairs("addr", "10.0.0.1", "max_connections", "007", NULL);
    assert_null(record->error);
    assert_int_equal(record->max_connections, 7);
    route_record_unref(record);

    static const char *const bad[] = {"0", "-1", "+5", "", " 5", "5 ", "5x", "1.5",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_malformed(parse_pairs("addr", "10.0.0.1", "max_connections", bad[i], NULL),
                         "max_connections");
}

static void test_first_error_wins(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "bad", "max_connections", "bad", NULL);
    assert_non_null(strstr(record->error, "addr"));
    assert_null(strstr(record->error, "max_connections"));
    assert_string_equal(record->execution_id, "");
    route_record_unref(record);
}

static void test_references(void **state) {
    (void)state;
    route_record_t *record = parse_pairs("addr", "10.0.0.1", NULL);
    assert_ptr_equal(route_record_ref(record), record);
    assert_int_equal(record->references, 2);
    route_record_unref(record);
    assert_int_equal(record->references, 1);
    route_record_unref(record);
    route_record_unref(NULL);
}

static void test_long_sandbox_id(void **state) {
    (void)state;
    char id[80];
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    const char *fields[] = {"addr"};
    size_t field_lengths[] = {4};
    const char *values[] = {"10.0.0.1"};
    size_t value_lengths[] = {8};
    route_record_t *record = route_record_parse(id, 1, fields, field_lengths, values, value_lengths);
    assert_non_null(record);
    assert_malformed(record, "sandbox ID");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_ipv4),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_full_record),
        cmocka_unit_test(test_public_ports),
        cmocka_unit_test(test_h2c_ports),
        cmocka_unit_test(test_state_and_auto_resume),
        cmocka_unit_test(test_allow_public_traffic_values),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_error_escapes_control_bytes),
        cmocka_unit_test(test_values_not_terminated),
        cmocka_unit_test(test_field_names_exact),
        cmocka_unit_test(test_execution_id_with_nul),
        cmocka_unit_test(test_pool_key_prefix_holds_every_field_whole),
        cmocka_unit_test(test_over_64_kib_is_malformed),
        cmocka_unit_test(test_parse_fields_in_table_order),
        cmocka_unit_test(test_token_sha256_preferred),
        cmocka_unit_test(test_empty_tokens_mean_none),
        cmocka_unit_test(test_private_without_token),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_long_sandbox_id),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
