#!/bin/sh
# nonregular_inputs.sh -- a FIFO (or a folder, or a device) given where a
# file is read -- `mha run`'s input, its --lengths, a `mha merge` shard, an
# input of a `mha check` case -- is refused at once with exit 1 and a line
# naming the file, never waited on. Each command runs under `timeout`: a
# hang is a failure, not a slow pass.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }

# refused WHAT NEEDLE CMD...: exit 1 within 10 s, stderr names NEEDLE and
# says why.
refused() {
  what=$1 needle=$2
  shift 2
  set +e
  timeout 10 "$@" >"$T/stdout" 2>"$T/stderr"
  got=$?
  set -e
  [ "$got" != 124 ] || fail "$what: still waiting after 10 s"
  [ "$got" = 1 ] || fail "$what: exit $got, wanted 1 (stderr: $(cat "$T/stderr"))"
  grep -qF "$needle" "$T/stderr" || fail "$what: stderr does not name $needle: $(cat "$T/stderr")"
  grep -q "not a regular file" "$T/stderr" || fail "$what: stderr does not say why: $(cat "$T/stderr")"
  echo "ok: $what: $(cat "$T/stderr")"
}

"$MHA" gen -d 16 -H 2 --seed 1 -o "$T/m.onnx" --data "$T/x.npy" --batch 3 --seq 4
mkfifo "$T/fifo.npy"

refused "run: a FIFO as the input" fifo.npy \
  "$MHA" run "$T/m.onnx" "$T/fifo.npy" -o "$T/y.npy" --quiet
mkdir "$T/dir.npy"
refused "run: a folder as the input" dir.npy \
  "$MHA" run "$T/m.onnx" "$T/dir.npy" -o "$T/y.npy" --quiet
refused "run: a FIFO as --lengths" fifo.npy \
  "$MHA" run "$T/m.onnx" "$T/x.npy" --lengths "$T/fifo.npy" -o "$T/y.npy" --quiet
[ ! -e "$T/y.npy" ] || fail "a refused run wrote its output"

"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/s0.npy" --shard 0/2 --quiet
refused "merge: a FIFO as a shard" fifo.npy \
  "$MHA" merge "$T/merged.npy" "$T/s0.npy" "$T/fifo.npy" --quiet
[ ! -e "$T/merged.npy" ] || fail "a refused merge wrote its output"

CASE="$MHA_TEST_DATA/conformance/mha_self_d16_h1_b1_s1"
mkdir -p "$T/cases/fifo_case/test_data_set_0"
cp "$CASE/model.onnx" "$T/cases/fifo_case/"
cp "$CASE/test_data_set_0/output_0.pb" "$T/cases/fifo_case/test_data_set_0/"
mkfifo "$T/cases/fifo_case/test_data_set_0/input_0.pb"
set +e
timeout 10 "$MHA" check "$T/cases" >"$T/stdout" 2>"$T/stderr"
got=$?
set -e
[ "$got" != 124 ] || fail "check: a FIFO as a case input: still waiting after 10 s"
[ "$got" = 1 ] || fail "check: a FIFO as a case input: exit $got, wanted 1"
grep -q "input_0.pb.*not a regular file" "$T/stdout" "$T/stderr" ||
  fail "check: the FIFO input is not named as such: $(cat "$T/stdout" "$T/stderr")"
echo "ok: check: a FIFO as a case input is a failed case"
echo "all non-regular inputs refused"
