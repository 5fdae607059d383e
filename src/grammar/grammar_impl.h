/*
 * grammar_impl.h - what the files of the grammar engine share.
 *
 * Three layers:
 *   1. the IR: rules as llama.cpp encodes them (src/llama-grammar.h, MIT): one element
 *      array per rule, alternatives separated by ALT, the rule closed by END, character
 *      classes as a CHAR / CHAR_NOT / CHAR_ANY head followed by CHAR_ALT / CHAR_RNG_UPPER
 *      modifiers. parse.c builds it from GBNF text, with llama.cpp's symbol numbering and
 *      repetition rewriting, so that the IR of a grammar is the one llama.cpp prints.
 *   2. the program (compile.c): every alternative of every rule flattened into one array
 *      of positions (CLS class-id, TOK id, TOKNOT id, REF rule, END), classes as sorted
 *      code-point ranges. A position is an index into that array.
 *   3. pushdown stacks (stacks.c): a stack is a chain of interned frames (position,
 *      parent); the top frame's position is a terminal (CLS, TOK, TOKNOT) after
 *      expansion, the lower frames hold return positions. A matcher state is a sorted set
 *      of such stacks, plus an unfinished UTF-8 sequence. EMPTY is the empty stack (the
 *      grammar may end there); CTX stands, in mask precomputation, for "the frames below
 *      the ones we know" (mask.c).
 */
#ifndef RL_GRAMMAR_IMPL_H
#define RL_GRAMMAR_IMPL_H

#include "../util/util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- IR (llama.cpp's element encoding) ---------------------------------------------- */

enum {
    RL__GE_END = 0,
    RL__GE_ALT = 1,
    RL__GE_RULE_REF = 2,
    RL__GE_CHAR = 3,
    RL__GE_CHAR_NOT = 4,
    RL__GE_CHAR_RNG_UPPER = 5,
    RL__GE_CHAR_ALT = 6,
    RL__GE_CHAR_ANY = 7,
    RL__GE_TOKEN = 8,
    RL__GE_TOKEN_NOT = 9,
};

typedef struct rl__gelem {
    uint32_t type;
    uint32_t value; /* code point, rule id or token id */
} rl__gelem;

/* Rules by symbol id; rule i is elems[off[i] .. off[i+1]) (ends with END; empty when the
 * symbol was referenced but never defined, which parse reports). */
typedef struct rl__gir {
    rl__gelem *elems;
    uint32_t *off; /* [n_rules + 1] */
    char **names;  /* [n_rules], symbol names ("root", "root_1", ...) */
    uint32_t n_rules;
} rl__gir;

/* Parse GBNF text[0..len) into ir (llama.cpp's grammar language, see parse.c). vocab
 * (NULL allowed) resolves <text> token references. Errors: RL_ERR_INVALID_ARG with
 * "line L, column C: ..." in err; RL_ERR_LIMIT past limits; RL_ERR_NOMEM. */
rl_status rl__gbnf_parse(const char *text, size_t len, const rl_vocab *vocab,
                         const rl_grammar_limits *lim, rl__gir *ir, char *err, size_t err_size);
void rl__gir_free(rl__gir *ir);
/* Symbol id of name, or -1. */
int32_t rl__gir_find(const rl__gir *ir, const char *name);
/* llama.cpp's text form of one rule ("root ::= [a] root_1 | ..."), into a malloc'd string. */
char *rl__gir_rule_text(const rl__gir *ir, uint32_t rule);

/* ---- program ------------------------------------------------------------------------- */

enum {
    RL__P_END = 0,
    RL__P_CLS = 1,
    RL__P_TOK = 2,
    RL__P_TOKNOT = 3,
    RL__P_REF = 4,
    RL__P_REP = 5 /* counted repetition of a rule: arg indexes rl_grammar.reps */
};

/* S{min,max} kept as a count instead of llama.cpp's chain of max-min optional rules, so
 * that the states along a long repetition do not each look new (see compile.c). A frame
 * at a REP position carries the count (rl__gnode.cnt). */
typedef struct rl__grep {
    uint32_t body;     /* rule repeated; never nullable */
    uint32_t min, max; /* max RL__REP_INF: unbounded */
} rl__grep;
#define RL__REP_INF 0xffffu

/* cnt of a REP frame: 0 when entered (need = min, rem = max), else 1 + (need << 16 | rem):
 * iterations still required and still allowed. In mask precomputation only, RL__REP_SYM | j:
 * a count left open after j rounds (mask.c). */
#define RL__REP_SYM 0x80000000u
static inline uint32_t rl__rep_pack(uint32_t need, uint32_t rem) { return 1 + (need << 16 | rem); }

typedef struct rl__gpos {
    uint32_t kind; /* RL__P_* */
    uint32_t arg;  /* class id, token id or rule id */
} rl__gpos;

/* A set of Unicode scalar values: sorted, disjoint, non-adjacent inclusive ranges, never
 * containing surrogates; the ASCII part also as a bitmap. */
typedef struct rl__gclass {
    uint64_t ascii[2];
    uint32_t off, n; /* ranges[off .. off+n) pairs in rl_grammar.ranges */
} rl__gclass;

/* Special node ids of every node arena. Mask precomputation also has tagged bottoms (pos
 * RL__GPOS_NONE, cnt j + 1, parent EMPTY or CTX): the bottom of a stack that left an open
 * repetition after j rounds. */
#define RL__GN_EMPTY 0u
#define RL__GN_CTX 1u
#define RL__GPOS_NONE 0xffffffffu

/* Unfinished UTF-8 sequence: bits so far, continuation bytes still to come, and the
 * lowest / highest code point it can still become (strict UTF-8, no surrogates).
 * need == 0: none pending. */
typedef struct rl__utf8p {
    uint32_t value;
    uint32_t lo, hi;
    uint8_t need;
    uint8_t len; /* length of the whole sequence */
} rl__utf8p;

/* Feed byte b to the decoder state p. Returns 1 when a code point completed (*cp), 0 when
 * more bytes are needed, -1 for bytes that cannot be UTF-8 here (overlong, surrogate,
 * beyond U+10FFFF, stray continuation). p is updated only on 0 / 1. */
int rl__utf8_step(rl__utf8p *p, unsigned char b, uint32_t *cp);

typedef struct rl__gkey_table rl__gkey_table;
typedef struct rl__gwalker rl__gwalker;

/* Token pieces in byte order, for masks (see rl_grammar_vocab in ruvllm.h). */
struct rl_grammar_vocab {
    const rl_vocab *vocab;
    int32_t n_tokens;
    uint32_t n_words;  /* (n_tokens + 31) / 32 */
    char *arena;       /* pieces, concatenated */
    uint32_t *off;     /* [n_tokens + 1] piece of t: arena[off[t] .. off[t+1]) */
    uint32_t *eog;     /* bitset [n_words]: end-of-generation tokens */
    uint32_t *textual; /* bitset [n_words]: tokens matched by their text (the sorted set) */
    /* the textual tokens sorted by piece bytes; lcp[i]: common prefix with sorted[i-1] */
    int32_t *sorted;
    uint16_t *lcp;
    int32_t n_sorted;
    /* trie nodes: entry i of sorted opens the nodes of depth lcp[i]+1 .. len(i); the one of
     * depth k ends (its subtree ends) before entry nend[nend_off[i] + k - lcp[i] - 1] */
    uint32_t *nend_off; /* [n_sorted + 1] */
    int32_t *nend;
    uint32_t max_len; /* longest piece in bytes */
};

static inline const unsigned char *rl__gv_piece(const rl_grammar_vocab *gv, int32_t t,
                                                uint32_t *len) {
    *len = gv->off[t + 1] - gv->off[t];
    return (const unsigned char *)gv->arena + gv->off[t];
}

struct rl_grammar {
    rl_grammar_limits lim;
    rl__gir ir;
    uint32_t root;

    /* program */
    rl__gpos *pos;
    uint32_t n_pos;
    uint32_t *alt_off; /* [n_rules + 1] into alts */
    uint32_t *alts;    /* start position of each alternative (an END position when empty) */
    uint32_t n_rules;
    rl__gclass *cls;
    uint32_t n_cls;
    uint32_t *ranges; /* lo, hi pairs */
    bool *nullable;   /* [n_rules] */
    rl__grep *reps;
    uint32_t n_reps;

    const rl_grammar_vocab *gv; /* NULL: bytes only */

    /* mask precomputation, filled lazily and shared by all matchers (mask.c) */
    pthread_mutex_t lock;
    rl__gkey_table *keys;
    rl__gwalker *walker;
};

static inline bool rl__gclass_has(const rl_grammar *g, const rl__gclass *c, uint32_t cp) {
    if (cp < 128) return (c->ascii[cp >> 6] >> (cp & 63)) & 1;
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    uint32_t lo = 0, hi = c->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < r[2 * mid])
            hi = mid;
        else if (cp > r[2 * mid + 1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}
/* Whether c holds some code point in [lo, hi]. */
bool rl__gclass_meets(const rl_grammar *g, const rl__gclass *c, uint32_t lo, uint32_t hi);

/* ---- nodes and stack sets (stacks.c) ------------------------------------------------- */

typedef struct rl__gnode {
    uint32_t pos;    /* position, or RL__GPOS_NONE for EMPTY / CTX */
    uint32_t cnt;    /* REP frames: the count (rl__rep_pack), else 0 */
    uint32_t parent; /* node id */
    uint32_t depth;  /* frames in the stack, this one included */
} rl__gnode;

/* Interned nodes: equal (pos, parent) pairs get one id, so equal stacks are equal ids. */
typedef struct rl__gnodes {
    rl__gnode *v;
    uint32_t n, cap;
    uint32_t *slot; /* open addressing: node id + 1, 0 empty */
    uint32_t n_slot;
    uint32_t *mark; /* [cap] scratch stamps for one traversal */
    uint32_t epoch;
    uint32_t max_nodes;
} rl__gnodes;

/* A growable list of node ids. */
typedef struct rl__gids {
    uint32_t *v;
    uint32_t n, cap;
} rl__gids;

bool rl__gids_push(rl__gids *a, uint32_t x);
void rl__gids_free(rl__gids *a);

rl_status rl__gnodes_init(rl__gnodes *a, uint32_t max_nodes);
void rl__gnodes_free(rl__gnodes *a);
rl_status rl__gnodes_copy(rl__gnodes *dst, const rl__gnodes *src);
/* Node (pos, cnt, parent); RL__GN_EMPTY-style ids never come back from here. UINT32_MAX
 * when the node limit is reached or memory runs out (*st says which). */
uint32_t rl__gnode_get(rl__gnodes *a, uint32_t pos, uint32_t cnt, uint32_t parent, rl_status *st);
/* need / rem of a REP frame at position pos with count cnt. */
void rl__grep_state(const rl_grammar *g, uint32_t pos, uint32_t cnt, uint32_t *need, uint32_t *rem);

/* Work counters and limits shared by one operation on stacks. */
typedef struct rl__gctx {
    const rl_grammar *g;
    rl__gnodes *a;
    rl__gids work; /* scratch for expansion */
    rl_status st;  /* first error seen (sticky) */
    char msg[160];
} rl__gctx;

/* Expand node n (a return position, a terminal top, EMPTY or CTX) into stacks whose tops
 * are terminals (or EMPTY / CTX), appending new ones to out (deduplicated against out with
 * the arena's marks of the current epoch: call rl__gset_begin first). */
void rl__gexpand(rl__gctx *c, uint32_t n, rl__gids *out);
/* Start collecting a set into out (clears it, new mark epoch). */
void rl__gset_begin(rl__gctx *c, rl__gids *out);
/* Sort a collected set into canonical order. */
void rl__gset_finish(rl__gids *s);
/* Stacks reached from set in[0..n) by one code point, into out (canonical). */
void rl__gstep(rl__gctx *c, const uint32_t *in, uint32_t n, uint32_t cp, rl__gids *out);
/* Whether some stack of set in[0..n) can continue with a code point of [p->lo, p->hi]. */
bool rl__gpartial_ok(const rl_grammar *g, const rl__gnodes *a, const uint32_t *in, uint32_t n,
                     const rl__utf8p *p);
/* The initial set of g (root's alternatives, expanded), canonical. */
void rl__ginitial(rl__gctx *c, rl__gids *out);
/* Feed bytes s[0..len) to the set in[0..n) with pending UTF-8 *pin; the result in out and
 * *pout (tmp is scratch; out and tmp may swap buffers). Returns the number of bytes
 * consumed before the set died (len when all were accepted). c->st is set on limits. */
size_t rl__gfeed(rl__gctx *c, const uint32_t *in, uint32_t n, const rl__utf8p *pin,
                 const unsigned char *s, size_t len, rl__gids *out, rl__gids *tmp, rl__utf8p *pout);

static inline uint64_t rl__ghash_ids(const uint32_t *v, uint32_t n, uint64_t h) {
    for (uint32_t i = 0; i < n; i++) {
        h ^= v[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h;
}

/* ---- masks (mask.c) -------------------------------------------------------------------- */

rl_status rl__gmask_init(rl_grammar *g);
/* Fill the tables for the initial state (so that the first mask is fast); fails like a
 * matcher would at its start (limits). */
rl_status rl__gmask_warm(rl_grammar *g, char *err, size_t err_size);
void rl__gmask_free(rl_grammar *g);

/* First entry after i whose lcp is below d: the end of the trie subtree of the depth-d
 * prefix of entry i. */
static inline int32_t rl__gv_subtree_end(const rl_grammar_vocab *gv, int32_t i, uint32_t d) {
    if (d > gv->lcp[i]) return gv->nend[gv->nend_off[i] + d - gv->lcp[i] - 1];
    int32_t j = i + 1;
    while (j < gv->n_sorted && gv->lcp[j] >= d) j++;
    return j;
}

/* Allowed tokens of set in[0..n) with pending UTF-8 p, ORed into mask[0..gv->n_words)
 * (cleared first), EOG tokens excluded (the caller adds them). Uses c's arena for the
 * frames below the precomputed ones. */
rl_status rl__gmask_fill(rl__gctx *c, const uint32_t *in, uint32_t n, const rl__utf8p *p,
                         uint32_t *mask);
/* The same by walking the whole vocabulary (reference for tests, slow path). */
rl_status rl__gmask_fill_slow(rl__gctx *c, const uint32_t *in, uint32_t n, const rl__utf8p *p,
                              uint32_t *mask);

/* ---- matcher (matcher.c) ----------------------------------------------------------------- */

/* Accept a token with an explicit piece (tests without a vocabulary: llama.cpp's test
 * harness feeds code points as token 0 with their text). */
rl_status rl__grammar_matcher_accept_piece(rl_grammar_matcher *m, rl_token t, const char *piece,
                                           size_t len);
/* The brute-force mask: every token checked one by one (tests). */
rl_status rl__grammar_matcher_mask_brute(rl_grammar_matcher *m, uint32_t *mask, size_t n_words);
/* The mask through a walk of the whole vocabulary, no precomputed tables (tests). */
rl_status rl__grammar_matcher_mask_walk(rl_grammar_matcher *m, uint32_t *mask, size_t n_words);
/* Number of stacks in the current state. */
uint32_t rl__grammar_matcher_n_stacks(const rl_grammar_matcher *m);
/* Frames interned by the matcher so far (its arena). */
uint32_t rl__grammar_matcher_n_nodes(const rl_grammar_matcher *m);
/* Whether the text so far ends inside a UTF-8 character. */
bool rl__grammar_matcher_in_char(const rl_grammar_matcher *m);
/* A hash of the current state (equal states, equal hashes; within one matcher). */
uint64_t rl__grammar_matcher_state_hash(const rl_grammar_matcher *m);

#endif /* RL_GRAMMAR_IMPL_H */
