/* Unit tests of util/conf.c: the engine on a small made-up table, apart from any real file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/conf.h"
#include "util/log.h"

/* What the made-up "test.conf" fills. */
typedef struct settings {
    char *path;
    char *name; /* required */
    uint64_t timeout_ms;
    size_t buffer_size;
    long count;
    log_level_t level;
    char *redis_url;
    conf_redis_target_t redis;
    char *tags[8]; /* repeatable, 1 to 3 a line */
    size_t tag_count;
    int finish_calls;
} settings_t;

static int set_tag(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                   size_t argument_count) {
    settings_t *settings = parser->target;
    for (size_t i = 0; i < argument_count; i++) {
        if (settings->tag_count == sizeof(settings->tags) / sizeof(settings->tags[0]))
            return conf_error(parser, "too many tags");
        settings->tags[settings->tag_count] = strdup(arguments[i]);
        if (settings->tags[settings->tag_count] == NULL)
            return conf_error(parser, "out of memory");
        settings->tag_count++;
    }
    return 0;
}

/* Refuses a file with the tag "late", naming the line 1, before the required check. */
static int finish(conf_parser_t *parser) {
    settings_t *settings = parser->target;
    settings->finish_calls++;
    for (size_t i = 0; i < settings->tag_count; i++) {
        if (strcmp(settings->tags[i], "late") == 0)
            return conf_error_at(parser, 1, "\"late\" is refused at the end");
    }
    return 0;
}

// clang-format off
#define FIELD(field) offsetof(settings_t, field)
static const conf_directive_t directives[] = {
    {"name",      1, 1, conf_set_string,    FIELD(name),        0, 0,
     CONF_REQUIRED, NULL, 0},
    {"timeout",   1, 1, conf_set_duration,  FIELD(timeout_ms),  1, CONF_HOUR,
     CONF_ONCE, "2s", 0},
    {"buffer",    1, 1, conf_set_size,      FIELD(buffer_size), CONF_KILOBYTE, CONF_MEGABYTE,
     CONF_ONCE, "4k", 0},
    {"count",     1, 1, conf_set_count,     FIELD(count),       1, 100,
     CONF_ONCE, "10", 0},
    {"level",     1, 1, conf_set_log_level, FIELD(level),       0, 0,
     CONF_ONCE, "warn", 0},
    {"redis_url", 1, 1, conf_set_redis_url, FIELD(redis),       0, 0,
     CONF_ONCE, "redis://localhost/1", FIELD(redis_url)},
    {"tag",       1, 3, set_tag,            0,                  0, 0,
     CONF_REPEATABLE, NULL, 0},
};
// clang-format on

static const conf_syntax_t syntax = {
    .directives = directives,
    .directive_count = sizeof(directives) / sizeof(directives[0]),
    .path_offset = FIELD(path),
    .finish = finish,
};

static void settings_free(settings_t *settings) {
    free(settings->path);
    free(settings->name);
    free(settings->redis_url);
    conf_redis_target_free(&settings->redis);
    for (size_t i = 0; i < settings->tag_count; i++)
        free(settings->tags[i]);
    memset(settings, 0, sizeof(*settings));
}

/* Applies the defaults and parses text as "test.conf"; returns conf_parse's result. */
static int parse(settings_t *settings, const char *text, size_t length, char *error,
                 size_t error_size) {
    memset(settings, 0, sizeof(*settings));
    assert_int_equal(conf_defaults(&syntax, settings, error, error_size), 0);
    return conf_parse(&syntax, settings, "test.conf", text, length, error, error_size);
}

static void parse_ok(settings_t *settings, const char *text) {
    char error[256];
    if (parse(settings, text, strlen(text), error, sizeof(error)) != 0)
        fail_msg("unexpected error: %s", error);
}

static void assert_error_bytes(const char *text, size_t length, const char *expected) {
    settings_t settings;
    char error[256];
    int result = parse(&settings, text, length, error, sizeof(error));
    settings_free(&settings);
    if (result == 0)
        fail_msg("accepted: %s", text);
    assert_string_equal(error, expected);
}

static void assert_error(const char *text, const char *expected) {
    assert_error_bytes(text, strlen(text), expected);
}

static void test_defaults_from_the_table(void **state) {
    settings_t settings;
    char error[256];
    memset(&settings, 0, sizeof(settings));
    assert_int_equal(conf_defaults(&syntax, &settings, error, sizeof(error)), 0);
    assert_string_equal(error, "");
    assert_null(settings.path);
    assert_null(settings.name);
    assert_int_equal(settings.timeout_ms, 2000);
    assert_int_equal(settings.buffer_size, 4096);
    assert_int_equal(settings.count, 10);
    assert_int_equal(settings.level, LOG_LEVEL_WARN);
    assert_string_equal(settings.redis_url, "redis://localhost/1");
    assert_string_equal(settings.redis.host, "localhost");
    assert_int_equal(settings.redis.port, 6379);
    assert_int_equal(settings.redis.database, 1);
    assert_int_equal(settings.tag_count, 0);
    settings_free(&settings);

    /* A value from the file replaces its default, which is freed (ASan would tell). */
    parse_ok(&settings, "name a\nredis_url unix:///run/r.sock\ntimeout 5ms\n");
    assert_string_equal(settings.path, "test.conf");
    assert_string_equal(settings.redis_url, "unix:///run/r.sock");
    assert_null(settings.redis.host);
    assert_string_equal(settings.redis.unix_path, "/run/r.sock");
    assert_int_equal(settings.timeout_ms, 5);
    assert_int_equal(settings.count, 10);
    assert_int_equal(settings.finish_calls, 1);
    settings_free(&settings);
}

static void test_bad_default(void **state) {
    static const conf_directive_t bad[] = {
        {"count", 1, 1, conf_set_count, FIELD(count), 1, 100, CONF_ONCE, "0", 0},
    };
    static const conf_directive_t two[] = {
        {"count", 1, 1, conf_set_count, FIELD(count), 1, 100, CONF_ONCE, "1 2", 0},
    };
    conf_syntax_t bad_syntax = {bad, 1, FIELD(path), NULL};
    settings_t settings;
    char error[256];
    memset(&settings, 0, sizeof(settings));
    assert_int_equal(conf_defaults(&bad_syntax, &settings, error, sizeof(error)), -1);
    assert_string_equal(error, "built-in defaults: \"0\" is out of range for \"count\" (1 to 100)");
    bad_syntax.directives = two;
    assert_int_equal(conf_defaults(&bad_syntax, &settings, error, sizeof(error)), -1);
    assert_string_equal(error, "built-in defaults: too many arguments for \"count\"");
    assert_int_equal(conf_defaults(&bad_syntax, &settings, NULL, 0), -1);
    settings_free(&settings);
}

static void test_every_directive(void **state) {
    settings_t settings;
    parse_ok(&settings, "name  first\n"
                        "timeout 1h\n"
                        "buffer 1m\n"
                        "count 100\n"
                        "level debug\n"
                        "redis_url redis://[::1]:7000/2\n"
                        "tag a b c\n"
                        "tag d\n");
    assert_string_equal(settings.name, "first");
    assert_int_equal(settings.timeout_ms, 3600000);
    assert_int_equal(settings.buffer_size, 1048576);
    assert_int_equal(settings.count, 100);
    assert_int_equal(settings.level, LOG_LEVEL_DEBUG);
    assert_string_equal(settings.redis.host, "::1");
    assert_int_equal(settings.redis.port, 7000);
    assert_int_equal(settings.redis.database, 2);
    /* A repeatable directive adds on each line. */
    assert_int_equal(settings.tag_count, 4);
    assert_string_equal(settings.tags[0], "a");
    assert_string_equal(settings.tags[3], "d");
    settings_free(&settings);
}

static void test_bounds(void **state) {
    assert_error("name a\ntimeout 0\n",
                 "test.conf:2: \"0\" is out of range for \"timeout\" (1ms to 1h)");
    assert_error("name a\ntimeout 61m\n",
                 "test.conf:2: \"61m\" is out of range for \"timeout\" (1ms to 1h)");
    assert_error("name a\ntimeout 1x\n", "test.conf:2: invalid duration \"1x\" for \"timeout\"");
    assert_error("name a\nbuffer 1023\n",
                 "test.conf:2: \"1023\" is out of range for \"buffer\" (1k to 1m)");
    assert_error("name a\nbuffer 1g\n", "test.conf:2: invalid size \"1g\" for \"buffer\"");
    assert_error("name a\ncount 101\n",
                 "test.conf:2: \"101\" is out of range for \"count\" (1 to 100)");
    assert_error("name a\ncount -1\n", "test.conf:2: invalid number \"-1\" for \"count\"");
    assert_error("name a\nlevel loud\n",
                 "test.conf:2: invalid level \"loud\" for \"level\" (error, warn, info or debug)");
    assert_error("name a\nredis_url redis://h:0\n",
                 "test.conf:2: invalid URL \"redis://h:0\" for \"redis_url\": the port must be 1 "
                 "to 65535");
}

static void test_directive_errors(void **state) {
    assert_error("name a\nnope 1\n", "test.conf:2: unknown directive \"nope\"");
    assert_error("Name a\n", "test.conf:1: unknown directive \"Name\"");
    assert_error("name a\ncount 2\n\ncount 3\n",
                 "test.conf:4: duplicate \"count\" (first at line 2)");
    assert_error("name\n", "test.conf:1: missing argument for \"name\"");
    assert_error("name a b\n", "test.conf:1: too many arguments for \"name\"");
    assert_error("name a\ntag a b c d\n", "test.conf:2: too many arguments for \"tag\"");
    /* The count of arguments is checked before a duplicate. */
    assert_error("name a\ncount 2\ncount 3 4\n", "test.conf:3: too many arguments for \"count\"");
    /* More tokens than the engine keeps are still counted. */
    assert_error("name a\ntag 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 "
                 "26 27 28 29 30 31 32 33 34 35\n",
                 "test.conf:2: too many arguments for \"tag\"");
}

static void test_required(void **state) {
    /* A missing directive is reported at the last line, or at line 1 of an empty file. */
    assert_error("", "test.conf:1: missing required directive \"name\"");
    assert_error("count 2\n\n# end\n", "test.conf:3: missing required directive \"name\"");
    assert_error("count 2", "test.conf:1: missing required directive \"name\"");
    /* The finish hook runs first. */
    assert_error("tag late\ncount 2\n", "test.conf:1: \"late\" is refused at the end");
}

static void test_comments_and_line_endings(void **state) {
    settings_t settings;
    parse_ok(&settings, "# a comment\r\n"
                        "\r\n"
                        " \t \n"
                        "\tname\ta#b   # a trailing comment\r\n"
                        "tag x #y\n"
                        "count 7 # the last line has no newline");
    assert_string_equal(settings.name, "a#b");
    assert_int_equal(settings.tag_count, 1);
    assert_string_equal(settings.tags[0], "x");
    assert_int_equal(settings.count, 7);
    settings_free(&settings);

    /* A lone CR is not a line ending but a control character. */
    assert_error("name a\rb\n", "test.conf:1: invalid control character 0x0d");
    assert_error("name a\x01\n", "test.conf:1: invalid control character 0x01");
    assert_error("name a\x7f\n", "test.conf:1: invalid control character 0x7f");
    parse_ok(&settings, "name a # \x01\x7f\n");
    settings_free(&settings);
}

static void test_nul_bytes(void **state) {
    /* A NUL cannot hide the rest of its line, even in a comment. */
    const char text[] = "name a\ncount 2\0 3\n";
    assert_error_bytes(text, sizeof(text) - 1, "test.conf:2: invalid control character 0x00");
    const char comment[] = "name a\n# \0\n";
    assert_error_bytes(comment, sizeof(comment) - 1, "test.conf:2: invalid control character 0x00");
}

static void test_long_lines(void **state) {
    static char text[8192];
    /* "name " and 4091 bytes is 4096: the longest line, CRLF not counted. */
    strcpy(text, "name ");
    memset(text + 5, 'x', 4091);
    strcpy(text + 4096, "\r\n");
    settings_t settings;
    parse_ok(&settings, text);
    assert_int_equal(strlen(settings.name), 4091);
    settings_free(&settings);

    memset(text + 5, 'x', 4092);
    strcpy(text + 4097, "\n");
    assert_error(text, "test.conf:1: line too long (more than 4096 bytes)");
    memset(text, '#', 5000);
    strcpy(text + 5000, "\n");
    assert_error(text, "test.conf:1: line too long (more than 4096 bytes)");
}

static void test_load(void **state) {
    settings_t settings;
    char error[256];
    memset(&settings, 0, sizeof(settings));
    assert_int_equal(conf_load(&syntax, &settings, "/nonexistent/test.conf", error, sizeof(error)),
                     -1);
    assert_string_equal(error, "/nonexistent/test.conf: cannot open: No such file or directory");
    assert_int_equal(conf_load(&syntax, &settings, "/", error, sizeof(error)), -1);
    assert_string_equal(error, "/: cannot read: Is a directory");

    char path[] = "/tmp/sgw-test-conf-XXXXXX";
    int descriptor = mkstemp(path);
    assert_true(descriptor >= 0);
    const char text[] = "name from-file\ncount 3\n";
    assert_int_equal(write(descriptor, text, sizeof(text) - 1), sizeof(text) - 1);
    assert_int_equal(conf_load(&syntax, &settings, path, error, sizeof(error)), 0);
    assert_string_equal(settings.path, path);
    assert_string_equal(settings.name, "from-file");
    assert_int_equal(settings.count, 3);
    settings_free(&settings);

    /* One byte past CONF_FILE_LIMIT is too large. */
    char *large = malloc(CONF_FILE_LIMIT + 1);
    assert_non_null(large);
    memset(large, '\n', CONF_FILE_LIMIT + 1);
    assert_int_equal(pwrite(descriptor, large, CONF_FILE_LIMIT + 1, 0), CONF_FILE_LIMIT + 1);
    free(large);
    close(descriptor);
    assert_int_equal(conf_load(&syntax, &settings, path, error, sizeof(error)), -1);
    char expected[128];
    snprintf(expected, sizeof(expected), "%s: too large (more than 1048576 bytes)", path);
    assert_string_equal(error, expected);
    settings_free(&settings);
    unlink(path);
}

static void test_error_buffer(void **state) {
    settings_t settings;
    char error[12];
    memset(&settings, 0, sizeof(settings));
    assert_int_equal(conf_parse(&syntax, &settings, "test.conf", "x\n", 2, error, sizeof(error)),
                     -1);
    assert_string_equal(error, "test.conf:1"); /* cut, still terminated */
    assert_int_equal(conf_parse(&syntax, &settings, "test.conf", "x\n", 2, NULL, 0), -1);
    settings_free(&settings);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_from_the_table),
        cmocka_unit_test(test_bad_default),
        cmocka_unit_test(test_every_directive),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_directive_errors),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_comments_and_line_endings),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_error_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
