/*
 * cmd_synth.c - `ruvllm synth --shape NAME --type TYPE -o OUT [--vocab VOCAB.gguf]
 * [--seed S] [-t N]`: a model with random weights at the shape of a real one, written
 * through rl_synth_model, for benchmarks without a download.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm synth --shape NAME --type TYPE -o OUT [--vocab VOCAB.gguf] [--seed S]\n"
            "                    [-t N] [-q]\n"
            "\n"
            "Write a model with random weights (deterministic for the seed, default 42) at the\n"
            "shape of a real one: llama.cpp's tensor names, shapes and metadata, weights of\n"
            "TYPE (a mix such as Q4_K_M or a type such as F16, as `ruvllm quantize` takes).\n"
            "The tokenizer is copied from VOCAB.gguf (all tokenizer.* keys; its token count\n"
            "sets the vocabulary size), or is a built-in byte-level one padded to the shape's\n"
            "vocabulary size. -q: no per-tensor progress lines.\n"
            "\n"
            "shapes:\n");
    const char *desc;
    for (size_t i = 0; rl_synth_shape_name(i, &desc); i++)
        fprintf(f, "  %-14s %s\n", rl_synth_shape_name(i, NULL), desc);
}

typedef struct stats {
    double bytes, elems;
    int64_t n;
    bool quiet;
} stats;

static void progress(void *user, const rl_quantize_event *ev) {
    stats *st = user;
    int64_t elems = 1;
    for (uint32_t d = 0; d < ev->n_dims; d++) elems *= ev->ne[d];
    st->elems += (double)elems;
    st->bytes += (double)ev->bytes_out;
    st->n = ev->count;
    if (!st->quiet)
        fprintf(stderr, "[%4" PRId64 "/%4" PRId64 "] %-40s %-7s %10.3f MiB\n", ev->index + 1,
                ev->count, ev->name, rl_type_name(ev->type_out), ev->bytes_out / 1048576.0);
}

int cmd_synth(int argc, char **argv) {
    rl_synth_params p = rl_synth_default_params();
    p.shape = NULL;
    p.type = NULL;
    const char *out = NULL;
    stats st = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = !strcmp(a, "--shape") || !strcmp(a, "--type") || !strcmp(a, "-o") ||
                     !strcmp(a, "--vocab") || !strcmp(a, "--seed") || !strcmp(a, "-t");
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-q")) {
            st.quiet = true;
            continue;
        } else if (!takes) {
            fprintf(stderr, "ruvllm synth: %s '%s'\n", a[0] == '-' ? "unknown option"
                                                                   : "unexpected argument", a);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "ruvllm synth: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--shape")) p.shape = v;
        else if (!strcmp(a, "--type")) p.type = v;
        else if (!strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--vocab")) p.vocab_path = v;
        else {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 0);
            bool seed = !strcmp(a, "--seed");
            if (errno || *end || end == v || v[0] == '-' || (!seed && (n < 1 || n > 1024))) {
                fprintf(stderr, "ruvllm synth: %s: expected %s\n", a,
                        seed ? "an unsigned integer" : "a thread count 1..1024");
                return 2;
            }
            if (seed) p.seed = n;
            else p.n_threads = (int)n;
        }
    }
    if (!p.shape || !p.type || !out) {
        fprintf(stderr, "ruvllm synth: --shape, --type and -o are required\n\n");
        usage(stderr);
        return 2;
    }
    bool known = false;
    for (size_t i = 0; rl_synth_shape_name(i, NULL); i++)
        known |= !strcmp(rl_synth_shape_name(i, NULL), p.shape);
    if (!known) {
        fprintf(stderr, "ruvllm synth: unknown shape '%s'\n\n", p.shape);
        usage(stderr);
        return 2;
    }
    p.progress = progress;
    p.progress_user = &st;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[768];
    rl_status s = rl_synth_model(out, &p, err, sizeof err);
    if (s != RL_OK) {
        fprintf(stderr, "ruvllm synth: %s\n", err[0] ? err : rl_status_str(s));
        return s == RL_ERR_INVALID_ARG && strstr(err, "unknown type") ? 2 : 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "ruvllm synth: %s: %s as %s, %" PRId64 " tensors, %.0f weights, %.2f MiB "
            "(%.2f bits per weight), seed %" PRIu64 ", in %.2f s\n", out, p.shape, p.type, st.n,
            st.elems, st.bytes / 1048576.0, st.elems > 0 ? 8.0 * st.bytes / st.elems : 0.0,
            p.seed, dt);
    return 0;
}
