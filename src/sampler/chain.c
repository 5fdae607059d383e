/*
 * chain.c - one sampling pass: logits -> bias, penalties, DRY, mask -> filters -> token.
 *
 * The semantics are llama.cpp's (src/llama-sampler.cpp); the representation is ours. The
 * logits stay a dense vector by token id while no token has been dropped, so that the
 * common chains touch the whole vocabulary once or twice: top-k and top-p pick their
 * survivors from the dense vector in one pass (rl__dense_top), min-p and mirostat keep only
 * what passes a threshold, a plain draw reads the dense vector directly. Once tokens are
 * dropped the survivors are 64-bit keys (sampler.h), "sorted" meaning most likely first.
 * No stage sorts more than it must: top-p first tries the 256 most likely tokens and, when
 * they do not reach p, finds the cut with a histogram of the mass by logit and sorts only
 * the tokens of the bucket where it falls.
 */
#include "sampler/simd.h"

typedef struct chain {
    bool dense;     /* d[0..n_vocab) by id, -inf for dropped tokens */
    const float *d;
    int32_t n;      /* compact: survivors in s->cand[0..n) */
    bool sorted;    /* compact: logits non-increasing */
} chain;

/* Index drawn with probability e[i] / total, from block sums bs (exp_sum): the first index
 * whose running sum exceeds u * total (strictly, so zero-weight entries never win). */
static int32_t draw(const float *e, int32_t n, const double *bs, double total, double u) {
    double target = total * u, acc = 0.0;
    int32_t nb = (n + RL__BLOCK - 1) / RL__BLOCK;
    for (int32_t b = 0; b < nb; b++) {
        if (acc + bs[b] > target || b == nb - 1) {
            int32_t b0 = b * RL__BLOCK, b1 = b0 + RL__BLOCK < n ? b0 + RL__BLOCK : n;
            int32_t last = -1;
            for (int32_t i = b0; i < b1; i++) {
                if (e[i] > 0.0f) last = i;
                acc += (double)e[i];
                if (acc > target && e[i] > 0.0f) return i;
            }
            /* rounding between the lane sum and this running sum: the block's last
             * non-zero entry; or carry on when the block had none */
            if (last >= 0) return last;
        }
        acc += bs[b];
    }
    for (int32_t i = n; i-- > 0;)
        if (e[i] > 0.0f) return i;
    return 0;
}

/* ---- compact helpers ------------------------------------------------------------------ */

static void to_compact(rl_sampler *s, chain *c) {
    if (!c->dense) return;
    const float *d = c->d;
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (d[i] > -INFINITY) s->cand[n++] = rl__key(d[i], i);
    c->dense = false;
    c->n = n;
    c->sorted = false;
}

/* Logits of the candidates into x[0..n); returns their maximum. */
static float cand_logits(const rl_sampler *s, const chain *c, float *x) {
    for (int32_t i = 0; i < c->n; i++) x[i] = rl__key_logit(s->cand[i]);
    return c->sorted && c->n ? x[0] : rl__vmax(x, c->n);
}

/* Normalized probabilities of the candidates into p[0..n) (softmax at the current logits). */
static void cand_probs(rl_sampler *s, const chain *c, float *p) {
    float mx = cand_logits(s, c, p);
    double sum = rl__vexp_sum(p, p, c->n, mx, NULL);
    for (int32_t i = 0; i < c->n; i++) p[i] = (float)((double)p[i] / sum);
}

/* The index of the first maximum (-1 when all are -inf). */
static int32_t dense_argmax(const float *d, int32_t n) { return rl__vargmax(d, NULL, n, NULL); }

static int32_t cand_argmin(const rl_sampler *s, const chain *c) {
    int32_t b = 0;
    for (int32_t i = 1; i < c->n; i++)
        if (s->cand[i] < s->cand[b]) b = i;
    return b;
}

/* ---- filters --------------------------------------------------------------------------- */

/* top-k: the k most likely (llama.cpp: k <= 0 is off). */
static void stage_top_k(rl_sampler *s, chain *c, int32_t k) {
    if (k <= 0) return;
    if (c->dense) {
        if (k <= 4096) {
            c->n = rl__dense_top(c->d, s->n_vocab, k, s->cand);
            c->dense = false;
            c->sorted = true;
            return;
        }
        to_compact(s, c);
    }
    if (k >= c->n) return;
    if (!c->sorted) rl__select_u64(s->cand, (size_t)c->n, (size_t)k);
    c->n = k;
    c->sorted = true;
}

/* Walk sorted candidates [from, to) adding e^(l - mx) to *cum; the count to keep once
 * *cum >= target (= p times the total) with at least min_keep kept, or -1. */
static int32_t walk_top_p(const uint64_t *a, int32_t from, int32_t to, float mx, double target,
                          double *cum, int32_t min_keep) {
    for (int32_t i = from; i < to; i++) {
        *cum += (double)rl__det_expf(rl__key_logit(a[i]) - mx);
        if (*cum >= target && i + 1 >= min_keep) return i + 1;
    }
    return -1;
}

/* Buckets of logit distance from the maximum for top-p over a flat distribution. */
#define TOPP_NB RL__TOPP_BUCKETS
#define TOPP_RANGE 40.0f /* below max - 40 a token holds under e^-40 of the mass */

static inline int32_t topp_bucket(float l, float mx) {
    float b = (mx - l) * ((float)TOPP_NB / TOPP_RANGE);
    return b < (float)(TOPP_NB - 1) ? (int32_t)b : TOPP_NB - 1;
}

/* top-p on the dense vector when the 256 most likely tokens are not enough: a histogram of
 * the mass by logit bucket finds the bucket where the cut falls; the tokens above it are
 * kept as they are, only that bucket's tokens are sorted and walked. e^(l - mx) is in
 * s->fbuf (from the caller's exp pass). The histogram has four interleaved copies, so that
 * neighbours in the same bucket do not wait on each other, and the bucket is picked with a
 * little slack below the target: too early only costs another bucket, too late would keep
 * too much. */
static void top_p_buckets(rl_sampler *s, chain *c, float mx, double target) {
    const float *d = c->d, *e = s->fbuf;
    const int32_t nv = s->n_vocab, min_keep = s->p.min_keep;
    double *hm = s->hist;
    memset(hm, 0, 4 * TOPP_NB * sizeof *hm);
    const v4f vmx = splat(mx), vsc = splat((float)TOPP_NB / TOPP_RANGE);
    const v4f vtop = splat((float)(TOPP_NB - 1));
    int32_t i = 0;
    for (; i + 4 <= nv; i += 4) {
        /* -inf entries land in the last bucket with e = 0: no branch needed */
        v4f bf = (vmx - ld(d + i)) * vsc;
        v4i bi = __builtin_convertvector(sel(bf < vtop, bf, vtop), v4i);
        for (int j = 0; j < 4; j++) hm[j * TOPP_NB + bi[j]] += (double)e[i + j];
    }
    for (; i < nv; i++)
        if (d[i] > -INFINITY) hm[topp_bucket(d[i], mx)] += (double)e[i];
    double acc = 0.0, slack = target * (1.0 - 1e-6);
    int32_t b = 0;
    for (; b < TOPP_NB - 1; b++) {
        double hb = (hm[b] + hm[TOPP_NB + b]) + (hm[2 * TOPP_NB + b] + hm[3 * TOPP_NB + b]);
        if (acc + hb >= slack) break;
        acc += hb;
    }
    /* kept: every token of the buckets above b (unsorted); b's tokens go to tmp. Four at a
     * time: bucket < b+1 is (mx - l) * scale < b+1, and most groups have none. */
    const v4f vb1 = splat((float)(b + 1));
    int32_t k = 0, nb = 0;
    double cum = 0.0;
    for (i = 0; i + 4 <= nv && b < TOPP_NB - 1; i += 4) {
        v4i m = ((vmx - ld(d + i)) * vsc) < vb1;
        if (!(m[0] | m[1] | m[2] | m[3])) continue;
        for (int j = 0; j < 4; j++) {
            if (!m[j]) continue;
            int32_t t = i + j;
            if (topp_bucket(d[t], mx) < b) {
                s->cand[k++] = rl__key(d[t], t);
                cum += (double)e[t];
            } else {
                s->tmp[nb++] = rl__key(d[t], t);
            }
        }
    }
    for (; i < nv; i++) {
        if (!(d[i] > -INFINITY)) continue;
        int32_t bi = topp_bucket(d[i], mx);
        if (bi < b) {
            s->cand[k++] = rl__key(d[i], i);
            cum += (double)e[i];
        } else if (bi == b) {
            s->tmp[nb++] = rl__key(d[i], i);
        }
    }
    for (;;) {
        rl__sort_u64(s->tmp, (size_t)nb);
        int32_t cut = walk_top_p(s->tmp, 0, nb, mx, target, &cum, min_keep - k);
        int32_t take = cut > 0 ? cut : nb;
        memcpy(s->cand + k, s->tmp, (size_t)take * sizeof *s->tmp);
        k += take;
        if (cut > 0 || ++b >= TOPP_NB) break;
        /* the cut lies past this bucket: the next one */
        nb = 0;
        for (int32_t i = 0; i < nv; i++)
            if (d[i] > -INFINITY && topp_bucket(d[i], mx) == b) s->tmp[nb++] = rl__key(d[i], i);
    }
    c->dense = false;
    c->n = k;
    c->sorted = false;
}

/* top-p (nucleus, Holtzman et al. 2020): the smallest most-likely set whose probability
 * reaches p; the token that crosses p is kept (llama.cpp: cum >= p). */
static void stage_top_p(rl_sampler *s, chain *c, float p) {
    if (p >= 1.0f) return;
    const int32_t pre = 256;
    int32_t min_keep = s->p.min_keep;
    double cum = 0.0;
    if (c->dense) {
        float mx = rl__vmax(c->d, s->n_vocab);
        if (!(mx > -INFINITY)) return;
        double target = (double)p * rl__vexp_sum(c->d, s->fbuf, s->n_vocab, mx, NULL);
        int32_t m = rl__dense_top(c->d, s->n_vocab, pre, s->cand);
        int32_t cut = walk_top_p(s->cand, 0, m, mx, target, &cum, min_keep);
        if (cut > 0 || m < pre) {
            c->dense = false;
            c->n = cut > 0 ? cut : m;
            c->sorted = true;
            return;
        }
        top_p_buckets(s, c, mx, target);
        return;
    }
    if (c->n == 0) return;
    float mx = cand_logits(s, c, s->fbuf);
    double target = (double)p * rl__vexp_sum(s->fbuf, s->fbuf, c->n, mx, NULL);
    int32_t done = 0;
    if (!c->sorted) {
        if (c->n > 4 * pre) {
            rl__select_u64(s->cand, (size_t)c->n, (size_t)pre);
            int32_t cut = walk_top_p(s->cand, 0, pre, mx, target, &cum, min_keep);
            if (cut > 0) {
                c->n = cut;
                c->sorted = true;
                return;
            }
            rl__sort_u64(s->cand + pre, (size_t)(c->n - pre));
            done = pre;
        } else {
            rl__sort_u64(s->cand, (size_t)c->n);
        }
        c->sorted = true;
    }
    int32_t cut = walk_top_p(s->cand, done, c->n, mx, target, &cum, min_keep);
    if (cut > 0) c->n = cut;
}

/* min-p (Nguyen et al. 2024): keep tokens with p >= min_p * p_max, i.e. logit >= max +
 * ln(min_p); at least min_keep of the most likely. */
static void stage_min_p(rl_sampler *s, chain *c, float p) {
    if (p <= 0.0f) return;
    float lp = rl__det_logf(p);
    int32_t min_keep = s->p.min_keep;
    if (c->dense) {
        const float *d = c->d;
        const int32_t nv = s->n_vocab;
        float mx = rl__vmax(d, nv);
        if (!(mx > -INFINITY)) return;
        float thr = mx + lp;
        int32_t n = 0;
        for (int32_t i = 0; i < nv;) {
            if (i + 32 <= nv && blk_max32(d + i) < thr) {
                i += 32;
                continue;
            }
            int32_t e = i + 32 <= nv ? i + 32 : nv;
            for (; i < e; i++)
                if (d[i] >= thr) s->cand[n++] = rl__key(d[i], i);
        }
        c->dense = false;
        if (n >= min_keep) {
            c->n = n;
            c->sorted = false;
        } else {
            c->n = rl__dense_top(d, nv, min_keep, s->cand);
            c->sorted = true;
        }
        return;
    }
    if (c->n == 0) return;
    float mx = cand_logits(s, c, s->fbuf);
    float thr = mx + lp;
    int32_t kept = 0;
    for (int32_t i = 0; i < c->n; i++) kept += s->fbuf[i] >= thr;
    if (kept >= min_keep) {
        int32_t j = 0;
        for (int32_t i = 0; i < c->n; i++)
            if (s->fbuf[i] >= thr) s->cand[j++] = s->cand[i];
        c->n = j;
    } else {
        int32_t k = min_keep < c->n ? min_keep : c->n;
        if (!c->sorted) rl__select_u64(s->cand, (size_t)c->n, (size_t)k);
        c->n = k;
        c->sorted = true;
    }
}

/* Locally typical sampling (Meister et al. 2022): order tokens by |-ln p - H| (H the
 * entropy) and keep them until their probability exceeds p (strictly, as llama.cpp), at
 * least min_keep. The result is in that order. */
static void stage_typical(rl_sampler *s, chain *c, float p) {
    if (p >= 1.0f) return;
    to_compact(s, c);
    const int32_t n = c->n;
    if (n == 0) return;
    float *pr = s->fbuf;
    cand_probs(s, c, pr);
    double h = 0.0;
    for (int32_t i = 0; i < n; i++)
        if (pr[i] > 0.0f) h -= (double)pr[i] * (double)rl__det_logf(pr[i]);
    float hf = (float)h;
    /* keys: score, then position (candidates are in id or likelihood order) */
    uint64_t *t = s->tmp;
    for (int32_t i = 0; i < n; i++) {
        float sc = pr[i] > 0.0f ? fabsf(-rl__det_logf(pr[i]) - hf) : INFINITY;
        t[i] = ((uint64_t)rl__ord_f32(sc) << 32) | (uint32_t)i;
    }
    int32_t min_keep = s->p.min_keep;
    int32_t last = n, sorted_to = 0;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        if (i == sorted_to) { /* sort lazily: 256 first, then the rest */
            if (i == 0 && n > 1024) {
                rl__select_u64(t, (size_t)n, 256);
                sorted_to = 256;
            } else {
                rl__sort_u64(t + i, (size_t)(n - i));
                sorted_to = n;
            }
        }
        cum += (double)pr[(uint32_t)t[i]];
        if (cum > (double)p && (min_keep == 0 || i >= min_keep - 1)) {
            last = i + 1;
            break;
        }
    }
    for (int32_t i = 0; i < last; i++) t[i] = s->cand[(uint32_t)t[i]];
    memcpy(s->cand, t, (size_t)last * sizeof *t);
    c->n = last;
    c->sorted = false;
}

/* XTC, "exclude top choices" (llama.cpp, after text-generation-webui): with probability
 * xtc_probability, drop every token with p >= threshold except the least likely of them,
 * when at least two pass and min_keep stay. */
static void stage_xtc(rl_sampler *s, chain *c) {
    float prob = s->p.xtc_probability, thr = s->p.xtc_threshold;
    if (prob <= 0.0f || thr > 0.5f) return;
    to_compact(s, c);
    if (c->n < 2) return;
    float chance = rl__rng_float(s->rng);
    if (chance > prob) return;
    float *pr = s->fbuf;
    cand_probs(s, c, pr);
    int32_t above = 0, keep = -1;
    for (int32_t i = 0; i < c->n; i++) {
        if (pr[i] >= thr) {
            above++;
            if (keep < 0 || s->cand[i] > s->cand[keep]) keep = i;
        }
    }
    if (above < 2 || c->n - (above - 1) < s->p.min_keep) return;
    int32_t j = 0;
    for (int32_t i = 0; i < c->n; i++)
        if (pr[i] < thr || i == keep) s->cand[j++] = s->cand[i];
    c->n = j;
}

/* Temperature: logits / t; t <= 0 keeps only the most likely token (lowest id on ties). */
static void stage_temperature(rl_sampler *s, chain *c, float t) {
    if (t <= 0.0f) {
        if (c->dense) {
            int32_t i = dense_argmax(c->d, s->n_vocab);
            c->dense = false;
            c->n = 0;
            c->sorted = true;
            if (i >= 0) {
                s->cand[0] = rl__key(c->d[i], i);
                c->n = 1;
            }
        } else if (c->n > 0) {
            s->cand[0] = s->cand[cand_argmin(s, c)];
            c->n = 1;
            c->sorted = true;
        }
        return;
    }
    if (t == 1.0f) return;
    if (c->dense) {
        rl__vdiv(s->dbuf, c->d, t, s->n_vocab);
        c->d = s->dbuf;
        return;
    }
    for (int32_t i = 0; i < c->n; i++) {
        uint64_t k = s->cand[i];
        s->cand[i] = rl__key(rl__key_logit(k) / t, rl__key_id(k));
    }
}

/* ---- final choices --------------------------------------------------------------------- */

static int32_t final_greedy(rl_sampler *s, chain *c) {
    if (c->dense) return dense_argmax(c->d, s->n_vocab);
    if (c->n == 0) return -1;
    return rl__key_id(s->cand[cand_argmin(s, c)]);
}

static int32_t final_dist(rl_sampler *s, chain *c) {
    double u = rl__rng_double(s->rng);
    if (c->dense) {
        float mx = rl__vmax(c->d, s->n_vocab);
        if (!(mx > -INFINITY)) return -1;
        double tot = rl__vexp_sum(c->d, s->fbuf, s->n_vocab, mx, s->bsum);
        return draw(s->fbuf, s->n_vocab, s->bsum, tot, u);
    }
    if (c->n == 0) return -1;
    float mx = cand_logits(s, c, s->fbuf);
    double tot = rl__vexp_sum(s->fbuf, s->fbuf, c->n, mx, s->bsum);
    return rl__key_id(s->cand[draw(s->fbuf, c->n, s->bsum, tot, u)]);
}

/* Mirostat 2.0 (Basu et al. 2021, llama.cpp's form): drop tokens whose surprise -log2 p
 * exceeds mu (keeping at least the most likely); final_mirostat2 then draws from the rest
 * renormalized and moves mu by eta times the error of the observed surprise against tau
 * (into *mu_next). Returns false when no token is left. */
static bool mirostat2_truncate(rl_sampler *s, chain *c) {
    const float mu = s->mu;
    float a = -mu * 0.69314718056f;
    float pthr = rl__det_expf(a < 80.0f ? a : 80.0f); /* 2^-mu: a pre-filter only */
    float mx;
    double sum;
    int32_t n = 0;
    if (c->dense) {
        mx = rl__vmax(c->d, s->n_vocab);
        if (!(mx > -INFINITY)) return false;
        sum = rl__vexp_sum(c->d, s->fbuf, s->n_vocab, mx, NULL);
        for (int32_t i = 0; i < s->n_vocab; i++) {
            float pi = (float)((double)s->fbuf[i] / sum);
            if (pi >= 0.5f * pthr && !(-rl__det_log2f(pi) > mu))
                s->cand[n++] = rl__key(c->d[i], i);
        }
        if (n == 0) {
            int32_t i = dense_argmax(c->d, s->n_vocab);
            s->cand[n++] = rl__key(c->d[i], i);
        }
        c->dense = false;
        c->n = n;
        c->sorted = false;
    } else {
        if (c->n == 0) return false;
        mx = cand_logits(s, c, s->fbuf);
        sum = rl__vexp_sum(s->fbuf, s->fbuf, c->n, mx, NULL);
        int32_t best = cand_argmin(s, c);
        uint64_t top = s->cand[best];
        for (int32_t i = 0; i < c->n; i++) {
            float pi = (float)((double)s->fbuf[i] / sum);
            if (!(-rl__det_log2f(pi) > mu)) s->cand[n++] = s->cand[i];
        }
        if (n == 0) s->cand[n++] = top;
        c->n = n;
    }
    return true;
}

static int32_t final_mirostat2(rl_sampler *s, chain *c, float *mu_next) {
    if (!mirostat2_truncate(s, c)) return -1;
    /* renormalize over the survivors and draw */
    float m2 = cand_logits(s, c, s->fbuf);
    double tot = rl__vexp_sum(s->fbuf, s->fbuf, c->n, m2, s->bsum);
    int32_t idx = draw(s->fbuf, c->n, s->bsum, tot, rl__rng_double(s->rng));
    float pc = (float)((double)s->fbuf[idx] / tot);
    float surprise = -rl__det_log2f(pc);
    *mu_next = s->mu - s->p.mirostat_eta * (surprise - s->p.mirostat_tau);
    return rl__key_id(s->cand[idx]);
}

/* Tests: the distribution the final choice would draw from, by id, into out[0..n_vocab).
 * Returns false when no token is left. */
static bool final_distribution(rl_sampler *s, chain *c, bool greedy, float *out) {
    const int32_t nv = s->n_vocab;
    memset(out, 0, (size_t)nv * sizeof *out);
    if (greedy) {
        int32_t t = final_greedy(s, c);
        if (t < 0) return false;
        out[t] = 1.0f;
        return true;
    }
    if (s->p.mirostat == 2 && !mirostat2_truncate(s, c)) return false;
    if (c->dense) {
        float mx = rl__vmax(c->d, nv);
        if (!(mx > -INFINITY)) return false;
        double tot = rl__vexp_sum(c->d, s->fbuf, nv, mx, NULL);
        for (int32_t i = 0; i < nv; i++) out[i] = (float)((double)s->fbuf[i] / tot);
        return true;
    }
    if (c->n == 0) return false;
    cand_probs(s, c, s->fbuf);
    for (int32_t i = 0; i < c->n; i++) out[rl__key_id(s->cand[i])] = s->fbuf[i];
    return true;
}

/* ---- the pass -------------------------------------------------------------------------- */

static bool penalties_active(const rl_sampler *s) {
    return s->pen_cap > 0 && s->pen_n > 0;
}

static bool dry_active(const rl_sampler *s) {
    return s->dry_on && s->dry_len > s->p.dry_allowed_length;
}

bool rl__sampler_modifies(const rl_sampler *s) {
    return s->n_bias > 0 || penalties_active(s) || dry_active(s);
}

static void apply_penalties(rl_sampler *s, float *l) {
    const float rp = s->p.repeat_penalty, fp = s->p.frequency_penalty,
                pp = s->p.presence_penalty;
    for (int32_t j = 0; j < s->pen_n; j++) {
        int32_t t = s->pen_list[j];
        int32_t cnt = s->pen_count[t];
        float x = l[t];
        if (x <= 0.0f) x *= rp;
        else x /= rp;
        x -= (float)cnt * fp + (float)(cnt > 0) * pp;
        l[t] = x;
    }
}

/* Log-sum-exp and the top tokens of src into the logprob state. */
static void lp_stats(rl_sampler *s, const float *src) {
    float mx = rl__vmax(src, s->n_vocab);
    s->lp_n = 0;
    if (!(mx > -INFINITY)) {
        s->lp_lse = INFINITY; /* every logprob is -inf */
        return;
    }
    double sum = rl__vexp_sum(src, s->fbuf, s->n_vocab, mx, NULL);
    s->lp_lse = mx + rl__det_logf((float)sum);
    if (s->p.top_logprobs > 0)
        s->lp_n = rl__dense_top(src, s->n_vocab, s->p.top_logprobs, s->lp_top);
}

/* Whether the filters of this configuration can change the argmax: only typical-p and XTC
 * can drop the most likely token (and mirostat draws). */
static bool greedy_exact(const rl_sampler *s) {
    if (s->p.mirostat != 0 || s->p.temperature > 0.0f) return false;
    for (int32_t i = 0; i < s->n_order; i++) {
        if (s->order[i] == RL_SAMPLER_STAGE_TYPICAL_P && s->p.typical_p < 1.0f) return false;
        if (s->order[i] == RL_SAMPLER_STAGE_XTC && s->p.xtc_probability > 0.0f &&
            s->p.xtc_threshold <= 0.5f)
            return false;
    }
    return true;
}

static void run_stage(rl_sampler *s, chain *c, rl_sampler_stage st) {
    switch (st) {
    case RL_SAMPLER_STAGE_TOP_K: stage_top_k(s, c, s->p.top_k); break;
    case RL_SAMPLER_STAGE_TYPICAL_P: stage_typical(s, c, s->p.typical_p); break;
    case RL_SAMPLER_STAGE_TOP_P: stage_top_p(s, c, s->p.top_p); break;
    case RL_SAMPLER_STAGE_MIN_P: stage_min_p(s, c, s->p.min_p); break;
    case RL_SAMPLER_STAGE_XTC: stage_xtc(s, c); break;
    case RL_SAMPLER_STAGE_TEMPERATURE: stage_temperature(s, c, s->p.temperature); break;
    }
}

static rl_status bad_logit(rl_sampler *s, const float *logits) {
    int32_t i = 0;
    while (i < s->n_vocab && logits[i] < INFINITY) i++;
    rl__fmt(s->err, sizeof s->err, "logits[%d] is %s; logits must be finite or -inf", (int)i,
            logits[i] != logits[i] ? "NaN" : "+inf");
    return RL_ERR_INVALID_ARG;
}

static rl_status none_left(rl_sampler *s, bool masked) {
    rl__fmt(s->err, sizeof s->err, "no token can be chosen: every token is %s",
            masked ? "masked out or has logit -inf" : "at logit -inf");
    return RL_ERR_INVALID_ARG;
}

rl_status rl__sample_once(rl_sampler *s, const float *logits, const uint8_t *mask, bool do_lp,
                          rl_token *out, float *mu_next, float *dist_out) {
    const int32_t nv = s->n_vocab;
    *out = RL_TOKEN_NULL;
    *mu_next = s->mu;
    bool modifies = rl__sampler_modifies(s);
    bool greedy = greedy_exact(s);

    /* greedy with nothing to change the logits: the argmax of the input */
    if (greedy && !modifies && !do_lp && !dist_out) {
        bool ok;
        int32_t best = rl__vargmax(logits, mask, nv, &ok);
        if (!ok) return bad_logit(s, logits);
        if (best < 0) return none_left(s, mask != NULL);
        *out = best;
        return RL_OK;
    }

    /* steps 1-4 into work; the mask goes in with the copy unless logprobs of the processed
     * logits must see the unmasked values; with nothing to change, the input itself */
    const float *w;
    bool late_mask = mask && do_lp && s->p.logprobs_mode == RL_SAMPLER_LOGPROBS_PROCESSED;
    if (modifies || mask) {
        if (!rl__vcopy(s->work, logits, late_mask ? NULL : mask, nv)) return bad_logit(s, logits);
        if (do_lp && s->p.logprobs_mode == RL_SAMPLER_LOGPROBS_RAW) lp_stats(s, logits);
        float *wm = s->work;
        for (int32_t j = 0; j < s->n_bias; j++) wm[s->bias[j].token] += s->bias[j].bias;
        if (penalties_active(s)) apply_penalties(s, wm);
        if (dry_active(s)) rl__dry_apply(s, wm);
        if (do_lp && s->p.logprobs_mode == RL_SAMPLER_LOGPROBS_PROCESSED) lp_stats(s, wm);
        if (late_mask) rl__vmask(wm, mask, nv);
        w = wm;
    } else {
        if (!rl__vcheck(logits, nv)) return bad_logit(s, logits);
        if (do_lp) lp_stats(s, logits);
        w = logits;
    }

    chain c = {.dense = true, .d = w, .n = 0, .sorted = false};
    int32_t tok;
    if (dist_out) {
        if (s->p.mirostat == 2) {
            stage_temperature(s, &c, s->p.temperature);
        } else if (!greedy) {
            for (int32_t i = 0; i < s->n_order; i++) run_stage(s, &c, s->order[i]);
        }
        bool g = greedy || (s->p.mirostat == 0 && s->p.temperature <= 0.0f);
        if (!final_distribution(s, &c, g, dist_out)) return none_left(s, mask != NULL);
        return RL_OK;
    }
    if (greedy) {
        tok = final_greedy(s, &c);
    } else if (s->p.mirostat == 2) {
        stage_temperature(s, &c, s->p.temperature);
        tok = final_mirostat2(s, &c, mu_next);
    } else {
        for (int32_t i = 0; i < s->n_order; i++) run_stage(s, &c, s->order[i]);
        tok = s->p.temperature <= 0.0f ? final_greedy(s, &c) : final_dist(s, &c);
    }
    if (tok < 0) return none_left(s, mask != NULL);
    *out = tok;
    return RL_OK;
}

/* ---- the device's share ------------------------------------------------------------------ */

bool rl__sampler_device_plan(const rl_sampler *s, rl__sampler_device *d) {
    if (!s || s->p.mirostat != 0 || s->p.logprobs || s->n_bias > 0 || dry_active(s)) return false;
    const rl_sampler_params *p = &s->p;
    /* positions of the stages that act; -1 when absent or a no-op */
    int at[RL_SAMPLER_STAGE_COUNT + 1];
    for (int i = 0; i <= RL_SAMPLER_STAGE_COUNT; i++) at[i] = -1;
    for (int32_t i = 0; i < s->n_order; i++) at[s->order[i]] = i;
    if (at[RL_SAMPLER_STAGE_TYPICAL_P] >= 0 && p->typical_p < 1.0f) return false;
    if (at[RL_SAMPLER_STAGE_XTC] >= 0 && p->xtc_probability > 0.0f && p->xtc_threshold <= 0.5f)
        return false;
    *d = (rl__sampler_device){
        .temperature = p->temperature,
        .top_k = at[RL_SAMPLER_STAGE_TOP_K] >= 0 ? p->top_k : 0,
        .top_p = at[RL_SAMPLER_STAGE_TOP_P] >= 0 ? p->top_p : 1.0f,
        .min_p = at[RL_SAMPLER_STAGE_MIN_P] >= 0 ? p->min_p : 0.0f,
        .min_keep = p->min_keep,
        .repeat_penalty = p->repeat_penalty,
        .frequency_penalty = p->frequency_penalty,
        .presence_penalty = p->presence_penalty,
    };
    d->min_p_ln = d->min_p > 0.0f ? rl__det_logf(d->min_p) : 0.0f;
    if (p->temperature <= 0.0f) return true; /* greedy: the filters cannot change the argmax */
    if (at[RL_SAMPLER_STAGE_TEMPERATURE] < 0) d->temperature = 1.0f;
    /* the acting filters in top-k, top-p, min-p order, temperature after them */
    int last = -1;
    const int seq[3] = {RL_SAMPLER_STAGE_TOP_K, RL_SAMPLER_STAGE_TOP_P, RL_SAMPLER_STAGE_MIN_P};
    const bool acts[3] = {d->top_k > 0, d->top_p < 1.0f, d->min_p > 0.0f};
    for (int i = 0; i < 3; i++) {
        if (!acts[i]) continue;
        if (at[seq[i]] < last) return false;
        last = at[seq[i]];
    }
    if (d->temperature != 1.0f && at[RL_SAMPLER_STAGE_TEMPERATURE] < last) return false;
    return true;
}

int32_t rl__sampler_penalty_pairs(const rl_sampler *s, int32_t *pairs) {
    if (!penalties_active(s)) return 0;
    if (!pairs) return s->pen_n;
    for (int32_t j = 0; j < s->pen_n; j++) {
        pairs[2 * j] = s->pen_list[j];
        pairs[2 * j + 1] = s->pen_count[s->pen_list[j]];
    }
    return s->pen_n;
}

double rl__sampler_next_u(rl_sampler *s) { return rl__rng_double(s->rng); }
