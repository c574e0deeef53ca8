/* Unit tests of routing/catalog.c against a real redis-server (and a scripted fake one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "auth/token.h"
#include "routing/catalog.h"
#include "tests/unit/support.h"
#include "util/log.h"

#define TEST_PREFIX "sandbox:catalog:"

enum { TEST_WAITERS = 10 };

/* The redis-server shared by all tests; restarted by a test's setup when a
 * previous test stopped it. */
static pid_t redis_pid = -1;
static int redis_port;
static char temporary_directory[] = "/tmp/sgw-test-catalog-XXXXXX";
static char unix_socket_path[128];
static redisContext *admin;

/* Per test. */
static struct event_base *base;
static route_catalog_t *catalog;

typedef struct answer {
    route_waiter_t waiter;
    bool done;
    int calls;
    route_lookup_status_t status;
    route_record_t *record;
    route_catalog_t **free_catalog; /* set: the callback frees *free_catalog */
} answer_t;

/* Runs the loop for milliseconds. */
static void loop_for(int milliseconds) {
    struct timeval delay = {.tv_sec = milliseconds / 1000, .tv_usec = (milliseconds % 1000) * 1000};
    event_base_loopexit(base, &delay);
    event_base_dispatch(base);
}

/* Runs the loop until condition holds (true) or timeout_ms passes (false). */
static bool loop_until(bool (*condition)(void *), void *argument, int timeout_ms) {
    uint64_t deadline = clock_ms() + (uint64_t)timeout_ms;
    while (!condition(argument)) {
        if (clock_ms() >= deadline)
            return false;
        loop_for(2);
    }
    return true;
}

/* A listening socket that accepts nothing by itself (the kernel completes
 * handshakes into its backlog); returns the fd and sets *port. */
static int silent_listener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t length = sizeof(address);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    *port = ntohs(address.sin_port);
    return fd;
}

static void admin_disconnect(void) {
    if (admin != NULL)
        redisFree(admin);
    admin = NULL;
}

static bool admin_connect(void) {
    admin_disconnect();
    admin = test_redis_connect(redis_port);
    return admin != NULL;
}

static void admin_command(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    test_redis_vcommand(admin, format, arguments);
    va_end(arguments);
}

/* Runs a command given as one string of space-separated words (no format). */
static void admin_command_words(const char *command) {
    assert_non_null(admin);
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", command);
    const char *words[16];
    size_t lengths[16];
    int count = 0;
    for (char *word = strtok(copy, " "); word != NULL && count < 16; word = strtok(NULL, " ")) {
        words[count] = word;
        lengths[count] = strlen(word);
        count++;
    }
    redisReply *reply = redisCommandArgv(admin, count, words, lengths);
    assert_non_null(reply);
    if (reply->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", reply->str);
    freeReplyObject(reply);
}

/* How many HMGETs the server ran since the last CONFIG RESETSTAT. */
static long lookup_calls(void) {
    redisReply *reply = redisCommand(admin, "INFO commandstats");
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    long calls = 0;
    const char *line = strstr(reply->str, "cmdstat_hmget:calls=");
    if (line != NULL)
        calls = strtol(line + strlen("cmdstat_hmget:calls="), NULL, 10);
    freeReplyObject(reply);
    return calls;
}

static void redis_start(void) {
    admin_disconnect();
    redis_pid = test_redis_start(redis_port, temporary_directory, unix_socket_path, &admin);
}

/* Sends signal_number to redis-server; for SIGSTOP, returns once it is stopped. */
static void redis_signal(int signal_number) {
    assert_true(redis_pid > 0);
    kill(redis_pid, signal_number);
    if (signal_number == SIGSTOP) {
        int status = 0;
        assert_int_equal(waitpid(redis_pid, &status, WUNTRACED), redis_pid);
        assert_true(WIFSTOPPED(status));
    }
}

static void redis_kill(void) {
    if (redis_pid <= 0)
        return;
    admin_disconnect();
    kill(redis_pid, SIGKILL); /* works on a stopped process too, which must not resume first */
    waitpid(redis_pid, NULL, 0);
    redis_pid = -1;
}

static route_catalog_config_t default_config(void) {
    route_catalog_config_t config = {
        .redis_host = "127.0.0.1",
        .redis_port = redis_port,
        .key_prefix = TEST_PREFIX,
        .redis_timeout_ms = 300,
        .cache_ttl_ms = 10000,
        .negative_ttl_ms = 10000,
        .stale_ttl_ms = 30000,
    };
    return config;
}

static bool catalog_ready(void *argument) {
    route_catalog_t *checked = argument;
    return route_catalog_connected(checked) && route_catalog_subscribed(checked);
}

static bool catalog_disconnected(void *argument) { return !route_catalog_connected(argument); }

static bool catalog_connected(void *argument) { return route_catalog_connected(argument); }

/* Creates the test's catalog and waits until both connections are up. */
static void catalog_start(const route_catalog_config_t *config) {
    catalog = route_catalog_new(base, config);
    assert_non_null(catalog);
    assert_true(loop_until(catalog_ready, catalog, 3000));
    assert_true(route_catalog_ever_connected(catalog));
}

static void answer_callback(route_lookup_status_t status, route_record_t *record, void *arg) {
    answer_t *answer = arg;
    answer->calls++;
    answer->done = true;
    answer->status = status;
    route_record_unref(answer->record);
    answer->record = record;
    if (answer->free_catalog != NULL) {
        route_catalog_free(*answer->free_catalog);
        *answer->free_catalog = NULL;
    }
}

static void answer_clear(answer_t *answer) {
    route_record_unref(answer->record);
    memset(answer, 0, sizeof(*answer));
}

/* Starts a lookup; returns what route_catalog_lookup returned. */
static int lookup(answer_t *answer, const char *sandbox_id) {
    answer_clear(answer);
    int result = route_catalog_lookup(catalog, sandbox_id, &answer->waiter, answer_callback, answer,
                                      &answer->status, &answer->record);
    if (result == 1)
        answer->done = true;
    return result;
}

static bool answer_done(void *argument) { return ((answer_t *)argument)->done; }

/* Looks up and waits for the answer. */
static void lookup_wait(answer_t *answer, const char *sandbox_id) {
    if (lookup(answer, sandbox_id) == 0)
        assert_true(loop_until(answer_done, answer, 3000));
    assert_true(answer->done);
}

static void assert_found(const answer_t *answer, const char *address) {
    assert_true(answer->done);
    assert_int_equal(answer->status, ROUTE_LOOKUP_FOUND);
    assert_non_null(answer->record);
    assert_null(answer->record->error);
    assert_string_equal(answer->record->address_text, address);
}

static int setup(void **state) {
    (void)state;
    if (redis_pid <= 0)
        redis_start();
    if (admin == NULL && !admin_connect())
        return -1;
    admin_command("SELECT 0");
    admin_command("FLUSHALL");
    admin_command("CONFIG RESETSTAT");
    admin_command("CONFIG SET notify-keyspace-events Kgh"); /* a test may turn them off */
    base = event_base_new();
    return base != NULL ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    route_catalog_free(catalog);
    catalog = NULL;
    event_base_free(base);
    base = NULL;
    if (redis_pid > 0)
        kill(redis_pid, SIGCONT);
    return 0;
}

static void test_found_not_found_malformed(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1 execution_id e1");
    admin_command("HSET " TEST_PREFIX "bad addr not-an-ip");
    route_catalog_config_t config = default_config();
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    assert_int_equal(lookup(&answer, "abc"), 0);
    assert_true(loop_until(answer_done, &answer, 3000));
    assert_found(&answer, "10.0.0.1");
    assert_string_equal(answer.record->execution_id, "e1");
    assert_string_equal(answer.record->sandbox_id, "abc");

    lookup_wait(&answer, "missing");
    assert_int_equal(answer.status, ROUTE_LOOKUP_NOT_FOUND);
    assert_null(answer.record);

    lookup_wait(&answer, "bad");
    assert_int_equal(answer.status, ROUTE_LOOKUP_MALFORMED);
    assert_non_null(answer.record);
    assert_non_null(answer.record->error);

    /* Malformed answers are cached too. */
    assert_int_equal(lookup(&answer, "bad"), 1);
    assert_int_equal(answer.status, ROUTE_LOOKUP_MALFORMED);
    assert_non_null(answer.record);

    route_catalog_stats_t stats = route_catalog_get_stats(catalog);
    assert_int_equal(stats.redis_lookups, 3);
    assert_int_equal(stats.cache_misses, 3);
    assert_int_equal(stats.cache_hits, 1);
    assert_int_equal(stats.redis_errors, 0);
    assert_int_equal(stats.cache_entries, 3);
    answer_clear(&answer);
}

/* HSET key field <length bytes of byte>: a large value. */
static void admin_hset_filled(const char *key, const char *field, char byte, size_t length) {
    char *value = malloc(length);
    assert_non_null(value);
    memset(value, byte, length);
    const char *words[] = {"HSET", key, field, value};
    size_t lengths[] = {4, strlen(key), strlen(field), length};
    redisReply *reply = redisCommandArgv(admin, 4, words, lengths);
    free(value);
    assert_non_null(reply);
    if (reply->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", reply->str);
    freeReplyObject(reply);
}

static void test_reads_only_the_gateways_fields(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1 execution_id e1");
    admin_hset_filled(TEST_PREFIX "abc", "allow_out", 'a', 4 * 1024 * 1024);
    /* A hash with only other readers' fields is no sandbox of the gateway's. */
    admin_command("HSET " TEST_PREFIX "egressonly netns ns1");
    route_catalog_config_t config = default_config();
    catalog_start(&config);

    static answer_t answer;
    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    assert_string_equal(answer.record->execution_id, "e1");
    lookup_wait(&answer, "egressonly");
    assert_int_equal(answer.status, ROUTE_LOOKUP_NOT_FOUND);
    assert_int_equal(lookup_calls(), 2);
    answer_clear(&answer);
}

static void test_oversized_record_is_malformed_not_an_outage(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    admin_command("HSET " TEST_PREFIX "huge addr 10.0.0.2");
    admin_hset_filled(TEST_PREFIX "huge", "mask_request_host", 'h', 16 * 1024 * 1024);
    route_catalog_config_t config = default_config();
    /* Long enough for 16 MB under ASan on a busy machine: a reply slower than
     * redis_timeout is test_reply_still_arriving_is_not_a_hang's case. */
    config.redis_timeout_ms = 10000;
    catalog_start(&config);

    /* The huge reply and one queued behind it on the same connection. */
    static answer_t huge_answer;
    memset(&huge_answer, 0, sizeof(huge_answer));
    static answer_t other;
    memset(&other, 0, sizeof(other));
    assert_int_equal(lookup(&huge_answer, "huge"), 0);
    assert_int_equal(lookup(&other, "abc"), 0);
    assert_true(loop_until(answer_done, &huge_answer, 10000));
    assert_int_equal(huge_answer.status, ROUTE_LOOKUP_MALFORMED);
    assert_non_null(strstr(huge_answer.record->error, "over 65536"));
    assert_true(loop_until(answer_done, &other, 10000));
    assert_found(&other, "10.0.0.1");
    assert_true(route_catalog_connected(catalog));
    assert_int_equal(route_catalog_get_stats(catalog).redis_errors, 0);
    answer_clear(&huge_answer);
    answer_clear(&other);
}

static void test_cache_hit_skips_redis(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lookup(&answer, "abc"), 1);
        assert_found(&answer, "10.0.0.1");
    }
    loop_for(20);
    assert_int_equal(lookup_calls(), 1);
    assert_int_equal(route_catalog_get_stats(catalog).cache_hits, 5);
    answer_clear(&answer);
}

static void test_negative_cache(void **state) {
    (void)state;
    route_catalog_config_t config = default_config();
    config.negative_ttl_ms = 200;
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    assert_int_equal(lookup(&answer, "nope"), 0);
    assert_true(loop_until(answer_done, &answer, 3000));
    assert_int_equal(answer.status, ROUTE_LOOKUP_NOT_FOUND);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(lookup(&answer, "nope"), 1);
        assert_int_equal(answer.status, ROUTE_LOOKUP_NOT_FOUND);
        assert_null(answer.record);
    }
    loop_for(20);
    assert_int_equal(lookup_calls(), 1);

    /* Past negative_ttl, Redis is asked again (and now it exists). */
    admin_command("HSET " TEST_PREFIX "nope addr 10.0.0.7");
    loop_for(250);
    assert_int_equal(lookup(&answer, "nope"), 0);
    assert_true(loop_until(answer_done, &answer, 3000));
    assert_found(&answer, "10.0.0.7");
    assert_int_equal(lookup_calls(), 2);
    answer_clear(&answer);
}

static bool all_done(void *argument) {
    answer_t *answers = argument;
    for (int i = 0; i < TEST_WAITERS; i++) {
        if (!answers[i].done)
            return false;
    }
    return true;
}

static void test_single_flight(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    catalog_start(&config);

    static answer_t answers[TEST_WAITERS];
    memset(answers, 0, sizeof(answers));
    for (int i = 0; i < TEST_WAITERS; i++)
        assert_int_equal(lookup(&answers[i], "abc"), 0);
    assert_true(loop_until(all_done, answers, 3000));
    for (int i = 0; i < TEST_WAITERS; i++) {
        assert_int_equal(answers[i].calls, 1);
        assert_found(&answers[i], "10.0.0.1");
        assert_ptr_equal(answers[i].record, answers[0].record);
    }
    assert_int_equal(lookup_calls(), 1);
    assert_int_equal(route_catalog_get_stats(catalog).redis_lookups, 1);
    for (int i = 0; i < TEST_WAITERS; i++)
        answer_clear(&answers[i]);
}

static void test_cancel(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    admin_command("HSET " TEST_PREFIX "def addr 10.0.0.2");
    route_catalog_config_t config = default_config();
    catalog_start(&config);

    static answer_t answers[3];
    memset(answers, 0, sizeof(answers));
    for (int i = 0; i < 3; i++)
        assert_int_equal(lookup(&answers[i], "abc"), 0);
    route_catalog_cancel(&answers[1].waiter);
    route_catalog_cancel(&answers[1].waiter); /* harmless twice */
    route_waiter_t never_used = {0};
    route_catalog_cancel(&never_used);
    assert_true(loop_until(answer_done, &answers[2], 3000));
    loop_for(30);
    assert_found(&answers[0], "10.0.0.1");
    assert_found(&answers[2], "10.0.0.1");
    assert_int_equal(answers[1].calls, 0);
    assert_null(answers[1].waiter.pending);

    /* Everyone gone: the query still completes and fills the cache. */
    assert_int_equal(lookup(&answers[0], "def"), 0);
    assert_int_equal(lookup(&answers[1], "def"), 0);
    route_catalog_cancel(&answers[0].waiter);
    route_catalog_cancel(&answers[1].waiter);
    loop_for(100);
    assert_int_equal(answers[0].calls, 0);
    assert_int_equal(answers[1].calls, 0);
    assert_int_equal(lookup(&answers[0], "def"), 1);
    assert_found(&answers[0], "10.0.0.2");
    assert_int_equal(lookup_calls(), 2);
    for (int i = 0; i < 3; i++)
        answer_clear(&answers[i]);
}

typedef struct invalidation_wait {
    route_catalog_t *catalog;
    uint64_t baseline;
} invalidation_wait_t;

static bool invalidated(void *argument) {
    invalidation_wait_t *wait = argument;
    return route_catalog_get_stats(wait->catalog).invalidations > wait->baseline;
}

/* Changes the record with command and checks the cache drops it within 100 ms. */
static void assert_invalidated_within_100ms(const char *command) {
    invalidation_wait_t wait = {catalog, route_catalog_get_stats(catalog).invalidations};
    uint64_t started = clock_ms();
    admin_command_words(command);
    if (!loop_until(invalidated, &wait, 100))
        fail_msg("no invalidation within 100 ms after %s", command);
    assert_true(clock_ms() - started <= 100);
}

static void test_invalidation_by_notification(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    assert_int_equal(lookup(&answer, "abc"), 1);

    assert_invalidated_within_100ms("HSET " TEST_PREFIX "abc addr 10.0.0.2");
    assert_int_equal(lookup(&answer, "abc"), 0);
    assert_true(loop_until(answer_done, &answer, 3000));
    assert_found(&answer, "10.0.0.2");

    assert_invalidated_within_100ms("DEL " TEST_PREFIX "abc");
    lookup_wait(&answer, "abc");
    assert_int_equal(answer.status, ROUTE_LOOKUP_NOT_FOUND);

    /* A negative answer is dropped when the record appears. */
    assert_invalidated_within_100ms("HSET " TEST_PREFIX "abc addr 10.0.0.3");
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.3");

    /* Keys outside the prefix do not reach the cache. */
    uint64_t before = route_catalog_get_stats(catalog).invalidations;
    admin_command("HSET other:abc addr 10.0.0.4");
    loop_for(50);
    assert_int_equal(route_catalog_get_stats(catalog).invalidations, before);
    assert_int_equal(lookup(&answer, "abc"), 1);
    answer_clear(&answer);
}

typedef struct change_seen {
    int calls;
    char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
} change_seen_t;

static void change_callback(const char *sandbox_id, void *arg) {
    change_seen_t *seen = arg;
    seen->calls++;
    snprintf(seen->sandbox_id, sizeof(seen->sandbox_id), "%s", sandbox_id);
}

static bool change_called(void *argument) { return ((change_seen_t *)argument)->calls > 0; }

static void test_reread_and_change_hook(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1 state paused");
    route_catalog_config_t config = default_config();
    catalog_start(&config);
    static change_seen_t seen;
    memset(&seen, 0, sizeof(seen));
    route_catalog_on_change(catalog, change_callback, &seen);

    static answer_t answer;
    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    assert_true(answer.record->paused);

    /* A reread goes to Redis although the route is cached, and refreshes the cache. */
    uint64_t lookups = route_catalog_get_stats(catalog).redis_lookups;
    answer_clear(&answer);
    assert_int_equal(route_catalog_reread(catalog, "abc", &answer.waiter, answer_callback, &answer,
                                          &answer.status, &answer.record),
                     0);
    assert_true(loop_until(answer_done, &answer, 3000));
    assert_found(&answer, "10.0.0.1");
    assert_int_equal(route_catalog_get_stats(catalog).redis_lookups, lookups + 1);

    /* The hook hears of a change after the route was dropped; the next lookup reads it. */
    admin_command("HSET " TEST_PREFIX "abc state running addr 10.0.0.2");
    assert_true(loop_until(change_called, &seen, 1000));
    assert_string_equal(seen.sandbox_id, "abc");
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.2");
    assert_false(answer.record->paused);

    /* Without the hook nothing is called. */
    route_catalog_on_change(catalog, NULL, NULL);
    seen.calls = 0;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.3");
    loop_for(100);
    assert_int_equal(seen.calls, 0);
    answer_clear(&answer);
}

static bool catalog_unsubscribed(void *argument) { return !route_catalog_subscribed(argument); }

/* Lookups answered by the cache after pause_ms, as a count of HMGETs avoided. */
static bool cached_after(const char *sandbox_id, int pause_ms) {
    static answer_t answer;
    memset(&answer, 0, sizeof(answer));
    loop_for(pause_ms);
    long before = lookup_calls();
    lookup_wait(&answer, sandbox_id);
    assert_found(&answer, "10.0.0.1");
    answer_clear(&answer);
    return lookup_calls() == before;
}

static void test_notified_ttl(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.cache_ttl_ms = 100;
    config.notified_ttl_ms = 60000;
    catalog_start(&config);
    loop_for(100); /* CONFIG GET notify-keyspace-events answered */

    /* Subscribed, notifications on: a route outlives route_cache_ttl. */
    assert_false(cached_after("abc", 0));
    assert_true(cached_after("abc", 250));

    /* The subscription drops: routes older than route_cache_ttl are read again
     * (at once: it reconnects 50 ms later). */
    admin_command("CLIENT KILL TYPE pubsub");
    assert_true(loop_until(catalog_unsubscribed, catalog, 1000));
    assert_false(cached_after("abc", 0));
    /* Back: what was read during the gap keeps the short TTL; what is read now, the long one. */
    assert_true(loop_until(catalog_ready, catalog, 3000));
    assert_false(cached_after("abc", 150));
    assert_true(cached_after("abc", 250));

    /* Notifications turned off (checked every 10 s, and at each connect): the short TTL. */
    admin_command("CONFIG SET notify-keyspace-events %s", "");
    admin_command("CLIENT KILL TYPE normal SKIPME yes");
    assert_true(loop_until(catalog_ready, catalog, 3000));
    loop_for(100);
    assert_false(cached_after("abc", 150));
    assert_false(cached_after("abc", 150));
}

static void test_invalidation_glob_prefix_and_database(void **state) {
    (void)state;
    route_catalog_config_t config = default_config();
    config.key_prefix = "s*[x]?:";
    config.redis_database = 3;
    admin_command("SELECT 3");
    admin_command("HSET s*[x]?:abc addr 10.0.0.1");
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    assert_invalidated_within_100ms("HSET s*[x]?:abc addr 10.0.0.5");
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.5");

    /* Keys that only an unescaped glob would match do not reach the cache. */
    uint64_t before = route_catalog_get_stats(catalog).invalidations;
    admin_command("HSET sXxY:abc addr 10.0.0.6");
    loop_for(50);
    assert_int_equal(route_catalog_get_stats(catalog).invalidations, before);
    admin_command("SELECT 0");
    answer_clear(&answer);
}

static void test_unix_socket(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.redis_host = NULL;
    config.redis_unix_path = unix_socket_path;
    catalog_start(&config);
    static answer_t answer;
    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    answer_clear(&answer);
}

static void test_ttl_expiry(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.cache_ttl_ms = 100;
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_int_equal(lookup(&answer, "abc"), 1);
    /* No notification for this change: only the TTL makes it visible. */
    route_catalog_invalidate(catalog, "unrelated");
    loop_for(150);
    assert_int_equal(lookup(&answer, "abc"), 0);
    assert_true(loop_until(answer_done, &answer, 3000));
    assert_found(&answer, "10.0.0.1");
    assert_int_equal(lookup_calls(), 2);
    answer_clear(&answer);
}

/* In the second half of its TTL a route is read again in the background: the
 * cached answer still serves at once, and the new one replaces it before the
 * TTL ends (a change made without a notification shows within the TTL). */
static void test_refresh_ahead(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.cache_ttl_ms = 600;
    catalog_start(&config);
    admin_command("CONFIG SET notify-keyspace-events %s", "");

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    uint64_t stored = clock_ms();
    assert_int_equal(lookup(&answer, "abc"), 1); /* first half: no query */
    loop_for(20);
    assert_int_equal(lookup_calls(), 1);

    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.2");
    loop_for(350);
    assert_int_equal(lookup(&answer, "abc"), 1); /* second half: served, and refreshed */
    assert_found(&answer, "10.0.0.1");
    assert_int_equal(lookup(&answer, "abc"), 1); /* one refresh in flight at a time */
    loop_for(50);
    assert_int_equal(lookup_calls(), 2);
    assert_int_equal(lookup(&answer, "abc"), 1);
    assert_found(&answer, "10.0.0.2");
    assert_true(clock_ms() - stored < 600);
    route_catalog_stats_t stats = route_catalog_get_stats(catalog);
    assert_int_equal(stats.redis_lookups, 2);
    assert_int_equal(stats.cache_misses, 1);
    answer_clear(&answer);
}

static void test_cache_bound(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.cache_max_entries = 8;
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "random%d", i);
        lookup_wait(&answer, id);
        assert_int_equal(answer.status, ROUTE_LOOKUP_NOT_FOUND);
        assert_true(route_catalog_get_stats(catalog).cache_entries <= 8);
    }
    /* A flood of unknown IDs evicts unknown IDs, not the real route. */
    assert_int_equal(lookup(&answer, "abc"), 1);
    assert_found(&answer, "10.0.0.1");
    answer_clear(&answer);
}

static void test_redis_down_serves_cache_and_reconnects(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.cache_ttl_ms = 100;
    config.stale_ttl_ms = 600;
    catalog_start(&config);

    static answer_t answer;

    memset(&answer, 0, sizeof(answer));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    uint64_t cached_at = clock_ms();

    redis_kill();
    assert_true(loop_until(catalog_disconnected, catalog, 1000));
    assert_true(route_catalog_ever_connected(catalog));

    /* Misses are answered at once, without queueing. */
    assert_int_equal(lookup(&answer, "other"), 1);
    assert_int_equal(answer.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_null(answer.record);

    /* Past its TTL, within stale_ttl: still served. */
    loop_for(150);
    assert_true(clock_ms() - cached_at > 100);
    assert_int_equal(lookup(&answer, "abc"), 1);
    assert_found(&answer, "10.0.0.1");

    /* Past the stale window: unavailable. */
    while (clock_ms() - cached_at < 750)
        loop_for(20);
    assert_int_equal(lookup(&answer, "abc"), 1);
    assert_int_equal(answer.status, ROUTE_LOOKUP_UNAVAILABLE);

    /* Back: reconnects within the backoff cap and lookups work again. */
    redis_start();
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.3");
    uint64_t restarted = clock_ms();
    assert_true(loop_until(catalog_connected, catalog, 2500));
    assert_true(clock_ms() - restarted < 2000);
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.3");
    assert_true(route_catalog_get_stats(catalog).redis_errors > 0);
    answer_clear(&answer);
}

static void test_dropped_connection_answers_in_flight(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.cache_ttl_ms = 50;
    config.redis_timeout_ms = 2000;
    catalog_start(&config);

    static answer_t cached;
    memset(&cached, 0, sizeof(cached));
    static answer_t uncached;
    memset(&uncached, 0, sizeof(uncached));
    lookup_wait(&cached, "abc");
    loop_for(80);

    /* Up and expired: asked again; the server hangs, then dies. */
    redis_signal(SIGSTOP);
    assert_int_equal(lookup(&cached, "abc"), 0);
    assert_int_equal(lookup(&uncached, "xyz"), 0);
    loop_for(20);
    uint64_t killed = clock_ms();
    redis_kill();
    assert_true(loop_until(answer_done, &uncached, 1000));
    assert_true(loop_until(answer_done, &cached, 1000));
    assert_true(clock_ms() - killed < 1000); /* well before redis_timeout */
    assert_int_equal(uncached.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_found(&cached, "10.0.0.1"); /* stale */
    answer_clear(&cached);
    answer_clear(&uncached);
}

static void test_timeout_hung_server(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    config.redis_timeout_ms = 300;
    catalog_start(&config);

    redis_signal(SIGSTOP);
    static answer_t answer;
    memset(&answer, 0, sizeof(answer));
    uint64_t started = clock_ms();
    assert_int_equal(lookup(&answer, "abc"), 0);
    assert_true(loop_until(answer_done, &answer, 2000));
    uint64_t elapsed = clock_ms() - started;
    assert_int_equal(answer.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_true(elapsed >= 250 && elapsed < 1000);

    /* A hung server counts as down: misses are answered at once. */
    assert_false(route_catalog_connected(catalog));
    assert_int_equal(lookup(&answer, "abc"), 1);
    assert_int_equal(answer.status, ROUTE_LOOKUP_UNAVAILABLE);

    redis_signal(SIGCONT);
    assert_true(loop_until(catalog_connected, catalog, 3000));
    lookup_wait(&answer, "abc");
    assert_found(&answer, "10.0.0.1");
    answer_clear(&answer);
}

static void test_timeout_silent_listener(void **state) {
    (void)state;
    int port;
    int listener = silent_listener(&port);
    route_catalog_config_t config = default_config();
    config.redis_port = port;
    config.redis_timeout_ms = 200;
    catalog = route_catalog_new(base, &config);
    assert_non_null(catalog);

    /* The first connect is in progress: the miss waits for it, bounded. */
    static answer_t answer;
    memset(&answer, 0, sizeof(answer));
    uint64_t started = clock_ms();
    assert_int_equal(lookup(&answer, "abc"), 0);
    assert_true(loop_until(answer_done, &answer, 2000));
    uint64_t elapsed = clock_ms() - started;
    assert_int_equal(answer.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_true(elapsed >= 150 && elapsed < 800);
    assert_false(route_catalog_ever_connected(catalog));
    assert_int_equal(lookup(&answer, "abc"), 1);
    assert_int_equal(answer.status, ROUTE_LOOKUP_UNAVAILABLE);
    route_catalog_free(catalog);
    catalog = NULL;
    close(listener);
    answer_clear(&answer);
}

static void test_free_answers_waiters(void **state) {
    (void)state;
    int port;
    int listener = silent_listener(&port);
    route_catalog_config_t config = default_config();
    config.redis_port = port;
    catalog = route_catalog_new(base, &config);
    assert_non_null(catalog);
    static answer_t answers[3];
    memset(answers, 0, sizeof(answers));
    assert_int_equal(lookup(&answers[0], "abc"), 0);
    assert_int_equal(lookup(&answers[1], "abc"), 0);
    assert_int_equal(lookup(&answers[2], "def"), 0);
    route_catalog_free(catalog);
    catalog = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(answers[i].calls, 1);
        assert_int_equal(answers[i].status, ROUTE_LOOKUP_UNAVAILABLE);
        answer_clear(&answers[i]);
    }
    loop_for(20);
    close(listener);
}

static void test_free_inside_reply_callback(void **state) {
    (void)state;
    admin_command("HSET " TEST_PREFIX "abc addr 10.0.0.1");
    route_catalog_config_t config = default_config();
    catalog_start(&config);

    static answer_t answers[3];
    memset(answers, 0, sizeof(answers));
    assert_int_equal(lookup(&answers[0], "abc"), 0);
    answers[0].free_catalog = &catalog;
    assert_int_equal(lookup(&answers[1], "abc"), 0);
    assert_int_equal(lookup(&answers[2], "other"), 0);
    loop_for(100);
    assert_null(catalog);
    for (int i = 0; i < 3; i++)
        assert_int_equal(answers[i].calls, 1);
    assert_found(&answers[0], "10.0.0.1");
    assert_found(&answers[1], "10.0.0.1"); /* the same reply, after the free */
    assert_int_equal(answers[2].status, ROUTE_LOOKUP_UNAVAILABLE);
    for (int i = 0; i < 3; i++)
        answer_clear(&answers[i]);
}

static void test_free_inside_timeout_callback(void **state) {
    (void)state;
    route_catalog_config_t config = default_config();
    config.redis_timeout_ms = 200;
    catalog_start(&config);

    redis_signal(SIGSTOP);
    static answer_t answers[2];
    memset(answers, 0, sizeof(answers));
    assert_int_equal(lookup(&answers[0], "abc"), 0);
    answers[0].free_catalog = &catalog;
    assert_int_equal(lookup(&answers[1], "def"), 0);
    assert_true(loop_until(answer_done, &answers[1], 2000));
    assert_null(catalog);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(answers[i].calls, 1);
        assert_int_equal(answers[i].status, ROUTE_LOOKUP_UNAVAILABLE);
        answer_clear(&answers[i]);
    }
    redis_signal(SIGCONT);
}

/* ---- a scripted server, for replies that come late ---- */

typedef struct fake_peer {
    int fd;
    char buffer[4096];
    size_t length;
} fake_peer_t;

typedef struct fake_wait {
    fake_peer_t *peer;
    const char *needle;
} fake_wait_t;

static void fake_receive(fake_peer_t *peer) {
    for (;;) {
        ssize_t received =
            recv(peer->fd, peer->buffer + peer->length, sizeof(peer->buffer) - 1 - peer->length, 0);
        if (received <= 0)
            break;
        peer->length += (size_t)received;
        peer->buffer[peer->length] = '\0';
    }
}

/* Forgets what the peer received so far. */
static void fake_clear(fake_peer_t *peer) {
    peer->length = 0;
    peer->buffer[0] = '\0';
}

static bool fake_has(void *argument) {
    fake_wait_t *wait = argument;
    fake_receive(wait->peer);
    return strstr(wait->peer->buffer, wait->needle) != NULL;
}

static void fake_send(const fake_peer_t *peer, const char *text) {
    size_t length = strlen(text);
    assert_int_equal(send(peer->fd, text, length, MSG_NOSIGNAL), (ssize_t)length);
}

/* An HMGET reply of ROUTE_RECORD_FIELD_COUNT values: addr (nil when NULL), then nils. */
static void fake_send_record(const fake_peer_t *peer, const char *addr) {
    char reply[512];
    int length = snprintf(reply, sizeof(reply), "*%d\r\n", ROUTE_RECORD_FIELD_COUNT);
    if (addr != NULL)
        length += snprintf(reply + length, sizeof(reply) - (size_t)length, "$%zu\r\n%s\r\n",
                           strlen(addr), addr);
    for (int i = addr != NULL ? 1 : 0; i < ROUTE_RECORD_FIELD_COUNT; i++)
        length += snprintf(reply + length, sizeof(reply) - (size_t)length, "$-1\r\n");
    fake_send(peer, reply);
}

typedef struct fake_accept {
    int listener;
    fake_peer_t *peer;
} fake_accept_t;

static bool fake_accepted(void *argument) {
    fake_accept_t *accept_wait = argument;
    int fd = accept4(accept_wait->listener, NULL, NULL, SOCK_NONBLOCK);
    if (fd < 0)
        return false;
    accept_wait->peer->fd = fd;
    return true;
}

/* A catalog (redis_timeout 300 ms) connected to a scripted server: both
 * connections accepted into peers, PING and PSUBSCRIBE answered like Redis.
 * Returns the lookup connection's peer. */
static fake_peer_t *fake_catalog_start(int *listener, fake_peer_t peers[2]) {
    int port;
    *listener = silent_listener(&port);
    route_catalog_config_t config = default_config();
    config.redis_port = port;
    config.redis_timeout_ms = 300;
    catalog = route_catalog_new(base, &config);
    assert_non_null(catalog);

    fake_peer_t *lookup_peer = NULL;
    for (int i = 0; i < 2; i++) {
        peers[i] = (fake_peer_t){.fd = -1};
        fake_accept_t accept_wait = {*listener, &peers[i]};
        assert_true(loop_until(fake_accepted, &accept_wait, 2000));
        fake_wait_t ping = {&peers[i], "PING\r\n"};
        fake_wait_t subscribe = {&peers[i], "catalog:*\r\n"};
        uint64_t deadline = clock_ms() + 2000;
        while (!fake_has(&ping) && !fake_has(&subscribe) && clock_ms() < deadline)
            loop_for(2);
        if (strstr(peers[i].buffer, "PING") != NULL) {
            fake_send(&peers[i], "+PONG\r\n");
            lookup_peer = &peers[i];
        } else {
            const char *pattern = "__keyspace@0__:" TEST_PREFIX "*";
            char reply[256];
            snprintf(reply, sizeof(reply), "*3\r\n$10\r\npsubscribe\r\n$%zu\r\n%s\r\n:1\r\n",
                     strlen(pattern), pattern);
            fake_send(&peers[i], reply);
        }
        fake_clear(&peers[i]);
    }
    assert_non_null(lookup_peer);
    assert_true(loop_until(catalog_ready, catalog, 2000));
    return lookup_peer;
}

/* Frees the catalog and closes the scripted server's sockets. */
static void fake_catalog_stop(int listener, fake_peer_t peers[2]) {
    route_catalog_free(catalog);
    catalog = NULL;
    for (int i = 0; i < 2; i++)
        close(peers[i].fd);
    close(listener);
}

static void test_late_reply_fills_cache(void **state) {
    (void)state;
    int listener;
    fake_peer_t peers[2];
    fake_peer_t *lookup_peer = fake_catalog_start(&listener, peers);

    /* Two queries; the first is answered in time, the second after its timeout. */
    static answer_t first;
    memset(&first, 0, sizeof(first));
    static answer_t second;
    memset(&second, 0, sizeof(second));
    static answer_t cancelled;
    memset(&cancelled, 0, sizeof(cancelled));
    assert_int_equal(lookup(&first, "zzz"), 0);
    assert_int_equal(lookup(&second, "aaa"), 0);
    assert_int_equal(lookup(&cancelled, "aaa"), 0);
    route_catalog_cancel(&cancelled.waiter);
    fake_wait_t both = {lookup_peer, TEST_PREFIX "aaa\r\n"};
    assert_true(loop_until(fake_has, &both, 1000));
    assert_non_null(strstr(lookup_peer->buffer, TEST_PREFIX "zzz\r\n"));
    fake_clear(lookup_peer);
    uint64_t sent = clock_ms();

    loop_for(150);
    fake_send_record(lookup_peer, NULL);
    assert_true(loop_until(answer_done, &first, 1000));
    assert_int_equal(first.status, ROUTE_LOOKUP_NOT_FOUND);

    assert_true(loop_until(answer_done, &second, 1000));
    assert_int_equal(second.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_true(clock_ms() - sent >= 250);
    assert_int_equal(cancelled.calls, 0);
    /* Replies were still coming: the connection is slow, not hung. */
    assert_true(route_catalog_connected(catalog));

    fake_send_record(lookup_peer, "10.0.0.9");
    loop_for(50);
    assert_int_equal(second.calls, 1);
    assert_int_equal(lookup(&second, "aaa"), 1);
    assert_found(&second, "10.0.0.9");
    fake_receive(lookup_peer);
    assert_int_equal(lookup_peer->length, 0); /* nothing more was asked */

    fake_catalog_stop(listener, peers);
    answer_clear(&first);
    answer_clear(&second);
    answer_clear(&cancelled);
}

/* Sends count bytes of c. */
static void fake_send_filled(const fake_peer_t *peer, char c, size_t count) {
    char bytes[256];
    assert_true(count <= sizeof(bytes) - 1);
    memset(bytes, c, count);
    bytes[count] = '\0';
    fake_send(peer, bytes);
}

/* A reply whose bytes keep coming, slower than redis_timeout in all: the
 * lookups waiting on it are given up alone, and the connection stays up. */
static void test_reply_still_arriving_is_not_a_hang(void **state) {
    (void)state;
    int listener;
    fake_peer_t peers[2];
    fake_peer_t *lookup_peer = fake_catalog_start(&listener, peers);

    static answer_t slow;
    memset(&slow, 0, sizeof(slow));
    static answer_t behind;
    memset(&behind, 0, sizeof(behind));
    assert_int_equal(lookup(&slow, "aaa"), 0);
    fake_wait_t asked = {lookup_peer, TEST_PREFIX "aaa\r\n"};
    assert_true(loop_until(fake_has, &asked, 1000));
    fake_clear(lookup_peer);
    uint64_t sent = clock_ms();

    /* addr whole, then an execution_id of 1,000 bytes, 100 every 100 ms. */
    char head[64];
    snprintf(head, sizeof(head), "*%d\r\n$8\r\n10.0.0.9\r\n$1000\r\n", ROUTE_RECORD_FIELD_COUNT);
    fake_send(lookup_peer, head);
    for (int chunk = 0; chunk < 10; chunk++) {
        loop_for(100);
        fake_send_filled(lookup_peer, 'e', 100);
        if (chunk == 4) {
            /* Its own timeout ends while bytes of the same reply still come. */
            assert_int_equal(lookup(&behind, "bbb"), 0);
        }
        assert_true(route_catalog_connected(catalog));
    }
    assert_true(slow.done);
    assert_int_equal(slow.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_true(behind.done);
    assert_int_equal(behind.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_true(clock_ms() - sent >= 900);

    fake_send(lookup_peer, "\r\n"); /* the execution_id's end, then nil for the other fields */
    for (int field = 2; field < ROUTE_RECORD_FIELD_COUNT; field++)
        fake_send(lookup_peer, "$-1\r\n");
    fake_send_record(lookup_peer, NULL);
    loop_for(50);
    assert_true(route_catalog_connected(catalog));
    /* The late replies fill the cache: neither ID is asked for again. */
    assert_int_equal(lookup(&slow, "aaa"), 1);
    assert_found(&slow, "10.0.0.9");
    assert_int_equal(strlen(slow.record->execution_id), 1000);
    assert_int_equal(lookup(&behind, "bbb"), 1);
    assert_int_equal(behind.status, ROUTE_LOOKUP_NOT_FOUND);
    fake_receive(lookup_peer);
    assert_non_null(strstr(lookup_peer->buffer, TEST_PREFIX "bbb\r\n"));
    assert_null(strstr(lookup_peer->buffer, TEST_PREFIX "aaa\r\n"));

    fake_catalog_stop(listener, peers);
    answer_clear(&slow);
    answer_clear(&behind);
}

/* A value over 64 KiB is dropped from the socket as it comes, never held
 * whole: the record is malformed with the value's real length, the replies
 * behind it on the same connection are read as usual, and bytes of it
 * arriving slower than redis_timeout are progress, not a hang. */
static void test_value_over_64k_is_dropped_unread(void **state) {
    (void)state;
    int listener;
    fake_peer_t peers[2];
    fake_peer_t *lookup_peer = fake_catalog_start(&listener, peers);

    static answer_t big;
    memset(&big, 0, sizeof(big));
    static answer_t behind;
    memset(&behind, 0, sizeof(behind));
    assert_int_equal(lookup(&big, "aaa"), 0);
    assert_int_equal(lookup(&behind, "bbb"), 0);
    fake_wait_t asked = {lookup_peer, TEST_PREFIX "bbb\r\n"};
    assert_true(loop_until(fake_has, &asked, 1000));
    fake_clear(lookup_peer);

    /* addr, then an execution_id of 70,000 bytes whose length line comes in
     * two pieces; 700 ms of it, 100 bytes every 10 ms; then the rest. */
    char head[64];
    snprintf(head, sizeof(head), "*%d\r\n$8\r\n10.0.0.9\r\n$7", ROUTE_RECORD_FIELD_COUNT);
    fake_send(lookup_peer, head);
    loop_for(20);
    fake_send(lookup_peer, "0000\r\n");
    size_t sent = 0;
    for (int chunk = 0; chunk < 70; chunk++) {
        fake_send_filled(lookup_peer, 'e', 100);
        sent += 100;
        loop_for(10);
    }
    assert_true(route_catalog_connected(catalog));
    assert_true(big.done);
    assert_int_equal(big.status, ROUTE_LOOKUP_UNAVAILABLE); /* its own timeout passed */
    while (sent < 70000) {
        size_t count = 70000 - sent < 255 ? 70000 - sent : 255;
        fake_send_filled(lookup_peer, 'e', count);
        sent += count;
        if (sent % (255 * 40) == 0)
            loop_for(1);
    }
    /* The value's end, nil for the other fields and the next reply, at once. */
    char tail[512];
    size_t length = (size_t)snprintf(tail, sizeof(tail), "\r\n");
    for (int field = 2; field < ROUTE_RECORD_FIELD_COUNT; field++)
        length += (size_t)snprintf(tail + length, sizeof(tail) - length, "$-1\r\n");
    length += (size_t)snprintf(tail + length, sizeof(tail) - length, "*%d\r\n$8\r\n10.0.0.8\r\n",
                               ROUTE_RECORD_FIELD_COUNT);
    for (int field = 1; field < ROUTE_RECORD_FIELD_COUNT; field++)
        length += (size_t)snprintf(tail + length, sizeof(tail) - length, "$-1\r\n");
    fake_send(lookup_peer, tail);
    loop_for(50);
    assert_true(route_catalog_connected(catalog));

    /* The late replies filled the cache. */
    assert_int_equal(lookup(&big, "aaa"), 1);
    assert_int_equal(big.status, ROUTE_LOOKUP_MALFORMED);
    assert_non_null(strstr(big.record->error, "its fields hold 70008 bytes, over 65536"));
    assert_int_equal(lookup(&behind, "bbb"), 1);
    assert_found(&behind, "10.0.0.8");

    fake_catalog_stop(listener, peers);
    answer_clear(&big);
    answer_clear(&behind);
}

static void test_no_server_at_all(void **state) {
    (void)state;
    route_catalog_config_t config = default_config();
    config.redis_port = test_free_port();
    catalog = route_catalog_new(base, &config);
    assert_non_null(catalog);
    loop_for(100);
    static answer_t answer;
    memset(&answer, 0, sizeof(answer));
    assert_int_equal(lookup(&answer, "abc"), 1);
    assert_int_equal(answer.status, ROUTE_LOOKUP_UNAVAILABLE);
    assert_false(route_catalog_ever_connected(catalog));
    assert_true(route_catalog_get_stats(catalog).redis_errors > 0);
    answer_clear(&answer);
}

static int group_setup(void **state) {
    (void)state;
    if (auth_init() != 0)
        return -1;
    if (mkdtemp(temporary_directory) == NULL)
        return -1;
    snprintf(unix_socket_path, sizeof(unix_socket_path), "%s/redis.sock", temporary_directory);
    redis_port = test_free_port();
    redis_start();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    redis_kill();
    unlink(unix_socket_path);
    char dump[160];
    snprintf(dump, sizeof(dump), "%s/dump.rdb", temporary_directory);
    unlink(dump);
    rmdir(temporary_directory);
    return 0;
}

int main(void) {
    if (access(TEST_REDIS_SERVER, X_OK) != 0) {
        printf("[  SKIPPED ] test_catalog: %s is not installed\n", TEST_REDIS_SERVER);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("SGW_TEST_LOG") != NULL ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    if (getenv("SGW_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("SGW_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_found_not_found_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_hit_skips_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_only_the_gateways_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_record_is_malformed_not_an_outage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_negative_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidation_by_notification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reread_and_change_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notified_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidation_glob_prefix_and_database, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_serves_cache_and_reconnects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dropped_connection_answers_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_hung_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_silent_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_answers_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_reply_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_timeout_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_reply_fills_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_still_arriving_is_not_a_hang, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_over_64k_is_dropped_unread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_server_at_all, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
