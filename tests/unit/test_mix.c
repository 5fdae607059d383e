/*
 * test_mix.c - the per-tensor type policy of the quantization mixes (src/quant/mix.c),
 * table-driven: for model layouts (dense llama with GQA, tied embeddings, 8-expert MoE,
 * the 70B class, Falcon, odd row lengths) and mixes, which type each tensor gets. The
 * expected values follow llama.cpp's llama_tensor_get_type (src/llama-quant.cpp); the
 * same rules were checked against llama.cpp's own llama_model_quantize on real files.
 */
#include "quant/mix.h"
#include "test.h"

#define MAXT 1200

typedef struct model {
    rl__mix_tensor t[MAXT];
    char names[MAXT][64];
    size_t n;
    rl__mix_model m;
    rl_type types[MAXT];
    bool fallback[MAXT];
} model;

static void add(model *M, const char *name, int64_t ne0, int64_t ne1, int64_t ne2) {
    size_t i = M->n++;
    snprintf(M->names[i], sizeof M->names[i], "%s", name);
    M->t[i] = (rl__mix_tensor){M->names[i], RL_TYPE_F32, {ne0, ne1, ne2, 1}};
}

static void addl(model *M, int il, const char *what, int64_t ne0, int64_t ne1, int64_t ne2) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", il, what);
    add(M, name, ne0, ne1, ne2);
}

typedef struct layout {
    const char *arch;
    int n_layer, n_head, n_head_kv, n_expert;
    int64_t n_embd, n_ff, n_vocab;
    bool tied;
} layout;

/* Tensors as llama.cpp's converter names them, in file (not visiting) order, with the
 * expert tensors of MoE layers listed in reverse layer order to show that their rules
 * read the layer from the name. */
static void build(model *M, const layout *L) {
    memset(M, 0, sizeof *M);
    snprintf(M->m.arch, sizeof M->m.arch, "%s", L->arch);
    M->m.n_layer = L->n_layer;
    M->m.n_head = L->n_head;
    M->m.n_head_kv = L->n_head_kv;
    M->m.n_expert = L->n_expert;
    const int64_t E = L->n_embd, hd = 128, F = L->n_ff;
    add(M, "token_embd.weight", E, L->n_vocab, 1);
    for (int il = 0; il < L->n_layer; il++) {
        addl(M, il, "attn_norm.weight", E, 1, 1);
        addl(M, il, "attn_q.weight", E, L->n_head * hd, 1);
        addl(M, il, "attn_k.weight", E, L->n_head_kv * hd, 1);
        addl(M, il, "attn_v.weight", E, L->n_head_kv * hd, 1);
        addl(M, il, "attn_output.weight", L->n_head * hd, E, 1);
        addl(M, il, "ffn_norm.weight", E, 1, 1);
        if (!L->n_expert) {
            addl(M, il, "ffn_gate.weight", E, F, 1);
            addl(M, il, "ffn_up.weight", E, F, 1);
            addl(M, il, "ffn_down.weight", F, E, 1);
        } else {
            addl(M, il, "ffn_gate_inp.weight", E, L->n_expert, 1);
        }
    }
    for (int il = L->n_layer - 1; L->n_expert && il >= 0; il--) {
        addl(M, il, "ffn_gate_exps.weight", E, F, L->n_expert);
        addl(M, il, "ffn_up_exps.weight", E, F, L->n_expert);
        addl(M, il, "ffn_down_exps.weight", F, E, L->n_expert);
    }
    add(M, "output_norm.weight", E, 1, 1);
    if (!L->tied) add(M, "output.weight", E, L->n_vocab, 1);
}

static rl_status plan(model *M, const char *mix_name, bool imatrix) {
    rl__mix mix;
    if (rl__mix_resolve(mix_name, &mix) != RL_OK) return RL_ERR_NOT_FOUND;
    rl__mix_opts o = {.has_imatrix = imatrix, .output_type = RL_TYPE_COUNT,
                      .token_embd_type = RL_TYPE_COUNT};
    char err[256];
    return rl__mix_plan(&mix, &M->m, &o, M->t, M->n, M->types, M->fallback, err, sizeof err);
}

static rl_type type_of(const model *M, const char *name) {
    for (size_t i = 0; i < M->n; i++)
        if (!strcmp(M->t[i].name, name)) return M->types[i];
    return RL_TYPE_COUNT;
}

static rl_type ltype(const model *M, int il, const char *what) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", il, what);
    return type_of(M, name);
}

#define CHECK_TYPE(M, name, want)                                                          \
    CHECKF(type_of(M, name) == (want), "%s: %s, expected %s", name,                        \
           rl_type_name(type_of(M, name)), rl_type_name(want))
#define CHECK_LTYPE(M, il, what, want)                                                     \
    CHECKF(ltype(M, il, what) == (want), "layer %d %s: %s, expected %s", il, what,         \
           rl_type_name(ltype(M, il, what)), rl_type_name(want))

/* llama.cpp's "more bits" layers of an n-layer model: the first and last eighth and
 * every third layer in between. Written out for 32 layers to not restate the formula. */
static const int g_more32[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};

static bool in_set(int il, const int *set, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (set[i] == il) return true;
    return false;
}

static model g_m; /* large: not on the stack */

static const layout L8B = {"llama", 32, 32, 8, 0, 4096, 14336, 128256, false};

/* A Llama-3-8B-like model (32 layers, GQA 4) with Q4_K_M: attn_v and ffn_down of the
 * "more bits" layers get Q6_K, everything else Q4_K, output Q6_K. */
TEST(llama32_q4_k_m) {
    build(&g_m, &L8B);
    CHECK(plan(&g_m, "Q4_K_M", false) == RL_OK);
    CHECK_TYPE(&g_m, "output.weight", RL_TYPE_Q6_K);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_Q4_K);
    CHECK_TYPE(&g_m, "output_norm.weight", RL_TYPE_F32);
    int n_q6 = 0;
    for (int il = 0; il < 32; il++) {
        rl_type more = in_set(il, g_more32, RL_ARRAY_LEN(g_more32)) ? RL_TYPE_Q6_K : RL_TYPE_Q4_K;
        CHECK_LTYPE(&g_m, il, "attn_v.weight", more);
        CHECK_LTYPE(&g_m, il, "ffn_down.weight", more);
        CHECK_LTYPE(&g_m, il, "attn_q.weight", RL_TYPE_Q4_K);
        CHECK_LTYPE(&g_m, il, "attn_k.weight", RL_TYPE_Q4_K);
        CHECK_LTYPE(&g_m, il, "attn_output.weight", RL_TYPE_Q4_K);
        CHECK_LTYPE(&g_m, il, "ffn_gate.weight", RL_TYPE_Q4_K);
        CHECK_LTYPE(&g_m, il, "ffn_up.weight", RL_TYPE_Q4_K);
        CHECK_LTYPE(&g_m, il, "attn_norm.weight", RL_TYPE_F32);
        n_q6 += ltype(&g_m, il, "attn_v.weight") == RL_TYPE_Q6_K;
    }
    CHECK_EQ_INT(n_q6, 16);
    for (size_t i = 0; i < g_m.n; i++) CHECK(!g_m.fallback[i]);
}

/* Other mixes on the same model: one row per (mix, tensor, layer) with the expected type. */
typedef struct layer_case {
    const char *mix;
    const char *what; /* tensor name after "blk.N." or a whole name */
    int layer;        /* -1: a whole name */
    rl_type want;
} layer_case;

static const layer_case g_llama_cases[] = {
    /* Q4_K_S: attn_v of the first 4 attn_v tensors and ffn_down of the first 4 layers Q5_K */
    {"Q4_K_S", "attn_v.weight", 3, RL_TYPE_Q5_K},
    {"Q4_K_S", "attn_v.weight", 4, RL_TYPE_Q4_K},
    {"Q4_K_S", "ffn_down.weight", 3, RL_TYPE_Q5_K},
    {"Q4_K_S", "ffn_down.weight", 4, RL_TYPE_Q4_K},
    {"Q4_K_S", "output.weight", -1, RL_TYPE_Q6_K},
    /* Q3_K_M: attn_v Q5_K for the first two, then Q4_K; ffn_down Q5_K below n/16, then
     * Q4_K; attn_output Q4_K */
    {"Q3_K_M", "attn_v.weight", 1, RL_TYPE_Q5_K},
    {"Q3_K_M", "attn_v.weight", 2, RL_TYPE_Q4_K},
    {"Q3_K_M", "ffn_down.weight", 1, RL_TYPE_Q5_K},
    {"Q3_K_M", "ffn_down.weight", 2, RL_TYPE_Q4_K},
    {"Q3_K_M", "attn_output.weight", 7, RL_TYPE_Q4_K},
    {"Q3_K_M", "attn_q.weight", 7, RL_TYPE_Q3_K},
    {"Q3_K", "attn_v.weight", 0, RL_TYPE_Q5_K}, /* alias of Q3_K_M */
    /* Q3_K_L: attn_v, ffn_down, attn_output Q5_K */
    {"Q3_K_L", "attn_v.weight", 20, RL_TYPE_Q5_K},
    {"Q3_K_L", "ffn_down.weight", 20, RL_TYPE_Q5_K},
    {"Q3_K_L", "attn_output.weight", 20, RL_TYPE_Q5_K},
    {"Q3_K_L", "ffn_up.weight", 20, RL_TYPE_Q3_K},
    {"Q3_K_S", "attn_v.weight", 0, RL_TYPE_Q3_K},
    {"Q3_K_S", "ffn_down.weight", 0, RL_TYPE_Q3_K},
    /* Q2_K with GQA 4: attn_v Q4_K; ffn_down and attn_output Q3_K */
    {"Q2_K", "attn_v.weight", 10, RL_TYPE_Q4_K},
    {"Q2_K", "ffn_down.weight", 10, RL_TYPE_Q3_K},
    {"Q2_K", "attn_output.weight", 10, RL_TYPE_Q3_K},
    {"Q2_K", "attn_q.weight", 10, RL_TYPE_Q2_K},
    {"Q2_K", "output.weight", -1, RL_TYPE_Q6_K},
    /* Q5_K_M: like Q4_K_M one step up */
    {"Q5_K_M", "attn_v.weight", 6, RL_TYPE_Q6_K},
    {"Q5_K_M", "attn_v.weight", 7, RL_TYPE_Q5_K},
    {"Q5_K_M", "ffn_down.weight", 31, RL_TYPE_Q6_K},
    {"Q5_K_S", "ffn_down.weight", 0, RL_TYPE_Q5_K},
    {"Q6_K", "attn_q.weight", 5, RL_TYPE_Q6_K},
    {"Q6_K", "output.weight", -1, RL_TYPE_Q6_K},
    /* legacy types: output Q6_K, the rest the base type (no imatrix) */
    {"Q4_0", "output.weight", -1, RL_TYPE_Q6_K},
    {"Q4_0", "ffn_down.weight", 0, RL_TYPE_Q4_0},
    {"Q4_0", "token_embd.weight", -1, RL_TYPE_Q4_0},
    {"Q5_1", "attn_v.weight", 0, RL_TYPE_Q5_1},
    {"Q8_0", "output.weight", -1, RL_TYPE_Q8_0},
    {"Q8_0", "attn_v.weight", 0, RL_TYPE_Q8_0},
    /* IQ4_NL / IQ4_XS with GQA >= 4: attn_v Q5_K; ffn_down of the first eighth Q5_K */
    {"IQ4_NL", "attn_v.weight", 9, RL_TYPE_Q5_K},
    {"IQ4_NL", "ffn_down.weight", 3, RL_TYPE_Q5_K},
    {"IQ4_NL", "ffn_down.weight", 4, RL_TYPE_IQ4_NL},
    {"IQ4_XS", "ffn_up.weight", 4, RL_TYPE_IQ4_XS},
    /* IQ3 family */
    {"IQ3_M", "attn_v.weight", 9, RL_TYPE_Q4_K},
    {"IQ3_M", "attn_output.weight", 9, RL_TYPE_Q4_K},
    {"IQ3_M", "ffn_down.weight", 3, RL_TYPE_Q4_K},
    {"IQ3_M", "ffn_down.weight", 4, RL_TYPE_IQ3_S},
    {"IQ3_S", "attn_v.weight", 9, RL_TYPE_Q4_K},
    {"IQ3_XS", "attn_q.weight", 9, RL_TYPE_IQ3_XXS},
    {"IQ3_XS", "attn_k.weight", 9, RL_TYPE_IQ3_XXS},
    {"IQ3_XS", "ffn_gate.weight", 3, RL_TYPE_IQ3_S},
    {"IQ3_XS", "ffn_gate.weight", 4, RL_TYPE_IQ3_XXS},
    {"IQ3_XS", "ffn_up.weight", 27, RL_TYPE_IQ3_XXS},
    {"IQ3_XS", "ffn_up.weight", 28, RL_TYPE_IQ3_S},
    /* the 1-2 bit i-quants: token_embd Q2_K or IQ3_S, output Q5_K, attn_v Q4_K (GQA 4) */
    {"IQ2_XXS", "token_embd.weight", -1, RL_TYPE_Q2_K},
    {"IQ2_XXS", "output.weight", -1, RL_TYPE_Q5_K},
    {"IQ2_XXS", "attn_v.weight", 30, RL_TYPE_Q4_K},
    {"IQ2_XXS", "ffn_down.weight", 3, RL_TYPE_Q2_K},
    {"IQ2_XXS", "ffn_down.weight", 4, RL_TYPE_IQ2_XXS},
    {"IQ2_M", "token_embd.weight", -1, RL_TYPE_IQ3_S},
    {"IQ2_M", "ffn_down.weight", 0, RL_TYPE_IQ3_S},
    {"IQ2_M", "attn_output.weight", 0, RL_TYPE_IQ3_S},
    {"IQ2_M", "attn_q.weight", 0, RL_TYPE_IQ2_S},
    {"IQ2_S", "attn_q.weight", 0, RL_TYPE_IQ2_XS},
    {"IQ1_S", "attn_output.weight", 0, RL_TYPE_IQ2_XXS},
    {"IQ1_M", "attn_q.weight", 0, RL_TYPE_IQ1_M},
    /* ternary and small types: token_embd Q4_K */
    {"TQ1_0", "token_embd.weight", -1, RL_TYPE_Q4_K},
    {"TQ2_0", "attn_q.weight", 0, RL_TYPE_TQ2_0},
    {"Q2_0", "token_embd.weight", -1, RL_TYPE_Q4_K},
    /* float mixes: every quantizable tensor, no special cases */
    {"F16", "output.weight", -1, RL_TYPE_F16},
    {"F16", "attn_norm.weight", 0, RL_TYPE_F32},
    {"BF16", "attn_v.weight", 0, RL_TYPE_BF16},
    /* MXFP4_MOE on a dense model: Q8_0 everywhere */
    {"MXFP4_MOE", "ffn_up.weight", 0, RL_TYPE_Q8_0},
    {"MXFP4_MOE", "output.weight", -1, RL_TYPE_Q8_0},
};

static rl_type case_type(const model *M, const layer_case *c) {
    return c->layer < 0 ? type_of(M, c->what) : ltype(M, c->layer, c->what);
}

TEST(llama32_mixes) {
    for (size_t i = 0; i < RL_ARRAY_LEN(g_llama_cases); i++) {
        const layer_case *c = &g_llama_cases[i];
        build(&g_m, &L8B);
        CHECKF(plan(&g_m, c->mix, false) == RL_OK, "%s", c->mix);
        rl_type got = case_type(&g_m, c);
        CHECKF(got == c->want, "%s: layer %d %s: %s, expected %s", c->mix, c->layer, c->what,
               rl_type_name(got), rl_type_name(c->want));
    }
}

/* With an importance matrix some choices change (and without one, some refuse). */
TEST(imatrix_changes_choices) {
    build(&g_m, &L8B);
    CHECK(plan(&g_m, "Q4_0", true) == RL_OK);
    CHECK_LTYPE(&g_m, 3, "ffn_down.weight", RL_TYPE_Q4_1);
    CHECK_LTYPE(&g_m, 4, "ffn_down.weight", RL_TYPE_Q4_0);
    CHECK(plan(&g_m, "Q5_0", true) == RL_OK);
    CHECK_LTYPE(&g_m, 0, "ffn_down.weight", RL_TYPE_Q5_1);
    CHECK(plan(&g_m, "IQ4_NL", true) == RL_OK);
    CHECK_LTYPE(&g_m, 0, "ffn_down.weight", RL_TYPE_IQ4_NL);
    CHECK(plan(&g_m, "IQ3_XXS", true) == RL_OK);
    CHECK_LTYPE(&g_m, 0, "ffn_down.weight", RL_TYPE_IQ3_XXS);
    CHECK_LTYPE(&g_m, 0, "attn_q.weight", RL_TYPE_IQ2_S);
    CHECK_LTYPE(&g_m, 0, "attn_v.weight", RL_TYPE_Q4_K); /* GQA 4 */
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_IQ3_S);
    CHECK(plan(&g_m, "IQ3_XXS", false) == RL_OK);
    CHECK_LTYPE(&g_m, 0, "ffn_down.weight", RL_TYPE_Q4_K);
    CHECK_LTYPE(&g_m, 4, "ffn_down.weight", RL_TYPE_Q3_K);

    rl__mix m;
    CHECK(rl__mix_resolve("Q2_K_S", &m) == RL_OK);
    CHECK(rl__mix_requires_imatrix(&m, "blk.0.attn_q.weight", RL_TYPE_Q2_K));
    CHECK(!rl__mix_requires_imatrix(&m, "token_embd.weight", RL_TYPE_Q2_K));
    CHECK(rl__mix_resolve("Q2_K", &m) == RL_OK);
    CHECK(!rl__mix_requires_imatrix(&m, "blk.0.attn_q.weight", RL_TYPE_Q2_K));
    CHECK(rl__mix_requires_imatrix(&m, "blk.0.attn_q.weight", RL_TYPE_IQ2_XS));
    CHECK(!rl__mix_requires_imatrix(&m, "output.weight", RL_TYPE_IQ1_S));
    CHECK(!rl__mix_requires_imatrix(&m, "blk.0.attn_q.weight", RL_TYPE_IQ3_S));
}

/* Without KV-head grouping (GQA 1) the low-bit mixes keep attn_v smaller. */
TEST(no_gqa) {
    layout L = L8B;
    L.n_head_kv = 32;
    build(&g_m, &L);
    CHECK(plan(&g_m, "Q2_K", false) == RL_OK);
    CHECK_LTYPE(&g_m, 5, "attn_v.weight", RL_TYPE_Q3_K);
    CHECK(plan(&g_m, "IQ4_XS", false) == RL_OK);
    CHECK_LTYPE(&g_m, 5, "attn_v.weight", RL_TYPE_IQ4_XS);
    CHECK(plan(&g_m, "IQ2_XS", true) == RL_OK);
    CHECK_LTYPE(&g_m, 5, "attn_v.weight", RL_TYPE_Q2_K);
    CHECK(plan(&g_m, "IQ2_S", true) == RL_OK);
    CHECK_LTYPE(&g_m, 5, "attn_v.weight", RL_TYPE_IQ3_S);
    CHECK(plan(&g_m, "IQ3_XXS", false) == RL_OK);
    CHECK_LTYPE(&g_m, 5, "attn_v.weight", RL_TYPE_IQ3_S);
    CHECK(plan(&g_m, "IQ3_XXS", true) == RL_OK);
    CHECK_LTYPE(&g_m, 5, "attn_v.weight", RL_TYPE_IQ3_XXS);
}

/* Tied embeddings (no output.weight): token_embd takes the output tensor's rule. */
TEST(tied_embeddings) {
    layout L = {"qwen2", 24, 16, 2, 0, 1024, 2816, 151936, true};
    build(&g_m, &L);
    CHECK_TYPE(&g_m, "output.weight", RL_TYPE_COUNT); /* absent */
    CHECK(plan(&g_m, "Q4_K_M", false) == RL_OK);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_Q6_K);
    CHECK(plan(&g_m, "Q8_0", false) == RL_OK);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_Q8_0);
    CHECK(plan(&g_m, "IQ2_XXS", true) == RL_OK);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_Q5_K);
    CHECK(plan(&g_m, "MXFP4_MOE", false) == RL_OK);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_Q8_0);
    /* untied, the same mixes leave token_embd at the base type */
    L.tied = false;
    build(&g_m, &L);
    CHECK(plan(&g_m, "Q4_K_M", false) == RL_OK);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_Q4_K);
    CHECK_TYPE(&g_m, "output.weight", RL_TYPE_Q6_K);
}

/* A Mixtral-like model (8 experts, 32 layers, GQA 4): attn_v and attn_k Q8_0, attn_output
 * Q5_K; ffn_down_exps by the layer in its name; the router stays F32. */
TEST(moe8) {
    layout L = {"llama", 32, 32, 8, 8, 4096, 14336, 32000, false};
    build(&g_m, &L);
    CHECK(plan(&g_m, "Q4_K_M", false) == RL_OK);
    for (int il = 0; il < 32; il++) {
        CHECK_LTYPE(&g_m, il, "attn_v.weight", RL_TYPE_Q8_0);
        CHECK_LTYPE(&g_m, il, "attn_k.weight", RL_TYPE_Q8_0);
        CHECK_LTYPE(&g_m, il, "attn_output.weight", RL_TYPE_Q5_K);
        CHECK_LTYPE(&g_m, il, "attn_q.weight", RL_TYPE_Q4_K);
        CHECK_LTYPE(&g_m, il, "ffn_gate_inp.weight", RL_TYPE_F32);
        CHECK_LTYPE(&g_m, il, "ffn_down_exps.weight",
                    in_set(il, g_more32, RL_ARRAY_LEN(g_more32)) ? RL_TYPE_Q6_K : RL_TYPE_Q4_K);
        CHECK_LTYPE(&g_m, il, "ffn_up_exps.weight", RL_TYPE_Q4_K);
    }
    CHECK(plan(&g_m, "Q3_K_L", false) == RL_OK);
    CHECK_LTYPE(&g_m, 3, "attn_output.weight", RL_TYPE_Q3_K); /* Q3_K_L is not bumped */
    CHECK_LTYPE(&g_m, 3, "attn_v.weight", RL_TYPE_Q8_0);
    CHECK(plan(&g_m, "IQ3_M", false) == RL_OK);
    CHECK_LTYPE(&g_m, 6, "ffn_down_exps.weight", RL_TYPE_Q4_K); /* more bits with 8 experts */
    CHECK_LTYPE(&g_m, 7, "ffn_down_exps.weight", RL_TYPE_IQ3_S);
    CHECK(plan(&g_m, "IQ2_XS", true) == RL_OK);
    CHECK_LTYPE(&g_m, 3, "attn_k.weight", RL_TYPE_Q4_K);
    CHECK_LTYPE(&g_m, 3, "attn_output.weight", RL_TYPE_Q5_K);
    CHECK_LTYPE(&g_m, 3, "attn_v.weight", RL_TYPE_Q4_K);
    /* MXFP4_MOE: experts MXFP4, everything else Q8_0 */
    CHECK(plan(&g_m, "MXFP4_MOE", false) == RL_OK);
    CHECK_LTYPE(&g_m, 0, "ffn_up_exps.weight", RL_TYPE_MXFP4);
    CHECK_LTYPE(&g_m, 0, "attn_q.weight", RL_TYPE_Q8_0);
    CHECK_TYPE(&g_m, "output.weight", RL_TYPE_Q8_0);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_Q8_0);
}

/* MoE rules read "blk.N." from the name: without one, or out of range, the plan fails. */
TEST(moe_bad_layer) {
    layout L = {"qwen2moe", 4, 16, 4, 4, 2048, 1408, 1000, false};
    build(&g_m, &L);
    snprintf(g_m.names[g_m.n], 64, "ffn_down_exps.weight");
    g_m.t[g_m.n] = (rl__mix_tensor){g_m.names[g_m.n], RL_TYPE_F32, {1408, 2048, 4, 1}};
    g_m.n++;
    rl__mix mix;
    CHECK(rl__mix_resolve("Q4_K_M", &mix) == RL_OK);
    rl__mix_opts o = {.output_type = RL_TYPE_COUNT, .token_embd_type = RL_TYPE_COUNT};
    char err[256] = "";
    CHECK(rl__mix_plan(&mix, &g_m.m, &o, g_m.t, g_m.n, g_m.types, NULL, err, sizeof err) ==
          RL_ERR_INVALID_ARG);
    CHECKF(strstr(err, "ffn_down_exps.weight") && strstr(err, "layer"), "%s", err);
    snprintf(g_m.names[g_m.n - 1], 64, "blk.9.ffn_down_exps.weight");
    CHECK(rl__mix_plan(&mix, &g_m.m, &o, g_m.t, g_m.n, g_m.types, NULL, err, sizeof err) ==
          RL_ERR_INVALID_ARG);
    CHECKF(strstr(err, "layer 9 outside"), "%s", err);
}

/* The 70B class (llama, 80 layers, grouped KV heads): attn_v that would be Q3_K/Q4_K
 * becomes Q5_K. With as many KV heads as heads (65B) it does not. */
TEST(class_70b) {
    layout L = {"llama", 80, 64, 8, 0, 8192, 28672, 128256, false};
    build(&g_m, &L);
    CHECK(plan(&g_m, "Q4_K_M", false) == RL_OK);
    CHECK_LTYPE(&g_m, 11, "attn_v.weight", RL_TYPE_Q5_K); /* not a more-bits layer */
    CHECK_LTYPE(&g_m, 12, "attn_v.weight", RL_TYPE_Q6_K); /* (12 - 10) % 3 == 2 */
    CHECK_LTYPE(&g_m, 11, "attn_q.weight", RL_TYPE_Q4_K);
    CHECK(plan(&g_m, "Q3_K_S", false) == RL_OK);
    CHECK_LTYPE(&g_m, 40, "attn_v.weight", RL_TYPE_Q5_K);
    L.n_head_kv = 64;
    build(&g_m, &L);
    CHECK(plan(&g_m, "Q3_K_S", false) == RL_OK);
    CHECK_LTYPE(&g_m, 40, "attn_v.weight", RL_TYPE_Q3_K);
    /* qwen2 with 80 layers is in the class whatever its heads */
    L.arch = "qwen2";
    build(&g_m, &L);
    CHECK(plan(&g_m, "Q3_K_S", false) == RL_OK);
    CHECK_LTYPE(&g_m, 40, "attn_v.weight", RL_TYPE_Q5_K);
}

/* Falcon: output always Q8_0; its own ffn_down and attn_output rules. */
TEST(falcon) {
    layout L = {"falcon", 32, 72, 1, 0, 4608, 18432, 65024, false};
    build(&g_m, &L);
    CHECK(plan(&g_m, "Q4_K_M", false) == RL_OK);
    CHECK_TYPE(&g_m, "output.weight", RL_TYPE_Q8_0);
    CHECK_LTYPE(&g_m, 1, "ffn_down.weight", RL_TYPE_Q6_K); /* i < n/16 */
    CHECK_LTYPE(&g_m, 2, "ffn_down.weight", RL_TYPE_Q5_K); /* more bits */
    CHECK_LTYPE(&g_m, 4, "ffn_down.weight", RL_TYPE_Q4_K);
    CHECK(plan(&g_m, "Q3_K_L", false) == RL_OK);
    CHECK_LTYPE(&g_m, 4, "attn_output.weight", RL_TYPE_Q4_K);
    CHECK_LTYPE(&g_m, 4, "ffn_down.weight", RL_TYPE_Q4_K);
    CHECK(plan(&g_m, "Q3_K_M", false) == RL_OK);
    CHECK_LTYPE(&g_m, 4, "ffn_down.weight", RL_TYPE_Q3_K); /* not more bits */
    CHECK_LTYPE(&g_m, 6, "ffn_down.weight", RL_TYPE_Q4_K);
}

/* Row lengths that are not a multiple of the block size fall back. */
TEST(fallbacks) {
    static const struct {
        const char *mix;
        int64_t ne0;
        const char *name;
        rl_type want;
        bool fell;
    } cases[] = {
        {"Q4_K_M", 896, "blk.0.attn_q.weight", RL_TYPE_Q5_0, true},   /* 896 = 3.5 * 256 */
        {"Q4_K_M", 896, "output.weight", RL_TYPE_Q8_0, false},        /* output rule first */
        {"Q4_K_M", 896, "blk.0.ffn_up.weight", RL_TYPE_Q5_0, true},
        {"Q5_K_S", 896, "blk.0.attn_q.weight", RL_TYPE_Q5_1, true},
        {"Q6_K", 896, "blk.0.attn_q.weight", RL_TYPE_Q8_0, true},
        {"Q3_K_S", 896, "blk.0.attn_q.weight", RL_TYPE_Q4_0, true},
        {"Q2_K", 896, "blk.0.attn_q.weight", RL_TYPE_Q4_0, true},
        {"IQ4_XS", 896, "blk.0.attn_q.weight", RL_TYPE_IQ4_NL, true},
        {"TQ1_0", 896, "blk.0.attn_q.weight", RL_TYPE_Q4_0, true},
        {"Q4_K_M", 40, "blk.0.attn_q.weight", RL_TYPE_F16, true},     /* not even 32 */
        {"Q4_0", 40, "blk.0.attn_q.weight", RL_TYPE_F16, true},
        {"Q4_0", 96, "blk.0.attn_q.weight", RL_TYPE_Q4_0, false},
        {"Q8_0", 40, "output.weight", RL_TYPE_F16, true},
        {"F16", 40, "blk.0.attn_q.weight", RL_TYPE_F16, false},      /* no blocks */
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        memset(&g_m, 0, sizeof g_m);
        snprintf(g_m.m.arch, sizeof g_m.m.arch, "llama");
        g_m.m.n_layer = 1;
        g_m.m.n_head = g_m.m.n_head_kv = 1;
        add(&g_m, cases[i].name, cases[i].ne0, 64, 1);
        if (strcmp(cases[i].name, "output.weight")) add(&g_m, "output.weight", 256, 64, 1);
        CHECKF(plan(&g_m, cases[i].mix, false) == RL_OK, "%s", cases[i].mix);
        CHECKF(g_m.types[0] == cases[i].want && g_m.fallback[0] == cases[i].fell,
               "%s %s [%lld]: %s%s, expected %s%s", cases[i].mix, cases[i].name,
               (long long)cases[i].ne0, rl_type_name(g_m.types[0]),
               g_m.fallback[0] ? " (fallback)" : "", rl_type_name(cases[i].want),
               cases[i].fell ? " (fallback)" : "");
    }
    /* a 64- or 128-element type without a fallback of its own cannot take such rows */
    memset(&g_m, 0, sizeof g_m);
    snprintf(g_m.m.arch, sizeof g_m.m.arch, "llama");
    add(&g_m, "blk.0.attn_q.weight", 96, 64, 1);
    CHECK(plan(&g_m, "Q1_0", false) == RL_ERR_INVALID_ARG);
    CHECK(plan(&g_m, "NVFP4", false) == RL_ERR_INVALID_ARG);
}

/* Which tensors are converted at all. */
TEST(allows) {
    static const struct {
        const char *name;
        int64_t ne[4];
        bool want;
    } cases[] = {
        {"blk.0.attn_q.weight", {256, 256, 1, 1}, true},
        {"blk.0.ffn_up_exps.weight", {256, 256, 8, 1}, true},
        {"token_embd.weight", {256, 1000, 1, 1}, true},
        {"blk.0.attn_norm.weight", {256, 1, 1, 1}, false},     /* 1-D */
        {"blk.0.attn_q.weight", {256, 1, 1, 1}, false},        /* [256, 1] counts as 1-D */
        {"blk.0.attn_q_norm.weight", {64, 64, 1, 1}, false},   /* a norm, even 2-D */
        {"blk.0.attn_q.bias", {256, 256, 1, 1}, false},        /* not a weight */
        {"blk.0.ffn_gate_inp.weight", {256, 8, 1, 1}, false},  /* the router */
        {"blk.0.ffn_gate_inp_shexp.weight", {256, 8, 1, 1}, true},
        {"position_embd.weight", {256, 512, 1, 1}, false},
        {"token_types.weight", {256, 2, 1, 1}, false},
        {"blk.0.ssm_conv1d.weight", {4, 256, 1, 1}, false},
        {"blk.0.time_mix_w1.weight", {256, 256, 1, 1}, false},
        {"v.blk.0.attn_q.weight", {256, 256, 1, 1}, true},
        {"v.patch_embd.weight", {14, 14, 3, 1024}, false},
        {"weight", {32, 32, 1, 1}, true},
        {"eight", {32, 32, 1, 1}, false},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++)
        CHECKF(rl__mix_allows(cases[i].name, cases[i].ne) == cases[i].want, "%s",
               cases[i].name);
}

/* Visiting order: by layer number (numerically), then by name; non-layer tensors first. */
TEST(order) {
    memset(&g_m, 0, sizeof g_m);
    const char *names[] = {"blk.10.attn_q.weight", "output.weight", "blk.9.ffn_up.weight",
                           "blk.9.attn_q.weight", "token_embd.weight", "blk.2.x.weight",
                           "blkx.weight"};
    const char *want[] = {"blkx.weight", "output.weight", "token_embd.weight", "blk.2.x.weight",
                          "blk.9.attn_q.weight", "blk.9.ffn_up.weight", "blk.10.attn_q.weight"};
    for (size_t i = 0; i < RL_ARRAY_LEN(names); i++) add(&g_m, names[i], 32, 32, 1);
    size_t order[RL_ARRAY_LEN(names)];
    rl__mix_order(g_m.t, g_m.n, order);
    for (size_t i = 0; i < RL_ARRAY_LEN(names); i++)
        CHECK_STR(g_m.t[order[i]].name, want[i]);
}

/* Names as llama-quantize takes them. */
TEST(resolve) {
    rl__mix m;
    CHECK(rl__mix_resolve("q4_k_m", &m) == RL_OK);
    CHECK(m.ftype == 15 && m.base == RL_TYPE_Q4_K);
    CHECK(rl__mix_resolve("Q4_K", &m) == RL_OK && m.ftype == 15);
    CHECK(rl__mix_resolve("Q3_K", &m) == RL_OK && m.ftype == 12);
    CHECK(rl__mix_resolve("Q5_K", &m) == RL_OK && m.ftype == 17);
    CHECK(rl__mix_resolve("IQ2_S", &m) == RL_OK && m.ftype == 28 && m.base == RL_TYPE_IQ2_XS);
    CHECK(rl__mix_resolve("IQ2_M", &m) == RL_OK && m.ftype == 29 && m.base == RL_TYPE_IQ2_S);
    CHECK(rl__mix_resolve("IQ3_XS", &m) == RL_OK && m.ftype == 22 && m.base == RL_TYPE_IQ3_S);
    CHECK(rl__mix_resolve("MXFP4_MOE", &m) == RL_OK && m.ftype == 38);
    CHECK(rl__mix_resolve("F32", &m) == RL_OK && m.ftype == 0 && m.base == RL_TYPE_F32);
    CHECK(rl__mix_resolve("COPY", &m) == RL_OK && (m.flags & RL__MIX_COPY));
    CHECK(rl__mix_resolve("NVFP4", &m) == RL_OK && (m.flags & RL__MIX_PURE) && m.ftype == 39);
    CHECK(rl__mix_resolve("MXFP4", &m) == RL_OK && (m.flags & RL__MIX_PURE));
    CHECK(rl__mix_resolve("Q8_K", &m) == RL_ERR_UNSUPPORTED);
    CHECK(rl__mix_resolve("Q8_1", &m) == RL_ERR_UNSUPPORTED);
    CHECK(rl__mix_resolve("I32", &m) == RL_ERR_UNSUPPORTED);
    CHECK(rl__mix_resolve("Q4_K_X", &m) == RL_ERR_NOT_FOUND);
    CHECK(rl__mix_resolve("", &m) == RL_ERR_NOT_FOUND);
    CHECK(rl__mix_count() == 39);
    size_t n_named = 0;
    for (size_t i = 0; rl_quantize_mix_name(i); i++) n_named++;
    CHECK_EQ_INT(n_named, rl__mix_count());
}

/* pure and explicit output / token_embd types. */
TEST(pure_and_overrides) {
    build(&g_m, &L8B);
    rl__mix mix;
    CHECK(rl__mix_resolve("Q4_K_M", &mix) == RL_OK);
    rl__mix_opts o = {.pure = true, .output_type = RL_TYPE_COUNT,
                      .token_embd_type = RL_TYPE_COUNT};
    char err[128];
    CHECK(rl__mix_plan(&mix, &g_m.m, &o, g_m.t, g_m.n, g_m.types, NULL, err, sizeof err) ==
          RL_OK);
    CHECK_TYPE(&g_m, "output.weight", RL_TYPE_Q4_K);
    CHECK_LTYPE(&g_m, 0, "attn_v.weight", RL_TYPE_Q4_K);
    CHECK_LTYPE(&g_m, 0, "attn_norm.weight", RL_TYPE_F32);
    o = (rl__mix_opts){.output_type = RL_TYPE_Q8_0, .token_embd_type = RL_TYPE_F16};
    CHECK(rl__mix_plan(&mix, &g_m.m, &o, g_m.t, g_m.n, g_m.types, NULL, err, sizeof err) ==
          RL_OK);
    CHECK_TYPE(&g_m, "output.weight", RL_TYPE_Q8_0);
    CHECK_TYPE(&g_m, "token_embd.weight", RL_TYPE_F16);
    CHECK_LTYPE(&g_m, 0, "attn_v.weight", RL_TYPE_Q6_K);
    /* COPY keeps every tensor's type */
    g_m.t[1].type = RL_TYPE_Q5_0;
    CHECK(plan(&g_m, "COPY", false) == RL_OK);
    CHECK(g_m.types[1] == RL_TYPE_Q5_0 && g_m.types[0] == RL_TYPE_F32);
}

int main(void) {
    RUN(llama32_q4_k_m);
    RUN(llama32_mixes);
    RUN(imatrix_changes_choices);
    RUN(no_gqa);
    RUN(tied_embeddings);
    RUN(moe8);
    RUN(moe_bad_layer);
    RUN(class_70b);
    RUN(falcon);
    RUN(fallbacks);
    RUN(allows);
    RUN(order);
    RUN(resolve);
    RUN(pure_and_overrides);
    return rl_test_finish();
}
