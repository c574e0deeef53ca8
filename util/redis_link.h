/* One hiredis async connection kept up: connect timeout, handshake, logged outages, backoff. */
#ifndef SGW_UTIL_REDIS_LINK_H
#define SGW_UTIL_REDIS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct event_base;
struct redisAsyncContext;
struct redisReader;

/* hiredis 0.14 has no timeouts: each link keeps one timer whose meaning depends
 * on the state (the delay before the next attempt, or the limit of the attempt
 * in progress). */
typedef enum redis_link_state {
    REDIS_LINK_IDLE = 0,   /* no context; the timer starts the next attempt */
    REDIS_LINK_CONNECTING, /* connecting or handshaking; the timer cuts the attempt */
    REDIS_LINK_READY,      /* handshake answered; the timer is idle */
} redis_link_state_t;

typedef struct redis_link redis_link_t;

/* What the owner wants; strings are borrowed and must outlive the link. */
typedef struct redis_link_config {
    const char *host;      /* used when unix_path is NULL */
    int port;
    const char *unix_path; /* NULL for TCP */
    int database;          /* SELECTed by the default handshake; 0: PING */
    uint64_t connect_timeout_ms; /* connect and handshake together */
    /* A bulk string longer than this is dropped from the socket unread; its
     * reply holds an error element instead, whose text starts with the
     * value's length in decimal ("67108864 bytes unread, over 65536").
     * 0: no limit. */
    size_t value_max;
    /* Log lines: "<log_prefix>redis <address> unreachable for <purpose> (<reason>);
     * <outage_effect>, reconnecting", and "connected to" / "reachable again for". */
    const char *log_prefix;
    const char *purpose;
    const char *outage_effect;
    /* The connection is open: sends the owner's own handshake instead of SELECT
     * or PING (e.g. PSUBSCRIBE) and calls redis_link_ready() once it is
     * answered; returns 0, or -1 when it could not be sent (the connect timer
     * then ends the attempt). NULL: SELECT database, or PING. */
    int (*handshake)(redis_link_t *link);
    /* The handshake was answered; commands may be sent. NULL: nothing to do. */
    void (*up)(redis_link_t *link);
    /* An attempt failed or the connection was lost (each time, before the
     * outage is logged and the next attempt scheduled); replies in flight come
     * back NULL. NULL: nothing to do. */
    void (*down)(redis_link_t *link);
    void *owner;
} redis_link_config_t;

struct redis_link {
    redis_link_config_t config;
    struct event_base *base;
    redis_link_state_t state;
    /* NULL when idle. Its data points back here while this link owns it, and
     * is NULLed when we let go, so that hiredis callbacks that come later
     * (hiredis frees contexts lazily) find nothing to act on. */
    struct redisAsyncContext *context;
    struct event *timer;
    uint64_t backoff_ms;
    bool down;       /* failed since last ready: the outage is logged once */
    bool ever_ready;
    char address[300]; /* host:port or unix://path, for the log */
};

/* Prepares link on base (no connection yet); returns 0, or -1 when memory is
 * exhausted (redis_link_close() then cleans up). */
int redis_link_init(redis_link_t *link, struct event_base *base, const redis_link_config_t *config);

/* Starts the first attempt now; never blocks. */
void redis_link_start(redis_link_t *link);

/* Closes the connection (callbacks in flight run with NULL replies and find
 * no link) and stops reconnecting. Harmless on a zeroed or closed link. */
void redis_link_close(redis_link_t *link);

/* For an owner's handshake: it was answered, the link is up. */
void redis_link_ready(redis_link_t *link);

/* Closes the connection ourselves (a hang, a refused handshake) and schedules
 * a reconnect; safe inside a hiredis callback. Replies in flight are handed
 * back NULL: their callbacks may free the owner, so callers must not touch it
 * afterwards. */
void redis_link_drop(redis_link_t *link, const char *reason);

/* A reply came back NULL on context: hiredis is freeing it; the link that
 * still owns it, if any, is lost. */
void redis_link_lost_context(const struct redisAsyncContext *context);

/* Bytes of a reply still arriving on the connection: those hiredis holds
 * unparsed, and those of a value longer than value_max still to be dropped
 * (progress, though no reply grows); 0 without a connection. */
uint64_t redis_link_reply_bytes(const redis_link_t *link);

/* After hiredis read into reader (a link's, or the fuzz target's): when it
 * waits for the rest of a bulk string longer than value_max, drops what it
 * holds of the value, hands it an error element instead ("<length> bytes
 * unread, over <value_max>") and sets *unread to the value's bytes still to
 * come, which the caller drops before hiredis reads again. Returns 0 (also
 * when there was nothing to do), or -1 when memory is exhausted (the reply
 * cannot be finished: the connection must go). Written against hiredis
 * 0.14's reader, whose fields are public: the current task's type is set
 * ('$' consumed) and its length line comes next. */
int redis_link_skip_long_value(struct redisReader *reader, size_t value_max, uint64_t *unread);

/* The link that owns context, or NULL once it let go. */
redis_link_t *redis_link_of(const struct redisAsyncContext *context);

#endif
