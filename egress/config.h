/* egress.conf: the directive table of sandbox-netpolicy, parsed and validated. */
#ifndef SGW_EGRESS_CONFIG_H
#define SGW_EGRESS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "util/conf.h"
#include "util/log.h"

/* The control plane's set of the sandboxes a node hosts: this prefix + node_id. */
#define EGRESS_CONFIG_NODE_SET_PREFIX "sandbox:node:"

typedef struct egress_config {
    char *path;                /* the file read */
    char *node_id;             /* required */
    char *redis_url;           /* as written, for the log */
    conf_redis_target_t redis; /* parsed redis_url */
    char *redis_key_prefix;    /* record key = prefix + sandbox ID */
    uint64_t resync_interval_ms;
    char *dns_server; /* ADDR[:PORT] for evdns, or NULL: /etc/resolv.conf's first nameserver */
    char *admin_listen; /* ADDR:PORT of GET /metrics and /health, or NULL */
    log_level_t log_level;
} egress_config_t;

/* Sets every default: redis://127.0.0.1:6379/0, sandbox:catalog:, 10s, info. Returns 0, or -1
 * when memory is exhausted (config must still be freed). */
int egress_config_defaults(egress_config_t *config);

/* Reads path into config (which egress_config_defaults prepared); returns 0, or -1 with
 * "FILE:LINE: message" (or "FILE: message") in error. config must be freed either way. */
int egress_config_load(egress_config_t *config, const char *path, char *error, size_t error_size);

/* As egress_config_load, on text in memory; name stands for FILE in errors. */
int egress_config_parse(egress_config_t *config, const char *name, const char *text, char *error,
                        size_t error_size);

/* Frees what config owns and zeroes it. */
void egress_config_free(egress_config_t *config);

#endif
