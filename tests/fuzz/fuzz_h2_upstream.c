/* Fuzz target: what a sandbox's HTTP/2 server sends back on an h2c session (gateway/upstream_h2.c,
 * nghttp2's client session and the gateway's callbacks). Two streams are opened to a loopback
 * "sandbox" that answers with the input's bytes, in up to four writes (split at 0xff), after the
 * gateway's preface.
 *
 * Input: one mode byte, then the sandbox's bytes. Mode bit 0: the owner takes body bytes at once
 * (else never: the windows stay shut); bit 1: the second stream is closed by its owner early.
 *
 * Oracles: a stream's owner hears at most one ending (end, trailers or failure) and nothing after
 * it; body bytes only after a final head; a head's status is 100 to 999; what the owner was told
 * of body bytes is what its output holds. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/upstream_h2.h"
#include "gateway/worker.h"
#include "tests/fuzz/fuzz_gateway.h"
#include "util/arena.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_STREAMS = 2 };

typedef struct fuzz_owner {
    gw_h2up_stream_t *stream;
    arena_t arena;
    gw_head_t head;
    struct evbuffer *output;
    size_t told; /* body bytes the owner was told of */
    bool final_head;
    bool ended;
} fuzz_owner_t;

static struct {
    gw_server_t server;
    gw_worker_t worker;
    int listen_fd;
    struct sockaddr_in address;
    char key[64];
    bool consume;
    fuzz_owner_t owners[FUZZ_STREAMS];
} fuzz;

static void fuzz_headers(void *owner_arg, const gw_head_t *head, int status, bool end) {
    fuzz_owner_t *owner = owner_arg;
    FUZZ_CHECK(!owner->ended && head == &owner->head);
    FUZZ_CHECK(status >= 100 && status <= 999);
    FUZZ_CHECK(!owner->final_head);
    if (status >= 200)
        owner->final_head = true;
    if (end)
        owner->ended = true;
}

static void fuzz_data(void *owner_arg, size_t length) {
    fuzz_owner_t *owner = owner_arg;
    FUZZ_CHECK(!owner->ended && owner->final_head);
    owner->told += length;
    FUZZ_CHECK(evbuffer_get_length(owner->output) == owner->told);
    if (fuzz.consume) {
        evbuffer_drain(owner->output, length);
        owner->told -= length;
        gw_h2up_consume(owner->stream, length);
    }
}

static void fuzz_trailers(void *owner_arg, const gw_head_t *head) {
    fuzz_owner_t *owner = owner_arg;
    FUZZ_CHECK(!owner->ended && owner->final_head && head->in_trailers);
    owner->ended = true;
}

static void fuzz_end(void *owner_arg) {
    fuzz_owner_t *owner = owner_arg;
    FUZZ_CHECK(!owner->ended && owner->final_head);
    owner->ended = true;
}

static void fuzz_failed(void *owner_arg, gw_h2up_failure_t failure, int error) {
    (void)failure;
    (void)error;
    fuzz_owner_t *owner = owner_arg;
    FUZZ_CHECK(!owner->ended);
    owner->ended = true;
}

static void fuzz_writable(void *owner_arg) {
    fuzz_owner_t *owner = owner_arg;
    FUZZ_CHECK(!owner->ended);
}

static const gw_h2up_handler_t fuzz_handler = {
    .headers = fuzz_headers,
    .data = fuzz_data,
    .trailers = fuzz_trailers,
    .end = fuzz_end,
    .failed = fuzz_failed,
    .writable = fuzz_writable,
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(getenv("FUZZ_VERBOSE") != NULL ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    static const char config_text[] = "domain fuzz.test\n"
                                      "listen 127.0.0.1:18080\n"
                                      "workers 1\n"
                                      "redis_url unix:///nonexistent/fuzz-redis.sock\n"
                                      "activity_interval off\n"
                                      "upstream_connect_timeout 1s\n"
                                      "log_level error\n";
    fuzz_gateway_start(&fuzz.server, &fuzz.worker, config_text);

    fuzz.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    FUZZ_CHECK(fuzz.listen_fd >= 0);
    fuzz.address.sin_family = AF_INET;
    fuzz.address.sin_addr.s_addr = htonl(0x7f000001);
    FUZZ_CHECK(bind(fuzz.listen_fd, (struct sockaddr *)&fuzz.address, sizeof(fuzz.address)) == 0);
    socklen_t length = sizeof(fuzz.address);
    FUZZ_CHECK(getsockname(fuzz.listen_fd, (struct sockaddr *)&fuzz.address, &length) == 0);
    FUZZ_CHECK(listen(fuzz.listen_fd, 16) == 0);
    snprintf(fuzz.key, sizeof(fuzz.key), "fuzz\n1\n127.0.0.1\n%u",
             (unsigned)ntohs(fuzz.address.sin_port));
    return 0;
}

/* Runs the loop until nothing is left to do, bounded. */
static void fuzz_run(int turns) {
    for (int i = 0; i < turns; i++)
        event_base_loop(fuzz.worker.base, EVLOOP_NONBLOCK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    fuzz.consume = (data[0] & 1) != 0;
    bool close_early = (data[0] & 2) != 0;
    const uint8_t *parts[4];
    size_t lengths[4];
    size_t count = fuzz_split(data + 1, size - 1, parts, lengths, 4);

    static const nghttp2_nv fields[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)"/sgw.Echo/Unary", 5, 15, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, NGHTTP2_NV_FLAG_NONE},
    };
    for (int i = 0; i < FUZZ_STREAMS; i++) {
        fuzz_owner_t *owner = &fuzz.owners[i];
        memset(owner, 0, sizeof(*owner));
        arena_init(&owner->arena, 4096);
        gw_head_reset(&owner->head, &owner->arena);
        owner->output = evbuffer_new();
        FUZZ_CHECK(owner->output != NULL);
        owner->stream = gw_h2up_open(&fuzz.worker.h2up_pool, (struct sockaddr *)&fuzz.address,
                                     sizeof(fuzz.address), fuzz.key, strlen(fuzz.key), fields,
                                     sizeof(fields) / sizeof(fields[0]), false, &owner->head,
                                     owner->output, &fuzz_handler, owner);
        FUZZ_CHECK(owner->stream != NULL);
        evbuffer_add(gw_h2up_request_body(owner->stream), "\0\0\0\0\1x", 6);
        gw_h2up_flush(owner->stream, i == 0);
    }
    int sandbox = -1;
    for (int turn = 0; turn < 1000 && sandbox < 0; turn++) {
        fuzz_run(1);
        sandbox = accept4(fuzz.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    }
    FUZZ_CHECK(sandbox >= 0);
    fuzz_run(2);
    char preface[4096];
    (void)!recv(sandbox, preface, sizeof(preface), MSG_DONTWAIT);
    for (size_t i = 0; i < count; i++) {
        if (lengths[i] > 0)
            (void)!send(sandbox, parts[i], lengths[i], MSG_NOSIGNAL);
        fuzz_run(3);
        if (close_early && i == 0 && !fuzz.owners[1].ended) {
            gw_h2up_stream_close(fuzz.owners[1].stream);
            fuzz.owners[1].stream = NULL;
            fuzz.owners[1].ended = true;
        }
    }
    close(sandbox);
    fuzz_run(6);
    for (int i = 0; i < FUZZ_STREAMS; i++) {
        fuzz_owner_t *owner = &fuzz.owners[i];
        gw_h2up_stream_close(owner->stream);
        evbuffer_free(owner->output);
        arena_free(&owner->arena);
    }
    /* No session outlives the input. */
    gw_h2up_pool_free(&fuzz.worker.h2up_pool);
    FUZZ_CHECK(gw_h2up_pool_init(&fuzz.worker.h2up_pool, &fuzz.worker) == 0);
    fuzz_run(2);
    return 0;
}
