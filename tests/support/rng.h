/*
 * rng.h - the tests' random numbers: splitmix64 (Steele, Lea, Flood 2014) over a state
 * each test file seeds itself, so every file's sequence is fixed and independent of the
 * others'.
 */
#ifndef RL_TEST_RNG_H
#define RL_TEST_RNG_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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

/* A standard normal float (Box-Muller over two draws). */
static inline float rl_test_gauss(uint64_t *state) {
    const float u1 = (float)rl_test_rand_unit(state) + 1e-12f, u2 = (float)rl_test_rand_unit(state);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* n floats (malloc'd; NULL when out of memory): uniform in [-1, 1) / standard normal. */
static inline float *rl_test_unif_vec(uint64_t *state, size_t n) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; x && i < n; i++) x[i] = 2.0f * (float)rl_test_rand_unit(state) - 1.0f;
    return x;
}
static inline float *rl_test_gauss_vec(uint64_t *state, size_t n) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; x && i < n; i++) x[i] = rl_test_gauss(state);
    return x;
}

#endif
