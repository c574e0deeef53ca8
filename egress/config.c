/* egress.conf: the directive table of sandbox-netpolicy, read by util/conf into egress_config_t. */
#include "egress/config.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/util.h>

static conf_setter_t egress_config_set_node_id;
static conf_setter_t egress_config_set_dns_server;
static conf_setter_t egress_config_set_admin_listen;

// clang-format off
#define EGRESS_CONFIG_FIELD(field) offsetof(egress_config_t, field)
/* Every directive of DESIGN.md's egress section, with its default, as egress.conf documents them.
 * Every directive takes exactly one argument and may appear once. */
static const conf_directive_t egress_config_directives[] = {
    /* name                     arguments  setter
     *   field, bounds (minimum, maximum), flags, default, the URL's field (redis_url only) */
    {"node_id",                 1, 1, egress_config_set_node_id,
     EGRESS_CONFIG_FIELD(node_id), 0, 0, CONF_REQUIRED, NULL, 0},
    {"redis_url",               1, 1, conf_set_redis_url,
     EGRESS_CONFIG_FIELD(redis), 0, 0, CONF_ONCE, "redis://127.0.0.1:6379/0",
     EGRESS_CONFIG_FIELD(redis_url)},
    {"redis_key_prefix",        1, 1, conf_set_string,
     EGRESS_CONFIG_FIELD(redis_key_prefix), 0, 0, CONF_ONCE, "sandbox:catalog:", 0},
    /* Below 100 ms a resync would compete with the changes it backs up; a day is plenty. */
    {"policy_resync_interval",  1, 1, conf_set_duration,
     EGRESS_CONFIG_FIELD(resync_interval_ms), 100, 24 * CONF_HOUR, CONF_ONCE, "10s", 0},
    /* Where domain entries are resolved; absent: the first nameserver of /etc/resolv.conf. */
    {"dns_server",              1, 1, egress_config_set_dns_server,
     EGRESS_CONFIG_FIELD(dns_server), 0, 0, CONF_ONCE, NULL, 0},
    /* GET /metrics and /health; absent: none. */
    {"admin_listen",            1, 1, egress_config_set_admin_listen,
     EGRESS_CONFIG_FIELD(admin_listen), 0, 0, CONF_ONCE, NULL, 0},
    {"log_level",               1, 1, conf_set_log_level,
     EGRESS_CONFIG_FIELD(log_level), 0, 0, CONF_ONCE, "info", 0},
};
// clang-format on

static const conf_syntax_t egress_config_syntax = {
    .directives = egress_config_directives,
    .directive_count = sizeof(egress_config_directives) / sizeof(egress_config_directives[0]),
    .path_offset = EGRESS_CONFIG_FIELD(path),
    .finish = NULL,
};

_Static_assert(sizeof(egress_config_directives) / sizeof(egress_config_directives[0]) <=
                   CONF_DIRECTIVE_LIMIT,
               "util/conf keeps the first line of at most CONF_DIRECTIVE_LIMIT directives");

/* The node's ID becomes part of a Redis key and of a subscription pattern: printable, no
 * spaces (the tokenizer already splits on them). */
static int egress_config_set_node_id(conf_parser_t *parser, const conf_directive_t *directive,
                                     char **arguments, size_t argument_count) {
    if (strlen(arguments[0]) > 255)
        return conf_error(parser, "\"%s\" is longer than 255 bytes", directive->name);
    for (const char *c = arguments[0]; *c != '\0'; c++) {
        if ((unsigned char)*c >= 0x7f)
            return conf_error(parser, "invalid %s \"%s\": printable ASCII only", directive->name,
                              arguments[0]);
    }
    return conf_set_string(parser, directive, arguments, argument_count);
}

/* "ADDR", "ADDR:PORT" or "[IPv6]:PORT", as evdns takes a nameserver. */
static int egress_config_set_dns_server(conf_parser_t *parser, const conf_directive_t *directive,
                                        char **arguments, size_t argument_count) {
    struct sockaddr_storage address;
    int address_length = (int)sizeof(address);
    if (evutil_parse_sockaddr_port(arguments[0], (struct sockaddr *)&address, &address_length) != 0)
        return conf_error(parser,
                          "invalid %s \"%s\": write an IP address, ADDR:PORT or [IPv6]:PORT",
                          directive->name, arguments[0]);
    return conf_set_string(parser, directive, arguments, argument_count);
}

/* "ADDR:PORT" or "[IPv6]:PORT", a port given. */
static int egress_config_set_admin_listen(conf_parser_t *parser, const conf_directive_t *directive,
                                          char **arguments, size_t argument_count) {
    struct sockaddr_storage address;
    int address_length = (int)sizeof(address);
    bool parsed =
        evutil_parse_sockaddr_port(arguments[0], (struct sockaddr *)&address, &address_length) == 0;
    uint16_t port = !parsed                        ? 0
                    : address.ss_family == AF_INET ? ((struct sockaddr_in *)&address)->sin_port
                                                   : ((struct sockaddr_in6 *)&address)->sin6_port;
    if (port == 0)
        return conf_error(parser, "invalid %s \"%s\": write ADDR:PORT or [IPv6]:PORT",
                          directive->name, arguments[0]);
    return conf_set_string(parser, directive, arguments, argument_count);
}

int egress_config_defaults(egress_config_t *config) {
    memset(config, 0, sizeof(*config));
    return conf_defaults(&egress_config_syntax, config, NULL, 0);
}

int egress_config_parse(egress_config_t *config, const char *name, const char *text, char *error,
                        size_t error_size) {
    return conf_parse(&egress_config_syntax, config, name, text, strlen(text), error, error_size);
}

int egress_config_load(egress_config_t *config, const char *path, char *error, size_t error_size) {
    return conf_load(&egress_config_syntax, config, path, error, error_size);
}

void egress_config_free(egress_config_t *config) {
    free(config->path);
    free(config->node_id);
    free(config->redis_url);
    conf_redis_target_free(&config->redis);
    free(config->redis_key_prefix);
    free(config->dns_server);
    free(config->admin_listen);
    memset(config, 0, sizeof(*config));
}
