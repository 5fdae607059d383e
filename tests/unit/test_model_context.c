/* The inference context beyond single-sequence goldens: a batch equals the same tokens
 * fed one at a time; two sequences in one batch equal each run alone; the sequence
 * operations (fork, remove, clear); context overflow and bad batches are errors that
 * leave the cache as it was; nothing is allocated inside rl_decode; other KV cache
 * types stay near the goldens; every ISA path gives the same greedy tokens; load errors
 * name the key or tensor; allocation failures unwind cleanly. */
#include "golden.h"
#include "test.h"
#include "model/model.h"
#include "util/util.h"

#include <unistd.h>

static rl_model *load(const char *rel) {
    const char *path = !strncmp(rel, "models/zoo/", 11) ? rl_test_zoo_model(rel + 11)
                                                          : rl_test_data(rel);
    if (!path || access(path, R_OK) != 0) return NULL;
    char err[512];
    rl_model *m = NULL;
    rl_status st = rl_model_load(path, NULL, &m, err, sizeof err);
    CHECKF(st == RL_OK, "%s: %s", rel, err);
    return m;
}

static rl_context *make_ctx(rl_model *m, int n_ctx, int n_batch, int n_seq, int n_out,
                            rl_type kv, int n_threads) {
    rl_context_params p = rl_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_seq_max = n_seq;
    p.n_outputs_max = n_out;
    p.kv_type = kv;
    p.n_threads = n_threads;
    char err[512];
    rl_context *ctx = NULL;
    rl_status st = rl_context_create(m, &p, &ctx, err, sizeof err);
    CHECKF(st == RL_OK, "%s", err);
    return ctx;
}

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* Prompt pi of a golden. */
static bool prompt(const char *golden, int pi, rl_golden_prompt *p) {
    rl_golden g;
    if (!rl_golden_load(golden, &g)) return false;
    bool ok = rl_golden_prompt_get(&g, pi, p);
    rl_golden_free(&g);
    return ok;
}

/* All-positions logits of tokens fed one at a time into a fresh sequence 0. */
static float *sequential_logits(rl_model *m, const rl_token *toks, int n) {
    const int nv = rl_model_n_vocab(m);
    float *out = malloc((size_t)n * (size_t)nv * sizeof(float));
    rl_context *ctx = make_ctx(m, 256, 64, 1, 1, RL_TYPE_F32, 2);
    if (!ctx) return out;
    for (int i = 0; i < n; i++) {
        rl_batch b = rl_batch_get(&toks[i], 1);
        CHECK(rl_decode(ctx, &b) == RL_OK);
        memcpy(out + (size_t)i * nv, rl_get_logits(ctx, 0), (size_t)nv * sizeof(float));
    }
    rl_context_free(ctx);
    return out;
}

/* One batch, all logits, with micro-batches of n_batch, must equal token-by-token. */
static void check_batch_vs_sequential(const char *model, const char *golden, double tol) {
    rl_golden_prompt p;
    rl_model *m = load(model);
    if (!m || !prompt(golden, 2, &p)) {
        rl_model_free(m);
        return;
    }
    const int nv = rl_model_n_vocab(m), n = p.n_tokens;
    float *ref = sequential_logits(m, p.tokens, n);
    int8_t flags[512];
    memset(flags, 1, sizeof flags);
    const int n_batches[] = {512, 7, 1};
    for (size_t bi = 0; bi < 3; bi++) {
        rl_context *ctx = make_ctx(m, 256, n_batches[bi], 1, 64, RL_TYPE_F32, 2);
        if (!ctx) break;
        rl_batch b = {.n_tokens = n, .token = p.tokens, .logits = flags};
        CHECK(rl_decode(ctx, &b) == RL_OK);
        double e = 0;
        for (int i = 0; i < n; i++) {
            const float *lg = rl_get_logits(ctx, i);
            CHECK(lg != NULL);
            if (lg) e = fmax(e, max_diff(lg, ref + (size_t)i * nv, nv));
        }
        CHECKF(e <= tol, "%s n_batch %d: batch vs sequential %.3g", model, n_batches[bi], e);
        fprintf(stderr, "  %s: %d tokens in one batch (n_batch %d) vs one at a time: max %.3g\n",
                model, n, n_batches[bi], e);
        CHECK(rl_get_logits(ctx, -1) == rl_get_logits(ctx, n - 1));
        CHECK(rl_get_logits(ctx, -n) == rl_get_logits(ctx, 0));
        CHECK(rl_get_logits(ctx, -n - 1) == NULL);
        CHECK(rl_get_logits(ctx, n) == NULL);
        rl_context_free(ctx);
    }
    free(ref);
    rl_model_free(m);
}

TEST(batch_vs_sequential) {
    if (access(rl_test_data("models/stories260K.gguf"), R_OK)) SKIP("no stories260K");
    check_batch_vs_sequential("models/stories260K.gguf", "stories260K", 1e-5);
    check_batch_vs_sequential("models/stories260K-q4_1.gguf", "stories260K", 1e-5);
    check_batch_vs_sequential("models/zoo/llama3-F32.gguf", "llama3-F32", 1e-5);
    check_batch_vs_sequential("models/zoo/llama3-Q4_K_M.gguf", "llama3-F32", 1e-5);
}

/* Two prompts interleaved in one batch (seq 0 and 1) give each one's logits alone; then a
 * step with one token per sequence does too. */
TEST(two_sequences) {
    rl_golden_prompt pa, pb;
    rl_model *m = load("models/stories260K.gguf");
    if (!m || !prompt("stories260K", 2, &pa) || !prompt("stories260K", 3, &pb)) {
        rl_model_free(m);
        SKIP("no stories260K");
    }
    const int nv = rl_model_n_vocab(m);
    rl_token next[2] = {pa.greedy[0], pb.greedy[0]};
    rl_token ta[513], tb[513];
    memcpy(ta, pa.tokens, sizeof(rl_token) * (size_t)pa.n_tokens);
    memcpy(tb, pb.tokens, sizeof(rl_token) * (size_t)pb.n_tokens);
    ta[pa.n_tokens] = next[0];
    tb[pb.n_tokens] = next[1];
    float *ra = sequential_logits(m, ta, pa.n_tokens + 1);
    float *rb = sequential_logits(m, tb, pb.n_tokens + 1);

    rl_context *ctx = make_ctx(m, 256, 512, 2, 256, RL_TYPE_F32, 2);
    rl_token toks[256];
    int32_t seq[256], pos[256], where[256];
    int8_t flags[256];
    int n = 0, ia = 0, ib = 0;
    while (ia < pa.n_tokens || ib < pb.n_tokens) {
        bool take_a = ib >= pb.n_tokens || (ia < pa.n_tokens && n % 3 != 2);
        toks[n] = take_a ? pa.tokens[ia] : pb.tokens[ib];
        seq[n] = take_a ? 0 : 1;
        pos[n] = take_a ? ia++ : ib++;
        where[n] = pos[n];
        flags[n] = 1;
        n++;
    }
    rl_batch b = {.n_tokens = n, .token = toks, .pos = pos, .seq_id = seq, .logits = flags};
    CHECK(rl_decode(ctx, &b) == RL_OK);
    double e = 0;
    for (int i = 0; i < n; i++) {
        const float *ref = (seq[i] ? rb : ra) + (size_t)where[i] * nv;
        e = fmax(e, max_diff(rl_get_logits(ctx, i), ref, nv));
    }
    CHECKF(e <= 1e-5, "two sequences in one batch vs alone: %.3g", e);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 0), pa.n_tokens - 1);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 1), pb.n_tokens - 1);
    CHECK_EQ_INT(rl_kv_n_used(ctx), pa.n_tokens + pb.n_tokens);

    /* one token each, positions implicit, both flagged */
    int32_t s2[2] = {1, 0};
    rl_token t2[2] = {next[1], next[0]};
    int8_t f2[2] = {1, 1};
    rl_batch b2 = {.n_tokens = 2, .token = t2, .seq_id = s2, .logits = f2};
    CHECK(rl_decode(ctx, &b2) == RL_OK);
    double e2 = fmax(max_diff(rl_get_logits(ctx, 0), rb + (size_t)pb.n_tokens * nv, nv),
                     max_diff(rl_get_logits(ctx, 1), ra + (size_t)pa.n_tokens * nv, nv));
    CHECKF(e2 <= 1e-5, "decode step of two sequences: %.3g", e2);
    fprintf(stderr, "  two sequences: prompt max %.3g, step max %.3g\n", e, e2);
    rl_context_free(ctx);
    free(ra);
    free(rb);
    rl_model_free(m);
}

/* Fork a prompt into two continuations (shared cells), remove and redo a suffix. */
TEST(sequence_ops) {
    rl_golden_prompt p;
    rl_model *m = load("models/stories260K.gguf");
    if (!m || !prompt("stories260K", 1, &p)) {
        rl_model_free(m);
        SKIP("no stories260K");
    }
    const int nv = rl_model_n_vocab(m), n = p.n_tokens;
    rl_token ta[600], tb[600];
    memcpy(ta, p.tokens, sizeof(rl_token) * (size_t)n);
    memcpy(tb, p.tokens, sizeof(rl_token) * (size_t)n);
    ta[n] = p.greedy[0];
    tb[n] = 42;
    ta[n + 1] = p.greedy[1];
    tb[n + 1] = 7;
    float *ra = sequential_logits(m, ta, n + 2);
    float *rb = sequential_logits(m, tb, n + 2);

    rl_context *ctx = make_ctx(m, 128, 64, 4, 4, RL_TYPE_F32, 2);
    rl_batch b = rl_batch_get(p.tokens, n);
    CHECK(rl_decode(ctx, &b) == RL_OK);
    CHECK(rl_kv_seq_copy(ctx, 0, 3, -1, -1) == RL_OK);
    CHECK_EQ_INT(rl_kv_n_used(ctx), n); /* shared, not copied */
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 3), n - 1);
    for (int k = 0; k < 2; k++) {
        rl_token t[2] = {ta[n + k], tb[n + k]};
        int32_t s[2] = {0, 3};
        int8_t f[2] = {1, 1};
        rl_batch b2 = {.n_tokens = 2, .token = t, .seq_id = s, .logits = f};
        CHECK(rl_decode(ctx, &b2) == RL_OK);
        CHECK(max_diff(rl_get_logits(ctx, 0), ra + (size_t)(n + k) * nv, nv) <= 1e-5);
        CHECK(max_diff(rl_get_logits(ctx, 1), rb + (size_t)(n + k) * nv, nv) <= 1e-5);
    }
    CHECK_EQ_INT(rl_kv_n_used(ctx), n + 4);

    /* drop seq 3's continuation and redo it with seq 0's tokens: equal to seq 0's */
    CHECK(rl_kv_seq_remove(ctx, 3, n, -1) == RL_OK);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 3), n - 1);
    CHECK_EQ_INT(rl_kv_n_used(ctx), n + 2);
    rl_batch b3 = {.n_tokens = 2, .token = &ta[n], .seq_id = (int32_t[]){3, 3}};
    CHECK(rl_decode(ctx, &b3) == RL_OK);
    CHECK(max_diff(rl_get_logits(ctx, -1), ra + (size_t)(n + 1) * nv, nv) <= 1e-5);

    /* removing the shared prompt from one sequence keeps it for the other */
    CHECK(rl_kv_seq_remove(ctx, 0, -1, -1) == RL_OK);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 0), -1);
    CHECK_EQ_INT(rl_kv_n_used(ctx), n + 2);
    CHECK(rl_kv_seq_remove(ctx, -1, 0, 1) == RL_OK);
    CHECK_EQ_INT(rl_kv_n_used(ctx), n + 1);
    CHECK(rl_kv_seq_remove(ctx, 4, -1, -1) == RL_ERR_INVALID_ARG);
    CHECK(rl_kv_seq_copy(ctx, 0, 9, -1, -1) == RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 9), -1);
    rl_kv_clear(ctx);
    CHECK_EQ_INT(rl_kv_n_used(ctx), 0);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 3), -1);
    CHECK(rl_get_logits(ctx, -1) == NULL);
    rl_context_free(ctx);
    free(ra);
    free(rb);
    rl_model_free(m);
}

/* Bad batches and a full context are errors that change nothing. */
TEST(errors_leave_cache_unchanged) {
    rl_model *m = load("models/stories260K.gguf");
    if (!m) SKIP("no stories260K");
    rl_context *ctx = make_ctx(m, 16, 8, 2, 2, RL_TYPE_F32, 1);
    rl_token toks[20];
    for (int i = 0; i < 20; i++) toks[i] = (rl_token)(1 + i * 7);
    rl_batch b = rl_batch_get(toks, 10);
    CHECK(rl_decode(ctx, &b) == RL_OK); /* two micro-batches */
    CHECK_EQ_INT(rl_kv_n_used(ctx), 10);

    b = rl_batch_get(toks, 7);
    CHECK(rl_decode(ctx, &b) == RL_ERR_LIMIT);
    CHECK(strstr(rl_context_errmsg(ctx), "context full") != NULL);
    CHECK_EQ_INT(rl_kv_n_used(ctx), 10);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 0), 9);

    rl_token bad = 512;
    b = rl_batch_get(&bad, 1);
    CHECK(rl_decode(ctx, &b) == RL_ERR_INVALID_ARG);
    CHECK(strstr(rl_context_errmsg(ctx), "out of range") != NULL);
    int32_t seq = 2;
    b = (rl_batch){.n_tokens = 1, .token = toks, .seq_id = &seq};
    CHECK(rl_decode(ctx, &b) == RL_ERR_INVALID_ARG);
    CHECK(strstr(rl_context_errmsg(ctx), "seq_id") != NULL);
    int32_t pos[2] = {12, 12};
    b = (rl_batch){.n_tokens = 2, .token = toks, .pos = pos};
    CHECK(rl_decode(ctx, &b) == RL_ERR_INVALID_ARG); /* not increasing */
    pos[0] = 9;
    b = (rl_batch){.n_tokens = 1, .token = toks, .pos = pos};
    CHECK(rl_decode(ctx, &b) == RL_ERR_INVALID_ARG); /* not after what seq 0 holds */
    pos[0] = -1;
    CHECK(rl_decode(ctx, &b) == RL_ERR_INVALID_ARG);
    int8_t flags[3] = {1, 1, 1};
    b = (rl_batch){.n_tokens = 3, .token = toks, .logits = flags};
    CHECK(rl_decode(ctx, &b) == RL_ERR_LIMIT); /* n_outputs_max 2 */
    CHECK(strstr(rl_context_errmsg(ctx), "n_outputs_max") != NULL);
    b = (rl_batch){.n_tokens = 0, .token = toks};
    CHECK(rl_decode(ctx, &b) == RL_ERR_INVALID_ARG);
    CHECK(rl_decode(ctx, NULL) == RL_ERR_INVALID_ARG);
    CHECK(rl_decode(NULL, &b) == RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_kv_n_used(ctx), 10);

    /* what still fits goes in, and sequence 0 continues as if nothing had happened */
    b = rl_batch_get(toks, 6);
    CHECK(rl_decode(ctx, &b) == RL_OK);
    CHECK_EQ_INT(rl_kv_n_used(ctx), 16);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 0), 15);
    b = rl_batch_get(toks, 1);
    CHECK(rl_decode(ctx, &b) == RL_ERR_LIMIT);
    /* a context shift: drop the oldest positions, keep going at higher positions */
    CHECK(rl_kv_seq_remove(ctx, 0, 0, 4) == RL_OK);
    CHECK(rl_decode(ctx, &b) == RL_OK);
    CHECK_EQ_INT(rl_kv_seq_pos_max(ctx, 0), 16);
    rl_context_free(ctx);

    /* context parameters */
    rl_context_params p = rl_context_default_params();
    char err[512];
    rl_context *c2 = NULL;
    p.kv_type = RL_TYPE_Q8_0; /* head size 8 */
    CHECK(rl_context_create(m, &p, &c2, err, sizeof err) == RL_ERR_UNSUPPORTED);
    CHECK(strstr(err, "Q8_0") != NULL && c2 == NULL);
    p = rl_context_default_params();
    p.kv_type = RL_TYPE_Q4_0;
    CHECK(rl_context_create(m, &p, &c2, err, sizeof err) == RL_ERR_UNSUPPORTED);
    p = rl_context_default_params();
    p.n_seq_max = 65;
    CHECK(rl_context_create(m, &p, &c2, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "n_seq_max") != NULL);
    p = rl_context_default_params();
    p.n_batch = 0;
    CHECK(rl_context_create(m, &p, &c2, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "n_batch") != NULL);
    p = rl_context_default_params();
    p.n_ctx = -5;
    CHECK(rl_context_create(m, &p, &c2, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(rl_context_create(NULL, NULL, &c2, err, sizeof err) == RL_ERR_INVALID_ARG);
    /* defaults: n_ctx is the model's 2048 (under the 4096 cap) */
    CHECK(rl_context_create(m, NULL, &c2, err, sizeof err) == RL_OK);
    CHECK_EQ_INT(rl_context_n_ctx(c2), 2048);
    CHECK(rl_context_model(c2) == m);
    rl_context_free(c2);
    rl_context_free(NULL);
    rl_model_free(m);
}

/* After creation (and its dry run), decode steps of any size up to n_batch allocate
 * nothing. */
TEST(no_allocation_in_decode) {
    /* dense; mixture of experts with a shared expert (routing in the pass's host
     * scratch); sliding-window layers */
    const char *models[] = {"models/zoo/llama3-Q4_K_M.gguf", "models/zoo/qwen2moe-Q4_K_M.gguf",
                            "models/zoo/gemma2-Q8_0.gguf"};
    int ran = 0;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        rl_model *m = load(models[mi]);
        if (!m) continue;
        ran++;
        rl_context *ctx = make_ctx(m, 256, 64, 2, 2, RL_TYPE_F16, 2);
        rl_token toks[100];
        for (int i = 0; i < 100; i++) toks[i] = (rl_token)(i * 13 % 2000);
        long a0 = rl__alloc_count();
        rl_batch b = rl_batch_get(toks, 100); /* two micro-batches, the first full */
        CHECK(rl_decode(ctx, &b) == RL_OK);
        for (int i = 0; i < 5; i++) {
            b = rl_batch_get(&toks[i], 1);
            CHECK(rl_decode(ctx, &b) == RL_OK);
        }
        int32_t seq[2] = {1, 1};
        b = (rl_batch){.n_tokens = 2, .token = toks, .seq_id = seq};
        CHECK(rl_decode(ctx, &b) == RL_OK);
        CHECKF(rl__alloc_count() == a0, "%s: %ld allocations in decode", models[mi],
               rl__alloc_count() - a0);
        rl_context_free(ctx);
        rl_model_free(m);
    }
    if (!ran) SKIP("no zoo models");
}

/* F16 and Q8_0 KV caches against the F32-cache goldens. */
TEST(kv_cache_types) {
    rl_golden_result r;
    rl_golden_opts o = {.tol = 2e-2, .kv_type = RL_TYPE_F16};
    if (!rl_golden_check("stories260K", &o, &r)) SKIP("no stories260K");
    o = (rl_golden_opts){.tol = 2e-2, .kv_type = RL_TYPE_F16};
    rl_golden_check("llama3-F32", &o, &r);
    o = (rl_golden_opts){.tol = 0.35, .kv_type = RL_TYPE_Q8_0};
    rl_golden_check("llama3-F32", &o, &r);
    o = (rl_golden_opts){.tol = 0.35, .kv_type = RL_TYPE_Q8_0};
    rl_golden_check("mistral-F32", &o, &r);
}

/* Greedy tokens from every ISA path the CPU has, on the F32 models, equal the reference
 * path's (and the goldens', checked in the golden tests). */
static void greedy(rl_model *m, const rl_golden_prompt *p, int n_gen, rl_token *out) {
    rl_context *ctx = make_ctx(m, 512, 512, 1, 1, RL_TYPE_F32, 2);
    rl_batch b = rl_batch_get(p->tokens, p->n_tokens);
    for (int k = 0; k < n_gen; k++) {
        if (rl_decode(ctx, &b) != RL_OK) break;
        out[k] = rl_test_argmax(rl_get_logits(ctx, -1), rl_model_n_vocab(m), NULL);
        b = rl_batch_get(&out[k], 1);
    }
    rl_context_free(ctx);
}

TEST(isa_paths_same_greedy) {
    const char *models[][2] = {{"models/stories260K.gguf", "stories260K"},
                               {"models/zoo/llama3-F32.gguf", "llama3-F32"},
                               {"models/zoo/mistral-F32.gguf", "mistral-F32"},
                               {"models/zoo/llama-linear-F32.gguf", "llama-linear-F32"},
                               {"models/zoo/qwen2-F32.gguf", "qwen2-F32"},
                               {"models/zoo/qwen2-yarn-F32.gguf", "qwen2-yarn-F32"},
                               {"models/zoo/qwen3-F32.gguf", "qwen3-F32"},
                               {"models/zoo/gemma-F32.gguf", "gemma-F32"},
                               {"models/zoo/gemma2-F32.gguf", "gemma2-F32"},
                               {"models/zoo/phi3-F32.gguf", "phi3-F32"},
                               {"models/zoo/phi3-longrope-F32.gguf", "phi3-longrope-F32.ctx512"},
                               {"models/zoo/mixtral-F32.gguf", "mixtral-F32"},
                               {"models/zoo/qwen2moe-F32.gguf", "qwen2moe-F32"}};
    const rl_cpu_isa best = rl_cpu_isa_active();
    int ran = 0;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        rl_golden_prompt p;
        rl_model *m = load(models[mi][0]);
        if (!m || !prompt(models[mi][1], 3, &p)) {
            rl_model_free(m);
            continue;
        }
        ran++;
        rl_token ref[32], got[32];
        CHECK(rl_cpu_isa_set(RL_CPU_ISA_REF) == RL_OK);
        greedy(m, &p, 32, ref);
        for (int isa = RL_CPU_ISA_AVX2; isa < RL_CPU_ISA_COUNT; isa++) {
            if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
            greedy(m, &p, 32, got);
            CHECKF(!memcmp(ref, got, sizeof ref), "%s: %s greedy differs from ref", models[mi][1],
                   rl_cpu_isa_name((rl_cpu_isa)isa));
        }
        rl_cpu_isa_set(best);
        CHECKF(!memcmp(ref, p.greedy, sizeof ref), "%s: greedy differs from the golden",
               models[mi][1]);
        rl_model_free(m);
    }
    if (!ran) SKIP("no F32 models");
}

/* The number of threads does not change a bit of the result. */
TEST(threads_bit_identical) {
    rl_golden_prompt p;
    rl_model *m = load("models/zoo/llama3-Q8_0.gguf");
    if (!m || !prompt("llama3-Q8_0", 3, &p)) {
        rl_model_free(m);
        SKIP("no zoo llama3");
    }
    const int nv = rl_model_n_vocab(m);
    float *l1 = malloc((size_t)nv * sizeof(float));
    for (int nt = 1; nt <= 3; nt++) {
        rl_context *ctx = make_ctx(m, 128, 32, 1, 1, RL_TYPE_F16, nt);
        rl_batch b = rl_batch_get(p.tokens, p.n_tokens);
        CHECK(rl_decode(ctx, &b) == RL_OK);
        if (nt == 1) memcpy(l1, rl_get_logits(ctx, -1), (size_t)nv * sizeof(float));
        else CHECKF(!memcmp(l1, rl_get_logits(ctx, -1), (size_t)nv * sizeof(float)),
                    "%d threads", nt);
        rl_context_free(ctx);
    }
    free(l1);
    rl_model_free(m);
}

/* ---- load errors ---------------------------------------------------------------------- */

typedef struct edit {
    const char *arch;         /* replace general.architecture */
    const char *drop_key;     /* leave out this key */
    const char *drop_tensor;  /* leave out this tensor */
    bool extra_tensor;        /* add an unused tensor */
} edit;

/* A copy of stories260K with one edit, written under the build dir; the path. */
static const char *write_edited(const edit *e, const char *tag) {
    static char path[4096];
    const char *dir = getenv("RUVLLM_BUILD_DIR");
    snprintf(path, sizeof path, "%s/test_model_%s_%d.gguf", dir && *dir ? dir : ".", tag,
             (int)getpid());
    rl_gguf *g = NULL;
    char err[256];
    if (rl_gguf_open(rl_test_data("models/stories260K.gguf"), &g, err, sizeof err) != RL_OK)
        return NULL;
    rl_gguf_writer *w = NULL;
    CHECK(rl_gguf_writer_create(&w) == RL_OK);
    for (int64_t i = 0; i < rl_gguf_n_kv(g); i++) {
        const char *k = rl_gguf_key(g, i);
        if (e->drop_key && !strcmp(k, e->drop_key)) continue;
        if (e->arch && !strcmp(k, "general.architecture"))
            CHECK(rl_gguf_writer_set_str(w, k, e->arch) == RL_OK);
        else CHECK(rl_gguf_writer_copy_kv(w, g, i) == RL_OK);
    }
    for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        if (e->drop_tensor && !strcmp(ti.name, e->drop_tensor)) continue;
        CHECK(rl_gguf_writer_add_tensor(w, ti.name, ti.type, ti.n_dims, ti.ne, ti.data) == RL_OK);
    }
    static float extra[64];
    int64_t ne = 64;
    if (e->extra_tensor)
        CHECK(rl_gguf_writer_add_tensor(w, "blk.0.mystery.weight", RL_TYPE_F32, 1, &ne, extra) ==
              RL_OK);
    rl_status st = rl_gguf_writer_write(w, path);
    CHECK(st == RL_OK);
    rl_gguf_writer_free(w);
    rl_gguf_free(g);
    return st == RL_OK ? path : NULL;
}

static void expect_load_error(const edit *e, const char *tag, rl_status want, const char *needle) {
    const char *path = write_edited(e, tag);
    if (!path) return;
    char err[512] = "";
    rl_model *m = (rl_model *)1;
    rl_status st = rl_model_load(path, NULL, &m, err, sizeof err);
    CHECKF(st == want, "%s: %s (%s)", tag, rl_status_str(st), err);
    CHECK(m == NULL);
    CHECKF(strstr(err, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", tag, err, needle);
    unlink(path);
}

TEST(load_errors) {
    if (access(rl_test_data("models/stories260K.gguf"), R_OK)) SKIP("no stories260K");
    expect_load_error(&(edit){.arch = "mamba9"}, "arch", RL_ERR_UNSUPPORTED, "mamba9");
    expect_load_error(&(edit){.drop_key = "general.architecture"}, "noarch", RL_ERR_BAD_FILE,
                      "general.architecture");
    expect_load_error(&(edit){.drop_key = "llama.embedding_length"}, "nokey", RL_ERR_BAD_FILE,
                      "llama.embedding_length");
    expect_load_error(&(edit){.drop_key = "llama.attention.layer_norm_rms_epsilon"}, "noeps",
                      RL_ERR_BAD_FILE, "layer_norm_rms_epsilon");
    expect_load_error(&(edit){.drop_tensor = "blk.3.ffn_up.weight"}, "notensor", RL_ERR_BAD_FILE,
                      "blk.3.ffn_up.weight");
    expect_load_error(&(edit){.drop_tensor = "token_embd.weight"}, "noembd", RL_ERR_BAD_FILE,
                      "token_embd.weight");
    expect_load_error(&(edit){.extra_tensor = true}, "extra", RL_ERR_BAD_FILE,
                      "blk.0.mystery.weight");
    char err[512];
    rl_model *m = NULL;
    CHECK(rl_model_load("/nonexistent/model.gguf", NULL, &m, err, sizeof err) == RL_ERR_IO);
    CHECK(m == NULL);
    CHECK(rl_model_load(NULL, NULL, &m, err, sizeof err) == RL_ERR_INVALID_ARG);
    /* a missing output.weight means tied embeddings: loads */
    const char *path = write_edited(&(edit){.drop_tensor = "output.weight"}, "tied");
    if (path) {
        CHECK(rl_model_load(path, NULL, &m, err, sizeof err) == RL_OK);
        rl_model_free(m);
        unlink(path);
    }
}

TEST(accessors_and_mlock) {
    rl_model_params mp = rl_model_default_params();
    mp.use_mlock = true;
    char err[512];
    rl_model *m = NULL;
    const char *path = rl_test_data("models/stories260K.gguf");
    if (access(path, R_OK)) SKIP("no stories260K");
    rl_status st = rl_model_load(path, &mp, &m, err, sizeof err);
    if (st == RL_ERR_IO) {
        CHECK(strstr(err, "RLIMIT_MEMLOCK") != NULL); /* a locked-memory limit below 1 MiB */
        fprintf(stderr, "  mlock refused here: %s\n", err);
        st = rl_model_load(path, NULL, &m, err, sizeof err);
    }
    CHECKF(st == RL_OK, "%s", err);
    if (!m) return;
    CHECK_STR(rl_model_arch(m), "llama");
    CHECK_EQ_INT(rl_model_n_vocab(m), 512);
    CHECK_EQ_INT(rl_model_n_embd(m), 64);
    CHECK_EQ_INT(rl_model_n_layer(m), 5);
    CHECK_EQ_INT(rl_model_n_ctx_train(m), 2048);
    CHECK(rl_model_weight_bytes(m) == 292800u * 4);
    CHECK(rl_model_vocab(m) != NULL && rl_vocab_n_tokens(rl_model_vocab(m)) == 512);
    CHECK(rl_model_gguf(m) != NULL);
    rl_model_free(m);
    rl_model_free(NULL);
    CHECK_STR(rl_model_arch(NULL), "");
}

/* Fail the k-th allocation of model load, context creation and a decode, for every k:
 * each must fail with RL_ERR_NOMEM (or succeed) and leave nothing allocated. */
TEST(allocation_failures) {
    const char *path = rl_test_data("models/stories260K.gguf");
    if (access(path, R_OK)) SKIP("no stories260K");
    rl_token toks[4] = {1, 346, 306, 414};
    int n_fail = 0;
    for (long k = 1; k < 100000; k++) {
        size_t mem0 = rl_mem_in_use();
        char err[512];
        rl_model *m = NULL;
        rl_context *ctx = NULL;
        rl_context_params cp = rl_context_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 2;
        rl__alloc_fail_after(k);
        rl_status st = rl_model_load(path, NULL, &m, err, sizeof err);
        if (st == RL_OK) st = rl_context_create(m, &cp, &ctx, err, sizeof err);
        rl__alloc_fail_after(0);
        if (st == RL_OK) {
            rl_batch b = rl_batch_get(toks, 4);
            CHECK(rl_decode(ctx, &b) == RL_OK);
        } else {
            CHECKF(st == RL_ERR_NOMEM, "k=%ld: %s (%s)", k, rl_status_str(st), err);
            n_fail++;
        }
        rl_context_free(ctx);
        rl_model_free(m);
        CHECKF(rl_mem_in_use() == mem0, "k=%ld: %zu bytes left", k, rl_mem_in_use() - mem0);
        if (st == RL_OK) break;
        /* the vocabulary load makes thousands of allocations: sample those */
        if (k > 64) k += k / 16;
    }
    CHECK(n_fail > 10);
}

/* Sliding-window attention, with every layer windowed (the llama arch does not use it:
 * set here on the loaded model): the logits at position p then depend only on the tokens
 * from p - n_layer * (w - 1) on, so feeding just those, at their positions, must give
 * the same logits; and they must differ from full attention. */
TEST(sliding_window) {
    rl_golden_prompt p;
    rl_model *m = load("models/stories260K.gguf");
    if (!m || !prompt("stories260K", 4, &p)) {
        rl_model_free(m);
        SKIP("no stories260K");
    }
    const int nv = rl_model_n_vocab(m), n = p.n_tokens, w = 4;
    float *full = malloc(sizeof(float) * (size_t)nv);
    rl_context *ctx = make_ctx(m, 128, 128, 1, 1, RL_TYPE_F32, 2);
    rl_batch b = rl_batch_get(p.tokens, n);
    CHECK(rl_decode(ctx, &b) == RL_OK);
    memcpy(full, rl_get_logits(ctx, -1), sizeof(float) * (size_t)nv);
    rl_context_free(ctx);

    m->hp.n_swa = w;
    for (int il = 0; il < m->hp.n_layer; il++) m->layers[il].swa = true;
    ctx = make_ctx(m, 128, 16, 1, 1, RL_TYPE_F32, 2);
    b = rl_batch_get(p.tokens, n); /* several micro-batches */
    CHECK(rl_decode(ctx, &b) == RL_OK);
    float *swa = malloc(sizeof(float) * (size_t)nv);
    memcpy(swa, rl_get_logits(ctx, -1), sizeof(float) * (size_t)nv);
    rl_context_free(ctx);
    CHECK(max_diff(full, swa, nv) > 1e-3);

    const int p0 = n - 1 - m->hp.n_layer * (w - 1);
    int32_t pos[512];
    for (int i = p0; i < n; i++) pos[i - p0] = i;
    ctx = make_ctx(m, 128, 128, 1, 1, RL_TYPE_F32, 2);
    b = (rl_batch){.n_tokens = n - p0, .token = p.tokens + p0, .pos = pos};
    CHECK(rl_decode(ctx, &b) == RL_OK);
    double e = max_diff(swa, rl_get_logits(ctx, -1), nv);
    CHECKF(e <= 1e-6, "window of %d: %d tokens vs the last %d: %.3g", w, n, n - p0, e);
    /* one token fewer reaches outside the receptive field's start: must differ */
    rl_kv_clear(ctx);
    b = (rl_batch){.n_tokens = n - p0 - 1, .token = p.tokens + p0 + 1, .pos = pos + 1};
    CHECK(rl_decode(ctx, &b) == RL_OK);
    CHECK(max_diff(swa, rl_get_logits(ctx, -1), nv) > 1e-6);
    rl_context_free(ctx);
    free(full);
    free(swa);
    rl_model_free(m);
}

/* The entry point a paged cache uses: tokens placed in scattered cells (as block tables
 * would place them), attention through explicit cell lists; then the cells copied
 * elsewhere (copy-on-write) and attended there. Same logits as rl_decode. */
TEST(external_placement) {
    rl_golden_prompt p;
    rl_model *m = load("models/zoo/llama3-Q8_0.gguf");
    if (!m || !prompt("llama3-Q8_0", 1, &p)) {
        rl_model_free(m);
        SKIP("no zoo llama3");
    }
    const int nv = rl_model_n_vocab(m), n = p.n_tokens;
    float *ref = sequential_logits(m, p.tokens, n);
    rl_context *ctx = make_ctx(m, 256, 64, 1, 64, RL_TYPE_F32, 2);
    int32_t pos[64], cells[64], list[64], span[128], out[64], copy[64];
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        cells[i] = list[i] = 200 - 3 * i; /* "block table": scattered, descending */
        span[2 * i] = 0;
        span[2 * i + 1] = i + 1;
        out[i] = i;
    }
    float *lg = malloc(sizeof(float) * (size_t)nv * (size_t)n);
    rl__pass pass = {.n_tok = n, .tokens = p.tokens, .pos = pos, .kv_cells = cells,
                     .attn_cells = list, .span_full = span, .n_out = n, .out_ids = out};
    CHECK(rl__context_forward(ctx, &pass, lg) == RL_OK);
    double e = 0;
    for (int i = 0; i < n; i++)
        e = fmax(e, max_diff(lg + (size_t)i * nv, ref + (size_t)i * nv, nv));
    CHECKF(e == 0, "scattered cells vs rl_decode: %.3g", e);
    /* copy the first n-1 tokens' cells elsewhere; the last token attends to the copies */
    for (int i = 0; i < n - 1; i++) copy[i] = 2 * i + 1;
    rl__context_kv_copy(ctx, cells, copy, n - 1);
    float *last = malloc(sizeof(float) * (size_t)nv);
    memcpy(last, lg + (size_t)(n - 1) * nv, sizeof(float) * (size_t)nv);
    int32_t list2[64], span2[2] = {0, n}, out0 = 0, cell_last = 250;
    for (int i = 0; i < n - 1; i++) list2[i] = copy[i];
    list2[n - 1] = cell_last;
    rl__pass p2 = {.n_tok = 1, .tokens = &p.tokens[n - 1], .pos = &pos[n - 1],
                   .kv_cells = &cell_last, .attn_cells = list2, .span_full = span2, .n_out = 1,
                   .out_ids = &out0};
    CHECK(rl__context_forward(ctx, &p2, lg) == RL_OK);
    CHECKF(!memcmp(lg, last, sizeof(float) * (size_t)nv), "attention over copied cells");
    pass.n_tok = 65; /* > n_batch */
    CHECK(rl__context_forward(ctx, &pass, lg) == RL_ERR_INVALID_ARG);
    free(last);
    free(lg);
    free(ref);
    rl_context_free(ctx);
    rl_model_free(m);
}

/* The sequences' cell lists that rl_decode keeps (appended as it places tokens, rebuilt
 * after a removal or copy) give the logits of lists scanned from the cell table every call
 * (RUVLLM_KV_LISTS=0), bit for bit, over random batches of several sequences mixed with
 * removals (tails and middles), copies and clears. */
TEST(kept_lists_equal_scan) {
    rl_model *m = load("models/stories260K.gguf");
    if (!m) SKIP("no stories260K");
    const int nv = rl_model_n_vocab(m), ns = 4;
    setenv("RUVLLM_KV_LISTS", "0", 1);
    rl_context *scan = make_ctx(m, 96, 16, ns, 16, RL_TYPE_F32, 1);
    unsetenv("RUVLLM_KV_LISTS");
    rl_context *kept = make_ctx(m, 96, 16, ns, 16, RL_TYPE_F32, 1);
    uint32_t rng = 12345;
#define NEXT() (rng = rng * 1664525u + 1013904223u, rng >> 8)
    for (int it = 0; it < 60 && scan && kept; it++) {
        const uint32_t op = NEXT() % 10;
        if (op == 0) {
            const int s = (int)(NEXT() % ns), p0 = (int)(NEXT() % 24);
            const int p1 = NEXT() % 2 ? -1 : p0 + 1 + (int)(NEXT() % 4);
            CHECK(rl_kv_seq_remove(scan, s, p0, p1) == RL_OK);
            CHECK(rl_kv_seq_remove(kept, s, p0, p1) == RL_OK);
        } else if (op == 1) {
            const int a = (int)(NEXT() % ns), b = (int)(NEXT() % ns);
            CHECK(rl_kv_seq_copy(scan, a, b, -1, -1) == RL_OK);
            CHECK(rl_kv_seq_copy(kept, a, b, -1, -1) == RL_OK);
        } else if (op == 2 && rl_kv_n_used(kept) > 60) {
            rl_kv_clear(scan);
            rl_kv_clear(kept);
        } else {
            rl_token tok[16];
            int32_t seq[16];
            int8_t lg[16];
            int n = 0;
            for (int s = 0; s < ns; s++) {
                if (NEXT() % 3 == 0) continue;
                const int k = 1 + (int)(NEXT() % 3);
                for (int j = 0; j < k && n < 16; j++, n++) {
                    tok[n] = (rl_token)(NEXT() % (uint32_t)nv);
                    seq[n] = s;
                    lg[n] = 1;
                }
            }
            if (n == 0 || rl_kv_n_used(kept) + n > 96) continue;
            rl_batch b = {.n_tokens = n, .token = tok, .seq_id = seq, .logits = lg};
            CHECK(rl_decode(scan, &b) == RL_OK);
            CHECK(rl_decode(kept, &b) == RL_OK);
            for (int i = 0; i < n; i++) {
                const float *a = rl_get_logits(scan, i), *c = rl_get_logits(kept, i);
                CHECK(a && c);
                if (a && c) CHECKF(max_diff(a, c, nv) == 0, "step %d token %d", it, i);
            }
        }
        for (int s = 0; s < ns; s++)
            CHECK_EQ_INT(rl_kv_seq_pos_max(kept, s), rl_kv_seq_pos_max(scan, s));
        CHECK_EQ_INT(rl_kv_n_used(kept), rl_kv_n_used(scan));
    }
#undef NEXT
    rl_context_free(scan);
    rl_context_free(kept);
    rl_model_free(m);
}

int main(void) {
    RUN(external_placement);
    RUN(sliding_window);
    RUN(batch_vs_sequential);
    RUN(two_sequences);
    RUN(sequence_ops);
    RUN(kept_lists_equal_scan);
    RUN(errors_leave_cache_unchanged);
    RUN(no_allocation_in_decode);
    RUN(kv_cache_types);
    RUN(isa_paths_same_greedy);
    RUN(threads_bit_identical);
    RUN(load_errors);
    RUN(accessors_and_mlock);
    RUN(allocation_failures);
    return rl_test_finish();
}
