#!/bin/sh
# outputs.sh -- where the `mha` command writes: a symlink destination is
# written through to its target (the link stays); "-", FIFOs and character
# devices are written directly and never replaced; a symlink planted at a
# temporary's or lock's name is never followed; a missing folder is named
# before any work (run, gen, merge, bench, peak); duplicate outputs and a
# second run on the same output are refused; no -o is refused; a .pb over
# 2 GiB is refused before computing; what kill -9 left is cleaned by the next
# run; merge removes its temporary on SIGTERM (exit 143); bench's JSON and
# SVG stay well-formed whatever bytes a name holds. (Dataset runs stopped by
# a signal: dataset.sh.)
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TESTHOOKS:?set MHA_TESTHOOKS to the mha-testhooks binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect RC NAME CMD...: runs CMD, wants exit RC; stderr in $T/err
expect() {
  want=$1 name=$2
  shift 2
  set +e
  "$@" >"$T/out" 2>"$T/err"
  got=$?
  set -e
  [ "$got" -eq "$want" ] || fail "$name: exit $got, wanted $want ($(cat "$T/err"))"
}
# npy_head FILE DICT: a 128-byte .npy (1.0) header holding DICT; the data
# is made by truncate (a sparse file of zeros)
npy_head() {
  { printf '\223NUMPY\001\000v\000%s' "$2"
    head -c $((118 - ${#2} - 1)) /dev/zero | tr '\000' ' '
    printf '\n'; } >"$1"
}
# leftovers DIR: temporaries, partials, checkpoints or locks left in DIR
leftovers() { ls -A "$1" | grep -e '\.tmp\.' -e '\.partial\.' -e '\.ckpt$' -e '\.lock$' || true; }

B=6 S=5 D=16
"$MHA" gen -d $D -H 2 --seed 3 -o "$T/m.onnx" --data "$T/x.npy" --batch $B --seq $S
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.pb" --quiet

PRESENT="${MHA_TEST_DATA:?}/conformance/onnx_attention_3d_with_past_and_present"

echo "== a symlink destination is written through to its target"
mkdir "$T/real"
echo old >"$T/real/y.npy"
ln -s real/y.npy "$T/link.npy"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/link.npy" --quiet
[ -L "$T/link.npy" ] || fail "the link was replaced"
cmp -s "$T/real/y.npy" "$T/ref.npy" || fail "the link's target does not hold the output"
ln -s real/new.pb "$T/dangling.pb" # a link to nothing yet: its target is made
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/dangling.pb" --quiet
[ -L "$T/dangling.pb" ] && cmp -s "$T/real/new.pb" "$T/ref.pb" || fail "a dangling link was not written through"
ln -s link.npy "$T/chain.npy" # link to a link
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/chain.npy" --batch-size 2 --quiet
[ -L "$T/chain.npy" ] && [ -L "$T/link.npy" ] && cmp -s "$T/real/y.npy" "$T/ref.npy" || fail "a chain of links"
ln -s real/m2.onnx "$T/mlink.onnx" # gen writes through links too
"$MHA" gen -d $D -H 2 --seed 3 -o "$T/mlink.onnx"
[ -L "$T/mlink.onnx" ] && cmp -s "$T/real/m2.onnx" "$T/m.onnx" || fail "gen through a link"
[ -z "$(leftovers "$T")$(leftovers "$T/real")" ] || fail "left: $(leftovers "$T") $(leftovers "$T/real")"
echo "ok: links kept, targets written (dangling and chained too)"

echo "== -, FIFOs and character devices are written directly, never replaced"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o - --quiet >"$T/stdout.npy"
cmp -s "$T/stdout.npy" "$T/ref.npy" || fail "-o - differs from the file"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o - --quiet --batch-size 1 | cmp -s - "$T/ref.npy" || fail "-o - into a pipe, by rows"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o /dev/stdout --quiet >"$T/devstdout.npy"
cmp -s "$T/devstdout.npy" "$T/ref.npy" || fail "-o /dev/stdout into a file differs"
# a report printed before --json /dev/stdout stays: the descriptor is written,
# the file behind it not replaced
"$MHA" peak --threads 1 --seconds 0.01 --reps 1 --json /dev/stdout >"$T/peak.txt"
head -1 "$T/peak.txt" | grep -q '^isa' && tail -1 "$T/peak.txt" | grep -q '^{' ||
  fail "peak --json /dev/stdout: $(cat "$T/peak.txt")"
expect 2 "- and /dev/stdout together" "$MHA" run "$PRESENT/model.onnx" "$PRESENT"/test_data_set_0/input_*.pb -o - /dev/stdout
grep -q "are the same file" "$T/err" || fail "- and /dev/stdout: $(cat "$T/err")"
mkfifo "$T/fifo"
cat "$T/fifo" >"$T/from_fifo.npy" &
reader=$!
if ! "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/fifo" --quiet --batch-size 2; then
  : >"$T/fifo" # the reader must not wait for ever
  fail "a run into a FIFO failed"
fi
wait $reader
[ -p "$T/fifo" ] || fail "the FIFO was replaced"
cmp -s "$T/from_fifo.npy" "$T/ref.npy" || fail "what came through the FIFO differs"
ln -s /dev/null "$T/devnull" # as /dev/stdout is a link to a device
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/devnull" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o /dev/null --quiet
[ -L "$T/devnull" ] && [ -c /dev/null ] || fail "a device or its link was replaced"
"$MHA" gen -d $D -H 2 -o /dev/null --data /dev/null --batch 1 --seq 2 # a device may take several
[ -c /dev/null ] || fail "gen replaced /dev/null"
expect 2 "--resume on a stream" "$MHA" run "$T/m.onnx" "$T/x.npy" -o - --resume
grep -q "written directly" "$T/err" || fail "--resume on a stream: $(cat "$T/err")"
mkdir "$T/dir.npy"
expect 1 "a folder as output" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/dir.npy"
grep -q "dir.npy: is a folder" "$T/err" && [ -d "$T/dir.npy" ] || fail "a folder: $(cat "$T/err")"
[ -z "$(leftovers "$T")" ] || fail "left: $(leftovers "$T")"
echo "ok: stdout (- and /dev/stdout), a FIFO, /dev/null and a link to it written directly; a folder refused"

echo "== a symlink planted at a temporary's or a lock's name is not followed"
echo victim >"$T/victim"
ln -s victim "$T/p.npy.partial" # the fixed name earlier versions used
ln -s victim "$T/.p.pb.tmp.XXXXXX"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/p.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/p.pb" --quiet
cmp -s "$T/p.npy" "$T/ref.npy" && cmp -s "$T/p.pb" "$T/ref.pb" || fail "outputs next to planted links"
[ "$(cat "$T/victim")" = victim ] && [ -L "$T/p.npy.partial" ] || fail "a planted link was followed"
ln -s victim "$T/q.npy.lock"
expect 1 "a planted lock link" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/q.npy"
grep -q "q.npy.lock: it is a symbolic link" "$T/err" || fail "lock link: $(cat "$T/err")"
[ "$(cat "$T/victim")" = victim ] && [ ! -e "$T/q.npy" ] || fail "the lock link was followed"
rm -f "$T/q.npy.lock" "$T/p.npy.partial" "$T/.p.pb.tmp.XXXXXX"
# a link put in place of the checkpoint while the run goes: replaced, not followed
MHA_TEST_DATASET_DELAY_MS=100 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/v.npy" --batch-size 1 \
  --checkpoint-every 0 --quiet &
pid=$!
sleep 0.25
ln -sf victim "$T/v.npy.ckpt"
wait $pid || fail "the run with a checkpoint link failed"
[ "$(cat "$T/victim")" = victim ] || fail "a checkpoint was written through a planted link"
[ ! -L "$T/v.npy.ckpt" ] && [ ! -e "$T/v.npy.ckpt" ] && cmp -s "$T/v.npy" "$T/ref.npy" || fail "checkpoint link: $(ls -l "$T")"
# a checkpoint naming a link, or a file that is no partial of the output
MHA_TEST_DATASET_CRASH_ROWS=2 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/k.npy" --batch-size 1 \
  --checkpoint-every 0 --quiet 2>/dev/null && fail "the crash hook did not kill the run"
partial=$(ls "$T"/k.npy.partial.*)
mv "$partial" "$T/saved.partial"
ln -s victim "$partial"
expect 1 "a partial file replaced by a link" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/k.npy" --resume
grep -q "symbolic link" "$T/err" && [ "$(cat "$T/victim")" = victim ] || fail "resumed through a link: $(cat "$T/err")"
sed -i "s|^partial 0 .*|partial 0 $T/victim|" "$T/k.npy.ckpt"
expect 1 "a checkpoint naming another file" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/k.npy" --resume
grep -q "victim: not a partial file of" "$T/err" && [ "$(cat "$T/victim")" = victim ] || fail "foreign partial: $(cat "$T/err")"
rm -f "$partial" "$T/saved.partial" "$T/k.npy.ckpt"
echo "ok: planted links and foreign partial files are refused, their targets untouched"

echo "== output paths are checked before the work, naming the folder"
expect 1 "run into a missing folder" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/nodir/y.npy"
grep -q "the folder '$T/nodir' does not exist" "$T/err" || fail "run: $(cat "$T/err")"
expect 1 "run .pb into a missing folder" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/nodir/y.pb"
grep -q "the folder '$T/nodir' does not exist" "$T/err" || fail "run .pb: $(cat "$T/err")"
expect 1 "gen into a missing folder" "$MHA" gen -d 8 -H 2 -o "$T/m2.onnx" --data "$T/nodir/x.npy" --batch 1 --seq 1
grep -q "nodir' does not exist" "$T/err" && [ ! -e "$T/m2.onnx" ] || fail "gen wrote the model first: $(cat "$T/err")"
expect 1 "merge into a missing folder" "$MHA" merge "$T/nodir/y.npy" "$T/ref.npy"
grep -q "nodir' does not exist" "$T/err" || fail "merge: $(cat "$T/err")"
cp "$T/ref.npy" "$T/keep.npy"
expect 2 "merge into one of its shards" "$MHA" merge "$T/keep.npy" "$T/keep.npy"
grep -q "is also the shard" "$T/err" && cmp -s "$T/keep.npy" "$T/ref.npy" || fail "merge over a shard: $(cat "$T/err")"
rm -f "$T/keep.npy"
for opt in --json --csv --plot; do
  expect 1 "bench $opt into a missing folder" "$MHA" bench "$T/m.onnx" --shape 1,4 $opt "$T/nodir/b.out"
  grep -q "nodir' does not exist" "$T/err" && ! grep -q "reference run" "$T/err" || fail "bench $opt: $(cat "$T/err")"
done
expect 1 "peak --json into a missing folder" "$MHA" peak --json "$T/nodir/p.json"
grep -q "nodir' does not exist" "$T/err" && [ ! -s "$T/out" ] || fail "peak: $(cat "$T/err")"
# a folder without write bits is refused by its mode, for root too (whose
# access() would let it write there), as a read-only file is not replaced
mkdir "$T/ro" && chmod 555 "$T/ro"
ro_msg="cannot create files in the folder '$T/ro': it is read-only (mode 0555)"
expect 1 "run into a read-only folder" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ro/y.npy"
grep -q "$ro_msg" "$T/err" || fail "read-only: $(cat "$T/err")"
expect 1 "--out-dir a read-only folder" "$MHA" run "$T/m.onnx" "$T/x.npy" --out-dir "$T/ro"
grep -q "$T/ro: --out-dir: cannot create files in the folder: it is read-only (mode 0555)" "$T/err" ||
  fail "--out-dir read-only: $(cat "$T/err")"
expect 1 "--out-dir inside a read-only folder" "$MHA" run "$T/m.onnx" "$T/x.npy" --out-dir "$T/ro/od"
grep -q "$ro_msg" "$T/err" || fail "--out-dir inside read-only: $(cat "$T/err")"
expect 1 "gen into a read-only folder" "$MHA" gen -d 8 -H 2 -o "$T/ro/m.onnx"
grep -q "$ro_msg" "$T/err" || fail "gen read-only: $(cat "$T/err")"
expect 1 "bench --json into a read-only folder" "$MHA" bench "$T/m.onnx" --shape 1,4 --json "$T/ro/b.json"
grep -q "$ro_msg" "$T/err" || fail "bench read-only: $(cat "$T/err")"
[ -z "$(ls -A "$T/ro")" ] || fail "read-only folder: left $(ls -A "$T/ro")"
[ "$(wc -l <"$T/err")" = 1 ] || fail "read-only folder: not one line: $(cat "$T/err")"
chmod 755 "$T/ro"
echo "ok: read-only folders refused by their mode (as root too): $(cat "$T/err")"
expect 1 "--out-dir in a missing folder" "$MHA" run "$T/m.onnx" "$T/x.npy" --out-dir "$T/nodir/od"
grep -q "the folder '$T/nodir' does not exist" "$T/err" || fail "--out-dir: $(cat "$T/err")"
mkdir "$T/od" && ln -s ../victim "$T/od/output_0.pb.lock" # --out-dir files are locked too
expect 1 "--out-dir with a planted lock link" "$MHA" run "$T/m.onnx" "$T/x.npy" --out-dir "$T/od"
grep -q "output_0.pb.lock: it is a symbolic link" "$T/err" && [ ! -e "$T/od/output_0.pb" ] ||
  fail "--out-dir lock: $(cat "$T/err")"
rm -rf "$T/od"
expect 2 "run without -o" "$MHA" run "$T/m.onnx" "$T/x.npy"
grep -q "no output given" "$T/err" || fail "no -o: $(cat "$T/err")"
echo "ok: missing folders named by run, gen, merge, bench and peak before any work; no -o refused"

echo "== one output, one writer"
set -- "$PRESENT"/test_data_set_0/input_*.pb
expect 2 "-o a a a" "$MHA" run "$PRESENT/model.onnx" "$@" -o "$T/a.npy" "$T/a.npy" "$T/a.npy"
grep -q "are the same file" "$T/err" && [ -z "$(ls "$T" | grep '^a\.npy')" ] || fail "-o a a a: $(cat "$T/err"); left $(ls "$T")"
expect 2 "one file spelt two ways" "$MHA" run "$PRESENT/model.onnx" "$@" -o "$T/a.pb" "$T/../$(basename "$T")/a.pb"
grep -q "are the same file" "$T/err" || fail "two spellings: $(cat "$T/err")"
ln -s a.pb "$T/alias.pb"
expect 2 "a file and a link to it" "$MHA" run "$PRESENT/model.onnx" "$@" -o "$T/a.pb" "$T/b.pb" "$T/alias.pb"
grep -q "are the same file" "$T/err" && [ ! -e "$T/a.pb" ] && [ ! -e "$T/b.pb" ] || fail "link alias: $(cat "$T/err")"
"$MHA" run "$PRESENT/model.onnx" "$@" -o "$T/a.pb" "$T/b.pb" "$T/c.pb" --quiet
[ -s "$T/a.pb" ] && [ -s "$T/b.pb" ] && [ -s "$T/c.pb" ] || fail "three distinct outputs"
rm -f "$T/alias.pb"
MHA_TEST_DATASET_DELAY_MS=100 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/shared.npy" --batch-size 1 \
  --quiet 2>"$T/first.err" &
first=$!
sleep 0.2
expect 1 "a second run on the same output" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/shared.npy"
grep -q "another process is writing this output" "$T/err" || fail "second run: $(cat "$T/err")"
wait $first || fail "the first run failed: $(cat "$T/first.err")"
cmp -s "$T/shared.npy" "$T/ref.npy" || fail "the first run's output was disturbed"
[ -z "$(leftovers "$T")" ] || fail "left: $(leftovers "$T")"
echo "ok: duplicates refused before any work; a second writer refused at once, the first unharmed"

echo "== a .pb over 2 GiB is refused before computing"
# [1, 2^24, 32] float32 of a sparse file: 2 GiB in and out
"$MHA" gen -d 32 -H 2 -o "$T/m32.onnx"
npy_head "$T/huge.npy" "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16777216, 32), }"
truncate -s $((128 + 2147483648)) "$T/huge.npy"
t0=$(date +%s)
expect 1 "a 2 GiB .pb output" timeout 60 "$MHA" run "$T/m32.onnx" "$T/huge.npy" -o "$T/huge.pb"
grep -q "huge.pb: 2147483648 bytes of float32 exceed the 2 GiB" "$T/err" || fail "2 GiB .pb: $(cat "$T/err")"
[ $(($(date +%s) - t0)) -lt 30 ] || fail "the 2 GiB check came after computing"
rm -f "$T/huge.npy"
echo "ok: refused in $(($(date +%s) - t0)) s"

echo "== what kill -9 left is cleaned by the next writer of the same output"
touch "$T/.z.pb.tmp.Ab12Cd" "$T/.z.pb.tmp.keep-me" "$T/.other.pb.tmp.Ab12Cd"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/z.pb" --quiet
[ ! -e "$T/.z.pb.tmp.Ab12Cd" ] || fail "a stale temporary of z.pb stayed"
[ -e "$T/.z.pb.tmp.keep-me" ] && [ -e "$T/.other.pb.tmp.Ab12Cd" ] || fail "a file not z.pb's temporary was removed"
rm -f "$T/.z.pb.tmp.keep-me" "$T/.other.pb.tmp.Ab12Cd"
MHA_TEST_DATASET_CRASH_ROWS=3 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/c.npy" --batch-size 1 \
  --checkpoint-every 0 --quiet 2>/dev/null && fail "the crash hook did not kill the run"
[ -n "$(leftovers "$T")" ] || fail "kill -9 left nothing to clean (the test tests nothing)"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/c.npy" --quiet # afresh: the old partial goes
cmp -s "$T/c.npy" "$T/ref.npy" && [ -z "$(leftovers "$T")" ] || fail "after a fresh run: $(leftovers "$T")"
echo "ok: stale temporaries and partials removed, other files kept"

echo "== mha merge: SIGTERM removes its temporary; kill -9's is removed by the next merge"
# two shards of 64 MiB each, made by hand (zeros), so the copy takes a while
N=4096 W=4096
for i in 0 1; do
  npy_head "$T/big$i.npy" \
    "{'descr': '<f4', 'fortran_order': False, 'shape': ($N, $W), }  # mha-shard rows $((i * N)):$(((i + 1) * N)) of $((2 * N))"
  truncate -s $((128 + N * W * 4)) "$T/big$i.npy"
done
# signal KILL|TERM: start a merge, signal it once its temporary exists
merge_signalled() {
  for attempt in $(seq 1 30); do
    rm -f "$T/merged.npy"
    "$MHA" merge "$T/merged.npy" "$T/big0.npy" "$T/big1.npy" --quiet 2>"$T/merge.err" &
    pid=$!
    n=0
    while [ -z "$(ls -A "$T" | grep '^\.merged\.npy\.tmp\.')" ] && [ $n -lt 400 ] && kill -0 $pid 2>/dev/null; do
      sleep 0.005
      n=$((n + 1))
    done
    if [ -n "$(ls -A "$T" | grep '^\.merged\.npy\.tmp\.')" ] && kill -"$1" $pid 2>/dev/null; then
      set +e
      wait $pid
      merge_rc=$?
      set -e
      [ "$merge_rc" -ne 0 ] && return 0 # the signal landed mid-copy
    else
      wait $pid || true
    fi
  done
  fail "no merge could be signalled mid-copy in 30 attempts"
}
merge_signalled TERM
[ "$merge_rc" -eq 143 ] || fail "merge after SIGTERM: exit $merge_rc, wanted 143 ($(cat "$T/merge.err"))"
[ -z "$(leftovers "$T")" ] && [ ! -e "$T/merged.npy" ] || fail "SIGTERM left: $(leftovers "$T")"
merge_signalled KILL
[ -n "$(ls -A "$T" | grep '^\.merged\.npy\.tmp\.')" ] || fail "kill -9 left no temporary (nothing tested)"
"$MHA" merge "$T/merged.npy" "$T/big0.npy" "$T/big1.npy" --quiet
[ -z "$(leftovers "$T")" ] || fail "the next merge left: $(leftovers "$T")"
[ "$(wc -c <"$T/merged.npy")" -eq $((128 + 2 * N * W * 4)) ] || fail "merged size"
rm -f "$T/merged.npy" "$T/big0.npy" "$T/big1.npy"
echo "ok: merge cleans up after SIGTERM (exit 143) and after kill -9"

echo "== JSON and SVG stay well-formed when a name is not UTF-8"
bad=$(printf 'm\377\300\355\240\200.onnx') # a stray byte, an overlong lead, a surrogate
cp "$T/m.onnx" "$T/$bad"
"$MHA" bench "$T/$bad" --shape 1,4 --min-time 0.05 --warmup 1 --backend scalar --threads 1 \
  --quiet --json "$T/u.json" --plot "$T/u.svg" || fail "bench of a non-UTF-8 name failed"
/usr/bin/python3 -c 'import json, sys, xml.etree.ElementTree as E
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert d["model"].endswith("m\ufffd\ufffd\ufffd\ufffd\ufffd.onnx"), d["model"]
E.parse(sys.argv[2])' "$T/u.json" "$T/u.svg" || fail "the JSON or SVG is not well-formed"
echo "ok: invalid bytes become U+FFFD"

echo "outputs.sh: all passed"
