/* PROXY protocol v1 and v2 (HAProxy's spec): the real client address from a load balancer. */
#include "gateway/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t gw_proxy_v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char gw_proxy_v1_prefix[] = "PROXY ";
enum { GW_PROXY_V1_MAX = 107, GW_PROXY_V2_FIXED = 16 };
enum { GW_PP2_TYPE_SSL = 0x20, GW_PP2_CLIENT_SSL = 0x01 };

/* Parses a decimal port 0..65535 without sign or leading zeros (spec §2.1). */
static int gw_proxy_parse_port(const char *text, uint16_t *port) {
    size_t length = strlen(text);
    if (length == 0 || length > 5 || (length > 1 && text[0] == '0'))
        return -1;
    unsigned value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        value = value * 10 + (unsigned)(text[i] - '0');
    }
    if (value > 65535)
        return -1;
    *port = (uint16_t)value;
    return 0;
}

/* "PROXY TCP4 src dst sport dport\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN ...\r\n". */
static gw_proxy_status_t gw_proxy_parse_v1(const uint8_t *data, size_t length,
                                           gw_proxy_header_t *header) {
    const uint8_t *end = memchr(data, '\n', length < GW_PROXY_V1_MAX ? length : GW_PROXY_V1_MAX);
    if (end == NULL)
        return length >= GW_PROXY_V1_MAX ? GW_PROXY_INVALID : GW_PROXY_NEED_MORE;
    size_t line_length = (size_t)(end - data) + 1;
    if (line_length < 2 || end[-1] != '\r')
        return GW_PROXY_INVALID;
    char line[GW_PROXY_V1_MAX + 1];
    memcpy(line, data, line_length - 2);
    line[line_length - 2] = '\0';
    header->length = line_length;
    char *fields[7];
    size_t count = 0;
    char *save = NULL;
    for (char *field = strtok_r(line, " ", &save); field != NULL && count < 7;
         field = strtok_r(NULL, " ", &save))
        fields[count++] = field;
    if (count >= 2 && strcmp(fields[1], "UNKNOWN") == 0) {
        header->local = true;
        return GW_PROXY_DONE;
    }
    if (count != 6)
        return GW_PROXY_INVALID;
    uint16_t source_port, destination_port;
    if (gw_proxy_parse_port(fields[4], &source_port) < 0 ||
        gw_proxy_parse_port(fields[5], &destination_port) < 0)
        return GW_PROXY_INVALID;
    if (strcmp(fields[1], "TCP4") == 0) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&header->source;
        struct in_addr destination;
        if (inet_pton(AF_INET, fields[2], &v4->sin_addr) != 1 ||
            inet_pton(AF_INET, fields[3], &destination) != 1)
            return GW_PROXY_INVALID;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(source_port);
        header->source_length = sizeof(*v4);
        return GW_PROXY_DONE;
    }
    if (strcmp(fields[1], "TCP6") == 0) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&header->source;
        struct in6_addr destination;
        if (inet_pton(AF_INET6, fields[2], &v6->sin6_addr) != 1 ||
            inet_pton(AF_INET6, fields[3], &destination) != 1)
            return GW_PROXY_INVALID;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(source_port);
        header->source_length = sizeof(*v6);
        return GW_PROXY_DONE;
    }
    return GW_PROXY_INVALID;
}

/* Walks the TLVs after the addresses for PP2_TYPE_SSL (spec §2.2.5). */
static gw_proxy_status_t gw_proxy_parse_tlvs(const uint8_t *tlv, size_t length,
                                             gw_proxy_header_t *header) {
    while (length > 0) {
        if (length < 3)
            return GW_PROXY_INVALID;
        size_t value_length = ((size_t)tlv[1] << 8) | tlv[2];
        if (value_length > length - 3)
            return GW_PROXY_INVALID;
        if (tlv[0] == GW_PP2_TYPE_SSL && value_length >= 1 && (tlv[3] & GW_PP2_CLIENT_SSL))
            header->ssl = true;
        tlv += 3 + value_length;
        length -= 3 + value_length;
    }
    return GW_PROXY_DONE;
}

static gw_proxy_status_t gw_proxy_parse_v2(const uint8_t *data, size_t length,
                                           gw_proxy_header_t *header) {
    if (length < GW_PROXY_V2_FIXED)
        return GW_PROXY_NEED_MORE;
    uint8_t version_command = data[12];
    uint8_t family = data[13];
    size_t payload = ((size_t)data[14] << 8) | data[15];
    if ((version_command & 0xF0) != 0x20 || (version_command & 0x0F) > 1)
        return GW_PROXY_INVALID;
    if (GW_PROXY_V2_FIXED + payload > GW_PROXY_HEADER_MAX)
        return GW_PROXY_INVALID;
    if (length < GW_PROXY_V2_FIXED + payload)
        return GW_PROXY_NEED_MORE;
    header->length = GW_PROXY_V2_FIXED + payload;
    const uint8_t *body = data + GW_PROXY_V2_FIXED;
    if ((version_command & 0x0F) == 0) {
        /* LOCAL: the balancer's own connection (health checks). */
        header->local = true;
        return GW_PROXY_DONE;
    }
    size_t address_length;
    switch (family) {
    case 0x11: { /* TCP over IPv4 */
        address_length = 12;
        if (payload < address_length)
            return GW_PROXY_INVALID;
        struct sockaddr_in *v4 = (struct sockaddr_in *)&header->source;
        v4->sin_family = AF_INET;
        memcpy(&v4->sin_addr, body, 4);
        memcpy(&v4->sin_port, body + 8, 2);
        header->source_length = sizeof(*v4);
        break;
    }
    case 0x21: { /* TCP over IPv6 */
        address_length = 36;
        if (payload < address_length)
            return GW_PROXY_INVALID;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&header->source;
        v6->sin6_family = AF_INET6;
        memcpy(&v6->sin6_addr, body, 16);
        memcpy(&v6->sin6_port, body + 32, 2);
        header->source_length = sizeof(*v6);
        break;
    }
    case 0x00: /* UNSPEC: the receiver must ignore the addresses */
        header->local = true;
        return GW_PROXY_DONE;
    default: /* UDP and unix sockets do not carry HTTP here */
        return GW_PROXY_INVALID;
    }
    return gw_proxy_parse_tlvs(body + address_length, payload - address_length, header);
}

gw_proxy_status_t gw_proxy_protocol_parse(const uint8_t *data, size_t length,
                                          gw_proxy_header_t *header) {
    memset(header, 0, sizeof(*header));
    size_t compared = length < sizeof(gw_proxy_v2_signature) ? length : sizeof(gw_proxy_v2_signature);
    if (compared > 0 && memcmp(data, gw_proxy_v2_signature, compared) == 0)
        return compared < sizeof(gw_proxy_v2_signature) ? GW_PROXY_NEED_MORE
                                                         : gw_proxy_parse_v2(data, length, header);
    compared = length < sizeof(gw_proxy_v1_prefix) - 1 ? length : sizeof(gw_proxy_v1_prefix) - 1;
    if (compared > 0 && memcmp(data, gw_proxy_v1_prefix, compared) == 0)
        return compared < sizeof(gw_proxy_v1_prefix) - 1 ? GW_PROXY_NEED_MORE
                                                          : gw_proxy_parse_v1(data, length, header);
    return length == 0 ? GW_PROXY_NEED_MORE : GW_PROXY_INVALID;
}
