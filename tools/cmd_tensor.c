/*
 * cmd_tensor.c - `ruvllm tensor FILE NAME --f32`: one tensor of a GGUF file, dequantized
 * through rl_dequantize, as raw little-endian float32 on stdout (ne[0] fastest), so that
 * any tool can compare it with another implementation's output.
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK_FLOATS ((int64_t)1 << 20) /* floats converted per step (whole rows) */

static void usage(FILE *f) {
    fprintf(f, "usage: ruvllm tensor FILE NAME --f32\n\n"
               "Write tensor NAME of the GGUF file FILE to stdout, dequantized to raw\n"
               "little-endian float32 (ne[0] fastest; 4 bytes per element).\n");
}

int cmd_tensor(int argc, char **argv) {
    const char *path = NULL, *name = NULL;
    bool f32 = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--f32")) f32 = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "ruvllm tensor: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) path = argv[i];
        else if (!name) name = argv[i];
        else {
            fprintf(stderr, "ruvllm tensor: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!path || !name) {
        usage(stderr);
        return 2;
    }
    if (!f32) {
        fprintf(stderr, "ruvllm tensor: give the output format: --f32 (the only one so far)\n");
        return 2;
    }
    if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "ruvllm tensor: refusing to write binary data to a terminal; redirect "
                        "stdout to a file or a pipe\n");
        return 1;
    }

    rl_gguf *g = NULL;
    char err[512];
    rl_status s = rl_gguf_open(path, &g, err, sizeof err);
    if (s != RL_OK) {
        fprintf(stderr, "ruvllm tensor: %s: %s\n", path, err[0] ? err : rl_status_str(s));
        return 1;
    }
    int rc = 1;
    float *buf = NULL;
    rl_gguf_tensor_info ti;
    int64_t idx = rl_gguf_find_tensor(g, name);
    if (idx < 0 || rl_gguf_tensor(g, idx, &ti) != RL_OK) {
        fprintf(stderr, "ruvllm tensor: %s: no tensor named '%s'\n", path, name);
        goto done;
    }
    size_t row_bytes;
    if (rl_type_row_bytes(ti.type, ti.ne[0], &row_bytes) != RL_OK) {
        fprintf(stderr, "ruvllm tensor: %s: bad row of %" PRId64 " elements\n", name, ti.ne[0]);
        goto done;
    }
    int64_t rows = ti.ne[1] * ti.ne[2] * ti.ne[3];
    int64_t rows_per = ti.ne[0] ? CHUNK_FLOATS / ti.ne[0] : 1;
    if (rows_per < 1) rows_per = 1;
    if (ti.ne[0] > 0 && rows > 0) {
        int64_t n = (rows_per < rows ? rows_per : rows) * ti.ne[0];
        buf = malloc((size_t)n * sizeof(float));
        if (!buf) {
            fprintf(stderr, "ruvllm tensor: out of memory\n");
            goto done;
        }
    }
    for (int64_t r = 0; ti.ne[0] > 0 && r < rows; r += rows_per) {
        int64_t k = rows - r < rows_per ? rows - r : rows_per;
        const unsigned char *src = (const unsigned char *)ti.data + (size_t)r * row_bytes;
        s = rl_dequantize(ti.type, src, buf, k * ti.ne[0]);
        if (s != RL_OK) {
            fprintf(stderr, "ruvllm tensor: cannot dequantize '%s' of type %s: %s\n", name,
                    rl_type_name(ti.type), rl_status_str(s));
            goto done;
        }
        if (fwrite(buf, sizeof(float), (size_t)(k * ti.ne[0]), stdout) != (size_t)(k * ti.ne[0])) {
            fprintf(stderr, "ruvllm tensor: cannot write the output\n");
            goto done;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "ruvllm tensor: cannot write the output\n");
        goto done;
    }
    rc = 0;
done:
    free(buf);
    rl_gguf_free(g);
    return rc;
}
