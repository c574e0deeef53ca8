/* CIDR blocks of IPv4 and IPv6 addresses: parsing and membership (gateway and egress). */
#ifndef SGW_UTIL_CIDR_H
#define SGW_UTIL_CIDR_H

#include <stdbool.h>
#include <stdint.h>

/* One block: the network address (host bits clear) and its prefix length. */
typedef struct cidr {
    int family;          /* AF_INET or AF_INET6 */
    uint8_t address[16]; /* big-endian; IPv4 uses the first 4 bytes */
    unsigned prefix;     /* 0 to 32, or 0 to 128 */
} cidr_t;

typedef enum cidr_status {
    CIDR_OK = 0,
    CIDR_BAD_ADDRESS,  /* not an IPv4 or IPv6 literal */
    CIDR_BAD_PREFIX,   /* "/" not followed by 1 to 3 digits and nothing else */
    CIDR_PREFIX_RANGE, /* more bits than the family has */
    CIDR_HOST_BITS,    /* bits set past the prefix; *block still holds the network */
} cidr_status_t;

/* Parses "ADDR" (a block of one address) or "ADDR/LEN" (text NUL-terminated,
 * trimmed) into *block; returns CIDR_OK, or why not. */
cidr_status_t cidr_parse(const char *text, cidr_t *block);

/* The bytes of a family's address: 4 or 16. */
unsigned cidr_family_width(int family);

/* True if address (family, big-endian bytes) lies in block. */
bool cidr_contains(const cidr_t *block, int family, const uint8_t *address);

#endif
