/*
 * qwen2moe.c - the "qwen2moe" architecture: Qwen1.5-MoE and Qwen2-MoE (Qwen team, "Qwen2
 * Technical Report", 2024). Qwen2's attention (q/k/v biases, NeoX RoPE) with a
 * mixture-of-experts FFN: softmax over the router logits, the top expert_used_count
 * experts weighted by their probabilities as they are (no renormalization), plus a
 * shared expert every token passes through, scaled by sigmoid(ffn_gate_inp_shexp . h).
 * Expert sizes: expert_feed_forward_length (default feed_forward_length /
 * expert_used_count) and expert_shared_feed_forward_length (default
 * feed_forward_length), as llama.cpp reads them.
 */
#include "../model.h"

static rl_status qwen2moe_load(rl_model *m, rl__loader *ld) {
    rl__hparams *hp = &m->hp;
    rl_status st = rl__ld_check_heads(ld, true);
    if (st == RL_OK && (hp->n_expert <= 0 || hp->n_expert_used <= 0))
        st = rl__ld_fail(ld, RL_ERR_BAD_FILE,
                         "qwen2moe.expert_count and qwen2moe.expert_used_count must be "
                         "positive");
    if (st != RL_OK) return st;
    hp->n_ff_exp = hp->n_ff / hp->n_expert_used;
    hp->n_ff_shexp = hp->n_ff;
    st = rl__ld_i32(ld, "expert_feed_forward_length", &hp->n_ff_exp, false);
    if (st == RL_OK)
        st = rl__ld_i32(ld, "expert_shared_feed_forward_length", &hp->n_ff_shexp, false);
    if (st == RL_OK) st = rl__ld_embd_output(ld);
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        st = rl__ld_attn(ld, il);
        if (st == RL_OK) st = rl__ld_require_qkv_bias(ld, il);
        if (st == RL_OK) st = rl__ld_moe(ld, il, true);
    }
    return st;
}

static rl_status qwen2moe_forward(rl__fwd *f) {
    const rl__decoder_opts o = {.act = RL_GLU_SILU, .moe_norm_w = false};
    return rl__blk_decoder(f, &o);
}

const rl__arch rl__arch_qwen2moe = {
    .name = "qwen2moe",
    .rope_mode = RL_ROPE_NEOX,
    .load = qwen2moe_load,
    .forward = qwen2moe_forward,
};
