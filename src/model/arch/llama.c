/*
 * llama.c - the "llama" architecture: Llama 1/2/3 and Mistral (Touvron et al. 2023;
 * Meta's Llama 3 report). Pre-norm decoder blocks:
 *
 *   h = x + Wo attn(rope(Wq rms(x)), rope(Wk rms(x)), Wv rms(x))
 *   x = h + Wdown (silu(Wgate rms(h)) * Wup rms(h))
 *
 * with grouped-query attention, adjacent-pair RoPE (llama3: rope_freqs divisors), and
 * an untied or tied output matrix. Optional biases are honoured where a file has them.
 * Mistral's sliding window is not applied: llama.cpp does not read it for this
 * architecture either, and the files llama.cpp's converter writes omit it.
 */
#include "../model.h"

static rl_status llama_load(rl_model *m, rl__loader *ld) {
    const rl__hparams *hp = &m->hp;
    if (hp->n_expert > 0)
        return rl__ld_fail(ld, RL_ERR_UNSUPPORTED,
                           "llama: mixture of experts (llama.expert_count = %d) is not "
                           "implemented yet",
                           hp->n_expert);
    if (hp->n_rot != hp->head_dim_k)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "llama.rope.dimension_count = %d, expected the head size %d",
                           hp->n_rot, hp->head_dim_k);
    if (hp->head_dim_k != hp->head_dim_v)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE,
                           "llama: key and value head sizes differ (%d, %d)", hp->head_dim_k,
                           hp->head_dim_v);
    rl_status st = rl__ld_embd_output(ld);
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        st = rl__ld_attn(ld, il);
        if (st == RL_OK) st = rl__ld_ffn(ld, il, false);
        if (st == RL_OK) st = rl__ld_rope_factors(ld, il);
    }
    return st;
}

static rl_status llama_forward(rl__fwd *f) {
    const rl_model *m = f->m;
    const rl__hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;

    float *x = rl__blk_embed(f, 0.0f);
    for (int il = 0; il < hp->n_layer; il++) {
        const rl__layer *L = &m->layers[il];
        size_t mark = rl__fwd_mark(f);
        int64_t n = f->n_tok;
        float *h = rl__op_rmsnorm(f, x, n, d, L->attn_norm, NULL);
        float *a = rl__blk_attn(f, il, h);
        if (il == hp->n_layer - 1) {
            /* only the tokens that want logits go on */
            n = rl__blk_select_out(f, x, d);
            rl__blk_select_out(f, a, d);
        }
        rl__op_add(f, x, a, n * d);
        rl__op_rmsnorm(f, x, n, d, L->ffn_norm, h);
        float *o = rl__blk_ffn(f, il, h, n, RL_GLU_SILU);
        rl__op_add(f, x, o, n * d);
        rl__fwd_release(f, mark);
    }
    rl__blk_output(f, x);
    return f->status;
}

const rl__arch rl__arch_llama = {
    .name = "llama",
    .rope_mode = RL_ROPE_NORMAL,
    .load = llama_load,
    .forward = llama_forward,
};
