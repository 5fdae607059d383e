/* Unit tests of the util layer: status strings, allocator accounting and fault
 * injection, fp16/bf16 conversions. */
#include "test.h"
#include "util/util.h"

#include <immintrin.h>

TEST(status_strings) {
    CHECK_STR(rl_status_str(RL_OK), "success");
    CHECK_STR(rl_status_str(RL_ERR_BAD_FILE), "malformed or unsupported file");
    CHECK_STR(rl_status_str((rl_status)999), "unknown status");
    for (int s = 0; s < RL_STATUS_COUNT; s++) CHECK(strlen(rl_status_str((rl_status)s)) > 0);
}

TEST(alloc_accounting) {
    size_t base = rl_mem_in_use();
    void *a = rl__malloc(100);
    void *b = rl__aligned_alloc(64, 1000);
    CHECK(a && b);
    CHECK(((uintptr_t)b & 63) == 0);
    CHECK_EQ_INT(rl_mem_in_use(), base + 1100);
    a = rl__realloc(a, 300);
    CHECK_EQ_INT(rl_mem_in_use(), base + 1300);
    rl__free(a);
    rl__aligned_free(b);
    rl__free(NULL);
    CHECK_EQ_INT(rl_mem_in_use(), base);
}

TEST(alloc_fault_injection) {
    rl__alloc_fail_after(2);
    void *a = rl__malloc(8);
    void *b = rl__malloc(8);
    CHECK(a != NULL);
    CHECK(b == NULL);
    rl__alloc_fail_after(0);
    void *c = rl__malloc(8);
    CHECK(c != NULL);
    rl__free(a);
    rl__free(c);
    CHECK(rl__calloc(SIZE_MAX / 2, 4) == NULL); /* overflow refused */
}

/* Every fp16 value converts exactly; fp32->fp16 rounds like the hardware (F16C) when
 * the machine has it, and the round trip is the identity on non-NaN halves. */
TEST(fp16_conversions) {
    for (uint32_t i = 0; i < 65536; i++) {
        float f = rl__fp16_to_fp32((rl_fp16)i);
        CHECK(rl__f32_bits(f) == rl__f32_bits(rl__fp16_to_fp32_slow((rl_fp16)i)));
        if (f == f) CHECKF(rl__fp32_to_fp16(f) == i, "half 0x%04x", i);
    }
    CHECK(rl__fp16_to_fp32(0x3c00) == 1.0f);
    CHECK(rl__fp16_to_fp32(0xc000) == -2.0f);
    CHECK(rl__fp16_to_fp32(0x0001) == 5.9604644775390625e-08f);
    CHECK(rl__fp32_to_fp16(65520.0f) == 0x7c00);      /* rounds to inf */
    CHECK(rl__fp32_to_fp16(65519.0f) == 0x7bff);      /* largest finite */
    CHECK(rl__f32_bits(rl__fp16_to_fp32(0x7c01)) == 0x7fc02000u); /* sNaN comes back quiet */
    CHECK(rl__f32_bits(rl__fp16_to_fp32(0xfe00)) == 0xffc00000u);
    CHECK(rl__fp32_to_fp16(2.98023224e-08f) == 0x0000); /* exactly half the smallest: even */
    CHECK(rl__fp32_to_fp16(2.98023259e-08f) == 0x0001);
}

__attribute__((target("f16c"))) static uint16_t hw_cvt(float f) {
    return (uint16_t)_cvtss_sh(f, 0);
}

TEST(fp16_matches_f16c) {
    if (!__builtin_cpu_supports("f16c")) SKIP("no F16C on this CPU");
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        float f = rl__bits_f32((uint32_t)x);
        if (f != f) continue;
        CHECKF(rl__fp32_to_fp16(f) == hw_cvt(f), "f=%a", (double)f);
        if (rl_test_failures > 10) break;
    }
}

TEST(bf16_conversions) {
    CHECK(rl__fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(rl__bf16_to_fp32(0x3f80) == 1.0f);
    CHECK(rl__fp32_to_bf16(rl__bits_f32(0x3f808000u)) == 0x3f80); /* tie to even */
    CHECK(rl__fp32_to_bf16(rl__bits_f32(0x3f818000u)) == 0x3f82);
    CHECK((rl__fp32_to_bf16(rl__bits_f32(0x7f800001u)) & 0x7fc0) == 0x7fc0); /* NaN quiet */
}

TEST(type_table) {
    CHECK_EQ_INT(rl_type_block_size(RL_TYPE_Q4_K), 256);
    CHECK_EQ_INT(rl_type_block_bytes(RL_TYPE_Q4_K), 144);
    CHECK_STR(rl_type_name(RL_TYPE_IQ2_XXS), "IQ2_XXS");
    rl_type t;
    CHECK(rl_type_from_name("q6_k", &t) == RL_OK && t == RL_TYPE_Q6_K);
    CHECK(rl_type_from_name("Q9_9", &t) == RL_ERR_NOT_FOUND);
    CHECK(!rl_type_valid(4) && !rl_type_valid(-1) && !rl_type_valid(43));
    size_t rb;
    CHECK(rl_type_row_bytes(RL_TYPE_Q4_0, 4096, &rb) == RL_OK && rb == 2304);
    CHECK(rl_type_row_bytes(RL_TYPE_Q4_0, 33, &rb) == RL_ERR_INVALID_ARG);
    CHECK(rl_type_row_bytes(RL_TYPE_F32, INT64_MAX, &rb) == RL_ERR_RANGE);
}

int main(void) {
    RUN(status_strings);
    RUN(alloc_accounting);
    RUN(alloc_fault_injection);
    RUN(fp16_conversions);
    RUN(fp16_matches_f16c);
    RUN(bf16_conversions);
    RUN(type_table);
    return rl_test_finish();
}
