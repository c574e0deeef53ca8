/* Process-wide count of in-flight requests per sandbox, for the catalog's max_connections. */
#ifndef SGW_ROUTING_LIMIT_H
#define SGW_ROUTING_LIMIT_H

#include <stddef.h>

typedef struct route_limit route_limit_t;

typedef enum route_limit_status {
    ROUTE_LIMIT_ADMITTED = 0,
    ROUTE_LIMIT_REACHED,   /* 429: limit requests are in flight already (or limit <= 0) */
    ROUTE_LIMIT_NO_MEMORY, /* 503: the request could not be counted */
} route_limit_status_t;

/* Admits one more request to sandbox_id if fewer than limit are in flight
 * over all workers, setting *counter to the sandbox's counter (to release
 * later). Only sandboxes that set a limit come here, so unlimited traffic
 * never touches the shared table. */
route_limit_status_t route_limit_acquire(const char *sandbox_id, long limit,
                                         route_limit_t **counter);

/* Ends one request admitted by route_limit_acquire. */
void route_limit_release(route_limit_t *counter);

/* Requests of sandbox_id in flight now (0 when none), for tests and metrics. */
long route_limit_in_flight(const char *sandbox_id);

/* Sandboxes with requests in flight: counters are freed when they reach 0. */
size_t route_limit_sandbox_count(void);

#endif
