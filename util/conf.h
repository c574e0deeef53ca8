/* The configuration engine of both binaries: a directive table read from a file into a struct. */
#ifndef SGW_UTIL_CONF_H
#define SGW_UTIL_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Limits of every configuration file. */
enum {
    CONF_LINE_LIMIT = 4096,        /* the longest line, in bytes, without its line ending */
    CONF_FILE_LIMIT = 1024 * 1024, /* a larger file is surely not a configuration */
    CONF_TOKEN_LIMIT = 32,         /* tokens kept per line: at most 31 arguments a directive */
    CONF_DIRECTIVE_LIMIT = 64,     /* directives in one table */
    CONF_ADDRESS_LIMIT = 64,       /* the longest ADDR:PORT, with its NUL */
};

/* Units of durations (milliseconds) and sizes (bytes), for the bounds of a table. */
#define CONF_SECOND ((uint64_t)1000)
#define CONF_MINUTE (60 * CONF_SECOND)
#define CONF_HOUR (60 * CONF_MINUTE)
#define CONF_KILOBYTE ((uint64_t)1024)
#define CONF_MEGABYTE (1024 * CONF_KILOBYTE)

/* Flags of a directive. */
enum {
    CONF_ONCE = 0,
    CONF_REPEATABLE = 1 << 0, /* may appear on several lines, each adding a value */
    CONF_REQUIRED = 1 << 1,   /* must appear at least once in the file */
};

/* A Redis server, as a redis_url names it. */
typedef struct conf_redis_target {
    char *host; /* NULL for a unix socket */
    int port;
    char *unix_path; /* NULL for TCP */
    int database;
} conf_redis_target_t;

typedef struct conf_parser conf_parser_t;
typedef struct conf_directive conf_directive_t;

/* Applies one line's arguments (the directive name excluded) to parser->target; returns 0, or -1
 * after conf_error. Arguments may be changed in place. */
typedef int conf_setter_t(conf_parser_t *parser, const conf_directive_t *directive,
                          char **arguments, size_t argument_count);

/* Checks what only the whole file can tell; returns 0, or -1 after conf_error. */
typedef int conf_finish_t(conf_parser_t *parser);

/* One row of a directive table. */
struct conf_directive {
    const char *name;
    size_t minimum_arguments;
    size_t maximum_arguments; /* at most CONF_TOKEN_LIMIT - 1 */
    conf_setter_t *set;
    size_t offset;    /* the target's field a generic setter writes */
    uint64_t minimum; /* bounds in the field's unit: milliseconds, bytes or a count */
    uint64_t maximum;
    unsigned flags;           /* CONF_REPEATABLE, CONF_REQUIRED */
    const char *default_text; /* the value before the file is read, as a file writes it; or NULL */
    size_t text_offset;       /* conf_set_redis_url: the char * field keeping the URL as written */
};

/* One kind of configuration file. */
typedef struct conf_syntax {
    const conf_directive_t *directives;
    size_t directive_count; /* at most CONF_DIRECTIVE_LIMIT */
    size_t path_offset;     /* the target's char * field that keeps the name of the file read */
    conf_finish_t *finish;  /* whole-file checks after the last line, or NULL */
} conf_syntax_t;

/* The reading of one file, or of the defaults, into a target. */
struct conf_parser {
    const conf_syntax_t *syntax;
    void *target;     /* the struct the directives fill */
    const char *name; /* FILE in messages */
    int line;         /* the line being read, from 1; 0 while defaults are applied */
    char *error;      /* where messages go; may be NULL */
    size_t error_size;
    int first_line[CONF_DIRECTIVE_LIMIT]; /* where each directive first appeared, or 0 */
};

/* Reading */

/* Runs each directive's setter on its default_text, as if a file said "name default_text"
 * (target zeroed beforehand); returns 0, or -1 with "built-in defaults: message" in error (which
 * may be NULL). The target must be freed either way. */
int conf_defaults(const conf_syntax_t *syntax, void *target, char *error, size_t error_size);

/* Reads length bytes of text (NULs refused with their line) into target, which conf_defaults
 * prepared, keeping name in the path field; returns 0, or -1 with "NAME:LINE: message" (or "NAME:
 * message") in error. On -1 target holds whatever was read and must still be freed. */
int conf_parse(const conf_syntax_t *syntax, void *target, const char *name, const char *text,
               size_t length, char *error, size_t error_size);

/* As conf_parse, on the file at path (at most CONF_FILE_LIMIT bytes), named as given. */
int conf_load(const conf_syntax_t *syntax, void *target, const char *path, char *error,
              size_t error_size);

/* For setters and finish hooks */

/* Writes "FILE:LINE: message" (or "FILE: message" while parser->line is 0); returns -1. */
int conf_error(conf_parser_t *parser, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* As conf_error, naming the given line. */
int conf_error_at(conf_parser_t *parser, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks that every CONF_REQUIRED directive appeared; returns 0, or -1 after conf_error. conf_parse
 * runs it after the finish hook, which may run it first when its own checks must follow it. */
int conf_check_required(conf_parser_t *parser);

/* The target's field at directive->offset. */
void *conf_field(conf_parser_t *parser, const conf_directive_t *directive);

/* Replaces *field with a copy of text, freeing the old one; returns 0, or -1 after conf_error. */
int conf_replace_string(conf_parser_t *parser, char **field, const char *text);

/* Reads a plain decimal count within the directive's bounds; returns 0, or -1 after conf_error. */
int conf_read_count(conf_parser_t *parser, const conf_directive_t *directive, const char *text,
                    uint64_t *count);

/* Generic setters: one argument, written to the field at directive->offset, within bounds. */
conf_setter_t conf_set_string;    /* char *, a copy */
conf_setter_t conf_set_duration;  /* uint64_t milliseconds */
conf_setter_t conf_set_size;      /* size_t bytes */
conf_setter_t conf_set_count;     /* long */
conf_setter_t conf_set_switch;    /* bool: "on" or "off" */
conf_setter_t conf_set_log_level; /* log_level_t */
conf_setter_t conf_set_redis_url; /* conf_redis_target_t, and the URL at directive->text_offset */

/* Values */

/* Parses "500ms", "2s", "5m", "24h" (a bare number is seconds); returns 0 or -1. */
int conf_parse_duration(const char *text, uint64_t *milliseconds);

/* Parses "32k", "1m", "4096" (bytes); returns 0 or -1. */
int conf_parse_size(const char *text, size_t *bytes);

/* Why text is not "ADDR:PORT" ("[::]:443" for IPv6, "*:80" for all IPv4), or NULL when it is one
 * (then *address is filled). */
const char *conf_address_problem(const char *text, struct sockaddr_storage *address,
                                 socklen_t *address_length);

/* As conf_address_problem; returns 0 or -1. */
int conf_parse_address(const char *text, struct sockaddr_storage *address,
                       socklen_t *address_length);

/* Parses "redis://HOST[:PORT][/DB]" (HOST a name, IPv4 or [IPv6]; defaults 6379 and 0) or
 * "unix:///PATH[?db=N]" into target; returns 0, or -1 with *reason saying why. The target's
 * strings are the caller's: free them with conf_redis_target_free. */
int conf_parse_redis_url(const char *text, conf_redis_target_t *target, const char **reason);

/* Frees the strings of a target that conf_parse_redis_url filled, and zeroes it. */
void conf_redis_target_free(conf_redis_target_t *target);

#endif
