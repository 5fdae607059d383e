/*
 * gemma2.c - the "gemma2" architecture: Gemma 2 (Gemma Team, "Gemma 2: Improving Open
 * Language Models at a Practical Size", 2024). Gemma's decoder (embeddings times
 * sqrt(n_embd), GeGLU, NeoX RoPE, tied output) with
 *  - local and global attention alternating: even layers see only the last
 *    attention.sliding_window positions (default 4096), odd layers everything; the
 *    local layers may have their own RoPE base (rope.freq_base_swa);
 *  - logit soft-capping c tanh(x / c) of the attention scores (attn_logit_softcapping,
 *    default 50) and of the final logits (final_logit_softcapping, default 30);
 *  - RMSNorms after the attention and the FFN, before each residual add
 *    (post_attention_norm, post_ffw_norm);
 *  - the attention scale 1/sqrt(query_pre_attn_scalar) of the released configs, which
 *    GGUF files do not carry: 1/sqrt(head_dim), and for the 27B model (46 layers)
 *    1/sqrt(n_embd / n_head), as llama.cpp derives it.
 */
#include "../model.h"

#include <math.h>

static rl_status gemma2_load(rl_model *m, rl__loader *ld) {
    rl__hparams *hp = &m->hp;
    rl_status st = rl__ld_check_heads(ld, true);
    hp->n_swa = 4096;
    hp->attn_softcap = 50.0f;
    hp->final_softcap = 30.0f;
    if (st == RL_OK) st = rl__ld_i32(ld, "attention.sliding_window", &hp->n_swa, false);
    if (st == RL_OK) st = rl__ld_f32(ld, "attn_logit_softcapping", &hp->attn_softcap, false);
    if (st == RL_OK) st = rl__ld_f32(ld, "final_logit_softcapping", &hp->final_softcap, false);
    if (st == RL_OK) st = rl__ld_f32(ld, "rope.freq_base_swa", &hp->rope_freq_base_swa, false);
    if (st != RL_OK) return st;
    if (hp->attn_softcap < 0.0f || hp->final_softcap < 0.0f)
        return rl__ld_fail(ld, RL_ERR_BAD_FILE, "gemma2: soft-capping values must not be negative");
    const int32_t scale_dim = hp->n_layer == 46 ? hp->n_embd / hp->n_head : hp->head_dim_k;
    hp->kq_scale = 1.0f / sqrtf((float)scale_dim);

    st = rl__ld_embd_output(ld);
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        rl__layer *L = &m->layers[il];
        L->swa = il % 2 == 0;
        st = rl__ld_attn(ld, il);
        if (st == RL_OK)
            st = rl__ld_vec(ld, &L->post_attn_norm, 0, hp->n_embd,
                            "blk.%d.post_attention_norm.weight", il);
        if (st == RL_OK) st = rl__ld_ffn(ld, il, false);
        if (st == RL_OK)
            st =
                rl__ld_vec(ld, &L->post_ffn_norm, 0, hp->n_embd, "blk.%d.post_ffw_norm.weight", il);
    }
    return st;
}

static rl_status gemma2_forward(rl__fwd *f) {
    const rl__decoder_opts o = {.embd_scale = sqrtf((float)f->m->hp.n_embd),
                                .act = RL_GLU_GELU_TANH};
    return rl__blk_decoder(f, &o);
}

const rl__arch rl__arch_gemma2 = {
    .name = "gemma2",
    .rope_mode = RL_ROPE_NEOX,
    .load = gemma2_load,
    .forward = gemma2_forward,
};
