/* misc.c - messages, time, environment, half-precision tables. */
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void rl__vfmt(char *buf, size_t size, const char *fmt, va_list ap) {
    if (!buf || size == 0) return;
    vsnprintf(buf, size, fmt, ap);
}

void rl__fmt(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(buf, size, fmt, ap);
    va_end(ap);
}

double rl__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *rl__getenv(const char *name) {
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

/* IEEE 754 binary16 -> binary32, exact for every input including subnormals. */
float rl__fp16_to_fp32_slow(rl_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) { /* inf, or NaN made quiet as F16C's vcvtph2ps does */
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalize */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    return rl__bits_f32(bits);
}

/* binary32 -> binary16, round to nearest even, overflow to inf, NaN kept quiet. */
rl_fp16 rl__fp32_to_fp16(float f) {
    uint32_t x = rl__f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (rl_fp16)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x47800000u) { /* >= 65536 before rounding: check rounding carefully */
        if (ax == 0x7f800000u) return (rl_fp16)(sign | 0x7c00u);
    }
    if (ax < 0x38800000u) { /* result subnormal or zero */
        if (ax < 0x33000000u) return (rl_fp16)sign; /* < 2^-25 rounds to 0 */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (rl_fp16)(sign | r);
    }
    uint32_t r = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    if (r >= 0x7c00u) r = 0x7c00u;
    return (rl_fp16)(sign | r);
}

float rl__fp16_table[65536];
static pthread_once_t g_tables_once = PTHREAD_ONCE_INIT;

static void init_tables_once(void) {
    for (uint32_t i = 0; i < 65536; i++) rl__fp16_table[i] = rl__fp16_to_fp32_slow((rl_fp16)i);
}

void rl__init_tables(void) { pthread_once(&g_tables_once, init_tables_once); }

/* The tables are small and needed by nearly every path; fill them at load time so
 * that no caller can forget. */
__attribute__((constructor)) static void rl__init_tables_ctor(void) { rl__init_tables(); }
