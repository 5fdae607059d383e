/*
 * mask.c - which tokens a matcher state allows, fast.
 *
 * A state is a set of stacks, and a token is allowed when some stack accepts it, so the
 * mask is the union of one mask per stack. The mask of one stack depends on its top frames
 * far more than on the rest: a token of a few bytes rarely pops more than a few frames.
 * So the top K frames of a stack (their positions: the "key") are looked up in a table of
 * the grammar, filled lazily and shared by every matcher, that holds for the key
 *   - the tokens accepted whatever lies below the K frames (context-independent, as
 *     xgrammar calls them: Dong et al. 2024, "XGrammar: Flexible and Efficient Structured
 *     Generation Engine for Large Language Models", section 3.1), and
 *   - the tokens that pop all K frames with bytes left over (context-dependent), each with
 *     the offset where the frames ran out. At run time only their remainders are checked,
 *     against the real frames below; everything else is rejected.
 * A stack with K frames or fewer is known whole: its key has no "below" and no
 * context-dependent tokens.
 *
 * Filling a key walks the vocabulary in byte order (tokens sharing a prefix share the work,
 * as in a trie, and a dead prefix skips every token under it) with a stack set that starts
 * as the K frames over a CTX node. Sets are interned as states of a lazily built automaton
 * with memoized transitions, so the walk of a key costs about one table lookup per trie
 * node, and states repeat across keys (the inside of a string is one state whatever the
 * key). The same walk, without tables, against real stacks, gives the reference mask.
 */
#include "grammar/grammar_impl.h"

#include <stdlib.h>

#define KEY_K 3

enum { EXT_NORMAL = 0, EXT_DEAD = 1, EXT_UONLY = 2 };

/* ---- key entries ----------------------------------------------------------------------- */

typedef struct gkey_entry {
    uint64_t hash;
    uint32_t kn;
    bool ctx;
    uint32_t kpos[KEY_K];
    uint32_t n_acc;
    uint32_t *acc_bits; /* [n_words], or NULL with acc_list */
    int32_t *acc_list;  /* [n_acc] */
    uint32_t n_u;
    int32_t *u_tok;   /* [n_u] tokens whose remainders (piece from u_off) need the frames below */
    uint16_t *u_off;  /* [n_u] */
    uint16_t *u_lcp;  /* [n_u] common prefix of remainder i with remainder i-1 */
    size_t bytes;
} gkey_entry;

struct rl__gkey_table {
    gkey_entry **slot;
    uint32_t n_slot, n;
    uint64_t bytes;
    bool full_warned;
};

static void entry_free(gkey_entry *e) {
    if (!e) return;
    rl__free(e->acc_bits);
    rl__free(e->acc_list);
    rl__free(e->u_tok);
    rl__free(e->u_off);
    rl__free(e->u_lcp);
    rl__free(e);
}

static uint64_t key_hash(const uint32_t *kpos, uint32_t kn, bool ctx) {
    uint64_t h = rl__ghash_ids(kpos, kn, 0x9E3779B97F4A7C15ull ^ kn);
    return h ^ (ctx ? 0x5bd1e995u : 0);
}

static gkey_entry *table_find(const struct rl__gkey_table *t, uint64_t h, const uint32_t *kpos,
                              uint32_t kn, bool ctx) {
    if (!t->n_slot) return NULL;
    uint32_t i = (uint32_t)h & (t->n_slot - 1);
    while (t->slot[i]) {
        gkey_entry *e = t->slot[i];
        if (e->hash == h && e->kn == kn && e->ctx == ctx &&
            !memcmp(e->kpos, kpos, kn * sizeof *kpos))
            return e;
        i = (i + 1) & (t->n_slot - 1);
    }
    return NULL;
}

static bool table_put(struct rl__gkey_table *t, gkey_entry *e) {
    if ((t->n + 1) * 2 > t->n_slot) {
        uint32_t ns = t->n_slot ? t->n_slot * 2 : 64;
        gkey_entry **slot = rl__calloc(ns, sizeof *slot);
        if (!slot) return false;
        for (uint32_t k = 0; k < t->n_slot; k++) {
            if (!t->slot[k]) continue;
            uint32_t i = (uint32_t)t->slot[k]->hash & (ns - 1);
            while (slot[i]) i = (i + 1) & (ns - 1);
            slot[i] = t->slot[k];
        }
        rl__free(t->slot);
        t->slot = slot;
        t->n_slot = ns;
    }
    uint32_t i = (uint32_t)e->hash & (t->n_slot - 1);
    while (t->slot[i]) i = (i + 1) & (t->n_slot - 1);
    t->slot[i] = e;
    t->n++;
    t->bytes += e->bytes;
    return true;
}

/* ---- walker: interned stack sets with memoized transitions ---------------------------- */

typedef struct wstate {
    uint32_t off, n;
    uint64_t hash;
    uint32_t flags;
    uint32_t *ascii; /* [128]: next state + 1, 0 unknown; allocated on first use */
} wstate;

enum { WS_CTX = 1, WS_LIVE = 2 };

struct rl__gwalker {
    rl__gnodes a;
    rl__gctx c;
    rl__gids tmp;
    rl__gids pool;
    wstate *st;
    uint32_t n_st, cap_st;
    uint32_t *sslot;
    uint32_t n_sslot;
    uint64_t *tkey; /* non-ASCII transitions: (state << 32 | cp) + 1, 0 empty */
    uint32_t *tval;
    uint32_t n_t, n_tslot;
    size_t bytes;
    /* depth arrays of one walk */
    uint32_t cap_depth;
    uint32_t *ds, *dc, *ctxoff;
    rl__utf8p *dp;
    uint8_t *dacc, *dext;
};

static void walker_clear(rl__gwalker *w) {
    for (uint32_t i = 0; i < w->n_st; i++) rl__free(w->st[i].ascii);
    rl__free(w->st);
    rl__free(w->sslot);
    rl__free(w->tkey);
    rl__free(w->tval);
    rl__gids_free(&w->pool);
    rl__gids_free(&w->tmp);
    rl__gids_free(&w->c.work);
    rl__gnodes_free(&w->a);
    w->st = NULL;
    w->sslot = NULL;
    w->tkey = NULL;
    w->tval = NULL;
    w->n_st = w->cap_st = w->n_sslot = w->n_t = w->n_tslot = 0;
    w->bytes = 0;
}

static void walker_free(rl__gwalker *w) {
    if (!w) return;
    walker_clear(w);
    rl__free(w->ds);
    rl__free(w->dc);
    rl__free(w->ctxoff);
    rl__free(w->dp);
    rl__free(w->dacc);
    rl__free(w->dext);
    rl__free(w);
}

static uint32_t intern(rl__gwalker *w, const uint32_t *ids, uint32_t n);

static rl_status walker_start(rl__gwalker *w, const rl_grammar *g) {
    rl_status st = rl__gnodes_init(&w->a, g->lim.max_nodes);
    if (st != RL_OK) return st;
    memset(&w->c, 0, sizeof w->c);
    w->c.g = g;
    w->c.a = &w->a;
    if (intern(w, NULL, 0) != 0) return RL_ERR_NOMEM;
    return RL_OK;
}

static uint32_t intern(rl__gwalker *w, const uint32_t *ids, uint32_t n) {
    uint64_t h = rl__ghash_ids(ids, n, 0xcbf29ce484222325ull);
    if ((w->n_st + 1) * 2 > w->n_sslot) {
        uint32_t ns = w->n_sslot ? w->n_sslot * 2 : 1024;
        uint32_t *slot = rl__calloc(ns, sizeof *slot);
        if (!slot) return UINT32_MAX;
        for (uint32_t s = 0; s < w->n_st; s++) {
            uint32_t i = (uint32_t)w->st[s].hash & (ns - 1);
            while (slot[i]) i = (i + 1) & (ns - 1);
            slot[i] = s + 1;
        }
        rl__free(w->sslot);
        w->sslot = slot;
        w->n_sslot = ns;
        w->bytes += (size_t)ns * 4;
    }
    uint32_t i = (uint32_t)h & (w->n_sslot - 1);
    while (w->sslot[i]) {
        const wstate *s = &w->st[w->sslot[i] - 1];
        if (s->hash == h && s->n == n && (!n || !memcmp(w->pool.v + s->off, ids, n * sizeof *ids)))
            return w->sslot[i] - 1;
        i = (i + 1) & (w->n_sslot - 1);
    }
    if (w->n_st == w->cap_st) {
        uint32_t nc = w->cap_st ? w->cap_st * 2 : 256;
        wstate *nst = rl__realloc(w->st, (size_t)nc * sizeof *nst);
        if (!nst) return UINT32_MAX;
        w->st = nst;
        w->cap_st = nc;
    }
    uint32_t off = w->pool.n;
    for (uint32_t k = 0; k < n; k++)
        if (!rl__gids_push(&w->pool, ids[k])) return UINT32_MAX;
    const rl_grammar *g = w->c.g;
    uint32_t flags = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t pos = w->a.v[ids[k]].pos;
        if (ids[k] == RL__GN_CTX) flags |= WS_CTX;
        else if (pos != RL__GPOS_NONE && g->pos[pos].kind == RL__P_CLS) flags |= WS_LIVE;
    }
    uint32_t id = w->n_st++;
    w->st[id] = (wstate){off, n, h, flags, NULL};
    w->sslot[i] = id + 1;
    w->bytes += sizeof(wstate) + (size_t)n * 4;
    return id;
}

/* Next state of s on code point cp; UINT32_MAX on errors (w->c.st). */
static uint32_t trans(rl__gwalker *w, uint32_t s, uint32_t cp) {
    if (cp < 128) {
        if (w->st[s].ascii && w->st[s].ascii[cp]) return w->st[s].ascii[cp] - 1;
    } else if (w->n_tslot) {
        uint64_t k = ((uint64_t)s << 32 | cp) + 1;
        uint32_t i = (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 40) & (w->n_tslot - 1);
        while (w->tkey[i]) {
            if (w->tkey[i] == k) return w->tval[i];
            i = (i + 1) & (w->n_tslot - 1);
        }
    }
    if (s == 0) return 0;
    rl__gstep(&w->c, w->pool.v + w->st[s].off, w->st[s].n, cp, &w->tmp);
    if (w->c.st != RL_OK) return UINT32_MAX;
    uint32_t ns = intern(w, w->tmp.v, w->tmp.n);
    if (ns == UINT32_MAX) {
        w->c.st = RL_ERR_NOMEM;
        return UINT32_MAX;
    }
    if (cp < 128) {
        if (!w->st[s].ascii) {
            w->st[s].ascii = rl__calloc(128, sizeof *w->st[s].ascii);
            if (!w->st[s].ascii) return ns;
            w->bytes += 512;
        }
        w->st[s].ascii[cp] = ns + 1;
        return ns;
    }
    if ((w->n_t + 1) * 2 > w->n_tslot) {
        uint32_t nt = w->n_tslot ? w->n_tslot * 2 : 1024;
        uint64_t *tk = rl__calloc(nt, sizeof *tk);
        uint32_t *tv = rl__malloc((size_t)nt * sizeof *tv);
        if (!tk || !tv) {
            rl__free(tk);
            rl__free(tv);
            return ns;
        }
        for (uint32_t j = 0; j < w->n_tslot; j++) {
            if (!w->tkey[j]) continue;
            uint32_t i = (uint32_t)((w->tkey[j] * 0x9E3779B97F4A7C15ull) >> 40) & (nt - 1);
            while (tk[i]) i = (i + 1) & (nt - 1);
            tk[i] = w->tkey[j];
            tv[i] = w->tval[j];
        }
        rl__free(w->tkey);
        rl__free(w->tval);
        w->tkey = tk;
        w->tval = tv;
        w->bytes += (size_t)(nt - w->n_tslot) * 12;
        w->n_tslot = nt;
    }
    uint64_t k = ((uint64_t)s << 32 | cp) + 1;
    uint32_t i = (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 40) & (w->n_tslot - 1);
    while (w->tkey[i]) i = (i + 1) & (w->n_tslot - 1);
    w->tkey[i] = k;
    w->tval[i] = ns;
    w->n_t++;
    return ns;
}

static bool walker_depth(rl__gwalker *w, uint32_t need) {
    if (need <= w->cap_depth) return true;
    rl__free(w->ds);
    rl__free(w->dc);
    rl__free(w->ctxoff);
    rl__free(w->dp);
    rl__free(w->dacc);
    rl__free(w->dext);
    w->ds = rl__malloc((size_t)need * sizeof *w->ds);
    w->dc = rl__malloc((size_t)need * sizeof *w->dc);
    w->ctxoff = rl__malloc((size_t)need * sizeof *w->ctxoff);
    w->dp = rl__malloc((size_t)need * sizeof *w->dp);
    w->dacc = rl__malloc(need);
    w->dext = rl__malloc(need);
    w->cap_depth = need;
    if (!w->ds || !w->dc || !w->ctxoff || !w->dp || !w->dacc || !w->dext) {
        w->cap_depth = 0;
        return false;
    }
    return true;
}

/* ---- filling a key ------------------------------------------------------------------------- */

typedef struct uent {
    int32_t tok;
    uint16_t off;
} uent;

static int cmp_uent(const void *x, const void *y, void *arg) {
    const rl_grammar_vocab *gv = arg;
    const uent *a = x, *b = y;
    uint32_t la, lb;
    const unsigned char *pa = rl__gv_piece(gv, a->tok, &la), *pb = rl__gv_piece(gv, b->tok, &lb);
    pa += a->off;
    pb += b->off;
    la -= a->off;
    lb -= b->off;
    int c = memcmp(pa, pb, RL_MIN(la, lb));
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return (a->tok > b->tok) - (a->tok < b->tok);
}

/* The entry of key (kpos[0] the top frame's position); called with g->lock held. */
static rl_status key_compute(const rl_grammar *g, const uint32_t *kpos, uint32_t kn, bool ctx,
                             uint64_t h, gkey_entry **out) {
    rl__gwalker *w = g->walker;
    const rl_grammar_vocab *gv = g->gv;
    *out = NULL;
    if (w->a.n > g->lim.max_nodes / 2 || w->bytes > (g->lim.max_cache_bytes >> 3)) {
        walker_clear(w); /* the automaton is only a cache: start over */
        rl_status st = walker_start(w, g);
        if (st != RL_OK) return st;
    }
    w->c.st = RL_OK;
    if (!walker_depth(w, gv->max_len + 2)) return RL_ERR_NOMEM;

    gkey_entry *e = rl__calloc(1, sizeof *e);
    uint32_t *bits = rl__calloc(gv->n_words, sizeof *bits);
    uent *u = NULL;
    uint32_t n_u = 0, cap_u = 0, n_acc = 0;
    rl_status st = RL_ERR_NOMEM;
    if (!e || !bits) goto fail;

    uint32_t node = ctx ? RL__GN_CTX : RL__GN_EMPTY;
    for (uint32_t k = kn; k-- > 0;) {
        node = rl__gnode_get(&w->a, kpos[k], node, &st);
        if (node == UINT32_MAX) goto fail;
    }
    uint32_t s0 = intern(w, &node, 1);
    if (s0 == UINT32_MAX) goto fail;

    uint32_t *S = w->ds, *C = w->dc, *ctxoff = w->ctxoff;
    rl__utf8p *P = w->dp;
    uint8_t *acc = w->dacc, *ext = w->dext;
    S[0] = s0;
    C[0] = 0;
    memset(&P[0], 0, sizeof P[0]);
    acc[0] = 0;
    ext[0] = EXT_NORMAL;
    uint32_t valid = 0;
    for (int32_t i = 0; i < gv->n_sorted;) {
        int32_t t = gv->sorted[i];
        uint32_t L;
        const unsigned char *piece = rl__gv_piece(gv, t, &L);
        uint32_t d = RL_MIN((uint32_t)gv->lcp[i], valid);
        while (d < L && ext[d] == EXT_NORMAL) {
            rl__utf8p p = P[d];
            uint32_t cp;
            int r = rl__utf8_step(&p, piece[d], &cp);
            C[d + 1] = C[d];
            if (r < 0) {
                S[d + 1] = 0;
                memset(&P[d + 1], 0, sizeof P[d + 1]);
                acc[d + 1] = 0;
                ext[d + 1] = C[d] ? EXT_UONLY : EXT_DEAD;
            } else if (r == 0) {
                S[d + 1] = S[d];
                P[d + 1] = p;
                const wstate *ws = &w->st[S[d]];
                bool ok = rl__gpartial_ok(g, &w->a, w->pool.v + ws->off, ws->n, &p);
                acc[d + 1] = ok;
                ext[d + 1] = ok ? EXT_NORMAL : C[d] ? EXT_UONLY : EXT_DEAD;
            } else {
                uint32_t ns = trans(w, S[d], cp);
                if (ns == UINT32_MAX) {
                    st = w->c.st;
                    goto fail;
                }
                S[d + 1] = ns;
                memset(&P[d + 1], 0, sizeof P[d + 1]);
                if (w->st[ns].flags & WS_CTX) ctxoff[C[d + 1]++] = d + 1;
                acc[d + 1] = w->st[ns].n > 0;
                ext[d + 1] = (w->st[ns].flags & WS_LIVE) ? EXT_NORMAL
                             : C[d + 1]                  ? EXT_UONLY
                                                         : EXT_DEAD;
            }
            d++;
        }
        valid = d;
        /* the entries sharing the first d bytes, when nothing past them is live, all end
         * here: those equal to the prefix (they come first) as the prefix, the longer ones
         * as what lies past it */
        int32_t end = ext[d] == EXT_NORMAL ? i + 1 : rl__gv_subtree_end(gv, i, d);
        for (int32_t j = i; j < end; j++) {
            int32_t tj = gv->sorted[j];
            uint32_t Lj;
            rl__gv_piece(gv, tj, &Lj);
            bool as_u;
            if (Lj == d) {
                if (acc[d]) {
                    bits[tj >> 5] |= 1u << (tj & 31);
                    n_acc++;
                    continue;
                }
                as_u = C[d] > 0;
            } else {
                if (ext[d] == EXT_DEAD) break;
                as_u = true;
            }
            if (!as_u) continue;
            for (uint32_t k = 0; k < C[d]; k++) {
                if (n_u == cap_u) {
                    uint32_t nc = cap_u ? cap_u * 2 : 256;
                    uent *nu = rl__realloc(u, (size_t)nc * sizeof *nu);
                    if (!nu) goto fail;
                    u = nu;
                    cap_u = nc;
                }
                u[n_u++] = (uent){tj, (uint16_t)ctxoff[k]};
            }
        }
        i = end;
    }

    e->hash = h;
    e->kn = kn;
    e->ctx = ctx;
    memcpy(e->kpos, kpos, kn * sizeof *kpos);
    e->n_acc = n_acc;
    if (n_acc < gv->n_words) {
        e->acc_list = rl__malloc((size_t)(n_acc ? n_acc : 1) * sizeof *e->acc_list);
        if (!e->acc_list) goto fail;
        uint32_t k = 0;
        for (uint32_t wd = 0; wd < gv->n_words; wd++)
            for (uint32_t b = bits[wd]; b; b &= b - 1)
                e->acc_list[k++] = (int32_t)(wd * 32 + (uint32_t)__builtin_ctz(b));
        rl__free(bits);
        bits = NULL;
        e->bytes = sizeof *e + (size_t)n_acc * 4;
    } else {
        e->acc_bits = bits;
        bits = NULL;
        e->bytes = sizeof *e + (size_t)gv->n_words * 4;
    }
    e->n_u = n_u;
    if (n_u) {
        qsort_r(u, n_u, sizeof *u, cmp_uent, (void *)gv);
        e->u_tok = rl__malloc((size_t)n_u * sizeof *e->u_tok);
        e->u_off = rl__malloc((size_t)n_u * sizeof *e->u_off);
        e->u_lcp = rl__malloc((size_t)n_u * sizeof *e->u_lcp);
        if (!e->u_tok || !e->u_off || !e->u_lcp) goto fail;
        for (uint32_t k = 0; k < n_u; k++) {
            e->u_tok[k] = u[k].tok;
            e->u_off[k] = u[k].off;
            uint32_t l = 0;
            if (k > 0) {
                uint32_t la, lb;
                const unsigned char *a = rl__gv_piece(gv, u[k - 1].tok, &la) + u[k - 1].off;
                const unsigned char *b = rl__gv_piece(gv, u[k].tok, &lb) + u[k].off;
                la -= u[k - 1].off;
                lb -= u[k].off;
                uint32_t m = RL_MIN(la, lb);
                while (l < m && a[l] == b[l]) l++;
            }
            e->u_lcp[k] = (uint16_t)l;
        }
        e->bytes += (size_t)n_u * 8;
    }
    rl__free(u);
    *out = e;
    return RL_OK;
fail:
    rl__free(bits);
    rl__free(u);
    entry_free(e);
    return st == RL_OK ? RL_ERR_NOMEM : st;
}

rl_status rl__gmask_init(rl_grammar *g) {
    if (pthread_mutex_init(&g->lock, NULL) != 0) return RL_ERR_INTERNAL;
    g->keys = rl__calloc(1, sizeof *g->keys);
    if (!g->keys) return RL_ERR_NOMEM;
    if (!g->gv) return RL_OK;
    g->walker = rl__calloc(1, sizeof *g->walker);
    if (!g->walker) return RL_ERR_NOMEM;
    return walker_start(g->walker, g);
}

void rl__gmask_free(rl_grammar *g) {
    if (!g->keys) return;
    for (uint32_t i = 0; i < g->keys->n_slot; i++) entry_free(g->keys->slot[i]);
    rl__free(g->keys->slot);
    rl__free(g->keys);
    g->keys = NULL;
    walker_free(g->walker);
    g->walker = NULL;
    pthread_mutex_destroy(&g->lock);
}

/* ---- run-time walks against real stacks ------------------------------------------------- */

/* Walk strings (the pieces of tok[i] from off[i], sorted, lcp[i] with the previous) from
 * the set start[0..n_start) with pending UTF-8 *p0; set the bit of every token accepted.
 * Uses the frames of c's arena; no tables. */
static rl_status rt_walk(rl__gctx *c, const uint32_t *start, uint32_t n_start, const rl__utf8p *p0,
                         uint32_t n_ent, const int32_t *tok, const uint16_t *off,
                         const uint16_t *lcp, uint32_t *mask) {
    const rl_grammar *g = c->g;
    const rl_grammar_vocab *gv = g->gv;
    uint32_t cap = gv->max_len + 2;
    uint32_t *soff = rl__malloc((size_t)cap * sizeof *soff);
    uint32_t *sn = rl__malloc((size_t)cap * sizeof *sn);
    rl__utf8p *P = rl__malloc((size_t)cap * sizeof *P);
    uint8_t *acc = rl__malloc(cap), *ext = rl__malloc(cap);
    rl__gids pool = {0}, tmp = {0};
    rl_status st = RL_ERR_NOMEM;
    if (!soff || !sn || !P || !acc || !ext) goto done;
    for (uint32_t k = 0; k < n_start; k++)
        if (!rl__gids_push(&pool, start[k])) goto done;
    soff[0] = 0;
    sn[0] = n_start;
    P[0] = *p0;
    acc[0] = 0;
    ext[0] = EXT_NORMAL;
    uint32_t valid = 0;
    for (uint32_t i = 0; i < n_ent;) {
        uint32_t L;
        const unsigned char *s = rl__gv_piece(gv, tok[i], &L);
        uint32_t o = off ? off[i] : 0;
        s += o;
        L -= o;
        uint32_t d = RL_MIN((uint32_t)lcp[i], valid);
        while (d < L && ext[d] == EXT_NORMAL) {
            rl__utf8p p = P[d];
            uint32_t cp;
            int r = rl__utf8_step(&p, s[d], &cp);
            pool.n = soff[d] + sn[d];
            if (r < 0) {
                soff[d + 1] = pool.n;
                sn[d + 1] = 0;
                acc[d + 1] = 0;
                ext[d + 1] = EXT_DEAD;
            } else if (r == 0) {
                soff[d + 1] = soff[d];
                sn[d + 1] = sn[d];
                P[d + 1] = p;
                bool ok = rl__gpartial_ok(g, c->a, pool.v + soff[d], sn[d], &p);
                acc[d + 1] = ok;
                ext[d + 1] = ok ? EXT_NORMAL : EXT_DEAD;
            } else {
                rl__gstep(c, pool.v + soff[d], sn[d], cp, &tmp);
                if (c->st != RL_OK) {
                    st = c->st;
                    goto done;
                }
                soff[d + 1] = pool.n;
                sn[d + 1] = tmp.n;
                bool live = false;
                for (uint32_t k = 0; k < tmp.n; k++) {
                    if (!rl__gids_push(&pool, tmp.v[k])) goto done;
                    uint32_t pos = c->a->v[tmp.v[k]].pos;
                    if (pos != RL__GPOS_NONE && g->pos[pos].kind == RL__P_CLS) live = true;
                }
                memset(&P[d + 1], 0, sizeof P[d + 1]);
                acc[d + 1] = tmp.n > 0;
                ext[d + 1] = live ? EXT_NORMAL : EXT_DEAD;
            }
            d++;
        }
        valid = d;
        uint32_t end = i + 1;
        if (ext[d] != EXT_NORMAL) {
            if (!off) { /* the whole vocabulary: its trie knows where the subtree ends */
                end = (uint32_t)rl__gv_subtree_end(gv, (int32_t)i, d);
            } else {
                while (end < n_ent && lcp[end] >= d) end++;
            }
        }
        if (acc[d]) { /* the entries equal to the prefix come first */
            for (uint32_t j = i; j < end; j++) {
                uint32_t Lj;
                rl__gv_piece(gv, tok[j], &Lj);
                if (Lj - (off ? off[j] : 0) != d) break;
                mask[tok[j] >> 5] |= 1u << (tok[j] & 31);
            }
        }
        i = end;
    }
    st = RL_OK;
done:
    rl__free(soff);
    rl__free(sn);
    rl__free(P);
    rl__free(acc);
    rl__free(ext);
    rl__gids_free(&pool);
    rl__gids_free(&tmp);
    return st;
}

rl_status rl__gmask_fill_slow(rl__gctx *c, const uint32_t *in, uint32_t n, const rl__utf8p *p,
                              uint32_t *mask) {
    const rl_grammar_vocab *gv = c->g->gv;
    memset(mask, 0, (size_t)gv->n_words * sizeof *mask);
    return rt_walk(c, in, n, p, (uint32_t)gv->n_sorted, gv->sorted, NULL, gv->lcp, mask);
}

/* Mask of stack s (top CLS) through its key. */
static rl_status key_fill(rl__gctx *c, uint32_t s, uint32_t *mask) {
    rl_grammar *g = (rl_grammar *)c->g; /* the lazily filled tables are behind g->lock */
    const rl_grammar_vocab *gv = g->gv;
    uint32_t kpos[KEY_K], kn = 0, x = s;
    while (kn < KEY_K && x != RL__GN_EMPTY) {
        kpos[kn++] = c->a->v[x].pos;
        x = c->a->v[x].parent;
    }
    bool ctx = x != RL__GN_EMPTY;
    uint64_t h = key_hash(kpos, kn, ctx);
    pthread_mutex_lock(&g->lock);
    gkey_entry *e = table_find(g->keys, h, kpos, kn, ctx);
    bool owned = false;
    rl_status st = RL_OK;
    if (!e) {
        st = key_compute(g, kpos, kn, ctx, h, &e);
        if (st == RL_OK) {
            if (g->keys->bytes + e->bytes <= g->lim.max_cache_bytes && table_put(g->keys, e))
                ;
            else
                owned = true; /* over the memory bound: use once, do not keep */
        }
    }
    pthread_mutex_unlock(&g->lock);
    if (st != RL_OK) {
        /* the precomputation hit a limit: the plain walk still gives the right answer */
        rl__utf8p none = {0};
        uint32_t *tmp = rl__calloc(gv->n_words, sizeof *tmp);
        if (!tmp) return RL_ERR_NOMEM;
        st = rt_walk(c, &s, 1, &none, (uint32_t)gv->n_sorted, gv->sorted, NULL, gv->lcp, tmp);
        for (uint32_t i = 0; st == RL_OK && i < gv->n_words; i++) mask[i] |= tmp[i];
        rl__free(tmp);
        return st;
    }
    if (e->acc_bits) {
        const uint32_t *b = e->acc_bits;
        for (uint32_t i = 0; i < gv->n_words; i++) mask[i] |= b[i];
    } else {
        for (uint32_t i = 0; i < e->n_acc; i++) {
            int32_t t = e->acc_list[i];
            mask[t >> 5] |= 1u << (t & 31);
        }
    }
    if (e->n_u) {
        rl__gids below = {0};
        rl__gset_begin(c, &below);
        rl__gexpand(c, x, &below);
        rl__gset_finish(&below);
        rl__utf8p none = {0};
        if (c->st != RL_OK) st = c->st;
        else st = rt_walk(c, below.v, below.n, &none, e->n_u, e->u_tok, e->u_off, e->u_lcp, mask);
        rl__gids_free(&below);
    }
    if (owned) entry_free(e);
    return st;
}

rl_status rl__gmask_fill(rl__gctx *c, const uint32_t *in, uint32_t n, const rl__utf8p *p,
                         uint32_t *mask) {
    const rl_grammar *g = c->g;
    const rl_grammar_vocab *gv = g->gv;
    if (p->need) return rl__gmask_fill_slow(c, in, n, p, mask);
    memset(mask, 0, (size_t)gv->n_words * sizeof *mask);
    int64_t not_id = -1; /* the one token a TOKNOT top excludes, -2: several differ */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pos = c->a->v[in[i]].pos;
        if (pos == RL__GPOS_NONE) continue;
        const rl__gpos *q = &g->pos[pos];
        if (q->kind == RL__P_TOK) {
            if (q->arg < (uint32_t)gv->n_tokens) mask[q->arg >> 5] |= 1u << (q->arg & 31);
        } else if (q->kind == RL__P_TOKNOT) {
            if (not_id == -1) not_id = q->arg;
            else if (not_id != (int64_t)q->arg) not_id = -2;
        } else if (q->kind == RL__P_CLS) {
            rl_status st = key_fill(c, in[i], mask);
            if (st != RL_OK) return st;
        }
    }
    if (not_id != -1) {
        bool had = not_id >= 0 && not_id < gv->n_tokens &&
                   ((mask[not_id >> 5] >> (not_id & 31)) & 1);
        for (uint32_t i = 0; i < gv->n_words; i++) mask[i] |= ~gv->eog[i];
        if (not_id >= 0 && not_id < gv->n_tokens && !had)
            mask[not_id >> 5] &= ~(1u << (not_id & 31));
        uint32_t tail = (uint32_t)gv->n_tokens & 31;
        if (tail) mask[gv->n_words - 1] &= (1u << tail) - 1;
    }
    return RL_OK;
}

rl_status rl__gmask_warm(rl_grammar *g, char *err, size_t err_size) {
    rl__gnodes a;
    rl_status st = rl__gnodes_init(&a, g->lim.max_nodes);
    if (st != RL_OK) return st;
    rl__gctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.a = &a;
    rl__gids s = {0};
    uint32_t *mask = g->gv ? rl__malloc((size_t)g->gv->n_words * sizeof *mask) : NULL;
    rl__utf8p none = {0};
    if (g->gv && !mask) {
        st = RL_ERR_NOMEM;
    } else {
        rl__ginitial(&c, &s);
        st = c.st;
        if (st == RL_OK && g->gv) st = rl__gmask_fill(&c, s.v, s.n, &none, mask);
        if (st != RL_OK && st != RL_ERR_NOMEM)
            rl__fmt(err, err_size, "at the start of the grammar: %s", c.msg[0] ? c.msg : rl_status_str(st));
    }
    rl__free(mask);
    rl__gids_free(&s);
    rl__gids_free(&c.work);
    rl__gnodes_free(&a);
    return st;
}
