/* PROXY protocol v1 and v2 (HAProxy's spec): the real client address from a load balancer. */
#ifndef SGW_GATEWAY_PROXY_PROTOCOL_H
#define SGW_GATEWAY_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header accepted: v1's is at most 107 bytes; v2's is 16 plus
 * addresses and TLVs, which real load balancers keep well under this. */
enum { GW_PROXY_HEADER_MAX = 4096 };

typedef enum gw_proxy_status {
    GW_PROXY_NEED_MORE, /* a valid beginning: read more */
    GW_PROXY_DONE,      /* *header is filled */
    GW_PROXY_INVALID,   /* not a PROXY header: close the connection */
} gw_proxy_status_t;

typedef struct gw_proxy_header {
    size_t length;  /* bytes the header took */
    bool local;     /* LOCAL command or UNKNOWN family: keep the connection's own address */
    struct sockaddr_storage source;
    socklen_t source_length;
    bool ssl;       /* v2 PP2_TYPE_SSL TLV: the client connected to the balancer over TLS */
} gw_proxy_header_t;

/* Parses the start of a connection's bytes. */
gw_proxy_status_t gw_proxy_protocol_parse(const uint8_t *data, size_t length,
                                          gw_proxy_header_t *header);

#endif
