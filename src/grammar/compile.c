/*
 * compile.c - from the IR to the program the matcher runs: checks (start rule, left
 * recursion through nullable prefixes), character classes as sorted code-point ranges,
 * alternatives flattened into one array of positions. Also the vocabulary index
 * (rl_grammar_vocab): every token's text, sorted, for the mask walks of mask.c.
 *
 * Counted repetitions: llama.cpp writes S{m,n} as m copies of S and a chain of n - m
 * optional rules, so that every position along a long repetition is a different place in
 * the grammar, and a different key for the masks of mask.c. The IR keeps that form (it is
 * what llama.cpp prints), but the program recognizes the chains and the copies in front
 * of them and puts one REP position in their place, repeating S (a rule) with a count in
 * the frame (stacks.c). The language is the same; RUVLLM_GRAMMAR_NO_REPEAT=1 keeps the
 * chains (tests compare the two).
 */
#include "grammar/grammar_impl.h"

#include <stdlib.h>

RL_API rl_grammar_limits rl_grammar_default_limits(void) {
    rl_grammar_limits l;
    l.max_text = 16u << 20;
    l.max_elements = 1u << 20;
    l.max_nesting = 512;
    l.max_stacks = 4096;
    l.max_depth = 16384;
    l.max_expand = 1u << 20;
    l.max_nodes = 4u << 20;
    l.max_cache_bytes = 512ull << 20;
    return l;
}

/* ---- vocabulary index ------------------------------------------------------------------- */

static int cmp_piece(const void *x, const void *y, void *arg) {
    const rl_grammar_vocab *gv = arg;
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    uint32_t la, lb;
    const unsigned char *pa = rl__gv_piece(gv, a, &la), *pb = rl__gv_piece(gv, b, &lb);
    int c = memcmp(pa, pb, RL_MIN(la, lb));
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return (a > b) - (a < b);
}

RL_API void rl_grammar_vocab_free(rl_grammar_vocab *gv) {
    if (!gv) return;
    rl__free(gv->arena);
    rl__free(gv->off);
    rl__free(gv->eog);
    rl__free(gv->textual);
    rl__free(gv->sorted);
    rl__free(gv->lcp);
    rl__free(gv->nend_off);
    rl__free(gv->nend);
    rl__free(gv);
}

#define MAX_PIECE 65535u

RL_API rl_status rl_grammar_vocab_create(const rl_vocab *v, rl_grammar_vocab **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!v) return RL_ERR_INVALID_ARG;
    int32_t n = rl_vocab_n_tokens(v);
    if (n <= 0) return RL_ERR_INVALID_ARG;
    rl_grammar_vocab *gv = rl__calloc(1, sizeof *gv);
    if (!gv) return RL_ERR_NOMEM;
    gv->vocab = v;
    gv->n_tokens = n;
    gv->n_words = ((uint32_t)n + 31) / 32;
    gv->off = rl__malloc(((size_t)n + 1) * sizeof *gv->off);
    gv->eog = rl__calloc(gv->n_words, sizeof *gv->eog);
    gv->textual = rl__calloc(gv->n_words, sizeof *gv->textual);
    gv->sorted = rl__malloc((size_t)n * sizeof *gv->sorted);
    gv->lcp = rl__malloc((size_t)n * sizeof *gv->lcp);
    size_t cap = (size_t)n * 8 + 64, len = 0;
    gv->arena = rl__malloc(cap);
    rl_status st = RL_ERR_NOMEM;
    if (!gv->off || !gv->eog || !gv->textual || !gv->sorted || !gv->lcp || !gv->arena) goto fail;
    for (int32_t t = 0; t < n; t++) {
        gv->off[t] = (uint32_t)len;
        size_t k = 0;
        st = rl_token_to_piece(v, t, 0, gv->arena + len, cap - len, &k);
        if (st == RL_ERR_RANGE) {
            size_t nc = RL_MAX(cap * 2, len + k + 64);
            char *na = rl__realloc(gv->arena, nc);
            st = RL_ERR_NOMEM;
            if (!na) goto fail;
            gv->arena = na;
            cap = nc;
            st = rl_token_to_piece(v, t, 0, gv->arena + len, cap - len, &k);
        }
        if (st != RL_OK) goto fail;
        st = RL_ERR_LIMIT;
        if (len + k > UINT32_MAX) goto fail;
        len += k;
        bool eog = rl_vocab_is_eog(v, t);
        if (eog) gv->eog[t >> 5] |= 1u << (t & 31);
        if (!eog && k > 0 && k <= MAX_PIECE) {
            gv->textual[t >> 5] |= 1u << (t & 31);
            gv->sorted[gv->n_sorted++] = t;
            gv->max_len = RL_MAX(gv->max_len, (uint32_t)k);
        }
    }
    gv->off[n] = (uint32_t)len;
    qsort_r(gv->sorted, (size_t)gv->n_sorted, sizeof *gv->sorted, cmp_piece, gv);
    for (int32_t i = 0; i < gv->n_sorted; i++) {
        uint32_t l = 0;
        if (i > 0) {
            uint32_t la, lb;
            const unsigned char *a = rl__gv_piece(gv, gv->sorted[i - 1], &la);
            const unsigned char *b = rl__gv_piece(gv, gv->sorted[i], &lb);
            uint32_t m = RL_MIN(la, lb);
            while (l < m && a[l] == b[l]) l++;
        }
        gv->lcp[i] = (uint16_t)l;
    }
    /* subtree ends, from the back: E[k] = first later entry whose lcp is below k */
    gv->nend_off = rl__malloc(((size_t)gv->n_sorted + 1) * sizeof *gv->nend_off);
    st = RL_ERR_NOMEM;
    if (!gv->nend_off) goto fail;
    size_t total = 0;
    for (int32_t i = 0; i < gv->n_sorted; i++) {
        uint32_t L;
        rl__gv_piece(gv, gv->sorted[i], &L);
        gv->nend_off[i] = (uint32_t)total;
        total += L - gv->lcp[i];
    }
    gv->nend_off[gv->n_sorted] = (uint32_t)total;
    gv->nend = rl__malloc((total ? total : 1) * sizeof *gv->nend);
    int32_t *E = rl__malloc(((size_t)gv->max_len + 2) * sizeof *E);
    if (!gv->nend || !E) {
        rl__free(E);
        goto fail;
    }
    for (uint32_t k = 0; k <= gv->max_len + 1; k++) E[k] = gv->n_sorted;
    for (int32_t i = gv->n_sorted; i-- > 0;) {
        uint32_t L;
        rl__gv_piece(gv, gv->sorted[i], &L);
        for (uint32_t k = gv->lcp[i] + 1u; k <= L; k++)
            gv->nend[gv->nend_off[i] + k - gv->lcp[i] - 1] = E[k];
        for (uint32_t k = gv->lcp[i] + 1u; k <= gv->max_len; k++) E[k] = i;
    }
    rl__free(E);
    *out = gv;
    return RL_OK;
fail:
    rl_grammar_vocab_free(gv);
    return st;
}

/* ---- classes ---------------------------------------------------------------------------- */

typedef struct rvec {
    uint32_t *v; /* lo, hi pairs */
    uint32_t n, cap;
} rvec;

static bool rpush(rvec *r, uint32_t lo, uint32_t hi) {
    if (r->n + 2 > r->cap) {
        uint32_t nc = r->cap ? r->cap * 2 : 32;
        uint32_t *nv = rl__realloc(r->v, (size_t)nc * sizeof *nv);
        if (!nv) return false;
        r->v = nv;
        r->cap = nc;
    }
    r->v[r->n++] = lo;
    r->v[r->n++] = hi;
    return true;
}

static int cmp_range(const void *x, const void *y) {
    const uint32_t *a = x, *b = y;
    if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
    return (a[1] > b[1]) - (a[1] < b[1]);
}

/* Sort and merge r in place; negate over the scalar values when neg; drop surrogates. */
static bool normalize(rvec *r, bool neg, rvec *tmp) {
    uint32_t n = r->n / 2;
    qsort(r->v, n, 2 * sizeof *r->v, cmp_range);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t lo = r->v[2 * i], hi = RL_MIN(r->v[2 * i + 1], 0x10FFFFu);
        if (lo > hi) continue;
        if (m > 0 && lo <= r->v[2 * m - 1] + 1) {
            r->v[2 * m - 1] = RL_MAX(r->v[2 * m - 1], hi);
        } else {
            r->v[2 * m] = lo;
            r->v[2 * m + 1] = hi;
            m++;
        }
    }
    r->n = 2 * m;
    tmp->n = 0;
    if (neg) {
        uint32_t next = 0;
        for (uint32_t i = 0; i < m; i++) {
            if (r->v[2 * i] > next && !rpush(tmp, next, r->v[2 * i] - 1)) return false;
            next = r->v[2 * i + 1] + 1;
        }
        if (next <= 0x10FFFF && !rpush(tmp, next, 0x10FFFF)) return false;
    } else {
        for (uint32_t i = 0; i < m; i++)
            if (!rpush(tmp, r->v[2 * i], r->v[2 * i + 1])) return false;
    }
    /* cut out D800..DFFF */
    r->n = 0;
    for (uint32_t i = 0; i < tmp->n; i += 2) {
        uint32_t lo = tmp->v[i], hi = tmp->v[i + 1];
        if (hi < 0xD800 || lo > 0xDFFF) {
            if (!rpush(r, lo, hi)) return false;
            continue;
        }
        if (lo < 0xD800 && !rpush(r, lo, 0xD7FF)) return false;
        if (hi > 0xDFFF && !rpush(r, 0xE000, hi)) return false;
    }
    return true;
}

typedef struct builder {
    rl_grammar *g;
    rvec ranges; /* all classes' ranges */
    uint32_t cls_cap;
    uint32_t *cslot; /* class hash: id + 1 */
    uint32_t n_cslot;
    uint64_t *chash;
} builder;

static uint64_t ranges_hash(const uint32_t *r, uint32_t n) {
    uint64_t h = 0x84222325cbf29ce4ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ r[i]) * 0x100000001b3ull;
    return h;
}

/* Class id of the normalized ranges r (deduplicated). */
static int64_t class_id(builder *b, const rvec *r) {
    rl_grammar *g = b->g;
    uint64_t h = ranges_hash(r->v, r->n);
    if ((g->n_cls + 1) * 2 > b->n_cslot) {
        uint32_t ns = b->n_cslot ? b->n_cslot * 2 : 256;
        uint32_t *slot = rl__calloc(ns, sizeof *slot);
        if (!slot) return -1;
        for (uint32_t id = 0; id < g->n_cls; id++) {
            uint32_t i = (uint32_t)b->chash[id] & (ns - 1);
            while (slot[i]) i = (i + 1) & (ns - 1);
            slot[i] = id + 1;
        }
        rl__free(b->cslot);
        b->cslot = slot;
        b->n_cslot = ns;
    }
    uint32_t i = (uint32_t)h & (b->n_cslot - 1);
    while (b->cslot[i]) {
        uint32_t id = b->cslot[i] - 1;
        const rl__gclass *c = &g->cls[id];
        if (b->chash[id] == h && c->n * 2 == r->n &&
            (!r->n || !memcmp(b->ranges.v + 2 * (size_t)c->off, r->v, (size_t)r->n * sizeof *r->v)))
            return id;
        i = (i + 1) & (b->n_cslot - 1);
    }
    if (g->n_cls == b->cls_cap) {
        uint32_t nc = b->cls_cap ? b->cls_cap * 2 : 64;
        rl__gclass *ncls = rl__realloc(g->cls, (size_t)nc * sizeof *ncls);
        if (!ncls) return -1;
        g->cls = ncls;
        uint64_t *nh = rl__realloc(b->chash, (size_t)nc * sizeof *nh);
        if (!nh) return -1;
        b->chash = nh;
        b->cls_cap = nc;
    }
    uint32_t id = g->n_cls++;
    rl__gclass *c = &g->cls[id];
    memset(c, 0, sizeof *c);
    c->off = b->ranges.n / 2;
    c->n = r->n / 2;
    for (uint32_t k = 0; k < r->n; k += 2) {
        if (!rpush(&b->ranges, r->v[k], r->v[k + 1])) return -1;
        for (uint32_t cp = r->v[k]; cp <= r->v[k + 1] && cp < 128; cp++)
            c->ascii[cp >> 6] |= 1ull << (cp & 63);
    }
    b->chash[id] = h;
    b->cslot[i] = id + 1;
    return id;
}

/* ---- checks ------------------------------------------------------------------------------ */

/* nullable[r]: some alternative of r derives the empty string (a worklist over the
 * alternatives made of rule references only, each waiting for its references). */
static bool compute_nullable(const rl__gir *ir, bool *nullable) {
    uint32_t nr = ir->n_rules;
    size_t ne = ir->off[nr];
    /* alternatives: start index per element run */
    uint32_t *alt_rule = rl__malloc((ne + 1) * sizeof *alt_rule);
    uint32_t *alt_wait = rl__malloc((ne + 1) * sizeof *alt_wait);
    uint32_t *elem_alt = rl__malloc((ne + 1) * sizeof *elem_alt);
    uint32_t *occ_off = rl__calloc((size_t)nr + 2, sizeof *occ_off);
    uint32_t *occ = rl__malloc((ne + 1) * sizeof *occ);
    uint32_t *queue = rl__malloc(((size_t)nr + 1) * sizeof *queue);
    bool ok = alt_rule && alt_wait && elem_alt && occ_off && occ && queue;
    if (!ok) goto done;
    memset(nullable, 0, nr * sizeof *nullable);
    uint32_t n_alt = 0, qn = 0;
    for (uint32_t r = 0; r < nr; r++) {
        const rl__gelem *e = ir->elems + ir->off[r];
        uint32_t n = ir->off[r + 1] - ir->off[r], start = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (e[i].type != RL__GE_ALT && e[i].type != RL__GE_END) continue;
            bool refs_only = true;
            uint32_t wait = 0;
            for (uint32_t k = start; k < i; k++) {
                if (e[k].type != RL__GE_RULE_REF)
                    refs_only = false;
                else
                    wait++;
            }
            if (refs_only) {
                alt_rule[n_alt] = r;
                alt_wait[n_alt] = wait;
                for (uint32_t k = start; k < i; k++) {
                    elem_alt[ir->off[r] + k] = n_alt;
                    occ_off[e[k].value + 1]++;
                }
                if (wait == 0 && !nullable[r]) {
                    nullable[r] = true;
                    queue[qn++] = r;
                }
                n_alt++;
            }
            for (uint32_t k = start; k < i; k++)
                if (!refs_only) elem_alt[ir->off[r] + k] = UINT32_MAX;
            start = i + 1;
        }
    }
    for (uint32_t r = 0; r < nr; r++) occ_off[r + 1] += occ_off[r];
    {
        uint32_t *fill = rl__malloc(((size_t)nr + 1) * sizeof *fill);
        if (!fill) {
            ok = false;
            goto done;
        }
        memcpy(fill, occ_off, ((size_t)nr + 1) * sizeof *fill);
        for (uint32_t r = 0; r < nr; r++) {
            const rl__gelem *e = ir->elems + ir->off[r];
            uint32_t n = ir->off[r + 1] - ir->off[r];
            for (uint32_t i = 0; i < n; i++)
                if (e[i].type == RL__GE_RULE_REF && elem_alt[ir->off[r] + i] != UINT32_MAX)
                    occ[fill[e[i].value]++] = elem_alt[ir->off[r] + i];
        }
        rl__free(fill);
    }
    for (uint32_t qi = 0; qi < qn; qi++) {
        uint32_t s = queue[qi];
        for (uint32_t k = occ_off[s]; k < occ_off[s + 1]; k++) {
            uint32_t a = occ[k];
            if (--alt_wait[a] == 0 && !nullable[alt_rule[a]]) {
                nullable[alt_rule[a]] = true;
                queue[qn++] = alt_rule[a];
            }
        }
    }
done:
    rl__free(alt_rule);
    rl__free(alt_wait);
    rl__free(elem_alt);
    rl__free(occ_off);
    rl__free(occ);
    rl__free(queue);
    return ok;
}

/* Edges r -> s of the "leftmost reference" graph: s is referenced in an alternative of r
 * after nothing but references to rules that nul[] says may be empty. tail: the reference
 * ends the alternative (expanding it pushes no frame). */
typedef struct lr_edge {
    uint32_t from, to;
    bool tail;
} lr_edge;

static bool lr_edges(const rl__gir *ir, const bool *nul, lr_edge **out, uint32_t *n_out) {
    uint32_t n = 0, cap = 64;
    lr_edge *e = rl__malloc(cap * sizeof *e);
    if (!e) return false;
    for (uint32_t r = 0; r < ir->n_rules; r++) {
        const rl__gelem *x = ir->elems + ir->off[r];
        uint32_t len = ir->off[r + 1] - ir->off[r];
        bool lead = true;
        for (uint32_t i = 0; i < len; i++) {
            uint32_t t = x[i].type;
            if (t == RL__GE_ALT || t == RL__GE_END) {
                lead = true;
            } else if (t == RL__GE_RULE_REF) {
                if (!lead) continue;
                if (n == cap) {
                    lr_edge *ne = rl__realloc(e, (size_t)(cap *= 2) * sizeof *e);
                    if (!ne) {
                        rl__free(e);
                        return false;
                    }
                    e = ne;
                }
                bool tail = x[i + 1].type == RL__GE_ALT || x[i + 1].type == RL__GE_END;
                e[n++] = (lr_edge){r, x[i].value, tail};
                lead = nul[x[i].value];
            } else if (t != RL__GE_CHAR_ALT && t != RL__GE_CHAR_RNG_UPPER) {
                lead = false;
            }
        }
    }
    *out = e;
    *n_out = n;
    return true;
}

/* Strongly connected components (Tarjan's algorithm, iterative) of the graph with the
 * given edges; comp[v] for every rule. */
static bool scc(uint32_t nv, const lr_edge *e, uint32_t ne, uint32_t *comp) {
    uint32_t *eoff = rl__calloc((size_t)nv + 1, sizeof *eoff);
    uint32_t *adj = rl__malloc(((size_t)ne + 1) * sizeof *adj);
    uint32_t *idx = rl__malloc(((size_t)nv + 1) * sizeof *idx);
    uint32_t *low = rl__malloc(((size_t)nv + 1) * sizeof *low);
    uint32_t *stk = rl__malloc(((size_t)nv + 1) * sizeof *stk);
    uint32_t *cs_v = rl__malloc(((size_t)nv + 1) * sizeof *cs_v);
    uint32_t *cs_i = rl__malloc(((size_t)nv + 1) * sizeof *cs_i);
    bool *on = rl__calloc((size_t)nv + 1, sizeof *on);
    bool ok = eoff && adj && idx && low && stk && cs_v && cs_i && on;
    if (ok) {
        for (uint32_t k = 0; k < ne; k++) eoff[e[k].from + 1]++;
        for (uint32_t v = 0; v < nv; v++) eoff[v + 1] += eoff[v];
        uint32_t *fill = cs_i; /* borrowed as a cursor array before the search */
        memcpy(fill, eoff, (size_t)nv * sizeof *fill);
        for (uint32_t k = 0; k < ne; k++) adj[fill[e[k].from]++] = e[k].to;
        for (uint32_t v = 0; v < nv; v++) idx[v] = UINT32_MAX;
        uint32_t counter = 0, sp = 0, n_comp = 0;
        for (uint32_t root = 0; root < nv; root++) {
            if (idx[root] != UINT32_MAX) continue;
            uint32_t csp = 0;
            cs_v[csp] = root;
            cs_i[csp++] = eoff[root];
            idx[root] = low[root] = counter++;
            stk[sp++] = root;
            on[root] = true;
            while (csp) {
                uint32_t v = cs_v[csp - 1];
                if (cs_i[csp - 1] < eoff[v + 1]) {
                    uint32_t w = adj[cs_i[csp - 1]++];
                    if (idx[w] == UINT32_MAX) {
                        idx[w] = low[w] = counter++;
                        stk[sp++] = w;
                        on[w] = true;
                        cs_v[csp] = w;
                        cs_i[csp++] = eoff[w];
                    } else if (on[w] && idx[w] < low[v]) {
                        low[v] = idx[w];
                    }
                    continue;
                }
                if (low[v] == idx[v]) {
                    uint32_t w;
                    do {
                        w = stk[--sp];
                        on[w] = false;
                        comp[w] = n_comp;
                    } while (w != v);
                    n_comp++;
                }
                csp--;
                if (csp && low[v] < low[cs_v[csp - 1]]) low[cs_v[csp - 1]] = low[v];
            }
        }
    }
    rl__free(eoff);
    rl__free(adj);
    rl__free(idx);
    rl__free(low);
    rl__free(stk);
    rl__free(cs_v);
    rl__free(cs_i);
    rl__free(on);
    return ok;
}

/* Left recursion, refused as llama.cpp refuses it (a cycle of leftmost references when a
 * rule counts as possibly empty only with a literally empty alternative), and also where
 * llama.cpp would grow a stack without end: a cycle through transitively nullable rules
 * that pushes a frame on the way. A cycle of tail references only (`( [x]* )*`) pushes
 * nothing and is fine. Returns a rule on such a cycle, -1 when none, -2 out of memory. */
static int64_t find_left_recursion(const rl__gir *ir, const bool *nullable) {
    uint32_t nr = ir->n_rules;
    bool *weak = rl__calloc((size_t)nr + 1, sizeof *weak);
    uint32_t *comp = rl__malloc(((size_t)nr + 1) * sizeof *comp);
    lr_edge *e = NULL;
    uint32_t ne = 0;
    int64_t found = -2;
    if (!weak || !comp) goto done;
    for (uint32_t r = 0; r < nr; r++) {
        const rl__gelem *x = ir->elems + ir->off[r];
        uint32_t len = ir->off[r + 1] - ir->off[r];
        bool at_start = true;
        for (uint32_t i = 0; i < len; i++) {
            bool end = x[i].type == RL__GE_ALT || x[i].type == RL__GE_END;
            if (end && at_start) weak[r] = true;
            at_start = end;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        rl__free(e);
        e = NULL;
        if (!lr_edges(ir, pass == 0 ? weak : nullable, &e, &ne) || !scc(nr, e, ne, comp)) goto done;
        for (uint32_t k = 0; k < ne; k++) {
            if (comp[e[k].from] != comp[e[k].to]) continue;
            if (pass == 0 || !e[k].tail) {
                found = e[k].from;
                goto done;
            }
        }
    }
    found = -1;
done:
    rl__free(weak);
    rl__free(comp);
    rl__free(e);
    return found;
}

/* ---- program ------------------------------------------------------------------------------ */

static bool is_class_head(uint32_t t) {
    return t == RL__GE_CHAR || t == RL__GE_CHAR_NOT || t == RL__GE_CHAR_ANY;
}

/* Repetition chains as parse.c (llama.cpp) writes S{m,n}: rules r1 ::= S | and
 * ri ::= S r(i-1) | (len i), and S{m,} as r ::= S r | (star). */
typedef struct chain {
    uint32_t len; /* 0: not a chain */
    bool star;
    uint32_t s_off, s_n; /* S = ir.elems[s_off .. s_off + s_n) */
} chain;

#define REP_MIN 8 /* shorter repetitions keep llama.cpp's rules */

static bool elems_equal(const rl__gelem *a, const rl__gelem *b, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (a[i].type != b[i].type || a[i].value != b[i].value) return false;
    return true;
}

static void find_chains(const rl__gir *ir, chain *ch) {
    for (uint32_t r = 0; r < ir->n_rules; r++) {
        const rl__gelem *e = ir->elems + ir->off[r];
        uint32_t n = ir->off[r + 1] - ir->off[r], a = 0;
        memset(&ch[r], 0, sizeof ch[r]);
        while (a < n && e[a].type != RL__GE_ALT && e[a].type != RL__GE_END) a++;
        if (a == 0 || a + 2 != n || e[a].type != RL__GE_ALT || e[a + 1].type != RL__GE_END)
            continue;
        if (a >= 2 && e[a - 1].type == RL__GE_RULE_REF) {
            uint32_t q = e[a - 1].value;
            if (q == r) {
                ch[r] = (chain){1, true, ir->off[r], a - 1};
                continue;
            }
            if (q < r && ch[q].len && !ch[q].star && ch[q].s_n == a - 1 &&
                elems_equal(ir->elems + ch[q].s_off, e, a - 1)) {
                ch[r] = (chain){ch[q].len + 1, false, ch[q].s_off, ch[q].s_n};
                continue;
            }
        }
        ch[r] = (chain){1, false, ir->off[r], a};
    }
}

static bool seq_nullable(const rl__gelem *e, uint32_t n, const bool *nullable) {
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = e[i].type;
        if (t == RL__GE_RULE_REF) {
            if (!nullable[e[i].value]) return false;
        } else if (t != RL__GE_CHAR_ALT && t != RL__GE_CHAR_RNG_UPPER) {
            return false;
        }
    }
    return true;
}

/* A stretch of an alternative rewritten as one REP position: elements [start, end), the
 * body S with min copies in front of the chain's head. */
typedef struct claim {
    uint32_t start, end;
    uint32_t s_off, s_n;
    uint32_t min, max;
} claim;

typedef struct pbuild {
    rl_grammar *g;
    builder b;
    rvec r, tmp;
    uint32_t np;
    claim *cl;
    uint32_t n_cl, cap_cl;
    uint32_t *synth_off; /* S of each synthetic rule (its s_off), to reuse them */
    uint32_t *synth_n;
    uint32_t n_synth, cap_synth;
} pbuild;

/* Positions of IR elements e[from..to) (no ALT/END inside); REP claims given in cl. */
static rl_status emit_seq(pbuild *pb, const rl__gelem *e, uint32_t from, uint32_t to,
                          const claim *cl, uint32_t n_cl) {
    rl_grammar *g = pb->g;
    uint32_t c = 0;
    for (uint32_t i = from; i < to;) {
        while (c < n_cl && cl[c].end <= i) c++;
        if (c < n_cl && cl[c].start == i) {
            /* the body: the referenced rule itself, or a synthetic rule holding S */
            const rl__gelem *S = g->ir.elems + cl[c].s_off;
            uint32_t body;
            if (cl[c].s_n == 1 && S[0].type == RL__GE_RULE_REF) {
                body = S[0].value;
            } else {
                uint32_t k = 0;
                while (k < pb->n_synth && pb->synth_off[k] != cl[c].s_off) k++;
                if (k == pb->n_synth) {
                    if (pb->n_synth == pb->cap_synth) {
                        uint32_t nc = pb->cap_synth ? pb->cap_synth * 2 : 16;
                        uint32_t *no = rl__realloc(pb->synth_off, (size_t)nc * sizeof *no);
                        if (!no) return RL_ERR_NOMEM;
                        pb->synth_off = no;
                        uint32_t *nn = rl__realloc(pb->synth_n, (size_t)nc * sizeof *nn);
                        if (!nn) return RL_ERR_NOMEM;
                        pb->synth_n = nn;
                        pb->cap_synth = nc;
                    }
                    pb->synth_off[k] = cl[c].s_off;
                    pb->synth_n[k] = cl[c].s_n;
                    pb->n_synth++;
                }
                body = g->ir.n_rules + k;
            }
            if (g->n_reps % 64 == 0) {
                rl__grep *nr = rl__realloc(g->reps, ((size_t)g->n_reps + 64) * sizeof *nr);
                if (!nr) return RL_ERR_NOMEM;
                g->reps = nr;
            }
            g->reps[g->n_reps] = (rl__grep){body, cl[c].min, cl[c].max};
            g->pos[pb->np++] = (rl__gpos){RL__P_REP, g->n_reps++};
            i = cl[c].end;
            continue;
        }
        uint32_t t = e[i].type;
        if (t == RL__GE_RULE_REF) {
            g->pos[pb->np++] = (rl__gpos){RL__P_REF, e[i].value};
            i++;
        } else if (t == RL__GE_TOKEN || t == RL__GE_TOKEN_NOT) {
            g->pos[pb->np++] = (rl__gpos){t == RL__GE_TOKEN ? RL__P_TOK : RL__P_TOKNOT, e[i].value};
            i++;
        } else if (is_class_head(t)) {
            rvec *r = &pb->r;
            r->n = 0;
            bool neg = t == RL__GE_CHAR_NOT, any = t == RL__GE_CHAR_ANY;
            uint32_t k = i;
            do {
                uint32_t lo = e[k].value, hi = lo;
                if (k + 1 < to && e[k + 1].type == RL__GE_CHAR_RNG_UPPER) {
                    hi = e[k + 1].value;
                    k += 2;
                } else {
                    k += 1;
                }
                if (!any && !rpush(r, lo, hi)) return RL_ERR_NOMEM;
            } while (k < to && e[k].type == RL__GE_CHAR_ALT);
            if (any && !rpush(r, 0, 0x10FFFF)) return RL_ERR_NOMEM;
            if (!normalize(r, neg, &pb->tmp)) return RL_ERR_NOMEM;
            int64_t id = class_id(&pb->b, r);
            if (id < 0) return RL_ERR_NOMEM;
            g->pos[pb->np++] = (rl__gpos){RL__P_CLS, (uint32_t)id};
            i = k;
        } else {
            return RL_ERR_INVALID_ARG;
        }
    }
    return RL_OK;
}

/* The REP claims of alternative e[from..to): a reference to a chain whose rounds, with the
 * copies of S in front of it, reach REP_MIN (a star chain: REP_MIN copies in front). */
static bool find_claims(pbuild *pb, const rl__gelem *e, uint32_t from, uint32_t to, const chain *ch,
                        const bool *nullable, bool enabled) {
    const rl__gir *ir = &pb->g->ir;
    pb->n_cl = 0;
    if (!enabled) return true;
    uint32_t floor = from;
    for (uint32_t j = from; j < to; j++) {
        if (e[j].type != RL__GE_RULE_REF) continue;
        const chain *c = &ch[e[j].value];
        if (!c->len) continue;
        const rl__gelem *S = ir->elems + c->s_off;
        uint32_t k = j, m = 0;
        while (k >= floor + c->s_n && elems_equal(e + k - c->s_n, S, c->s_n)) {
            k -= c->s_n;
            m++;
        }
        if (c->star ? m < REP_MIN : m + c->len < REP_MIN) continue;
        if (seq_nullable(S, c->s_n, nullable)) continue;
        uint32_t max = c->star ? RL__REP_INF : m + c->len;
        if (m >= RL__REP_INF || (!c->star && max >= RL__REP_INF)) continue; /* 16-bit counts */
        if (pb->n_cl == pb->cap_cl) {
            uint32_t nc = pb->cap_cl ? pb->cap_cl * 2 : 8;
            claim *ncl = rl__realloc(pb->cl, (size_t)nc * sizeof *ncl);
            if (!ncl) return false;
            pb->cl = ncl;
            pb->cap_cl = nc;
        }
        pb->cl[pb->n_cl++] = (claim){k, j + 1, c->s_off, c->s_n, m, max};
        floor = j + 1;
    }
    return true;
}

static rl_status build_program(rl_grammar *g, char *err, size_t err_size) {
    const rl__gir *ir = &g->ir;
    uint32_t nr = ir->n_rules;
    size_t ne = ir->off[nr];
    pbuild pb;
    memset(&pb, 0, sizeof pb);
    pb.g = g;
    pb.b.g = g;
    chain *ch = rl__malloc(((size_t)nr + 1) * sizeof *ch);
    bool *nullable = rl__malloc(((size_t)nr + 1) * sizeof *nullable);
    rl_status st = RL_ERR_NOMEM;
    /* positions: at most one per element plus one END per alternative, twice over for
     * the synthetic bodies (each a copy of part of an alternative) */
    size_t cap_pos = 2 * (ne + nr) + 1;
    g->pos = rl__malloc(cap_pos * sizeof *g->pos);
    g->alts = rl__malloc(cap_pos * sizeof *g->alts);
    if (!ch || !nullable || !g->pos || !g->alts) goto done;
    if (!compute_nullable(ir, nullable)) goto done;
    find_chains(ir, ch);
    const char *env = rl__getenv("RUVLLM_GRAMMAR_NO_REPEAT");
    bool rep_on = !(env && !strcmp(env, "1"));

    uint32_t na = 0;
    uint32_t *alt_off = rl__malloc(((size_t)nr + 1) * sizeof *alt_off);
    if (!alt_off) goto done;
    for (uint32_t rule = 0; rule < nr; rule++) {
        const rl__gelem *e = ir->elems + ir->off[rule];
        uint32_t n = ir->off[rule + 1] - ir->off[rule], start = 0;
        alt_off[rule] = na;
        for (uint32_t i = 0; i < n; i++) {
            if (e[i].type != RL__GE_ALT && e[i].type != RL__GE_END) continue;
            g->alts[na++] = pb.np;
            st = RL_ERR_NOMEM;
            if (!find_claims(&pb, e, start, i, ch, nullable, rep_on)) goto done_alt;
            st = emit_seq(&pb, e, start, i, pb.cl, pb.n_cl);
            if (st != RL_OK) goto done_alt;
            g->pos[pb.np++] = (rl__gpos){RL__P_END, 0};
            start = i + 1;
        }
    }
    /* synthetic rules: one alternative each, S; may add none */
    {
        uint32_t total = nr + pb.n_synth;
        uint32_t *ao = rl__realloc(alt_off, ((size_t)total + 1) * sizeof *ao);
        st = RL_ERR_NOMEM;
        if (!ao) goto done_alt;
        alt_off = ao;
        for (uint32_t k = 0; k < pb.n_synth; k++) {
            alt_off[nr + k] = na;
            g->alts[na++] = pb.np;
            st =
                emit_seq(&pb, ir->elems, pb.synth_off[k], pb.synth_off[k] + pb.synth_n[k], NULL, 0);
            if (st != RL_OK) goto done_alt;
            g->pos[pb.np++] = (rl__gpos){RL__P_END, 0};
        }
        alt_off[total] = na;
        g->alt_off = alt_off;
        alt_off = NULL;
        g->n_rules = total;
        bool *nl = rl__realloc(nullable, ((size_t)total + 1) * sizeof *nl);
        st = RL_ERR_NOMEM;
        if (!nl) goto done_alt;
        nullable = nl;
        for (uint32_t k = nr; k < total; k++) nullable[k] = false;
        g->nullable = nullable;
        nullable = NULL;
    }
    g->n_pos = pb.np;
    g->ranges = pb.b.ranges.v;
    pb.b.ranges.v = NULL;
    st = RL_OK;
done_alt:
    if (st == RL_ERR_INVALID_ARG) rl__fmt(err, err_size, "malformed grammar rules");
    rl__free(alt_off);
done:
    rl__free(ch);
    rl__free(nullable);
    rl__free(pb.b.ranges.v);
    rl__free(pb.b.cslot);
    rl__free(pb.b.chash);
    rl__free(pb.r.v);
    rl__free(pb.tmp.v);
    rl__free(pb.cl);
    rl__free(pb.synth_off);
    rl__free(pb.synth_n);
    return st;
}

RL_API void rl_grammar_free(rl_grammar *g) {
    if (!g) return;
    rl__gmask_free(g);
    rl__gir_free(&g->ir);
    rl__free(g->pos);
    rl__free(g->alt_off);
    rl__free(g->alts);
    rl__free(g->cls);
    rl__free(g->ranges);
    rl__free(g->nullable);
    rl__free(g->reps);
    rl__free(g);
}

RL_API rl_status rl_grammar_compile(const char *text, size_t len, const char *root,
                                    const rl_grammar_vocab *gv, const rl_grammar_limits *lim,
                                    rl_grammar **out, char *err, size_t err_size) {
    rl__fmt(err, err_size, "%s", "");
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!text && len) return RL_ERR_INVALID_ARG;
    if (!root) root = "root";
    rl_grammar *g = rl__calloc(1, sizeof *g);
    if (!g) return RL_ERR_NOMEM;
    g->lim = lim ? *lim : rl_grammar_default_limits();
    g->gv = gv;
    rl_status st = rl__gbnf_parse(text, len, gv ? gv->vocab : NULL, &g->lim, &g->ir, err, err_size);
    if (st != RL_OK) goto fail;
    int32_t r = rl__gir_find(&g->ir, root);
    if (r < 0) {
        rl__fmt(err, err_size, "the grammar has no rule '%s'", root);
        st = RL_ERR_INVALID_ARG;
        goto fail;
    }
    g->root = (uint32_t)r;
    st = build_program(g, err, err_size);
    if (st != RL_OK) goto fail;
    int64_t lr = find_left_recursion(&g->ir, g->nullable); /* the IR's rules come first */
    if (lr == -2) {
        st = RL_ERR_NOMEM;
        goto fail;
    }
    if (lr >= 0) {
        rl__fmt(err, err_size, "left recursion: rule '%s' can start with itself", g->ir.names[lr]);
        st = RL_ERR_INVALID_ARG;
        goto fail;
    }
    st = rl__gmask_init(g);
    if (st == RL_OK) st = rl__gmask_warm(g, err, err_size);
    if (st != RL_OK) goto fail;
    *out = g;
    return RL_OK;
fail:
    if (st == RL_ERR_NOMEM && err && err_size && !err[0]) rl__fmt(err, err_size, "out of memory");
    rl_grammar_free(g);
    return st;
}
