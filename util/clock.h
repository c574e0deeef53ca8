/* Monotonic time for deadlines and durations (wall-clock steps never move them). */
#ifndef SGW_UTIL_CLOCK_H
#define SGW_UTIL_CLOCK_H

#include <event2/event.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* Milliseconds, from the coarse clock: a few ms of resolution, and no system
 * call cost; good for deadlines, checked on every state change. */
static inline uint64_t clock_coarse_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* Milliseconds, exact. */
static inline uint64_t clock_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* Microseconds, exact: request durations. */
static inline uint64_t clock_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000;
}

/* A libevent timeout of milliseconds. */
static inline struct timeval clock_timeval(uint64_t milliseconds) {
    return (struct timeval){.tv_sec = (time_t)(milliseconds / 1000),
                            .tv_usec = (suseconds_t)(milliseconds % 1000) * 1000};
}

/* Arms a libevent timer to fire milliseconds from now (again, if it was pending). */
static inline void clock_arm(struct event *timer, uint64_t milliseconds) {
    struct timeval delay = clock_timeval(milliseconds);
    evtimer_add(timer, &delay);
}

#endif
