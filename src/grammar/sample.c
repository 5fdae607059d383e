/*
 * sample.c - random sentences of a grammar, for tests and benchmarks: a random walk over
 * the rules with one explicit stack, choosing alternatives uniformly while the text is
 * short and the alternative with the shortest completion once the budget is near (the
 * shortest lengths come from a fixpoint over the rules).
 */
#include "grammar/grammar_impl.h"

#define INF_LEN 0x3fffffffu

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t cp_bytes(uint32_t cp) {
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static uint32_t sat_add(uint32_t a, uint32_t b) { return a + b >= INF_LEN ? INF_LEN : a + b; }

static uint32_t sat_mul(uint32_t a, uint32_t b) {
    uint64_t x = (uint64_t)a * b;
    return x >= INF_LEN ? INF_LEN : (uint32_t)x;
}

/* Fewest bytes of the element at position p (0 for token references). */
static uint32_t elem_len(const rl_grammar *g, const uint32_t *minlen, uint32_t p) {
    const rl__gpos *q = &g->pos[p];
    if (q->kind == RL__P_CLS) {
        const rl__gclass *c = &g->cls[q->arg];
        return c->n ? cp_bytes(g->ranges[2 * c->off]) : INF_LEN;
    }
    if (q->kind == RL__P_REF) return minlen[q->arg];
    if (q->kind == RL__P_REP) {
        const rl__grep *r = &g->reps[q->arg];
        return r->min ? sat_mul(r->min, minlen[r->body]) : 0;
    }
    return 0;
}

/* minlen[r]: fewest bytes rule r derives; suffix[p]: fewest bytes from position p to the
 * end of its alternative. */
static bool shortest(const rl_grammar *g, uint32_t *minlen, uint32_t *suffix) {
    for (uint32_t r = 0; r < g->n_rules; r++) minlen[r] = INF_LEN;
    bool changed = true;
    for (uint32_t iter = 0; changed && iter < g->n_rules + 2; iter++) {
        changed = false;
        for (uint32_t r = 0; r < g->n_rules; r++) {
            for (uint32_t k = g->alt_off[r]; k < g->alt_off[r + 1]; k++) {
                uint32_t len = 0;
                for (uint32_t p = g->alts[k]; g->pos[p].kind != RL__P_END; p++)
                    len = sat_add(len, elem_len(g, minlen, p));
                if (len < minlen[r]) {
                    minlen[r] = len;
                    changed = true;
                }
            }
        }
    }
    for (uint32_t r = 0; r < g->n_rules; r++) {
        for (uint32_t k = g->alt_off[r]; k < g->alt_off[r + 1]; k++) {
            uint32_t end = g->alts[k];
            while (g->pos[end].kind != RL__P_END) end++;
            suffix[end] = 0;
            for (uint32_t p = end; p-- > g->alts[k];)
                suffix[p] = sat_add(suffix[p + 1], elem_len(g, minlen, p));
        }
    }
    return true;
}

static uint32_t pick_cp(const rl_grammar *g, const rl__gclass *c, uint64_t *rng) {
    uint32_t printable[96], n = 0;
    for (uint32_t cp = 0x20; cp < 0x7f; cp++)
        if ((c->ascii[cp >> 6] >> (cp & 63)) & 1) printable[n++] = cp;
    if (n && rng_next(rng) % 10 < 9) return printable[rng_next(rng) % n];
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    uint32_t k = (uint32_t)(rng_next(rng) % c->n);
    uint32_t lo = r[2 * k], hi = r[2 * k + 1];
    if (hi - lo > 0x3000) hi = lo + 0x3000; /* stay near the start of huge ranges */
    return lo + (uint32_t)(rng_next(rng) % ((uint64_t)hi - lo + 1));
}

RL_API rl_status rl_grammar_sample_text(const rl_grammar *g, uint64_t seed, size_t max_len,
                                        char *buf, size_t size, size_t *n_out) {
    if (!g || !n_out || (!buf && size)) return RL_ERR_INVALID_ARG;
    *n_out = 0;
    uint32_t *minlen = rl__malloc(((size_t)g->n_rules + 1) * sizeof *minlen);
    uint32_t *suffix = rl__malloc(((size_t)g->n_pos + 1) * sizeof *suffix);
    rl__gids stack = {0};
    char *out = NULL;
    size_t n = 0, cap = 0;
    rl_status st = RL_ERR_NOMEM;
    if (!minlen || !suffix || !shortest(g, minlen, suffix)) goto done;
    if (minlen[g->root] >= INF_LEN) {
        st = RL_ERR_LIMIT;
        goto done;
    }
    uint64_t rng = seed ^ 0x6a09e667f3bcc909ull;
    size_t hard = 4 * max_len + 1024, steps = 0;
    uint64_t pending = 0; /* shortest completion of the frames on the stack */
    /* pick a root alternative like any rule reference */
    uint32_t pos = RL__GPOS_NONE, cnt = 0;
    uint32_t cur_rule = g->root;
    for (;;) {
        if (++steps > 64 * hard + 100000) {
            st = RL_ERR_LIMIT;
            goto done;
        }
        if (cur_rule != UINT32_MAX) {
            /* choose an alternative of cur_rule */
            uint32_t a0 = g->alt_off[cur_rule], na = g->alt_off[cur_rule + 1] - a0;
            uint32_t best = a0;
            for (uint32_t k = a0; k < a0 + na; k++)
                if (suffix[g->alts[k]] < suffix[g->alts[best]]) best = k;
            uint32_t pick = best;
            /* while well inside the budget, prefer the longer alternatives (3 to 1), so that
             * repetitions run a few rounds rather than stopping half the time */
            if (na > 1 && n + pending + suffix[g->alts[best]] < max_len / 2 + 1 &&
                rng_next(&rng) % 4 != 0) {
                for (int tries = 0; tries < 8; tries++) {
                    uint32_t k = a0 + (uint32_t)(rng_next(&rng) % na);
                    if (k != best && suffix[g->alts[k]] < INF_LEN &&
                        n + pending + suffix[g->alts[k]] <= max_len) {
                        pick = k;
                        break;
                    }
                }
            }
            pos = g->alts[pick];
            cnt = 0;
            cur_rule = UINT32_MAX;
        }
        const rl__gpos *q = &g->pos[pos];
        if (q->kind == RL__P_END) {
            if (stack.n == 0) break;
            stack.n -= 3;
            pos = stack.v[stack.n];
            cnt = stack.v[stack.n + 1];
            pending -= stack.v[stack.n + 2];
            continue;
        }
        if (q->kind == RL__P_REP) {
            const rl__grep *r = &g->reps[q->arg];
            uint32_t need, rem;
            rl__grep_state(g, pos, cnt, &need, &rem);
            uint32_t body_len = minlen[r->body];
            bool again = rem > 0 && body_len < INF_LEN &&
                         (need > 0 || (n + pending + suffix[pos] + body_len < max_len / 2 + 1 &&
                                       rng_next(&rng) % 4 != 0));
            if (!again) {
                pos++;
                cnt = 0;
                continue;
            }
            uint32_t next = rl__rep_pack(need ? need - 1 : 0, rem == RL__REP_INF ? rem : rem - 1);
            uint32_t later = sat_add(suffix[pos + 1], need > 1 ? sat_mul(need - 1, body_len) : 0);
            if (stack.n / 3 >= g->lim.max_depth) {
                st = RL_ERR_LIMIT;
                goto done;
            }
            if (!rl__gids_push(&stack, pos) || !rl__gids_push(&stack, next) ||
                !rl__gids_push(&stack, later))
                goto done;
            pending += later;
            cur_rule = r->body;
            continue;
        }
        if (q->kind == RL__P_TOK || q->kind == RL__P_TOKNOT) {
            st = RL_ERR_UNSUPPORTED; /* token references have no text */
            goto done;
        }
        if (q->kind == RL__P_REF) {
            if (g->pos[pos + 1].kind != RL__P_END) {
                if (stack.n / 3 >= g->lim.max_depth) {
                    st = RL_ERR_LIMIT;
                    goto done;
                }
                if (!rl__gids_push(&stack, pos + 1) || !rl__gids_push(&stack, 0) ||
                    !rl__gids_push(&stack, suffix[pos + 1]))
                    goto done;
                pending += suffix[pos + 1];
            }
            cur_rule = q->arg;
            continue;
        }
        /* a class */
        uint32_t cp = pick_cp(g, &g->cls[q->arg], &rng);
        if (n + 4 >= cap) {
            size_t nc = cap ? cap * 2 : 256;
            char *no = rl__realloc(out, nc);
            if (!no) goto done;
            out = no;
            cap = nc;
        }
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else if (cp < 0x800) {
            out[n++] = (char)(0xC0 | (cp >> 6));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[n++] = (char)(0xE0 | (cp >> 12));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[n++] = (char)(0xF0 | (cp >> 18));
            out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        }
        if (n > hard) {
            st = RL_ERR_LIMIT;
            goto done;
        }
        pos++;
        cnt = 0;
    }
    *n_out = n;
    if (size < n + 1) {
        *n_out = n + 1;
        st = RL_ERR_RANGE;
        goto done;
    }
    if (n) memcpy(buf, out, n);
    buf[n] = '\0';
    st = RL_OK;
done:
    rl__free(minlen);
    rl__free(suffix);
    rl__gids_free(&stack);
    rl__free(out);
    return st;
}
