/*
 * detok.c - ids to text: one token's piece, a whole sequence (llama.cpp's
 * llama_detokenize, with its leading-space and clean-up rules), and a streaming
 * detokenizer that emits only whole UTF-8 characters.
 */
#include "tok_impl.h"

/* Piece of t: the cached text with specials shown, empty for control and unknown tokens
 * unless asked; lstrip drops one leading space. */
static const char *piece(const rl_vocab *v, rl_token t, bool special, bool lstrip, size_t *n) {
    const char *p = v->piece_arena + v->piece_off[t];
    size_t len = v->piece_off[t + 1] - v->piece_off[t];
    if (!special && (v->attrs[t] & (RL_TOKEN_ATTR_CONTROL | RL_TOKEN_ATTR_UNKNOWN))) len = 0;
    if (lstrip && len && p[0] == ' ') {
        p++;
        len--;
    }
    *n = len;
    return p;
}

RL_API rl_status rl_token_to_piece(const rl_vocab *v, rl_token t, uint32_t flags, char *buf,
                                   size_t size, size_t *n_out) {
    if (!v || !n_out || (!buf && size)) return RL_ERR_INVALID_ARG;
    *n_out = 0;
    if (t < 0 || t >= v->n_tokens) return RL_ERR_INVALID_ARG;
    size_t n;
    const char *p = piece(v, t, flags & RL_DETOK_SPECIAL, false, &n);
    *n_out = n;
    if (n > size) return RL_ERR_RANGE;
    if (n) memcpy(buf, p, n);
    return RL_OK;
}

/* clean_up_tokenization_spaces as llama.cpp applies it (three passes over the text, in
 * place): " ?", " !", " .", " ," lose the space; a lone apostrophe between spaces loses
 * both; " 's", " 'm", " 're", " 've" lose the space. Returns the new length. */
static size_t clean_spaces(char *t, size_t total) {
    size_t n1 = total, n = total ? 1 : 0;
    for (size_t i = 1; i < n1; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) n--;
        t[n++] = x;
    }
    size_t n2 = n;
    n = n ? 1 : 0;
    for (size_t i = 1; i < n2; i++) {
        char x = t[i];
        if (x == '\'' && i + 1 < n2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
            n--;           /* the space before */
            t[++i] = '\0'; /* and skip the one after (llama.cpp leaves a NUL behind it) */
        }
        t[n++] = x;
    }
    size_t n3 = n;
    n = n ? 1 : 0;
    for (size_t i = 1; i < n3; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < n3) {
            char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm') {
                n--;
            } else if (i + 2 < n3) {
                char x2 = t[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) n--;
            }
        }
        t[n++] = x;
    }
    return n;
}

RL_API rl_status rl_detokenize(const rl_vocab *v, const rl_token *tokens, size_t n, uint32_t flags,
                               char *buf, size_t size, size_t *n_out) {
    if (!v || !n_out || (!tokens && n) || (!buf && size)) return RL_ERR_INVALID_ARG;
    *n_out = 0;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= v->n_tokens) return RL_ERR_INVALID_ARG;
    bool special = flags & RL_DETOK_SPECIAL;
    bool remove_space = v->add_space_prefix && !(flags & RL_DETOK_KEEP_LEADING_SPACE);
    if ((flags & RL_DETOK_REMOVE_SPECIAL) && v->add_bos && n > 0 && tokens[0] == v->bos) {
        remove_space = false;
        tokens++;
        n--;
    }
    if ((flags & RL_DETOK_REMOVE_SPECIAL) && v->add_eos && n > 0 && tokens[n - 1] == v->eos) n--;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *p = piece(v, tokens[i], special, remove_space, &k);
        remove_space = false;
        if (k && total + k <= size) memcpy(buf + total, p, k);
        total += k;
    }
    *n_out = total;
    if (total > size) return RL_ERR_RANGE;
    if (v->clean_spaces && !(flags & RL_DETOK_NO_CLEANUP)) *n_out = clean_spaces(buf, total);
    return RL_OK;
}

/* ---- streaming ----------------------------------------------------------------------- */

struct rl_detok {
    const rl_vocab *v;
    uint32_t flags;
    bool first;
    rl__buf pend; /* bytes of an unfinished character */
    rl__buf out;
};

RL_API rl_status rl_detok_create(const rl_vocab *v, uint32_t flags, rl_detok **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!v) return RL_ERR_INVALID_ARG;
    rl_detok *d = rl__calloc(1, sizeof(*d));
    if (!d) return RL_ERR_NOMEM;
    d->v = v;
    d->flags = flags;
    d->first = true;
    *out = d;
    return RL_OK;
}

RL_API void rl_detok_free(rl_detok *d) {
    if (!d) return;
    rl__buf_free(&d->pend);
    rl__buf_free(&d->out);
    rl__free(d);
}

RL_API void rl_detok_reset(rl_detok *d) {
    if (!d) return;
    d->first = true;
    d->pend.n = 0;
    d->out.n = 0;
}

/* Length of the well-formed UTF-8 character at s[0..n) (Unicode Table 3-7): > 0 complete,
 * 0 when s is a proper prefix of one (more bytes may complete it), < 0 the negated length
 * of the maximal ill-formed subpart to replace with one U+FFFD. */
static int utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int need;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return -1;
    }
    for (int j = 1; j <= need; j++) {
        if ((size_t)j >= n) return 0;
        unsigned d = s[j];
        if (d < lo || d > hi) return -j;
        lo = 0x80;
        hi = 0xbf;
    }
    return need + 1;
}

/* Move the whole characters of pend to out (ill-formed bytes as U+FFFD); with final, an
 * unfinished tail too. */
static bool drain(rl_detok *d, bool final) {
    const unsigned char *s = (const unsigned char *)d->pend.p;
    size_t n = d->pend.n, i = 0;
    d->out.n = 0;
    while (i < n) {
        int k = utf8_char(s + i, n - i);
        if (k > 0) {
            if (!rl__buf_put(&d->out, s + i, (size_t)k)) return false;
            i += (size_t)k;
        } else if (k < 0) {
            if (!rl__buf_put(&d->out, "\xef\xbf\xbd", 3)) return false;
            i += (size_t)-k;
        } else if (final) {
            if (!rl__buf_put(&d->out, "\xef\xbf\xbd", 3)) return false;
            i = n;
        } else {
            break;
        }
    }
    if (i && n > i) memmove(d->pend.p, d->pend.p + i, n - i);
    d->pend.n = n - i;
    return true;
}

RL_API rl_status rl_detok_push(rl_detok *d, rl_token t, const char **text, size_t *len) {
    if (!d || !text || !len) return RL_ERR_INVALID_ARG;
    *text = "";
    *len = 0;
    const rl_vocab *v = d->v;
    if (t < 0 || t >= v->n_tokens) return RL_ERR_INVALID_ARG;
    bool lstrip = false;
    if (d->first) {
        d->first = false;
        if ((d->flags & RL_DETOK_REMOVE_SPECIAL) && v->add_bos && t == v->bos) return RL_OK;
        lstrip = v->add_space_prefix && !(d->flags & RL_DETOK_KEEP_LEADING_SPACE);
    }
    size_t k;
    const char *p = piece(v, t, d->flags & RL_DETOK_SPECIAL, lstrip, &k);
    if (!rl__buf_put(&d->pend, p, k) || !drain(d, false)) return RL_ERR_NOMEM;
    *text = d->out.n ? d->out.p : "";
    *len = d->out.n;
    return RL_OK;
}

RL_API rl_status rl_detok_flush(rl_detok *d, const char **text, size_t *len) {
    if (!d || !text || !len) return RL_ERR_INVALID_ARG;
    *text = "";
    *len = 0;
    if (!drain(d, true)) return RL_ERR_NOMEM;
    *text = d->out.n ? d->out.p : "";
    *len = d->out.n;
    return RL_OK;
}
