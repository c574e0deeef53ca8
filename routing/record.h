/* The route record: one sandbox's catalog hash, parsed and validated. */
#ifndef SGW_ROUTING_RECORD_H
#define SGW_ROUTING_RECORD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "auth/token.h"
#include "routing/host.h"

typedef struct route_record {
    int references; /* records belong to one worker: no atomics needed */
    char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
    char *execution_id;              /* "" when absent */
    struct sockaddr_storage address; /* port 0; the request's port is set per dial */
    socklen_t address_length;
    char address_text[64];           /* the addr field as stored */
    bool allow_public_traffic;
    auth_secret_t secret;            /* used when !allow_public_traffic */
    char *mask_request_host;         /* NULL when absent */
    long max_connections;            /* 0: no limit */
    char *error;                     /* non-NULL: malformed (answered 502); why, for the log */
} route_record_t;

/* Builds a record from a catalog hash given as field/value pairs (not
 * NUL-terminated). Returns a record with one reference, or NULL when memory is
 * exhausted; a malformed hash gives a record whose error says what is wrong
 * (missing or bad addr, a mask with spaces/CR/LF, a bad token digest, a bad
 * max_connections or allow_public_traffic). */
route_record_t *route_record_parse(const char *sandbox_id, size_t field_count,
                                   const char *const *fields, const size_t *field_lengths,
                                   const char *const *values, const size_t *value_lengths);

/* Adds a reference; returns record. */
route_record_t *route_record_ref(route_record_t *record);

/* Drops a reference, freeing the record with the last. NULL is allowed. */
void route_record_unref(route_record_t *record);

#endif
