/* Where a route record may point: refused ranges, upstream_deny, and the gateway's own sockets. */
#ifndef SGW_ROUTING_ADDRESS_H
#define SGW_ROUTING_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "util/cidr.h"

typedef enum route_address_verdict {
    ROUTE_ADDRESS_ALLOWED = 0,
    ROUTE_ADDRESS_REFUSED, /* 502 The sandbox address is not allowed */
    ROUTE_ADDRESS_LOOP,    /* 508 Loop detected: one of the gateway's own sockets */
} route_address_verdict_t;

/* One address (no port) of a family, as cidr_contains takes it. */
typedef struct route_address {
    int family;
    unsigned char bytes[16];
} route_address_t;

/* A socket of the gateway's own: a listener or the admin endpoint. */
typedef struct route_own_socket {
    route_address_t address;
    unsigned short port;
    bool wildcard; /* bound to 0.0.0.0 or [::]: every local address */
} route_own_socket_t;

typedef struct route_address_policy {
    const cidr_t *deny; /* upstream_deny, borrowed */
    size_t deny_count;
    route_own_socket_t *own;
    size_t own_count;
    route_address_t *local; /* the host's interface addresses, read when a socket is a wildcard */
    size_t local_count;
} route_address_policy_t;

/* Prepares policy with the blocks of upstream_deny (borrowed: they must
 * outlive it) and no own sockets. Allocates nothing. */
void route_address_policy_init(route_address_policy_t *policy, const cidr_t *deny,
                               size_t deny_count);

/* Adds one of the gateway's listening sockets (an address with its port); a
 * wildcard one reads the host's interface addresses once. Returns 0, or -1
 * when memory is exhausted. */
int route_address_policy_add_own(route_address_policy_t *policy, const struct sockaddr *address);

/* Frees what the policy owns. Idempotent. */
void route_address_policy_free(route_address_policy_t *policy);

/* The verdict on dialling address (with its port set), DESIGN "The catalog":
 * never unspecified, multicast, link-local, IPv4-mapped, NAT64, 6to4 or a
 * cloud metadata address, nothing in upstream_deny, and never a socket of the
 * gateway's own (a loopback or own address with a listener's port). It is
 * route_address_refused, then route_address_is_own. */
route_address_verdict_t route_address_check(const route_address_policy_t *policy,
                                            const struct sockaddr *address);

/* True if address (its port aside) lies in a refused range or in upstream_deny:
 * what a record's address alone decides, so a caller may remember it. */
bool route_address_refused(const route_address_policy_t *policy, const struct sockaddr *address);

/* True if address with its port is one of the gateway's own sockets. */
bool route_address_is_own(const route_address_policy_t *policy, const struct sockaddr *address);

#endif
