/* Upstream connections to sandboxes and their per-worker keep-alive pool. */
#include "gateway/upstream.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/worker.h"
#include "util/clock.h"
#include "util/log.h"

/* Expired connections one sweep closes before it lets the loop run. */
enum { GW_POOL_SWEEP_BATCH = 64 };

/* How often the sweep looks for expired connections: a fraction of the
 * timeout, so a connection lives at most a quarter longer than it. */
static struct timeval gw_pool_sweep_interval(const gw_pool_t *pool) {
    uint64_t interval = pool->idle_timeout_ms / 4;
    if (interval < 10)
        interval = 10;
    if (interval > 1000)
        interval = 1000;
    return clock_timeval(interval);
}

/* One timer for the whole pool instead of one per connection: taking and
 * returning a connection then costs no timer operation. A sweep closes at
 * most GW_POOL_SWEEP_BATCH connections and comes back on the next loop turn
 * for the rest: thousands expiring together (a burst of sandboxes gone
 * quiet) would otherwise stall every other connection of the worker. */
static void gw_pool_sweep(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_pool_t *pool = arg;
    uint64_t now = clock_coarse_ms();
    gw_upstream_t *oldest;
    int closed = 0;
    while ((oldest = TAILQ_FIRST(&pool->idle_order)) != NULL &&
           now - oldest->idle_since_ms >= pool->idle_timeout_ms) {
        if (closed == GW_POOL_SWEEP_BATCH) {
            struct timeval next_turn = {0, 0};
            evtimer_add(pool->sweep, &next_turn);
            return;
        }
        gw_upstream_close(oldest);
        closed++;
    }
    if (pool->idle_count > 0) {
        struct timeval interval = gw_pool_sweep_interval(pool);
        evtimer_add(pool->sweep, &interval);
    }
}

int gw_pool_init(gw_pool_t *pool, struct event_base *base, uint64_t idle_timeout_ms,
                 size_t idle_limit) {
    memset(pool, 0, sizeof(*pool));
    slots_init(&pool->slot_items, sizeof(gw_pool_slot_t));
    TAILQ_INIT(&pool->idle_order);
    pool->idle_timeout_ms = idle_timeout_ms;
    pool->idle_limit = idle_limit;
    pool->sweep = evtimer_new(base, gw_pool_sweep, pool);
    if (pool->sweep == NULL)
        return -1;
    return strmap_init(&pool->slots);
}

/* Takes an idle connection out of its slot's and the pool's idle lists. */
static void gw_pool_unlink_idle(gw_pool_t *pool, gw_upstream_t *upstream) {
    gw_pool_slot_t *slot = upstream->slot;
    TAILQ_REMOVE(&slot->idle, upstream, pool_link);
    TAILQ_REMOVE(&pool->idle_order, upstream, idle_link);
    slot->idle_count--;
    pool->idle_count--;
}

/* A slot for key (ending in port) in the map, or NULL when memory is exhausted. */
static gw_pool_slot_t *gw_pool_slot_new(gw_pool_t *pool, const char *key, size_t key_length,
                                        uint16_t port) {
    gw_pool_slot_t *slot = slots_take(&pool->slot_items);
    if (slot == NULL)
        return NULL;
    slot->entry = strmap_put(&pool->slots, key, key_length, slot);
    if (slot->entry == NULL) {
        slots_give(&pool->slot_items, slot);
        return NULL;
    }
    TAILQ_INIT(&slot->idle);
    slot->port = port;
    return slot;
}

/* The slot's last connection is gone: out of the map, and given back, so
 * that no hint takes it for its old key. */
static void gw_pool_slot_free(gw_pool_t *pool, gw_pool_slot_t *slot) {
    strmap_remove(&pool->slots, slot->entry);
    slots_give(&pool->slot_items, slot);
}

/* A pooled connection (idle or busy) closes: its slot goes with the last. */
static void gw_pool_forget(gw_pool_t *pool, gw_upstream_t *upstream) {
    gw_pool_slot_t *slot = upstream->slot;
    if (upstream->state == GW_UPSTREAM_IDLE)
        gw_pool_unlink_idle(pool, upstream);
    else
        slot->busy_count--;
    upstream->slot = NULL;
    if (slot->idle_count == 0 && slot->busy_count == 0)
        gw_pool_slot_free(pool, slot);
}

static const char *const gw_upstream_state_names[] = {
    [GW_UPSTREAM_CONNECTING] = "connecting",
    [GW_UPSTREAM_BUSY] = "busy",
    [GW_UPSTREAM_IDLE] = "idle",
};

void gw_upstream_set_state(gw_upstream_t *upstream, gw_upstream_state_t state) {
    if (upstream->state == state)
        return; /* a pooled connection taken is busy already when the exchange starts */
    /* The key starts with the sandbox ID, up to its first newline. */
    log_debug("sandbox %.*s: connection %p %s -> %s", (int)strcspn(upstream->key, "\n"),
              upstream->key, (void *)upstream, gw_upstream_state_names[upstream->state],
              gw_upstream_state_names[state]);
    upstream->state = state;
}

void gw_upstream_close(gw_upstream_t *upstream) {
    if (upstream == NULL)
        return;
    if (upstream->slot != NULL)
        gw_pool_forget(&upstream->worker->pool, upstream);
    GW_METRIC_ADD(&upstream->worker->metrics, upstream_connections, -1);
    gw_transport_close(&upstream->transport);
    free(upstream);
}

static void gw_pool_close_slot(strmap_t *map, strmap_entry_t *entry, void *arg) {
    (void)map;
    (void)arg;
    gw_pool_slot_t *slot = entry->value;
    gw_upstream_t *upstream;
    while ((upstream = TAILQ_FIRST(&slot->idle)) != NULL) {
        TAILQ_REMOVE(&slot->idle, upstream, pool_link);
        upstream->slot = NULL;
        GW_METRIC_ADD(&upstream->worker->metrics, upstream_connections, -1);
        gw_transport_close(&upstream->transport);
        free(upstream);
    }
}

/* After the worker's connections closed: no busy connection points to a
 * slot, and no hint is used any more. */
void gw_pool_free(gw_pool_t *pool) {
    if (pool->slots.buckets != NULL)
        strmap_foreach(&pool->slots, gw_pool_close_slot, NULL);
    strmap_free(&pool->slots);
    slots_free(&pool->slot_items);
    TAILQ_INIT(&pool->idle_order);
    pool->idle_count = 0;
    if (pool->sweep != NULL) {
        event_free(pool->sweep);
        pool->sweep = NULL;
    }
}

gw_upstream_t *gw_pool_take(gw_pool_t *pool, slot_hint_t *hint, uint16_t port, const char *key,
                            size_t key_length) {
    /* A slot the hint still finds has the key it had when noted: the
     * record's prefix and a port, which must be this one. */
    gw_pool_slot_t *slot = slots_hinted(hint);
    if (slot == NULL || slot->port != port) {
        strmap_entry_t *entry = strmap_get(&pool->slots, key, key_length);
        if (entry == NULL)
            return NULL;
        slot = entry->value;
        slots_note(hint, slot);
    }
    gw_upstream_t *upstream = TAILQ_FIRST(&slot->idle);
    if (upstream == NULL)
        return NULL; /* every connection of this key is busy */
    if (gw_transport_unpark(&upstream->transport) < 0) {
        gw_upstream_close(upstream); /* out of memory: the caller dials, or answers so */
        return NULL;
    }
    gw_pool_unlink_idle(pool, upstream);
    slot->busy_count++;
    gw_upstream_set_state(upstream, GW_UPSTREAM_BUSY);
    GW_METRIC_ADD(&upstream->worker->metrics, upstream_reuses, 1);
    return upstream;
}

/* While pooled, any byte or EOF from the sandbox means the connection is no
 * longer usable (RFC 9112 §9.8: a server may close an idle connection). */
static void gw_pool_idle_read(void *arg) { gw_upstream_close(arg); }

static void gw_pool_idle_written(void *arg) { (void)arg; }

static void gw_pool_idle_event(void *arg, gw_transport_event_t event) {
    (void)event; /* EOF or an error: the connection is done */
    gw_upstream_close(arg);
}

static const gw_transport_handler_t gw_pool_idle_handler = {
    .readable = gw_pool_idle_read,
    .writable = gw_pool_idle_written,
    .event = gw_pool_idle_event,
};

void gw_pool_put(gw_pool_t *pool, gw_upstream_t *upstream) {
    gw_pool_slot_t *slot = upstream->slot;
    if (slot == NULL) { /* dialled for this request: its first time in the pool */
        strmap_entry_t *entry = strmap_get(&pool->slots, upstream->key, strlen(upstream->key));
        slot = entry != NULL ? entry->value : NULL;
    }
    /* No cap per sandbox: a sandbox keeps as many as it had in use at once
     * (HTTP/2 clients bring hundreds of concurrent requests), until they idle
     * for idle_timeout or a fuller pool takes the oldest. */
    if (pool->idle_count >= pool->idle_limit) {
        /* Full: the connection idle longest makes room, so a busy sandbox
         * keeps its warm connection and a quiet one dials when it wakes. */
        gw_upstream_t *oldest = TAILQ_FIRST(&pool->idle_order);
        if (oldest == NULL)
            goto close;
        if (oldest->slot == slot && slot->idle_count == 1 && slot->busy_count == 0)
            slot = NULL; /* closing it frees the slot */
        gw_pool_shed(pool, 1);
    }
    if (slot == NULL) {
        slot = gw_pool_slot_new(pool, upstream->key, strlen(upstream->key), upstream->port);
        if (slot == NULL)
            goto close;
    }
    if (upstream->slot == slot)
        slot->busy_count--; /* taken from it: back */
    /* Most recently used first: taking it reads the slot alone (TAILQ_LAST
     * would read the one before it too, a cache miss with many). */
    TAILQ_INSERT_HEAD(&slot->idle, upstream, pool_link);
    TAILQ_INSERT_TAIL(&pool->idle_order, upstream, idle_link);
    slot->idle_count++;
    pool->idle_count++;
    upstream->slot = slot;
    gw_upstream_set_state(upstream, GW_UPSTREAM_IDLE);
    upstream->idle_since_ms = clock_coarse_ms();
    gw_transport_set_handler(&upstream->transport, &gw_pool_idle_handler, upstream);
    gw_transport_read(&upstream->transport, true);
    /* Its buffers wait for the next request in the thread's stock, warm. */
    gw_transport_park(&upstream->transport);
    if (!evtimer_pending(pool->sweep, NULL)) {
        struct timeval interval = gw_pool_sweep_interval(pool);
        evtimer_add(pool->sweep, &interval);
    }
    return;
close:
    gw_upstream_close(upstream);
}

size_t gw_pool_shed(gw_pool_t *pool, size_t count) {
    size_t closed = 0;
    gw_upstream_t *oldest;
    while (closed < count && (oldest = TAILQ_FIRST(&pool->idle_order)) != NULL) {
        GW_METRIC_ADD(&oldest->worker->metrics, upstream_evictions, 1);
        gw_upstream_close(oldest);
        closed++;
    }
    return closed;
}

gw_upstream_t *gw_upstream_dial(gw_worker_t *worker, const struct sockaddr *address,
                                socklen_t address_length, const char *key, size_t key_length) {
    gw_upstream_t *upstream = calloc(1, sizeof(*upstream) + key_length + 1);
    if (upstream == NULL)
        return NULL;
    memcpy(upstream->key, key, key_length);
    upstream->key[key_length] = '\0';
    upstream->port =
        ntohs(address->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)address)->sin6_port
                                             : ((const struct sockaddr_in *)address)->sin_port);
    upstream->worker = worker;
    upstream->state = GW_UPSTREAM_CONNECTING;
    int dialled, error;
    do {
        dialled = gw_transport_dial(&upstream->transport, worker->base, address, address_length,
                                    worker->config->upstream_connect_timeout_ms);
        error = errno; /* the dial's, whatever making room sets */
        /* Out of descriptors: a connection idle to another sandbox makes room
         * (or, none here, another worker's, for the dial's next try). */
    } while (dialled < 0 && (error == EMFILE || error == ENFILE) &&
             gw_worker_make_room(worker, 1) > 0);
    if (dialled < 0) {
        free(upstream);
        errno = error;
        return NULL;
    }
    GW_METRIC_ADD(&worker->metrics, upstream_dials, 1);
    GW_METRIC_ADD(&worker->metrics, upstream_connections, 1);
    return upstream;
}
