/* Error log on stderr: leveled, one line per event, safe from any thread. */
#ifndef SGW_UTIL_LOG_H
#define SGW_UTIL_LOG_H

typedef enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
} log_level_t;

/* Sets the most verbose level printed (default info). */
void log_set_level(log_level_t level);

/* The current level (log_set_level's): read inline, so that a debug line off
 * costs a load and a branch on the data path. */
extern volatile log_level_t log_current_level;

/* Returns the current level, so callers can skip building costly messages. */
static inline log_level_t log_get_level(void) { return log_current_level; }

/* Parses "error", "warn", "info", "debug"; returns 0, or -1 if unknown. */
int log_level_parse(const char *name, log_level_t *level);

/* Prints "TIME LEVEL message\n" to stderr if level is enabled. */
void log_write(log_level_t level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_write(LOG_LEVEL_DEBUG, __VA_ARGS__);                                               \
    } while (0)

#endif
