/*
 * launch.cu - the C side's handle on launch.cuh's launch settings.
 */
#include "cuda_impl.h"
#include "launch.cuh"

extern "C" void rl__cu_pdl_plain_next(void) { rlcu::g_pdl_plain = true; }
