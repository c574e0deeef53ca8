/* What route churn costs a proxy that does nothing but TCP: a toy relay that sends each request
 * over one of N kept-alive backend connections, picked at random among the idle ones, as the
 * gateway's pool does with one connection per sandbox. With N = 50 (wrk -c50: every connection
 * busy, so warm) and N = 10,000 (each used every 0.2-0.3 s, so cold), the difference in its CPU
 * per request is the kernel's part of churn, which no proxy pooling per sandbox escapes.
 *
 * A toy: a request is what one recv from a client returns, a response what one recv from the
 * backend returns (true of wrk's GETs and bench/run's small responses), no HTTP is parsed and
 * nothing is bounded. Plain epoll, recv and send, the same in both runs.
 *
 * Build and run (the relay on core 0, wrk and the backend, e.g. bench/run --serve's, on core 1):
 *   gcc -O2 bench/churn_floor.c -o /tmp/churn_floor
 *   taskset -c 0 /tmp/churn_floor 27101 BACKEND_PORT 10000 &
 *   taskset -c 1 wrk -t1 -c50 -d5s -H 'Host: BACKEND_PORT-bench.bench.localhost' \
 *       http://127.0.0.1:27101/
 * and compare the relay's CPU time per request (/proc/PID/stat) with N = 50 and N = 10000. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_DESCRIPTORS = 65536, BUFFER_SIZE = 65536, EVENTS = 256 };

/* For a client: the backend connection its request went over (-1: none). For a backend
 * connection: the client its response goes to (-1: idle). */
static int partner[MAX_DESCRIPTORS];
static bool is_backend[MAX_DESCRIPTORS];
static int idle[MAX_DESCRIPTORS]; /* idle backend connections, in no order */
static int idle_count;
static uint64_t random_state = 88172645463325252ULL;

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static uint64_t next_random(void) {
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

static void watch(int poller, int fd) {
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(poller, EPOLL_CTL_ADD, fd, &event) != 0)
        fail("epoll_ctl");
}

static int dial_backend(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0)
        fail("connect to the backend");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Takes an idle backend connection at random; -1 when none is idle. */
static int take_idle(void) {
    if (idle_count == 0)
        return -1;
    int at = (int)(next_random() % (uint64_t)idle_count);
    int fd = idle[at];
    idle[at] = idle[--idle_count];
    return fd;
}

static void close_client(int client) {
    int backend = partner[client];
    if (backend >= 0)
        partner[backend] = -1; /* its response, if any, is dropped; it goes back idle then */
    close(client);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s LISTEN_PORT BACKEND_PORT BACKEND_CONNECTIONS\n", argv[0]);
        return 2;
    }
    int backend_port = atoi(argv[2]), connections = atoi(argv[3]);
    if (connections < 1 || connections > MAX_DESCRIPTORS / 2)
        fail("backend connections: 1 to 32768");
    int poller = epoll_create1(0);
    for (int i = 0; i < connections; i++) {
        int fd = dial_backend(backend_port);
        if (fd >= MAX_DESCRIPTORS)
            fail("descriptor out of range");
        is_backend[fd] = true;
        partner[fd] = -1;
        idle[idle_count++] = fd;
        watch(poller, fd);
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)atoi(argv[1])),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0 ||
        listen(listener, 1024) != 0)
        fail("listen");
    watch(poller, listener);
    static char buffer[BUFFER_SIZE];
    for (;;) {
        struct epoll_event events[EVENTS];
        int ready = epoll_wait(poller, events, EVENTS, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
                if (client < 0 || client >= MAX_DESCRIPTORS) {
                    if (client >= 0)
                        close(client);
                    continue;
                }
                setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                is_backend[client] = false;
                partner[client] = -1;
                watch(poller, client);
                continue;
            }
            ssize_t got = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
            if (is_backend[fd]) {
                if (got <= 0)
                    fail("a backend connection ended");
                int client = partner[fd];
                partner[fd] = -1;
                idle[idle_count++] = fd;
                if (client >= 0) {
                    partner[client] = -1;
                    send(client, buffer, (size_t)got, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                continue;
            }
            if (got <= 0) {
                close_client(fd);
                continue;
            }
            int backend = take_idle();
            if (backend < 0)
                fail("no idle backend connection (more clients than connections?)");
            partner[fd] = backend;
            partner[backend] = fd;
            send(backend, buffer, (size_t)got, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
    }
}
