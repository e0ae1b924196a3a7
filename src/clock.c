/* clock.c - milliseconds from CLOCK_BOOTTIME (or CLOCK_MONOTONIC) and
 * CLOCK_REALTIME. */
#include <time.h>

#include "clock.h"

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* CLOCK_BOOTTIME goes on while the machine is suspended, CLOCK_MONOTONIC
 * does not: a node whose machine slept sees the time that passed as a stall
 * of its loop (the others may have elected a leader meanwhile), and a
 * leader holds no lease across it. */
uint64_t clock_monotonic_ms(void)
{
#ifdef CLOCK_BOOTTIME
    return clock_ms(CLOCK_BOOTTIME);
#else
    return clock_ms(CLOCK_MONOTONIC);
#endif
}

uint64_t clock_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}
