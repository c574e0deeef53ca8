/* The agent's admin_listen: GET /metrics (Prometheus text) and GET /health, over evhttp. */
#ifndef SGW_EGRESS_ADMIN_H
#define SGW_EGRESS_ADMIN_H

#include <stddef.h>

#include "egress/metrics.h"

struct event_base;

typedef struct egress_admin egress_admin_t;

/* Listens on address ("ADDR:PORT", "[IPv6]:PORT") and serves metrics, which must outlive the
 * admin. Returns NULL with a message in error. */
egress_admin_t *egress_admin_new(struct event_base *base, const char *address,
                                 const egress_metrics_t *metrics, char *error, size_t error_size);

/* Closes the listener and its connections, and frees. */
void egress_admin_free(egress_admin_t *admin);

#endif
