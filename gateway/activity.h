/* Sandbox activity and usage (DESIGN "Activity"): per worker, written to Redis once an interval. */
#ifndef SGW_GATEWAY_ACTIVITY_H
#define SGW_GATEWAY_ACTIVITY_H

#include <stdint.h>

#include "gateway/config.h"
#include "util/redis_link.h"
#include "util/slots.h"

struct event_base;

typedef struct gw_activity gw_activity_t;
typedef struct gw_activity_entry gw_activity_entry_t;

/* The worker's activity writer on base, writing on link (the worker's
 * connection to resume_redis_url); NULL when activity_interval is off, or
 * memory is exhausted (logged). */
gw_activity_t *gw_activity_new(struct event_base *base, const gw_config_t *config,
                               redis_link_t *link);

/* Writes nothing more and frees. NULL is allowed. */
void gw_activity_free(gw_activity_t *activity);

/* A routed request to sandbox_id started: its last request is now, and it
 * counts as active in every interval until gw_activity_ended. Returns the
 * sandbox's entry for that call (it stays while requests are in flight), or
 * NULL (activity off, or out of memory: the request goes uncounted). hint
 * (NULL when there is none, e.g. no cached record) is where the sandbox's
 * entry was found before, and is noted when it no longer finds it. */
gw_activity_entry_t *gw_activity_started(gw_activity_t *activity, const char *sandbox_id,
                                         slot_hint_t *hint);

/* That request ended (its tunnel closed), having received bytes_in from the
 * client and sent it bytes_out; entry is what gw_activity_started returned
 * (NULL is allowed). */
void gw_activity_ended(gw_activity_entry_t *entry, uint64_t bytes_in, uint64_t bytes_out);

#endif
