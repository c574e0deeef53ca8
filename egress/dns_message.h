/* The wire format of the agent's DNS responder: a sandbox's query read, its answer written. */
#ifndef SGW_EGRESS_DNS_MESSAGE_H
#define SGW_EGRESS_DNS_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    /* RFC 1035 §3.1: a name is at most 255 bytes on the wire, so 253 written with dots. */
    EGRESS_DNS_NAME_MAX = 253,
    EGRESS_DNS_NAME_WIRE_MAX = 255,
    /* The question as it is echoed: the name, QTYPE and QCLASS (RFC 1035 §4.1.2). */
    EGRESS_DNS_QUESTION_MAX = EGRESS_DNS_NAME_WIRE_MAX + 4,
    EGRESS_DNS_HEADER_SIZE = 12,
    /* RFC 1035 §4.2.1: a UDP message without EDNS is at most 512 bytes. */
    EGRESS_DNS_UDP_MAX = 512,
    /* RFC 6891 §6.2.5: the payload size the responder offers, and the most it sends over UDP:
     * 1232 bytes and their headers fit IPv6's minimum MTU, so no answer is fragmented (the DNS
     * Flag Day 2020 value). */
    EGRESS_DNS_EDNS_UDP_MAX = 1232,
    /* RFC 7766 §8: a TCP message is prefixed by its length in two bytes. */
    EGRESS_DNS_TCP_MAX = 65535,
    /* The most addresses a caller passes for one name: 16 AAAA records under the longest
     * question take 730 bytes, within 1232. */
    EGRESS_DNS_ADDRESSES_MAX = 16,
};

/* RFC 1035 §3.2.2 and §3.2.4, RFC 3596 §2.1. */
enum { EGRESS_DNS_TYPE_A = 1, EGRESS_DNS_TYPE_AAAA = 28, EGRESS_DNS_CLASS_IN = 1 };

/* RFC 1035 §4.1.1 and RFC 6891 §9; values above 15 need an OPT record to carry their high bits. */
typedef enum egress_dns_rcode {
    EGRESS_DNS_RCODE_NOERROR = 0,
    EGRESS_DNS_RCODE_FORMERR = 1,
    EGRESS_DNS_RCODE_SERVFAIL = 2,
    EGRESS_DNS_RCODE_NXDOMAIN = 3,
    EGRESS_DNS_RCODE_NOTIMP = 4,
    EGRESS_DNS_RCODE_REFUSED = 5,
    EGRESS_DNS_RCODE_BADVERS = 16,
} egress_dns_rcode_t;

typedef enum egress_dns_parse_result {
    EGRESS_DNS_PARSE_QUERY, /* one question read: answer it with egress_dns_write_response */
    EGRESS_DNS_PARSE_ERROR, /* the header was readable but the message is not a query taken here:
                               answer with egress_dns_write_error and the rcode given */
    EGRESS_DNS_PARSE_DROP,  /* shorter than a header, or a response (QR set): send nothing */
} egress_dns_parse_result_t;

/* A query as read. The question is copied, so the query outlives the message it came in while
 * the caller resolves the name. */
typedef struct egress_dns_query {
    uint16_t id;
    uint8_t opcode; /* 0 (QUERY) for a query to answer */
    bool recursion_desired;
    bool edns;           /* an OPT record came in the additional section (RFC 6891 §6.1.1) */
    bool edns_dnssec_ok; /* its DO bit, copied into the answer's OPT (RFC 3225 §3) */
    uint16_t udp_limit;  /* the most a UDP answer may hold: 512 without EDNS, else the requestor's
                            payload size clamped to 512..EGRESS_DNS_EDNS_UDP_MAX */
    uint16_t type;       /* QTYPE, any value: the caller decides what to answer */
    uint16_t class_;     /* QCLASS, any value: the caller decides what to answer */
    bool name_valid;     /* every label is of [A-Za-z0-9_-]; else name is "" (answer NXDOMAIN) */
    char name[EGRESS_DNS_NAME_MAX + 1]; /* dotted, lower-cased, no trailing dot ("" for the root) */
    size_t name_length;
    uint8_t question[EGRESS_DNS_QUESTION_MAX]; /* the question's wire bytes, echoed in answers */
    size_t question_length;
} egress_dns_query_t;

/* Reads a query (UDP payload, or a TCP message without its length prefix). Returns QUERY with
 * query filled; ERROR with *rcode (FORMERR, NOTIMP or BADVERS) and, for the error answer, query's
 * id, opcode, recursion_desired and, when an OPT record was found, edns fields; or DROP. */
egress_dns_parse_result_t egress_dns_parse_query(const uint8_t *message, size_t length,
                                                 egress_dns_query_t *query,
                                                 egress_dns_rcode_t *rcode);

/* Writes the answer to query into out: rcode, and for an A or AAAA query one record per address
 * (address_count addresses of 4 or 16 bytes, by query->type; ignored for other types) with TTL
 * ttl, owned by a pointer to the question, which is echoed as it came; QR and RA set, RD copied,
 * AA clear; an OPT record when the query had one (its DO bit copied). At most limit bytes
 * (query->udp_limit for UDP, EGRESS_DNS_TCP_MAX for TCP) and out_size: records that do not fit are
 * left out and TC is set. Returns the length, or 0 when the header, question and OPT record do not
 * fit, or rcode needs an OPT record the query did not have. */
size_t egress_dns_write_response(const egress_dns_query_t *query, egress_dns_rcode_t rcode,
                                 const uint8_t *addresses, size_t address_count, uint32_t ttl,
                                 size_t limit, uint8_t *out, size_t out_size);

/* Writes the answer to a message that egress_dns_parse_query refused with rcode: a header, and an
 * OPT record when the query had one or rcode is BADVERS. Returns the length, or 0 when out_size
 * is too small. */
size_t egress_dns_write_error(const egress_dns_query_t *query, egress_dns_rcode_t rcode,
                              uint8_t *out, size_t out_size);

#endif
