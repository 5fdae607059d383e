#!/usr/bin/env bash
# CLI test of `ruvllm info` and `ruvllm tensor` on stories260K: real output, the JSON
# document, raw float32 dumps (size and bytes), and clean failures on bad input.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
MODEL=$DATA/models/stories260K.gguf
MODEL_Q8=$DATA/models/stories260K-q8_0.gguf
need_files "$MODEL"

# Structural check of a JSON text without external tools: braces and brackets balance
# outside strings, strings close, and the document is one object.
json_well_formed() {
    awk 'BEGIN { depth = 0; instr = 0; esc = 0; bad = 0; top = 0 }
    {
        line = $0
        for (i = 1; i <= length(line); i++) {
            c = substr(line, i, 1)
            if (instr) {
                if (esc) esc = 0
                else if (c == "\\") esc = 1
                else if (c == "\"") instr = 0
                continue
            }
            if (c == "\"") instr = 1
            else if (c == "{" || c == "[") { if (depth == 0) top++; stack[++depth] = c }
            else if (c == "}") { if (depth == 0 || stack[depth] != "{") bad = 1; depth-- }
            else if (c == "]") { if (depth == 0 || stack[depth] != "[") bad = 1; depth-- }
        }
        if (instr) bad = 1 # strings never span lines in our output
    }
    END { exit (bad || depth != 0 || top != 1) ? 1 : 0 }' "$1"
}

# ---- info (text) ----
expect_rc 0 "info" -- "$RUVLLM" info "$MODEL"
cp "$TMP/out" "$TMP/info.txt"
has_text "$TMP/info.txt" "GGUF v3"
has_text "$TMP/info.txt" "alignment:   32"
has_text "$TMP/info.txt" "data offset: 14176"
has_text "$TMP/info.txt" "metadata: 19 keys"
grep -qE '^  general\.architecture +string +"llama"$' "$TMP/info.txt" || fail "architecture line"
grep -qE '^  tokenizer\.ggml\.tokens +array +\[string x 512\] "<unk>", "<s>", "</s>", ' "$TMP/info.txt" ||
    fail "tokens summary"
grep -qE 'tokenizer\.ggml\.scores +array +\[float32 x 512\] .*, \.\.\.$' "$TMP/info.txt" ||
    fail "scores summary"
grep -qE 'llama\.attention\.layer_norm_rms_epsilon +float32 +1e-05$' "$TMP/info.txt" ||
    fail "epsilon"
has_text "$TMP/info.txt" "tensors: 48"
grep -qE '^ +0  token_embd\.weight +F32 +\[64, 512\] +0 +131072$' "$TMP/info.txt" || fail "tensor row 0"
grep -qE 'blk\.4\.ffn_down\.weight +F32 +\[172, 64\] ' "$TMP/info.txt" || fail "ffn_down row"
[[ $(grep -cE '^ +[0-9]+  (token_embd|output|blk\.)' "$TMP/info.txt") == 48 ]] || fail "48 tensor rows"
grep -qE '^total: 48 tensors, [0-9]+ elements, [0-9]+ bytes' "$TMP/info.txt" || fail "totals line"
grep -qE '^  F32 +48 tensors' "$TMP/info.txt" || fail "per-type totals"

# ---- info --json ----
expect_rc 0 "info --json" -- "$RUVLLM" info "$MODEL" --json
cp "$TMP/out" "$TMP/info.json"
json_well_formed "$TMP/info.json" || fail "info --json is not one well-formed JSON object"
if command -v jq >/dev/null; then # optional, stronger check where jq exists
    jq -e '.version == 3 and (.tensors | length) == 48 and .totals.tensors == 48' \
        "$TMP/info.json" >/dev/null || fail "jq check"
fi
has_text "$TMP/info.json" '"version": 3'
has_text "$TMP/info.json" '"alignment": 32'
has_text "$TMP/info.json" '"data_offset": 14176'
has_text "$TMP/info.json" '"key": "general.architecture"'
has_text "$TMP/info.json" '"value": "llama"'
has_text "$TMP/info.json" '"elem_type": "string"'
has_text "$TMP/info.json" '"count": 512'
has_text "$TMP/info.json" '"name": "token_embd.weight"'
[[ $(grep -c '"name": "' "$TMP/info.json") == 48 ]] || fail "48 tensor objects"
[[ $(grep -c '"key": "' "$TMP/info.json") == 19 ]] || fail "19 metadata objects"

# ---- tensor --f32: F32 bytes equal the file's; size 4 * elements ----
expect_rc 0 "tensor F32" -- "$RUVLLM" tensor "$MODEL" token_embd.weight --f32
size=$(stat -c %s "$TMP/out")
[[ $size == $((64 * 512 * 4)) ]] || fail "token_embd.weight: $size bytes, expected $((64 * 512 * 4))"
tail -c +$((14176 + 1)) "$MODEL" | head -c 131072 >"$TMP/raw"
cmp -s "$TMP/out" "$TMP/raw" || fail "token_embd.weight: bytes differ from the file's F32 data"

expect_rc 0 "tensor 1-D" -- "$RUVLLM" tensor "$MODEL" output_norm.weight --f32
[[ $(stat -c %s "$TMP/out") == 256 ]] || fail "output_norm.weight size"

if [[ -f $MODEL_Q8 ]]; then # a quantized tensor through rl_dequantize
    expect_rc 0 "tensor Q8_0" -- "$RUVLLM" tensor "$MODEL_Q8" blk.0.attn_q.weight --f32
    [[ $(stat -c %s "$TMP/out") == $((64 * 64 * 4)) ]] || fail "Q8_0 tensor size"
fi

# ---- failures: one-line messages, exit 1 (runtime) or 2 (usage) ----
cp "$MODEL" "$TMP/v1.gguf"
printf '\001' | dd of="$TMP/v1.gguf" bs=1 seek=4 conv=notrunc status=none
expect_rc 1 "info on a v1 file" -- "$RUVLLM" info "$TMP/v1.gguf"
has_text "$TMP/err" "v1 is not supported"
[[ $(wc -l <"$TMP/err") == 1 ]] || fail "v1 message is not one line"
[[ ! -s "$TMP/out" ]] || fail "info wrote to stdout on failure"

head -c 20000 "$MODEL" >"$TMP/cut.gguf"
expect_rc 1 "info on a truncated file" -- "$RUVLLM" info "$TMP/cut.gguf"
has_text "$TMP/err" "extends past end of file (size 20000)"
has_text "$TMP/err" "tensor 0 'token_embd.weight'"
expect_rc 1 "tensor on a truncated file" -- "$RUVLLM" tensor "$TMP/cut.gguf" output_norm.weight --f32
has_text "$TMP/err" "gguf: "

printf 'GGML\003\000\000\000' >"$TMP/magic.gguf"
expect_rc 1 "info on a bad magic" -- "$RUVLLM" info "$TMP/magic.gguf"
has_text "$TMP/err" "bad magic"

expect_rc 1 "info on a missing file" -- "$RUVLLM" info "$TMP/none.gguf"
has_text "$TMP/err" "cannot open"
expect_rc 1 "tensor: unknown name" -- "$RUVLLM" tensor "$MODEL" no.such.tensor --f32
has_text "$TMP/err" "no tensor named 'no.such.tensor'"
expect_rc 2 "info without FILE" -- "$RUVLLM" info
expect_rc 2 "info with an unknown option" -- "$RUVLLM" info "$MODEL" --bogus
expect_rc 2 "tensor without --f32" -- "$RUVLLM" tensor "$MODEL" token_embd.weight
expect_rc 2 "tensor without NAME" -- "$RUVLLM" tensor "$MODEL"
expect_rc 0 "info --help" -- "$RUVLLM" info --help
has_text "$TMP/out" "usage: ruvllm info"

finish
