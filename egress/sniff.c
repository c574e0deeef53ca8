/* The name an intercepted TCP connection asks for: a ClientHello's SNI or an HTTP/1.x Host. */
#include "egress/sniff.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

enum {
    EGRESS_SNIFF_LABEL_MAX = 63, /* RFC 1035 §2.3.4 */
    EGRESS_SNIFF_PORT_DIGITS_MAX = 5,
    EGRESS_SNIFF_PORT_MAX = 65535,
};

/* ---- hostnames ---- */

/* ASCII only: the C library's tolower() follows the locale. */
static char egress_sniff_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool egress_sniff_is_digit(char c) { return c >= '0' && c <= '9'; }

static bool egress_sniff_is_hex_digit(char c) {
    return egress_sniff_is_digit(c) || (c >= 'a' && c <= 'f');
}

/* True if a lower-cased label reads as a number where a URL parser expects an IPv4 address
 * (WHATWG URL standard, "ends in a number"): all digits, or "0x" and hex digits, so that
 * "example.123" or "0x7f.1" is never taken for a name that getaddrinfo() would read as an
 * address. */
static bool egress_sniff_label_is_number(const char *label, size_t length) {
    bool hex = length >= 2 && label[0] == '0' && label[1] == 'x';
    for (size_t i = hex ? 2 : 0; i < length; i++) {
        if (hex ? !egress_sniff_is_hex_digit(label[i]) : !egress_sniff_is_digit(label[i]))
            return false;
    }
    return true;
}

/* Writes text (length bytes) lower-cased, without one trailing dot, into lowered (room for
 * EGRESS_SNIFF_NAME_MAX bytes); returns its length, or 0 when it is no hostname. */
static size_t egress_sniff_normalise(const char *text, size_t length, char *lowered) {
    if (length > 0 && text[length - 1] == '.')
        length--; /* the fully qualified form names the same host */
    if (length == 0 || length > EGRESS_SNIFF_NAME_MAX)
        return 0;
    size_t label_start = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i == length || text[i] == '.') {
            size_t label_length = i - label_start;
            /* RFC 1123 §2.1: letters, digits and hyphens, a hyphen at neither end. */
            if (label_length == 0 || label_length > EGRESS_SNIFF_LABEL_MAX ||
                lowered[label_start] == '-' || lowered[i - 1] == '-')
                return 0;
            if (i == length)
                break;
            lowered[i] = '.';
            label_start = i + 1;
            continue;
        }
        char c = egress_sniff_lower(text[i]);
        if (!egress_sniff_is_digit(c) && !(c >= 'a' && c <= 'z') && c != '-')
            return 0;
        lowered[i] = c;
    }
    if (egress_sniff_label_is_number(lowered + label_start, length - label_start))
        return 0;
    return length;
}

bool egress_sniff_hostname(const char *text, size_t length, egress_sniff_name_t *name) {
    /* Normalised aside first: text may be name->text. */
    char lowered[EGRESS_SNIFF_NAME_MAX];
    size_t lowered_length = egress_sniff_normalise(text, length, lowered);
    memcpy(name->text, lowered, lowered_length);
    name->text[lowered_length] = '\0';
    name->length = lowered_length;
    return lowered_length > 0;
}

const char *egress_sniff_result_name(egress_sniff_result_t result) {
    switch (result) {
    case EGRESS_SNIFF_MORE:
        return "more";
    case EGRESS_SNIFF_NAME:
        return "name";
    case EGRESS_SNIFF_NO_NAME:
        return "no name";
    case EGRESS_SNIFF_MALFORMED:
        break;
    }
    return "malformed";
}

/* ---- TLS: the ClientHello (RFC 8446 §4.1.2) and its server_name (RFC 6066 §3) ---- */

enum {
    EGRESS_TLS_RECORD_HEADER = 5,          /* type, legacy_record_version, length */
    EGRESS_TLS_RECORD_PAYLOAD_MAX = 16384, /* RFC 8446 §5.1: 2^14 */
    EGRESS_TLS_CONTENT_HANDSHAKE = 22,     /* RFC 8446 §5.1 ContentType */
    EGRESS_TLS_VERSION_FIRST = 0x0300,     /* SSL 3.0, as some clients still label records */
    EGRESS_TLS_VERSION_LAST = 0x0304,      /* TLS 1.3 */
    EGRESS_TLS_HANDSHAKE_HEADER = 4,       /* msg_type, 24-bit length */
    EGRESS_TLS_CLIENT_HELLO = 1,           /* RFC 8446 §4 HandshakeType */
    EGRESS_TLS_RANDOM = 32,                /* RFC 8446 §4.1.2 */
    EGRESS_TLS_SESSION_ID_MAX = 32,        /* legacy_session_id<0..32> */
    EGRESS_TLS_EXTENSION_SERVER_NAME = 0,  /* RFC 6066 §3 */
    EGRESS_TLS_NAME_TYPE_HOST_NAME = 0,    /* RFC 6066 §3 NameType */
    EGRESS_TLS_EXTENSION_TYPES = 65536,    /* ExtensionType is a uint16 */
};

/* The unread part of a block; every read is checked against it, never against the buffer. */
typedef struct egress_tls_reader {
    const uint8_t *at;
    size_t left;
} egress_tls_reader_t;

static bool egress_tls_read_u8(egress_tls_reader_t *reader, size_t *value) {
    if (reader->left < 1)
        return false;
    *value = reader->at[0];
    reader->at++;
    reader->left--;
    return true;
}

static bool egress_tls_read_u16(egress_tls_reader_t *reader, size_t *value) {
    if (reader->left < 2)
        return false;
    *value = (size_t)reader->at[0] << 8 | reader->at[1];
    reader->at += 2;
    reader->left -= 2;
    return true;
}

/* Takes the next length bytes as the block *inner; false if the enclosing block is shorter. */
static bool egress_tls_read_block(egress_tls_reader_t *reader, size_t length,
                                  egress_tls_reader_t *inner) {
    if (reader->left < length)
        return false;
    inner->at = reader->at;
    inner->left = length;
    reader->at += length;
    reader->left -= length;
    return true;
}

/* Reads a vector with a length_size-byte length (RFC 8446 §3.4) into *inner, checking that its
 * length lies in [minimum, maximum]. */
static bool egress_tls_read_vector(egress_tls_reader_t *reader, size_t length_size, size_t minimum,
                                   size_t maximum, egress_tls_reader_t *inner) {
    size_t length;
    bool read = length_size == 1 ? egress_tls_read_u8(reader, &length)
                                 : egress_tls_read_u16(reader, &length);
    return read && length >= minimum && length <= maximum &&
           egress_tls_read_block(reader, length, inner);
}

/* The server_name extension's body: a ServerNameList of exactly one host_name. RFC 6066 §3
 * allows one name per type and defines no type but host_name, whose entries' lengths a reader
 * could not know anyway; two names would leave the choice to whoever reads which. */
static egress_sniff_result_t egress_tls_server_name(egress_tls_reader_t extension,
                                                    egress_sniff_name_t *name) {
    egress_tls_reader_t list;
    egress_tls_reader_t host_name;
    size_t name_type;
    if (!egress_tls_read_vector(&extension, 2, 1, 0xffff, &list) || extension.left != 0 ||
        !egress_tls_read_u8(&list, &name_type) || name_type != EGRESS_TLS_NAME_TYPE_HOST_NAME ||
        !egress_tls_read_vector(&list, 2, 1, 0xffff, &host_name) || list.left != 0)
        return EGRESS_SNIFF_MALFORMED;
    /* RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName". */
    if (!egress_sniff_hostname((const char *)host_name.at, host_name.left, name))
        return EGRESS_SNIFF_MALFORMED;
    return EGRESS_SNIFF_NAME;
}

/* Walks a whole ClientHello body (after its handshake header). */
static egress_sniff_result_t egress_tls_client_hello(egress_tls_reader_t body,
                                                     egress_sniff_name_t *name) {
    size_t legacy_version;
    egress_tls_reader_t skipped;
    if (!egress_tls_read_u16(&body, &legacy_version) || legacy_version < EGRESS_TLS_VERSION_FIRST ||
        legacy_version > EGRESS_TLS_VERSION_LAST ||
        !egress_tls_read_block(&body, EGRESS_TLS_RANDOM, &skipped) ||
        !egress_tls_read_vector(&body, 1, 0, EGRESS_TLS_SESSION_ID_MAX, &skipped) ||
        !egress_tls_read_vector(&body, 2, 2, 0xfffe, &skipped) || skipped.left % 2 != 0 ||
        !egress_tls_read_vector(&body, 1, 1, 0xff, &skipped))
        return EGRESS_SNIFF_MALFORMED;
    /* RFC 5246 §7.4.1.2: a ClientHello may end after its compression methods. */
    if (body.left == 0)
        return EGRESS_SNIFF_NO_NAME;
    egress_tls_reader_t extensions;
    if (!egress_tls_read_vector(&body, 2, 0, 0xffff, &extensions) || body.left != 0)
        return EGRESS_SNIFF_MALFORMED;

    /* RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type". */
    uint64_t seen[EGRESS_TLS_EXTENSION_TYPES / 64];
    memset(seen, 0, sizeof(seen));
    egress_sniff_result_t result = EGRESS_SNIFF_NO_NAME;
    egress_sniff_name_t found; /* *name is left alone unless the whole ClientHello is sound */
    while (extensions.left > 0) {
        size_t type;
        egress_tls_reader_t data;
        if (!egress_tls_read_u16(&extensions, &type) ||
            !egress_tls_read_vector(&extensions, 2, 0, 0xffff, &data))
            return EGRESS_SNIFF_MALFORMED;
        uint64_t bit = (uint64_t)1 << (type % 64);
        if (seen[type / 64] & bit)
            return EGRESS_SNIFF_MALFORMED;
        seen[type / 64] |= bit;
        if (type == EGRESS_TLS_EXTENSION_SERVER_NAME) {
            result = egress_tls_server_name(data, &found);
            if (result == EGRESS_SNIFF_MALFORMED)
                return result;
        }
    }
    if (result == EGRESS_SNIFF_NAME)
        *name = found;
    return result;
}

egress_sniff_result_t egress_sniff_tls(const uint8_t *data, size_t length,
                                       egress_sniff_name_t *name) {
    if (length > EGRESS_SNIFF_BYTES_MAX)
        length = EGRESS_SNIFF_BYTES_MAX; /* what lies beyond cannot complete a ClientHello */
    /* RFC 8446 §5.1: a handshake message may be fragmented over several records; their payloads
     * are joined in fragments. No record of another type may come between. A message in one
     * record, as clients send it, is read where it lies. */
    uint8_t fragments[EGRESS_SNIFF_BYTES_MAX];
    const uint8_t *message = fragments;
    size_t collected = 0;
    size_t offset = 0;
    for (;;) {
        /* The whole message's length once its header is in; until then, the header's. */
        size_t needed = EGRESS_TLS_HANDSHAKE_HEADER;
        if (collected >= EGRESS_TLS_HANDSHAKE_HEADER) {
            needed += (size_t)message[1] << 16 | (size_t)message[2] << 8 | message[3];
            if (collected >= needed) {
                /* A client sends nothing else before the server's answer: bytes after the
                 * ClientHello in its last record are no handshake message we could read. */
                if (collected > needed)
                    return EGRESS_SNIFF_MALFORMED;
                egress_tls_reader_t body = {message + EGRESS_TLS_HANDSHAKE_HEADER,
                                            needed - EGRESS_TLS_HANDSHAKE_HEADER};
                return egress_tls_client_hello(body, name);
            }
        }
        size_t remaining = needed - collected;

        /* The next record's header, as far as it has arrived: checked byte by byte so that a
         * connection that is not TLS is refused at its first byte. */
        const uint8_t *record = data + offset;
        size_t available = length - offset;
        if (available >= 1 && record[0] != EGRESS_TLS_CONTENT_HANDSHAKE)
            return EGRESS_SNIFF_MALFORMED;
        if (available >= 2 && record[1] != EGRESS_TLS_VERSION_FIRST >> 8)
            return EGRESS_SNIFF_MALFORMED;
        if (available >= 3 && record[2] > (EGRESS_TLS_VERSION_LAST & 0xff))
            return EGRESS_SNIFF_MALFORMED;
        /* The message's type is the first record's first payload byte (records are not empty). */
        if (collected == 0 && available > EGRESS_TLS_RECORD_HEADER &&
            record[EGRESS_TLS_RECORD_HEADER] != EGRESS_TLS_CLIENT_HELLO)
            return EGRESS_SNIFF_MALFORMED;
        /* The fewest bytes the whole message still needs: this record, and another after it
         * (with its header) if this one cannot hold the rest. */
        size_t record_length = remaining;
        if (available >= EGRESS_TLS_RECORD_HEADER) {
            record_length = (size_t)record[3] << 8 | record[4];
            /* RFC 8446 §5.1: no zero-length fragment of a handshake message. */
            if (record_length == 0 || record_length > EGRESS_TLS_RECORD_PAYLOAD_MAX)
                return EGRESS_SNIFF_MALFORMED;
        }
        size_t fewest = offset + EGRESS_TLS_RECORD_HEADER + record_length;
        if (record_length < remaining)
            fewest += EGRESS_TLS_RECORD_HEADER + (remaining - record_length);
        if (fewest > EGRESS_SNIFF_BYTES_MAX)
            return EGRESS_SNIFF_MALFORMED;
        if (available < EGRESS_TLS_RECORD_HEADER + record_length)
            return EGRESS_SNIFF_MORE; /* the record is judged once it is whole */
        const uint8_t *payload = record + EGRESS_TLS_RECORD_HEADER;
        if (offset == 0) {
            message = payload;
        } else {
            /* collected + record_length <= offset + record_length < EGRESS_SNIFF_BYTES_MAX. */
            if (message != fragments)
                memcpy(fragments, message, collected);
            memcpy(fragments + collected, payload, record_length);
            message = fragments;
        }
        collected += record_length;
        offset += EGRESS_TLS_RECORD_HEADER + record_length;
    }
}

/* ---- HTTP/1.x: the request head (RFC 9112 §2-§5), parsed by llhttp ---- */

/* What the span callbacks collect. The whole buffer is parsed in one llhttp_execute(), so a span
 * is reported once, unless a header line is folded (RFC 9112 §5.2). */
typedef struct egress_http_head {
    const char *data; /* the buffer's first byte */
    const char *target;
    size_t target_length;
    const char *field;
    size_t field_length;
    bool field_is_host;
    const char *value;
    size_t value_length;
    const char *host; /* the first Host value, without surrounding whitespace */
    size_t host_length;
    unsigned host_count;
    bool version_seen;
    bool head_complete;
} egress_http_head_t;

/* Extends the span *start..+*length with a callback's piece (contiguous within one buffer). */
static void egress_http_span(const char **start, size_t *length, const char *at, size_t count) {
    if (*start == NULL)
        *start = at;
    *length = (size_t)(at + count - *start);
}

static int egress_http_on_url(llhttp_t *parser, const char *at, size_t length) {
    egress_http_head_t *head = parser->data;
    egress_http_span(&head->target, &head->target_length, at, length);
    return 0;
}

/* RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT; llhttp also reads RTSP/ and ICE/. */
static int egress_http_on_version(llhttp_t *parser, const char *at, size_t length) {
    egress_http_head_t *head = parser->data;
    static const char protocol[] = "HTTP/";
    size_t protocol_length = sizeof(protocol) - 1;
    if ((size_t)(at - head->data) < protocol_length ||
        memcmp(at - protocol_length, protocol, protocol_length) != 0)
        return -1;
    return 0;
}

static int egress_http_on_version_complete(llhttp_t *parser) {
    egress_http_head_t *head = parser->data;
    head->version_seen = true;
    return llhttp_get_http_major(parser) == 1 ? 0 : -1;
}

static int egress_http_on_field(llhttp_t *parser, const char *at, size_t length) {
    egress_http_head_t *head = parser->data;
    egress_http_span(&head->field, &head->field_length, at, length);
    return 0;
}

static int egress_http_on_field_complete(llhttp_t *parser) {
    egress_http_head_t *head = parser->data;
    head->field_is_host =
        head->field_length == 4 && strncasecmp(head->field, "host", head->field_length) == 0;
    head->field = NULL;
    head->field_length = 0;
    return 0;
}

static int egress_http_on_value(llhttp_t *parser, const char *at, size_t length) {
    egress_http_head_t *head = parser->data;
    /* RFC 9112 §5.2: a value continued on a line that starts with whitespace (obs-fold) is
     * rejected; llhttp passes the continuation as a span of its own, on the next line. */
    const char *before = at;
    while (before > head->data && (before[-1] == ' ' || before[-1] == '\t'))
        before--;
    if (length > 0 && before > head->data && before[-1] == '\n')
        return -1;
    if (head->field_is_host)
        egress_http_span(&head->value, &head->value_length, at, length);
    return 0;
}

static int egress_http_on_value_complete(llhttp_t *parser) {
    egress_http_head_t *head = parser->data;
    if (head->field_is_host) {
        if (head->host_count++ == 0) {
            /* RFC 9110 §5.5: a field value excludes leading and trailing whitespace; llhttp
             * leaves out the leading. */
            const char *value = head->value != NULL ? head->value : "";
            size_t length = head->value_length;
            while (length > 0 && (value[length - 1] == ' ' || value[length - 1] == '\t'))
                length--;
            head->host = value;
            head->host_length = length;
        }
    }
    head->field_is_host = false;
    head->value = NULL;
    head->value_length = 0;
    return 0;
}

/* Pausing at the end of the head leaves the body unread. */
static int egress_http_on_headers_complete(llhttp_t *parser) {
    ((egress_http_head_t *)parser->data)->head_complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t egress_http_settings = {
    .on_url = egress_http_on_url,
    .on_version = egress_http_on_version,
    .on_version_complete = egress_http_on_version_complete,
    .on_header_field = egress_http_on_field,
    .on_header_field_complete = egress_http_on_field_complete,
    .on_header_value = egress_http_on_value,
    .on_header_value_complete = egress_http_on_value_complete,
    .on_headers_complete = egress_http_on_headers_complete,
};

typedef enum egress_http_host_kind {
    EGRESS_HTTP_HOST_INVALID,
    EGRESS_HTTP_HOST_EMPTY,
    EGRESS_HTTP_HOST_NAME,
    EGRESS_HTTP_HOST_IPV4,
    EGRESS_HTTP_HOST_IPV6,
} egress_http_host_kind_t;

/* The host of an authority: its name, or its address when it is an IP literal. */
typedef struct egress_http_host {
    egress_http_host_kind_t kind;
    egress_sniff_name_t name;
    uint8_t address[sizeof(struct in6_addr)];
} egress_http_host_t;

/* True if text (length bytes) is an address of family, written into address. */
static bool egress_http_address(int family, const char *text, size_t length, uint8_t *address) {
    char copy[INET6_ADDRSTRLEN];
    if (length >= sizeof(copy))
        return false;
    memcpy(copy, text, length);
    copy[length] = '\0';
    return inet_pton(family, copy, address) == 1;
}

/* Reads an authority, RFC 3986 §3.2.2 host [":" port], into host; the port, if any, is 1 to 5
 * digits up to 65535 (a colon without one is refused: nobody means it). */
static void egress_http_authority(const char *text, size_t length, egress_http_host_t *host) {
    memset(host, 0, sizeof(*host));
    host->kind = EGRESS_HTTP_HOST_INVALID;
    if (length == 0) {
        host->kind = EGRESS_HTTP_HOST_EMPTY;
        return;
    }
    size_t host_length = length;
    if (text[0] == '[') {
        const char *close = memchr(text, ']', length);
        if (close == NULL)
            return;
        host_length = (size_t)(close - text) + 1;
        if (host_length < length && text[host_length] != ':')
            return;
    } else {
        const char *colon = memchr(text, ':', length);
        if (colon != NULL)
            host_length = (size_t)(colon - text);
    }
    if (host_length < length) {
        const char *port = text + host_length + 1;
        size_t port_length = length - host_length - 1;
        if (port_length == 0 || port_length > EGRESS_SNIFF_PORT_DIGITS_MAX)
            return;
        unsigned long value = 0;
        for (size_t i = 0; i < port_length; i++) {
            if (!egress_sniff_is_digit(port[i]))
                return;
            value = value * 10 + (unsigned long)(port[i] - '0');
        }
        if (value > EGRESS_SNIFF_PORT_MAX)
            return;
    }
    if (text[0] == '[') {
        /* RFC 3986 §3.2.2: IP-literal; an IPvFuture or a zone identifier is nothing we read. */
        if (egress_http_address(AF_INET6, text + 1, host_length - 2, host->address))
            host->kind = EGRESS_HTTP_HOST_IPV6;
        return;
    }
    size_t address_length = host_length;
    if (address_length > 0 && text[address_length - 1] == '.')
        address_length--;
    if (egress_http_address(AF_INET, text, address_length, host->address)) {
        host->kind = EGRESS_HTTP_HOST_IPV4;
        return;
    }
    if (egress_sniff_hostname(text, host_length, &host->name))
        host->kind = EGRESS_HTTP_HOST_NAME;
}

static bool egress_http_host_equal(const egress_http_host_t *left,
                                   const egress_http_host_t *right) {
    if (left->kind != right->kind)
        return false;
    switch (left->kind) {
    case EGRESS_HTTP_HOST_NAME:
        return left->name.length == right->name.length &&
               memcmp(left->name.text, right->name.text, left->name.length) == 0;
    case EGRESS_HTTP_HOST_IPV4:
        return memcmp(left->address, right->address, 4) == 0;
    case EGRESS_HTTP_HOST_IPV6:
        return memcmp(left->address, right->address, sizeof(left->address)) == 0;
    case EGRESS_HTTP_HOST_EMPTY: /* a target's authority is never empty */
    case EGRESS_HTTP_HOST_INVALID:
        break;
    }
    return false;
}

/* The authority of an absolute-form target (RFC 9112 §3.2.2), "http" or "https" "://"
 * authority ..., into *authority; false for any other target or scheme. */
static bool egress_http_target_authority(const char *target, size_t length, const char **authority,
                                         size_t *authority_length) {
    static const char *const schemes[] = {"http://", "https://"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t scheme_length = strlen(schemes[i]);
        if (length < scheme_length || strncasecmp(target, schemes[i], scheme_length) != 0)
            continue;
        const char *start = target + scheme_length;
        const char *end = start;
        while (end < target + length && *end != '/' && *end != '?' && *end != '#')
            end++;
        *authority = start;
        *authority_length = (size_t)(end - start);
        /* RFC 9110 §4.2.4: userinfo in an http(s) URI is an error ("user@evil@good" tricks). */
        return memchr(start, '@', *authority_length) == NULL;
    }
    return false;
}

/* Judges a complete head: which host the request names. */
static egress_sniff_result_t egress_http_judge(llhttp_t *parser, const egress_http_head_t *head,
                                               egress_sniff_name_t *name) {
    /* RFC 9112 §3.2: one Host. With two, which one counts would be the receiver's choice. */
    if (!head->version_seen || head->target_length == 0 || head->host_count > 1)
        return EGRESS_SNIFF_MALFORMED;
    /* RFC 9112 §3.2.3: CONNECT's authority-form opens a tunnel through the server. */
    uint8_t method = llhttp_get_method(parser);
    if (method == HTTP_CONNECT)
        return EGRESS_SNIFF_MALFORMED;
    egress_http_host_t host;
    egress_http_authority(head->host, head->host_length, &host);
    if (head->host_count == 1 && host.kind == EGRESS_HTTP_HOST_INVALID)
        return EGRESS_SNIFF_MALFORMED;

    const char *authority = NULL;
    size_t authority_length = 0;
    if (head->target[0] == '/') {
        /* origin-form: Host names the host */
    } else if (head->target_length == 1 && head->target[0] == '*') {
        if (method != HTTP_OPTIONS)
            return EGRESS_SNIFF_MALFORMED; /* RFC 9112 §3.2.4: asterisk-form is OPTIONS only */
    } else if (egress_http_target_authority(head->target, head->target_length, &authority,
                                            &authority_length)) {
        /* RFC 9112 §3.2.2: the target's authority wins over Host. A Host that names another
         * host would let a request pass as the one while the server serves the other. */
        egress_http_host_t target_host;
        egress_http_authority(authority, authority_length, &target_host);
        if (target_host.kind == EGRESS_HTTP_HOST_INVALID ||
            target_host.kind == EGRESS_HTTP_HOST_EMPTY)
            return EGRESS_SNIFF_MALFORMED; /* RFC 9110 §4.2.1: an http URI has a host */
        if (head->host_count == 1 && !egress_http_host_equal(&host, &target_host))
            return EGRESS_SNIFF_MALFORMED;
        host = target_host;
    } else {
        return EGRESS_SNIFF_MALFORMED;
    }
    if (host.kind != EGRESS_HTTP_HOST_NAME)
        return EGRESS_SNIFF_NO_NAME; /* no Host (HTTP/1.0), an empty one, or an IP literal */
    *name = host.name;
    return EGRESS_SNIFF_NAME;
}

egress_sniff_result_t egress_sniff_http(const uint8_t *data, size_t length,
                                        egress_sniff_name_t *name) {
    if (length > EGRESS_SNIFF_BYTES_MAX)
        length = EGRESS_SNIFF_BYTES_MAX; /* the head must end within what the agent reads */
    egress_http_head_t head;
    memset(&head, 0, sizeof(head));
    head.data = (const char *)data;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &egress_http_settings);
    parser.data = &head;
    llhttp_errno_t error = llhttp_execute(&parser, (const char *)data, length);
    if (error == HPE_PAUSED && head.head_complete)
        return egress_http_judge(&parser, &head, name);
    if (error != HPE_OK)
        return EGRESS_SNIFF_MALFORMED;
    /* RFC 9112 §3: a request line ends with its HTTP-version; one that ended without (HTTP/0.9)
     * is refused now instead of after the head it would be followed by. */
    if (head.target != NULL && !head.version_seen) {
        const char *target_end = head.target + head.target_length;
        const char *end = (const char *)data + length;
        if (memchr(target_end, '\n', (size_t)(end - target_end)) != NULL)
            return EGRESS_SNIFF_MALFORMED;
    }
    return length < EGRESS_SNIFF_BYTES_MAX ? EGRESS_SNIFF_MORE : EGRESS_SNIFF_MALFORMED;
}
