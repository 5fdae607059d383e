#include "gpu.h"

#include "backend/backend.h"

#include <stdio.h>

bool rl_test_have_gpu(char *why, size_t n) {
    if (rl__cuda_device_count() > 0) return true;
    rl_backend *be = NULL;
    char err[256] = "";
    rl__backend_cuda_create(0, &be, err, sizeof err);
    rl__backend_free(be);
    snprintf(why, n, "%s", err[0] ? err : "no CUDA device");
    return false;
}
