/* Fuzz target: a Redis connection's replies read with values over a limit dropped unread
 * (util/redis_link.c's redis_link_skip_long_value on hiredis's reader), against hiredis reading
 * the same bytes whole. */
#include <hiredis/hiredis.h>
#include <inttypes.h>

#include "tests/fuzz/fuzz.h"
#include "util/redis_link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small, so that short inputs reach it. */
enum { FUZZ_VALUE_MAX = 16, FUZZ_CHUNKS = 64, FUZZ_REPLIES = 256 };

/* Collects the replies reader has whole; returns false once it reports a protocol error. */
static bool fuzz_collect(redisReader *reader, redisReply **replies, size_t *count) {
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(reader, &reply) != REDIS_OK)
            return false;
        if (reply == NULL)
            return true;
        if (*count < FUZZ_REPLIES)
            replies[(*count)++] = reply;
        else
            freeReplyObject(reply);
    }
}

/* What was read with skipping is what hiredis read whole, except that a string over the limit
 * may be an error element that starts with its length (one that came whole in a read is kept). */
static void fuzz_compare(const redisReply *whole, const redisReply *skipped) {
    if (whole->type == REDIS_REPLY_STRING && whole->len > FUZZ_VALUE_MAX &&
        skipped->type == REDIS_REPLY_ERROR) {
        FUZZ_CHECK(strtoull(skipped->str, NULL, 10) == (unsigned long long)whole->len);
        return;
    }
    FUZZ_CHECK(skipped->type == whole->type);
    switch (whole->type) {
    case REDIS_REPLY_ARRAY:
        FUZZ_CHECK(skipped->elements == whole->elements);
        for (size_t i = 0; i < whole->elements; i++)
            fuzz_compare(whole->element[i], skipped->element[i]);
        break;
    case REDIS_REPLY_INTEGER:
        FUZZ_CHECK(skipped->integer == whole->integer);
        break;
    case REDIS_REPLY_NIL:
        break;
    default:
        FUZZ_CHECK(skipped->len == whole->len && memcmp(skipped->str, whole->str, whole->len) == 0);
    }
}

/* True if data announces an array of 10,000 elements or more anywhere: hiredis 0.14 allocates
 * a huge array's element pointers up front (a server's memory bomb, not this target's subject). */
static bool fuzz_huge_array(const uint8_t *data, size_t size) {
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*')
            continue;
        size_t digits = 0;
        /* Reads split a length as they like. */
        for (size_t j = i + 1; j < size && digits < 5; j++) {
            if (data[j] >= '0' && data[j] <= '9')
                digits++;
            else if (data[j] != FUZZ_SEPARATOR)
                break;
        }
        if (digits >= 5)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_huge_array(data, size))
        return 0;
    /* The parts are what successive reads return. */
    const uint8_t *parts[FUZZ_CHUNKS];
    size_t lengths[FUZZ_CHUNKS];
    size_t count = fuzz_split(data, size, parts, lengths, FUZZ_CHUNKS);

    redisReader *whole = redisReaderCreate();
    redisReader *skipping = redisReaderCreate();
    FUZZ_CHECK(whole != NULL && skipping != NULL);
    redisReply *whole_replies[FUZZ_REPLIES];
    redisReply *skipped_replies[FUZZ_REPLIES];
    size_t whole_count = 0;
    size_t skipped_count = 0;
    bool whole_ok = true;
    bool skipping_ok = true;
    uint64_t unread = 0;
    for (size_t i = 0; i < count; i++) {
        if (lengths[i] == 0)
            continue;
        /* A reader that met a protocol error takes nothing more. */
        if (whole_ok) {
            FUZZ_CHECK(redisReaderFeed(whole, (const char *)parts[i], lengths[i]) == REDIS_OK);
            whole_ok = fuzz_collect(whole, whole_replies, &whole_count);
        }

        /* As redis_link_readable: the rest of a skipped value is dropped, and hiredis reads on
         * once none is left. */
        size_t dropped = unread < lengths[i] ? (size_t)unread : lengths[i];
        unread -= dropped;
        if (!skipping_ok || unread > 0)
            continue;
        if (dropped < lengths[i])
            FUZZ_CHECK(redisReaderFeed(skipping, (const char *)parts[i] + dropped,
                                       lengths[i] - dropped) == REDIS_OK);
        skipping_ok = fuzz_collect(skipping, skipped_replies, &skipped_count);
        if (skipping_ok) {
            FUZZ_CHECK(redis_link_skip_long_value(skipping, FUZZ_VALUE_MAX, &unread) == 0);
            /* Nothing of a skipped value stays held: only the error line in its place. */
            if (unread > 0)
                FUZZ_CHECK(skipping->len - skipping->pos < 64 &&
                           strstr(skipping->buf + skipping->pos, " bytes unread, over 16\r\n"));
        }
    }
    /* hiredis meets a protocol error in the same place either way, having skipped nothing it
     * would have parsed. */
    FUZZ_CHECK(whole_ok == skipping_ok);
    FUZZ_CHECK(whole_count == skipped_count);
    for (size_t i = 0; i < whole_count; i++) {
        fuzz_compare(whole_replies[i], skipped_replies[i]);
        freeReplyObject(whole_replies[i]);
        freeReplyObject(skipped_replies[i]);
    }
    redisReaderFree(whole);
    redisReaderFree(skipping);
    return 0;
}
