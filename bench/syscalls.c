/* What a system call costs on this machine, and what batching socket calls through io_uring saves.
 *
 * Build and run (one core, as the proxy under test has in bench/run):
 *   gcc -O2 bench/syscalls.c -o /tmp/syscalls -luring && taskset -c 0 /tmp/syscalls
 * Prints the cost of a null system call, then of moving 128 bytes over each of 50 loopback TCP
 * connections (a send, then a recv on the peer) with one system call each, and with one
 * io_uring_enter for the 50 sends and one for the 50 recvs (non-blocking, as the gateway's
 * batch makes them). */
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { PAIRS = 50, ROUNDS = 20000, MESSAGE = 128, NULL_CALLS = 2000000 };

static double now_ns(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (double)time.tv_sec * 1e9 + (double)time.tv_nsec;
}

static void fail(const char *what) {
    perror(what);
    exit(1);
}

/* PAIRS connected loopback TCP sockets: senders[i] to receivers[i]. */
static void connect_pairs(int *senders, int *receivers) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, length) < 0 ||
        listen(listener, PAIRS) < 0 || getsockname(listener, (struct sockaddr *)&address, &length) < 0)
        fail("listener");
    int on = 1;
    for (int i = 0; i < PAIRS; i++) {
        senders[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (senders[i] < 0 || connect(senders[i], (struct sockaddr *)&address, length) < 0)
            fail("connect");
        receivers[i] = accept(listener, NULL, NULL);
        if (receivers[i] < 0)
            fail("accept");
        setsockopt(senders[i], IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }
    close(listener);
}

/* Submits what was prepared and checks that each of the PAIRS operations moved MESSAGE bytes
 * within the call. */
static void submit_all(struct io_uring *ring) {
    if (io_uring_submit_and_wait(ring, PAIRS) != PAIRS)
        fail("io_uring_submit_and_wait");
    struct io_uring_cqe *completion;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, completion) {
        if (completion->res != MESSAGE) {
            fprintf(stderr, "an operation moved %d bytes\n", completion->res);
            exit(1);
        }
        seen++;
    }
    io_uring_cq_advance(ring, seen);
}

int main(void) {
    double start = now_ns();
    for (int i = 0; i < NULL_CALLS; i++)
        syscall(SYS_getppid);
    printf("null system call (getppid): %.0f ns\n", (now_ns() - start) / NULL_CALLS);

    int senders[PAIRS], receivers[PAIRS];
    connect_pairs(senders, receivers);
    static char landing[PAIRS][4096];
    char message[MESSAGE];
    memset(message, 'x', sizeof(message));

    start = now_ns();
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < PAIRS; i++)
            if (send(senders[i], message, MESSAGE, MSG_DONTWAIT) != MESSAGE)
                fail("send");
        for (int i = 0; i < PAIRS; i++)
            if (recv(receivers[i], landing[i], sizeof(landing[i]), MSG_DONTWAIT) != MESSAGE)
                fail("recv");
    }
    printf("send + recv, one system call each: %.0f ns a message\n",
           (now_ns() - start) / ROUNDS / PAIRS);

    struct io_uring ring;
    if (io_uring_queue_init(2 * PAIRS, &ring, 0) < 0)
        fail("io_uring_queue_init");
    start = now_ns();
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < PAIRS; i++)
            io_uring_prep_send(io_uring_get_sqe(&ring), senders[i], message, MESSAGE, MSG_DONTWAIT);
        submit_all(&ring);
        for (int i = 0; i < PAIRS; i++)
            io_uring_prep_recv(io_uring_get_sqe(&ring), receivers[i], landing[i],
                               sizeof(landing[i]), MSG_DONTWAIT);
        submit_all(&ring);
    }
    printf("send + recv, %d of each per io_uring_enter: %.0f ns a message\n", PAIRS,
           (now_ns() - start) / ROUNDS / PAIRS);
    io_uring_queue_exit(&ring);
    return 0;
}
