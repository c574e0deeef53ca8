/* The node agent: follows the node's sandboxes in Redis and keeps their egress rules in force. */
#include "egress/agent.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "egress/apply.h"
#include "egress/intercept.h"
#include "egress/policy.h"
#include "egress/record.h"
#include "util/clock.h"
#include "util/keyspace.h"
#include "util/log.h"
#include "util/redis_link.h"
#include "util/strmap.h"

enum {
    EGRESS_AGENT_CONNECT_TIMEOUT_MS = 1000,
    /* Replies awaited this long with none arriving: the server or the path to it hangs. */
    EGRESS_AGENT_REPLY_TIMEOUT_MS = 5000,
    /* A namespace that does not exist yet (the record came first) is tried again soon. */
    EGRESS_AGENT_RETRY_FIRST_MS = 100,
    EGRESS_AGENT_RETRY_MAX_MS = 1000,
    EGRESS_AGENT_ID_MAX = 255,
    /* Resync reads in flight at once: their replies arrive (and are applied) in a burst, and a
     * notified change waits behind that burst; this bounds it to a few milliseconds. */
    EGRESS_AGENT_RESYNC_WINDOW = 32,
};

/* What the subscription watches, in the order of its patterns. */
enum egress_agent_watch {
    EGRESS_AGENT_WATCH_RECORDS = 0, /* every key under redis_key_prefix */
    EGRESS_AGENT_WATCH_NODE_SET,    /* the node set */
    EGRESS_AGENT_WATCH_COUNT,
};

/* One sandbox of the node set: what its record asks for and what is in force. */
typedef struct egress_sandbox {
    strmap_entry_t *map_entry; /* key: the sandbox ID */
    bool member;               /* listed by the last read of the node set */
    bool fetching;             /* an HGETALL is in flight */
    bool refetch;              /* the record changed meanwhile: read it again */
    bool record_read;          /* wanted_* reflect a record (or its absence) */
    bool record_missing;       /* no record: no rules */
    bool pending;              /* enforcing failed; the retry timer tries again */
    bool queued;               /* waits in the agent's resync queue */
    struct egress_sandbox *queue_previous;
    struct egress_sandbox *queue_next;
    char *wanted_netns;     /* the namespace to filter, or NULL when never known */
    egress_policy_t wanted; /* deny-all when the record cannot be parsed */
    char *record_error;     /* why the record cannot be parsed, or NULL */
    char *applied_netns;    /* where our table is, or NULL */
    egress_applied_t applied;
    char *apply_error; /* the last failure to enforce, so a streak is logged once */
    egress_intercept_t *intercept; /* while its policy has domain entries */
    char *intercept_error;         /* the last failure to intercept, logged once */
} egress_sandbox_t;

/* A command in flight (SMEMBERS or HGETALL); a record's reply finds its sandbox by ID, so the
 * sandbox may leave in the meantime. */
typedef struct egress_request {
    bool full;         /* SMEMBERS: read every record after, not only new members' */
    bool resync;       /* HGETALL: counted in the resync window */
    size_t id_length;  /* HGETALL: the ID's length */
    char sandbox_id[]; /* the ID, NUL, then the record's key */
} egress_request_t;

struct egress_agent {
    struct event_base *base;
    const egress_config_t *config;
    char *node_key;          /* sandbox:node:<node_id> */
    redis_link_t commands;   /* SMEMBERS and HGETALL, after SELECT or PING */
    keyspace_t subscription; /* notifications of the records and the node set */
    struct event *resync_timer;
    struct event *retry_timer;
    struct event *watchdog_timer; /* armed while replies are awaited */
    uint64_t retry_backoff_ms;
    size_t outstanding; /* replies awaited on the commands connection */
    bool members_fetching;
    bool members_again;         /* the node set changed while it was being read */
    bool members_again_full;    /* and a full resync was asked for meanwhile */
    bool members_refused;       /* the last SMEMBERS failed: logged once per streak */
    bool notifications_checked; /* notify-keyspace-events was read once */
    size_t last_member_count;
    strmap_t sandboxes;
    egress_sandbox_t *queue_head; /* records a resync still has to read, oldest first */
    egress_sandbox_t *queue_tail;
    size_t resync_in_flight;
    egress_applier_t applier;
    egress_metrics_t metrics;
    egress_intercept_shared_t intercept; /* its resolver NULL when domains cannot be served */
    char intercept_unavailable[256];     /* why not */
};

static void egress_agent_fetch(egress_agent_t *agent, egress_sandbox_t *sandbox, bool resync);

/* Replaces *field with a copy of text (NULL clears it); returns false when memory ran out. */
static bool egress_agent_set_text(char **field, const char *text) {
    char *copy = NULL;
    if (text != NULL && (copy = strdup(text)) == NULL)
        return false;
    free(*field);
    *field = copy;
    return true;
}

static bool egress_agent_same_text(const char *left, const char *right) {
    if (left == NULL || right == NULL)
        return left == right;
    return strcmp(left, right) == 0;
}

/* A sandbox ID from the node set is used in keys and log lines: printable ASCII, no spaces. */
static bool egress_agent_id_valid(const char *id, size_t length) {
    if (length == 0 || length > EGRESS_AGENT_ID_MAX)
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

/* ---- enforcement ---- */

/* Removes our table from the namespace it is in; returns true when none is left there. */
static bool egress_agent_remove_rules(egress_agent_t *agent, egress_sandbox_t *sandbox,
                                      const char *why) {
    if (sandbox->applied_netns == NULL)
        return true;
    char error[512];
    if (egress_apply_remove(&agent->applier, sandbox->applied_netns, &sandbox->applied, error,
                            sizeof(error)) != 0) {
        log_error("sandbox %s: cannot remove its egress rules from namespace %s (%s): %s",
                  sandbox->map_entry->key, sandbox->applied_netns, why, error);
        return false;
    }
    log_info("sandbox %s: egress rules removed from namespace %s (%s)", sandbox->map_entry->key,
             sandbox->applied_netns, why);
    egress_intercept_free(sandbox->intercept);
    sandbox->intercept = NULL;
    free(sandbox->applied_netns);
    sandbox->applied_netns = NULL;
    return true;
}

static void egress_agent_schedule_retry(egress_agent_t *agent) {
    if (evtimer_pending(agent->retry_timer, NULL))
        return;
    clock_arm(agent->retry_timer, agent->retry_backoff_ms);
}

/* The interception a policy with domain entries needs, opened in its namespace when it is not
 * yet (or the namespace was made anew); NULL when the policy has none or they cannot be served,
 * which is logged once: the address rules then stand alone, and no name is let through. */
static const egress_intercept_ports_t *egress_agent_intercept(egress_agent_t *agent,
                                                              egress_sandbox_t *sandbox) {
    const char *id = sandbox->map_entry->key;
    if (sandbox->wanted.domains.count == 0)
        return NULL;
    char error[512];
    if (agent->intercept.resolver == NULL) {
        snprintf(error, sizeof(error), "%s", agent->intercept_unavailable);
        goto failed;
    }
    if (sandbox->intercept != NULL &&
        !egress_intercept_serves(sandbox->intercept, sandbox->wanted_netns)) {
        egress_intercept_free(sandbox->intercept);
        sandbox->intercept = NULL;
    }
    if (sandbox->intercept == NULL)
        sandbox->intercept = egress_intercept_new(&agent->intercept, id, sandbox->wanted_netns,
                                                  &sandbox->wanted, error, sizeof(error));
    if (sandbox->intercept == NULL)
        goto failed;
    egress_agent_set_text(&sandbox->intercept_error, NULL);
    return egress_intercept_ports(sandbox->intercept);

failed:
    if (!egress_agent_same_text(sandbox->intercept_error, error)) {
        log_error("sandbox %s: its %zu domain entries cannot be served (%s): only its address "
                  "rules apply",
                  id, sandbox->wanted.domains.count, error);
        egress_agent_set_text(&sandbox->intercept_error, error);
    }
    return NULL;
}

/* Makes the rules in force match what the record asks for; a failure is logged once per streak
 * and left to the retry timer. */
static void egress_agent_enforce(egress_agent_t *agent, egress_sandbox_t *sandbox) {
    const char *id = sandbox->map_entry->key;
    sandbox->pending = false;
    if (!sandbox->record_read)
        return;
    if (sandbox->record_missing) {
        if (!egress_agent_remove_rules(agent, sandbox, "its record was removed"))
            goto failed_quietly;
        return;
    }
    if (sandbox->wanted_netns == NULL)
        return; /* no namespace ever named: nothing can be filtered (logged with the record) */
    if (sandbox->applied_netns != NULL &&
        strcmp(sandbox->applied_netns, sandbox->wanted_netns) != 0 &&
        !egress_agent_remove_rules(agent, sandbox, "the record names another namespace"))
        goto failed_quietly;

    char error[512];
    double milliseconds = 0;
    const egress_intercept_ports_t *intercept = egress_agent_intercept(agent, sandbox);
    egress_apply_result_t result =
        egress_apply_policy(&agent->applier, sandbox->wanted_netns, &sandbox->wanted, intercept,
                            &sandbox->applied, &milliseconds, error, sizeof(error));
    if (result == EGRESS_APPLY_FAILED) {
        agent->metrics.apply_failures++;
        if (!egress_agent_same_text(sandbox->apply_error, error)) {
            log_error("sandbox %s: cannot apply its egress policy in namespace %s: %s; retrying",
                      id, sandbox->wanted_netns, error);
            egress_agent_set_text(&sandbox->apply_error, error);
        }
        goto failed_quietly;
    }
    if (intercept == NULL && sandbox->intercept != NULL) {
        /* The redirect is gone with that transaction: its listeners may go too. */
        egress_intercept_free(sandbox->intercept);
        sandbox->intercept = NULL;
    }
    if (sandbox->apply_error != NULL)
        log_info("sandbox %s: namespace %s now usable", id, sandbox->wanted_netns);
    egress_agent_set_text(&sandbox->apply_error, NULL);
    if (!egress_agent_same_text(sandbox->applied_netns, sandbox->wanted_netns) &&
        !egress_agent_set_text(&sandbox->applied_netns, sandbox->wanted_netns)) {
        log_error("sandbox %s: out of memory", id);
        goto failed_quietly;
    }
    if (result == EGRESS_APPLY_DONE) {
        agent->metrics.policies_applied++;
        log_info("sandbox %s: egress policy applied in namespace %s in %.1f ms "
                 "(internet access %s; %zu allowed, %zu denied ranges; %zu domain entries)",
                 id, sandbox->wanted_netns, milliseconds,
                 sandbox->wanted.internet_access ? "on" : "off",
                 egress_policy_allow_count(&sandbox->wanted),
                 egress_policy_deny_count(&sandbox->wanted), sandbox->wanted.domains.count);
    } else {
        log_debug("sandbox %s: egress policy in namespace %s unchanged (checked in %.1f ms)", id,
                  sandbox->wanted_netns, milliseconds);
    }
    return;

failed_quietly:
    sandbox->pending = true;
    egress_agent_schedule_retry(agent);
}

static void egress_agent_retry_visit(strmap_t *map, strmap_entry_t *entry, void *argument) {
    (void)map;
    egress_sandbox_t *sandbox = entry->value;
    if (sandbox->pending)
        egress_agent_enforce(argument, sandbox);
}

static void egress_agent_pending_visit(strmap_t *map, strmap_entry_t *entry, void *argument) {
    (void)map;
    if (((egress_sandbox_t *)entry->value)->pending)
        *(bool *)argument = true;
}

static void egress_agent_retry_timer(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_agent_t *agent = argument;
    strmap_foreach(&agent->sandboxes, egress_agent_retry_visit, agent);
    bool pending = false;
    strmap_foreach(&agent->sandboxes, egress_agent_pending_visit, &pending);
    if (!pending) {
        agent->retry_backoff_ms = EGRESS_AGENT_RETRY_FIRST_MS;
        return;
    }
    agent->retry_backoff_ms *= 2;
    if (agent->retry_backoff_ms > EGRESS_AGENT_RETRY_MAX_MS)
        agent->retry_backoff_ms = EGRESS_AGENT_RETRY_MAX_MS;
    clock_arm(agent->retry_timer, agent->retry_backoff_ms);
}

/* ---- the resync queue ---- */

static void egress_agent_dequeue(egress_agent_t *agent, egress_sandbox_t *sandbox) {
    if (!sandbox->queued)
        return;
    if (sandbox->queue_previous != NULL)
        sandbox->queue_previous->queue_next = sandbox->queue_next;
    else
        agent->queue_head = sandbox->queue_next;
    if (sandbox->queue_next != NULL)
        sandbox->queue_next->queue_previous = sandbox->queue_previous;
    else
        agent->queue_tail = sandbox->queue_previous;
    sandbox->queue_previous = NULL;
    sandbox->queue_next = NULL;
    sandbox->queued = false;
}

/* Sends queued resync reads while the window has room. */
static void egress_agent_pump(egress_agent_t *agent) {
    while (agent->queue_head != NULL && agent->resync_in_flight < EGRESS_AGENT_RESYNC_WINDOW &&
           agent->commands.state == REDIS_LINK_READY) {
        egress_sandbox_t *sandbox = agent->queue_head;
        egress_agent_dequeue(agent, sandbox);
        egress_agent_fetch(agent, sandbox, true);
    }
}

static void egress_agent_enqueue(egress_agent_t *agent, egress_sandbox_t *sandbox) {
    if (sandbox->queued)
        return;
    sandbox->queued = true;
    sandbox->queue_previous = agent->queue_tail;
    sandbox->queue_next = NULL;
    if (agent->queue_tail != NULL)
        agent->queue_tail->queue_next = sandbox;
    else
        agent->queue_head = sandbox;
    agent->queue_tail = sandbox;
}

/* ---- sandboxes ---- */

static void egress_agent_sandbox_free(egress_sandbox_t *sandbox) {
    egress_intercept_free(sandbox->intercept); /* before the policy it reads */
    free(sandbox->intercept_error);
    egress_policy_free(&sandbox->wanted);
    egress_applied_clear(&sandbox->applied);
    free(sandbox->wanted_netns);
    free(sandbox->record_error);
    free(sandbox->applied_netns);
    free(sandbox->apply_error);
    free(sandbox);
}

/* The sandbox of id, created when new; NULL when memory is exhausted. */
static egress_sandbox_t *egress_agent_sandbox_get(egress_agent_t *agent, const char *id,
                                                  size_t length, bool *created) {
    *created = false;
    strmap_entry_t *found = strmap_get(&agent->sandboxes, id, length);
    if (found != NULL)
        return found->value;
    egress_sandbox_t *sandbox = calloc(1, sizeof(*sandbox));
    if (sandbox == NULL)
        return NULL;
    egress_policy_init(&sandbox->wanted);
    sandbox->map_entry = strmap_put(&agent->sandboxes, id, length, sandbox);
    if (sandbox->map_entry == NULL) {
        free(sandbox);
        return NULL;
    }
    *created = true;
    return sandbox;
}

/* The sandbox left the node set: its rules go, then its state. */
static void egress_agent_sandbox_forget(egress_agent_t *agent, egress_sandbox_t *sandbox) {
    log_info("sandbox %s: left node %s", sandbox->map_entry->key, agent->config->node_id);
    egress_agent_remove_rules(agent, sandbox, "it left the node");
    egress_agent_dequeue(agent, sandbox);
    strmap_remove(&agent->sandboxes, sandbox->map_entry);
    egress_agent_sandbox_free(sandbox);
}

static void egress_agent_unmark_visit(strmap_t *map, strmap_entry_t *entry, void *argument) {
    (void)map;
    (void)argument;
    ((egress_sandbox_t *)entry->value)->member = false;
}

static void egress_agent_sweep_visit(strmap_t *map, strmap_entry_t *entry, void *argument) {
    (void)map;
    egress_sandbox_t *sandbox = entry->value;
    if (!sandbox->member)
        egress_agent_sandbox_forget(argument, sandbox);
}

static void egress_agent_enqueue_visit(strmap_t *map, strmap_entry_t *entry, void *argument) {
    (void)map;
    egress_agent_enqueue(argument, entry->value);
}

static void egress_agent_reset_visit(strmap_t *map, strmap_entry_t *entry, void *argument) {
    (void)map;
    egress_sandbox_t *sandbox = entry->value;
    sandbox->fetching = false;
    sandbox->refetch = false;
    egress_agent_dequeue(argument, sandbox);
}

/* ---- records ---- */

/* The record (or its absence, or a refusal) of sandbox arrived. */
static void egress_agent_read_record(egress_agent_t *agent, egress_sandbox_t *sandbox,
                                     const redisReply *reply) {
    const char *id = sandbox->map_entry->key;
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "WRONGTYPE", 9) != 0) {
        /* Loading, out of memory...: the rules in force stay until a read succeeds. */
        log_warn("sandbox %s: redis refused HGETALL %s%s: %s", id, agent->config->redis_key_prefix,
                 id, reply->str);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 0) {
        if (!sandbox->record_missing)
            log_info("sandbox %s: no record %s%s", id, agent->config->redis_key_prefix, id);
        sandbox->record_read = true;
        sandbox->record_missing = true;
        egress_agent_set_text(&sandbox->record_error, NULL);
        egress_policy_free(&sandbox->wanted);
        egress_agent_enforce(agent, sandbox);
        return;
    }

    egress_field_t netns;
    egress_policy_t parsed;
    egress_policy_init(&parsed);
    char error[512] = "";
    int result = egress_record_read(reply, &netns, &parsed, error, sizeof(error));
    /* A bad namespace keeps the one known before, so deny-all lands where the sandbox runs. */
    if (netns.value != NULL && !egress_agent_same_text(sandbox->wanted_netns, netns.value) &&
        !egress_agent_set_text(&sandbox->wanted_netns, netns.value)) {
        log_error("sandbox %s: out of memory", id);
        egress_policy_free(&parsed);
        return;
    }
    if (result == 0) {
        egress_policy_free(&sandbox->wanted);
        sandbox->wanted = parsed;
        if (sandbox->record_error != NULL)
            log_info("sandbox %s: record %s%s is valid again", id, agent->config->redis_key_prefix,
                     id);
        egress_agent_set_text(&sandbox->record_error, NULL);
    } else {
        egress_policy_free(&parsed);
        /* Fail closed: a policy we cannot read might have been a strict one. */
        if (egress_policy_deny_all(&sandbox->wanted) != 0) {
            log_error("sandbox %s: out of memory", id);
            return;
        }
        if (!egress_agent_same_text(sandbox->record_error, error)) {
            log_error("sandbox %s: record %s%s cannot be parsed: %s; denying all egress%s until "
                      "it is fixed",
                      id, agent->config->redis_key_prefix, id, error,
                      sandbox->wanted_netns == NULL ? " (no namespace known yet: nothing to "
                                                      "filter)"
                                                    : "");
            egress_agent_set_text(&sandbox->record_error, error);
        }
    }
    sandbox->record_read = true;
    sandbox->record_missing = false;
    egress_agent_enforce(agent, sandbox);
}

/* ---- commands ---- */

/* A reply arrived on the commands connection: it is alive. */
static void egress_agent_replied(egress_agent_t *agent) {
    if (agent->outstanding > 0)
        agent->outstanding--;
    if (agent->outstanding > 0)
        clock_arm(agent->watchdog_timer, EGRESS_AGENT_REPLY_TIMEOUT_MS);
    else
        evtimer_del(agent->watchdog_timer);
}

static void egress_agent_watchdog(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_agent_t *agent = argument;
    if (agent->commands.state == REDIS_LINK_READY && agent->outstanding > 0)
        redis_link_drop(&agent->commands, "no reply within 5 s");
}

/* Sends a command whose reply goes to callback with request (freed by the callback); returns
 * false (request freed) when it cannot be sent. */
static bool egress_agent_send(egress_agent_t *agent, redisCallbackFn *callback,
                              egress_request_t *request, int argc, const char **argv,
                              const size_t *lengths) {
    if (agent->commands.state != REDIS_LINK_READY ||
        redisAsyncCommandArgv(agent->commands.context, callback, request, argc, argv, lengths) !=
            REDIS_OK) {
        free(request);
        return false;
    }
    if (agent->outstanding++ == 0)
        clock_arm(agent->watchdog_timer, EGRESS_AGENT_REPLY_TIMEOUT_MS);
    return true;
}

static void egress_agent_record_reply(redisAsyncContext *context, void *reply_pointer,
                                      void *privdata) {
    egress_request_t *request = privdata;
    redisReply *reply = reply_pointer;
    redis_link_t *link = redis_link_of(context);
    /* NULL: the connection is gone; its loss already reset every fetch. */
    if (reply == NULL || link == NULL) {
        free(request);
        return;
    }
    egress_agent_t *agent = link->config.owner;
    egress_agent_replied(agent);
    if (request->resync)
        agent->resync_in_flight--;
    strmap_entry_t *found = strmap_get(&agent->sandboxes, request->sandbox_id, request->id_length);
    free(request);
    if (found != NULL) {
        egress_sandbox_t *sandbox = found->value;
        sandbox->fetching = false;
        egress_agent_read_record(agent, sandbox, reply);
        if (sandbox->refetch) {
            sandbox->refetch = false;
            egress_agent_fetch(agent, sandbox, false);
        }
    }
    egress_agent_pump(agent);
}

/* Reads the record of sandbox, or asks for another read when one is in flight; resync reads
 * count in the window. */
static void egress_agent_fetch(egress_agent_t *agent, egress_sandbox_t *sandbox, bool resync) {
    if (agent->commands.state != REDIS_LINK_READY)
        return; /* the full read on reconnect covers it */
    if (sandbox->fetching) {
        sandbox->refetch = true;
        return;
    }
    size_t prefix_length = strlen(agent->config->redis_key_prefix);
    size_t id_length = sandbox->map_entry->key_length;
    egress_request_t *request =
        malloc(sizeof(*request) + id_length + 1 + prefix_length + id_length + 1);
    if (request == NULL) {
        log_error("sandbox %s: out of memory", sandbox->map_entry->key);
        return;
    }
    request->full = false;
    request->resync = resync;
    request->id_length = id_length;
    memcpy(request->sandbox_id, sandbox->map_entry->key, id_length + 1);
    char *key = request->sandbox_id + id_length + 1;
    memcpy(key, agent->config->redis_key_prefix, prefix_length);
    memcpy(key + prefix_length, sandbox->map_entry->key, id_length + 1);
    const char *argv[] = {"HGETALL", key};
    size_t lengths[] = {7, prefix_length + id_length};
    if (egress_agent_send(agent, egress_agent_record_reply, request, 2, argv, lengths)) {
        sandbox->fetching = true;
        if (resync)
            agent->resync_in_flight++;
    }
}

static void egress_agent_sync(egress_agent_t *agent, bool full);

static void egress_agent_members_reply(redisAsyncContext *context, void *reply_pointer,
                                       void *privdata) {
    egress_request_t *request = privdata;
    redisReply *reply = reply_pointer;
    redis_link_t *link = redis_link_of(context);
    bool full = request->full;
    free(request);
    if (reply == NULL || link == NULL)
        return;
    egress_agent_t *agent = link->config.owner;
    egress_agent_replied(agent);
    agent->members_fetching = false;

    if (reply->type != REDIS_REPLY_ARRAY) {
        /* The rules in force stay: a refused read says nothing about who left. */
        if (!agent->members_refused)
            log_warn("node %s: redis refused SMEMBERS %s: %s", agent->config->node_id,
                     agent->node_key,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply type");
        agent->members_refused = true;
    } else {
        agent->members_refused = false;
        strmap_foreach(&agent->sandboxes, egress_agent_unmark_visit, NULL);
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *member = reply->element[i];
            if (member->type != REDIS_REPLY_STRING)
                continue;
            if (!egress_agent_id_valid(member->str, (size_t)member->len)) {
                log_error("node %s: member of %s is not a sandbox ID (1 to %d printable bytes, no "
                          "spaces); ignored",
                          agent->config->node_id, agent->node_key, EGRESS_AGENT_ID_MAX);
                continue;
            }
            bool created;
            egress_sandbox_t *sandbox =
                egress_agent_sandbox_get(agent, member->str, (size_t)member->len, &created);
            if (sandbox == NULL) {
                log_error("node %s: out of memory", agent->config->node_id);
                continue;
            }
            sandbox->member = true;
            if (created) {
                log_info("sandbox %s: on node %s", sandbox->map_entry->key, agent->config->node_id);
                if (!full) /* else read below with every other record */
                    egress_agent_fetch(agent, sandbox, false);
            }
        }
        strmap_foreach(&agent->sandboxes, egress_agent_sweep_visit, agent);
        if (full) {
            strmap_foreach(&agent->sandboxes, egress_agent_enqueue_visit, agent);
            egress_agent_pump(agent);
        }
        if (agent->sandboxes.count != agent->last_member_count)
            log_debug("node %s: %zu sandboxes", agent->config->node_id, agent->sandboxes.count);
        agent->last_member_count = agent->sandboxes.count;
        agent->metrics.sandboxes = agent->sandboxes.count;
    }
    if (agent->members_again) {
        bool again_full = agent->members_again_full;
        agent->members_again = false;
        agent->members_again_full = false;
        egress_agent_sync(agent, again_full);
    }
}

/* Reads the node set; full also reads every member's record (resync), else only new members'. */
static void egress_agent_sync(egress_agent_t *agent, bool full) {
    if (agent->commands.state != REDIS_LINK_READY)
        return;
    if (agent->members_fetching) {
        agent->members_again = true;
        agent->members_again_full |= full;
        return;
    }
    egress_request_t *request = calloc(1, sizeof(*request));
    if (request == NULL) {
        log_error("node %s: out of memory", agent->config->node_id);
        return;
    }
    request->full = full;
    const char *argv[] = {"SMEMBERS", agent->node_key};
    size_t lengths[] = {8, strlen(agent->node_key)};
    if (egress_agent_send(agent, egress_agent_members_reply, request, 2, argv, lengths))
        agent->members_fetching = true;
}

void egress_agent_resync(egress_agent_t *agent) { egress_agent_sync(agent, true); }

const egress_metrics_t *egress_agent_metrics(const egress_agent_t *agent) {
    return &agent->metrics;
}

static void egress_agent_resync_timer(evutil_socket_t fd, short events, void *argument) {
    (void)fd;
    (void)events;
    egress_agent_t *agent = argument;
    log_debug("node %s: periodic resync", agent->config->node_id);
    egress_agent_sync(agent, true);
}

/* ---- keyspace notifications ---- */

/* The node set or a record changed. */
static void egress_agent_notified(keyspace_t *subscription, size_t watch, const char *id,
                                  size_t id_length) {
    egress_agent_t *agent = subscription->owner;
    if (watch == EGRESS_AGENT_WATCH_NODE_SET) {
        egress_agent_sync(agent, false);
        return;
    }
    strmap_entry_t *found = strmap_get(&agent->sandboxes, id, id_length);
    /* Records of other nodes' sandboxes are none of our business. */
    if (found != NULL)
        egress_agent_fetch(agent, found->value, false);
}

/* ---- connections ---- */

/* The commands connection failed: replies in flight are lost with it, and the full read on
 * reconnect redoes them. */
static void egress_agent_commands_down(redis_link_t *link) {
    egress_agent_t *agent = link->config.owner;
    agent->outstanding = 0;
    evtimer_del(agent->watchdog_timer);
    agent->members_fetching = false;
    agent->members_again = false;
    agent->members_again_full = false;
    agent->resync_in_flight = 0;
    strmap_foreach(&agent->sandboxes, egress_agent_reset_visit, agent);
}

/* The reply to CONFIG GET notify-keyspace-events: without K and the h, g and s classes (or A), a
 * change waits for the resync; say so once rather than let 100 ms silently become 10 s. */
static void egress_agent_notifications_reply(redisAsyncContext *context, void *reply_pointer,
                                             void *privdata) {
    free(privdata);
    redis_link_t *link = redis_link_of(context);
    redisReply *reply = reply_pointer;
    if (reply == NULL || link == NULL)
        return;
    egress_agent_t *agent = link->config.owner;
    egress_agent_replied(agent);
    /* Managed servers often refuse CONFIG: nothing can be told then. */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *flags = reply->element[1]->str;
    bool all = strchr(flags, 'A') != NULL;
    bool keyspace = strchr(flags, 'K') != NULL;
    const char *missing[3];
    size_t missing_count = 0;
    if (!all && strchr(flags, 'h') == NULL)
        missing[missing_count++] = "h (records)";
    if (!all && strchr(flags, 'g') == NULL)
        missing[missing_count++] = "g (deleted keys)";
    if (!all && strchr(flags, 's') == NULL)
        missing[missing_count++] = "s (the node set)";
    if (keyspace && missing_count == 0)
        return;
    char detail[160] = "";
    if (!keyspace)
        snprintf(detail, sizeof(detail), "no K (keyspace events)");
    for (size_t i = 0; i < missing_count; i++) {
        size_t used = strlen(detail);
        snprintf(detail + used, sizeof(detail) - used, "%s%s", used > 0 ? ", " : "", missing[i]);
    }
    log_warn("redis %s: notify-keyspace-events \"%s\" lacks %s: such changes are seen within "
             "policy_resync_interval, not 100 ms (set it to Kghs or wider)",
             agent->commands.address, flags, detail);
}

static void egress_agent_check_notifications(egress_agent_t *agent) {
    if (agent->notifications_checked)
        return;
    agent->notifications_checked = true;
    egress_request_t *request = calloc(1, sizeof(*request));
    if (request == NULL)
        return;
    const char *argv[] = {"CONFIG", "GET", "notify-keyspace-events"};
    size_t lengths[] = {6, 3, strlen("notify-keyspace-events")};
    egress_agent_send(agent, egress_agent_notifications_reply, request, 3, argv, lengths);
}

static void egress_agent_commands_up(redis_link_t *link) {
    egress_agent_t *agent = link->config.owner;
    egress_agent_check_notifications(agent);
    /* Changes made while we were away were not notified. */
    egress_agent_sync(agent, true);
}

static void egress_agent_subscription_up(keyspace_t *subscription) {
    /* Changes made before the subscription was confirmed were not notified. */
    egress_agent_sync(subscription->owner, true);
}

/* ---- life cycle ---- */

egress_agent_t *egress_agent_new(struct event_base *base, const egress_config_t *config,
                                 char *error, size_t error_size) {
    egress_agent_t *agent = calloc(1, sizeof(*agent));
    if (agent == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    agent->base = base;
    agent->config = config;
    agent->applier.home = -1;
    agent->retry_backoff_ms = EGRESS_AGENT_RETRY_FIRST_MS;
    if (egress_applier_init(&agent->applier, NULL, error, error_size) != 0)
        goto fail;
    agent->intercept.base = base;
    agent->intercept.applier = &agent->applier;
    agent->intercept.metrics = &agent->metrics;
    /* Domain entries need both; without them the agent still enforces every address rule. */
    if (egress_intercept_find_cgroup(&agent->intercept, agent->intercept_unavailable,
                                     sizeof(agent->intercept_unavailable)) == 0)
        agent->intercept.resolver =
            egress_resolver_new(base, config->dns_server, &agent->metrics,
                                agent->intercept_unavailable, sizeof(agent->intercept_unavailable));
    if (agent->intercept.resolver == NULL)
        log_warn("domain entries of allow_out are unavailable on this node: %s",
                 agent->intercept_unavailable);
    else
        log_info("domain entries: the agent's own sockets are those of cgroup \"%s\" (level %u)",
                 agent->intercept.cgroup, agent->intercept.cgroup_level);

    if (asprintf(&agent->node_key, "%s%s", EGRESS_CONFIG_NODE_SET_PREFIX, config->node_id) < 0) {
        agent->node_key = NULL; /* undefined after a failure */
        goto out_of_memory;
    }
    if (strmap_init(&agent->sandboxes) != 0)
        goto out_of_memory;
    agent->resync_timer = event_new(base, -1, EV_PERSIST, egress_agent_resync_timer, agent);
    agent->retry_timer = evtimer_new(base, egress_agent_retry_timer, agent);
    agent->watchdog_timer = evtimer_new(base, egress_agent_watchdog, agent);
    if (agent->resync_timer == NULL || agent->retry_timer == NULL || agent->watchdog_timer == NULL)
        goto out_of_memory;
    redis_link_config_t link_config = {
        .host = config->redis.host,
        .port = config->redis.port,
        .unix_path = config->redis.unix_path,
        .database = config->redis.database,
        .connect_timeout_ms = EGRESS_AGENT_CONNECT_TIMEOUT_MS,
        .log_prefix = "",
        .purpose = "reads",
        .outage_effect = "the rules in force stay",
        .up = egress_agent_commands_up,
        .down = egress_agent_commands_down,
        .owner = agent,
    };
    if (redis_link_init(&agent->commands, base, &link_config) != 0)
        goto out_of_memory;
    keyspace_watch_t watches[EGRESS_AGENT_WATCH_COUNT] = {
        [EGRESS_AGENT_WATCH_RECORDS] = {.key = config->redis_key_prefix, .prefix = true},
        [EGRESS_AGENT_WATCH_NODE_SET] = {.key = agent->node_key, .prefix = false},
    };
    keyspace_config_t subscription_config = {
        .link = link_config,
        .watches = watches,
        .watch_count = EGRESS_AGENT_WATCH_COUNT,
        .notify = egress_agent_notified,
        .up = egress_agent_subscription_up,
        .owner = agent,
    };
    subscription_config.link.purpose = "keyspace notifications";
    if (keyspace_init(&agent->subscription, base, &subscription_config) != 0)
        goto out_of_memory;

    clock_arm(agent->resync_timer, config->resync_interval_ms);
    redis_link_start(&agent->commands);
    keyspace_start(&agent->subscription);
    return agent;

out_of_memory:
    snprintf(error, error_size, "out of memory");
fail:
    egress_agent_free(agent);
    return NULL;
}

static void egress_agent_free_visit(strmap_t *map, strmap_entry_t *entry, void *argument) {
    (void)argument;
    egress_sandbox_t *sandbox = entry->value;
    strmap_remove(map, entry);
    egress_agent_sandbox_free(sandbox);
}

void egress_agent_free(egress_agent_t *agent) {
    if (agent == NULL)
        return;
    redis_link_close(&agent->commands);
    keyspace_close(&agent->subscription);
    if (agent->resync_timer != NULL)
        event_free(agent->resync_timer);
    if (agent->retry_timer != NULL)
        event_free(agent->retry_timer);
    if (agent->watchdog_timer != NULL)
        event_free(agent->watchdog_timer);
    if (agent->sandboxes.buckets != NULL)
        strmap_foreach(&agent->sandboxes, egress_agent_free_visit, NULL);
    strmap_free(&agent->sandboxes);
    egress_resolver_free(agent->intercept.resolver);
    free(agent->node_key);
    egress_applier_free(&agent->applier);
    free(agent);
}
