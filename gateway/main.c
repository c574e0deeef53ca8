/* sandbox-gateway: command line, start-up, signals and shutdown. */
#include <errno.h>
#include <event2/event.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/token.h"
#include "gateway/admin.h"
#include "gateway/config.h"
#include "gateway/worker.h"
#include "tls/ticket.h"
#include "tls/tls.h"
#include "util/cli.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

static const char USAGE[] =
    "usage: sandbox-gateway [-c FILE]     run with FILE (default: ./gateway.conf)\n"
    "       sandbox-gateway -t [-c FILE]  check FILE, print \"FILE: ok\" or \"FILE:LINE: "
    "message\"\n"
    "       sandbox-gateway --version | --help\n";

/* The signals the main loop handles (workers block them). */
enum { GW_SIGNAL_COUNT = 3 };
static const int gw_handled_signals[GW_SIGNAL_COUNT] = {SIGINT, SIGTERM, SIGHUP};

/* The main thread's loop: signals, the admin endpoint, and shutdown. */
typedef struct gw_main {
    gw_server_t *server;
    struct event_base *base;
    struct event *drain_timer; /* drain_delay, then drain_timeout */
    struct event *finish_poll; /* notices when every worker returned */
    bool workers_draining;
} gw_main_t;

static void gw_main_stop_workers(gw_main_t *main_loop) {
    for (size_t i = 0; i < main_loop->server->worker_count; i++)
        gw_worker_stop(&main_loop->server->workers[i]);
}

static void gw_main_finish_poll(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_main_t *main_loop = arg;
    for (size_t i = 0; i < main_loop->server->worker_count; i++) {
        if (!gw_worker_finished(&main_loop->server->workers[i]))
            return;
    }
    event_base_loopbreak(main_loop->base);
}

/* drain_delay passed (the load balancer saw health 503): stop accepting and
 * let in-flight work finish for drain_timeout; after that, close the rest. */
static void gw_main_drain_timer(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_main_t *main_loop = arg;
    const gw_config_t *config = &main_loop->server->config;
    if (!main_loop->workers_draining) {
        main_loop->workers_draining = true;
        log_info("drain: listeners closed; in-flight requests have %llu ms",
                 (unsigned long long)config->drain_timeout_ms);
        for (size_t i = 0; i < main_loop->server->worker_count; i++)
            gw_worker_drain(&main_loop->server->workers[i]);
        struct timeval timeout = clock_timeval(config->drain_timeout_ms);
        evtimer_add(main_loop->drain_timer, &timeout);
        return;
    }
    log_warn("drain: drain_timeout passed; closing remaining connections");
    gw_main_stop_workers(main_loop);
}

static void gw_main_signal(evutil_socket_t signal_number, short events, void *arg) {
    (void)events;
    gw_main_t *main_loop = arg;
    gw_server_t *server = main_loop->server;
    if (signal_number == SIGHUP) {
        char error[1024];
        int cookie = gw_server_reload_cookie_key(server, error, sizeof(error));
        if (cookie < 0)
            log_error("SIGHUP: auth_cookie_key_file: %s; the previous cookie key stays in use",
                      error);
        else if (cookie == 0)
            log_info("SIGHUP: cookie key reloaded");
        if (server->tls == NULL) {
            log_info("SIGHUP: no TLS listeners, no certificates to reload");
            return;
        }
        if (tls_context_reload(server->tls, error, sizeof(error)) < 0)
            log_error("SIGHUP: reload failed, the previous certificates stay in use: %s", error);
        else
            log_info("SIGHUP: certificates and ticket keys reloaded");
        return;
    }
    const char *name = signal_number == SIGINT ? "SIGINT" : "SIGTERM";
    if (__atomic_exchange_n(&server->draining, 1, __ATOMIC_ACQ_REL)) {
        log_warn("%s again: exiting now", name);
        gw_main_stop_workers(main_loop);
        return;
    }
    log_info("%s: draining (health 503 now, listeners close in %llu ms)", name,
             (unsigned long long)server->config.drain_delay_ms);
    for (size_t i = 0; i < server->worker_count; i++)
        gw_worker_stop_deferring(&server->workers[i]);
    struct timeval delay = clock_timeval(server->config.drain_delay_ms);
    evtimer_add(main_loop->drain_timer, &delay);
    struct timeval poll = clock_timeval(50);
    event_add(main_loop->finish_poll, &poll);
}

/* Loads what the configuration names as a start does (each certificate with
 * its key, the ticket key file), so that -t accepts only a file that starts;
 * returns 0, or -1 with "FILE:LINE: message" of the first that fails. */
static int gw_check_files(const gw_config_t *config, char *error, size_t error_size) {
    char reason[768];
    for (size_t i = 0; i < config->tls_pair_count; i++) {
        const gw_tls_pair_t *pair = &config->tls_pairs[i];
        tls_certificate_pair_t one = {pair->certificate, pair->certificate_key};
        tls_settings_t settings = {.pairs = &one, .pair_count = 1};
        tls_context_t *context = tls_context_new(&settings, reason, sizeof(reason));
        if (context == NULL) {
            bool key = strncmp(reason, "tls_certificate_key ", 20) == 0;
            return error_format(error, error_size, "%s:%d: %s", config->path,
                                key ? pair->key_line : pair->line, reason);
        }
        tls_context_free(context);
    }
    if (config->tls_ticket_key_file != NULL) {
        tls_ticket_key_set_t keys;
        if (tls_ticket_key_set_read_file(&keys, config->tls_ticket_key_file, reason,
                                         sizeof(reason)) != 0)
            return error_format(error, error_size, "%s:%d: %s", config->path,
                                config->tls_ticket_key_file_line, reason);
        tls_ticket_key_set_clear(&keys);
    }
    return 0;
}

/* The TLS context of every tls listener; returns 0 or -1 (logged). */
static int gw_run_tls(gw_server_t *server) {
    const gw_config_t *config = &server->config;
    if (config->tls_pair_count == 0)
        return 0;
    tls_certificate_pair_t *pairs = calloc(config->tls_pair_count, sizeof(*pairs));
    if (pairs == NULL)
        return -1;
    for (size_t i = 0; i < config->tls_pair_count; i++) {
        pairs[i].certificate = config->tls_pairs[i].certificate;
        pairs[i].certificate_key = config->tls_pairs[i].certificate_key;
    }
    tls_settings_t settings = {.pairs = pairs,
                               .pair_count = config->tls_pair_count,
                               .ticket_key_file = config->tls_ticket_key_file,
                               .http2 = config->http2};
    char error[1024];
    server->tls = tls_context_new(&settings, error, sizeof(error));
    free(pairs);
    if (server->tls == NULL) {
        log_error("%s: %s", config->path, error);
        return -1;
    }
    return 0;
}

/* The main loop's timers and the signals it handles; returns 0 or -1. */
static int gw_main_init(gw_main_t *main_loop, struct event **signal_events) {
    main_loop->base = event_base_new();
    if (main_loop->base == NULL)
        return -1;
    main_loop->drain_timer = evtimer_new(main_loop->base, gw_main_drain_timer, main_loop);
    main_loop->finish_poll =
        event_new(main_loop->base, -1, EV_PERSIST, gw_main_finish_poll, main_loop);
    if (main_loop->drain_timer == NULL || main_loop->finish_poll == NULL)
        return -1;
    for (size_t i = 0; i < GW_SIGNAL_COUNT; i++) {
        signal_events[i] =
            evsignal_new(main_loop->base, gw_handled_signals[i], gw_main_signal, main_loop);
        if (signal_events[i] == NULL || event_add(signal_events[i], NULL) < 0)
            return -1;
    }
    return 0;
}

static void gw_main_free(gw_main_t *main_loop, struct event **signal_events) {
    for (size_t i = 0; i < GW_SIGNAL_COUNT; i++) {
        if (signal_events[i] != NULL)
            event_free(signal_events[i]);
    }
    if (main_loop->drain_timer != NULL)
        event_free(main_loop->drain_timer);
    if (main_loop->finish_poll != NULL)
        event_free(main_loop->finish_poll);
    if (main_loop->base != NULL)
        event_base_free(main_loop->base);
}

/* Prepares and starts every worker; *initialised counts those to free.
 * Workers never take signals: the main loop handles them. Returns 0 or -1. */
static int gw_start_workers(gw_server_t *server, size_t *initialised) {
    for (; *initialised < server->worker_count; (*initialised)++) {
        gw_worker_t *worker = &server->workers[*initialised];
        if (gw_worker_init(worker, server, (int)*initialised) < 0 || gw_worker_listen(worker) < 0) {
            (*initialised)++;
            return -1;
        }
    }
    sigset_t signals, previous;
    sigemptyset(&signals);
    for (size_t i = 0; i < GW_SIGNAL_COUNT; i++)
        sigaddset(&signals, gw_handled_signals[i]);
    pthread_sigmask(SIG_BLOCK, &signals, &previous);
    int result = 0;
    for (size_t i = 0; i < server->worker_count && result == 0; i++) {
        if (gw_worker_start(&server->workers[i]) < 0) {
            log_error("cannot start worker %zu: %s", i, strerror(errno));
            result = -1;
        }
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return result;
}

static int gw_run(gw_server_t *server) {
    gw_config_t *config = &server->config;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    server->worker_count =
        config->workers > 0 ? (size_t)config->workers : (size_t)(cores > 0 ? cores : 1);
    gw_main_t main_loop = {.server = server};
    struct event *signal_events[GW_SIGNAL_COUNT] = {NULL};
    gw_admin_t *admin = NULL;
    int status = 1;
    size_t initialised = 0;

    if (config->access_log != NULL) {
        server->access_log = gw_access_log_open(config->access_log);
        if (server->access_log == NULL)
            return 1;
    }
    if (gw_run_tls(server) < 0)
        goto stop;
    if (gw_server_init_routing(server) < 0) {
        log_error("out of memory");
        goto stop;
    }
    log_info("instance name %s (sent in Via)", server->instance);
    server->workers = calloc(server->worker_count, sizeof(*server->workers));
    if (server->workers == NULL || gw_main_init(&main_loop, signal_events) < 0)
        goto stop;
    /* The admin endpoint listens before the workers do: whoever sees the
     * gateway accept can ask /health (its requests wait for the main loop,
     * which runs once the workers are started). */
    if (config->has_admin_listen) {
        admin = gw_admin_new(main_loop.base, server);
        if (admin == NULL)
            goto stop;
    }
    if (gw_start_workers(server, &initialised) < 0)
        goto stop;
    for (size_t i = 0; i < config->listen_count; i++)
        log_info("listening on %s", config->listens[i].text);
    log_info("sandbox-gateway %s started: %zu workers, catalog %s", SGW_VERSION,
             server->worker_count, config->redis_url);

    event_base_dispatch(main_loop.base);
    status = 0;
    log_info("stopped");
stop:
    gw_admin_free(admin);
    for (size_t i = 0; i < initialised; i++)
        gw_worker_stop(&server->workers[i]);
    /* All joined before any is freed: a running worker may wake another. */
    for (size_t i = 0; i < initialised; i++)
        gw_worker_join(&server->workers[i]);
    for (size_t i = 0; i < initialised; i++)
        gw_worker_free(&server->workers[i]);
    gw_main_free(&main_loop, signal_events);
    free(server->workers);
    server->workers = NULL;
    /* After the workers joined: their connections' SSL objects point into it. */
    tls_context_free(server->tls);
    server->tls = NULL;
    gw_server_free_routing(server);
    gw_access_log_close(server->access_log);
    server->access_log = NULL;
    return status;
}

int main(int argc, char **argv) {
    gw_libevent_memory_start();
    cli_options_t options;
    int exit_status = cli_parse(argc, argv, "sandbox-gateway", USAGE, "gateway.conf", &options);
    if (exit_status >= 0)
        return exit_status;
    const char *path = options.path;

    gw_server_t server;
    memset(&server, 0, sizeof(server));
    if (gw_config_defaults(&server.config) != 0) {
        fprintf(stderr, "sandbox-gateway: out of memory\n");
        gw_config_free(&server.config);
        return 1;
    }
    char error[1024];
    if (gw_config_load(&server.config, path, error, sizeof(error)) < 0 ||
        gw_check_files(&server.config, error, sizeof(error)) < 0) {
        fprintf(stderr, "%s\n", error);
        gw_config_free(&server.config);
        return 1;
    }
    if (options.check_only) {
        printf("%s: ok\n", path);
        gw_config_free(&server.config);
        return 0;
    }
    log_set_level(server.config.log_level);

    signal(SIGPIPE, SIG_IGN);
    /* Every client and every pooled sandbox connection is a descriptor. */
    cli_raise_descriptor_limit();
    /* Body buffers of up to a few hundred KiB come and go with every large
     * response: keep freed memory in the process instead of returning it to
     * the kernel each time (madvise per response), and never mmap them. */
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    /* No evthread_use_pthreads(): each loop belongs to one thread, and other
     * threads reach a worker through its eventfd, so no event call locks. */
    if (auth_init() < 0) {
        log_error("cannot initialise libsodium");
        gw_config_free(&server.config);
        return 1;
    }
    int status = gw_run(&server);
    gw_config_free(&server.config);
    libevent_global_shutdown();
    gw_libevent_memory_clear();
    return status;
}
