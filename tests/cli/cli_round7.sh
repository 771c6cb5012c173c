#!/bin/sh
# cli_round7.sh -- defects of the `mha` command found by the seventh
# adversarial round (and the items the sixth left), each as the rule for bad
# input has it: a non-zero exit, one stderr line naming the file or option
# and the problem, nothing on stdout and no output file -- or, where the
# input is good after all, the answer the same input in its usual form gives.
# Env: MHA (the binary), MHA_TESTHOOKS, MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
: "${MHA_TESTHOOKS:?set MHA_TESTHOOKS to the mha-testhooks binary}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
B="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4"
R="$MHA_TEST_DATA/round7"
MASK="$B/dataset/attention_mask.npy"
TT="$B/dataset/token_type_ids.npy"
S="$B/test_data_set_0"

echo "== token ids stored as uint16 / int16 / uint32"
# "unsupported dtype '<u2' (uint16)": a common storage type of token ids
# (and int16, uint32) was refused; the ids of R/ids_*.npy are the dataset's
# input_ids.npy (int64), so the outputs must be the same bytes
"$MHA" run "$B/model.onnx" "$B/dataset/input_ids.npy" "$MASK" "$TT" -o "$T/y64.npy" -q
for d in u16 i16 u32; do
  "$MHA" run "$B/model.onnx" "$R/ids_$d.npy" "$MASK" "$TT" -o "$T/y$d.npy" -q 2>"$T/err" ||
    fail "ids_$d.npy refused: $(cat "$T/err")"
  cmp -s "$T/y64.npy" "$T/y$d.npy" || fail "ids_$d.npy: another output than the int64 ids"
done
# .pb tensor files of those types (raw_data; int16 also in int32_data), one shot
"$MHA" run "$B/model.onnx" "$S/input_0.pb" "$S/input_1.pb" "$S/input_2.pb" -o "$T/y64.pb" -q
for f in ids_u16.pb ids_i16.pb ids_u32.pb ids_i16_typed.pb; do
  "$MHA" run "$B/model.onnx" "$R/$f" "$S/input_1.pb" "$S/input_2.pb" -o "$T/y.pb" -q 2>"$T/err" ||
    fail "$f refused: $(cat "$T/err")"
  cmp -s "$T/y64.pb" "$T/y.pb" || fail "$f: another output than the int64 ids"
done
# mha check: a case whose ids are uint16
mkdir -p "$T/case/test_data_set_0"
cp "$B/model.onnx" "$T/case/"
cp "$S"/*.pb "$T/case/test_data_set_0/"
cp "$R/ids_u16.pb" "$T/case/test_data_set_0/input_0.pb"
"$MHA" check "$T/case" >"$T/out" 2>"$T/err" || fail "check of uint16 ids: $(cat "$T/out" "$T/err")"
grep -q "^1 passed, 0 failed" "$T/out" || fail "check: $(cat "$T/out")"
# an id past the vocabulary (65535 of 100) in row 3 is named with its place
rm -f "$T/y.npy"
one_line 1 "^mha: $R/ids_u16_oov.npy: input 'input_ids' \[3, 2\]: token id 65535 is outside the vocabulary of 100 (ids in \[0, 100))$" \
  "$MHA" run "$B/model.onnx" "$R/ids_u16_oov.npy" "$MASK" "$TT" -o "$T/y.npy"
[ ! -e "$T/y.npy" ] || fail "an id past the vocabulary left an output"
# what is still not read is named in words with the list
npy_u8() { # a [1, 3] .npy of descr $1 with 24 bytes of data
  h="{'descr': '$1', 'fortran_order': False, 'shape': (1, 3), }"
  { printf '\223NUMPY\001\000\166\000%-117s\n' "$h"; head -c 24 /dev/zero; } >"$2"
}
npy_u8 '<u8' "$T/ids_u64.npy"
one_line 1 "^mha: $T/ids_u64.npy: unsupported dtype '<u8' (uint64); .npy files of float32, float64, float16, int64, int32, int16, int8, uint32, uint16, uint8 or bool, little-endian, are read" \
  "$MHA" run "$B/model.onnx" "$T/ids_u64.npy" "$MASK" "$TT" -o "$T/y.npy"
echo "ok: uint16 / int16 / uint32 ids widened (run, check), ids past the vocabulary named"

echo "== mha run's token count with --lengths"
# the summary counted rows x sequence (30 tokens) whatever --lengths said:
# lengths 6, 1, 0, 3, 2 are 12 tokens
# an int64 [5] .npy of lengths 6, 1, 0, 3, 2 (each value one byte, then 7 zero bytes)
h="{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }"
{
  printf '\223NUMPY\001\000\166\000%-117s\n' "$h"
  for v in 6 1 0 3 2; do
    printf "\\$(printf '%03o' "$v")"
    head -c 7 /dev/zero
  done
} >"$T/len.npy"
"$MHA" run "$B/model.onnx" "$B/dataset/input_ids.npy" "$TT" --lengths "$T/len.npy" -o "$T/yl.npy" \
  2>"$T/err" || fail "run --lengths: $(cat "$T/err")"
grep -q "^mha run: 5 rows (12 tokens) in " "$T/err" || fail "token count with --lengths: $(cat "$T/err")"
"$MHA" run "$B/model.onnx" "$B/dataset/input_ids.npy" "$TT" "$MASK" -o "$T/yl.npy" 2>"$T/err"
grep -q "^mha run: 5 rows (30 tokens) in " "$T/err" || fail "token count without --lengths: $(cat "$T/err")"
echo "ok: $(cut -c1-40 "$T/err")"

echo "== a graph input declaring a negative dimension other than -1"
# 'dim_value: -5' loaded as a symbolic axis; ONNX dims are >= 0 (-1 is what
# older converters wrote for unknown, and still reads so)
one_line 1 "^mha: $R/neg_dim_layer.onnx: value 'query': declared dimension -5 at axis 0 is negative (ONNX dimensions are >= 0; -1 is read as unknown)$" \
  "$MHA" info "$R/neg_dim_layer.onnx"
echo "ok: refused"

echo "== numbers with a leading space, a hexadecimal float"
# strtol / strtod skip leading white space and strtod reads hex: --threads
# ' 2', --rtol 0x1p-3, --shard ' 0/2' ran
D="$B/dataset/input_ids.npy $MASK $TT"
# shellcheck disable=SC2086
one_line 2 "^mha run: --threads: ' 2' is not a thread count in \[0, 1024\]" "$MHA" run "$B/model.onnx" $D -o "$T/y.npy" --threads ' 2'
# shellcheck disable=SC2086
one_line 2 "^mha run: --shard: ' 0/2' is not I/N" "$MHA" run "$B/model.onnx" $D -o "$T/y.npy" --shard ' 0/2'
# shellcheck disable=SC2086
one_line 2 "^mha run: --shard: '0/ 2' is not I/N" "$MHA" run "$B/model.onnx" $D -o "$T/y.npy" --shard '0/ 2'
# shellcheck disable=SC2086
one_line 2 "^mha run: --checkpoint-every: ' 1' is not a number of seconds" "$MHA" run "$B/model.onnx" $D -o "$T/y.npy" --checkpoint-every ' 1'
# shellcheck disable=SC2086
one_line 2 "SLURM_ARRAY_TASK_ID= 0, SLURM_ARRAY_TASK_COUNT=2, SLURM_ARRAY_TASK_MIN=(unset) do not name a shard" \
  env SLURM_ARRAY_TASK_ID=' 0' SLURM_ARRAY_TASK_COUNT=2 "$MHA" run "$B/model.onnx" $D -o "$T/y.npy"
[ ! -e "$T/y.npy" ] || fail "a refused option left an output"
one_line 2 "^mha check: --rtol wants a number >= 0, not '0x1p-3'" "$MHA" check --rtol 0x1p-3 "$B"
one_line 2 "^mha check: --atol wants a number >= 0, not ' 1'" "$MHA" check --atol ' 1' "$B"
one_line 2 "^mha bench: --shape wants B,S or B,S,S_kv" "$MHA" bench "$B/model.onnx" --shape ' 1,4'
one_line 2 "^mha peak: --seconds wants a number in \[0.01, 60\], not ' 1'" "$MHA" peak --seconds ' 1'
one_line 2 "^mha gen: --d-model wants an integer in \[1, 65536\], not ' 16'" "$MHA" gen -d ' 16' -H 2 -o "$T/g.onnx"
# (timeout: a server that took the option would serve on)
one_line 2 "^mha serve: --max-delay-ms wants milliseconds in \[0, 600000\], got '0x10'" \
  timeout 20 "$MHA" serve "$B/model.onnx" --max-delay-ms 0x10
one_line 2 "^mha serve: --max-padding wants a share in \[0, 1\], got ' 0.5'" timeout 20 "$MHA" serve "$B/model.onnx" --max-padding ' 0.5'
# shellcheck disable=SC2086
expect 0 "--threads +1 (a sign is a number as written)" "$MHA" run "$B/model.onnx" $D -o "$T/y.npy" --threads +1 -q
echo "ok: every number is a number as a person writes it"

echo "== mha gen -o m.pb"
# wrote the ONNX model under the tensor files' extension: 'mha run M m.pb'
# then reads it as an input
one_line 2 "^mha gen: -o writes the model as ONNX, not '$T/m.pb' (.pb is a tensor file: --data writes it; name the model .onnx)" \
  "$MHA" gen -d 16 -H 2 -o "$T/m.pb"
[ ! -e "$T/m.pb" ] || fail "gen -o m.pb wrote it"
echo "ok: refused, nothing written"

echo "== --resume after the model's external data was replaced"
# the checkpoint held the model file's hash, not its external data's: a
# resumed run finished the dataset with other weights, exit 0
mkdir -p "$T/ext"
cp "$R/ext_bert/model.onnx" "$R/ext_bert/w.data" "$T/ext/"
X="$R/ext_ids.npy $R/ext_mask.npy $R/ext_tt.npy"
set +e
# shellcheck disable=SC2086
MHA_TEST_DATASET_CRASH_ROWS=4 "$MHA_TESTHOOKS" run "$T/ext/model.onnx" $X -o "$T/e.npy" --batch-size 2 \
  --checkpoint-every 0 -q 2>/dev/null
rc=$?
set -e
[ $rc -ne 0 ] && [ -s "$T/e.npy.ckpt" ] || fail "no checkpoint after the crash hook (exit $rc): $(ls "$T")"
cp "$T/e.npy.ckpt" "$T/e.ckpt.kept"
# the same bytes at another place (a new inode and time), as a copy or a
# re-export writes them
cp "$T/ext/w.data" "$T/ext/w.new" && rm "$T/ext/w.data"
sleep 0.01
cp "$T/ext/w.new" "$T/ext/w.data" && rm "$T/ext/w.new"
# shellcheck disable=SC2086
one_line 1 "^mha: $T/e.npy.ckpt: cannot resume: the checkpoint has 'external data [0-9a-f]*' where this run has 'external data [0-9a-f]*' (remove the .ckpt file to start over)$" \
  "$MHA" run "$T/ext/model.onnx" $X -o "$T/e.npy" --batch-size 2 --resume
[ ! -e "$T/e.npy" ] && cmp -s "$T/e.npy.ckpt" "$T/e.ckpt.kept" || fail "the refused resume touched the outputs: $(ls "$T")"
# a run without the replacement resumes (the checkpoint's own file again)
rm -f "$T"/e.npy.* "$T/e.ckpt.kept"
set +e
# shellcheck disable=SC2086
MHA_TEST_DATASET_CRASH_ROWS=4 "$MHA_TESTHOOKS" run "$T/ext/model.onnx" $X -o "$T/e.npy" --batch-size 2 \
  --checkpoint-every 0 -q 2>/dev/null
set -e
# shellcheck disable=SC2086
"$MHA" run "$T/ext/model.onnx" $X -o "$T/e.npy" --batch-size 2 --resume -q 2>"$T/err" ||
  fail "resume with the same external data: $(cat "$T/err")"
# shellcheck disable=SC2086
"$MHA" run "$T/ext/model.onnx" $X -o "$T/whole.npy" -q
cmp -s "$T/e.npy" "$T/whole.npy" || fail "the resumed output differs from a whole run"
echo "ok: refused after the replacement, resumed byte-identical without it"

echo "== external data through a symlinked folder inside the model's folder"
mkdir -p "$T/sym" "$T/outside"
cp "$R/ext_bert/model_subdir.onnx" "$T/sym/model.onnx"
cp "$R/ext_bert/w.data" "$T/outside/w.data"
ln -s "$T/outside" "$T/sym/sub"
one_line 1 "^mha: $T/sym/model.onnx: initializer 't0': external data 'sub/w.data' resolves outside the model folder '$T/sym' (symlink or magic link refused)$" \
  "$MHA" info "$T/sym/model.onnx"
echo "ok: refused"

if "$MHA" serve --help >/dev/null 2>&1 && command -v curl >/dev/null; then
  echo "== mha serve: uint16 / uint32 .npy ids, a body at and one byte over the limit, pipelining"
  # serve_start, SRV, U, C, PORT (and its own fail)
  . "$(dirname "$0")/lib/serve_start.sh"
  serve_start "$B/model.onnx" --threads 1 --max-body-bytes 64
  # ids [[5, 7, 9]] as .npy of int64, uint16, uint32: the same answer
  ids_npy() { # DESCR BYTES-PER-ID FILE
    h="{'descr': '$1', 'fortran_order': False, 'shape': (1, 3), }"
    printf '\223NUMPY\001\000\166\000%-117s\n' "$h" >"$3"
    for v in 5 7 9; do
      printf "\\$(printf '%03o' "$v")" >>"$3"
      head -c $(($2 - 1)) /dev/zero >>"$3"
    done
  }
  ids_npy '<i8' 8 "$T/b64.npy"
  ids_npy '<u2' 2 "$T/b16.npy"
  ids_npy '<u4' 4 "$T/b32.npy"
  # the .npy bodies are over 64 bytes: another server with the default limit
  kill "$SRV"
  serve_wait_exit
  serve_start "$B/model.onnx" --threads 1
  for f in b64 b16 b32; do
    code=$($C -o "$T/a_$f" -w '%{http_code}' -H 'Content-Type: application/x-npy' --data-binary "@$T/$f.npy" "$U/run")
    [ "$code" = 200 ] || fail "$f.npy: $code $(head -c 200 "$T/a_$f")"
  done
  cmp -s "$T/a_b64" "$T/a_b16" && cmp -s "$T/a_b64" "$T/a_b32" || fail "uint16 / uint32 ids answered otherwise"
  # pipelined: two requests and a health check in one write, answered in order
  python3 - "$PORT" >"$T/pipe" <<'PY' || fail "pipelined: no answer"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
post = "POST /run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
s.sendall((post % (5, "[5,7]") + post % (7, "[100,7]") +
           "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode())
got = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    got += c
sys.stdout.write(got.decode("latin-1"))
PY
  [ "$(grep '^HTTP/1.1' "$T/pipe" | tr -d '\r' | tr '\n' ' ')" = "HTTP/1.1 200 OK HTTP/1.1 400 Bad Request HTTP/1.1 200 OK " ] ||
    fail "pipelined answers: $(grep '^HTTP/1.1' "$T/pipe")"
  grep -q "token id 100 is outside the vocabulary of 100" "$T/pipe" || fail "pipelined 400: $(cat "$T/pipe")"
  kill "$SRV"
  serve_wait_exit
  serve_start "$B/model.onnx" --threads 1 --max-body-bytes 64
  for n in 64 65; do
    printf '[5,7,9]%*s' $((n - 7)) '' >"$T/body"
    for te in "" "Transfer-Encoding: chunked"; do
      code=$($C -o "$T/answer" -w '%{http_code}' -H 'Content-Type: application/json' ${te:+-H "$te"} \
        --data-binary "@$T/body" "$U/run")
      want=200
      [ $n = 64 ] || want=413
      [ "$code" = $want ] || fail "a body of $n bytes (limit 64) ${te:-with Content-Length}: $code, wanted $want"
    done
  done
  kill "$SRV"
  serve_wait_exit
  echo "ok: widened ids answered as int64, pipelined in order, 64 bytes 200, 65 bytes 413"
else
  echo "skipped: mha serve not built or curl missing"
fi

echo "cli_round7.sh: all passed"
