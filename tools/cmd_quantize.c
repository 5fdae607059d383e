/*
 * cmd_quantize.c - `ruvllm quantize IN OUT TYPE [--imatrix F] [-t N] ...`: a GGUF model
 * requantized with one of llama.cpp's mixes (Q4_K_M, Q8_0, IQ2_XS, ...) through
 * rl_quantize_file; one progress line per tensor on stderr and a summary at the end.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm quantize IN OUT TYPE [--imatrix FILE] [-t N] [--allow-requantize]\n"
            "                       [--pure] [--output-tensor-type T] [--token-embedding-type T]\n"
            "\n"
            "Write the GGUF model IN to OUT with the per-tensor types llama.cpp's llama-quantize\n"
            "chooses for TYPE (same tensor order and metadata; general.file_type set).\n"
            "OUT may not be IN. Progress goes to stderr.\n"
            "\n"
            "  --imatrix FILE   importance matrix from llama-imatrix (GGUF or legacy .dat);\n"
            "                   required by IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS\n"
            "                   and Q2_K_S\n"
            "  -t N             threads (default: physical cores)\n"
            "  --allow-requantize  convert tensors that are already quantized\n"
            "  --pure           no mix rules: every quantizable tensor gets TYPE's base type\n"
            "  --output-tensor-type T, --token-embedding-type T  force those tensors' type\n"
            "\n"
            "TYPE: a mix, or a tensor type (NVFP4, MXFP4) for every quantizable tensor:\n ");
    int col = 1;
    for (size_t i = 0; rl_quantize_mix_name(i); i++) {
        const char *m = rl_quantize_mix_name(i);
        if (col + (int)strlen(m) + 1 > 78) {
            fprintf(f, "\n ");
            col = 1;
        }
        col += fprintf(f, " %s", m);
    }
    fprintf(f, "\n");
}

typedef struct stats {
    double bytes_in, bytes_out, elems;
    int64_t n_tensors;
    int n_converted, n_fallback;
} stats;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress(void *user, const rl_quantize_event *ev) {
    stats *st = user;
    char shape[96];
    int k = snprintf(shape, sizeof shape, "[");
    for (uint32_t d = 0; d < ev->n_dims && k < (int)sizeof shape - 24; d++)
        k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%" PRId64, d ? ", " : "", ev->ne[d]);
    snprintf(shape + k, sizeof shape - (size_t)k, "]");
    int64_t elems = 1;
    for (uint32_t d = 0; d < ev->n_dims; d++) elems *= ev->ne[d];
    st->elems += (double)elems;
    st->bytes_in += (double)ev->bytes_in;
    st->bytes_out += (double)ev->bytes_out;
    st->n_converted += ev->converted;
    st->n_fallback += ev->fallback;
    st->n_tensors = ev->count;
    int w = ev->count >= 1000 ? 4 : 3;
    if (ev->converted)
        fprintf(stderr,
                "[%*" PRId64 "/%*" PRId64 "] %-40s %-20s %-7s -> %-7s %9.3f -> %9.3f MiB%s\n",
                w, ev->index + 1, w, ev->count, ev->name, shape, rl_type_name(ev->type_in),
                rl_type_name(ev->type_out), ev->bytes_in / 1048576.0, ev->bytes_out / 1048576.0,
                ev->fallback ? "  (fallback: row length)" : "");
    else
        fprintf(stderr, "[%*" PRId64 "/%*" PRId64 "] %-40s %-20s %-7s    copied    %9.3f MiB\n", w,
                ev->index + 1, w, ev->count, ev->name, shape, rl_type_name(ev->type_in),
                ev->bytes_out / 1048576.0);
}

static bool type_arg(const char *opt, const char *v, rl_type *out) {
    if (v && rl_type_from_name(v, out) == RL_OK) return true;
    fprintf(stderr, "ruvllm quantize: %s: '%s' is not a tensor type\n", opt, v ? v : "");
    return false;
}

/* Whether TYPE names something rl_quantize_file accepts (a usage error otherwise). */
static bool known_type(const char *name) {
    for (size_t i = 0; rl_quantize_mix_name(i); i++)
        if (!strcasecmp(rl_quantize_mix_name(i), name)) return true;
    rl_type t;
    return rl_type_from_name(name, &t) == RL_OK;
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int npos = 0;
    rl_quantize_params p = rl_quantize_default_params();
    p.type = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--imatrix")) {
            if (!v) goto missing;
            p.imatrix_path = v;
            i++;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            char *end;
            errno = 0;
            long n = v ? strtol(v, &end, 10) : 0;
            if (!v || errno || *end || end == v || n < 1 || n > 1024) {
                fprintf(stderr, "ruvllm quantize: %s: expected a thread count 1..1024\n", a);
                return 2;
            }
            p.n_threads = (int)n;
            i++;
        } else if (!strcmp(a, "--allow-requantize")) {
            p.allow_requantize = true;
        } else if (!strcmp(a, "--pure")) {
            p.pure = true;
        } else if (!strcmp(a, "--output-tensor-type")) {
            if (!type_arg(a, v, &p.output_type)) return 2;
            i++;
        } else if (!strcmp(a, "--token-embedding-type")) {
            if (!type_arg(a, v, &p.token_embd_type)) return 2;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ruvllm quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "ruvllm quantize: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        continue;
    missing:
        fprintf(stderr, "ruvllm quantize: %s needs a value\n", a);
        return 2;
    }
    if (npos < 3) {
        usage(stderr);
        return 2;
    }
    p.type = pos[2];
    if (!known_type(p.type)) {
        fprintf(stderr, "ruvllm quantize: unknown type '%s'\n\n", p.type);
        usage(stderr);
        return 2;
    }
    stats st = {0};
    p.progress = progress;
    p.progress_user = &st;
    double t0 = now_s();
    fprintf(stderr, "ruvllm quantize: %s -> %s as %s%s%s\n", pos[0], pos[1], p.type,
            p.imatrix_path ? " with imatrix " : "", p.imatrix_path ? p.imatrix_path : "");
    char err[768];
    rl_status s = rl_quantize_file(pos[0], pos[1], &p, err, sizeof err);
    if (s != RL_OK) {
        fprintf(stderr, "ruvllm quantize: %s\n", err[0] ? err : rl_status_str(s));
        return 1;
    }
    double dt = now_s() - t0;
    fprintf(stderr, "ruvllm quantize: %d of %" PRId64 " tensors converted: %.2f MiB -> %.2f MiB "
            "(%.2f bits per weight) in %.2f s\n",
            st.n_converted, st.n_tensors, st.bytes_in / 1048576.0,
            st.bytes_out / 1048576.0, st.elems > 0 ? 8.0 * st.bytes_out / st.elems : 0.0, dt);
    if (st.n_fallback)
        fprintf(stderr, "ruvllm quantize: %d tensor(s) fell back to another type because of "
                "their row length\n", st.n_fallback);
    return 0;
}
