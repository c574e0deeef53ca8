/* Fuzz target: catalog records (routing/record.c) from any field/value pairs, and the expansion
 * of a valid record's mask_request_host (routing/mask.c). Input: field, value, field, value...
 * separated by 0xff. */
#include "routing/mask.h"
#include "routing/record.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_RECORD_PARTS = 24 };

static void check_record(const route_record_t *record) {
    if (record->error != NULL) {
        FUZZ_CHECK(record->pool_key_prefix == NULL);
        return;
    }
    /* The pool key holds every field whole (issue 13: a fixed buffer cut it). */
    size_t id = strlen(record->sandbox_id);
    size_t execution = strlen(record->execution_id);
    size_t address = strlen(record->address_text);
    FUZZ_CHECK(record->pool_key_prefix_length == id + execution + address + 3);
    FUZZ_CHECK(memcmp(record->pool_key_prefix, record->sandbox_id, id) == 0);
    FUZZ_CHECK(memcmp(record->pool_key_prefix + id + 1, record->execution_id, execution) == 0);
    FUZZ_CHECK(memcmp(record->pool_key_prefix + id + execution + 2, record->address_text,
                      address) == 0);
    if (record->mask_request_host == NULL)
        return;
    static const uint16_t ports[] = {1, 80, 3000, 65535};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        char expanded[512];
        int length = route_mask_expand(record->mask_request_host, ports[i], expanded,
                                       sizeof(expanded));
        FUZZ_CHECK(length >= 0 && (size_t)length == strlen(expanded));
        /* Whatever the record says, the Host it makes is one header value. */
        for (int j = 0; j < length; j++) {
            unsigned char c = (unsigned char)expanded[j];
            FUZZ_CHECK(c > 0x20 && c != 0x7f);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *parts[FUZZ_RECORD_PARTS];
    size_t lengths[FUZZ_RECORD_PARTS];
    size_t count = fuzz_split(data, size, parts, lengths, FUZZ_RECORD_PARTS);
    size_t pairs = count / 2;
    const char *fields[FUZZ_RECORD_PARTS / 2];
    const char *values[FUZZ_RECORD_PARTS / 2];
    size_t field_lengths[FUZZ_RECORD_PARTS / 2];
    size_t value_lengths[FUZZ_RECORD_PARTS / 2];
    for (size_t i = 0; i < pairs; i++) {
        fields[i] = (const char *)parts[2 * i];
        field_lengths[i] = lengths[2 * i];
        values[i] = (const char *)parts[2 * i + 1];
        value_lengths[i] = lengths[2 * i + 1];
    }
    route_record_t *record =
        route_record_parse("fuzz", pairs, fields, field_lengths, values, value_lengths);
    if (record == NULL)
        return 0; /* out of memory */
    FUZZ_CHECK(record->references == 1);
    check_record(record);
    route_record_unref(record);

    /* The same bytes as HMGET's values, in route_record_fields order. */
    route_record_value_t ordered[ROUTE_RECORD_FIELD_COUNT] = {{0}};
    for (size_t i = 0; i < count && i < ROUTE_RECORD_FIELD_COUNT; i++) {
        if (lengths[i] > 0 && parts[i][0] == '!')
            continue; /* "!" marks the field absent */
        ordered[i].text = (const char *)parts[i];
        ordered[i].length = lengths[i];
    }
    record = route_record_parse_fields("fuzz", ordered);
    if (record != NULL) {
        check_record(record);
        route_record_unref(record);
    }
    return 0;
}
