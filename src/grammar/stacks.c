/*
 * stacks.c - pushdown stacks as chains of interned frames, and the two operations of
 * llama.cpp's grammar engine on sets of them: expansion (replace a rule reference on top
 * by the alternatives of the rule, until every top is a terminal) and the step over one
 * code point. Interning makes equal stacks equal ids, so a set of stacks is a sorted array
 * of ids, deduplication is free, and frames below the top are shared, never copied
 * (xgrammar's "persistent stack").
 *
 * Also the strict UTF-8 decoder that every byte of a token passes through.
 */
#include "grammar/grammar_impl.h"

#include <stdlib.h>

/* ---- UTF-8 --------------------------------------------------------------------------- */

static void utf8_range(rl__utf8p *p, uint32_t len) {
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t max_of[5] = {0, 0x7f, 0x7ff, 0xffff, 0x10ffff};
    uint32_t shift = 6u * p->need;
    uint32_t lo = p->value << shift, hi = lo | ((1u << shift) - 1);
    p->lo = RL_MAX(lo, min_of[len]);
    p->hi = RL_MIN(hi, max_of[len]);
}

int rl__utf8_step(rl__utf8p *p, unsigned char b, uint32_t *cp) {
    if (p->need == 0) {
        rl__utf8p q = {0};
        uint32_t len;
        if (b < 0x80) {
            *cp = b;
            return 1;
        } else if (b < 0xC2) {
            return -1; /* continuation byte, or an overlong lead */
        } else if (b < 0xE0) {
            q.value = b & 0x1F, q.need = 1, len = 2;
        } else if (b < 0xF0) {
            q.value = b & 0x0F, q.need = 2, len = 3;
        } else if (b < 0xF5) {
            q.value = b & 0x07, q.need = 3, len = 4;
        } else {
            return -1;
        }
        q.len = (uint8_t)len;
        utf8_range(&q, len);
        *p = q;
        return 0;
    }
    if ((b & 0xC0) != 0x80) return -1;
    rl__utf8p q = *p;
    q.value = (q.value << 6) | (b & 0x3F);
    q.need--;
    utf8_range(&q, q.len);
    if (q.lo > q.hi) return -1;                      /* overlong or past U+10FFFF */
    if (q.lo >= 0xD800 && q.hi <= 0xDFFF) return -1; /* surrogates */
    if (q.need == 0) {
        *cp = q.value;
        memset(p, 0, sizeof *p);
        return 1;
    }
    *p = q;
    return 0;
}

bool rl__gclass_meets(const rl_grammar *g, const rl__gclass *c, uint32_t lo, uint32_t hi) {
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    uint32_t a = 0, b = c->n; /* first range whose upper end >= lo */
    while (a < b) {
        uint32_t mid = (a + b) / 2;
        if (r[2 * mid + 1] < lo)
            a = mid + 1;
        else
            b = mid;
    }
    return a < c->n && r[2 * a] <= hi;
}

/* ---- id lists ---------------------------------------------------------------------------- */

bool rl__gids_push(rl__gids *a, uint32_t x) {
    if (a->n == a->cap) {
        uint32_t nc = a->cap ? a->cap * 2 : 16;
        uint32_t *nv = rl__realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv) return false;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return true;
}

void rl__gids_free(rl__gids *a) {
    rl__free(a->v);
    memset(a, 0, sizeof *a);
}

/* ---- node arena --------------------------------------------------------------------------- */

static inline uint32_t node_hash(uint32_t pos, uint32_t cnt, uint32_t parent) {
    uint64_t h = ((uint64_t)pos << 32 | parent) * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)cnt * 0xC2B2AE3D27D4EB4Full;
    return (uint32_t)(h >> 32);
}

rl_status rl__gnodes_init(rl__gnodes *a, uint32_t max_nodes) {
    memset(a, 0, sizeof *a);
    a->cap = 1024;
    a->n_slot = 2048;
    a->v = rl__malloc((size_t)a->cap * sizeof *a->v);
    a->mark = rl__calloc(a->cap, sizeof *a->mark);
    a->slot = rl__calloc(a->n_slot, sizeof *a->slot);
    if (!a->v || !a->mark || !a->slot) {
        rl__gnodes_free(a);
        return RL_ERR_NOMEM;
    }
    a->max_nodes = RL_MAX(max_nodes, 16u);
    a->v[RL__GN_EMPTY] = (rl__gnode){RL__GPOS_NONE, 0, RL__GN_EMPTY, 0};
    a->v[RL__GN_CTX] = (rl__gnode){RL__GPOS_NONE, 0, RL__GN_CTX, 0};
    a->n = 2;
    a->epoch = 1;
    return RL_OK;
}

void rl__gnodes_free(rl__gnodes *a) {
    rl__free(a->v);
    rl__free(a->mark);
    rl__free(a->slot);
    memset(a, 0, sizeof *a);
}

rl_status rl__gnodes_copy(rl__gnodes *dst, const rl__gnodes *src) {
    memset(dst, 0, sizeof *dst);
    *dst = *src;
    dst->v = rl__malloc((size_t)src->cap * sizeof *dst->v);
    dst->mark = rl__calloc(src->cap, sizeof *dst->mark);
    dst->slot = rl__malloc((size_t)src->n_slot * sizeof *dst->slot);
    if (!dst->v || !dst->mark || !dst->slot) {
        rl__gnodes_free(dst);
        return RL_ERR_NOMEM;
    }
    memcpy(dst->v, src->v, (size_t)src->n * sizeof *dst->v);
    memcpy(dst->slot, src->slot, (size_t)src->n_slot * sizeof *dst->slot);
    dst->epoch = 1;
    return RL_OK;
}

static bool nodes_grow(rl__gnodes *a) {
    uint32_t nc = a->cap * 2;
    rl__gnode *nv = rl__realloc(a->v, (size_t)nc * sizeof *nv);
    if (!nv) return false;
    a->v = nv;
    uint32_t *nm = rl__realloc(a->mark, (size_t)nc * sizeof *nm);
    if (!nm) return false;
    memset(nm + a->cap, 0, (size_t)(nc - a->cap) * sizeof *nm);
    a->mark = nm;
    a->cap = nc;
    return true;
}

static bool slots_grow(rl__gnodes *a) {
    uint32_t ns = a->n_slot * 2;
    uint32_t *slot = rl__calloc(ns, sizeof *slot);
    if (!slot) return false;
    for (uint32_t id = 2; id < a->n; id++) {
        uint32_t i = node_hash(a->v[id].pos, a->v[id].cnt, a->v[id].parent) & (ns - 1);
        while (slot[i]) i = (i + 1) & (ns - 1);
        slot[i] = id + 1;
    }
    rl__free(a->slot);
    a->slot = slot;
    a->n_slot = ns;
    return true;
}

uint32_t rl__gnode_get(rl__gnodes *a, uint32_t pos, uint32_t cnt, uint32_t parent, rl_status *st) {
    if ((a->n + 1) * 2 > a->n_slot && !slots_grow(a)) {
        *st = RL_ERR_NOMEM;
        return UINT32_MAX;
    }
    uint32_t mask = a->n_slot - 1, i = node_hash(pos, cnt, parent) & mask;
    while (a->slot[i]) {
        const rl__gnode *x = &a->v[a->slot[i] - 1];
        if (x->pos == pos && x->cnt == cnt && x->parent == parent) return a->slot[i] - 1;
        i = (i + 1) & mask;
    }
    if (a->n >= a->max_nodes) {
        *st = RL_ERR_LIMIT;
        return UINT32_MAX;
    }
    if (a->n == a->cap && !nodes_grow(a)) {
        *st = RL_ERR_NOMEM;
        return UINT32_MAX;
    }
    uint32_t id = a->n++;
    a->v[id].pos = pos;
    a->v[id].cnt = cnt;
    a->v[id].parent = parent;
    a->v[id].depth = a->v[parent].depth + 1;
    a->slot[i] = id + 1;
    return id;
}

/* ---- expansion and steps ----------------------------------------------------------------- */

static void set_error(rl__gctx *c, rl_status st, const char *what) {
    if (c->st != RL_OK) return;
    c->st = st;
    if (st == RL_ERR_NOMEM)
        rl__fmt(c->msg, sizeof c->msg, "out of memory");
    else
        rl__fmt(c->msg, sizeof c->msg, "%s", what);
}

void rl__grep_state(const rl_grammar *g, uint32_t pos, uint32_t cnt, uint32_t *need,
                    uint32_t *rem) {
    const rl__grep *r = &g->reps[g->pos[pos].arg];
    if (cnt == 0) {
        *need = r->min;
        *rem = r->max;
    } else {
        *need = (cnt - 1) >> 16;
        *rem = (cnt - 1) & 0xffff;
    }
}

static uint32_t node_or_fail_cnt(rl__gctx *c, uint32_t pos, uint32_t cnt, uint32_t parent) {
    rl_status st = RL_OK;
    if (c->a->v[parent].depth + 1 > c->g->lim.max_depth) {
        set_error(c, RL_ERR_LIMIT, "a parse stack is deeper than max_depth");
        return UINT32_MAX;
    }
    uint32_t id = rl__gnode_get(c->a, pos, cnt, parent, &st);
    if (id == UINT32_MAX)
        set_error(c, st, st == RL_ERR_LIMIT ? "more parse frames than max_nodes" : "");
    return id;
}

static uint32_t node_or_fail(rl__gctx *c, uint32_t pos, uint32_t parent) {
    return node_or_fail_cnt(c, pos, 0, parent);
}

/* The stack n rebuilt over its bottom (EMPTY or CTX) tagged with j: the node (none,
 * j + 1, bottom). Only in mask precomputation, where n is a few frames of a key. */
static uint32_t retag(rl__gctx *c, uint32_t n, uint32_t j) {
    uint32_t chain[64], k = 0;
    while (c->a->v[n].pos != RL__GPOS_NONE) {
        if (k == 64) {
            set_error(c, RL_ERR_LIMIT, "a mask key is too deep");
            return UINT32_MAX;
        }
        chain[k++] = n;
        n = c->a->v[n].parent;
    }
    rl_status st = RL_OK;
    uint32_t y = rl__gnode_get(c->a, RL__GPOS_NONE, j + 1, n, &st);
    if (y == UINT32_MAX) {
        set_error(c, st, "more parse frames than max_nodes");
        return UINT32_MAX;
    }
    while (k-- > 0) {
        const rl__gnode *x = &c->a->v[chain[k]];
        y = node_or_fail_cnt(c, x->pos, x->cnt, y);
        if (y == UINT32_MAX) return UINT32_MAX;
    }
    return y;
}

void rl__gset_begin(rl__gctx *c, rl__gids *out) {
    out->n = 0;
    if (++c->a->epoch == 0) { /* wrapped: clear the stamps */
        memset(c->a->mark, 0, (size_t)c->a->cap * sizeof *c->a->mark);
        c->a->epoch = 1;
    }
}

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

void rl__gset_finish(rl__gids *s) {
    if (s->n < 24) {
        for (uint32_t i = 1; i < s->n; i++) {
            uint32_t x = s->v[i], j = i;
            while (j > 0 && s->v[j - 1] > x) {
                s->v[j] = s->v[j - 1];
                j--;
            }
            s->v[j] = x;
        }
    } else {
        qsort(s->v, s->n, sizeof *s->v, cmp_u32);
    }
}

/* Why a visited mark per set and not per expansion: a node reached twice while one set is
 * collected has the same expansion both times, already in the set. */
void rl__gexpand(rl__gctx *c, uint32_t n, rl__gids *out) {
    const rl_grammar *g = c->g;
    rl__gnodes *a = c->a;
    uint32_t steps = 0;
    c->work.n = 0;
    if (!rl__gids_push(&c->work, n)) {
        set_error(c, RL_ERR_NOMEM, "");
        return;
    }
    while (c->work.n && c->st == RL_OK) {
        uint32_t x = c->work.v[--c->work.n];
        if (a->mark[x] == a->epoch) continue;
        a->mark[x] = a->epoch;
        uint32_t pos = a->v[x].pos;
        uint32_t kind = pos == RL__GPOS_NONE ? RL__P_END : g->pos[pos].kind;
        if (kind != RL__P_REF && kind != RL__P_REP) {
            if (!rl__gids_push(out, x))
                set_error(c, RL_ERR_NOMEM, "");
            else if (out->n > g->lim.max_stacks)
                set_error(c, RL_ERR_LIMIT, "more parse stacks than max_stacks");
            continue;
        }
        if (++steps > g->lim.max_expand) {
            set_error(c, RL_ERR_LIMIT, "expansion of one step is longer than max_expand");
            return;
        }
        uint32_t parent = a->v[x].parent, r, ret;
        if (kind == RL__P_REP && (a->v[x].cnt & RL__REP_SYM)) {
            /* mask precomputation: a count left open (mask.c). Leaving after j rounds goes
             * on with what follows the repetition, over a copy of the frames below whose
             * bottom carries j; another round goes on with j + 1 */
            uint32_t j = a->v[x].cnt & ~RL__REP_SYM;
            r = g->reps[g->pos[pos].arg].body;
            uint32_t below = retag(c, parent, j);
            if (below == UINT32_MAX) return;
            uint32_t nx =
                g->pos[pos + 1].kind == RL__P_END ? below : node_or_fail(c, pos + 1, below);
            if (nx == UINT32_MAX) return;
            if (a->mark[nx] != a->epoch && !rl__gids_push(&c->work, nx)) {
                set_error(c, RL_ERR_NOMEM, "");
                return;
            }
            ret = node_or_fail_cnt(c, pos, RL__REP_SYM | (j + 1), parent);
        } else if (kind == RL__P_REP) {
            /* one more round of the body (back here with the count moved), or on */
            uint32_t need, rem;
            rl__grep_state(g, pos, a->v[x].cnt, &need, &rem);
            r = g->reps[g->pos[pos].arg].body;
            if (need == 0) {
                uint32_t nx =
                    g->pos[pos + 1].kind == RL__P_END ? parent : node_or_fail(c, pos + 1, parent);
                if (nx == UINT32_MAX) return;
                if (a->mark[nx] != a->epoch && !rl__gids_push(&c->work, nx)) {
                    set_error(c, RL_ERR_NOMEM, "");
                    return;
                }
            }
            if (rem == 0) continue;
            uint32_t cnt = rl__rep_pack(need ? need - 1 : 0, rem == RL__REP_INF ? rem : rem - 1);
            ret = node_or_fail_cnt(c, pos, cnt, parent);
        } else {
            r = g->pos[pos].arg;
            ret = g->pos[pos + 1].kind == RL__P_END ? parent : node_or_fail(c, pos + 1, parent);
        }
        if (ret == UINT32_MAX) return;
        for (uint32_t k = g->alt_off[r + 1]; k-- > g->alt_off[r];) {
            uint32_t s = g->alts[k];
            uint32_t y = g->pos[s].kind == RL__P_END ? ret : node_or_fail(c, s, ret);
            if (y == UINT32_MAX) return;
            if (a->mark[y] != a->epoch && !rl__gids_push(&c->work, y)) {
                set_error(c, RL_ERR_NOMEM, "");
                return;
            }
        }
    }
}

void rl__gstep(rl__gctx *c, const uint32_t *in, uint32_t n, uint32_t cp, rl__gids *out) {
    const rl_grammar *g = c->g;
    rl__gset_begin(c, out);
    for (uint32_t i = 0; i < n && c->st == RL_OK; i++) {
        const rl__gnode *x = &c->a->v[in[i]];
        if (x->pos == RL__GPOS_NONE) continue;
        const rl__gpos *p = &g->pos[x->pos];
        if (p->kind != RL__P_CLS || !rl__gclass_has(g, &g->cls[p->arg], cp)) continue;
        uint32_t parent = x->parent;
        uint32_t nx =
            g->pos[x->pos + 1].kind == RL__P_END ? parent : node_or_fail(c, x->pos + 1, parent);
        if (nx == UINT32_MAX) break;
        rl__gexpand(c, nx, out);
    }
    rl__gset_finish(out);
}

bool rl__gpartial_ok(const rl_grammar *g, const rl__gnodes *a, const uint32_t *in, uint32_t n,
                     const rl__utf8p *p) {
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pos = a->v[in[i]].pos;
        if (pos == RL__GPOS_NONE || g->pos[pos].kind != RL__P_CLS) continue;
        if (rl__gclass_meets(g, &g->cls[g->pos[pos].arg], p->lo, p->hi)) return true;
    }
    return false;
}

void rl__ginitial(rl__gctx *c, rl__gids *out) {
    const rl_grammar *g = c->g;
    rl__gset_begin(c, out);
    for (uint32_t k = g->alt_off[g->root]; k < g->alt_off[g->root + 1] && c->st == RL_OK; k++) {
        uint32_t s = g->alts[k];
        uint32_t y = g->pos[s].kind == RL__P_END ? RL__GN_EMPTY : node_or_fail(c, s, RL__GN_EMPTY);
        if (y == UINT32_MAX) break;
        rl__gexpand(c, y, out);
    }
    rl__gset_finish(out);
}

size_t rl__gfeed(rl__gctx *c, const uint32_t *in, uint32_t n, const rl__utf8p *pin,
                 const unsigned char *s, size_t len, rl__gids *out, rl__gids *tmp,
                 rl__utf8p *pout) {
    rl__utf8p p = *pin;
    out->n = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!rl__gids_push(out, in[i])) {
            set_error(c, RL_ERR_NOMEM, "");
            return 0;
        }
    for (size_t i = 0; i < len; i++) {
        uint32_t cp;
        int r = rl__utf8_step(&p, s[i], &cp);
        if (r < 0) return i;
        if (r == 0) {
            if (!rl__gpartial_ok(c->g, c->a, out->v, out->n, &p)) return i;
            continue;
        }
        rl__gstep(c, out->v, out->n, cp, tmp);
        if (c->st != RL_OK || tmp->n == 0) return i;
        rl__gids t = *out;
        *out = *tmp;
        *tmp = t;
    }
    *pout = p;
    return len;
}
