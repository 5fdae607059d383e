/*
 * llama.c - the "llama" architecture: Llama 1/2/3, Mistral and Mixtral (Touvron et al.
 * 2023; Meta's Llama 3 report; Jiang et al. 2024). Pre-norm decoder blocks:
 *
 *   h = x + Wo attn(rope(Wq rms(x)), rope(Wk rms(x)), Wv rms(x))
 *   x = h + Wdown (silu(Wgate rms(h)) * Wup rms(h))
 *
 * with grouped-query attention, adjacent-pair RoPE (llama3: rope_freqs divisors), and
 * an untied or tied output matrix. Optional biases are honoured where a file has them.
 * With llama.expert_count (Mixtral) the FFN is a mixture of experts: softmax over the
 * router logits, the top llama.expert_used_count experts with their weights
 * renormalized to sum 1, each expert of feed_forward_length rows.
 * Mistral's sliding window is not applied: llama.cpp does not read it for this
 * architecture either, and the files llama.cpp's converter writes omit it.
 */
#include "../model.h"

static rl_status llama_load(rl_model *m, rl__loader *ld) {
    rl__hparams *hp = &m->hp;
    rl_status st = rl__ld_check_heads(ld, true);
    if (st == RL_OK) st = rl__ld_embd_output(ld);
    hp->n_ff_exp = hp->n_ff;
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        st = rl__ld_attn(ld, il);
        if (st == RL_OK)
            st = hp->n_expert > 0 ? rl__ld_moe(ld, il, false) : rl__ld_ffn(ld, il, false);
        if (st == RL_OK) st = rl__ld_rope_factors(ld, il);
    }
    return st;
}

static rl_status llama_forward(rl__fwd *f) {
    const rl__decoder_opts o = {.act = RL_GLU_SILU, .moe_norm_w = true};
    return rl__blk_decoder(f, &o);
}

const rl__arch rl__arch_llama = {
    .name = "llama",
    .rope_mode = RL_ROPE_NORMAL,
    .load = llama_load,
    .forward = llama_forward,
};
