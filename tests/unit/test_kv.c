/* Unit tests of the paged KV block manager (src/kv): SHA-256 vectors, block accounting
 * scripts with the invariant checker after every operation, copy-on-write on fork, prefix
 * reuse and its limits (partial blocks, salts, forced key collisions), LRU eviction order,
 * truncation, argument errors, allocation failures, and a randomized run against a fake
 * KV memory that checks every computed slot reads back the right contents. */
#include "test.h"
#include "kv/kv.h"
#include "kv/kv_impl.h"
#include "kv/sha256.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* Invariant check after an operation; prints the violation. */
#define CHECK_KV(kv)                                                                               \
    do {                                                                                           \
        char e_[256];                                                                              \
        rl_status s_ = rl__kv_check((kv), e_, sizeof e_);                                          \
        CHECKF(s_ == RL_OK, "invariant: %s", e_);                                                  \
    } while (0)

static rl__kv *make_kv(int32_t n_blocks, int32_t bs, bool cache) {
    rl__kv_params p = rl__kv_default_params();
    p.n_blocks = n_blocks;
    p.block_size = bs;
    p.prefix_cache = cache;
    rl__kv *kv = NULL;
    char err[128];
    rl_status st = rl__kv_create(&p, &kv, err, sizeof err);
    CHECKF(st == RL_OK, "%s", err);
    return kv;
}

/* A sequence of n tokens tok[i] = base + i, reserved and computed. */
static int32_t seq_computed(rl__kv *kv, const char *salt, int32_t base, int32_t n) {
    int32_t s = -1, toks[512];
    CHECK(n <= 512);
    for (int32_t i = 0; i < n; i++) toks[i] = base + i;
    CHECK(rl__kv_seq_create(kv, salt, salt ? strlen(salt) : 0, 0, &s) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, s, toks, n) == RL_OK);
    bool fits = false;
    CHECK(rl__kv_seq_reserve(kv, s, n, &fits) == RL_OK && fits);
    CHECK(rl__kv_seq_computed(kv, s, n) == RL_OK);
    CHECK_KV(kv);
    return s;
}

/* A fresh sequence with tokens base + i (i < n) and a prefix lookup limited to n - 1. */
static int32_t seq_lookup(rl__kv *kv, const char *salt, int32_t base, int32_t n, int32_t *hit) {
    int32_t s = -1, toks[512];
    for (int32_t i = 0; i < n; i++) toks[i] = base + i;
    CHECK(rl__kv_seq_create(kv, salt, salt ? strlen(salt) : 0, 0, &s) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, s, toks, n) == RL_OK);
    CHECK(rl__kv_seq_match_prefix(kv, s, n - 1, hit) == RL_OK);
    CHECK_KV(kv);
    return s;
}

static int32_t table_at(rl__kv *kv, int32_t seq, int32_t j) {
    int32_t n = 0;
    const int32_t *t = rl__kv_seq_blocks(kv, seq, &n);
    return j < n ? t[j] : -1;
}

/* ---- SHA-256 ------------------------------------------------------------------------ */

static void hex(const uint8_t *d, char *out) {
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

/* FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA256ShortMsg") and the million-'a'
 * message; streaming in every chunk size gives the one-shot digest. */
TEST(sha256_vectors) {
    static const struct {
        const char *msg;
        const char *digest;
    } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklm"
         "nopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char h[65];
    uint8_t d[32];
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        rl__sha256(cases[i].msg, strlen(cases[i].msg), d);
        hex(d, h);
        CHECK_STR(h, cases[i].digest);
        size_t len = strlen(cases[i].msg);
        for (size_t chunk = 1; chunk <= 70; chunk++) {
            rl__sha256_ctx c;
            rl__sha256_init(&c);
            for (size_t off = 0; off < len; off += chunk)
                rl__sha256_update(&c, cases[i].msg + off, RL_MIN(chunk, len - off));
            uint8_t d2[32];
            rl__sha256_final(&c, d2);
            CHECK(memcmp(d, d2, 32) == 0);
        }
    }
    rl__sha256_ctx c;
    rl__sha256_init(&c);
    char a[1000];
    memset(a, 'a', sizeof a);
    for (int i = 0; i < 1000; i++) rl__sha256_update(&c, a, sizeof a);
    rl__sha256_final(&c, d);
    hex(d, h);
    CHECK_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* the padding boundaries: 55, 56, 63, 64 bytes give distinct digests, stream == one-shot */
    uint8_t seen[4][32];
    size_t lens[4] = {55, 56, 63, 64};
    for (int i = 0; i < 4; i++) rl__sha256(a, lens[i], seen[i]);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) CHECK(memcmp(seen[i], seen[j], 32) != 0);
}

/* ---- parameters --------------------------------------------------------------------- */

TEST(create_params) {
    static const struct {
        int32_t n_blocks, bs;
        rl_status want;
        const char *field;
    } cases[] = {
        {0, 16, RL_ERR_INVALID_ARG, "n_blocks"},
        {-3, 16, RL_ERR_INVALID_ARG, "n_blocks"},
        {RL_KV_MAX_BLOCKS + 1, 16, RL_ERR_INVALID_ARG, "n_blocks"},
        {8, 0, RL_ERR_INVALID_ARG, "block_size"},
        {8, RL_KV_MAX_BLOCK_SIZE + 1, RL_ERR_INVALID_ARG, "block_size"},
        {1, 1, RL_OK, NULL},
        {100, 16, RL_OK, NULL},
        {3, RL_KV_MAX_BLOCK_SIZE, RL_OK, NULL},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        rl__kv_params p = rl__kv_default_params();
        CHECK_EQ_INT(p.block_size, 16);
        p.n_blocks = cases[i].n_blocks;
        p.block_size = cases[i].bs;
        rl__kv *kv = (rl__kv *)1;
        char err[128] = "";
        rl_status st = rl__kv_create(&p, &kv, err, sizeof err);
        CHECKF(st == cases[i].want, "case %zu: %s", i, rl_status_str(st));
        if (cases[i].field) {
            CHECK(kv == NULL);
            CHECKF(strstr(err, cases[i].field) != NULL, "case %zu: %s", i, err);
        } else {
            CHECK(kv && rl__kv_n_free(kv) == cases[i].n_blocks);
            CHECK_KV(kv);
        }
        rl__kv_free(kv);
    }
    rl__kv_free(NULL);
    rl__kv *kv = NULL;
    CHECK(rl__kv_create(NULL, &kv, NULL, 0) == RL_ERR_INVALID_ARG);
}

/* ---- accounting scripts --------------------------------------------------------------- */

enum {
    OP_NEW,
    OP_ADD,
    OP_RESERVE,
    OP_COMPUTED,
    OP_FORK,
    OP_FREE,
    OP_RELEASE,
    OP_TRUNCATE,
    OP_MATCH,
    OP_END
};

/* One step of a script: op on sequence slot `s` (OP_FORK: from slot arg into slot s),
 * then the expected status, fits (reserve), free block count and copies queued so far
 * (-1: don't care). OP_ADD appends arg tokens whose ids are their positions, so every
 * sequence of a script has the same tokens at the same positions. */
typedef struct {
    int op, s, arg;
    rl_status want;
    int fits, n_free, n_copies;
} kv_step;

typedef struct {
    const char *name;
    int32_t n_blocks, bs;
    bool cache;
    kv_step steps[24];
} kv_script;

static const kv_script scripts[] = {
    {"grow and free",
     4,
     4,
     true,
     {{OP_NEW, 0, 0, RL_OK, -1, 4, 0},
      {OP_ADD, 0, 9, RL_OK, -1, 4, 0},
      {OP_RESERVE, 0, 5, RL_OK, 1, 2, 0},
      {OP_COMPUTED, 0, 5, RL_OK, -1, 2, 0},
      {OP_RESERVE, 0, 4, RL_OK, 1, 1, 0},
      {OP_COMPUTED, 0, 3, RL_OK, -1, 1, 0},
      {OP_COMPUTED, 0, 2, RL_ERR_INVALID_ARG, -1, 1, 0}, /* only 1 slot left */
      {OP_COMPUTED, 0, 1, RL_OK, -1, 1, 0},
      {OP_RESERVE, 0, 1, RL_ERR_INVALID_ARG, -1, 1, 0}, /* no token to compute */
      {OP_FREE, 0, 0, RL_OK, -1, 4, 0},
      {OP_END, 0, 0, RL_OK, 0, 0, 0}}},
    {"doesn't fit changes nothing",
     3,
     4,
     false,
     {{OP_NEW, 0, 0, RL_OK, -1, 3, 0},
      {OP_ADD, 0, 16, RL_OK, -1, 3, 0},
      {OP_RESERVE, 0, 13, RL_OK, 0, 3, 0},
      {OP_RESERVE, 0, 12, RL_OK, 1, 0, 0},
      {OP_COMPUTED, 0, 12, RL_OK, -1, 0, 0},
      {OP_RESERVE, 0, 1, RL_OK, 0, 0, 0},
      {OP_TRUNCATE, 0, 6, RL_OK, -1, 1, 0},
      {OP_RESERVE, 0, 1, RL_ERR_INVALID_ARG, -1, 1, 0}, /* tokens were cut too */
      {OP_ADD, 0, 10, RL_OK, -1, 1, 0},
      {OP_RESERVE, 0, 10, RL_OK, 0, 1, 0},
      {OP_RESERVE, 0, 6, RL_OK, 1, 0, 0},
      {OP_RELEASE, 0, 0, RL_OK, -1, 3, 0},
      {OP_FREE, 0, 0, RL_OK, -1, 3, 0},
      {OP_END, 0, 0, RL_OK, 0, 0, 0}}},
    {"fork shares, writes copy",
     6,
     4,
     false,
     {{OP_NEW, 0, 0, RL_OK, -1, 6, 0},
      {OP_ADD, 0, 6, RL_OK, -1, 6, 0},
      {OP_RESERVE, 0, 6, RL_OK, 1, 4, 0},
      {OP_COMPUTED, 0, 6, RL_OK, -1, 4, 0},
      {OP_FORK, 1, 0, RL_OK, -1, 4, 0},
      {OP_FORK, 2, 0, RL_OK, -1, 4, 0},
      {OP_ADD, 1, 1, RL_OK, -1, 4, 0},
      {OP_RESERVE, 1, 1, RL_OK, 1, 3, 1}, /* partial block shared 3 ways: copy */
      {OP_ADD, 0, 1, RL_OK, -1, 3, 1},
      {OP_RESERVE, 0, 1, RL_OK, 1, 2, 2}, /* still shared with 2: copy */
      {OP_ADD, 2, 1, RL_OK, -1, 2, 2},
      {OP_RESERVE, 2, 1, RL_OK, 1, 2, 2}, /* alone now: written in place */
      {OP_FREE, 1, 0, RL_OK, -1, 3, -1},
      {OP_FREE, 0, 0, RL_OK, -1, 4, -1},
      {OP_FREE, 2, 0, RL_OK, -1, 6, -1},
      {OP_END, 0, 0, RL_OK, 0, 0, 0}}},
    {"prefix hit, release, recompute",
     5,
     4,
     true,
     {{OP_NEW, 0, 0, RL_OK, -1, 5, 0},
      {OP_ADD, 0, 10, RL_OK, -1, 5, 0},
      {OP_RESERVE, 0, 10, RL_OK, 1, 2, 0},
      {OP_COMPUTED, 0, 10, RL_OK, -1, 2, 0},
      {OP_NEW, 1, 0, RL_OK, -1, 2, 0},
      {OP_ADD, 1, 11, RL_OK, -1, 2, 0},
      {OP_MATCH, 1, 10, RL_OK, -1, 2, 0}, /* 2 blocks hit, shared with seq 0 */
      {OP_MATCH, 1, 10, RL_ERR_INVALID_ARG, -1, 2, 0},
      {OP_RESERVE, 1, 3, RL_OK, 1, 1, 0},
      {OP_FREE, 0, 0, RL_OK, -1, 2, 0}, /* only the partial block comes back */
      {OP_RELEASE, 1, 0, RL_OK, -1, 5, 0},
      {OP_MATCH, 1, 10, RL_OK, -1, 3, 0}, /* cached blocks taken off the LRU list */
      {OP_FREE, 1, 0, RL_OK, -1, 5, 0},
      {OP_END, 0, 0, RL_OK, 0, 0, 0}}},
};

static void run_script(const kv_script *sc) {
    rl__kv *kv = make_kv(sc->n_blocks, sc->bs, sc->cache);
    if (!kv) return;
    int32_t ids[4] = {-1, -1, -1, -1};
    for (int i = 0; sc->steps[i].op != OP_END; i++) {
        const kv_step *t = &sc->steps[i];
        rl_status st = RL_OK;
        bool fits = true;
        int32_t s = ids[t->s];
        switch (t->op) {
        case OP_NEW:
            st = rl__kv_seq_create(kv, NULL, 0, 0, &ids[t->s]);
            break;
        case OP_ADD: {
            int32_t toks[64], n0 = rl__kv_seq_n_tokens(kv, s);
            for (int j = 0; j < t->arg; j++) toks[j] = n0 + j;
            st = rl__kv_seq_add_tokens(kv, s, toks, t->arg);
            break;
        }
        case OP_RESERVE:
            st = rl__kv_seq_reserve(kv, s, t->arg, &fits);
            break;
        case OP_COMPUTED:
            st = rl__kv_seq_computed(kv, s, t->arg);
            break;
        case OP_FORK:
            st = rl__kv_seq_fork(kv, ids[t->arg], 0, &ids[t->s]);
            break;
        case OP_FREE:
            st = rl__kv_seq_free(kv, s);
            break;
        case OP_RELEASE:
            st = rl__kv_seq_release(kv, s);
            break;
        case OP_TRUNCATE:
            st = rl__kv_seq_truncate(kv, s, t->arg);
            break;
        case OP_MATCH:
            st = rl__kv_seq_match_prefix(kv, s, t->arg, NULL);
            break;
        }
        int32_t nc = 0;
        rl__kv_copies(kv, &nc);
        CHECKF(st == t->want, "%s step %d: %s", sc->name, i, rl_status_str(st));
        if (t->fits >= 0) CHECKF(fits == (t->fits != 0), "%s step %d: fits %d", sc->name, i, fits);
        if (t->n_free >= 0)
            CHECKF(rl__kv_n_free(kv) == t->n_free, "%s step %d: %d free", sc->name, i,
                   (int)rl__kv_n_free(kv));
        if (t->n_copies >= 0)
            CHECKF(nc == t->n_copies, "%s step %d: %d copies", sc->name, i, (int)nc);
        char e[256];
        CHECKF(rl__kv_check(kv, e, sizeof e) == RL_OK, "%s step %d: %s", sc->name, i, e);
    }
    rl__kv_stats st;
    rl__kv_stats_get(kv, &st);
    CHECK_EQ_INT(st.n_seqs, 0);
    CHECK_EQ_INT(st.n_used, 0);
    rl__kv_free(kv);
}

TEST(accounting_scripts) {
    for (size_t i = 0; i < RL_ARRAY_LEN(scripts); i++) run_script(&scripts[i]);
}

/* ---- copy-on-write ------------------------------------------------------------------------ */

TEST(cow_on_fork) {
    rl__kv *kv = make_kv(12, 4, true);
    int32_t a = seq_computed(kv, NULL, 0, 10); /* blocks 0,1 full, 2 holds 2 tokens */
    int32_t b0 = table_at(kv, a, 0), b2 = table_at(kv, a, 2);
    int32_t b = -1;
    CHECK(rl__kv_seq_fork(kv, a, 32, &b) == RL_OK);
    CHECK_KV(kv);
    CHECK_EQ_INT(rl__kv_seq_n_computed(kv, b), 10);
    CHECK_EQ_INT(rl__kv_seq_n_tokens(kv, b), 10);
    CHECK(memcmp(rl__kv_seq_tokens(kv, a), rl__kv_seq_tokens(kv, b), 40) == 0);
    for (int j = 0; j < 3; j++) CHECK_EQ_INT(table_at(kv, b, j), table_at(kv, a, j));
    CHECK_EQ_INT(kv->blocks[b0].ref, 2);
    CHECK_EQ_INT(kv->blocks[b2].ref, 2);
    /* B writes token 10 into the shared partial block: it gets a copy of it */
    int32_t t = 77;
    bool fits = false;
    CHECK(rl__kv_seq_add_tokens(kv, b, &t, 1) == RL_OK);
    CHECK_EQ_INT(rl__kv_seq_blocks_needed(kv, b, 1), 1);
    CHECK(rl__kv_seq_reserve(kv, b, 1, &fits) == RL_OK && fits);
    CHECK_KV(kv);
    int32_t n = 0;
    const rl__kv_copy *c = rl__kv_copies(kv, &n);
    CHECK_EQ_INT(n, 1);
    int32_t nb2 = table_at(kv, b, 2);
    CHECK(nb2 != b2);
    CHECK(n == 1 && c[0].src == b2 && c[0].dst == nb2);
    CHECK_EQ_INT(table_at(kv, b, 0), b0); /* full blocks stay shared */
    CHECK_EQ_INT(kv->blocks[b2].ref, 1);
    /* A now holds its partial block alone: writes in place, no copy */
    t = 78;
    CHECK(rl__kv_seq_add_tokens(kv, a, &t, 1) == RL_OK);
    CHECK_EQ_INT(rl__kv_seq_blocks_needed(kv, a, 1), 0);
    CHECK(rl__kv_seq_reserve(kv, a, 1, &fits) == RL_OK && fits);
    rl__kv_copies(kv, &n);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(table_at(kv, a, 2), b2);
    rl__kv_copies_clear(kv);
    rl__kv_copies(kv, &n);
    CHECK_EQ_INT(n, 0);
    /* fork at a block boundary: the next write opens a fresh block, nothing to copy */
    CHECK(rl__kv_seq_computed(kv, a, 1) == RL_OK);
    int32_t d = seq_computed(kv, NULL, 500, 8), e = -1;
    CHECK(rl__kv_seq_fork(kv, d, 0, &e) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, e, &t, 1) == RL_OK);
    CHECK(rl__kv_seq_reserve(kv, e, 1, &fits) == RL_OK && fits);
    rl__kv_copies(kv, &n);
    CHECK_EQ_INT(n, 0);
    CHECK_KV(kv);
    /* slots reserved but not computed are not shared by a fork */
    int32_t f = -1, g = -1, toks[6] = {1, 2, 3, 4, 5, 6};
    CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &f) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, f, toks, 6) == RL_OK);
    int32_t free0 = rl__kv_n_free(kv);
    CHECK(rl__kv_seq_reserve(kv, f, 6, &fits) == RL_OK && fits);
    CHECK(rl__kv_seq_fork(kv, f, 0, &g) == RL_OK);
    CHECK_EQ_INT(rl__kv_seq_n_slots(kv, g), 0);
    CHECK_EQ_INT(rl__kv_n_free(kv), free0 - 2);
    CHECK_KV(kv);
    rl__kv_stats st;
    rl__kv_stats_get(kv, &st);
    CHECK_EQ_INT(st.cow_copies, 1);
    rl__kv_free(kv);
}

/* ---- prefix cache ------------------------------------------------------------------------- */

TEST(prefix_reuse) {
    static const struct {
        int32_t n_prev, n_new, max_tokens; /* tokens 0..n-1 in both */
        int32_t want_hit;
    } cases[] = {
        {10, 11, 10, 8},  /* two full blocks; the partial third is not shared */
        {10, 10, 9, 8},   /* limit n-1 = 9: two blocks */
        {10, 9, 8, 8},    /* limit exactly two blocks */
        {10, 9, 7, 4},    /* limit below two blocks: one */
        {8, 8, 7, 4},     /* a whole-prompt hit leaves the last block to compute */
        {3, 10, 9, 0},    /* the previous request had no full block */
        {16, 16, 0, 0},   /* limit 0 */
        {16, 40, 39, 16}, /* longer new prompt: the whole cached chain */
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        rl__kv *kv = make_kv(32, 4, true);
        int32_t a = seq_computed(kv, NULL, 0, cases[i].n_prev);
        int32_t b = -1, toks[64], hit = -1;
        for (int32_t k = 0; k < cases[i].n_new; k++) toks[k] = k;
        CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &b) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, b, toks, cases[i].n_new) == RL_OK);
        CHECK(rl__kv_seq_match_prefix(kv, b, cases[i].max_tokens, &hit) == RL_OK);
        CHECKF(hit == cases[i].want_hit, "case %zu: hit %d", i, (int)hit);
        CHECK_EQ_INT(rl__kv_seq_n_computed(kv, b), hit);
        for (int32_t j = 0; j < hit / 4; j++) CHECK_EQ_INT(table_at(kv, b, j), table_at(kv, a, j));
        CHECK_KV(kv);
        /* the hit blocks are shared with the live A; the rest is computed privately */
        bool fits = false;
        CHECK(rl__kv_seq_reserve(kv, b, cases[i].n_new - hit, &fits) == RL_OK && fits);
        int32_t nc = 0;
        rl__kv_copies(kv, &nc);
        CHECK_EQ_INT(nc, 0);
        CHECK(rl__kv_seq_computed(kv, b, cases[i].n_new - hit) == RL_OK);
        CHECK_KV(kv);
        rl__kv_stats st;
        rl__kv_stats_get(kv, &st);
        CHECK_EQ_INT(st.hit_tokens, hit);
        CHECK_EQ_INT(st.lookup_tokens, cases[i].n_new);
        CHECK_EQ_INT(st.hit_blocks, hit / 4);
        CHECK_EQ_INT(st.lookup_blocks, RL_MIN(cases[i].max_tokens, cases[i].n_new) / 4);
        rl__kv_free(kv);
    }
}

/* peek_prefix reports what match_prefix attaches, and how many of those blocks are
 * free, without changing or counting anything. */
TEST(peek_prefix) {
    rl__kv *kv = make_kv(16, 4, true);
    int32_t a = seq_computed(kv, NULL, 0, 12); /* 3 cached blocks */
    int32_t b = seq_computed(kv, NULL, 0, 5);  /* shares nothing: computed, a twin of a's 1st */
    rl__kv_seq_free(kv, a);                    /* a's blocks go to the LRU list */
    rl__kv_stats st0, st1;
    rl__kv_stats_get(kv, &st0);
    static const struct {
        int32_t n, max, hit, hit_free;
    } cases[] = {{13, 12, 12, 3}, {13, 11, 8, 2}, {6, 5, 4, 1}, {3, 2, 0, 0}};
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        int32_t s = -1, toks[16], hit = -1, hit_free = -1, free0 = rl__kv_n_free(kv);
        for (int32_t j = 0; j < cases[i].n; j++) toks[j] = j;
        CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &s) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, s, toks, cases[i].n) == RL_OK);
        CHECK(rl__kv_seq_peek_prefix(kv, s, cases[i].max, &hit, &hit_free) == RL_OK);
        CHECKF(hit == cases[i].hit && hit_free == cases[i].hit_free, "case %zu: %d %d", i, (int)hit,
               (int)hit_free);
        CHECK_EQ_INT(rl__kv_seq_n_slots(kv, s), 0);
        rl__kv_stats_get(kv, &st1);
        CHECK(st1.lookup_tokens == st0.lookup_tokens && st1.hit_tokens == st0.hit_tokens);
        int32_t got = -1;
        CHECK(rl__kv_seq_match_prefix(kv, s, cases[i].max, &got) == RL_OK);
        CHECK_EQ_INT(got, hit);
        CHECK_EQ_INT(rl__kv_n_free(kv), free0 - hit_free);
        if (got > 0) CHECK(rl__kv_seq_peek_prefix(kv, s, 8, &hit, NULL) == RL_ERR_INVALID_ARG);
        rl__kv_seq_free(kv, s);
        rl__kv_stats_get(kv, &st0);
        CHECK_KV(kv);
    }
    (void)b;
    rl__kv_free(kv);
}

/* Prefix reuse after the first request has ended: its blocks wait in the LRU list. */
TEST(prefix_reuse_after_free) {
    rl__kv *kv = make_kv(6, 4, true);
    int32_t a = seq_computed(kv, NULL, 0, 10);
    CHECK(rl__kv_seq_free(kv, a) == RL_OK);
    CHECK_KV(kv);
    rl__kv_stats st;
    rl__kv_stats_get(kv, &st);
    CHECK_EQ_INT(st.n_cached, 2);
    CHECK_EQ_INT(st.n_cached_free, 2);
    CHECK_EQ_INT(st.n_free, 6);
    int32_t hit = -1;
    int32_t b = seq_lookup(kv, NULL, 0, 12, &hit);
    CHECK_EQ_INT(hit, 8);
    rl__kv_stats_get(kv, &st);
    CHECK_EQ_INT(st.n_cached_free, 0);
    CHECK_EQ_INT(st.n_free, 4);
    /* a different continuation of the same first block: one block */
    int32_t toks[8] = {0, 1, 2, 3, 9, 9, 9, 9}, c = -1;
    CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &c) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, c, toks, 8) == RL_OK);
    CHECK(rl__kv_seq_match_prefix(kv, c, 8, &hit) == RL_OK);
    CHECK_EQ_INT(hit, 4);
    CHECK_EQ_INT(kv->blocks[table_at(kv, c, 0)].ref, 2);
    CHECK_KV(kv);
    /* two sequences computing the same block: the second finds its twin and stays out */
    int32_t d = seq_computed(kv, NULL, 100, 4);
    int32_t e = seq_computed(kv, NULL, 100, 4);
    CHECK(kv->blocks[table_at(kv, d, 0)].cached);
    CHECK(!kv->blocks[table_at(kv, e, 0)].cached);
    rl__kv_seq_free(kv, b);
    rl__kv_seq_free(kv, c);
    rl__kv_seq_free(kv, d);
    rl__kv_seq_free(kv, e);
    CHECK_KV(kv);
    rl__kv_free(kv);
}

TEST(salt_isolation) {
    static const struct {
        const char *first, *second;
        int32_t want_hit;
    } cases[] = {
        {NULL, NULL, 8},    {"alice", "alice", 8}, {"alice", "bob", 0}, {"alice", NULL, 0},
        {NULL, "alice", 0}, {"alice", "alicf", 0}, {"a", "aa", 0},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        rl__kv *kv = make_kv(16, 4, true);
        int32_t a = seq_computed(kv, cases[i].first, 0, 9);
        int32_t hit = -1;
        int32_t b = seq_lookup(kv, cases[i].second, 0, 9, &hit);
        CHECKF(hit == cases[i].want_hit, "case %zu: %d", i, (int)hit);
        (void)a;
        (void)b;
        rl__kv_free(kv);
    }
    /* share_prefix refuses to mix salts */
    rl__kv *kv = make_kv(16, 4, true);
    int32_t a = seq_computed(kv, "x", 0, 8), b = -1, toks[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK(rl__kv_seq_create(kv, "y", 1, 0, &b) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, b, toks, 8) == RL_OK);
    CHECK(rl__kv_seq_share_prefix(kv, b, a, 8) == RL_ERR_INVALID_ARG);
    CHECK(strstr(rl__kv_errmsg(kv), "salt") != NULL);
    rl__kv_free(kv);
}

/* With keys cut to 0 or 8 bits every block collides; the confirmation (tokens, parent
 * entry, salt key) must reject each false match and still find the true one. */
TEST(key_collisions) {
    static const int bits[] = {0, 8, 256};
    for (size_t bi = 0; bi < RL_ARRAY_LEN(bits); bi++) {
        rl__kv *kv = make_kv(32, 4, true);
        rl__kv_test_set_key_bits(kv, bits[bi]);
        /* chain A = [X, Z], chain B = [Y, Z]: Z blocks have equal tokens, different parents */
        int32_t X[4] = {1, 2, 3, 4}, Y[4] = {5, 6, 7, 8}, Z[4] = {9, 9, 9, 9};
        int32_t a = -1, b = -1;
        bool fits;
        CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &a) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, a, X, 4) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, a, Z, 4) == RL_OK);
        CHECK(rl__kv_seq_reserve(kv, a, 8, &fits) == RL_OK && fits);
        CHECK(rl__kv_seq_computed(kv, a, 8) == RL_OK);
        CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &b) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, b, Y, 4) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, b, Z, 4) == RL_OK);
        CHECK(rl__kv_seq_reserve(kv, b, 8, &fits) == RL_OK && fits);
        CHECK(rl__kv_seq_computed(kv, b, 8) == RL_OK);
        CHECK_KV(kv);
        rl__kv_stats st;
        rl__kv_stats_get(kv, &st);
        CHECK_EQ_INT(st.n_cached, 4); /* B's Z was not mistaken for A's */
        uint64_t coll0 = st.collisions;
        if (bits[bi] == 0) CHECK(coll0 > 0);
        /* lookups: [Y, Z] must hit B's two blocks, [X, Y] only A's first, [Y, X] B's first */
        int32_t c = -1, hit = -1;
        CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &c) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, c, Y, 4) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, c, Z, 4) == RL_OK);
        CHECK(rl__kv_seq_match_prefix(kv, c, 8, &hit) == RL_OK);
        CHECK_EQ_INT(hit, 8);
        CHECK_EQ_INT(table_at(kv, c, 0), table_at(kv, b, 0));
        CHECK_EQ_INT(table_at(kv, c, 1), table_at(kv, b, 1));
        int32_t d = -1;
        CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &d) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, d, X, 4) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, d, Y, 4) == RL_OK);
        CHECK(rl__kv_seq_match_prefix(kv, d, 8, &hit) == RL_OK);
        CHECK_EQ_INT(hit, 4);
        CHECK_EQ_INT(table_at(kv, d, 0), table_at(kv, a, 0));
        /* unseen tokens: nothing, however many keys match */
        int32_t W[8] = {4, 3, 2, 1, 9, 9, 9, 9}, e = -1;
        CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &e) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, e, W, 8) == RL_OK);
        CHECK(rl__kv_seq_match_prefix(kv, e, 8, &hit) == RL_OK);
        CHECK_EQ_INT(hit, 0);
        /* a salted sequence with the same tokens: the salt key rejects it */
        int32_t f = -1;
        CHECK(rl__kv_seq_create(kv, "s", 1, 0, &f) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, f, X, 4) == RL_OK);
        CHECK(rl__kv_seq_add_tokens(kv, f, Z, 4) == RL_OK);
        CHECK(rl__kv_seq_match_prefix(kv, f, 8, &hit) == RL_OK);
        CHECK_EQ_INT(hit, 0);
        rl__kv_stats_get(kv, &st);
        if (bits[bi] == 0) CHECK(st.collisions > coll0);
        if (bits[bi] == 256) CHECK_EQ_INT(st.collisions, 0);
        CHECK_KV(kv);
        rl__kv_free(kv);
    }
}

/* Eviction takes uncached free blocks first, then the least recently freed cached block;
 * a freed sequence's deepest block is evicted before its root. */
TEST(lru_eviction_order) {
    rl__kv *kv = make_kv(6, 4, true);
    int32_t a = seq_computed(kv, NULL, 0, 8);   /* A = blocks a0 a1 */
    int32_t b = seq_computed(kv, NULL, 100, 8); /* B = blocks b0 b1 */
    int32_t a0 = table_at(kv, a, 0), a1 = table_at(kv, a, 1);
    int32_t b0 = table_at(kv, b, 0), b1 = table_at(kv, b, 1);
    rl__kv_seq_free(kv, a);
    rl__kv_seq_free(kv, b);
    CHECK_KV(kv);
    /* LRU head to tail: a1 a0 b1 b0 */
    int32_t order[4], n = 0;
    for (int32_t x = kv->lru.head; x != KV_NIL && n < 4; x = kv->blocks[x].next) order[n++] = x;
    CHECK(n == 4 && order[0] == a1 && order[1] == a0 && order[2] == b1 && order[3] == b0);
    /* B's prompt comes back: b0 b1 leave the LRU list, then return to its tail */
    int32_t hit = -1;
    int32_t c = seq_lookup(kv, NULL, 100, 9, &hit);
    CHECK_EQ_INT(hit, 8);
    rl__kv_seq_free(kv, c);
    n = 0;
    for (int32_t x = kv->lru.head; x != KV_NIL && n < 4; x = kv->blocks[x].next) order[n++] = x;
    CHECK(n == 4 && order[0] == a1 && order[1] == a0 && order[2] == b1 && order[3] == b0);
    /* a new sequence of 3 blocks: 2 uncached free ones, then the LRU head a1 */
    rl__kv_stats st;
    int32_t d = seq_computed(kv, NULL, 1000, 12);
    rl__kv_stats_get(kv, &st);
    CHECK_EQ_INT(st.evictions, 1);
    CHECK(kv->blocks[a0].cached);
    CHECK(kv->blocks[b0].cached && kv->blocks[b1].cached);
    int32_t used_a1 = 0;
    for (int j = 0; j < 3; j++) used_a1 += table_at(kv, d, j) == a1;
    CHECK_EQ_INT(used_a1, 1);
    /* A's prefix now hits one block only */
    int32_t e = seq_lookup(kv, NULL, 0, 9, &hit);
    CHECK_EQ_INT(hit, 4);
    rl__kv_seq_free(kv, e);
    rl__kv_seq_free(kv, d);
    CHECK_KV(kv);
    rl__kv_free(kv);
}

TEST(truncate_and_rewrite) {
    rl__kv *kv = make_kv(8, 4, true);
    int32_t a = seq_computed(kv, NULL, 0, 10);
    int32_t a1 = table_at(kv, a, 1);
    CHECK(kv->blocks[a1].cached);
    /* truncate into the cached second block; rewriting it takes it out of the cache */
    CHECK(rl__kv_seq_truncate(kv, a, 6) == RL_OK);
    CHECK_KV(kv);
    CHECK_EQ_INT(rl__kv_seq_n_tokens(kv, a), 6);
    CHECK_EQ_INT(rl__kv_seq_n_computed(kv, a), 6);
    int32_t nb = 0;
    rl__kv_seq_blocks(kv, a, &nb);
    CHECK_EQ_INT(nb, 2);
    CHECK_EQ_INT(rl__kv_n_free(kv), 6);
    int32_t t[2] = {50, 51};
    bool fits;
    CHECK(rl__kv_seq_add_tokens(kv, a, t, 2) == RL_OK);
    CHECK(rl__kv_seq_reserve(kv, a, 2, &fits) == RL_OK && fits);
    CHECK(!kv->blocks[a1].cached);
    CHECK_EQ_INT(table_at(kv, a, 1), a1);
    CHECK(rl__kv_seq_computed(kv, a, 2) == RL_OK);
    CHECK(kv->blocks[a1].cached); /* re-registered with its new contents */
    CHECK_KV(kv);
    /* shared and truncated: the rewrite copies */
    int32_t b = -1;
    CHECK(rl__kv_seq_fork(kv, a, 0, &b) == RL_OK);
    CHECK(rl__kv_seq_truncate(kv, b, 5) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, b, t, 1) == RL_OK);
    rl__kv_copies_clear(kv);
    CHECK(rl__kv_seq_reserve(kv, b, 1, &fits) == RL_OK && fits);
    int32_t nc = 0;
    const rl__kv_copy *c = rl__kv_copies(kv, &nc);
    CHECK(nc == 1 && c[0].src == a1);
    CHECK(kv->blocks[a1].cached); /* A's block untouched */
    CHECK_KV(kv);
    /* truncate to 0 and beyond */
    CHECK(rl__kv_seq_truncate(kv, b, 7) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_truncate(kv, b, 0) == RL_OK);
    CHECK_EQ_INT(rl__kv_seq_n_slots(kv, b), 0);
    CHECK_KV(kv);
    rl__kv_free(kv);
}

TEST(bad_arguments) {
    rl__kv *kv = make_kv(4, 4, true);
    int32_t s = -1, t[3] = {1, -5, 2};
    bool fits;
    CHECK(rl__kv_seq_add_tokens(kv, 0, t, 1) == RL_ERR_INVALID_ARG); /* not live */
    CHECK(rl__kv_seq_reserve(kv, 7, 1, &fits) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_free(kv, -1) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_n_tokens(kv, 3) == -1);
    CHECK(rl__kv_seq_tokens(kv, 3) == NULL);
    CHECK(rl__kv_seq_create(kv, NULL, 3, 0, &s) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_create(kv, NULL, 0, -1, &s) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_create(kv, NULL, 0, 0, &s) == RL_OK);
    CHECK(rl__kv_seq_add_tokens(kv, s, t, 3) == RL_ERR_INVALID_ARG);
    CHECK(strstr(rl__kv_errmsg(kv), "tokens[1]") != NULL);
    CHECK_EQ_INT(rl__kv_seq_n_tokens(kv, s), 0);
    CHECK(rl__kv_seq_add_tokens(kv, s, NULL, 2) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_add_tokens(kv, s, t, -1) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_add_tokens(kv, s, t, 1) == RL_OK);
    CHECK(rl__kv_seq_reserve(kv, s, 2, &fits) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_reserve(kv, s, -1, &fits) == RL_ERR_INVALID_ARG);
    CHECK(rl__kv_seq_blocks_needed(kv, s, 2) == -1);
    CHECK(rl__kv_seq_computed(kv, s, 1) == RL_ERR_INVALID_ARG); /* not reserved */
    CHECK(rl__kv_seq_share_prefix(kv, s, s, 0) == RL_ERR_INVALID_ARG);
    int32_t u = seq_computed(kv, NULL, 5, 4);
    CHECK(rl__kv_seq_share_prefix(kv, s, u, 1) == RL_ERR_INVALID_ARG); /* tokens differ */
    CHECK(rl__kv_seq_share_prefix(kv, s, u, 5) == RL_ERR_INVALID_ARG); /* n too large */
    CHECK(rl__kv_seq_share_prefix(kv, u, s, 0) == RL_ERR_INVALID_ARG); /* dst holds blocks */
    CHECK(rl__kv_seq_match_prefix(kv, u, 4, NULL) == RL_ERR_INVALID_ARG);
    CHECK_KV(kv);
    rl__kv_free(kv);
}

/* ---- allocation failures ------------------------------------------------------------------- */

/* Fail the k-th allocation for k = 1, 2, ... until the operation succeeds: each failure
 * must return RL_ERR_NOMEM, leave the manager consistent and leak nothing. */
TEST(alloc_failures) {
    size_t base = rl_mem_in_use();
    int ok_at = 0;
    for (long k = 1; k < 20 && !ok_at; k++) {
        rl__kv_params p = rl__kv_default_params();
        p.n_blocks = 64;
        rl__kv *kv = NULL;
        rl__alloc_fail_after(k);
        rl_status st = rl__kv_create(&p, &kv, NULL, 0);
        rl__alloc_fail_after(0);
        if (st == RL_OK)
            ok_at = (int)k;
        else
            CHECK(st == RL_ERR_NOMEM && kv == NULL && rl_mem_in_use() == base);
        rl__kv_free(kv);
    }
    CHECK(ok_at > 1);
    CHECK_EQ_INT(rl_mem_in_use(), base);

    rl__kv *kv = make_kv(16, 4, true);
    int32_t a = seq_computed(kv, NULL, 0, 6);
    int32_t toks[100];
    for (int i = 0; i < 100; i++) toks[i] = i;
    /* create with capacity, add_tokens growth, fork, share; then the copy list */
    for (int what = 0; what < 3; what++) {
        ok_at = 0;
        for (long k = 1; k < 20 && !ok_at; k++) {
            int32_t s = -1;
            int32_t live0 = kv->n_live_seqs, free0 = rl__kv_n_free(kv);
            rl__alloc_fail_after(k);
            rl_status st;
            if (what == 0) {
                st = rl__kv_seq_create(kv, "salt", 4, 50, &s);
            } else if (what == 1) {
                st = rl__kv_seq_fork(kv, a, 0, &s);
            } else {
                st = rl__kv_seq_add_tokens(kv, a, toks, 100);
            }
            rl__alloc_fail_after(0);
            CHECK_KV(kv);
            if (st == RL_OK) {
                ok_at = (int)k;
                if (s >= 0) rl__kv_seq_free(kv, s);
            } else {
                CHECKF(st == RL_ERR_NOMEM, "what %d k %ld: %s", what, k, rl_status_str(st));
                CHECK_EQ_INT(kv->n_live_seqs, live0);
                CHECK_EQ_INT(rl__kv_n_free(kv), free0);
                if (what == 2) CHECK_EQ_INT(rl__kv_seq_n_tokens(kv, a), 6);
            }
        }
        CHECKF(ok_at > 0, "what %d never succeeded", what);
    }
    /* the copy list grows on the first copy-on-write */
    int32_t b = -1;
    CHECK(rl__kv_seq_fork(kv, a, 0, &b) == RL_OK);
    rl__kv_seq_truncate(kv, a, 6);
    int32_t t = 3;
    CHECK(rl__kv_seq_add_tokens(kv, b, &t, 1) == RL_OK);
    bool fits = true;
    int32_t free0 = rl__kv_n_free(kv);
    rl__alloc_fail_after(1);
    CHECK(rl__kv_seq_reserve(kv, b, 1, &fits) == RL_ERR_NOMEM);
    rl__alloc_fail_after(0);
    CHECK(!fits);
    CHECK_EQ_INT(rl__kv_n_free(kv), free0);
    CHECK_KV(kv);
    CHECK(rl__kv_seq_reserve(kv, b, 1, &fits) == RL_OK && fits);
    CHECK_KV(kv);
    rl__kv_free(kv);
    CHECK_EQ_INT(rl_mem_in_use(), base);
}

/* ---- randomized run against a fake KV memory -------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* What a slot holds after the forward pass wrote position p of a sequence: a digest of
 * the tokens [0, p] (K/V at p depend on the whole prefix). */
static uint64_t slot_value(const int32_t *toks, int32_t p) {
    uint64_t h = 1469598103934665603ull;
    for (int32_t i = 0; i <= p; i++) h = (h ^ (uint64_t)toks[i]) * 1099511628211ull;
    return h;
}

#define RS_SEQS 12

/* Random operations on up to RS_SEQS sequences over a small pool. Tokens come from a few
 * shared "documents" so that prefixes repeat. The fake memory receives the copies and the
 * writes of every computed chunk; after each operation every live sequence must read its
 * expected value from each of its computed slots through its block table, and the
 * invariant checker must pass. */
TEST(random_ops) {
    const int32_t bs = 4, n_blocks = 40;
    int bits_cases[2] = {256, 0};
    for (int bc = 0; bc < 2; bc++) {
        rl__kv *kv = make_kv(n_blocks, bs, true);
        rl__kv_test_set_key_bits(kv, bits_cases[bc]);
        uint64_t *mem = calloc((size_t)n_blocks * bs, sizeof *mem);
        int32_t ids[RS_SEQS];
        for (int i = 0; i < RS_SEQS; i++) ids[i] = -1;
        static int32_t docs[3][64];
        for (int d = 0; d < 3; d++)
            for (int i = 0; i < 64; i++) docs[d][i] = (d == 2 && i < 20) ? i : d * 100 + i;
        int failures0 = rl_test_failures;
        uint64_t hits = 0;
        for (int step = 0; step < 6000 && rl_test_failures == failures0; step++) {
            int i = (int)rnd(RS_SEQS);
            int32_t s = ids[i];
            uint32_t op = rnd(100);
            bool fits;
            if (s < 0) {
                const char *salt = rnd(4) == 0 ? "tenant" : NULL;
                CHECK(rl__kv_seq_create(kv, salt, salt ? 6 : 0, 0, &ids[i]) == RL_OK);
                int d = (int)rnd(3), n = 1 + (int)rnd(40);
                CHECK(rl__kv_seq_add_tokens(kv, ids[i], docs[d], n) == RL_OK);
                int32_t hit = 0;
                CHECK(rl__kv_seq_match_prefix(kv, ids[i], n - 1, &hit) == RL_OK);
                hits += (uint64_t)hit;
            } else if (op < 40) { /* a step: reserve, copy, write, commit */
                int32_t rem = rl__kv_seq_n_tokens(kv, s) - rl__kv_seq_n_computed(kv, s);
                if (rem == 0) {
                    int32_t t = (int32_t)rnd(3);
                    CHECK(rl__kv_seq_add_tokens(kv, s, &t, 1) == RL_OK);
                    rem = 1;
                }
                int32_t n = 1 + (int32_t)rnd((uint32_t)rem);
                rl__kv_copies_clear(kv);
                CHECK(rl__kv_seq_reserve(kv, s, n, &fits) == RL_OK);
                if (fits) {
                    int32_t nc = 0;
                    const rl__kv_copy *c = rl__kv_copies(kv, &nc);
                    for (int32_t k = 0; k < nc; k++)
                        memcpy(mem + (size_t)c[k].dst * bs, mem + (size_t)c[k].src * bs,
                               (size_t)bs * sizeof *mem);
                    int32_t nb = 0, p0 = rl__kv_seq_n_computed(kv, s);
                    const int32_t *tab = rl__kv_seq_blocks(kv, s, &nb);
                    const int32_t *toks = rl__kv_seq_tokens(kv, s);
                    for (int32_t p = p0; p < p0 + n; p++) {
                        int32_t b = tab[p / bs];
                        CHECKF(kv->blocks[b].ref == 1 && !kv->blocks[b].cached,
                               "write into block %d ref %d cached %d", (int)b,
                               (int)kv->blocks[b].ref, (int)kv->blocks[b].cached);
                        mem[(size_t)b * bs + p % bs] = slot_value(toks, p);
                    }
                    CHECK(rl__kv_seq_computed(kv, s, n) == RL_OK);
                }
            } else if (op < 50) {
                int j = (int)rnd(RS_SEQS);
                if (ids[j] < 0) CHECK(rl__kv_seq_fork(kv, s, 0, &ids[j]) == RL_OK);
            } else if (op < 60) {
                CHECK(rl__kv_seq_truncate(
                          kv, s, (int32_t)rnd((uint32_t)rl__kv_seq_n_tokens(kv, s) + 1)) == RL_OK);
            } else if (op < 68) {
                CHECK(rl__kv_seq_release(kv, s) == RL_OK);
                int32_t hit = 0;
                CHECK(rl__kv_seq_match_prefix(kv, s, rl__kv_seq_n_tokens(kv, s) - 1, &hit) ==
                      RL_OK);
                hits += (uint64_t)hit;
            } else if (op < 80) {
                CHECK(rl__kv_seq_free(kv, s) == RL_OK);
                ids[i] = -1;
            } else {
                int32_t t[3] = {(int32_t)rnd(3), 7, (int32_t)rnd(500)};
                CHECK(rl__kv_seq_add_tokens(kv, s, t, 1 + (int32_t)rnd(3)) == RL_OK);
            }
            CHECK_KV(kv);
            for (int k = 0; k < RS_SEQS; k++) {
                if (ids[k] < 0) continue;
                int32_t nb = 0, nc = rl__kv_seq_n_computed(kv, ids[k]);
                const int32_t *tab = rl__kv_seq_blocks(kv, ids[k], &nb);
                const int32_t *toks = rl__kv_seq_tokens(kv, ids[k]);
                for (int32_t p = 0; p < nc; p++)
                    CHECKF(mem[(size_t)tab[p / bs] * bs + p % bs] == slot_value(toks, p),
                           "step %d seq slot %d position %d reads stale contents", step, k, (int)p);
            }
        }
        rl__kv_stats st;
        rl__kv_stats_get(kv, &st);
        CHECK(hits > 0 && st.hit_tokens == hits);
        CHECK(st.cow_copies > 0);
        CHECK(st.evictions > 0);
        if (bits_cases[bc] == 0) CHECK(st.collisions > 0);
        fprintf(stderr,
                "  random_ops bits %d: hit tokens %llu of %llu, evictions %llu, copies "
                "%llu, collisions %llu\n",
                bits_cases[bc], (unsigned long long)st.hit_tokens,
                (unsigned long long)st.lookup_tokens, (unsigned long long)st.evictions,
                (unsigned long long)st.cow_copies, (unsigned long long)st.collisions);
        for (int k = 0; k < RS_SEQS; k++)
            if (ids[k] >= 0) rl__kv_seq_free(kv, ids[k]);
        rl__kv_stats_get(kv, &st);
        CHECK_EQ_INT(st.n_used, 0);
        CHECK_EQ_INT(st.n_free, n_blocks);
        CHECK_KV(kv);
        free(mem);
        rl__kv_free(kv);
    }
}

int main(void) {
    RUN(sha256_vectors);
    RUN(create_params);
    RUN(accounting_scripts);
    RUN(cow_on_fork);
    RUN(prefix_reuse);
    RUN(peek_prefix);
    RUN(prefix_reuse_after_free);
    RUN(salt_isolation);
    RUN(key_collisions);
    RUN(lru_eviction_order);
    RUN(truncate_and_rewrite);
    RUN(bad_arguments);
    RUN(alloc_failures);
    RUN(random_ops);
    return rl_test_finish();
}
