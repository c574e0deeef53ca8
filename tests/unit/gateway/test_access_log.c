/* Unit tests for gateway/access_log.c: exact lines, escaping, truncation, whole lines under threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/access_log.h"

enum { THREAD_COUNT = 8, ENTRIES_PER_THREAD = 500 };

/* A temporary directory per test, holding the log file. */
typedef struct fixture {
    char directory[64];
    char path[128];
} fixture_t;

static int setup(void **state) {
    fixture_t *fixture = calloc(1, sizeof(*fixture));
    if (fixture == NULL)
        return -1;
    snprintf(fixture->directory, sizeof(fixture->directory), "/tmp/sgw-access-log-XXXXXX");
    if (mkdtemp(fixture->directory) == NULL) {
        free(fixture);
        return -1;
    }
    snprintf(fixture->path, sizeof(fixture->path), "%s/access.log", fixture->directory);
    *state = fixture;
    return 0;
}

static int teardown(void **state) {
    fixture_t *fixture = *state;
    unlink(fixture->path);
    rmdir(fixture->directory);
    free(fixture);
    return 0;
}

/* Reads the whole log file, NUL-terminated; the caller frees it. */
static char *read_log(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fseek(file, 0, SEEK_END), 0);
    long size = ftell(file);
    assert_true(size >= 0);
    rewind(file);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, file), (size_t)size);
    text[size] = '\0';
    fclose(file);
    *length = (size_t)size;
    return text;
}

/* Checks the line starts with a well-formed time field; returns what follows it. */
static const char *skip_time(const char *line) {
    static const char prefix[] = "{\"time\":\"";
    assert_true(strncmp(line, prefix, sizeof(prefix) - 1) == 0);
    const char *time = line + sizeof(prefix) - 1;
    /* 2024-05-01T12:34:56.789Z */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t index = 0; index < sizeof(shape) - 1; index++) {
        if (shape[index] == 'd')
            assert_true(time[index] >= '0' && time[index] <= '9');
        else
            assert_int_equal(time[index], shape[index]);
    }
    assert_int_equal(time[sizeof(shape) - 1], '"');
    return time + sizeof(shape);
}

static void test_stderr_is_left_open(void **state) {
    (void)state;
    gw_access_log_t *log = gw_access_log_open("stderr");
    assert_non_null(log);
    gw_access_log_close(log);
    assert_true(fcntl(STDERR_FILENO, F_GETFD) != -1);
    gw_access_log_close(NULL);
}

static void test_unopenable_path_returns_null(void **state) {
    (void)state;
    assert_null(gw_access_log_open("/nonexistent-directory/for/sure/access.log"));
}

static void test_file_is_created_0644_and_appended(void **state) {
    fixture_t *fixture = *state;
    mode_t previous_mask = umask(022);
    gw_access_log_t *log = gw_access_log_open(fixture->path);
    umask(previous_mask);
    assert_non_null(log);
    struct stat status;
    assert_int_equal(stat(fixture->path, &status), 0);
    assert_int_equal(status.st_mode & 0777, 0644);
    gw_access_entry_t entry = {.client = "10.0.0.1", .method = "GET", .path = "/", .status = 200};
    gw_access_log_write(log, &entry);
    gw_access_log_close(log);
    /* A second open appends rather than truncates. */
    log = gw_access_log_open(fixture->path);
    assert_non_null(log);
    gw_access_log_write(log, &entry);
    gw_access_log_close(log);
    size_t length;
    char *text = read_log(fixture->path, &length);
    size_t lines = 0;
    for (size_t index = 0; index < length; index++)
        lines += text[index] == '\n';
    assert_int_equal(lines, 2);
    free(text);
}

static void test_exact_lines(void **state) {
    fixture_t *fixture = *state;
    gw_access_log_t *log = gw_access_log_open(fixture->path);
    assert_non_null(log);
    gw_access_entry_t routed = {
        .client = "203.0.113.7",
        .sandbox_id = "i62mff4ahtrdfdkyn2esc",
        .port = 3000,
        .method = "POST",
        .path = "/api/items?page=2",
        .status = 201,
        .bytes_received = 1234,
        .bytes_sent = 18446744073709551615ULL,
        .duration_us = 12345,
        .protocol = "h2",
    };
    gw_access_entry_t unrouted = {
        .client = "::1",
        .method = "GET",
        .status = 421,
        .bytes_received = 80,
        .bytes_sent = 120,
        .duration_us = 7,
    };
    gw_access_log_write(log, &routed);
    gw_access_log_write(log, &unrouted);
    gw_access_log_close(log);

    size_t length;
    char *text = read_log(fixture->path, &length);
    char *second = strchr(text, '\n');
    assert_non_null(second);
    *second++ = '\0';
    assert_string_equal(skip_time(text),
                        ",\"client\":\"203.0.113.7\",\"sandbox\":\"i62mff4ahtrdfdkyn2esc\","
                        "\"port\":3000,\"method\":\"POST\",\"path\":\"/api/items?page=2\","
                        "\"status\":201,\"bytes_in\":1234,\"bytes_out\":18446744073709551615,"
                        "\"duration_ms\":12.345,\"protocol\":\"h2\"}");
    assert_string_equal(skip_time(second),
                        ",\"client\":\"::1\",\"sandbox\":null,\"port\":null,\"method\":\"GET\","
                        "\"path\":null,\"status\":421,\"bytes_in\":80,\"bytes_out\":120,"
                        "\"duration_ms\":0.007,\"protocol\":\"http/1.1\"}\n");
    free(text);
}

static void test_path_is_escaped(void **state) {
    fixture_t *fixture = *state;
    gw_access_log_t *log = gw_access_log_open(fixture->path);
    assert_non_null(log);
    gw_access_entry_t entry = {
        .client = "10.0.0.1",
        .sandbox_id = "abc\"def",
        .port = 80,
        .method = "GET",
        .path = "/a\"b\\c\nd\re\tf\x01g\x1fh\x7f/caf\xc3\xa9",
        .status = 400,
    };
    gw_access_log_write(log, &entry);
    gw_access_log_close(log);
    size_t length;
    char *text = read_log(fixture->path, &length);
    assert_string_equal(skip_time(text),
                        ",\"client\":\"10.0.0.1\",\"sandbox\":\"abc\\\"def\",\"port\":80,"
                        "\"method\":\"GET\",\"path\":\"/a\\\"b\\\\c\\u000ad\\u000de\\u0009f"
                        "\\u0001g\\u001fh\\u007f/caf\xc3\xa9\",\"status\":400,\"bytes_in\":0,"
                        "\"bytes_out\":0,\"duration_ms\":0.000,\"protocol\":\"http/1.1\"}\n");
    /* Exactly one newline: the one ending the line. */
    assert_ptr_equal(strchr(text, '\n'), text + length - 1);
    free(text);
}

/* Writes one entry with a 10 KiB path of fill bytes and checks the line: the
 * path holds whole escapes of fill up to 2 KiB, and the fields after it follow. */
static void check_long_path(const char *log_path, char fill, const char *escaped_fill) {
    enum { PATH_LENGTH = 10 * 1024 };
    char *path = malloc(PATH_LENGTH + 1);
    assert_non_null(path);
    path[0] = '/';
    memset(path + 1, fill, PATH_LENGTH - 1);
    path[PATH_LENGTH] = '\0';
    gw_access_log_t *log = gw_access_log_open(log_path);
    assert_non_null(log);
    gw_access_entry_t entry = {.client = "10.0.0.1", .method = "GET", .path = path, .status = 414};
    gw_access_log_write(log, &entry);
    gw_access_log_close(log);
    free(path);

    size_t length;
    char *text = read_log(log_path, &length);
    assert_true(length <= 4096);
    assert_ptr_equal(strchr(text, '\n'), text + length - 1);
    const char *field = strstr(text, ",\"path\":\"/");
    assert_non_null(field);
    const char *value = field + strlen(",\"path\":\"/");
    size_t fill_length = strlen(escaped_fill);
    size_t repeats = 0;
    while (strncmp(value, escaped_fill, fill_length) == 0) {
        value += fill_length;
        repeats++;
    }
    /* Cut at 2 KiB of escaped text, on a whole escape, then the line goes on. */
    assert_true(1 + repeats * fill_length <= 2048);
    assert_true(1 + (repeats + 1) * fill_length > 2048);
    assert_string_equal(value, "\",\"status\":414,\"bytes_in\":0,\"bytes_out\":0,"
                               "\"duration_ms\":0.000,\"protocol\":\"http/1.1\"}\n");
    free(text);
    unlink(log_path);
}

static void test_long_path_is_cut_and_line_stays_whole(void **state) {
    fixture_t *fixture = *state;
    check_long_path(fixture->path, 'a', "a");
    check_long_path(fixture->path, '"', "\\\"");
    check_long_path(fixture->path, '\x01', "\\u0001");
}

typedef struct writer {
    gw_access_log_t *log;
    int thread_index;
} writer_t;

static void *write_entries(void *argument) {
    const writer_t *writer = argument;
    char path[1600];
    for (int sequence = 0; sequence < ENTRIES_PER_THREAD; sequence++) {
        /* Lengths vary so lines of different sizes race each other. */
        int written = snprintf(path, sizeof(path), "/t%d/s%d/", writer->thread_index, sequence);
        size_t padding = (size_t)(sequence * 37 % 1500);
        memset(path + written, 'p', padding);
        path[(size_t)written + padding] = '\0';
        gw_access_entry_t entry = {.client = "10.0.0.1",
                                   .sandbox_id = "sbx",
                                   .port = 8000 + writer->thread_index,
                                   .method = "GET",
                                   .path = path,
                                   .status = 200,
                                   .bytes_sent = (uint64_t)sequence};
        gw_access_log_write(writer->log, &entry);
    }
    return NULL;
}

static void test_concurrent_writers_give_whole_lines(void **state) {
    fixture_t *fixture = *state;
    gw_access_log_t *log = gw_access_log_open(fixture->path);
    assert_non_null(log);
    pthread_t threads[THREAD_COUNT];
    writer_t writers[THREAD_COUNT];
    for (int index = 0; index < THREAD_COUNT; index++) {
        writers[index] = (writer_t){.log = log, .thread_index = index};
        assert_int_equal(pthread_create(&threads[index], NULL, write_entries, &writers[index]), 0);
    }
    for (int index = 0; index < THREAD_COUNT; index++)
        assert_int_equal(pthread_join(threads[index], NULL), 0);
    gw_access_log_close(log);

    size_t length;
    char *text = read_log(fixture->path, &length);
    int next_sequence[THREAD_COUNT] = {0};
    size_t lines = 0;
    for (char *line = text; *line != '\0'; lines++) {
        char *line_end = strchr(line, '\n');
        assert_non_null(line_end);
        *line_end = '\0';
        const char *rest = skip_time(line);
        int thread_index;
        int sequence;
        int port;
        int consumed = 0;
        assert_int_equal(sscanf(rest,
                                ",\"client\":\"10.0.0.1\",\"sandbox\":\"sbx\",\"port\":%d,"
                                "\"method\":\"GET\",\"path\":\"/t%d/s%d/%n",
                                &port, &thread_index, &sequence, &consumed),
                         3);
        assert_true(consumed > 0);
        assert_true(thread_index >= 0 && thread_index < THREAD_COUNT);
        assert_int_equal(port, 8000 + thread_index);
        /* Each thread's lines appear whole and in the order it wrote them. */
        assert_int_equal(sequence, next_sequence[thread_index]++);
        const char *padding = rest + consumed;
        size_t padding_length = strspn(padding, "p");
        assert_int_equal(padding_length, (size_t)(sequence * 37 % 1500));
        char expected_tail[128];
        snprintf(expected_tail, sizeof(expected_tail),
                 "\",\"status\":200,\"bytes_in\":0,\"bytes_out\":%d,\"duration_ms\":0.000,\"protocol\":\"http/1.1\"}",
                 sequence);
        assert_string_equal(padding + padding_length, expected_tail);
        line = line_end + 1;
    }
    assert_int_equal(lines, THREAD_COUNT * ENTRIES_PER_THREAD);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stderr_is_left_open),
        cmocka_unit_test(test_unopenable_path_returns_null),
        cmocka_unit_test_setup_teardown(test_file_is_created_0644_and_appended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_is_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_path_is_cut_and_line_stays_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_give_whole_lines, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
