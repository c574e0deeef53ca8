/* gateway.conf: the directive table of DESIGN.md and its own setters, read by util/conf. */
#include "gateway/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every duration is capped at 7 days: a longer one is a typo, and it fits any timer. */
#define GW_CONFIG_DURATION_LIMIT (168 * CONF_HOUR)

/* nginx's session-ticket key: 16 bytes name, 32 HMAC secret, 32 AES-256 key. */
#define GW_CONFIG_TICKET_KEY_SIZE 80

static conf_setter_t gw_config_set_domain;
static conf_setter_t gw_config_set_listen;
static conf_setter_t gw_config_set_tls_certificate;
static conf_setter_t gw_config_set_tls_certificate_key;
static conf_setter_t gw_config_set_tls_ticket_key_file;
static conf_setter_t gw_config_set_auth_cookie_key_file;
static conf_setter_t gw_config_set_activity_interval;
static conf_setter_t gw_config_set_admin_listen;
static conf_setter_t gw_config_set_workers;
static conf_setter_t gw_config_set_access_log;
static conf_setter_t gw_config_set_upstream_deny;
static conf_setter_t gw_config_set_instance_name;
static conf_finish_t gw_config_finish;

// clang-format off
#define GW_CONFIG_FIELD(field) offsetof(gw_config_t, field)
/* A duration directive: one argument, once, from minimum to GW_CONFIG_DURATION_LIMIT. */
#define GW_CONFIG_DURATION(name, field, minimum, default_text)                                     \
    {name, 1, 1, conf_set_duration, GW_CONFIG_FIELD(field), minimum,                               \
     GW_CONFIG_DURATION_LIMIT, CONF_ONCE, default_text, 0}

/* Every directive of DESIGN.md, with the default gateway.conf documents; bounds are in the unit of
 * the field (milliseconds, bytes, a count). */
static const conf_directive_t gw_config_directives[] = {
    /* name                  arguments  setter
     *   field, bounds (minimum, maximum), flags, default, the URL's field (redis_url only) */
    {"domain",              1, 1, gw_config_set_domain,
     0, 0, 0, CONF_REPEATABLE | CONF_REQUIRED, NULL, 0},
    {"listen",              1, 3, gw_config_set_listen,
     0, 0, 0, CONF_REPEATABLE | CONF_REQUIRED, NULL, 0},
    {"tls_certificate",     1, 1, gw_config_set_tls_certificate,
     0, 0, 0, CONF_REPEATABLE, NULL, 0},
    {"tls_certificate_key", 1, 1, gw_config_set_tls_certificate_key,
     0, 0, 0, CONF_REPEATABLE, NULL, 0},
    {"tls_ticket_key_file", 1, 1, gw_config_set_tls_ticket_key_file,
     0, 0, 0, CONF_ONCE, NULL, 0},
    {"auth_cookie_key_file", 1, 1, gw_config_set_auth_cookie_key_file,
     0, 0, 0, CONF_ONCE, NULL, 0},
    {"admin_listen",        1, 1, gw_config_set_admin_listen,
     0, 0, 0, CONF_ONCE, NULL, 0},
    {"workers",             1, 1, gw_config_set_workers,
     GW_CONFIG_FIELD(workers), 1, 256, CONF_ONCE, "auto", 0},
    {"redis_url",           1, 1, conf_set_redis_url,
     GW_CONFIG_FIELD(redis), 0, 0, CONF_ONCE, "redis://127.0.0.1:6379/0",
     GW_CONFIG_FIELD(redis_url)},
    {"resume_redis_url",    1, 1, conf_set_redis_url,
     GW_CONFIG_FIELD(resume_redis), 0, 0, CONF_ONCE, NULL, GW_CONFIG_FIELD(resume_redis_url)},
    {"resume_stream",       1, 1, conf_set_string,
     GW_CONFIG_FIELD(resume_stream), 0, 0, CONF_ONCE, "sandbox:resume", 0},
    {"activity_interval",   1, 1, gw_config_set_activity_interval,
     GW_CONFIG_FIELD(activity_interval_ms), 10, GW_CONFIG_DURATION_LIMIT, CONF_ONCE, "1s", 0},
    {"redis_key_prefix",    1, 1, conf_set_string,
     GW_CONFIG_FIELD(redis_key_prefix), 0, 0, CONF_ONCE, "sandbox:catalog:", 0},
    {"max_header_size",     1, 1, conf_set_size,
     GW_CONFIG_FIELD(max_header_size), CONF_KILOBYTE, CONF_MEGABYTE, CONF_ONCE, "32k", 0},
    {"max_connections",     1, 1, conf_set_count,
     GW_CONFIG_FIELD(max_connections), 1, 10000000, CONF_ONCE, "100000", 0},
    {"access_log",          1, 1, gw_config_set_access_log,
     0, 0, 0, CONF_ONCE, "off", 0},
    {"log_level",           1, 1, conf_set_log_level,
     GW_CONFIG_FIELD(log_level), 0, 0, CONF_ONCE, "info", 0},
    {"upstream_deny",       1, CONF_TOKEN_LIMIT - 1, gw_config_set_upstream_deny,
     0, 0, 0, CONF_REPEATABLE, NULL, 0},
    {"instance_name",       1, 1, gw_config_set_instance_name,
     0, 0, 0, CONF_ONCE, NULL, 0},
    {"http2",               1, 1, conf_set_switch,
     GW_CONFIG_FIELD(http2), 0, 0, CONF_ONCE, "on", 0},
    {"http2_max_concurrent_streams", 1, 1, conf_set_count,
     GW_CONFIG_FIELD(http2_max_concurrent_streams), 1, 100000, CONF_ONCE, "128", 0},

    /* Durations: name, field, minimum (the maximum is GW_CONFIG_DURATION_LIMIT), default. */
    GW_CONFIG_DURATION("redis_timeout",             redis_timeout_ms,             1, "1s"),
    GW_CONFIG_DURATION("route_cache_ttl",           route_cache_ttl_ms,           0, "2s"),
    GW_CONFIG_DURATION("route_cache_ttl_notified",  route_cache_ttl_notified_ms,  0, "60s"),
    GW_CONFIG_DURATION("route_negative_ttl",        route_negative_ttl_ms,        0, "500ms"),
    GW_CONFIG_DURATION("route_stale_ttl",           route_stale_ttl_ms,           0, "30s"),
    GW_CONFIG_DURATION("upstream_connect_timeout",  upstream_connect_timeout_ms,  1, "5s"),
    GW_CONFIG_DURATION("upstream_connect_retry",    upstream_connect_retry_ms,    0, "1s"),
    GW_CONFIG_DURATION("upstream_idle_timeout",     upstream_idle_timeout_ms,     1, "4s"),
    GW_CONFIG_DURATION("upstream_response_timeout", upstream_response_timeout_ms, 1, "60s"),
    GW_CONFIG_DURATION("client_header_timeout",     client_header_timeout_ms,     1, "10s"),
    GW_CONFIG_DURATION("client_idle_timeout",       client_idle_timeout_ms,       1, "620s"),
    GW_CONFIG_DURATION("tunnel_idle_timeout",       tunnel_idle_timeout_ms,       1, "24h"),
    GW_CONFIG_DURATION("drain_delay",               drain_delay_ms,               0, "5s"),
    GW_CONFIG_DURATION("drain_timeout",             drain_timeout_ms,             0, "30s"),
    GW_CONFIG_DURATION("resume_timeout",            resume_timeout_ms,            1, "60s"),
    GW_CONFIG_DURATION("auth_cookie_ttl",           auth_cookie_ttl_ms,           1000, "24h"),
};
// clang-format on

#define GW_CONFIG_DIRECTIVE_COUNT (sizeof(gw_config_directives) / sizeof(gw_config_directives[0]))

_Static_assert(GW_CONFIG_DIRECTIVE_COUNT <= CONF_DIRECTIVE_LIMIT,
               "util/conf keeps the first line of at most CONF_DIRECTIVE_LIMIT directives");

static const conf_syntax_t gw_config_syntax = {
    .directives = gw_config_directives,
    .directive_count = GW_CONFIG_DIRECTIVE_COUNT,
    .path_offset = GW_CONFIG_FIELD(path),
    .finish = gw_config_finish,
};

/* Values */

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

/* Checks that path is a regular file this process can open for reading (reporting the line of the
 * directive, not a later start-up failure); returns 0 with its size, or -1 after an error. */
static int gw_config_check_file(conf_parser_t *parser, const conf_directive_t *directive,
                                const char *path, off_t *size) {
    /* O_NONBLOCK: a FIFO must not hang the parser. */
    int descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (descriptor < 0)
        return conf_error(parser, "cannot read \"%s\" for \"%s\": %s", path, directive->name,
                          strerror(errno));
    struct stat status;
    int result = fstat(descriptor, &status);
    int saved_errno = errno;
    close(descriptor);
    if (result != 0)
        return conf_error(parser, "cannot read \"%s\" for \"%s\": %s", path, directive->name,
                          strerror(saved_errno));
    if (!S_ISREG(status.st_mode))
        return conf_error(parser, "\"%s\" for \"%s\" is not a regular file", path, directive->name);
    *size = status.st_size;
    return 0;
}

/* Setters */

static int gw_config_set_domain(conf_parser_t *parser, const conf_directive_t *directive,
                                char **arguments, size_t argument_count) {
    gw_config_t *config = parser->target;
    const char *problem = gw_config_domain_problem(arguments[0]);
    if (problem != NULL)
        return conf_error(parser, "invalid domain \"%s\": %s", arguments[0], problem);
    for (char *c = arguments[0]; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }
    for (size_t i = 0; i < config->domain_count; i++) {
        if (strcmp(config->domains[i], arguments[0]) == 0)
            return conf_error(parser, "duplicate domain \"%s\"", arguments[0]);
    }
    char **domains = realloc(config->domains, (config->domain_count + 1) * sizeof(*domains));
    if (domains == NULL)
        return conf_error(parser, "out of memory");
    config->domains = domains;
    config->domains[config->domain_count] = strdup(arguments[0]);
    if (config->domains[config->domain_count] == NULL)
        return conf_error(parser, "out of memory");
    config->domain_count++;
    return 0;
}

/* Parses ADDR:PORT into listen and refuses an address already taken by a listener or the admin
 * endpoint: with SO_REUSEPORT both would bind, silently sharing its connections. */
static int gw_config_read_listen(conf_parser_t *parser, const conf_directive_t *directive,
                                 const char *text, gw_listen_t *listen) {
    gw_config_t *config = parser->target;
    memset(listen, 0, sizeof(*listen));
    const char *problem = conf_address_problem(text, &listen->address, &listen->address_length);
    if (problem != NULL)
        return conf_error(parser, "invalid address \"%s\" for \"%s\": %s", text, directive->name,
                          problem);
    snprintf(listen->text, sizeof(listen->text), "%s", text);
    listen->line = parser->line;
    for (size_t i = 0; i < config->listen_count; i++) {
        if (gw_config_same_address(&config->listens[i].address, &listen->address))
            return conf_error(parser, "address \"%s\" for \"%s\" is already used at line %d", text,
                              directive->name, config->listens[i].line);
    }
    if (config->has_admin_listen &&
        gw_config_same_address(&config->admin_listen.address, &listen->address))
        return conf_error(parser, "address \"%s\" for \"%s\" is already used at line %d", text,
                          directive->name, config->admin_listen.line);
    return 0;
}

static int gw_config_set_listen(conf_parser_t *parser, const conf_directive_t *directive,
                                char **arguments, size_t argument_count) {
    gw_config_t *config = parser->target;
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
            return conf_error(parser,
                              "unknown option \"%s\" for \"listen\" (tls or proxy_protocol)",
                              arguments[i]);
        if (*option)
            return conf_error(parser, "duplicate option \"%s\" for \"listen\"", arguments[i]);
        *option = true;
    }
    gw_listen_t *listens = realloc(config->listens, (config->listen_count + 1) * sizeof(*listens));
    if (listens == NULL)
        return conf_error(parser, "out of memory");
    config->listens = listens;
    config->listens[config->listen_count++] = listen;
    return 0;
}

static int gw_config_set_admin_listen(conf_parser_t *parser, const conf_directive_t *directive,
                                      char **arguments, size_t argument_count) {
    gw_config_t *config = parser->target;
    gw_listen_t listen;
    if (gw_config_read_listen(parser, directive, arguments[0], &listen) != 0)
        return -1;
    config->admin_listen = listen;
    config->has_admin_listen = true;
    return 0;
}

/* The last pair while its tls_certificate waits for its tls_certificate_key, or NULL. */
static const gw_tls_pair_t *gw_config_open_pair(const gw_config_t *config) {
    if (config->tls_pair_count == 0)
        return NULL;
    const gw_tls_pair_t *last = &config->tls_pairs[config->tls_pair_count - 1];
    return last->certificate_key == NULL ? last : NULL;
}

/* A certificate opens a pair that its tls_certificate_key closes. */
static int gw_config_set_tls_certificate(conf_parser_t *parser, const conf_directive_t *directive,
                                         char **arguments, size_t argument_count) {
    gw_config_t *config = parser->target;
    const gw_tls_pair_t *open = gw_config_open_pair(config);
    if (open != NULL)
        return conf_error_at(parser, open->line,
                             "\"tls_certificate\" without its \"tls_certificate_key\"");
    off_t size;
    if (gw_config_check_file(parser, directive, arguments[0], &size) != 0)
        return -1;
    gw_tls_pair_t *pairs =
        realloc(config->tls_pairs, (config->tls_pair_count + 1) * sizeof(*pairs));
    if (pairs == NULL)
        return conf_error(parser, "out of memory");
    config->tls_pairs = pairs;
    gw_tls_pair_t *pair = &config->tls_pairs[config->tls_pair_count];
    pair->certificate = strdup(arguments[0]);
    pair->certificate_key = NULL;
    pair->line = parser->line;
    if (pair->certificate == NULL)
        return conf_error(parser, "out of memory");
    config->tls_pair_count++;
    return 0;
}

static int gw_config_set_tls_certificate_key(conf_parser_t *parser,
                                             const conf_directive_t *directive, char **arguments,
                                             size_t argument_count) {
    gw_config_t *config = parser->target;
    if (gw_config_open_pair(config) == NULL)
        return conf_error(parser,
                          "\"tls_certificate_key\" without a \"tls_certificate\" before it");
    off_t size;
    if (gw_config_check_file(parser, directive, arguments[0], &size) != 0)
        return -1;
    gw_tls_pair_t *pair = &config->tls_pairs[config->tls_pair_count - 1];
    pair->key_line = parser->line;
    pair->certificate_key = strdup(arguments[0]);
    if (pair->certificate_key == NULL)
        return conf_error(parser, "out of memory");
    return 0;
}

static int gw_config_set_tls_ticket_key_file(conf_parser_t *parser,
                                             const conf_directive_t *directive, char **arguments,
                                             size_t argument_count) {
    gw_config_t *config = parser->target;
    off_t size = 0;
    if (gw_config_check_file(parser, directive, arguments[0], &size) != 0)
        return -1;
    if (size == 0 || size % GW_CONFIG_TICKET_KEY_SIZE != 0)
        return conf_error(parser,
                          "\"%s\" for \"%s\" must hold keys of %d bytes each, not %jd bytes",
                          arguments[0], directive->name, GW_CONFIG_TICKET_KEY_SIZE, (intmax_t)size);
    config->tls_ticket_key_file_line = parser->line;
    return conf_replace_string(parser, &config->tls_ticket_key_file, arguments[0]);
}

/* The key is read now, so that -t and a start refuse the same files. */
static int gw_config_set_auth_cookie_key_file(conf_parser_t *parser,
                                              const conf_directive_t *directive, char **arguments,
                                              size_t argument_count) {
    (void)directive;
    (void)argument_count;
    gw_config_t *config = parser->target;
    char error[512];
    if (auth_cookie_key_read(arguments[0], &config->auth_cookie_key, error, sizeof(error)) != 0)
        return conf_error(parser, "auth_cookie_key_file: %s", error);
    return conf_replace_string(parser, &config->auth_cookie_key_file, arguments[0]);
}

/* A duration, or "off" (0: no activity is written). */
static int gw_config_set_activity_interval(conf_parser_t *parser,
                                           const conf_directive_t *directive, char **arguments,
                                           size_t argument_count) {
    if (strcmp(arguments[0], "off") == 0) {
        *(uint64_t *)conf_field(parser, directive) = 0;
        return 0;
    }
    return conf_set_duration(parser, directive, arguments, argument_count);
}

const conf_redis_target_t *gw_config_resume_redis(const gw_config_t *config) {
    return config->resume_redis_url != NULL ? &config->resume_redis : &config->redis;
}

static int gw_config_set_workers(conf_parser_t *parser, const conf_directive_t *directive,
                                 char **arguments, size_t argument_count) {
    uint64_t count = 0;
    if (strcmp(arguments[0], "auto") != 0 &&
        conf_read_count(parser, directive, arguments[0], &count) != 0)
        return -1;
    /* 0 stands for auto: one worker per online core. */
    *(int *)conf_field(parser, directive) = (int)count;
    return 0;
}

static int gw_config_set_access_log(conf_parser_t *parser, const conf_directive_t *directive,
                                    char **arguments, size_t argument_count) {
    gw_config_t *config = parser->target;
    if (strcmp(arguments[0], "off") != 0)
        return conf_replace_string(parser, &config->access_log, arguments[0]);
    free(config->access_log);
    config->access_log = NULL;
    return 0;
}

static int gw_config_set_upstream_deny(conf_parser_t *parser, const conf_directive_t *directive,
                                       char **arguments, size_t argument_count) {
    gw_config_t *config = parser->target;
    cidr_t *grown = realloc(config->upstream_deny,
                            (config->upstream_deny_count + argument_count) * sizeof(*grown));
    if (grown == NULL)
        return conf_error(parser, "out of memory");
    config->upstream_deny = grown;
    for (size_t i = 0; i < argument_count; i++) {
        cidr_t *block = &config->upstream_deny[config->upstream_deny_count];
        cidr_status_t status = cidr_parse(arguments[i], block);
        if (status == CIDR_HOST_BITS) {
            char network[INET6_ADDRSTRLEN];
            inet_ntop(block->family, block->address, network, sizeof(network));
            return conf_error(parser, "\"%s\" for \"%s\" has host bits set (the block is %s/%u)",
                              arguments[i], directive->name, network, block->prefix);
        }
        if (status != CIDR_OK)
            return conf_error(parser,
                              "invalid block \"%s\" for \"%s\" (write ADDR or ADDR/LEN, IPv4 or "
                              "IPv6)",
                              arguments[i], directive->name);
        config->upstream_deny_count++;
    }
    return 0;
}

/* RFC 9110 §7.6.3: a Via received-by is a host or a pseudonym (a token). */
static int gw_config_set_instance_name(conf_parser_t *parser, const conf_directive_t *directive,
                                       char **arguments, size_t argument_count) {
    gw_config_t *config = parser->target;
    size_t length = strlen(arguments[0]);
    if (length > GW_INSTANCE_NAME_MAX ||
        strspn(arguments[0], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") !=
            length)
        return conf_error(parser,
                          "invalid name \"%s\" for \"%s\" (1 to %d letters, digits, \"-\", \".\" "
                          "or \"_\")",
                          arguments[0], directive->name, GW_INSTANCE_NAME_MAX);
    return conf_replace_string(parser, &config->instance_name, arguments[0]);
}

/* The whole file */

/* Checks what only the whole file can tell; parser->line is its last line. */
static int gw_config_finish(conf_parser_t *parser) {
    gw_config_t *config = parser->target;
    const gw_tls_pair_t *open = gw_config_open_pair(config);
    if (open != NULL)
        return conf_error_at(parser, open->line,
                             "\"tls_certificate\" without its \"tls_certificate_key\"");
    /* A missing domain or listen is the first thing to fix, before a listener's certificates. */
    if (conf_check_required(parser) != 0)
        return -1;
    for (size_t i = 0; i < config->listen_count; i++) {
        if (config->listens[i].tls && config->tls_pair_count == 0)
            return conf_error_at(
                parser, config->listens[i].line,
                "tls listener \"%s\" needs \"tls_certificate\" and \"tls_certificate_key\"",
                config->listens[i].text);
    }
    return 0;
}

/* Public entry points */

int gw_config_defaults(gw_config_t *config) {
    memset(config, 0, sizeof(*config));
    return conf_defaults(&gw_config_syntax, config, NULL, 0);
}

int gw_config_parse_bytes(gw_config_t *config, const char *name, const char *text, size_t length,
                          char *error, size_t error_size) {
    return conf_parse(&gw_config_syntax, config, name, text, length, error, error_size);
}

int gw_config_parse(gw_config_t *config, const char *name, const char *text, char *error,
                    size_t error_size) {
    return gw_config_parse_bytes(config, name, text, strlen(text), error, error_size);
}

int gw_config_load(gw_config_t *config, const char *path, char *error, size_t error_size) {
    return conf_load(&gw_config_syntax, config, path, error, error_size);
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
    free(config->auth_cookie_key_file);
    free(config->redis_url);
    conf_redis_target_free(&config->redis);
    free(config->resume_redis_url);
    free(config->resume_stream);
    conf_redis_target_free(&config->resume_redis);
    free(config->redis_key_prefix);
    free(config->access_log);
    free(config->upstream_deny);
    free(config->instance_name);
    memset(config, 0, sizeof(*config));
}
