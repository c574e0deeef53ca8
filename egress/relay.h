/* One intercepted TCP connection of a sandbox: its name read, checked, resolved, dialled, relayed.
 */
#ifndef SGW_EGRESS_RELAY_H
#define SGW_EGRESS_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "egress/apply.h"
#include "egress/metrics.h"
#include "egress/policy.h"
#include "egress/resolver.h"

struct event_base;

enum {
    /* DESIGN.md: the name must come within the first 16 KiB, within 5 s. */
    EGRESS_RELAY_SNIFF_TIMEOUT_MS = 5000,
    /* A dial that neither connects nor fails in this long tries the next address. */
    EGRESS_RELAY_DIAL_TIMEOUT_MS = 5000,
    /* DESIGN.md: a relayed connection closes after an hour without a byte either way. */
    EGRESS_RELAY_IDLE_TIMEOUT_MS = 3600 * 1000,
};

typedef struct egress_relay egress_relay_t;

/* What the relays of one sandbox share: where they dial from and what they may reach. */
typedef struct egress_relay_site {
    struct event_base *base;
    const egress_applier_t *applier;
    egress_resolver_t *resolver;
    const char *sandbox_id;
    const char *netns;             /* where the agent dials from */
    const egress_policy_t *policy; /* read at each decision: the record's latest */
    LIST_HEAD(egress_relay_list, egress_relay) relays; /* every open relay, closed with the site */
    size_t relay_count;
    uint64_t idle_timeout_ms;  /* EGRESS_RELAY_IDLE_TIMEOUT_MS */
    egress_metrics_t *metrics; /* the agent's */
} egress_relay_site_t;

/* Takes over fd, a connection accepted on the listener for port (80: HTTP Host; 443: TLS SNI);
 * client_ipv6 says which family the sandbox used (its addresses are tried first). On failure the
 * connection is reset at once. */
void egress_relay_start(egress_relay_site_t *site, int fd, uint16_t port, bool client_ipv6);

/* Closes every relay of site. */
void egress_relay_close_all(egress_relay_site_t *site);

/* Closes fd with a reset (SO_LINGER 0) rather than a FIN: the program in the sandbox sees its
 * connection refused, not an empty answer. */
void egress_relay_reset_fd(int fd);

#endif
