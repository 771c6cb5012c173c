#!/bin/sh
# bad_files.sh -- broken model files and broken .npy inputs: `mha run` and
# `mha info` exit 1 with exactly one stderr line naming the file, and leave
# NO output file (not even a temporary) behind.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/out"

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_fail WHAT FILE CMD...: exit 1, one stderr line that names FILE,
# nothing on stdout, nothing in $T/out.
expect_fail() {
  what=$1 file=$2
  shift 2
  set +e
  "$@" >"$T/stdout" 2>"$T/stderr"
  got=$?
  set -e
  [ "$got" = 1 ] || fail "$what: exit $got, wanted 1 (stderr: $(cat "$T/stderr"))"
  lines=$(wc -l <"$T/stderr")
  [ "$lines" -eq 1 ] || fail "$what: $lines lines on stderr, wanted 1: $(cat "$T/stderr")"
  grep -qF "$(basename "$file")" "$T/stderr" || fail "$what: stderr does not name $file: $(cat "$T/stderr")"
  [ ! -s "$T/stdout" ] || fail "$what: wrote to stdout"
  [ -z "$(ls -A "$T/out")" ] || fail "$what: left files behind: $(ls -A "$T/out")"
  echo "ok: $what: $(cat "$T/stderr")"
}

# npy FILE DESCR SHAPE DATA_BYTES: a version 1.0 .npy file with zero data.
npy() {
  text="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
  len=${#text}
  hlen=$(( (10 + len + 1 + 63) / 64 * 64 - 10 ))
  {
    printf '\223NUMPY\001\000'
    printf "\\$(printf %03o $((hlen % 256)))\\$(printf %03o $((hlen / 256)))"
    printf '%s' "$text"
    head -c $((hlen - len - 1)) /dev/zero | tr '\000' ' '
    printf '\n'
    head -c "$4" /dev/zero
  } >"$1"
}

echo "== a model with dynamic batch and sequence, d_model 32"
"$MHA" gen -d 32 -H 2 --seed 3 -o "$T/model.onnx" --data "$T/good.npy" --batch 2 --seq 8
"$MHA" run "$T/model.onnx" "$T/good.npy" -o "$T/out/y.npy" --quiet
[ -s "$T/out/y.npy" ] || fail "the good run wrote nothing"
rm -f "$T/out/y.npy"
npy "$T/zeros.npy" '<f4' '(2, 8, 32)' 2048
"$MHA" run "$T/model.onnx" "$T/zeros.npy" -o "$T/out/y.npy" --quiet || fail "a hand-made .npy is refused"
rm -f "$T/out/y.npy"
echo "ok: good inputs run"

echo "== bad model files"
: >"$T/empty.onnx"
head -c 300 "$T/model.onnx" >"$T/truncated.onnx"
head -c 6000 "$MHA" | tail -c 3000 >"$T/random.onnx"
printf 'not a model at all\n' >"$T/text.onnx"
for m in empty truncated random text; do
  expect_fail "run $m.onnx" "$T/$m.onnx" "$MHA" run "$T/$m.onnx" "$T/good.npy" -o "$T/out/y.npy"
  expect_fail "info $m.onnx" "$T/$m.onnx" "$MHA" info "$T/$m.onnx"
done
expect_fail "run a missing model" "$T/missing.onnx" "$MHA" run "$T/missing.onnx" "$T/good.npy" -o "$T/out/y.npy"
expect_fail "check-style --out-dir with a bad model" "$T/truncated.onnx" \
  "$MHA" run "$T/truncated.onnx" "$T/good.npy" --out-dir "$T/out"

echo "== bad .npy inputs"
cp "$T/good.npy" "$T/magic.npy"
printf 'X' | dd of="$T/magic.npy" bs=1 seek=1 conv=notrunc 2>/dev/null
expect_fail "bad magic" "$T/magic.npy" "$MHA" run "$T/model.onnx" "$T/magic.npy" -o "$T/out/y.npy"
npy "$T/rank2.npy" '<f4' '(16, 32)' 2048
expect_fail "wrong rank" "$T/rank2.npy" "$MHA" run "$T/model.onnx" "$T/rank2.npy" -o "$T/out/y.npy"
npy "$T/d16.npy" '<f4' '(2, 8, 16)' 1024
expect_fail "wrong d_model" "$T/d16.npy" "$MHA" run "$T/model.onnx" "$T/d16.npy" -o "$T/out/y.npy"
npy "$T/complex.npy" '<c8' '(2, 8, 32)' 4096
expect_fail "unsupported dtype" "$T/complex.npy" "$MHA" run "$T/model.onnx" "$T/complex.npy" -o "$T/out/y.npy"
npy "$T/int.npy" '<i8' '(2, 8, 32)' 4096
expect_fail "int64 data for a float input" "$T/int.npy" "$MHA" run "$T/model.onnx" "$T/int.npy" -o "$T/out/y.npy"
npy "$T/short.npy" '<f4' '(2, 8, 32)' 100
expect_fail "shape larger than the data" "$T/short.npy" "$MHA" run "$T/model.onnx" "$T/short.npy" -o "$T/out/y.npy"
grep -q "needs 2048 bytes but the file holds 100" "$T/stderr" || fail "the message does not give the sizes"
npy "$T/big.npy" '<f4' '(4294967296, 4294967296, 32)' 16
expect_fail "shape product overflow" "$T/big.npy" "$MHA" run "$T/model.onnx" "$T/big.npy" -o "$T/out/y.npy"
head -c 5 "$T/good.npy" >"$T/stub.npy"
expect_fail "a 5-byte file" "$T/stub.npy" "$MHA" run "$T/model.onnx" "$T/stub.npy" -o "$T/out/y.npy"
expect_fail "a missing input" "$T/nothere.npy" "$MHA" run "$T/model.onnx" "$T/nothere.npy" -o "$T/out/y.npy"
head -c 4096 "$MHA" | tail -c 1000 >"$T/junk.pb"
expect_fail "a junk .pb input" "$T/junk.pb" "$MHA" run "$T/model.onnx" "$T/junk.pb" --out-dir "$T/out"

echo "== outputs that cannot be written"
expect_fail "output into a missing folder" "$T/out/nope/y.npy" \
  "$MHA" run "$T/model.onnx" "$T/good.npy" -o "$T/out/nope/y.npy"
# refused by its mode bits, as root too
mkdir "$T/ro" && chmod 555 "$T/ro"
set +e
"$MHA" run "$T/model.onnx" "$T/good.npy" -o "$T/ro/y.npy" 2>"$T/stderr"
got=$?
set -e
chmod 755 "$T/ro"
[ "$got" = 1 ] && [ -z "$(ls -A "$T/ro")" ] || fail "read-only folder: exit $got, left $(ls -A "$T/ro")"
echo "ok: read-only folder: $(cat "$T/stderr")"

echo "bad_files.sh: all passed"
