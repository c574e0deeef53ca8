/* A toy byte relay in two loop shapes, to weigh driving a worker's loop from io_uring instead of
 * epoll before rewriting the gateway's: each accepted client is paired with a new connection to
 * the backend, and what either sends is sent to the other (no HTTP, no limits, no backpressure).
 *
 *   epoll       the gateway's shape: epoll_wait, then one io_uring_enter for the recvs of what it
 *               found readable (non-blocking, into landing buffers), then one for the sends
 *   ring        no epoll: a multishot recv on every socket into provided buffers, and one
 *               io_uring_enter a turn submits the sends and waits for the next completion
 *               (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG)
 *   ring-defer  the same, the ring set up with IORING_SETUP_DEFER_TASKRUN
 *
 * Build and run (the relay on core 0, as the proxy under test in bench/run; wrk and the backend,
 * e.g. bench/run --serve's, on core 1; the figures in bench/README.md sent the bench's Host):
 *   gcc -O2 bench/ring_loop.c -o /tmp/ring_loop -luring
 *   taskset -c 0 /tmp/ring_loop ring 27002 BACKEND_PORT &
 *   taskset -c 1 wrk -t1 -c50 -d3s -H 'Host: BACKEND_PORT-bench.bench.localhost' \
 *       http://127.0.0.1:27002/
 * and compare the relay's CPU time per request (/proc/PID/stat) between the shapes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    MAX_DESCRIPTORS = 65536,
    BUFFERS = 1024,      /* provided buffers (ring shapes) */
    BUFFER_SIZE = 16384, /* each, and each landing buffer (epoll shape) */
    BUFFER_GROUP = 7,
    OUTPUT_SIZE = 65536,  /* a side's unsent bytes at most (more is dropped: a toy) */
    READS_PER_ROUND = 64, /* epoll shape */
};

/* What a completion is for: the kind in the user data's high half, the descriptor in the low. */
enum { KIND_RECV = 1, KIND_SEND = 2, KIND_ACCEPT = 3 };

typedef struct relay_side {
    int peer; /* -1 once it is gone */
    bool queued;
    size_t output_length;
    char output[OUTPUT_SIZE];
} relay_side_t;

static relay_side_t *sides[MAX_DESCRIPTORS];
static struct io_uring ring;
static int backend_port;
static int send_queue[MAX_DESCRIPTORS];
static int send_count;

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static uint64_t user_data(int kind, int fd) { return ((uint64_t)kind << 32) | (uint32_t)fd; }

static int completion_kind(const struct io_uring_cqe *completion) {
    return (int)(completion->user_data >> 32);
}

static int completion_fd(const struct io_uring_cqe *completion) {
    return (int)(uint32_t)completion->user_data;
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Pairs a new client with a new backend connection (a blocking connect: a toy). */
static int relay_pair(int client) {
    int backend = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)backend_port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (backend < 0 || connect(backend, (struct sockaddr *)&address, sizeof(address)) != 0)
        fail("connect to the backend");
    set_nodelay(client);
    set_nodelay(backend);
    sides[client] = calloc(1, sizeof(relay_side_t));
    sides[backend] = calloc(1, sizeof(relay_side_t));
    if (sides[client] == NULL || sides[backend] == NULL)
        fail("calloc");
    sides[client]->peer = backend;
    sides[backend]->peer = client;
    return backend;
}

/* Closes fd and its peer. In the ring shapes an armed recv keeps its socket open (a toy: it is
 * not cancelled); the backend never sends on a connection whose client left, so nothing comes of
 * it but a connection held until the relay exits. */
static void relay_drop(int fd) {
    if (fd < 0 || sides[fd] == NULL)
        return;
    int peer = sides[fd]->peer;
    free(sides[fd]);
    sides[fd] = NULL;
    close(fd);
    relay_drop(peer);
}

/* length bytes read from fd go to its peer's output, sent at the turn's end. */
static void relay_forward(int fd, const char *data, size_t length) {
    relay_side_t *side = sides[fd];
    if (side == NULL || side->peer < 0 || sides[side->peer] == NULL)
        return;
    relay_side_t *peer = sides[side->peer];
    if (length > OUTPUT_SIZE - peer->output_length)
        length = OUTPUT_SIZE - peer->output_length;
    memcpy(peer->output + peer->output_length, data, length);
    peer->output_length += length;
    if (!peer->queued) {
        peer->queued = true;
        send_queue[send_count++] = side->peer;
    }
}

/* Prepares a non-blocking send of each queued output; returns how many. */
static int relay_prepare_sends(void) {
    int prepared = 0;
    for (int i = 0; i < send_count; i++) {
        relay_side_t *side = sides[send_queue[i]];
        if (side == NULL)
            continue;
        struct io_uring_sqe *entry = io_uring_get_sqe(&ring);
        io_uring_prep_send(entry, send_queue[i], side->output, side->output_length,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        entry->user_data = user_data(KIND_SEND, send_queue[i]);
        prepared++;
    }
    send_count = 0;
    return prepared;
}

static void relay_sent(int fd, int result) {
    relay_side_t *side = sides[fd];
    if (side == NULL)
        return;
    side->queued = false;
    if (result <= 0 && result != -EAGAIN) {
        relay_drop(fd);
        return;
    }
    size_t sent = result > 0 ? (size_t)result : 0;
    memmove(side->output, side->output + sent, side->output_length - sent);
    side->output_length -= sent;
    if (side->output_length > 0) { /* the rest next turn */
        side->queued = true;
        send_queue[send_count++] = fd;
    }
}

/* ---- the gateway's shape ---- */

static void run_epoll(int listener) {
    static char landing[READS_PER_ROUND][BUFFER_SIZE];
    int poller = epoll_create1(0);
    struct epoll_event listening = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(poller, EPOLL_CTL_ADD, listener, &listening);
    for (;;) {
        struct epoll_event events[READS_PER_ROUND];
        int ready = epoll_wait(poller, events, READS_PER_ROUND, -1);
        int reads = 0, read_fds[READS_PER_ROUND], results[READS_PER_ROUND];
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
                if (client < 0)
                    continue;
                int backend = relay_pair(client);
                struct epoll_event client_event = {.events = EPOLLIN, .data.fd = client};
                struct epoll_event backend_event = {.events = EPOLLIN, .data.fd = backend};
                epoll_ctl(poller, EPOLL_CTL_ADD, client, &client_event);
                epoll_ctl(poller, EPOLL_CTL_ADD, backend, &backend_event);
                continue;
            }
            struct io_uring_sqe *entry = io_uring_get_sqe(&ring);
            io_uring_prep_recv(entry, fd, landing[reads], BUFFER_SIZE, MSG_DONTWAIT);
            entry->user_data = (uint64_t)reads;
            read_fds[reads++] = fd;
        }
        if (reads == 0)
            continue;
        io_uring_submit_and_wait(&ring, (unsigned)reads);
        struct io_uring_cqe *completion;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, completion) {
            results[completion->user_data] = completion->res;
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        for (int i = 0; i < reads; i++) {
            if (results[i] > 0)
                relay_forward(read_fds[i], landing[i], (size_t)results[i]);
            else if (results[i] != -EAGAIN)
                relay_drop(read_fds[i]);
        }
        while (send_count > 0) {
            int sends = relay_prepare_sends();
            io_uring_submit_and_wait(&ring, (unsigned)sends);
            seen = 0;
            io_uring_for_each_cqe(&ring, head, completion) {
                relay_sent(completion_fd(completion), completion->res);
                seen++;
            }
            io_uring_cq_advance(&ring, seen);
        }
    }
}

/* ---- the ring's shape ---- */

static char *buffers;
static struct io_uring_buf_ring *buffer_ring;

static void arm_recv(int fd) {
    struct io_uring_sqe *entry = io_uring_get_sqe(&ring);
    io_uring_prep_recv_multishot(entry, fd, NULL, 0, 0);
    entry->flags |= IOSQE_BUFFER_SELECT;
    entry->buf_group = BUFFER_GROUP;
    entry->user_data = user_data(KIND_RECV, fd);
}

static void provide_buffers(void) {
    if (posix_memalign((void **)&buffer_ring, 4096, BUFFERS * sizeof(struct io_uring_buf)) != 0)
        fail("posix_memalign");
    buffers = malloc((size_t)BUFFERS * BUFFER_SIZE);
    if (buffers == NULL)
        fail("malloc");
    io_uring_buf_ring_init(buffer_ring);
    struct io_uring_buf_reg registration = {
        .ring_addr = (unsigned long)buffer_ring, .ring_entries = BUFFERS, .bgid = BUFFER_GROUP};
    if (io_uring_register_buf_ring(&ring, &registration, 0) != 0)
        fail("io_uring_register_buf_ring");
    int mask = io_uring_buf_ring_mask(BUFFERS);
    for (int i = 0; i < BUFFERS; i++)
        io_uring_buf_ring_add(buffer_ring, buffers + (size_t)i * BUFFER_SIZE, BUFFER_SIZE,
                              (unsigned short)i, mask, i);
    io_uring_buf_ring_advance(buffer_ring, BUFFERS);
}

static void run_ring(int listener) {
    provide_buffers();
    struct io_uring_sqe *entry = io_uring_get_sqe(&ring);
    io_uring_prep_multishot_accept(entry, listener, NULL, NULL, SOCK_NONBLOCK);
    entry->user_data = user_data(KIND_ACCEPT, listener);
    int mask = io_uring_buf_ring_mask(BUFFERS);
    for (;;) {
        relay_prepare_sends();
        io_uring_submit_and_wait(&ring, 1); /* the turn's one system call */
        struct io_uring_cqe *completion;
        unsigned head, seen = 0;
        int returned = 0;
        io_uring_for_each_cqe(&ring, head, completion) {
            seen++;
            int fd = completion_fd(completion);
            switch (completion_kind(completion)) {
            case KIND_ACCEPT:
                if (completion->res >= 0) {
                    int backend = relay_pair(completion->res);
                    arm_recv(completion->res);
                    arm_recv(backend);
                }
                break;
            case KIND_SEND:
                relay_sent(fd, completion->res);
                break;
            case KIND_RECV:
                if (completion->flags & IORING_CQE_F_BUFFER) {
                    unsigned short id =
                        (unsigned short)(completion->flags >> IORING_CQE_BUFFER_SHIFT);
                    char *buffer = buffers + (size_t)id * BUFFER_SIZE;
                    if (completion->res > 0)
                        relay_forward(fd, buffer, (size_t)completion->res);
                    io_uring_buf_ring_add(buffer_ring, buffer, BUFFER_SIZE, id, mask, returned++);
                }
                if (!(completion->flags & IORING_CQE_F_MORE)) {
                    if (completion->res == -ENOBUFS)
                        arm_recv(fd);
                    else
                        relay_drop(fd);
                }
                break;
            }
        }
        io_uring_cq_advance(&ring, seen);
        if (returned > 0)
            io_uring_buf_ring_advance(buffer_ring, returned);
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s epoll|ring|ring-defer LISTEN_PORT BACKEND_PORT\n", argv[0]);
        return 2;
    }
    const char *shape = argv[1];
    struct io_uring_params params = {.flags = IORING_SETUP_CQSIZE, .cq_entries = 8192};
    if (strcmp(shape, "ring") == 0)
        params.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    else if (strcmp(shape, "ring-defer") == 0)
        params.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    else if (strcmp(shape, "epoll") != 0)
        fail("shape: epoll, ring or ring-defer");
    if (io_uring_queue_init_params(1024, &ring, &params) < 0)
        fail("io_uring_queue_init_params");
    backend_port = atoi(argv[3]);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)atoi(argv[2])),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0 ||
        listen(listener, 1024) != 0)
        fail("listen");
    if (strcmp(shape, "epoll") == 0)
        run_epoll(listener);
    else
        run_ring(listener);
    return 0;
}
