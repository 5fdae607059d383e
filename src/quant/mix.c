/*
 * mix.c - the per-tensor type policy of the quantization mixes (see mix.h). The
 * behaviour reproduces llama.cpp's llama-quant.cpp (MIT) as of the version that made
 * ../shared's goldens; the code is ours: tables for the per-mix constants, a switch per
 * tensor role for the rules that depend on layer, GQA or expert count.
 */
#include "mix.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define KEEP RL_TYPE_COUNT

/* ---- the mixes --------------------------------------------------------------------------- */

#define MIX(name, ft, base, flags, embd, out, ao, qk)                                      \
    {name, RL__FT_##ft, RL_TYPE_##base, flags, embd, out, ao, qk}
#define T_(x) RL_TYPE_##x

/* In llama-quantize's order. Columns: token_embd (untied), output, attn_output (dense),
 * attn_q/attn_k. Q3_K, Q4_K and Q5_K are llama-quantize's aliases of the _M mixes. */
static const rl__mix g_mixes[] = {
    MIX("Q1_0", Q1_0, Q1_0, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q2_0", Q2_0, Q2_0, 0, T_(Q4_K), T_(Q6_K), KEEP, KEEP),
    MIX("Q4_0", Q4_0, Q4_0, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q4_1", Q4_1, Q4_1, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("MXFP4_MOE", MXFP4_MOE, MXFP4, 0, KEEP, T_(Q8_0), KEEP, KEEP),
    MIX("Q5_0", Q5_0, Q5_0, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q5_1", Q5_1, Q5_1, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("IQ2_XXS", IQ2_XXS, IQ2_XXS, RL__MIX_IQ_LOW, T_(Q2_K), T_(Q5_K), KEEP, KEEP),
    MIX("IQ2_XS", IQ2_XS, IQ2_XS, RL__MIX_IQ_LOW, T_(Q2_K), T_(Q5_K), KEEP, KEEP),
    MIX("IQ2_S", IQ2_S, IQ2_XS, RL__MIX_IQ_LOW, T_(IQ3_S), T_(Q5_K), KEEP, KEEP),
    MIX("IQ2_M", IQ2_M, IQ2_S, RL__MIX_IQ_LOW, T_(IQ3_S), T_(Q5_K), KEEP, KEEP),
    MIX("IQ1_S", IQ1_S, IQ1_S, RL__MIX_IQ_LOW, T_(Q2_K), T_(Q5_K), KEEP, KEEP),
    MIX("IQ1_M", IQ1_M, IQ1_M, RL__MIX_IQ_LOW, T_(Q2_K), T_(Q5_K), KEEP, KEEP),
    MIX("TQ1_0", TQ1_0, TQ1_0, 0, T_(Q4_K), T_(Q6_K), KEEP, KEEP),
    MIX("TQ2_0", TQ2_0, TQ2_0, 0, T_(Q4_K), T_(Q6_K), KEEP, KEEP),
    MIX("Q2_K", Q2_K, Q2_K, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), T_(Q3_K), KEEP),
    MIX("Q2_K_S", Q2_K_S, Q2_K, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("IQ3_XXS", IQ3_XXS, IQ3_XXS, RL__MIX_MOE8_AO, T_(IQ3_S), T_(Q5_K), T_(IQ3_S),
        T_(IQ2_S)),
    MIX("IQ3_S", IQ3_S, IQ3_S, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("IQ3_M", IQ3_M, IQ3_S, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), T_(Q4_K), KEEP),
    MIX("Q3_K", Q3_K_M, Q3_K, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), T_(Q4_K), KEEP),
    MIX("IQ3_XS", IQ3_XS, IQ3_S, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, T_(IQ3_XXS)),
    MIX("Q3_K_S", Q3_K_S, Q3_K, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q3_K_M", Q3_K_M, Q3_K, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), T_(Q4_K), KEEP),
    MIX("Q3_K_L", Q3_K_L, Q3_K, 0, KEEP, T_(Q6_K), T_(Q5_K), KEEP),
    MIX("IQ4_NL", IQ4_NL, IQ4_NL, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("IQ4_XS", IQ4_XS, IQ4_XS, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q4_K", Q4_K_M, Q4_K, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q4_K_S", Q4_K_S, Q4_K, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q4_K_M", Q4_K_M, Q4_K, RL__MIX_MOE8_AO, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q5_K", Q5_K_M, Q5_K, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q5_K_S", Q5_K_S, Q5_K, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q5_K_M", Q5_K_M, Q5_K, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q6_K", Q6_K, Q6_K, 0, KEEP, T_(Q6_K), KEEP, KEEP),
    MIX("Q8_0", Q8_0, Q8_0, 0, KEEP, T_(Q8_0), KEEP, KEEP),
    MIX("F16", F16, F16, 0, KEEP, KEEP, KEEP, KEEP),
    MIX("BF16", BF16, BF16, 0, KEEP, KEEP, KEEP, KEEP),
    MIX("F32", ALL_F32, F32, 0, KEEP, KEEP, KEEP, KEEP),
    MIX("COPY", ALL_F32, F32, RL__MIX_COPY, KEEP, KEEP, KEEP, KEEP),
};
#undef MIX

size_t rl__mix_count(void) { return RL_ARRAY_LEN(g_mixes); }

const rl__mix *rl__mix_at(size_t i) { return i < RL_ARRAY_LEN(g_mixes) ? &g_mixes[i] : NULL; }

/* general.file_type for a file whose tensors are mostly of type t (llama.cpp's guess). */
static int32_t ftype_of_type(rl_type t) {
    static const struct {
        rl_type t;
        int32_t ft;
    } map[] = {
        {T_(F32), RL__FT_ALL_F32},   {T_(F16), RL__FT_F16},         {T_(BF16), RL__FT_BF16},
        {T_(Q4_0), RL__FT_Q4_0},     {T_(Q4_1), RL__FT_Q4_1},       {T_(Q5_0), RL__FT_Q5_0},
        {T_(Q5_1), RL__FT_Q5_1},     {T_(Q8_0), RL__FT_Q8_0},       {T_(Q2_K), RL__FT_Q2_K},
        {T_(Q3_K), RL__FT_Q3_K_M},   {T_(Q4_K), RL__FT_Q4_K_M},     {T_(Q5_K), RL__FT_Q5_K_M},
        {T_(Q6_K), RL__FT_Q6_K},     {T_(TQ1_0), RL__FT_TQ1_0},     {T_(TQ2_0), RL__FT_TQ2_0},
        {T_(IQ2_XXS), RL__FT_IQ2_XXS}, {T_(IQ2_XS), RL__FT_IQ2_XS}, {T_(IQ2_S), RL__FT_IQ2_S},
        {T_(IQ3_XXS), RL__FT_IQ3_XXS}, {T_(IQ1_S), RL__FT_IQ1_S},   {T_(IQ1_M), RL__FT_IQ1_M},
        {T_(IQ4_NL), RL__FT_IQ4_NL}, {T_(IQ4_XS), RL__FT_IQ4_XS},   {T_(IQ3_S), RL__FT_IQ3_S},
        {T_(NVFP4), RL__FT_NVFP4},   {T_(Q1_0), RL__FT_Q1_0},       {T_(Q2_0), RL__FT_Q2_0},
        {T_(MXFP4), RL__FT_MXFP4_MOE},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(map); i++)
        if (map[i].t == t) return map[i].ft;
    return RL__FT_NONE;
}

rl_status rl__mix_resolve(const char *name, rl__mix *out) {
    if (!name || !out) return RL_ERR_INVALID_ARG;
    for (size_t i = 0; i < RL_ARRAY_LEN(g_mixes); i++) {
        if (strcasecmp(g_mixes[i].name, name) == 0) {
            *out = g_mixes[i];
            return RL_OK;
        }
    }
    rl_type t;
    if (rl_type_from_name(name, &t) != RL_OK) return RL_ERR_NOT_FOUND;
    /* Every tensor type that has a mix of its own name was found above; what is left
     * is a pure single-type file, if t can be a weight type at all. */
    if (t == RL_TYPE_Q8_1 || t == RL_TYPE_Q8_K || t == RL_TYPE_F64 || t == RL_TYPE_I8 ||
        t == RL_TYPE_I16 || t == RL_TYPE_I32 || t == RL_TYPE_I64)
        return RL_ERR_UNSUPPORTED;
    *out = (rl__mix){rl_type_name(t), ftype_of_type(t), t, RL__MIX_PURE, KEEP, KEEP, KEEP, KEEP};
    return RL_OK;
}

/* ---- the model's hyperparameters -------------------------------------------------------- */

/* An integer value, or the first element of an integer array (per-layer values). */
static rl_status kv_int_first(const rl_gguf *g, int64_t i, int64_t *out) {
    const rl_gguf_value *v = rl_gguf_kv_value(g, i);
    if (!v) return RL_ERR_NOT_FOUND;
    if (v->type != RL_GGUF_TYPE_ARRAY) return rl_gguf_get_i64(g, i, out);
    if (v->n == 0) return RL_ERR_RANGE;
    const void *a = v->v.arr;
    switch (v->elem_type) {
    case RL_GGUF_TYPE_UINT8: *out = ((const uint8_t *)a)[0]; return RL_OK;
    case RL_GGUF_TYPE_INT8: *out = ((const int8_t *)a)[0]; return RL_OK;
    case RL_GGUF_TYPE_UINT16: *out = ((const uint16_t *)a)[0]; return RL_OK;
    case RL_GGUF_TYPE_INT16: *out = ((const int16_t *)a)[0]; return RL_OK;
    case RL_GGUF_TYPE_UINT32: *out = ((const uint32_t *)a)[0]; return RL_OK;
    case RL_GGUF_TYPE_INT32: *out = ((const int32_t *)a)[0]; return RL_OK;
    case RL_GGUF_TYPE_INT64: *out = ((const int64_t *)a)[0]; return RL_OK;
    case RL_GGUF_TYPE_UINT64:
        if (((const uint64_t *)a)[0] > INT64_MAX) return RL_ERR_RANGE;
        *out = (int64_t)((const uint64_t *)a)[0];
        return RL_OK;
    default: return RL_ERR_INVALID_ARG;
    }
}

/* <arch>.<suffix> as an integer; *found false (and *out untouched) when absent. */
static rl_status arch_int(const rl_gguf *g, const char *arch, const char *suffix, int64_t *out,
                          bool *found, char *err, size_t err_size) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t i = rl_gguf_find_key(g, key);
    *found = i >= 0;
    if (i < 0) return RL_OK;
    int64_t v;
    rl_status s = kv_int_first(g, i, &v);
    if (s != RL_OK || v < 0 || v > INT32_MAX) {
        rl__fmt(err, err_size, "metadata '%s': not a non-negative 32-bit integer", key);
        return RL_ERR_BAD_FILE;
    }
    *out = v;
    return RL_OK;
}

rl_status rl__mix_model_from_gguf(const rl_gguf *g, bool need_layers, rl__mix_model *m,
                                  char *err, size_t err_size) {
    memset(m, 0, sizeof *m);
    int64_t ia = rl_gguf_find_key(g, "general.architecture");
    const char *arch = NULL;
    size_t alen = 0;
    if (ia < 0 || rl_gguf_get_str(g, ia, &arch, &alen) != RL_OK || alen == 0 ||
        alen >= sizeof m->arch) {
        if (!need_layers) return RL_OK;
        rl__fmt(err, err_size, "metadata 'general.architecture': %s",
                ia < 0 ? "missing (needed to choose the per-tensor types)"
                       : "not a string of 1..63 bytes");
        return RL_ERR_BAD_FILE;
    }
    memcpy(m->arch, arch, alen + 1);
    bool found;
    rl_status s = arch_int(g, arch, "block_count", &m->n_layer, &found, err, err_size);
    if (s != RL_OK) return s;
    if (!found && need_layers) {
        rl__fmt(err, err_size, "metadata '%s.block_count': missing (needed to choose the "
                               "per-tensor types)", arch);
        return RL_ERR_BAD_FILE;
    }
    if ((s = arch_int(g, arch, "attention.head_count", &m->n_head, &found, err, err_size)))
        return s;
    m->n_head_kv = m->n_head;
    if ((s = arch_int(g, arch, "attention.head_count_kv", &m->n_head_kv, &found, err,
                      err_size)))
        return s;
    return arch_int(g, arch, "expert_count", &m->n_expert, &found, err, err_size);
}

/* ---- tensor roles ------------------------------------------------------------------------ */

typedef enum cat {
    CAT_TOKEN_EMBD,
    CAT_ATTN_Q,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_QKV,
    CAT_ATTN_KV_B,
    CAT_ATTN_OUTPUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN,
    CAT_OUTPUT,
    CAT_OTHER
} cat;

/* First match wins: whole names, then substrings. */
static const struct {
    const char *pat;
    bool whole;
    cat c;
} g_roles[] = {
    {"output.weight", true, CAT_OUTPUT},
    {"token_embd.weight", true, CAT_TOKEN_EMBD},
    {"per_layer_token_embd.weight", true, CAT_TOKEN_EMBD},
    {"attn_qkv.weight", false, CAT_ATTN_QKV},
    {"attn_kv_b.weight", false, CAT_ATTN_KV_B},
    {"attn_v.weight", false, CAT_ATTN_V},
    {"attn_k.weight", false, CAT_ATTN_K},
    {"attn_q.weight", false, CAT_ATTN_Q},
    {"attn_output.weight", false, CAT_ATTN_OUTPUT},
    {"ffn_up", false, CAT_FFN_UP},
    {"ffn_gate", false, CAT_FFN_GATE},
    {"ffn_down", false, CAT_FFN_DOWN},
};

static cat role_of(const char *name) {
    for (size_t i = 0; i < RL_ARRAY_LEN(g_roles); i++) {
        if (g_roles[i].whole ? !strcmp(name, g_roles[i].pat) : strstr(name, g_roles[i].pat) != NULL)
            return g_roles[i].c;
    }
    return CAT_OTHER;
}

/* attn_v and the fused tensors that hold it are the most sensitive to quantization. */
static bool is_attn_v_like(cat c) {
    return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

/* Tensors kept as they are although 2-D and named "...weight": name fragments. */
static const char *const g_keep_substr[] = {
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight",
    "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
    "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
    "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
    ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
};
/* ... and whole names (BERT's positional and token-type embeddings). */
static const char *const g_keep_whole[] = {"position_embd.weight", "token_types.weight"};

bool rl__mix_allows(const char *name, const int64_t ne[4]) {
    int dims = 1; /* as ggml_n_dims: trailing dimensions of 1 do not count */
    for (int d = 3; d >= 1; d--) {
        if (ne[d] != 1) {
            dims = d + 1;
            break;
        }
    }
    if (dims < 2) return false;
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight") != 0) return false;
    for (size_t i = 0; i < RL_ARRAY_LEN(g_keep_substr); i++)
        if (strstr(name, g_keep_substr[i])) return false;
    for (size_t i = 0; i < RL_ARRAY_LEN(g_keep_whole); i++)
        if (!strcmp(name, g_keep_whole[i])) return false;
    return true;
}

bool rl__mix_requires_imatrix(const rl__mix *mix, const char *name, rl_type t) {
    cat c = role_of(name);
    if (c == CAT_OUTPUT || c == CAT_TOKEN_EMBD) return false;
    switch (t) {
    case RL_TYPE_IQ3_XXS: case RL_TYPE_IQ2_XXS: case RL_TYPE_IQ2_XS: case RL_TYPE_IQ2_S:
    case RL_TYPE_IQ1_M: case RL_TYPE_IQ1_S:
        return true;
    case RL_TYPE_Q2_K: return mix->ftype == RL__FT_Q2_K_S;
    default: return false;
    }
}

/* ---- order ------------------------------------------------------------------------------- */

/* The N of a "blk.N." prefix read as sscanf("%d") would (sign and leading blanks
 * allowed), saturated instead of overflowing; -1 without one. found says whether a
 * number was read at all. */
static int layer_number(const char *name, bool *found) {
    *found = false;
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r')) p++;
    bool neg = false;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (*p < '0' || *p > '9') return -1;
    long long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) v = v > INT32_MAX ? v : v * 10 + (*p - '0');
    if (v > INT32_MAX) v = INT32_MAX;
    *found = true;
    return (int)(neg ? -v : v);
}

typedef struct okey {
    int layer;
    const char *name;
    size_t idx;
} okey;

static int okey_cmp(const void *a, const void *b) {
    const okey *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

void rl__mix_order(const rl__mix_tensor *t, size_t n, size_t *order) {
    okey *k = n ? rl__malloc(n * sizeof *k) : NULL;
    if (!k) { /* out of memory: file order is still a valid order */
        for (size_t i = 0; i < n; i++) order[i] = i;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        bool f;
        k[i] = (okey){layer_number(t[i].name, &f), t[i].name, i};
    }
    qsort(k, n, sizeof *k, okey_cmp);
    for (size_t i = 0; i < n; i++) order[i] = k[i].idx;
    rl__free(k);
}

/* ---- the rules --------------------------------------------------------------------------- */

typedef struct plan {
    const rl__mix *mix;
    const rl__mix_model *m;
    const rl__mix_opts *o;
    int64_t gqa;         /* n_head / n_head_kv of layer 0; 0 without KV heads */
    bool falcon, bailing3, is_70b, moe8, tied;
    int n_attn_v, i_attn_v, i_ffn_down, i_ffn_gate, i_ffn_up;
    char *err;
    size_t err_size;
} plan;

/* Layers that keep more bits: the first and last eighth and every third in between. */
static bool more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* Models of the "70B" size class, where attn_v is 8x smaller than attn_q (llama.cpp's
 * model-type table; llama needs grouped KV heads, and 8-expert llamas are another class). */
static bool is_70b_class(const rl__mix_model *m) {
    static const struct {
        const char *arch;
        int64_t n_layer;
        bool need_gqa;
    } tab[] = {{"llama", 80, true}, {"qwen2", 80, false}, {"deci", 80, false},
               {"olmo", 80, false}, {"jais2", 68, false}};
    for (size_t i = 0; i < RL_ARRAY_LEN(tab); i++) {
        if (strcmp(m->arch, tab[i].arch) || m->n_layer != tab[i].n_layer) continue;
        if (!strcmp(m->arch, "llama") && m->n_expert == 8) return false;
        return !tab[i].need_gqa || m->n_head != m->n_head_kv;
    }
    return false;
}

/* The layer a per-layer rule looks at: the running count of such tensors in a dense
 * model, the blk.N of the name in a mixture of experts (whose expert tensors need not
 * come in layer order). */
static bool rule_layer(plan *p, int counter, const char *name, int64_t *layer) {
    if (p->m->n_expert <= 1) {
        *layer = counter;
        return true;
    }
    bool found;
    int l = layer_number(name, &found);
    if (!found) {
        rl__fmt(p->err, p->err_size, "tensor '%s': cannot read its layer number", name);
        return false;
    }
    if (l < 0 || l >= p->m->n_layer) {
        rl__fmt(p->err, p->err_size, "tensor '%s': layer %d outside [0, %" PRId64 ")", name,
                l, p->m->n_layer);
        return false;
    }
    *layer = l;
    return true;
}

static rl_type attn_v_type(plan *p, rl_type nt) {
    const int32_t ft = p->mix->ftype;
    const bool g4 = p->gqa >= 4;
    switch (ft) {
    case RL__FT_Q2_K: nt = g4 ? RL_TYPE_Q4_K : RL_TYPE_Q3_K; break;
    case RL__FT_Q2_K_S: if (g4) nt = RL_TYPE_Q4_K; break;
    case RL__FT_IQ3_XXS:
        nt = g4 ? RL_TYPE_Q4_K : p->o->has_imatrix ? RL_TYPE_IQ3_XXS : RL_TYPE_IQ3_S;
        break;
    case RL__FT_IQ3_XS: case RL__FT_IQ3_S: if (g4) nt = RL_TYPE_Q4_K; break;
    case RL__FT_IQ3_M: nt = RL_TYPE_Q4_K; break;
    case RL__FT_Q3_K_M: nt = p->i_attn_v < 2 ? RL_TYPE_Q5_K : RL_TYPE_Q4_K; break;
    case RL__FT_Q3_K_L: nt = RL_TYPE_Q5_K; break;
    case RL__FT_IQ4_NL: case RL__FT_IQ4_XS: if (g4) nt = RL_TYPE_Q5_K; break;
    case RL__FT_Q4_K_M: case RL__FT_Q5_K_M:
        if (more_bits(p->i_attn_v, p->n_attn_v)) nt = RL_TYPE_Q6_K;
        break;
    case RL__FT_Q4_K_S: if (p->i_attn_v < 4) nt = RL_TYPE_Q5_K; break;
    default: break;
    }
    if (p->is_70b && (nt == RL_TYPE_Q3_K || nt == RL_TYPE_Q4_K)) nt = RL_TYPE_Q5_K;
    if (p->moe8) nt = RL_TYPE_Q8_0;
    return nt;
}

static rl_type ffn_down_type(plan *p, rl_type nt, int64_t i, int64_t n) {
    const bool mb = more_bits(i, n), first8 = i < n / 8, first16 = i < n / 16;
    const bool imx = p->o->has_imatrix;
    switch (p->mix->ftype) {
    case RL__FT_Q2_K: return RL_TYPE_Q3_K;
    case RL__FT_Q2_K_S: return first8 ? RL_TYPE_Q4_K : nt;
    case RL__FT_IQ3_XXS: return imx ? nt : first8 ? RL_TYPE_Q4_K : RL_TYPE_Q3_K;
    case RL__FT_Q3_K_M:
        return first16 ? RL_TYPE_Q5_K : (!p->falcon || mb) ? RL_TYPE_Q4_K : RL_TYPE_Q3_K;
    case RL__FT_IQ3_M: return (first8 || (p->moe8 && mb)) ? RL_TYPE_Q4_K : nt;
    case RL__FT_Q3_K_L: return p->falcon ? RL_TYPE_Q4_K : RL_TYPE_Q5_K;
    case RL__FT_Q4_K_M:
        if (p->falcon) return first16 ? RL_TYPE_Q6_K : mb ? RL_TYPE_Q5_K : RL_TYPE_Q4_K;
        return mb ? RL_TYPE_Q6_K : nt;
    case RL__FT_IQ4_NL: case RL__FT_IQ4_XS: return (first8 && !imx) ? RL_TYPE_Q5_K : nt;
    case RL__FT_Q5_K_M: return mb ? RL_TYPE_Q6_K : nt;
    case RL__FT_Q4_K_S: return (!p->falcon && first8) ? RL_TYPE_Q5_K : nt;
    case RL__FT_Q4_0: return (imx && first8) ? RL_TYPE_Q4_1 : nt;
    case RL__FT_Q5_0: return (imx && first8) ? RL_TYPE_Q5_1 : nt;
    default: return nt;
    }
}

/* The 1-2 bit i-quant mixes: their own, simpler rules. */
static rl_type iq_low_type(plan *p, cat c, rl_type nt) {
    const int32_t ft = p->mix->ftype;
    const bool s_or_m = ft == RL__FT_IQ2_S || ft == RL__FT_IQ2_M;
    if (is_attn_v_like(c)) {
        p->i_attn_v++;
        if (p->gqa >= 4 || p->m->n_expert >= 4) return RL_TYPE_Q4_K;
        return s_or_m ? RL_TYPE_IQ3_S : RL_TYPE_Q2_K;
    }
    if (c == CAT_ATTN_K && p->moe8) return RL_TYPE_Q4_K;
    if (c == CAT_FFN_DOWN) {
        if (p->i_ffn_down++ < p->m->n_layer / 8) return s_or_m ? RL_TYPE_IQ3_S : RL_TYPE_Q2_K;
        return nt;
    }
    if (c == CAT_ATTN_OUTPUT) {
        if (p->moe8) return RL_TYPE_Q5_K;
        if (ft == RL__FT_IQ1_S || ft == RL__FT_IQ1_M) return RL_TYPE_IQ2_XXS;
        if (s_or_m) return RL_TYPE_IQ3_S;
    }
    return nt;
}

static rl_type col(rl_type v, rl_type base) { return v == KEEP ? base : v; }

/* The mix's choice for one quantizable tensor (before the row-length fallback). */
static bool choose(plan *p, const rl__mix_tensor *t, cat c, rl_type *out) {
    const rl__mix *mix = p->mix;
    rl_type nt = mix->base;
    if (c == CAT_OUTPUT || (p->tied && c == CAT_TOKEN_EMBD)) {
        if (mix->ftype == RL__FT_MXFP4_MOE || p->falcon || t->ne[0] % rl_type_block_size(nt))
            *out = RL_TYPE_Q8_0;
        else
            *out = col(mix->output, nt);
        return true;
    }
    if (mix->ftype == RL__FT_MXFP4_MOE) {
        /* experts in MXFP4, the rest in Q8_0; bailingmoe3's 3-D MLA projections are not
         * experts */
        bool expert = t->ne[2] > 1 && (!p->bailing3 || c == CAT_FFN_UP || c == CAT_FFN_GATE ||
                                       c == CAT_FFN_DOWN);
        *out = expert ? RL_TYPE_MXFP4 : RL_TYPE_Q8_0;
        return true;
    }
    if (c == CAT_TOKEN_EMBD) {
        *out = col(mix->embd, nt);
        return true;
    }
    if (mix->flags & RL__MIX_IQ_LOW) {
        *out = iq_low_type(p, c, nt);
        return true;
    }
    int64_t layer;
    switch (c) {
    case CAT_ATTN_V: case CAT_ATTN_QKV: case CAT_ATTN_KV_B:
        nt = attn_v_type(p, nt);
        p->i_attn_v++;
        break;
    case CAT_ATTN_K:
        nt = p->moe8 ? RL_TYPE_Q8_0 : col(mix->attn_qk, nt);
        break;
    case CAT_ATTN_Q: nt = col(mix->attn_qk, nt); break;
    case CAT_FFN_DOWN:
        if (!rule_layer(p, p->i_ffn_down, t->name, &layer)) return false;
        nt = ffn_down_type(p, nt, layer, p->m->n_layer);
        p->i_ffn_down++;
        break;
    case CAT_ATTN_OUTPUT:
        if (p->falcon) {
            if (mix->ftype == RL__FT_Q3_K_L) nt = RL_TYPE_Q4_K;
        } else if (p->moe8) {
            if (mix->flags & RL__MIX_MOE8_AO) nt = RL_TYPE_Q5_K;
        } else {
            nt = col(mix->attn_out, nt);
        }
        break;
    case CAT_FFN_GATE: case CAT_FFN_UP: {
        int *ctr = c == CAT_FFN_GATE ? &p->i_ffn_gate : &p->i_ffn_up;
        if (!rule_layer(p, *ctr, t->name, &layer)) return false;
        int64_t n = p->m->n_layer;
        if (mix->ftype == RL__FT_IQ3_XS && layer >= n / 8 && layer < 7 * n / 8)
            nt = RL_TYPE_IQ3_XXS;
        (*ctr)++;
        break;
    }
    default: break;
    }
    *out = nt;
    return true;
}

/* A type whose block does not divide the row length gives way to one whose block does:
 * 256-element types to a 32-element type of about the same size. */
static const struct {
    rl_type from, to;
} g_fallback[] = {
    {T_(IQ1_S), T_(IQ4_NL)},  {T_(IQ1_M), T_(IQ4_NL)}, {T_(IQ2_XXS), T_(IQ4_NL)},
    {T_(IQ2_XS), T_(IQ4_NL)}, {T_(IQ2_S), T_(IQ4_NL)}, {T_(IQ3_XXS), T_(IQ4_NL)},
    {T_(IQ3_S), T_(IQ4_NL)},  {T_(IQ4_XS), T_(IQ4_NL)}, {T_(Q2_0), T_(Q4_0)},
    {T_(Q2_K), T_(Q4_0)},     {T_(Q3_K), T_(Q4_0)},    {T_(TQ1_0), T_(Q4_0)},
    {T_(TQ2_0), T_(Q4_0)},    {T_(Q4_K), T_(Q5_0)},    {T_(Q5_K), T_(Q5_1)},
    {T_(Q6_K), T_(Q8_0)},
};

static bool fall_back(plan *p, const rl__mix_tensor *t, rl_type *type, bool *fell) {
    int64_t ncols = t->ne[0], bs = rl_type_block_size(*type);
    *fell = false;
    if (bs <= 0 || ncols % bs == 0) return true;
    *fell = true;
    rl_type to = KEEP;
    for (size_t i = 0; i < RL_ARRAY_LEN(g_fallback); i++)
        if (g_fallback[i].from == *type) to = g_fallback[i].to;
    if (to == KEEP) {
        if (bs > 32) {
            rl__fmt(p->err, p->err_size, "tensor '%s': row length %" PRId64 " is not a "
                    "multiple of %" PRId64 " and %s has no fallback type", t->name, ncols, bs,
                    rl_type_name(*type));
            return false;
        }
        to = *type;
    }
    if (ncols % rl_type_block_size(to) != 0) to = RL_TYPE_F16; /* an unusual shape */
    *type = to;
    return true;
}

rl_status rl__mix_plan(const rl__mix *mix, const rl__mix_model *m, const rl__mix_opts *o,
                       const rl__mix_tensor *t, size_t n, rl_type *types, bool *fallback,
                       char *err, size_t err_size) {
    if (!mix || !m || !o || (n && (!t || !types))) return RL_ERR_INVALID_ARG;
    plan p = {.mix = mix, .m = m, .o = o, .tied = true, .err = err, .err_size = err_size};
    p.gqa = m->n_head_kv > 0 ? m->n_head / m->n_head_kv : 0;
    p.falcon = !strcmp(m->arch, "falcon");
    p.bailing3 = !strcmp(m->arch, "bailingmoe3");
    p.moe8 = m->n_expert == 8;
    p.is_70b = is_70b_class(m);
    for (size_t i = 0; i < n; i++) {
        cat c = role_of(t[i].name);
        if (is_attn_v_like(c)) p.n_attn_v++;
        if (c == CAT_OUTPUT) p.tied = false;
    }
    size_t *order = n ? rl__malloc(n * sizeof *order) : NULL;
    if (n && !order) return RL_ERR_NOMEM;
    rl__mix_order(t, n, order);

    rl_status st = RL_OK;
    for (size_t k = 0; k < n && st == RL_OK; k++) {
        const rl__mix_tensor *ti = &t[order[k]];
        rl_type *out = &types[order[k]];
        bool fell = false;
        if (fallback) fallback[order[k]] = false;
        if ((mix->flags & RL__MIX_COPY) || !rl__mix_allows(ti->name, ti->ne)) {
            *out = ti->type;
            continue;
        }
        cat c = role_of(ti->name);
        if (o->token_embd_type != KEEP && c == CAT_TOKEN_EMBD) {
            *out = o->token_embd_type;
            continue;
        }
        if (o->output_type != KEEP && c == CAT_OUTPUT) {
            *out = o->output_type;
            continue;
        }
        rl_type nt = mix->base;
        if (rl_type_is_quantized(nt)) {
            if (!o->pure && !(mix->flags & RL__MIX_PURE) && !choose(&p, ti, c, &nt))
                st = RL_ERR_INVALID_ARG;
            else if (!fall_back(&p, ti, &nt, &fell))
                st = RL_ERR_INVALID_ARG;
        }
        *out = nt;
        if (fallback) fallback[order[k]] = fell;
    }
    rl__free(order);
    return st;
}
