/*
 * golden.h - the llama.cpp goldens of shared/golden (README there) for the model tests:
 * prompts, greedy tokens, top-1 margins and the teacher-forced step logits, and the
 * model file each was made from.
 */
#ifndef RL_TEST_GOLDEN_H
#define RL_TEST_GOLDEN_H

#include "ruvllm.h"

#include <jansson.h>
#include <stdbool.h>

#define RL_GOLDEN_STEPS 8

typedef struct rl_golden {
    json_t *root;
    int n_vocab;
    int n_prompts;
    float *logits; /* [n_prompts][RL_GOLDEN_STEPS][n_vocab] */
    char model_path[4096];
} rl_golden;

typedef struct rl_golden_prompt {
    int n_tokens;
    rl_token tokens[512];
    int n_greedy;
    rl_token greedy[64];
    double margin[RL_GOLDEN_STEPS];
} rl_golden_prompt;

/* Load golden/<name>.json and .logits.bin. false (with a note on stderr) when missing. */
bool rl_golden_load(const char *name, rl_golden *g);
void rl_golden_free(rl_golden *g);
/* Prompt i; false when malformed. */
bool rl_golden_prompt_get(const rl_golden *g, int i, rl_golden_prompt *p);
/* Logits of prompt i, step k. */
static inline const float *rl_golden_step(const rl_golden *g, int i, int k) {
    return g->logits + ((size_t)i * RL_GOLDEN_STEPS + (size_t)k) * (size_t)g->n_vocab;
}

/* Index of the largest value (the lowest index on ties), and top-1 minus top-2. */
int rl_test_argmax(const float *x, int n, double *margin);

#endif /* RL_TEST_GOLDEN_H */

/* ---- the golden check every model test runs ---------------------------------------- */

typedef struct rl_golden_opts {
    double tol;        /* absolute tolerance of every step's logits */
    double tol_long;   /* tolerance for prompts over 256 tokens (0: tol) */
    bool greedy;       /* also the 64-token greedy continuation (exact up to near-ties) */
    rl_type kv_type;   /* KV cache type (the goldens used F32) */
    int n_threads;     /* 0: 2 */
    const char *device; /* model params device (NULL: cpu) */
} rl_golden_opts;

typedef struct rl_golden_result {
    double max_err;       /* largest |logit - golden| over all prompts and steps */
    int n_steps;          /* step vectors compared */
    int n_argmax, n_argmax_checked;
    int n_greedy, n_greedy_checked; /* greedy tokens equal / compared */
    int n_prompts, n_prompts_tokenized; /* prompts / those our tokenizer gives the ids of */
} rl_golden_result;

/* Load golden/<name> and its model, check that the model's tokenizer gives each prompt's
 * golden ids, feed every prompt as one batch, compare the last
 * position's logits (step 0) and then the 7 teacher-forced steps (feeding the golden
 * greedy tokens one at a time) against .logits.bin within o->tol; check the argmax where
 * the stored top-1 margin exceeds the tolerance; with o->greedy, run greedy decoding for
 * 64 tokens and require the golden tokens until the first step whose own top-1 margin is
 * within 2 * tol (a near-tie that any rounding may flip). Checks through CHECK; prints a
 * summary line. Returns false (SKIP-worthy) when the golden or model is missing. */
bool rl_golden_check(const char *name, const rl_golden_opts *o, rl_golden_result *r);

/* Write a copy of zoo model file (models/zoo/<file>) without the tensor named tensor
 * under $RUVLLM_BUILD_DIR, load it, and check the load fails with RL_ERR_BAD_FILE and a
 * message naming the tensor. false when the model is missing. */
bool rl_golden_check_missing_tensor(const char *file, const char *tensor);

/* One row of a model test's table of goldens (tol_long 0: tol). */
typedef struct rl_golden_case {
    const char *golden;
    double tol;
    bool greedy;
    double tol_long;
} rl_golden_case;

/* rl_golden_check of each of the n cases with the F32 KV cache (as the goldens were made);
 * returns how many ran (0: SKIP-worthy). */
int rl_golden_check_cases(const rl_golden_case *cases, size_t n);
