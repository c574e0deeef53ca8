/* Domain interception for one sandbox: the agent's listeners inside its namespace (TCP 80 and
 * 443 relays, DNS over UDP and TCP), and the DNS answers. */
#ifndef SGW_EGRESS_INTERCEPT_H
#define SGW_EGRESS_INTERCEPT_H

#include <stdbool.h>
#include <stddef.h>

#include "egress/apply.h"
#include "egress/metrics.h"
#include "egress/policy.h"
#include "egress/resolver.h"
#include "egress/ruleset.h"

struct event_base;

enum {
    /* DESIGN.md: a sandbox has at most this many intercepted connections at once (relays and
     * DNS over TCP); more are reset. */
    EGRESS_INTERCEPT_CONNECTIONS_MAX = 1024,
    /* DNS queries waiting for the resolver, per sandbox; more are dropped (the client retries). */
    EGRESS_INTERCEPT_DNS_PENDING_MAX = 256,
    EGRESS_INTERCEPT_CGROUP_MAX = 4096,
};

/* What every sandbox's interception shares: the loop, the namespaces, the resolver, and the
 * agent's cgroup that marks its own sockets. */
typedef struct egress_intercept_shared {
    struct event_base *base;
    const egress_applier_t *applier;
    egress_resolver_t *resolver;
    egress_metrics_t *metrics;
    char cgroup[EGRESS_INTERCEPT_CGROUP_MAX]; /* as nft names it, relative to /sys/fs/cgroup */
    unsigned cgroup_level;
} egress_intercept_shared_t;

typedef struct egress_intercept egress_intercept_t;

/* Finds the cgroup (v2) the agent runs in, as nft's "socket cgroupv2" names it, into shared.
 * Returns 0, or -1 with error: no cgroup2 mount under /sys/fs/cgroup, or the root cgroup, which
 * every process of the node shares and so marks nothing. */
int egress_intercept_find_cgroup(egress_intercept_shared_t *shared, char *error, size_t error_size);

/* Opens the listeners of sandbox sandbox_id inside namespace netns; policy (the sandbox's record,
 * which must outlive the interception) is read at each decision. Returns NULL with error. */
egress_intercept_t *egress_intercept_new(const egress_intercept_shared_t *shared,
                                         const char *sandbox_id, const char *netns,
                                         const egress_policy_t *policy, char *error,
                                         size_t error_size);

/* Closes the listeners and every connection they took, and frees. */
void egress_intercept_free(egress_intercept_t *intercept);

/* The ports and cgroup for the sandbox's nftables transaction. */
const egress_intercept_ports_t *egress_intercept_ports(const egress_intercept_t *intercept);

/* True when the listeners live in the namespace that netns names now (not in one removed since,
 * or in another). */
bool egress_intercept_serves(const egress_intercept_t *intercept, const char *netns);

#endif
