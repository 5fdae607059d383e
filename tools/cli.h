/*
 * cli.h - the ruvllm command-line tool. Each command lives in its own cmd_<name>.c
 * and uses only the public header. Commands return a process exit status:
 * 0 success, 1 runtime failure, 2 usage error.
 */
#ifndef RL_CLI_H
#define RL_CLI_H

#include "ruvllm.h"

#include <stdio.h>

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_tensor(int argc, char **argv);
int cmd_bench_kernels(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench_serve(int argc, char **argv);
int cmd_gbnf_check(int argc, char **argv);
int cmd_bench_grammar(int argc, char **argv);
int cmd_schema2gbnf(int argc, char **argv);
int cmd_regex2gbnf(int argc, char **argv);

/* vocab_opt.c: helpers of the commands that read a vocabulary and input files. */
/* Open the GGUF at path and load its vocabulary (no weights). 0 on success; else prints
 * "<who>: <path>: <error>" on stderr, leaves *g and *v NULL and returns 1. */
int cli_open_vocab(const char *who, const char *path, rl_gguf **g, rl_vocab **v);
/* The rest of stream f, or the whole file at path, NUL-terminated (*n, when not NULL, excludes
 * the NUL); free() it. NULL with errno set on failure. cli_read_input reads stdin for the
 * path "-", cli_read_file does not. */
char *cli_read_stream(FILE *f, size_t *n);
char *cli_read_file(const char *path, size_t *n);
char *cli_read_input(const char *path, size_t *n);

#endif
