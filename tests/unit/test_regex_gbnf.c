/* Tests of regular expressions to GBNF (rl_regex_to_gbnf): the rules patterns give, texts
 * they accept and reject, errors with offsets for what a grammar cannot express, limits,
 * and a differential test: thousands of random patterns of the subset against PCRE2 on
 * random texts (full match), with the grammar engine as the matcher. */
#include "gbnf_check.h"
#include "test.h"

#include "ruvllm.h"
#include "util/util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static char g_err[512];

static char *to_gbnf(const char *re, rl_status *st) {
    char *out = NULL;
    *st = rl_regex_to_gbnf(re, strlen(re), 0, &out, g_err, sizeof g_err);
    return out;
}

typedef struct rcase {
    const char *re;
    const char *root; /* the root rule's body, or NULL */
    const char *accept[6];
    const char *reject[6];
} rcase;

static const rcase CASES[] = {
    {"abc", "\"abc\"", {"abc"}, {"ab", "abcd", ""}},
    {"^[a-z]+$", "[a-z]+", {"a", "xyz"}, {"", "A", "a1"}},
    {"a|b|", "(\"a\" | \"b\")?", {"a", "b", ""}, {"ab"}},
    {"(ab|cd){2,3}", "root-1{2,3}", {"abab", "cdabcd"}, {"ab", "abababab"}},
    {"\\d{3}-\\d{4}", "[0-9]{3} \"-\" [0-9]{4}", {"555-1234"}, {"55-1234", "555-12a4"}},
    {"[^a]", "[^a]", {"b", "\n", "\xc3\xa9"}, {"a", ""}},
    {".", "[^\\n\\r\\u2028\\u2029]", {"x", "\xf0\x9f\x98\x80"}, {"\n", "\r", "\xe2\x80\xa8"}},
    {"[^]", ".", {"\n", "a"}, {""}},
    {"(a*)*b", "(\"a\"+)* \"b\"", {"b", "aab"}, {"a"}},
    {"(a?b?)+c", NULL, {"c", "abc", "babac"}, {"ab", "ca"}},
    {"x{,3}", "\"x{,3}\"", {"x{,3}"}, {"xxx"}},
    {"a{2}?b+?", "\"a\"{2} \"b\"+", {"aab", "aabbb"}, {"ab"}},
    {"[\\w-]+", NULL, {"a_b-9"}, {"a b", ""}},
    {"\\u00e9\\x41\\u{1F600}\\t",
     NULL,
     {"\xc3\xa9"
      "A\xf0\x9f\x98\x80\t"},
     {"e"}},
    {"[a-c-e]", NULL, {"a", "-", "e"}, {"d"}},
    {"\\s", NULL, {" ", "\t", "\xc2\xa0", "\xe3\x80\x80"}, {"a"}},
    {"[\\S]", NULL, {"a"}, {" "}},
    {"\\.\\*\\(\\)\\[\\]\\{\\}\\|\\\\\\/", NULL, {".*()[]{}|\\/"}, {"a"}},
    {"\"q\"", "\"\\\"q\\\"\"", {"\"q\""}, {"q"}},
    {"(?:a|b)(?<n>c)", NULL, {"ac", "bc"}, {"c"}},
    {"^$", "\"\"", {""}, {"a"}},
    {"", "\"\"", {""}, {"a"}},
    {"[]a|b", NULL, {"b"}, {"a"}},
};

TEST(cases) {
    for (size_t i = 0; i < RL_ARRAY_LEN(CASES); i++) {
        const rcase *k = &CASES[i];
        rl_status st;
        char *text = to_gbnf(k->re, &st);
        CHECKF(st == RL_OK, "%s: %s", k->re, g_err);
        if (!text) continue;
        if (k->root) {
            char want[256];
            snprintf(want, sizeof want, "root ::= %s\n", k->root);
            CHECKF(!strncmp(text, want, strlen(want)), "%s:\n%s\nwant\n%s", k->re, text, want);
        }
        rl_test_gbnf_expect(k->re, text, k->accept, 6, k->reject, 6);
        rl_free_string(text);
    }
}

typedef struct ecase {
    const char *re;
    rl_status st;
    const char *msg;
} ecase;

static const ecase ERRORS[] = {
    {"(a)\\1", RL_ERR_UNSUPPORTED, "backreferences are not supported (at offset 3)"},
    {"(?<x>a)\\k<x>", RL_ERR_UNSUPPORTED, "backreferences are not supported (at offset 7)"},
    {"a(?=b)", RL_ERR_UNSUPPORTED, "lookahead is not supported (at offset 1)"},
    {"a(?!b)", RL_ERR_UNSUPPORTED, "lookahead"},
    {"(?<=a)b", RL_ERR_UNSUPPORTED, "lookbehind is not supported (at offset 0)"},
    {"(?<!a)b", RL_ERR_UNSUPPORTED, "lookbehind"},
    {"\\bword", RL_ERR_UNSUPPORTED, "word boundaries (\\b) are not supported (at offset 0)"},
    {"\\p{L}", RL_ERR_UNSUPPORTED, "Unicode property escapes"},
    {"(?i:a)", RL_ERR_UNSUPPORTED, "pattern modifiers are not supported"},
    {"(?i)a", RL_ERR_INVALID_ARG, "invalid group (at offset 0)"},
    {"(?>a)", RL_ERR_INVALID_ARG, "invalid group"},
    {"(?<*a)", RL_ERR_INVALID_ARG, "invalid group name"},
    {"(?<1a>b)", RL_ERR_INVALID_ARG, "invalid group name"},
    {"a++", RL_ERR_INVALID_ARG, "nothing to repeat"},
    {"(*ACCEPT)", RL_ERR_INVALID_ARG, "nothing to repeat"},
    {"a^b", RL_ERR_UNSUPPORTED, "anchor ^ inside the pattern (at offset 1)"},
    {"(a$)b", RL_ERR_UNSUPPORTED, "anchor $ inside the pattern (at offset 2)"},
    {"(ab", RL_ERR_INVALID_ARG, "unterminated group (at offset 0)"},
    {"ab)", RL_ERR_INVALID_ARG, "unmatched ) (at offset 2)"},
    {"[ab", RL_ERR_INVALID_ARG, "unterminated character class (at offset 0)"},
    {"*a", RL_ERR_INVALID_ARG, "nothing to repeat (at offset 0)"},
    {"a**", RL_ERR_INVALID_ARG, "nothing to repeat (at offset 2)"},
    {"a{3,2}", RL_ERR_INVALID_ARG, "numbers out of order"},
    {"[z-a]", RL_ERR_INVALID_ARG, "range out of order in character class (at offset 2)"},
    {"a\\", RL_ERR_INVALID_ARG, "\\ at the end of the pattern"},
    {"\\u12", RL_ERR_INVALID_ARG, "\\u needs four hex digits"},
    {"[]", RL_ERR_INVALID_ARG, "no text matches"},
    {"a{2001}", RL_ERR_LIMIT, "repetition of 2001 exceeds the limit of 2000"},
    {"a{100001}", RL_ERR_LIMIT, "repetition count above 100000"},
};

TEST(errors) {
    for (size_t i = 0; i < RL_ARRAY_LEN(ERRORS); i++) {
        rl_status st;
        char *text = to_gbnf(ERRORS[i].re, &st);
        CHECKF(st == ERRORS[i].st && !text, "%s: %s (%s)", ERRORS[i].re, rl_status_str(st), g_err);
        CHECKF(strstr(g_err, ERRORS[i].msg), "%s: \"%s\" lacks \"%s\"", ERRORS[i].re, g_err,
               ERRORS[i].msg);
        rl_free_string(text);
    }
    /* deep nesting */
    char deep[512];
    size_t n = 0;
    for (int i = 0; i < 150; i++) deep[n++] = '(';
    deep[n++] = 'a';
    for (int i = 0; i < 150; i++) deep[n++] = ')';
    deep[n] = 0;
    rl_status st;
    char *text = to_gbnf(deep, &st);
    CHECKF(st == RL_ERR_LIMIT && strstr(g_err, "nested deeper than 100"), "%s", g_err);
    rl_free_string(text);
    /* nested counts make rules, not copies: a^(10^9) is a small grammar */
    text = to_gbnf("(((a{1000}){1000}){1000})", &st);
    CHECKF(st == RL_OK, "%s", g_err);
    rl_grammar *g = text ? rl_test_compile_gbnf(text) : NULL;
    rl_grammar_free(g);
    rl_free_string(text);
    /* big counts inside quantified groups: the groups become rules */
    static const char *const big[] = {"(a{0,1500}b{0,1500})*", "(x{2,800}y|z)+", "(q{1999}|r)?"};
    for (size_t i = 0; i < RL_ARRAY_LEN(big); i++) {
        text = to_gbnf(big[i], &st);
        CHECKF(st == RL_OK, "%s: %s", big[i], g_err);
        g = text ? rl_test_compile_gbnf(text) : NULL;
        if (g && i == 1)
            CHECK(rl_test_gbnf_accepts(g, "xxyz", 4) && !rl_test_gbnf_accepts(g, "xy", 2));
        rl_grammar_free(g);
        rl_free_string(text);
    }
    /* but the copies of all counts together are bounded */
    char *many = malloc(101 * 8 + 1);
    for (int i = 0; i < 101; i++) memcpy(many + i * 8, "ab{2000}", 8);
    many[101 * 8] = 0;
    text = to_gbnf(many, &st);
    CHECKF(st == RL_ERR_LIMIT && strstr(g_err, "200000 copies"), "%s", g_err);
    rl_free_string(text);
    free(many);
    char *out = (char *)1;
    CHECK_EQ_INT(rl_regex_to_gbnf("a", 1, 1, &out, g_err, sizeof g_err), RL_ERR_INVALID_ARG);
    CHECK(out == NULL);
    CHECK_EQ_INT(rl_regex_to_gbnf(NULL, 1, 0, &out, g_err, sizeof g_err), RL_ERR_INVALID_ARG);
    /* invalid UTF-8 in the pattern */
    CHECK_EQ_INT(rl_regex_to_gbnf("a\xff", 2, 0, &out, g_err, sizeof g_err), RL_ERR_INVALID_ARG);
}

/* ---- random patterns against PCRE2 -------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint32_t next(rng *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 33);
}

static void gen(rng *r, char *out, size_t *n, size_t cap, int depth) {
    int items = 1 + (int)(next(r) % 3);
    for (int i = 0; i < items && *n + 24 < cap; i++) {
        uint32_t k = next(r) % 10;
        if (k < 4) {
            out[(*n)++] = "abc-"[next(r) % 4];
        } else if (k == 4) {
            static const char *cls[] = {"[ab]", "[^a]", "[a-c]", "\\d", "\\w", "[^b-c]", "."};
            const char *c = cls[next(r) % 7];
            memcpy(out + *n, c, strlen(c));
            *n += strlen(c);
        } else if (k < 7 && depth < 3) {
            out[(*n)++] = '(';
            if (next(r) % 2) {
                memcpy(out + *n, "?:", 2);
                *n += 2;
            }
            gen(r, out, n, cap, depth + 1);
            if (next(r) % 2 && *n + 24 < cap) {
                out[(*n)++] = '|';
                if (next(r) % 4) gen(r, out, n, cap, depth + 1);
            }
            out[(*n)++] = ')';
        } else {
            out[(*n)++] = "ab"[next(r) % 2];
        }
        uint32_t q = next(r) % 12;
        static const char *qs[] = {"*", "+", "?", "{2}", "{0,2}", "{1,3}", "{2,}", "*?"};
        if (q < 8) {
            const char *s = qs[q];
            memcpy(out + *n, s, strlen(s));
            *n += strlen(s);
        }
    }
}

TEST(random_against_pcre2) {
    rng r = {12345};
    int patterns = 0, texts = 0, agree = 0, bad = 0;
    pcre2_match_data *md = NULL;
    for (int p = 0; p < 1500 && bad < 5; p++) {
        char re[512];
        size_t n = 0;
        gen(&r, re, &n, sizeof re - 32, 0);
        if (next(&r) % 4 == 0) {
            memmove(re + 1, re, n);
            re[0] = '^';
            n++;
        }
        re[n] = 0;
        rl_status st;
        char *text = to_gbnf(re, &st);
        if (st == RL_ERR_LIMIT || st == RL_ERR_INVALID_ARG) {
            rl_free_string(text);
            continue;
        }
        CHECKF(st == RL_OK, "%s: %s", re, g_err);
        if (!text) continue;
        rl_grammar *g = rl_test_compile_gbnf(text);
        /* PCRE2: full match, `.` without \r either (ECMAScript) */
        char full[640];
        const char *body = re[0] == '^' ? re + 1 : re;
        snprintf(full, sizeof full, "^(?:%s)$", body);
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)full, PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        CHECKF(code, "pcre2 rejects %s", full);
        if (!g || !code) {
            pcre2_code_free(code);
            rl_grammar_free(g);
            rl_free_string(text);
            continue;
        }
        patterns++;
        md = pcre2_match_data_create_from_pattern(code, NULL);
        for (int t = 0; t < 60; t++) {
            char s[16];
            size_t len = next(&r) % 9;
            for (size_t i = 0; i < len; i++) s[i] = "abc-1_ "[next(&r) % 7];
            s[len] = 0;
            bool want = pcre2_match(code, (PCRE2_SPTR)s, len, 0, 0, md, NULL) >= 0;
            bool got = rl_test_gbnf_accepts(g, s, len);
            texts++;
            if (want == got) {
                agree++;
            } else if (bad++ < 5) {
                CHECKF(false, "/%s/ on \"%s\": PCRE2 %d, grammar %d\n%s", re, s, want, got, text);
            }
        }
        pcre2_match_data_free(md);
        pcre2_code_free(code);
        rl_grammar_free(g);
        rl_free_string(text);
    }
    fprintf(stderr, "  %d random patterns, %d texts, %d agree with PCRE2\n", patterns, texts,
            agree);
    CHECK(patterns > 1000);
    CHECK_EQ_INT(bad, 0);
}

TEST(allocation_failures) {
    const char *re = "^(?:[a-z]{2,4}|\\d+(-\\d)?)(x|y)*[^\\s]{0,3}$";
    rl_status st;
    char *ref = to_gbnf(re, &st);
    CHECK(st == RL_OK && ref);
    size_t base = rl_mem_in_use();
    int nomem = 0, ok = 0;
    for (long k = 1; k < 5000 && ref; k++) {
        rl__alloc_fail_after(k);
        char *out = NULL;
        st = rl_regex_to_gbnf(re, strlen(re), 0, &out, g_err, sizeof g_err);
        rl__alloc_fail_after(0);
        CHECKF(st == RL_OK || st == RL_ERR_NOMEM, "k=%ld: %s", k, g_err);
        CHECKF(rl_mem_in_use() == base + (out ? strlen(out) + 1 : 0) || out, "k=%ld leaks", k);
        if (st == RL_OK) {
            CHECK(!strcmp(out, ref));
            rl_free_string(out);
            CHECK_EQ_INT(rl_mem_in_use(), base);
            ok++;
            break;
        }
        CHECKF(rl_mem_in_use() == base, "k=%ld leaks", k);
        nomem++;
    }
    CHECK(nomem > 20 && ok == 1);
    rl_free_string(ref);
}

int main(void) {
    RUN(cases);
    RUN(errors);
    RUN(random_against_pcre2);
    RUN(allocation_failures);
    return rl_test_finish();
}
