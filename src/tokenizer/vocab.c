/*
 * vocab.c - build an rl_vocab from GGUF metadata (tokenizer.ggml.*), with the defaults and
 * per-model rules llama.cpp's llama_vocab::impl::load applies, and answer queries on it.
 *
 * The lists of token texts recognised as end-of-turn / end-of-generation / fill-in-middle
 * tokens, and the per-model attribute rules, are facts of those models as llama.cpp
 * records them (src/llama-vocab.cpp, MIT; see NOTICE).
 */
#include "tok_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#define KEY(k) "tokenizer.ggml." k

/* ---- metadata helpers ---------------------------------------------------------------- */

typedef struct loader {
    const rl_gguf *g;
    char *err;
    size_t err_size;
} loader;

/* 1: found (string in *s), 0: absent, RL_ERR_BAD_FILE (negative) for another type. */
static int get_str(loader *L, const char *key, const char **s, size_t *len) {
    int64_t i = rl_gguf_find_key(L->g, key);
    if (i < 0) return 0;
    if (rl_gguf_get_str(L->g, i, s, len) != RL_OK) {
        rl__fmt(L->err, L->err_size, "%s: expected a string", key);
        return -1;
    }
    return 1;
}

static int get_bool(loader *L, const char *key, bool *out) {
    int64_t i = rl_gguf_find_key(L->g, key);
    if (i < 0) return 0;
    if (rl_gguf_get_bool(L->g, i, out) != RL_OK) {
        rl__fmt(L->err, L->err_size, "%s: expected a bool", key);
        return -1;
    }
    return 1;
}

static int get_u64(loader *L, const char *key, uint64_t *out) {
    int64_t i = rl_gguf_find_key(L->g, key);
    if (i < 0) return 0;
    if (rl_gguf_get_u64(L->g, i, out) != RL_OK) {
        rl__fmt(L->err, L->err_size, "%s: expected a non-negative integer", key);
        return -1;
    }
    return 1;
}

/* An array of elem_type with at least n_min elements: 1 found, 0 absent, -1 bad. */
static int get_arr(loader *L, const char *key, rl_gguf_type want, rl_gguf_type want2,
                   uint64_t n_min, int64_t *idx, rl_gguf_type *type, uint64_t *n) {
    int64_t i = rl_gguf_find_key(L->g, key);
    if (i < 0) return 0;
    if (rl_gguf_get_arr_info(L->g, i, type, n) != RL_OK || (*type != want && *type != want2)) {
        rl__fmt(L->err, L->err_size, "%s: expected an array of %s", key, rl_gguf_type_name(want));
        return -1;
    }
    if (*n < n_min) {
        rl__fmt(L->err, L->err_size, "%s: %llu elements, fewer than the %llu tokens", key,
                (unsigned long long)*n, (unsigned long long)n_min);
        return -1;
    }
    *idx = i;
    return 1;
}

/* ---- building ------------------------------------------------------------------------- */

static rl_token find(const rl_vocab *v, const char *s) {
    return rl__strmap_get(&v->text_map, s, strlen(s));
}

/* First token present among names (priority order); sets CONTROL on it, as llama.cpp
 * does for control-looking tokens that were typed otherwise. */
static void detect(rl_vocab *v, rl_token *id, const char *const *names, size_t n) {
    if (*id != RL_TOKEN_NULL) return;
    for (size_t i = 0; i < n; i++) {
        rl_token t = find(v, names[i]);
        if (t >= 0) {
            *id = t;
            v->attrs[t] |= RL_TOKEN_ATTR_CONTROL;
            return;
        }
    }
}

static const char *const k_eot[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>",
    "<end_of_utterance>"};
static const char *const k_eom[] = {"<|eom_id|>"};
static const char *const k_fim_pre[] = {
    "<|fim_prefix|>",  "<fim-prefix>",
    "<fim_prefix>",    "<\357\275\234fim\342\226\201begin\357\275\234>",
    "<PRE>",           "\xe2\x96\x81<PRE>",
    "<|code_prefix|>", "<|prefix|>"};
static const char *const k_fim_suf[] = {
    "<|fim_suffix|>",  "<fim-suffix>",
    "<fim_suffix>",    "<\357\275\234fim\342\226\201hole\357\275\234>",
    "<SUF>",           "\xe2\x96\x81<SUF>",
    "<|code_suffix|>", "<|suffix|>"};
static const char *const k_fim_mid[] = {
    "<|fim_middle|>",  "<fim-middle>",
    "<fim_middle>",    "<\357\275\234fim\342\226\201end\357\275\234>",
    "<MID>",           "\xe2\x96\x81<MID>",
    "<|code_middle|>", "<|middle|>"};
static const char *const k_fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
static const char *const k_fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                                        "<reponame>"};
static const char *const k_fim_sep[] = {"<|file_sep|>"};
/* texts that end generation */
static const char *const k_eog[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>",
    "[e~["};

static void eog_rules(rl_vocab *v) {
    detect(v, &v->eot, k_eot, RL_ARRAY_LEN(k_eot));
    detect(v, &v->eom, k_eom, RL_ARRAY_LEN(k_eom));
    detect(v, &v->fim_pre, k_fim_pre, RL_ARRAY_LEN(k_fim_pre));
    detect(v, &v->fim_suf, k_fim_suf, RL_ARRAY_LEN(k_fim_suf));
    detect(v, &v->fim_mid, k_fim_mid, RL_ARRAY_LEN(k_fim_mid));
    detect(v, &v->fim_pad, k_fim_pad, RL_ARRAY_LEN(k_fim_pad));
    detect(v, &v->fim_rep, k_fim_rep, RL_ARRAY_LEN(k_fim_rep));
    detect(v, &v->fim_sep, k_fim_sep, RL_ARRAY_LEN(k_fim_sep));

    /* control tokens named "unused" are unused */
    for (int32_t t = 0; t < v->n_tokens; t++) {
        size_t n;
        const char *s = rl__tok_text(v, t, &n);
        if ((v->attrs[t] & RL_TOKEN_ATTR_CONTROL) && memmem(s, n, "unused", 6))
            v->attrs[t] |= RL_TOKEN_ATTR_UNUSED;
    }

    rl_token fims[] = {v->fim_pad, v->fim_rep, v->fim_sep};
    for (size_t i = 0; i < RL_ARRAY_LEN(fims); i++)
        if (fims[i] >= 0) v->attrs[fims[i]] |= RL__ATTR_EOG;
    for (size_t i = 0; i < RL_ARRAY_LEN(k_eog); i++) {
        rl_token t = find(v, k_eog[i]);
        if (t >= 0) v->attrs[t] |= RL__ATTR_EOG | RL_TOKEN_ATTR_CONTROL;
    }
    /* gpt-oss: these are shown as text */
    static const char *const k_shown[] = {"<|channel|>", "<|message|>", "<|start|>",
                                          "<|constrain|>"};
    for (size_t i = 0; i < RL_ARRAY_LEN(k_shown); i++) {
        rl_token t = find(v, k_shown[i]);
        if (t >= 0) v->attrs[t] = RL_TOKEN_ATTR_USER_DEFINED | (v->attrs[t] & RL__ATTR_EOG);
    }
    rl_token ids[] = {v->eos, v->eot, v->eom};
    for (size_t i = 0; i < RL_ARRAY_LEN(ids); i++)
        if (ids[i] >= 0) v->attrs[ids[i]] |= RL__ATTR_EOG;

    /* o200k_harmony / solar-open: <|end|> is not an end of generation there */
    rl_token t_ret = find(v, "<|return|>"), t_call = find(v, "<|call|>"),
             t_calls = find(v, "<|calls|>"), t_flush = find(v, "<|flush|>"),
             t_end = find(v, "<|end|>");
#define IS_EOG(t) ((t) >= 0 && (v->attrs[t] & RL__ATTR_EOG))
    bool has_call = IS_EOG(t_call) || IS_EOG(t_calls);
    if (IS_EOG(t_end) && ((IS_EOG(t_ret) && has_call) || (has_call && IS_EOG(t_flush))))
        v->attrs[t_end] = RL_TOKEN_ATTR_USER_DEFINED;
    /* Gemma 4: </s> is an ordinary token */
    rl_token t_tr = find(v, "<|tool_response>"), t_s = find(v, "</s>");
    if (IS_EOG(t_tr) && IS_EOG(t_s)) v->attrs[t_s] = RL_TOKEN_ATTR_NORMAL;
#undef IS_EOG
}

static int cmp_special(const void *a, const void *b, void *ud) {
    const rl_vocab *v = ud;
    rl_token x = *(const rl_token *)a, y = *(const rl_token *)b;
    uint32_t lx = v->text_off[x + 1] - v->text_off[x], ly = v->text_off[y + 1] - v->text_off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static rl_status build_specials(rl_vocab *v) {
    int32_t n = 0;
    for (int32_t t = 0; t < v->n_tokens; t++)
        if (v->attrs[t] &
            (RL_TOKEN_ATTR_CONTROL | RL_TOKEN_ATTR_USER_DEFINED | RL_TOKEN_ATTR_UNKNOWN))
            n++;
    v->specials = rl__malloc((size_t)(n ? n : 1) * sizeof(rl_token));
    if (!v->specials) return RL_ERR_NOMEM;
    size_t nodes = 1;
    for (int32_t t = 0; t < v->n_tokens; t++)
        if (v->attrs[t] &
            (RL_TOKEN_ATTR_CONTROL | RL_TOKEN_ATTR_USER_DEFINED | RL_TOKEN_ATTR_UNKNOWN)) {
            v->specials[v->n_specials++] = t;
            nodes += v->text_off[t + 1] - v->text_off[t];
        }
    qsort_r(v->specials, (size_t)v->n_specials, sizeof(rl_token), cmp_special, v);

    /* trie over their texts */
    v->trie = rl__malloc(nodes * sizeof(rl__trie_node));
    if (!v->trie) return RL_ERR_NOMEM;
    for (int i = 0; i < 256; i++) v->trie_root[i] = -1;
    for (int32_t k = 0; k < v->n_specials; k++) {
        size_t n_;
        const unsigned char *s = (const unsigned char *)rl__tok_text(v, v->specials[k], &n_);
        int32_t *link = &v->trie_root[s[0]], node = -1;
        for (size_t j = 0; j < n_; j++) {
            if (j > 0) link = &v->trie[node].child;
            int32_t c = *link;
            while (c >= 0 && v->trie[c].byte != s[j]) c = v->trie[c].sibling;
            if (c < 0) {
                c = v->n_trie++;
                v->trie[c].child = -1;
                v->trie[c].sibling = *link;
                v->trie[c].special = -1;
                v->trie[c].byte = s[j];
                *link = c;
            }
            node = c;
        }
        if (node >= 0 && v->trie[node].special < 0) v->trie[node].special = k;
    }
    return RL_OK;
}

/* Byte of a <0xXX> token, -1 if the text has another form. */
static int byte_of_token_text(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

bool rl__piece_build(const rl_vocab *v, rl_token t, rl__buf *b) {
    size_t n;
    const char *s = rl__tok_text(v, t, &n);
    uint32_t a = v->attrs[t];
    if (a & (RL_TOKEN_ATTR_UNKNOWN | RL_TOKEN_ATTR_CONTROL | RL_TOKEN_ATTR_USER_DEFINED))
        return rl__buf_put(b, s, n);
    if (a & RL_TOKEN_ATTR_NORMAL) {
        bool spm_like = v->type != RL_VOCAB_TYPE_BPE || v->escape_whitespaces;
        if (spm_like) { /* U+2581 -> space */
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    if (!rl__buf_putc(b, ' ')) return false;
                    i += 3;
                } else {
                    if (!rl__buf_putc(b, s[i])) return false;
                    i++;
                }
            }
            return true;
        }
        /* GPT-2 byte alphabet -> bytes */
        const unsigned char *u = (const unsigned char *)s;
        for (size_t i = 0; i < n;) {
            size_t i0 = i;
            uint32_t cp = rl__utf8_decode(u, n, &i);
            int byte = rl__gpt2_to_byte(cp);
            if (byte >= 0) {
                if (!rl__buf_putc(b, (char)byte)) return false;
                continue;
            }
            /* not in the alphabet: llama.cpp writes this marker */
            char hex[16];
            if (!rl__buf_put(b, "[UNK_BYTE_0x", 12)) return false;
            for (size_t j = i0; j < i; j++) {
                snprintf(hex, sizeof hex, "%02x", u[j]);
                if (!rl__buf_put(b, hex, 2)) return false;
            }
            if (!rl__buf_put(b, s, n) || !rl__buf_putc(b, ']')) return false;
        }
        return true;
    }
    if (a & RL_TOKEN_ATTR_BYTE) {
        int byte = byte_of_token_text(s, n);
        if (byte >= 0) return rl__buf_putc(b, (char)byte);
        return true;
    }
    return true; /* unused / undefined: no text */
}

static rl_status build_pieces(rl_vocab *v) {
    rl__buf b = {0};
    v->piece_off = rl__malloc(((size_t)v->n_tokens + 1) * sizeof(uint32_t));
    if (!v->piece_off || !rl__buf_reserve(&b, (size_t)v->text_off[v->n_tokens])) goto nomem;
    for (int32_t t = 0; t < v->n_tokens; t++) {
        v->piece_off[t] = (uint32_t)b.n;
        if (!rl__piece_build(v, t, &b)) goto nomem;
        if (b.n > UINT32_MAX) goto nomem;
    }
    v->piece_off[v->n_tokens] = (uint32_t)b.n;
    v->piece_arena = b.p;
    return RL_OK;
nomem:
    rl__buf_free(&b);
    return RL_ERR_NOMEM;
}

static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == needle[i]) i++;
        if (i == n) return true;
    }
    return false;
}

/* Attribute rules llama.cpp applies by model name, pre-tokenizer or architecture. */
static void name_rules(loader *L, rl_vocab *v) {
    const char *name = "", *pre = "", *arch = "";
    size_t n;
    if (get_str(L, "general.name", &name, &n) != 1) name = "";
    if (get_str(L, KEY("pre"), &pre, &n) != 1) pre = "";
    if (get_str(L, "general.architecture", &arch, &n) != 1) arch = "";
    if (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code") ||
        strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")) {
        rl_token t = find(v, "<mask>");
        if (t >= 0) v->attrs[t] |= RL_TOKEN_ATTR_LSTRIP;
    } else if (contains_ci(name, "phi-3") || contains_ci(name, "phi3")) {
        for (int32_t k = 0; k < v->n_specials; k++)
            v->attrs[v->specials[k]] |= RL_TOKEN_ATTR_RSTRIP;
        rl_token t = find(v, "</s>");
        if (t >= 0) v->attrs[t] |= RL_TOKEN_ATTR_RSTRIP;
        static const char *const off[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t i = 0; i < RL_ARRAY_LEN(off); i++)
            if ((t = find(v, off[i])) >= 0) v->attrs[t] &= ~(uint32_t)RL_TOKEN_ATTR_RSTRIP;
    } else if (contains_ci(name, "modern-bert")) {
        rl_token t = find(v, "[MASK]");
        if (t >= 0) v->attrs[t] |= RL_TOKEN_ATTR_LSTRIP;
    }
}

static rl_status load_tokens(loader *L, rl_vocab *v, int64_t ki, uint64_t n) {
    const rl_gguf *g = L->g;
    /* scores and types */
    const void *scores = NULL, *types = NULL;
    rl_gguf_type st = RL_GGUF_TYPE_FLOAT32, tt, et;
    int64_t si, ti;
    uint64_t m;
    int r = get_arr(L, KEY("scores"), RL_GGUF_TYPE_FLOAT32, RL_GGUF_TYPE_INT32, n, &si, &st, &m);
    if (r < 0) return RL_ERR_BAD_FILE;
    if (r > 0 && rl_gguf_get_arr_data(g, si, &scores) != RL_OK) return RL_ERR_BAD_FILE;
    r = get_arr(L, KEY("token_type"), RL_GGUF_TYPE_INT32, RL_GGUF_TYPE_INT32, n, &ti, &tt, &m);
    if (r < 0) return RL_ERR_BAD_FILE;
    if (r > 0 && rl_gguf_get_arr_data(g, ti, &types) != RL_OK) return RL_ERR_BAD_FILE;
    (void)et;

    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (rl_gguf_get_arr_str(g, ki, i, &s, &len) != RL_OK) {
            rl__fmt(L->err, L->err_size, "%s: element %llu unreadable", KEY("tokens"),
                    (unsigned long long)i);
            return RL_ERR_BAD_FILE;
        }
        total += (len ? len : 32) + 1;
        if (total > UINT32_MAX) {
            rl__fmt(L->err, L->err_size, "%s: over 4 GiB of token text", KEY("tokens"));
            return RL_ERR_LIMIT;
        }
    }
    v->text_arena = rl__malloc(total ? total : 1);
    v->text_off = rl__malloc((n + 1) * sizeof(uint32_t));
    v->scores = rl__malloc((n ? n : 1) * sizeof(float));
    v->attrs = rl__malloc((n ? n : 1) * sizeof(uint32_t));
    if (!v->text_arena || !v->text_off || !v->scores || !v->attrs ||
        !rl__strmap_init(&v->text_map, n))
        return RL_ERR_NOMEM;
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        rl_gguf_get_arr_str(g, ki, i, &s, &len);
        char *dst = v->text_arena + off;
        if (len == 0) { /* llama.cpp names empty tokens so that they stay distinct */
            len = (size_t)snprintf(dst, 32, "[EMPTY_%llu]", (unsigned long long)i);
        } else {
            memcpy(dst, s, len);
        }
        dst[len] = 0;
        v->text_off[i] = (uint32_t)off;
        off += len + 1;
        bool dup;
        rl__strmap_put(&v->text_map, dst, len, (int32_t)i, &dup);
        if (dup) {
            rl__fmt(L->err, L->err_size, "%s: duplicate token '%.40s' at %llu", KEY("tokens"), dst,
                    (unsigned long long)i);
            return RL_ERR_BAD_FILE;
        }
        if ((int32_t)len > v->max_token_len) v->max_token_len = (int32_t)len;
        v->scores[i] = !scores                    ? 0.0f
                       : st == RL_GGUF_TYPE_INT32 ? (float)((const int32_t *)scores)[i]
                                                  : ((const float *)scores)[i];
        uint32_t a = RL_TOKEN_ATTR_NORMAL;
        if (types) {
            switch (((const int32_t *)types)[i]) {
            case 1:
                a = RL_TOKEN_ATTR_NORMAL;
                break;
            case 2:
                a = RL_TOKEN_ATTR_UNKNOWN;
                break;
            case 3:
                a = RL_TOKEN_ATTR_CONTROL;
                break;
            case 4:
                a = RL_TOKEN_ATTR_USER_DEFINED;
                break;
            case 5:
                a = RL_TOKEN_ATTR_UNUSED;
                break;
            case 6:
                a = RL_TOKEN_ATTR_BYTE;
                break;
            default:
                a = RL_TOKEN_ATTR_UNDEFINED;
                break;
            }
        }
        v->attrs[i] = a;
    }
    v->text_off[n] = (uint32_t)off;
    return RL_OK;
}

static rl_status load_merges(loader *L, rl_vocab *v) {
    int64_t mi;
    rl_gguf_type et;
    uint64_t n;
    int r = get_arr(L, KEY("merges"), RL_GGUF_TYPE_STRING, RL_GGUF_TYPE_STRING, 0, &mi, &et, &n);
    if (r < 0) return RL_ERR_BAD_FILE;
    if (r == 0) {
        rl__fmt(L->err, L->err_size, "%s: missing (BPE vocabulary)", KEY("merges"));
        return RL_ERR_BAD_FILE;
    }
    if (n > INT32_MAX) return RL_ERR_LIMIT;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (rl_gguf_get_arr_str(L->g, mi, i, &s, &len) != RL_OK) return RL_ERR_BAD_FILE;
        if (!rl__add_size(total, len + 1, &total)) return RL_ERR_LIMIT;
    }
    v->merge_arena = rl__malloc(total ? total : 1);
    if (!v->merge_arena || !rl__strmap_init(&v->merge_map, n)) return RL_ERR_NOMEM;
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        rl_gguf_get_arr_str(L->g, mi, i, &s, &len);
        char *dst = v->merge_arena + off;
        memcpy(dst, s, len);
        dst[len] = 0;
        off += len + 1;
        bool dup; /* the first (lowest) rank of a repeated pair wins */
        rl__strmap_put(&v->merge_map, dst, len, (int32_t)i, &dup);
    }
    return RL_OK;
}

static rl_status read_specials(loader *L, rl_vocab *v) {
    struct {
        const char *key;
        rl_token *id;
    } keys[] = {
        {KEY("bos_token_id"), &v->bos},         {KEY("eos_token_id"), &v->eos},
        {KEY("eot_token_id"), &v->eot},         {KEY("eom_token_id"), &v->eom},
        {KEY("unknown_token_id"), &v->unk},     {KEY("seperator_token_id"), &v->sep},
        {KEY("padding_token_id"), &v->pad},     {KEY("mask_token_id"), &v->mask},
        {KEY("fim_pre_token_id"), &v->fim_pre}, {KEY("fim_suf_token_id"), &v->fim_suf},
        {KEY("fim_mid_token_id"), &v->fim_mid}, {KEY("fim_pad_token_id"), &v->fim_pad},
        {KEY("fim_rep_token_id"), &v->fim_rep}, {KEY("fim_sep_token_id"), &v->fim_sep},
        {KEY("prefix_token_id"), &v->fim_pre},  {KEY("suffix_token_id"), &v->fim_suf},
        {KEY("middle_token_id"), &v->fim_mid},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(keys); i++) {
        rl_token *id = keys[i].id;
        if (*id >= v->n_tokens) *id = RL_TOKEN_NULL; /* a default past the vocabulary */
        uint64_t x;
        int r = get_u64(L, keys[i].key, &x);
        if (r < 0) return RL_ERR_BAD_FILE;
        if (r > 0 && x < (uint64_t)v->n_tokens) *id = (rl_token)x; /* else keep the default */
    }
    bool b;
    int r;
    if ((r = get_bool(L, KEY("add_bos_token"), &b)) < 0) return RL_ERR_BAD_FILE;
    if (r) v->add_bos = b;
    if ((r = get_bool(L, KEY("add_eos_token"), &b)) < 0) return RL_ERR_BAD_FILE;
    if (r) v->add_eos = b;
    if ((r = get_bool(L, KEY("add_sep_token"), &b)) < 0) return RL_ERR_BAD_FILE;
    if (r) v->add_sep = b;
    if (v->newline_words_whole) v->add_bos = true; /* Gemma 4 always starts with BOS */
    if (v->add_bos && v->bos < 0) {
        rl__fmt(L->err, L->err_size, "%s is true but %s is not set", KEY("add_bos_token"),
                KEY("bos_token_id"));
        return RL_ERR_BAD_FILE;
    }
    if (v->add_eos && v->eos < 0) {
        rl__fmt(L->err, L->err_size, "%s is true but %s is not set", KEY("add_eos_token"),
                KEY("eos_token_id"));
        return RL_ERR_BAD_FILE;
    }
    if (v->add_sep && v->sep < 0) {
        rl__fmt(L->err, L->err_size, "%s is true but %s is not set", KEY("add_sep_token"),
                KEY("seperator_token_id"));
        return RL_ERR_BAD_FILE;
    }
    return RL_OK;
}

static void set_byte_tokens(rl_vocab *v) {
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        rl_token t = RL_TOKEN_NULL;
        if (v->type == RL_VOCAB_TYPE_SPM) {
            t = find(v, hex);
            if (t < 0) {
                char c = (char)b;
                t = rl__strmap_get(&v->text_map, &c, 1);
            }
        } else if (v->type == RL_VOCAB_TYPE_BPE && v->escape_whitespaces) {
            t = find(v, hex);
        } else {
            char enc[2];
            size_t n = rl__byte_to_gpt2((unsigned char)b, enc);
            t = rl__strmap_get(&v->text_map, enc, n);
        }
        v->byte_tok[b] = t;
    }
}

RL_API rl_status rl_vocab_load(const rl_gguf *g, rl_vocab **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!g) return RL_ERR_INVALID_ARG;
    loader L = {g, err, err_size};
    rl_vocab *v = rl__calloc(1, sizeof(*v));
    if (!v) return RL_ERR_NOMEM;
    rl_status st = RL_ERR_BAD_FILE;
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->mask = v->nl = RL_TOKEN_NULL;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = RL_TOKEN_NULL;
    v->escape_whitespaces = true;
    v->lowercase = true;

    const char *model;
    size_t mlen;
    int r = get_str(&L, KEY("model"), &model, &mlen);
    if (r <= 0) {
        if (r == 0) rl__fmt(err, err_size, "%s: missing", KEY("model"));
        goto fail;
    }
    snprintf(v->model_name, sizeof v->model_name, "%s", model);
    snprintf(v->pre_name, sizeof v->pre_name, "default");
    bool gemma4 = false;
    if (!strcmp(model, "no_vocab") || !strcmp(model, "none")) {
        v->type = RL_VOCAB_TYPE_NONE;
    } else if (!strcmp(model, "llama")) {
        v->type = RL_VOCAB_TYPE_SPM;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
    } else if (!strcmp(model, "bert")) {
        v->type = RL_VOCAB_TYPE_WPM;
        v->bos = 101;
        v->unk = 100;
        v->sep = 102;
        v->pad = 0;
        v->mask = 103;
    } else if (!strcmp(model, "gpt2") || (gemma4 = !strcmp(model, "gemma4"))) {
        v->type = RL_VOCAB_TYPE_BPE;
        if (!gemma4) v->bos = v->eos = 11;
    } else {
        rl__fmt(err, err_size, "%s: tokenizer '%s' is not supported", KEY("model"), model);
        st = RL_ERR_UNSUPPORTED;
        goto fail;
    }

    if (v->type == RL_VOCAB_TYPE_NONE) {
        /* ids without texts: <arch>.vocab_size of them */
        const char *arch;
        size_t alen;
        uint64_t n = 0;
        char key[160];
        if (get_str(&L, "general.architecture", &arch, &alen) == 1) {
            snprintf(key, sizeof key, "%s.vocab_size", arch);
            if (get_u64(&L, key, &n) < 0) goto fail;
        }
        if (n > INT32_MAX) n = 0;
        v->n_tokens = (int32_t)n;
        v->text_arena = rl__calloc(n ? n : 1, 1);
        v->text_off = rl__malloc((n + 1) * sizeof(uint32_t));
        v->scores = rl__calloc(n ? n : 1, sizeof(float));
        v->attrs = rl__calloc(n ? n : 1, sizeof(uint32_t));
        st = RL_ERR_NOMEM;
        if (!v->text_arena || !v->text_off || !v->scores || !v->attrs ||
            !rl__strmap_init(&v->text_map, 0))
            goto fail;
        for (uint64_t i = 0; i <= n; i++) v->text_off[i] = (uint32_t)i;
        if ((st = build_specials(v)) != RL_OK || (st = build_pieces(v)) != RL_OK) goto fail;
        *out = v;
        return RL_OK;
    }

    if (v->type == RL_VOCAB_TYPE_BPE) {
        v->add_space_prefix = false;
        v->escape_whitespaces = false;
        v->clean_spaces = true;
        const char *pre = NULL;
        size_t plen;
        if ((r = get_str(&L, KEY("pre"), &pre, &plen)) < 0) goto fail;
        if ((st = rl__pretok_create(v, r ? pre : NULL, gemma4, err, err_size)) != RL_OK) goto fail;
    } else if (v->type == RL_VOCAB_TYPE_SPM) {
        v->add_space_prefix = true;
        v->add_bos = true;
    } else { /* WPM */
        v->clean_spaces = true;
        v->add_bos = true;
        v->add_sep = true;
    }
    st = RL_ERR_BAD_FILE;
    bool b;
    if ((r = get_bool(&L, KEY("add_space_prefix"), &b)) < 0) goto fail;
    if (r) v->add_space_prefix = b;
    if ((r = get_bool(&L, KEY("remove_extra_whitespaces"), &b)) < 0) goto fail;
    if (r) v->remove_extra_whitespaces = b;
    /* BertNormalizer: lowercase by default; accents go with lowercasing unless told */
    if ((r = get_bool(&L, KEY("normalizer.lowercase"), &b)) < 0) goto fail;
    if (r) v->lowercase = b;
    v->strip_accents = v->lowercase;
    if ((r = get_bool(&L, KEY("normalizer.strip_accents"), &b)) < 0) goto fail;
    if (r) v->strip_accents = b;

    int64_t ki;
    rl_gguf_type et;
    uint64_t n;
    if ((r = get_arr(&L, KEY("tokens"), RL_GGUF_TYPE_STRING, RL_GGUF_TYPE_STRING, 0, &ki, &et,
                     &n)) <= 0) {
        if (r == 0) rl__fmt(err, err_size, "%s: missing", KEY("tokens"));
        goto fail;
    }
    if (n >= INT32_MAX) {
        rl__fmt(err, err_size, "%s: %llu tokens", KEY("tokens"), (unsigned long long)n);
        st = RL_ERR_LIMIT;
        goto fail;
    }
    v->n_tokens = (int32_t)n;
    if ((st = load_tokens(&L, v, ki, n)) != RL_OK) goto fail;
    if (v->type == RL_VOCAB_TYPE_BPE && (st = load_merges(&L, v)) != RL_OK) goto fail;
    set_byte_tokens(v);
    if ((st = read_specials(&L, v)) != RL_OK) goto fail;
    eog_rules(v);
    if (v->type == RL_VOCAB_TYPE_SPM && (st = rl__spm_prepare(v)) != RL_OK) goto fail;
    if ((st = build_specials(v)) != RL_OK) goto fail;
    if ((st = build_pieces(v)) != RL_OK) goto fail;
    name_rules(&L, v);

    /* the newline token */
    if (v->type == RL_VOCAB_TYPE_SPM) {
        v->nl = v->byte_tok['\n'] >= 0 ? v->byte_tok['\n'] : v->pad;
    } else if (v->type == RL_VOCAB_TYPE_WPM) {
        v->nl = v->pad;
    } else {
        rl_token t[4];
        size_t nt = 0;
        rl_status ts = rl_tokenize(v, "\n", 1, 0, t, 4, &nt);
        if (ts == RL_ERR_NOMEM) {
            st = ts;
            goto fail;
        }
        v->nl = (ts == RL_OK && nt > 0) ? t[0] : v->pad;
    }
    *out = v;
    return RL_OK;
fail:
    if (st == RL_ERR_NOMEM && err && err_size && !err[0])
        rl__fmt(err, err_size, "out of memory loading the vocabulary");
    rl_vocab_free(v);
    return st;
}

RL_API void rl_vocab_free(rl_vocab *v) {
    if (!v) return;
    rl__free(v->text_arena);
    rl__free(v->text_off);
    rl__free(v->scores);
    rl__free(v->attrs);
    rl__strmap_free(&v->text_map);
    rl__free(v->piece_arena);
    rl__free(v->piece_off);
    rl__free(v->merge_arena);
    rl__strmap_free(&v->merge_map);
    rl__strmap_free(&v->spm_pairs);
    rl__free(v->specials);
    rl__free(v->trie);
    rl__pretok_free(v->pretok);
    rl__free(v);
}

/* ---- queries ---------------------------------------------------------------------------- */

RL_API rl_vocab_type rl_vocab_get_type(const rl_vocab *v) { return v->type; }
RL_API const char *rl_vocab_model_name(const rl_vocab *v) { return v->model_name; }
RL_API const char *rl_vocab_pre_name(const rl_vocab *v) { return v->pre_name; }
RL_API int32_t rl_vocab_n_tokens(const rl_vocab *v) { return v->n_tokens; }
RL_API rl_token rl_vocab_bos(const rl_vocab *v) { return v->bos; }
RL_API rl_token rl_vocab_eos(const rl_vocab *v) { return v->eos; }
RL_API rl_token rl_vocab_eot(const rl_vocab *v) { return v->eot; }
RL_API rl_token rl_vocab_eom(const rl_vocab *v) { return v->eom; }
RL_API rl_token rl_vocab_unk(const rl_vocab *v) { return v->unk; }
RL_API rl_token rl_vocab_sep(const rl_vocab *v) { return v->sep; }
RL_API rl_token rl_vocab_pad(const rl_vocab *v) { return v->pad; }
RL_API rl_token rl_vocab_nl(const rl_vocab *v) { return v->nl; }
RL_API bool rl_vocab_add_bos(const rl_vocab *v) { return v->add_bos; }
RL_API bool rl_vocab_add_eos(const rl_vocab *v) { return v->add_eos; }

RL_API uint32_t rl_vocab_token_attr(const rl_vocab *v, rl_token t) {
    if (t < 0 || t >= v->n_tokens) return 0;
    return v->attrs[t] & 0xffffu;
}

RL_API bool rl_vocab_is_eog(const rl_vocab *v, rl_token t) {
    return t >= 0 && t < v->n_tokens && (v->attrs[t] & RL__ATTR_EOG);
}

RL_API bool rl_vocab_is_control(const rl_vocab *v, rl_token t) {
    return t >= 0 && t < v->n_tokens && (v->attrs[t] & RL_TOKEN_ATTR_CONTROL);
}

RL_API const char *rl_vocab_token_text(const rl_vocab *v, rl_token t, size_t *len) {
    if (t < 0 || t >= v->n_tokens) return NULL;
    size_t n;
    const char *s = rl__tok_text(v, t, &n);
    if (len) *len = n;
    return s;
}

RL_API float rl_vocab_token_score(const rl_vocab *v, rl_token t) {
    if (t < 0 || t >= v->n_tokens) return 0.0f;
    return v->scores[t];
}

RL_API rl_token rl_vocab_find(const rl_vocab *v, const char *s, size_t len) {
    if (!s) return RL_TOKEN_NULL;
    return rl__strmap_get(&v->text_map, s, len);
}
