/* Resolving the names of domain entries: libevent's evdns, answers cached for their TTL. */
#include "egress/resolver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strmap.h"

enum {
    /* Names kept at once. A wildcard entry lets a sandbox ask for any number of names below it,
     * so the cache is bounded; past this, answers still arrive but are not kept. */
    EGRESS_RESOLVER_CACHE_MAX = 10000,
    EGRESS_RESOLVER_SWEEP_MS = 30 * 1000,
};

typedef enum egress_resolver_family {
    EGRESS_RESOLVER_A = 0,
    EGRESS_RESOLVER_AAAA = 1,
} egress_resolver_family_t;

typedef struct egress_resolver_entry egress_resolver_entry_t;

/* One query of an entry, so its evdns callback knows the family. */
typedef struct egress_resolver_query {
    egress_resolver_entry_t *entry;
    egress_resolver_family_t family;
    struct evdns_request *request; /* NULL once answered */
} egress_resolver_query_t;

struct egress_resolve_wait {
    egress_resolver_entry_t *entry;
    LIST_ENTRY(egress_resolve_wait) link; /* in its entry's waits, or the resolver's ready */
    bool ready;                           /* in ready: the answer is there, to be delivered */
    egress_resolve_callback_t *callback;
    void *argument;
};

/* A name: resolving (queries out, waits queued) or answered until expires_ms. */
struct egress_resolver_entry {
    egress_resolver_t *resolver;
    strmap_entry_t *map_entry; /* key: the name */
    egress_resolver_query_t queries[2];
    size_t outstanding; /* queries not answered yet */
    uint32_t ttl_s;     /* the shortest TTL of the answers so far */
    const char *errors[2];
    egress_resolved_t answer;
    uint64_t expires_ms; /* 0 while resolving */
    LIST_HEAD(, egress_resolve_wait) waits;
    size_t ready_count; /* its waits in the resolver's ready list: they hold the entry */
};

struct egress_resolver {
    struct event_base *base;
    struct evdns_base *dns;
    strmap_t entries;
    struct event *deliver;                  /* delivers answers that were cached when asked for */
    struct event *sweep;                    /* drops expired entries */
    LIST_HEAD(, egress_resolve_wait) ready; /* waits whose answer is there, for deliver */
    egress_metrics_t *metrics;
};

/* Takes wait off the list it is in. */
static void egress_resolver_unlink(egress_resolve_wait_t *wait) {
    LIST_REMOVE(wait, link);
    if (wait->ready)
        wait->entry->ready_count--;
}

/* Queues wait for deliver, on this loop turn: its entry's answer is there. */
static void egress_resolver_ready(egress_resolver_t *resolver, egress_resolve_wait_t *wait) {
    wait->ready = true;
    wait->entry->ready_count++;
    LIST_INSERT_HEAD(&resolver->ready, wait, link);
    event_active(resolver->deliver, EV_TIMEOUT, 0);
}

/* Only for an entry without queries out or waits. */
static void egress_resolver_entry_free(egress_resolver_entry_t *entry) {
    strmap_remove(&entry->resolver->entries, entry->map_entry);
    free(entry);
}

static bool egress_resolver_fresh(const egress_resolver_entry_t *entry, uint64_t now_ms) {
    return entry->expires_ms != 0 && now_ms < entry->expires_ms;
}

/* The answer as a caller sees it: its TTL what is left of the cached one. */
static void egress_resolver_copy(const egress_resolver_entry_t *entry, uint64_t now_ms,
                                 egress_resolved_t *resolved) {
    *resolved = entry->answer;
    uint64_t left_ms = entry->expires_ms > now_ms ? entry->expires_ms - now_ms : 0;
    resolved->ttl_s = (uint32_t)((left_ms + 999) / 1000);
    if (resolved->ttl_s < EGRESS_RESOLVER_TTL_MIN_S)
        resolved->ttl_s = EGRESS_RESOLVER_TTL_MIN_S;
}

/* Both queries answered: the entry expires after its TTL, and every wait gets the answer. */
static void egress_resolver_complete(egress_resolver_entry_t *entry) {
    egress_resolver_t *resolver = entry->resolver;
    uint32_t ttl_s = entry->ttl_s;
    if (ttl_s < EGRESS_RESOLVER_TTL_MIN_S)
        ttl_s = EGRESS_RESOLVER_TTL_MIN_S;
    if (ttl_s > EGRESS_RESOLVER_TTL_MAX_S)
        ttl_s = EGRESS_RESOLVER_TTL_MAX_S;
    uint64_t now_ms = clock_ms();
    entry->expires_ms = now_ms + (uint64_t)ttl_s * 1000;
    entry->answer.error = entry->answer.count4 + entry->answer.count6 > 0
                              ? NULL
                              : (entry->errors[0] != NULL ? entry->errors[0] : entry->errors[1]);
    if (entry->answer.error == NULL && entry->answer.count4 + entry->answer.count6 == 0)
        entry->answer.error = "no address";
    if (entry->answer.error != NULL)
        resolver->metrics->lookup_failures++;
    egress_resolved_t resolved;
    egress_resolver_copy(entry, now_ms, &resolved);
    log_debug("resolved %s: %zu IPv4, %zu IPv6 addresses, TTL %u s%s%s", entry->map_entry->key,
              resolved.count4, resolved.count6, ttl_s, resolved.error != NULL ? ": " : "",
              resolved.error != NULL ? resolved.error : "");
    /* A callback may cancel other waits (or start lookups): take each off the list first. */
    while (!LIST_EMPTY(&entry->waits)) {
        egress_resolve_wait_t *wait = LIST_FIRST(&entry->waits);
        egress_resolver_unlink(wait);
        wait->callback(&resolved, wait->argument);
        free(wait);
    }
    /* Over the bound, the answer served its waits and is not kept: the next sweep drops it. */
    if (resolver->entries.count > EGRESS_RESOLVER_CACHE_MAX) {
        entry->expires_ms = now_ms;
        event_active(resolver->sweep, EV_TIMEOUT, 0);
    }
}

static void egress_resolver_answered(int result, char type, int count, int ttl, void *addresses,
                                     void *argument) {
    egress_resolver_query_t *query = argument;
    egress_resolver_entry_t *entry = query->entry;
    query->request = NULL;
    entry->outstanding--;
    if (result == DNS_ERR_NONE && ttl >= 0 && (uint32_t)ttl < entry->ttl_s)
        entry->ttl_s = (uint32_t)ttl;
    if (result != DNS_ERR_NONE) {
        entry->errors[query->family] = evdns_err_to_string(result);
    } else if (query->family == EGRESS_RESOLVER_A && type == DNS_IPv4_A) {
        size_t kept = count < EGRESS_RESOLVED_MAX ? (size_t)count : EGRESS_RESOLVED_MAX;
        memcpy(entry->answer.addresses4, addresses, kept * 4);
        entry->answer.count4 = kept;
    } else if (query->family == EGRESS_RESOLVER_AAAA && type == DNS_IPv6_AAAA) {
        size_t kept = count < EGRESS_RESOLVED_MAX ? (size_t)count : EGRESS_RESOLVED_MAX;
        memcpy(entry->answer.addresses6, addresses, kept * 16);
        entry->answer.count6 = kept;
    }
    if (entry->outstanding == 0)
        egress_resolver_complete(entry);
}

/* Sends the A and AAAA queries of entry; returns false when neither could be sent. */
static bool egress_resolver_start(egress_resolver_entry_t *entry) {
    egress_resolver_t *resolver = entry->resolver;
    memset(&entry->answer, 0, sizeof(entry->answer));
    entry->errors[0] = entry->errors[1] = NULL;
    entry->ttl_s = EGRESS_RESOLVER_TTL_MAX_S;
    entry->expires_ms = 0;
    entry->outstanding = 0;
    resolver->metrics->lookups++;
    const char *name = entry->map_entry->key;
    for (size_t i = 0; i < 2; i++) {
        egress_resolver_query_t *query = &entry->queries[i];
        query->entry = entry;
        query->family = (egress_resolver_family_t)i;
        /* The name is absolute: no search domains of the node's resolv.conf apply. */
        query->request = i == EGRESS_RESOLVER_A
                             ? evdns_base_resolve_ipv4(resolver->dns, name, DNS_QUERY_NO_SEARCH,
                                                       egress_resolver_answered, query)
                             : evdns_base_resolve_ipv6(resolver->dns, name, DNS_QUERY_NO_SEARCH,
                                                       egress_resolver_answered, query);
        if (query->request != NULL)
            entry->outstanding++;
        else
            entry->errors[i] = "cannot send the query";
    }
    return entry->outstanding > 0;
}

bool egress_resolver_cached(egress_resolver_t *resolver, const char *name, size_t length,
                            egress_resolved_t *resolved) {
    strmap_entry_t *found = strmap_get(&resolver->entries, name, length);
    uint64_t now_ms = clock_ms();
    if (found == NULL || !egress_resolver_fresh(found->value, now_ms))
        return false;
    egress_resolver_copy(found->value, now_ms, resolved);
    return true;
}

egress_resolve_wait_t *egress_resolver_lookup(egress_resolver_t *resolver, const char *name,
                                              size_t length, egress_resolve_callback_t *callback,
                                              void *argument) {
    egress_resolve_wait_t *wait = calloc(1, sizeof(*wait));
    if (wait == NULL)
        return NULL;
    wait->callback = callback;
    wait->argument = argument;
    strmap_entry_t *found = strmap_get(&resolver->entries, name, length);
    egress_resolver_entry_t *entry = found != NULL ? found->value : NULL;
    if (entry == NULL) {
        if (resolver->entries.count >= EGRESS_RESOLVER_CACHE_MAX)
            event_active(resolver->sweep, EV_TIMEOUT, 0);
        entry = calloc(1, sizeof(*entry));
        if (entry == NULL)
            goto fail;
        entry->resolver = resolver;
        entry->map_entry = strmap_put(&resolver->entries, name, length, entry);
        if (entry->map_entry == NULL) {
            free(entry);
            goto fail;
        }
    }
    wait->entry = entry;
    if (egress_resolver_fresh(entry, clock_ms())) {
        egress_resolver_ready(resolver, wait);
        return wait;
    }
    if (entry->outstanding == 0 && !egress_resolver_start(entry)) {
        /* Nothing could be sent: the answer is that error, delivered as any other. */
        entry->expires_ms = clock_ms() + EGRESS_RESOLVER_TTL_MIN_S * 1000;
        entry->answer.error = entry->errors[0];
        egress_resolver_ready(resolver, wait);
        return wait;
    }
    LIST_INSERT_HEAD(&entry->waits, wait, link);
    return wait;

fail:
    free(wait);
    return NULL;
}

void egress_resolver_cancel(egress_resolve_wait_t *wait) {
    if (wait == NULL)
        return;
    egress_resolver_unlink(wait);
    free(wait);
}

static void egress_resolver_deliver(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_resolver_t *resolver = argument;
    uint64_t now_ms = clock_ms();
    while (!LIST_EMPTY(&resolver->ready)) {
        egress_resolve_wait_t *wait = LIST_FIRST(&resolver->ready);
        egress_resolver_unlink(wait);
        egress_resolved_t resolved;
        egress_resolver_copy(wait->entry, now_ms, &resolved);
        wait->callback(&resolved, wait->argument);
        free(wait);
    }
}

/* Drops answers that expired and that nobody waits for (ready waits hold their entry). */
static void egress_resolver_sweep_visit(strmap_t *map, strmap_entry_t *map_entry, void *argument) {
    (void)map;
    egress_resolver_entry_t *entry = map_entry->value;
    uint64_t now_ms = *(const uint64_t *)argument;
    if (entry->outstanding > 0 || !LIST_EMPTY(&entry->waits) || entry->ready_count > 0 ||
        egress_resolver_fresh(entry, now_ms))
        return;
    egress_resolver_entry_free(entry);
}

static void egress_resolver_sweep(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_resolver_t *resolver = argument;
    uint64_t now_ms = clock_ms();
    strmap_foreach(&resolver->entries, egress_resolver_sweep_visit, &now_ms);
}

/* The first "nameserver ADDR" line of path, copied into server; false when there is none. */
static bool egress_resolver_first_nameserver(const char *path, char *server, size_t size) {
    FILE *file = fopen(path, "re");
    if (file == NULL)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), file) != NULL) {
        char address[256];
        if (sscanf(line, " nameserver %255s", address) == 1) {
            snprintf(server, size, "%s", address);
            found = true;
        }
    }
    fclose(file);
    return found;
}

egress_resolver_t *egress_resolver_new(struct event_base *base, const char *dns_server,
                                       egress_metrics_t *metrics, char *error, size_t error_size) {
    egress_resolver_t *resolver = calloc(1, sizeof(*resolver));
    if (resolver == NULL) {
        error_format(error, error_size, "out of memory");
        return NULL;
    }
    resolver->base = base;
    resolver->metrics = metrics;
    char server[256];
    if (dns_server != NULL) {
        snprintf(server, sizeof(server), "%s", dns_server);
    } else if (!egress_resolver_first_nameserver("/etc/resolv.conf", server, sizeof(server))) {
        error_format(error, error_size,
                     "no dns_server in the configuration and no nameserver in /etc/resolv.conf");
        goto fail;
    }
    /* No resolv.conf or hosts file: this resolver asks one server, and only for full names. */
    resolver->dns = evdns_base_new(base, 0);
    if (resolver->dns == NULL || strmap_init(&resolver->entries) != 0) {
        error_format(error, error_size, "out of memory");
        goto fail;
    }
    if (evdns_base_nameserver_ip_add(resolver->dns, server) != 0) {
        error_format(error, error_size, "cannot use DNS server \"%s\"", server);
        goto fail;
    }
    /* A sandbox waits on this; 2 s and two attempts bound the wait at about 4 s, under the 5 s
     * a connection is given to name its host. */
    evdns_base_set_option(resolver->dns, "timeout:", "2");
    evdns_base_set_option(resolver->dns, "attempts:", "2");
    resolver->deliver = event_new(base, -1, 0, egress_resolver_deliver, resolver);
    resolver->sweep = event_new(base, -1, EV_PERSIST, egress_resolver_sweep, resolver);
    if (resolver->deliver == NULL || resolver->sweep == NULL) {
        error_format(error, error_size, "out of memory");
        goto fail;
    }
    clock_arm(resolver->sweep, EGRESS_RESOLVER_SWEEP_MS);
    log_info("domain entries resolve through %s", server);
    return resolver;

fail:
    egress_resolver_free(resolver);
    return NULL;
}

static void egress_resolver_free_visit(strmap_t *map, strmap_entry_t *map_entry, void *argument) {
    (void)map;
    (void)argument;
    egress_resolver_entry_t *entry = map_entry->value;
    while (!LIST_EMPTY(&entry->waits)) {
        egress_resolve_wait_t *wait = LIST_FIRST(&entry->waits);
        egress_resolver_unlink(wait);
        free(wait);
    }
    strmap_remove(&entry->resolver->entries, map_entry);
    free(entry);
}

void egress_resolver_free(egress_resolver_t *resolver) {
    if (resolver == NULL)
        return;
    /* Without failing them: no callback runs, and the entries they point at go next. */
    if (resolver->dns != NULL)
        evdns_base_free(resolver->dns, 0);
    while (!LIST_EMPTY(&resolver->ready)) {
        egress_resolve_wait_t *wait = LIST_FIRST(&resolver->ready);
        egress_resolver_unlink(wait);
        free(wait);
    }
    if (resolver->entries.buckets != NULL)
        strmap_foreach(&resolver->entries, egress_resolver_free_visit, NULL);
    strmap_free(&resolver->entries);
    if (resolver->deliver != NULL)
        event_free(resolver->deliver);
    if (resolver->sweep != NULL)
        event_free(resolver->sweep);
    free(resolver);
}
