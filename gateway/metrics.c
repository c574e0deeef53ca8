/* Metrics: per-worker counters written by their worker alone, summed at scrape (no locks). */
#include "gateway/metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <string.h>

#include "gateway/worker.h"
#include "routing/catalog.h"
#include "tls/tls.h"

static const uint64_t gw_duration_bounds_us[GW_DURATION_BUCKET_COUNT] = {
    1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000,
};

static const uint64_t gw_hold_bounds_ms[GW_HOLD_BUCKET_COUNT] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
};

static const char *const gw_resume_outcome_names[GW_RESUME_OUTCOME_COUNT] = {
    [GW_RESUME_RESUMED] = "resumed", [GW_RESUME_FAILED] = "failed", [GW_RESUME_TIMEOUT] = "timeout",
    [GW_RESUME_GONE] = "gone",       [GW_RESUME_DRAIN] = "drain",
};

const char *gw_protocol_name(gw_protocol_t protocol) {
    return protocol == GW_PROTOCOL_H2 ? "h2" : "http/1.1";
}

void gw_metrics_observe_request(gw_metrics_t *metrics, gw_protocol_t protocol, int status,
                                uint64_t duration_us) {
    int status_class = status / 100;
    GW_METRIC_ADD(metrics,
                  responses_by_class[protocol][status_class >= 1 && status_class <= 5 ? status_class
                                                                                      : 0],
                  1);
    size_t bucket = 0;
    while (bucket < GW_DURATION_BUCKET_COUNT && duration_us > gw_duration_bounds_us[bucket])
        bucket++;
    GW_METRIC_ADD(metrics, duration_buckets[bucket], 1);
    GW_METRIC_ADD(metrics, duration_sum_us, duration_us);
}

void gw_metrics_observe_hold(gw_metrics_t *metrics, gw_resume_outcome_t outcome,
                             uint64_t duration_us) {
    GW_METRIC_ADD(metrics, resume_waits[outcome], 1);
    size_t bucket = 0;
    while (bucket < GW_HOLD_BUCKET_COUNT && duration_us > gw_hold_bounds_ms[bucket] * 1000)
        bucket++;
    GW_METRIC_ADD(metrics, hold_buckets[bucket], 1);
    GW_METRIC_ADD(metrics, hold_sum_us, duration_us);
}

static void gw_metrics_sum(gw_server_t *server, gw_metrics_t *total,
                           route_catalog_stats_t *catalog_total) {
    memset(total, 0, sizeof(*total));
    memset(catalog_total, 0, sizeof(*catalog_total));
    for (size_t w = 0; w < server->worker_count; w++) {
        gw_metrics_t *metrics = &server->workers[w].metrics;
        for (size_t p = 0; p < GW_PROTOCOL_COUNT; p++) {
            for (size_t i = 0; i < 6; i++)
                total->responses_by_class[p][i] += GW_METRIC_READ(metrics, responses_by_class[p][i]);
        }
        for (size_t i = 0; i <= GW_DURATION_BUCKET_COUNT; i++)
            total->duration_buckets[i] += GW_METRIC_READ(metrics, duration_buckets[i]);
        total->duration_sum_us += GW_METRIC_READ(metrics, duration_sum_us);
        total->upstream_dial_errors += GW_METRIC_READ(metrics, upstream_dial_errors);
        total->upstream_dials += GW_METRIC_READ(metrics, upstream_dials);
        total->upstream_reuses += GW_METRIC_READ(metrics, upstream_reuses);
        total->upstream_requests += GW_METRIC_READ(metrics, upstream_requests);
        total->upstream_evictions += GW_METRIC_READ(metrics, upstream_evictions);
        total->client_connections += GW_METRIC_READ(metrics, client_connections);
        total->upstream_connections += GW_METRIC_READ(metrics, upstream_connections);
        total->tunnels += GW_METRIC_READ(metrics, tunnels);
        total->h2_connections += GW_METRIC_READ(metrics, h2_connections);
        total->h2_streams += GW_METRIC_READ(metrics, h2_streams);
        total->resume_requests += GW_METRIC_READ(metrics, resume_requests);
        total->resume_held += GW_METRIC_READ(metrics, resume_held);
        for (size_t i = 0; i < GW_RESUME_OUTCOME_COUNT; i++)
            total->resume_waits[i] += GW_METRIC_READ(metrics, resume_waits[i]);
        for (size_t i = 0; i <= GW_HOLD_BUCKET_COUNT; i++)
            total->hold_buckets[i] += GW_METRIC_READ(metrics, hold_buckets[i]);
        total->hold_sum_us += GW_METRIC_READ(metrics, hold_sum_us);
        route_catalog_t *catalog = __atomic_load_n(&server->workers[w].catalog, __ATOMIC_ACQUIRE);
        if (catalog != NULL) {
            /* Single 64-bit counters, each written by its own worker: a
             * scrape may see one a request behind, never a torn value. */
            route_catalog_stats_t stats = route_catalog_get_stats(catalog);
            catalog_total->cache_hits += stats.cache_hits;
            catalog_total->cache_misses += stats.cache_misses;
            catalog_total->redis_lookups += stats.redis_lookups;
            catalog_total->redis_errors += stats.redis_errors;
            catalog_total->invalidations += stats.invalidations;
        }
    }
}

static void gw_metrics_counter(struct evbuffer *out, const char *name, const char *help,
                               uint64_t value) {
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name,
                        name, value);
}

static void gw_metrics_gauge(struct evbuffer *out, const char *name, const char *help,
                             uint64_t value) {
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %" PRIu64 "\n", name, help, name,
                        name, value);
}

/* A histogram of count buckets (not cumulative, one more for +Inf) whose upper
 * bounds are bounds x unit seconds, with its sum in microseconds. */
static void gw_metrics_histogram(struct evbuffer *out, const char *name, const char *help,
                                 const uint64_t *bounds, double unit, const uint64_t *buckets,
                                 size_t count, uint64_t sum_us) {
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < count; i++) {
        cumulative += buckets[i];
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                            (double)bounds[i] * unit, cumulative);
    }
    cumulative += buckets[count];
    evbuffer_add_printf(out,
                        "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n",
                        name, cumulative, name, (double)sum_us / 1e6, name, cumulative);
}

void gw_metrics_render(struct evbuffer *out, gw_server_t *server) {
    gw_metrics_t total;
    route_catalog_stats_t catalog;
    gw_metrics_sum(server, &total, &catalog);

    evbuffer_add_printf(out,
                        "# HELP sgw_requests_total Requests answered, by protocol and status class.\n"
                        "# TYPE sgw_requests_total counter\n");
    static const char *const classes[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (size_t p = 0; p < GW_PROTOCOL_COUNT; p++) {
        for (size_t i = 0; i < 6; i++)
            evbuffer_add_printf(out,
                                "sgw_requests_total{protocol=\"%s\",class=\"%s\"} %" PRIu64 "\n",
                                gw_protocol_name((gw_protocol_t)p), classes[i],
                                total.responses_by_class[p][i]);
    }

    gw_metrics_histogram(out, "sgw_request_duration_seconds",
                         "Time from a request's first byte to its response's last.",
                         gw_duration_bounds_us, 1e-6, total.duration_buckets,
                         GW_DURATION_BUCKET_COUNT, total.duration_sum_us);

    gw_metrics_gauge(out, "sgw_client_connections", "Open client connections.",
                     total.client_connections);
    gw_metrics_gauge(out, "sgw_upstream_connections",
                     "Open connections to sandboxes, pooled ones included.",
                     total.upstream_connections);
    gw_metrics_gauge(out, "sgw_tunnels", "Open upgraded (WebSocket) connections.", total.tunnels);
    gw_metrics_gauge(out, "sgw_h2_connections", "Open client connections speaking HTTP/2.",
                     total.h2_connections);
    gw_metrics_gauge(out, "sgw_h2_streams", "Open HTTP/2 streams of clients.", total.h2_streams);
    gw_metrics_counter(out, "sgw_resume_requests_total",
                       "Resume requests this gateway added to resume_stream.",
                       total.resume_requests);
    gw_metrics_gauge(out, "sgw_resume_held", "Requests held now, waiting for a sandbox to resume.",
                     total.resume_held);
    evbuffer_add_printf(out, "# HELP sgw_resume_waits_total Requests that stopped waiting for a "
                             "resume, by outcome.\n"
                             "# TYPE sgw_resume_waits_total counter\n");
    for (size_t i = 0; i < GW_RESUME_OUTCOME_COUNT; i++)
        evbuffer_add_printf(out, "sgw_resume_waits_total{outcome=\"%s\"} %" PRIu64 "\n",
                            gw_resume_outcome_names[i], total.resume_waits[i]);
    gw_metrics_histogram(out, "sgw_resume_hold_seconds",
                         "How long requests were held for a resume.", gw_hold_bounds_ms, 1e-3,
                         total.hold_buckets, GW_HOLD_BUCKET_COUNT, total.hold_sum_us);
    gw_metrics_counter(out, "sgw_route_cache_hits_total", "Lookups answered by the route cache.",
                       catalog.cache_hits);
    gw_metrics_counter(out, "sgw_route_cache_misses_total",
                       "Lookups the route cache could not answer.", catalog.cache_misses);
    gw_metrics_counter(out, "sgw_redis_lookups_total", "Catalog queries sent to Redis.",
                       catalog.redis_lookups);
    gw_metrics_counter(out, "sgw_redis_errors_total",
                       "Catalog queries that failed or timed out, and lost connections.",
                       catalog.redis_errors);
    gw_metrics_counter(out, "sgw_route_invalidations_total",
                       "Cached routes dropped by keyspace notifications.", catalog.invalidations);
    gw_metrics_counter(out, "sgw_upstream_dials_total", "Connections dialled to sandboxes.",
                       total.upstream_dials);
    gw_metrics_counter(out, "sgw_upstream_reuses_total",
                       "Requests sent on a pooled (kept-alive) sandbox connection.",
                       total.upstream_reuses);
    gw_metrics_counter(out, "sgw_upstream_requests_total",
                       "Request heads sent to sandboxes, a retry on a fresh connection included.",
                       total.upstream_requests);
    gw_metrics_counter(
        out, "sgw_upstream_evictions_total",
        "Idle sandbox connections closed to make room: in a full pool, or out of descriptors.",
        total.upstream_evictions);
    gw_metrics_counter(out, "sgw_upstream_dial_errors_total",
                       "Dials to sandboxes that failed (after retries) or timed out.",
                       total.upstream_dial_errors);
    tls_stats_t tls = {0};
    if (server->tls != NULL)
        tls = tls_context_get_stats(server->tls);
    gw_metrics_counter(out, "sgw_tls_handshakes_total", "TLS handshakes completed.",
                       tls.handshakes);
    gw_metrics_counter(out, "sgw_tls_sessions_resumed_total",
                       "TLS handshakes that resumed a session (tickets).", tls.resumed);
    gw_metrics_counter(out, "sgw_tls_handshake_errors_total", "TLS handshakes that failed.",
                       tls.failed);
}
