/* main.c - `ruvllm COMMAND ...`: dispatch to the commands of cli.h. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const cli_command g_commands[] = {
    {"info", "print a GGUF file's metadata and tensor table", cmd_info},
    {"run", "continue a prompt, streaming the generated text", cmd_run},
    {"chat", "chat through the model's template, the KV cache kept between turns", cmd_chat},
    {"logits", "logits of the last prompt position (top K, all, JSON)", cmd_logits},
    {"perplexity", "perplexity of a text file, as llama.cpp's llama-perplexity", cmd_perplexity},
    {"bench", "prompt and generation tokens/s (llama-bench's tests) and the decode floor",
     cmd_bench},
    {"tokenize", "text to token ids with a model's vocabulary", cmd_tokenize},
    {"detokenize", "token ids to text with a model's vocabulary", cmd_detokenize},
    {"template", "render messages with a model's chat template (the prompt it is fed)",
     cmd_template},
    {"tensor", "write one tensor, dequantized, as raw float32 to stdout", cmd_tensor},
    {"quantize", "quantize a GGUF model with a llama.cpp mix (Q4_K_M, Q8_0, ...)", cmd_quantize},
    {"synth", "write a model with random weights at a real shape (llama3-8b, ...)", cmd_synth},
    {"serve", "OpenAI-compatible HTTP server with continuous batching", cmd_serve},
    {"bench-serve", "drive a server with concurrent streams: tok/s, TTFT, ITL (JSON)",
     cmd_bench_serve},
    {"gbnf-check", "does a GBNF grammar accept a text", cmd_gbnf_check},
    {"bench-grammar", "time grammar token masks over random documents (JSON)", cmd_bench_grammar},
    {"schema2gbnf", "print the GBNF grammar a JSON Schema compiles to", cmd_schema2gbnf},
    {"regex2gbnf", "print the GBNF grammar of a regular expression", cmd_regex2gbnf},
    {"bench-kernels", "matrix-vector GB/s per weight type vs measured memory bandwidth",
     cmd_bench_kernels},
};

static void usage(FILE *f) {
    fprintf(f, "ruvllm %s - LLM inference for GGUF models\n\nusage: ruvllm COMMAND [ARGS]\n\ncommands:\n",
            rl_version());
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        fprintf(f, "  %-14s %s\n", g_commands[i].name, g_commands[i].summary);
    fprintf(f, "\n`ruvllm COMMAND --help` describes a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("ruvllm %s\n", rl_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        if (!strcmp(argv[1], g_commands[i].name)) return g_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ruvllm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
