/* Access log: one JSON line per request, written with one append so workers never interleave. */
#ifndef SGW_GATEWAY_ACCESS_LOG_H
#define SGW_GATEWAY_ACCESS_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct gw_access_entry {
    const char *client;      /* client address, "1.2.3.4" or "::1" */
    const char *sandbox_id;  /* NULL when not routed */
    int port;                /* 0 when not routed */
    const char *method;
    const char *path;        /* request target as sent, may be NULL */
    int status;
    uint64_t bytes_received; /* from the client: head and body */
    uint64_t bytes_sent;     /* to the client: head and body */
    uint64_t duration_us;
    const char *protocol; /* "http/1.1" or "h2" */
    bool held;            /* it waited for its sandbox to resume ... */
    uint64_t held_us;     /* ... this long */
} gw_access_entry_t;

typedef struct gw_access_log gw_access_log_t;

/* Opens "stderr" or a file path (appended, created 0644); returns NULL and
 * logs when it cannot be opened. */
gw_access_log_t *gw_access_log_open(const char *target);

/* Writes {"time":"<RFC 3339 UTC, ms>","client":...,"sandbox":...,"port":...,
 * "method":...,"path":...,"status":...,"bytes_in":...,"bytes_out":...,
 * "duration_ms":<float>,"protocol":...} and a newline, with
 * "resume_wait_ms":<float> before the brace when the request waited for a
 * resume; strings JSON-escaped, control bytes as \u00XX, paths cut at 2 KiB.
 * Thread-safe. */
void gw_access_log_write(gw_access_log_t *log, const gw_access_entry_t *entry);

/* Closes (stderr is left open) and frees; NULL is allowed. */
void gw_access_log_close(gw_access_log_t *log);

#endif
