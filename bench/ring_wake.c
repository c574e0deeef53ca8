/* Whether an io_uring read that completes while the thread sleeps in epoll_wait (the ring's
 * descriptor in the epoll set, as it would be in libevent's) wakes it, and with what.
 *
 * Build and run:
 *   gcc -O2 bench/ring_wake.c -o /tmp/ring_wake -luring -lpthread && /tmp/ring_wake
 * For each way of setting up the ring (default; IORING_SETUP_COOP_TASKRUN;
 * IORING_SETUP_DEFER_TASKRUN with an eventfd registered and in the epoll set, edge-triggered),
 * a recv is armed on an empty socket, another thread writes a byte 200 ms later, and each
 * epoll_wait (up to three, 1 s each) prints what it returned, when, and how many completions the
 * ring held then. Each runs in a process of its own. */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int pair[2];

static double now_ms(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (double)time.tv_sec * 1e3 + (double)time.tv_nsec / 1e6;
}

static void *write_later(void *arg) {
    (void)arg;
    usleep(200 * 1000);
    if (send(pair[1], "x", 1, 0) != 1)
        perror("send");
    return NULL;
}

static void probe(const char *name, unsigned flags, bool with_eventfd) {
    struct io_uring ring;
    int error = io_uring_queue_init(8, &ring, flags);
    if (error < 0) {
        printf("%s: io_uring_queue_init: %s\n", name, strerror(-error));
        return;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
        perror("socketpair");
        return;
    }
    static char landing[16];
    io_uring_prep_recv(io_uring_get_sqe(&ring), pair[0], landing, sizeof(landing), 0);
    io_uring_submit(&ring);
    int poller = epoll_create1(0);
    struct epoll_event ring_ready = {.events = EPOLLIN, .data.fd = ring.ring_fd};
    epoll_ctl(poller, EPOLL_CTL_ADD, ring.ring_fd, &ring_ready);
    int counter = -1;
    if (with_eventfd) {
        counter = eventfd(0, EFD_NONBLOCK);
        io_uring_register_eventfd(&ring, counter);
        struct epoll_event counted = {.events = EPOLLIN | EPOLLET, .data.fd = counter};
        epoll_ctl(poller, EPOLL_CTL_ADD, counter, &counted);
    }
    pthread_t writer;
    pthread_create(&writer, NULL, write_later, NULL);
    double start = now_ms();
    for (int i = 0; i < 3; i++) {
        struct epoll_event event;
        int count = epoll_wait(poller, &event, 1, 1000);
        int saved = errno;
        unsigned ready = io_uring_cq_ready(&ring);
        printf("%s: epoll_wait %d returned %d%s%s after %.0f ms; completions in the ring: %u\n",
               name, i + 1, count, count < 0 ? " " : "", count < 0 ? strerror(saved) : "",
               now_ms() - start, ready);
        if (count > 0 && ready > 0)
            break;
    }
    pthread_join(writer, NULL);
    close(poller);
    if (counter >= 0)
        close(counter);
    close(pair[0]);
    close(pair[1]);
    io_uring_queue_exit(&ring);
}

/* Each probe in a process of its own: a ring's teardown leaves task work that would interrupt the
 * next probe's first epoll_wait. */
static void probe_alone(const char *name, unsigned flags, bool with_eventfd) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        probe(name, flags, with_eventfd);
        fflush(stdout);
        _exit(0);
    }
    waitpid(child, NULL, 0);
}

int main(void) {
    probe_alone("default", 0, false);
    probe_alone("coop taskrun", IORING_SETUP_COOP_TASKRUN, false);
    probe_alone("defer taskrun + eventfd", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                true);
    return 0;
}
