/* test_engine: the engine (src/engine) on stories260K: greedy tokens equal rl_decode's,
 * concurrent requests equal their sequential runs, stop strings, n > 1, logprobs, prefix
 * cache reuse, preemption with a small pool, aborts at any moment, submit errors, and the
 * stop-string window on its own. */
#include "engine/engine_impl.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct result {
    char text[RL_ENGINE_MAX_N][4096];
    size_t len[RL_ENGINE_MAX_N];
    rl_token toks[RL_ENGINE_MAX_N][1024];
    int32_t n_toks[RL_ENGINE_MAX_N];
    float lp[RL_ENGINE_MAX_N][1024];
    int32_t n_top_seen;
    rl_engine_finish finish[RL_ENGINE_MAX_N];
    int32_t n_events;
    rl_engine_event done;
} result;

/* Read r's events until DONE (timeout 30 s per event). */
static bool drain(rl_engine_request *r, result *res) {
    memset(res, 0, sizeof *res);
    for (;;) {
        rl_engine_event ev;
        if (rl_engine_next_event(r, 30000, &ev) != RL_OK) return false;
        if (ev.type == RL_ENGINE_EVENT_NONE) return false;
        res->n_events++;
        if (ev.type == RL_ENGINE_EVENT_DONE) {
            res->done = ev;
            return true;
        }
        int k = ev.seq_index;
        if (res->len[k] + ev.text_len < sizeof res->text[k]) {
            memcpy(res->text[k] + res->len[k], ev.text, ev.text_len);
            res->len[k] += ev.text_len;
        }
        for (int32_t i = 0; i < ev.n_tokens && res->n_toks[k] < 1024; i++) {
            res->lp[k][res->n_toks[k]] = ev.tokens[i].logprob;
            res->toks[k][res->n_toks[k]++] = ev.tokens[i].token;
            if (ev.tokens[i].n_top > res->n_top_seen) res->n_top_seen = ev.tokens[i].n_top;
        }
        if (ev.finish) res->finish[k] = ev.finish;
    }
}

static atomic_int g_notified;
static void count_notify(void *user) {
    (void)user;
    atomic_fetch_add(&g_notified, 1);
}

static rl_model *load_model(void) {
    char err[256];
    rl_model *m = NULL;
    rl_model_params mp = rl_model_default_params();
    mp.n_threads = 2;
    if (rl_model_load(rl_test_data("models/stories260K.gguf"), &mp, &m, err, sizeof err) != RL_OK)
        return NULL;
    return m;
}

static rl_engine *make_engine(rl_model *m, int32_t n_parallel, uint64_t kv_mem, int32_t n_ctx) {
    rl_engine_params p = rl_engine_default_params();
    p.n_parallel = n_parallel;
    p.kv_mem = kv_mem;
    p.n_ctx = n_ctx;
    p.batch_tokens = 128;
    p.n_threads = 2;
    p.kv_type = RL_TYPE_F32;
    rl_engine *e = NULL;
    char err[256];
    rl_status st = rl_engine_create(m, &p, &e, err, sizeof err);
    CHECKF(st == RL_OK, "%s", err);
    return e;
}

static rl_engine_request_params greedy(const rl_token *prompt, int32_t n, int32_t max_tokens) {
    rl_engine_request_params p = rl_engine_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = max_tokens;
    p.sampling.temperature = 0;
    return p;
}

static rl_engine_request *submit(rl_engine *e, const rl_engine_request_params *p) {
    rl_engine_request *r = NULL;
    char err[256];
    rl_status st = rl_engine_submit(e, p, &r, err, sizeof err);
    CHECKF(st == RL_OK, "submit: %s", err);
    return r;
}

/* Greedy continuation with rl_decode, one token at a time (the reference). */
static int32_t ref_greedy(rl_model *m, const rl_token *prompt, int32_t n, int32_t max_new,
                          rl_token *out) {
    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = 512;
    cp.kv_type = RL_TYPE_F32;
    cp.n_threads = 2;
    rl_context *ctx = NULL;
    char err[256];
    if (rl_context_create(m, &cp, &ctx, err, sizeof err) != RL_OK) return -1;
    rl_batch b = rl_batch_get(prompt, n);
    int32_t k = 0;
    const int32_t nv = rl_model_n_vocab(m);
    while (k < max_new && rl_decode(ctx, &b) == RL_OK) {
        const float *lg = rl_get_logits(ctx, -1);
        rl_token best = 0;
        for (int32_t t = 1; t < nv; t++)
            if (lg[t] > lg[best]) best = t;
        out[k++] = best;
        if (rl_vocab_is_eog(rl_model_vocab(m), best)) break;
        b = rl_batch_get(&out[k - 1], 1);
    }
    rl_context_free(ctx);
    return k;
}

static int32_t tokenize(rl_model *m, const char *text, rl_token *out, size_t cap) {
    size_t n = 0;
    rl_tokenize(rl_model_vocab(m), text, strlen(text), RL_TOKENIZE_ADD_SPECIAL, out, cap, &n);
    return (int32_t)n;
}

TEST(stop_scan) {
    char *stops[] = {"END", "\n\n", "ab"};
    size_t lens[] = {3, 2, 2};
    static const struct {
        const char *hold;
        size_t rel;
        bool matched;
    } cases[] = {
        {"hello", 5, false},    {"hello E", 6, false}, {"hello EN", 6, false},
        {"hello END x", 6, true}, {"x\n", 1, false},   {"x\n\ny", 1, true},
        {"a", 0, false},        {"xa", 1, false},      {"xab", 1, true},
        {"ENab", 2, true},      {"", 0, false},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        bool matched;
        size_t rel = rl__stop_scan(cases[i].hold, strlen(cases[i].hold), stops, lens, 3, &matched);
        CHECKF(rel == cases[i].rel && matched == cases[i].matched, "'%s': %zu %d", cases[i].hold,
               rel, matched);
    }
    bool matched;
    CHECK(rl__stop_scan("abc", 3, NULL, NULL, 0, &matched) == 3 && !matched);
}

/* Greedy through the engine = greedy through rl_decode, token for token; text equals
 * the detokenized tokens; usage is right. */
TEST(greedy_matches_decode) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    rl_engine *e = make_engine(m, 4, 0, 512);
    rl_token prompt[64], ref[256];
    int32_t n = tokenize(m, "Once upon a time", prompt, 64);
    int32_t nref = ref_greedy(m, prompt, n, 100, ref);
    rl_engine_request_params p = greedy(prompt, n, 100);
    p.notify = count_notify;
    rl_engine_request *r = submit(e, &p);
    static result res;
    CHECK(r && drain(r, &res));
    CHECK(atomic_load(&g_notified) >= 2);
    CHECK_EQ_INT(res.n_toks[0], nref);
    CHECK(!memcmp(res.toks[0], ref, sizeof(rl_token) * (size_t)nref));
    CHECK_EQ_INT(res.done.n_prompt_tokens, n);
    CHECK_EQ_INT(res.done.n_completion_tokens, nref);
    CHECK(res.done.status == RL_OK);
    bool eos = rl_vocab_is_eog(rl_model_vocab(m), ref[nref - 1]);
    CHECK(res.finish[0] == (eos ? RL_ENGINE_FINISH_STOP : RL_ENGINE_FINISH_LENGTH));
    char txt[4096];
    size_t tl = 0;
    rl_detokenize(rl_model_vocab(m), ref, (size_t)nref - (eos ? 1 : 0),
                  RL_DETOK_KEEP_LEADING_SPACE | RL_DETOK_NO_CLEANUP, txt, sizeof txt, &tl);
    CHECKF(tl == res.len[0] && !memcmp(txt, res.text[0], tl), "'%.*s' vs '%.*s'", (int)tl, txt,
           (int)res.len[0], res.text[0]);
    /* after DONE, DONE again */
    rl_engine_event ev;
    CHECK(rl_engine_next_event(r, 0, &ev) == RL_OK && ev.type == RL_ENGINE_EVENT_DONE);
    rl_engine_request_free(r);
    rl_engine_free(e);
    rl_model_free(m);
}

/* 12 requests in flight at once give exactly what each gives alone; steps batched many. */
TEST(concurrent_equals_sequential) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    rl_engine *e = make_engine(m, 16, 0, 256);
    static const char *prompts[] = {"Once upon a time", "The cat", "Lily went to the park",
                                    "Tom had a red ball", "One day", "The sun was",
                                    "A little bird", "Mom said", "Ben and Sue", "The dog ran",
                                    "There was a big tree", "She liked"};
    enum { N = 12 };
    static result seq[N], par[N];
    rl_token pt[N][64];
    int32_t np[N];
    for (int i = 0; i < N; i++) {
        np[i] = tokenize(m, prompts[i], pt[i], 64);
        rl_engine_request_params p = greedy(pt[i], np[i], 60);
        rl_engine_request *r = submit(e, &p);
        CHECK(r && drain(r, &seq[i]));
        rl_engine_request_free(r);
    }
    rl_engine_request *rs[N];
    for (int i = 0; i < N; i++) {
        rl_engine_request_params p = greedy(pt[i], np[i], 60);
        rs[i] = submit(e, &p);
    }
    for (int i = 0; i < N; i++) {
        CHECK(rs[i] && drain(rs[i], &par[i]));
        CHECKF(par[i].n_toks[0] == seq[i].n_toks[0] &&
                   !memcmp(par[i].toks[0], seq[i].toks[0], sizeof(rl_token) * (size_t)seq[i].n_toks[0]),
               "request %d differs in parallel", i);
        CHECK(par[i].len[0] == seq[i].len[0] && !memcmp(par[i].text[0], seq[i].text[0], seq[i].len[0]));
        rl_engine_request_free(rs[i]);
    }
    rl_engine_metrics mt;
    rl_engine_metrics_get(e, &mt);
    CHECKF(mt.max_step_seqs >= 8, "max_step_seqs %d", mt.max_step_seqs);
    CHECK_EQ_INT(mt.n_submitted, 2 * N);
    CHECK_EQ_INT(mt.n_finished, 2 * N);
    CHECK_EQ_INT(mt.n_running + mt.n_waiting, 0);
    CHECK_EQ_INT(mt.kv_blocks_used, 0);
    CHECK(mt.ttft.total == 2 * N && mt.itl.total > 0);
    /* the second round found the first round's prompts in the prefix cache? prompts are
     * shorter than a block, so only recomputation of nothing: hits stay 0 here */
    rl_engine_free(e);
    rl_model_free(m);
}

/* A long shared prefix: the second request computes only its new tokens. */
TEST(prefix_cache) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    rl_engine *e = make_engine(m, 4, 0, 512);
    const char *base = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park with her friends. One day, she saw a big red ball";
    char a[512], b[512];
    snprintf(a, sizeof a, "%s under a tree.", base);
    snprintf(b, sizeof b, "%s near the pond and a dog.", base);
    rl_token ta[256], tb[256];
    int32_t na = tokenize(m, a, ta, 256), nb = tokenize(m, b, tb, 256);
    static result res;
    rl_engine_request_params p = greedy(ta, na, 4);
    rl_engine_request *r = submit(e, &p);
    CHECK(r && drain(r, &res));
    CHECK_EQ_INT(res.done.n_cached_tokens, 0);
    rl_engine_request_free(r);
    rl_engine_metrics m0, m1;
    rl_engine_metrics_get(e, &m0);
    p = greedy(tb, nb, 4);
    r = submit(e, &p);
    CHECK(r && drain(r, &res));
    rl_engine_request_free(r);
    rl_engine_metrics_get(e, &m1);
    int32_t common = 0;
    while (common < na && common < nb && ta[common] == tb[common]) common++;
    int32_t expect = common / 16 * 16;
    CHECKF(expect >= 32, "common prefix %d", common);
    CHECK_EQ_INT(res.done.n_cached_tokens, expect);
    CHECK_EQ_INT(m1.prefix_hit_tokens - m0.prefix_hit_tokens, expect);
    /* prefill computed: the new tokens only (plus the 3 decode steps are not prefill) */
    CHECK_EQ_INT(m1.tokens_prefill - m0.tokens_prefill, nb - expect);
    /* a salted request does not see the shared entries */
    p = greedy(tb, nb, 4);
    p.cache_salt = "tenant-b";
    r = submit(e, &p);
    CHECK(r && drain(r, &res));
    CHECK_EQ_INT(res.done.n_cached_tokens, 0);
    rl_engine_request_free(r);
    rl_engine_free(e);
    rl_model_free(m);
}

/* Stop strings cut the text before the match; n > 1 with a seed is reproducible and the
 * sequences differ; logprobs are reported; LENGTH finishes. */
TEST(stop_n_logprobs) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    rl_engine *e = make_engine(m, 8, 0, 512);
    rl_token prompt[64];
    int32_t n = tokenize(m, "Once upon a time", prompt, 64);
    static result full, cut, s1, s2;
    rl_engine_request_params p = greedy(prompt, n, 80);
    rl_engine_request *r = submit(e, &p);
    CHECK(r && drain(r, &full));
    rl_engine_request_free(r);
    /* a stop string from the middle of the greedy text */
    CHECK(full.len[0] > 40);
    char stop[8];
    memcpy(stop, full.text[0] + 30, 5);
    stop[5] = 0;
    const char *stops[] = {"zzzz", stop};
    p.stop = stops;
    p.n_stop = 2;
    r = submit(e, &p);
    CHECK(r && drain(r, &cut));
    rl_engine_request_free(r);
    const char *at = strstr(full.text[0], stop);
    CHECK(at != NULL);
    size_t want = (size_t)(at - full.text[0]);
    CHECKF(cut.len[0] == want && !memcmp(cut.text[0], full.text[0], want), "cut %zu want %zu",
           cut.len[0], want);
    CHECK(cut.finish[0] == RL_ENGINE_FINISH_STOP);
    CHECK(cut.n_toks[0] < full.n_toks[0]);

    /* n = 3 sampled with a seed, twice */
    p = rl_engine_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = 30;
    p.n = 3;
    p.sampling.seed = 1234;
    p.sampling.temperature = 1.0f;
    p.sampling.logprobs = true;
    p.sampling.top_logprobs = 3;
    r = submit(e, &p);
    CHECK(r && drain(r, &s1));
    rl_engine_request_free(r);
    r = submit(e, &p);
    CHECK(r && drain(r, &s2));
    rl_engine_request_free(r);
    for (int k = 0; k < 3; k++) {
        CHECK(s1.len[k] == s2.len[k] && !memcmp(s1.text[k], s2.text[k], s1.len[k]));
        CHECK(s1.finish[k] == RL_ENGINE_FINISH_STOP || s1.finish[k] == RL_ENGINE_FINISH_LENGTH);
        for (int32_t i = 0; i < s1.n_toks[k]; i++) CHECK(s1.lp[k][i] <= 0 && s1.lp[k][i] > -100);
    }
    CHECK(s1.n_top_seen == 3);
    CHECK(s1.len[0] != s1.len[1] || memcmp(s1.text[0], s1.text[1], s1.len[0]) ||
          s1.len[0] != s1.len[2] || memcmp(s1.text[0], s1.text[2], s1.len[0]));
    CHECK_EQ_INT(s1.done.n_completion_tokens, s1.n_toks[0] + s1.n_toks[1] + s1.n_toks[2]);
    rl_engine_free(e);
    rl_model_free(m);
}

/* A pool far smaller than the demand: requests are preempted and recomputed, and still
 * give their sequential texts. */
TEST(preemption) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    /* stories260K, F32 KV: 5 layers * 2 * 4 heads * 8 dims * 4 bytes = 1280 bytes/token */
    rl_engine *e = make_engine(m, 8, 1280 * 16 * 24, 128); /* 24 blocks: 384 slots */
    static const char *prompts[] = {"Once upon a time", "The cat", "Lily went to the park",
                                    "Tom had a red ball", "One day", "The sun was"};
    enum { N = 6 };
    static result seq[N], par[N];
    rl_token pt[N][64];
    int32_t np[N];
    rl_engine_request *rs[N];
    for (int i = 0; i < N; i++) {
        np[i] = tokenize(m, prompts[i], pt[i], 64);
        rl_engine_request_params p = greedy(pt[i], np[i], 100);
        p.sampling.temperature = 0;
        rl_engine_request *r = submit(e, &p);
        CHECK(r && drain(r, &seq[i]));
        rl_engine_request_free(r);
    }
    for (int i = 0; i < N; i++) {
        rl_engine_request_params p = greedy(pt[i], np[i], 100);
        rs[i] = submit(e, &p);
    }
    for (int i = 0; i < N; i++) {
        CHECK(rs[i] && drain(rs[i], &par[i]));
        CHECK(par[i].len[0] == seq[i].len[0] && !memcmp(par[i].text[0], seq[i].text[0], seq[i].len[0]));
        rl_engine_request_free(rs[i]);
    }
    rl_engine_metrics mt;
    rl_engine_metrics_get(e, &mt);
    CHECKF(mt.n_preemptions > 0, "no preemption happened");
    CHECK_EQ_INT(mt.kv_blocks_used, 0);
    rl_engine_free(e);
    rl_model_free(m);
}

typedef struct aborter {
    rl_engine *e;
    rl_model *m;
    int seed;
    int ok;
} aborter;

static void *abort_thread(void *arg) {
    aborter *a = arg;
    rl_token prompt[64];
    int32_t n = tokenize(a->m, "Once upon a time", prompt, 64);
    unsigned s = (unsigned)a->seed;
    for (int i = 0; i < 40; i++) {
        rl_engine_request_params p = greedy(prompt, n, 50);
        p.n = 1 + (int32_t)(rand_r(&s) % 3);
        p.sampling.temperature = 0.8f;
        p.sampling.seed = s;
        rl_engine_request *r = NULL;
        char err[256];
        if (rl_engine_submit(a->e, &p, &r, err, sizeof err) != RL_OK) continue;
        int reads = (int)(rand_r(&s) % 6);
        for (int k = 0; k < reads; k++) {
            rl_engine_event ev;
            rl_engine_next_event(r, 5, &ev);
        }
        if (rand_r(&s) % 2) rl_engine_abort(r);
        rl_engine_event ev;
        int guard = 0;
        do {
            rl_engine_next_event(r, 1000, &ev);
        } while (ev.type != RL_ENGINE_EVENT_DONE && ++guard < 1000);
        if (ev.type == RL_ENGINE_EVENT_DONE) a->ok++;
        rl_engine_request_free(r);
    }
    return NULL;
}

/* Four threads submit, read a little, abort or not, free: everything ends with DONE, the
 * pool is whole afterwards; requests left running when the engine is freed end ABORT. */
TEST(aborts_anytime) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    rl_engine *e = make_engine(m, 8, 0, 256);
    pthread_t th[4];
    aborter a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (aborter){.e = e, .m = m, .seed = 17 + i};
        pthread_create(&th[i], NULL, abort_thread, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(a[i].ok, 40);
    }
    rl_engine_metrics mt;
    rl_engine_metrics_get(e, &mt);
    CHECK_EQ_INT(mt.n_running + mt.n_waiting, 0);
    CHECK_EQ_INT(mt.kv_blocks_used, 0);
    CHECK_EQ_INT(mt.n_finished + mt.n_aborted, mt.n_submitted);
    {
        char err[256];
        CHECK(rl__sched_check(e->sched, err, sizeof err) == RL_OK);
    }
    /* free with requests in flight */
    rl_token prompt[64];
    int32_t n = tokenize(m, "Once upon a time", prompt, 64);
    rl_engine_request_params p = greedy(prompt, n, 0);
    rl_engine_request *r1 = submit(e, &p), *r2 = submit(e, &p);
    rl_engine_free(e);
    static result res;
    CHECK(drain(r1, &res));
    CHECK(res.finish[0] == RL_ENGINE_FINISH_ABORT || res.finish[0] == RL_ENGINE_FINISH_STOP ||
          res.finish[0] == RL_ENGINE_FINISH_LENGTH);
    rl_engine_request_free(r1);
    rl_engine_abort(r2); /* done already: a no-op */
    rl_engine_request_free(r2);
    rl_model_free(m);
}

TEST(submit_errors) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    rl_engine_params ep = rl_engine_default_params();
    ep.n_parallel = 4;
    ep.n_ctx = 128;
    ep.max_waiting = 2;
    ep.n_threads = 2;
    rl_engine *e = NULL;
    char err[256];
    CHECK(rl_engine_create(m, &ep, &e, err, sizeof err) == RL_OK);
    rl_token prompt[4] = {1, 100, 200, 300}, bad[2] = {1, 100000};
    rl_engine_request *r = NULL;
    rl_engine_request_params p = greedy(prompt, 4, 10);
    p.n_prompt = 0;
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_INVALID_ARG && !r);
    p = greedy(bad, 2, 10);
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "prompt[1]") != NULL);
    p = greedy(prompt, 4, 200);
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_RANGE);
    CHECK(strstr(err, "max_tokens") != NULL);
    p = greedy(prompt, 4, -1);
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_INVALID_ARG);
    p = greedy(prompt, 4, 10);
    p.n = 5;
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "n = 5") != NULL);
    p = greedy(prompt, 4, 10);
    p.sampling.top_p = 2;
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "top_p") != NULL);
    const char *stops[] = {""};
    p = greedy(prompt, 4, 10);
    p.stop = stops;
    p.n_stop = 1;
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_INVALID_ARG);
    const char *stops2[] = {"\xff"};
    p.stop = stops2;
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_ERR_INVALID_ARG);
    /* text prompt */
    p = greedy(NULL, 0, 5);
    p.prompt_text = "Once upon";
    p.prompt_len = 9;
    p.tokenize_flags = RL_TOKENIZE_ADD_SPECIAL;
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_OK && r);
    static result res;
    CHECK(drain(r, &res));
    CHECK(res.done.n_prompt_tokens >= 3);
    rl_engine_request_free(r);
    /* queue full: many long requests; at most 4 run, 2 wait, the next is refused */
    rl_engine_request *rs[16];
    int n_ok = 0, n_limit = 0;
    p = greedy(prompt, 4, 120);
    for (int i = 0; i < 16; i++) {
        rs[i] = NULL;
        rl_status st = rl_engine_submit(e, &p, &rs[i], err, sizeof err);
        if (st == RL_OK) n_ok++;
        else if (st == RL_ERR_LIMIT) n_limit++;
    }
    CHECKF(n_limit > 0 && n_ok >= 2, "ok %d limit %d", n_ok, n_limit);
    for (int i = 0; i < 16; i++) rl_engine_request_free(rs[i]);
    rl_engine_metrics mt;
    rl_engine_metrics_get(e, &mt);
    CHECK(mt.n_rejected >= (uint64_t)n_limit + 7);
    rl_engine_free(e);
    /* create errors */
    ep = rl_engine_default_params();
    ep.n_parallel = 0;
    CHECK(rl_engine_create(m, &ep, &e, err, sizeof err) == RL_ERR_INVALID_ARG && !e);
    CHECK(strstr(err, "n_parallel") != NULL);
    ep = rl_engine_default_params();
    ep.kv_mem = 10;
    CHECK(rl_engine_create(m, &ep, &e, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "kv_mem") != NULL);
    rl_engine_free(NULL);
    rl_engine_request_free(NULL);
    rl_model_free(m);
}

/* A reader that takes each request's events in its notify callback, on the engine thread
 * right after the step that made them: no lag, so every event holds one step's tokens. */
typedef struct sync_reader {
    rl_engine_request *r;
    int32_t tokens[RL_ENGINE_MAX_N];
    atomic_bool done;
} sync_reader;

static void read_in_notify(void *user) {
    sync_reader *sr = user;
    rl_engine_event ev;
    while (!atomic_load(&sr->done) && rl_engine_next_event(sr->r, 0, &ev) == RL_OK &&
           ev.type != RL_ENGINE_EVENT_NONE) {
        if (ev.type == RL_ENGINE_EVENT_DONE) atomic_store(&sr->done, true);
        else sr->tokens[ev.seq_index] += ev.n_tokens;
    }
}

/* After warm-up the engine's steps allocate nothing: a second round of the same requests
 * (greedy; sampled with 5 top logprobs; n = 2 with stop strings that never match) runs
 * from admission to DONE without a single allocation; the output buffers are sized when
 * a request is created (at submit). */
TEST(steps_do_not_allocate) {
    rl_model *m = load_model();
    if (!m) SKIP("no stories260K");
    rl_engine *e = make_engine(m, 4, 0, 512);
    rl_token prompt[64];
    int32_t n = tokenize(m, "Once upon a time", prompt, 64);
    enum { MAX = 200 };
    rl_engine_request_params p[3];
    p[0] = greedy(prompt, n, MAX);
    p[1] = greedy(prompt, n, MAX);
    p[1].sampling.temperature = 0.8f;
    p[1].sampling.seed = 3;
    p[1].sampling.logprobs = true;
    p[1].sampling.top_logprobs = 5;
    p[2] = greedy(prompt, n, MAX);
    p[2].n = 2;
    p[2].sampling.temperature = 1.0f;
    p[2].sampling.seed = 9;
    const char *stops[] = {"qqqzzz", "\x01\x02"};
    p[2].stop = stops;
    p[2].n_stop = 2;
    static sync_reader sr[3];
    for (int round = 0; round < 2; round++) {
        memset(sr, 0, sizeof sr);
        for (int i = 0; i < 3; i++) {
            p[i].ignore_eos = true;
            p[i].notify = read_in_notify;
            p[i].notify_user = &sr[i];
            sr[i].r = submit(e, &p[i]);
        }
        const long a0 = rl__alloc_count();
        const double t_end = rl__now() + 60;
        while (rl__now() < t_end &&
               !(atomic_load(&sr[0].done) && atomic_load(&sr[1].done) && atomic_load(&sr[2].done)))
            nanosleep(&(struct timespec){0, 2000000}, NULL);
        const long a1 = rl__alloc_count();
        if (round == 1)
            CHECKF(a1 == a0, "%ld allocations in the steps of the second round", a1 - a0);
        for (int i = 0; i < 3; i++) {
            CHECK(atomic_load(&sr[i].done));
            for (int k = 0; k < p[i].n; k++) CHECK_EQ_INT(sr[i].tokens[k], MAX);
            rl_engine_request_free(sr[i].r);
        }
    }
    rl_engine_free(e);
    rl_model_free(m);
}

int main(void) {
    RUN(stop_scan);
    RUN(greedy_matches_decode);
    RUN(concurrent_equals_sequential);
    RUN(prefix_cache);
    RUN(stop_n_logprobs);
    RUN(preemption);
    RUN(aborts_anytime);
    RUN(submit_errors);
    RUN(steps_do_not_allocate);
    return rl_test_finish();
}
