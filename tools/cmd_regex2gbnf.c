/*
 * cmd_regex2gbnf.c - `ruvllm regex2gbnf RE`: the GBNF grammar for texts that the
 * ECMAScript regular expression RE matches entirely (rl_regex_to_gbnf), printed to stdout.
 * Constructs a grammar cannot express (backreferences, lookaround, \b, ...) are an error
 * with their byte offset (exit 1).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: ruvllm regex2gbnf RE\n\n"
               "Print the GBNF grammar (start rule root) for texts the regular expression RE\n"
               "(ECMAScript syntax, as in JSON Schema \"pattern\") matches entirely.\n"
               "Use -- before an RE that starts with '-'.\n");
}

int cmd_regex2gbnf(int argc, char **argv) {
    const char *re = NULL;
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && !strcmp(a, "--")) {
            dashdash = true;
        } else if (!dashdash && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            usage(stdout);
            return 0;
        } else if (!dashdash && a[0] == '-' && a[1]) {
            fprintf(stderr, "ruvllm regex2gbnf: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!re) {
            re = a;
        } else {
            fprintf(stderr, "ruvllm regex2gbnf: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!re) {
        usage(stderr);
        return 2;
    }
    char *gbnf = NULL;
    char err[512];
    rl_status st = rl_regex_to_gbnf(re, strlen(re), 0, &gbnf, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm regex2gbnf: %s\n", err[0] ? err : rl_status_str(st));
        return 1;
    }
    fputs(gbnf, stdout);
    rl_free_string(gbnf);
    return fflush(stdout) == 0 ? 0 : 1;
}
