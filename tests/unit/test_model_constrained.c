/*
 * test_model_constrained.c - the acceptance test of constrained generation (issue 6): with
 * random-weight models, which want to emit garbage, N generations (default 200) per GBNF
 * grammar, JSON Schema and regex, each with a budget of 1,024 tokens:
 *   - where the constraint bounds the length (enums, maxLength, maxItems, bounded numbers,
 *     required properties, fixed-size formats, bounded regexes), every generation completes
 *     (finish reason stop) and its text validates: the schema validator for schemas, PCRE2
 *     matching the whole text for regexes;
 *   - where it does not (every grammar of testdata/grammars, open strings and arrays, any
 *     JSON object, open regexes), every text is a prefix the grammar accepts; a generation
 *     cut by the budget has finish reason length and exactly 1,024 tokens; one that ends
 *     earlier ended where its text is complete (stop; then it validates as above).
 * Every text is also checked byte by byte against the grammar with a fresh matcher (not the
 * token-level one that produced it). Samplers rotate per generation: temperature 1 alone
 * (five in eight), top-k 40, top-p 0.9, min-p 0.1; each generation has its own seed, drawn
 * from a base seed printed at the start (RUVLLM_TEST_SEED=S repeats a run). The counts of
 * generations and outcomes are printed per case and in total.
 *
 * Speed: the generations of all cases are shared by 2 worker threads
 * (RUVLLM_CONSTRAINED_THREADS), each with a single-threaded context that runs 32 of them at
 * a time as sequences (one decode per step for all; a finished one is replaced at once).
 * Unbounded generations are long, so every case runs on the zoo's llama3 (byte-level BPE
 * vocabulary trimmed to 2,304 tokens: every byte is a token, sampling is cheap), and the
 * KV cache (F32) keeps only each sequence's last 32 positions (older ones are removed as it
 * advances): a random model gains nothing from a longer context, and attention stays cheap.
 * The bounded cases also run on llama-2-tiny-random (the full 32,000-token Llama 2
 * vocabulary, SentencePiece). About 1.6 million tokens at 200 generations, about 55 us of
 * CPU each: 90 s of CPU, shared by the two threads.
 * Under ASan/UBSan (the _san variant) each case runs 4 generations instead of 200 (about
 * 35,000 tokens; ASan makes a token about ten times dearer);
 * RUVLLM_CONSTRAINED_GENS=N sets the number for either variant; RUVLLM_CONSTRAINED_CASE=S
 * runs only the cases whose name contains S.
 */
#include "test.h"

#include "ruvllm.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <time.h>

#define BUDGET 1024
#define N_PAR 32
#define KV_WINDOW 32

typedef enum kind { K_GBNF, K_SCHEMA, K_REGEX, K_JSON_OBJECT } kind;

typedef struct tcase {
    const char *name;
    kind k;
    const char *src; /* grammar file (under testdata/grammars), schema JSON, or regex */
    bool from_file;  /* src names a file under testdata/grammars */
    bool bounded;
} tcase;

static const tcase k_cases[] = {
    /* every grammar of testdata/grammars: none bounds the length */
    {"arithmetic.gbnf", K_GBNF, "arithmetic.gbnf", true, false},
    {"c.gbnf", K_GBNF, "c.gbnf", true, false},
    {"chess.gbnf", K_GBNF, "chess.gbnf", true, false},
    {"english.gbnf", K_GBNF, "english.gbnf", true, false},
    {"japanese.gbnf", K_GBNF, "japanese.gbnf", true, false},
    {"json.gbnf", K_GBNF, "json.gbnf", true, false},
    {"json_arr.gbnf", K_GBNF, "json_arr.gbnf", true, false},
    {"list.gbnf", K_GBNF, "list.gbnf", true, false},
    /* bounded schemas (worst case well under 1,024 bytes, whitespace included: the
     * converter allows at most 22 blank bytes between tokens) */
    {"schema enum", K_SCHEMA,
     "{\"enum\": [\"red\", \"amber\", \"green\", 7, null, true, {\"k\": [1, 2]}]}", false, true},
    {"schema object maxLength/maxItems", K_SCHEMA,
     "{\"type\": \"object\", \"properties\": {"
     "\"name\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 12},"
     "\"age\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 150},"
     "\"tags\": {\"type\": \"array\", \"items\": {\"enum\": [\"a\", \"b\", \"c\"]}, "
     "\"maxItems\": 3}},"
     "\"required\": [\"name\", \"age\"], \"additionalProperties\": false}",
     false, true},
    {"schema nested required", K_SCHEMA,
     "{\"type\": \"object\", \"properties\": {"
     "\"user\": {\"type\": \"object\", \"properties\": {"
     "\"id\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 99999},"
     "\"role\": {\"enum\": [\"admin\", \"user\", \"guest\"]}},"
     "\"required\": [\"id\", \"role\"], \"additionalProperties\": false},"
     "\"point\": {\"type\": \"object\", \"properties\": {"
     "\"x\": {\"type\": \"integer\", \"minimum\": -100, \"maximum\": 100},"
     "\"y\": {\"type\": \"integer\", \"minimum\": -100, \"maximum\": 100}},"
     "\"required\": [\"x\", \"y\"], \"additionalProperties\": false}},"
     "\"required\": [\"user\", \"point\"], \"additionalProperties\": false}",
     false, true},
    {"schema array of objects maxItems", K_SCHEMA,
     "{\"type\": \"array\", \"minItems\": 1, \"maxItems\": 3, \"items\": {\"type\": \"object\","
     "\"properties\": {\"x\": {\"type\": \"integer\", \"minimum\": -5, \"maximum\": 5},"
     "\"ok\": {\"type\": \"boolean\"}}, \"required\": [\"x\", \"ok\"],"
     "\"additionalProperties\": false}}",
     false, true},
    {"schema anyOf const/pattern", K_SCHEMA,
     "{\"anyOf\": [{\"const\": \"yes\"}, {\"type\": \"integer\", \"minimum\": 0, "
     "\"maximum\": 9}, {\"type\": \"string\", \"pattern\": \"^[A-Z]{2}[0-9]{3}$\"}]}",
     false, true},
    {"schema formats", K_SCHEMA,
     "{\"type\": \"object\", \"properties\": {\"day\": {\"type\": \"string\", \"format\": "
     "\"date\"}, \"id\": {\"type\": \"string\", \"format\": \"uuid\"}, \"at\": {\"type\": "
     "\"string\", \"format\": \"time\"}}, \"required\": [\"day\", \"id\", \"at\"], "
     "\"additionalProperties\": false}",
     false, true},
    /* unbounded schemas */
    {"schema any object", K_SCHEMA, "{\"type\": \"object\"}", false, false},
    {"schema array of strings", K_SCHEMA,
     "{\"type\": \"array\", \"items\": {\"type\": \"string\"}}", false, false},
    {"bench_schema.json", K_SCHEMA, "bench_schema.json", true, false},
    {"json object mode", K_JSON_OBJECT, NULL, false, false},
    /* regexes */
    {"regex phone", K_REGEX, "[0-9]{3}-[0-9]{4}", false, true},
    {"regex alternatives", K_REGEX, "(yes|no|maybe)", false, true},
    {"regex email-like", K_REGEX, "[A-Za-z]{1,10}@[a-z]{2,8}\\.(com|org|net)", false, true},
    {"regex hex", K_REGEX, "(0x)?[0-9a-f]{1,8}", false, true},
    {"regex words", K_REGEX, "[a-z]+( [a-z]+)*", false, false},
    {"regex open email", K_REGEX, "\\w+@\\w+\\.com", false, false},
};
#define N_CASES (sizeof k_cases / sizeof k_cases[0])

/* One compiled case: the grammar (with the model's vocabulary) and its checkers. */
typedef struct ccase {
    const tcase *tc;
    uint64_t seed; /* of the case's generations */
    rl_grammar *g;
    rl_schema *schema;
    pcre2_code *re;
} ccase;

typedef struct counts {
    int n, stop, length, fail;
    long long tokens;
} counts;

typedef struct slot {
    bool active;
    int job;
    const ccase *c;
    rl_sampler *s;
    rl_grammar_matcher *m;
    rl_grammar_constraint *gc;
    rl_token next;
    int32_t n_tok, pos;
    char *text;
    size_t len, cap;
} slot;

/* A generation to run: case c (index into the compiled cases), generation gen of it. */
typedef struct job {
    int c, gen;
} job;

/* One thread's share of a model's generations: jobs first, first + stride, ... of the
 * list, on its own context. Workers never touch the test counters: they record counts per
 * case and the first messages, which the main thread checks. */
typedef struct worker {
    const rl_vocab *v;
    rl_context *ctx;
    int32_t n_vocab;
    const char *name;
    const ccase *cases;
    const job *jobs;
    int n_jobs, first, stride;
    counts cnt[N_CASES];
    int n_msg, n_fail;
    char msg[4][700];
    pthread_t th;
} worker;

static void failf(worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(worker *w, const char *fmt, ...) {
    w->n_fail++;
    if (w->n_msg >= 4) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg[w->n_msg++], sizeof w->msg[0], fmt, ap);
    va_end(ap);
}

static uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* GBNF text of a case (malloc'd); NULL with a check failure when it does not convert. */
static char *case_gbnf(const tcase *tc, char **schema_text) {
    char err[512] = "", *out = NULL, *gb = NULL;
    size_t n = 0;
    char rel[256];
    const char *src = tc->src;
    char *file = NULL;
    if (tc->from_file) {
        snprintf(rel, sizeof rel, "testdata/grammars/%s", tc->src);
        file = (char *)rl_test_read_file(rl_test_data(rel), &n);
        CHECKF(file != NULL, "%s unreadable", rel);
        if (!file) return NULL;
        src = file;
    } else if (src) {
        n = strlen(src);
    }
    rl_status st = RL_OK;
    switch (tc->k) {
    case K_GBNF:
        out = strndup(src, n);
        break;
    case K_SCHEMA:
        st = rl_schema_to_gbnf(src, n, 0, &gb, err, sizeof err);
        *schema_text = strndup(src, n);
        break;
    case K_REGEX:
        st = rl_regex_to_gbnf(src, n, 0, &gb, err, sizeof err);
        break;
    case K_JSON_OBJECT:
        out = strdup(rl_json_object_gbnf());
        *schema_text = strdup("{\"type\": \"object\"}");
        break;
    }
    CHECKF(st == RL_OK, "%s: %s", tc->name, err);
    if (gb) {
        out = strdup(gb);
        rl_free_string(gb);
    }
    free(file);
    return out;
}

static bool ccase_init(ccase *c, const tcase *tc, const rl_grammar_vocab *gv) {
    memset(c, 0, sizeof *c);
    c->tc = tc;
    char *schema_text = NULL, err[512] = "";
    char *gbnf = case_gbnf(tc, &schema_text);
    bool ok = gbnf != NULL;
    if (ok) {
        rl_status st =
            rl_grammar_compile(gbnf, strlen(gbnf), NULL, gv, NULL, &c->g, err, sizeof err);
        CHECKF(st == RL_OK, "%s: %s", tc->name, err);
        ok = st == RL_OK;
    }
    if (ok && schema_text) {
        rl_status st =
            rl_schema_compile(schema_text, strlen(schema_text), NULL, &c->schema, err, sizeof err);
        CHECKF(st == RL_OK, "%s: %s", tc->name, err);
        ok = st == RL_OK;
    }
    if (ok && tc->k == K_REGEX) {
        int ec;
        PCRE2_SIZE eo;
        c->re = pcre2_compile((PCRE2_SPTR)tc->src, PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo, NULL);
        CHECKF(c->re != NULL, "%s: PCRE2 error %d at %zu", tc->name, ec, (size_t)eo);
        ok = c->re != NULL;
    }
    free(gbnf);
    free(schema_text);
    return ok;
}

static void ccase_free(ccase *c) {
    rl_grammar_free(c->g);
    rl_schema_free(c->schema);
    pcre2_code_free(c->re);
}

/* Check one finished generation; true when it is as the case demands. */
static bool verify(worker *w, const slot *sl, bool stop, int gen) {
    const ccase *c = sl->c;
    const tcase *tc = c->tc;
    const char *why = NULL;
    char err[512] = "";
    /* byte by byte, from the start, with a fresh matcher */
    rl_grammar_matcher *m = NULL;
    size_t n_ok = 0;
    bool prefix = false, complete = false;
    if (rl_grammar_matcher_create(c->g, 0, &m) == RL_OK) {
        prefix = rl_grammar_matcher_accept_bytes(m, sl->text, sl->len, &n_ok) == RL_OK;
        complete = prefix && rl_grammar_matcher_can_end(m);
    }
    rl_grammar_matcher_free(m);
    if (!prefix) {
        snprintf(err, sizeof err, "the grammar rejects byte %zu", n_ok);
        why = err;
    } else if (tc->bounded && !stop) {
        why = "a bounded constraint did not complete within the budget";
    } else if (!stop && sl->n_tok != BUDGET) {
        why = "finish reason length before the budget";
    } else if (stop && !complete) {
        why = "finish reason stop but the text is incomplete";
    } else if (stop && c->schema) {
        bool valid = false;
        rl_status st = rl_schema_check(c->schema, sl->text, sl->len, &valid, err, sizeof err);
        if (st != RL_OK || !valid) why = st != RL_OK ? "not JSON" : err;
    } else if (stop && c->re) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(c->re, NULL);
        int rc = md ? pcre2_match(c->re, (PCRE2_SPTR)sl->text, sl->len, 0, 0, md, NULL) : -1;
        pcre2_match_data_free(md);
        if (rc < 0) why = "PCRE2 does not match the whole text";
    }
    if (why)
        failf(w, "%s on %s, generation %d (%s, %d tokens): %s: '%.*s'", tc->name, w->name, gen,
              stop ? "stop" : "length", (int)sl->n_tok, why, (int)(sl->len > 300 ? 300 : sl->len),
              sl->text);
    return !why;
}

static void slot_clear(slot *sl) {
    rl_sampler_free(sl->s);
    rl_grammar_constraint_free(sl->gc);
    rl_grammar_matcher_free(sl->m);
    sl->s = NULL;
    sl->gc = NULL;
    sl->m = NULL;
    sl->active = false;
}

/* Job jb in sl: its case's matcher at the start, its own seed and sampler (temperature 1
 * alone in 5 of every 8 generations, then top-k 40, top-p 0.9, min-p 0.1). */
static bool slot_start(worker *w, slot *sl, int jb) {
    const job *j = &w->jobs[jb];
    sl->c = &w->cases[j->c];
    rl_sampler_params p = rl_sampler_default_params();
    p.seed = splitmix(sl->c->seed ^ splitmix((uint64_t)j->gen));
    switch (j->gen % 8) { /* the first four cover them all (the _san variant runs four) */
    case 1:
        p.top_k = 40;
        break;
    case 2:
        p.top_p = 0.9f;
        break;
    case 3:
        p.min_p = 0.1f;
        break;
    default:
        break;
    }
    char err[256] = "";
    if (rl_sampler_create(&p, w->n_vocab, NULL, &sl->s, err, sizeof err) != RL_OK ||
        rl_grammar_matcher_create(sl->c->g, 0, &sl->m) != RL_OK ||
        rl_grammar_constraint_create(sl->m, w->n_vocab, &sl->gc) != RL_OK) {
        failf(w, "%s: sampler, matcher or constraint: %s %s", sl->c->tc->name, err,
              sl->m ? rl_grammar_matcher_errmsg(sl->m) : "");
        slot_clear(sl);
        return false;
    }
    sl->job = jb;
    sl->n_tok = 0;
    sl->len = 0;
    sl->active = true;
    return true;
}

static bool append(slot *sl, const rl_vocab *v, rl_token t) {
    char piece[256];
    size_t k = 0;
    if (rl_token_to_piece(v, t, 0, piece, sizeof piece, &k) != RL_OK) return false;
    if (sl->len + k + 1 > sl->cap) {
        size_t cap = (sl->len + k + 1) * 2;
        char *nt = realloc(sl->text, cap);
        if (!nt) return false;
        sl->text = nt;
        sl->cap = cap;
    }
    memcpy(sl->text + sl->len, piece, k);
    sl->len += k;
    sl->text[sl->len] = '\0';
    return true;
}

/* The worker's jobs, N_PAR at a time as sequences of its context: one decode per step for
 * all of them, a finished slot taking the next job at once (cases mix in a batch); the
 * cache keeps each sequence's last KV_WINDOW positions. */
static void *run_worker(void *arg) {
    worker *w = arg;
    slot slots[N_PAR];
    memset(slots, 0, sizeof slots);
    const rl_token bos = rl_vocab_bos(w->v) != RL_TOKEN_NULL ? rl_vocab_bos(w->v) : 0;
    int next = w->first;
    rl_token tok[N_PAR];
    int32_t seq[N_PAR], idx[N_PAR];
    int8_t want[N_PAR];
    for (;;) {
        int32_t nb = 0;
        for (int32_t i = 0; i < N_PAR; i++) {
            slot *sl = &slots[i];
            if (!sl->active && next < w->n_jobs) {
                rl_kv_seq_remove(w->ctx, i, -1, -1);
                if (!slot_start(w, sl, next)) goto done;
                next += w->stride;
                sl->next = bos;
                sl->pos = 0;
            }
            if (!sl->active) continue;
            if (sl->pos > KV_WINDOW) rl_kv_seq_remove(w->ctx, i, 0, sl->pos - KV_WINDOW);
            tok[nb] = sl->next;
            seq[nb] = i;
            want[nb] = 1;
            idx[i] = nb++;
            sl->pos++;
        }
        if (!nb) break;
        rl_batch b = {.n_tokens = nb, .token = tok, .seq_id = seq, .logits = want};
        if (rl_decode(w->ctx, &b) != RL_OK) {
            failf(w, "decode: %s", rl_context_errmsg(w->ctx));
            goto done;
        }
        for (int32_t i = 0; i < N_PAR; i++) {
            slot *sl = &slots[i];
            if (!sl->active) continue;
            const char *name = sl->c->tc->name;
            const float *lg = rl_get_logits(w->ctx, idx[i]);
            rl_token t = RL_TOKEN_NULL;
            bool stop = false, end = false;
            rl_status st =
                rl_sampler_sample_constrained(sl->s, lg, rl_grammar_constraint_get(sl->gc), &t);
            if (st != RL_OK) {
                /* nothing allowed: right only when the text is complete */
                if (!rl_grammar_matcher_can_end(sl->m))
                    failf(w, "%s: sampling failed: %s / %s", name, rl_sampler_errmsg(sl->s),
                          rl_grammar_matcher_errmsg(sl->m));
                stop = end = true;
            } else {
                rl_sampler_accept(sl->s, t);
                if (rl_grammar_matcher_accept_token(sl->m, t) != RL_OK)
                    failf(w, "%s: token %d refused: %s", name, (int)t,
                          rl_grammar_matcher_errmsg(sl->m));
                if (rl_vocab_is_eog(w->v, t)) {
                    stop = end = true;
                } else {
                    if (!append(sl, w->v, t)) failf(w, "%s: token %d: no text", name, (int)t);
                    sl->n_tok++;
                    if (rl_grammar_constraint_done(sl->gc))
                        stop = end = true;
                    else if (sl->n_tok >= BUDGET)
                        end = true;
                }
            }
            if (!end) {
                sl->next = t;
                continue;
            }
            const job *j = &w->jobs[sl->job];
            counts *cnt = &w->cnt[j->c];
            const int f0 = w->n_fail;
            bool ok = verify(w, sl, stop, j->gen) && w->n_fail == f0;
            cnt->n++;
            cnt->tokens += sl->n_tok;
            if (!ok)
                cnt->fail++;
            else if (stop)
                cnt->stop++;
            else
                cnt->length++;
            slot_clear(sl);
        }
    }
done:
    for (int32_t i = 0; i < N_PAR; i++) {
        rl_kv_seq_remove(w->ctx, i, -1, -1);
        slot_clear(&slots[i]);
        free(slots[i].text);
    }
    return NULL;
}

static int env_int(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && atoi(e) > 0 ? atoi(e) : dflt;
}

static int n_generations(void) {
#ifdef RL_UNDER_SANITIZER
    return env_int("RUVLLM_CONSTRAINED_GENS", 4);
#else
    return env_int("RUVLLM_CONSTRAINED_GENS", 200);
#endif
}

static uint64_t g_seed;

/* All cases (bounded_only: only those that bound the length) on one model, n
 * generations each, the jobs shared among RUVLLM_CONSTRAINED_THREADS workers (default 2),
 * each with its own single-threaded context. */
static void run_model(const char *path, const char *name, bool bounded_only, counts *total) {
    rl_model_params mp = rl_model_default_params();
    mp.n_threads = 1;
    rl_model *m = NULL;
    char err[512] = "";
    if (rl_model_load(path, &mp, &m, err, sizeof err) != RL_OK) SKIP("%s: %s", name, err);
    const int n = n_generations();
    const char *only = getenv("RUVLLM_CONSTRAINED_CASE"); /* a part of a case name */
    int n_w = env_int("RUVLLM_CONSTRAINED_THREADS", 2);
    if (n_w > 8) n_w = 8;
    static worker ws[8];
    memset(ws, 0, sizeof ws);
    ccase cases[N_CASES];
    memset(cases, 0, sizeof cases);
    job *jobs = malloc(sizeof(job) * N_CASES * (size_t)n);
    int n_jobs = 0;
    rl_grammar_vocab *gv = NULL;
    bool ok = jobs && rl_grammar_vocab_create(rl_model_vocab(m), &gv) == RL_OK;
    CHECKF(ok, "%s: the vocabulary index", name);
    for (size_t k = 0; ok && k < N_CASES; k++) {
        const tcase *tc = &k_cases[k];
        if ((bounded_only && !tc->bounded) || (only && !strstr(tc->name, only))) continue;
        if (!ccase_init(&cases[k], tc, gv)) continue;
        cases[k].seed = splitmix(g_seed + k * 7919);
        for (int g = 0; g < n; g++) jobs[n_jobs++] = (job){(int)k, g};
    }
    rl_context_params cp = rl_context_default_params();
    cp.n_seq_max = N_PAR;
    cp.n_outputs_max = N_PAR;
    cp.n_batch = N_PAR;
    cp.n_ctx = N_PAR * (KV_WINDOW + 4);
    cp.n_threads = 1;
    cp.kv_type = RL_TYPE_F32;
    for (int k = 0; ok && k < n_w; k++) {
        worker *w = &ws[k];
        w->v = rl_model_vocab(m);
        w->n_vocab = rl_model_n_vocab(m);
        w->name = name;
        w->cases = cases;
        w->jobs = jobs;
        w->n_jobs = n_jobs;
        w->first = k;
        w->stride = n_w;
        ok = rl_context_create(m, &cp, &w->ctx, err, sizeof err) == RL_OK;
        CHECKF(ok, "%s: %s", name, err);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; ok && k < n_w; k++)
        if (pthread_create(&ws[k].th, NULL, run_worker, &ws[k]) != 0) {
            run_worker(&ws[k]);
            ws[k].th = 0;
        }
    for (int k = 0; ok && k < n_w; k++) {
        if (ws[k].th) pthread_join(ws[k].th, NULL);
        for (int j = 0; j < ws[k].n_msg; j++) CHECKF(false, "%s", ws[k].msg[j]);
        CHECK_EQ_INT(ws[k].n_fail, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    counts mt = {0};
    for (size_t k = 0; ok && k < N_CASES; k++) {
        if (!cases[k].g) continue;
        const tcase *tc = cases[k].tc;
        counts cnt = {0};
        for (int i = 0; i < n_w; i++) {
            const counts *c = &ws[i].cnt[k];
            cnt.n += c->n;
            cnt.stop += c->stop;
            cnt.length += c->length;
            cnt.fail += c->fail;
            cnt.tokens += c->tokens;
        }
        fprintf(stderr,
                "  %-11s %-33s %s: %d generations: %d stop, %d length, %d failed; %.0f tokens "
                "on average\n",
                name, tc->name, tc->bounded ? "bounded  " : "unbounded", cnt.n, cnt.stop,
                cnt.length, cnt.fail, cnt.n ? (double)cnt.tokens / cnt.n : 0.0);
        CHECK_EQ_INT(cnt.n, n);
        CHECK_EQ_INT(cnt.fail, 0);
        if (tc->bounded) CHECK_EQ_INT(cnt.stop, n);
        mt.n += cnt.n;
        mt.stop += cnt.stop;
        mt.length += cnt.length;
        mt.fail += cnt.fail;
        mt.tokens += cnt.tokens;
    }
    const double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    fprintf(stderr, "  %-11s %d generations, %lld tokens in %.1f s (%.0f tokens/s, %d threads)\n",
            name, mt.n, mt.tokens, sec, sec > 0 ? (double)mt.tokens / sec : 0.0, n_w);
    total->n += mt.n;
    total->stop += mt.stop;
    total->length += mt.length;
    total->fail += mt.fail;
    total->tokens += mt.tokens;
    for (size_t k = 0; k < N_CASES; k++) ccase_free(&cases[k]);
    for (int k = 0; k < n_w; k++) rl_context_free(ws[k].ctx);
    rl_grammar_vocab_free(gv);
    free(jobs);
    rl_model_free(m);
}

static counts g_total;

TEST(zoo_llama3_all_cases) {
    const char *p = rl_test_zoo_model("llama3-Q8_0.gguf");
    if (!p) SKIP("models/zoo/llama3-Q8_0.gguf missing");
    run_model(p, "zoo-llama3", false, &g_total);
}

TEST(llama2_tiny_bounded_cases) {
    const char *p = rl_test_data("models/llama-2-tiny-random.gguf");
    FILE *f = fopen(p, "rb");
    if (!f) SKIP("models/llama-2-tiny-random.gguf missing");
    fclose(f);
    run_model(p, "llama2-tiny", true, &g_total);
}

int main(void) {
    const char *e = getenv("RUVLLM_TEST_SEED");
    g_seed = e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr,
            "test_model_constrained: seed %llu (RUVLLM_TEST_SEED repeats it), %d "
            "generations per case and model, budget %d tokens\n",
            (unsigned long long)g_seed, n_generations(), BUDGET);
    time_t t0 = time(NULL);
    RUN(zoo_llama3_all_cases);
    RUN(llama2_tiny_bounded_cases);
    fprintf(stderr, "total: %d generations: %d stop, %d length, %d failed; %lld tokens; %.0f s\n",
            g_total.n, g_total.stop, g_total.length, g_total.fail, g_total.tokens,
            difftime(time(NULL), t0));
    return rl_test_finish();
}
