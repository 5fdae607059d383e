/*
 * request.c - a request of the engine: its sequences' samplers and detokenizers, the
 * stop-string window, and the per-request queue its reader takes events from.
 *
 * Output of a sequence flows: sampled token -> streaming detokenizer (whole UTF-8
 * characters) -> hold (text that could still turn out to begin a stop string) -> out
 * (released, unread). The reader swaps a sequence's unread buffers with its own, so a
 * slow reader gets the tokens of several steps coalesced into one event and nothing is
 * copied twice.
 */
#include "engine_impl.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- buffers ---------------------------------------------------------------------- */

static bool ebuf_reserve(rl__ebuf *b, size_t extra) {
    size_t need;
    if (!rl__add_size(b->len, extra, &need)) return false;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = rl__realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static bool ebuf_append(rl__ebuf *b, const char *s, size_t n) {
    if (!n) return true;
    if (!ebuf_reserve(b, n)) return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

static void ebuf_free(rl__ebuf *b) {
    rl__free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static bool etoks_push(rl__etoks *t, rl_token tok, float lp, const rl_token_logprob *top,
                       int32_t n_top) {
    if (t->n == t->cap) {
        int32_t cap = t->cap ? 2 * t->cap : 16;
        rl_engine_token *p = rl__realloc(t->t, (size_t)cap * sizeof *p);
        if (!p) return false;
        t->t = p;
        t->cap = cap;
    }
    if (t->n_top + n_top > t->cap_top) {
        int32_t cap = t->cap_top ? 2 * t->cap_top : 64;
        while (cap < t->n_top + n_top) cap *= 2;
        rl_token_logprob *p = rl__realloc(t->top, (size_t)cap * sizeof *p);
        if (!p) return false;
        t->top = p;
        t->cap_top = cap;
    }
    if (n_top) memcpy(t->top + t->n_top, top, (size_t)n_top * sizeof *top);
    t->t[t->n++] = (rl_engine_token){.token = tok, .logprob = lp, .n_top = n_top, .top = NULL};
    t->n_top += n_top;
    return true;
}

/* Room for n tokens with n_top entries each, so that pushing them allocates nothing. */
static bool etoks_reserve(rl__etoks *t, int32_t n, int32_t n_top) {
    if (n > t->cap) {
        rl_engine_token *p = rl__realloc(t->t, (size_t)n * sizeof *p);
        if (!p) return false;
        t->t = p;
        t->cap = n;
    }
    if (n_top > 0 && (int64_t)n * n_top > t->cap_top) {
        rl_token_logprob *p = rl__realloc(t->top, (size_t)n * (size_t)n_top * sizeof *p);
        if (!p) return false;
        t->top = p;
        t->cap_top = n * n_top;
    }
    return true;
}

static void etoks_free(rl__etoks *t) {
    rl__free(t->t);
    rl__free(t->top);
    memset(t, 0, sizeof *t);
}

/* ---- stop strings ------------------------------------------------------------------- */

size_t rl__stop_scan(const char *hold, size_t len, char *const *stop, const size_t *stop_len,
                     int32_t n_stop, bool *matched) {
    *matched = false;
    if (!len) return 0;
    size_t first = SIZE_MAX;
    for (int32_t i = 0; i < n_stop; i++) {
        const char *p = memmem(hold, len, stop[i], stop_len[i]);
        if (p && (size_t)(p - hold) < first) first = (size_t)(p - hold);
    }
    if (first != SIZE_MAX) {
        *matched = true;
        return first;
    }
    /* A stop string starts with a lead byte (valid UTF-8), so the tail kept starts on a
     * character boundary. */
    size_t keep = 0;
    for (int32_t i = 0; i < n_stop; i++)
        for (size_t k = RL_MIN(len, stop_len[i] - 1); k > keep; k--)
            if (!memcmp(hold + len - k, stop[i], k)) {
                keep = k;
                break;
            }
    return len - keep;
}

static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, cp = c & 0x07;
        else return false;
        if (i + k >= n) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* ---- create / free -------------------------------------------------------------------- */

/* What each output buffer holds from creation (the reader's and every sequence's), so
 * that the steps of the engine thread allocate nothing for a reader that keeps up within
 * RL__OUT_TOKENS tokens (a slower one makes them grow, by doubling). */
#define RL__OUT_TOKENS 64
#define RL__OUT_TEXT 1024
#define RL__HOLD_TEXT (RL_ENGINE_MAX_STOP_LEN + 256)

static void ereq_destroy(rl_engine_request *r) {
    if (r->seq)
        for (int32_t k = 0; k < r->n; k++) {
            rl__eseq *q = &r->seq[k];
            rl_sampler_free(q->smp);
            rl_detok_free(q->detok);
            ebuf_free(&q->hold);
            ebuf_free(&q->out);
            etoks_free(&q->toks);
        }
    rl__free(r->seq);
    rl__rcon_free(r->con);
    for (int32_t i = 0; i < r->n_stop; i++) rl__free(r->stop[i]);
    rl__free(r->stop);
    rl__free(r->stop_len);
    ebuf_free(&r->r_text);
    etoks_free(&r->r_toks);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->nmu);
    rl__free(r);
}

void rl__ereq_unref(rl_engine_request *r) {
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) ereq_destroy(r);
}

void rl__ereq_notify(rl_engine_request *r) {
    pthread_mutex_lock(&r->nmu);
    if (r->notify_on) r->notify(r->notify_user);
    pthread_mutex_unlock(&r->nmu);
}

rl_status rl__ereq_create(rl_engine *e, const rl_engine_request_params *p,
                          const rl_token *prompt, int32_t n_prompt, int32_t max_new,
                          rl_engine_request **out, char *err, size_t es) {
    (void)prompt;
    *out = NULL;
    if (p->n_stop < 0 || p->n_stop > RL_ENGINE_MAX_STOP || (p->n_stop && !p->stop)) {
        rl__fmt(err, es, "stop: %d strings, expected 0..%d", p->n_stop, RL_ENGINE_MAX_STOP);
        return RL_ERR_INVALID_ARG;
    }
    for (int32_t i = 0; i < p->n_stop; i++) {
        const char *s = p->stop[i];
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > RL_ENGINE_MAX_STOP_LEN) {
            rl__fmt(err, es, "stop[%d]: %zu bytes, expected 1..%d", i, n, RL_ENGINE_MAX_STOP_LEN);
            return RL_ERR_INVALID_ARG;
        }
        if (!utf8_valid((const unsigned char *)s, n)) {
            rl__fmt(err, es, "stop[%d] is not valid UTF-8", i);
            return RL_ERR_INVALID_ARG;
        }
    }
    rl_sampler_params sp = p->sampling;
    rl_status st = rl_sampler_params_validate(&sp, e->n_vocab, err, es);
    if (st != RL_OK) return st;

    rl_engine_request *r = rl__calloc(1, sizeof *r);
    if (!r) goto nomem;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->nmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->refs, 1);
    r->e = e;
    r->n = p->n;
    r->n_prompt = n_prompt;
    r->max_new = max_new;
    r->logprobs = sp.logprobs;
    r->top_n = sp.logprobs ? sp.top_logprobs : 0;
    r->ignore_eos = p->ignore_eos && !p->grammar; /* a grammar says where the text ends */
    r->notify = p->notify;
    r->notify_user = p->notify_user;
    r->notify_on = p->notify != NULL;
    r->t_submit = rl__now();
    r->status = RL_OK;
    if (p->n_stop) {
        r->stop = rl__calloc((size_t)p->n_stop, sizeof *r->stop);
        r->stop_len = rl__calloc((size_t)p->n_stop, sizeof *r->stop_len);
        if (!r->stop || !r->stop_len) goto nomem_r;
        for (int32_t i = 0; i < p->n_stop; i++) {
            r->stop[i] = rl__strdup(p->stop[i]);
            if (!r->stop[i]) goto nomem_r;
            r->stop_len[i] = strlen(r->stop[i]);
            r->n_stop = i + 1;
        }
    }
    r->seq = rl__calloc((size_t)r->n, sizeof *r->seq);
    if (!r->seq) goto nomem_r;
    if (!ebuf_reserve(&r->r_text, RL__OUT_TEXT) ||
        !etoks_reserve(&r->r_toks, RL__OUT_TOKENS, r->top_n))
        goto nomem_r;
    for (int32_t k = 0; k < r->n; k++) {
        rl__eseq *q = &r->seq[k];
        if (!ebuf_reserve(&q->out, RL__OUT_TEXT) || !ebuf_reserve(&q->hold, RL__HOLD_TEXT) ||
            !etoks_reserve(&q->toks, RL__OUT_TOKENS, r->top_n))
            goto nomem_r;
    }
    if (p->grammar) {
        st = rl__rcon_create(e->gcache, p->grammar, p->grammar_root, r->n, &r->con, err, es);
        if (st != RL_OK) {
            ereq_destroy(r);
            return st;
        }
    }
    for (int32_t k = 0; k < r->n; k++) {
        rl__eseq *q = &r->seq[k];
        rl_sampler_params spk = sp;
        if (sp.seed != RL_SAMPLER_SEED_RANDOM) spk.seed = sp.seed + (uint64_t)k;
        st = rl_sampler_create(&spk, e->n_vocab, e->vocab, &q->smp, err, es);
        if (st != RL_OK) {
            ereq_destroy(r);
            return st;
        }
        /* Generated text continues the prompt: keep a SentencePiece token's leading
         * space, and no clean-up (it looks across tokens). */
        st = rl_detok_create(e->vocab,
                             RL_DETOK_KEEP_LEADING_SPACE | RL_DETOK_NO_CLEANUP |
                                 (p->special_text ? RL_DETOK_SPECIAL : 0),
                             &q->detok);
        if (st != RL_OK) {
            ereq_destroy(r);
            rl__fmt(err, es, "detokenizer: %s", rl_status_str(st));
            return st;
        }
        /* its buffers are made by its first text: one letter, then forgotten */
        if (e->warm_token != RL_TOKEN_NULL) {
            const char *txt;
            size_t len;
            if (rl_detok_push(q->detok, e->warm_token, &txt, &len) != RL_OK) goto nomem_r;
            rl_detok_reset(q->detok);
        }
    }
    *out = r;
    return RL_OK;

nomem_r:
    ereq_destroy(r);
nomem:
    rl__fmt(err, es, "out of memory");
    return RL_ERR_NOMEM;
}

/* ---- the engine side -------------------------------------------------------------- */

/* Move hold[0..n) to the sequence's unread text (r->mu held). */
static bool release(rl__eseq *q, size_t n) {
    if (!q->hold.len) return true;
    if (!ebuf_append(&q->out, q->hold.p, n)) return false;
    memmove(q->hold.p, q->hold.p + n, q->hold.len - n);
    q->hold.len -= n;
    return true;
}

static void set_error(rl_engine_request *r, rl_status st, const char *msg) {
    if (r->status == RL_OK) {
        r->status = st;
        rl__fmt(r->msg, sizeof r->msg, "%s", msg);
    }
}

bool rl__ereq_token(rl_engine *e, rl_engine_request *r, int32_t k, rl_token tok, double now) {
    rl__eseq *q = &r->seq[k];
    if (!r->first_token) {
        r->first_token = true;
        rl__hist_add(&e->ttft, now - r->t_submit);
    } else if (q->n_gen > 0) {
        rl__hist_add(&e->itl, now - q->t_last);
    }
    q->t_last = now;
    q->n_gen++;

    float lp = 0;
    int32_t n_top = 0;
    rl_token_logprob chosen, top[RL_SAMPLER_MAX_TOP_LOGPROBS];
    if (r->logprobs && rl_sampler_logprobs(q->smp, &chosen, top, r->top_n, &n_top) == RL_OK)
        lp = chosen.logprob;

    const bool eog = !r->ignore_eos && rl_vocab_is_eog(e->vocab, tok);
    bool ok = true, matched = false;
    if (!eog) {
        const char *txt;
        size_t n;
        if (rl_detok_push(q->detok, tok, &txt, &n) == RL_OK) ok = ebuf_append(&q->hold, txt, n);
    }
    size_t rel = rl__stop_scan(q->hold.p, q->hold.len, r->stop, r->stop_len, r->n_stop, &matched);
    pthread_mutex_lock(&r->mu);
    ok = ok && etoks_push(&q->toks, tok, lp, top, n_top);
    ok = ok && release(q, rel);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (!ok) {
        pthread_mutex_lock(&r->mu);
        set_error(r, RL_ERR_NOMEM, "out of memory while storing the output");
        pthread_mutex_unlock(&r->mu);
        rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_ERROR);
        return true;
    }
    if (matched) {
        q->hold.len = 0;
        rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_STOP);
        return true;
    }
    if (eog) {
        rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_STOP);
        return true;
    }
    return false;
}

void rl__ereq_finish_seq(rl_engine *e, rl_engine_request *r, int32_t k, rl_engine_finish f) {
    (void)e;
    rl__eseq *q = &r->seq[k];
    pthread_mutex_lock(&r->mu);
    if (q->finish != RL_ENGINE_FINISH_NONE) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    pthread_mutex_unlock(&r->mu);
    bool ok = true;
    if (f == RL_ENGINE_FINISH_STOP || f == RL_ENGINE_FINISH_LENGTH) {
        const char *txt;
        size_t n;
        if (rl_detok_flush(q->detok, &txt, &n) == RL_OK) ok = ebuf_append(&q->hold, txt, n);
        bool matched;
        size_t rel = rl__stop_scan(q->hold.p, q->hold.len, r->stop, r->stop_len, r->n_stop,
                                   &matched);
        if (matched) {
            f = RL_ENGINE_FINISH_STOP;
            q->hold.len = rel;
        }
    } else {
        q->hold.len = 0;
    }
    pthread_mutex_lock(&r->mu);
    ok = ok && release(q, q->hold.len);
    if (!ok) set_error(r, RL_ERR_NOMEM, "out of memory while storing the output");
    q->finish = ok ? f : RL_ENGINE_FINISH_ERROR;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void rl__ereq_done(rl_engine_request *r, rl_status st, const char *msg) {
    rl__rcon_free(r->con); /* no more sampling; nothing of r outlives the engine's grammars */
    r->con = NULL;
    pthread_mutex_lock(&r->mu);
    int32_t total = 0;
    for (int32_t k = 0; k < r->n; k++) {
        if (r->seq[k].finish == RL_ENGINE_FINISH_NONE) r->seq[k].finish = RL_ENGINE_FINISH_ABORT;
        total += r->seq[k].n_gen;
    }
    r->n_completion = total;
    if (st != RL_OK) set_error(r, st, msg ? msg : rl_status_str(st));
    r->done = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- the reader side ---------------------------------------------------------------- */

static bool has_news(const rl__eseq *q) {
    return q->out.len || q->toks.n || (q->finish && !q->finish_read);
}

/* Fill ev from the first sequence with news, or DONE (r->mu held). */
static bool take_event(rl_engine_request *r, rl_engine_event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->message = "";
    for (int32_t i = 0; i < r->n; i++) {
        int32_t k = (r->rr + i) % r->n;
        rl__eseq *q = &r->seq[k];
        if (!has_news(q)) continue;
        r->rr = (k + 1) % r->n;
        rl__ebuf tb = r->r_text;
        r->r_text = q->out;
        q->out = tb;
        q->out.len = 0;
        rl__etoks tt = r->r_toks;
        r->r_toks = q->toks;
        q->toks = tt;
        q->toks.n = q->toks.n_top = 0;
        int32_t off = 0;
        for (int32_t j = 0; j < r->r_toks.n; j++) {
            r->r_toks.t[j].top = r->r_toks.t[j].n_top ? r->r_toks.top + off : NULL;
            off += r->r_toks.t[j].n_top;
        }
        ev->type = RL_ENGINE_EVENT_DELTA;
        ev->seq_index = k;
        ev->text = r->r_text.p ? r->r_text.p : "";
        ev->text_len = r->r_text.len;
        ev->tokens = r->r_toks.t;
        ev->n_tokens = r->r_toks.n;
        if (q->finish) {
            ev->finish = q->finish;
            q->finish_read = true;
        }
        return true;
    }
    if (!r->done) return false;
    r->done_read = true;
    ev->type = RL_ENGINE_EVENT_DONE;
    ev->n_prompt_tokens = r->n_prompt;
    ev->n_cached_tokens = r->n_cached;
    ev->n_completion_tokens = r->n_completion;
    ev->status = r->status;
    ev->message = r->msg;
    return true;
}

RL_API rl_status rl_engine_next_event(rl_engine_request *r, int timeout_ms,
                                      rl_engine_event *ev) {
    if (!r || !ev) return RL_ERR_INVALID_ARG;
    pthread_mutex_lock(&r->mu);
    struct timespec until;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    for (;;) {
        if (take_event(r, ev)) break;
        if (timeout_ms == 0) {
            memset(ev, 0, sizeof *ev);
            ev->message = "";
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &r->mu);
        } else if (pthread_cond_timedwait(&r->cv, &r->mu, &until) != 0) {
            if (!take_event(r, ev)) {
                memset(ev, 0, sizeof *ev);
                ev->message = "";
            }
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return RL_OK;
}

RL_API const char *rl_engine_finish_name(rl_engine_finish f) {
    switch (f) {
    case RL_ENGINE_FINISH_STOP: return "stop";
    case RL_ENGINE_FINISH_LENGTH: return "length";
    case RL_ENGINE_FINISH_ABORT: return "abort";
    case RL_ENGINE_FINISH_ERROR: return "error";
    default: return "none";
    }
}
