/* An HTTP/2 client connection (nghttp2): each stream runs one exchange. */
#ifndef SGW_GATEWAY_HTTP2_H
#define SGW_GATEWAY_HTTP2_H

#include <stdbool.h>
#include <stddef.h>

struct gw_conn;
struct gw_worker;

/* The HTTP/2 side of a client connection; the gw_conn keeps the transport,
 * the timer and the address, and hands its events here. */
typedef struct gw_h2 gw_h2_t;

/* The client preface of prior-knowledge h2c (RFC 9113 §3.4). */
#define GW_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
enum { GW_H2_PREFACE_LENGTH = sizeof(GW_H2_PREFACE) - 1 };

/* Turns conn into an HTTP/2 connection and reads what its input holds.
 * Returns 0, or -1 when memory is exhausted (the caller closes conn). */
int gw_h2_start(struct gw_conn *conn);

/* The transport's input grew / its output drained to the low mark. */
void gw_h2_readable(gw_h2_t *h2);
void gw_h2_writable(gw_h2_t *h2);

/* The connection's deadline passed: idle long enough, it closes. */
void gw_h2_timeout(gw_h2_t *h2);

/* SIGTERM: GOAWAY in two steps; the connection closes once its streams end. */
void gw_h2_drain(gw_h2_t *h2);

/* The connection closes: every stream's exchange is finished and logged, the
 * session freed. Idempotent. */
void gw_h2_close(gw_h2_t *h2);

/* Frees what gw_h2_close left (the memory its handlers may still touch). */
void gw_h2_free(gw_h2_t *h2);

/* Frees the ended streams worker keeps for reuse; before its event base goes. */
void gw_h2_streams_kept_free(struct gw_worker *worker);

#endif
