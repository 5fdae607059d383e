/*
 * sched.c - continuous batching over the paged KV manager: queues ordered by (priority,
 * arrival), decode-first step plans under a token budget, chunked prefill, admission with
 * prefix-cache hits, recompute preemption of the last running request, n > 1 forks.
 * The policy is described in sched.h.
 */
#include "sched.h"

enum { REQ_WAITING = 0, REQ_RUNNING = 1 };

typedef struct sched_seq {
    int32_t kv;          /* KV sequence id; -1 once finished */
    int32_t n_generated; /* tokens sampled so far */
    uint8_t finish;      /* rl__sched_finish; NONE while live */
    int32_t sched;       /* tokens scheduled in the step being built */
    bool logits, prefill;
} sched_seq;

typedef struct sched_req {
    uint64_t id, arrival;
    int32_t priority;
    int32_t n_prompt, max_new, n, n_live;
    uint8_t state;
    bool split;         /* n_live > 1: the others share the lead's prompt blocks */
    bool in_plan;       /* has items in the outstanding plan */
    bool abort_pending; /* aborted while in the outstanding plan */
    sched_seq seqs[];
} sched_req;

struct rl__sched {
    rl__sched_params p;
    rl__kv *kv;
    int32_t bs;
    sched_req **waiting; /* sorted; capacity >= live requests, so moves never allocate */
    int32_t n_waiting, cap_waiting;
    sched_req **running; /* sorted; at most max_seqs (each holds a seat) */
    int32_t n_running;
    int32_t seats; /* live sequences of running requests */
    uint64_t next_arrival;
    /* the plan being built or out */
    rl__sched_plan plan;
    rl__sched_item *items; /* [max_seqs] */
    sched_req **item_req;  /* [max_seqs] */
    int32_t *item_seq;     /* [max_seqs] */
    uint64_t *preempted;   /* [max_seqs] */
    int32_t budget;
    bool outstanding, preempted_this_step;
    rl__sched_event *events; /* [2 * max_seqs] */
    int32_t n_events;
    rl__sched_stats st;
    char err[256];
};

static void seterr(rl__sched *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(rl__sched *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

rl__sched_params rl__sched_default_params(void) {
    rl__sched_params p = {0};
    p.batch_tokens = 512;
    p.max_seqs = 64;
    return p;
}

const char *rl__sched_errmsg(const rl__sched *s) { return s ? s->err : "sched is NULL"; }

rl_status rl__sched_create(const rl__sched_params *p, rl__kv *kv, rl__sched **out, char *err,
                           size_t err_size) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!p || !kv) {
        rl__fmt(err, err_size, "sched: %s is NULL", p ? "kv" : "params");
        return RL_ERR_INVALID_ARG;
    }
    if (p->max_seqs < 1 || p->max_seqs > (1 << 20)) {
        rl__fmt(err, err_size, "sched: max_seqs %d out of range 1..%d", (int)p->max_seqs, 1 << 20);
        return RL_ERR_INVALID_ARG;
    }
    if (p->batch_tokens < p->max_seqs) {
        rl__fmt(err, err_size,
                "sched: batch_tokens %d is below max_seqs %d (every running "
                "sequence must be able to decode in one step)",
                (int)p->batch_tokens, (int)p->max_seqs);
        return RL_ERR_INVALID_ARG;
    }
    if (p->chunk_tokens < 0 || p->max_waiting < 0 || p->n_ctx_max < 0) {
        rl__fmt(err, err_size, "sched: %s is negative",
                p->chunk_tokens < 0  ? "chunk_tokens"
                : p->max_waiting < 0 ? "max_waiting"
                                     : "n_ctx_max");
        return RL_ERR_INVALID_ARG;
    }
    rl__sched *s = rl__calloc(1, sizeof *s);
    if (!s) goto fail;
    s->p = *p;
    s->kv = kv;
    s->bs = rl__kv_block_size(kv);
    size_t m = (size_t)p->max_seqs;
    s->running = rl__malloc(m * sizeof *s->running);
    s->items = rl__malloc(m * sizeof *s->items);
    s->item_req = rl__malloc(m * sizeof *s->item_req);
    s->item_seq = rl__malloc(m * sizeof *s->item_seq);
    s->preempted = rl__malloc(m * sizeof *s->preempted);
    s->events = rl__malloc(2 * m * sizeof *s->events);
    /* A sequence is scheduled at most once per step and queues at most one copy. */
    if (!s->running || !s->items || !s->item_req || !s->item_seq || !s->preempted || !s->events ||
        rl__kv_copies_reserve(kv, p->max_seqs) != RL_OK)
        goto fail_free;
    *out = s;
    return RL_OK;
fail_free:
    rl__sched_free(s);
fail:
    rl__fmt(err, err_size, "sched: out of memory");
    return RL_ERR_NOMEM;
}

static void free_req(rl__sched *s, sched_req *r) {
    for (int32_t k = 0; k < r->n; k++)
        if (r->seqs[k].kv >= 0) rl__kv_seq_free(s->kv, r->seqs[k].kv);
    rl__free(r);
}

void rl__sched_free(rl__sched *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_waiting; i++) free_req(s, s->waiting[i]);
    for (int32_t i = 0; i < s->n_running; i++) free_req(s, s->running[i]);
    rl__free(s->waiting);
    rl__free(s->running);
    rl__free(s->items);
    rl__free(s->item_req);
    rl__free(s->item_seq);
    rl__free(s->preempted);
    rl__free(s->events);
    rl__free(s);
}

/* ---- queues ---------------------------------------------------------------------------- */

static bool before(const sched_req *a, const sched_req *b) {
    return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
}

static void queue_insert(sched_req **q, int32_t *n, sched_req *r) {
    int32_t lo = 0, hi = *n;
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (before(q[mid], r))
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(q + lo + 1, q + lo, (size_t)(*n - lo) * sizeof *q);
    q[lo] = r;
    (*n)++;
}

static void queue_remove(sched_req **q, int32_t *n, sched_req *r) {
    int32_t i = 0;
    while (i < *n && q[i] != r) i++;
    if (i == *n) return;
    memmove(q + i, q + i + 1, (size_t)(*n - i - 1) * sizeof *q);
    (*n)--;
}

static sched_req *find_req(const rl__sched *s, uint64_t id) {
    for (int32_t i = 0; i < s->n_running; i++)
        if (s->running[i]->id == id) return s->running[i];
    for (int32_t i = 0; i < s->n_waiting; i++)
        if (s->waiting[i]->id == id) return s->waiting[i];
    return NULL;
}

int32_t rl__sched_n_live(const rl__sched *s) { return s->n_waiting + s->n_running; }

/* ---- add / abort ------------------------------------------------------------------------ */

/* Worst-case blocks of a request running alone: each of its n sequences holds at most
 * n_prompt + max_new - 1 tokens of K/V (the last sampled token is never computed); the
 * whole blocks of the prompt's first n_prompt - 1 tokens are shared by all n. */
static int64_t blocks_bound(int32_t n_prompt, int32_t max_new, int32_t n, int32_t bs) {
    int64_t per = ((int64_t)n_prompt + max_new - 1 + bs - 1) / bs;
    int64_t shared = (int64_t)(n_prompt - 1) / bs;
    return shared + (int64_t)n * (per - shared);
}

rl_status rl__sched_add(rl__sched *s, const rl__sched_req *q) {
    if (!s || !q) return RL_ERR_INVALID_ARG;
    if (!q->prompt || q->n_prompt < 1) {
        seterr(s, "request %llu: prompt is empty", (unsigned long long)q->id);
        return RL_ERR_INVALID_ARG;
    }
    if (q->max_new_tokens < 1) {
        seterr(s, "request %llu: max_new_tokens %d must be at least 1", (unsigned long long)q->id,
               (int)q->max_new_tokens);
        return RL_ERR_INVALID_ARG;
    }
    if (q->n < 1 || q->n > s->p.max_seqs) {
        seterr(s, "request %llu: n %d out of range 1..%d", (unsigned long long)q->id, (int)q->n,
               (int)s->p.max_seqs);
        return RL_ERR_INVALID_ARG;
    }
    if (!q->salt && q->salt_len) {
        seterr(s, "request %llu: salt is NULL with salt_len %zu", (unsigned long long)q->id,
               q->salt_len);
        return RL_ERR_INVALID_ARG;
    }
    for (int32_t i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0) {
            seterr(s, "request %llu: prompt[%d] = %d is not a token id", (unsigned long long)q->id,
                   (int)i, (int)q->prompt[i]);
            return RL_ERR_INVALID_ARG;
        }
    if (find_req(s, q->id)) {
        seterr(s, "request %llu: id already in use", (unsigned long long)q->id);
        return RL_ERR_INVALID_ARG;
    }
    int64_t total = (int64_t)q->n_prompt + q->max_new_tokens;
    if (total > INT32_MAX / 2 || (s->p.n_ctx_max && total > s->p.n_ctx_max)) {
        seterr(s,
               "request %llu: prompt of %d tokens + max_new_tokens %d exceeds the context "
               "of %d tokens",
               (unsigned long long)q->id, (int)q->n_prompt, (int)q->max_new_tokens,
               (int)(s->p.n_ctx_max ? s->p.n_ctx_max : INT32_MAX / 2));
        return RL_ERR_RANGE;
    }
    int64_t need = blocks_bound(q->n_prompt, q->max_new_tokens, q->n, s->bs);
    if (need > rl__kv_n_blocks(s->kv)) {
        seterr(s,
               "request %llu: prompt of %d tokens + max_new_tokens %d (n = %d) needs up to "
               "%lld KV blocks of %d tokens, but the whole pool has %d",
               (unsigned long long)q->id, (int)q->n_prompt, (int)q->max_new_tokens, (int)q->n,
               (long long)need, (int)s->bs, (int)rl__kv_n_blocks(s->kv));
        return RL_ERR_LIMIT;
    }
    if (s->p.max_waiting && s->n_waiting >= s->p.max_waiting) {
        seterr(s, "request %llu: the waiting queue is full (%d requests)",
               (unsigned long long)q->id, (int)s->p.max_waiting);
        return RL_ERR_LIMIT;
    }
    int32_t live = s->n_waiting + s->n_running;
    if (live + 1 > s->cap_waiting) {
        int32_t cap = s->cap_waiting ? s->cap_waiting * 2 : 64;
        sched_req **w = rl__realloc(s->waiting, (size_t)cap * sizeof *w);
        if (!w) goto nomem;
        s->waiting = w;
        s->cap_waiting = cap;
    }
    sched_req *r = rl__calloc(1, sizeof *r + (size_t)q->n * sizeof(sched_seq));
    if (!r) goto nomem;
    r->id = q->id;
    r->priority = q->priority;
    r->n_prompt = q->n_prompt;
    r->max_new = q->max_new_tokens;
    r->n = r->n_live = q->n;
    for (int32_t k = 0; k < q->n; k++) r->seqs[k].kv = -1;
    for (int32_t k = 0; k < q->n; k++) {
        rl_status st =
            rl__kv_seq_create(s->kv, q->salt, q->salt_len, (int32_t)total, &r->seqs[k].kv);
        if (st == RL_OK) st = rl__kv_seq_add_tokens(s->kv, r->seqs[k].kv, q->prompt, q->n_prompt);
        if (st != RL_OK) {
            if (r->seqs[k].kv >= 0) rl__kv_seq_free(s->kv, r->seqs[k].kv);
            r->seqs[k].kv = -1;
            free_req(s, r);
            if (st == RL_ERR_NOMEM) goto nomem;
            seterr(s, "request %llu: %s", (unsigned long long)q->id, rl__kv_errmsg(s->kv));
            return st;
        }
    }
    r->arrival = s->next_arrival++;
    r->state = REQ_WAITING;
    queue_insert(s->waiting, &s->n_waiting, r);
    s->st.n_added++;
    return RL_OK;
nomem:
    seterr(s, "request %llu: out of memory", (unsigned long long)q->id);
    return RL_ERR_NOMEM;
}

/* Forget a request: free its sequences and remove it from its queue. */
static void drop_req(rl__sched *s, sched_req *r) {
    if (r->state == REQ_RUNNING) {
        queue_remove(s->running, &s->n_running, r);
        s->seats -= r->n_live;
    } else {
        queue_remove(s->waiting, &s->n_waiting, r);
    }
    free_req(s, r);
}

rl_status rl__sched_abort(rl__sched *s, uint64_t id) {
    sched_req *r = find_req(s, id);
    if (!r || r->abort_pending) {
        seterr(s, "abort: no live request %llu", (unsigned long long)id);
        return RL_ERR_NOT_FOUND;
    }
    s->st.n_aborted++;
    if (s->outstanding && r->in_plan)
        r->abort_pending = true;
    else
        drop_req(s, r);
    return RL_OK;
}

/* ---- building a step --------------------------------------------------------------------- */

static int32_t lead_of(const sched_req *r) {
    for (int32_t k = 0; k < r->n; k++)
        if (!r->seqs[k].finish) return k;
    return -1;
}

/* Tokens sequence k of r still has to compute before it can be sampled (or, for the lead
 * of an unsplit n > 1 request, before the fork). 0 for a sequence waiting for the fork. */
static int32_t want(const rl__sched *s, const sched_req *r, int32_t k, bool *to_end) {
    const sched_seq *q = &r->seqs[k];
    *to_end = false;
    if (q->finish) return 0;
    bool unsplit = r->n_live > 1 && !r->split;
    if (unsplit && k != lead_of(r)) return 0;
    int32_t n_tok = rl__kv_seq_n_tokens(s->kv, q->kv);
    int32_t target = unsplit ? r->n_prompt - 1 : n_tok;
    *to_end = !unsplit;
    return target - rl__kv_seq_n_computed(s->kv, q->kv);
}

/* Fork an unsplit n > 1 request once its lead has computed all of the prompt but the last
 * token: the other live sequences take references on those blocks. */
static rl_status maybe_split(rl__sched *s, sched_req *r) {
    if (r->n_live < 2 || r->split) return RL_OK;
    int32_t lead = lead_of(r), n = r->n_prompt - 1;
    if (rl__kv_seq_n_computed(s->kv, r->seqs[lead].kv) != n) return RL_OK;
    for (int32_t k = 0; k < r->n; k++) {
        if (k == lead || r->seqs[k].finish) continue;
        rl_status st = rl__kv_seq_share_prefix(s->kv, r->seqs[k].kv, r->seqs[lead].kv, n);
        if (st) {
            seterr(s, "request %llu: fork: %s", (unsigned long long)r->id, rl__kv_errmsg(s->kv));
            return RL_ERR_INTERNAL;
        }
    }
    r->split = true;
    return RL_OK;
}

/* Largest c <= n such that reserving c tokens fits in the free blocks now. */
static int32_t fit(const rl__sched *s, int32_t kv_seq, int32_t n) {
    int32_t free = rl__kv_n_free(s->kv);
    if (rl__kv_seq_blocks_needed(s->kv, kv_seq, n) <= free) return n;
    int32_t lo = 0, hi = n; /* fits(lo), !fits(hi) */
    while (hi - lo > 1) {
        int32_t mid = lo + (hi - lo) / 2;
        if (rl__kv_seq_blocks_needed(s->kv, kv_seq, mid) <= free)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static void unschedule(rl__sched *s, sched_req *r) {
    for (int32_t k = 0; k < r->n; k++) {
        s->budget += r->seqs[k].sched;
        r->seqs[k].sched = 0;
    }
}

/* Recompute preemption: release every block of r and queue it again at its place. */
static void preempt(rl__sched *s, sched_req *r) {
    unschedule(s, r);
    for (int32_t k = 0; k < r->n; k++)
        if (!r->seqs[k].finish) rl__kv_seq_release(s->kv, r->seqs[k].kv);
    r->split = false;
    queue_remove(s->running, &s->n_running, r);
    s->seats -= r->n_live;
    r->state = REQ_WAITING;
    queue_insert(s->waiting, &s->n_waiting, r);
    s->preempted[s->plan.n_preempted++] = r->id;
    s->preempted_this_step = true;
    s->st.n_preemptions++;
}

static void push_event(rl__sched *s, const sched_req *r, int32_t k, rl__sched_finish why) {
    rl__sched_event *e = &s->events[s->n_events++];
    e->id = r->id;
    e->seq_index = k;
    e->reason = why;
    e->request_done = r->n_live == 0;
}

/* End sequence k of a running request; its blocks are freed at once. */
static void finish_seq(rl__sched *s, sched_req *r, int32_t k, rl__sched_finish why) {
    sched_seq *q = &r->seqs[k];
    rl__kv_seq_free(s->kv, q->kv);
    q->kv = -1;
    q->finish = (uint8_t)why;
    q->sched = 0;
    r->n_live--;
    s->seats--;
    push_event(s, r, k, why);
    if (r->n_live == 0) s->st.n_finished++;
}

/* Reserve c tokens for sequence k (they fit: checked by the caller; the copy list has
 * room for a copy per sequence) and record them in the step. */
static rl_status take(rl__sched *s, sched_req *r, int32_t k, int32_t c, bool to_end) {
    sched_seq *q = &r->seqs[k];
    bool fits = false;
    rl_status st = rl__kv_seq_reserve(s->kv, q->kv, c, &fits);
    if (st || !fits) {
        seterr(s, "request %llu: reserve of %d tokens failed: %s", (unsigned long long)r->id,
               (int)c, st ? rl__kv_errmsg(s->kv) : "no fit");
        return RL_ERR_INTERNAL;
    }
    int32_t n_comp = rl__kv_seq_n_computed(s->kv, q->kv);
    int32_t n_tok = rl__kv_seq_n_tokens(s->kv, q->kv);
    q->sched = c;
    q->logits = to_end && n_comp + c == n_tok;
    q->prefill = !(c == 1 && n_comp + 1 == n_tok && q->n_generated > 0);
    s->budget -= c;
    return RL_OK;
}

/* Schedule sequence k of running request r: its whole remaining work or a chunk of it,
 * shrunk to the free blocks; when nothing fits, preempt the last running request (r
 * itself when it is last). Returns 1 scheduled, 0 nothing to do or no budget, -1 r left
 * the running queue. An internal error in *st. */
static int schedule_seq(rl__sched *s, sched_req *r, int32_t k, rl_status *st) {
    bool to_end;
    int32_t w = want(s, r, k, &to_end);
    if (w <= 0) return 0;
    int32_t c = RL_MIN(w, s->budget);
    if (w > 1 && s->p.chunk_tokens > 0) c = RL_MIN(c, s->p.chunk_tokens);
    if (c <= 0) return 0;
    for (;;) {
        int32_t cf = fit(s, r->seqs[k].kv, c);
        if (cf > 0) {
            *st = take(s, r, k, cf, to_end);
            return *st ? 0 : 1;
        }
        sched_req *victim = s->running[s->n_running - 1];
        if (victim != r) {
            preempt(s, victim);
            continue;
        }
        if (s->n_running == 1) {
            /* Alone and still nothing fits: the pool is held outside this scheduler. */
            unschedule(s, r);
            for (int32_t j = 0; j < r->n; j++)
                if (!r->seqs[j].finish) finish_seq(s, r, j, RL_SCHED_FINISH_ERROR);
            seterr(s, "request %llu: no KV block free although it runs alone",
                   (unsigned long long)r->id);
            drop_req(s, r);
            return -1;
        }
        preempt(s, r);
        return -1;
    }
}

/* Admit the head of the waiting queue if its lead's first chunk fits now (after its
 * prefix-cache hit, which is looked up without side effects first). */
static bool admit(rl__sched *s, sched_req *r, rl_status *st) {
    if (s->seats + r->n_live > s->p.max_seqs) return false;
    int32_t lead = lead_of(r);
    int32_t kvs = r->seqs[lead].kv;
    bool unsplit = r->n_live > 1;
    int32_t n_tok = rl__kv_seq_n_tokens(s->kv, kvs);
    int32_t target = unsplit ? r->n_prompt - 1 : n_tok;
    int32_t max_hit = unsplit ? target : n_tok - 1;
    int32_t hit = 0, hit_free = 0;
    rl__kv_seq_peek_prefix(s->kv, kvs, max_hit, &hit, &hit_free);
    int32_t w = target - hit;
    int32_t c = RL_MIN(w, s->budget);
    if (w > 1 && s->p.chunk_tokens > 0) c = RL_MIN(c, s->p.chunk_tokens);
    if (w > 0 && c <= 0) return false;
    int32_t need = (c + s->bs - 1) / s->bs;
    if (need > rl__kv_n_free(s->kv) - hit_free) return false;
    rl__kv_seq_match_prefix(s->kv, kvs, max_hit, &hit);
    queue_remove(s->waiting, &s->n_waiting, r);
    r->state = REQ_RUNNING;
    queue_insert(s->running, &s->n_running, r);
    s->seats += r->n_live;
    if (c > 0) *st = take(s, r, lead, c, !unsplit);
    return true;
}

/* Items in running order from the sequences' scheduled counts. */
static void build_items(rl__sched *s) {
    rl__sched_plan *pl = &s->plan;
    pl->n_items = 0;
    pl->n_tokens = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        r->in_plan = false;
        for (int32_t k = 0; k < r->n; k++) {
            sched_seq *q = &r->seqs[k];
            if (q->sched <= 0) continue;
            rl__sched_item *it = &s->items[pl->n_items];
            it->id = r->id;
            it->seq_index = k;
            it->kv_seq = q->kv;
            it->pos = rl__kv_seq_n_computed(s->kv, q->kv);
            it->n_tokens = q->sched;
            it->tokens = rl__kv_seq_tokens(s->kv, q->kv) + it->pos;
            it->block_table = rl__kv_seq_blocks(s->kv, q->kv, &it->n_blocks);
            it->logits = q->logits;
            it->prefill = q->prefill;
            s->item_req[pl->n_items] = r;
            s->item_seq[pl->n_items] = k;
            pl->n_items++;
            pl->n_tokens += q->sched;
            r->in_plan = true;
            s->st.tokens_prefill += q->prefill ? (uint64_t)q->sched : 0;
        }
    }
    pl->items = s->items;
    pl->preempted = s->preempted;
    pl->copies = rl__kv_copies(s->kv, &pl->n_copies);
}

rl_status rl__sched_step(rl__sched *s, const rl__sched_plan **plan) {
    if (!s || !plan) return RL_ERR_INVALID_ARG;
    *plan = NULL;
    if (s->outstanding) {
        seterr(s, "step: the previous plan has not been reported with rl__sched_update");
        return RL_ERR_INVALID_ARG;
    }
    rl_status st = RL_OK;
    rl__kv_copies_clear(s->kv);
    s->n_events = 0;
    s->budget = s->p.batch_tokens;
    s->plan.n_preempted = 0;
    s->preempted_this_step = false;
    for (int32_t i = 0; i < s->n_running; i++)
        for (int32_t k = 0; k < s->running[i]->n; k++) s->running[i]->seqs[k].sched = 0;

    /* 1. decodes (one token to compute), 2. prefill chunks; both in running order. A
     * preemption removes requests from the end, so index i stays valid. */
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t i = 0; i < s->n_running; i++) {
            sched_req *r = s->running[i];
            if (pass == 0 && (st = maybe_split(s, r))) return st;
            for (int32_t k = 0; k < r->n; k++) {
                bool to_end;
                int32_t w = want(s, r, k, &to_end);
                if (w <= 0 || (pass == 0) != (w == 1) || r->seqs[k].sched) continue;
                int res = schedule_seq(s, r, k, &st);
                if (st) return st;
                if (res < 0) break;
            }
        }
    }
    /* 3. admission, in queue order, head of line blocking */
    if (!s->preempted_this_step) {
        while (s->n_waiting > 0 && s->budget > 0) {
            sched_req *r = s->waiting[0];
            if (!admit(s, r, &st)) break;
            if (st || (st = maybe_split(s, r))) return st;
            /* after a fork at admission (whole prompt cached): the other sequences, as
             * blocks allow, without preempting */
            for (int32_t k = 0; k < r->n; k++) {
                bool to_end;
                int32_t w = want(s, r, k, &to_end);
                if (r->seqs[k].sched || w <= 0 || s->budget <= 0) continue;
                int32_t c = RL_MIN(w, s->budget);
                if (w > 1 && s->p.chunk_tokens > 0) c = RL_MIN(c, s->p.chunk_tokens);
                c = fit(s, r->seqs[k].kv, c);
                if (c > 0 && (st = take(s, r, k, c, to_end))) return st;
            }
        }
    }
    build_items(s);
    s->outstanding = true;
    s->st.n_steps++;
    s->st.tokens_scheduled += (uint64_t)s->plan.n_tokens;
    s->st.last_step_tokens = s->plan.n_tokens;
    s->st.last_step_seqs = s->plan.n_items;
    s->st.max_step_tokens = RL_MAX(s->st.max_step_tokens, s->plan.n_tokens);
    s->st.max_step_seqs = RL_MAX(s->st.max_step_seqs, s->plan.n_items);
    *plan = &s->plan;
    return RL_OK;
}

/* ---- after the forward pass -------------------------------------------------------------- */

rl_status rl__sched_update(rl__sched *s, const rl__sched_output *out, int32_t n_out,
                           const rl__sched_event **events, int32_t *n_events) {
    if (!s) return RL_ERR_INVALID_ARG;
    if (!s->outstanding) {
        seterr(s, "update: no plan is out");
        return RL_ERR_INVALID_ARG;
    }
    const rl__sched_plan *pl = &s->plan;
    if (out && n_out != pl->n_items) {
        seterr(s, "update: %d outputs for a plan of %d items", (int)n_out, (int)pl->n_items);
        return RL_ERR_INVALID_ARG;
    }
    if (out)
        for (int32_t i = 0; i < pl->n_items; i++)
            if (pl->items[i].logits && !out[i].stop && out[i].token < 0 &&
                !s->item_req[i]->abort_pending) {
                seterr(s, "update: out[%d].token = %d is not a token id", (int)i,
                       (int)out[i].token);
                return RL_ERR_INVALID_ARG;
            }
    for (int32_t i = 0; i < pl->n_items; i++) {
        sched_req *r = s->item_req[i];
        if (r->abort_pending || r->state != REQ_RUNNING) continue;
        if (!out) { /* the plan did not run */
            preempt(s, r);
            continue;
        }
        int32_t k = s->item_seq[i];
        sched_seq *q = &r->seqs[k];
        q->sched = 0;
        rl__kv_seq_computed(s->kv, q->kv, pl->items[i].n_tokens);
        if (!pl->items[i].logits) continue;
        q->n_generated++;
        s->st.tokens_generated++;
        rl__sched_finish why = out[i].stop                    ? RL_SCHED_FINISH_STOP
                               : q->n_generated >= r->max_new ? RL_SCHED_FINISH_LENGTH
                                                              : RL_SCHED_FINISH_NONE;
        if (why)
            finish_seq(s, r, k, why);
        else
            rl__kv_seq_add_tokens(s->kv, q->kv, &out[i].token, 1); /* within capacity */
    }
    /* Requests that ended or were aborted meanwhile leave now. A request's items are
     * consecutive; its entries are cleared before it is freed. */
    for (int32_t i = 0; i < pl->n_items; i++) {
        sched_req *r = s->item_req[i];
        if (!r) continue;
        for (int32_t j = i; j < pl->n_items && s->item_req[j] == r; j++) s->item_req[j] = NULL;
        r->in_plan = false;
        if (r->abort_pending || r->n_live == 0) drop_req(s, r);
    }
    if (!out) s->plan.n_preempted = 0;
    s->outstanding = false;
    if (events) *events = s->events;
    if (n_events) *n_events = s->n_events;
    return RL_OK;
}

/* ---- counters and checks ------------------------------------------------------------------ */

void rl__sched_stats_get(const rl__sched *s, rl__sched_stats *st) {
    *st = s->st;
    st->n_running = s->n_running;
    st->n_waiting = s->n_waiting;
    st->n_running_seqs = s->seats;
    rl__kv_stats ks;
    rl__kv_stats_get(s->kv, &ks);
    st->prefix_lookup_tokens = ks.lookup_tokens;
    st->prefix_hit_tokens = ks.hit_tokens;
    st->prefix_hit_rate = ks.lookup_tokens ? (double)ks.hit_tokens / (double)ks.lookup_tokens : 0;
    st->kv_blocks_used = ks.n_used;
    st->kv_blocks_free = ks.n_free;
    st->kv_blocks_cached = ks.n_cached;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        rl__fmt(err, err_size, __VA_ARGS__);                                                       \
        return RL_ERR_INTERNAL;                                                                    \
    } while (0)

static rl_status check_req(const rl__sched *s, const sched_req *r, int state, char *err,
                           size_t err_size) {
    unsigned long long id = (unsigned long long)r->id;
    if (r->state != state) FAIL("request %llu: state %d in queue %d", id, r->state, state);
    int32_t live = 0, lead = lead_of(r);
    bool unsplit = r->n_live > 1 && !r->split;
    for (int32_t k = 0; k < r->n; k++) {
        const sched_seq *q = &r->seqs[k];
        if (q->finish) {
            if (q->kv != -1)
                FAIL("request %llu seq %d: finished but holds kv %d", id, (int)k, (int)q->kv);
            continue;
        }
        live++;
        int32_t n_tok = rl__kv_seq_n_tokens(s->kv, q->kv);
        if (n_tok != r->n_prompt + q->n_generated)
            FAIL("request %llu seq %d: %d tokens, prompt %d + generated %d", id, (int)k, (int)n_tok,
                 (int)r->n_prompt, (int)q->n_generated);
        if (q->n_generated >= r->max_new)
            FAIL("request %llu seq %d: live with %d generated of %d", id, (int)k,
                 (int)q->n_generated, (int)r->max_new);
        int32_t slots = rl__kv_seq_n_slots(s->kv, q->kv);
        if (state == REQ_WAITING && slots != 0)
            FAIL("request %llu seq %d: waiting with %d slots", id, (int)k, (int)slots);
        if (unsplit && k != lead && slots != 0)
            FAIL("request %llu seq %d: not forked yet but holds %d slots", id, (int)k, (int)slots);
    }
    if (live != r->n_live)
        FAIL("request %llu: %d live seqs, counted %d", id, (int)r->n_live, (int)live);
    if (live == 0) FAIL("request %llu: no live sequence", id);
    if (state == REQ_WAITING && r->split) FAIL("request %llu: waiting but split", id);
    return RL_OK;
}

rl_status rl__sched_check(const rl__sched *s, char *err, size_t err_size) {
    int32_t seats = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        if (i && !before(s->running[i - 1], s->running[i]))
            FAIL("running queue out of order at %d", (int)i);
        rl_status st = check_req(s, s->running[i], REQ_RUNNING, err, err_size);
        if (st) return st;
        seats += s->running[i]->n_live;
    }
    for (int32_t i = 0; i < s->n_waiting; i++) {
        if (i && !before(s->waiting[i - 1], s->waiting[i]))
            FAIL("waiting queue out of order at %d", (int)i);
        rl_status st = check_req(s, s->waiting[i], REQ_WAITING, err, err_size);
        if (st) return st;
    }
    if (seats != s->seats) FAIL("seats %d, counted %d", (int)s->seats, (int)seats);
    if (seats > s->p.max_seqs)
        FAIL("%d running sequences > max_seqs %d", (int)seats, (int)s->p.max_seqs);
    if (s->n_waiting + s->n_running > s->cap_waiting && s->n_waiting + s->n_running > 0)
        FAIL("waiting capacity %d below %d live requests", (int)s->cap_waiting,
             (int)(s->n_waiting + s->n_running));
    if (s->outstanding) {
        const rl__sched_plan *pl = &s->plan;
        int32_t tok = 0;
        for (int32_t i = 0; i < pl->n_items; i++) {
            const rl__sched_item *it = &pl->items[i];
            tok += it->n_tokens;
            if (it->n_tokens < 1) FAIL("item %d: %d tokens", (int)i, (int)it->n_tokens);
            if (it->pos + it->n_tokens > rl__kv_seq_n_slots(s->kv, it->kv_seq))
                FAIL("item %d: positions up to %d beyond the reserved %d", (int)i,
                     (int)(it->pos + it->n_tokens), (int)rl__kv_seq_n_slots(s->kv, it->kv_seq));
            if (it->pos != rl__kv_seq_n_computed(s->kv, it->kv_seq))
                FAIL("item %d: starts at %d, computed %d", (int)i, (int)it->pos,
                     (int)rl__kv_seq_n_computed(s->kv, it->kv_seq));
        }
        if (tok != pl->n_tokens || tok > s->p.batch_tokens)
            FAIL("plan of %d tokens (says %d), budget %d", (int)tok, (int)pl->n_tokens,
                 (int)s->p.batch_tokens);
        if (pl->n_items > s->p.max_seqs) FAIL("plan of %d items", (int)pl->n_items);
    }
    return rl__kv_check(s->kv, err, err_size);
}
