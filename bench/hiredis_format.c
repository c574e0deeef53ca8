/* What formatting one activity command costs: hiredis's printf-like format against an argv whose
 * key and value are formatted first (what gateway/activity.c does since it measured this).
 *
 * Build and run (one core, as the proxy under test has in bench/run):
 *   gcc -O2 bench/hiredis_format.c -o /tmp/hf -lhiredis && taskset -c 0 /tmp/hf
 * Prints nanoseconds a command for each way, over a million HINCRBY sandbox:usage:<id> bytes_in
 * <n>. */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { COMMANDS = 1000000 };

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(void) {
    const char *id = "c01234";
    size_t id_length = strlen(id);
    double start = now_seconds();
    for (uint64_t i = 0; i < COMMANDS; i++) {
        char *command;
        if (redisFormatCommand(&command, "HINCRBY sandbox:usage:%b %s %" PRIu64, id, id_length,
                               "bytes_in", i) < 0)
            return 1;
        redisFreeCommand(command);
    }
    double formatted = now_seconds();
    for (uint64_t i = 0; i < COMMANDS; i++) {
        char key[80], value[24];
        int key_length = snprintf(key, sizeof(key), "sandbox:usage:%s", id);
        int value_length = snprintf(value, sizeof(value), "%" PRIu64, i);
        const char *argv[4] = {"HINCRBY", key, "bytes_in", value};
        size_t lengths[4] = {7, (size_t)key_length, 8, (size_t)value_length};
        char *command;
        if (redisFormatCommandArgv(&command, 4, argv, lengths) < 0)
            return 1;
        redisFreeCommand(command);
    }
    double by_argv = now_seconds();
    printf("printf-like format: %.0f ns a command\n", (formatted - start) / COMMANDS * 1e9);
    printf("argv:               %.0f ns a command\n", (by_argv - formatted) / COMMANDS * 1e9);
    return 0;
}
