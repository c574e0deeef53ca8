/* The nftables script that enforces a policy: one transaction, table and chains kept. */
#include "egress/ruleset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EGRESS_RULESET_QUALIFIED "inet " EGRESS_RULESET_TABLE

void egress_text_init(egress_text_t *text) { memset(text, 0, sizeof(*text)); }

void egress_text_free(egress_text_t *text) {
    free(text->data);
    memset(text, 0, sizeof(*text));
}

/* Makes room for length more bytes and the NUL; returns false (and marks text) on failure. */
static bool egress_text_reserve(egress_text_t *text, size_t length) {
    if (text->failed)
        return false;
    if (text->length + length + 1 <= text->capacity)
        return true;
    size_t capacity = text->capacity == 0 ? 4096 : text->capacity;
    while (capacity < text->length + length + 1)
        capacity *= 2;
    char *data = realloc(text->data, capacity);
    if (data == NULL) {
        text->failed = true;
        return false;
    }
    text->data = data;
    text->capacity = capacity;
    return true;
}

void egress_text_append(egress_text_t *text, const char *bytes, size_t length) {
    if (!egress_text_reserve(text, length))
        return;
    memcpy(text->data + text->length, bytes, length);
    text->length += length;
    text->data[text->length] = '\0';
}

void egress_text_appendf(egress_text_t *text, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    int length = vsnprintf(NULL, 0, format, arguments);
    va_end(arguments);
    if (length < 0) {
        text->failed = true;
        return;
    }
    if (!egress_text_reserve(text, (size_t)length))
        return;
    va_start(arguments, format);
    vsnprintf(text->data + text->length, (size_t)length + 1, format, arguments);
    va_end(arguments);
    text->length += (size_t)length;
}

static void egress_text_puts(egress_text_t *text, const char *string) {
    egress_text_append(text, string, strlen(string));
}

/* "add element ... NAME { ... }" for a non-empty list; an empty set is left flushed. */
static void egress_ruleset_elements(egress_text_t *script, const char *set,
                                    const egress_range_list_t *list, egress_family_t family) {
    if (list->count == 0)
        return;
    egress_text_appendf(script, "add element " EGRESS_RULESET_QUALIFIED " %s {\n", set);
    for (size_t i = 0; i < list->count; i++) {
        char element[EGRESS_RANGE_TEXT_MAX];
        size_t length = egress_range_format(&list->ranges[i], family, element);
        egress_text_append(script, "\t", 1);
        egress_text_append(script, element, length);
        egress_text_puts(script, i + 1 < list->count ? ",\n" : "\n");
    }
    egress_text_append(script, "}\n", 2);
}

/* The rules shared by both hooks, after what is specific to each: allow wins over deny because it
 * is looked up first. */
static void egress_ruleset_policy_rules(egress_text_t *script, const char *chain) {
    static const char *const rules[] = {
        /* Replies only: the sandbox's own connections are checked on every packet, so a policy
         * change also cuts connections it opened before (ct state alone would let them run). */
        "ct state established,related ct direction reply accept",
        "ip daddr @allow4 accept",
        "ip6 daddr @allow6 accept",
        "ip daddr @deny4 jump refuse",
        "ip6 daddr @deny6 jump refuse",
    };
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        egress_text_appendf(script, "add rule " EGRESS_RULESET_QUALIFIED " %s %s\n", chain,
                            rules[i]);
}

/* Adding what exists is a no-op, so the first and every later policy share one script; the
 * flushes and refills then commit as one transaction, and no packet sees an empty table. */
static const char egress_ruleset_skeleton[] =
    "add table " EGRESS_RULESET_QUALIFIED "\n"
    "add chain " EGRESS_RULESET_QUALIFIED
    " output { type filter hook output priority filter; policy accept; }\n"
    "add chain " EGRESS_RULESET_QUALIFIED
    " forward { type filter hook forward priority filter; policy accept; }\n"
    "add chain " EGRESS_RULESET_QUALIFIED " refuse\n"
    "add set " EGRESS_RULESET_QUALIFIED " allow4 { type ipv4_addr; flags interval; }\n"
    "add set " EGRESS_RULESET_QUALIFIED " deny4 { type ipv4_addr; flags interval; }\n"
    "add set " EGRESS_RULESET_QUALIFIED " allow6 { type ipv6_addr; flags interval; }\n"
    "add set " EGRESS_RULESET_QUALIFIED " deny6 { type ipv6_addr; flags interval; }\n"
    "add set " EGRESS_RULESET_QUALIFIED " uplinks { type ifname; }\n"
    "flush chain " EGRESS_RULESET_QUALIFIED " output\n"
    "flush chain " EGRESS_RULESET_QUALIFIED " forward\n"
    "flush chain " EGRESS_RULESET_QUALIFIED " refuse\n"
    "flush set " EGRESS_RULESET_QUALIFIED " allow4\n"
    "flush set " EGRESS_RULESET_QUALIFIED " deny4\n"
    "flush set " EGRESS_RULESET_QUALIFIED " allow6\n"
    "flush set " EGRESS_RULESET_QUALIFIED " deny6\n"
    "flush set " EGRESS_RULESET_QUALIFIED " uplinks\n";

/* Refused rather than dropped: a program in the sandbox fails at once ("connection refused",
 * "administratively prohibited") instead of hanging until its own timeout. */
static const char egress_ruleset_refuse[] =
    "add rule " EGRESS_RULESET_QUALIFIED " refuse meta l4proto tcp reject with tcp reset\n"
    "add rule " EGRESS_RULESET_QUALIFIED " refuse reject with icmpx admin-prohibited\n";

/* The namespace's own traffic: loopback is not the internet, and IPv6 neighbour discovery must
 * pass or even the replies to inbound connections could not find their next hop. */
static const char egress_ruleset_output_head[] =
    "add rule " EGRESS_RULESET_QUALIFIED " output oif \"lo\" accept\n"
    "add rule " EGRESS_RULESET_QUALIFIED
    " output icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept\n";

/* Forwarded traffic (a VM's tap): what comes in from the world is inbound, on its way to the VM,
 * and passes; only what the VM starts is filtered. */
static const char egress_ruleset_forward_head[] =
    "add rule " EGRESS_RULESET_QUALIFIED " forward iifname @uplinks accept\n";

/* The chains of domain interception: nat hooks (priority -100 is dstnat, which nft 1.0.6 does
 * not name in an inet output hook), so only a connection's first packet is looked at, and its
 * redirect holds for the rest. Without domain entries they are deleted in the same
 * transaction ("add" first, so the pair succeeds whether or not they exist): a sandbox without
 * domain entries has no nat hook at all. */
static const char egress_ruleset_intercept_chains[] =
    "add chain " EGRESS_RULESET_QUALIFIED
    " intercept_output { type nat hook output priority -100; policy accept; }\n"
    "add chain " EGRESS_RULESET_QUALIFIED
    " intercept_prerouting { type nat hook prerouting priority -100; policy accept; }\n"
    "add chain " EGRESS_RULESET_QUALIFIED " intercept\n"
    "flush chain " EGRESS_RULESET_QUALIFIED " intercept_output\n"
    "flush chain " EGRESS_RULESET_QUALIFIED " intercept_prerouting\n"
    "flush chain " EGRESS_RULESET_QUALIFIED " intercept\n";

static const char egress_ruleset_intercept_delete[] =
    "delete chain " EGRESS_RULESET_QUALIFIED " intercept_output\n"
    "delete chain " EGRESS_RULESET_QUALIFIED " intercept_prerouting\n"
    "delete chain " EGRESS_RULESET_QUALIFIED " intercept\n";

/* The domain list, as a comment: what the interception lets through by name. */
static void egress_ruleset_domains(egress_text_t *script, const egress_policy_t *policy) {
    egress_text_puts(script, "# domains (TCP 80 by Host, 443 by TLS SNI; DNS answered by the "
                             "agent):");
    for (size_t i = 0; i < policy->domains.count; i++)
        egress_text_appendf(script, "%s %s%s", i > 0 ? "," : "",
                            policy->domains.domains[i].wildcard ? "*." : "",
                            policy->domains.domains[i].name);
    egress_text_puts(script, "\n");
}

/* Redirects: DNS to any address, and ports 80 and 443 of addresses the address rules refuse.
 * The agent's own sockets (its cgroup) and loopback are never redirected; neither is what comes
 * in from the world on an uplink. The agent tells the three apart by the original destination. */
static void egress_ruleset_intercept(egress_text_t *script, const egress_intercept_ports_t *ports) {
    egress_text_puts(script, egress_ruleset_intercept_chains);
    egress_text_appendf(
        script,
        "add rule " EGRESS_RULESET_QUALIFIED
        " intercept_output socket cgroupv2 level %u \"%s\" return\n"
        "add rule " EGRESS_RULESET_QUALIFIED " intercept_output oif \"lo\" return\n"
        "add rule " EGRESS_RULESET_QUALIFIED " intercept_output jump intercept\n"
        "add rule " EGRESS_RULESET_QUALIFIED " intercept_prerouting iifname @uplinks return\n"
        "add rule " EGRESS_RULESET_QUALIFIED " intercept_prerouting jump intercept\n",
        ports->cgroup_level, ports->cgroup);
    egress_text_appendf(
        script,
        "add rule " EGRESS_RULESET_QUALIFIED " intercept udp dport 53 redirect to :%u\n"
        "add rule " EGRESS_RULESET_QUALIFIED " intercept tcp dport 53 redirect to :%u\n"
        "add rule " EGRESS_RULESET_QUALIFIED " intercept ip daddr @allow4 return\n"
        "add rule " EGRESS_RULESET_QUALIFIED " intercept ip6 daddr @allow6 return\n"
        "add rule " EGRESS_RULESET_QUALIFIED
        " intercept ip daddr @deny4 tcp dport { 80, 443 } redirect to :%u\n"
        "add rule " EGRESS_RULESET_QUALIFIED
        " intercept ip6 daddr @deny6 tcp dport { 80, 443 } redirect to :%u\n",
        ports->udp, ports->tcp, ports->tcp, ports->tcp);
}

int egress_ruleset_compile(const egress_policy_t *policy, const egress_uplinks_t *uplinks,
                           const egress_intercept_ports_t *intercept, egress_text_t *script) {
    egress_text_appendf(script,
                        "# sandbox-netpolicy: allow_internet_access %s; %zu allowed and %zu "
                        "denied ranges after merging\n",
                        policy->internet_access ? "true" : "false",
                        egress_policy_allow_count(policy), egress_policy_deny_count(policy));
    egress_text_puts(script, egress_ruleset_skeleton);
    egress_ruleset_elements(script, "allow4", &policy->allow[EGRESS_IPV4], EGRESS_IPV4);
    egress_ruleset_elements(script, "allow6", &policy->allow[EGRESS_IPV6], EGRESS_IPV6);
    egress_ruleset_elements(script, "deny4", &policy->deny[EGRESS_IPV4], EGRESS_IPV4);
    egress_ruleset_elements(script, "deny6", &policy->deny[EGRESS_IPV6], EGRESS_IPV6);
    if (uplinks == NULL || !uplinks->known) {
        egress_text_puts(script, "# uplinks: the interfaces of the namespace's default routes, "
                                 "found when the policy is applied\n");
    } else if (uplinks->count > 0) {
        egress_text_puts(script, "add element " EGRESS_RULESET_QUALIFIED " uplinks { ");
        for (size_t i = 0; i < uplinks->count; i++)
            egress_text_appendf(script, "%s\"%s\"", i > 0 ? ", " : "", uplinks->names[i]);
        egress_text_puts(script, " }\n");
    }
    egress_text_puts(script, egress_ruleset_refuse);
    egress_text_puts(script, egress_ruleset_output_head);
    bool intercepting = intercept != NULL && policy->domains.count > 0;
    /* The agent's own sockets pass, and so do connections redirected to it: the filter sees
     * them with their new (loopback) address but the old output interface, as nft's oif is
     * the hook's, fixed before the redirect. */
    if (intercepting)
        egress_text_appendf(script,
                            "add rule " EGRESS_RULESET_QUALIFIED
                            " output socket cgroupv2 level %u \"%s\" accept\n"
                            "add rule " EGRESS_RULESET_QUALIFIED " output ct status dnat accept\n",
                            intercept->cgroup_level, intercept->cgroup);
    egress_ruleset_policy_rules(script, "output");
    egress_text_puts(script, egress_ruleset_forward_head);
    egress_ruleset_policy_rules(script, "forward");
    if (policy->domains.count > 0)
        egress_ruleset_domains(script, policy);
    if (intercepting) {
        egress_ruleset_intercept(script, intercept);
    } else {
        if (policy->domains.count > 0)
            egress_text_puts(script, "# interception: the agent's ports and cgroup are chosen "
                                     "when the policy is applied\n");
        egress_text_puts(script, egress_ruleset_intercept_chains);
        egress_text_puts(script, egress_ruleset_intercept_delete);
    }
    return script->failed ? -1 : 0;
}

void egress_ruleset_remove(egress_text_t *script) {
    /* "delete" of a missing table fails: adding it first makes the pair succeed either way. */
    static const char remove[] = "add table " EGRESS_RULESET_QUALIFIED "\n"
                                 "delete table " EGRESS_RULESET_QUALIFIED "\n";
    egress_text_append(script, remove, sizeof(remove) - 1);
}
