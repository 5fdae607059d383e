/* The attention part of a single-token decode step on the GPU, as the model runs it (RoPE
 * of q and k, the K/V cache write of the token's cell, the attention over its list of cells,
 * a Q4_K product of the output: the fuse pass's joined rope_kv launch and the attention that
 * quantizes its output for the product), against the CPU backend's rope, kv_write and
 * attention: the whole K and V caches bit for bit (the new row's rotation and F16 rounding
 * are the CPU's), the output within nmse 1e-7 (float attention), over three passes from the
 * same inputs (run eagerly, captured, replayed as a graph) that must give the same bits.
 * Head sizes 64, 128 and 256, GQA 1 to 8, normal and neox rotation, partial rotation (n_rot <
 * head size), spans of 1 to 4096 cells with the token's cell anywhere in the list (one or
 * many pieces, merged in the kernel or by the combine kernel, RUVLLM_CUDA_ATTN_MERGE=0; up
 * to 8 query heads a block, RUVLLM_CUDA_ATTN_VEC_HPB=0; spans of up to 256 cells on the
 * short kernel with the RoPE and cache write joined to it, without the join,
 * RUVLLM_CUDA_ATTN_ROPE=0, and on the kernels before it, RUVLLM_CUDA_ATTN_SHORT=0), with and
 * without the product.
 * Outputs start as NaN, so every value must be written.
 * RUVLLM_DECODE_ATTN_BENCH=1 also times that part of a decode step per layer (rope, K/V write,
 * attention, a 256-row Q4_K product of its output) over 32 layers of their own caches (the
 * KV of 32 layers rotates through L2), 4 steps a queued list replayed as a graph (wall clock
 * around each list's sync, median of 7 x 10 lists), for the 8B (32/8 heads of 128) and 1B
 * (32/8 of 64) shapes over 16 to 4096 cells, under the default settings, with the short
 * kernel off (RUVLLM_CUDA_ATTN_SHORT=0), its joined RoPE off (RUVLLM_CUDA_ATTN_ROPE=0) and
 * the fuse pass off (RUVLLM_CUDA_FUSE=0); =2 times only (RUVLLM_DECODE_ATTN_BENCH_ONLY: the
 * shapes whose name holds it). Without a CUDA device the program reports itself skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "rng.h"
#include "test.h"

#include <time.h>

static rl_backend *cpu;
static char g_skip[320];
static bool g_gpu;

static uint64_t g_rng = 0xa77e8a77e8ull;
static uint64_t rnd(void) { return rl_test_rand64(&g_rng); }
static int32_t rnd_in(int32_t lo, int32_t hi) {
    return lo + (int32_t)(rnd() % (uint64_t)(hi - lo + 1));
}
static float *rand_vec(size_t n) { return rl_test_gauss_vec(&g_rng, n); }

/* A CUDA backend made under NAME=VALUE (NULL: none); settings are read when it is made. */
static rl_backend *gpu_make(const char *name, const char *value) {
    if (name) rl_test_env_set(name, value);
    rl_backend *b = NULL;
    char err[256] = "";
    rl_status st = rl__backend_cuda_create(0, &b, err, sizeof err);
    if (name) rl_test_env_set(name, NULL);
    if (st != RL_OK) {
        snprintf(g_skip, sizeof g_skip, "no CUDA backend: %.200s", err);
        return NULL;
    }
    return b;
}

static rl_rope_params rope_params(int32_t n_rot, rl_rope_mode mode) {
    return (rl_rope_params){.n_rot = n_rot,
                            .mode = mode,
                            .n_ctx_orig = 8192,
                            .freq_base = 500000.0f,
                            .freq_scale = 1.0f,
                            .ext_factor = 0.0f,
                            .attn_factor = 1.0f,
                            .beta_fast = 32.0f,
                            .beta_slow = 1.0f};
}

/* ---- one decode token: its q, k, v, a cache with a list of cells, its own cell ---- */
typedef struct tok_case {
    int32_t n_head, n_head_kv, hd, n_rot, n_list, n_cells, pos, newcell;
    rl_rope_mode mode;
    int32_t *list;    /* the token's span: list[0 .. n_list) */
    float *q, *k, *v; /* [nq], [nk], [nv] */
    rl_kv_layer kc;   /* host tables (F16) before the token's write */
} tok_case;

static int64_t nq_of(const tok_case *c) { return (int64_t)c->n_head * c->hd; }
static int64_t nk_of(const tok_case *c) { return (int64_t)c->n_head_kv * c->hd; }

static void case_make(tok_case *c, int32_t n_head, int32_t n_head_kv, int32_t hd, int32_t n_rot,
                      rl_rope_mode mode, int32_t n_list, bool new_last) {
    memset(c, 0, sizeof *c);
    c->n_head = n_head;
    c->n_head_kv = n_head_kv;
    c->hd = hd;
    c->n_rot = n_rot;
    c->mode = mode;
    c->n_list = n_list;
    c->n_cells = n_list + rnd_in(1, 40);
    int32_t *perm = malloc((size_t)c->n_cells * sizeof(int32_t));
    for (int32_t i = 0; i < c->n_cells; i++) perm[i] = i;
    for (int32_t i = c->n_cells - 1; i > 0; i--) {
        int32_t j = (int32_t)(rnd() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    c->list = perm;
    c->newcell = perm[new_last ? n_list - 1 : rnd_in(0, n_list - 1)];
    c->pos = n_list - 1 + rnd_in(0, 3000);
    rl_kv_layer l = {.type = RL_TYPE_F16, .n_embd_k = n_head_kv * hd, .n_embd_v = n_head_kv * hd};
    rl_type_row_bytes(l.type, l.n_embd_k, &l.k_row_bytes);
    rl_type_row_bytes(l.type, l.n_embd_v, &l.v_row_bytes);
    l.k = calloc((size_t)c->n_cells, l.k_row_bytes);
    l.v = calloc((size_t)c->n_cells, l.v_row_bytes);
    float *k = rand_vec((size_t)c->n_cells * l.n_embd_k),
          *v = rand_vec((size_t)c->n_cells * l.n_embd_v);
    int32_t *all = malloc((size_t)c->n_cells * sizeof(int32_t));
    for (int32_t i = 0; i < c->n_cells; i++) all[i] = i;
    cpu->ops->kv_write(cpu, &l, k, l.n_embd_k, v, l.n_embd_v, c->n_cells, all);
    free(all);
    free(k);
    free(v);
    c->kc = l;
    c->q = rand_vec((size_t)nq_of(c));
    c->k = rand_vec((size_t)nk_of(c));
    c->v = rand_vec((size_t)nk_of(c));
}

static void case_free(tok_case *c) {
    free(c->list);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->kc.k);
    free(c->kc.v);
}

/* One layer's attention part of a decode step on b: RoPE of q and k, the K/V write of the
 * token's cell, the attention over the list, and (w non-NULL) the product y = w out. */
static void layer_ops(rl_backend *b, const tok_case *c, const rl_kv_layer *kv, float *q, float *k,
                      float *v, float *out, const rl_weight *w, float *y) {
    const rl_rope_params rp = rope_params(c->n_rot, c->mode);
    const int64_t nq = nq_of(c), nk = nk_of(c);
    b->ops->rope(b, q, 1, nq, c->n_head, c->hd, &c->pos, &rp);
    b->ops->rope(b, k, 1, nk, c->n_head_kv, c->hd, &c->pos, &rp);
    b->ops->kv_write(b, kv, k, nk, v, nk, 1, &c->newcell);
    const int32_t span[2] = {0, c->n_list};
    const rl_attn_args a = {.n_tok = 1,
                            .n_head = c->n_head,
                            .n_head_kv = c->n_head_kv,
                            .head_dim_k = c->hd,
                            .head_dim_v = c->hd,
                            .q = q,
                            .q_ld = nq,
                            .out = out,
                            .out_ld = nq,
                            .cells = c->list,
                            .span = span,
                            .scale = 1.0f / sqrtf((float)c->hd),
                            .softcap = 0.0f};
    b->ops->attention(b, kv, &a);
    if (w) CHECK(b->ops->matmul(b, w, out, 1, y) == RL_OK);
}

/* What a run gives back: the attention output, the product, the K and V tables. */
typedef struct tok_out {
    float *o, *y;
    uint8_t *k, *v;
} tok_out;

static void out_free(tok_out *r) {
    free(r->o);
    free(r->y);
    free(r->k);
    free(r->v);
}

enum { ROWS = 256, PASSES = 3 };

/* c on g, PASSES times from the same inputs (eager, captured, replayed): every pass's
 * results in r[pass]. */
static void run_gpu(rl_backend *g, const tok_case *c, bool product, tok_out r[PASSES]) {
    const int64_t nq = nq_of(c), nk = nk_of(c);
    const size_t kb = (size_t)c->n_cells * c->kc.k_row_bytes,
                 vb = (size_t)c->n_cells * c->kc.v_row_bytes;
    rl_kv_layer kv = c->kc;
    kv.k = rl_test_dev_bytes(g, c->kc.k, kb);
    kv.v = rl_test_dev_bytes(g, c->kc.v, vb);
    float *q = g->ops->alloc(g, (size_t)nq * sizeof(float));
    float *k = g->ops->alloc(g, (size_t)nk * sizeof(float));
    float *v = g->ops->alloc(g, (size_t)nk * sizeof(float));
    float *out = g->ops->alloc(g, (size_t)nq * sizeof(float));
    float *y = g->ops->alloc(g, ROWS * sizeof(float));
    float *nan = malloc((size_t)nq * sizeof(float));
    for (int64_t i = 0; i < nq; i++) nan[i] = NAN;
    g_rng = 0x5151aa77ull + (uint64_t)c->hd; /* the same weight on every backend */
    rl_weight w = {0};
    if (product) w = rl_test_dev_weight(g, RL_TYPE_Q4_K, nq, ROWS, &g_rng);
    for (int p = 0; p < PASSES; p++) {
        g->ops->from_host(g, q, c->q, (size_t)nq * sizeof(float));
        g->ops->from_host(g, k, c->k, (size_t)nk * sizeof(float));
        g->ops->from_host(g, v, c->v, (size_t)nk * sizeof(float));
        g->ops->from_host(g, out, nan, (size_t)nq * sizeof(float));
        g->ops->from_host(g, kv.k, c->kc.k, kb); /* the cache as before the token */
        g->ops->from_host(g, kv.v, c->kc.v, vb);
        layer_ops(g, c, &kv, q, k, v, out, product ? &w : NULL, y);
        tok_out *o = &r[p];
        o->o = malloc((size_t)nq * sizeof(float));
        o->y = calloc(ROWS, sizeof(float));
        o->k = malloc(kb);
        o->v = malloc(vb);
        g->ops->to_host(g, o->o, out, (size_t)nq * sizeof(float));
        if (product) g->ops->to_host(g, o->y, y, ROWS * sizeof(float));
        g->ops->to_host(g, o->k, kv.k, kb);
        g->ops->to_host(g, o->v, kv.v, vb);
        const rl_status st = g->ops->sync(g);
        CHECKF(st == RL_OK, "sync: %s", rl_status_str(st));
    }
    if (product) g->ops->free(g, (void *)w.data);
    free(nan);
    g->ops->free(g, q);
    g->ops->free(g, k);
    g->ops->free(g, v);
    g->ops->free(g, out);
    g->ops->free(g, y);
    g->ops->free(g, kv.k);
    g->ops->free(g, kv.v);
}

/* The CPU's output and tables for c. */
static void run_cpu(const tok_case *c, tok_out *r) {
    const int64_t nq = nq_of(c), nk = nk_of(c);
    const size_t kb = (size_t)c->n_cells * c->kc.k_row_bytes,
                 vb = (size_t)c->n_cells * c->kc.v_row_bytes;
    rl_kv_layer kv = c->kc;
    r->k = malloc(kb);
    r->v = malloc(vb);
    memcpy(r->k, c->kc.k, kb);
    memcpy(r->v, c->kc.v, vb);
    kv.k = r->k;
    kv.v = r->v;
    float *q = malloc((size_t)nq * sizeof(float)), *k = malloc((size_t)nk * sizeof(float));
    memcpy(q, c->q, (size_t)nq * sizeof(float));
    memcpy(k, c->k, (size_t)nk * sizeof(float));
    r->o = calloc((size_t)nq, sizeof(float));
    r->y = NULL;
    layer_ops(cpu, c, &kv, q, k, c->v, r->o, NULL, NULL);
    free(q);
    free(k);
}

static int g_cases;
static double g_worst;

/* c on a backend made under env=val (NULL: none): every pass the same bits, the CPU's
 * tables, its output within 1e-7. */
static void check_case(const tok_case *c, bool product, const char *env, const char *val,
                       const char *what) {
    tok_out r[PASSES], ref;
    memset(r, 0, sizeof r);
    rl_backend *g = gpu_make(env, val);
    CHECK(g != NULL);
    if (!g) return;
    run_gpu(g, c, product, r);
    run_cpu(c, &ref);
    const int64_t nq = nq_of(c);
    const size_t kb = (size_t)c->n_cells * c->kc.k_row_bytes,
                 vb = (size_t)c->n_cells * c->kc.v_row_bytes;
    for (int p = 0; p < PASSES; p++) {
        CHECKF(memcmp(r[p].o, r[0].o, (size_t)nq * sizeof(float)) == 0,
               "%s pass %d: attention output differs from pass 0", what, p);
        CHECKF(!product || memcmp(r[p].y, r[0].y, ROWS * sizeof(float)) == 0,
               "%s pass %d: product differs from pass 0", what, p);
        CHECKF(memcmp(r[p].k, ref.k, kb) == 0 && memcmp(r[p].v, ref.v, vb) == 0,
               "%s pass %d: K/V cache differs from the CPU's", what, p);
        const double e = rl_test_nmse(r[p].o, ref.o, (size_t)nq);
        CHECKF(e <= 1e-7, "%s pass %d: attention nmse %.3g vs the CPU", what, p, e);
        if (e > g_worst) g_worst = e;
    }
    double ysq = 0;
    for (int i = 0; i < ROWS && product; i++) ysq += (double)r[0].y[i] * r[0].y[i];
    CHECKF(!product || ysq > 0, "%s: the product is all zeros", what);
    /* the token's rows were written (the cache before it held other values there) */
    const size_t at = (size_t)c->newcell * c->kc.k_row_bytes;
    CHECKF(memcmp(r[0].k + at, (const uint8_t *)c->kc.k + at, c->kc.k_row_bytes) != 0,
           "%s: the new K row was not written", what);
    for (int p = 0; p < PASSES; p++) out_free(&r[p]);
    out_free(&ref);
    rl__backend_free(g);
    g_cases++;
}

TEST(attn_decode_part) {
    if (!g_gpu) SKIP("%s", g_skip);
    static const struct {
        int32_t n_head, n_head_kv, hd, n_rot;
        rl_rope_mode mode;
        int32_t n_list;
        bool last, product;
    } cs[] = {
        {32, 8, 128, 128, RL_ROPE_NORMAL, 1, true, true},
        {32, 8, 128, 128, RL_ROPE_NORMAL, 16, true, true},
        {32, 8, 128, 128, RL_ROPE_NORMAL, 33, true, true},
        {32, 8, 128, 128, RL_ROPE_NORMAL, 128, false, true},
        {32, 8, 128, 128, RL_ROPE_NORMAL, 640, true, true},
        {32, 8, 128, 128, RL_ROPE_NORMAL, 700, false, false},
        {32, 8, 128, 128, RL_ROPE_NORMAL, 4096, true, true},
        {32, 8, 64, 64, RL_ROPE_NEOX, 16, true, true},
        {32, 8, 64, 64, RL_ROPE_NEOX, 100, false, true},
        {32, 8, 64, 64, RL_ROPE_NEOX, 640, true, false},
        {32, 8, 64, 64, RL_ROPE_NORMAL, 2000, true, true},
        {8, 2, 256, 64, RL_ROPE_NORMAL, 90, true, true},
        {8, 2, 256, 256, RL_ROPE_NEOX, 700, false, true},
        {8, 8, 128, 96, RL_ROPE_NEOX, 50, true, true},
        {8, 8, 128, 128, RL_ROPE_NORMAL, 300, false, false},
        {12, 4, 64, 32, RL_ROPE_NEOX, 200, true, true},
        {16, 4, 128, 128, RL_ROPE_NEOX, 1500, true, true},
        /* the short kernel's spans (up to 256 cells), GQA 4 and 8, heads of 64 and 128 */
        {32, 8, 64, 64, RL_ROPE_NORMAL, 1, true, true},
        {32, 8, 64, 64, RL_ROPE_NORMAL, 64, false, true},
        {32, 8, 64, 64, RL_ROPE_NEOX, 128, true, true},
        {32, 8, 64, 64, RL_ROPE_NORMAL, 256, false, true},
        {32, 8, 64, 64, RL_ROPE_NORMAL, 257, true, true},
        {32, 4, 128, 128, RL_ROPE_NORMAL, 200, false, true},
        {16, 2, 64, 64, RL_ROPE_NEOX, 129, true, true},
        {32, 8, 128, 96, RL_ROPE_NEOX, 77, false, true},
        {32, 8, 128, 128, RL_ROPE_NORMAL, 256, true, false},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        tok_case c;
        case_make(&c, cs[i].n_head, cs[i].n_head_kv, cs[i].hd, cs[i].n_rot, cs[i].mode,
                  cs[i].n_list, cs[i].last);
        char what[96];
        snprintf(what, sizeof what, "case %zu (%d/%d x %d, rot %d %s, %d cells)", i, cs[i].n_head,
                 cs[i].n_head_kv, cs[i].hd, cs[i].n_rot,
                 cs[i].mode == RL_ROPE_NEOX ? "neox" : "normal", cs[i].n_list);
        check_case(&c, cs[i].product, NULL, NULL, what);
        /* pieces merged by the combine kernel; up to 8 query heads a block */
        if (i % 3 == 0) check_case(&c, cs[i].product, "RUVLLM_CUDA_ATTN_MERGE", "0", what);
        if (i % 4 == 1) check_case(&c, cs[i].product, "RUVLLM_CUDA_ATTN_VEC_HPB", "0", what);
        /* the short kernel without the joined RoPE and cache write; the kernels before it */
        if (cs[i].n_list <= 300 && i % 2 == 0)
            check_case(&c, cs[i].product, "RUVLLM_CUDA_ATTN_ROPE", "0", what);
        if (cs[i].n_list <= 300 && i % 2 == 1)
            check_case(&c, cs[i].product, "RUVLLM_CUDA_ATTN_SHORT", "0", what);
        case_free(&c);
    }
    fprintf(stderr, "decode_attn: %d cases, worst nmse vs the CPU %.3g\n", g_cases, g_worst);
}

/* ---- timing (RUVLLM_DECODE_ATTN_BENCH) ---- */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { BL = 32, BSTEPS = 4, BREPS = 7, BSYNCS = 10 };

/* Microseconds per layer of c's attention part on g: BL layers of their own caches, BSTEPS
 * steps a queued list (a graph once seen twice), BSYNCS lists timed, median of BREPS. */
static double bench_layer(rl_backend *g, const tok_case *c) {
    const int64_t nq = nq_of(c), nk = nk_of(c);
    const size_t kb = (size_t)c->n_cells * c->kc.k_row_bytes,
                 vb = (size_t)c->n_cells * c->kc.v_row_bytes;
    rl_kv_layer kv[BL];
    for (int l = 0; l < BL; l++) {
        kv[l] = c->kc;
        kv[l].k = rl_test_dev_bytes(g, c->kc.k, kb);
        kv[l].v = rl_test_dev_bytes(g, c->kc.v, vb);
    }
    float *q = rl_test_dev_bytes(g, c->q, (size_t)nq * sizeof(float));
    float *k = rl_test_dev_bytes(g, c->k, (size_t)nk * sizeof(float));
    float *v = rl_test_dev_bytes(g, c->v, (size_t)nk * sizeof(float));
    float *out = g->ops->alloc(g, (size_t)nq * sizeof(float));
    float *y = g->ops->alloc(g, ROWS * sizeof(float));
    rl_weight w = rl_test_dev_weight(g, RL_TYPE_Q4_K, nq, ROWS, &g_rng);
    g->ops->sync(g);
    double t[BREPS];
    for (int rep = -3; rep < BREPS; rep++) { /* three lists first: eager, capture, replay */
        const int n = rep < 0 ? 1 : BSYNCS;
        const double t0 = now_s();
        for (int s = 0; s < n; s++) {
            for (int st = 0; st < BSTEPS; st++)
                for (int l = 0; l < BL; l++) layer_ops(g, c, &kv[l], q, k, v, out, &w, y);
            g->ops->sync(g);
        }
        if (rep >= 0) t[rep] = (now_s() - t0) / ((double)BSYNCS * BSTEPS * BL);
    }
    for (int i = 1; i < BREPS; i++) /* sort: the median */
        for (int j2 = i; j2 > 0 && t[j2] < t[j2 - 1]; j2--) {
            const double x = t[j2];
            t[j2] = t[j2 - 1];
            t[j2 - 1] = x;
        }
    g->ops->free(g, (void *)w.data);
    g->ops->free(g, q);
    g->ops->free(g, k);
    g->ops->free(g, v);
    g->ops->free(g, out);
    g->ops->free(g, y);
    for (int l = 0; l < BL; l++) {
        g->ops->free(g, kv[l].k);
        g->ops->free(g, kv[l].v);
    }
    return 1e6 * t[BREPS / 2];
}

typedef struct bench_col {
    const char *label, *env; /* env: NAME=VALUE or NULL */
} bench_col;

static void bench(void) {
    static const struct {
        const char *name;
        int32_t n_head, n_head_kv, hd;
        rl_rope_mode mode;
        int32_t cells;
    } shapes[] = {
        {"8B 1 x 16", 32, 8, 128, RL_ROPE_NORMAL, 16},
        {"8B 1 x 64", 32, 8, 128, RL_ROPE_NORMAL, 64},
        {"8B 1 x 128", 32, 8, 128, RL_ROPE_NORMAL, 128},
        {"8B 1 x 256", 32, 8, 128, RL_ROPE_NORMAL, 256},
        {"8B 1 x 640", 32, 8, 128, RL_ROPE_NORMAL, 640},
        {"8B 1 x 4096", 32, 8, 128, RL_ROPE_NORMAL, 4096},
        {"1B 1 x 16", 32, 8, 64, RL_ROPE_NORMAL, 16},
        {"1B 1 x 64", 32, 8, 64, RL_ROPE_NORMAL, 64},
        {"1B 1 x 128", 32, 8, 64, RL_ROPE_NORMAL, 128},
        {"1B 1 x 256", 32, 8, 64, RL_ROPE_NORMAL, 256},
        {"1B 1 x 640", 32, 8, 64, RL_ROPE_NORMAL, 640},
        {"1B 1 x 4096", 32, 8, 64, RL_ROPE_NORMAL, 4096},
    };
    enum { NS = sizeof shapes / sizeof shapes[0] };
    static const bench_col cols[] = {
        {"default", NULL},
        {"short kernel off", "RUVLLM_CUDA_ATTN_SHORT=0"},
        {"its RoPE join off", "RUVLLM_CUDA_ATTN_ROPE=0"},
        {"fuse pass off", "RUVLLM_CUDA_FUSE=0"},
        {"default again", NULL},
        {"short off again", "RUVLLM_CUDA_ATTN_SHORT=0"},
    };
    enum { NC = sizeof cols / sizeof cols[0] };
    static double us[NC][NS];
    const char *only = getenv("RUVLLM_DECODE_ATTN_BENCH_ONLY");
    for (size_t i = 0; i < NS; i++) {
        if (only && !strstr(shapes[i].name, only)) continue;
        tok_case c;
        g_rng = 0xbe7c4ull + i;
        case_make(&c, shapes[i].n_head, shapes[i].n_head_kv, shapes[i].hd, shapes[i].hd,
                  shapes[i].mode, shapes[i].cells, true);
        for (int col = 0; col < NC; col++) {
            char name[64] = "", val[32] = "";
            if (cols[col].env) sscanf(cols[col].env, "%63[^=]=%31s", name, val);
            rl_backend *g = gpu_make(cols[col].env ? name : NULL, val);
            us[col][i] = g ? bench_layer(g, &c) : 0.0;
            rl__backend_free(g);
        }
        case_free(&c);
    }
    fprintf(stderr,
            "bench: us per layer (rope, K/V write, attention, 256-row Q4_K product), "
            "%d layers, graph replays; columns:",
            BL);
    for (int col = 0; col < NC; col++) fprintf(stderr, " [%s]", cols[col].label);
    fprintf(stderr, "\n");
    for (size_t i = 0; i < NS; i++) {
        if (only && !strstr(shapes[i].name, only)) continue;
        fprintf(stderr, "bench %-12s", shapes[i].name);
        for (int col = 0; col < NC; col++) fprintf(stderr, " %8.2f", us[col][i]);
        fprintf(stderr, "\n");
    }
}

int main(void) {
    if (rl__backend_cpu_create(2, &cpu) != RL_OK) {
        fprintf(stderr, "cannot create the CPU backend\n");
        return 1;
    }
    rl_backend *g = gpu_make(NULL, NULL);
    g_gpu = g != NULL;
    rl__backend_free(g);
    const char *b = getenv("RUVLLM_DECODE_ATTN_BENCH");
    if (!(b && b[0] == '2')) RUN(attn_decode_part);
    if (g_gpu && b && (b[0] == '1' || b[0] == '2')) bench();
    rl__backend_free(cpu);
    return rl_test_finish();
}
