#!/bin/sh
# install-deps.sh [build|test] -- installs, with apt-get, the Debian packages
# that are not there yet. `build` (what `make build` and `make run` need):
# the compiler, CMake, protobuf-c, libmicrohttpd (`mha serve`) and libcurl
# (serve-load, the serving load generator). `test`
# (what `make test` needs besides): clang with its sanitizer and fuzzer
# runtimes, cmocka, valgrind, Open MPI for the MPI test, numpy and onnx for
# the corpus generators, groff for the man-page test, curl for the serve
# test, Ninja for the sanitizer and fuzz builds (faster than Make here). Quiet when
# everything is installed. MHA_DEPS_EXTRA adds packages to either list.
set -eu
build="cmake make gcc pkg-config protobuf-c-compiler libprotobuf-c-dev libmicrohttpd-dev
libcurl4-openssl-dev"
test="clang libcmocka-dev libomp-14-dev libclang-rt-14-dev python3-numpy python3-onnx valgrind
libopenmpi-dev openmpi-bin groff-base curl ninja-build"
case "${1:-test}" in
build) want="$build" ;;
test) want="$build $test" ;;
*)
  echo "usage: install-deps.sh [build|test]" >&2
  exit 2
  ;;
esac
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
