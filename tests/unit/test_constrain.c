/* test_constrain: per-request grammars of the engine (src/engine/constrain.c) on
 * stories260K: outputs follow the grammar (checked by a fresh matcher), a grammar that
 * allows the greedy text changes nothing, end tokens only where the grammar can end, dead
 * ends finish with stop, max_tokens cuts give accepted prefixes, n > 1, bad grammars are
 * refused naming the grammar, the cache of compiled grammars (eviction while requests
 * use an entry), special_text shows control tokens, preemption, and handles that outlive
 * the engine. */
#include "engine/engine_impl.h"
#include "test.h"

typedef struct out {
    char text[RL_ENGINE_MAX_N][4096];
    size_t len[RL_ENGINE_MAX_N];
    rl_token toks[RL_ENGINE_MAX_N][1024];
    int32_t n_toks[RL_ENGINE_MAX_N];
    rl_engine_finish finish[RL_ENGINE_MAX_N];
    rl_engine_event done;
} out;

static bool drain(rl_engine_request *r, out *o) {
    memset(o, 0, sizeof *o);
    for (;;) {
        rl_engine_event ev;
        if (rl_engine_next_event(r, 30000, &ev) != RL_OK || ev.type == RL_ENGINE_EVENT_NONE)
            return false;
        if (ev.type == RL_ENGINE_EVENT_DONE) {
            o->done = ev;
            return true;
        }
        const int k = ev.seq_index;
        if (o->len[k] + ev.text_len < sizeof o->text[k]) {
            memcpy(o->text[k] + o->len[k], ev.text, ev.text_len);
            o->len[k] += ev.text_len;
        }
        for (int32_t i = 0; i < ev.n_tokens && o->n_toks[k] < 1024; i++)
            o->toks[k][o->n_toks[k]++] = ev.tokens[i].token;
        if (ev.finish) o->finish[k] = ev.finish;
    }
}

static rl_model *g_model;

static rl_engine *make_engine(int32_t n_parallel) {
    rl_engine_params p = rl_engine_default_params();
    p.n_parallel = n_parallel;
    p.n_ctx = 512;
    p.batch_tokens = 128;
    p.n_threads = 2;
    p.kv_type = RL_TYPE_F32;
    rl_engine *e = NULL;
    char err[256];
    rl_status st = rl_engine_create(g_model, &p, &e, err, sizeof err);
    CHECKF(st == RL_OK, "%s", err);
    return e;
}

static rl_engine_request_params params(const char *prompt, const char *grammar, int32_t max) {
    rl_engine_request_params p = rl_engine_request_default_params();
    p.prompt_text = prompt;
    p.prompt_len = strlen(prompt);
    p.tokenize_flags = RL_TOKENIZE_ADD_SPECIAL;
    p.max_tokens = max;
    p.grammar = grammar;
    return p;
}

/* Submit p and read it to the end. */
static bool run(rl_engine *e, const rl_engine_request_params *p, out *o) {
    rl_engine_request *r = NULL;
    char err[256];
    rl_status st = rl_engine_submit(e, p, &r, err, sizeof err);
    CHECKF(st == RL_OK, "submit: %s", err);
    if (st != RL_OK) return false;
    bool ok = drain(r, o);
    CHECK(ok);
    CHECK_EQ_INT(o->done.status, RL_OK);
    rl_engine_request_free(r);
    return ok;
}

/* Whether a fresh matcher of grammar accepts text[0..len) (whole when `whole`, else as a
 * prefix). */
static bool accepts(const char *grammar, const char *text, size_t len, bool whole) {
    rl_grammar *g = NULL;
    rl_grammar_matcher *m = NULL;
    char err[256];
    bool ok = rl_grammar_compile(grammar, strlen(grammar), NULL, NULL, NULL, &g, err,
                                 sizeof err) == RL_OK &&
              rl_grammar_matcher_create(g, 0, &m) == RL_OK &&
              (len == 0 || rl_grammar_matcher_accept_bytes(m, text, len, NULL) == RL_OK) &&
              (!whole || rl_grammar_matcher_can_end(m));
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    return ok;
}

TEST(follows_grammar) {
    rl_engine *e = make_engine(4);
    static const char *const grammars[] = {
        "root ::= \"yes\" | \"no\"",
        "root ::= [a-z]{3,8} \" \" [0-9]{1,3}",
        "root ::= \"{\\\"a\\\": \" [0-9]+ \"}\"",
    };
    for (size_t gi = 0; gi < RL_ARRAY_LEN(grammars); gi++)
        for (uint64_t seed = 1; seed <= 6; seed++) {
            rl_engine_request_params p = params("Once upon a time", grammars[gi], 100);
            p.sampling.seed = seed;
            p.sampling.temperature = 1.0f;
            out o;
            if (!run(e, &p, &o)) continue;
            CHECKF(accepts(grammars[gi], o.text[0], o.len[0], o.finish[0] == RL_ENGINE_FINISH_STOP),
                   "grammar %zu seed %llu: \"%.*s\" (%s)", gi, (unsigned long long)seed,
                   (int)o.len[0], o.text[0], rl_engine_finish_name(o.finish[0]));
            /* bounded grammars always complete: with an end token where the text could go
             * on, else right after the token that completed it */
            if (gi < 2) {
                CHECK_EQ_INT(o.finish[0], RL_ENGINE_FINISH_STOP);
                const bool eog = o.n_toks[0] > 0 &&
                                 rl_vocab_is_eog(rl_model_vocab(g_model), o.toks[0][o.n_toks[0] - 1]);
                const bool full = gi == 0 || (o.len[0] >= 3 && o.text[0][o.len[0] - 3] >= '0' &&
                                              o.text[0][o.len[0] - 3] <= '9');
                CHECKF(eog != full, "\"%.*s\": end token %d", (int)o.len[0], o.text[0], eog);
            }
        }
    rl_engine_free(e);
}

/* A grammar that allows the greedy text (printable ASCII) leaves greedy decoding as it is:
 * the sampled token is checked and kept. */
TEST(permissive_grammar_changes_nothing) {
    rl_engine *e = make_engine(2);
    rl_engine_request_params p = params("Once upon a time", NULL, 60);
    p.sampling.temperature = 0;
    out a, b;
    run(e, &p, &a);
    p.grammar = "root ::= [ -~\\n]*";
    run(e, &p, &b);
    CHECK_EQ_INT(a.n_toks[0], b.n_toks[0]);
    CHECK(a.n_toks[0] > 10 && !memcmp(a.toks[0], b.toks[0], (size_t)a.n_toks[0] * sizeof(rl_token)));
    CHECK(a.len[0] == b.len[0] && !memcmp(a.text[0], b.text[0], a.len[0]));
    rl_engine_free(e);
}

/* A length cut: finish length, the text an accepted prefix; end tokens never before the
 * grammar can end. */
TEST(cut_by_max_tokens) {
    rl_engine *e = make_engine(2);
    const char *gr = "root ::= \"[\" [a-z]+ (\",\" [a-z]+)* \"]\"";
    rl_engine_request_params p = params("Once upon a time", gr, 12);
    p.sampling.temperature = 0;
    out o;
    run(e, &p, &o);
    CHECK(accepts(gr, o.text[0], o.len[0], false));
    if (o.finish[0] == RL_ENGINE_FINISH_LENGTH) CHECK_EQ_INT(o.n_toks[0], 12);
    else CHECK(accepts(gr, o.text[0], o.len[0], true));
    rl_engine_free(e);
}

/* A text that nothing can continue ends at once (no end token drawn, none needed); a
 * grammar whose only next token is banned is at a dead end: stop. */
TEST(dead_end_stops) {
    rl_engine *e = make_engine(2);
    const rl_vocab *v = rl_model_vocab(g_model);
    rl_engine_request_params p = params("Once upon a time", "root ::= \"ab\"", 50);
    out o;
    run(e, &p, &o);
    CHECK_EQ_INT(o.finish[0], RL_ENGINE_FINISH_STOP);
    CHECK(o.len[0] == 2 && !memcmp(o.text[0], "ab", 2));
    for (int32_t i = 0; i < o.n_toks[0]; i++) CHECK(!rl_vocab_is_eog(v, o.toks[0][i]));
    rl_token bos = rl_vocab_bos(v);
    rl_logit_bias ban = {.token = bos, .bias = -INFINITY};
    char gr[64];
    snprintf(gr, sizeof gr, "root ::= \"a\" <[%d]> \"b\"", bos);
    p = params("Once upon a time", gr, 50);
    p.sampling.logit_bias = &ban;
    p.sampling.n_logit_bias = 1;
    run(e, &p, &o);
    CHECK_EQ_INT(o.finish[0], RL_ENGINE_FINISH_STOP);
    CHECK(o.len[0] == 1 && o.text[0][0] == 'a');
    /* ignore_eos does not make a grammar go on: the end token ends it */
    p = params("Once upon a time", "root ::= \"cd\"", 50);
    p.ignore_eos = true;
    run(e, &p, &o);
    CHECK_EQ_INT(o.finish[0], RL_ENGINE_FINISH_STOP);
    CHECK(o.len[0] == 2 && !memcmp(o.text[0], "cd", 2));
    rl_engine_free(e);
}

TEST(n_sequences) {
    rl_engine *e = make_engine(4);
    const char *gr = "root ::= (\"red\" | \"green\" | \"blue\") \" \" [a-z]{2,5}";
    rl_engine_request_params p = params("Once upon a time", gr, 40);
    p.n = 4;
    p.sampling.seed = 7;
    out o;
    run(e, &p, &o);
    for (int k = 0; k < 4; k++) {
        CHECK_EQ_INT(o.finish[k], RL_ENGINE_FINISH_STOP);
        CHECKF(accepts(gr, o.text[k], o.len[k], true), "seq %d: \"%.*s\"", k, (int)o.len[k],
               o.text[k]);
    }
    rl_engine_free(e);
}

TEST(bad_grammars) {
    rl_engine *e = make_engine(2);
    static const char *const bad[] = {"root ::= (\"a\"", "root ::= foo", "root ::= [a-", "x ::= \"a\""};
    for (size_t i = 0; i < RL_ARRAY_LEN(bad); i++) {
        rl_engine_request_params p = params("Once", bad[i], 10);
        rl_engine_request *r = NULL;
        char err[256] = "";
        rl_status st = rl_engine_submit(e, &p, &r, err, sizeof err);
        CHECKF(st == RL_ERR_INVALID_ARG, "%zu: %s", i, rl_status_str(st));
        CHECKF(!strncmp(err, "grammar: ", 9), "%s", err);
        CHECK(r == NULL);
    }
    rl_engine_request_params p = params("Once", "root ::= \"a\"", 10);
    p.grammar_root = "";
    rl_engine_request *r = NULL;
    char err[256] = "";
    CHECK_EQ_INT(rl_engine_submit(e, &p, &r, err, sizeof err), RL_ERR_INVALID_ARG);
    /* another start rule */
    p.grammar = "root ::= \"a\"\nother ::= \"zz\"";
    p.grammar_root = "other";
    out o;
    run(e, &p, &o);
    CHECK(o.len[0] == 2 && !memcmp(o.text[0], "zz", 2));
    rl_engine_metrics mt;
    rl_engine_metrics_get(e, &mt);
    CHECK(mt.n_rejected == RL_ARRAY_LEN(bad) + 1);
    rl_engine_free(e);
}

/* More grammars than the cache holds, while a request holds the oldest: it runs on after
 * its entry is evicted (ASan checks the lifetime), and every grammar is obeyed. */
TEST(cache_eviction) {
    rl_engine *e = make_engine(4);
    rl_engine_request_params p = params("Once upon a time", "root ::= [a-z]+", 200);
    p.sampling.seed = 3;
    rl_engine_request *first = NULL;
    char err[256];
    CHECK(rl_engine_submit(e, &p, &first, err, sizeof err) == RL_OK);
    char gr[64];
    for (int i = 0; i < 2 * RL_ENGINE_GRAMMAR_CACHE + 3; i++) {
        snprintf(gr, sizeof gr, "root ::= \"w%d\" [0-9]{%d}", i, 1 + i % 3);
        rl_engine_request_params q = params("Once", gr, 20);
        out o;
        run(e, &q, &o);
        CHECKF(accepts(gr, o.text[0], o.len[0], true), "%s: \"%.*s\"", gr, (int)o.len[0],
               o.text[0]);
        if (i % 4 == 0) { /* the same text again: from the cache */
            run(e, &q, &o);
            CHECK(accepts(gr, o.text[0], o.len[0], true));
        }
    }
    out o;
    CHECK(drain(first, &o));
    CHECK(accepts("root ::= [a-z]+", o.text[0], o.len[0], false));
    rl_engine_request_free(first);
    rl_engine_free(e);
}

/* special_text: a control token the grammar asks for (BOS, by reference) shows its text. */
TEST(special_text) {
    rl_engine *e = make_engine(2);
    const rl_vocab *v = rl_model_vocab(g_model);
    rl_token bos = rl_vocab_bos(v);
    size_t bl = 0;
    const char *bt = rl_vocab_token_text(v, bos, &bl);
    char gr[64];
    snprintf(gr, sizeof gr, "root ::= \"a\" <[%d]> \"b\"", bos);
    rl_engine_request_params p = params("Once", gr, 10);
    out o;
    run(e, &p, &o);
    CHECK(o.len[0] == 2 && !memcmp(o.text[0], "ab", 2));
    p.special_text = true;
    run(e, &p, &o);
    CHECKF(o.len[0] == bl + 2 && o.text[0][0] == 'a' && !memcmp(o.text[0] + 1, bt, bl) &&
               o.text[0][bl + 1] == 'b',
           "\"%.*s\"", (int)o.len[0], o.text[0]);
    rl_engine_free(e);
}

/* Under a pool too small for all requests, preempted and recomputed sequences keep their
 * matchers: each output equals its run alone (seeded sampling) and follows the grammar. */
TEST(preemption) {
    rl_engine_params ep = rl_engine_default_params();
    ep.n_parallel = 6;
    ep.kv_mem = 1280 * 16 * 24; /* stories260K, F32 KV: 1280 bytes a token; 24 blocks */
    ep.n_ctx = 128;
    ep.batch_tokens = 128;
    ep.n_threads = 2;
    ep.kv_type = RL_TYPE_F32;
    rl_engine *e = NULL;
    char err[256];
    CHECKF(rl_engine_create(g_model, &ep, &e, err, sizeof err) == RL_OK, "%s", err);
    if (!e) return;
    const char *gr = "root ::= [a-z]+ (\" \" [a-z]+)*";
    enum { N = 6 };
    static out alone[N], together[N];
    for (int i = 0; i < N; i++) {
        rl_engine_request_params p = params("Once upon a time", gr, 100);
        p.sampling.seed = 100 + (uint64_t)i;
        run(e, &p, &alone[i]);
    }
    rl_engine_request *rs[N];
    for (int i = 0; i < N; i++) {
        rl_engine_request_params p = params("Once upon a time", gr, 100);
        p.sampling.seed = 100 + (uint64_t)i;
        rs[i] = NULL;
        CHECK(rl_engine_submit(e, &p, &rs[i], err, sizeof err) == RL_OK);
    }
    for (int i = 0; i < N; i++) {
        if (!rs[i]) continue;
        CHECK(drain(rs[i], &together[i]));
        CHECKF(together[i].len[0] == alone[i].len[0] &&
                   !memcmp(together[i].text[0], alone[i].text[0], alone[i].len[0]),
               "%d: \"%.*s\" vs \"%.*s\"", i, (int)together[i].len[0], together[i].text[0],
               (int)alone[i].len[0], alone[i].text[0]);
        CHECK(accepts(gr, together[i].text[0], together[i].len[0], false));
        rl_engine_request_free(rs[i]);
    }
    rl_engine_metrics mt;
    rl_engine_metrics_get(e, &mt);
    CHECKF(mt.n_preemptions > 0, "no preemption happened");
    rl_engine_free(e);
}

/* A constrained request's handle outlives the engine; freeing the engine mid-run aborts. */
TEST(handle_outlives_engine) {
    rl_engine *e = make_engine(2);
    rl_engine_request_params p = params("Once upon a time", "root ::= [a-z ]+", 400);
    p.sampling.seed = 5;
    rl_engine_request *r = NULL;
    char err[256];
    CHECK(rl_engine_submit(e, &p, &r, err, sizeof err) == RL_OK);
    rl_engine_free(e);
    out o;
    CHECK(drain(r, &o));
    CHECK(o.finish[0] == RL_ENGINE_FINISH_ABORT || o.finish[0] == RL_ENGINE_FINISH_LENGTH ||
          o.finish[0] == RL_ENGINE_FINISH_STOP);
    rl_engine_request_free(r);
}

int main(void) {
    rl_model_params mp = rl_model_default_params();
    mp.n_threads = 2;
    char err[256];
    if (rl_model_load(rl_test_data("models/stories260K.gguf"), &mp, &g_model, err, sizeof err) !=
        RL_OK) {
        fprintf(stderr, "skip: stories260K.gguf: %s\n", err);
        return 77;
    }
    RUN(follows_grammar);
    RUN(permissive_grammar_changes_nothing);
    RUN(cut_by_max_tokens);
    RUN(dead_end_stops);
    RUN(n_sequences);
    RUN(bad_grammars);
    RUN(cache_eviction);
    RUN(special_text);
    RUN(preemption);
    RUN(handle_outlives_engine);
    rl_model_free(g_model);
    return rl_test_finish();
}
