/* Domain interception for one sandbox: the agent's listeners inside its namespace (TCP 80 and
 * 443 relays, DNS over UDP and TCP), and the DNS answers. */
#include "egress/intercept.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "egress/dns_message.h"
#include "egress/relay.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

enum {
    EGRESS_INTERCEPT_BACKLOG = 512,
    /* Datagrams read per wake-up, so one busy sandbox cannot hold the loop. */
    EGRESS_INTERCEPT_DNS_BURST = 64,
    /* A DNS over TCP connection idle this long is closed (RFC 7766 §6.2.3 suggests seconds). */
    EGRESS_INTERCEPT_DNS_TCP_IDLE_MS = 10 * 1000,
    EGRESS_INTERCEPT_DNS_TCP_QUEUE_MAX = 64 * 1024,
};

/* The port both sockets take when it is free (else the kernel picks one). A fixed port outlives
 * the agent: after a restart, conntrack entries that still map a sandbox's recent connections to
 * the old listener's port find a listener there again instead of a reset. Below the ephemeral
 * range, so a sandbox's own outgoing connections never hold it. */
enum { EGRESS_INTERCEPT_PREFERRED_PORT = 15053 };

/* linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h: where a redirected connection
 * was going, from conntrack. Their headers clash with glibc's, so the two values are here. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

typedef struct egress_dns_connection egress_dns_connection_t;

/* A DNS query waiting for the resolver; answered over UDP to from, or on connection. */
typedef struct egress_dns_pending {
    egress_intercept_t *intercept;
    LIST_ENTRY(egress_dns_pending) link; /* in intercept->pending */
    egress_dns_connection_t *connection; /* NULL: UDP */
    struct sockaddr_storage from;
    socklen_t from_length;
    egress_dns_query_t query;
    egress_resolve_wait_t *wait;
} egress_dns_pending_t;

/* A DNS over TCP client: length-prefixed queries, answered as they resolve (RFC 7766 §6.2.1.1
 * allows answers out of order). */
struct egress_dns_connection {
    egress_intercept_t *intercept;
    LIST_ENTRY(egress_dns_connection) link; /* in intercept->dns_connections */
    struct bufferevent *bufferevent;
};

struct egress_intercept {
    const egress_intercept_shared_t *shared;
    char *sandbox_id;
    char *netns;
    dev_t device; /* the namespace the listeners live in */
    ino_t inode;
    egress_intercept_ports_t ports;
    struct evconnlistener *listener; /* TCP 53, 80 and 443, told apart by where they went */
    int dns_udp;
    struct event *dns_udp_event;
    egress_relay_site_t site;
    LIST_HEAD(, egress_dns_connection) dns_connections;
    size_t dns_connection_count;
    LIST_HEAD(, egress_dns_pending) pending;
    size_t pending_count;
};

/* ---- the agent's cgroup ---- */

int egress_intercept_find_cgroup(egress_intercept_shared_t *shared, char *error,
                                 size_t error_size) {
    /* /proc/self/cgroup: "0::PATH" is the cgroup2 hierarchy (hybrid hosts list v1 ones too). */
    char path[EGRESS_INTERCEPT_CGROUP_MAX] = "";
    FILE *file = fopen("/proc/self/cgroup", "re");
    if (file == NULL)
        return error_format(error, error_size, "cannot read /proc/self/cgroup: %s",
                            strerror(errno));
    char line[EGRESS_INTERCEPT_CGROUP_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof(line), file) != NULL) {
        if (strncmp(line, "0::", 3) == 0) {
            snprintf(path, sizeof(path), "%s", line + 3);
            path[strcspn(path, "\n")] = '\0';
            found = true;
        }
    }
    fclose(file);
    if (!found)
        return error_format(error, error_size, "the agent is in no cgroup v2 hierarchy");
    if (strcmp(path, "/") == 0)
        return error_format(error, error_size,
                            "the agent runs in the root cgroup, which every process shares: run it "
                            "in a cgroup of its own (a systemd service has one)");

    /* nft resolves the path under /sys/fs/cgroup: find where cgroup2 is mounted below it. */
    char mount_point[512] = "";
    file = fopen("/proc/self/mountinfo", "re");
    if (file == NULL)
        return error_format(error, error_size, "cannot read /proc/self/mountinfo: %s",
                            strerror(errno));
    while (fgets(line, sizeof(line), file) != NULL) {
        char point[512];
        char type[64];
        /* ID PARENT MAJOR:MINOR ROOT MOUNT-POINT OPTIONS... - TYPE SOURCE ... */
        const char *separator = strstr(line, " - ");
        if (separator == NULL || sscanf(line, "%*s %*s %*s %*s %511s", point) != 1 ||
            sscanf(separator + 3, "%63s", type) != 1 || strcmp(type, "cgroup2") != 0)
            continue;
        if (strcmp(point, "/sys/fs/cgroup") == 0 || strncmp(point, "/sys/fs/cgroup/", 15) == 0) {
            snprintf(mount_point, sizeof(mount_point), "%s", point);
            break;
        }
    }
    fclose(file);
    if (mount_point[0] == '\0')
        return error_format(error, error_size,
                            "no cgroup2 file system mounted under "
                            "/sys/fs/cgroup");
    const char *below = mount_point + strlen("/sys/fs/cgroup");
    if (*below == '/')
        below++;
    /* "unified" + "/a/b" on a hybrid host; "a/b" where cgroup2 is /sys/fs/cgroup itself. */
    int written = snprintf(shared->cgroup, sizeof(shared->cgroup), "%s%s", below,
                           below[0] != '\0' ? path : path + 1);
    if (written < 0 || (size_t)written >= sizeof(shared->cgroup) || strchr(shared->cgroup, '"'))
        return error_format(error, error_size, "the agent's cgroup path cannot be used: %s", path);
    shared->cgroup_level = 0;
    for (const char *c = path; *c != '\0'; c++) {
        if (*c == '/' && c[1] != '\0' && c[1] != '/')
            shared->cgroup_level++;
    }
    return 0;
}

/* ---- DNS answers ---- */

/* Sends an answer: a datagram to pending->from, or a length-prefixed message on its connection. */
static void egress_intercept_dns_send(egress_intercept_t *intercept,
                                      egress_dns_connection_t *connection,
                                      const struct sockaddr *from, socklen_t from_length,
                                      const uint8_t *answer, size_t length) {
    if (length == 0)
        return;
    if (connection == NULL) {
        sendto(intercept->dns_udp, answer, length, MSG_DONTWAIT, from, from_length);
        return;
    }
    struct evbuffer *output = bufferevent_get_output(connection->bufferevent);
    uint8_t prefix[2] = {(uint8_t)(length >> 8), (uint8_t)length};
    evbuffer_add(output, prefix, 2);
    evbuffer_add(output, answer, length);
}

/* The most an answer to query may hold: a TCP message's, or what the query's UDP allows. */
static size_t egress_intercept_dns_limit(const egress_dns_connection_t *connection,
                                         const egress_dns_query_t *query) {
    return connection != NULL ? EGRESS_DNS_TCP_MAX : query->udp_limit;
}

/* Answers query from what resolved gave: the permitted addresses of the family asked for. */
static size_t egress_intercept_dns_write(egress_intercept_t *intercept,
                                         const egress_dns_query_t *query,
                                         const egress_resolved_t *resolved, size_t limit,
                                         uint8_t *out, size_t out_size) {
    egress_metrics_t *metrics = intercept->shared->metrics;
    metrics->dns_answers[resolved->count4 + resolved->count6 == 0 ? EGRESS_DNS_SERVFAIL
                                                                  : EGRESS_DNS_ADDRESSES]++;
    if (resolved->count4 + resolved->count6 == 0)
        return egress_dns_write_response(query, EGRESS_DNS_RCODE_SERVFAIL, NULL, 0, 0, limit, out,
                                         out_size);
    egress_family_t family = query->type == EGRESS_DNS_TYPE_AAAA ? EGRESS_IPV6 : EGRESS_IPV4;
    size_t width = family == EGRESS_IPV6 ? 16 : 4;
    size_t count = family == EGRESS_IPV6 ? resolved->count6 : resolved->count4;
    uint8_t addresses[EGRESS_DNS_ADDRESSES_MAX * 16];
    size_t kept = 0;
    for (size_t i = 0; i < count && kept < EGRESS_DNS_ADDRESSES_MAX; i++) {
        const uint8_t *address =
            family == EGRESS_IPV6 ? resolved->addresses6[i] : resolved->addresses4[i];
        /* Only where the agent would dial: the sandbox connects where its relay will go. */
        if (egress_policy_resolved_permitted(intercept->site.policy, family, address))
            memcpy(addresses + width * kept++, address, width);
    }
    return egress_dns_write_response(query, EGRESS_DNS_RCODE_NOERROR, addresses, kept,
                                     resolved->ttl_s, limit, out, out_size);
}

static void egress_intercept_pending_free(egress_dns_pending_t *pending) {
    LIST_REMOVE(pending, link);
    pending->intercept->pending_count--;
    egress_resolver_cancel(pending->wait);
    free(pending);
}

static void egress_intercept_dns_resolved(const egress_resolved_t *resolved, void *argument) {
    egress_dns_pending_t *pending = argument;
    pending->wait = NULL;
    uint8_t answer[EGRESS_DNS_TCP_MAX];
    size_t length = egress_intercept_dns_write(
        pending->intercept, &pending->query, resolved,
        egress_intercept_dns_limit(pending->connection, &pending->query), answer, sizeof(answer));
    egress_intercept_dns_send(pending->intercept, pending->connection,
                              (const struct sockaddr *)&pending->from, pending->from_length, answer,
                              length);
    egress_intercept_pending_free(pending);
}

/* Answers one query message: NXDOMAIN for a name no entry matches, an empty answer for other
 * types of a matching name, and the resolved addresses for its A and AAAA (maybe later). */
static void egress_intercept_dns_query(egress_intercept_t *intercept,
                                       egress_dns_connection_t *connection,
                                       const struct sockaddr *from, socklen_t from_length,
                                       const uint8_t *message, size_t message_length) {
    egress_dns_query_t query;
    egress_dns_rcode_t rcode;
    uint8_t answer[EGRESS_DNS_TCP_MAX];
    size_t length = 0;
    switch (egress_dns_parse_query(message, message_length, &query, &rcode)) {
    case EGRESS_DNS_PARSE_DROP:
        return;
    case EGRESS_DNS_PARSE_ERROR:
        intercept->shared->metrics->dns_answers[EGRESS_DNS_REFUSED]++;
        length = egress_dns_write_error(&query, rcode, answer, sizeof(answer));
        egress_intercept_dns_send(intercept, connection, from, from_length, answer, length);
        return;
    case EGRESS_DNS_PARSE_QUERY:
        break;
    }
    size_t limit = egress_intercept_dns_limit(connection, &query);
    bool matches = query.name_valid && egress_policy_domain_match(intercept->site.policy,
                                                                  query.name, query.name_length);
    if (!matches || query.class_ != EGRESS_DNS_CLASS_IN ||
        (query.type != EGRESS_DNS_TYPE_A && query.type != EGRESS_DNS_TYPE_AAAA)) {
        log_debug("egress: sandbox %s: DNS %s type %u: %s", intercept->sandbox_id,
                  query.name_valid ? query.name : "(not a hostname)", query.type,
                  matches ? "empty answer" : "NXDOMAIN");
        intercept->shared->metrics->dns_answers[matches ? EGRESS_DNS_EMPTY : EGRESS_DNS_NXDOMAIN]++;
        length = egress_dns_write_response(
            &query, matches ? EGRESS_DNS_RCODE_NOERROR : EGRESS_DNS_RCODE_NXDOMAIN, NULL, 0, 0,
            limit, answer, sizeof(answer));
        egress_intercept_dns_send(intercept, connection, from, from_length, answer, length);
        return;
    }
    egress_resolved_t resolved;
    if (egress_resolver_cached(intercept->shared->resolver, query.name, query.name_length,
                               &resolved)) {
        length =
            egress_intercept_dns_write(intercept, &query, &resolved, limit, answer, sizeof(answer));
        egress_intercept_dns_send(intercept, connection, from, from_length, answer, length);
        return;
    }
    if (intercept->pending_count >= EGRESS_INTERCEPT_DNS_PENDING_MAX)
        return; /* dropped: the client asks again */
    egress_dns_pending_t *pending = calloc(1, sizeof(*pending));
    if (pending == NULL)
        return;
    pending->intercept = intercept;
    pending->connection = connection;
    if (from != NULL) {
        memcpy(&pending->from, from, from_length);
        pending->from_length = from_length;
    }
    pending->query = query;
    LIST_INSERT_HEAD(&intercept->pending, pending, link);
    intercept->pending_count++;
    pending->wait =
        egress_resolver_lookup(intercept->shared->resolver, query.name, query.name_length,
                               egress_intercept_dns_resolved, pending);
    if (pending->wait == NULL)
        egress_intercept_pending_free(pending);
}

static void egress_intercept_dns_udp_read(evutil_socket_t fd, short events, void *argument) {
    (void)events;
    egress_intercept_t *intercept = argument;
    for (int i = 0; i < EGRESS_INTERCEPT_DNS_BURST; i++) {
        uint8_t message[EGRESS_DNS_EDNS_UDP_MAX * 2];
        struct sockaddr_storage from;
        socklen_t from_length = sizeof(from);
        ssize_t received = recvfrom(fd, message, sizeof(message), MSG_DONTWAIT,
                                    (struct sockaddr *)&from, &from_length);
        if (received < 0)
            return;
        egress_intercept_dns_query(intercept, NULL, (const struct sockaddr *)&from, from_length,
                                   message, (size_t)received);
    }
}

/* ---- DNS over TCP ---- */

static void egress_intercept_dns_close(egress_dns_connection_t *connection) {
    egress_intercept_t *intercept = connection->intercept;
    /* Queries still resolving would answer on a closed connection. */
    egress_dns_pending_t *pending = LIST_FIRST(&intercept->pending);
    while (pending != NULL) {
        egress_dns_pending_t *next = LIST_NEXT(pending, link);
        if (pending->connection == connection)
            egress_intercept_pending_free(pending);
        pending = next;
    }
    LIST_REMOVE(connection, link);
    intercept->dns_connection_count--;
    bufferevent_free(connection->bufferevent);
    free(connection);
}

static void egress_intercept_dns_tcp_read(struct bufferevent *bufferevent, void *argument) {
    egress_dns_connection_t *connection = argument;
    struct evbuffer *input = bufferevent_get_input(bufferevent);
    for (;;) {
        /* A client that does not read its answers is not read either. */
        if (evbuffer_get_length(bufferevent_get_output(bufferevent)) >
            EGRESS_INTERCEPT_DNS_TCP_QUEUE_MAX) {
            bufferevent_disable(bufferevent, EV_READ);
            return;
        }
        uint8_t prefix[2];
        if (evbuffer_copyout(input, prefix, 2) != 2)
            return;
        size_t length = ((size_t)prefix[0] << 8) | prefix[1];
        if (evbuffer_get_length(input) < 2 + length)
            return;
        evbuffer_drain(input, 2);
        uint8_t *message = evbuffer_pullup(input, (ev_ssize_t)length);
        egress_intercept_dns_query(connection->intercept, connection, NULL, 0, message, length);
        evbuffer_drain(input, length);
    }
}

static void egress_intercept_dns_tcp_written(struct bufferevent *bufferevent, void *argument) {
    (void)argument;
    bufferevent_enable(bufferevent, EV_READ);
}

static void egress_intercept_dns_tcp_event(struct bufferevent *bufferevent, short events,
                                           void *argument) {
    (void)bufferevent;
    (void)events;
    egress_intercept_dns_close(argument); /* EOF, error or idle */
}

/* ---- listeners ---- */

/* A DNS over TCP client. */
static void egress_intercept_serve_dns(egress_intercept_t *intercept, evutil_socket_t fd) {
    egress_dns_connection_t *connection = calloc(1, sizeof(*connection));
    struct bufferevent *bufferevent =
        connection != NULL
            ? bufferevent_socket_new(intercept->shared->base, fd, BEV_OPT_CLOSE_ON_FREE)
            : NULL;
    if (bufferevent == NULL) {
        free(connection);
        egress_relay_reset_fd(fd);
        return;
    }
    connection->intercept = intercept;
    connection->bufferevent = bufferevent;
    LIST_INSERT_HEAD(&intercept->dns_connections, connection, link);
    intercept->dns_connection_count++;
    struct timeval idle = clock_timeval(EGRESS_INTERCEPT_DNS_TCP_IDLE_MS);
    bufferevent_setcb(bufferevent, egress_intercept_dns_tcp_read, egress_intercept_dns_tcp_written,
                      egress_intercept_dns_tcp_event, connection);
    bufferevent_set_timeouts(bufferevent, &idle, NULL);
    bufferevent_enable(bufferevent, EV_READ | EV_WRITE);
}

/* The port a redirected connection was going to (conntrack's original destination), or 0 when
 * it was not redirected: someone connected to the listener itself. */
static uint16_t egress_intercept_original_port(evutil_socket_t fd, bool ipv6) {
    struct sockaddr_storage original;
    socklen_t length = sizeof(original);
    int result = ipv6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &original, &length)
                      : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &original, &length);
    if (result != 0)
        return 0;
    return ntohs(original.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&original)->sin6_port
                                                : ((struct sockaddr_in *)&original)->sin_port);
}

/* A TCP connection the rules redirected: DNS, or port 80 or 443 of an address outside the
 * address rules. */
static void egress_intercept_accept(struct evconnlistener *listener, evutil_socket_t fd,
                                    struct sockaddr *address, int address_length, void *argument) {
    (void)listener;
    (void)address_length;
    egress_intercept_t *intercept = argument;
    if (intercept->site.relay_count + intercept->dns_connection_count >=
        EGRESS_INTERCEPT_CONNECTIONS_MAX) {
        intercept->shared->metrics->intercepted[EGRESS_VERDICT_LIMIT]++;
        log_info("egress: sandbox %s: %d intercepted connections at once; a new one was reset",
                 intercept->sandbox_id, EGRESS_INTERCEPT_CONNECTIONS_MAX);
        egress_relay_reset_fd(fd);
        return;
    }
    /* An IPv4 client of the dual-stack listener is a v4-mapped address, and IPv4's conntrack. */
    bool ipv6 = false;
    if (address->sa_family == AF_INET6) {
        const struct in6_addr *peer = &((const struct sockaddr_in6 *)address)->sin6_addr;
        ipv6 = !IN6_IS_ADDR_V4MAPPED(peer);
    }
    uint16_t port = egress_intercept_original_port(fd, ipv6);
    switch (port) {
    case 53:
        egress_intercept_serve_dns(intercept, fd);
        return;
    case 80:
    case 443:
        egress_relay_start(&intercept->site, fd, port, ipv6);
        return;
    default:
        log_info("egress: sandbox %s: a connection to the agent's listener that no rule "
                 "redirected (original port %u) was reset",
                 intercept->sandbox_id, port);
        egress_relay_reset_fd(fd);
        return;
    }
}

/* Binds a socket of type inside the sandbox's namespace to preferred, or when that is taken to a
 * port the kernel picks, on every address of both families (IPv4 only where the namespace has no
 * IPv6); returns it with *port, or -1 with error. */
static int egress_intercept_bind(egress_intercept_t *intercept, int type, uint16_t preferred,
                                 uint16_t *port, char *error, size_t error_size) {
    const egress_applier_t *applier = intercept->shared->applier;
    int family = AF_INET6;
    int fd = egress_netns_socket(applier, intercept->netns, AF_INET6, type, &intercept->device,
                                 &intercept->inode);
    if (fd >= 0) {
        int off = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    } else {
        family = AF_INET;
        fd = egress_netns_socket(applier, intercept->netns, AF_INET, type, &intercept->device,
                                 &intercept->inode);
        if (fd < 0) {
            error_format(error, error_size, "cannot open a socket in namespace %s: %s",
                         intercept->netns, strerror(errno));
            return -1;
        }
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    struct sockaddr_storage address;
    socklen_t length =
        family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int bound = -1;
    for (int attempt = 0; attempt < 2 && bound != 0; attempt++) {
        uint16_t wanted = attempt == 0 ? preferred : 0;
        memset(&address, 0, sizeof(address));
        if (family == AF_INET6) {
            ((struct sockaddr_in6 *)&address)->sin6_family = AF_INET6;
            ((struct sockaddr_in6 *)&address)->sin6_port = htons(wanted);
        } else {
            ((struct sockaddr_in *)&address)->sin_family = AF_INET;
            ((struct sockaddr_in *)&address)->sin_port = htons(wanted);
        }
        bound = bind(fd, (struct sockaddr *)&address, length);
    }
    if (bound != 0 || getsockname(fd, (struct sockaddr *)&address, &length) != 0) {
        error_format(error, error_size, "cannot bind a socket in namespace %s: %s",
                     intercept->netns, strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&address)->sin6_port
                                     : ((struct sockaddr_in *)&address)->sin_port);
    return fd;
}

egress_intercept_t *egress_intercept_new(const egress_intercept_shared_t *shared,
                                         const char *sandbox_id, const char *netns,
                                         const egress_policy_t *policy, char *error,
                                         size_t error_size) {
    egress_intercept_t *intercept = calloc(1, sizeof(*intercept));
    if (intercept == NULL) {
        error_format(error, error_size, "out of memory");
        return NULL;
    }
    intercept->shared = shared;
    intercept->dns_udp = -1;
    intercept->sandbox_id = strdup(sandbox_id);
    intercept->netns = strdup(netns);
    if (intercept->sandbox_id == NULL || intercept->netns == NULL) {
        error_format(error, error_size, "out of memory");
        goto fail;
    }
    intercept->site = (egress_relay_site_t){
        .base = shared->base,
        .applier = shared->applier,
        .resolver = shared->resolver,
        .sandbox_id = intercept->sandbox_id,
        .netns = intercept->netns,
        .policy = policy,
        .idle_timeout_ms = EGRESS_RELAY_IDLE_TIMEOUT_MS,
        .metrics = shared->metrics,
    };
    intercept->ports.cgroup = shared->cgroup;
    intercept->ports.cgroup_level = shared->cgroup_level;

    int fd = egress_intercept_bind(intercept, SOCK_STREAM, EGRESS_INTERCEPT_PREFERRED_PORT,
                                   &intercept->ports.tcp, error, error_size);
    if (fd < 0)
        goto fail;
    intercept->listener = evconnlistener_new(shared->base, egress_intercept_accept, intercept,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                             EGRESS_INTERCEPT_BACKLOG, fd);
    if (intercept->listener == NULL) {
        error_format(error, error_size, "cannot listen in namespace %s: %s", netns,
                     strerror(errno));
        close(fd);
        goto fail;
    }
    intercept->dns_udp =
        egress_intercept_bind(intercept, SOCK_DGRAM, EGRESS_INTERCEPT_PREFERRED_PORT,
                              &intercept->ports.udp, error, error_size);
    if (intercept->dns_udp < 0)
        goto fail;
    intercept->dns_udp_event = event_new(shared->base, intercept->dns_udp, EV_READ | EV_PERSIST,
                                         egress_intercept_dns_udp_read, intercept);
    if (intercept->dns_udp_event == NULL || event_add(intercept->dns_udp_event, NULL) != 0) {
        error_format(error, error_size, "out of memory");
        goto fail;
    }
    log_info("egress: sandbox %s: intercepting in namespace %s (TCP 53, 80 and 443 to port %u, "
             "UDP 53 to port %u)",
             sandbox_id, netns, intercept->ports.tcp, intercept->ports.udp);
    return intercept;

fail:
    egress_intercept_free(intercept);
    return NULL;
}

void egress_intercept_free(egress_intercept_t *intercept) {
    if (intercept == NULL)
        return;
    egress_relay_close_all(&intercept->site);
    while (!LIST_EMPTY(&intercept->dns_connections))
        egress_intercept_dns_close(LIST_FIRST(&intercept->dns_connections));
    while (!LIST_EMPTY(&intercept->pending))
        egress_intercept_pending_free(LIST_FIRST(&intercept->pending));
    if (intercept->listener != NULL)
        evconnlistener_free(intercept->listener);
    if (intercept->dns_udp_event != NULL)
        event_free(intercept->dns_udp_event);
    if (intercept->dns_udp >= 0)
        close(intercept->dns_udp);
    free(intercept->sandbox_id);
    free(intercept->netns);
    free(intercept);
}

const egress_intercept_ports_t *egress_intercept_ports(const egress_intercept_t *intercept) {
    return &intercept->ports;
}

bool egress_intercept_serves(const egress_intercept_t *intercept, const char *netns) {
    dev_t device;
    ino_t inode;
    return strcmp(intercept->netns, netns) == 0 &&
           egress_netns_identity(intercept->shared->applier, netns, &device, &inode) == 0 &&
           device == intercept->device && inode == intercept->inode;
}
