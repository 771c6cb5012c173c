#!/bin/sh
# Installs, with apt-get, the Debian packages the build and the tests need
# that are not there yet. Quiet when everything is installed.
set -eu
want="cmake make gcc clang pkg-config protobuf-c-compiler libprotobuf-c-dev libcmocka-dev
libomp-14-dev libclang-rt-14-dev python3-numpy python3-onnx valgrind libopenmpi-dev openmpi-bin"
if [ "${MHA_DEPS_EXTRA:-}" ]; then want="$want $MHA_DEPS_EXTRA"; fi
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
