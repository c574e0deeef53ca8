/* Socket I/O beside libevent's bufferevents, for plain sockets: bigger reads and writes without a loop turn. */
#include "gateway/io.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/uio.h>

/* One read at most: large enough for a body to move in few calls. */
enum { GW_IO_READ_CHUNK = 64 * 1024 };
/* What libevent 2.1 reads per call (EVBUFFER_MAX_READ): less than that in the
 * input means the socket was drained, and another read would only fail. */
enum { GW_IO_LIBEVENT_READ_MAX = 4096 };

size_t gw_io_read_more(struct bufferevent *bev, size_t limit) {
    struct evbuffer *input = bufferevent_get_input(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    size_t total = 0;
    if (evbuffer_get_length(input) < GW_IO_LIBEVENT_READ_MAX)
        return 0;
    /* A socket bufferevent freezes the end of its input to everyone but
     * itself; this reads on its behalf. */
    evbuffer_unfreeze(input, 0);
    while (fd >= 0) {
        size_t held = evbuffer_get_length(input);
        if (held >= limit)
            break;
        size_t want = limit - held;
        if (want > GW_IO_READ_CHUNK)
            want = GW_IO_READ_CHUNK;
        struct evbuffer_iovec space[2];
        int count = evbuffer_reserve_space(input, (ev_ssize_t)want, space, 2);
        if (count <= 0)
            break;
        struct iovec vectors[2];
        size_t reserved = 0;
        for (int i = 0; i < count; i++) {
            if (space[i].iov_len > want - reserved)
                space[i].iov_len = want - reserved;
            vectors[i].iov_base = space[i].iov_base;
            vectors[i].iov_len = space[i].iov_len;
            reserved += space[i].iov_len;
        }
        ssize_t got = readv(fd, vectors, count);
        if (got <= 0) {
            evbuffer_commit_space(input, space, 0);
            break;
        }
        size_t remaining = (size_t)got;
        for (int i = 0; i < count; i++) {
            if (space[i].iov_len > remaining)
                space[i].iov_len = remaining;
            remaining -= space[i].iov_len;
        }
        evbuffer_commit_space(input, space, count);
        total += (size_t)got;
        if ((size_t)got < reserved)
            break; /* the socket is empty for now */
    }
    evbuffer_freeze(input, 0);
    return total;
}

void gw_io_flush(struct bufferevent *bev, bool plain) {
    struct evbuffer *output = bufferevent_get_output(bev);
    if (plain) {
        evutil_socket_t fd = bufferevent_getfd(bev);
        /* The start of a socket bufferevent's output is frozen to everyone
         * but itself; this writes on its behalf. */
        evbuffer_unfreeze(output, 1);
        while (fd >= 0 && evbuffer_get_length(output) > 0) {
            if (evbuffer_write(output, fd) <= 0)
                break; /* full, or an error libevent will report */
        }
        evbuffer_freeze(output, 1);
        if (evbuffer_get_length(output) == 0)
            return;
    }
    bufferevent_enable(bev, EV_WRITE);
}

void gw_io_written(struct bufferevent *bev, bool plain) {
    if (plain && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}
