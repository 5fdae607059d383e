/*
 * rng.h - the tests' random numbers: splitmix64 (Steele, Lea, Flood 2014) over a state
 * each test file seeds itself, so every file's sequence is fixed and independent of the
 * others'.
 */
#ifndef RL_TEST_RNG_H
#define RL_TEST_RNG_H

#include <stdint.h>

/* The next 64 random bits of *state. */
static inline uint64_t rl_test_rand64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A double in [0, 1) from the top 53 bits. */
static inline double rl_test_rand_unit(uint64_t *state) {
    return (double)(rl_test_rand64(state) >> 11) * 0x1.0p-53;
}

#endif
