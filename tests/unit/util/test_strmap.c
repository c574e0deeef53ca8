/* Unit tests of util/strmap.c: put, get, remove and foreach, values inside
 * their entries, growth, and keys chosen to share a bucket under an unkeyed
 * hash spreading out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/strmap.h"

static void test_put_get_remove(void **state) {
    (void)state;
    strmap_t map;
    assert_int_equal(strmap_init(&map), 0);
    int values[3] = {1, 2, 3};
    assert_non_null(strmap_put(&map, "alpha", 5, &values[0]));
    assert_non_null(strmap_put(&map, "beta", 4, &values[1]));
    /* A key is the bytes given: the first 5 of "alphabet" find "alpha". */
    assert_non_null(strmap_put(&map, "alphabet", 8, &values[2]));
    strmap_entry_t *alpha = strmap_get(&map, "alphabet", 5);
    assert_non_null(alpha);
    assert_ptr_equal(alpha->value, &values[0]);
    assert_string_equal(alpha->key, "alpha");
    assert_ptr_equal(strmap_get(&map, "alphabet", 8)->value, &values[2]);
    assert_null(strmap_get(&map, "gamma", 5));
    strmap_remove(&map, alpha);
    assert_null(strmap_get(&map, "alpha", 5));
    assert_int_equal(map.count, 2);
    strmap_free(&map);
}

typedef struct inline_value {
    long double aligned; /* wants max_align_t's alignment */
    char bytes[40];
} inline_value_t;

static void test_inline_values(void **state) {
    (void)state;
    strmap_t map;
    assert_int_equal(strmap_init(&map), 0);
    char key[32];
    /* Keys of every length around the alignment: each value zeroed, aligned,
     * past its key, and its own; ASan sees a write past the allocation. */
    for (int length = 1; length < 31; length++) {
        memset(key, 'a' + length % 26, (size_t)length);
        strmap_entry_t *entry =
            strmap_put_inline(&map, key, (size_t)length, sizeof(inline_value_t));
        assert_non_null(entry);
        inline_value_t *value = entry->value;
        assert_int_equal((uintptr_t)value % _Alignof(max_align_t), 0);
        assert_true((char *)value > entry->key + length);
        for (size_t i = 0; i < sizeof(value->bytes); i++)
            assert_int_equal(value->bytes[i], 0);
        memset(value, 0xa5, sizeof(*value));
        assert_int_equal(entry->key[length], '\0');
    }
    for (int length = 1; length < 31; length++) {
        memset(key, 'a' + length % 26, (size_t)length);
        strmap_entry_t *entry = strmap_get(&map, key, (size_t)length);
        assert_non_null(entry);
        assert_int_equal(((inline_value_t *)entry->value)->bytes[39], (char)0xa5);
        if (length % 2)
            strmap_remove(&map, entry); /* the value with it: LeakSanitizer checks */
    }
    assert_int_equal(map.count, 15);
    strmap_free(&map); /* the rest, values with their entries */
}

static void count_visit(strmap_t *map, strmap_entry_t *entry, void *arg) {
    (*(size_t *)arg)++;
    if (entry->key[0] == 'r') /* foreach lets the visitor remove what it is given */
        strmap_remove(map, entry);
}

static void test_growth_keeps_every_key(void **state) {
    (void)state;
    strmap_t map;
    assert_int_equal(strmap_init(&map), 0);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int length = snprintf(key, sizeof(key), "%c%d", i % 2 ? 'k' : 'r', i);
        assert_non_null(strmap_put(&map, key, (size_t)length, NULL));
    }
    assert_true(map.bucket_count >= 4096);
    for (int i = 0; i < 5000; i++) {
        int length = snprintf(key, sizeof(key), "%c%d", i % 2 ? 'k' : 'r', i);
        assert_non_null(strmap_get(&map, key, (size_t)length));
    }
    size_t visited = 0;
    strmap_foreach(&map, count_visit, &visited);
    assert_int_equal(visited, 5000);
    assert_int_equal(map.count, 2500);
    strmap_free(&map);
}

/* The map's hash before it was keyed: FNV-1a, folded. */
static size_t unkeyed_hash(const char *key, size_t length) {
    uint64_t hash = 1469598103934665603ULL;
    for (size_t i = 0; i < length; i++) {
        hash ^= (unsigned char)key[i];
        hash *= 1099511628211ULL;
    }
    return (size_t)(hash ^ (hash >> 29));
}

static void test_keys_made_for_one_bucket_spread_out(void **state) {
    (void)state;
    /* 600 sandbox IDs an attacker could compute offline, all in bucket 0
     * of a 1,024-bucket table under the unkeyed hash. */
    enum { KEYS = 600, BUCKETS = 1024 };
    static char keys[KEYS][16];
    size_t found = 0;
    for (uint32_t candidate = 0; found < KEYS; candidate++) {
        char key[16];
        int length = snprintf(key, sizeof(key), "i%08x", candidate);
        if ((unkeyed_hash(key, (size_t)length) & (BUCKETS - 1)) == 0)
            memcpy(keys[found++], key, (size_t)length + 1);
    }
    strmap_t map;
    assert_int_equal(strmap_init(&map), 0);
    for (size_t i = 0; i < KEYS; i++)
        assert_non_null(strmap_put(&map, keys[i], strlen(keys[i]), NULL));
    assert_int_equal(map.bucket_count, BUCKETS);
    size_t longest = 0;
    for (size_t i = 0; i < map.bucket_count; i++) {
        size_t chain = 0;
        for (strmap_entry_t *entry = map.buckets[i]; entry != NULL; entry = entry->next)
            chain++;
        if (chain > longest)
            longest = chain;
    }
    /* 600 keys over 1,024 buckets at random: a chain of 7 is already rare. */
    assert_true(longest <= 12);
    for (size_t i = 0; i < KEYS; i++)
        assert_non_null(strmap_get(&map, keys[i], strlen(keys[i])));
    strmap_free(&map);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_remove),
        cmocka_unit_test(test_inline_values),
        cmocka_unit_test(test_growth_keeps_every_key),
        cmocka_unit_test(test_keys_made_for_one_bucket_spread_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
