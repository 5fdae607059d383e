/*
 * dry.c - the DRY ("don't repeat yourself") penalty as llama.cpp defines it (after
 * koboldcpp, by pi6am): a token that would continue a repeat of an earlier stretch of the
 * text is penalized by multiplier * base^(length - allowed_length), where length is how
 * many tokens already repeat. A sequence breaker (a string such as "\n") stops a repeat:
 * no repeat is counted across the most recent breaker, and a token that is a breaker by
 * itself is never penalized.
 *
 * Per step: (1) find the most recent breaker in the window (a head token followed by its
 * tail tokens), which caps repeat lengths; (2) the Z-function of the window read newest
 * first gives, for every earlier position, how long the stretch ending there matches the
 * end of the text; (3) the token that followed each such stretch gets the longest length;
 * (4) the penalties are subtracted. Linear in the window.
 */
#include "sampler/sampler.h"

#include <stdlib.h>

/* llama.cpp's limits: a breaker string counts up to 40 bytes, a tail up to 20 tokens. */
#define DRY_MAX_BREAKER_BYTES 40
#define DRY_MAX_TAIL 20

static inline bool bit_get(const uint8_t *b, int32_t i) { return (b[i >> 3] >> (i & 7)) & 1; }
static inline void bit_set(uint8_t *b, int32_t i) { b[i >> 3] |= (uint8_t)(1u << (i & 7)); }

/* Growable breaker lists, used only while building. */
typedef struct brk_build {
    rl__dry_breaker *e;
    int32_t n, cap;
    int32_t *tails;
    int32_t nt, capt;
} brk_build;

static bool bb_add(brk_build *b, int32_t head, const rl_token *tail, int32_t len,
                   int32_t first_of_head) {
    /* the same tail for this head already there? (entries of a head are contiguous) */
    for (int32_t i = first_of_head; i < b->n; i++) {
        if (b->e[i].head != head || b->e[i].len != len) continue;
        if (len == 0 || !memcmp(b->tails + b->e[i].off, tail, (size_t)len * sizeof *tail))
            return true;
    }
    if (b->n == b->cap) {
        int32_t cap = b->cap ? b->cap * 2 : 64;
        void *p = rl__realloc(b->e, (size_t)cap * sizeof *b->e);
        if (!p) return false;
        b->e = p;
        b->cap = cap;
    }
    if (b->nt + len > b->capt) {
        int32_t cap = b->capt ? b->capt * 2 : 256;
        while (cap < b->nt + len) cap *= 2;
        void *p = rl__realloc(b->tails, (size_t)cap * sizeof *b->tails);
        if (!p) return false;
        b->tails = p;
        b->capt = cap;
    }
    b->e[b->n++] = (rl__dry_breaker){head, b->nt, len};
    if (len) memcpy(b->tails + b->nt, tail, (size_t)len * sizeof *tail);
    b->nt += len;
    return true;
}

static int cmp_breaker(const void *a, const void *b) {
    const rl__dry_breaker *x = a, *y = b;
    if (x->head != y->head) return x->head < y->head ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Install the built list: sorted by head, head and single-token bit sets. */
static void bb_install(rl_sampler *s, brk_build *b) {
    rl__free(s->brk);
    rl__free(s->brk_tails);
    if (b->n > 1) qsort(b->e, (size_t)b->n, sizeof *b->e, cmp_breaker);
    s->brk = b->e;
    s->n_brk = b->n;
    s->brk_tails = b->tails;
    s->n_brk_tails = b->nt;
    size_t nb = ((size_t)s->n_vocab + 7) / 8;
    memset(s->dry_head_bits, 0, nb);
    memset(s->dry_single_bits, 0, nb);
    for (int32_t i = 0; i < b->n; i++) {
        bit_set(s->dry_head_bits, b->e[i].head);
        if (b->e[i].len == 0) bit_set(s->dry_single_bits, b->e[i].head);
    }
}

/* The breakers of one string against every token's text (llama.cpp's
 * get_overlapping_token_sequences): a token whose text contains the string is a breaker by
 * itself; a token whose text ends with a proper prefix of the string is a head whose tail
 * is the tokenization of the rest (at most 20 tokens). */
static rl_status breakers_from_vocab(rl_sampler *s, const rl_vocab *v, const char *const *strs,
                                     int32_t n_strs, brk_build *b) {
    int32_t nt = rl_vocab_n_tokens(v);
    if (nt > s->n_vocab) nt = s->n_vocab;
    size_t cap = 256;
    char *word = rl__malloc(cap);
    if (!word) return RL_ERR_NOMEM;
    rl_status st = RL_OK;
    rl_token tail[128];
    for (int32_t id = 0; id < nt && st == RL_OK; id++) {
        size_t wlen = 0;
        rl_status ds = rl_detokenize(v, &id, 1, RL_DETOK_SPECIAL, word, cap, &wlen);
        if (ds == RL_ERR_RANGE) {
            char *w2 = rl__realloc(word, wlen + 1);
            if (!w2) {
                st = RL_ERR_NOMEM;
                break;
            }
            word = w2;
            cap = wlen + 1;
            ds = rl_detokenize(v, &id, 1, RL_DETOK_SPECIAL, word, cap, &wlen);
        }
        if (ds != RL_OK) continue;
        int32_t first = b->n;
        for (int32_t k = 0; k < n_strs; k++) {
            const char *str = strs[k];
            size_t slen = strlen(str);
            if (slen > DRY_MAX_BREAKER_BYTES) slen = DRY_MAX_BREAKER_BYTES;
            if (wlen >= slen && memmem(word, wlen, str, slen)) {
                if (!bb_add(b, id, NULL, 0, first)) st = RL_ERR_NOMEM;
                continue;
            }
            /* the word's end overlaps the start of str */
            for (size_t pos = 0; pos < wlen && st == RL_OK; pos++) {
                if (word[pos] != str[0]) continue;
                size_t i = 1;
                while (i < slen && pos + i < wlen && word[pos + i] == str[i]) i++;
                if (pos + i != wlen || i >= slen) continue;
                size_t ntok = 0;
                rl_status ts = rl_tokenize(v, str + i, slen - i, 0, tail, RL_ARRAY_LEN(tail),
                                           &ntok);
                if (ts != RL_OK) continue;
                if (ntok > DRY_MAX_TAIL) ntok = DRY_MAX_TAIL;
                if (!bb_add(b, id, tail, (int32_t)ntok, first)) st = RL_ERR_NOMEM;
            }
        }
    }
    rl__free(word);
    return st;
}

rl_status rl__dry_init(rl_sampler *s, const rl_vocab *vocab, const char *const *breakers,
                       int32_t n_breakers) {
    static const char *const defaults[] = {"\n", ":", "\"", "*"};
    int32_t cap = s->p.dry_penalty_last_n;
    size_t nb = ((size_t)s->n_vocab + 7) / 8;
    s->dry_cap = cap;
    s->dry_ring = rl__malloc((size_t)cap * sizeof(int32_t));
    s->dry_seq = rl__malloc((size_t)cap * sizeof(int32_t));
    s->dry_z = rl__malloc((size_t)cap * sizeof(int32_t));
    s->dry_list = rl__malloc((size_t)cap * sizeof(int32_t));
    s->dry_max = rl__calloc((size_t)s->n_vocab, sizeof(int32_t));
    s->dry_head_bits = rl__calloc(nb, 1);
    s->dry_single_bits = rl__calloc(nb, 1);
    if (!s->dry_ring || !s->dry_seq || !s->dry_z || !s->dry_list || !s->dry_max ||
        !s->dry_head_bits || !s->dry_single_bits)
        return RL_ERR_NOMEM;
    s->dry_on = true;
    if (!breakers) {
        if (!vocab) return RL_OK; /* defaults need token text */
        breakers = defaults;
        n_breakers = (int32_t)RL_ARRAY_LEN(defaults);
    }
    if (n_breakers == 0 || !vocab) return RL_OK;
    brk_build b = {0};
    rl_status st = breakers_from_vocab(s, vocab, breakers, n_breakers, &b);
    if (st != RL_OK) {
        rl__free(b.e);
        rl__free(b.tails);
        return st;
    }
    bb_install(s, &b);
    return RL_OK;
}

rl_status rl__sampler_set_dry_breakers(rl_sampler *s, const rl_token *const *seqs,
                                       const int32_t *lens, int32_t n) {
    if (!s || !s->dry_on) return RL_ERR_INVALID_ARG;
    brk_build b = {0};
    for (int32_t i = 0; i < n; i++) {
        if (lens[i] < 1) continue;
        for (int32_t j = 0; j < lens[i]; j++)
            if (seqs[i][j] < 0 || seqs[i][j] >= s->n_vocab) goto bad;
        int32_t first = 0;
        while (first < b.n && b.e[first].head != seqs[i][0]) first++;
        if (!bb_add(&b, seqs[i][0], seqs[i] + 1, lens[i] - 1, first)) {
            rl__free(b.e);
            rl__free(b.tails);
            return RL_ERR_NOMEM;
        }
    }
    bb_install(s, &b);
    return RL_OK;
bad:
    rl__free(b.e);
    rl__free(b.tails);
    return RL_ERR_INVALID_ARG;
}

void rl__dry_accept(rl_sampler *s, rl_token t) {
    if (s->dry_len < s->dry_cap) {
        s->dry_ring[(s->dry_head + s->dry_len) % s->dry_cap] = t;
        s->dry_len++;
    } else {
        s->dry_ring[s->dry_head] = t;
        s->dry_head = (s->dry_head + 1) % s->dry_cap;
    }
}

/* Index of the first breaker with this head (entries are sorted by head), or n_brk. */
static int32_t first_breaker(const rl_sampler *s, int32_t head) {
    int32_t lo = 0, hi = s->n_brk;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (s->brk[mid].head < head) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* base^e for e >= 0 by squaring, in double. */
static double pow_int(double base, int32_t e) {
    double r = 1.0;
    while (e > 0) {
        if (e & 1) r *= base;
        base *= base;
        e >>= 1;
    }
    return r;
}

void rl__dry_apply(rl_sampler *s, float *logits) {
    const int32_t allowed = s->p.dry_allowed_length;
    const int32_t n = s->dry_len;
    if (n <= allowed) return;
    int32_t *seq = s->dry_seq; /* seq[0] is the newest token */
    for (int32_t j = 0; j < n; j++)
        seq[j] = s->dry_ring[(s->dry_head + n - 1 - j) % s->dry_cap];

    /* (1) the most recent complete breaker caps the repeat length */
    int32_t rep_limit = n;
    for (int32_t i = 0; i < n; i++) {
        int32_t t = seq[i];
        if (!bit_get(s->dry_head_bits, t)) continue;
        int32_t longest = -1;
        for (int32_t b = first_breaker(s, t); b < s->n_brk && s->brk[b].head == t; b++) {
            int32_t len = s->brk[b].len;
            if (len <= longest || len > i) continue;
            const int32_t *tail = s->brk_tails + s->brk[b].off;
            int32_t k = 0;
            while (k < len && tail[k] == seq[i - k - 1]) k++;
            if (k == len) longest = len;
        }
        if (longest >= 0) {
            rep_limit = i - longest;
            break;
        }
    }
    if (rep_limit < allowed) return;

    /* (2) Z-function: z[k] = length of the common prefix of seq and seq[k..], i.e. how many
     * tokens ending k steps back repeat the end of the text */
    int32_t *z = s->dry_z;
    z[0] = n;
    for (int32_t k = 1, l = 0, r = 0; k < n; k++) {
        int32_t v = 0;
        if (k < r) {
            v = z[k - l];
            if (v > r - k) v = r - k;
        }
        while (k + v < n && seq[v] == seq[k + v]) v++;
        z[k] = v;
        if (k + v > r) {
            l = k;
            r = k + v;
        }
    }

    /* (3) the token after each repeat; dry_max holds length + 1 (0: none) */
    int32_t nl = 0;
    for (int32_t k = 1; k < n; k++) {
        int32_t len = z[k] < rep_limit ? z[k] : rep_limit;
        if (len < allowed) continue;
        int32_t t = seq[k - 1];
        if (s->dry_max[t] == 0) s->dry_list[nl++] = t;
        if (s->dry_max[t] < len + 1) s->dry_max[t] = len + 1;
    }

    /* (4) penalties; the exponent is capped so that base^e stays below FLT_MAX */
    const float base = s->p.dry_base;
    int32_t max_exp = 0;
    if (base > 1.000001f) max_exp = (int32_t)(88.7228391f / rl__det_logf(base));
    for (int32_t i = 0; i < nl; i++) {
        int32_t t = s->dry_list[i];
        int32_t len = s->dry_max[t] - 1;
        s->dry_max[t] = 0;
        if (bit_get(s->dry_single_bits, t)) continue;
        int32_t e = len - allowed;
        if (max_exp > 0 && e > max_exp) e = max_exp;
        float pen = (float)((double)s->p.dry_multiplier * pow_int((double)base, e));
        logits[t] -= pen;
    }
}
