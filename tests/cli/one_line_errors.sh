#!/bin/sh
# one_line_errors.sh -- every command's error paths as the rule has them:
# a bad argument or input gives a non-zero exit, exactly one line on
# stderr naming the file and the problem, and nothing on stdout (no
# progress line before the error, no table before it, no report of a
# "failed case" that was a bad path).
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/empty"
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
"$MHA" gen -d 16 -H 2 --seed 3 -o "$T/m.onnx" --data "$T/x.npy" --batch 2 --seq 4
printf 'garbage' >"$T/g.onnx"
C="$MHA_TEST_DATA/conformance/mha_self_d16_h1_b1_s1"

echo "== mha check: a path that names no case is an error, not a failing case"
one_line 1 "/dev/zero: not a case folder" "$MHA" check /dev/zero
one_line 1 "nonexistent: No such file or directory" "$MHA" check "$T/nonexistent"
one_line 1 "empty: no model.onnx and no case folders" "$MHA" check "$T/empty"
one_line 1 "m.onnx: not a case folder" "$MHA" check "$T/m.onnx"
# before any case runs: a good case beside a bad path prints no result
one_line 1 "empty: no model.onnx" "$MHA" check "$C" "$T/empty"

echo "== mha bench: no progress line before a load error"
one_line 1 "/dev/zero: not a regular file" "$MHA" bench /dev/zero --shape 1,4
one_line 1 "g.onnx" "$MHA" bench "$T/g.onnx" --shape 1,4
one_line 1 "nonexistent.onnx" "$MHA" bench "$T/nonexistent.onnx" --shape 1,4
# still said once the reference has run
"$MHA" bench "$T/m.onnx" --shape 1,4 --backend scalar --threads 1 --warmup 0 --min-time 0.01 \
  >/dev/null 2>"$T/err"
grep -q "reference run (scalar) on .*m.onnx: " "$T/err" || fail "bench: no reference line: $(cat "$T/err")"

echo "== mha backends: a backend that cannot be selected lists nothing"
one_line 1 "backend 'no-such' not found; usable here: .*scalar" "$MHA" backends --backend no-such
one_line 1 "backend 'no-such' not found" env MHA_BACKEND=no-such "$MHA" backends --json

echo "== the other commands"
one_line 1 "/dev/zero: not a regular file" "$MHA" info /dev/zero
one_line 1 "g.onnx" "$MHA" info "$T/g.onnx"
one_line 1 "g.onnx" "$MHA" run "$T/g.onnx" "$T/x.npy" -o "$T/o.npy"
one_line 1 "nonexistent.npy" "$MHA" run "$T/m.onnx" "$T/nonexistent.npy" -o "$T/o.npy"
one_line 1 "nonexistent.npy" "$MHA" merge "$T/o.npy" "$T/nonexistent.npy"
one_line 1 "/dev/zero: not a regular file" "$MHA" serve /dev/zero --port 0
one_line 1 "backend 'no-such' not found" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/o.npy" --backend no-such
one_line 2 "heads" "$MHA" gen -d 16 -H 3 -o "$T/q.onnx"
[ ! -e "$T/o.npy" ] && [ ! -e "$T/q.onnx" ] || fail "an output was written"
echo "one_line_errors.sh: ok"
