#!/bin/sh
# coverage.sh -- line and branch coverage of the parsers and validators
# (engine/src/onnx/onnx_load*.c, io/npy.c, io/tensorfile.c, recognize/recognize*.c).
#
# Builds with gcc --coverage (-DMHA_COVERAGE=ON) in build-cov/, runs the
# unit tests, then replays the fuzz corpora through the fuzz entries
# (test_fuzz_regressions with MHA_FUZZ_REPLAY): the seed corpus built from
# the project's files, and what `make fuzz` found if build-fuzz/ has it.
# Reports per file and in total with gcovr (installed with apt-get when
# missing), and writes build-cov/coverage/{summary.txt,index.html}.
#
# usage: tools/coverage.sh            (from anywhere; `make coverage`)
# env:   BUILD_COV (build-cov), BUILD_FUZZ (build-fuzz), JOBS, CMAKE_ARGS
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cov=${BUILD_COV:-build-cov}
fuzz=${BUILD_FUZZ:-build-fuzz}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

MHA_DEPS_EXTRA="gcovr ${MHA_DEPS_EXTRA:-}" ./tools/install-deps.sh

# shellcheck disable=SC2086
cmake -S . -B "$cov" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc -DMHA_COVERAGE=ON \
    ${CMAKE_ARGS:-} >/dev/null
cmake --build "$cov" -j "$jobs"
find "$cov" -name '*.gcda' -delete

echo "coverage: unit tests"
# a failing or hanging test of another module must not hide the numbers
(cd "$cov" && ctest --output-on-failure -j "$jobs" -R '^test_' --timeout 300) ||
    echo "coverage: WARNING: some unit tests failed (above); coverage is still reported"

echo "coverage: fuzz corpora replay"
sh tests/fuzz/build_corpus.sh tests/data tests/fuzz "$cov/fuzz-corpus" >/dev/null
replay=$root/$cov/fuzz-corpus/seeds
[ -d "$fuzz/tests/fuzz/corpus/work" ] && replay=$replay:$root/$fuzz/tests/fuzz/corpus/work
MHA_FUZZ_REPLAY=$replay MHA_PLUGIN_PATH=$root/$cov/lib/mha/plugins \
    "$cov/bin/test_fuzz_regressions" >"$cov/fuzz-replay.log" 2>&1 ||
    { cat "$cov/fuzz-replay.log"; exit 1; }
grep 'replayed' "$cov/fuzz-replay.log" | sed 's/^/  /'

# The parsers and validators: what reads untrusted bytes.
filter='engine/src/(onnx/onnx_load[a-z_]*|io/npy|io/tensorfile|recognize/recognize[a-z_]*)\.c$'
out=$cov/coverage
mkdir -p "$out"
# search only this build's .gcda files (other coverage builds may sit beside it)
gcovr_args="-r $root --object-directory $root/$cov --filter $filter --exclude-unreachable-branches $root/$cov"
# shellcheck disable=SC2086
gcovr $gcovr_args --txt "$out/lines.txt"
# shellcheck disable=SC2086
gcovr $gcovr_args --branches --txt "$out/branches.txt"
# shellcheck disable=SC2086
gcovr $gcovr_args --html-details "$out/index.html" >/dev/null 2>&1 || true
{
    echo "Line coverage (gcovr, $(gcovr --version | head -1)):"
    sed -n '/^File/,$p' "$out/lines.txt"
    echo
    echo "Branch coverage:"
    sed -n '/^File/,$p' "$out/branches.txt"
} >"$out/summary.txt"
cat "$out/summary.txt"
echo "coverage: details in $cov/coverage/index.html"
