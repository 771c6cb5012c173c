#!/bin/sh
# control_chars.sh -- names in a model are untrusted text: terminal control
# characters in an input name, a node name or an op type never reach stdout
# or stderr raw (they come out as \xNN), in `mha info`, in refusals of
# `mha info`, `mha run` and `mha check`, and in -v log lines.
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/cases/evil_case/test_data_set_0"

fail() { echo "FAIL: $*" >&2; exit 1; }

# no_raw_controls WHAT FILE...: no byte 0x00-0x08, 0x0b-0x1f, 0x7f, 0x9b in FILE.
no_raw_controls() {
  what=$1
  shift
  for f in "$@"; do
    if LC_ALL=C grep -q "$(printf '[\001-\010\013-\037\177\233]')" "$f"; then
      fail "$what: raw control bytes in $(basename "$f"): $(od -c "$f" | head -5)"
    fi
  done
}

# replace FILE FROM TO: the same-length byte string FROM becomes TO
# everywhere (a protobuf string field keeps its length prefix valid).
replace() {
  FROM="$2" TO="$3" perl -0777 -pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/g' "$1"
}

"$MHA" gen -d 16 -H 2 --seed 2 -o "$T/m.onnx" --data "$T/x.npy" --batch 1 --seq 3

echo "== an input name with an SGR sequence (ESC [ 3 1 m replaces 'query')"
cp "$T/m.onnx" "$T/sgr.onnx"
replace "$T/sgr.onnx" query "$(printf '\033[31m')"
"$MHA" info "$T/sgr.onnx" >"$T/out" 2>"$T/err" || fail "info refused the renamed model: $(cat "$T/err")"
no_raw_controls "info" "$T/out" "$T/err"
grep -qF '\x1b[31m' "$T/out" || fail "info does not show the escaped name: $(cat "$T/out")"
echo "ok: info prints the name as \\x1b[31m"
printf 'not npy' >"$T/bad.npy"
set +e
"$MHA" run "$T/sgr.onnx" "$T/x.npy" "$T/x.npy" -o "$T/y.npy" >"$T/out" 2>"$T/err"
set -e
no_raw_controls "run with one input too many" "$T/out" "$T/err"
echo "ok: run's refusal: $(cat "$T/err")"

echo "== an op type with an OSC title sequence (ESC ] 0 ; X BEL replaces 'MatMul')"
cp "$T/m.onnx" "$T/osc.onnx"
replace "$T/osc.onnx" MatMul "$(printf '\033]0;X\007')"
replace "$T/osc.onnx" q_proj_matmul "$(printf 'q\033[2J\233matmul\r')"
set +e
"$MHA" info "$T/osc.onnx" >"$T/out" 2>"$T/err"
got=$?
set -e
[ "$got" = 1 ] || fail "info of an unknown op type: exit $got"
no_raw_controls "info's refusal" "$T/out" "$T/err"
grep -qF '\x1b]0;X\x07' "$T/err" || fail "the refusal does not show the escaped op type: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "the refusal is not one line: $(cat "$T/err")"
echo "ok: info's refusal: $(cat "$T/err")"
set +e
"$MHA" info "$T/osc.onnx" -v >"$T/out" 2>"$T/err"
set -e
no_raw_controls "info -v" "$T/out" "$T/err"
echo "ok: -v log lines"

cp "$T/osc.onnx" "$T/cases/evil_case/model.onnx"
set +e
"$MHA" check "$T/cases" >"$T/out" 2>"$T/err"
set -e
no_raw_controls "check" "$T/out" "$T/err"
grep -qF '\x1b]0;X\x07' "$T/out" "$T/err" || fail "check does not show the escaped op type"
echo "ok: check: $(cat "$T/out")"
echo "no raw control characters reach the terminal"
