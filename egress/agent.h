/* The node agent: follows the node's sandboxes in Redis and keeps their egress rules in force. */
#ifndef SGW_EGRESS_AGENT_H
#define SGW_EGRESS_AGENT_H

#include <stddef.h>

#include "egress/config.h"
#include "egress/metrics.h"

struct event_base;

typedef struct egress_agent egress_agent_t;

/* Creates the agent on base and starts connecting to Redis (never blocks); config must outlive
 * the agent. Returns NULL with a message in error. */
egress_agent_t *egress_agent_new(struct event_base *base, const egress_config_t *config,
                                 char *error, size_t error_size);

/* Closes the Redis connections and frees; the rules in force stay as they are (fail closed). */
void egress_agent_free(egress_agent_t *agent);

/* Reads the node set and every record again now, as the periodic resync does (SIGHUP). */
void egress_agent_resync(egress_agent_t *agent);

/* The agent's counters, for its admin_listen. */
const egress_metrics_t *egress_agent_metrics(const egress_agent_t *agent);

#endif
