/* A request's routing decision from its sandbox's record: where it goes, or why not. */
#ifndef SGW_ROUTING_DECISION_H
#define SGW_ROUTING_DECISION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "routing/address.h"
#include "routing/record.h"
#include "util/arena.h"

typedef struct route_decision {
    int status;          /* 0: proxy the request; else answer it with this status */
    const char *message; /* why, when status is not 0 */
    /* the record's address with the request's port (IPv4 or IPv6 only: a record
     * holds nothing else, and a connection keeps this while it lives) */
    union {
        struct sockaddr any;
        struct sockaddr_in ipv4;
        struct sockaddr_in6 ipv6;
    } address;
    socklen_t address_length;
    char *pool_key; /* in the arena: the record's lifetime fields whole, and the port */
    size_t pool_key_length;
    char *host; /* the expanded mask_request_host in the arena, or NULL: the client's Host */
    size_t host_length;
} route_decision_t;

/* Decides for a request to port of record (token: the e2b-traffic-access-token
 * sent, or NULL; cookie_admits: without a token, a valid access cookie the
 * caller checked stands for it): a refused address is 502 and the gateway's
 * own socket 508 (DESIGN "The catalog"), a private sandbox without the right
 * token 403 (DESIGN "Auth"), a mask that does not expand 502; otherwise fills
 * the address, pool key and Host of the sandbox. Returns 0, or -1 when memory
 * is exhausted. */
int route_decide(route_record_t *record, uint16_t port, const route_address_policy_t *policy,
                 const char *token, size_t token_length, bool cookie_admits, arena_t *arena,
                 route_decision_t *decision);

#endif
