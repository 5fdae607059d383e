/*
 * cmd_schema2gbnf.c - `ruvllm schema2gbnf FILE.json`: the GBNF grammar a JSON Schema
 * compiles to (rl_schema_to_gbnf), printed to stdout, for `gbnf-check`, `run --grammar`
 * or reading. What the schema asks and a grammar cannot express is an error (exit 1)
 * naming the keyword and its place, unless --lenient, which drops it and lists it as
 * "# warning:" lines at the top of the grammar (also echoed to stderr).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm schema2gbnf [options] FILE.json   (- reads stdin)\n\n"
            "Print the GBNF grammar (start rule root) that JSON Schema FILE.json compiles to.\n\n"
            "options:\n"
            "  --lenient            drop what a grammar cannot express, with warnings\n"
            "  --extra-properties   objects without \"additionalProperties\" allow more\n"
            "                       properties (the specification's default; default: none)\n"
            "  --no-type-inference  a schema without \"type\" allows every type\n"
            "  --compact            no whitespace between JSON tokens\n");
}

int cmd_schema2gbnf(int argc, char **argv) {
    const char *path = NULL;
    uint32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--lenient"))
            flags |= RL_SCHEMA_LENIENT;
        else if (!strcmp(a, "--extra-properties"))
            flags |= RL_SCHEMA_EXTRA_PROPERTIES;
        else if (!strcmp(a, "--no-type-inference"))
            flags |= RL_SCHEMA_NO_TYPE_INFERENCE;
        else if (!strcmp(a, "--compact"))
            flags |= RL_SCHEMA_COMPACT;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ruvllm schema2gbnf: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "ruvllm schema2gbnf: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    size_t len = 0;
    char *text = cli_read_input(path, &len);
    if (!text) {
        fprintf(stderr, "ruvllm schema2gbnf: cannot read %s\n", path);
        return 1;
    }
    char *gbnf = NULL;
    char err[1024];
    rl_status st = rl_schema_to_gbnf(text, len, flags, &gbnf, err, sizeof err);
    free(text);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm schema2gbnf: %s: %s\n", path, err[0] ? err : rl_status_str(st));
        return 1;
    }
    /* warnings come first, as comments; repeat them on stderr */
    for (const char *l = gbnf; !strncmp(l, "# warning: ", 11);) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        fprintf(stderr, "ruvllm schema2gbnf: %.*s\n", (int)(n - 2), l + 2);
        if (!e) break;
        l = e + 1;
    }
    fputs(gbnf, stdout);
    rl_free_string(gbnf);
    return fflush(stdout) == 0 ? 0 : 1;
}
