#!/usr/bin/env bash
# CLI test of `ruvllm quantize` and `ruvllm synth`: stories260K quantized to the types
# llama.cpp's own quantizer made gives the same files byte for byte; a k-quant mix with
# row-length fallbacks; progress lines; refusals (overwriting the input, a type that needs
# an imatrix, bad arguments); synthetic models (deterministic, readable by `ruvllm info`
# and `ruvllm tokenize`, vocabulary copied from a GGUF).
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
MODEL=$DATA/models/stories260K.gguf
need_files "$MODEL"

# ---- quantize: the same bytes as llama.cpp's quantizer ----
for t in f16 q8_0 q5_1 q5_0 q4_1 q4_0; do
    ref=$DATA/models/stories260K-$t.gguf
    [[ -f $ref ]] || continue
    expect_rc 0 "quantize $t" -- "$RUVLLM" quantize "$MODEL" "$TMP/s-$t.gguf" "$t" -t 2
    cmp -s "$TMP/s-$t.gguf" "$ref" || fail "quantize $t: differs from llama.cpp's $(basename "$ref")"
done
# one progress line per tensor, then a summary
[[ $(grep -cE '^\[ *[0-9]+/ *48\] ' "$TMP/err") == 48 ]] || fail "48 progress lines"
grep -qE '^\[ *1/ *48\] output\.weight +\[64, 512\] +F32 +-> Q8_0 ' "$TMP/err" || fail "first progress line"
grep -qE 'blk\.0\.attn_norm\.weight +\[64\] +F32 +copied' "$TMP/err" || fail "copied tensor line"
grep -qE '^ruvllm quantize: 37 of 48 tensors converted: ' "$TMP/err" || fail "summary line"

# ---- a k-quant mix: 64-wide rows do not fit 256-element blocks and fall back ----
expect_rc 0 "quantize Q4_K_M" -- "$RUVLLM" quantize "$MODEL" "$TMP/s-q4km.gguf" Q4_K_M
has_text "$TMP/err" "(fallback: row length)"
has_text "$TMP/err" "fell back to another type because of their row length"
expect_rc 0 "info on the Q4_K_M output" -- "$RUVLLM" info "$TMP/s-q4km.gguf"
grep -qE '^  general\.file_type +uint32 +15$' "$TMP/out" || fail "file_type 15"
grep -qE '^  general\.quantization_version +uint32 +2$' "$TMP/out" || fail "quantization_version"
grep -qE 'blk\.0\.attn_q\.weight +Q5_0 ' "$TMP/out" || fail "Q4_K falls back to Q5_0"
grep -qE 'output\.weight +Q8_0 ' "$TMP/out" || fail "output falls back to Q8_0"
grep -qE 'blk\.0\.ffn_down\.weight +F16 ' "$TMP/out" || fail "172-wide rows fall back to F16"

# ---- refusals ----
cp "$MODEL" "$TMP/in.gguf"
expect_rc 1 "overwrite the input" -- "$RUVLLM" quantize "$TMP/in.gguf" "$TMP/in.gguf" Q8_0
has_text "$TMP/err" "is the input file"
ln -s "$TMP/in.gguf" "$TMP/link.gguf"
expect_rc 1 "overwrite the input through a symlink" -- "$RUVLLM" quantize "$TMP/in.gguf" "$TMP/link.gguf" Q8_0
has_text "$TMP/err" "is the input file"
cmp -s "$TMP/in.gguf" "$MODEL" || fail "the input was changed"
# (stories260K's 64-wide rows would fall back to IQ4_NL, which needs no imatrix: use a
# synthetic model with 256-wide rows)
expect_rc 0 "synth tiny F32" -- "$RUVLLM" synth --shape tiny --type F32 -o "$TMP/tiny-f32.gguf" -q
expect_rc 1 "IQ2_XS without an imatrix" -- "$RUVLLM" quantize "$TMP/tiny-f32.gguf" "$TMP/iq.gguf" IQ2_XS
has_text "$TMP/err" "--imatrix"
has_text "$TMP/err" "IQ2_XS needs an importance matrix"
expect_rc 0 "IQ2_XS on 64-wide rows (all fall back to IQ4_NL)" -- "$RUVLLM" quantize "$MODEL" "$TMP/iq-nl.gguf" IQ2_XS
[[ ! -e $TMP/iq.gguf ]] || fail "output written despite the error"
expect_rc 1 "a missing imatrix file" -- "$RUVLLM" quantize "$TMP/tiny-f32.gguf" "$TMP/iq.gguf" IQ2_XS --imatrix "$TMP/none.dat"
has_text "$TMP/err" "cannot open"
expect_rc 1 "requantize" -- "$RUVLLM" quantize "$TMP/s-q8_0.gguf" "$TMP/rq.gguf" Q4_0
has_text "$TMP/err" "--allow-requantize"
expect_rc 0 "requantize allowed" -- "$RUVLLM" quantize "$TMP/s-q8_0.gguf" "$TMP/rq.gguf" Q4_0 --allow-requantize
expect_rc 1 "missing input" -- "$RUVLLM" quantize "$TMP/none.gguf" "$TMP/o.gguf" Q8_0
has_text "$TMP/err" "cannot open"
expect_rc 2 "unknown type" -- "$RUVLLM" quantize "$MODEL" "$TMP/o.gguf" Q4_K_X
has_text "$TMP/err" "unknown type 'Q4_K_X'"
expect_rc 2 "missing TYPE" -- "$RUVLLM" quantize "$MODEL" "$TMP/o.gguf"
expect_rc 2 "bad -t" -- "$RUVLLM" quantize "$MODEL" "$TMP/o.gguf" Q8_0 -t zero
expect_rc 2 "unknown option" -- "$RUVLLM" quantize "$MODEL" "$TMP/o.gguf" Q8_0 --bogus
expect_rc 0 "quantize --help" -- "$RUVLLM" quantize --help
has_text "$TMP/out" "usage: ruvllm quantize"
has_text "$TMP/out" "Q4_K_M"

# ---- synth ----
expect_rc 0 "synth tiny" -- "$RUVLLM" synth --shape tiny --type Q4_K_M -o "$TMP/tiny.gguf"
has_text "$TMP/err" "ruvllm synth: $TMP/tiny.gguf: tiny as Q4_K_M, 21 tensors"
expect_rc 0 "synth tiny again" -- "$RUVLLM" synth --shape tiny --type Q4_K_M -o "$TMP/tiny2.gguf" -t 1 -q
cmp -s "$TMP/tiny.gguf" "$TMP/tiny2.gguf" || fail "synth is not deterministic"
expect_rc 0 "synth another seed" -- "$RUVLLM" synth --shape tiny --type Q4_K_M -o "$TMP/tiny3.gguf" --seed 7 -q
cmp -s "$TMP/tiny.gguf" "$TMP/tiny3.gguf" && fail "the seed changes nothing"
expect_rc 0 "info on synth output" -- "$RUVLLM" info "$TMP/tiny.gguf"
grep -qE '^  general\.architecture +string +"llama"$' "$TMP/out" || fail "synth architecture"
grep -qE '^  general\.file_type +uint32 +15$' "$TMP/out" || fail "synth file_type"
grep -qE '^  tokenizer\.ggml\.model +string +"gpt2"$' "$TMP/out" || fail "synth tokenizer model"
has_text "$TMP/out" "tensors: 21"
grep -qE 'token_embd\.weight +Q4_K +\[256, 512\]' "$TMP/out" || fail "synth token_embd"
grep -qE 'output\.weight +Q6_K +\[256, 512\]' "$TMP/out" || fail "synth output"
grep -qE 'blk\.1\.attn_v\.weight +Q6_K ' "$TMP/out" || fail "synth attn_v of the last layer"
expect_rc 0 "tokenize with the built-in vocabulary" -- "$RUVLLM" tokenize -m "$TMP/tiny.gguf" -p "Hello"
has_text "$TMP/out" "256 72 101 108 108 111"
expect_rc 0 "quantize a synth model" -- "$RUVLLM" quantize "$TMP/tiny.gguf" "$TMP/tiny-q8.gguf" Q8_0 --allow-requantize
VOCAB=$DATA/models/vocab/ggml-vocab-llama-spm.gguf
if [[ -f $VOCAB ]]; then
    expect_rc 0 "synth with --vocab" -- "$RUVLLM" synth --shape tiny --type F16 -o "$TMP/tiny-v.gguf" --vocab "$VOCAB" -q
    expect_rc 0 "info on synth --vocab output" -- "$RUVLLM" info "$TMP/tiny-v.gguf"
    grep -qE '^  tokenizer\.ggml\.model +string +"llama"$' "$TMP/out" || fail "vocab's tokenizer model"
    grep -qE 'token_embd\.weight +F16 +\[256, 32000\]' "$TMP/out" || fail "vocab size from --vocab"
fi
expect_rc 2 "synth unknown shape" -- "$RUVLLM" synth --shape llama9 --type F16 -o "$TMP/x.gguf"
has_text "$TMP/err" "unknown shape 'llama9'"
expect_rc 2 "synth unknown type" -- "$RUVLLM" synth --shape tiny --type Q9_Z -o "$TMP/x.gguf"
expect_rc 2 "synth without -o" -- "$RUVLLM" synth --shape tiny --type F16
expect_rc 1 "synth with a missing vocab" -- "$RUVLLM" synth --shape tiny --type F16 -o "$TMP/x.gguf" --vocab "$TMP/none.gguf"
[[ ! -e $TMP/x.gguf ]] || fail "synth wrote a file despite errors"
expect_rc 0 "synth --help" -- "$RUVLLM" synth --help
has_text "$TMP/out" "mixtral-8x7b"
has_text "$TMP/out" "llama3-8b"

finish
