/* Socket I/O beside libevent's bufferevents, for plain sockets: bigger reads and writes without a loop turn. */
#ifndef SGW_GATEWAY_IO_H
#define SGW_GATEWAY_IO_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;

/* Reads what a plain socket bufferevent's socket holds into its input buffer
 * until it holds limit bytes; libevent 2.1 reads at most 4 KiB per call and
 * asks FIONREAD first, which costs a large body hundreds of system calls.
 * Only runs when the input holds a full libevent read (else the socket was
 * drained). Returns the bytes read; an end of file or an error is left for
 * libevent's own next read to report. */
size_t gw_io_read_more(struct bufferevent *bev, size_t limit);

/* Writes a plain socket bufferevent's output now, and enables EV_WRITE only
 * when the socket cannot take it all: libevent would otherwise add and remove
 * an EPOLLOUT registration and wait a loop turn for every response. For a TLS
 * bufferevent (plain false) it only enables EV_WRITE. */
void gw_io_flush(struct bufferevent *bev, bool plain);

/* A plain bufferevent's write callback ran: with its output empty, EV_WRITE
 * goes off again so the next flush writes directly. */
void gw_io_written(struct bufferevent *bev, bool plain);

#endif
