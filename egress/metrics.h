/* The agent's counters, and their Prometheus text for its admin_listen (GET /metrics). */
#ifndef SGW_EGRESS_METRICS_H
#define SGW_EGRESS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* What became of an intercepted TCP connection (port 80 or 443). */
typedef enum egress_verdict {
    EGRESS_VERDICT_RELAYED = 0,     /* its name matched, and it was dialled and relayed */
    EGRESS_VERDICT_NO_NAME,         /* no SNI or Host, or nothing sent within 5 s or 16 KiB */
    EGRESS_VERDICT_MALFORMED,       /* not a ClientHello or an HTTP/1.x head */
    EGRESS_VERDICT_NOT_ALLOWED,     /* no domain entry matches its name */
    EGRESS_VERDICT_UNRESOLVED,      /* its name did not resolve */
    EGRESS_VERDICT_REFUSED_ADDRESS, /* every address it resolves to is refused */
    EGRESS_VERDICT_DIAL_FAILED,     /* no permitted address answered */
    EGRESS_VERDICT_LIMIT,           /* the sandbox had 1,024 intercepted connections already */
    EGRESS_VERDICT_COUNT,
} egress_verdict_t;

/* What the agent's DNS answered a sandbox. */
typedef enum egress_dns_outcome {
    EGRESS_DNS_ADDRESSES = 0, /* a matching name's A or AAAA records (maybe none permitted) */
    EGRESS_DNS_EMPTY,         /* another type of a matching name */
    EGRESS_DNS_NXDOMAIN,      /* a name no entry matches */
    EGRESS_DNS_SERVFAIL,      /* a matching name that did not resolve */
    EGRESS_DNS_REFUSED,       /* not a query it takes (FORMERR, NOTIMP) */
    EGRESS_DNS_OUTCOME_COUNT,
} egress_dns_outcome_t;

typedef struct egress_metrics {
    uint64_t intercepted[EGRESS_VERDICT_COUNT];
    uint64_t dns_answers[EGRESS_DNS_OUTCOME_COUNT];
    uint64_t lookups;         /* names the agent resolved (A and AAAA together) */
    uint64_t lookup_failures; /* of those, with no address */
    uint64_t bytes_out;       /* relayed from sandboxes to the names they reached */
    uint64_t bytes_in;        /* and back */
    uint64_t relays_open;
    uint64_t policies_applied; /* nftables transactions committed */
    uint64_t apply_failures;
    uint64_t sandboxes; /* of the node set */
} egress_metrics_t;

/* The label value of a verdict or an outcome, as /metrics writes it. */
const char *egress_verdict_name(egress_verdict_t verdict);
const char *egress_dns_outcome_name(egress_dns_outcome_t outcome);

/* Appends the Prometheus text of metrics to out; returns 0, or -1 when memory is exhausted. */
int egress_metrics_render(const egress_metrics_t *metrics, struct evbuffer *out);

#endif
