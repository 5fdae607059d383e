/*
 * gbnf_check.h - the grammar engine as the judge of the tests that write GBNF (regular
 * expressions, JSON Schema): compile a grammar text, and whether a text is a whole
 * sentence of it.
 */
#ifndef RL_TEST_GBNF_CHECK_H
#define RL_TEST_GBNF_CHECK_H

#include "ruvllm.h"

#include <stdbool.h>
#include <stddef.h>

/* text compiled with start rule root; NULL (a failed CHECK naming the error) when it does
 * not compile. */
rl_grammar *rl_test_compile_gbnf(const char *text);
/* Whether g takes all of text[0..len) and can end there. */
bool rl_test_gbnf_accepts(const rl_grammar *g, const char *text, size_t len);
/* CHECK that the grammar gbnf accepts each of accept[0..n_accept) and rejects each of
 * reject[0..n_reject) (a NULL entry ends a list early); what names the case in messages. */
void rl_test_gbnf_expect(const char *what, const char *gbnf, const char *const *accept,
                         int n_accept, const char *const *reject, int n_reject);

#endif /* RL_TEST_GBNF_CHECK_H */
