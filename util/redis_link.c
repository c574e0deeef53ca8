/* One hiredis async connection kept up: connect timeout, handshake, logged outages, backoff. */
#include "util/redis_link.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include "util/clock.h"
#include "util/log.h"

enum {
    REDIS_LINK_BACKOFF_FIRST_MS = 50,
    REDIS_LINK_BACKOFF_MAX_MS = 1000, /* DESIGN.md: at most 1 s between attempts */
};

static const char *redis_link_error(const redisAsyncContext *context) {
    if (context->err != 0 && context->errstr != NULL)
        return context->errstr;
    if (context->c.err != 0)
        return context->c.errstr;
    return "connection closed";
}

redis_link_t *redis_link_of(const redisAsyncContext *context) { return context->data; }

/* The attempt or connection is over (its context already let go): tells the
 * owner, logs the outage once and schedules the next attempt with exponential
 * backoff. */
static void redis_link_failed(redis_link_t *link, const char *reason) {
    link->state = REDIS_LINK_IDLE;
    if (link->timer == NULL)
        return; /* closed */
    if (link->config.down != NULL)
        link->config.down(link);
    if (!link->down) {
        link->down = true;
        log_warn("%sredis %s unreachable for %s (%s); %s, reconnecting", link->config.log_prefix,
                 link->address, link->config.purpose, reason, link->config.outage_effect);
    }
    clock_arm(link->timer, link->backoff_ms);
    link->backoff_ms *= 2;
    if (link->backoff_ms > REDIS_LINK_BACKOFF_MAX_MS)
        link->backoff_ms = REDIS_LINK_BACKOFF_MAX_MS;
}

/* hiredis is freeing the context (an error, the server closed, a failed
 * connect): let go of it, before any of its later callbacks can run. */
static void redis_link_lost(redis_link_t *link, const char *reason) {
    if (link->context != NULL) {
        link->context->data = NULL;
        link->context = NULL;
    }
    redis_link_failed(link, reason);
}

void redis_link_lost_context(const redisAsyncContext *context) {
    redis_link_t *link = context->data;
    if (link != NULL)
        redis_link_lost(link, redis_link_error(context));
}

void redis_link_drop(redis_link_t *link, const char *reason) {
    redisAsyncContext *context = link->context;
    redis_link_lost(link, reason);
    /* Inside a hiredis callback this only flags the context; hiredis frees it
     * when the callback returns. */
    if (context != NULL)
        redisAsyncFree(context);
}

void redis_link_ready(redis_link_t *link) {
    evtimer_del(link->timer);
    link->state = REDIS_LINK_READY;
    link->backoff_ms = REDIS_LINK_BACKOFF_FIRST_MS;
    if (link->down)
        log_info("%sredis %s reachable again for %s", link->config.log_prefix, link->address,
                 link->config.purpose);
    else if (!link->ever_ready)
        log_info("%sconnected to redis %s for %s", link->config.log_prefix, link->address,
                 link->config.purpose);
    link->down = false;
    link->ever_ready = true;
    if (link->config.up != NULL)
        link->config.up(link);
}

/* The reply to SELECT (or PING with database 0): the connection works. */
static void redis_link_handshake_reply(redisAsyncContext *context, void *reply_pointer,
                                       void *privdata) {
    (void)privdata;
    redis_link_t *link = context->data;
    redisReply *reply = reply_pointer;
    if (link == NULL)
        return;
    if (reply == NULL) {
        redis_link_lost(link, redis_link_error(context));
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Logged once with the outage, not on every attempt. */
        char reason[256];
        snprintf(reason, sizeof(reason), "%s refused: %s",
                 link->config.database != 0 ? "SELECT" : "PING", reply->str);
        redis_link_drop(link, reason);
        return;
    }
    redis_link_ready(link);
}

/* hiredis's connect callback. Nothing here may free the context: hiredis
 * keeps using it after this returns. */
static void redis_link_connected(const redisAsyncContext *const_context, int status) {
    redis_link_t *link = const_context->data;
    if (link == NULL)
        return;
    if (status != REDIS_OK) {
        redis_link_lost(link, redis_link_error(const_context));
        return;
    }
    int sent;
    if (link->config.handshake != NULL)
        sent = link->config.handshake(link) == 0 ? REDIS_OK : REDIS_ERR;
    else if (link->config.database != 0)
        sent = redisAsyncCommand(link->context, redis_link_handshake_reply, NULL, "SELECT %d",
                                 link->config.database);
    else
        sent = redisAsyncCommand(link->context, redis_link_handshake_reply, NULL, "PING");
    /* On failure the attempt's timer, still armed, closes the connection. */
    if (sent != REDIS_OK)
        log_debug("%scould not send the handshake to redis %s", link->config.log_prefix,
                  link->address);
}

/* hiredis's disconnect callback; the context is freed right after. */
static void redis_link_disconnected(const redisAsyncContext *context, int status) {
    (void)status;
    redis_link_lost_context(context);
}

/* ---- hiredis's event hooks ----
 *
 * What hiredis's libevent adapter does, plus one thing: a bulk string longer
 * than value_max is never buffered. hiredis 0.14 waits for a bulk string
 * whole, growing its buffer a megabyte at a time (a 64 MiB value took two
 * seconds of copying, fourteen through ASan), so the value is dropped from
 * the socket as it comes and the reply gets an error element in its place. */

/* One connection's events; hiredis owns it through context->ev.data. */
typedef struct redis_link_events {
    redisAsyncContext *context;
    struct event *read;
    struct event *write;
    size_t value_max; /* 0: no limit */
    uint64_t unread;  /* bytes of a skipped value still to come and be dropped */
    bool reading;     /* inside redis_link_readable */
    bool released;    /* hiredis let go of the context while reading */
} redis_link_events_t;

/* Drops unread bytes as they arrive. Returns true when hiredis should read
 * now: nothing of the value is left, or the connection ended or failed
 * (hiredis then sees that itself). */
static bool redis_link_drop_unread(redis_link_events_t *events, evutil_socket_t fd) {
    char scratch[16 * 1024];
    /* At most 256 KiB a turn: other connections get their turn too. */
    for (int round = 0; round < 16 && events->unread > 0; round++) {
        size_t wanted = events->unread < sizeof(scratch) ? (size_t)events->unread : sizeof(scratch);
        ssize_t received = recv(fd, scratch, wanted, 0);
        if (received > 0) {
            events->unread -= (uint64_t)received;
            continue;
        }
        if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return false;
        return true;
    }
    return events->unread == 0;
}

int redis_link_skip_long_value(redisReader *reader, size_t value_max, uint64_t *unread) {
    if (reader->err != 0 || reader->ridx < 0 ||
        reader->rstack[reader->ridx].type != REDIS_REPLY_STRING)
        return 0;
    const char *length_text = reader->buf + reader->pos;
    size_t held = reader->len - reader->pos;
    /* As hiredis reads a length: no leading zero, at most INT64_MAX; nil
     * ("-1"), a bad line or one not yet whole stay hiredis's. */
    uint64_t length = 0;
    size_t digits = 0;
    for (; digits < held && length_text[digits] >= '0' && length_text[digits] <= '9'; digits++) {
        uint64_t digit = (uint64_t)(length_text[digits] - '0');
        if ((digits == 0 && digit == 0) || length > (INT64_MAX - digit) / 10)
            return 0;
        length = length * 10 + digit;
    }
    if (digits == 0 || digits + 2 > held || length_text[digits] != '\r' ||
        length_text[digits + 1] != '\n' || length <= value_max)
        return 0;
    uint64_t received = held - digits - 2;
    if (received >= length + 2)
        return 0; /* whole: hiredis takes it (never after it read: it took all it could) */

    char error[96];
    int error_length =
        snprintf(error, sizeof(error), "%" PRIu64 " bytes unread, over %zu\r\n", length, value_max);
    /* (Not sdsrange: an end of -1 means the last byte, and pos may be 0
     * once hiredis moved consumed bytes out.) */
    sdssetlen(reader->buf, reader->pos);
    reader->buf[reader->pos] = '\0';
    reader->len = reader->pos;
    reader->rstack[reader->ridx].type = REDIS_REPLY_ERROR;
    if (redisReaderFeed(reader, error, (size_t)error_length) != REDIS_OK)
        return -1;
    *unread = length + 2 - received;
    return 0;
}

static void redis_link_readable(evutil_socket_t fd, short what, void *argument) {
    (void)what;
    redis_link_events_t *events = argument;
    if (events->unread > 0 && !redis_link_drop_unread(events, fd)) {
        event_add(events->read, NULL);
        return;
    }
    events->reading = true;
    redisAsyncHandleRead(events->context);
    events->reading = false;
    if (events->released) {
        free(events);
        return;
    }
    if (events->value_max > 0 && events->context->c.reader != NULL &&
        redis_link_skip_long_value(events->context->c.reader, events->value_max, &events->unread) !=
            0)
        redisAsyncFree(events->context); /* out of memory: the reply cannot be finished */
}

static void redis_link_writable(evutil_socket_t fd, short what, void *argument) {
    (void)fd;
    (void)what;
    redis_link_events_t *events = argument;
    redisAsyncHandleWrite(events->context);
}

static void redis_link_add_read(void *privdata) {
    redis_link_events_t *events = privdata;
    event_add(events->read, NULL);
}

static void redis_link_del_read(void *privdata) {
    redis_link_events_t *events = privdata;
    event_del(events->read);
}

static void redis_link_add_write(void *privdata) {
    redis_link_events_t *events = privdata;
    event_add(events->write, NULL);
}

static void redis_link_del_write(void *privdata) {
    redis_link_events_t *events = privdata;
    event_del(events->write);
}

/* hiredis frees the context; inside redis_link_readable the events outlive
 * it until that returns. */
static void redis_link_cleanup(void *privdata) {
    redis_link_events_t *events = privdata;
    event_free(events->read);
    event_free(events->write);
    events->read = NULL;
    events->write = NULL;
    if (events->reading)
        events->released = true;
    else
        free(events);
}

/* Hooks context into base; returns 0, or -1 when memory is exhausted. */
static int redis_link_attach(redis_link_t *link, redisAsyncContext *context) {
    redis_link_events_t *events = calloc(1, sizeof(*events));
    if (events == NULL)
        return -1;
    events->context = context;
    events->value_max = link->config.value_max;
    events->read = event_new(link->base, context->c.fd, EV_READ, redis_link_readable, events);
    events->write = event_new(link->base, context->c.fd, EV_WRITE, redis_link_writable, events);
    if (events->read == NULL || events->write == NULL) {
        if (events->read != NULL)
            event_free(events->read);
        if (events->write != NULL)
            event_free(events->write);
        free(events);
        return -1;
    }
    context->ev.addRead = redis_link_add_read;
    context->ev.delRead = redis_link_del_read;
    context->ev.addWrite = redis_link_add_write;
    context->ev.delWrite = redis_link_del_write;
    context->ev.cleanup = redis_link_cleanup;
    context->ev.data = events;
    event_add(events->read, NULL);
    event_add(events->write, NULL);
    return 0;
}

uint64_t redis_link_reply_bytes(const redis_link_t *link) {
    const redisAsyncContext *context = link->context;
    if (context == NULL)
        return 0;
    const redisReader *reader = context->c.reader;
    const redis_link_events_t *events = context->ev.data;
    return (reader != NULL ? reader->len - reader->pos : 0) + (events != NULL ? events->unread : 0);
}

void redis_link_start(redis_link_t *link) {
    redisAsyncContext *context;
    if (link->config.unix_path != NULL)
        context = redisAsyncConnectUnix(link->config.unix_path);
    else
        context = redisAsyncConnect(link->config.host, link->config.port);
    if (context == NULL) {
        redis_link_failed(link, "out of memory");
        return;
    }
    if (context->err != 0) {
        char reason[128];
        snprintf(reason, sizeof(reason), "%s", redis_link_error(context));
        redisAsyncFree(context);
        redis_link_failed(link, reason);
        return;
    }
    /* A silently dead peer (no RST) would otherwise keep a subscription "up"
     * forever while notifications are lost. On failure hiredis marks the
     * context broken, so the attempt ends here. */
    if (link->config.unix_path == NULL && redisEnableKeepAlive(&context->c) != REDIS_OK) {
        char reason[192];
        snprintf(reason, sizeof(reason), "cannot enable TCP keep-alive: %.128s", context->c.errstr);
        redisAsyncFree(context);
        redis_link_failed(link, reason);
        return;
    }
    if (redis_link_attach(link, context) != 0) {
        redisAsyncFree(context);
        redis_link_failed(link, "out of memory");
        return;
    }
    context->data = link;
    redisAsyncSetConnectCallback(context, redis_link_connected);
    redisAsyncSetDisconnectCallback(context, redis_link_disconnected);
    link->context = context;
    link->state = REDIS_LINK_CONNECTING;
    clock_arm(link->timer, link->config.connect_timeout_ms);
}

/* The link's timer: start the next attempt, or cut one that hangs. */
static void redis_link_timer(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    redis_link_t *link = argument;
    if (link->state == REDIS_LINK_IDLE) {
        redis_link_start(link);
    } else if (link->state == REDIS_LINK_CONNECTING) {
        char reason[64];
        snprintf(reason, sizeof(reason), "no answer within %llu ms",
                 (unsigned long long)link->config.connect_timeout_ms);
        redis_link_drop(link, reason);
    }
}

int redis_link_init(redis_link_t *link, struct event_base *base,
                    const redis_link_config_t *config) {
    link->config = *config;
    link->base = base;
    link->state = REDIS_LINK_IDLE;
    link->context = NULL;
    link->backoff_ms = REDIS_LINK_BACKOFF_FIRST_MS;
    link->down = false;
    link->ever_ready = false;
    if (config->unix_path != NULL)
        snprintf(link->address, sizeof(link->address), "unix://%s", config->unix_path);
    else
        snprintf(link->address, sizeof(link->address), "%s:%d", config->host, config->port);
    link->timer = evtimer_new(base, redis_link_timer, link);
    return link->timer != NULL ? 0 : -1;
}

void redis_link_close(redis_link_t *link) {
    redisAsyncContext *context = link->context;
    if (context != NULL) {
        context->data = NULL;
        link->context = NULL;
        /* Runs the callbacks of commands still in flight with NULL replies;
         * they find no link. */
        redisAsyncFree(context);
    }
    link->state = REDIS_LINK_IDLE;
    if (link->timer != NULL) {
        event_free(link->timer);
        link->timer = NULL;
    }
}
