/*
 * prefetch.h - software prefetch of a span of weight bytes for the CPU kernels.
 *
 * An asm statement rather than _mm_prefetch: in a loop over a runtime span GCC 12 at -O2
 * emits no prefetch at all for the intrinsic (its IPA pure-const pass marks the inline
 * wrapper "looping const" and the calls become dead code), which left the multi-token
 * k-quant tiles without any. Prefetching an address outside any mapping does not fault.
 */
#ifndef RL_BACKEND_CPU_PREFETCH_H
#define RL_BACKEND_CPU_PREFETCH_H

#include <stddef.h>

/* Every 64-byte line of [p, p + span) towards L1 (prefetcht0). */
static inline void rl__prefetch_lines(const void *p, size_t span) {
    const char *c = (const char *)p;
    for (size_t o = 0; o < span; o += 64) __asm__ volatile("prefetcht0 %0" : : "m"(c[o]));
}

#endif
