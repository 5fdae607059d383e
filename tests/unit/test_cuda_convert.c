/* Weights of types without a CUDA kernel on the GPU (rl_model_params.device "cuda"):
 * zoo models quantized here to IQ3_S (every weight; converted at load to Q4_K) and to
 * MXFP4 (qwen2moe: 3-D expert tensors and the router, converted to Q8_0) load on the GPU
 * with a warning on stderr naming the type and the target. The converted weights are
 * byte for byte what rl_quantize_file writes when it requantizes the file to the target
 * (both dequantize, then run the reference quantizer), and the GPU's logits follow the
 * CPU's on that requantized file: over the prompt and 16 greedy steps (the GPU's tokens
 * fed to both) the normalized squared error stays under 1e-2 and an argmax differs only
 * where the CPU's top two are within 5% of its logit range.
 *
 * Against the CPU running the original types the logits are only printed, with a loose
 * bound (nmse < 1): these random-weight models amplify any weight perturbation (measured
 * on the CPU alone, llama3 IQ3_S vs F32: logits nmse 0.72; IQ3_S requantized to Q4_K vs
 * IQ3_S: 0.07 at the prompt, 0.25 after 16 greedy steps on an H200).
 *
 * Also the memory budget: rl_model_device_budget's figures are consistent (weights as
 * uploaded, KV bytes per token from the shapes, some tokens fit), and a gpu_mem too small
 * for the weights fails the load with RL_ERR_NOMEM naming gpu_mem. Without a CUDA device
 * the program is skipped. */
#include "model/model.h"
#include "backend/backend.h"
#include "test.h"

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

static char g_tmp[512];

/* The model at path on device, with what the load printed on stderr in *log (static). */
static rl_model *load_capture(const char *path, const char *device, float gpu_mem, rl_status *st,
                              char *err, size_t es, const char **log) {
    static char buf[8192];
    buf[0] = 0;
    *log = buf;
    char lp[600];
    snprintf(lp, sizeof lp, "%s.log", g_tmp);
    fflush(stderr);
    int saved = dup(2), fd = open(lp, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd >= 0) dup2(fd, 2);
    rl_model_params mp = rl_model_default_params();
    mp.device = device;
    mp.gpu_mem = gpu_mem;
    rl_model *m = NULL;
    *st = rl_model_load(path, &mp, &m, err, es);
    fflush(stderr);
    if (fd >= 0) {
        dup2(saved, 2);
        close(fd);
    }
    close(saved);
    FILE *f = fopen(lp, "rb");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    remove(lp);
    fputs(buf, stderr); /* shown in the test log too */
    return m;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* One step's comparison: returns false when the GPU's pick is not one the CPU could
 * take (its top two farther apart than 5% of its range). */
static bool compare_step(const float *lc, const float *lg, int32_t nv, double *worst) {
    const double e = rl_test_nmse(lg, lc, nv);
    if (e > *worst) *worst = e;
    int32_t ac = argmax(lc, nv), ag = argmax(lg, nv);
    if (ac == ag) return true;
    float lo = lc[0], hi = lc[0];
    for (int32_t i = 1; i < nv; i++) {
        lo = fminf(lo, lc[i]);
        hi = fmaxf(hi, lc[i]);
    }
    fprintf(stderr, "    argmax cpu %d (%.4f) gpu %d (cpu logit %.4f), range %.3f\n", ac, lc[ac],
            ag, lc[ag], hi - lo);
    return lc[ac] - lc[ag] <= 0.05f * (hi - lo);
}

/* The converted copy of weight w (host memory the GPU model owns) equals the tensor of
 * the same name in the requantized file q. */
static void same_bytes(const rl_weight *w, const rl_gguf *q, const char *what) {
    if (!w->data) return;
    int64_t ti = rl_gguf_find_tensor(q, w->name);
    CHECKF(ti >= 0, "%s: %s not in the requantized file", what, w->name);
    if (ti < 0) return;
    rl_gguf_tensor_info info;
    rl_gguf_tensor(q, ti, &info);
    CHECKF(info.type == w->type, "%s %s: %s vs %s", what, w->name, rl_type_name(w->type),
           rl_type_name(info.type));
    CHECKF(info.type == w->type && !memcmp(info.data, w->data, info.nbytes),
           "%s %s: converted bytes differ from rl_quantize_file's", what, w->name);
}

static rl_context *new_ctx(rl_model *m) {
    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = 128;
    char err[256];
    rl_context *c = NULL;
    CHECKF(rl_context_create(m, &cp, &c, err, sizeof err) == RL_OK, "%s", err);
    return c;
}

static void check_model(const char *zoo, const char *qtype, const char *to) {
    const char *in = rl_test_zoo_model(zoo);
    if (!in) {
        fprintf(stderr, "  %s: missing\n", zoo);
        CHECK(0);
        return;
    }
    char req[600];
    snprintf(req, sizeof req, "%s.%s.gguf", g_tmp, to);
    rl_quantize_params qp = rl_quantize_default_params();
    qp.type = qtype;
    qp.pure = true;
    char err[512] = "";
    rl_status st = rl_quantize_file(in, g_tmp, &qp, err, sizeof err);
    CHECKF(st == RL_OK, "quantize %s to %s: %s", zoo, qtype, err);
    qp.type = to;
    qp.allow_requantize = true;
    if (st == RL_OK) st = rl_quantize_file(g_tmp, req, &qp, err, sizeof err);
    CHECKF(st == RL_OK, "requantize %s to %s: %s", qtype, to, err);
    if (st != RL_OK) return;

    const char *log;
    rl_model *cpu = load_capture(g_tmp, "cpu", 0, &st, err, sizeof err, &log);
    CHECKF(st == RL_OK, "cpu load: %s", err);
    rl_model *cpu_q = load_capture(req, "cpu", 0, &st, err, sizeof err, &log);
    CHECKF(st == RL_OK, "cpu load: %s", err);
    rl_model *gpu = load_capture(g_tmp, "cuda", 0, &st, err, sizeof err, &log);
    CHECKF(st == RL_OK, "cuda load: %s", err);
    char w1[64], w2[64];
    snprintf(w1, sizeof w1, "no kernel for %s weights", qtype);
    snprintf(w2, sizeof w2, "converted at load to %s", to);
    CHECKF(strstr(log, w1) && strstr(log, w2), "%s %s: no \"%s\" ... \"%s\" in: %s", zoo, qtype, w1,
           w2, log);
    if (!cpu || !cpu_q || !gpu) {
        rl_model_free(cpu);
        rl_model_free(cpu_q);
        rl_model_free(gpu);
        return;
    }

    /* the conversion is rl_quantize_file's requantization */
    const rl_gguf *qg = rl_model_gguf(cpu_q);
    same_bytes(&gpu->tok_embd, qg, zoo);
    same_bytes(&gpu->output, qg, zoo);
    for (int32_t il = 0; il < gpu->hp.n_layer; il++) {
        const rl__layer *L = &gpu->layers[il];
        const rl_weight *ws[] = {&L->wq,
                                 &L->wk,
                                 &L->wv,
                                 &L->wo,
                                 &L->ffn_gate,
                                 &L->ffn_up,
                                 &L->ffn_down,
                                 &L->ffn_gate_inp,
                                 &L->ffn_gate_exps,
                                 &L->ffn_up_exps,
                                 &L->ffn_down_exps,
                                 &L->ffn_gate_shexp,
                                 &L->ffn_up_shexp,
                                 &L->ffn_down_shexp};
        for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) same_bytes(ws[k], qg, zoo);
    }

    /* budget figures */
    rl_device_budget b;
    st = rl_model_device_budget(gpu, RL_TYPE_F16, 64, &b, err, sizeof err);
    CHECKF(st == RL_OK, "budget: %s", err);
    const int64_t n_kv = (int64_t)rl_model_n_layer(gpu) * 2; /* K and V rows per token */
    CHECK(b.total > 0 && b.budget == b.total && b.free <= b.total && b.weights > 0);
    CHECK(b.kv_token_bytes > 0 && b.kv_token_bytes % (uint64_t)n_kv == 0);
    CHECK(b.workspace > 0 && b.kv_tokens > 4096);
    fprintf(stderr,
            "  %s %s: %s, weights %.2f MiB (file %.2f MiB), workspace %.1f MiB, KV %llu B/token, "
            "%lld tokens fit\n",
            zoo, qtype, b.device, (double)b.weights / 1048576.0,
            (double)rl_model_weight_bytes(gpu) / 1048576.0, (double)b.workspace / 1048576.0,
            (unsigned long long)b.kv_token_bytes, (long long)b.kv_tokens);

    rl_context *cc = new_ctx(cpu), *cq = new_ctx(cpu_q), *cg = new_ctx(gpu);
    if (cc && cq && cg) {
        const char *text = "Once upon a time, in a small town by the sea, there lived";
        rl_token toks[64];
        size_t n = 0;
        CHECK(rl_tokenize(rl_model_vocab(cpu), text, strlen(text), RL_TOKENIZE_ADD_SPECIAL, toks,
                          64, &n) == RL_OK);
        const int32_t nv = rl_model_n_vocab(cpu);
        rl_batch bt = rl_batch_get(toks, (int32_t)n);
        CHECK(rl_decode(cc, &bt) == RL_OK && rl_decode(cq, &bt) == RL_OK);
        CHECKF(rl_decode(cg, &bt) == RL_OK, "%s", rl_context_errmsg(cg));
        double worst_q = 0, worst_o = 0, first_o = -1;
        int bad = 0, agree_q = 0, agree_o = 0;
        for (int step = 0; step <= 16; step++) {
            const float *lc = rl_get_logits(cc, -1), *lq = rl_get_logits(cq, -1),
                        *lg = rl_get_logits(cg, -1);
            if (!lc || !lq || !lg) {
                CHECK(0);
                break;
            }
            if (!compare_step(lq, lg, nv, &worst_q)) bad++;
            agree_q += argmax(lq, nv) == argmax(lg, nv);
            agree_o += argmax(lc, nv) == argmax(lg, nv);
            const double eo = rl_test_nmse(lg, lc, nv);
            if (first_o < 0) first_o = eo;
            if (eo > worst_o) worst_o = eo;
            rl_token t = argmax(lg, nv);
            rl_batch b1 = rl_batch_get(&t, 1);
            if (rl_decode(cc, &b1) != RL_OK || rl_decode(cq, &b1) != RL_OK ||
                rl_decode(cg, &b1) != RL_OK) {
                CHECK(0);
                break;
            }
        }
        fprintf(stderr,
                "  %s %s: cuda vs cpu on the %s file: argmax %d/17, max nmse %.3g; vs cpu on "
                "%s: argmax %d/17, nmse %.3g at the prompt, %.3g at most\n",
                zoo, qtype, to, agree_q, worst_q, qtype, agree_o, first_o, worst_o);
        CHECKF(bad == 0, "%s %s: %d argmax differences beyond a near tie", zoo, qtype, bad);
        CHECKF(worst_q <= 1e-2, "%s %s: logits nmse %.3g vs the cpu", zoo, qtype, worst_q);
        CHECKF(worst_o < 1, "%s %s: logits nmse %.3g vs the cpu on %s", zoo, qtype, worst_o, qtype);
    }
    rl_context_free(cc);
    rl_context_free(cq);
    rl_context_free(cg);

    /* a budget too small for the weights */
    rl_model *tiny = load_capture(g_tmp, "cuda", 1e-6f, &st, err, sizeof err, &log);
    CHECKF(st == RL_ERR_NOMEM && !tiny, "gpu_mem 1e-6: %s", rl_status_str(st));
    CHECKF(strstr(err, "gpu_mem") != NULL, "%s", err);
    fprintf(stderr, "  gpu_mem 1e-6: %s\n", err);
    rl_model_free(tiny);
    rl_model_free(cpu);
    rl_model_free(cpu_q);
    rl_model_free(gpu);
    remove(g_tmp);
    remove(req);
}

TEST(converted_models) {
    if (rl__cuda_device_count() == 0) {
        char err[256] = "";
        rl_device_check("cuda", err, sizeof err);
        SKIP("%s", err);
    }
    const char *dir = getenv("RUVLLM_BUILD_DIR");
    /* the process id in the name: the plain and sanitizer builds of this test may run at once */
    snprintf(g_tmp, sizeof g_tmp, "%s/test_cuda_convert.%d.gguf", dir && *dir ? dir : "/tmp",
             (int)getpid());
    check_model("llama3-F32.gguf", "IQ3_S", "Q4_K");
    check_model("qwen2moe-F32.gguf", "MXFP4", "Q8_0");
}

int main(void) {
    RUN(converted_models);
    return rl_test_finish();
}
