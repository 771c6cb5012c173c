#!/bin/sh
# serve_models.sh -- `mha serve` on a whole model (the MiniLM-shaped export
# of tests/data/models: input_ids, attention_mask, token_type_ids in;
# last_hidden_state, pooler_output out) on loopback: token ids as .npy and
# as JSON, each output equal to what `mha run` gives for the sequence alone
# (mask of ones, segment ids zero), requests of different lengths batched,
# int32 / int8 ids widened as mha run widens them, clear 400s for bodies a
# token model cannot take (an id of 2^63 among them); a sequence-first
# model's request one sequence.
# Exit 77 (skipped) when `mha serve` was built without libmicrohttpd or curl
# is missing. Env: MHA, MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
# fail, serve_start, SRV, U, C
. "$(dirname "$0")/lib/serve_start.sh"
rm -rf "$T" && mkdir -p "$T"
M="$MHA_TEST_DATA/models/minilm_postln_l3_d48_h6/model.onnx"

# ids_N.npy ([1, N] int64), ones_N.npy, zeros_N.npy and ids_N.json for N
# tokens; then mha run gives the references hid_N.npy, pool_N.npy
python3 - "$T" 3 11 29 <<'PY'
import struct, sys
d = sys.argv[1]
def npy(path, vals, descr="<i8", code="q"):
    head = "{'descr': '%s', 'fortran_order': False, 'shape': (1, %d), }" % (descr, len(vals))
    head += " " * (63 - (10 + len(head)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
        f.write(struct.pack("<%d%s" % (len(vals), code), *vals))
for n in map(int, sys.argv[2:]):
    ids = [(7 * j + 3 * n) % 100 for j in range(n)]
    npy("%s/ids_%d.npy" % (d, n), ids)
    npy("%s/ids32_%d.npy" % (d, n), ids, "<i4", "i")  # what mha run widens
    npy("%s/ids8_%d.npy" % (d, n), ids, "|i1", "b")
    npy("%s/ones_%d.npy" % (d, n), [1] * n)
    npy("%s/zeros_%d.npy" % (d, n), [0] * n)
    open("%s/ids_%d.json" % (d, n), "w").write(str(ids))
PY
for n in 3 11 29; do
  "$MHA" run -q "$M" "input_ids=$T/ids_$n.npy" "attention_mask=$T/ones_$n.npy" \
    "token_type_ids=$T/zeros_$n.npy" -o "$T/hid_$n.npy" "$T/pool_$n.npy" ||
    fail "mha run on $n tokens"
done

# --max-padding 1: one padded run whatever the lengths (the padding is what
# this test checks)
serve_start "$M" --max-batch 3 --max-delay-ms 4000 --hold-when-idle --max-batch-ms off --dispatchers 1 --max-padding 1
post() { # post BODYFILE OUTFILE CONTENT-TYPE [QUERY] -> prints the status code
  $C -o "$2" -w '%{http_code}' -H "Content-Type: $3" --data-binary @"$1" "$U/run${4:-}"
}

# three lengths at once: one batch (it closes when the third arrives, or
# after 4 s), each answer its own
for n in 3 11 29; do
  (post "$T/ids_$n.npy" "$T/got_hid_$n.npy" application/x-npy >"$T/code_$n") &
done
wait_for() { # wait_for FILE...: each holds a status code
  i=0
  while [ "$(cat "$@" 2>/dev/null | wc -c)" -lt $((3 * $#)) ]; do
    i=$((i + 1)); [ $i -le 300 ] || fail "requests unanswered after 30 s"
    sleep 0.1
  done
}
wait_for "$T/code_3" "$T/code_11" "$T/code_29"
for n in 3 11 29; do
  [ "$(cat "$T/code_$n")" = 200 ] || fail "POST $n ids: $(cat "$T/code_$n") $(cat "$T/got_hid_$n.npy")"
  cmp -s "$T/got_hid_$n.npy" "$T/hid_$n.npy" || fail "$n ids: last_hidden_state differs from mha run"
done
$C "$U/metrics" | grep -qxF 'mha_request_batch_size_bucket{le="2"} 0' ||
  fail "the three requests did not meet in one batch: $($C "$U/metrics" | grep batch_size)"
set +e
"$MHA" serve "$M" --max-padding 1.5 >/dev/null 2>&1
rc=$?
set -e
[ $rc = 2 ] || fail "--max-padding 1.5: wanted exit 2, got $rc"
echo "ok: token ids as .npy, batched, each as mha run gives it alone"

# The server above holds a lone request 4 s for company (the batch checked
# above); each lone request below would wait that long (20 of the script's
# 21 s). They go to the same server without the hold, which runs a lone
# request at once (a lone request held to its delay is serve.sh's).
kill -TERM $SRV
serve_wait_exit
serve_start "$M" --max-batch 3 --dispatchers 1 --max-padding 1

code=$(post "$T/ids_11.npy" "$T/got_pool.npy" application/x-npy "?output=pooler_output")
[ "$code" = 200 ] || fail "?output=pooler_output: $code"
cmp -s "$T/got_pool.npy" "$T/pool_11.npy" || fail "pooler_output differs from mha run"
echo "ok: ?output= picks the output"

# int32 and int8 ids, as mha run takes them: widened, the same answer
for w in 32 8; do
  code=$(post "$T/ids${w}_11.npy" "$T/got_w.npy" application/x-npy)
  [ "$code" = 200 ] || fail "int$w ids: $code $(cat "$T/got_w.npy")"
  cmp -s "$T/got_w.npy" "$T/hid_11.npy" || fail "int$w ids: last_hidden_state differs from mha run"
done
echo "ok: int32 and int8 token ids widened"

# JSON: [id, ...] in, {"last_hidden_state": [[...]], "pooler_output": [...]} out
code=$(post "$T/ids_11.json" "$T/got.json" application/json)
[ "$code" = 200 ] || fail "JSON ids: $code $(cat "$T/got.json")"
python3 - "$T/got.json" "$T/hid_11.npy" "$T/pool_11.npy" <<'PY' || fail "the JSON answer differs"
import json, struct, sys
y = json.load(open(sys.argv[1]))
def load(path):
    b = open(path, "rb").read()
    hl = struct.unpack("<H", b[8:10])[0]
    return list(struct.unpack("<%df" % ((len(b) - 10 - hl) // 4), b[10 + hl:]))
f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]
hid = [f32(x) for row in y["last_hidden_state"] for x in row]
pool = [f32(x) for x in y["pooler_output"]]
ok = sorted(y) == ["last_hidden_state", "pooler_output"] and len(y["last_hidden_state"]) == 11
sys.exit(0 if ok and hid == load(sys.argv[2]) and pool == load(sys.argv[3]) else 1)
PY
echo "ok: JSON token ids, every output by name"

printf '[1, 2.5]' >"$T/frac.json"
[ "$(post "$T/frac.json" "$T/r" application/json)" = 400 ] || fail "a fractional id: wanted 400"
grep -q "not an integer token id" "$T/r" || fail "400 without the reason: $(cat "$T/r")"
"$MHA" gen -d 48 -H 6 -o "$T/layer.onnx" --data "$T/x.npy" --batch 1 --seq 3 >/dev/null
[ "$(post "$T/x.npy" "$T/r" application/x-npy)" = 400 ] || fail "float32 for token ids: wanted 400"
grep -q "must be int64" "$T/r" || fail "400 without the reason: $(cat "$T/r")"
[ "$(post "$T/ids_3.npy" "$T/r" application/x-npy "?output=nope")" = 400 ] ||
  fail "an unknown output: wanted 400"
printf '[1, 99999999]' >"$T/oov.json"
[ "$(post "$T/oov.json" "$T/r" application/json)" = 400 ] || fail "an id outside the vocabulary: wanted 400"
grep -q "token id 99999999 is outside the vocabulary" "$T/r" || fail "400 without the reason: $(cat "$T/r")"
printf '[1, 9223372036854775808]' >"$T/big.json"
[ "$(post "$T/big.json" "$T/r" application/json)" = 400 ] || fail "an id of 2^63: wanted 400"
grep -q "token id outside the int64 range" "$T/r" || fail "2^63: 400 without the reason: $(cat "$T/r")"
echo "ok: 400 for bad token-id bodies"

kill -TERM $SRV
serve_wait_exit
echo "ok: SIGTERM"

# a sequence-first model (PyTorch's tutorial language model, src [S, B]):
# a request of 7 ids is one sequence of 7, what mha run gives on [7, 1]
TL="$MHA_TEST_DATA/models/z_tutorial_lm_op17/model.onnx"
python3 - "$T" <<'PY'
import struct, sys
ids = [(5 * j + 2) % 64 for j in range(7)]
head = "{'descr': '<i8', 'fortran_order': False, 'shape': (7, 1), }"
head += " " * (63 - (10 + len(head)) % 64) + "\n"
open(sys.argv[1] + "/tl_ids.npy", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) +
                                              head.encode() + struct.pack("<7q", *ids))
open(sys.argv[1] + "/tl_ids.json", "w").write(str(ids))
PY
"$MHA" run -q "$TL" "$T/tl_ids.npy" -o "$T/tl_ref.npy" || fail "mha run on the tutorial model"
serve_start "$TL" --max-batch 2 --dispatchers 1
code=$(post "$T/tl_ids.json" "$T/tl_got.json" application/json)
[ "$code" = 200 ] || fail "tutorial model, JSON ids: $code $(cat "$T/tl_got.json")"
python3 - "$T/tl_got.json" "$T/tl_ref.npy" <<'PY' || fail "tutorial model: the answer is not one sequence of 7"
import json, struct, sys
y = json.load(open(sys.argv[1]))  # one output: the array itself
y = y["output"] if isinstance(y, dict) else y
b = open(sys.argv[2], "rb").read()
hl = struct.unpack("<H", b[8:10])[0]
ref = struct.unpack("<%df" % ((len(b) - 10 - hl) // 4), b[10 + hl:])
f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]
got = [f32(x) for row in y for x in row]
sys.exit(0 if len(y) == 7 and got == list(ref) else 1)
PY
kill -TERM $SRV
serve_wait_exit
echo "ok: a sequence-first model serves a request as one sequence"

# serve-cpu on a whole model: requests of token ids, the floor (mha_run of
# the padded batch with its masks) beside the queue's modes
CPU="$(dirname "$MHA")/serve-cpu"
"$CPU" "$M" --lengths 11,11,3 --reps 2 --rounds 1 >"$T/cpu.txt" || fail "serve-cpu: $(cat "$T/cpu.txt")"
grep -q "alone *: [0-9.]* CPU ms per request (1.00 requests a run)" "$T/cpu.txt" &&
  grep -q "one-run *: [0-9.]* CPU ms per request (3.00 requests a run)" "$T/cpu.txt" &&
  grep -q "by-length: [0-9.]* CPU ms per request (1.50 requests a run)" "$T/cpu.txt" &&
  grep -q "mha_run  : [0-9.]* CPU ms per request (3.00 requests a run)" "$T/cpu.txt" ||
  fail "serve-cpu on a whole model: $(cat "$T/cpu.txt")"
echo "ok: serve-cpu on a whole model"
