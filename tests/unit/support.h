/* What several unit tests share: a free loopback port, a redis-server of their own, hiredis
 * replies built by hand, the clock. */
#ifndef SGW_TESTS_UNIT_SUPPORT_H
#define SGW_TESTS_UNIT_SUPPORT_H

/* cmocka.h, and what it needs, comes first in every test file. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

#define TEST_REDIS_SERVER "/usr/bin/redis-server"

/* A connection to the redis-server on 127.0.0.1:port that answered PING, or NULL. */
static inline redisContext *test_redis_connect(int port) {
    struct timeval timeout = {.tv_sec = 0, .tv_usec = 200000};
    redisContext *context = redisConnectWithTimeout("127.0.0.1", port, timeout);
    if (context == NULL || context->err != 0) {
        if (context != NULL)
            redisFree(context);
        return NULL;
    }
    redisReply *reply = redisCommand(context, "PING");
    bool ok = reply != NULL && reply->type == REDIS_REPLY_STATUS;
    if (reply != NULL)
        freeReplyObject(reply);
    if (!ok) {
        redisFree(context);
        return NULL;
    }
    return context;
}

/* Starts redis-server on 127.0.0.1:port (keyspace notifications of hashes and
 * expiries, nothing saved, its files in directory, also on unix_socket unless
 * NULL) and returns its pid once it answers; *admin is the connection that
 * found it up. */
static inline pid_t test_redis_start(int port, const char *directory, const char *unix_socket,
                                     redisContext **admin) {
    char port_text[16];
    snprintf(port_text, sizeof(port_text), "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null_fd = open("/dev/null", O_WRONLY);
        if (null_fd >= 0) {
            dup2(null_fd, STDOUT_FILENO);
            dup2(null_fd, STDERR_FILENO);
        }
        if (chdir(directory) != 0)
            _exit(127);
        char *arguments[] = {"redis-server", "--port", port_text, "--bind", "127.0.0.1", "--save",
                             "", "--appendonly", "no", "--notify-keyspace-events", "Kgh",
                             "--daemonize", "no", "--dir", (char *)directory,
                             /* the rest only with a unix socket */
                             unix_socket != NULL ? "--unixsocket" : NULL, (char *)unix_socket,
                             "--unixsocketperm", "700", NULL};
        execv(TEST_REDIS_SERVER, arguments);
        _exit(127);
    }
    uint64_t deadline = clock_ms() + 5000;
    while ((*admin = test_redis_connect(port)) == NULL) {
        if (clock_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("redis-server did not start on port %d", port);
        }
        usleep(20000);
    }
    return pid;
}

/* Runs a command (hiredis's format) on context; a failure fails the test. */
static inline void test_redis_vcommand(redisContext *context, const char *format,
                                       va_list arguments) {
    assert_non_null(context);
    redisReply *reply = redisvCommand(context, format, arguments);
    assert_non_null(reply);
    if (reply->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", reply->str);
    freeReplyObject(reply);
}

static inline void test_redis_command(redisContext *context, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    test_redis_vcommand(context, format, arguments);
    va_end(arguments);
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
