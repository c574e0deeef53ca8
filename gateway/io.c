/* Socket I/O: plain sockets on their own buffers, the socket under TLS, and splice. */
#include "gateway/io.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"

/* Valgrind does not see the kernel write a batched read's buffer: it is told
 * (a few instructions when not under valgrind). */
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(address, length) ((void)(address), (void)(length))
#endif

/* The first read of a readiness: a request or response head fits, and a
 * small message does not reserve (allocate) more than it needs. */
enum { GW_IO_READ_FIRST = 16 * 1024 };
/* Each further read of a body: large enough to move it in few calls. */
enum { GW_IO_READ_CHUNK = 64 * 1024 };
/* Pieces of the output one write hands to the kernel. */
enum { GW_IO_WRITE_PIECES = 16 };
/* A splice's pipe: as much as the socket buffers move per call on loopback. */
enum { GW_IO_PIPE_SIZE = 256 * 1024 };
/* Sends one io_uring_enter makes at most. */
enum { GW_IO_BATCH_SENDS = 256 };
/* Empty buffers a thread keeps for parked sockets' next use (gw_io_plain_park):
 * at 1,000 clients a thousand pooled connections are parked and taken again
 * within a few loop turns, and a stock too small for them frees buffers and
 * allocates new ones (64 cost 800 instructions a request there). */
enum { GW_IO_STOCK = 2048 };
/* Reads one io_uring_enter makes at most: each has a landing buffer of
 * GW_IO_READ_FIRST bytes (of which a small message touches one page). */
enum { GW_IO_BATCH_READS = 64 };
/* The largest output a flush leaves for the batch. */
enum { GW_IO_BATCH_BYTES = 64 * 1024 };

/* A thread's batched reads and sends (gw_io_batch_start). */
typedef struct gw_io_batch {
    struct io_uring ring;
    struct event *event; /* active while work is queued: runs after the turn's callbacks */
    TAILQ_HEAD(, gw_io_reader) queue;      /* sends */
    TAILQ_HEAD(, gw_io_reader) reads;      /* reads waiting for a round */
    TAILQ_HEAD(, gw_io_reader) delivering; /* reads made, their callbacks due */
    bool scheduled;                        /* the event is active, or running */
    bool ring_open;                        /* ring was set up */
    size_t read_want[GW_IO_BATCH_READS];
    char (*landing)[GW_IO_READ_FIRST]; /* GW_IO_BATCH_READS buffers */
    int results[GW_IO_BATCH_SENDS];    /* each entry's: bytes, or -errno */
    /* One sendmsg's arguments per entry of the ring. */
    gw_io_reader_t *readers[GW_IO_BATCH_SENDS];
    size_t offered[GW_IO_BATCH_SENDS];
    struct msghdr messages[GW_IO_BATCH_SENDS];
    struct iovec vectors[GW_IO_BATCH_SENDS][GW_IO_WRITE_PIECES];
} gw_io_batch_t;

static _Thread_local gw_io_batch_t *gw_io_batch;

/* Empty buffers parked sockets gave back, the last given on top. */
static _Thread_local struct evbuffer *gw_io_stock[GW_IO_STOCK];
static _Thread_local unsigned gw_io_stock_count;

/* The input is below its high watermark, or has none (or, parked, no input). */
static bool gw_io_has_room(const gw_io_reader_t *reader) {
    return reader->high == 0 || reader->input == NULL ||
           evbuffer_get_length(reader->input) < reader->high;
}

static void gw_io_input_changed(struct evbuffer *buffer, const struct evbuffer_cb_info *info,
                                void *arg);

/* Keeps the read event in the loop exactly while reading is wanted and the
 * input has room. While reading waits for room, a callback on the input
 * watches for the owner's drains; only then: libevent runs an input's
 * callbacks at every change of it, a read's and the owner's, half of a
 * keep-alive request's calls into it. When the callback cannot be had, the
 * read event stays and the next readiness ends the connection (ENOMEM). */
static void gw_io_reader_update(gw_io_reader_t *reader) {
    bool listen = reader->wanted;
    if (listen && !gw_io_has_room(reader)) {
        if (reader->on_drain == NULL)
            reader->on_drain = evbuffer_add_cb(reader->input, gw_io_input_changed, reader);
        listen = reader->on_drain == NULL;
    }
    if (listen && !reader->added) {
        event_add(reader->event, NULL);
        reader->added = true;
    } else if (!listen && reader->added) {
        event_del(reader->event);
        reader->added = false;
    }
}

/* The owner drained the input: reading may resume, and the callback goes. */
static void gw_io_input_changed(struct evbuffer *buffer, const struct evbuffer_cb_info *info,
                                void *arg) {
    gw_io_reader_t *reader = arg;
    if (info->n_deleted == 0 || !gw_io_has_room(reader))
        return;
    evbuffer_remove_cb_entry(buffer, reader->on_drain); /* libevent allows it here */
    reader->on_drain = NULL;
    gw_io_reader_update(reader);
}

/* One recv() of at most want bytes into the input; returns what recv returned. */
static ssize_t gw_io_receive(gw_io_reader_t *reader, size_t want) {
    struct evbuffer *input = reader->input;
    struct evbuffer_iovec space[2];
    int count = evbuffer_reserve_space(input, (ev_ssize_t)want, space, 2);
    if (count <= 0) {
        errno = ENOMEM;
        return -1;
    }
    struct iovec vectors[2];
    size_t reserved = 0;
    for (int i = 0; i < count; i++) {
        if (space[i].iov_len > want - reserved)
            space[i].iov_len = want - reserved;
        vectors[i].iov_base = space[i].iov_base;
        vectors[i].iov_len = space[i].iov_len;
        reserved += space[i].iov_len;
    }
    int fd = reader->fd;
    ssize_t got;
    if (count == 1 || space[1].iov_len == 0) {
        count = 1;
        got = recv(fd, vectors[0].iov_base, vectors[0].iov_len, 0);
    } else {
        struct msghdr message = {.msg_iov = vectors, .msg_iovlen = (size_t)count};
        got = recvmsg(fd, &message, 0);
    }
    if (got <= 0) {
        int saved = errno;
        evbuffer_commit_space(input, space, 0);
        errno = saved;
        reader->filled = false;
        return got;
    }
    size_t remaining = (size_t)got;
    for (int i = 0; i < count; i++) {
        if (space[i].iov_len > remaining)
            space[i].iov_len = remaining;
        remaining -= space[i].iov_len;
    }
    evbuffer_commit_space(input, space, count);
    reader->filled = (size_t)got == reserved;
    return got;
}

/* A read of at most want bytes into landing returned got (errno set when
 * negative): what it read goes into the input. Returns got, or -1 with errno
 * ENOMEM when the input cannot take it (the connection ends, and what was
 * read goes with it). */
static ssize_t gw_io_take_landed(gw_io_reader_t *reader, const char *landing, ssize_t got,
                                 size_t want) {
    reader->filled = got > 0 && (size_t)got == want;
    if (got > 0 && evbuffer_add(reader->input, landing, (size_t)got) != 0) {
        errno = ENOMEM;
        return -1;
    }
    return got;
}

/* One recv() of at most want (<= GW_IO_READ_FIRST) bytes into a per-thread
 * buffer, then copied into the input. Reserving GW_IO_READ_FIRST in the input
 * makes libevent allocate a 32 KiB chain (it rounds sizes up to a power of
 * two) for what is mostly a head of a few hundred bytes, and free it again
 * once the owner drained the input: malloc's slow path for large chunks twice
 * a read. The copy takes a chain the size of the bytes (1 KiB for most heads,
 * from malloc's per-thread cache) or the room left in the last one. */
static ssize_t gw_io_receive_small(gw_io_reader_t *reader, size_t want) {
    static _Thread_local char landing[GW_IO_READ_FIRST];
    return gw_io_take_landed(reader, landing, recv(reader->fd, landing, want, 0), want);
}

/* How much the next read may take: GW_IO_READ_FIRST, or less below the high
 * watermark (0: the input is full). */
static size_t gw_io_read_want(const gw_io_reader_t *reader) {
    size_t want = GW_IO_READ_FIRST;
    if (reader->high != 0) {
        size_t held = evbuffer_get_length(reader->input);
        want = held >= reader->high ? 0 : reader->high - held;
        if (want > GW_IO_READ_FIRST)
            want = GW_IO_READ_FIRST;
    }
    return want;
}

/* A read returned got (errno set when negative): the owner's callbacks, which
 * may free the connection (nothing is touched after them). */
static void gw_io_reader_deliver(gw_io_reader_t *reader, ssize_t got) {
    struct bufferevent *bev = reader->bev;
    bufferevent_data_cb on_read = reader->on_read;
    bufferevent_event_cb on_event = reader->on_event;
    void *callback_arg = reader->callback_arg;
    if (on_read == NULL)
        bufferevent_getcb(bev, &on_read, NULL, &on_event, &callback_arg);
    if (got > 0) {
        gw_io_reader_update(reader);
        if (on_read != NULL)
            on_read(bev, callback_arg);
        return;
    }
    /* End of stream or an error: like libevent, stop reading, then tell. */
    reader->wanted = false;
    gw_io_reader_update(reader);
    if (on_event != NULL)
        on_event(bev, BEV_EVENT_READING | (got == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR),
                 callback_arg);
}

static bool gw_io_queue_read(gw_io_reader_t *reader);

/* The socket is readable: one read (a plain socket's first one of a
 * readiness left to the batch), then the owner's callbacks. */
static void gw_io_reader_ready(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_io_reader_t *reader = arg;
    if (reader->input == NULL && gw_io_plain_unpark(reader) < 0) {
        /* Parked, and no buffers to read into. */
        errno = ENOMEM;
        gw_io_reader_deliver(reader, -1);
        return;
    }
    if (reader->replay) {
        /* gw_io_read_again: the bytes already in the input. */
        reader->replay = false;
        reader->on_read(reader->bev, reader->callback_arg);
        return;
    }
    size_t want = gw_io_read_want(reader);
    ssize_t got;
    if (want == 0) {
        gw_io_reader_update(reader);
        if (reader->on_drain != NULL)
            return; /* until the owner drains the input */
        /* No callback to resume reading with: the connection ends, as on any
         * allocation failure. */
        errno = ENOMEM;
        got = -1;
    } else {
        /* After a read that filled its space a large body is under way: it
         * is read in place, without the copy. */
        if (!reader->filled && gw_io_queue_read(reader))
            return;
        got = reader->filled ? gw_io_receive(reader, want) : gw_io_receive_small(reader, want);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
    }
    gw_io_reader_deliver(reader, got);
}

int gw_io_reader_init(gw_io_reader_t *reader, struct bufferevent *bev, bool reads_socket) {
    *reader = (gw_io_reader_t){.bev = bev,
                               .fd = bufferevent_getfd(bev),
                               .input = bufferevent_get_input(bev),
                               .output = bufferevent_get_output(bev)};
    if (!reads_socket)
        return 0;
    struct evbuffer *input = reader->input;
    reader->event = event_new(bufferevent_get_base(bev), reader->fd, EV_READ | EV_PERSIST,
                              gw_io_reader_ready, reader);
    if (reader->event == NULL)
        goto fail;
    /* A socket bufferevent freezes the end of its input to all but its own
     * reads; here the gateway's reads are the only ones. */
    evbuffer_unfreeze(input, 0);
    return 0;
fail:
    gw_io_reader_free(reader);
    return -1;
}

void gw_io_reader_callbacks(gw_io_reader_t *reader, bufferevent_data_cb on_read,
                            bufferevent_data_cb on_write, bufferevent_event_cb on_event,
                            void *arg) {
    reader->on_read = on_read;
    reader->on_write = on_write;
    reader->on_event = on_event;
    reader->callback_arg = arg;
}

void gw_io_reader_free(gw_io_reader_t *reader) {
    if (reader->event != NULL) {
        event_free(reader->event);
        reader->event = NULL;
    }
    if (reader->on_drain != NULL) {
        evbuffer_remove_cb_entry(reader->input, reader->on_drain);
        reader->on_drain = NULL;
    }
    reader->added = false;
    reader->wanted = false;
}

void gw_io_read_enable(gw_io_reader_t *reader) {
    if (reader->event == NULL) {
        bufferevent_enable(reader->bev, EV_READ);
        return;
    }
    reader->wanted = true;
    gw_io_reader_update(reader);
    if (reader->held) {
        /* Bytes the batch read while reading was off. */
        reader->held = false;
        gw_io_read_again(reader);
    }
}

void gw_io_read_disable(gw_io_reader_t *reader) {
    if (reader->event == NULL) {
        bufferevent_disable(reader->bev, EV_READ);
        return;
    }
    reader->wanted = false;
    gw_io_reader_update(reader);
}

void gw_io_read_watermark(gw_io_reader_t *reader, size_t high) {
    if (reader->event == NULL) {
        bufferevent_setwatermark(reader->bev, EV_READ, 0, high);
        return;
    }
    reader->high = high;
    gw_io_reader_update(reader);
}

size_t gw_io_read_more(gw_io_reader_t *reader, size_t limit) {
    size_t total = 0;
    if (reader->event == NULL)
        return 0;
    struct evbuffer *input = reader->input;
    while (reader->filled) {
        size_t held = evbuffer_get_length(input);
        if (held >= limit)
            break;
        size_t want = limit - held;
        if (want > GW_IO_READ_CHUNK)
            want = GW_IO_READ_CHUNK;
        ssize_t got = gw_io_receive(reader, want);
        if (got <= 0)
            break; /* drained, or an end libevent's next readiness reports */
        total += (size_t)got;
    }
    return total;
}

/* The start of output as at most GW_IO_WRITE_PIECES vectors; returns their
 * count (0: empty), and their bytes in offered. */
static int gw_io_output_vectors(struct evbuffer *output, struct iovec *vectors, size_t *offered) {
    struct evbuffer_iovec pieces[GW_IO_WRITE_PIECES];
    int count = evbuffer_peek(output, -1, NULL, pieces, GW_IO_WRITE_PIECES);
    if (count > GW_IO_WRITE_PIECES)
        count = GW_IO_WRITE_PIECES;
    *offered = 0;
    for (int i = 0; i < count; i++) {
        vectors[i].iov_base = pieces[i].iov_base;
        vectors[i].iov_len = pieces[i].iov_len;
        *offered += pieces[i].iov_len;
    }
    return count;
}

/* Sends the output as far as the socket takes it now; flags are added to
 * every send (MSG_MORE: hold a short tail back). Returns -1 (errno set) on an
 * error other than a full socket, else 0. */
static int gw_io_send_output(gw_io_reader_t *reader, int flags) {
    struct evbuffer *output = reader->output;
    int fd = reader->fd;
    int result = 0;
    /* The start of a socket bufferevent's output is frozen to everyone but
     * itself; this writes on its behalf. */
    if (reader->bev != NULL)
        evbuffer_unfreeze(output, 1);
    while (fd >= 0 && evbuffer_get_length(output) > 0) {
        struct iovec vectors[GW_IO_WRITE_PIECES];
        size_t offered;
        int count = gw_io_output_vectors(output, vectors, &offered);
        /* send/sendmsg: no pass through the file layer as writev takes. */
        ssize_t sent;
        if (count == 1) {
            sent = send(fd, vectors[0].iov_base, vectors[0].iov_len, MSG_NOSIGNAL | flags);
        } else {
            struct msghdr message = {.msg_iov = vectors, .msg_iovlen = (size_t)count};
            sent = sendmsg(fd, &message, MSG_NOSIGNAL | flags);
        }
        if (sent <= 0) {
            if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                result = -1;
            break;
        }
        evbuffer_drain(output, (size_t)sent);
        if ((size_t)sent < offered)
            break; /* the socket is full: another call would only fail */
    }
    if (reader->bev != NULL)
        evbuffer_freeze(output, 1);
    return result;
}

/* A plain socket waits for EV_WRITE while its output holds bytes. */
static void gw_io_plain_wait_writable(gw_io_reader_t *reader, bool wait) {
    if (wait && !reader->writing)
        event_add(reader->write_event, NULL);
    else if (!wait && reader->writing)
        event_del(reader->write_event);
    reader->writing = wait;
}

/* ---- the batch ---- */

static void gw_io_batch_schedule(gw_io_batch_t *batch) {
    if (!batch->scheduled) {
        event_active(batch->event, EV_WRITE, 0);
        batch->scheduled = true;
    }
}

/* Takes reader's read out of the batch, wherever it stands. */
static void gw_io_unqueue_read(gw_io_reader_t *reader) {
    if (reader->read_batch == GW_IO_READ_QUEUED)
        TAILQ_REMOVE(&gw_io_batch->reads, reader, read_link);
    else if (reader->read_batch == GW_IO_READ_MADE)
        TAILQ_REMOVE(&gw_io_batch->delivering, reader, read_link);
    reader->read_batch = GW_IO_READ_NONE;
}

/* Leaves a plain socket's first read of a readiness to the batch. */
static bool gw_io_queue_read(gw_io_reader_t *reader) {
    gw_io_batch_t *batch = gw_io_batch;
    if (batch == NULL || reader->bev != NULL)
        return false;
    if (reader->read_batch == GW_IO_READ_NONE) {
        TAILQ_INSERT_TAIL(&batch->reads, reader, read_link);
        reader->read_batch = GW_IO_READ_QUEUED;
    }
    gw_io_batch_schedule(batch);
    return true;
}

/* Submits count prepared entries and waits for their completions: with
 * MSG_DONTWAIT each completes within the call, as the system call would, so
 * no buffer stays in the kernel's hands after it. Entry i's result goes to
 * batch->results[i] (which the caller set to -EAGAIN: not made). Returns
 * count, or a negative errno when the ring failed. */
static int gw_io_batch_submit(gw_io_batch_t *batch, unsigned count) {
    int result = io_uring_submit_and_wait(&batch->ring, count);
    for (int done = 0; done < result;) {
        struct io_uring_cqe *completion;
        int error = io_uring_wait_cqe(&batch->ring, &completion);
        if (error == -EINTR)
            continue;
        if (error < 0)
            return error;
        uint64_t index = completion->user_data;
        if (index < count)
            batch->results[index] = completion->res;
        io_uring_cqe_seen(&batch->ring, completion);
        done++;
    }
    if (result >= 0 && result != (int)count)
        return -EIO; /* entries left in the ring would be made twice */
    return result;
}

/* Takes reader out of the batch's queue, if it is there. */
static void gw_io_unqueue(gw_io_reader_t *reader) {
    if (!reader->queued)
        return;
    TAILQ_REMOVE(&gw_io_batch->queue, reader, batch_link);
    reader->queued = false;
}

/* Leaves a plain socket's flush to the batch; false when it must be sent now
 * (no batch, a dial or a full socket under way, or a large output). */
static bool gw_io_queue(gw_io_reader_t *reader) {
    gw_io_batch_t *batch = gw_io_batch;
    if (batch == NULL || reader->bev != NULL || reader->dialling || reader->writing ||
        evbuffer_get_length(reader->output) > GW_IO_BATCH_BYTES)
        return false;
    if (!reader->queued) {
        TAILQ_INSERT_TAIL(&batch->queue, reader, batch_link);
        reader->queued = true;
    }
    gw_io_batch_schedule(batch);
    return true;
}

/* An error is reported by the write event (to which it makes the socket
 * ready), on the one path of every write error. */
static void gw_io_flush_with(gw_io_reader_t *reader, int flags) {
    if (reader->bev == NULL) {
        if (reader->dialling)
            return;            /* sent once connected */
        gw_io_unqueue(reader); /* sent now, with what follows */
    }
    gw_io_send_output(reader, flags);
    if (evbuffer_get_length(reader->output) == 0)
        return;
    if (reader->bev == NULL)
        gw_io_plain_wait_writable(reader, true);
    else
        bufferevent_enable(reader->bev, EV_WRITE);
}

void gw_io_flush(gw_io_reader_t *reader) { gw_io_flush_with(reader, 0); }

void gw_io_flush_soon(gw_io_reader_t *reader) {
    if (!gw_io_queue(reader))
        gw_io_flush_with(reader, 0);
}

void gw_io_flush_last(gw_io_reader_t *reader) { gw_io_flush_with(reader, MSG_MORE); }

void gw_io_written(gw_io_reader_t *reader) {
    if (evbuffer_get_length(reader->output) == 0)
        bufferevent_disable(reader->bev, EV_WRITE);
}

void gw_io_read_again(gw_io_reader_t *reader) {
    if (reader->bev != NULL) {
        bufferevent_trigger(reader->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    reader->replay = true;
    event_active(reader->event, EV_READ, 0);
}

void gw_io_send_queued(gw_io_reader_t *reader) {
    if (reader->queued)
        gw_io_flush_with(reader, 0);
}

void gw_io_shutdown_write(gw_io_reader_t *reader) {
    gw_io_send_queued(reader);
    shutdown(reader->fd, SHUT_WR);
}

/* ---- the batch's rounds ---- */

/* What a batched send did: the rest waits for EV_WRITE, which also reports
 * an error. */
static void gw_io_batch_sent(gw_io_reader_t *reader, int result, size_t offered) {
    struct evbuffer *output = reader->output;
    if (result > 0)
        evbuffer_drain(output, (size_t)result);
    if (evbuffer_get_length(output) == 0)
        return;
    if (result > 0 && (size_t)result == offered) {
        /* More pieces than one send takes: the rest now. */
        gw_io_send_output(reader, 0);
        if (evbuffer_get_length(output) == 0)
            return;
    }
    gw_io_plain_wait_writable(reader, true);
}

/* Frees what gw_io_batch_start made of batch. */
static void gw_io_batch_free(gw_io_batch_t *batch) {
    if (batch->ring_open)
        io_uring_queue_exit(&batch->ring);
    if (batch->event != NULL)
        event_free(batch->event);
    free(batch->landing);
    free(batch);
}

/* Queued reads are left to the sockets' next readiness. */
static void gw_io_batch_drop_reads(gw_io_batch_t *batch) {
    gw_io_reader_t *reader;
    while ((reader = TAILQ_FIRST(&batch->reads)) != NULL)
        gw_io_unqueue_read(reader);
}

/* The ring failed (it never should): it goes, and this thread reads and
 * sends one system call each from now on. What the batch held is sent so;
 * its queued reads are left to the next readiness. */
static void gw_io_batch_fail(gw_io_batch_t *batch, int error) {
    log_warn("io_uring failed (%s): reads and sends are one system call each", strerror(error));
    gw_io_batch_drop_reads(batch);
    gw_io_batch = NULL;
    gw_io_reader_t *reader;
    while ((reader = TAILQ_FIRST(&batch->queue)) != NULL) {
        TAILQ_REMOVE(&batch->queue, reader, batch_link);
        reader->queued = false;
        gw_io_flush(reader);
    }
    gw_io_batch_free(batch);
}

/* Makes up to GW_IO_BATCH_SENDS queued sends with one io_uring_enter.
 * MSG_DONTWAIT makes each complete within the call, as a non-blocking send()
 * would (EAGAIN when the socket is full), so no buffer is in the kernel's
 * hands after it. Returns 0, or a negative errno when the ring failed. */
static int gw_io_batch_round(gw_io_batch_t *batch) {
    unsigned count = 0;
    gw_io_reader_t *reader;
    while (count < GW_IO_BATCH_SENDS && (reader = TAILQ_FIRST(&batch->queue)) != NULL) {
        TAILQ_REMOVE(&batch->queue, reader, batch_link);
        reader->queued = false;
        struct msghdr *message = &batch->messages[count];
        int pieces =
            gw_io_output_vectors(reader->output, batch->vectors[count], &batch->offered[count]);
        if (pieces == 0)
            continue;
        *message = (struct msghdr){.msg_iov = batch->vectors[count], .msg_iovlen = (size_t)pieces};
        struct io_uring_sqe *entry = io_uring_get_sqe(&batch->ring);
        io_uring_prep_sendmsg(entry, reader->fd, message, MSG_NOSIGNAL | MSG_DONTWAIT);
        entry->user_data = count;
        batch->readers[count] = reader;
        batch->results[count] = -EAGAIN;
        count++;
    }
    if (count == 0)
        return 0;
    int result = gw_io_batch_submit(batch, count);
    /* A send the ring did not make is left to EV_WRITE, as if it had found
     * the socket full. */
    for (unsigned i = 0; i < count; i++)
        gw_io_batch_sent(batch->readers[i], batch->results[i], batch->offered[i]);
    return result < 0 ? result : 0;
}

/* Makes every queued send, a round at a time. Returns 0, or a negative errno
 * when the ring failed. */
static int gw_io_batch_send_all(gw_io_batch_t *batch) {
    int error = 0;
    while (error == 0 && !TAILQ_EMPTY(&batch->queue))
        error = gw_io_batch_round(batch);
    return error;
}

/* Makes up to GW_IO_BATCH_READS queued reads with one io_uring_enter, each a
 * non-blocking recv (MSG_DONTWAIT) into a landing buffer, and moves their
 * readers to the deliveries. Returns 0, or a negative errno when the ring
 * failed (a read it did not make counts as EAGAIN: the socket stays readable,
 * and the next readiness reads it). */
static int gw_io_batch_read_round(gw_io_batch_t *batch) {
    unsigned count = 0;
    gw_io_reader_t *reader;
    while (count < GW_IO_BATCH_READS && (reader = TAILQ_FIRST(&batch->reads)) != NULL) {
        gw_io_unqueue_read(reader);
        size_t want = gw_io_read_want(reader);
        if (!reader->wanted || want == 0)
            continue; /* turned off since: the readiness stays for later */
        TAILQ_INSERT_TAIL(&batch->delivering, reader, read_link);
        reader->read_batch = GW_IO_READ_MADE;
        reader->read_slot = count;
        batch->results[count] = -EAGAIN;
        batch->read_want[count] = want;
        struct io_uring_sqe *entry = io_uring_get_sqe(&batch->ring);
        io_uring_prep_recv(entry, reader->fd, batch->landing[count], want, MSG_DONTWAIT);
        entry->user_data = count;
        count++;
    }
    if (count == 0)
        return 0;
    int result = gw_io_batch_submit(batch, count);
    return result < 0 ? result : 0;
}

/* The reads of the last round reach their owners, whose callbacks may free
 * other connections of the round (they leave the deliveries as they go). */
static void gw_io_batch_deliver(gw_io_batch_t *batch) {
    gw_io_reader_t *reader;
    while ((reader = TAILQ_FIRST(&batch->delivering)) != NULL) {
        gw_io_unqueue_read(reader);
        int result = batch->results[reader->read_slot];
        if (result == -EAGAIN || result == -EINTR)
            continue;
        const char *landed = batch->landing[reader->read_slot];
        if (result > 0)
            VALGRIND_MAKE_MEM_DEFINED(landed, (size_t)result);
        else if (result < 0)
            errno = -result;
        ssize_t got = gw_io_take_landed(reader, landed, result < 0 ? -1 : result,
                                        batch->read_want[reader->read_slot]);
        if (!reader->wanted && got >= 0) {
            /* An earlier callback turned reading off: the bytes wait in the
             * input until it is on again, and an end of stream is read again
             * then. */
            reader->held = got > 0;
            continue;
        }
        gw_io_reader_deliver(reader, got);
    }
}

/* After the loop turn's callbacks: the queued reads, their callbacks, then
 * the sends queued so far. */
static void gw_io_batch_run(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_io_batch_t *batch = arg;
    int error = 0;
    while (error == 0 && !TAILQ_EMPTY(&batch->reads)) {
        error = gw_io_batch_read_round(batch);
        gw_io_batch_deliver(batch);
    }
    if (error == 0)
        error = gw_io_batch_send_all(batch);
    batch->scheduled = false;
    if (error < 0)
        gw_io_batch_fail(batch, -error);
}

int gw_io_batch_start(struct event_base *base) {
    if (gw_io_batch != NULL)
        return 0;
    gw_io_batch_t *batch = calloc(1, sizeof(*batch));
    if (batch == NULL)
        return -1;
    TAILQ_INIT(&batch->queue);
    TAILQ_INIT(&batch->reads);
    TAILQ_INIT(&batch->delivering);
    batch->landing = malloc(GW_IO_BATCH_READS * sizeof(*batch->landing));
    batch->event = event_new(base, -1, 0, gw_io_batch_run, batch);
    int error = ENOMEM;
    if (batch->landing == NULL || batch->event == NULL)
        goto fail;
    error = -io_uring_queue_init(GW_IO_BATCH_SENDS, &batch->ring, 0);
    if (error > 0)
        goto fail;
    batch->ring_open = true;
    gw_io_batch = batch;
    return 0;
fail:
    gw_io_batch_free(batch);
    errno = error;
    return -1;
}

void gw_io_batch_stop(void) {
    gw_io_batch_t *batch = gw_io_batch;
    if (batch == NULL)
        return;
    /* The loop is over: no reads, but what was written goes out. */
    gw_io_batch_drop_reads(batch);
    int error = gw_io_batch_send_all(batch);
    if (error < 0) {
        gw_io_batch_fail(batch, -error);
        return;
    }
    gw_io_batch = NULL;
    gw_io_batch_free(batch);
}

/* ---- plain sockets the reader owns ---- */

/* A dial ended (connected, refused, or out of time): tells on_event. */
static void gw_io_plain_dialled(gw_io_reader_t *reader, short events) {
    reader->dialling = false;
    gw_io_plain_wait_writable(reader, false); /* and the dial's timeout */
    if (events & EV_TIMEOUT) {
        errno = ETIMEDOUT;
        reader->on_event(NULL, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT, reader->callback_arg);
        return;
    }
    int error = reader->dial_error;
    socklen_t length = sizeof(error);
    if (error == 0 && getsockopt(reader->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
        error = errno;
    if (error != 0) {
        errno = error;
        reader->on_event(NULL, BEV_EVENT_WRITING | BEV_EVENT_ERROR, reader->callback_arg);
        return;
    }
    if (evbuffer_get_length(reader->output) > 0)
        gw_io_flush(reader); /* written while dialling */
    reader->on_event(NULL, BEV_EVENT_CONNECTED, reader->callback_arg);
}

/* A plain socket is writable (or its dial ended): sends what waits, then
 * tells the owner as libevent's bufferevent would: on_event for an error,
 * on_write once the output is down to write_low. Nothing is touched after
 * a callback. */
static void gw_io_plain_writable(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    gw_io_reader_t *reader = arg;
    if (reader->dialling) {
        gw_io_plain_dialled(reader, events);
        return;
    }
    size_t before = evbuffer_get_length(reader->output);
    if (gw_io_send_output(reader, 0) < 0) {
        int error = errno;
        gw_io_plain_wait_writable(reader, false);
        errno = error;
        reader->on_event(NULL, BEV_EVENT_WRITING | BEV_EVENT_ERROR, reader->callback_arg);
        return;
    }
    size_t left = evbuffer_get_length(reader->output);
    if (left == 0)
        gw_io_plain_wait_writable(reader, false);
    if (left < before && left <= reader->write_low)
        reader->on_write(NULL, reader->callback_arg);
}

int gw_io_plain_init(gw_io_reader_t *reader, struct event_base *base, int fd) {
    *reader = (gw_io_reader_t){.fd = fd, .input = evbuffer_new(), .output = evbuffer_new()};
    if (reader->input == NULL || reader->output == NULL)
        goto fail;
    reader->event = event_new(base, fd, EV_READ | EV_PERSIST, gw_io_reader_ready, reader);
    reader->write_event = event_new(base, fd, EV_WRITE | EV_PERSIST, gw_io_plain_writable, reader);
    if (reader->event == NULL || reader->write_event == NULL)
        goto fail;
    return 0;
fail:
    gw_io_plain_free(reader, false);
    return -1;
}

void gw_io_plain_connect(gw_io_reader_t *reader, const struct sockaddr *address,
                         socklen_t address_length, uint64_t timeout_ms) {
    reader->dialling = true;
    if (connect(reader->fd, address, address_length) < 0 && errno != EINPROGRESS) {
        /* Refused at once (loopback): reported from the loop all the same. */
        reader->dial_error = errno;
        event_active(reader->write_event, EV_WRITE, 0);
        return;
    }
    struct timeval timeout = clock_timeval(timeout_ms);
    event_add(reader->write_event, &timeout);
    reader->writing = true;
}

void gw_io_plain_free(gw_io_reader_t *reader, bool keep_socket) {
    if (reader->queued) {
        /* As if the flush had sent it: what the socket takes now. */
        gw_io_unqueue(reader);
        gw_io_send_output(reader, 0);
    }
    if (reader->read_batch != GW_IO_READ_NONE)
        gw_io_unqueue_read(reader);
    if (reader->event != NULL)
        event_free(reader->event);
    if (reader->write_event != NULL)
        event_free(reader->write_event);
    if (reader->input != NULL)
        evbuffer_free(reader->input); /* and its callback */
    if (reader->output != NULL)
        evbuffer_free(reader->output);
    if (reader->fd >= 0 && !keep_socket)
        close(reader->fd);
    *reader = (gw_io_reader_t){.fd = -1};
}

/* An empty buffer to the stock, or freed when it is full. */
static void gw_io_stock_put(struct evbuffer *buffer) {
    if (gw_io_stock_count < GW_IO_STOCK)
        gw_io_stock[gw_io_stock_count++] = buffer;
    else
        evbuffer_free(buffer);
}

/* An empty buffer from the stock (the warmest), or a new one; NULL when
 * memory is exhausted. */
static struct evbuffer *gw_io_stock_take(void) {
    return gw_io_stock_count > 0 ? gw_io_stock[--gw_io_stock_count] : evbuffer_new();
}

bool gw_io_plain_park(gw_io_reader_t *reader) {
    if (reader->bev != NULL || reader->input == NULL || reader->on_drain != NULL ||
        reader->queued || reader->read_batch != GW_IO_READ_NONE || reader->held || reader->replay ||
        reader->dialling || evbuffer_get_length(reader->input) > 0 ||
        evbuffer_get_length(reader->output) > 0)
        return false;
    gw_io_stock_put(reader->input);
    gw_io_stock_put(reader->output);
    reader->input = reader->output = NULL;
    return true;
}

int gw_io_plain_unpark(gw_io_reader_t *reader) {
    if (reader->input == NULL)
        reader->input = gw_io_stock_take();
    if (reader->output == NULL)
        reader->output = gw_io_stock_take();
    return reader->input != NULL && reader->output != NULL ? 0 : -1;
}

void gw_io_stock_clear(void) {
    while (gw_io_stock_count > 0)
        evbuffer_free(gw_io_stock[--gw_io_stock_count]);
}

struct gw_io_splice {
    int from;
    int to;
    int pipe_read;
    int pipe_write;
    size_t pipe_capacity;
    size_t in_pipe;       /* read from the source, not yet written */
    uint64_t to_read;     /* bytes the source still owes */
    uint64_t moved;       /* bytes written to the destination */
    struct event *readable;
    struct event *writable;
    gw_io_splice_done_cb done;
    void *arg;
};

/* Moves what it can without blocking; returns 0 when the move is complete,
 * EAGAIN when it waits (with the events it needs added), else an errno. */
static int gw_io_splice_step(gw_io_splice_t *move) {
    for (;;) {
        while (move->in_pipe > 0) {
            ssize_t written = splice(move->pipe_read, NULL, move->to, NULL, move->in_pipe,
                                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (written == 0)
                return EPIPE;
            if (written < 0) {
                if (errno != EAGAIN)
                    return errno;
                /* The destination is full: wait for it, and read no more
                 * until it takes what the pipe holds. */
                event_del(move->readable);
                event_add(move->writable, NULL);
                return EAGAIN;
            }
            move->in_pipe -= (size_t)written;
            move->moved += (uint64_t)written;
        }
        if (move->to_read == 0)
            return 0;
        size_t want = move->pipe_capacity;
        if (want > move->to_read)
            want = (size_t)move->to_read;
        ssize_t got = splice(move->from, NULL, move->pipe_write, NULL, want,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (got == 0)
            return EPIPE; /* the source ended before its length */
        if (got < 0) {
            if (errno != EAGAIN)
                return errno;
            event_del(move->writable);
            event_add(move->readable, NULL);
            return EAGAIN;
        }
        move->in_pipe = (size_t)got;
        move->to_read -= (uint64_t)got;
    }
}

/* Either socket is ready: step, and report the end.
 * Nothing is touched after done, which frees the splice. */
static void gw_io_splice_ready(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_io_splice_t *move = arg;
    int error = gw_io_splice_step(move);
    if (error == EAGAIN)
        return;
    event_del(move->readable);
    event_del(move->writable);
    move->done(move, error, move->arg);
}

gw_io_splice_t *gw_io_splice_start(struct event_base *base, int from, int to, uint64_t length,
                                   gw_io_splice_done_cb done, void *arg) {
    gw_io_splice_t *move = calloc(1, sizeof(*move));
    if (move == NULL)
        return NULL;
    move->from = from;
    move->to = to;
    move->to_read = length;
    move->done = done;
    move->arg = arg;
    int pipe_ends[2];
    move->pipe_read = -1;
    move->pipe_write = -1;
    if (pipe2(pipe_ends, O_NONBLOCK | O_CLOEXEC) < 0)
        goto fail;
    move->pipe_read = pipe_ends[0];
    move->pipe_write = pipe_ends[1];
    /* A larger pipe moves more per call; the default (64 KiB) if refused. */
    int capacity = fcntl(move->pipe_write, F_SETPIPE_SZ, GW_IO_PIPE_SIZE);
    if (capacity <= 0)
        capacity = fcntl(move->pipe_write, F_GETPIPE_SZ);
    if (capacity <= 0)
        goto fail;
    move->pipe_capacity = (size_t)capacity;
    move->readable = event_new(base, from, EV_READ | EV_PERSIST, gw_io_splice_ready, move);
    move->writable = event_new(base, to, EV_WRITE | EV_PERSIST, gw_io_splice_ready, move);
    if (move->readable == NULL || move->writable == NULL)
        goto fail;
    /* The first step runs from the loop, as if the source were readable. */
    event_active(move->readable, EV_READ, 0);
    return move;
fail:
    {
        int saved = errno;
        gw_io_splice_free(move);
        errno = saved ? saved : ENOMEM;
    }
    return NULL;
}

uint64_t gw_io_splice_moved(const gw_io_splice_t *move) { return move->moved; }

void gw_io_splice_free(gw_io_splice_t *move) {
    if (move == NULL)
        return;
    if (move->readable != NULL)
        event_free(move->readable);
    if (move->writable != NULL)
        event_free(move->writable);
    if (move->pipe_read >= 0)
        close(move->pipe_read);
    if (move->pipe_write >= 0)
        close(move->pipe_write);
    free(move);
}

/* What TLS wrote goes out once the current callbacks are done, so the records
 * of one response (a large one takes several) leave in one send. Nothing is
 * touched after a callback: each may free socket_io. */
static void gw_io_socket_flush(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_io_socket_t *socket_io = arg;
    gw_io_reader_t *reader = &socket_io->reader;
    socket_io->flush_scheduled = false;
    gw_io_flush(reader);
    gw_io_written(reader);
    size_t left = evbuffer_get_length(reader->output);
    if (socket_io->drained != NULL) {
        if (left == 0) {
            void (*drained)(void *) = socket_io->drained;
            socket_io->drained = NULL;
            drained(socket_io->drained_arg);
        }
        return;
    }
    /* As libevent's own write would at the low watermark: TLS may be
     * holding plaintext back until there is room. */
    if (left <= socket_io->high / 2) {
        bufferevent_data_cb on_write;
        void *callback_arg;
        bufferevent_getcb(reader->bev, NULL, &on_write, NULL, &callback_arg);
        if (on_write != NULL)
            on_write(reader->bev, callback_arg);
    }
}

static void gw_io_socket_schedule_flush(gw_io_socket_t *socket_io) {
    if (!socket_io->flush_scheduled) {
        socket_io->flush_scheduled = true;
        event_active(socket_io->flush, EV_WRITE, 0);
    }
}

/* TLS added to the output (to be sent), or a send took from it (TLS may be
 * waiting for that room, a drained callback for it to be empty): the flush
 * from the loop does each. */
static void gw_io_socket_output_changed(struct evbuffer *buffer,
                                        const struct evbuffer_cb_info *info, void *arg) {
    gw_io_socket_t *socket_io = arg;
    if (info->n_deleted > 0 && evbuffer_get_length(buffer) == 0)
        gw_io_written(&socket_io->reader); /* libevent's write emptied it */
    gw_io_socket_schedule_flush(socket_io);
}

int gw_io_socket_init(gw_io_socket_t *socket_io, struct bufferevent *underlying, size_t high) {
    *socket_io = (gw_io_socket_t){.high = high};
    /* The filter enabled libevent's own reads and writes of underlying. */
    bufferevent_disable(underlying, EV_READ | EV_WRITE);
    /* TLS writes into underlying up to high, then holds plaintext back in
     * its own output (which the gateway's backpressure watches); it goes on
     * when libevent's write has drained underlying to half. */
    bufferevent_setwatermark(underlying, EV_WRITE, high / 2, high);
    if (gw_io_reader_init(&socket_io->reader, underlying, true) < 0)
        goto fail;
    socket_io->flush = event_new(bufferevent_get_base(underlying), -1, 0, gw_io_socket_flush,
                                socket_io);
    if (socket_io->flush == NULL)
        goto fail;
    socket_io->on_output = evbuffer_add_cb(bufferevent_get_output(underlying),
                                           gw_io_socket_output_changed, socket_io);
    if (socket_io->on_output == NULL)
        goto fail;
    gw_io_read_watermark(&socket_io->reader, high);
    gw_io_read_enable(&socket_io->reader);
    /* Anything TLS already wrote goes out the same way. */
    if (evbuffer_get_length(bufferevent_get_output(underlying)) > 0)
        gw_io_socket_schedule_flush(socket_io);
    return 0;
fail:
    gw_io_socket_free(socket_io);
    return -1;
}

void gw_io_socket_free(gw_io_socket_t *socket_io) {
    if (socket_io->on_output != NULL) {
        /* What TLS wrote last (an alert, a close_notify) leaves if the
         * socket takes it now; the filter is about to be freed. */
        if (socket_io->flush_scheduled)
            gw_io_send_output(&socket_io->reader, 0);
        evbuffer_remove_cb_entry(socket_io->reader.output, socket_io->on_output);
        socket_io->on_output = NULL;
    }
    if (socket_io->flush != NULL) {
        event_free(socket_io->flush);
        socket_io->flush = NULL;
    }
    gw_io_reader_free(&socket_io->reader);
    socket_io->drained = NULL;
}

void gw_io_socket_send(gw_io_socket_t *socket_io) {
    if (socket_io->flush != NULL)
        gw_io_send_output(&socket_io->reader, 0);
}

bool gw_io_socket_when_drained(gw_io_socket_t *socket_io, void (*drained)(void *arg),
                               void *arg) {
    if (socket_io->flush == NULL || evbuffer_get_length(socket_io->reader.output) == 0)
        return false;
    socket_io->drained = drained;
    socket_io->drained_arg = arg;
    return true;
}
