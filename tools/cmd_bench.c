/*
 * cmd_bench.c - `ruvllm bench`: prompt processing and generation speed, the tests of
 * llama.cpp's llama-bench, next to the decode floor measured in the same run.
 *
 *  - pp<P>: one batch of P tokens (BOS, then random ids) from an empty cache, processed
 *    in passes of at most -b tokens (llama-bench's n_ubatch, 512); tokens/s = P / time.
 *  - tg<N>: N tokens decoded one at a time from an empty cache (BOS, then random ids);
 *    tokens/s = N / time.
 * Each test runs once untimed first (the kernel here evicts file pages left idle for
 * about a minute, so the first pass would measure the disk), then REPS timed runs; the
 * figures are the mean and the sample standard deviation of the per-run tokens/s, as
 * llama-bench reports them.
 *
 * The decode floor: a decode step reads every weight byte once (the token embedding
 * table excepted when the output layer has its own matrix: then one row of it), so
 * tokens/s cannot exceed bandwidth / bytes per token. The bandwidth is the library's
 * STREAM-like measurement (rl_membw: max of copy and triad) on as many threads, run
 * before each timed generation run so that both see the same load; the best is used.
 * KV-cache reads are left out (under 1% at these lengths).
 */
#include "cli.h"
#include "gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm bench -m MODEL [-p 512] [-n 128] [-t N] [-r REPS] [-b 512] [--json]\n\n"
            "Prompt processing (pp: one batch of P tokens) and generation (tg: N tokens one at\n"
            "a time) in tokens/s, mean and standard deviation over REPS runs (default 5) after\n"
            "a warm-up run, as llama.cpp's llama-bench measures them; next to the decode\n"
            "floor (weight bytes read per token / memory bandwidth measured in the same run)\n"
            "and the ratio to it. -p 0 or -n 0 skips a test.\n"
            "  -p, --n-prompt P   prompt tokens (512)\n"
            "  -n, --n-gen N      generated tokens (128)\n"
            "  -r, --repetitions R  timed runs per test, 1..1000 (5)\n"
            "  -b, --batch-size B   tokens per forward pass of pp (512)\n"
            "  --kv-type T        KV cache type: f16 (default), f32 or q8_0\n"
            "  --json             a list with one object per test (llama-bench's keys\n"
            "                     n_prompt, n_gen, n_threads, avg_ts, stddev_ts, ...; plus\n"
            "                     floor_ts, the decode floor, null for pp)\n"
            "  --stream-mib M     size of each bandwidth array (default 256 or 8x the LLC)\n\n");
    gen_usage_options(f, GEN_OPT_MODEL);
}

/* Weight bytes one decode step reads. */
static double bytes_per_token(const rl_model *m) {
    const rl_gguf *g = rl_model_gguf(m);
    double bytes = (double)rl_model_weight_bytes(m);
    int64_t emb = rl_gguf_find_tensor(g, "token_embd.weight");
    rl_gguf_tensor_info ti;
    if (emb >= 0 && rl_gguf_find_tensor(g, "output.weight") >= 0 &&
        rl_gguf_tensor(g, emb, &ti) == RL_OK && ti.ne[1] > 0)
        bytes -= (double)ti.nbytes - (double)ti.nbytes / (double)ti.ne[1];
    return bytes;
}

typedef struct test_result {
    int32_t n_prompt, n_gen;
    double avg_ts, stddev_ts, avg_ns, stddev_ns;
    double *samples_ts; /* [reps] */
    double floor_ts;    /* 0: none */
} test_result;

static uint32_t g_lcg = 12345;
static rl_token random_token(int32_t n_vocab) {
    g_lcg = g_lcg * 1664525u + 1013904223u;
    return (rl_token)((g_lcg >> 8) % (uint32_t)n_vocab);
}

/* One run of a test; returns seconds, or < 0 on error (message printed). */
static double run_test(rl_context *ctx, rl_token *buf, int32_t n_prompt, int32_t n_gen) {
    const rl_model *m = rl_context_model(ctx);
    const rl_vocab *v = rl_model_vocab(m);
    const int32_t nv = rl_model_n_vocab(m);
    const rl_token bos = rl_vocab_bos(v);
    rl_kv_clear(ctx);
    double t0 = gen_now();
    if (n_prompt > 0) {
        for (int32_t i = 0; i < n_prompt; i++) buf[i] = random_token(nv);
        if (bos != RL_TOKEN_NULL && rl_vocab_add_bos(v)) buf[0] = bos;
        t0 = gen_now();
        rl_batch b = rl_batch_get(buf, n_prompt);
        if (rl_decode(ctx, &b) != RL_OK) {
            fprintf(stderr, "ruvllm bench: decode: %s\n", rl_context_errmsg(ctx));
            return -1;
        }
    } else {
        rl_token t = bos != RL_TOKEN_NULL && rl_vocab_add_bos(v) ? bos : random_token(nv);
        for (int32_t i = 0; i < n_gen; i++) {
            rl_batch b = rl_batch_get(&t, 1);
            if (rl_decode(ctx, &b) != RL_OK) {
                fprintf(stderr, "ruvllm bench: decode: %s\n", rl_context_errmsg(ctx));
                return -1;
            }
            if (!rl_get_logits(ctx, -1)) return -1;
            t = random_token(nv);
        }
    }
    return gen_now() - t0;
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

int cmd_bench(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o, "bench");
    long long n_prompt = 512, n_gen = 128, reps = 5, batch = 512;
    double stream_mib = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_parse_option(&o, GEN_OPT_MODEL, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) && val) {
            if (!gen_parse_int("bench", a, argv[++i], 0, 1 << 20, &n_prompt)) return 2;
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--n-gen")) && val) {
            if (!gen_parse_int("bench", a, argv[++i], 0, 1 << 20, &n_gen)) return 2;
        } else if ((!strcmp(a, "-r") || !strcmp(a, "--repetitions")) && val) {
            if (!gen_parse_int("bench", a, argv[++i], 1, 1000, &reps)) return 2;
        } else if ((!strcmp(a, "-b") || !strcmp(a, "--batch-size")) && val) {
            if (!gen_parse_int("bench", a, argv[++i], 1, 1 << 16, &batch)) return 2;
        } else if (!strcmp(a, "--stream-mib") && val) {
            if (!gen_parse_float("bench", a, argv[++i], 1, 65536, &stream_mib)) return 2;
        } else if (!strcmp(a, "--kv-type")) {
            if (gen_parse_option(&o, GEN_OPT_CONTEXT, argc, argv, &i) < 0) return 2;
        } else {
            fprintf(stderr, "ruvllm bench: unknown option or missing value: '%s'\n", a);
            fprintf(stderr, "(ruvllm bench --help lists the options)\n");
            return 2;
        }
    }
    if (!o.model) {
        fprintf(stderr, "ruvllm bench: -m MODEL is required\n");
        return 2;
    }
    if (!n_prompt && !n_gen) {
        fprintf(stderr, "ruvllm bench: -p and -n are both 0: nothing to measure\n");
        return 2;
    }

    int rc = 1;
    rl_model *m = NULL;
    rl_context *ctx = NULL;
    rl_threadpool *pool = NULL;
    rl_membw *bw = NULL;
    rl_token *buf = NULL;
    test_result res[2];
    int n_res = 0, n_bw_runs = 0;
    memset(res, 0, sizeof res);
    if (!(m = gen_load_model(&o))) goto done;
    const int32_t n_ctx = (int32_t)(n_prompt > n_gen ? n_prompt : n_gen);
    const int32_t n_batch = (int32_t)(n_prompt && n_prompt < batch ? n_prompt : batch);
    if (!(ctx = gen_new_context(&o, m, n_ctx, n_batch, 1))) goto done;
    if (!(buf = malloc(sizeof(rl_token) * (size_t)(n_prompt + 1)))) goto done;
    const int n_threads = o.n_threads > 0 ? o.n_threads : rl_cpu_physical_cores();
    if (n_gen > 0) {
        rl_status st = rl_threadpool_create(n_threads, &pool);
        if (st == RL_OK) st = rl_membw_create((size_t)(stream_mib * 1048576.0), true, &bw);
        if (st != RL_OK) {
            fprintf(stderr, "ruvllm bench: bandwidth measurement: %s\n", rl_status_str(st));
            goto done;
        }
    }
    const double bpt = bytes_per_token(m);
    const double wb = (double)rl_model_weight_bytes(m);
    char size[24];
    if (wb >= 1073741824.0)
        snprintf(size, sizeof size, "%.2f GiB", wb / 1073741824.0);
    else
        snprintf(size, sizeof size, "%.2f MiB", wb / 1048576.0);
    const char *path = strrchr(o.model, '/') ? strrchr(o.model, '/') + 1 : o.model;
    if (!json)
        fprintf(stderr, "ruvllm bench: %s, %s, %s of weights, %d threads, %lld runs\n", path,
                rl_model_arch(m), size, n_threads, reps);

    for (int k = 0; k < 2; k++) {
        const int32_t np = k == 0 ? (int32_t)n_prompt : 0, ng = k == 1 ? (int32_t)n_gen : 0;
        if (!np && !ng) continue;
        test_result *t = &res[n_res++];
        t->n_prompt = np;
        t->n_gen = ng;
        t->samples_ts = calloc((size_t)reps, sizeof(double));
        double *ns = calloc((size_t)reps, sizeof(double));
        if (!t->samples_ts || !ns) {
            free(ns);
            goto done;
        }
        if (bw) {
            rl_membw_run(bw, pool, NULL);
            n_bw_runs++;
        }
        /* warm-up: pages in every weight */
        if (run_test(ctx, buf, np, ng) < 0) {
            free(ns);
            goto done;
        }
        for (int r = 0; r < reps; r++) {
            if (ng && bw) {
                rl_membw_run(bw, pool, NULL);
                n_bw_runs++;
            }
            double s = run_test(ctx, buf, np, ng);
            if (s < 0) {
                free(ns);
                goto done;
            }
            t->samples_ts[r] = (np + ng) / s;
            ns[r] = s * 1e9;
        }
        stats(t->samples_ts, (int)reps, &t->avg_ts, &t->stddev_ts);
        stats(ns, (int)reps, &t->avg_ns, &t->stddev_ns);
        free(ns);
    }
    rl_membw_result best = rl_membw_best(bw);
    const double gbs = fmax(best.copy_gbs, best.triad_gbs);
    for (int k = 0; k < n_res; k++)
        if (res[k].n_gen && bpt > 0) res[k].floor_ts = gbs * 1e9 / bpt;

    char type_k[16];
    snprintf(type_k, sizeof type_k, "%s", rl_type_name(o.kv_type));
    for (char *c = type_k; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    if (json) {
        printf("[\n");
        for (int k = 0; k < n_res; k++) {
            const test_result *t = &res[k];
            printf("  {\"model_filename\": \"");
            for (const char *c = o.model; *c; c++) {
                if (*c == '"' || *c == '\\') putchar('\\');
                if ((unsigned char)*c >= 0x20) putchar(*c);
            }
            printf("\", \"model_type\": \"%s\", \"model_size\": %llu, \"n_batch\": %d, "
                   "\"n_threads\": %d, \"type_k\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, "
                   "\"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.6f, "
                   "\"stddev_ts\": %.6f, \"samples_ts\": [",
                   rl_model_arch(m), (unsigned long long)rl_model_weight_bytes(m), (int)n_batch,
                   n_threads, type_k, (int)t->n_prompt, (int)t->n_gen, t->avg_ns, t->stddev_ns,
                   t->avg_ts, t->stddev_ts);
            for (int r = 0; r < reps; r++) printf(r ? ", %.6f" : "%.6f", t->samples_ts[r]);
            printf("], \"bytes_per_token\": %.0f, ", bpt);
            if (t->floor_ts > 0)
                printf("\"bandwidth_gbs\": %.3f, \"floor_ts\": %.6f, \"floor_ratio\": %.4f}",
                       gbs, t->floor_ts, t->avg_ts / t->floor_ts);
            else
                printf("\"bandwidth_gbs\": null, \"floor_ts\": null, \"floor_ratio\": null}");
            printf("%s\n", k + 1 < n_res ? "," : "");
        }
        printf("]\n");
    } else {
        if (bw)
            printf("memory bandwidth %.1f GB/s (copy %.1f, triad %.1f; best of %d runs of 3 x "
                   "%.0f MiB), %.1f MiB read per token\n\n",
                   gbs, best.copy_gbs, best.triad_gbs, n_bw_runs,
                   rl_membw_array_bytes(bw) / 1048576.0, bpt / 1048576.0);
        printf("| %-28s | %10s | %7s | %8s | %18s | %9s | %6s |\n", "model", "size", "threads",
               "test", "t/s", "floor t/s", "ratio");
        printf("| %.28s | %.10s | %.7s | %.8s | %.18s | %.9s | %.6s |\n",
               "----------------------------", "----------", "-------", "--------",
               "------------------", "---------", "------");
        for (int k = 0; k < n_res; k++) {
            const test_result *t = &res[k];
            char test[32], ts[40], fl[24] = "-", ratio[16] = "-";
            snprintf(test, sizeof test, t->n_prompt ? "pp%d" : "tg%d",
                     (int)(t->n_prompt ? t->n_prompt : t->n_gen));
            snprintf(ts, sizeof ts, "%.2f ± %.2f", t->avg_ts, t->stddev_ts);
            if (t->floor_ts > 0) {
                snprintf(fl, sizeof fl, "%.2f", t->floor_ts);
                snprintf(ratio, sizeof ratio, "%.2f", t->avg_ts / t->floor_ts);
            }
            printf("| %-28.28s | %10s | %7d | %8s | %19s | %9s | %6s |\n", path, size, n_threads,
                   test, ts, fl, ratio);
        }
    }
    fflush(stdout);
    rc = 0;
done:
    for (int k = 0; k < 2; k++) free(res[k].samples_ts);
    free(buf);
    rl_membw_free(bw);
    rl_threadpool_free(pool);
    rl_context_free(ctx);
    rl_model_free(m);
    return rc;
}
