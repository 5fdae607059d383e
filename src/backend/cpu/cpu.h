/*
 * cpu.h - internal interface of the CPU backend: dot-product kernels per type and ISA,
 * ISA selection, and the thread pool used by the model code.
 *
 * Dot kernels are named rl__vec_dot_<suffix>_<isa> (suffix as in RL_QUANT_TYPES, isa in
 * ref|avx2|avx512): x is one row of the weight type, y the same length in the weight's
 * vec_dot type (rl_type_vec_dot_type), n a multiple of the block size. The _ref kernels
 * are plain C and define the results every other path is tested against.
 */
#ifndef RL_BACKEND_CPU_H
#define RL_BACKEND_CPU_H

#include "../../quant/quant.h"

typedef float (*rl__vec_dot_fn)(int64_t n, const void *x, const void *y);

#define RL__DECL_DOTS(E, s)                                                                \
    float rl__vec_dot_##s##_ref(int64_t n, const void *x, const void *y);                  \
    float rl__vec_dot_##s##_avx2(int64_t n, const void *x, const void *y);                 \
    float rl__vec_dot_##s##_avx512(int64_t n, const void *x, const void *y);
RL_QUANT_TYPES(RL__DECL_DOTS)
#undef RL__DECL_DOTS

#endif /* RL_BACKEND_CPU_H */
