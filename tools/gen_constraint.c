/*
 * gen_constraint.c - the output constraint of the commands that generate (see gen.h):
 * --grammar FILE, --json-schema FILE, --regex RE, --json-object. Each becomes GBNF text
 * (rl_schema_to_gbnf, rl_regex_to_gbnf, rl_json_object_gbnf), compiled once against the
 * model's vocabulary; the generation loop samples through rl_grammar_constraint.
 */
#include "gen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The flags, canonical name first, and whether they take a value. */
static const struct {
    const char *flag, *alias;
    bool value;
} k_flags[] = {
    {"--grammar", "--grammar-file", true},
    {"--json-schema", "--json-schema-file", true},
    {"--regex", NULL, true},
    {"--json-object", NULL, false},
};

int gen_parse_constraint(gen_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof k_flags / sizeof k_flags[0]; k++) {
        if (strcmp(a, k_flags[k].flag) && (!k_flags[k].alias || strcmp(a, k_flags[k].alias)))
            continue;
        const char *val = NULL;
        if (k_flags[k].value) {
            if (*i + 1 >= argc) {
                fprintf(stderr, "ruvllm %s: %s needs a value\n", o->cmd, a);
                return -1;
            }
            val = argv[++*i];
        }
        if (o->con_flag == k_flags[k].flag) {
            fprintf(stderr, "ruvllm %s: %s is given twice\n", o->cmd, k_flags[k].flag);
            return -1;
        }
        if (o->con_flag) {
            fprintf(stderr, "ruvllm %s: %s and %s cannot be combined: give one output constraint\n",
                    o->cmd, o->con_flag, k_flags[k].flag);
            return -1;
        }
        o->con_flag = k_flags[k].flag;
        o->con_arg = val;
        return 1;
    }
    return 0;
}

void gen_usage_constraint(FILE *f) {
    fprintf(f, "output constraint (at most one):\n"
               "  --grammar FILE          the text follows the GBNF grammar in FILE (llama.cpp's\n"
               "                          grammar language, start rule root)\n"
               "  --json-schema FILE      the text is JSON valid against the JSON Schema in FILE\n"
               "  --regex RE              the text matches the regular expression RE entirely\n"
               "                          (ECMAScript syntax, the subset schemas use)\n"
               "  --json-object           the text is one JSON object\n"
               "  End-of-generation tokens come only where the text is complete; generation\n"
               "  stops when nothing can follow. A bad grammar, schema or regex: exit 2.\n");
}

const char *gen_finish_reason(gen_stop s) {
    switch (s) {
    case GEN_STOP_EOG:
    case GEN_STOP_GRAMMAR:
        return "stop";
    case GEN_STOP_LENGTH:
    case GEN_STOP_CONTEXT:
        return "length";
    default:
        return "error";
    }
}

void gen_constraint_free(gen_constraint *c) {
    rl_grammar_constraint_free(c->gc);
    rl_grammar_matcher_free(c->m);
    rl_grammar_free(c->g);
    rl_grammar_vocab_free(c->gv);
    memset(c, 0, sizeof *c);
}

int gen_constraint_init(const gen_opts *o, const rl_model *m, gen_constraint *c) {
    memset(c, 0, sizeof *c);
    if (!o->con_flag) return 0;
    const char *cmd = o->cmd, *flag = o->con_flag;
    char err[1024] = "";
    char *file = NULL, *gbnf = NULL;
    const char *text = NULL;
    size_t len = 0;
    rl_status st = RL_OK;
    int rc = 1;
    if (!strcmp(flag, "--json-object")) {
        text = rl_json_object_gbnf();
        len = strlen(text);
    } else if (!strcmp(flag, "--regex")) {
        st = rl_regex_to_gbnf(o->con_arg, strlen(o->con_arg), 0, &gbnf, err, sizeof err);
    } else {
        if (!(file = gen_read_file(o->con_arg, &len))) {
            fprintf(stderr, "ruvllm %s: %s %s: %s\n", cmd, flag, o->con_arg, strerror(errno));
            return 1;
        }
        if (!strcmp(flag, "--json-schema"))
            st = rl_schema_to_gbnf(file, len, 0, &gbnf, err, sizeof err);
        else
            text = file;
    }
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm %s: %s %s: %s\n", cmd, flag, o->con_arg,
                err[0] ? err : rl_status_str(st));
        rc = st == RL_ERR_NOMEM ? 1 : 2;
        goto fail;
    }
    if (gbnf) {
        text = gbnf;
        len = strlen(gbnf);
    }
    if ((st = rl_grammar_vocab_create(rl_model_vocab(m), &c->gv)) != RL_OK) {
        fprintf(stderr, "ruvllm %s: indexing the vocabulary: %s\n", cmd, rl_status_str(st));
        goto fail;
    }
    st = rl_grammar_compile(text, len, NULL, c->gv, NULL, &c->g, err, sizeof err);
    if (st != RL_OK) {
        /* for a schema or a regex this is the grammar made from it (a limit, say) */
        fprintf(stderr, "ruvllm %s: %s%s%s%s: %s\n", cmd, gbnf ? "the grammar of " : "", flag,
                o->con_arg ? " " : "", o->con_arg ? o->con_arg : "",
                err[0] ? err : rl_status_str(st));
        rc = st == RL_ERR_NOMEM ? 1 : 2;
        goto fail;
    }
    if ((st = rl_grammar_matcher_create(c->g, 0, &c->m)) != RL_OK ||
        (st = rl_grammar_constraint_create(c->m, rl_model_n_vocab(m), &c->gc)) != RL_OK) {
        fprintf(stderr, "ruvllm %s: %s: %s\n", cmd, flag,
                c->m && rl_grammar_matcher_errmsg(c->m)[0] ? rl_grammar_matcher_errmsg(c->m)
                                                           : rl_status_str(st));
        goto fail;
    }
    rl_free_string(gbnf);
    free(file);
    return 0;
fail:
    rl_free_string(gbnf);
    free(file);
    gen_constraint_free(c);
    return rc;
}
