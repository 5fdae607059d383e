/*
 * quant_iq_quantize.c - quantizers of the grid-based i-quants IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S, IQ1_S and IQ1_M, following the algorithms of ggml's quantize_iq*
 * (ggml/src/ggml-quants.c of llama.cpp; the i-quants are Iwan Kawrakow's design), so
 * that the same input gives the same bytes.
 *
 * The formats restrict each group of 8 (IQ1/IQ2) or 4 (IQ3) magnitudes to the points of a
 * codebook (the "grid", iq_tables.c), a subset of the lattice of odd values 2l+1 with
 * l < 3 (IQ1/IQ2) or l < 8 (IQ3). Quantizing a sub-block means:
 *  1. importance weights w_i from the imatrix and the block's variance;
 *  2. fold signs out (IQ2_XXS/IQ2_XS/IQ3_XXS keep 7 sign bits per 8 values with even
 *     parity, so the cheapest value to flip absorbs an odd count);
 *  3. try a range of scales; for each, round every value to its lattice level and, where
 *     the group lands off the grid, take the best of its precomputed grid neighbours;
 *     keep the scale maximising (sum w x q)^2 / (sum w q^2), i.e. the least weighted error;
 *  4. re-project with the final scale, then code the sub-block scales against the
 *     super-block's fp16 scale.
 * IQ1_S/IQ1_M use ternary values with a +-1/8 shift: there the best split of the sorted
 * values into {-1, 0, 1} is found exhaustively before projecting onto the grid.
 *
 * Every float expression keeps ggml's operand order (this file is built with
 * -ffp-contract=off), which is what makes the output bytes identical.
 */
#include "iq_tables.h"
#include "quant.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <pthread.h>

/* Round to nearest, ties to even, for |f| < 2^22: adding 1.5 * 2^23 leaves the rounded
 * integer in the low mantissa bits. */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static inline void store_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void store_le32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> 8 * k);
}

/* ------------------------------------------------------------------------------------ */
/* Lattices: grid points as levels, a key -> grid index map, and neighbour lists.       */
/* ------------------------------------------------------------------------------------ */

/* A grid seen as points of the lattice {0..nlev-1}^dim. A point's key packs its levels,
 * `bits` bits each, coordinate 0 lowest. map[key] is the grid index of an on-grid point, or
 * -(1 + o) where nbr[o] is the count of its neighbours and nbr[o+1..] their grid indices:
 * every grid point at one of the `nwant` smallest squared distances, nearest first, ties by
 * grid index. Keys with a level >= nlev are never produced and stay unmapped. */
typedef struct iq_lattice {
    int dim, bits, nlev, ngrid, nwant;
    const uint64_t *grid64; /* the format's grid: dim == 8 */
    const uint32_t *grid32; /* dim == 4 */
    uint8_t *lev;           /* [ngrid][dim] */
    int32_t *map;           /* [1 << (dim * bits)] */
    uint16_t *nbr;          /* [nbr_cap] */
    size_t nbr_cap;
} iq_lattice;

#define MAP_UNUSED INT32_MIN

/* Storage is static (touched only when the type is first used): sizes are facts of the
 * grids, so no allocation can fail inside a quantizer. The capacities are the exact totals
 * (off-grid points + their neighbours), checked while building. */
#define LATTICE_STORAGE(name, dim_, bits_, ngrid_, cap_)                                   \
    static uint8_t name##_lev[(ngrid_) * (dim_)];                                          \
    static int32_t name##_map[1 << ((dim_) * (bits_))];                                    \
    static uint16_t name##_nbr[cap_];
LATTICE_STORAGE(l_iq2xxs, 8, 2, 256, 119462)
LATTICE_STORAGE(l_iq2xs, 8, 2, 512, 187770)
LATTICE_STORAGE(l_iq2s, 8, 2, 1024, 50253)
LATTICE_STORAGE(l_iq1s, 8, 2, RL_IQ1S_NGRID, 332234)
LATTICE_STORAGE(l_iq3xxs, 4, 3, 256, 22825)
LATTICE_STORAGE(l_iq3s, 4, 3, 512, 28317)
#undef LATTICE_STORAGE

#define LATTICE(name, dim_, bits_, nlev_, ngrid_, nwant_, g64, g32)                        \
    {dim_, bits_, nlev_, ngrid_, nwant_, g64, g32, name##_lev, name##_map, name##_nbr,      \
     RL_ARRAY_LEN(name##_nbr)}
static iq_lattice g_iq2xxs = LATTICE(l_iq2xxs, 8, 2, 3, 256, 2, rl__iq2xxs_grid, NULL);
static iq_lattice g_iq2xs = LATTICE(l_iq2xs, 8, 2, 3, 512, 2, rl__iq2xs_grid, NULL);
static iq_lattice g_iq2s = LATTICE(l_iq2s, 8, 2, 3, 1024, 1, rl__iq2s_grid, NULL);
static iq_lattice g_iq1s = LATTICE(l_iq1s, 8, 2, 3, RL_IQ1S_NGRID, 3, rl__iq1s_grid, NULL);
static iq_lattice g_iq3xxs = LATTICE(l_iq3xxs, 4, 3, 8, 256, 2, NULL, rl__iq3xxs_grid);
static iq_lattice g_iq3s = LATTICE(l_iq3s, 4, 3, 8, 512, 3, NULL, rl__iq3s_grid);
#undef LATTICE

static inline uint8_t grid_byte(const iq_lattice *lt, int j, int e) {
    return lt->grid64 ? rl__grid_byte64(lt->grid64[j], e) : rl__grid_byte32(lt->grid32[j], e);
}

/* Levels of every grid point: a byte's rank among the grid's distinct values (compared as
 * int8, so IQ1's -1 < 0 < 1). */
static void lattice_levels(iq_lattice *lt) {
    bool seen[256] = {false};
    for (int j = 0; j < lt->ngrid; j++)
        for (int e = 0; e < lt->dim; e++) seen[(uint8_t)(grid_byte(lt, j, e) + 128)] = true;
    uint8_t rank[256];
    int r = 0;
    for (int v = 0; v < 256; v++) rank[(uint8_t)(v - 128)] = (uint8_t)(seen[v] ? r++ : 0);
    assert(r == lt->nlev);
    for (int j = 0; j < lt->ngrid; j++)
        for (int e = 0; e < lt->dim; e++) lt->lev[j * lt->dim + e] = rank[grid_byte(lt, j, e)];
}

static void lattice_build(iq_lattice *lt) {
    lattice_levels(lt);
    const int nkeys = 1 << (lt->dim * lt->bits);
    const int mask = (1 << lt->bits) - 1;
    for (int key = 0; key < nkeys; key++) lt->map[key] = MAP_UNUSED;
    for (int j = 0; j < lt->ngrid; j++) {
        int key = 0;
        for (int e = 0; e < lt->dim; e++) key |= lt->lev[j * lt->dim + e] << (lt->bits * e);
        lt->map[key] = j;
    }
    int d2[RL_IQ1S_NGRID];
    size_t used = 0;
    for (int key = 0; key < nkeys; key++) {
        if (lt->map[key] != MAP_UNUSED) continue;
        int p[8];
        bool valid = true;
        for (int e = 0; e < lt->dim; e++) {
            p[e] = (key >> (lt->bits * e)) & mask;
            valid = valid && p[e] < lt->nlev;
        }
        if (!valid) continue;
        /* the nwant smallest distinct distances, ascending */
        int dist[4], nd = 0;
        for (int j = 0; j < lt->ngrid; j++) {
            int s = 0;
            for (int e = 0; e < lt->dim; e++) {
                int t = p[e] - lt->lev[j * lt->dim + e];
                s += t * t;
            }
            d2[j] = s;
            int pos = 0;
            while (pos < nd && dist[pos] < s) pos++;
            if (pos < nd && dist[pos] == s) continue;
            if (pos >= lt->nwant) continue;
            for (int m = RL_MIN(nd, lt->nwant - 1); m > pos; m--) dist[m] = dist[m - 1];
            dist[pos] = s;
            if (nd < lt->nwant) nd++;
        }
        const size_t start = used++;
        for (int m = 0; m < nd; m++)
            for (int j = 0; j < lt->ngrid; j++)
                if (d2[j] == dist[m]) {
                    assert(used < lt->nbr_cap);
                    lt->nbr[used++] = (uint16_t)j;
                }
        lt->nbr[start] = (uint16_t)(used - start - 1);
        lt->map[key] = -(int32_t)(start + 1);
    }
    assert(used == lt->nbr_cap);
}

#define LATTICE_ONCE(name)                                                                 \
    static pthread_once_t name##_once = PTHREAD_ONCE_INIT;                                 \
    static void name##_build(void) { lattice_build(&name); }                               \
    static const iq_lattice *name##_get(void) {                                            \
        pthread_once(&name##_once, name##_build);                                          \
        return &name;                                                                      \
    }
LATTICE_ONCE(g_iq2xxs)
LATTICE_ONCE(g_iq2xs)
LATTICE_ONCE(g_iq2s)
LATTICE_ONCE(g_iq1s)
LATTICE_ONCE(g_iq3xxs)
LATTICE_ONCE(g_iq3s)
#undef LATTICE_ONCE

static inline int lattice_key(const iq_lattice *lt, const int8_t *L) {
    int key = 0;
    for (int e = 0; e < lt->dim; e++) key |= L[e] << (lt->bits * e);
    return key;
}

static inline const uint16_t *lattice_neighbours(const iq_lattice *lt, int key) {
    assert(lt->map[key] < 0 && lt->map[key] != MAP_UNUSED);
    return lt->nbr + (-lt->map[key] - 1);
}

/* The neighbour minimising sum w (scale q - x)^2 with q = 2l+1 (first one on ties); its
 * levels go to L. */
static int nearest_neighbour(const iq_lattice *lt, const uint16_t *nb, const float *xval,
                             const float *w, float scale, int8_t *L) {
    float best = FLT_MAX;
    int bi = nb[1];
    for (int m = 1; m <= nb[0]; m++) {
        const uint8_t *lv = lt->lev + nb[m] * lt->dim;
        float d2 = 0;
        for (int e = 0; e < lt->dim; e++) {
            float q = (float)(2 * lv[e] + 1);
            float diff = scale * q - xval[e];
            d2 += w[e] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            bi = nb[m];
        }
    }
    for (int e = 0; e < lt->dim; e++) L[e] = (int8_t)lt->lev[bi * lt->dim + e];
    return bi;
}

/* ------------------------------------------------------------------------------------ */
/* IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: scale search over a grid                     */
/* ------------------------------------------------------------------------------------ */

/* Weighted least-squares scale for non-negative x on levels 0..nmax (ggml's
 * make_qp_quants): a coarse search over 9 scales, then up to 5 rounds of single-level
 * moves that raise (sum w x l)^2 / (sum w l^2). Only the returned scale is used. */
static float qp_scale(int n, int nmax, const float *x, const float *w) {
    float max = 0;
    for (int i = 0; i < n; i++) max = RL_MAX(max, x[i]);
    if (max < 1e-15f) return 0.f;
    float iscale = (float)nmax / max;
    float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * (float)nearest_int(iscale * x[i]);
        best_mse += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        float iscale_is = (0.1f * (float)is + (float)nmax) / max;
        float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = RL_MIN(nmax, nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * (float)l;
            mse += w[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    uint8_t L[32];
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = RL_MIN(nmax, nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * (float)l;
        suml2 += w[i] * (float)l * (float)l;
    }
    for (int round = 0; round < 5; round++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float slx = sumlx - w[i] * x[i] * (float)L[i];
            float sl2 = suml2 - w[i] * (float)L[i] * (float)L[i];
            if (!(slx > 0 && sl2 > 0)) continue;
            int nl = RL_MIN(nmax, nearest_int(x[i] * sl2 / slx));
            if (nl == L[i]) continue;
            slx += w[i] * x[i] * (float)nl;
            sl2 += w[i] * (float)nl * (float)nl;
            if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (uint8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* How one type searches its sub-block scale. */
typedef struct scale_search {
    int nlev;          /* levels 0..nlev-1, values 2l+1 */
    int is_max;        /* candidate scales: id = (2 nlev - 1 + is * step) / base, |is| <= is_max */
    float step;
    bool from_qp;      /* IQ2_XXS: base = make_qp scale * nlev; always re-project all groups */
    bool redo_all;     /* the final pass re-projects every group, not only those off the grid */
    bool ongrid_init;  /* assumed on-grid state before any candidate wins */
} scale_search;

/* sum w x q and sum w q^2 for q = 2L+1 */
static inline void sums_qx(int n, const float *w, const float *xval, const int8_t *L,
                           float *sumqx, float *sumq2) {
    float sx = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        float q = (float)(2 * L[i] + 1);
        sx += w[i] * xval[i] * q;
        s2 += w[i] * q * q;
    }
    *sumqx = sx;
    *sumq2 = s2;
}

/* Round the group xval[0..dim) at inverse scale id to lattice levels, then onto the grid
 * (nearest neighbour at `scale` when off it). Returns whether the rounding was on it. */
static bool project_group(const iq_lattice *lt, int nlev, float id, float scale,
                          const float *xval, const float *waux, int8_t *L) {
    for (int e = 0; e < lt->dim; e++)
        L[e] = (int8_t)clampi(nearest_int(0.5f * (id * xval[e] - 1)), 0, nlev - 1);
    const int key = lattice_key(lt, L);
    if (lt->map[key] >= 0) return true;
    nearest_neighbour(lt, lattice_neighbours(lt, key), xval, waux, scale, L);
    return false;
}

/* Best scale for n non-negative values xval (max > 0) with weights w (waux = sqrt w for
 * the neighbour choice): *scale and the grid levels L. Returns false when the sub-block is
 * to be stored empty (IQ2_XXS with no usable starting scale). */
static bool search_scale(const iq_lattice *lt, const scale_search *ss, int n, float max,
                         const float *xval, const float *w, const float *waux, int8_t *L,
                         float *scale_out) {
    const int ng = n / lt->dim;
    int8_t Laux[32];
    bool on[8], on_aux[8];
    float scale, base;
    memset(L, 0, (size_t)n);
    if (ss->from_qp) {
        scale = qp_scale(n, ss->nlev + 1, xval, w);
        base = scale * (float)ss->nlev;
        if (base <= 0) return false;
    } else {
        scale = max / (float)(2 * ss->nlev - 1);
        base = max;
    }
    for (int k = 0; k < ng; k++) on[k] = ss->ongrid_init;
    float best = 0;
    for (int is = -ss->is_max; is <= ss->is_max; is++) {
        const float id = ((float)(2 * ss->nlev - 1) + (float)is * ss->step) / base;
        const float this_scale = 1 / id;
        for (int k = 0; k < ng; k++)
            on_aux[k] = project_group(lt, ss->nlev, id, this_scale, xval + lt->dim * k,
                                      waux + lt->dim * k, Laux + lt->dim * k);
        float sumqx, sumq2;
        sums_qx(n, w, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, (size_t)n);
            memcpy(on, on_aux, sizeof on);
        }
    }
    bool redo = scale > 0;
    if (!ss->from_qp) {
        int off = 0;
        for (int k = 0; k < ng; k++) off += !on[k];
        redo = redo && off > 0;
    }
    if (redo) {
        const float id = 1 / scale;
        for (int k = 0; k < ng; k++) {
            if (!ss->redo_all && on[k]) continue;
            project_group(lt, ss->nlev, id, scale, xval + lt->dim * k, waux + lt->dim * k,
                          L + lt->dim * k);
        }
        float sumqx, sumq2;
        sums_qx(n, w, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    *scale_out = scale;
    return true;
}

/* Grid index of the (on-grid) group L. */
static inline int grid_index(const iq_lattice *lt, const int8_t *L) {
    const int32_t j = lt->map[lattice_key(lt, L)];
    assert(j >= 0);
    return j;
}

/* Sum of squares of a super-block. */
static inline float sum_sq(const float *x) {
    float s = 0;
    for (int i = 0; i < QK_K; i++) s += x[i] * x[i];
    return s;
}

/* Importance of each value: imatrix * sqrt(sigma2 + x^2), or a type's fallback without. */
enum { W_ONES, W_SQ, W_SQ_PLUS };
static void importance(int n, const float *x, const float *qw, float sigma2, int fallback,
                       float *w) {
    for (int i = 0; i < n; i++) {
        if (qw) {
            w[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
        } else if (fallback == W_SQ) {
            w[i] = x[i] * x[i];
        } else if (fallback == W_SQ_PLUS) {
            w[i] = 0.25f * sigma2 + x[i] * x[i];
        } else {
            w[i] = sqrtf(sigma2 + x[i] * x[i]);
        }
    }
}

/* Magnitudes of 8 values and their sign bits (bit i set: x_i < 0). With even parity
 * (only 7 bits stored), an odd count of negatives flips the value of least w x^2 so that
 * its sign is wrong but cheap. */
static uint8_t fold_signs8(const float *x, const float *w, bool even_parity, float *xval) {
    uint8_t s = 0;
    int neg = 0;
    for (int i = 0; i < 8; i++) {
        if (x[i] >= 0) {
            xval[i] = x[i];
        } else {
            xval[i] = -x[i];
            neg++;
            s |= (uint8_t)(1 << i);
        }
    }
    if (even_parity && (neg & 1)) {
        int imin = 0;
        float min = w[0] * x[0] * x[0];
        for (int i = 1; i < 8; i++) {
            float a = w[i] * x[i] * x[i];
            if (a < min) {
                min = a;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= (uint8_t)(1 << imin);
    }
    return even_parity ? (uint8_t)(s & 127) : s;
}

/* Code of a sub-block scale s against the super-block scale 1/id: the l in 0..max with
 * s ~ (2l + 1) / id / 2. */
static inline int scale_code(float id, float s, int max) {
    return clampi(nearest_int(0.5f * (id * s - 1)), 0, max);
}

static float max_of(int n, const float *v) {
    float m = v[0];
    for (int i = 1; i < n; i++) m = RL_MAX(m, v[i]);
    return m;
}

static const scale_search k_iq2xxs = {3, 6, 0.1f, true, true, false};
static const scale_search k_iq2xs = {3, 9, 0.1f, false, false, true};
static const scale_search k_iq2s = {3, 9, 0.1f, false, false, true};
static const scale_search k_iq3xxs = {8, 15, 0.2f, false, false, true};
static const scale_search k_iq3s = {8, 9, 0.2f, false, true, false};

/* IQ2_XXS: sub-blocks of 32; per 32 a 32-bit word of 4 grid indices (8 bits) and one of
 * 4 x 7 sign bits + a 4-bit scale; fp16 d = max scale / 31. An imatrix is expected;
 * without one the columns weigh equally. */
void rl__quant_iq2_xxs(const float *x, void *dst, int64_t n, const float *imatrix) {
    const iq_lattice *lt = g_iq2xxs_get();
    block_iq2_xxs *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        const float sigma2 = sum_sq(xbl) / QK_K;
        uint8_t q2[QK_K / 4] = {0};
        float scales[QK_K / 32];
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float *xb = xbl + 32 * ib;
            float w[32], waux[32], xval[32], scale;
            int8_t L[32];
            uint8_t signs[4];
            importance(32, xb, imatrix ? imatrix + QK_K * ibl + 32 * ib : NULL, sigma2, W_ONES, w);
            for (int i = 0; i < 32; i++) waux[i] = sqrtf(w[i]);
            for (int k = 0; k < 4; k++) signs[k] = fold_signs8(xb + 8 * k, w + 8 * k, true, xval + 8 * k);
            scales[ib] = 0;
            if (max_of(32, xval) < 1e-15f) continue;
            if (!search_scale(lt, &k_iq2xxs, 32, max_of(32, xval), xval, w, waux, L, &scale)) continue;
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; k++) signs[k] = (uint8_t)(~signs[k] & 127);
            }
            uint32_t sgn = 0;
            for (int k = 0; k < 4; k++) {
                q2[8 * ib + k] = (uint8_t)grid_index(lt, L + 8 * k);
                sgn |= (uint32_t)signs[k] << 7 * k;
            }
            store_le32(q2 + 8 * ib + 4, sgn);
            scales[ib] = scale;
            max_scale = RL_MAX(max_scale, scale);
        }
        y[ibl].d = rl__fp32_to_fp16(0.f);
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = rl__fp32_to_fp16(d);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ib++)
            q2[8 * ib + 7] |= (uint8_t)(scale_code(id, scales[ib], 15) << 4);
        memcpy(y[ibl].qs, q2, sizeof q2);
    }
}

/* The 16-value sub-block types IQ2_XS and IQ2_S share everything but sign coding, the
 * weights without imatrix and the stored d. */
typedef struct iq2_16_kind {
    const scale_search *ss;
    bool parity;   /* IQ2_XS: 7 sign bits with even parity; IQ2_S: 8 bits */
    float eps;     /* smaller maxima are stored empty */
    float sigma_k; /* sigma2 = sigma_k * sum x^2 / 256 */
    int fallback;  /* weights without imatrix */
    float d_fudge; /* stored d = max scale / 31 * d_fudge */
} iq2_16_kind;

/* One super-block of IQ2_XS or IQ2_S: per 16 values, two grid indices + signs and a 4-bit
 * scale. codes[2 ib + k] receives grid index | signs << 16, *d the fp16 super-block scale,
 * sc the scale nibbles. Returns false when every sub-block came out empty (d = 0). */
static bool quant_iq2_16(const iq_lattice *lt, const iq2_16_kind *kd, const float *xbl,
                         const float *qw, uint32_t codes[QK_K / 8], uint8_t sc[QK_K / 32],
                         rl_fp16 *dh) {
    const float sigma2 = kd->sigma_k * sum_sq(xbl) / QK_K;
    float scales[QK_K / 16];
    float max_scale = 0;
    memset(codes, 0, sizeof(uint32_t) * (QK_K / 8));
    memset(sc, 0, QK_K / 32);
    for (int ib = 0; ib < QK_K / 16; ib++) {
        const float *xb = xbl + 16 * ib;
        float w[16], waux[16], xval[16], scale;
        int8_t L[16];
        uint8_t signs[2];
        importance(16, xb, qw ? qw + 16 * ib : NULL, sigma2, kd->fallback, w);
        for (int i = 0; i < 16; i++) waux[i] = sqrtf(w[i]);
        for (int k = 0; k < 2; k++) signs[k] = fold_signs8(xb + 8 * k, w + 8 * k, kd->parity, xval + 8 * k);
        scales[ib] = 0;
        const float max = max_of(16, xval);
        if (max < kd->eps) continue;
        search_scale(lt, kd->ss, 16, max, xval, w, waux, L, &scale);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 2; k++) signs[k] = (uint8_t)(kd->parity ? ~signs[k] & 127 : ~signs[k]);
        }
        for (int k = 0; k < 2; k++)
            codes[2 * ib + k] = (uint32_t)grid_index(lt, L + 8 * k) | (uint32_t)signs[k] << 16;
        scales[ib] = scale;
        max_scale = RL_MAX(max_scale, scale);
    }
    *dh = rl__fp32_to_fp16(0.f);
    if (!max_scale) return false;
    const float d = max_scale / 31;
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 16; ib++)
        sc[ib / 2] |= (uint8_t)(scale_code(id, scales[ib], 15) << 4 * (ib % 2));
    *dh = rl__fp32_to_fp16(d * kd->d_fudge);
    return true;
}

static const iq2_16_kind k_xs = {&k_iq2xs, true, 1e-15f, 1.0f, W_ONES, 1.0f};
static const iq2_16_kind k_s = {&k_iq2s, false, 1e-8f, 2.0f, W_SQ_PLUS, 0.9875f};

/* IQ2_XS: 16-bit codes of a 9-bit grid index and 7 sign bits. An imatrix is expected;
 * without one the columns weigh equally. */
void rl__quant_iq2_xs(const float *x, void *dst, int64_t n, const float *imatrix) {
    const iq_lattice *lt = g_iq2xs_get();
    block_iq2_xs *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        uint32_t codes[QK_K / 8];
        const bool any = quant_iq2_16(lt, &k_xs, x + QK_K * ibl,
                                      imatrix ? imatrix + QK_K * ibl : NULL, codes,
                                      y[ibl].scales, &y[ibl].d);
        uint8_t *qs = (uint8_t *)y[ibl].qs;
        for (int k = 0; k < QK_K / 8; k++)
            store_le16(qs + 2 * k, any ? (uint16_t)((codes[k] & 0xffff) | (codes[k] >> 16) << 9) : 0);
    }
}

/* IQ2_S: 10-bit grid indices (low bytes in qs, 2 high bits each in qh) and 8 explicit sign
 * bits per 8 values (second half of qs). Works without an imatrix. */
void rl__quant_iq2_s(const float *x, void *dst, int64_t n, const float *imatrix) {
    const iq_lattice *lt = g_iq2s_get();
    block_iq2_s *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        uint32_t codes[QK_K / 8];
        memset(&y[ibl], 0, sizeof y[ibl]);
        quant_iq2_16(lt, &k_s, x + QK_K * ibl, imatrix ? imatrix + QK_K * ibl : NULL, codes,
                     y[ibl].scales, &y[ibl].d);
        for (int k = 0; k < QK_K / 8; k++) {
            const uint32_t idx = codes[k] & 0xffff;
            y[ibl].qs[k] = (uint8_t)idx;
            y[ibl].qh[k / 4] |= (uint8_t)((idx >> 8) << 2 * (k % 4));
            y[ibl].qs[QK_K / 8 + k] = (uint8_t)(codes[k] >> 16);
        }
    }
}

/* IQ3_XXS: per 32 values, 8 grid bytes (4 values each) and a 32-bit word of 4 x 7 sign
 * bits + a 4-bit scale; stored d = max scale / 31 * 1.0125. Works without an imatrix. */
void rl__quant_iq3_xxs(const float *x, void *dst, int64_t n, const float *imatrix) {
    const iq_lattice *lt = g_iq3xxs_get();
    block_iq3_xxs *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        const float sigma2 = 2 * sum_sq(xbl) / QK_K;
        uint8_t q3[3 * QK_K / 8] = {0};
        uint8_t *sas = q3 + QK_K / 4;
        float scales[QK_K / 32];
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float *xb = xbl + 32 * ib;
            float w[32], waux[32], xval[32], scale;
            int8_t L[32];
            uint8_t signs[4];
            importance(32, xb, imatrix ? imatrix + QK_K * ibl + 32 * ib : NULL, sigma2, W_SQ, w);
            for (int i = 0; i < 32; i++) waux[i] = sqrtf(w[i]);
            for (int k = 0; k < 4; k++) signs[k] = fold_signs8(xb + 8 * k, w + 8 * k, true, xval + 8 * k);
            scales[ib] = 0;
            const float max = max_of(32, xval);
            if (max < 1e-8f) continue;
            search_scale(lt, &k_iq3xxs, 32, max, xval, w, waux, L, &scale);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; k++) signs[k] = (uint8_t)(~signs[k] & 127);
            }
            for (int k = 0; k < 8; k++) q3[8 * ib + k] = (uint8_t)grid_index(lt, L + 4 * k);
            store_le32(sas + 4 * ib, (uint32_t)signs[0] | (uint32_t)signs[1] << 7 |
                                         (uint32_t)signs[2] << 14 | (uint32_t)signs[3] << 21);
            scales[ib] = scale;
            max_scale = RL_MAX(max_scale, scale);
        }
        y[ibl].d = rl__fp32_to_fp16(0.f);
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = rl__fp32_to_fp16(d * 1.0125f);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ib++)
            sas[4 * ib + 3] |= (uint8_t)(scale_code(id, scales[ib], 15) << 4);
        memcpy(y[ibl].qs, q3, sizeof q3);
    }
}

/* IQ3_S: per 32 values, 8 grid indices of 9 bits (high bits in qh), 32 explicit sign bits,
 * a 4-bit odd scale 1 + 2l; stored d = max scale / 31 * 1.033. Works without an imatrix
 * (then the weights are x^2) and then gives ggml's quantize_row_iq3_s_ref bytes.
 *
 * One deliberate difference: ggml skips an all-zero sub-block without advancing its qs and
 * signs cursors, so the codes of the sub-blocks after it land one slot early and the
 * super-block decodes wrongly. Here every sub-block keeps its own slots. The two agree
 * whenever no 32-value sub-block is exactly zero inside an otherwise non-zero super-block. */
void rl__quant_iq3_s(const float *x, void *dst, int64_t n, const float *imatrix) {
    const iq_lattice *lt = g_iq3s_get();
    block_iq3_s *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        const float sigma2 = 2 * sum_sq(xbl) / QK_K;
        float scales[QK_K / 32];
        float max_scale = 0;
        memset(&y[ibl], 0, sizeof y[ibl]);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float *xb = xbl + 32 * ib;
            float w[32], waux[32], xval[32], scale;
            int8_t L[32];
            uint8_t signs[4];
            importance(32, xb, imatrix ? imatrix + QK_K * ibl + 32 * ib : NULL, sigma2, W_SQ, w);
            for (int i = 0; i < 32; i++) waux[i] = sqrtf(w[i]);
            for (int k = 0; k < 4; k++) signs[k] = fold_signs8(xb + 8 * k, w + 8 * k, false, xval + 8 * k);
            scales[ib] = 0;
            const float max = max_of(32, xval);
            if (!max) continue;
            search_scale(lt, &k_iq3s, 32, max, xval, w, waux, L, &scale);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; k++) signs[k] = (uint8_t)~signs[k];
            }
            for (int k = 0; k < 8; k++) {
                const int idx = grid_index(lt, L + 4 * k);
                y[ibl].qs[8 * ib + k] = (uint8_t)idx;
                y[ibl].qh[ib] |= (uint8_t)((idx >> 8) << k);
            }
            memcpy(y[ibl].signs + 4 * ib, signs, 4);
            scales[ib] = scale;
            max_scale = RL_MAX(max_scale, scale);
        }
        if (!max_scale) continue;
        const float d = max_scale / 31;
        y[ibl].d = rl__fp32_to_fp16(d * 1.033f);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ib += 2)
            y[ibl].scales[ib / 2] = (uint8_t)(scale_code(id, scales[ib], 15) |
                                              scale_code(id, scales[ib + 1], 15) << 4);
    }
}

/* ------------------------------------------------------------------------------------ */
/* IQ1_S, IQ1_M: ternary values with a shift                                            */
/* ------------------------------------------------------------------------------------ */

/* Values of the levels 0, 1, 2 under a positive or negative shift delta. */
static const float k_xp[3] = {-1 + RL_IQ1S_DELTA, RL_IQ1S_DELTA, 1 + RL_IQ1S_DELTA};
static const float k_xm[3] = {-1 - RL_IQ1S_DELTA, -RL_IQ1S_DELTA, 1 - RL_IQ1S_DELTA};

/* Order of x[0..n) ascending; equal values keep their index order. */
static void sort_order(int n, const float *x, int *order) {
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && x[order[j - 1]] > x[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* The grid point nearest to the group x (sum w (scale xx[l] - x)^2) among the neighbours
 * of the off-grid levels L, which it replaces. */
static int iq1_nearest(const iq_lattice *lt, const int8_t *L, const float *x, const float *w,
                       float scale, const float *xx, int8_t *Lout) {
    const uint16_t *nb = lattice_neighbours(lt, lattice_key(lt, L));
    float best = FLT_MAX;
    int bi = nb[1];
    for (int m = 1; m <= nb[0]; m++) {
        const uint8_t *lv = lt->lev + nb[m] * 8;
        float d2 = 0;
        for (int e = 0; e < 8; e++) {
            float diff = scale * xx[lv[e]] - x[e];
            d2 += w[e] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            bi = nb[m];
        }
    }
    for (int e = 0; e < 8; e++) Lout[e] = (int8_t)lt->lev[bi * 8 + e];
    return bi;
}

/* Grid indices for the groups of 8 of L (projecting those off the grid), and the refit
 * scale when any was off. xx[k] holds group k's shifted level values. */
static void iq1_project(const iq_lattice *lt, int n, const float *xb, const float *w,
                        int8_t *L, const float *const *xx, uint16_t *index, float *scale) {
    bool all_on = true;
    for (int k = 0; k < n / 8; k++) {
        int j = lt->map[lattice_key(lt, L + 8 * k)];
        if (j < 0) {
            all_on = false;
            j = iq1_nearest(lt, L + 8 * k, xb + 8 * k, w + 8 * k, *scale, xx[k], L + 8 * k);
        }
        index[k] = (uint16_t)j;
    }
    if (all_on) return;
    float sumqx = 0, sumq2 = 0;
    for (int k = 0; k < n / 8; k++) {
        const uint8_t *lv = lt->lev + index[k] * 8;
        for (int e = 0; e < 8; e++) {
            float q = xx[k][lv[e]];
            sumqx += w[8 * k + e] * q * xb[8 * k + e];
            sumq2 += w[8 * k + e] * q * q;
        }
    }
    if (sumqx > 0 && sumq2 > 0) *scale = sumqx / sumq2;
}

/* IQ1_S: per 32 values one scale and one shift sign. The optimal split of the sorted values
 * into the three levels is found exhaustively from prefix sums, for either shift; the
 * winning levels are then projected onto the grid. qh[ib] = 4 x 3 high index bits | 3-bit
 * scale << 12 | shift sign << 15; stored d = max scale / 15 * 1.125. An imatrix is
 * expected; without one the columns weigh equally. */
void rl__quant_iq1_s(const float *x, void *dst, int64_t n, const float *imatrix) {
    const iq_lattice *lt = g_iq1s_get();
    block_iq1_s *y = dst;
    enum { BS = 32 };
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        const float sigma2 = 2 * sum_sq(xbl) / QK_K;
        uint16_t qh[QK_K / 32] = {0};
        float scales[QK_K / BS];
        int shifts[QK_K / BS];
        float max_scale = 0;
        memset(y[ibl].qs, 0, sizeof y[ibl].qs);
        for (int ib = 0; ib < QK_K / BS; ib++) {
            const float *xb = xbl + BS * ib;
            float w[BS];
            importance(BS, xb, imatrix ? imatrix + QK_K * ibl + BS * ib : NULL, sigma2, W_ONES, w);
            float max = fabsf(xb[0]);
            for (int i = 1; i < BS; i++) max = RL_MAX(max, fabsf(xb[i]));
            scales[ib] = 0;
            shifts[ib] = 1;
            if (max < 1e-12f) continue;
            int order[BS];
            sort_order(BS, xb, order);
            float sumx[BS + 1], sumw[BS + 1];
            sumx[0] = sumw[0] = 0;
            for (int j = 0; j < BS; j++) {
                sumx[j + 1] = sumx[j] + w[order[j]] * xb[order[j]];
                sumw[j + 1] = sumw[j] + w[order[j]];
            }
            /* levels: sorted positions [0, i1) -> 0, [i1, i2) -> 1, [i2, BS) -> 2 */
            float best = -FLT_MAX, scale = max;
            int bi1 = -1, bi2 = -1, bshift = 0;
            for (int i1 = 0; i1 <= BS; i1++) {
                for (int i2 = i1; i2 <= BS; i2++) {
                    for (int sh = 1; sh >= -1; sh -= 2) {
                        const float *v = sh == 1 ? k_xp : k_xm;
                        float sumqx = (sumx[i1] - sumx[0]) * v[0] + (sumx[i2] - sumx[i1]) * v[1] +
                                      (sumx[BS] - sumx[i2]) * v[2];
                        float sumq2 = (sumw[i1] - sumw[0]) * v[0] * v[0] +
                                      (sumw[i2] - sumw[i1]) * v[1] * v[1] +
                                      (sumw[BS] - sumw[i2]) * v[2] * v[2];
                        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                            scale = sumqx / sumq2;
                            best = scale * sumqx;
                            bi1 = i1;
                            bi2 = i2;
                            bshift = sh;
                        }
                    }
                }
            }
            if (bi1 < 0 || bi2 < 0 || bshift == 0) continue;
            int8_t L[BS];
            for (int j = 0; j < BS; j++) L[order[j]] = (int8_t)(j < bi1 ? 0 : j < bi2 ? 1 : 2);
            if (scale < 0) {
                for (int j = 0; j < BS; j++) L[j] = (int8_t)(2 - L[j]);
                scale = -scale;
                bshift = -bshift;
            }
            const float *xx = bshift == 1 ? k_xp : k_xm;
            const float *xxs[BS / 8] = {xx, xx, xx, xx};
            uint16_t index[BS / 8];
            iq1_project(lt, BS, xb, w, L, xxs, index, &scale);
            uint16_t h = 0;
            for (int k = 0; k < BS / 8; k++) {
                y[ibl].qs[(BS / 8) * ib + k] = (uint8_t)index[k];
                h |= (uint16_t)((index[k] >> 8) << 3 * k);
            }
            qh[ib] = h;
            scales[ib] = scale;
            shifts[ib] = bshift;
            max_scale = RL_MAX(max_scale, scale);
        }
        y[ibl].d = rl__fp32_to_fp16(0.f);
        if (max_scale) {
            const float d = max_scale / 15;
            y[ibl].d = rl__fp32_to_fp16(d * 1.125f);
            const float id = 1 / d;
            for (int ib = 0; ib < QK_K / BS; ib++) {
                int l = scale_code(id, scales[ib], 7);
                if (shifts[ib] == -1) l |= 8;
                qh[ib] |= (uint16_t)(l << 12);
            }
        }
        for (int ib = 0; ib < QK_K / 32; ib++) store_le16((uint8_t *)y[ibl].qh + 2 * ib, qh[ib]);
    }
}

/* IQ1_M: per 16 values a 3-bit scale, per 8 values a shift sign, so a sub-block of 16 has
 * four shift patterns k: bit 1 of k the sign of the first 8, bit 0 of the second (set:
 * negative). The split search scores all four; the fp16 super-block scale, refit over the
 * whole super-block, is spread over the top nibbles of the four scale words. Works
 * without an imatrix (then the weights are x^2). */
void rl__quant_iq1_m(const float *x, void *dst, int64_t n, const float *imatrix) {
    const iq_lattice *lt = g_iq1s_get();
    block_iq1_m *y = dst;
    enum { BS = 16 };
    static const uint8_t k_masks[4] = {0x00, 0x80, 0x08, 0x88};
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        const float *qwbl = imatrix ? imatrix + QK_K * ibl : NULL;
        const float sigma2 = 2 * sum_sq(xbl) / QK_K;
        float scales[QK_K / BS];
        int shifts[QK_K / BS];
        float max_scale = 0;
        memset(&y[ibl], 0, sizeof y[ibl]);
        for (int ib = 0; ib < QK_K / BS; ib++) {
            const float *xb = xbl + BS * ib;
            float w[BS];
            importance(BS, xb, qwbl ? qwbl + BS * ib : NULL, sigma2, W_SQ, w);
            float max = fabsf(xb[0]);
            for (int i = 1; i < BS; i++) max = RL_MAX(max, fabsf(xb[i]));
            scales[ib] = 0;
            shifts[ib] = 0;
            if (max < 1e-7f) continue;
            int order[BS];
            sort_order(BS, xb, order);
            float best = -FLT_MAX, scale = max;
            int bi1 = -1, bi2 = -1, bk = -1;
            for (int i1 = 0; i1 <= BS; i1++) {
                for (int i2 = i1; i2 <= BS; i2++) {
                    float sumqx[4] = {0}, sumq2[4] = {0};
                    for (int j = 0; j < BS; j++) {
                        const int i = order[j];
                        const int l = j < i1 ? 0 : j < i2 ? 1 : 2;
                        for (int k = 0; k < 4; k++) {
                            const bool neg = i < BS / 2 ? k >= 2 : (k & 1);
                            const float v = neg ? k_xm[l] : k_xp[l];
                            sumqx[k] += w[i] * v * xb[i];
                            sumq2[k] += w[i] * v * v;
                        }
                    }
                    for (int k = 0; k < 4; k++) {
                        if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best * sumq2[k]) {
                            scale = sumqx[k] / sumq2[k];
                            best = scale * sumqx[k];
                            bi1 = i1;
                            bi2 = i2;
                            bk = k;
                        }
                    }
                }
            }
            if (bi1 < 0 || bi2 < 0 || bk < 0) continue;
            int8_t L[BS];
            for (int j = 0; j < BS; j++) L[order[j]] = (int8_t)(j < bi1 ? 0 : j < bi2 ? 1 : 2);
            if (scale < 0) {
                for (int j = 0; j < BS; j++) L[j] = (int8_t)(2 - L[j]);
                scale = -scale;
                bk = 3 - bk;
            }
            const float *xxs[2] = {bk < 2 ? k_xp : k_xm, bk % 2 == 0 ? k_xp : k_xm};
            uint16_t index[2];
            iq1_project(lt, BS, xb, w, L, xxs, index, &scale);
            y[ibl].qs[2 * ib] = (uint8_t)index[0];
            y[ibl].qs[2 * ib + 1] = (uint8_t)index[1];
            y[ibl].qh[ib] = (uint8_t)((index[0] >> 8) | (index[1] >> 8) << 4);
            scales[ib] = scale;
            shifts[ib] = bk;
            max_scale = RL_MAX(max_scale, scale);
        }
        if (!max_scale) continue;
        /* scale codes, then d refit by least squares over the decoded super-block */
        uint16_t sc[4] = {0};
        float d = max_scale / 15;
        const float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int ib = 0; ib < QK_K / BS; ib++) {
            const int l = scale_code(id, scales[ib], 7);
            sc[ib / 4] |= (uint16_t)(l << 3 * (ib % 4));
            y[ibl].qh[ib] |= k_masks[shifts[ib]];
            const float *xb = xbl + BS * ib;
            float w[BS];
            importance(BS, xb, qwbl ? qwbl + BS * ib : NULL, sigma2, W_SQ, w);
            for (int k = 0; k < 2; k++) {
                const float *xx = (k == 0 ? shifts[ib] < 2 : shifts[ib] % 2 == 0) ? k_xp : k_xm;
                const int idx = y[ibl].qs[2 * ib + k] | ((y[ibl].qh[ib] << (8 - 4 * k)) & 0x700);
                const uint8_t *lv = lt->lev + idx * 8;
                for (int e = 0; e < 8; e++) {
                    float q = xx[lv[e]] * (float)(2 * l + 1);
                    sumqx += w[8 * k + e] * q * xb[8 * k + e];
                    sumq2 += w[8 * k + e] * q * q;
                }
            }
        }
        if (sumq2 > 0) d = sumqx / sumq2;
        const uint16_t h = rl__fp32_to_fp16(d * 1.1125f);
        sc[0] |= (uint16_t)((h & 0x000f) << 12);
        sc[1] |= (uint16_t)((h & 0x00f0) << 8);
        sc[2] |= (uint16_t)((h & 0x0f00) << 4);
        sc[3] |= (uint16_t)(h & 0xf000);
        for (int k = 0; k < 4; k++) store_le16(y[ibl].scales + 2 * k, sc[k]);
    }
}
