#!/bin/sh
# plugin_isolation.sh -- a plugin whose probe crashes (SIGSEGV) sits in
# MHA_PLUGIN_PATH: `mha backends` lists it as unusable with the signal and
# exits 0; `mha run` with --backend scalar, avx2 or auto still works (a
# named backend does not even open other files; auto probes each file in a
# child process first). Plugins writable by others are refused by name.
# Env: MHA (the binary), MHA_TEST_TMP, MHA_BUILD_DIR.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}" "${MHA_BUILD_DIR:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/plugins"
die() { echo "FAIL: $*" >&2; exit 1; }

cp "$MHA_BUILD_DIR/lib/mha/testing-plugins/mha-plugin-test-crashprobe.so" "$T/plugins/"
chmod 755 "$T/plugins" "$T/plugins/mha-plugin-test-crashprobe.so"
"$MHA" gen -d 16 -H 2 --seed 4 -o "$T/m.onnx" --data "$T/x.npy" --batch 2 --seq 3

MHA_PLUGIN_PATH="$T/plugins" "$MHA" backends >"$T/list" 2>"$T/err" ||
  die "mha backends failed with a crashing plugin around: $(cat "$T/err")"
grep -q "crashprobe.so.*killed by signal 11" "$T/list" ||
  die "mha backends does not say why the plugin is unusable: $(cat "$T/list")"
echo "ok: mha backends lists the crashing plugin as unusable"

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
