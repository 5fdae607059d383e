#!/usr/bin/env bash
# The CUDA backend's tests and a decode benchmark on a GPU machine that has the NVIDIA
# driver but none of our build dependencies.
#
#   scripts/cuda-device-check.sh prepare [BUILD]   # here: fill device/ (git-ignored) with
#                                                  # the stripped test and bench binaries of
#                                                  # BUILD (default build-cuda), the shared
#                                                  # libraries they need, and the models and
#                                                  # goldens the tests read
#   scripts/cuda-device-check.sh run [OUT]         # there: run everything from device/,
#                                                  # logs to OUT (default $OUT or /tmp/cuda-out)
#
# On a remote GPU machine: prepare here, then run `bash scripts/cuda-device-check.sh run` there
# carrying device/. Set BENCH_SHAPES (default "llama3-1b:Q4_K_M") to benchmark other
# random-weight models (ruvllm synth shapes and types; each written once on the machine),
# DEVICE_DIR=device-NAME to use another carried folder (one per concurrent job),
# BATCHED="1,8,32,64" for batched decoding of each benchmarked model (ruvllm bench --parallel),
# SERVE=1,8,32,64 for the server on the GPU (see below), SANITIZE=1 to add compute-sanitizer memcheck and racecheck passes over the operator test, PROFILE=1
# for Nsight Compute kernel times of two decode steps (after a prompt of PROFILE_PP tokens,
# default 16), KERNELS=1 for the decode products
# alone (bench_cuda --kernels: GB/s of each kernel against the copy bandwidth, into
# bench.jsonl), TEST_TIMEOUT (seconds, default 400) for each test, TESTS=0 to
# skip the tests (ONLY_TESTS="a b" to run just those, PARALLEL=1 to run them at once with one
# log file), BENCH_AB="VAR=0 ..." to benchmark each shape again with each of those
# environment settings (A/B of a switch such as RUVLLM_CUDA_MV=0).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
dev=${DEVICE_DIR:-device} # the carried folder (git-ignored): device/ or device-<name>/

if [ "$mode" = prepare ]; then
    build=${2:-build-cuda}
    shared=${RUVLLM_TESTDATA:-$(cd .. && pwd)/shared}
    rm -rf $dev/bin $dev/libs $dev/testdata
    mkdir -p $dev/bin $dev/libs $dev/testdata/models/zoo $dev/testdata/golden
    # every GPU test the build has (test_cuda_*), the device parameter test, the benchmark
    for b in test_device_param bench_cuda $(cd "$build" && ls test_cuda_* | grep -vE '\.|_san$'); do
        strip -o $dev/bin/$b "$build/$b" || exit 1
    done
    for l in libjansson.so.4 libpcre2-8.so.0 libutf8proc.so.2; do
        cp -L "/lib/x86_64-linux-gnu/$l" $dev/libs/ || exit 1
    done
    # the command-line tool (for BATCHED): its library and every Debian library it links
    # (libmicrohttpd, libcurl and theirs), not the C runtime or CUDA's
    strip -o $dev/bin/ruvllm "$build/ruvllm" || exit 1
    strip -o $dev/libs/libruvllm.so.0 "$build/libruvllm.so.0" || exit 1
    ldd "$build/ruvllm" | awk '$3 ~ /^\/lib\/x86_64-linux-gnu\// {print $3}' |
        grep -vE '/(libc|libm|libpthread|libdl|librt|libresolv)\.so' |
        while read -r l; do cp -L "$l" $dev/libs/ || exit 1; done || exit 1
    cp "$shared"/models/stories260K*.gguf $dev/testdata/models/
    for m in llama3-F32 llama3-Q8_0 llama3-Q4_K_M gemma2-F32 phi3-Q4_K_M qwen2moe-Q8_0 \
             qwen2moe-F32; do
        cp "$shared/models/zoo/$m.gguf" $dev/testdata/models/zoo/
    done
    for g in stories260K stories260K-f16 stories260K-q8_0 stories260K-q5_1 stories260K-q5_0 \
             stories260K-q4_1 stories260K-q4_0.norepack llama3-F32 llama3-Q8_0 \
             llama3-Q4_K_M.norepack gemma2-F32 phi3-Q4_K_M.norepack qwen2moe-Q8_0; do
        cp "$shared/golden/$g.json" "$shared/golden/$g.logits.bin" $dev/testdata/golden/
    done
    du -sh $dev
    # PACK=1: also write $dev-pack/d.tar.gz (binaries share most bytes; the carry limit is 64 MiB):
    # carry $dev-pack and run `tar xzf $dev-pack/d.tar.gz && scripts/cuda-device-check.sh run` there.
    if [ "${PACK:-0}" = 1 ]; then
        mkdir -p $dev-pack && tar -czf $dev-pack/d.tar.gz $dev && du -sh $dev-pack/d.tar.gz
    fi
    exit 0
fi

if [ "$mode" != run ]; then
    echo "usage: $0 prepare [BUILD] | run [OUT]" >&2
    exit 2
fi

out=${2:-${OUT:-/tmp/cuda-out}}
mkdir -p "$out" /tmp/cuda-build
root=$(pwd)
# cuBLAS comes from the machine's CUDA toolkit (too large to carry)
export LD_LIBRARY_PATH="$root/$dev/libs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUVLLM_TESTDATA="$root/$dev/testdata" RUVLLM_BUILD_DIR=/tmp/cuda-build
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
    2>&1 | tee "$out/gpu.txt"
cd $dev/bin || exit 1
tests="test_device_param $(ls test_cuda_* | grep -vE '\.|_san$' | tr '\n' ' ')"
[ -n "${ONLY_TESTS:-}" ] && tests=$ONLY_TESTS # e.g. ONLY_TESTS="test_cuda_ops"
[ "${TESTS:-1}" = 0 ] && tests=
if [ "${KERNELS:-0}" = 1 ]; then
    echo "== bench_cuda --kernels"
    timeout 300 ./bench_cuda --kernels 2>&1 | tee -a "$out/bench.jsonl" |
        sed -E 's/.*"type": "([^"]*)", "rows": ([0-9]*), "K": ([0-9]*).*"path": "([a-z0-9]*)".*"us": ([0-9.]*), "GBs": ([0-9]*).*"fraction_of_copy": ([0-9.]*).*/\1 \2x\3 \4 \5 us \6 GB\/s \7/'
fi
# PARALLEL=1: every test at once (the GPU is shared; most of a test's time is its CPU
# reference), logs gathered into one file, $out/tests.log (the device returns few files)
logdir=$out
[ "${PARALLEL:-0}" = 1 ] && logdir=/tmp/cuda-test-logs && mkdir -p $logdir
run_test() {
    timeout "${TEST_TIMEOUT:-400}" "./$1" >"$logdir/$1.log" 2>&1
    echo $? >"$logdir/$1.rc"
}
if [ "${PARALLEL:-0}" = 1 ]; then
    for t in $tests; do run_test "$t" & done
    wait
fi
for t in $tests; do
    echo "== $t"
    [ "${PARALLEL:-0}" = 1 ] || run_test "$t"
    rc=$(cat "$logdir/$t.rc")
    grep -E "FAIL|failed|skip|matmul |matvec |attention |rope cfg 0|rmsnorm|two sequences|f16 cache|\(cuda,|cuda vs cpu" \
        "$logdir/$t.log" | head -80
    tail -1 "$logdir/$t.log"
    echo "exit $rc"
    [ "$rc" = 0 ] || status=1
    if [ "${PARALLEL:-0}" = 1 ]; then
        echo "##### $t (exit $rc)" >>"$out/tests.log"
        cat "$logdir/$t.log" >>"$out/tests.log"
    fi
done
if [ "${SANITIZE:-0}" = 1 ]; then
    echo "== compute-sanitizer memcheck test_cuda_ops"
    timeout "${SANITIZE_TIMEOUT:-500}" compute-sanitizer --tool memcheck --leak-check no ./test_cuda_ops \
        >"$out/memcheck.log" 2>&1
    echo "exit $?"
    grep -E "ERROR SUMMARY|Invalid|checks" "$out/memcheck.log" | head -20
    # racecheck (graphs on; each test of the file its own process, at once: one process runs
    # past the timeout). cuBLAS's own nvjet kernels report hazards of their own (not ours),
    # counted apart.
    echo "== compute-sanitizer racecheck test_cuda_ops (a process a test)"
    for n in $(grep -o 'RUN([a-z0-9_]*)' "$root/tests/unit/test_cuda_ops.c" 2>/dev/null |
               sed 's/RUN(//;s/)//'); do
        RUVLLM_TEST_ONLY=$n timeout "${SANITIZE_TIMEOUT:-500}" compute-sanitizer --tool racecheck \
            ./test_cuda_ops >"$out/racecheck-$n.log" 2>&1 &
    done
    wait
    cat "$out"/racecheck-*.log >"$out/racecheck.log" 2>/dev/null
    rm -f "$out"/racecheck-*.log
    grep -E "RACECHECK SUMMARY|checks" "$out/racecheck.log"
    echo "hazards outside cuBLAS: $(grep "Race reported" "$out/racecheck.log" | grep -vc nvjet)"
fi
for sb in ${BENCH_SHAPES:-llama3-1b:Q4_K_M}; do
    shape=${sb%%:*} type=${sb##*:}
    echo "== bench $shape $type"
    timeout 400 ./bench_cuda --shape "$shape" --type "$type" --out "/tmp/$shape-$type.gguf" \
        --pp 512 --tg 128 --reps 2 2>&1 | tee -a "$out/bench.jsonl"
    for ab in ${BENCH_AB:-}; do
        echo "== bench $shape $type with $ab"
        env "$ab" timeout 400 ./bench_cuda --model "/tmp/$shape-$type.gguf" --pp 512 --tg 128 \
            --reps 2 2>&1 | sed "s/^{/{\"env\": \"$ab\", /" | tee -a "$out/bench.jsonl"
    done
done
# BATCHED="1,8,32,64": batched decoding (ruvllm bench --parallel, 512-token prompts, 128
# generated tokens per sequence) on each benchmarked model
if [ -n "${BATCHED:-}" ]; then
    for sb in ${BENCH_SHAPES:-llama3-1b:Q4_K_M}; do
        echo "== bench --parallel $BATCHED ${sb%%:*} ${sb##*:}"
        timeout 400 ./ruvllm bench -m "/tmp/${sb%%:*}-${sb##*:}.gguf" --device cuda \
            --parallel "$BATCHED" -p 512 -n 128 -r 1 2>&1 | tee -a "$out/batched.txt"
    done
fi
# SERVE="1,8,32,64": `ruvllm serve --device cuda` on the first benchmarked model (paged KV,
# continuous batching, prefix cache on the GPU) driven by `ruvllm bench-serve` at those
# concurrencies (SERVE_P-token prompts, default 512; SERVE_G generated, default 128), with a
# 1,000-token cached-prefix check
if [ -n "${SERVE:-}" ]; then
    sb=${BENCH_SHAPES:-llama3-1b:Q4_K_M}
    sb=${sb%% *}
    model="/tmp/${sb%%:*}-${sb##*:}.gguf"
    maxc=$(echo "$SERVE" | tr ',' '\n' | sort -n | tail -1)
    echo "== serve --device cuda ${sb%%:*} ${sb##*:}, bench-serve -c $SERVE"
    ./ruvllm serve -m "$model" --device cuda --port 18080 --parallel "$maxc" --ctx 2048 \
        >"$out/serve.log" 2>&1 &
    spid=$!
    for _ in $(seq 1 120); do
        grep -q "serve: ready" "$out/serve.log" 2>/dev/null && break # model loaded (it listens first)
        kill -0 $spid 2>/dev/null || break
        sleep 1
    done
    timeout 400 ./ruvllm bench-serve --url http://127.0.0.1:18080 -c "$SERVE" \
        -p "${SERVE_P:-512}" -g "${SERVE_G:-128}" --prefix 1000 --seed 7 2>&1 |
        tee -a "$out/serve.jsonl"
    echo "bench-serve exit ${PIPESTATUS[0]}"
    curl -s http://127.0.0.1:18080/metrics 2>/dev/null | grep -E "^ruvllm_(requests|prompt|prefill|generation|prefix|kv)" | head -20
    kill -TERM $spid
    wait $spid
    echo "serve exit $?"
    tail -5 "$out/serve.log"
fi
if [ "${PROFILE:-0}" = 1 ]; then
    # kernel times of about two decode steps of the first benchmarked model
    sb=${BENCH_SHAPES:-llama3-1b:Q4_K_M}
    sb=${sb%% *}
    echo "== ncu: decode kernels of ${sb%%:*} ${sb##*:}"
    timeout 300 ncu --clock-control none --launch-skip 1500 --launch-count 540 --print-summary per-kernel \
        --metrics gpu__time_duration.sum ./bench_cuda --model "/tmp/${sb%%:*}-${sb##*:}.gguf" \
        --pp "${PROFILE_PP:-16}" --tg 64 --reps 1 >"$out/ncu.txt" 2>&1
    echo "exit $?"
    grep -E "^  [A-Za-z_].*\(|gpu__time_duration.sum" "$out/ncu.txt" | sed 's/  */ /g' | head -60
fi
exit $status
