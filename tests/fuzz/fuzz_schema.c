/*
 * fuzz_schema.c - libFuzzer harness for src/schema: JSON Schema -> GBNF, regex -> GBNF and
 * the validator. The first byte picks the mode and the flags, the rest is the input:
 *   mode 0: a schema. rl_schema_to_gbnf; a grammar it returns must compile with the grammar
 *           engine, and (unless lenient) random texts of it must validate against the
 *           schema: the converter's promise that its grammars are sound.
 *   mode 1: a regular expression. rl_regex_to_gbnf; the grammar must compile, and its random
 *           texts must match the expression in full (checked by the validator's PCRE2).
 *   mode 2: "schema\ninstance": rl_schema_compile + rl_schema_check.
 * Every status must be a documented one with a message, and every byte the library
 * allocated is freed.
 */
#include "ruvllm.h"
#include "util/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_schema: %s:%d: requirement failed: %s\n", __FILE__, __LINE__,    \
                    #c);                                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool documented(rl_status st) {
    return st == RL_OK || st == RL_ERR_INVALID_ARG || st == RL_ERR_UNSUPPORTED ||
           st == RL_ERR_LIMIT || st == RL_ERR_NOT_FOUND;
}

/* A compiled grammar of text, which must compile. */
static rl_grammar *must_compile(const char *text) {
    rl_grammar *g = NULL;
    char err[512];
    rl_status st = rl_grammar_compile(text, strlen(text), "root", NULL, NULL, &g, err, sizeof err);
    if (st != RL_OK && st != RL_ERR_LIMIT) {
        fprintf(stderr, "fuzz_schema: the grammar does not compile: %s\n%s\n", err, text);
        abort();
    }
    return g;
}

/* Random texts of g, each checked with s. */
static void check_samples(const rl_grammar *g, const rl_schema *s, uint64_t seed,
                          const char *what) {
    static char buf[4096];
    for (uint64_t k = 0; k < 3; k++) {
        size_t n = 0;
        if (rl_grammar_sample_text(g, seed + k, 300, buf, sizeof buf, &n) != RL_OK) continue;
        bool valid = false;
        char err[512];
        rl_status st = rl_schema_check(s, buf, n, &valid, err, sizeof err);
        if (st == RL_ERR_LIMIT) continue;
        if (st != RL_OK || !valid) {
            fprintf(stderr,
                    "fuzz_schema: the grammar of %s made an invalid text: %.*s\n  (%s: %s)\n", what,
                    (int)n, buf, rl_status_str(st), err);
            abort();
        }
    }
}

static uint64_t hash(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

static void schema_mode(const char *p, size_t n, uint32_t flags, uint64_t seed) {
    char *gbnf = NULL;
    char err[512];
    err[0] = 0;
    rl_status st = rl_schema_to_gbnf(p, n, flags, &gbnf, err, sizeof err);
    REQUIRE(documented(st));
    if (st != RL_OK) {
        REQUIRE(gbnf == NULL && err[0]);
        return;
    }
    REQUIRE(gbnf != NULL);
    rl_grammar *g = must_compile(gbnf);
    if (g && !(flags & RL_SCHEMA_LENIENT)) {
        rl_schema_params sp = rl_schema_default_params();
        sp.flags = RL_SCHEMA_LENIENT;
        rl_schema *s = NULL;
        REQUIRE(rl_schema_compile(p, n, &sp, &s, err, sizeof err) == RL_OK);
        check_samples(g, s, seed, "a schema");
        rl_schema_free(s);
    }
    rl_grammar_free(g);
    rl__free(gbnf);
}

static void regex_mode(const char *p, size_t n, uint64_t seed) {
    char *gbnf = NULL;
    char err[512];
    err[0] = 0;
    rl_status st = rl_regex_to_gbnf(p, n, 0, &gbnf, err, sizeof err);
    REQUIRE(documented(st));
    if (st != RL_OK) {
        REQUIRE(gbnf == NULL && err[0]);
        return;
    }
    rl_grammar *g = must_compile(gbnf);
    /* {"pattern": "^(?:RE)$"}: the validator runs RE on PCRE2 */
    char *wrapped = malloc(n + 8);
    memcpy(wrapped, "^(?:", 4);
    memcpy(wrapped + 4, p, n);
    memcpy(wrapped + 4 + n, ")$", 2);
    json_t *schema = json_pack("{s:s%}", "pattern", wrapped, n + 6);
    char *stext = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    rl_schema *s = NULL;
    if (g && stext && rl_schema_compile(stext, strlen(stext), NULL, &s, err, sizeof err) == RL_OK) {
        static char buf[4096];
        for (uint64_t k = 0; k < 3; k++) {
            size_t len = 0;
            if (rl_grammar_sample_text(g, seed + k, 200, buf, sizeof buf, &len) != RL_OK) continue;
            json_t *str = json_stringn(buf, len);
            char *inst = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
            bool valid = false;
            if (inst) {
                st = rl_schema_check(s, inst, strlen(inst), &valid, err, sizeof err);
                if (st == RL_OK && !valid) {
                    fprintf(stderr, "fuzz_schema: /%.*s/ grammar made %s (schema %s: %s)\n", (int)n,
                            p, inst, stext, err);
                    abort();
                }
            }
            free(inst);
            json_decref(str);
        }
    }
    rl_schema_free(s);
    free(stext);
    json_decref(schema);
    free(wrapped);
    rl_grammar_free(g);
    rl__free(gbnf);
}

static void validate_mode(const char *p, size_t n) {
    const char *nl = memchr(p, '\n', n);
    size_t sn = nl ? (size_t)(nl - p) : n;
    rl_schema *s = NULL;
    char err[512];
    err[0] = 0;
    rl_status st = rl_schema_compile(p, sn, NULL, &s, err, sizeof err);
    REQUIRE(documented(st));
    if (st != RL_OK) {
        REQUIRE(s == NULL && err[0]);
        return;
    }
    const char *inst = nl ? nl + 1 : "null";
    size_t in = nl ? n - sn - 1 : 4;
    bool valid = false;
    st = rl_schema_check(s, inst, in, &valid, err, sizeof err);
    REQUIRE(st == RL_OK || st == RL_ERR_INVALID_ARG || st == RL_ERR_LIMIT);
    if (st == RL_OK && !valid) REQUIRE(err[0] == '#');
    rl_schema_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t base = rl_mem_in_use();
    int mode = data[0] & 3;
    if (mode == 3) mode = 0;
    uint32_t flags = (data[0] >> 2) & 15u;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    uint64_t seed = hash(data, size);
    if (mode == 0)
        schema_mode(p, n, flags, seed);
    else if (mode == 1)
        regex_mode(p, n, seed);
    else
        validate_mode(p, n);
    REQUIRE(rl_mem_in_use() == base);
    return 0;
}
