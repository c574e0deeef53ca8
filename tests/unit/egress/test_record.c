/* Unit tests of egress/record.c: a record's HGETALL reply read into a namespace and a policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <hiredis/hiredis.h>

#include "egress/record.h"
#include "tests/unit/support.h"

/* Reads the hash of count strings; returns what egress_record_read returned. */
static int read_hash(size_t count, const char *const *texts, egress_field_t *netns,
                     egress_policy_t *policy, char *error, size_t error_size) {
    test_reply_t fake;
    egress_policy_init(policy);
    error[0] = '\0';
    return egress_record_read(test_reply_array(&fake, count, texts), netns, policy, error, error_size);
}

static void test_valid_record(void **state) {
    (void)state;
    const char *texts[] = {"addr",      "10.0.0.1", "netns",     "ns-abc", "deny_out", "0.0.0.0/0",
                           "allow_out", "1.1.1.1",  "execution", "e1",     NULL,       "ignored"};
    egress_field_t netns;
    egress_policy_t policy;
    char error[256];
    assert_int_equal(read_hash(12, texts, &netns, &policy, error, sizeof(error)), 0);
    assert_non_null(netns.value);
    assert_int_equal(netns.length, 6);
    assert_string_equal(netns.value, "ns-abc");
    assert_true(policy.internet_access);
    assert_int_equal(egress_policy_deny_count(&policy), 1);
    assert_int_equal(egress_policy_allow_count(&policy), 1);
    egress_policy_free(&policy);
}

static void test_namespace_checked_first(void **state) {
    (void)state;
    egress_field_t netns;
    egress_policy_t policy;
    char error[256];

    const char *no_netns[] = {"deny_out", "all"};
    assert_int_equal(read_hash(2, no_netns, &netns, &policy, error, sizeof(error)), -1);
    assert_string_equal(error, "no netns field");
    assert_null(netns.value);
    egress_policy_free(&policy);

    const char *bad_netns[] = {"netns", "../etc", "deny_out", "not-an-address"};
    assert_int_equal(read_hash(4, bad_netns, &netns, &policy, error, sizeof(error)), -1);
    assert_string_equal(error,
                        "netns is not a namespace name (1 to 255 printable bytes, no \"/\")");
    assert_null(netns.value);
    egress_policy_free(&policy);

    /* A good namespace with a bad policy: the namespace is still named, for deny-all. */
    const char *bad_policy[] = {"netns", "ns-abc", "deny_out", "not-an-address"};
    assert_int_equal(read_hash(4, bad_policy, &netns, &policy, error, sizeof(error)), -1);
    assert_non_null(strstr(error, "deny_out"));
    assert_non_null(netns.value);
    assert_string_equal(netns.value, "ns-abc");
    egress_policy_free(&policy);
}

static void test_not_a_hash(void **state) {
    (void)state;
    egress_field_t netns;
    egress_policy_t policy;
    char error[256];
    const char *odd[] = {"netns", "ns-abc", "deny_out"};
    assert_int_equal(read_hash(3, odd, &netns, &policy, error, sizeof(error)), -1);
    assert_string_equal(error, "the key is not a hash");
    assert_null(netns.value);
    egress_policy_free(&policy);

    redisReply wrong_type = {.type = REDIS_REPLY_ERROR, .str = "WRONGTYPE", .len = 9};
    egress_policy_init(&policy);
    assert_int_equal(egress_record_read(&wrong_type, &netns, &policy, error, sizeof(error)), -1);
    assert_string_equal(error, "the key is not a hash");
    egress_policy_free(&policy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_record),
        cmocka_unit_test(test_namespace_checked_first),
        cmocka_unit_test(test_not_a_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
