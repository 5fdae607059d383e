/*
 * gen.h - what the commands that run a model (run, chat, logits, perplexity, bench) share:
 * the model, context and sampling options with their checks (every message names the
 * flag), loading, the generation loop and timing. Public header only.
 */
#ifndef RL_TOOLS_GEN_H
#define RL_TOOLS_GEN_H

#include "ruvllm.h"

#include <stdbool.h>
#include <stdio.h>

/* Option groups a command accepts (gen_parse_option's `groups`). */
#define GEN_OPT_MODEL 1u    /* -m, -t, --mlock */
#define GEN_OPT_CONTEXT 2u  /* -c, -b, --kv-type */
#define GEN_OPT_SAMPLING 4u /* --temp, --top-k, ... --seed, --mirostat, --dry-*, --xtc-* */
#define GEN_OPT_CONSTRAINT 8u /* --grammar, --json-schema, --regex, --json-object */
#define GEN_OPT_DEVICE 16u  /* --device, --gpu-mem (part of GEN_OPT_MODEL too) */

#define GEN_MAX_BREAKERS 64
#define GEN_MAX_BIAS 256

typedef struct gen_opts {
    const char *cmd; /* "run", for messages: "ruvllm run: ..." */
    const char *model;
    int n_threads;   /* 0: physical cores */
    bool mlock;
    const char *device; /* NULL: the CPU; "cpu", "cuda", "cuda:N" (checked syntax) */
    double gpu_mem;     /* 0: no cap */
    int32_t n_ctx;   /* 0: the model's training context, at most 4096 */
    int32_t n_batch; /* 0: the command's default */
    rl_type kv_type;
    rl_sampler_params sp;
    int32_t repeat_last_n; /* -1: the context size */
    int32_t dry_last_n;    /* -1: the context size */
    const char *breakers[GEN_MAX_BREAKERS];
    int32_t n_breakers; /* -1: the library's defaults */
    rl_logit_bias bias[GEN_MAX_BIAS];
    int32_t n_bias;
    /* the output constraint: at most one of --grammar FILE, --json-schema FILE, --regex RE,
     * --json-object; con_flag is the flag given (NULL: none), con_arg its value */
    const char *con_flag;
    const char *con_arg;
} gen_opts;

/* Defaults: llama.cpp's command-line sampling (temperature 0.8, top-k 40, top-p 0.95,
 * min-p 0.05, penalties over 64 tokens, a random seed), F16 cache. */
void gen_opts_init(gen_opts *o, const char *cmd);

/* If argv[*i] is an option of the groups, consume it (and its value: *i advances) and
 * return 1; return 0 when it is not one; print "ruvllm CMD: --flag ..." and return -1 for
 * a bad or missing value. */
int gen_parse_option(gen_opts *o, unsigned groups, int argc, char **argv, int *i);

/* Strict number parsing for a command's own flags: the whole string, in [lo, hi]; on
 * failure prints a message naming flag and returns false. */
bool gen_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi,
                   long long *out);
bool gen_parse_float(const char *cmd, const char *flag, const char *s, double lo, double hi,
                     double *out);

/* The usage lines of the option groups. */
void gen_usage_options(FILE *f, unsigned groups);

/* --device / --gpu-mem as given: the device exists in this build and machine, and
 * --gpu-mem comes with a GPU (prints "ruvllm CMD: --device ...: why" and returns false). */
bool gen_check_device(const gen_opts *o);

/* Load o->model on o->device (prints the error). On a GPU it prints where the memory
 * goes (weights, scratch, tokens of KV that fit and how many contexts of o->n_ctx tokens
 * that makes) and refuses an explicit -c that does not fit. */
rl_model *gen_load_model(const gen_opts *o);
/* A context on m with o's n_ctx, kv_type, threads; n_batch and n_outputs_max as given
 * (prints the error; on a GPU, also when n_ctx tokens of KV do not fit --gpu-mem). */
rl_context *gen_new_context(const gen_opts *o, rl_model *m, int32_t n_ctx, int32_t n_batch,
                            int32_t n_outputs_max);
/* A sampler with o's settings, windows of -1 replaced by n_ctx (prints the error). */
rl_sampler *gen_new_sampler(const gen_opts *o, rl_model *m, int32_t n_ctx);
/* Whether o's sampler picks the argmax of the raw logits: temperature 0 and nothing that
 * changes or reads the logits first (bias, penalties, DRY, log-probabilities). Such a run
 * decodes argmax-only (rl_context_set_argmax_only: on a GPU the pick stays on the device)
 * unless a grammar constrains it. */
bool gen_plain_greedy(const gen_opts *o);

/* The bytes of a file, NUL-terminated (*n excludes the NUL); NULL with errno set. */
char *gen_read_file(const char *path, size_t *n);

/* Tokenize len bytes of text into a malloc'd array (*n tokens); prints the error. */
rl_token *gen_tokenize(const char *cmd, const rl_vocab *v, const char *text, size_t len,
                       uint32_t flags, size_t *n);

double gen_now(void);

/* A constraint compiled against a model's vocabulary, and the state of one generation
 * under it (all NULL when the options ask for none). */
typedef struct gen_constraint {
    rl_grammar_vocab *gv;
    rl_grammar *g;
    rl_grammar_matcher *m;
    rl_grammar_constraint *gc;
} gen_constraint;

/* Read and compile o's constraint for model m into *c: a JSON Schema or a regex becomes
 * GBNF first, --json-object is the library's grammar for any object. Returns 0 (also when
 * there is none), 2 for a bad grammar, schema or regex (the parse error printed), 1 for
 * other failures (an unreadable file, memory; printed). */
int gen_constraint_init(const gen_opts *o, const rl_model *m, gen_constraint *c);
void gen_constraint_free(gen_constraint *c);
/* The GEN_OPT_CONSTRAINT part of gen_parse_option (same returns; a second constraint is
 * an error naming both flags) and of gen_usage_options. */
int gen_parse_constraint(gen_opts *o, int argc, char **argv, int *i);
void gen_usage_constraint(FILE *f);

/* What the generation loop does with each token. */
typedef struct gen_loop_params {
    int32_t n_max;   /* tokens to generate; < 0: until the end of generation or the context */
    bool ignore_eos; /* end-of-generation tokens do not stop (they print as "") */
    bool ids;        /* print ids separated by single spaces instead of text */
    rl_detok *detok; /* text mode: the stream's detokenizer */
    FILE *out;       /* where tokens go (flushed after each) */
    /* tokens decoded into the cache are appended to hist[*n_hist..cap) when hist is set */
    rl_token *hist;
    int32_t *n_hist;
    int32_t hist_cap;
    /* the text printed is appended here when set (malloc'd, NUL-terminated) */
    char **text;
    size_t *text_len;
    /* NULL or c->m NULL: unconstrained. Else each token is sampled under the grammar (the
     * sampled token checked first, a full mask only when rejected) and accepted by the
     * matcher, which the caller resets between generations; end-of-generation tokens come
     * only where the grammar may end and always stop (ignore_eos does not apply) */
    const gen_constraint *constraint;
    /* the context decodes argmax-only: each token is rl_get_argmax's (the sampler only
     * accepts it); for a plain greedy sampler (gen_plain_greedy) without a constraint */
    bool argmax;
    /* the context samples on the device (rl_context_set_sampler with this sampler): each
     * token is rl_get_sampled's (the sampler only accepts it); no constraint */
    bool sampled;
} gen_loop_params;

typedef enum gen_stop {
    GEN_STOP_LENGTH = 0, /* n_max tokens */
    GEN_STOP_EOG,        /* an end-of-generation token (not printed, not decoded) */
    GEN_STOP_CONTEXT,    /* the context is full */
    GEN_STOP_GRAMMAR,    /* the constraint's text is complete: nothing can follow (the last
                            token is not decoded) */
    GEN_STOP_ERROR       /* sampling, decoding or writing failed (message printed) */
} gen_stop;

/* OpenAI's finish reason for a stop: "stop" (an end token, a complete grammar), "length"
 * (n_max or a full context), "error". */
const char *gen_finish_reason(gen_stop s);

typedef struct gen_loop_result {
    gen_stop stop;
    int32_t n_gen;   /* tokens sampled and printed */
    double t_gen;    /* seconds from the first sample to the end */
    rl_token eog;    /* the end token when stop == GEN_STOP_EOG */
} gen_loop_result;

/* Generate from the logits of the context's last decode: sample, accept, print, decode the
 * token, until a stop. The last token printed is not decoded when the loop ends on
 * n_max or a full context. */
gen_loop_result gen_loop(const char *cmd, rl_context *ctx, rl_sampler *s,
                         const gen_loop_params *p);

#endif
