#!/bin/sh
# roundtrip.sh -- gen -> info -> run: `mha gen` writes a model (and data)
# that `mha info` describes as asked and `mha run` scores; gen is
# deterministic in its seed; run writes .npy and .pb, binds NAME=FILE,
# converts float64 input, gives bitwise the same output for any thread
# count, keeps stdout clean and prints its summary on stderr. Also
# `mha backends`.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== gen"
"$MHA" gen -d 64 -H 4 --kv-heads 2 --causal --seed 7 -o "$T/m.onnx" --data "$T/x.npy" --batch 3 --seq 10
[ -s "$T/m.onnx" ] && [ -s "$T/x.npy" ] || fail "gen wrote nothing"
# x.npy: a 128-byte header (numpy's layout) + 3*10*64 float32
[ "$(wc -c <"$T/x.npy")" -eq $((128 + 3 * 10 * 64 * 4)) ] || fail "x.npy has the wrong size"
[ -z "$(ls -A "$T" | grep '\.tmp\.')" ] || fail "gen left temporaries"
"$MHA" gen -d 64 -H 4 --kv-heads 2 --causal --seed 7 -o "$T/m2.onnx" --data "$T/x2.npy" --batch 3 --seq 10
cmp -s "$T/m.onnx" "$T/m2.onnx" && cmp -s "$T/x.npy" "$T/x2.npy" || fail "gen is not deterministic"
"$MHA" gen -d 64 -H 4 --kv-heads 2 --causal --seed 8 -o "$T/m3.onnx" --data "$T/x3.npy" --batch 3 --seq 10
! cmp -s "$T/m.onnx" "$T/m3.onnx" && ! cmp -s "$T/x.npy" "$T/x3.npy" || fail "the seed changes nothing"
echo "ok: gen is seeded and deterministic"

echo "== info"
"$MHA" info "$T/m.onnx" >"$T/info.txt"
cat "$T/info.txt"
grep -q "^form: *onnx-attention-layer" "$T/info.txt" || fail "info: form"
grep -q "^d_model: *64$" "$T/info.txt" || fail "info: d_model"
grep -q "^heads: *4 query, 2 key/value (GQA)" "$T/info.txt" || fail "info: heads"
grep -q "^head size: *16$" "$T/info.txt" || fail "info: head size"
grep -q "^causal: *yes" "$T/info.txt" || fail "info: causal"
grep -q "^scale: *0.25 (1/sqrt(head size))" "$T/info.txt" || fail "info: scale"
grep -q "^masks: *none" "$T/info.txt" || fail "info: masks"
grep -q "^cross: *no" "$T/info.txt" || fail "info: cross"
# 4 weights and 4 biases: 64x64 + 64x32 + 64x32 + 64x64 floats + 64+32+32+64
grep -q "^weights: *$(( (64*64*2 + 64*32*2 + 64*2 + 32*2) * 4 )) bytes" "$T/info.txt" || fail "info: weight bytes"
grep -q "input *query *query *float32 *\[?, ?, 64\]" "$T/info.txt" || fail "info: input"
grep -q "output *output *output *float32 *\[?, ?, 64\]" "$T/info.txt" || fail "info: output"
"$MHA" gen -d 48 -H 3 --no-bias -o "$T/nb.onnx"
"$MHA" info "$T/nb.onnx" >"$T/info2.txt"
grep -q "^causal: *no" "$T/info2.txt" && grep -q "^heads: *3 query, 3 key/value$" "$T/info2.txt" &&
  grep -q "^weights: *$((48 * 48 * 4 * 4)) bytes" "$T/info2.txt" || fail "info of a bias-free model: $(cat "$T/info2.txt")"
echo "ok: info says what gen made"

echo "== run"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.npy" >"$T/stdout" 2>"$T/stderr"
[ ! -s "$T/stdout" ] || fail "run wrote to stdout"
grep -q "^mha run: 3 rows (30 tokens) in .* s: .* rows/s" "$T/stderr" || fail "no summary: $(cat "$T/stderr")"
[ "$(wc -c <"$T/y.npy")" -eq $((128 + 3 * 10 * 64 * 4)) ] || fail "y.npy has the wrong size"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.pb" --quiet 2>"$T/stderr"
[ ! -s "$T/stderr" ] || fail "--quiet still printed: $(cat "$T/stderr")"
[ -s "$T/y.pb" ] || fail "no .pb output"
# same bytes, whichever way the input is bound, the output written or the threads set
"$MHA" run "$T/m.onnx" "query=$T/x.npy" -o "$T/y_named.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y_t1.npy" --threads 1 --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y_t3.npy" --threads 3 --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y_scalar.npy" --backend scalar --quiet ||
  fail "--backend scalar does not run"
for f in y_named y_t1 y_t3; do
  cmp -s "$T/y.npy" "$T/$f.npy" || fail "$f.npy differs from y.npy"
done
echo "ok: NAME=FILE binding and 1, 3 or all threads give the same bytes"
# the .pb output holds the same floats as the .npy one: the data is the tail
# of both files (raw_data is the last field of the TensorProto)
n=$((3 * 10 * 64 * 4))
tail -c "$n" "$T/y.npy" >"$T/a.bin"
tail -c "$n" "$T/y.pb" >"$T/b.bin"
cmp -s "$T/a.bin" "$T/b.bin" || fail ".pb and .npy outputs differ"
# and running the .pb output through check-style reading works: feed it back as input
"$MHA" run "$T/m.onnx" "$T/y.pb" -o "$T/yy.npy" --quiet || fail "a .pb output does not read back as input"
echo "ok: .npy and .pb outputs agree"

# float64 input: the same numbers as float64 give the same output. Build the
# .npy by hand: header with '<f8' then each float32 widened -- done through
# a float32 .npy of zeros vs a float64 .npy of zeros.
zeros() { # FILE DESCR BYTES: a (3, 10, 64) .npy of zeros
  text="{'descr': '$2', 'fortran_order': False, 'shape': (3, 10, 64), }"
  len=${#text}
  { printf '\223NUMPY\001\000v\000%s' "$text"
    head -c $((118 - len - 1)) /dev/zero | tr '\000' ' '
    printf '\n'
    head -c "$3" /dev/zero; } >"$1"
}
zeros "$T/z4.npy" '<f4' $((3 * 10 * 64 * 4))
zeros "$T/z8.npy" '<f8' $((3 * 10 * 64 * 8))
"$MHA" run "$T/m.onnx" "$T/z4.npy" -o "$T/yz4.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/z8.npy" -o "$T/yz8.npy" --quiet
cmp -s "$T/yz4.npy" "$T/yz8.npy" || fail "float64 input is not converted like float32"
echo "ok: float64 input converted"

# the batch and sequence lengths a model declares do not bind: a [2, 8, 32]
# conformance model runs a [5, 3, 32] dataset; its width does bind
"$MHA" gen -d 32 -H 2 -o "$T/d32.onnx" --data "$T/x32.npy" --batch 5 --seq 3
"$MHA" run "$MHA_TEST_DATA/conformance/mha_self_d32_h2_b2_s8/model.onnx" "$T/x32.npy" \
  -o "$T/y32.npy" --quiet || fail "a fixed-shape model refuses another batch and length"
[ "$(wc -c <"$T/y32.npy")" -eq $((128 + 5 * 3 * 32 * 4)) ] || fail "y32.npy has the wrong size"
echo "ok: declared batch and length do not bind"

echo "== backends"
"$MHA" backends >"$T/backends.txt"
cat "$T/backends.txt"
grep -q "^auto picks: " "$T/backends.txt" || fail "backends: no auto line"
grep -Eq "\(built-in\)|^built-in scalar: the fallback" "$T/backends.txt" || fail "backends: no built-in scalar"
"$MHA" backends --json >"$T/backends.json"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$T/backends.json" ||
  fail "backends --json is not JSON: $(cat "$T/backends.json")"
"$MHA" info --json "$T/m.onnx" >"$T/info.json"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["q_heads"] > 0 and d["layers"] == []' \
  "$T/info.json" || fail "info --json on a layer: $(cat "$T/info.json")"
grep -q '^{"cpu_features": ".*", "auto": "[a-z0-9_]*", "selected": .*"plugins": \[{.*"path": "(built-in)"' \
  "$T/backends.json" || fail "backends --json: $(cat "$T/backends.json")"
set +e
"$MHA" backends --backend no-such-backend >/dev/null 2>"$T/stderr"
rc=$?
set -e
[ "$rc" = 1 ] && [ "$(wc -l <"$T/stderr")" -eq 1 ] || fail "backends with a missing backend: exit $rc"
set +e
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/never.npy" --backend no-such-backend 2>"$T/stderr"
rc=$?
set -e
[ "$rc" = 1 ] && [ "$(wc -l <"$T/stderr")" -eq 1 ] && [ ! -e "$T/never.npy" ] ||
  fail "run with a missing backend: exit $rc"
echo "ok: backends"

echo "roundtrip.sh: all passed"
