/* The load-time repacked Q6_K layout (Q6_Kx16, src/backend/cpu/q6_kx16.h):
 *  - packing is a bijection of a matrix's bytes (rows in tiles of 32, the rest in the GGUF
 *    layout at their own offsets): unpack(pack(rows)) == rows, byte for byte, and the
 *    dequantization of a packed row equals that of the GGUF row;
 *  - the AVX-512 tile (1..8 tokens) equals the plain-C reference rl__vec_dot_q6_K_ref bit
 *    for bit, random blocks and the extreme ones (codes 0 or 63, scales -128/127,
 *    activations -128/127: the int32 sums' worst case);
 *  - rl_matmul over the packed copy: the tiles' rows equal the reference dot of the Q8_K
 *    activations bit for bit, the rows after the last tile equal rl_matmul over the GGUF
 *    rows, a batch equals its tokens one at a time (1..17, 24, 33 tokens; 1 and 2 threads);
 *    below AVX-512 the copy is ignored (GGUF results, bit for bit);
 *  - rl__cpu_pack_weights packs Q6_K weights of 32 rows or more, not with
 *    RUVLLM_CPU_REPACK_Q6K=0;
 *  - a model (tiny shape, Q4_K_M mix: Q6_K output and some ffn_down/attn_v) gives the same
 *    logits within float rounding with the Q6_K repack off and on, and RUVLLM_CPU_REPACK=0
 *    turns it off.
 */
#include "test.h"
#include "rng.h"
#include "model_logits.h"
#include "backend/backend.h"
#include "backend/cpu/q6_kx16.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t g_rng = 0x6b5eed0f4b10c4ull;
static uint64_t rnd64(void) { return rl_test_rand64(&g_rng); }
static float rnd_sym(void) { return (float)rl_test_rand_unit(&g_rng) * 2.0f - 1.0f; }

static size_t q6_row_bytes(int64_t n) { return (size_t)n / QK_K * sizeof(block_q6_K); }

/* rows x n of random Q6_K blocks: any codes and scales, d of both signs over a wide range. */
static uint8_t *random_q6_K(int64_t n, int64_t rows) {
    uint8_t *w = malloc(q6_row_bytes(n) * (size_t)rows);
    for (int64_t b = 0; b < n / QK_K * rows; b++) {
        block_q6_K *blk = (block_q6_K *)w + b;
        for (size_t j = 0; j < sizeof blk->ql; j++) blk->ql[j] = (uint8_t)rnd64();
        for (size_t j = 0; j < sizeof blk->qh; j++) blk->qh[j] = (uint8_t)rnd64();
        for (size_t j = 0; j < sizeof blk->scales; j++) blk->scales[j] = (int8_t)rnd64();
        blk->d = rl__fp32_to_fp16(rnd_sym() * ldexpf(1.0f, (int)(rnd64() % 12) - 14));
    }
    return w;
}

TEST(round_trip) {
    const struct {
        int64_t n, rows;
    } shapes[] = {{256, 32}, {512, 33}, {2048, 65}, {256, 5}, {768, 96}, {1024, 63}, {256, 16}};
    for (size_t k = 0; k < RL_ARRAY_LEN(shapes); k++) {
        const int64_t n = shapes[k].n, rows = shapes[k].rows;
        const size_t rb = q6_row_bytes(n), bytes = rb * (size_t)rows;
        uint8_t *w = random_q6_K(n, rows), *p = malloc(bytes), *u = malloc(bytes);
        rl__q6_kx16_pack(w, p, n, rows);
        rl__q6_kx16_unpack(p, u, n, rows);
        CHECKF(!memcmp(w, u, bytes), "n %lld rows %lld: unpack(pack) differs", (long long)n,
               (long long)rows);
        const int64_t tiled = rows / Q6_KX16_ROWS * Q6_KX16_ROWS;
        if (tiled) CHECK(memcmp(w, p, (size_t)tiled * rb) != 0); /* a different layout */
        CHECK(!memcmp(w + tiled * rb, p + tiled * rb, (size_t)(rows - tiled) * rb));
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
        for (int64_t r = 0; r < rows; r++) {
            rl__type_traits_get(RL_TYPE_Q6_K)->to_float(w + r * rb, a, n);
            rl__q6_kx16_to_float(p, n, rows, r, b);
            CHECKF(!memcmp(a, b, (size_t)n * 4), "n %lld row %lld: to_float differs",
                   (long long)n, (long long)r);
        }
        free(w), free(p), free(u), free(a), free(b);
    }
    CHECK(rl__q6_kx16_fits(RL_TYPE_Q6_K, 256) && rl__q6_kx16_fits(RL_TYPE_Q6_K, 8192));
    CHECK(!rl__q6_kx16_fits(RL_TYPE_Q6_K, 0) && !rl__q6_kx16_fits(RL_TYPE_Q4_K, 256));
}

/* The tile kernel on a tile of 32 rows x nt tokens of Q8_K rows vs the reference dot. */
static void check_tile(int64_t n, const uint8_t *w, const uint8_t *p, const block_q8_K *yq,
                       int nt, const char *what) {
    const size_t rb = q6_row_bytes(n), yst = (size_t)n / QK_K * sizeof(block_q8_K);
    float out[Q6_KX16_TOKS * 40];
    for (int t0 = 0; t0 + nt <= Q6_KX16_TOKS; t0 += nt) {
        memset(out, 0xff, sizeof out);
        rl__gemm_q6_kx16_avx512(n, nt, p, 0, (const uint8_t *)yq + (size_t)t0 * yst, yst, out, 40);
        for (int t = 0; t < nt; t++)
            for (int r = 0; r < Q6_KX16_ROWS; r++) {
                const uint8_t *yt = (const uint8_t *)yq + (size_t)(t0 + t) * yst;
                const float ref = rl__vec_dot_q6_K_ref(n, w + r * rb, yt);
                CHECKF(!memcmp(&ref, &out[t * 40 + r], 4),
                       "%s n %lld nt %d token %d row %d: %.9g != ref %.9g", what, (long long)n, nt,
                       t0 + t, r, out[t * 40 + r], ref);
            }
    }
}

TEST(tile_equals_reference) {
    if (!rl__cpu_isa_supported(RL_CPU_ISA_AVX512)) SKIP("no AVX-512 VNNI: no Q6_Kx16 kernel");
    const int64_t ns[] = {256, 512, 2048};
    for (size_t k = 0; k < RL_ARRAY_LEN(ns); k++) {
        const int64_t n = ns[k];
        uint8_t *w = random_q6_K(n, Q6_KX16_ROWS), *p = malloc(q6_row_bytes(n) * Q6_KX16_ROWS);
        rl__q6_kx16_pack(w, p, n, Q6_KX16_ROWS);
        float *x = malloc((size_t)n * Q6_KX16_TOKS * 4);
        for (int64_t i = 0; i < n * Q6_KX16_TOKS; i++) x[i] = rnd_sym() * (float)(1 + i % 5);
        block_q8_K *yq = malloc((size_t)n / QK_K * Q6_KX16_TOKS * sizeof(block_q8_K));
        CHECK(rl_quantize(RL_TYPE_Q8_K, x, yq, Q6_KX16_TOKS, n, NULL) == RL_OK);
        for (int nt = 1; nt <= Q6_KX16_TOKS; nt++) check_tile(n, w, p, yq, nt, "random");
        free(w), free(p), free(x), free(yq);
    }
    /* extremes: every code 0 (c - 32 = -32) or 63, scales -128 or 127, activations -128 or
     * 127 with their bsums: |sum| up to 16 * 128 * 16 * 32 * 128 = 2^27 */
    const int64_t n = 512;
    uint8_t *w = random_q6_K(n, Q6_KX16_ROWS), *p = malloc(q6_row_bytes(n) * Q6_KX16_ROWS);
    for (int64_t b = 0; b < n / QK_K * Q6_KX16_ROWS; b++) {
        block_q6_K *blk = (block_q6_K *)w + b;
        const uint8_t fill = b % 3 == 0 ? 0x00 : b % 3 == 1 ? 0xff : (uint8_t)rnd64();
        memset(blk->ql, fill, sizeof blk->ql);
        memset(blk->qh, fill, sizeof blk->qh);
        for (int j = 0; j < 16; j++) blk->scales[j] = (int8_t)(b % 2 ? -128 : 127);
    }
    rl__q6_kx16_pack(w, p, n, Q6_KX16_ROWS);
    block_q8_K *yq = calloc((size_t)n / QK_K * Q6_KX16_TOKS, sizeof(block_q8_K));
    for (int64_t b = 0; b < n / QK_K * Q6_KX16_TOKS; b++) {
        yq[b].d = b % 2 ? 1.0f : -0.5f;
        for (int j = 0; j < QK_K; j++) yq[b].qs[j] = (int8_t)(b % 3 ? -128 : (j % 2 ? 127 : -128));
        for (int s = 0; s < QK_K / 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += yq[b].qs[16 * s + j];
            yq[b].bsums[s] = (int16_t)sum;
        }
    }
    for (int nt = 1; nt <= Q6_KX16_TOKS; nt++) check_tile(n, w, p, yq, nt, "extreme");
    free(w), free(p), free(yq);
}

TEST(matmul_paths) {
    if (!rl__cpu_isa_supported(RL_CPU_ISA_AVX512)) SKIP("no AVX-512 VNNI: no Q6_Kx16 kernel");
    const rl_cpu_isa saved = rl_cpu_isa_active();
    CHECK(rl_cpu_isa_set(RL_CPU_ISA_AVX512) == RL_OK);
    const struct {
        int64_t n, rows;
    } shapes[] = {{256, 32}, {512, 33}, {2048, 80}, {768, 95}, {256, 192}, {8192, 32}, {512, 20}};
    const int toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 24, 33};
    const int max_t = 33;
    for (int nth = 1; nth <= 2; nth++) {
        rl_threadpool *pool;
        CHECK(rl_threadpool_create(nth, &pool) == RL_OK);
        for (size_t s = 0; s < RL_ARRAY_LEN(shapes); s++) {
            const int64_t n = shapes[s].n, rows = shapes[s].rows;
            const int64_t tiled = rows / Q6_KX16_ROWS * Q6_KX16_ROWS;
            const size_t rb = q6_row_bytes(n);
            uint8_t *w = random_q6_K(n, rows), *p = malloc(rb * (size_t)rows);
            rl__q6_kx16_pack(w, p, n, rows);
            float *x = malloc((size_t)(n * max_t) * 4);
            for (int64_t i = 0; i < n * max_t; i++) x[i] = rnd_sym() * (float)(1 + i % 7);
            float *y0 = malloc((size_t)(rows * max_t) * 4);
            float *y1 = malloc((size_t)(rows * max_t) * 4), *y2 = malloc((size_t)rows * 4);
            block_q8_K *yq = malloc((size_t)n / QK_K * sizeof(block_q8_K));
            for (size_t k = 0; k < RL_ARRAY_LEN(toks); k++) {
                const int nt = toks[k];
                CHECK(rl__matmul_packed(pool, RL_TYPE_Q6_K, w, NULL, rows, n, x, nt, y0) == RL_OK);
                CHECK(rl__matmul_packed(pool, RL_TYPE_Q6_K, w, p, rows, n, x, nt, y1) == RL_OK);
                for (int t = 0; t < nt; t++) {
                    CHECK(rl_quantize(RL_TYPE_Q8_K, x + t * n, yq, 1, n, NULL) == RL_OK);
                    for (int64_t r = 0; r < tiled; r++) {
                        const float ref = rl__vec_dot_q6_K_ref(n, w + r * rb, yq);
                        CHECKF(!memcmp(&ref, &y1[t * rows + r], 4),
                               "n %lld rows %lld nt %d threads %d: token %d row %lld %.9g != "
                               "ref %.9g",
                               (long long)n, (long long)rows, nt, nth, t, (long long)r,
                               y1[t * rows + r], ref);
                    }
                    CHECKF(!memcmp(y0 + t * rows + tiled, y1 + t * rows + tiled,
                                   (size_t)(rows - tiled) * 4),
                           "n %lld rows %lld nt %d: plain rows differ from GGUF", (long long)n,
                           (long long)rows, nt);
                }
                for (int t = 0; t < nt; t += 1 + nt / 4) {
                    CHECK(rl__matmul_packed(pool, RL_TYPE_Q6_K, w, p, rows, n, x + t * n, 1, y2) ==
                          RL_OK);
                    CHECKF(!memcmp(y2, y1 + t * rows, (size_t)rows * 4),
                           "n %lld tokens %d: token %d of the batch != alone", (long long)n, nt, t);
                }
            }
            free(w), free(p), free(x), free(y0), free(y1), free(y2), free(yq);
        }
        rl_threadpool_free(pool);
    }
    /* below AVX-512 the packed copy is ignored: the GGUF rows are read (a zeroed "copy"
     * would give zeros) */
    const rl_cpu_isa lower[] = {RL_CPU_ISA_AVX2, RL_CPU_ISA_REF};
    for (size_t i = 0; i < RL_ARRAY_LEN(lower); i++) {
        if (!rl__cpu_isa_supported(lower[i])) continue;
        const int64_t n = 512, rows = 64;
        uint8_t *w = random_q6_K(n, rows), *p = calloc(1, q6_row_bytes(n) * rows);
        float x[512 * 3], y0[64 * 3], y1[64 * 3];
        for (int k = 0; k < 512 * 3; k++) x[k] = rnd_sym();
        rl_threadpool *pool;
        CHECK(rl_threadpool_create(1, &pool) == RL_OK);
        CHECK(rl_cpu_isa_set(lower[i]) == RL_OK);
        for (int nt = 1; nt <= 3; nt += 2) {
            CHECK(rl__matmul_packed(pool, RL_TYPE_Q6_K, w, NULL, rows, n, x, nt, y0) == RL_OK);
            CHECK(rl__matmul_packed(pool, RL_TYPE_Q6_K, w, p, rows, n, x, nt, y1) == RL_OK);
            CHECKF(!memcmp(y0, y1, (size_t)(rows * nt) * 4), "isa %s nt %d",
                   rl_cpu_isa_name(lower[i]), nt);
        }
        rl_threadpool_free(pool);
        free(w), free(p);
    }
    rl_cpu_isa_set(saved);
}

TEST(pack_weights) {
    if (!rl__cpu_isa_supported(RL_CPU_ISA_AVX512)) SKIP("no AVX-512 VNNI: nothing is packed");
    const rl_cpu_isa saved = rl_cpu_isa_active();
    CHECK(rl_cpu_isa_set(RL_CPU_ISA_AVX512) == RL_OK);
    const size_t rb = q6_row_bytes(512);
    uint8_t *a = random_q6_K(512, 66), *b = random_q6_K(512, 31);
    /* 2 matrices of 33 rows: a tile and a plain row each */
    rl_weight wa = {.type = RL_TYPE_Q6_K, .ne = {512, 33, 2, 1}, .row_bytes = rb, .data = a};
    rl_weight wa2 = wa; /* tied: same data */
    rl_weight wb = {.type = RL_TYPE_Q6_K, .ne = {512, 31, 1, 1}, .row_bytes = rb, .data = b};
    rl_weight *ws[] = {&wa, &wb, &wa2};
    rl__cpu_packed *pk = NULL;
    CHECK(rl__cpu_pack_weights(ws, RL_ARRAY_LEN(ws), 2, false, &pk) == RL_OK);
    CHECK(wa.packed && wa2.packed == wa.packed && !wb.packed); /* 31 rows: no whole tile */
    CHECK(rl__cpu_packed_has(pk, a) && !rl__cpu_packed_has(pk, b));
    if (wa.packed) {
        uint8_t *u = malloc(rb * 66);
        for (int e = 0; e < 2; e++)
            rl__q6_kx16_unpack((const uint8_t *)wa.packed + e * 33 * rb, u + e * 33 * rb, 512, 33);
        CHECK(!memcmp(u, a, rb * 66));
        free(u);
    }
    rl__cpu_packed_free(pk);
    /* RUVLLM_CPU_REPACK_Q6K=0: left in the GGUF layout */
    wa.packed = wa2.packed = NULL;
    setenv("RUVLLM_CPU_REPACK_Q6K", "0", 1);
    CHECK(rl__cpu_pack_weights(ws, RL_ARRAY_LEN(ws), 1, false, &pk) == RL_OK);
    unsetenv("RUVLLM_CPU_REPACK_Q6K");
    CHECK(!wa.packed && rl__cpu_packed_bytes(pk) == 0);
    rl__cpu_packed_free(pk);
    rl_cpu_isa_set(saved);
    free(a), free(b);
}

TEST(model_logits_close) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/test_repack_q6k_%d.gguf", (int)getpid());
    rl_synth_params sp = rl_synth_default_params();
    sp.type = "Q4_K_M";
    sp.n_threads = 2;
    char err[512];
    rl_status st = rl_synth_model(path, &sp, err, sizeof err);
    CHECKF(st == RL_OK, "%s", err);
    if (st != RL_OK) return;
    int nv0 = 0, nv1 = 0, nv2 = 0;
    rl_model *m0 = NULL, *m1 = NULL, *m2 = NULL;
    setenv("RUVLLM_CPU_REPACK_Q6K", "0", 1);
    float *l0 = rl_test_prompt_logits(path, &nv0, &m0);
    unsetenv("RUVLLM_CPU_REPACK_Q6K");
    float *l1 = rl_test_prompt_logits(path, &nv1, &m1);
    setenv("RUVLLM_CPU_REPACK", "0", 1);
    float *l2 = rl_test_prompt_logits(path, &nv2, &m2);
    unsetenv("RUVLLM_CPU_REPACK");
    CHECK(l0 && l1 && l2 && nv0 == nv1 && nv0 == nv2 && nv0 > 0);
    if (l0 && l1 && l2) {
        /* Q6_K repack off vs plain: the same kernels */
        CHECK(!memcmp(l0, l2, (size_t)nv0 * 2 * sizeof(float)));
        /* on vs off: the GGUF AVX-512 kernels' float order differs from the reference's,
         * which the tile follows: rounding apart, relative to the logits' scale */
        double maxd = 0, maxa = 0;
        for (int i = 0; i < 2 * nv0; i++) {
            maxd = fmax(maxd, fabs((double)l0[i] - l1[i]));
            maxa = fmax(maxa, fabs((double)l0[i]));
        }
        CHECKF(maxd <= 1e-4 * maxa, "logits differ by %.3g (scale %.3g)", maxd, maxa);
        CHECK(maxa > 0);
    }
    CHECK(m2 && !m2->cpu_packed);
    if (m0 && m1 && rl__cpu_isa_supported(RL_CPU_ISA_AVX512) &&
        rl_cpu_isa_active() >= RL_CPU_ISA_AVX512) {
        CHECK(m1->output.type == RL_TYPE_Q6_K && m1->output.packed && !m0->output.packed);
        int packed = 0;
        for (int il = 0; il < m1->hp.n_layer; il++) {
            const rl__layer *L = &m1->layers[il];
            CHECK(L->ffn_down.type != RL_TYPE_Q6_K || L->ffn_down.packed);
            CHECK(!L->ffn_up.packed && !L->wq.packed);
            packed += L->ffn_down.packed != NULL || L->wv.packed != NULL;
            CHECK(!m0->layers[il].ffn_down.packed && !m0->layers[il].wv.packed);
        }
        CHECK(packed > 0);
    }
    rl_model_free(m0);
    rl_model_free(m1);
    rl_model_free(m2);
    free(l0), free(l1), free(l2);
    unlink(path);
}

int main(void) {
    RUN(round_trip);
    RUN(tile_equals_reference);
    RUN(matmul_paths);
    RUN(pack_weights);
    RUN(model_logits_close);
    return rl_test_finish();
}
