#!/bin/sh
# cli_round4.sh -- small defects of the `mha` command found by the fourth
# adversarial round, each as the rule for bad input has it: a non-zero
# exit, one stderr line naming the file or option and the problem, nothing
# on stdout and no output file.
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"

echo "== mha gen --max-pos under the plan's probe lengths"
# 3 and 4 positions wrote a model whose plan tied the sequence to the
# batch: 'mha run' of 2 rows of 3 tokens said "axis 1 ('seq') is 3, but
# the model takes 2 there"; 2 positions did not load at all
for k in decoder encoder; do
  for p in 2 3 4; do
    one_line 2 "max-pos $p: a whole model needs at least 5 positions" \
      "$MHA" gen --model $k -d 16 -H 2 --max-pos $p -o "$T/p$p.onnx"
    [ ! -e "$T/p$p.onnx" ] || fail "gen --max-pos $p wrote a model"
  done
done
# 5 positions: any batch and length up to 5 run
"$MHA" gen --model decoder -d 16 -H 2 --max-pos 5 -o "$T/p5.onnx" --data "$T/x23.npy" \
  --batch 2 --seq 3 >/dev/null
"$MHA" gen --model decoder -d 16 -H 2 --max-pos 5 -o "$T/p5b.onnx" --data "$T/x35.npy" \
  --batch 3 --seq 5 >/dev/null
expect 0 "run 2x3 on 5 positions" "$MHA" run "$T/p5.onnx" "$T/x23.npy" -o "$T/y23.npy"
expect 0 "run 3x5 on 5 positions" "$MHA" run "$T/p5.onnx" "$T/x35.npy" -o "$T/y35.npy"
echo "ok: 5 positions run 2x3 and 3x5"

echo "== mha bench --backend naming no usable backend"
# was an ERROR row inside the table (and the JSON written), exit 1 only
# after timing the other backends
one_line 1 "backend nosuch: no such backend usable here; usable here: scalar" \
  "$MHA" bench "$T/p5.onnx" --shape 1,4 --backend nosuch,scalar --threads 1 --warmup 0 \
  --min-time 0.01 --json "$T/b.json"
[ ! -e "$T/b.json" ] || fail "bench --backend nosuch wrote its JSON"
one_line 1 "backend nosuch: no such backend" \
  "$MHA" bench "$T/p5.onnx" --shape 1,4 --backend nosuch --threads 1 -q

echo "cli_round4.sh: ok"
