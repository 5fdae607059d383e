/*
 * iq_tables.h - format constants of the grid-based i-quants (data in iq_tables.c, taken from
 * ggml's ggml-common.h). A grid entry packs 8 (IQ1/IQ2) or 4 (IQ3) element values as bytes,
 * element 0 in the least significant byte; every grid is sorted and its values take few
 * levels, so that the rank of a byte among the levels (its "level index") recovers the
 * lattice point the quantizers search over.
 */
#ifndef RL_QUANT_IQ_TABLES_H
#define RL_QUANT_IQ_TABLES_H

#include <stdint.h>

#define RL_IQ1S_NGRID 2048
/* IQ1_S / IQ1_M add +-delta to each ternary value {-1, 0, 1} of a group of 8 */
#define RL_IQ1S_DELTA 0.125f
#define RL_IQ1M_DELTA 0.125f

extern const uint8_t rl__kmask_iq2xs[8];
extern const uint8_t rl__ksigns_iq2xs[128];
extern const uint64_t rl__iq2xxs_grid[256];
extern const uint64_t rl__iq2xs_grid[512];
extern const uint64_t rl__iq2s_grid[1024];
extern const uint32_t rl__iq3xxs_grid[256];
extern const uint32_t rl__iq3s_grid[512];
extern const uint64_t rl__iq1s_grid[RL_IQ1S_NGRID];

/* Byte e (0-based) of a grid entry. */
static inline uint8_t rl__grid_byte64(uint64_t g, int e) { return (uint8_t)(g >> (8 * e)); }
static inline uint8_t rl__grid_byte32(uint32_t g, int e) { return (uint8_t)(g >> (8 * e)); }

#endif /* RL_QUANT_IQ_TABLES_H */
