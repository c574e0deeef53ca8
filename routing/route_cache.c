/* The route cache of one worker: catalog answers kept for their TTL, bounded, evicted cheaply. */
#include "routing/route_cache.h"

#include <stdlib.h>
#include <string.h>

enum { ROUTE_CACHE_TRIM_PER_STORE = 2 };

static route_cache_list_t *route_cache_list(route_cache_t *cache, route_lookup_status_t status) {
    return status == ROUTE_LOOKUP_NOT_FOUND ? &cache->not_found_entries : &cache->found_entries;
}

static void route_cache_unlink(route_cache_t *cache, route_cache_entry_t *entry) {
    route_cache_list_t *list = route_cache_list(cache, entry->status);
    if (entry->older != NULL)
        entry->older->newer = entry->newer;
    else
        list->oldest = entry->newer;
    if (entry->newer != NULL)
        entry->newer->older = entry->older;
    else
        list->newest = entry->older;
    entry->older = NULL;
    entry->newer = NULL;
}

static void route_cache_append(route_cache_t *cache, route_cache_entry_t *entry) {
    route_cache_list_t *list = route_cache_list(cache, entry->status);
    entry->older = list->newest;
    entry->newer = NULL;
    if (list->newest != NULL)
        list->newest->newer = entry;
    else
        list->oldest = entry;
    list->newest = entry;
}

static void route_cache_drop(route_cache_t *cache, route_cache_entry_t *entry) {
    route_cache_unlink(cache, entry);
    route_record_unref(entry->record);
    strmap_remove(&cache->map, entry->map_entry); /* the entry with it */
}

/* The useless go first, then "not found" answers, which a flood of random IDs
 * produces, and only then real routes. */
void route_cache_evict_one(route_cache_t *cache, uint64_t now_ms) {
    route_cache_entry_t *not_found = cache->not_found_entries.oldest;
    route_cache_entry_t *found = cache->found_entries.oldest;
    route_cache_entry_t *victim;
    if (not_found != NULL && not_found->expires_ms <= now_ms)
        victim = not_found;
    else if (found != NULL &&
             route_cache_expiry(cache, found) + cache->config.stale_ttl_ms <= now_ms)
        victim = found;
    else if (not_found != NULL)
        victim = not_found;
    else
        victim = found;
    if (victim != NULL)
        route_cache_drop(cache, victim);
}

int route_cache_init(route_cache_t *cache, const route_cache_config_t *config) {
    memset(cache, 0, sizeof(*cache));
    cache->config = *config;
    return strmap_init(&cache->map);
}

static void route_cache_free_entry(strmap_t *map, strmap_entry_t *map_entry, void *argument) {
    (void)argument;
    route_cache_entry_t *entry = map_entry->value;
    route_record_unref(entry->record);
    strmap_remove(map, map_entry); /* the entry with it */
}

void route_cache_free(route_cache_t *cache) {
    if (cache->map.buckets != NULL)
        strmap_foreach(&cache->map, route_cache_free_entry, NULL);
    strmap_free(&cache->map);
    cache->found_entries = (route_cache_list_t){NULL, NULL};
    cache->not_found_entries = (route_cache_list_t){NULL, NULL};
}

void route_cache_store(route_cache_t *cache, const char *sandbox_id, route_lookup_status_t status,
                       route_record_t *record, uint64_t now_ms, uint32_t epoch) {
    uint64_t ttl =
        status == ROUTE_LOOKUP_NOT_FOUND ? cache->config.negative_ttl_ms : cache->config.ttl_ms;
    size_t id_length = strlen(sandbox_id);

    /* Expired "not found" answers serve nobody: trim a few as we go, so a
     * flood that stopped does not hold memory until the bound is reached. */
    for (int trimmed = 0; trimmed < ROUTE_CACHE_TRIM_PER_STORE; trimmed++) {
        route_cache_entry_t *oldest = cache->not_found_entries.oldest;
        if (oldest == NULL || oldest->expires_ms > now_ms)
            break;
        route_cache_drop(cache, oldest);
    }

    strmap_entry_t *found = strmap_get(&cache->map, sandbox_id, id_length);
    route_cache_entry_t *entry;
    if (found != NULL) {
        entry = found->value;
        route_cache_unlink(cache, entry);
        route_record_unref(entry->record);
        entry->record = NULL;
    } else {
        while (cache->map.count >= cache->config.max_entries && cache->map.count > 0)
            route_cache_evict_one(cache, now_ms);
        strmap_entry_t *map_entry =
            strmap_put_inline(&cache->map, sandbox_id, id_length, sizeof(route_cache_entry_t));
        if (map_entry == NULL)
            return;
        entry = map_entry->value;
        entry->map_entry = map_entry;
    }
    entry->status = status;
    entry->record = record != NULL ? route_record_ref(record) : NULL;
    entry->expires_ms = now_ms + ttl;
    bool notified = status != ROUTE_LOOKUP_NOT_FOUND && cache->config.notified_ttl_ms > ttl;
    entry->notified_expires_ms =
        notified ? now_ms + cache->config.notified_ttl_ms : entry->expires_ms;
    entry->epoch = notified ? epoch : 0;
    route_cache_append(cache, entry);
}

const route_cache_entry_t *route_cache_get(const route_cache_t *cache, const char *sandbox_id,
                                           size_t id_length) {
    strmap_entry_t *found = strmap_get(&cache->map, sandbox_id, id_length);
    return found != NULL ? found->value : NULL;
}

bool route_cache_fresh(const route_cache_t *cache, const route_cache_entry_t *entry,
                       uint64_t now_ms) {
    return now_ms < route_cache_expiry(cache, entry);
}

bool route_cache_within_stale(const route_cache_t *cache, const route_cache_entry_t *entry,
                              uint64_t now_ms) {
    return entry->status == ROUTE_LOOKUP_FOUND &&
           now_ms < route_cache_expiry(cache, entry) + cache->config.stale_ttl_ms;
}

bool route_cache_wants_refresh(const route_cache_t *cache, const route_cache_entry_t *entry,
                               uint64_t now_ms) {
    uint64_t expiry = route_cache_expiry(cache, entry);
    uint64_t ttl =
        expiry == entry->expires_ms ? cache->config.ttl_ms : cache->config.notified_ttl_ms;
    return entry->status != ROUTE_LOOKUP_NOT_FOUND && now_ms < expiry && expiry - now_ms <= ttl / 2;
}

bool route_cache_remove(route_cache_t *cache, const char *sandbox_id, size_t id_length) {
    strmap_entry_t *found = strmap_get(&cache->map, sandbox_id, id_length);
    if (found == NULL)
        return false;
    route_cache_drop(cache, found->value);
    return true;
}

size_t route_cache_count(const route_cache_t *cache) { return cache->map.count; }
