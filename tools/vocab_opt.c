/*
 * vocab_opt.c - what the commands that take `-m VOCAB.gguf` and input files share: opening a
 * GGUF for its vocabulary alone (no weights), and reading a whole file into memory.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_open_vocab(const char *who, const char *path, rl_gguf **g, rl_vocab **v) {
    char err[512];
    *g = NULL;
    *v = NULL;
    rl_status st = rl_gguf_open(path, g, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "%s: %s: %s\n", who, path, err[0] ? err : rl_status_str(st));
        return 1;
    }
    st = rl_vocab_load(*g, v, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "%s: %s: vocabulary: %s\n", who, path, err[0] ? err : rl_status_str(st));
        rl_gguf_free(*g);
        *g = NULL;
        return 1;
    }
    return 0;
}

char *cli_read_stream(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    while (b) {
        len += fread(b + len, 1, cap - len, f);
        if (len < cap) break;
        char *nb = realloc(b, (cap *= 2) + 1);
        if (!nb) free(b);
        b = nb;
    }
    if (!b) {
        errno = ENOMEM;
        return NULL;
    }
    if (ferror(f)) {
        free(b);
        errno = EIO;
        return NULL;
    }
    b[len] = 0;
    if (n) *n = len;
    return b;
}

char *cli_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = cli_read_stream(f, n);
    int e = errno;
    fclose(f);
    errno = e;
    return b;
}

char *cli_read_input(const char *path, size_t *n) {
    return strcmp(path, "-") ? cli_read_file(path, n) : cli_read_stream(stdin, n);
}
