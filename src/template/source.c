/*
 * source.c - where a chat template's text comes from: the GGUF key (or one of its named
 * variants), or the ChatML fallback that the server and the CLI share for files without
 * one.
 */
#include "util/util.h"

#include <string.h>

#define KEY_PREFIX "tokenizer.chat_template"
#define MAX_NAME 200

RL_API rl_status rl_chat_template_source(const rl_gguf *g, const char *name, const char **src,
                                         size_t *len) {
    if (src) *src = NULL;
    if (len) *len = 0;
    if (!g || !src) return RL_ERR_INVALID_ARG;
    char key[sizeof KEY_PREFIX + 1 + MAX_NAME];
    if (!name || !name[0] || !strcmp(name, "default")) {
        memcpy(key, KEY_PREFIX, sizeof KEY_PREFIX);
    } else {
        size_t n = strlen(name);
        if (n > MAX_NAME) return RL_ERR_INVALID_ARG;
        memcpy(key, KEY_PREFIX ".", sizeof KEY_PREFIX);
        memcpy(key + sizeof KEY_PREFIX, name, n + 1);
    }
    int64_t i = rl_gguf_find_key(g, key);
    if (i < 0) return RL_ERR_NOT_FOUND;
    const char *s;
    size_t n;
    if (rl_gguf_get_str(g, i, &s, &n) != RL_OK) return RL_ERR_BAD_FILE;
    *src = s;
    if (len) *len = n;
    return RL_OK;
}

/* ChatML as OpenAI described it and Qwen and many fine-tunes use it; the roles and
 * contents are written as they come. */
RL_API const char *rl_chat_template_chatml(void) {
    return "{%- for message in messages -%}"
           "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
           "{%- endfor -%}"
           "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";
}
