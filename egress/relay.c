/* One intercepted TCP connection of a sandbox: its name read, checked, resolved, dialled, relayed.
 */
#include "egress/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
    /* Each direction's pipe (F_SETPIPE_SZ): what is in flight between the two sockets, so at most
     * 1 MiB a relay beside the sockets' own buffers (bench/egress: 256 KiB cost 0.48 s of CPU per
     * GiB relayed, 512 KiB 0.44 s, 1 MiB 0.35 s). */
    EGRESS_RELAY_PIPE_SIZE = 512 * 1024,
    /* Moves of one flow per wake-up before the loop goes on to others. */
    EGRESS_RELAY_PUMP_ROUNDS = 16,
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

/* One direction of a relayed connection: from one socket through a pipe into the other (splice:
 * the bytes never enter the agent's memory). */
typedef struct egress_relay_flow {
    egress_relay_t *relay;
    int from; /* the flow's own socket (closed with the relay); the other flow's is `to` */
    int to;
    int pipe[2];
    size_t piped;           /* bytes in the pipe, not yet written to `to` */
    bool ended;             /* `from` sent its FIN: nothing more comes */
    bool shut;              /* that FIN was passed on (shutdown of `to`'s writing) */
    struct event *readable; /* `from` */
    struct event *writable; /* `to`, while the pipe holds bytes it did not take */
    bool reading;           /* readable is added */
    bool writing;           /* writable is added */
    uint64_t *bytes;        /* the metric it counts in */
} egress_relay_flow_t;

struct egress_relay {
    egress_relay_site_t *site;
    LIST_ENTRY(egress_relay) link; /* in site->relays */
    egress_relay_state_t state;
    uint16_t port;
    bool client_ipv6;
    struct bufferevent *client;   /* until relaying: the sandbox's connection */
    struct bufferevent *upstream; /* until relaying: the dial */
    egress_relay_flow_t flows[2]; /* relaying: out (sandbox to name), in */
    struct event *deadline;       /* sniffing, then each dial, then the idle check */
    egress_sniff_name_t name;
    egress_resolve_wait_t *wait;
    egress_relay_candidate_t candidates[EGRESS_RELAY_CANDIDATES_MAX];
    size_t candidate_count;
    size_t candidate_next;
    uint64_t active_ms; /* when a byte last moved either way */
};

/* The socket's close will send a reset (SO_LINGER 0) instead of a FIN. */
static void egress_relay_abort_on_close(int fd) {
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
}

void egress_relay_reset_fd(int fd) {
    egress_relay_abort_on_close(fd);
    close(fd);
}

static void egress_relay_free(egress_relay_t *relay) {
    egress_relay_site_t *site = relay->site;
    LIST_REMOVE(relay, link);
    site->relay_count--;
    site->metrics->relays_open--;
    egress_resolver_cancel(relay->wait);
    if (relay->deadline != NULL)
        event_free(relay->deadline);
    if (relay->client != NULL)
        bufferevent_free(relay->client);
    if (relay->upstream != NULL)
        bufferevent_free(relay->upstream);
    for (size_t i = 0; i < 2; i++) {
        egress_relay_flow_t *flow = &relay->flows[i];
        if (flow->readable != NULL)
            event_free(flow->readable);
        if (flow->writable != NULL)
            event_free(flow->writable);
        for (size_t end = 0; end < 2; end++) {
            if (flow->pipe[end] >= 0)
                close(flow->pipe[end]);
        }
        if (flow->from >= 0)
            close(flow->from);
    }
    free(relay);
}

/* Ends a connection that may not go out: reset, and one info line with sandbox, name, verdict. */
static void egress_relay_refuse(egress_relay_t *relay, egress_verdict_t verdict, const char *why) {
    relay->site->metrics->intercepted[verdict]++;
    log_info("egress: sandbox %s: TCP %u to \"%s\" refused: %s", relay->site->sandbox_id,
             relay->port, relay->name.length > 0 ? relay->name.text : "(no name)", why);
    if (relay->client != NULL)
        egress_relay_abort_on_close(bufferevent_getfd(relay->client));
    egress_relay_free(relay);
}

/* ---- relaying ---- */

/* Adds or removes ev as wanted, remembering which it is in *added (epoll_ctl only on a change). */
static void egress_relay_want(struct event *ev, bool *added, bool wanted) {
    if (wanted && !*added)
        event_add(ev, NULL);
    else if (!wanted && *added)
        event_del(ev);
    *added = wanted;
}

/* Moves what flow can: from its socket into the pipe, from the pipe into the other socket, until
 * neither moves (or a round limit, so one busy flow cannot hold the loop); then passes a FIN on
 * once all before it is out, and waits for what it needs. Returns false on an error: the relay
 * must close. */
static bool egress_relay_pump(egress_relay_t *relay, egress_relay_flow_t *flow) {
    for (int round = 0; round < EGRESS_RELAY_PUMP_ROUNDS; round++) {
        bool moved = false;
        if (!flow->ended && flow->piped < EGRESS_RELAY_PIPE_SIZE) {
            ssize_t taken =
                splice(flow->from, NULL, flow->pipe[1], NULL, EGRESS_RELAY_PIPE_SIZE - flow->piped,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (taken > 0) {
                flow->piped += (size_t)taken;
                *flow->bytes += (uint64_t)taken;
                moved = true;
            } else if (taken == 0) {
                flow->ended = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (flow->piped > 0) {
            ssize_t given = splice(flow->pipe[0], NULL, flow->to, NULL, flow->piped,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (given > 0) {
                flow->piped -= (size_t)given;
                moved = true;
            } else if (given < 0 && errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (!moved)
            break;
        relay->active_ms = clock_coarse_ms();
    }
    if (flow->ended && flow->piped == 0 && !flow->shut) {
        shutdown(flow->to, SHUT_WR);
        flow->shut = true;
    }
    /* Read while the pipe has room; write when the pipe holds what `to` did not take. */
    egress_relay_want(flow->readable, &flow->reading,
                      !flow->ended && flow->piped < EGRESS_RELAY_PIPE_SIZE);
    egress_relay_want(flow->writable, &flow->writing, flow->piped > 0);
    return true;
}

static void egress_relay_flow_ready(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_relay_flow_t *flow = argument;
    egress_relay_t *relay = flow->relay;
    if (!egress_relay_pump(relay, flow) || (relay->flows[0].shut && relay->flows[1].shut))
        egress_relay_free(relay); /* an error, or both ends closed their writing */
}

/* DESIGN.md: an hour without a byte either way closes the relay. */
static void egress_relay_idle(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_relay_t *relay = argument;
    uint64_t idle_ms = clock_coarse_ms() - relay->active_ms;
    if (idle_ms < relay->site->idle_timeout_ms) {
        clock_arm(relay->deadline, relay->site->idle_timeout_ms - idle_ms);
        return;
    }
    log_debug("egress: sandbox %s: relay to \"%s\" idle for %llu ms; closed",
              relay->site->sandbox_id, relay->name.text,
              (unsigned long long)relay->site->idle_timeout_ms);
    egress_relay_free(relay);
}

/* Both sockets leave their bufferevents for a pipe per direction; what the client sent while its
 * name was read goes first, into the pipe toward the name. Returns false when that cannot be set
 * up (the relay must close). */
static bool egress_relay_splice(egress_relay_t *relay) {
    egress_relay_site_t *site = relay->site;
    relay->flows[0].from = dup(bufferevent_getfd(relay->client));
    relay->flows[1].from = dup(bufferevent_getfd(relay->upstream));
    if (relay->flows[0].from < 0 || relay->flows[1].from < 0)
        return false;
    uint8_t first[EGRESS_SNIFF_BYTES_MAX];
    int first_length = evbuffer_remove(bufferevent_get_input(relay->client), first, sizeof(first));
    bufferevent_free(relay->client);
    bufferevent_free(relay->upstream);
    relay->client = relay->upstream = NULL;
    for (size_t i = 0; i < 2; i++) {
        egress_relay_flow_t *flow = &relay->flows[i];
        flow->relay = relay;
        flow->to = relay->flows[1 - i].from;
        flow->bytes = i == 0 ? &site->metrics->bytes_out : &site->metrics->bytes_in;
        if (pipe2(flow->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
            return false;
        fcntl(flow->pipe[1], F_SETPIPE_SZ, EGRESS_RELAY_PIPE_SIZE); /* else 64 KiB: still fine */
        flow->readable =
            event_new(site->base, flow->from, EV_READ | EV_PERSIST, egress_relay_flow_ready, flow);
        flow->writable =
            event_new(site->base, flow->to, EV_WRITE | EV_PERSIST, egress_relay_flow_ready, flow);
        if (flow->readable == NULL || flow->writable == NULL)
            return false;
    }
    /* At most 16 KiB into an empty pipe of at least 64 KiB: one write takes it all. */
    if (first_length > 0) {
        if (write(relay->flows[0].pipe[1], first, (size_t)first_length) != first_length)
            return false;
        relay->flows[0].piped = (size_t)first_length;
        site->metrics->bytes_out += (uint64_t)first_length;
    }
    return true;
}

static void egress_relay_begin(egress_relay_t *relay) {
    relay->state = EGRESS_RELAY_RELAYING;
    relay->active_ms = clock_coarse_ms();
    if (!egress_relay_splice(relay)) {
        log_warn("egress: sandbox %s: cannot relay to \"%s\": %s", relay->site->sandbox_id,
                 relay->name.text, strerror(errno));
        egress_relay_free(relay);
        return;
    }
    relay->site->metrics->intercepted[EGRESS_VERDICT_RELAYED]++;
    log_debug("egress: sandbox %s: TCP %u to \"%s\" relayed", relay->site->sandbox_id, relay->port,
              relay->name.text);
    event_free(relay->deadline);
    relay->deadline = evtimer_new(relay->site->base, egress_relay_idle, relay);
    if (relay->deadline == NULL) {
        egress_relay_free(relay);
        return;
    }
    clock_arm(relay->deadline, relay->site->idle_timeout_ms);
    for (size_t i = 0; i < 2; i++) {
        if (!egress_relay_pump(relay, &relay->flows[i])) {
            egress_relay_free(relay);
            return;
        }
    }
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
    bufferevent_free(relay->upstream);
    relay->upstream = NULL;
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
        relay->upstream = bufferevent_socket_new(site->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (relay->upstream == NULL) {
            close(fd);
            continue;
        }
        bufferevent_setcb(relay->upstream, NULL, NULL, egress_relay_dial_event, relay);
        if (bufferevent_socket_connect(relay->upstream, (struct sockaddr *)&address,
                                       (int)address_length) != 0) {
            bufferevent_free(relay->upstream);
            relay->upstream = NULL;
            continue;
        }
        relay->state = EGRESS_RELAY_DIALING;
        clock_arm(relay->deadline, EGRESS_RELAY_DIAL_TIMEOUT_MS);
        return;
    }
    egress_relay_refuse(relay, EGRESS_VERDICT_DIAL_FAILED,
                        relay->candidate_count == 1 ? "cannot connect to its address"
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
        egress_relay_refuse(relay, EGRESS_VERDICT_UNRESOLVED, why);
        return;
    }
    egress_relay_choose(relay, resolved);
    if (relay->candidate_count == 0) {
        egress_relay_refuse(relay, EGRESS_VERDICT_REFUSED_ADDRESS,
                            "every address it resolves to is refused (private, special "
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
            egress_relay_refuse(relay, EGRESS_VERDICT_NO_NAME, "no name within the first 16 KiB");
        return;
    case EGRESS_SNIFF_NO_NAME:
        egress_relay_refuse(relay, EGRESS_VERDICT_NO_NAME,
                            relay->port == 443 ? "the ClientHello has no server name"
                                               : "the request names no host");
        return;
    case EGRESS_SNIFF_MALFORMED:
        egress_relay_refuse(relay, EGRESS_VERDICT_MALFORMED,
                            relay->port == 443 ? "not a TLS ClientHello"
                                               : "not an HTTP/1.x request");
        return;
    case EGRESS_SNIFF_NAME:
        break;
    }
    if (!egress_policy_domain_match(relay->site->policy, relay->name.text, relay->name.length)) {
        egress_relay_refuse(relay, EGRESS_VERDICT_NOT_ALLOWED,
                            "no domain entry of allow_out matches it");
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
        egress_relay_refuse(relay, EGRESS_VERDICT_UNRESOLVED, "out of memory");
}

static void egress_relay_sniff_event(struct bufferevent *bufferevent, short events,
                                     void *argument) {
    (void)bufferevent;
    egress_relay_t *relay = argument;
    egress_relay_refuse(relay, EGRESS_VERDICT_NO_NAME,
                        (events & BEV_EVENT_EOF) ? "closed before naming a host"
                                                 : "connection error before a name");
}

static void egress_relay_deadline(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_relay_t *relay = argument;
    if (relay->state == EGRESS_RELAY_SNIFFING) {
        egress_relay_refuse(relay, EGRESS_VERDICT_NO_NAME, "no name within 5 s");
        return;
    }
    /* A dial that hangs: the next address. */
    bufferevent_free(relay->upstream);
    relay->upstream = NULL;
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
    for (size_t i = 0; i < 2; i++)
        relay->flows[i].from = relay->flows[i].pipe[0] = relay->flows[i].pipe[1] = -1;
    LIST_INSERT_HEAD(&site->relays, relay, link);
    site->relay_count++;
    site->metrics->relays_open++;
    relay->client = bufferevent_socket_new(site->base, fd, BEV_OPT_CLOSE_ON_FREE);
    relay->deadline = evtimer_new(site->base, egress_relay_deadline, relay);
    if (relay->client == NULL || relay->deadline == NULL) {
        if (relay->client == NULL)
            egress_relay_reset_fd(fd);
        egress_relay_refuse(relay, EGRESS_VERDICT_LIMIT, "out of memory");
        return;
    }
    bufferevent_setcb(relay->client, egress_relay_sniff, NULL, egress_relay_sniff_event, relay);
    /* The name must come in the first 16 KiB: never read more before it did. */
    bufferevent_setwatermark(relay->client, EV_READ, 0, EGRESS_SNIFF_BYTES_MAX);
    bufferevent_enable(relay->client, EV_READ);
    clock_arm(relay->deadline, EGRESS_RELAY_SNIFF_TIMEOUT_MS);
}

void egress_relay_close_all(egress_relay_site_t *site) {
    while (!LIST_EMPTY(&site->relays))
        egress_relay_free(LIST_FIRST(&site->relays));
}
