#!/usr/bin/env bash
# CLI test of --device and --gpu-mem, on any machine: every command that runs a model (run,
# chat, bench, perplexity, logits, serve) takes them through the shared option parser and
# lists them in --help; a name that is not a device exits 2 naming --device; a GPU that is
# not there (no CUDA in the build, no driver, no such index) exits 1 naming --device and
# saying why, before any model work; --device cpu gives the same greedy ids as no flag;
# --gpu-mem must be in (0, 1] (exit 2) and needs a GPU device (exit 1). On a machine with a
# GPU, --device cuda runs and prints the KV budget line (bench: its floor from the GPU's
# copy bandwidth), greedy ids equal the CPU's, and a --gpu-mem too small for the weights
# fails naming gpu_mem.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
TEXT=$DATA/testdata/text/gpl-3.txt
need_files "$M" "$TEXT"
# no command may wait on a terminal (chat, serve) or hang the test
exec </dev/null
CLI_TIMEOUT=60

# each command's minimal arguments besides the model
declare -A ARGS=(
    [run]="-p Once -n 4 --temp 0"
    [chat]="-n 4"
    [bench]="-p 8 -n 8 -r 1"
    [perplexity]="-f $TEXT -c 64"
    [logits]="-p Once"
    [serve]="--port 0"
)
gpu=0
if "$RUVLLM" run -m "$M" -p Once -n 1 --temp 0 --device cuda >"$TMP/probe" 2>&1; then gpu=1; fi
echo "GPU usable: $gpu"

for cmd in run chat bench perplexity logits serve; do
    # shellcheck disable=SC2086
    set -- ${ARGS[$cmd]}
    expect_rc 0 "$cmd --help" -- "$RUVLLM" "$cmd" --help
    has "$TMP/out" "--device" "$cmd --help"
    has "$TMP/out" "--gpu-mem" "$cmd --help"
    for bad in foo gpu cuda: cuda:x CUDA; do
        expect_rc 2 "$cmd --device $bad" -- "$RUVLLM" "$cmd" -m "$M" --device "$bad" "$@"
        has "$TMP/err" "^ruvllm $cmd: --device: \"$bad\" is not a device \\(cpu, cuda, cuda:N\\)" \
            "$cmd --device $bad"
    done
    expect_rc 2 "$cmd --device (no value)" -- "$RUVLLM" "$cmd" -m "$M" --device
    has "$TMP/err" "--device needs a value" "$cmd --device"
    expect_rc 1 "$cmd --device cuda:999" -- "$RUVLLM" "$cmd" -m "$M" --device cuda:999 "$@"
    has "$TMP/err" "^ruvllm $cmd: --device cuda:999: (this build of ruvllm has no CUDA backend|no CUDA device|CUDA device 999 does not exist)" \
        "$cmd --device cuda:999"
    if [[ $gpu == 0 ]]; then
        expect_rc 1 "$cmd --device cuda" -- "$RUVLLM" "$cmd" -m "$M" --device cuda "$@"
        has "$TMP/err" "^ruvllm $cmd: --device cuda: (this build of ruvllm has no CUDA backend|no CUDA device)" \
            "$cmd --device cuda"
    fi
    for g in 0 1.5 -0.5 abc nan; do
        expect_rc 2 "$cmd --gpu-mem $g" -- "$RUVLLM" "$cmd" -m "$M" --device cpu --gpu-mem "$g" "$@"
        has "$TMP/err" "^ruvllm $cmd: --gpu-mem must be" "$cmd --gpu-mem $g"
    done
    expect_rc 1 "$cmd --gpu-mem on the cpu" -- "$RUVLLM" "$cmd" -m "$M" --gpu-mem 0.5 "$@"
    has "$TMP/err" "^ruvllm $cmd: --gpu-mem applies to a GPU" "$cmd --gpu-mem 0.5"
done

# --device cpu is the default
"$RUVLLM" run -m "$M" -p "Once upon a time" -n 24 --temp 0 --ids >"$TMP/a" 2>/dev/null
expect_rc 0 "run --device cpu" -- "$RUVLLM" run -m "$M" -p "Once upon a time" -n 24 --temp 0 \
    --ids --device cpu
cmp -s "$TMP/a" "$TMP/out" || fail "--device cpu ids differ: $(cat "$TMP/a") vs $(cat "$TMP/out")"
[[ -s $TMP/a ]] || fail "no ids"
expect_rc 0 "logits --device cpu" -- "$RUVLLM" logits -m "$M" -p Once --device cpu
expect_rc 0 "perplexity --device cpu" -- "$RUVLLM" perplexity -m "$M" -f "$TEXT" -c 64 --device cpu

if [[ $gpu == 1 ]]; then
    for cmd in run logits bench perplexity; do
        # shellcheck disable=SC2086
        set -- ${ARGS[$cmd]}
        expect_rc 0 "$cmd --device cuda" -- "$RUVLLM" "$cmd" -m "$M" --device cuda --gpu-mem 0.5 "$@"
        has "$TMP/err" "^ruvllm $cmd: cuda:0 \\(.*\\): .* of .* GiB \\(--gpu-mem 0.5, .*KV cache room for [0-9]+ tokens" \
            "$cmd --device cuda"
        if [[ $cmd == bench ]]; then
            has "$TMP/out" "^cuda copy bandwidth [0-9.]+ GB/s" "bench --device cuda floor"
            has "$TMP/out" "tg8 .*\\| +[0-9.]+ \\| +[0-9.]+ \\|$" "bench --device cuda floor column"
        fi
        expect_rc 1 "$cmd --gpu-mem tiny" -- "$RUVLLM" "$cmd" -m "$M" --device cuda --gpu-mem 1e-9 "$@"
        has "$TMP/err" "the weights take .* more than gpu_mem" "$cmd --gpu-mem 1e-9"
    done
    "$RUVLLM" run -m "$M" -p "Once upon a time" -n 24 --temp 0 --ids --device cuda --kv-type f32 \
        >"$TMP/g" 2>/dev/null
    "$RUVLLM" run -m "$M" -p "Once upon a time" -n 24 --temp 0 --ids --kv-type f32 >"$TMP/c" \
        2>/dev/null
    cmp -s "$TMP/g" "$TMP/c" || fail "cuda greedy ids differ from the cpu's: $(cat "$TMP/g") vs $(cat "$TMP/c")"
fi

finish
