/* The agent's counters, and their Prometheus text for its admin_listen (GET /metrics). */
#include "egress/metrics.h"

#include <event2/buffer.h>

static const char *const egress_verdict_names[EGRESS_VERDICT_COUNT] = {
    [EGRESS_VERDICT_RELAYED] = "relayed",
    [EGRESS_VERDICT_NO_NAME] = "no_name",
    [EGRESS_VERDICT_MALFORMED] = "malformed",
    [EGRESS_VERDICT_NOT_ALLOWED] = "not_allowed",
    [EGRESS_VERDICT_UNRESOLVED] = "unresolved",
    [EGRESS_VERDICT_REFUSED_ADDRESS] = "refused_address",
    [EGRESS_VERDICT_DIAL_FAILED] = "dial_failed",
    [EGRESS_VERDICT_LIMIT] = "limit",
};

static const char *const egress_dns_outcome_names[EGRESS_DNS_OUTCOME_COUNT] = {
    [EGRESS_DNS_ADDRESSES] = "addresses", [EGRESS_DNS_EMPTY] = "empty",
    [EGRESS_DNS_NXDOMAIN] = "nxdomain",   [EGRESS_DNS_SERVFAIL] = "servfail",
    [EGRESS_DNS_REFUSED] = "refused",
};

const char *egress_verdict_name(egress_verdict_t verdict) {
    return verdict < EGRESS_VERDICT_COUNT ? egress_verdict_names[verdict] : "unknown";
}

const char *egress_dns_outcome_name(egress_dns_outcome_t outcome) {
    return outcome < EGRESS_DNS_OUTCOME_COUNT ? egress_dns_outcome_names[outcome] : "unknown";
}

/* One metric's HELP and TYPE lines. */
static int egress_metrics_header(struct evbuffer *out, const char *name, const char *type,
                                 const char *help) {
    return evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0 ? -1
                                                                                                : 0;
}

static int egress_metrics_value(struct evbuffer *out, const char *name, const char *type,
                                const char *help, uint64_t value) {
    if (egress_metrics_header(out, name, type, help) != 0)
        return -1;
    return evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)value) < 0 ? -1 : 0;
}

int egress_metrics_render(const egress_metrics_t *metrics, struct evbuffer *out) {
    int failed = egress_metrics_header(out, "sgw_egress_intercepted_total", "counter",
                                       "Intercepted TCP connections (ports 80 and 443) by "
                                       "verdict.");
    for (int i = 0; i < EGRESS_VERDICT_COUNT; i++)
        failed |= evbuffer_add_printf(out, "sgw_egress_intercepted_total{verdict=\"%s\"} %llu\n",
                                      egress_verdict_names[i],
                                      (unsigned long long)metrics->intercepted[i]) < 0;
    failed |= egress_metrics_header(out, "sgw_egress_dns_answers_total", "counter",
                                    "DNS queries of sandboxes answered by the agent, by answer.");
    for (int i = 0; i < EGRESS_DNS_OUTCOME_COUNT; i++)
        failed |= evbuffer_add_printf(out, "sgw_egress_dns_answers_total{answer=\"%s\"} %llu\n",
                                      egress_dns_outcome_names[i],
                                      (unsigned long long)metrics->dns_answers[i]) < 0;
    failed |=
        egress_metrics_value(out, "sgw_egress_dns_lookups_total", "counter",
                             "Names the agent resolved through dns_server.", metrics->lookups);
    failed |=
        egress_metrics_value(out, "sgw_egress_dns_lookup_failures_total", "counter",
                             "Of those, the ones without any address.", metrics->lookup_failures);
    failed |= egress_metrics_header(out, "sgw_egress_relayed_bytes_total", "counter",
                                    "Bytes relayed for intercepted connections.");
    failed |= evbuffer_add_printf(out,
                                  "sgw_egress_relayed_bytes_total{direction=\"out\"} %llu\n"
                                  "sgw_egress_relayed_bytes_total{direction=\"in\"} %llu\n",
                                  (unsigned long long)metrics->bytes_out,
                                  (unsigned long long)metrics->bytes_in) < 0;
    failed |= egress_metrics_value(out, "sgw_egress_relays", "gauge",
                                   "Intercepted connections open now.", metrics->relays_open);
    failed |= egress_metrics_value(out, "sgw_egress_sandboxes", "gauge",
                                   "Sandboxes of the node set.", metrics->sandboxes);
    failed |= egress_metrics_value(out, "sgw_egress_policies_applied_total", "counter",
                                   "nftables transactions committed.", metrics->policies_applied);
    failed |= egress_metrics_value(out, "sgw_egress_apply_failures_total", "counter",
                                   "Policies that could not be applied (retried).",
                                   metrics->apply_failures);
    return failed ? -1 : 0;
}
