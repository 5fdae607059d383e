#!/usr/bin/env bash
# CLI test of `ruvllm bench-kernels` on small sizes (a smoke test, not a measurement):
# the table and the JSON document carry the bandwidth and a matvec row per type, and
# bad arguments fail with exit status 2 and a message.
# $1: the ruvllm binary.
. "$(dirname "$0")/lib.sh"
QUICK=(--mib 2 --stream-mib 8 --reps 1 -t 2)

expect_rc 0 "table run" -- "$RUVLLM" bench-kernels "${QUICK[@]}" --types Q4_0,Q8_0,Q4_K,F16
has "$TMP/out" '^memory bandwidth'
has "$TMP/out" 'copy [0-9.]+ GB/s, triad [0-9.]+ GB/s'
has "$TMP/out" '^type +rows +cols +MiB +ms +GB/s +ratio'
for t in Q4_0 Q8_0 Q4_K F16; do has "$TMP/out" "^$t +[0-9]+ +4096 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+"; done

expect_rc 0 "json run" -- "$RUVLLM" bench-kernels "${QUICK[@]}" --json --types q4_0,IQ4_XS --isa avx2
has "$TMP/out" '"bandwidth_gbps": [0-9.]+'
has "$TMP/out" '"copy_gbps": [0-9.]+'
has "$TMP/out" '"triad_gbps": [0-9.]+'
has "$TMP/out" '"threads": 2'
has "$TMP/out" '"type": "Q4_0"'
has "$TMP/out" '"type": "IQ4_XS"'
has "$TMP/out" '"ratio": [0-9.]+'
[[ $(grep -c '"gbps"' "$TMP/out") == 2 ]] || fail "expected 2 matvec rows"
if grep -q avx2 /proc/cpuinfo; then has "$TMP/out" '"isa": "avx2"'; fi

expect_rc 2 "Q8_K (no dot) should be a usage error" -- "$RUVLLM" bench-kernels --types Q8_K
has "$TMP/err" 'Q8_K'
expect_rc 2 "unknown type should be a usage error" -- "$RUVLLM" bench-kernels --types NOPE
expect_rc 2 "unknown isa should be a usage error" -- "$RUVLLM" bench-kernels --isa sse9
expect_rc 2 "negative -t should be a usage error" -- "$RUVLLM" bench-kernels -t -3
expect_rc 2 "unknown option should be a usage error" -- "$RUVLLM" bench-kernels --frobnicate
expect_rc 0 "--help" -- "$RUVLLM" bench-kernels --help
has "$TMP/out" 'usage: ruvllm bench-kernels'

finish
