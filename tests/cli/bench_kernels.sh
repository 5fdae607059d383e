#!/usr/bin/env bash
# CLI test of `ruvllm bench-kernels` on small sizes (a smoke test, not a measurement):
# the table and the JSON document carry the bandwidth and a matvec row per type, and
# bad arguments fail with exit status 2 and a message.
# $1: the ruvllm binary.
set -u
RUVLLM=${1:?usage: bench_kernels.sh path/to/ruvllm}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ruvllm-cli-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() { "$@" >"$TMP/out" 2>"$TMP/err"; }
has() { grep -qE -- "$2" "$1" || fail "$1 lacks /$2/: $(head -c 400 "$1")"; }
QUICK=(--mib 2 --stream-mib 8 --reps 1 -t 2)

run "$RUVLLM" bench-kernels "${QUICK[@]}" --types Q4_0,Q8_0,Q4_K,F16 || fail "table run: exit $?"
has "$TMP/out" '^memory bandwidth'
has "$TMP/out" 'copy [0-9.]+ GB/s, triad [0-9.]+ GB/s'
has "$TMP/out" '^type +rows +cols +MiB +ms +GB/s +ratio'
for t in Q4_0 Q8_0 Q4_K F16; do has "$TMP/out" "^$t +[0-9]+ +4096 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+"; done

run "$RUVLLM" bench-kernels "${QUICK[@]}" --json --types q4_0,IQ4_XS --isa avx2 || fail "json run: exit $?"
has "$TMP/out" '"bandwidth_gbps": [0-9.]+'
has "$TMP/out" '"copy_gbps": [0-9.]+'
has "$TMP/out" '"triad_gbps": [0-9.]+'
has "$TMP/out" '"threads": 2'
has "$TMP/out" '"type": "Q4_0"'
has "$TMP/out" '"type": "IQ4_XS"'
has "$TMP/out" '"ratio": [0-9.]+'
[[ $(grep -c '"gbps"' "$TMP/out") == 2 ]] || fail "expected 2 matvec rows"
if grep -q avx2 /proc/cpuinfo; then has "$TMP/out" '"isa": "avx2"'; fi

run "$RUVLLM" bench-kernels --types Q8_K
[[ $? == 2 ]] || fail "Q8_K (no dot) should be a usage error"
has "$TMP/err" 'Q8_K'
run "$RUVLLM" bench-kernels --types NOPE
[[ $? == 2 ]] || fail "unknown type should be a usage error"
run "$RUVLLM" bench-kernels --isa sse9
[[ $? == 2 ]] || fail "unknown isa should be a usage error"
run "$RUVLLM" bench-kernels -t -3
[[ $? == 2 ]] || fail "negative -t should be a usage error"
run "$RUVLLM" bench-kernels --frobnicate
[[ $? == 2 ]] || fail "unknown option should be a usage error"
run "$RUVLLM" bench-kernels --help || fail "--help: exit $?"
has "$TMP/out" 'usage: ruvllm bench-kernels'

if ((fails)); then
    echo "$fails failure(s)"
    exit 1
fi
echo "bench_kernels.sh: ok"
