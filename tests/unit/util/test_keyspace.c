/* Unit tests of util/keyspace.c: patterns, replies matched to watches, confirmations, and a
 * subscription to a real redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
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

#include "tests/unit/support.h"
#include "util/keyspace.h"
#include "util/log.h"

enum { TEST_NOTIFIED_MAX = 16 };

/* What the callbacks saw. */
typedef struct seen {
    int ups;
    int downs;
    int count; /* notifications */
    size_t watches[TEST_NOTIFIED_MAX];
    char rests[TEST_NOTIFIED_MAX][64];
} seen_t;

static void seen_notify(keyspace_t *keyspace, size_t watch, const char *rest, size_t rest_length) {
    seen_t *seen = keyspace->owner;
    assert_true(seen->count < TEST_NOTIFIED_MAX);
    assert_true(rest_length < sizeof(seen->rests[0]));
    seen->watches[seen->count] = watch;
    memcpy(seen->rests[seen->count], rest, rest_length);
    seen->rests[seen->count][rest_length] = '\0';
    seen->count++;
}

static void seen_up(keyspace_t *keyspace) { ((seen_t *)keyspace->owner)->ups++; }

static void seen_down(keyspace_t *keyspace) { ((seen_t *)keyspace->owner)->downs++; }

/* A subscription to watches in database on port, not started. */
static void subscription_init(keyspace_t *keyspace, struct event_base *base, int database, int port,
                              const keyspace_watch_t *watches, size_t count, seen_t *seen) {
    keyspace_config_t config = {
        .link =
            {
                .host = "127.0.0.1",
                .port = port,
                .database = database,
                .connect_timeout_ms = 1000,
                .log_prefix = "test: ",
                .purpose = "keyspace notifications",
                .outage_effect = "none",
            },
        .watches = watches,
        .watch_count = count,
        .notify = seen_notify,
        .up = seen_up,
        .down = seen_down,
        .owner = seen,
    };
    assert_int_equal(keyspace_init(keyspace, base, &config), 0);
}

/* ---- replies built by hand ---- */

static const redisReply *pmessage(test_reply_t *fake, const char *channel) {
    const char *texts[] = {"pmessage", "__keyspace@0__:*", channel, "hset"};
    return test_reply_array(fake, 4, texts);
}

static const redisReply *psubscribe(test_reply_t *fake, const char *pattern) {
    const char *texts[] = {"psubscribe", pattern, NULL};
    return test_reply_array(fake, 3, texts);
}

static void test_pattern_escapes_glob_characters(void **state) {
    (void)state;
    struct {
        int database;
        const char *key;
        bool prefix;
        const char *pattern;
    } cases[] = {
        {0, "sandbox:catalog:", true, "__keyspace@0__:sandbox:catalog:*"},
        {0, "sandbox:node:n1", false, "__keyspace@0__:sandbox:node:n1"},
        {3, "s*[x]?:", true, "__keyspace@3__:s\\*\\[x\\]\\?:*"},
        {15, "a\\b", false, "__keyspace@15__:a\\\\b"},
        {0, "", true, "__keyspace@0__:*"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *pattern = keyspace_pattern(cases[i].database, cases[i].key, cases[i].prefix);
        assert_non_null(pattern);
        assert_string_equal(pattern, cases[i].pattern);
        free(pattern);
    }
}

static void test_notification_names_watch_and_rest(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    seen_t seen = {0};
    keyspace_t keyspace;
    /* The node set's key also starts with the records' prefix: the exact key wins. */
    keyspace_watch_t watches[] = {{"sandbox:", true}, {"sandbox:node:n1", false}};
    subscription_init(&keyspace, base, 0, 1, watches, 2, &seen);

    test_reply_t fake;
    size_t watch = 9;
    const char *rest = NULL;
    size_t rest_length = 9;
    assert_int_equal(keyspace_classify(&keyspace, pmessage(&fake, "__keyspace@0__:sandbox:abc"),
                                       &watch, &rest, &rest_length),
                     KEYSPACE_REPLY_NOTIFICATION);
    assert_int_equal(watch, 0);
    assert_int_equal(rest_length, 3);
    assert_memory_equal(rest, "abc", 3);

    assert_int_equal(keyspace_classify(&keyspace, pmessage(&fake, "__keyspace@0__:sandbox:node:n1"),
                                       &watch, &rest, &rest_length),
                     KEYSPACE_REPLY_NOTIFICATION);
    assert_int_equal(watch, 1);
    assert_int_equal(rest_length, 0);

    /* Under the prefix but not the exact key: a record named "node:n12". */
    assert_int_equal(keyspace_classify(&keyspace,
                                       pmessage(&fake, "__keyspace@0__:sandbox:node:n12"), &watch,
                                       &rest, &rest_length),
                     KEYSPACE_REPLY_NOTIFICATION);
    assert_int_equal(watch, 0);
    assert_int_equal(rest_length, 8);
    assert_memory_equal(rest, "node:n12", 8);

    const char *others[] = {
        "__keyspace@0__:sandbox:", /* the prefix alone: no ID after it */
        "__keyspace@0__:other:abc",
        "__keyspace@1__:sandbox:abc",
        "__keyspace@0__:sandbo",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert_int_equal(
            keyspace_classify(&keyspace, pmessage(&fake, others[i]), &watch, &rest, &rest_length),
            KEYSPACE_REPLY_OTHER);

    /* Malformed or unrelated replies. */
    const char *short_message[] = {"pmessage", "p", "__keyspace@0__:sandbox:abc"};
    assert_int_equal(keyspace_classify(&keyspace, test_reply_array(&fake, 3, short_message), &watch,
                                       &rest, &rest_length),
                     KEYSPACE_REPLY_OTHER);
    const char *integer_channel[] = {"pmessage", "p", NULL, "hset"};
    assert_int_equal(keyspace_classify(&keyspace, test_reply_array(&fake, 4, integer_channel), &watch,
                                       &rest, &rest_length),
                     KEYSPACE_REPLY_OTHER);
    const char *unsubscribe[] = {"punsubscribe", "p", NULL};
    assert_int_equal(keyspace_classify(&keyspace, test_reply_array(&fake, 3, unsubscribe), &watch, &rest,
                                       &rest_length),
                     KEYSPACE_REPLY_OTHER);
    redisReply status = {.type = REDIS_REPLY_STATUS, .str = "OK", .len = 2};
    assert_int_equal(keyspace_classify(&keyspace, &status, &watch, &rest, &rest_length),
                     KEYSPACE_REPLY_OTHER);

    keyspace_close(&keyspace);
    keyspace_close(&keyspace); /* harmless twice */
    event_base_free(base);
}

static void test_ready_once_every_pattern_is_confirmed(void **state) {
    (void)state;
    log_set_level(LOG_LEVEL_ERROR);
    struct event_base *base = event_base_new();
    seen_t seen = {0};
    keyspace_t keyspace;
    keyspace_watch_t watches[] = {{"records:", true}, {"node:a", false}, {"other", false}};
    subscription_init(&keyspace, base, 0, 1, watches, 3, &seen);
    assert_false(keyspace_ready(&keyspace));

    test_reply_t fake;
    keyspace_handle(&keyspace, psubscribe(&fake, "__keyspace@0__:records:*"));
    keyspace_handle(&keyspace, psubscribe(&fake, "__keyspace@0__:node:a"));
    assert_false(keyspace_ready(&keyspace));
    assert_int_equal(seen.ups, 0);
    keyspace_handle(&keyspace, psubscribe(&fake, "__keyspace@0__:other"));
    assert_true(keyspace_ready(&keyspace));
    assert_int_equal(seen.ups, 1);
    keyspace_handle(&keyspace, psubscribe(&fake, "__keyspace@0__:other")); /* counted once */
    assert_int_equal(seen.ups, 1);

    keyspace_handle(&keyspace, pmessage(&fake, "__keyspace@0__:records:abc"));
    keyspace_handle(&keyspace, pmessage(&fake, "__keyspace@0__:node:a"));
    keyspace_handle(&keyspace, pmessage(&fake, "__keyspace@0__:node:b"));
    assert_int_equal(seen.count, 2);
    assert_int_equal(seen.watches[0], 0);
    assert_string_equal(seen.rests[0], "abc");
    assert_int_equal(seen.watches[1], 1);
    assert_string_equal(seen.rests[1], "");
    assert_int_equal(seen.downs, 0);

    keyspace_close(&keyspace);
    event_base_free(base);
}

/* ---- against a real redis-server ---- */

/* Runs base until *value reaches target or timeout_ms passes; returns whether it did. */
static bool loop_until_at_least(struct event_base *base, const int *value, int target,
                                int timeout_ms) {
    uint64_t deadline = clock_ms() + (uint64_t)timeout_ms;
    while (*value < target) {
        if (clock_ms() >= deadline)
            return false;
        struct timeval delay = {.tv_sec = 0, .tv_usec = 2000};
        event_base_loopexit(base, &delay);
        event_base_dispatch(base);
    }
    return true;
}

static void test_real_server(void **state) {
    (void)state;
    if (access(TEST_REDIS_SERVER, X_OK) != 0) {
        printf("[  SKIPPED ] test_real_server: %s is not installed\n", TEST_REDIS_SERVER);
        return;
    }
    int port = test_free_port();
    redisContext *admin = NULL;
    pid_t pid = test_redis_start(port, "/tmp", NULL, &admin);
    struct event_base *base = event_base_new();
    seen_t seen = {0};
    keyspace_t keyspace;
    keyspace_watch_t watches[] = {{"s*[x]?:", true}, {"node:[a]", false}};
    subscription_init(&keyspace, base, 3, port, watches, 2, &seen);
    keyspace_start(&keyspace);
    assert_true(loop_until_at_least(base, &seen.ups, 1, 3000));
    assert_int_equal(seen.ups, 1);
    assert_true(keyspace_ready(&keyspace));

    test_redis_command(admin, "SELECT 3");
    /* Keys only an unescaped glob would match, and another database, notify nothing. */
    test_redis_command(admin, "HSET sXxY:abc addr 10.0.0.1");
    test_redis_command(admin, "HSET node:a addr 10.0.0.1");
    test_redis_command(admin, "SELECT 0");
    test_redis_command(admin, "HSET s*[x]?:abc addr 10.0.0.1");
    test_redis_command(admin, "SELECT 3");
    test_redis_command(admin, "HSET s*[x]?:abc addr 10.0.0.1");
    test_redis_command(admin, "HSET node:[a] addr 10.0.0.1");
    assert_true(loop_until_at_least(base, &seen.count, 2, 2000));
    assert_false(loop_until_at_least(base, &seen.count, 3, 100));
    assert_int_equal(seen.watches[0], 0);
    assert_string_equal(seen.rests[0], "abc");
    assert_int_equal(seen.watches[1], 1);
    assert_string_equal(seen.rests[1], "");

    /* The server goes away: the owner hears of it. */
    redisFree(admin);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_true(loop_until_at_least(base, &seen.downs, 1, 2000));
    assert_false(keyspace_ready(&keyspace));

    keyspace_close(&keyspace);
    event_base_free(base);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("SGW_TEST_LOG") != NULL ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_escapes_glob_characters),
        cmocka_unit_test(test_notification_names_watch_and_rest),
        cmocka_unit_test(test_ready_once_every_pattern_is_confirmed),
        cmocka_unit_test(test_real_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
