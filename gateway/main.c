/* sandbox-gateway: command line, start-up, signals and shutdown. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/token.h"
#include "gateway/config.h"
#include "gateway/worker.h"
#include "util/log.h"

static const char USAGE[] =
    "usage: sandbox-gateway [-c FILE]     run with FILE (default: ./gateway.conf)\n"
    "       sandbox-gateway -t [-c FILE]  check FILE, print \"FILE: ok\" or \"FILE:LINE: message\"\n"
    "       sandbox-gateway --version | --help\n";

static int gw_run(gw_server_t *server) {
    gw_config_t *config = &server->config;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    server->worker_count = config->workers > 0 ? (size_t)config->workers
                                               : (size_t)(cores > 0 ? cores : 1);
    if (config->access_log != NULL) {
        server->access_log = gw_access_log_open(config->access_log);
        if (server->access_log == NULL)
            return 1;
    }
    server->workers = calloc(server->worker_count, sizeof(*server->workers));
    if (server->workers == NULL)
        return 1;

    /* Signals go to the main thread only, which waits for them below. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    int status = 0;
    size_t initialised = 0;
    for (; initialised < server->worker_count; initialised++) {
        if (gw_worker_init(&server->workers[initialised], server, (int)initialised) < 0) {
            initialised++;
            status = 1;
            goto stop;
        }
    }
    for (size_t i = 0; i < server->worker_count; i++) {
        if (gw_worker_start(&server->workers[i]) < 0) {
            log_error("cannot start worker %zu: %s", i, strerror(errno));
            status = 1;
            goto stop;
        }
    }
    for (size_t i = 0; i < config->listen_count; i++)
        log_info("listening on %s", config->listens[i].text);
    log_info("sandbox-gateway %s started: %zu workers, catalog %s", SGW_VERSION,
             server->worker_count, config->redis_url);

    for (;;) {
        int received = 0;
        if (sigwait(&signals, &received) != 0)
            continue;
        if (received == SIGHUP) {
            log_info("SIGHUP: nothing to reload (no TLS listeners yet)");
            continue;
        }
        log_info("%s: shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
stop:
    for (size_t i = 0; i < initialised; i++)
        gw_worker_stop(&server->workers[i]);
    for (size_t i = 0; i < initialised; i++)
        gw_worker_free(&server->workers[i]);
    free(server->workers);
    server->workers = NULL;
    gw_access_log_close(server->access_log);
    server->access_log = NULL;
    return status;
}

int main(int argc, char **argv) {
    const char *path = "gateway.conf";
    bool check_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-v") == 0) {
            printf("sandbox-gateway %s\n", SGW_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "-t") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else {
            fprintf(stderr, "sandbox-gateway: unknown argument \"%s\"\n%s", argv[i], USAGE);
            return 2;
        }
    }

    gw_server_t server;
    memset(&server, 0, sizeof(server));
    gw_config_defaults(&server.config);
    char error[1024];
    if (gw_config_load(&server.config, path, error, sizeof(error)) < 0) {
        fprintf(stderr, "%s\n", error);
        gw_config_free(&server.config);
        return 1;
    }
    if (check_only) {
        printf("%s: ok\n", path);
        gw_config_free(&server.config);
        return 0;
    }
    log_set_level(server.config.log_level);
    for (size_t i = 0; i < server.config.inactive_count; i++)
        log_warn("%s: directive \"%s\" is accepted but not active yet in this version", path,
                 server.config.inactive[i]);

    signal(SIGPIPE, SIG_IGN);
    if (auth_init() < 0 || evthread_use_pthreads() < 0) {
        log_error("cannot initialise libsodium or libevent threads");
        gw_config_free(&server.config);
        return 1;
    }
    int status = gw_run(&server);
    gw_config_free(&server.config);
    libevent_global_shutdown();
    return status;
}
