#!/bin/sh
# run_fuzz.sh -- runs one libFuzzer target for a fixed time on its corpus and
# prints its speed; exits non-zero when the fuzzer found a crash, a leak, a
# timeout or an out-of-memory.
#
# usage: run_fuzz.sh <fuzzer binary> <target> <seconds> <corpus root> <dict dir>
#   corpus root: as made by build_corpus.sh (<root>/work/<t>, <root>/seeds/<t>)
# Crashing inputs are saved as <corpus root>/artifacts/<target>/crash-*;
# copy them to tests/fuzz/regressions/<target>/ once understood.
set -u
bin=$1
target=$2
seconds=$3
root=$4
dicts=$5
case $target in
    onnx_model | tensor_proto) dict=$dicts/onnx.dict ;;
    npy) dict=$dicts/npy.dict ;;
    external_data) dict=$dicts/external_data.dict ;;
    *) echo "run_fuzz.sh: unknown target $target" >&2; exit 2 ;;
esac
mkdir -p "$root/work/$target" "$root/artifacts/$target"
log=$root/artifacts/$target/last-run.log
# -timeout: one input taking over 20 s is a hang (wall-clock: the limit
# leaves room for a machine busy with other jobs, and for bounded but slow
# inputs under ASan+UBSan -- a 5 KB layer with a static [63, 64, 16] input
# is probed and verified at that size: 0.2 s in a release build, 4 s here);
# -rss/-malloc_limit: a fuzzed file must not make the engine allocate
# without bound.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
"$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20 \
    -dict="$dict" -artifact_prefix="$root/artifacts/$target/" -print_final_stats=1 \
    "$root/work/$target" "$root/seeds/$target" >"$log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*ft: \([0-9]*\).*corp: \([0-9]*\).*/cov \1, ft \2, corpus \3/p')
summary=$(printf 'fuzz %-14s %6s execs/s  %10s execs in %ss  (%s)' "$target" "${speed:-?}" \
    "${execs:-?}" "$seconds" "${cov:-no stats}")
echo "$summary"
echo "$summary" >"$root/artifacts/$target/summary.txt"
if [ "$rc" -ne 0 ]; then
    echo "fuzz $target: FAILED (exit $rc); log: $log" >&2
    grep -E 'ERROR|fuzz check failed|SUMMARY|Test unit written|artifact_prefix' "$log" | head -20 >&2
    exit 1
fi
exit 0
