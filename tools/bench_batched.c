/*
 * bench_batched.c - `ruvllm bench --parallel N[,N...]`: batched decoding, the test of
 * llama.cpp's llama-batched-bench (without a shared prompt).
 *
 * For each N: N sequences each prefill P random tokens (BOS first when the vocabulary
 * adds it), all in one rl_decode (passes of at most -b tokens, the last token of every
 * sequence flagged); then G steps each decode one token of every sequence in a single
 * forward pass (a batch of N tokens, sequence k at its next position, every token
 * flagged), each sequence continuing with the argmax of its logits (greedy decoding;
 * argmax-only, so on a GPU the pick stays on the device). This is the step a serving
 * engine runs with N streams decoding, through the public API alone.
 *   speed_pp = N * P / t_pp, speed_tg = N * G / t_tg, speed = N * (P + G) / (t_pp + t_tg).
 * Each N runs once untimed (pages in the weights), then REPS timed runs; the figures are
 * means (speed_tg also with its standard deviation over the runs).
 *
 * The floor of a generation step: it reads every weight byte once (the token embedding
 * table excepted when the output layer has its own matrix: one row per token) and each
 * sequence's keys and values (P + g + 1 cells of every layer at step g; the mean over the
 * G steps is used), so speed_tg cannot exceed N * bandwidth / bytes per step. Bandwidth
 * as in the plain tests: the library's STREAM-like measurement before each timed run on
 * the CPU (the best is kept), the device's copy bandwidth with --device cuda.
 */
#include "bench_batched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BB_MAX_SEQ 64 /* rl_context_params.n_seq_max */

bool bench_batched_parse_list(const char *flag, const char *s, bench_batched_opts *b) {
    b->n_list = 0;
    const char *p = s;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > BB_MAX_SEQ || (*end && *end != ',') ||
            b->n_list == BENCH_BATCHED_MAX_LIST) {
            fprintf(stderr,
                    "ruvllm bench: %s takes up to %d comma-separated sequence counts in "
                    "[1, %d], got '%s'\n",
                    flag, BENCH_BATCHED_MAX_LIST, BB_MAX_SEQ, s);
            return false;
        }
        b->n_parallel[b->n_list++] = (int32_t)v;
        if (!*end) return true;
        p = end + 1;
    }
}

static uint32_t bb_lcg = 4242;
static rl_token bb_random(int32_t n_vocab) {
    bb_lcg = bb_lcg * 1664525u + 1013904223u;
    return (rl_token)((bb_lcg >> 8) % (uint32_t)n_vocab);
}

/* Weight bytes one decode step reads, the floor of `ruvllm bench` and `bench --parallel`: every
 * weight once, except the token embedding table when the output layer has its own matrix (a
 * step then reads one row of the table per token, not the whole table). */
double bench_weight_bytes_per_step(const rl_model *m) {
    const rl_gguf *g = rl_model_gguf(m);
    double bytes = (double)rl_model_weight_bytes(m);
    int64_t emb = rl_gguf_find_tensor(g, "token_embd.weight");
    rl_gguf_tensor_info ti;
    if (emb >= 0 && rl_gguf_find_tensor(g, "output.weight") >= 0 &&
        rl_gguf_tensor(g, emb, &ti) == RL_OK && ti.ne[1] > 0)
        bytes -= (double)ti.nbytes - (double)ti.nbytes / (double)ti.ne[1];
    return bytes;
}

/* KV-cache bytes of one token (K and V rows of every layer), from the shapes of the K and
 * V projections; 0 when the model has none under the usual names. */
static double kv_bytes_per_token(const rl_model *m, rl_type kv_type) {
    const rl_gguf *g = rl_model_gguf(m);
    double bytes = 0;
    for (int32_t il = 0; il < rl_model_n_layer(m); il++) {
        static const char *const names[2] = {"attn_k", "attn_v"};
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", (int)il, names[k]);
            int64_t i = rl_gguf_find_tensor(g, name);
            rl_gguf_tensor_info ti;
            size_t rb = 0;
            if (i >= 0 && rl_gguf_tensor(g, i, &ti) == RL_OK &&
                rl_type_row_bytes(kv_type, ti.ne[1], &rb) == RL_OK)
                bytes += (double)rb;
        }
    }
    return bytes;
}

typedef struct bb_result {
    int32_t n_par;
    int32_t n_batch;              /* tokens per forward pass used for this N */
    double t_pp, t_tg;            /* mean seconds */
    double speed_pp, speed_tg, sd_tg, speed;
    double *samples_tg;           /* [reps] */
    double bytes_per_step, floor_tg;
} bb_result;

typedef struct bb_bufs {
    rl_token *tok;  /* [N * max(P, 1)] */
    int32_t *seq;   /* [N * max(P, 1)] */
    int8_t *flag;   /* [N * max(P, 1)] */
    rl_token *next; /* [N] */
} bb_bufs;

/* One run for N sequences: *t_pp, *t_tg in seconds; false on error (message printed). */
static bool run_once(rl_context *ctx, bb_bufs *bf, int32_t n, int32_t n_prompt, int32_t n_gen,
                     double *t_pp, double *t_tg) {
    const rl_model *m = rl_context_model(ctx);
    const rl_vocab *v = rl_model_vocab(m);
    const int32_t nv = rl_model_n_vocab(m);
    const rl_token bos = rl_vocab_bos(v);
    const bool add_bos = bos != RL_TOKEN_NULL && rl_vocab_add_bos(v);
    rl_kv_clear(ctx);
    *t_pp = 0;
    if (n_prompt > 0) {
        const int32_t nt = n * n_prompt;
        for (int32_t i = 0; i < nt; i++) {
            const int32_t j = i % n_prompt;
            bf->tok[i] = j == 0 && add_bos ? bos : bb_random(nv);
            bf->seq[i] = i / n_prompt;
            bf->flag[i] = j == n_prompt - 1;
        }
        rl_batch b = {.n_tokens = nt, .token = bf->tok, .seq_id = bf->seq, .logits = bf->flag};
        const double t0 = gen_now();
        if (rl_decode(ctx, &b) != RL_OK) {
            fprintf(stderr, "ruvllm bench: decode: %s\n", rl_context_errmsg(ctx));
            return false;
        }
        for (int32_t k = 0; k < n; k++) bf->next[k] = rl_get_argmax(ctx, (k + 1) * n_prompt - 1);
        *t_pp = gen_now() - t0;
    } else {
        for (int32_t k = 0; k < n; k++) bf->next[k] = add_bos ? bos : bb_random(nv);
    }
    for (int32_t k = 0; k < n; k++) {
        bf->seq[k] = k;
        bf->flag[k] = 1;
    }
    const double t0 = gen_now();
    for (int32_t g = 0; g < n_gen; g++) {
        rl_batch b = {.n_tokens = n, .token = bf->next, .seq_id = bf->seq, .logits = bf->flag};
        if (rl_decode(ctx, &b) != RL_OK) {
            fprintf(stderr, "ruvllm bench: decode: %s\n", rl_context_errmsg(ctx));
            return false;
        }
        /* the batch reads bf->next: fill it again only after the pass */
        for (int32_t k = 0; k < n; k++) bf->next[k] = rl_get_argmax(ctx, k);
    }
    *t_tg = gen_now() - t0;
    return true;
}

static void print_json_string(const char *s) {
    putchar('"');
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\') putchar('\\');
        if ((unsigned char)*c >= 0x20) putchar(*c);
    }
    putchar('"');
}

int bench_batched_run(const gen_opts *o, const bench_batched_opts *b) {
    int rc = 1;
    rl_model *m = NULL;
    rl_context *ctx = NULL;
    rl_threadpool *pool = NULL;
    rl_membw *bw = NULL;
    bb_bufs bf = {0};
    bb_result res[BENCH_BATCHED_MAX_LIST];
    memset(res, 0, sizeof res);
    int n_bw_runs = 0;
    if (!(m = gen_load_model(o))) goto done;
    int32_t n_max = 1;
    for (int i = 0; i < b->n_list; i++) n_max = b->n_parallel[i] > n_max ? b->n_parallel[i] : n_max;
    const size_t cap = (size_t)n_max * (size_t)(b->n_prompt > 0 ? b->n_prompt : 1);
    bf.tok = malloc(cap * sizeof *bf.tok);
    bf.seq = malloc(cap * sizeof *bf.seq);
    bf.flag = malloc(cap * sizeof *bf.flag);
    bf.next = malloc((size_t)n_max * sizeof *bf.next);
    if (!bf.tok || !bf.seq || !bf.flag || !bf.next) {
        fprintf(stderr, "ruvllm bench: out of memory\n");
        goto done;
    }
    const int n_threads = o->n_threads > 0 ? o->n_threads : rl_cpu_physical_cores();
    const bool gpu = o->device && strcmp(o->device, "cpu") != 0;
    const double gpu_bw = gpu ? rl_device_copy_bandwidth(o->device) : 0;
    if (!gpu) {
        rl_status st = rl_threadpool_create(n_threads, &pool);
        if (st == RL_OK) st = rl_membw_create((size_t)(b->stream_mib * 1048576.0), true, &bw);
        if (st != RL_OK) {
            fprintf(stderr, "ruvllm bench: bandwidth measurement: %s\n", rl_status_str(st));
            goto done;
        }
    }
    const double wbytes = bench_weight_bytes_per_step(m);
    const double kvtb = kv_bytes_per_token(m, o->kv_type);
    const char *path = strrchr(o->model, '/') ? strrchr(o->model, '/') + 1 : o->model;
    if (!b->json)
        fprintf(stderr, "ruvllm bench: %s, %s, %d threads, %d runs per N, batched decoding\n",
                path, rl_model_arch(m), n_threads, b->reps);

    for (int li = 0; li < b->n_list; li++) {
        const int32_t n = b->n_parallel[li];
        bb_result *r = &res[li];
        r->n_par = n;
        if (!(r->samples_tg = calloc((size_t)b->reps, sizeof(double)))) goto done;
        rl_context_params cp = rl_context_default_params();
        cp.n_ctx = n * (b->n_prompt + b->n_gen);
        const int32_t nb = n * (b->n_prompt > 0 ? b->n_prompt : 1);
        cp.n_batch = b->n_batch < nb ? b->n_batch : nb;
        if (cp.n_batch < n) cp.n_batch = n; /* a generation step is one pass */
        r->n_batch = cp.n_batch;
        cp.n_seq_max = n;
        cp.n_outputs_max = n;
        cp.kv_type = o->kv_type;
        cp.n_threads = o->n_threads;
        char err[512] = "";
        rl_status st = rl_context_create(m, &cp, &ctx, err, sizeof err);
        if (st != RL_OK) {
            fprintf(stderr, "ruvllm bench: context for %d sequences: %s\n", (int)n,
                    err[0] ? err : rl_status_str(st));
            goto done;
        }
        rl_context_set_argmax_only(ctx, true);
        double tp, tt, sum_pp = 0, sum_tg = 0;
        if (!run_once(ctx, &bf, n, b->n_prompt, b->n_gen, &tp, &tt)) goto done; /* warm-up */
        for (int k = 0; k < b->reps; k++) {
            if (bw) {
                rl_membw_run(bw, pool, NULL);
                n_bw_runs++;
            }
            if (!run_once(ctx, &bf, n, b->n_prompt, b->n_gen, &tp, &tt)) goto done;
            sum_pp += tp;
            sum_tg += tt;
            r->samples_tg[k] = (double)n * b->n_gen / tt;
        }
        rl_context_free(ctx);
        ctx = NULL;
        r->t_pp = sum_pp / b->reps;
        r->t_tg = sum_tg / b->reps;
        r->speed_pp = r->t_pp > 0 ? (double)n * b->n_prompt / r->t_pp : 0;
        r->speed_tg = (double)n * b->n_gen / r->t_tg;
        r->speed = (double)n * (b->n_prompt + b->n_gen) / (r->t_pp + r->t_tg);
        double s = 0, s2 = 0;
        for (int k = 0; k < b->reps; k++) s += r->samples_tg[k];
        const double mean = s / b->reps;
        for (int k = 0; k < b->reps; k++)
            s2 += (r->samples_tg[k] - mean) * (r->samples_tg[k] - mean);
        r->sd_tg = b->reps > 1 ? sqrt(s2 / (b->reps - 1)) : 0;
        /* step g attends P + g + 1 cells per sequence: mean P + (G + 1) / 2 */
        r->bytes_per_step = wbytes + (double)n * (b->n_prompt + (b->n_gen + 1) / 2.0) * kvtb;
    }
    rl_membw_result best = rl_membw_best(bw);
    const double gbs = gpu ? gpu_bw / 1e9 : fmax(best.copy_gbs, best.triad_gbs);
    for (int li = 0; li < b->n_list; li++)
        if (gbs > 0 && res[li].bytes_per_step > 0)
            res[li].floor_tg = res[li].n_par * gbs * 1e9 / res[li].bytes_per_step;

    char type_k[16];
    snprintf(type_k, sizeof type_k, "%s", rl_type_name(o->kv_type));
    for (char *c = type_k; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    if (b->json) {
        printf("[\n");
        for (int li = 0; li < b->n_list; li++) {
            const bb_result *r = &res[li];
            printf("  {\"model_filename\": ");
            print_json_string(o->model);
            printf(", \"model_type\": \"%s\", \"device\": ", rl_model_arch(m));
            print_json_string(gpu ? o->device : "cpu");
            printf(", \"n_threads\": %d, \"n_batch\": %d, \"type_k\": \"%s\", "
                   "\"n_parallel\": %d, \"pl\": %d, \"pp\": %d, \"tg\": %d, \"n_kv\": %d, "
                   "\"t_pp\": %.9f, \"speed_pp\": %.6f, \"t_tg\": %.9f, \"speed_tg\": %.6f, "
                   "\"stddev_tg\": %.6f, \"t\": %.9f, \"speed\": %.6f, \"samples_tg\": [",
                   n_threads, (int)r->n_batch, type_k, (int)r->n_par, (int)r->n_par,
                   (int)b->n_prompt, (int)b->n_gen, (int)(r->n_par * (b->n_prompt + b->n_gen)),
                   r->t_pp, r->speed_pp, r->t_tg, r->speed_tg, r->sd_tg, r->t_pp + r->t_tg,
                   r->speed);
            for (int k = 0; k < b->reps; k++) printf(k ? ", %.6f" : "%.6f", r->samples_tg[k]);
            printf("], \"weight_bytes_per_step\": %.0f, \"kv_bytes_per_step\": %.0f, "
                   "\"bytes_per_step\": %.0f, ",
                   wbytes, r->bytes_per_step - wbytes, r->bytes_per_step);
            if (r->floor_tg > 0)
                printf("\"bandwidth_gbs\": %.3f, \"floor_tg\": %.6f, \"floor_ratio\": %.4f}", gbs,
                       r->floor_tg, r->speed_tg / r->floor_tg);
            else
                printf("\"bandwidth_gbs\": null, \"floor_tg\": null, \"floor_ratio\": null}");
            printf("%s\n", li + 1 < b->n_list ? "," : "");
        }
        printf("]\n");
    } else {
        if (gpu && gbs > 0)
            printf("%s copy bandwidth %.1f GB/s (device to device, read + written)\n", o->device,
                   gbs);
        if (bw)
            printf("memory bandwidth %.1f GB/s (copy %.1f, triad %.1f; best of %d runs of 3 x "
                   "%.0f MiB)\n",
                   gbs, best.copy_gbs, best.triad_gbs, n_bw_runs,
                   rl_membw_array_bytes(bw) / 1048576.0);
        printf("a generation step reads %.1f MiB of weights + %.3f MiB of KV per sequence "
               "(mean)\n\n",
               wbytes / 1048576.0, (b->n_prompt + (b->n_gen + 1) / 2.0) * kvtb / 1048576.0);
        printf("| %6s | %6s | %4s | %7s | %8s | %9s | %8s | %17s | %8s | %9s | %9s | %5s |\n",
               "PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s",
               "S t/s", "floor t/s", "ratio");
        printf("|--------|--------|------|---------|----------|-----------|----------|"
               "-------------------|----------|-----------|-----------|-------|\n");
        for (int li = 0; li < b->n_list; li++) {
            const bb_result *r = &res[li];
            char tg[40], fl[24] = "-", ratio[16] = "-";
            snprintf(tg, sizeof tg, "%.2f ± %.2f", r->speed_tg, r->sd_tg);
            if (r->floor_tg > 0) {
                snprintf(fl, sizeof fl, "%.2f", r->floor_tg);
                snprintf(ratio, sizeof ratio, "%.2f", r->speed_tg / r->floor_tg);
            }
            printf("| %6d | %6d | %4d | %7d | %8.3f | %9.2f | %8.3f | %18s | %8.3f | %9.2f | "
                   "%9s | %5s |\n",
                   (int)b->n_prompt, (int)b->n_gen, (int)r->n_par,
                   (int)(r->n_par * (b->n_prompt + b->n_gen)), r->t_pp, r->speed_pp, r->t_tg, tg,
                   r->t_pp + r->t_tg, r->speed, fl, ratio);
        }
    }
    fflush(stdout);
    rc = 0;
done:
    for (int li = 0; li < BENCH_BATCHED_MAX_LIST; li++) free(res[li].samples_tg);
    free(bf.tok);
    free(bf.seq);
    free(bf.flag);
    free(bf.next);
    rl_membw_free(bw);
    rl_threadpool_free(pool);
    rl_context_free(ctx);
    rl_model_free(m);
    return rc;
}
