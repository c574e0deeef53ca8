/* Unit tests of egress/policy.c: the record's fields parsed, blocks normalised and merged. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "egress/policy.h"

/* A field from a C string; NULL stays absent. */
static egress_field_t field(const char *text) {
    egress_field_t result = {text, text != NULL ? strlen(text) : 0};
    return result;
}

/* Formats list as "a, b, c" into out. */
static const char *list_text(const egress_range_list_t *list, egress_family_t family, char *out,
                             size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < list->count; i++) {
        char element[EGRESS_RANGE_TEXT_MAX];
        egress_range_format(&list->ranges[i], family, element);
        used += (size_t)snprintf(out + used, size - used, "%s%s", i > 0 ? ", " : "", element);
        assert_true(used < size);
    }
    return out;
}

/* Parses deny_out = text and checks the merged IPv4 and IPv6 lists. */
static void assert_deny(const char *text, const char *ipv4, const char *ipv6) {
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    if (egress_policy_parse(&policy, field(NULL), field(text), field(NULL), error,
                            sizeof(error)) != 0)
        fail_msg("\"%s\" refused: %s", text, error);
    char got[4096];
    assert_string_equal(list_text(&policy.deny[EGRESS_IPV4], EGRESS_IPV4, got, sizeof(got)), ipv4);
    assert_string_equal(list_text(&policy.deny[EGRESS_IPV6], EGRESS_IPV6, got, sizeof(got)), ipv6);
    assert_int_equal(egress_policy_allow_count(&policy), 0);
    egress_policy_free(&policy);
}

/* Parses the three fields and checks that they are refused with a message holding reason. */
static void assert_refused(const char *internet, const char *deny, const char *allow,
                           const char *reason) {
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256] = "";
    int result =
        egress_policy_parse(&policy, field(internet), field(deny), field(allow), error,
                            sizeof(error));
    egress_policy_free(&policy);
    if (result == 0)
        fail_msg("accepted internet=%s deny=%s allow=%s", internet ? internet : "-",
                 deny ? deny : "-", allow ? allow : "-");
    if (strstr(error, reason) == NULL)
        fail_msg("error \"%s\" does not hold \"%s\"", error, reason);
}

static void test_absent_fields_allow_everything(void **state) {
    (void)state;
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    assert_int_equal(egress_policy_parse(&policy, field(NULL), field(NULL), field(NULL), error,
                                         sizeof(error)),
                     0);
    assert_true(policy.internet_access);
    assert_int_equal(egress_policy_deny_count(&policy), 0);
    assert_int_equal(egress_policy_allow_count(&policy), 0);
    /* An empty or blank list is no entries, not an error. */
    assert_int_equal(egress_policy_parse(&policy, field("true"), field(""), field("  "), error,
                                         sizeof(error)),
                     0);
    assert_int_equal(egress_policy_deny_count(&policy), 0);
    egress_policy_free(&policy);
}

static void test_addresses_and_blocks(void **state) {
    (void)state;
    assert_deny("192.0.2.1", "192.0.2.1", "");
    assert_deny("192.0.2.0/24", "192.0.2.0/24", "");
    assert_deny("192.0.2.7/32", "192.0.2.7", "");
    assert_deny("2001:db8::1", "", "2001:db8::1");
    assert_deny("2001:db8::/32", "", "2001:db8::/32");
    assert_deny("2001:DB8:0:0::/64", "", "2001:db8::/64");
    assert_deny("::ffff:192.0.2.1", "", "::ffff:192.0.2.1");
    assert_deny(" 192.0.2.1 ,\t2001:db8::1 ", "192.0.2.1", "2001:db8::1");
}

static void test_everything(void **state) {
    (void)state;
    assert_deny("0.0.0.0/0", "0.0.0.0/0", "");
    assert_deny("::/0", "", "::/0");
    assert_deny("all", "0.0.0.0/0", "::/0");
    assert_deny("ALL", "0.0.0.0/0", "::/0");
    assert_deny("0.0.0.0/0,192.0.2.0/24,::/0,2001:db8::1", "0.0.0.0/0", "::/0");
    assert_deny("255.255.255.255,0.0.0.0", "0.0.0.0, 255.255.255.255", "");
}

static void test_merge_overlapping_and_adjacent(void **state) {
    (void)state;
    /* Contained, duplicated, out of order. */
    assert_deny("10.0.0.0/8,10.1.0.0/16,10.1.2.3,10.0.0.0/8", "10.0.0.0/8", "");
    /* Adjacent blocks join into one block, or a range when no prefix covers them exactly. */
    assert_deny("192.0.2.0/25,192.0.2.128/25", "192.0.2.0/24", "");
    assert_deny("10.0.0.0/8,11.0.0.0/8,12.0.0.0/7", "10.0.0.0-13.255.255.255", "");
    assert_deny("192.0.2.4,192.0.2.5,192.0.2.6/31", "192.0.2.4/30", "");
    assert_deny("192.0.2.1,192.0.2.3", "192.0.2.1, 192.0.2.3", "");
    /* A merged range that a later block overlaps without containing it. */
    assert_deny("10.0.1.0/24,10.0.2.0/24,10.0.2.0/23", "10.0.1.0-10.0.3.255", "");
}

static void test_merge_ipv6(void **state) {
    (void)state;
    assert_deny("2001:db8::/33,2001:db8:8000::/33", "", "2001:db8::/32");
    assert_deny("2001:db8:1::/48,2001:db8::/32,2001:db8:ffff::1", "", "2001:db8::/32");
    assert_deny("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
                "", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
    assert_deny("::,::1", "", "::/127");
}

static void test_merge_direct(void **state) {
    (void)state;
    /* Many ranges appended in reverse, every other one touching the next: half survive. */
    egress_range_list_t list = {0};
    for (int i = 999; i >= 0; i--) {
        egress_range_t range = {{0}, {0}};
        range.first[0] = 10;
        range.first[1] = (uint8_t)(i / 256);
        range.first[2] = (uint8_t)(i % 256);
        memcpy(range.last, range.first, 4);
        range.last[3] = 255;
        /* Blocks 2k and 2k+1 are adjacent /24s; 2k+1 and 2k+2 are too, so all chain up... */
        if (i % 3 == 2)
            continue; /* ...unless a gap breaks the chain every third block. */
        assert_int_equal(egress_range_list_append(&list, &range), 0);
    }
    egress_range_list_merge(&list, EGRESS_IPV4);
    assert_int_equal(list.count, 334);
    char text[EGRESS_RANGE_TEXT_MAX];
    egress_range_format(&list.ranges[0], EGRESS_IPV4, text);
    assert_string_equal(text, "10.0.0.0/23");
    egress_range_format(&list.ranges[1], EGRESS_IPV4, text);
    assert_string_equal(text, "10.0.3.0-10.0.4.255");
    for (size_t i = 1; i < list.count; i++)
        assert_true(memcmp(list.ranges[i - 1].last, list.ranges[i].first, 4) < 0);
    free(list.ranges);
}

static void test_internet_access_and_allow(void **state) {
    (void)state;
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    char text[256];
    assert_int_equal(egress_policy_parse(&policy, field("false"), field("192.0.2.1"),
                                         field("192.0.2.1, 198.51.100.0/24, 2001:db8::5"), error,
                                         sizeof(error)),
                     0);
    assert_false(policy.internet_access);
    /* false is deny_out = all, merged with what deny_out lists. */
    assert_string_equal(list_text(&policy.deny[EGRESS_IPV4], EGRESS_IPV4, text, sizeof(text)),
                        "0.0.0.0/0");
    assert_string_equal(list_text(&policy.deny[EGRESS_IPV6], EGRESS_IPV6, text, sizeof(text)),
                        "::/0");
    /* The allow lists stand on their own: allow wins when the rules are looked up. */
    assert_string_equal(list_text(&policy.allow[EGRESS_IPV4], EGRESS_IPV4, text, sizeof(text)),
                        "192.0.2.1, 198.51.100.0/24");
    assert_string_equal(list_text(&policy.allow[EGRESS_IPV6], EGRESS_IPV6, text, sizeof(text)),
                        "2001:db8::5");
    egress_policy_free(&policy);
    assert_true(policy.internet_access);
    assert_int_equal(egress_policy_deny_all(&policy), 0);
    assert_int_equal(egress_policy_deny_count(&policy), 2);
    assert_false(policy.internet_access);
    egress_policy_free(&policy);
}

static void test_refused(void **state) {
    (void)state;
    assert_refused(NULL, "10.0.0.1/8", NULL, "has host bits set (the block is 10.0.0.0/8)");
    assert_refused(NULL, "2001:db8::1/32", NULL, "has host bits set (the block is 2001:db8::/32)");
    assert_refused(NULL, "192.0.2.0/33", NULL, "the prefix length of an IPv4 block is 0 to 32");
    assert_refused(NULL, "::/129", NULL, "the prefix length of an IPv6 block is 0 to 128");
    assert_refused(NULL, "192.0.2.0/", NULL, "bad prefix length");
    assert_refused(NULL, "192.0.2.0/2x", NULL, "bad prefix length");
    assert_refused(NULL, "192.0.2.0/-1", NULL, "bad prefix length");
    assert_refused(NULL, "192.0.2.0/0024", NULL, "bad prefix length");
    assert_refused(NULL, "192.0.2", NULL, "\"192.0.2\" is not an IPv4 or IPv6 address");
    assert_refused(NULL, "192.0.2.256", NULL, "is not an IPv4 or IPv6 address");
    assert_refused(NULL, "192.0.2.01", NULL, "is not an IPv4 or IPv6 address");
    /* DESIGN.md: deny_out stays addresses and blocks; a domain there makes the record bad. */
    assert_refused(NULL, "example.com", NULL,
                   "deny_out: \"example.com\" is a domain name; deny_out takes addresses");
    assert_refused(NULL, "*.example.com", NULL, "is a domain name");
    assert_refused(NULL, "alll", NULL, "deny_out: \"alll\" is a domain name");
    assert_refused(NULL, NULL, "pypi\x01.org",
                   "allow_out: \"pypi?.org\" is not an IPv4 or IPv6 "
                   "address, a CIDR block, a domain name or \"all\"");
    assert_refused(NULL, "fe80::1%eth0", NULL, "is not an IPv4 or IPv6 address");
    assert_refused(NULL, "198.51.100.0-198.51.100.9", NULL, "is not an IPv4 or IPv6 address");
    assert_refused(NULL, "192.0.2.1,", NULL, "deny_out: entry 2 is empty");
    assert_refused(NULL, ",192.0.2.1", NULL, "deny_out: entry 1 is empty");
    assert_refused(NULL, "192.0.2.1,,192.0.2.2", NULL, "entry 2 is empty");
    assert_refused(NULL, NULL, "192.0.2.1;192.0.2.2", "allow_out: ");
    assert_refused(NULL, NULL, "192.0.2.1 192.0.2.2", "allow_out: \"192.0.2.1 192.0.2.2\"");
    assert_refused("maybe", NULL, NULL, "allow_internet_access: \"maybe\" is not true or false");
    assert_refused("TRUE", NULL, NULL, "is not true or false");
    assert_refused("", NULL, NULL, "is not true or false");
    /* A hostile entry is quoted safely: no quote or control byte reaches the log. */
    assert_refused(NULL, "192.0.2.1\"\n", NULL, "\"192.0.2.1?\" is not");
}

/* Parses allow_out = allow under deny_out = deny and returns the policy (the caller frees it). */
static void parse_domains(const char *deny, const char *allow, egress_policy_t *policy) {
    egress_policy_init(policy);
    char error[256];
    if (egress_policy_parse(policy, field(NULL), field(deny), field(allow), error, sizeof(error)) !=
        0)
        fail_msg("allow_out \"%s\" refused: %s", allow, error);
}

static bool matches(const egress_policy_t *policy, const char *name) {
    return egress_policy_domain_match(policy, name, strlen(name));
}

static void test_domain_entries(void **state) {
    (void)state;
    egress_policy_t policy;
    parse_domains("all",
                  "pypi.org, *.GitHub.com,files.pythonhosted.org.,pypi.org,192.0.2.1,"
                  "xn--bcher-kva.example",
                  &policy);
    /* Lower-cased, the trailing dot gone, repeats dropped, sorted: names first, then
     * wildcards; the address is an address entry as before. */
    assert_int_equal(policy.domains.count, 4);
    assert_string_equal(policy.domains.domains[0].name, "files.pythonhosted.org");
    assert_string_equal(policy.domains.domains[1].name, "pypi.org");
    assert_string_equal(policy.domains.domains[2].name, "xn--bcher-kva.example");
    assert_string_equal(policy.domains.domains[3].name, "github.com");
    assert_true(policy.domains.domains[3].wildcard);
    assert_int_equal(egress_policy_allow_count(&policy), 1);
    /* "pypi.org" is that name only; "*.github.com" every name below, not the name itself. */
    assert_true(matches(&policy, "pypi.org"));
    assert_false(matches(&policy, "www.pypi.org"));
    assert_false(matches(&policy, "pypi.org.evil.example"));
    assert_true(matches(&policy, "api.github.com"));
    assert_true(matches(&policy, "a.b.github.com"));
    assert_false(matches(&policy, "github.com"));
    assert_false(matches(&policy, "evilgithub.com"));
    assert_false(matches(&policy, "github.com.evil.example"));
    egress_policy_free(&policy);
}

static void test_domain_entries_refused(void **state) {
    (void)state;
    assert_refused(NULL, "all", "-pypi.org", "allow_out: \"-pypi.org\" is not a domain name");
    assert_refused(NULL, NULL, "pypi-.org", "is not a domain name");
    assert_refused(NULL, NULL, "pypi..org", "is not a domain name");
    assert_refused(NULL, NULL, "pypi_org.example", "is not a domain name");
    assert_refused(NULL, NULL, "a.*.example", "is not a domain name");
    assert_refused(NULL, NULL, "*", "is not a domain name");
    assert_refused(NULL, NULL, "*.", "is not a domain name");
    assert_refused(NULL, NULL, "**.example", "is not a domain name");
    assert_refused(NULL, NULL, "bücher.example", "is not");
    /* 64-byte label, 254-byte name. */
    char long_label[80];
    snprintf(long_label, sizeof(long_label), "%064d.example", 0);
    long_label[0] = 'a';
    assert_refused(NULL, NULL, long_label, "is not a domain name");
    char long_name[300];
    memset(long_name, 'a', 254);
    for (size_t i = 63; i < 254; i += 64)
        long_name[i] = '.';
    long_name[254] = '\0';
    assert_refused(NULL, NULL, long_name, "...\" is not a domain name");
    /* A 253-byte name is fine. */
    long_name[253] = '\0';
    egress_policy_t policy;
    parse_domains(NULL, long_name, &policy);
    assert_int_equal(policy.domains.count, 1);
    egress_policy_free(&policy);
}

/* DESIGN.md: a resolved address is refused when a deny_out block narrower than its family or a
 * private or special range holds it, unless allow_out covers it. */
static void test_resolved_addresses(void **state) {
    (void)state;
    egress_policy_t policy;
    parse_domains("all,198.51.100.0/24,2001:db8:bad::/48", "pypi.org,10.1.2.3,fd00::/8", &policy);
    struct {
        const char *address;
        bool permitted;
    } cases[] = {
        {"192.0.2.10", true},    /* only the catch-all denies it */
        {"198.51.100.7", false}, /* a narrower deny_out block */
        {"10.9.9.9", false},
        {"10.1.2.3", true}, /* allow_out wins */
        {"127.0.0.1", false},
        {"169.254.169.254", false},
        {"100.64.0.1", false},
        {"172.31.255.255", false},
        {"192.168.1.1", false},
        {"0.1.2.3", false},
        {"224.0.0.1", false},
        {"2001:db8:1::1", true},
        {"2001:db8:bad::1", false},
        {"::1", false},
        {"::", false},
        {"fe80::1", false},
        {"fc00::1", false},
        {"fd00::1", true},
        {"::ffff:192.0.2.1", false},
        {"64:ff9b::c000:201", false},
        {"2002:c000:201::1", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t address[16] = {0};
        bool ipv6 = strchr(cases[i].address, ':') != NULL;
        assert_int_equal(inet_pton(ipv6 ? AF_INET6 : AF_INET, cases[i].address, address), 1);
        bool permitted =
            egress_policy_resolved_permitted(&policy, ipv6 ? EGRESS_IPV6 : EGRESS_IPV4, address);
        if (permitted != cases[i].permitted)
            fail_msg("%s: permitted %d, expected %d", cases[i].address, permitted,
                     cases[i].permitted);
    }
    egress_policy_free(&policy);
}

static void test_nul_bytes_refused(void **state) {
    (void)state;
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    egress_field_t deny = {"192.0.2.1\0" "0", 11};
    assert_int_equal(egress_policy_parse(&policy, field(NULL), deny, field(NULL), error,
                                         sizeof(error)),
                     -1);
    assert_non_null(strstr(error, "\"192.0.2.1?0\" is not"));
    egress_field_t internet = {"true\0", 5};
    assert_int_equal(egress_policy_parse(&policy, internet, field(NULL), field(NULL), error,
                                         sizeof(error)),
                     -1);
    egress_policy_free(&policy);
}

static void test_entry_limit(void **state) {
    (void)state;
    size_t count = EGRESS_POLICY_ENTRIES_MAX + 1;
    char *text = malloc(count * 16);
    assert_non_null(text);
    size_t used = 0;
    for (size_t i = 0; i < count; i++)
        used += (size_t)sprintf(text + used, "%s10.%zu.%zu.1", i > 0 ? "," : "", i / 256 % 256,
                                i % 256);
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    egress_field_t deny = {text, used};
    assert_int_equal(egress_policy_parse(&policy, field(NULL), deny, field(NULL), error,
                                         sizeof(error)),
                     -1);
    assert_non_null(strstr(error, "more than 100000 entries"));
    egress_policy_free(&policy);
    /* 10,000 distinct /32s, none adjacent: all kept. */
    used = 0;
    for (size_t i = 0; i < 10000; i++)
        used += (size_t)sprintf(text + used, "%s10.%zu.%zu.1", i > 0 ? "," : "", i / 256, i % 256);
    deny.length = used;
    assert_int_equal(egress_policy_parse(&policy, field(NULL), deny, field(NULL), error,
                                         sizeof(error)),
                     0);
    assert_int_equal(egress_policy_deny_count(&policy), 10000);
    egress_policy_free(&policy);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absent_fields_allow_everything),
        cmocka_unit_test(test_addresses_and_blocks),
        cmocka_unit_test(test_everything),
        cmocka_unit_test(test_merge_overlapping_and_adjacent),
        cmocka_unit_test(test_merge_ipv6),
        cmocka_unit_test(test_merge_direct),
        cmocka_unit_test(test_internet_access_and_allow),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_domain_entries),
        cmocka_unit_test(test_domain_entries_refused),
        cmocka_unit_test(test_resolved_addresses),
        cmocka_unit_test(test_nul_bytes_refused),
        cmocka_unit_test(test_entry_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
