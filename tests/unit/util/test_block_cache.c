/* Unit tests of util/block_cache.c: sizes kept and reused, the limit, and
 * malloc's contracts for calloc, realloc and free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "util/block_cache.h"

#ifdef BLOCK_CACHE_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* memset out of GCC's sight: through the cache's realloc it loses a block's
 * size and warns of an overflow that is not there (ASan checks the writes). */
__attribute__((noipa)) static void fill(char *at, int byte, size_t length) {
    memset(at, byte, length);
}

static void test_a_freed_block_serves_the_next_allocation_of_its_size(void **state) {
    (void)state;
    block_cache_t cache;
    block_cache_init(&cache, 4);
    char *first = block_cache_malloc(&cache, 100);
    assert_non_null(first);
    assert_int_equal((uintptr_t)first % 16, 0);
    fill(first, 'x', 100);
    block_cache_free(&cache, first);
    /* 65 to 128 bytes share a size: the same block comes back. */
    char *again = block_cache_malloc(&cache, 128);
    assert_ptr_equal(again, first);
    /* Another size gets a block of its own. */
    char *other = block_cache_malloc(&cache, 129);
    assert_non_null(other);
    assert_ptr_not_equal(other, first);
    fill(other, 'y', 129);
    block_cache_free(&cache, again);
    block_cache_free(&cache, other);
    block_cache_clear(&cache);
}

static void test_no_more_than_the_limit_is_kept(void **state) {
    (void)state;
    block_cache_t cache;
    block_cache_init(&cache, 2);
    void *blocks[5];
    for (size_t i = 0; i < 5; i++)
        blocks[i] = block_cache_malloc(&cache, 32);
    for (size_t i = 0; i < 5; i++)
        block_cache_free(&cache, blocks[i]);
    assert_int_equal(cache.count[0], 2);
    /* The newest kept come back first; the others were freed (ASan checks). */
    assert_ptr_equal(block_cache_malloc(&cache, 1), blocks[1]);
    assert_ptr_equal(block_cache_malloc(&cache, 64), blocks[0]);
    void *fresh = block_cache_malloc(&cache, 10);
    assert_non_null(fresh);
    block_cache_free(&cache, blocks[1]);
    block_cache_free(&cache, blocks[0]);
    block_cache_free(&cache, fresh);
    block_cache_clear(&cache);
    assert_int_equal(cache.count[0], 0);
}

static void test_large_blocks_and_zero_bytes(void **state) {
    (void)state;
    block_cache_t cache;
    block_cache_init(&cache, 4);
    char *large = block_cache_malloc(&cache, BLOCK_CACHE_LARGEST + 1);
    assert_non_null(large);
    assert_int_equal((uintptr_t)large % 16, 0);
    fill(large, 'z', BLOCK_CACHE_LARGEST + 1);
    block_cache_free(&cache, large); /* to malloc: nothing kept */
    for (size_t i = 0; i < BLOCK_CACHE_CLASSES; i++)
        assert_int_equal(cache.count[i], 0);
    void *empty = block_cache_malloc(&cache, 0);
    assert_non_null(empty);
    block_cache_free(&cache, empty);
    block_cache_free(&cache, NULL);
    assert_null(block_cache_malloc(&cache, SIZE_MAX));
    block_cache_clear(&cache);
}

/* A kept block is poisoned for AddressSanitizer until handed out again. */
static void test_kept_blocks_are_poisoned_under_asan(void **state) {
    (void)state;
#ifdef BLOCK_CACHE_ASAN
    block_cache_t cache;
    block_cache_init(&cache, 4);
    char *block = block_cache_malloc(&cache, 500);
    fill(block, 'x', 500);
    assert_false(__asan_address_is_poisoned(block + 499));
    block_cache_free(&cache, block);
    assert_false(__asan_address_is_poisoned(block)); /* the link LeakSanitizer follows */
    assert_true(__asan_address_is_poisoned(block + sizeof(void *)));
    assert_true(__asan_address_is_poisoned(block + 499));
    char *again = block_cache_malloc(&cache, 500);
    assert_ptr_equal(again, block);
    assert_false(__asan_address_is_poisoned(again + 499));
    block_cache_free(&cache, again);
    block_cache_clear(&cache);
#else
    skip();
#endif
}

static void test_calloc_zeroes_a_reused_block_and_refuses_an_overflow(void **state) {
    (void)state;
    block_cache_t cache;
    block_cache_init(&cache, 4);
    char *dirty = block_cache_malloc(&cache, 200);
    fill(dirty, 0xff, 200);
    block_cache_free(&cache, dirty);
    unsigned char *zeroed = block_cache_calloc(&cache, 10, 20);
    assert_ptr_equal(zeroed, dirty);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(zeroed[i], 0);
    assert_null(block_cache_calloc(&cache, SIZE_MAX / 2, 3));
    block_cache_free(&cache, zeroed);
    block_cache_clear(&cache);
}

static void test_realloc_keeps_the_bytes(void **state) {
    (void)state;
    block_cache_t cache;
    block_cache_init(&cache, 4);
    char *text = block_cache_realloc(&cache, NULL, 10); /* = malloc */
    assert_non_null(text);
    memcpy(text, "0123456789", 10);
    /* Within its size: the same block. */
    assert_ptr_equal(block_cache_realloc(&cache, text, 60), text);
    /* To a larger kept size, then past the largest: moved, the bytes kept. */
    char *grown = block_cache_realloc(&cache, text, 300);
    assert_non_null(grown);
    assert_memory_equal(grown, "0123456789", 10);
    char *large = block_cache_realloc(&cache, grown, 4000);
    assert_non_null(large);
    assert_memory_equal(large, "0123456789", 10);
    fill(large + 10, 'L', 3990);
    char *larger = block_cache_realloc(&cache, large, 100000);
    assert_non_null(larger);
    assert_memory_equal(larger, "0123456789", 10);
    assert_int_equal(larger[3999], 'L');
    /* To 0 bytes: freed. */
    assert_null(block_cache_realloc(&cache, larger, 0));
    block_cache_clear(&cache);
}

static void test_blocks_in_use_outlive_a_clear(void **state) {
    (void)state;
    block_cache_t cache;
    block_cache_init(&cache, 4);
    void *kept = block_cache_malloc(&cache, 50);
    void *used = block_cache_malloc(&cache, 50);
    block_cache_free(&cache, kept);
    block_cache_clear(&cache);
    block_cache_free(&cache, used); /* kept again, until the next clear */
    assert_int_equal(cache.count[0], 1);
    block_cache_clear(&cache);
}

/* A stock keeps freed blocks of its one size, told by their usable size,
 * up to its limit, and serves the newest first; other sizes are malloc's. */
static void test_a_stock_keeps_blocks_of_its_size_only(void **state) {
    (void)state;
    block_stock_t stock;
    assert_int_equal(block_stock_init(&stock, 1024, 2), 0);
    assert_true(stock.usable >= 1024);
    char *blocks[3];
    for (int i = 0; i < 3; i++) {
        blocks[i] = block_stock_malloc(&stock, 1024);
        assert_non_null(blocks[i]);
        fill(blocks[i], 'a' + i, 1024);
    }
    char *other = block_stock_malloc(&stock, 100);
    fill(other, 'o', 100);
    block_stock_free(&stock, other); /* another usable size: to malloc */
    assert_int_equal(stock.count, 0);
    for (int i = 0; i < 3; i++)
        block_stock_free(&stock, blocks[i]);
    assert_int_equal(stock.count, 2); /* the limit: the third went to malloc */
#ifdef BLOCK_CACHE_ASAN
    assert_false(__asan_address_is_poisoned(blocks[1])); /* the link */
    assert_true(__asan_address_is_poisoned(blocks[1] + 8));
#endif
    char *small = block_stock_malloc(&stock, 1000); /* not the stock's size */
    assert_ptr_not_equal(small, blocks[1]);
    assert_ptr_not_equal(small, blocks[0]);
    char *again = block_stock_malloc(&stock, 1024);
    assert_ptr_equal(again, blocks[1]);
    fill(again, 'z', 1024);
    char *grown = block_stock_realloc(&stock, again, 4096);
    assert_non_null(grown);
    assert_int_equal(grown[1023], 'z');
    block_stock_free(&stock, grown);
    block_stock_free(&stock, small);
    block_stock_free(&stock, NULL);
    assert_int_equal(stock.count, 1);
    block_stock_clear(&stock);
    assert_int_equal(stock.count, 0);
    assert_null(stock.free);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_freed_block_serves_the_next_allocation_of_its_size),
        cmocka_unit_test(test_no_more_than_the_limit_is_kept),
        cmocka_unit_test(test_large_blocks_and_zero_bytes),
        cmocka_unit_test(test_kept_blocks_are_poisoned_under_asan),
        cmocka_unit_test(test_a_stock_keeps_blocks_of_its_size_only),
        cmocka_unit_test(test_calloc_zeroes_a_reused_block_and_refuses_an_overflow),
        cmocka_unit_test(test_realloc_keeps_the_bytes),
        cmocka_unit_test(test_blocks_in_use_outlive_a_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
