/* The route record: one sandbox's catalog hash, parsed and validated. */
#ifndef SGW_ROUTING_RECORD_H
#define SGW_ROUTING_RECORD_H

#include <netinet/in.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth/token.h"
#include "routing/host.h"
#include "util/slots.h"

typedef struct route_record {
    /* Every request reads the fields up to the address: they fill the
     * record's first cache line (the record is aligned to one), and the two
     * hints and the address fill the second. With thousands of sandboxes a
     * record is rarely in the cache, and each line read is a miss. The rest
     * is read for private sandboxes, for logs and once per record. */
    alignas(64) int references; /* records belong to one worker: no atomics needed */
    socklen_t address_length;
    bool allow_public_traffic;
    bool paused;        /* state paused (DESIGN "Auto-resume") */
    bool auto_resume;   /* a request may wake it (default true) */
    bool h2c_all_ports; /* h2c_ports "*" */
    /* What routing/address.c says of addr alone, remembered on first use: it
     * never changes for a record, so the ranges are not checked per request. */
    bool address_checked;
    bool address_refused;
    long max_connections;     /* 0: no limit */
    char *mask_request_host;  /* NULL when absent */
    size_t h2c_port_count;    /* of h2c_ports, read first */
    size_t public_port_count; /* of public_ports, read first */
    /* "<sandbox ID>\n<execution_id>\n<addr>\n": the upstream pool key without
     * the port, every field whole. No ID, address or port holds a '\n', so the
     * first and the last two newlines delimit the fields whatever execution_id
     * holds: no two lifetimes, addresses or ports share a key. NULL when
     * malformed. */
    char *pool_key_prefix;
    size_t pool_key_prefix_length;
    /* The gateway's, per worker like the record: where it last found this
     * sandbox's activity counters (gateway/activity.c) and the upstream
     * pool's slot of idle connections to one of its ports
     * (gateway/upstream.c), so that a request reaches them without hashing
     * and looking up its keys. Checked before use; all zero: none noted. */
    slot_hint_t activity_hint;
    slot_hint_t pool_hint;
    struct sockaddr_storage address; /* port 0; the request's port is set per dial */
    uint16_t *h2c_ports;             /* ports whose server speaks h2c (gRPC); NULL when none */
    uint16_t *public_ports;          /* ports that skip the token check; NULL when none */
    char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
    char *execution_id;    /* "" when absent */
    char address_text[64]; /* the addr field as stored */
    auth_secret_t secret;  /* used when !allow_public_traffic */
    char *error;           /* non-NULL: malformed (answered 502); why, for the log */
} route_record_t;

/* The fields the gateway reads from a catalog hash, in the order
 * route_record_parse_fields takes their values (the catalog's HMGET order). */
enum { ROUTE_RECORD_FIELD_COUNT = 11 };
extern const char *const route_record_fields[ROUTE_RECORD_FIELD_COUNT];

/* The most bytes those fields may hold together: a valid record is far
 * smaller, and a larger one is malformed (DESIGN "The catalog": 64 KiB). */
enum { ROUTE_RECORD_BYTES_MAX = 64 * 1024 };

/* One field's value as Redis returns it. */
typedef struct route_record_value {
    const char *text; /* not NUL-terminated; NULL when the field is absent, or unread */
    size_t length;    /* with text NULL: 0 when absent, or the length of a value too long to read */
} route_record_value_t;

/* Builds a record from the values of route_record_fields, in that order.
 * Returns a record with one reference, or NULL when memory is exhausted; a
 * malformed hash gives a record whose error says what is wrong (missing or
 * bad addr, a mask with spaces/CR/LF, a bad token digest, a bad
 * max_connections or allow_public_traffic, over ROUTE_RECORD_BYTES_MAX). */
route_record_t *route_record_parse_fields(const char *sandbox_id,
                                          const route_record_value_t *values);

/* As route_record_parse_fields, from a hash given as field/value pairs (not
 * NUL-terminated); fields the gateway does not read are skipped. */
route_record_t *route_record_parse(const char *sandbox_id, size_t field_count,
                                   const char *const *fields, const size_t *field_lengths,
                                   const char *const *values, const size_t *value_lengths);

/* True if port is in the record's public_ports. */
bool route_record_port_public(const route_record_t *record, uint16_t port);

/* True if port is in the record's h2c_ports (or they are "*"). */
bool route_record_port_h2c(const route_record_t *record, uint16_t port);

/* Adds a reference; returns record. */
route_record_t *route_record_ref(route_record_t *record);

/* Drops a reference, freeing the record with the last. NULL is allowed. */
void route_record_unref(route_record_t *record);

#endif
