/*
 * synth.c - models with random weights at the shapes of real ones (rl_synth_model), so
 * that anyone can benchmark a machine without downloading a model. A shape is a row of
 * hyperparameters from the model's published config; from it come the tensors llama.cpp's
 * converter (convert_hf_to_gguf.py) writes for the architecture, with its names and
 * shapes, and the metadata llama.cpp's loader reads. Weights are produced row by row while
 * the GGUF writer streams (through the engine of quantize_file.c), from a counter-based
 * generator: any row of any tensor can be made on any thread, in any order, and the file
 * depends only on shape, type and seed.
 */
#include "../quant/mix.h"
#include "../quant/qfile.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

typedef enum arch_kind { K_LLAMA, K_QWEN2, K_GEMMA2, K_PHI3 } arch_kind;

typedef struct shape {
    const char *name, *desc;
    arch_kind kind;
    const char *arch;       /* general.architecture */
    int64_t n_vocab;        /* of the built-in tokenizer (padded); --vocab overrides */
    int64_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    int64_t n_expert, n_expert_used;
    float rope_theta, eps;
    bool tied, qkv_bias;
    /* Llama 3 rope scaling (rope_freqs.weight); factor 0: none */
    float rope_factor, rope_low, rope_high;
    int64_t rope_orig_ctx;
    /* Gemma 2 */
    int64_t sliding_window;
    float attn_softcap, final_softcap;
} shape;

/* Hyperparameters from each model's config.json on Hugging Face. */
static const shape g_shapes[] = {
    {"tiny", "a small Llama-architecture model for tests: 2 layers, n_embd 256, 4/2 heads",
     K_LLAMA, "llama", 512, 256, 2, 4, 2, 64, 512, 2048, 0, 0, 10000.0f, 1e-5f, false, false,
     0, 0, 0, 0, 0, 0, 0},
    {"llama3-1b", "Llama 3.2 1B: 16 layers, n_embd 2048, 32/8 heads, n_ff 8192, vocab 128256, "
     "tied embeddings", K_LLAMA, "llama", 128256, 2048, 16, 32, 8, 64, 8192, 131072, 0, 0,
     500000.0f, 1e-5f, true, false, 32.0f, 1.0f, 4.0f, 8192, 0, 0, 0},
    {"llama3-8b", "Llama 3.1 8B: 32 layers, n_embd 4096, 32/8 heads, n_ff 14336, vocab 128256",
     K_LLAMA, "llama", 128256, 4096, 32, 32, 8, 128, 14336, 131072, 0, 0, 500000.0f, 1e-5f,
     false, false, 8.0f, 1.0f, 4.0f, 8192, 0, 0, 0},
    {"qwen2.5-0.5b", "Qwen2.5 0.5B: 24 layers, n_embd 896, 14/2 heads, n_ff 4864, vocab "
     "151936, QKV bias, tied embeddings", K_QWEN2, "qwen2", 151936, 896, 24, 14, 2, 64, 4864,
     32768, 0, 0, 1000000.0f, 1e-6f, true, true, 0, 0, 0, 0, 0, 0, 0},
    {"qwen2.5-7b", "Qwen2.5 7B: 28 layers, n_embd 3584, 28/4 heads, n_ff 18944, vocab 152064, "
     "QKV bias", K_QWEN2, "qwen2", 152064, 3584, 28, 28, 4, 128, 18944, 32768, 0, 0,
     1000000.0f, 1e-6f, false, true, 0, 0, 0, 0, 0, 0, 0},
    {"mistral-7b", "Mistral 7B v0.3: 32 layers, n_embd 4096, 32/8 heads, n_ff 14336, vocab "
     "32768", K_LLAMA, "llama", 32768, 4096, 32, 32, 8, 128, 14336, 32768, 0, 0, 1000000.0f,
     1e-5f, false, false, 0, 0, 0, 0, 0, 0, 0},
    {"gemma2-2b", "Gemma 2 2B: 26 layers, n_embd 2304, 8/4 heads of 256, n_ff 9216, vocab "
     "256000, softcaps, sliding window 4096, tied embeddings", K_GEMMA2, "gemma2", 256000, 2304,
     26, 8, 4, 256, 9216, 8192, 0, 0, 10000.0f, 1e-6f, true, false, 0, 0, 0, 0, 4096, 50.0f,
     30.0f},
    {"phi3-mini", "Phi-3 mini 4k: 32 layers, n_embd 3072, 32 heads of 96, n_ff 8192, vocab "
     "32064, fused QKV and gate/up", K_PHI3, "phi3", 32064, 3072, 32, 32, 32, 96, 8192, 4096,
     0, 0, 10000.0f, 1e-5f, false, false, 0, 0, 0, 0, 2047, 0, 0},
    {"mixtral-8x7b", "Mixtral 8x7B: 32 layers, n_embd 4096, 32/8 heads, 8 experts (2 used) of "
     "n_ff 14336, vocab 32000", K_LLAMA, "llama", 32000, 4096, 32, 32, 8, 128, 14336, 32768,
     8, 2, 1000000.0f, 1e-5f, false, false, 0, 0, 0, 0, 0, 0, 0},
};

RL_API const char *rl_synth_shape_name(size_t i, const char **desc) {
    if (i >= RL_ARRAY_LEN(g_shapes)) return NULL;
    if (desc) *desc = g_shapes[i].desc;
    return g_shapes[i].name;
}

RL_API rl_synth_params rl_synth_default_params(void) {
    return (rl_synth_params){.shape = "tiny", .type = "F16", .seed = 42};
}

/* ---- tensors ----------------------------------------------------------------------------- */

/* What a tensor holds decides its values: weights N(0, (k / sqrt(fan_in))^2) by role (fan_in
 * = ne[0], the matmul input width), norms 1 + 0.1 N(0,1), biases 0.1 N(0,1). */
typedef enum role { R_EMBD, R_OUT, R_QK, R_V, R_O, R_FFN, R_ROUTER, R_NORM, R_BIAS, R_ROPE } role;

typedef struct stensor {
    char name[64];
    uint32_t n_dims;
    int64_t ne[4];
    role role;
    uint64_t key;   /* generator stream of this tensor: hash(seed, name) */
    float scale;
} stensor;

typedef struct synth {
    const shape *sh;
    uint64_t seed;
    stensor *t;
    size_t n, cap;
    bool oom;
    char *err;
    size_t err_size;
} synth;

static uint64_t mix64(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t name_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return mix64(h ^ mix64(seed + 0x9e3779b97f4a7c15ull));
}

static void add(synth *s, role r, const char *name, uint32_t n_dims, int64_t ne0, int64_t ne1,
                int64_t ne2) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        stensor *nt = rl__realloc(s->t, nc * sizeof *nt);
        if (!nt) {
            s->oom = true;
            return;
        }
        s->t = nt;
        s->cap = nc;
    }
    stensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->ne[2] = n_dims > 2 ? ne2 : 1;
    t->ne[3] = 1;
    t->role = r;
    t->key = name_key(s->seed, name);
    static const float k[] = {[R_EMBD] = 2.0f, [R_OUT] = 2.0f, [R_QK] = 1.5f, [R_V] = 1.0f,
                              [R_O] = 1.0f, [R_FFN] = 1.0f, [R_ROUTER] = 2.0f};
    t->scale = r <= R_ROUTER ? k[r] / sqrtf((float)ne0) : r == R_BIAS ? 0.1f : 0.1f;
}

/* A layer tensor: "blk.<il>.<what>". */
static void addl(synth *s, role r, int il, const char *what, uint32_t n_dims, int64_t ne0,
                 int64_t ne1, int64_t ne2) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", il, what);
    add(s, r, name, n_dims, ne0, ne1, ne2);
}

/* The tensors of the shape, in the order the converter writes them. */
static void build_tensors(synth *s, int64_t n_vocab) {
    const shape *h = s->sh;
    const int64_t E = h->n_embd, q_dim = h->n_head * h->head_dim,
                  kv_dim = h->n_head_kv * h->head_dim, F = h->n_ff;
    add(s, R_EMBD, "token_embd.weight", 2, E, n_vocab, 1);
    if (h->rope_factor > 0) add(s, R_ROPE, "rope_freqs.weight", 1, h->head_dim / 2, 1, 1);
    for (int il = 0; il < h->n_layer; il++) {
        addl(s, R_NORM, il, "attn_norm.weight", 1, E, 1, 1);
        if (h->kind == K_PHI3) {
            addl(s, R_QK, il, "attn_qkv.weight", 2, E, q_dim + 2 * kv_dim, 1);
        } else {
            addl(s, R_QK, il, "attn_q.weight", 2, E, q_dim, 1);
            addl(s, R_QK, il, "attn_k.weight", 2, E, kv_dim, 1);
            addl(s, R_V, il, "attn_v.weight", 2, E, kv_dim, 1);
            if (h->qkv_bias) {
                addl(s, R_BIAS, il, "attn_q.bias", 1, q_dim, 1, 1);
                addl(s, R_BIAS, il, "attn_k.bias", 1, kv_dim, 1, 1);
                addl(s, R_BIAS, il, "attn_v.bias", 1, kv_dim, 1, 1);
            }
        }
        addl(s, R_O, il, "attn_output.weight", 2, q_dim, E, 1);
        if (h->kind == K_GEMMA2) addl(s, R_NORM, il, "post_attention_norm.weight", 1, E, 1, 1);
        addl(s, R_NORM, il, "ffn_norm.weight", 1, E, 1, 1);
        if (h->n_expert > 0) {
            addl(s, R_ROUTER, il, "ffn_gate_inp.weight", 2, E, h->n_expert, 1);
            addl(s, R_FFN, il, "ffn_gate_exps.weight", 3, E, F, h->n_expert);
            addl(s, R_FFN, il, "ffn_up_exps.weight", 3, E, F, h->n_expert);
            addl(s, R_FFN, il, "ffn_down_exps.weight", 3, F, E, h->n_expert);
        } else if (h->kind == K_PHI3) {
            addl(s, R_FFN, il, "ffn_up.weight", 2, E, 2 * F, 1); /* [gate; up] */
            addl(s, R_FFN, il, "ffn_down.weight", 2, F, E, 1);
        } else {
            addl(s, R_FFN, il, "ffn_gate.weight", 2, E, F, 1);
            addl(s, R_FFN, il, "ffn_up.weight", 2, E, F, 1);
            addl(s, R_FFN, il, "ffn_down.weight", 2, F, E, 1);
        }
        if (h->kind == K_GEMMA2) addl(s, R_NORM, il, "post_ffw_norm.weight", 1, E, 1, 1);
    }
    add(s, R_NORM, "output_norm.weight", 1, E, 1, 1);
    if (!h->tied) add(s, R_OUT, "output.weight", 2, E, n_vocab, 1);
}

/* Llama 3's rope frequency factors (Meta's "llama3" rope scaling, as the converter stores
 * them): 1 for short wavelengths, `factor` for long ones, a smooth blend between. */
static float rope_factor(const shape *h, int64_t i) {
    double freq = 1.0 / pow(h->rope_theta, (double)(2 * i) / (double)h->head_dim);
    double wavelen = 2.0 * M_PI / freq;
    double lo_wl = (double)h->rope_orig_ctx / h->rope_low;
    double hi_wl = (double)h->rope_orig_ctx / h->rope_high;
    if (wavelen < hi_wl) return 1.0f;
    if (wavelen > lo_wl) return h->rope_factor;
    double smooth =
        ((double)h->rope_orig_ctx / wavelen - h->rope_low) / (h->rope_high - h->rope_low);
    return (float)(1.0 / ((1.0 - smooth) / h->rope_factor + smooth));
}

/* Row `row` of tensor ti: approximately normal values (the sum of four uniform 16-bit
 * draws from one 64-bit hash of (tensor, element), centered and scaled to unit variance). */
static rl_status gen_row(void *user, size_t ti, int64_t row, float *out) {
    const synth *s = user;
    const stensor *t = &s->t[ti];
    const int64_t ne0 = t->ne[0];
    if (t->role == R_ROPE) {
        for (int64_t k = 0; k < ne0; k++) out[k] = rope_factor(s->sh, k);
        return RL_OK;
    }
    const float c = 1.7320508f / 65536.0f; /* sqrt(12 / 4) per unit of the 16-bit sum */
    const float off = t->role == R_NORM ? 1.0f : 0.0f;
    uint64_t base = t->key + (uint64_t)row * (uint64_t)ne0 * 0x9e3779b97f4a7c15ull;
    for (int64_t k = 0; k < ne0; k++) {
        uint64_t z = mix64(base + (uint64_t)k * 0x9e3779b97f4a7c15ull);
        int32_t sum = (int32_t)(z & 0xffff) + (int32_t)((z >> 16) & 0xffff) +
                      (int32_t)((z >> 32) & 0xffff) + (int32_t)(z >> 48) - 2 * 65535;
        out[k] = off + t->scale * (c * (float)sum);
    }
    return RL_OK;
}

/* ---- metadata ---------------------------------------------------------------------------- */

/* GPT-2's byte-to-character map: printable bytes stand for themselves, the rest for
 * U+0100 upwards, in byte order. */
static bool byte_is_printable(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

static uint32_t byte_char(int b) {
    if (byte_is_printable(b)) return (uint32_t)b;
    int n = 0;
    for (int i = 0; i < b; i++) n += !byte_is_printable(i);
    return 256u + (uint32_t)n;
}

static rl_status builtin_tokenizer(rl_gguf_writer *w, int64_t n_vocab) {
    char **toks = rl__calloc((size_t)n_vocab, sizeof *toks);
    int32_t *types = rl__calloc((size_t)n_vocab, sizeof *types);
    char *arena = rl__malloc((size_t)n_vocab * 24);
    rl_status s = RL_ERR_NOMEM;
    if (!toks || !types || !arena) goto done;
    char *p = arena;
    for (int64_t i = 0; i < n_vocab; i++) {
        toks[i] = p;
        if (i < 256) {
            uint32_t cp = byte_char((int)i);
            if (cp < 0x80) {
                *p++ = (char)cp;
            } else {
                *p++ = (char)(0xc0 | (cp >> 6));
                *p++ = (char)(0x80 | (cp & 0x3f));
            }
            *p++ = 0;
            types[i] = 1; /* normal */
        } else {
            const char *special = i == 256   ? "<|begin_of_text|>"
                                  : i == 257 ? "<|end_of_text|>"
                                             : NULL;
            int k = special ? snprintf(p, 24, "%s", special)
                            : snprintf(p, 24, "<|unused_%" PRId64 "|>", i - 258);
            p += k + 1;
            types[i] = special ? 3 : 5; /* control, unused */
        }
    }
    if ((s = rl_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2")) ||
        (s = rl_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2")) ||
        (s = rl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks,
                                        (uint64_t)n_vocab)) ||
        (s = rl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", RL_GGUF_TYPE_INT32, types,
                                    (uint64_t)n_vocab)) ||
        (s = rl_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", NULL, 0)) ||
        (s = rl_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256)) ||
        (s = rl_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 257)) ||
        (s = rl_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)))
        goto done;
done:
    rl__free(toks);
    rl__free(types);
    rl__free(arena);
    return s;
}

static rl_status arch_metadata(rl_gguf_writer *w, const shape *h, int64_t n_vocab) {
    char key[96];
    rl_status s = RL_OK;
#define U32(suffix, v)                                                                     \
    if (s == RL_OK) {                                                                      \
        snprintf(key, sizeof key, "%s.%s", h->arch, suffix);                               \
        s = rl_gguf_writer_set_u32(w, key, (uint32_t)(v));                                 \
    }
#define F32(suffix, v)                                                                     \
    if (s == RL_OK) {                                                                      \
        snprintf(key, sizeof key, "%s.%s", h->arch, suffix);                               \
        s = rl_gguf_writer_set_f32(w, key, (v));                                           \
    }
    U32("context_length", h->n_ctx);
    U32("embedding_length", h->n_embd);
    U32("block_count", h->n_layer);
    U32("feed_forward_length", h->n_ff);
    U32("attention.head_count", h->n_head);
    U32("attention.head_count_kv", h->n_head_kv);
    F32("rope.freq_base", h->rope_theta);
    F32("attention.layer_norm_rms_epsilon", h->eps);
    if (h->kind == K_LLAMA || h->kind == K_PHI3) U32("rope.dimension_count", h->head_dim);
    if (h->kind == K_GEMMA2 || h->head_dim * h->n_head != h->n_embd) {
        U32("attention.key_length", h->head_dim);
        U32("attention.value_length", h->head_dim);
    }
    if (h->n_expert > 0) {
        U32("expert_count", h->n_expert);
        U32("expert_used_count", h->n_expert_used);
    }
    if (h->kind == K_GEMMA2) {
        F32("attn_logit_softcapping", h->attn_softcap);
        F32("final_logit_softcapping", h->final_softcap);
    }
    if (h->sliding_window > 0) U32("attention.sliding_window", h->sliding_window);
    if (h->kind == K_PHI3) U32("rope.scaling.original_context_length", h->n_ctx);
    U32("vocab_size", n_vocab);
#undef U32
#undef F32
    return s;
}

/* ---- rl_synth_model ---------------------------------------------------------------------- */

typedef struct sjob {
    synth s;
    rl_gguf *vocab;
    rl_gguf_writer *w;
    rl__mix_tensor *mt;
    rl_type *types;
    bool *fallback;
    size_t *order;
    rl__qtensor *qt;
    float *ones;
} sjob;

static rl_status synth_model(sjob *j, const char *out, const rl_synth_params *p) {
    synth *s = &j->s;
    char *err = s->err;
    size_t es = s->err_size;
    const shape *h = NULL;
    for (size_t i = 0; i < RL_ARRAY_LEN(g_shapes); i++)
        if (p->shape && !strcmp(p->shape, g_shapes[i].name)) h = &g_shapes[i];
    if (!h) {
        rl__fmt(err, es, "unknown shape '%s'", p->shape ? p->shape : "(null)");
        return RL_ERR_NOT_FOUND;
    }
    s->sh = h;
    s->seed = p->seed;
    rl__mix mix;
    rl_status st = rl__mix_resolve(p->type ? p->type : "F16", &mix);
    if (st != RL_OK) {
        rl__fmt(err, es, st == RL_ERR_UNSUPPORTED ? "'%s' is not a weight type"
                                                 : "unknown type '%s'", p->type);
        return st == RL_ERR_UNSUPPORTED ? st : RL_ERR_INVALID_ARG;
    }
    if (mix.flags & RL__MIX_COPY) mix.base = RL_TYPE_F32; /* nothing to copy from: F32 */

    int64_t n_vocab = h->n_vocab;
    if (p->vocab_path) {
        struct stat sv, so;
        if (stat(p->vocab_path, &sv) == 0 && stat(out, &so) == 0 && sv.st_dev == so.st_dev &&
            sv.st_ino == so.st_ino) {
            rl__fmt(err, es, "output '%s' is the vocabulary file: refusing to overwrite it", out);
            return RL_ERR_INVALID_ARG;
        }
        char gerr[384];
        if ((st = rl_gguf_open(p->vocab_path, &j->vocab, gerr, sizeof gerr)) != RL_OK) {
            rl__fmt(err, es, "vocabulary: %s", gerr);
            return st;
        }
        int64_t ti = rl_gguf_find_key(j->vocab, "tokenizer.ggml.tokens");
        rl_gguf_type et;
        uint64_t n = 0;
        if (ti < 0 || rl_gguf_get_arr_info(j->vocab, ti, &et, &n) != RL_OK ||
            et != RL_GGUF_TYPE_STRING || n == 0 || n > INT32_MAX) {
            rl__fmt(err, es, "vocabulary '%s': no tokenizer.ggml.tokens array of strings",
                    p->vocab_path);
            return RL_ERR_BAD_FILE;
        }
        n_vocab = (int64_t)n;
    }

    build_tensors(s, n_vocab);
    if (s->oom) goto oom;
    size_t n = s->n;
    j->mt = rl__calloc(n, sizeof *j->mt);
    j->types = rl__calloc(n, sizeof *j->types);
    j->fallback = rl__calloc(n, sizeof *j->fallback);
    j->order = rl__calloc(n, sizeof *j->order);
    j->qt = rl__calloc(n, sizeof *j->qt);
    if (!j->mt || !j->types || !j->fallback || !j->order || !j->qt) goto oom;
    int64_t max_imx = 1;
    for (size_t i = 0; i < n; i++) {
        j->mt[i] = (rl__mix_tensor){s->t[i].name, RL_TYPE_F32,
                                    {s->t[i].ne[0], s->t[i].ne[1], s->t[i].ne[2], 1}};
        max_imx = RL_MAX(max_imx, s->t[i].ne[0] * s->t[i].ne[2]);
    }
    rl__mix_model model = {.n_layer = h->n_layer, .n_head = h->n_head,
                           .n_head_kv = h->n_head_kv, .n_expert = h->n_expert};
    snprintf(model.arch, sizeof model.arch, "%s", h->arch);
    rl__mix_opts opts = {.output_type = RL_TYPE_COUNT, .token_embd_type = RL_TYPE_COUNT};
    if ((st = rl__mix_plan(&mix, &model, &opts, j->mt, n, j->types, j->fallback, err, es)))
        return st;
    rl__mix_order(j->mt, n, j->order);
    for (size_t k = 0; k < n; k++) {
        size_t i = j->order[k];
        const stensor *t = &s->t[i];
        rl__qtensor *o = &j->qt[k];
        *o = (rl__qtensor){.name = t->name, .n_dims = t->n_dims, .type_in = RL_TYPE_F32,
                           .type_out = j->types[i], .fallback = j->fallback[i]};
        memcpy(o->ne, t->ne, sizeof t->ne);
        /* Random weights have no activations to weigh columns by: types that need an
         * importance matrix get a uniform one. */
        if (rl_type_needs_imatrix(o->type_out) ||
            rl__mix_requires_imatrix(&mix, t->name, o->type_out)) {
            if (!j->ones) {
                if (!(j->ones = rl__malloc((size_t)max_imx * sizeof(float)))) goto oom;
                for (int64_t q = 0; q < max_imx; q++) j->ones[q] = 1.0f;
            }
            o->imatrix = j->ones;
        }
    }
    /* gen_row is asked for tensor k of the output order: point the table at that order */
    stensor *sorted = rl__malloc(n * sizeof *sorted);
    if (!sorted) goto oom;
    for (size_t k = 0; k < n; k++) sorted[k] = s->t[j->order[k]];
    rl__free(s->t);
    s->t = sorted;
    for (size_t k = 0; k < n; k++) j->qt[k].name = s->t[k].name;

    if (rl_gguf_writer_create(&j->w) != RL_OK) goto oom;
    rl_gguf_writer *w = j->w;
    char desc[160];
    snprintf(desc, sizeof desc, "random weights at the shape of %s (ruvllm synth, seed %" PRIu64
             "); not a trained model", h->name, p->seed);
    /* A neutral general.name: llama.cpp keys vocabulary quirks on the name ("phi3" wants
     * Phi-3's special tokens), which the built-in tokenizer does not have. */
    if ((st = rl_gguf_writer_set_str(w, "general.architecture", h->arch)) ||
        (st = rl_gguf_writer_set_str(w, "general.type", "model")) ||
        (st = rl_gguf_writer_set_str(w, "general.name", "ruvllm-synth")) ||
        (st = rl_gguf_writer_set_str(w, "general.description", desc)) ||
        (st = arch_metadata(w, h, n_vocab)))
        goto meta_fail;
    if (mix.ftype != RL__FT_NONE &&
        (st = rl_gguf_writer_set_u32(w, "general.file_type", (uint32_t)mix.ftype)))
        goto meta_fail;
    if (j->vocab) {
        for (int64_t i = 0; i < rl_gguf_n_kv(j->vocab) && st == RL_OK; i++)
            if (!strncmp(rl_gguf_key(j->vocab, i), "tokenizer.", 10))
                st = rl_gguf_writer_copy_kv(w, j->vocab, i);
    } else {
        st = builtin_tokenizer(w, n_vocab);
    }
    if (st == RL_OK) st = rl_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (st == RL_OK) st = rl_gguf_writer_set_str(w, "ruvllm.synth.shape", h->name);
    if (st == RL_OK) st = rl_gguf_writer_set_u64(w, "ruvllm.synth.seed", p->seed);
    if (st != RL_OK) goto meta_fail;

    rl__qjob job = {.w = w, .t = j->qt, .n = n, .gen = gen_row, .gen_user = s,
                    .n_threads = p->n_threads, .progress = p->progress,
                    .progress_user = p->progress_user};
    return rl__qjob_write(&job, out, err, es);
meta_fail:
    rl__fmt(err, es, "metadata: %s", st == RL_ERR_NOMEM ? "out of memory"
                                                         : rl_gguf_writer_errmsg(j->w));
    return st;
oom:
    rl__fmt(err, es, "out of memory");
    return RL_ERR_NOMEM;
}

RL_API rl_status rl_synth_model(const char *out_path, const rl_synth_params *p, char *err,
                                size_t err_size) {
    rl_synth_params def = rl_synth_default_params();
    if (!p) p = &def;
    if (!out_path || !*out_path) {
        rl__fmt(err, err_size, "output path is empty");
        return RL_ERR_INVALID_ARG;
    }
    sjob j = {.s = {.err = err, .err_size = err_size}};
    rl_status st = synth_model(&j, out_path, p);
    rl_gguf_writer_free(j.w);
    rl_gguf_free(j.vocab);
    rl__free(j.s.t);
    rl__free(j.mt);
    rl__free(j.types);
    rl__free(j.fallback);
    rl__free(j.order);
    rl__free(j.qt);
    rl__free(j.ones);
    return st;
}
