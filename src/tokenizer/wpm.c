/*
 * wpm.c - WordPiece (BERT; Wu et al. 2016) as llama.cpp runs it on "bert" vocabularies,
 * whose converter stored word-initial pieces with a leading U+2581 and continuation pieces
 * ("##ing") bare.
 *
 * Normalization, as BertNormalizer and llama.cpp: optionally strip accents (keep the first
 * code point of the NFD form, drop combining marks) and lowercase; drop NUL, U+FFFD and
 * control characters; split at whitespace, and make every punctuation character, ASCII
 * symbol and CJK ideograph a word of its own. Each word is then cut greedily into the
 * longest pieces from the left; a word with a part no piece covers becomes [UNK].
 */
#include "tok_impl.h"

static bool is_cjk(uint32_t c) {
    /* BERT's _is_chinese_char ranges, with 0x2B920 as the HF Rust code has it */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Greedy longest-match of "\u2581" + word; appends its pieces or [UNK]. */
static rl_status wpm_word(const rl_vocab *v, const char *w, size_t n, rl__buf *tmp,
                          rl__tokvec *out) {
    if (n == 0) return RL_OK;
    tmp->n = 0;
    if (!rl__buf_put(tmp, "\xe2\x96\x81", 3) || !rl__buf_put(tmp, w, n)) return RL_ERR_NOMEM;
    const char *s = tmp->p;
    size_t len = tmp->n, start = out->n;
    for (size_t i = 0; i < len; i++) {
        bool found = false;
        size_t jmax = RL_MIN(len, i + (size_t)v->max_token_len + 1);
        for (size_t j = jmax; j > i; j--) {
            rl_token t = rl__vocab_plain(v, s + i, j - i);
            if (t >= 0) {
                if (!rl__tokvec_push(out, t)) return RL_ERR_NOMEM;
                found = true;
                i = j - 1;
                break;
            }
        }
        if (!found) {
            out->n = start;
            break;
        }
    }
    if (out->n == start && !rl__tokvec_push(out, v->unk)) return RL_ERR_NOMEM;
    return RL_OK;
}

rl_status rl__wpm_tokenize(const rl_vocab *v, const char *text, size_t len, rl__tokvec *out) {
    rl_status st = RL_ERR_NOMEM;
    rl__buf word = {0}, tmp = {0};
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp = rl__utf8_decode(s, len, &i);
        if (v->strip_accents) cp = rl__cp_nfd_first(cp);
        unsigned f = rl__cp_flags(cp);
        if (f & RL__CPF_WHITESPACE) {
            if ((st = wpm_word(v, word.p, word.n, &tmp, out)) != RL_OK) goto done;
            word.n = 0;
            continue;
        }
        st = RL_ERR_NOMEM;
        if (cp == 0 || cp == RL__CP_REPLACEMENT || (f & RL__CPF_CONTROL)) continue;
        if (v->strip_accents && (f & RL__CPF_MARK)) continue;
        char enc[4];
        size_t k = rl__utf8_encode(v->lowercase ? rl__cp_tolower(cp) : cp, enc);
        if ((f & RL__CPF_PUNCT) || (cp < 0x7f && (f & RL__CPF_SYMBOL)) || is_cjk(cp)) {
            if ((st = wpm_word(v, word.p, word.n, &tmp, out)) != RL_OK) goto done;
            if ((st = wpm_word(v, enc, k, &tmp, out)) != RL_OK) goto done;
            word.n = 0;
            continue;
        }
        if (!rl__buf_put(&word, enc, k)) goto done;
    }
    st = wpm_word(v, word.p, word.n, &tmp, out);
done:
    rl__buf_free(&word);
    rl__buf_free(&tmp);
    return st;
}
