/* Applying rulesets inside a sandbox's network namespace (setns + libnftables). */
#ifndef SGW_EGRESS_APPLY_H
#define SGW_EGRESS_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "egress/policy.h"
#include "egress/ruleset.h"

/* Where `ip netns add NAME` leaves a namespace's handle. */
#define EGRESS_APPLY_NETNS_DIRECTORY "/run/netns"

enum { EGRESS_NETNS_NAME_MAX = 255 };

typedef struct egress_applier {
    int home; /* the agent's own network namespace, entered again after every visit */
    char directory[128];
} egress_applier_t;

/* What is enforced in one namespace, to skip a transaction that would change nothing. */
typedef struct egress_applied {
    bool active;  /* our table is there (as far as we know) */
    dev_t device; /* which namespace the name led to: a recreated one has another inode */
    ino_t inode;
    char *script; /* the transaction last committed; NULL when none */
    uint32_t generation; /* the namespace's ruleset generation right after our commit */
} egress_applied_t;

typedef enum egress_apply_result {
    EGRESS_APPLY_FAILED = -1,   /* error says why; nothing changed in the namespace */
    EGRESS_APPLY_UNCHANGED = 0, /* the same script is in force already */
    EGRESS_APPLY_DONE = 1,      /* committed */
} egress_apply_result_t;

/* Remembers the calling process's network namespace; returns 0, or -1 with error. */
int egress_applier_init(egress_applier_t *applier, const char *directory, char *error,
                        size_t error_size);

/* Closes what the applier holds. */
void egress_applier_free(egress_applier_t *applier);

/* True when name[0..length) can name a namespace handle: 1 to 255 bytes, printable, no "/", not
 * "." or "..". */
bool egress_netns_name_valid(const char *name, size_t length);

/* Makes namespace netns enforce policy (with intercept, or NULL, as egress_ruleset_compile takes
 * it): enters it, finds its uplinks, compiles, and commits the script as one transaction unless
 * *applied shows it in force already (same namespace, same script); *milliseconds is the time
 * spent. On DONE *applied describes the new state. */
egress_apply_result_t egress_apply_policy(egress_applier_t *applier, const char *netns,
                                          const egress_policy_t *policy,
                                          const egress_intercept_ports_t *intercept,
                                          egress_applied_t *applied, double *milliseconds,
                                          char *error, size_t error_size);

/* Which namespace netns names now (its handle's device and inode); returns 0, or -1 with errno
 * set. */
int egress_netns_identity(const egress_applier_t *applier, const char *netns, dev_t *device,
                          ino_t *inode);

/* Creates a socket (non-blocking, close-on-exec) inside namespace netns: it stays there, though
 * the agent goes home at once. *device and *inode (unless NULL) identify the namespace. Returns
 * the descriptor, or -1 with errno set. */
int egress_netns_socket(const egress_applier_t *applier, const char *netns, int domain, int type,
                        dev_t *device, ino_t *inode);

/* Removes our table from namespace netns and clears *applied; a namespace that no longer exists
 * has nothing to remove. Returns 0, or -1 with error. */
int egress_apply_remove(egress_applier_t *applier, const char *netns, egress_applied_t *applied,
                        char *error, size_t error_size);

/* Frees what *applied holds and clears it. */
void egress_applied_clear(egress_applied_t *applied);

#endif
