/* Unit tests of egress/ruleset.c: the nftables transaction a policy compiles to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "egress/policy.h"
#include "egress/ruleset.h"

static egress_field_t field(const char *text) {
    egress_field_t result = {text, text != NULL ? strlen(text) : 0};
    return result;
}

/* Compiles the fields with uplinks (NULL: unknown, as in `check`); the caller frees script. */
static void compile(const char *internet, const char *deny, const char *allow,
                    const egress_uplinks_t *uplinks, egress_text_t *script) {
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    if (egress_policy_parse(&policy, field(internet), field(deny), field(allow), error,
                            sizeof(error)) != 0)
        fail_msg("refused: %s", error);
    egress_text_init(script);
    assert_int_equal(egress_ruleset_compile(&policy, uplinks, NULL, script), 0);
    assert_false(script->failed);
    assert_int_equal(strlen(script->data), script->length);
    egress_policy_free(&policy);
}

/* The offset of needle in script, failing when absent. */
static size_t position(const egress_text_t *script, const char *needle) {
    const char *found = strstr(script->data, needle);
    if (found == NULL)
        fail_msg("\"%s\" missing from:\n%s", needle, script->data);
    return (size_t)(found - script->data);
}

static void test_keeps_table_and_replaces_contents(void **state) {
    (void)state;
    egress_text_t script;
    compile(NULL, "all", "192.0.2.10,198.51.100.0/24,2001:db8::1", NULL, &script);
    /* Everything is added (a no-op when present), then flushed, then refilled: the table and
     * its filter chains are never deleted (only the interception chains, which a policy
     * without domain entries does not have). */
    assert_null(strstr(script.data, "delete table"));
    assert_null(strstr(script.data, "delete chain inet sandbox_egress output"));
    assert_null(strstr(script.data, "delete chain inet sandbox_egress forward"));
    size_t add_table = position(&script, "add table inet sandbox_egress\n");
    size_t add_output = position(
        &script, "add chain inet sandbox_egress output { type filter hook output priority filter; "
                 "policy accept; }\n");
    size_t add_forward = position(
        &script, "add chain inet sandbox_egress forward { type filter hook forward priority "
                 "filter; policy accept; }\n");
    position(&script, "add set inet sandbox_egress allow4 { type ipv4_addr; flags interval; }\n");
    position(&script, "add set inet sandbox_egress deny6 { type ipv6_addr; flags interval; }\n");
    size_t flush_output = position(&script, "flush chain inet sandbox_egress output\n");
    size_t flush_deny = position(&script, "flush set inet sandbox_egress deny4\n");
    size_t elements = position(&script, "add element inet sandbox_egress allow4 {\n"
                                        "\t192.0.2.10,\n\t198.51.100.0/24\n}\n");
    position(&script, "add element inet sandbox_egress allow6 {\n\t2001:db8::1\n}\n");
    position(&script, "add element inet sandbox_egress deny4 {\n\t0.0.0.0/0\n}\n");
    position(&script, "add element inet sandbox_egress deny6 {\n\t::/0\n}\n");
    assert_true(add_table < add_output && add_output < add_forward);
    assert_true(add_forward < flush_output && flush_output < flush_deny && flush_deny < elements);
    egress_text_free(&script);
}

static void test_rule_order(void **state) {
    (void)state;
    egress_text_t script;
    compile(NULL, "192.0.2.0/24", "192.0.2.10", NULL, &script);
    const char *chains[] = {"output", "forward"};
    for (size_t i = 0; i < 2; i++) {
        char rule[160];
        snprintf(rule, sizeof(rule),
                 "add rule inet sandbox_egress %s ct state established,related ct direction "
                 "reply accept\n",
                 chains[i]);
        size_t replies = position(&script, rule);
        snprintf(rule, sizeof(rule), "add rule inet sandbox_egress %s ip daddr @allow4 accept\n",
                 chains[i]);
        size_t allow4 = position(&script, rule);
        snprintf(rule, sizeof(rule), "add rule inet sandbox_egress %s ip6 daddr @allow6 accept\n",
                 chains[i]);
        size_t allow6 = position(&script, rule);
        snprintf(rule, sizeof(rule),
                 "add rule inet sandbox_egress %s ip daddr @deny4 jump refuse\n", chains[i]);
        size_t deny4 = position(&script, rule);
        snprintf(rule, sizeof(rule),
                 "add rule inet sandbox_egress %s ip6 daddr @deny6 jump refuse\n", chains[i]);
        size_t deny6 = position(&script, rule);
        /* Replies first, then allow before deny: allow wins. */
        assert_true(replies < allow4 && allow4 < allow6 && allow6 < deny4 && deny4 < deny6);
    }
    size_t loopback = position(&script, "add rule inet sandbox_egress output oif \"lo\" accept\n");
    size_t output_replies = position(&script, "output ct state");
    assert_true(loopback < output_replies);
    size_t uplinks =
        position(&script, "add rule inet sandbox_egress forward iifname @uplinks accept\n");
    assert_true(uplinks < position(&script, "forward ct state"));
    position(&script, "add rule inet sandbox_egress refuse meta l4proto tcp reject with tcp "
                      "reset\n");
    position(&script, "add rule inet sandbox_egress refuse reject with icmpx admin-prohibited\n");
    egress_text_free(&script);
}

static void test_empty_lists_add_no_elements(void **state) {
    (void)state;
    egress_text_t script;
    compile(NULL, NULL, NULL, NULL, &script);
    assert_null(strstr(script.data, "add element"));
    /* The flushes still run: a policy of nothing replaces whatever was there. */
    position(&script, "flush set inet sandbox_egress deny4\n");
    position(&script, "# sandbox-netpolicy: allow_internet_access true; 0 allowed and 0 denied");
    egress_text_free(&script);

    compile("false", NULL, NULL, NULL, &script);
    position(&script, "allow_internet_access false; 0 allowed and 2 denied");
    egress_text_free(&script);
}

static void test_uplinks(void **state) {
    (void)state;
    egress_uplinks_t uplinks;
    memset(&uplinks, 0, sizeof(uplinks));
    egress_text_t script;
    compile(NULL, "all", NULL, NULL, &script);
    position(&script, "# uplinks: the interfaces of the namespace's default routes");
    egress_text_free(&script);

    uplinks.known = true;
    compile(NULL, "all", NULL, &uplinks, &script);
    /* Known and none: the set stays empty, so every forwarded packet is filtered. */
    assert_null(strstr(script.data, "add element inet sandbox_egress uplinks"));
    assert_null(strstr(script.data, "# uplinks"));
    egress_text_free(&script);

    uplinks.count = 2;
    snprintf(uplinks.names[0], sizeof(uplinks.names[0]), "eth0");
    snprintf(uplinks.names[1], sizeof(uplinks.names[1]), "veth-up");
    compile(NULL, "all", NULL, &uplinks, &script);
    position(&script, "add element inet sandbox_egress uplinks { \"eth0\", \"veth-up\" }\n");
    egress_text_free(&script);
}

static void test_ranges_and_large_lists(void **state) {
    (void)state;
    egress_text_t script;
    compile(NULL, "10.0.0.0/8,11.0.0.0/8,12.0.0.0/7", NULL, NULL, &script);
    position(&script, "\t10.0.0.0-13.255.255.255\n");
    egress_text_free(&script);

    char *list = malloc(10000 * 16);
    assert_non_null(list);
    size_t used = 0;
    for (int i = 0; i < 10000; i++)
        used += (size_t)sprintf(list + used, "%s10.%d.%d.1", i > 0 ? "," : "", i / 256, i % 256);
    compile(NULL, list, NULL, NULL, &script);
    size_t lines = 0;
    for (const char *cursor = script.data; (cursor = strstr(cursor, "\n\t10.")) != NULL; cursor++)
        lines++;
    assert_int_equal(lines, 10000);
    position(&script, "\t10.39.15.1\n}\n");
    egress_text_free(&script);
    free(list);
}

/* DESIGN.md, "Domain names in allow_out": with its ports, the transaction redirects DNS and
 * ports 80 and 443 of refused addresses to the agent; the agent's cgroup passes. */
static void test_domain_interception(void **state) {
    (void)state;
    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    assert_int_equal(egress_policy_parse(&policy, field(NULL), field("all"),
                                         field("*.github.com,pypi.org,192.0.2.1"), error,
                                         sizeof(error)),
                     0);
    egress_intercept_ports_t ports = {
        .tcp = 40001, .udp = 40002, .cgroup = "unified/agent", .cgroup_level = 1};
    egress_text_t script;
    egress_text_init(&script);
    assert_int_equal(egress_ruleset_compile(&policy, NULL, &ports, &script), 0);
    position(&script, "# domains (TCP 80 by Host, 443 by TLS SNI; DNS answered by the agent): "
                      "pypi.org, *.github.com\n");
    /* The agent's own dials pass the filter before any deny rule. */
    size_t agent = position(&script, "add rule inet sandbox_egress output socket cgroupv2 level 1 "
                                     "\"unified/agent\" accept\n");
    assert_true(agent < position(&script, "output ip daddr @deny4 jump refuse"));
    assert_true(position(&script, "add rule inet sandbox_egress output ct status dnat accept\n") <
                position(&script, "output ip daddr @deny4 jump refuse"));
    size_t skip_agent = position(&script, "intercept_output socket cgroupv2 level 1 "
                                          "\"unified/agent\" return\n");
    size_t skip_lo = position(&script, "intercept_output oif \"lo\" return\n");
    size_t jump = position(&script, "intercept_output jump intercept\n");
    assert_true(skip_agent < skip_lo && skip_lo < jump);
    assert_true(position(&script, "intercept_prerouting iifname @uplinks return\n") <
                position(&script, "intercept_prerouting jump intercept\n"));
    position(&script, "intercept udp dport 53 redirect to :40002\n");
    position(&script, "intercept tcp dport 53 redirect to :40001\n");
    /* What is allowed by address is never redirected. */
    size_t allowed = position(&script, "intercept ip daddr @allow4 return\n");
    assert_true(allowed < position(&script, "intercept ip daddr @deny4 tcp dport { 80, 443 } "
                                            "redirect to :40001\n"));
    assert_true(position(&script, "intercept ip6 daddr @allow6 return\n") <
                position(&script, "intercept ip6 daddr @deny6 tcp dport { 80, 443 } redirect to "
                                  ":40001\n"));
    assert_null(strstr(script.data, "delete chain"));
    egress_text_free(&script);

    /* Without domain entries, the same transaction removes the interception chains. */
    egress_policy_free(&policy);
    assert_int_equal(egress_policy_parse(&policy, field(NULL), field("all"), field("192.0.2.1"),
                                         error, sizeof(error)),
                     0);
    egress_text_init(&script);
    assert_int_equal(egress_ruleset_compile(&policy, NULL, &ports, &script), 0);
    assert_null(strstr(script.data, "redirect"));
    assert_null(strstr(script.data, "cgroupv2"));
    assert_true(position(&script, "flush chain inet sandbox_egress intercept\n") <
                position(&script, "delete chain inet sandbox_egress intercept\n"));
    egress_text_free(&script);
    egress_policy_free(&policy);
}

static void test_remove(void **state) {
    (void)state;
    egress_text_t script;
    egress_text_init(&script);
    egress_ruleset_remove(&script);
    assert_string_equal(script.data, "add table inet sandbox_egress\n"
                                     "delete table inet sandbox_egress\n");
    egress_text_free(&script);
    assert_null(script.data);
}

static void test_text(void **state) {
    (void)state;
    egress_text_t text;
    egress_text_init(&text);
    for (int i = 0; i < 5000; i++)
        egress_text_appendf(&text, "%04d;", i);
    assert_int_equal(text.length, 25000);
    assert_memory_equal(text.data + 24995, "4999;", 6);
    egress_text_append(&text, "", 0);
    assert_int_equal(text.length, 25000);
    egress_text_free(&text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keeps_table_and_replaces_contents),
        cmocka_unit_test(test_rule_order),
        cmocka_unit_test(test_empty_lists_add_no_elements),
        cmocka_unit_test(test_uplinks),
        cmocka_unit_test(test_ranges_and_large_lists),
        cmocka_unit_test(test_domain_interception),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
