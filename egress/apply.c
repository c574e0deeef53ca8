/* Applying rulesets inside a sandbox's network namespace (setns + libnftables). */
#include "egress/apply.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "util/error.h"
#include "util/log.h"

/* A route dump of a sandbox namespace holds a handful of routes; one read is 16 KiB. */
#define EGRESS_APPLY_NETLINK_BUFFER 16384

static double egress_apply_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1000.0 + (double)now.tv_nsec / 1e6;
}

int egress_applier_init(egress_applier_t *applier, const char *directory, char *error,
                        size_t error_size) {
    memset(applier, 0, sizeof(*applier));
    applier->home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (applier->home < 0)
        return error_format(error, error_size,
                            "cannot open /proc/self/ns/net (our own network namespace): %s",
                            strerror(errno));
    snprintf(applier->directory, sizeof(applier->directory), "%s",
             directory != NULL ? directory : EGRESS_APPLY_NETNS_DIRECTORY);
    return 0;
}

void egress_applier_free(egress_applier_t *applier) {
    if (applier->home >= 0)
        close(applier->home);
    applier->home = -1;
}

bool egress_netns_name_valid(const char *name, size_t length) {
    if (length == 0 || length > EGRESS_NETNS_NAME_MAX)
        return false;
    if ((length == 1 && name[0] == '.') || (length == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || c == '/')
            return false;
    }
    return true;
}

void egress_applied_clear(egress_applied_t *applied) {
    free(applied->script);
    memset(applied, 0, sizeof(*applied));
}

/* Opens the handle of namespace netns; returns its descriptor, or -1 with errno set. */
static int egress_apply_open(const egress_applier_t *applier, const char *netns,
                             struct stat *status) {
    char path[sizeof(applier->directory) + EGRESS_NETNS_NAME_MAX + 2];
    snprintf(path, sizeof(path), "%s/%s", applier->directory, netns);
    int handle = open(path, O_RDONLY | O_CLOEXEC);
    if (handle < 0)
        return -1;
    if (fstat(handle, status) != 0) {
        int saved = errno;
        close(handle);
        errno = saved;
        return -1;
    }
    return handle;
}

/* Goes back to the agent's namespace. Failing here would leave every later socket (Redis
 * reconnects) inside a sandbox: not survivable. */
static void egress_apply_go_home(const egress_applier_t *applier) {
    if (setns(applier->home, CLONE_NEWNET) != 0) {
        log_error("cannot return to our own network namespace: %s; exiting", strerror(errno));
        abort();
    }
}

/* Adds ifindex's name to uplinks unless present; names nft could not quote are left out (the
 * kernel allows '"' in a name; such an uplink then is filtered like any interface). */
static void egress_apply_add_uplink(egress_uplinks_t *uplinks, int ifindex) {
    char name[IF_NAMESIZE];
    if (ifindex <= 0 || if_indextoname((unsigned)ifindex, name) == NULL)
        return;
    for (const char *c = name; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            return;
    }
    for (size_t i = 0; i < uplinks->count; i++) {
        if (strcmp(uplinks->names[i], name) == 0)
            return;
    }
    if (uplinks->count < sizeof(uplinks->names) / sizeof(uplinks->names[0]))
        snprintf(uplinks->names[uplinks->count++], sizeof(uplinks->names[0]), "%s", name);
}

/* Reads one RTM_NEWROUTE: a unicast default route adds its output interfaces. */
static void egress_apply_route(egress_uplinks_t *uplinks, const struct nlmsghdr *header) {
    const struct rtmsg *route = NLMSG_DATA(header);
    if (header->nlmsg_len < NLMSG_LENGTH(sizeof(*route)))
        return;
    if ((route->rtm_family != AF_INET && route->rtm_family != AF_INET6) ||
        route->rtm_dst_len != 0 || route->rtm_type != RTN_UNICAST ||
        route->rtm_table == RT_TABLE_LOCAL)
        return;
    size_t remaining = header->nlmsg_len - NLMSG_LENGTH(sizeof(*route));
    const struct rtattr *attribute = RTM_RTA(route);
    while (remaining >= sizeof(*attribute) && attribute->rta_len >= sizeof(*attribute) &&
           attribute->rta_len <= remaining) {
        if (attribute->rta_type == RTA_OIF && RTA_PAYLOAD(attribute) >= sizeof(int)) {
            int ifindex;
            memcpy(&ifindex, RTA_DATA(attribute), sizeof(ifindex));
            egress_apply_add_uplink(uplinks, ifindex);
        } else if (attribute->rta_type == RTA_MULTIPATH) {
            const char *hop_cursor = RTA_DATA(attribute);
            size_t hops = RTA_PAYLOAD(attribute);
            while (hops >= sizeof(struct rtnexthop)) {
                const struct rtnexthop *hop = (const struct rtnexthop *)(const void *)hop_cursor;
                if (hop->rtnh_len < sizeof(*hop) || hop->rtnh_len > hops)
                    break;
                egress_apply_add_uplink(uplinks, hop->rtnh_ifindex);
                size_t hop_step = RTNH_ALIGN(hop->rtnh_len);
                if (hop_step >= hops)
                    break;
                hops -= hop_step;
                hop_cursor += hop_step;
            }
        }
        size_t step = RTA_ALIGN(attribute->rta_len);
        if (step >= remaining)
            break;
        remaining -= step;
        attribute = (const struct rtattr *)((const char *)attribute + step);
    }
}

/* Lists the interfaces of the current namespace's default routes (IPv4 and IPv6, any table but
 * local); returns 0, or -1 with error. */
static int egress_apply_read_uplinks(egress_uplinks_t *uplinks, char *error, size_t error_size) {
    memset(uplinks, 0, sizeof(*uplinks));
    uplinks->known = true;
    int result = -1;
    char *buffer = NULL;
    int socket_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (socket_fd < 0) {
        error_format(error, error_size, "cannot open a route socket: %s", strerror(errno));
        goto fail;
    }
    struct {
        struct nlmsghdr header;
        struct rtmsg route;
    } request;
    memset(&request, 0, sizeof(request));
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(request.route));
    request.header.nlmsg_type = RTM_GETROUTE;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = 1;
    request.route.rtm_family = AF_UNSPEC;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(socket_fd, &request, request.header.nlmsg_len, 0, (struct sockaddr *)&kernel,
               sizeof(kernel)) < 0) {
        error_format(error, error_size, "cannot ask for the routes: %s", strerror(errno));
        goto fail;
    }
    buffer = malloc(EGRESS_APPLY_NETLINK_BUFFER);
    if (buffer == NULL) {
        error_format(error, error_size, "out of memory");
        goto fail;
    }
    for (;;) {
        ssize_t got = recv(socket_fd, buffer, EGRESS_APPLY_NETLINK_BUFFER, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            error_format(error, error_size, "cannot read the routes: %s",
                         got == 0 ? "end of file" : strerror(errno));
            goto fail;
        }
        size_t remaining = (size_t)got;
        const char *cursor = buffer;
        while (remaining >= sizeof(struct nlmsghdr)) {
            const struct nlmsghdr *header = (const struct nlmsghdr *)(const void *)cursor;
            if (header->nlmsg_len < sizeof(*header) || header->nlmsg_len > remaining)
                break;
            if (header->nlmsg_type == NLMSG_DONE) {
                result = 0;
                goto fail;
            }
            if (header->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *failure = NLMSG_DATA(header);
                error_format(error, error_size, "cannot read the routes: %s",
                             strerror(-failure->error));
                goto fail;
            }
            if (header->nlmsg_type == RTM_NEWROUTE)
                egress_apply_route(uplinks, header);
            size_t step = NLMSG_ALIGN(header->nlmsg_len);
            if (step >= remaining)
                break;
            remaining -= step;
            cursor += step;
        }
    }
fail:
    free(buffer);
    if (socket_fd >= 0)
        close(socket_fd);
    return result;
}

/* Reads the current namespace's nftables ruleset generation, which every commit there (ours or
 * anyone's) changes; returns 0, or -1 with error. */
static int egress_apply_read_generation(uint32_t *generation, char *error, size_t error_size) {
    int result = -1;
    int socket_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (socket_fd < 0) {
        error_format(error, error_size, "cannot open a netfilter socket: %s", strerror(errno));
        goto done;
    }
    struct {
        struct nlmsghdr header;
        struct nfgenmsg message;
    } request;
    memset(&request, 0, sizeof(request));
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(request.message));
    request.header.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
    request.header.nlmsg_flags = NLM_F_REQUEST;
    request.header.nlmsg_seq = 1;
    request.message.nfgen_family = AF_UNSPEC;
    request.message.version = NFNETLINK_V0;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(socket_fd, &request, request.header.nlmsg_len, 0, (struct sockaddr *)&kernel,
               sizeof(kernel)) < 0) {
        error_format(error, error_size, "cannot ask for the ruleset generation: %s",
                     strerror(errno));
        goto done;
    }
    /* The answer is one small message: a header, nfgenmsg and three attributes. */
    union {
        char bytes[512];
        struct nlmsghdr header;
    } reply;
    ssize_t got;
    do
        got = recv(socket_fd, reply.bytes, sizeof(reply.bytes), 0);
    while (got < 0 && errno == EINTR);
    const struct nlmsghdr *header = &reply.header;
    if (got < (ssize_t)NLMSG_LENGTH(sizeof(struct nfgenmsg)) || header->nlmsg_len > (size_t)got ||
        header->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) {
        error_format(error, error_size, "cannot read the ruleset generation: %s",
                     got < 0 ? strerror(errno) : "unexpected answer");
        goto done;
    }
    size_t offset = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    while (offset + sizeof(struct nlattr) <= header->nlmsg_len) {
        const struct nlattr *attribute =
            (const struct nlattr *)(const void *)(reply.bytes + offset);
        if (attribute->nla_len < sizeof(*attribute) ||
            offset + attribute->nla_len > header->nlmsg_len)
            break;
        if ((attribute->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID &&
            attribute->nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
            uint32_t value;
            memcpy(&value, (const char *)attribute + NLA_HDRLEN, sizeof(value));
            *generation = ntohl(value);
            result = 0;
            goto done;
        }
        offset += NLA_ALIGN(attribute->nla_len);
    }
    error_format(error, error_size, "cannot read the ruleset generation: no ID");
done:
    if (socket_fd >= 0)
        close(socket_fd);
    return result;
}

/* Runs script with a libnftables context made here: its netlink socket belongs to the namespace
 * it is opened in, so the context must be created after setns. Returns 0, or -1 with error. */
static int egress_apply_run(const char *script, char *error, size_t error_size) {
    struct nft_ctx *context = nft_ctx_new(NFT_CTX_DEFAULT);
    if (context == NULL)
        return error_format(error, error_size, "cannot create a libnftables context");
    int result = 0;
    if (nft_ctx_buffer_output(context) != 0 || nft_ctx_buffer_error(context) != 0) {
        result = error_format(error, error_size, "cannot buffer libnftables messages");
        goto done;
    }
    if (nft_run_cmd_from_buffer(context, script) != 0) {
        const char *message = nft_ctx_get_error_buffer(context);
        /* The first line names the problem; the rest repeats the script with a marker. */
        size_t length = message != NULL ? strcspn(message, "\n") : 0;
        result =
            error_format(error, error_size, "nftables refused the transaction: %.*s",
                         (int)(length > 400 ? 400 : length), length > 0 ? message : "(no message)");
    }
done:
    nft_ctx_free(context);
    return result;
}

int egress_netns_identity(const egress_applier_t *applier, const char *netns, dev_t *device,
                          ino_t *inode) {
    struct stat status;
    int handle = egress_apply_open(applier, netns, &status);
    if (handle < 0)
        return -1;
    close(handle);
    *device = status.st_dev;
    *inode = status.st_ino;
    return 0;
}

int egress_netns_socket(const egress_applier_t *applier, const char *netns, int domain, int type,
                        dev_t *device, ino_t *inode) {
    struct stat status;
    int handle = egress_apply_open(applier, netns, &status);
    if (handle < 0)
        return -1;
    if (setns(handle, CLONE_NEWNET) != 0) {
        int saved = errno;
        close(handle);
        errno = saved;
        return -1;
    }
    int made = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int saved = errno;
    egress_apply_go_home(applier);
    close(handle);
    if (made >= 0) {
        if (device != NULL)
            *device = status.st_dev;
        if (inode != NULL)
            *inode = status.st_ino;
    }
    errno = saved;
    return made;
}

egress_apply_result_t egress_apply_policy(egress_applier_t *applier, const char *netns,
                                          const egress_policy_t *policy,
                                          const egress_intercept_ports_t *intercept,
                                          egress_applied_t *applied, double *milliseconds,
                                          char *error, size_t error_size) {
    double started = egress_apply_now_ms();
    egress_apply_result_t result = EGRESS_APPLY_FAILED;
    egress_text_t script;
    egress_text_init(&script);
    bool away = false;
    struct stat status;
    int handle = egress_apply_open(applier, netns, &status);
    if (handle < 0) {
        error_format(error, error_size, "network namespace \"%s\" (%s/%s): %s", netns,
                     applier->directory, netns, strerror(errno));
        goto done;
    }
    if (setns(handle, CLONE_NEWNET) != 0) {
        error_format(error, error_size, "cannot enter network namespace \"%s\": %s", netns,
                     strerror(errno));
        goto done;
    }
    away = true;

    egress_uplinks_t uplinks;
    uint32_t generation;
    if (egress_apply_read_uplinks(&uplinks, error, error_size) != 0 ||
        egress_apply_read_generation(&generation, error, error_size) != 0)
        goto done;
    if (egress_ruleset_compile(policy, &uplinks, intercept, &script) != 0) {
        error_format(error, error_size, "out of memory");
        goto done;
    }
    /* Same namespace, same script, and no commit there since ours: nothing to do. Any other
     * commit (someone flushed our table?) makes us apply again, which repairs it. */
    if (applied->active && applied->script != NULL && applied->device == status.st_dev &&
        applied->inode == status.st_ino && applied->generation == generation &&
        strcmp(applied->script, script.data) == 0) {
        result = EGRESS_APPLY_UNCHANGED;
        goto done;
    }
    if (egress_apply_run(script.data, error, error_size) != 0) {
        /* A table left by another version (other chains or set types) refuses the "add"s. It is
         * rebuilt in the same single transaction, so this stays atomic too. */
        egress_text_t rebuild;
        egress_text_init(&rebuild);
        egress_ruleset_remove(&rebuild);
        egress_text_append(&rebuild, script.data, script.length);
        char second[256];
        int rebuilt = rebuild.failed ? -1 : egress_apply_run(rebuild.data, second, sizeof(second));
        egress_text_free(&rebuild);
        if (rebuilt != 0)
            goto done;
        log_warn("network namespace \"%s\": replaced an incompatible %s table", netns,
                 EGRESS_RULESET_TABLE);
    }
    free(applied->script);
    applied->script = script.data; /* the text moves into *applied */
    egress_text_init(&script);
    /* Unknown (0) if unreadable: the next check then applies again, harmlessly. */
    if (egress_apply_read_generation(&applied->generation, NULL, 0) != 0)
        applied->generation = 0;
    applied->active = true;
    applied->device = status.st_dev;
    applied->inode = status.st_ino;
    result = EGRESS_APPLY_DONE;

done:
    if (away)
        egress_apply_go_home(applier);
    if (handle >= 0)
        close(handle);
    egress_text_free(&script);
    if (milliseconds != NULL)
        *milliseconds = egress_apply_now_ms() - started;
    return result;
}

int egress_apply_remove(egress_applier_t *applier, const char *netns, egress_applied_t *applied,
                        char *error, size_t error_size) {
    int result = -1;
    struct stat status;
    int handle = egress_apply_open(applier, netns, &status);
    bool elsewhere = handle >= 0 && applied->active &&
                     (applied->device != status.st_dev || applied->inode != status.st_ino);
    if ((handle < 0 && errno == ENOENT) || elsewhere) {
        /* The namespace went away with its rules; one by the same name since is someone else's,
         * and its table is not ours to remove. */
        if (handle >= 0)
            close(handle);
        egress_applied_clear(applied);
        return 0;
    }
    if (handle < 0)
        return error_format(error, error_size, "network namespace \"%s\" (%s/%s): %s", netns,
                            applier->directory, netns, strerror(errno));
    if (setns(handle, CLONE_NEWNET) != 0) {
        error_format(error, error_size, "cannot enter network namespace \"%s\": %s", netns,
                     strerror(errno));
        close(handle);
        return -1;
    }
    egress_text_t script;
    egress_text_init(&script);
    egress_ruleset_remove(&script);
    if (script.failed)
        error_format(error, error_size, "out of memory");
    else
        result = egress_apply_run(script.data, error, error_size);
    egress_text_free(&script);
    egress_apply_go_home(applier);
    close(handle);
    if (result == 0)
        egress_applied_clear(applied);
    return result;
}
