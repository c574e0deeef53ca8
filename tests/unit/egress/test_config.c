/* Unit tests of egress/config.c: egress.conf directives, defaults and FILE:LINE errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "egress/config.h"

/* Parses text as "egress.conf"; returns the result, with the message in error. */
static int parse(egress_config_t *config, const char *text, char *error, size_t error_size) {
    assert_int_equal(egress_config_defaults(config), 0);
    return egress_config_parse(config, "egress.conf", text, error, error_size);
}

static void assert_error(const char *text, const char *expected) {
    egress_config_t config;
    char error[512];
    int result = parse(&config, text, error, sizeof(error));
    egress_config_free(&config);
    if (result == 0)
        fail_msg("accepted:\n%s", text);
    assert_string_equal(error, expected);
}

static void test_defaults(void **state) {
    (void)state;
    egress_config_t config;
    char error[512];
    assert_int_equal(parse(&config, "node_id node-7\n", error, sizeof(error)), 0);
    assert_string_equal(config.node_id, "node-7");
    assert_string_equal(config.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(config.redis.host, "127.0.0.1");
    assert_int_equal(config.redis.port, 6379);
    assert_int_equal(config.redis.database, 0);
    assert_string_equal(config.redis_key_prefix, "sandbox:catalog:");
    assert_int_equal(config.resync_interval_ms, 10000);
    assert_int_equal(config.log_level, LOG_LEVEL_INFO);
    egress_config_free(&config);
}

static void test_every_directive(void **state) {
    (void)state;
    egress_config_t config;
    char error[512];
    const char *text = "# comment\r\n"
                       "node_id  n1   # trailing comment\r\n"
                       "\n"
                       "redis_url unix:///run/redis/redis.sock?db=3\n"
                       "redis_key_prefix cat:\n"
                       "policy_resync_interval 500ms\n"
                       "dns_server [2001:db8::53]:5353\n"
                       "admin_listen 127.0.0.1:9101\n"
                       "log_level debug";
    assert_int_equal(parse(&config, text, error, sizeof(error)), 0);
    assert_string_equal(config.node_id, "n1");
    assert_null(config.redis.host);
    assert_string_equal(config.redis.unix_path, "/run/redis/redis.sock");
    assert_int_equal(config.redis.database, 3);
    assert_string_equal(config.redis_key_prefix, "cat:");
    assert_int_equal(config.resync_interval_ms, 500);
    assert_string_equal(config.dns_server, "[2001:db8::53]:5353");
    assert_string_equal(config.admin_listen, "127.0.0.1:9101");
    assert_int_equal(config.log_level, LOG_LEVEL_DEBUG);
    egress_config_free(&config);
}

static void test_errors(void **state) {
    (void)state;
    assert_error("", "egress.conf:1: missing required directive \"node_id\"");
    assert_error("log_level info\n\n", "egress.conf:2: missing required directive \"node_id\"");
    assert_error("node_id a\nlisten 1.2.3.4:80\n", "egress.conf:2: unknown directive \"listen\"");
    assert_error("node_id a\nnode_id b\n",
                 "egress.conf:2: duplicate \"node_id\" (first at line 1)");
    assert_error("node_id\n", "egress.conf:1: missing argument for \"node_id\"");
    assert_error("node_id a b\n", "egress.conf:1: too many arguments for \"node_id\"");
    assert_error("node_id a\npolicy_resync_interval 10x\n",
                 "egress.conf:2: invalid duration \"10x\" for \"policy_resync_interval\"");
    assert_error("node_id a\npolicy_resync_interval 10ms\n",
                 "egress.conf:2: \"10ms\" is out of range for \"policy_resync_interval\" (100ms to "
                 "24h)");
    assert_error("node_id a\npolicy_resync_interval 25h\n",
                 "egress.conf:2: \"25h\" is out of range for \"policy_resync_interval\" (100ms to "
                 "24h)");
    assert_error("node_id a\nredis_url http://x\n",
                 "egress.conf:2: invalid URL \"http://x\" for \"redis_url\": expected "
                 "redis://HOST:PORT/DB or unix:///PATH");
    assert_error("node_id a\nlog_level loud\n",
                 "egress.conf:2: invalid level \"loud\" for \"log_level\" (error, warn, info or "
                 "debug)");
    assert_error("node_id a\ndns_server resolver.local\n",
                 "egress.conf:2: invalid dns_server \"resolver.local\": write an IP address, "
                 "ADDR:PORT or [IPv6]:PORT");
    assert_error("node_id a\nadmin_listen 127.0.0.1\n",
                 "egress.conf:2: invalid admin_listen \"127.0.0.1\": write ADDR:PORT or "
                 "[IPv6]:PORT");
    assert_error("node_id a\nadmin_listen ::1\n",
                 "egress.conf:2: invalid admin_listen \"::1\": write ADDR:PORT or [IPv6]:PORT");
    assert_error("node_id a\nadmin_listen [::1]\n",
                 "egress.conf:2: invalid admin_listen \"[::1]\": write ADDR:PORT or [IPv6]:PORT");
    assert_error("node_id a\x01\n", "egress.conf:1: invalid control character 0x01");
    assert_error("node_id caf\xc3\xa9\n",
                 "egress.conf:1: invalid node_id \"caf\xc3\xa9\": printable ASCII only");
}

static void test_load(void **state) {
    (void)state;
    egress_config_t config;
    char error[512];
    assert_int_equal(egress_config_defaults(&config), 0);
    assert_int_equal(egress_config_load(&config, "/nonexistent/egress.conf", error, sizeof(error)),
                     -1);
    assert_string_equal(error, "/nonexistent/egress.conf: cannot open: No such file or directory");
    egress_config_free(&config);

    /* The sample at the repository root is valid as shipped. */
    assert_int_equal(egress_config_defaults(&config), 0);
    if (egress_config_load(&config, SGW_SOURCE_DIR "/egress.conf", error, sizeof(error)) != 0)
        fail_msg("%s", error);
    assert_string_equal(config.node_id, "node-1");
    egress_config_free(&config);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_directive),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
