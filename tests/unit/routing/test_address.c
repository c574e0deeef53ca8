/* Unit tests of routing/address.c: where a record may point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "routing/address.h"

/* A socket address of a literal and port. */
static const struct sockaddr *socket_address(const char *text, unsigned short port) {
    static struct sockaddr_storage storage;
    memset(&storage, 0, sizeof(storage));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *ipv6 = (struct sockaddr_in6 *)&storage;
        ipv6->sin6_family = AF_INET6;
        ipv6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, text, &ipv6->sin6_addr), 1);
    } else {
        struct sockaddr_in *ipv4 = (struct sockaddr_in *)&storage;
        ipv4->sin_family = AF_INET;
        ipv4->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, text, &ipv4->sin_addr), 1);
    }
    return (const struct sockaddr *)&storage;
}

static route_address_verdict_t check(const route_address_policy_t *policy, const char *text,
                                     unsigned short port) {
    return route_address_check(policy, socket_address(text, port));
}

static void test_always_refused(void **state) {
    (void)state;
    route_address_policy_t policy;
    route_address_policy_init(&policy, NULL, 0);
    const char *refused[] = {"0.0.0.0",
                             "0.255.255.255",
                             "169.254.169.254",
                             "224.0.0.251",
                             "239.1.2.3",
                             "100.100.100.200",
                             "::",
                             "::ffff:127.0.0.1",
                             "::ffff:10.1.2.3",
                             "64:ff9b::a00:1",
                             "2002:a00:1::1",
                             "fe80::1",
                             "febf:ffff::1",
                             "ff02::fb",
                             "fd00:ec2::254"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (check(&policy, refused[i], 3000) != ROUTE_ADDRESS_REFUSED)
            fail_msg("%s was not refused", refused[i]);
    }
    const char *allowed[] = {"10.0.0.1",        "127.0.0.1", "172.16.0.1",    "192.168.1.1",
                             "100.100.100.201", "::1",       "fd00:ec2::253", "2001:db8::1",
                             "fec0::1",         "1.2.3.4"};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (check(&policy, allowed[i], 3000) != ROUTE_ADDRESS_ALLOWED)
            fail_msg("%s was not allowed", allowed[i]);
    }
    route_address_policy_free(&policy);
}

static void test_upstream_deny(void **state) {
    (void)state;
    cidr_t deny[2];
    assert_int_equal(cidr_parse("10.0.0.0/8", &deny[0]), CIDR_OK);
    assert_int_equal(cidr_parse("2001:db8::/32", &deny[1]), CIDR_OK);
    route_address_policy_t policy;
    route_address_policy_init(&policy, deny, 2);
    assert_int_equal(check(&policy, "10.9.8.7", 80), ROUTE_ADDRESS_REFUSED);
    assert_int_equal(check(&policy, "2001:db8::1", 80), ROUTE_ADDRESS_REFUSED);
    assert_int_equal(check(&policy, "11.0.0.1", 80), ROUTE_ADDRESS_ALLOWED);
    assert_int_equal(check(&policy, "2001:db9::1", 80), ROUTE_ADDRESS_ALLOWED);
    route_address_policy_free(&policy);
}

static void test_own_sockets(void **state) {
    (void)state;
    route_address_policy_t policy;
    route_address_policy_init(&policy, NULL, 0);
    assert_int_equal(route_address_policy_add_own(&policy, socket_address("10.1.1.1", 443)), 0);
    assert_int_equal(route_address_policy_add_own(&policy, socket_address("127.0.0.1", 9090)), 0);
    assert_int_equal(route_address_policy_add_own(&policy, socket_address("::1", 8443)), 0);
    /* The listener's own address, and any loopback address, with a listener's port. */
    assert_int_equal(check(&policy, "10.1.1.1", 443), ROUTE_ADDRESS_LOOP);
    assert_int_equal(check(&policy, "127.0.0.1", 443), ROUTE_ADDRESS_LOOP);
    assert_int_equal(check(&policy, "127.3.2.1", 9090), ROUTE_ADDRESS_LOOP);
    assert_int_equal(check(&policy, "::1", 443), ROUTE_ADDRESS_LOOP);
    assert_int_equal(check(&policy, "127.0.0.1", 8443), ROUTE_ADDRESS_LOOP);
    /* Another port, or another host with that port. */
    assert_int_equal(check(&policy, "10.1.1.1", 444), ROUTE_ADDRESS_ALLOWED);
    assert_int_equal(check(&policy, "127.0.0.1", 3000), ROUTE_ADDRESS_ALLOWED);
    assert_int_equal(check(&policy, "10.1.1.2", 443), ROUTE_ADDRESS_ALLOWED);
    route_address_policy_free(&policy);
    route_address_policy_free(&policy); /* idempotent */
}

static void test_wildcard_listener_covers_local_addresses(void **state) {
    (void)state;
    route_address_policy_t policy;
    route_address_policy_init(&policy, NULL, 0);
    assert_int_equal(route_address_policy_add_own(&policy, socket_address("0.0.0.0", 8080)), 0);
    assert_int_equal(route_address_policy_add_own(&policy, socket_address("::", 8080)), 0);
    /* The machine's interfaces: at least loopback. */
    assert_true(policy.local_count >= 1);
    for (size_t i = 0; i < policy.local_count; i++) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(policy.local[i].family, policy.local[i].bytes, text, sizeof(text));
        if (strncmp(text, "fe80:", 5) == 0 || strchr(text, '%') != NULL)
            continue; /* link-local: refused anyway */
        if (check(&policy, text, 8080) != ROUTE_ADDRESS_LOOP)
            fail_msg("local address %s with the wildcard listener's port is no loop", text);
        assert_int_equal(check(&policy, text, 8081), ROUTE_ADDRESS_ALLOWED);
    }
    route_address_policy_free(&policy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_always_refused),
        cmocka_unit_test(test_upstream_deny),
        cmocka_unit_test(test_own_sockets),
        cmocka_unit_test(test_wildcard_listener_covers_local_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
