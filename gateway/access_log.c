/* Access log: one JSON line per request, written with one append so workers never interleave. */
#include "gateway/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/json.h"
#include "util/log.h"

/* A line is built in one stack buffer and written with one write(2). Each
 * escaped string is capped so the sum always fits: 4 KiB is also PIPE_BUF, the
 * most a pipe (stderr under a supervisor) takes atomically. */
enum {
    GW_ACCESS_LOG_LINE_SIZE = 4096,
    GW_ACCESS_LOG_PATH_LIMIT = 2048,
    GW_ACCESS_LOG_SANDBOX_LIMIT = 256,
    GW_ACCESS_LOG_CLIENT_LIMIT = 128,
    GW_ACCESS_LOG_METHOD_LIMIT = 64,
    GW_ACCESS_LOG_FIXED_TEXT = 512, /* keys, time, numbers, quotes, newline: about 250 */
};

_Static_assert(GW_ACCESS_LOG_PATH_LIMIT + GW_ACCESS_LOG_SANDBOX_LIMIT + GW_ACCESS_LOG_CLIENT_LIMIT +
                       GW_ACCESS_LOG_METHOD_LIMIT + GW_ACCESS_LOG_FIXED_TEXT <=
                   GW_ACCESS_LOG_LINE_SIZE,
               "an access log line always fits its buffer");

struct gw_access_log {
    int fd;
    bool owns_fd;             /* false for stderr, which outlives the log */
    atomic_bool write_failed; /* reported once, not once per request */
};

/* A line under construction; the limits above keep it inside data. */
typedef struct gw_access_log_line {
    char data[GW_ACCESS_LOG_LINE_SIZE];
    size_t length;
} gw_access_log_line_t;

gw_access_log_t *gw_access_log_open(const char *target) {
    if (target == NULL) {
        log_error("access_log: no target");
        return NULL;
    }
    gw_access_log_t *log = calloc(1, sizeof(*log));
    if (log == NULL) {
        log_error("access_log %s: out of memory", target);
        return NULL;
    }
    atomic_init(&log->write_failed, false);
    if (strcmp(target, "stderr") == 0) {
        log->fd = STDERR_FILENO;
        log->owns_fd = false;
        return log;
    }
    /* O_APPEND makes each write(2) land whole at the end of the file, even
     * with several workers and several processes writing the same file. */
    log->fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log->fd < 0) {
        log_error("access_log %s: %s", target, strerror(errno));
        free(log);
        return NULL;
    }
    log->owns_fd = true;
    return log;
}

static void gw_access_log_add(gw_access_log_line_t *line, const char *text) {
    size_t length = strlen(text);
    size_t room = sizeof(line->data) - line->length;
    if (length > room)
        length = room;
    memcpy(line->data + line->length, text, length);
    line->length += length;
}

static void gw_access_log_add_format(gw_access_log_line_t *line, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void gw_access_log_add_format(gw_access_log_line_t *line, const char *format, ...) {
    size_t room = sizeof(line->data) - line->length;
    if (room == 0)
        return;
    va_list arguments;
    va_start(arguments, format);
    int written = vsnprintf(line->data + line->length, room, format, arguments);
    va_end(arguments);
    if (written > 0)
        line->length += (size_t)written < room ? (size_t)written : room - 1;
}

/* Adds "text" escaped and cut to limit bytes, or null for a NULL text. */
static void gw_access_log_add_string(gw_access_log_line_t *line, const char *text, size_t limit) {
    if (text == NULL) {
        gw_access_log_add(line, "null");
        return;
    }
    size_t room = sizeof(line->data) - line->length;
    /* The escaped text must leave room for its closing quote. */
    if (room < 2)
        return;
    if (limit > room - 2)
        limit = room - 2;
    size_t consumed;
    line->data[line->length++] = '"';
    line->length += json_escape_into(line->data + line->length, limit, text, strlen(text),
                                     &consumed);
    line->data[line->length++] = '"';
}

/* Writes the whole line; O_APPEND writes are complete in practice, the loop
 * only covers signals and a full disk or pipe that takes part of it. */
static void gw_access_log_write_line(gw_access_log_t *log, const char *data, size_t length) {
    while (length > 0) {
        ssize_t written = write(log->fd, data, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0) {
            if (!atomic_exchange(&log->write_failed, true))
                log_error("access_log: write failed: %s",
                          written < 0 ? strerror(errno) : "nothing written");
            return;
        }
        data += written;
        length -= (size_t)written;
    }
}

void gw_access_log_write(gw_access_log_t *log, const gw_access_entry_t *entry) {
    if (log == NULL || entry == NULL)
        return;
    gw_access_log_line_t line;
    line.length = 0;

    struct timespec now;
    struct tm calendar;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &calendar);
    gw_access_log_add_format(&line,
                             "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"client\":",
                             calendar.tm_year + 1900, calendar.tm_mon + 1, calendar.tm_mday,
                             calendar.tm_hour, calendar.tm_min, calendar.tm_sec,
                             now.tv_nsec / 1000000);
    gw_access_log_add_string(&line, entry->client, GW_ACCESS_LOG_CLIENT_LIMIT);
    gw_access_log_add(&line, ",\"sandbox\":");
    gw_access_log_add_string(&line, entry->sandbox_id, GW_ACCESS_LOG_SANDBOX_LIMIT);
    if (entry->port > 0)
        gw_access_log_add_format(&line, ",\"port\":%d", entry->port);
    else
        gw_access_log_add(&line, ",\"port\":null");
    gw_access_log_add(&line, ",\"method\":");
    gw_access_log_add_string(&line, entry->method, GW_ACCESS_LOG_METHOD_LIMIT);
    gw_access_log_add(&line, ",\"path\":");
    gw_access_log_add_string(&line, entry->path, GW_ACCESS_LOG_PATH_LIMIT);
    /* Milliseconds printed from integer microseconds: exact, and immune to
     * the locale's decimal separator. */
    gw_access_log_add_format(&line,
                             ",\"status\":%d,\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
                             ",\"duration_ms\":%" PRIu64 ".%03" PRIu64 ",\"protocol\":\"%s\"",
                             entry->status, entry->bytes_received, entry->bytes_sent,
                             entry->duration_us / 1000, entry->duration_us % 1000,
                             entry->protocol != NULL ? entry->protocol : "http/1.1");
    if (entry->held)
        gw_access_log_add_format(&line, ",\"resume_wait_ms\":%" PRIu64 ".%03" PRIu64,
                                 entry->held_us / 1000, entry->held_us % 1000);
    gw_access_log_add(&line, "}");
    if (line.length >= sizeof(line.data))
        line.length = sizeof(line.data) - 1;
    line.data[line.length++] = '\n';
    gw_access_log_write_line(log, line.data, line.length);
}

void gw_access_log_close(gw_access_log_t *log) {
    if (log == NULL)
        return;
    if (log->owns_fd)
        close(log->fd);
    free(log);
}
