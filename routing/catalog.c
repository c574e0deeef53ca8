/* The Redis catalog client of one worker: async lookups behind the route cache, invalidation. */
#include "routing/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "routing/route_cache.h"
#include "util/clock.h"
#include "util/keyspace.h"
#include "util/log.h"
#include "util/redis_link.h"
#include "util/strmap.h"

enum {
    ROUTE_CATALOG_DEFAULT_TIMEOUT_MS = 1000,
    /* How often Redis is asked again whether it publishes keyspace notifications. */
    ROUTE_CATALOG_CHECK_MS = 10000,
};

/* One HMGET in flight and the lookups that wait for it (single flight). */
struct route_pending {
    route_catalog_t *catalog;       /* NULL once the catalog is freed: the reply only frees this */
    LIST_ENTRY(route_pending) link; /* in the catalog's queries in flight, timed out ones too */
    strmap_entry_t *map_entry;      /* in the pending map while new misses may join */
    TAILQ_HEAD(route_waiters, route_waiter) waiters;
    struct event *timer; /* redis_timeout of this query */
    int references;      /* hiredis's until the reply callback, one per answering loop */
    bool linked;         /* in the catalog's list */
    bool timed_out;      /* waiters answered already; a late reply only fills the cache */
    bool invalidated;    /* the record changed meanwhile: answer, but do not cache */
    uint64_t sent_ms;    /* when the HMGET was sent */
    uint32_t epoch;      /* the cache's notification epoch then */
    char sandbox_id[ROUTE_SANDBOX_ID_MAX + 1];
};

/* The longest "*<count>\r\n$5\r\nHMGET\r\n$<key length>\r\n" (a 20-digit length), with its NUL. */
enum { ROUTE_CATALOG_COMMAND_HEAD = 6 + 4 + 7 + 1 + 20 + 2 + 1 };

struct route_catalog {
    struct event_base *base;
    char *redis_host;
    int redis_port;
    char *redis_unix_path;
    int redis_database;
    char *key_prefix;
    size_t key_prefix_length;
    char *command;        /* room for the longest HMGET (route_catalog_format_lookup) */
    char *command_fields; /* the fields HMGET asks for, in RESP: the command's constant tail */
    size_t command_fields_length;
    uint64_t redis_timeout_ms;
    redis_link_t lookup;     /* HMGET queries, after SELECT or PING */
    uint64_t reader_bytes; /* lookup's unparsed and unread reply bytes at the last timeout check */
    keyspace_t subscription; /* notifications of the keys under key_prefix */
    uint64_t last_reply_ms;  /* lookup connection: last reply, or when it became ready */
    route_cache_t cache;
    strmap_t pending_map;
    LIST_HEAD(route_pendings, route_pending) pendings;
    size_t timed_out_count; /* pendings that left the map but still wait for a reply */
    bool ever_connected;
    bool refusing; /* the last reply was an error: logged once until a good one */
    bool freeing;
    route_change_cb on_change; /* told of each notified change, or NULL */
    bool notifications_on;     /* Redis says it publishes what the subscription needs */
    uint32_t epochs;           /* notification epochs so far */
    struct event *check_timer; /* CONFIG GET notify-keyspace-events again */
    void *on_change_arg;
    route_catalog_stats_t stats;
};

/* The route to serve when Redis cannot answer: a found one within its stale
 * window (a new reference), or NULL. */
static route_record_t *route_catalog_stale_record(route_catalog_t *catalog, const char *sandbox_id,
                                                  uint64_t now) {
    const route_cache_entry_t *entry =
        route_cache_get(&catalog->cache, sandbox_id, strlen(sandbox_id));
    if (entry == NULL || !route_cache_within_stale(&catalog->cache, entry, now))
        return NULL;
    return route_record_ref(entry->record);
}

/* ---- waiters and queries in flight ---- */

static void route_catalog_waiter_append(struct route_pending *pending, route_waiter_t *waiter,
                                        route_lookup_cb callback, void *arg) {
    waiter->callback = callback;
    waiter->arg = arg;
    waiter->pending = pending;
    TAILQ_INSERT_TAIL(&pending->waiters, waiter, link);
}

static void route_catalog_waiter_unlink(route_waiter_t *waiter) {
    TAILQ_REMOVE(&waiter->pending->waiters, waiter, link);
    waiter->pending = NULL;
}

void route_catalog_cancel(route_waiter_t *waiter) {
    if (waiter == NULL || waiter->pending == NULL)
        return;
    route_catalog_waiter_unlink(waiter);
}

static void route_catalog_pending_release(struct route_pending *pending) {
    if (--pending->references > 0)
        return;
    if (pending->timer != NULL) {
        event_free(pending->timer);
        pending->timer = NULL;
    }
    free(pending);
}

/* Takes pending out of the catalog (map, list, timer) once its outcome is
 * known; it stays allocated while hiredis or an answering loop holds it. */
static void route_catalog_pending_detach(struct route_pending *pending) {
    route_catalog_t *catalog = pending->catalog;
    if (pending->map_entry != NULL) {
        strmap_remove(&catalog->pending_map, pending->map_entry);
        pending->map_entry = NULL;
    }
    if (pending->linked) {
        LIST_REMOVE(pending, link);
        pending->linked = false;
        if (pending->timed_out)
            catalog->timed_out_count--;
    }
    /* Freeing a timer from inside its own callback is allowed by libevent. */
    if (pending->timer != NULL) {
        event_free(pending->timer);
        pending->timer = NULL;
    }
}

/* Calls every waiter of pending with the answer (record is borrowed: each
 * waiter gets its own reference). A callback may cancel other waiters or free
 * the whole catalog, so this touches nothing but pending, which it holds. */
static void route_catalog_pending_answer(struct route_pending *pending,
                                         route_lookup_status_t status, route_record_t *record) {
    pending->references++;
    route_waiter_t *waiter;
    while ((waiter = TAILQ_FIRST(&pending->waiters)) != NULL) {
        route_lookup_cb callback = waiter->callback;
        void *arg = waiter->arg;
        route_catalog_waiter_unlink(waiter);
        callback(status, record != NULL ? route_record_ref(record) : NULL, arg);
    }
    route_catalog_pending_release(pending);
}

/* Answers pending's waiters after a failed query: with the stale route if one
 * may still serve, else UNAVAILABLE. Must be the caller's last use of the
 * catalog. */
static void route_catalog_pending_fail(struct route_pending *pending) {
    route_catalog_t *catalog = pending->catalog;
    catalog->stats.redis_errors++;
    route_record_t *stale = route_catalog_stale_record(catalog, pending->sandbox_id, clock_ms());
    route_catalog_pending_answer(
        pending, stale != NULL ? ROUTE_LOOKUP_FOUND : ROUTE_LOOKUP_UNAVAILABLE, stale);
    route_record_unref(stale);
}

/* Turns an HMGET reply (the values of route_record_fields, each a string or
 * nil) into an answer; *record is a new reference or NULL. */
static route_lookup_status_t route_catalog_parse_reply(const char *sandbox_id,
                                                       const redisReply *reply,
                                                       route_record_t **record) {
    *record = NULL;
    if (reply->elements != ROUTE_RECORD_FIELD_COUNT)
        return ROUTE_LOOKUP_UNAVAILABLE;
    route_record_value_t values[ROUTE_RECORD_FIELD_COUNT] = {{0}};
    bool any = false;
    for (size_t i = 0; i < ROUTE_RECORD_FIELD_COUNT; i++) {
        const redisReply *value = reply->element[i];
        if (value->type == REDIS_REPLY_NIL)
            continue;
        if (value->type == REDIS_REPLY_ERROR) {
            /* The lookup link's stand-in for a value over value_max (Redis
             * itself never nests errors in HMGET's reply): only its length,
             * which makes the record malformed. */
            values[i].length = (size_t)strtoull(value->str, NULL, 10);
            if (values[i].length <= ROUTE_RECORD_BYTES_MAX)
                return ROUTE_LOOKUP_UNAVAILABLE;
            any = true;
            continue;
        }
        if (value->type != REDIS_REPLY_STRING)
            return ROUTE_LOOKUP_UNAVAILABLE;
        values[i].text = value->str;
        values[i].length = value->len;
        any = true;
    }
    /* No key, or a hash without any field of the gateway's (only the egress
     * agent's, say): no sandbox the gateway can route to. */
    if (!any)
        return ROUTE_LOOKUP_NOT_FOUND;
    *record = route_record_parse_fields(sandbox_id, values);
    if (*record == NULL)
        return ROUTE_LOOKUP_UNAVAILABLE;
    return (*record)->error != NULL ? ROUTE_LOOKUP_MALFORMED : ROUTE_LOOKUP_FOUND;
}

/* ---- notification epochs (route_cache_ttl_notified) ---- */

/* Routes live notified_ttl only while a confirmed subscription receives what
 * Redis publishes; a new subscription starts a new epoch, so nothing read
 * before a gap in it keeps the long TTL. */
static void route_catalog_update_epoch(route_catalog_t *catalog, bool new_subscription) {
    bool notified = catalog->notifications_on && keyspace_ready(&catalog->subscription) &&
                    catalog->cache.config.notified_ttl_ms > catalog->cache.config.ttl_ms;
    if (!notified || new_subscription)
        route_cache_set_epoch(&catalog->cache, 0);
    if (notified && catalog->cache.epoch == 0) {
        if (++catalog->epochs == 0)
            catalog->epochs = 1;
        route_cache_set_epoch(&catalog->cache, catalog->epochs);
    }
}

/* True when notify-keyspace-events has K and what a record's changes raise:
 * g (DEL, EXPIRE) and h (HSET...), or A (all of them). */
static bool route_catalog_flags_suffice(const char *flags) {
    return strchr(flags, 'K') != NULL &&
           (strchr(flags, 'A') != NULL ||
            (strchr(flags, 'g') != NULL && strchr(flags, 'h') != NULL));
}

static void route_catalog_config_reply(redisAsyncContext *context, void *reply_pointer,
                                       void *privdata) {
    (void)privdata;
    redisReply *reply = reply_pointer;
    if (reply == NULL) {
        redis_link_lost_context(context);
        return;
    }
    redis_link_t *link = redis_link_of(context);
    if (link == NULL)
        return;
    route_catalog_t *catalog = link->config.owner;
    /* Refused (CONFIG renamed, as managed Redis does) means unknown: the short TTL. */
    bool on = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
              reply->element[1]->type == REDIS_REPLY_STRING &&
              route_catalog_flags_suffice(reply->element[1]->str);
    if (on != catalog->notifications_on)
        log_info("route catalog: keyspace notifications %s: routes are kept %s",
                 on ? "on" : "off or unknown",
                 on ? "for route_cache_ttl_notified" : "for route_cache_ttl");
    catalog->notifications_on = on;
    route_catalog_update_epoch(catalog, false);
}

/* Asks Redis whether it publishes keyspace notifications (an operator may turn them off). */
static void route_catalog_check_notifications(route_catalog_t *catalog) {
    if (catalog->lookup.state == REDIS_LINK_READY &&
        catalog->cache.config.notified_ttl_ms > catalog->cache.config.ttl_ms)
        redisAsyncCommand(catalog->lookup.context, route_catalog_config_reply, NULL,
                          "CONFIG GET notify-keyspace-events");
}

static void route_catalog_check_tick(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    route_catalog_check_notifications(argument);
}

static void route_catalog_subscription_up(keyspace_t *subscription) {
    route_catalog_update_epoch(subscription->owner, true);
}

static void route_catalog_subscription_down(keyspace_t *subscription) {
    route_catalog_t *catalog = subscription->owner;
    route_cache_set_epoch(&catalog->cache, 0); /* (the link may still say ready here) */
}

/* ---- connections ---- */

static void route_catalog_lookup_up(redis_link_t *link) {
    route_catalog_t *catalog = link->config.owner;
    catalog->ever_connected = true;
    catalog->last_reply_ms = clock_ms();
    route_catalog_check_notifications(catalog);
}

static void route_catalog_lookup_down(redis_link_t *link) {
    route_catalog_t *catalog = link->config.owner;
    if (!catalog->freeing)
        catalog->stats.redis_errors++;
}

/* A key under the prefix changed: the sandbox's route is dropped. */
static void route_catalog_notified(keyspace_t *subscription, size_t watch, const char *sandbox_id,
                                   size_t id_length) {
    (void)watch;
    if (id_length > ROUTE_SANDBOX_ID_MAX)
        return;
    char id[ROUTE_SANDBOX_ID_MAX + 1];
    memcpy(id, sandbox_id, id_length);
    id[id_length] = '\0';
    route_catalog_t *catalog = subscription->owner;
    route_catalog_invalidate(catalog, id);
    if (catalog->on_change != NULL)
        catalog->on_change(id, catalog->on_change_arg);
}

/* Misses may be sent to Redis: the connection is up, or being made for the
 * first time after an up (then queries wait for it, bounded by their timer). */
static bool route_catalog_can_query(const route_catalog_t *catalog) {
    const redis_link_t *lookup = &catalog->lookup;
    if (lookup->context == NULL)
        return false;
    return lookup->state == REDIS_LINK_READY ||
           (lookup->state == REDIS_LINK_CONNECTING && !lookup->down);
}

/* ---- lookups ---- */

/* A query without a usable reply: its waiters (unless its timeout answered
 * them already) get the stale route or UNAVAILABLE, and hiredis's reference
 * to it goes. */
static void route_catalog_pending_give_up(struct route_pending *pending) {
    bool answered = pending->timed_out;
    route_catalog_pending_detach(pending);
    if (!answered)
        route_catalog_pending_fail(pending);
    route_catalog_pending_release(pending);
}

/* The reply to one HMGET, or NULL when its connection is gone. */
static void route_catalog_lookup_reply(redisAsyncContext *context, void *reply_pointer,
                                       void *privdata) {
    struct route_pending *pending = privdata;
    redisReply *reply = reply_pointer;
    route_catalog_t *catalog = pending->catalog;
    if (catalog == NULL) {
        /* The catalog was freed and the waiters answered then. */
        route_catalog_pending_release(pending);
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply == NULL)
            redis_link_lost_context(context);
        if (reply != NULL) {
            catalog->last_reply_ms = clock_ms();
            /* Once per streak: a loading or misconfigured server refuses
             * every query, and each miss would log otherwise. */
            if (!catalog->refusing)
                log_warn("route catalog: redis %s refused HMGET %s%s: %s", catalog->lookup.address,
                         catalog->key_prefix, pending->sandbox_id,
                         reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply type");
            catalog->refusing = true;
        }
        route_catalog_pending_give_up(pending);
        return;
    }

    uint64_t now = clock_ms();
    catalog->last_reply_ms = now;
    catalog->reader_bytes = 0;
    catalog->refusing = false;
    route_record_t *record = NULL;
    route_lookup_status_t status = route_catalog_parse_reply(pending->sandbox_id, reply, &record);
    if (status == ROUTE_LOOKUP_UNAVAILABLE) {
        log_warn("route catalog: cannot read the record of %s (malformed reply or out of "
                 "memory)",
                 pending->sandbox_id);
        route_catalog_pending_give_up(pending);
        return;
    }
    if (status == ROUTE_LOOKUP_MALFORMED) {
        const route_cache_entry_t *cached =
            route_cache_get(&catalog->cache, pending->sandbox_id, strlen(pending->sandbox_id));
        /* Logged when it turns malformed, not on every refresh. */
        if (cached == NULL || cached->status != status)
            log_warn("route catalog: malformed record %s%s: %s", catalog->key_prefix,
                     pending->sandbox_id, record->error);
    }
    if (!pending->invalidated)
        route_cache_store(&catalog->cache, pending->sandbox_id, status, record, now,
                          pending->epoch);
    route_catalog_pending_detach(pending);
    route_catalog_pending_answer(pending, status, record);
    route_record_unref(record);
    route_catalog_pending_release(pending);
}

/* A query's redis_timeout passed. */
static void route_catalog_pending_timeout(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    struct route_pending *pending = argument;
    route_catalog_t *catalog = pending->catalog;
    uint64_t now = clock_ms();
    if (catalog->lookup.state == REDIS_LINK_READY) {
        /* Bytes of a reply still arriving (a record's large value) are not
         * a hang: that connection serves every other sandbox's lookups. */
        uint64_t unparsed = redis_link_reply_bytes(&catalog->lookup);
        if (unparsed > 0 && unparsed != catalog->reader_bytes) {
            catalog->reader_bytes = unparsed;
            catalog->last_reply_ms = now;
        }
    }
    if (catalog->lookup.state == REDIS_LINK_READY && catalog->last_reply_ms <= pending->sent_ms) {
        /* No reply at all since this query was sent, redis_timeout ago: the
         * server or the path to it hangs. (Not "now - last reply >= timeout":
         * libevent's coarse clock may fire the timer a few ms early.) Reconnecting answers every
         * query (this one too) through hiredis's callbacks. */
        redis_link_drop(&catalog->lookup, "no reply within redis_timeout");
        return;
    }
    /* Replies still come, only slowly (or the connect timer owns the
     * connection): give up on this query alone. It leaves the map, so new
     * misses send a fresh one, and its late reply still fills the cache. */
    if (pending->map_entry != NULL) {
        strmap_remove(&catalog->pending_map, pending->map_entry);
        pending->map_entry = NULL;
    }
    pending->timed_out = true;
    catalog->timed_out_count++;
    route_catalog_pending_fail(pending);
}

/* Writes HMGET <prefix><sandbox_id> <route_record_fields...> into
 * catalog->command in the protocol's own form (RESP arrays of bulk strings)
 * and returns its length: hiredis's printf-like formatting of the same took
 * half the instructions of a lookup. */
static size_t route_catalog_format_lookup(route_catalog_t *catalog, const char *sandbox_id,
                                          size_t id_length) {
    char *out = catalog->command;
    int head = snprintf(out, ROUTE_CATALOG_COMMAND_HEAD, "*%d\r\n$5\r\nHMGET\r\n$%zu\r\n",
                        2 + ROUTE_RECORD_FIELD_COUNT, catalog->key_prefix_length + id_length);
    size_t length = (size_t)head;
    memcpy(out + length, catalog->key_prefix, catalog->key_prefix_length);
    length += catalog->key_prefix_length;
    memcpy(out + length, sandbox_id, id_length);
    length += id_length;
    /* hiredis 0.14 reads the command with strchr: it needs the NUL. */
    memcpy(out + length, catalog->command_fields, catalog->command_fields_length + 1);
    return length + catalog->command_fields_length;
}

/* Writes the command's constant tail: the key's CRLF, then each field as a
 * bulk string. Returns 0, or -1 when memory is exhausted. */
static int route_catalog_format_fields(route_catalog_t *catalog) {
    size_t capacity = 3;
    for (size_t i = 0; i < ROUTE_RECORD_FIELD_COUNT; i++)
        capacity += strlen(route_record_fields[i]) + 16;
    catalog->command_fields = malloc(capacity);
    if (catalog->command_fields == NULL)
        return -1;
    size_t length = (size_t)snprintf(catalog->command_fields, capacity, "\r\n");
    for (size_t i = 0; i < ROUTE_RECORD_FIELD_COUNT; i++)
        length +=
            (size_t)snprintf(catalog->command_fields + length, capacity - length, "$%zu\r\n%s\r\n",
                             strlen(route_record_fields[i]), route_record_fields[i]);
    catalog->command_fields_length = length;
    return 0;
}

/* Sends HMGET for sandbox_id; returns the new query, or NULL. */
static struct route_pending *route_catalog_pending_start(route_catalog_t *catalog,
                                                         const char *sandbox_id, size_t id_length) {
    struct route_pending *pending = calloc(1, sizeof(*pending));
    if (pending == NULL)
        goto fail;
    TAILQ_INIT(&pending->waiters);
    pending->catalog = catalog;
    memcpy(pending->sandbox_id, sandbox_id, id_length);
    pending->sandbox_id[id_length] = '\0';
    pending->timer = evtimer_new(catalog->base, route_catalog_pending_timeout, pending);
    if (pending->timer == NULL)
        goto fail;
    pending->map_entry = strmap_put(&catalog->pending_map, sandbox_id, id_length, pending);
    if (pending->map_entry == NULL)
        goto fail;
    size_t command_length = route_catalog_format_lookup(catalog, pending->sandbox_id, id_length);
    if (redisAsyncFormattedCommand(catalog->lookup.context, route_catalog_lookup_reply, pending,
                                   catalog->command, command_length) != REDIS_OK)
        goto fail;
    pending->references = 1; /* hiredis's, dropped in route_catalog_lookup_reply */
    LIST_INSERT_HEAD(&catalog->pendings, pending, link);
    pending->linked = true;
    pending->sent_ms = clock_ms();
    pending->epoch = catalog->cache.epoch;
    clock_arm(pending->timer, catalog->redis_timeout_ms);
    catalog->stats.redis_lookups++;
    return pending;

fail:
    catalog->stats.redis_errors++;
    if (pending != NULL) {
        if (pending->map_entry != NULL)
            strmap_remove(&catalog->pending_map, pending->map_entry);
        pending->map_entry = NULL;
        if (pending->timer != NULL)
            event_free(pending->timer);
        pending->timer = NULL;
        free(pending);
        pending = NULL;
    }
    return NULL;
}

/* A route in use is read again in the second half of its TTL, while the
 * cached one still answers: a busy route never makes a request wait for
 * Redis, and no answer is older than route_cache_ttl. The query has no
 * waiters; its reply only refreshes the cache. */
static void route_catalog_refresh(route_catalog_t *catalog, const char *sandbox_id,
                                  size_t id_length) {
    if (strmap_get(&catalog->pending_map, sandbox_id, id_length) == NULL)
        route_catalog_pending_start(catalog, sandbox_id, id_length);
}

/* The waiter joins the query in flight for sandbox_id, or a new one (0); 1
 * with UNAVAILABLE when none can be sent. */
static int route_catalog_join(route_catalog_t *catalog, const char *sandbox_id, size_t id_length,
                              route_waiter_t *waiter, route_lookup_cb callback, void *arg,
                              route_lookup_status_t *status) {
    strmap_entry_t *joined = strmap_get(&catalog->pending_map, sandbox_id, id_length);
    struct route_pending *pending =
        joined != NULL ? joined->value
                       : route_catalog_pending_start(catalog, sandbox_id, id_length);
    if (pending == NULL) {
        *status = ROUTE_LOOKUP_UNAVAILABLE;
        return 1;
    }
    route_catalog_waiter_append(pending, waiter, callback, arg);
    return 0;
}

int route_catalog_lookup(route_catalog_t *catalog, const char *sandbox_id, route_waiter_t *waiter,
                         route_lookup_cb callback, void *arg, route_lookup_status_t *status,
                         route_record_t **record) {
    *record = NULL;
    if (catalog->freeing) {
        *status = ROUTE_LOOKUP_UNAVAILABLE;
        return 1;
    }
    size_t id_length = strlen(sandbox_id);
    if (id_length == 0 || id_length > ROUTE_SANDBOX_ID_MAX) {
        /* routing/host.c never lets such an ID through; no key can match. */
        *status = ROUTE_LOOKUP_NOT_FOUND;
        return 1;
    }

    uint64_t now = clock_ms();
    bool can_query = route_catalog_can_query(catalog);
    const route_cache_entry_t *entry = route_cache_get(&catalog->cache, sandbox_id, id_length);
    if (entry != NULL) {
        bool fresh = route_cache_fresh(&catalog->cache, entry, now);
        if (fresh || (!can_query && route_cache_within_stale(&catalog->cache, entry, now))) {
            catalog->stats.cache_hits++;
            *status = entry->status;
            *record = entry->record != NULL ? route_record_ref(entry->record) : NULL;
            if (fresh && can_query && route_cache_wants_refresh(&catalog->cache, entry, now))
                route_catalog_refresh(catalog, sandbox_id, id_length);
            return 1;
        }
    }
    catalog->stats.cache_misses++;
    if (!can_query) {
        *status = ROUTE_LOOKUP_UNAVAILABLE;
        return 1;
    }

    return route_catalog_join(catalog, sandbox_id, id_length, waiter, callback, arg, status);
}

int route_catalog_reread(route_catalog_t *catalog, const char *sandbox_id, route_waiter_t *waiter,
                         route_lookup_cb callback, void *arg, route_lookup_status_t *status,
                         route_record_t **record) {
    *record = NULL;
    size_t id_length = strlen(sandbox_id);
    if (catalog->freeing || !route_catalog_can_query(catalog) || id_length == 0 ||
        id_length > ROUTE_SANDBOX_ID_MAX) {
        *status = ROUTE_LOOKUP_UNAVAILABLE;
        return 1;
    }
    /* A query in the map was sent after the last notified change. */
    return route_catalog_join(catalog, sandbox_id, id_length, waiter, callback, arg, status);
}

void route_catalog_on_change(route_catalog_t *catalog, route_change_cb callback, void *arg) {
    catalog->on_change = callback;
    catalog->on_change_arg = arg;
}

void route_catalog_seed(route_catalog_t *catalog, const char *sandbox_id,
                        route_lookup_status_t status, route_record_t *record) {
    route_cache_store(&catalog->cache, sandbox_id, status, record, clock_ms(), 0);
}

void route_catalog_invalidate(route_catalog_t *catalog, const char *sandbox_id) {
    size_t id_length = strlen(sandbox_id);
    bool dropped = route_cache_remove(&catalog->cache, sandbox_id, id_length);
    /* A query in flight may have read the record before the change. */
    strmap_entry_t *joined = strmap_get(&catalog->pending_map, sandbox_id, id_length);
    if (joined != NULL) {
        /* It answers its waiters, uncached; later misses send a fresh query. */
        struct route_pending *pending = joined->value;
        pending->invalidated = true;
        strmap_remove(&catalog->pending_map, joined);
        pending->map_entry = NULL;
        dropped = true;
    }
    if (catalog->timed_out_count > 0) {
        struct route_pending *pending;
        LIST_FOREACH(pending, &catalog->pendings, link) {
            if (pending->timed_out && strcmp(pending->sandbox_id, sandbox_id) == 0)
                pending->invalidated = true;
        }
    }
    if (dropped)
        catalog->stats.invalidations++;
}

bool route_catalog_ever_connected(const route_catalog_t *catalog) {
    return catalog->ever_connected;
}

bool route_catalog_connected(const route_catalog_t *catalog) {
    return catalog->lookup.state == REDIS_LINK_READY;
}

bool route_catalog_subscribed(const route_catalog_t *catalog) {
    return keyspace_ready(&catalog->subscription);
}

route_catalog_stats_t route_catalog_get_stats(const route_catalog_t *catalog) {
    route_catalog_stats_t stats = catalog->stats;
    stats.cache_entries = route_cache_count(&catalog->cache);
    return stats;
}

/* ---- life cycle ---- */

/* Copies text, or returns NULL (also for NULL). */
static char *route_catalog_copy(const char *text) { return text != NULL ? strdup(text) : NULL; }

/* Prepares the lookup connection and the keyspace subscription (not started); returns 0, or -1
 * when memory is exhausted. */
static int route_catalog_links_init(route_catalog_t *catalog) {
    redis_link_config_t link_config = {
        .host = catalog->redis_host,
        .port = catalog->redis_port,
        .unix_path = catalog->redis_unix_path,
        .database = catalog->redis_database,
        .connect_timeout_ms = catalog->redis_timeout_ms,
        .log_prefix = "route catalog: ",
        .purpose = "lookups",
        .outage_effect = "cached routes keep serving, misses get 503",
        .value_max = ROUTE_RECORD_BYTES_MAX,
        .up = route_catalog_lookup_up,
        .down = route_catalog_lookup_down,
        .owner = catalog,
    };
    if (redis_link_init(&catalog->lookup, catalog->base, &link_config) != 0)
        return -1;
    keyspace_watch_t watch = {.key = catalog->key_prefix, .prefix = true};
    keyspace_config_t subscription_config = {
        .link = link_config,
        .watches = &watch,
        .watch_count = 1,
        .notify = route_catalog_notified,
        .up = route_catalog_subscription_up,
        .down = route_catalog_subscription_down,
        .owner = catalog,
    };
    subscription_config.link.purpose = "keyspace notifications";
    subscription_config.link.value_max = 0;
    subscription_config.link.outage_effect = "changes are seen within route_cache_ttl";
    return keyspace_init(&catalog->subscription, catalog->base, &subscription_config);
}

route_catalog_t *route_catalog_new(struct event_base *base, const route_catalog_config_t *config) {
    route_catalog_t *catalog = calloc(1, sizeof(*catalog));
    if (catalog == NULL)
        return NULL;
    catalog->base = base;
    catalog->redis_port = config->redis_port;
    catalog->redis_database = config->redis_database;
    catalog->redis_timeout_ms =
        config->redis_timeout_ms > 0 ? config->redis_timeout_ms : ROUTE_CATALOG_DEFAULT_TIMEOUT_MS;

    catalog->key_prefix = route_catalog_copy(config->key_prefix != NULL ? config->key_prefix : "");
    if (catalog->key_prefix == NULL)
        goto fail;
    catalog->key_prefix_length = strlen(catalog->key_prefix);
    if (route_catalog_format_fields(catalog) != 0)
        goto fail;
    catalog->command = malloc(ROUTE_CATALOG_COMMAND_HEAD + catalog->key_prefix_length +
                              ROUTE_SANDBOX_ID_MAX + catalog->command_fields_length + 1);
    if (catalog->command == NULL)
        goto fail;
    if (config->redis_unix_path != NULL) {
        catalog->redis_unix_path = route_catalog_copy(config->redis_unix_path);
        if (catalog->redis_unix_path == NULL)
            goto fail;
    } else {
        catalog->redis_host =
            route_catalog_copy(config->redis_host != NULL ? config->redis_host : "127.0.0.1");
        if (catalog->redis_host == NULL)
            goto fail;
    }
    route_cache_config_t cache_config = {
        .ttl_ms = config->cache_ttl_ms,
        .notified_ttl_ms = config->notified_ttl_ms,
        .negative_ttl_ms = config->negative_ttl_ms,
        .stale_ttl_ms = config->stale_ttl_ms,
        .max_entries = config->cache_max_entries > 0 ? config->cache_max_entries
                                                     : ROUTE_CATALOG_CACHE_MAX_DEFAULT,
    };
    if (route_cache_init(&catalog->cache, &cache_config) != 0 ||
        strmap_init(&catalog->pending_map) != 0)
        goto fail;
    if (route_catalog_links_init(catalog) != 0)
        goto fail;
    catalog->check_timer = event_new(base, -1, EV_PERSIST, route_catalog_check_tick, catalog);
    struct timeval check_every = clock_timeval(ROUTE_CATALOG_CHECK_MS);
    if (catalog->check_timer == NULL || event_add(catalog->check_timer, &check_every) != 0)
        goto fail;

    redis_link_start(&catalog->lookup);
    keyspace_start(&catalog->subscription);
    return catalog;

fail:
    route_catalog_free(catalog);
    return NULL;
}

void route_catalog_free(route_catalog_t *catalog) {
    if (catalog == NULL || catalog->freeing)
        return;
    catalog->freeing = true;

    /* Answer first, while everything still exists; waiters' callbacks that
     * look up again get UNAVAILABLE at once. Each pending stays allocated
     * until hiredis hands back its query (now, or after the hiredis callback
     * we may be inside returns). */
    struct route_pending *pending;
    while ((pending = LIST_FIRST(&catalog->pendings)) != NULL) {
        route_catalog_pending_detach(pending);
        pending->catalog = NULL;
        route_catalog_pending_answer(pending, ROUTE_LOOKUP_UNAVAILABLE, NULL);
    }

    /* The callbacks of queries still in flight run with NULL replies; their
     * pendings were detached from the catalog already. */
    if (catalog->check_timer != NULL)
        event_free(catalog->check_timer);
    redis_link_close(&catalog->lookup);
    keyspace_close(&catalog->subscription);

    route_cache_free(&catalog->cache);
    strmap_free(&catalog->pending_map);
    free(catalog->key_prefix);
    catalog->key_prefix = NULL;
    free(catalog->command);
    catalog->command = NULL;
    free(catalog->command_fields);
    catalog->command_fields = NULL;
    free(catalog->redis_unix_path);
    catalog->redis_unix_path = NULL;
    free(catalog->redis_host);
    catalog->redis_host = NULL;
    free(catalog);
}
