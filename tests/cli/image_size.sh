#!/bin/sh
# image_size.sh -- a ViT whose file declares batch, height and width all
# symbolic (as Hugging Face's exporters write pixel_values) but whose
# position table fixes the image at 16 x 16: it loads at that size (fitted
# from the patch Conv), runs on 16 x 16 images, and an image of another
# size is refused on one line that names the file, the input, the axis and
# the size the model takes, with no output written. A model that takes any
# size (no position table) but whose patches are larger than the probes'
# small sizes keeps its axes symbolic and runs at two sizes.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
C="$MHA_TEST_DATA/models/v_vit_hf_dynhw_op14"

fail() { echo "FAIL: $*" >&2; exit 1; }

. "$(dirname "$0")/lib/npy_zeros.sh"
# npy_f32 FILE SHAPE COUNT: a float32 .npy of COUNT zeros
npy_f32() { npy_zeros "$1" '<f4' "$2" $(($3 * 4)); }

echo "== the file's symbolic height and width, fitted at load"
"$MHA" info "$C/model.onnx" >"$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q 'pixel_values .*float32 *\[?, 3, 16, 16\]' "$T/info.txt" ||
  fail "info: the image is not 16 x 16: $(cat "$T/info.txt")"
"$MHA" check "$C" >"$T/check.txt" 2>&1 || fail "check: $(cat "$T/check.txt")"
echo "ok: loads at 16 x 16 and matches PyTorch"

echo "== a 16 x 16 image runs"
npy_f32 "$T/good.npy" "(2, 3, 16, 16)" 1536
"$MHA" run -q "$C/model.onnx" "$T/good.npy" -o "$T/good_out.npy" || fail "run on 16 x 16 images"
[ -s "$T/good_out.npy" ] || fail "run: no output"
echo "ok"

# bad NAME SHAPE COUNT AXIS: exit 1, one line naming the file, the input,
# the axis and the size 16, no output written
bad() {
  npy_f32 "$T/$1.npy" "$2" "$3"
  set +e
  "$MHA" run "$C/model.onnx" "$T/$1.npy" -o "$T/$1_out.npy" >"$T/$1.txt" 2>&1
  rc=$?
  set -e
  [ "$rc" = 1 ] || fail "$1: exit $rc, wanted 1: $(cat "$T/$1.txt")"
  [ "$(wc -l <"$T/$1.txt")" = 1 ] || fail "$1: not one line: $(cat "$T/$1.txt")"
  for want in "$1.npy" "'pixel_values'" "$4" 16; do
    grep -q -- "$want" "$T/$1.txt" || fail "$1: the message does not say $want: $(cat "$T/$1.txt")"
  done
  [ ! -e "$T/$1_out.npy" ] || fail "$1: an output was written"
  echo "ok: $(cat "$T/$1.txt")"
}

echo "== images of another size are refused"
bad tall "(2, 3, 20, 16)" 1920 "axis 2 ('height')"
bad wide "(2, 3, 16, 20)" 1920 "axis 3 ('width')"
bad large "(1, 3, 32, 32)" 3072 "axis 2 ('height')"

echo "== images that are not square: 8 pixels tall, 16 wide (2 x 4 patches)"
N="$MHA_TEST_DATA/models/v_vit_hf_nonsquare_op14"
W="$MHA_TEST_DATA/models/v_vit_hf_dynhw_nonsquare_op14"
"$MHA" info "$W/model.onnx" >"$T/ns.txt" || fail "info (not square): $(cat "$T/ns.txt")"
for m in "$N" "$W"; do
  "$MHA" check "$m" >"$T/ns_check.txt" 2>&1 || fail "check $m: $(cat "$T/ns_check.txt")"
done
npy_f32 "$T/ns.npy" "(2, 3, 8, 16)" 768
"$MHA" run -q "$W/model.onnx" "$T/ns.npy" -o "$T/ns_out.npy" || fail "run (not square)"
C="$N"
bad turned "(2, 3, 16, 8)" 768 "axis 2"
echo "ok: declared and fitted at 8 x 16, both match PyTorch; 16 x 8 refused where declared"

echo "== a model of any image size keeps the axes symbolic"
A="$MHA_TEST_DATA/models/v_vit_anysize_meanpool_op14"
"$MHA" info "$A/model.onnx" >"$T/any.txt" || fail "info (any size): $(cat "$T/any.txt")"
grep -q 'pixel_values .*float32 *\[?, 3, ?, ?\]' "$T/any.txt" ||
  fail "info (any size): the axes are not symbolic: $(cat "$T/any.txt")"
"$MHA" check "$A" >"$T/any_check.txt" 2>&1 || fail "check (any size): $(cat "$T/any_check.txt")"
npy_f32 "$T/any1.npy" "(1, 3, 8, 20)" 480
npy_f32 "$T/any2.npy" "(3, 3, 24, 12)" 2592
for f in any1 any2; do
  "$MHA" run -q "$A/model.onnx" "$T/$f.npy" -o "$T/${f}_out.npy" || fail "run (any size) on $f"
done
echo "ok: symbolic, matches PyTorch at 12 x 16, runs at 8 x 20 and 24 x 12"
echo "PASS"
