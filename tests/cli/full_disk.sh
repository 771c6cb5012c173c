#!/bin/sh
# full_disk.sh -- every writer on a full file system (a 12 KiB tmpfs in a
# private mount namespace): exit 1, one line saying "No space left on
# device", nothing left behind -- except a dataset run whose checkpoint
# could not be written: the previous checkpoint and the partial file it
# names are kept, and once there is room --resume finishes the same bytes
# (the partial file used to be removed under the checkpoint naming it).
# Skipped (77) where mount namespaces are not allowed.
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/full"
if [ "${1:-}" != inside ]; then
  # as root a mount namespace; otherwise a user namespace mapping root
  for how in "-m" "-rm"; do
    if unshare $how true 2>/dev/null; then
      exec unshare $how sh "$0" inside
    fi
  done
  echo "SKIP: no mount namespace"
  exit 77
fi
mount -t tmpfs -o size=12k tmpfs "$T/full" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs"; exit 77; }
. "$(dirname "$0")/lib/refusal.sh"
leftovers() { ls -A "$1" | grep -e '\.tmp\.' -e '\.partial\.' -e '\.ckpt$' -e '\.lock$' || true; }

F="$T/full"
"$MHA" gen -d 16 -H 2 --seed 3 -o "$T/m.onnx" --data "$T/x.npy" --batch 40 --seq 5
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/s0.npy" --shard 0/2 --quiet
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/s1.npy" --shard 1/2 --quiet

echo "== one-shot writers"
for w in run-pb gen gen-data merge; do
  case $w in
    run-pb) expect 1 "$w" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$F/y.pb" --quiet ;;
    gen) expect 1 "$w" "$MHA" gen -d 64 -H 2 -o "$F/g.onnx" ;;
    gen-data) expect 1 "$w" "$MHA" gen -d 16 -H 2 -o "$T/g.onnx" --data "$F/d.npy" --batch 1000 --seq 5 ;;
    merge) expect 1 "$w" "$MHA" merge "$F/o.npy" "$T/s0.npy" "$T/s1.npy" --quiet ;;
  esac
  grep -q "No space left on device" "$T/err" || fail "$w: $(cat "$T/err")"
  [ -z "$(ls -A "$F")" ] || fail "$w left: $(ls -A "$F")"
done
echo "ok: exit 1, one line, nothing left"

echo "== a dataset run whose checkpoint no longer fits"
expect 1 "dataset" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$F/y.npy" --batch-size 5 --checkpoint-every 0 --quiet
grep -q "No space left on device" "$T/err" || fail "dataset: $(cat "$T/err")"
part=$(leftovers "$F" | grep partial || true)
[ -n "$part" ] && [ -e "$F/y.npy.ckpt" ] || fail "dataset left '$(leftovers "$F")' (want the checkpoint and its partial file)"
grep -q "$part" "$F/y.npy.ckpt" || fail "the checkpoint does not name $part"
mount -o remount,size=1m "$F"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$F/y.npy" --batch-size 5 --checkpoint-every 0 --resume --quiet
cmp -s "$F/y.npy" "$T/ref.npy" || fail "the resumed output differs"
[ -z "$(leftovers "$F")" ] || fail "after --resume: $(leftovers "$F")"
echo "ok: the checkpoint and its partial are kept; --resume finishes the same bytes"
