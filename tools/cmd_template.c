/*
 * cmd_template.c - `ruvllm template`: render a conversation with a model's chat template
 * and print the prompt exactly as the engine would tokenize it. Only the GGUF metadata is
 * read; no weights are loaded.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm template -m MODEL --messages FILE.json [--tools FILE.json]\n"
            "                       [--chat-template FILE | --template-name NAME]\n"
            "                       [--no-generation-prompt]\n\n"
            "Render the conversation in FILE.json (a JSON array of messages, or an object with\n"
            "a \"messages\" array such as a chat-completion request) with the chat template of\n"
            "MODEL (a GGUF file: tokenizer.chat_template) and print the prompt to stdout, byte\n"
            "for byte, with no newline added. bos_token and eos_token are the texts of the\n"
            "model's BOS and EOS tokens. FILE may be - for stdin.\n"
            "  --tools FILE.json       a JSON array of tools ({\"type\": \"function\", ...});\n"
            "                          default: the request's \"tools\", else none\n"
            "  --chat-template FILE    use the Jinja template in FILE instead of the model's\n"
            "  --template-name NAME    use the model's tokenizer.chat_template.NAME (tool_use,\n"
            "                          rag, ...)\n"
            "  --no-generation-prompt  render with add_generation_prompt false\n\n"
            "strftime_now() gives the current local time; RUVLLM_TEMPLATE_DATE=YYYY-MM-DD pins it\n"
            "to 00:00 of that day.\n");
}

/* RUVLLM_TEMPLATE_DATE=YYYY-MM-DD as seconds since the epoch at 00:00 UTC of that day (the
 * library shows a pinned clock as UTC wall-clock time) in *out. NULL on success, else what
 * is wrong with s. */
static const char *parse_date(const char *s, int64_t *out) {
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') return "expected YYYY-MM-DD";
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return "expected YYYY-MM-DD";
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    if (y < 1970) return "a date from 1970-01-01 on is needed";
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    time_t t = timegm(&tm);
    struct tm back;
    /* timegm normalizes 2023-02-29 to March 1: a date that does not come back is no date */
    if (m < 1 || m > 12 || d < 1 || t == (time_t)-1 || !gmtime_r(&t, &back) ||
        back.tm_year != y - 1900 || back.tm_mon != m - 1 || back.tm_mday != d)
        return "no such day";
    *out = (int64_t)t;
    return NULL;
}

/* The text of token t as the vocabulary stores it (BOS/EOS are control tokens, whose text is
 * their markup: "<s>", "<|begin_of_text|>"); NULL when the vocabulary has none. */
static const char *token_text(const rl_vocab *v, rl_token t) {
    return t == RL_TOKEN_NULL ? NULL : rl_vocab_token_text(v, t, NULL);
}

/* Names of tokenizer.chat_template.* variants, from tokenizer.chat_templates, on stderr. */
static void list_named_templates(const rl_gguf *g) {
    int64_t i = rl_gguf_find_key(g, "tokenizer.chat_templates");
    rl_gguf_type et;
    uint64_t n;
    if (i < 0 || rl_gguf_get_arr_info(g, i, &et, &n) != RL_OK || et != RL_GGUF_TYPE_STRING || !n)
        return;
    fprintf(stderr, "ruvllm template: the file has named templates:");
    for (uint64_t j = 0; j < n; j++) {
        const char *s;
        size_t len;
        if (rl_gguf_get_arr_str(g, i, j, &s, &len) == RL_OK) fprintf(stderr, " %s", s);
    }
    fprintf(stderr, " (--template-name NAME)\n");
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *messages_path = NULL, *tools_path = NULL, *tpl_path = NULL;
    const char *tpl_name = NULL;
    bool gen_prompt = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--messages") && i + 1 < argc) {
            messages_path = argv[++i];
        } else if (!strcmp(a, "--tools") && i + 1 < argc) {
            tools_path = argv[++i];
        } else if (!strcmp(a, "--chat-template") && i + 1 < argc) {
            tpl_path = argv[++i];
        } else if (!strcmp(a, "--template-name") && i + 1 < argc) {
            tpl_name = argv[++i];
        } else if (!strcmp(a, "--no-generation-prompt")) {
            gen_prompt = false;
        } else {
            fprintf(stderr, "ruvllm template: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !messages_path) {
        fprintf(stderr, "ruvllm template: %s is required\n\n",
                !model ? "-m MODEL" : "--messages FILE");
        usage(stderr);
        return 2;
    }
    if (tpl_path && tpl_name) {
        fprintf(stderr,
                "ruvllm template: --chat-template and --template-name exclude each other\n");
        return 2;
    }
    if (messages_path && tools_path && !strcmp(messages_path, "-") && !strcmp(tools_path, "-")) {
        fprintf(stderr, "ruvllm template: --messages and --tools cannot both read stdin\n");
        return 2;
    }
    rl_chat_template_params p = rl_chat_template_default_params();
    p.add_generation_prompt = gen_prompt;
    const char *date = getenv("RUVLLM_TEMPLATE_DATE");
    if (date && date[0]) {
        const char *why = parse_date(date, &p.now);
        if (why) {
            fprintf(stderr, "ruvllm template: RUVLLM_TEMPLATE_DATE='%s': %s (e.g. 2024-07-26)\n",
                    date, why);
            return 2;
        }
    }

    int rc = 1;
    char *msg_text = NULL, *tools_text = NULL, *tpl_text = NULL, *msg_owned = NULL;
    char *tools_owned = NULL, *out = NULL;
    json_t *doc = NULL;
    rl_gguf *g = NULL;
    rl_vocab *v = NULL;
    rl_chat_template *t = NULL;
    char err[1024];

    /* the conversation: an array of messages, or a request object holding one */
    if (!(msg_text = cli_read_input(messages_path, NULL))) {
        fprintf(stderr, "ruvllm template: %s: %s\n", messages_path, strerror(errno));
        goto done;
    }
    json_error_t je;
    doc = json_loads(msg_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!doc) {
        fprintf(stderr, "ruvllm template: %s: invalid JSON at line %d, column %d: %s\n",
                messages_path, je.line, je.column, je.text);
        goto done;
    }
    const char *messages = msg_text;
    const json_t *jtools = NULL;
    if (json_is_object(doc) && json_is_array(json_object_get(doc, "messages"))) {
        msg_owned = json_dumps(json_object_get(doc, "messages"), JSON_COMPACT | JSON_ENCODE_ANY);
        messages = msg_owned;
        jtools = json_object_get(doc, "tools");
        if (json_is_null(jtools)) jtools = NULL;
    } else if (!json_is_array(doc)) {
        fprintf(stderr,
                "ruvllm template: %s: expected a JSON array of messages, or an object with a "
                "\"messages\" array\n",
                messages_path);
        goto done;
    }
    if (!messages) {
        fprintf(stderr, "ruvllm template: out of memory\n");
        goto done;
    }
    const char *tools = NULL;
    if (tools_path) {
        if (!(tools_text = cli_read_input(tools_path, NULL))) {
            fprintf(stderr, "ruvllm template: %s: %s\n", tools_path, strerror(errno));
            goto done;
        }
        json_t *jt = json_loads(tools_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!jt) {
            fprintf(stderr, "ruvllm template: %s: invalid JSON at line %d, column %d: %s\n",
                    tools_path, je.line, je.column, je.text);
            goto done;
        }
        bool ok = json_is_array(jt) || json_is_null(jt);
        json_decref(jt);
        if (!ok) {
            fprintf(stderr, "ruvllm template: %s: expected a JSON array of tools\n", tools_path);
            goto done;
        }
        tools = tools_text;
    } else if (jtools) {
        if (!json_is_array(jtools)) {
            fprintf(stderr, "ruvllm template: %s: \"tools\": expected a JSON array\n",
                    messages_path);
            goto done;
        }
        if (!(tools_owned = json_dumps(jtools, JSON_COMPACT))) {
            fprintf(stderr, "ruvllm template: out of memory\n");
            goto done;
        }
        tools = tools_owned;
    }

    /* the model: its vocabulary for bos_token / eos_token, its template unless overridden */
    if (cli_open_vocab("ruvllm template", model, &g, &v)) goto done;
    rl_status st;
    p.bos_token = token_text(v, rl_vocab_bos(v));
    p.eos_token = token_text(v, rl_vocab_eos(v));

    const char *src, *src_name;
    size_t src_len;
    char key[256];
    if (tpl_path) {
        if (!(tpl_text = cli_read_input(tpl_path, &src_len))) {
            fprintf(stderr, "ruvllm template: %s: %s\n", tpl_path, strerror(errno));
            goto done;
        }
        src = tpl_text;
        src_name = tpl_path;
    } else {
        snprintf(key, sizeof key, "tokenizer.chat_template%s%s", tpl_name ? "." : "",
                 tpl_name ? tpl_name : "");
        st = rl_chat_template_source(g, tpl_name, &src, &src_len);
        if (st == RL_ERR_NOT_FOUND || st == RL_ERR_INVALID_ARG) {
            fprintf(stderr,
                    "ruvllm template: %s has no chat template (%s); give one with "
                    "--chat-template FILE\n",
                    model, key);
            list_named_templates(g);
            goto done;
        } else if (st != RL_OK) {
            fprintf(stderr, "ruvllm template: %s: %s: %s\n", model, key, rl_status_str(st));
            goto done;
        }
        src_name = key;
    }

    st = rl_chat_template_compile(src, src_len, &t, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm template: %s: %s\n", src_name, err[0] ? err : rl_status_str(st));
        goto done;
    }
    size_t out_len = 0;
    st = rl_chat_template_render(t, messages, tools, &p, &out, &out_len, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm template: %s: %s\n", src_name, err[0] ? err : rl_status_str(st));
        goto done;
    }
    if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
        fprintf(stderr, "ruvllm template: writing the prompt: %s\n", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    rl_free_string(out);
    rl_chat_template_free(t);
    rl_vocab_free(v);
    rl_gguf_free(g);
    json_decref(doc);
    free(msg_owned);
    free(tools_owned);
    free(msg_text);
    free(tools_text);
    free(tpl_text);
    return rc;
}
