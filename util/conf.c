/* The configuration engine of both binaries: a directive table read from a file into a struct. */
#include "util/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/error.h"
#include "util/log.h"

/* What errors about the defaults name instead of a file. */
#define CONF_DEFAULTS_NAME "built-in defaults"

/* The one reason conf_parse_redis_url gives when allocation fails, told apart by address. */
static const char conf_out_of_memory[] = "out of memory";

/* Errors */

__attribute__((format(printf, 3, 0))) static void
conf_write_error(conf_parser_t *parser, int line, const char *format, va_list arguments) {
    if (parser->error == NULL || parser->error_size == 0)
        return;
    int prefix = line != 0
                     ? snprintf(parser->error, parser->error_size, "%s:%d: ", parser->name, line)
                     : snprintf(parser->error, parser->error_size, "%s: ", parser->name);
    if (prefix < 0 || (size_t)prefix >= parser->error_size)
        return;
    error_format_list(parser->error + prefix, parser->error_size - (size_t)prefix, format,
                      arguments);
}

int conf_error_at(conf_parser_t *parser, int line, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    conf_write_error(parser, line, format, arguments);
    va_end(arguments);
    return -1;
}

int conf_error(conf_parser_t *parser, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    conf_write_error(parser, parser->line, format, arguments);
    va_end(arguments);
    return -1;
}

/* Numbers */

/* Reads the decimal digits of text[0..length) (at least one, nothing else) into *value; returns 0,
 * or -1 on anything else or overflow. */
static int conf_parse_decimal(const char *text, size_t length, uint64_t *value) {
    if (length == 0)
        return -1;
    uint64_t result = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        unsigned digit = (unsigned)(text[i] - '0');
        if (result > (UINT64_MAX - digit) / 10)
            return -1;
        result = result * 10 + digit;
    }
    *value = result;
    return 0;
}

/* Reads the leading digits of text into *value and points *suffix at what follows them. */
static int conf_parse_leading_decimal(const char *text, uint64_t *value, const char **suffix) {
    size_t length = strspn(text, "0123456789");
    if (conf_parse_decimal(text, length, value) != 0)
        return -1;
    *suffix = text + length;
    return 0;
}

static int conf_parse_port(const char *text, size_t length, int *port) {
    uint64_t value;
    if (conf_parse_decimal(text, length, &value) != 0 || value < 1 || value > 65535)
        return -1;
    *port = (int)value;
    return 0;
}

static int conf_parse_database(const char *text, size_t length, int *database) {
    uint64_t value;
    if (conf_parse_decimal(text, length, &value) != 0 || value > INT_MAX)
        return -1;
    *database = (int)value;
    return 0;
}

int conf_parse_duration(const char *text, uint64_t *milliseconds) {
    uint64_t value;
    const char *suffix;
    if (conf_parse_leading_decimal(text, &value, &suffix) != 0)
        return -1;
    uint64_t unit;
    if (strcmp(suffix, "") == 0 || strcmp(suffix, "s") == 0)
        unit = CONF_SECOND;
    else if (strcmp(suffix, "ms") == 0)
        unit = 1;
    else if (strcmp(suffix, "m") == 0)
        unit = CONF_MINUTE;
    else if (strcmp(suffix, "h") == 0)
        unit = CONF_HOUR;
    else
        return -1;
    if (value > UINT64_MAX / unit)
        return -1;
    *milliseconds = value * unit;
    return 0;
}

int conf_parse_size(const char *text, size_t *bytes) {
    uint64_t value;
    const char *suffix;
    if (conf_parse_leading_decimal(text, &value, &suffix) != 0)
        return -1;
    uint64_t unit;
    if (strcmp(suffix, "") == 0)
        unit = 1;
    else if (strcmp(suffix, "k") == 0 || strcmp(suffix, "K") == 0)
        unit = CONF_KILOBYTE;
    else if (strcmp(suffix, "m") == 0 || strcmp(suffix, "M") == 0)
        unit = CONF_MEGABYTE;
    else
        return -1;
    if (value > SIZE_MAX / unit)
        return -1;
    *bytes = (size_t)(value * unit);
    return 0;
}

/* Addresses */

/* Splits "[IPv6]:PORT" or "IPv4:PORT" into its host, port text and family; returns why not. */
static const char *conf_address_split(const char *text, const char **host, size_t *host_length,
                                      const char **port_text, int *family) {
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL)
            return "missing \"]\" after the IPv6 address";
        if (close[1] != ':')
            return "missing \":PORT\"";
        *host = text + 1;
        *host_length = (size_t)(close - *host);
        *port_text = close + 2;
        *family = AF_INET6;
        return NULL;
    }
    const char *colon = strrchr(text, ':');
    if (colon == NULL)
        return "missing \":PORT\"";
    if (memchr(text, ':', (size_t)(colon - text)) != NULL)
        return "an IPv6 address needs brackets, as in [::1]:8080";
    *host = text;
    *host_length = (size_t)(colon - text);
    *port_text = colon + 1;
    *family = AF_INET;
    return NULL;
}

const char *conf_address_problem(const char *text, struct sockaddr_storage *address,
                                 socklen_t *address_length) {
    /* The longest literal, "[ffff:...:255.255.255.255]:65535", fits. */
    char host[CONF_ADDRESS_LIMIT];
    if (strlen(text) >= sizeof(host))
        return "too long";
    const char *host_start;
    size_t host_length;
    const char *port_text;
    int family;
    const char *problem = conf_address_split(text, &host_start, &host_length, &port_text, &family);
    if (problem != NULL)
        return problem;
    int port;
    if (conf_parse_port(port_text, strlen(port_text), &port) != 0)
        return "the port must be 1 to 65535";
    memcpy(host, host_start, host_length);
    host[host_length] = '\0';

    memset(address, 0, sizeof(*address));
    if (family == AF_INET6) {
        struct sockaddr_in6 *ipv6 = (struct sockaddr_in6 *)address;
        if (inet_pton(AF_INET6, host, &ipv6->sin6_addr) != 1)
            return "not an IPv6 address";
        ipv6->sin6_family = AF_INET6;
        ipv6->sin6_port = htons((uint16_t)port);
        *address_length = sizeof(*ipv6);
        return NULL;
    }
    struct sockaddr_in *ipv4 = (struct sockaddr_in *)address;
    if (strcmp(host, "*") == 0)
        ipv4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &ipv4->sin_addr) != 1)
        return "not an IP address (write IPv4, [IPv6] or *)";
    ipv4->sin_family = AF_INET;
    ipv4->sin_port = htons((uint16_t)port);
    *address_length = sizeof(*ipv4);
    return NULL;
}

int conf_parse_address(const char *text, struct sockaddr_storage *address,
                       socklen_t *address_length) {
    return conf_address_problem(text, address, address_length) == NULL ? 0 : -1;
}

/* Redis URLs */

/* Why text[0..length) is not a Redis host name or IPv4 address, or NULL. */
static const char *conf_redis_host_problem(const char *text, size_t length) {
    if (length == 0)
        return "missing host";
    if (length > 253)
        return "host longer than 253 bytes";
    bool numeric = true;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool digit = c >= '0' && c <= '9';
        if (!letter && !digit && c != '.' && c != '-' && c != '_')
            return "invalid host";
        if (letter || c == '-' || c == '_')
            numeric = false;
    }
    if (numeric) {
        char literal[INET_ADDRSTRLEN];
        struct in_addr ignored;
        if (length >= sizeof(literal))
            return "invalid IPv4 address";
        memcpy(literal, text, length);
        literal[length] = '\0';
        if (inet_pton(AF_INET, literal, &ignored) != 1)
            return "invalid IPv4 address";
    }
    return NULL;
}

/* A Redis URL taken apart; host and path point into the text. */
typedef struct conf_redis_url {
    const char *host; /* without brackets; NULL for a unix socket */
    size_t host_length;
    const char *path; /* NULL for TCP */
    size_t path_length;
    int port;
    int database;
} conf_redis_url_t;

static const char *conf_redis_unix_split(const char *path, conf_redis_url_t *url) {
    if (path[0] != '/')
        return "the path must be absolute, as in unix:///run/redis/redis.sock";
    size_t length = strcspn(path, "?");
    if (length < 2)
        return "missing socket path";
    if (length >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "socket path too long for a unix socket";
    url->path = path;
    url->path_length = length;
    url->port = 0;
    const char *query = path + length;
    if (*query == '\0')
        return NULL;
    query++;
    if (strncmp(query, "db=", 3) != 0)
        return "the only parameter is db=N";
    if (conf_parse_database(query + 3, strlen(query + 3), &url->database) != 0)
        return "invalid database number";
    return NULL;
}

/* Reads the host of a redis:// URL at *cursor, moving it past the host; returns why not. */
static const char *conf_redis_host_split(const char **cursor, conf_redis_url_t *url) {
    if (**cursor != '[') {
        url->host = *cursor;
        url->host_length = strcspn(*cursor, ":/");
        *cursor += url->host_length;
        return conf_redis_host_problem(url->host, url->host_length);
    }
    const char *close = strchr(*cursor, ']');
    if (close == NULL)
        return "missing \"]\" after the IPv6 address";
    url->host = *cursor + 1;
    url->host_length = (size_t)(close - url->host);
    char literal[INET6_ADDRSTRLEN];
    struct in6_addr ignored;
    if (url->host_length == 0 || url->host_length >= sizeof(literal))
        return "invalid IPv6 address";
    memcpy(literal, url->host, url->host_length);
    literal[url->host_length] = '\0';
    if (inet_pton(AF_INET6, literal, &ignored) != 1)
        return "invalid IPv6 address";
    *cursor = close + 1;
    return NULL;
}

/* Why text is not "redis://HOST[:PORT][/DB]" or "unix:///PATH[?db=N]", or NULL. */
static const char *conf_redis_url_split(const char *text, conf_redis_url_t *url) {
    memset(url, 0, sizeof(*url));
    url->port = 6379;
    if (strncmp(text, "unix://", 7) == 0)
        return conf_redis_unix_split(text + 7, url);
    if (strncmp(text, "redis://", 8) != 0)
        return "expected redis://HOST:PORT/DB or unix:///PATH";
    const char *cursor = text + 8;
    if (strchr(cursor, '@') != NULL)
        return "a user or password is not supported";
    const char *problem = conf_redis_host_split(&cursor, url);
    if (problem != NULL)
        return problem;
    if (*cursor == ':') {
        cursor++;
        size_t length = strcspn(cursor, "/");
        if (conf_parse_port(cursor, length, &url->port) != 0)
            return "the port must be 1 to 65535";
        cursor += length;
    }
    if (*cursor == '/') {
        cursor++;
        /* "redis://host/" is database 0, as in redis-cli -u. */
        if (*cursor != '\0' && conf_parse_database(cursor, strlen(cursor), &url->database) != 0)
            return "invalid database number";
        return NULL;
    }
    if (*cursor != '\0')
        return "expected \":PORT\" or \"/DB\" after the host";
    return NULL;
}

int conf_parse_redis_url(const char *text, conf_redis_target_t *target, const char **reason) {
    conf_redis_url_t url;
    memset(target, 0, sizeof(*target));
    const char *problem = conf_redis_url_split(text, &url);
    if (problem != NULL)
        goto fail;
    problem = conf_out_of_memory;
    if (url.host != NULL) {
        target->host = strndup(url.host, url.host_length);
        if (target->host == NULL)
            goto fail;
    } else {
        target->unix_path = strndup(url.path, url.path_length);
        if (target->unix_path == NULL)
            goto fail;
    }
    target->port = url.port;
    target->database = url.database;
    return 0;
fail:
    if (reason != NULL)
        *reason = problem;
    return -1;
}

void conf_redis_target_free(conf_redis_target_t *target) {
    free(target->host);
    free(target->unix_path);
    memset(target, 0, sizeof(*target));
}

/* Bounds */

/* Writes a duration in the largest unit that states it exactly, in the file's syntax. */
static void conf_format_duration(uint64_t milliseconds, char *text, size_t size) {
    if (milliseconds == 0)
        snprintf(text, size, "0");
    else if (milliseconds % CONF_HOUR == 0)
        snprintf(text, size, "%" PRIu64 "h", milliseconds / CONF_HOUR);
    else if (milliseconds % CONF_MINUTE == 0)
        snprintf(text, size, "%" PRIu64 "m", milliseconds / CONF_MINUTE);
    else if (milliseconds % CONF_SECOND == 0)
        snprintf(text, size, "%" PRIu64 "s", milliseconds / CONF_SECOND);
    else
        snprintf(text, size, "%" PRIu64 "ms", milliseconds);
}

static void conf_format_size(uint64_t bytes, char *text, size_t size) {
    if (bytes != 0 && bytes % CONF_MEGABYTE == 0)
        snprintf(text, size, "%" PRIu64 "m", bytes / CONF_MEGABYTE);
    else if (bytes != 0 && bytes % CONF_KILOBYTE == 0)
        snprintf(text, size, "%" PRIu64 "k", bytes / CONF_KILOBYTE);
    else
        snprintf(text, size, "%" PRIu64, bytes);
}

static void conf_format_count(uint64_t count, char *text, size_t size) {
    snprintf(text, size, "%" PRIu64, count);
}

/* Checks value against the directive's bounds; returns 0, or -1 after an error that shows the
 * bounds with format. */
static int conf_check_bounds(conf_parser_t *parser, const conf_directive_t *directive,
                             const char *text, uint64_t value,
                             void (*format)(uint64_t, char *, size_t)) {
    if (value >= directive->minimum && value <= directive->maximum)
        return 0;
    char minimum[32];
    char maximum[32];
    format(directive->minimum, minimum, sizeof(minimum));
    format(directive->maximum, maximum, sizeof(maximum));
    return conf_error(parser, "\"%s\" is out of range for \"%s\" (%s to %s)", text, directive->name,
                      minimum, maximum);
}

/* Generic setters */

void *conf_field(conf_parser_t *parser, const conf_directive_t *directive) {
    return (char *)parser->target + directive->offset;
}

int conf_replace_string(conf_parser_t *parser, char **field, const char *text) {
    char *copy = strdup(text);
    if (copy == NULL)
        return conf_error(parser, "out of memory");
    free(*field);
    *field = copy;
    return 0;
}

int conf_read_count(conf_parser_t *parser, const conf_directive_t *directive, const char *text,
                    uint64_t *count) {
    if (conf_parse_decimal(text, strlen(text), count) != 0)
        return conf_error(parser, "invalid number \"%s\" for \"%s\"", text, directive->name);
    return conf_check_bounds(parser, directive, text, *count, conf_format_count);
}

int conf_set_string(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                    size_t argument_count) {
    return conf_replace_string(parser, conf_field(parser, directive), arguments[0]);
}

int conf_set_count(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                   size_t argument_count) {
    uint64_t count = 0;
    if (conf_read_count(parser, directive, arguments[0], &count) != 0)
        return -1;
    *(long *)conf_field(parser, directive) = (long)count;
    return 0;
}

int conf_set_switch(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                    size_t argument_count) {
    (void)argument_count;
    bool on = strcmp(arguments[0], "on") == 0;
    if (!on && strcmp(arguments[0], "off") != 0)
        return conf_error(parser, "\"%s\" takes on or off, not \"%s\"", directive->name,
                          arguments[0]);
    *(bool *)conf_field(parser, directive) = on;
    return 0;
}

int conf_set_duration(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                      size_t argument_count) {
    uint64_t milliseconds;
    if (conf_parse_duration(arguments[0], &milliseconds) != 0)
        return conf_error(parser, "invalid duration \"%s\" for \"%s\"", arguments[0],
                          directive->name);
    if (conf_check_bounds(parser, directive, arguments[0], milliseconds, conf_format_duration) != 0)
        return -1;
    *(uint64_t *)conf_field(parser, directive) = milliseconds;
    return 0;
}

int conf_set_size(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                  size_t argument_count) {
    size_t bytes;
    if (conf_parse_size(arguments[0], &bytes) != 0)
        return conf_error(parser, "invalid size \"%s\" for \"%s\"", arguments[0], directive->name);
    if (conf_check_bounds(parser, directive, arguments[0], bytes, conf_format_size) != 0)
        return -1;
    *(size_t *)conf_field(parser, directive) = bytes;
    return 0;
}

int conf_set_log_level(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                       size_t argument_count) {
    if (log_level_parse(arguments[0], conf_field(parser, directive)) != 0)
        return conf_error(parser, "invalid level \"%s\" for \"%s\" (error, warn, info or debug)",
                          arguments[0], directive->name);
    return 0;
}

int conf_set_redis_url(conf_parser_t *parser, const conf_directive_t *directive, char **arguments,
                       size_t argument_count) {
    conf_redis_target_t target;
    const char *reason;
    if (conf_parse_redis_url(arguments[0], &target, &reason) != 0) {
        if (reason == conf_out_of_memory)
            return conf_error(parser, "out of memory");
        return conf_error(parser, "invalid URL \"%s\" for \"%s\": %s", arguments[0],
                          directive->name, reason);
    }
    char **url = (char **)(void *)((char *)parser->target + directive->text_offset);
    if (conf_replace_string(parser, url, arguments[0]) != 0) {
        conf_redis_target_free(&target);
        return -1;
    }
    conf_redis_target_t *field = conf_field(parser, directive);
    conf_redis_target_free(field);
    *field = target;
    return 0;
}

/* Lines */

/* Splits line (NUL-terminated, no line ending) in place into tokens separated by spaces and tabs,
 * a "#" at the start of a token ending the line; keeps the first limit in tokens and sets *count
 * to how many there are (possibly more than limit). Returns 0, or the first control byte found
 * (the line is then invalid). */
static int conf_split_line(char *line, char **tokens, size_t limit, size_t *count) {
    *count = 0;
    char *cursor = line;
    for (;;) {
        while (*cursor == ' ' || *cursor == '\t')
            cursor++;
        if (*cursor == '\0' || *cursor == '#')
            return 0;
        char *token = cursor;
        while (*cursor != '\0' && *cursor != ' ' && *cursor != '\t') {
            unsigned char c = (unsigned char)*cursor;
            if (c < 0x20 || c == 0x7f)
                return c;
            cursor++;
        }
        if (*cursor != '\0')
            *cursor++ = '\0';
        if (*count < limit)
            tokens[*count] = token;
        (*count)++;
    }
}

static const conf_directive_t *conf_find_directive(const conf_syntax_t *syntax, const char *name) {
    for (size_t i = 0; i < syntax->directive_count; i++) {
        if (strcmp(syntax->directives[i].name, name) == 0)
            return &syntax->directives[i];
    }
    return NULL;
}

static int conf_check_argument_count(conf_parser_t *parser, const conf_directive_t *directive,
                                     size_t argument_count) {
    if (argument_count < directive->minimum_arguments)
        return conf_error(parser, "missing argument for \"%s\"", directive->name);
    if (argument_count > directive->maximum_arguments)
        return conf_error(parser, "too many arguments for \"%s\"", directive->name);
    return 0;
}

/* Splits line (NUL-terminated, no line ending) into tokens and applies the directive; returns 0
 * or -1. */
static int conf_parse_line(conf_parser_t *parser, char *line) {
    char *tokens[CONF_TOKEN_LIMIT];
    size_t token_count;
    int control = conf_split_line(line, tokens, CONF_TOKEN_LIMIT, &token_count);
    if (control != 0)
        return conf_error(parser, "invalid control character 0x%02x", control);
    if (token_count == 0)
        return 0;

    const conf_directive_t *directive = conf_find_directive(parser->syntax, tokens[0]);
    if (directive == NULL)
        return conf_error(parser, "unknown directive \"%s\"", tokens[0]);
    size_t argument_count = token_count - 1;
    if (conf_check_argument_count(parser, directive, argument_count) != 0)
        return -1;
    size_t index = (size_t)(directive - parser->syntax->directives);
    if (parser->first_line[index] != 0 && !(directive->flags & CONF_REPEATABLE))
        return conf_error(parser, "duplicate \"%s\" (first at line %d)", directive->name,
                          parser->first_line[index]);
    if (parser->first_line[index] == 0)
        parser->first_line[index] = parser->line;
    return directive->set(parser, directive, tokens + 1, argument_count);
}

/* Applies each line of text (LF or CRLF ends) in turn; stops at the first error. */
static int conf_parse_lines(conf_parser_t *parser, const char *text, size_t length) {
    size_t position = 0;
    while (position < length) {
        const char *start = text + position;
        const char *newline = memchr(start, '\n', length - position);
        size_t line_length = newline != NULL ? (size_t)(newline - start) : length - position;
        position += line_length + (newline != NULL ? 1 : 0);
        parser->line++;
        if (line_length > 0 && start[line_length - 1] == '\r')
            line_length--;
        /* A longer line is an error rather than silently cut; any sane directive fits. */
        if (line_length > CONF_LINE_LIMIT)
            return conf_error(parser, "line too long (more than %d bytes)", CONF_LINE_LIMIT);
        /* The tokenizer works on C strings: a NUL byte would hide the rest of the line. */
        if (memchr(start, '\0', line_length) != NULL)
            return conf_error(parser, "invalid control character 0x00");
        char line[CONF_LINE_LIMIT + 1];
        memcpy(line, start, line_length);
        line[line_length] = '\0';
        if (conf_parse_line(parser, line) != 0)
            return -1;
    }
    return 0;
}

int conf_check_required(conf_parser_t *parser) {
    const conf_syntax_t *syntax = parser->syntax;
    for (size_t i = 0; i < syntax->directive_count; i++) {
        if ((syntax->directives[i].flags & CONF_REQUIRED) && parser->first_line[i] == 0)
            return conf_error(parser, "missing required directive \"%s\"",
                              syntax->directives[i].name);
    }
    return 0;
}

/* Entry points */

static void conf_parser_init(conf_parser_t *parser, const conf_syntax_t *syntax, void *target,
                             const char *name, char *error, size_t error_size) {
    memset(parser, 0, sizeof(*parser));
    parser->syntax = syntax;
    parser->target = target;
    parser->name = name;
    parser->error = error;
    parser->error_size = error_size;
    if (error != NULL && error_size > 0)
        error[0] = '\0';
}

int conf_defaults(const conf_syntax_t *syntax, void *target, char *error, size_t error_size) {
    conf_parser_t parser;
    conf_parser_init(&parser, syntax, target, CONF_DEFAULTS_NAME, error, error_size);
    for (size_t i = 0; i < syntax->directive_count; i++) {
        const conf_directive_t *directive = &syntax->directives[i];
        if (directive->default_text == NULL)
            continue;
        /* A copy, split as a line is: setters may change their arguments in place. */
        char text[CONF_LINE_LIMIT + 1];
        if (strlen(directive->default_text) > CONF_LINE_LIMIT)
            return conf_error(&parser, "the default of \"%s\" is too long", directive->name);
        strcpy(text, directive->default_text);
        char *arguments[CONF_TOKEN_LIMIT];
        size_t argument_count;
        if (conf_split_line(text, arguments, CONF_TOKEN_LIMIT, &argument_count) != 0)
            return conf_error(&parser, "invalid control character in the default of \"%s\"",
                              directive->name);
        if (conf_check_argument_count(&parser, directive, argument_count) != 0 ||
            directive->set(&parser, directive, arguments, argument_count) != 0)
            return -1;
    }
    return 0;
}

int conf_parse(const conf_syntax_t *syntax, void *target, const char *name, const char *text,
               size_t length, char *error, size_t error_size) {
    conf_parser_t parser;
    conf_parser_init(&parser, syntax, target, name, error, error_size);
    if (syntax->directive_count > CONF_DIRECTIVE_LIMIT)
        return conf_error(&parser, "more than %d directives in the table", CONF_DIRECTIVE_LIMIT);
    char **path = (char **)(void *)((char *)target + syntax->path_offset);
    if (conf_replace_string(&parser, path, name) != 0)
        return -1;
    if (conf_parse_lines(&parser, text, length) != 0)
        return -1;
    /* Errors about the whole file name its last line, or line 1 of an empty one. */
    if (parser.line == 0)
        parser.line = 1;
    if (syntax->finish != NULL && syntax->finish(&parser) != 0)
        return -1;
    return conf_check_required(&parser);
}

/* Reads the file at path into *text (the caller frees it) and *length; returns 0, or -1 with
 * "PATH: message" in error. */
static int conf_read_file(const char *path, char **text, size_t *length, char *error,
                          size_t error_size) {
    size_t capacity = 0;
    *text = NULL;
    *length = 0;
    int descriptor = open(path, O_RDONLY | O_CLOEXEC);
    if (descriptor < 0)
        return error_format(error, error_size, "%s: cannot open: %s", path, strerror(errno));
    int result = -1;
    for (;;) {
        if (*length == capacity) {
            /* /dev/zero must not hang -t: stop past the limit. */
            if (capacity > CONF_FILE_LIMIT)
                break;
            capacity = capacity == 0 ? 16384 : capacity * 2;
            char *grown = realloc(*text, capacity);
            if (grown == NULL) {
                error_format(error, error_size, "%s: out of memory", path);
                goto done;
            }
            *text = grown;
        }
        ssize_t got = read(descriptor, *text + *length, capacity - *length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            error_format(error, error_size, "%s: cannot read: %s", path, strerror(errno));
            goto done;
        }
        if (got == 0)
            break;
        *length += (size_t)got;
    }
    if (*length > CONF_FILE_LIMIT)
        error_format(error, error_size, "%s: too large (more than %d bytes)", path,
                     CONF_FILE_LIMIT);
    else
        result = 0;
done:
    close(descriptor);
    return result;
}

int conf_load(const conf_syntax_t *syntax, void *target, const char *path, char *error,
              size_t error_size) {
    char *text = NULL;
    size_t length = 0;
    int result = -1;
    if (conf_read_file(path, &text, &length, error, error_size) == 0)
        result =
            conf_parse(syntax, target, path, text == NULL ? "" : text, length, error, error_size);
    free(text);
    return result;
}
