#!/bin/sh
# cli_round13.sh -- the thirteenth adversarial round (whole models, the
# command and the server): each defect found, as the rule for bad input
# has it -- a non-zero exit, one stderr line naming the file or option and
# the problem, nothing lost -- or, for a model ONNX Runtime runs, a run.
# Round 12's three leftovers first: a declared output shape the graph
# contradicts, int64 ids for a model declaring int32, a 3 GiB declared
# tensor.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
# one plugin opened (and probed in a child) per command, not every one
MHA_BACKEND=scalar
export MHA_BACKEND
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
# declarations edited with the standard library alone (no onnx package)
EDIT="$(dirname "$0")/lib/onnx_edit.py"
# npy FILE DESCR SHAPE VALUES...: a .npy written byte by byte (struct
# format letter from the descr's last two characters)
npy() {
  "$PY" - "$@" <<'PY'
import struct, sys
path, descr, shape = sys.argv[1], sys.argv[2], sys.argv[3]
vals = [int(v) for v in sys.argv[4:]]
head = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
head += " " * (63 - (10 + len(head)) % 64) + "\n"
fmt = {"i8": "q", "i4": "i", "u4": "I", "u8": "Q"}[descr[1:]]
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
    f.write(struct.pack("<%d%s" % (len(vals), fmt), *vals))
PY
}
# shape_of FILE: the shape in a .npy header, as "(2, 4, 20)"
shape_of() { head -c 128 "$1" | LC_ALL=C tr -d '\000' | LC_ALL=C sed -n "s/.*'shape': \(([0-9, ]*)\).*/\1/p"; }

"$MHA" gen --model decoder -L 1 -d 16 -H 2 --vocab 20 --max-pos 8 -o "$T/d.onnx" \
  --data "$T/ids.npy" --batch 2 --seq 4 >/dev/null
"$MHA" run -q "$T/d.onnx" "$T/ids.npy" -o "$T/d_h.npy" "$T/d_y.npy"

echo "== a graph output whose declared shape the graph contradicts"
# exit 0 in silence. ONNX Runtime warns ("Error merging shape info for
# output", "Expected shape from model ... does not match actual shape")
# and runs with the computed shape: so does mha now, in one warning line
warned() { # MODEL DECLARED: runs, one warning line, the output as computed
  expect 0 "$1" "$MHA" run -q "$T/$1.onnx" "$T/ids.npy" -o "$T/$1_h.npy" "$T/$1_y.npy"
  [ "$(cat "$T/err")" = "mha: warning: $T/$1.onnx: graph output 'logits' is declared $2, but the graph computes 2x4x20: written as computed" ] ||
    fail "$1: $(cat "$T/err")"
  cmp "$T/$1_y.npy" "$T/d_y.npy" || fail "$1: the output is not the computed one"
  echo "ok: $(cat "$T/err")"
}
cp "$T/d.onnx" "$T/wide.onnx" && "$PY" "$EDIT" "$T/wide.onnx" output-dim 1 2 21
warned wide '?x?x21'
cp "$T/d.onnx" "$T/rank2.onnx" && "$PY" "$EDIT" "$T/rank2.onnx" output-drop-dim 1 2
warned rank2 '?x?'
cp "$T/d.onnx" "$T/batch1.onnx" && "$PY" "$EDIT" "$T/batch1.onnx" output-dim 1 0 1
warned batch1 '1x?x20'
# written in one piece (.pb outputs): the same line
expect 0 "wide to .pb" "$MHA" run -q "$T/wide.onnx" "$T/ids.npy" -o "$T/w_h.pb" "$T/w_y.pb"
grep -q "^mha: warning: $T/wide.onnx: graph output 'logits' is declared ?x?x21, but the graph computes 2x4x20: written as computed$" "$T/err" ||
  fail "wide to .pb: $(cat "$T/err")"
# a declaration that agrees says nothing; a fixed batch the data has too
cp "$T/d.onnx" "$T/batch2.onnx" && "$PY" "$EDIT" "$T/batch2.onnx" output-dim 1 0 2
for m in d batch2; do
  expect 0 "$m" "$MHA" run -q "$T/$m.onnx" "$T/ids.npy" -o "$T/q_h.npy" "$T/q_y.npy"
  [ ! -s "$T/err" ] || fail "$m: $(cat "$T/err")"
done
# a layer (one attention, its declared outputs kept as declared)
"$MHA" gen -d 16 -H 2 -o "$T/l.onnx" --data "$T/x.npy" --batch 2 --seq 3 >/dev/null
cp "$T/l.onnx" "$T/l17.onnx" && "$PY" "$EDIT" "$T/l17.onnx" output-dim 0 2 17
expect 0 "layer 17" "$MHA" run -q "$T/l17.onnx" "$T/x.npy" -o "$T/l17_y.npy"
[ "$(cat "$T/err")" = "mha: warning: $T/l17.onnx: graph output 'output' is declared ?x?x17, but the graph computes 2x3x16: written as computed" ] ||
  fail "layer 17: $(cat "$T/err")"
[ "$(shape_of "$T/l17_y.npy")" = "(2, 3, 16)" ] || fail "layer 17 wrote $(shape_of "$T/l17_y.npy")"

echo "== int64 ids for a model that declares int32 ids, and the reverse"
# refused by dtype ("int64 data cannot be used as input 'input_ids'
# (int32)") though numpy and torch save ids as int64: the values are
# narrowed when they fit, and a row holding one that does not is named
cp "$T/d.onnx" "$T/d32.onnx" && "$PY" "$EDIT" "$T/d32.onnx" input-type 0 6
expect 0 "int64 ids, int32 model" "$MHA" run -q "$T/d32.onnx" "$T/ids.npy" -o "$T/n_h.npy" "$T/n_y.npy"
cmp "$T/n_y.npy" "$T/d_y.npy" || fail "int64 ids narrowed: another output"
# by chunks of one row too, and written in one piece
expect 0 "by rows" "$MHA" run -q "$T/d32.onnx" "$T/ids.npy" -o "$T/n_h.npy" "$T/n_y.npy" --batch-size 1
cmp "$T/n_y.npy" "$T/d_y.npy" || fail "int64 ids narrowed by rows: another output"
# uint32 likewise (4 bytes, but not all of them fit)
npy "$T/u32.npy" '<u4' '(2, 4)' 19 9 14 14 6 4 10 6
npy "$T/i32.npy" '<i4' '(2, 4)' 19 9 14 14 6 4 10 6
expect 0 "uint32 ids" "$MHA" run -q "$T/d32.onnx" "$T/u32.npy" -o "$T/n_h.npy" "$T/n_y.npy"
cmp "$T/n_y.npy" "$T/d_y.npy" || fail "uint32 ids: another output"
# the reverse, int32 ids for an int64 model, widened (as before)
expect 0 "int32 ids, int64 model" "$MHA" run -q "$T/d.onnx" "$T/i32.npy" -o "$T/n_h.npy" "$T/n_y.npy"
cmp "$T/n_y.npy" "$T/d_y.npy" || fail "int32 ids widened: another output"
# values past int32: refused by row, no output left, nothing wrapped
npy "$T/big.npy" '<i8' '(3, 4)' 1 2 3 4 5 6 7 8 9 10 4294967305 12
one_line 1 "^mha: $T/big.npy: row 2 holds 4294967305, past the int32 that input 'input_ids' takes (its int64 values are narrowed when they fit)$" \
  "$MHA" run -q "$T/d32.onnx" "$T/big.npy" -o "$T/b_h.npy" "$T/b_y.npy"
[ ! -e "$T/b_h.npy" ] && [ ! -e "$T/b_y.npy" ] || fail "a refused dataset left an output"
one_line 1 "^mha: $T/big.npy: row 2 holds 4294967305, past the int32 " \
  "$MHA" run -q "$T/d32.onnx" "$T/big.npy" -o "$T/b_h.npy" "$T/b_y.npy" --batch-size 1
npy "$T/neg.npy" '<i8' '(2, 4)' 1 2 3 4 5 6 -2147483649 8
one_line 1 "^mha: $T/neg.npy: row 1 holds -2147483649, past the int32 " \
  "$MHA" run -q "$T/d32.onnx" "$T/neg.npy" -o "$T/b_h.npy" "$T/b_y.npy"
npy "$T/ubig.npy" '<u4' '(2, 4)' 1 2 3 4 5 6 4294967295 8
one_line 1 "^mha: $T/ubig.npy: row 1 holds 4294967295, past the int32 " \
  "$MHA" run -q "$T/d32.onnx" "$T/ubig.npy" -o "$T/b_h.npy" "$T/b_y.npy"
# within int32 but past the vocabulary: the model's own refusal, as int64
npy "$T/v20.npy" '<i8' '(2, 4)' 1 2 3 4 5 6 20 8
one_line 1 "input_ids" "$MHA" run -q "$T/d32.onnx" "$T/v20.npy" -o "$T/b_h.npy" "$T/b_y.npy"
# a sequence-first model (ids [S, B]): read by items of axis 1, the item named
TL="$MHA_TEST_DATA/models/z_tutorial_lm_op17/model.onnx"
cp "$TL" "$T/tl32.onnx" && "$PY" "$EDIT" "$T/tl32.onnx" input-type 0 6
npy "$T/tl.npy" '<i8' '(4, 3)' 0 7 14 21 28 35 42 49 56 3 10 17
"$MHA" run -q "$TL" "$T/tl.npy" -o "$T/tl_y.npy"
expect 0 "sequence-first, int64 ids" "$MHA" run -q "$T/tl32.onnx" "$T/tl.npy" -o "$T/tl32_y.npy" --batch-size 1
cmp "$T/tl32_y.npy" "$T/tl_y.npy" || fail "sequence-first, int64 ids narrowed: another output"
npy "$T/tlbig.npy" '<i8' '(4, 3)' 0 7 14 21 28 35 42 8589934592 56 3 10 17
one_line 1 "^mha: $T/tlbig.npy: row 1 holds 8589934592, past the int32 that input 'src' takes" \
  "$MHA" run -q "$T/tl32.onnx" "$T/tlbig.npy" -o "$T/tl32_y.npy" --batch-size 1
cmp "$T/tl32_y.npy" "$T/tl_y.npy" || fail "a refused run clobbered the output it would have replaced"
# a .pb input (a run in one piece) likewise; int16 still widens
pb() { # FILE ELEM_TYPE STRUCT_LETTER DIMS VALUES...: a TensorProto, raw_data
  "$PY" - "$@" <<'PY'
import struct, sys
path, elem, letter, dims = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
vals = [int(v) for v in sys.argv[5:]]
def enc(n):
    o = bytearray()
    while True:
        c, n = n & 0x7F, n >> 7
        o.append(c | 0x80 if n else c)
        if not n: return bytes(o)
raw = struct.pack("<%d%s" % (len(vals), letter), *vals)
b = b"".join(b"\x08" + enc(int(d)) for d in dims.split(","))
b += b"\x10" + enc(elem) + b"\x42\x09input_ids" + b"\x4a" + enc(len(raw)) + raw
open(path, "wb").write(b)
PY
}
pb "$T/ids64.pb" 7 q 2,4 19 9 14 14 6 4 10 6
pb "$T/ids16.pb" 5 h 2,4 19 9 14 14 6 4 10 6
pb "$T/idsbig.pb" 7 q 2,4 19 9 14 14 6 4 10 2147483648
"$MHA" run -q "$T/d.onnx" "$T/ids64.pb" -o "$T/p_h.pb" "$T/p_y.pb"
for f in ids64 ids16; do
  expect 0 "$f.pb, int32 model" "$MHA" run -q "$T/d32.onnx" "$T/$f.pb" -o "$T/p_h.pb" "$T/p32_y.pb"
  cmp "$T/p32_y.pb" "$T/p_y.pb" || fail "$f.pb for the int32 model: another output"
done
one_line 1 "^mha: $T/idsbig.pb: element 7 holds 2147483648, past the int32 that input 'input_ids' takes" \
  "$MHA" run -q "$T/d32.onnx" "$T/idsbig.pb" -o "$T/p_h.pb" "$T/pb_y.pb"
[ ! -e "$T/pb_y.pb" ] || fail "a refused .pb run left an output"
# uint64 stays refused by its dtype (not read at all)
npy "$T/u64.npy" '<u8' '(2, 4)' 1 2 3 4 5 6 7 8
one_line 1 "^mha: $T/u64.npy: unsupported dtype '<u8' (uint64)" \
  "$MHA" run -q "$T/d32.onnx" "$T/u64.npy" -o "$T/b_h.npy" "$T/b_y.npy"

echo "== a declared 3 GiB tensor in a sparse file, and external data outside the folder"
# within the 4 GiB limit it loads: 3 GiB of memory (3.1 GB of RSS, 31 s
# of CPU reading the sparse file at a load of 18). Where the address space
# is smaller the allocation fails in one line, at once, no output left.
# (ASan reserves terabytes of address space: the limit is for the release
# build alone.)
mkdir -p "$T/big"
cp "$T/d.onnx" "$T/big/m.onnx"
"$PY" "$EDIT" "$T/big/m.onnx" external embeddings.position.weight w.bin 50331648 16
truncate -s 3G "$T/big/w.bin"
if [ "${MHA_TEST_SANITIZED:-0}" = 1 ]; then
  echo "skipped under a sanitizer: the 2 GB address-space limit (ASan's shadow needs more)"
else
  # shellcheck disable=SC3045
  ( ulimit -v 2000000 && one_line 1 "^mha: $T/big/m.onnx: initializer 'embeddings.position.weight': out of memory allocating 3221225472 bytes$" \
    "$MHA" run -q "$T/big/m.onnx" "$T/ids.npy" -o "$T/big_h.npy" "$T/big_y.npy" )
  [ ! -e "$T/big_h.npy" ] || fail "a refused model left an output"
fi
rm -f "$T/big/w.bin"
# a location outside the model's folder, however written: never read
head -c 512 /dev/urandom >"$T/outside.bin"
ln -s ../outside.bin "$T/big/link.bin"
for loc in ../outside.bin "$T/outside.bin" link.bin sub/../../outside.bin; do
  cp "$T/d.onnx" "$T/big/m.onnx"
  "$PY" "$EDIT" "$T/big/m.onnx" external embeddings.position.weight "$loc" 8 16
  one_line 1 "^mha: $T/big/m.onnx: initializer 'embeddings.position.weight': external data.*\(\.\.\|absolute\|outside the model folder\)" \
    "$MHA" run -q "$T/big/m.onnx" "$T/ids.npy" -o "$T/big_h.npy" "$T/big_y.npy"
done

echo "== whole-model datasets of 0 rows and rows of 0 tokens"
# a BERT given 0 rows (ids, mask and token types [0, 5]) failed, "plan:
# Add node '/model/Add': operands not float32 of one shape", where the
# decoder, GPT-2 and the layers write outputs of 0 rows; and rows of 0
# tokens failed so on every whole model with an Add of positions
# (the tutorial LM, with none, wrote [0, B, V]). An empty Add adds nothing
B="$MHA_TEST_DATA/models/f9_bert_ids_mask_types_dyn_op14/model.onnx"
npy "$T/e_ids.npy" '<i8' '(0, 5)'
expect 0 "BERT, 0 rows" "$MHA" run -q "$B" "$T/e_ids.npy" "$T/e_ids.npy" "$T/e_ids.npy" \
  -o "$T/e_h.npy" "$T/e_p.npy"
[ "$(shape_of "$T/e_h.npy") $(shape_of "$T/e_p.npy")" = "(0, 5, 64) (0, 64)" ] ||
  fail "BERT, 0 rows: $(shape_of "$T/e_h.npy") $(shape_of "$T/e_p.npy")"
npy "$T/z_ids.npy" '<i8' '(2, 0)'
expect 0 "decoder, 0 tokens" "$MHA" run -q "$T/d.onnx" "$T/z_ids.npy" -o "$T/z_h.npy" "$T/z_y.npy"
[ "$(shape_of "$T/z_y.npy")" = "(2, 0, 20)" ] || fail "decoder, 0 tokens: $(shape_of "$T/z_y.npy")"
rm -f "$T/z_h.npy" "$T/z_y.npy"
# a BERT's pooler takes token 0 of each row: rows of 0 tokens have none
one_line 1 "^mha: $T/z_ids.npy: input 'input_ids' (shape 2x0): the model cannot run on it: Gather node '/model/Gather_1': index 0 is out of range for axis 1 of extent 0$" \
  "$MHA" run -q "$B" "$T/z_ids.npy" "$T/z_ids.npy" "$T/z_ids.npy" -o "$T/z_h.npy" "$T/z_p.npy"
# masks and lengths that do not fit: refused by value, row and file
npy "$T/m5.npy" '<i8' '(2, 5)' 1 1 1 1 1 1 1 2 1 1
npy "$T/b_ids.npy" '<i8' '(2, 5)' 5 6 7 8 9 10 11 12 13 14
one_line 1 "^mha: $T/m5.npy: input 'attention_mask' \[1, 2\]: mask value 2 is neither 0 nor 1$" \
  "$MHA" run -q "$B" "$T/b_ids.npy" "$T/m5.npy" "$T/b_ids.npy" -o "$T/z_h.npy" "$T/z_p.npy"
npy "$T/len6.npy" '<i8' '(2,)' 5 6
one_line 1 "^mha: $T/len6.npy: row 1 has length 6, outside \[0, 5\]$" \
  "$MHA" run -q "$B" "$T/b_ids.npy" "$T/b_ids.npy" --lengths "$T/len6.npy" -o "$T/z_h.npy" "$T/z_p.npy"
[ ! -e "$T/z_h.npy" ] || fail "a refused run left an output"

echo "== --resume over a partial file whose rows were changed since its checkpoint"
# the checkpoint vouched for the inputs' rows (their hash) but not the
# rows already written: a byte of them changed (by hand, by the disk)
# resumed with exit 0 into an output of two runs. Their hash is in the
# checkpoint now ("out-hash"), checked before anything is written
HOOKS="${MHA_TESTHOOKS:-$(dirname "$MHA")/mha-testhooks}"
"$MHA" gen -d 16 -H 2 -o "$T/c.onnx" --data "$T/cx.npy" --batch 16 --seq 3 >/dev/null
"$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/cref.npy"
MHA_TEST_DATASET_CRASH_ROWS=10 "$HOOKS" run "$T/c.onnx" "$T/cx.npy" -o "$T/k.npy" --batch-size 4 \
  --checkpoint-every 0 --quiet 2>/dev/null && fail "the crash hook did not kill the run"
partial=$(ls "$T"/k.npy.partial.*)
grep -q "^out-hash 0 [0-9a-f]*$" "$T/k.npy.ckpt" || fail "checkpoint: $(cat "$T/k.npy.ckpt")"
cp "$partial" "$T/k.saved"
# a byte of row 1 (8 of [16, 3, 16] float32 rows done, a 128-byte header)
printf 'XXXX' | dd of="$partial" bs=1 seek=$((128 + 192 + 8)) conv=notrunc 2>/dev/null
one_line 1 "^mha: $partial: cannot resume: rows 0:8, already written there, are not the rows the checkpoint $T/k.npy.ckpt recorded (the file changed); remove the .ckpt file to start over$" \
  "$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/k.npy" --resume
[ ! -e "$T/k.npy" ] && [ -s "$T/k.npy.ckpt" ] && [ -s "$partial" ] || fail "the refused resume: $(ls "$T")"
# whatever the checkpoint's 'bytes' line says (the rows start after the
# partial file's own header); a malformed hash line is refused as such
cp "$T/k.npy.ckpt" "$T/k.ckpt.saved"
sed -i 's/^bytes 0 .*/bytes 0 0/' "$T/k.npy.ckpt"
one_line 1 "^mha: $partial: cannot resume: rows 0:8, already written there, are not the rows" \
  "$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/k.npy" --resume
sed 's/^out-hash 0 .*/out-hash 0 zz/' "$T/k.ckpt.saved" >"$T/k.npy.ckpt"
one_line 1 "^mha: $T/k.npy.ckpt: malformed checkpoint (output 0's 'out-hash' line)$" \
  "$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/k.npy" --resume
cp "$T/k.ckpt.saved" "$T/k.npy.ckpt"
# the rows as written: resumed into the bytes of one run
cp "$T/k.saved" "$partial"
expect 0 "resume" "$MHA" run -q "$T/c.onnx" "$T/cx.npy" -o "$T/k.npy" --resume --batch-size 3
cmp "$T/k.npy" "$T/cref.npy" || fail "resumed output differs from one run"

echo "== mha serve of the int32 model: int64 .npy ids"
# 400 "the token ids must be int32 (or a narrower integer type), not
# int64" where mha run now narrows them (mha serve takes what mha run
# takes): narrowed, a value past int32 refused with its element
npy "$T/r64.npy" '<i8' '(4,)' 19 9 14 14
npy "$T/r32.npy" '<i4' '(4,)' 19 9 14 14
npy "$T/rbig.npy" '<i8' '(3,)' 1 2 4294967303
TM="$T"
T="$T/srv" && mkdir -p "$T"
# shellcheck source=lib/serve_start.sh
. "$(dirname "$0")/lib/serve_start.sh"
# (its logits declared ?x?x21 as well: said once, at load)
cp "$TM/d32.onnx" "$TM/d32w.onnx" && "$PY" "$EDIT" "$TM/d32w.onnx" output-dim 1 2 21
serve_start "$TM/d32w.onnx" --threads 1
T="$TM"
post() { # BODY OUT: the status code
  $C -o "$2" -w '%{http_code}' -H 'Content-Type: application/x-npy' --data-binary @"$1" "$U/run"
}
[ "$(post "$T/r64.npy" "$T/a64")" = 200 ] || fail "int64 body: $(cat "$T/a64")"
[ "$(post "$T/r32.npy" "$T/a32")" = 200 ] || fail "int32 body: $(cat "$T/a32")"
cmp "$T/a64" "$T/a32" || fail "the int64 body's answer differs from the int32 one's"
code=$(post "$T/rbig.npy" "$T/abig" || :)
[ "$code" = 400 ] && grep -q "^error: token id 4294967303 (element 2) is past the int32 the model's ids take" "$T/abig" ||
  fail "an id past int32: $code $(cat "$T/abig")"
# JSON ids past int32: the message read the value after freeing it (a
# use after free ASan ends the server on); named with its element now
code=$($C -o "$T/ajs" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary '[1, 4294967296]' "$U/run" || :)
[ "$code" = 400 ] && grep -q "^error: token id 4294967296 (element 1) is past the int32 the model's ids take" "$T/ajs" ||
  fail "a JSON id past int32: $code $(cat "$T/ajs")"
code=$($C -o "$T/ajs" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary '[19, 9, 14, 14]' "$U/run" || :)
[ "$code" = 200 ] || fail "JSON ids after: $code $(cat "$T/ajs")"
kill "$SRV"
serve_wait_exit
grep -q "^mha: warning: $T/d32w.onnx: graph output 'logits' is declared ?x?x21, but the graph computes ?x?x20: answered as computed$" "$T/srv/err" ||
  fail "serve: no warning of the declared shape: $(cat "$T/srv/err")"
echo "ok: int64 ids served to the int32 model; $(cat "$T/abig")"

echo "cli_round13.sh: all passed"
