/*
 * dot_k_avx512.c - AVX-512 (F/BW/VL + VNNI) dot products of the k-quants Q2_K..Q6_K and
 * IQ4_XS with Q8_K activations, and of IQ4_NL with Q8_0 activations.
 *
 * The block formats are ggml's (blocks.h; each kernel restates the part it decodes).
 * The scheme shared by the k-quants:
 *  - the weight codes of 64 consecutive elements are unpacked with shifts and masks into
 *    one zmm of unsigned bytes (0..63) in element order, so that they line up with one
 *    plain 64-byte load of the int8 activations;
 *  - vpdpbusd multiplies codes by activations and sums each 4 products into an int32
 *    (|sum| <= 4*63*128 < 2^15); vpackssdw packs two such zmm into int16 words (no
 *    saturation), and vpdpwssd multiplies the words by their sub-block scales (spread over
 *    the words with vpermw) and accumulates int32: 1.5 multiplies per 64 elements;
 *  - the constant offsets that make the codes unsigned (-32 in Q6_K, -4 in Q3_K) and the
 *    sub-block minimums (Q2_K, Q4_K, Q5_K) are folded in once per super-block through the
 *    Q8_K bsums (sums of 16 activations): sum(s*(q-o)*y) = sum(s*q*y) - o*sum(s*bsum);
 *  - the int32 super-block sum is exact; one float FMA per super-block applies d_x*d_y.
 * IQ4_NL/IQ4_XS codes index a signed 16-entry table; these kernels look up value+128
 * (unsigned) with vpshufb, multiply with vpdpbusd and subtract 128*sum(y), which is exact
 * for every int8 activation. Results equal the plain-C references up to the order of the
 * float additions.
 */
#include "cpu.h"

#include <immintrin.h>

static inline float fp16_f32(rl_fp16 h) { return _cvtsh_ss(h); }

/* Software prefetch of the weights KPF_DIST bytes ahead: each kernel touches, per block,
 * one address every 64 bytes of the block's span from KPF_DIST past its start, so the
 * addresses of consecutive blocks are at most 64 bytes apart and every line of the rows
 * that follow is asked for once or twice. A matvec streams its rows one after the other
 * (rl_matmul gives each thread contiguous rows), and a core's hardware prefetchers alone
 * keep it well under its share of the bandwidth, more so through the 4 KiB pages of a
 * model's file mapping (they stop at page boundaries). Measured on a 2-core AMD EPYC VM
 * (Zen 5), the Q4_K_M 1B model's decode products one after the other, one thread, same
 * minute: rl_matmul's per-row prefetch 2048 bytes ahead 33.3 GB/s, 8192 ahead 34.0; this
 * one 4096 ahead 36.0, 8192 38.8, 12288 38.7. Q4_K 256 MiB, huge pages, one thread: 28.6
 * -> 41.9 GB/s. Two threads in a quiet minute (bandwidth ~75 GB/s): the same products
 * 50.1-51.2 -> 58.1-58.7 GB/s, the model's tg32 60.0 -> 67.8 tok/s; 16384 bytes ahead or an
 * extra prefetch per 4 KiB page further ahead did no better. */
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

/* The k-quant sums go through int16: vpdpbusd gives one int32 per 4 consecutive elements
 * (|sum| <= 4*63*128 < 2^15), vpackssdw packs the dwords of two zmm into words without
 * saturating, and vpdpwssd multiplies adjacent word pairs (same sub-block) by the scale.
 * After packing zmm a (elements 0..63 of a 128-element half) with zmm b (64..127), the
 * words of 128-bit lane L are: 0..3 from lane L of a, 4..7 from lane L of b. The vpermw
 * indices below place the matching scale in each word: for 16-element sub-blocks
 * (k16_pack[p], half p) scale 8p + L, then 8p + 4 + L; for 32-element sub-blocks
 * (k32_pack[p]) scale 4p + L/2, then 4p + 2 + L/2. */
#define R4(v) v, v, v, v
static const uint16_t k16_pack[2][32] __attribute__((aligned(64))) = {
    {R4(0), R4(4), R4(1), R4(5), R4(2), R4(6), R4(3), R4(7)},
    {R4(8), R4(12), R4(9), R4(13), R4(10), R4(14), R4(11), R4(15)},
};
static const uint16_t k32_pack[2][32] __attribute__((aligned(64))) = {
    {R4(0), R4(2), R4(0), R4(2), R4(1), R4(3), R4(1), R4(3)},
    {R4(4), R4(6), R4(4), R4(6), R4(5), R4(7), R4(5), R4(7)},
};
#undef R4

/* The IQ4_NL/IQ4_XS values (kvalues_iq4nl of ggml-common.h, MIT licence; see NOTICE)
 * plus 128, as unsigned bytes: -127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38 53 69 89 113. */
static const uint8_t k_iq4_u8[16] __attribute__((aligned(16))) = {
    1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241,
};

static inline __m512i load_perm(const uint16_t p[32]) { return _mm512_load_si512(p); }

/* Two 32-byte halves into one zmm: a in bytes 0..31, b in bytes 32..63. */
static inline __m512i join256(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* 8 signed bytes, each duplicated, as 16 int16: lines a per-32-element value up with the
 * two bsums of its sub-block. */
static inline __m256i dup8_epi8_epi16(__m128i b) {
    return _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(b, b));
}

/* (a & c) | b and a | (b & c), bytewise, as vpternlogd immediates
 * (a = 0xf0, b = 0xcc, c = 0xaa). */
#define TL_AC_OR_B 0xec
#define TL_A_OR_BC 0xf8

/* Code bytes w (element order) times the activations at q8: 16 int32, each the sum of 4
 * consecutive products. */
static inline __m512i dot4(__m512i w, const int8_t *q8) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(q8));
}

/* sum over the four 64-element parts r0..r3 of a super-block of scale * part, with the
 * scale words sa (for r0, r1) and sb (r2, r3) laid out as described above. */
static inline __m512i scale_sum(__m512i r0, __m512i r1, __m512i r2, __m512i r3, __m512i sa,
                                __m512i sb) {
    const __m512i s = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(r0, r1), sa);
    return _mm512_dpwssd_epi32(s, _mm512_packs_epi32(r2, r3), sb);
}

/* ---- Q4_K / Q5_K ---------------------------------------------------------------------
 * 8 sub-blocks of 32 elements; 6-bit scale sc[j] and min m[j] packed in 12 bytes b: for
 * j < 4, sc = b[j] & 63 and m = b[j+4] & 63; for j >= 4, sc = (b[j+4] & 15) | (b[j-4] >> 6)
 * << 4 and m = (b[j+4] >> 4) | (b[j] >> 6) << 4. Element value x = d*sc*q - dmin*m.
 * Chunk c (elements 64c..64c+63) is qs[32c..32c+31]: the low nibbles are elements 64c..,
 * the high nibbles 64c+32... Q5_K adds bit 2c (low nibble) or 2c+1 (high nibble) of
 * qh[l] as the code's fifth bit. */
static inline __m512i k4_nibbles(const uint8_t *qs, int c, __m512i m4) {
    const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
    return _mm512_and_si512(_mm512_mask_srli_epi16(b, 0xffff0000u, b, 4), m4);
}

/* The 8 scales and 8 mins as words 0..7 and 8..15, from the 12 bytes at b (16 bytes are
 * read; the 4 after the scales are the block's next field). With the bytes
 * P = [b0..3, b8..11, b4..7, b8..11] (the last four shifted right by 4) and
 * Q = [0, b0..3, 0, b4..7]: words = (P & [63, 15, 63, 15]) | ((Q >> 2) & 0x30). */
typedef struct k4_consts {
    __m128i ctl_p, ctl_q, cnt_p, m_p, m30;
} k4_consts;

static inline k4_consts k4_consts_init(void) {
    k4_consts k;
    k.ctl_p = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
    k.ctl_q = _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7);
    k.cnt_p = _mm_setr_epi16(0, 0, 0, 0, 0, 0, 4, 4);
    k.m_p = _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15);
    k.m30 = _mm_set1_epi8(0x30);
    return k;
}

static inline __m256i k4_scale_min_words(const uint8_t *b, const k4_consts *k) {
    const __m128i v = _mm_loadu_si128((const __m128i *)b);
    const __m128i p = _mm_srlv_epi16(_mm_shuffle_epi8(v, k->ctl_p), k->cnt_p);
    const __m128i q = _mm_and_si128(_mm_srli_epi16(_mm_shuffle_epi8(v, k->ctl_q), 2), k->m30);
    return _mm256_cvtepu8_epi16(_mm_ternarylogic_epi32(p, k->m_p, q, 0xea)); /* (a&b)|c */
}

/* [d*yd, dmin*yd] for a block whose fp16 d and dmin are adjacent at dd. */
static inline __m128 k_d_dmin(const rl_fp16 *dd, float yd) {
    uint32_t u;
    memcpy(&u, dd, 4);
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)u)), _mm_set1_ps(yd));
}

/* vpermw index that puts min j (word 8 + j) next to both bsums of sub-block j. */
static inline __m256i k4_min_dup(void) {
    return _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
}

float rl__vec_dot_q4_K_avx512(int64_t n, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i pa = load_perm(k32_pack[0]), pb = load_perm(k32_pack[1]);
    const __m256i mdup = k4_min_dup();
    const k4_consts kc = k4_consts_init();
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m256i sm = k4_scale_min_words(x[i].scales, &kc);
        const __m512i scw = _mm512_castsi256_si512(sm);
        const int8_t *q8 = y[i].qs;
        const __m512i r0 = dot4(k4_nibbles(x[i].qs, 0, m4), q8);
        const __m512i r1 = dot4(k4_nibbles(x[i].qs, 1, m4), q8 + 64);
        const __m512i r2 = dot4(k4_nibbles(x[i].qs, 2, m4), q8 + 128);
        const __m512i r3 = dot4(k4_nibbles(x[i].qs, 3, m4), q8 + 192);
        const __m512i sum = scale_sum(r0, r1, r2, r3, _mm512_permutexvar_epi16(pa, scw),
                                      _mm512_permutexvar_epi16(pb, scw));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i msum = _mm256_madd_epi16(bs, _mm256_permutexvar_epi16(mdup, sm));
        const __m128 dm = k_d_dmin(&x[i].d, y[i].d);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(dm), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_broadcastss_ps(_mm_movehdup_ps(dm)),
                               accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum_ps256(accm);
}

float rl__vec_dot_q5_K_avx512(int64_t n, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m16 = _mm512_set1_epi8(0x10);
    const __m512i pa = load_perm(k32_pack[0]), pb = load_perm(k32_pack[1]);
    const __m256i mdup = k4_min_dup();
    const k4_consts kc = k4_consts_init();
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m256i sm = k4_scale_min_words(x[i].scales, &kc);
        const __m512i scw = _mm512_castsi256_si512(sm);
        const int8_t *q8 = y[i].qs;
        /* Bit 2c+1 of each byte of hb is the fifth bit of chunk c: the low half holds
         * qh << 1 (bit 2c of qh, low nibbles), the high half qh (bit 2c+1, high nibbles).
         * Shifting it to bit 4 stays inside the byte for the bits that are kept. */
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x[i].qh));
        const __m512i hb = _mm512_mask_slli_epi16(qh, 0x0000ffffu, qh, 1);
#define Q5K_CODES(c, h5) _mm512_ternarylogic_epi32(k4_nibbles(x[i].qs, c, m4), h5, m16, TL_A_OR_BC)
        const __m512i r0 = dot4(Q5K_CODES(0, _mm512_slli_epi16(hb, 3)), q8);
        const __m512i r1 = dot4(Q5K_CODES(1, _mm512_slli_epi16(hb, 1)), q8 + 64);
        const __m512i r2 = dot4(Q5K_CODES(2, _mm512_srli_epi16(hb, 1)), q8 + 128);
        const __m512i r3 = dot4(Q5K_CODES(3, _mm512_srli_epi16(hb, 3)), q8 + 192);
#undef Q5K_CODES
        const __m512i sum = scale_sum(r0, r1, r2, r3, _mm512_permutexvar_epi16(pa, scw),
                                      _mm512_permutexvar_epi16(pb, scw));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i msum = _mm256_madd_epi16(bs, _mm256_permutexvar_epi16(mdup, sm));
        const __m128 dm = k_d_dmin(&x[i].d, y[i].d);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(dm), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_broadcastss_ps(_mm_movehdup_ps(dm)),
                               accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum_ps256(accm);
}

/* ---- 16-element sub-blocks: Q2_K, Q3_K, Q6_K -------------------------------------------
 * 16 scales per super-block, one per 16 elements, as words 0..15 of scw. */

/* Q2_K / Q3_K low bits: the 2-bit fields of qs[32h..32h+31] as codes of elements
 * 128h..128h+63 (lo: fields 0, 1) and 128h+64..128h+127 (hi: fields 2, 3). */
static inline void k2_fields(const uint8_t *qs, int h, __m512i m3, __m512i *lo, __m512i *hi) {
    const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * h)));
    const __m512i bz = _mm512_mask_srli_epi16(b, 0xffff0000u, b, 2);
    *lo = _mm512_and_si512(bz, m3);
    *hi = _mm512_and_si512(_mm512_srli_epi16(bz, 4), m3);
}

/* d * yd in all 16 lanes. */
static inline __m512 bcast_d(const rl_fp16 *d, float yd) {
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16((short)*d)), _mm512_set1_ps(yd));
}

/* Q2_K: scales[k] holds the 4-bit scale (low nibble) and min (high nibble) of sub-block k.
 * Element 128h + 32j + l (h < 2, j < 4, l < 32) is (qs[32h + l] >> 2j) & 3;
 * x = d*sc*q - dmin*m. */
float rl__vec_dot_q2_K_avx512(int64_t n, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m128i m4x = _mm_set1_epi8(0x0f);
    const __m512i pa = load_perm(k16_pack[0]), pb = load_perm(k16_pack[1]);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m128i s = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m512i scw = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(s, m4x)));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4x));
        const int8_t *q8 = y[i].qs;
        __m512i w0, w1, w2, w3;
        k2_fields(x[i].qs, 0, m3, &w0, &w1);
        k2_fields(x[i].qs, 1, m3, &w2, &w3);
        const __m512i sum =
            scale_sum(dot4(w0, q8), dot4(w1, q8 + 64), dot4(w2, q8 + 128), dot4(w3, q8 + 192),
                      _mm512_permutexvar_epi16(pa, scw), _mm512_permutexvar_epi16(pb, scw));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i msum = _mm256_madd_epi16(bs, mn16);
        const __m128 dm = k_d_dmin(&x[i].d, y[i].d);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(dm), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_broadcastss_ps(_mm_movehdup_ps(dm)),
                               accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum_ps256(accm);
}

/* Q3_K: 16 signed 6-bit scales (stored + 32) in 12 bytes b: the low 4 bits of scale k are
 * the low nibble of b[k] (k < 8) or the high nibble of b[k-8]; the top 2 bits are bits
 * 2(k/4)..2(k/4)+1 of b[8 + k%4]. Element 128h + 32j + l has the low bits
 * (qs[32h + l] >> 2j) & 3 and the high bit (hmask[l] >> (4h + j)) & 1; its value is
 * d*(sc-32)*(code - 4) with code = low | high << 2 in 0..7. Returns the 16 scales - 32. */
static inline __m128i q3k_scales(const uint8_t b[12]) {
    /* 16 bytes ending with the scales (the 4 before them are the end of qs): b[k] is byte
     * k + 4. Low 4 bits: bytes 0..7 low nibbles, then high nibbles; top 2 bits: bytes
     * 8..11 shifted right by 0, 2, 4, 6 for k/4 = 0..3. */
    const __m128i v = _mm_loadu_si128((const __m128i *)(b - 4));
    const __m128i ctl_lo = _mm_setr_epi8(4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
    const __m128i ctl_hi =
        _mm_setr_epi8(12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15);
    const __m128i cnt_lo = _mm_setr_epi16(0, 0, 0, 0, 4, 4, 4, 4);
    const __m128i cnt_hi = _mm_setr_epi16(0, 0, 2, 2, 4, 4, 6, 6);
    const __m128i lo =
        _mm_and_si128(_mm_srlv_epi16(_mm_shuffle_epi8(v, ctl_lo), cnt_lo), _mm_set1_epi8(0x0f));
    const __m128i hi =
        _mm_and_si128(_mm_srlv_epi16(_mm_shuffle_epi8(v, ctl_hi), cnt_hi), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

float rl__vec_dot_q3_K_avx512(int64_t n, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i m4b = _mm512_set1_epi8(4);
    const __m512i pa = load_perm(k16_pack[0]), pb = load_perm(k16_pack[1]);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3k_scales(x[i].scales));
        const __m512i scw = _mm512_castsi256_si512(sc16);
        const int8_t *q8 = y[i].qs;
        /* Bit 4h + 2p of each byte of hb is the high bit of the codes w(2h + p): the low
         * half holds hmask (j = 2p), the high half hmask >> 1 (j = 2p + 1). */
        const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x[i].hmask));
        const __m512i hb = _mm512_mask_srli_epi16(hm, 0xffff0000u, hm, 1);
        __m512i w0, w1, w2, w3;
        k2_fields(x[i].qs, 0, m3, &w0, &w1);
        k2_fields(x[i].qs, 1, m3, &w2, &w3);
        w0 = _mm512_ternarylogic_epi32(w0, _mm512_slli_epi16(hb, 2), m4b, TL_A_OR_BC);
        w1 = _mm512_ternarylogic_epi32(w1, hb, m4b, TL_A_OR_BC);
        w2 = _mm512_ternarylogic_epi32(w2, _mm512_srli_epi16(hb, 2), m4b, TL_A_OR_BC);
        w3 = _mm512_ternarylogic_epi32(w3, _mm512_srli_epi16(hb, 4), m4b, TL_A_OR_BC);
        __m512i sum =
            scale_sum(dot4(w0, q8), dot4(w1, q8 + 64), dot4(w2, q8 + 128), dot4(w3, q8 + 192),
                      _mm512_permutexvar_epi16(pa, scw), _mm512_permutexvar_epi16(pb, scw));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 2); /* 4*sc*bsum */
        sum = _mm512_sub_epi32(sum, _mm512_zextsi256_si512(off));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), bcast_d(&x[i].d, y[i].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Q6_K: 16 int8 scales. For h < 2 and l < 32, with L = ql + 64h and H = qh + 32h:
 * element 128h + l      = (L[l] & 15)      | (H[l] & 3) << 4,
 *         128h + 32 + l = (L[32 + l] & 15) | (H[l] >> 2 & 3) << 4,
 *         128h + 64 + l = (L[l] >> 4)      | (H[l] >> 4 & 3) << 4,
 *         128h + 96 + l = (L[32 + l] >> 4) | (H[l] >> 6 & 3) << 4;
 * x = d*sc*(code - 32). Codes of elements 128h.. (lo) and 128h+64.. (hi): */
static inline void q6k_codes(const block_q6_K *b, int h, __m512i m4, __m512i m30, __m512i *lo,
                             __m512i *hi) {
    const __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
    const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
    /* hz: qh in the low half, qh >> 2 in the high half; bits 0-1 of each byte are the
     * top bits of lo, bits 4-5 those of hi. */
    const __m512i hz = _mm512_mask_srli_epi16(q, 0xffff0000u, q, 2);
    const __m512i hlo = _mm512_and_si512(_mm512_slli_epi16(hz, 4), m30);
    const __m512i hhi = _mm512_and_si512(hz, m30);
    *lo = _mm512_ternarylogic_epi32(l, hlo, m4, TL_AC_OR_B);
    *hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), hhi, m4, TL_AC_OR_B);
}

float rl__vec_dot_q6_K_avx512(int64_t n, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i pa = load_perm(k16_pack[0]), pb = load_perm(k16_pack[1]);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m512i scw = _mm512_castsi256_si512(sc16);
        const int8_t *q8 = y[i].qs;
        __m512i w0, w1, w2, w3;
        q6k_codes(&x[i], 0, m4, m30, &w0, &w1);
        q6k_codes(&x[i], 1, m4, m30, &w2, &w3);
        __m512i sum =
            scale_sum(dot4(w0, q8), dot4(w1, q8 + 64), dot4(w2, q8 + 128), dot4(w3, q8 + 192),
                      _mm512_permutexvar_epi16(pa, scw), _mm512_permutexvar_epi16(pb, scw));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5); /* 32*sc*bsum */
        sum = _mm512_sub_epi32(sum, _mm512_zextsi256_si512(off));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), bcast_d(&x[i].d, y[i].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* ---- IQ4_XS ------------------------------------------------------------------------------
 * 8 sub-blocks of 32; 6-bit scale ls[ib] = (scales_l[ib/2] >> 4(ib%2) & 15) |
 * (scales_h >> 2ib & 3) << 4; sub-block ib is qs[16ib..16ib+15], low nibbles first, then
 * high nibbles; x = d*(ls - 32)*kvalues[code]. */
float rl__vec_dot_iq4_xs_avx512(int64_t n, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)k_iq4_u8));
    /* Interleave the low- and high-nibble values of sub-blocks a, b into element order. */
    const __m512i ilv0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i ilv1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    /* vpermd indices: sub-block 2m in dwords 0..7, 2m + 1 in 8..15. */
    const __m512i sel0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i two = _mm512_set1_epi32(2);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        kpf(&x[i], (int)sizeof x[i]);
        uint32_t sl;
        memcpy(&sl, x[i].scales_l, 4);
        const uint64_t ls =
            _pdep_u64(sl, 0x0f0f0f0f0f0f0f0full) | _pdep_u64(x[i].scales_h, 0x3030303030303030ull);
        const __m128i ls8 = _mm_sub_epi8(_mm_cvtsi64_si128((long long)ls), _mm_set1_epi8(32));
        const __m512i ls32 = _mm512_castsi256_si512(_mm256_cvtepi8_epi32(ls8));
        const int8_t *q8 = y[i].qs;
        __m512i sum = _mm512_setzero_si512();
        __m512i sel = sel0;
        for (int m = 0; m < 2; m++) {
            const __m512i b = _mm512_loadu_si512(x[i].qs + 64 * m);
            const __m512i vl = _mm512_shuffle_epi8(tbl, _mm512_and_si512(b, m4));
            const __m512i vh =
                _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(b, 4), m4));
            const __m512i v0 = _mm512_permutex2var_epi64(vl, ilv0, vh);
            const __m512i v1 = _mm512_permutex2var_epi64(vl, ilv1, vh);
            const __m512i d0 =
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), v0, _mm512_loadu_si512(q8 + 128 * m));
            sum =
                _mm512_add_epi32(sum, _mm512_mullo_epi32(d0, _mm512_permutexvar_epi32(sel, ls32)));
            sel = _mm512_add_epi32(sel, two);
            const __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v1,
                                                   _mm512_loadu_si512(q8 + 128 * m + 64));
            sum =
                _mm512_add_epi32(sum, _mm512_mullo_epi32(d1, _mm512_permutexvar_epi32(sel, ls32)));
            sel = _mm512_add_epi32(sel, two);
        }
        /* The table is offset by 128: subtract 128 * sum_ib (ls - 32) * sum(y of ib). */
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, dup8_epi8_epi16(ls8)), 7);
        sum = _mm512_sub_epi32(sum, _mm512_zextsi256_si512(off));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), bcast_d(&x[i].d, y[i].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* ---- IQ4_NL ------------------------------------------------------------------------------
 * Blocks of 32 against Q8_0: qs low nibbles are elements 0..15, high nibbles 16..31;
 * x = d*kvalues[code]. Four blocks per step: the four qs go into one zmm, the values of
 * the low and high nibbles are interleaved back into element order (two blocks per zmm)
 * to line up with the activations of two blocks loaded back to back. The eight fp16
 * scales are picked out of the blocks with vpermw. */
static inline __m256i iq4nl_one(const block_iq4_nl *x, const block_q8_0 *y, __m256i tbl,
                                __m256i c128) {
    const __m128i q = _mm_loadu_si128((const __m128i *)x->qs);
    const __m256i b = _mm256_and_si256(
        _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1),
        _mm256_set1_epi8(0x0f));
    const __m256i v = _mm256_shuffle_epi8(tbl, b);
    const __m256i yy = _mm256_loadu_si256((const __m256i *)y->qs);
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), v, yy),
                            _mm256_dpbusd_epi32(_mm256_setzero_si256(), c128, yy));
}

float rl__vec_dot_iq4_nl_avx512(int64_t n, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_NL;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)k_iq4_u8));
    const __m512i ilv0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i ilv1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    /* word indices of d in four consecutive blocks: x (18-byte blocks) in its first 64
     * bytes, y (34-byte blocks) in its first 128 */
    const __m512i ixd =
        _mm512_setr_epi32(0 | 9 << 16, 18 | 27 << 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i iyd =
        _mm512_setr_epi32(0 | 17 << 16, 34 | 51 << 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i sel01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i sel23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) {
        __m512i q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)x[i].qs));
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)x[i + 1].qs), 1);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)x[i + 2].qs), 2);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)x[i + 3].qs), 3);
        const __m512i vl = _mm512_shuffle_epi8(tbl, _mm512_and_si512(q, m4));
        const __m512i vh = _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
        const __m512i v01 = _mm512_permutex2var_epi64(vl, ilv0, vh);
        const __m512i v23 = _mm512_permutex2var_epi64(vl, ilv1, vh);
        const __m512i y01 = join256(_mm256_loadu_si256((const __m256i *)y[i].qs),
                                    _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        const __m512i y23 = join256(_mm256_loadu_si256((const __m256i *)y[i + 2].qs),
                                    _mm256_loadu_si256((const __m256i *)y[i + 3].qs));
        /* values carry +128: subtract 128 * sum(y) per block */
        const __m512i t01 =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), v01, y01),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, y01));
        const __m512i t23 =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), v23, y23),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, y23));
        const __m512i xd = _mm512_permutexvar_epi16(ixd, _mm512_loadu_si512(&x[i]));
        const __m512i yd = _mm512_permutex2var_epi16(
            _mm512_loadu_si512(&y[i]), iyd, _mm512_loadu_si512((const uint8_t *)&y[i] + 64));
        const __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(
            _mm_cvtph_ps(_mm512_castsi512_si128(xd)), _mm_cvtph_ps(_mm512_castsi512_si128(yd))));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t01), _mm512_permutexvar_ps(sel01, d4), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t23), _mm512_permutexvar_ps(sel23, d4), acc1);
    }
    __m256 acct = _mm256_setzero_ps();
    for (; i < nb; i++) {
        const __m256i s =
            iq4nl_one(&x[i], &y[i], _mm512_castsi512_si256(tbl), _mm512_castsi512_si256(c128));
        acct = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
                               _mm256_set1_ps(fp16_f32(x[i].d) * fp16_f32(y[i].d)), acct);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + hsum_ps256(acct);
}
