/* The name an intercepted TCP connection asks for: a ClientHello's SNI or an HTTP/1.x Host. */
#ifndef SGW_EGRESS_SNIFF_H
#define SGW_EGRESS_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    /* What the agent reads of a connection before it gives up: a ClientHello or request head
     * must be complete within these first bytes. */
    EGRESS_SNIFF_BYTES_MAX = 16384,
    /* RFC 1035 §2.3.4: 255 bytes on the wire, 253 written out without the trailing dot. */
    EGRESS_SNIFF_NAME_MAX = 253,
};

typedef enum egress_sniff_result {
    EGRESS_SNIFF_MORE,      /* incomplete, and a whole message still fits the first
                               EGRESS_SNIFF_BYTES_MAX bytes: call again with more */
    EGRESS_SNIFF_NAME,      /* *name holds the name, lower-cased, without a trailing dot or :port */
    EGRESS_SNIFF_NO_NAME,   /* well-formed but names nothing: a ClientHello without server_name,
                               HTTP without Host or with an IP literal (or empty) as Host */
    EGRESS_SNIFF_MALFORMED, /* not a ClientHello / HTTP/1.x request head, broken, ambiguous, or
                               longer than EGRESS_SNIFF_BYTES_MAX */
} egress_sniff_result_t;

/* A hostname as egress_sniff_hostname normalises it: NUL-terminated, length bytes. */
typedef struct egress_sniff_name {
    char text[EGRESS_SNIFF_NAME_MAX + 1];
    size_t length;
} egress_sniff_name_t;

/* Reads the server_name of the TLS ClientHello at the start of data (length bytes, the whole of
 * what the client sent so far; records after the ClientHello's are not read). Stateless: call it
 * again on the longer buffer when more arrives. An SNI that is no valid hostname (an IP literal
 * included, RFC 6066 §3) is MALFORMED. Fills *name only for NAME. */
egress_sniff_result_t egress_sniff_tls(const uint8_t *data, size_t length,
                                       egress_sniff_name_t *name);

/* Reads the Host of the HTTP/1.x request head at the start of data (length bytes, as
 * egress_sniff_tls); a body and later requests are not read. An absolute-form target names the
 * host and must agree with Host. Fills *name only for NAME. */
egress_sniff_result_t egress_sniff_http(const uint8_t *data, size_t length,
                                        egress_sniff_name_t *name);

/* Normalises text (length bytes, any case, one trailing dot allowed) into name and returns true
 * when it is a hostname: 1 to 253 bytes, labels of 1 to 63 of [a-z0-9-] neither starting nor
 * ending with '-', and a last label that is no number (all digits, or "0x" and hex digits, as
 * the WHATWG URL standard reads an IPv4 address). False leaves name empty. text may be
 * name->text. */
bool egress_sniff_hostname(const char *text, size_t length, egress_sniff_name_t *name);

/* "more", "name", "no name" or "malformed", for log lines. */
const char *egress_sniff_result_name(egress_sniff_result_t result);

#endif
