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
    rl_status st = rl_model_load(path, NULL, &m, err, sizeof err);
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
        const double tol = p.n_tokens > 256 && o->tol_long > 0 ? o->tol_long : o->tol;
        rl_kv_clear(ctx);
        rl_batch b = rl_batch_get(p.tokens, p.n_tokens);
        for (int k = 0; k < RL_GOLDEN_STEPS; k++) {
            if (k > 0) b = rl_batch_get(&p.greedy[k - 1], 1);
            st = rl_decode(ctx, &b);
            CHECKF(st == RL_OK, "%s prompt %d step %d: %s", name, pi, k, rl_context_errmsg(ctx));
            if (st != RL_OK) break;
            const float *lg = rl_get_logits(ctx, -1);
            const float *ref = rl_golden_step(&g, pi, k);
            double e = max_abs_diff(lg, ref, nv);
            r->n_steps++;
            if (!(e <= r->max_err)) r->max_err = e;
            CHECKF(e <= tol, "%s prompt %d step %d: max |logit - golden| = %.3g > %.3g", name, pi,
                   k, e, tol);
            if (p.margin[k] > tol) {
                int a = rl_test_argmax(lg, nv, NULL), ar = rl_test_argmax(ref, nv, NULL);
                r->n_argmax_checked++;
                r->n_argmax += a == ar;
                CHECKF(a == ar, "%s prompt %d step %d: argmax %d, golden %d (margin %.3g)", name,
                       pi, k, a, ar, p.margin[k]);
            }
        }
        if (!o->greedy || st != RL_OK) continue;
        rl_kv_clear(ctx);
        b = rl_batch_get(p.tokens, p.n_tokens);
        for (int k = 0; k < p.n_greedy; k++) {
            st = rl_decode(ctx, &b);
            CHECKF(st == RL_OK, "%s prompt %d greedy %d: %s", name, pi, k, rl_context_errmsg(ctx));
            if (st != RL_OK) break;
            double margin;
            rl_token t = rl_test_argmax(rl_get_logits(ctx, -1), nv, &margin);
            r->n_greedy_checked++;
            if (t != p.greedy[k]) {
                CHECKF(margin <= 2 * tol,
                       "%s prompt %d greedy token %d: %d, golden %d (own margin %.3g)", name, pi,
                       k, t, p.greedy[k], margin);
                fprintf(stderr, "  %s prompt %d: greedy stops at token %d, a near-tie "
                                "(margin %.3g)\n", name, pi, k, margin);
                break;
            }
            r->n_greedy++;
            b = rl_batch_get(&p.greedy[k], 1);
        }
    }
    fprintf(stderr, "  %s (kv %s): max |err| %.3g over %d steps; argmax %d/%d", name,
            rl_type_name(o->kv_type), r->max_err, r->n_steps, r->n_argmax, r->n_argmax_checked);
    if (o->greedy) fprintf(stderr, "; greedy %d/%d", r->n_greedy, r->n_greedy_checked);
    fputc('\n', stderr);
    rl_context_free(ctx);
    rl_model_free(m);
    rl_golden_free(&g);
    return true;
}
