/*
 * vec_kern.h - the sampler's whole-vector passes, written once over 8-lane float vectors
 * and included by vec.c (two SSE registers per vector, the baseline) and vec_avx2.c (one
 * AVX register). The includer defines f8 / i8 (8 floats / 8 int32), their operations and
 * KSFX (the name suffix). Every lane does the float operations of rl__det_expf and the
 * sums run over the same 8 lanes in the same order, so both builds give the same bits.
 */
#define KCAT2(a, b) a##b
#define KCAT(a, b) KCAT2(a, b)
#define KFN(name) KCAT(name, KSFX)

static inline f8 f8_max(f8 a, f8 b) { return f8_sel(f8_gt(a, b), a, b); }
static inline float f8_hmax(f8 v) {
    float l[8];
    f8_st(l, v);
    float r = l[0];
    for (int j = 1; j < 8; j++) r = l[j] > r ? l[j] : r;
    return r;
}
static inline bool i8_all(i8 m) {
    int32_t l[8];
    i8_st(l, m);
    int32_t r = -1;
    for (int j = 0; j < 8; j++) r &= l[j];
    return r != 0;
}

/* rl__det_expf on 8 lanes. */
static inline f8 f8_exp(f8 x) {
    const f8 big = f8_splat(12582912.0f), lo = f8_splat(-87.33f);
    i8 small = f8_lt(x, lo);
    f8 xc = f8_sel(small, lo, x);
    f8 t = f8_add(f8_mul(xc, f8_splat(1.44269504089f)), big);
    f8 n = f8_sub(t, big);
    f8 r = f8_sub(xc, f8_mul(n, f8_splat(0.693145751953125f)));
    r = f8_sub(r, f8_mul(n, f8_splat(1.42860682030941723212e-6f)));
    f8 p = f8_splat(1.0f / 5040.0f);
    p = f8_add(f8_mul(p, r), f8_splat(1.0f / 720.0f));
    p = f8_add(f8_mul(p, r), f8_splat(1.0f / 120.0f));
    p = f8_add(f8_mul(p, r), f8_splat(1.0f / 24.0f));
    p = f8_add(f8_mul(p, r), f8_splat(1.0f / 6.0f));
    p = f8_add(f8_mul(p, r), f8_splat(0.5f));
    p = f8_add(f8_mul(p, r), f8_splat(1.0f));
    p = f8_add(f8_mul(p, r), f8_splat(1.0f));
    f8 scale = f8_exp2i(f8_bits_sub(t, big)); /* 2^n from the integer n in t's bits */
    return f8_andnot(small, f8_mul(p, scale));
}

float KFN(rl__samp_vmax_)(const float *x, int32_t n) {
    f8 m = f8_splat(-INFINITY);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) m = f8_max(f8_ld(x + i), m);
    float r = f8_hmax(m);
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

bool KFN(rl__samp_vcheck_)(const float *x, int32_t n) {
    const f8 inf = f8_splat(INFINITY);
    i8 ok = i8_splat(-1);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) ok = i8_and(ok, f8_lt(f8_ld(x + i), inf));
    bool r = i8_all(ok);
    for (; i < n; i++) r &= x[i] < INFINITY;
    return r;
}

bool KFN(rl__samp_vcopy_)(float *dst, const float *src, const uint8_t *mask, int32_t n) {
    const f8 inf = f8_splat(INFINITY), ninf = f8_splat(-INFINITY);
    i8 ok = i8_splat(-1);
    int32_t i = 0;
    if (mask) {
        for (; i + 8 <= n; i += 8) {
            f8 a = f8_ld(src + i);
            ok = i8_and(ok, f8_lt(a, inf));
            f8_st(dst + i, f8_sel(i8_bits(mask[i >> 3]), a, ninf));
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            f8 a = f8_ld(src + i);
            ok = i8_and(ok, f8_lt(a, inf));
            f8_st(dst + i, a);
        }
    }
    bool r = i8_all(ok);
    for (; i < n; i++) {
        r &= src[i] < INFINITY;
        dst[i] = !mask || rl_mask_test(mask, i) ? src[i] : -INFINITY;
    }
    return r;
}

void KFN(rl__samp_vmask_)(float *x, const uint8_t *mask, int32_t n) {
    const f8 ninf = f8_splat(-INFINITY);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) f8_st(x + i, f8_sel(i8_bits(mask[i >> 3]), f8_ld(x + i), ninf));
    for (; i < n; i++)
        if (!rl_mask_test(mask, i)) x[i] = -INFINITY;
}

int32_t KFN(rl__samp_vargmax_)(const float *x, const uint8_t *mask, int32_t n, bool *ok) {
    /* one pass of block maxima (blocks of 32), then the first hit in the best block */
    const f8 ninf = f8_splat(-INFINITY), inf = f8_splat(INFINITY);
    i8 good = i8_splat(-1);
    float best = -INFINITY;
    int32_t bb = -1, i = 0;
    for (; i + 32 <= n; i += 32) {
        f8 m = ninf;
        for (int32_t k = i; k < i + 32; k += 8) {
            f8 a = f8_ld(x + k);
            good = i8_and(good, f8_lt(a, inf));
            if (mask) a = f8_sel(i8_bits(mask[k >> 3]), a, ninf);
            m = f8_max(m, a);
        }
        float bm = f8_hmax(m);
        if (bm > best) {
            best = bm;
            bb = i;
        }
    }
    int32_t bi = -1;
    if (bb >= 0)
        for (int32_t k = bb; bi < 0; k++)
            if (x[k] == best && (!mask || rl_mask_test(mask, k))) bi = k;
    bool r = i8_all(good);
    for (; i < n; i++) {
        r &= x[i] < INFINITY;
        if (x[i] > best && (!mask || rl_mask_test(mask, i))) {
            best = x[i];
            bi = i;
        }
    }
    if (ok) *ok = r;
    return best > -INFINITY ? bi : -1;
}

void KFN(rl__samp_vdiv_)(float *dst, const float *src, float t, int32_t n) {
    const f8 tv = f8_splat(t);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) f8_st(dst + i, f8_div(f8_ld(src + i), tv));
    for (; i < n; i++) dst[i] = src[i] / t;
}

double KFN(rl__samp_vexp_sum_)(const float *x, float *e, int32_t n, float mx, double *bs) {
    const f8 m = f8_splat(mx);
    double total = 0.0;
    for (int32_t b0 = 0, bi = 0; b0 < n; b0 += RL__BLOCK, bi++) {
        int32_t b1 = b0 + RL__BLOCK < n ? b0 + RL__BLOCK : n;
        f8 acc = f8_splat(0.0f);
        int32_t i = b0;
        for (; i + 8 <= b1; i += 8) {
            f8 v = f8_exp(f8_sub(f8_ld(x + i), m));
            f8_st(e + i, v);
            acc = f8_add(acc, v);
        }
        float l[8];
        f8_st(l, acc);
        for (; i < b1; i++) {
            e[i] = rl__det_expf(x[i] - mx);
            l[(i - b0) & 7] += e[i];
        }
        double sb = (((double)l[0] + (double)l[1]) + ((double)l[2] + (double)l[3])) +
                    (((double)l[4] + (double)l[5]) + ((double)l[6] + (double)l[7]));
        if (bs) bs[bi] = sb;
        total += sb;
    }
    return total;
}

#undef KFN
#undef KCAT
#undef KCAT2
