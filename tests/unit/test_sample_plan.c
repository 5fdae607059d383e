/* When a sampler's next pass may run on the device (rl__sampler_device_plan, the rule the
 * engine's dev_plan applies to every row of a step; src/engine/engine.c): table-driven
 * over the sampler settings, with the row the device would get (filters left out of the
 * order switched off, a temperature left out read as 1, min_p's log the sampler's own),
 * the penalty pairs it would carry, and the uniform number it would draw being the one the
 * CPU pass then takes. No device needed. */
#include "sampler/sampler.h"
#include "test.h"

typedef struct plan_case {
    const char *name;
    void (*set)(rl_sampler_params *p);
    bool device;
} plan_case;

static void s_default(rl_sampler_params *p) { (void)p; }
static void s_llama(rl_sampler_params *p) {
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
}
static void s_greedy(rl_sampler_params *p) { p->temperature = 0.0f; }
static void s_pen(rl_sampler_params *p) {
    p->repeat_penalty = 1.2f;
    p->frequency_penalty = 0.3f;
    p->presence_penalty = 0.1f;
}
static void s_bias(rl_sampler_params *p) {
    static const rl_logit_bias b = {3, 1.5f};
    p->logit_bias = &b;
    p->n_logit_bias = 1;
}
static void s_dry(rl_sampler_params *p) {
    p->dry_multiplier = 0.8f;
    p->n_dry_sequence_breakers = 0;
    static const char *const none[1] = {"x"};
    p->dry_sequence_breakers = none;
}
static void s_typical(rl_sampler_params *p) { p->typical_p = 0.9f; }
static void s_xtc(rl_sampler_params *p) {
    p->xtc_probability = 0.5f;
    p->xtc_threshold = 0.1f;
}
static void s_xtc_off(rl_sampler_params *p) { /* threshold above 0.5: XTC is off */
    p->xtc_probability = 0.5f;
    p->xtc_threshold = 0.6f;
}
static void s_miro(rl_sampler_params *p) { p->mirostat = 2; }
static void s_logprobs(rl_sampler_params *p) { p->logprobs = true; }
static void s_temp_first(rl_sampler_params *p) {
    s_llama(p);
    p->n_order = 4;
    p->order[0] = RL_SAMPLER_STAGE_TEMPERATURE;
    p->order[1] = RL_SAMPLER_STAGE_TOP_K;
    p->order[2] = RL_SAMPLER_STAGE_TOP_P;
    p->order[3] = RL_SAMPLER_STAGE_MIN_P;
}
static void s_minp_first(rl_sampler_params *p) {
    s_llama(p);
    p->n_order = 3;
    p->order[0] = RL_SAMPLER_STAGE_MIN_P;
    p->order[1] = RL_SAMPLER_STAGE_TOP_P;
    p->order[2] = RL_SAMPLER_STAGE_TEMPERATURE;
}
static void s_greedy_odd_order(rl_sampler_params *p) { /* greedy: the order cannot matter */
    s_temp_first(p);
    p->temperature = 0.0f;
}
static void s_no_temp(rl_sampler_params *p) { /* temperature left out: draws at 1 */
    s_llama(p);
    p->n_order = 2;
    p->order[0] = RL_SAMPLER_STAGE_TOP_K;
    p->order[1] = RL_SAMPLER_STAGE_MIN_P;
}
static void s_temp_one_first(rl_sampler_params *p) { /* temperature 1 is no stage */
    s_temp_first(p);
    p->temperature = 1.0f;
}
static void s_inactive_out_of_order(rl_sampler_params *p) { /* min-p off: its place is free */
    s_minp_first(p);
    p->min_p = 0.0f;
}

static const plan_case k_cases[] = {
    {"default", s_default, true},
    {"llama.cpp chain", s_llama, true},
    {"greedy", s_greedy, true},
    {"penalties", s_pen, true},
    {"logit bias", s_bias, false},
    {"dry", s_dry, true}, /* on, but acts only once the window holds a repeat: see below */
    {"typical-p", s_typical, false},
    {"xtc", s_xtc, false},
    {"xtc off by threshold", s_xtc_off, true},
    {"mirostat", s_miro, false},
    {"logprobs", s_logprobs, false},
    {"temperature first", s_temp_first, false},
    {"min-p before top-p", s_minp_first, false},
    {"greedy in any order", s_greedy_odd_order, true},
    {"temperature left out", s_no_temp, true},
    {"temperature 1 first", s_temp_one_first, true},
    {"inactive stage out of order", s_inactive_out_of_order, true},
};

TEST(plan_rules) {
    const int32_t nv = 100;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        const plan_case *c = &k_cases[i];
        rl_sampler_params p = rl_sampler_default_params();
        p.seed = 42;
        c->set(&p);
        rl_sampler *s = NULL;
        char err[256];
        if (rl_sampler_create(&p, nv, NULL, &s, err, sizeof err) != RL_OK) {
            CHECKF(0, "%s: %s", c->name, err);
            continue;
        }
        rl__sampler_device d;
        bool got = rl__sampler_device_plan(s, &d);
        CHECKF(got == c->device, "%s: plan %d, expected %d", c->name, got, c->device);
        if (got) {
            const bool has = p.n_order == 0;
            bool in[RL_SAMPLER_STAGE_COUNT + 1] = {false};
            for (int32_t j = 0; j < (has ? 0 : p.n_order); j++) in[p.order[j]] = true;
            if (has)
                for (int j = 1; j <= RL_SAMPLER_STAGE_COUNT; j++) in[j] = true;
            CHECK_EQ_INT(d.top_k, in[RL_SAMPLER_STAGE_TOP_K] ? p.top_k : 0);
            CHECK(d.top_p == (in[RL_SAMPLER_STAGE_TOP_P] ? p.top_p : 1.0f));
            CHECK(d.min_p == (in[RL_SAMPLER_STAGE_MIN_P] ? p.min_p : 0.0f));
            CHECK(d.min_p_ln == (d.min_p > 0.0f ? rl__det_logf(d.min_p) : 0.0f));
            const float t = p.temperature <= 0.0f || in[RL_SAMPLER_STAGE_TEMPERATURE]
                                ? p.temperature
                                : 1.0f;
            CHECK(d.temperature == t);
            CHECK(d.repeat_penalty == p.repeat_penalty);
            CHECK_EQ_INT(d.min_keep, p.min_keep);
        }
        rl_sampler_free(s);
    }
}

/* DRY that acts, penalty pairs, and the uniform number. */
TEST(plan_state) {
    const int32_t nv = 50;
    rl_sampler_params p = rl_sampler_default_params();
    p.seed = 9;
    s_dry(&p);
    s_pen(&p);
    p.dry_allowed_length = 1;
    rl_sampler *s = NULL;
    char err[256];
    CHECK(rl_sampler_create(&p, nv, NULL, &s, err, sizeof err) == RL_OK);
    if (!s) return;
    rl__sampler_device d;
    CHECK(rl__sampler_device_plan(s, &d));
    CHECK_EQ_INT(rl__sampler_penalty_pairs(s, NULL), 0);
    static const rl_token hist[] = {5, 7, 5, 9, 5, 7};
    for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++) rl_sampler_accept(s, hist[i]);
    /* a repeat in the window: DRY acts, the device cannot */
    CHECK(!rl__sampler_device_plan(s, &d));
    rl_sampler_free(s);

    p = rl_sampler_default_params();
    p.seed = 9;
    s_pen(&p);
    p.penalty_last_n = 4;
    CHECK(rl_sampler_create(&p, nv, NULL, &s, err, sizeof err) == RL_OK);
    if (!s) return;
    for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++) rl_sampler_accept(s, hist[i]);
    /* the window holds 5 9 5 7 */
    int32_t pairs[16];
    int32_t n = rl__sampler_penalty_pairs(s, pairs);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(rl__sampler_penalty_pairs(s, NULL), 3);
    int32_t cnt[50] = {0};
    for (int32_t j = 0; j < n && j < 8; j++) cnt[pairs[2 * j]] = pairs[2 * j + 1];
    CHECK_EQ_INT(cnt[5], 2);
    CHECK_EQ_INT(cnt[9], 1);
    CHECK_EQ_INT(cnt[7], 1);
    /* the u a device would take is the CPU pass's: the same draw from a uniform logit row
     * (every token equally likely: token floor(u * n)) */
    float flat[50];
    for (int i = 0; i < nv; i++) flat[i] = 0.0f;
    rl_sampler_params q = rl_sampler_default_params();
    q.seed = 1234;
    rl_sampler *a = NULL;
    CHECK(rl_sampler_create(&q, nv, NULL, &a, err, sizeof err) == RL_OK);
    if (a) {
        for (int k = 0; k < 20; k++) {
            rl_sampler *cl = NULL;
            CHECK(rl_sampler_clone(a, &cl) == RL_OK);
            if (!cl) break;
            double u = rl__sampler_next_u(cl);
            rl_sampler_free(cl);
            rl_token t;
            CHECK(rl_sampler_sample(a, flat, NULL, &t) == RL_OK);
            int32_t want = (int32_t)(u * nv);
            CHECKF(t == want || fabs(u * nv - (double)(int32_t)(u * nv)) < 1e-6 ||
                       fabs(u * nv - (double)(int32_t)(u * nv + 1.0)) < 1e-6,
                   "draw %d: u %.17g token %d, expected %d", k, u, t, want);
        }
    }
    rl_sampler_free(a);
    rl_sampler_free(s);
}

int main(void) {
    RUN(plan_rules);
    RUN(plan_state);
    return rl_test_finish();
}
