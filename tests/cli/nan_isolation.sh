#!/bin/sh
# nan_isolation.sh -- a NaN in one batch item's input reaches only that
# item's output: every other item's output is bitwise what a run without the
# NaN gives, and the poisoned item's output does hold NaN. Checked for a
# plain and a causal layer, with 1 and 2 threads (batch items share GEMM
# tiles and worker threads, so a leak across items would show here).
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }

B=4 S=6 D=32
item=$((S * D * 4)) # bytes of one batch item, input and output alike

# header length of a .npy file: bytes 8-9, little-endian (version 1.0)
npy_header() {
  set -- $(od -An -v -tu1 -j8 -N2 "$1")
  echo $((10 + $1 + 256 * $2))
}

# slice FILE K: the bytes of batch item K
slice() {
  h=$(npy_header "$1")
  tail -c +$((h + $2 * item + 1)) "$1" | head -c "$item"
}

# the count of NaN floats in item K of FILE
nans() {
  slice "$1" "$2" | od -An -v -tf4 | tr -s ' ' '\n' | grep -ci nan || true
}

for variant in plain causal; do
  flag=""
  [ "$variant" = causal ] && flag="--causal"
  # shellcheck disable=SC2086
  "$MHA" gen -d $D -H 4 $flag --seed 11 -o "$T/$variant.onnx" --data "$T/x.npy" --batch $B --seq $S
  h=$(npy_header "$T/x.npy")
  for poisoned in 0 2 3; do
    # a quiet NaN (0x7fc00000, little-endian) into token 1, feature 5 of item $poisoned
    cp "$T/x.npy" "$T/xnan.npy"
    off=$((h + poisoned * item + (1 * D + 5) * 4))
    printf '\000\000\300\177' | dd of="$T/xnan.npy" bs=1 seek=$off conv=notrunc 2>/dev/null
    for threads in 1 2; do
      "$MHA" run "$T/$variant.onnx" "$T/x.npy" -o "$T/y.npy" --threads $threads --quiet
      "$MHA" run "$T/$variant.onnx" "$T/xnan.npy" -o "$T/ynan.npy" --threads $threads 2>"$T/run.err"
      # the summary counts sequences (batch items) with a non-finite output
      grep -q "; 1 rows with non-finite outputs;" "$T/run.err" ||
        fail "$variant: the summary does not count the poisoned item: $(cat "$T/run.err")"
      k=0
      while [ $k -lt $B ]; do
        slice "$T/y.npy" $k >"$T/a.bin"
        slice "$T/ynan.npy" $k >"$T/b.bin"
        [ "$(wc -c <"$T/b.bin")" -eq "$item" ] || fail "short output slice"
        if [ $k -eq $poisoned ]; then
          # every row that sees token 1 is NaN, its own row included (all of
          # its scores are NaN: never taken for a fully masked row): all S
          # rows, or rows 1..S-1 under the causal mask
          n=$(nans "$T/ynan.npy" $k)
          want=$((S * D))
          [ "$variant" = causal ] && want=$(((S - 1) * D))
          [ "$n" -eq "$want" ] ||
            fail "$variant, $threads threads: item $k: $n NaN outputs, wanted $want"
          [ "$(nans "$T/y.npy" $k)" -eq 0 ] || fail "$variant: NaN without a NaN input"
        else
          cmp -s "$T/a.bin" "$T/b.bin" ||
            fail "$variant, $threads threads: a NaN in item $poisoned changed item $k"
        fi
        k=$((k + 1))
      done
      echo "ok: $variant layer, $threads thread(s): NaN in item $poisoned stays in item $poisoned ($n NaN outputs)"
    done
  done
done

echo "nan_isolation.sh: all passed"
