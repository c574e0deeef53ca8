/* What several unit tests share: a free loopback port, hiredis replies built by hand, the clock. */
#ifndef SGW_TESTS_UNIT_SUPPORT_H
#define SGW_TESTS_UNIT_SUPPORT_H

/* cmocka.h, and what it needs, comes first in every test file. */
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/clock.h"

/* A TCP port of 127.0.0.1 that nothing listened on a moment ago. */
static inline int test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    socklen_t length = sizeof(address);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    close(fd);
    return ntohs(address.sin_port);
}

enum { TEST_REPLY_ELEMENTS_MAX = 12 };

/* An array reply built by hand, as hiredis hands one to a callback. */
typedef struct test_reply {
    redisReply array;
    redisReply items[TEST_REPLY_ELEMENTS_MAX];
    redisReply *pointers[TEST_REPLY_ELEMENTS_MAX];
} test_reply_t;

/* Fills reply with an array of count strings (NULL: the integer 1); returns it. */
static inline const redisReply *test_reply_array(test_reply_t *reply, size_t count,
                                                 const char *const *texts) {
    assert_true(count <= TEST_REPLY_ELEMENTS_MAX);
    memset(reply, 0, sizeof(*reply));
    reply->array.type = REDIS_REPLY_ARRAY;
    reply->array.elements = count;
    reply->array.element = reply->pointers;
    for (size_t i = 0; i < count; i++) {
        reply->pointers[i] = &reply->items[i];
        if (texts[i] == NULL) {
            reply->items[i].type = REDIS_REPLY_INTEGER;
            reply->items[i].integer = 1;
            continue;
        }
        reply->items[i].type = REDIS_REPLY_STRING;
        reply->items[i].str = (char *)texts[i];
        reply->items[i].len = strlen(texts[i]);
    }
    return &reply->array;
}

#endif
