#!/bin/sh
# cli_round6.sh -- defects of the `mha` command found by the sixth
# adversarial round, each as the rule for bad input has it: a non-zero
# exit, one stderr line naming the file or option and the problem, nothing
# on stdout and no output file.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
B="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4"
IN="$B/test_data_set_0/input_0.pb $B/test_data_set_0/input_1.pb $B/test_data_set_0/input_2.pb"

echo "== an option given twice with two values"
# the last one won in silence: 'gen -o a.onnx -o b.onnx' wrote b.onnx alone,
# 'run --threads 1 --threads 2' ran on 2
one_line 2 "^mha gen: -o/--output is given twice, as '$T/a.onnx' and '$T/b.onnx': give it once" \
  "$MHA" gen -d 16 -H 2 -o "$T/a.onnx" -o "$T/b.onnx"
[ ! -e "$T/a.onnx" ] && [ ! -e "$T/b.onnx" ] || fail "gen -o twice wrote a model"
one_line 2 "^mha gen: -d/--d-model is given twice, as '16' and '32'" "$MHA" gen -d 16 -H 2 -d 32 -o "$T/a.onnx"
# shellcheck disable=SC2086
one_line 2 "^mha run: --threads is given twice, as '1' and '2'" \
  "$MHA" run "$B/model.onnx" $IN -o "$T/y.npy" --threads 1 --threads=2
# shellcheck disable=SC2086
one_line 2 "^mha run: --precision is given twice, as 'float32' and 'bfloat16'" \
  "$MHA" run "$B/model.onnx" $IN -o "$T/y.npy" --precision float32 --prec bfloat16
[ ! -e "$T/y.npy" ] || fail "run with an option twice wrote its output"
one_line 2 "^mha check: --rtol is given twice, as '1' and '2'" "$MHA" check --rtol 1 --rtol 2 "$B"
one_line 2 "^mha bench: --warmup is given twice, as '0' and '3'" \
  "$MHA" bench "$B/model.onnx" --shape 1,4 --warmup 0 --warmup 3
# the same value again is harmless; -o takes several files, so it may come back
# shellcheck disable=SC2086
expect 0 "run --threads 1 --threads 1, -o y.npy -o p.npy" \
  "$MHA" run "$B/model.onnx" $IN -q --threads 1 --threads 1 -o "$T/y.npy" -o "$T/p.npy"
[ -s "$T/y.npy" ] && [ -s "$T/p.npy" ] || fail "run -o A -o B did not write both outputs"
echo "ok: a value option given twice is refused, -o OUTPUT... still accumulates"

echo "== a model field of the wrong wire type"
# 'malformed protobuf: onnx.ModelProto could not be decoded (a field has the
# wrong type)': neither the field nor the place named
M="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4/model.onnx"
size=$(wc -c <"$M")
{ cat "$M"; printf '\070\005'; } >"$T/graph_varint.onnx" # field 7 (graph), wire type 0
one_line 1 "^mha: $T/graph_varint.onnx: field 'graph' of onnx.ModelProto at byte offset $size has wire type 0 (varint); a field of its type takes wire type 2 (length-delimited)$" \
  "$MHA" info "$T/graph_varint.onnx"
{ cat "$M"; printf '\015\001\000\000\000'; } >"$T/ir_fixed32.onnx" # field 1 (ir_version), wire type 5
one_line 1 "field 'ir_version' of onnx.ModelProto at byte offset $size has wire type 5 (fixed32); a field of its type takes wire type 0 (varint)" \
  "$MHA" info "$T/ir_fixed32.onnx"
"$MHA" gen -d 16 -H 2 -o "$T/layer.onnx" >/dev/null # one float input
# a TensorProto input: dims [2] (field 1), FLOAT (field 2), float_data
# (field 4) packed in 5 bytes -- not whole floats
printf '\010\002\020\001\042\005\000\000\200\077\000' >"$T/floats5.pb"
one_line 1 "^mha: $T/floats5.pb: packed field 'float_data' of onnx.TensorProto at byte offset 4 holds 5 bytes, not a whole number of 4-byte elements" \
  "$MHA" run "$T/layer.onnx" "$T/floats5.pb" -o "$T/y.npy"
# dims (repeated int64) packed, the last varint cut: 0x80 ends the run
printf '\012\002\002\200\020\001' >"$T/dims_cut.pb"
one_line 1 "packed field 'dims' of onnx.TensorProto at byte offset 0: its last varint runs past its end$" \
  "$MHA" run "$T/layer.onnx" "$T/dims_cut.pb" -o "$T/y.npy"
# a packed run where packing is allowed still reads: dims [2] packed
printf '\012\001\002\020\001\042\010\000\000\200\077\000\000\000\100' >"$T/packed_ok.pb"
if "$MHA" run "$T/layer.onnx" "$T/packed_ok.pb" -o "$T/y.npy" 2>"$T/err"; then :; fi
! grep -q "wire type\|packed field\|could not be decoded" "$T/err" || fail "a good packed TensorProto refused: $(cat "$T/err")"
# a tensor file given as the model: "malformed protobuf: onnx.ModelProto
# could not be decoded" said nothing of what it is
one_line 1 "^mha: $B/test_data_set_0/input_0.pb: not an ONNX model: an ONNX TensorProto (a tensor file, as input_0.pb of a test case; the model is the .onnx file)$" \
  "$MHA" info "$B/test_data_set_0/input_0.pb"
one_line 1 "^mha: $B/test_data_set_0/input_1.pb: not an ONNX model: an ONNX TensorProto" \
  "$MHA" run "$B/test_data_set_0/input_1.pb" "$B/test_data_set_0/input_0.pb" -o "$T/y.npy"
echo "ok: wrong wire types and broken packed runs are named by field and offset"

echo "== an .npy of a dtype the engine does not read"
# "unsupported dtype '<u2'": neither what it is nor what is read instead
# (uint16 is a common storage type of token ids)
# npy DESCR FILE: a [1, 3] .npy of that descr, 6 bytes of data (int16-wide)
npy() {
  h="{'descr': '$1', 'fortran_order': False, 'shape': (1, 3), }"
  { printf '\223NUMPY\001\000\166\000%-117s\n' "$h"; printf '\001\000\002\000\003\000'; } >"$2"
}
rm -f "$T/y.npy"
REST="$B/dataset/attention_mask.npy $B/dataset/token_type_ids.npy"
# uint16 ids are read since round 7 (widened; cli_round7.sh): uint64 is not
npy '<u8' "$T/ids_u64.npy"
npy '>i2' "$T/ids_i16be.npy"
npy '|O' "$T/ids_obj.npy"
# shellcheck disable=SC2086
one_line 1 "^mha: $T/ids_u64.npy: unsupported dtype '<u8' (uint64); .npy files of float32, float64, float16, int64, int32, int16, int8, uint32, uint16, uint8 or bool, little-endian, are read (numpy's astype converts)$" \
  "$MHA" run "$B/model.onnx" "$T/ids_u64.npy" $REST -o "$T/y.npy"
# shellcheck disable=SC2086
one_line 1 "unsupported dtype '>i2' (big-endian int16); .npy files of" "$MHA" run "$B/model.onnx" "$T/ids_i16be.npy" $REST -o "$T/y.npy"
# shellcheck disable=SC2086
one_line 1 "unsupported dtype '|O'; .npy files of" "$MHA" run "$B/model.onnx" "$T/ids_obj.npy" $REST -o "$T/y.npy"
[ ! -e "$T/y.npy" ] || fail "a refused input left an output"
echo "ok: a refused dtype is named in words with the ones read"

echo "== a NaN input of a one-shot run (.pb output)"
# the summary of a dataset run (.npy) counts the rows with non-finite
# outputs; a one-shot run (a .pb output or input) said nothing of them
"$MHA" gen -d 16 -H 2 -o "$T/nan.onnx" --data "$T/x.pb" --batch 2 --seq 3 >/dev/null
size=$(wc -c <"$T/x.pb")
printf '\000\000\300\177' | dd of="$T/x.pb" bs=1 seek=$((size - 4)) conv=notrunc 2>/dev/null # the last float a NaN
"$MHA" run "$T/nan.onnx" "$T/x.pb" -o "$T/y.pb" 2>"$T/err" || fail "a NaN input refused: $(cat "$T/err")"
grep -q "; 1 rows with non-finite outputs; " "$T/err" || fail "one-shot summary: $(cat "$T/err")"
rm -f "$T/y.pb"
echo "ok: $(cat "$T/err")"

echo "== a backend named that is not usable here"
# "backend 'AVX2' not found; found: scalar (built-in, score 10)": a named
# backend opens no other plugin, so the list held the built-in alone (avx2
# usable or not), and neither --backend nor $MHA_BACKEND was named
# shellcheck disable=SC2086
one_line 1 "^mha: --backend AVX2: backend 'AVX2' not found; usable here: scalar" \
  "$MHA" run "$B/model.onnx" $IN -o "$T/y.npy" --backend AVX2
one_line 1 "^mha: --backend nosuch: backend 'nosuch' not found; usable here: scalar" "$MHA" check "$B" --backend nosuch
# shellcheck disable=SC2086
one_line 1 "^mha: MHA_BACKEND=nosuch: backend 'nosuch' not found; usable here: scalar" \
  env MHA_BACKEND=nosuch "$MHA" run "$B/model.onnx" $IN -o "$T/y.npy"
[ ! -e "$T/y.npy" ] || fail "a run on no backend wrote its output"
echo "ok: the option or variable is named, with every backend usable here"

echo "== mha serve: the Content-Type's media type"
# 'Application/JSON' was 415 (media types compare without regard to case,
# RFC 9110), and any type that merely began with one of ours was taken:
# 'application/json-seq' read as JSON, 'application/x-npyz' as .npy
if "$MHA" serve --help >/dev/null 2>&1 && command -v curl >/dev/null; then
  # serve_start, SRV, U, C (and its own fail)
  . "$(dirname "$0")/lib/serve_start.sh"
  "$MHA" gen --model encoder -d 16 -H 2 --max-pos 16 -o "$T/enc.onnx" >/dev/null
  serve_start "$T/enc.onnx" --threads 1
  # ctype TYPE WANT: [1,2,3] sent with Content-Type TYPE answers WANT
  ctype() {
    code=$($C -o "$T/answer" -w '%{http_code}' -H "Content-Type: $1" --data-binary '[1,2,3]' "$U/run") ||
      fail "Content-Type $1: no answer"
    [ "$code" = "$2" ] || fail "Content-Type '$1': $code, wanted $2: $(head -c 200 "$T/answer")"
    echo "ok: '$1': $code"
  }
  ctype "application/json" 200
  ctype "Application/JSON" 200
  ctype "APPLICATION/JSON;charset=utf-8" 200
  ctype "application/json ; charset=utf-8" 200
  ctype "application/json-seq" 415
  ctype "application/jsonp" 415
  ctype "application/x-npyz" 415
  kill "$SRV"
  serve_wait_exit
else
  echo "skipped: mha serve not built or curl missing"
fi

echo "cli_round6.sh: all passed"
