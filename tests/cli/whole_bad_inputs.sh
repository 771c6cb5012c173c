#!/bin/sh
# whole_bad_inputs.sh -- bad datasets for a whole model (the BERT of
# tests/data/models, token ids, a 0/1 attention mask and token types, all
# int64 [5, 6]; a GPT-2 for token ids alone), sequences longer than the
# models' positions, outputs that would replace an input and read-only
# output files: each is refused with exit 1 (bad data) or 2 (a usage
# error, before any work), one stderr line naming the file, no output left
# and every input unchanged.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/out"
B="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4"
D="$B/dataset"

fail() { echo "FAIL: $*" >&2; exit 1; }

# refused RC WHAT PATTERN CMD...: exit RC, one stderr line matching the
# grep pattern, nothing on stdout, nothing in $T/out
refused() {
  want=$1 what=$2 pattern=$3
  shift 3
  set +e
  "$@" >"$T/stdout" 2>"$T/stderr"
  got=$?
  set -e
  [ "$got" = "$want" ] || fail "$what: exit $got, wanted $want ($(cat "$T/stderr"))"
  [ "$(wc -l <"$T/stderr")" = 1 ] || fail "$what: not one line: $(cat "$T/stderr")"
  [ ! -s "$T/stdout" ] || fail "$what: wrote on stdout: $(head -c 300 "$T/stdout")"
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

# ids cast before their Gather (int32 ids widened in the graph) are token
# ids too: the same check, and mha info says so
I32="$MHA_TEST_DATA/models/z_bert_idsonly_int32_op13/model.onnx"
"$MHA" info "$I32" | grep -q "input_ids  *token_ids  *int32" || fail "cast ids: not token ids: $("$MHA" info "$I32")"
. "$(dirname "$0")/lib/npy_zeros.sh"
npy_zeros "$T/ids32.npy" '<i4' '(1, 4)' 16
printf '\377\377\377\377' | dd of="$T/ids32.npy" bs=1 seek=$((128 + 8)) conv=notrunc 2>/dev/null
refused 1 "cast token id -1" "^mha: $T/ids32.npy: input 'input_ids' \[0, 2\]: token id -1 is outside the vocabulary of 64" \
  "$MHA" run -q "$I32" "$T/ids32.npy" -o "$T/out/y.npy"

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

echo "== masks and token types of another kind"
# a mask of other columns, of float32 or bool; a token type past the
# model's two; the token types left out; --lengths beside a mask file
npy_zeros "$T/mask_5cols.npy" '<i8' '(5, 5)' 200
refused 1 "mask of 5 columns beside 6 ids" "^mha: $T/mask_5cols.npy: input 'attention_mask': axis 1 ('seq') is 5, but 6" \
  run_bert "$D/input_ids.npy" "$T/mask_5cols.npy" -o "$T/out/y.npy"
npy_zeros "$T/mask_f32.npy" '<f4' '(5, 6)' 120
refused 1 "float32 mask" "^mha: $T/mask_f32.npy: float32 data cannot be used as input 'attention_mask' (int64)" \
  run_bert "$D/input_ids.npy" "$T/mask_f32.npy" -o "$T/out/y.npy"
npy_zeros "$T/mask_bool.npy" '|b1' '(5, 6)' 30
refused 1 "bool mask" "^mha: $T/mask_bool.npy: bool data cannot be used as input 'attention_mask'" \
  run_bert "$D/input_ids.npy" "$T/mask_bool.npy" -o "$T/out/y.npy"
cp "$D/token_type_ids.npy" "$T/tt_two.npy"
poke "$T/tt_two.npy" 2 3 "$TWO"
refused 1 "token type 2 of 2" "^mha: $T/tt_two.npy: input 'token_type_ids' \[2, 3\]: token type 2 is outside the model's 2 token types (ids in \[0, 2))" \
  "$MHA" run -q "$B/model.onnx" "$D/input_ids.npy" "$D/attention_mask.npy" "$T/tt_two.npy" -o "$T/out/y.npy"
refused 2 "token types left out" "input 'token_type_ids' (token_ids) has no file" \
  "$MHA" run -q "$B/model.onnx" "$D/input_ids.npy" "$D/attention_mask.npy" -o "$T/out/y.npy"
npy_zeros "$T/len5.npy" '<i8' '(5,)' 40
refused 2 "--lengths beside the mask file" "beside --lengths, which makes the mask" \
  "$MHA" run -q "$B/model.onnx" "$D/input_ids.npy" "$D/attention_mask.npy" "$D/token_type_ids.npy" \
  --lengths "$T/len5.npy" -o "$T/out/y.npy"

# NAME=FILE naming no input: was "foo=...: No such file or directory"
refused 2 "NAME= of no input" "input_ids.npy: the model has no input 'foo'; it takes: input_ids, attention_mask, token_type_ids" \
  "$MHA" run -q "$B/model.onnx" "foo=$D/input_ids.npy" "$D/attention_mask.npy" "$D/token_type_ids.npy" \
  -o "$T/out/y.npy"

echo "== a sequence longer than the model's positions is blamed on the ids file"
# both models have 32 positions: BERT slices its position buffer (then an
# Add does not broadcast), GPT-2 gathers past its table; zeros are valid
# ids, mask and token types
for f in ids mask tt; do npy_zeros "$T/long_$f.npy" '<i8' '(2, 40)' 640; done
refused 1 "BERT, 40 tokens" "^mha: $T/long_ids.npy: input 'input_ids' (shape 2x40): the model cannot run on it: " \
  "$MHA" run -q "$B/model.onnx" "$T/long_ids.npy" "$T/long_mask.npy" "$T/long_tt.npy" -o "$T/out/y.npy"
refused 1 "GPT-2, 40 tokens, by rows" "^mha: $T/long_ids.npy: row 1: input 'input_ids' (shape 1x40): the model cannot run on it: .*out of range" \
  "$MHA" run -q "$MHA_TEST_DATA/models/gpt2_preln_causal_l2_d64_h4/model.onnx" "$T/long_ids.npy" \
  -o "$T/out/y.npy" --batch-size 1 --shard 1/2

echo "== position ids past the model's positions are named as positions"
# a GPT-2 taking position_ids beside its (empty) cache: [2, 5] ids, 16
# positions; the message said "token id 16 is outside the vocabulary of 16"
K="$MHA_TEST_DATA/models/k_gpt2_hf_posids_firststep_op14"
KD="$K/test_data_set_0"
npy_zeros "$T/pos16.npy" '<i8' '(2, 5)' 80
printf '\020\000\000\000\000\000\000\000' |
  dd of="$T/pos16.npy" bs=1 seek=$((128 + (1 * 5 + 2) * 8)) conv=notrunc 2>/dev/null
refused 1 "position id 16 of 16" "^mha: $T/pos16.npy: input 'position_ids' \[1, 2\]: position id 16 is outside the model's 16 positions (ids in \[0, 16))" \
  "$MHA" run -q "$K/model.onnx" "input_ids=$KD/input_0.pb" "attention_mask=$KD/input_1.pb" \
  "position_ids=$T/pos16.npy" "past_key_0=$KD/input_3.pb" "past_value_0=$KD/input_4.pb" \
  "past_key_1=$KD/input_5.pb" "past_value_1=$KD/input_6.pb" -o "$T/out/y.npy"

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

echo "== a read-only output file is not replaced"
# chmod a-w says "keep this": refused before any work, even for root (by
# the mode bits), directly, through a symlink, by rows and by mha gen
echo old >"$T/ro.npy"
chmod 444 "$T/ro.npy"
ln -s ro.npy "$T/ro_link.npy"
for o in ro.npy ro_link.npy; do
  for bs in 64 2; do
    refused 1 "-o $o (read-only), --batch-size $bs" "^mha: $T/$o: the file is read-only; it is not replaced" \
      run_bert "$D/input_ids.npy" "$D/attention_mask.npy" -o "$T/$o" --batch-size $bs
  done
done
refused 1 "gen --data over a read-only file" "^mha: $T/ro.npy: the file is read-only" \
  "$MHA" gen -d 16 -H 2 -o "$T/out/g.onnx" --data "$T/ro.npy" --batch 1 --seq 2
[ "$(cat "$T/ro.npy")" = old ] || fail "the read-only file was replaced"
chmod 644 "$T/ro.npy"
run_bert "$D/input_ids.npy" "$D/attention_mask.npy" -o "$T/ro_link.npy" || fail "made writable again"
cmp -s "$T/ro.npy" "$T/good.npy" || fail "the writable file does not hold the output"

echo "whole_bad_inputs.sh: all passed"
