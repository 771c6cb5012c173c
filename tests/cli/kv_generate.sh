#!/bin/sh
# kv_generate.sh -- a generation loop through `mha run` with a KV cache
# (issue 15): a decoder exported with its cache (past_* in, present_* out)
# runs 8 tokens once with an empty past (P = 0: the no-cache forward pass),
# then the same tokens one step at a time, each step's present keys and
# values fed back as the next step's past (P = 0, 1, ..., 7). Every step's
# logits equal the full run's row of that position (max abs diff 2e-5) and
# the last presents equal the full run's; a step at 1 thread and at 2
# threads and with --batch-size 1 give the same bits; after a past of 300
# positions the presents begin with the past's bits. Then the past shapes
# the step refuses in one line naming the input: wrong heads, wrong head
# size, a past batch other than the ids', past key and value lengths that
# differ, a mask not over past + new keys.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP. Needs Debian's python3
# with numpy and onnx (exit 77 without them).
set -eu
: "${MHA:?set MHA to the mha binary}"
M="${MHA_TEST_DATA:?}/models" T="${MHA_TEST_TMP:?}"
PY=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$T" && mkdir -p "$T"
"$PY" -c 'import numpy, onnx' 2>/dev/null || { echo "skip: $PY lacks numpy / onnx"; exit 77; }

# npy.py MODEL DIR prep LONG | check LONG: the numpy side, once per model:
# prep writes every step's inputs (DIR/full, DIR/step<t>, DIR/long<P>,
# DIR/bad_<kind>), check compares what the steps wrote
cat >"$T/npy.py" <<'PY'
import os, sys
import numpy as np
import onnx
model, top, what, long = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
g = onnx.load(model).graph
past = [i for i in g.input if i.name.startswith("past")]
dims = [[x.dim_value for x in i.type.tensor_type.shape.dim] for i in past]
H, dh = dims[0][1], dims[0][3]
ids = np.array([[5, 9, 3, 17, 22, 8, 1, 40], [7, 7, 2, 33, 12, 60, 4, 9]], np.int64)
B, N = ids.shape
def sub(name):
    d = os.path.join(top, name)
    os.makedirs(d, exist_ok=True)
    return d
def save(d, name, a):
    np.save(os.path.join(d, name + ".npy"), a)
def save_past(d, P, b=B, h=H, e=dh, rng=None):
    for i in range(len(past)):
        a = rng.standard_normal((b, h, P, e)) if rng else np.zeros((b, h, P, e))
        save(d, "past%d" % i, a.astype(np.float32))
if what == "prep":
    d = sub("full")
    save(d, "ids", ids)
    save(d, "mask", np.ones((B, N), np.int64))
    save_past(d, 0)
    for t in range(N):  # step t: token t, the mask over t + 1 keys
        d = sub("step%d" % t)
        save(d, "ids", ids[:, t:t + 1])
        save(d, "mask", np.ones((B, t + 1), np.int64))
        if t == 0:
            save_past(d, 0)
    for P in (1, long):  # one token after a random past of P positions
        d = sub("long%d" % P)
        save(d, "ids", ids[:1, :1])
        save(d, "mask", np.ones((1, P + 1), np.int64))
        save_past(d, P, b=1, rng=np.random.default_rng(P))
    for kind in ("heads", "dhead", "batch", "lengths", "mask"):  # a bad past of 3
        d = sub("bad_" + kind)
        save(d, "ids", ids[:, 3:4])
        save(d, "mask", np.ones((B, 3 if kind == "mask" else 4), np.int64))
        save_past(d, 3, h=H + (kind == "heads"), e=dh * (1 + (kind == "dhead")),
                  b=B + (kind == "batch"))
        if kind == "lengths":
            save(d, "past1", np.zeros((B, H, 2, dh), np.float32))
    sys.exit(0)
out = lambda d, i: np.load(os.path.join(top, d, "out%d.npy" % i))
for t in range(N):  # step t's logits against the full run's row t
    diff = float(np.abs(out("step%d" % t, 0)[:, 0] - out("full", 0)[:, t]).max())
    if not diff <= 2e-5:
        sys.exit("step %d: logits differ from the full run's row by %g" % (t, diff))
for i in range(1, 1 + len(past)):  # the last presents: the full run's
    a, b = out("step%d" % (N - 1), i), out("full", i)
    if a.shape != b.shape or not np.abs(a - b).max() <= 2e-5:
        sys.exit("present %d after the last step: %s vs the full run's %s" % (i, a.shape, b.shape))
for P in (1, long):  # the presents hold the past's bits, then one new row
    for i in range(len(past)):
        a = np.load(os.path.join(top, "long%d" % P, "past%d.npy" % i))
        b = out("long%d" % P, i + 1)
        if b.shape != (1, H, P + 1, dh) or not np.array_equal(b[:, :, :P], a):
            sys.exit("past %d: present %d does not begin with its past's bits" % (P, i))
    if not np.isfinite(out("long%d" % P, 0)).all():
        sys.exit("past %d: logits not finite" % P)
PY

# run MODEL DIR [options]: one step, the inputs of DIR, outputs DIR/out<i>.npy
run() {
  model=$1 dir=$2
  shift 2
  n=$(ls "$dir"/past*.npy | wc -l)
  set -- "$@" "$dir/ids.npy" "$dir/mask.npy"
  i=0
  while [ $i -lt "$n" ]; do set -- "$@" "$dir/past$i.npy"; i=$((i + 1)); done
  i=0
  while [ $i -le "$n" ]; do set -- "$@" -o "$dir/out$i.npy"; i=$((i + 1)); done
  "$MHA" run "$model" "$@" --quiet
}

for c in z_gpt2_past_op14 z_llama_past_gqa_op17 kv_qwen3_qknorm_gqa_op17; do
  m="$M/$c/model.onnx"
  # a long past: 300 cached positions where the model's 320 allow it, else
  # 14 of 16 (the gather of the past into the present is cut in blocks of
  # rows between the threads once a head has 128 rows)
  long=14
  [ "$c" != kv_qwen3_qknorm_gqa_op17 ] || long=300
  "$PY" "$T/npy.py" "$m" "$T/$c" prep $long
  run "$m" "$T/$c/full" 2>"$T/err" || fail "$c: the 8 tokens with an empty past: $(cat "$T/err")"
  for t in 0 1 2 3 4 5 6 7; do
    d="$T/$c/step$t"
    if [ $t -gt 0 ]; then # the presents of the step before are this one's past
      for f in "$T/$c/step$((t - 1))"/out*.npy; do
        i=${f##*/out}
        i=${i%.npy}
        [ "$i" = 0 ] || cp "$f" "$d/past$((i - 1)).npy"
      done
    fi
    run "$m" "$d" 2>"$T/err" || fail "$c: step $t: $(cat "$T/err")"
  done
  for P in 1 $long; do
    run "$m" "$T/$c/long$P" --threads 1 2>"$T/err" || fail "$c: past $P: $(cat "$T/err")"
  done
  "$PY" "$T/npy.py" "$m" "$T/$c" check $long || fail "$c"
  echo "ok: $c: 8 steps through the cache give the full run's logits; pasts of 1 and $long kept"
  # the same bits at 2 threads and row by row
  for x in "step7 --threads 2" "step7 --batch-size 1" "long$long --threads 2"; do
    d="$T/$c/${x%% *}"
    mkdir -p "$d/again"
    cp "$d"/ids.npy "$d"/mask.npy "$d"/past*.npy "$d/again/"
    # shellcheck disable=SC2086
    run "$m" "$d/again" ${x#* } 2>"$T/err" || fail "$c: $x: $(cat "$T/err")"
    for f in "$d"/out*.npy; do
      cmp -s "$f" "$d/again/${f##*/}" || fail "$c: $x: ${f##*/} differs"
    done
  done
  echo "ok: $c: the same bits at 2 threads and row by row"

  for kind in heads dhead batch lengths mask; do
    d="$T/$c/bad_$kind"
    set +e
    run "$m" "$d" >"$T/out" 2>"$T/err"
    rc=$?
    set -e
    [ "$rc" = 1 ] || fail "$c: bad past ($kind): exit $rc, wanted 1: $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "$c: bad past ($kind): not one line: $(cat "$T/err")"
    grep -q "$d/\(past\|mask\|ids\)" "$T/err" ||
      fail "$c: bad past ($kind): the message names no input file: $(cat "$T/err")"
    [ ! -e "$d/out0.npy" ] || fail "$c: bad past ($kind): an output was written"
  done
  echo "ok: $c: bad pasts (heads, head size, batch, key / value lengths, mask) refused in one line"
done
