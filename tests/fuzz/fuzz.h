/* What every fuzz target shares: the oracle that ends a run, and splitting an input into parts. */
#ifndef SGW_TESTS_FUZZ_H
#define SGW_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An oracle failed: the input found a bug that is not a crash. libFuzzer
 * keeps the input as a crash artifact. */
#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: oracle failed: %s\n", __FILE__, __LINE__, #condition);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The separator between the parts of an input (a byte no text part needs). */
enum { FUZZ_SEPARATOR = 0xff };

/* Splits data at FUZZ_SEPARATOR into at most max parts (the last takes the
 * rest); returns how many. */
static inline size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts,
                                size_t *lengths, size_t max) {
    size_t count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && count < max; i++) {
        if (i == size || (data[i] == FUZZ_SEPARATOR && count + 1 < max)) {
            parts[count] = data + start;
            lengths[count] = i - start;
            count++;
            start = i + 1;
        }
    }
    return count;
}

/* Appends a span to a bounded buffer: longer names and values are kept cut, as no check
 * needs their end. */
static inline void fuzz_append(char *buffer, size_t *used, size_t capacity, const char *at,
                               size_t length) {
    size_t room = capacity - *used;
    size_t taken = length < room ? length : room;
    memcpy(buffer + *used, at, taken);
    *used += taken;
}

#endif
