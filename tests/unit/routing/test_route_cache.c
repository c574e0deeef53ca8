/* Unit tests of routing/route_cache.c: TTLs, stale window, refresh, eviction order, the bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "routing/route_cache.h"

enum {
    TEST_TTL_MS = 100,
    TEST_NEGATIVE_TTL_MS = 50,
    TEST_STALE_TTL_MS = 200,
};

/* Per test. */
static route_cache_t cache;
static route_record_t *route; /* a valid record */

/* A record with addr address (valid or not); one reference, the caller's. */
static route_record_t *record_new(const char *sandbox_id, const char *address) {
    const char *fields[] = {"addr"};
    size_t field_lengths[] = {4};
    const char *values[] = {address};
    size_t value_lengths[] = {strlen(address)};
    route_record_t *record =
        route_record_parse(sandbox_id, 1, fields, field_lengths, values, value_lengths);
    assert_non_null(record);
    return record;
}

static void cache_start(size_t max_entries) {
    route_cache_config_t config = {
        .ttl_ms = TEST_TTL_MS,
        .negative_ttl_ms = TEST_NEGATIVE_TTL_MS,
        .stale_ttl_ms = TEST_STALE_TTL_MS,
        .max_entries = max_entries,
    };
    assert_int_equal(route_cache_init(&cache, &config), 0);
}

static int setup(void **state) {
    (void)state;
    route = record_new("abc", "10.0.0.1");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    route_cache_free(&cache);
    route_record_unref(route);
    route = NULL;
    return 0;
}

static const route_cache_entry_t *get(const char *sandbox_id) {
    return route_cache_get(&cache, sandbox_id, strlen(sandbox_id));
}

static void store_found(const char *sandbox_id, uint64_t now_ms) {
    route_cache_store(&cache, sandbox_id, ROUTE_LOOKUP_FOUND, route, now_ms, 0);
}

static void store_not_found(const char *sandbox_id, uint64_t now_ms) {
    route_cache_store(&cache, sandbox_id, ROUTE_LOOKUP_NOT_FOUND, NULL, now_ms, 0);
}

/* Evicts one entry at now_ms and checks it was sandbox_id's. */
static void assert_evicts(const char *sandbox_id, uint64_t now_ms) {
    size_t before = route_cache_count(&cache);
    assert_non_null(get(sandbox_id));
    route_cache_evict_one(&cache, now_ms);
    if (get(sandbox_id) != NULL)
        fail_msg("evicted something other than %s at %llu ms", sandbox_id,
                 (unsigned long long)now_ms);
    assert_int_equal(route_cache_count(&cache), before - 1);
}

static void test_ttl(void **state) {
    (void)state;
    cache_start(100);
    assert_null(get("abc"));

    store_found("abc", 1000);
    const route_cache_entry_t *entry = get("abc");
    assert_non_null(entry);
    assert_int_equal(entry->status, ROUTE_LOOKUP_FOUND);
    assert_ptr_equal(entry->record, route);
    assert_int_equal(route->references, 2); /* the cache holds its own */
    assert_true(route_cache_fresh(&cache, entry, 1000));
    assert_true(route_cache_fresh(&cache, entry, 1000 + TEST_TTL_MS - 1));
    assert_false(route_cache_fresh(&cache, entry, 1000 + TEST_TTL_MS));

    store_not_found("gone", 1000);
    entry = get("gone");
    assert_int_equal(entry->status, ROUTE_LOOKUP_NOT_FOUND);
    assert_null(entry->record);
    assert_true(route_cache_fresh(&cache, entry, 1000 + TEST_NEGATIVE_TTL_MS - 1));
    assert_false(route_cache_fresh(&cache, entry, 1000 + TEST_NEGATIVE_TTL_MS));

    /* A malformed record lives as long as a route. */
    route_record_t *malformed = record_new("bad", "not-an-ip");
    assert_non_null(malformed->error);
    route_cache_store(&cache, "bad", ROUTE_LOOKUP_MALFORMED, malformed, 1000, 0);
    route_record_unref(malformed);
    assert_true(route_cache_fresh(&cache, get("bad"), 1000 + TEST_TTL_MS - 1));
    assert_false(route_cache_fresh(&cache, get("bad"), 1000 + TEST_TTL_MS));

    /* A new answer replaces the old one and its TTL; the record's reference goes with it. */
    store_not_found("abc", 2000);
    entry = get("abc");
    assert_int_equal(entry->status, ROUTE_LOOKUP_NOT_FOUND);
    assert_null(entry->record);
    assert_int_equal(route->references, 1);
    assert_false(route_cache_fresh(&cache, entry, 2000 + TEST_NEGATIVE_TTL_MS));
    assert_null(get("gone")); /* expired by then: trimmed by that store */
    assert_int_equal(route_cache_count(&cache), 2);

    assert_true(route_cache_remove(&cache, "abc", 3));
    assert_false(route_cache_remove(&cache, "abc", 3));
    assert_null(get("abc"));
    assert_int_equal(route_cache_count(&cache), 1);
}

static void test_stale_window(void **state) {
    (void)state;
    cache_start(100);
    store_found("abc", 1000);
    route_record_t *malformed = record_new("bad", "not-an-ip");
    route_cache_store(&cache, "bad", ROUTE_LOOKUP_MALFORMED, malformed, 1000, 0);
    route_record_unref(malformed);
    store_not_found("gone", 1000);

    /* Only a found route serves past its TTL, and only within the stale window. */
    uint64_t stale_end = 1000 + TEST_TTL_MS + TEST_STALE_TTL_MS;
    assert_true(route_cache_within_stale(&cache, get("abc"), 1000));
    assert_true(route_cache_within_stale(&cache, get("abc"), stale_end - 1));
    assert_false(route_cache_within_stale(&cache, get("abc"), stale_end));
    assert_false(route_cache_within_stale(&cache, get("bad"), 1000));
    assert_false(route_cache_within_stale(&cache, get("gone"), 1000));
}

static void test_refresh_in_the_second_half(void **state) {
    (void)state;
    cache_start(100);
    store_found("abc", 1000);
    store_not_found("gone", 1000);
    const route_cache_entry_t *entry = get("abc");
    assert_false(route_cache_wants_refresh(&cache, entry, 1000));
    assert_false(route_cache_wants_refresh(&cache, entry, 1000 + TEST_TTL_MS / 2 - 1));
    assert_true(route_cache_wants_refresh(&cache, entry, 1000 + TEST_TTL_MS / 2));
    assert_true(route_cache_wants_refresh(&cache, entry, 1000 + TEST_TTL_MS - 1));
    assert_false(route_cache_wants_refresh(&cache, entry, 1000 + TEST_TTL_MS)); /* expired */
    /* "Not found" is never read again ahead: it simply expires. */
    assert_false(route_cache_wants_refresh(&cache, get("gone"), 1000 + TEST_NEGATIVE_TTL_MS - 1));
}

static void test_eviction_order(void **state) {
    (void)state;
    cache_start(100);
    store_found("found-old", 0);         /* expires at 100, stale until 300 */
    store_not_found("not-found-old", 0); /* expires at 50 */
    route_record_t *malformed = record_new("bad", "not-an-ip");
    route_cache_store(&cache, "malformed-old", ROUTE_LOOKUP_MALFORMED, malformed, 10, 0);
    route_record_unref(malformed); /* expires at 110, out of the stale window at 310 */

    /* An expired "not found" goes first, even before a route past its stale window. */
    assert_evicts("not-found-old", 320);

    store_not_found("not-found-new", 320); /* expires at 370 */
    store_found("found-new", 320);         /* expires at 420 */
    /* Then routes past their stale window, oldest first, malformed ones included. */
    assert_evicts("found-old", 330);
    assert_evicts("malformed-old", 330);
    /* Then "not found" answers that still serve, before any route that may still serve. */
    assert_evicts("not-found-new", 330);
    assert_evicts("found-new", 330);
    assert_int_equal(route_cache_count(&cache), 0);
    route_cache_evict_one(&cache, 330); /* harmless when empty */

    /* Among answers of one kind, the oldest goes first; a replaced answer is new again. */
    store_found("a", 1000);
    store_found("b", 1001);
    store_found("a", 1002);
    assert_evicts("b", 1003);
    store_not_found("c", 1004);
    store_not_found("d", 1005);
    assert_evicts("c", 1006);
    assert_evicts("d", 1006);
    assert_evicts("a", 1006);
}

static void test_bound(void **state) {
    (void)state;
    cache_start(3);
    store_found("abc", 0);
    store_found("def", 0);
    /* A flood of unknown IDs evicts unknown IDs, never the routes. */
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "random%d", i);
        store_not_found(id, (uint64_t)i);
        assert_true(route_cache_count(&cache) <= 3);
        assert_non_null(get(id));
    }
    assert_non_null(get("abc"));
    assert_non_null(get("def"));
    assert_int_equal(route_cache_count(&cache), 3);

    /* Routes beyond the bound evict the "not found" left, then the oldest route. */
    store_found("ghi", 60);
    assert_null(get("random49"));
    store_found("jkl", 60);
    assert_null(get("abc"));
    assert_non_null(get("def"));
    assert_non_null(get("ghi"));
    assert_non_null(get("jkl"));
    assert_int_equal(route_cache_count(&cache), 3);

    /* Replacing an answer never evicts another. */
    store_not_found("def", 61);
    assert_int_equal(route_cache_count(&cache), 3);
    assert_non_null(get("ghi"));
}

static void test_expired_not_found_trimmed_on_store(void **state) {
    (void)state;
    cache_start(100);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof(id), "random%d", i);
        store_not_found(id, 0);
    }
    assert_int_equal(route_cache_count(&cache), 5);
    /* Each store drops up to two expired "not found" answers, oldest first, cache full or not. */
    store_found("abc", TEST_NEGATIVE_TTL_MS);
    assert_int_equal(route_cache_count(&cache), 4);
    assert_null(get("random0"));
    assert_null(get("random1"));
    assert_non_null(get("random2"));
    store_found("def", TEST_NEGATIVE_TTL_MS);
    store_found("ghi", TEST_NEGATIVE_TTL_MS);
    assert_int_equal(route_cache_count(&cache), 3);
    assert_null(get("random4"));
    /* Routes are never trimmed, however old. */
    store_not_found("gone", 100000);
    assert_int_equal(route_cache_count(&cache), 4);
}

static void test_notified_ttl_lasts_its_epoch(void **state) {
    (void)state;
    route_cache_free(&cache);
    route_cache_config_t config = {
        .ttl_ms = TEST_TTL_MS,
        .notified_ttl_ms = 20 * TEST_TTL_MS,
        .negative_ttl_ms = TEST_NEGATIVE_TTL_MS,
        .stale_ttl_ms = TEST_STALE_TTL_MS,
        .max_entries = 10,
    };
    assert_int_equal(route_cache_init(&cache, &config), 0);
    route_cache_set_epoch(&cache, 7);
    route_cache_store(&cache, "abc", ROUTE_LOOKUP_FOUND, route, 1000, 7);
    route_cache_store(&cache, "old", ROUTE_LOOKUP_FOUND, route, 1000,
                      6); /* read before the epoch */
    route_cache_store(&cache, "none", ROUTE_LOOKUP_NOT_FOUND, NULL, 1000, 7);
    uint64_t later = 1000 + 5 * TEST_TTL_MS;
    assert_true(route_cache_fresh(&cache, get("abc"), later));
    assert_false(route_cache_fresh(&cache, get("old"), later));
    assert_false(route_cache_fresh(&cache, get("none"), 1000 + TEST_NEGATIVE_TTL_MS));
    /* Refreshed in the second half of the long TTL, not of the short one. */
    assert_false(route_cache_wants_refresh(&cache, get("abc"), later));
    assert_true(route_cache_wants_refresh(&cache, get("abc"), 1000 + 15 * TEST_TTL_MS));
    assert_false(route_cache_fresh(&cache, get("abc"), 1000 + 20 * TEST_TTL_MS));
    /* The subscription drops: the short TTL at once. */
    route_cache_set_epoch(&cache, 0);
    assert_false(route_cache_fresh(&cache, get("abc"), 1000 + TEST_TTL_MS));
    assert_true(
        route_cache_within_stale(&cache, get("abc"), 1000 + TEST_TTL_MS + TEST_STALE_TTL_MS - 1));
    /* A new subscription does not give the long TTL back to what was read before it. */
    route_cache_set_epoch(&cache, 8);
    assert_false(route_cache_fresh(&cache, get("abc"), later));
    route_cache_store(&cache, "abc", ROUTE_LOOKUP_FOUND, route, later, 8);
    assert_true(route_cache_fresh(&cache, get("abc"), later + 5 * TEST_TTL_MS));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notified_ttl_lasts_its_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_in_the_second_half, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_not_found_trimmed_on_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
