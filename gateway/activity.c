/* Sandbox activity and usage (DESIGN "Activity"): per worker, written to Redis once an interval. */
#include "gateway/activity.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/redis_link.h"
#include "util/strmap.h"

/* One sandbox this worker served: what the next write says of it. */
typedef struct gw_activity_entry {
    uint64_t last_request_ms; /* Unix ms of its last request's start */
    uint32_t in_flight;       /* requests (tunnels, streams) not ended: active every interval */
    bool touched;             /* a request started since the last write */
    uint64_t requests, bytes_in, bytes_out; /* since the last write */
} gw_activity_entry_t;

struct gw_activity {
    redis_link_t *link; /* the worker's, to resume_redis_url */
    strmap_t sandboxes; /* ID -> gw_activity_entry_t */
    struct event *timer;
    uint64_t interval_ms;
};

static uint64_t gw_activity_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static gw_activity_entry_t *gw_activity_entry(gw_activity_t *activity, const char *sandbox_id) {
    size_t length = strlen(sandbox_id);
    strmap_entry_t *found = strmap_get(&activity->sandboxes, sandbox_id, length);
    if (found != NULL)
        return found->value;
    gw_activity_entry_t *entry = calloc(1, sizeof(*entry));
    if (entry == NULL)
        return NULL;
    if (strmap_put(&activity->sandboxes, sandbox_id, length, entry) == NULL) {
        free(entry);
        return NULL;
    }
    return entry;
}

void gw_activity_started(gw_activity_t *activity, const char *sandbox_id) {
    if (activity == NULL)
        return;
    gw_activity_entry_t *entry = gw_activity_entry(activity, sandbox_id);
    if (entry == NULL)
        return; /* out of memory: this request goes uncounted, nothing else */
    entry->last_request_ms = gw_activity_now_ms();
    entry->touched = true;
    entry->in_flight++;
    entry->requests++;
}

void gw_activity_ended(gw_activity_t *activity, const char *sandbox_id, uint64_t bytes_in,
                       uint64_t bytes_out) {
    if (activity == NULL)
        return;
    strmap_entry_t *found = strmap_get(&activity->sandboxes, sandbox_id, strlen(sandbox_id));
    if (found == NULL)
        return;
    gw_activity_entry_t *entry = found->value;
    if (entry->in_flight > 0)
        entry->in_flight--;
    entry->bytes_in += bytes_in;
    entry->bytes_out += bytes_out;
}

/* Adds one sandbox's commands to the pipeline, and forgets what was written;
 * a sandbox with nothing to say and nothing in flight is dropped. */
static void gw_activity_write_entry(strmap_t *map, strmap_entry_t *found, void *arg) {
    gw_activity_t *activity = arg;
    gw_activity_entry_t *entry = found->value;
    redisAsyncContext *context =
        activity->link->state == REDIS_LINK_READY ? activity->link->context : NULL;
    bool active = entry->touched || entry->in_flight > 0;
    if (context != NULL && active) {
        /* An open tunnel or a streaming response keeps its sandbox awake. */
        uint64_t last = entry->in_flight > 0 ? gw_activity_now_ms() : entry->last_request_ms;
        redisAsyncCommand(context, NULL, NULL, "ZADD sandbox:activity GT %" PRIu64 " %b", last,
                          found->key, found->key_length);
    }
    if (context != NULL && (entry->requests > 0 || entry->bytes_in > 0 || entry->bytes_out > 0)) {
        static const char *const fields[3] = {"requests", "bytes_in", "bytes_out"};
        const uint64_t values[3] = {entry->requests, entry->bytes_in, entry->bytes_out};
        for (size_t i = 0; i < 3; i++) {
            if (values[i] > 0)
                redisAsyncCommand(context, NULL, NULL, "HINCRBY sandbox:usage:%b %s %" PRIu64,
                                  found->key, found->key_length, fields[i], values[i]);
        }
    }
    /* Down: these intervals are lost, as DESIGN allows; nothing waits for Redis. */
    entry->touched = false;
    entry->requests = entry->bytes_in = entry->bytes_out = 0;
    if (!active && entry->in_flight == 0) {
        free(entry);
        strmap_remove(map, found);
    }
}

static void gw_activity_tick(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_activity_t *activity = arg;
    strmap_foreach(&activity->sandboxes, gw_activity_write_entry, activity);
}

gw_activity_t *gw_activity_new(struct event_base *base, const gw_config_t *config,
                               redis_link_t *link) {
    if (config->activity_interval_ms == 0)
        return NULL;
    gw_activity_t *activity = calloc(1, sizeof(*activity));
    if (activity == NULL)
        return NULL;
    activity->link = link;
    activity->interval_ms = config->activity_interval_ms;
    activity->timer = event_new(base, -1, EV_PERSIST, gw_activity_tick, activity);
    struct timeval interval = clock_timeval(activity->interval_ms);
    if (strmap_init(&activity->sandboxes) != 0 || activity->timer == NULL ||
        event_add(activity->timer, &interval) != 0) {
        log_error("activity: out of memory");
        gw_activity_free(activity);
        return NULL;
    }
    return activity;
}

static void gw_activity_free_entry(strmap_t *map, strmap_entry_t *found, void *arg) {
    (void)arg;
    free(found->value);
    strmap_remove(map, found);
}

void gw_activity_free(gw_activity_t *activity) {
    if (activity == NULL)
        return;
    if (activity->timer != NULL)
        event_free(activity->timer);
    strmap_foreach(&activity->sandboxes, gw_activity_free_entry, NULL);
    strmap_free(&activity->sandboxes);
    free(activity);
}
