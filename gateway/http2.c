/* An HTTP/2 client connection (nghttp2): each stream runs one exchange. */
#include "gateway/http2.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "gateway/connection.h"
#include "gateway/error_page.h"
#include "gateway/exchange.h"
#include "gateway/worker.h"
#include "util/clock.h"
#include "util/log.h"

enum {
    /* A stream's receive window: the request body it may buffer before the
     * sandbox takes it. The connection's window is this times the stream limit. */
    GW_H2_STREAM_WINDOW = 256 * 1024,
    GW_H2_CONNECTION_WINDOW_MAX = 1 << 30,
    /* Response bytes a stream buffers before the sandbox is read no more. */
    GW_H2_RESPONSE_HIGH = 128 * 1024,
    GW_H2_RESPONSE_LOW = GW_H2_RESPONSE_HIGH / 2,
    /* DESIGN "HTTP/2 (clients)": resets a client causes faster than this a
     * second end the connection; floods of SETTINGS, PING and empty DATA too. */
    GW_H2_RESETS_PER_SECOND = 200,
    GW_H2_CONTROL_PER_SECOND = 100,
    /* CONTINUATION frames one header block may take (CVE-2024-27316). */
    GW_H2_CONTINUATIONS_MAX = 8,
    /* A header list decoded past this many times max_header_size is not
     * answered 431 but reset at once (an HPACK bomb). */
    GW_H2_HEADER_BOMB_FACTOR = 4,
    /* The largest TLS record's plaintext. */
    GW_H2_TLS_RECORD = 16384,
    /* Between the first GOAWAY of a drain and the one with the last stream. */
    GW_H2_DRAIN_STEP_MS = 1000,
};

static const char GW_MESSAGE_BAD_REQUEST[] = "Bad request";
static const char GW_MESSAGE_HEAD_TOO_LARGE[] = "Request header too large";
static const char GW_MESSAGE_LOOP[] = "Loop detected";
static const char GW_MESSAGE_NO_MEMORY[] = "Out of memory";

/* A token bucket: at most rate events a second, in a burst of rate. */
typedef struct gw_h2_bucket {
    uint64_t tokens; /* thousandths of an event */
    uint64_t last_ms;
} gw_h2_bucket_t;

typedef struct gw_h2_stream gw_h2_stream_t;

struct gw_h2 {
    gw_conn_t *conn;
    nghttp2_session *session; /* NULL once closed */
    TAILQ_HEAD(gw_h2_streams, gw_h2_stream) streams;
    size_t stream_count;
    int in_session;     /* inside nghttp2 (mem_recv): it must not be re-entered */
    bool sending;       /* gw_h2_send runs */
    bool ready_pending; /* a stream's response buffer drained: its exchange reads on */
    bool calm;          /* a flood was seen: GOAWAY ENHANCE_YOUR_CALM */
    bool closing;       /* the session ended: close once the output is out */
    bool closed;        /* gw_h2_close ran: streams end without further frames */
    bool draining;      /* the first GOAWAY of a drain went out */
    struct event *drain_timer;
    /* Sends what the exchanges' callbacks of one loop turn produced, together:
     * the answers of many streams (an h2c sandbox's, say) leave in one write. */
    struct event *send_event;
    size_t continuations; /* of the header block being received */
    gw_h2_bucket_t resets;
    gw_h2_bucket_t settings;
    gw_h2_bucket_t pings;
    gw_h2_bucket_t empty_data;
};

struct gw_h2_stream {
    TAILQ_ENTRY(gw_h2_stream) link;
    gw_h2_t *h2;
    int32_t id;
    int handlers; /* exchange callbacks of it running */
    bool closed;  /* nghttp2 closed it: freed once no handler runs */
    arena_t arena;
    gw_head_t head; /* the request's fields, in the arena */
    size_t header_bytes;
    bool too_large;   /* header list over max_header_size: 431 */
    bool te_trailers; /* the client takes response trailers */
    const char *method, *path, *scheme, *authority;
    size_t authority_length;
    char *cookie; /* Cookie fields joined with "; " (RFC 9113 §8.2.3) */
    size_t cookie_length;
    bool head_done; /* the request's HEADERS ended */
    gw_exchange_t exchange;
    struct event *timer; /* the stream's deadline: its head, then the exchange's */
    /* The request body received and not yet written to the sandbox: the
     * stream's window is reopened as it is (nghttp2_session_consume). */
    struct evbuffer *request_body;
    bool chunked;     /* sent to the sandbox chunked (no Content-Length) */
    bool request_end; /* END_STREAM received */
    /* The response: head submitted, body bytes waiting for the client's window. */
    struct evbuffer *response_body;
    bool response_started;
    bool response_end;     /* every byte of the body is in response_body */
    bool response_waiting; /* the exchange waits for room (gw_exchange_response_ready) */
    bool ready;            /* ... and it came */
    bool data_deferred;    /* the data source said "later": resume it */
    nghttp2_nv *trailers;
    size_t trailer_count;
    struct gw_h2_stream *kept_next; /* in the worker's streams kept for reuse */
};

static const gw_exchange_side_t gw_h2_side;

/* ---- limits ---- */

static bool gw_h2_bucket_take(gw_h2_bucket_t *bucket, uint64_t rate) {
    uint64_t now = clock_coarse_ms();
    uint64_t full = rate * 1000;
    if (bucket->last_ms == 0)
        bucket->tokens = full;
    else
        bucket->tokens += (now - bucket->last_ms) * rate;
    if (bucket->tokens > full)
        bucket->tokens = full;
    bucket->last_ms = now;
    if (bucket->tokens < 1000)
        return false;
    bucket->tokens -= 1000;
    return true;
}

/* A flood: the connection ends with GOAWAY ENHANCE_YOUR_CALM. */
static int gw_h2_calm(gw_h2_t *h2, const char *what) {
    if (!h2->calm)
        log_warn("client %s: HTTP/2 %s; closing with ENHANCE_YOUR_CALM", h2->conn->address_text,
                 what);
    h2->calm = true;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* ---- sending ---- */

static void gw_h2_stream_free(gw_h2_stream_t *stream);
static void gw_h2_stream_release(gw_h2_stream_t *stream);
static void gw_h2_end(gw_h2_t *h2);

/* nghttp2 sends a frame (DATA aside): into the client's output, until its high mark. */
static ssize_t gw_h2_on_send(nghttp2_session *session, const uint8_t *data, size_t length,
                             int flags, void *user_data) {
    (void)session;
    (void)flags;
    gw_h2_t *h2 = user_data;
    struct evbuffer *output = gw_transport_output(&h2->conn->transport);
    if (evbuffer_get_length(output) >= GW_BUFFER_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(output, data, length) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)length;
}

/* A DATA frame's payload goes from the stream's buffer to the client's output
 * (NGHTTP2_DATA_FLAG_NO_COPY): on a raw socket its chains move without a copy;
 * TLS seals each chain of the output as a record of its own, so there the
 * frame is copied into one contiguous piece, one record (gw_h2_frame_length). */
static int gw_h2_on_send_data(nghttp2_session *session, nghttp2_frame *frame,
                              const uint8_t *frame_head, size_t length, nghttp2_data_source *source,
                              void *user_data) {
    (void)session;
    gw_h2_t *h2 = user_data;
    gw_h2_stream_t *stream = source->ptr;
    gw_transport_t *transport = &h2->conn->transport;
    struct evbuffer *output = gw_transport_output(transport);
    if (evbuffer_get_length(output) >= GW_BUFFER_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (frame->data.padlen > 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* never asked for */
    if (gw_transport_can(transport, GW_TRANSPORT_RAW)) {
        if (evbuffer_add(output, frame_head, 9) != 0 ||
            evbuffer_remove_buffer(stream->response_body, output, length) != (int)length)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    } else {
        struct evbuffer_iovec space;
        if (evbuffer_reserve_space(output, (ev_ssize_t)(9 + length), &space, 1) != 1)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        memcpy(space.iov_base, frame_head, 9);
        evbuffer_remove(stream->response_body, (char *)space.iov_base + 9, length);
        space.iov_len = 9 + length;
        if (evbuffer_commit_space(output, &space, 1) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (stream->response_waiting &&
        evbuffer_get_length(stream->response_body) <= GW_H2_RESPONSE_LOW) {
        stream->response_waiting = false;
        stream->ready = true;
        h2->ready_pending = true;
    }
    return 0;
}

/* Over TLS a DATA frame, head and payload, fills one record at most (16 KiB:
 * RFC 8446 §5.1), instead of a full record and a 9-byte one. */
static ssize_t gw_h2_frame_length(nghttp2_session *session, uint8_t frame_type, int32_t stream_id,
                                  int32_t session_window, int32_t stream_window,
                                  uint32_t max_frame_size, void *user_data) {
    (void)session;
    (void)frame_type;
    (void)stream_id;
    gw_h2_t *h2 = user_data;
    ssize_t length = session_window < stream_window ? session_window : stream_window;
    if (length > (ssize_t)max_frame_size)
        length = (ssize_t)max_frame_size;
    if (!gw_transport_can(&h2->conn->transport, GW_TRANSPORT_RAW) && length > GW_H2_TLS_RECORD - 9)
        length = GW_H2_TLS_RECORD - 9;
    return length;
}

/* Writes what nghttp2 has to send into the client's output, up to its high
 * mark, and lets exchanges whose stream buffers drained read on. Never from
 * inside nghttp2; a call meanwhile is folded into the one running. */
static void gw_h2_send(gw_h2_t *h2) {
    if (h2->session == NULL || h2->in_session > 0 || h2->sending)
        return;
    gw_conn_t *conn = h2->conn;
    gw_transport_t *transport = &conn->transport;
    struct evbuffer *output = gw_transport_output(transport);
    h2->sending = true;
    gw_transport_hold(transport);
    for (;;) {
        int error = nghttp2_session_send(h2->session);
        if (error != 0) {
            log_debug("client %s: HTTP/2 send: %s", conn->address_text, nghttp2_strerror(error));
            if (error == NGHTTP2_ERR_FLOODED)
                h2->calm = true;
            h2->closing = true;
        }
        if (!h2->ready_pending || h2->closing)
            break;
        h2->ready_pending = false;
        gw_h2_stream_t *stream, *next;
        for (stream = TAILQ_FIRST(&h2->streams); stream != NULL; stream = next) {
            next = TAILQ_NEXT(stream, link);
            if (!stream->ready)
                continue;
            stream->ready = false;
            stream->handlers++;
            gw_exchange_response_ready(&stream->exchange);
            stream->handlers--;
        }
    }
    gw_transport_flush(transport, false);
    if (evbuffer_get_length(output) >= GW_BUFFER_HIGH)
        gw_transport_write_low(transport, GW_BUFFER_LOW);
    h2->sending = false;
    if (h2->closing ||
        (!nghttp2_session_want_read(h2->session) && !nghttp2_session_want_write(h2->session)))
        gw_h2_end(h2);
}

/* Sends once the callbacks of this loop turn ran: what exchanges produce for many streams of the
 * connection (the answers an h2c sandbox sent in one read, say) then leaves in one write instead
 * of one per callback. */
static void gw_h2_send_soon(gw_h2_t *h2) {
    if (h2->send_event == NULL || h2->session == NULL) {
        gw_h2_send(h2);
        return;
    }
    if (!event_pending(h2->send_event, EV_WRITE, NULL))
        event_active(h2->send_event, EV_WRITE, 0);
}

/* The session is over (GOAWAY sent, or the peer's protocol error): streams
 * end, and the connection closes once its last bytes are out. */
static void gw_h2_end(gw_h2_t *h2) {
    gw_conn_t *conn = h2->conn;
    if (h2->closed || conn->state != GW_CONN_H2)
        return;
    gw_h2_close(h2);
    gw_conn_close_after_flush(conn);
}

/* ---- the stream's deadline ---- */

static void gw_h2_stream_timer(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_h2_stream_t *stream = arg;
    gw_h2_t *h2 = stream->h2;
    gw_conn_t *conn = h2->conn;
    gw_conn_enter(conn);
    stream->handlers++;
    if (!stream->head_done) {
        /* A head that never ends leaves the connection inside a header block. */
        log_debug("client %s: HTTP/2 stream %d: head not complete in time", conn->address_text,
                  stream->id);
        nghttp2_session_terminate_session(h2->session, NGHTTP2_PROTOCOL_ERROR);
    } else {
        gw_exchange_timeout(&stream->exchange);
    }
    if (--stream->handlers == 0 && stream->closed)
        gw_h2_stream_free(stream);
    gw_h2_send_soon(h2);
    gw_conn_leave(conn);
}

static void gw_h2_stream_deadline(gw_h2_stream_t *stream, uint64_t milliseconds) {
    if (milliseconds == 0) {
        evtimer_del(stream->timer);
        return;
    }
    struct timeval delay = clock_timeval(milliseconds);
    evtimer_add(stream->timer, &delay);
}

/* ---- the request body ---- */

/* Passes the body received to the sandbox as far as its connection takes it,
 * reopening the stream's window by as much; ends the request after the last
 * byte (a chunked one with its filtered trailers). */
static void gw_h2_forward_request(gw_h2_stream_t *stream) {
    gw_exchange_t *exchange = &stream->exchange;
    if (exchange->state != GW_EXCHANGE_PROXYING || exchange->request_state != GW_REQUEST_BODY)
        return;
    struct evbuffer *body = stream->request_body;
    struct evbuffer *output = gw_exchange_request_output(exchange);
    bool chunked = stream->chunked && gw_exchange_request_framed(exchange);
    size_t moved = 0;
    while (evbuffer_get_length(body) > 0) {
        size_t room = gw_exchange_request_room(exchange);
        if (room == 0)
            break; /* request_ready follows */
        size_t length = evbuffer_get_length(body);
        if (length > room)
            length = room;
        if (chunked)
            evbuffer_add_printf(output, "%zx\r\n", length);
        evbuffer_remove_buffer(body, output, length);
        if (chunked)
            evbuffer_add(output, "\r\n", 2);
        gw_exchange_request_sent(exchange, length);
        moved += length;
    }
    if (moved > 0 && stream->h2->session != NULL)
        nghttp2_session_consume(stream->h2->session, stream->id, moved);
    if (!stream->request_end || evbuffer_get_length(body) > 0) {
        if (moved > 0)
            gw_exchange_request_flush(exchange);
        return;
    }
    if (chunked) {
        evbuffer_add(output, "0\r\n", 3);
        char *trailers = "\r\n";
        size_t length = 2;
        if (stream->head.in_trailers &&
            gw_http1_trailers_write(&stream->head, &stream->arena, &trailers, &length) < 0) {
            gw_exchange_fail(exchange, 500, GW_MESSAGE_NO_MEMORY);
            return;
        }
        evbuffer_add(output, trailers, length);
    }
    gw_exchange_request_done(exchange);
}

/* Body bytes the exchange will never take (it ended): the window reopens. */
static void gw_h2_discard_request(gw_h2_stream_t *stream) {
    size_t length = evbuffer_get_length(stream->request_body);
    if (length == 0)
        return;
    evbuffer_drain(stream->request_body, length);
    if (stream->h2->session != NULL)
        nghttp2_session_consume(stream->h2->session, stream->id, length);
}

/* ---- the response ---- */

/* nghttp2 asks how much of the body a DATA frame may carry: what the stream
 * buffered (moved by gw_h2_on_send_data), then EOF (and the trailers, if any)
 * once the exchange finished. */
static ssize_t gw_h2_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buffer,
                               size_t length, uint32_t *flags, nghttp2_data_source *source,
                               void *user_data) {
    (void)session;
    (void)buffer;
    (void)user_data;
    gw_h2_stream_t *stream = source->ptr;
    size_t have = evbuffer_get_length(stream->response_body);
    if (have == 0 && !stream->response_end) {
        stream->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t taken = have < length ? have : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (stream->response_end && taken == have) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (stream->trailer_count > 0 &&
            nghttp2_submit_trailer(stream->h2->session, stream_id, stream->trailers,
                                   stream->trailer_count) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)taken;
}

/* A field of the sandbox's HTTP/1.1 message that HTTP/2 must not carry
 * (RFC 9113 §8.2.2): the hop-by-hop ones and Transfer-Encoding. */
static bool gw_h2_field_dropped(const gw_head_t *head, const gw_header_t *header) {
    return header->kind == GW_HEADER_TRANSFER_ENCODING || gw_head_is_hop_by_hop(head, header);
}

/* name lower-cased into the stream's arena, as HTTP/2 wants field names; NULL
 * when memory is exhausted. */
static uint8_t *gw_h2_lower(gw_h2_stream_t *stream, const char *name, size_t length) {
    uint8_t *lower = arena_alloc(&stream->arena, length + 1);
    for (size_t i = 0; lower != NULL && i < length; i++) {
        char c = name[i];
        lower[i] = (uint8_t)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    return lower;
}

/* The :status field of status, its text in the stream's arena; false when
 * memory is exhausted. */
static bool gw_h2_status(gw_h2_stream_t *stream, int status, nghttp2_nv *field) {
    char *text = arena_alloc(&stream->arena, 4);
    if (text == NULL)
        return false;
    snprintf(text, 4, "%03d", status);
    *field =
        (nghttp2_nv){(uint8_t *)":status", (uint8_t *)text, 7, 3, NGHTTP2_NV_FLAG_NO_COPY_NAME};
    return true;
}

/* Fields first to last of head as HTTP/2 wants them: names lower-cased (into
 * the arena), the dropped ones left out, after status (when not 0). Returns
 * the count, or -1 when memory is exhausted. */
static int gw_h2_fields(gw_h2_stream_t *stream, const gw_head_t *head, size_t first, size_t last,
                        int status, nghttp2_nv **out) {
    nghttp2_nv *fields = arena_alloc(&stream->arena, (last - first + 1) * sizeof(*fields));
    if (fields == NULL)
        return -1;
    size_t count = 0;
    if (status != 0 && !gw_h2_status(stream, status, &fields[count++]))
        return -1;
    for (size_t i = first; i < last; i++) {
        const gw_header_t *header = &head->headers[i];
        if (gw_h2_field_dropped(head, header))
            continue;
        uint8_t *name = gw_h2_lower(stream, header->name, header->name_length);
        if (name == NULL)
            return -1;
        fields[count++] = (nghttp2_nv){name, (uint8_t *)header->value, header->name_length,
                                       header->value_length, NGHTTP2_NV_FLAG_NONE};
    }
    *out = fields;
    return (int)count;
}

static void gw_h2_stream_submit(gw_h2_stream_t *stream, nghttp2_nv *fields, size_t count,
                                bool body) {
    nghttp2_data_provider provider = {.source.ptr = stream, .read_callback = gw_h2_read_body};
    stream->response_started = true;
    if (nghttp2_submit_response(stream->h2->session, stream->id, fields, count,
                                body ? &provider : NULL) != 0)
        nghttp2_submit_rst_stream(stream->h2->session, NGHTTP2_FLAG_NONE, stream->id,
                                  NGHTTP2_INTERNAL_ERROR);
}

/* Submits a response of the gateway's own: :status, the fields (names
 * lower-cased), and the stream's buffered body when body. Returns 0, or -1
 * when memory is exhausted. */
static int gw_h2_submit_own(gw_h2_stream_t *stream, int status, const gw_field_t *fields,
                            size_t count, bool body) {
    nghttp2_nv *list = arena_alloc(&stream->arena, (count + 1) * sizeof(*list));
    if (list == NULL || !gw_h2_status(stream, status, &list[0]))
        return -1;
    for (size_t i = 0; i < count; i++) {
        size_t length = strlen(fields[i].name);
        uint8_t *name = gw_h2_lower(stream, fields[i].name, length);
        if (name == NULL)
            return -1;
        list[i + 1] = (nghttp2_nv){name, (uint8_t *)fields[i].value, length, fields[i].value_length,
                                   NGHTTP2_NV_FLAG_NONE};
    }
    gw_h2_stream_submit(stream, list, count + 1, body);
    return 0;
}

/* ---- the exchange's side ---- */

static void gw_h2_side_enter(void *arg) {
    gw_h2_stream_t *stream = arg;
    gw_conn_enter(stream->h2->conn);
    stream->handlers++;
}

static void gw_h2_side_leave(void *arg) {
    gw_h2_stream_t *stream = arg;
    gw_h2_t *h2 = stream->h2;
    gw_conn_t *conn = h2->conn;
    if (--stream->handlers == 0 && stream->closed)
        gw_h2_stream_free(stream);
    gw_h2_send_soon(h2);
    gw_conn_leave(conn);
}

static void gw_h2_side_deadline(void *arg, uint64_t milliseconds) {
    gw_h2_stream_deadline(arg, milliseconds);
}

static void gw_h2_side_request_ready(void *arg) { gw_h2_forward_request(arg); }

static struct evbuffer *gw_h2_side_response_output(void *arg, size_t *room) {
    gw_h2_stream_t *stream = arg;
    size_t queued = evbuffer_get_length(stream->response_body);
    *room = queued >= GW_H2_RESPONSE_HIGH ? 0 : GW_H2_RESPONSE_HIGH - queued;
    return stream->response_body;
}

static int gw_h2_side_response_head(void *arg, const gw_head_t *head, int status, bool final,
                                    bool close) {
    (void)close;
    gw_h2_stream_t *stream = arg;
    nghttp2_nv *fields;
    int count = gw_h2_fields(stream, head, 0, head->header_count, status, &fields);
    if (count < 0)
        return -1;
    if (!final) {
        /* 100 Continue, 103 Early Hints: a HEADERS frame of their own. */
        nghttp2_submit_headers(stream->h2->session, NGHTTP2_FLAG_NONE, stream->id, NULL, fields,
                               (size_t)count, NULL);
        return 0;
    }
    /* RFC 9110 §6.4.1: no content for HEAD, 204 and 304; END_STREAM comes with the head
     * (so does a sandbox's trailers-only gRPC answer). */
    bool body = strcmp(stream->method, "HEAD") != 0 && status != 204 && status != 304 &&
                stream->exchange.response_state != GW_RESPONSE_DONE;
    gw_h2_stream_submit(stream, fields, (size_t)count, body);
    return 0;
}

static void gw_h2_side_hold(void *arg) { (void)arg; }

/* New response bytes (or their end): a deferred body goes on. */
static void gw_h2_stream_resume(gw_h2_stream_t *stream) {
    if (!stream->data_deferred || stream->h2->session == NULL)
        return;
    if (evbuffer_get_length(stream->response_body) == 0 && !stream->response_end)
        return;
    stream->data_deferred = false;
    nghttp2_session_resume_data(stream->h2->session, stream->id);
}

static void gw_h2_side_flush(void *arg) { gw_h2_stream_resume(arg); }

static void gw_h2_side_response_wait(void *arg) {
    ((gw_h2_stream_t *)arg)->response_waiting = true;
}

static int gw_h2_side_splice_fd(void *arg) {
    (void)arg;
    return -1;
}

/* The request is answered: the exchange is logged and released, the body
 * leaves as the client's window allows. */
static void gw_h2_stream_answered(gw_h2_stream_t *stream) {
    stream->response_end = true;
    gw_exchange_finish(&stream->exchange);
    gw_h2_discard_request(stream);
    gw_h2_stream_resume(stream);
}

/* The gateway's own answer to a gRPC request: HTTP 200 and a trailers-only
 * response, so that gRPC clients see a status, not a protocol error. */
static void gw_h2_grpc_error(gw_h2_stream_t *stream, int grpc_status, const char *message) {
    char status_text[12], message_text[512];
    int status_digits = snprintf(status_text, sizeof(status_text), "%d", grpc_status);
    size_t message_length = gw_grpc_message(message, message_text, sizeof(message_text));
    gw_field_t fields[] = {
        {"content-type", "application/grpc", 16},
        {"grpc-status", status_text, (size_t)status_digits},
        {"grpc-message", message_text, message_length},
    };
    if (gw_h2_submit_own(stream, 200, fields, sizeof(fields) / sizeof(fields[0]), false) < 0)
        nghttp2_submit_rst_stream(stream->h2->session, NGHTTP2_FLAG_NONE, stream->id,
                                  NGHTTP2_INTERNAL_ERROR);
    gw_h2_stream_answered(stream);
}

static void gw_h2_side_error(void *arg, int status, const char *message, bool keep_alive) {
    (void)keep_alive;
    gw_h2_stream_t *stream = arg;
    gw_exchange_t *exchange = &stream->exchange;
    int grpc_status = exchange->grpc ? gw_grpc_status(status, message != NULL ? message : "") : 0;
    if (grpc_status != 0) {
        gw_h2_grpc_error(stream, grpc_status, message != NULL ? message : gw_status_reason(status));
        return;
    }
    bool html = stream->head_done && gw_error_head_wants_html(&stream->head);
    gw_error_extra_t extra;
    gw_exchange_error_extra(exchange, &stream->head, &extra);
    char length_text[24];
    if (gw_error_render_body(stream->response_body, status, message,
                             exchange->routed ? exchange->target.sandbox_id : NULL,
                             exchange->routed ? exchange->target.port : 0, html,
                             extra.form_target) != 0) {
        nghttp2_submit_rst_stream(stream->h2->session, NGHTTP2_FLAG_NONE, stream->id,
                                  NGHTTP2_INTERNAL_ERROR);
        gw_exchange_finish(exchange);
        return;
    }
    size_t length = evbuffer_get_length(stream->response_body);
    int length_digits = snprintf(length_text, sizeof(length_text), "%zu", length);
    const char *content_type = gw_error_content_type(html);
    gw_field_t fields[] = {
        {"content-type", content_type, strlen(content_type)},
        {"content-length", length_text, (size_t)length_digits},
        {"cache-control", "no-store", 8},
        {"access-control-allow-origin", extra.origin, extra.origin_length},
        {"access-control-allow-credentials", "true", 4},
        {"vary", "Origin", 6},
    };
    exchange->bytes_sent += length;
    bool body = stream->method == NULL || strcmp(stream->method, "HEAD") != 0;
    if (!body)
        evbuffer_drain(stream->response_body, length);
    size_t count = sizeof(fields) / sizeof(fields[0]) - (extra.origin != NULL ? 0 : 3);
    if (gw_h2_submit_own(stream, status, fields, count, body) < 0)
        nghttp2_submit_rst_stream(stream->h2->session, NGHTTP2_FLAG_NONE, stream->id,
                                  NGHTTP2_INTERNAL_ERROR);
    gw_h2_stream_answered(stream);
}

static void gw_h2_side_abort(void *arg);

static void gw_h2_side_respond(void *arg, int status, const gw_field_t *fields, size_t count,
                               bool keep_alive) {
    (void)keep_alive;
    gw_h2_stream_t *stream = arg;
    if (gw_h2_submit_own(stream, status, fields, count, false) < 0) {
        gw_h2_side_abort(stream);
        return;
    }
    gw_h2_stream_answered(stream);
}

/* The sandbox's response is whole in the stream's buffer: its trailers (a
 * chunked response's, for a client that said TE: trailers) follow the body. */
static void gw_h2_side_finished(void *arg, bool keep_alive) {
    (void)keep_alive;
    gw_h2_stream_t *stream = arg;
    const gw_head_t *head = &stream->exchange.response_head;
    if (stream->te_trailers && head->in_trailers && head->trailer_start < head->header_count) {
        int count = gw_h2_fields(stream, head, head->trailer_start, head->header_count, 0,
                                 &stream->trailers);
        stream->trailer_count = count > 0 ? (size_t)count : 0;
    }
    gw_h2_stream_answered(stream);
}

/* A started response cannot be finished: only this stream is reset. */
static void gw_h2_side_abort(void *arg) {
    gw_h2_stream_t *stream = arg;
    if (stream->h2->session != NULL)
        nghttp2_submit_rst_stream(stream->h2->session, NGHTTP2_FLAG_NONE, stream->id,
                                  NGHTTP2_INTERNAL_ERROR);
    gw_exchange_finish(&stream->exchange);
    gw_h2_discard_request(stream);
}

static void gw_h2_side_upgraded(void *arg, struct gw_upstream *upstream) {
    (void)upstream;
    gw_h2_side_abort(arg); /* never asked for: an HTTP/2 request is no upgrade */
}

static const gw_exchange_side_t gw_h2_side = {
    .decoded_body = true,
    .enter = gw_h2_side_enter,
    .leave = gw_h2_side_leave,
    .deadline = gw_h2_side_deadline,
    .request_ready = gw_h2_side_request_ready,
    .response_output = gw_h2_side_response_output,
    .response_head = gw_h2_side_response_head,
    .hold = gw_h2_side_hold,
    .flush = gw_h2_side_flush,
    .response_wait = gw_h2_side_response_wait,
    .splice_fd = gw_h2_side_splice_fd,
    .error = gw_h2_side_error,
    .respond = gw_h2_side_respond,
    .finished = gw_h2_side_finished,
    .abort = gw_h2_side_abort,
    .upgraded = gw_h2_side_upgraded,
};

/* ---- streams ---- */

/* A stream its worker kept (its buffers empty, its timer not pending), or a new one. Keeping
 * them spares each stream four allocations and frees (the stream, its two buffers, its timer);
 * the stream's 2 KiB take malloc's slow path for large chunks. */
static gw_h2_stream_t *gw_h2_stream_take(gw_worker_t *worker) {
    gw_h2_stream_t *stream = worker->h2_streams_kept;
    if (stream != NULL) {
        worker->h2_streams_kept = stream->kept_next;
        worker->h2_streams_kept_count--;
        struct evbuffer *request_body = stream->request_body;
        struct evbuffer *response_body = stream->response_body;
        struct event *timer = stream->timer;
        memset(stream, 0, sizeof(*stream));
        stream->request_body = request_body;
        stream->response_body = response_body;
        stream->timer = timer;
        return stream;
    }
    stream = calloc(1, sizeof(*stream));
    if (stream == NULL)
        return NULL;
    stream->request_body = evbuffer_new();
    stream->response_body = evbuffer_new();
    stream->timer = evtimer_new(worker->base, gw_h2_stream_timer, stream);
    if (stream->request_body == NULL || stream->response_body == NULL || stream->timer == NULL) {
        gw_h2_stream_release(stream);
        return NULL;
    }
    return stream;
}

static gw_h2_stream_t *gw_h2_stream_new(gw_h2_t *h2, int32_t id) {
    gw_conn_t *conn = h2->conn;
    gw_h2_stream_t *stream = gw_h2_stream_take(conn->worker);
    if (stream == NULL)
        return NULL;
    stream->h2 = h2;
    stream->id = id;
    arena_init_pooled(&stream->arena, &conn->worker->request_blocks);
    gw_head_reset(&stream->head, &stream->arena);
    gw_exchange_init(&stream->exchange, conn->worker, &gw_h2_side, stream, &stream->arena,
                     conn->address_text, conn->https);
    stream->exchange.protocol = GW_PROTOCOL_H2;
    gw_exchange_begin(&stream->exchange);
    TAILQ_INSERT_TAIL(&h2->streams, stream, link);
    if (h2->stream_count++ == 0)
        gw_conn_clear_deadline(conn);
    GW_METRIC_ADD(&conn->worker->metrics, h2_streams, 1);
    gw_h2_stream_deadline(stream, conn->worker->config->client_header_timeout_ms);
    return stream;
}

/* Frees a stream's memory: its buffers, its timer and itself. */
static void gw_h2_stream_release(gw_h2_stream_t *stream) {
    if (stream->timer != NULL)
        event_free(stream->timer);
    if (stream->request_body != NULL)
        evbuffer_free(stream->request_body);
    if (stream->response_body != NULL)
        evbuffer_free(stream->response_body);
    free(stream);
}

/* The stream is done (the exchange was finished when it closed): its worker
 * keeps it for a stream to come, or it is freed. */
static void gw_h2_stream_free(gw_h2_stream_t *stream) {
    gw_exchange_finish(&stream->exchange);
    gw_exchange_reset(&stream->exchange);
    arena_free(&stream->arena);
    gw_worker_t *worker = stream->exchange.worker;
    if (worker->h2_streams_kept_count == GW_H2_STREAMS_KEPT) {
        gw_h2_stream_release(stream);
        return;
    }
    evtimer_del(stream->timer);
    evbuffer_drain(stream->request_body, evbuffer_get_length(stream->request_body));
    evbuffer_drain(stream->response_body, evbuffer_get_length(stream->response_body));
    stream->kept_next = worker->h2_streams_kept;
    worker->h2_streams_kept = stream;
    worker->h2_streams_kept_count++;
}

void gw_h2_streams_kept_free(gw_worker_t *worker) {
    while (worker->h2_streams_kept != NULL) {
        gw_h2_stream_t *stream = worker->h2_streams_kept;
        worker->h2_streams_kept = stream->kept_next;
        gw_h2_stream_release(stream);
    }
    worker->h2_streams_kept_count = 0;
}

/* nghttp2 is done with the stream (ended both ways, or reset): the request is
 * logged (499 if never answered), its upstream released. */
static void gw_h2_stream_closed(gw_h2_stream_t *stream) {
    gw_h2_t *h2 = stream->h2;
    gw_conn_t *conn = h2->conn;
    stream->closed = true;
    gw_exchange_finish(&stream->exchange);
    evtimer_del(stream->timer);
    TAILQ_REMOVE(&h2->streams, stream, link);
    GW_METRIC_ADD(&conn->worker->metrics, h2_streams, -1);
    /* After a drain's last GOAWAY, nghttp2 wants nothing more once the last
     * stream closed, and gw_h2_send ends the connection. */
    if (--h2->stream_count == 0 && !h2->closed && !h2->draining)
        gw_conn_set_deadline(conn, conn->worker->config->client_idle_timeout_ms);
    if (stream->handlers == 0)
        gw_h2_stream_free(stream);
}

static const struct {
    int status;
    const char *message;
} gw_h2_refusals[] = {
    [GW_REQUEST_MALFORMED] = {400, GW_MESSAGE_BAD_REQUEST},
    [GW_REQUEST_NO_AUTHORITY] = {400, "Invalid host"},
    [GW_REQUEST_LOOP] = {508, GW_MESSAGE_LOOP},
    [GW_REQUEST_NO_MEMORY] = {500, GW_MESSAGE_NO_MEMORY},
};

/* A :path the request line of an HTTP/1.1 request can carry: origin-form
 * (or "*"), visible ASCII only (RFC 3986 percent-encodes the rest). */
static bool gw_h2_path_valid(const char *path) {
    if (path == NULL || (path[0] != '/' && strcmp(path, "*") != 0))
        return false;
    for (const char *at = path; *at != '\0'; at++) {
        if ((unsigned char)*at <= 0x20 || (unsigned char)*at >= 0x7f)
            return false;
    }
    return true;
}

/* The request's HEADERS ended: its head goes to the exchange, as an HTTP/1.1
 * connection's would (RFC 9113 §8.3: Host from :authority, Cookie joined, a
 * body of unknown length chunked). */
static void gw_h2_stream_head(gw_h2_stream_t *stream, bool end_stream) {
    gw_h2_t *h2 = stream->h2;
    gw_conn_t *conn = h2->conn;
    gw_head_t *head = &stream->head;
    stream->head_done = true;
    stream->request_end = end_stream;
    gw_h2_stream_deadline(stream, 0);
    head->head_complete = true;
    gw_request_t request = {
        .method = stream->method != NULL ? stream->method : "GET",
        .path = stream->path != NULL ? stream->path : "/",
        .keep_alive = true,
        .has_body = !end_stream,
    };
    request.idempotent = gw_method_idempotent(request.method);
    if (stream->too_large) {
        gw_exchange_refuse(&stream->exchange, head, &request, 431, GW_MESSAGE_HEAD_TOO_LARGE);
        return;
    }
    if (stream->cookie != NULL)
        gw_head_add(head, "cookie", 6, stream->cookie, stream->cookie_length);
    if (request.has_body && head->kind_count[GW_HEADER_CONTENT_LENGTH] == 0) {
        stream->chunked = true;
        gw_head_add(head, "transfer-encoding", 17, "chunked", 7);
    }
    if (stream->authority != NULL) {
        request.authority = stream->authority;
        request.authority_length = stream->authority_length;
    } else if (head->kind_count[GW_HEADER_HOST] == 1) {
        const gw_header_t *host = &head->headers[head->kind_first[GW_HEADER_HOST]];
        request.authority = host->value;
        request.authority_length = host->value_length;
    }
    const gw_server_t *server = conn->worker->server;
    /* CONNECT (no extended CONNECT is offered), and methods and paths no
     * HTTP/1.1 client could send (a sandbox's parser may not take them), are
     * refused. */
    gw_request_verdict_t verdict =
        head->failed ? GW_REQUEST_NO_MEMORY
        : strcmp(request.method, "CONNECT") == 0 || !gw_method_known(request.method) ||
                !gw_h2_path_valid(stream->path)
            ? GW_REQUEST_MALFORMED
            : gw_request_check_fields(head, server->instance, server->instance_length, &request);
    if (verdict != GW_REQUEST_OK) {
        gw_exchange_refuse(&stream->exchange, head, &request, gw_h2_refusals[verdict].status,
                           gw_h2_refusals[verdict].message);
        return;
    }
    gw_exchange_start(&stream->exchange, head, &request);
}

/* ---- nghttp2's callbacks ---- */

static gw_h2_stream_t *gw_h2_stream_of(nghttp2_session *session, int32_t id) {
    return nghttp2_session_get_stream_user_data(session, id);
}

/* Every frame's header, before its payload: where floods are counted. */
static int gw_h2_on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *frame,
                                void *user_data) {
    (void)session;
    gw_h2_t *h2 = user_data;
    switch (frame->type) {
    case NGHTTP2_HEADERS:
        h2->continuations = 0;
        break;
    case NGHTTP2_CONTINUATION:
        if (++h2->continuations > GW_H2_CONTINUATIONS_MAX)
            return gw_h2_calm(h2, "CONTINUATION flood");
        break;
    case NGHTTP2_SETTINGS:
        if ((frame->flags & NGHTTP2_FLAG_ACK) == 0 &&
            !gw_h2_bucket_take(&h2->settings, GW_H2_CONTROL_PER_SECOND))
            return gw_h2_calm(h2, "SETTINGS flood");
        break;
    case NGHTTP2_PING:
        if ((frame->flags & NGHTTP2_FLAG_ACK) == 0 &&
            !gw_h2_bucket_take(&h2->pings, GW_H2_CONTROL_PER_SECOND))
            return gw_h2_calm(h2, "PING flood");
        break;
    case NGHTTP2_DATA:
        if (frame->length == 0 && (frame->flags & NGHTTP2_FLAG_END_STREAM) == 0 &&
            !gw_h2_bucket_take(&h2->empty_data, GW_H2_CONTROL_PER_SECOND))
            return gw_h2_calm(h2, "empty DATA flood");
        break;
    case NGHTTP2_RST_STREAM:
        if (!gw_h2_bucket_take(&h2->resets, GW_H2_RESETS_PER_SECOND))
            return gw_h2_calm(h2, "rapid reset");
        break;
    default:
        break;
    }
    return 0;
}

static int gw_h2_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                                  void *user_data) {
    gw_h2_t *h2 = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gw_h2_stream_t *stream = gw_h2_stream_new(h2, frame->hd.stream_id);
    if (stream == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, stream);
    return 0;
}

/* Copies a pseudo-header's value into the arena; returns it, or NULL. */
static const char *gw_h2_copy(gw_h2_stream_t *stream, const uint8_t *value, size_t length) {
    char *copy = arena_alloc(&stream->arena, length + 1);
    if (copy == NULL) {
        stream->head.failed = true;
        return NULL;
    }
    memcpy(copy, value, length);
    copy[length] = '\0';
    return copy;
}

/* Joins a Cookie field to the ones before it. */
static void gw_h2_add_cookie(gw_h2_stream_t *stream, const uint8_t *value, size_t length) {
    size_t joined = stream->cookie_length + (stream->cookie != NULL ? 2 : 0) + length;
    char *cookie = arena_alloc(&stream->arena, joined + 1);
    if (cookie == NULL) {
        stream->head.failed = true;
        return;
    }
    size_t at = 0;
    if (stream->cookie != NULL) {
        memcpy(cookie, stream->cookie, stream->cookie_length);
        memcpy(cookie + stream->cookie_length, "; ", 2);
        at = stream->cookie_length + 2;
    }
    memcpy(cookie + at, value, length);
    cookie[joined] = '\0';
    stream->cookie = cookie;
    stream->cookie_length = joined;
}

static int gw_h2_on_header(nghttp2_session *session, const nghttp2_frame *frame,
                           const uint8_t *name, size_t name_length, const uint8_t *value,
                           size_t value_length, uint8_t flags, void *user_data) {
    (void)flags;
    gw_h2_t *h2 = user_data;
    gw_h2_stream_t *stream = gw_h2_stream_of(session, frame->hd.stream_id);
    if (stream == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    size_t limit = h2->conn->worker->config->max_header_size;
    stream->header_bytes += name_length + value_length + 32; /* RFC 9113 §6.5.2 */
    if (stream->header_bytes > limit * GW_H2_HEADER_BOMB_FACTOR) {
        if (!gw_h2_bucket_take(&h2->resets, GW_H2_RESETS_PER_SECOND))
            return gw_h2_calm(h2, "header list flood");
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (stream->header_bytes > limit)
        stream->too_large = true;
    if (stream->too_large)
        return 0;
    gw_head_t *head = &stream->head;
    if (stream->head_done) {
        /* Trailers: filtered as a chunked request's are (gw_http1_trailers_write). */
        if (!head->in_trailers) {
            head->in_trailers = true;
            head->trailer_start = head->header_count;
        }
        gw_head_add(head, (const char *)name, name_length, (const char *)value, value_length);
        return 0;
    }
    if (name_length > 0 && name[0] == ':') {
        const char *copy = gw_h2_copy(stream, value, value_length);
        if (name_length == 7 && memcmp(name, ":method", 7) == 0) {
            stream->method = copy;
        } else if (name_length == 5 && memcmp(name, ":path", 5) == 0) {
            stream->path = copy;
        } else if (name_length == 7 && memcmp(name, ":scheme", 7) == 0) {
            stream->scheme = copy;
        } else if (name_length == 10 && memcmp(name, ":authority", 10) == 0) {
            stream->authority = copy;
            stream->authority_length = value_length;
        }
        return 0;
    }
    if (name_length == 6 && memcmp(name, "cookie", 6) == 0) {
        gw_h2_add_cookie(stream, value, value_length);
        return 0;
    }
    if (name_length == 2 && memcmp(name, "te", 2) == 0)
        stream->te_trailers = true; /* nghttp2 lets "trailers" alone through */
    gw_head_add(head, (const char *)name, name_length, (const char *)value, value_length);
    return 0;
}

static int gw_h2_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                               void *user_data) {
    (void)user_data;
    gw_h2_stream_t *stream = gw_h2_stream_of(session, frame->hd.stream_id);
    if (stream == NULL)
        return 0;
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && !stream->head_done) {
        stream->handlers++;
        gw_h2_stream_head(stream, end_stream);
        stream->handlers--;
        return 0;
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) && end_stream) {
        stream->request_end = true;
        stream->handlers++;
        if (stream->exchange.state == GW_EXCHANGE_DONE)
            gw_h2_discard_request(stream);
        else
            gw_h2_forward_request(stream);
        stream->handlers--;
    }
    return 0;
}

static int gw_h2_on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                                    const uint8_t *data, size_t length, void *user_data) {
    (void)flags;
    (void)user_data;
    gw_h2_stream_t *stream = gw_h2_stream_of(session, stream_id);
    if (stream == NULL || stream->exchange.state == GW_EXCHANGE_DONE) {
        nghttp2_session_consume(session, stream_id, length);
        return 0;
    }
    gw_exchange_count_received(&stream->exchange, length);
    if (evbuffer_add(stream->request_body, data, length) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    stream->handlers++;
    gw_h2_forward_request(stream);
    stream->handlers--;
    return 0;
}

static int gw_h2_on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                                 void *user_data) {
    (void)error_code;
    (void)user_data;
    gw_h2_stream_t *stream = gw_h2_stream_of(session, stream_id);
    if (stream == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    size_t unread = evbuffer_get_length(stream->request_body);
    if (unread > 0)
        nghttp2_session_consume_connection(session, unread);
    evbuffer_drain(stream->request_body, unread);
    gw_h2_stream_closed(stream);
    return 0;
}

/* Streams reset for the client's fault (malformed, refused above the limit)
 * count as the resets it causes, as the ones it sends do. */
static int gw_h2_on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
                               void *user_data) {
    gw_h2_t *h2 = user_data;
    if (frame->hd.type == NGHTTP2_RST_STREAM &&
        (frame->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR ||
         frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM ||
         frame->rst_stream.error_code == NGHTTP2_STREAM_CLOSED ||
         frame->rst_stream.error_code == NGHTTP2_FLOW_CONTROL_ERROR) &&
        !gw_h2_bucket_take(&h2->resets, GW_H2_RESETS_PER_SECOND)) {
        gw_h2_calm(h2, "streams refused");
        nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
        return 0;
    }
    /* RFC 9113 §8.1: a complete response may end a request still being sent. */
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        gw_h2_stream_t *stream = gw_h2_stream_of(session, frame->hd.stream_id);
        if (stream != NULL && !stream->request_end)
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                      NGHTTP2_NO_ERROR);
    }
    return 0;
}

/* ---- the connection ---- */

static nghttp2_session *gw_h2_session_new(gw_h2_t *h2) {
    nghttp2_session_callbacks *callbacks;
    nghttp2_option *option;
    if (nghttp2_session_callbacks_new(&callbacks) != 0)
        return NULL;
    if (nghttp2_option_new(&option) != 0) {
        nghttp2_session_callbacks_del(callbacks);
        return NULL;
    }
    nghttp2_session_callbacks_set_send_callback(callbacks, gw_h2_on_send);
    nghttp2_session_callbacks_set_send_data_callback(callbacks, gw_h2_on_send_data);
    nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, gw_h2_frame_length);
    nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, gw_h2_on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, gw_h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, gw_h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, gw_h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, gw_h2_on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, gw_h2_on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, gw_h2_on_frame_send);
    /* Windows reopen as bodies reach the sandbox (gw_h2_forward_request). */
    nghttp2_option_set_no_auto_window_update(option, 1);
    /* The gateway's own limits (gw_h2_on_begin_frame) come first; nghttp2's
     * stay as a second line. */
    nghttp2_option_set_max_continuations(option, GW_H2_CONTINUATIONS_MAX * 2);
    nghttp2_mem mem = gw_worker_nghttp2_mem(h2->conn->worker);
    nghttp2_session *session = NULL;
    if (nghttp2_session_server_new3(&session, callbacks, h2, option, &mem) != 0)
        session = NULL;
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(callbacks);
    return session;
}

static void gw_h2_drain_step(evutil_socket_t fd, short events, void *arg);

static void gw_h2_send_later(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_h2_t *h2 = arg;
    gw_conn_t *conn = h2->conn;
    gw_conn_enter(conn);
    gw_h2_send(h2);
    gw_conn_leave(conn);
}

int gw_h2_start(gw_conn_t *conn) {
    const gw_config_t *config = conn->worker->config;
    gw_h2_t *h2 = calloc(1, sizeof(*h2));
    if (h2 == NULL)
        return -1;
    h2->conn = conn;
    TAILQ_INIT(&h2->streams);
    h2->session = gw_h2_session_new(h2);
    h2->drain_timer = evtimer_new(conn->worker->base, gw_h2_drain_step, h2);
    h2->send_event = event_new(conn->worker->base, -1, 0, gw_h2_send_later, h2);
    uint64_t streams = (uint64_t)config->http2_max_concurrent_streams;
    uint64_t window = streams * GW_H2_STREAM_WINDOW;
    if (window > GW_H2_CONNECTION_WINDOW_MAX)
        window = GW_H2_CONNECTION_WINDOW_MAX;
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GW_H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)config->max_header_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (h2->session != NULL)
        GW_METRIC_ADD(&conn->worker->metrics, h2_connections, 1);
    if (h2->session == NULL || h2->drain_timer == NULL || h2->send_event == NULL ||
        nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, settings,
                                sizeof(settings) / sizeof(settings[0])) != 0 ||
        nghttp2_session_set_local_window_size(h2->session, NGHTTP2_FLAG_NONE, 0, (int32_t)window) !=
            0) {
        conn->h2 = h2;
        return -1; /* gw_conn_close frees it */
    }
    conn->h2 = h2;
    conn->state = GW_CONN_H2;
    log_debug("client %s: HTTP/2", conn->address_text);
    gw_transport_read_limit(&conn->transport, GW_READ_HIGH);
    gw_conn_set_deadline(conn, config->client_idle_timeout_ms);
    if (conn->worker->draining)
        gw_h2_drain(h2);
    gw_h2_readable(h2);
    return 0;
}

void gw_h2_readable(gw_h2_t *h2) {
    gw_conn_t *conn = h2->conn;
    struct evbuffer *input = gw_transport_input(&conn->transport);
    h2->in_session++;
    while (h2->session != NULL && !h2->closing) {
        struct evbuffer_iovec piece;
        if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1 || piece.iov_len == 0)
            break;
        ssize_t taken = nghttp2_session_mem_recv(h2->session, piece.iov_base, piece.iov_len);
        if (taken < 0) {
            log_debug("client %s: HTTP/2: %s", conn->address_text, nghttp2_strerror((int)taken));
            if (taken == NGHTTP2_ERR_FLOODED)
                h2->calm = true;
            if (taken != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
                nghttp2_session_terminate_session(h2->session, h2->calm ? NGHTTP2_ENHANCE_YOUR_CALM
                                                                        : NGHTTP2_PROTOCOL_ERROR);
            h2->closing = true;
            break;
        }
        evbuffer_drain(input, (size_t)taken);
    }
    if (h2->closing)
        evbuffer_drain(input, evbuffer_get_length(input));
    h2->in_session--;
    gw_h2_send(h2);
}

void gw_h2_writable(gw_h2_t *h2) {
    gw_transport_write_low(&h2->conn->transport, 0);
    gw_h2_send(h2);
}

void gw_h2_timeout(gw_h2_t *h2) {
    if (h2->session == NULL || h2->stream_count > 0)
        return;
    /* Idle for client_idle_timeout: GOAWAY, and close. */
    nghttp2_session_terminate_session(h2->session, NGHTTP2_NO_ERROR);
    gw_h2_send(h2);
}

/* The second GOAWAY of a drain names the last stream that will be served;
 * the first one (the largest ID) let requests already on their way arrive. */
static void gw_h2_drain_step(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_h2_t *h2 = arg;
    gw_conn_t *conn = h2->conn;
    gw_conn_enter(conn);
    if (h2->session != NULL) {
        nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h2->session),
                              NGHTTP2_NO_ERROR, NULL, 0);
        gw_h2_send(h2);
    }
    gw_conn_leave(conn);
}

void gw_h2_drain(gw_h2_t *h2) {
    if (h2->session == NULL || h2->draining)
        return;
    h2->draining = true;
    nghttp2_submit_shutdown_notice(h2->session);
    struct timeval delay = clock_timeval(GW_H2_DRAIN_STEP_MS);
    evtimer_add(h2->drain_timer, &delay);
    gw_h2_send(h2);
}

void gw_h2_close(gw_h2_t *h2) {
    if (h2 == NULL || h2->closed)
        return;
    h2->closed = true;
    gw_conn_t *conn = h2->conn;
    /* Streams end first: their exchanges are logged and released. */
    gw_h2_stream_t *stream;
    while ((stream = TAILQ_FIRST(&h2->streams)) != NULL) {
        nghttp2_session_set_stream_user_data(h2->session, stream->id, NULL);
        gw_h2_stream_closed(stream);
    }
    if (h2->session != NULL) {
        nghttp2_session_del(h2->session);
        h2->session = NULL;
        GW_METRIC_ADD(&conn->worker->metrics, h2_connections, -1);
    }
    if (h2->drain_timer != NULL)
        evtimer_del(h2->drain_timer);
    if (h2->send_event != NULL)
        event_del(h2->send_event);
}

void gw_h2_free(gw_h2_t *h2) {
    if (h2 == NULL)
        return;
    gw_h2_close(h2);
    if (h2->drain_timer != NULL)
        event_free(h2->drain_timer);
    if (h2->send_event != NULL)
        event_free(h2->send_event);
    free(h2);
}
