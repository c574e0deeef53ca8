/* Metrics: per-worker counters written by their worker alone, summed at scrape (no locks). */
#ifndef SGW_GATEWAY_METRICS_H
#define SGW_GATEWAY_METRICS_H

#include <stdint.h>

struct evbuffer;
struct gw_server;

/* The protocol a request came over (the access log's and the metrics' label). */
typedef enum gw_protocol { GW_PROTOCOL_HTTP1, GW_PROTOCOL_H2, GW_PROTOCOL_COUNT } gw_protocol_t;

/* "http/1.1" or "h2". */
const char *gw_protocol_name(gw_protocol_t protocol);

/* How a request held for a resume stopped waiting (the metric's label). */
typedef enum gw_resume_outcome {
    GW_RESUME_RESUMED, /* the record says running: proxied to its addr */
    GW_RESUME_FAILED,  /* the record went away, turned malformed or may no longer wake */
    GW_RESUME_TIMEOUT, /* resume_timeout passed: 504 */
    GW_RESUME_GONE,    /* the client went away */
    GW_RESUME_DRAIN,   /* the gateway drained: 503 */
    GW_RESUME_OUTCOME_COUNT,
} gw_resume_outcome_t;

/* Upper bounds of the request-duration histogram, in microseconds. */
enum { GW_DURATION_BUCKET_COUNT = 11 };
/* Upper bounds of the resume-hold histogram, in milliseconds. */
enum { GW_HOLD_BUCKET_COUNT = 11 };

typedef struct gw_metrics {
    /* [protocol][status / 100]; class 0 when no status was sent */
    uint64_t responses_by_class[GW_PROTOCOL_COUNT][6];
    uint64_t duration_buckets[GW_DURATION_BUCKET_COUNT + 1]; /* not cumulative; last is +Inf */
    uint64_t duration_sum_us;
    uint64_t upstream_dial_errors;
    uint64_t upstream_dials;  /* connections dialled to sandboxes */
    uint64_t upstream_reuses; /* requests sent on a pooled connection */
    uint64_t upstream_requests; /* request heads sent to sandboxes, retries included */
    uint64_t upstream_evictions; /* idle connections closed to make room in a full pool */
    uint64_t client_connections;   /* gauge */
    uint64_t upstream_connections; /* gauge */
    uint64_t tunnels;              /* gauge: WebSocket and other upgraded connections */
    uint64_t h2_connections;       /* gauge: client connections speaking HTTP/2 */
    uint64_t h2_streams;           /* gauge: their open streams */
    uint64_t resume_requests;      /* resume requests this gateway added to the stream */
    uint64_t resume_held;          /* gauge: requests held for a resume now */
    uint64_t resume_waits[GW_RESUME_OUTCOME_COUNT];
    uint64_t hold_buckets[GW_HOLD_BUCKET_COUNT + 1]; /* not cumulative; last is +Inf */
    uint64_t hold_sum_us;
} gw_metrics_t;

/* One writer per counter, so a relaxed load and store is enough: no lock
 * prefix on the data path, and a scrape from another thread reads whole values. */
#define GW_METRIC_ADD(metrics, field, amount)                                                      \
    __atomic_store_n(&(metrics)->field,                                                            \
                     __atomic_load_n(&(metrics)->field, __ATOMIC_RELAXED) + (uint64_t)(amount),    \
                     __ATOMIC_RELAXED)
#define GW_METRIC_READ(metrics, field) __atomic_load_n(&(metrics)->field, __ATOMIC_RELAXED)

/* Counts one finished request: its protocol, status class and duration. */
void gw_metrics_observe_request(gw_metrics_t *metrics, gw_protocol_t protocol, int status,
                                uint64_t duration_us);

/* Counts one request that stopped waiting for a resume after duration_us. */
void gw_metrics_observe_hold(gw_metrics_t *metrics, gw_resume_outcome_t outcome,
                             uint64_t duration_us);

/* Appends the Prometheus text exposition of every worker's counters, summed,
 * and of the route catalogs, to out. */
void gw_metrics_render(struct evbuffer *out, struct gw_server *server);

#endif
