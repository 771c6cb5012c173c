#!/bin/sh
# Installs the build into a temporary prefix, then builds a consumer of the
# installed SDK through find_package(mha) and through pkg-config, builds the
# out-of-tree example plugin against it, and runs the consumer with the
# installed plugins and with the example plugin.
set -eu
: "${MHA_BUILD_DIR:?}" "${MHA_SOURCE_DIR:?}" "${MHA_TEST_TMP:?}" "${MHA_TEST_DATA:?}"
rm -rf "$MHA_TEST_TMP" && mkdir -p "$MHA_TEST_TMP"
prefix="$MHA_TEST_TMP/prefix"
model="$MHA_TEST_DATA/conformance/mha_self_d32_h2_b2_s8/model.onnx"

echo "== cmake --install into $prefix"
cmake --install "$MHA_BUILD_DIR" --prefix "$prefix" >/dev/null
libdir="$prefix/lib"
[ -d "$prefix/lib64" ] && libdir="$prefix/lib64"
for f in include/mha/mha.h include/mha/tensor_file.h include/mha/npy.h include/mha/plugin.h; do
  [ -f "$prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
ls "$libdir"/libmha.so* >/dev/null
ls "$libdir"/mha/plugins/mha-plugin-*.so >/dev/null
[ -f "$libdir/cmake/mha/mhaConfig.cmake" ] || { echo "FAIL: no CMake package"; exit 1; }
[ -f "$libdir/pkgconfig/mha.pc" ] || { echo "FAIL: no pkg-config file"; exit 1; }
for p in mha mha-run mha-check mha-info mha-bench; do
  [ -f "$prefix/share/man/man1/$p.1" ] || { echo "FAIL: man page $p.1 not installed"; exit 1; }
done
# the SONAME carries major.minor while the major version is 0 (the CMake
# version file's SameMinorVersion rule)
soname=$(objdump -p "$libdir/libmha.so" | awk '$1 == "SONAME" { print $2 }')
case "$soname" in
libmha.so.0.[0-9]*) ;;
*) echo "FAIL: SONAME '$soname' is not libmha.so.0.MINOR"; exit 1 ;;
esac

echo "== consumer through find_package(mha)"
cmake -S "$MHA_SOURCE_DIR/tests/install" -B "$MHA_TEST_TMP/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$MHA_TEST_TMP/consumer" >/dev/null
out=$(env -u MHA_PLUGIN_PATH -u MHA_BACKEND "$MHA_TEST_TMP/consumer/consumer" "$model")
echo "$out"
echo "$out" | grep -q "^plugin avx2 usable=" || { echo "FAIL: installed plugins not found beside libmha"; exit 1; }
echo "$out" | grep -q "^ran " || { echo "FAIL: consumer did not run"; exit 1; }

echo "== consumer through pkg-config"
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --exists mha
cc -o "$MHA_TEST_TMP/consumer-pc" "$MHA_SOURCE_DIR/tests/install/consumer.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs mha) -Wl,-rpath,"$libdir"
env -u MHA_PLUGIN_PATH -u MHA_BACKEND "$MHA_TEST_TMP/consumer-pc" "$model" scalar | grep "^ran "

echo "== example plugin built against the installed SDK"
cmake -S "$MHA_SOURCE_DIR/plugins/example" -B "$MHA_TEST_TMP/example" \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$MHA_TEST_TMP/example" >/dev/null
so=$(find "$MHA_TEST_TMP/example" -name 'mha-plugin-*.so' | head -n 1)
[ -n "$so" ] || { echo "FAIL: example plugin not built"; exit 1; }
out=$(MHA_PLUGIN_PATH="$(dirname "$so")" "$MHA_TEST_TMP/consumer/consumer" "$model" example)
echo "$out"
echo "$out" | grep -q "backend example" || { echo "FAIL: example plugin not selected"; exit 1; }
echo "== the plugin test kit on the example plugin"
MHA_PLUGIN_PATH="$(dirname "$so")" "$prefix/bin/mha" backends --check --backend example | tail -n 1 | grep -q "^[0-9]* passed, 0 failed$" || { echo "FAIL: example plugin fails the kit"; exit 1; }
echo "install: ok"
