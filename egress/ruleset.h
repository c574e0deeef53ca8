/* The nftables script that enforces a policy: one transaction, table and chains kept. */
#ifndef SGW_EGRESS_RULESET_H
#define SGW_EGRESS_RULESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress/policy.h"

/* The table the agent owns in each sandbox namespace (family inet: IPv4 and IPv6). */
#define EGRESS_RULESET_TABLE "sandbox_egress"

/* A growing NUL-terminated string; an allocation failure is remembered, not returned per call. */
typedef struct egress_text {
    char *data; /* NULL until the first append */
    size_t length;
    size_t capacity;
    bool failed; /* an append ran out of memory: the text is incomplete */
} egress_text_t;

/* Prepares an empty text. Allocates nothing. */
void egress_text_init(egress_text_t *text);

/* Frees the text and leaves it empty. */
void egress_text_free(egress_text_t *text);

/* Appends length bytes; on allocation failure sets text->failed. */
void egress_text_append(egress_text_t *text, const char *bytes, size_t length);

/* Appends formatted text; on allocation failure sets text->failed. */
void egress_text_appendf(egress_text_t *text, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* The interfaces of the namespace's default routes (its way to the world): a packet forwarded
 * in from one of them started outside and is not filtered. */
typedef struct egress_uplinks {
    bool known; /* false in `check`: the names are found at apply time */
    size_t count;
    char names[8][16]; /* IFNAMSIZ each */
} egress_uplinks_t;

/* Where the agent intercepts a sandbox with domain entries (DESIGN.md, "Domain names in
 * allow_out"): its listening ports inside the namespace, and its own cgroup, which marks the
 * sockets it dials from there (a sandbox process cannot move its sockets into it). */
typedef struct egress_intercept_ports {
    uint16_t tcp;          /* TCP 53, and 80 and 443 of refused addresses */
    uint16_t udp;          /* UDP 53 */
    const char *cgroup;    /* as nft names it: relative to /sys/fs/cgroup */
    unsigned cgroup_level; /* its depth below the cgroup2 root */
} egress_intercept_ports_t;

/* Appends to script the transaction that makes the table hold exactly policy: it adds the table,
 * chains and sets (a no-op when they exist), flushes them and refills them. With intercept (and
 * domain entries in policy) the transaction also redirects to the agent what DESIGN.md says;
 * without, there is no redirect, and the domain list is a comment. Returns 0, or -1 when memory
 * is exhausted. */
int egress_ruleset_compile(const egress_policy_t *policy, const egress_uplinks_t *uplinks,
                           const egress_intercept_ports_t *intercept, egress_text_t *script);

/* Appends to script what removes the table, and succeeds whether or not it exists. */
void egress_ruleset_remove(egress_text_t *script);

#endif
