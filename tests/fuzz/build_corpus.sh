#!/bin/sh
# build_corpus.sh -- builds the seed corpora of the fuzz targets from the
# project's own files:
#   onnx_model     tests/data/**/model.onnx (up to 256 KiB each) and
#                  tests/fuzz/seeds/onnx_model/*.onnx (mask forms and tiny
#                  whole models of a few KB, make_seeds.py)
#   tensor_proto   tests/data/**/*.pb
#   npy            tests/fuzz/seeds/npy/*.npy (numpy-written, make_seeds.py)
#   external_data  tests/fuzz/seeds/external_data/*
# plus, for every target, the committed minimized corpus
# (tests/fuzz/corpus/<t>, merge_corpus.sh) and its regression inputs
# (tests/fuzz/regressions/<t>).
#
# usage: build_corpus.sh <tests/data> <tests/fuzz> <out>
# Writes <out>/seeds/<target>/ (replaced each time). The fuzzers add what
# they find to <out>/work/<target>/, which this script leaves alone.
set -eu
data=$1
fuzz=$2
out=$3
seeds=$out/seeds
rm -rf "$seeds"
mkdir -p "$seeds/onnx_model" "$seeds/tensor_proto" "$seeds/npy" "$seeds/external_data"
for t in onnx_model tensor_proto npy external_data; do
    mkdir -p "$out/work/$t"
done

# name each copy after its folder so that cases do not overwrite each other
find "$data" -name model.onnx -size -257k | sort | while read -r f; do
    case_name=$(basename "$(dirname "$f")")
    cp "$f" "$seeds/onnx_model/$case_name.onnx"
done
find "$data" -name '*.pb' | sort | while read -r f; do
    rel=${f#"$data"/}
    cp "$f" "$seeds/tensor_proto/$(printf '%s' "$rel" | tr '/' '_')"
done
cp "$fuzz"/seeds/onnx_model/*.onnx "$seeds/onnx_model/"
cp "$fuzz"/seeds/npy/*.npy "$seeds/npy/"
cp "$fuzz"/seeds/external_data/* "$seeds/external_data/"
for t in onnx_model tensor_proto npy external_data; do
    for f in "$fuzz/corpus/$t"/*; do
        [ -f "$f" ] || continue
        cp "$f" "$seeds/$t/corpus-$(basename "$f")"
    done
    for f in "$fuzz/regressions/$t"/*; do
        [ -f "$f" ] || continue
        case $(basename "$f") in README*) continue ;; esac
        cp "$f" "$seeds/$t/regression-$(basename "$f")"
    done
done
for t in onnx_model tensor_proto npy external_data; do
    printf 'corpus %-14s %4d seed files\n' "$t" "$(ls "$seeds/$t" | wc -l)"
done
