/* Sandbox activity and usage (DESIGN "Activity"): per worker, written to Redis once an interval. */
#include "gateway/activity.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "routing/host.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/redis_link.h"
#include "util/strmap.h"

/* An interval's writes go out in steps of GW_ACTIVITY_STEP sandboxes, one
 * step every GW_ACTIVITY_STEP_GAP_MS. All at once, 10,000 sandboxes are some
 * 30,000 commands: formatting them held this worker's requests for about
 * 20 ms, and Redis (often the catalog's too) then spent some 70 ms on them
 * while every lookup waited behind. Paced, 10,000 sandboxes take 80 ms of
 * each interval, and no step holds the loop or Redis for more than a moment. */
enum { GW_ACTIVITY_STEP = 256, GW_ACTIVITY_STEP_GAP_MS = 2 };

/* One sandbox this worker served: what the next write says of it. A
 * util/slots item: what a request changes is in the first cache line. */
struct gw_activity_entry {
    uint64_t last_request_ms;               /* Unix ms of its last request's start */
    uint64_t requests, bytes_in, bytes_out; /* since the last write */
    uint32_t in_flight; /* requests (tunnels, streams) not ended: active every interval */
    bool touched;       /* a request started since the last write */
    TAILQ_ENTRY(gw_activity_entry) link; /* in the order the next write visits */
    strmap_entry_t *map_entry;           /* its ID, in sandboxes */
    uint64_t written;                    /* the write that last visited it */
};

/* One ZADD for the active sandboxes of a step: GT applies to each member. */
typedef struct gw_activity_zadd {
    int members;
    const char *argv[3 + 2 * GW_ACTIVITY_STEP]; /* ZADD sandbox:activity GT, then score, ID */
    size_t lengths[3 + 2 * GW_ACTIVITY_STEP];
    char scores[GW_ACTIVITY_STEP][24];
} gw_activity_zadd_t;

struct gw_activity {
    struct event_base *base;
    redis_link_t *link; /* the worker's, to resume_redis_url */
    strmap_t sandboxes; /* ID -> gw_activity_entry_t */
    slots_t entries;    /* kept until gw_activity_free, for the records' hints */
    TAILQ_HEAD(, gw_activity_entry) order; /* written ones go to the tail */
    uint64_t writes;                       /* the current write's number: ticks so far */
    struct event *timer;
    struct event *step; /* the current write's next step */
    uint64_t interval_ms;
    gw_activity_zadd_t zadd;
};

/* Unix ms as of this loop turn's start: activity is written once a second,
 * and a clock read per request costs more than it would tell. */
static uint64_t gw_activity_now_ms(const gw_activity_t *activity) {
    struct timeval now;
    event_base_gettimeofday_cached(activity->base, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_usec / 1000;
}

static gw_activity_entry_t *gw_activity_entry(gw_activity_t *activity, const char *sandbox_id) {
    size_t length = strlen(sandbox_id);
    strmap_entry_t *found = strmap_get(&activity->sandboxes, sandbox_id, length);
    if (found != NULL)
        return found->value;
    gw_activity_entry_t *entry = slots_take(&activity->entries);
    if (entry == NULL)
        return NULL;
    found = strmap_put(&activity->sandboxes, sandbox_id, length, entry);
    if (found == NULL) {
        slots_give(&activity->entries, entry);
        return NULL;
    }
    entry->map_entry = found;
    /* A write under way has passed it: the next one says it. */
    entry->written = activity->writes;
    TAILQ_INSERT_TAIL(&activity->order, entry, link);
    return entry;
}

gw_activity_entry_t *gw_activity_started(gw_activity_t *activity, const char *sandbox_id,
                                         slot_hint_t *hint) {
    if (activity == NULL)
        return NULL;
    /* An entry the hint still finds is the sandbox's: an entry given back
     * and taken for another sandbox is not found by hints noted before. */
    gw_activity_entry_t *entry = hint != NULL ? slots_hinted(hint) : NULL;
    if (entry == NULL) {
        entry = gw_activity_entry(activity, sandbox_id);
        if (entry == NULL)
            return NULL;
        if (hint != NULL)
            slots_note(hint, entry);
    }
    entry->last_request_ms = gw_activity_now_ms(activity);
    entry->touched = true;
    entry->in_flight++;
    entry->requests++;
    return entry;
}

void gw_activity_ended(gw_activity_entry_t *entry, uint64_t bytes_in, uint64_t bytes_out) {
    if (entry == NULL)
        return;
    if (entry->in_flight > 0)
        entry->in_flight--;
    entry->bytes_in += bytes_in;
    entry->bytes_out += bytes_out;
}

/* Adds one sandbox's usage to the pipeline and its activity to the step's
 * ZADD, and forgets what was written; a sandbox with nothing to say and
 * nothing in flight is dropped. */
static void gw_activity_write_entry(gw_activity_t *activity, gw_activity_entry_t *entry,
                                    redisAsyncContext *context) {
    const strmap_entry_t *found = entry->map_entry;
    bool active = entry->touched || entry->in_flight > 0;
    if (context != NULL && active) {
        /* An open tunnel or a streaming response keeps its sandbox awake. */
        uint64_t last =
            entry->in_flight > 0 ? gw_activity_now_ms(activity) : entry->last_request_ms;
        gw_activity_zadd_t *zadd = &activity->zadd;
        char *score = zadd->scores[zadd->members];
        int at = 3 + 2 * zadd->members++;
        zadd->argv[at] = score;
        zadd->lengths[at] = (size_t)snprintf(score, sizeof(zadd->scores[0]), "%" PRIu64, last);
        zadd->argv[at + 1] = found->key; /* an active entry stays until the ZADD is sent */
        zadd->lengths[at + 1] = found->key_length;
    }
    /* Every routed ID fits ROUTE_SANDBOX_ID_MAX (routing/host.h). */
    if (context != NULL && found->key_length <= ROUTE_SANDBOX_ID_MAX &&
        (entry->requests > 0 || entry->bytes_in > 0 || entry->bytes_out > 0)) {
        /* By argv: hiredis's printf-like format took 490 ns a command, the
         * argv with the key and the value formatted here 220 ns. */
        static const char prefix[] = "sandbox:usage:";
        char key[sizeof(prefix) + ROUTE_SANDBOX_ID_MAX];
        size_t key_length = sizeof(prefix) - 1 + found->key_length;
        memcpy(key, prefix, sizeof(prefix) - 1);
        memcpy(key + sizeof(prefix) - 1, found->key, found->key_length);
        static const char *const fields[3] = {"requests", "bytes_in", "bytes_out"};
        const uint64_t values[3] = {entry->requests, entry->bytes_in, entry->bytes_out};
        for (size_t i = 0; i < 3; i++) {
            if (values[i] == 0)
                continue;
            char value[24];
            const char *argv[4] = {"HINCRBY", key, fields[i], value};
            size_t lengths[4] = {7, key_length, strlen(fields[i]),
                                 (size_t)snprintf(value, sizeof(value), "%" PRIu64, values[i])};
            redisAsyncCommandArgv(context, NULL, NULL, 4, argv, lengths);
        }
    }
    /* Down: these intervals are lost, as DESIGN allows; nothing waits for Redis. */
    entry->touched = false;
    entry->requests = entry->bytes_in = entry->bytes_out = 0;
    TAILQ_REMOVE(&activity->order, entry, link);
    if (!active && entry->in_flight == 0) {
        strmap_remove(&activity->sandboxes, entry->map_entry);
        slots_give(&activity->entries, entry);
        return;
    }
    entry->written = activity->writes;
    TAILQ_INSERT_TAIL(&activity->order, entry, link);
}

/* Writes up to GW_ACTIVITY_STEP sandboxes the current write has not visited
 * (they are at the head), and comes back after a gap for the rest. */
static void gw_activity_step(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_activity_t *activity = arg;
    redisAsyncContext *context =
        activity->link->state == REDIS_LINK_READY ? activity->link->context : NULL;
    gw_activity_zadd_t *zadd = &activity->zadd;
    zadd->members = 0;
    bool done = false;
    for (int i = 0; i < GW_ACTIVITY_STEP && !done; i++) {
        gw_activity_entry_t *entry = TAILQ_FIRST(&activity->order);
        done = entry == NULL || entry->written == activity->writes;
        if (!done)
            gw_activity_write_entry(activity, entry, context);
    }
    if (zadd->members > 0) {
        static const char *const command[3] = {"ZADD", "sandbox:activity", "GT"};
        for (int i = 0; i < 3; i++) {
            zadd->argv[i] = command[i];
            zadd->lengths[i] = strlen(command[i]);
        }
        redisAsyncCommandArgv(context, NULL, NULL, 3 + 2 * zadd->members, zadd->argv,
                              zadd->lengths);
    }
    if (!done) {
        struct timeval gap = clock_timeval(GW_ACTIVITY_STEP_GAP_MS);
        evtimer_add(activity->step, &gap);
    }
}

static void gw_activity_tick(evutil_socket_t fd, short events, void *arg) {
    gw_activity_t *activity = arg;
    /* Every sandbox is due again; one a write still under way has not
     * reached yet is written by this one, once. */
    activity->writes++;
    gw_activity_step(fd, events, activity);
}

gw_activity_t *gw_activity_new(struct event_base *base, const gw_config_t *config,
                               redis_link_t *link) {
    if (config->activity_interval_ms == 0)
        return NULL;
    gw_activity_t *activity = calloc(1, sizeof(*activity));
    if (activity == NULL)
        return NULL;
    activity->base = base;
    activity->link = link;
    activity->interval_ms = config->activity_interval_ms;
    slots_init(&activity->entries, sizeof(gw_activity_entry_t));
    TAILQ_INIT(&activity->order);
    activity->timer = event_new(base, -1, EV_PERSIST, gw_activity_tick, activity);
    activity->step = evtimer_new(base, gw_activity_step, activity);
    struct timeval interval = clock_timeval(activity->interval_ms);
    if (strmap_init(&activity->sandboxes) != 0 || activity->timer == NULL ||
        activity->step == NULL || event_add(activity->timer, &interval) != 0) {
        log_error("activity: out of memory");
        gw_activity_free(activity);
        return NULL;
    }
    return activity;
}

void gw_activity_free(gw_activity_t *activity) {
    if (activity == NULL)
        return;
    if (activity->timer != NULL)
        event_free(activity->timer);
    if (activity->step != NULL)
        event_free(activity->step);
    strmap_free(&activity->sandboxes);
    slots_free(&activity->entries);
    free(activity);
}
