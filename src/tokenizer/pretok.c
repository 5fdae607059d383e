/*
 * pretok.c - pre-tokenizers of BPE vocabularies: the regexes each model names through
 * tokenizer.ggml.pre, run on PCRE2 (UTF, UCP, JIT; match, depth and heap limits).
 *
 * The regex patterns are data: they come from llama.cpp's src/llama-vocab.cpp (MIT), which
 * took them from each model's tokenizer.json (see NOTICE); their non-ASCII characters are
 * written here as \x{...} escapes, so that no editor's Unicode normalization (which turns
 * U+2126 OHM SIGN into U+03A9, U+212A KELVIN SIGN into K, ...) can change a range. Splitting follows llama.cpp's
 * unicode_regex_split: the regexes of a model are applied one after the other, each to the
 * pieces the previous one left, and text that a regex does not match stays a piece of its
 * own. As in llama.cpp, invalid UTF-8 reads as U+FFFD, a regex only sees the piece it
 * splits (so `$` and `(?!\S)` hold at a piece's end), and whitespace other than ASCII is
 * matched as U+000B, which is why a character class naming U+3000 does not match it.
 */
#include "tok_impl.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>

/* ---- the patterns -------------------------------------------------------------------- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_CJK "[\\x{4e00}-\\x{9fa5}\\x{800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+"

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+",
                                         "[0-9][0-9][0-9]"};
static const char *const re_llama3[] = {
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
/* "\s+$" is written "(?<!\s)\s+$": the same matches (a trailing run of whitespace starts
 * after a non-space), without retrying at every space of a run that does not end the piece,
 * which is quadratic in the run's length. */
static const char *const re_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-z"
    "\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}"
    "\\x{1c4}-\\x{293}\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}"
    "\\x{37f}\\x{386}\\x{388}-\\x{38a}\\x{38c}\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}"
    "\\x{3f7}-\\x{481}\\x{48a}-\\x{52f}\\x{531}-\\x{556}\\x{10a0}-\\x{10c5}"
    "\\x{13a0}-\\x{13f5}\\x{13f8}-\\x{13fd}\\x{1c90}-\\x{1cba}\\x{1cbd}-\\x{1cbf}"
    "\\x{1d00}-\\x{1d2b}\\x{1d6b}-\\x{1d77}\\x{1d79}-\\x{1d9a}\\x{1e00}-\\x{1f15}"
    "\\x{1f18}-\\x{1f1d}\\x{1f20}-\\x{1f45}\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}"
    "\\x{1f59}\\x{1f5b}\\x{1f5d}\\x{1f5f}-\\x{1f7d}\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}"
    "\\x{1fbe}\\x{1fc2}-\\x{1fc4}\\x{1fc6}-\\x{1fcc}\\x{1fd0}-\\x{1fd3}"
    "\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}\\x{1ff2}-\\x{1ff4}\\x{1ff6}-\\x{1ffc}"
    "\\x{2102}\\x{2107}\\x{210a}-\\x{2113}\\x{2115}\\x{2119}-\\x{211d}\\x{2124}\\x{2126}"
    "\\x{2128}\\x{212a}-\\x{212d}\\x{212f}-\\x{2134}\\x{2139}\\x{213c}-\\x{213f}"
    "\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}\\x{2c00}-\\x{2c7b}\\x{2c7e}-\\x{2ce4}"
    "\\x{2ceb}-\\x{2cee}\\x{2cf2}\\x{2cf3}\\x{a640}-\\x{a66d}\\x{a680}-\\x{a69b}"
    "\\x{a722}-\\x{a76f}\\x{a771}-\\x{a787}\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}"
    "\\x{fb00}-\\x{fb06}\\x{fb13}-\\x{fb17}\\x{ff21}-\\x{ff3a}\\x{ff41}-\\x{ff5a}"
    "\\x{10400}-\\x{1044f}\\x{104b0}-\\x{104d3}\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}"
    "\\x{10cc0}-\\x{10cf2}\\x{118a0}-\\x{118df}\\x{1e900}-\\x{1e943}]+",
    "\\s?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3000}-\\x{3002}]+",
    "(?<!\\s)\\s+$",
    RE_CJK,
    "\\p{N}+"};
static const char *const re_deepseek_coder[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK,
                                                "\\p{N}"};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"};
static const char *const re_starcoder[] = {"\\p{N}", RE_GPT2};
static const char *const re_gpt2[] = {RE_GPT2};
static const char *const re_qwen2[] = {
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_qwen35[] = {
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+"
                    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_gemma4[] = {"[^\\n]+|[\\n]+"};
static const char *const re_poro[] = {
    " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{ff0c}\\x{3001}\\x{964}\\x{6d4}\\x{60c})]+"};
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
    "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" RE_CONTRACTIONS "?|"
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" RE_CONTRACTIONS "?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_seed_coder[] = {
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_bailingmoe[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s"
    "\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"};

typedef struct pre_set {
    const char *const *re;
    int n;
    bool byte_encode; /* GPT-2 byte alphabet; false: raw UTF-8 with <0xXX> byte fallback */
} pre_set;

enum {
    SET_DEFAULT,
    SET_LLAMA3,
    SET_DEEPSEEK_LLM,
    SET_DEEPSEEK_CODER,
    SET_FALCON,
    SET_STARCODER,
    SET_GPT2,
    SET_QWEN2,
    SET_QWEN35,
    SET_GEMMA4,
    SET_PORO,
    SET_TEKKEN,
    SET_GPT4O,
    SET_SEED_CODER,
    SET_BAILINGMOE
};

#define SET(a, be)                                                                                 \
    { a, (int)RL_ARRAY_LEN(a), be }
static const pre_set g_sets[] = {
    [SET_DEFAULT] = SET(re_default, true),
    [SET_LLAMA3] = SET(re_llama3, true),
    [SET_DEEPSEEK_LLM] = SET(re_deepseek_llm, true),
    [SET_DEEPSEEK_CODER] = SET(re_deepseek_coder, true),
    [SET_FALCON] = SET(re_falcon, true),
    [SET_STARCODER] = SET(re_starcoder, true),
    [SET_GPT2] = SET(re_gpt2, true),
    [SET_QWEN2] = SET(re_qwen2, true),
    [SET_QWEN35] = SET(re_qwen35, true),
    [SET_GEMMA4] = SET(re_gemma4, false),
    [SET_PORO] = SET(re_poro, true),
    [SET_TEKKEN] = SET(re_tekken, true),
    [SET_GPT4O] = SET(re_gpt4o, true),
    [SET_SEED_CODER] = SET(re_seed_coder, true),
    [SET_BAILINGMOE] = SET(re_bailingmoe, true),
};
#undef SET

/* Per-name flags on top of the BPE defaults (clean spaces on, no BOS, merges always). */
enum {
    F_IGNORE_MERGES = 1, /* a word that is a token is taken whole */
    F_ADD_BOS = 2,
    F_NO_CLEAN = 4,  /* clean_up_tokenization_spaces off */
    F_ESCAPE_WS = 8, /* spaces become U+2581 before splitting (SentencePiece-style BPE) */
    F_ADD_SEP = 16,
    F_NO_BOS_ID = 32, /* the model has no BOS token */
    F_NL_WHOLE = 64,  /* a word of newlines that is a token is not merged (Gemma 4) */
};

typedef struct pre_name {
    const char *name;
    int set;
    unsigned flags;
} pre_name;

/* tokenizer.ggml.pre values, as llama.cpp's llama_vocab::impl::load maps them. */
static const pre_name g_names[] = {
    {"default", SET_DEFAULT, 0},
    {"llama3", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"llama-v3", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"llama-bpe", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"falcon3", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"falcon-h1", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"pixtral", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"midm-2.0", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"lfm2", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"jina-v5-nano", SET_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"dbrx", SET_LLAMA3, 0},
    {"smaug-bpe", SET_LLAMA3, 0},
    {"glm4", SET_LLAMA3, F_NO_BOS_ID},
    {"chatglm-bpe", SET_LLAMA3, F_NO_BOS_ID},
    {"deepseek-llm", SET_DEEPSEEK_LLM, F_NO_CLEAN},
    {"deepseek-coder", SET_DEEPSEEK_CODER, F_NO_CLEAN},
    {"falcon", SET_FALCON, 0},
    {"mpt", SET_GPT2, 0},
    {"olmo", SET_GPT2, 0},
    {"jais", SET_GPT2, 0},
    {"exaone4", SET_GPT2, 0},
    {"gpt-2", SET_GPT2, 0},
    {"phi-2", SET_GPT2, 0},
    {"jina-es", SET_GPT2, 0},
    {"jina-de", SET_GPT2, 0},
    {"gigachat", SET_GPT2, 0},
    {"jina-v2-es", SET_GPT2, 0},
    {"jina-v2-de", SET_GPT2, 0},
    {"a.x-4.0", SET_GPT2, 0},
    {"mellum", SET_GPT2, 0},
    {"modern-bert", SET_GPT2, 0},
    {"jina-v1-en", SET_GPT2, F_ADD_SEP},
    {"jina-v2-code", SET_GPT2, F_ADD_SEP},
    {"roberta-bpe", SET_GPT2, F_ADD_SEP},
    {"trillion", SET_GPT2, F_NO_CLEAN},
    {"granite-docling", SET_GPT2, F_NO_CLEAN},
    {"starcoder", SET_STARCODER, 0},
    {"refact", SET_STARCODER, 0},
    {"command-r", SET_STARCODER, F_NO_CLEAN},
    {"smollm", SET_STARCODER, F_NO_CLEAN},
    {"codeshell", SET_STARCODER, 0},
    {"exaone", SET_STARCODER, 0},
    {"minerva-7b", SET_STARCODER, 0},
    {"mellum2", SET_STARCODER, 0},
    {"qwen2", SET_QWEN2, F_NO_CLEAN},
    {"deepseek-r1-qwen", SET_QWEN2, F_NO_CLEAN},
    {"kormo", SET_QWEN2, F_NO_CLEAN},
    {"f2llmv2", SET_QWEN2, F_NO_CLEAN},
    {"stablelm2", SET_QWEN2, 0},
    {"megrez", SET_QWEN2, 0},
    {"hunyuan", SET_QWEN2, F_NO_CLEAN},
    {"solar-open", SET_QWEN2, F_NO_CLEAN},
    {"grok-2", SET_QWEN2, F_NO_CLEAN},
    {"qwen35", SET_QWEN35, F_NO_CLEAN},
    {"gemma4", SET_GEMMA4, F_ESCAPE_WS | F_NL_WHOLE},
    {"granite-embed-multi-311m", SET_GEMMA4, F_ESCAPE_WS | F_NL_WHOLE},
    {"sarvam-moe", SET_GEMMA4, F_ESCAPE_WS | F_NO_CLEAN},
    {"poro-chat", SET_PORO, F_NO_CLEAN},
    {"bloom", SET_PORO, 0},
    {"gpt3-finnish", SET_PORO, 0},
    {"tekken", SET_TEKKEN, F_NO_CLEAN | F_IGNORE_MERGES | F_ADD_BOS},
    {"gpt-4o", SET_GPT4O, F_NO_CLEAN},
    {"llama4", SET_GPT4O, F_NO_CLEAN},
    {"kanana2", SET_GPT4O, F_NO_CLEAN},
    {"talkie", SET_GPT4O, F_NO_CLEAN},
    {"seed-coder", SET_SEED_CODER, F_NO_CLEAN},
    {"bailingmoe", SET_BAILINGMOE, F_NO_CLEAN},
    {"bailingmoe2", SET_BAILINGMOE, F_NO_CLEAN},
    {"llada-moe", SET_BAILINGMOE, F_NO_CLEAN},
};

/* ---- compiled pre-tokenizer ---------------------------------------------------------- */

#define MAX_RE 8
/* Limits against hostile text: a match may backtrack this much; the interpreter's heap
 * (KiB) and the JIT stack are bounded too. A limit hit fails the tokenize call. */
#define MATCH_LIMIT 100000000u
#define DEPTH_LIMIT 1000000u
#define HEAP_LIMIT_KIB (256u * 1024u)
#define JIT_STACK_MAX (8u << 20)

struct rl__pretok {
    pcre2_general_context *gctx;
    pcre2_code *re[MAX_RE];
    int n;
    bool byte_encode;
};

static void *pc_malloc(PCRE2_SIZE n, void *ud) {
    (void)ud;
    return rl__malloc(n);
}
static void pc_free(void *p, void *ud) {
    (void)ud;
    rl__free(p);
}

void rl__pretok_free(rl__pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->re[i]);
    pcre2_general_context_free(p->gctx);
    rl__free(p);
}

bool rl__pretok_byte_encode(const rl__pretok *p) { return p->byte_encode; }

rl_status rl__pretok_create(rl_vocab *v, const char *pre, bool gemma4_model, char *err,
                            size_t err_size) {
    const pre_name *pn = NULL;
    if (gemma4_model) pre = "gemma4"; /* llama.cpp ignores the key for this model type */
    if (!pre || !*pre) pre = "default";
    for (size_t i = 0; i < RL_ARRAY_LEN(g_names); i++)
        if (!strcmp(g_names[i].name, pre)) pn = &g_names[i];
    if (!pn) {
        rl__fmt(err, err_size, "tokenizer.ggml.pre: unknown pre-tokenizer '%s'", pre);
        return RL_ERR_UNSUPPORTED;
    }
    snprintf(v->pre_name, sizeof v->pre_name, "%s", pn->name);
    v->ignore_merges = pn->flags & F_IGNORE_MERGES;
    if (pn->flags & F_ADD_BOS) v->add_bos = true;
    if (pn->flags & F_NO_CLEAN) v->clean_spaces = false;
    if (pn->flags & F_ESCAPE_WS) v->escape_whitespaces = true;
    if (pn->flags & F_ADD_SEP) v->add_sep = true;
    if (pn->flags & F_NO_BOS_ID) v->bos = RL_TOKEN_NULL;
    v->newline_words_whole = pn->flags & F_NL_WHOLE;

    const pre_set *set = &g_sets[pn->set];
    rl__pretok *p = rl__calloc(1, sizeof(*p));
    if (!p) return RL_ERR_NOMEM;
    p->byte_encode = set->byte_encode;
    p->gctx = pcre2_general_context_create(pc_malloc, pc_free, NULL);
    if (!p->gctx) {
        rl__free(p);
        return RL_ERR_NOMEM;
    }
    pcre2_compile_context *cctx = pcre2_compile_context_create(p->gctx);
    if (!cctx) {
        rl__pretok_free(p);
        return RL_ERR_NOMEM;
    }
    for (int i = 0; i < set->n; i++) {
        int ecode;
        PCRE2_SIZE eoff;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)set->re[i], PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_AUTO_CAPTURE,
                          &ecode, &eoff, cctx);
        if (!re) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(ecode, msg, sizeof msg);
            rl__fmt(err, err_size, "pre-tokenizer '%s': regex %d: %s at %zu", pn->name, i,
                    (const char *)msg, (size_t)eoff);
            pcre2_compile_context_free(cctx);
            rl__pretok_free(p);
            return ecode == PCRE2_ERROR_HEAP_FAILED ? RL_ERR_NOMEM : RL_ERR_INTERNAL;
        }
        p->re[p->n++] = re;
        /* JIT is an optimization: without it (no JIT support) the interpreter runs. */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    }
    pcre2_compile_context_free(cctx);
    v->pretok = p;
    return RL_OK;
}

/* ---- splitting ---------------------------------------------------------------------- */

typedef struct span {
    size_t a, b; /* code point range */
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static bool spans_push(spans *s, size_t a, size_t b) {
    if (a >= b) return true;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256, bytes;
        if (!rl__mul_size(cap, sizeof(span), &bytes)) return false;
        span *nv = rl__realloc(s->v, bytes);
        if (!nv) return false;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n].a = a;
    s->v[s->n].b = b;
    s->n++;
    return true;
}

typedef struct matcher {
    pcre2_general_context *gctx;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack; /* made when the default 32 KiB JIT stack is too small */
} matcher;

static void matcher_free(matcher *m) {
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mctx);
    pcre2_jit_stack_free(m->jstack);
}

static bool matcher_init(matcher *m, const rl__pretok *p) {
    memset(m, 0, sizeof(*m));
    m->gctx = p->gctx;
    m->md = pcre2_match_data_create(1, p->gctx);
    m->mctx = pcre2_match_context_create(p->gctx);
    if (!m->md || !m->mctx) {
        matcher_free(m);
        return false;
    }
    pcre2_set_match_limit(m->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(m->mctx, DEPTH_LIMIT);
    pcre2_set_heap_limit(m->mctx, HEAP_LIMIT_KIB);
    return true;
}

/* One match of re in subject[0..n) from off: 1 and [*ms, *me) on a match, 0 on none,
 * -1 when a limit stopped it, -2 out of memory. JIT code first runs on the default 32 KiB
 * stack; when that is too small, on a JIT stack of up to 8 MiB, then in the interpreter
 * (whose heap limit is the wider bound). */
static int match_one(const pcre2_code *re, matcher *m, const char *subject, size_t n, size_t off,
                     size_t *ms, size_t *me) {
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, n, off, PCRE2_NO_UTF_CHECK, m->md, m->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !m->jstack) {
        m->jstack = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX, m->gctx);
        if (!m->jstack) return -2;
        pcre2_jit_stack_assign(m->mctx, NULL, m->jstack);
        rc = pcre2_match(re, (PCRE2_SPTR)subject, n, off, PCRE2_NO_UTF_CHECK, m->md, m->mctx);
    }
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)subject, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, m->md,
                         m->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc == PCRE2_ERROR_NOMEMORY) return -2;
    if (rc < 0) return -1;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

rl_status rl__pretok_split(const rl__pretok *p, const char *text, size_t len, rl__buf *out,
                           rl__buf *ends) {
    rl_status st = RL_ERR_NOMEM;
    const unsigned char *s = (const unsigned char *)text;
    uint32_t *cps = NULL;
    size_t *moff = NULL;
    rl__buf mt = {0};
    spans cur = {0}, nxt = {0};
    matcher m;
    if (!matcher_init(&m, p)) return RL_ERR_NOMEM;

    /* code points, and the text the regexes see: valid UTF-8 with other whitespace as
     * U+000B and surrogates as U+FFFD; moff[i] is where code point i starts in it */
    size_t ncap = len + 1;
    cps = rl__malloc(ncap * sizeof(uint32_t));
    moff = rl__malloc(ncap * sizeof(size_t));
    if (!cps || !moff || !rl__buf_reserve(&mt, len + 16)) goto done;
    size_t ncp = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = rl__utf8_decode(s, len, &i);
        cps[ncp] = cp;
        moff[ncp++] = mt.n;
        uint32_t mc = cp;
        if (cp >= 0x80 && rl__cp_is_whitespace(cp))
            mc = 0x0b;
        else if (cp >= 0xd800 && cp <= 0xdfff)
            mc = RL__CP_REPLACEMENT;
        char enc[4];
        size_t k = rl__utf8_encode(mc, enc);
        if (!rl__buf_put(&mt, enc, k)) goto done;
    }
    moff[ncp] = mt.n;

    if (!spans_push(&cur, 0, ncp)) goto done;
    for (int r = 0; r < p->n; r++) {
        nxt.n = 0;
        for (size_t k = 0; k < cur.n; k++) {
            size_t a = cur.v[k].a, b = cur.v[k].b;
            const char *sub = mt.p + moff[a];
            size_t sublen = moff[b] - moff[a];
            size_t off = 0, last = a, c = a; /* c: code point cursor over the piece */
            while (off < sublen) {
                size_t ms, me;
                int rc = match_one(p->re[r], &m, sub, sublen, off, &ms, &me);
                if (rc < 0) {
                    st = rc == -2 ? RL_ERR_NOMEM : RL_ERR_LIMIT;
                    goto done;
                }
                if (rc == 0) break;
                while (moff[c] - moff[a] < ms) c++;
                size_t cs = c;
                if (me == ms) { /* empty match: step over one character */
                    if (cs >= b) break;
                    off = moff[cs + 1] - moff[a];
                    continue;
                }
                while (moff[c] - moff[a] < me) c++;
                if (!spans_push(&nxt, last, cs) || !spans_push(&nxt, cs, c)) goto done;
                last = c;
                off = me;
            }
            if (!spans_push(&nxt, last, b)) goto done;
        }
        spans t = cur;
        cur = nxt;
        nxt = t;
    }

    /* words: the original code points, re-encoded (invalid input as U+FFFD), GPT-2 byte
     * alphabet when asked */
    for (size_t k = 0; k < cur.n; k++) {
        for (size_t i = cur.v[k].a; i < cur.v[k].b; i++) {
            char enc[4];
            size_t n = rl__utf8_encode(cps[i], enc);
            if (!p->byte_encode) {
                if (!rl__buf_put(out, enc, n)) goto done;
                continue;
            }
            if (!rl__buf_reserve(out, 2 * n)) goto done;
            for (size_t j = 0; j < n; j++)
                out->n += rl__byte_to_gpt2((unsigned char)enc[j], out->p + out->n);
        }
        size_t end = out->n;
        if (!rl__buf_put(ends, &end, sizeof end)) goto done;
    }
    st = RL_OK;
done:
    matcher_free(&m);
    rl__free(cps);
    rl__free(moff);
    rl__buf_free(&mt);
    rl__free(cur.v);
    rl__free(nxt.v);
    return st;
}
