/* egress.conf: one table of directives (arguments, setter, bounds) read into egress_config_t. */
#include "egress/config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

/* As gateway.conf: a longer line is an error, a larger file surely not a configuration. */
#define EGRESS_CONFIG_FILE_LIMIT (1024 * 1024)
#define EGRESS_CONFIG_TOKEN_LIMIT 4
#define EGRESS_CONFIG_DEFAULT_REDIS_URL "redis://127.0.0.1:6379/0"

enum {
    EGRESS_CONFIG_ONCE = 0,
    EGRESS_CONFIG_REQUIRED = 1 << 0, /* must appear in the file */
};

typedef struct egress_config_parser egress_config_parser_t;
typedef struct egress_config_directive egress_config_directive_t;

/* Applies one line's single argument; returns 0, or -1 after egress_config_error. */
typedef int egress_config_setter_t(egress_config_parser_t *parser,
                                   const egress_config_directive_t *directive,
                                   const char *argument);

struct egress_config_directive {
    const char *name;
    egress_config_setter_t *set;
    size_t offset;    /* the egress_config_t field a generic setter writes */
    uint64_t minimum; /* bounds of a duration, in milliseconds */
    uint64_t maximum;
    unsigned flags; /* EGRESS_CONFIG_REQUIRED */
};

static egress_config_setter_t egress_config_set_node_id;
static egress_config_setter_t egress_config_set_redis_url;
static egress_config_setter_t egress_config_set_string;
static egress_config_setter_t egress_config_set_duration;
static egress_config_setter_t egress_config_set_log_level;

// clang-format off
#define EGRESS_CONFIG_FIELD(field) offsetof(egress_config_t, field)
/* Every directive of DESIGN.md's egress section; defaults are set by egress_config_defaults and
 * documented in egress.conf. Every directive takes exactly one argument. */
static const egress_config_directive_t egress_config_directives[] = {
    /* name                     setter                       field, bounds, flags */
    {"node_id",                 egress_config_set_node_id,
     EGRESS_CONFIG_FIELD(node_id), 0, 0, EGRESS_CONFIG_REQUIRED},
    {"redis_url",               egress_config_set_redis_url,
     0, 0, 0, EGRESS_CONFIG_ONCE},
    {"redis_key_prefix",        egress_config_set_string,
     EGRESS_CONFIG_FIELD(redis_key_prefix), 0, 0, EGRESS_CONFIG_ONCE},
    /* Below 100 ms a resync would compete with the changes it backs up; a day is plenty. */
    {"policy_resync_interval",  egress_config_set_duration,
     EGRESS_CONFIG_FIELD(resync_interval_ms), 100, 24 * 3600 * 1000, EGRESS_CONFIG_ONCE},
    {"log_level",               egress_config_set_log_level,
     0, 0, 0, EGRESS_CONFIG_ONCE},
};
// clang-format on

#define EGRESS_CONFIG_DIRECTIVE_COUNT                                                              \
    (sizeof(egress_config_directives) / sizeof(egress_config_directives[0]))

struct egress_config_parser {
    egress_config_t *config;
    const char *name; /* FILE in messages */
    int line;
    char *error;
    size_t error_size;
    int first_line[EGRESS_CONFIG_DIRECTIVE_COUNT]; /* where each directive appeared, or 0 */
};

__attribute__((format(printf, 2, 3))) static int egress_config_error(egress_config_parser_t *parser,
                                                                     const char *format, ...) {
    if (parser->error == NULL || parser->error_size == 0)
        return -1;
    int prefix = snprintf(parser->error, parser->error_size, "%s:%d: ", parser->name,
                          parser->line);
    if (prefix < 0 || (size_t)prefix >= parser->error_size)
        return -1;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(parser->error + prefix, parser->error_size - (size_t)prefix, format, arguments);
    va_end(arguments);
    return -1;
}

/* Setters */

static int egress_config_replace(egress_config_parser_t *parser, char **field,
                                 const char *argument) {
    char *copy = strdup(argument);
    if (copy == NULL)
        return egress_config_error(parser, "out of memory");
    free(*field);
    *field = copy;
    return 0;
}

static int egress_config_set_string(egress_config_parser_t *parser,
                                    const egress_config_directive_t *directive,
                                    const char *argument) {
    return egress_config_replace(
        parser, (char **)(void *)((char *)parser->config + directive->offset), argument);
}

/* The node's ID becomes part of a Redis key and of a subscription pattern: printable, no
 * spaces (the tokenizer already splits on them). */
static int egress_config_set_node_id(egress_config_parser_t *parser,
                                     const egress_config_directive_t *directive,
                                     const char *argument) {
    if (strlen(argument) > 255)
        return egress_config_error(parser, "\"%s\" is longer than 255 bytes", directive->name);
    for (const char *c = argument; *c != '\0'; c++) {
        if ((unsigned char)*c >= 0x7f)
            return egress_config_error(parser, "invalid %s \"%s\": printable ASCII only",
                                       directive->name, argument);
    }
    return egress_config_set_string(parser, directive, argument);
}

static int egress_config_set_redis_url(egress_config_parser_t *parser,
                                       const egress_config_directive_t *directive,
                                       const char *argument) {
    gw_redis_target_t target;
    const char *reason = "invalid";
    if (gw_config_parse_redis_url(argument, &target, &reason) != 0)
        return egress_config_error(parser, "invalid URL \"%s\" for \"%s\": %s", argument,
                                   directive->name, reason);
    if (egress_config_replace(parser, &parser->config->redis_url, argument) != 0) {
        gw_config_free_redis_target(&target);
        return -1;
    }
    gw_config_free_redis_target(&parser->config->redis);
    parser->config->redis = target;
    return 0;
}

static int egress_config_set_duration(egress_config_parser_t *parser,
                                      const egress_config_directive_t *directive,
                                      const char *argument) {
    uint64_t milliseconds;
    if (gw_config_parse_duration(argument, &milliseconds) != 0)
        return egress_config_error(parser, "invalid duration \"%s\" for \"%s\"", argument,
                                   directive->name);
    if (milliseconds < directive->minimum || milliseconds > directive->maximum)
        return egress_config_error(parser,
                                   "\"%s\" is out of range for \"%s\" (%" PRIu64 "ms to %" PRIu64
                                   "h)",
                                   argument, directive->name, directive->minimum,
                                   directive->maximum / (3600 * 1000));
    *(uint64_t *)(void *)((char *)parser->config + directive->offset) = milliseconds;
    return 0;
}

static int egress_config_set_log_level(egress_config_parser_t *parser,
                                       const egress_config_directive_t *directive,
                                       const char *argument) {
    if (log_level_parse(argument, &parser->config->log_level) != 0)
        return egress_config_error(parser,
                                   "invalid level \"%s\" for \"%s\" (error, warn, info or debug)",
                                   argument, directive->name);
    return 0;
}

/* The file */

/* Splits line (NUL-terminated) into tokens (gw_config_split_line, as gateway.conf) and applies
 * the directive; returns 0 or -1. */
static int egress_config_parse_line(egress_config_parser_t *parser, char *line) {
    char *tokens[EGRESS_CONFIG_TOKEN_LIMIT];
    size_t token_count;
    int control = gw_config_split_line(line, tokens, EGRESS_CONFIG_TOKEN_LIMIT, &token_count);
    if (control != 0)
        return egress_config_error(parser, "invalid control character 0x%02x", control);
    if (token_count == 0)
        return 0;

    const egress_config_directive_t *directive = NULL;
    for (size_t i = 0; i < EGRESS_CONFIG_DIRECTIVE_COUNT; i++) {
        if (strcmp(egress_config_directives[i].name, tokens[0]) == 0)
            directive = &egress_config_directives[i];
    }
    if (directive == NULL)
        return egress_config_error(parser, "unknown directive \"%s\"", tokens[0]);
    if (token_count < 2)
        return egress_config_error(parser, "missing argument for \"%s\"", directive->name);
    if (token_count > 2)
        return egress_config_error(parser, "too many arguments for \"%s\"", directive->name);
    size_t index = (size_t)(directive - egress_config_directives);
    if (parser->first_line[index] != 0)
        return egress_config_error(parser, "duplicate \"%s\" (first at line %d)", directive->name,
                                   parser->first_line[index]);
    parser->first_line[index] = parser->line;
    return directive->set(parser, directive, tokens[1]);
}

static int egress_config_parse_line_callback(void *arg, char *line) {
    return egress_config_parse_line(arg, line);
}

static int egress_config_parse_text(egress_config_t *config, const char *name, const char *text,
                                    size_t length, char *error, size_t error_size) {
    egress_config_parser_t parser = {
        .config = config, .name = name, .error = error, .error_size = error_size};
    if (error != NULL && error_size > 0)
        error[0] = '\0';
    if (egress_config_replace(&parser, &config->path, name) != 0)
        return -1;

    switch (gw_config_split_lines(text, length, &parser.line, egress_config_parse_line_callback,
                                  &parser)) {
    case GW_CONFIG_LINES_OK:
        break;
    case GW_CONFIG_LINES_FAILED:
        return -1;
    case GW_CONFIG_LINES_TOO_LONG:
        return egress_config_error(&parser, "line too long (more than %d bytes)",
                                   GW_CONFIG_LINE_LIMIT);
    case GW_CONFIG_LINES_NUL:
        return egress_config_error(&parser, "invalid control character 0x00");
    }
    if (parser.line == 0)
        parser.line = 1;
    for (size_t i = 0; i < EGRESS_CONFIG_DIRECTIVE_COUNT; i++) {
        if ((egress_config_directives[i].flags & EGRESS_CONFIG_REQUIRED) &&
            parser.first_line[i] == 0)
            return egress_config_error(&parser, "missing required directive \"%s\"",
                                       egress_config_directives[i].name);
    }
    return 0;
}

/* Public entry points */

int egress_config_defaults(egress_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->resync_interval_ms = 10 * 1000;
    config->log_level = LOG_LEVEL_INFO;
    config->redis_url = strdup(EGRESS_CONFIG_DEFAULT_REDIS_URL);
    config->redis_key_prefix = strdup("sandbox:catalog:");
    if (config->redis_url == NULL || config->redis_key_prefix == NULL)
        return -1;
    const char *reason;
    return gw_config_parse_redis_url(EGRESS_CONFIG_DEFAULT_REDIS_URL, &config->redis, &reason);
}

int egress_config_parse(egress_config_t *config, const char *name, const char *text, char *error,
                        size_t error_size) {
    return egress_config_parse_text(config, name, text, strlen(text), error, error_size);
}

int egress_config_load(egress_config_t *config, const char *path, char *error,
                       size_t error_size) {
    char *text = NULL;
    size_t length = 0;
    int result = -1;
    int descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (descriptor < 0) {
        error_format(error, error_size, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    /* One byte past the limit tells "too large" from "exactly the limit". */
    text = malloc(EGRESS_CONFIG_FILE_LIMIT + 1);
    if (text == NULL) {
        error_format(error, error_size, "%s: out of memory", path);
        goto fail;
    }
    for (;;) {
        ssize_t got = read(descriptor, text + length, EGRESS_CONFIG_FILE_LIMIT + 1 - length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            error_format(error, error_size, "%s: cannot read: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        length += (size_t)got;
        if (length > EGRESS_CONFIG_FILE_LIMIT) {
            error_format(error, error_size, "%s: too large (more than %d bytes)", path,
                         EGRESS_CONFIG_FILE_LIMIT);
            goto fail;
        }
    }
    result = egress_config_parse_text(config, path, text, length, error, error_size);
fail:
    if (descriptor >= 0)
        close(descriptor);
    free(text);
    return result;
}

void egress_config_free(egress_config_t *config) {
    free(config->path);
    free(config->node_id);
    free(config->redis_url);
    gw_config_free_redis_target(&config->redis);
    free(config->redis_key_prefix);
    memset(config, 0, sizeof(*config));
}
