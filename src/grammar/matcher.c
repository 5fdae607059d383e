/*
 * matcher.c - the state of one constrained generation: a set of stacks (stacks.c) and a
 * pending UTF-8 sequence, advanced token by token, with a ring of earlier states for
 * rollback and a small cache of masks by state.
 *
 * A token is accepted as llama.cpp's llama_grammar_accept_token does: stacks whose top is
 * a token reference take it whole by id; the others consume its text code point by code
 * point; the new state is the union.
 */
#include "grammar/grammar_impl.h"

#include <stdio.h>

#define MASK_CACHE 8

typedef struct hist {
    rl__gids ids;
    rl__utf8p part;
    bool finished;
} hist;

typedef struct mcache {
    uint64_t hash;
    uint64_t used; /* LRU clock, 0: empty */
    rl__gids ids;
    rl__utf8p part;
    uint32_t *mask;
} mcache;

struct rl_grammar_matcher {
    const rl_grammar *g;
    rl__gnodes a;
    rl__gctx c;
    rl__gids init;
    rl__gids cur;
    rl__utf8p part;
    bool finished; /* an end-of-generation token was accepted */
    rl__gids t1, t2, t3;

    hist *ring;
    uint32_t max_rollback, h_head, h_count;

    mcache cache[MASK_CACHE];
    uint64_t clock;
    bool no_cache; /* RUVLLM_GRAMMAR_STATE_CACHE=0 (benchmarks) */

    char err[256];
};

static void set_err(rl_grammar_matcher *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(rl_grammar_matcher *m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
}

static bool ids_copy(rl__gids *dst, const uint32_t *v, uint32_t n) {
    if (dst->cap < n) {
        uint32_t *nv = rl__realloc(dst->v, (size_t)n * sizeof *nv);
        if (!nv) return false;
        dst->v = nv;
        dst->cap = n;
    }
    if (n) memcpy(dst->v, v, (size_t)n * sizeof *v);
    dst->n = n;
    return true;
}

static void begin(rl_grammar_matcher *m) {
    m->c.st = RL_OK;
    m->c.msg[0] = '\0';
    m->err[0] = '\0';
}

/* Turn a stack error into the matcher's status and message. */
static rl_status stack_error(rl_grammar_matcher *m) {
    rl_status st = m->c.st;
    set_err(m, "%s", st == RL_ERR_NOMEM ? "out of memory" : m->c.msg);
    return st;
}

RL_API void rl_grammar_matcher_free(rl_grammar_matcher *m) {
    if (!m) return;
    rl__gnodes_free(&m->a);
    rl__gids_free(&m->c.work);
    rl__gids_free(&m->init);
    rl__gids_free(&m->cur);
    rl__gids_free(&m->t1);
    rl__gids_free(&m->t2);
    rl__gids_free(&m->t3);
    for (uint32_t i = 0; m->ring && i < m->max_rollback; i++) rl__gids_free(&m->ring[i].ids);
    rl__free(m->ring);
    for (int i = 0; i < MASK_CACHE; i++) {
        rl__gids_free(&m->cache[i].ids);
        rl__free(m->cache[i].mask);
    }
    rl__free(m);
}

RL_API rl_status rl_grammar_matcher_create(const rl_grammar *g, uint32_t max_rollback,
                                           rl_grammar_matcher **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!g) return RL_ERR_INVALID_ARG;
    rl_grammar_matcher *m = rl__calloc(1, sizeof *m);
    if (!m) return RL_ERR_NOMEM;
    m->g = g;
    rl_status st = rl__gnodes_init(&m->a, g->lim.max_nodes);
    if (st != RL_OK) goto fail;
    m->c.g = g;
    m->c.a = &m->a;
    m->max_rollback = max_rollback;
    const char *env = rl__getenv("RUVLLM_GRAMMAR_STATE_CACHE");
    m->no_cache = env && !strcmp(env, "0");
    st = RL_ERR_NOMEM;
    if (max_rollback && !(m->ring = rl__calloc(max_rollback, sizeof *m->ring))) goto fail;
    begin(m);
    rl__ginitial(&m->c, &m->init);
    if (m->c.st != RL_OK) {
        st = m->c.st;
        goto fail;
    }
    /* cur trades buffers with t1..t3: all hold the start state, so reset never allocates */
    if (!ids_copy(&m->cur, m->init.v, m->init.n) || !ids_copy(&m->t1, m->init.v, m->init.n) ||
        !ids_copy(&m->t2, m->init.v, m->init.n) || !ids_copy(&m->t3, m->init.v, m->init.n))
        goto fail;
    *out = m;
    return RL_OK;
fail:
    rl_grammar_matcher_free(m);
    return st;
}

RL_API rl_status rl_grammar_matcher_clone(const rl_grammar_matcher *m, rl_grammar_matcher **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!m) return RL_ERR_INVALID_ARG;
    rl_grammar_matcher *n = rl__calloc(1, sizeof *n);
    if (!n) return RL_ERR_NOMEM;
    n->g = m->g;
    rl_status st = rl__gnodes_copy(&n->a, &m->a);
    if (st != RL_OK) {
        rl__free(n);
        return st;
    }
    n->c.g = m->g;
    n->c.a = &n->a;
    n->part = m->part;
    n->finished = m->finished;
    n->max_rollback = m->max_rollback;
    n->no_cache = m->no_cache;
    n->h_head = m->h_head;
    n->h_count = m->h_count;
    /* as at create: every buffer cur may trade with holds the start state's size */
    if (!ids_copy(&n->init, m->init.v, m->init.n) || !ids_copy(&n->cur, m->init.v, m->init.n) ||
        !ids_copy(&n->t1, m->init.v, m->init.n) || !ids_copy(&n->t2, m->init.v, m->init.n) ||
        !ids_copy(&n->t3, m->init.v, m->init.n) || !ids_copy(&n->cur, m->cur.v, m->cur.n))
        goto fail;
    if (m->max_rollback) {
        if (!(n->ring = rl__calloc(m->max_rollback, sizeof *n->ring))) goto fail;
        for (uint32_t i = 0; i < m->max_rollback; i++) {
            n->ring[i].part = m->ring[i].part;
            n->ring[i].finished = m->ring[i].finished;
            if (!ids_copy(&n->ring[i].ids, m->ring[i].ids.v, m->ring[i].ids.n)) goto fail;
        }
    }
    *out = n;
    return RL_OK;
fail:
    rl_grammar_matcher_free(n);
    return RL_ERR_NOMEM;
}

RL_API void rl_grammar_matcher_reset(rl_grammar_matcher *m) {
    if (!m) return;
    ids_copy(&m->cur, m->init.v, m->init.n); /* every buffer cur may be holds init's size */
    memset(&m->part, 0, sizeof m->part);
    m->finished = false;
    m->h_head = m->h_count = 0;
    m->err[0] = '\0';
}

/* Save the current state as the newest history entry. */
static bool push_history(rl_grammar_matcher *m) {
    if (!m->max_rollback) return true;
    hist *h = &m->ring[m->h_head];
    if (!ids_copy(&h->ids, m->cur.v, m->cur.n)) return false;
    h->part = m->part;
    h->finished = m->finished;
    m->h_head = (m->h_head + 1) % m->max_rollback;
    if (m->h_count < m->max_rollback) m->h_count++;
    return true;
}

RL_API rl_status rl_grammar_matcher_rollback(rl_grammar_matcher *m, uint32_t n) {
    if (!m) return RL_ERR_INVALID_ARG;
    if (n > m->h_count) {
        set_err(m, "cannot roll back %u steps, %u are kept", n, m->h_count);
        return RL_ERR_RANGE;
    }
    if (n == 0) return RL_OK;
    uint32_t idx = (m->h_head + m->max_rollback - n) % m->max_rollback;
    hist *h = &m->ring[idx];
    if (!ids_copy(&m->cur, h->ids.v, h->ids.n)) return RL_ERR_NOMEM;
    m->part = h->part;
    m->finished = h->finished;
    m->h_head = idx;
    m->h_count -= n;
    return RL_OK;
}

RL_API uint32_t rl_grammar_matcher_n_history(const rl_grammar_matcher *m) {
    return m ? m->h_count : 0;
}

RL_API const char *rl_grammar_matcher_errmsg(const rl_grammar_matcher *m) {
    return m ? m->err : "";
}

static bool has_empty(const rl__gids *s) {
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i] == RL__GN_EMPTY) return true;
    return false;
}

RL_API bool rl_grammar_matcher_can_end(const rl_grammar_matcher *m) {
    if (!m) return false;
    return m->finished || (m->part.need == 0 && has_empty(&m->cur));
}

uint32_t rl__grammar_matcher_n_stacks(const rl_grammar_matcher *m) { return m->cur.n; }

bool rl__grammar_matcher_in_char(const rl_grammar_matcher *m) { return m->part.need > 0; }

uint32_t rl__grammar_matcher_n_nodes(const rl_grammar_matcher *m) { return m->a.n; }

static uint64_t state_hash(const rl_grammar_matcher *m);
uint64_t rl__grammar_matcher_state_hash(const rl_grammar_matcher *m) {
    return state_hash(m) ^ (m->finished ? 0x77 : 0);
}

/* The state after token t with text piece[0..len) (piece NULL: token references only) into
 * m->t1 / *pout. Returns false when the token is not allowed (or on errors: m->c.st). */
static bool advance_token(rl_grammar_matcher *m, rl_token t, const unsigned char *piece, size_t len,
                          rl__utf8p *pout) {
    const rl_grammar *g = m->g;
    rl__gctx *c = &m->c;
    rl__gids *res = &m->t1;
    rl__utf8p part = {0};
    res->n = 0;
    bool any_char = false;
    /* by id */
    if (m->part.need == 0) {
        rl__gset_begin(c, res);
        for (uint32_t i = 0; i < m->cur.n && c->st == RL_OK; i++) {
            uint32_t s = m->cur.v[i], pos = m->a.v[s].pos;
            if (pos == RL__GPOS_NONE) continue;
            const rl__gpos *q = &g->pos[pos];
            if (q->kind == RL__P_CLS) any_char = true;
            bool hit = (q->kind == RL__P_TOK && q->arg == (uint32_t)t) ||
                       (q->kind == RL__P_TOKNOT && q->arg != (uint32_t)t);
            if (!hit) continue;
            uint32_t parent = m->a.v[s].parent, nx = parent;
            if (g->pos[pos + 1].kind != RL__P_END) {
                rl_status st = RL_OK;
                nx = rl__gnode_get(&m->a, pos + 1, 0, parent, &st);
                if (nx == UINT32_MAX) {
                    c->st = st;
                    rl__fmt(c->msg, sizeof c->msg, "more parse frames than max_nodes");
                    return false;
                }
            }
            rl__gexpand(c, nx, res);
        }
        rl__gset_finish(res);
    } else {
        any_char = true;
    }
    if (c->st != RL_OK) return false;
    /* by text */
    if (piece && len > 0 && any_char) {
        size_t k = rl__gfeed(c, m->cur.v, m->cur.n, &m->part, piece, len, &m->t2, &m->t3, &part);
        if (c->st != RL_OK) return false;
        if (k == len && m->t2.n > 0) {
            /* union with the stacks taken by id */
            uint32_t n0 = res->n;
            for (uint32_t i = 0; i < m->t2.n; i++) {
                bool dup = false;
                for (uint32_t j = 0; j < n0 && !dup; j++) dup = res->v[j] == m->t2.v[i];
                if (!dup && !rl__gids_push(res, m->t2.v[i])) {
                    c->st = RL_ERR_NOMEM;
                    return false;
                }
            }
            if (res->n != n0) rl__gset_finish(res);
        } else {
            memset(&part, 0, sizeof part);
        }
    }
    *pout = part;
    return res->n > 0;
}

static bool token_is_eog(const rl_grammar *g, rl_token t) {
    return g->gv && t >= 0 && t < g->gv->n_tokens && ((g->gv->eog[t >> 5] >> (t & 31)) & 1);
}

static rl_status accept_common(rl_grammar_matcher *m, rl_token t, const unsigned char *piece,
                               size_t len) {
    if (m->finished) {
        if (token_is_eog(m->g, t)) return push_history(m) ? RL_OK : RL_ERR_NOMEM;
        set_err(m, "token %d after the end of the grammar", t);
        return RL_ERR_INVALID_ARG;
    }
    if (token_is_eog(m->g, t)) {
        bool can = rl_grammar_matcher_can_end(m);
        /* an explicit token reference may also take it */
        rl__utf8p part;
        bool by_ref = advance_token(m, t, NULL, 0, &part);
        if (m->c.st != RL_OK) return stack_error(m);
        if (!can && !by_ref) {
            set_err(m, "end-of-generation token %d before the grammar can end", t);
            return RL_ERR_INVALID_ARG;
        }
        if (!push_history(m)) return RL_ERR_NOMEM;
        if (by_ref && !can) {
            rl__gids tmp = m->cur;
            m->cur = m->t1;
            m->t1 = tmp;
            m->part = part;
        } else {
            m->finished = true;
        }
        return RL_OK;
    }
    rl__utf8p part;
    if (!advance_token(m, t, piece, len, &part)) {
        if (m->c.st != RL_OK) return stack_error(m);
        set_err(m, "token %d is not allowed by the grammar here", t);
        return RL_ERR_INVALID_ARG;
    }
    if (!push_history(m)) return RL_ERR_NOMEM;
    rl__gids tmp = m->cur;
    m->cur = m->t1;
    m->t1 = tmp;
    m->part = part;
    return RL_OK;
}

RL_API rl_status rl_grammar_matcher_accept_token(rl_grammar_matcher *m, rl_token t) {
    if (!m) return RL_ERR_INVALID_ARG;
    begin(m);
    const rl_grammar_vocab *gv = m->g->gv;
    if (t < 0 || (gv && t >= gv->n_tokens)) {
        set_err(m, "token %d out of range", t);
        return RL_ERR_INVALID_ARG;
    }
    const unsigned char *piece = NULL;
    uint32_t len = 0;
    if (gv && ((gv->textual[t >> 5] >> (t & 31)) & 1)) piece = rl__gv_piece(gv, t, &len);
    return accept_common(m, t, piece, len);
}

rl_status rl__grammar_matcher_accept_piece(rl_grammar_matcher *m, rl_token t, const char *piece,
                                           size_t len) {
    begin(m);
    return accept_common(m, t, (const unsigned char *)piece, len);
}

RL_API rl_status rl_grammar_matcher_accept_bytes(rl_grammar_matcher *m, const char *s, size_t len,
                                                 size_t *n_ok) {
    if (n_ok) *n_ok = 0;
    if (!m || (!s && len)) return RL_ERR_INVALID_ARG;
    begin(m);
    if (m->finished) {
        set_err(m, "bytes after the end of the grammar");
        return len ? RL_ERR_INVALID_ARG : RL_OK;
    }
    rl__utf8p part;
    size_t k = rl__gfeed(&m->c, m->cur.v, m->cur.n, &m->part, (const unsigned char *)s, len, &m->t2,
                         &m->t3, &part);
    if (m->c.st != RL_OK) return stack_error(m);
    if (n_ok) *n_ok = k;
    if (k < len || (len == 0 && m->cur.n == 0)) {
        set_err(m, "the grammar rejects the text at byte %zu", k);
        return RL_ERR_INVALID_ARG;
    }
    if (!push_history(m)) return RL_ERR_NOMEM;
    rl__gids tmp = m->cur;
    m->cur = m->t2;
    m->t2 = tmp;
    m->part = part;
    return RL_OK;
}

RL_API bool rl_grammar_matcher_allows(rl_grammar_matcher *m, rl_token t) {
    if (!m) return false;
    begin(m);
    const rl_grammar_vocab *gv = m->g->gv;
    if (t < 0 || (gv && t >= gv->n_tokens)) return false;
    if (m->finished) return token_is_eog(m->g, t);
    if (token_is_eog(m->g, t) && rl_grammar_matcher_can_end(m)) return true;
    const unsigned char *piece = NULL;
    uint32_t len = 0;
    if (gv && ((gv->textual[t >> 5] >> (t & 31)) & 1)) piece = rl__gv_piece(gv, t, &len);
    rl__utf8p part;
    bool ok = advance_token(m, t, piece, len, &part);
    if (m->c.st != RL_OK) {
        stack_error(m);
        return false;
    }
    return ok;
}

static uint64_t state_hash(const rl_grammar_matcher *m) {
    uint64_t h = rl__ghash_ids(m->cur.v, m->cur.n, 0x1234567ull);
    return h ^ ((uint64_t)m->part.value << 8 | m->part.need) * 0x9E3779B97F4A7C15ull;
}

/* Masks without the end tokens, computed or from the cache. */
static rl_status mask_core(rl_grammar_matcher *m, uint32_t *mask, bool use_cache) {
    const rl_grammar_vocab *gv = m->g->gv;
    size_t bytes = (size_t)gv->n_words * sizeof *mask;
    uint64_t h = state_hash(m);
    if (use_cache) {
        for (int i = 0; i < MASK_CACHE; i++) {
            mcache *e = &m->cache[i];
            if (e->used && e->hash == h && e->ids.n == m->cur.n && e->part.need == m->part.need &&
                e->part.value == m->part.value &&
                (!m->cur.n || !memcmp(e->ids.v, m->cur.v, (size_t)m->cur.n * sizeof *m->cur.v))) {
                e->used = ++m->clock;
                memcpy(mask, e->mask, bytes);
                return RL_OK;
            }
        }
    }
    rl_status st = rl__gmask_fill(&m->c, m->cur.v, m->cur.n, &m->part, mask);
    if (st != RL_OK) {
        if (m->c.st != RL_OK) return stack_error(m);
        set_err(m, "mask: %s", rl_status_str(st));
        return st;
    }
    if (!use_cache) return RL_OK;
    mcache *e = &m->cache[0];
    for (int i = 1; i < MASK_CACHE; i++)
        if (m->cache[i].used < e->used) e = &m->cache[i];
    if (!e->mask && !(e->mask = rl__malloc(bytes))) return RL_OK;
    if (!ids_copy(&e->ids, m->cur.v, m->cur.n)) {
        e->used = 0;
        return RL_OK;
    }
    e->hash = h;
    e->part = m->part;
    e->used = ++m->clock;
    memcpy(e->mask, mask, bytes);
    return RL_OK;
}

static rl_status finish_mask(rl_grammar_matcher *m, uint32_t *mask, size_t n_words) {
    const rl_grammar_vocab *gv = m->g->gv;
    if (rl_grammar_matcher_can_end(m))
        for (uint32_t i = 0; i < gv->n_words; i++) mask[i] |= gv->eog[i];
    for (size_t i = gv->n_words; i < n_words; i++) mask[i] = 0;
    return RL_OK;
}

static rl_status check_mask_args(rl_grammar_matcher *m, uint32_t *mask, size_t n_words) {
    if (!m || !mask) return RL_ERR_INVALID_ARG;
    begin(m);
    const rl_grammar_vocab *gv = m->g->gv;
    if (!gv) {
        set_err(m, "the grammar was compiled without a vocabulary");
        return RL_ERR_INVALID_ARG;
    }
    if (n_words < gv->n_words) {
        set_err(m, "mask of %zu words, the vocabulary needs %u", n_words, gv->n_words);
        return RL_ERR_INVALID_ARG;
    }
    return RL_OK;
}

RL_API rl_status rl_grammar_matcher_fill_mask(rl_grammar_matcher *m, uint32_t *mask,
                                              size_t n_words) {
    rl_status st = check_mask_args(m, mask, n_words);
    if (st != RL_OK) return st;
    if (m->finished) {
        memset(mask, 0, (size_t)m->g->gv->n_words * sizeof *mask);
    } else {
        st = mask_core(m, mask, !m->no_cache);
        if (st != RL_OK) return st;
    }
    return finish_mask(m, mask, n_words);
}

rl_status rl__grammar_matcher_mask_walk(rl_grammar_matcher *m, uint32_t *mask, size_t n_words) {
    rl_status st = check_mask_args(m, mask, n_words);
    if (st != RL_OK) return st;
    if (m->finished) {
        memset(mask, 0, (size_t)m->g->gv->n_words * sizeof *mask);
    } else {
        st = rl__gmask_fill_slow(&m->c, m->cur.v, m->cur.n, &m->part, mask);
        if (st != RL_OK) return m->c.st != RL_OK ? stack_error(m) : st;
        /* token references are not part of the text walk */
        rl__utf8p none = {0};
        if (m->part.need == 0) {
            const rl_grammar *g = m->g;
            for (uint32_t i = 0; i < m->cur.n; i++) {
                uint32_t pos = m->a.v[m->cur.v[i]].pos;
                if (pos != RL__GPOS_NONE && g->pos[pos].kind != RL__P_CLS) {
                    uint32_t *tmp = rl__calloc(g->gv->n_words, sizeof *tmp);
                    if (!tmp) return RL_ERR_NOMEM;
                    st = rl__gmask_fill(&m->c, &m->cur.v[i], 1, &none, tmp);
                    for (uint32_t k = 0; k < g->gv->n_words; k++) mask[k] |= tmp[k];
                    rl__free(tmp);
                    if (st != RL_OK) return st;
                }
            }
        }
    }
    return finish_mask(m, mask, n_words);
}

rl_status rl__grammar_matcher_mask_brute(rl_grammar_matcher *m, uint32_t *mask, size_t n_words) {
    rl_status st = check_mask_args(m, mask, n_words);
    if (st != RL_OK) return st;
    const rl_grammar_vocab *gv = m->g->gv;
    memset(mask, 0, n_words * sizeof *mask);
    for (int32_t t = 0; t < gv->n_tokens; t++) {
        if (rl_grammar_matcher_allows(m, t))
            mask[t >> 5] |= 1u << (t & 31);
        else if (m->err[0])
            return RL_ERR_LIMIT;
    }
    return RL_OK;
}
