/* Fuzz target: the first bytes of an intercepted connection (egress/sniff.c), read as a
 * ClientHello and as an HTTP/1.x request head, whole and cut short. A name is a valid hostname,
 * MORE is only said of fewer than EGRESS_SNIFF_BYTES_MAX bytes, and a verdict given on a prefix
 * stands when more bytes arrive. */
#include "egress/sniff.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef egress_sniff_result_t (*sniff_function_t)(const uint8_t *data, size_t length,
                                                  egress_sniff_name_t *name);

/* Inputs up to this size are cut at every byte; longer ones at a few places. */
enum { FUZZ_EVERY_PREFIX_MAX = 128 };

static void check_name(const egress_sniff_name_t *name) {
    FUZZ_CHECK(name->length >= 1 && name->length <= EGRESS_SNIFF_NAME_MAX);
    FUZZ_CHECK(strnlen(name->text, sizeof(name->text)) == name->length);
    egress_sniff_name_t again;
    FUZZ_CHECK(egress_sniff_hostname(name->text, name->length, &again));
    FUZZ_CHECK(again.length == name->length && memcmp(again.text, name->text, name->length) == 0);
}

/* Runs sniff on the first length bytes, copied to a buffer of exactly that size so that
 * AddressSanitizer sees any read past them; checks what holds of every result. */
static egress_sniff_result_t run(sniff_function_t sniff, const uint8_t *data, size_t length,
                                 egress_sniff_name_t *name) {
    uint8_t *copy = malloc(length > 0 ? length : 1);
    FUZZ_CHECK(copy != NULL);
    if (length > 0)
        memcpy(copy, data, length);
    memset(name, 0x5a, sizeof(*name));
    egress_sniff_result_t result = sniff(copy, length, name);
    free(copy);
    FUZZ_CHECK(result == EGRESS_SNIFF_MORE || result == EGRESS_SNIFF_NAME ||
               result == EGRESS_SNIFF_NO_NAME || result == EGRESS_SNIFF_MALFORMED);
    FUZZ_CHECK(egress_sniff_result_name(result) != NULL);
    if (result == EGRESS_SNIFF_MORE)
        FUZZ_CHECK(length < EGRESS_SNIFF_BYTES_MAX);
    if (result == EGRESS_SNIFF_NAME) {
        check_name(name);
    } else {
        /* *name is written for NAME alone. */
        for (size_t i = 0; i < sizeof(*name); i++)
            FUZZ_CHECK(((const uint8_t *)name)[i] == 0x5a);
    }
    return result;
}

/* A prefix's verdict, unless it asks for more, is the whole input's. */
static void check_prefix(sniff_function_t sniff, const uint8_t *data, size_t length,
                         egress_sniff_result_t whole, const egress_sniff_name_t *whole_name) {
    egress_sniff_name_t name;
    egress_sniff_result_t result = run(sniff, data, length, &name);
    if (result == EGRESS_SNIFF_MORE)
        return;
    FUZZ_CHECK(result == whole);
    if (result == EGRESS_SNIFF_NAME)
        FUZZ_CHECK(strcmp(name.text, whole_name->text) == 0);
}

static void check_parser(sniff_function_t sniff, const uint8_t *data, size_t size) {
    egress_sniff_name_t whole_name;
    egress_sniff_result_t whole = run(sniff, data, size, &whole_name);
    if (size <= FUZZ_EVERY_PREFIX_MAX) {
        for (size_t length = 0; length < size; length++)
            check_prefix(sniff, data, length, whole, &whole_name);
        return;
    }
    size_t cuts[] = {size / 4, size / 2, size - size / 4, size - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
        check_prefix(sniff, data, cuts[i], whole, &whole_name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_parser(egress_sniff_tls, data, size);
    check_parser(egress_sniff_http, data, size);
    /* The hostname rule alone, on any bytes. */
    egress_sniff_name_t name;
    if (egress_sniff_hostname((const char *)data, size, &name))
        check_name(&name);
    else
        FUZZ_CHECK(name.length == 0 && name.text[0] == '\0');
    return 0;
}
