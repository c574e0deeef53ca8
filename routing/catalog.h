/* The Redis catalog client of one worker: async lookups behind the route cache, invalidation. */
#ifndef SGW_ROUTING_CATALOG_H
#define SGW_ROUTING_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "routing/record.h"

struct event_base;

typedef struct route_catalog_config {
    const char *redis_host; /* NULL when redis_unix_path is used */
    int redis_port;
    const char *redis_unix_path; /* NULL for TCP */
    int redis_database;
    const char *key_prefix;    /* key = prefix + sandbox ID */
    uint64_t redis_timeout_ms; /* one lookup's limit, and one connect's */
    uint64_t cache_ttl_ms;     /* a found (or malformed) route is reused this long */
    uint64_t notified_ttl_ms;  /* ... or this long while keyspace notifications drop changed ones */
    uint64_t negative_ttl_ms;  /* "not found" is remembered this long */
    uint64_t stale_ttl_ms;     /* past its TTL a route still serves this long while Redis is down */
    size_t cache_max_entries;  /* bound on cached IDs; 0 means ROUTE_CATALOG_CACHE_MAX_DEFAULT */
} route_catalog_config_t;

enum { ROUTE_CATALOG_CACHE_MAX_DEFAULT = 100000 };

typedef enum route_lookup_status {
    ROUTE_LOOKUP_FOUND = 0,   /* record is valid */
    ROUTE_LOOKUP_NOT_FOUND,   /* 502 The sandbox was not found */
    ROUTE_LOOKUP_MALFORMED,   /* 502; record->error says why */
    ROUTE_LOOKUP_UNAVAILABLE, /* 503 Sandbox routing is temporarily unavailable */
} route_lookup_status_t;

/* Receives a lookup's answer; record is a new reference the callee owns (NULL
 * unless FOUND or MALFORMED). */
typedef void (*route_lookup_cb)(route_lookup_status_t status, route_record_t *record, void *arg);

/* A waiting lookup; the caller embeds it (e.g. in its connection) so that a
 * lookup allocates nothing and can be cancelled when the client goes away. */
typedef struct route_waiter {
    TAILQ_ENTRY(route_waiter) link; /* in its query's waiters, in arrival order */
    struct route_pending *pending;  /* NULL when not waiting */
    route_lookup_cb callback;
    void *arg;
} route_waiter_t;

typedef struct route_catalog_stats {
    uint64_t cache_hits;    /* answered from the cache, stale routes included */
    uint64_t cache_misses;  /* everything else */
    uint64_t redis_lookups; /* HMGET queries sent */
    uint64_t redis_errors;  /* failed queries (error, timeout, dropped) and failed connections */
    uint64_t invalidations; /* cached routes or in-flight lookups dropped by a change */
    uint64_t cache_entries; /* a gauge: IDs cached now */
} route_catalog_stats_t;

typedef struct route_catalog route_catalog_t;

/* Creates the catalog of the worker whose loop is base and starts connecting
 * (a lookup connection and a keyspace-notification subscription); returns NULL
 * when memory is exhausted. Never blocks. */
route_catalog_t *route_catalog_new(struct event_base *base, const route_catalog_config_t *config);

/* Answers every waiter UNAVAILABLE, closes the connections and frees. Safe
 * from inside a lookup callback (the other waiters of the answer being
 * delivered then still get that answer). */
void route_catalog_free(route_catalog_t *catalog);

/* Looks up sandbox_id; waiter must not be waiting already (zero it before its
 * first use). Returns 1 when answered at once (from the cache, or
 * UNAVAILABLE when Redis is down): *status and *record (a new reference, or
 * NULL) are set and callback is never called. Returns 0 when the answer comes
 * later: callback is called exactly once from the event loop, unless
 * route_catalog_cancel(waiter) is called first. Concurrent misses for one
 * sandbox share one Redis query. */
int route_catalog_lookup(route_catalog_t *catalog, const char *sandbox_id, route_waiter_t *waiter,
                         route_lookup_cb callback, void *arg, route_lookup_status_t *status,
                         route_record_t **record);

/* Reads sandbox_id from Redis whatever the cache holds (a paused sandbox that
 * requests wait for): joins a query sent since the last notified change, else
 * sends one; the reply refreshes the cache. Returns as route_catalog_lookup,
 * answering UNAVAILABLE at once while Redis is down. */
int route_catalog_reread(route_catalog_t *catalog, const char *sandbox_id, route_waiter_t *waiter,
                         route_lookup_cb callback, void *arg, route_lookup_status_t *status,
                         route_record_t **record);

/* Told the ID of a sandbox whose record changed, after its route was dropped. */
typedef void (*route_change_cb)(const char *sandbox_id, void *arg);

/* Calls callback for each keyspace notification of a record (one callback;
 * NULL stops it). */
void route_catalog_on_change(route_catalog_t *catalog, route_change_cb callback, void *arg);

/* Stops waiting; the callback will not be called. Harmless if not waiting. */
void route_catalog_cancel(route_waiter_t *waiter);

/* Puts an answer into the route cache as a reply from Redis would (record is
 * borrowed; NULL for NOT_FOUND); it serves for route_cache_ttl. For tests and
 * fuzzing: a catalog with known records and no Redis behind it. */
void route_catalog_seed(route_catalog_t *catalog, const char *sandbox_id,
                        route_lookup_status_t status, route_record_t *record);

/* Drops the cached route of sandbox_id (keyspace notification, tests). */
void route_catalog_invalidate(route_catalog_t *catalog, const char *sandbox_id);

/* True once the lookup connection has been up at least once. */
bool route_catalog_ever_connected(const route_catalog_t *catalog);

/* True while the lookup connection is up: misses are sent to Redis. */
bool route_catalog_connected(const route_catalog_t *catalog);

/* True while the keyspace-notification subscription is confirmed by Redis. */
bool route_catalog_subscribed(const route_catalog_t *catalog);

/* Counters since start, for metrics. */
route_catalog_stats_t route_catalog_get_stats(const route_catalog_t *catalog);

#endif
