/*
 * cmd_tokenize.c - `ruvllm tokenize` (text -> ids) and `ruvllm detokenize` (ids -> text)
 * with a model's vocabulary. Only the GGUF metadata is read; no weights are loaded.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage_tokenize(FILE *f) {
    fprintf(f, "usage: ruvllm tokenize -m MODEL (-p TEXT | -f FILE) [--no-bos] [--special]\n"
               "                       [--json | --pieces]\n\n"
               "Tokenize TEXT (or the bytes of FILE) with the vocabulary of MODEL (a GGUF file).\n"
               "Prints the ids on one line, separated by single spaces.\n"
               "  --no-bos       add no BOS/EOS, whatever the metadata says\n"
               "  --special      control tokens written in the text (<|im_end|>) become those\n"
               "                 tokens (also --parse-special)\n"
               "  --json         print {\"ids\": [...], \"pieces\": [...]} (pieces as text; bytes\n"
               "                 that are not UTF-8 on their own show as U+FFFD)\n"
               "  --pieces       print one token per line: id, tab, piece with C escapes\n"
               "  --ids          ids only (the default)\n");
}

static void usage_detokenize(FILE *f) {
    fprintf(f, "usage: ruvllm detokenize -m MODEL --ids 1,2,3 [--special] [--keep-space]\n\n"
               "Print the text of the ids (separated by commas or spaces) and a newline.\n"
               "  --special      show control tokens (BOS, EOS, <|im_end|>) as their text\n"
               "  --keep-space   keep the leading space SentencePiece puts in front of text\n"
               "  --no-cleanup   keep the spaces the model's clean-up removes (\" ,\")\n");
}

/* A piece with C escapes for bytes that are not printable ASCII. */
static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\n':
            fputs("\\n", stdout);
            break;
        case '\t':
            fputs("\\t", stdout);
            break;
        case '\r':
            fputs("\\r", stdout);
            break;
        case '\\':
            fputs("\\\\", stdout);
            break;
        default:
            if (c < 0x20 || c >= 0x7f)
                printf("\\x%02x", c);
            else
                putchar(c);
        }
    }
}

/* The text of token t with control tokens shown: in buf when it fits, else in a malloc'd
 * buffer (the caller frees what is not buf); *n its length (0 when even that fails). */
static char *piece(const rl_vocab *v, rl_token t, char *buf, size_t size, size_t *n) {
    *n = 0;
    rl_status st = rl_token_to_piece(v, t, RL_DETOK_SPECIAL, buf, size, n);
    if (st == RL_OK) return buf;
    char *big = st == RL_ERR_RANGE ? malloc(*n) : NULL;
    if (big && rl_token_to_piece(v, t, RL_DETOK_SPECIAL, big, *n, n) == RL_OK) return big;
    free(big);
    *n = 0;
    return buf;
}

/* The piece as JSON text: bytes that are not whole UTF-8 become U+FFFD. */
static json_t *piece_json(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    char *b = malloc(n * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80                 ? 1
                   : c >= 0xc2 && c <= 0xdf ? 2
                   : c >= 0xe0 && c <= 0xef ? 3
                   : c >= 0xf0 && c <= 0xf4 ? 4
                                            : 0;
        if (k && i + k <= n) {
            json_t *t = json_stringn(s + i, k);
            if (t) {
                json_decref(t);
                memcpy(b + o, s + i, k);
                o += k;
                i += k;
                continue;
            }
        }
        memcpy(b + o, "\xef\xbf\xbd", 3);
        o += 3;
        i++;
    }
    j = json_stringn(b, o);
    free(b);
    return j;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool no_bos = false, special = false, json = false, pieces = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_tokenize(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) {
            prompt = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--special") || !strcmp(a, "--parse-special")) {
            special = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--pieces")) {
            pieces = true;
        } else if (!strcmp(a, "--ids")) {
            pieces = json = false;
        } else {
            fprintf(stderr, "ruvllm tokenize: unknown or incomplete option '%s'\n\n", a);
            usage_tokenize(stderr);
            return 2;
        }
    }
    if (!model || (!prompt == !file) || (json && pieces)) {
        usage_tokenize(stderr);
        return 2;
    }
    size_t len = 0;
    char *owned = NULL;
    const char *text = prompt;
    if (file) {
        owned = cli_read_file(file, &len);
        if (!owned) {
            fprintf(stderr, "ruvllm tokenize: %s: %s\n", file, strerror(errno));
            return 1;
        }
        text = owned;
    } else {
        len = strlen(prompt);
    }
    rl_gguf *g;
    rl_vocab *v;
    if (cli_open_vocab("ruvllm", model, &g, &v)) {
        free(owned);
        return 1;
    }
    uint32_t flags =
        (no_bos ? 0 : RL_TOKENIZE_ADD_SPECIAL) | (special ? RL_TOKENIZE_PARSE_SPECIAL : 0);
    size_t n = 0;
    rl_token *ids = NULL;
    rl_status st = rl_tokenize(v, text, len, flags, NULL, 0, &n);
    if (st == RL_ERR_RANGE || st == RL_OK) {
        ids = malloc((n ? n : 1) * sizeof(rl_token));
        st = ids ? rl_tokenize(v, text, len, flags, ids, n, &n) : RL_ERR_NOMEM;
    }
    int rc = 0;
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm tokenize: %s\n", rl_status_str(st));
        rc = 1;
    } else if (json) {
        size_t pl;
        json_t *doc = json_object(), *ja = json_array(), *jp = json_array();
        for (size_t i = 0; i < n; i++) {
            char buf[1024], *pb = piece(v, ids[i], buf, sizeof buf, &pl);
            json_array_append_new(ja, json_integer(ids[i]));
            json_array_append_new(jp, piece_json(pb, pl));
            if (pb != buf) free(pb);
        }
        json_object_set_new(doc, "ids", ja);
        json_object_set_new(doc, "pieces", jp);
        char *s = json_dumps(doc, JSON_ENSURE_ASCII); /* {"ids": [1, 2], "pieces": [...]} */
        if (s)
            puts(s);
        else
            rc = 1;
        free(s);
        json_decref(doc);
    } else if (pieces) {
        size_t pl;
        for (size_t i = 0; i < n; i++) {
            char buf[1024], *pb = piece(v, ids[i], buf, sizeof buf, &pl);
            printf("%d\t'", ids[i]);
            print_escaped(pb, pl);
            printf("'\n");
            if (pb != buf) free(pb);
        }
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    if (fflush(stdout) != 0) rc = 1;
    free(ids);
    free(owned);
    rl_vocab_free(v);
    rl_gguf_free(g);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL, *list = NULL;
    uint32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_detokenize(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--ids") && i + 1 < argc) {
            list = argv[++i];
        } else if (!strcmp(a, "--special")) {
            flags |= RL_DETOK_SPECIAL;
        } else if (!strcmp(a, "--keep-space")) {
            flags |= RL_DETOK_KEEP_LEADING_SPACE;
        } else if (!strcmp(a, "--no-cleanup")) {
            flags |= RL_DETOK_NO_CLEANUP;
        } else {
            fprintf(stderr, "ruvllm detokenize: unknown or incomplete option '%s'\n\n", a);
            usage_detokenize(stderr);
            return 2;
        }
    }
    if (!model || !list) {
        usage_detokenize(stderr);
        return 2;
    }
    size_t cap = strlen(list) / 2 + 2, n = 0;
    rl_token *ids = malloc(cap * sizeof(rl_token));
    if (!ids) return 1;
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX ||
            (*end && *end != ',' && *end != ' ' && *end != '\t' && *end != '\n')) {
            fprintf(stderr, "ruvllm detokenize: --ids: not a token id at '%.20s'\n", p);
            free(ids);
            return 2;
        }
        ids[n++] = (rl_token)x;
        p = end;
    }
    rl_gguf *g;
    rl_vocab *v;
    if (cli_open_vocab("ruvllm", model, &g, &v)) {
        free(ids);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= rl_vocab_n_tokens(v)) {
            fprintf(stderr, "ruvllm detokenize: id %d is past the vocabulary (%d tokens)\n", ids[i],
                    rl_vocab_n_tokens(v));
            rc = 1;
        }
    if (!rc) {
        size_t need = 0;
        rl_status st = rl_detokenize(v, ids, n, flags, NULL, 0, &need);
        char *text = malloc(need + 1);
        if (st == RL_ERR_RANGE || st == RL_OK)
            st = text ? rl_detokenize(v, ids, n, flags, text, need, &need) : RL_ERR_NOMEM;
        if (st == RL_OK) {
            fwrite(text, 1, need, stdout);
            putchar('\n');
        } else {
            fprintf(stderr, "ruvllm detokenize: %s\n", rl_status_str(st));
            rc = 1;
        }
        free(text);
    }
    if (fflush(stdout) != 0) rc = 1;
    free(ids);
    rl_vocab_free(v);
    rl_gguf_free(g);
    return rc;
}
