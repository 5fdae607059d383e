/*
 * cmd_perplexity.c - `ruvllm perplexity`: perplexity of a text file, computed as
 * llama.cpp's llama-perplexity does (rl_perplexity: non-overlapping windows of -c tokens,
 * the second half of each scored), with a progress bar on stderr and the final
 * "PPL = X +/- Y" on stdout.
 */
#include "cli.h"
#include "gen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm perplexity -m MODEL -f TEXT_FILE [-c CTX] [-b BATCH] [-t N]\n\n"
            "Perplexity of MODEL over the text, as llama.cpp's llama-perplexity computes it:\n"
            "the text tokenized once (BOS per the metadata) and cut into windows of CTX\n"
            "tokens (default 512), each evaluated from an empty cache and starting with BOS;\n"
            "the second half of each window is scored. Needs at least 2 x CTX tokens.\n"
            "Prints \"PPL = X +/- Y\" (the standard error) and the counts.\n\n");
    gen_usage_options(f, GEN_OPT_MODEL | GEN_OPT_CONTEXT);
}

typedef struct progress {
    bool tty;
    int32_t last_decile;
    double t0;
} progress;

static void on_window(const rl_perplexity_result *r, int32_t total, void *user) {
    progress *p = user;
    const double frac = (double)r->n_windows / total;
    const double el = gen_now() - p->t0;
    const double eta = r->n_windows ? el / r->n_windows * (total - r->n_windows) : 0;
    if (p->tty) {
        char bar[41];
        int fill = (int)(frac * 40);
        for (int i = 0; i < 40; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
        bar[40] = 0;
        fprintf(stderr, "\r[%s] %d/%d  PPL %.4f  ETA %.0f s ", bar, (int)r->n_windows,
                (int)total, r->ppl, eta);
        if (r->n_windows == total) fputc('\n', stderr);
    } else {
        /* no terminal: a line per tenth of the way */
        int32_t decile = (int32_t)(frac * 10);
        if (decile > p->last_decile || r->n_windows == total) {
            p->last_decile = decile;
            fprintf(stderr, "[%3.0f%%] %d/%d windows, PPL %.4f, %.1f s\n", frac * 100,
                    (int)r->n_windows, (int)total, r->ppl, el);
        }
    }
}

int cmd_perplexity(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o, "perplexity");
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_parse_option(&o, GEN_OPT_MODEL | GEN_OPT_CONTEXT, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else {
            fprintf(stderr, "ruvllm perplexity: unknown option or missing value: '%s'\n", a);
            fprintf(stderr, "(ruvllm perplexity --help lists the options)\n");
            return 2;
        }
    }
    if (!o.model || !file) {
        fprintf(stderr, "ruvllm perplexity: -m MODEL and -f TEXT_FILE are required\n");
        return 2;
    }
    if (o.n_ctx != 0 && o.n_ctx < 4) {
        fprintf(stderr, "ruvllm perplexity: -c must be at least 4, got %d\n", (int)o.n_ctx);
        return 2;
    }
    int rc = 1;
    size_t len = 0, n = 0;
    rl_token *toks = NULL;
    rl_model *m = NULL;
    char *text = gen_read_file(file, &len);
    if (!text) {
        fprintf(stderr, "ruvllm perplexity: %s: %s\n", file, strerror(errno));
        return 1;
    }
    if (!(m = gen_load_model(&o))) goto done;
    const double t_tok = gen_now();
    if (!(toks = gen_tokenize("perplexity", rl_model_vocab(m), text, len, RL_TOKENIZE_ADD_SPECIAL,
                              &n)))
        goto done;
    rl_perplexity_params pp = rl_perplexity_default_params();
    if (o.n_ctx) pp.n_ctx = o.n_ctx;
    pp.n_batch = o.n_batch;
    pp.kv_type = o.kv_type;
    pp.n_threads = o.n_threads;
    progress prog = {.tty = isatty(STDERR_FILENO), .last_decile = 0, .t0 = gen_now()};
    pp.progress = on_window;
    pp.user = &prog;
    fprintf(stderr, "ruvllm perplexity: %zu tokens (tokenized in %.2f s), %zu windows of %d\n", n,
            prog.t0 - t_tok, n / (size_t)pp.n_ctx, (int)pp.n_ctx);
    rl_perplexity_result r;
    char err[512] = "";
    rl_status st = rl_perplexity(m, toks, n, &pp, &r, err, sizeof err);
    if (st != RL_OK) {
        if (prog.tty && r.n_windows) fputc('\n', stderr);
        fprintf(stderr, "ruvllm perplexity: %s\n", err[0] ? err : rl_status_str(st));
        goto done;
    }
    const double el = gen_now() - prog.t0;
    printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    printf("windows %d of %d tokens, %lld tokens scored, %.2f s (%.1f tokens/s)\n",
           (int)r.n_windows, (int)pp.n_ctx, (long long)r.n_scored, el,
           el > 0 ? (double)r.n_windows * pp.n_ctx / el : 0.0);
    rc = 0;
done:
    rl_model_free(m);
    free(toks);
    free(text);
    return rc;
}
