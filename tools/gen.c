/*
 * gen.c - options, loading and the generation loop shared by the commands that run a
 * model (see gen.h). Sampling flags are llama.cpp's names and defaults (common/arg.cpp),
 * so a command line moves between the two tools unchanged.
 */
#include "gen.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

double gen_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void gen_opts_init(gen_opts *o, const char *cmd) {
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->kv_type = RL_TYPE_F16;
    o->sp = rl_sampler_default_params();
    o->sp.temperature = 0.8f;
    o->sp.top_k = 40;
    o->sp.top_p = 0.95f;
    o->sp.min_p = 0.05f;
    o->sp.seed = RL_SAMPLER_SEED_RANDOM;
    o->repeat_last_n = 64;
    o->dry_last_n = -1;
    o->n_breakers = -1;
}

bool gen_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi,
                   long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "ruvllm %s: %s must be an integer in [%lld, %lld], got '%s'\n", cmd, flag,
                lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool gen_parse_float(const char *cmd, const char *flag, const char *s, double lo, double hi,
                     double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || v < lo || v > hi) {
        if (hi >= FLT_MAX)
            fprintf(stderr, "ruvllm %s: %s must be a finite number >= %g, got '%s'\n", cmd, flag,
                    lo, s);
        else
            fprintf(stderr, "ruvllm %s: %s must be a number in [%g, %g], got '%s'\n", cmd, flag,
                    lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* Float sampling options: flag (and alias), field, range. */
typedef struct float_opt {
    const char *flag, *alias;
    size_t off;
    double lo, hi;
} float_opt;

#define SP_OFF(field) offsetof(rl_sampler_params, field)
static const float_opt k_float_opts[] = {
    {"--temp", "--temperature", SP_OFF(temperature), 0, FLT_MAX},
    {"--top-p", NULL, SP_OFF(top_p), 0, 1},
    {"--min-p", NULL, SP_OFF(min_p), 0, 1},
    {"--typical", "--typical-p", SP_OFF(typical_p), 0, 1},
    {"--repeat-penalty", NULL, SP_OFF(repeat_penalty), 0, FLT_MAX}, /* > 0: checked below */
    {"--presence-penalty", NULL, SP_OFF(presence_penalty), -FLT_MAX, FLT_MAX},
    {"--frequency-penalty", NULL, SP_OFF(frequency_penalty), -FLT_MAX, FLT_MAX},
    {"--dry-multiplier", NULL, SP_OFF(dry_multiplier), 0, FLT_MAX},
    {"--dry-base", NULL, SP_OFF(dry_base), 0, FLT_MAX},
    {"--xtc-probability", NULL, SP_OFF(xtc_probability), 0, 1},
    {"--xtc-threshold", NULL, SP_OFF(xtc_threshold), 0, 1},
    {"--mirostat-lr", NULL, SP_OFF(mirostat_eta), 0, FLT_MAX},
    {"--mirostat-ent", NULL, SP_OFF(mirostat_tau), 0, FLT_MAX},
};

static bool is_flag(const char *a, const char *f1, const char *f2) {
    return !strcmp(a, f1) || (f2 && !strcmp(a, f2));
}

static int parse_bias(gen_opts *o, const char *s) {
    char *end;
    errno = 0;
    long id = strtol(s, &end, 10);
    double b = 0;
    bool ok = end != s && !errno && id >= 0 && id <= INT32_MAX && (*end == '+' || *end == '-');
    if (ok) {
        const char sign = *end;
        char *e2;
        b = strtod(end + 1, &e2);
        ok = end[1] && !*e2 && !isnan(b) && (isfinite(b) || sign == '-');
        if (sign == '-') b = -b;
    }
    if (!ok) {
        fprintf(stderr,
                "ruvllm %s: --logit-bias takes TOKEN_ID+BIAS or TOKEN_ID-BIAS (e.g. 15043+1, "
                "2-inf), got '%s'\n",
                o->cmd, s);
        return -1;
    }
    if (o->n_bias >= GEN_MAX_BIAS) {
        fprintf(stderr, "ruvllm %s: --logit-bias: at most %d entries\n", o->cmd, GEN_MAX_BIAS);
        return -1;
    }
    o->bias[o->n_bias++] = (rl_logit_bias){(rl_token)id, (float)b};
    return 1;
}

int gen_parse_option(gen_opts *o, unsigned groups, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long iv;
    double fv;
#define NEED_VALUE()                                                                   \
    do {                                                                               \
        if (!val) {                                                                    \
            fprintf(stderr, "ruvllm %s: %s needs a value\n", o->cmd, a);               \
            return -1;                                                                 \
        }                                                                              \
        ++*i;                                                                          \
    } while (0)
    if (groups & (GEN_OPT_MODEL | GEN_OPT_DEVICE)) {
        if (is_flag(a, "--device", "-dev")) {
            NEED_VALUE();
            char err[256];
            if (rl_device_check(val, err, sizeof err) == RL_ERR_INVALID_ARG) {
                fprintf(stderr, "ruvllm %s: --device: %s\n", o->cmd, err);
                return -1;
            }
            o->device = val; /* whether it is there: gen_check_device */
            return 1;
        }
        if (!strcmp(a, "--gpu-mem")) {
            NEED_VALUE();
            if (!gen_parse_float(o->cmd, a, val, 0, 1, &fv)) return -1;
            if (!(fv > 0)) {
                fprintf(stderr, "ruvllm %s: --gpu-mem must be a fraction in (0, 1], got '%s'\n",
                        o->cmd, val);
                return -1;
            }
            o->gpu_mem = fv;
            return 1;
        }
    }
    if (groups & GEN_OPT_MODEL) {
        if (is_flag(a, "-m", "--model")) {
            NEED_VALUE();
            o->model = val;
            return 1;
        }
        if (is_flag(a, "-t", "--threads")) {
            NEED_VALUE();
            if (!gen_parse_int(o->cmd, a, val, 1, 512, &iv)) return -1;
            o->n_threads = (int)iv;
            return 1;
        }
        if (!strcmp(a, "--mlock")) {
            o->mlock = true;
            return 1;
        }
    }
    if (groups & GEN_OPT_CONTEXT) {
        if (is_flag(a, "-c", "--ctx-size")) {
            NEED_VALUE();
            if (!gen_parse_int(o->cmd, a, val, 0, 1 << 24, &iv)) return -1;
            o->n_ctx = (int32_t)iv;
            return 1;
        }
        if (is_flag(a, "-b", "--batch-size")) {
            NEED_VALUE();
            if (!gen_parse_int(o->cmd, a, val, 1, 1 << 16, &iv)) return -1;
            o->n_batch = (int32_t)iv;
            return 1;
        }
        if (!strcmp(a, "--kv-type")) {
            NEED_VALUE();
            rl_type t;
            if (rl_type_from_name(val, &t) != RL_OK ||
                (t != RL_TYPE_F16 && t != RL_TYPE_F32 && t != RL_TYPE_Q8_0)) {
                fprintf(stderr, "ruvllm %s: --kv-type must be f16, f32 or q8_0, got '%s'\n",
                        o->cmd, val);
                return -1;
            }
            o->kv_type = t;
            return 1;
        }
    }
    if (groups & GEN_OPT_CONSTRAINT) {
        int r = gen_parse_constraint(o, argc, argv, i);
        if (r) return r;
    }
    if (!(groups & GEN_OPT_SAMPLING)) return 0;
    for (size_t k = 0; k < sizeof k_float_opts / sizeof k_float_opts[0]; k++) {
        const float_opt *f = &k_float_opts[k];
        if (!is_flag(a, f->flag, f->alias)) continue;
        NEED_VALUE();
        if (!gen_parse_float(o->cmd, a, val, f->lo, f->hi, &fv)) return -1;
        if (f->off == SP_OFF(repeat_penalty) && !(fv > 0)) {
            fprintf(stderr, "ruvllm %s: %s must be > 0, got '%s'\n", o->cmd, a, val);
            return -1;
        }
        *(float *)((char *)&o->sp + f->off) = (float)fv;
        return 1;
    }
    if (!strcmp(a, "--top-k")) {
        NEED_VALUE();
        if (!gen_parse_int(o->cmd, a, val, 0, INT32_MAX, &iv)) return -1;
        o->sp.top_k = (int32_t)iv;
        return 1;
    }
    if (!strcmp(a, "--min-keep")) {
        NEED_VALUE();
        if (!gen_parse_int(o->cmd, a, val, 0, INT32_MAX, &iv)) return -1;
        o->sp.min_keep = (int32_t)iv;
        return 1;
    }
    if (!strcmp(a, "--repeat-last-n")) {
        NEED_VALUE();
        if (!gen_parse_int(o->cmd, a, val, -1, RL_SAMPLER_MAX_WINDOW, &iv)) return -1;
        o->repeat_last_n = (int32_t)iv;
        return 1;
    }
    if (!strcmp(a, "--dry-allowed-length")) {
        NEED_VALUE();
        if (!gen_parse_int(o->cmd, a, val, 0, RL_SAMPLER_MAX_WINDOW, &iv)) return -1;
        o->sp.dry_allowed_length = (int32_t)iv;
        return 1;
    }
    if (!strcmp(a, "--dry-penalty-last-n")) {
        NEED_VALUE();
        if (!gen_parse_int(o->cmd, a, val, -1, RL_SAMPLER_MAX_WINDOW, &iv)) return -1;
        o->dry_last_n = (int32_t)iv;
        return 1;
    }
    if (!strcmp(a, "--dry-sequence-breaker")) {
        NEED_VALUE();
        if (!strcmp(val, "none")) {
            o->n_breakers = 0;
            return 1;
        }
        if (!*val) {
            fprintf(stderr, "ruvllm %s: --dry-sequence-breaker must not be empty\n", o->cmd);
            return -1;
        }
        if (o->n_breakers < 0) o->n_breakers = 0;
        if (o->n_breakers >= GEN_MAX_BREAKERS) {
            fprintf(stderr, "ruvllm %s: --dry-sequence-breaker: at most %d\n", o->cmd,
                    GEN_MAX_BREAKERS);
            return -1;
        }
        o->breakers[o->n_breakers++] = val;
        return 1;
    }
    if (!strcmp(a, "--mirostat")) {
        NEED_VALUE();
        if (!gen_parse_int(o->cmd, a, val, 0, 2, &iv)) return -1;
        if (iv == 1) {
            fprintf(stderr, "ruvllm %s: --mirostat 1 (mirostat v1) is not supported; use 2 (v2) "
                            "or 0 (off)\n",
                    o->cmd);
            return -1;
        }
        o->sp.mirostat = (int32_t)iv;
        return 1;
    }
    if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
        NEED_VALUE();
        if (!strcmp(val, "-1")) {
            o->sp.seed = RL_SAMPLER_SEED_RANDOM;
            return 1;
        }
        char *end;
        errno = 0;
        unsigned long long s = strtoull(val, &end, 10);
        if (!*val || *end || errno || val[0] == '-' || s == RL_SAMPLER_SEED_RANDOM) {
            fprintf(stderr,
                    "ruvllm %s: --seed must be an integer in [0, 2^64-2] or -1 (random), got "
                    "'%s'\n",
                    o->cmd, val);
            return -1;
        }
        o->sp.seed = s;
        return 1;
    }
    if (is_flag(a, "-l", "--logit-bias")) {
        NEED_VALUE();
        return parse_bias(o, val);
    }
    return 0;
#undef NEED_VALUE
}

void gen_usage_options(FILE *f, unsigned groups) {
    if (groups & GEN_OPT_MODEL)
        fprintf(f, "model:\n"
                   "  -m, --model FILE        GGUF model (required)\n"
                   "  -t, --threads N         threads, 1..512 (default: physical cores)\n"
                   "  --mlock                 lock the weights in RAM (no page-out when idle)\n");
    if (groups & (GEN_OPT_MODEL | GEN_OPT_DEVICE))
        fprintf(f, "  --device D              cpu (default), cuda or cuda:N (GPU N)\n"
                   "  --gpu-mem F             on a GPU, use at most the fraction F (0, 1] of its\n"
                   "                          memory for weights, KV cache and scratch\n");
    if (groups & GEN_OPT_CONTEXT)
        fprintf(f, "context:\n"
                   "  -c, --ctx-size N        KV cache cells (default: the model's training\n"
                   "                          context, at most 4096)\n"
                   "  -b, --batch-size N      most tokens per forward pass\n"
                   "  --kv-type T             KV cache type: f16 (default), f32 or q8_0\n");
    if (groups & GEN_OPT_SAMPLING)
        fprintf(f,
                "sampling (llama.cpp's flags and defaults):\n"
                "  --temp T                temperature >= 0; 0 is greedy, ties to the lowest id "
                "(0.8)\n"
                "  --top-k K               keep the K most likely, 0 off (40)\n"
                "  --top-p P               nucleus sampling, 1 off (0.95)\n"
                "  --min-p P               drop p < P * p_max, 0 off (0.05)\n"
                "  --typical P             locally typical sampling, 1 off (1)\n"
                "  --min-keep N            top-p/min-p/typical keep at least N (0)\n"
                "  --repeat-penalty R      > 0, 1 off (1)\n"
                "  --repeat-last-n N       penalty window, 0 off, -1 the context (64)\n"
                "  --presence-penalty X    (0)    --frequency-penalty X   (0)\n"
                "  --dry-multiplier X      DRY, 0 off (0)   --dry-base X (1.75)\n"
                "  --dry-allowed-length N  (2)    --dry-penalty-last-n N  -1 the context (-1)\n"
                "  --dry-sequence-breaker S  add a breaker (repeatable; 'none' clears the\n"
                "                          defaults \\n : \" *)\n"
                "  --xtc-probability P     XTC, 0 off (0)   --xtc-threshold T (0.1)\n"
                "  --mirostat N            0 off, 2 mirostat v2 (0)\n"
                "  --mirostat-lr ETA       (0.1)  --mirostat-ent TAU (5)\n"
                "  -l, --logit-bias ID+B   add B to token ID's logit (ID-inf bans it)\n"
                "  -s, --seed S            0..2^64-2, -1 random (-1)\n");
    if (groups & GEN_OPT_CONSTRAINT) gen_usage_constraint(f);
}

static bool on_gpu(const gen_opts *o) { return o->device && strcmp(o->device, "cpu") != 0; }

/* n_ctx, or when 0 what a context makes of it: the model's training context, at most 4096. */
static int32_t default_ctx(const rl_model *m, int32_t n_ctx) {
    if (n_ctx > 0) return n_ctx;
    const int32_t t = rl_model_n_ctx_train(m);
    return t > 0 && t < 4096 ? t : 4096;
}

bool gen_check_device(const gen_opts *o) {
    if (o->gpu_mem > 0 && !on_gpu(o)) {
        fprintf(stderr, "ruvllm %s: --gpu-mem applies to a GPU: give --device cuda[:N] too\n",
                o->cmd);
        return false;
    }
    char err[512] = "";
    rl_status st = rl_device_check(o->device, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm %s: --device %s: %s\n", o->cmd, o->device,
                err[0] ? err : rl_status_str(st));
        return false;
    }
    return true;
}

/* On a GPU: where its memory goes for contexts of n_ctx tokens (printed when print);
 * false, with a message, when n_ctx tokens of KV cache do not fit. */
static bool device_plan(const gen_opts *o, const rl_model *m, int32_t n_ctx, int32_t n_batch,
                        bool print, bool refuse) {
    rl_device_budget b;
    char err[512] = "", cap[64];
    rl_status st = rl_model_device_budget(m, o->kv_type, n_batch, &b, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm %s: --device %s: %s\n", o->cmd, o->device,
                err[0] ? err : rl_status_str(st));
        return false;
    }
    const double gib = 1073741824.0;
    if (o->gpu_mem > 0)
        snprintf(cap, sizeof cap, "--gpu-mem %g", o->gpu_mem);
    else
        snprintf(cap, sizeof cap, "no --gpu-mem cap");
    if (print)
        fprintf(stderr,
                "ruvllm %s: %s: %.2f of %.2f GiB (%s, %.2f GiB free): weights %.1f MiB, "
                "scratch %.1f MiB, KV cache room for %lld tokens (%s, %.1f KiB each): %lld "
                "sequence(s) of %d tokens at once\n",
                o->cmd, b.device, (double)b.budget / gib, (double)b.total / gib, cap,
                (double)b.free / gib, (double)b.weights / 1048576.0,
                (double)b.workspace / 1048576.0,
                (long long)b.kv_tokens, rl_type_name(o->kv_type),
                (double)b.kv_token_bytes / 1024.0,
                (long long)(b.kv_tokens / (n_ctx > 0 ? n_ctx : 1)), (int)n_ctx);
    if (refuse && b.kv_tokens < n_ctx) {
        fprintf(stderr,
                "ruvllm %s: a context of %d tokens needs %.1f MiB of KV cache; %s leaves room "
                "for %lld tokens on %s (lower -c or raise --gpu-mem)\n",
                o->cmd, (int)n_ctx, (double)b.kv_token_bytes * n_ctx / 1048576.0, cap,
                (long long)b.kv_tokens, b.device);
        return false;
    }
    return true;
}

rl_model *gen_load_model(const gen_opts *o) {
    if (!gen_check_device(o)) return NULL;
    rl_model_params mp = rl_model_default_params();
    mp.n_threads = o->n_threads;
    mp.use_mlock = o->mlock;
    mp.device = o->device;
    mp.gpu_mem = (float)o->gpu_mem;
    char err[512] = "";
    rl_model *m = NULL;
    rl_status st = rl_model_load(o->model, &mp, &m, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm %s: %s\n", o->cmd, err[0] ? err : rl_status_str(st));
        return NULL;
    }
    if (on_gpu(o) && !device_plan(o, m, default_ctx(m, o->n_ctx),
                                  o->n_batch > 0 ? o->n_batch : 512, true, o->n_ctx > 0)) {
        rl_model_free(m);
        return NULL;
    }
    return m;
}

rl_context *gen_new_context(const gen_opts *o, rl_model *m, int32_t n_ctx, int32_t n_batch,
                            int32_t n_outputs_max) {
    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = n_ctx;
    if (n_batch > 0) cp.n_batch = n_batch;
    cp.n_outputs_max = n_outputs_max;
    cp.kv_type = o->kv_type;
    cp.n_threads = o->n_threads;
    if (on_gpu(o) && !device_plan(o, m, default_ctx(m, n_ctx), cp.n_batch, false, true))
        return NULL;
    char err[512] = "";
    rl_context *ctx = NULL;
    rl_status st = rl_context_create(m, &cp, &ctx, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm %s: context: %s\n", o->cmd, err[0] ? err : rl_status_str(st));
        return NULL;
    }
    return ctx;
}

rl_sampler *gen_new_sampler(const gen_opts *o, rl_model *m, int32_t n_ctx) {
    rl_sampler_params sp = o->sp;
    sp.penalty_last_n = o->repeat_last_n < 0 ? n_ctx : o->repeat_last_n;
    sp.dry_penalty_last_n = o->dry_last_n < 0 ? n_ctx : o->dry_last_n;
    if (sp.penalty_last_n > RL_SAMPLER_MAX_WINDOW) sp.penalty_last_n = RL_SAMPLER_MAX_WINDOW;
    if (sp.dry_penalty_last_n > RL_SAMPLER_MAX_WINDOW) sp.dry_penalty_last_n = RL_SAMPLER_MAX_WINDOW;
    if (o->n_breakers >= 0) {
        sp.dry_sequence_breakers = o->breakers;
        sp.n_dry_sequence_breakers = o->n_breakers;
    }
    sp.logit_bias = o->n_bias ? o->bias : NULL;
    sp.n_logit_bias = o->n_bias;
    const int32_t nv = rl_model_n_vocab(m);
    for (int32_t k = 0; k < o->n_bias; k++)
        if (o->bias[k].token >= nv) {
            fprintf(stderr, "ruvllm %s: --logit-bias: token %d is out of the vocabulary [0, %d)\n",
                    o->cmd, (int)o->bias[k].token, (int)nv);
            return NULL;
        }
    char err[512] = "";
    rl_sampler *s = NULL;
    rl_status st = rl_sampler_create(&sp, nv, rl_model_vocab(m), &s, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm %s: sampling: %s\n", o->cmd, err[0] ? err : rl_status_str(st));
        return NULL;
    }
    return s;
}

char *gen_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    while (b) {
        len += fread(b + len, 1, cap - len, f);
        if (len < cap) break;
        char *nb = realloc(b, (cap *= 2) + 1);
        if (!nb) {
            free(b);
            errno = ENOMEM;
        }
        b = nb;
    }
    if (b && ferror(f)) {
        free(b);
        b = NULL;
        errno = EIO;
    }
    fclose(f);
    if (b) b[len] = 0;
    *n = len;
    return b;
}

rl_token *gen_tokenize(const char *cmd, const rl_vocab *v, const char *text, size_t len,
                       uint32_t flags, size_t *n) {
    *n = 0;
    rl_status st = rl_tokenize(v, text, len, flags, NULL, 0, n);
    rl_token *t = NULL;
    if (st == RL_OK || st == RL_ERR_RANGE) {
        t = malloc(sizeof(rl_token) * (*n + 1));
        st = t ? rl_tokenize(v, text, len, flags, t, *n + 1, n) : RL_ERR_NOMEM;
    }
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm %s: tokenizing the prompt: %s\n", cmd, rl_status_str(st));
        free(t);
        return NULL;
    }
    return t;
}

static bool append_text(const gen_loop_params *p, const char *s, size_t n) {
    if (!p->text || !n) return true;
    char *b = realloc(*p->text, *p->text_len + n + 1);
    if (!b) return false;
    memcpy(b + *p->text_len, s, n);
    *p->text_len += n;
    b[*p->text_len] = 0;
    *p->text = b;
    return true;
}

static bool emit_text(const gen_loop_params *p, const char *s, size_t n) {
    if (n && fwrite(s, 1, n, p->out) != n) return false;
    return append_text(p, s, n);
}

bool gen_plain_greedy(const gen_opts *o) {
    const rl_sampler_params *p = &o->sp; /* windows and bias as gen_new_sampler sets them */
    const bool pen = o->repeat_last_n != 0 && (p->repeat_penalty != 1.0f ||
                                               p->frequency_penalty != 0.0f ||
                                               p->presence_penalty != 0.0f);
    const bool dry = p->dry_multiplier > 0.0f && p->dry_base >= 1.0f && o->dry_last_n != 0;
    return p->temperature <= 0.0f && o->n_bias == 0 && !pen && !dry && !p->logprobs;
}

gen_loop_result gen_loop(const char *cmd, rl_context *ctx, rl_sampler *s,
                         const gen_loop_params *p) {
    gen_loop_result r = {.stop = GEN_STOP_LENGTH, .eog = RL_TOKEN_NULL};
    const rl_vocab *v = rl_model_vocab(rl_context_model(ctx));
    const int32_t n_ctx = rl_context_n_ctx(ctx);
    const gen_constraint *con = p->constraint && p->constraint->gc ? p->constraint : NULL;
    const double t0 = gen_now();
    while (p->n_max < 0 || r.n_gen < p->n_max) {
        const bool picked = p->argmax || p->sampled; /* the token came with the decode */
        const float *lg = picked ? NULL : rl_get_logits(ctx, -1);
        rl_token t = p->argmax    ? rl_get_argmax(ctx, -1)
                     : p->sampled ? rl_get_sampled(ctx, -1)
                                  : RL_TOKEN_NULL;
        if (p->sampled && t < 0) {
            fprintf(stderr, "ruvllm %s: sampling: no token can be chosen (every logit is -inf)\n",
                    cmd);
            r.stop = GEN_STOP_ERROR;
            break;
        }
        if (picked ? t < 0 : !lg) {
            fprintf(stderr, "ruvllm %s: no logits to sample from\n", cmd);
            r.stop = GEN_STOP_ERROR;
            break;
        }
        if (!picked &&
            rl_sampler_sample_constrained(s, lg, con ? rl_grammar_constraint_get(con->gc) : NULL,
                                          &t) != RL_OK) {
            /* a complete text whose end tokens are banned (--logit-bias) or missing */
            if (con && rl_grammar_matcher_can_end(con->m)) {
                r.stop = GEN_STOP_GRAMMAR;
                break;
            }
            fprintf(stderr, "ruvllm %s: sampling%s: %s\n", cmd, con ? " under the constraint" : "",
                    con && rl_grammar_matcher_errmsg(con->m)[0] ? rl_grammar_matcher_errmsg(con->m)
                                                               : rl_sampler_errmsg(s));
            r.stop = GEN_STOP_ERROR;
            break;
        }
        rl_sampler_accept(s, t);
        if (con && rl_grammar_matcher_accept_token(con->m, t) != RL_OK) {
            fprintf(stderr, "ruvllm %s: the grammar refused token %d: %s\n", cmd, (int)t,
                    rl_grammar_matcher_errmsg(con->m));
            r.stop = GEN_STOP_ERROR;
            break;
        }
        if ((con || !p->ignore_eos) && rl_vocab_is_eog(v, t)) {
            r.stop = GEN_STOP_EOG;
            r.eog = t;
            break;
        }
        bool ok = true;
        if (p->ids) {
            ok = fprintf(p->out, r.n_gen ? " %d" : "%d", (int)t) > 0;
        } else {
            const char *txt = NULL;
            size_t len = 0;
            ok = rl_detok_push(p->detok, t, &txt, &len) == RL_OK && emit_text(p, txt, len);
        }
        r.n_gen++;
        if (!ok || fflush(p->out) != 0) {
            fprintf(stderr, "ruvllm %s: writing the output failed\n", cmd);
            r.stop = GEN_STOP_ERROR;
            break;
        }
        if (con && rl_grammar_constraint_done(con->gc)) {
            r.stop = GEN_STOP_GRAMMAR;
            break;
        }
        if (p->n_max >= 0 && r.n_gen >= p->n_max) break;
        if (rl_kv_n_used(ctx) >= n_ctx) {
            r.stop = GEN_STOP_CONTEXT;
            break;
        }
        rl_batch b = rl_batch_get(&t, 1);
        rl_status st = rl_decode(ctx, &b);
        if (st != RL_OK) {
            r.stop = st == RL_ERR_LIMIT ? GEN_STOP_CONTEXT : GEN_STOP_ERROR;
            if (r.stop == GEN_STOP_ERROR)
                fprintf(stderr, "ruvllm %s: decode: %s\n", cmd, rl_context_errmsg(ctx));
            break;
        }
        if (p->hist && *p->n_hist < p->hist_cap) p->hist[(*p->n_hist)++] = t;
    }
    if (!p->ids && p->detok) {
        const char *txt = NULL;
        size_t len = 0;
        if (rl_detok_flush(p->detok, &txt, &len) == RL_OK) emit_text(p, txt, len);
        fflush(p->out);
    }
    r.t_gen = gen_now() - t0;
    return r;
}
