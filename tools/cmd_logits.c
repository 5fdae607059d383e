/*
 * cmd_logits.c - `ruvllm logits`: the logits of the last prompt position, for testing and
 * debugging against other implementations. Floats are printed with 9 significant digits
 * (%.9g), which round-trip a float32 exactly.
 */
#include "cli.h"
#include "gen.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm logits -m MODEL (-p TEXT | -f FILE) [--top K] [--all] [--json]\n\n"
            "Decode the prompt (tokenized as `ruvllm tokenize` does) and print the logits of\n"
            "its last position: the K highest (default 10), descending, ties to the lower id.\n"
            "  --top K        how many of the highest to show (0..n_vocab)\n"
            "  --all          every logit too (text: one per line after the top list)\n"
            "  --json         {\"n_vocab\": N, \"ids\": [prompt ids], \"top\": [[id, logit], ...]}\n"
            "                 plus \"logits\": [...] with --all\n"
            "  --no-bos       add no BOS, whatever the metadata says\n"
            "  --special      control tokens written in the prompt become tokens\n\n");
    gen_usage_options(f, GEN_OPT_MODEL);
    fprintf(f, "  --kv-type T             KV cache type: f16 (default), f32 or q8_0\n");
}

/* Order ids by logit, descending; equal logits by id, ascending. */
static const float *g_sort_logits;
static int by_logit(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const float lx = g_sort_logits[x], ly = g_sort_logits[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* A float as JSON: %.9g, null for values JSON cannot hold. */
static void json_float(FILE *f, float x) {
    if (isfinite(x))
        fprintf(f, "%.9g", (double)x);
    else
        fputs("null", f);
}

int cmd_logits(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o, "logits");
    const char *prompt = NULL, *file = NULL;
    long long top = 10;
    bool all = false, json = false, no_bos = false, special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_parse_option(&o, GEN_OPT_MODEL, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) {
            prompt = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "--top") && i + 1 < argc) {
            if (!gen_parse_int("logits", a, argv[++i], 0, INT32_MAX, &top)) return 2;
        } else if (!strcmp(a, "--kv-type")) {
            if (gen_parse_option(&o, GEN_OPT_CONTEXT, argc, argv, &i) < 0) return 2;
        } else if (!strcmp(a, "--all")) {
            all = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--special") || !strcmp(a, "--parse-special")) {
            special = true;
        } else {
            fprintf(stderr, "ruvllm logits: unknown option or missing value: '%s'\n", a);
            fprintf(stderr, "(ruvllm logits --help lists the options)\n");
            return 2;
        }
    }
    if (!o.model) {
        fprintf(stderr, "ruvllm logits: -m MODEL is required\n");
        return 2;
    }
    if (!prompt == !file) {
        fprintf(stderr, "ruvllm logits: give the prompt with exactly one of -p TEXT and -f FILE\n");
        return 2;
    }

    int rc = 1;
    char *owned = NULL;
    rl_token *toks = NULL;
    int32_t *order = NULL;
    rl_model *m = NULL;
    rl_context *ctx = NULL;
    size_t len = 0;
    const char *text = prompt;
    if (file) {
        if (!(owned = gen_read_file(file, &len))) {
            fprintf(stderr, "ruvllm logits: %s: %s\n", file, strerror(errno));
            return 1;
        }
        text = owned;
    } else {
        len = strlen(prompt);
    }
    if (!(m = gen_load_model(&o))) goto done;
    size_t n = 0;
    uint32_t tflags =
        (no_bos ? 0 : RL_TOKENIZE_ADD_SPECIAL) | (special ? RL_TOKENIZE_PARSE_SPECIAL : 0);
    if (!(toks = gen_tokenize("logits", rl_model_vocab(m), text, len, tflags, &n))) goto done;
    if (n == 0 || n > INT32_MAX) {
        fprintf(stderr, "ruvllm logits: the prompt has %s tokens\n", n ? "too many" : "no");
        goto done;
    }
    /* a context just large enough for the prompt */
    if (!(ctx = gen_new_context(&o, m, (int32_t)n, n < 512 ? (int32_t)n : 512, 1))) goto done;
    rl_batch b = rl_batch_get(toks, (int32_t)n);
    if (rl_decode(ctx, &b) != RL_OK) {
        fprintf(stderr, "ruvllm logits: decode: %s\n", rl_context_errmsg(ctx));
        goto done;
    }
    const float *lg = rl_get_logits(ctx, -1);
    const int32_t nv = rl_model_n_vocab(m);
    if (!lg || !(order = malloc(sizeof(int32_t) * (size_t)nv))) {
        fprintf(stderr, "ruvllm logits: no logits\n");
        goto done;
    }
    for (int32_t i = 0; i < nv; i++) order[i] = i;
    g_sort_logits = lg;
    qsort(order, (size_t)nv, sizeof order[0], by_logit);
    if (top > nv) top = nv;

    if (json) {
        printf("{\"n_vocab\": %d, \"ids\": [", (int)nv);
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", (int)toks[i]);
        printf("], \"top\": [");
        for (long long k = 0; k < top; k++) {
            printf(k ? ", [%d, " : "[%d, ", (int)order[k]);
            json_float(stdout, lg[order[k]]);
            putchar(']');
        }
        putchar(']');
        if (all) {
            printf(", \"logits\": [");
            for (int32_t i = 0; i < nv; i++) {
                if (i) fputs(", ", stdout);
                json_float(stdout, lg[i]);
            }
            putchar(']');
        }
        printf("}\n");
    } else {
        printf("n_vocab %d\nids", (int)nv);
        for (size_t i = 0; i < n; i++) printf(" %d", (int)toks[i]);
        printf("\ntop %lld (rank id logit):\n", top);
        for (long long k = 0; k < top; k++)
            printf("%lld %d %.9g\n", k + 1, (int)order[k], (double)lg[order[k]]);
        if (all) {
            printf("logits (id logit):\n");
            for (int32_t i = 0; i < nv; i++) printf("%d %.9g\n", (int)i, (double)lg[i]);
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "ruvllm logits: writing the output failed\n");
        goto done;
    }
    rc = 0;
done:
    free(order);
    rl_context_free(ctx);
    rl_model_free(m);
    free(toks);
    free(owned);
    return rc;
}
