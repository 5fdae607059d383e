/* Unit tests of the continuous-batching scheduler (src/sched): parameter and request
 * validation, one request's life, token budget and chunked prefill with decode priority,
 * priority order, prefix-cache reuse and salts, n > 1 forks with copy-on-write,
 * preemption with recomputation, a request larger than the pool, aborts at every stage,
 * a plan that did not run, allocation failures, and a long randomized simulation against
 * a fake engine that checks every token, position and KV slot it is given. */
#include "test.h"
#include "sched/sched.h"

#define CHECK_SCHED(s)                                                                             \
    do {                                                                                           \
        char e_[256];                                                                              \
        rl_status s_ = rl__sched_check((s), e_, sizeof e_);                                        \
        CHECKF(s_ == RL_OK, "invariant: %s", e_);                                                  \
    } while (0)

typedef struct {
    rl__kv *kv;
    rl__sched *s;
} fixture;

static fixture make(int32_t n_blocks, int32_t bs, int32_t batch, int32_t max_seqs) {
    fixture f = {0};
    rl__kv_params kp = rl__kv_default_params();
    kp.n_blocks = n_blocks;
    kp.block_size = bs;
    char err[256];
    CHECKF(rl__kv_create(&kp, &f.kv, err, sizeof err) == RL_OK, "%s", err);
    rl__sched_params sp = rl__sched_default_params();
    sp.batch_tokens = batch;
    sp.max_seqs = max_seqs;
    CHECKF(rl__sched_create(&sp, f.kv, &f.s, err, sizeof err) == RL_OK, "%s", err);
    return f;
}

static void done(fixture *f) {
    rl__sched_free(f->s);
    rl__kv_free(f->kv);
}

static rl__sched_req req(uint64_t id, const int32_t *prompt, int32_t n_prompt, int32_t max_new) {
    rl__sched_req r = {0};
    r.id = id;
    r.prompt = prompt;
    r.n_prompt = n_prompt;
    r.max_new_tokens = max_new;
    r.n = 1;
    return r;
}

static int32_t seqtok[64];
static const int32_t *ramp(int32_t base, int32_t n) {
    for (int32_t i = 0; i < n && i < 64; i++) seqtok[i] = base + i;
    return seqtok;
}

/* Run a plan with a trivial engine: sampled token = 1000 + position; nobody stops. */
static void answer(fixture *f, const rl__sched_plan *pl, const rl__sched_event **ev,
                   int32_t *n_ev) {
    rl__sched_output out[64];
    for (int32_t i = 0; i < pl->n_items && i < 64; i++) {
        out[i].token = 1000 + pl->items[i].pos + pl->items[i].n_tokens;
        out[i].stop = false;
    }
    CHECK(rl__sched_update(f->s, out, pl->n_items, ev, n_ev) == RL_OK);
    CHECK_SCHED(f->s);
}

/* ---- validation ------------------------------------------------------------------------ */

TEST(create_params) {
    static const struct {
        int32_t batch, max_seqs, chunk, max_waiting, n_ctx;
        const char *field; /* NULL: valid */
    } cases[] = {
        {512, 64, 0, 0, 0, NULL},           {8, 8, 4, 10, 100, NULL},
        {512, 0, 0, 0, 0, "max_seqs"},      {4, 8, 0, 0, 0, "batch_tokens"},
        {512, 8, -1, 0, 0, "chunk_tokens"}, {512, 8, 0, -1, 0, "max_waiting"},
        {512, 8, 0, 0, -5, "n_ctx_max"},
    };
    rl__kv_params kp = rl__kv_default_params();
    kp.n_blocks = 16;
    rl__kv *kv = NULL;
    CHECK(rl__kv_create(&kp, &kv, NULL, 0) == RL_OK);
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        rl__sched_params p = rl__sched_default_params();
        p.batch_tokens = cases[i].batch;
        p.max_seqs = cases[i].max_seqs;
        p.chunk_tokens = cases[i].chunk;
        p.max_waiting = cases[i].max_waiting;
        p.n_ctx_max = cases[i].n_ctx;
        rl__sched *s = NULL;
        char err[256] = "";
        rl_status st = rl__sched_create(&p, kv, &s, err, sizeof err);
        if (cases[i].field) {
            CHECKF(st == RL_ERR_INVALID_ARG && !s && strstr(err, cases[i].field), "case %zu: %s", i,
                   err);
        } else {
            CHECKF(st == RL_OK && s, "case %zu: %s", i, err);
        }
        rl__sched_free(s);
    }
    rl__sched *s = NULL;
    CHECK(rl__sched_create(NULL, kv, &s, NULL, 0) == RL_ERR_INVALID_ARG);
    rl__sched_free(NULL);
    rl__kv_free(kv);
}

TEST(add_validation) {
    fixture f = make(16, 4, 32, 4);
    rl__sched_params p = rl__sched_default_params();
    (void)p;
    static const int32_t good[8] = {1, 2, 3, 4, 5, 6, 7, 8}, bad[3] = {1, -2, 3};
    CHECK(rl__sched_add(f.s,
                        &(rl__sched_req){
                            .id = 1, .prompt = good, .n_prompt = 8, .max_new_tokens = 4, .n = 1}) ==
          RL_OK);
    static const struct {
        rl__sched_req r;
        rl_status want;
        const char *msg;
    } cases[] = {
        {{.id = 2, .prompt = NULL, .n_prompt = 3, .max_new_tokens = 1, .n = 1},
         RL_ERR_INVALID_ARG,
         "prompt is empty"},
        {{.id = 2, .prompt = good, .n_prompt = 0, .max_new_tokens = 1, .n = 1},
         RL_ERR_INVALID_ARG,
         "prompt is empty"},
        {{.id = 2, .prompt = bad, .n_prompt = 3, .max_new_tokens = 1, .n = 1},
         RL_ERR_INVALID_ARG,
         "prompt[1]"},
        {{.id = 2, .prompt = good, .n_prompt = 3, .max_new_tokens = 0, .n = 1},
         RL_ERR_INVALID_ARG,
         "max_new_tokens"},
        {{.id = 2, .prompt = good, .n_prompt = 3, .max_new_tokens = 1, .n = 0},
         RL_ERR_INVALID_ARG,
         "n 0"},
        {{.id = 2, .prompt = good, .n_prompt = 3, .max_new_tokens = 1, .n = 5},
         RL_ERR_INVALID_ARG,
         "n 5"},
        {{.id = 2, .prompt = good, .n_prompt = 3, .max_new_tokens = 1, .n = 1, .salt_len = 3},
         RL_ERR_INVALID_ARG,
         "salt"},
        {{.id = 1, .prompt = good, .n_prompt = 3, .max_new_tokens = 1, .n = 1},
         RL_ERR_INVALID_ARG,
         "already in use"},
        /* 16 blocks of 4: 8 + 57 - 1 = 64 tokens fit alone, 65 do not */
        {{.id = 3, .prompt = good, .n_prompt = 8, .max_new_tokens = 57, .n = 1}, RL_OK, NULL},
        {{.id = 4, .prompt = good, .n_prompt = 8, .max_new_tokens = 58, .n = 1},
         RL_ERR_LIMIT,
         "needs up to 17 KV blocks of 4 tokens, but the whole pool has 16"},
        /* n = 3: 1 shared block + 3 x (ceil(27/4) - 1) = 19 */
        {{.id = 5, .prompt = good, .n_prompt = 8, .max_new_tokens = 20, .n = 3},
         RL_ERR_LIMIT,
         "needs up to 19"},
        {{.id = 6, .prompt = good, .n_prompt = 8, .max_new_tokens = 10, .n = 3}, RL_OK, NULL},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        rl_status st = rl__sched_add(f.s, &cases[i].r);
        CHECKF(st == cases[i].want, "case %zu: %s (%s)", i, rl_status_str(st),
               rl__sched_errmsg(f.s));
        if (cases[i].msg)
            CHECKF(strstr(rl__sched_errmsg(f.s), cases[i].msg) != NULL, "case %zu: %s", i,
                   rl__sched_errmsg(f.s));
        CHECK_SCHED(f.s);
    }
    CHECK_EQ_INT(rl__sched_n_live(f.s), 3);
    done(&f);

    /* context limit and queue limit */
    rl__kv_params kp = rl__kv_default_params();
    kp.n_blocks = 64;
    rl__kv *kv = NULL;
    CHECK(rl__kv_create(&kp, &kv, NULL, 0) == RL_OK);
    rl__sched_params sp = rl__sched_default_params();
    sp.max_waiting = 2;
    sp.n_ctx_max = 20;
    rl__sched *s = NULL;
    CHECK(rl__sched_create(&sp, kv, &s, NULL, 0) == RL_OK);
    rl__sched_req r = req(1, good, 8, 13);
    CHECK(rl__sched_add(s, &r) == RL_ERR_RANGE);
    CHECK(strstr(rl__sched_errmsg(s), "context of 20") != NULL);
    r.max_new_tokens = 12;
    CHECK(rl__sched_add(s, &r) == RL_OK);
    r.id = 2;
    CHECK(rl__sched_add(s, &r) == RL_OK);
    r.id = 3;
    CHECK(rl__sched_add(s, &r) == RL_ERR_LIMIT);
    CHECK(strstr(rl__sched_errmsg(s), "queue is full") != NULL);
    rl__sched_free(s);
    rl__kv_free(kv);
}

/* ---- one request ------------------------------------------------------------------------ */

TEST(single_request) {
    fixture f = make(16, 4, 64, 4);
    rl__sched_req r = req(7, ramp(0, 10), 10, 3);
    CHECK(rl__sched_add(f.s, &r) == RL_OK);
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    /* prefill: all 10 prompt tokens, logits at the end */
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK_SCHED(f.s);
    CHECK(pl->n_items == 1 && pl->n_tokens == 10);
    const rl__sched_item *it = &pl->items[0];
    CHECK(it->id == 7 && it->seq_index == 0 && it->pos == 0 && it->n_tokens == 10);
    CHECK(it->logits && it->prefill);
    CHECK_EQ_INT(it->n_blocks, 3);
    CHECK(it->tokens[0] == 0 && it->tokens[9] == 9);
    CHECK(rl__sched_step(f.s, &pl) == RL_ERR_INVALID_ARG); /* plan out */
    rl__sched_output out = {1010, false};
    CHECK(rl__sched_update(f.s, &out, 2, &ev, &n_ev) == RL_ERR_INVALID_ARG);
    out.token = -4;
    CHECK(rl__sched_update(f.s, &out, 1, &ev, &n_ev) == RL_ERR_INVALID_ARG);
    CHECK(strstr(rl__sched_errmsg(f.s), "out[0].token") != NULL);
    out.token = 1010;
    CHECK(rl__sched_update(f.s, &out, 1, &ev, &n_ev) == RL_OK);
    CHECK_EQ_INT(n_ev, 0);
    CHECK(rl__sched_update(f.s, &out, 1, &ev, &n_ev) == RL_ERR_INVALID_ARG); /* no plan */
    /* two decodes: the sampled token comes back at its position */
    for (int step = 0; step < 2; step++) {
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK(pl->n_items == 1 && pl->n_tokens == 1);
        it = &pl->items[0];
        CHECK_EQ_INT(it->pos, 10 + step);
        CHECK_EQ_INT(it->tokens[0], 1010 + step);
        CHECK(it->logits && !it->prefill);
        answer(&f, pl, &ev, &n_ev);
    }
    CHECK(n_ev == 1 && ev[0].id == 7 && ev[0].reason == RL_SCHED_FINISH_LENGTH &&
          ev[0].request_done);
    CHECK_EQ_INT(rl__sched_n_live(f.s), 0);
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK_EQ_INT(pl->n_items, 0);
    CHECK(rl__sched_update(f.s, NULL, 0, NULL, NULL) == RL_OK);
    rl__sched_stats st;
    rl__sched_stats_get(f.s, &st);
    CHECK_EQ_INT(st.n_steps, 4);
    CHECK_EQ_INT(st.tokens_scheduled, 12);
    CHECK_EQ_INT(st.tokens_prefill, 10);
    CHECK_EQ_INT(st.tokens_generated, 3);
    CHECK_EQ_INT(st.n_finished, 1);
    CHECK_EQ_INT(st.max_step_tokens, 10);
    CHECK_EQ_INT(st.kv_blocks_used, 0);
    CHECK_EQ_INT(st.kv_blocks_cached, 3); /* 12 computed tokens: the prompt and 2 samples */
    done(&f);
}

/* A stop from the engine ends the sequence at once. */
TEST(stop_from_engine) {
    fixture f = make(16, 4, 64, 4);
    rl__sched_req r = req(1, ramp(0, 5), 5, 10);
    CHECK(rl__sched_add(f.s, &r) == RL_OK);
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    rl__sched_output out = {-1, true}; /* a stop needs no token */
    CHECK(rl__sched_update(f.s, &out, 1, &ev, &n_ev) == RL_OK);
    CHECK(n_ev == 1 && ev[0].reason == RL_SCHED_FINISH_STOP && ev[0].request_done);
    CHECK_EQ_INT(rl__sched_n_live(f.s), 0);
    CHECK_SCHED(f.s);
    done(&f);
}

/* ---- budget and chunking ---------------------------------------------------------------- */

TEST(token_budget_chunked_prefill) {
    /* budget 8: a 20-token prompt goes 8 + 8 + 4; a running decode always goes first */
    fixture f = make(64, 4, 8, 4);
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    rl__sched_req a = req(1, ramp(100, 3), 3, 20);
    CHECK(rl__sched_add(f.s, &a) == RL_OK);
    CHECK(rl__sched_step(f.s, &pl) == RL_OK); /* A's prompt */
    answer(&f, pl, &ev, &n_ev);
    rl__sched_req b = req(2, ramp(0, 20), 20, 2);
    CHECK(rl__sched_add(f.s, &b) == RL_OK);
    static const struct {
        int32_t b_pos, b_n;
        bool b_logits;
    } want[] = {{0, 7, false}, {7, 7, false}, {14, 6, true}, {20, 1, true}};
    for (size_t i = 0; i < RL_ARRAY_LEN(want); i++) {
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK_SCHED(f.s);
        CHECKF(pl->n_items == 2, "step %zu: %d items", i, (int)pl->n_items);
        if (pl->n_items != 2) break;
        CHECK(pl->items[0].id == 1 && pl->items[0].n_tokens == 1); /* A decodes first */
        CHECK_EQ_INT(pl->items[1].id, 2);
        CHECK_EQ_INT(pl->items[1].pos, want[i].b_pos);
        CHECK_EQ_INT(pl->items[1].n_tokens, want[i].b_n);
        CHECK(pl->items[1].logits == want[i].b_logits);
        CHECK(pl->n_tokens <= 8);
        answer(&f, pl, &ev, &n_ev);
    }
    done(&f);

    /* chunk_tokens caps one sequence's chunk below the budget */
    rl__kv_params kp = rl__kv_default_params();
    kp.n_blocks = 64;
    kp.block_size = 4;
    rl__kv *kv = NULL;
    CHECK(rl__kv_create(&kp, &kv, NULL, 0) == RL_OK);
    rl__sched_params sp = rl__sched_default_params();
    sp.batch_tokens = 32;
    sp.max_seqs = 4;
    sp.chunk_tokens = 5;
    fixture g = {kv, NULL};
    CHECK(rl__sched_create(&sp, kv, &g.s, NULL, 0) == RL_OK);
    rl__sched_req c = req(3, ramp(0, 12), 12, 1), d = req(4, ramp(50, 12), 12, 1);
    CHECK(rl__sched_add(g.s, &c) == RL_OK && rl__sched_add(g.s, &d) == RL_OK);
    CHECK(rl__sched_step(g.s, &pl) == RL_OK);
    CHECK(pl->n_items == 2 && pl->items[0].n_tokens == 5 && pl->items[1].n_tokens == 5);
    answer(&g, pl, &ev, &n_ev);
    CHECK(rl__sched_step(g.s, &pl) == RL_OK);
    CHECK(pl->n_items == 2 && pl->items[0].pos == 5 && pl->items[0].n_tokens == 5);
    answer(&g, pl, &ev, &n_ev);
    CHECK(rl__sched_step(g.s, &pl) == RL_OK);
    CHECK(pl->n_items == 2 && pl->items[0].n_tokens == 2 && pl->items[0].logits);
    answer(&g, pl, &ev, &n_ev);
    CHECK_EQ_INT(n_ev, 2);
    done(&g);
}

/* max_seqs bounds the running set; the budget bounds tokens even with many decodes. */
TEST(max_seqs_and_batching) {
    fixture f = make(256, 4, 16, 6);
    for (uint64_t id = 1; id <= 10; id++) {
        rl__sched_req r = req(id, ramp((int32_t)id * 100, 6), 6, 5);
        CHECK(rl__sched_add(f.s, &r) == RL_OK);
    }
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev, finished = 0, steps = 0;
    rl__sched_stats st;
    while (rl__sched_n_live(f.s) > 0 && steps < 100) {
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK(pl->n_items <= 6 && pl->n_tokens <= 16);
        rl__sched_stats_get(f.s, &st);
        CHECK(st.n_running_seqs <= 6);
        answer(&f, pl, &ev, &n_ev);
        finished += n_ev;
        steps++;
    }
    CHECK_EQ_INT(finished, 10);
    rl__sched_stats_get(f.s, &st);
    CHECK_EQ_INT(st.max_step_seqs, 6);
    CHECK_EQ_INT(st.tokens_generated, 50);
    done(&f);
}

/* ---- ordering ----------------------------------------------------------------------------- */

TEST(priority_order) {
    /* one seat: requests run one at a time, by priority, then arrival */
    fixture f = make(64, 4, 16, 1);
    static const struct {
        uint64_t id;
        int32_t priority;
    } adds[] = {{1, 5}, {2, 0}, {3, 0}, {4, -3}, {5, 5}, {6, 0}};
    for (size_t i = 0; i < RL_ARRAY_LEN(adds); i++) {
        rl__sched_req r = req(adds[i].id, ramp(0, 4), 4, 2);
        r.priority = adds[i].priority;
        CHECK(rl__sched_add(f.s, &r) == RL_OK);
    }
    static const uint64_t order[] = {4, 2, 3, 6, 1, 5};
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev, k = 0;
    for (int step = 0; step < 40 && k < 6; step++) {
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK(pl->n_items <= 1);
        if (pl->n_items)
            CHECKF(pl->items[0].id == order[k], "step %d: %llu, want %llu", step,
                   (unsigned long long)pl->items[0].id, (unsigned long long)order[k]);
        answer(&f, pl, &ev, &n_ev);
        if (n_ev) k++;
    }
    CHECK_EQ_INT(k, 6);
    done(&f);
}

/* ---- prefix cache through the scheduler -------------------------------------------------- */

TEST(prefix_reuse_and_salt) {
    fixture f = make(64, 4, 64, 4);
    int32_t p[40];
    for (int i = 0; i < 40; i++) p[i] = 7 * i + 1;
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    static const struct {
        uint64_t id;
        int32_t n_prompt;
        const char *salt;
        int32_t want_pos; /* first position computed */
    } cases[] = {
        {1, 30, NULL, 0},  /* cold */
        {2, 40, NULL, 28}, /* 7 full blocks of the first (its 8th was partial) */
        {3, 30, NULL, 28}, /* the whole prompt cached: the last block recomputed */
        {4, 40, "t1", 0},  /* another tenant: no hit */
        {5, 40, "t1", 36}, /* same tenant: 9 blocks (limit n - 1 = 39) */
        {6, 9, NULL, 8},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        rl__sched_req r = req(cases[i].id, p, cases[i].n_prompt, 1);
        r.salt = cases[i].salt;
        r.salt_len = cases[i].salt ? strlen(cases[i].salt) : 0;
        CHECK(rl__sched_add(f.s, &r) == RL_OK);
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK(pl->n_items == 1);
        if (pl->n_items == 1) {
            CHECKF(pl->items[0].pos == cases[i].want_pos, "case %zu: pos %d", i,
                   (int)pl->items[0].pos);
            CHECK_EQ_INT(pl->items[0].n_tokens, cases[i].n_prompt - cases[i].want_pos);
            CHECK(pl->items[0].tokens[0] == p[cases[i].want_pos]);
        }
        answer(&f, pl, &ev, &n_ev);
        CHECK(n_ev == 1 && ev[0].request_done);
    }
    rl__sched_stats st;
    rl__sched_stats_get(f.s, &st);
    CHECK_EQ_INT(st.prefix_hit_tokens, 28 + 28 + 36 + 8);
    CHECK_EQ_INT(st.prefix_lookup_tokens, 30 + 40 + 30 + 40 + 40 + 9);
    CHECK_NEAR(st.prefix_hit_rate, 100.0 / 189.0, 1e-12);
    done(&f);
}

/* ---- n > 1 --------------------------------------------------------------------------------- */

TEST(parallel_samples_fork) {
    fixture f = make(64, 4, 64, 8);
    rl__sched_req r = req(9, ramp(0, 10), 10, 3);
    r.n = 3;
    CHECK(rl__sched_add(f.s, &r) == RL_OK);
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    /* the lead computes the prompt but its last token */
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK(pl->n_items == 1 && pl->items[0].seq_index == 0 && pl->items[0].n_tokens == 9);
    CHECK(!pl->items[0].logits);
    answer(&f, pl, &ev, &n_ev);
    /* fork: each sequence computes token 9 with logits; the shared partial block (tokens
     * 8..9) is copied for two of them, the last writes in place */
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK_SCHED(f.s);
    CHECK_EQ_INT(pl->n_items, 3);
    CHECK_EQ_INT(pl->n_copies, 2);
    for (int32_t i = 0; i < pl->n_items; i++) {
        CHECK(pl->items[i].seq_index == i && pl->items[i].pos == 9 && pl->items[i].logits);
        CHECK_EQ_INT(pl->items[i].block_table[0], pl->items[0].block_table[0]);
        CHECK_EQ_INT(pl->items[i].block_table[1], pl->items[0].block_table[1]);
    }
    CHECK(pl->items[0].block_table[2] != pl->items[1].block_table[2]);
    CHECK(pl->items[1].block_table[2] != pl->items[2].block_table[2]);
    for (int32_t i = 0; i < pl->n_copies; i++) CHECK(pl->copies[i].dst != pl->copies[i].src);
    /* different samples; sequence 1 stops early */
    rl__sched_output out[3] = {{500, false}, {600, true}, {700, false}};
    CHECK(rl__sched_update(f.s, out, 3, &ev, &n_ev) == RL_OK);
    CHECK(n_ev == 1 && ev[0].seq_index == 1 && ev[0].reason == RL_SCHED_FINISH_STOP &&
          !ev[0].request_done);
    CHECK_SCHED(f.s);
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK(pl->n_items == 2 && pl->items[0].tokens[0] == 500 && pl->items[1].tokens[0] == 700);
    answer(&f, pl, &ev, &n_ev);
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    answer(&f, pl, &ev, &n_ev);
    CHECK_EQ_INT(n_ev, 2);
    CHECK(ev[0].reason == RL_SCHED_FINISH_LENGTH && !ev[0].request_done);
    CHECK(ev[1].reason == RL_SCHED_FINISH_LENGTH && ev[1].request_done);
    CHECK_EQ_INT(rl__sched_n_live(f.s), 0);
    rl__sched_stats st;
    rl__sched_stats_get(f.s, &st);
    CHECK_EQ_INT(st.kv_blocks_used, 0);
    done(&f);
}

/* ---- preemption ---------------------------------------------------------------------------- */

/* Two requests that fit alone but not together: the younger is preempted, recomputed, and
 * both produce exactly the tokens they produce alone. */
TEST(preemption_recompute) {
    fixture f = make(8, 4, 32, 4); /* 32 token slots */
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    rl__sched_req a = req(1, ramp(0, 8), 8, 17), b = req(2, ramp(40, 8), 8, 17);
    CHECK(rl__sched_add(f.s, &a) == RL_OK && rl__sched_add(f.s, &b) == RL_OK);
    int32_t gen[3][32], n_gen[3] = {0, 0, 0}, preempted = 0, recomputed = 0, steps = 0;
    while (rl__sched_n_live(f.s) > 0 && steps++ < 200) {
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK_SCHED(f.s);
        for (int32_t i = 0; i < pl->n_preempted; i++) {
            CHECK_EQ_INT(pl->preempted[i], 2); /* never the older one */
            preempted++;
        }
        rl__sched_output out[4];
        for (int32_t i = 0; i < pl->n_items; i++) {
            const rl__sched_item *it = &pl->items[i];
            int id = (int)it->id;
            if (it->prefill && it->pos + it->n_tokens > 8) recomputed++;
            /* the tokens given back must be what was sampled before */
            for (int32_t t = 0; t < it->n_tokens; t++) {
                int32_t p = it->pos + t;
                if (p >= 8) CHECK_EQ_INT(it->tokens[t], gen[id][p - 8]);
            }
            int32_t next = it->pos + it->n_tokens - 8; /* index of the token sampled now */
            out[i].token = 3000 + id * 100 + next;
            out[i].stop = false;
            if (it->logits) {
                CHECK_EQ_INT(next, n_gen[id]); /* no token sampled twice or skipped */
                gen[id][n_gen[id]++] = out[i].token;
            }
        }
        CHECK(rl__sched_update(f.s, out, pl->n_items, &ev, &n_ev) == RL_OK);
        CHECK_SCHED(f.s);
    }
    CHECK(preempted > 0);
    CHECK(recomputed > 0);
    CHECK(n_gen[1] == 17 && n_gen[2] == 17);
    for (int id = 1; id <= 2; id++)
        for (int j = 0; j < 17; j++) CHECK_EQ_INT(gen[id][j], 3000 + id * 100 + j);
    rl__sched_stats st;
    rl__sched_stats_get(f.s, &st);
    CHECK_EQ_INT(st.n_preemptions, (uint64_t)preempted);
    CHECK_EQ_INT(st.n_finished, 2);
    done(&f);
}

/* ---- aborts and failed plans ---------------------------------------------------------------- */

TEST(aborts) {
    fixture f = make(32, 4, 64, 4);
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    for (uint64_t id = 1; id <= 3; id++) {
        rl__sched_req r = req(id, ramp(0, 9), 9, 5);
        CHECK(rl__sched_add(f.s, &r) == RL_OK);
    }
    CHECK(rl__sched_abort(f.s, 99) == RL_ERR_NOT_FOUND);
    CHECK(rl__sched_abort(f.s, 3) == RL_OK); /* waiting */
    CHECK_EQ_INT(rl__sched_n_live(f.s), 2);
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK_EQ_INT(pl->n_items, 2);
    /* aborted while its plan is out: blocks stay until the update, its output is ignored
     * (even a bad token) and no event is reported */
    CHECK(rl__sched_abort(f.s, 2) == RL_OK);
    CHECK(rl__sched_abort(f.s, 2) == RL_ERR_NOT_FOUND);
    rl__sched_stats st;
    rl__sched_stats_get(f.s, &st);
    int32_t used = st.kv_blocks_used;
    CHECK(used > 0);
    rl__sched_output out[2] = {{77, false}, {-1, false}};
    CHECK(rl__sched_update(f.s, out, 2, &ev, &n_ev) == RL_OK);
    CHECK_EQ_INT(n_ev, 0);
    CHECK_SCHED(f.s);
    CHECK_EQ_INT(rl__sched_n_live(f.s), 1);
    rl__sched_stats_get(f.s, &st);
    CHECK(st.kv_blocks_used < used);
    /* aborted while running, no plan out: freed at once */
    CHECK(rl__sched_abort(f.s, 1) == RL_OK);
    rl__sched_stats_get(f.s, &st);
    CHECK_EQ_INT(st.kv_blocks_used, 0);
    CHECK_EQ_INT(st.n_aborted, 3);
    CHECK_EQ_INT(rl__sched_n_live(f.s), 0);
    CHECK_SCHED(f.s);
    done(&f);
}

TEST(plan_not_run) {
    fixture f = make(32, 4, 64, 4);
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    rl__sched_req r = req(1, ramp(0, 9), 9, 2);
    CHECK(rl__sched_add(f.s, &r) == RL_OK);
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    answer(&f, pl, &ev, &n_ev);
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK(pl->n_items == 1 && pl->items[0].pos == 9);
    CHECK(rl__sched_update(f.s, NULL, 0, &ev, &n_ev) == RL_OK); /* the engine failed */
    CHECK_SCHED(f.s);
    rl__sched_stats st;
    rl__sched_stats_get(f.s, &st);
    CHECK_EQ_INT(st.n_preemptions, 1);
    CHECK_EQ_INT(st.kv_blocks_used, 0);
    /* recomputed: the cached full blocks come back from the prefix cache */
    CHECK(rl__sched_step(f.s, &pl) == RL_OK);
    CHECK(pl->n_items == 1 && pl->items[0].pos == 8 && pl->items[0].n_tokens == 2);
    CHECK(pl->items[0].tokens[1] == 1000 + 9 && pl->items[0].logits);
    answer(&f, pl, &ev, &n_ev);
    CHECK(n_ev == 1 && ev[0].reason == RL_SCHED_FINISH_LENGTH);
    done(&f);
}

/* Blocks held outside the scheduler (by another user of the pool) can leave a running
 * request that fits no more even alone: it ends with ERROR instead of looping. */
TEST(pool_held_elsewhere) {
    fixture f = make(8, 4, 4, 4);
    int32_t other = -1, toks[24] = {0};
    bool fits;
    CHECK(rl__kv_seq_create(f.kv, NULL, 0, 0, &other) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(f.kv, other, toks, 24) == RL_OK);
    CHECK(rl__kv_seq_reserve(f.kv, other, 24, &fits) == RL_OK && fits); /* 6 of 8 blocks */
    rl__sched_req r = req(1, ramp(0, 10), 10, 2);
    CHECK(rl__sched_add(f.s, &r) == RL_OK);
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev, steps = 0;
    bool error = false;
    while (rl__sched_n_live(f.s) > 0 && steps++ < 10) {
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK_SCHED(f.s);
        answer(&f, pl, &ev, &n_ev);
        for (int32_t i = 0; i < n_ev; i++)
            error |= ev[i].reason == RL_SCHED_FINISH_ERROR && ev[i].request_done;
    }
    CHECK(error);
    CHECK(strstr(rl__sched_errmsg(f.s), "runs alone") != NULL);
    CHECK_EQ_INT(rl__sched_n_live(f.s), 0);
    CHECK_EQ_INT(rl__kv_n_free(f.kv), 2);
    done(&f);
}

/* ---- allocation failures ----------------------------------------------------------------------
 */

TEST(alloc_failures) {
    size_t base = rl_mem_in_use();
    rl__kv_params kp = rl__kv_default_params();
    kp.n_blocks = 32;
    rl__kv *kv = NULL;
    CHECK(rl__kv_create(&kp, &kv, NULL, 0) == RL_OK);
    rl__sched_params sp = rl__sched_default_params();
    int ok_at = 0;
    for (long k = 1; k < 30 && !ok_at; k++) {
        rl__sched *s = NULL;
        rl__alloc_fail_after(k);
        rl_status st = rl__sched_create(&sp, kv, &s, NULL, 0);
        rl__alloc_fail_after(0);
        if (st == RL_OK) {
            ok_at = (int)k;
            rl__sched_free(s);
        } else {
            CHECK(st == RL_ERR_NOMEM && !s);
        }
    }
    CHECK(ok_at > 1);
    rl__sched *s = NULL;
    CHECK(rl__sched_create(&sp, kv, &s, NULL, 0) == RL_OK);
    /* add: the queue, the request, its n KV sequences */
    int32_t p[6] = {1, 2, 3, 4, 5, 6};
    ok_at = 0;
    for (long k = 1; k < 30 && !ok_at; k++) {
        rl__sched_req r = req(5, p, 6, 4);
        r.n = 3;
        rl__alloc_fail_after(k);
        rl_status st = rl__sched_add(s, &r);
        rl__alloc_fail_after(0);
        CHECK_SCHED(s);
        if (st == RL_OK)
            ok_at = (int)k;
        else
            CHECK(st == RL_ERR_NOMEM && rl__sched_n_live(s) == 0);
    }
    CHECK(ok_at > 1);
    /* after add, a whole life (fork and copies included) allocates nothing */
    const rl__sched_plan *pl;
    long count0 = rl__alloc_count();
    for (int i = 0; i < 10 && rl__sched_n_live(s) > 0; i++) {
        CHECK(rl__sched_step(s, &pl) == RL_OK);
        rl__sched_output out[8];
        for (int32_t j = 0; j < pl->n_items; j++) out[j] = (rl__sched_output){40 + j, false};
        CHECK(rl__sched_update(s, out, pl->n_items, NULL, NULL) == RL_OK);
    }
    CHECK_EQ_INT(rl__alloc_count(), count0);
    CHECK_EQ_INT(rl__sched_n_live(s), 0);
    CHECK_SCHED(s);
    rl__sched_free(s);
    rl__kv_free(kv);
    CHECK_EQ_INT(rl_mem_in_use(), base);
}

/* ---- randomized simulation ---------------------------------------------------------------- */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

#define SIM_MAX_TOK 96
#define SIM_MAX_REQ 4096

typedef struct {
    bool live;
    uint64_t id;
    int32_t priority;
    uint64_t order; /* arrival in the test's numbering */
    int32_t n_prompt, max_new, n;
    int32_t tok[3][SIM_MAX_TOK];  /* what each sequence should hold */
    uint64_t dig[3][SIM_MAX_TOK]; /* K/V contents each position should have */
    int32_t n_tok[3];
    bool seq_done[3];
    int32_t added_step;
} sim_req;

static sim_req sims[SIM_MAX_REQ];

static uint64_t mix(uint64_t h, int32_t t) {
    return (h ^ (uint64_t)(uint32_t)t) * 1099511628211ull;
}

/* The token the fake model samples: a function of (request, sequence, position) only, so a
 * recomputed sequence must continue exactly where it was. */
static int32_t sample_of(uint64_t id, int32_t k, int32_t pos) {
    return (int32_t)((id * 2654435761u + (uint64_t)k * 40503u + (uint64_t)pos * 97u) % 5000u);
}

static void sim_push(sim_req *q, int32_t k, int32_t t) {
    int32_t p = q->n_tok[k];
    q->tok[k][p] = t;
    q->dig[k][p] = mix(p ? q->dig[k][p - 1] : 1469598103934665603ull, t);
    q->n_tok[k]++;
}

static void run_sim(bool fcfs, uint32_t seed, int32_t n_steps, int32_t bs, int32_t n_blocks,
                    int32_t chunk) {
    rng = 88172645463325252ull ^ seed;
    fixture f = {0};
    rl__kv_params kp = rl__kv_default_params();
    kp.n_blocks = n_blocks;
    kp.block_size = bs;
    CHECK(rl__kv_create(&kp, &f.kv, NULL, 0) == RL_OK);
    rl__sched_params sp = rl__sched_default_params();
    sp.batch_tokens = 24;
    sp.max_seqs = 8;
    sp.chunk_tokens = chunk;
    CHECK(rl__sched_create(&sp, f.kv, &f.s, NULL, 0) == RL_OK);
    uint64_t *mem = calloc((size_t)n_blocks * bs, sizeof *mem);
    int32_t docs[4][SIM_MAX_TOK];
    for (int d = 0; d < 4; d++)
        for (int i = 0; i < SIM_MAX_TOK; i++) docs[d][i] = d * 1000 + i;
    memset(sims, 0, sizeof sims);
    int32_t n_sims = 0, failures0 = rl_test_failures;
    uint64_t n_rejected = 0, n_aborts = 0, n_done = 0, n_null_plans = 0, max_wait = 0;
    const rl__sched_plan *pl;
    const rl__sched_event *ev;
    int32_t n_ev;
    for (int32_t step = 0; rl_test_failures == failures0; step++) {
        bool arrivals = step < n_steps;
        if (!arrivals && rl__sched_n_live(f.s) == 0) break;
        if (step > n_steps + 5000) {
            CHECKF(0, "simulation did not drain: %d live", (int)rl__sched_n_live(f.s));
            break;
        }
        /* arrivals */
        while (arrivals && rnd(100) < 30 && n_sims < SIM_MAX_REQ) {
            sim_req *q = &sims[n_sims];
            q->id = 10000 + (uint64_t)n_sims;
            q->order = (uint64_t)n_sims;
            q->priority = fcfs ? 0 : (int32_t)rnd(3);
            q->n_prompt = 1 + (int32_t)rnd(40);
            q->max_new = 1 + (int32_t)rnd(24);
            q->n = rnd(5) == 0 ? 2 + (int32_t)rnd(2) : 1;
            bool huge = rnd(50) == 0;
            if (huge) q->n_prompt = 90, q->max_new = 120 + (int32_t)rnd(6); /* never fits */
            int d = (int)rnd(4);
            int32_t prompt[SIM_MAX_TOK];
            for (int32_t i = 0; i < q->n_prompt; i++)
                prompt[i] = (rnd(8) == 0 && i > 10) ? (int32_t)rnd(50) : docs[d][i];
            const char *salt = rnd(6) == 0 ? "tenant-b" : NULL;
            rl__sched_req r = {q->id,      q->priority, prompt, q->n_prompt,
                               q->max_new, q->n,        salt,   salt ? 8u : 0u};
            rl_status st = rl__sched_add(f.s, &r);
            if (huge)
                CHECK(st == RL_ERR_LIMIT && strstr(rl__sched_errmsg(f.s), "pool"));
            else
                CHECKF(st == RL_OK, "%s", rl__sched_errmsg(f.s));
            if (st != RL_OK) {
                n_rejected++;
                continue;
            }
            q->live = true;
            q->added_step = step;
            for (int32_t k = 0; k < q->n; k++)
                for (int32_t i = 0; i < q->n_prompt; i++) sim_push(q, k, prompt[i]);
            n_sims++;
        }
        /* aborts at any time */
        if (n_sims && rnd(100) < 3) {
            sim_req *q = &sims[rnd((uint32_t)n_sims)];
            if (q->live) {
                CHECK(rl__sched_abort(f.s, q->id) == RL_OK);
                q->live = false;
                n_aborts++;
            }
        }
        CHECK(rl__sched_step(f.s, &pl) == RL_OK);
        CHECK_SCHED(f.s);
        CHECK(pl->n_tokens <= 24 && pl->n_items <= 8);
        /* the first live request in (priority, arrival) order is never preempted */
        int32_t first = -1;
        for (int32_t i = 0; i < n_sims; i++)
            if (sims[i].live &&
                (first < 0 || sims[i].priority < sims[first].priority ||
                 (sims[i].priority == sims[first].priority && sims[i].order < sims[first].order)))
                first = i;
        for (int32_t i = 0; i < pl->n_preempted; i++)
            CHECKF(first < 0 || pl->preempted[i] != sims[first].id,
                   "step %d: the first request %llu was preempted", step,
                   (unsigned long long)pl->preempted[i]);
        /* abort while the plan is out */
        int32_t late_abort = -1;
        if (pl->n_items && rnd(100) < 3) {
            late_abort = (int32_t)(pl->items[rnd((uint32_t)pl->n_items)].id - 10000);
            CHECK(rl__sched_abort(f.s, sims[late_abort].id) == RL_OK);
            sims[late_abort].live = false;
            n_aborts++;
        }
        if (rnd(200) == 0) { /* the engine fails to run the plan */
            CHECK(rl__sched_update(f.s, NULL, 0, &ev, &n_ev) == RL_OK);
            CHECK_SCHED(f.s);
            n_null_plans++;
            for (int32_t i = 0; i < n_ev; i++) CHECK(ev[i].reason == RL_SCHED_FINISH_ERROR);
            continue;
        }
        /* the fake engine: copies, then each item's K/V writes and attention reads */
        for (int32_t i = 0; i < pl->n_copies; i++)
            memcpy(mem + (size_t)pl->copies[i].dst * bs, mem + (size_t)pl->copies[i].src * bs,
                   (size_t)bs * sizeof *mem);
        rl__sched_output out[8];
        for (int32_t i = 0; i < pl->n_items; i++) {
            const rl__sched_item *it = &pl->items[i];
            sim_req *q = &sims[it->id - 10000];
            int32_t k = it->seq_index, end = it->pos + it->n_tokens;
            out[i].token = -1;
            out[i].stop = false;
            CHECK(!q->seq_done[k]);
            CHECKF(end <= q->n_tok[k], "item %d: up to %d of %d known tokens", (int)i, (int)end,
                   (int)q->n_tok[k]);
            if (end > q->n_tok[k]) continue;
            CHECK(it->n_blocks * bs >= end);
            for (int32_t t = 0; t < it->n_tokens; t++) {
                CHECK_EQ_INT(it->tokens[t], q->tok[k][it->pos + t]);
                int32_t p = it->pos + t;
                mem[(size_t)it->block_table[p / bs] * bs + p % bs] = q->dig[k][p];
            }
            for (int32_t p = 0; p < end; p++)
                CHECKF(mem[(size_t)it->block_table[p / bs] * bs + p % bs] == q->dig[k][p],
                       "step %d: request %llu seq %d reads a wrong slot at %d", step,
                       (unsigned long long)it->id, (int)k, (int)p);
            if (it->logits) {
                CHECK_EQ_INT(end, q->n_tok[k]); /* logits only at the newest token */
                out[i].token = sample_of(q->id, k, end);
                out[i].stop = rnd(30) == 0;
            }
        }
        /* items of the same sequence appear at most once per plan */
        for (int32_t i = 0; i < pl->n_items; i++)
            for (int32_t j = i + 1; j < pl->n_items; j++)
                CHECK(pl->items[i].id != pl->items[j].id ||
                      pl->items[i].seq_index != pl->items[j].seq_index);
        int32_t n_items = pl->n_items;
        rl__sched_item items[8];
        memcpy(items, pl->items, (size_t)n_items * sizeof *items);
        CHECK(rl__sched_update(f.s, out, n_items, &ev, &n_ev) == RL_OK);
        CHECK_SCHED(f.s);
        /* the scheduler appends what was sampled; mirror it */
        for (int32_t i = 0; i < n_items; i++) {
            sim_req *q = &sims[items[i].id - 10000];
            if (!items[i].logits || !q->live) continue;
            int32_t k = items[i].seq_index;
            bool ended = false;
            for (int32_t e = 0; e < n_ev; e++) ended |= ev[e].id == q->id && ev[e].seq_index == k;
            if (!ended) sim_push(q, k, out[i].token);
        }
        for (int32_t e = 0; e < n_ev; e++) {
            CHECK(ev[e].id >= 10000 && ev[e].id < 10000 + (uint64_t)n_sims);
            sim_req *q = &sims[ev[e].id - 10000];
            CHECKF(q->live, "event for request %llu that is not live",
                   (unsigned long long)ev[e].id);
            int32_t k = ev[e].seq_index;
            CHECK(!q->seq_done[k]);
            q->seq_done[k] = true;
            int32_t gen = q->n_tok[k] - q->n_prompt + 1; /* the final token is not appended */
            if (ev[e].reason == RL_SCHED_FINISH_LENGTH)
                CHECK_EQ_INT(gen, q->max_new);
            else
                CHECK(ev[e].reason == RL_SCHED_FINISH_STOP && gen <= q->max_new);
            bool all = true;
            for (int32_t j = 0; j < q->n; j++) all &= q->seq_done[j];
            CHECK(ev[e].request_done == all);
            if (all) {
                q->live = false;
                n_done++;
                uint64_t wait = (uint64_t)(step - q->added_step);
                if (wait > max_wait) max_wait = wait;
            }
        }
        (void)late_abort;
    }
    for (int32_t i = 0; i < n_sims; i++) CHECKF(!sims[i].live, "request %d never finished", i);
    rl__sched_stats st;
    rl__sched_stats_get(f.s, &st);
    rl__kv_stats ks;
    rl__kv_stats_get(f.kv, &ks);
    CHECK(st.n_preemptions > 0);
    CHECK(st.prefix_hit_tokens > 0);
    CHECK(ks.cow_copies > 0);
    CHECK(n_aborts > 0 && n_rejected > 0);
    CHECK_EQ_INT(st.n_finished, n_done);
    CHECK_EQ_INT(st.max_step_seqs, 8);
    CHECK_EQ_INT(ks.n_used, 0);
    CHECK_EQ_INT(ks.n_seqs, 0);
    if (fcfs) CHECK(max_wait < 1000);
    fprintf(stderr,
            "  sim %s bs %d: %d requests (%llu rejected, %llu aborted, %llu done), %llu steps, "
            "%llu preemptions, %llu failed plans, prefix hit rate %.3f, %llu copies, %llu "
            "evictions, longest wait %llu steps\n",
            fcfs ? "fcfs" : "priorities", (int)bs, (int)n_sims, (unsigned long long)n_rejected,
            (unsigned long long)n_aborts, (unsigned long long)n_done,
            (unsigned long long)st.n_steps, (unsigned long long)st.n_preemptions,
            (unsigned long long)n_null_plans, st.prefix_hit_rate, (unsigned long long)ks.cow_copies,
            (unsigned long long)ks.evictions, (unsigned long long)max_wait);
    free(mem);
    done(&f);
}

TEST(random_simulation) {
    run_sim(true, 1, 4000, 4, 48, 0);
    run_sim(false, 2, 4000, 4, 48, 0);
    run_sim(true, 3, 3000, 16, 12, 8);
}

int main(void) {
    RUN(create_params);
    RUN(add_validation);
    RUN(single_request);
    RUN(stop_from_engine);
    RUN(token_budget_chunked_prefill);
    RUN(max_seqs_and_batching);
    RUN(priority_order);
    RUN(prefix_reuse_and_salt);
    RUN(parallel_samples_fork);
    RUN(preemption_recompute);
    RUN(aborts);
    RUN(plan_not_run);
    RUN(pool_held_elsewhere);
    RUN(alloc_failures);
    RUN(random_simulation);
    return rl_test_finish();
}
