/*
 * bench_cuda - prompt processing and decode speed of a model on a device, with the floor
 * each decode figure is compared with, as one JSON object per line:
 *
 *   bench_cuda --model FILE | --shape NAME --type TYPE --out FILE  [--device cuda]
 *              [--pp 512] [--tg 128] [--reps 3]
 *   bench_cuda --kernels [--device cuda]
 *
 * --kernels: the decode products alone (rl__cuda_bench_matvec: Q4_K, Q6_K, Q8_0, Q4_0 and
 * F16 matrices of the Llama 3 8B and 1B shapes, the streaming kernel and the one before it)
 * in GB/s of weights against the copy bandwidth, one JSON line each.
 *
 * With --shape, a random-weight model of that shape (rl_synth_model) is written to FILE
 * first unless FILE exists. The copy bandwidth of the device (bytes read + written by a
 * device-to-device copy of 1 GiB, best of 5: rl__cuda_copy_bandwidth) gives the decode
 * floor: a token reads every weight once, so tokens/s <= bandwidth /
 * weight bytes (the KV cache of a short context is negligible next to the weights).
 * tg_tok_s includes the copy of each step's logits row to the host and the greedy pick over
 * it on the CPU (rl_get_argmax); tg_host_argmax_us is that pick's share per token (an
 * earlier scan here, `if (x[i] > x[b]) b = i`, chained every step through a reload of
 * x[b] and took 0.42-0.47 ms of a 1.9 ms token on the H200's host; the library's keeps the
 * best value in a register, ~6x faster), tg_no_logits_tok_s the
 * same steps without the output head and the copy, tg_argmax_only_tok_s the same
 * greedy steps with rl_context_set_argmax_only (the pick on the device, one id back).
 * tg0_tok_s is llama-bench's tg method (the llama.cpp decode figures are measured this
 * way): the cache cleared, then tg single-token steps from position 0, each with its
 * logits row copied to the host (read here, no pick), the next token drawn at random.
 */
#include "backend/backend.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *model = NULL, *shape = NULL, *type = "Q4_K_M", *out = NULL, *device = "cuda";
    int pp = 512, tg = 128, reps = 3;
    bool kernels = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--kernels")) {
            kernels = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_cuda: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--shape"))
            shape = v;
        else if (!strcmp(a, "--type"))
            type = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--device"))
            device = v;
        else if (!strcmp(a, "--pp"))
            pp = atoi(v);
        else if (!strcmp(a, "--tg"))
            tg = atoi(v);
        else if (!strcmp(a, "--reps"))
            reps = atoi(v);
        else {
            fprintf(stderr, "bench_cuda: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    char err[512];
    if (kernels) {
        if (strncmp(device, "cuda", 4)) {
            fprintf(stderr, "bench_cuda: --kernels needs a cuda device\n");
            return 2;
        }
        const int dev = device[4] == ':' ? atoi(device + 5) : 0;
        return rl__cuda_bench_matvec(dev, rl__cuda_copy_bandwidth(dev), stdout);
    }
    if (shape) {
        if (!out) {
            fprintf(stderr, "bench_cuda: --shape needs --out\n");
            return 2;
        }
        FILE *f = fopen(out, "rb");
        if (f)
            fclose(f);
        else {
            rl_synth_params sp = rl_synth_default_params();
            sp.shape = shape;
            sp.type = type;
            double t0 = now();
            if (rl_synth_model(out, &sp, err, sizeof err) != RL_OK) {
                fprintf(stderr, "bench_cuda: synth: %s\n", err);
                return 1;
            }
            fprintf(stderr, "bench_cuda: wrote %s (%s %s) in %.1f s\n", out, shape, type,
                    now() - t0);
        }
        model = out;
    }
    if (!model || pp < 1 || tg < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_cuda --model FILE | --shape NAME --type TYPE --out FILE "
                        "[--device cuda] [--pp 512] [--tg 128] [--reps 3]\n");
        return 2;
    }
    const double bw = strncmp(device, "cuda", 4)
                          ? 0
                          : rl__cuda_copy_bandwidth(device[4] == ':' ? atoi(device + 5) : 0);

    rl_model_params mp = rl_model_default_params();
    mp.device = device;
    rl_model *m = NULL;
    double t0 = now();
    if (rl_model_load(model, &mp, &m, err, sizeof err) != RL_OK) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    const double t_load = now() - t0;
    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = pp + 3 * tg + 16;
    cp.n_batch = pp;
    rl_context *ctx = NULL;
    if (rl_context_create(m, &cp, &ctx, err, sizeof err) != RL_OK) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        rl_model_free(m);
        return 1;
    }
    const int nv = rl_model_n_vocab(m);
    rl_token *toks = malloc((size_t)pp * sizeof(rl_token));
    uint64_t s = 12345;
    for (int i = 0; i < pp; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (rl_token)((s >> 33) % (uint64_t)nv);
    }
    double pp_best = 0, tg_best = 0, tgn_best = 0, tga_best = 0, am_best = 1e30, tg0_best = 0;
    float sink = 0;
    int rc = 0;
    for (int r = 0; r < reps + 1 && !rc; r++) { /* the first round warms up */
        rl_kv_clear(ctx);
        rl_batch b = rl_batch_get(toks, pp);
        double t1 = now();
        if (rl_decode(ctx, &b) != RL_OK) rc = 1;
        const double t_pp = now() - t1;
        rl_token next = rl_get_argmax(ctx, -1);
        double t_am = 0;
        t1 = now();
        for (int k = 0; k < tg && !rc; k++) {
            b = rl_batch_get(&next, 1);
            if (rl_decode(ctx, &b) != RL_OK)
                rc = 1;
            else {
                const double t2 = now();
                next = rl_get_argmax(ctx, -1);
                t_am += now() - t2;
            }
        }
        const double t_tg = now() - t1;
        /* the same steps without logits: no output head, no copy to the host */
        const int8_t none = 0;
        t1 = now();
        for (int k = 0; k < tg && !rc; k++) {
            b = (rl_batch){.n_tokens = 1, .token = &next, .logits = &none};
            if (rl_decode(ctx, &b) != RL_OK) rc = 1;
        }
        const double t_tgn = now() - t1;
        /* greedy with the pick on the device: one id per step comes back */
        rl_context_set_argmax_only(ctx, true);
        t1 = now();
        for (int k = 0; k < tg && !rc; k++) {
            b = rl_batch_get(&next, 1);
            if (rl_decode(ctx, &b) != RL_OK)
                rc = 1;
            else
                next = rl_get_argmax(ctx, -1);
        }
        const double t_tga = now() - t1;
        rl_context_set_argmax_only(ctx, false);
        if (rc) fprintf(stderr, "bench_cuda: decode: %s\n", rl_context_errmsg(ctx));
        if (r > 0) {
            if (pp / t_pp > pp_best) pp_best = pp / t_pp;
            if (tg / t_tg > tg_best) tg_best = tg / t_tg;
            if (tg / t_tgn > tgn_best) tgn_best = tg / t_tgn;
            if (tg / t_tga > tga_best) tga_best = tg / t_tga;
            if (t_am / tg < am_best) am_best = t_am / tg;
        }
    }
    /* from an empty cache, logits to the host every step (llama-bench's tg), in rounds of
     * their own after the others: its steps' record lists are new to the queue, and run
     * between the prompts above they pushed the prompt's captured graph out of the queue's
     * cache, so every prompt paid a capture (1B pp512 89k -> 53-58k tok/s on the H100) */
    for (int r = 0; r < reps + 1 && !rc; r++) {
        rl_kv_clear(ctx);
        const double t1 = now();
        for (int k = 0; k < tg && !rc; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            rl_token tk = (rl_token)((s >> 33) % (uint64_t)nv);
            rl_batch b = rl_batch_get(&tk, 1);
            const float *lg = NULL;
            if (rl_decode(ctx, &b) != RL_OK || !(lg = rl_get_logits(ctx, -1)))
                rc = 1;
            else
                sink += lg[k % nv];
        }
        const double t_tg0 = now() - t1;
        if (rc) fprintf(stderr, "bench_cuda: decode: %s\n", rl_context_errmsg(ctx));
        if (r > 0 && tg / t_tg0 > tg0_best) tg0_best = tg / t_tg0;
    }
    const double wb = (double)rl_model_weight_bytes(m);
    const double floor_tg = bw > 0 ? bw / wb : 0;
    if (!rc)
        printf("{\"model\": \"%s\", \"device\": \"%s\", \"weight_bytes\": %.0f, \"load_s\": %.2f, "
               "\"copy_bandwidth_GBs\": %.0f, \"pp\": %d, \"pp_tok_s\": %.1f, \"tg\": %d, "
               "\"tg_tok_s\": %.1f, \"tg_no_logits_tok_s\": %.1f, \"tg_host_argmax_us\": %.1f, "
               "\"tg_argmax_only_tok_s\": %.1f, \"tg0_tok_s\": %.1f, "
               "\"tg_floor_tok_s\": %.1f, \"tg_fraction_of_floor\": %.3f, "
               "\"tg0_fraction_of_floor\": %.3f}\n",
               model, device, wb, t_load, bw / 1e9, pp, pp_best, tg, tg_best, tgn_best,
               1e6 * am_best, tga_best, tg0_best, floor_tg,
               floor_tg > 0 ? tg_best / floor_tg : 0, floor_tg > 0 ? tg0_best / floor_tg : 0);
    if (sink != sink) fprintf(stderr, "bench_cuda: NaN in the logits\n");
    free(toks);
    rl_context_free(ctx);
    rl_model_free(m);
    return rc;
}
