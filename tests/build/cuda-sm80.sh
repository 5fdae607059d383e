#!/usr/bin/env bash
# Every CUDA file of the backend assembled for sm_80 (and its PTX), the release build's
# second target: a build for sm_90a alone (CI's, to keep the compile short) would not see
# sm_90-only instructions outside their guards, which break the release build for everyone.
#   tests/build/cuda-sm80.sh NVCC SOURCE_DIR
set -uo pipefail
nvcc=$1
src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export nvcc src out
ls "$src"/src/backend/cuda/*.cu | xargs -P "$(nproc)" -I{} bash -c '
    f={}
    if ! "$nvcc" -c -DRL_BUILDING_LIBRARY -D_GNU_SOURCE -I "$src/include" -I "$src/src" -O3 \
            -std=c++17 -Werror=all-warnings -gencode=arch=compute_80,code=sm_80 \
            -gencode=arch=compute_80,code=compute_80 "$f" -o "$out/$(basename "$f").o" \
            > "$out/$(basename "$f").log" 2>&1; then
        echo "FAIL $(basename "$f") for sm_80:"
        head -20 "$out/$(basename "$f").log"
        exit 255
    fi
    echo "ok   $(basename "$f")"
'
