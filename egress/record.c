/* A sandbox's catalog record as the node agent reads it: the namespace to filter and the policy. */
#include "egress/record.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "egress/apply.h"

/* The fields of a record that the agent reads; values point into the reply. */
typedef struct egress_record_fields {
    egress_field_t netns;
    egress_field_t internet_access;
    egress_field_t deny_out;
    egress_field_t allow_out;
} egress_record_fields_t;

/* Picks the agent's fields out of an HGETALL reply; returns false when the key is not a hash. */
static bool egress_record_fields(const redisReply *reply, egress_record_fields_t *fields) {
    memset(fields, 0, sizeof(*fields));
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0)
        return false;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *name = reply->element[i];
        const redisReply *value = reply->element[i + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        egress_field_t field = {value->str, (size_t)value->len};
        if (strcmp(name->str, "netns") == 0)
            fields->netns = field;
        else if (strcmp(name->str, "allow_internet_access") == 0)
            fields->internet_access = field;
        else if (strcmp(name->str, "deny_out") == 0)
            fields->deny_out = field;
        else if (strcmp(name->str, "allow_out") == 0)
            fields->allow_out = field;
    }
    return true;
}

int egress_record_read(const redisReply *reply, egress_field_t *netns, egress_policy_t *policy,
                       char *error, size_t error_size) {
    netns->value = NULL;
    netns->length = 0;
    egress_record_fields_t fields;
    if (!egress_record_fields(reply, &fields)) {
        snprintf(error, error_size, "the key is not a hash");
        return -1;
    }
    if (fields.netns.value == NULL) {
        snprintf(error, error_size, "no netns field");
        return -1;
    }
    if (!egress_netns_name_valid(fields.netns.value, fields.netns.length)) {
        snprintf(error, error_size,
                 "netns is not a namespace name (1 to 255 printable bytes, no \"/\")");
        return -1;
    }
    *netns = fields.netns;
    return egress_policy_parse(policy, fields.internet_access, fields.deny_out, fields.allow_out,
                               error, error_size);
}
