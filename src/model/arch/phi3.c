/*
 * phi3.c - the "phi3" architecture: Phi-3 and Phi-3.5 (Abdin et al. 2024, "Phi-3
 * Technical Report"). Llama's pre-norm SwiGLU decoder with the q, k, v projections fused
 * into one attn_qkv matrix (rows q; k; v) and the FFN's gate and up fused into one
 * ffn_up of 2 * n_ff rows (gate first), NeoX RoPE, and the LongRoPE / SuRoPE factors of
 * the long-context models (rope_factors_short below the original context,
 * rope_factors_long above it, chosen once per context; rope.scaling.attn_factor scales
 * q and k). The sliding window the converter writes (attention.sliding_window) is not
 * applied: llama.cpp disables it for Phi-3, and the goldens follow llama.cpp.
 */
#include "../model.h"

static rl_status phi3_load(rl_model *m, rl__loader *ld) {
    const rl__hparams *hp = &m->hp;
    rl_status st = rl__ld_check_heads(ld, false);
    if (st == RL_OK) st = rl__ld_embd_output(ld);
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        st = rl__ld_attn(ld, il);
        if (st == RL_OK) st = rl__ld_ffn(ld, il, true);
        if (st == RL_OK) st = rl__ld_rope_factors(ld, il);
    }
    return st;
}

static rl_status phi3_forward(rl__fwd *f) {
    const rl__decoder_opts o = {.act = RL_GLU_SILU};
    return rl__blk_decoder(f, &o);
}

const rl__arch rl__arch_phi3 = {
    .name = "phi3",
    .rope_mode = RL_ROPE_NEOX,
    .load = phi3_load,
    .forward = phi3_forward,
};
