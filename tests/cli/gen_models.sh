#!/bin/sh
# gen_models.sh -- `mha gen --model encoder|decoder` and the presets write
# whole transformer models that load as plans (every attention layer a fused
# step, every Linear a GEMM step; the plan verified against the reference
# interpreter at load), that `mha run` scores over token ids (an encoder
# with its attention mask), with outputs of the declared shapes, the same
# with the scalar reference and the fastest backend; bad options are
# refused with exit 2.
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }
# npy SIZE: a .npy of numpy's 128-byte header plus SIZE bytes of data
npy_bytes() { echo $((128 + $1)); }
# the fastest usable backend but scalar (what `auto` picks), to hold against
# the scalar reference
fast=$("$MHA" backends | sed -n 's/^auto picks: *\([a-z0-9_]*\).*/\1/p')
[ -n "$fast" ] || fail "no backend picked by auto: $("$MHA" backends)"

# A backend-test folder: the model, inputs as .pb, and the scalar
# reference's outputs as the expected ones; `mha check` holds the fast
# backend to them under the float32 tolerance.
against_scalar() { # NAME MODEL INPUT.pb... -- OUTPUT_COUNT
  name=$1 model=$2
  shift 2
  d="$T/cases/$name/test_data_set_0"
  mkdir -p "$d"
  cp "$model" "$T/cases/$name/model.onnx"
  i=0 outs=""
  while [ "$1" != "--" ]; do cp "$1" "$d/input_$i.pb"; i=$((i + 1)); shift; done
  k=0
  while [ "$k" -lt "$2" ]; do outs="$outs $d/output_$k.pb"; k=$((k + 1)); done
  # shellcheck disable=SC2086
  "$MHA" run -q --backend scalar "$model" "$d"/input_*.pb -o $outs ||
    fail "$name: the scalar run failed"
}

echo "== an encoder (BERT-style, post-norm, erf GELU) with a padding mask"
"$MHA" gen --model encoder -L 2 -d 32 -H 4 --ffn 64 --vocab 50 --max-pos 16 --seed 3 \
  -o "$T/enc.onnx" --data "$T/ids.npy" --mask "$T/mask.npy" --batch 3 --seq 8
[ "$(wc -c <"$T/ids.npy")" -eq "$(npy_bytes $((3 * 8 * 8)))" ] || fail "ids.npy: wrong size"
[ "$(wc -c <"$T/mask.npy")" -eq "$(npy_bytes $((3 * 8 * 8)))" ] || fail "mask.npy: wrong size"
"$MHA" info "$T/enc.onnx" >"$T/enc.txt" || fail "info on the encoder: $(cat "$T/enc.txt")"
grep -q '^form: *plan' "$T/enc.txt" || fail "encoder: not a plan: $(cat "$T/enc.txt")"
grep -q '^attention layers: 2' "$T/enc.txt" || fail "encoder: layers: $(cat "$T/enc.txt")"
[ "$(grep -c 'fused, ' "$T/enc.txt")" = 2 ] || fail "encoder: layers not fused: $(cat "$T/enc.txt")"
# 2 layers x (FFN up, FFN down) GEMM steps besides the fused Q/K/V/O
# projections; embeddings + 2 x 2 norms, the one after each FFN in its
# second GEMM's epilogue, the one after each layer in the layer's step;
# nothing of weight interpreted
grep -q '^plan: .* 2 attention, 4 GEMM, 1 norm' "$T/enc.txt" || fail "encoder plan: $(cat "$T/enc.txt")"
grep -q 'gemm+bias+residual+layernorm  *x2' "$T/enc.txt" || fail "encoder: post-norm epilogue: $(cat "$T/enc.txt")"
grep -q 'gemm+bias+Div+Erf+Add+Mul+Mul  *x2' "$T/enc.txt" || fail "encoder: GELU epilogue: $(cat "$T/enc.txt")"
grep -q '^FLOPs: .* 0.0 % interpreted' "$T/enc.txt" || fail "encoder: interpreted FLOPs: $(cat "$T/enc.txt")"
grep -q 'input *input_ids *token_ids *int64' "$T/enc.txt" || fail "encoder: input_ids: $(cat "$T/enc.txt")"
grep -q 'input *attention_mask .*int64' "$T/enc.txt" || fail "encoder: attention_mask: $(cat "$T/enc.txt")"
"$MHA" run "$T/enc.onnx" "$T/ids.npy" "$T/mask.npy" -o "$T/h.npy" 2>"$T/run.txt" ||
  fail "run on the encoder: $(cat "$T/run.txt")"
[ "$(wc -c <"$T/h.npy")" -eq "$(npy_bytes $((3 * 8 * 32 * 4)))" ] || fail "h.npy: not [3, 8, 32] float32"
grep -q '^mha run: 3 rows (24 tokens)' "$T/run.txt" || fail "run summary: $(cat "$T/run.txt")"
# the same inputs by name, and from .pb files gen writes by extension
"$MHA" gen --model encoder -L 2 -d 32 -H 4 --ffn 64 --vocab 50 --max-pos 16 --seed 3 \
  -o "$T/enc2.onnx" --data "$T/ids.pb" --mask "$T/mask.pb" --batch 3 --seq 8
cmp -s "$T/enc.onnx" "$T/enc2.onnx" || fail "gen is not deterministic"
"$MHA" run "$T/enc.onnx" "attention_mask=$T/mask.pb" "input_ids=$T/ids.pb" -o "$T/h2.npy" \
  2>"$T/run2.txt"
cmp -s "$T/h.npy" "$T/h2.npy" || fail ".pb and .npy token ids give different outputs"
# whole tensors (.pb) are run apart from streamed .npy files: both count B x S tokens
grep -q '^mha run: 3 rows (24 tokens)' "$T/run2.txt" || fail "run summary (.pb): $(cat "$T/run2.txt")"
against_scalar encoder "$T/enc.onnx" "$T/ids.pb" "$T/mask.pb" -- 1
echo "ok: encoder"

echo "== a decoder (GPT-style: pre-norm, causal, GELU tanh, GQA, LM head)"
"$MHA" gen --model decoder -L 2 -d 32 -H 4 --kv-heads 2 --vocab 40 --max-pos 32 --seed 4 \
  -o "$T/dec.onnx" --data "$T/dids.pb" --batch 2 --seq 12
"$MHA" info "$T/dec.onnx" >"$T/dec.txt" || fail "info on the decoder: $(cat "$T/dec.txt")"
[ "$(grep -c 'fused, ' "$T/dec.txt")" = 2 ] || fail "decoder: layers not fused: $(cat "$T/dec.txt")"
grep -q '^causal: *yes' "$T/dec.txt" || fail "decoder: not causal: $(cat "$T/dec.txt")"
grep -q '^heads: *4 query, 2 key/value' "$T/dec.txt" || fail "decoder: heads: $(cat "$T/dec.txt")"
# FFN up and down per layer, and the LM head; the final norm in the last
# FFN's epilogue (nothing else reads that output)
grep -q '^plan: .* 2 attention, 5 GEMM, 4 norm' "$T/dec.txt" || fail "decoder plan: $(cat "$T/dec.txt")"
grep -q 'gemm+bias+residual+layernorm  *x1' "$T/dec.txt" || fail "decoder: final norm: $(cat "$T/dec.txt")"
grep -q 'gemm+bias+Mul+Pow+Mul+Add+Mul+Tanh+Add+Mul  *x2' "$T/dec.txt" ||
  fail "decoder: GELU tanh epilogue: $(cat "$T/dec.txt")"
grep -q 'output *logits .*float32 *\[?, ?, 40\]' "$T/dec.txt" || fail "decoder: logits: $(cat "$T/dec.txt")"
"$MHA" run -q "$T/dec.onnx" "$T/dids.pb" -o "$T/dh.npy" "$T/dl.npy" || fail "run on the decoder"
[ "$(wc -c <"$T/dh.npy")" -eq "$(npy_bytes $((2 * 12 * 32 * 4)))" ] || fail "dh.npy: not [2, 12, 32]"
[ "$(wc -c <"$T/dl.npy")" -eq "$(npy_bytes $((2 * 12 * 40 * 4)))" ] || fail "dl.npy: not [2, 12, 40]"
against_scalar decoder "$T/dec.onnx" "$T/dids.pb" -- 2
echo "ok: decoder"

echo "== the other blocks: norms, activations, post-norm decoder, causal encoder (+ padding)"
n=0
for opts in "--model encoder --norm layernorm-op --act relu" \
  "--model encoder --pre-norm --act gelu-tanh --no-bias" \
  "--model decoder --act swiglu --no-bias --kv-heads 1" \
  "--model decoder --norm rmsnorm --act swiglu --kv-heads 2" \
  "--model decoder --post-norm --act gelu --no-lm-head" \
  "--model encoder --causal --kv-heads 2"; do
  n=$((n + 1))
  ins="$T/v$n.pb" mask=""
  case "$opts" in *encoder*) ins="$ins $T/v${n}m.pb" mask="--mask $T/v${n}m.pb" ;; esac
  # shellcheck disable=SC2086
  "$MHA" gen $opts -L 2 -d 32 -H 4 --vocab 30 --max-pos 16 --seed $n -o "$T/v$n.onnx" \
    --data "$T/v$n.pb" $mask --batch 2 --seq 6
  "$MHA" info "$T/v$n.onnx" >"$T/v$n.txt" 2>&1 || fail "$opts: does not load: $(cat "$T/v$n.txt")"
  [ "$(grep -c 'fused, ' "$T/v$n.txt")" = 2 ] || fail "$opts: layers not fused: $(cat "$T/v$n.txt")"
  outs=1
  case "$opts" in *decoder*) case "$opts" in *no-lm-head*) ;; *) outs=2 ;; esac ;; esac
  # shellcheck disable=SC2086
  against_scalar "v$n" "$T/v$n.onnx" $ins -- $outs
done
grep -q 'gemm+bias+Relu  *x2' "$T/v1.txt" || fail "ReLU epilogue: $(cat "$T/v1.txt")"
grep -q 'gemm+Sigmoid+Mul  *x2' "$T/v3.txt" || fail "SwiGLU gate epilogue: $(cat "$T/v3.txt")"
# RMSNorm as norm steps: 2 per pre-norm layer, and the final one in the
# last FFN's epilogue
grep -q '^plan: .* 4 norm' "$T/v4.txt" || fail "RMSNorm steps: $(cat "$T/v4.txt")"
grep -q 'gemm+bias+residual+rmsnorm  *x1' "$T/v4.txt" || fail "final RMSNorm: $(cat "$T/v4.txt")"
echo "ok: $n variants load fused"

echo "== every backend-test folder: the fast backend against scalar"
"$MHA" check --backend "$fast" "$T/cases" >"$T/check.txt" 2>&1 || fail "check: $(cat "$T/check.txt")"
grep -q "^$((n + 2)) passed, 0 failed" "$T/check.txt" || fail "check: $(cat "$T/check.txt")"
echo "ok: $fast matches scalar on $((n + 2)) models"

echo "== presets"
"$MHA" gen --preset gpt2-small -L 1 -d 64 -H 4 --ffn 128 --vocab 64 --max-pos 32 -o "$T/p.onnx"
"$MHA" info "$T/p.onnx" >"$T/p.txt"
grep -q '^causal: *yes' "$T/p.txt" && grep -q '^d_model: *64$' "$T/p.txt" &&
  grep -q 'Tanh' "$T/p.txt" || fail "gpt2-small preset, overridden: $(cat "$T/p.txt")"
echo "ok: a preset's values, and the options that override them"

echo "== refused"
refused() { # what, then the arguments
  what=$1
  shift
  set +e
  "$MHA" gen "$@" >"$T/out" 2>"$T/err"
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "$what: exit $rc, wanted 2 ($(cat "$T/err"))"
  [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: not one line: $(cat "$T/err")"
}
refused "an unknown activation" --model encoder -d 32 -H 4 --act gelu2 -o "$T/r.onnx"
refused "an unknown preset" --preset bert-huge -o "$T/r.onnx"
refused "a layer form for a whole model" --model encoder -d 32 -H 4 --form ms_mha -o "$T/r.onnx"
refused "a mask for a decoder" --model decoder -d 32 -H 4 -o "$T/r.onnx" --data "$T/r.npy" \
  --mask "$T/rm.npy" --batch 1 --seq 4
refused "a sequence past the positions" --model encoder -d 32 -H 4 --max-pos 8 -o "$T/r.onnx" \
  --data "$T/r.npy" --batch 1 --seq 9
refused "model options for a layer" -d 32 -H 4 -L 2 -o "$T/r.onnx"
refused "both norm orders" --model encoder -d 32 -H 4 --pre-norm --post-norm -o "$T/r.onnx"
refused "no LM head on an encoder" --model encoder -d 32 -H 4 --no-lm-head -o "$T/r.onnx"
[ ! -e "$T/r.onnx" ] || fail "a refused gen wrote a model"
echo "ok: bad options refused"

# the ONNX checker, when this machine has it (Debian's python3-onnx)
if /usr/bin/python3 -c 'import onnx' 2>/dev/null; then
  /usr/bin/python3 - "$T/enc.onnx" "$T/dec.onnx" "$T/v4.onnx" <<'PY' || fail "onnx.checker refuses a generated model"
import sys, onnx
for p in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(p), full_check=True)
PY
  echo "ok: onnx.checker accepts the models"
else
  echo "note: no python3 onnx here, the ONNX checker was not run"
fi
