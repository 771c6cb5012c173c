#!/bin/sh
# attn_ab.sh BACKENDS_A [BACKENDS_B] OUT -- builds tests/bench/attn_ab.c, the
# paired A/B of two builds of the avx512 float32 attention core: side A from
# the backends folder BACKENDS_A (say a copy of backends/ taken before a
# change), side B from BACKENDS_B (default: this tree's backends/), the
# driver between them; OUT is the program. Flags as the avx512 plugin's
# kernels are built (-O3 and its ISA flags, no FMA contraction).
# Then: OUT B H S D [--pairs N] [--causal] [--qkv] [--per-head]
# ATTN_AB_BF16=1 builds the bfloat16 core instead (-mavx512bf16, its
# 128-key blocks, VDPBF16PS), the calls in precision bfloat16.
set -e
[ $# -ge 2 ] || { echo "usage: attn_ab.sh BACKENDS_A [BACKENDS_B] OUT" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
a=$1
if [ $# -ge 3 ]; then b=$2; out=$3; else b=$root/backends; out=$2; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc=${CC:-cc}
flags="-std=c11 -D_GNU_SOURCE -O3 -ffp-contract=off -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma"
[ "${ATTN_AB_BF16:-0}" = 1 ] && flags="$flags -mavx512bf16 -DATTN_AB_BF16"
src=$root/tests/bench/attn_ab.c
# one compile of attn_ab.c: $1 the backends folder ("" for the driver), $2 the side, $3 the object
build() {
    # shellcheck disable=SC2086 # the flags are words
    $cc $flags -I "$root/plugins/include" -I "$root/engine/include" -I "$root/tests/bench" \
        ${1:+-I "$1"} ${2:+-DATTN_AB_SIDE=$2} -c "$src" -o "$3"
}
build "$a" a "$tmp/a.o"
build "$b" b "$tmp/b.o"
build "" "" "$tmp/main.o"
$cc "$tmp/a.o" "$tmp/b.o" "$tmp/main.o" -o "$out" -lm
