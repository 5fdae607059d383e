/*
 * constrain.c - per-request constraints of the engine: a GBNF grammar that every sequence
 * of a request follows, applied at sampling.
 *
 * Grammars are compiled once against the model's vocabulary (an rl_grammar_vocab the
 * engine builds at the first constrained request) and kept in a small LRU cache keyed by
 * their text and start rule: the same JSON schema or tool list sent again costs a hash
 * lookup, and a compiled grammar keeps the mask tables it filled lazily, so later requests
 * start warm. Entries are reference-counted: the cache holds one reference while an entry
 * is listed, each request using it one more; an evicted entry lives until its last request
 * is done. Compilation runs in the submitting thread, outside the cache's lock.
 *
 * Sampling (engine thread, e->mu held) is the rejection scheme of
 * rl_sampler_sample_constrained with each sequence's rl_grammar_constraint: the token drawn
 * without the grammar is checked alone (cost about its length); only when the grammar
 * rejects it is the full mask computed and the token drawn again among the allowed ones.
 * When that second draw finds nothing (no token continues the text, and the grammar cannot
 * end or the vocabulary has no end token), the sequence is at a dead end and ends with
 * STOP. When the text is a sentence that nothing can continue, the sequence ends right
 * after the token that completed it, without a decode that could only choose an end token.
 *
 * A request's matchers are freed when it is done (rl__ereq_done), so that nothing of a
 * request outlives the engine's grammars, even when the caller keeps its handle longer.
 */
#include "engine_impl.h"

#include <string.h>

typedef struct rl__gentry {
    struct rl__gentry *next; /* the cache's list, most recently used first */
    uint64_t hash;
    char *text, *root;
    size_t len;
    rl_grammar *g;
    int32_t refs; /* the cache's (while listed) + one per request */
    bool listed;
} rl__gentry;

struct rl__gcache {
    pthread_mutex_t mu;
    const rl_vocab *vocab;
    int32_t n_vocab;           /* logits per row (may exceed the vocabulary's tokens) */
    rl_grammar_vocab *gv;      /* built at the first constrained request */
    rl__gentry *head;
    int32_t n_entries;
};

struct rl__rcon {
    rl__gcache *c;
    rl__gentry *ent;
    int32_t n;
    rl_grammar_matcher **m;     /* [n]: one per sequence */
    rl_grammar_constraint **gc; /* [n]: m[k] as the sampler's constraint */
};

/* ---- the cache ---------------------------------------------------------------------- */

rl_status rl__gcache_create(const rl_vocab *v, int32_t n_vocab, rl__gcache **out) {
    *out = NULL;
    rl__gcache *c = rl__calloc(1, sizeof *c);
    if (!c) return RL_ERR_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    c->vocab = v;
    c->n_vocab = n_vocab;
    *out = c;
    return RL_OK;
}

static void entry_free(rl__gentry *en) {
    rl_grammar_free(en->g);
    rl__free(en->text);
    rl__free(en->root);
    rl__free(en);
}

/* Drop one reference (c->mu held). */
static void entry_unref(rl__gentry *en) {
    if (--en->refs == 0) entry_free(en);
}

void rl__gcache_free(rl__gcache *c) {
    if (!c) return;
    for (rl__gentry *en = c->head, *next; en; en = next) {
        next = en->next;
        en->listed = false;
        entry_unref(en);
    }
    rl_grammar_vocab_free(c->gv);
    pthread_mutex_destroy(&c->mu);
    rl__free(c);
}

/* FNV-1a over the text, a separator, the root. */
static uint64_t key_hash(const char *text, size_t len, const char *root) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)text[i]) * 1099511628211ull;
    h = (h ^ 0xFFu) * 1099511628211ull;
    for (const char *p = root; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* The listed entry for the key, moved to the front and referenced (c->mu held). */
static rl__gentry *cache_find(rl__gcache *c, uint64_t h, const char *text, size_t len,
                              const char *root) {
    for (rl__gentry **pp = &c->head; *pp; pp = &(*pp)->next) {
        rl__gentry *en = *pp;
        if (en->hash != h || en->len != len || strcmp(en->root, root) ||
            memcmp(en->text, text, len))
            continue;
        *pp = en->next;
        en->next = c->head;
        c->head = en;
        en->refs++;
        return en;
    }
    return NULL;
}

/* List en at the front (it holds the caller's reference; the cache takes one more) and
 * evict the least recently used entries beyond the cache size (c->mu held). */
static void cache_insert(rl__gcache *c, rl__gentry *en) {
    en->listed = true;
    en->refs++;
    en->next = c->head;
    c->head = en;
    c->n_entries++;
    while (c->n_entries > RL_ENGINE_GRAMMAR_CACHE) {
        rl__gentry **pp = &c->head;
        while ((*pp)->next) pp = &(*pp)->next;
        rl__gentry *last = *pp;
        *pp = NULL;
        last->listed = false;
        c->n_entries--;
        entry_unref(last);
    }
}

/* The compiled grammar for (text, root), from the cache or compiled now; referenced. */
static rl_status grammar_get(rl__gcache *c, const char *text, const char *root,
                             rl__gentry **out, char *err, size_t es) {
    *out = NULL;
    const size_t len = strlen(text);
    const uint64_t h = key_hash(text, len, root);
    pthread_mutex_lock(&c->mu);
    rl__gentry *en = cache_find(c, h, text, len, root);
    if (en) {
        pthread_mutex_unlock(&c->mu);
        *out = en;
        return RL_OK;
    }
    if (!c->gv) {
        rl_status st = rl_grammar_vocab_create(c->vocab, &c->gv);
        if (st != RL_OK) {
            pthread_mutex_unlock(&c->mu);
            rl__fmt(err, es, "grammar: indexing the vocabulary failed: %s", rl_status_str(st));
            return st;
        }
    }
    const rl_grammar_vocab *gv = c->gv; /* lives as long as the cache */
    pthread_mutex_unlock(&c->mu);

    en = rl__calloc(1, sizeof *en);
    if (!en || !(en->text = rl__strndup(text, len)) || !(en->root = rl__strdup(root))) {
        if (en) entry_free(en);
        rl__fmt(err, es, "grammar: out of memory");
        return RL_ERR_NOMEM;
    }
    en->hash = h;
    en->len = len;
    en->refs = 1;
    char msg[400];
    msg[0] = 0;
    /* the cache may keep RL_ENGINE_GRAMMAR_CACHE grammars: their lazily filled mask tables
     * are capped lower than one grammar alone would be (past it masks are only slower) */
    rl_grammar_limits lim = rl_grammar_default_limits();
    lim.max_cache_bytes = RL_MIN(lim.max_cache_bytes, (uint64_t)128 << 20);
    rl_status st = rl_grammar_compile(text, len, root, gv, &lim, &en->g, msg, sizeof msg);
    if (st != RL_OK) {
        entry_free(en);
        rl__fmt(err, es, "grammar: %s", msg[0] ? msg : rl_status_str(st));
        return st;
    }
    pthread_mutex_lock(&c->mu);
    rl__gentry *other = cache_find(c, h, text, len, root); /* compiled meanwhile by another */
    if (other) {
        entry_free(en);
        en = other;
    } else {
        cache_insert(c, en);
    }
    pthread_mutex_unlock(&c->mu);
    *out = en;
    return RL_OK;
}

/* ---- a request's constraint ----------------------------------------------------------- */

rl_status rl__rcon_create(rl__gcache *c, const char *text, const char *root, int32_t n,
                          rl__rcon **out, char *err, size_t es) {
    *out = NULL;
    if (!root) root = "root";
    if (!*root) {
        rl__fmt(err, es, "grammar: the start rule name is empty");
        return RL_ERR_INVALID_ARG;
    }
    rl__rcon *rc = rl__calloc(1, sizeof *rc);
    if (!rc || !(rc->m = rl__calloc((size_t)n, sizeof *rc->m)) ||
        !(rc->gc = rl__calloc((size_t)n, sizeof *rc->gc))) {
        if (rc) rl__free(rc->m);
        rl__free(rc);
        rl__fmt(err, es, "grammar: out of memory");
        return RL_ERR_NOMEM;
    }
    rc->c = c;
    rc->n = n;
    rl_status st = grammar_get(c, text, root, &rc->ent, err, es);
    if (st != RL_OK) {
        rl__rcon_free(rc);
        return st;
    }
    for (int32_t k = 0; k < n; k++) {
        st = rl_grammar_matcher_create(rc->ent->g, 0, &rc->m[k]);
        if (st == RL_OK) st = rl_grammar_constraint_create(rc->m[k], c->n_vocab, &rc->gc[k]);
        if (st != RL_OK) {
            rl__rcon_free(rc);
            rl__fmt(err, es, "grammar: %s", st == RL_ERR_NOMEM ? "out of memory"
                                                                : rl_status_str(st));
            return st;
        }
    }
    *out = rc;
    return RL_OK;
}

void rl__rcon_free(rl__rcon *rc) {
    if (!rc) return;
    for (int32_t k = 0; k < rc->n; k++) {
        if (rc->gc) rl_grammar_constraint_free(rc->gc[k]);
        if (rc->m) rl_grammar_matcher_free(rc->m[k]);
    }
    rl__free(rc->gc);
    rl__free(rc->m);
    if (rc->ent) {
        pthread_mutex_lock(&rc->c->mu);
        entry_unref(rc->ent);
        pthread_mutex_unlock(&rc->c->mu);
    }
    rl__free(rc);
}

/* ---- sampling --------------------------------------------------------------------------- */

/* The sequence's grammar constraint, noting whether the full mask was asked for (the
 * sampled token was rejected): a draw that then fails found no allowed token. */
typedef struct con_ctx {
    const rl_sampler_constraint *inner;
    bool filled;
} con_ctx;

static bool con_allows(void *user, rl_token t) {
    const con_ctx *x = user;
    return x->inner->allows(x->inner->user, t);
}

static rl_status con_fill(void *user, uint8_t *mask, int32_t n_vocab) {
    con_ctx *x = user;
    x->filled = true;
    return x->inner->fill_mask(x->inner->user, mask, n_vocab);
}

rl_status rl__con_sample(rl_engine *e, rl_engine_request *r, int32_t k, const float *logits,
                         rl_token *tok, bool *dead_end, bool *complete) {
    (void)e;
    rl__eseq *q = &r->seq[k];
    *dead_end = *complete = false;
    if (!r->con) {
        rl_status st = rl_sampler_sample(q->smp, logits, NULL, tok);
        return st == RL_OK ? rl_sampler_accept(q->smp, *tok) : st;
    }
    const rl_grammar_constraint *gc = r->con->gc[k];
    con_ctx x = {.inner = rl_grammar_constraint_get(gc), .filled = false};
    const rl_sampler_constraint con = {.allows = con_allows, .fill_mask = con_fill, .user = &x};
    rl_status st = rl_sampler_sample_constrained(q->smp, logits, &con, tok);
    if (st == RL_ERR_INVALID_ARG && x.filled) {
        /* nothing the grammar allows can be drawn: the text cannot go on */
        *dead_end = true;
        *tok = RL_TOKEN_NULL;
        return RL_OK;
    }
    if (st != RL_OK) return st;
    st = rl_grammar_matcher_accept_token(r->con->m[k], *tok);
    if (st != RL_OK) return st;
    *complete = rl_grammar_constraint_done(gc);
    return rl_sampler_accept(q->smp, *tok);
}
