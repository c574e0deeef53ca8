/* Auto-resume (DESIGN "Auto-resume"): requests to a paused sandbox held until it runs. */
#ifndef SGW_GATEWAY_RESUME_H
#define SGW_GATEWAY_RESUME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "gateway/config.h"
#include "gateway/metrics.h"
#include "routing/catalog.h"
#include "util/redis_link.h"

struct event_base;
struct gw_resume_watch;

typedef struct gw_hold gw_hold_t;

/* A hold ended by the sandbox's record (status and record as a lookup
 * answers: record is a new reference, or NULL), or by a drain (drained; no
 * record). The hold is no longer held when this is called. */
typedef void (*gw_hold_cb)(gw_hold_t *hold, bool drained, route_lookup_status_t status,
                           route_record_t *record, void *arg);

/* One held request; the caller embeds it (zeroed) and it allocates nothing. */
struct gw_hold {
    TAILQ_ENTRY(gw_hold) link;
    struct gw_resume_watch *watch; /* NULL when not held */
    uint64_t started_us;
    uint64_t waited_us; /* how long it was held, once it no longer is */
    gw_hold_cb callback;
    void *arg;
};

typedef struct gw_resume gw_resume_t;

/* The worker's holds: rereads through catalog (notified changes of a watched
 * sandbox reread it at once), resume requests on link (resume_redis_url),
 * counted in metrics. NULL when memory is exhausted. */
gw_resume_t *gw_resume_new(struct event_base *base, const gw_config_t *config,
                           route_catalog_t *catalog, redis_link_t *link, gw_metrics_t *metrics);

/* Forgets every watch (holds must have been cancelled: their connections
 * closed first) and frees. NULL is allowed. */
void gw_resume_free(gw_resume_t *resume);

/* Holds a request to the paused sandbox_id: the first hold of a sandbox on
 * this worker asks for a resume (SET ...:resuming NX PX, then XADD) and
 * watches the record; callback is called once the record no longer says
 * paused with auto_resume (or is gone, or malformed), or at a drain. Returns
 * 0, or -1 when resume_redis_url is down or memory is exhausted (nothing
 * held; the request is answered 503). */
int gw_resume_hold(gw_resume_t *resume, gw_hold_t *hold, const char *sandbox_id,
                   gw_hold_cb callback, void *arg);

/* Ends a hold that its request gave up on (timeout, client gone); harmless
 * when not held. */
void gw_resume_cancel(gw_hold_t *hold, gw_resume_outcome_t outcome);

/* The worker drains: holds still waiting after milliseconds are called back
 * as drained (503). */
void gw_resume_drain(gw_resume_t *resume, uint64_t milliseconds);

/* Holds now (all watches of this worker). */
uint64_t gw_resume_held(const gw_resume_t *resume);

#endif
