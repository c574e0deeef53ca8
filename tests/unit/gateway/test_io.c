/* Unit tests of a plain socket's reader and writer (gateway/io.c) over socket pairs and loopback,
 * each run twice: reads and writes one system call each, and batched through io_uring
 * (gw_io_batch_start). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "gateway/io.h"

/* libevent allocates through these (main): the next `failures` allocations fail. */
static int failures;

static void *failing_malloc(size_t size) {
    if (failures > 0) {
        failures--;
        return NULL;
    }
    return malloc(size);
}

static void *plain_realloc(void *memory, size_t size) { return realloc(memory, size); }

static void plain_free(void *memory) { free(memory); }

/* The group's mode: loops made by new_base batch their plain sockets' reads and sends. */
static bool batched;

static struct event_base *new_base(void) {
    struct event_base *base = event_base_new();
    assert_non_null(base);
    if (batched)
        assert_int_equal(gw_io_batch_start(base), 0);
    return base;
}

static void free_base(struct event_base *base) {
    gw_io_batch_stop();
    event_base_free(base);
}

static int batch_on(void **state) {
    (void)state;
    batched = true;
    return 0;
}

static int batch_off(void **state) {
    (void)state;
    batched = false;
    return 0;
}

/* What the reader told its owner. */
typedef struct seen {
    int reads;
    int writes;
    short events;
    int error;
} seen_t;

static void on_read(struct bufferevent *bev, void *arg) {
    assert_null(bev);
    ((seen_t *)arg)->reads++;
}

static void on_write(struct bufferevent *bev, void *arg) {
    assert_null(bev);
    ((seen_t *)arg)->writes++;
}

static void on_event(struct bufferevent *bev, short events, void *arg) {
    assert_null(bev);
    seen_t *seen = arg;
    seen->events = events;
    seen->error = errno;
}

/* A reader on one end of a socket pair; the other end is returned. */
static int plain_pair(struct event_base *base, gw_io_reader_t *reader, seen_t *seen) {
    int ends[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ends), 0);
    assert_int_equal(gw_io_plain_init(reader, base, ends[0]), 0);
    gw_io_reader_callbacks(reader, on_read, on_write, on_event, seen);
    return ends[1];
}

/* The state of a test with one reader: a socket pair on a loop of the group's mode. */
typedef struct pair {
    struct event_base *base;
    gw_io_reader_t reader;
    seen_t seen;
    int peer; /* the other end; -1 once the test closed it */
} pair_t;

static int pair_setup(void **state) {
    pair_t *pair = calloc(1, sizeof(*pair));
    assert_non_null(pair);
    pair->base = new_base();
    pair->peer = plain_pair(pair->base, &pair->reader, &pair->seen);
    *state = pair;
    return 0;
}

/* Also after a failed test: the batch goes with its loop, so the next test starts clean. */
static int pair_teardown(void **state) {
    pair_t *pair = *state;
    if (pair->peer >= 0)
        close(pair->peer);
    gw_io_plain_free(&pair->reader, false);
    free_base(pair->base);
    free(pair);
    return 0;
}

static void close_peer(pair_t *pair) {
    close(pair->peer);
    pair->peer = -1;
}

/* Runs the loop's ready callbacks a few times. */
static void turn(struct event_base *base) {
    for (int i = 0; i < 4; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void test_reading_waits_for_room_and_resumes_on_drain(void **state) {
    pair_t *pair = *state;
    char sent[64];
    for (size_t i = 0; i < sizeof(sent); i++)
        sent[i] = (char)('a' + i % 26);
    assert_int_equal(send(pair->peer, sent, sizeof(sent), 0), (ssize_t)sizeof(sent));
    gw_io_read_watermark(&pair->reader, 16);
    gw_io_read_enable(&pair->reader);

    char got[64];
    size_t total = 0;
    while (total < sizeof(sent)) {
        turn(pair->base);
        /* Full: no read beyond the mark, however many turns, and a callback
         * waits for the drain. */
        assert_int_equal(evbuffer_get_length(pair->reader.input), 16);
        assert_non_null(pair->reader.on_drain);
        assert_false(pair->reader.added);
        turn(pair->base);
        assert_int_equal(evbuffer_get_length(pair->reader.input), 16);
        /* A drain that leaves no room keeps it waiting... */
        evbuffer_prepend(pair->reader.input, "x", 1);
        evbuffer_drain(pair->reader.input, 1);
        assert_non_null(pair->reader.on_drain);
        assert_false(pair->reader.added);
        /* ...one that makes room resumes reading, and the callback goes. */
        assert_int_equal(evbuffer_remove(pair->reader.input, got + total, 16), 16);
        assert_null(pair->reader.on_drain);
        assert_true(pair->reader.added);
        total += 16;
    }
    assert_memory_equal(got, sent, sizeof(sent));
    assert_int_equal(pair->seen.reads, 4);
    assert_int_equal(pair->seen.events, 0);

    /* The peer's end of stream: reading stops, then the owner hears of it. */
    close_peer(pair);
    turn(pair->base);
    assert_int_equal(pair->seen.events, BEV_EVENT_READING | BEV_EVENT_EOF);
    assert_false(pair->reader.added);
    gw_io_plain_free(&pair->reader, false);
    gw_io_plain_free(&pair->reader, false); /* idempotent (the teardown frees it once more) */
}

/* The input reaches its mark when the drain callback cannot be allocated: the
 * reader keeps listening and tries again at the next readiness; when that
 * fails too, the connection ends with ENOMEM, and what was read stays. */
static void test_a_full_input_without_its_callback_ends_with_enomem(void **state) {
    pair_t *pair = *state;
    gw_io_read_watermark(&pair->reader, 16);
    gw_io_read_enable(&pair->reader);
    assert_int_equal(send(pair->peer, "12345678", 8, 0), 8);
    turn(pair->base);
    assert_int_equal(evbuffer_get_length(pair->reader.input), 8);

    failures = 1; /* the callback's: the bytes land in the chain the first read made */
    assert_int_equal(send(pair->peer, "abcdefgh", 8, 0), 8);
    turn(pair->base);
    assert_int_equal(failures, 0);
    assert_int_equal(evbuffer_get_length(pair->reader.input), 16);
    assert_null(pair->reader.on_drain);
    assert_true(pair->reader.added);
    assert_int_equal(pair->seen.reads, 2);

    /* A readiness with memory back: it waits for a drain as usual. */
    assert_int_equal(send(pair->peer, "i", 1, 0), 1);
    turn(pair->base);
    assert_non_null(pair->reader.on_drain);
    assert_false(pair->reader.added);
    assert_int_equal(pair->seen.events, 0);
    char got[16];
    assert_int_equal(evbuffer_remove(pair->reader.input, got, 16), 16);
    turn(pair->base);
    assert_int_equal(evbuffer_get_length(pair->reader.input), 1);

    /* Full again, and no memory at either try. */
    assert_int_equal(send(pair->peer, "jklmnopqrstuvwxyz", 17, 0), 17);
    failures = 2;
    turn(pair->base);
    assert_int_equal(evbuffer_get_length(pair->reader.input), 16);
    assert_int_equal(failures, 0);
    assert_int_equal(pair->seen.events, BEV_EVENT_READING | BEV_EVENT_ERROR);
    assert_int_equal(pair->seen.error, ENOMEM);
    assert_false(pair->reader.added);
}

static void test_read_again_runs_on_read_without_reading(void **state) {
    pair_t *pair = *state;
    evbuffer_add(pair->reader.input, "GET", 3);
    gw_io_read_again(&pair->reader);
    assert_int_equal(pair->seen.reads, 0); /* from the loop, not from here */
    turn(pair->base);
    assert_int_equal(pair->seen.reads, 1);
    assert_int_equal(evbuffer_get_length(pair->reader.input), 3);
    turn(pair->base);
    assert_int_equal(pair->seen.reads, 1); /* once; reading was never enabled */
}

static void test_a_full_socket_writes_the_rest_when_drained(void **state) {
    pair_t *pair = *state;
    static char block[1 << 20];
    memset(block, 'z', sizeof(block));
    evbuffer_add(pair->reader.output, block, sizeof(block));
    gw_io_write_low(&pair->reader, 0);
    gw_io_flush(&pair->reader);
    size_t left = evbuffer_get_length(pair->reader.output);
    assert_true(left > 0); /* a socket pair holds far less than 1 MiB */
    assert_true(pair->reader.writing);
    turn(pair->base);
    assert_int_equal(pair->seen.writes, 0); /* nobody read: nothing moved */

    size_t received = 0;
    char buffer[65536];
    while (received < sizeof(block)) {
        ssize_t got = recv(pair->peer, buffer, sizeof(buffer), 0);
        if (got > 0) {
            for (ssize_t i = 0; i < got; i++)
                assert_int_equal(buffer[i], 'z');
            received += (size_t)got;
        }
        turn(pair->base);
    }
    assert_int_equal(evbuffer_get_length(pair->reader.output), 0);
    assert_false(pair->reader.writing);
    assert_int_equal(pair->seen.writes, 1); /* once, when it reached the low mark (0) */
    assert_int_equal(pair->seen.events, 0);
}

static void test_a_write_error_reaches_on_event(void **state) {
    pair_t *pair = *state;
    close_peer(pair);
    evbuffer_add(pair->reader.output, "lost", 4);
    gw_io_flush(&pair->reader); /* EPIPE: told from the loop, as a full socket's rest would be */
    assert_int_equal(pair->seen.events, 0);
    turn(pair->base);
    assert_int_equal(pair->seen.events, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
    assert_int_equal(pair->seen.error, EPIPE);
    assert_false(pair->reader.writing);
}

/* A dial of 127.0.0.1:port; the outcome's events once the loop has run. */
static short dial(uint16_t port, uint64_t timeout_ms, int *error) {
    struct event_base *base = new_base();
    gw_io_reader_t reader;
    seen_t seen = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(gw_io_plain_init(&reader, base, fd), 0);
    gw_io_reader_callbacks(&reader, on_read, on_write, on_event, &seen);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    gw_io_plain_connect(&reader, (struct sockaddr *)&address, sizeof(address), timeout_ms);
    assert_int_equal(seen.events, 0); /* never from the call */
    while (seen.events == 0)
        event_base_loop(base, EVLOOP_ONCE);
    assert_false(reader.dialling);
    *error = seen.error;
    gw_io_plain_free(&reader, false);
    free_base(base);
    return seen.events;
}

static void test_dials_report_connected_or_refused_from_the_loop(void **state) {
    (void)state;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(listener, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(listen(listener, 4), 0);
    socklen_t length = sizeof(address);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&address, &length), 0);
    uint16_t port = ntohs(address.sin_port);
    int error = 0;
    assert_int_equal(dial(port, 5000, &error), BEV_EVENT_CONNECTED);
    close(listener); /* the port now refuses */
    assert_int_equal(dial(port, 5000, &error), BEV_EVENT_WRITING | BEV_EVENT_ERROR);
    assert_int_equal(error, ECONNREFUSED);
}

/* Whether the peer can read now; what it read goes to got (NUL-ended). */
static ssize_t peer_read(int peer, char *got, size_t size) {
    ssize_t length = recv(peer, got, size - 1, MSG_DONTWAIT);
    got[length > 0 ? length : 0] = '\0';
    return length;
}

/* A soon flush leaves with the turn's other sends, once the turn's callbacks
 * ran; a plain flush goes at once. */
static void test_soon_flushes_leave_after_the_turn(void **state) {
    (void)state;
    struct event_base *base = new_base();
    gw_io_reader_t first, second;
    seen_t seen = {0};
    int first_peer = plain_pair(base, &first, &seen);
    int second_peer = plain_pair(base, &second, &seen);
    char got[64];
    evbuffer_add(first.output, "one", 3);
    gw_io_flush_soon(&first);
    evbuffer_add(second.output, "two", 3);
    gw_io_flush_soon(&second);
    evbuffer_add(first.output, "+", 1);
    gw_io_flush_soon(&first); /* queued once */
    if (batched) {
        assert_true(first.queued && second.queued);
        assert_int_equal(peer_read(first_peer, got, sizeof(got)), -1);
        assert_int_equal(peer_read(second_peer, got, sizeof(got)), -1);
        turn(base);
    }
    assert_false(first.queued || second.queued);
    assert_int_equal(peer_read(first_peer, got, sizeof(got)), 4);
    assert_string_equal(got, "one+");
    assert_int_equal(peer_read(second_peer, got, sizeof(got)), 3);
    assert_string_equal(got, "two");
    assert_int_equal(evbuffer_get_length(first.output), 0);

    /* A plain flush sends what a soon one left, with its own bytes, now. */
    evbuffer_add(first.output, "a", 1);
    gw_io_flush_soon(&first);
    evbuffer_add(first.output, "b", 1);
    gw_io_flush(&first);
    assert_false(first.queued);
    assert_int_equal(peer_read(first_peer, got, sizeof(got)), 2);
    assert_string_equal(got, "ab");
    turn(base);
    assert_int_equal(peer_read(first_peer, got, sizeof(got)), -1);
    assert_int_equal(seen.writes, 0);
    assert_int_equal(seen.events, 0);
    close(first_peer);
    close(second_peer);
    gw_io_plain_free(&first, false);
    gw_io_plain_free(&second, false);
    free_base(base);
}

/* What a soon flush left goes out before the socket's end: a shutdown, a
 * free that closes it, or a free that hands it on. */
static void test_what_waits_for_the_batch_goes_before_the_end(void **state) {
    (void)state;
    struct event_base *base = new_base();
    gw_io_reader_t reader;
    seen_t seen = {0};
    char got[64];
    int peer = plain_pair(base, &reader, &seen);
    evbuffer_add(reader.output, "last words", 10);
    gw_io_flush_soon(&reader);
    gw_io_shutdown_write(&reader);
    assert_int_equal(peer_read(peer, got, sizeof(got)), 10);
    assert_string_equal(got, "last words");
    assert_int_equal(peer_read(peer, got, sizeof(got)), 0); /* then the end */
    gw_io_plain_free(&reader, false);
    close(peer);

    peer = plain_pair(base, &reader, &seen);
    evbuffer_add(reader.output, "bye", 3);
    gw_io_flush_soon(&reader);
    gw_io_plain_free(&reader, false);
    turn(base); /* nothing of the freed reader is left in the batch */
    assert_int_equal(peer_read(peer, got, sizeof(got)), 3);
    assert_string_equal(got, "bye");
    assert_int_equal(peer_read(peer, got, sizeof(got)), 0);
    close(peer);

    peer = plain_pair(base, &reader, &seen);
    int fd = reader.fd;
    evbuffer_add(reader.output, "head", 4);
    gw_io_flush_soon(&reader);
    gw_io_send_queued(&reader); /* before a splice writes the body */
    assert_false(reader.queued);
    assert_int_equal(peer_read(peer, got, sizeof(got)), 4);
    assert_string_equal(got, "head");
    evbuffer_add(reader.output, "kept", 4);
    gw_io_flush_soon(&reader);
    gw_io_plain_free(&reader, true);
    assert_int_equal(peer_read(peer, got, sizeof(got)), 4);
    assert_string_equal(got, "kept");
    assert_int_equal(send(fd, "!", 1, 0), 1); /* still open: the caller's */
    close(fd);
    close(peer);
    free_base(base);
}

/* A soon flush to a socket that takes part of it: the rest waits for the
 * socket, and on_write comes at the low mark; a closed peer reaches on_event. */
static void test_a_soon_flush_to_a_full_or_closed_socket(void **state) {
    pair_t *pair = *state;
    int small = 4096;
    assert_int_equal(setsockopt(pair->reader.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    static char block[60 * 1024]; /* below the 64 KiB a soon flush may leave */
    memset(block, 'q', sizeof(block));
    evbuffer_add(pair->reader.output, block, sizeof(block));
    gw_io_write_low(&pair->reader, 0);
    gw_io_flush_soon(&pair->reader);
    turn(pair->base);
    assert_true(evbuffer_get_length(pair->reader.output) > 0);
    assert_true(pair->reader.writing);
    size_t received = 0;
    char buffer[65536];
    while (received < sizeof(block)) {
        ssize_t got = recv(pair->peer, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (got > 0) {
            for (ssize_t i = 0; i < got; i++)
                assert_int_equal(buffer[i], 'q');
            received += (size_t)got;
        }
        turn(pair->base);
    }
    assert_int_equal(received, sizeof(block));
    assert_false(pair->reader.writing);
    assert_int_equal(pair->seen.writes, 1);
    assert_int_equal(pair->seen.events, 0);

    close_peer(pair);
    evbuffer_add(pair->reader.output, "lost", 4);
    gw_io_flush_soon(&pair->reader);
    turn(pair->base);
    assert_int_equal(pair->seen.events, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
    assert_int_equal(pair->seen.error, EPIPE);
}

/* Two readers readable in one turn; the first callback turns the other's
 * reading off (an exchange pausing a side). */
typedef struct pausing {
    gw_io_reader_t readers[2];
    int reads[2];
} pausing_t;

static void on_read_first(struct bufferevent *bev, void *arg) {
    (void)bev;
    pausing_t *pausing = arg;
    pausing->reads[0]++;
    if (pausing->reads[0] + pausing->reads[1] == 1)
        gw_io_read_disable(&pausing->readers[1]);
}

static void on_read_second(struct bufferevent *bev, void *arg) {
    (void)bev;
    pausing_t *pausing = arg;
    pausing->reads[1]++;
    if (pausing->reads[0] + pausing->reads[1] == 1)
        gw_io_read_disable(&pausing->readers[0]);
}

static void test_bytes_read_after_reading_went_off_wait_for_it(void **state) {
    (void)state;
    struct event_base *base = new_base();
    pausing_t pausing = {0};
    seen_t seen = {0};
    int peers[2];
    bufferevent_data_cb callbacks[2] = {on_read_first, on_read_second};
    for (int i = 0; i < 2; i++) {
        peers[i] = plain_pair(base, &pausing.readers[i], &seen);
        gw_io_reader_callbacks(&pausing.readers[i], callbacks[i], on_write, on_event, &pausing);
        gw_io_read_enable(&pausing.readers[i]);
        assert_int_equal(send(peers[i], "ping", 4, 0), 4);
    }
    turn(base);
    /* One callback ran; the other reader's bytes were read in the same round
     * (batched) or stayed in the socket (not): no callback either way. */
    assert_int_equal(pausing.reads[0] + pausing.reads[1], 1);
    int paused = pausing.reads[0] == 1 ? 1 : 0;
    gw_io_reader_t *other = &pausing.readers[paused];
    assert_int_equal(evbuffer_get_length(other->input), batched ? 4 : 0);
    turn(base);
    assert_int_equal(pausing.reads[paused], 0);
    /* On again: the callback comes, with the bytes, once. */
    gw_io_read_enable(other);
    turn(base);
    assert_int_equal(pausing.reads[paused], 1);
    assert_int_equal(evbuffer_get_length(other->input), 4);
    assert_memory_equal(evbuffer_pullup(other->input, 4), "ping", 4);
    assert_int_equal(seen.events, 0);
    for (int i = 0; i < 2; i++) {
        close(peers[i]);
        gw_io_plain_free(&pausing.readers[i], false);
    }
    free_base(base);
}

/* A reader freed by another's callback in the same round is not called. */
static void on_read_freeing_the_other(struct bufferevent *bev, void *arg) {
    (void)bev;
    pausing_t *pausing = arg;
    int self = pausing->reads[0] + pausing->reads[1] == 0 ? 0 : 1;
    pausing->reads[self]++;
    for (int i = 0; i < 2; i++)
        gw_io_plain_free(&pausing->readers[i], false); /* both: idempotent */
}

static void test_a_reader_freed_in_the_round_is_not_called(void **state) {
    (void)state;
    struct event_base *base = new_base();
    pausing_t pausing = {0};
    seen_t seen = {0};
    int peers[2];
    for (int i = 0; i < 2; i++) {
        peers[i] = plain_pair(base, &pausing.readers[i], &seen);
        gw_io_reader_callbacks(&pausing.readers[i], on_read_freeing_the_other, on_write, on_event,
                               &pausing);
        gw_io_read_enable(&pausing.readers[i]);
        assert_int_equal(send(peers[i], "ping", 4, 0), 4);
    }
    turn(base);
    assert_int_equal(pausing.reads[0] + pausing.reads[1], 1);
    assert_int_equal(seen.events, 0);
    close(peers[0]);
    close(peers[1]);
    free_base(base);
}

/* An idle socket parks its empty buffers in the thread's stock: it holds none
 * while parked, and unparking, or a readiness, gives it the stock's, the last
 * parked first. Bytes on either side keep it from parking. */
static void test_a_parked_socket_holds_no_buffers_and_takes_warm_ones(void **state) {
    pair_t *pair = *state;
    gw_io_reader_t *reader = &pair->reader;
    gw_io_read_enable(reader);
    assert_int_equal(send(pair->peer, "abc", 3, 0), 3);
    turn(pair->base);
    assert_int_equal(pair->seen.reads, 1);
    assert_false(gw_io_plain_park(reader));
    evbuffer_drain(reader->input, 3);
    evbuffer_add(reader->output, "x", 1);
    assert_false(gw_io_plain_park(reader));
    evbuffer_drain(reader->output, 1);

    struct evbuffer *input = reader->input, *output = reader->output;
    assert_true(gw_io_plain_park(reader));
    assert_null(reader->input);
    assert_null(reader->output);
    assert_int_equal(gw_io_plain_unpark(reader), 0);
    assert_ptr_equal(reader->input, output);
    assert_ptr_equal(reader->output, input);

    /* Parked again, then readable: the bytes land in the stock's buffers. */
    assert_true(gw_io_plain_park(reader));
    assert_int_equal(send(pair->peer, "late", 4, 0), 4);
    turn(pair->base);
    assert_int_equal(pair->seen.reads, 2);
    assert_int_equal(pair->seen.events, 0);
    assert_ptr_equal(reader->input, input);
    assert_ptr_equal(reader->output, output);
    assert_int_equal(evbuffer_get_length(reader->input), 4);
    evbuffer_drain(reader->input, 4);

    /* No buffer to be had: the owner hears ENOMEM. */
    assert_true(gw_io_plain_park(reader));
    gw_io_stock_clear();
    failures = 1;
    assert_int_equal(send(pair->peer, "lost", 4, 0), 4);
    turn(pair->base);
    assert_int_equal(pair->seen.events, BEV_EVENT_READING | BEV_EVENT_ERROR);
    assert_int_equal(pair->seen.error, ENOMEM);
    failures = 0;
    gw_io_plain_unpark(reader);
    evbuffer_drain(reader->input, evbuffer_get_length(reader->input));
    /* Freed while parked (the teardown frees it again), and the stock freed. */
    assert_true(gw_io_plain_park(reader));
    gw_io_plain_free(reader, false);
    gw_io_stock_clear();
}

int main(void) {
    event_set_mem_functions(failing_malloc, plain_realloc, plain_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reading_waits_for_room_and_resumes_on_drain,
                                        pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_full_input_without_its_callback_ends_with_enomem,
                                        pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_read_again_runs_on_read_without_reading, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_full_socket_writes_the_rest_when_drained, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_write_error_reaches_on_event, pair_setup,
                                        pair_teardown),
        cmocka_unit_test(test_dials_report_connected_or_refused_from_the_loop),
        cmocka_unit_test(test_soon_flushes_leave_after_the_turn),
        cmocka_unit_test(test_what_waits_for_the_batch_goes_before_the_end),
        cmocka_unit_test_setup_teardown(test_a_soon_flush_to_a_full_or_closed_socket, pair_setup,
                                        pair_teardown),
        cmocka_unit_test(test_bytes_read_after_reading_went_off_wait_for_it),
        cmocka_unit_test(test_a_reader_freed_in_the_round_is_not_called),
        cmocka_unit_test_setup_teardown(test_a_parked_socket_holds_no_buffers_and_takes_warm_ones,
                                        pair_setup, pair_teardown),
    };
    int failed = cmocka_run_group_tests_name("one system call each", tests, batch_off, NULL);
    /* io_uring may be refused (a container's seccomp profile): the gateway
     * then runs as above, and so do these. */
    struct event_base *probe = event_base_new();
    bool uring = gw_io_batch_start(probe) == 0;
    gw_io_batch_stop();
    event_base_free(probe);
    if (!uring) {
        print_message("io_uring refused here (%s): the batched group is skipped\n",
                      strerror(errno));
        return failed;
    }
    return failed + cmocka_run_group_tests_name("batched through io_uring", tests, batch_on, NULL);
}
