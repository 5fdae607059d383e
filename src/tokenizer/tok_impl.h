/*
 * tok_impl.h - what the files of the tokenizer share: the vocabulary record, a string hash
 * table, UTF-8 and Unicode helpers, the pre-tokenizer and the per-algorithm entry points.
 *
 * Behaviour follows llama.cpp's llama-vocab.cpp / unicode.cpp (MIT) so that ids match the
 * reference implementation token for token; the code is our own.
 */
#ifndef RL_TOK_IMPL_H
#define RL_TOK_IMPL_H

#include "../util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growable arrays ---------------------------------------------------------------- */

typedef struct rl__tokvec {
    rl_token *v;
    size_t n, cap;
} rl__tokvec;

bool rl__tokvec_push(rl__tokvec *tv, rl_token t);

typedef struct rl__buf {
    char *p;
    size_t n, cap;
} rl__buf;

bool rl__buf_reserve(rl__buf *b, size_t extra);
bool rl__buf_put(rl__buf *b, const void *s, size_t n);
static inline bool rl__buf_putc(rl__buf *b, char c) { return rl__buf_put(b, &c, 1); }
void rl__buf_free(rl__buf *b);

/* ---- string -> int32 hash table ------------------------------------------------------
 * Open addressing over entries whose keys live elsewhere (the vocabulary's arena) and do
 * not move. Keys are byte strings (may hold NUL). */
typedef struct rl__strmap {
    uint32_t *slots;   /* entry index + 1, 0 = empty; cap slots */
    const char **keys; /* per entry */
    uint32_t *lens;    /* per entry */
    int32_t *vals;     /* per entry */
    uint64_t *hashes;  /* per entry */
    size_t n, n_max, cap;
} rl__strmap;

bool rl__strmap_init(rl__strmap *m, size_t n_max);
void rl__strmap_free(rl__strmap *m);
/* Insert unless present; returns false on a full table. *dup set when key was present. */
bool rl__strmap_put(rl__strmap *m, const char *key, size_t len, int32_t val, bool *dup);
/* Value of key, or -1. */
int32_t rl__strmap_get(const rl__strmap *m, const char *key, size_t len);
/* Value of the key a + sep + b (a byte), or -1, without building the key. */
int32_t rl__strmap_get2(const rl__strmap *m, const char *a, size_t alen, char sep, const char *b,
                        size_t blen);

/* ---- UTF-8 and Unicode ----------------------------------------------------------------- */

#define RL__CP_REPLACEMENT 0xFFFDu

/* Length of the UTF-8 sequence a lead byte announces, from its high nibble (1 for
 * continuation and invalid bytes), as SentencePiece and llama.cpp count it. */
static inline size_t rl__utf8_len(unsigned char c) {
    static const unsigned char lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

/* Decode one code point at s[*i..n) with llama.cpp's lenient rules (structure only:
 * overlong forms and surrogates pass); an invalid sequence gives U+FFFD and consumes one
 * byte. Code points above U+10FFFF count as invalid. */
uint32_t rl__utf8_decode(const unsigned char *s, size_t n, size_t *i);
/* Encode cp (any value up to 0x10FFFF, surrogates included) into out; returns bytes. */
size_t rl__utf8_encode(uint32_t cp, char out[4]);

/* Codepoint classes as llama.cpp's unicode tables define them (regex \p{..} categories,
 * \s as Unicode White_Space). */
enum {
    RL__CPF_NUMBER = 1 << 0,
    RL__CPF_LETTER = 1 << 1,
    RL__CPF_SEPARATOR = 1 << 2,
    RL__CPF_MARK = 1 << 3,
    RL__CPF_PUNCT = 1 << 4,
    RL__CPF_SYMBOL = 1 << 5,
    RL__CPF_CONTROL = 1 << 6,
    RL__CPF_WHITESPACE = 1 << 7,
};
unsigned rl__cp_flags(uint32_t cp);
bool rl__cp_is_whitespace(uint32_t cp);
uint32_t rl__cp_tolower(uint32_t cp);
/* First code point of the canonical decomposition (NFD) of cp. */
uint32_t rl__cp_nfd_first(uint32_t cp);

/* GPT-2's byte-level alphabet: byte -> UTF-8 of its stand-in code point (1 or 2 bytes), and
 * back (code point -> byte, -1 when cp is not in the alphabet). */
size_t rl__byte_to_gpt2(unsigned char b, char out[2]);
int rl__gpt2_to_byte(uint32_t cp);

/* ---- the vocabulary ------------------------------------------------------------------- */

/* Internal attribute bits above the public ones. */
#define RL__ATTR_EOG (1u << 16)
/* Tokens the tokenizer algorithms may produce from plain text: not control, unknown or byte
 * (those come only from parse_special, the unknown fallback and byte fallback). */
#define RL__ATTR_NOT_PLAIN (RL_TOKEN_ATTR_CONTROL | RL_TOKEN_ATTR_UNKNOWN | RL_TOKEN_ATTR_BYTE)

typedef struct rl__pretok rl__pretok;

/* Trie over the texts of special tokens, for finding them in text in one pass. */
typedef struct rl__trie_node {
    int32_t child;   /* first child, -1 none */
    int32_t sibling; /* next sibling, -1 none */
    int32_t special; /* index into rl_vocab.specials, -1 none */
    unsigned char byte;
} rl__trie_node;

struct rl_vocab {
    rl_vocab_type type;
    char model_name[32];
    char pre_name[48];
    int32_t n_tokens;

    /* token texts: NUL-terminated strings in one arena */
    char *text_arena;
    uint32_t *text_off; /* [n_tokens + 1] */
    float *scores;      /* [n_tokens] */
    uint32_t *attrs;    /* [n_tokens] */
    int32_t max_token_len;
    rl__strmap text_map; /* text -> id, every token */

    /* piece of each token with specials shown (what detokenize concatenates) */
    char *piece_arena;
    uint32_t *piece_off; /* [n_tokens + 1] */

    /* BPE merges: "left right" -> rank */
    char *merge_arena;
    rl__strmap merge_map;

    /* SentencePiece: every pair of adjacent characters inside a token text; text is cut
     * where two characters form no such pair, since no merge can then cross the cut */
    rl__strmap spm_pairs;
    bool spm_chunking;

    rl_token byte_tok[256]; /* byte fallback / byte-level single-byte tokens */

    rl_token bos, eos, eot, eom, unk, sep, pad, mask, nl;
    rl_token fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;

    bool add_bos, add_eos, add_sep;
    bool add_space_prefix;
    bool ignore_merges;
    bool clean_spaces;
    bool escape_whitespaces;
    bool newline_words_whole; /* Gemma 4: a word of newlines that is a token is kept whole */
    bool remove_extra_whitespaces;
    bool lowercase, strip_accents; /* WordPiece normalizer */

    /* special tokens matched in text: control, user-defined and unknown tokens, longest
     * first (ties by id) */
    rl_token *specials;
    int32_t n_specials;
    rl__trie_node *trie;
    int32_t n_trie;
    int32_t trie_root[256];

    rl__pretok *pretok; /* BPE only */
};

/* Token lookup restricted to tokens plain text may produce. */
static inline rl_token rl__vocab_plain(const rl_vocab *v, const char *s, size_t n) {
    int32_t id = rl__strmap_get(&v->text_map, s, n);
    if (id >= 0 && (v->attrs[id] & RL__ATTR_NOT_PLAIN)) return RL_TOKEN_NULL;
    return id;
}

static inline const char *rl__tok_text(const rl_vocab *v, rl_token t, size_t *len) {
    *len = v->text_off[t + 1] - v->text_off[t] - 1;
    return v->text_arena + v->text_off[t];
}

/* ---- pre-tokenizer (pretok.c) ----------------------------------------------------------- */

/* Look up tokenizer.ggml.pre for a BPE vocabulary: fills the per-model flags of v and
 * compiles the regexes. RL_ERR_UNSUPPORTED for unknown names. */
rl_status rl__pretok_create(rl_vocab *v, const char *pre, bool gemma4_model, char *err,
                            size_t err_size);
void rl__pretok_free(rl__pretok *p);
bool rl__pretok_byte_encode(const rl__pretok *p);

/* Split text[0..len) into words with the pre-tokenizer's regexes, as llama.cpp's
 * unicode_regex_split: invalid UTF-8 becomes U+FFFD; words are returned as UTF-8 (GPT-2
 * byte-encoded when the model asks) in out, their end offsets in ends. */
rl_status rl__pretok_split(const rl__pretok *p, const char *text, size_t len, rl__buf *out,
                           rl__buf *ends);

/* ---- pair merging (merge.c) ------------------------------------------------------------
 * What SentencePiece BPE (spm.c) and byte-level BPE (bpe.c) share: the symbols of a text in
 * a linked list, and a binary heap of candidate pairs ordered by key, lowest first, ties to
 * the leftmost pair. Merging the best pair re-queues its neighbours, so n symbols cost
 * O(n log n). A queued candidate is stale when either symbol's length has changed since
 * (symbols only grow, or drop to 0 when merged into their left neighbour). */
typedef struct rl__msym {
    int32_t prev, next;
    uint32_t off, len; /* bytes of the text; len 0: merged away */
} rl__msym;

typedef struct rl__mcand {
    double key;
    int32_t left, right;
    uint32_t llen, rlen; /* symbol lengths when queued */
} rl__mcand;

typedef struct rl__merger {
    rl__msym *syms;
    size_t nsym, csym;
    rl__mcand *heap;
    size_t nheap, cheap;
} rl__merger;

/* The key of merging adjacent symbols a and b of text (lower first); false: they never merge. */
typedef bool (*rl__merge_key_fn)(const rl_vocab *v, const char *text, const rl__msym *a,
                                 const rl__msym *b, double *key);

/* Append a symbol text[off..off+len) after the last one; false when out of memory. */
bool rl__merger_add(rl__merger *m, size_t off, size_t len);
/* Merge the symbols [s0, s1) as far as key allows; afterwards the list from s0 (next = -1
 * ends it) holds the merged symbols. RL_ERR_NOMEM when the heap cannot grow. */
rl_status rl__merger_run(rl__merger *m, const rl_vocab *v, const char *text, size_t s0, size_t s1,
                         rl__merge_key_fn key);
void rl__merger_free(rl__merger *m);

/* ---- algorithms ------------------------------------------------------------------------ */

/* Each appends the tokens of one fragment of raw text (special tokens already split off). */
rl_status rl__spm_tokenize(const rl_vocab *v, const char *text, size_t len, rl__tokvec *out);
rl_status rl__bpe_tokenize(const rl_vocab *v, const char *text, size_t len, rl__tokvec *out);
rl_status rl__wpm_tokenize(const rl_vocab *v, const char *text, size_t len, rl__tokvec *out);

/* Build v->spm_pairs (SentencePiece vocabularies). */
rl_status rl__spm_prepare(rl_vocab *v);

/* Piece of token t (specials shown) for the cache built at load; into b. */
bool rl__piece_build(const rl_vocab *v, rl_token t, rl__buf *b);

#endif /* RL_TOK_IMPL_H */
