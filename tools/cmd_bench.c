/*
 * cmd_bench.c - `ruvllm bench`: prompt processing and generation speed, the tests of
 * llama.cpp's llama-bench, next to the decode floor measured in the same run.
 *
 *  - pp<P>: one batch of P tokens (BOS, then random ids) from an empty cache, processed
 *    in passes of at most -b tokens (llama-bench's n_ubatch, 512); tokens/s = P / time.
 *  - tg<N>: N tokens decoded one at a time from an empty cache (BOS, then random ids);
 *    tokens/s = N / time. Each step makes its greedy pick as a greedy `run` does
 *    (argmax-only: on a GPU the logits stay on the device, one id comes back).
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
 * On a GPU (--device cuda[:N]) it is the device's copy bandwidth instead (bytes read and
 * written by a 1 GiB device-to-device copy, best of 5), measured once before the tests.
 * KV-cache reads are left out (under 1% at these lengths).
 *
 * With an output constraint (--grammar, --json-schema, --regex, --json-object) two more
 * generation tests measure end-to-end decode: tg<N> with each token drawn by the sampler
 * (llama.cpp's defaults unless sampling flags say otherwise) from the logits of the last
 * one, and the same with the sampler held to the grammar (rl_grammar_constraint: the sampled
 * token is checked first, a full mask computed only when it is rejected; when the text is
 * complete, or an end token comes, the matcher starts over). Their runs alternate (in pairs
 * whose order flips), so that both see the same load. The constrained test reports its
 * slowdown against the sampled one, how many full masks a token needed on average, and the
 * time spent in the grammar itself (token checks, masks, accepting the token; timed around
 * each call), per token and as a share of the constrained test's time: unlike the
 * difference of two noisy means, that share holds on a loaded machine. A rejected token
 * also costs the sampler a second, masked draw: slowdown_choosing, the extra time to choose
 * a token (sampler and grammar together) over tg+smp's time per token, includes it and
 * holds under load as well. The grammar is compiled once and warmed by the untimed first
 * run, as a server sees a schema it has met before.
 */
#include "bench_batched.h"
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
            "floor (weight bytes read per token / memory bandwidth measured in the same run;\n"
            "with --device cuda the GPU's copy bandwidth) and the ratio to it. -p 0 or -n 0\n"
            "skips a test.\n"
            "  -p, --n-prompt P   prompt tokens (512)\n"
            "  -n, --n-gen N      generated tokens (128)\n"
            "  -r, --repetitions R  timed runs per test, 1..1000 (5)\n"
            "  -b, --batch-size B   tokens per forward pass of pp (512)\n"
            "  --kv-type T        KV cache type: f16 (default), f32 or q8_0\n"
            "  --json             a list with one object per test (llama-bench's keys\n"
            "                     n_prompt, n_gen, n_threads, avg_ts, stddev_ts, ...; plus\n"
            "                     floor_ts, the decode floor, null for pp)\n"
            "  --stream-mib M     size of each bandwidth array (default 256 or 8x the LLC)\n"
            "  --parallel N,N,... batched decoding instead (llama-batched-bench's test): for\n"
            "                     each N, N sequences each prefill -p tokens in one batch,\n"
            "                     then generate -n tokens each, all N in one forward pass a\n"
            "                     step; aggregate prompt and generation tokens/s, and the\n"
            "                     generation floor (weight + KV bytes a step reads /\n"
            "                     bandwidth). N in 1..64. JSON keys n_parallel, pp, tg, n_kv,\n"
            "                     t_pp, speed_pp, t_tg, speed_tg, t, speed, floor_tg,\n"
            "                     floor_ratio (alias -npl)\n"
            "With a constraint below, also tg with sampling and tg with sampling under the\n"
            "constraint (alternating runs; JSON keys sampling, constraint,\n"
            "sample_us_per_token, slowdown_vs_sampled, full_masks_per_token,\n"
            "constraint_us_per_token, constraint_share, slowdown_choosing); the sampling\n"
            "options apply to them.\n\n");
    gen_usage_options(f, GEN_OPT_MODEL | GEN_OPT_SAMPLING | GEN_OPT_CONSTRAINT);
}

/* How a tg test picks its tokens. */
typedef enum tg_mode { TG_RANDOM = 0, TG_SAMPLED, TG_CONSTRAINED } tg_mode;

typedef struct test_result {
    tg_mode mode;
    double masks_per_token; /* TG_CONSTRAINED: full masks computed per token */
    double con_us_per_token; /* TG_CONSTRAINED: microseconds in the grammar per token */
    double sample_us_per_token; /* sampled tests: choosing a token (sampler, grammar) */
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
        /* the path of a greedy `run` (gen_plain_greedy): the pick where the logits are */
        rl_context_set_argmax_only(ctx, true);
        for (int32_t i = 0; i < n_gen; i++) {
            rl_batch b = rl_batch_get(&t, 1);
            if (rl_decode(ctx, &b) != RL_OK) {
                fprintf(stderr, "ruvllm bench: decode: %s\n", rl_context_errmsg(ctx));
                rl_context_set_argmax_only(ctx, false);
                return -1;
            }
            if (rl_get_argmax(ctx, -1) < 0) {
                rl_context_set_argmax_only(ctx, false);
                return -1;
            }
            t = random_token(nv);
        }
        rl_context_set_argmax_only(ctx, false);
    }
    return gen_now() - t0;
}

/* The grammar's constraint with its calls counted. */
typedef struct counted {
    const rl_sampler_constraint *inner;
    int64_t n_fill;
    double sec; /* in the callbacks */
} counted;

static bool counted_allows(void *u, rl_token t) {
    counted *c = u;
    const double t0 = gen_now();
    bool ok = c->inner->allows(c->inner->user, t);
    c->sec += gen_now() - t0;
    return ok;
}

static rl_status counted_fill(void *u, uint8_t *mask, int32_t n_vocab) {
    counted *c = u;
    c->n_fill++;
    const double t0 = gen_now();
    rl_status st = c->inner->fill_mask(c->inner->user, mask, n_vocab);
    c->sec += gen_now() - t0;
    return st;
}

/* One run of tg n_gen with sampled tokens (con NULL: unconstrained); seconds, or < 0 on
 * error (message printed). *n_fill counts the full masks, *con_sec the seconds spent in the
 * grammar (token checks, masks, accepting the token). */
static double run_sampled(rl_context *ctx, rl_sampler *s, uint64_t seed, const gen_constraint *con,
                          int32_t n_gen, int64_t *n_fill, double *con_sec, double *smp_sec) {
    double t_smp = 0;
    const rl_model *m = rl_context_model(ctx);
    const rl_vocab *v = rl_model_vocab(m);
    const rl_token bos = rl_vocab_bos(v);
    rl_token t = bos != RL_TOKEN_NULL && rl_vocab_add_bos(v) ? bos : 0;
    counted cc = {con ? rl_grammar_constraint_get(con->gc) : NULL, 0, 0};
    const rl_sampler_constraint wrap = {counted_allows, counted_fill, &cc};
    rl_kv_clear(ctx);
    rl_sampler_reset(s);
    rl_sampler_reseed(s, seed);
    if (con) rl_grammar_matcher_reset(con->m);
    const double t0 = gen_now();
    for (int32_t i = 0; i < n_gen; i++) {
        rl_batch b = rl_batch_get(&t, 1);
        if (rl_decode(ctx, &b) != RL_OK) {
            fprintf(stderr, "ruvllm bench: decode: %s\n", rl_context_errmsg(ctx));
            return -1;
        }
        const float *lg = rl_get_logits(ctx, -1);
        const double ts = gen_now();
        rl_status st = lg ? rl_sampler_sample_constrained(s, lg, con ? &wrap : NULL, &t)
                          : RL_ERR_INVALID_ARG;
        if (st != RL_OK && con && rl_grammar_matcher_can_end(con->m)) {
            /* complete, its end tokens banned: start a new text */
            rl_grammar_matcher_reset(con->m);
            st = rl_sampler_sample_constrained(s, lg, &wrap, &t);
        }
        if (st != RL_OK) {
            fprintf(stderr, "ruvllm bench: sampling: %s\n", rl_sampler_errmsg(s));
            return -1;
        }
        rl_sampler_accept(s, t);
        if (!con) {
            t_smp += gen_now() - ts;
            continue;
        }
        const double ta = gen_now();
        if (rl_grammar_matcher_accept_token(con->m, t) != RL_OK) {
            fprintf(stderr, "ruvllm bench: the grammar refused token %d: %s\n", (int)t,
                    rl_grammar_matcher_errmsg(con->m));
            return -1;
        }
        if (rl_vocab_is_eog(v, t) || rl_grammar_constraint_done(con->gc))
            rl_grammar_matcher_reset(con->m);
        const double te = gen_now();
        cc.sec += te - ta;
        t_smp += te - ts;
    }
    *n_fill = cc.n_fill;
    *con_sec = cc.sec;
    *smp_sec = t_smp;
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
    bench_batched_opts bb = {.n_list = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_parse_option(&o, GEN_OPT_MODEL | GEN_OPT_SAMPLING | GEN_OPT_CONSTRAINT, argc,
                                 argv, &i);
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
        } else if ((!strcmp(a, "--parallel") || !strcmp(a, "-npl")) && val) {
            if (!bench_batched_parse_list(a, argv[++i], &bb)) return 2;
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
    if (bb.n_list) {
        if (o.con_flag) {
            fprintf(stderr, "ruvllm bench: --parallel does not take %s\n", o.con_flag);
            return 2;
        }
        if (!n_gen) {
            fprintf(stderr, "ruvllm bench: --parallel needs -n >= 1 (generated tokens)\n");
            return 2;
        }
        bb.n_prompt = (int32_t)n_prompt;
        bb.n_gen = (int32_t)n_gen;
        bb.reps = (int)reps;
        bb.n_batch = (int32_t)batch;
        bb.stream_mib = stream_mib;
        bb.json = json;
        return bench_batched_run(&o, &bb);
    }

    int rc = 1;
    rl_model *m = NULL;
    rl_context *ctx = NULL;
    rl_threadpool *pool = NULL;
    rl_membw *bw = NULL;
    rl_token *buf = NULL;
    rl_sampler *smp = NULL;
    gen_constraint con = {0};
    test_result res[4];
    int n_res = 0, n_bw_runs = 0;
    memset(res, 0, sizeof res);
    if (!(m = gen_load_model(&o))) goto done;
    if (o.con_flag && n_gen > 0) {
        if ((rc = gen_constraint_init(&o, m, &con)) != 0) goto done;
        rc = 1;
    }
    const int32_t n_ctx = (int32_t)(n_prompt > n_gen ? n_prompt : n_gen);
    const int32_t n_batch = (int32_t)(n_prompt && n_prompt < batch ? n_prompt : batch);
    if (!(ctx = gen_new_context(&o, m, n_ctx, n_batch, 1))) goto done;
    if (!(buf = malloc(sizeof(rl_token) * (size_t)(n_prompt + 1)))) goto done;
    if (con.gc && !(smp = gen_new_sampler(&o, m, n_ctx))) goto done;
    const int n_threads = o.n_threads > 0 ? o.n_threads : rl_cpu_physical_cores();
    /* on a GPU the floor is the device's copy bandwidth, measured once here */
    const bool gpu = o.device && strcmp(o.device, "cpu") != 0;
    const double gpu_bw = gpu && n_gen > 0 ? rl_device_copy_bandwidth(o.device) : 0;
    if (n_gen > 0 && !gpu) {
        rl_status st = rl_threadpool_create(n_threads, &pool);
        if (st == RL_OK) st = rl_membw_create((size_t)(stream_mib * 1048576.0), true, &bw);
        if (st != RL_OK) {
            fprintf(stderr, "ruvllm bench: bandwidth measurement: %s\n", rl_status_str(st));
            goto done;
        }
    }
    const double bpt = bench_weight_bytes_per_step(m);
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
    if (smp) {
        /* tg sampled and tg constrained, runs alternating */
        test_result *ts[2] = {&res[n_res], &res[n_res + 1]};
        double *ns[2] = {calloc((size_t)reps, sizeof(double)),
                         calloc((size_t)reps, sizeof(double))};
        int64_t fills = 0, n_fill = 0;
        double con_sec = 0, con_total = 0, smp_sec = 0, smp_total[2] = {0, 0};
        /* each run its own seed (a new document), the same for both tests of a pair */
        const uint64_t seed0 = o.sp.seed == RL_SAMPLER_SEED_RANDOM ? 1 : o.sp.seed;
        bool ok = ns[0] && ns[1];
        for (int k = 0; ok && k < 2; k++) {
            ts[k]->mode = k ? TG_CONSTRAINED : TG_SAMPLED;
            ts[k]->n_gen = (int32_t)n_gen;
            ok = (ts[k]->samples_ts = calloc((size_t)reps, sizeof(double))) != NULL;
            /* warm-up: the grammar's tables fill here */
            ok = ok && run_sampled(ctx, smp, seed0, k ? &con : NULL, (int32_t)n_gen, &n_fill,
                                   &con_sec, &smp_sec) >= 0;
        }
        n_res += 2;
        for (int r = 0; ok && r < reps; r++) {
            if (bw) {
                rl_membw_run(bw, pool, NULL);
                n_bw_runs++;
            }
            /* the order flips every pair: neither test always follows the bandwidth run */
            for (int kk = 0; ok && kk < 2; kk++) {
                const int k = kk ^ (r & 1);
                double sec =
                    run_sampled(ctx, smp, seed0 + 1 + (uint64_t)r, k ? &con : NULL, (int32_t)n_gen,
                                &n_fill, &con_sec, &smp_sec);
                ok = sec >= 0;
                ts[k]->samples_ts[r] = n_gen / sec;
                ns[k][r] = sec * 1e9;
                if (k) fills += n_fill, con_total += con_sec;
                smp_total[k] += smp_sec;
            }
        }
        for (int k = 0; ok && k < 2; k++) {
            stats(ts[k]->samples_ts, (int)reps, &ts[k]->avg_ts, &ts[k]->stddev_ts);
            stats(ns[k], (int)reps, &ts[k]->avg_ns, &ts[k]->stddev_ns);
        }
        ts[1]->masks_per_token = (double)fills / ((double)reps * (double)n_gen);
        ts[1]->con_us_per_token = 1e6 * con_total / ((double)reps * (double)n_gen);
        for (int k = 0; k < 2; k++)
            ts[k]->sample_us_per_token = 1e6 * smp_total[k] / ((double)reps * (double)n_gen);
        free(ns[0]);
        free(ns[1]);
        if (!ok) goto done;
    }
    rl_membw_result best = rl_membw_best(bw);
    const double gbs = gpu ? gpu_bw / 1e9 : fmax(best.copy_gbs, best.triad_gbs);
    for (int k = 0; k < n_res; k++)
        if (res[k].n_gen && bpt > 0 && gbs > 0) res[k].floor_ts = gbs * 1e9 / bpt;

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
                printf("\"bandwidth_gbs\": %.3f, \"floor_ts\": %.6f, \"floor_ratio\": %.4f",
                       gbs, t->floor_ts, t->avg_ts / t->floor_ts);
            else
                printf("\"bandwidth_gbs\": null, \"floor_ts\": null, \"floor_ratio\": null");
            if (t->mode != TG_RANDOM) {
                printf(", \"sampling\": \"%s\", \"sample_us_per_token\": %.3f, \"constraint\": ",
                       t->mode == TG_SAMPLED ? "sampled" : "constrained", t->sample_us_per_token);
                if (t->mode == TG_SAMPLED) {
                    printf("null");
                } else {
                    printf("\"%s", o.con_flag);
                    for (const char *c = o.con_arg ? " " : ""; *c; c++) putchar(*c);
                    for (const char *c = o.con_arg ? o.con_arg : ""; *c; c++) {
                        if (*c == '"' || *c == '\\') putchar('\\');
                        if ((unsigned char)*c >= 0x20) putchar(*c);
                    }
                    printf("\", \"slowdown_vs_sampled\": %.6f, \"full_masks_per_token\": %.4f, "
                           "\"constraint_us_per_token\": %.3f, \"constraint_share\": %.6f, "
                           "\"slowdown_choosing\": %.6f",
                           t->avg_ns / res[k - 1].avg_ns - 1.0, t->masks_per_token,
                           t->con_us_per_token, t->con_us_per_token * 1e3 * t->n_gen / t->avg_ns,
                           (t->sample_us_per_token - res[k - 1].sample_us_per_token) * 1e3 *
                               t->n_gen / res[k - 1].avg_ns);
                }
            }
            printf("}%s\n", k + 1 < n_res ? "," : "");
        }
        printf("]\n");
    } else {
        if (gpu && gbs > 0)
            printf("%s copy bandwidth %.1f GB/s (device to device, read + written), %.1f MiB "
                   "read per token\n\n",
                   o.device, gbs, bpt / 1048576.0);
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
            snprintf(test, sizeof test,
                     t->n_prompt                ? "pp%d"
                     : t->mode == TG_SAMPLED     ? "tg%d+smp"
                     : t->mode == TG_CONSTRAINED ? "tg%d+con"
                                                 : "tg%d",
                     (int)(t->n_prompt ? t->n_prompt : t->n_gen));
            snprintf(ts, sizeof ts, "%.2f ± %.2f", t->avg_ts, t->stddev_ts);
            if (t->floor_ts > 0) {
                snprintf(fl, sizeof fl, "%.2f", t->floor_ts);
                snprintf(ratio, sizeof ratio, "%.2f", t->avg_ts / t->floor_ts);
            }
            printf("| %-28.28s | %10s | %7d | %8s | %19s | %9s | %6s |\n", path, size, n_threads,
                   test, ts, fl, ratio);
        }
        if (smp) {
            const test_result *tc = &res[n_res - 1], *tsm = &res[n_res - 2];
            printf("\ntg+smp: tokens drawn by the sampler; tg+con: the same under %s%s%s: "
                   "%+.2f%% time per token, %.2f full masks per token, %.1f us per token in the "
                   "grammar (%.2f%% of tg+con's time); choosing a token %.1f us (tg+smp %.1f us): "
                   "%+.2f%% of tg+smp's time\n",
                   o.con_flag, o.con_arg ? " " : "", o.con_arg ? o.con_arg : "",
                   100.0 * (tc->avg_ns / tsm->avg_ns - 1.0), tc->masks_per_token,
                   tc->con_us_per_token,
                   100.0 * tc->con_us_per_token * 1e3 * tc->n_gen / tc->avg_ns,
                   tc->sample_us_per_token, tsm->sample_us_per_token,
                   100.0 * (tc->sample_us_per_token - tsm->sample_us_per_token) * 1e3 * tc->n_gen /
                       tsm->avg_ns);
        }
    }
    fflush(stdout);
    rc = 0;
done:
    for (int k = 0; k < 4; k++) free(res[k].samples_ts);
    rl_sampler_free(smp);
    gen_constraint_free(&con);
    free(buf);
    rl_membw_free(bw);
    rl_threadpool_free(pool);
    rl_context_free(ctx);
    rl_model_free(m);
    return rc;
}
