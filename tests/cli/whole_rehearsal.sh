#!/bin/sh
# whole_rehearsal.sh -- the w_* whole models of tests/data/models
# (make_whole.py: the held-out styles written a fourth time) beyond what
# model_corpus.sh checks (each passes `mha check` with every backend, its
# attention layers fused): what their plans fuse, and how `mha run` takes
# their inputs.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
M="$MHA_TEST_DATA/models"

fail() { echo "FAIL: $*" >&2; exit 1; }

# npy_header DESCR SHAPE: a .npy v1 header of 128 bytes ("2, 5": [2, 5])
npy_header() {
  hdr="{'descr': '$1', 'fortran_order': False, 'shape': ($2), }"
  printf '\223NUMPY\001\000\166\000%s' "$hdr"
  printf '%*s\n' $((118 - ${#hdr} - 1)) ''
}

# npy_i32 FILE ROWS COLS V...: an int32 [ROWS, COLS] .npy of the values
npy_i32() {
  f=$1 rows=$2 cols=$3
  shift 3
  {
    npy_header '<i4' "$rows, $cols"
    for v in "$@"; do
      printf "$(printf '\\%03o' "$v")\000\000\000"
    done
  } >"$f"
}

# same_up_to_lengths MASKS LENGTHS TOL L...: the --lengths run's output is
# the mask run's up to each row's length (bitwise when TOL is 0, else within
# TOL relative) and 0 past it (per-token outputs: [B, S, ...]); an output of
# one row an item (pooled, [B, D]) is compared whole
same_up_to_lengths() {
  python3 - "$@" <<'PY'
import struct, sys
def load(p):
    b = open(p, "rb").read()
    hl = struct.unpack("<H", b[8:10])[0]
    hdr = b[10:10 + hl].decode()
    shape = tuple(int(x) for x in hdr.split("(")[1].split(")")[0].split(",") if x.strip())
    d = b[10 + hl:]
    return shape, struct.unpack("<%df" % (len(d) // 4), d)
(sa, a), (sb, b) = load(sys.argv[1]), load(sys.argv[2])
tol, lens = float(sys.argv[3]), [int(x) for x in sys.argv[4:]]
assert sa == sb, "shapes %s and %s" % (sa, sb)
def same(x, y):
    return x == y if tol == 0 else all(abs(p - q) <= tol * max(1.0, abs(p)) for p, q in zip(x, y))
row = len(a) // sa[0]
tok = row // sa[1] if len(sa) >= 3 else row
for i, n in enumerate(lens):
    k = n * tok if len(sa) >= 3 else row
    assert same(b[i * row:i * row + k], a[i * row:i * row + k]), "row %d differs" % i
    assert all(v == 0 for v in b[i * row + k:(i + 1) * row]), "row %d not zero past %d" % (i, n)
PY
}

echo "== unnamed axes (dynamic_axes given as lists): the ids' and the mask's are one"
B="$M/w_bert_sep_inf_f32softmax_i32_op15/model.onnx"
"$MHA" info "$B" >"$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q 'input  *input_ids  *token_ids  *int32  *\[?, ?\]' "$T/info.txt" || fail "info: ids: $(cat "$T/info.txt")"
# two rows of 5 tokens; the second row's last two are padding
npy_i32 "$T/ids.npy" 2 5 3 1 4 1 5 9 2 6 5 3
npy_i32 "$T/mask.npy" 2 5 1 1 1 1 1 1 1 1 0 0
"$MHA" run -q "$B" "$T/ids.npy" "$T/mask.npy" -o "$T/y.npy" "$T/pool.npy" || fail "run: ids and mask"
# --lengths makes the mask: the same bits up to each row's length, 0 past it
{
  hdr="{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }"
  printf '\223NUMPY\001\000\166\000%s' "$hdr"
  printf '%*s\n' $((118 - ${#hdr} - 1)) ''
  printf '\005\000\000\000\000\000\000\000\003\000\000\000\000\000\000\000'
} >"$T/lengths.npy"
"$MHA" run -q "$B" "input_ids=$T/ids.npy" --lengths "$T/lengths.npy" -o "$T/y_len.npy" "$T/pool_len.npy" ||
  fail "run: --lengths"
same_up_to_lengths "$T/y.npy" "$T/y_len.npy" 0 5 3 || fail "run: --lengths hidden states differ from the mask's"
cmp "$T/pool.npy" "$T/pool_len.npy" || fail "run: --lengths pooled output differs from the mask's"
# a mask of 4 tokens beside 5 ids: refused as one axis of the model
npy_i32 "$T/mask4.npy" 2 4 1 1 1 1 1 1 1 1
set +e
"$MHA" run -q "$B" "$T/ids.npy" "$T/mask4.npy" -o "$T/y4.npy" "$T/pool4.npy" 2>"$T/err.txt"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "axis 1 .* is 4, but 5 in input 'input_ids' (the same axis of the model" "$T/err.txt" ||
  fail "run: a mask of 4 tokens beside 5 ids: exit $rc: $(cat "$T/err.txt")"
echo "ok: unnamed axes"

echo "== a LayerNorm written by hand (x.var(unbiased=False), its own x - x.mean()) is a norm step"
"$MHA" info "$M/w_bert_packed_handln_ext1e4_op13/model.onnx" >"$T/info_ln.txt" || fail "info: $(cat "$T/info_ln.txt")"
grep -q '^plan: .* 2 attention, 5 GEMM, [0-9]* norm,' "$T/info_ln.txt" || fail "info: norms: $(grep '^plan' "$T/info_ln.txt")"
# the five norms are fused: norm steps (with or without the residual before
# them), or in the epilogue of the GEMM or attention step before them
# ("...+layernorm"; the attention step takes the residual after it too)
norms=$(awk '$1 ~ /layernorm$/ && $2 ~ /^x[0-9]+$/ { n += substr($2, 2) } END { print n + 0 }' "$T/info_ln.txt")
in_layers=$(grep -c 'fused, .*+layernorm$' "$T/info_ln.txt")
[ "$((norms + in_layers))" = 5 ] || fail "info: fused norms $norms + $in_layers, want 5: $(cat "$T/info_ln.txt")"
if grep -q '^  \(ReduceMean\|Sqrt\) ' "$T/info_ln.txt"; then fail "info: norm nodes interpreted: $(cat "$T/info_ln.txt")"; fi
echo "ok: hand-written LayerNorm"

echo "== GPT-2's Conv1D (addmm over flat rows, viewed back): the GELU and the residual fuse"
G="$M/w_gpt2_addmm_score_op17/model.onnx"
"$MHA" info "$G" >"$T/info_g.txt" || fail "info: $(cat "$T/info_g.txt")"
grep -q 'gemm+bias+Mul+Pow+Mul+Add+Mul+Tanh+Add+Mul  *x2' "$T/info_g.txt" || fail "info: GELU epilogue: $(cat "$T/info_g.txt")"
# both c_proj GEMMs add the residual (the last one may also run the final
# LayerNorm in its epilogue: gemm+bias+residual+layernorm)
res=$(awk '$1 ~ /^gemm\+bias\+residual/ && $2 ~ /^x[0-9]+$/ { n += substr($2, 2) } END { print n + 0 }' "$T/info_g.txt")
[ "$res" = 2 ] || fail "info: residual epilogues $res, want 2: $(cat "$T/info_g.txt")"
if grep -q '^  \(Tanh\|Pow\) ' "$T/info_g.txt"; then fail "info: GELU interpreted: $(cat "$T/info_g.txt")"; fi
# the scorer: logits [B, S, V] and each next token's log-probability [B, S - 1]
# int32 ids into its int64 input (converted as docs/DATASETS.md says)
"$MHA" run -q "$G" "$T/ids.npy" -o "$T/logits.npy" "$T/lp.npy" || fail "run: scorer"
head -c 128 "$T/lp.npy" | grep -q "'shape': (2, 4)" || fail "run: log-probs shape: $(head -c 128 "$T/lp.npy")"
echo "ok: Conv1D epilogues"

echo "== a float32 0 / 1 mask [B, S] beside the ids is an attention mask: --lengths makes it"
# npy_f01 FILE ROWS COLS V...: a float32 [ROWS, COLS] .npy of 0 / 1 values
npy_f01() {
  f=$1 rows=$2 cols=$3
  shift 3
  {
    npy_header '<f4' "$rows, $cols"
    for v in "$@"; do
      if [ "$v" = 1 ]; then printf '\000\000\200\077'; else printf '\000\000\000\000'; fi
    done
  } >"$f"
}
npy_f01 "$T/fmask.npy" 2 5 1 1 1 1 1 1 1 1 0 0
npy_i32 "$T/types.npy" 2 5 0 0 0 1 1 0 0 1 1 1
F="$M/w_bert_packed_handln_ext1e4_op13/model.onnx"
"$MHA" info "$F" >"$T/info_f.txt" || fail "info: $(cat "$T/info_f.txt")"
grep -q 'input  *attention_mask  *attn_mask  *float32  *\[?, ?\]' "$T/info_f.txt" ||
  fail "info: the float mask's role: $(grep attention_mask "$T/info_f.txt")"
"$MHA" run -q "$F" "$T/ids.npy" "$T/types.npy" "$T/fmask.npy" -o "$T/fh.npy" "$T/fp.npy" || fail "run: float mask"
"$MHA" run -q "$F" "input_ids=$T/ids.npy" "token_type_ids=$T/types.npy" --lengths "$T/lengths.npy" \
  -o "$T/fh_len.npy" "$T/fp_len.npy" || fail "run: --lengths beside a float mask input"
# within 1e-5, not bitwise: the model fills hidden keys with -10000, which
# keeps the exact running max; the key lengths take the lazy one (avx512)
same_up_to_lengths "$T/fh.npy" "$T/fh_len.npy" 1e-5 5 3 ||
  fail "run: --lengths hidden states differ from the float mask's"
same_up_to_lengths "$T/fp.npy" "$T/fp_len.npy" 1e-5 5 3 ||
  fail "run: --lengths pooled output differs from the float mask's"
echo "ok: float mask"

echo "== a row whose every key is padding, hidden with -inf: NaN as the graph gives"
# BERT's masked_fill(mask == 0, -inf): the second item's mask all 0, so each
# of its query rows sees no key; the graph's softmax (and ONNX Runtime)
# gives NaN there, through every layer after
npy_i32 "$T/mask0.npy" 2 5 1 1 1 1 1 0 0 0 0 0
"$MHA" run "$B" "$T/ids.npy" "$T/mask0.npy" -o "$T/y0.npy" "$T/pool0.npy" 2>"$T/sum0.txt" || fail "run: a row of padding: $(cat "$T/sum0.txt")"
grep -q ' 1 rows with non-finite outputs' "$T/sum0.txt" || fail "run: a row of padding: $(cat "$T/sum0.txt")"
"$MHA" run "$B" "$T/ids.npy" "$T/mask.npy" -o "$T/y1.npy" "$T/pool1.npy" 2>"$T/sum1.txt" || fail "run: $(cat "$T/sum1.txt")"
grep -q ' 0 rows with non-finite outputs' "$T/sum1.txt" || fail "run: rows of tokens: $(cat "$T/sum1.txt")"
echo "ok: a row of padding"

echo "== --lengths beside a KV cache: refused (its mask covers the past and the new tokens)"
K="$M/k_gpt2_hf_posids_firststep_op14/model.onnx"
# past keys / values [2, 4, 0, 8]: no data
npy_header '<f4' '2, 4, 0, 8' >"$T/past.npy"
# positions 0 .. 4, and 0 .. 2 then 1s under the padding
npy_i32 "$T/pos.npy" 2 5 0 1 2 3 4 0 1 2 1 1
npy_i32 "$T/kmask.npy" 2 5 1 1 1 1 1 1 1 1 0 0
P="$T/past.npy"
"$MHA" run -q "$K" "$T/ids.npy" "$T/kmask.npy" "$T/pos.npy" "$P" "$P" "$P" "$P" -o "$T/kl.npy" ||
  fail "run: the first step with a mask file"
# a mask made [B, S] from the lengths is right only while the past is empty:
# the mask's axis is not the ids' (it is past + new), so --lengths is refused
# by name, nothing written, rather than made right by accident at one size
if "$MHA" run -q "$K" "input_ids=$T/ids.npy" "position_ids=$T/pos.npy" "past_key_0=$P" "past_value_0=$P" \
  "past_key_1=$P" "past_value_1=$P" --lengths "$T/lengths.npy" -o "$T/kl_len.npy" 2>"$T/kl_len.err"; then
  fail "run: --lengths beside a cache was taken"
fi
grep -q "input 'attention_mask' masks keys other than the tokens of input 'input_ids'" "$T/kl_len.err" ||
  fail "run: --lengths beside a cache: $(cat "$T/kl_len.err")"
[ "$(wc -l <"$T/kl_len.err")" -eq 1 ] || fail "run: --lengths beside a cache: more than one line"
[ ! -e "$T/kl_len.npy" ] || fail "run: --lengths beside a cache wrote its output"
echo "ok: --lengths beside a KV cache refused"
