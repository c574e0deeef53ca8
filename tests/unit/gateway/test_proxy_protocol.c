/* Unit tests of the PROXY protocol v1/v2 parser (gateway/proxy_protocol.c). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/proxy_protocol.h"

static const uint8_t v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static gw_proxy_status_t parse_text(const char *text, gw_proxy_header_t *header) {
    return gw_proxy_protocol_parse((const uint8_t *)text, strlen(text), header);
}

static void source_text(const gw_proxy_header_t *header, char *out, size_t size) {
    if (header->source.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&header->source)->sin_addr, out, size);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&header->source)->sin6_addr, out, size);
}

static void test_v1_tcp4_and_tcp6(void **state) {
    (void)state;
    gw_proxy_header_t header;
    char text[64];
    const char *line = "PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\nGET / HTTP/1.1\r\n";
    assert_int_equal(parse_text(line, &header), GW_PROXY_DONE);
    assert_int_equal(header.length, strlen("PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\n"));
    assert_false(header.local);
    source_text(&header, text, sizeof(text));
    assert_string_equal(text, "203.0.113.7");
    assert_int_equal(ntohs(((struct sockaddr_in *)&header.source)->sin_port), 5555);

    assert_int_equal(parse_text("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", &header),
                     GW_PROXY_DONE);
    source_text(&header, text, sizeof(text));
    assert_string_equal(text, "2001:db8::1");

    assert_int_equal(parse_text("PROXY UNKNOWN\r\n", &header), GW_PROXY_DONE);
    assert_true(header.local);
}

static void test_v1_partial_and_invalid(void **state) {
    (void)state;
    gw_proxy_header_t header;
    assert_int_equal(parse_text("", &header), GW_PROXY_NEED_MORE);
    assert_int_equal(parse_text("PRO", &header), GW_PROXY_NEED_MORE);
    assert_int_equal(parse_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2", &header), GW_PROXY_NEED_MORE);
    const char *invalid[] = {
        "GET / HTTP/1.1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",        /* LF without CR */
        "PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",    /* bad address */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",  /* port out of range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",     /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",     /* sign */
        "PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",  /* family mismatch */
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",      /* unknown protocol */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",        /* missing field */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",    /* extra field */
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        assert_int_equal(parse_text(invalid[i], &header), GW_PROXY_INVALID);
    char long_line[200];
    memset(long_line, 'a', sizeof(long_line));
    memcpy(long_line, "PROXY ", 6);
    assert_int_equal(gw_proxy_protocol_parse((const uint8_t *)long_line, sizeof(long_line), &header),
                     GW_PROXY_INVALID);
}

static size_t v2_header(uint8_t *out, uint8_t version_command, uint8_t family,
                        const uint8_t *payload, size_t payload_length) {
    memcpy(out, v2_signature, 12);
    out[12] = version_command;
    out[13] = family;
    out[14] = (uint8_t)(payload_length >> 8);
    out[15] = (uint8_t)payload_length;
    if (payload_length > 0)
        memcpy(out + 16, payload, payload_length);
    return 16 + payload_length;
}

static void test_v2_proxy_with_ssl_tlv(void **state) {
    (void)state;
    uint8_t payload[12 + 8] = {198, 51, 100, 9, 127, 0, 0, 1, 0x04, 0xD2, 0x01, 0xBB,
                               /* PP2_TYPE_SSL, length 5, client = PP2_CLIENT_SSL, verify 0 */
                               0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0};
    uint8_t data[64];
    size_t length = v2_header(data, 0x21, 0x11, payload, sizeof(payload));
    gw_proxy_header_t header;
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_DONE);
    assert_int_equal(header.length, length);
    assert_true(header.ssl);
    assert_false(header.local);
    char text[64];
    source_text(&header, text, sizeof(text));
    assert_string_equal(text, "198.51.100.9");
    assert_int_equal(ntohs(((struct sockaddr_in *)&header.source)->sin_port), 1234);
    /* Every shorter prefix asks for more. */
    for (size_t cut = 0; cut < length; cut++)
        assert_int_equal(gw_proxy_protocol_parse(data, cut, &header), GW_PROXY_NEED_MORE);
}

static void test_v2_ipv6_local_and_invalid(void **state) {
    (void)state;
    uint8_t payload[36] = {0x20, 0x01, 0x0d, 0xb8};
    payload[15] = 1;
    uint8_t data[128];
    gw_proxy_header_t header;
    size_t length = v2_header(data, 0x21, 0x21, payload, sizeof(payload));
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_DONE);
    char text[64];
    source_text(&header, text, sizeof(text));
    assert_string_equal(text, "2001:db8::1");
    assert_false(header.ssl);

    length = v2_header(data, 0x20, 0x00, NULL, 0);
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_DONE);
    assert_true(header.local);

    length = v2_header(data, 0x31, 0x11, payload, 12); /* version 3 */
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_INVALID);
    length = v2_header(data, 0x22, 0x11, payload, 12); /* command 2 */
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_INVALID);
    length = v2_header(data, 0x21, 0x11, payload, 8); /* addresses cut short */
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_INVALID);
    length = v2_header(data, 0x21, 0x12, payload, 12); /* UDP */
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_INVALID);
    uint8_t bad_tlv[12 + 3] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x20, 0x00, 0x09};
    length = v2_header(data, 0x21, 0x11, bad_tlv, sizeof(bad_tlv)); /* TLV overruns */
    assert_int_equal(gw_proxy_protocol_parse(data, length, &header), GW_PROXY_INVALID);
    data[14] = 0xFF; /* a declared length over the limit */
    assert_int_equal(gw_proxy_protocol_parse(data, 16, &header), GW_PROXY_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4_and_tcp6),
        cmocka_unit_test(test_v1_partial_and_invalid),
        cmocka_unit_test(test_v2_proxy_with_ssl_tlv),
        cmocka_unit_test(test_v2_ipv6_local_and_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
