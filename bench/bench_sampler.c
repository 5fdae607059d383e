/*
 * bench_sampler.c - time per sample at a 128,256-token vocabulary (Llama 3) for the common
 * chains: greedy, llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05, temperature 0.8),
 * the OpenAI style (temperature 0.7, top-p 0.9, no top-k), a plain draw from the full
 * softmax, penalties + DRY, logprobs, a grammar mask and the lazy constraint. Logits look
 * like a model's: a few high, a long normal tail, and change every step. Prints JSON:
 * microseconds per sample (median of the repetitions) and the floor the sampler is
 * compared with, the time to read the logits once (n_vocab * 4 bytes at the measured copy
 * bandwidth): a chain that touches the vector k times costs about k floors.
 *
 * usage: bench_sampler [--n-vocab N] [--reps R] [--steps S] [--only CHAIN]
 */
#include "ruvllm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t st = 88172645463325252ull;
static double urand(void) {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return (double)(st >> 11) * 0x1.0p-53;
}
static float nrand(void) { /* Box-Muller */
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct cfg {
    const char *name;
    rl_sampler_params p;
    int mask;     /* 1: an allowed mask (half the vocabulary); 2: the lazy constraint */
    int accept;   /* feed sampled tokens back (penalties, DRY) */
} cfg;

static const uint8_t *g_mask;
static bool allows(void *u, rl_token t) {
    (void)u;
    return rl_mask_test(g_mask, t);
}
static rl_status fill(void *u, uint8_t *m, int32_t n) {
    (void)u;
    memcpy(m, g_mask, (size_t)(n + 7) / 8);
    return RL_OK;
}

int main(int argc, char **argv) {
    int32_t nv = 128256;
    int reps = 7, steps = 200;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else
        if (!strcmp(argv[i], "--n-vocab") && i + 1 < argc) nv = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    }
    if (nv < 16 || reps < 1 || steps < 1) {
        fprintf(stderr, "usage: bench_sampler [--n-vocab N>=16] [--reps R] [--steps S]\n");
        return 2;
    }
    /* 8 logit vectors: N(0, 2) tails, 30 tokens lifted by 8-14 */
    enum { NL = 8 };
    float *logits[NL];
    for (int k = 0; k < NL; k++) {
        logits[k] = malloc((size_t)nv * sizeof(float));
        for (int32_t i = 0; i < nv; i++) logits[k][i] = 2.0f * nrand();
        for (int j = 0; j < 30; j++) logits[k][(int32_t)(urand() * nv)] += 8.0f + 6.0f * (float)urand();
    }
    uint8_t *mask = malloc((size_t)(nv + 7) / 8);
    for (int32_t i = 0; i < (nv + 7) / 8; i++) mask[i] = (uint8_t)(urand() * 256);
    g_mask = mask;

    /* the floor: one read of the logits, from the copy bandwidth of a large buffer */
    size_t big = 64u << 20;
    char *a = malloc(big), *b = malloc(big);
    memset(a, 1, big);
    memset(b, 2, big);
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        memcpy(b, a, big);
        double t = now() - t0;
        if (t < best) best = t;
    }
    double bw = 2.0 * (double)big / best; /* read + write bytes per second */
    free(a);
    free(b);
    double floor_us = (double)nv * 4.0 / bw * 1e6;

    static const char *brk[] = {"\n", ":"};
    cfg cfgs[9];
    int nc = 0;
    rl_sampler_params d = rl_sampler_default_params();
    d.seed = 1;
    cfgs[nc] = (cfg){"greedy", d, 0, 0};
    cfgs[nc++].p.temperature = 0.0f;
    cfgs[nc] = (cfg){"llama_default", d, 0, 0};
    cfgs[nc].p.temperature = 0.8f;
    cfgs[nc].p.top_k = 40;
    cfgs[nc].p.top_p = 0.95f;
    cfgs[nc++].p.min_p = 0.05f;
    cfgs[nc] = (cfg){"openai_top_p", d, 0, 0};
    cfgs[nc].p.temperature = 0.7f;
    cfgs[nc++].p.top_p = 0.9f;
    cfgs[nc++] = (cfg){"full_softmax", d, 0, 0};
    cfgs[nc] = cfgs[1];
    cfgs[nc].name = "llama_default_penalties_dry";
    cfgs[nc].accept = 1;
    cfgs[nc].p.repeat_penalty = 1.1f;
    cfgs[nc].p.frequency_penalty = 0.1f;
    cfgs[nc].p.presence_penalty = 0.1f;
    cfgs[nc].p.penalty_last_n = 256;
    cfgs[nc].p.dry_multiplier = 0.8f;
    cfgs[nc].p.dry_penalty_last_n = 1024;
    cfgs[nc].p.dry_sequence_breakers = NULL;
    (void)brk;
    nc++;
    cfgs[nc] = cfgs[1];
    cfgs[nc].name = "llama_default_logprobs5";
    cfgs[nc].p.logprobs = true;
    cfgs[nc++].p.top_logprobs = 5;
    cfgs[nc] = cfgs[0];
    cfgs[nc].name = "greedy_mask";
    cfgs[nc++].mask = 1;
    cfgs[nc] = cfgs[1];
    cfgs[nc].name = "llama_default_mask";
    cfgs[nc++].mask = 1;
    cfgs[nc] = cfgs[1];
    cfgs[nc].name = "llama_default_lazy_constraint";
    cfgs[nc++].mask = 2;

    printf("{\n  \"n_vocab\": %d,\n  \"steps\": %d,\n  \"reps\": %d,\n", (int)nv, steps, reps);
    printf("  \"copy_bandwidth_gbs\": %.1f,\n  \"floor_us\": %.2f,\n  \"results\": [\n", bw / 1e9,
           floor_us);
    double *times = malloc((size_t)reps * sizeof(double));
    int first = 1;
    for (int c = 0; c < nc; c++) {
        if (only && strcmp(only, cfgs[c].name)) continue;
        char err[256];
        rl_sampler *s = NULL;
        if (rl_sampler_create(&cfgs[c].p, nv, NULL, &s, err, sizeof err) != RL_OK) {
            fprintf(stderr, "%s: %s\n", cfgs[c].name, err);
            return 1;
        }
        rl_sampler_constraint con = {allows, fill, NULL};
        long sum = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            for (int i = 0; i < steps; i++) {
                rl_token t;
                const float *l = logits[i % NL];
                rl_status rc = cfgs[c].mask == 2
                                   ? rl_sampler_sample_constrained(s, l, &con, &t)
                                   : rl_sampler_sample(s, l, cfgs[c].mask ? mask : NULL, &t);
                if (rc != RL_OK) {
                    fprintf(stderr, "%s: %s\n", cfgs[c].name, rl_sampler_errmsg(s));
                    return 1;
                }
                if (cfgs[c].accept) rl_sampler_accept(s, t);
                sum += t;
            }
            times[r] = (now() - t0) / steps * 1e6;
        }
        qsort(times, (size_t)reps, sizeof *times, cmp_d);
        double med = times[reps / 2];
        printf("%s    {\"chain\": \"%s\", \"us_per_sample\": %.2f, \"min_us\": %.2f, "
               "\"floors\": %.1f, \"checksum\": %ld}",
               first ? "" : ",\n", cfgs[c].name, med, times[0], med / floor_us, sum);
        first = 0;
        rl_sampler_free(s);
    }
    printf("\n  ]\n}\n");
    free(times);
    for (int k = 0; k < NL; k++) free(logits[k]);
    free(mask);
    return 0;
}
