/* Upstream connections to sandboxes and their per-worker keep-alive pool. */
#ifndef SGW_GATEWAY_UPSTREAM_H
#define SGW_GATEWAY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "gateway/transport.h"
#include "routing/record.h"
#include "util/slots.h"
#include "util/strmap.h"

struct event_base;
struct gw_worker;

typedef struct gw_pool_slot gw_pool_slot_t;

/* Every state an upstream connection can be in. */
typedef enum gw_upstream_state {
    GW_UPSTREAM_CONNECTING, /* dial in progress, owned by a client connection */
    GW_UPSTREAM_BUSY,       /* carrying a client's request or tunnel */
    GW_UPSTREAM_IDLE,       /* in the pool, closed by the idle sweep or by the sandbox */
} gw_upstream_state_t;

/* One connection to one sandbox port. While pooled it belongs to the pool;
 * while in use, to the exchange (or tunnel) that took it, which handles its
 * transport's events. */
typedef struct gw_upstream {
    gw_transport_t transport;
    struct gw_worker *worker;
    gw_upstream_state_t state;
    gw_pool_slot_t
        *slot; /* its key's pool slot once pooled (idle, or busy since taken); else NULL */
    TAILQ_ENTRY(gw_upstream) pool_link; /* in its slot, most recently used first */
    TAILQ_ENTRY(gw_upstream) idle_link; /* in the pool's idle order, oldest first */
    uint64_t idle_since_ms;
    uint64_t requests;                 /* requests sent on it; > 0 means reused */
    uint16_t port;                     /* the sandbox's, as in the key */
    char key[];                        /* pool key: sandbox, execution_id, addr, port */
} gw_upstream_t;

/* The idle connections of one key, most recently used first. It is in use
 * while any connection points to it, busy ones taken from it included, so
 * giving a connection back finds its slot without a lookup or an allocation.
 * Slots are util/slots items: a record's pool hint (routing/record.h) may
 * name a slot given up since, and is checked, never followed blindly. */
struct gw_pool_slot {
    TAILQ_HEAD(gw_upstream_queue, gw_upstream) idle;
    size_t idle_count;
    size_t busy_count;          /* taken from it and not back yet */
    struct strmap_entry *entry; /* its key in the pool's map */
    uint16_t port;              /* the key's last field: a hint is for one port */
};

typedef struct gw_pool {
    strmap_t slots;     /* key -> gw_pool_slot_t */
    slots_t slot_items; /* kept until gw_pool_free, for the hints */
    TAILQ_HEAD(gw_upstream_idle_order, gw_upstream) idle_order;
    size_t idle_count;
    size_t idle_limit; /* idle connections kept at most, over all keys */
    uint64_t idle_timeout_ms;
    struct event *sweep; /* closes connections idle past idle_timeout_ms */
} gw_pool_t;

/* Prepares an empty pool on base whose idle connections close after
 * idle_timeout_ms, keeping at most idle_limit of them; returns 0 or -1. */
int gw_pool_init(gw_pool_t *pool, struct event_base *base, uint64_t idle_timeout_ms,
                 size_t idle_limit);

/* Closes every idle connection and frees the pool. */
void gw_pool_free(gw_pool_t *pool);

/* Takes the most recently used idle connection for key, or returns NULL; the
 * caller sets its transport's handler at once. key is a record's pool key for
 * port: the record's pool hint finds the slot, and is noted when it did not. */
gw_upstream_t *gw_pool_take(gw_pool_t *pool, slot_hint_t *hint, uint16_t port, const char *key,
                            size_t key_length);

/* Gives an idle connection (no bytes pending either way) back; it is closed
 * after the idle timeout, or at once when the sandbox closes it. A full pool
 * closes the connection idle longest to take it. */
void gw_pool_put(gw_pool_t *pool, gw_upstream_t *upstream);

/* The process is out of descriptors: closes up to count idle connections,
 * those idle longest first (each an eviction), so that a client can be
 * accepted or a sandbox dialled; returns how many it closed. */
size_t gw_pool_shed(gw_pool_t *pool, size_t count);

/* Starts a non-blocking dial of address (with its port set), bounded by
 * upstream_connect_timeout; returns a connection whose transport reports the
 * outcome to the handler the caller sets next, or NULL (errno set). */
gw_upstream_t *gw_upstream_dial(struct gw_worker *worker, const struct sockaddr *address,
                                socklen_t address_length, const char *key, size_t key_length);

/* Every change of an upstream's state passes here (logged at debug). */
void gw_upstream_set_state(gw_upstream_t *upstream, gw_upstream_state_t state);

/* Closes and frees a connection that is not pooled. NULL is allowed. */
void gw_upstream_close(gw_upstream_t *upstream);

#endif
