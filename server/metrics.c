/*
 * metrics.c - GET /metrics in the Prometheus text exposition format (version 0.0.4):
 * the engine's counters, gauges and latency histograms, under the prefix ruvllm_.
 */
#include "server.h"

#include <math.h>
#include <stdlib.h>

static void gauge(sbuf *b, const char *name, const char *help, double v) {
    sbuf_addf(b, "# HELP ruvllm_%s %s\n# TYPE ruvllm_%s gauge\nruvllm_%s %.17g\n", name, help, name,
              name, v);
}

static void counter(sbuf *b, const char *name, const char *help, uint64_t v) {
    sbuf_addf(b, "# HELP ruvllm_%s %s\n# TYPE ruvllm_%s counter\nruvllm_%s %llu\n", name, help,
              name, name, (unsigned long long)v);
}

static void histogram(sbuf *b, const char *name, const char *help, const rl_engine_histogram *h) {
    sbuf_addf(b, "# HELP ruvllm_%s %s\n# TYPE ruvllm_%s histogram\n", name, help, name);
    for (int32_t i = 0; i < h->n_buckets; i++) {
        if (isinf(h->le[i]))
            sbuf_addf(b, "ruvllm_%s_bucket{le=\"+Inf\"} %llu\n", name,
                      (unsigned long long)h->count[i]);
        else
            sbuf_addf(b, "ruvllm_%s_bucket{le=\"%g\"} %llu\n", name, h->le[i],
                      (unsigned long long)h->count[i]);
    }
    sbuf_addf(b, "ruvllm_%s_sum %.17g\nruvllm_%s_count %llu\n", name, h->sum, name,
              (unsigned long long)h->total);
}

char *metrics_text(srv *s, size_t *len) {
    rl_engine_metrics m;
    rl_engine_metrics_get(s->engine, &m);
    sbuf b = {0};
    gauge(&b, "requests_running", "Requests with sequences in the running batch.", m.n_running);
    gauge(&b, "requests_waiting", "Requests waiting for admission.", m.n_waiting);
    gauge(&b, "sequences_running", "Sequences in the running batch.", m.n_running_seqs);
    counter(&b, "requests_submitted_total", "Requests accepted by the engine.", m.n_submitted);
    counter(&b, "requests_rejected_total", "Requests refused (bad input, queue full).",
            m.n_rejected);
    counter(&b, "requests_finished_total", "Requests that ended (stop, length, error).",
            m.n_finished);
    counter(&b, "requests_aborted_total", "Requests cancelled (client gone, shutdown).",
            m.n_aborted);
    counter(&b, "prompt_tokens_total", "Prompt tokens of accepted requests.", m.tokens_prompt);
    counter(&b, "prefill_tokens_total",
            "Prompt and recomputed tokens run through the model (prefix-cache hits excluded).",
            m.tokens_prefill);
    counter(&b, "generation_tokens_total", "Tokens generated.", m.tokens_generated);
    counter(&b, "steps_total", "Engine steps (forward passes).", m.n_steps);
    gauge(&b, "step_sequences_last", "Sequences in the last step.", m.last_step_seqs);
    gauge(&b, "step_sequences_max", "Most sequences batched in one step so far.",
          m.max_step_seqs);
    gauge(&b, "step_tokens_max", "Most tokens in one step so far.", m.max_step_tokens);
    histogram(&b, "step_sequences", "Sequences batched per step.", &m.step_seqs);
    counter(&b, "preemptions_total", "Requests preempted (KV blocks freed, recomputed later).",
            m.n_preemptions);
    gauge(&b, "kv_block_size_tokens", "Tokens per KV block.", m.kv_block_size);
    gauge(&b, "kv_blocks_total", "KV blocks in the pool.", m.kv_blocks_total);
    gauge(&b, "kv_blocks_used", "KV blocks held by sequences.", m.kv_blocks_used);
    gauge(&b, "kv_blocks_free", "KV blocks free (including cached, unreferenced ones).",
          m.kv_blocks_free);
    gauge(&b, "kv_blocks_cached", "KV blocks findable in the prefix cache.", m.kv_blocks_cached);
    counter(&b, "prefix_cache_queries_tokens_total", "Prompt tokens looked up in the prefix cache.",
            m.prefix_lookup_tokens);
    counter(&b, "prefix_cache_hits_tokens_total", "Prompt tokens found in the prefix cache.",
            m.prefix_hit_tokens);
    counter(&b, "prefix_cache_misses_tokens_total", "Prompt tokens not found in the prefix cache.",
            m.prefix_lookup_tokens - m.prefix_hit_tokens);
    counter(&b, "prefix_cache_queries_blocks_total", "Whole blocks looked up in the prefix cache.",
            m.prefix_lookup_blocks);
    counter(&b, "prefix_cache_hits_blocks_total", "Whole blocks found in the prefix cache.",
            m.prefix_hit_blocks);
    gauge(&b, "prefix_cache_hit_rate", "Prefix-cache hit tokens / looked-up tokens.",
          m.prefix_lookup_tokens ? (double)m.prefix_hit_tokens / (double)m.prefix_lookup_tokens
                                 : 0.0);
    histogram(&b, "time_to_first_token_seconds", "Time from submit to a request's first token.",
              &m.ttft);
    histogram(&b, "inter_token_latency_seconds", "Time between consecutive tokens of a sequence.",
              &m.itl);
    counter(&b, "client_disconnects_total", "Requests cancelled because the client went away.",
            atomic_load(&s->n_disconnects));
    static const char *const cls[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    sbuf_addf(&b, "# HELP ruvllm_http_responses_total HTTP responses by status class.\n"
                  "# TYPE ruvllm_http_responses_total counter\n");
    for (int i = 0; i < 6; i++)
        sbuf_addf(&b, "ruvllm_http_responses_total{class=\"%s\"} %llu\n", cls[i],
                  (unsigned long long)atomic_load(&s->http_requests[i]));
    *len = b.len;
    return b.p;
}
