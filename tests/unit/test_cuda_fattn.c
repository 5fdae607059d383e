/* The CUDA backend's attention on the f16 tensor cores (fattn.cu) against the CPU backend's
 * attention (itself checked against float64 by test_attention) on random inputs, by
 * normalized mean squared error sum (gpu - ref)^2 / sum ref^2 <= 5e-4 (q and p are rounded
 * to f16: about 1e-7 is expected): every head size the kernel has (64, 80, 96, 112, 128,
 * 256), GQA ratios 1, 4 and 8, causal prefill after 0..200 cached cells, sliding windows,
 * soft-cap on and off, several sequences in one call (their own ranges of a cell list that
 * is a random permutation of the table's rows, as a paged cache's, with gaps between them),
 * decode-like calls (a token per sequence), empty spans (exact zeros), 1 to 600 tokens.
 * List entries no token sees hold an id far past the table (context.c leaves the room
 * between sequences' lists unset): the kernel must not read them. Outputs start as NaN,
 * so every value must be written; the row padding must stay untouched.
 * With RUVLLM_CUDA_FATTN=2 every supported call takes the kernel (F32 and Q8_0 caches fall
 * back to the CUDA-core kernel); most of these calls have few blocks, so the kernel cuts
 * each block's union of spans into pieces (partials merged by the combine kernel), the
 * smallest (64 cells or fewer) and the 8B prefill run in one piece. Then the default
 * dispatch (prefill of the 8B shape, batched decode). Then attention.cu's decode kernel
 * (vec: float arithmetic, 1e-7) over 1 to 64 tokens, head sizes 64/128/256, GQA 1 to 12,
 * spans up to 3000 cells: its tensor-core variant (mma, heads 64 and 128; blocks of 1, 2
 * and 4 warps with load rings of 2, 3 and 4 stages, with and without the L2::256B hint,
 * rows by cp.async pieces or bulk copies (RUVLLM_CUDA_ATTN_MMA_BULK),
 * and as before the rings, RUVLLM_CUDA_ATTN_MMA_PIPE=0; single tokens too) and its CUDA-core arithmetic (RUVLLM_CUDA_ATTN_MMA=0) in
 * its own pieces and in pieces of 32 cells; attention whose output
 * a q8 product reads (the fuse pass): the same bits as with RUVLLM_CUDA_FUSE=0 and as with
 * the pieces merged by the combine kernel; the vec kernel's pieces merged in one launch,
 * replayed as a graph (attn_one_launch; on the CUDA cores also the bits of the path before
 * the single-token latency work, RUVLLM_CUDA_ATTN_VEC_LAT=0, and single tokens in pieces of
 * 64 cells and in as many pieces as one wave holds, RUVLLM_CUDA_ATTN_VEC_PIECE1). The settings
 * are the process's, read when a backend is made: each part makes its backend first.
 * RUVLLM_FATTN_BENCH=1 also times attention calls (wall clock over 20 queued calls: per-layer
 * figures for the 8B and 1B shapes: one token over 16 to 4096 cells, 4 to 64 sequences over
 * 64 to 2048 cells each, prefill chunks; each against the KV bytes at 3.35 TB/s) under each
 * setting, and (attention, o product) pairs with the fuse pass on and off; =2 times them
 * alone (no tests), RUVLLM_FATTN_BENCH_ONLY and _SET keep the shapes whose name holds it and
 * one column (profiling one kernel); =3 times batched decode under the mma kernel's load
 * rings (bench_pipe) alone.
 * Without a CUDA device the program reports itself skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "rng.h"
#include "test.h"

#include <time.h>

static rl_backend *cpu;
static char g_skip[320];

static uint64_t g_rng = 0x5eed0f1a77e11ull;
static uint64_t rnd(void) { return rl_test_rand64(&g_rng); }
static int32_t rnd_in(int32_t lo, int32_t hi) { return lo + (int32_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float *rand_vec(size_t n) { return rl_test_gauss_vec(&g_rng, n); }

/* Each NAME=VALUE of a space-separated list set (set) or unset (!set); NULL: none. */
static void env_list(const char *list, bool set) {
    for (const char *p = list; p && *p;) {
        while (*p == ' ') p++;
        const char *eq = strchr(p, '='), *end = strchr(p, ' ');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end) break;
        char name[64], val[64];
        snprintf(name, sizeof name, "%.*s", (int)(eq - p), p);
        snprintf(val, sizeof val, "%.*s", (int)(end - eq - 1), eq + 1);
        rl_test_env_set(name, set ? val : NULL);
        p = end;
    }
}

/* A backend with RUVLLM_CUDA_FATTN, RUVLLM_CUDA_FATTN_SPARSE and RUVLLM_CUDA_ATTN_TILED_MAX
 * set as given (NULL: unset); the settings are read when a backend is made. */
static rl_backend *gpu_make(const char *fattn, const char *sparse, const char *tiled_max) {
    rl_test_env_set("RUVLLM_CUDA_FATTN", fattn);
    rl_test_env_set("RUVLLM_CUDA_FATTN_SPARSE", sparse);
    rl_test_env_set("RUVLLM_CUDA_ATTN_TILED_MAX", tiled_max);
    rl_backend *b = NULL;
    char err[256] = "";
    if (rl__backend_cuda_create(0, &b, err, sizeof err) != RL_OK) {
        snprintf(g_skip, sizeof g_skip, "no CUDA backend: %.200s", err);
        return NULL;
    }
    return b;
}

/* ---- one call: cache, cell list, spans, queries ---- */
typedef enum { PAT_PREFILL, PAT_SWA, PAT_MULTI, PAT_DECODE } pattern;
static const char *pat_name[] = {"prefill", "swa", "multi", "decode"};

typedef struct call {
    rl_type type;
    int32_t n_head, n_head_kv, hd, n_tok, n_cells, n_list;
    float softcap;
    int32_t *list, *span;  /* cell list (a permutation of table rows), [n_tok][2] */
    float *q;              /* [n_tok][q_ld] */
    int64_t q_ld, out_ld;
    rl_kv_layer kc;        /* CPU tables */
    float *ref;            /* CPU output [n_tok][out_ld] */
} call;

static int32_t g_decode_max = 300; /* the longest span of PAT_DECODE */

/* Spans of the pattern over a list of n_list entries (returned). */
static int32_t make_spans(pattern p, int32_t n_tok, int32_t *span) {
    int32_t at = 0;
    switch (p) {
    case PAT_PREFILL:
    case PAT_SWA: {
        const int32_t past = rnd_in(0, 200), w = rnd_in(1, 100);
        for (int32_t t = 0; t < n_tok; t++) {
            const int32_t e = past + t + 1;
            span[2 * t] = p == PAT_SWA ? RL_MAX(0, e - w) : 0;
            span[2 * t + 1] = e;
        }
        at = past + n_tok;
        break;
    }
    case PAT_MULTI: { /* up to 3 sequences, tokens in order, the last sequence's first
                         token sees nothing */
        const int32_t ns = RL_MIN(3, n_tok);
        int32_t t = 0;
        for (int32_t s = 0; s < ns; s++) {
            const int32_t n = s == ns - 1 ? n_tok - t : rnd_in(1, n_tok - t - (ns - 1 - s));
            const int32_t past = rnd_in(0, 60), w = s == 1 ? rnd_in(1, 40) : 1 << 30;
            for (int32_t i = 0; i < n; i++, t++) {
                const int32_t e = at + past + i + 1;
                span[2 * t] = RL_MAX(at, e - w);
                span[2 * t + 1] = e;
                if (s == ns - 1 && i == 0 && ns > 1) span[2 * t] = span[2 * t + 1] = at;
            }
            at += past + n + rnd_in(0, 50); /* a gap before the next sequence */
        }
        break;
    }
    case PAT_DECODE: /* a token per sequence, token 1 sees nothing, gaps between */
        for (int32_t t = 0; t < n_tok; t++) {
            const int32_t len = t == 1 ? 0 : rnd_in(1, g_decode_max);
            span[2 * t] = at;
            span[2 * t + 1] = at + len;
            at += len + rnd_in(0, 20);
        }
        break;
    }
    return at;
}

static void call_make(call *c, rl_type type, int32_t n_head, int32_t n_head_kv, int32_t hd,
                      int32_t n_tok, pattern p, float softcap) {
    memset(c, 0, sizeof *c);
    c->type = type;
    c->n_head = n_head;
    c->n_head_kv = n_head_kv;
    c->hd = hd;
    c->n_tok = n_tok;
    c->softcap = softcap;
    c->span = malloc(2 * (size_t)n_tok * sizeof(int32_t));
    c->n_list = make_spans(p, n_tok, c->span);
    c->n_cells = c->n_list + rnd_in(1, 40); /* rows nobody sees too */
    int32_t *perm = malloc((size_t)c->n_cells * sizeof(int32_t));
    for (int32_t i = 0; i < c->n_cells; i++) perm[i] = i;
    for (int32_t i = c->n_cells - 1; i > 0; i--) {
        int32_t j = (int32_t)(rnd() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    c->list = perm; /* its first n_list entries are the list */
    uint8_t *seen = calloc((size_t)c->n_list + 1, 1);
    for (int32_t t = 0; t < n_tok; t++)
        for (int32_t j = c->span[2 * t]; j < c->span[2 * t + 1]; j++) seen[j] = 1;
    for (int32_t j = 0; j < c->n_list; j++)
        if (!seen[j]) c->list[j] = 0x3fffffff; /* unset room: never read */
    free(seen);
    rl_kv_layer l = {.type = type, .n_embd_k = n_head_kv * hd, .n_embd_v = n_head_kv * hd};
    rl_type_row_bytes(type, l.n_embd_k, &l.k_row_bytes);
    rl_type_row_bytes(type, l.n_embd_v, &l.v_row_bytes);
    l.k = calloc((size_t)c->n_cells, l.k_row_bytes);
    l.v = calloc((size_t)c->n_cells, l.v_row_bytes);
    float *k = rand_vec((size_t)c->n_cells * l.n_embd_k), *v = rand_vec((size_t)c->n_cells * l.n_embd_v);
    int32_t *all = malloc((size_t)c->n_cells * sizeof(int32_t));
    for (int32_t i = 0; i < c->n_cells; i++) all[i] = i;
    cpu->ops->kv_write(cpu, &l, k, l.n_embd_k, v, l.n_embd_v, c->n_cells, all);
    free(all);
    free(k);
    free(v);
    c->kc = l;
    c->q_ld = (int64_t)n_head * hd + 8;
    c->out_ld = (int64_t)n_head * hd + 4;
    c->q = rand_vec((size_t)(n_tok * c->q_ld));
}

static rl_attn_args call_args(const call *c, const float *q, float *out) {
    return (rl_attn_args){.n_tok = c->n_tok,
                          .n_head = c->n_head,
                          .n_head_kv = c->n_head_kv,
                          .head_dim_k = c->hd,
                          .head_dim_v = c->hd,
                          .q = q,
                          .q_ld = c->q_ld,
                          .out = out,
                          .out_ld = c->out_ld,
                          .cells = c->list,
                          .span = c->span,
                          .scale = 1.0f / sqrtf((float)c->hd),
                          .softcap = c->softcap};
}

static void call_ref(call *c) {
    c->ref = calloc((size_t)(c->n_tok * c->out_ld), sizeof(float));
    rl_attn_args a = call_args(c, c->q, c->ref);
    cpu->ops->attention(cpu, &c->kc, &a);
}

static void call_free(call *c) {
    free(c->list);
    free(c->span);
    free(c->q);
    free(c->ref);
    free(c->kc.k);
    free(c->kc.v);
}

/* Device copies of a call's tables, queries and output. */
typedef struct dev_call {
    rl_kv_layer kg;
    float *q, *out;
} dev_call;

static void dev_make(rl_backend *g, const call *c, dev_call *d) {
    d->kg = c->kc;
    d->kg.k = rl_test_dev_bytes(g, c->kc.k, (size_t)c->n_cells * c->kc.k_row_bytes);
    d->kg.v = rl_test_dev_bytes(g, c->kc.v, (size_t)c->n_cells * c->kc.v_row_bytes);
    d->q = rl_test_dev_bytes(g, c->q, (size_t)(c->n_tok * c->q_ld) * sizeof(float));
    /* NaN where the op writes, 0 in the row padding (the reference's) */
    const size_t n = (size_t)(c->n_tok * c->out_ld);
    float *init = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        init[i] = (int64_t)(i % (size_t)c->out_ld) < (int64_t)c->n_head * c->hd ? NAN : 0.0f;
    d->out = rl_test_dev_bytes(g, init, n * sizeof(float));
    free(init);
}

static void dev_free(rl_backend *g, dev_call *d) {
    g->ops->free(g, d->kg.k);
    g->ops->free(g, d->kg.v);
    g->ops->free(g, d->q);
    g->ops->free(g, d->out);
}

static double g_worst;
static int g_calls;

/* Run c on g and compare with the reference: nmse <= bound, empty spans exact zeros. */
static void check_call(rl_backend *g, call *c, const char *what, double bound) {
    if (!c->ref) call_ref(c);
    dev_call d;
    dev_make(g, c, &d);
    rl_attn_args a = call_args(c, d.q, d.out);
    g->ops->attention(g, &d.kg, &a);
    const size_t n = (size_t)(c->n_tok * c->out_ld);
    float *o = malloc(n * sizeof(float));
    g->ops->to_host(g, o, d.out, n * sizeof(float));
    rl_status st = g->ops->sync(g);
    CHECKF(st == RL_OK, "%s: sync: %s", what, rl_status_str(st));
    const double e = rl_test_nmse(o, c->ref, n);
    CHECKF(e <= bound, "%s (%s hd %d heads %d/%d, %d tokens, cap %g): nmse %.3g", what,
           rl_type_name(c->type), c->hd, c->n_head, c->n_head_kv, c->n_tok, c->softcap, e);
    if (e > g_worst) g_worst = e;
    g_calls++;
    if (e > 1e-5)
        fprintf(stderr, "  %s hd %d G %d tokens %d cap %g: nmse %.3g\n", what, c->hd,
                c->n_head / c->n_head_kv, c->n_tok, c->softcap, e);
    int bad = 0;
    for (int32_t t = 0; t < c->n_tok; t++)
        if (c->span[2 * t + 1] <= c->span[2 * t])
            for (int64_t i = 0; i < (int64_t)c->n_head * c->hd; i++)
                bad += o[t * c->out_ld + i] != 0.0f;
    CHECKF(bad == 0, "%s: %d values of empty spans are not 0", what, bad);
    free(o);
    dev_free(g, &d);
}

static rl_backend *g_forced; /* RUVLLM_CUDA_FATTN=2 */

TEST(fattn_head_sizes) {
    if (!g_forced) SKIP("%s", g_skip);
    static const int32_t hds[] = {64, 80, 96, 112, 128, 256};
    static const int32_t gqa[] = {1, 4, 8};
    int k = 0;
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
        for (size_t r = 0; r < 3; r++)
            for (int p = 0; p < 4; p++, k++) {
                call c;
                const int32_t n_tok = p == PAT_DECODE ? rnd_in(2, 40) : rnd_in(1, 160);
                call_make(&c, RL_TYPE_F16, 2 * gqa[r], 2, hds[h], n_tok, (pattern)p,
                          k % 3 == 1 ? 20.0f : 0.0f);
                char what[64];
                snprintf(what, sizeof what, "forced %s", pat_name[p]);
                check_call(g_forced, &c, what, 5e-4);
                call_free(&c);
            }
    static const rl_type other[] = {RL_TYPE_F32, RL_TYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        call c;
        call_make(&c, other[i], 8, 2, 128, 100, PAT_MULTI, 0.0f);
        check_call(g_forced, &c, "forced other type", 1e-7);
        call_free(&c);
    }
}

TEST(fattn_token_counts) {
    if (!g_forced) SKIP("%s", g_skip);
    static const int32_t toks[] = {1, 2, 7, 15, 16, 17, 63, 64, 65, 130, 257, 600};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        call c;
        call_make(&c, RL_TYPE_F16, 8, 2, 128, toks[i], i % 2 ? PAT_SWA : PAT_PREFILL,
                  i % 4 == 3 ? 30.0f : 0.0f);
        check_call(g_forced, &c, "forced tokens", 5e-4);
        call_free(&c);
        call_make(&c, RL_TYPE_F16, 4, 4, 64, toks[i], PAT_MULTI, 0.0f);
        check_call(g_forced, &c, "forced tokens multi", 5e-4);
        call_free(&c);
    }
}

/* Default settings: the 8B shape's prefill (tensor cores) and batched decode (the vec
 * kernel), F32 and Q8_0 caches (CUDA cores, float: 1e-7). */
TEST(fattn_dispatch) {
    if (!g_forced) SKIP("%s", g_skip);
    rl_backend *def = gpu_make(NULL, NULL, NULL);
    CHECK(def != NULL);
    if (!def) return;
    call c;
    call_make(&c, RL_TYPE_F16, 32, 8, 128, 512, PAT_PREFILL, 0.0f);
    check_call(def, &c, "default prefill 8B", 5e-4);
    call_free(&c);
    call_make(&c, RL_TYPE_F16, 32, 8, 128, 32, PAT_DECODE, 0.0f);
    check_call(def, &c, "default decode 32", 5e-4);
    call_free(&c);
    call_make(&c, RL_TYPE_F16, 16, 2, 64, 100, PAT_MULTI, 0.0f);
    check_call(def, &c, "default multi", 5e-4);
    call_free(&c);
    static const rl_type other[] = {RL_TYPE_F32, RL_TYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        call_make(&c, other[i], 8, 2, 128, 100, PAT_PREFILL, 0.0f);
        check_call(def, &c, "default other type", 1e-7);
        call_free(&c);
    }
    rl__backend_free(def);
}

/* The CUDA-core decode kernel (attention.cu's vec kernel: F16 caches, head sizes 64, 128,
 * 256, up to 64 tokens that do not share cells, and the few-token calls of any span) under
 * the default settings, then with pieces of 32 cells (many pieces and the combine): float
 * arithmetic, so nmse <= 1e-7. GQA ratios 1, 4, 8 and 12 (two blocks of heads), 1 to 64
 * tokens over spans of up to 3000 cells, an empty span, soft-cap. */
static void vec_cases(rl_backend *g, const char *what) {
    static const int32_t hds[] = {64, 128, 256};
    static const int32_t gqa[] = {1, 4, 8, 12};
    static const int32_t shp[][2] = {{1, 16}, {1, 3000}, {3, 700}, {8, 300}, {40, 120}, {64, 60}};
    int k = 0;
    for (size_t h = 0; h < 3; h++)
        for (size_t r = 0; r < 4; r++)
            for (int i = 0; i < 2; i++, k++) {
                const int32_t *sh = shp[(size_t)k % (sizeof shp / sizeof shp[0])];
                call c;
                g_decode_max = sh[1];
                call_make(&c, RL_TYPE_F16, 2 * gqa[r], 2, hds[h], sh[0], PAT_DECODE,
                          k % 3 == 2 ? 25.0f : 0.0f);
                g_decode_max = 300;
                check_call(g, &c, what, 1e-7);
                call_free(&c);
            }
    /* few tokens sharing their cells (a short prefill chunk): the vec kernel too */
    for (int p = PAT_PREFILL; p <= PAT_MULTI; p++) {
        call c;
        call_make(&c, RL_TYPE_F16, 8, 2, 128, rnd_in(2, 12), (pattern)p, 0.0f);
        check_call(g, &c, what, 1e-7);
        call_free(&c);
    }
}

TEST(attn_vec) {
    if (!g_forced) SKIP("%s", g_skip);
    /* single tokens over short spans too; by default calls of 2+ tokens with head sizes 64
     * and 128 take the mma variant (blocks of 2 warps), here also single tokens (MMA_MIN=1)
     * with 1 and 4 warps a block, and the CUDA-core arithmetic (MMA=0) in its own pieces and
     * in pieces of 32 cells */
    static const char *const sets[][2] = {
        {"vec", ""},
        {"vec mma 1 warp", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_MIN=1"},
        {"vec mma 4 warps", "RUVLLM_CUDA_ATTN_MMA_W=4 RUVLLM_CUDA_ATTN_MMA_MIN=1"},
        {"vec mma 2 warps 3 stages", "RUVLLM_CUDA_ATTN_MMA_NST=3 RUVLLM_CUDA_ATTN_MMA_MIN=1"},
        {"vec mma 2 warps 4 stages L2 hint",
         "RUVLLM_CUDA_ATTN_MMA_NST=4 RUVLLM_CUDA_ATTN_MMA_L2=1 RUVLLM_CUDA_ATTN_MMA_MIN=1"},
        {"vec mma 1 warp 3 stages", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=3"},
        {"vec mma 1 warp 4 stages L2 hint",
         "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=4 RUVLLM_CUDA_ATTN_MMA_L2=1"},
        {"vec mma 4 warps 3 stages (2 taken)", "RUVLLM_CUDA_ATTN_MMA_W=4 RUVLLM_CUDA_ATTN_MMA_NST=3"},
        {"vec mma as before (PIPE=0)", "RUVLLM_CUDA_ATTN_MMA_PIPE=0 RUVLLM_CUDA_ATTN_MMA_MIN=1"},
        {"vec mma 2 warps 3 stages bulk",
         "RUVLLM_CUDA_ATTN_MMA_NST=3 RUVLLM_CUDA_ATTN_MMA_BULK=1 RUVLLM_CUDA_ATTN_MMA_MIN=1"},
        {"vec mma 1 warp 4 stages bulk",
         "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=4 RUVLLM_CUDA_ATTN_MMA_BULK=1"},
        {"vec mma 4 warps 2 stages bulk",
         "RUVLLM_CUDA_ATTN_MMA_W=4 RUVLLM_CUDA_ATTN_MMA_BULK=1 RUVLLM_CUDA_ATTN_MMA_MIN=1"},
        {"vec mma 2 warps 2 stages bulk", "RUVLLM_CUDA_ATTN_MMA_NST=2 RUVLLM_CUDA_ATTN_MMA_BULK=1"},
        {"vec cuda cores", "RUVLLM_CUDA_ATTN_MMA=0"},
        {"vec cuda cores, pieces of 32", "RUVLLM_CUDA_ATTN_MMA=0 RUVLLM_CUDA_ATTN_VEC_PIECE=32"},
        {"vec cuda cores, VEC_LAT=0", "RUVLLM_CUDA_ATTN_MMA=0 RUVLLM_CUDA_ATTN_VEC_LAT=0"},
        {"vec, single tokens in pieces of 64, 8 chunks prefetched",
         "RUVLLM_CUDA_ATTN_VEC_PIECE1=64 RUVLLM_CUDA_ATTN_VEC_PF=8"},
        {"vec, single tokens in one wave of pieces", "RUVLLM_CUDA_ATTN_VEC_PIECE1=0"}};
    /* RUVLLM_FATTN_VEC_SETS: the sets whose name holds one of its '|'-separated words (the
     * sanitizers' runs) */
    const char *pick = getenv("RUVLLM_FATTN_VEC_SETS");
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (pick) {
            bool hit = false;
            char w[64];
            for (const char *p = pick; *p && !hit;) {
                size_t n = strcspn(p, "|");
                if (n > 0 && n < sizeof w) {
                    memcpy(w, p, n);
                    w[n] = 0;
                    hit = strstr(sets[i][0], w) != NULL;
                }
                p += n + (p[n] == '|');
            }
            if (!hit) continue;
        }
        rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_1TOK", "0");
        env_list(sets[i][1], true);
        rl_backend *g = gpu_make(NULL, NULL, NULL);
        env_list(sets[i][1], false);
        rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_1TOK", NULL);
        CHECK(g != NULL);
        if (g) vec_cases(g, sets[i][0]);
        rl__backend_free(g);
    }
}

/* ---- the vec kernel's pieces merged in the kernel itself (one launch) ----
 * The last block of each (token, KV head, head group) to finish merges the pieces; a
 * counter per such block, reset by that block, so a call replayed as a CUDA graph must find
 * the counters at zero again. Each call runs 4 times in a row on one backend (the queue
 * captures the repeated records as a graph and replays it), with the output poisoned
 * before each run: every run the CPU's result (1e-7) and the same bits as the same call
 * with RUVLLM_CUDA_ATTN_MERGE=0 (the separate combine kernel); with up to 8 query heads a
 * block (RUVLLM_CUDA_ATTN_VEC_HPB=0: by default small calls take fewer, so other blocks and
 * pieces) the CPU's result. Single
 * tokens (the 8B and 1B shapes) and a few tokens, GQA 1, 4 and 12 (two head groups), head
 * sizes 64/128/256, spans that are not multiples of 32, an empty span, soft-cap, pieces of
 * 32 and of 256. Each backend runs all its calls before the next is made (the settings are
 * the process's). */
static void one_launch_runs(rl_backend *g, const call *c, float *o) {
    dev_call d;
    dev_make(g, c, &d);
    const size_t n = (size_t)(c->n_tok * c->out_ld);
    float *init = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        init[i] = (int64_t)(i % (size_t)c->out_ld) < (int64_t)c->n_head * c->hd ? NAN : 0.0f;
    float *run = malloc(n * sizeof(float));
    for (int rep = 0; rep < 4; rep++) {
        g->ops->from_host(g, d.out, init, n * sizeof(float));
        rl_attn_args a = call_args(c, d.q, d.out);
        g->ops->attention(g, &d.kg, &a);
        g->ops->to_host(g, run, d.out, n * sizeof(float));
        CHECK(g->ops->sync(g) == RL_OK);
        if (rep == 0) memcpy(o, run, n * sizeof(float));
        CHECKF(memcmp(o, run, n * sizeof(float)) == 0, "one launch: run %d differs from run 0", rep);
    }
    free(run);
    free(init);
    dev_free(g, &d);
}

TEST(attn_one_launch) {
    if (!g_forced) SKIP("%s", g_skip);
    static const struct {
        int32_t n_head, n_head_kv, hd, n_tok, maxlen;
    } cs[] = {{32, 8, 128, 1, 1000}, {32, 8, 128, 1, 255}, {32, 8, 64, 1, 700},
              {32, 8, 64, 1, 33},    {24, 2, 128, 2, 900}, {4, 4, 64, 3, 500},
              {8, 2, 256, 1, 600},   {16, 4, 128, 5, 410}, {32, 8, 128, 1, 4000}};
    enum { NC = sizeof cs / sizeof cs[0] };
    for (int pc = 0; pc < 2; pc++) {
        call c[NC];
        enum { NM = 8 };
        float *o[NM][NC];
        for (size_t i = 0; i < NC; i++) {
            g_decode_max = cs[i].maxlen;
            call_make(&c[i], RL_TYPE_F16, cs[i].n_head, cs[i].n_head_kv, cs[i].hd, cs[i].n_tok,
                      PAT_DECODE, i % 3 == 1 ? 25.0f : 0.0f);
            g_decode_max = 300;
            if (c[i].n_tok == 1) { /* the longest span the shape allows, not a multiple of 32 */
                c[i].span[0] = 0;
                c[i].span[1] = RL_MIN(c[i].n_list, cs[i].maxlen);
                for (int32_t j = 0; j < c[i].span[1]; j++)
                    if (c[i].list[j] == 0x3fffffff) c[i].list[j] = j % c[i].n_cells;
            }
            call_ref(&c[i]);
        }
        /* the settings are the process's: each backend runs its calls before the next is made */
        /* 0: merged, 1: the combine kernel (both on the mma variant, single tokens too),
         * 2: merged on the CUDA-core arithmetic (MMA=0) with HPB=0; on the CUDA cores with
         * the defaults 3: merged (rows prefetched to L2, the merge's loads in one round
         * trip), 4: the combine kernel, 5: merged as before that (VEC_LAT=0), 6: single
         * tokens in pieces of 64 cells with 8 chunks a warp prefetched, 7: single tokens in
         * as many pieces as one wave holds (PIECE1=0) */
        static const char *const ms[NM][6] = {
            /* MERGE, HPB, MMA, MMA_MIN, VEC_LAT, VEC_PIECE1 + VEC_PF */
            {NULL, NULL, NULL, "1", NULL, NULL}, {"0", NULL, NULL, "1", NULL, NULL},
            {NULL, "0", "0", NULL, NULL, NULL},  {NULL, NULL, "0", NULL, NULL, NULL},
            {"0", NULL, "0", NULL, NULL, NULL},  {NULL, NULL, "0", NULL, "0", NULL},
            {NULL, NULL, "0", NULL, NULL, "64"}, {NULL, NULL, "0", NULL, NULL, "0"}};
        for (int m = 0; m < NM; m++) {
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_PIECE", pc ? "32" : NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MERGE", ms[m][0]);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_HPB", ms[m][1]);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MMA", ms[m][2]);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MMA_MIN", ms[m][3]);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_LAT", ms[m][4]);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_PIECE1", ms[m][5]);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_PF", ms[m][5] ? "8" : NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_1TOK", "0"); /* MERGE=0 would keep short spans off vec */
            rl_backend *g = gpu_make(NULL, NULL, NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MERGE", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_PIECE", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_1TOK", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_HPB", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MMA", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MMA_MIN", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_LAT", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_PIECE1", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_PF", NULL);
            CHECK(g != NULL);
            for (size_t i = 0; i < NC; i++) {
                o[m][i] = calloc((size_t)(c[i].n_tok * c[i].out_ld), sizeof(float));
                if (g) one_launch_runs(g, &c[i], o[m][i]);
            }
            int64_t ne = 0, nc = 0, nr = 0;
            if (g && m == 0) {
                CHECK(rl__cuda_graph_stats(g, &ne, &nc, &nr));
                CHECKF(nr > 0, "one launch: no graph was replayed (eager %lld, captured %lld)",
                       (long long)ne, (long long)nc);
            }
            rl__backend_free(g);
        }
        for (size_t i = 0; i < NC; i++) {
            const size_t n = (size_t)(c[i].n_tok * c[i].out_ld);
            const double e = rl_test_nmse(o[0][i], c[i].ref, n);
            CHECKF(e <= 1e-7, "one launch case %zu (pieces %s): nmse %.3g", i, pc ? "32" : "256", e);
            CHECKF(memcmp(o[0][i], o[1][i], n * sizeof(float)) == 0,
                   "one launch case %zu (pieces %s): differs from the combine's bits", i,
                   pc ? "32" : "256");
            /* HPB=0: other blocks, so other pieces (other bits) */
            const double e2 = rl_test_nmse(o[2][i], c[i].ref, n);
            CHECKF(e2 <= 1e-7, "one launch case %zu (pieces %s, HPB=0): nmse %.3g", i,
                   pc ? "32" : "256", e2);
            /* the CUDA cores: merged, the combine's bits, the bits of the path before the
             * latency work (same pieces, same sums); pieces of 64 for single tokens */
            const double e3 = rl_test_nmse(o[3][i], c[i].ref, n);
            CHECKF(e3 <= 1e-7, "one launch case %zu (pieces %s, MMA=0): nmse %.3g", i,
                   pc ? "32" : "256", e3);
            CHECKF(memcmp(o[3][i], o[4][i], n * sizeof(float)) == 0,
                   "one launch case %zu (pieces %s, MMA=0): differs from the combine's bits", i,
                   pc ? "32" : "256");
            CHECKF(memcmp(o[3][i], o[5][i], n * sizeof(float)) == 0,
                   "one launch case %zu (pieces %s, MMA=0): differs from VEC_LAT=0's bits", i,
                   pc ? "32" : "256");
            const double e6 = rl_test_nmse(o[6][i], c[i].ref, n);
            CHECKF(e6 <= 1e-7, "one launch case %zu (pieces %s, PIECE1=64): nmse %.3g", i,
                   pc ? "32" : "256", e6);
            const double e7 = rl_test_nmse(o[7][i], c[i].ref, n);
            CHECKF(e7 <= 1e-7, "one launch case %zu (pieces %s, PIECE1=0): nmse %.3g", i,
                   pc ? "32" : "256", e7);
            for (int m = 0; m < NM; m++) free(o[m][i]);
            call_free(&c[i]);
        }
    }
}

/* ---- attention whose output a q8 product reads (step.c's fuse pass) ---- */

/* One call then the product of its output with w (y [n_tok][rows]) on g: y and the
 * attention output to the host. */
static void attn_then_product(rl_backend *g, const call *c, const rl_weight *w, float *o,
                              float *y) {
    dev_call d;
    dev_make(g, c, &d);
    const int64_t rows = w->ne[1];
    float *yd = g->ops->alloc(g, (size_t)(c->n_tok * rows) * sizeof(float));
    CHECK(yd != NULL);
    rl_attn_args a = call_args(c, d.q, d.out);
    g->ops->attention(g, &d.kg, &a);
    CHECK(g->ops->matmul(g, w, d.out, c->n_tok, yd) == RL_OK);
    g->ops->to_host(g, o, d.out, (size_t)(c->n_tok * c->out_ld) * sizeof(float));
    g->ops->to_host(g, y, yd, (size_t)(c->n_tok * rows) * sizeof(float));
    CHECK(g->ops->sync(g) == RL_OK);
    g->ops->free(g, yd);
    dev_free(g, &d);
}

/* Attention then a Q4_K product of its output, 1 to 4 tokens: the fuse pass hands the
 * product's input quantization to the attention (the vec kernel's own, one piece or the
 * pieces merged in it; else the combine's); the same calls with RUVLLM_CUDA_FUSE=0 must give
 * the same bits (attention output and product), and so must the fused calls whose pieces the
 * combine kernel merges (RUVLLM_CUDA_ATTN_MERGE=0); the attention the CPU's (1e-7); with up
 * to 8 query heads a block (RUVLLM_CUDA_ATTN_VEC_HPB=0) fused and unfused the same bits. Under the
 * default settings, then with single tokens under 2048 cells on the tiled kernel
 * (RUVLLM_CUDA_ATTN_VEC_1TOK=2048). */
static void q8_fused_cases(const char *one);

TEST(attn_q8_fused) {
    if (!g_forced) SKIP("%s", g_skip);
    q8_fused_cases(NULL);
    q8_fused_cases("2048"); /* single tokens under 2048 cells on the tiled kernel */
}

static void q8_fused_cases(const char *one) {
    static const struct {
        int32_t n_head, n_head_kv, hd, n_tok, maxlen;
    } cs[] = {{32, 8, 128, 1, 100}, {32, 8, 128, 1, 3000}, {32, 8, 64, 1, 200},
              {32, 8, 64, 3, 2000}, {16, 2, 128, 4, 150},  {8, 2, 256, 2, 90}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        call c;
        const int32_t out_ld_fix = cs[i].n_head * cs[i].hd;
        g_decode_max = cs[i].maxlen;
        call_make(&c, RL_TYPE_F16, cs[i].n_head, cs[i].n_head_kv, cs[i].hd, cs[i].n_tok,
                  PAT_DECODE, 0.0f);
        g_decode_max = 300;
        c.out_ld = out_ld_fix; /* the product reads the output as its rows */
        call_ref(&c);
        const int64_t rows = 256, no = (int64_t)c.n_tok * c.out_ld;
        float *o[5], *y[5];
        for (int f = 0; f < 5; f++) { /* unfused, fused, fused with the combine kernel, fused
                                         and unfused with VEC_HPB=0 */
            rl_test_env_set("RUVLLM_CUDA_FUSE", f && f != 4 ? NULL : "0");
            /* MERGE=0 alone would send single tokens under 2048 cells to the tiled kernel */
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_1TOK", f == 2 && !one ? "0" : one);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MERGE", f == 2 ? "0" : NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_HPB", f >= 3 ? "0" : NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MMA", f >= 3 ? "0" : NULL); /* the CUDA-core arithmetic */
            rl_backend *g = gpu_make(NULL, NULL, NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MMA", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_HPB", NULL);
            rl_test_env_set("RUVLLM_CUDA_FUSE", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_VEC_1TOK", NULL);
            rl_test_env_set("RUVLLM_CUDA_ATTN_MERGE", NULL);
            o[f] = calloc((size_t)no, sizeof(float));
            y[f] = calloc((size_t)(c.n_tok * rows), sizeof(float));
            CHECK(g != NULL);
            if (!g) continue;
            g_rng = 0x9e3779b97f4a7c15ull + i; /* the same weight on both */
            rl_weight w = rl_test_dev_weight(g, RL_TYPE_Q4_K, out_ld_fix, rows, &g_rng);
            attn_then_product(g, &c, &w, o[f], y[f]);
            g->ops->free(g, (void *)w.data);
            rl__backend_free(g);
        }
        const double e = rl_test_nmse(o[1], c.ref, (size_t)no);
        CHECKF(e <= 1e-7, "q8 fused case %zu (1TOK %s): attention nmse %.3g", i, one ? one : "-", e);
        CHECKF(memcmp(o[0], o[1], (size_t)no * sizeof(float)) == 0,
               "q8 fused case %zu (1TOK %s): attention output differs from the unfused", i,
               one ? one : "-");
        CHECKF(memcmp(y[0], y[1], (size_t)(c.n_tok * rows) * sizeof(float)) == 0,
               "q8 fused case %zu (1TOK %s): product differs from the unfused", i, one ? one : "-");
        CHECKF(memcmp(o[2], o[1], (size_t)no * sizeof(float)) == 0 &&
                   memcmp(y[2], y[1], (size_t)(c.n_tok * rows) * sizeof(float)) == 0,
               "q8 fused case %zu (1TOK %s): the combine kernel's bits differ from the merge's",
               i, one ? one : "-");
        const double e3 = rl_test_nmse(o[3], c.ref, (size_t)no);
        CHECKF(e3 <= 1e-7, "q8 fused case %zu (1TOK %s, HPB=0): nmse %.3g", i,
               one ? one : "-", e3);
        CHECKF(memcmp(o[3], o[4], (size_t)no * sizeof(float)) == 0 &&
                   memcmp(y[3], y[4], (size_t)(c.n_tok * rows) * sizeof(float)) == 0,
               "q8 fused case %zu (1TOK %s, HPB=0): fused differs from unfused", i,
               one ? one : "-");
        double ysq = 0;
        for (int64_t j = 0; j < c.n_tok * rows; j++) ysq += (double)y[1][j] * y[1][j];
        CHECKF(ysq > 0, "q8 fused case %zu: the product is all zeros", i);
        for (int f = 0; f < 5; f++) {
            free(o[f]);
            free(y[f]);
        }
        call_free(&c);
    }
}

/* ---- timing (RUVLLM_FATTN_BENCH=1) ---- */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Microseconds per call, 20 calls (RUVLLM_FATTN_BENCH_N) queued then one sync, best of 3. */
static double time_call(rl_backend *g, const call *c) {
    dev_call d;
    dev_make(g, c, &d);
    rl_attn_args a = call_args(c, d.q, d.out);
    double best = 1e30;
    const char *nv = getenv("RUVLLM_FATTN_BENCH_N");
    const int n = nv && atoi(nv) > 0 ? atoi(nv) : 20;
    g->ops->attention(g, &d.kg, &a);
    g->ops->sync(g);
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now_s();
        for (int i = 0; i < n; i++) g->ops->attention(g, &d.kg, &a);
        rl_status st = g->ops->sync(g);
        const double t = st == RL_OK ? (now_s() - t0) / n : 1e30;
        if (t < best) best = t;
    }
    dev_free(g, &d);
    return 1e6 * best;
}

typedef struct bench_shape {
    const char *name;
    int32_t n_head, n_head_kv, hd, n_tok, past; /* past < 0: decode, -past cells each */
} bench_shape;

/* A call of shape b over zero caches (timing only): causal prefill after b->past cells, or
 * (b->past < 0) a token per sequence of -b->past cells. */
static void bench_call_make(const bench_shape *b, call *c) {
    memset(c, 0, sizeof *c);
    c->type = RL_TYPE_F16;
    c->n_head = b->n_head;
    c->n_head_kv = b->n_head_kv;
    c->hd = b->hd;
    c->n_tok = b->n_tok;
    c->span = malloc(2 * (size_t)b->n_tok * sizeof(int32_t));
    int32_t at = 0;
    for (int32_t t = 0; t < b->n_tok; t++) {
        if (b->past < 0) {
            c->span[2 * t] = at;
            at += -b->past;
            c->span[2 * t + 1] = at;
        } else {
            c->span[2 * t] = 0;
            c->span[2 * t + 1] = b->past + t + 1;
        }
    }
    if (b->past >= 0) at = b->past + b->n_tok;
    c->n_list = c->n_cells = at;
    c->list = malloc((size_t)at * sizeof(int32_t));
    for (int32_t j = 0; j < at; j++) c->list[j] = j;
    rl_kv_layer l = {.type = RL_TYPE_F16,
                     .n_embd_k = b->n_head_kv * b->hd,
                     .n_embd_v = b->n_head_kv * b->hd};
    rl_type_row_bytes(l.type, l.n_embd_k, &l.k_row_bytes);
    rl_type_row_bytes(l.type, l.n_embd_v, &l.v_row_bytes);
    l.k = calloc((size_t)at, l.k_row_bytes);
    l.v = calloc((size_t)at, l.v_row_bytes);
    c->kc = l;
    c->q_ld = c->out_ld = (int64_t)b->n_head * b->hd;
    c->q = calloc((size_t)(b->n_tok * c->q_ld), sizeof(float));
}

/* Settings of a timing column: a space-separated list of NAME=VALUE (NULL: none). */
typedef struct bench_set {
    const char *label, *env;
} bench_set;

static rl_backend *bench_make(const bench_set *b) {
    env_list(b->env, true);
    rl_backend *g = gpu_make(NULL, NULL, NULL);
    env_list(b->env, false);
    return g;
}

/* Microseconds per (attention, Q4_K product of its output with 256 rows) pair, as
 * time_call: what a decode step's attention and o product cost with the fuse pass on or off. */
static double time_pair(rl_backend *g, const call *c) {
    dev_call d;
    dev_make(g, c, &d);
    rl_weight w = rl_test_dev_weight(g, RL_TYPE_Q4_K, (int64_t)c->n_head * c->hd, 256, NULL);
    float *yd = g->ops->alloc(g, (size_t)c->n_tok * 256 * sizeof(float));
    rl_attn_args a = call_args(c, d.q, d.out);
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        const double t0 = now_s();
        for (int i = 0; i < 20; i++) {
            g->ops->attention(g, &d.kg, &a);
            g->ops->matmul(g, &w, d.out, c->n_tok, yd);
        }
        rl_status st = g->ops->sync(g);
        const double t = st == RL_OK ? (now_s() - t0) / 20 : 1e30;
        if (rep > 0 && t < best) best = t;
    }
    g->ops->free(g, yd);
    g->ops->free(g, (void *)w.data);
    dev_free(g, &d);
    return 1e6 * best;
}

/* KV bytes a call of shape b reads at least (every listed cell's K and V rows once), as
 * microseconds at 3.35 TB/s (H100 SXM HBM3). */
static double floor_us(const call *c) {
    return (double)c->n_list * (double)(c->kc.k_row_bytes + c->kc.v_row_bytes) / 3.35e6;
}

static void bench(void) {
    static const bench_shape shapes[] = {
        {"1B 1 x 16", 32, 8, 64, 1, -16},       {"1B 1 x 80", 32, 8, 64, 1, -80},
        {"1B 1 x 256", 32, 8, 64, 1, -256},     {"1B 1 x 640", 32, 8, 64, 1, -640},
        {"1B 1 x 1024", 32, 8, 64, 1, -1024},   {"1B 1 x 4096", 32, 8, 64, 1, -4096},
        {"8B 1 x 16", 32, 8, 128, 1, -16},      {"8B 1 x 80", 32, 8, 128, 1, -80},
        {"8B 1 x 256", 32, 8, 128, 1, -256},    {"8B 1 x 512", 32, 8, 128, 1, -512},
        {"8B 1 x 640", 32, 8, 128, 1, -640},    {"8B 1 x 1024", 32, 8, 128, 1, -1024},
        {"8B 1 x 4096", 32, 8, 128, 1, -4096},  {"8B 4 x 640", 32, 8, 128, 4, -640},
        {"8B 8 x 64", 32, 8, 128, 8, -64},      {"8B 8 x 640", 32, 8, 128, 8, -640},
        {"8B 8 x 2048", 32, 8, 128, 8, -2048},  {"8B 32 x 64", 32, 8, 128, 32, -64},
        {"8B 32 x 640", 32, 8, 128, 32, -640},  {"8B 32 x 2048", 32, 8, 128, 32, -2048},
        {"8B 64 x 64", 32, 8, 128, 64, -64},    {"8B 64 x 640", 32, 8, 128, 64, -640},
        {"8B 64 x 2048", 32, 8, 128, 64, -2048}, {"1B 32 x 640", 32, 8, 64, 32, -640},
        {"8B chunk 8 @512", 32, 8, 128, 8, 512},
        {"8B chunk 16 @512", 32, 8, 128, 16, 512}, {"8B prefill 512", 32, 8, 128, 512, 0},
    };
    enum { NS = sizeof shapes / sizeof shapes[0], NSET = 10 };
    static const bench_set sets[NSET] = {
        {"before: VEC_LAT=0", "RUVLLM_CUDA_ATTN_VEC_LAT=0"},
        {"default", NULL},
        {"PIECE1=128", "RUVLLM_CUDA_ATTN_VEC_PIECE1=128"},
        {"PIECE1=64", "RUVLLM_CUDA_ATTN_VEC_PIECE1=64"},
        {"PIECE1=32", "RUVLLM_CUDA_ATTN_VEC_PIECE1=32"},
        {"PIECE1=64 PF=8", "RUVLLM_CUDA_ATTN_VEC_PIECE1=64 RUVLLM_CUDA_ATTN_VEC_PF=8"},
        {"PIECE1=0 (one wave)", "RUVLLM_CUDA_ATTN_VEC_PIECE1=0"},
        {"KV2=0", "RUVLLM_CUDA_ATTN_VEC_KV2=0"},
        {"CUDA cores: MMA=0", "RUVLLM_CUDA_ATTN_MMA=0"},
        {"MMA=0 VEC_LAT=0", "RUVLLM_CUDA_ATTN_MMA=0 RUVLLM_CUDA_ATTN_VEC_LAT=0"}};
    static double us[NSET][NS], fl[NS];
    /* RUVLLM_FATTN_BENCH_ONLY: the shapes whose name holds it; RUVLLM_FATTN_BENCH_SET: that
     * column alone (profiling one kernel) */
    const char *only = getenv("RUVLLM_FATTN_BENCH_ONLY"), *one_set = getenv("RUVLLM_FATTN_BENCH_SET");
    for (int st = 0; st < NSET; st++) {
        if (one_set && atoi(one_set) != st) continue;
        rl_backend *g = bench_make(&sets[st]);
        for (size_t i = 0; i < NS; i++) {
            if (only && !strstr(shapes[i].name, only)) continue;
            call c;
            bench_call_make(&shapes[i], &c);
            fl[i] = floor_us(&c);
            us[st][i] = g ? time_call(g, &c) : 0.0;
            call_free(&c);
        }
        rl__backend_free(g);
    }
    fprintf(stderr, "bench: us per attention call (one layer); KV floor at 3.35 TB/s; columns:");
    for (int st = 0; st < NSET; st++) fprintf(stderr, " [%s]", sets[st].label);
    fprintf(stderr, "; then default / floor\n");
    for (size_t i = 0; i < NS; i++) {
        if (only && !strstr(shapes[i].name, only)) continue;
        fprintf(stderr, "bench %-18s floor %7.1f", shapes[i].name, fl[i]);
        for (int st = 0; st < NSET; st++) fprintf(stderr, " %8.1f", us[st][i]);
        fprintf(stderr, "  x%.2f\n", us[1][i] / fl[i]);
    }
    /* attention + o product pairs, one token (the q8 path) */
    static const bench_shape ps[] = {
        {"1B 1 x 16", 32, 8, 64, 1, -16},     {"1B 1 x 80", 32, 8, 64, 1, -80},
        {"1B 1 x 256", 32, 8, 64, 1, -256},   {"8B 1 x 80", 32, 8, 128, 1, -80},
        {"1B 1 x 1024", 32, 8, 64, 1, -1024}, {"8B 1 x 16", 32, 8, 128, 1, -16},
        {"8B 1 x 256", 32, 8, 128, 1, -256},  {"8B 1 x 640", 32, 8, 128, 1, -640},
        {"8B 1 x 4096", 32, 8, 128, 1, -4096}, {"8B 4 x 640", 32, 8, 128, 4, -640},
    };
    enum { NP = sizeof ps / sizeof ps[0], NPS = 6 };
    static const bench_set pset[NPS] = {
        {"before fused (VEC_LAT=0)", "RUVLLM_CUDA_ATTN_VEC_LAT=0"},
        {"default fused", NULL},
        {"PIECE1=64 fused", "RUVLLM_CUDA_ATTN_VEC_PIECE1=64"},
        {"PIECE1=128 fused", "RUVLLM_CUDA_ATTN_VEC_PIECE1=128"},
        {"PIECE1=0 fused", "RUVLLM_CUDA_ATTN_VEC_PIECE1=0"},
        {"default unfused", "RUVLLM_CUDA_FUSE=0"}};
    static double pus[NPS][NP];
    if (one_set) return;
    for (int st = 0; st < NPS; st++) {
        rl_backend *g = bench_make(&pset[st]);
        for (size_t i = 0; i < NP; i++) {
            if (only && !strstr(ps[i].name, only)) continue;
            call c;
            bench_call_make(&ps[i], &c);
            pus[st][i] = g ? time_pair(g, &c) : 0.0;
            call_free(&c);
        }
        rl__backend_free(g);
    }
    fprintf(stderr, "bench: us per (attention, Q4_K 256-row product) pair; columns:");
    for (int st = 0; st < NPS; st++) fprintf(stderr, " [%s]", pset[st].label);
    fprintf(stderr, "\n");
    for (size_t i = 0; i < NP; i++) {
        if (only && !strstr(ps[i].name, only)) continue;
        fprintf(stderr, "pair  %-18s", ps[i].name);
        for (int st = 0; st < NPS; st++) fprintf(stderr, " %8.1f", pus[st][i]);
        fprintf(stderr, "\n");
    }
}

/* RUVLLM_FATTN_BENCH=3: batched decode on the mma kernel's load rings (warps a block W,
 * stages a warp S, the L2::256B hint), the kernel as it was (PIPE=0) first and last. */
static void bench_pipe(void) {
    static const bench_shape shapes[] = {
        {"8B 1 x 256", 32, 8, 128, 1, -256},   {"8B 8 x 640", 32, 8, 128, 8, -640},
        {"8B 8 x 2048", 32, 8, 128, 8, -2048}, {"8B 32 x 64", 32, 8, 128, 32, -64},
        {"8B 32 x 640", 32, 8, 128, 32, -640}, {"8B 32 x 2048", 32, 8, 128, 32, -2048},
        {"8B 64 x 640", 32, 8, 128, 64, -640}, {"8B 64 x 2048", 32, 8, 128, 64, -2048},
        {"1B 1 x 256", 32, 8, 64, 1, -256},    {"1B 8 x 640", 32, 8, 64, 8, -640},
        {"1B 32 x 640", 32, 8, 64, 32, -640},  {"1B 32 x 2048", 32, 8, 64, 32, -2048},
        {"1B 64 x 640", 32, 8, 64, 64, -640},  {"1B 64 x 2048", 32, 8, 64, 64, -2048},
    };
    enum { NS = sizeof shapes / sizeof shapes[0], NSET = 18 };
    static const bench_set sets[NSET] = {
        {"PIPE=0", "RUVLLM_CUDA_ATTN_MMA_PIPE=0"},
        {"default", NULL},
        {"W2S3", "RUVLLM_CUDA_ATTN_MMA_NST=3"},
        {"W2S4", "RUVLLM_CUDA_ATTN_MMA_NST=4"},
        {"W1S2", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=2"},
        {"W1S3", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=3"},
        {"W1S4", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=4"},
        {"W4S2", "RUVLLM_CUDA_ATTN_MMA_W=4 RUVLLM_CUDA_ATTN_MMA_NST=2"},
        {"W2S2L2", "RUVLLM_CUDA_ATTN_MMA_NST=2 RUVLLM_CUDA_ATTN_MMA_L2=1"},
        {"W2S3L2", "RUVLLM_CUDA_ATTN_MMA_NST=3 RUVLLM_CUDA_ATTN_MMA_L2=1"},
        {"W1S3L2", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=3 RUVLLM_CUDA_ATTN_MMA_L2=1"},
        {"W1S4L2", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=4 RUVLLM_CUDA_ATTN_MMA_L2=1"},
        {"W2S2B", "RUVLLM_CUDA_ATTN_MMA_NST=2 RUVLLM_CUDA_ATTN_MMA_BULK=1"},
        {"W2S3B", "RUVLLM_CUDA_ATTN_MMA_NST=3 RUVLLM_CUDA_ATTN_MMA_BULK=1"},
        {"W1S3B", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=3 RUVLLM_CUDA_ATTN_MMA_BULK=1"},
        {"W1S4B", "RUVLLM_CUDA_ATTN_MMA_W=1 RUVLLM_CUDA_ATTN_MMA_NST=4 RUVLLM_CUDA_ATTN_MMA_BULK=1"},
        {"MMA=0", "RUVLLM_CUDA_ATTN_MMA=0"},
        {"PIPE=0 again", "RUVLLM_CUDA_ATTN_MMA_PIPE=0"}};
    static double us[NSET][NS], fl[NS];
    const char *only = getenv("RUVLLM_FATTN_BENCH_ONLY");
    for (int st = 0; st < NSET; st++) {
        rl_backend *g = bench_make(&sets[st]);
        for (size_t i = 0; i < NS; i++) {
            if (only && !strstr(shapes[i].name, only)) continue;
            call c;
            bench_call_make(&shapes[i], &c);
            fl[i] = floor_us(&c);
            us[st][i] = g ? time_call(g, &c) : 0.0;
            call_free(&c);
        }
        rl__backend_free(g);
    }
    fprintf(stderr, "pipe: us per attention call (one layer); KV floor at 3.35 TB/s\n");
    fprintf(stderr, "pipe %-13s %6s", "shape", "floor");
    for (int st = 0; st < NSET; st++) fprintf(stderr, " %7.7s", sets[st].label);
    fprintf(stderr, "\n");
    for (size_t i = 0; i < NS; i++) {
        if (only && !strstr(shapes[i].name, only)) continue;
        fprintf(stderr, "pipe %-13s %6.1f", shapes[i].name, fl[i]);
        for (int st = 0; st < NSET; st++) fprintf(stderr, " %7.1f", us[st][i]);
        fprintf(stderr, "\n");
    }
}

int main(void) {
    if (rl__backend_cpu_create(2, &cpu) != RL_OK) {
        fprintf(stderr, "cannot create the CPU backend\n");
        return 1;
    }
    g_forced = gpu_make("2", NULL, NULL);
    /* 2: the timing alone; 3: the mma kernel's load rings alone (bench_pipe) */
    const char *b = getenv("RUVLLM_FATTN_BENCH");
    /* RUVLLM_FATTN_TESTS: the tests whose names it holds (the sanitizers' runs) */
    const char *only = getenv("RUVLLM_FATTN_TESTS");
#define RUN_PICKED(name)                                                                           \
    if (!only || strstr(only, #name)) RUN(name)
    if (!(b && (b[0] == '2' || b[0] == '3'))) {
        RUN_PICKED(fattn_head_sizes);
        RUN_PICKED(fattn_token_counts);
        RUN_PICKED(fattn_dispatch);
        RUN_PICKED(attn_vec);
        RUN_PICKED(attn_q8_fused);
        RUN_PICKED(attn_one_launch);
        if (g_forced) fprintf(stderr, "fattn: %d calls, worst nmse %.3g\n", g_calls, g_worst);
    }
    if (g_forced && b && (b[0] == '1' || b[0] == '2')) bench();
    if (g_forced && b && b[0] == '3') bench_pipe();
    rl__backend_free(g_forced);
    rl__backend_free(cpu);
    rl_test_env_set("RUVLLM_CUDA_FATTN", NULL);
    rl_test_env_set("RUVLLM_CUDA_FATTN_SPARSE", NULL);
    rl_test_env_set("RUVLLM_CUDA_ATTN_TILED_MAX", NULL);
    return rl_test_finish();
}
