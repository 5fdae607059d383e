/*
 * fuzz_tokenize.c - libFuzzer harness for the tokenizer: arbitrary bytes (invalid UTF-8,
 * markup that looks like special tokens, long runs) are tokenized with one of several
 * vocabularies (the first byte picks the vocabulary and the flags), then detokenized whole
 * and streamed. Checks: the count query and the call agree, ids are in range, a second
 * call gives the same ids, the streamed text is whole UTF-8 and equals the whole
 * detokenization where that is valid UTF-8, and for byte-level BPE vocabularies that have
 * a token for each of the 256 bytes, without special parsing, ids -> text -> ids is the
 * identity (other vocabularies drop bytes they cannot spell, as llama.cpp does). Any
 * leak through the library's allocator traps.
 *
 * Vocabularies: those of $RUVLLM_TESTDATA/models/vocab that exist, and a small
 * SentencePiece one built in memory.
 */
#include "ruvllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_tokenize: %s:%d: requirement failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_VOCABS 16
static rl_vocab *g_vocabs[MAX_VOCABS];
static rl_gguf *g_files[MAX_VOCABS];
static bool g_byte_complete[MAX_VOCABS]; /* byte-level BPE with all 256 byte tokens */
static int g_n;
static char *g_mem; /* the in-memory GGUF */
static size_t g_mem_n;

static rl_status sink(void *user, const void *buf, size_t n) {
    (void)user;
    char *p = realloc(g_mem, g_mem_n + n);
    if (!p) return RL_ERR_NOMEM;
    memcpy(p + g_mem_n, buf, n);
    g_mem = p;
    g_mem_n += n;
    return RL_OK;
}

static void add(rl_gguf *g) {
    char err[256];
    rl_vocab *v;
    if (rl_vocab_load(g, &v, err, sizeof err) != RL_OK) {
        fprintf(stderr, "fuzz_tokenize: vocabulary: %s\n", err);
        rl_gguf_free(g);
        return;
    }
    bool complete =
        rl_vocab_get_type(v) == RL_VOCAB_TYPE_BPE && strcmp(rl_vocab_pre_name(v), "gemma4") != 0;
    for (int b = 0; b < 256 && complete; b++) {
        /* GPT-2's stand-in for byte b (openai/gpt-2 bytes_to_unicode) */
        unsigned cp = b <= 0x20                  ? 256 + b
                      : (b >= 0x7f && b <= 0xa0) ? 289 + (b - 0x7f)
                      : b == 0xad                ? 323
                                                 : (unsigned)b;
        char s[2];
        size_t k = 1;
        if (cp < 0x80) {
            s[0] = (char)cp;
        } else {
            s[0] = (char)(0xc0 | (cp >> 6));
            s[1] = (char)(0x80 | (cp & 0x3f));
            k = 2;
        }
        complete = rl_vocab_find(v, s, k) >= 0;
    }
    g_byte_complete[g_n] = complete;
    g_files[g_n] = g;
    g_vocabs[g_n++] = v;
}

static void build_tiny(void) {
    static const char *const toks[] = {
        "<unk>",         "<s>",    "</s>",           "<0x0A>", "<0xE2>",
        "<0x96>",        "<0x81>", "\xe2\x96\x81",   "a",      "b",
        "\342\226\201a", "ab",     "\342\226\201ab", "<|x|>",  "[u]"};
    float scores[15];
    int32_t types[15];
    for (int i = 0; i < 15; i++) {
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : i <= 2 || i == 13 ? 3 : i <= 6 ? 6 : i == 14 ? 4 : 1;
    }
    rl_gguf_writer *w;
    REQUIRE(rl_gguf_writer_create(&w) == RL_OK);
    REQUIRE(rl_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") == RL_OK);
    REQUIRE(rl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 15) == RL_OK);
    REQUIRE(rl_gguf_writer_set_arr(w, "tokenizer.ggml.scores", RL_GGUF_TYPE_FLOAT32, scores, 15) ==
            RL_OK);
    REQUIRE(rl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", RL_GGUF_TYPE_INT32, types, 15) ==
            RL_OK);
    REQUIRE(rl_gguf_writer_write_to(w, sink, NULL) == RL_OK);
    rl_gguf_writer_free(w);
    rl_gguf *g;
    char err[256];
    REQUIRE(rl_gguf_open_memory(g_mem, g_mem_n, &g, err, sizeof err) == RL_OK);
    add(g);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static const char *const names[] = {"llama-spm",    "llama-bpe", "qwen35",
                                        "deepseek-llm", "falcon",    "gemma-4",
                                        "bert-bge",     "mpt",       "phi-3"};
    const char *root = getenv("RUVLLM_TESTDATA");
    if (!root || !*root) root = "../shared";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024], err[256];
        snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-%s.gguf", root, names[i]);
        rl_gguf *g;
        if (rl_gguf_open(path, &g, err, sizeof err) == RL_OK) add(g);
    }
    if (g_n == 0)
        fprintf(stderr, "fuzz_tokenize: no vocabularies under %s; the built one only\n", root);
    build_tiny();
    return 0;
}

static bool valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], lo = 0x80, hi = 0xbf;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            k = 1;
        else if (c >= 0xe0 && c <= 0xef)
            k = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        else
            return false;
        if (i + k >= n) return false;
        for (size_t j = 1; j <= k; j++, lo = 0x80, hi = 0xbf)
            if (s[i + j] < lo || s[i + j] > hi) return false;
        i += k + 1;
    }
    return true;
}

static rl_token *tokenize(const rl_vocab *v, const char *s, size_t n, uint32_t flags,
                          size_t *count) {
    size_t need = 0;
    rl_status st = rl_tokenize(v, s, n, flags, NULL, 0, &need);
    REQUIRE(st == RL_OK || st == RL_ERR_RANGE);
    REQUIRE(st == RL_OK ? need == 0 : need > 0);
    rl_token *t = malloc((need ? need : 1) * sizeof(rl_token));
    REQUIRE(t);
    REQUIRE(rl_tokenize(v, s, n, flags, t, need, count) == RL_OK && *count == need);
    for (size_t i = 0; i < need; i++) REQUIRE(t[i] >= 0 && t[i] < rl_vocab_n_tokens(v));
    return t;
}

static char *detokenize(const rl_vocab *v, const rl_token *t, size_t n, uint32_t flags,
                        size_t *len) {
    size_t need = 0;
    rl_status st = rl_detokenize(v, t, n, flags, NULL, 0, &need);
    REQUIRE(st == RL_OK || st == RL_ERR_RANGE);
    char *b = malloc(need + 1);
    REQUIRE(b);
    REQUIRE(rl_detokenize(v, t, n, flags, b, need, len) == RL_OK && *len <= need);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || g_n == 0) return 0;
    int vi = data[0] % g_n;
    const rl_vocab *v = g_vocabs[vi];
    uint32_t flags = (data[0] >> 4) & 3; /* ADD_SPECIAL, PARSE_SPECIAL */
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    size_t n, n2;
    rl_token *t = tokenize(v, text, len, flags, &n);
    rl_token *t2 = tokenize(v, text, len, flags, &n2);
    REQUIRE(n == n2 && (n == 0 || memcmp(t, t2, n * sizeof(rl_token)) == 0));
    free(t2);

    /* whole and streamed detokenization agree */
    uint32_t dflags = RL_DETOK_NO_CLEANUP | RL_DETOK_SPECIAL;
    size_t tl;
    char *whole = detokenize(v, t, n, dflags, &tl);
    rl_detok *d;
    REQUIRE(rl_detok_create(v, dflags, &d) == RL_OK);
    char *acc = malloc(tl * 3 + 4 * n + 8);
    size_t an = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *o;
        size_t ol;
        REQUIRE((i < n ? rl_detok_push(d, t[i], &o, &ol) : rl_detok_flush(d, &o, &ol)) == RL_OK);
        REQUIRE(valid_utf8((const unsigned char *)o, ol));
        memcpy(acc + an, o, ol);
        an += ol;
    }
    rl_detok_free(d);
    if (valid_utf8((const unsigned char *)whole, tl)) REQUIRE(an == tl && !memcmp(acc, whole, tl));
    free(acc);
    /* clean-up of spaces only removes bytes */
    size_t cl;
    char *clean = detokenize(v, t, n, RL_DETOK_SPECIAL, &cl);
    REQUIRE(cl <= tl);
    free(clean);

    /* byte-level BPE, plain text: ids -> text -> ids is the identity */
    if (g_byte_complete[vi] && !(flags & RL_TOKENIZE_PARSE_SPECIAL)) {
        size_t body = n, start = 0;
        if ((flags & RL_TOKENIZE_ADD_SPECIAL) && rl_vocab_add_bos(v) && n) start = 1, body--;
        if ((flags & RL_TOKENIZE_ADD_SPECIAL) && rl_vocab_add_eos(v) && body) body--;
        size_t bl;
        char *btext = detokenize(v, t + start, body, RL_DETOK_NO_CLEANUP, &bl);
        rl_token *back = tokenize(v, btext, bl, 0, &n2);
        REQUIRE(n2 == body && (body == 0 || memcmp(back, t + start, body * sizeof(rl_token)) == 0));
        free(back);
        free(btext);
    }
    free(whole);
    free(t);
    return 0;
}
