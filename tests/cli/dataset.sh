#!/bin/sh
# dataset.sh -- `mha run` at dataset scale: chunked runs give the one-shot
# file bitwise for any --batch-size; kill -9 or SIGINT mid-run then
# --resume gives the same bytes (and a changed input refuses to resume, by
# content: cp -p of another dataset too; a stale checkpoint of a finished
# run says the output is complete);
# shards + `mha merge` give the same bytes (also via SLURM_ARRAY_*);
# `mpirun -n 2 mha-mpi run --mpi` gives the same bytes; rows with --lengths
# equal the same rows run alone at their true length, zero past it.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TESTHOOKS:?set MHA_TESTHOOKS to the mha-testhooks binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }

# npy FILE DESCR SHAPE: a .npy header (version 1.0, 128 bytes) for SHAPE;
# the caller appends the data
npy() {
  text="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
  len=${#text}
  { printf '\223NUMPY\001\000v\000%s' "$text"
    head -c $((118 - len - 1)) /dev/zero | tr '\000' ' '
    printf '\n'; } >"$1"
}
# bytes FILE OFFSET COUNT: COUNT bytes of FILE from OFFSET
bytes() { tail -c +$(($2 + 1)) "$1" | head -c "$3"; }
# le64 N: N as 8 little-endian bytes (N < 256)
le64() { printf "\\$(printf '%03o' "$1")\\000\\000\\000\\000\\000\\000\\000"; }

B=23 S=9 D=32
"$MHA" gen -d $D -H 4 --kv-heads 2 --seed 5 -o "$T/m.onnx" --data "$T/x.npy" --batch $B --seq $S
ROW=$((S * D * 4))

echo "== chunks: any --batch-size gives the one-shot bits"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" --batch-size 1000 2>"$T/stderr"
grep -q "^mha run: $B rows .* 0 rows with non-finite outputs" "$T/stderr" || fail "summary: $(cat "$T/stderr")"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.pb" --quiet # the whole-tensor path
bytes "$T/ref.npy" 128 $((B * ROW)) >"$T/ref.raw"
tail -c $((B * ROW)) "$T/ref.pb" | cmp -s - "$T/ref.raw" || fail "chunked run differs from the one-shot .pb run"
for bs in 1 4 7 22; do
  "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y$bs.npy" --batch-size $bs --quiet
  cmp -s "$T/ref.npy" "$T/y$bs.npy" || fail "--batch-size $bs differs"
done
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/yt1.npy" --batch-size 5 --threads 1 --quiet
cmp -s "$T/ref.npy" "$T/yt1.npy" || fail "--threads 1 differs"
[ -z "$(ls -A "$T" | grep -e '\.partial\.' -e '\.ckpt$' -e '\.tmp\.' -e '\.lock$')" ] || fail "left temporaries: $(ls -A "$T")"
echo "ok: batch sizes 1 4 7 22 1000 and one shot agree bitwise"

echo "== kill -9 between a chunk's write and its checkpoint, then --resume"
set +e
MHA_TEST_DATASET_CRASH_ROWS=10 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/k.npy" --batch-size 4 \
  --checkpoint-every 0 --quiet 2>/dev/null
rc=$?
set -e
[ $rc -ne 0 ] || fail "the crash hook did not kill the run"
partial=$(ls "$T"/k.npy.partial.*)
[ ! -e "$T/k.npy" ] && [ -s "$partial" ] && [ -s "$T/k.npy.ckpt" ] || fail "after kill -9: $(ls "$T")"
grep -q "^done 8$" "$T/k.npy.ckpt" || fail "checkpoint: $(cat "$T/k.npy.ckpt")"
grep -q "^partial 0 $partial$" "$T/k.npy.ckpt" || fail "the checkpoint does not name $partial: $(cat "$T/k.npy.ckpt")"
[ "$(wc -c <"$partial")" -eq $((128 + 12 * ROW)) ] || fail "partial should hold 12 rows (past the checkpoint)"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/k.npy" --batch-size 3 --resume --quiet
cmp -s "$T/ref.npy" "$T/k.npy" || fail "resumed file differs"
[ ! -e "$partial" ] && [ ! -e "$T/k.npy.ckpt" ] && [ ! -e "$T/k.npy.lock" ] || fail "resume left the partial, checkpoint or lock: $(ls "$T")"
echo "ok: truncated to the checkpoint and finished byte-identical"

echo "== a real kill -9 at a random moment, then --resume"
MHA_TEST_DATASET_DELAY_MS=40 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/r.npy" --batch-size 2 \
  --checkpoint-every 0 --quiet 2>/dev/null &
pid=$!
sleep 0.2
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
[ ! -e "$T/r.npy" ] || fail "a killed run published its output"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/r.npy" --resume --quiet 2>/dev/null
cmp -s "$T/ref.npy" "$T/r.npy" || fail "resumed after kill -9 differs"
echo "ok: kill -9 + --resume"

echo "== SIGTERM / SIGINT stop after the chunk with a checkpoint, exit 128 + N; a changed input refuses --resume"
# interrupt SIG OUT: a slow run into OUT stopped by SIG mid-run; exit status in $rc
interrupt() {
  MHA_TEST_DATASET_DELAY_MS=40 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$2" --batch-size 2 \
    --quiet 2>"$T/stderr" &
  pid=$!
  # Signal only once the run is under way (its partial file made; the
  # handlers follow at once): a background job of a non-interactive shell
  # starts with SIGINT ignored, so a signal that beat the run's own handler
  # on a loaded machine would be lost and the run would finish with exit 0.
  n=0
  while ! ls "$2".partial.* >/dev/null 2>&1 && [ $n -lt 400 ] && kill -0 $pid 2>/dev/null; do
    sleep 0.05
    n=$((n + 1))
  done
  sleep 0.1
  kill -"$1" $pid
  set +e
  wait $pid
  rc=$?
  set -e
}
interrupt TERM "$T/t.npy"
[ $rc -eq 143 ] && grep -q "interrupted by SIGTERM" "$T/stderr" || fail "SIGTERM: exit $rc, wanted 143: $(cat "$T/stderr")"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/t.npy" --resume --quiet
cmp -s "$T/ref.npy" "$T/t.npy" || fail "resumed after SIGTERM differs"
interrupt INT "$T/i.npy"
[ $rc -eq 130 ] || fail "SIGINT: exit $rc, wanted 130 (128 + SIGINT)"
grep -q "interrupted by SIGINT after .* rows; checkpoint .*i.npy.ckpt" "$T/stderr" || fail "SIGINT: $(cat "$T/stderr")"
[ ! -e "$T/i.npy" ] && [ -s "$T/i.npy.ckpt" ] || fail "SIGINT left: $(ls "$T")"
set +e
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/i.npy" --resume --backend scalar 2>"$T/stderr"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "cannot resume: the checkpoint has 'backend" "$T/stderr" || fail "another backend resumed: $(cat "$T/stderr")"
cp "$T/x.npy" "$T/x2.npy"
set +e
"$MHA" run "$T/m.onnx" "$T/x2.npy" -o "$T/i.npy" --resume 2>"$T/stderr"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "cannot resume" "$T/stderr" || fail "another input resumed: $(cat "$T/stderr")"
[ -s "$T/i.npy.ckpt" ] && [ -s "$(ls "$T"/i.npy.partial.*)" ] || fail "a refused resume removed the checkpoint"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/i.npy" --resume --quiet
cmp -s "$T/ref.npy" "$T/i.npy" || fail "resumed after SIGINT differs"
echo "ok: SIGTERM (143) and SIGINT (130) + --resume; mismatches refused"

echo "== --resume compares the rows already scored by content, not by size and time"
MHA_TEST_DATASET_CRASH_ROWS=10 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/h.npy" --batch-size 4 \
  --checkpoint-every 0 --quiet 2>/dev/null && fail "the crash hook did not kill the run"
grep -q "^done 8$" "$T/h.npy.ckpt" || fail "checkpoint: $(cat "$T/h.npy.ckpt")"
cp -p "$T/x.npy" "$T/x.keep"
# flip FILE ROW: one byte of ROW changed, size and time kept
flip() {
  printf '\377' | dd of="$1" bs=1 seek=$((128 + $2 * ROW + 5)) conv=notrunc 2>/dev/null
  touch -r "$T/x.keep" "$1"
}
cp -p "$T/x.npy" "$T/other.npy"
flip "$T/other.npy" 2
cp -p "$T/other.npy" "$T/x.npy" # another dataset, same size and time, same inode
set +e
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/h.npy" --resume 2>"$T/stderr"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "x.npy: cannot resume: rows 0:8, already scored, are not the rows" "$T/stderr" ||
  fail "cp -p of another dataset resumed: $(cat "$T/stderr")"
# a change in rows not scored yet mixes nothing: the result is a fresh run's
cp -p "$T/x.keep" "$T/x.npy"
flip "$T/x.npy" 20
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/h.npy" --resume --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/h_fresh.npy" --quiet
cmp -s "$T/h.npy" "$T/h_fresh.npy" || fail "resumed over changed later rows differs from a fresh run"
cmp -s "$T/h.npy" "$T/ref.npy" && fail "the changed row made no difference (nothing tested)"
cp -p "$T/x.keep" "$T/x.npy"
echo "ok: a different dataset of the same size and time refused; later rows read as they are"

echo "== a stale checkpoint after a finished run: --resume says the output is complete"
MHA_TEST_DATASET_CRASH_ROWS=10 "$MHA_TESTHOOKS" run "$T/m.onnx" "$T/x.npy" -o "$T/st.npy" --batch-size 4 \
  --checkpoint-every 0 --quiet 2>/dev/null && fail "the crash hook did not kill the run"
cp "$T/st.npy.ckpt" "$T/st.saved"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/st.npy" --resume --quiet
cp "$T/st.saved" "$T/st.npy.ckpt" # as if the run had died before removing it
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/st.npy" --resume 2>"$T/stderr" ||
  fail "a stale checkpoint: $(cat "$T/stderr")"
grep -q "st.npy: already complete" "$T/stderr" || fail "a stale checkpoint: $(cat "$T/stderr")"
[ ! -e "$T/st.npy.ckpt" ] && cmp -s "$T/st.npy" "$T/ref.npy" || fail "after a stale checkpoint: $(ls "$T")"
echo "ok: already complete, the stale checkpoint removed"

echo "== shards + merge"
for i in 0 1 2; do
  "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/s$i.npy" --shard $i/3 --batch-size 3 --quiet
done
"$MHA" merge "$T/merged.npy" "$T/s2.npy" "$T/s0.npy" "$T/s1.npy" --quiet
cmp -s "$T/ref.npy" "$T/merged.npy" || fail "merged shards differ"
# the -o form, shards first
"$MHA" merge "$T/s1.npy" "$T/s0.npy" -o "$T/merged-o.npy" "$T/s2.npy" --quiet
cmp -s "$T/ref.npy" "$T/merged-o.npy" || fail "merge -o: merged shards differ"
set +e
"$MHA" merge "$T/bad.npy" "$T/s0.npy" "$T/s2.npy" 2>"$T/stderr"; rc1=$?
"$MHA" merge "$T/bad.npy" "$T/s0.npy" "$T/s1.npy" "$T/s1.npy" "$T/s2.npy" 2>"$T/stderr2"; rc2=$?
"$MHA" merge "$T/bad.npy" "$T/ref.npy" 2>"$T/stderr3"; rc3=$?
"$MHA" merge "$T/bad.npy" "$T/s1.npy" "$T/s2.npy" 2>"$T/stderr4"; rc4=$?
"$MHA" merge "$T/bad.npy" "$T/s1.npy" "$T/s0.npy" 2>"$T/stderr5"; rc5=$?
set -e
# a gap names the shards around it (the line named no file)
[ $rc1 -eq 1 ] && grep -q "^mha: $T/s2.npy: rows 7:15 of 23 are in no shard given: $T/s0.npy ends at row 7, $T/s2.npy starts at row 15" "$T/stderr" ||
  fail "missing shard: $(cat "$T/stderr")"
[ $rc4 -eq 1 ] && grep -q "^mha: $T/s1.npy: rows 0:7 of 23 are in no shard given: the first shard starts at row 7" "$T/stderr4" ||
  fail "missing first shard: $(cat "$T/stderr4")"
[ $rc5 -eq 1 ] && grep -q "^mha: $T/s1.npy: rows 15:23 of 23 are in no shard given: the last shard ends at row 15" "$T/stderr5" ||
  fail "missing last shard: $(cat "$T/stderr5")"
[ $rc2 -eq 1 ] && grep -q "overlapping" "$T/stderr2" || fail "overlap: $(cat "$T/stderr2")"
[ $rc3 -eq 1 ] && grep -q "not a shard file" "$T/stderr3" || fail "not a shard: $(cat "$T/stderr3")"
[ ! -e "$T/bad.npy" ] || fail "a failed merge wrote its output"
for i in 0 1 2; do
  SLURM_ARRAY_TASK_ID=$((i + 1)) SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=3 \
    "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/slurm$i.npy" --quiet
  cmp -s "$T/s$i.npy" "$T/slurm$i.npy" || fail "SLURM task $i differs from --shard $i/3"
done
echo "ok: shards merge byte-identical; gaps and overlaps refused; SLURM array picks the shard"

echo "== shards of another run are refused, naming the file and what differs"
# each shard's header names its run: another model, precision, dataset of
# the same shape or lengths, or another count of shards, is no shard of it
grep -a -q "# mha-shard rows 7:15 of 23; run shard 1/3; model [0-9a-f]\{16\}; precision float32; data [0-9a-f]\{16\}; lengths none; output 0" "$T/s1.npy" ||
  fail "shard run note: $(head -c 320 "$T/s1.npy")"
"$MHA" gen -d $D -H 4 --kv-heads 2 --seed 6 -o "$T/m2.onnx" --data "$T/x2.npy" --batch $B --seq $S
npy "$T/len1.npy" '<i8' "($B,)"
for b in $(seq 0 $((B - 1))); do le64 $((S - b % 2)) >>"$T/len1.npy"; done
"$MHA" run "$T/m2.onnx" "$T/x.npy" -o "$T/o_model.npy" --shard 1/3 --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/o_prec.npy" --shard 1/3 --precision bfloat16 --quiet
"$MHA" run "$T/m.onnx" "$T/x2.npy" -o "$T/o_data.npy" --shard 1/3 --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/o_len.npy" --shard 1/3 --lengths "$T/len1.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/o_n0.npy" --shard 0/2 --quiet
for k in model:model prec:precision data:dataset len:lengths; do
  f=${k%%:*} what=${k#*:}
  set +e
  "$MHA" merge "$T/bad.npy" "$T/s0.npy" "$T/o_$f.npy" "$T/s2.npy" 2>"$T/stderr"; rc=$?
  set -e
  [ $rc -eq 1 ] && [ "$(wc -l <"$T/stderr")" = 1 ] &&
    grep -q "^mha: $T/o_$f.npy: a shard of another run: its $what is .*, $T/s0.npy's is " "$T/stderr" ||
    fail "merge of a shard of another $what: exit $rc: $(cat "$T/stderr")"
done
set +e
"$MHA" merge "$T/bad.npy" "$T/s0.npy" "$T/o_prec.npy" "$T/s2.npy" 2>"$T/stderr"
set -e
grep -q "its precision is bfloat16, $T/s0.npy's is float32$" "$T/stderr" ||
  fail "precision not named: $(cat "$T/stderr")"
set +e
"$MHA" merge "$T/bad.npy" "$T/o_n0.npy" "$T/s2.npy" 2>"$T/stderr"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "its number of shards is 3, $T/o_n0.npy's is 2" "$T/stderr" ||
  fail "merge of shards of 2 and 3: exit $rc: $(cat "$T/stderr")"
[ ! -e "$T/bad.npy" ] || fail "a refused merge wrote its output"
echo "ok: shards of another model, precision, dataset, lengths or shard count refused"

echo "== MPI"
MPI_BIN="$(dirname "$MHA")/mha-mpi"
# The make targets install Open MPI, so mha-mpi is always built: its absence
# is a failure, not a skip.
[ -x "$MPI_BIN" ] || fail "no $MPI_BIN (Open MPI missing: install libopenmpi-dev openmpi-bin)"
command -v mpirun >/dev/null 2>&1 || fail "no mpirun (install openmpi-bin)"
# Open MPI's own runtime leaks at exit; under ASan leave its leaks out (the
# engine's are checked by every other test).
MPI_ASAN="${ASAN_OPTIONS:-}:detect_leaks=0"
ASAN_OPTIONS="$MPI_ASAN" mpirun --oversubscribe --allow-run-as-root -n 2 "$MPI_BIN" run --mpi \
  "$T/m.onnx" "$T/x.npy" -o "$T/mpi.npy" --batch-size 4 --threads 1 --quiet
cmp -s "$T/ref.npy" "$T/mpi.npy" || fail "mpirun -n 2 differs"
ASAN_OPTIONS="$MPI_ASAN" mpirun --oversubscribe --allow-run-as-root -n 3 "$MPI_BIN" run --mpi \
  "$T/m.onnx" "$T/x.npy" -o "$T/mpi3.npy" --batch-size 5 --threads 1 --quiet
cmp -s "$T/ref.npy" "$T/mpi3.npy" || fail "mpirun -n 3 differs"
echo "ok: mpirun -n 2 and -n 3 byte-identical"
# a shard under MPI (--shard, or a SLURM array task whose job runs
# mpirun): the ranks split its rows and write its shard file, run note and
# all, the bytes one process writes for it, which mha merge takes
ASAN_OPTIONS="$MPI_ASAN" mpirun --oversubscribe --allow-run-as-root -n 2 "$MPI_BIN" run --mpi \
  "$T/m.onnx" "$T/x.npy" -o "$T/mpi_s1.npy" --shard 1/3 --batch-size 3 --threads 1 --quiet
cmp -s "$T/s1.npy" "$T/mpi_s1.npy" || fail "mpirun -n 2 --shard 1/3 differs from the shard of one process"
SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=3 ASAN_OPTIONS="$MPI_ASAN" mpirun --oversubscribe \
  --allow-run-as-root -n 3 "$MPI_BIN" run --mpi "$T/m.onnx" "$T/x.npy" -o "$T/mpi_s2.npy" \
  --batch-size 2 --threads 1 --quiet
cmp -s "$T/s2.npy" "$T/mpi_s2.npy" || fail "mpirun -n 3 in SLURM array task 2/3 differs from --shard 2/3"
"$MHA" merge -q "$T/mpi_merged.npy" "$T/s0.npy" "$T/mpi_s1.npy" "$T/mpi_s2.npy"
cmp -s "$T/ref.npy" "$T/mpi_merged.npy" || fail "shards written under MPI merged differ"
echo "ok: a shard under MPI is the shard file one process writes (--shard, SLURM array)"
# a rank that fails (a token id past the vocabulary in the last row, rank
# 1's) stops the others at the next collective step and no partial file
# is left (MPI_Abort left rank 0's behind)
BD="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4"
cp "$BD/dataset/input_ids.npy" "$T/bad_ids.npy"
printf '\377\377\377\000\000\000\000\000' | dd of="$T/bad_ids.npy" bs=1 seek=$((128 + (4 * 6 + 2) * 8)) \
  conv=notrunc 2>/dev/null
set +e
ASAN_OPTIONS="$MPI_ASAN" mpirun --oversubscribe --allow-run-as-root -n 2 "$MPI_BIN" run --mpi \
  "$BD/model.onnx" "$T/bad_ids.npy" "$BD/dataset/attention_mask.npy" "$BD/dataset/token_type_ids.npy" \
  -o "$T/mh.npy" "$T/mp.npy" --batch-size 1 --threads 1 --quiet >"$T/mpi.out" 2>"$T/mpi.err"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "mpirun with a bad row: exit 0"
grep -q "^mha: .*bad_ids.npy: row 4: input 'input_ids' \[0, 2\]: token id 16777215 is outside" "$T/mpi.err" ||
  fail "mpirun with a bad row: $(cat "$T/mpi.err")"
[ "$(grep -c '^mha' "$T/mpi.err")" = 1 ] || fail "mpirun with a bad row: not one line: $(cat "$T/mpi.err")"
left=$(ls -A "$T" | grep -e '^mh\.npy' -e '^mp\.npy' || true)
[ -z "$left" ] || fail "mpirun with a bad row left: $left"
echo "ok: a failing rank stops every rank, nothing left"

echo "== --lengths: a padded row equals the row alone at its length"
npy "$T/len.npy" '<i8' "($B,)"
for b in $(seq 0 $((B - 1))); do le64 $(( (b * 5 + 3) % (S + 1) )) >>"$T/len.npy"; done
"$MHA" run "$T/m.onnx" "$T/x.npy" --lengths "$T/len.npy" -o "$T/yl.npy" --batch-size 4 --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" --lengths "$T/len.npy" -o "$T/yl1.npy" --batch-size 1000 --quiet
cmp -s "$T/yl.npy" "$T/yl1.npy" || fail "--lengths: chunked differs from one chunk"
checked=0
for b in 0 1 2 5 9 13 22; do
  L=$(( (b * 5 + 3) % (S + 1) ))
  if [ $L -gt 0 ]; then
    npy "$T/row.npy" '<f4' "(1, $L, $D)"
    bytes "$T/x.npy" $((128 + b * ROW)) $((L * D * 4)) >>"$T/row.npy"
    "$MHA" run "$T/m.onnx" "$T/row.npy" -o "$T/rowy.npy" --quiet
    bytes "$T/rowy.npy" 128 $((L * D * 4)) >"$T/alone.raw"
    bytes "$T/yl.npy" $((128 + b * ROW)) $((L * D * 4)) >"$T/padded.raw"
    cmp -s "$T/alone.raw" "$T/padded.raw" || fail "--lengths: row $b (length $L) differs from the row alone"
  fi
  head -c $(((S - L) * D * 4)) /dev/zero >"$T/zeros.raw"
  bytes "$T/yl.npy" $((128 + b * ROW + L * D * 4)) $(((S - L) * D * 4)) | cmp -s - "$T/zeros.raw" ||
    fail "--lengths: row $b is not zero past its length $L"
  checked=$((checked + 1))
done
echo "ok: $checked rows with --lengths equal the rows alone, zero past their length"

echo "== usage"
set +e
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/u.pb" --resume 2>/dev/null; rc1=$?
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/u.npy" --shard 3/3 2>/dev/null; rc2=$?
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/u.npy" --batch-size 0 2>/dev/null; rc3=$?
"$MHA" merge 2>/dev/null; rc4=$?
set -e
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] && [ $rc4 -eq 2 ] || fail "usage errors: $rc1 $rc2 $rc3 $rc4"
echo "ok: usage errors exit 2"

echo "dataset.sh: all passed"
