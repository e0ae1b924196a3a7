/* fuzz_rng.h - the smoke drivers' random numbers: xorshift64 from a seed of
 * each driver's own, so that every run makes the same inputs.
 *
 * A driver defines FUZZ_RNG_SEED (non-zero) before including this file. */
#ifndef RAFTKV_FUZZ_RNG_H
#define RAFTKV_FUZZ_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifndef FUZZ_RNG_SEED
#error "define FUZZ_RNG_SEED before including fuzz_rng.h"
#endif

static uint64_t fuzz_rng = FUZZ_RNG_SEED;

static inline uint64_t next_random(void)
{
    fuzz_rng ^= fuzz_rng << 13;
    fuzz_rng ^= fuzz_rng >> 7;
    fuzz_rng ^= fuzz_rng << 17;
    return fuzz_rng;
}

/* 0 .. n - 1 (0 when n is 0). */
static inline size_t below(size_t n)
{
    return n == 0 ? 0 : (size_t)(next_random() % n);
}

#endif
