/* Hostname routing: "<port>-<sandboxID>[-ignored].<domain>" into a port and a sandbox ID. */
#ifndef SGW_ROUTING_HOST_H
#define SGW_ROUTING_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { ROUTE_SANDBOX_ID_MAX = 63 };

typedef enum route_host_status {
    ROUTE_HOST_OK = 0,
    ROUTE_HOST_FOREIGN_DOMAIN, /* 421 Misdirected request */
    ROUTE_HOST_INVALID_HOST,   /* 400 Invalid host */
    ROUTE_HOST_INVALID_PORT,   /* 400 Invalid sandbox port */
    ROUTE_HOST_INVALID_ID,     /* 400 Invalid sandbox ID */
    ROUTE_HOST_MISSING_ID,     /* 400 Missing header E2b-Sandbox-Id (shared host) */
    ROUTE_HOST_MISSING_PORT,   /* 400 Missing header E2b-Sandbox-Port (shared host) */
} route_host_status_t;

typedef struct route_target {
    uint16_t port;
    char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
} route_target_t;

/* Routes an authority (Host value or absolute-form authority, not NUL-terminated)
 * against domains (lower-case, no dots at either end). Lower-cases it, drops a
 * trailing dot and a ":port", picks the longest matching domain. Returns
 * ROUTE_HOST_OK and fills target, or the reason it cannot be routed. */
route_host_status_t route_parse_host(const char *authority, size_t length,
                                     char *const *domains, size_t domain_count,
                                     route_target_t *target);

/* The routing fields of a request to the shared host: E2b-Sandbox-Id and
 * E2b-Sandbox-Port, the first of each (not NUL-terminated) and how many. */
typedef struct route_shared_fields {
    const char *id;
    size_t id_length;
    unsigned id_count;
    const char *port;
    size_t port_length;
    unsigned port_count;
} route_shared_fields_t;

/* True if the authority names the shared host (DESIGN "Shared host"):
 * "sandbox.<domain>" for a configured domain, "localhost" or an IP literal,
 * with or without a ":port" and a trailing dot. */
bool route_host_is_shared(const char *authority, size_t length, char *const *domains,
                          size_t domain_count);

/* Routes a request to the shared host by its fields: missing ID or port, or
 * either twice or bad, is the status of its 400. */
route_host_status_t route_parse_shared(const route_shared_fields_t *fields,
                                       route_target_t *target);

/* The 400 message of a status ("Invalid host", ...), or NULL for OK and 421. */
const char *route_host_status_message(route_host_status_t status);

#endif
