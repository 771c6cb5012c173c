#!/bin/sh
# whole_bad_inputs.sh -- bad datasets for a whole model (the BERT of
# tests/data/models, token ids, a 0/1 attention mask and token types, all
# int64 [5, 6]) and outputs that would replace an input: each is refused
# before any work with exit 1 (bad data) or 2 (a usage error), one stderr
# line naming the file, no output left and every input unchanged.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/out"
B="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4"
D="$B/dataset"

fail() { echo "FAIL: $*" >&2; exit 1; }

# refused RC WHAT PATTERN CMD...: exit RC, one stderr line matching the
# grep pattern, nothing in $T/out
refused() {
  want=$1 what=$2 pattern=$3
  shift 3
  set +e
  "$@" >"$T/stdout" 2>"$T/stderr"
  got=$?
  set -e
  [ "$got" = "$want" ] || fail "$what: exit $got, wanted $want ($(cat "$T/stderr"))"
  [ "$(wc -l <"$T/stderr")" = 1 ] || fail "$what: not one line: $(cat "$T/stderr")"
  grep -q -- "$pattern" "$T/stderr" || fail "$what: $(cat "$T/stderr")"
  [ -z "$(ls -A "$T/out")" ] || fail "$what: left $(ls -A "$T/out")"
  echo "ok: $what: $(cat "$T/stderr")"
}
# poke FILE ROW COL BYTES: the int64 at [ROW, COL] of a [5, 6] .npy (128-
# byte header) set to BYTES (8 octal escapes, little-endian)
poke() {
  printf "$4" | dd of="$1" bs=1 seek=$((128 + ($2 * 6 + $3) * 8)) conv=notrunc 2>/dev/null
}
MINUS1='\377\377\377\377\377\377\377\377'
TWO='\002\000\000\000\000\000\000\000'
run_bert() { # run_bert IDS MASK OPTIONS...
  ids=$1 mask=$2
  shift 2
  "$MHA" run -q "$B/model.onnx" "input_ids=$ids" "attention_mask=$mask" \
    "token_type_ids=$D/token_type_ids.npy" "$@"
}

echo "== a negative token id is outside the vocabulary"
# ONNX Gather would take -1 as the table's last row; the embedding the
# model was exported from refuses it, and -1 is a padding marker
cp "$D/input_ids.npy" "$T/neg_ids.npy"
poke "$T/neg_ids.npy" 2 3 "$MINUS1"
refused 1 "token id -1" "^mha: $T/neg_ids.npy: input 'input_ids' \[2, 3\]: token id -1 is outside the vocabulary of 100 (ids in \[0, 100))" \
  run_bert "$T/neg_ids.npy" "$D/attention_mask.npy" -o "$T/out/y.npy"
refused 1 "token id -1, chunked" "^mha: $T/neg_ids.npy: rows 2-3: input 'input_ids' \[0, 3\]: token id -1" \
  run_bert "$T/neg_ids.npy" "$D/attention_mask.npy" -o "$T/out/y.npy" --batch-size 2

echo "== a 0/1 attention mask holding another value"
# the graph computes (1 - m) * c: a 2 would add -c (a huge positive score)
# where the fused layers read 'keep'; the plan was verified on 0 and 1
for v in TWO MINUS1; do
  cp "$D/attention_mask.npy" "$T/mask_$v.npy"
  eval "poke \"\$T/mask_\$v.npy\" 1 4 \"\$$v\""
  refused 1 "mask value $v" "^mha: $T/mask_$v.npy: input 'attention_mask' \[1, 4\]: mask value -*[12] is neither 0 nor 1" \
    run_bert "$D/input_ids.npy" "$T/mask_$v.npy" -o "$T/out/y.npy"
done
refused 1 "mask value 2, chunked" "^mha: $T/mask_TWO.npy: rows 0-2: input 'attention_mask' \[1, 4\]: mask value 2" \
  run_bert "$D/input_ids.npy" "$T/mask_TWO.npy" -o "$T/out/y.npy" --batch-size 3
# the same model's good run still goes through
run_bert "$D/input_ids.npy" "$D/attention_mask.npy" -o "$T/good.npy" || fail "the good run"
[ -s "$T/good.npy" ] || fail "the good run wrote nothing"

echo "== an output that is an input is refused, the input kept"
cp "$D/input_ids.npy" "$T/ids.npy"
cp "$B/model.onnx" "$T/model.onnx"
ln -s ids.npy "$T/ids_link.npy"
ln "$T/ids.npy" "$T/ids_hard.npy"
# intact: every file the runs read still holds its bytes
intact() {
  cmp -s "$T/ids.npy" "$D/input_ids.npy" || fail "$1: the ids file was replaced"
  cmp -s "$T/model.onnx" "$B/model.onnx" || fail "$1: the model was replaced"
  [ -L "$T/ids_link.npy" ] || fail "$1: the link was replaced"
}
for o in "$T/ids.npy" "$T/ids_link.npy" "$T/ids_hard.npy"; do
  refused 2 "-o $(basename "$o") (NAME=FILE)" "^mha run: the output '$o' is also the input '$T/ids.npy'" \
    "$MHA" run -q "$T/model.onnx" "input_ids=$T/ids.npy" "attention_mask=$D/attention_mask.npy" \
    "token_type_ids=$D/token_type_ids.npy" -o "$o"
  intact "-o $o"
done
refused 2 "-o the input (positional, second output, chunked)" "is also the input '$T/ids.npy'" \
  "$MHA" run -q "$T/model.onnx" "$T/ids.npy" "$D/attention_mask.npy" "$D/token_type_ids.npy" \
  -o "$T/out/y.npy" "$T/ids.npy" --batch-size 2
intact "second output"
# --lengths read as an output's file ([5] int64 lengths, here of all 6)
{
  hdr="{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }"
  printf '\223NUMPY\001\000\166\000%s' "$hdr"
  printf '%*s\n' $((118 - ${#hdr} - 1)) ''
  for _ in 1 2 3 4 5; do printf '\006\000\000\000\000\000\000\000'; done
} >"$T/len.npy"
cp "$T/len.npy" "$T/len_keep.npy"
refused 2 "-o the --lengths file" "is also the input '$T/len.npy'" \
  "$MHA" run -q "$T/model.onnx" "input_ids=$T/ids.npy" "token_type_ids=$D/token_type_ids.npy" \
  --lengths "$T/len.npy" -o "$T/len.npy"
cmp -s "$T/len.npy" "$T/len_keep.npy" || fail "the lengths file was replaced"
# --out-dir writes DIR/output_<i>.pb: an input there is kept (the test
# case's token ids, .pb)
mkdir "$T/od"
cp "$B/test_data_set_0/input_0.pb" "$T/od/output_0.pb"
refused 2 "--out-dir over an input" "is also the input '$T/od/output_0.pb'" \
  "$MHA" run -q "$T/model.onnx" "$T/od/output_0.pb" "$B/test_data_set_0/input_1.pb" \
  "$B/test_data_set_0/input_2.pb" --out-dir "$T/od"
cmp -s "$T/od/output_0.pb" "$B/test_data_set_0/input_0.pb" || fail "--out-dir replaced its input"
[ ! -e "$T/od/output_1.pb" ] || fail "--out-dir wrote beside a refused input"
# bench's result files over the model it times
for opt in --json --csv --plot; do
  refused 2 "bench $opt the model" "^mha bench: the output '$T/model.onnx' is also the input" \
    "$MHA" bench "$T/model.onnx" --shape 2,4 --threads 1 --backend scalar --warmup 1 \
    --min-time 0.01 --quiet "$opt" "$T/model.onnx"
  intact "bench $opt"
done

echo "whole_bad_inputs.sh: all passed"
