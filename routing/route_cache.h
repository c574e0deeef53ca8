/* The route cache of one worker: catalog answers kept for their TTL, bounded, evicted cheaply. */
#ifndef SGW_ROUTING_ROUTE_CACHE_H
#define SGW_ROUTING_ROUTE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "routing/catalog.h"
#include "routing/record.h"
#include "util/strmap.h"

/* One cached answer. Entries sit in one of two lists, oldest first: found and
 * malformed routes, and "not found". TTLs are uniform within a list (but for
 * the longer one of routes read while notifications are on), so the oldest
 * entry is about the first to expire, and eviction is O(1). */
typedef struct route_cache_entry {
    struct route_cache_entry *older;
    struct route_cache_entry *newer;
    strmap_entry_t *map_entry;    /* key: the sandbox ID */
    route_lookup_status_t status; /* FOUND, MALFORMED or NOT_FOUND */
    route_record_t *record;       /* NULL for NOT_FOUND */
    uint64_t expires_ms;          /* at the end of ttl_ms (negative_ttl_ms) */
    uint64_t notified_expires_ms; /* at the end of notified_ttl_ms */
    uint32_t epoch;               /* the notification epoch it was read in; 0: none */
} route_cache_entry_t;

typedef struct route_cache_list {
    route_cache_entry_t *oldest;
    route_cache_entry_t *newest;
} route_cache_list_t;

typedef struct route_cache_config {
    uint64_t ttl_ms;          /* a found (or malformed) route is reused this long */
    uint64_t notified_ttl_ms; /* ... or this long, read and kept while notifications are on */
    uint64_t negative_ttl_ms; /* "not found" is remembered this long */
    uint64_t stale_ttl_ms;    /* past its TTL a found route may still serve this long */
    size_t max_entries;       /* bound on cached IDs (at least one is kept) */
} route_cache_config_t;

typedef struct route_cache {
    route_cache_config_t config;
    strmap_t map;                         /* sandbox ID to route_cache_entry_t */
    route_cache_list_t found_entries;     /* FOUND and MALFORMED */
    route_cache_list_t not_found_entries; /* NOT_FOUND */
    /* Nonzero while keyspace notifications drop changed routes: routes read
     * in this epoch live notified_ttl_ms; a new epoch starts with each
     * subscription, so what was read before a gap keeps the short TTL. */
    uint32_t epoch;
} route_cache_t;

/* Prepares an empty cache; returns 0, or -1 when memory is exhausted. */
int route_cache_init(route_cache_t *cache, const route_cache_config_t *config);

/* Drops every entry and frees the map. Harmless on a zeroed or freed cache. */
void route_cache_free(route_cache_t *cache);

/* Remembers status and record (borrowed: the cache takes its own reference; NULL for
 * NOT_FOUND) for sandbox_id from now_ms on, read in epoch (the cache's epoch when its query was
 * sent), replacing an earlier answer, evicting one to stay within max_entries; on allocation
 * failure the answer is simply not cached. */
void route_cache_store(route_cache_t *cache, const char *sandbox_id, route_lookup_status_t status,
                       route_record_t *record, uint64_t now_ms, uint32_t epoch);

/* Notifications drop changed routes from now on (a new nonzero epoch), or no longer (0). */
static inline void route_cache_set_epoch(route_cache_t *cache, uint32_t epoch) {
    cache->epoch = epoch;
}

/* When entry expires: at the end of the notified TTL while its epoch lasts, else of the TTL. */
static inline uint64_t route_cache_expiry(const route_cache_t *cache,
                                          const route_cache_entry_t *entry) {
    return entry->epoch != 0 && entry->epoch == cache->epoch ? entry->notified_expires_ms
                                                             : entry->expires_ms;
}

/* The entry of sandbox_id, expired or not, or NULL. */
const route_cache_entry_t *route_cache_get(const route_cache_t *cache, const char *sandbox_id,
                                           size_t id_length);

/* True while entry is within its TTL. */
bool route_cache_fresh(const route_cache_t *cache, const route_cache_entry_t *entry,
                       uint64_t now_ms);

/* True while entry is a found route within its TTL and the stale window after it: what may
 * serve while Redis cannot answer. */
bool route_cache_within_stale(const route_cache_t *cache, const route_cache_entry_t *entry,
                              uint64_t now_ms);

/* True when entry is a fresh route (found or malformed) in the second half of its TTL: time to
 * read it again, so that it is replaced before it expires. */
bool route_cache_wants_refresh(const route_cache_t *cache, const route_cache_entry_t *entry,
                               uint64_t now_ms);

/* Drops the entry of sandbox_id; returns whether there was one. */
bool route_cache_remove(route_cache_t *cache, const char *sandbox_id, size_t id_length);

/* Drops the entry least worth keeping at now_ms: an expired "not found", else a route (found or
 * malformed) past its stale window, else the oldest "not found", else the oldest route. Harmless
 * on an empty cache. route_cache_store calls it when the cache is full. */
void route_cache_evict_one(route_cache_t *cache, uint64_t now_ms);

/* How many IDs are cached now. */
size_t route_cache_count(const route_cache_t *cache);

#endif
