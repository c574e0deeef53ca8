/* Unit tests of util/cidr.c: blocks parsed, refused, and matched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "util/cidr.h"

/* The bytes of an address literal of either family. */
static const uint8_t *address(const char *text, int *family) {
    static uint8_t bytes[16];
    memset(bytes, 0, sizeof(bytes));
    *family = strchr(text, ':') != NULL ? AF_INET6 : AF_INET;
    assert_int_equal(inet_pton(*family, text, bytes), 1);
    return bytes;
}

static bool contains(const char *block_text, const char *address_text) {
    cidr_t block;
    assert_int_equal(cidr_parse(block_text, &block), CIDR_OK);
    int family;
    const uint8_t *bytes = address(address_text, &family);
    return cidr_contains(&block, family, bytes);
}

static void test_parse(void **state) {
    (void)state;
    cidr_t block;
    assert_int_equal(cidr_parse("10.0.0.0/8", &block), CIDR_OK);
    assert_int_equal(block.family, AF_INET);
    assert_int_equal(block.prefix, 8);
    assert_int_equal(block.address[0], 10);
    assert_int_equal(cidr_parse("192.0.2.7", &block), CIDR_OK);
    assert_int_equal(block.prefix, 32);
    assert_int_equal(cidr_parse("::", &block), CIDR_OK);
    assert_int_equal(block.family, AF_INET6);
    assert_int_equal(block.prefix, 128);
    assert_int_equal(cidr_parse("::/0", &block), CIDR_OK);
    assert_int_equal(block.prefix, 0);
    assert_int_equal(cidr_parse("0.0.0.0/0", &block), CIDR_OK);
    assert_int_equal(cidr_parse("::ffff:10.0.0.0/104", &block), CIDR_OK);
    assert_int_equal(block.prefix, 104);
}

static void test_refused(void **state) {
    (void)state;
    cidr_t block;
    assert_int_equal(cidr_parse("", &block), CIDR_BAD_ADDRESS);
    assert_int_equal(cidr_parse("10.0.0", &block), CIDR_BAD_ADDRESS);
    assert_int_equal(cidr_parse("example.com", &block), CIDR_BAD_ADDRESS);
    assert_int_equal(cidr_parse("10.0.0.0/", &block), CIDR_BAD_PREFIX);
    assert_int_equal(cidr_parse("10.0.0.0/8x", &block), CIDR_BAD_PREFIX);
    assert_int_equal(cidr_parse("10.0.0.0/-8", &block), CIDR_BAD_PREFIX);
    assert_int_equal(cidr_parse("10.0.0.0/0008", &block), CIDR_BAD_PREFIX);
    assert_int_equal(cidr_parse("10.0.0.0/33", &block), CIDR_PREFIX_RANGE);
    assert_int_equal(cidr_parse("::/129", &block), CIDR_PREFIX_RANGE);
    assert_int_equal(cidr_parse("10.0.0.1/8", &block), CIDR_HOST_BITS);
    /* The network is still there, for the message. */
    assert_int_equal(block.address[3], 0);
    assert_int_equal(block.prefix, 8);
    char long_text[200];
    memset(long_text, '1', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    assert_int_equal(cidr_parse(long_text, &block), CIDR_BAD_ADDRESS);
}

static void test_contains(void **state) {
    (void)state;
    assert_true(contains("10.0.0.0/8", "10.255.1.2"));
    assert_false(contains("10.0.0.0/8", "11.0.0.0"));
    assert_true(contains("169.254.0.0/16", "169.254.169.254"));
    assert_true(contains("224.0.0.0/4", "239.255.255.255"));
    assert_false(contains("224.0.0.0/4", "240.0.0.0"));
    assert_true(contains("0.0.0.0/0", "203.0.113.9"));
    assert_true(contains("192.0.2.7", "192.0.2.7"));
    assert_false(contains("192.0.2.7", "192.0.2.6"));
    /* Prefixes not on a byte boundary. */
    assert_true(contains("fe80::/10", "febf::1"));
    assert_false(contains("fe80::/10", "fec0::1"));
    assert_true(contains("100.64.0.0/10", "100.127.255.255"));
    assert_false(contains("100.64.0.0/10", "100.128.0.0"));
    /* Families never mix: an IPv4-mapped address is not in an IPv4 block. */
    assert_false(contains("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_false(contains("::/0", "127.0.0.1"));
    assert_true(contains("::ffff:0:0/96", "::ffff:127.0.0.1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_contains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
