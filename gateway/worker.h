/* Workers: one thread per core, each with its own event loop, listeners, catalog and pool. */
#ifndef SGW_GATEWAY_WORKER_H
#define SGW_GATEWAY_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "gateway/access_log.h"
#include "gateway/config.h"
#include "gateway/metrics.h"
#include "gateway/upstream.h"
#include "gateway/upstream_h2.h"
#include "routing/address.h"
#include "routing/catalog.h"
#include "util/arena.h"
#include "util/block_cache.h"
#include "util/redis_link.h"

/* The blocks of request arenas: a head of a few fields fits one; a worker
 * keeps up to GW_REQUEST_BLOCKS_KEPT (4 MiB) for requests to come. */
enum { GW_REQUEST_BLOCK = 4096, GW_REQUEST_BLOCKS_KEPT = 1024 };

/* HTTP/2 streams that ended, kept with their buffers and timer for the
 * worker's next streams: at most GW_H2_STREAMS_KEPT (about 0.6 MiB). */
enum { GW_H2_STREAMS_KEPT = 256 };

/* nghttp2's freed objects a worker keeps of each size (util/block_cache.h): 1.2 MiB at most. */
enum { GW_NGHTTP2_BLOCKS_KEPT = 512 };

/* libevent's smallest evbuffer chain on 64-bit builds, and how many freed
 * ones a thread keeps: 1 MiB at most. A loop turn at 1,000 clients forwards
 * hundreds of requests, each with chains of its own until the turn's sends;
 * kept, they come back without malloc's bookkeeping of cold chunks. */
enum { GW_LIBEVENT_CHAIN = 1024, GW_LIBEVENT_CHAINS_KEPT = 1024 };

struct event_base;
struct event;
struct evconnlistener;
struct gw_conn;
struct gw_h2_stream;

/* What the whole process shares, read-only once workers run. */
typedef struct gw_server {
    gw_config_t config;
    gw_access_log_t *access_log; /* NULL when off */
    struct gw_worker *workers;
    size_t worker_count;
    int draining; /* set (atomically) once SIGTERM arrived: health says 503 */
    struct tls_context *tls; /* NULL without tls listeners */
    route_address_policy_t address_policy; /* where records may point (gw_server_init_routing) */
    char instance[GW_INSTANCE_NAME_MAX + 1]; /* this gateway's name in Via */
    size_t instance_length;
    pthread_mutex_t cookie_lock;  /* the key is replaced by SIGHUP while workers read it */
    auth_cookie_key_t cookie_key; /* signs access cookies (auth_cookie_key_file, else random) */
} gw_server_t;

/* One listening socket of a worker and the configuration line it serves. */
typedef struct gw_worker_listener {
    struct gw_worker *worker;
    const gw_listen_t *listen;
    struct evconnlistener *listener;
} gw_worker_listener_t;

typedef struct gw_worker {
    int index;
    pthread_t thread;
    bool thread_started;
    bool thread_joined;
    gw_server_t *server;
    const gw_config_t *config;
    struct event_base *base;
    gw_worker_listener_t *listeners;
    size_t listener_count;
    bool listeners_paused; /* at max_connections or out of descriptors: new connections wait in the
                              backlog */
    struct event *accept_retry; /* out of descriptors: the listeners resume */
    struct event *stop_event;  /* activated by the worker itself (last connection of a drain) */
    int wake_fd;               /* eventfd other threads write to, instead of locking the loop */
    struct event *wake_event;
    int requests;   /* GW_WORKER_* bits, set atomically before a wake */
    bool draining;  /* listeners closed; connections close after their response */
    int finished;   /* set (atomically) when the loop returned */
    route_catalog_t *catalog;
    redis_link_t control;         /* to resume_redis_url: resume requests, activity */
    struct gw_activity *activity; /* NULL when activity_interval is off */
    struct gw_resume *resume;     /* requests held for paused sandboxes */
    gw_pool_t pool;
    gw_h2up_pool_t h2up_pool; /* h2c sessions to sandboxes */
    arena_pool_t request_blocks; /* for the arenas of requests (connections and h2 streams) */
    struct gw_h2_stream *h2_streams_kept; /* ended streams for reuse (gateway/http2.c) */
    size_t h2_streams_kept_count;
    block_cache_t nghttp2_blocks; /* for nghttp2's objects (gw_worker_nghttp2_mem) */
    LIST_HEAD(gw_conn_list, gw_conn) clients;
    size_t client_count;
    size_t client_limit; /* this worker's share of max_connections */
    gw_metrics_t metrics;
} gw_worker_t;

/* Prepares what routing takes from server's configuration: the instance name
 * (instance_name, else random per process) and the address policy with every
 * socket the gateway listens on. Returns 0, or -1 when memory is exhausted. */
int gw_server_init_routing(gw_server_t *server);

/* A copy of the key that signs access cookies. */
void gw_server_cookie_key(gw_server_t *server, auth_cookie_key_t *key);

/* SIGHUP: reads auth_cookie_key_file again; on an error the old key stays.
 * Returns 0, 1 when there is no file to read, or -1 with the reason. */
int gw_server_reload_cookie_key(gw_server_t *server, char *error, size_t error_size);

/* Frees what gw_server_init_routing took. Idempotent. */
void gw_server_free_routing(gw_server_t *server);

/* Prepares worker index of server: event loop, pool, catalog. Returns 0, or
 * -1 after logging why (the worker must still be freed). */
int gw_worker_init(gw_worker_t *worker, gw_server_t *server, int index);

/* Opens the worker's own listening socket for each listen of the
 * configuration. Returns 0, or -1 after logging why. */
int gw_worker_listen(gw_worker_t *worker);

/* The allocator for worker's nghttp2 sessions (clients' and sandboxes'): its
 * block cache, which only the worker's thread may use. */
nghttp2_mem gw_worker_nghttp2_mem(gw_worker_t *worker);

/* Keeps libevent's freed evbuffer chains of 1 KiB in a stock of the thread
 * that frees each (util/block_cache.h), for its next: one comes and goes
 * four times a keep-alive request, and glibc served it from its per-thread
 * cache or its slow path as the heap's layout had it. Every other libevent
 * allocation is malloc's. Called first in main, before anything calls
 * libevent. */
void gw_libevent_memory_start(void);

/* Frees what the calling thread's libevent stock keeps: last thing in each
 * thread that used libevent. */
void gw_libevent_memory_clear(void);

/* Runs the worker's loop on a new thread; returns 0 or -1. */
int gw_worker_start(gw_worker_t *worker);

/* From the main thread at SIGTERM, before the worker drains: its listeners
 * stop deferring accept, so a connection that has sent nothing is accepted now
 * and closed cleanly at drain, not dropped with the listener. */
void gw_worker_stop_deferring(gw_worker_t *worker);

/* Asks a running worker (from any thread) to close its listeners and idle
 * connections, and to return once its in-flight requests have ended. */
void gw_worker_drain(gw_worker_t *worker);

/* True (from any thread) once the worker's loop returned. */
bool gw_worker_finished(const gw_worker_t *worker);

/* Asks a running worker (from any thread) to close everything and return. */
void gw_worker_stop(gw_worker_t *worker);

/* Waits for the worker's thread to return (once stopped); harmless when it never ran. */
void gw_worker_join(gw_worker_t *worker);

/* Waits for the worker's thread and frees what the worker owns. Every worker
 * is joined first: a running one may still wake another (gw_worker_make_room). */
void gw_worker_free(gw_worker_t *worker);

/* The process is out of descriptors: closes up to count of the worker's idle
 * sandbox connections, HTTP/1.1 ones first, then h2c sessions without a
 * stream, those idle longest first, and returns how many it closed. With none
 * to close, asks the other workers to close some of theirs (the descriptor
 * limit is the process's, the pools are the workers'), for a later try. */
size_t gw_worker_make_room(gw_worker_t *worker, size_t count);

/* A client connection of this worker closed: accept again if paused. */
void gw_worker_client_closed(gw_worker_t *worker);

#endif
