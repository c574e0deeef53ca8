/* gateway.conf: one table of directives (arguments, setter, bounds) read into gw_config_t. */
#include "gateway/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/error.h"

/* A longer line is an error rather than silently cut; any sane directive fits. */
/* A larger file is surely not a configuration (and /dev/zero must not hang -t). */
#define GW_CONFIG_FILE_LIMIT (1024 * 1024)
/* Tokens kept per line; more are only counted, to report "too many arguments". */
#define GW_CONFIG_TOKEN_LIMIT 32

#define GW_CONFIG_SECOND ((uint64_t)1000)
#define GW_CONFIG_MINUTE (60 * GW_CONFIG_SECOND)
#define GW_CONFIG_HOUR (60 * GW_CONFIG_MINUTE)
/* Every duration is capped at 7 days: a longer one is a typo, and it fits any timer. */
#define GW_CONFIG_DURATION_LIMIT (168 * GW_CONFIG_HOUR)
#define GW_CONFIG_KILOBYTE ((uint64_t)1024)
#define GW_CONFIG_MEGABYTE (1024 * GW_CONFIG_KILOBYTE)

/* nginx's session-ticket key: 16 bytes name, 32 HMAC secret, 32 AES-256 key. */
#define GW_CONFIG_TICKET_KEY_SIZE 80

enum {
    GW_CONFIG_ONCE = 0,
    GW_CONFIG_REPEATABLE = 1 << 0, /* may appear on several lines, each adding a value */
    GW_CONFIG_REQUIRED = 1 << 1,   /* must appear at least once in the file */
};

typedef struct gw_config_parser gw_config_parser_t;
typedef struct gw_config_directive gw_config_directive_t;

/* Applies one line's arguments (the directive name excluded) to parser->config; returns 0, or -1
 * after gw_config_error. */
typedef int gw_config_setter_t(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                               char **arguments, size_t argument_count);

struct gw_config_directive {
    const char *name;
    size_t minimum_arguments;
    size_t maximum_arguments;
    gw_config_setter_t *set;
    size_t offset;    /* the gw_config_t field a generic setter writes */
    uint64_t minimum; /* bounds in the field's unit: milliseconds, bytes or a count */
    uint64_t maximum;
    unsigned flags; /* GW_CONFIG_REPEATABLE, GW_CONFIG_REQUIRED */
};

static gw_config_setter_t gw_config_set_domain;
static gw_config_setter_t gw_config_set_listen;
static gw_config_setter_t gw_config_set_tls_certificate;
static gw_config_setter_t gw_config_set_tls_certificate_key;
static gw_config_setter_t gw_config_set_tls_ticket_key_file;
static gw_config_setter_t gw_config_set_admin_listen;
static gw_config_setter_t gw_config_set_workers;
static gw_config_setter_t gw_config_set_redis_url;
static gw_config_setter_t gw_config_set_string;
static gw_config_setter_t gw_config_set_duration;
static gw_config_setter_t gw_config_set_size;
static gw_config_setter_t gw_config_set_count;
static gw_config_setter_t gw_config_set_access_log;
static gw_config_setter_t gw_config_set_log_level;
static gw_config_setter_t gw_config_set_upstream_deny;
static gw_config_setter_t gw_config_set_instance_name;

// clang-format off
#define GW_CONFIG_FIELD(field) offsetof(gw_config_t, field)
/* A duration directive: one argument, once, from minimum to GW_CONFIG_DURATION_LIMIT. */
#define GW_CONFIG_DURATION(name, field, minimum)                                                   \
    {name, 1, 1, gw_config_set_duration, GW_CONFIG_FIELD(field), minimum,                          \
     GW_CONFIG_DURATION_LIMIT, GW_CONFIG_ONCE}

/* Every directive of DESIGN.md. Defaults are set by gw_config_defaults and documented in
 * gateway.conf; bounds are in the unit of the field (milliseconds, bytes, a count). */
static const gw_config_directive_t gw_config_directives[] = {
    /* name                  arguments  setter
     *   field, bounds (minimum, maximum), flags */
    {"domain",              1, 1, gw_config_set_domain,
     0, 0, 0, GW_CONFIG_REPEATABLE | GW_CONFIG_REQUIRED},
    {"listen",              1, 3, gw_config_set_listen,
     0, 0, 0, GW_CONFIG_REPEATABLE | GW_CONFIG_REQUIRED},
    {"tls_certificate",     1, 1, gw_config_set_tls_certificate,
     0, 0, 0, GW_CONFIG_REPEATABLE},
    {"tls_certificate_key", 1, 1, gw_config_set_tls_certificate_key,
     0, 0, 0, GW_CONFIG_REPEATABLE},
    {"tls_ticket_key_file", 1, 1, gw_config_set_tls_ticket_key_file,
     0, 0, 0, GW_CONFIG_ONCE},
    {"admin_listen",        1, 1, gw_config_set_admin_listen,
     0, 0, 0, GW_CONFIG_ONCE},
    {"workers",             1, 1, gw_config_set_workers,
     GW_CONFIG_FIELD(workers), 1, 256, GW_CONFIG_ONCE},
    {"redis_url",           1, 1, gw_config_set_redis_url,
     0, 0, 0, GW_CONFIG_ONCE},
    {"redis_key_prefix",    1, 1, gw_config_set_string,
     GW_CONFIG_FIELD(redis_key_prefix), 0, 0, GW_CONFIG_ONCE},
    {"max_header_size",     1, 1, gw_config_set_size,
     GW_CONFIG_FIELD(max_header_size), 1024, 1024 * 1024, GW_CONFIG_ONCE},
    {"max_connections",     1, 1, gw_config_set_count,
     GW_CONFIG_FIELD(max_connections), 1, 10000000, GW_CONFIG_ONCE},
    {"access_log",          1, 1, gw_config_set_access_log,
     0, 0, 0, GW_CONFIG_ONCE},
    {"log_level",           1, 1, gw_config_set_log_level,
     0, 0, 0, GW_CONFIG_ONCE},
    {"upstream_deny",       1, GW_CONFIG_TOKEN_LIMIT - 1, gw_config_set_upstream_deny,
     0, 0, 0, GW_CONFIG_REPEATABLE},
    {"instance_name",       1, 1, gw_config_set_instance_name,
     0, 0, 0, GW_CONFIG_ONCE},

    /*                  name                         field                         minimum */
    GW_CONFIG_DURATION("redis_timeout",             redis_timeout_ms,             1),
    GW_CONFIG_DURATION("route_cache_ttl",           route_cache_ttl_ms,           0),
    GW_CONFIG_DURATION("route_negative_ttl",        route_negative_ttl_ms,        0),
    GW_CONFIG_DURATION("route_stale_ttl",           route_stale_ttl_ms,           0),
    GW_CONFIG_DURATION("upstream_connect_timeout",  upstream_connect_timeout_ms,  1),
    GW_CONFIG_DURATION("upstream_connect_retry",    upstream_connect_retry_ms,    0),
    GW_CONFIG_DURATION("upstream_idle_timeout",     upstream_idle_timeout_ms,     1),
    GW_CONFIG_DURATION("upstream_response_timeout", upstream_response_timeout_ms, 1),
    GW_CONFIG_DURATION("client_header_timeout",     client_header_timeout_ms,     1),
    GW_CONFIG_DURATION("client_idle_timeout",       client_idle_timeout_ms,       1),
    GW_CONFIG_DURATION("tunnel_idle_timeout",       tunnel_idle_timeout_ms,       1),
    GW_CONFIG_DURATION("drain_delay",               drain_delay_ms,               0),
    GW_CONFIG_DURATION("drain_timeout",             drain_timeout_ms,             0),
};
// clang-format on

#define GW_CONFIG_DIRECTIVE_COUNT (sizeof(gw_config_directives) / sizeof(gw_config_directives[0]))


struct gw_config_parser {
    gw_config_t *config;
    const char *name; /* FILE in messages */
    int line;         /* the line being read, from 1 */
    char *error;
    size_t error_size;
    int first_line[GW_CONFIG_DIRECTIVE_COUNT]; /* where each directive first appeared, or 0 */
    int open_certificate_line;                 /* a tls_certificate waiting for its key, or 0 */
};

/* String defaults live in static storage, never on the heap, so gw_config_defaults cannot fail;
 * gw_config_release knows not to free them. */
static char gw_config_default_redis_url[] = "redis://127.0.0.1:6379/0";
static char gw_config_default_redis_host[] = "127.0.0.1";
static char gw_config_default_redis_key_prefix[] = "sandbox:catalog:";

/* The one reason gw_config_parse_redis_url gives when allocation fails, told apart by address. */
static const char gw_config_out_of_memory[] = "out of memory";

/* Frees *field unless it is a static default, and NULLs it. */
static void gw_config_release(char **field) {
    if (*field != gw_config_default_redis_url && *field != gw_config_default_redis_host &&
        *field != gw_config_default_redis_key_prefix)
        free(*field);
    *field = NULL;
}

__attribute__((format(printf, 3, 0))) static void
gw_config_write_error(gw_config_parser_t *parser, int line, const char *format, va_list arguments) {
    if (parser->error == NULL || parser->error_size == 0)
        return;
    int prefix = snprintf(parser->error, parser->error_size, "%s:%d: ", parser->name, line);
    if (prefix < 0 || (size_t)prefix >= parser->error_size)
        return;
    vsnprintf(parser->error + prefix, parser->error_size - (size_t)prefix, format, arguments);
}

/* Writes "FILE:LINE: message" for the given line; returns -1. */
__attribute__((format(printf, 3, 4))) static int
gw_config_error_at(gw_config_parser_t *parser, int line, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    gw_config_write_error(parser, line, format, arguments);
    va_end(arguments);
    return -1;
}

/* Writes "FILE:LINE: message" for the line being read; returns -1. */
__attribute__((format(printf, 2, 3))) static int gw_config_error(gw_config_parser_t *parser,
                                                                 const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    gw_config_write_error(parser, parser->line, format, arguments);
    va_end(arguments);
    return -1;
}

static void *gw_config_field(gw_config_t *config, const gw_config_directive_t *directive) {
    return (char *)config + directive->offset;
}

/* Values */

/* Reads the decimal digits of text[0..length) (at least one, nothing else) into *value; returns 0,
 * or -1 on anything else or overflow. */
static int gw_config_parse_decimal(const char *text, size_t length, uint64_t *value) {
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
static int gw_config_parse_leading_decimal(const char *text, uint64_t *value, const char **suffix) {
    size_t length = strspn(text, "0123456789");
    if (gw_config_parse_decimal(text, length, value) != 0)
        return -1;
    *suffix = text + length;
    return 0;
}

static int gw_config_parse_port(const char *text, size_t length, int *port) {
    uint64_t value;
    if (gw_config_parse_decimal(text, length, &value) != 0 || value < 1 || value > 65535)
        return -1;
    *port = (int)value;
    return 0;
}

static int gw_config_parse_database(const char *text, size_t length, int *database) {
    uint64_t value;
    if (gw_config_parse_decimal(text, length, &value) != 0 || value > INT_MAX)
        return -1;
    *database = (int)value;
    return 0;
}

int gw_config_parse_duration(const char *text, uint64_t *milliseconds) {
    uint64_t value;
    const char *suffix;
    if (gw_config_parse_leading_decimal(text, &value, &suffix) != 0)
        return -1;
    uint64_t unit;
    if (strcmp(suffix, "") == 0 || strcmp(suffix, "s") == 0)
        unit = GW_CONFIG_SECOND;
    else if (strcmp(suffix, "ms") == 0)
        unit = 1;
    else if (strcmp(suffix, "m") == 0)
        unit = GW_CONFIG_MINUTE;
    else if (strcmp(suffix, "h") == 0)
        unit = GW_CONFIG_HOUR;
    else
        return -1;
    if (value > UINT64_MAX / unit)
        return -1;
    *milliseconds = value * unit;
    return 0;
}

int gw_config_parse_size(const char *text, size_t *bytes) {
    uint64_t value;
    const char *suffix;
    if (gw_config_parse_leading_decimal(text, &value, &suffix) != 0)
        return -1;
    uint64_t unit;
    if (strcmp(suffix, "") == 0)
        unit = 1;
    else if (strcmp(suffix, "k") == 0 || strcmp(suffix, "K") == 0)
        unit = GW_CONFIG_KILOBYTE;
    else if (strcmp(suffix, "m") == 0 || strcmp(suffix, "M") == 0)
        unit = GW_CONFIG_MEGABYTE;
    else
        return -1;
    if (value > SIZE_MAX / unit)
        return -1;
    *bytes = (size_t)(value * unit);
    return 0;
}

/* Why text is not "ADDR:PORT", or NULL when it is one (then *address is filled). */
static const char *gw_config_address_problem(const char *text, struct sockaddr_storage *address,
                                             socklen_t *address_length) {
    /* The longest literal, "[ffff:...:255.255.255.255]:65535", fits gw_listen_t.text. */
    char host[sizeof(((gw_listen_t *)0)->text)];
    size_t text_length = strlen(text);
    if (text_length >= sizeof(host))
        return "too long";
    const char *host_start;
    size_t host_length;
    const char *port_text;
    int family;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL)
            return "missing \"]\" after the IPv6 address";
        if (close[1] != ':')
            return "missing \":PORT\"";
        host_start = text + 1;
        host_length = (size_t)(close - host_start);
        port_text = close + 2;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL)
            return "missing \":PORT\"";
        if (memchr(text, ':', (size_t)(colon - text)) != NULL)
            return "an IPv6 address needs brackets, as in [::1]:8080";
        host_start = text;
        host_length = (size_t)(colon - text);
        port_text = colon + 1;
        family = AF_INET;
    }
    int port;
    if (gw_config_parse_port(port_text, strlen(port_text), &port) != 0)
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

int gw_config_parse_address(const char *text, struct sockaddr_storage *address,
                            socklen_t *address_length) {
    return gw_config_address_problem(text, address, address_length) == NULL ? 0 : -1;
}

static bool gw_config_same_address(const struct sockaddr_storage *a,
                                   const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *left = (const struct sockaddr_in *)a;
        const struct sockaddr_in *right = (const struct sockaddr_in *)b;
        return left->sin_port == right->sin_port && left->sin_addr.s_addr == right->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *left = (const struct sockaddr_in6 *)a;
    const struct sockaddr_in6 *right = (const struct sockaddr_in6 *)b;
    return left->sin6_port == right->sin6_port &&
           memcmp(&left->sin6_addr, &right->sin6_addr, sizeof(left->sin6_addr)) == 0;
}

/* Why text is not a domain (RFC 1035 §2.3.4 lengths), or NULL. Upper case is fine: it is
 * stored lower-cased, as hostnames are matched. */
static const char *gw_config_domain_problem(const char *text) {
    size_t length = strlen(text);
    if (strncmp(text, "*.", 2) == 0)
        return "write it without \"*.\": every <label>.NAME is served";
    if (length == 0)
        return "empty";
    if (length > 253)
        return "longer than 253 bytes";
    if (text[0] == '.' || text[length - 1] == '.')
        return "leading or trailing dot";
    size_t label_length = 0;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (c == '.') {
            if (label_length == 0)
                return "empty label";
            label_length = 0;
            continue;
        }
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter && !(c >= '0' && c <= '9') && c != '-')
            return "only letters, digits, \"-\" and \".\" are allowed";
        if (++label_length > 63)
            return "a label is longer than 63 bytes";
    }
    return NULL;
}

/* Why text[0..length) is not a Redis host name or IPv4 address, or NULL. */
static const char *gw_config_redis_host_problem(const char *text, size_t length) {
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
typedef struct gw_config_redis_url {
    const char *host; /* without brackets; NULL for a unix socket */
    size_t host_length;
    const char *path; /* NULL for TCP */
    size_t path_length;
    int port;
    int database;
} gw_config_redis_url_t;

static const char *gw_config_redis_unix_split(const char *path, gw_config_redis_url_t *url) {
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
    if (gw_config_parse_database(query + 3, strlen(query + 3), &url->database) != 0)
        return "invalid database number";
    return NULL;
}

/* Why text is not "redis://HOST[:PORT][/DB]" or "unix:///PATH[?db=N]", or NULL. */
static const char *gw_config_redis_url_split(const char *text, gw_config_redis_url_t *url) {
    memset(url, 0, sizeof(*url));
    url->port = 6379;
    if (strncmp(text, "unix://", 7) == 0)
        return gw_config_redis_unix_split(text + 7, url);
    if (strncmp(text, "redis://", 8) != 0)
        return "expected redis://HOST:PORT/DB or unix:///PATH";
    const char *cursor = text + 8;
    if (strchr(cursor, '@') != NULL)
        return "a user or password is not supported";
    if (*cursor == '[') {
        const char *close = strchr(cursor, ']');
        if (close == NULL)
            return "missing \"]\" after the IPv6 address";
        url->host = cursor + 1;
        url->host_length = (size_t)(close - url->host);
        char literal[INET6_ADDRSTRLEN];
        struct in6_addr ignored;
        if (url->host_length == 0 || url->host_length >= sizeof(literal))
            return "invalid IPv6 address";
        memcpy(literal, url->host, url->host_length);
        literal[url->host_length] = '\0';
        if (inet_pton(AF_INET6, literal, &ignored) != 1)
            return "invalid IPv6 address";
        cursor = close + 1;
    } else {
        url->host = cursor;
        url->host_length = strcspn(cursor, ":/");
        const char *problem = gw_config_redis_host_problem(url->host, url->host_length);
        if (problem != NULL)
            return problem;
        cursor += url->host_length;
    }
    if (*cursor == ':') {
        cursor++;
        size_t length = strcspn(cursor, "/");
        if (gw_config_parse_port(cursor, length, &url->port) != 0)
            return "the port must be 1 to 65535";
        cursor += length;
    }
    if (*cursor == '/') {
        cursor++;
        /* "redis://host/" is database 0, as in redis-cli -u. */
        if (*cursor != '\0' &&
            gw_config_parse_database(cursor, strlen(cursor), &url->database) != 0)
            return "invalid database number";
        return NULL;
    }
    if (*cursor != '\0')
        return "expected \":PORT\" or \"/DB\" after the host";
    return NULL;
}

int gw_config_parse_redis_url(const char *text, gw_redis_target_t *target, const char **reason) {
    gw_config_redis_url_t url;
    memset(target, 0, sizeof(*target));
    const char *problem = gw_config_redis_url_split(text, &url);
    if (problem != NULL)
        goto fail;
    problem = gw_config_out_of_memory;
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

void gw_config_free_redis_target(gw_redis_target_t *target) {
    gw_config_release(&target->host);
    gw_config_release(&target->unix_path);
    memset(target, 0, sizeof(*target));
}

/* Writes a duration in the largest unit that states it exactly, in the file's syntax. */
static void gw_config_format_duration(uint64_t milliseconds, char *text, size_t size) {
    if (milliseconds == 0)
        snprintf(text, size, "0");
    else if (milliseconds % GW_CONFIG_HOUR == 0)
        snprintf(text, size, "%" PRIu64 "h", milliseconds / GW_CONFIG_HOUR);
    else if (milliseconds % GW_CONFIG_MINUTE == 0)
        snprintf(text, size, "%" PRIu64 "m", milliseconds / GW_CONFIG_MINUTE);
    else if (milliseconds % GW_CONFIG_SECOND == 0)
        snprintf(text, size, "%" PRIu64 "s", milliseconds / GW_CONFIG_SECOND);
    else
        snprintf(text, size, "%" PRIu64 "ms", milliseconds);
}

static void gw_config_format_size(uint64_t bytes, char *text, size_t size) {
    if (bytes != 0 && bytes % GW_CONFIG_MEGABYTE == 0)
        snprintf(text, size, "%" PRIu64 "m", bytes / GW_CONFIG_MEGABYTE);
    else if (bytes != 0 && bytes % GW_CONFIG_KILOBYTE == 0)
        snprintf(text, size, "%" PRIu64 "k", bytes / GW_CONFIG_KILOBYTE);
    else
        snprintf(text, size, "%" PRIu64, bytes);
}

static void gw_config_format_count(uint64_t count, char *text, size_t size) {
    snprintf(text, size, "%" PRIu64, count);
}

/* Checks value against the directive's bounds; returns 0, or -1 after an error that shows the
 * bounds with format. */
static int gw_config_check_bounds(gw_config_parser_t *parser,
                                  const gw_config_directive_t *directive, const char *text,
                                  uint64_t value, void (*format)(uint64_t, char *, size_t)) {
    if (value >= directive->minimum && value <= directive->maximum)
        return 0;
    char minimum[32];
    char maximum[32];
    format(directive->minimum, minimum, sizeof(minimum));
    format(directive->maximum, maximum, sizeof(maximum));
    return gw_config_error(parser, "\"%s\" is out of range for \"%s\" (%s to %s)", text,
                           directive->name, minimum, maximum);
}

/* Checks that path is a regular file this process can open for reading (reporting the line of the
 * directive, not a later start-up failure); returns 0 with its size, or -1 after an error. */
static int gw_config_check_file(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                                const char *path, off_t *size) {
    /* O_NONBLOCK: a FIFO must not hang the parser. */
    int descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (descriptor < 0)
        return gw_config_error(parser, "cannot read \"%s\" for \"%s\": %s", path, directive->name,
                               strerror(errno));
    struct stat status;
    int result = fstat(descriptor, &status);
    int saved_errno = errno;
    close(descriptor);
    if (result != 0)
        return gw_config_error(parser, "cannot read \"%s\" for \"%s\": %s", path, directive->name,
                               strerror(saved_errno));
    if (!S_ISREG(status.st_mode))
        return gw_config_error(parser, "\"%s\" for \"%s\" is not a regular file", path,
                               directive->name);
    *size = status.st_size;
    return 0;
}

/* Setters */

static int gw_config_set_domain(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                                char **arguments, size_t argument_count) {
    gw_config_t *config = parser->config;
    const char *problem = gw_config_domain_problem(arguments[0]);
    if (problem != NULL)
        return gw_config_error(parser, "invalid domain \"%s\": %s", arguments[0], problem);
    for (char *c = arguments[0]; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }
    for (size_t i = 0; i < config->domain_count; i++) {
        if (strcmp(config->domains[i], arguments[0]) == 0)
            return gw_config_error(parser, "duplicate domain \"%s\"", arguments[0]);
    }
    char **domains = realloc(config->domains, (config->domain_count + 1) * sizeof(*domains));
    if (domains == NULL)
        return gw_config_error(parser, "out of memory");
    config->domains = domains;
    config->domains[config->domain_count] = strdup(arguments[0]);
    if (config->domains[config->domain_count] == NULL)
        return gw_config_error(parser, "out of memory");
    config->domain_count++;
    return 0;
}

/* Parses ADDR:PORT into listen and refuses an address already taken by a listener or the admin
 * endpoint: with SO_REUSEPORT both would bind, silently sharing its connections. */
static int gw_config_read_listen(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                                 const char *text, gw_listen_t *listen) {
    gw_config_t *config = parser->config;
    memset(listen, 0, sizeof(*listen));
    const char *problem =
        gw_config_address_problem(text, &listen->address, &listen->address_length);
    if (problem != NULL)
        return gw_config_error(parser, "invalid address \"%s\" for \"%s\": %s", text,
                               directive->name, problem);
    snprintf(listen->text, sizeof(listen->text), "%s", text);
    listen->line = parser->line;
    for (size_t i = 0; i < config->listen_count; i++) {
        if (gw_config_same_address(&config->listens[i].address, &listen->address))
            return gw_config_error(parser, "address \"%s\" for \"%s\" is already used at line %d",
                                   text, directive->name, config->listens[i].line);
    }
    if (config->has_admin_listen &&
        gw_config_same_address(&config->admin_listen.address, &listen->address))
        return gw_config_error(parser, "address \"%s\" for \"%s\" is already used at line %d", text,
                               directive->name, config->admin_listen.line);
    return 0;
}

static int gw_config_set_listen(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                                char **arguments, size_t argument_count) {
    gw_config_t *config = parser->config;
    gw_listen_t listen;
    if (gw_config_read_listen(parser, directive, arguments[0], &listen) != 0)
        return -1;
    for (size_t i = 1; i < argument_count; i++) {
        bool *option;
        if (strcmp(arguments[i], "tls") == 0)
            option = &listen.tls;
        else if (strcmp(arguments[i], "proxy_protocol") == 0)
            option = &listen.proxy_protocol;
        else
            return gw_config_error(parser,
                                   "unknown option \"%s\" for \"listen\" (tls or proxy_protocol)",
                                   arguments[i]);
        if (*option)
            return gw_config_error(parser, "duplicate option \"%s\" for \"listen\"", arguments[i]);
        *option = true;
    }
    gw_listen_t *listens = realloc(config->listens, (config->listen_count + 1) * sizeof(*listens));
    if (listens == NULL)
        return gw_config_error(parser, "out of memory");
    config->listens = listens;
    config->listens[config->listen_count++] = listen;
    return 0;
}

static int gw_config_set_admin_listen(gw_config_parser_t *parser,
                                      const gw_config_directive_t *directive, char **arguments,
                                      size_t argument_count) {
    gw_listen_t listen;
    if (gw_config_read_listen(parser, directive, arguments[0], &listen) != 0)
        return -1;
    parser->config->admin_listen = listen;
    parser->config->has_admin_listen = true;
    return 0;
}

/* A certificate opens a pair that its tls_certificate_key closes. */
static int gw_config_set_tls_certificate(gw_config_parser_t *parser,
                                         const gw_config_directive_t *directive, char **arguments,
                                         size_t argument_count) {
    gw_config_t *config = parser->config;
    if (parser->open_certificate_line != 0)
        return gw_config_error_at(parser, parser->open_certificate_line,
                                  "\"tls_certificate\" without its \"tls_certificate_key\"");
    off_t size;
    if (gw_config_check_file(parser, directive, arguments[0], &size) != 0)
        return -1;
    gw_tls_pair_t *pairs =
        realloc(config->tls_pairs, (config->tls_pair_count + 1) * sizeof(*pairs));
    if (pairs == NULL)
        return gw_config_error(parser, "out of memory");
    config->tls_pairs = pairs;
    gw_tls_pair_t *pair = &config->tls_pairs[config->tls_pair_count];
    pair->certificate = strdup(arguments[0]);
    pair->certificate_key = NULL;
    if (pair->certificate == NULL)
        return gw_config_error(parser, "out of memory");
    config->tls_pair_count++;
    parser->open_certificate_line = parser->line;
    return 0;
}

static int gw_config_set_tls_certificate_key(gw_config_parser_t *parser,
                                             const gw_config_directive_t *directive,
                                             char **arguments, size_t argument_count) {
    gw_config_t *config = parser->config;
    if (parser->open_certificate_line == 0)
        return gw_config_error(parser,
                               "\"tls_certificate_key\" without a \"tls_certificate\" before it");
    off_t size;
    if (gw_config_check_file(parser, directive, arguments[0], &size) != 0)
        return -1;
    gw_tls_pair_t *pair = &config->tls_pairs[config->tls_pair_count - 1];
    pair->certificate_key = strdup(arguments[0]);
    if (pair->certificate_key == NULL)
        return gw_config_error(parser, "out of memory");
    parser->open_certificate_line = 0;
    return 0;
}

static int gw_config_set_tls_ticket_key_file(gw_config_parser_t *parser,
                                             const gw_config_directive_t *directive,
                                             char **arguments, size_t argument_count) {
    off_t size = 0;
    if (gw_config_check_file(parser, directive, arguments[0], &size) != 0)
        return -1;
    if (size == 0 || size % GW_CONFIG_TICKET_KEY_SIZE != 0)
        return gw_config_error(
            parser, "\"%s\" for \"%s\" must hold keys of %d bytes each, not %jd bytes",
            arguments[0], directive->name, GW_CONFIG_TICKET_KEY_SIZE, (intmax_t)size);
    char *path = strdup(arguments[0]);
    if (path == NULL)
        return gw_config_error(parser, "out of memory");
    free(parser->config->tls_ticket_key_file);
    parser->config->tls_ticket_key_file = path;
    return 0;
}

/* Reads a plain count within the directive's bounds; returns 0, or -1 after an error. */
static int gw_config_read_count(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                                const char *text, uint64_t *count) {
    if (gw_config_parse_decimal(text, strlen(text), count) != 0)
        return gw_config_error(parser, "invalid number \"%s\" for \"%s\"", text, directive->name);
    return gw_config_check_bounds(parser, directive, text, *count, gw_config_format_count);
}

static int gw_config_set_workers(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                                 char **arguments, size_t argument_count) {
    if (strcmp(arguments[0], "auto") == 0) {
        parser->config->workers = 0;
        return 0;
    }
    uint64_t count = 0;
    if (gw_config_read_count(parser, directive, arguments[0], &count) != 0)
        return -1;
    *(int *)gw_config_field(parser->config, directive) = (int)count;
    return 0;
}

static int gw_config_set_count(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                               char **arguments, size_t argument_count) {
    uint64_t count = 0;
    if (gw_config_read_count(parser, directive, arguments[0], &count) != 0)
        return -1;
    *(long *)gw_config_field(parser->config, directive) = (long)count;
    return 0;
}

static int gw_config_set_duration(gw_config_parser_t *parser,
                                  const gw_config_directive_t *directive, char **arguments,
                                  size_t argument_count) {
    uint64_t milliseconds;
    if (gw_config_parse_duration(arguments[0], &milliseconds) != 0)
        return gw_config_error(parser, "invalid duration \"%s\" for \"%s\"", arguments[0],
                               directive->name);
    if (gw_config_check_bounds(parser, directive, arguments[0], milliseconds,
                               gw_config_format_duration) != 0)
        return -1;
    *(uint64_t *)gw_config_field(parser->config, directive) = milliseconds;
    return 0;
}

static int gw_config_set_size(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                              char **arguments, size_t argument_count) {
    size_t bytes;
    if (gw_config_parse_size(arguments[0], &bytes) != 0)
        return gw_config_error(parser, "invalid size \"%s\" for \"%s\"", arguments[0],
                               directive->name);
    if (gw_config_check_bounds(parser, directive, arguments[0], bytes, gw_config_format_size) != 0)
        return -1;
    *(size_t *)gw_config_field(parser->config, directive) = bytes;
    return 0;
}

static int gw_config_set_string(gw_config_parser_t *parser, const gw_config_directive_t *directive,
                                char **arguments, size_t argument_count) {
    char *copy = strdup(arguments[0]);
    if (copy == NULL)
        return gw_config_error(parser, "out of memory");
    char **field = gw_config_field(parser->config, directive);
    gw_config_release(field);
    *field = copy;
    return 0;
}

static int gw_config_set_redis_url(gw_config_parser_t *parser,
                                   const gw_config_directive_t *directive, char **arguments,
                                   size_t argument_count) {
    gw_config_t *config = parser->config;
    gw_redis_target_t target;
    const char *reason;
    if (gw_config_parse_redis_url(arguments[0], &target, &reason) != 0) {
        if (reason == gw_config_out_of_memory)
            return gw_config_error(parser, "out of memory");
        return gw_config_error(parser, "invalid URL \"%s\" for \"%s\": %s", arguments[0],
                               directive->name, reason);
    }
    char *url = strdup(arguments[0]);
    if (url == NULL) {
        gw_config_free_redis_target(&target);
        return gw_config_error(parser, "out of memory");
    }
    gw_config_release(&config->redis_url);
    gw_config_free_redis_target(&config->redis);
    config->redis_url = url;
    config->redis = target;
    return 0;
}

static int gw_config_set_access_log(gw_config_parser_t *parser,
                                    const gw_config_directive_t *directive, char **arguments,
                                    size_t argument_count) {
    char *target = NULL;
    if (strcmp(arguments[0], "off") != 0) {
        target = strdup(arguments[0]);
        if (target == NULL)
            return gw_config_error(parser, "out of memory");
    }
    free(parser->config->access_log);
    parser->config->access_log = target;
    return 0;
}

static int gw_config_set_upstream_deny(gw_config_parser_t *parser,
                                       const gw_config_directive_t *directive, char **arguments,
                                       size_t argument_count) {
    gw_config_t *config = parser->config;
    cidr_t *grown = realloc(config->upstream_deny,
                            (config->upstream_deny_count + argument_count) * sizeof(*grown));
    if (grown == NULL)
        return gw_config_error(parser, "out of memory");
    config->upstream_deny = grown;
    for (size_t i = 0; i < argument_count; i++) {
        cidr_t *block = &config->upstream_deny[config->upstream_deny_count];
        cidr_status_t status = cidr_parse(arguments[i], block);
        if (status == CIDR_HOST_BITS) {
            char network[INET6_ADDRSTRLEN];
            inet_ntop(block->family, block->address, network, sizeof(network));
            return gw_config_error(parser, "\"%s\" for \"%s\" has host bits set (the block is %s/%u)",
                                   arguments[i], directive->name, network, block->prefix);
        }
        if (status != CIDR_OK)
            return gw_config_error(parser,
                                   "invalid block \"%s\" for \"%s\" (write ADDR or ADDR/LEN, IPv4 "
                                   "or IPv6)",
                                   arguments[i], directive->name);
        config->upstream_deny_count++;
    }
    return 0;
}

/* RFC 9110 §7.6.3: a Via received-by is a host or a pseudonym (a token). */
static int gw_config_set_instance_name(gw_config_parser_t *parser,
                                       const gw_config_directive_t *directive, char **arguments,
                                       size_t argument_count) {
    size_t length = strlen(arguments[0]);
    if (length > GW_INSTANCE_NAME_MAX ||
        strspn(arguments[0], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") !=
            length)
        return gw_config_error(parser,
                               "invalid name \"%s\" for \"%s\" (1 to %d letters, digits, \"-\", "
                               "\".\" or \"_\")",
                               arguments[0], directive->name, GW_INSTANCE_NAME_MAX);
    char *copy = strdup(arguments[0]);
    if (copy == NULL)
        return gw_config_error(parser, "out of memory");
    free(parser->config->instance_name);
    parser->config->instance_name = copy;
    return 0;
}

static int gw_config_set_log_level(gw_config_parser_t *parser,
                                   const gw_config_directive_t *directive, char **arguments,
                                   size_t argument_count) {
    if (log_level_parse(arguments[0], &parser->config->log_level) != 0)
        return gw_config_error(parser,
                               "invalid level \"%s\" for \"%s\" (error, warn, info or debug)",
                               arguments[0], directive->name);
    return 0;
}

/* The file */

static const gw_config_directive_t *gw_config_find_directive(const char *name) {
    for (size_t i = 0; i < GW_CONFIG_DIRECTIVE_COUNT; i++) {
        if (strcmp(gw_config_directives[i].name, name) == 0)
            return &gw_config_directives[i];
    }
    return NULL;
}

int gw_config_split_line(char *line, char **tokens, size_t limit, size_t *count) {
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

/* Splits line (NUL-terminated, no line ending) into tokens and applies the
 * directive; returns 0 or -1. */
static int gw_config_parse_line(gw_config_parser_t *parser, char *line) {
    char *tokens[GW_CONFIG_TOKEN_LIMIT];
    size_t token_count;
    int control = gw_config_split_line(line, tokens, GW_CONFIG_TOKEN_LIMIT, &token_count);
    if (control != 0)
        return gw_config_error(parser, "invalid control character 0x%02x", control);
    if (token_count == 0)
        return 0;

    const gw_config_directive_t *directive = gw_config_find_directive(tokens[0]);
    if (directive == NULL)
        return gw_config_error(parser, "unknown directive \"%s\"", tokens[0]);
    size_t argument_count = token_count - 1;
    if (argument_count < directive->minimum_arguments)
        return gw_config_error(parser, "missing argument for \"%s\"", directive->name);
    if (argument_count > directive->maximum_arguments)
        return gw_config_error(parser, "too many arguments for \"%s\"", directive->name);
    size_t index = (size_t)(directive - gw_config_directives);
    if (parser->first_line[index] != 0 && !(directive->flags & GW_CONFIG_REPEATABLE))
        return gw_config_error(parser, "duplicate \"%s\" (first at line %d)", directive->name,
                               parser->first_line[index]);
    if (parser->first_line[index] == 0)
        parser->first_line[index] = parser->line;
    if (directive->set(parser, directive, tokens + 1, argument_count) != 0)
        return -1;
    return 0;
}

/* Checks what only the whole file can tell; parser->line is its last line. */
static int gw_config_finish(gw_config_parser_t *parser) {
    gw_config_t *config = parser->config;
    if (parser->open_certificate_line != 0)
        return gw_config_error_at(parser, parser->open_certificate_line,
                                  "\"tls_certificate\" without its \"tls_certificate_key\"");
    for (size_t i = 0; i < GW_CONFIG_DIRECTIVE_COUNT; i++) {
        if ((gw_config_directives[i].flags & GW_CONFIG_REQUIRED) && parser->first_line[i] == 0)
            return gw_config_error(parser, "missing required directive \"%s\"",
                                   gw_config_directives[i].name);
    }
    for (size_t i = 0; i < config->listen_count; i++) {
        if (config->listens[i].tls && config->tls_pair_count == 0)
            return gw_config_error_at(
                parser, config->listens[i].line,
                "tls listener \"%s\" needs \"tls_certificate\" and \"tls_certificate_key\"",
                config->listens[i].text);
    }
    return 0;
}

gw_config_lines_status_t gw_config_split_lines(const char *text, size_t length, int *line_number,
                                               int (*parse_line)(void *arg, char *line),
                                               void *arg) {
    size_t position = 0;
    while (position < length) {
        const char *start = text + position;
        const char *newline = memchr(start, '\n', length - position);
        size_t line_length = newline != NULL ? (size_t)(newline - start) : length - position;
        position += line_length + (newline != NULL ? 1 : 0);
        (*line_number)++;
        if (line_length > 0 && start[line_length - 1] == '\r')
            line_length--;
        if (line_length > GW_CONFIG_LINE_LIMIT)
            return GW_CONFIG_LINES_TOO_LONG;
        /* The tokenizer works on C strings: a NUL byte would hide the rest of the line. */
        if (memchr(start, '\0', line_length) != NULL)
            return GW_CONFIG_LINES_NUL;
        char line[GW_CONFIG_LINE_LIMIT + 1];
        memcpy(line, start, line_length);
        line[line_length] = '\0';
        if (parse_line(arg, line) != 0)
            return GW_CONFIG_LINES_FAILED;
    }
    return GW_CONFIG_LINES_OK;
}

static int gw_config_parse_line_callback(void *arg, char *line) {
    return gw_config_parse_line(arg, line);
}

int gw_config_parse_bytes(gw_config_t *config, const char *name, const char *text,
                          size_t length, char *error, size_t error_size) {
    gw_config_parser_t parser = {
        .config = config, .name = name, .error = error, .error_size = error_size};
    if (error != NULL && error_size > 0)
        error[0] = '\0';
    char *path = strdup(name);
    if (path == NULL)
        return error_format(error, error_size, "%s: out of memory", name);
    free(config->path);
    config->path = path;

    switch (gw_config_split_lines(text, length, &parser.line, gw_config_parse_line_callback,
                                  &parser)) {
    case GW_CONFIG_LINES_OK:
        break;
    case GW_CONFIG_LINES_FAILED:
        return -1;
    case GW_CONFIG_LINES_TOO_LONG:
        return gw_config_error(&parser, "line too long (more than %d bytes)",
                               GW_CONFIG_LINE_LIMIT);
    case GW_CONFIG_LINES_NUL:
        return gw_config_error(&parser, "invalid control character 0x00");
    }
    /* Errors about the whole file name its last line, or line 1 of an empty one. */
    if (parser.line == 0)
        parser.line = 1;
    return gw_config_finish(&parser);
}

/* Public entry points */

void gw_config_defaults(gw_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->workers = 0;
    config->redis_url = gw_config_default_redis_url;
    config->redis.host = gw_config_default_redis_host;
    config->redis.port = 6379;
    config->redis.unix_path = NULL;
    config->redis.database = 0;
    config->redis_key_prefix = gw_config_default_redis_key_prefix;
    config->redis_timeout_ms = 1 * GW_CONFIG_SECOND;
    config->route_cache_ttl_ms = 2 * GW_CONFIG_SECOND;
    config->route_negative_ttl_ms = 500;
    config->route_stale_ttl_ms = 30 * GW_CONFIG_SECOND;
    config->upstream_connect_timeout_ms = 5 * GW_CONFIG_SECOND;
    config->upstream_connect_retry_ms = 1 * GW_CONFIG_SECOND;
    config->upstream_idle_timeout_ms = 4 * GW_CONFIG_SECOND;
    config->upstream_response_timeout_ms = 60 * GW_CONFIG_SECOND;
    config->client_header_timeout_ms = 10 * GW_CONFIG_SECOND;
    config->client_idle_timeout_ms = 620 * GW_CONFIG_SECOND;
    config->tunnel_idle_timeout_ms = 24 * GW_CONFIG_HOUR;
    config->drain_delay_ms = 5 * GW_CONFIG_SECOND;
    config->drain_timeout_ms = 30 * GW_CONFIG_SECOND;
    config->max_header_size = 32 * GW_CONFIG_KILOBYTE;
    config->max_connections = 100000;
    config->access_log = NULL;
    config->log_level = LOG_LEVEL_INFO;
}

int gw_config_parse(gw_config_t *config, const char *name, const char *text, char *error,
                    size_t error_size) {
    return gw_config_parse_bytes(config, name, text, strlen(text), error, error_size);
}

int gw_config_load(gw_config_t *config, const char *path, char *error, size_t error_size) {
    char *text = NULL;
    size_t length = 0;
    size_t capacity = 0;
    int result = -1;
    int descriptor = open(path, O_RDONLY | O_CLOEXEC);
    if (descriptor < 0) {
        error_format(error, error_size, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    for (;;) {
        if (length == capacity) {
            if (capacity > GW_CONFIG_FILE_LIMIT) {
                error_format(error, error_size, "%s: too large (more than %d bytes)", path,
                             GW_CONFIG_FILE_LIMIT);
                goto fail;
            }
            capacity = capacity == 0 ? 16384 : capacity * 2;
            char *grown = realloc(text, capacity);
            if (grown == NULL) {
                error_format(error, error_size, "%s: out of memory", path);
                goto fail;
            }
            text = grown;
        }
        ssize_t got = read(descriptor, text + length, capacity - length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            error_format(error, error_size, "%s: cannot read: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        length += (size_t)got;
    }
    if (length > GW_CONFIG_FILE_LIMIT) {
        error_format(error, error_size, "%s: too large (more than %d bytes)", path,
                     GW_CONFIG_FILE_LIMIT);
        goto fail;
    }
    result =
        gw_config_parse_bytes(config, path, text == NULL ? "" : text, length, error, error_size);
fail:
    if (descriptor >= 0)
        close(descriptor);
    free(text);
    return result;
}

void gw_config_free(gw_config_t *config) {
    free(config->path);
    for (size_t i = 0; i < config->domain_count; i++)
        free(config->domains[i]);
    free(config->domains);
    free(config->listens);
    for (size_t i = 0; i < config->tls_pair_count; i++) {
        free(config->tls_pairs[i].certificate);
        free(config->tls_pairs[i].certificate_key);
    }
    free(config->tls_pairs);
    free(config->tls_ticket_key_file);
    gw_config_release(&config->redis_url);
    gw_config_free_redis_target(&config->redis);
    gw_config_release(&config->redis_key_prefix);
    free(config->access_log);
    free(config->upstream_deny);
    free(config->instance_name);
    memset(config, 0, sizeof(*config));
}
