/* Unit tests of routing/limit.c: per-sandbox in-flight limits shared by threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "routing/limit.h"

/* The counter admitted, or NULL when the limit is reached (never out of memory here). */
static route_limit_t *admit(const char *sandbox_id, long limit) {
    route_limit_t *counter;
    route_limit_status_t status = route_limit_acquire(sandbox_id, limit, &counter);
    assert_true(status == ROUTE_LIMIT_ADMITTED || status == ROUTE_LIMIT_REACHED);
    assert_true((status == ROUTE_LIMIT_ADMITTED) == (counter != NULL));
    return counter;
}

static void test_limit_reached(void **state) {
    (void)state;
    route_limit_t *first = admit("alpha", 2);
    route_limit_t *second = admit("alpha", 2);
    assert_non_null(first);
    assert_non_null(second);
    assert_ptr_equal(first, second); /* one counter per sandbox */
    assert_null(admit("alpha", 2));
    assert_int_equal(route_limit_in_flight("alpha"), 2);

    route_limit_release(second);
    route_limit_t *third = admit("alpha", 2);
    assert_non_null(third);
    assert_null(admit("alpha", 2));

    /* A raised limit admits more at once; a lowered one admits none until below it. */
    route_limit_t *fourth = admit("alpha", 3);
    assert_non_null(fourth);
    assert_null(admit("alpha", 1));

    route_limit_release(first);
    route_limit_release(third);
    route_limit_release(fourth);
    assert_int_equal(route_limit_in_flight("alpha"), 0);
    assert_int_equal(route_limit_sandbox_count(), 0);
}

static void test_sandboxes_are_independent(void **state) {
    (void)state;
    route_limit_t *alpha = admit("alpha", 1);
    route_limit_t *beta = admit("beta", 1);
    assert_non_null(alpha);
    assert_non_null(beta);
    assert_ptr_not_equal(alpha, beta);
    assert_null(admit("alpha", 1));
    assert_null(admit("beta", 1));
    assert_int_equal(route_limit_sandbox_count(), 2);
    route_limit_release(alpha);
    assert_int_equal(route_limit_sandbox_count(), 1);
    route_limit_release(beta);
    assert_int_equal(route_limit_sandbox_count(), 0);
}

static void test_entries_freed_at_zero(void **state) {
    (void)state;
    char id[16];
    route_limit_t *counters[100];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        counters[i] = admit(id, 5);
        assert_non_null(counters[i]);
    }
    assert_int_equal(route_limit_sandbox_count(), 100);
    for (int i = 0; i < 100; i++)
        route_limit_release(counters[i]);
    assert_int_equal(route_limit_sandbox_count(), 0);
    assert_int_equal(route_limit_in_flight("s7"), 0);
}

static void test_bad_limit_and_null(void **state) {
    (void)state;
    assert_null(admit("alpha", 0));
    assert_null(admit("alpha", -3));
    assert_int_equal(route_limit_sandbox_count(), 0);
    route_limit_release(NULL);
}

enum {
    HAMMER_THREADS = 8,
    HAMMER_ROUNDS = 20000,
    HAMMER_LIMIT = 3,
};

typedef struct hammer_shared {
    atomic_long inside[2]; /* requests currently admitted, per sandbox */
    atomic_long most_inside[2];
    atomic_long admitted;
    atomic_long refused;
} hammer_shared_t;

static const char *const hammer_ids[2] = {"hammered", "neighbour"};

static void hammer_note_maximum(atomic_long *maximum, long value) {
    long seen = atomic_load(maximum);
    while (value > seen && !atomic_compare_exchange_weak(maximum, &seen, value)) {
    }
}

static void *hammer_thread(void *argument) {
    hammer_shared_t *shared = argument;
    for (int round = 0; round < HAMMER_ROUNDS; round++) {
        int which = round % 2;
        route_limit_t *counter;
        if (route_limit_acquire(hammer_ids[which], HAMMER_LIMIT, &counter) != ROUTE_LIMIT_ADMITTED) {
            atomic_fetch_add(&shared->refused, 1);
            continue;
        }
        long now = atomic_fetch_add(&shared->inside[which], 1) + 1;
        hammer_note_maximum(&shared->most_inside[which], now);
        atomic_fetch_add(&shared->admitted, 1);
        if (round % 7 == 0)
            sched_yield(); /* hold it a little so others meet the limit */
        atomic_fetch_sub(&shared->inside[which], 1);
        route_limit_release(counter);
    }
    return NULL;
}

static void test_threads_never_exceed_limit(void **state) {
    (void)state;
    static hammer_shared_t shared;
    pthread_t threads[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, hammer_thread, &shared), 0);
    for (int i = 0; i < HAMMER_THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);

    assert_true(atomic_load(&shared.most_inside[0]) <= HAMMER_LIMIT);
    assert_true(atomic_load(&shared.most_inside[1]) <= HAMMER_LIMIT);
    assert_true(atomic_load(&shared.most_inside[0]) >= 1);
    assert_int_equal(atomic_load(&shared.admitted) + atomic_load(&shared.refused),
                     HAMMER_THREADS * HAMMER_ROUNDS);
    assert_int_equal(route_limit_in_flight("hammered"), 0);
    assert_int_equal(route_limit_in_flight("neighbour"), 0);
    assert_int_equal(route_limit_sandbox_count(), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_reached),
        cmocka_unit_test(test_sandboxes_are_independent),
        cmocka_unit_test(test_entries_freed_at_zero),
        cmocka_unit_test(test_bad_limit_and_null),
        cmocka_unit_test(test_threads_never_exceed_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
