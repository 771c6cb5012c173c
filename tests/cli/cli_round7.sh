#!/bin/sh
# cli_round7.sh -- defects of the `mha` command found by the seventh
# adversarial round (and the items the sixth left), each as the rule for bad
# input has it: a non-zero exit, one stderr line naming the file or option
# and the problem, nothing on stdout and no output file -- or, where the
# input is good after all, the answer the same input in its usual form gives.
# Env: MHA (the binary), MHA_TESTHOOKS, MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
: "${MHA_TESTHOOKS:?set MHA_TESTHOOKS to the mha-testhooks binary}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
B="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4"
R="$MHA_TEST_DATA/round7"
MASK="$B/dataset/attention_mask.npy"
TT="$B/dataset/token_type_ids.npy"
S="$B/test_data_set_0"

echo "== token ids stored as uint16 / int16 / uint32"
# "unsupported dtype '<u2' (uint16)": a common storage type of token ids
# (and int16, uint32) was refused; the ids of R/ids_*.npy are the dataset's
# input_ids.npy (int64), so the outputs must be the same bytes
"$MHA" run "$B/model.onnx" "$B/dataset/input_ids.npy" "$MASK" "$TT" -o "$T/y64.npy" -q
for d in u16 i16 u32; do
  "$MHA" run "$B/model.onnx" "$R/ids_$d.npy" "$MASK" "$TT" -o "$T/y$d.npy" -q 2>"$T/err" ||
    fail "ids_$d.npy refused: $(cat "$T/err")"
  cmp -s "$T/y64.npy" "$T/y$d.npy" || fail "ids_$d.npy: another output than the int64 ids"
done
# .pb tensor files of those types (raw_data; int16 also in int32_data), one shot
"$MHA" run "$B/model.onnx" "$S/input_0.pb" "$S/input_1.pb" "$S/input_2.pb" -o "$T/y64.pb" -q
for f in ids_u16.pb ids_i16.pb ids_u32.pb ids_i16_typed.pb; do
  "$MHA" run "$B/model.onnx" "$R/$f" "$S/input_1.pb" "$S/input_2.pb" -o "$T/y.pb" -q 2>"$T/err" ||
    fail "$f refused: $(cat "$T/err")"
  cmp -s "$T/y64.pb" "$T/y.pb" || fail "$f: another output than the int64 ids"
done
# mha check: a case whose ids are uint16
mkdir -p "$T/case/test_data_set_0"
cp "$B/model.onnx" "$T/case/"
cp "$S"/*.pb "$T/case/test_data_set_0/"
cp "$R/ids_u16.pb" "$T/case/test_data_set_0/input_0.pb"
"$MHA" check "$T/case" >"$T/out" 2>"$T/err" || fail "check of uint16 ids: $(cat "$T/out" "$T/err")"
grep -q "^1 passed, 0 failed" "$T/out" || fail "check: $(cat "$T/out")"
# an id past the vocabulary (65535 of 100) in row 3 is named with its place
rm -f "$T/y.npy"
one_line 1 "^mha: $R/ids_u16_oov.npy: input 'input_ids' \[3, 2\]: token id 65535 is outside the vocabulary of 100 (ids in \[0, 100))$" \
  "$MHA" run "$B/model.onnx" "$R/ids_u16_oov.npy" "$MASK" "$TT" -o "$T/y.npy"
[ ! -e "$T/y.npy" ] || fail "an id past the vocabulary left an output"
# what is still not read is named in words with the list
npy_u8() { # a [1, 3] .npy of descr $1 with 24 bytes of data
  h="{'descr': '$1', 'fortran_order': False, 'shape': (1, 3), }"
  { printf '\223NUMPY\001\000\166\000%-117s\n' "$h"; head -c 24 /dev/zero; } >"$2"
}
npy_u8 '<u8' "$T/ids_u64.npy"
one_line 1 "^mha: $T/ids_u64.npy: unsupported dtype '<u8' (uint64); .npy files of float32, float64, float16, int64, int32, int16, int8, uint32, uint16, uint8 or bool, little-endian, are read" \
  "$MHA" run "$B/model.onnx" "$T/ids_u64.npy" "$MASK" "$TT" -o "$T/y.npy"
echo "ok: uint16 / int16 / uint32 ids widened (run, check), ids past the vocabulary named"

echo "cli_round7.sh: all passed"
