#!/bin/sh
# embed_example.sh -- runs tools/embed_example.c (build/bin/mha_embed_example,
# beside the mha binary): several request threads share one runtime and one
# model; every answer must equal the first bitwise. Also its usage and
# missing-file errors.
# Env: MHA (the mha binary; the example sits beside it), MHA_TEST_DATA.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}"
EX="$(dirname "$MHA")/mha_embed_example"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$EX" ] || fail "$EX not built"

for case in conformance/mha_cross_padmask_d32_h4_b2_q6_kv9 \
            conformance/mha_causal_d16_h2_b4_s64 \
            torch-export/torch_mha_keypad_d16_h2_b2_s5 \
            conformance/onnx_attention_4d_gqa_causal; do
  for threads in 1 4; do
    out=$(MHA_BACKEND=scalar "$EX" "$MHA_TEST_DATA/$case/model.onnx" 3 20) ||
      fail "$case with scalar: $out"
    echo "$out" | grep -q "0 failed, 0 differed" || fail "$case: $out"
    out=$("$EX" "$MHA_TEST_DATA/$case/model.onnx" "$threads" 25) || fail "$case: $out"
    echo "$out" | grep -q "0 failed, 0 differed" || fail "$case: $out"
    echo "ok: $case, $threads client threads: $out"
  done
done

set +e
"$EX" >/dev/null 2>&1
[ $? = 2 ] || fail "no arguments: wanted exit 2"
"$EX" "$MHA_TEST_DATA/conformance/mha_self_d16_h1_b1_s1/model.onnx" 0 >/dev/null 2>&1
[ $? = 2 ] || fail "0 client threads: wanted exit 2"
err=$("$EX" /nonexistent/model.onnx 2>&1 >/dev/null)
[ $? = 1 ] || fail "missing model: wanted exit 1"
set -e
echo "$err" | grep -q "/nonexistent/model.onnx" || fail "missing model: message '$err'"
echo "ok: usage and errors"
