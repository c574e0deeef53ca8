/* One intercepted TCP connection of a sandbox: its name read, checked, resolved, dialled, relayed.
 */
#include "egress/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "egress/sniff.h"
#include "util/clock.h"
#include "util/log.h"

enum {
    /* Bytes queued toward one side before the other is no longer read (le-proxy's watermark):
     * a slow reader holds its writer back instead of growing the agent. */
    EGRESS_RELAY_QUEUE_MAX = 256 * 1024,
    EGRESS_RELAY_CANDIDATES_MAX = 2 * EGRESS_RESOLVED_MAX,
};

/* Every state a relay can be in; each has its own handlers. */
typedef enum egress_relay_state {
    EGRESS_RELAY_SNIFFING,  /* reading the ClientHello or request head */
    EGRESS_RELAY_RESOLVING, /* the name matched; waiting for its addresses */
    EGRESS_RELAY_DIALING,   /* connecting to candidates[next - 1] from the namespace */
    EGRESS_RELAY_RELAYING,  /* copying both ways */
} egress_relay_state_t;

typedef struct egress_relay_candidate {
    egress_family_t family;
    uint8_t address[16];
} egress_relay_candidate_t;

/* One side of a relayed connection. */
typedef struct egress_relay_side {
    struct bufferevent *bufferevent;
    bool ended; /* it sent its FIN: nothing more comes from it */
    bool shut;  /* the other side's FIN was passed on to it (shutdown SHUT_WR) */
} egress_relay_side_t;

struct egress_relay {
    egress_relay_site_t *site;
    egress_relay_t *previous;
    egress_relay_t *next;
    egress_relay_state_t state;
    uint16_t port;
    bool client_ipv6;
    egress_relay_side_t client;
    egress_relay_side_t upstream;
    struct event *deadline; /* sniffing, then each dial */
    egress_sniff_name_t name;
    egress_resolve_wait_t *wait;
    egress_relay_candidate_t candidates[EGRESS_RELAY_CANDIDATES_MAX];
    size_t candidate_count;
    size_t candidate_next;
    uint64_t active_ms; /* when a byte last moved either way */
};

void egress_relay_reset_fd(int fd) {
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
    close(fd);
}

static void egress_relay_free(egress_relay_t *relay) {
    egress_relay_site_t *site = relay->site;
    if (relay->previous != NULL)
        relay->previous->next = relay->next;
    else
        site->relays = relay->next;
    if (relay->next != NULL)
        relay->next->previous = relay->previous;
    site->relay_count--;
    egress_resolver_cancel(relay->wait);
    if (relay->deadline != NULL)
        event_free(relay->deadline);
    if (relay->client.bufferevent != NULL)
        bufferevent_free(relay->client.bufferevent);
    if (relay->upstream.bufferevent != NULL)
        bufferevent_free(relay->upstream.bufferevent);
    free(relay);
}

/* Ends a connection that may not go out: reset, and one info line with sandbox, name, verdict. */
static void egress_relay_refuse(egress_relay_t *relay, const char *why) {
    log_info("egress: sandbox %s: TCP %u to \"%s\" refused: %s", relay->site->sandbox_id,
             relay->port, relay->name.length > 0 ? relay->name.text : "(no name)", why);
    if (relay->client.bufferevent != NULL) {
        int fd = bufferevent_getfd(relay->client.bufferevent);
        struct linger linger = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
    }
    egress_relay_free(relay);
}

/* ---- relaying ---- */

static egress_relay_side_t *egress_relay_other(egress_relay_t *relay, egress_relay_side_t *side) {
    return side == &relay->client ? &relay->upstream : &relay->client;
}

static egress_relay_side_t *egress_relay_side_of(egress_relay_t *relay,
                                                 struct bufferevent *bufferevent) {
    return bufferevent == relay->client.bufferevent ? &relay->client : &relay->upstream;
}

/* Passes a FIN on once everything before it is written; closes when both sides ended. Returns
 * false when the relay was freed. */
static bool egress_relay_settle(egress_relay_t *relay) {
    egress_relay_side_t *sides[2] = {&relay->client, &relay->upstream};
    for (size_t i = 0; i < 2; i++) {
        egress_relay_side_t *from = sides[i];
        egress_relay_side_t *to = egress_relay_other(relay, from);
        if (from->ended && !to->shut &&
            evbuffer_get_length(bufferevent_get_output(to->bufferevent)) == 0) {
            shutdown(bufferevent_getfd(to->bufferevent), SHUT_WR);
            to->shut = true;
        }
    }
    if (relay->client.shut && relay->upstream.shut) {
        egress_relay_free(relay);
        return false;
    }
    return true;
}

static void egress_relay_read(struct bufferevent *bufferevent, void *argument) {
    egress_relay_t *relay = argument;
    egress_relay_side_t *from = egress_relay_side_of(relay, bufferevent);
    egress_relay_side_t *to = egress_relay_other(relay, from);
    relay->active_ms = clock_coarse_ms();
    struct evbuffer *output = bufferevent_get_output(to->bufferevent);
    evbuffer_add_buffer(output, bufferevent_get_input(bufferevent));
    if (evbuffer_get_length(output) >= EGRESS_RELAY_QUEUE_MAX) {
        /* Read again once the other side took half of it (egress_relay_drained). */
        bufferevent_disable(bufferevent, EV_READ);
        bufferevent_setwatermark(to->bufferevent, EV_WRITE, EGRESS_RELAY_QUEUE_MAX / 2, 0);
    }
}

static void egress_relay_drained(struct bufferevent *bufferevent, void *argument) {
    egress_relay_t *relay = argument;
    egress_relay_side_t *to = egress_relay_side_of(relay, bufferevent);
    egress_relay_side_t *from = egress_relay_other(relay, to);
    relay->active_ms = clock_coarse_ms();
    if (!from->ended)
        bufferevent_enable(from->bufferevent, EV_READ);
    bufferevent_setwatermark(bufferevent, EV_WRITE, 0, 0);
    egress_relay_settle(relay);
}

static void egress_relay_event(struct bufferevent *bufferevent, short events, void *argument) {
    egress_relay_t *relay = argument;
    egress_relay_side_t *side = egress_relay_side_of(relay, bufferevent);
    if (events & BEV_EVENT_TIMEOUT) {
        /* One direction idle is fine while the other moves: the hour counts from either. */
        uint64_t now_ms = clock_coarse_ms();
        if (now_ms - relay->active_ms < relay->site->idle_timeout_ms) {
            bufferevent_enable(bufferevent, EV_READ);
            return;
        }
        log_debug("egress: sandbox %s: relay to \"%s\" idle for %llu ms; closed",
                  relay->site->sandbox_id, relay->name.text,
                  (unsigned long long)relay->site->idle_timeout_ms);
        egress_relay_free(relay);
        return;
    }
    if (events & BEV_EVENT_ERROR) {
        egress_relay_free(relay);
        return;
    }
    if (events & BEV_EVENT_EOF) {
        /* What it sent before its FIN was read already (the read callback runs first). */
        side->ended = true;
        bufferevent_disable(bufferevent, EV_READ);
        egress_relay_settle(relay);
    }
}

static void egress_relay_begin(egress_relay_t *relay) {
    relay->state = EGRESS_RELAY_RELAYING;
    evtimer_del(relay->deadline);
    relay->active_ms = clock_coarse_ms();
    log_debug("egress: sandbox %s: TCP %u to \"%s\" relayed", relay->site->sandbox_id, relay->port,
              relay->name.text);
    struct timeval idle = clock_timeval(relay->site->idle_timeout_ms);
    egress_relay_side_t *sides[2] = {&relay->client, &relay->upstream};
    for (size_t i = 0; i < 2; i++) {
        struct bufferevent *bufferevent = sides[i]->bufferevent;
        bufferevent_setcb(bufferevent, egress_relay_read, egress_relay_drained, egress_relay_event,
                          relay);
        bufferevent_setwatermark(bufferevent, EV_READ, 0, 0);
        bufferevent_set_timeouts(bufferevent, &idle, NULL);
        bufferevent_enable(bufferevent, EV_READ | EV_WRITE);
    }
    /* What the client sent while its name was read goes first, as it came. */
    egress_relay_read(relay->client.bufferevent, relay);
}

/* ---- dialling ---- */

static void egress_relay_dial_next(egress_relay_t *relay);

static void egress_relay_dial_event(struct bufferevent *bufferevent, short events, void *argument) {
    (void)bufferevent;
    egress_relay_t *relay = argument;
    if (events & BEV_EVENT_CONNECTED) {
        egress_relay_begin(relay);
        return;
    }
    bufferevent_free(relay->upstream.bufferevent);
    relay->upstream.bufferevent = NULL;
    egress_relay_dial_next(relay);
}

/* Tries the next permitted address, from inside the sandbox's namespace. */
static void egress_relay_dial_next(egress_relay_t *relay) {
    egress_relay_site_t *site = relay->site;
    while (relay->candidate_next < relay->candidate_count) {
        const egress_relay_candidate_t *candidate = &relay->candidates[relay->candidate_next++];
        struct sockaddr_storage address;
        socklen_t address_length;
        memset(&address, 0, sizeof(address));
        if (candidate->family == EGRESS_IPV6) {
            struct sockaddr_in6 *ipv6 = (struct sockaddr_in6 *)&address;
            ipv6->sin6_family = AF_INET6;
            ipv6->sin6_port = htons(relay->port);
            memcpy(&ipv6->sin6_addr, candidate->address, 16);
            address_length = sizeof(*ipv6);
        } else {
            struct sockaddr_in *ipv4 = (struct sockaddr_in *)&address;
            ipv4->sin_family = AF_INET;
            ipv4->sin_port = htons(relay->port);
            memcpy(&ipv4->sin_addr, candidate->address, 4);
            address_length = sizeof(*ipv4);
        }
        int fd = egress_netns_socket(site->applier, site->netns, address.ss_family, SOCK_STREAM,
                                     NULL, NULL);
        if (fd < 0) {
            log_warn("egress: sandbox %s: cannot open a socket in namespace %s: %s",
                     site->sandbox_id, site->netns, strerror(errno));
            continue;
        }
        relay->upstream.bufferevent = bufferevent_socket_new(site->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (relay->upstream.bufferevent == NULL) {
            close(fd);
            continue;
        }
        bufferevent_setcb(relay->upstream.bufferevent, NULL, NULL, egress_relay_dial_event, relay);
        if (bufferevent_socket_connect(relay->upstream.bufferevent, (struct sockaddr *)&address,
                                       (int)address_length) != 0) {
            bufferevent_free(relay->upstream.bufferevent);
            relay->upstream.bufferevent = NULL;
            continue;
        }
        relay->state = EGRESS_RELAY_DIALING;
        clock_arm(relay->deadline, EGRESS_RELAY_DIAL_TIMEOUT_MS);
        return;
    }
    egress_relay_refuse(relay, relay->candidate_count == 1 ? "cannot connect to its address"
                                                           : "cannot connect to any address");
}

/* Keeps the permitted addresses of resolved, the client's family first. */
static void egress_relay_choose(egress_relay_t *relay, const egress_resolved_t *resolved) {
    egress_family_t order[2] = {EGRESS_IPV4, EGRESS_IPV6};
    if (relay->client_ipv6) {
        order[0] = EGRESS_IPV6;
        order[1] = EGRESS_IPV4;
    }
    relay->candidate_count = 0;
    for (size_t f = 0; f < 2; f++) {
        egress_family_t family = order[f];
        size_t count = family == EGRESS_IPV4 ? resolved->count4 : resolved->count6;
        for (size_t i = 0; i < count; i++) {
            const uint8_t *address =
                family == EGRESS_IPV4 ? resolved->addresses4[i] : resolved->addresses6[i];
            if (!egress_policy_resolved_permitted(relay->site->policy, family, address))
                continue;
            egress_relay_candidate_t *candidate = &relay->candidates[relay->candidate_count++];
            candidate->family = family;
            memset(candidate->address, 0, sizeof(candidate->address));
            memcpy(candidate->address, address, family == EGRESS_IPV4 ? 4 : 16);
        }
    }
}

static void egress_relay_resolved(const egress_resolved_t *resolved, void *argument) {
    egress_relay_t *relay = argument;
    relay->wait = NULL;
    if (resolved->count4 + resolved->count6 == 0) {
        char why[160];
        snprintf(why, sizeof(why), "cannot resolve it (%s)",
                 resolved->error != NULL ? resolved->error : "no address");
        egress_relay_refuse(relay, why);
        return;
    }
    egress_relay_choose(relay, resolved);
    if (relay->candidate_count == 0) {
        egress_relay_refuse(relay, "every address it resolves to is refused (private, special "
                                   "or in deny_out)");
        return;
    }
    egress_relay_dial_next(relay);
}

/* ---- sniffing ---- */

static void egress_relay_sniff(struct bufferevent *bufferevent, void *argument) {
    egress_relay_t *relay = argument;
    struct evbuffer *input = bufferevent_get_input(bufferevent);
    size_t length = evbuffer_get_length(input);
    const uint8_t *data = evbuffer_pullup(input, -1);
    egress_sniff_result_t result = relay->port == 443
                                       ? egress_sniff_tls(data, length, &relay->name)
                                       : egress_sniff_http(data, length, &relay->name);
    switch (result) {
    case EGRESS_SNIFF_MORE:
        if (length >= EGRESS_SNIFF_BYTES_MAX)
            egress_relay_refuse(relay, "no name within the first 16 KiB");
        return;
    case EGRESS_SNIFF_NO_NAME:
        egress_relay_refuse(relay, relay->port == 443 ? "the ClientHello has no server name"
                                                      : "the request names no host");
        return;
    case EGRESS_SNIFF_MALFORMED:
        egress_relay_refuse(relay, relay->port == 443 ? "not a TLS ClientHello"
                                                      : "not an HTTP/1.x request");
        return;
    case EGRESS_SNIFF_NAME:
        break;
    }
    if (!egress_policy_domain_match(relay->site->policy, relay->name.text, relay->name.length)) {
        egress_relay_refuse(relay, "no domain entry of allow_out matches it");
        return;
    }
    /* Nothing more is read until the upstream connection can take it. */
    bufferevent_disable(bufferevent, EV_READ);
    evtimer_del(relay->deadline);
    relay->state = EGRESS_RELAY_RESOLVING;
    egress_resolved_t resolved;
    if (egress_resolver_cached(relay->site->resolver, relay->name.text, relay->name.length,
                               &resolved)) {
        egress_relay_resolved(&resolved, relay);
        return;
    }
    relay->wait = egress_resolver_lookup(relay->site->resolver, relay->name.text,
                                         relay->name.length, egress_relay_resolved, relay);
    if (relay->wait == NULL)
        egress_relay_refuse(relay, "out of memory");
}

static void egress_relay_sniff_event(struct bufferevent *bufferevent, short events,
                                     void *argument) {
    (void)bufferevent;
    egress_relay_t *relay = argument;
    egress_relay_refuse(relay, (events & BEV_EVENT_EOF) ? "closed before naming a host"
                                                        : "connection error before a name");
}

static void egress_relay_deadline(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_relay_t *relay = argument;
    if (relay->state == EGRESS_RELAY_SNIFFING) {
        egress_relay_refuse(relay, "no name within 5 s");
        return;
    }
    /* A dial that hangs: the next address. */
    bufferevent_free(relay->upstream.bufferevent);
    relay->upstream.bufferevent = NULL;
    egress_relay_dial_next(relay);
}

void egress_relay_start(egress_relay_site_t *site, int fd, uint16_t port, bool client_ipv6) {
    egress_relay_t *relay = calloc(1, sizeof(*relay));
    if (relay == NULL) {
        egress_relay_reset_fd(fd);
        return;
    }
    relay->site = site;
    relay->port = port;
    relay->client_ipv6 = client_ipv6;
    relay->state = EGRESS_RELAY_SNIFFING;
    relay->next = site->relays;
    if (site->relays != NULL)
        site->relays->previous = relay;
    site->relays = relay;
    site->relay_count++;
    relay->client.bufferevent = bufferevent_socket_new(site->base, fd, BEV_OPT_CLOSE_ON_FREE);
    relay->deadline = evtimer_new(site->base, egress_relay_deadline, relay);
    if (relay->client.bufferevent == NULL || relay->deadline == NULL) {
        if (relay->client.bufferevent == NULL)
            egress_relay_reset_fd(fd);
        egress_relay_refuse(relay, "out of memory");
        return;
    }
    bufferevent_setcb(relay->client.bufferevent, egress_relay_sniff, NULL, egress_relay_sniff_event,
                      relay);
    /* The name must come in the first 16 KiB: never read more before it did. */
    bufferevent_setwatermark(relay->client.bufferevent, EV_READ, 0, EGRESS_SNIFF_BYTES_MAX);
    bufferevent_enable(relay->client.bufferevent, EV_READ);
    clock_arm(relay->deadline, EGRESS_RELAY_SNIFF_TIMEOUT_MS);
}

void egress_relay_close_all(egress_relay_site_t *site) {
    while (site->relays != NULL)
        egress_relay_free(site->relays);
}
