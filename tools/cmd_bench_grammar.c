/*
 * cmd_bench_grammar.c - `ruvllm bench-grammar`: how long a full allowed-token mask takes
 * with a real vocabulary, over the states of random valid documents.
 *
 * For each grammar: random sentences (rl_grammar_sample_text) are tokenized with the
 * vocabulary (where its tokens do not spell the text, as SentencePiece's leading space,
 * greedily instead: the longest token the grammar allows that the text goes on with, found
 * with a separately compiled copy of the grammar), then fed token by token to a matcher; before
 * each token (and after the last) the full mask is computed and timed (no sampled-token shortcut),
 * and the next token must be in it. Three passes over the same documents: cold                 a
 * freshly compiled grammar (its mask tables fill as states come) with the matcher's per-state mask
 * cache, as a first request sees it; cold_no_state_cache  the same with the per-state cache off;
 *   warm_no_state_cache  the second grammar again (tables filled), per-state cache off:
 *                        the steady-state cost of a state never seen by this matcher.
 * The floor printed next to them is the time to write a mask of the vocabulary's size
 * (memset of n_words words): no mask can be made faster. Also the sampled-token check
 * (rl_grammar_matcher_allows) per token. Targets of the project: average under 20 us and
 * p99 under 200 us.
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f) {
    fprintf(f, "usage: ruvllm bench-grammar -m VOCAB.gguf --grammar FILE [--grammar FILE ...]\n"
               "                            [-n DOCS] [--max-len BYTES] [--seed N]\n\n"
               "Time full token masks over the states of DOCS random documents (default 1000)\n"
               "of each grammar, tokenized with the vocabulary of VOCAB.gguf (any GGUF with a\n"
               "tokenizer). Prints JSON.\n"
               "  --max-len BYTES  target size of a random document (default 1000)\n"
               "  --seed N         first seed of the documents (default 1)\n");
}

typedef struct doc {
    rl_token *tok;
    size_t n;
} doc;

/* Token texts (rl_token_to_piece without specials), for the greedy tokenization. */
typedef struct pieces {
    char *arena;
    size_t *off; /* [n + 1] */
    int32_t n;
} pieces;

static bool pieces_load(const rl_vocab *v, pieces *p) {
    p->n = rl_vocab_n_tokens(v);
    p->off = malloc(((size_t)p->n + 1) * sizeof *p->off);
    size_t cap = (size_t)p->n * 8 + 64, len = 0;
    p->arena = malloc(cap);
    if (!p->off || !p->arena) return false;
    for (int32_t t = 0; t < p->n; t++) {
        size_t k = 0;
        p->off[t] = len;
        if (rl_token_to_piece(v, t, 0, p->arena + len, cap - len, &k) == RL_ERR_RANGE) {
            cap = 2 * cap + k;
            char *na = realloc(p->arena, cap);
            if (!na) return false;
            p->arena = na;
            rl_token_to_piece(v, t, 0, p->arena + len, cap - len, &k);
        }
        len += k;
    }
    p->off[p->n] = len;
    return true;
}

/* Whether the texts of tok[0..n) spell s[0..len). */
static bool spells(const pieces *p, const rl_token *tok, size_t n, const char *s, size_t len) {
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = p->off[tok[i] + 1] - p->off[tok[i]];
        if (at + k > len || memcmp(s + at, p->arena + p->off[tok[i]], k)) return false;
        at += k;
    }
    return at == len;
}

/* Tokens for s[0..len) by the longest allowed token that s goes on with; false when stuck. */
static bool greedy(const rl_grammar *g, const pieces *p, const char *s, size_t len, uint32_t *mask,
                   size_t n_words, rl_token **out, size_t *n_out) {
    rl_grammar_matcher *m = NULL;
    if (rl_grammar_matcher_create(g, 0, &m) != RL_OK) return false;
    size_t cap = len + 1, n = 0, at = 0;
    rl_token *tok = malloc(cap * sizeof *tok);
    bool ok = tok != NULL;
    while (ok && at < len) {
        ok = rl_grammar_matcher_fill_mask(m, mask, n_words) == RL_OK;
        int32_t best = -1;
        size_t best_k = 0;
        for (int32_t t = 0; ok && t < p->n; t++) {
            size_t k = p->off[t + 1] - p->off[t];
            if (k > best_k && k <= len - at && ((mask[t >> 5] >> (t & 31)) & 1) &&
                !memcmp(s + at, p->arena + p->off[t], k)) {
                best = t;
                best_k = k;
            }
        }
        ok = ok && best >= 0 && n < cap && rl_grammar_matcher_accept_token(m, best) == RL_OK;
        if (ok) {
            tok[n++] = best;
            at += best_k;
        }
    }
    rl_grammar_matcher_free(m);
    if (!ok) {
        free(tok);
        return false;
    }
    *out = tok;
    *n_out = n;
    return true;
}

typedef struct lat {
    double *v;
    size_t n, cap;
} lat;

static void lat_push(lat *l, double x) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4096;
        double *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static json_t *summary(lat *l) {
    if (!l->n) return json_null();
    double sum = 0;
    for (size_t i = 0; i < l->n; i++) sum += l->v[i];
    qsort(l->v, l->n, sizeof *l->v, cmp_d);
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "states", (json_int_t)l->n, "avg_us",
                     sum / (double)l->n * 1e6, "p50_us", l->v[l->n / 2] * 1e6, "p90_us",
                     l->v[l->n * 9 / 10] * 1e6, "p99_us", l->v[l->n * 99 / 100] * 1e6, "max_us",
                     l->v[l->n - 1] * 1e6);
}

/* One pass over the documents; docs the matcher rejects (a tokenization that does not
 * spell the document, as SentencePiece's leading space) are marked and skipped after. */
static int run_pass(const rl_grammar *g, doc *docs, int n_docs, bool *skip, uint32_t *mask,
                    size_t n_words, lat *out, double *allows_s, size_t *allows_n) {
    rl_grammar_matcher *m = NULL;
    if (rl_grammar_matcher_create(g, 0, &m) != RL_OK) return -1;
    for (int d = 0; d < n_docs; d++) {
        if (skip[d]) continue;
        rl_grammar_matcher_reset(m);
        size_t mark = out->n;
        for (size_t i = 0; i <= docs[d].n; i++) {
            double t0 = now_s();
            rl_status st = rl_grammar_matcher_fill_mask(m, mask, n_words);
            double t1 = now_s();
            if (st != RL_OK) {
                fprintf(stderr, "bench-grammar: mask: %s: %s\n", rl_status_str(st),
                        rl_grammar_matcher_errmsg(m));
                rl_grammar_matcher_free(m);
                return -1;
            }
            lat_push(out, t1 - t0);
            if (i == docs[d].n) break;
            rl_token t = docs[d].tok[i];
            if (allows_s) {
                double a0 = now_s();
                bool ok = rl_grammar_matcher_allows(m, t);
                *allows_s += now_s() - a0;
                (*allows_n)++;
                (void)ok;
            }
            if (!((mask[t >> 5] >> (t & 31)) & 1) ||
                rl_grammar_matcher_accept_token(m, t) != RL_OK) {
                skip[d] = true;
                out->n = mark;
                break;
            }
        }
    }
    rl_grammar_matcher_free(m);
    return 0;
}

int cmd_bench_grammar(int argc, char **argv) {
    const char *vocab_path = NULL;
    const char *grammars[32];
    int n_grammars = 0, n_docs = 1000;
    size_t max_len = 1000;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") && has) {
            vocab_path = argv[++i];
        } else if ((!strcmp(a, "--grammar") || !strcmp(a, "-g")) && has) {
            if (n_grammars == 32) {
                fprintf(stderr, "bench-grammar: at most 32 grammars\n");
                return 2;
            }
            grammars[n_grammars++] = argv[++i];
        } else if (!strcmp(a, "-n") && has) {
            n_docs = atoi(argv[++i]);
        } else if (!strcmp(a, "--max-len") && has) {
            max_len = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--seed") && has) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "bench-grammar: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!vocab_path || !n_grammars || n_docs <= 0 || max_len == 0) {
        usage(stderr);
        return 2;
    }
    char err[512];
    rl_gguf *gg = NULL;
    rl_vocab *v = NULL;
    rl_grammar_vocab *gv = NULL;
    if (cli_open_vocab("bench-grammar", vocab_path, &gg, &v)) return 1;
    double t0 = now_s();
    rl_status st = rl_grammar_vocab_create(v, &gv);
    double vocab_ms = (now_s() - t0) * 1e3;
    if (st != RL_OK) {
        fprintf(stderr, "bench-grammar: vocabulary index: %s\n", rl_status_str(st));
        rl_vocab_free(v);
        rl_gguf_free(gg);
        return 1;
    }
    int32_t n_tok = rl_vocab_n_tokens(v);
    size_t n_words = ((size_t)n_tok + 31) / 32;
    uint32_t *mask = calloc(n_words, sizeof *mask);
    pieces pc = {0};
    if (!mask || !pieces_load(v, &pc)) {
        fprintf(stderr, "bench-grammar: out of memory\n");
        return 1;
    }
    /* the floor: writing a mask at all */
    double floor_s = 1e9;
    for (int r = 0; r < 2000; r++) {
        double a = now_s();
        memset(mask, r & 1 ? 0 : 0xff, n_words * sizeof *mask);
        __asm__ volatile("" ::"r"(mask) : "memory");
        double b = now_s() - a;
        if (b < floor_s) floor_s = b;
    }

    json_t *jg = json_array();
    int rc = 0;
    for (int k = 0; k < n_grammars && rc == 0; k++) {
        size_t glen;
        char *text = cli_read_file(grammars[k], &glen);
        if (!text) {
            fprintf(stderr, "bench-grammar: cannot read %s\n", grammars[k]);
            rc = 1;
            break;
        }
        rl_grammar *g0 = NULL, *g1 = NULL, *g2 = NULL;
        t0 = now_s();
        st = rl_grammar_compile(text, glen, "root", gv, NULL, &g1, err, sizeof err);
        double compile_ms = (now_s() - t0) * 1e3;
        if (st == RL_OK)
            st = rl_grammar_compile(text, glen, "root", gv, NULL, &g2, err, sizeof err);
        if (st == RL_OK)
            st = rl_grammar_compile(text, glen, "root", gv, NULL, &g0, err, sizeof err);
        free(text);
        if (st != RL_OK) {
            fprintf(stderr, "bench-grammar: %s: %s\n", grammars[k], err);
            rl_grammar_free(g1);
            rl_grammar_free(g2);
            rc = 1;
            break;
        }
        /* documents */
        doc *docs = calloc((size_t)n_docs, sizeof *docs);
        bool *skip = calloc((size_t)n_docs, sizeof *skip);
        size_t cap = 4 * max_len + 4096, n_tokens = 0, n_bytes = 0;
        int n_greedy = 0;
        char *buf = malloc(cap);
        for (int d = 0; d < n_docs; d++) {
            size_t len = 0, nt = 0;
            st = rl_grammar_sample_text(g1, seed + (unsigned long long)d, max_len, buf, cap, &len);
            if (st != RL_OK) {
                skip[d] = true;
                continue;
            }
            rl_tokenize(v, buf, len, 0, NULL, 0, &nt);
            docs[d].tok = malloc((nt ? nt : 1) * sizeof *docs[d].tok);
            if (rl_tokenize(v, buf, len, 0, docs[d].tok, nt, &docs[d].n) != RL_OK ||
                !spells(&pc, docs[d].tok, docs[d].n, buf, len)) {
                free(docs[d].tok);
                docs[d].tok = NULL;
                docs[d].n = 0;
                if (greedy(g0, &pc, buf, len, mask, n_words, &docs[d].tok, &docs[d].n))
                    n_greedy++;
                else
                    skip[d] = true;
            }
            n_bytes += len;
        }
        lat cold = {0}, cold_nc = {0}, warm_nc = {0};
        double allows_s = 0;
        size_t allows_n = 0;
        if (run_pass(g1, docs, n_docs, skip, mask, n_words, &cold, NULL, NULL) != 0) rc = 1;
        setenv("RUVLLM_GRAMMAR_STATE_CACHE", "0", 1);
        if (!rc && run_pass(g2, docs, n_docs, skip, mask, n_words, &cold_nc, NULL, NULL) != 0)
            rc = 1;
        if (!rc &&
            run_pass(g2, docs, n_docs, skip, mask, n_words, &warm_nc, &allows_s, &allows_n) != 0)
            rc = 1;
        unsetenv("RUVLLM_GRAMMAR_STATE_CACHE");
        int used = 0;
        for (int d = 0; d < n_docs; d++)
            if (!skip[d]) {
                used++;
                n_tokens += docs[d].n;
            }
        json_t *s_cold = summary(&cold), *s_nc = summary(&cold_nc), *s_warm = summary(&warm_nc);
        double avg = json_real_value(json_object_get(s_cold, "avg_us"));
        double p99 = json_real_value(json_object_get(s_cold, "p99_us"));
        json_array_append_new(
            jg,
            json_pack("{s:s, s:f, s:i, s:i, s:i, s:f, s:f, s:o, s:o, s:o, s:f, s:{s:f, s:f}, s:b}",
                      "grammar", grammars[k], "compile_ms", compile_ms, "docs", used,
                      "docs_skipped", n_docs - used, "docs_tokenized_greedily", n_greedy,
                      "tokens_per_doc", used ? (double)n_tokens / used : 0.0, "bytes_per_doc",
                      used ? (double)n_bytes / used : 0.0, "cold", s_cold, "cold_no_state_cache",
                      s_nc, "warm_no_state_cache", s_warm, "allows_avg_us",
                      allows_n ? allows_s / (double)allows_n * 1e6 : 0.0, "target", "avg_us", 20.0,
                      "p99_us", 200.0, "target_met", used > 0 && avg < 20.0 && p99 < 200.0));
        free(cold.v);
        free(cold_nc.v);
        free(warm_nc.v);
        for (int d = 0; d < n_docs; d++) free(docs[d].tok);
        free(docs);
        free(skip);
        free(buf);
        rl_grammar_free(g0);
        rl_grammar_free(g1);
        rl_grammar_free(g2);
    }
    if (rc == 0) {
        json_t *root = json_pack("{s:s, s:i, s:f, s:f, s:i, s:o}", "vocab", vocab_path, "n_tokens",
                                 n_tok, "vocab_index_ms", vocab_ms, "floor_mask_write_us",
                                 floor_s * 1e6, "docs_requested", n_docs, "grammars", jg);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(4));
        printf("%s\n", s);
        free(s);
        json_decref(root);
    } else {
        json_decref(jg);
    }
    free(mask);
    free(pc.arena);
    free(pc.off);
    rl_grammar_vocab_free(gv);
    rl_vocab_free(v);
    rl_gguf_free(gg);
    return rc;
}
