/* Resolving the names of domain entries: libevent's evdns, answers cached for their TTL. */
#ifndef SGW_EGRESS_RESOLVER_H
#define SGW_EGRESS_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress/metrics.h"

struct event_base;

enum {
    /* Addresses kept per family and name: more than any answer worth dialling through. */
    EGRESS_RESOLVED_MAX = 16,
    /* DESIGN.md / the issue: answers live at least 1 s and at most 5 min in the cache. */
    EGRESS_RESOLVER_TTL_MIN_S = 1,
    EGRESS_RESOLVER_TTL_MAX_S = 300,
};

/* What a name resolved to: both families, each as its server returned them. */
typedef struct egress_resolved {
    size_t count4;
    size_t count6;
    uint8_t addresses4[EGRESS_RESOLVED_MAX][4];
    uint8_t addresses6[EGRESS_RESOLVED_MAX][16];
    uint32_t ttl_s;    /* seconds the answer still lives in the cache */
    const char *error; /* NULL, or why neither family resolved ("name not found", ...) */
} egress_resolved_t;

typedef struct egress_resolver egress_resolver_t;
typedef struct egress_resolve_wait egress_resolve_wait_t;

/* Called once per lookup with the answer, which lives until the callback returns. */
typedef void egress_resolve_callback_t(const egress_resolved_t *resolved, void *argument);

/* Creates a resolver on base that asks dns_server ("ADDR", "ADDR:PORT", "[IPv6]:PORT"), or the
 * first nameserver of /etc/resolv.conf when it is NULL, and counts its lookups in metrics.
 * Returns NULL with a message in error. */
egress_resolver_t *egress_resolver_new(struct event_base *base, const char *dns_server,
                                       egress_metrics_t *metrics, char *error, size_t error_size);

/* Cancels every wait (their callbacks are not called) and frees the resolver. */
void egress_resolver_free(egress_resolver_t *resolver);

/* Copies the cached, unexpired answer for name (lower-case, length bytes) into *resolved and
 * returns true; false when there is none yet. */
bool egress_resolver_cached(egress_resolver_t *resolver, const char *name, size_t length,
                            egress_resolved_t *resolved);

/* Resolves name (A and AAAA at once; one query per name however many wait) and calls callback
 * later, never from within this call. Returns the wait, which egress_resolver_cancel ends before
 * its callback; NULL when memory is exhausted. */
egress_resolve_wait_t *egress_resolver_lookup(egress_resolver_t *resolver, const char *name,
                                              size_t length, egress_resolve_callback_t *callback,
                                              void *argument);

/* Forgets a wait whose callback has not run yet. */
void egress_resolver_cancel(egress_resolve_wait_t *wait);

#endif
