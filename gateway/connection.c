/* An HTTP/1.1 client connection: its requests one after another, a tunnel after 101. */
#include "gateway/connection.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/error_page.h"
#include "gateway/http2.h"
#include "gateway/proxy_protocol.h"
#include "gateway/upstream.h"
#include "gateway/worker.h"
#include "util/clock.h"
#include "util/log.h"

/* How long and how much a closing connection reads before it closes anyway. */
enum { GW_LINGER_MS = 2000, GW_LINGER_MAX_BYTES = 1024 * 1024 };

static const char GW_MESSAGE_BAD_REQUEST[] = "Bad request";
static const char GW_MESSAGE_HEAD_TOO_LARGE[] = "Request header too large";
static const char GW_MESSAGE_HEAD_TIMEOUT[] = "Request header timeout";
static const char GW_MESSAGE_LOOP[] = "Loop detected";
static const char GW_MESSAGE_NO_MEMORY[] = "Out of memory";

static const gw_transport_handler_t gw_conn_handler;
static void gw_conn_timer(evutil_socket_t fd, short events, void *arg);
static const gw_transport_handler_t gw_conn_tunnel_upstream_handler;
static const gw_exchange_side_t gw_conn_side;

static const char *const gw_conn_state_names[] = {
    [GW_CONN_READING_PROXY] = "reading PROXY header",
    [GW_CONN_READING_HEAD] = "reading head",
    [GW_CONN_EXCHANGE] = "exchange",
    [GW_CONN_TUNNEL] = "tunnel",
    [GW_CONN_H2] = "HTTP/2",
    [GW_CONN_CLOSING] = "closing",
    [GW_CONN_CLOSED] = "closed",
};

/* Every change of state passes here. */
static void gw_conn_set_state(gw_conn_t *conn, gw_conn_state_t state) {
    log_debug("client %s: %s -> %s", conn->address_text, gw_conn_state_names[conn->state],
              gw_conn_state_names[state]);
    conn->state = state;
}

/* ---- life cycle: handlers run between enter and leave; a close requested
 * meanwhile frees the memory when the last of them returns ---- */

void gw_conn_enter(gw_conn_t *conn) { conn->handlers++; }

/* The memory of a closed connection, once no handler of it runs. */
static void gw_conn_free(gw_conn_t *conn) {
    gw_h2_free(conn->h2);
    free(conn);
}

void gw_conn_leave(gw_conn_t *conn) {
    if (--conn->handlers == 0 && conn->state == GW_CONN_CLOSED)
        gw_conn_free(conn);
}

void gw_conn_close(gw_conn_t *conn) {
    if (conn->state == GW_CONN_CLOSED)
        return;
    if (conn->state == GW_CONN_TUNNEL)
        GW_METRIC_ADD(&conn->worker->metrics, tunnels, -1);
    gw_conn_set_state(conn, GW_CONN_CLOSED);
    gw_h2_close(conn->h2);
    gw_exchange_finish(&conn->exchange);
    gw_exchange_reset(&conn->exchange);
    GW_METRIC_ADD(&conn->worker->metrics, client_connections, -1);
    if (conn->timer != NULL) {
        event_free(conn->timer);
        conn->timer = NULL;
    }
    gw_transport_close(&conn->transport);
    arena_free(&conn->arena);
    gw_worker_t *worker = conn->worker;
    LIST_REMOVE(conn, link);
    gw_worker_client_closed(worker);
    if (conn->handlers == 0)
        gw_conn_free(conn);
}

/* ---- deadlines ---- */

/* Sets the current state's deadline, milliseconds from now. The timer event
 * is only ever moved earlier: a later deadline is found when the timer fires
 * early and re-arms itself, which saves an event_add per state change. */
void gw_conn_set_deadline(gw_conn_t *conn, uint64_t milliseconds) {
    conn->deadline_ms = clock_coarse_ms() + milliseconds;
    if (conn->timer_armed_ms != 0 && conn->timer_armed_ms <= conn->deadline_ms)
        return;
    struct timeval delay = clock_timeval(milliseconds);
    evtimer_add(conn->timer, &delay);
    conn->timer_armed_ms = conn->deadline_ms;
}

/* The current state has no deadline; a pending timer will find none. */
void gw_conn_clear_deadline(gw_conn_t *conn) { conn->deadline_ms = 0; }

/* ---- between requests ---- */

static void gw_conn_reset_request(gw_conn_t *conn) {
    /* Between requests the connection holds no block (an idle keep-alive
     * connection costs half as much); the next request takes one from the
     * worker's pool, where this one goes. */
    arena_free(&conn->arena);
    gw_head_reset(&conn->request_head, &conn->arena);
    gw_http1_request_init(&conn->request_parser, &conn->request_head);
    conn->request_head_bytes = 0;
    conn->trailer_bytes = 0;
    gw_exchange_reset(&conn->exchange);
}

static void gw_conn_linger(gw_conn_t *conn);

static void gw_conn_linger_after_drain(void *arg) {
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    gw_conn_linger(conn);
    gw_conn_leave(conn);
}

/* The last response is in the kernel: half-close and read until the client
 * closes too. Closing with unread bytes would make the kernel send a reset,
 * which can destroy the response before the client reads it (RFC 9112 §9.6).
 * When the whole request was read and nothing else arrived, there is nothing
 * to reset over, and the connection closes at once (as nginx's lingering_close
 * on: it lingers only when more data may come). */
static void gw_conn_linger(gw_conn_t *conn) {
    gw_transport_t *transport = &conn->transport;
    /* Only a raw socket: TLS may still hold encrypted bytes below its (empty)
     * output, which its shutdown flushes. */
    if (gw_transport_can(transport, GW_TRANSPORT_RAW) &&
        conn->exchange.request_state == GW_REQUEST_DONE &&
        evbuffer_get_length(gw_transport_input(transport)) == 0) {
        gw_conn_close(conn);
        return;
    }
    /* The last records must reach the kernel before the close_notify and
     * the close: closing would drop them. */
    if (gw_transport_when_drained(transport, gw_conn_linger_after_drain, conn))
        return;
    gw_transport_shutdown_write(transport);
    conn->lingering = true;
    gw_transport_read_limit(transport, 0);
    gw_transport_read(transport, true);
    gw_conn_set_deadline(conn, GW_LINGER_MS);
}

void gw_conn_close_after_flush(gw_conn_t *conn) {
    gw_conn_set_state(conn, GW_CONN_CLOSING);
    gw_transport_read(&conn->transport, false);
    struct evbuffer *output = gw_transport_output(&conn->transport);
    if (evbuffer_get_length(output) > 0) {
        gw_transport_write_low(&conn->transport, 0);
        gw_transport_flush(&conn->transport, true);
        /* A plain socket may take it all now (what a soon flush left for
         * the batch, say): no write callback comes then. */
        if (!gw_transport_can(&conn->transport, GW_TRANSPORT_RAW) ||
            evbuffer_get_length(output) > 0)
            return;
    }
    gw_conn_linger(conn);
}

/* Waits for the next request on a kept-alive connection. */
static void gw_conn_wait_next_request(gw_conn_t *conn) {
    gw_conn_reset_request(conn);
    gw_conn_set_state(conn, GW_CONN_READING_HEAD);
    gw_conn_set_deadline(conn, conn->worker->config->client_idle_timeout_ms);
    gw_transport_write_low(&conn->transport, 0);
    gw_transport_read(&conn->transport, true);
    /* Pipelined bytes may be waiting already; parse them from the loop, not
     * from here, so a long pipeline never deepens the stack. */
    if (evbuffer_get_length(gw_transport_input(&conn->transport)) > 0)
        gw_transport_read_again(&conn->transport);
}

/* The request's response is complete in the output: log it, and go on. */
static void gw_conn_end_request(gw_conn_t *conn, bool keep_alive) {
    keep_alive = keep_alive && !conn->worker->draining;
    /* A connection that closes now sends its FIN with the last bytes. */
    if (keep_alive)
        gw_transport_flush_soon(&conn->transport);
    else
        gw_transport_flush(&conn->transport, true);
    gw_exchange_finish(&conn->exchange);
    gw_conn_clear_deadline(conn);
    if (keep_alive)
        gw_conn_wait_next_request(conn);
    else
        gw_conn_close_after_flush(conn);
}

/* ---- the exchange's side ---- */

static void gw_side_enter(void *arg) { gw_conn_enter(arg); }

static void gw_side_leave(void *arg) { gw_conn_leave(arg); }

static void gw_side_deadline(void *arg, uint64_t milliseconds) {
    if (milliseconds == 0)
        gw_conn_clear_deadline(arg);
    else
        gw_conn_set_deadline(arg, milliseconds);
}

static void gw_conn_forward_request(gw_conn_t *conn);

static void gw_side_request_ready(void *arg) {
    gw_conn_t *conn = arg;
    gw_transport_read(&conn->transport, true);
    gw_conn_forward_request(conn);
}

static struct evbuffer *gw_side_response_output(void *arg, size_t *room) {
    gw_conn_t *conn = arg;
    struct evbuffer *output = gw_transport_output(&conn->transport);
    size_t queued = evbuffer_get_length(output);
    if (queued >= GW_BUFFER_HIGH) {
        /* Full: write what the socket takes; wait only if it stays full. */
        gw_transport_flush(&conn->transport, false);
        queued = evbuffer_get_length(output);
    }
    *room = queued >= GW_BUFFER_HIGH ? 0 : GW_BUFFER_HIGH - queued;
    return output;
}

static int gw_side_response_head(void *arg, const gw_head_t *head, int status, bool final,
                                 bool close) {
    gw_conn_t *conn = arg;
    char *text;
    size_t length;
    if (gw_http1_response_head_write(head, status, final && close, &conn->arena, &text, &length) <
        0)
        return -1;
    evbuffer_add(gw_transport_output(&conn->transport), text, length);
    gw_exchange_count_sent(&conn->exchange, length);
    return 0;
}

static void gw_side_hold(void *arg) { gw_transport_hold(&((gw_conn_t *)arg)->transport); }

static void gw_side_flush(void *arg) { gw_transport_flush_soon(&((gw_conn_t *)arg)->transport); }

static void gw_side_response_wait(void *arg) {
    gw_transport_write_low(&((gw_conn_t *)arg)->transport, GW_BUFFER_LOW);
}

static int gw_side_splice_fd(void *arg) {
    gw_conn_t *conn = arg;
    return gw_transport_can(&conn->transport, GW_TRANSPORT_RAW) ? gw_transport_fd(&conn->transport)
                                                                : -1;
}

/* Sends a response of the gateway's own: JSON, or a page for a browser. */
static void gw_side_error(void *arg, int status, const char *message, bool keep_alive) {
    gw_conn_t *conn = arg;
    const gw_head_t *head = &conn->request_head;
    const gw_exchange_t *exchange = &conn->exchange;
    gw_error_extra_t extra;
    gw_exchange_error_extra(exchange, head, &extra);
    int length = gw_error_render(gw_transport_output(&conn->transport), status, message,
                                 exchange->routed ? exchange->target.sandbox_id : NULL,
                                 exchange->routed ? exchange->target.port : 0,
                                 head->head_complete && gw_error_head_wants_html(head),
                                 !keep_alive, &extra);
    if (length > 0)
        gw_exchange_count_sent(&conn->exchange, (size_t)length);
    gw_conn_end_request(conn, keep_alive);
}

static void gw_side_respond(void *arg, int status, const gw_field_t *fields, size_t count,
                            bool keep_alive) {
    gw_conn_t *conn = arg;
    struct evbuffer *output = gw_transport_output(&conn->transport);
    size_t before = evbuffer_get_length(output);
    evbuffer_add_printf(output, "HTTP/1.1 %d %s\r\n", status, gw_status_reason(status));
    for (size_t i = 0; i < count; i++)
        evbuffer_add_printf(output, "%s: %.*s\r\n", fields[i].name, (int)fields[i].value_length,
                            fields[i].value);
    if (status != 204)
        evbuffer_add(output, "Content-Length: 0\r\n", 19);
    if (keep_alive)
        evbuffer_add(output, "\r\n", 2);
    else
        evbuffer_add(output, "Connection: close\r\n\r\n", 21);
    gw_exchange_count_sent(&conn->exchange, evbuffer_get_length(output) - before);
    gw_conn_end_request(conn, keep_alive);
}

static void gw_side_finished(void *arg, bool keep_alive) { gw_conn_end_request(arg, keep_alive); }

static void gw_side_abort(void *arg) { gw_conn_close(arg); }

static void gw_side_upgraded(void *arg, gw_upstream_t *upstream) {
    gw_conn_t *conn = arg;
    /* A tunnel may stay open for hours: the request's memory goes back. */
    gw_head_reset(&conn->request_head, NULL);
    arena_free(&conn->arena);
    gw_conn_set_state(conn, GW_CONN_TUNNEL);
    GW_METRIC_ADD(&conn->worker->metrics, tunnels, 1);
    gw_conn_set_deadline(conn, conn->worker->config->tunnel_idle_timeout_ms);
    gw_transport_set_handler(&upstream->transport, &gw_conn_tunnel_upstream_handler, conn);
    gw_tunnel_start(&conn->tunnel, &conn->transport, &upstream->transport,
                    &conn->exchange.bytes_sent, &conn->exchange.bytes_received);
}

static const gw_exchange_side_t gw_conn_side = {
    .enter = gw_side_enter,
    .leave = gw_side_leave,
    .deadline = gw_side_deadline,
    .request_ready = gw_side_request_ready,
    .response_output = gw_side_response_output,
    .response_head = gw_side_response_head,
    .hold = gw_side_hold,
    .flush = gw_side_flush,
    .response_wait = gw_side_response_wait,
    .splice_fd = gw_side_splice_fd,
    .error = gw_side_error,
    .respond = gw_side_respond,
    .finished = gw_side_finished,
    .abort = gw_side_abort,
    .upgraded = gw_side_upgraded,
};

/* ---- the request ---- */

static const struct {
    int status;
    const char *message;
} gw_request_refusals[] = {
    [GW_REQUEST_MALFORMED] = {400, GW_MESSAGE_BAD_REQUEST},
    [GW_REQUEST_NO_AUTHORITY] = {400, "Invalid host"},
    [GW_REQUEST_LOOP] = {508, GW_MESSAGE_LOOP},
    [GW_REQUEST_NO_MEMORY] = {500, GW_MESSAGE_NO_MEMORY},
};

/* The request head is complete: check it and hand it to the exchange. */
static void gw_conn_head_complete(gw_conn_t *conn) {
    gw_conn_clear_deadline(conn);
    gw_conn_set_state(conn, GW_CONN_EXCHANGE);
    const gw_server_t *server = conn->worker->server;
    gw_request_t request;
    gw_request_verdict_t verdict =
        gw_http1_request_check(&conn->request_head, &conn->request_parser, server->instance,
                               server->instance_length, &request);
    if (verdict != GW_REQUEST_OK) {
        if (verdict == GW_REQUEST_MALFORMED)
            request.keep_alive = false;
        gw_exchange_refuse(&conn->exchange, &conn->request_head, &request,
                           gw_request_refusals[verdict].status,
                           gw_request_refusals[verdict].message);
        return;
    }
    /* Reading stays on while routing: what arrives meanwhile waits in the
     * input (its read limit bounds it), with no epoll change. */
    gw_exchange_start(&conn->exchange, &conn->request_head, &request);
}

/* Answers a head that cannot be read on: 400, 408 or 431, then close. */
static void gw_conn_refuse_head(gw_conn_t *conn, int status, const char *message) {
    conn->exchange.request.keep_alive = false;
    gw_exchange_fail(&conn->exchange, status, message);
}

/* Whether the connection speaks HTTP/2: agreed by ALPN on TLS, or, on a
 * plain listener, the client preface arrived (prior knowledge). Returns 1
 * for HTTP/2, 0 for HTTP/1.1, -1 while the bytes so far could be either. */
static int gw_conn_wants_h2(gw_conn_t *conn) {
    if (!conn->worker->config->http2)
        return 0;
    if (conn->listen->tls)
        return gw_transport_alpn_h2(&conn->transport) ? 1 : 0;
    struct evbuffer *input = gw_transport_input(&conn->transport);
    size_t length = evbuffer_get_length(input);
    if (length > GW_H2_PREFACE_LENGTH)
        length = GW_H2_PREFACE_LENGTH;
    const unsigned char *start = evbuffer_pullup(input, (ev_ssize_t)length);
    if (start == NULL || memcmp(start, GW_H2_PREFACE, length) != 0)
        return 0;
    return length == GW_H2_PREFACE_LENGTH ? 1 : -1;
}

static void gw_conn_parse_head(gw_conn_t *conn) {
    struct evbuffer *input = gw_transport_input(&conn->transport);
    size_t limit = conn->worker->config->max_header_size;
    while (conn->state == GW_CONN_READING_HEAD) {
        struct evbuffer_iovec piece;
        if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1 || piece.iov_len == 0)
            return;
        if (!conn->protocol_chosen) {
            int h2 = gw_conn_wants_h2(conn);
            if (h2 < 0)
                return;
            conn->protocol_chosen = true;
            if (h2 == 1) {
                if (gw_h2_start(conn) < 0)
                    gw_conn_close(conn);
                return;
            }
        }
        if (conn->exchange.state == GW_EXCHANGE_IDLE) {
            /* On a kept-alive connection the header timeout runs from the
             * request's first byte (from accept for the first one). */
            bool from_accept = conn->exchange.started_us != 0;
            gw_exchange_begin(&conn->exchange);
            if (!from_accept)
                gw_conn_set_deadline(conn, conn->worker->config->client_header_timeout_ms);
        }
        /* Never hand llhttp more than fits under the limit, so an oversized
         * head costs at most max_header_size of memory. */
        if (piece.iov_len > limit + 1 - conn->request_head_bytes)
            piece.iov_len = limit + 1 - conn->request_head_bytes;
        llhttp_errno_t error;
        size_t taken = gw_http1_parse(&conn->request_parser, piece.iov_base, piece.iov_len, &error);
        evbuffer_drain(input, taken);
        conn->request_head_bytes += taken;
        gw_exchange_count_received(&conn->exchange, taken);
        if (error == HPE_PAUSED && conn->request_head.head_complete) {
            if (conn->request_head_bytes > limit)
                gw_conn_refuse_head(conn, 431, GW_MESSAGE_HEAD_TOO_LARGE);
            else
                gw_conn_head_complete(conn);
            return;
        }
        if (error != HPE_OK) {
            log_debug("client %s: bad request: %s (%s)", conn->address_text,
                      llhttp_errno_name(error), llhttp_get_error_reason(&conn->request_parser));
            gw_conn_refuse_head(conn, 400, GW_MESSAGE_BAD_REQUEST);
            return;
        }
        if (conn->request_head_bytes > limit) {
            gw_conn_refuse_head(conn, 431, GW_MESSAGE_HEAD_TOO_LARGE);
            return;
        }
    }
}

/* Takes one piece of the request's body through the parser into the upstream
 * (a trailer section is collected instead, and written filtered at the end).
 * Returns false when the request ended or failed, or nothing can be taken. */
static bool gw_conn_forward_piece(gw_conn_t *conn, struct evbuffer_iovec *piece) {
    gw_exchange_t *exchange = &conn->exchange;
    struct evbuffer *input = gw_transport_input(&conn->transport);
    struct evbuffer *output = gw_exchange_request_output(exchange);
    gw_head_t *head = &conn->request_head;
    bool in_trailers = head->in_trailers;
    /* To an HTTP/2 sandbox a chunked body goes without its framing. */
    bool framed = gw_exchange_request_framed(exchange);
    bool decoded = !framed && (conn->request_parser.flags & F_CHUNKED) != 0;
    size_t output_before = evbuffer_get_length(output);
    if (decoded)
        head->body_sink = output;
    llhttp_errno_t error;
    size_t taken = gw_http1_parse(&conn->request_parser, piece->iov_base, piece->iov_len, &error);
    head->body_sink = NULL;
    if (in_trailers) {
        evbuffer_drain(input, taken);
        conn->trailer_bytes += taken;
        if (conn->trailer_bytes > conn->worker->config->max_header_size)
            error = HPE_USER;
    } else if (decoded) {
        evbuffer_drain(input, taken);
        gw_exchange_request_sent(exchange, evbuffer_get_length(output) - output_before);
        if (head->failed) {
            gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
            return false;
        }
    } else if (taken > 0) {
        evbuffer_remove_buffer(input, output, taken);
        gw_exchange_request_sent(exchange, taken);
    }
    gw_exchange_count_received(exchange, taken);
    if (error == HPE_PAUSED && head->message_complete) {
        if (head->in_trailers && framed) {
            char *trailers;
            size_t length;
            if (gw_http1_trailers_write(head, &conn->arena, &trailers, &length) < 0) {
                gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
                return false;
            }
            evbuffer_add(output, trailers, length);
        }
        gw_exchange_request_done(exchange);
        return false;
    }
    if (error != HPE_OK && error != HPE_PAUSED) {
        log_debug("client %s: bad request body: %s", conn->address_text, llhttp_errno_name(error));
        exchange->request.keep_alive = false;
        gw_exchange_fail(exchange, 400, GW_MESSAGE_BAD_REQUEST);
        return false;
    }
    return !(taken == 0 && piece->iov_len > 0);
}

/* Passes request body bytes to the sandbox as they arrive, raw (chunked
 * framing included), until the request ends or the upstream is full. */
static void gw_conn_forward_request(gw_conn_t *conn) {
    gw_exchange_t *exchange = &conn->exchange;
    struct evbuffer *input = gw_transport_input(&conn->transport);
    bool first = true;
    while (exchange->state == GW_EXCHANGE_PROXYING && exchange->request_state == GW_REQUEST_BODY) {
        size_t room = gw_exchange_request_room(exchange);
        if (room == 0) {
            gw_transport_read(&conn->transport, false);
            return;
        }
        struct evbuffer_iovec piece = {.iov_base = (void *)"", .iov_len = 0};
        if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1 || piece.iov_len == 0) {
            /* An empty run still completes a message without a body. */
            if (!first)
                break;
            piece.iov_base = (void *)"";
            piece.iov_len = 0;
        }
        first = false;
        if (piece.iov_len > room)
            piece.iov_len = room;
        if (!gw_conn_forward_piece(conn, &piece))
            return;
    }
    if (exchange->state == GW_EXCHANGE_PROXYING)
        gw_exchange_request_flush(exchange);
}

/* ---- PROXY header, TLS, accept ---- */

/* Dotted-quad text of an IPv4 address; glibc's inet_ntop formats it with
 * sprintf, a sixth of the instructions a short connection costs. out holds
 * at least 16 bytes. */
static void gw_ipv4_text(const uint8_t *bytes, char *out) {
    char *cursor = out;
    for (int i = 0; i < 4; i++) {
        unsigned value = bytes[i];
        if (value >= 100)
            *cursor++ = (char)('0' + value / 100);
        if (value >= 10)
            *cursor++ = (char)('0' + value / 10 % 10);
        *cursor++ = (char)('0' + value % 10);
        *cursor++ = i < 3 ? '.' : '\0';
    }
}

/* Writes an address as X-Forwarded-For wants it (IPv4-mapped IPv6 as IPv4);
 * out_size is at least INET6_ADDRSTRLEN. */
static void gw_address_text(const struct sockaddr *address, char *out, size_t out_size) {
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
            gw_ipv4_text(&v6->sin6_addr.s6_addr[12], out);
        else
            inet_ntop(AF_INET6, &v6->sin6_addr, out, (socklen_t)out_size);
    } else {
        gw_ipv4_text((const uint8_t *)&((const struct sockaddr_in *)address)->sin_addr, out);
    }
}

/* Reading from the client as a request head wants it. */
static void gw_conn_read_heads(gw_conn_t *conn) {
    gw_transport_read_limit(&conn->transport, GW_READ_HIGH);
    gw_transport_read(&conn->transport, true);
}

/* A proxy_protocol listener's connection starts with the balancer's PROXY
 * header; without a valid one the connection is closed, never served. */
static void gw_conn_parse_proxy_header(gw_conn_t *conn) {
    struct evbuffer *input = gw_transport_input(&conn->transport);
    size_t available = evbuffer_get_length(input);
    if (available > GW_PROXY_HEADER_MAX)
        available = GW_PROXY_HEADER_MAX;
    const uint8_t *data = evbuffer_pullup(input, (ev_ssize_t)available);
    gw_proxy_header_t header;
    gw_proxy_status_t status = gw_proxy_protocol_parse(data, available, &header);
    if (status == GW_PROXY_NEED_MORE && available < GW_PROXY_HEADER_MAX)
        return;
    if (status != GW_PROXY_DONE) {
        log_debug("client %s: no valid PROXY header; closing", conn->address_text);
        gw_conn_close(conn);
        return;
    }
    evbuffer_drain(input, header.length);
    if (!header.local)
        gw_address_text((const struct sockaddr *)&header.source, conn->address_text,
                        sizeof(conn->address_text));
    if (header.ssl)
        conn->https = conn->exchange.https = true;
    gw_conn_set_state(conn, GW_CONN_READING_HEAD);
    if (conn->listen->tls) {
        /* TLS starts after the PROXY header: the handshake reads what follows. */
        if (gw_transport_start_tls(&conn->transport, conn->worker->server->tls) < 0) {
            gw_conn_close(conn);
            return;
        }
        gw_conn_read_heads(conn);
        return;
    }
    gw_conn_parse_head(conn);
}

void gw_conn_accept(gw_worker_t *worker, const gw_listen_t *listen, int fd,
                    const struct sockaddr *address, int address_length) {
    (void)address_length;
    gw_conn_t *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        close(fd);
        return;
    }
    conn->worker = worker;
    conn->listen = listen;
    LIST_INSERT_HEAD(&worker->clients, conn, link);
    worker->client_count++;
    GW_METRIC_ADD(&worker->metrics, client_connections, 1);
    arena_init_pooled(&conn->arena, &worker->request_blocks);
    gw_address_text(address, conn->address_text, sizeof(conn->address_text));
    conn->https = listen->tls;
    gw_exchange_init(&conn->exchange, worker, &gw_conn_side, conn, &conn->arena, conn->address_text,
                     conn->https);
    conn->state = listen->proxy_protocol ? GW_CONN_READING_PROXY : GW_CONN_READING_HEAD;
    conn->timer = evtimer_new(worker->base, gw_conn_timer, conn);
    if (gw_transport_accept(&conn->transport, worker->base, fd) < 0 || conn->timer == NULL) {
        gw_conn_close(conn);
        return;
    }
    gw_transport_set_handler(&conn->transport, &gw_conn_handler, conn);
    /* A PROXY header comes before TLS. */
    if (listen->tls && !listen->proxy_protocol &&
        gw_transport_start_tls(&conn->transport, worker->server->tls) < 0) {
        gw_conn_close(conn);
        return;
    }
    gw_conn_reset_request(conn);
    gw_conn_read_heads(conn);
    /* From accept, the whole head must arrive within client_header_timeout. */
    conn->exchange.started_us = clock_us();
    gw_conn_set_deadline(conn, worker->config->client_header_timeout_ms);
}

void gw_conn_drain(gw_conn_t *conn) {
    if (conn->state == GW_CONN_H2) {
        gw_h2_drain(conn->h2);
        return;
    }
    /* A kept-alive connection between requests, or one still waiting for
     * its PROXY header, has nothing in flight. */
    if ((conn->state == GW_CONN_READING_HEAD && conn->exchange.state == GW_EXCHANGE_IDLE) ||
        conn->state == GW_CONN_READING_PROXY)
        gw_conn_close(conn);
}

/* ---- the client's stream ---- */

/* Discards what a closing client still sends, up to a bound. */
static void gw_conn_linger_read(gw_conn_t *conn) {
    struct evbuffer *input = gw_transport_input(&conn->transport);
    conn->bytes_discarded += evbuffer_get_length(input);
    evbuffer_drain(input, evbuffer_get_length(input));
    if (conn->bytes_discarded > GW_LINGER_MAX_BYTES)
        gw_conn_close(conn);
}

static void gw_conn_on_readable(void *arg) {
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    switch (conn->state) {
    case GW_CONN_READING_PROXY:
        gw_conn_parse_proxy_header(conn);
        break;
    case GW_CONN_READING_HEAD:
        gw_conn_parse_head(conn);
        break;
    case GW_CONN_EXCHANGE:
        /* While routing and dialling, bytes wait for the upstream. */
        if (conn->exchange.state == GW_EXCHANGE_PROXYING &&
            conn->exchange.request_state == GW_REQUEST_BODY) {
            gw_transport_read_more(&conn->transport, GW_BUFFER_HIGH);
            gw_conn_forward_request(conn);
        }
        break;
    case GW_CONN_TUNNEL:
        gw_transport_read_more(&conn->transport, GW_BUFFER_HIGH);
        gw_exchange_count_received(&conn->exchange,
                                   gw_tunnel_pass(&conn->tunnel, &conn->transport));
        break;
    case GW_CONN_H2:
        gw_h2_readable(conn->h2);
        break;
    case GW_CONN_CLOSING:
        if (conn->lingering)
            gw_conn_linger_read(conn);
        break;
    case GW_CONN_CLOSED:
        break;
    }
    gw_conn_leave(conn);
}

/* The client's output drained to its low mark. */
static void gw_conn_on_writable(void *arg) {
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    gw_transport_write_low(&conn->transport, 0);
    if (conn->state == GW_CONN_CLOSING && !conn->lingering) {
        gw_conn_linger(conn);
    } else if (conn->state == GW_CONN_EXCHANGE) {
        gw_exchange_response_ready(&conn->exchange);
    } else if (conn->state == GW_CONN_H2) {
        gw_h2_writable(conn->h2);
    } else if (conn->state == GW_CONN_TUNNEL) {
        gw_exchange_count_sent(&conn->exchange, gw_tunnel_drained(&conn->tunnel, &conn->transport));
        if (gw_tunnel_half_close(&conn->tunnel))
            gw_conn_close(conn);
    }
    gw_conn_leave(conn);
}

static void gw_conn_on_event(void *arg, gw_transport_event_t event) {
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    const gw_exchange_t *exchange = &conn->exchange;
    if (event == GW_TRANSPORT_EOF && gw_transport_can(&conn->transport, GW_TRANSPORT_HALF_CLOSE) &&
        conn->state == GW_CONN_EXCHANGE && exchange->state == GW_EXCHANGE_PROXYING &&
        exchange->request_state == GW_REQUEST_DONE) {
        /* A client may shut down its sending side and still await the
         * response (RFC 9112 §9.6); the connection ends after it. */
        conn->exchange.close_after_response = true;
    } else if (event == GW_TRANSPORT_EOF && conn->state == GW_CONN_TUNNEL) {
        gw_exchange_count_received(&conn->exchange,
                                   gw_tunnel_pass(&conn->tunnel, &conn->transport));
        gw_tunnel_ended(&conn->tunnel, &conn->transport);
        if (gw_tunnel_half_close(&conn->tunnel))
            gw_conn_close(conn);
    } else {
        /* The client went away or failed: nothing can be answered any more. */
        gw_conn_close(conn);
    }
    gw_conn_leave(conn);
}

static const gw_transport_handler_t gw_conn_handler = {
    .readable = gw_conn_on_readable,
    .writable = gw_conn_on_writable,
    .event = gw_conn_on_event,
};

/* ---- the tunnel's upstream ---- */

static void gw_tunnel_on_upstream_readable(void *arg) {
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    gw_transport_t *upstream = conn->tunnel.upstream;
    gw_transport_read_more(upstream, GW_BUFFER_HIGH);
    gw_exchange_count_sent(&conn->exchange, gw_tunnel_pass(&conn->tunnel, upstream));
    gw_conn_leave(conn);
}

static void gw_tunnel_on_upstream_writable(void *arg) {
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    gw_exchange_count_received(&conn->exchange,
                               gw_tunnel_drained(&conn->tunnel, conn->tunnel.upstream));
    if (gw_tunnel_half_close(&conn->tunnel))
        gw_conn_close(conn);
    gw_conn_leave(conn);
}

static void gw_tunnel_on_upstream_event(void *arg, gw_transport_event_t event) {
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    if (event == GW_TRANSPORT_EOF) {
        gw_exchange_count_sent(&conn->exchange,
                               gw_tunnel_pass(&conn->tunnel, conn->tunnel.upstream));
        gw_tunnel_ended(&conn->tunnel, conn->tunnel.upstream);
        if (gw_tunnel_half_close(&conn->tunnel))
            gw_conn_close(conn);
    } else {
        gw_conn_close(conn);
    }
    gw_conn_leave(conn);
}

static const gw_transport_handler_t gw_conn_tunnel_upstream_handler = {
    .readable = gw_tunnel_on_upstream_readable,
    .writable = gw_tunnel_on_upstream_writable,
    .event = gw_tunnel_on_upstream_event,
};

/* ---- the timer ---- */

static void gw_conn_timeout(gw_conn_t *conn) {
    switch (conn->state) {
    case GW_CONN_READING_PROXY:
        gw_conn_close(conn); /* no PROXY header in time */
        break;
    case GW_CONN_READING_HEAD:
        if (conn->exchange.state != GW_EXCHANGE_IDLE)
            gw_conn_refuse_head(conn, 408, GW_MESSAGE_HEAD_TIMEOUT);
        else
            gw_conn_close(conn); /* idle keep-alive connection */
        break;
    case GW_CONN_EXCHANGE:
        gw_exchange_timeout(&conn->exchange);
        break;
    case GW_CONN_TUNNEL: {
        uint64_t idle = clock_coarse_ms() - conn->tunnel.last_activity_ms;
        uint64_t limit = conn->worker->config->tunnel_idle_timeout_ms;
        if (idle >= limit)
            gw_conn_close(conn);
        else
            gw_conn_set_deadline(conn, limit - idle);
        break;
    }
    case GW_CONN_H2:
        gw_h2_timeout(conn->h2);
        break;
    case GW_CONN_CLOSING:
        gw_conn_close(conn); /* lingered long enough */
        break;
    case GW_CONN_CLOSED:
        break;
    }
}

static void gw_conn_timer(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_conn_t *conn = arg;
    gw_conn_enter(conn);
    conn->timer_armed_ms = 0;
    uint64_t now = clock_coarse_ms();
    if (conn->deadline_ms != 0 && now < conn->deadline_ms) {
        gw_conn_set_deadline(conn, conn->deadline_ms - now);
    } else if (conn->deadline_ms != 0) {
        conn->deadline_ms = 0;
        gw_conn_timeout(conn);
    }
    gw_conn_leave(conn);
}
