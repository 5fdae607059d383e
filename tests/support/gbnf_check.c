/*
 * gbnf_check.c - the grammar checks of gbnf_check.h.
 */
#include "gbnf_check.h"

#include "test.h"

rl_grammar *rl_test_compile_gbnf(const char *text) {
    rl_grammar *g = NULL;
    char err[512];
    rl_status st = rl_grammar_compile(text, strlen(text), "root", NULL, NULL, &g, err, sizeof err);
    CHECKF(st == RL_OK, "grammar does not compile: %s\n%s", err, text);
    return g;
}

bool rl_test_gbnf_accepts(const rl_grammar *g, const char *text, size_t len) {
    rl_grammar_matcher *m = NULL;
    if (rl_grammar_matcher_create(g, 0, &m) != RL_OK) return false;
    size_t n_ok = 0;
    bool ok = rl_grammar_matcher_accept_bytes(m, text, len, &n_ok) == RL_OK &&
              rl_grammar_matcher_can_end(m);
    rl_grammar_matcher_free(m);
    return ok;
}

void rl_test_gbnf_expect(const char *what, const char *gbnf, const char *const *accept,
                         int n_accept, const char *const *reject, int n_reject) {
    rl_grammar *g = rl_test_compile_gbnf(gbnf);
    for (int j = 0; g && j < n_accept && accept[j]; j++)
        CHECKF(rl_test_gbnf_accepts(g, accept[j], strlen(accept[j])), "%s: should accept %s\n%s",
               what, accept[j], gbnf);
    for (int j = 0; g && j < n_reject && reject[j]; j++)
        CHECKF(!rl_test_gbnf_accepts(g, reject[j], strlen(reject[j])), "%s: should reject %s\n%s",
               what, reject[j], gbnf);
    rl_grammar_free(g);
}
