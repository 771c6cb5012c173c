#!/bin/sh
# merge_corpus.sh -- folds what the fuzzers found into the committed,
# minimized corpus tests/fuzz/corpus/<target>/ (libFuzzer -merge=1: an input
# is kept only if it adds coverage, smaller inputs preferred). Model inputs
# over 8 KiB are left out to keep the repository small. Run after a long
# `make fuzz`; review and commit the result.
#
# usage: tests/fuzz/merge_corpus.sh [build-fuzz]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-fuzz}
corpus=$build/tests/fuzz/corpus
out=$root/tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in onnx_model npy tensor_proto external_data; do
    mkdir -p "$out/$t" "$tmp/$t"
    # candidates: the committed corpus, the seeds and what the fuzzers found
    # (regression inputs stay in regressions/, not here)
    for d in "$out/$t" "$corpus/seeds/$t" "$corpus/work/$t"; do
        [ -d "$d" ] || continue
        find "$d" -type f ! -name 'regression-*' ! -name 'README*' -size -8k \
            -exec cp {} "$tmp/$t/" \;
    done
    rm -rf "$out/$t.new"
    mkdir -p "$out/$t.new"
    "$build/bin/fuzz_$t" -merge=1 -timeout=5 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        "$out/$t.new" "$tmp/$t" >"$tmp/$t.log" 2>&1 ||
        { tail -20 "$tmp/$t.log"; exit 1; }
    rm -rf "$out/$t"
    mv "$out/$t.new" "$out/$t"
    printf 'corpus %-14s %4d files, %7d bytes\n' "$t" "$(ls "$out/$t" | wc -l)" \
        "$(cat "$out/$t"/* 2>/dev/null | wc -c)"
done
