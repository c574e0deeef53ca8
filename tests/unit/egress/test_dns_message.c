/* Unit tests of egress/dns_message.c: dig's queries and hand-built ones, answers byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "egress/dns_message.h"

/* Queries captured from dig 9.18 (bind9-dnsutils) sent to a UDP socket that printed them. It sets
 * RD and AD (RFC 6840 §5.7), and with EDNS offers 1232 bytes and sends a cookie (RFC 7873). */
/* dig pypi.org A +noedns */
#define DIG_PYPI_A "9cf9 0120 0001 0000 0000 0000  04 70797069 03 6f7267 00  0001 0001"
/* dig pypi.org A */
#define DIG_PYPI_A_EDNS                                                                            \
    "914c 0120 0001 0000 0000 0001  04 70797069 03 6f7267 00  0001 0001"                           \
    "  00 0029 04d0 00000000 000c  000a 0008 03d18ff21a71e18b"
/* dig PyPI.Org AAAA */
#define DIG_PYPI_AAAA_EDNS_MIXED_CASE                                                              \
    "2fec 0120 0001 0000 0000 0001  04 50795049 03 4f7267 00  001c 0001"                           \
    "  00 0029 04d0 00000000 000c  000a 0008 849ba154940c67d4"
/* dig files.pythonhosted.org AAAA +noedns */
#define DIG_PYTHONHOSTED_AAAA                                                                      \
    "1345 0120 0001 0000 0000 0000  05 66696c6573 0c 707974686f6e686f73746564 03 6f7267 00"        \
    "  001c 0001"

/* The question of "pypi.org" A IN, as the answers echo it. */
#define PYPI_QUESTION_A "04 70797069 03 6f7267 00  0001 0001"
/* An OPT record as the answers carry it: 1232 bytes offered, version 0, no DO, no options. */
#define ANSWER_OPT "00 0029 04d0 00 00 0000 0000"

enum { TEST_MESSAGE_MAX = 4096 };

/* Decodes hex (spaces ignored) into out; returns the length. */
static size_t from_hex(const char *hex, uint8_t *out, size_t out_size) {
    size_t length = 0;
    int high = -1;
    for (const char *cursor = hex; *cursor != '\0'; cursor++) {
        if (*cursor == ' ')
            continue;
        int nibble = *cursor >= 'a' ? *cursor - 'a' + 10 : *cursor - '0';
        assert_true(nibble >= 0 && nibble < 16);
        if (high < 0) {
            high = nibble;
            continue;
        }
        assert_true(length < out_size);
        out[length++] = (uint8_t)(high << 4 | nibble);
        high = -1;
    }
    assert_int_equal(high, -1);
    return length;
}

/* Checks got[0..length) byte for byte against hex, printing both on a difference. */
static void assert_hex(const uint8_t *got, size_t length, const char *hex) {
    uint8_t expected[TEST_MESSAGE_MAX];
    size_t expected_length = from_hex(hex, expected, sizeof(expected));
    if (length == expected_length && memcmp(got, expected, length) == 0)
        return;
    char text[2 * TEST_MESSAGE_MAX + 1];
    for (size_t i = 0; i < length && i < TEST_MESSAGE_MAX; i++)
        snprintf(text + 2 * i, 3, "%02x", got[i]);
    text[2 * (length < TEST_MESSAGE_MAX ? length : TEST_MESSAGE_MAX)] = '\0';
    fail_msg("got %zu bytes %s, expected %zu bytes %s", length, text, expected_length, hex);
}

/* Parses the message written as hex. */
static egress_dns_parse_result_t parse_hex(const char *hex, egress_dns_query_t *query,
                                           egress_dns_rcode_t *rcode) {
    uint8_t message[TEST_MESSAGE_MAX];
    size_t length = from_hex(hex, message, sizeof(message));
    return egress_dns_parse_query(message, length, query, rcode);
}

/* Parses hex, which must be a query to answer. */
static void parse_query(const char *hex, egress_dns_query_t *query) {
    egress_dns_rcode_t rcode;
    assert_int_equal(parse_hex(hex, query, &rcode), EGRESS_DNS_PARSE_QUERY);
    assert_int_equal(rcode, EGRESS_DNS_RCODE_NOERROR);
}

/* Parses hex, which must be refused with rcode, and checks the error answer. */
static void assert_error(const char *hex, egress_dns_rcode_t expected_rcode, const char *answer) {
    egress_dns_query_t query;
    egress_dns_rcode_t rcode;
    assert_int_equal(parse_hex(hex, &query, &rcode), EGRESS_DNS_PARSE_ERROR);
    assert_int_equal(rcode, expected_rcode);
    uint8_t out[TEST_MESSAGE_MAX];
    size_t length = egress_dns_write_error(&query, rcode, out, sizeof(out));
    assert_hex(out, length, answer);
}

/* Writes a query into out and returns its length: a header (ID abcd, RD, one question), a name
 * of label_count labels of 'a' as long as label_lengths says, then A IN. */
static size_t build_query(const size_t *label_lengths, size_t label_count, uint8_t *out,
                          size_t out_size) {
    size_t length = from_hex("abcd 0100 0001 0000 0000 0000", out, out_size);
    for (size_t i = 0; i < label_count; i++) {
        assert_true(length + 1 + label_lengths[i] + 5 <= out_size);
        out[length++] = (uint8_t)label_lengths[i];
        memset(out + length, 'a', label_lengths[i]);
        length += label_lengths[i];
    }
    return length + from_hex("00 0001 0001", out + length, out_size - length);
}

static const uint8_t test_addresses_ipv4[] = {192, 0, 2, 1, 192, 0, 2, 2};

static void test_dig_query(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query(DIG_PYPI_A, &query);
    assert_int_equal(query.id, 0x9cf9);
    assert_int_equal(query.opcode, 0);
    assert_true(query.recursion_desired);
    assert_false(query.edns);
    assert_int_equal(query.udp_limit, 512);
    assert_int_equal(query.type, EGRESS_DNS_TYPE_A);
    assert_int_equal(query.class_, EGRESS_DNS_CLASS_IN);
    assert_true(query.name_valid);
    assert_string_equal(query.name, "pypi.org");
    assert_int_equal(query.name_length, 8);
    assert_hex(query.question, query.question_length, PYPI_QUESTION_A);

    parse_query(DIG_PYTHONHOSTED_AAAA, &query);
    assert_int_equal(query.type, EGRESS_DNS_TYPE_AAAA);
    assert_string_equal(query.name, "files.pythonhosted.org");
    assert_int_equal(query.name_length, 22);
}

/* RFC 6891 §6.1.2: the OPT record read, its cookie option ignored. */
static void test_dig_query_with_edns(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query(DIG_PYPI_A_EDNS, &query);
    assert_int_equal(query.id, 0x914c);
    assert_true(query.edns);
    assert_false(query.edns_dnssec_ok);
    assert_int_equal(query.udp_limit, 1232);
    assert_string_equal(query.name, "pypi.org");
    /* The question ends before the OPT record. */
    assert_hex(query.question, query.question_length, PYPI_QUESTION_A);
}

/* RFC 6891 §6.2.5: below 512 counts as 512; above what is offered, 1232. The DO bit is kept. */
static void test_edns_payload_size_clamped(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 0100 00000000 0000",
                &query);
    assert_int_equal(query.udp_limit, 512);
    parse_query("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 ffff 00008000 0000",
                &query);
    assert_int_equal(query.udp_limit, 1232);
    assert_true(query.edns_dnssec_ok);
    parse_query("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 0400 00000000 0000",
                &query);
    assert_int_equal(query.udp_limit, 1024);
}

static void test_answer_a_two_addresses(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query(DIG_PYPI_A, &query);
    uint8_t out[TEST_MESSAGE_MAX];
    size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, test_addresses_ipv4,
                                              2, 300, query.udp_limit, out, sizeof(out));
    /* QR, RD copied, RA; AD not copied; the owners point to the question at 12. */
    assert_hex(out, length,
               "9cf9 8180 0001 0002 0000 0000 " PYPI_QUESTION_A
               "  c00c 0001 0001 0000012c 0004 c0000201"
               "  c00c 0001 0001 0000012c 0004 c0000202");
}

/* The question is echoed in the case it came in; the name is read lower-cased; OPT answers OPT. */
static void test_answer_aaaa_with_edns(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query(DIG_PYPI_AAAA_EDNS_MIXED_CASE, &query);
    assert_string_equal(query.name, "pypi.org");
    static const uint8_t address[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    uint8_t out[TEST_MESSAGE_MAX];
    size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, address, 1, 60,
                                              query.udp_limit, out, sizeof(out));
    assert_hex(out, length,
               "2fec 8180 0001 0001 0000 0001  04 50795049 03 4f7267 00  001c 0001"
               "  c00c 001c 0001 0000003c 0010 20010db8000000000000000000000001 " ANSWER_OPT);
}

static void test_answer_nxdomain(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query(DIG_PYPI_A_EDNS, &query);
    uint8_t out[TEST_MESSAGE_MAX];
    size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NXDOMAIN, NULL, 0, 300,
                                              query.udp_limit, out, sizeof(out));
    assert_hex(out, length, "914c 8183 0001 0000 0000 0001 " PYPI_QUESTION_A " " ANSWER_OPT);
}

/* Another type for an allowed name: NOERROR without records; addresses are not written as MX. */
static void test_answer_empty_noerror(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query("1234 0000 0001 0000 0000 0000  04 70797069 03 6f7267 00  000f 0001", &query);
    assert_int_equal(query.type, 15);
    assert_false(query.recursion_desired);
    uint8_t out[TEST_MESSAGE_MAX];
    size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, test_addresses_ipv4,
                                              2, 300, query.udp_limit, out, sizeof(out));
    assert_hex(out, length, "1234 8080 0001 0000 0000 0000  04 70797069 03 6f7267 00  000f 0001");
}

/* The answer's OPT carries the query's DO bit (RFC 3225 §3), never its options or its size. */
static void test_answer_edns_echoed(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A
                " 00 0029 1000 00008000 0008  000a 0004 01020304",
                &query);
    uint8_t out[TEST_MESSAGE_MAX];
    size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_SERVFAIL, NULL, 0, 300,
                                              query.udp_limit, out, sizeof(out));
    assert_hex(out, length,
               "abcd 8182 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 04d0 00 00 8000 0000");
}

/* Checks an answer to a pypi.org A query holding the first count of addresses, whole. */
static void assert_a_records(const uint8_t *out, size_t length, size_t count, bool edns,
                             const uint8_t *addresses) {
    size_t question_end = 12 + 14;
    assert_int_equal(length, question_end + count * 16 + (edns ? 11 : 0));
    assert_int_equal(out[6] << 8 | out[7], count);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *record = out + question_end + i * 16;
        uint8_t expected[16];
        from_hex("c00c 0001 0001 0000012c 0004", expected, sizeof(expected));
        memcpy(expected + 12, addresses + 4 * i, 4);
        assert_memory_equal(record, expected, 16);
    }
    if (edns) {
        uint8_t opt[11];
        from_hex(ANSWER_OPT, opt, sizeof(opt));
        assert_memory_equal(out + length - 11, opt, 11);
    }
}

/* RFC 2181 §9: what does not fit 512 bytes is left out in whole records, and TC says so. */
static void test_truncation(void **state) {
    (void)state;
    uint8_t addresses[40 * 4];
    for (size_t i = 0; i < 40; i++) {
        uint8_t address[4] = {198, 51, 100, (uint8_t)(i + 1)};
        memcpy(addresses + 4 * i, address, 4);
    }
    egress_dns_query_t query;
    uint8_t out[TEST_MESSAGE_MAX];

    /* Without EDNS: 26 bytes of header and question, then 30 records of 16 (506 bytes). */
    parse_query(DIG_PYPI_A, &query);
    size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses, 40, 300,
                                              query.udp_limit, out, sizeof(out));
    assert_hex(out, 12, "9cf9 8380 0001 001e 0000 0000");
    assert_a_records(out, length, 30, false, addresses);

    /* With EDNS and 512 offered the OPT record stays (RFC 6891 §7): 29 records (501 bytes). */
    parse_query("9cf9 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 0200 00000000 0000",
                &query);
    length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses, 40, 300,
                                       query.udp_limit, out, sizeof(out));
    assert_hex(out, 12, "9cf9 8380 0001 001d 0000 0001");
    assert_a_records(out, length, 29, true, addresses);

    /* dig's 1232 bytes, and TCP, hold all 40. */
    parse_query(DIG_PYPI_A_EDNS, &query);
    length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses, 40, 300,
                                       query.udp_limit, out, sizeof(out));
    assert_hex(out, 12, "914c 8180 0001 0028 0000 0001");
    assert_a_records(out, length, 40, true, addresses);
    parse_query(DIG_PYPI_A, &query);
    length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses, 40, 300,
                                       EGRESS_DNS_TCP_MAX, out, sizeof(out));
    assert_hex(out, 12, "9cf9 8180 0001 0028 0000 0000");
    assert_a_records(out, length, 40, false, addresses);

    /* out_size bounds it as the limit does. */
    length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses, 40, 300,
                                       EGRESS_DNS_TCP_MAX, out, 26 + 16 * 3 + 15);
    assert_hex(out, 12, "9cf9 8380 0001 0003 0000 0000");
    assert_a_records(out, length, 3, false, addresses);
}

/* The longest question and EGRESS_DNS_ADDRESSES_MAX AAAA records fit what EDNS offers. */
static void test_addresses_max_fit_edns(void **state) {
    (void)state;
    uint8_t message[TEST_MESSAGE_MAX];
    size_t labels[] = {63, 63, 63, 61};
    size_t length = build_query(labels, 4, message, sizeof(message));
    message[11] = 1; /* ARCOUNT */
    message[length - 3] = EGRESS_DNS_TYPE_AAAA;
    length += from_hex("00 0029 04d0 00000000 0000", message + length, sizeof(message) - length);
    egress_dns_query_t query;
    egress_dns_rcode_t rcode;
    assert_int_equal(egress_dns_parse_query(message, length, &query, &rcode),
                     EGRESS_DNS_PARSE_QUERY);
    assert_int_equal(query.question_length, EGRESS_DNS_QUESTION_MAX);
    uint8_t addresses[EGRESS_DNS_ADDRESSES_MAX * 16] = {0};
    uint8_t out[TEST_MESSAGE_MAX];
    size_t written =
        egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses,
                                  EGRESS_DNS_ADDRESSES_MAX, 300, query.udp_limit, out, sizeof(out));
    assert_int_equal(written, 12 + 259 + 16 * 28 + 11);
    assert_int_equal(out[2] & 0x02, 0);
    /* Over 512 bytes without EDNS: TC, 8 records. */
    message[11] = 0;
    assert_int_equal(egress_dns_parse_query(message, length - 11, &query, &rcode),
                     EGRESS_DNS_PARSE_QUERY);
    written =
        egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, addresses,
                                  EGRESS_DNS_ADDRESSES_MAX, 300, query.udp_limit, out, sizeof(out));
    assert_int_equal(written, 12 + 259 + 8 * 28);
    assert_int_equal(out[2] & 0x02, 0x02);
}

static void test_write_response_limits(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query(DIG_PYPI_A_EDNS, &query);
    uint8_t out[TEST_MESSAGE_MAX];
    /* Header, question and OPT need 37 bytes. */
    assert_int_equal(
        egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, NULL, 0, 300, 512, out, 36), 0);
    assert_int_equal(egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, NULL, 0, 300, 36,
                                               out, sizeof(out)),
                     0);
    assert_int_equal(egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR,
                                               test_addresses_ipv4, 2, 300, 512, out, 37),
                     37);
    assert_int_equal(out[2] & 0x02, 0x02);
    /* RFC 2181 §8: no TTL with the top bit set. */
    size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, test_addresses_ipv4,
                                              1, 0xffffffff, 512, out, sizeof(out));
    assert_hex(out, length,
               "914c 8180 0001 0001 0000 0001 " PYPI_QUESTION_A
               "  c00c 0001 0001 7fffffff 0004 c0000201 " ANSWER_OPT);
    /* RFC 7766 §8: never more than 65535 bytes, whatever the limit and room: 4093 records. */
    enum { MANY = 5000, LARGE_OUT = 100000 };
    uint8_t *many = calloc(MANY, 4);
    uint8_t *large_out = malloc(LARGE_OUT);
    assert_non_null(many);
    assert_non_null(large_out);
    length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NOERROR, many, MANY, 300, SIZE_MAX,
                                       large_out, LARGE_OUT);
    assert_int_equal(length, 12 + 14 + 4093 * 16 + 11);
    assert_hex(large_out, 12, "914c 8380 0001 0ffd 0000 0001");
    free(many);
    free(large_out);
    /* An extended rcode needs an OPT record. */
    parse_query(DIG_PYPI_A, &query);
    assert_int_equal(egress_dns_write_response(&query, EGRESS_DNS_RCODE_BADVERS, NULL, 0, 300, 512,
                                               out, sizeof(out)),
                     0);
}

/* RFC 1035 §4.1.4: a query's name has no earlier name to point to. */
static void test_compression_pointer_refused(void **state) {
    (void)state;
    /* The error answer: ID, QR, RD copied, RA, FORMERR, no sections. */
    assert_error("abcd 0100 0001 0000 0000 0000  c00c 0001 0001", EGRESS_DNS_RCODE_FORMERR,
                 "abcd 8181 0000 0000 0000 0000");
    /* After a label, and pointing to itself: a loop that is never followed. */
    assert_error("abcd 0000 0001 0000 0000 0000  04 70797069 c00c 0001 0001",
                 EGRESS_DNS_RCODE_FORMERR, "abcd 8081 0000 0000 0000 0000");
    assert_error("abcd 0100 0001 0000 0000 0000  c011 0001 0001", EGRESS_DNS_RCODE_FORMERR,
                 "abcd 8181 0000 0000 0000 0000");
}

/* RFC 1035 §3.1: labels of 63 bytes, names of 255; RFC 6891 §5: no extended label types. */
static void test_name_lengths(void **state) {
    (void)state;
    uint8_t message[TEST_MESSAGE_MAX];
    egress_dns_query_t query;
    egress_dns_rcode_t rcode;

    size_t longest_label[] = {63};
    size_t length = build_query(longest_label, 1, message, sizeof(message));
    assert_int_equal(egress_dns_parse_query(message, length, &query, &rcode),
                     EGRESS_DNS_PARSE_QUERY);
    assert_int_equal(query.name_length, 63);

    size_t too_long_label[] = {64};
    length = build_query(too_long_label, 1, message, sizeof(message));
    assert_int_equal(egress_dns_parse_query(message, length, &query, &rcode),
                     EGRESS_DNS_PARSE_ERROR);
    assert_int_equal(rcode, EGRESS_DNS_RCODE_FORMERR);

    /* 64 + 64 + 64 + 62 + 1 = 255 bytes: 253 as text. */
    size_t longest_name[] = {63, 63, 63, 61};
    length = build_query(longest_name, 4, message, sizeof(message));
    assert_int_equal(egress_dns_parse_query(message, length, &query, &rcode),
                     EGRESS_DNS_PARSE_QUERY);
    assert_int_equal(query.name_length, EGRESS_DNS_NAME_MAX);
    assert_int_equal(strlen(query.name), EGRESS_DNS_NAME_MAX);
    assert_int_equal(query.name[63], '.');

    size_t too_long_name[] = {63, 63, 63, 62};
    length = build_query(too_long_name, 4, message, sizeof(message));
    assert_int_equal(egress_dns_parse_query(message, length, &query, &rcode),
                     EGRESS_DNS_PARSE_ERROR);
    size_t many_labels[130];
    for (size_t i = 0; i < 130; i++)
        many_labels[i] = 1;
    length = build_query(many_labels, 130, message, sizeof(message));
    assert_int_equal(egress_dns_parse_query(message, length, &query, &rcode),
                     EGRESS_DNS_PARSE_ERROR);

    /* The label types 01 and 10. */
    assert_error("abcd 0100 0001 0000 0000 0000  41 00 0001 0001", EGRESS_DNS_RCODE_FORMERR,
                 "abcd 8181 0000 0000 0000 0000");
    assert_error("abcd 0100 0001 0000 0000 0000  80 00 0001 0001", EGRESS_DNS_RCODE_FORMERR,
                 "abcd 8181 0000 0000 0000 0000");
}

/* The root: a name of no labels. */
static void test_root_name(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query("abcd 0100 0001 0000 0000 0000  00 0002 0001", &query);
    assert_true(query.name_valid);
    assert_string_equal(query.name, "");
    assert_int_equal(query.question_length, 5);
}

/* RFC 9619 §4 and RFC 1035 §4.1.2: one question, no answers, no authority records. */
static void test_section_counts(void **state) {
    (void)state;
    assert_error("abcd 0100 0000 0000 0000 0000", EGRESS_DNS_RCODE_FORMERR,
                 "abcd 8181 0000 0000 0000 0000");
    /* No question but an OPT record (dig +header-only): the FORMERR carries one (RFC 6891 §7). */
    assert_error("abcd 0100 0000 0000 0000 0001  00 0029 04d0 00000000 000c  000a 0008 "
                 "03d18ff21a71e18b",
                 EGRESS_DNS_RCODE_FORMERR, "abcd 8181 0000 0000 0000 0001 " ANSWER_OPT);
    assert_error("abcd 0100 0002 0000 0000 0000 " PYPI_QUESTION_A " " PYPI_QUESTION_A,
                 EGRESS_DNS_RCODE_FORMERR, "abcd 8181 0000 0000 0000 0000");
    assert_error("abcd 0100 0001 0001 0000 0000 " PYPI_QUESTION_A " c00c 0001 0001 00000001 0004 "
                 "01020304",
                 EGRESS_DNS_RCODE_FORMERR, "abcd 8181 0000 0000 0000 0000");
    assert_error("abcd 0100 0001 0000 0001 0000 " PYPI_QUESTION_A, EGRESS_DNS_RCODE_FORMERR,
                 "abcd 8181 0000 0000 0000 0000");
}

/* RFC 1035 §4.1.1: only QUERY; the answer copies the opcode. */
static void test_opcode_not_implemented(void **state) {
    (void)state;
    assert_error("abcd 1100 0001 0000 0000 0000 " PYPI_QUESTION_A, EGRESS_DNS_RCODE_NOTIMP,
                 "abcd 9184 0000 0000 0000 0000");
    /* UPDATE (RFC 2136) with its own section meanings: not read at all. */
    assert_error("abcd 2800 0001 0002 0003 0004", EGRESS_DNS_RCODE_NOTIMP,
                 "abcd a884 0000 0000 0000 0000");
}

/* Responses and fragments of headers are never answered. */
static void test_dropped(void **state) {
    (void)state;
    egress_dns_query_t query;
    egress_dns_rcode_t rcode;
    assert_int_equal(parse_hex("abcd 8180 0001 0000 0000 0000 " PYPI_QUESTION_A, &query, &rcode),
                     EGRESS_DNS_PARSE_DROP);
    assert_int_equal(parse_hex("abcd 0100 0001 0000 0000 00", &query, &rcode),
                     EGRESS_DNS_PARSE_DROP);
    assert_int_equal(parse_hex("", &query, &rcode), EGRESS_DNS_PARSE_DROP);
    /* A response with another opcode is a response too. */
    assert_int_equal(parse_hex("abcd 9184 0000 0000 0000 0000", &query, &rcode),
                     EGRESS_DNS_PARSE_DROP);
}

/* RFC 6891 §6.1.1: one OPT record, named by the root, its options filling its data. */
static void test_additional_records(void **state) {
    (void)state;
    const char *formerr = "abcd 8181 0000 0000 0000 0000";
    assert_error("abcd 0100 0001 0000 0000 0002 " PYPI_QUESTION_A " 00 0029 04d0 00000000 0000"
                 " 00 0029 04d0 00000000 0000",
                 EGRESS_DNS_RCODE_FORMERR, formerr);
    /* OPT under a name, and a record other than OPT (a TSIG). */
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " c00c 0029 04d0 00000000 0000",
                 EGRESS_DNS_RCODE_FORMERR, formerr);
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 00fa 00ff 00000000 0000",
                 EGRESS_DNS_RCODE_FORMERR, formerr);
    /* A broken OPT record (§7: the FORMERR carries an OPT, DO copied): data past the message's
     * end; an option past the data's end; half an option header. */
    const char *formerr_opt = "abcd 8181 0000 0000 0000 0001 " ANSWER_OPT;
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 04d0 00000000 0004"
                 " 000a 00",
                 EGRESS_DNS_RCODE_FORMERR, formerr_opt);
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 04d0 00000000 0006"
                 " 000a 0004 0102",
                 EGRESS_DNS_RCODE_FORMERR, formerr_opt);
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 04d0 00008000 0002"
                 " 000a",
                 EGRESS_DNS_RCODE_FORMERR,
                 "abcd 8181 0000 0000 0000 0001 00 0029 04d0 00 00 8000 0000");
    /* Short of the OPT's fixed part. */
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 04d0 00000000 00",
                 EGRESS_DNS_RCODE_FORMERR, formerr);
    /* An option of no data, and none at all. */
    egress_dns_query_t query;
    parse_query("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 04d0 00000000 0004"
                " 000c 0000",
                &query);
    assert_true(query.edns);
}

/* RFC 6891 §6.1.3: a version above 0 is answered BADVERS: 16, its high bits in the OPT record. */
static void test_edns_version_refused(void **state) {
    (void)state;
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 1000 00 01 8000 0000",
                 EGRESS_DNS_RCODE_BADVERS,
                 "abcd 8180 0000 0000 0000 0001  00 0029 04d0 01 00 8000 0000");
    /* A broken message of a later version is still FORMERR, in an OPT of version 0. */
    assert_error(
        "abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 1000 00 01 8000 0000 ff",
        EGRESS_DNS_RCODE_FORMERR, "abcd 8181 0000 0000 0000 0001  00 0029 04d0 00 00 8000 0000");
}

/* RFC 1035 §4.1: nothing after the last section; and nothing cut short. */
static void test_trailing_and_missing_bytes(void **state) {
    (void)state;
    const char *formerr = "abcd 8181 0000 0000 0000 0000";
    assert_error("abcd 0100 0001 0000 0000 0000 " PYPI_QUESTION_A " 00", EGRESS_DNS_RCODE_FORMERR,
                 formerr);
    /* The OPT record was read: the error carries one (RFC 6891 §7). */
    assert_error("abcd 0100 0001 0000 0000 0001 " PYPI_QUESTION_A " 00 0029 04d0 00000000 0000"
                 " 6a756e6b",
                 EGRESS_DNS_RCODE_FORMERR, "abcd 8181 0000 0000 0000 0001 " ANSWER_OPT);
    /* A name running past the end, no QCLASS, half a QTYPE, no question at all. */
    assert_error("abcd 0100 0001 0000 0000 0000  04 707970", EGRESS_DNS_RCODE_FORMERR, formerr);
    assert_error("abcd 0100 0001 0000 0000 0000  04 70797069 03 6f7267", EGRESS_DNS_RCODE_FORMERR,
                 formerr);
    assert_error("abcd 0100 0001 0000 0000 0000  04 70797069 03 6f7267 00 0001",
                 EGRESS_DNS_RCODE_FORMERR, formerr);
    assert_error("abcd 0100 0001 0000 0000 0000  04 70797069 03 6f7267 00 00",
                 EGRESS_DNS_RCODE_FORMERR, formerr);
    assert_error("abcd 0100 0001 0000 0000 0000", EGRESS_DNS_RCODE_FORMERR, formerr);
}

/* A name no policy can hold still parses, so it can be answered NXDOMAIN. */
static void test_names_not_hostnames(void **state) {
    (void)state;
    static const char *const labels[] = {
        "03 612e62", /* "a.b": a dot inside a label is not a label boundary */
        "03 610062", /* NUL */
        "03 612062", /* space */
        "03 61ff62", /* an 8-bit byte */
        "03 612a62", /* '*' */
        "03 612f62", /* '/' */
    };
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        char message[256];
        snprintf(message, sizeof(message),
                 "abcd 0100 0001 0000 0000 0000 %s 03 6f7267 00 0001 0001", labels[i]);
        egress_dns_query_t query;
        parse_query(message, &query);
        assert_false(query.name_valid);
        assert_string_equal(query.name, "");
        assert_int_equal(query.name_length, 0);
        assert_int_equal(query.question_length, 4 + 4 + 1 + 4);
        uint8_t out[TEST_MESSAGE_MAX];
        size_t length = egress_dns_write_response(&query, EGRESS_DNS_RCODE_NXDOMAIN, NULL, 0, 0,
                                                  512, out, sizeof(out));
        assert_int_equal(length, 12 + 13);
        assert_int_equal(out[3], 0x83);
    }
    /* Hyphens, digits and underscores are hostname bytes. */
    egress_dns_query_t query;
    parse_query("abcd 0100 0001 0000 0000 0000  04 5f746370 06 782d59322d5a 00 0021 0001", &query);
    assert_true(query.name_valid);
    assert_string_equal(query.name, "_tcp.x-y2-z");
}

/* ASCII letters are lower-cased, nothing else changes. */
static void test_upper_case_lowered(void **state) {
    (void)state;
    egress_dns_query_t query;
    parse_query("abcd 0100 0001 0000 0000 0000  03 575777 07 4578416d506c45 03 434f4d 00 0001 0001",
                &query);
    assert_string_equal(query.name, "www.example.com");
    assert_hex(query.question, query.question_length,
               "03 575777 07 4578416d506c45 03 434f4d 00 0001 0001");
}

static void test_write_error_room(void **state) {
    (void)state;
    egress_dns_query_t query;
    egress_dns_rcode_t rcode;
    assert_int_equal(parse_hex("abcd 0100 0000 0000 0000 0000", &query, &rcode),
                     EGRESS_DNS_PARSE_ERROR);
    uint8_t out[12];
    assert_int_equal(egress_dns_write_error(&query, rcode, out, 11), 0);
    assert_int_equal(egress_dns_write_error(&query, rcode, out, 12), 12);
    assert_int_equal(egress_dns_write_error(&query, EGRESS_DNS_RCODE_BADVERS, out, 12), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dig_query),
        cmocka_unit_test(test_dig_query_with_edns),
        cmocka_unit_test(test_edns_payload_size_clamped),
        cmocka_unit_test(test_answer_a_two_addresses),
        cmocka_unit_test(test_answer_aaaa_with_edns),
        cmocka_unit_test(test_answer_nxdomain),
        cmocka_unit_test(test_answer_empty_noerror),
        cmocka_unit_test(test_answer_edns_echoed),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_addresses_max_fit_edns),
        cmocka_unit_test(test_write_response_limits),
        cmocka_unit_test(test_compression_pointer_refused),
        cmocka_unit_test(test_name_lengths),
        cmocka_unit_test(test_root_name),
        cmocka_unit_test(test_section_counts),
        cmocka_unit_test(test_opcode_not_implemented),
        cmocka_unit_test(test_dropped),
        cmocka_unit_test(test_additional_records),
        cmocka_unit_test(test_edns_version_refused),
        cmocka_unit_test(test_trailing_and_missing_bytes),
        cmocka_unit_test(test_names_not_hostnames),
        cmocka_unit_test(test_upper_case_lowered),
        cmocka_unit_test(test_write_error_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
