/* Process-wide count of in-flight requests per sandbox, for the catalog's max_connections. */
#include "routing/limit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/strmap.h"

struct route_limit {
    strmap_entry_t *entry; /* in route_limit_table, keyed by sandbox ID */
    long in_flight;
};

/* The one table shared by all workers: the limit is per sandbox over the whole
 * process. Only limited sandboxes reach it, and the critical section is a hash
 * lookup, so one mutex is enough. */
static pthread_mutex_t route_limit_mutex = PTHREAD_MUTEX_INITIALIZER;
static strmap_t route_limit_table;
static bool route_limit_table_ready;

route_limit_status_t route_limit_acquire(const char *sandbox_id, long limit,
                                         route_limit_t **counter) {
    *counter = NULL;
    if (limit <= 0)
        return ROUTE_LIMIT_REACHED;
    size_t id_length = strlen(sandbox_id);
    route_limit_status_t status = ROUTE_LIMIT_NO_MEMORY;
    strmap_entry_t *entry = NULL;
    pthread_mutex_lock(&route_limit_mutex);
    if (!route_limit_table_ready) {
        if (strmap_init(&route_limit_table) != 0)
            goto done;
        route_limit_table_ready = true;
    }
    entry = strmap_get(&route_limit_table, sandbox_id, id_length);
    if (entry == NULL) {
        route_limit_t *created = calloc(1, sizeof(*created));
        if (created == NULL)
            goto done;
        entry = strmap_put(&route_limit_table, sandbox_id, id_length, created);
        if (entry == NULL) {
            free(created);
            goto done;
        }
        created->entry = entry;
    }
    /* A new entry is always admitted (limit > 0), so none is ever left at 0. */
    status = ROUTE_LIMIT_REACHED;
    if (((route_limit_t *)entry->value)->in_flight < limit) {
        *counter = entry->value;
        (*counter)->in_flight++;
        status = ROUTE_LIMIT_ADMITTED;
    }
done:
    pthread_mutex_unlock(&route_limit_mutex);
    return status;
}

void route_limit_release(route_limit_t *counter) {
    if (counter == NULL)
        return;
    pthread_mutex_lock(&route_limit_mutex);
    if (--counter->in_flight == 0) {
        /* Freed at zero so that a flood of distinct IDs leaves nothing behind. */
        strmap_remove(&route_limit_table, counter->entry);
        free(counter);
    }
    pthread_mutex_unlock(&route_limit_mutex);
}

long route_limit_in_flight(const char *sandbox_id) {
    long in_flight = 0;
    pthread_mutex_lock(&route_limit_mutex);
    if (route_limit_table_ready) {
        strmap_entry_t *entry = strmap_get(&route_limit_table, sandbox_id, strlen(sandbox_id));
        if (entry != NULL)
            in_flight = ((route_limit_t *)entry->value)->in_flight;
    }
    pthread_mutex_unlock(&route_limit_mutex);
    return in_flight;
}

size_t route_limit_sandbox_count(void) {
    pthread_mutex_lock(&route_limit_mutex);
    size_t count = route_limit_table_ready ? route_limit_table.count : 0;
    pthread_mutex_unlock(&route_limit_mutex);
    return count;
}
