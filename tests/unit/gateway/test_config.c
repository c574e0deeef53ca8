/* Unit tests of gateway/config.c: every directive and error, and the sample gateway.conf. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/config.h"

#ifndef SGW_SOURCE_DIR
#define SGW_SOURCE_DIR "."
#endif

/* The smallest valid file: two lines, so a directive appended to it is on line 3. */
#define MINIMAL "domain example.com\nlisten 127.0.0.1:8080\n"

/* Files the TLS directives point at, in a private temporary directory. */
static char directory[256];
static char certificate_path[320];
static char key_path[320];
static char second_certificate_path[320];
static char second_key_path[320];
static char ticket_path[320];       /* two 80-byte keys */
static char short_ticket_path[320]; /* 100 bytes */
static char empty_path[320];
static char scratch_path[320]; /* rewritten by tests that load a file */

static void write_file(const char *path, const void *data, size_t length) {
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, length, file), length);
    assert_int_equal(fclose(file), 0);
}

static int setup_files(void **state) {
    snprintf(directory, sizeof(directory), "/tmp/sgw-test-config-XXXXXX");
    if (mkdtemp(directory) == NULL)
        return -1;
    snprintf(certificate_path, sizeof(certificate_path), "%s/cert.pem", directory);
    snprintf(key_path, sizeof(key_path), "%s/cert.key", directory);
    snprintf(second_certificate_path, sizeof(second_certificate_path), "%s/second.pem", directory);
    snprintf(second_key_path, sizeof(second_key_path), "%s/second.key", directory);
    snprintf(ticket_path, sizeof(ticket_path), "%s/ticket.key", directory);
    snprintf(short_ticket_path, sizeof(short_ticket_path), "%s/short.key", directory);
    snprintf(empty_path, sizeof(empty_path), "%s/empty", directory);
    snprintf(scratch_path, sizeof(scratch_path), "%s/gateway.conf", directory);
    const char pem[] = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    char keys[160] = {0};
    write_file(certificate_path, pem, sizeof(pem) - 1);
    write_file(key_path, pem, sizeof(pem) - 1);
    write_file(second_certificate_path, pem, sizeof(pem) - 1);
    write_file(second_key_path, pem, sizeof(pem) - 1);
    write_file(ticket_path, keys, 160);
    write_file(short_ticket_path, keys, 100);
    write_file(empty_path, "", 0);
    return 0;
}

static int teardown_files(void **state) {
    const char *paths[] = {certificate_path, key_path,    second_certificate_path,
                           second_key_path,  ticket_path, short_ticket_path,
                           empty_path,       scratch_path};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        unlink(paths[i]);
    return rmdir(directory);
}

/* Returns text formatted into one of a few rotating static buffers. */
__attribute__((format(printf, 1, 2))) static const char *format(const char *pattern, ...) {
    static char buffers[4][8192];
    static int next;
    char *buffer = buffers[next++ % 4];
    va_list arguments;
    va_start(arguments, pattern);
    vsnprintf(buffer, sizeof(buffers[0]), pattern, arguments);
    va_end(arguments);
    return buffer;
}

/* Parses text as "gateway.conf" into config (fresh defaults); fails the test on an error. */
static void parse_ok(gw_config_t *config, const char *text) {
    char error[1024];
    gw_config_defaults(config);
    if (gw_config_parse(config, "gateway.conf", text, error, sizeof(error)) != 0) {
        gw_config_free(config);
        fail_msg("unexpected error: %s", error);
    }
}

/* Parses text as "gateway.conf" and checks it fails with exactly expected. */
static void assert_parse_error(const char *text, const char *expected) {
    gw_config_t config;
    char error[1024];
    gw_config_defaults(&config);
    int result = gw_config_parse(&config, "gateway.conf", text, error, sizeof(error));
    gw_config_free(&config);
    assert_int_equal(result, -1);
    assert_string_equal(error, expected);
}

static int address_port(const struct sockaddr_storage *address) {
    if (address->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)address)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
}

static void assert_ipv4(const gw_listen_t *listen, const char *host, int port) {
    const struct sockaddr_in *ipv4 = (const struct sockaddr_in *)&listen->address;
    char text[INET_ADDRSTRLEN];
    assert_int_equal(listen->address.ss_family, AF_INET);
    assert_int_equal(listen->address_length, sizeof(struct sockaddr_in));
    assert_non_null(inet_ntop(AF_INET, &ipv4->sin_addr, text, sizeof(text)));
    assert_string_equal(text, host);
    assert_int_equal(address_port(&listen->address), port);
}

static void assert_ipv6(const gw_listen_t *listen, const char *host, int port) {
    const struct sockaddr_in6 *ipv6 = (const struct sockaddr_in6 *)&listen->address;
    char text[INET6_ADDRSTRLEN];
    assert_int_equal(listen->address.ss_family, AF_INET6);
    assert_int_equal(listen->address_length, sizeof(struct sockaddr_in6));
    assert_non_null(inet_ntop(AF_INET6, &ipv6->sin6_addr, text, sizeof(text)));
    assert_string_equal(text, host);
    assert_int_equal(address_port(&listen->address), port);
}

/* Checks every value that has a default equals DESIGN.md's table. */
static void assert_design_defaults(const gw_config_t *config) {
    assert_int_equal(config->workers, 0);
    assert_string_equal(config->redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(config->redis.host, "127.0.0.1");
    assert_int_equal(config->redis.port, 6379);
    assert_null(config->redis.unix_path);
    assert_int_equal(config->redis.database, 0);
    assert_string_equal(config->redis_key_prefix, "sandbox:catalog:");
    assert_int_equal(config->redis_timeout_ms, 1000);
    assert_int_equal(config->route_cache_ttl_ms, 2000);
    assert_int_equal(config->route_cache_ttl_notified_ms, 60000);
    assert_int_equal(config->route_negative_ttl_ms, 500);
    assert_int_equal(config->route_stale_ttl_ms, 30000);
    assert_int_equal(config->upstream_connect_timeout_ms, 5000);
    assert_int_equal(config->upstream_connect_retry_ms, 1000);
    assert_int_equal(config->upstream_idle_timeout_ms, 4000);
    assert_int_equal(config->upstream_response_timeout_ms, 60000);
    assert_int_equal(config->client_header_timeout_ms, 10000);
    assert_int_equal(config->client_idle_timeout_ms, 620000);
    assert_int_equal(config->tunnel_idle_timeout_ms, 24 * 3600 * 1000);
    assert_int_equal(config->drain_delay_ms, 5000);
    assert_int_equal(config->drain_timeout_ms, 30000);
    assert_int_equal(config->max_header_size, 32 * 1024);
    assert_int_equal(config->max_connections, 100000);
    assert_int_equal(config->log_level, LOG_LEVEL_INFO);
    assert_null(config->resume_redis_url);
    assert_string_equal(config->resume_stream, "sandbox:resume");
    assert_int_equal(config->resume_timeout_ms, 60000);
    assert_int_equal(config->activity_interval_ms, 1000);
}

/* Defaults */

static void test_defaults(void **state) {
    gw_config_t config;
    gw_config_defaults(&config);
    assert_design_defaults(&config);
    assert_null(config.access_log);
    assert_int_equal(config.domain_count, 0);
    assert_int_equal(config.listen_count, 0);
    assert_int_equal(config.tls_pair_count, 0);
    assert_null(config.tls_ticket_key_file);
    assert_false(config.has_admin_listen);
    gw_config_free(&config);
    /* Freeing leaves it zeroed, and freeing again is harmless. */
    assert_null(config.redis_url);
    assert_null(config.redis_key_prefix);
    gw_config_free(&config);
}

static void test_defaults_written_out(void **state) {
    /* Every default of DESIGN.md, written as a directive, gives the same values. */
    gw_config_t config;
    parse_ok(&config, MINIMAL "workers auto\n"
                              "redis_url redis://127.0.0.1:6379/0\n"
                              "redis_key_prefix sandbox:catalog:\n"
                              "redis_timeout 1s\n"
                              "route_cache_ttl 2s\n"
                              "route_cache_ttl_notified 60s\n"
                              "route_negative_ttl 500ms\n"
                              "route_stale_ttl 30s\n"
                              "upstream_connect_timeout 5s\n"
                              "upstream_connect_retry 1s\n"
                              "upstream_idle_timeout 4s\n"
                              "upstream_response_timeout 60s\n"
                              "client_header_timeout 10s\n"
                              "client_idle_timeout 620s\n"
                              "tunnel_idle_timeout 24h\n"
                              "max_header_size 32k\n"
                              "max_connections 100000\n"
                              "access_log off\n"
                              "log_level info\n"
                              "drain_delay 5s\n"
                              "drain_timeout 30s\n"
                              "resume_stream sandbox:resume\n"
                              "resume_timeout 60s\n"
                              "activity_interval 1s\n");
    assert_design_defaults(&config);
    assert_null(config.access_log);
    gw_config_free(&config);
}

/* Every directive */

static void test_every_directive(void **state) {
    gw_config_t config;
    parse_ok(&config, format("domain E2B.app\n"
                             "domain sandbox.localhost\n"
                             "listen *:80\n"
                             "listen [::]:443 tls\n"
                             "listen 0.0.0.0:8443 proxy_protocol tls\n"
                             "tls_certificate %s\n"
                             "tls_certificate_key %s\n"
                             "tls_certificate %s\n"
                             "tls_certificate_key %s\n"
                             "tls_ticket_key_file %s\n"
                             "admin_listen [::1]:9090\n"
                             "workers 8\n"
                             "redis_url redis://[::1]:6380/3\n"
                             "redis_key_prefix sbx:\n"
                             "redis_timeout 250ms\n"
                             "route_cache_ttl 3s\n"
                             "route_cache_ttl_notified 5m\n"
                             "route_negative_ttl 0\n"
                             "route_stale_ttl 2m\n"
                             "upstream_connect_timeout 7\n"
                             "upstream_connect_retry 1500ms\n"
                             "upstream_idle_timeout 3s\n"
                             "upstream_response_timeout 2m\n"
                             "client_header_timeout 20s\n"
                             "client_idle_timeout 11m\n"
                             "tunnel_idle_timeout 168h\n"
                             "max_header_size 64k\n"
                             "max_connections 5000\n"
                             "access_log /var/log/access.log\n"
                             "log_level debug\n"
                             "drain_delay 0\n"
                             "drain_timeout 1m\n"
                             "resume_redis_url unix:///run/redis.sock?db=2\n"
                             "resume_stream wake\n"
                             "resume_timeout 90s\n"
                             "activity_interval off\n",
                             certificate_path, key_path, second_certificate_path, second_key_path,
                             ticket_path));
    assert_string_equal(config.path, "gateway.conf");
    assert_int_equal(config.domain_count, 2);
    assert_string_equal(config.domains[0], "e2b.app");
    assert_string_equal(config.domains[1], "sandbox.localhost");

    assert_int_equal(config.listen_count, 3);
    assert_ipv4(&config.listens[0], "0.0.0.0", 80);
    assert_string_equal(config.listens[0].text, "*:80");
    assert_false(config.listens[0].tls);
    assert_false(config.listens[0].proxy_protocol);
    assert_int_equal(config.listens[0].line, 3);
    assert_ipv6(&config.listens[1], "::", 443);
    assert_string_equal(config.listens[1].text, "[::]:443");
    assert_true(config.listens[1].tls);
    assert_false(config.listens[1].proxy_protocol);
    assert_ipv4(&config.listens[2], "0.0.0.0", 8443);
    assert_true(config.listens[2].tls);
    assert_true(config.listens[2].proxy_protocol);
    assert_int_equal(config.listens[2].line, 5);

    assert_int_equal(config.tls_pair_count, 2);
    assert_string_equal(config.tls_pairs[0].certificate, certificate_path);
    assert_string_equal(config.tls_pairs[0].certificate_key, key_path);
    assert_string_equal(config.tls_pairs[1].certificate, second_certificate_path);
    assert_string_equal(config.tls_pairs[1].certificate_key, second_key_path);
    assert_string_equal(config.tls_ticket_key_file, ticket_path);

    assert_true(config.has_admin_listen);
    assert_ipv6(&config.admin_listen, "::1", 9090);
    assert_string_equal(config.admin_listen.text, "[::1]:9090");
    assert_int_equal(config.admin_listen.line, 11);

    assert_int_equal(config.workers, 8);
    assert_string_equal(config.redis_url, "redis://[::1]:6380/3");
    assert_string_equal(config.redis.host, "::1");
    assert_int_equal(config.redis.port, 6380);
    assert_null(config.redis.unix_path);
    assert_int_equal(config.redis.database, 3);
    assert_string_equal(config.redis_key_prefix, "sbx:");

    assert_int_equal(config.redis_timeout_ms, 250);
    assert_int_equal(config.route_cache_ttl_ms, 3000);
    assert_int_equal(config.route_cache_ttl_notified_ms, 300000);
    assert_int_equal(config.route_negative_ttl_ms, 0);
    assert_int_equal(config.route_stale_ttl_ms, 120000);
    assert_int_equal(config.upstream_connect_timeout_ms, 7000);
    assert_int_equal(config.upstream_connect_retry_ms, 1500);
    assert_int_equal(config.upstream_idle_timeout_ms, 3000);
    assert_int_equal(config.upstream_response_timeout_ms, 120000);
    assert_int_equal(config.client_header_timeout_ms, 20000);
    assert_int_equal(config.client_idle_timeout_ms, 660000);
    assert_int_equal(config.tunnel_idle_timeout_ms, 168ULL * 3600 * 1000);
    assert_int_equal(config.max_header_size, 65536);
    assert_int_equal(config.max_connections, 5000);
    assert_string_equal(config.access_log, "/var/log/access.log");
    assert_int_equal(config.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(config.drain_delay_ms, 0);
    assert_int_equal(config.drain_timeout_ms, 60000);
    assert_string_equal(gw_config_resume_redis(&config)->unix_path, "/run/redis.sock");
    assert_int_equal(gw_config_resume_redis(&config)->database, 2);
    assert_string_equal(config.resume_stream, "wake");
    assert_int_equal(config.resume_timeout_ms, 90000);
    assert_int_equal(config.activity_interval_ms, 0);
    gw_config_free(&config);
}

static void test_small_values(void **state) {
    gw_config_t config;
    parse_ok(&config, MINIMAL "workers 1\n"
                              "max_connections 1\n"
                              "max_header_size 1024\n"
                              "access_log stderr\n"
                              "log_level error\n"
                              "redis_url unix:///run/redis.sock?db=2\n"
                              "upstream_connect_retry 0\n");
    assert_int_equal(config.workers, 1);
    assert_int_equal(config.max_connections, 1);
    assert_int_equal(config.max_header_size, 1024);
    assert_string_equal(config.access_log, "stderr");
    assert_int_equal(config.log_level, LOG_LEVEL_ERROR);
    assert_null(config.redis.host);
    assert_string_equal(config.redis.unix_path, "/run/redis.sock");
    assert_int_equal(config.redis.database, 2);
    assert_int_equal(config.upstream_connect_retry_ms, 0);
    gw_config_free(&config);

    parse_ok(&config, MINIMAL "workers 256\n"
                              "max_connections 10000000\n"
                              "max_header_size 1m\n"
                              "log_level warn\n"
                              "redis_timeout 1ms\n"
                              "client_idle_timeout 10080m\n");
    assert_int_equal(config.workers, 256);
    assert_int_equal(config.max_connections, 10000000);
    assert_int_equal(config.max_header_size, 1048576);
    assert_int_equal(config.log_level, LOG_LEVEL_WARN);
    assert_int_equal(config.redis_timeout_ms, 1);
    assert_int_equal(config.client_idle_timeout_ms, 7ULL * 24 * 3600 * 1000);
    gw_config_free(&config);
}

/* Value syntax */

static void test_parse_duration(void **state) {
    uint64_t milliseconds = 0;
    assert_int_equal(conf_parse_duration("500ms", &milliseconds), 0);
    assert_int_equal(milliseconds, 500);
    assert_int_equal(conf_parse_duration("2s", &milliseconds), 0);
    assert_int_equal(milliseconds, 2000);
    assert_int_equal(conf_parse_duration("5m", &milliseconds), 0);
    assert_int_equal(milliseconds, 300000);
    assert_int_equal(conf_parse_duration("24h", &milliseconds), 0);
    assert_int_equal(milliseconds, 86400000);
    assert_int_equal(conf_parse_duration("7", &milliseconds), 0);
    assert_int_equal(milliseconds, 7000);
    assert_int_equal(conf_parse_duration("0", &milliseconds), 0);
    assert_int_equal(milliseconds, 0);
    assert_int_equal(conf_parse_duration("0010s", &milliseconds), 0);
    assert_int_equal(milliseconds, 10000);

    const char *bad[] = {"",
                         "s",
                         "5x",
                         "1.5s",
                         "-1s",
                         "+1s",
                         "5 s",
                         "5S",
                         "5sec",
                         "1d",
                         "ms5",
                         "5mss",
                         "18446744073709551615h",
                         "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        milliseconds = 42;
        if (conf_parse_duration(bad[i], &milliseconds) != -1)
            fail_msg("duration \"%s\" was accepted", bad[i]);
        assert_int_equal(milliseconds, 42);
    }
}

static void test_parse_size(void **state) {
    size_t bytes = 0;
    assert_int_equal(conf_parse_size("32k", &bytes), 0);
    assert_int_equal(bytes, 32768);
    assert_int_equal(conf_parse_size("32K", &bytes), 0);
    assert_int_equal(bytes, 32768);
    assert_int_equal(conf_parse_size("1m", &bytes), 0);
    assert_int_equal(bytes, 1048576);
    assert_int_equal(conf_parse_size("4096", &bytes), 0);
    assert_int_equal(bytes, 4096);

    const char *bad[] = {"", "k", "32kb", "1g", "1.5k", "-1", "18446744073709551615m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (conf_parse_size(bad[i], &bytes) != -1)
            fail_msg("size \"%s\" was accepted", bad[i]);
    }
}

static void test_parse_address(void **state) {
    gw_listen_t listen;
    memset(&listen, 0, sizeof(listen));
    assert_int_equal(conf_parse_address("[::]:443", &listen.address, &listen.address_length), 0);
    assert_ipv6(&listen, "::", 443);
    assert_int_equal(conf_parse_address("*:8080", &listen.address, &listen.address_length), 0);
    assert_ipv4(&listen, "0.0.0.0", 8080);
    assert_int_equal(conf_parse_address("0.0.0.0:8080", &listen.address, &listen.address_length),
                     0);
    assert_ipv4(&listen, "0.0.0.0", 8080);
    assert_int_equal(conf_parse_address("10.1.2.3:1", &listen.address, &listen.address_length), 0);
    assert_ipv4(&listen, "10.1.2.3", 1);
    assert_int_equal(conf_parse_address("[fd00::1]:65535", &listen.address, &listen.address_length),
                     0);
    assert_ipv6(&listen, "fd00::1", 65535);

    const char *bad[] = {"",
                         "8080",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:0",
                         "127.0.0.1:65536",
                         "127.0.0.1:80a",
                         "127.0.0.1:-80",
                         ":8080",
                         "localhost:8080",
                         "256.0.0.1:80",
                         "::1:8080",
                         "[::1]8080",
                         "[::1:8080",
                         "[]:80",
                         "[127.0.0.1]:80",
                         "[*]:80",
                         "[::1]:80:80",
                         "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (conf_parse_address(bad[i], &listen.address, &listen.address_length) != -1)
            fail_msg("address \"%s\" was accepted", bad[i]);
    }
}

static void test_parse_redis_url(void **state) {
    struct {
        const char *text;
        const char *host;
        const char *unix_path;
        int port;
        int database;
    } good[] = {
        {"redis://127.0.0.1:6379/0", "127.0.0.1", NULL, 6379, 0},
        {"redis://redis.internal", "redis.internal", NULL, 6379, 0},
        {"redis://redis-1.internal:7000", "redis-1.internal", NULL, 7000, 0},
        {"redis://my_redis/5", "my_redis", NULL, 6379, 5},
        {"redis://10.0.0.1/", "10.0.0.1", NULL, 6379, 0},
        {"redis://[::1]", "::1", NULL, 6379, 0},
        {"redis://[fd00::2]:6380/15", "fd00::2", NULL, 6380, 15},
        {"unix:///run/redis/redis.sock", NULL, "/run/redis/redis.sock", 0, 0},
        {"unix:///tmp/r.sock?db=9", NULL, "/tmp/r.sock", 0, 9},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        conf_redis_target_t target;
        const char *reason = NULL;
        if (conf_parse_redis_url(good[i].text, &target, &reason) != 0)
            fail_msg("\"%s\" refused: %s", good[i].text, reason);
        if (good[i].host != NULL)
            assert_string_equal(target.host, good[i].host);
        else
            assert_null(target.host);
        if (good[i].unix_path != NULL)
            assert_string_equal(target.unix_path, good[i].unix_path);
        else
            assert_null(target.unix_path);
        assert_int_equal(target.port, good[i].port);
        assert_int_equal(target.database, good[i].database);
        conf_redis_target_free(&target);
        assert_null(target.host);
        assert_null(target.unix_path);
    }

    struct {
        const char *text;
        const char *reason;
    } bad[] = {
        {"http://127.0.0.1", "expected redis://HOST:PORT/DB or unix:///PATH"},
        {"rediss://127.0.0.1", "expected redis://HOST:PORT/DB or unix:///PATH"},
        {"127.0.0.1:6379", "expected redis://HOST:PORT/DB or unix:///PATH"},
        {"redis://", "missing host"},
        {"redis://:6379", "missing host"},
        {"redis://:secret@host", "a user or password is not supported"},
        {"redis://host:0", "the port must be 1 to 65535"},
        {"redis://host:65536/0", "the port must be 1 to 65535"},
        {"redis://host:/0", "the port must be 1 to 65535"},
        {"redis://host:port", "the port must be 1 to 65535"},
        {"redis://host/x", "invalid database number"},
        {"redis://host/-1", "invalid database number"},
        {"redis://host/99999999999", "invalid database number"},
        {"redis://host?db=1", "invalid host"},
        {"redis://ho$t", "invalid host"},
        {"redis://300.1.1.1", "invalid IPv4 address"},
        {"redis://[::1", "missing \"]\" after the IPv6 address"},
        {"redis://[]", "invalid IPv6 address"},
        {"redis://[nope]:1", "invalid IPv6 address"},
        {"redis://[::1]x", "expected \":PORT\" or \"/DB\" after the host"},
        {"unix://", "the path must be absolute, as in unix:///run/redis/redis.sock"},
        {"unix://run/redis.sock", "the path must be absolute, as in unix:///run/redis/redis.sock"},
        {"unix:///", "missing socket path"},
        {"unix:///r.sock?database=1", "the only parameter is db=N"},
        {"unix:///r.sock?db=", "invalid database number"},
        {"unix:///r.sock?db=1&x=2", "invalid database number"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        conf_redis_target_t target;
        const char *reason = NULL;
        if (conf_parse_redis_url(bad[i].text, &target, &reason) != -1)
            fail_msg("\"%s\" was accepted", bad[i].text);
        assert_non_null(reason);
        if (strcmp(reason, bad[i].reason) != 0)
            fail_msg("\"%s\": reason \"%s\", expected \"%s\"", bad[i].text, reason, bad[i].reason);
        assert_null(target.host);
        assert_null(target.unix_path);
    }

    char long_path[200];
    snprintf(long_path, sizeof(long_path), "unix:///%0150d", 0);
    conf_redis_target_t target;
    const char *reason = NULL;
    assert_int_equal(conf_parse_redis_url(long_path, &target, &reason), -1);
    assert_string_equal(reason, "socket path too long for a unix socket");
}

/* File syntax */

static void test_comments_and_line_endings(void **state) {
    gw_config_t config;
    parse_ok(&config, "# a comment\r\n"
                      "\r\n"
                      "   \t\n"
                      "  # an indented comment\n"
                      "domain\texample.com   # trailing comment\r\n"
                      "\tlisten   127.0.0.1:8080\t  proxy_protocol # tls\n"
                      "listen 127.0.0.1:8081 #tls\n"
                      "redis_key_prefix a#b:\r\n"
                      "workers 2 # the last line has no newline");
    assert_int_equal(config.domain_count, 1);
    assert_string_equal(config.domains[0], "example.com");
    assert_int_equal(config.listen_count, 2);
    assert_true(config.listens[0].proxy_protocol);
    assert_false(config.listens[0].tls);
    assert_int_equal(config.listens[0].line, 6);
    assert_false(config.listens[1].tls);
    /* "#" inside a word is part of it. */
    assert_string_equal(config.redis_key_prefix, "a#b:");
    assert_int_equal(config.workers, 2);
    gw_config_free(&config);

    assert_parse_error(MINIMAL "workers 2#\n",
                       "gateway.conf:3: invalid number \"2#\" for \"workers\"");
    assert_parse_error(
        MINIMAL "listen *:81 tls#x\n",
        "gateway.conf:3: unknown option \"tls#x\" for \"listen\" (tls or proxy_protocol)");
}

static void test_line_length(void **state) {
    /* 4096 bytes of line (not counting CRLF) pass; 4097 fail. */
    static char text[8192];
    const char *start = MINIMAL "redis_key_prefix ";
    size_t prefix = strlen(MINIMAL);
    size_t line_length = 4096;
    strcpy(text, start);
    size_t length = strlen(text);
    memset(text + length, 'x', prefix + line_length - length);
    strcpy(text + prefix + line_length, "\r\n");
    gw_config_t config;
    parse_ok(&config, text);
    assert_int_equal(strlen(config.redis_key_prefix), line_length - strlen("redis_key_prefix "));
    gw_config_free(&config);

    memset(text + length, 'x', prefix + line_length + 1 - length);
    strcpy(text + prefix + line_length + 1, "\n");
    assert_parse_error(text, "gateway.conf:3: line too long (more than 4096 bytes)");

    /* A long comment line is still too long: the limit is on lines, not on directives. */
    memset(text, '#', 5000);
    strcpy(text + 5000, "\n");
    assert_parse_error(text, "gateway.conf:1: line too long (more than 4096 bytes)");
}

static void test_control_characters(void **state) {
    assert_parse_error(MINIMAL "redis_key_prefix a\x01"
                               "b\n",
                       "gateway.conf:3: invalid control character 0x01");
    assert_parse_error(MINIMAL "redis_key_prefix a\rb\n",
                       "gateway.conf:3: invalid control character 0x0d");
    assert_parse_error(MINIMAL "redis_key_prefix ab\x7f\n",
                       "gateway.conf:3: invalid control character 0x7f");
    /* In a comment anything goes. */
    gw_config_t config;
    parse_ok(&config, MINIMAL "# \x01\x7f\n");
    gw_config_free(&config);
}

/* Errors */

static void test_directive_errors(void **state) {
    assert_parse_error(MINIMAL "foo 1\n", "gateway.conf:3: unknown directive \"foo\"");
    assert_parse_error("Domain example.com\n", "gateway.conf:1: unknown directive \"Domain\"");
    assert_parse_error(MINIMAL "\n# x\nredis_timeout\n",
                       "gateway.conf:5: missing argument for \"redis_timeout\"");
    assert_parse_error(MINIMAL "redis_timeout 1s 2s\n",
                       "gateway.conf:3: too many arguments for \"redis_timeout\"");
    assert_parse_error("domain\n", "gateway.conf:1: missing argument for \"domain\"");
    assert_parse_error("domain a.b c.d\n", "gateway.conf:1: too many arguments for \"domain\"");
    assert_parse_error(MINIMAL "listen\n", "gateway.conf:3: missing argument for \"listen\"");
    assert_parse_error(MINIMAL "listen *:81 tls proxy_protocol tls\n",
                       "gateway.conf:3: too many arguments for \"listen\"");
    assert_parse_error(MINIMAL "workers 1 2 3 4 5 6 7 8 9 10 11 12\n",
                       "gateway.conf:3: too many arguments for \"workers\"");
    assert_parse_error(MINIMAL "workers 2\nlog_level info\nworkers 3\n",
                       "gateway.conf:5: duplicate \"workers\" (first at line 3)");
    assert_parse_error(MINIMAL "access_log off\naccess_log stderr\n",
                       "gateway.conf:4: duplicate \"access_log\" (first at line 3)");
    assert_parse_error(MINIMAL "redis_url redis://a\nredis_url redis://b\n",
                       "gateway.conf:4: duplicate \"redis_url\" (first at line 3)");
    assert_parse_error(MINIMAL "admin_listen 127.0.0.1:9090\nadmin_listen 127.0.0.1:9091\n",
                       "gateway.conf:4: duplicate \"admin_listen\" (first at line 3)");
}

static void test_value_errors(void **state) {
    struct {
        const char *line;
        const char *message;
    } cases[] = {
        {"redis_timeout 5x", "invalid duration \"5x\" for \"redis_timeout\""},
        {"redis_timeout -1s", "invalid duration \"-1s\" for \"redis_timeout\""},
        {"route_cache_ttl 1.5s", "invalid duration \"1.5s\" for \"route_cache_ttl\""},
        {"redis_timeout 0", "\"0\" is out of range for \"redis_timeout\" (1ms to 168h)"},
        {"redis_timeout 0ms", "\"0ms\" is out of range for \"redis_timeout\" (1ms to 168h)"},
        {"upstream_connect_timeout 0",
         "\"0\" is out of range for \"upstream_connect_timeout\" (1ms to 168h)"},
        {"upstream_idle_timeout 0",
         "\"0\" is out of range for \"upstream_idle_timeout\" (1ms to 168h)"},
        {"upstream_response_timeout 0",
         "\"0\" is out of range for \"upstream_response_timeout\" (1ms to 168h)"},
        {"client_header_timeout 0",
         "\"0\" is out of range for \"client_header_timeout\" (1ms to 168h)"},
        {"client_idle_timeout 0",
         "\"0\" is out of range for \"client_idle_timeout\" (1ms to 168h)"},
        {"tunnel_idle_timeout 169h",
         "\"169h\" is out of range for \"tunnel_idle_timeout\" (1ms to 168h)"},
        {"route_stale_ttl 604801",
         "\"604801\" is out of range for \"route_stale_ttl\" (0 to 168h)"},
        {"drain_timeout 10081m", "\"10081m\" is out of range for \"drain_timeout\" (0 to 168h)"},
        {"resume_timeout 0", "\"0\" is out of range for \"resume_timeout\" (1ms to 168h)"},
        {"route_negative_ttl 99999999999999999999",
         "invalid duration \"99999999999999999999\" for \"route_negative_ttl\""},
        {"max_header_size 32x", "invalid size \"32x\" for \"max_header_size\""},
        {"max_header_size 1023", "\"1023\" is out of range for \"max_header_size\" (1k to 1m)"},
        {"max_header_size 2m", "\"2m\" is out of range for \"max_header_size\" (1k to 1m)"},
        {"max_header_size 1048577",
         "\"1048577\" is out of range for \"max_header_size\" (1k to 1m)"},
        {"max_connections many", "invalid number \"many\" for \"max_connections\""},
        {"max_connections -1", "invalid number \"-1\" for \"max_connections\""},
        {"max_connections 1k", "invalid number \"1k\" for \"max_connections\""},
        {"max_connections 0", "\"0\" is out of range for \"max_connections\" (1 to 10000000)"},
        {"max_connections 10000001",
         "\"10000001\" is out of range for \"max_connections\" (1 to 10000000)"},
        {"workers 0", "\"0\" is out of range for \"workers\" (1 to 256)"},
        {"workers 257", "\"257\" is out of range for \"workers\" (1 to 256)"},
        {"workers Auto", "invalid number \"Auto\" for \"workers\""},
        {"workers 2.5", "invalid number \"2.5\" for \"workers\""},
        {"log_level verbose",
         "invalid level \"verbose\" for \"log_level\" (error, warn, info or debug)"},
        {"log_level INFO", "invalid level \"INFO\" for \"log_level\" (error, warn, info or debug)"},
        {"redis_url http://localhost",
         "invalid URL \"http://localhost\" for \"redis_url\": expected redis://HOST:PORT/DB or "
         "unix:///PATH"},
        {"redis_url redis://host:99999",
         "invalid URL \"redis://host:99999\" for \"redis_url\": the port must be 1 to 65535"},
        {"listen 127.0.0.1", "invalid address \"127.0.0.1\" for \"listen\": missing \":PORT\""},
        {"listen 127.0.0.1:0",
         "invalid address \"127.0.0.1:0\" for \"listen\": the port must be 1 to 65535"},
        {"listen *:65536",
         "invalid address \"*:65536\" for \"listen\": the port must be 1 to 65535"},
        {"listen localhost:80",
         "invalid address \"localhost:80\" for \"listen\": not an IP address (write IPv4, [IPv6] "
         "or *)"},
        {"listen ::1:80",
         "invalid address \"::1:80\" for \"listen\": an IPv6 address needs brackets, as in "
         "[::1]:8080"},
        {"listen [::1:80",
         "invalid address \"[::1:80\" for \"listen\": missing \"]\" after the IPv6 address"},
        {"listen [::1]", "invalid address \"[::1]\" for \"listen\": missing \":PORT\""},
        {"listen [1.2.3.4]:80",
         "invalid address \"[1.2.3.4]:80\" for \"listen\": not an IPv6 address"},
        {"listen 127.0.0.1:8081 ssl",
         "unknown option \"ssl\" for \"listen\" (tls or proxy_protocol)"},
        {"listen 127.0.0.1:8081 tls tls", "duplicate option \"tls\" for \"listen\""},
        {"listen 127.0.0.1:8080",
         "address \"127.0.0.1:8080\" for \"listen\" is already used at line 2"},
        {"admin_listen 127.0.0.1:8080",
         "address \"127.0.0.1:8080\" for \"admin_listen\" is already used at line 2"},
        {"admin_listen 127.0.0.1",
         "invalid address \"127.0.0.1\" for \"admin_listen\": missing \":PORT\""},
        {"domain Example.COM", "duplicate domain \"example.com\""},
        {"domain .example.com", "invalid domain \".example.com\": leading or trailing dot"},
        {"domain example.com.", "invalid domain \"example.com.\": leading or trailing dot"},
        {"domain .", "invalid domain \".\": leading or trailing dot"},
        {"domain a..b", "invalid domain \"a..b\": empty label"},
        {"domain a_b.com",
         "invalid domain \"a_b.com\": only letters, digits, \"-\" and \".\" are allowed"},
        {"domain b\xc3\xa9.com",
         "invalid domain \"b\xc3\xa9.com\": only letters, digits, \"-\" and \".\" are allowed"},
        {"domain *.e2b.app",
         "invalid domain \"*.e2b.app\": write it without \"*.\": every <label>.NAME is served"},
        {"tls_certificate_key /etc/hostname",
         "\"tls_certificate_key\" without a \"tls_certificate\" before it"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_parse_error(format(MINIMAL "%s\n", cases[i].line),
                           format("gateway.conf:3: %s", cases[i].message));
    }
}

static void test_domain_lengths(void **state) {
    char label[70];
    memset(label, 'a', 63);
    label[63] = '\0';
    gw_config_t config;
    parse_ok(&config, format("domain %s.com\nlisten *:80\n", label));
    gw_config_free(&config);
    label[63] = 'a';
    label[64] = '\0';
    assert_parse_error(format("domain %s.com\n", label),
                       format("gateway.conf:1: invalid domain \"%s.com\": a label is longer than "
                              "63 bytes",
                              label));
    /* 4 labels of 63 plus 3 dots is 255 bytes: over the 253 of RFC 1035. */
    label[63] = '\0';
    const char *name = format("%s.%s.%s.%s", label, label, label, label);
    assert_parse_error(
        format("domain %s\n", name),
        format("gateway.conf:1: invalid domain \"%s\": longer than 253 bytes", name));
}

static void test_missing_required(void **state) {
    assert_parse_error("", "gateway.conf:1: missing required directive \"domain\"");
    assert_parse_error("\n", "gateway.conf:1: missing required directive \"domain\"");
    assert_parse_error("# nothing\n\n# here\n",
                       "gateway.conf:3: missing required directive \"domain\"");
    assert_parse_error("listen *:80\nworkers 2",
                       "gateway.conf:2: missing required directive \"domain\"");
    assert_parse_error("domain example.com\n# more\n",
                       "gateway.conf:2: missing required directive \"listen\"");
}

/* TLS */

static void test_tls_pairs(void **state) {
    assert_parse_error(MINIMAL "listen [::]:8443 tls\n",
                       "gateway.conf:3: tls listener \"[::]:8443\" needs \"tls_certificate\" and "
                       "\"tls_certificate_key\"");
    assert_parse_error(MINIMAL "tls_certificate /nonexistent/cert.pem\n",
                       "gateway.conf:3: cannot read \"/nonexistent/cert.pem\" for "
                       "\"tls_certificate\": No such file or directory");
    assert_parse_error(format(MINIMAL "tls_certificate %s\ntls_certificate_key /nonexistent/k\n",
                              certificate_path),
                       "gateway.conf:4: cannot read \"/nonexistent/k\" for "
                       "\"tls_certificate_key\": No such file or directory");
    assert_parse_error(format(MINIMAL "tls_certificate_key %s\n", key_path),
                       "gateway.conf:3: \"tls_certificate_key\" without a \"tls_certificate\" "
                       "before it");
    /* A certificate without its key is reported at its own line, found at the end or at the
     * next certificate. */
    assert_parse_error(format(MINIMAL "tls_certificate %s\nworkers 2\n", certificate_path),
                       "gateway.conf:3: \"tls_certificate\" without its \"tls_certificate_key\"");
    assert_parse_error(format(MINIMAL "tls_certificate %s\ntls_certificate %s\n", certificate_path,
                              second_certificate_path),
                       "gateway.conf:3: \"tls_certificate\" without its \"tls_certificate_key\"");
    /* A second key for one certificate has no certificate before it. */
    assert_parse_error(format(MINIMAL "tls_certificate %s\ntls_certificate_key %s\n"
                                      "tls_certificate_key %s\n",
                              certificate_path, key_path, second_key_path),
                       "gateway.conf:5: \"tls_certificate_key\" without a \"tls_certificate\" "
                       "before it");
    assert_parse_error(
        format(MINIMAL "tls_certificate %s\n", directory),
        format("gateway.conf:3: \"%s\" for \"tls_certificate\" is not a regular file", directory));

    /* A pair without any tls listener is fine. */
    gw_config_t config;
    parse_ok(&config, format(MINIMAL "tls_certificate %s\n# between\ntls_certificate_key %s\n",
                             certificate_path, key_path));
    assert_int_equal(config.tls_pair_count, 1);
    assert_string_equal(config.tls_pairs[0].certificate_key, key_path);
    gw_config_free(&config);
}

static void test_tls_ticket_key_file(void **state) {
    assert_parse_error(format(MINIMAL "tls_ticket_key_file %s\n", short_ticket_path),
                       format("gateway.conf:3: \"%s\" for \"tls_ticket_key_file\" must hold keys "
                              "of 80 bytes each, not 100 bytes",
                              short_ticket_path));
    assert_parse_error(format(MINIMAL "tls_ticket_key_file %s\n", empty_path),
                       format("gateway.conf:3: \"%s\" for \"tls_ticket_key_file\" must hold keys "
                              "of 80 bytes each, not 0 bytes",
                              empty_path));
    assert_parse_error(MINIMAL "tls_ticket_key_file /nonexistent/ticket.key\n",
                       "gateway.conf:3: cannot read \"/nonexistent/ticket.key\" for "
                       "\"tls_ticket_key_file\": No such file or directory");
    assert_parse_error(format(MINIMAL "tls_ticket_key_file %s\ntls_ticket_key_file %s\n",
                              ticket_path, ticket_path),
                       "gateway.conf:4: duplicate \"tls_ticket_key_file\" (first at line 3)");
}

/* Inactive features */

/* Files */

static void test_load_errors(void **state) {
    gw_config_t config;
    char error[1024];
    gw_config_defaults(&config);
    assert_int_equal(gw_config_load(&config, "/nonexistent/gateway.conf", error, sizeof(error)),
                     -1);
    assert_string_equal(error, "/nonexistent/gateway.conf: cannot open: No such file or directory");
    gw_config_free(&config);

    gw_config_defaults(&config);
    assert_int_equal(gw_config_load(&config, directory, error, sizeof(error)), -1);
    assert_string_equal(error, format("%s: cannot read: Is a directory", directory));
    gw_config_free(&config);

    /* Errors name the file as given. */
    const char text[] = MINIMAL "redis_timeout 5x\n";
    write_file(scratch_path, text, sizeof(text) - 1);
    gw_config_defaults(&config);
    assert_int_equal(gw_config_load(&config, scratch_path, error, sizeof(error)), -1);
    assert_string_equal(
        error, format("%s:3: invalid duration \"5x\" for \"redis_timeout\"", scratch_path));
    gw_config_free(&config);

    /* A NUL byte cannot hide the rest of its line. */
    const char nul[] = MINIMAL "workers 2\0 3\n";
    write_file(scratch_path, nul, sizeof(nul) - 1);
    gw_config_defaults(&config);
    assert_int_equal(gw_config_load(&config, scratch_path, error, sizeof(error)), -1);
    assert_string_equal(error, format("%s:3: invalid control character 0x00", scratch_path));
    gw_config_free(&config);

    /* Too large to be a configuration. */
    size_t large_size = 1024 * 1024 + 1;
    char *large = malloc(large_size);
    assert_non_null(large);
    memset(large, '\n', large_size);
    write_file(scratch_path, large, large_size);
    free(large);
    gw_config_defaults(&config);
    assert_int_equal(gw_config_load(&config, scratch_path, error, sizeof(error)), -1);
    assert_string_equal(error, format("%s: too large (more than 1048576 bytes)", scratch_path));
    gw_config_free(&config);

    /* A file that loads sets path. */
    write_file(scratch_path, MINIMAL, strlen(MINIMAL));
    gw_config_defaults(&config);
    assert_int_equal(gw_config_load(&config, scratch_path, error, sizeof(error)), 0);
    assert_string_equal(config.path, scratch_path);
    gw_config_free(&config);
}

static void test_error_buffer(void **state) {
    gw_config_t config;
    char error[16];
    gw_config_defaults(&config);
    assert_int_equal(gw_config_parse(&config, "gateway.conf", "foo\n", error, sizeof(error)), -1);
    assert_string_equal(error, "gateway.conf:1:"); /* cut, still terminated */
    gw_config_free(&config);
    gw_config_defaults(&config);
    assert_int_equal(gw_config_parse(&config, "gateway.conf", "foo\n", NULL, 0), -1);
    gw_config_free(&config);
    gw_config_defaults(&config);
    assert_int_equal(gw_config_load(&config, "/nonexistent", NULL, 0), -1);
    gw_config_free(&config);
}

/* upstream_deny and instance_name */

static void test_upstream_deny(void **state) {
    gw_config_t config;
    parse_ok(&config, MINIMAL "upstream_deny 10.0.0.0/8 192.168.1.7\n"
                              "upstream_deny fd00::/8\n");
    assert_int_equal(config.upstream_deny_count, 3);
    const uint8_t ten[4] = {10, 1, 2, 3};
    const uint8_t other[4] = {11, 0, 0, 1};
    assert_true(cidr_contains(&config.upstream_deny[0], AF_INET, ten));
    assert_false(cidr_contains(&config.upstream_deny[0], AF_INET, other));
    assert_int_equal(config.upstream_deny[1].prefix, 32);
    assert_int_equal(config.upstream_deny[2].family, AF_INET6);
    assert_int_equal(config.upstream_deny[2].prefix, 8);
    assert_null(config.instance_name);
    gw_config_free(&config);

    assert_parse_error(MINIMAL "upstream_deny 10.0.0.1/8\n",
                       "gateway.conf:3: \"10.0.0.1/8\" for \"upstream_deny\" has host bits set "
                       "(the block is 10.0.0.0/8)");
    assert_parse_error(MINIMAL "upstream_deny 10.0.0.0/8 nope\n",
                       "gateway.conf:3: invalid block \"nope\" for \"upstream_deny\" (write ADDR "
                       "or ADDR/LEN, IPv4 or IPv6)");
    assert_parse_error(MINIMAL "upstream_deny ::/129\n",
                       "gateway.conf:3: invalid block \"::/129\" for \"upstream_deny\" (write ADDR "
                       "or ADDR/LEN, IPv4 or IPv6)");
    assert_parse_error(MINIMAL "upstream_deny\n",
                       "gateway.conf:3: missing argument for \"upstream_deny\"");
}

static void test_instance_name(void **state) {
    gw_config_t config;
    parse_ok(&config, MINIMAL "instance_name gw-eu-1.example_a\n");
    assert_string_equal(config.instance_name, "gw-eu-1.example_a");
    gw_config_free(&config);
    assert_parse_error(MINIMAL "instance_name gw,1\n",
                       "gateway.conf:3: invalid name \"gw,1\" for \"instance_name\" (1 to 63 "
                       "letters, digits, \"-\", \".\" or \"_\")");
    char long_name[80];
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    assert_parse_error(format(MINIMAL "instance_name %s\n", long_name),
                       format("gateway.conf:3: invalid name \"%s\" for \"instance_name\" (1 to 63 "
                              "letters, digits, \"-\", \".\" or \"_\")",
                              long_name));
    assert_parse_error(MINIMAL "instance_name a\ninstance_name b\n",
                       "gateway.conf:4: duplicate \"instance_name\" (first at line 3)");
}

/* The sample gateway.conf */

static void test_sample_configuration(void **state) {
    const char *path = SGW_SOURCE_DIR "/gateway.conf";
    gw_config_t config;
    char error[1024];
    gw_config_defaults(&config);
    if (gw_config_load(&config, path, error, sizeof(error)) != 0) {
        gw_config_free(&config);
        fail_msg("%s", error);
    }
    assert_int_equal(config.domain_count, 1);
    assert_string_equal(config.domains[0], "sandbox.localhost");
    assert_true(config.listen_count >= 1);
    assert_ipv4(&config.listens[0], "127.0.0.1", 8080);
    assert_false(config.listens[0].tls);
    assert_false(config.listens[0].proxy_protocol);
    assert_string_equal(config.access_log, "stderr");
    assert_int_equal(config.tls_pair_count, 0);
    assert_false(config.has_admin_listen);
    assert_design_defaults(&config);
    gw_config_free(&config);
}

static void test_sample_documents_every_directive(void **state) {
    /* gateway.conf is the manual: each directive appears at the start of a line, as a setting
     * or commented out ("# name ..."). */
    const char *directives[] = {"domain",
                                "listen",
                                "tls_certificate",
                                "tls_certificate_key",
                                "tls_ticket_key_file",
                                "admin_listen",
                                "workers",
                                "redis_url",
                                "redis_key_prefix",
                                "redis_timeout",
                                "route_cache_ttl",
                                "route_cache_ttl_notified",
                                "route_negative_ttl",
                                "route_stale_ttl",
                                "upstream_connect_timeout",
                                "upstream_connect_retry",
                                "upstream_idle_timeout",
                                "upstream_response_timeout",
                                "client_header_timeout",
                                "client_idle_timeout",
                                "tunnel_idle_timeout",
                                "max_header_size",
                                "max_connections",
                                "access_log",
                                "log_level",
                                "drain_delay",
                                "drain_timeout",
                                "upstream_deny",
                                "instance_name",
                                "http2",
                                "http2_max_concurrent_streams",
                                "auth_cookie_key_file",
                                "auth_cookie_ttl",
                                "resume_redis_url",
                                "resume_stream",
                                "resume_timeout",
                                "activity_interval"};
    FILE *file = fopen(SGW_SOURCE_DIR "/gateway.conf", "r");
    assert_non_null(file);
    static char text[65536];
    size_t length = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[length] = '\0';
    for (size_t i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
        if (strstr(text, format("\n# %s ", directives[i])) == NULL &&
            strstr(text, format("\n%s ", directives[i])) == NULL)
            fail_msg("gateway.conf does not document \"%s\"", directives[i]);
        /* Each one is also a known directive with a valid example. */
        gw_config_t config;
        char error[1024];
        gw_config_defaults(&config);
        gw_config_parse(&config, "gateway.conf", format("%s\n", directives[i]), error,
                        sizeof(error));
        gw_config_free(&config);
        assert_string_equal(error,
                            format("gateway.conf:1: missing argument for \"%s\"", directives[i]));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_written_out),
        cmocka_unit_test(test_every_directive),
        cmocka_unit_test(test_small_values),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_parse_redis_url),
        cmocka_unit_test(test_comments_and_line_endings),
        cmocka_unit_test(test_line_length),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_directive_errors),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_domain_lengths),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_tls_pairs),
        cmocka_unit_test(test_tls_ticket_key_file),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_upstream_deny),
        cmocka_unit_test(test_instance_name),
        cmocka_unit_test(test_sample_configuration),
        cmocka_unit_test(test_sample_documents_every_directive),
    };
    return cmocka_run_group_tests(tests, setup_files, teardown_files);
}
