/* CIDR blocks of IPv4 and IPv6 addresses: parsing and membership (gateway and egress). */
#include "util/cidr.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

/* The longest "ADDR": an IPv6 literal with an embedded IPv4 (45 bytes). */
enum { CIDR_ADDRESS_TEXT_MAX = 63 };

unsigned cidr_family_width(int family) { return family == AF_INET6 ? 16 : 4; }

cidr_status_t cidr_parse(const char *text, cidr_t *block) {
    memset(block, 0, sizeof(*block));
    const char *slash = strchr(text, '/');
    size_t address_length = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (address_length > CIDR_ADDRESS_TEXT_MAX)
        return CIDR_BAD_ADDRESS;
    char address_text[CIDR_ADDRESS_TEXT_MAX + 1];
    memcpy(address_text, text, address_length);
    address_text[address_length] = '\0';
    block->family = strchr(address_text, ':') != NULL ? AF_INET6 : AF_INET;
    if (inet_pton(block->family, address_text, block->address) != 1)
        return CIDR_BAD_ADDRESS;

    unsigned bits = cidr_family_width(block->family) * 8;
    block->prefix = bits;
    if (slash != NULL) {
        const char *digits = slash + 1;
        size_t digit_count = strspn(digits, "0123456789");
        if (digit_count == 0 || digit_count > 3 || digits[digit_count] != '\0')
            return CIDR_BAD_PREFIX;
        unsigned prefix = 0;
        for (size_t i = 0; i < digit_count; i++)
            prefix = prefix * 10 + (unsigned)(digits[i] - '0');
        if (prefix > bits)
            return CIDR_PREFIX_RANGE;
        block->prefix = prefix;
    }
    bool host_bits = false;
    for (unsigned bit = block->prefix; bit < bits; bit++) {
        uint8_t mask = (uint8_t)(0x80u >> (bit % 8));
        if (block->address[bit / 8] & mask)
            host_bits = true;
        block->address[bit / 8] &= (uint8_t)~mask;
    }
    return host_bits ? CIDR_HOST_BITS : CIDR_OK;
}

bool cidr_contains(const cidr_t *block, int family, const uint8_t *address) {
    if (block->family != family)
        return false;
    unsigned whole = block->prefix / 8;
    if (memcmp(block->address, address, whole) != 0)
        return false;
    unsigned rest = block->prefix % 8;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (block->address[whole] & mask) == (address[whole] & mask);
}
