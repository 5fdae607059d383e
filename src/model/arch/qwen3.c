/*
 * qwen3.c - the "qwen3" architecture: dense Qwen3 (Qwen team, "Qwen3 Technical Report",
 * 2025). Qwen2's decoder without the q/k/v biases and with an RMSNorm over each head
 * of q and k (attn_q_norm / attn_k_norm, one weight of head_dim shared by all heads)
 * before RoPE; the head size (attention.key_length) need not be n_embd / n_head.
 */
#include "../model.h"

static rl_status qwen3_load(rl_model *m, rl__loader *ld) {
    const rl__hparams *hp = &m->hp;
    rl_status st = rl__ld_check_heads(ld, true);
    if (st == RL_OK) st = rl__ld_embd_output(ld);
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        rl__layer *L = &m->layers[il];
        st = rl__ld_attn(ld, il);
        if (st == RL_OK)
            st = rl__ld_vec(ld, &L->q_norm, 0, hp->head_dim_k, "blk.%d.attn_q_norm.weight", il);
        if (st == RL_OK)
            st = rl__ld_vec(ld, &L->k_norm, 0, hp->head_dim_k, "blk.%d.attn_k_norm.weight", il);
        if (st == RL_OK) st = rl__ld_ffn(ld, il, false);
    }
    return st;
}

static rl_status qwen3_forward(rl__fwd *f) {
    const rl__decoder_opts o = {.act = RL_GLU_SILU};
    return rl__blk_decoder(f, &o);
}

const rl__arch rl__arch_qwen3 = {
    .name = "qwen3",
    .rope_mode = RL_ROPE_NEOX,
    .load = qwen3_load,
    .forward = qwen3_forward,
};
