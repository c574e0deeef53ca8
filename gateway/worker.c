/* Workers: one thread per core, each with its own event loop, listeners, catalog and pool. */
#include "gateway/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "gateway/activity.h"
#include "gateway/connection.h"
#include "gateway/http2.h"
#include "gateway/io.h"
#include "gateway/resume.h"
#include "util/clock.h"
#include "util/log.h"

/* Connections the kernel may queue per listener while a worker is busy or
 * paused at max_connections. */
enum { GW_LISTEN_BACKLOG = 4096 };

/* What another thread asks of a worker (bits of gw_worker_t.requests). */
enum { GW_WORKER_DRAIN = 1, GW_WORKER_STOP = 2, GW_WORKER_SHED = 4 };
/* How long before drain_timeout held requests are answered, so that the 503
 * is written before the connections close. */
enum { GW_DRAIN_ANSWER_MS = 200 };
/* Out of descriptors: idle sandbox connections closed for one failed
 * accept, and how long the listeners pause when there were none. */
enum { GW_ACCEPT_SHED = 16, GW_ACCEPT_RETRY_MS = 100 };

static void gw_worker_pause_listeners(gw_worker_t *worker, bool pause) {
    if (worker->listeners_paused == pause)
        return;
    for (size_t i = 0; i < worker->listener_count; i++) {
        if (pause)
            evconnlistener_disable(worker->listeners[i].listener);
        else
            evconnlistener_enable(worker->listeners[i].listener);
    }
    worker->listeners_paused = pause;
}

static void gw_worker_accept(struct evconnlistener *listener, evutil_socket_t fd,
                             struct sockaddr *address, int address_length, void *arg) {
    (void)listener;
    gw_worker_listener_t *entry = arg;
    gw_worker_t *worker = entry->worker;
    gw_conn_accept(worker, entry->listen, fd, address, address_length);
    /* Above max_connections new connections wait in the kernel's backlog. */
    if (worker->client_count >= worker->client_limit)
        gw_worker_pause_listeners(worker, true);
}

/* Closes up to count of the worker's idle sandbox connections, HTTP/1.1 ones
 * first, then h2c sessions without a stream; returns how many. */
static size_t gw_worker_shed(gw_worker_t *worker, size_t count) {
    size_t closed = gw_pool_shed(&worker->pool, count);
    if (closed < count)
        closed += gw_h2up_pool_shed(&worker->h2up_pool, count - closed);
    return closed;
}

static void gw_worker_accept_error(struct evconnlistener *listener, void *arg) {
    gw_worker_t *worker = ((gw_worker_listener_t *)arg)->worker;
    int error = EVUTIL_SOCKET_ERROR();
    bool out_of_descriptors = error == EMFILE || error == ENFILE;
    /* The kernel takes the descriptor before it looks at the queue: the
     * accept that would have found nothing more fails so when the last one
     * took the last descriptor. No client waits for it. */
    struct pollfd waiting = {.fd = evconnlistener_get_fd(listener), .events = POLLIN};
    if (out_of_descriptors && poll(&waiting, 1, 0) == 0)
        return;
    /* A client waits: connections idle to sandboxes make room for it (nginx
     * closes its idle keep-alive connections the same way); the listener,
     * still readable, accepts it in the next loop turn. */
    if (out_of_descriptors && gw_worker_make_room(worker, GW_ACCEPT_SHED) > 0)
        return;
    /* Nothing of its own to close (another worker's are closed for the retry
     * below), or out of memory: clients wait in the backlog for a moment,
     * where a listener that stays readable would spin the loop. */
    log_error("worker %d: accept failed: %s; accepting again in %d ms", worker->index,
              evutil_socket_error_to_string(error), GW_ACCEPT_RETRY_MS);
    gw_worker_pause_listeners(worker, true);
    struct timeval delay = clock_timeval(GW_ACCEPT_RETRY_MS);
    evtimer_add(worker->accept_retry, &delay);
}

static void gw_worker_resume_listeners(gw_worker_t *worker) {
    if (worker->listeners_paused && worker->client_count < worker->client_limit &&
        worker->listeners != NULL)
        gw_worker_pause_listeners(worker, false);
}

static void gw_worker_on_accept_retry(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_worker_resume_listeners(arg);
}

void gw_worker_client_closed(gw_worker_t *worker) {
    worker->client_count--;
    if (worker->draining) {
        if (worker->client_count == 0)
            event_active(worker->stop_event, EV_READ, 0);
        return;
    }
    gw_worker_resume_listeners(worker);
}

static void gw_worker_close_listeners(gw_worker_t *worker) {
    for (size_t i = 0; i < worker->listener_count; i++) {
        if (worker->listeners[i].listener != NULL)
            evconnlistener_free(worker->listeners[i].listener);
    }
    free(worker->listeners);
    worker->listeners = NULL;
    worker->listener_count = 0;
}

/* Runs on the worker's own loop: stops accepting, closes idle connections,
 * and lets the others finish their request; the loop ends with the last. */
static void gw_worker_on_drain(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_worker_t *worker = arg;
    if (worker->draining)
        return;
    worker->draining = true;
    gw_worker_close_listeners(worker);
    /* Held requests are answered 503 at drain_timeout, a moment before the
     * main thread closes what is left (its timer started a little earlier). */
    uint64_t timeout = worker->config->drain_timeout_ms;
    gw_resume_drain(worker->resume,
                    timeout > 2 * GW_DRAIN_ANSWER_MS ? timeout - GW_DRAIN_ANSWER_MS : timeout / 2);
    gw_conn_t *client = LIST_FIRST(&worker->clients);
    while (client != NULL) {
        gw_conn_t *next = LIST_NEXT(client, link);
        gw_conn_drain(client);
        client = next;
    }
    if (worker->client_count == 0)
        event_active(worker->stop_event, EV_READ, 0);
}

/* Runs on the worker's own loop: closes everything it owns, then ends the loop. */
static void gw_worker_on_stop(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_worker_t *worker = arg;
    gw_worker_close_listeners(worker);
    gw_conn_t *client;
    while ((client = LIST_FIRST(&worker->clients)) != NULL)
        gw_conn_close(client);
    gw_h2up_pool_free(&worker->h2up_pool);
    gw_resume_free(worker->resume);
    worker->resume = NULL;
    if (worker->catalog != NULL) {
        route_catalog_free(worker->catalog);
        worker->catalog = NULL;
    }
    gw_pool_free(&worker->pool); /* after the records, whose pool hints point into it */
    gw_activity_free(worker->activity);
    worker->activity = NULL;
    redis_link_close(&worker->control);
    event_base_loopbreak(worker->base);
}

/* Another thread asked something: the loop has no locks (no evthread), so
 * requests arrive as bits and an eventfd wake-up, handled on this thread. */
static void gw_worker_on_wake(evutil_socket_t fd, short events, void *arg) {
    (void)events;
    gw_worker_t *worker = arg;
    uint64_t count;
    while (read(fd, &count, sizeof(count)) > 0) {
    }
    int requests = __atomic_exchange_n(&worker->requests, 0, __ATOMIC_ACQ_REL);
    if (requests & GW_WORKER_SHED)
        gw_worker_shed(worker, GW_ACCEPT_SHED);
    if (requests & GW_WORKER_STOP)
        gw_worker_on_stop(-1, 0, worker);
    else if (requests & GW_WORKER_DRAIN)
        gw_worker_on_drain(-1, 0, worker);
}

static void gw_worker_request(gw_worker_t *worker, int request) {
    if (worker->wake_fd < 0)
        return;
    /* Asked already and not woken yet: that wake-up reads this request too. */
    if (__atomic_fetch_or(&worker->requests, request, __ATOMIC_ACQ_REL) & request)
        return;
    uint64_t one = 1;
    if (write(worker->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_error("worker %d: cannot wake: %s", worker->index, strerror(errno));
}

/* Idle upstream connections a worker may keep: three quarters of the
 * descriptors the process may open, shared by the workers (many sandboxes
 * each keep a warm connection; clients and dials need the rest, and when
 * those run out, idle connections are closed for them: gw_worker_make_room). */
static size_t gw_worker_pool_limit(const gw_server_t *server) {
    struct rlimit limit;
    size_t descriptors = 4096;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
        descriptors = (size_t)limit.rlim_cur;
    size_t share = descriptors / 4 * 3 / server->worker_count;
    return share > 16 ? share : 16;
}

int gw_server_init_routing(gw_server_t *server) {
    const gw_config_t *config = &server->config;
    if (config->instance_name != NULL) {
        server->instance_length = strlen(config->instance_name);
        memcpy(server->instance, config->instance_name, server->instance_length + 1);
    } else {
        /* 48 random bits: two gateways of a fleet never share a name. */
        unsigned char random[6];
        randombytes_buf(random, sizeof(random));
        memcpy(server->instance, "sgw-", 4);
        sodium_bin2hex(server->instance + 4, sizeof(server->instance) - 4, random,
                       sizeof(random));
        server->instance_length = strlen(server->instance);
    }
    pthread_mutex_init(&server->cookie_lock, NULL);
    if (config->auth_cookie_key_file != NULL) {
        server->cookie_key = config->auth_cookie_key;
    } else {
        auth_cookie_key_random(&server->cookie_key);
        log_info("auth_cookie_key_file not set: access cookies are signed with a random key and "
                 "work on this gateway alone");
    }
    route_address_policy_init(&server->address_policy, config->upstream_deny,
                              config->upstream_deny_count);
    for (size_t i = 0; i < config->listen_count; i++) {
        if (route_address_policy_add_own(&server->address_policy,
                                         (const struct sockaddr *)&config->listens[i].address) < 0)
            return -1;
    }
    if (config->has_admin_listen &&
        route_address_policy_add_own(&server->address_policy,
                                     (const struct sockaddr *)&config->admin_listen.address) < 0)
        return -1;
    return 0;
}

void gw_server_free_routing(gw_server_t *server) {
    route_address_policy_free(&server->address_policy);
    sodium_memzero(&server->cookie_key, sizeof(server->cookie_key));
}

void gw_server_cookie_key(gw_server_t *server, auth_cookie_key_t *key) {
    pthread_mutex_lock(&server->cookie_lock);
    *key = server->cookie_key;
    pthread_mutex_unlock(&server->cookie_lock);
}

int gw_server_reload_cookie_key(gw_server_t *server, char *error, size_t error_size) {
    const char *path = server->config.auth_cookie_key_file;
    if (path == NULL)
        return 1;
    auth_cookie_key_t key;
    if (auth_cookie_key_read(path, &key, error, error_size) != 0)
        return -1;
    pthread_mutex_lock(&server->cookie_lock);
    server->cookie_key = key;
    pthread_mutex_unlock(&server->cookie_lock);
    sodium_memzero(&key, sizeof(key));
    return 0;
}

/* Each thread's stock of libevent's 1 KiB chains, a copy of the first one
 * (which measured the block's usable size) until it is first used. */
static block_stock_t gw_libevent_chains_made;
static _Thread_local block_stock_t gw_libevent_chains;

static block_stock_t *gw_libevent_stock(void) {
    if (gw_libevent_chains.size == 0)
        gw_libevent_chains = gw_libevent_chains_made;
    return &gw_libevent_chains;
}

static void *gw_libevent_malloc(size_t size) {
    return block_stock_malloc(gw_libevent_stock(), size);
}

static void *gw_libevent_realloc(void *pointer, size_t size) {
    return block_stock_realloc(gw_libevent_stock(), pointer, size);
}

static void gw_libevent_free(void *pointer) { block_stock_free(gw_libevent_stock(), pointer); }

void gw_libevent_memory_start(void) {
    /* Out of memory already: libevent allocates as it would have. */
    if (block_stock_init(&gw_libevent_chains_made, GW_LIBEVENT_CHAIN, GW_LIBEVENT_CHAINS_KEPT) < 0)
        return;
    event_set_mem_functions(gw_libevent_malloc, gw_libevent_realloc, gw_libevent_free);
}

void gw_libevent_memory_clear(void) { block_stock_clear(&gw_libevent_chains); }

static void *gw_nghttp2_malloc(size_t size, void *cache) { return block_cache_malloc(cache, size); }

static void gw_nghttp2_free(void *pointer, void *cache) { block_cache_free(cache, pointer); }

static void *gw_nghttp2_calloc(size_t count, size_t size, void *cache) {
    return block_cache_calloc(cache, count, size);
}

static void *gw_nghttp2_realloc(void *pointer, size_t size, void *cache) {
    return block_cache_realloc(cache, pointer, size);
}

nghttp2_mem gw_worker_nghttp2_mem(gw_worker_t *worker) {
    return (nghttp2_mem){.mem_user_data = &worker->nghttp2_blocks,
                         .malloc = gw_nghttp2_malloc,
                         .free = gw_nghttp2_free,
                         .calloc = gw_nghttp2_calloc,
                         .realloc = gw_nghttp2_realloc};
}

int gw_worker_init(gw_worker_t *worker, gw_server_t *server, int index) {
    const gw_config_t *config = &server->config;
    memset(worker, 0, sizeof(*worker));
    worker->index = index;
    worker->server = server;
    worker->config = config;
    worker->wake_fd = -1;
    LIST_INIT(&worker->clients);
    arena_pool_init(&worker->request_blocks, GW_REQUEST_BLOCK, GW_REQUEST_BLOCKS_KEPT);
    block_cache_init(&worker->nghttp2_blocks, GW_NGHTTP2_BLOCKS_KEPT);
    size_t limit = ((size_t)config->max_connections + server->worker_count - 1) /
                   server->worker_count;
    worker->client_limit = limit > 0 ? limit : 1;
    worker->base = event_base_new();
    if (worker->base == NULL) {
        log_error("worker %d: cannot create an event loop", index);
        return -1;
    }
    worker->stop_event = event_new(worker->base, -1, 0, gw_worker_on_stop, worker);
    worker->accept_retry = evtimer_new(worker->base, gw_worker_on_accept_retry, worker);
    worker->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (worker->wake_fd >= 0)
        worker->wake_event = event_new(worker->base, worker->wake_fd, EV_READ | EV_PERSIST,
                                       gw_worker_on_wake, worker);
    if (worker->stop_event == NULL || worker->accept_retry == NULL || worker->wake_event == NULL ||
        event_add(worker->wake_event, NULL) < 0 ||
        gw_pool_init(&worker->pool, worker->base, config->upstream_idle_timeout_ms,
                     gw_worker_pool_limit(server)) < 0 ||
        gw_h2up_pool_init(&worker->h2up_pool, worker) < 0) {
        log_error("worker %d: out of memory", index);
        return -1;
    }
    route_catalog_config_t catalog_config = {
        .redis_host = config->redis.host,
        .redis_port = config->redis.port,
        .redis_unix_path = config->redis.unix_path,
        .redis_database = config->redis.database,
        .key_prefix = config->redis_key_prefix,
        .redis_timeout_ms = config->redis_timeout_ms,
        .cache_ttl_ms = config->route_cache_ttl_ms,
        .notified_ttl_ms = config->route_cache_ttl_notified_ms,
        .negative_ttl_ms = config->route_negative_ttl_ms,
        .stale_ttl_ms = config->route_stale_ttl_ms,
    };
    const conf_redis_target_t *control = gw_config_resume_redis(config);
    redis_link_config_t control_config = {
        .host = control->host,
        .port = control->port,
        .unix_path = control->unix_path,
        .database = control->database,
        .connect_timeout_ms = config->redis_timeout_ms,
        .log_prefix = "control: ",
        .purpose = "resume requests and activity",
        .outage_effect = "requests to paused sandboxes get 503 and activity is not written",
    };
    if (redis_link_init(&worker->control, worker->base, &control_config) != 0) {
        log_error("worker %d: out of memory", index);
        return -1;
    }
    redis_link_start(&worker->control);
    worker->activity = gw_activity_new(worker->base, config, &worker->control);
    if (config->activity_interval_ms > 0 && worker->activity == NULL)
        return -1; /* logged */
    worker->catalog = route_catalog_new(worker->base, &catalog_config);
    if (worker->catalog == NULL) {
        log_error("worker %d: cannot create the catalog client", index);
        return -1;
    }
    worker->resume =
        gw_resume_new(worker->base, config, worker->catalog, &worker->control, &worker->metrics);
    if (worker->resume == NULL) {
        log_error("worker %d: out of memory", index);
        return -1;
    }
    return 0;
}

int gw_worker_listen(gw_worker_t *worker) {
    const gw_config_t *config = worker->config;
    worker->listeners = calloc(config->listen_count, sizeof(*worker->listeners));
    if (worker->listeners == NULL)
        return -1;
    for (size_t i = 0; i < config->listen_count; i++) {
        const gw_listen_t *listen = &config->listens[i];
        /* Deferred accept (TCP_DEFER_ACCEPT, 1 s): an HTTP, TLS or PROXY
         * client speaks first, so the worker is woken once, when a new
         * connection's first bytes are there, not also for its handshake. A
         * client that sends nothing is accepted about a second later (at
         * once from SIGTERM on: gw_worker_stop_deferring). */
        unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
                         LEV_OPT_REUSEABLE_PORT | LEV_OPT_DEFERRED_ACCEPT;
        if (listen->address.ss_family == AF_INET6)
            flags |= LEV_OPT_BIND_IPV6ONLY;
        /* SO_REUSEPORT: every worker has its own socket on the same address,
         * and the kernel spreads new connections over them. */
        gw_worker_listener_t *entry = &worker->listeners[i];
        entry->worker = worker;
        entry->listen = listen;
        entry->listener = evconnlistener_new_bind(
            worker->base, gw_worker_accept, entry, flags, GW_LISTEN_BACKLOG,
            (const struct sockaddr *)&listen->address, (int)listen->address_length);
        worker->listener_count = i + 1;
        if (entry->listener == NULL) {
            log_error("%s:%d: cannot listen on %s: %s", config->path, listen->line, listen->text,
                      strerror(errno));
            return -1;
        }
        evconnlistener_set_error_cb(entry->listener, gw_worker_accept_error);
        /* Accepted sockets inherit it: responses and SSE events are never
         * held back by Nagle's algorithm. */
        int one = 1;
        setsockopt(evconnlistener_get_fd(entry->listener), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof(one));
    }
    return 0;
}

static void *gw_worker_run(void *arg) {
    gw_worker_t *worker = arg;
    if (gw_io_batch_start(worker->base) < 0)
        log_info("worker %d: no io_uring (%s): each read and send is a system call of its own",
                 worker->index, strerror(errno));
    event_base_dispatch(worker->base);
    gw_io_batch_stop();
    gw_io_stock_clear();
    gw_libevent_memory_clear(); /* the worker's objects are freed by the main thread */
    __atomic_store_n(&worker->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

void gw_worker_stop_deferring(gw_worker_t *worker) {
    int off = 0;
    for (size_t i = 0; i < worker->listener_count; i++)
        setsockopt(evconnlistener_get_fd(worker->listeners[i].listener), IPPROTO_TCP,
                   TCP_DEFER_ACCEPT, &off, sizeof(off));
}

void gw_worker_drain(gw_worker_t *worker) { gw_worker_request(worker, GW_WORKER_DRAIN); }

bool gw_worker_finished(const gw_worker_t *worker) {
    return __atomic_load_n(&worker->finished, __ATOMIC_ACQUIRE) != 0;
}

int gw_worker_start(gw_worker_t *worker) {
    if (pthread_create(&worker->thread, NULL, gw_worker_run, worker) != 0)
        return -1;
    worker->thread_started = true;
    return 0;
}

void gw_worker_stop(gw_worker_t *worker) { gw_worker_request(worker, GW_WORKER_STOP); }

size_t gw_worker_make_room(gw_worker_t *worker, size_t count) {
    size_t closed = gw_worker_shed(worker, count);
    if (closed > 0)
        return closed;
    gw_server_t *server = worker->server;
    for (size_t i = 0; i < server->worker_count; i++) {
        if (&server->workers[i] != worker)
            gw_worker_request(&server->workers[i], GW_WORKER_SHED);
    }
    return 0;
}

void gw_worker_join(gw_worker_t *worker) {
    if (worker->thread_started && !worker->thread_joined) {
        pthread_join(worker->thread, NULL);
        worker->thread_joined = true;
    }
}

void gw_worker_free(gw_worker_t *worker) {
    if (worker->thread_started) {
        gw_worker_join(worker);
    } else if (worker->base != NULL) {
        /* Never ran: close what init opened on this thread. */
        gw_worker_on_stop(-1, 0, worker);
    }
    if (worker->stop_event != NULL) {
        event_free(worker->stop_event);
        worker->stop_event = NULL;
    }
    if (worker->accept_retry != NULL) {
        event_free(worker->accept_retry);
        worker->accept_retry = NULL;
    }
    if (worker->wake_event != NULL) {
        event_free(worker->wake_event);
        worker->wake_event = NULL;
    }
    if (worker->wake_fd >= 0) {
        close(worker->wake_fd);
        worker->wake_fd = -1;
    }
    gw_h2_streams_kept_free(worker);
    if (worker->base != NULL) {
        event_base_free(worker->base);
        worker->base = NULL;
    }
    arena_pool_free(&worker->request_blocks);
    block_cache_clear(&worker->nghttp2_blocks);
}
