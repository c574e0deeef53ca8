/* Unit tests of egress/sniff.c: the SNI of ClientHellos and the Host of HTTP/1.x request heads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "egress/sniff.h"

typedef egress_sniff_result_t (*sniff_function_t)(const uint8_t *data, size_t length,
                                                  egress_sniff_name_t *name);

/* ---- bytes to build messages in ---- */

typedef struct bytes {
    uint8_t *data;
    size_t length;
    size_t capacity;
} bytes_t;

static void bytes_put(bytes_t *bytes, const void *data, size_t length) {
    if (bytes->length + length > bytes->capacity) {
        size_t capacity = bytes->capacity == 0 ? 256 : bytes->capacity;
        while (capacity < bytes->length + length)
            capacity *= 2;
        bytes->data = realloc(bytes->data, capacity);
        assert_non_null(bytes->data);
        bytes->capacity = capacity;
    }
    if (length > 0)
        memcpy(bytes->data + bytes->length, data, length);
    bytes->length += length;
}

static void bytes_put_u8(bytes_t *bytes, size_t value) {
    uint8_t byte = (uint8_t)value;
    bytes_put(bytes, &byte, 1);
}

static void bytes_put_u16(bytes_t *bytes, size_t value) {
    uint8_t big_endian[2] = {(uint8_t)(value >> 8), (uint8_t)value};
    bytes_put(bytes, big_endian, 2);
}

static void bytes_put_u24(bytes_t *bytes, size_t value) {
    uint8_t big_endian[3] = {(uint8_t)(value >> 16), (uint8_t)(value >> 8), (uint8_t)value};
    bytes_put(bytes, big_endian, 3);
}

static void bytes_put_text(bytes_t *bytes, const char *text) {
    bytes_put(bytes, text, strlen(text));
}

static void bytes_free(bytes_t *bytes) {
    free(bytes->data);
    memset(bytes, 0, sizeof(*bytes));
}

/* ---- running the parsers ---- */

/* Runs sniff on a copy of data's first length bytes in a buffer of exactly that size, so that
 * AddressSanitizer catches any read past the end. */
static egress_sniff_result_t sniff_exact(sniff_function_t sniff, const uint8_t *data, size_t length,
                                         egress_sniff_name_t *name) {
    uint8_t *copy = malloc(length > 0 ? length : 1);
    assert_non_null(copy);
    if (length > 0)
        memcpy(copy, data, length);
    egress_sniff_result_t result = sniff(copy, length, name);
    free(copy);
    return result;
}

/* Checks the result of data, and its name (expected_name NULL: anything but NAME). */
static void assert_sniff(sniff_function_t sniff, const uint8_t *data, size_t length,
                         egress_sniff_result_t expected, const char *expected_name) {
    egress_sniff_name_t name;
    memset(&name, 0, sizeof(name));
    egress_sniff_result_t result = sniff_exact(sniff, data, length, &name);
    if (result != expected)
        fail_msg("%s, expected %s", egress_sniff_result_name(result),
                 egress_sniff_result_name(expected));
    if (expected == EGRESS_SNIFF_NAME) {
        assert_string_equal(name.text, expected_name);
        assert_int_equal(name.length, strlen(expected_name));
    }
}

/* Checks that every proper prefix of data asks for more and the whole gives expected. */
static void assert_every_prefix(sniff_function_t sniff, const uint8_t *data, size_t length,
                                egress_sniff_result_t expected, const char *expected_name) {
    for (size_t prefix = 0; prefix < length; prefix++) {
        egress_sniff_name_t name;
        egress_sniff_result_t result = sniff_exact(sniff, data, prefix, &name);
        if (result != EGRESS_SNIFF_MORE)
            fail_msg("%zu of %zu bytes: %s", prefix, length, egress_sniff_result_name(result));
    }
    assert_sniff(sniff, data, length, expected, expected_name);
}

static void assert_tls(const bytes_t *bytes, egress_sniff_result_t expected,
                       const char *expected_name) {
    assert_sniff(egress_sniff_tls, bytes->data, bytes->length, expected, expected_name);
}

static void assert_http(const char *request, egress_sniff_result_t expected,
                        const char *expected_name) {
    assert_sniff(egress_sniff_http, (const uint8_t *)request, strlen(request), expected,
                 expected_name);
}

/* ---- ClientHellos ---- */

enum {
    RECORD_HEADER = 5,
    /* Where the fields of a message from build_client_hello are. */
    HELLO_LENGTH = 1,
    HELLO_VERSION = 4,
    HELLO_SESSION_ID_LENGTH = 38,
    HELLO_CIPHER_SUITES_LENGTH = 71,
    HELLO_COMPRESSION_LENGTH = 79,
    HELLO_EXTENSIONS_LENGTH = 81,
    HELLO_EXTENSIONS = 83,
    /* RFC 8446 §4.2 ExtensionType */
    EXTENSION_SERVER_NAME = 0,
    EXTENSION_SUPPORTED_GROUPS = 10,
    EXTENSION_PADDING = 21,
    EXTENSION_SUPPORTED_VERSIONS = 43,
};

/* Appends an extension of type with length bytes of data. */
static void put_extension(bytes_t *extensions, size_t type, const void *data, size_t length) {
    bytes_put_u16(extensions, type);
    bytes_put_u16(extensions, length);
    bytes_put(extensions, data, length);
}

/* Appends a server_name extension whose list holds each name as a host_name. */
static void put_server_names(bytes_t *extensions, const char *const *names, size_t count) {
    bytes_t list = {0};
    for (size_t i = 0; i < count; i++) {
        bytes_put_u8(&list, 0); /* host_name */
        bytes_put_u16(&list, strlen(names[i]));
        bytes_put_text(&list, names[i]);
    }
    bytes_t body = {0};
    bytes_put_u16(&body, list.length);
    bytes_put(&body, list.data, list.length);
    put_extension(extensions, EXTENSION_SERVER_NAME, body.data, body.length);
    bytes_free(&list);
    bytes_free(&body);
}

static void put_server_name(bytes_t *extensions, const char *name) {
    put_server_names(extensions, &name, 1);
}

/* Appends the extensions a TLS 1.3 client sends beside server_name. */
static void put_usual_extensions(bytes_t *extensions) {
    static const uint8_t groups[] = {0x00, 0x04, 0x00, 0x1d, 0x00, 0x17};
    static const uint8_t versions[] = {0x04, 0x03, 0x04, 0x03, 0x03};
    put_extension(extensions, EXTENSION_SUPPORTED_GROUPS, groups, sizeof(groups));
    put_extension(extensions, EXTENSION_SUPPORTED_VERSIONS, versions, sizeof(versions));
}

/* A ClientHello handshake message (RFC 8446 §4.1.2) with extensions, or with no extensions
 * block at all when extensions is NULL. */
static void build_client_hello(bytes_t *message, const bytes_t *extensions) {
    bytes_t body = {0};
    bytes_put_u16(&body, 0x0303);
    for (size_t i = 0; i < 32; i++)
        bytes_put_u8(&body, 0x40 + i); /* random */
    bytes_put_u8(&body, 32);
    for (size_t i = 0; i < 32; i++)
        bytes_put_u8(&body, 0xa0 + i); /* legacy_session_id */
    static const uint8_t cipher_suites[] = {0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f};
    bytes_put_u16(&body, sizeof(cipher_suites));
    bytes_put(&body, cipher_suites, sizeof(cipher_suites));
    bytes_put_u8(&body, 1);
    bytes_put_u8(&body, 0); /* the null compression method */
    if (extensions != NULL) {
        bytes_put_u16(&body, extensions->length);
        bytes_put(&body, extensions->data, extensions->length);
    }
    bytes_put_u8(message, 1); /* client_hello */
    bytes_put_u24(message, body.length);
    bytes_put(message, body.data, body.length);
    bytes_free(&body);
}

/* Appends one record of content type 22 holding length bytes of payload. */
static void put_record(bytes_t *out, const uint8_t *payload, size_t length) {
    bytes_put_u8(out, 22);
    bytes_put_u16(out, 0x0301);
    bytes_put_u16(out, length);
    bytes_put(out, payload, length);
}

/* message (a handshake message) in one record is MALFORMED; frees message. */
static void assert_hello_malformed(bytes_t *message) {
    bytes_t record = {0};
    put_record(&record, message->data, message->length);
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(message);
}

/* Wraps message into records of the given payload sizes; the last record takes the rest. */
static void put_records(bytes_t *out, const bytes_t *message, const size_t *sizes, size_t count) {
    size_t offset = 0;
    for (size_t i = 0; i < count && offset < message->length; i++) {
        size_t size = i + 1 == count ? message->length - offset : sizes[i];
        put_record(out, message->data + offset, size);
        offset += size;
    }
}

/* A ClientHello in one record, with the usual extensions and server_name (NULL: none). */
static void build_hello_record(bytes_t *out, const char *server_name) {
    bytes_t extensions = {0};
    put_usual_extensions(&extensions);
    if (server_name != NULL)
        put_server_name(&extensions, server_name);
    bytes_t message = {0};
    build_client_hello(&message, &extensions);
    put_record(out, message.data, message.length);
    bytes_free(&extensions);
    bytes_free(&message);
}

/* The ClientHello of extensions in one record. */
static void build_record_with(bytes_t *out, const bytes_t *extensions) {
    bytes_t message = {0};
    build_client_hello(&message, extensions);
    put_record(out, message.data, message.length);
    bytes_free(&message);
}

static void test_tls_server_name(void **state) {
    (void)state;
    bytes_t record = {0};
    build_hello_record(&record, "example.com");
    assert_tls(&record, EGRESS_SNIFF_NAME, "example.com");
    /* What follows the ClientHello (a TLS 1.3 middlebox-compatible change_cipher_spec and early
     * data) is not read. */
    static const uint8_t after[] = {20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xde, 0xad};
    bytes_put(&record, after, sizeof(after));
    assert_tls(&record, EGRESS_SNIFF_NAME, "example.com");
    bytes_free(&record);

    /* server_name first, last or alone. */
    bytes_t extensions = {0};
    put_server_name(&extensions, "a.example");
    put_usual_extensions(&extensions);
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_NAME, "a.example");
    bytes_free(&record);
    bytes_free(&extensions);
    put_server_name(&extensions, "xn--bcher-kva.example");
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_NAME, "xn--bcher-kva.example");
    bytes_free(&record);
    bytes_free(&extensions);
}

static void test_tls_split_at_every_byte(void **state) {
    (void)state;
    bytes_t record = {0};
    build_hello_record(&record, "split.example.com");
    assert_every_prefix(egress_sniff_tls, record.data, record.length, EGRESS_SNIFF_NAME,
                        "split.example.com");
    bytes_free(&record);
}

static void test_tls_several_records(void **state) {
    (void)state;
    bytes_t extensions = {0};
    put_usual_extensions(&extensions);
    put_server_name(&extensions, "records.example");
    bytes_t message = {0};
    build_client_hello(&message, &extensions);
    static const size_t two[] = {50, 0};
    static const size_t three[] = {100, 7, 0};
    static const size_t header_split[] = {1, 2, 1, 0}; /* even the handshake header is split */
    const struct {
        const size_t *sizes;
        size_t count;
    } splits[] = {{two, 2}, {three, 3}, {header_split, 4}};
    for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
        bytes_t records = {0};
        put_records(&records, &message, splits[i].sizes, splits[i].count);
        assert_int_equal(records.length, message.length + RECORD_HEADER * splits[i].count);
        assert_every_prefix(egress_sniff_tls, records.data, records.length, EGRESS_SNIFF_NAME,
                            "records.example");
        bytes_free(&records);
    }
    /* A fragment of every size, one byte each. */
    bytes_t records = {0};
    for (size_t i = 0; i < message.length; i++)
        put_record(&records, message.data + i, 1);
    assert_tls(&records, EGRESS_SNIFF_NAME, "records.example");
    bytes_free(&records);
    bytes_free(&message);
    bytes_free(&extensions);
}

static void test_tls_no_server_name(void **state) {
    (void)state;
    bytes_t record = {0};
    build_hello_record(&record, NULL);
    assert_tls(&record, EGRESS_SNIFF_NO_NAME, NULL);
    bytes_free(&record);
    /* An empty extensions block, and none at all (RFC 5246 §7.4.1.2). */
    bytes_t empty = {0};
    build_record_with(&record, &empty);
    assert_tls(&record, EGRESS_SNIFF_NO_NAME, NULL);
    bytes_free(&record);
    build_record_with(&record, NULL);
    assert_tls(&record, EGRESS_SNIFF_NO_NAME, NULL);
    bytes_free(&record);
}

static void test_tls_duplicate_extensions(void **state) {
    (void)state;
    bytes_t extensions = {0};
    put_usual_extensions(&extensions);
    put_server_name(&extensions, "example.com");
    put_extension(&extensions, EXTENSION_SUPPORTED_GROUPS, "\x00\x02\x00\x1d", 4);
    bytes_t record = {0};
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(&extensions);
    /* Two server_name extensions, the same name or not. */
    put_server_name(&extensions, "good.example");
    put_server_name(&extensions, "evil.example");
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(&extensions);
    /* The highest extension type, twice. */
    put_extension(&extensions, 0xffff, NULL, 0);
    put_extension(&extensions, 0xffff, NULL, 0);
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(&extensions);
}

static void test_tls_server_name_list(void **state) {
    (void)state;
    static const char *const two[] = {"good.example", "evil.example"};
    static const char *const same[] = {"good.example", "good.example"};
    bytes_t extensions = {0};
    bytes_t record = {0};
    put_server_names(&extensions, two, 2);
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(&extensions);
    put_server_names(&extensions, same, 2);
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(&extensions);

    const struct {
        const char *what;
        const uint8_t *body;
        size_t length;
    } broken[] = {
        {"empty extension", (const uint8_t *)"", 0},
        {"empty list", (const uint8_t *)"\x00\x00", 2},
        {"name type 1",
         (const uint8_t *)"\x00\x06\x01\x00\x03"
                          "a.b",
         8},
        {"empty host_name", (const uint8_t *)"\x00\x03\x00\x00\x00", 5},
        {"byte after the list",
         (const uint8_t *)"\x00\x06\x00\x00\x03"
                          "a.bX",
         9},
        {"host_name past the list",
         (const uint8_t *)"\x00\x05\x00\x00\x03"
                          "a.b",
         8},
        {"byte after the host_name",
         (const uint8_t *)"\x00\x07\x00\x00\x03"
                          "a.bX",
         9},
        {"host_name then another type",
         (const uint8_t *)"\x00\x0a\x00\x00\x03"
                          "a.b\x01\x00\x01X",
         12},
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        put_extension(&extensions, EXTENSION_SERVER_NAME, broken[i].body, broken[i].length);
        build_record_with(&record, &extensions);
        egress_sniff_name_t name;
        egress_sniff_result_t result =
            sniff_exact(egress_sniff_tls, record.data, record.length, &name);
        if (result != EGRESS_SNIFF_MALFORMED)
            fail_msg("%s: %s", broken[i].what, egress_sniff_result_name(result));
        bytes_free(&record);
        bytes_free(&extensions);
    }
}

/* Rebuilds the record of message after adding delta to the size-byte length at offset. */
static egress_sniff_result_t sniff_with_length_changed(const bytes_t *message, size_t offset,
                                                       size_t size, int delta) {
    bytes_t changed = {0};
    bytes_put(&changed, message->data, message->length);
    size_t value = 0;
    for (size_t i = 0; i < size; i++)
        value = value << 8 | changed.data[offset + i];
    value += (size_t)(long)delta;
    for (size_t i = size; i-- > 0; value >>= 8)
        changed.data[offset + i] = (uint8_t)value;
    bytes_t record = {0};
    put_record(&record, changed.data, changed.length);
    egress_sniff_name_t name;
    egress_sniff_result_t result = sniff_exact(egress_sniff_tls, record.data, record.length, &name);
    bytes_free(&record);
    bytes_free(&changed);
    return result;
}

static void test_tls_wrong_lengths(void **state) {
    (void)state;
    bytes_t extensions = {0};
    put_usual_extensions(&extensions);
    put_server_name(&extensions, "example.com");
    bytes_t message = {0};
    build_client_hello(&message, &extensions);
    /* Every length field in the message: the extensions' and server_name's too. */
    size_t server_name = HELLO_EXTENSIONS + 4 + 6 + 4 + 5;
    const struct {
        const char *what;
        size_t offset;
        size_t size;
    } fields[] = {
        {"session_id", HELLO_SESSION_ID_LENGTH, 1},
        {"cipher_suites", HELLO_CIPHER_SUITES_LENGTH, 2},
        {"compression_methods", HELLO_COMPRESSION_LENGTH, 1},
        {"extensions", HELLO_EXTENSIONS_LENGTH, 2},
        {"supported_groups", HELLO_EXTENSIONS + 2, 2},
        {"supported_versions", HELLO_EXTENSIONS + 4 + 6 + 2, 2},
        {"server_name", server_name + 2, 2},
        {"server_name_list", server_name + 4, 2},
        {"host_name", server_name + 7, 2},
    };
    assert_int_equal(message.data[server_name + 1], EXTENSION_SERVER_NAME);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        for (int delta = -1; delta <= 1; delta += 2) {
            egress_sniff_result_t result =
                sniff_with_length_changed(&message, fields[i].offset, fields[i].size, delta);
            if (result != EGRESS_SNIFF_MALFORMED)
                fail_msg("%s length %+d: %s", fields[i].what, delta,
                         egress_sniff_result_name(result));
        }
    }
    /* An odd cipher_suites length that the bytes agree with. */
    bytes_t odd_suites = {0};
    bytes_put(&odd_suites, message.data, HELLO_CIPHER_SUITES_LENGTH + 2 + 5);
    bytes_put(&odd_suites, message.data + HELLO_CIPHER_SUITES_LENGTH + 2 + 6,
              message.length - (HELLO_CIPHER_SUITES_LENGTH + 2 + 6));
    odd_suites.data[HELLO_LENGTH + 2]--;
    odd_suites.data[HELLO_CIPHER_SUITES_LENGTH + 1] = 5;
    bytes_t record = {0};
    assert_hello_malformed(&odd_suites);

    /* One byte too few for a length or a type: a ClientHello cut after the first byte of
     * its extensions length, and extensions that end with one byte. */
    bytes_t cut = {0};
    bytes_put(&cut, message.data, HELLO_EXTENSIONS_LENGTH + 1);
    cut.data[HELLO_LENGTH + 2] = (uint8_t)(HELLO_EXTENSIONS_LENGTH + 1 - 4);
    assert_hello_malformed(&cut);
    bytes_t odd = {0};
    put_usual_extensions(&odd);
    bytes_put_u8(&odd, 0);
    bytes_t odd_message = {0};
    build_client_hello(&odd_message, &odd);
    assert_hello_malformed(&odd_message);
    bytes_free(&odd);

    /* The handshake length: one byte more waits for a record that holds it, one less leaves a
     * byte after the ClientHello. */
    assert_int_equal(sniff_with_length_changed(&message, HELLO_LENGTH, 3, 1), EGRESS_SNIFF_MORE);
    assert_int_equal(sniff_with_length_changed(&message, HELLO_LENGTH, 3, -1),
                     EGRESS_SNIFF_MALFORMED);

    /* Fields out of range: no session_id past 32, cipher_suites even and not empty, a
     * compression method, a legacy_version of SSL 3.0 to TLS 1.3. */
    static const struct {
        size_t offset;
        uint8_t value;
    } out_of_range[] = {
        {HELLO_SESSION_ID_LENGTH, 33}, {HELLO_CIPHER_SUITES_LENGTH + 1, 0},
        {HELLO_COMPRESSION_LENGTH, 0}, {HELLO_VERSION, 2},
        {HELLO_VERSION + 1, 5},
    };
    for (size_t i = 0; i < sizeof(out_of_range) / sizeof(out_of_range[0]); i++) {
        bytes_t changed = {0};
        bytes_put(&changed, message.data, message.length);
        changed.data[out_of_range[i].offset] = out_of_range[i].value;
        put_record(&record, changed.data, changed.length);
        assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
        bytes_free(&record);
        bytes_free(&changed);
    }

    /* The record's length: one more waits for that byte, one less leaves the message to a next
     * record whose header is the message's last byte. */
    put_record(&record, message.data, message.length);
    record.data[4]++;
    assert_tls(&record, EGRESS_SNIFF_MORE, NULL);
    record.data[4] -= 2;
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(&message);
    bytes_free(&extensions);
}

static void test_tls_wrong_records(void **state) {
    (void)state;
    bytes_t record = {0};
    build_hello_record(&record, "example.com");
    /* Refused at the first byte that tells: the content type, the version, the length. */
    static const struct {
        size_t offset;
        uint8_t value;
        size_t decided_at; /* bytes the parser needs to refuse it */
    } changes[] = {
        {0, 23, 1},   /* application_data */
        {0, 21, 1},   /* alert */
        {0, 0x80, 1}, /* an SSL 2 ClientHello */
        {1, 2, 2},    /* version 0x0201 */
        {1, 4, 2},    /* version 0x0401 */
        {2, 5, 3},    /* version 0x0305 */
        {3, 0x40, 5}, /* length 2^14 + ... */
        {5, 2, 6},    /* a ServerHello */
    };
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        bytes_t changed = {0};
        bytes_put(&changed, record.data, record.length);
        changed.data[changes[i].offset] = changes[i].value;
        assert_sniff(egress_sniff_tls, changed.data, changes[i].decided_at - 1, EGRESS_SNIFF_MORE,
                     NULL);
        assert_sniff(egress_sniff_tls, changed.data, changes[i].decided_at, EGRESS_SNIFF_MALFORMED,
                     NULL);
        assert_tls(&changed, EGRESS_SNIFF_MALFORMED, NULL);
        bytes_free(&changed);
    }
    /* A zero-length record (RFC 8446 §5.1), and the longest a record may be plus one. */
    static const uint8_t empty[] = {22, 3, 1, 0, 0};
    assert_sniff(egress_sniff_tls, empty, sizeof(empty), EGRESS_SNIFF_MALFORMED, NULL);
    static const uint8_t too_long[] = {22, 3, 1, 0x40, 0x01};
    assert_sniff(egress_sniff_tls, too_long, sizeof(too_long), EGRESS_SNIFF_MALFORMED, NULL);
    /* A second handshake message after the ClientHello, in the same record. */
    bytes_t extra = {0};
    bytes_put(&extra, record.data + RECORD_HEADER, record.length - RECORD_HEADER);
    static const uint8_t finished[] = {20, 0, 0, 0};
    bytes_put(&extra, finished, sizeof(finished));
    bytes_t extra_record = {0};
    put_record(&extra_record, extra.data, extra.length);
    assert_tls(&extra_record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&extra_record);
    bytes_free(&extra);
    /* Another content type between the fragments of the ClientHello. */
    bytes_t split = {0};
    put_record(&split, record.data + RECORD_HEADER, 20);
    static const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 40};
    bytes_put(&split, alert, sizeof(alert));
    put_record(&split, record.data + RECORD_HEADER + 20, record.length - RECORD_HEADER - 20);
    assert_tls(&split, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&split);
    /* Not TLS at all. */
    assert_sniff(egress_sniff_tls, (const uint8_t *)"GET / HTTP/1.1\r\n", 16,
                 EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
}

static void test_tls_oversize(void **state) {
    (void)state;
    /* A ClientHello padded (RFC 7685) to a given message length. */
    const struct {
        size_t message_length;
        size_t records;
        egress_sniff_result_t expected;
    } sizes[] = {
        {EGRESS_SNIFF_BYTES_MAX - RECORD_HEADER, 1, EGRESS_SNIFF_NAME},
        {EGRESS_SNIFF_BYTES_MAX - RECORD_HEADER + 1, 1, EGRESS_SNIFF_MALFORMED},
        {EGRESS_SNIFF_BYTES_MAX - 2 * RECORD_HEADER, 2, EGRESS_SNIFF_NAME},
        {EGRESS_SNIFF_BYTES_MAX - 2 * RECORD_HEADER + 1, 2, EGRESS_SNIFF_MALFORMED},
        {100000, 8, EGRESS_SNIFF_MALFORMED},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        bytes_t extensions = {0};
        put_server_name(&extensions, "big.example");
        bytes_t message = {0};
        build_client_hello(&message, &extensions);
        size_t padding = sizes[i].message_length - message.length - 4;
        bytes_free(&message);
        uint8_t *zeros = calloc(1, padding);
        assert_non_null(zeros);
        put_extension(&extensions, EXTENSION_PADDING, zeros, padding);
        free(zeros);
        build_client_hello(&message, &extensions);
        assert_int_equal(message.length, sizes[i].message_length);
        size_t fragment = (message.length + sizes[i].records - 1) / sizes[i].records;
        size_t fragments[8];
        for (size_t j = 0; j < 8; j++)
            fragments[j] = fragment;
        bytes_t records = {0};
        put_records(&records, &message, fragments, sizes[i].records);
        if (sizes[i].expected == EGRESS_SNIFF_MALFORMED && sizes[i].records == 1) {
            /* Refused as soon as the record header shows it cannot fit. */
            assert_sniff(egress_sniff_tls, records.data, RECORD_HEADER, EGRESS_SNIFF_MALFORMED,
                         NULL);
        } else if (sizes[i].expected == EGRESS_SNIFF_NAME) {
            assert_sniff(egress_sniff_tls, records.data, records.length - 1, EGRESS_SNIFF_MORE,
                         NULL);
        }
        assert_tls(&records, sizes[i].expected, "big.example");
        bytes_free(&records);
        bytes_free(&message);
        bytes_free(&extensions);
    }
}

static void test_tls_upper_case_and_trailing_dot(void **state) {
    (void)state;
    bytes_t record = {0};
    build_hello_record(&record, "WWW.Example.COM.");
    assert_tls(&record, EGRESS_SNIFF_NAME, "www.example.com");
    bytes_free(&record);
}

static void test_tls_not_a_hostname(void **state) {
    (void)state;
    /* RFC 6066 §3: no IP literals; and nothing that is not a hostname. */
    static const char *const names[] = {
        "192.0.2.1",    "192.0.2.1.",    "::1",          "[2001:db8::1]",
        "127.1",        "0x7f.0x1",      "exa_mple.com", "a..b",
        ".example.com", "example.com..", "-a.example",   "a-.example",
        "a b.example",  "a.example:443", "a/b.example",  "caf\xc3\xa9.example",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        bytes_t record = {0};
        build_hello_record(&record, names[i]);
        egress_sniff_name_t name;
        egress_sniff_result_t result =
            sniff_exact(egress_sniff_tls, record.data, record.length, &name);
        if (result != EGRESS_SNIFF_MALFORMED)
            fail_msg("SNI \"%s\": %s", names[i], egress_sniff_result_name(result));
        bytes_free(&record);
    }
    /* A NUL inside the name ("good.example\0.evil"). */
    bytes_t extensions = {0};
    put_extension(&extensions, EXTENSION_SERVER_NAME,
                  "\x00\x15\x00\x00\x12"
                  "good.example\x00.evil",
                  23);
    bytes_t record = {0};
    build_record_with(&record, &extensions);
    assert_tls(&record, EGRESS_SNIFF_MALFORMED, NULL);
    bytes_free(&record);
    bytes_free(&extensions);
}

/* What python3's ssl module (OpenSSL 3.0.19) sends first: SSLContext(PROTOCOL_TLS_CLIENT)
 * .wrap_bio(..., server_hostname="pypi.org").do_handshake(), the outgoing BIO's bytes. */
static const uint8_t python_pypi_hello[] = {
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x4e, 0x03, 0xc3, 0x61, 0x5e,
    0x2f, 0x27, 0x62, 0xb0, 0x0f, 0x14, 0xc5, 0x44, 0x2c, 0x21, 0x98, 0x86, 0xe3, 0x4c, 0x71, 0xc0,
    0x37, 0x38, 0x33, 0xcc, 0xa4, 0xfa, 0xc9, 0xb7, 0x2d, 0xb6, 0x0b, 0x20, 0xe8, 0xd4, 0x9f, 0xe5,
    0xfc, 0x23, 0xb5, 0x50, 0xe8, 0xd7, 0xcd, 0xa7, 0xad, 0x28, 0x70, 0x99, 0x91, 0x7f, 0xdf, 0x8c,
    0xea, 0xed, 0xab, 0x0f, 0x67, 0x54, 0xa9, 0x76, 0xe6, 0xc3, 0x4a, 0xa9, 0x00, 0x3e, 0x13, 0x02,
    0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
    0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x01, 0x75,
    0x00, 0x00, 0x00, 0x0d, 0x00, 0x0b, 0x00, 0x00, 0x08, 0x70, 0x79, 0x70, 0x69, 0x2e, 0x6f, 0x72,
    0x67, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00,
    0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01,
    0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00,
    0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08,
    0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06,
    0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b, 0x00,
    0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01,
    0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x1f, 0xf6, 0x8f, 0x0f, 0x86, 0x77,
    0x2a, 0xc9, 0x2e, 0xb4, 0x3b, 0x3b, 0xd4, 0xaa, 0xcc, 0x06, 0x2d, 0xbb, 0x85, 0x08, 0x0f, 0x04,
    0x7f, 0x55, 0xc9, 0xdc, 0xf0, 0x8a, 0x52, 0xb4, 0xfb, 0x08, 0x00, 0x15, 0x00, 0xc7, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00,
};

/* What `openssl s_client -connect 127.0.0.1:PORT -servername example.com` (OpenSSL 3.0.19)
 * sends first. */
static const uint8_t openssl_example_hello[] = {
    0x16, 0x03, 0x01, 0x01, 0x38, 0x01, 0x00, 0x01, 0x34, 0x03, 0x03, 0x97, 0xc4, 0xea, 0xe2, 0xbe,
    0x1b, 0x58, 0x98, 0x24, 0xa1, 0xec, 0xd7, 0xfc, 0xc0, 0xc8, 0x0e, 0xb0, 0xd6, 0x6c, 0x59, 0x62,
    0x90, 0xc9, 0xc4, 0x8c, 0x1c, 0x93, 0x31, 0xe5, 0x2f, 0x70, 0xa7, 0x20, 0x0e, 0xfa, 0x33, 0x4a,
    0xa7, 0x7a, 0x33, 0x51, 0xe7, 0xe0, 0x27, 0x6d, 0xc0, 0x47, 0x93, 0x1c, 0xd3, 0x80, 0x9a, 0x69,
    0x98, 0x31, 0x99, 0x09, 0x46, 0xa1, 0xbf, 0x50, 0xd7, 0xa1, 0x40, 0xf0, 0x00, 0x3e, 0x13, 0x02,
    0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
    0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xad,
    0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
    0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16,
    0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01,
    0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17,
    0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07,
    0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01,
    0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
    0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00,
    0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0xa5, 0x49, 0xa6,
    0xea, 0xc9, 0x3b, 0xef, 0xb0, 0x89, 0x2e, 0x8d, 0x65, 0x7a, 0xe6, 0xfc, 0x10, 0x64, 0x58, 0x7d,
    0x1d, 0xda, 0x1c, 0x8d, 0x7f, 0x07, 0xe6, 0xec, 0xaa, 0xf1, 0xbd, 0xb3, 0x63,
};

static void test_tls_captured_client_hellos(void **state) {
    (void)state;
    assert_every_prefix(egress_sniff_tls, python_pypi_hello, sizeof(python_pypi_hello),
                        EGRESS_SNIFF_NAME, "pypi.org");
    assert_every_prefix(egress_sniff_tls, openssl_example_hello, sizeof(openssl_example_hello),
                        EGRESS_SNIFF_NAME, "example.com");
    /* The same ClientHello split in two records as a middlebox may forward it. */
    bytes_t message = {0};
    bytes_put(&message, python_pypi_hello + RECORD_HEADER,
              sizeof(python_pypi_hello) - RECORD_HEADER);
    static const size_t halves[] = {256, 0};
    bytes_t records = {0};
    put_records(&records, &message, halves, 2);
    assert_tls(&records, EGRESS_SNIFF_NAME, "pypi.org");
    bytes_free(&records);
    bytes_free(&message);
    /* Neither is a request head. */
    assert_sniff(egress_sniff_http, python_pypi_hello, sizeof(python_pypi_hello),
                 EGRESS_SNIFF_MALFORMED, NULL);
}

/* ---- HTTP request heads ---- */

static void test_http_host(void **state) {
    (void)state;
    assert_http("GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\n\r\n",
                EGRESS_SNIFF_NAME, "example.com");
    assert_http("GET /a?b HTTP/1.1\r\nAccept: */*\r\nhost:example.com  \r\n\r\n", EGRESS_SNIFF_NAME,
                "example.com");
    assert_http("HEAD / HTTP/1.0\r\nHost: example.com\r\n\r\n", EGRESS_SNIFF_NAME, "example.com");
    /* RFC 9112 §2.2: empty lines before the request line are ignored. */
    assert_http("\r\nGET / HTTP/1.1\r\nHost: example.com\r\n\r\n", EGRESS_SNIFF_NAME,
                "example.com");
    /* A field named like Host is not Host. */
    assert_http("GET / HTTP/1.1\r\nX-Host: evil.example\r\nHost: good.example\r\n"
                "Hosts: evil.example\r\n\r\n",
                EGRESS_SNIFF_NAME, "good.example");
}

/* Each of hosts, as the Host of a request, is MALFORMED. */
static void assert_hosts_malformed(const char *const *hosts, size_t count) {
    for (size_t i = 0; i < count; i++) {
        char request[256];
        snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hosts[i]);
        egress_sniff_name_t name;
        egress_sniff_result_t result =
            egress_sniff_http((const uint8_t *)request, strlen(request), &name);
        if (result != EGRESS_SNIFF_MALFORMED)
            fail_msg("Host \"%s\": %s", hosts[i], egress_sniff_result_name(result));
    }
}

static void test_http_port(void **state) {
    (void)state;
    assert_http("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", EGRESS_SNIFF_NAME,
                "example.com");
    assert_http("GET / HTTP/1.1\r\nHost: example.com.:80\r\n\r\n", EGRESS_SNIFF_NAME,
                "example.com");
    static const char *const bad[] = {"example.com:",       "example.com:8o",
                                      "example.com:123456", "example.com:65536",
                                      "example.com:80:80",  ":80",
                                      "example.com: 80"};
    assert_hosts_malformed(bad, sizeof(bad) / sizeof(bad[0]));
}

static void test_http_long_names(void **state) {
    (void)state;
    /* The longest name: four labels of 63, 63, 63 and 61 bytes; one byte more is too long. */
    char host[300];
    for (size_t i = 0; i < 4; i++) {
        memset(host + i * 64, 'h', 63);
        host[i * 64 + 63] = '.';
    }
    host[EGRESS_SNIFF_NAME_MAX] = '\0';
    char request[400];
    snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nHost: %s:443\r\n\r\n", host);
    assert_http(request, EGRESS_SNIFF_NAME, host);
    snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nHost: %sh\r\n\r\n", host);
    assert_http(request, EGRESS_SNIFF_MALFORMED, NULL);
    /* An IPv6 literal longer than any address. */
    assert_http("GET / HTTP/1.1\r\nHost: [0000:0000:0000:0000:0000:ffff:192.000.002.001]\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
}

static void test_http_upper_case_and_trailing_dot(void **state) {
    (void)state;
    assert_http("GET / HTTP/1.1\r\nHOST: WWW.Example.COM\r\n\r\n", EGRESS_SNIFF_NAME,
                "www.example.com");
    assert_http("GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", EGRESS_SNIFF_NAME, "example.com");
    assert_http("GET / HTTP/1.1\r\nHost: example.com..\r\n\r\n", EGRESS_SNIFF_MALFORMED, NULL);
}

static void test_http_two_hosts(void **state) {
    (void)state;
    /* RFC 9112 §3.2: more than one Host line is an error, even when they agree. */
    assert_http("GET / HTTP/1.1\r\nHost: good.example\r\nHost: evil.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET / HTTP/1.1\r\nHost: good.example\r\nhost: good.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET / HTTP/1.1\r\nHost:\r\nHost: evil.example\r\n\r\n", EGRESS_SNIFF_MALFORMED,
                NULL);
    assert_http("GET / HTTP/1.1\r\nHost: good.example, evil.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    /* RFC 9112 §5.2: a folded line (obs-fold) is refused, not joined. */
    assert_http("GET / HTTP/1.1\r\nHost: good.example\r\n evil.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET / HTTP/1.1\r\nHost:\r\n good.example\r\n\r\n", EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET / HTTP/1.1\r\nX-A: b\r\n\tc\r\nHost: good.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
}

static void test_http_absolute_form(void **state) {
    (void)state;
    /* RFC 9112 §3.2.2: the target's authority wins; a Host that says otherwise is refused. */
    assert_http("GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n", EGRESS_SNIFF_NAME,
                "example.com");
    assert_http("GET HTTP://Example.COM:80?q HTTP/1.1\r\nHost: example.com.:8080\r\n\r\n",
                EGRESS_SNIFF_NAME, "example.com");
    assert_http("GET https://example.com HTTP/1.1\r\n\r\n", EGRESS_SNIFF_NAME, "example.com");
    assert_http("GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET http://192.0.2.1/ HTTP/1.1\r\nHost: good.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET http://good.example/ HTTP/1.1\r\nHost: \r\n\r\n", EGRESS_SNIFF_MALFORMED,
                NULL);
    assert_http("GET http://192.0.2.1:80/ HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n",
                EGRESS_SNIFF_NO_NAME, NULL);
    assert_http("GET http://[2001:db8::1]/ HTTP/1.1\r\nHost: [2001:DB8:0::1]:80\r\n\r\n",
                EGRESS_SNIFF_NO_NAME, NULL);
    /* Userinfo (RFC 9110 §4.2.4), another scheme, no host, or no scheme at all. */
    assert_http("GET http://good.example@evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("GET http:///x HTTP/1.1\r\nHost: example.com\r\n\r\n", EGRESS_SNIFF_MALFORMED,
                NULL);
    assert_http("GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n", EGRESS_SNIFF_MALFORMED,
                NULL);
    /* CONNECT's authority-form would open a tunnel; asterisk-form is OPTIONS' alone. */
    assert_http("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                EGRESS_SNIFF_MALFORMED, NULL);
    assert_http("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", EGRESS_SNIFF_NAME,
                "example.com");
    assert_http("GET * HTTP/1.1\r\nHost: example.com\r\n\r\n", EGRESS_SNIFF_MALFORMED, NULL);
}

static void test_http_no_host(void **state) {
    (void)state;
    assert_http("GET / HTTP/1.0\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
    assert_http("GET / HTTP/1.0\r\nUser-Agent: old\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
    assert_http("GET / HTTP/1.1\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
    assert_http("GET / HTTP/1.1\r\nHost:\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
}

static void test_http_ip_literals(void **state) {
    (void)state;
    assert_http("GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
    assert_http("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
    assert_http("GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
    assert_http("GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n", EGRESS_SNIFF_NO_NAME, NULL);
    /* Addresses only some parsers read as such, and broken literals. */
    static const char *const bad[] = {"[::1",        "[::1]x",      "[fe80::1%25eth0]",
                                      "[v1.x]",      "127.1",       "0x7f000001",
                                      "192.0.2.1.5", "[192.0.2.1]", "[]"};
    assert_hosts_malformed(bad, sizeof(bad) / sizeof(bad[0]));
}

static void test_http_garbage(void **state) {
    (void)state;
    static const char *const requests[] = {
        "\x16\x03\x01\x02\x00",                        /* TLS */
        "get / HTTP/1.1\r\n\r\n",                      /* methods are case-sensitive */
        "GET /\r\n",                                   /* HTTP/0.9 */
        "GET / HTTP/2.0\r\n",                          /* not HTTP/1.x */
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",            /* the HTTP/2 preface */
        "GET / RTSP/1.0\r\nHost: example.com\r\n\r\n", /* llhttp reads RTSP too */
        "SOURCE / ICE/1.0\r\nHost: example.com\r\n\r\n",
        "GET / HTTP/1.1\nHost: example.com\n\n",        /* bare line feeds */
        "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", /* a space before the colon */
        "GET / HTTP/1.1\r\nHost: exa\x01mple.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "SSH-2.0-OpenSSH_9.6\r\n",
    };
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        egress_sniff_name_t name;
        egress_sniff_result_t result = sniff_exact(egress_sniff_http, (const uint8_t *)requests[i],
                                                   strlen(requests[i]), &name);
        if (result != EGRESS_SNIFF_MALFORMED)
            fail_msg("request %zu: %s", i, egress_sniff_result_name(result));
    }
    /* Bytes that are nothing, including a NUL. */
    static const uint8_t binary[] = {0x00, 0x01, 0xff, 0x80};
    assert_sniff(egress_sniff_http, binary, sizeof(binary), EGRESS_SNIFF_MALFORMED, NULL);
}

static void test_http_split_at_every_byte(void **state) {
    (void)state;
    const char *request = "GET /index.html HTTP/1.1\r\nUser-Agent: test\r\nHost: Split.Example"
                          ":8080\r\nAccept: */*\r\n\r\n";
    assert_every_prefix(egress_sniff_http, (const uint8_t *)request, strlen(request),
                        EGRESS_SNIFF_NAME, "split.example");
}

static void test_http_body_not_needed(void **state) {
    (void)state;
    assert_http("POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100000\r\n\r\n"
                "the first bytes of a long body",
                EGRESS_SNIFF_NAME, "example.com");
    assert_http("POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
                "not a chunk at all",
                EGRESS_SNIFF_NAME, "example.com");
    /* Nor the requests behind it. */
    assert_http("GET / HTTP/1.1\r\nHost: example.com\r\n\r\nGET / HTTP/1.1\r\nHost: other\r\n",
                EGRESS_SNIFF_NAME, "example.com");
}

static void test_http_head_too_long(void **state) {
    (void)state;
    /* The head must end within EGRESS_SNIFF_BYTES_MAX bytes. */
    size_t length = EGRESS_SNIFF_BYTES_MAX + 100;
    char *request = malloc(length + 1);
    assert_non_null(request);
    const char *start = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Pad: ";
    memset(request, 'a', length);
    memcpy(request, start, strlen(start));
    /* Ends exactly at the limit. */
    memcpy(request + EGRESS_SNIFF_BYTES_MAX - 4, "\r\n\r\n", 4);
    assert_sniff(egress_sniff_http, (const uint8_t *)request, length, EGRESS_SNIFF_NAME,
                 "example.com");
    /* One byte later. */
    memset(request + EGRESS_SNIFF_BYTES_MAX - 4, 'a', 4);
    memcpy(request + EGRESS_SNIFF_BYTES_MAX - 3, "\r\n\r\n", 4);
    assert_sniff(egress_sniff_http, (const uint8_t *)request, EGRESS_SNIFF_BYTES_MAX - 1,
                 EGRESS_SNIFF_MORE, NULL);
    assert_sniff(egress_sniff_http, (const uint8_t *)request, length, EGRESS_SNIFF_MALFORMED, NULL);
    free(request);
}

/* ---- hostnames ---- */

static void assert_hostname(const char *text, const char *expected) {
    egress_sniff_name_t name;
    memset(&name, 0x5a, sizeof(name));
    bool valid = egress_sniff_hostname(text, strlen(text), &name);
    if (expected == NULL) {
        if (valid)
            fail_msg("\"%s\" accepted as \"%s\"", text, name.text);
        assert_int_equal(name.length, 0);
        assert_string_equal(name.text, "");
        return;
    }
    if (!valid)
        fail_msg("\"%s\" refused", text);
    assert_string_equal(name.text, expected);
    assert_int_equal(name.length, strlen(expected));
}

static void test_hostname(void **state) {
    (void)state;
    assert_hostname("example.com", "example.com");
    assert_hostname("Example.COM.", "example.com");
    assert_hostname("localhost", "localhost");
    assert_hostname("a", "a");
    assert_hostname("1a", "1a");
    assert_hostname("123.example", "123.example");
    assert_hostname("a-b.c--d.example", "a-b.c--d.example");
    assert_hostname("example.0x", NULL);
    assert_hostname("example.0xg", "example.0xg");
    assert_hostname("", NULL);
    assert_hostname(".", NULL);
    assert_hostname("..", NULL);
    assert_hostname("a..b", NULL);
    assert_hostname(".a", NULL);
    assert_hostname("-a", NULL);
    assert_hostname("a-", NULL);
    assert_hostname("a.-b.c", NULL);
    assert_hostname("a_b.example", NULL);
    assert_hostname("a*.example", NULL);
    /* A last label that is a number: an IPv4 address as some parser reads it. */
    assert_hostname("192.0.2.1", NULL);
    assert_hostname("example.123", NULL);
    assert_hostname("2130706433", NULL);
    assert_hostname("0x7f.0x1", NULL);
    assert_hostname("example.0XFF", NULL);

    /* Labels of 63 bytes, not 64; names of 253 bytes (254 with the trailing dot), not 254. */
    char text[300];
    memset(text, 'a', 63);
    strcpy(text + 63, ".example");
    assert_hostname(text, text);
    memset(text, 'b', 64);
    strcpy(text + 64, ".example");
    assert_hostname(text, NULL);
    for (size_t i = 0; i < 4; i++) {
        memset(text + i * 64, 'c', 63);
        text[i * 64 + 63] = '.';
    }
    text[253] = '\0'; /* four labels: 63 + 63 + 63 + 61 bytes and three dots */
    assert_hostname(text, text);
    char expected[300];
    strcpy(expected, text);
    strcat(text, ".");
    assert_hostname(text, expected);
    text[253] = 'c';
    text[254] = '\0';
    assert_hostname(text, NULL);
    /* Not NUL-terminated: only length bytes are read. */
    egress_sniff_name_t name;
    assert_true(egress_sniff_hostname("example.comX", 11, &name));
    assert_string_equal(name.text, "example.com");
    assert_false(egress_sniff_hostname("exa\0mple.com", 12, &name));
    /* Normalised in place. */
    strcpy(name.text, "WWW.Example.COM.");
    assert_true(egress_sniff_hostname(name.text, strlen(name.text), &name));
    assert_string_equal(name.text, "www.example.com");
    assert_int_equal(name.length, 15);
}

static void test_result_names(void **state) {
    (void)state;
    assert_string_equal(egress_sniff_result_name(EGRESS_SNIFF_MORE), "more");
    assert_string_equal(egress_sniff_result_name(EGRESS_SNIFF_NAME), "name");
    assert_string_equal(egress_sniff_result_name(EGRESS_SNIFF_NO_NAME), "no name");
    assert_string_equal(egress_sniff_result_name(EGRESS_SNIFF_MALFORMED), "malformed");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_server_name),
        cmocka_unit_test(test_tls_split_at_every_byte),
        cmocka_unit_test(test_tls_several_records),
        cmocka_unit_test(test_tls_no_server_name),
        cmocka_unit_test(test_tls_duplicate_extensions),
        cmocka_unit_test(test_tls_server_name_list),
        cmocka_unit_test(test_tls_wrong_lengths),
        cmocka_unit_test(test_tls_wrong_records),
        cmocka_unit_test(test_tls_oversize),
        cmocka_unit_test(test_tls_upper_case_and_trailing_dot),
        cmocka_unit_test(test_tls_not_a_hostname),
        cmocka_unit_test(test_tls_captured_client_hellos),
        cmocka_unit_test(test_http_host),
        cmocka_unit_test(test_http_port),
        cmocka_unit_test(test_http_long_names),
        cmocka_unit_test(test_http_upper_case_and_trailing_dot),
        cmocka_unit_test(test_http_two_hosts),
        cmocka_unit_test(test_http_absolute_form),
        cmocka_unit_test(test_http_no_host),
        cmocka_unit_test(test_http_ip_literals),
        cmocka_unit_test(test_http_garbage),
        cmocka_unit_test(test_http_split_at_every_byte),
        cmocka_unit_test(test_http_body_not_needed),
        cmocka_unit_test(test_http_head_too_long),
        cmocka_unit_test(test_hostname),
        cmocka_unit_test(test_result_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
