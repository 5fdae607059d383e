/*
 * bench_batched.h - `ruvllm bench --parallel`: batched decoding throughput
 * (bench_batched.c), called by cmd_bench once its options are parsed.
 */
#ifndef RUVLLM_TOOLS_BENCH_BATCHED_H
#define RUVLLM_TOOLS_BENCH_BATCHED_H

#include "gen.h"

#define BENCH_BATCHED_MAX_LIST 16

typedef struct bench_batched_opts {
    int32_t n_parallel[BENCH_BATCHED_MAX_LIST]; /* sequences decoded together, 1..64 each */
    int n_list;
    int32_t n_prompt; /* prompt tokens per sequence (0: each starts from one token) */
    int32_t n_gen;    /* generated tokens per sequence, >= 1 */
    int reps;         /* timed runs per N */
    int32_t n_batch;  /* tokens per forward pass of the prompts */
    double stream_mib; /* bandwidth arrays (0: the library's default) */
    bool json;
} bench_batched_opts;

/* Parse "1,8,32" into b->n_parallel; prints the error (naming flag) and returns false. */
bool bench_batched_parse_list(const char *flag, const char *s, bench_batched_opts *b);

/* Weight bytes one decode step reads (bench_batched.c says which): the floor's numerator. */
double bench_weight_bytes_per_step(const rl_model *m);

/* Run the batched tests on o's model; returns the process exit code (0, 1 on error). */
int bench_batched_run(const gen_opts *o, const bench_batched_opts *b);

#endif
