#!/bin/sh
# cli_round8.sh -- defects found by the eighth adversarial round (and the
# items the seventh's review left), each as the rule for bad input has it:
# a non-zero exit, one stderr line naming the file or option and the
# problem, nothing on stdout and no output file -- or, where the input is
# good after all, the answer the same input in its usual form gives.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP, MHA_BUILD_DIR.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}" "${MHA_BUILD_DIR:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
R="$MHA_TEST_DATA/round8"

echo "== a function-inlining bomb"
# 20 model-local functions, each calling the next twice (1373 bytes), inline
# to 524 288 nodes: refused only after the graph was built (8.6 s quiet,
# 909 MB); now counted before anything is inlined and held to the file
one_line 1 "^mha: $R/fn_bomb20.onnx: the model's functions would inline to 524288 nodes from the 40 its file holds (at most 65536: the larger of 65536 and 100 per node of the file, up to 4194304)$" \
  timeout 20 "$MHA" info "$R/fn_bomb20.onnx"
# a model written with functions still loads
expect 0 "model-local functions" "$MHA" info "$MHA_TEST_DATA/models/d7_bert_localfunctions_op17/model.onnx"
echo "ok: refused before inlining; the functions of a real model load"

echo "== a relative plugin path"
# registry.c checked the trust of ./mha-plugin-wrong.so but dlopen'ed the
# bare name, which the dynamic loader looks up in the library path: the
# file named was never loaded ("no such backend usable here"); a missing
# --plugin-path ran on the default plugins in silence
"$MHA" gen -d 16 -H 2 -o "$T/l.onnx"
mkdir -p "$T/pl"
cp "$MHA_BUILD_DIR/lib/mha/testing-plugins/mha-plugin-wrong.so" "$T/pl/"
# (the test plugin 'wrong' computes wrong answers on purpose: loaded, it
# fails bench's accuracy check)
(cd "$T/pl" && "$MHA" bench "$T/l.onnx" --plugin-path mha-plugin-wrong.so --backend wrong \
  --shape 1,4 --warmup 0 -q --threads 1 >"$T/out" 2>"$T/err") && fail "the wrong plugin passed"
grep -q "^mha bench: wrong with 1 thread FAILED the accuracy check" "$T/err" ||
  fail "relative --plugin-path not loaded: $(cat "$T/err")"
cd "$T/pl"
one_line 1 "^mha bench: $T/l.onnx: listing the backends: plugin path 'nosuch.so' (in $T/pl): No such file or directory$" \
  "$MHA" bench "$T/l.onnx" --plugin-path nosuch.so --backend scalar --shape 1,4 --warmup 0 -q
cd - >/dev/null
echo "ok: a relative plugin path is the current folder's; a missing one named"

echo "== a float16 graph input (a whole float16 layer, widened to float32)"
H="$R/half_layer"
# ONNX Runtime's float16 output (test_data_set_0, from make_round8.py)
"$MHA" check "$H" >"$T/out" 2>"$T/err" || fail "check of the float16 layer: $(cat "$T/out" "$T/err")"
grep -q "^1 passed, 0 failed" "$T/out" || fail "check: $(cat "$T/out")"
# .npy: the summary counted 2 tokens for [2, 5, 32] (a float16 model runs
# as a plan, whose token count looked for ids only) ...
"$MHA" run "$H/model.onnx" "$R/half_x.npy" -o "$T/y16.npy" 2>"$T/err" || fail "run: $(cat "$T/err")"
grep -q "^mha run: 2 rows (10 tokens) in .*; 0 rows with non-finite outputs;" "$T/err" ||
  fail "float16 summary: $(cat "$T/err")"
# ... and a NaN in row 1 gave "0 rows with non-finite outputs" (only
# float32 outputs were looked at)
"$MHA" run "$H/model.onnx" "$R/half_x_nan.npy" -o "$T/ynan.npy" 2>"$T/err" || fail "run: $(cat "$T/err")"
grep -q "; 1 rows with non-finite outputs;" "$T/err" || fail "float16 NaN row unsaid: $(cat "$T/err")"
# the same values as float32 are converted: the same output bytes
"$MHA" run "$H/model.onnx" "$R/half_x_f32.npy" -o "$T/y32.npy" -q
cmp -s "$T/y16.npy" "$T/y32.npy" || fail "float32 input: another output than the float16 one"
rm -f "$T/y.npy"
one_line 1 "^mha: $R/half_x_i64.npy: int64 data cannot be used as input 'query' (float16)$" \
  "$MHA" run "$H/model.onnx" "$R/half_x_i64.npy" -o "$T/y.npy"
[ ! -e "$T/y.npy" ] || fail "a refused input left an output"
echo "ok: float16 in and out as ONNX Runtime; tokens and NaN rows counted"

echo "== the tolerance file of a case"
# sscanf read 'rtol 0x1p-3' as 0.125, the last of two 'rtol' lines won,
# fgets split a line over 255 bytes into two lines (a third value passed
# as a line of its own) and stopped at a NUL byte
Q="$MHA_TEST_DATA/models/d7_bert_ortdyn_int8_pertensor_op14"
mkdir -p "$T/tc"
cp -r "$Q/model.onnx" "$Q/test_data_set_0" "$T/tc/"
tol_refused() { # CONTENT (printf format) and the reason wanted
  # shellcheck disable=SC2059
  printf "$1" >"$T/tc/tolerance"
  "$MHA" check "$T/tc" >"$T/out" 2>"$T/err" && fail "tolerance '$1' passed: $(cat "$T/out")"
  grep -q "^FAIL tc: $T/tc/tolerance: $2$" "$T/out" || fail "tolerance '$1': $(cat "$T/out" "$T/err")"
}
tol_refused 'rtol 0x1p-3\n' "line 1 is not 'rtol R' or 'atol A' (0 <= value < 1)"
tol_refused 'rtol  0.02\natol 0x.1\n' "line 2 is not 'rtol R' or 'atol A' (0 <= value < 1)"
tol_refused 'rtol 0.01\natol 0.02\nrtol 0.5\n' "line 3 gives 'rtol' a second time"
tol_refused "rtol 0.02$(printf '%260s' '')atol 0.5\\n" "line 1 is longer than 256 bytes"
tol_refused 'atol 0.02\000\nrtol 0.5\n' "line 1 holds a NUL byte"
tol_refused 'rtol nan\n' "line 1 is not 'rtol R' or 'atol A' (0 <= value < 1)"
# what was read still is
printf '# a comment\n\natol 0.02   # trailing\nrtol 2e-2' >"$T/tc/tolerance"
"$MHA" check "$T/tc" >"$T/out" 2>"$T/err" || fail "a good tolerance file: $(cat "$T/out" "$T/err")"
echo "ok: every tolerance line a number as written, once"

echo "== MatMulInteger's b_zero_point [N, 1]"
# taken as one per column (32 values); ONNX has a scalar or one per column
# of B ([N], as ONNX Runtime also [1, N]); ONNX Runtime refuses it
one_line 1 "^mha: $R/mmi_bzp_column.onnx: evaluating the graph on a probe input: MatMulInteger node '/blocks.0/q/MatMul_quant': b_zero_point 32x1 must be int8 with one value or one per column (32)$" \
  "$MHA" info "$R/mmi_bzp_column.onnx"
echo "ok: refused"

echo "== the list of model-local functions"
# a function defined twice (the first used in silence), one in the default
# domain named as the operator it would shadow (never called: the operator
# ran), an attribute reference to an attribute the function does not
# declare (left out in silence): each loaded
one_line 1 "^mha: $R/fn_twice.onnx: function 'local.Sm' is defined twice (functions 0 and 1)$" \
  "$MHA" info "$R/fn_twice.onnx"
one_line 1 "^mha: $R/fn_default_domain.onnx: function 'Softmax' is defined in the domain '' of the operators it would shadow; model-local functions need a domain of their own$" \
  "$MHA" info "$R/fn_default_domain.onnx"
one_line 1 "^mha: $R/fn_undeclared_ref.onnx: function 'local.Sm': attribute 'axis' of node '' refers to 'nosuch', which the function does not declare$" \
  "$MHA" info "$R/fn_undeclared_ref.onnx"
echo "ok: refused"

echo "== Conv attributes past what a Conv means"
# a kernel_shape other than the weight's loaded (the weight's 3 used;
# ONNX Runtime refuses it); a dilation of 2^62 overflowed the span
# dilation x (kernel - 1) (undefined behaviour); and a one-layer model
# whose plan found such a fault reported the layer recogniser's "Add node
# ... on the Q path" instead
one_line 1 "^mha: $R/conv_kernel_shape.onnx: evaluating the graph on a probe input: Conv node 'conv': kernel_shape (1 values, the last 5) is not the kernel of W 16x16x3$" \
  "$MHA" info "$R/conv_kernel_shape.onnx"
one_line 1 "^mha: $R/conv_dilation_2e62.onnx: evaluating the graph on a probe input: Conv node 'conv': strides, dilations and pads must be at most 2^31 (1, 4611686018427387904, 1 and 1 on axis 0)$" \
  "$MHA" info "$R/conv_dilation_2e62.onnx"
expect 0 "the same Conv with its own kernel_shape" "$MHA" info "$R/conv_ok.onnx"
echo "ok: refused naming the Conv"
