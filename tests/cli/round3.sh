#!/bin/sh
# round3.sh -- the r_* whole models of tests/data/models (make_round3.py,
# held-out styles written a third round) beyond model_corpus.sh's `mha
# check`: how `mha run` takes their inputs over datasets, and what it
# refuses.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP" M="$MHA_TEST_DATA/models"
rm -rf "$T" && mkdir -p "$T"
. "$(dirname "$0")/lib/refusal.sh"

echo "== T5 in one graph: a dataset with a mask, with --lengths, resumed, sharded"
C="$M/r_t5_encdec_onegraph_tied_op14"
D="$C/dataset"
"$MHA" run "$C/model.onnx" "$D/input_ids.npy" "$D/attention_mask.npy" "$D/decoder_input_ids.npy" \
  -o "$T/mask.npy" --batch-size 3 -q 2>"$T/err" || fail "run with a mask: $(cat "$T/err")"
"$MHA" run "$C/model.onnx" "$D/input_ids.npy" "$D/decoder_input_ids.npy" --lengths "$D/lengths.npy" \
  -o "$T/len.npy" --batch-size 2 -q 2>"$T/err" || fail "run --lengths: $(cat "$T/err")"
cmp "$T/mask.npy" "$T/len.npy" || fail "run: --lengths logits differ from the mask's"
"$MHA" run "$C/model.onnx" "$D/input_ids.npy" "$D/attention_mask.npy" "$D/decoder_input_ids.npy" \
  -o "$T/res.npy" --batch-size 2 --resume -q 2>"$T/err" || fail "run --resume: $(cat "$T/err")"
cmp "$T/mask.npy" "$T/res.npy" || fail "run --resume: logits differ"
for i in 0 1; do
  "$MHA" run "$C/model.onnx" "$D/input_ids.npy" "$D/attention_mask.npy" "$D/decoder_input_ids.npy" \
    -o "$T/shard$i.npy" --shard "$i/2" -q 2>"$T/err" || fail "run --shard $i/2: $(cat "$T/err")"
done
"$MHA" merge "$T/shard0.npy" "$T/shard1.npy" -o "$T/merged.npy" 2>"$T/err" ||
  fail "merge: $(cat "$T/err")"
cmp "$T/mask.npy" "$T/merged.npy" || fail "shards merged differ from the whole run"

echo "== a T5 decoder whose mask names the encoder's axis apart: one axis"
D="$M/r_t5dec_cross_mask_axis_apart_op14/dataset"
X="$M/r_t5dec_cross_mask_axis_apart_op14/model.onnx"
"$MHA" run "$X" "$D/decoder_input_ids.npy" "$D/encoder_hidden_states.npy" \
  "$D/encoder_attention_mask.npy" -o "$T/dec.npy" -q 2>"$T/err" || fail "run: $(cat "$T/err")"
# the mask of another width than the encoder states' (its last 3 keys
# cut): refused by name, one line, nothing written
expect 1 "a mask narrower than the encoder states" "$MHA" run "$X" "$D/decoder_input_ids.npy" \
  "$D/encoder_hidden_states.npy" "$D/mask_narrow.npy" -o "$T/narrow.npy" -q
grep -q "encoder_attention_mask" "$T/err" || fail "refusal names not the mask: $(cat "$T/err")"
grep -q "the same keys" "$T/err" || fail "refusal says not why: $(cat "$T/err")"
[ ! -e "$T/narrow.npy" ] || fail "a refused run wrote its output"

echo "== outputs sized ceil(S / 8), S // 8, min(S, 4): symbolic in mha info"
C="$M/r_enc_rows_stride8_div8_head4_op14"
"$MHA" info "$C/model.onnx" >"$T/info.txt" 2>&1 || fail "info: $(cat "$T/info.txt")"
grep -q 'output every8 .*\[?, ?, 16\]' "$T/info.txt" || fail "info: every8 taken as fixed: $(cat "$T/info.txt")"
echo "== GPT-2 with a loss: its labels are ids, not a mask --lengths would make"
"$MHA" info "$M/r_gpt2_labels_loss_op14/model.onnx" >"$T/info.txt" 2>&1 || fail "info: $(cat "$T/info.txt")"
grep -q 'input  *labels  *token_ids ' "$T/info.txt" || fail "info: labels: $(cat "$T/info.txt")"
echo "== wav2vec2 with its samples symbolic: frames floor((T - 10) / 20) from its feature Convs"
C="$M/z3_wav2vec2_posconv_op14"
"$MHA" info "$C/model.onnx" >"$T/info.txt" 2>&1 || fail "info: $(cat "$T/info.txt")"
grep -q 'output last_hidden_state .*\[?, ?, 32\]' "$T/info.txt" || fail "info: frames: $(cat "$T/info.txt")"
# wav T: a float32 .npy of 1 x T zero samples
wav() {
  text="{'descr': '<f4', 'fortran_order': False, 'shape': (1, $1), }"
  { printf '\223NUMPY\001\000v\000%s' "$text"
    head -c $((118 - ${#text} - 1)) /dev/zero | tr '\000' ' '
    printf '\n'
    head -c $(($1 * 4)) /dev/zero; } >"$T/wav$1.npy"
}
# the receptive field (1 frame), the phases of the stride 20 past the probes
for t in 30:1 49:1 50:2 1009:49 1010:50; do
  wav "${t%:*}"
  "$MHA" run "$C/model.onnx" "$T/wav${t%:*}.npy" -o "$T/frames.npy" -q 2>"$T/err" ||
    fail "run at ${t%:*} samples: $(cat "$T/err")"
  head -c 128 "$T/frames.npy" | grep -q "'shape': (1, ${t#*:}, 32)" ||
    fail "${t%:*} samples: not ${t#*:} frames: $(head -c 128 "$T/frames.npy")"
done
wav 29
expect 1 "29 samples" "$MHA" run "$C/model.onnx" "$T/wav29.npy" -o "$T/short.npy" -q
grep -q "input 'input_values': axis 1 ('samples') is 29, shorter than the 30 the model's strided Convs take" "$T/err" ||
  fail "29 samples: $(cat "$T/err")"
[ ! -e "$T/short.npy" ] || fail "a refused run wrote its output"
echo "== optimum's merged decoder (an If on use_cache_branch): refused, naming what to run"
expect 1 "a merged decoder" "$MHA" info "$MHA_TEST_DATA/plan/merged_if.onnx"
grep -q "If node 'optimum::if'.*decoder_model_merged.*decoder_with_past_model.onnx" "$T/err" ||
  fail "merged decoder refusal: $(cat "$T/err")"
echo "round3: ok"
