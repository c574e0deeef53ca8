/* A subscription to Redis keyspace notifications of watched keys and key prefixes. */
#include "util/keyspace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

/* "__keyspace@<db>__:" for database; returns its length. */
static int keyspace_head(char *head, size_t size, int database) {
    return snprintf(head, size, "__keyspace@%d__:", database);
}

char *keyspace_pattern(int database, const char *key, bool prefix) {
    char head[48];
    int head_length = keyspace_head(head, sizeof(head), database);
    size_t key_length = strlen(key);
    char *pattern = malloc((size_t)head_length + 2 * key_length + 2);
    if (pattern == NULL)
        return NULL;
    char *out = pattern;
    memcpy(out, head, (size_t)head_length);
    out += head_length;
    for (size_t i = 0; i < key_length; i++) {
        if (strchr("*?[]\\", key[i]) != NULL)
            *out++ = '\\';
        *out++ = key[i];
    }
    if (prefix)
        *out++ = '*';
    *out = '\0';
    return pattern;
}

/* "__keyspace@<db>__:<key>", a new string or NULL. */
static char *keyspace_channel_name(int database, const char *key, size_t *length) {
    char head[48];
    int head_length = keyspace_head(head, sizeof(head), database);
    size_t key_length = strlen(key);
    char *name = malloc((size_t)head_length + key_length + 1);
    if (name == NULL)
        return NULL;
    memcpy(name, head, (size_t)head_length);
    memcpy(name + head_length, key, key_length + 1);
    *length = (size_t)head_length + key_length;
    return name;
}

/* The first channel of the kind asked for (an exact key, or a prefix) that name falls under;
 * returns its index, or channel_count. */
static size_t keyspace_match(const keyspace_t *keyspace, const char *name, size_t length,
                             bool prefix) {
    for (size_t i = 0; i < keyspace->channel_count; i++) {
        const keyspace_channel_t *channel = &keyspace->channels[i];
        if (channel->prefix != prefix)
            continue;
        if (prefix ? length > channel->name_length : length == channel->name_length) {
            if (memcmp(name, channel->name, channel->name_length) == 0)
                return i;
        }
    }
    return keyspace->channel_count;
}

keyspace_reply_kind_t keyspace_classify(const keyspace_t *keyspace, const redisReply *reply,
                                        size_t *watch, const char **rest, size_t *rest_length) {
    /* "psubscribe", pattern, count; or "pmessage", pattern, channel, event. */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return KEYSPACE_REPLY_OTHER;
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "psubscribe") == 0)
        return KEYSPACE_REPLY_CONFIRMATION;
    if (strcmp(kind, "pmessage") != 0 || reply->elements < 4 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return KEYSPACE_REPLY_OTHER;
    const char *name = reply->element[2]->str;
    size_t length = (size_t)reply->element[2]->len;
    /* An exact key is the narrower watch: it wins over a prefix that covers it too. */
    size_t found = keyspace_match(keyspace, name, length, false);
    if (found == keyspace->channel_count)
        found = keyspace_match(keyspace, name, length, true);
    if (found == keyspace->channel_count)
        return KEYSPACE_REPLY_OTHER;
    size_t name_length = keyspace->channels[found].name_length;
    *watch = found;
    *rest = name + name_length;
    *rest_length = length - name_length;
    return KEYSPACE_REPLY_NOTIFICATION;
}

void keyspace_handle(keyspace_t *keyspace, const redisReply *reply) {
    size_t watch = 0;
    const char *rest = NULL;
    size_t rest_length = 0;
    switch (keyspace_classify(keyspace, reply, &watch, &rest, &rest_length)) {
    case KEYSPACE_REPLY_CONFIRMATION:
        if (++keyspace->confirmations == keyspace->channel_count)
            redis_link_ready(&keyspace->link);
        break;
    case KEYSPACE_REPLY_NOTIFICATION:
        keyspace->notify(keyspace, watch, rest, rest_length);
        break;
    case KEYSPACE_REPLY_OTHER:
        break;
    }
}

/* hiredis's callback for every reply of the subscription, NULL when it is lost. */
static void keyspace_message(redisAsyncContext *context, void *reply_pointer, void *privdata) {
    (void)privdata;
    redis_link_t *link = redis_link_of(context);
    if (link == NULL)
        return;
    if (reply_pointer == NULL) {
        redis_link_lost_context(context);
        return;
    }
    keyspace_handle(link->config.owner, reply_pointer);
}

/* The link's handshake: PSUBSCRIBE to every pattern; ready once Redis confirmed them all. */
static int keyspace_subscribe(redis_link_t *link) {
    keyspace_t *keyspace = link->config.owner;
    keyspace->confirmations = 0;
    return redisAsyncCommandArgv(link->context, keyspace_message, NULL,
                                 (int)keyspace->channel_count + 1, keyspace->command,
                                 keyspace->command_lengths) == REDIS_OK
               ? 0
               : -1;
}

static void keyspace_up(redis_link_t *link) {
    keyspace_t *keyspace = link->config.owner;
    if (keyspace->up != NULL)
        keyspace->up(keyspace);
}

static void keyspace_down(redis_link_t *link) {
    keyspace_t *keyspace = link->config.owner;
    keyspace->confirmations = 0;
    if (keyspace->down != NULL)
        keyspace->down(keyspace);
}

/* Builds the channel names, the patterns and the PSUBSCRIBE command; returns 0 or -1. */
static int keyspace_build(keyspace_t *keyspace, const keyspace_config_t *config) {
    size_t count = config->watch_count;
    keyspace->channels = calloc(count, sizeof(*keyspace->channels));
    keyspace->command = calloc(count + 1, sizeof(*keyspace->command));
    keyspace->command_lengths = calloc(count + 1, sizeof(*keyspace->command_lengths));
    if (keyspace->channels == NULL || keyspace->command == NULL ||
        keyspace->command_lengths == NULL)
        return -1;
    keyspace->channel_count = count;
    keyspace->command[0] = "PSUBSCRIBE";
    keyspace->command_lengths[0] = strlen("PSUBSCRIBE");
    for (size_t i = 0; i < count; i++) {
        const keyspace_watch_t *watch = &config->watches[i];
        keyspace_channel_t *channel = &keyspace->channels[i];
        channel->prefix = watch->prefix;
        channel->name =
            keyspace_channel_name(config->link.database, watch->key, &channel->name_length);
        channel->pattern = keyspace_pattern(config->link.database, watch->key, watch->prefix);
        if (channel->name == NULL || channel->pattern == NULL)
            return -1;
        keyspace->command[i + 1] = channel->pattern;
        keyspace->command_lengths[i + 1] = strlen(channel->pattern);
    }
    return 0;
}

int keyspace_init(keyspace_t *keyspace, struct event_base *base, const keyspace_config_t *config) {
    memset(keyspace, 0, sizeof(*keyspace));
    keyspace->notify = config->notify;
    keyspace->up = config->up;
    keyspace->down = config->down;
    keyspace->owner = config->owner;
    if (keyspace_build(keyspace, config) != 0)
        return -1;
    redis_link_config_t link_config = config->link;
    link_config.handshake = keyspace_subscribe;
    link_config.up = keyspace_up;
    link_config.down = keyspace_down;
    link_config.owner = keyspace;
    return redis_link_init(&keyspace->link, base, &link_config);
}

void keyspace_start(keyspace_t *keyspace) { redis_link_start(&keyspace->link); }

void keyspace_close(keyspace_t *keyspace) {
    redis_link_close(&keyspace->link);
    if (keyspace->channels != NULL) {
        for (size_t i = 0; i < keyspace->channel_count; i++) {
            free(keyspace->channels[i].name);
            free(keyspace->channels[i].pattern);
        }
    }
    free(keyspace->channels);
    keyspace->channels = NULL;
    keyspace->channel_count = 0;
    free(keyspace->command);
    keyspace->command = NULL;
    free(keyspace->command_lengths);
    keyspace->command_lengths = NULL;
}

bool keyspace_ready(const keyspace_t *keyspace) { return keyspace->link.state == REDIS_LINK_READY; }
