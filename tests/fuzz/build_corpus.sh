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

# Each file list goes through one tar pipe (renaming on the way) rather than
# one cp per file: a process costs tens of milliseconds on a busy CI machine,
# and the corpora hold thousands of files.
# copy <from dir> <to dir> <tar --transform> : the files named on stdin
# (relative to <from dir>) copied under their transformed names
copy() {
    tar -C "$1" -cf - --transform="$3" -T - | tar -C "$2" -xf - --no-same-owner
}
# name each copy after its folder so that cases do not overwrite each other
(cd "$data" && find . -name model.onnx -size -257k -printf '%P\n' | sort) |
    copy "$data" "$seeds/onnx_model" 's|^\(.*/\)\{0,1\}\([^/]*\)/model\.onnx$|\2.onnx|'
(cd "$data" && find . -name '*.pb' -printf '%P\n' | sort) |
    copy "$data" "$seeds/tensor_proto" 's|/|_|g'
cp "$fuzz"/seeds/onnx_model/*.onnx "$seeds/onnx_model/"
cp "$fuzz"/seeds/npy/*.npy "$seeds/npy/"
cp "$fuzz"/seeds/external_data/* "$seeds/external_data/"
for t in onnx_model tensor_proto npy external_data; do
    for kind in corpus:corpus regressions:regression; do
        dir=$fuzz/${kind%%:*}/$t
        [ -d "$dir" ] || continue
        (cd "$dir" && find . -maxdepth 1 -type f ! -name 'README*' ! -name '.*' -printf '%P\n' |
            sort) | copy "$dir" "$seeds/$t" "s|^|${kind#*:}-|"
    done
done
for t in onnx_model tensor_proto npy external_data; do
    printf 'corpus %-14s %4d seed files\n' "$t" "$(ls "$seeds/$t" | wc -l)"
done
