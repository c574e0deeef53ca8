/* Auto-resume (DESIGN "Auto-resume"): requests to a paused sandbox held until it runs. */
#include "gateway/resume.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/strmap.h"

/* The fallback when no notification comes: the record is read again this often. */
enum { GW_RESUME_REREAD_MS = 250 };
/* Held requests released per loop turn: each dials its sandbox, and ten
 * thousand at once would stall every other connection of the worker. */
enum { GW_RESUME_BATCH = 64 };

/* One paused sandbox this worker holds requests for: one reread and one
 * resume request at a time, whatever the number of holds. */
typedef struct gw_resume_watch {
    gw_resume_t *resume;              /* NULL once the module was freed */
    LIST_ENTRY(gw_resume_watch) link; /* in the module's list until closed */
    bool listed;
    strmap_entry_t *entry; /* in the map while it watches (not once releasing) */
    TAILQ_HEAD(gw_holds, gw_hold) holds;
    size_t count;
    route_waiter_t reader; /* the reread in flight */
    struct event *timer;   /* GW_RESUME_REREAD_MS; every loop turn while releasing */
    int references;        /* the module's, and one per command in flight */
    bool asking;           /* a SET NX in flight */
    /* Releasing: the holds go on in batches with this answer. */
    bool releasing;
    gw_resume_outcome_t outcome;
    route_lookup_status_t status;
    route_record_t *record;
    char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
} gw_resume_watch_t;

struct gw_resume {
    struct event_base *base;
    const gw_config_t *config;
    route_catalog_t *catalog;
    redis_link_t *link;
    gw_metrics_t *metrics;
    strmap_t watches; /* sandbox ID -> gw_resume_watch_t */
    LIST_HEAD(gw_resume_watches, gw_resume_watch) watch_list;
    struct event *drain_timer;
    bool drained; /* the drain's deadline passed: nothing more is held */
};

static void gw_resume_watch_release(gw_resume_watch_t *watch) {
    if (--watch->references > 0)
        return;
    if (watch->timer != NULL)
        event_free(watch->timer);
    free(watch);
}

/* Takes watch out of the map: later holds of its sandbox start a new watch. */
static void gw_resume_watch_unmap(gw_resume_watch_t *watch) {
    if (watch->entry == NULL)
        return;
    strmap_remove(&watch->resume->watches, watch->entry);
    watch->entry = NULL;
}

/* Takes watch out of the module (map, list, timer, reread, answer); the
 * holds it still lists are the caller's to end. */
static void gw_resume_watch_close(gw_resume_watch_t *watch) {
    if (!watch->listed)
        return;
    gw_resume_watch_unmap(watch);
    LIST_REMOVE(watch, link);
    watch->listed = false;
    evtimer_del(watch->timer);
    route_catalog_cancel(&watch->reader);
    route_record_unref(watch->record);
    watch->record = NULL;
    gw_resume_watch_release(watch); /* the module's */
}

/* Ends one hold: counted, no longer in its watch. */
static void gw_resume_unhold(gw_hold_t *hold, gw_resume_outcome_t outcome) {
    gw_resume_watch_t *watch = hold->watch;
    TAILQ_REMOVE(&watch->holds, hold, link);
    watch->count--;
    hold->watch = NULL;
    hold->waited_us = clock_us() - hold->started_us;
    if (watch->resume != NULL) {
        GW_METRIC_ADD(watch->resume->metrics, resume_held, -1);
        gw_metrics_observe_hold(watch->resume->metrics, outcome, hold->waited_us);
    }
}

/* Calls back up to limit holds of a releasing watch (each gets its own
 * reference to the record), and closes it once none is left. A callback may
 * end other holds, or add new ones elsewhere. */
static void gw_resume_release_batch(gw_resume_watch_t *watch, size_t limit) {
    watch->references++;
    gw_hold_t *hold;
    for (size_t i = 0; i < limit && (hold = TAILQ_FIRST(&watch->holds)) != NULL; i++) {
        gw_resume_unhold(hold, watch->outcome);
        hold->callback(hold, watch->outcome == GW_RESUME_DRAIN, watch->status,
                       watch->record != NULL ? route_record_ref(watch->record) : NULL, hold->arg);
    }
    if (watch->count == 0)
        gw_resume_watch_close(watch);
    gw_resume_watch_release(watch);
}

/* The wait of watch's holds ended (record borrowed): they go on, GW_RESUME_BATCH
 * a loop turn, all at once for a drain. */
static void gw_resume_release(gw_resume_watch_t *watch, gw_resume_outcome_t outcome,
                              route_lookup_status_t status, route_record_t *record) {
    gw_resume_watch_unmap(watch);
    route_catalog_cancel(&watch->reader);
    watch->releasing = true;
    watch->outcome = outcome;
    watch->status = status;
    watch->record = record != NULL ? route_record_ref(record) : NULL;
    bool drain = outcome == GW_RESUME_DRAIN;
    if (!drain) {
        /* From the next loop turn on, a batch each turn: the timer persists
         * at 1 us (at 0, libevent would not add a persistent timer again). */
        struct timeval next = {0, 1};
        event_add(watch->timer, &next);
    }
    gw_resume_release_batch(watch, drain ? SIZE_MAX : GW_RESUME_BATCH);
}

/* ---- the resume request ---- */

static void gw_resume_added(redisAsyncContext *context, void *reply_pointer, void *privdata) {
    gw_resume_watch_t *watch = privdata;
    redisReply *reply = reply_pointer;
    if (reply == NULL)
        redis_link_lost_context(context);
    if (watch->resume != NULL && reply != NULL) {
        if (reply->type == REDIS_REPLY_STRING) {
            GW_METRIC_ADD(watch->resume->metrics, resume_requests, 1);
            log_info("resume: asked for sandbox %s (%s %s)", watch->sandbox_id,
                     watch->resume->config->resume_stream, reply->str);
        } else {
            log_warn("resume: XADD %s for sandbox %s refused: %s",
                     watch->resume->config->resume_stream, watch->sandbox_id,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        }
    }
    gw_resume_watch_release(watch);
}

/* The answer to SET ...:resuming NX: only the gateway that set it writes to
 * the stream, so the fleet sends one request per resume. */
static void gw_resume_asked(redisAsyncContext *context, void *reply_pointer, void *privdata) {
    gw_resume_watch_t *watch = privdata;
    redisReply *reply = reply_pointer;
    watch->asking = false;
    if (reply == NULL)
        redis_link_lost_context(context);
    gw_resume_t *resume = watch->resume;
    if (resume != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR)
        log_warn("resume: SET %s%s:resuming refused: %s", resume->config->redis_key_prefix,
                 watch->sandbox_id, reply->str);
    if (resume != NULL && reply != NULL && reply->type == REDIS_REPLY_STATUS &&
        resume->link->state == REDIS_LINK_READY &&
        redisAsyncCommand(resume->link->context, gw_resume_added, watch, "XADD %s * sandbox_id %s",
                          resume->config->resume_stream, watch->sandbox_id) == REDIS_OK) {
        watch->references++;
    }
    gw_resume_watch_release(watch);
}

/* Sets the sandbox's :resuming key if it is not there (the first hold, or a
 * key that expired while the sandbox stayed paused). */
static void gw_resume_ask(gw_resume_watch_t *watch) {
    gw_resume_t *resume = watch->resume;
    if (watch->asking || resume->link->state != REDIS_LINK_READY)
        return;
    if (redisAsyncCommand(resume->link->context, gw_resume_asked, watch,
                          "SET %s%s:resuming 1 NX PX %llu", resume->config->redis_key_prefix,
                          watch->sandbox_id,
                          (unsigned long long)resume->config->resume_timeout_ms) != REDIS_OK)
        return;
    watch->asking = true;
    watch->references++;
}

/* ---- watching the record ---- */

/* What a read of the record says: still paused (ask again if the key went),
 * or the holds go on with it. */
static void gw_resume_read(route_lookup_status_t status, route_record_t *record, void *arg) {
    gw_resume_watch_t *watch = arg;
    if (status == ROUTE_LOOKUP_UNAVAILABLE) {
        /* Redis is down: the holds wait on, until resume_timeout. */
    } else if (status == ROUTE_LOOKUP_FOUND && record->paused && record->auto_resume) {
        gw_resume_ask(watch);
    } else {
        bool running = status == ROUTE_LOOKUP_FOUND && !record->paused;
        gw_resume_t *resume = watch->resume;
        if (running && resume->link->state == REDIS_LINK_READY)
            redisAsyncCommand(resume->link->context, NULL, NULL, "DEL %s%s:resuming",
                              resume->config->redis_key_prefix, watch->sandbox_id);
        if (running)
            log_info("resume: sandbox %s runs; %zu held requests go on", watch->sandbox_id,
                     watch->count);
        gw_resume_release(watch, running ? GW_RESUME_RESUMED : GW_RESUME_FAILED, status, record);
    }
    route_record_unref(record);
}

static void gw_resume_reread(gw_resume_watch_t *watch) {
    route_catalog_cancel(&watch->reader);
    route_lookup_status_t status;
    route_record_t *record;
    if (route_catalog_reread(watch->resume->catalog, watch->sandbox_id, &watch->reader,
                             gw_resume_read, watch, &status, &record) == 1)
        gw_resume_read(status, record, watch);
}

static void gw_resume_tick(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_resume_watch_t *watch = arg;
    if (watch->releasing)
        gw_resume_release_batch(watch, GW_RESUME_BATCH);
    else if (watch->reader.pending == NULL) /* a slow reply is waited for, not piled on */
        gw_resume_reread(watch);
}

/* A notification: a watched record changed, read it now. */
static void gw_resume_changed(const char *sandbox_id, void *arg) {
    gw_resume_t *resume = arg;
    strmap_entry_t *found = strmap_get(&resume->watches, sandbox_id, strlen(sandbox_id));
    if (found != NULL)
        gw_resume_reread(found->value);
}

/* ---- holds ---- */

int gw_resume_hold(gw_resume_t *resume, gw_hold_t *hold, const char *sandbox_id,
                   gw_hold_cb callback, void *arg) {
    if (resume->drained || resume->link->state != REDIS_LINK_READY)
        return -1;
    size_t length = strlen(sandbox_id);
    strmap_entry_t *found = strmap_get(&resume->watches, sandbox_id, length);
    gw_resume_watch_t *watch = found != NULL ? found->value : NULL;
    if (watch == NULL) {
        watch = calloc(1, sizeof(*watch));
        if (watch == NULL)
            return -1;
        watch->resume = resume;
        watch->references = 1;
        TAILQ_INIT(&watch->holds);
        memcpy(watch->sandbox_id, sandbox_id, length + 1);
        watch->timer = event_new(resume->base, -1, EV_PERSIST, gw_resume_tick, watch);
        struct timeval every = clock_timeval(GW_RESUME_REREAD_MS);
        if (watch->timer == NULL ||
            (watch->entry = strmap_put(&resume->watches, sandbox_id, length, watch)) == NULL) {
            gw_resume_watch_release(watch);
            return -1;
        }
        LIST_INSERT_HEAD(&resume->watch_list, watch, link);
        watch->listed = true;
        event_add(watch->timer, &every);
        gw_resume_ask(watch);
    }
    hold->watch = watch;
    hold->started_us = clock_us();
    hold->waited_us = 0;
    hold->callback = callback;
    hold->arg = arg;
    TAILQ_INSERT_TAIL(&watch->holds, hold, link);
    watch->count++;
    GW_METRIC_ADD(resume->metrics, resume_held, 1);
    return 0;
}

void gw_resume_cancel(gw_hold_t *hold, gw_resume_outcome_t outcome) {
    gw_resume_watch_t *watch = hold->watch;
    if (watch == NULL)
        return;
    gw_resume_unhold(hold, outcome);
    if (watch->count == 0)
        gw_resume_watch_close(watch);
}

uint64_t gw_resume_held(const gw_resume_t *resume) {
    return GW_METRIC_READ(resume->metrics, resume_held);
}

/* drain_timeout: what is still held is answered 503. */
static void gw_resume_drain_expired(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_resume_t *resume = arg;
    resume->drained = true;
    gw_resume_watch_t *watch;
    while ((watch = LIST_FIRST(&resume->watch_list)) != NULL) {
        if (watch->releasing) /* answered from the record, all at once */
            gw_resume_release_batch(watch, SIZE_MAX);
        else
            gw_resume_release(watch, GW_RESUME_DRAIN, ROUTE_LOOKUP_UNAVAILABLE, NULL);
    }
}

void gw_resume_drain(gw_resume_t *resume, uint64_t milliseconds) {
    if (resume->drain_timer == NULL)
        resume->drain_timer = evtimer_new(resume->base, gw_resume_drain_expired, resume);
    if (resume->drain_timer != NULL && !evtimer_pending(resume->drain_timer, NULL))
        clock_arm(resume->drain_timer, milliseconds);
}

gw_resume_t *gw_resume_new(struct event_base *base, const gw_config_t *config,
                           route_catalog_t *catalog, redis_link_t *link, gw_metrics_t *metrics) {
    gw_resume_t *resume = calloc(1, sizeof(*resume));
    if (resume == NULL)
        return NULL;
    if (strmap_init(&resume->watches) != 0) {
        free(resume);
        return NULL;
    }
    resume->base = base;
    resume->config = config;
    resume->catalog = catalog;
    resume->link = link;
    resume->metrics = metrics;
    LIST_INIT(&resume->watch_list);
    route_catalog_on_change(catalog, gw_resume_changed, resume);
    return resume;
}

void gw_resume_free(gw_resume_t *resume) {
    if (resume == NULL)
        return;
    route_catalog_on_change(resume->catalog, NULL, NULL);
    gw_resume_watch_t *watch;
    while ((watch = LIST_FIRST(&resume->watch_list)) != NULL) {
        gw_hold_t *hold;
        while ((hold = TAILQ_FIRST(&watch->holds)) != NULL) {
            TAILQ_REMOVE(&watch->holds, hold, link);
            hold->watch = NULL;
        }
        /* Replies still in flight hold it; they find no module. */
        watch->references++;
        gw_resume_watch_close(watch);
        watch->resume = NULL;
        gw_resume_watch_release(watch);
    }
    if (resume->drain_timer != NULL)
        event_free(resume->drain_timer);
    strmap_free(&resume->watches);
    free(resume);
}
