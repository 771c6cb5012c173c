#!/bin/sh
# adversary.sh -- bad inputs, round 2 (docs/RELIABILITY.md, "Whole models as
# an adversary sees them"): SLURM_ARRAY_* values out of range are refused
# (a task count of 10^20 used to run the whole dataset as if unsharded); a
# file name of thousands of bytes gives one line that still says what is
# wrong with it; `mha bench` of a model that does not load names it once.
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

. "$(dirname "$0")/lib/refusal.sh"

"$MHA" gen -d 16 -H 2 --seed 3 -o "$T/m.onnx" --data "$T/x.npy" --batch 6 --seq 5

echo "== SLURM_ARRAY_* out of range"
for spec in "0 99999999999999999999 -" "0 -99999999999999999999 -" "0 1000001 -" \
  "99999999999999999999 4 0" "-9223372036854775808 4 1" "3 4 -1" "0 4 9223372036854775807"; do
  set -- $spec
  if [ "$3" = - ]; then
    expect 2 "SLURM $spec" env SLURM_ARRAY_TASK_ID="$1" SLURM_ARRAY_TASK_COUNT="$2" \
      "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.npy" --quiet
  else
    expect 2 "SLURM $spec" env SLURM_ARRAY_TASK_ID="$1" SLURM_ARRAY_TASK_COUNT="$2" \
      SLURM_ARRAY_TASK_MIN="$3" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.npy" --quiet
  fi
  grep -q "do not name a shard" "$T/err" || fail "SLURM $spec: $(cat "$T/err")"
  [ ! -e "$T/y.npy" ] || fail "SLURM $spec wrote y.npy"
done
# in range: a shard, as with --shard 1/2
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2 "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/s.npy" --shard 1/2 --quiet
cmp -s "$T/y.npy" "$T/s.npy" || fail "SLURM 1 of 2 differs from --shard 1/2"
echo "ok: out-of-range SLURM values refused (exit 2), in range a shard"

echo "== a file name of 5000 bytes: one line that says what is wrong"
long=$(head -c 5000 /dev/zero | tr '\000' a)
for cmd in "run-out" "run-in" "info" "bench"; do
  case $cmd in
    run-out) expect 1 "$cmd" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/$long.npy" --quiet ;;
    run-in) expect 1 "$cmd" "$MHA" run "$T/m.onnx" "$T/$long.npy" -o "$T/y2.npy" --quiet ;;
    info) expect 1 "$cmd" "$MHA" info "$T/$long.onnx" ;;
    bench) expect 1 "$cmd" "$MHA" bench "$T/$long.onnx" --shape 1,4 --quiet ;;
  esac
  grep -q "File name too long" "$T/err" || fail "$cmd: the reason is lost: $(head -c 300 "$T/err")...$(tail -c 300 "$T/err")"
  [ "$(wc -c <"$T/err")" -le 2100 ] || fail "$cmd: a line of $(wc -c <"$T/err") bytes"
  grep -q "aaaa\.npy\|aaaa\.onnx" "$T/err" || fail "$cmd: the file is not named"
done
echo "ok: long names end in the reason"

echo "== mha bench of a model that does not load names it once"
printf 'garbage' >"$T/g.onnx"
expect 1 "bench garbage" "$MHA" bench "$T/g.onnx" --shape 1,4 --quiet
[ "$(grep -o "g\.onnx" "$T/err" | wc -l)" -eq 1 ] || fail "bench names the model twice: $(cat "$T/err")"
expect 1 "bench /dev/zero" "$MHA" bench /dev/zero --shape 1,4 --quiet
[ "$(grep -o "/dev/zero" "$T/err" | wc -l)" -eq 1 ] || fail "bench names /dev/zero twice: $(cat "$T/err")"
echo "ok: bench"
