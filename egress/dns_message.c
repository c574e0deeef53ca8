/* The wire format of the agent's DNS responder: a sandbox's query read, its answer written. */
#include "egress/dns_message.h"

#include <string.h>

enum {
    /* RFC 1035 §4.1.1: the flags, bytes 2 and 3 of the header. */
    EGRESS_DNS_FLAG_QR = 0x80,
    EGRESS_DNS_FLAG_TC = 0x02,
    EGRESS_DNS_FLAG_RD = 0x01,
    EGRESS_DNS_FLAG_RA = 0x80,
    EGRESS_DNS_OPCODE_SHIFT = 3,
    EGRESS_DNS_OPCODE_MASK = 0x0f,
    EGRESS_DNS_RCODE_MASK = 0x0f,
    /* RFC 1035 §4.1.4: a label is at most 63 bytes; a length byte with either of the top bits set
     * is a compression pointer (11) or an extended label type (01, 10: RFC 6891 §5). */
    EGRESS_DNS_LABEL_MAX = 63,
    /* RFC 6891 §6.1.2: OPT is type 41; its fixed part is a root name, TYPE, CLASS, TTL and
     * RDLENGTH; each option is a code and a length, then its data. */
    EGRESS_DNS_TYPE_OPT = 41,
    EGRESS_DNS_OPT_SIZE = 11,
    EGRESS_DNS_OPTION_HEADER_SIZE = 4,
    EGRESS_DNS_EDNS_DNSSEC_OK = 0x80, /* RFC 3225 §3: the top bit of the TTL's third byte */
    /* An answer record: a compression pointer, TYPE, CLASS, TTL, RDLENGTH, then the address. */
    EGRESS_DNS_RECORD_FIXED_SIZE = 12,
    /* RFC 1035 §4.1.4: a pointer to the question's name, which starts right after the header. */
    EGRESS_DNS_POINTER_TO_QUESTION = 0xc000 | EGRESS_DNS_HEADER_SIZE,
};

/* RFC 2181 §8: a TTL with the top bit set is read as zero, so none is written. */
static const uint32_t egress_dns_ttl_max = 0x7fffffff;

static uint16_t egress_dns_read_16(const uint8_t *at) { return (uint16_t)(at[0] << 8 | at[1]); }

static void egress_dns_write_16(uint8_t *at, uint16_t value) {
    at[0] = (uint8_t)(value >> 8);
    at[1] = (uint8_t)value;
}

static void egress_dns_write_32(uint8_t *at, uint32_t value) {
    egress_dns_write_16(at, (uint16_t)(value >> 16));
    egress_dns_write_16(at + 2, (uint16_t)value);
}

/* A byte of a hostname label (RFC 952, RFC 1123 §2.1), with '_' for service names (RFC 2782);
 * anything else, '.' and NUL included, cannot name a host the sandbox may reach. ASCII only:
 * the C library's tolower() follows the locale. */
static bool egress_dns_hostname_byte(uint8_t byte, char *lower) {
    if (byte >= 'A' && byte <= 'Z')
        byte = (uint8_t)(byte - 'A' + 'a');
    *lower = (char)byte;
    return (byte >= 'a' && byte <= 'z') || (byte >= '0' && byte <= '9') || byte == '-' ||
           byte == '_';
}

/* Reads the question's name from message[*offset] into query's name; returns false when it is
 * not an uncompressed name of at most 255 bytes inside the message (FORMERR). RFC 1035 §4.1.4
 * lets a pointer only point back to an earlier name, and a query's first name has none before
 * it: a pointer there is an error, which leaves no pointer loop to follow. */
static bool egress_dns_read_name(const uint8_t *message, size_t length, size_t *offset,
                                 egress_dns_query_t *query) {
    size_t start = *offset;
    size_t at = start;
    size_t text_length = 0;
    bool valid = true;
    for (;;) {
        if (at >= length)
            return false;
        size_t label_length = message[at];
        if (label_length == 0)
            break;
        if (label_length > EGRESS_DNS_LABEL_MAX)
            return false;
        /* RFC 1035 §3.1: the name, with this label and the root's zero byte, fits 255 bytes. */
        if (at - start + 1 + label_length + 1 > EGRESS_DNS_NAME_WIRE_MAX)
            return false;
        if (label_length > length - at - 1)
            return false;
        /* 255 bytes on the wire are at most 253 as text: the buffer cannot overflow. */
        if (text_length > 0)
            query->name[text_length++] = '.';
        for (size_t i = 1; i <= label_length; i++) {
            if (!egress_dns_hostname_byte(message[at + i], &query->name[text_length++]))
                valid = false;
        }
        at += 1 + label_length;
    }
    *offset = at + 1;
    /* A name that no policy can hold is not kept: the caller answers NXDOMAIN without it, and
     * no log line carries its bytes. */
    query->name_valid = valid;
    query->name_length = valid ? text_length : 0;
    query->name[query->name_length] = '\0';
    return true;
}

/* Reads the OPT record at message[*offset] (RFC 6891 §6.1.2) into query; returns false when it is
 * not one, or a broken one (FORMERR). Once the record is known to be OPT, query->edns is set, so
 * that the error answer carries an OPT record too (§7). Its options (dig sends a cookie, RFC
 * 7873) are ignored, as §6.1.2 has it for options not understood, but must fill RDATA exactly. */
static bool egress_dns_read_opt(const uint8_t *message, size_t length, size_t *offset,
                                egress_dns_query_t *query, uint8_t *version) {
    size_t at = *offset;
    if (length - at < EGRESS_DNS_OPT_SIZE)
        return false;
    /* RFC 6891 §6.1.2: the OPT name MUST be 0, the root; any other name is another record. */
    if (message[at] != 0 || egress_dns_read_16(message + at + 1) != EGRESS_DNS_TYPE_OPT)
        return false;
    query->edns = true;
    /* RFC 6891 §6.2.5: a payload size below 512 is treated as 512; one above what this
     * responder offers is cut to it. */
    uint16_t payload_size = egress_dns_read_16(message + at + 3);
    if (payload_size < EGRESS_DNS_UDP_MAX)
        payload_size = EGRESS_DNS_UDP_MAX;
    if (payload_size > EGRESS_DNS_EDNS_UDP_MAX)
        payload_size = EGRESS_DNS_EDNS_UDP_MAX;
    query->udp_limit = payload_size;
    *version = message[at + 6];
    query->edns_dnssec_ok = (message[at + 7] & EGRESS_DNS_EDNS_DNSSEC_OK) != 0;
    size_t data_length = egress_dns_read_16(message + at + 9);
    at += EGRESS_DNS_OPT_SIZE;
    if (data_length > length - at)
        return false;
    size_t data_end = at + data_length;
    while (at < data_end) {
        if (data_end - at < EGRESS_DNS_OPTION_HEADER_SIZE)
            return false;
        size_t option_length = egress_dns_read_16(message + at + 2);
        at += EGRESS_DNS_OPTION_HEADER_SIZE;
        if (option_length > data_end - at)
            return false;
        at += option_length;
    }
    *offset = at;
    return true;
}

/* Reads the question at message[*offset] into query; returns false when it is not whole
 * (FORMERR). */
static bool egress_dns_read_question(const uint8_t *message, size_t length, size_t *offset,
                                     egress_dns_query_t *query) {
    size_t start = *offset;
    size_t at = start;
    if (!egress_dns_read_name(message, length, &at, query)) {
        query->name[0] = '\0'; /* what was read of a refused name is not kept, nor logged */
        return false;
    }
    if (length - at < 4)
        return false;
    /* Any QTYPE and QCLASS is read: RFC 3597 §3 asks that unknown types be handled as the
     * known ones are, and the caller answers each (an empty NOERROR for a name it allows). */
    query->type = egress_dns_read_16(message + at);
    query->class_ = egress_dns_read_16(message + at + 2);
    at += 4;
    query->question_length = at - start;
    memcpy(query->question, message + start, query->question_length);
    *offset = at;
    return true;
}

egress_dns_parse_result_t egress_dns_parse_query(const uint8_t *message, size_t length,
                                                 egress_dns_query_t *query,
                                                 egress_dns_rcode_t *rcode) {
    memset(query, 0, sizeof(*query));
    query->udp_limit = EGRESS_DNS_UDP_MAX;
    *rcode = EGRESS_DNS_RCODE_FORMERR;
    /* Without a whole header there is no ID to answer; a response is never answered (RFC 1035
     * §4.1.1 QR), or two responders could be made to bounce messages forever. */
    if (length < EGRESS_DNS_HEADER_SIZE || (message[2] & EGRESS_DNS_FLAG_QR) != 0)
        return EGRESS_DNS_PARSE_DROP;
    query->id = egress_dns_read_16(message);
    query->opcode = (uint8_t)(message[2] >> EGRESS_DNS_OPCODE_SHIFT & EGRESS_DNS_OPCODE_MASK);
    query->recursion_desired = (message[2] & EGRESS_DNS_FLAG_RD) != 0;
    /* RFC 1035 §4.1.1: only the standard query is taken; IQUERY (obsolete, RFC 3425), STATUS,
     * NOTIFY and UPDATE are not implemented, and their sections mean other things. */
    if (query->opcode != 0) {
        *rcode = EGRESS_DNS_RCODE_NOTIMP;
        return EGRESS_DNS_PARSE_ERROR;
    }
    /* RFC 9619: at most one question (the header has room for one rcode); RFC 1035 §4.1.2: a
     * query carries no answer and no authority records. RFC 6891 §6.1.1: at most one OPT record,
     * and here no other additional record (a TSIG, RFC 8945, has no key to check). */
    uint16_t question_count = egress_dns_read_16(message + 4);
    uint16_t answer_count = egress_dns_read_16(message + 6);
    uint16_t authority_count = egress_dns_read_16(message + 8);
    uint16_t additional_count = egress_dns_read_16(message + 10);
    if (question_count > 1 || answer_count != 0 || authority_count != 0 || additional_count > 1)
        return EGRESS_DNS_PARSE_ERROR;

    size_t offset = EGRESS_DNS_HEADER_SIZE;
    if (question_count == 1 && !egress_dns_read_question(message, length, &offset, query))
        return EGRESS_DNS_PARSE_ERROR;
    uint8_t version = 0;
    if (additional_count == 1 && !egress_dns_read_opt(message, length, &offset, query, &version))
        return EGRESS_DNS_PARSE_ERROR;
    /* RFC 1035 §4.1: a message is its sections and nothing else; bytes after them are a broken
     * or hostile encoder. */
    if (offset != length)
        return EGRESS_DNS_PARSE_ERROR;
    /* RFC 6891 §6.1.3: a version above the one implemented (0) is answered BADVERS. */
    if (version != 0) {
        *rcode = EGRESS_DNS_RCODE_BADVERS;
        return EGRESS_DNS_PARSE_ERROR;
    }
    /* No question: nothing to answer. Its OPT record was still read, so that the FORMERR carries
     * one (dig +header-only, or a client asking for a server cookie, RFC 7873, which this
     * responder does not give). */
    if (question_count == 0)
        return EGRESS_DNS_PARSE_ERROR;
    *rcode = EGRESS_DNS_RCODE_NOERROR;
    return EGRESS_DNS_PARSE_QUERY;
}

/* True if rcode needs an OPT record for its high bits (RFC 6891 §6.1.3). */
static bool egress_dns_rcode_extended(egress_dns_rcode_t rcode) {
    return (unsigned)rcode > EGRESS_DNS_RCODE_MASK;
}

/* Writes the answer's header: QR and RA set, OPCODE and RD copied (RFC 1035 §4.1.1), AA clear (the
 * addresses are resolved, not held with authority), AD clear (nothing is validated, RFC 4035
 * §3.2.3), and the low four bits of rcode. */
static void egress_dns_write_header(uint8_t *out, const egress_dns_query_t *query,
                                    egress_dns_rcode_t rcode, bool truncated,
                                    uint16_t question_count, uint16_t answer_count,
                                    uint16_t additional_count) {
    egress_dns_write_16(out, query->id);
    out[2] = (uint8_t)(EGRESS_DNS_FLAG_QR |
                       (query->opcode & EGRESS_DNS_OPCODE_MASK) << EGRESS_DNS_OPCODE_SHIFT |
                       (truncated ? EGRESS_DNS_FLAG_TC : 0) |
                       (query->recursion_desired ? EGRESS_DNS_FLAG_RD : 0));
    out[3] = (uint8_t)(EGRESS_DNS_FLAG_RA | ((unsigned)rcode & EGRESS_DNS_RCODE_MASK));
    egress_dns_write_16(out + 4, question_count);
    egress_dns_write_16(out + 6, answer_count);
    egress_dns_write_16(out + 8, 0);
    egress_dns_write_16(out + 10, additional_count);
}

/* Writes the answer's OPT record (RFC 6891 §6.1.2): the payload size offered, the high eight bits
 * of rcode (§6.1.3), version 0, the query's DO bit (RFC 3225 §3), no options. */
static void egress_dns_write_opt(uint8_t *out, const egress_dns_query_t *query,
                                 egress_dns_rcode_t rcode) {
    out[0] = 0;
    egress_dns_write_16(out + 1, EGRESS_DNS_TYPE_OPT);
    egress_dns_write_16(out + 3, EGRESS_DNS_EDNS_UDP_MAX);
    out[5] = (uint8_t)((unsigned)rcode >> 4);
    out[6] = 0;
    out[7] = query->edns_dnssec_ok ? EGRESS_DNS_EDNS_DNSSEC_OK : 0;
    out[8] = 0;
    egress_dns_write_16(out + 9, 0);
}

size_t egress_dns_write_response(const egress_dns_query_t *query, egress_dns_rcode_t rcode,
                                 const uint8_t *addresses, size_t address_count, uint32_t ttl,
                                 size_t limit, uint8_t *out, size_t out_size) {
    if (egress_dns_rcode_extended(rcode) && !query->edns)
        return 0;
    /* RFC 7766 §8: no message is longer than its two-byte length prefix can say. */
    size_t room = limit < out_size ? limit : out_size;
    if (room > EGRESS_DNS_TCP_MAX)
        room = EGRESS_DNS_TCP_MAX;
    /* RFC 6891 §7: the smallest answer to an EDNS query is the header, the question and OPT. */
    size_t opt_size = query->edns ? EGRESS_DNS_OPT_SIZE : 0;
    size_t minimal = EGRESS_DNS_HEADER_SIZE + query->question_length + opt_size;
    if (minimal > room)
        return 0;

    size_t address_size = query->type == EGRESS_DNS_TYPE_A      ? 4
                          : query->type == EGRESS_DNS_TYPE_AAAA ? 16
                                                                : 0;
    size_t wanted = address_size > 0 ? address_count : 0;
    size_t record_size = EGRESS_DNS_RECORD_FIXED_SIZE + address_size;
    size_t fitting = (room - minimal) / record_size;
    /* RFC 2181 §9: records that do not fit are left out whole and TC is set, so the client asks
     * again over TCP (RFC 7766 §5); the ones that fit are kept. */
    size_t written = wanted < fitting ? wanted : fitting;
    bool truncated = written < wanted;

    egress_dns_write_header(out, query, rcode, truncated, 1, (uint16_t)written,
                            query->edns ? 1 : 0);
    size_t at = EGRESS_DNS_HEADER_SIZE;
    /* RFC 1035 §4.1.2: the question as it came, in its case (a resolver may check the case it
     * randomised, draft-vixie-dnsext-dns0x20). */
    memcpy(out + at, query->question, query->question_length);
    at += query->question_length;
    if (ttl > egress_dns_ttl_max)
        ttl = egress_dns_ttl_max;
    for (size_t i = 0; i < written; i++) {
        /* RFC 1035 §4.1.4: the owner is the question's name, by pointer. */
        egress_dns_write_16(out + at, EGRESS_DNS_POINTER_TO_QUESTION);
        egress_dns_write_16(out + at + 2, query->type);
        egress_dns_write_16(out + at + 4, query->class_);
        egress_dns_write_32(out + at + 6, ttl);
        egress_dns_write_16(out + at + 10, (uint16_t)address_size);
        memcpy(out + at + EGRESS_DNS_RECORD_FIXED_SIZE, addresses + i * address_size, address_size);
        at += record_size;
    }
    if (query->edns) {
        egress_dns_write_opt(out + at, query, rcode);
        at += EGRESS_DNS_OPT_SIZE;
    }
    return at;
}

size_t egress_dns_write_error(const egress_dns_query_t *query, egress_dns_rcode_t rcode,
                              uint8_t *out, size_t out_size) {
    /* The question is not echoed: it may be what was wrong, and nothing in RFC 1035 §4.1 asks
     * for it in an error. An OPT record comes when the query had one, so that the client tells
     * an EDNS error from a server without EDNS (RFC 6891 §7), and always with an extended rcode,
     * to carry its high bits (§6.1.3). */
    bool with_opt = query->edns || egress_dns_rcode_extended(rcode);
    size_t length = EGRESS_DNS_HEADER_SIZE + (with_opt ? EGRESS_DNS_OPT_SIZE : 0);
    if (out_size < length)
        return 0;
    egress_dns_write_header(out, query, rcode, false, 0, 0, with_opt ? 1 : 0);
    if (with_opt)
        egress_dns_write_opt(out + EGRESS_DNS_HEADER_SIZE, query, rcode);
    return length;
}
