/*
 * loader.c - reading a model's hyperparameters and tensors from GGUF metadata, with a
 * message naming the key or tensor for everything that is missing or malformed. The
 * key and tensor names are those llama.cpp's converters write (gguf-py constants).
 */
#include "model.h"

#include "../quant/quant.h"

#include <math.h>
#include <stdio.h>

rl_status rl__ld_fail(rl__loader *ld, rl_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(ld->err, ld->err_size, fmt, ap);
    va_end(ap);
    return st;
}

bool rl__ld_has(rl__loader *ld, const char *key) { return rl_gguf_find_key(ld->g, key) >= 0; }

static int64_t find_arch_key(rl__loader *ld, const char *suffix, char *key, size_t key_size) {
    rl__fmt(key, key_size, "%s.%s", ld->arch, suffix);
    return rl_gguf_find_key(ld->g, key);
}

rl_status rl__ld_i32(rl__loader *ld, const char *suffix, int32_t *out, bool required) {
    char key[256];
    int64_t i = find_arch_key(ld, suffix, key, sizeof key);
    if (i < 0) {
        if (required) return rl__ld_fail(ld, RL_ERR_BAD_FILE, "missing metadata key %s", key);
        return RL_OK;
    }
    int64_t v;
    if (rl_gguf_kv_type(ld->g, i) == RL_GGUF_TYPE_ARRAY) {
        /* per-layer values: accepted when they are all the same */
        const rl_gguf_value *val = rl_gguf_kv_value(ld->g, i);
        if (val->n == 0 || val->elem_type == RL_GGUF_TYPE_STRING ||
            val->elem_type == RL_GGUF_TYPE_ARRAY || val->elem_type == RL_GGUF_TYPE_FLOAT32 ||
            val->elem_type == RL_GGUF_TYPE_FLOAT64 || val->elem_type == RL_GGUF_TYPE_BOOL)
            return rl__ld_fail(ld, RL_ERR_BAD_FILE, "metadata key %s: expected an integer", key);
        int64_t first = 0;
        for (uint64_t j = 0; j < val->n; j++) {
            int64_t x;
            const void *a = val->v.arr;
            switch (val->elem_type) {
            case RL_GGUF_TYPE_UINT8: x = ((const uint8_t *)a)[j]; break;
            case RL_GGUF_TYPE_INT8: x = ((const int8_t *)a)[j]; break;
            case RL_GGUF_TYPE_UINT16: x = ((const uint16_t *)a)[j]; break;
            case RL_GGUF_TYPE_INT16: x = ((const int16_t *)a)[j]; break;
            case RL_GGUF_TYPE_UINT32: x = ((const uint32_t *)a)[j]; break;
            case RL_GGUF_TYPE_INT32: x = ((const int32_t *)a)[j]; break;
            case RL_GGUF_TYPE_UINT64: {
                uint64_t u = ((const uint64_t *)a)[j];
                x = u > INT64_MAX ? -1 : (int64_t)u;
                break;
            }
            default: x = ((const int64_t *)a)[j]; break;
            }
            if (j == 0) first = x;
            else if (x != first)
                return rl__ld_fail(ld, RL_ERR_UNSUPPORTED,
                                   "metadata key %s: different values per layer are not "
                                   "supported",
                                   key);
        }
        v = first;
    } else {
        rl_status st = rl_gguf_get_i64(ld->g, i, &v);
        if (st == RL_ERR_INVALID_ARG)
            return rl__ld_fail(ld, RL_ERR_BAD_FILE, "metadata key %s: expected an integer, got %s",
                               key, rl_gguf_type_name(rl_gguf_kv_type(ld->g, i)));
        if (st != RL_OK) v = -1;
    }
    if (v < 0 || v > INT32_MAX)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "metadata key %s: value out of range", key);
    *out = (int32_t)v;
    return RL_OK;
}

rl_status rl__ld_f32(rl__loader *ld, const char *suffix, float *out, bool required) {
    char key[256];
    int64_t i = find_arch_key(ld, suffix, key, sizeof key);
    if (i < 0) {
        if (required) return rl__ld_fail(ld, RL_ERR_BAD_FILE, "missing metadata key %s", key);
        return RL_OK;
    }
    double v;
    if (rl_gguf_get_f64(ld->g, i, &v) != RL_OK)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "metadata key %s: expected a number, got %s",
                           key, rl_gguf_type_name(rl_gguf_kv_type(ld->g, i)));
    if (!isfinite(v))
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "metadata key %s: not a finite number", key);
    *out = (float)v;
    return RL_OK;
}

rl_status rl__ld_str(rl__loader *ld, const char *suffix, const char **out, bool required) {
    char key[256];
    int64_t i = find_arch_key(ld, suffix, key, sizeof key);
    if (i < 0) {
        if (required) return rl__ld_fail(ld, RL_ERR_BAD_FILE, "missing metadata key %s", key);
        return RL_OK;
    }
    size_t len;
    if (rl_gguf_get_str(ld->g, i, out, &len) != RL_OK)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "metadata key %s: expected a string, got %s",
                           key, rl_gguf_type_name(rl_gguf_kv_type(ld->g, i)));
    return RL_OK;
}

#define TRY(x)                                                                             \
    do {                                                                                   \
        rl_status st_ = (x);                                                               \
        if (st_ != RL_OK) return st_;                                                      \
    } while (0)

rl_status rl__ld_hparams(rl__loader *ld) {
    rl_model *m = ld->m;
    rl__hparams *hp = &m->hp;
    const char *a = ld->arch;

    TRY(rl__ld_i32(ld, "context_length", &hp->n_ctx_train, true));
    TRY(rl__ld_i32(ld, "embedding_length", &hp->n_embd, true));
    TRY(rl__ld_i32(ld, "block_count", &hp->n_layer, true));
    TRY(rl__ld_i32(ld, "feed_forward_length", &hp->n_ff, false));
    TRY(rl__ld_i32(ld, "attention.head_count", &hp->n_head, true));
    hp->n_head_kv = hp->n_head;
    TRY(rl__ld_i32(ld, "attention.head_count_kv", &hp->n_head_kv, false));
    TRY(rl__ld_i32(ld, "expert_count", &hp->n_expert, false));
    TRY(rl__ld_i32(ld, "expert_used_count", &hp->n_expert_used, false));
    TRY(rl__ld_f32(ld, "attention.layer_norm_rms_epsilon", &hp->norm_rms_eps, true));

    if (hp->n_ctx_train <= 0)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s.context_length must be positive", a);
    if (hp->n_embd <= 0 || hp->n_embd > (1 << 20))
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s.embedding_length = %d is out of range", a,
                           hp->n_embd);
    if (hp->n_layer <= 0 || hp->n_layer > 4096)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s.block_count = %d is out of range", a,
                           hp->n_layer);
    if (hp->n_head <= 0 || hp->n_head > 4096)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s.attention.head_count = %d is out of range",
                           a, hp->n_head);
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv != 0)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s.attention.head_count_kv = %d does not divide head_count = %d", a,
                           hp->n_head_kv, hp->n_head);
    if (hp->n_expert_used > hp->n_expert || (hp->n_expert > 0 && hp->n_expert_used == 0))
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s.expert_used_count = %d is out of range for expert_count = %d", a,
                           hp->n_expert_used, hp->n_expert);
    if (!(hp->norm_rms_eps >= 0.0f))
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s.attention.layer_norm_rms_epsilon must not be negative", a);

    hp->head_dim_k = hp->head_dim_v = hp->n_embd / hp->n_head;
    TRY(rl__ld_i32(ld, "attention.key_length", &hp->head_dim_k, false));
    TRY(rl__ld_i32(ld, "attention.value_length", &hp->head_dim_v, false));
    if (hp->head_dim_k <= 0 || hp->head_dim_k > RL_MAX_HEAD_DIM || hp->head_dim_v <= 0 ||
        hp->head_dim_v > RL_MAX_HEAD_DIM)
        return rl__ld_fail(ld, RL_ERR_UNSUPPORTED,
                           "head size %d (keys) / %d (values) is out of range (1..%d)",
                           hp->head_dim_k, hp->head_dim_v, RL_MAX_HEAD_DIM);

    /* RoPE, with llama.cpp's defaults */
    hp->n_rot = hp->head_dim_k;
    TRY(rl__ld_i32(ld, "rope.dimension_count", &hp->n_rot, false));
    if (hp->n_rot <= 0 || hp->n_rot % 2 || hp->n_rot > hp->head_dim_k)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s.rope.dimension_count = %d must be even and at most the head "
                           "size %d",
                           a, hp->n_rot, hp->head_dim_k);
    hp->rope_freq_base = 10000.0f;
    TRY(rl__ld_f32(ld, "rope.freq_base", &hp->rope_freq_base, false));
    if (!(hp->rope_freq_base > 1.0f))
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s.rope.freq_base must be greater than 1", a);

    const char *scaling = "linear";
    TRY(rl__ld_str(ld, "rope.scaling.type", &scaling, false));
    if (!strcmp(scaling, "none")) hp->rope_scaling = RL_ROPE_SCALING_NONE;
    else if (!strcmp(scaling, "linear")) hp->rope_scaling = RL_ROPE_SCALING_LINEAR;
    else if (!strcmp(scaling, "yarn")) hp->rope_scaling = RL_ROPE_SCALING_YARN;
    else if (!strcmp(scaling, "longrope")) hp->rope_scaling = RL_ROPE_SCALING_LONGROPE;
    else
        return rl__ld_fail(ld, RL_ERR_UNSUPPORTED,
                           "%s.rope.scaling.type = \"%s\" is not supported (none, linear, yarn, "
                           "longrope)",
                           a, scaling);
    float factor = 0.0f;
    char key[256];
    rl__fmt(key, sizeof key, "%s.rope.scaling.factor", a);
    if (rl__ld_has(ld, key)) TRY(rl__ld_f32(ld, "rope.scaling.factor", &factor, false));
    else TRY(rl__ld_f32(ld, "rope.scale_linear", &factor, false));
    if (factor < 0.0f)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s.rope.scaling.factor must not be negative", a);
    hp->rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    hp->n_ctx_orig = hp->n_ctx_train;
    TRY(rl__ld_i32(ld, "rope.scaling.original_context_length", &hp->n_ctx_orig, false));
    if (hp->n_ctx_orig <= 0)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s.rope.scaling.original_context_length must be positive", a);
    hp->rope_attn_factor = 1.0f;
    TRY(rl__ld_f32(ld, "rope.scaling.attn_factor", &hp->rope_attn_factor, false));
    hp->yarn_ext_factor = -1.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    TRY(rl__ld_f32(ld, "rope.scaling.yarn_ext_factor", &hp->yarn_ext_factor, false));
    TRY(rl__ld_f32(ld, "rope.scaling.yarn_attn_factor", &hp->yarn_attn_factor, false));
    TRY(rl__ld_f32(ld, "rope.scaling.yarn_beta_fast", &hp->yarn_beta_fast, false));
    TRY(rl__ld_f32(ld, "rope.scaling.yarn_beta_slow", &hp->yarn_beta_slow, false));
    TRY(rl__ld_f32(ld, "rope.scaling.yarn_log_multiplier", &hp->yarn_log_mul, false));

    hp->n_vocab = rl_vocab_n_tokens(m->vocab);
    if (hp->n_vocab <= 0) return rl__ld_fail(ld, RL_ERR_BAD_FILE, "the vocabulary is empty");

    m->layers = rl__calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return rl__ld_fail(ld, RL_ERR_NOMEM, "out of memory");
    return RL_OK;
}

rl_status rl__ld_check_heads(rl__loader *ld, bool full_rope) {
    const rl__hparams *hp = &ld->m->hp;
    if (full_rope && hp->n_rot != hp->head_dim_k)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s.rope.dimension_count = %d, expected the head size %d", ld->arch,
                           hp->n_rot, hp->head_dim_k);
    if (hp->head_dim_k != hp->head_dim_v)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s: key and value head sizes differ (%d, %d)",
                           ld->arch, hp->head_dim_k, hp->head_dim_v);
    return RL_OK;
}

/* ---- tensors ---------------------------------------------------------------------- */

static int64_t find_tensor(rl__loader *ld, char *name, size_t size, const char *fmt,
                           va_list ap) {
    rl__vfmt(name, size, fmt, ap);
    return rl_gguf_find_tensor(ld->g, name);
}

static void fmt_shape(char *buf, size_t size, int n_dims, const int64_t *ne) {
    size_t o = 0;
    buf[0] = 0;
    for (int d = 0; d < n_dims && o + 24 < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", d ? ", " : "[", (long long)ne[d]);
    if (o + 2 < size) snprintf(buf + o, size - o, "]");
}

static rl_status take_tensor(rl__loader *ld, int64_t idx, const char *name, unsigned flags,
                             int n_dims, const int64_t *ne, rl_gguf_tensor_info *ti) {
    rl_gguf_tensor(ld->g, idx, ti);
    bool ok = true;
    for (int d = 0; d < RL_GGUF_MAX_DIMS; d++) {
        int64_t want = d < n_dims ? ne[d] : 1;
        if (ti->ne[d] != want) ok = false;
    }
    if (!ok) {
        char got[96], want[96];
        fmt_shape(got, sizeof got, (int)ti->n_dims, ti->ne);
        fmt_shape(want, sizeof want, n_dims, ne);
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "tensor %s has shape %s, expected %s", name,
                           got, want);
    }
    if (ld->used[idx] && !(flags & RL_LD_SHARED))
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "tensor %s is used twice", name);
    ld->used[idx] = 1;
    return RL_OK;
}

rl_status rl__ld_weight(rl__loader *ld, rl_weight *w, unsigned flags, int n_dims,
                        const int64_t *ne, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    int64_t idx = find_tensor(ld, name, sizeof name, fmt, ap);
    va_end(ap);
    memset(w, 0, sizeof *w);
    if (idx < 0) {
        if (flags & RL_LD_OPTIONAL) return RL_OK;
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "missing tensor %s", name);
    }
    rl_gguf_tensor_info ti;
    TRY(take_tensor(ld, idx, name, flags, n_dims, ne, &ti));
    const rl__type_traits *tr = rl__type_traits_get(ti.type);
    if (!tr || !tr->to_float || !rl__cpu_can_multiply(ti.type))
        return rl__ld_fail(ld, RL_ERR_UNSUPPORTED, "tensor %s: type %s cannot be multiplied",
                           name, rl_type_name(ti.type));
    w->name = ti.name;
    w->type = ti.type;
    for (int d = 0; d < 4; d++) w->ne[d] = ti.ne[d];
    rl_type_row_bytes(ti.type, ti.ne[0], &w->row_bytes);
    w->data = ti.data;
    return RL_OK;
}

static rl_status own(rl_model *m, void *p, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 16;
        void **o = rl__realloc(m->owned, cap * sizeof *o);
        if (!o) return RL_ERR_NOMEM;
        m->owned = o;
        size_t *ob = rl__realloc(m->owned_bytes, cap * sizeof *ob);
        if (!ob) return RL_ERR_NOMEM;
        m->owned_bytes = ob;
        m->cap_owned = cap;
    }
    m->owned_bytes[m->n_owned] = bytes;
    m->owned[m->n_owned++] = p;
    return RL_OK;
}

rl_status rl__ld_vec(rl__loader *ld, const float **out, unsigned flags, int64_t n,
                     const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    int64_t idx = find_tensor(ld, name, sizeof name, fmt, ap);
    va_end(ap);
    *out = NULL;
    if (idx < 0) {
        if (flags & RL_LD_OPTIONAL) return RL_OK;
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "missing tensor %s", name);
    }
    rl_gguf_tensor_info ti;
    TRY(take_tensor(ld, idx, name, flags, 1, &n, &ti));
    if (ti.type == RL_TYPE_F32) {
        *out = ti.data;
        return RL_OK;
    }
    const rl__type_traits *tr = rl__type_traits_get(ti.type);
    if (!tr || !tr->to_float || n % tr->block_size)
        return rl__ld_fail(ld, RL_ERR_UNSUPPORTED, "tensor %s: type %s is not supported here",
                           name, rl_type_name(ti.type));
    float *f = rl__malloc((size_t)n * sizeof(float));
    if (!f || own(ld->m, f, (size_t)n * sizeof(float)) != RL_OK) {
        rl__free(f);
        return rl__ld_fail(ld, RL_ERR_NOMEM, "out of memory");
    }
    tr->to_float(ti.data, f, n);
    *out = f;
    return RL_OK;
}

/* ---- the llama family's standard tensors ---------------------------------------- */

rl_status rl__ld_embd_output(rl__loader *ld) {
    rl_model *m = ld->m;
    const rl__hparams *hp = &m->hp;
    int64_t ne[2] = {hp->n_embd, hp->n_vocab};
    TRY(rl__ld_weight(ld, &m->tok_embd, 0, 2, ne, "token_embd.weight"));
    TRY(rl__ld_vec(ld, &m->output_norm, 0, hp->n_embd, "output_norm.weight"));
    TRY(rl__ld_weight(ld, &m->output, RL_LD_OPTIONAL, 2, ne, "output.weight"));
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    return RL_OK;
}

rl_status rl__ld_attn(rl__loader *ld, int il) {
    rl_model *m = ld->m;
    const rl__hparams *hp = &m->hp;
    rl__layer *L = &m->layers[il];
    const int64_t nq = (int64_t)hp->n_head * hp->head_dim_k;
    const int64_t nk = (int64_t)hp->n_head_kv * hp->head_dim_k;
    const int64_t nv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t no = (int64_t)hp->n_head * hp->head_dim_v;

    TRY(rl__ld_vec(ld, &L->attn_norm, 0, hp->n_embd, "blk.%d.attn_norm.weight", il));
    int64_t ne_qkv[2] = {hp->n_embd, nq + nk + nv};
    TRY(rl__ld_weight(ld, &L->wqkv, RL_LD_OPTIONAL, 2, ne_qkv, "blk.%d.attn_qkv.weight", il));
    if (L->wqkv.data) {
        TRY(rl__ld_vec(ld, &L->bqkv, RL_LD_OPTIONAL, nq + nk + nv, "blk.%d.attn_qkv.bias", il));
    } else {
        int64_t ne_q[2] = {hp->n_embd, nq}, ne_k[2] = {hp->n_embd, nk}, ne_v[2] = {hp->n_embd, nv};
        TRY(rl__ld_weight(ld, &L->wq, 0, 2, ne_q, "blk.%d.attn_q.weight", il));
        TRY(rl__ld_weight(ld, &L->wk, 0, 2, ne_k, "blk.%d.attn_k.weight", il));
        TRY(rl__ld_weight(ld, &L->wv, 0, 2, ne_v, "blk.%d.attn_v.weight", il));
        TRY(rl__ld_vec(ld, &L->bq, RL_LD_OPTIONAL, nq, "blk.%d.attn_q.bias", il));
        TRY(rl__ld_vec(ld, &L->bk, RL_LD_OPTIONAL, nk, "blk.%d.attn_k.bias", il));
        TRY(rl__ld_vec(ld, &L->bv, RL_LD_OPTIONAL, nv, "blk.%d.attn_v.bias", il));
    }
    int64_t ne_o[2] = {no, hp->n_embd};
    TRY(rl__ld_weight(ld, &L->wo, 0, 2, ne_o, "blk.%d.attn_output.weight", il));
    TRY(rl__ld_vec(ld, &L->bo, RL_LD_OPTIONAL, hp->n_embd, "blk.%d.attn_output.bias", il));
    return RL_OK;
}

rl_status rl__ld_require_qkv_bias(rl__loader *ld, int il) {
    const rl__layer *L = &ld->m->layers[il];
    if (L->bq && L->bk && L->bv) return RL_OK;
    return rl__ld_fail(ld, RL_ERR_BAD_FILE, "missing tensor blk.%d.attn_%s.bias", il,
                       !L->bq ? "q" : !L->bk ? "k" : "v");
}

rl_status rl__ld_ffn(rl__loader *ld, int il, bool fused_gate_up) {
    rl_model *m = ld->m;
    const rl__hparams *hp = &m->hp;
    rl__layer *L = &m->layers[il];
    TRY(rl__ld_vec(ld, &L->ffn_norm, 0, hp->n_embd, "blk.%d.ffn_norm.weight", il));
    if (hp->n_ff <= 0)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "missing or zero metadata key %s.feed_forward_length",
                           ld->arch);
    int64_t ne_up[2] = {hp->n_embd, hp->n_ff}, ne_down[2] = {hp->n_ff, hp->n_embd};
    int64_t ne_gate_up[2] = {hp->n_embd, 2 * (int64_t)hp->n_ff};
    if (fused_gate_up) {
        TRY(rl__ld_weight(ld, &L->ffn_up, 0, 2, ne_gate_up, "blk.%d.ffn_up.weight", il));
    } else {
        TRY(rl__ld_weight(ld, &L->ffn_gate, 0, 2, ne_up, "blk.%d.ffn_gate.weight", il));
        TRY(rl__ld_weight(ld, &L->ffn_up, 0, 2, ne_up, "blk.%d.ffn_up.weight", il));
    }
    TRY(rl__ld_weight(ld, &L->ffn_down, 0, 2, ne_down, "blk.%d.ffn_down.weight", il));
    TRY(rl__ld_vec(ld, &L->ffn_gate_b, RL_LD_OPTIONAL, hp->n_ff, "blk.%d.ffn_gate.bias", il));
    TRY(rl__ld_vec(ld, &L->ffn_up_b, RL_LD_OPTIONAL, L->ffn_up.ne[1], "blk.%d.ffn_up.bias", il));
    TRY(rl__ld_vec(ld, &L->ffn_down_b, RL_LD_OPTIONAL, hp->n_embd, "blk.%d.ffn_down.bias", il));
    return RL_OK;
}

/* rope_freqs (llama3) and LongRoPE's rope_factors_long / _short, each optional: one
 * tensor for all layers, as the converters write it (llama.cpp's "duplicated" tensors).
 * Which set a context uses is rl__rope_resolve's choice. */
rl_status rl__ld_rope_factors(rl__loader *ld, int il) {
    rl_model *m = ld->m;
    rl__layer *L = &m->layers[il];
    const int64_t n = m->hp.n_rot / 2;
    const unsigned fl = RL_LD_OPTIONAL | RL_LD_SHARED;
    TRY(rl__ld_vec(ld, &L->rope_freqs, fl, n, "rope_freqs.weight"));
    TRY(rl__ld_vec(ld, &L->rope_long, fl, n, "rope_factors_long.weight"));
    TRY(rl__ld_vec(ld, &L->rope_short, fl, n, "rope_factors_short.weight"));
    return RL_OK;
}

rl_status rl__ld_moe(rl__loader *ld, int il, bool shared_expert) {
    rl_model *m = ld->m;
    const rl__hparams *hp = &m->hp;
    rl__layer *L = &m->layers[il];
    TRY(rl__ld_vec(ld, &L->ffn_norm, 0, hp->n_embd, "blk.%d.ffn_norm.weight", il));
    if (hp->n_expert <= 0 || hp->n_expert_used <= 0)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s.expert_count and %s.expert_used_count must be positive for a "
                           "mixture of experts",
                           ld->arch, ld->arch);
    if (hp->n_ff_exp <= 0)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "%s: the experts' feed-forward length is zero",
                           ld->arch);
    const int64_t d = hp->n_embd, ne = hp->n_expert, nf = hp->n_ff_exp;
    int64_t ne_inp[2] = {d, ne}, ne_up[3] = {d, nf, ne}, ne_down[3] = {nf, d, ne};
    TRY(rl__ld_weight(ld, &L->ffn_gate_inp, 0, 2, ne_inp, "blk.%d.ffn_gate_inp.weight", il));
    TRY(rl__ld_weight(ld, &L->ffn_gate_exps, 0, 3, ne_up, "blk.%d.ffn_gate_exps.weight", il));
    TRY(rl__ld_weight(ld, &L->ffn_up_exps, 0, 3, ne_up, "blk.%d.ffn_up_exps.weight", il));
    TRY(rl__ld_weight(ld, &L->ffn_down_exps, 0, 3, ne_down, "blk.%d.ffn_down_exps.weight", il));
    if (!shared_expert) return RL_OK;
    if (hp->n_ff_shexp <= 0)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "%s: the shared expert's feed-forward length is zero", ld->arch);
    const int64_t ns = hp->n_ff_shexp;
    int64_t ne_sup[2] = {d, ns}, ne_sdown[2] = {ns, d}, ne_sinp[1] = {d};
    TRY(rl__ld_weight(ld, &L->ffn_gate_inp_shexp, 0, 1, ne_sinp, "blk.%d.ffn_gate_inp_shexp.weight",
                      il));
    TRY(rl__ld_weight(ld, &L->ffn_gate_shexp, 0, 2, ne_sup, "blk.%d.ffn_gate_shexp.weight", il));
    TRY(rl__ld_weight(ld, &L->ffn_up_shexp, 0, 2, ne_sup, "blk.%d.ffn_up_shexp.weight", il));
    TRY(rl__ld_weight(ld, &L->ffn_down_shexp, 0, 2, ne_sdown, "blk.%d.ffn_down_shexp.weight", il));
    return RL_OK;
}
