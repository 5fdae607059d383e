/*
 * fuzz_template.c - libFuzzer harness for the chat-template interpreter. Each input is a
 * template source: it is compiled and, when that works, rendered with a fixed
 * conversation (system, user, assistant with tool calls, tool result, Unicode), tools and
 * extra variables, under small limits so that every run is quick. Checks: the status is
 * one of the documented ones with a message; a success gives a NUL-terminated string of
 * the reported length; a second render gives the same result (renders are pure); every
 * byte the library allocated is freed.
 */
#include "ruvllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                         \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "fuzz_template: %s:%d: requirement failed: %s\n", __FILE__,   \
                    __LINE__, #c);                                                         \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static const char MESSAGES[] =
    "[{\"role\":\"system\",\"content\":\"You are helpful.\"},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris? \\u00e9\\u4f60\\ud83c\\udf24 {{ x }} <|im_end|>\"},"
    "{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":\"think\",\"tool_calls\":["
    "{\"id\":\"call00001\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":{\"city\":\"Paris\",\"n\":[1,2.5,null,true]}}},"
    "{\"id\":\"call00002\",\"type\":\"function\",\"function\":{\"name\":\"search\","
    "\"arguments\":\"{\\\"q\\\": 1}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call00001\",\"name\":\"get_weather\",\"content\":\"{\\\"temp\\\": 21}\"},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"21 C\"}]},"
    "{\"role\":\"user\",\"content\":\"thanks\"}]";

static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Get \\\"weather\\\"\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":{}}}]";

static bool documented(rl_status st) {
    return st == RL_OK || st == RL_ERR_BAD_FILE || st == RL_ERR_UNSUPPORTED || st == RL_ERR_LIMIT ||
           st == RL_ERR_INVALID_ARG;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t base = rl_mem_in_use();
    rl_chat_template *t = NULL;
    char err[512];
    err[0] = 0;
    rl_status st = rl_chat_template_compile((const char *)data, size, &t, err, sizeof(err));
    REQUIRE(documented(st));
    if (st != RL_OK) {
        REQUIRE(t == NULL && err[0] != 0 && strncmp(err, "line ", 5) == 0);
        REQUIRE(rl_mem_in_use() == base);
        return 0;
    }
    rl_chat_template_params p = rl_chat_template_default_params();
    p.bos_token = "<s>";
    p.eos_token = "</s>";
    p.extra_json = "{\"enable_thinking\": true, \"custom\": {\"k\": [1, \"v\"]}}";
    p.now = 1721952000;
    p.max_steps = 200000;
    p.max_memory = (size_t)32 << 20;
    p.max_output = (size_t)1 << 20;
    p.max_depth = 30;
    char *out[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    rl_status rs[2];
    char err2[512];
    for (int i = 0; i < 2; i++) {
        char *e = i ? err2 : err;
        e[0] = 0;
        rs[i] = rl_chat_template_render(t, MESSAGES, i ? NULL : TOOLS, &p, &out[i], &len[i], e, 512);
        REQUIRE(documented(rs[i]));
        if (rs[i] == RL_OK) {
            REQUIRE(out[i] != NULL && strlen(out[i]) <= len[i] && out[i][len[i]] == 0);
        } else {
            REQUIRE(out[i] == NULL && e[0] != 0 && strncmp(e, "line ", 5) == 0);
        }
    }
    /* the same inputs give the same result */
    rl_status again_st;
    char *again = NULL;
    size_t again_len = 0;
    again_st = rl_chat_template_render(t, MESSAGES, TOOLS, &p, &again, &again_len, err2, sizeof(err2));
    REQUIRE(again_st == rs[0]);
    if (rs[0] == RL_OK) REQUIRE(again_len == len[0] && memcmp(again, out[0], len[0]) == 0);
    else REQUIRE(strcmp(err, err2) == 0);
    rl_free_string(again);
    rl_free_string(out[0]);
    rl_free_string(out[1]);
    rl_chat_template_free(t);
    REQUIRE(rl_mem_in_use() == base);
    return 0;
}
