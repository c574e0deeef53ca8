/* What the fuzz targets that drive a gateway worker share: one worker, made from a config text. */
#ifndef SGW_TESTS_FUZZ_GATEWAY_H
#define SGW_TESTS_FUZZ_GATEWAY_H

#include "gateway/worker.h"
#include "tests/fuzz/fuzz.h"

/* Parses config_text into server's configuration and starts worker as its only one (routing,
 * loop, pool); aborts the fuzzer on any failure. */
static inline void fuzz_gateway_start(gw_server_t *server, gw_worker_t *worker,
                                      const char *config_text) {
    FUZZ_CHECK(gw_config_defaults(&server->config) == 0);
    char error[512];
    if (gw_config_parse(&server->config, "fuzz.conf", config_text, error, sizeof(error)) != 0) {
        fprintf(stderr, "%s\n", error);
        abort();
    }
    server->worker_count = 1;
    server->workers = worker;
    FUZZ_CHECK(gw_server_init_routing(server) == 0);
    FUZZ_CHECK(gw_worker_init(worker, server, 0) == 0);
}

#endif
