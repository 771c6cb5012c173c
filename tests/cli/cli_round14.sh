#!/bin/sh
# cli_round14.sh -- the fourteenth adversarial round: each defect found,
# as the rule for bad input has it -- a non-zero exit, one stderr line
# naming the file and the problem, nothing lost -- or, where the input is
# good, a run. Round 13's three leftovers first: a shard file changed after
# it was written, `mha bench` of a vocabulary under 64, `mha check` of
# int64 .pb ids for an int32 model.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP" LIB="$(dirname "$0")/lib"
rm -rf "$T" && mkdir -p "$T"
# shellcheck source=lib/refusal.sh
. "$LIB/refusal.sh" # fail, expect, one_line
export MHA_BACKEND=scalar # one plugin per command (probed in a child), not all
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
EDIT="$LIB/onnx_edit.py" HOOKS="${MHA_TESTHOOKS:-$(dirname "$MHA")/mha-testhooks}"
# shard_edit FILE OP: a shard file's rows or its header's run note edited
# in place, the header keeping its length -- flip (a byte of the first
# row), strip (no rows-hash field: an earlier mha's shard), zero (the
# placeholder of a run that did not finish), hex (not 16 hex digits)
shard_edit() {
  "$PY" - "$@" <<'PY'
import re, struct, sys
path, op = sys.argv[1], sys.argv[2]
b = bytearray(open(path, "rb").read())
n = 10 + struct.unpack("<H", b[8:10])[0]
if op == "flip":
    b[n + 3] ^= 0x40
else:
    m = re.search(rb"; rows-hash ([0-9a-f]{16})", bytes(b[:n]))
    new = {"strip": b" " * len(m.group(0)), "zero": b"; rows-hash " + b"0" * 16,
           "hex": b"; rows-hash " + b"z" * 16}[op]
    b[m.start():m.end()] = new
open(path, "wb").write(b)
PY
}

"$MHA" gen --model decoder -L 1 -d 16 -H 2 --vocab 20 --max-pos 8 -o "$T/d.onnx" \
  --data "$T/ids.npy" --batch 5 --seq 4 >/dev/null
"$MHA" run -q "$T/d.onnx" "$T/ids.npy" -o "$T/h.npy" "$T/y.npy"

echo "== a shard file changed after it was written"
# merged in silence: its header named its run but held nothing of its
# rows. Its run note ends in their hash now ('rows-hash', put there once
# every row is written), which mha merge checks as it copies them
for i in 0 1; do
  "$MHA" run -q "$T/d.onnx" "$T/ids.npy" -o "$T/s${i}h.npy" "$T/s${i}y.npy" --shard $i/2
done
grep -a -q "; output 1; rows-hash [0-9a-f]\{16\} *\$" "$T/s1y.npy" || fail "no rows-hash: $(head -c 300 "$T/s1y.npy")"
"$MHA" merge -q "$T/m.npy" "$T/s0y.npy" "$T/s1y.npy"
cmp "$T/m.npy" "$T/y.npy" || fail "merged shards differ from one run"
cp "$T/s1y.npy" "$T/s1y.saved"
shard_edit "$T/s1y.npy" flip
one_line 1 "^mha: $T/s1y.npy: rows 2:5 are not the rows its run wrote (they hash to [0-9a-f]\{16\}, its header says [0-9a-f]\{16\}): the file changed after it was written$" \
  "$MHA" merge -q "$T/bad.npy" "$T/s0y.npy" "$T/s1y.npy"
[ ! -e "$T/bad.npy" ] || fail "a refused merge wrote its output"
# the hash itself edited, not hex, or the placeholder of an unfinished run
cp "$T/s1y.saved" "$T/s1y.npy" && shard_edit "$T/s1y.npy" zero
one_line 1 "^mha: $T/s1y.npy: the partial file of a shard run that did not finish (its header holds no hash of its rows yet)$" \
  "$MHA" merge -q "$T/bad.npy" "$T/s0y.npy" "$T/s1y.npy"
cp "$T/s1y.saved" "$T/s1y.npy" && shard_edit "$T/s1y.npy" hex
one_line 1 "^mha: $T/s1y.npy: malformed shard header (its 'rows-hash' is not 16 hex digits)$" \
  "$MHA" merge -q "$T/bad.npy" "$T/s0y.npy" "$T/s1y.npy"
# shards of an earlier mha (no hash) merge as before
cp "$T/s1y.saved" "$T/s1y.npy"
shard_edit "$T/s0y.npy" strip && shard_edit "$T/s1y.npy" strip
"$MHA" merge -q "$T/m.npy" "$T/s0y.npy" "$T/s1y.npy"
cmp "$T/m.npy" "$T/y.npy" || fail "shards without a hash merged differ"
# a sequence-first model's shards (rows along axis 1) likewise
TL="$MHA_TEST_DATA/models/z_tutorial_lm_op17/model.onnx"
"$PY" -c "import struct, sys
h = \"{'descr': '<i8', 'fortran_order': False, 'shape': (4, 3), }\"
h += ' ' * (63 - (10 + len(h)) % 64) + '\n'
v = [0, 7, 14, 21, 28, 35, 42, 49, 56, 3, 10, 17]
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + struct.pack('<12q', *v))" "$T/tl.npy"
"$MHA" run -q "$TL" "$T/tl.npy" -o "$T/tl_y.npy"
for i in 0 1; do "$MHA" run -q "$TL" "$T/tl.npy" -o "$T/tl$i.npy" --shard $i/2; done
"$MHA" merge -q "$T/tlm.npy" "$T/tl0.npy" "$T/tl1.npy"
cmp "$T/tlm.npy" "$T/tl_y.npy" || fail "sequence-first shards merged differ"
shard_edit "$T/tl1.npy" flip
one_line 1 "^mha: $T/tl1.npy: rows 1:3 are not the rows its run wrote" \
  "$MHA" merge -q "$T/bad.npy" "$T/tl0.npy" "$T/tl1.npy"
# a shard killed and resumed is sealed as one run's; a stale checkpoint
# after it finished says so (the hash in its header is not the
# placeholder the run starts with)
"$MHA" gen -d 16 -H 2 -o "$T/c.onnx" --data "$T/cx.npy" --batch 16 --seq 3 >/dev/null
"$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/cref.npy"
"$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/k0.npy" --shard 0/2
MHA_TEST_DATASET_CRASH_ROWS=4 "$HOOKS" run "$T/c.onnx" "$T/cx.npy" -o "$T/k1.npy" --shard 1/2 \
  --batch-size 2 --checkpoint-every 0 --quiet 2>/dev/null && fail "the crash hook did not kill the run"
cp "$T/k1.npy.ckpt" "$T/k1.ckpt.saved"
expect 0 "resumed shard" "$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/k1.npy" --shard 1/2 --resume
"$MHA" merge -q "$T/km.npy" "$T/k0.npy" "$T/k1.npy"
cmp "$T/km.npy" "$T/cref.npy" || fail "a resumed shard merged differs"
cp "$T/k1.ckpt.saved" "$T/k1.npy.ckpt"
expect 0 "stale checkpoint of a finished shard" "$MHA" run "$T/c.onnx" "$T/cx.npy" -o "$T/k1.npy" --shard 1/2 --resume
grep -q "already complete" "$T/err" || fail "stale checkpoint of a finished shard: $(cat "$T/err")"
echo "ok: changed, unfinished and malformed shards refused; shards along axis 1 and resumed ones merge"

echo "== mha bench of a model whose vocabulary is under 64"
# refused, "token id 32 is outside the vocabulary of 20", for ids bench
# drew itself below 64: it draws below the table the ids index now
expect 0 "bench, vocabulary 20" "$MHA" bench "$T/d.onnx" --shape 1,4 --backend scalar --threads 1 \
  --warmup 0 --min-time 0 -q
echo "ok: bench of a vocabulary of 20 runs"

echo "== mha check of int64 .pb ids for a model declaring int32 ids"
# the case failed ("holds int64 data but int32 is needed") where mha run
# narrows the same file: narrowed as mha run does, every value checked
mkdir -p "$T/c32/test_data_set_0"
cp "$T/d.onnx" "$T/c32/model.onnx" && "$PY" "$EDIT" "$T/c32/model.onnx" input-type 0 6
"$MHA" gen --model decoder -L 1 -d 16 -H 2 --vocab 20 --max-pos 8 -o "$T/d2.onnx" \
  --data "$T/c32/test_data_set_0/input_0.pb" --batch 2 --seq 4 >/dev/null
"$MHA" run -q "$T/d.onnx" "$T/c32/test_data_set_0/input_0.pb" \
  -o "$T/c32/test_data_set_0/output_0.pb" "$T/c32/test_data_set_0/output_1.pb"
expect 0 "check, int64 ids for int32" "$MHA" check "$T/c32"
# the last id past int32: the case fails naming the element
printf '\000\000\000\200\000\000\000\000' | dd of="$T/c32/test_data_set_0/input_0.pb" bs=1 \
  seek=$(($(wc -c <"$T/c32/test_data_set_0/input_0.pb") - 8)) conv=notrunc 2>/dev/null
if "$MHA" check "$T/c32" >"$T/out" 2>&1; then fail "check of an id past int32 passed"; fi
grep -q "^FAIL c32: test_data_set_0: $T/c32/test_data_set_0/input_0.pb: element 7 holds 2147483648, past the int32 that input 'input_ids' takes" "$T/out" ||
  fail "check of an id past int32: $(cat "$T/out")"
echo "ok: $(head -1 "$T/out")"

echo "== writes past the file size limit (ulimit -f)"
# SIGXFSZ ended mha in silence (exit 153), its partial files left behind:
# the write fails with EFBIG now, reported as any failed write
"$MHA" gen --model decoder -L 1 -d 16 -H 2 --vocab 20 --max-pos 32 -o "$T/f.onnx" \
  --data "$T/fids.npy" --batch 32 --seq 32 >/dev/null
for bs in 32 8; do # in one piece and by chunks
  # shellcheck disable=SC3045
  (ulimit -f 40 && one_line 1 "^mha: $T/f[hy].npy: write failed: File too large$" \
    "$MHA" run -q "$T/f.onnx" "$T/fids.npy" -o "$T/fh.npy" "$T/fy.npy" --batch-size $bs)
  left=$(cd "$T" && ls | grep '^f[hy]\.npy' | grep -v '\.lock$' || :)
  [ -z "$left" ] || fail "a write past the limit left: $left"
done
echo "ok: past the file size limit, one line and nothing left"

echo "== a dataset cut short while mha run reads it"
# its mapping faults (SIGBUS) where the pages are gone: the process ended
# in silence (exit 135), its partial file left; and a pool worker, which
# blocked every signal, died past any handler. One line now, the partial
# file removed (no checkpoint to resume from). 8 chunks of 500 ms each: the
# file is cut while 3.5 s of them are left, however late the poll sees it
"$MHA" gen -d 16 -H 2 -o "$T/b.onnx" --data "$T/bx.npy" --batch 2048 --seq 8 >/dev/null
MHA_TEST_DATASET_DELAY_MS=500 "$HOOKS" run -q "$T/b.onnx" "$T/bx.npy" -o "$T/by.npy" \
  --batch-size 256 --threads 2 >"$T/out" 2>"$T/err" &
pid=$!
n=0
until ls "$T"/by.npy.partial.* >/dev/null 2>&1; do
  n=$((n + 1))
  [ $n -lt 1200 ] || fail "the run wrote no partial file: $(cat "$T/err")"
  sleep 0.05
done
truncate -s 1024 "$T/bx.npy"
if wait $pid; then rc=0; else rc=$?; fi
[ $rc -eq 1 ] && [ "$(cat "$T/err")" = "mha: $T/bx.npy: the file became shorter while being read (changed during the run)" ] ||
  fail "a dataset cut short: exit $rc: $(cat "$T/err")"
left=$(cd "$T" && ls | grep '^by\.npy' | grep -v '\.lock$' || :)
[ -z "$left" ] || fail "a dataset cut short left: $left"
echo "ok: $(cat "$T/err")"

echo "== mha bench --plot named as another format"
# --plot chart.png wrote SVG text into chart.png
one_line 2 "^mha bench: --plot writes an SVG chart, not '$T/r.png' (.png is a PNG image)" \
  "$MHA" bench "$T/d.onnx" --shape 1,4 --plot "$T/r.png"
one_line 2 "^mha bench: --json writes a JSON report, not '$T/r.csv' (.csv is CSV)" \
  "$MHA" bench "$T/d.onnx" --shape 1,4 --json "$T/r.csv"
[ ! -e "$T/r.png" ] && [ ! -e "$T/r.csv" ] || fail "a refused bench wrote its report"

echo "cli_round14.sh: all passed"
