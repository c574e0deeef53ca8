/* A subscription to Redis keyspace notifications of watched keys and key prefixes. */
#ifndef SGW_UTIL_KEYSPACE_H
#define SGW_UTIL_KEYSPACE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/redis_link.h"

struct event_base;
struct redisReply;

/* One watched key, or every longer key that starts with it. */
typedef struct keyspace_watch {
    const char *key; /* read by keyspace_init only */
    bool prefix;
} keyspace_watch_t;

/* What one reply on the subscription's connection is. */
typedef enum keyspace_reply_kind {
    KEYSPACE_REPLY_OTHER = 0,    /* nothing to act on (also a key that no watch covers) */
    KEYSPACE_REPLY_CONFIRMATION, /* Redis confirmed one pattern */
    KEYSPACE_REPLY_NOTIFICATION, /* a watched key changed */
} keyspace_reply_kind_t;

typedef struct keyspace keyspace_t;

typedef struct keyspace_config {
    /* Where to connect, the database whose keys are watched, and the log lines; its
     * handshake, up, down and owner are the subscription's own and are ignored. */
    redis_link_config_t link;
    const keyspace_watch_t *watches; /* read by keyspace_init only */
    size_t watch_count;              /* at least one */
    /* A watched key changed: watch is its index in watches, rest what follows the watched
     * prefix (not NUL-terminated; empty for an exact key). */
    void (*notify)(keyspace_t *keyspace, size_t watch, const char *rest, size_t rest_length);
    /* Redis confirmed every pattern: changes from now on are notified, earlier ones were not.
     * NULL: nothing to do. */
    void (*up)(keyspace_t *keyspace);
    /* An attempt failed or the subscription was lost. NULL: nothing to do. */
    void (*down)(keyspace_t *keyspace);
    void *owner;
} keyspace_config_t;

/* One watch as Redis names it. */
typedef struct keyspace_channel {
    char *name; /* __keyspace@<db>__:<key> */
    size_t name_length;
    char *pattern; /* the PSUBSCRIBE pattern (keyspace_pattern) */
    bool prefix;
} keyspace_channel_t;

struct keyspace {
    redis_link_t link;
    keyspace_channel_t *channels; /* one per watch, in the watches' order */
    size_t channel_count;
    size_t confirmations; /* patterns Redis confirmed on this connection */
    const char **command; /* PSUBSCRIBE and every pattern, built once */
    size_t *command_lengths;
    void (*notify)(keyspace_t *keyspace, size_t watch, const char *rest, size_t rest_length);
    void (*up)(keyspace_t *keyspace);
    void (*down)(keyspace_t *keyspace);
    void *owner;
};

/* The PSUBSCRIBE pattern of key in database: "__keyspace@<db>__:" and key with the glob
 * characters *?[]\ escaped (Redis's matcher honours backslashes), then "*" for a prefix.
 * Returns a new string, or NULL when memory is exhausted. */
char *keyspace_pattern(int database, const char *key, bool prefix);

/* Prepares the subscription on base (no connection yet); returns 0, or -1 when memory is
 * exhausted (keyspace_close() then cleans up). */
int keyspace_init(keyspace_t *keyspace, struct event_base *base, const keyspace_config_t *config);

/* Starts the first connection attempt now; never blocks. */
void keyspace_start(keyspace_t *keyspace);

/* Closes the connection and frees what init made. Harmless on a zeroed or closed one. */
void keyspace_close(keyspace_t *keyspace);

/* True while Redis confirms every pattern: changes are being notified. */
bool keyspace_ready(const keyspace_t *keyspace);

/* What reply is; for a notification, sets *watch, *rest and *rest_length (the first exact
 * watch whose key is the changed key, else the first prefix the key extends). */
keyspace_reply_kind_t keyspace_classify(const keyspace_t *keyspace, const struct redisReply *reply,
                                        size_t *watch, const char **rest, size_t *rest_length);

/* Acts on one reply of the subscription: counts a confirmation (ready at the last one, which
 * calls up) or calls notify. What hiredis's callback does; exposed for tests. */
void keyspace_handle(keyspace_t *keyspace, const struct redisReply *reply);

#endif
