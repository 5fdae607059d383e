/*
 * cmd_chat.c - `ruvllm chat`: an interactive conversation through the model's chat
 * template, one user message per line of stdin (EOF ends it), replies streamed.
 *
 * The KV cache is kept between turns: each turn renders the whole conversation with the
 * template, tokenizes it, and decodes only what follows the longest common prefix with
 * the tokens the cache holds (the previous prompt and reply), after removing the cells
 * past that prefix. A template may re-render earlier turns differently (and a reply's
 * text may tokenize differently than it was generated); comparing tokens, not texts,
 * keeps the cache right in every case. A model without a template gets ChatML (the
 * library's rl_chat_template_chatml), with a warning.
 */
#include "cli.h"
#include "gen.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHAT_OPTS (GEN_OPT_MODEL | GEN_OPT_CONTEXT | GEN_OPT_SAMPLING | GEN_OPT_CONSTRAINT)

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm chat -m MODEL [--system TEXT] [-n N] [--chat-template FILE]\n"
            "                   [-v] [options]\n\n"
            "Chat with MODEL: each line of stdin is a user message; the reply is streamed to\n"
            "stdout, followed by a newline. EOF ends the conversation. The prompt is the\n"
            "model's chat template (tokenizer.chat_template) rendered over the whole\n"
            "conversation; only its new part is decoded, the rest stays in the KV cache.\n"
            "  --system TEXT           a system message first\n"
            "  --chat-template FILE    a Jinja chat template instead of the model's (a model\n"
            "                          without one gets ChatML, with a warning)\n"
            "  -n, --n-predict N       most tokens per reply, -1: until an end-of-generation\n"
            "                          token or a full context (-1)\n"
            "  -v, --verbose           per turn on stderr: prompt tokens, how many came from\n"
            "                          the cache, how many were decoded, timings, the finish\n"
            "                          reason\n"
            "When the conversation no longer fits the context (-c) the chat ends with a note.\n"
            "An output constraint (below) holds every reply to it.\n\n");
    gen_usage_options(f, CHAT_OPTS);
}

static const char *token_text(const rl_vocab *v, rl_token t) {
    return t == RL_TOKEN_NULL ? NULL : rl_vocab_token_text(v, t, NULL);
}

/* Append {"role": role, "content": text} to msgs; false when text is not UTF-8. */
static bool add_message(json_t *msgs, const char *role, const char *text, size_t len) {
    json_t *c = json_stringn(text, len);
    if (!c) return false;
    json_t *m = json_pack("{s:s, s:o}", "role", role, "content", c);
    return m && json_array_append_new(msgs, m) == 0;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o, "chat");
    const char *system = NULL, *tpl_path = NULL;
    long long n_predict = -1;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_parse_option(&o, CHAT_OPTS, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--system") && i + 1 < argc) {
            system = argv[++i];
        } else if (!strcmp(a, "--chat-template") && i + 1 < argc) {
            tpl_path = argv[++i];
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--n-predict")) && i + 1 < argc) {
            if (!gen_parse_int("chat", a, argv[++i], -1, INT32_MAX, &n_predict)) return 2;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else {
            fprintf(stderr, "ruvllm chat: unknown option or missing value: '%s'\n", a);
            fprintf(stderr, "(ruvllm chat --help lists the options)\n");
            return 2;
        }
    }
    if (!o.model) {
        fprintf(stderr, "ruvllm chat: -m MODEL is required\n");
        return 2;
    }

    int rc = 1;
    char *tpl_text = NULL, *line = NULL, *prompt = NULL, *reply = NULL;
    size_t line_cap = 0;
    rl_token *cache = NULL, *toks = NULL;
    json_t *msgs = json_array();
    rl_model *m = NULL;
    rl_context *ctx = NULL;
    rl_sampler *smp = NULL;
    rl_detok *dt = NULL;
    rl_chat_template *tpl = NULL;
    gen_constraint con = {0};
    char err[512] = "";
    if (!(m = gen_load_model(&o))) goto done;
    if ((rc = gen_constraint_init(&o, m, &con)) != 0) goto done;
    rc = 1;
    const rl_vocab *v = rl_model_vocab(m);

    const char *src = NULL;
    size_t src_len = 0;
    if (tpl_path) {
        if (!(tpl_text = gen_read_file(tpl_path, &src_len))) {
            fprintf(stderr, "ruvllm chat: %s: %s\n", tpl_path, strerror(errno));
            goto done;
        }
        src = tpl_text;
    } else if (rl_chat_template_source(rl_model_gguf(m), NULL, &src, &src_len) != RL_OK) {
        fprintf(stderr, "ruvllm chat: warning: %s has no chat template "
                        "(tokenizer.chat_template); using ChatML\n",
                o.model);
        src = rl_chat_template_chatml();
        src_len = strlen(src);
    }
    rl_status st = rl_chat_template_compile(src, src_len, &tpl, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm chat: chat template: %s\n", err[0] ? err : rl_status_str(st));
        goto done;
    }
    rl_chat_template_params tp = rl_chat_template_default_params();
    tp.bos_token = token_text(v, rl_vocab_bos(v));
    tp.eos_token = token_text(v, rl_vocab_eos(v));

    if (!(ctx = gen_new_context(&o, m, o.n_ctx, o.n_batch, 1))) goto done;
    const int32_t n_ctx = rl_context_n_ctx(ctx);
    if (!(smp = gen_new_sampler(&o, m, n_ctx))) goto done;
    /* on a GPU the draw runs where the logits are when the device runs this chain */
    const bool sampled = !con.gc && rl_context_set_sampler(ctx, smp);
    if (!(cache = malloc(sizeof(rl_token) * (size_t)n_ctx)) || !msgs ||
        rl_detok_create(v, RL_DETOK_NO_CLEANUP | RL_DETOK_KEEP_LEADING_SPACE, &dt) != RL_OK) {
        fprintf(stderr, "ruvllm chat: out of memory\n");
        goto done;
    }
    if (system && !add_message(msgs, "system", system, strlen(system))) {
        fprintf(stderr, "ruvllm chat: --system: the text is not valid UTF-8\n");
        goto done;
    }
    int32_t n_cache = 0;
    const bool tty = isatty(STDIN_FILENO);
    for (int turn = 1;; turn++) {
        if (tty) fputs("> ", stderr);
        ssize_t n_line = getline(&line, &line_cap, stdin);
        if (n_line < 0) break;
        while (n_line > 0 && (line[n_line - 1] == '\n' || line[n_line - 1] == '\r')) n_line--;
        if (n_line == 0) {
            turn--;
            continue;
        }
        if (!add_message(msgs, "user", line, (size_t)n_line)) {
            fprintf(stderr, "ruvllm chat: the line is not valid UTF-8; ignored\n");
            turn--;
            continue;
        }
        char *msgs_text = json_dumps(msgs, JSON_COMPACT);
        rl_free_string(prompt);
        prompt = NULL;
        size_t prompt_len = 0;
        st = msgs_text ? rl_chat_template_render(tpl, msgs_text, NULL, &tp, &prompt, &prompt_len,
                                                 err, sizeof err)
                       : RL_ERR_NOMEM;
        free(msgs_text);
        if (st != RL_OK) {
            fprintf(stderr, "ruvllm chat: chat template: %s\n", err[0] ? err : rl_status_str(st));
            goto done;
        }
        size_t n_tok = 0;
        free(toks);
        if (!(toks = gen_tokenize("chat", v, prompt, prompt_len,
                                  RL_TOKENIZE_ADD_SPECIAL | RL_TOKENIZE_PARSE_SPECIAL, &n_tok)))
            goto done;
        /* a template that writes bos_token itself, on a vocabulary that adds BOS */
        if (n_tok >= 2 && toks[0] == rl_vocab_bos(v) && toks[1] == toks[0]) {
            memmove(toks, toks + 1, sizeof(rl_token) * --n_tok);
        }
        if (n_tok == 0 || n_tok >= (size_t)n_ctx) {
            fprintf(stderr,
                    "ruvllm chat: the conversation is %zu tokens and no longer fits the "
                    "context (%d tokens, -c): the chat ends here\n",
                    n_tok, (int)n_ctx);
            rc = 0;
            goto done;
        }
        /* keep the longest common prefix of what the cache holds and the new prompt;
         * decode at least one token, for the logits */
        int32_t keep = 0;
        while (keep < n_cache && (size_t)keep < n_tok && cache[keep] == toks[keep]) keep++;
        if ((size_t)keep == n_tok) keep--;
        rl_kv_seq_remove(ctx, 0, keep, -1);
        n_cache = keep;
        const int32_t n_new = (int32_t)n_tok - keep;
        /* the sampler sees the prompt before the decode: a device draw happens in it */
        for (int32_t i = keep; i < (int32_t)n_tok; i++) rl_sampler_accept(smp, toks[i]);
        double t0 = gen_now();
        rl_batch b = rl_batch_get(toks + keep, n_new);
        if (rl_decode(ctx, &b) != RL_OK) {
            fprintf(stderr, "ruvllm chat: decoding the prompt: %s\n", rl_context_errmsg(ctx));
            goto done;
        }
        const double t_prompt = gen_now() - t0;
        memcpy(cache + keep, toks + keep, sizeof(rl_token) * (size_t)n_new);
        n_cache = (int32_t)n_tok;

        rl_detok_reset(dt);
        if (con.m) rl_grammar_matcher_reset(con.m);
        free(reply);
        reply = NULL;
        size_t reply_len = 0;
        gen_loop_params lp = {.n_max = (int32_t)n_predict,
                              .detok = dt,
                              .out = stdout,
                              .hist = cache,
                              .n_hist = &n_cache,
                              .hist_cap = n_ctx,
                              .text = &reply,
                              .text_len = &reply_len,
                              .constraint = &con,
                              .sampled = sampled};
        gen_loop_result r = gen_loop("chat", ctx, smp, &lp);
        fputc('\n', stdout);
        fflush(stdout);
        if (r.stop == GEN_STOP_ERROR) goto done;
        if (verbose)
            fprintf(stderr,
                    "ruvllm chat: turn %d: prompt %zu tokens, %d reused from the cache, %d "
                    "decoded (%.1f tok/s); reply %d tokens (%.1f tok/s), finish reason %s\n",
                    turn, n_tok, (int)keep, (int)n_new, t_prompt > 0 ? n_new / t_prompt : 0.0,
                    (int)r.n_gen, r.t_gen > 0 ? r.n_gen / r.t_gen : 0.0,
                    gen_finish_reason(r.stop));
        if (!add_message(msgs, "assistant", reply ? reply : "", reply_len)) {
            fprintf(stderr, "ruvllm chat: out of memory\n");
            goto done;
        }
        if (r.stop == GEN_STOP_CONTEXT) {
            fprintf(stderr,
                    "ruvllm chat: the context is full (%d tokens, -c): the chat ends here\n",
                    (int)n_ctx);
            break;
        }
    }
    rc = 0;
done:
    free(line);
    free(reply);
    free(toks);
    free(cache);
    free(tpl_text);
    rl_free_string(prompt);
    json_decref(msgs);
    rl_detok_free(dt);
    rl_chat_template_free(tpl);
    gen_constraint_free(&con);
    rl_sampler_free(smp);
    rl_context_free(ctx);
    rl_model_free(m);
    return rc;
}
