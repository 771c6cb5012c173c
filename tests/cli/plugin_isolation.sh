#!/bin/sh
# plugin_isolation.sh -- plugins whose probe or init crashes (SIGSEGV) sit
# in MHA_PLUGIN_PATH: `mha backends` lists them as unusable with the signal
# and exits 0; `mha run` with --backend scalar, avx2 or auto still works (a
# named backend does not even open other files; auto probes each file in a
# child process first). Plugins writable by others are refused by name.
# Env: MHA (the binary), MHA_TEST_TMP, MHA_BUILD_DIR.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}" "${MHA_BUILD_DIR:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/plugins"
die() { echo "FAIL: $*" >&2; exit 1; }

for kind in crashprobe crashinit; do
  cp "$MHA_BUILD_DIR/lib/mha/testing-plugins/mha-plugin-test-$kind.so" "$T/plugins/"
  chmod 755 "$T/plugins/mha-plugin-test-$kind.so"
done
chmod 755 "$T/plugins"
"$MHA" gen -d 16 -H 2 --seed 4 -o "$T/m.onnx" --data "$T/x.npy" --batch 2 --seq 3

MHA_PLUGIN_PATH="$T/plugins" "$MHA" backends >"$T/list" 2>"$T/err" ||
  die "mha backends failed with a crashing plugin around: $(cat "$T/err")"
for kind in crashprobe crashinit; do
  grep -q "$kind.so.*killed by signal 11" "$T/list" ||
    die "mha backends does not say why the $kind plugin is unusable: $(cat "$T/list")"
done
grep -q "^auto picks: " "$T/list" || die "mha backends names no auto choice: $(cat "$T/list")"
! grep -q "^auto picks: broken" "$T/list" || die "auto picks the plugin whose init crashes"
echo "ok: mha backends lists the plugins whose probe or init crashes as unusable"

"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" --backend scalar --quiet
for b in scalar avx2 auto; do
  MHA_PLUGIN_PATH="$T/plugins" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y_$b.npy" --backend $b \
    --quiet 2>"$T/err" || die "run --backend $b failed: $(cat "$T/err")"
done
cmp -s "$T/ref.npy" "$T/y_scalar.npy" || die "scalar differs with the plugin folder set"
echo "ok: run with --backend scalar, avx2 and auto"

chmod 777 "$T/plugins"
MHA_PLUGIN_PATH="$T/plugins" "$MHA" backends >"$T/list" 2>"$T/err" || die "backends: $(cat "$T/err")"
grep -q "folder of the plugin .*plugins is writable by everyone: refused" "$T/list" ||
  die "a world-writable plugin folder is not refused by name: $(cat "$T/list")"
chmod 755 "$T/plugins"
echo "ok: a world-writable plugin folder is refused"
