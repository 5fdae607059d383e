/*
 * toolcall_seeds.c - writes the seed corpus of fuzz_toolcall into the folder it is given:
 * for every family, texts in its tool-call syntax (random sentences of its own grammar:
 * required, auto, one call and parallel), with the family byte and the output mode, and
 * tool arrays in grammar mode with each choice.
 */
#include "ruvllm.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": "
    "{\"type\": "
    "\"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": "
    "\"string\", "
    "\"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}}}, {\"type\": \"function\", "
    "\"function\": "
    "{\"name\": \"set_alarm\", \"parameters\": {\"type\": \"object\", \"properties\": {\"hour\": "
    "{\"type\": \"integer\", \"minimum\": 0, \"maximum\": 23}, \"days\": {\"type\": \"array\", "
    "\"items\": {\"enum\": [\"mon\", \"tue\"]}}, \"loud\": {\"type\": \"boolean\"}}, \"required\": "
    "[\"hour\"]}}}]";

static int n_written;

static void put(const char *dir, unsigned f, unsigned mode, const char *text, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%03d", dir, n_written++);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        exit(1);
    }
    fputc((int)f, fp);
    fputc((int)mode, fp);
    fwrite(text, 1, n, fp);
    fclose(fp);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    static char buf[8192];
    for (unsigned f = 1; f < RL_TOOLCALL_FAMILY_COUNT; f++) {
        for (unsigned mode = 0; mode < 3; mode++) {
            rl_toolcall_grammar_params p = rl_toolcall_grammar_default_params();
            p.choice = mode == 2 ? RL_TOOLCALL_CHOICE_AUTO : RL_TOOLCALL_CHOICE_REQUIRED;
            p.parallel = mode != 1;
            char *gb = NULL, err[512];
            if (rl_toolcall_grammar((rl_toolcall_family)f, TOOLS, &p, &gb, err, sizeof err) !=
                RL_OK)
                continue;
            rl_grammar *g = NULL;
            if (rl_grammar_compile(gb, strlen(gb), NULL, NULL, NULL, &g, err, sizeof err) ==
                RL_OK) {
                for (uint64_t seed = 1; seed <= 2; seed++) {
                    size_t n = 0;
                    if (rl_grammar_sample_text(g, seed * 7 + mode, 300, buf, sizeof buf, &n) ==
                        RL_OK)
                        put(dir, f, seed == 2 ? 1 : 0, buf, n); /* also with reasoning flags */
                }
                rl_grammar_free(g);
            }
            rl__free(gb);
            put(dir, f, 0x80 | (mode == 2 ? 0 : 1) | (p.parallel ? 4 : 0), TOOLS, strlen(TOOLS));
        }
    }
    /* named choice (the last tool) */
    put(dir, RL_TOOLCALL_HERMES, 0x80 | 2 | 4, TOOLS, strlen(TOOLS));
    put(dir, RL_TOOLCALL_QWEN3_CODER, 0x80 | 2, TOOLS, strlen(TOOLS));
    return 0;
}
