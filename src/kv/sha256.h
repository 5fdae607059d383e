/*
 * sha256.h - SHA-256 as specified by FIPS 180-4 (Secure Hash Standard, NIST 2015),
 * sections 4.1.2 (functions), 4.2.2 (constants), 5.1.1 (padding), 5.3.3 (initial value)
 * and 6.2 (computation). Used by the KV block manager to key full blocks of tokens in
 * the prefix cache. Streaming interface; no allocation; thread-safe on distinct contexts.
 */
#ifndef RL_KV_SHA256_H
#define RL_KV_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define RL_SHA256_BYTES 32

typedef struct rl__sha256_ctx {
    uint32_t h[8];
    uint64_t n_bytes; /* message length so far */
    uint8_t buf[64];  /* pending partial block */
    uint32_t n_buf;
} rl__sha256_ctx;

void rl__sha256_init(rl__sha256_ctx *c);
void rl__sha256_update(rl__sha256_ctx *c, const void *data, size_t len);
/* Pads, writes the 32-byte digest (big-endian words, as the standard prints them) and
 * leaves c unusable until the next init. */
void rl__sha256_final(rl__sha256_ctx *c, uint8_t out[RL_SHA256_BYTES]);
/* One-shot digest of len bytes. */
void rl__sha256(const void *data, size_t len, uint8_t out[RL_SHA256_BYTES]);

#endif /* RL_KV_SHA256_H */
