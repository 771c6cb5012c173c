#!/bin/sh
# cli_round11.sh -- defects found by the eleventh adversarial round, each as
# the rule for bad input has it: a non-zero exit, one stderr line naming
# the file or option and the problem, nothing lost -- or, for --lengths on
# whole models, the outputs the mask made of the lengths gives. (The
# library's own case is a unit test: test_npy's shard rows out of range.)
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
M="$MHA_TEST_DATA/models"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
# one plugin opened (and probed in a child) per command, not every one
MHA_BACKEND=scalar
export MHA_BACKEND

# npy_i64 FILE SHAPE V...: an int64 .npy of the values (each < 256)
npy_i64() {
  f=$1 text="{'descr': '<i8', 'fortran_order': False, 'shape': $2, }"
  shift 2
  { printf '\223NUMPY\001\000v\000%s' "$text"
    head -c $((118 - ${#text} - 1)) /dev/zero | tr '\000' ' '
    printf '\n'
    for v in "$@"; do printf "\\$(printf '%03o' "$v")\\000\\000\\000\\000\\000\\000\\000"; done
  } >"$f"
}

echo "== mha check: a case whose model.onnx or tolerance is no regular file"
# a suite of three cases, two with model.onnx a link to nothing and a
# folder, said "1 passed, 0 failed" and exit 0: the two were passed over
# as no cases at all; a tolerance file that was a folder or a FIFO was
# ignored (the case compared at the default tolerances)
mkdir -p "$T/suite/a/test_data_set_0"
"$MHA" gen -d 16 -H 2 -o "$T/suite/a/model.onnx" --data "$T/suite/a/test_data_set_0/input_0.pb" \
  --batch 1 --seq 3 >/dev/null
"$MHA" run -q "$T/suite/a/model.onnx" "$T/suite/a/test_data_set_0/input_0.pb" \
  -o "$T/suite/a/test_data_set_0/output_0.pb"
for c in b c d e f; do cp -r "$T/suite/a" "$T/suite/$c"; done
rm "$T/suite/b/model.onnx" "$T/suite/c/model.onnx"
ln -s ../nowhere.onnx "$T/suite/b/model.onnx"
mkdir "$T/suite/c/model.onnx"
mkdir "$T/suite/d/tolerance"
mkfifo "$T/suite/e/tolerance"
ln -s ../nowhere "$T/suite/f/tolerance"
# check_rc DIR: exit 1 wanted; the report on stdout, stderr empty
check_rc() {
  if "$MHA" check "$1" >"$T/out" 2>"$T/err"; then fail "check $1: exit 0: $(cat "$T/out")"; fi
}
check_rc "$T/suite"
grep -q "^FAIL b: $T/suite/b/model.onnx: cannot open: No such file or directory$" "$T/out" &&
  grep -q "^FAIL c: $T/suite/c/model.onnx: not a regular file$" "$T/out" &&
  grep -q "^FAIL d: $T/suite/d/tolerance: not a regular file$" "$T/out" &&
  grep -q "^FAIL e: $T/suite/e/tolerance: not a regular file$" "$T/out" &&
  grep -q "^FAIL f: $T/suite/f/tolerance: No such file or directory$" "$T/out" &&
  grep -q "^1 passed, 5 failed$" "$T/out" || fail "check of the suite: $(cat "$T/out" "$T/err")"
[ ! -s "$T/err" ] || fail "a failing case said on stderr: $(cat "$T/err")"
# one case alone: "no model.onnx and no case folders" though it has one
check_rc "$T/suite/c"
grep -q "^FAIL c: $T/suite/c/model.onnx: not a regular file$" "$T/out" ||
  fail "check of one case: $(cat "$T/out" "$T/err")"
echo "ok: every broken case failed by name"

echo "== --lengths on a whole model taking presents [B, H, S, d] at S == H"
# GPT-2 exported with use_cache=True (4 heads) on rows of 4 tokens: the
# presents' heads past each row's length were zeroed as if they were its
# tokens (at 8 tokens they were left whole); they are the mask's
G="$M/f9_gpt2_ids_mask_present_dyn_op14/model.onnx"
npy_i64 "$T/g_ids.npy" "(3, 4)" 1 8 15 22 29 36 43 50 57 64 71 78
npy_i64 "$T/g_len.npy" "(3,)" 4 2 1
npy_i64 "$T/g_mask.npy" "(3, 4)" 1 1 1 1 1 1 0 0 1 0 0 0
"$MHA" run -q "$G" "$T/g_ids.npy" "$T/g_mask.npy" \
  -o "$T/gm_l.npy" "$T/gm_k0.npy" "$T/gm_v0.npy" "$T/gm_k1.npy" "$T/gm_v1.npy"
"$MHA" run -q "$G" "input_ids=$T/g_ids.npy" --lengths "$T/g_len.npy" \
  -o "$T/gl_l.npy" "$T/gl_k0.npy" "$T/gl_v0.npy" "$T/gl_k1.npy" "$T/gl_v1.npy"
for o in k0 v0 k1 v1; do
  cmp -s "$T/gm_$o.npy" "$T/gl_$o.npy" || fail "--lengths: present $o differs from the mask's"
done
echo "ok: the presents as the mask gives them"
# served, the same model is refused naming the output by its index alone
one_line 1 "cannot be served: queue: output 1 ('present.0.key') does not have the batch on its first axis" \
  "$MHA" serve "$G" --port 0

echo "== --lengths 0 on a whole model: the row of a mask of zeros"
# BERT with a pooler: a row of length 0 ran its fused layers on no key
# (rows of 0) while its mask of zeros gives every key a weight, so its
# pooled output was neither the mask's nor the row alone's (round 10 had
# it "as a mask of zeros gives")
BT="$M/f9_bert_ids_mask_types_dyn_op14/model.onnx"
npy_i64 "$T/b_ids.npy" "(3, 4)" 1 8 15 22 29 36 43 50 57 64 71 78
npy_i64 "$T/b_tt.npy" "(3, 4)" 0 0 0 0 0 0 0 0 0 0 0 0
npy_i64 "$T/b_len.npy" "(3,)" 0 3 4
npy_i64 "$T/b_mask.npy" "(3, 4)" 0 0 0 0 1 1 1 0 1 1 1 1
"$MHA" run -q "$BT" "input_ids=$T/b_ids.npy" "token_type_ids=$T/b_tt.npy" \
  "attention_mask=$T/b_mask.npy" -o "$T/bm_h.npy" "$T/bm_p.npy"
"$MHA" run -q "$BT" "input_ids=$T/b_ids.npy" "token_type_ids=$T/b_tt.npy" \
  --lengths "$T/b_len.npy" -o "$T/bl_h.npy" "$T/bl_p.npy"
cmp -s "$T/bm_p.npy" "$T/bl_p.npy" || fail "--lengths 0: the pooled outputs differ from the mask's"
echo "ok: pooled outputs as the mask of zeros gives them"

echo "== serve-load: --json that cannot be written, --url through a user name"
# --json '' or 'dir/' ran the whole load and said "not a file name" after
# it, exit 0; --json /dev/full said "write failed" and exited 0; --type
# took a CR LF into the request's headers; the URL
# check was a prefix compare: http://127.0.0.1:x@HOST/run loads HOST (the
# text before '@' is a user name); no server: exit 1 with nothing said
LOAD="$(dirname "$MHA")/serve-load"
# load_fails PATTERN ARG...: serve-load ARG... exits 1 after its run (its
# summary on stdout) with one stderr line matching PATTERN
load_fails() {
  pattern=$1
  shift
  if "$LOAD" "$@" >"$T/out" 2>"$T/err"; then fail "serve-load $*: exit 0"; fi
  [ "$(wc -l <"$T/err")" = 1 ] && grep -q -- "$pattern" "$T/err" ||
    fail "serve-load $*: $(cat "$T/err")"
  echo "ok: $(cat "$T/err")"
}
if [ -x "$LOAD" ]; then
  npy_i64 "$T/s_ids.npy" "(3, 1)" 1 2 3
  L="--url http://127.0.0.1:1/run --rate 1 --duration 0.1 --body $T/s_ids.npy"
  # shellcheck disable=SC2086 # L is a list of options
  one_line 2 "^serve-load: --json : not a file name$" "$LOAD" $L --json ''
  mkdir -p "$T/rep"
  # shellcheck disable=SC2086
  one_line 2 "^serve-load: --json $T/rep: is a folder, not a file that can be written$" \
    "$LOAD" $L --json "$T/rep"
  one_line 2 "^serve-load: loopback only (http to 127.0.0.1, \[::1\], localhost), not http://127.0.0.1:x@127.0.0.2:1/run: it names a user" \
    "$LOAD" --url "http://127.0.0.1:x@127.0.0.2:1/run" --rate 1 --duration 0.1 --body "$T/s_ids.npy"
  # --type with a CR LF: headers of the caller's making after it
  # shellcheck disable=SC2086
  one_line 2 "^serve-load: --type holds a control byte (0x0d)$" \
    "$LOAD" $L --type "$(printf 'application/json\r\nX-Evil: 1')"
  one_line 2 "^serve-load: loopback only (http to 127.0.0.1, \[::1\], localhost), not http://127.0.0.1:99999/run: " \
    "$LOAD" --url "http://127.0.0.1:99999/run" --rate 1 --duration 0.1 --body "$T/s_ids.npy"
  load_fails "^serve-load: http://127.0.0.1:1/run: \([0-9]*\) of \1 requests got no answer: " \
    --url http://127.0.0.1:1/run --rate 50 --duration 0.1 --body "$T/s_ids.npy"
  echo "ok: refused before any request, or the failure said"
else
  echo "skip: serve-load not built (no libcurl)"
fi

echo "== mha serve of a sequence-first model: a request of another shape"
# "one sequence of token ids is [S] or [S, 1] (rank 2 given)": [S, 1] is
# rank 2 too; the shape given is named
TM="$T"
T="$T/srv" && mkdir -p "$T"
# shellcheck source=lib/serve_start.sh
. "$(dirname "$0")/lib/serve_start.sh"
serve_start "$M/z_tutorial_lm_op17/model.onnx"
T="$TM"
npy_i64 "$T/t_1s.npy" "(1, 3)" 1 2 3
code=$($C -o "$T/t.out" -w '%{http_code}' -H 'Content-Type: application/x-npy' \
  --data-binary @"$T/t_1s.npy" "$U/run")
[ "$code" = 400 ] && grep -q "token ids is \[S\] or \[S, 1\], not 1x3" "$T/t.out" ||
  fail "a [1, 3] request: $code $(cat "$T/t.out")"
if [ -x "$LOAD" ]; then
  # the report could not be written: exit 1, not 0
  load_fails "^serve-load: /dev/full: .*No space left on device" \
    --url "$U/run" --rate 20 --duration 0.2 --body "$T/s_ids.npy" --json /dev/full
fi
kill "$SRV"
serve_wait_exit
echo "ok: the shape named; a report not written fails the run"

echo "== huge logits in the lazy max of the float32 and bfloat16 attention"
# inputs of size 2^14 to 2^18 (the round's N(0, 1) * 1e5 alike) scale the
# dots past 2^31 in base 2: the lazy max of avx512 and openmp (float32
# and bfloat16) gave NaN for most of the output (the reference max's
# rounding error as 2^t: overflow), scalar none. Now no value is NaN or
# infinite, and float32 is within 1e-5 of scalar's largest value (one
# key per row)
# npy_f32_big FILE ROWS COLS: float32 [1, ROWS, COLS], either sign
npy_f32_big() {
  hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (1, $2, $3), }"
  esc=$(awk -v n=$(($2 * $3)) 'BEGIN {
    s = 12345
    for (i = 0; i < n; i++) {
      s = (s * 16807) % 2147483647; m = s % 8388608
      s = (s * 16807) % 2147483647; b = (s % 2) * 2147483648 + (141 + int(s / 2) % 4) * 8388608 + m
      printf "\\%03o\\%03o\\%03o\\%03o", b % 256, int(b / 256) % 256, int(b / 65536) % 256,
        int(b / 16777216) % 256
    }
  }')
  { printf '\223NUMPY\001\000\166\000%s' "$hdr"
    printf '%*s\n' $((118 - ${#hdr} - 1)) ''
    # shellcheck disable=SC2059 # the octal escapes are the data
    printf "$esc"
  } >"$1"
}
# npy_values FILE: a float32 .npy's values, one a line
npy_values() {
  hl=$(od -A n -t u2 -j 8 -N 2 "$1" | tr -d ' ')
  od -A n -t f4 -v -j $((10 + hl)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}
"$MHA" gen -d 64 -H 4 --seed 3 -o "$T/huge.onnx" >/dev/null
npy_f32_big "$T/huge_x.npy" 40 64
"$MHA" run -q "$T/huge.onnx" "$T/huge_x.npy" -o "$T/huge_scalar.npy" --backend scalar ||
  fail "huge logits: the scalar run failed"
npy_values "$T/huge_scalar.npy" >"$T/huge_scalar.txt"
[ "$(wc -l <"$T/huge_scalar.txt")" -eq 2560 ] && ! grep -qi 'nan\|inf' "$T/huge_scalar.txt" ||
  fail "huge logits: scalar's output is not 2560 finite values"
for be in avx512 openmp; do
  if ! "$MHA" backends 2>/dev/null | grep -q "^$be .* usable "; then
    echo "skip: no usable $be backend"
    continue
  fi
  precs=float32
  [ "$be" = openmp ] || precs="float32 bfloat16" # openmp serves float32 only
  for prec in $precs; do
    "$MHA" run -q "$T/huge.onnx" "$T/huge_x.npy" -o "$T/huge_$be.npy" --backend "$be" \
      --precision "$prec" || fail "huge logits: $be $prec: the run failed"
    npy_values "$T/huge_$be.npy" >"$T/huge_$be.txt"
    bad=$(grep -ci 'nan\|inf' "$T/huge_$be.txt" || true)
    [ "$bad" -eq 0 ] || fail "huge logits: $be $prec: $bad of 2560 values NaN or infinite"
    [ "$prec" = bfloat16 ] || paste "$T/huge_scalar.txt" "$T/huge_$be.txt" | awk '
      { d = $1 - $2; if (d < 0) d = -d; if (d > e) e = d; a = $1 < 0 ? -$1 : $1; if (a > s) s = a }
      END { if (!(e <= 1e-5 * s)) { print "max |difference| " e " of max " s; exit 1 } }' \
      >"$T/huge_cmp.txt" ||
      fail "huge logits: $be float32 against scalar: $(cat "$T/huge_cmp.txt")"
  done
done
echo "ok: finite, float32 as scalar's"

echo "cli_round11: all passed"
