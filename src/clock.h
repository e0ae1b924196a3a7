/* clock.h - the two clocks outside the Raft core reads: monotonic time for
 * timers (suspends of the machine included), wall-clock time for the
 * deadlines stamped into commands. */
#ifndef RAFTKV_CLOCK_H
#define RAFTKV_CLOCK_H

#include <stdint.h>

uint64_t clock_monotonic_ms(void);
uint64_t clock_wall_ms(void);

#endif
