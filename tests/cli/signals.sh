#!/bin/sh
# signals.sh -- SIGTERM / SIGINT sent the moment a writer's temporary file
# exists (a preload library raises it right after mkostemp returns, so the
# window is hit every time, not by luck): every command that writes a file
# -- run (one shot and dataset), gen (model and data), merge, bench --json,
# peak --json -- ends by the signal (exit 128 + N) and leaves no temporary,
# lock or partial file, and no half-written output; a dataset run keeps
# exactly a checkpoint and the partial file it names, and --resume finishes
# it to the same bytes. (Signals polled for mid-copy: outputs.sh.)
# Env: MHA (the binary), MHA_BUILD_DIR, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_BUILD_DIR:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
SHIM="$MHA_BUILD_DIR/lib/signal_at_tmp.so"
[ -f "$SHIM" ] || { echo "SKIP: $SHIM not built"; exit 77; }
# a sanitizer runtime wants to be loaded first; the shim is loaded before it
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
export ASAN_OPTIONS

fail() { echo "FAIL: $*" >&2; exit 1; }
# leftovers DIR: temporaries, partials, checkpoints or locks left in DIR
leftovers() { ls -A "$1" | grep -e '\.tmp\.' -e '\.partial\.' -e '\.ckpt$' -e '\.lock$' || true; }
# signalled "SIG N" WANT NAME CMD...: runs CMD with SIG raised right after
# its N-th temporary file is created; wants exit WANT; stderr in $T/err
signalled() {
  spec=$1 want=$2 name=$3
  shift 3
  set +e
  LD_PRELOAD="$SHIM" MHA_TEST_SIGNAL_AT_TMP="$spec" "$@" >"$T/out" 2>"$T/err"
  got=$?
  set -e
  [ "$got" -eq "$want" ] || fail "$name: exit $got, wanted $want ($(cat "$T/err"))"
}
STERM=15 SINT=2

"$MHA" gen -d 16 -H 2 --seed 3 -o "$T/m.onnx" --data "$T/x.npy" --batch 6 --seq 5
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.pb" --quiet

echo "== mha run (one shot): the output's temporary"
signalled "$STERM 1" 143 "run -o y.pb, SIGTERM" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.pb" --quiet
[ ! -e "$T/y.pb" ] && [ -z "$(leftovers "$T")" ] || fail "run SIGTERM left: $(leftovers "$T") $(ls "$T")"
grep -q "y.pb: interrupted by SIGTERM; nothing written" "$T/err" || fail "run message: $(cat "$T/err")"
signalled "$SINT 1" 130 "run -o y.pb, SIGINT" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.pb" --quiet
[ ! -e "$T/y.pb" ] && [ -z "$(leftovers "$T")" ] || fail "run SIGINT left: $(leftovers "$T")"
# an older output stays as it was
cp "$T/ref.npy" "$T/old.pb"
signalled "$STERM 1" 143 "run over an older file" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/old.pb" --quiet
cmp -s "$T/old.pb" "$T/ref.npy" && [ -z "$(leftovers "$T")" ] || fail "the older output changed"
rm -f "$T/old.pb"
echo "ok: run ends by the signal, nothing written, nothing left"

echo "== mha run (dataset): the partial file"
signalled "$STERM 1" 143 "dataset run, SIGTERM" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/d.npy" \
  --batch-size 2 --checkpoint-every 0 --quiet
[ ! -e "$T/d.npy" ] || fail "dataset run published d.npy"
left=$(leftovers "$T" | sort | tr '\n' ' ')
case "$left" in
  "d.npy.ckpt d.npy.partial."??????" ") ;;
  *) fail "dataset SIGTERM left '$left' (want a checkpoint and its partial file)" ;;
esac
grep -q "$(leftovers "$T" | grep partial)" "$T/d.npy.ckpt" || fail "the checkpoint does not name the partial file"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/d.npy" --batch-size 2 --resume --quiet
cmp -s "$T/d.npy" "$T/ref.npy" && [ -z "$(leftovers "$T")" ] || fail "resume after SIGTERM: $(leftovers "$T")"
rm -f "$T/d.npy"
echo "ok: a dataset run keeps a checkpoint naming its partial file; --resume finishes it"

echo "== mha gen: the model's temporary, then the data's"
signalled "$STERM 1" 143 "gen, SIGTERM at the model" "$MHA" gen -d 16 -H 2 --seed 3 -o "$T/g.onnx" \
  --data "$T/g.npy" --batch 6 --seq 5
# the model is written whole in one go: there whole (the signal waits for
# it) or not at all; the data is not begun
{ [ ! -e "$T/g.onnx" ] || cmp -s "$T/g.onnx" "$T/m.onnx"; } && [ ! -e "$T/g.npy" ] &&
  [ -z "$(leftovers "$T")" ] || fail "gen SIGTERM at the model left: $(leftovers "$T") $(ls "$T")"
rm -f "$T/g.onnx"
signalled "$STERM 2" 143 "gen, SIGTERM at the data" "$MHA" gen -d 16 -H 2 --seed 3 -o "$T/g.onnx" \
  --data "$T/g.npy" --batch 6 --seq 5
# the model was published whole before the data began
cmp -s "$T/g.onnx" "$T/m.onnx" && [ ! -e "$T/g.npy" ] && [ -z "$(leftovers "$T")" ] ||
  fail "gen SIGTERM at the data left: $(leftovers "$T")"
rm -f "$T/g.onnx"
echo "ok: gen ends by the signal; only what was whole before it is there"

echo "== mha merge: the output's temporary"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/s0.npy" --shard 0/2 --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/s1.npy" --shard 1/2 --quiet
signalled "$STERM 1" 143 "merge, SIGTERM" "$MHA" merge "$T/mg.npy" "$T/s0.npy" "$T/s1.npy" --quiet
[ ! -e "$T/mg.npy" ] && [ -z "$(leftovers "$T")" ] || fail "merge SIGTERM left: $(leftovers "$T")"
echo "ok: merge"

echo "== mha bench --json / --csv: the result's temporary"
signalled "$STERM 1" 143 "bench --json, SIGTERM" "$MHA" bench "$T/m.onnx" --shape 1,4 --backend scalar \
  --threads 1 --warmup 0 --min-time 0.01 --json "$T/b.json" --csv "$T/b.csv" --quiet
[ -z "$(leftovers "$T")" ] || fail "bench SIGTERM left: $(leftovers "$T")"
# a file that is there is whole (the signal came while it was written)
for f in "$T/b.json" "$T/b.csv"; do
  [ ! -e "$f" ] || [ -s "$f" ] || fail "$f is empty"
done
[ ! -e "$T/b.json" ] || [ "$(tail -c 2 "$T/b.json" | head -c 1)" = "}" ] || fail "b.json is not whole"
echo "ok: bench"

echo "== mha peak --json"
signalled "$STERM 1" 143 "peak --json, SIGTERM" "$MHA" peak --threads 1 --seconds 0.01 --reps 1 \
  --json "$T/p.json"
[ -z "$(leftovers "$T")" ] || fail "peak SIGTERM left: $(leftovers "$T")"
echo "ok: peak"

echo "== mha run --mpi: rank 0's partial file"
# MPI-IO writes the partial file in place, so there is nothing to resume:
# a signal on any rank stops every rank at the next collective step, and
# rank 0 removes the partial file (it was left behind, exit 143).
MPI_BIN="$(dirname "$MHA")/mha-mpi"
[ -x "$MPI_BIN" ] || fail "no $MPI_BIN (Open MPI missing: install libopenmpi-dev openmpi-bin)"
command -v mpirun >/dev/null 2>&1 || fail "no mpirun (install openmpi-bin)"
for spec in "$STERM 143 SIGTERM" "$SINT 130 SIGINT"; do
  set -- $spec
  # the shim in the ranks only (mpirun's own temporaries are not counted)
  set +e
  ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" mpirun --oversubscribe --allow-run-as-root -n 2 \
    env LD_PRELOAD="$SHIM" MHA_TEST_SIGNAL_AT_TMP="$1 1" "$MPI_BIN" run --mpi "$T/m.onnx" \
    "$T/x.npy" -o "$T/mp.npy" --batch-size 2 --threads 1 --quiet >"$T/out" 2>"$T/err"
  got=$?
  set -e
  [ "$got" -eq "$2" ] || fail "run --mpi, $3: exit $got, wanted $2 ($(cat "$T/err"))"
  [ ! -e "$T/mp.npy" ] && [ -z "$(leftovers "$T")" ] || fail "run --mpi $3 left: $(leftovers "$T")"
  grep -q "mp.npy: interrupted by $3; nothing written" "$T/err" || fail "run --mpi $3: $(cat "$T/err")"
done
echo "ok: run --mpi ends by the signal and leaves no partial file"
