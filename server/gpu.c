/*
 * gpu.c - `ruvllm serve --device cuda --gpu-mem F`: size the engine's KV pool to the share
 * of GPU memory the model was granted (rl_model_device_budget) and say at startup how
 * many tokens of KV fit and how many sequences of --ctx tokens that serves at once.
 */
#include "server.h"

#include <stdio.h>
#include <string.h>

bool rl__srv_device_plan(rl_server_opts *o, const rl_model *m) {
    if (!o->device || !strcmp(o->device, "cpu")) return true;
    rl_engine_params *ep = &o->engine;
    rl_device_budget b;
    char err[512] = "";
    rl_status st = rl_model_device_budget(m, ep->kv_type, ep->batch_tokens, &b, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm serve: error: --device %s: %s\n", o->device,
                err[0] ? err : rl_status_str(st));
        return false;
    }
    int32_t n_ctx = ep->n_ctx;
    if (n_ctx <= 0) {
        n_ctx = rl_model_n_ctx_train(m);
        if (n_ctx <= 0 || n_ctx > 4096) n_ctx = 4096; /* the engine's default */
    }
    const double gib = 1073741824.0;
    char cap[64];
    if (o->gpu_mem > 0)
        snprintf(cap, sizeof cap, "--gpu-mem %g", (double)o->gpu_mem);
    else
        snprintf(cap, sizeof cap, "no --gpu-mem cap");
    fprintf(stderr,
            "ruvllm serve: %s: %.2f of %.2f GiB (%s, %.2f GiB free): weights %.1f MiB, "
            "scratch %.1f MiB, KV cache room for %lld tokens (%s, %.1f KiB each): at most %lld "
            "sequences of %d tokens at once (--parallel %d)\n",
            b.device, (double)b.budget / gib, (double)b.total / gib, cap, (double)b.free / gib,
            (double)b.weights / 1048576.0, (double)b.workspace / 1048576.0, (long long)b.kv_tokens,
            rl_type_name(ep->kv_type), (double)b.kv_token_bytes / 1024.0,
            (long long)(b.kv_tokens / n_ctx), (int)n_ctx, (int)ep->n_parallel);
    const uint64_t room = (uint64_t)b.kv_tokens * b.kv_token_bytes;
    if (b.kv_tokens < n_ctx) {
        fprintf(stderr,
                "ruvllm serve: error: one sequence of --ctx %d tokens needs %.1f MiB of KV "
                "cache; %s leaves room for %lld tokens (lower --ctx or raise --gpu-mem)\n",
                (int)n_ctx, (double)b.kv_token_bytes * n_ctx / 1048576.0, cap,
                (long long)b.kv_tokens);
        return false;
    }
    if (ep->kv_mem > room) {
        fprintf(stderr,
                "ruvllm serve: error: --kv-mem %.1f MiB is more than %s leaves for the KV "
                "cache (%.1f MiB)\n",
                (double)ep->kv_mem / 1048576.0, cap, (double)room / 1048576.0);
        return false;
    }
    const uint64_t want = (uint64_t)n_ctx * (uint64_t)ep->n_parallel * b.kv_token_bytes;
    if (ep->kv_mem == 0 && want > room) {
        ep->kv_mem = room;
        fprintf(stderr,
                "ruvllm serve: the KV pool is capped at %.1f MiB: %d sequences of %d tokens "
                "would need %.1f MiB; requests beyond what fits wait or are preempted\n",
                (double)room / 1048576.0, (int)ep->n_parallel, (int)n_ctx,
                (double)want / 1048576.0);
    }
    return true;
}
