/*
 * cmd_gbnf_check.c - `ruvllm gbnf-check`: does a GBNF grammar accept a text?
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: ruvllm gbnf-check --grammar FILE (-p TEXT | -f FILE) [--root NAME]\n\n"
               "Check TEXT (or the bytes of FILE) against the GBNF grammar in FILE (llama.cpp's\n"
               "grammar language). Prints `accepted` (exit 0) or `rejected at byte N` (exit 1):\n"
               "N is the first byte the grammar cannot take, or the length of the text when\n"
               "the text is only the start of a sentence of the grammar. A grammar that does\n"
               "not compile prints its error (line and column) and exits 2.\n"
               "  --root NAME    start rule (default root)\n");
}

int cmd_gbnf_check(int argc, char **argv) {
    const char *grammar_path = NULL, *text = NULL, *text_path = NULL, *root = "root";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "--grammar") || !strcmp(a, "-g")) && has) {
            grammar_path = argv[++i];
        } else if (!strcmp(a, "-p") && has) {
            text = argv[++i];
        } else if (!strcmp(a, "-f") && has) {
            text_path = argv[++i];
        } else if (!strcmp(a, "--root") && has) {
            root = argv[++i];
        } else {
            fprintf(stderr, "ruvllm gbnf-check: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!grammar_path || (!text == !text_path)) {
        usage(stderr);
        return 2;
    }
    size_t glen = 0, tlen = 0;
    char *gtext = cli_read_file(grammar_path, &glen);
    if (!gtext) {
        fprintf(stderr, "ruvllm gbnf-check: cannot read %s\n", grammar_path);
        return 2;
    }
    char *tbuf = NULL;
    if (text_path) {
        tbuf = cli_read_file(text_path, &tlen);
        if (!tbuf) {
            fprintf(stderr, "ruvllm gbnf-check: cannot read %s\n", text_path);
            free(gtext);
            return 2;
        }
        text = tbuf;
    } else {
        tlen = strlen(text);
    }
    char err[512];
    rl_grammar *g = NULL;
    rl_status st = rl_grammar_compile(gtext, glen, root, NULL, NULL, &g, err, sizeof err);
    free(gtext);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm gbnf-check: %s: %s\n", grammar_path,
                err[0] ? err : rl_status_str(st));
        free(tbuf);
        return 2;
    }
    rl_grammar_matcher *m = NULL;
    int rc = 1;
    st = rl_grammar_matcher_create(g, 0, &m);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm gbnf-check: %s\n", rl_status_str(st));
        goto done;
    }
    size_t n_ok = 0;
    st = rl_grammar_matcher_accept_bytes(m, text, tlen, &n_ok);
    if (st == RL_OK && rl_grammar_matcher_can_end(m)) {
        printf("accepted\n");
        rc = 0;
    } else if (st == RL_OK || st == RL_ERR_INVALID_ARG) {
        printf("rejected at byte %zu\n", st == RL_OK ? tlen : n_ok);
        if (st == RL_OK) fprintf(stderr, "the text ends before the grammar does\n");
    } else {
        fprintf(stderr, "ruvllm gbnf-check: %s: %s\n", rl_status_str(st),
                rl_grammar_matcher_errmsg(m));
        rc = 2;
    }
done:
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    free(tbuf);
    return rc;
}
