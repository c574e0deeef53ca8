/* Where a route record may point: refused ranges, upstream_deny, and the gateway's own sockets. */
#include "routing/address.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Ranges no sandbox address lies in (DESIGN "The catalog"). A record that
 * names one is either wrong or an attempt to reach what the gateway can:
 * the metadata service, the host itself through a mapped form, a relay. */
static const char *const route_address_refused_text[] = {
    "0.0.0.0/8",          /* "this network"; 0.0.0.0 reaches the host itself */
    "169.254.0.0/16",     /* link-local: cloud metadata (169.254.169.254) */
    "224.0.0.0/4",        /* multicast */
    "100.100.100.200/32", /* Alibaba Cloud metadata */
    "::/128",             /* unspecified */
    "::ffff:0:0/96",      /* IPv4-mapped: write the IPv4 form, which is checked as such */
    "64:ff9b::/96",       /* NAT64 */
    "2002::/16",          /* 6to4 */
    "fe80::/10",          /* link-local */
    "ff00::/8",           /* multicast */
    "fd00:ec2::254/128",  /* AWS metadata over IPv6 */
};
enum { ROUTE_ADDRESS_REFUSED_COUNT = sizeof(route_address_refused_text) / sizeof(char *) };

static cidr_t route_address_refused_ranges[ROUTE_ADDRESS_REFUSED_COUNT];
static pthread_once_t route_address_refused_once = PTHREAD_ONCE_INIT;

/* Parses the table (every entry is valid). */
static void route_address_refused_parse(void) {
    for (size_t i = 0; i < ROUTE_ADDRESS_REFUSED_COUNT; i++)
        cidr_parse(route_address_refused_text[i], &route_address_refused_ranges[i]);
}

/* Splits a socket address into its address and port; false for other families. */
static bool route_address_split(const struct sockaddr *socket_address, route_address_t *address,
                                unsigned short *port) {
    memset(address, 0, sizeof(*address));
    if (socket_address->sa_family == AF_INET) {
        const struct sockaddr_in *ipv4 = (const struct sockaddr_in *)socket_address;
        address->family = AF_INET;
        memcpy(address->bytes, &ipv4->sin_addr, 4);
        *port = ntohs(ipv4->sin_port);
        return true;
    }
    if (socket_address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *ipv6 = (const struct sockaddr_in6 *)socket_address;
        address->family = AF_INET6;
        memcpy(address->bytes, &ipv6->sin6_addr, 16);
        *port = ntohs(ipv6->sin6_port);
        return true;
    }
    return false;
}

static bool route_address_equal(const route_address_t *left, const route_address_t *right) {
    return left->family == right->family &&
           memcmp(left->bytes, right->bytes, cidr_family_width(left->family)) == 0;
}

static bool route_address_is_loopback(const route_address_t *address) {
    static const unsigned char ipv6_loopback[16] = {[15] = 1};
    if (address->family == AF_INET)
        return address->bytes[0] == 127;
    return memcmp(address->bytes, ipv6_loopback, 16) == 0;
}

static bool route_address_is_wildcard(const route_address_t *address) {
    static const unsigned char zero[16];
    return memcmp(address->bytes, zero, cidr_family_width(address->family)) == 0;
}

void route_address_policy_init(route_address_policy_t *policy, const cidr_t *deny,
                               size_t deny_count) {
    pthread_once(&route_address_refused_once, route_address_refused_parse);
    memset(policy, 0, sizeof(*policy));
    policy->deny = deny;
    policy->deny_count = deny_count;
}

/* Reads the host's interface addresses into policy->local; returns 0 or -1. */
static int route_address_read_local(route_address_policy_t *policy) {
    struct ifaddrs *interfaces;
    if (getifaddrs(&interfaces) != 0)
        return 0; /* nothing known: loopback and Via still catch loops */
    size_t count = 0;
    for (struct ifaddrs *entry = interfaces; entry != NULL; entry = entry->ifa_next)
        count++;
    policy->local = calloc(count > 0 ? count : 1, sizeof(*policy->local));
    if (policy->local == NULL) {
        freeifaddrs(interfaces);
        return -1;
    }
    for (struct ifaddrs *entry = interfaces; entry != NULL; entry = entry->ifa_next) {
        unsigned short ignored;
        if (entry->ifa_addr != NULL &&
            route_address_split(entry->ifa_addr, &policy->local[policy->local_count], &ignored))
            policy->local_count++;
    }
    freeifaddrs(interfaces);
    return 0;
}

int route_address_policy_add_own(route_address_policy_t *policy, const struct sockaddr *address) {
    route_own_socket_t own;
    if (!route_address_split(address, &own.address, &own.port))
        return 0;
    own.wildcard = route_address_is_wildcard(&own.address);
    if (own.wildcard && policy->local == NULL && route_address_read_local(policy) != 0)
        return -1;
    route_own_socket_t *grown = realloc(policy->own, (policy->own_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    policy->own = grown;
    policy->own[policy->own_count++] = own;
    return 0;
}

void route_address_policy_free(route_address_policy_t *policy) {
    free(policy->own);
    policy->own = NULL;
    policy->own_count = 0;
    free(policy->local);
    policy->local = NULL;
    policy->local_count = 0;
}

/* True if address:port is one of the gateway's own sockets. */
static bool route_address_is_own_socket(const route_address_policy_t *policy,
                                        const route_address_t *address, unsigned short port) {
    for (size_t i = 0; i < policy->own_count; i++) {
        const route_own_socket_t *own = &policy->own[i];
        if (own->port != port)
            continue;
        if (route_address_is_loopback(address) || route_address_equal(address, &own->address))
            return true;
        if (!own->wildcard)
            continue;
        for (size_t j = 0; j < policy->local_count; j++) {
            if (route_address_equal(address, &policy->local[j]))
                return true;
        }
    }
    return false;
}

bool route_address_refused(const route_address_policy_t *policy,
                           const struct sockaddr *socket_address) {
    route_address_t address;
    unsigned short port;
    if (!route_address_split(socket_address, &address, &port))
        return true;
    for (size_t i = 0; i < ROUTE_ADDRESS_REFUSED_COUNT; i++) {
        if (cidr_contains(&route_address_refused_ranges[i], address.family, address.bytes))
            return true;
    }
    for (size_t i = 0; i < policy->deny_count; i++) {
        if (cidr_contains(&policy->deny[i], address.family, address.bytes))
            return true;
    }
    return false;
}

bool route_address_is_own(const route_address_policy_t *policy,
                          const struct sockaddr *socket_address) {
    route_address_t address;
    unsigned short port;
    return route_address_split(socket_address, &address, &port) &&
           route_address_is_own_socket(policy, &address, port);
}

route_address_verdict_t route_address_check(const route_address_policy_t *policy,
                                            const struct sockaddr *address) {
    if (route_address_refused(policy, address))
        return ROUTE_ADDRESS_REFUSED;
    return route_address_is_own(policy, address) ? ROUTE_ADDRESS_LOOP : ROUTE_ADDRESS_ALLOWED;
}
