/* Unit tests of util/arena.c: alignment, large allocations, and blocks
 * going back to a pool and out of it again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "util/arena.h"

static void test_allocations_are_aligned_and_apart(void **state) {
    (void)state;
    arena_t arena;
    arena_init(&arena, 256);
    char *first = arena_alloc(&arena, 3);
    char *second = arena_alloc(&arena, 17);
    assert_non_null(first);
    assert_non_null(second);
    assert_int_equal((uintptr_t)first % 16, 0);
    assert_int_equal((uintptr_t)second % 16, 0);
    assert_true(second >= first + 16);
    memset(first, 'a', 3);
    memset(second, 'b', 17);
    assert_int_equal(first[2], 'a');
    arena_free(&arena);
}

static void test_an_allocation_larger_than_a_block_gets_its_own(void **state) {
    (void)state;
    arena_t arena;
    arena_init(&arena, 64);
    char *large = arena_alloc(&arena, 1000);
    assert_non_null(large);
    memset(large, 'x', 1000);
    char *small = arena_alloc(&arena, 8);
    assert_non_null(small);
    arena_free(&arena);
    /* Usable again after arena_free. */
    assert_non_null(arena_alloc(&arena, 8));
    arena_free(&arena);
}

static void test_blocks_go_back_to_the_pool_and_are_taken_again(void **state) {
    (void)state;
    arena_pool_t pool;
    arena_pool_init(&pool, 128, 2);
    arena_t a, b;
    arena_init_pooled(&a, &pool);
    arena_init_pooled(&b, &pool);
    char *in_a = arena_alloc(&a, 100);
    assert_non_null(arena_alloc(&a, 100)); /* a second block */
    assert_non_null(arena_alloc(&a, 500)); /* a large one: never pooled */
    arena_free(&a);
    assert_int_equal(pool.count, 2);
    /* The block given back last (a's first, still warm) comes out first. */
    char *in_b = arena_alloc(&b, 10);
    assert_ptr_equal(in_b, in_a);
    assert_int_equal(pool.count, 1);
    arena_free(&b);
    assert_int_equal(pool.count, 2);
    arena_pool_free(&pool);
    assert_int_equal(pool.count, 0);
    assert_null(pool.free);
}

static void test_a_full_pool_frees_what_it_cannot_keep(void **state) {
    (void)state;
    arena_pool_t pool;
    arena_pool_init(&pool, 64, 1);
    arena_t arena;
    arena_init_pooled(&arena, &pool);
    for (int i = 0; i < 5; i++)
        assert_non_null(arena_alloc(&arena, 64)); /* five blocks */
    arena_free(&arena);
    assert_int_equal(pool.count, 1);
    arena_pool_free(&pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocations_are_aligned_and_apart),
        cmocka_unit_test(test_an_allocation_larger_than_a_block_gets_its_own),
        cmocka_unit_test(test_blocks_go_back_to_the_pool_and_are_taken_again),
        cmocka_unit_test(test_a_full_pool_frees_what_it_cannot_keep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
