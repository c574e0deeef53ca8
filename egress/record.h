/* A sandbox's catalog record as the node agent reads it: the namespace to filter and the policy. */
#ifndef SGW_EGRESS_RECORD_H
#define SGW_EGRESS_RECORD_H

#include <stddef.h>

#include "egress/policy.h"

struct redisReply;

/* Reads reply, an HGETALL of a record (field, value, ...). The namespace is checked first:
 * without one nothing can be filtered. *netns is the netns field when it names a namespace
 * (pointing into reply, NUL-terminated there), else absent (value NULL). The policy fields are
 * parsed into policy, which egress_policy_init prepared. Returns 0, or -1 with why in error (the
 * key is not a hash, no netns, a bad netns, a bad policy); policy must be freed either way. */
int egress_record_read(const struct redisReply *reply, egress_field_t *netns,
                       egress_policy_t *policy, char *error, size_t error_size);

#endif
