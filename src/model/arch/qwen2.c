/*
 * qwen2.c - the "qwen2" architecture: Qwen1.5 and Qwen2 / Qwen2.5 (Qwen team, "Qwen2
 * Technical Report", 2024). Llama's pre-norm SwiGLU decoder with biases on the q, k and
 * v projections, NeoX-ordered RoPE (YaRN when rope.scaling.type says so), and usually
 * a tied output matrix.
 */
#include "../model.h"

static rl_status qwen2_load(rl_model *m, rl__loader *ld) {
    const rl__hparams *hp = &m->hp;
    rl_status st = rl__ld_check_heads(ld, true);
    if (st == RL_OK) st = rl__ld_embd_output(ld);
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        st = rl__ld_attn(ld, il);
        if (st == RL_OK) st = rl__ld_require_qkv_bias(ld, il);
        if (st == RL_OK) st = rl__ld_ffn(ld, il, false);
    }
    return st;
}

static rl_status qwen2_forward(rl__fwd *f) {
    const rl__decoder_opts o = {.act = RL_GLU_SILU};
    return rl__blk_decoder(f, &o);
}

const rl__arch rl__arch_qwen2 = {
    .name = "qwen2",
    .rope_mode = RL_ROPE_NEOX,
    .load = qwen2_load,
    .forward = qwen2_forward,
};
