#!/usr/bin/env bash
# CLI test of `ruvllm bench-serve`: against a `ruvllm serve` it starts itself (-m) with
# stories260K, two concurrency levels and the prefix test must print JSON where every
# request succeeded with the asked-for token counts and the long prefix was found in the
# cache; usage errors exit 2, an unreachable server exits 1.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
need_files "$M"

expect_rc 0 "two runs and the prefix test" -- "$RUVLLM" bench-serve -m "$M" -t 1 -c 1,4 -n 8 -p 24 -g 16 \
    --prefix 200 --prefix-reps 1
# both runs: 8 of 8 requests, 8 x 16 output tokens, 8 x 24 prompt tokens
[[ $(grep -c '"ok": 8,' "$TMP/out") == 2 ]] || fail "8 requests ok in each run: $(head -c 600 "$TMP/out")"
[[ $(grep -c '"failed": 0,' "$TMP/out") == 2 ]] || fail "no failed request"
[[ $(grep -c '"output_tokens": 128,' "$TMP/out") == 2 ]] || fail "16 tokens per request"
[[ $(grep -c '"prompt_tokens": 192,' "$TMP/out") == 2 ]] || fail "24 prompt tokens per request (token ids)"
grep -q '"prompts": "token ids"' "$TMP/out" || fail "prompts as token ids"
for key in '"output_tok_s"' '"ttft_ms"' '"itl_ms"' '"e2e_ms"' '"p50"' '"p99"' '"speedup_last_vs_first"' \
    '"ttft_uncached_ms"' '"ttft_cached_ms"' '"ratio"'; do
    grep -q "$key" "$TMP/out" || fail "no $key in the JSON"
done
# the prefix test: 200 + 8 prompt tokens, the 12 whole blocks of the prefix cached
grep -q '"prompt_tokens": 208,' "$TMP/out" || fail "prefix prompt of 208 tokens"
grep -q '"cached_tokens": 192,' "$TMP/out" || fail "192 cached tokens: $(grep cached "$TMP/out" | tr -d '\n')"
grep -q -- "-c 4: 8/8 ok" "$TMP/err" || fail "progress on stderr"

# --chat: text prompts through /v1/chat/completions
expect_rc 0 "--chat" -- "$RUVLLM" bench-serve -m "$M" -t 1 -c 2 -n 4 -g 8 --chat
grep -q '"ok": 4,' "$TMP/out" || fail "--chat: 4 requests ok"
grep -q '"output_tokens": 32,' "$TMP/out" || fail "--chat: 8 tokens per request"
grep -q '"prompts": "text"' "$TMP/out" || fail "--chat: text prompts"

# errors
expect_rc 2 "-c 0" -- "$RUVLLM" bench-serve -c 0
grep -q -- "-c" "$TMP/err" || fail "-c 0: the message names the flag"
expect_rc 2 "-c 1,x" -- "$RUVLLM" bench-serve -c 1,x
expect_rc 2 "unknown option" -- "$RUVLLM" bench-serve --frobnicate 3
expect_rc 2 "-g without a value" -- "$RUVLLM" bench-serve -g
expect_rc 1 "no server" -- "$RUVLLM" bench-serve --url http://127.0.0.1:1 -n 1 --timeout 5
grep -q "does not answer" "$TMP/err" || fail "no server: says so: $(head -c 300 "$TMP/err")"
expect_rc 0 "--help" -- "$RUVLLM" bench-serve --help
grep -q "usage: ruvllm bench-serve" "$TMP/out" || fail "--help: no usage on stdout"

finish
