/* Unit tests of util/slots.c: items zeroed and line-aligned, and a hint finds
 * its item until the item is given back, never the item taken in its place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "util/slots.h"

typedef struct counters {
    uint64_t values[10]; /* 80 bytes: an item of two cache lines */
} counters_t;

static void test_items_are_zeroed_and_start_a_cache_line(void **state) {
    (void)state;
    slots_t slots;
    slots_init(&slots, sizeof(counters_t));
    counters_t *first = slots_take(&slots);
    assert_non_null(first);
    /* The generation a hint checks sits just before the item, in its line. */
    assert_int_equal(((uintptr_t)first + 48) % 64, 0);
    memset(first, 0xff, sizeof(*first));
    slots_give(&slots, first);
    counters_t *again = slots_take(&slots);
    assert_ptr_equal(again, first); /* the one given back serves next */
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(again->values[i], 0);
    slots_free(&slots);
}

static void test_a_hint_finds_its_item_until_it_is_given_back(void **state) {
    (void)state;
    slots_t slots;
    slots_init(&slots, sizeof(counters_t));
    slot_hint_t none = {0};
    assert_null(slots_hinted(&none));
    counters_t *mine = slots_take(&slots);
    slot_hint_t hint = {0};
    slots_note(&hint, mine);
    assert_ptr_equal(slots_hinted(&hint), mine);
    assert_ptr_equal(slots_hinted(&hint), mine); /* asking does not use it up */
    slots_give(&slots, mine);
    assert_null(slots_hinted(&hint));
    /* The same memory taken for something else: still not found. */
    counters_t *other = slots_take(&slots);
    assert_ptr_equal(other, mine);
    assert_null(slots_hinted(&hint));
    slot_hint_t other_hint = {0};
    slots_note(&other_hint, other);
    assert_ptr_equal(slots_hinted(&other_hint), other);
    slots_give(&slots, other);
    slots_free(&slots);
}

static void test_many_items_over_several_blocks(void **state) {
    (void)state;
    enum { COUNT = 3 * SLOTS_PER_BLOCK + 5 };
    slots_t slots;
    slots_init(&slots, 8);
    static uint64_t *items[COUNT];
    static slot_hint_t hints[COUNT];
    for (size_t i = 0; i < COUNT; i++) {
        items[i] = slots_take(&slots);
        assert_non_null(items[i]);
        assert_int_equal(*items[i], 0);
        *items[i] = i;
        slots_note(&hints[i], items[i]);
        for (size_t j = 0; j < i; j++)
            assert_ptr_not_equal(items[j], items[i]);
    }
    /* Every other one back: those hints fail, the rest still find theirs. */
    for (size_t i = 0; i < COUNT; i += 2)
        slots_give(&slots, items[i]);
    for (size_t i = 0; i < COUNT; i++) {
        if (i % 2 == 0) {
            assert_null(slots_hinted(&hints[i]));
        } else {
            assert_ptr_equal(slots_hinted(&hints[i]), items[i]);
            assert_int_equal(*items[i], i);
        }
    }
    /* Items still taken go with the blocks (ASan reports a leak otherwise). */
    slots_free(&slots);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_items_are_zeroed_and_start_a_cache_line),
        cmocka_unit_test(test_a_hint_finds_its_item_until_it_is_given_back),
        cmocka_unit_test(test_many_items_over_several_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
