/* HTTP/2 to sandboxes (h2c, prior knowledge): pooled sessions that carry many streams. */
#include "gateway/upstream_h2.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "gateway/upstream.h"
#include "gateway/worker.h"
#include "util/clock.h"
#include "util/log.h"

enum {
    /* A stream's receive window: what a sandbox may send ahead of a slow client. */
    GW_H2UP_STREAM_WINDOW = 256 * 1024,
    GW_H2UP_CONNECTION_WINDOW = 16 * 1024 * 1024,
    /* Streams a session takes before the sandbox's SETTINGS say how many. */
    GW_H2UP_STREAMS_BEFORE_SETTINGS = 100,
    /* The request body buffered per stream before the owner waits. */
    GW_H2UP_REQUEST_HIGH = 256 * 1024,
};

/* The sessions of one key. */
typedef struct gw_h2up_slot {
    TAILQ_HEAD(gw_h2up_sessions, gw_h2up_session) sessions;
    strmap_entry_t *entry;
} gw_h2up_slot_t;

struct gw_h2up_session {
    gw_h2up_pool_t *pool;
    gw_h2up_slot_t *slot; /* NULL once it takes no new streams */
    TAILQ_ENTRY(gw_h2up_session) link;
    TAILQ_ENTRY(gw_h2up_session) idle_link; /* in the pool's idle, while idle_listed */
    gw_upstream_t *connection;
    nghttp2_session *session;
    TAILQ_HEAD(gw_h2up_streams, gw_h2up_stream) streams;
    size_t stream_count;
    struct event *idle_timer;
    struct event *send_event; /* sends from the loop, never inside an owner's call */
    int handlers;             /* callbacks running: a close waits for the last */
    bool connected;           /* the dial completed */
    bool settings;            /* the sandbox's SETTINGS arrived: it speaks HTTP/2 */
    bool closed;
    bool send_pending;
    bool idle_listed;
};

struct gw_h2up_stream {
    gw_h2up_session_t *session; /* NULL once the session is gone */
    TAILQ_ENTRY(gw_h2up_stream) link;
    int32_t id;
    const gw_h2up_handler_t *handler;
    void *owner;
    gw_head_t *head;
    struct evbuffer *response_output;
    struct evbuffer *request_body;
    bool request_end;
    bool data_deferred;
    bool writable_wanted;
    bool final_head; /* a final response head arrived: what follows is body, then trailers */
    int status;      /* of the head being received */
    /* Body bytes handed to the owner and not yet consumed (gw_h2up_consume): the connection's
     * window they hold is given back when the stream ends, whether or not the owner's client
     * drained them by then, or a few such streams would shut the window for all. */
    size_t unconsumed;
};

static void gw_h2up_session_close(gw_h2up_session_t *session, gw_h2up_failure_t failure, int error);

/* The session takes no new streams: out of its key's list. */
static void gw_h2up_session_unslot(gw_h2up_session_t *session) {
    gw_h2up_slot_t *slot = session->slot;
    if (slot == NULL)
        return;
    TAILQ_REMOVE(&slot->sessions, session, link);
    if (TAILQ_EMPTY(&slot->sessions)) {
        strmap_remove(&session->pool->sessions, slot->entry);
        free(slot);
    }
    session->slot = NULL;
}

/* ---- sending ---- */

static void gw_h2up_session_free(gw_h2up_session_t *session);
static void gw_h2up_send(gw_h2up_session_t *session);

static void gw_h2up_enter(gw_h2up_session_t *session) { session->handlers++; }

/* In the pool's idle sessions (those a shortage of descriptors closes) or not. */
static void gw_h2up_set_idle(gw_h2up_session_t *session, bool idle) {
    if (idle == session->idle_listed)
        return;
    if (idle)
        TAILQ_INSERT_TAIL(&session->pool->idle, session, idle_link);
    else
        TAILQ_REMOVE(&session->pool->idle, session, idle_link);
    session->idle_listed = idle;
}

static void gw_h2up_leave(gw_h2up_session_t *session) {
    if (--session->handlers > 0)
        return;
    if (session->closed) {
        gw_h2up_session_free(session);
        return;
    }
    if (session->send_pending)
        gw_h2up_send(session);
}

/* Sends on this loop turn, after the owner's call returned. */
static void gw_h2up_schedule(gw_h2up_session_t *session) {
    if (!session->closed && !event_pending(session->send_event, EV_WRITE, NULL))
        event_active(session->send_event, EV_WRITE, 0);
}

static void gw_h2up_send_now(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_h2up_send(arg);
}

/* Writes what nghttp2 has to send into the connection; never from inside an
 * nghttp2 callback (the session then sends on the way out). */
static void gw_h2up_send(gw_h2up_session_t *session) {
    if (session->closed || !session->connected)
        return;
    if (session->handlers > 0) {
        session->send_pending = true;
        return;
    }
    session->handlers++;
    struct evbuffer *output = gw_transport_output(&session->connection->transport);
    for (;;) {
        const uint8_t *data;
        ssize_t length = nghttp2_session_mem_send(session->session, &data);
        if (length < 0) {
            gw_h2up_session_close(session, GW_H2UP_LOST, EPROTO);
            break;
        }
        if (length == 0)
            break;
        evbuffer_add(output, data, (size_t)length);
    }
    if (!session->closed) {
        gw_transport_flush(&session->connection->transport, false);
        if (session->stream_count == 0 && !nghttp2_session_want_read(session->session) &&
            !nghttp2_session_want_write(session->session))
            gw_h2up_session_close(session, GW_H2UP_LOST, 0);
    }
    session->send_pending = false;
    gw_h2up_leave(session);
}

/* ---- streams ---- */

static gw_h2up_stream_t *gw_h2up_stream_of(nghttp2_session *session, int32_t id) {
    return nghttp2_session_get_stream_user_data(session, id);
}

/* The stream no longer belongs to its session (it ended, or the session went). */
static void gw_h2up_stream_detach(gw_h2up_stream_t *stream) {
    gw_h2up_session_t *session = stream->session;
    if (session == NULL)
        return;
    TAILQ_REMOVE(&session->streams, stream, link);
    stream->session = NULL;
    if (--session->stream_count == 0 && !session->closed) {
        if (session->slot == NULL) {
            gw_h2up_session_close(session, GW_H2UP_LOST, 0); /* draining, and drained */
        } else {
            struct timeval idle =
                clock_timeval(session->pool->worker->config->upstream_idle_timeout_ms);
            evtimer_add(session->idle_timer, &idle);
            gw_h2up_set_idle(session, true);
        }
    }
}

/* The stream is over for nghttp2's callbacks (completed, reset or refused,
 * or its session gone) and leaves its session. */
static void gw_h2up_stream_end(gw_h2up_stream_t *stream) {
    if (stream->unconsumed > 0) {
        nghttp2_session_consume_connection(stream->session->session, stream->unconsumed);
        stream->unconsumed = 0;
        gw_h2up_schedule(stream->session);
    }
    nghttp2_session_set_stream_user_data(stream->session->session, stream->id, NULL);
    gw_h2up_stream_detach(stream);
}

/* nghttp2 asks for request body bytes. */
static ssize_t gw_h2up_read_body(nghttp2_session *nghttp2, int32_t id, uint8_t *buffer,
                                 size_t length, uint32_t *flags, nghttp2_data_source *source,
                                 void *user_data) {
    (void)source;
    (void)user_data;
    gw_h2up_stream_t *stream = gw_h2up_stream_of(nghttp2, id);
    if (stream == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* its owner left: reset */
    int taken = evbuffer_remove(stream->request_body, buffer, length);
    if (taken < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (evbuffer_get_length(stream->request_body) == 0 && stream->request_end)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    bool deferred = taken == 0 && !(*flags & NGHTTP2_DATA_FLAG_EOF);
    stream->data_deferred = deferred;
    if (stream->writable_wanted &&
        evbuffer_get_length(stream->request_body) < GW_H2UP_REQUEST_HIGH / 2) {
        /* Last: the owner may add more, or end the stream. */
        stream->writable_wanted = false;
        stream->handler->writable(stream->owner);
    }
    return deferred ? NGHTTP2_ERR_DEFERRED : taken;
}

/* ---- nghttp2's callbacks ---- */

static int gw_h2up_on_begin_headers(nghttp2_session *nghttp2, const nghttp2_frame *frame,
                                    void *user_data) {
    (void)user_data;
    gw_h2up_stream_t *stream = gw_h2up_stream_of(nghttp2, frame->hd.stream_id);
    if (stream == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (stream->final_head) {
        /* Trailers: after the fields of the head. */
        stream->head->trailer_start = stream->head->header_count;
        stream->head->in_trailers = true;
    } else {
        gw_head_reset(stream->head, stream->head->arena);
    }
    return 0;
}

static int gw_h2up_on_header(nghttp2_session *nghttp2, const nghttp2_frame *frame,
                             const uint8_t *name, size_t name_length, const uint8_t *value,
                             size_t value_length, uint8_t flags, void *user_data) {
    (void)flags;
    (void)user_data;
    gw_h2up_stream_t *stream = gw_h2up_stream_of(nghttp2, frame->hd.stream_id);
    if (stream == NULL)
        return 0;
    if (name_length == 7 && memcmp(name, ":status", 7) == 0) {
        int status = 0;
        for (size_t i = 0; i < value_length && i < 3; i++)
            status = status * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        stream->status = value_length == 3 ? status : 0;
        return 0;
    }
    if (name_length > 0 && name[0] == ':')
        return 0;
    if (gw_head_add(stream->head, (const char *)name, name_length, (const char *)value,
                    value_length) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int gw_h2up_on_frame_recv(nghttp2_session *nghttp2, const nghttp2_frame *frame,
                                 void *user_data) {
    gw_h2up_session_t *session = user_data;
    if (frame->hd.type == NGHTTP2_SETTINGS) {
        session->settings = true;
        return 0;
    }
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        /* No new streams here; nghttp2 closes those above the last one as refused. */
        gw_h2up_session_unslot(session);
        return 0;
    }
    gw_h2up_stream_t *stream = gw_h2up_stream_of(nghttp2, frame->hd.stream_id);
    if (stream == NULL)
        return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        if (stream->final_head) {
            if (end) {
                gw_h2up_stream_end(stream);
                stream->handler->trailers(stream->owner, stream->head);
            }
            return 0;
        }
        int status = stream->status;
        if (status < 100 || status > 999)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (status >= 200)
            stream->final_head = true;
        if (end)
            gw_h2up_stream_end(stream);
        stream->handler->headers(stream->owner, stream->head, status, end);
    } else if (frame->hd.type == NGHTTP2_DATA && end) {
        gw_h2up_stream_end(stream);
        stream->handler->end(stream->owner);
    }
    return 0;
}

static int gw_h2up_on_data_chunk(nghttp2_session *nghttp2, uint8_t flags, int32_t id,
                                 const uint8_t *data, size_t length, void *user_data) {
    (void)flags;
    gw_h2up_session_t *session = user_data;
    gw_h2up_stream_t *stream = gw_h2up_stream_of(nghttp2, id);
    if (stream == NULL || !stream->final_head) {
        /* Its owner left (or a body before a head): the window reopens. */
        nghttp2_session_consume(session->session, id, length);
        return 0;
    }
    if (evbuffer_add(stream->response_output, data, length) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    stream->unconsumed += length;
    stream->handler->data(stream->owner, length);
    return 0;
}

static int gw_h2up_on_stream_close(nghttp2_session *nghttp2, int32_t id, uint32_t error_code,
                                   void *user_data) {
    (void)user_data;
    gw_h2up_stream_t *stream = gw_h2up_stream_of(nghttp2, id);
    if (stream == NULL)
        return 0; /* completed, or its owner left */
    gw_h2up_stream_end(stream);
    bool refused = error_code == NGHTTP2_REFUSED_STREAM && !stream->final_head;
    stream->handler->failed(stream->owner, refused ? GW_H2UP_REFUSED : GW_H2UP_RESET, ECONNRESET);
    return 0;
}

/* ---- the connection ---- */

static void gw_h2up_on_readable(void *arg) {
    gw_h2up_session_t *session = arg;
    gw_h2up_enter(session);
    struct evbuffer *input = gw_transport_input(&session->connection->transport);
    gw_transport_read_more(&session->connection->transport, GW_H2UP_CONNECTION_WINDOW);
    while (!session->closed && evbuffer_get_length(input) > 0) {
        struct evbuffer_iovec piece;
        if (evbuffer_peek(input, -1, NULL, &piece, 1) < 1)
            break;
        ssize_t taken = nghttp2_session_mem_recv(session->session, piece.iov_base, piece.iov_len);
        if (taken < 0) {
            log_debug("h2c upstream %s: %s", session->connection->key,
                      nghttp2_strerror((int)taken));
            gw_h2up_session_close(session, session->settings ? GW_H2UP_LOST : GW_H2UP_NO_H2,
                                  EPROTO);
            break;
        }
        evbuffer_drain(input, (size_t)taken);
    }
    session->send_pending = true;
    gw_h2up_leave(session);
}

static void gw_h2up_on_writable(void *arg) { (void)arg; }

static void gw_h2up_on_event(void *arg, gw_transport_event_t event) {
    gw_h2up_session_t *session = arg;
    int error = errno;
    gw_h2up_enter(session);
    if (event == GW_TRANSPORT_CONNECTED) {
        session->connected = true;
        gw_upstream_set_state(session->connection, GW_UPSTREAM_BUSY);
        gw_transport_read(&session->connection->transport, true);
        session->send_pending = true;
    } else if (!session->connected) {
        gw_h2up_session_close(session, GW_H2UP_UNREACHABLE,
                              event == GW_TRANSPORT_TIMEOUT ? ETIMEDOUT
                                                            : (error ? error : ECONNREFUSED));
    } else {
        gw_h2up_session_close(session, session->settings ? GW_H2UP_LOST : GW_H2UP_NO_H2,
                              error ? error : ECONNRESET);
    }
    gw_h2up_leave(session);
}

static const gw_transport_handler_t gw_h2up_connection_handler = {
    .readable = gw_h2up_on_readable,
    .writable = gw_h2up_on_writable,
    .event = gw_h2up_on_event,
};

static void gw_h2up_idle(evutil_socket_t fd, short events, void *arg) {
    (void)fd;
    (void)events;
    gw_h2up_session_t *session = arg;
    gw_h2up_enter(session);
    gw_h2up_set_idle(session, false);
    /* A GOAWAY, then the close once it is sent (gw_h2up_send sees nothing left to do). */
    if (session->stream_count == 0) {
        gw_h2up_session_unslot(session);
        nghttp2_session_terminate_session(session->session, NGHTTP2_NO_ERROR);
        session->send_pending = true;
    }
    gw_h2up_leave(session);
}

static void gw_h2up_session_free(gw_h2up_session_t *session) {
    gw_upstream_close(session->connection);
    if (session->idle_timer != NULL)
        event_free(session->idle_timer);
    if (session->send_event != NULL)
        event_free(session->send_event);
    nghttp2_session_del(session->session);
    free(session);
}

/* Fails every stream, closes the connection; the memory goes once no callback runs. */
static void gw_h2up_session_close(gw_h2up_session_t *session, gw_h2up_failure_t failure,
                                  int error) {
    if (session->closed)
        return;
    session->closed = true;
    gw_h2up_session_unslot(session);
    evtimer_del(session->idle_timer);
    gw_h2up_set_idle(session, false);
    event_del(session->send_event);
    gw_h2up_stream_t *stream;
    while ((stream = TAILQ_FIRST(&session->streams)) != NULL) {
        gw_h2up_stream_end(stream);
        stream->handler->failed(stream->owner, failure, error);
    }
    /* The connection goes with the memory: nghttp2 may still be reading its input. */
    gw_transport_read(&session->connection->transport, false);
    session->handlers++;
    gw_h2up_leave(session); /* frees it when no callback runs */
}

static gw_h2up_session_t *gw_h2up_session_new(gw_h2up_pool_t *pool, gw_h2up_slot_t *slot,
                                              const struct sockaddr *address,
                                              socklen_t address_length, const char *key,
                                              size_t key_length) {
    gw_h2up_session_t *session = calloc(1, sizeof(*session));
    if (session == NULL)
        return NULL;
    session->pool = pool;
    TAILQ_INIT(&session->streams);
    nghttp2_session_callbacks *callbacks;
    nghttp2_option *option;
    if (nghttp2_session_callbacks_new(&callbacks) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, gw_h2up_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, gw_h2up_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, gw_h2up_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, gw_h2up_on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, gw_h2up_on_stream_close);
    int created = -1;
    if (nghttp2_option_new(&option) == 0) {
        /* Windows reopen as the owner drains the body (gw_h2up_consume). */
        nghttp2_option_set_no_auto_window_update(option, 1);
        nghttp2_option_set_peer_max_concurrent_streams(option, GW_H2UP_STREAMS_BEFORE_SETTINGS);
        nghttp2_mem mem = gw_worker_nghttp2_mem(pool->worker);
        created = nghttp2_session_client_new3(&session->session, callbacks, session, option, &mem);
        nghttp2_option_del(option);
    }
    nghttp2_session_callbacks_del(callbacks);
    if (created != 0)
        goto fail;
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GW_H2UP_STREAM_WINDOW},
    };
    if (nghttp2_submit_settings(session->session, NGHTTP2_FLAG_NONE, settings, 2) != 0 ||
        nghttp2_session_set_local_window_size(session->session, NGHTTP2_FLAG_NONE, 0,
                                              GW_H2UP_CONNECTION_WINDOW) != 0)
        goto fail;
    session->idle_timer = evtimer_new(pool->worker->base, gw_h2up_idle, session);
    session->send_event = event_new(pool->worker->base, -1, 0, gw_h2up_send_now, session);
    if (session->idle_timer == NULL || session->send_event == NULL)
        goto fail;
    session->connection = gw_upstream_dial(pool->worker, address, address_length, key, key_length);
    if (session->connection == NULL)
        goto fail;
    gw_transport_set_handler(&session->connection->transport, &gw_h2up_connection_handler, session);
    session->slot = slot;
    TAILQ_INSERT_TAIL(&slot->sessions, session, link);
    return session;
fail:;
    int saved = errno;
    gw_h2up_session_free(session);
    errno = saved != 0 ? saved : ENOMEM;
    return NULL;
}

/* A session of key with room for one more stream, or a new one. */
static gw_h2up_session_t *gw_h2up_session_for(gw_h2up_pool_t *pool, const struct sockaddr *address,
                                              socklen_t address_length, const char *key,
                                              size_t key_length) {
    strmap_entry_t *found = strmap_get(&pool->sessions, key, key_length);
    gw_h2up_slot_t *slot = found != NULL ? found->value : NULL;
    if (slot != NULL) {
        gw_h2up_session_t *session;
        TAILQ_FOREACH(session, &slot->sessions, link) {
            uint32_t limit = session->settings
                                 ? nghttp2_session_get_remote_settings(
                                       session->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                                 : GW_H2UP_STREAMS_BEFORE_SETTINGS;
            if (session->stream_count < limit)
                return session;
        }
    } else {
        slot = calloc(1, sizeof(*slot));
        if (slot == NULL)
            return NULL;
        TAILQ_INIT(&slot->sessions);
        slot->entry = strmap_put(&pool->sessions, key, key_length, slot);
        if (slot->entry == NULL) {
            free(slot);
            return NULL;
        }
    }
    gw_h2up_session_t *session =
        gw_h2up_session_new(pool, slot, address, address_length, key, key_length);
    if (session == NULL && TAILQ_EMPTY(&slot->sessions)) {
        strmap_remove(&pool->sessions, slot->entry);
        free(slot);
    }
    return session;
}

/* ---- the owner's side ---- */

gw_h2up_stream_t *gw_h2up_open(gw_h2up_pool_t *pool, const struct sockaddr *address,
                               socklen_t address_length, const char *key, size_t key_length,
                               const nghttp2_nv *fields, size_t count, bool end, gw_head_t *head,
                               struct evbuffer *response_output, const gw_h2up_handler_t *handler,
                               void *owner) {
    gw_h2up_stream_t *stream = calloc(1, sizeof(*stream));
    if (stream == NULL)
        return NULL;
    stream->request_body = evbuffer_new();
    gw_h2up_session_t *session =
        stream->request_body != NULL
            ? gw_h2up_session_for(pool, address, address_length, key, key_length)
            : NULL;
    if (session == NULL) {
        int saved = errno;
        if (stream->request_body != NULL)
            evbuffer_free(stream->request_body);
        free(stream);
        errno = saved;
        return NULL;
    }
    stream->handler = handler;
    stream->owner = owner;
    stream->head = head;
    stream->response_output = response_output;
    stream->request_end = end;
    nghttp2_data_provider provider = {.read_callback = gw_h2up_read_body};
    stream->id = nghttp2_submit_request(session->session, NULL, fields, count,
                                        end ? NULL : &provider, stream);
    if (stream->id < 0) {
        evbuffer_free(stream->request_body);
        free(stream);
        errno = EPROTO;
        return NULL;
    }
    evtimer_del(session->idle_timer);
    gw_h2up_set_idle(session, false);
    stream->session = session;
    TAILQ_INSERT_TAIL(&session->streams, stream, link);
    session->stream_count++;
    GW_METRIC_ADD(&pool->worker->metrics, upstream_requests, 1);
    gw_h2up_schedule(session);
    return stream;
}

struct evbuffer *gw_h2up_request_body(gw_h2up_stream_t *stream) {
    return stream->request_body;
}

size_t gw_h2up_request_room(gw_h2up_stream_t *stream) {
    size_t queued = evbuffer_get_length(stream->request_body);
    if (queued >= GW_H2UP_REQUEST_HIGH) {
        stream->writable_wanted = true;
        return 0;
    }
    return GW_H2UP_REQUEST_HIGH - queued;
}

void gw_h2up_flush(gw_h2up_stream_t *stream, bool end) {
    stream->request_end = stream->request_end || end;
    gw_h2up_session_t *session = stream->session;
    if (session == NULL) /* it ended */
        return;
    if (stream->data_deferred) {
        stream->data_deferred = false;
        nghttp2_session_resume_data(session->session, stream->id);
    }
    gw_h2up_schedule(session);
}

void gw_h2up_consume(gw_h2up_stream_t *stream, size_t length) {
    gw_h2up_session_t *session = stream->session;
    if (session == NULL || length == 0)
        return;
    stream->unconsumed -= length < stream->unconsumed ? length : stream->unconsumed;
    nghttp2_session_consume(session->session, stream->id, length);
    gw_h2up_schedule(session);
}

void gw_h2up_stream_close(gw_h2up_stream_t *stream) {
    if (stream == NULL)
        return;
    gw_h2up_session_t *session = stream->session;
    if (session != NULL) {
        /* Its owner leaves first: the sandbox's side is cancelled. The last
         * stream of a draining session closes it: held until this returns. */
        gw_h2up_enter(session);
        nghttp2_submit_rst_stream(session->session, NGHTTP2_FLAG_NONE, stream->id, NGHTTP2_CANCEL);
        gw_h2up_stream_end(stream);
        gw_h2up_schedule(session);
        gw_h2up_leave(session);
    }
    evbuffer_free(stream->request_body);
    free(stream);
}

/* ---- the pool ---- */

int gw_h2up_pool_init(gw_h2up_pool_t *pool, struct gw_worker *worker) {
    pool->worker = worker;
    TAILQ_INIT(&pool->idle);
    return strmap_init(&pool->sessions);
}

size_t gw_h2up_pool_shed(gw_h2up_pool_t *pool, size_t count) {
    size_t closed = 0;
    gw_h2up_session_t *oldest;
    while (closed < count && (oldest = TAILQ_FIRST(&pool->idle)) != NULL) {
        GW_METRIC_ADD(&pool->worker->metrics, upstream_evictions, 1);
        gw_h2up_enter(oldest);
        gw_h2up_session_close(oldest, GW_H2UP_LOST, 0); /* no stream to fail */
        gw_h2up_leave(oldest);                          /* frees it, and its descriptor */
        closed++;
    }
    return closed;
}

static void gw_h2up_close_slot(strmap_t *map, strmap_entry_t *entry, void *arg) {
    (void)map;
    (void)arg;
    gw_h2up_slot_t *slot = entry->value;
    gw_h2up_session_t *session;
    while (!TAILQ_EMPTY(&slot->sessions)) {
        session = TAILQ_FIRST(&slot->sessions);
        bool last = TAILQ_NEXT(session, link) == NULL;
        gw_h2up_session_close(session, GW_H2UP_LOST, ECONNRESET); /* frees the slot with the last */
        if (last)
            break;
    }
}

void gw_h2up_pool_free(gw_h2up_pool_t *pool) {
    if (pool->sessions.buckets != NULL)
        strmap_foreach(&pool->sessions, gw_h2up_close_slot, NULL);
    strmap_free(&pool->sessions);
}
