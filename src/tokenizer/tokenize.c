/*
 * tokenize.c - text to ids: split special tokens out of the text, run the vocabulary's
 * algorithm on the rest, add BOS/EOS as the metadata says.
 *
 * Special tokens are found as llama.cpp's tokenizer_st_partition finds them: user-defined
 * tokens always, control and unknown tokens only with parse_special; longer tokens first
 * (ties by id), each taking its leftmost non-overlapping occurrences in what text is left;
 * a token marked LSTRIP / RSTRIP also swallows the ASCII whitespace next to it. Instead of
 * searching the text once per special token, one pass over a trie of their texts lists
 * every occurrence, and the occurrences are then accepted in that priority order.
 */
#include "tok_impl.h"

#include <stdlib.h>

#define MAX_TEXT ((size_t)1 << 30)

typedef struct frag {
    size_t off, len; /* raw text when tok < 0 */
    rl_token tok;
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static bool frags_push(frags *f, size_t off, size_t len, rl_token tok) {
    if (tok < 0 && len == 0) return true;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16, bytes;
        if (!rl__mul_size(cap, sizeof(frag), &bytes)) return false;
        frag *nv = rl__realloc(f->v, bytes);
        if (!nv) return false;
        f->v = nv;
        f->cap = cap;
    }
    f->v[f->n].off = off;
    f->v[f->n].len = len;
    f->v[f->n].tok = tok;
    f->n++;
    return true;
}

typedef struct occ {
    size_t pos;
    int32_t k; /* index into v->specials: the priority */
} occ;

static int cmp_occ(const void *a, const void *b) {
    const occ *x = a, *y = b;
    if (x->k != y->k) return x->k < y->k ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_frag_pos(const void *a, const void *b) {
    const frag *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static inline bool ascii_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static rl_status partition(const rl_vocab *v, const char *text, size_t len, bool parse_special,
                           frags *out) {
    const unsigned char *s = (const unsigned char *)text;
    occ *oc = NULL;
    size_t noc = 0, coc = 0;
    unsigned char *used = NULL;
    frags acc = {0};
    rl_status st = RL_ERR_NOMEM;

    for (size_t i = 0; i < len; i++) {
        int32_t node = v->trie_root[s[i]];
        for (size_t j = i; node >= 0;) {
            const rl__trie_node *nd = &v->trie[node];
            if (nd->special >= 0) {
                rl_token t = v->specials[nd->special];
                if (parse_special ||
                    !(v->attrs[t] & (RL_TOKEN_ATTR_CONTROL | RL_TOKEN_ATTR_UNKNOWN))) {
                    if (noc == coc) {
                        size_t cap = coc ? coc * 2 : 64, bytes;
                        if (!rl__mul_size(cap, sizeof(occ), &bytes)) goto done;
                        occ *no = rl__realloc(oc, bytes);
                        if (!no) goto done;
                        oc = no;
                        coc = cap;
                    }
                    oc[noc].pos = i;
                    oc[noc].k = nd->special;
                    noc++;
                }
            }
            if (++j >= len) break;
            node = nd->child;
            while (node >= 0 && v->trie[node].byte != s[j]) node = v->trie[node].sibling;
        }
    }
    if (noc == 0) {
        st = frags_push(out, 0, len, RL_TOKEN_NULL) ? RL_OK : RL_ERR_NOMEM;
        goto done;
    }

    qsort(oc, noc, sizeof(occ), cmp_occ);
    used = rl__calloc(len, 1); /* 1: a special token, 2: whitespace it stripped */
    if (!used) goto done;
    for (size_t q = 0; q < noc; q++) {
        rl_token t = v->specials[oc[q].k];
        size_t p = oc[q].pos, n = v->text_off[t + 1] - v->text_off[t] - 1;
        bool free_ = true;
        for (size_t j = p; j < p + n && free_; j++) free_ = !used[j];
        if (!free_) continue;
        memset(used + p, 1, n);
        if (!frags_push(&acc, p, n, t)) goto done;
        if (v->attrs[t] & RL_TOKEN_ATTR_LSTRIP)
            for (size_t j = p; j > 0 && !used[j - 1] && ascii_space(s[j - 1]); j--) used[j - 1] = 2;
        if (v->attrs[t] & RL_TOKEN_ATTR_RSTRIP)
            for (size_t j = p + n; j < len && !used[j] && ascii_space(s[j]); j++) used[j] = 2;
    }
    qsort(acc.v, acc.n, sizeof(frag), cmp_frag_pos);
    size_t cur = 0;
    for (size_t k = 0; k <= acc.n; k++) {
        size_t end = k < acc.n ? acc.v[k].off : len;
        size_t a = cur, b = end;
        while (a < b && used[a]) a++; /* stripped whitespace at either end */
        while (b > a && used[b - 1]) b--;
        if (!frags_push(out, a, b - a, RL_TOKEN_NULL)) goto done;
        if (k < acc.n) {
            if (!frags_push(out, acc.v[k].off, acc.v[k].len, acc.v[k].tok)) goto done;
            cur = acc.v[k].off + acc.v[k].len;
        }
    }
    st = RL_OK;
done:
    rl__free(oc);
    rl__free(used);
    rl__free(acc.v);
    return st;
}

/* SentencePiece: a space in front when the fragment starts the text or follows a special
 * token (and add_space_prefix), then spaces as U+2581. */
static rl_status spm_fragment(const rl_vocab *v, const char *text, size_t len, bool prefix,
                              rl__buf *tmp, rl__tokvec *out) {
    tmp->n = 0;
    if (!rl__buf_reserve(tmp, len + 3)) return RL_ERR_NOMEM;
    if (prefix && !rl__buf_put(tmp, "\xe2\x96\x81", 3)) return RL_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) {
        bool ok = text[i] == ' ' ? rl__buf_put(tmp, "\xe2\x96\x81", 3) : rl__buf_putc(tmp, text[i]);
        if (!ok) return RL_ERR_NOMEM;
    }
    return rl__spm_tokenize(v, tmp->p, tmp->n, out);
}

RL_API rl_status rl_tokenize(const rl_vocab *v, const char *text, size_t len, uint32_t flags,
                             rl_token *tokens, size_t n_max, size_t *n_out) {
    if (!v || !n_out || (!text && len) || (!tokens && n_max)) return RL_ERR_INVALID_ARG;
    *n_out = 0;
    if (v->type == RL_VOCAB_TYPE_NONE) return RL_ERR_UNSUPPORTED;
    if (len > MAX_TEXT) return RL_ERR_LIMIT;
    bool add_special = flags & RL_TOKENIZE_ADD_SPECIAL;
    bool parse_special = flags & RL_TOKENIZE_PARSE_SPECIAL;
    rl__tokvec tv = {0};
    frags fr = {0};
    rl__buf tmp = {0};
    rl_status st = RL_OK;
    if (len && (st = partition(v, text, len, parse_special, &fr)) != RL_OK) goto done;

    st = RL_ERR_NOMEM;
    switch (v->type) {
    case RL_VOCAB_TYPE_SPM: {
        if (add_special && v->add_bos && !rl__tokvec_push(&tv, v->bos)) goto done;
        bool prev_special = true;
        for (size_t k = 0; k < fr.n; k++) {
            const frag *f = &fr.v[k];
            if (f->tok >= 0) {
                if (!rl__tokvec_push(&tv, f->tok)) goto done;
                prev_special = true;
                continue;
            }
            st = spm_fragment(v, text + f->off, f->len, v->add_space_prefix && prev_special, &tmp,
                              &tv);
            if (st != RL_OK) goto done;
            st = RL_ERR_NOMEM;
            prev_special = false;
        }
        if (add_special && v->add_eos && !rl__tokvec_push(&tv, v->eos)) goto done;
        break;
    }
    case RL_VOCAB_TYPE_BPE:
    case RL_VOCAB_TYPE_WPM: {
        bool wpm = v->type == RL_VOCAB_TYPE_WPM;
        bool bos = add_special && (wpm || v->add_bos) && v->bos >= 0;
        if (bos && !rl__tokvec_push(&tv, v->bos)) goto done;
        for (size_t k = 0; k < fr.n; k++) {
            const frag *f = &fr.v[k];
            if (f->tok >= 0) {
                if (!rl__tokvec_push(&tv, f->tok)) goto done;
                continue;
            }
            st = wpm ? rl__wpm_tokenize(v, text + f->off, f->len, &tv)
                     : rl__bpe_tokenize(v, text + f->off, f->len, &tv);
            if (st != RL_OK) goto done;
            st = RL_ERR_NOMEM;
        }
        if (add_special) {
            if (wpm && v->sep >= 0 && !rl__tokvec_push(&tv, v->sep)) goto done;
            if (!wpm && v->add_eos && !rl__tokvec_push(&tv, v->eos)) goto done;
        }
        break;
    }
    default:
        st = RL_ERR_UNSUPPORTED;
        goto done;
    }

    *n_out = tv.n;
    if (tv.n > n_max) {
        st = RL_ERR_RANGE;
        goto done;
    }
    if (tv.n) memcpy(tokens, tv.v, tv.n * sizeof(rl_token));
    st = RL_OK;
done:
    rl__free(tv.v);
    rl__free(fr.v);
    rl__buf_free(&tmp);
    return st;
}
