#!/bin/sh
# round4.sh -- the q_* whole models of tests/data/models (make_round4.py,
# held-out styles of a fourth round) beyond model_corpus.sh's `mha check`:
# how `mha run` takes a dataset for a model exported with its batch fixed.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP" M="$MHA_TEST_DATA/models"
rm -rf "$T" && mkdir -p "$T"
. "$(dirname "$0")/lib/refusal.sh"

echo "== BERT exported with its batch fixed at 1: a dataset of 3 rows goes a row a run"
C="$M/q_bert_batch1_dataset_op14"
D="$C/dataset"
"$MHA" run "$C/model.onnx" "$D/input_ids.npy" "$D/token_type_ids.npy" "$D/attention_mask.npy" \
  -o "$T/hidden.npy" "$T/pooled.npy" 2>"$T/err" || fail "run: $(cat "$T/err")"
grep -q "3 rows" "$T/err" || fail "run: not 3 rows: $(cat "$T/err")"
head -c 128 "$T/hidden.npy" | grep -q "'shape': (3, 19, 16)" || fail "hidden: $(head -c 128 "$T/hidden.npy")"
head -c 128 "$T/pooled.npy" | grep -q "'shape': (3, 16)" || fail "pooled: $(head -c 128 "$T/pooled.npy")"
# --batch-size asks for more rows than the model takes: still one a run
"$MHA" run "$C/model.onnx" "$D/input_ids.npy" "$D/token_type_ids.npy" "$D/attention_mask.npy" \
  -o "$T/hidden3.npy" --batch-size 3 -q 2>"$T/err" || fail "run --batch-size 3: $(cat "$T/err")"
cmp "$T/hidden.npy" "$T/hidden3.npy" || fail "--batch-size 3 changed the rows"
# the first row is what the test set's one row gives (which `mha check`
# holds to PyTorch's output): 19 x 16 float32 of 1216 bytes
"$MHA" run "$C/model.onnx" "$C/test_data_set_0/input_0.pb" "$C/test_data_set_0/input_1.pb" \
  "$C/test_data_set_0/input_2.pb" -o "$T/one.npy" -q 2>"$T/err" || fail "one row: $(cat "$T/err")"
"$MHA" check "$C" >"$T/out" 2>&1 || fail "check: $(cat "$T/out")"
tail -c 1216 "$T/one.npy" >"$T/one.bin"
tail -c $((3 * 1216)) "$T/hidden.npy" | head -c 1216 >"$T/first.bin"
cmp "$T/one.bin" "$T/first.bin" || fail "the dataset's first row differs from the one-row run"
echo "round4: ok"
