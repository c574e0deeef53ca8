/* gateway.conf: the directive table of DESIGN.md, parsed and validated into gw_config_t. */
#ifndef SGW_GATEWAY_CONFIG_H
#define SGW_GATEWAY_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util/cidr.h"
#include "util/log.h"

typedef struct gw_listen {
    struct sockaddr_storage address; /* parsed ADDR:PORT, [v6]:PORT */
    socklen_t address_length;
    char text[64];                   /* as written in the file */
    bool tls;
    bool proxy_protocol;
    int line;
} gw_listen_t;

typedef struct gw_tls_pair {
    char *certificate;     /* tls_certificate FILE */
    char *certificate_key; /* tls_certificate_key FILE */
} gw_tls_pair_t;

typedef struct gw_redis_target {
    char *host;       /* NULL for a unix socket */
    int port;
    char *unix_path;  /* NULL for TCP */
    int database;
} gw_redis_target_t;

typedef struct gw_config {
    char *path; /* the file read */

    char **domains; /* lower-case, no leading or trailing dot */
    size_t domain_count;
    gw_listen_t *listens;
    size_t listen_count;
    gw_tls_pair_t *tls_pairs;
    size_t tls_pair_count;
    char *tls_ticket_key_file;

    bool has_admin_listen;
    gw_listen_t admin_listen;

    int workers; /* 0 means auto: one per online core */

    char *redis_url;
    gw_redis_target_t redis;
    char *redis_key_prefix;

    /* Durations, all in milliseconds. */
    uint64_t redis_timeout_ms;
    uint64_t route_cache_ttl_ms;
    uint64_t route_negative_ttl_ms;
    uint64_t route_stale_ttl_ms;
    uint64_t upstream_connect_timeout_ms;
    uint64_t upstream_connect_retry_ms;
    uint64_t upstream_idle_timeout_ms;
    uint64_t upstream_response_timeout_ms;
    uint64_t client_header_timeout_ms;
    uint64_t client_idle_timeout_ms;
    uint64_t tunnel_idle_timeout_ms;
    uint64_t drain_delay_ms;
    uint64_t drain_timeout_ms;

    size_t max_header_size; /* bytes */
    long max_connections;

    cidr_t *upstream_deny; /* blocks a record may not point at */
    size_t upstream_deny_count;
    char *instance_name;   /* this gateway's name in Via; NULL: random per process */

    char *access_log; /* NULL when off; "stderr" or a path */
    log_level_t log_level;
} gw_config_t;

/* The longest instance_name (a Via received-by pseudonym). */
enum { GW_INSTANCE_NAME_MAX = 63 };

/* Sets every default of DESIGN.md; required directives stay empty. */
void gw_config_defaults(gw_config_t *config);

/* Reads path into config (which gw_config_defaults prepared); returns 0, or -1
 * with "FILE:LINE: message" (or "FILE: message") in error. On -1 config holds
 * whatever was parsed and must still be freed. */
int gw_config_load(gw_config_t *config, const char *path, char *error, size_t error_size);

/* As gw_config_load, on text already in memory; name stands for FILE in errors. */
int gw_config_parse(gw_config_t *config, const char *name, const char *text, char *error,
                    size_t error_size);

/* As gw_config_parse, on length bytes that may hold NULs (an error names the line). */
int gw_config_parse_bytes(gw_config_t *config, const char *name, const char *text, size_t length,
                          char *error, size_t error_size);

/* Frees what config owns and leaves it zeroed. */
void gw_config_free(gw_config_t *config);

/* Splits line (NUL-terminated, no line ending) in place into whitespace-separated
 * tokens, a "#" at the start of a token ending the line; stores the first limit
 * in tokens and sets *count to how many there are (possibly more than limit).
 * Returns 0, or the first control byte found (the line is then invalid).
 * Shared by every configuration file of the project. */
int gw_config_split_line(char *line, char **tokens, size_t limit, size_t *count);

/* The longest configuration line, in bytes, without its line ending. */
enum { GW_CONFIG_LINE_LIMIT = 4096 };

typedef enum gw_config_lines_status {
    GW_CONFIG_LINES_OK = 0,
    GW_CONFIG_LINES_FAILED,   /* parse_line returned -1 (and reported why) */
    GW_CONFIG_LINES_TOO_LONG, /* a line over GW_CONFIG_LINE_LIMIT */
    GW_CONFIG_LINES_NUL,      /* a NUL byte, which would hide the rest of the line */
} gw_config_lines_status_t;

/* Calls parse_line(arg, line) with each line of text as a NUL-terminated copy
 * (LF or CRLF ends removed), counting lines in *line_number (1 for the first);
 * stops at the first problem. Shared by every configuration file of the project. */
gw_config_lines_status_t gw_config_split_lines(const char *text, size_t length, int *line_number,
                                               int (*parse_line)(void *arg, char *line),
                                               void *arg);

/* Parses "500ms", "2s", "5m", "24h" (a bare number is seconds); returns 0 or -1. */
int gw_config_parse_duration(const char *text, uint64_t *milliseconds);

/* Parses "32k", "1m", "4096" (bytes); returns 0 or -1. */
int gw_config_parse_size(const char *text, size_t *bytes);

/* Parses "ADDR:PORT" ("[::]:443" for IPv6, "*:80" for all IPv4); returns 0 or -1. */
int gw_config_parse_address(const char *text, struct sockaddr_storage *address,
                            socklen_t *address_length);

/* Parses "redis://HOST[:PORT][/DB]" (HOST a name, IPv4 or [IPv6]; defaults 6379 and 0) or
 * "unix:///PATH[?db=N]" into target; returns 0, or -1 with *reason saying why. The target's
 * strings are the caller's: free them with gw_config_free_redis_target. */
int gw_config_parse_redis_url(const char *text, gw_redis_target_t *target, const char **reason);

/* Frees the strings of a target that gw_config_parse_redis_url filled, and zeroes it. */
void gw_config_free_redis_target(gw_redis_target_t *target);

#endif
