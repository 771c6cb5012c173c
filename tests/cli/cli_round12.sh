#!/bin/sh
# cli_round12.sh -- defects found by the twelfth adversarial round (whole
# models and the command), each as the rule for bad input has it: a
# non-zero exit, one stderr line naming the file or option and the
# problem, nothing lost. Round 11's three leftovers first: a shard's
# dataset hash, a broken plugin in a --plugin-path folder, --batch-size /
# --checkpoint-every on a run that goes in one piece.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
M="$MHA_TEST_DATA/models"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
# one plugin opened (and probed in a child) per command, not every one
MHA_BACKEND=scalar
export MHA_BACKEND
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

echo "== shards of a dataset changed in a middle row between their runs"
# the run note's data hash read each input's first and last rows: a row
# between them changed after shard 0 ran, shard 1 ran on the new bytes,
# and the two merged into rows of two datasets. Every row is hashed now
"$MHA" gen -d 16 -H 2 -o "$T/l.onnx" --data "$T/x.npy" --batch 6 --seq 3 >/dev/null
"$MHA" run -q "$T/l.onnx" "$T/x.npy" -o "$T/s0.npy" --shard 0/2
# row 4 of [6, 3, 16] float32 (a 128-byte header): neither first nor last
printf '\001\002\003\004' | dd of="$T/x.npy" bs=1 seek=$((128 + 4 * 3 * 16 * 4)) conv=notrunc 2>/dev/null
"$MHA" run -q "$T/l.onnx" "$T/x.npy" -o "$T/s1.npy" --shard 1/2
one_line 1 "^mha: $T/s1.npy: a shard of another run: its dataset is [0-9a-f]*, $T/s0.npy's is " \
  "$MHA" merge "$T/y.npy" "$T/s0.npy" "$T/s1.npy"
[ ! -e "$T/y.npy" ] || fail "a refused merge wrote its output"
# shard 0 run again on the dataset as it is now: the two merge into the
# rows of one run
rm "$T/s0.npy" && "$MHA" run -q "$T/l.onnx" "$T/x.npy" -o "$T/s0.npy" --shard 0/2
"$MHA" merge "$T/y.npy" "$T/s0.npy" "$T/s1.npy" >"$T/out" 2>&1 || fail "merge: $(cat "$T/out")"
"$MHA" run -q "$T/l.onnx" "$T/x.npy" -o "$T/one.npy"
cmp "$T/y.npy" "$T/one.npy" || fail "merged shards of one dataset differ from one run"

echo "== mha bench --plugin-path FOLDER holding a file that is no plugin"
# the file was left out in silence and the others timed; now one line
# says so (the others are still timed: a folder may hold plugins for
# other CPUs, which are left out as auto leaves them)
mkdir -p "$T/pl"
: >"$T/pl/mha-plugin-broken.so"
"$MHA" bench "$T/l.onnx" --shape 1,2 --plugin-path "$T/pl" --backend scalar --warmup 0 \
  --min-time 0 --threads 1 >"$T/out" 2>"$T/err" || fail "bench: exit $?: $(cat "$T/err")"
# (a noisy timing may add its warning: the line is looked for alone)
grep -q "^mha bench: --plugin-path $T/pl: 1 file there loads as no plugin, left out (dlopen failed: $T/pl/mha-plugin-broken.so: .*); timing the others$" "$T/err" ||
  fail "bench --plugin-path FOLDER: $(cat "$T/err")"
grep -q '^scalar ' "$T/out" || fail "bench --plugin-path FOLDER timed nothing: $(cat "$T/out")"
echo "ok: $(grep -- --plugin-path "$T/err")"

echo "== --batch-size / --checkpoint-every on a run that goes in one piece"
# a sequence-first model (token ids [S, B]) written to standard output
# runs in one piece: the chunk size and the checkpoint period were
# dropped in silence (exit 0)
TL="$M/z_tutorial_lm_op17/model.onnx"
"$PY" - "$T/tl_ids.npy" <<'PY'
import struct, sys
head = "{'descr': '<i8', 'fortran_order': False, 'shape': (4, 3), }"
head += " " * (63 - (10 + len(head)) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
    f.write(struct.pack("<12q", *[(7 * j) % 60 for j in range(12)]))
PY
one_line 1 "^mha: $TL: --checkpoint-every: the model's batch is axis 1 of its token ids and output '-' is written directly, so the run goes in one piece (leave the option out)$" \
  "$MHA" run -q "$TL" "$T/tl_ids.npy" -o - --checkpoint-every 1
one_line 1 "^mha: $TL: --batch-size: the model's batch is axis 1 " \
  "$MHA" run -q "$TL" "$T/tl_ids.npy" -o - --batch-size 2
# a run by rows whose output is a stream keeps no checkpoint either
one_line 2 "^mha run: --checkpoint-every: output '-' is written directly (standard output, a FIFO or a device) and keeps no checkpoint" \
  "$MHA" run -q "$T/l.onnx" "$T/x.npy" -o - --checkpoint-every 1
# without the options both still run
"$MHA" run -q "$TL" "$T/tl_ids.npy" -o - >/dev/null || fail "the sequence-first run to stdout"

# the declarations edited with the standard library alone (no onnx package)
EDIT="$(dirname "$0")/lib/onnx_edit.py"

echo "== a whole model declaring an output twice"
# exit 0: both written; mha serve answered {"logits": ..., "logits": ...}
# (a JSON object with a key twice); inputs declared twice were refused
"$MHA" gen --model decoder -L 1 -d 16 -H 2 --vocab 20 --max-pos 8 -o "$T/d.onnx" \
  --data "$T/d_ids.npy" --batch 2 --seq 4 >/dev/null
cp "$T/d.onnx" "$T/dup.onnx" && "$PY" "$EDIT" "$T/dup.onnx" output-twice 0
one_line 1 "^mha: $T/dup.onnx: graph output 'last_hidden_state' is declared twice$" \
  "$MHA" run -q "$T/dup.onnx" "$T/d_ids.npy" -o "$T/dup_y.npy"
[ ! -e "$T/dup_y.npy" ] || fail "a refused model wrote an output"

echo "== a whole model whose output declares another element type than it computes"
# exit 0: float32 written where the model says int64 (ONNX Runtime
# refuses such a model: "Type Error")
cp "$T/d.onnx" "$T/i64.onnx" && "$PY" "$EDIT" "$T/i64.onnx" output-type 0 7
one_line 1 "^mha: $T/i64.onnx: graph output 'last_hidden_state' is declared int64, but the graph computes float32 there$" \
  "$MHA" run -q "$T/i64.onnx" "$T/d_ids.npy" -o "$T/i64_y.npy"
[ ! -e "$T/i64_y.npy" ] || fail "a refused model wrote an output"
# the model as written still runs
"$MHA" run -q "$T/d.onnx" "$T/d_ids.npy" -o "$T/d_y.npy" "$T/d_l.npy"

echo "cli_round12.sh: all passed"
