/*
 * dot_k_avx2.c - AVX2 (+FMA, F16C, BMI2) dot products of the k-quants Q2_K..Q6_K and IQ4_XS
 * with Q8_K activations, and of IQ4_NL with Q8_0 activations.
 *
 * The block formats are ggml's (blocks.h; each kernel restates the part it decodes).
 * The k-quant scheme is that of dot_k_avx512.c on 256-bit registers:
 *  - the weight codes of 32 consecutive elements are unpacked with shifts and masks into
 *    one ymm of unsigned bytes in element order, matching a plain load of the activations;
 *  - vpmaddubsw multiplies codes by int8 activations into int16 pairs (no saturation:
 *    |pair| <= 2*63*128), vpmaddwd multiplies the pairs by the sub-block scale (one per
 *    128-bit lane, spread over the words with vpshufb) into int32;
 *  - the offsets that make codes unsigned (-32 in Q6_K, -4 in Q3_K) and the sub-block
 *    minimums (Q2_K, Q4_K, Q5_K) are applied once per super-block through the Q8_K bsums;
 *  - the int32 super-block sum is exact; one float FMA per super-block applies d_x*d_y.
 * IQ4_NL/IQ4_XS look the signed values up with vpshufb and use the sign trick
 * maddubs(|y|, sign(v, y)), exact for every int8 y since |v| <= 127 and |y| <= 128.
 * Results equal the plain-C references up to the order of the float additions.
 */
#include "cpu.h"

#include <immintrin.h>

static inline float fp16_f32(rl_fp16 h) { return _cvtsh_ss(h); }

/* Software prefetch of the weights KPF_DIST bytes ahead, one address every 64 bytes of each
 * block, as in dot_k_avx512.c (which says why and what it was worth there). */
#define KPF_DIST 8192
static inline void kpf(const void *block, int bytes) {
    for (int o = 0; o < bytes; o += 64)
        _mm_prefetch((const char *)block + KPF_DIST + o, _MM_HINT_T0);
}

static inline float hsum_ps256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* vpshufb control that copies word k of each 128-bit lane to all 8 words of the lane. */
static inline __m256i word_bcast(int k) {
    return _mm256_set1_epi16((short)(((2 * k + 1) << 8) | (2 * k)));
}

/* 8 bytes of v, each duplicated, as 16 int16 (lines a per-32-element value up with the
 * two bsums of its sub-block). */
static inline __m256i dup8_epu8_epi16(uint64_t v) {
    __m128i b = _mm_cvtsi64_si128((long long)v);
    return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(b, b));
}

/* 16 int16 scales (one per 16 elements) as [scale 2k in words of lane 0 | scale 2k+1 in
 * lane 1] for k = word index: even scales in the low lane, odd ones in the high lane. */
static inline __m256i even_odd_epi16(__m128i s8) {
    const __m128i eo = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, eo));
}

/* Codes of 32 elements (group g of 16-element sub-blocks 2g, 2g+1) times activations,
 * scaled per sub-block: sc_eo from even_odd_epi16. */
static inline __m256i dot32_sc(__m256i w, const int8_t *q8, __m256i sc_eo, int g) {
    const __m256i pr = _mm256_maddubs_epi16(w, _mm256_loadu_si256((const __m256i *)q8));
    return _mm256_madd_epi16(pr, _mm256_shuffle_epi8(sc_eo, word_bcast(g)));
}

/* ---- Q4_K / Q5_K ---------------------------------------------------------------------
 * 8 sub-blocks of 32 elements; 6-bit scale sc[j] and min m[j] packed in 12 bytes b: for
 * j < 4, sc = b[j] & 63 and m = b[j+4] & 63; for j >= 4, sc = (b[j+4] & 15) | (b[j-4] >> 6)
 * << 4 and m = (b[j+4] >> 4) | (b[j] >> 6) << 4. Element value x = d*sc*q - dmin*m.
 * Chunk c (elements 64c..64c+63) is qs[32c..32c+31]: the low nibbles are elements 64c..,
 * the high nibbles 64c+32... Q5_K adds bit 2c (low nibble) or 2c+1 (high nibble) of
 * qh[l] as the code's fifth bit. */
static inline void k4_scales(const uint8_t b[12], uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, b, 4);
    memcpy(&u1, b + 4, 4);
    memcpy(&u2, b + 8, 4);
    const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *sc = (u0 & 0x3f3f3f3fu) | ((uint64_t)sc_hi << 32);
    *mn = (u1 & 0x3f3f3f3fu) | ((uint64_t)mn_hi << 32);
}

/* Scale j as a word in both lanes, words 0..7. */
static inline __m256i k4_scale_words(uint64_t sc) {
    return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
}

/* One chunk of Q4_K/Q5_K given its unpacked codes lo (elements 64c..) and hi (64c+32..). */
static inline __m256i k4_chunk(__m256i lo, __m256i hi, const int8_t *q8, __m256i scw, int c) {
    __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
    __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
    plo = _mm256_madd_epi16(plo, _mm256_shuffle_epi8(scw, word_bcast(2 * c)));
    phi = _mm256_madd_epi16(phi, _mm256_shuffle_epi8(scw, word_bcast(2 * c + 1)));
    return _mm256_add_epi32(plo, phi);
}

float rl__vec_dot_q4_K_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        uint64_t sc, mn;
        k4_scales(x[i].scales, &sc, &mn);
        const __m256i scw = k4_scale_words(sc);
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 4; c++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            const __m256i lo = _mm256_and_si256(b, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            sum = _mm256_add_epi32(sum, k4_chunk(lo, hi, y[i].qs + 64 * c, scw, c));
        }
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i msum = _mm256_madd_epi16(bs, dup8_epu8_epi16(mn));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(fp16_f32(x[i].d) * y[i].d),
                              acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum),
                              _mm256_set1_ps(-(fp16_f32(x[i].dmin) * y[i].d)), acc);
    }
    return hsum_ps256(acc);
}

/* Shift left by s (s >= 0) or right by -s, 16-bit lanes. */
static inline __m256i shift_epi16(__m256i v, int s) {
    return s >= 0 ? _mm256_slli_epi16(v, s) : _mm256_srli_epi16(v, -s);
}

float rl__vec_dot_q5_K_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m16 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        uint64_t sc, mn;
        k4_scales(x[i].scales, &sc, &mn);
        const __m256i scw = k4_scale_words(sc);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 4; c++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            /* bit 2c (2c+1) of qh to bit 4; the kept bit never crosses a byte. */
            const __m256i hlo = _mm256_and_si256(shift_epi16(qh, 4 - 2 * c), m16);
            const __m256i hhi = _mm256_and_si256(shift_epi16(qh, 3 - 2 * c), m16);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(b, m4), hlo);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4), hhi);
            sum = _mm256_add_epi32(sum, k4_chunk(lo, hi, y[i].qs + 64 * c, scw, c));
        }
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i msum = _mm256_madd_epi16(bs, dup8_epu8_epi16(mn));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(fp16_f32(x[i].d) * y[i].d),
                              acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum),
                              _mm256_set1_ps(-(fp16_f32(x[i].dmin) * y[i].d)), acc);
    }
    return hsum_ps256(acc);
}

/* ---- 16-element sub-blocks: Q2_K, Q3_K, Q6_K -------------------------------------------
 * Q2_K: scales[k] holds the 4-bit scale (low nibble) and min (high nibble) of sub-block k.
 * Element 128h + 32j + l (h < 2, j < 4, l < 32) is (qs[32h + l] >> 2j) & 3;
 * x = d*sc*q - dmin*m. */
float rl__vec_dot_q2_K_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4x = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m128i s = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i sc_eo = even_odd_epi16(_mm_and_si128(s, m4x));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4x));
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const int8_t *q8 = y[i].qs + 128 * h;
#pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const __m256i w = _mm256_and_si256(_mm256_srli_epi16(b, 2 * j), m3);
                sum = _mm256_add_epi32(sum, dot32_sc(w, q8 + 32 * j, sc_eo, 4 * h + j));
            }
        }
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i msum = _mm256_madd_epi16(bs, mn16);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(fp16_f32(x[i].d) * y[i].d),
                              acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum),
                              _mm256_set1_ps(-(fp16_f32(x[i].dmin) * y[i].d)), acc);
    }
    return hsum_ps256(acc);
}

/* Q3_K: 16 signed 6-bit scales (stored + 32) in 12 bytes b: the low 4 bits of scale k are
 * the low nibble of b[k] (k < 8) or the high nibble of b[k-8]; the top 2 bits are bits
 * 2(k/4)..2(k/4)+1 of b[8 + k%4]. Element 128h + 32j + l has the low bits
 * (qs[32h + l] >> 2j) & 3 and the high bit (hmask[l] >> (4h + j)) & 1; its value is
 * d*(sc-32)*(code - 4) with code = low | high << 2 in 0..7. Returns the 16 scales - 32. */
static inline __m128i q3k_scales(const uint8_t b[12]) {
    uint32_t a0, a1, a2;
    memcpy(&a0, b, 4);
    memcpy(&a1, b + 4, 4);
    memcpy(&a2, b + 8, 4);
    const uint32_t s0 = (a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4);
    const uint32_t s1 = (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4);
    const uint32_t s2 = ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4);
    const uint32_t s3 = ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4);
    return _mm_sub_epi8(_mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3), _mm_set1_epi8(32));
}

float rl__vec_dot_q3_K_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i m4b = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m128i s8 = q3k_scales(x[i].scales);
        const __m256i sc_eo = even_odd_epi16(s8);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const int8_t *q8 = y[i].qs + 128 * h;
#pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                /* bit 4h + j of hmask to bit 2 */
                const __m256i hb = _mm256_and_si256(shift_epi16(hm, 2 - 4 * h - j), m4b);
                const __m256i w =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 2 * j), m3), hb);
                sum = _mm256_add_epi32(sum, dot32_sc(w, q8 + 32 * j, sc_eo, 4 * h + j));
            }
        }
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(s8)), 2);
        sum = _mm256_sub_epi32(sum, off);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(fp16_f32(x[i].d) * y[i].d),
                              acc);
    }
    return hsum_ps256(acc);
}

/* Q6_K: 16 int8 scales. For h < 2 and l < 32, with L = ql + 64h and H = qh + 32h:
 * element 128h + l      = (L[l] & 15)      | (H[l] & 3) << 4,
 *         128h + 32 + l = (L[32 + l] & 15) | (H[l] >> 2 & 3) << 4,
 *         128h + 64 + l = (L[l] >> 4)      | (H[l] >> 4 & 3) << 4,
 *         128h + 96 + l = (L[32 + l] >> 4) | (H[l] >> 6 & 3) << 4;
 * x = d*sc*(code - 32). */
float rl__vec_dot_q6_K_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m128i s8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i sc_eo = even_odd_epi16(s8);
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const int8_t *q8 = y[i].qs + 128 * h;
            const __m256i w0 = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            const __m256i w1 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            const __m256i w2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                               _mm256_and_si256(hb, m30));
            const __m256i w3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            sum = _mm256_add_epi32(sum, dot32_sc(w0, q8, sc_eo, 4 * h));
            sum = _mm256_add_epi32(sum, dot32_sc(w1, q8 + 32, sc_eo, 4 * h + 1));
            sum = _mm256_add_epi32(sum, dot32_sc(w2, q8 + 64, sc_eo, 4 * h + 2));
            sum = _mm256_add_epi32(sum, dot32_sc(w3, q8 + 96, sc_eo, 4 * h + 3));
        }
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(s8)), 5);
        sum = _mm256_sub_epi32(sum, off);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(fp16_f32(x[i].d) * y[i].d),
                              acc);
    }
    return hsum_ps256(acc);
}

/* ---- IQ4_NL / IQ4_XS ---------------------------------------------------------------------
 * The 16 values (kvalues_iq4nl of ggml-common.h, MIT licence; see NOTICE), in both lanes. */
static const int8_t k_iq4_values[32] __attribute__((aligned(32))) = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* Signed values v times activations y: int16 pairs, exact (see the file comment). */
static inline __m256i mul_signed(__m256i v, __m256i yy) {
    return _mm256_maddubs_epi16(_mm256_abs_epi8(yy), _mm256_sign_epi8(v, yy));
}

/* IQ4_XS: 8 sub-blocks of 32; 6-bit scale ls[ib] = (scales_l[ib/2] >> 4(ib%2) & 15) |
 * (scales_h >> 2ib & 3) << 4; sub-block ib is qs[16ib..16ib+15], low nibbles first, then
 * high nibbles; x = d*(ls - 32)*kvalues[code]. Two sub-blocks per step, one per lane. */
float rl__vec_dot_iq4_xs_avx2(int64_t n, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i tbl = _mm256_load_si256((const __m256i *)k_iq4_values);
    const __m128i eo = _mm_setr_epi8(0, 2, 4, 6, -1, -1, -1, -1, 1, 3, 5, 7, -1, -1, -1, -1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        uint32_t sl;
        memcpy(&sl, x[i].scales_l, 4);
        const uint64_t ls =
            _pdep_u64(sl, 0x0f0f0f0f0f0f0f0full) | _pdep_u64(x[i].scales_h, 0x3030303030303030ull);
        const __m128i ls8 = _mm_sub_epi8(_mm_cvtsi64_si128((long long)ls), _mm_set1_epi8(32));
        /* word m of the low lane: ls[2m] - 32; of the high lane: ls[2m + 1] - 32 */
        const __m256i ls_eo = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(ls8, eo));
        const int8_t *q8 = y[i].qs;
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int m = 0; m < 4; m++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * m));
            const __m256i vl = _mm256_shuffle_epi8(tbl, _mm256_and_si256(b, m4));
            const __m256i vh =
                _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(b, 4), m4));
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(q8 + 64 * m));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(q8 + 64 * m + 32));
            const __m256i ylo = _mm256_permute2x128_si256(y0, y1, 0x20);
            const __m256i yhi = _mm256_permute2x128_si256(y0, y1, 0x31);
            const __m256i s = _mm256_shuffle_epi8(ls_eo, word_bcast(m));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(mul_signed(vl, ylo), s));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(mul_signed(vh, yhi), s));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(fp16_f32(x[i].d) * y[i].d),
                              acc);
    }
    return hsum_ps256(acc);
}

/* IQ4_NL: blocks of 32 against Q8_0; qs low nibbles are elements 0..15, high nibbles
 * 16..31; x = d*kvalues[code]. Two blocks per step, one per 128-bit lane: the low-nibble
 * values of both blocks meet the first 16 activations of each, the high-nibble values
 * the last 16. */
float rl__vec_dot_iq4_nl_avx2(int64_t n, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_NL;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i tbl = _mm256_load_si256((const __m256i *)k_iq4_values);
    const __m256i sel01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const __m256i q = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)x[i].qs)),
            _mm_loadu_si128((const __m128i *)x[i + 1].qs), 1);
        const __m256i vl = _mm256_shuffle_epi8(tbl, _mm256_and_si256(q, m4));
        const __m256i vh = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        const __m256i ya = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256i yb = _mm256_loadu_si256((const __m256i *)y[i + 1].qs);
        const __m256i ylo = _mm256_permute2x128_si256(ya, yb, 0x20);
        const __m256i yhi = _mm256_permute2x128_si256(ya, yb, 0x31);
        const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(mul_signed(vl, ylo), ones),
                                           _mm256_madd_epi16(mul_signed(vh, yhi), ones));
        /* [dxa, dxb, dya, dyb] -> dxa*dya in lanes 0..3, dxb*dyb in lanes 4..7 */
        const __m128 f = _mm_cvtph_ps(_mm_setr_epi16((short)x[i].d, (short)x[i + 1].d,
                                                     (short)y[i].d, (short)y[i + 1].d, 0, 0, 0, 0));
        const __m256 d = _mm256_permutevar8x32_ps(
            _mm256_castps128_ps256(_mm_mul_ps(f, _mm_movehl_ps(f, f))), sel01);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    float sum = hsum_ps256(acc);
    if (i < nb) {
        const __m128i q = _mm_loadu_si128((const __m128i *)x[i].qs);
        const __m256i b = _mm256_and_si256(
            _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1), m4);
        const __m256i yy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256i s = _mm256_madd_epi16(mul_signed(_mm256_shuffle_epi8(tbl, b), yy), ones);
        sum += hsum_ps256(_mm256_cvtepi32_ps(s)) * (fp16_f32(x[i].d) * fp16_f32(y[i].d));
    }
    return sum;
}
