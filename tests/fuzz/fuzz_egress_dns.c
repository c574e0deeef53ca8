/* Fuzz target: the egress agent's DNS wire format (egress/dns_message.c) on any message bytes. A
 * query read is answered with 0, 1 and EGRESS_DNS_ADDRESSES_MAX addresses within UDP and TCP
 * limits, and each answer is read back: its header, the question echoed, as many whole records as
 * fit, TC exactly when some did not; a refused message gets a well-formed error answer. */
#include <stdbool.h>

#include "egress/dns_message.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_DNS_HEADER = 12, FUZZ_DNS_OPT = 11, FUZZ_DNS_RECORD_FIXED = 12 };

static uint16_t read_16(const uint8_t *at) { return (uint16_t)(at[0] << 8 | at[1]); }

/* A valid name is lower-case hostname bytes and dots, and spells the question's name. */
static void check_name(const egress_dns_query_t *query) {
    FUZZ_CHECK(query->name_length == strlen(query->name));
    FUZZ_CHECK(query->name_length <= EGRESS_DNS_NAME_MAX);
    if (!query->name_valid) {
        FUZZ_CHECK(query->name_length == 0);
        return;
    }
    size_t at = 0;
    size_t text = 0;
    while (query->question[at] != 0) {
        size_t label_length = query->question[at];
        FUZZ_CHECK(label_length <= 63);
        if (text > 0)
            FUZZ_CHECK(query->name[text++] == '.');
        for (size_t i = 1; i <= label_length; i++) {
            uint8_t byte = query->question[at + i];
            if (byte >= 'A' && byte <= 'Z')
                byte = (uint8_t)(byte - 'A' + 'a');
            char c = query->name[text++];
            FUZZ_CHECK(c == (char)byte);
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
        }
        at += 1 + label_length;
    }
    FUZZ_CHECK(text == query->name_length);
    FUZZ_CHECK(at + 1 + 4 == query->question_length);
}

/* Writes the answer with count addresses within limit and reads it back. */
static void check_response(const egress_dns_query_t *query, egress_dns_rcode_t rcode,
                           const uint8_t *addresses, size_t count, uint32_t ttl, size_t limit) {
    static uint8_t out[EGRESS_DNS_TCP_MAX + 1];
    size_t length =
        egress_dns_write_response(query, rcode, addresses, count, ttl, limit, out, sizeof(out));
    size_t minimal = FUZZ_DNS_HEADER + query->question_length + (query->edns ? FUZZ_DNS_OPT : 0);
    /* The longest question and an OPT record take 282 bytes: 512 always holds them. */
    if (length == 0) {
        FUZZ_CHECK(limit < minimal && limit < EGRESS_DNS_UDP_MAX);
        return;
    }
    FUZZ_CHECK(length >= minimal && length <= limit);
    FUZZ_CHECK(read_16(out) == query->id);
    bool recursion_desired = (out[2] & 0x01) != 0;
    bool truncated = (out[2] & 0x02) != 0;
    FUZZ_CHECK((out[2] & ~0x03) == 0x80); /* QR, QUERY, not AA */
    FUZZ_CHECK(recursion_desired == query->recursion_desired);
    FUZZ_CHECK(out[3] == (0x80 | rcode)); /* RA, nothing validated, the rcode */
    uint16_t answer_count = read_16(out + 6);
    FUZZ_CHECK(read_16(out + 4) == 1 && read_16(out + 8) == 0);
    FUZZ_CHECK(read_16(out + 10) == (query->edns ? 1 : 0));
    FUZZ_CHECK(memcmp(out + FUZZ_DNS_HEADER, query->question, query->question_length) == 0);

    size_t address_size = query->type == EGRESS_DNS_TYPE_A      ? 4
                          : query->type == EGRESS_DNS_TYPE_AAAA ? 16
                                                                : 0;
    size_t wanted = address_size > 0 ? count : 0;
    size_t record_size = FUZZ_DNS_RECORD_FIXED + address_size;
    size_t opt_size = query->edns ? FUZZ_DNS_OPT : 0;
    FUZZ_CHECK(answer_count <= wanted);
    FUZZ_CHECK(truncated == (answer_count < wanted));
    FUZZ_CHECK(length ==
               FUZZ_DNS_HEADER + query->question_length + answer_count * record_size + opt_size);
    /* Left out only what did not fit. */
    if (truncated)
        FUZZ_CHECK(length + record_size > limit);

    const uint8_t *record = out + FUZZ_DNS_HEADER + query->question_length;
    for (size_t i = 0; i < answer_count; i++, record += record_size) {
        FUZZ_CHECK(read_16(record) == 0xc00c);
        FUZZ_CHECK(read_16(record + 2) == query->type);
        FUZZ_CHECK(read_16(record + 4) == query->class_);
        /* RFC 2181 §8: no TTL with the top bit set. */
        uint32_t written_ttl = (uint32_t)read_16(record + 6) << 16 | read_16(record + 8);
        FUZZ_CHECK(written_ttl == (ttl > 0x7fffffff ? 0x7fffffff : ttl));
        FUZZ_CHECK(read_16(record + 10) == address_size);
        FUZZ_CHECK(memcmp(record + 12, addresses + i * address_size, address_size) == 0);
    }
    if (query->edns) {
        FUZZ_CHECK(record[0] == 0 && read_16(record + 1) == 41);
        FUZZ_CHECK(read_16(record + 3) == EGRESS_DNS_EDNS_UDP_MAX);
        FUZZ_CHECK(record[5] == 0 && record[6] == 0);
        FUZZ_CHECK(record[7] == (query->edns_dnssec_ok ? 0x80 : 0) && record[8] == 0);
        FUZZ_CHECK(read_16(record + 9) == 0);
    }
}

/* The answer to a refused message: the header, and an OPT record when one is due. */
static void check_error(const uint8_t *data, const egress_dns_query_t *query,
                        egress_dns_rcode_t rcode) {
    uint8_t opcode = (uint8_t)(data[2] >> 3 & 0x0f);
    FUZZ_CHECK(query->id == read_16(data) && query->opcode == opcode);
    FUZZ_CHECK((rcode == EGRESS_DNS_RCODE_NOTIMP) == (opcode != 0));
    FUZZ_CHECK(rcode == EGRESS_DNS_RCODE_NOTIMP || rcode == EGRESS_DNS_RCODE_FORMERR ||
               (rcode == EGRESS_DNS_RCODE_BADVERS && query->edns));
    uint8_t out[64];
    size_t length = egress_dns_write_error(query, rcode, out, sizeof(out));
    bool with_opt = query->edns;
    FUZZ_CHECK(length == FUZZ_DNS_HEADER + (with_opt ? FUZZ_DNS_OPT : 0));
    FUZZ_CHECK(read_16(out) == query->id);
    FUZZ_CHECK(out[2] == (0x80 | opcode << 3 | (data[2] & 0x01)));
    FUZZ_CHECK(out[3] == (0x80 | (rcode & 0x0f)));
    FUZZ_CHECK(read_16(out + 4) == 0 && read_16(out + 6) == 0 && read_16(out + 8) == 0);
    FUZZ_CHECK(read_16(out + 10) == (with_opt ? 1 : 0));
    if (with_opt)
        FUZZ_CHECK(out[FUZZ_DNS_HEADER + 5] == rcode >> 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A copy of exactly size bytes, so that ASan sees any read past the message. */
    uint8_t *message = malloc(size > 0 ? size : 1);
    FUZZ_CHECK(message != NULL);
    memcpy(message, data, size);
    egress_dns_query_t query;
    egress_dns_rcode_t rcode;
    egress_dns_parse_result_t result = egress_dns_parse_query(message, size, &query, &rcode);
    free(message);

    if (result == EGRESS_DNS_PARSE_DROP) {
        FUZZ_CHECK(size < FUZZ_DNS_HEADER || (data[2] & 0x80) != 0);
        return 0;
    }
    FUZZ_CHECK(size >= FUZZ_DNS_HEADER && (data[2] & 0x80) == 0);
    if (result == EGRESS_DNS_PARSE_ERROR) {
        check_error(data, &query, rcode);
        return 0;
    }
    FUZZ_CHECK(result == EGRESS_DNS_PARSE_QUERY && rcode == EGRESS_DNS_RCODE_NOERROR);
    FUZZ_CHECK(query.id == read_16(data) && query.opcode == 0);
    FUZZ_CHECK(read_16(data + 4) == 1 && read_16(data + 6) == 0 && read_16(data + 8) == 0);
    FUZZ_CHECK(query.question_length >= 5 && query.question_length <= EGRESS_DNS_QUESTION_MAX);
    FUZZ_CHECK(memcmp(query.question, data + FUZZ_DNS_HEADER, query.question_length) == 0);
    FUZZ_CHECK(query.type == read_16(query.question + query.question_length - 4));
    FUZZ_CHECK(query.class_ == read_16(query.question + query.question_length - 2));
    if (query.edns)
        FUZZ_CHECK(query.udp_limit >= EGRESS_DNS_UDP_MAX &&
                   query.udp_limit <= EGRESS_DNS_EDNS_UDP_MAX);
    else
        FUZZ_CHECK(query.udp_limit == EGRESS_DNS_UDP_MAX &&
                   size == FUZZ_DNS_HEADER + query.question_length);
    check_name(&query);

    static uint8_t addresses[EGRESS_DNS_ADDRESSES_MAX * 16];
    for (size_t i = 0; i < sizeof(addresses); i++)
        addresses[i] = (uint8_t)(i * 7 + 1);
    static const size_t counts[] = {0, 1, EGRESS_DNS_ADDRESSES_MAX};
    size_t limits[] = {EGRESS_DNS_UDP_MAX, query.udp_limit, EGRESS_DNS_TCP_MAX};
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
            egress_dns_rcode_t answer_rcode =
                counts[c] == 0 && l == 0 ? EGRESS_DNS_RCODE_NXDOMAIN : EGRESS_DNS_RCODE_NOERROR;
            check_response(&query, answer_rcode, addresses, counts[c], 300, limits[l]);
        }
    }
    /* A limit about the smallest answer (the query's size, less up to 15 as its last byte says)
     * that cuts records short or leaves no room at all, and a TTL to clamp. */
    check_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses, EGRESS_DNS_ADDRESSES_MAX,
                   0xffffffff, size - (data[size - 1] & 0x0f));
    return 0;
}
