/* gateway.conf: the directive table of DESIGN.md, parsed and validated into gw_config_t. */
#ifndef SGW_GATEWAY_CONFIG_H
#define SGW_GATEWAY_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>

#include "auth/cookie.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util/cidr.h"
#include "util/conf.h"
#include "util/log.h"

typedef struct gw_listen {
    struct sockaddr_storage address; /* parsed ADDR:PORT, [v6]:PORT */
    socklen_t address_length;
    char text[CONF_ADDRESS_LIMIT];   /* as written in the file */
    bool tls;
    bool proxy_protocol;
    int line;
} gw_listen_t;

typedef struct gw_tls_pair {
    char *certificate;     /* tls_certificate FILE */
    char *certificate_key; /* tls_certificate_key FILE; NULL until its line is read */
    int line;              /* of tls_certificate */
    int key_line;          /* of tls_certificate_key */
} gw_tls_pair_t;

typedef struct gw_config {
    char *path; /* the file read */

    char **domains; /* lower-case, no leading or trailing dot */
    size_t domain_count;
    gw_listen_t *listens;
    size_t listen_count;
    gw_tls_pair_t *tls_pairs;
    size_t tls_pair_count;
    char *tls_ticket_key_file;
    int tls_ticket_key_file_line;

    char *auth_cookie_key_file; /* NULL: a random key per process */
    auth_cookie_key_t auth_cookie_key; /* read from it while parsing */
    uint64_t auth_cookie_ttl_ms;

    bool has_admin_listen;
    gw_listen_t admin_listen;

    int workers; /* 0 means auto: one per online core */

    char *redis_url;
    conf_redis_target_t redis;
    char *resume_redis_url;            /* NULL: redis_url (gw_config_resume_redis) */
    conf_redis_target_t resume_redis;
    char *resume_stream;               /* the stream resume requests are added to */
    uint64_t resume_timeout_ms;        /* how long a request to a paused sandbox is held */
    uint64_t activity_interval_ms;     /* 0: off */
    char *redis_key_prefix;

    /* Durations, all in milliseconds. */
    uint64_t redis_timeout_ms;
    uint64_t route_cache_ttl_ms;
    uint64_t route_cache_ttl_notified_ms; /* while keyspace notifications drop changed routes */
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
    bool http2;                        /* HTTP/2 to clients: ALPN h2, h2c prior knowledge */
    long http2_max_concurrent_streams; /* per client connection */

    cidr_t *upstream_deny; /* blocks a record may not point at */
    size_t upstream_deny_count;
    char *instance_name;   /* this gateway's name in Via; NULL: random per process */

    char *access_log; /* NULL when off; "stderr" or a path */
    log_level_t log_level;
} gw_config_t;

/* The longest instance_name (a Via received-by pseudonym). */
enum { GW_INSTANCE_NAME_MAX = 63 };

/* Where resume requests and activity are written: resume_redis_url, else redis_url. */
const conf_redis_target_t *gw_config_resume_redis(const gw_config_t *config);

/* Sets every default of DESIGN.md (the directive table's); required directives stay empty.
 * Returns 0, or -1 when memory is exhausted (config must still be freed). */
int gw_config_defaults(gw_config_t *config);

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

#endif
