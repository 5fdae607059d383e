/*
 * mask.c - which tokens a matcher state allows, fast.
 *
 * A state is a set of stacks, and a token is allowed when some stack accepts it, so the
 * mask is the union of one mask per stack. The mask of one stack depends on its top frames
 * far more than on the rest: a token of a few bytes rarely pops more than a few frames.
 * So the top frames of a stack (their positions: the "key") are looked up in a table of
 * the grammar, filled lazily and shared by every matcher, that holds for the key
 *   - the tokens accepted whatever lies below the key's frames (context-independent, as
 *     xgrammar calls them: Dong et al. 2024, "XGrammar: Flexible and Efficient Structured
 *     Generation Engine for Large Language Models", section 3.1), and
 *   - the tokens that pop all of them with bytes left over (context-dependent), each with
 *     the offset where the frames ran out. At run time only their remainders are checked,
 *     against the real frames below; everything else is rejected.
 * A key ends in one of two ways:
 *   EMPTY  the stack is known whole (it has at most KEY_K frames): no context-dependent
 *          tokens;
 *   CTX    after KEY_K frames (counted repetitions not counted): what lies below is unknown.
 * The first frame of a counted repetition S{min,max} in a key (compile.c) is left open,
 * so that one key serves every count: an accepted token records the rounds J it starts
 * (allowed while the repetition has J rounds left), and a stack that leaves the
 * repetition after j rounds goes on through the key's frames below it, rebuilt over a
 * bottom tagged j, so that what it accepts is allowed when need <= j <= rem. Tokens left
 * inside a UTF-8 character by the previous token have keys of their own (the character
 * so far is part of the key).
 *
 * Filling a key walks the vocabulary in byte order (tokens sharing a prefix share the work,
 * as in a trie, and a dead prefix skips every token under it) with a stack set that starts
 * as the key's frames. Sets are interned as states of a lazily built automaton with
 * memoized transitions, so the walk of a key costs about one table lookup per trie node,
 * and states repeat across keys (the inside of a string is one state whatever the key).
 * The same walk, without tables, against real stacks, gives the reference mask.
 */
#include "grammar/grammar_impl.h"

#include <stdlib.h>

#define KEY_K 3   /* frames of a CTX key */
#define KEY_MAX 8 /* frames of any key */
#define CUM_J 16  /* REP keys: accepted sets for J <= 0 .. CUM_J - 1 kept as bit sets */

enum { EXT_NORMAL = 0, EXT_DEAD = 1, EXT_UONLY = 2 };
enum { KB_EMPTY = 0, KB_CTX = 1 };

/* ---- key entries ----------------------------------------------------------------------- */

typedef struct gkey_entry {
    uint64_t hash;
    uint32_t kn;
    uint32_t bottom; /* KB_*; an open repetition has kcnt RL__REP_SYM */
    uint32_t kpos[KEY_MAX];
    uint32_t kcnt[KEY_MAX];
    rl__utf8p part; /* the unfinished character the tokens start with (need 0: none) */
    /* accepted tokens: all of them as bits (when many), and as a list sorted by the rounds
     * J they start (REP keys; 0 otherwise); cum[t]: those with J <= t (REP keys, many) */
    uint32_t n_acc;
    uint32_t jmax;
    uint32_t *acc_bits; /* [n_words] or NULL */
    int32_t *acc_list;  /* [n_acc] or NULL (CTX / EMPTY keys with bits) */
    uint16_t *acc_j;    /* [n_acc] with acc_list */
    uint32_t *jidx;     /* [jmax + 2] with acc_list: first entry with J >= j */
    uint32_t *cum;      /* [CUM_J][n_words] or NULL */
    /* context-dependent: remainder of u_tok from u_off (sorted; u_lcp with the previous),
     * u_j the rounds when leaving an open repetition */
    uint32_t n_u;
    int32_t *u_tok;
    uint16_t *u_off;
    uint16_t *u_lcp;
    uint16_t *u_j;
    size_t bytes;
} gkey_entry;

struct rl__gkey_table {
    gkey_entry **slot;
    uint32_t n_slot, n;
    uint64_t bytes;
};

static void entry_free(gkey_entry *e) {
    if (!e) return;
    rl__free(e->acc_bits);
    rl__free(e->acc_list);
    rl__free(e->acc_j);
    rl__free(e->jidx);
    rl__free(e->cum);
    rl__free(e->u_tok);
    rl__free(e->u_off);
    rl__free(e->u_lcp);
    rl__free(e->u_j);
    rl__free(e);
}

static bool part_eq(const rl__utf8p *a, const rl__utf8p *b) {
    return a->need == b->need && (!a->need || (a->value == b->value && a->len == b->len));
}

static uint64_t key_hash(const uint32_t *kpos, const uint32_t *kcnt, uint32_t kn, uint32_t bottom,
                         const rl__utf8p *part) {
    uint64_t h = rl__ghash_ids(kpos, kn, 0x9E3779B97F4A7C15ull ^ kn);
    h = rl__ghash_ids(kcnt, kn, h);
    if (part->need)
        h ^= ((uint64_t)part->value << 8 | part->need << 4 | part->len) * 0xff51afd7ed558ccdull;
    return h ^ ((uint64_t)bottom * 0x5bd1e995u);
}

static gkey_entry *table_find(const struct rl__gkey_table *t, uint64_t h, const uint32_t *kpos,
                              const uint32_t *kcnt, uint32_t kn, uint32_t bottom,
                              const rl__utf8p *part) {
    if (!t->n_slot) return NULL;
    uint32_t i = (uint32_t)h & (t->n_slot - 1);
    while (t->slot[i]) {
        gkey_entry *e = t->slot[i];
        if (e->hash == h && e->kn == kn && e->bottom == bottom && part_eq(&e->part, part) &&
            !memcmp(e->kpos, kpos, kn * sizeof *kpos) && !memcmp(e->kcnt, kcnt, kn * sizeof *kcnt))
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
    uint32_t started;  /* fewest rounds of the open repetition among the stacks still in it */
    uint32_t xoff, xn; /* rounds j of the stacks that left it (tagged bottoms), in xpool */
    uint32_t *ascii;   /* [128]: next state + 1, 0 unknown; allocated on first use */
} wstate;

enum { WS_CTX = 1, WS_LIVE = 2 }; /* WS_CTX: holds CTX itself (tagged or not) */
#define NO_ROUNDS 0xffffffffu

struct rl__gwalker {
    rl__gnodes a;
    rl__gctx c;
    rl__gids tmp;
    rl__gids pool;
    rl__gids xpool;
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
    rl__gids_free(&w->xpool);
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
    uint32_t flags = 0, started = NO_ROUNDS, xoff = w->xpool.n;
    for (uint32_t k = 0; k < n; k++) {
        const rl__gnode *x = &w->a.v[ids[k]];
        if (x->pos != RL__GPOS_NONE && g->pos[x->pos].kind == RL__P_CLS) flags |= WS_LIVE;
        if (x->pos == RL__GPOS_NONE &&
            (ids[k] == RL__GN_CTX || (x->cnt && x->parent == RL__GN_CTX)))
            flags |= WS_CTX;
        /* down to the open repetition's frame (still in it) or to the bottom */
        const rl__gnode *y = x;
        bool inside = false;
        for (; y->pos != RL__GPOS_NONE; y = &w->a.v[y->parent]) {
            if (g->pos[y->pos].kind == RL__P_REP && (y->cnt & RL__REP_SYM)) {
                started = RL_MIN(started, y->cnt & ~RL__REP_SYM);
                inside = true;
                break;
            }
        }
        if (!inside && y->cnt) { /* over a bottom tagged j: left after j rounds */
            uint32_t j = y->cnt - 1;
            bool dup = false;
            for (uint32_t q = xoff; q < w->xpool.n && !dup; q++) dup = w->xpool.v[q] == j;
            if (!dup && !rl__gids_push(&w->xpool, j)) return UINT32_MAX;
        }
    }
    uint32_t id = w->n_st++;
    w->st[id] = (wstate){off, n, h, flags, started, xoff, w->xpool.n - xoff, NULL};
    w->sslot[i] = id + 1;
    w->bytes += sizeof(wstate) + (size_t)n * 4;
    return id;
}

/* For a token ending inside a UTF-8 character with partial p in state s: fewest rounds of
 * the stacks still in the open repetition that can take p (*started), and the rounds of
 * those that left it, into tags[0..*n_tags) (at most cap). */
static void partial_rounds(rl__gwalker *w, uint32_t s, const rl__utf8p *p, uint32_t *started,
                           uint32_t *tags, uint32_t *n_tags, uint32_t cap) {
    const rl_grammar *g = w->c.g;
    const wstate *ws = &w->st[s];
    *started = NO_ROUNDS;
    *n_tags = 0;
    for (uint32_t k = 0; k < ws->n; k++) {
        uint32_t id = w->pool.v[ws->off + k];
        if (!rl__gpartial_ok(g, &w->a, &id, 1, p)) continue;
        const rl__gnode *y = &w->a.v[id];
        bool inside = false;
        for (; y->pos != RL__GPOS_NONE; y = &w->a.v[y->parent]) {
            if (g->pos[y->pos].kind == RL__P_REP && (y->cnt & RL__REP_SYM)) {
                *started = RL_MIN(*started, y->cnt & ~RL__REP_SYM);
                inside = true;
                break;
            }
        }
        if (!inside && y->cnt && *n_tags < cap) {
            bool dup = false;
            for (uint32_t q = 0; q < *n_tags && !dup; q++) dup = tags[q] == y->cnt - 1;
            if (!dup) tags[(*n_tags)++] = y->cnt - 1;
        }
    }
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
    uint16_t off, j;
} uent;

typedef struct aent {
    int32_t tok;
    uint32_t j;
} aent;

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
    if (a->tok != b->tok) return a->tok < b->tok ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

typedef struct collect {
    aent *a;
    uint32_t n_a, cap_a;
    uent *u;
    uint32_t n_u, cap_u;
} collect;

static bool add_a(collect *k, int32_t tok, uint32_t j) {
    if (k->n_a == k->cap_a) {
        uint32_t nc = k->cap_a ? k->cap_a * 2 : 1024;
        aent *na = rl__realloc(k->a, (size_t)nc * sizeof *na);
        if (!na) return false;
        k->a = na;
        k->cap_a = nc;
    }
    k->a[k->n_a++] = (aent){tok, j};
    return true;
}

static bool add_u(collect *k, int32_t tok, uint32_t off, uint32_t j) {
    if (k->n_u == k->cap_u) {
        uint32_t nc = k->cap_u ? k->cap_u * 2 : 256;
        uent *nu = rl__realloc(k->u, (size_t)nc * sizeof *nu);
        if (!nu) return false;
        k->u = nu;
        k->cap_u = nc;
    }
    k->u[k->n_u++] = (uent){tok, (uint16_t)off, (uint16_t)RL_MIN(j, 0xffffu)};
    return true;
}

/* Record where the key's frames ran out in state ns after d bytes: CTX itself, or CTX
 * tagged j (left an open repetition after j rounds). */
static bool note_exits(rl__gwalker *w, uint32_t ns, uint32_t d, uint32_t *C, uint32_t *ctxoff,
                       uint32_t *ctxj, uint32_t cap) {
    const wstate *st = &w->st[ns];
    for (uint32_t k = 0; k < st->n; k++) {
        uint32_t id = w->pool.v[st->off + k];
        const rl__gnode *x = &w->a.v[id];
        if (x->pos != RL__GPOS_NONE || (id != RL__GN_CTX && !(x->cnt && x->parent == RL__GN_CTX)))
            continue;
        if (*C >= cap) return false;
        ctxoff[*C] = d;
        ctxj[*C] = id == RL__GN_CTX ? 0 : x->cnt - 1;
        (*C)++;
    }
    return true;
}

/* The entry of a key (kpos[0] the top frame's position, kcnt the counts, bottom KB_*, part
 * the unfinished character before the tokens); called with g->lock held. */
static rl_status key_compute(const rl_grammar *g, const uint32_t *kpos, const uint32_t *kcnt,
                             uint32_t kn, uint32_t bottom, const rl__utf8p *part, uint64_t h,
                             gkey_entry **out) {
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
    bool rep = false; /* the key has an open repetition */
    for (uint32_t q = 0; q < kn; q++) rep |= kcnt[q] == RL__REP_SYM;
    uint32_t ctx_cap = 4 * (gv->max_len + 2);
    uint32_t *ctxoff = rl__malloc((size_t)ctx_cap * sizeof *ctxoff);
    uint32_t *ctxj = rl__malloc((size_t)ctx_cap * sizeof *ctxj);
    gkey_entry *e = rl__calloc(1, sizeof *e);
    collect k = {0};
    rl_status st = RL_ERR_NOMEM;
    if (!e || !ctxoff || !ctxj) goto fail;

    /* the key's frames as a stack over CTX / EMPTY / an open count */
    uint32_t node = bottom == KB_EMPTY ? RL__GN_EMPTY : RL__GN_CTX;
    for (uint32_t i = kn; i-- > 0;) {
        node = rl__gnode_get(&w->a, kpos[i], kcnt[i], node, &st);
        if (node == UINT32_MAX) goto fail;
    }
    uint32_t s0 = intern(w, &node, 1);
    if (s0 == UINT32_MAX) goto fail;

    uint32_t *S = w->ds, *C = w->dc;
    rl__utf8p *P = w->dp;
    uint8_t *acc = w->dacc, *ext = w->dext;
    S[0] = s0;
    C[0] = 0;
    P[0] = *part;
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
            uint32_t cp = piece[d];
            int r = p.need == 0 && cp < 0x80 ? 1 : rl__utf8_step(&p, piece[d], &cp);
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
                if ((w->st[ns].flags & WS_CTX) &&
                    !note_exits(w, ns, d + 1, &C[d + 1], ctxoff, ctxj, ctx_cap)) {
                    st = RL_ERR_LIMIT;
                    goto fail;
                }
                /* a token ending here: EMPTY / CTX keys take any stack (CTX: what follows
                 * is fine whatever it is); REP keys only stacks still inside the count,
                 * leaving it is context-dependent (a remainder of zero bytes) */
                acc[d + 1] = rep ? w->st[ns].started != NO_ROUNDS : w->st[ns].n > 0;
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
        /* REP keys, a token ending at depth d: inside the count after J rounds, and / or
         * out of it after the rounds in tags */
        uint32_t J = NO_ROUNDS, n_tags = 0, tags[64];
        if (rep) {
            if (P[d].need == 0) {
                const wstate *ws = &w->st[S[d]];
                J = ws->started;
                n_tags = RL_MIN(ws->xn, 64u);
                for (uint32_t q = 0; q < n_tags; q++) tags[q] = w->xpool.v[ws->xoff + q];
            } else {
                partial_rounds(w, S[d], &P[d], &J, tags, &n_tags, 64);
            }
            /* inside after J rounds (rem >= J) or out after J - 1 (need <= J - 1 <= rem)
             * is just rem >= J - 1, as need <= rem always */
            for (bool again = J != NO_ROUNDS; again;) {
                again = false;
                for (uint32_t q = 0; q < n_tags; q++)
                    if (tags[q] + 1 == J) {
                        J = tags[q];
                        again = true;
                    }
            }
        }
        for (int32_t j = i; j < end; j++) {
            int32_t tj = gv->sorted[j];
            uint32_t Lj;
            rl__gv_piece(gv, tj, &Lj);
            if (Lj == d && rep) {
                if (J != NO_ROUNDS && !add_a(&k, tj, J)) goto fail;
                for (uint32_t q = 0; q < n_tags; q++)
                    if ((J == NO_ROUNDS || tags[q] < J) && !add_u(&k, tj, d, tags[q])) goto fail;
                for (uint32_t x = 0; x < C[d]; x++)
                    if (ctxoff[x] < d && (J == NO_ROUNDS || ctxj[x] < J) &&
                        !add_u(&k, tj, ctxoff[x], ctxj[x]))
                        goto fail;
                continue;
            }
            if (Lj == d) {
                if (acc[d]) {
                    if (!add_a(&k, tj, 0)) goto fail;
                    continue;
                }
            } else if (ext[d] == EXT_DEAD) {
                break;
            }
            for (uint32_t x = 0; x < C[d]; x++) {
                if (ctxoff[x] == Lj) continue; /* the whole token: taken above if at all */
                if (!add_u(&k, tj, ctxoff[x], ctxj[x])) goto fail;
            }
        }
        i = end;
    }

    e->hash = h;
    e->kn = kn;
    e->bottom = bottom;
    e->part = *part;
    memcpy(e->kpos, kpos, kn * sizeof *kpos);
    memcpy(e->kcnt, kcnt, kn * sizeof *kcnt);
    e->n_acc = k.n_a;
    /* by J: a counting sort (J is at most a token's length) */
    uint32_t jmax = 0;
    for (uint32_t x = 0; x < k.n_a; x++) jmax = RL_MAX(jmax, k.a[x].j);
    if (jmax > 0) {
        uint32_t *cnt = rl__calloc((size_t)jmax + 2, sizeof *cnt);
        aent *sorted = rl__malloc(((size_t)k.n_a + 1) * sizeof *sorted);
        if (!cnt || !sorted) {
            rl__free(cnt);
            rl__free(sorted);
            goto fail;
        }
        for (uint32_t x = 0; x < k.n_a; x++) cnt[k.a[x].j + 1]++;
        for (uint32_t j = 0; j <= jmax; j++) cnt[j + 1] += cnt[j];
        for (uint32_t x = 0; x < k.n_a; x++) sorted[cnt[k.a[x].j]++] = k.a[x];
        rl__free(cnt);
        rl__free(k.a);
        k.a = sorted;
        k.cap_a = k.n_a + 1;
    }
    e->jmax = jmax;
    size_t nw = gv->n_words;
    bool many = k.n_a >= nw;
    e->bytes = sizeof *e;
    if (many) {
        e->acc_bits = rl__calloc(nw, sizeof *e->acc_bits);
        if (!e->acc_bits) goto fail;
        for (uint32_t x = 0; x < k.n_a; x++)
            e->acc_bits[k.a[x].tok >> 5] |= 1u << (k.a[x].tok & 31);
        e->bytes += nw * 4;
        if (e->jmax > 0) {
            e->cum = rl__calloc(CUM_J * nw, sizeof *e->cum);
            if (!e->cum) goto fail;
            uint32_t x = 0;
            for (uint32_t t = 0; t < CUM_J; t++) {
                uint32_t *c = e->cum + t * nw;
                if (t) memcpy(c, c - nw, nw * 4);
                for (; x < k.n_a && k.a[x].j <= t; x++)
                    c[k.a[x].tok >> 5] |= 1u << (k.a[x].tok & 31);
            }
            e->bytes += CUM_J * nw * 4;
        }
    }
    if (!many || e->jmax > 0) {
        e->acc_list = rl__malloc(((size_t)k.n_a + 1) * sizeof *e->acc_list);
        e->acc_j = rl__malloc(((size_t)k.n_a + 1) * sizeof *e->acc_j);
        if (!e->acc_list || !e->acc_j) goto fail;
        e->jidx = rl__malloc(((size_t)e->jmax + 2) * sizeof *e->jidx);
        if (!e->jidx) goto fail;
        for (uint32_t x = 0; x < k.n_a; x++) {
            e->acc_list[x] = k.a[x].tok;
            e->acc_j[x] = (uint16_t)RL_MIN(k.a[x].j, 0xffffu);
        }
        for (uint32_t j = 0, x = 0; j <= e->jmax + 1; j++) {
            while (x < k.n_a && k.a[x].j < j) x++;
            e->jidx[j] = x;
        }
        e->bytes += (size_t)k.n_a * 6 + ((size_t)e->jmax + 2) * 4;
    }
    e->n_u = k.n_u;
    if (k.n_u) {
        qsort_r(k.u, k.n_u, sizeof *k.u, cmp_uent, (void *)gv);
        e->u_tok = rl__malloc((size_t)k.n_u * sizeof *e->u_tok);
        e->u_off = rl__malloc((size_t)k.n_u * sizeof *e->u_off);
        e->u_lcp = rl__malloc((size_t)k.n_u * sizeof *e->u_lcp);
        e->u_j = rl__malloc((size_t)k.n_u * sizeof *e->u_j);
        if (!e->u_tok || !e->u_off || !e->u_lcp || !e->u_j) goto fail;
        for (uint32_t x = 0; x < k.n_u; x++) {
            e->u_tok[x] = k.u[x].tok;
            e->u_off[x] = k.u[x].off;
            e->u_j[x] = k.u[x].j;
            uint32_t l = 0;
            if (x > 0) {
                uint32_t la, lb;
                const unsigned char *a = rl__gv_piece(gv, k.u[x - 1].tok, &la) + k.u[x - 1].off;
                const unsigned char *b = rl__gv_piece(gv, k.u[x].tok, &lb) + k.u[x].off;
                la -= k.u[x - 1].off;
                lb -= k.u[x].off;
                uint32_t m = RL_MIN(la, lb);
                while (l < m && a[l] == b[l]) l++;
            }
            e->u_lcp[x] = (uint16_t)l;
        }
        e->bytes += (size_t)k.n_u * 10;
    }
    rl__free(k.a);
    rl__free(k.u);
    rl__free(ctxoff);
    rl__free(ctxj);
    *out = e;
    return RL_OK;
fail:
    rl__free(k.a);
    rl__free(k.u);
    rl__free(ctxoff);
    rl__free(ctxj);
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
 * the set start[0..n_start) with pending UTF-8 *p0; set the bit of every token accepted
 * (only of entries with use[i], when use is given). Uses the frames of c's arena; no
 * tables. */
static rl_status rt_walk(rl__gctx *c, const uint32_t *start, uint32_t n_start, const rl__utf8p *p0,
                         uint32_t n_ent, const int32_t *tok, const uint16_t *off,
                         const uint16_t *lcp, const uint8_t *use, uint32_t *mask) {
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
            uint32_t cp = s[d];
            int r = p.need == 0 && cp < 0x80 ? 1 : rl__utf8_step(&p, s[d], &cp);
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
                if (!use || use[j]) mask[tok[j] >> 5] |= 1u << (tok[j] & 31);
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
    return rt_walk(c, in, n, p, (uint32_t)gv->n_sorted, gv->sorted, NULL, gv->lcp, NULL, mask);
}

static inline void set_bit(uint32_t *mask, int32_t t) { mask[t >> 5] |= 1u << (t & 31); }

/* The accepted tokens of e for an open repetition with rem rounds left (UINT32_MAX: no
 * repetition), ORed into mask. */
static void or_accepted(const gkey_entry *e, uint32_t rem, uint32_t nw, uint32_t *mask) {
    const uint32_t *bits = NULL;
    uint32_t from = 0; /* list entries from here with j <= rem still to set */
    if (e->acc_bits && rem >= e->jmax) {
        bits = e->acc_bits;
        from = e->n_acc;
    } else if (e->cum) {
        uint32_t t = RL_MIN(rem, (uint32_t)CUM_J - 1);
        bits = e->cum + (size_t)t * nw;
        from = e->jidx[t + 1];
    }
    if (bits)
        for (uint32_t i = 0; i < nw; i++) mask[i] |= bits[i];
    if (e->acc_list) {
        uint32_t to = rem >= e->jmax ? e->n_acc : e->jidx[rem + 1];
        for (uint32_t i = from; i < to; i++) set_bit(mask, e->acc_list[i]);
    }
}

/* Mask of stack s (top CLS) with the unfinished character part, through its key. */
static rl_status key_fill(rl__gctx *c, uint32_t s, const rl__utf8p *part, uint32_t *mask) {
    rl_grammar *g = (rl_grammar *)c->g; /* the lazily filled tables are behind g->lock */
    const rl_grammar_vocab *gv = g->gv;
    uint32_t kpos[KEY_MAX], kcnt[KEY_MAX], kn = 0, n_plain = 0, x = s, bottom = KB_CTX;
    uint32_t need = 0, rem = UINT32_MAX;
    bool open = false;
    /* a token of L bytes completes at most L rounds of a repetition: counts of the deeper
     * ones past L + 1 behave alike, so keys hold them capped */
    uint32_t cap = RL_MIN(gv->max_len + 1, RL__REP_INF - 1);
    for (;;) {
        if (x == RL__GN_EMPTY) {
            bottom = KB_EMPTY;
            break;
        }
        if (n_plain == KEY_K || kn == KEY_MAX) break;
        const rl__gnode *nd = &c->a->v[x];
        kpos[kn] = nd->pos;
        kcnt[kn] = 0;
        if (g->pos[nd->pos].kind == RL__P_REP) {
            uint32_t nn, rr;
            rl__grep_state(g, nd->pos, nd->cnt, &nn, &rr);
            if (!open) { /* the first one stays open: the key serves every count */
                open = true;
                need = nn;
                rem = rr;
                kcnt[kn] = RL__REP_SYM;
            } else {
                kcnt[kn] = rl__rep_pack(RL_MIN(nn, cap), RL_MIN(rr, cap));
            }
        } else {
            n_plain++;
        }
        kn++;
        x = nd->parent;
    }
    uint64_t h = key_hash(kpos, kcnt, kn, bottom, part);
    pthread_mutex_lock(&g->lock);
    gkey_entry *e = table_find(g->keys, h, kpos, kcnt, kn, bottom, part);
    bool owned = false;
    rl_status st = RL_OK;
    if (!e) {
        st = key_compute(g, kpos, kcnt, kn, bottom, part, h, &e);
        if (st == RL_OK &&
            !(g->keys->bytes + e->bytes <= g->lim.max_cache_bytes && table_put(g->keys, e)))
            owned = true; /* over the memory bound: use once, do not keep */
    }
    pthread_mutex_unlock(&g->lock);
    if (st != RL_OK) {
        /* the precomputation hit a limit: the plain walk still gives the right answer */
        uint32_t *tmp = rl__calloc(gv->n_words, sizeof *tmp);
        if (!tmp) return RL_ERR_NOMEM;
        st = rt_walk(c, &s, 1, part, (uint32_t)gv->n_sorted, gv->sorted, NULL, gv->lcp, NULL, tmp);
        for (uint32_t i = 0; st == RL_OK && i < gv->n_words; i++) mask[i] |= tmp[i];
        rl__free(tmp);
        return st;
    }
    or_accepted(e, open ? rem : UINT32_MAX, gv->n_words, mask);
    if (e->n_u) {
        /* what lies below the key: the frames under it (the walk already went through
         * what follows an open repetition in its own rule) */
        uint32_t below = x;
        uint8_t *valid = NULL;
        if (open) {
            valid = rl__malloc(e->n_u);
            if (!valid) {
                if (owned) entry_free(e);
                return RL_ERR_NOMEM;
            }
            for (uint32_t i = 0; i < e->n_u; i++) {
                uint32_t L;
                rl__gv_piece(gv, e->u_tok[i], &L);
                valid[i] = need <= e->u_j[i] && e->u_j[i] <= rem;
                if (valid[i] && e->u_off[i] == L) { /* nothing left to check */
                    set_bit(mask, e->u_tok[i]);
                    valid[i] = 0;
                }
            }
        }
        rl__gids T = {0};
        rl__gset_begin(c, &T);
        rl__gexpand(c, below, &T);
        rl__gset_finish(&T);
        rl__utf8p none = {0};
        if (c->st != RL_OK)
            st = c->st;
        else
            st = rt_walk(c, T.v, T.n, &none, e->n_u, e->u_tok, e->u_off, e->u_lcp, valid, mask);
        rl__gids_free(&T);
        rl__free(valid);
    }
    if (owned) entry_free(e);
    return st;
}

rl_status rl__gmask_fill(rl__gctx *c, const uint32_t *in, uint32_t n, const rl__utf8p *p,
                         uint32_t *mask) {
    const rl_grammar *g = c->g;
    const rl_grammar_vocab *gv = g->gv;
    memset(mask, 0, (size_t)gv->n_words * sizeof *mask);
    int64_t not_id = -1; /* the one token a TOKNOT top excludes, -2: several differ */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pos = c->a->v[in[i]].pos;
        if (pos == RL__GPOS_NONE) continue;
        const rl__gpos *q = &g->pos[pos];
        if (p->need) { /* inside a character: only text can go on */
            if (q->kind == RL__P_CLS && rl__gpartial_ok(g, c->a, &in[i], 1, p)) {
                rl_status st = key_fill(c, in[i], p, mask);
                if (st != RL_OK) return st;
            }
            continue;
        }
        if (q->kind == RL__P_TOK) {
            if (q->arg < (uint32_t)gv->n_tokens) set_bit(mask, (int32_t)q->arg);
        } else if (q->kind == RL__P_TOKNOT) {
            if (not_id == -1)
                not_id = q->arg;
            else if (not_id != (int64_t)q->arg)
                not_id = -2;
        } else if (q->kind == RL__P_CLS) {
            rl_status st = key_fill(c, in[i], p, mask);
            if (st != RL_OK) return st;
        }
    }
    if (not_id != -1) {
        bool had =
            not_id >= 0 && not_id < gv->n_tokens && ((mask[not_id >> 5] >> (not_id & 31)) & 1);
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
            rl__fmt(err, err_size, "at the start of the grammar: %s",
                    c.msg[0] ? c.msg : rl_status_str(st));
    }
    rl__free(mask);
    rl__gids_free(&s);
    rl__gids_free(&c.work);
    rl__gnodes_free(&a);
    return st;
}
