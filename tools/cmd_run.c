/*
 * cmd_run.c - `ruvllm run`: continue a prompt, streaming the text as it is generated.
 *
 * The prompt is tokenized as `ruvllm tokenize` does (BOS per the metadata), decoded in
 * one batch, then tokens are sampled one at a time (llama.cpp's sampler chain, its
 * defaults) and printed through the streaming detokenizer, so that a character split
 * over several tokens appears whole, never half. A full context is a documented stop: a
 * note on stderr and exit status 0.
 *
 * An output constraint (--grammar, --json-schema, --regex, --json-object; gen_constraint.c)
 * is compiled once against the vocabulary; each sampled token is checked against it and a
 * full mask computed only when it is rejected (rl_grammar_constraint), end-of-generation
 * tokens come only where the text is complete, and generation stops when nothing can
 * follow. The finish reason (stop or length) goes to stderr.
 */
#include "cli.h"
#include "gen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RUN_OPTS (GEN_OPT_MODEL | GEN_OPT_CONTEXT | GEN_OPT_SAMPLING | GEN_OPT_CONSTRAINT)

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm run -m MODEL (-p TEXT | -f FILE) [-n N] [--ignore-eos] [--ids]\n"
            "                  [--grammar FILE | --json-schema FILE | --regex RE |\n"
            "                   --json-object] [options]\n\n"
            "Continue TEXT (or the bytes of FILE) with MODEL, printing the generated text to\n"
            "stdout as it comes, then a newline; timings go to stderr.\n"
            "  -p, --prompt TEXT       the prompt\n"
            "  -f, --file FILE         read the prompt from FILE\n"
            "  -n, --n-predict N       tokens to generate; -1: until an end-of-generation\n"
            "                          token or a full context (-1)\n"
            "  --ignore-eos            end-of-generation tokens do not stop generation\n"
            "  --ids                   print the generated token ids, separated by single\n"
            "                          spaces, instead of text\n"
            "  --no-bos                add no BOS to the prompt, whatever the metadata says\n"
            "  --special               control tokens written in the prompt become tokens\n"
            "  -v, --verbose           prompt ids, seed and why generation stopped, on stderr\n"
            "A full context stops generation with a note on stderr (exit status 0); a prompt\n"
            "longer than the context is an error. With an output constraint (below) the\n"
            "finish reason goes to stderr: stop (the text is complete) or length (-n or the\n"
            "context cut it: the text is then the start of a complete one).\n\n");
    gen_usage_options(f, RUN_OPTS);
}

int cmd_run(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o, "run");
    const char *prompt = NULL, *file = NULL;
    long long n_predict = -1;
    bool ignore_eos = false, ids = false, no_bos = false, special = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_parse_option(&o, RUN_OPTS, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) {
            prompt = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--n-predict")) && i + 1 < argc) {
            if (!gen_parse_int("run", a, argv[++i], -1, INT32_MAX, &n_predict)) return 2;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
        } else if (!strcmp(a, "--ids")) {
            ids = true;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--special") || !strcmp(a, "--parse-special")) {
            special = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else {
            fprintf(stderr, "ruvllm run: unknown option or missing value: '%s'\n", a);
            fprintf(stderr, "(ruvllm run --help lists the options)\n");
            return 2;
        }
    }
    if (!o.model) {
        fprintf(stderr, "ruvllm run: -m MODEL is required\n");
        return 2;
    }
    if (!prompt == !file) {
        fprintf(stderr, "ruvllm run: give the prompt with exactly one of -p TEXT and -f FILE\n");
        return 2;
    }
    if (ignore_eos && o.con_flag) {
        fprintf(stderr,
                "ruvllm run: --ignore-eos and %s cannot be combined: the constraint ends the "
                "text where it is complete\n",
                o.con_flag);
        return 2;
    }

    int rc = 1;
    char *owned = NULL;
    rl_token *toks = NULL;
    rl_model *m = NULL;
    rl_context *ctx = NULL;
    rl_sampler *smp = NULL;
    rl_detok *dt = NULL;
    gen_constraint con = {0};
    size_t len = 0;
    const char *text = prompt;
    if (file) {
        if (!(owned = gen_read_file(file, &len))) {
            fprintf(stderr, "ruvllm run: %s: %s\n", file, strerror(errno));
            return 1;
        }
        text = owned;
    } else {
        len = strlen(prompt);
    }
    if (!(m = gen_load_model(&o))) goto done;
    if ((rc = gen_constraint_init(&o, m, &con)) != 0) goto done;
    rc = 1;
    const rl_vocab *v = rl_model_vocab(m);
    size_t n_prompt = 0;
    uint32_t tflags =
        (no_bos ? 0 : RL_TOKENIZE_ADD_SPECIAL) | (special ? RL_TOKENIZE_PARSE_SPECIAL : 0);
    if (!(toks = gen_tokenize("run", v, text, len, tflags, &n_prompt))) goto done;
    if (n_prompt == 0) {
        fprintf(stderr, "ruvllm run: the prompt has no tokens: nothing to continue\n");
        goto done;
    }
    if (!(ctx = gen_new_context(&o, m, o.n_ctx, o.n_batch, 1))) goto done;
    const int32_t n_ctx = rl_context_n_ctx(ctx);
    if (n_prompt > (size_t)n_ctx) {
        fprintf(stderr,
                "ruvllm run: the prompt is %zu tokens but the context holds %d; raise -c\n",
                n_prompt, (int)n_ctx);
        goto done;
    }
    if (!(smp = gen_new_sampler(&o, m, n_ctx))) goto done;
    if (verbose) {
        fprintf(stderr, "ruvllm run: prompt ids:");
        for (size_t i = 0; i < n_prompt; i++) fprintf(stderr, " %d", (int)toks[i]);
        fprintf(stderr, "\nruvllm run: context %d, seed %llu\n", (int)n_ctx,
                (unsigned long long)rl_sampler_seed(smp));
    }
    for (size_t i = 0; i < n_prompt; i++) rl_sampler_accept(smp, toks[i]);
    if (!ids && rl_detok_create(v, RL_DETOK_NO_CLEANUP | RL_DETOK_KEEP_LEADING_SPACE, &dt) !=
                    RL_OK) {
        fprintf(stderr, "ruvllm run: out of memory\n");
        goto done;
    }

    /* plain greedy: the pick where the logits are (a GPU keeps them on the device) */
    const bool argmax = gen_plain_greedy(&o) && !con.gc;
    rl_context_set_argmax_only(ctx, argmax);
    /* else, on a GPU, the draw where the logits are when the device runs this chain */
    const bool sampled = !argmax && !con.gc && rl_context_set_sampler(ctx, smp);
    double t0 = gen_now();
    rl_batch b = rl_batch_get(toks, (int32_t)n_prompt);
    if (rl_decode(ctx, &b) != RL_OK) {
        fprintf(stderr, "ruvllm run: decoding the prompt: %s\n", rl_context_errmsg(ctx));
        goto done;
    }
    const double t_prompt = gen_now() - t0;

    gen_loop_params lp = {.n_max = (int32_t)n_predict,
                          .ignore_eos = ignore_eos,
                          .ids = ids,
                          .detok = dt,
                          .out = stdout,
                          .constraint = &con,
                          .argmax = argmax,
                          .sampled = sampled};
    gen_loop_result r = gen_loop("run", ctx, smp, &lp);
    fputc('\n', stdout);
    fflush(stdout);
    if (r.stop == GEN_STOP_ERROR) goto done;
    if (r.stop == GEN_STOP_CONTEXT)
        fprintf(stderr,
                "ruvllm run: the context is full (%d tokens): generation stopped after %d "
                "tokens (raise -c for more)\n",
                (int)n_ctx, (int)r.n_gen);
    else if (verbose && r.stop == GEN_STOP_EOG)
        fprintf(stderr, "ruvllm run: stopped at end-of-generation token %d\n", (int)r.eog);
    else if (verbose && r.stop == GEN_STOP_GRAMMAR)
        fprintf(stderr, "ruvllm run: stopped after %d tokens: the text is complete (%s)\n",
                (int)r.n_gen, o.con_flag);
    else if (verbose)
        fprintf(stderr, "ruvllm run: stopped after %d tokens (-n)\n", (int)r.n_gen);
    if (o.con_flag || verbose)
        fprintf(stderr, "ruvllm run: finish reason: %s\n", gen_finish_reason(r.stop));
    fprintf(stderr,
            "ruvllm run: prompt %zu tokens in %.2f ms (%.2f tok/s), generation %d tokens in "
            "%.2f ms (%.2f tok/s)\n",
            n_prompt, t_prompt * 1e3, t_prompt > 0 ? n_prompt / t_prompt : 0.0, (int)r.n_gen,
            r.t_gen * 1e3, r.t_gen > 0 ? r.n_gen / r.t_gen : 0.0);
    rc = 0;
done:
    gen_constraint_free(&con);
    rl_detok_free(dt);
    rl_sampler_free(smp);
    rl_context_free(ctx);
    rl_model_free(m);
    free(toks);
    free(owned);
    return rc;
}
