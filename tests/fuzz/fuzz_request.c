/* Fuzz target: the real request path. A client's bytes go into the gateway's own connection code
 * over a socketpair; the catalog answers from real records; the sandboxes are strict llhttp
 * parsers on loopback that check what the gateway forwards.
 *
 * Input: one mode byte, then the client's bytes. Mode bit 0: the connection came in on a
 * proxy_protocol listener; bits 1-3: how the sandboxes answer (fuzz_responses). Every "30000"
 * in the client's bytes becomes the sandboxes' port, so "Host: 30000-pub.fuzz.test" reaches one.
 *
 * Oracles (any failure aborts, and libFuzzer keeps the input):
 *   - the sandboxes never see more requests than the gateway sent heads (smuggling);
 *   - what a sandbox receives parses strictly, with exactly one Host, one X-Forwarded-For (the
 *     client's address), at most one framing field, the gateway's Via last, and no token,
 *     client Forwarded, E2b-Sandbox-* or framing field in trailers;
 *   - the private sandbox gets no more requests than the client sent copies of its token (not for
 *     HTTP/2: the client's bytes hold the HTTP/2 preface, and HPACK can send a token once and
 *     reference it many times, or hide it in Huffman code).
 *
 * HTTP/2 inputs (the preface, then frames) run the same path through gateway/http2.c. A gRPC
 * request goes to its sandbox over h2c: these sandboxes close such a connection (no HTTP/2 here);
 * what a sandbox's HTTP/2 server answers is fuzz_h2_upstream's. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/token.h"
#include "gateway/connection.h"
#include "gateway/http2.h"
#include "gateway/worker.h"
#include "routing/catalog.h"
#include "tests/fuzz/fuzz_gateway.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char FUZZ_TOKEN[] = "s3cret-fuzz-token";
static const char FUZZ_PLACEHOLDER[] = "30000";
static const char FUZZ_CLIENT_ADDRESS[] = "192.0.2.10";
static const char FUZZ_VIA[] = "1.1 fuzz-gw";

/* How the sandboxes answer each request (mode bits 1-3); "close" ones close after it. */
static const struct {
    const char *text;
    bool close;
} fuzz_responses[8] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n", false},
    {"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", false},
    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
    {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", true},
    {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true},
    {"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok", false},
    {NULL, false}, /* a body large enough to be spliced: fuzz_large_response */
};

enum { FUZZ_LARGE_BODY = 70000, FUZZ_NAME_MAX = 64, FUZZ_VALUE_MAX = 256 };

typedef struct fuzz_sandbox {
    const char *address; /* where records point */
    int listen_fd;
    struct event *accept_event;
    uint64_t messages; /* requests begun, this input */
} fuzz_sandbox_t;

/* One connection the gateway made to a sandbox. */
typedef struct fuzz_connection {
    struct fuzz_connection *next;
    fuzz_sandbox_t *sandbox;
    int fd;
    struct event *read_event;
    llhttp_t parser;
    bool tunnel; /* after 101: bytes are echoed */
    bool spoke;  /* bytes arrived before this read */
    bool closed; /* the sandbox closed its side after a "close" answer */
    bool in_trailers;
    char name[FUZZ_NAME_MAX];
    size_t name_length;
    char value[FUZZ_VALUE_MAX];
    size_t value_length;
    int hosts, forwarded_fors, lengths, transfer_encodings;
    bool via_last_ours; /* the last Via field is the gateway's */
    int vias_ours;
} fuzz_connection_t;

static struct {
    gw_server_t server;
    gw_worker_t worker;
    fuzz_sandbox_t sandboxes[2]; /* public, private */
    char port_text[6];
    fuzz_connection_t *connections;
    llhttp_settings_t settings;
    int client_fd;
    struct event *client_read;
    struct event *client_write;
    const uint8_t *pending;
    size_t pending_length;
    unsigned mode;
    uint64_t progress;     /* moves whenever a harness callback did something */
    uint64_t client_bytes; /* what the client received, this input */
    bool verbose;          /* FUZZ_REQUEST_VERBOSE set: a line per input on stderr */
    char large_response[FUZZ_LARGE_BODY + 128];
} fuzz;

/* ---- the sandboxes ---- */

static void fuzz_send(int fd, const char *text, size_t length) {
    while (length > 0) {
        ssize_t sent = send(fd, text, length, MSG_NOSIGNAL);
        if (sent <= 0)
            return; /* a short write only shortens the answer: the gateway copes */
        text += sent;
        length -= (size_t)sent;
    }
}

static bool fuzz_name_is(const fuzz_connection_t *connection, const char *name) {
    return connection->name_length == strlen(name) &&
           strncasecmp(connection->name, name, connection->name_length) == 0;
}

static int fuzz_on_message_begin(llhttp_t *parser) {
    fuzz_connection_t *connection = parser->data;
    connection->sandbox->messages++;
    connection->in_trailers = false;
    connection->hosts = connection->forwarded_fors = 0;
    connection->lengths = connection->transfer_encodings = 0;
    connection->vias_ours = 0;
    connection->via_last_ours = false;
    return 0;
}

static int fuzz_on_field(llhttp_t *parser, const char *at, size_t length) {
    fuzz_connection_t *connection = parser->data;
    fuzz_append(connection->name, &connection->name_length, FUZZ_NAME_MAX, at, length);
    return 0;
}

static int fuzz_on_value(llhttp_t *parser, const char *at, size_t length) {
    fuzz_connection_t *connection = parser->data;
    fuzz_append(connection->value, &connection->value_length, FUZZ_VALUE_MAX, at, length);
    return 0;
}

static int fuzz_on_value_complete(llhttp_t *parser) {
    fuzz_connection_t *connection = parser->data;
    size_t value_length = connection->value_length;
    while (value_length > 0 && (connection->value[value_length - 1] == ' ' ||
                                connection->value[value_length - 1] == '\t'))
        value_length--;
    /* Never passed, in a head or in trailers. */
    FUZZ_CHECK(!fuzz_name_is(connection, AUTH_TOKEN_HEADER));
    FUZZ_CHECK(!fuzz_name_is(connection, "forwarded"));
    FUZZ_CHECK(!fuzz_name_is(connection, "e2b-sandbox-id"));
    FUZZ_CHECK(!fuzz_name_is(connection, "e2b-sandbox-port"));
    if (connection->in_trailers) {
        FUZZ_CHECK(!fuzz_name_is(connection, "host"));
        FUZZ_CHECK(!fuzz_name_is(connection, "content-length"));
        FUZZ_CHECK(!fuzz_name_is(connection, "transfer-encoding"));
        FUZZ_CHECK(connection->name_length < 12 ||
                   strncasecmp(connection->name, "x-forwarded-", 12) != 0);
    } else if (fuzz_name_is(connection, "host")) {
        connection->hosts++;
    } else if (fuzz_name_is(connection, "x-forwarded-for")) {
        connection->forwarded_fors++;
        if ((fuzz.mode & 1) == 0)
            FUZZ_CHECK(value_length == strlen(FUZZ_CLIENT_ADDRESS) &&
                       memcmp(connection->value, FUZZ_CLIENT_ADDRESS, value_length) == 0);
    } else if (fuzz_name_is(connection, "content-length")) {
        connection->lengths++;
    } else if (fuzz_name_is(connection, "transfer-encoding")) {
        connection->transfer_encodings++;
    } else if (fuzz_name_is(connection, "via")) {
        connection->via_last_ours = value_length == strlen(FUZZ_VIA) &&
                                    memcmp(connection->value, FUZZ_VIA, value_length) == 0;
        connection->vias_ours += connection->via_last_ours;
    }
    connection->name_length = 0;
    connection->value_length = 0;
    return 0;
}

static int fuzz_on_headers_complete(llhttp_t *parser) {
    fuzz_connection_t *connection = parser->data;
    FUZZ_CHECK(connection->hosts == 1);
    FUZZ_CHECK(connection->forwarded_fors == 1);
    FUZZ_CHECK(connection->lengths + connection->transfer_encodings <= 1);
    FUZZ_CHECK(connection->vias_ours == 1 && connection->via_last_ours);
    connection->in_trailers = true; /* what follows a chunked body */
    return 0;
}

static int fuzz_on_message_complete(llhttp_t *parser) {
    fuzz_connection_t *connection = parser->data;
    if (connection->closed)
        return 0;
    if (parser->upgrade) {
        static const char switching[] =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        fuzz_send(connection->fd, switching, sizeof(switching) - 1);
        connection->tunnel = true;
        return 0;
    }
    unsigned kind = (fuzz.mode >> 1) & 7;
    const char *answer =
        fuzz_responses[kind].text != NULL ? fuzz_responses[kind].text : fuzz.large_response;
    fuzz_send(connection->fd, answer, strlen(answer));
    if (fuzz_responses[kind].close) {
        shutdown(connection->fd, SHUT_WR);
        connection->closed = true;
    }
    return 0;
}

static void fuzz_connection_read(evutil_socket_t fd, short events, void *arg) {
    (void)events;
    fuzz_connection_t *connection = arg;
    char buffer[16384];
    ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        event_del(connection->read_event);
        fuzz.progress++;
        return;
    }
    fuzz.progress++;
    if (connection->tunnel) {
        fuzz_send(fd, buffer, (size_t)got);
        return;
    }
    llhttp_errno_t error = llhttp_execute(&connection->parser, buffer, (size_t)got);
    if (error == HPE_PAUSED_UPGRADE) {
        /* The rest is the tunnel's. */
        const char *rest = llhttp_get_error_pos(&connection->parser);
        connection->tunnel = true;
        fuzz_send(fd, rest, (size_t)(buffer + got - rest));
        return;
    }
    bool first = !connection->spoke;
    connection->spoke = true;
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if (error == HPE_PAUSED_H2_UPGRADE && first && (size_t)got >= sizeof(preface) - 1 &&
        memcmp(buffer, preface, sizeof(preface) - 1) == 0) {
        /* The HTTP/2 preface (a gRPC request, an h2c_ports port): these sandboxes speak
         * HTTP/1.1 only, and close, as a server without HTTP/2 does (the gateway answers 502). */
        event_del(connection->read_event);
        shutdown(fd, SHUT_RDWR);
        return;
    }
    if (error != HPE_OK) {
        fprintf(stderr, "the sandbox got bytes that do not parse: %s (%s)\n",
                llhttp_errno_name(error), llhttp_get_error_reason(&connection->parser));
        FUZZ_CHECK(error == HPE_OK);
    }
}

static void fuzz_sandbox_accept(evutil_socket_t fd, short events, void *arg) {
    (void)events;
    fuzz_sandbox_t *sandbox = arg;
    int accepted = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (accepted < 0)
        return;
    fuzz.progress++;
    fuzz_connection_t *connection = calloc(1, sizeof(*connection));
    FUZZ_CHECK(connection != NULL);
    connection->sandbox = sandbox;
    connection->fd = accepted;
    llhttp_init(&connection->parser, HTTP_REQUEST, &fuzz.settings);
    connection->parser.data = connection;
    connection->read_event = event_new(fuzz.worker.base, accepted, EV_READ | EV_PERSIST,
                                       fuzz_connection_read, connection);
    FUZZ_CHECK(connection->read_event != NULL && event_add(connection->read_event, NULL) == 0);
    connection->next = fuzz.connections;
    fuzz.connections = connection;
}

static void fuzz_sandboxes_close_connections(void) {
    fuzz_connection_t *connection;
    while ((connection = fuzz.connections) != NULL) {
        fuzz.connections = connection->next;
        event_free(connection->read_event);
        close(connection->fd);
        free(connection);
    }
}

/* Listens on address:port (port 0: any; the first sandbox picks the port for both). */
static void fuzz_sandbox_listen(fuzz_sandbox_t *sandbox, unsigned short port) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    FUZZ_CHECK(inet_pton(AF_INET, sandbox->address, &address.sin_addr) == 1);
    sandbox->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(sandbox->listen_fd >= 0);
    int one = 1;
    setsockopt(sandbox->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    FUZZ_CHECK(bind(sandbox->listen_fd, (struct sockaddr *)&address, sizeof(address)) == 0);
    FUZZ_CHECK(listen(sandbox->listen_fd, 128) == 0);
    sandbox->accept_event = event_new(fuzz.worker.base, sandbox->listen_fd, EV_READ | EV_PERSIST,
                                      fuzz_sandbox_accept, sandbox);
    FUZZ_CHECK(sandbox->accept_event != NULL && event_add(sandbox->accept_event, NULL) == 0);
}

/* ---- the catalog: real records, no Redis ---- */

/* Parses "field", "value", ... NULL into a record and seeds the catalog with it. */
static void fuzz_seed(const char *sandbox_id, ...) {
    const char *fields[16];
    const char *values[16];
    size_t field_lengths[16];
    size_t value_lengths[16];
    size_t count = 0;
    va_list arguments;
    va_start(arguments, sandbox_id);
    for (const char *field = va_arg(arguments, const char *); field != NULL;
         field = va_arg(arguments, const char *)) {
        fields[count] = field;
        field_lengths[count] = strlen(field);
        values[count] = va_arg(arguments, const char *);
        value_lengths[count] = strlen(values[count]);
        count++;
    }
    va_end(arguments);
    route_record_t *record =
        route_record_parse(sandbox_id, count, fields, field_lengths, values, value_lengths);
    FUZZ_CHECK(record != NULL);
    route_catalog_seed(fuzz.worker.catalog, sandbox_id,
                       record->error != NULL ? ROUTE_LOOKUP_MALFORMED : ROUTE_LOOKUP_FOUND, record);
    route_record_unref(record);
}

static void fuzz_seed_records(void) {
    const char *public_address = fuzz.sandboxes[0].address;
    const char *private_address = fuzz.sandboxes[1].address;
    unsigned char digest[32];
    char digest_hex[65];
    crypto_hash_sha256(digest, (const unsigned char *)FUZZ_TOKEN, strlen(FUZZ_TOKEN));
    sodium_bin2hex(digest_hex, sizeof(digest_hex), digest, sizeof(digest));
    fuzz_seed("pub", "addr", public_address, "execution_id", "pub-1", NULL);
    fuzz_seed("priv", "addr", private_address, "allow_public_traffic", "false",
              "traffic_access_token", FUZZ_TOKEN, NULL);
    fuzz_seed("privsha", "addr", private_address, "allow_public_traffic", "false",
              "traffic_access_token_sha256", digest_hex, "execution_id", "x\ny", NULL);
    fuzz_seed("mask", "addr", public_address, "mask_request_host", "localhost:${PORT}", NULL);
    fuzz_seed("lim", "addr", public_address, "max_connections", "1", NULL);
    fuzz_seed("bad", "addr", "not-an-ip", NULL);
    fuzz_seed("meta", "addr", "169.254.169.254", NULL);
    fuzz_seed("self", "addr", "127.0.0.1", NULL);
    /* No Redis for resume requests here: a paused sandbox that may wake is 503. */
    fuzz_seed("paused", "addr", public_address, "state", "paused", NULL);
    fuzz_seed("asleep", "addr", public_address, "state", "paused", "auto_resume", "false", NULL);
    route_catalog_seed(fuzz.worker.catalog, "gone", ROUTE_LOOKUP_NOT_FOUND, NULL);
}

/* ---- the client ---- */

static void fuzz_client_read(evutil_socket_t fd, short events, void *arg) {
    (void)events;
    (void)arg;
    char buffer[65536];
    ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got > 0) {
        fuzz.progress++;
        fuzz.client_bytes += (size_t)got;
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        event_del(fuzz.client_read); /* the gateway closed */
        fuzz.progress++;
    }
}

static void fuzz_client_write(evutil_socket_t fd, short events, void *arg) {
    (void)events;
    (void)arg;
    if (fuzz.pending_length == 0) {
        event_del(fuzz.client_write);
        return;
    }
    ssize_t sent = send(fd, fuzz.pending, fuzz.pending_length, MSG_NOSIGNAL);
    if (sent > 0) {
        fuzz.pending += sent;
        fuzz.pending_length -= (size_t)sent;
        fuzz.progress++;
    } else if (sent < 0 && errno != EAGAIN && errno != EINTR) {
        fuzz.pending_length = 0;
    }
}

/* Runs the loop until nothing moves for a few turns (timers never fire: no time passes). */
static void fuzz_run_until_idle(void) {
    int quiet = 0;
    for (int turn = 0; turn < 100000 && quiet < 4; turn++) {
        uint64_t before = fuzz.progress;
        event_base_loop(fuzz.worker.base, EVLOOP_NONBLOCK);
        bool active = event_base_get_num_events(fuzz.worker.base, EVENT_BASE_COUNT_ACTIVE) > 0;
        quiet = fuzz.progress == before && !active ? quiet + 1 : 0;
    }
}

/* ---- set-up ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz.verbose = getenv("FUZZ_REQUEST_VERBOSE") != NULL;
    log_set_level(fuzz.verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    FUZZ_CHECK(auth_init() == 0);
    fuzz.sandboxes[0].address = "127.0.0.77";
    fuzz.sandboxes[1].address = "127.0.0.78";

    /* The listeners are never bound: connections are handed to the client code directly.
     * Redis is a socket that does not exist: every route comes from the seeded cache. */
    static const char config_text[] = "domain fuzz.test\n"
                                      "listen 127.0.0.1:18080\n"
                                      "listen 127.0.0.1:18081 proxy_protocol\n"
                                      "workers 1\n"
                                      "redis_url unix:///nonexistent/fuzz-redis.sock\n"
                                      "route_cache_ttl 168h\n"
                                      "upstream_connect_retry 0\n"
                                      "max_header_size 8k\n"
                                      "instance_name fuzz-gw\n"
                                      "log_level error\n";
    fuzz_gateway_start(&fuzz.server, &fuzz.worker, config_text);

    fuzz_sandbox_listen(&fuzz.sandboxes[0], 0);
    struct sockaddr_in bound;
    socklen_t bound_length = sizeof(bound);
    FUZZ_CHECK(getsockname(fuzz.sandboxes[0].listen_fd, (struct sockaddr *)&bound, &bound_length) ==
               0);
    unsigned short port = ntohs(bound.sin_port);
    fuzz_sandbox_listen(&fuzz.sandboxes[1], port);
    /* Ephemeral ports have five digits: the placeholder keeps every length. */
    FUZZ_CHECK(port >= 10000);
    snprintf(fuzz.port_text, sizeof(fuzz.port_text), "%u", port);

    llhttp_settings_init(&fuzz.settings);
    fuzz.settings.on_message_begin = fuzz_on_message_begin;
    fuzz.settings.on_header_field = fuzz_on_field;
    fuzz.settings.on_header_value = fuzz_on_value;
    fuzz.settings.on_header_value_complete = fuzz_on_value_complete;
    fuzz.settings.on_headers_complete = fuzz_on_headers_complete;
    fuzz.settings.on_message_complete = fuzz_on_message_complete;

    int header = snprintf(fuzz.large_response, sizeof(fuzz.large_response),
                          "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", FUZZ_LARGE_BODY);
    memset(fuzz.large_response + header, 'b', FUZZ_LARGE_BODY);
    fuzz.large_response[header + FUZZ_LARGE_BODY] = '\0';

    fuzz_seed_records();
    return 0;
}

static size_t fuzz_count_token(const uint8_t *data, size_t size) {
    size_t count = 0;
    size_t length = strlen(FUZZ_TOKEN);
    for (const uint8_t *at = data; size >= length && at <= data + size - length; at++) {
        at = memmem(at, (size_t)(data + size - at), FUZZ_TOKEN, length);
        if (at == NULL)
            break;
        count++;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    fuzz.mode = data[0];
    size_t length = size - 1;
    uint8_t *client = malloc(length > 0 ? length : 1);
    FUZZ_CHECK(client != NULL);
    memcpy(client, data + 1, length);
    for (uint8_t *at = client; length >= 5 && at <= client + length - 5; at++) {
        at = memmem(at, (size_t)(client + length - at), FUZZ_PLACEHOLDER, 5);
        if (at == NULL)
            break;
        memcpy(at, fuzz.port_text, 5);
    }
    size_t tokens = fuzz_count_token(client, length);
    bool h2 = memmem(client, length, GW_H2_PREFACE, GW_H2_PREFACE_LENGTH) != NULL;

    int pair[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0);
    fuzz.client_fd = pair[0];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(40000)};
    inet_pton(AF_INET, FUZZ_CLIENT_ADDRESS, &from.sin_addr);
    const gw_listen_t *listen = &fuzz.server.config.listens[fuzz.mode & 1];
    uint64_t heads_before = GW_METRIC_READ(&fuzz.worker.metrics, upstream_requests);
    for (int i = 0; i < 2; i++)
        fuzz.sandboxes[i].messages = 0;
    fuzz.client_bytes = 0;
    gw_conn_accept(&fuzz.worker, listen, pair[1], (struct sockaddr *)&from, sizeof(from));

    fuzz.pending = client;
    fuzz.pending_length = length;
    fuzz.client_read =
        event_new(fuzz.worker.base, pair[0], EV_READ | EV_PERSIST, fuzz_client_read, NULL);
    fuzz.client_write =
        event_new(fuzz.worker.base, pair[0], EV_WRITE | EV_PERSIST, fuzz_client_write, NULL);
    FUZZ_CHECK(fuzz.client_read != NULL && fuzz.client_write != NULL);
    event_add(fuzz.client_read, NULL);
    event_add(fuzz.client_write, NULL);
    fuzz_run_until_idle();

    uint64_t heads = GW_METRIC_READ(&fuzz.worker.metrics, upstream_requests) - heads_before;
    if (fuzz.verbose)
        fprintf(stderr,
                "fuzz_request: mode %u, %zu client bytes (%zu tokens): %llu heads sent, "
                "sandboxes saw %llu + %llu requests, the client got %llu bytes\n",
                fuzz.mode, length, tokens, (unsigned long long)heads,
                (unsigned long long)fuzz.sandboxes[0].messages,
                (unsigned long long)fuzz.sandboxes[1].messages,
                (unsigned long long)fuzz.client_bytes);
    FUZZ_CHECK(fuzz.sandboxes[0].messages + fuzz.sandboxes[1].messages <= heads);
    FUZZ_CHECK(h2 || fuzz.sandboxes[1].messages <= tokens);

    /* The client goes away; everything of this input is closed before the next. */
    event_free(fuzz.client_read);
    event_free(fuzz.client_write);
    close(pair[0]);
    fuzz_run_until_idle();
    gw_conn_t *left;
    while ((left = LIST_FIRST(&fuzz.worker.clients)) != NULL)
        gw_conn_close(left);
    gw_pool_free(&fuzz.worker.pool);
    gw_io_stock_clear(); /* what the pooled connections parked, as a worker's end frees it */
    FUZZ_CHECK(gw_pool_init(&fuzz.worker.pool, fuzz.worker.base,
                            fuzz.server.config.upstream_idle_timeout_ms, 1024) == 0);
    /* Records do not outlive their worker's pool (their pool hints point
     * into it): fresh ones for the next input, as a new worker would read. */
    fuzz_seed_records();
    fuzz_sandboxes_close_connections();
    fuzz_run_until_idle();
    free(client);
    return 0;
}
