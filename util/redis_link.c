/* One hiredis async connection kept up: connect timeout, handshake, logged outages, backoff. */
#include "util/redis_link.h"

#include <stdio.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

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
    if (redisLibeventAttach(context, link->base) != REDIS_OK) {
        redisAsyncFree(context);
        redis_link_failed(link, "cannot attach to the event loop");
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
