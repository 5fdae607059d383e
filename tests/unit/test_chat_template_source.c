/*
 * test_chat_template_source.c - rl_chat_template_source (tokenizer.chat_template and its
 * named variants in a GGUF file) and rl_chat_template_chatml (the fallback template).
 */
#include "ruvllm.h"
#include "mem_sink.h"
#include "test.h"

/* The ChatML fallback renders the ChatML format, with and without a generation prompt. */
TEST(chatml_renders) {
    const char *src = rl_chat_template_chatml();
    CHECK(src != NULL);
    rl_chat_template *t = NULL;
    char err[256];
    CHECK_EQ_INT(rl_chat_template_compile(src, strlen(src), &t, err, sizeof err), RL_OK);
    if (!t) return;
    const char *msgs = "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
                       " {\"role\": \"user\", \"content\": \"Hi \\u2600\\ufe0f\"},"
                       " {\"role\": \"assistant\", \"content\": \"Hello.\"},"
                       " {\"role\": \"user\", \"content\": \"Bye\"}]";
    const char *body = "<|im_start|>system\nBe brief.<|im_end|>\n"
                       "<|im_start|>user\nHi \xe2\x98\x80\xef\xb8\x8f<|im_end|>\n"
                       "<|im_start|>assistant\nHello.<|im_end|>\n"
                       "<|im_start|>user\nBye<|im_end|>\n";
    rl_chat_template_params p = rl_chat_template_default_params();
    char *out = NULL;
    size_t n = 0;
    CHECK_EQ_INT(rl_chat_template_render(t, msgs, NULL, &p, &out, &n, err, sizeof err), RL_OK);
    if (out) {
        char want[512];
        snprintf(want, sizeof want, "%s<|im_start|>assistant\n", body);
        CHECK_STR(out, want);
        CHECK_EQ_INT(n, strlen(want));
    }
    rl_free_string(out);
    p.add_generation_prompt = false;
    CHECK_EQ_INT(rl_chat_template_render(t, msgs, NULL, &p, &out, &n, err, sizeof err), RL_OK);
    if (out) CHECK_STR(out, body);
    rl_free_string(out);
    rl_chat_template_free(t);
}

/* Command-R's vocabulary file carries a default template and two named variants. */
TEST(source_from_file) {
    rl_gguf *g = NULL;
    char err[256];
    if (rl_gguf_open(rl_test_data("models/vocab/ggml-vocab-command-r.gguf"), &g, err, sizeof err) !=
        RL_OK)
        SKIP("ggml-vocab-command-r.gguf: %s", err);
    const char *s = NULL;
    size_t n = 0;
    CHECK_EQ_INT(rl_chat_template_source(g, NULL, &s, &n), RL_OK);
    CHECK(s && n == 1204 && strlen(s) == n && !strncmp(s, "{{ bos_token }}", 15));
    const char *def = s;
    CHECK_EQ_INT(rl_chat_template_source(g, "", &s, NULL), RL_OK);
    CHECK(s == def);
    CHECK_EQ_INT(rl_chat_template_source(g, "default", &s, &n), RL_OK);
    CHECK(s == def && n == 1204);
    CHECK_EQ_INT(rl_chat_template_source(g, "tool_use", &s, &n), RL_OK);
    CHECK(s && n == 3911 && strstr(s, "## Available Tools"));
    CHECK_EQ_INT(rl_chat_template_source(g, "rag", &s, &n), RL_OK);
    CHECK(s && n == 3695);
    s = def;
    n = 7;
    CHECK_EQ_INT(rl_chat_template_source(g, "nope", &s, &n), RL_ERR_NOT_FOUND);
    CHECK(s == NULL && n == 0);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK_EQ_INT(rl_chat_template_source(g, longname, &s, &n), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_chat_template_source(g, NULL, NULL, &n), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_chat_template_source(NULL, NULL, &s, &n), RL_ERR_INVALID_ARG);
    rl_gguf_free(g);

    if (rl_gguf_open(rl_test_data("models/stories260K.gguf"), &g, err, sizeof err) != RL_OK)
        SKIP("stories260K.gguf: %s", err);
    CHECK_EQ_INT(rl_chat_template_source(g, NULL, &s, &n), RL_ERR_NOT_FOUND);
    rl_gguf_free(g);
}

/* A key holding something other than a string is a bad file, not a missing template. */
TEST(source_not_a_string) {
    rl_gguf_writer *w = NULL;
    CHECK_EQ_INT(rl_gguf_writer_create(&w), RL_OK);
    if (!w) return;
    CHECK_EQ_INT(rl_gguf_writer_set_u32(w, "tokenizer.chat_template", 7), RL_OK);
    CHECK_EQ_INT(rl_gguf_writer_set_str(w, "tokenizer.chat_template.x", "{{ 1 }}"), RL_OK);
    rl_test_membuf m = {0};
    CHECK_EQ_INT(rl_gguf_writer_write_to(w, rl_test_mem_sink, &m), RL_OK);
    rl_gguf_writer_free(w);
    rl_gguf *g = NULL;
    char err[256];
    CHECK_EQ_INT(rl_gguf_open_memory(m.p, m.n, &g, err, sizeof err), RL_OK);
    if (g) {
        const char *s = NULL;
        size_t n = 0;
        CHECK_EQ_INT(rl_chat_template_source(g, NULL, &s, &n), RL_ERR_BAD_FILE);
        CHECK(s == NULL);
        CHECK_EQ_INT(rl_chat_template_source(g, "x", &s, &n), RL_OK);
        CHECK(s && n == 7 && !strcmp(s, "{{ 1 }}"));
        rl_gguf_free(g);
    }
    free(m.p);
}

int main(void) {
    RUN(chatml_renders);
    RUN(source_from_file);
    RUN(source_not_a_string);
    return rl_test_finish();
}
