/*
 * bench_tokenize.c - tokenizer speed: 1 MiB of English (testdata/text/gpl-3.txt repeated)
 * tokenized with each vocabulary given (default: the Llama 3 vocabulary), on one thread.
 * Prints JSON: bytes, tokens, best-of-N seconds, MB/s, and the target (0.5 s for
 * 1 MB with Llama 3). Also the time of short calls (a 25-byte prompt), which shows the
 * fixed cost of a call.
 *
 * usage: bench_tokenize [--reps N] [VOCAB.gguf ...]   (data from RUVLLM_TESTDATA or
 * ../shared)
 */
#include "ruvllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = len > 0 ? (size_t)len : 0;
    return b;
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    const char *root = getenv("RUVLLM_TESTDATA");
    if (!root || !*root) root = "../shared";
    int reps = 5;
    const char *paths[64];
    int np = 0;
    char def[1024];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (np < 64)
            paths[np++] = argv[i];
    }
    if (np == 0) {
        snprintf(def, sizeof def, "%s/models/vocab/ggml-vocab-llama-bpe.gguf", root);
        paths[np++] = def;
    }
    if (reps < 1) reps = 1;

    char tpath[1024];
    snprintf(tpath, sizeof tpath, "%s/testdata/text/gpl-3.txt", root);
    size_t src_n;
    char *src = read_all(tpath, &src_n);
    if (!src || !src_n) {
        fprintf(stderr, "bench_tokenize: cannot read %s\n", tpath);
        return 1;
    }
    const size_t n = (size_t)1 << 20;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++) text[i] = src[i % src_n];
    rl_token *toks = malloc(n * sizeof(rl_token));

    printf("{\"bench\": \"tokenize\", \"text\": \"gpl-3.txt repeated\", \"bytes\": %zu, "
           "\"threads\": 1, \"reps\": %d, \"target_s_llama3_1MB\": 0.5, \"results\": [",
           n, reps);
    int rc = 0;
    for (int k = 0; k < np; k++) {
        rl_gguf *g;
        rl_vocab *v;
        char err[256];
        double t0 = now();
        if (rl_gguf_open(paths[k], &g, err, sizeof err) != RL_OK ||
            rl_vocab_load(g, &v, err, sizeof err) != RL_OK) {
            fprintf(stderr, "bench_tokenize: %s: %s\n", paths[k], err);
            rc = 1;
            continue;
        }
        double t_load = now() - t0;
        size_t nt = 0;
        double best = 1e30;
        rl_status st = RL_OK;
        for (int r = 0; r < reps && st == RL_OK; r++) {
            double a = now();
            st = rl_tokenize(v, text, n, 0, toks, n, &nt);
            double b = now() - a;
            if (b < best) best = b;
        }
        const char *shortp = "Hello world, how are you?";
        size_t ns;
        int calls = 20000;
        double a = now();
        for (int r = 0; r < calls; r++) rl_tokenize(v, shortp, strlen(shortp), 0, toks, n, &ns);
        double t_short = (now() - a) / calls;
        printf("%s\n  {\"vocab\": ", k ? "," : "");
        const char *base = strrchr(paths[k], '/');
        json_str(base ? base + 1 : paths[k]);
        printf(", \"pre\": ");
        json_str(rl_vocab_pre_name(v));
        printf(", \"status\": ");
        json_str(rl_status_str(st));
        printf(", \"load_s\": %.4f, \"tokens\": %zu, \"seconds\": %.4f, \"MB_per_s\": %.2f, "
               "\"tokens_per_s\": %.0f, \"short_call_us\": %.2f}",
               t_load, nt, best, (double)n / best / 1e6, (double)nt / best, t_short * 1e6);
        if (st != RL_OK) rc = 1;
        rl_vocab_free(v);
        rl_gguf_free(g);
    }
    printf("\n]}\n");
    free(text);
    free(toks);
    free(src);
    return rc;
}
