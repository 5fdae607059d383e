#include "golden.h"
#include "test.h"

#include <unistd.h>

bool rl_golden_load(const char *name, rl_golden *g) {
    memset(g, 0, sizeof *g);
    char rel[512];
    snprintf(rel, sizeof rel, "golden/%s.json", name);
    json_error_t je;
    g->root = json_load_file(rl_test_data(rel), JSON_ALLOW_NUL, &je);
    if (!g->root) {
        fprintf(stderr, "note: %s: %s\n", rel, je.text);
        return false;
    }
    g->n_vocab = (int)json_integer_value(json_object_get(json_object_get(g->root, "model"),
                                                         "n_vocab"));
    g->n_prompts = (int)json_array_size(json_object_get(g->root, "prompts"));
    snprintf(rel, sizeof rel, "golden/%s.logits.bin", name);
    size_t len = 0;
    g->logits = (float *)rl_test_read_file(rl_test_data(rel), &len);
    size_t want = (size_t)g->n_prompts * RL_GOLDEN_STEPS * (size_t)g->n_vocab * sizeof(float);
    if (!g->logits || len != want || g->n_vocab <= 0) {
        fprintf(stderr, "note: %s: missing or %zu bytes, expected %zu\n", rel, len, want);
        rl_golden_free(g);
        return false;
    }
    const char *mp = json_string_value(json_object_get(g->root, "model_file_path"));
    if (!mp) {
        rl_golden_free(g);
        return false;
    }
    /* paths are relative to shared/; a few say "zoo/..." for "models/zoo/..." */
    snprintf(g->model_path, sizeof g->model_path, "%s%s", strncmp(mp, "zoo/", 4) ? "" : "models/",
             mp);
    return true;
}

void rl_golden_free(rl_golden *g) {
    json_decref(g->root);
    free(g->logits);
    memset(g, 0, sizeof *g);
}

static int int_array(json_t *a, rl_token *out, int max) {
    int n = (int)json_array_size(a);
    if (n > max) return -1;
    for (int i = 0; i < n; i++) out[i] = (rl_token)json_integer_value(json_array_get(a, (size_t)i));
    return n;
}

bool rl_golden_prompt_get(const rl_golden *g, int i, rl_golden_prompt *p) {
    json_t *pr = json_array_get(json_object_get(g->root, "prompts"), (size_t)i);
    if (!pr) return false;
    p->n_tokens = int_array(json_object_get(pr, "tokens"), p->tokens, 512);
    p->n_greedy = int_array(json_object_get(pr, "greedy"), p->greedy, 64);
    json_t *m = json_object_get(pr, "step_top1_margin");
    for (int k = 0; k < RL_GOLDEN_STEPS; k++)
        p->margin[k] = json_number_value(json_array_get(m, (size_t)k));
    return p->n_tokens > 0 && p->n_greedy >= RL_GOLDEN_STEPS;
}

int rl_test_argmax(const float *x, int n, double *margin) {
    int a = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[a]) a = i;
    double second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != a && x[i] > second) second = x[i];
    if (margin) *margin = (double)x[a] - second;
    return a;
}

/* A path the GGUF reader accepts: zoo models through rl_test_zoo_model (test.h). */
static const char *model_path(const char *rel) {
    if (!strncmp(rel, "models/zoo/", 11)) return rl_test_zoo_model(rel + 11);
    const char *p = rl_test_data(rel);
    return access(p, R_OK) == 0 ? p : NULL;
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as the maximum */
    }
    return m;
}

/* The prompt's text through the model's tokenizer (BOS/EOS per the metadata, control
 * tokens as text: add_special=true, parse_special=false) must give the golden ids. */
static bool check_tokens(const char *name, int pi, const rl_golden *g, const rl_model *m,
                         const rl_golden_prompt *p) {
    json_t *text = json_object_get(json_array_get(json_object_get(g->root, "prompts"),
                                                  (size_t)pi),
                                   "prompt");
    CHECKF(json_is_string(text), "%s prompt %d: no text", name, pi);
    if (!json_is_string(text)) return false;
    rl_token ids[512];
    size_t n = 0;
    rl_status st = rl_tokenize(rl_model_vocab(m), json_string_value(text),
                               json_string_length(text), RL_TOKENIZE_ADD_SPECIAL, ids, 512, &n);
    bool ok = st == RL_OK && n == (size_t)p->n_tokens &&
              !memcmp(ids, p->tokens, sizeof(rl_token) * n);
    CHECKF(ok, "%s prompt %d: tokenized to %d ids (%s), golden %d", name, pi, (int)n,
           rl_status_str(st), p->n_tokens);
    return ok;
}

bool rl_golden_check(const char *name, const rl_golden_opts *o, rl_golden_result *r) {
    memset(r, 0, sizeof *r);
    rl_golden g;
    if (!rl_golden_load(name, &g)) return false;
    const char *path = model_path(g.model_path);
    if (!path) {
        fprintf(stderr, "note: %s: model %s is missing or unreadable\n", name, g.model_path);
        rl_golden_free(&g);
        return false;
    }
    char err[512];
    rl_model *m = NULL;
    rl_model_params mp = rl_model_default_params();
    mp.device = o->device;
    rl_status st = rl_model_load(path, &mp, &m, err, sizeof err);
    CHECKF(st == RL_OK, "%s: %s", name, err);
    if (st != RL_OK) {
        rl_golden_free(&g);
        return true;
    }
    CHECK_EQ_INT(rl_model_n_vocab(m), g.n_vocab);
    rl_context_params cp = rl_context_default_params();
    json_t *nctx = json_object_get(json_object_get(g.root, "settings"), "n_ctx");
    cp.n_ctx = nctx ? (int32_t)json_integer_value(nctx) : 512;
    cp.kv_type = o->kv_type;
    cp.n_threads = o->n_threads ? o->n_threads : 2;
    rl_context *ctx = NULL;
    st = rl_context_create(m, &cp, &ctx, err, sizeof err);
    CHECKF(st == RL_OK, "%s: %s", name, err);
    const int nv = g.n_vocab;
    for (int pi = 0; st == RL_OK && pi < g.n_prompts; pi++) {
        rl_golden_prompt p;
        CHECK(rl_golden_prompt_get(&g, pi, &p));
        r->n_prompts++;
        r->n_prompts_tokenized += check_tokens(name, pi, &g, m, &p);
        const double tol = p.n_tokens > 256 && o->tol_long > 0 ? o->tol_long : o->tol;
        rl_kv_clear(ctx);
        rl_batch b = rl_batch_get(p.tokens, p.n_tokens);
        /* Teacher-forced on the golden tokens throughout. While our own argmax agrees
         * with them, this is also our greedy continuation, so one pass checks both. */
        bool greedy = o->greedy;
        const int n_steps = greedy ? p.n_greedy : RL_GOLDEN_STEPS;
        for (int k = 0; k < n_steps && (greedy || k < RL_GOLDEN_STEPS); k++) {
            if (k > 0) b = rl_batch_get(&p.greedy[k - 1], 1);
            st = rl_decode(ctx, &b);
            CHECKF(st == RL_OK, "%s prompt %d step %d: %s", name, pi, k, rl_context_errmsg(ctx));
            if (st != RL_OK) break;
            const float *lg = rl_get_logits(ctx, -1);
            if (k < RL_GOLDEN_STEPS) {
                const float *ref = rl_golden_step(&g, pi, k);
                double e = max_abs_diff(lg, ref, nv);
                r->n_steps++;
                if (!(e <= r->max_err)) r->max_err = e;
                CHECKF(e <= tol, "%s prompt %d step %d: max |logit - golden| = %.3g > %.3g", name,
                       pi, k, e, tol);
                if (p.margin[k] > tol) {
                    int a = rl_test_argmax(lg, nv, NULL), ar = rl_test_argmax(ref, nv, NULL);
                    r->n_argmax_checked++;
                    r->n_argmax += a == ar;
                    CHECKF(a == ar, "%s prompt %d step %d: argmax %d, golden %d (margin %.3g)",
                           name, pi, k, a, ar, p.margin[k]);
                }
            }
            if (!greedy) continue;
            double margin;
            rl_token t = rl_test_argmax(lg, nv, &margin);
            r->n_greedy_checked++;
            if (t != p.greedy[k]) {
                CHECKF(margin <= 2 * tol,
                       "%s prompt %d greedy token %d: %d, golden %d (own margin %.3g)", name, pi,
                       k, t, p.greedy[k], margin);
                fprintf(stderr, "  %s prompt %d: greedy stops at token %d, a near-tie "
                                "(margin %.3g)\n", name, pi, k, margin);
                greedy = false;
                continue;
            }
            r->n_greedy++;
        }
    }
    fprintf(stderr, "  %s (%s, kv %s): prompts tokenized %d/%d; max |err| %.3g over %d steps; "
                    "argmax %d/%d",
            name, o->device ? o->device : "cpu", rl_type_name(o->kv_type),
            r->n_prompts_tokenized, r->n_prompts, r->max_err,
            r->n_steps, r->n_argmax, r->n_argmax_checked);
    if (o->greedy) fprintf(stderr, "; greedy %d/%d", r->n_greedy, r->n_greedy_checked);
    fputc('\n', stderr);
    rl_context_free(ctx);
    rl_model_free(m);
    rl_golden_free(&g);
    return true;
}

bool rl_golden_check_missing_tensor(const char *file, const char *tensor) {
    const char *src = rl_test_zoo_model(file);
    if (!src) return false;
    rl_gguf *g = NULL;
    char err[512] = "";
    rl_status st = rl_gguf_open(src, &g, err, sizeof err);
    CHECKF(st == RL_OK, "%s: %s", file, err);
    if (st != RL_OK) return true;
    rl_gguf_writer *w = NULL;
    CHECK(rl_gguf_writer_create(&w) == RL_OK);
    for (int64_t i = 0; i < rl_gguf_n_kv(g); i++) CHECK(rl_gguf_writer_copy_kv(w, g, i) == RL_OK);
    int dropped = 0;
    for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        if (!strcmp(ti.name, tensor)) {
            dropped++;
            continue;
        }
        CHECK(rl_gguf_writer_add_tensor(w, ti.name, ti.type, ti.n_dims, ti.ne, ti.data) == RL_OK);
    }
    CHECKF(dropped == 1, "%s has no tensor %s", file, tensor);
    char path[4096];
    const char *dir = getenv("RUVLLM_BUILD_DIR");
    snprintf(path, sizeof path, "%s/missing_%d_%s", dir && *dir ? dir : ".", (int)getpid(),
             file);
    st = rl_gguf_writer_write(w, path);
    CHECKF(st == RL_OK, "writing %s", path);
    rl_gguf_writer_free(w);
    rl_gguf_free(g);
    if (st != RL_OK) return true;
    rl_model *m = (rl_model *)1;
    st = rl_model_load(path, NULL, &m, err, sizeof err);
    CHECKF(st == RL_ERR_BAD_FILE, "%s without %s: %s (%s)", file, tensor, rl_status_str(st), err);
    CHECK(m == NULL);
    CHECKF(strstr(err, tensor) != NULL, "%s: message \"%s\" does not name %s", file, err, tensor);
    rl_model_free(st == RL_OK ? m : NULL);
    unlink(path);
    return true;
}

int rl_golden_check_cases(const rl_golden_case *cases, size_t n) {
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        rl_golden_opts o = {.tol = cases[i].tol, .tol_long = cases[i].tol_long,
                            .greedy = cases[i].greedy, .kv_type = RL_TYPE_F32};
        rl_golden_result r;
        ran += rl_golden_check(cases[i].golden, &o, &r);
    }
    return ran;
}
