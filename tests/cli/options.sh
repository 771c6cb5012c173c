#!/bin/sh
# options.sh -- every subcommand `mha --help` lists parses its command line
# the same way (one parser, one table per subcommand):
#   - an unknown option, a missing value, a value given to a flag and an
#     ambiguous prefix are each one line on stderr, exit 2, nothing on stdout,
#     worded alike in every subcommand;
#   - every option --help lists is one the parser knows (help and parser
#     cannot disagree), and each shared option is listed once;
#   - a value is taken as -oFILE, -o FILE, --output=FILE and --output FILE
#     alike; an unambiguous prefix of a long option is that option;
#   - `--` ends the options;
#   - --threads has one syntax and range wherever it is taken: 0 means every
#     online CPU, 1025 and -1 are refused with the same message.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/shared"
CASE="$MHA_TEST_DATA/conformance/mha_self_d32_h2_b2_s8"
MODEL="$CASE/model.onnx"
INPUT="$CASE/test_data_set_0/input_0.pb"

fail() { echo "FAIL: $*" >&2; exit 1; }

# mha ARGS...: runs the command, stdout in $T/out, stderr in $T/err, status in $rc
mha() {
  set +e
  "$MHA" "$@" >"$T/out" 2>"$T/err"
  rc=$?
  set -e
}

# parse ARGS...: as mha, for a command line the parser refuses before any
# work: under ASan the exit's leak scan is off (each scan costs ~50 ms of
# CPU here, ~20 s over this script's ~400 refused command lines; the parser
# still runs under ASan and UBSan, and the runs below keep the scan)
parse() {
  set +e
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$MHA" "$@" >"$T/out" 2>"$T/err"
  rc=$?
  set -e
}

# usage_error WHAT WANT-LINE ARGS...: exit 2, exactly WANT-LINE on stderr,
# nothing on stdout
usage_error() {
  what=$1 want=$2
  shift 2
  parse "$@"
  [ "$rc" = 2 ] || fail "$what: exit $rc, wanted 2 (stderr: $(cat "$T/err"))"
  [ ! -s "$T/out" ] || fail "$what: wrote to stdout: $(head -n 3 "$T/out")"
  [ "$(wc -l <"$T/err")" -eq 1 ] || fail "$what: not one line on stderr: $(cat "$T/err")"
  [ "$(cat "$T/err")" = "$want" ] || fail "$what: stderr '$(cat "$T/err")', wanted '$want'"
}

# the command itself: an option before any command is refused as an option
usage_error "mha --frob" "mha: unknown option '--frob' (see 'mha --help')" --frob

commands=$("$MHA" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
[ -n "$commands" ] || fail "no commands in mha --help"
n_commands=0
n_short=0
for sub in $commands; do
  n_commands=$((n_commands + 1))
  see="(see 'mha $sub --help')"

  # -- the help, and the options it lists --
  mha "$sub" --help
  [ "$rc" = 0 ] || fail "$sub --help: exit $rc"
  cp "$T/out" "$T/help"
  head -n 1 "$T/help" | grep -q "^Usage: mha $sub" || fail "$sub --help: no usage line first"
  # option rows: "  -x, --name VALUE  help" or "  --name  help": the
  # option is a flag when two spaces (or the line's end) follow its name
  awk '/^  (-[a-zA-Z], )?--[a-z0-9]/ {
         line = $0; sub(/^  (-[a-zA-Z], )?--/, "", line)
         match(line, /^[a-z0-9-]+/); name = substr(line, 1, RLENGTH)
         rest = substr(line, RLENGTH + 1)
         print name, (rest ~ /^ [^ ]/ ? "value" : "flag") }' "$T/help" >"$T/listed"
  [ -s "$T/listed" ] || fail "$sub --help lists no options"
  for opt in help version; do
    [ "$(grep -c "^$opt " "$T/listed")" -eq 1 ] || fail "$sub --help lists --$opt $(grep -c "^$opt " "$T/listed") times"
  done
  dups=$(awk '{ print $1 }' "$T/listed" | sort | uniq -d)
  [ -z "$dups" ] || fail "$sub --help lists $dups more than once"
  [ "$(grep -c "^Exit status" "$T/help")" -eq 1 ] || fail "$sub --help: not one exit-status line"

  # every listed option is known to the parser: after it (and a value) an
  # unknown option is what the parser complains about, not the listed one
  while read -r name kind; do
    case $name in help | version) continue ;; esac
    if [ "$kind" = value ]; then
      usage_error "$sub --$name needs a value" "mha $sub: option '--$name' needs a value $see" \
        "$sub" "--$name"
      # (the value may be refused: then the parser did know the option)
      parse "$sub" "--$name=0" --frob
      grep -q "unknown option '--$name'" "$T/err" && fail "$sub: --$name is listed but unknown"
    else
      usage_error "$sub --$name=1" "mha $sub: option '--$name' takes no value $see" \
        "$sub" "--$name=1"
      parse "$sub" "--$name" --frob
      grep -q "unknown option '--$name'" "$T/err" && fail "$sub: --$name is listed but unknown"
    fi
    [ "$rc" != 0 ] || fail "$sub --$name --frob: exit 0"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "$sub --$name --frob: not one line: $(cat "$T/err")"
    # how a bad value is answered, for the comparison across subcommands
    echo "$sub $kind" >>"$T/shared/$name.kind"
    if [ "$kind" = value ]; then
      parse "$sub" "--$name=x-bad" --frob
      sed "s/^mha $sub: //; s/ (see .*//" "$T/err" >"$T/shared/$name.$sub"
    fi
  done <"$T/listed"

  # -- the same errors, worded alike --
  usage_error "$sub --frob" "mha $sub: unknown option '--frob' $see" "$sub" --frob
  usage_error "$sub --frob=1" "mha $sub: unknown option '--frob' $see" "$sub" --frob=1
  usage_error "$sub --frob VALUE" "mha $sub: unknown option '--frob' $see" "$sub" --frob 1
  usage_error "$sub -Z" "mha $sub: unknown option '-Z' $see" "$sub" -Z
  usage_error "$sub --help=1" "mha $sub: option '--help' takes no value $see" "$sub" --help=1
  # a short option with a value, given none: named as written
  short=$(sed -n 's/^  -\([a-zA-Z]\), --[a-z0-9-]* [^ ].*/\1/p' "$T/help" | head -n 1)
  if [ -n "$short" ]; then
    usage_error "$sub -$short" "mha $sub: option '-$short' needs a value $see" "$sub" "-$short"
    n_short=$((n_short + 1))
  fi

  # an unambiguous prefix is the option; --ver names --verbose and --version
  mha "$sub" --vers
  [ "$rc" = 0 ] && grep -q "^mha [0-9]" "$T/out" || fail "$sub --vers is not --version (exit $rc)"
  if grep -q "^verbose " "$T/listed"; then
    usage_error "$sub --ver" "mha $sub: option '--ver' is ambiguous (--verbose, --version) $see" \
      "$sub" --ver
  else
    mha "$sub" --ver
    [ "$rc" = 0 ] || fail "$sub --ver (only --version starts so): exit $rc"
  fi

  # `--` ends the options: what follows is an argument, never an option
  mha "$sub" -- --frob
  grep -q "unknown option" "$T/err" && fail "$sub -- --frob: still parsed as an option"
  [ "$rc" != 0 ] || fail "$sub -- --frob: exit 0"

  # --threads: one syntax and range wherever it is taken
  if grep -q "^threads " "$T/listed"; then
    usage_error "$sub --threads 0 accepted" "mha $sub: unknown option '--frob' $see" \
      "$sub" --threads 0 --frob
    for bad in 1025 -1 many; do
      parse "$sub" --threads "$bad"
      [ "$rc" = 2 ] || fail "$sub --threads $bad: exit $rc"
      sed "s/^mha $sub: //; s/ (see .*//" "$T/err" >"$T/threads_$bad.$sub"
    done
  fi
done
[ "$n_commands" -ge 8 ] || fail "only $n_commands commands in mha --help"
[ "$n_short" -ge 3 ] || fail "only $n_short commands have a short option with a value (run, gen, merge: -o)"

# an option that several subcommands take is one kind (flag or value) and
# answers a bad value in the same words everywhere. Known differences, each
# for a reason: bench's --backend is a list (all|NAME,...); --json is a flag
# printing on stdout in info and backends, a FILE in bench and peak;
# bench's --max-batch 0 means "no queue", serve's range starts at 1.
for f in "$T"/shared/*.kind; do
  name=$(basename "$f" .kind)
  case $name in backend | json | max-batch) continue ;; esac
  [ "$(awk '{ print $2 }' "$f" | sort -u | wc -l)" -eq 1 ] ||
    fail "--$name is a flag in some subcommands, takes a value in others: $(cat "$f")"
  answers=$(for sub in $(awk '$2 == "value" { print $1 }' "$f"); do cat "$T/shared/$name.$sub"; done |
    sort -u | wc -l)
  [ "$answers" -le 1 ] || fail "--$name=x-bad is answered differently: $(grep . "$T"/shared/"$name".*)"
done
[ -s "$T/shared/seed.bench" ] && [ -s "$T/shared/seed.gen" ] || fail "bench and gen do not both take --seed"

# the --threads messages are the same in every subcommand
for bad in 1025 -1 many; do
  [ "$(cat "$T"/threads_"$bad".* | sort -u | wc -l)" -eq 1 ] ||
    fail "--threads $bad is refused in different words: $(cat "$T"/threads_"$bad".*)"
  grep -q "\[0, 1024\] (0: every online CPU)" "$T/threads_$bad.run" ||
    fail "--threads $bad: $(cat "$T/threads_$bad.run")"
done
ls "$T"/threads_1025.bench "$T"/threads_1025.peak "$T"/threads_1025.run >/dev/null ||
  fail "bench, peak and run do not all take --threads"

# --threads 0 runs on every CPU where it is taken (not only parsed)
mha run "$MODEL" "$INPUT" --threads 0 -o "$T/t0.npy"
[ "$rc" = 0 ] || fail "run --threads 0: $(cat "$T/err")"
mha peak --threads 0 --reps 1 --seconds 0.01
[ "$rc" = 0 ] || fail "peak --threads 0: $(cat "$T/err")"
cpus=$(getconf _NPROCESSORS_ONLN)
grep -Eq "^[a-z0-9]+ +$cpus " "$T/out" || fail "peak --threads 0 did not measure $cpus threads: $(cat "$T/out")"

# -- a value four ways: -oFILE, -o FILE, --output=FILE, --output FILE --
mha run "$MODEL" "$INPUT" "-o$T/r1.npy"
[ "$rc" = 0 ] || fail "run -oFILE: $(cat "$T/err")"
mha run "$MODEL" "$INPUT" -o "$T/r2.npy"
[ "$rc" = 0 ] || fail "run -o FILE: $(cat "$T/err")"
mha run "$MODEL" "$INPUT" "--output=$T/r3.npy"
[ "$rc" = 0 ] || fail "run --output=FILE: $(cat "$T/err")"
mha run "$MODEL" "$INPUT" --output "$T/r4.npy"
[ "$rc" = 0 ] || fail "run --output FILE: $(cat "$T/err")"
mha run "$MODEL" --outp "$T/r5.npy" -- "$INPUT"
[ "$rc" = 0 ] || fail "run --outp (a prefix) ... -- INPUT: $(cat "$T/err")"
for f in r2 r3 r4 r5 t0; do cmp -s "$T/r1.npy" "$T/$f.npy" || fail "run: $f.npy differs"; done
usage_error "run --ou (ambiguous)" \
  "mha run: option '--ou' is ambiguous (--output, --out-dir) (see 'mha run --help')" \
  run "$MODEL" "$INPUT" --ou "$T/x.npy"

gen() { mha gen -d 16 -H 2 --seed 7 "$@"; [ "$rc" = 0 ] || fail "gen $*: $(cat "$T/err")"; }
gen "-o$T/g1.onnx"
gen -o "$T/g2.onnx"
gen "--output=$T/g3.onnx"
gen --output "$T/g4.onnx"
gen --outp "$T/g5.onnx" -H2 "-d16"
for k in 2 3 4 5; do cmp -s "$T/g1.onnx" "$T/g$k.onnx" || fail "gen: model $k differs"; done
gen --no-bias -o "$T/nb1.onnx"
gen --no-b -o "$T/nb2.onnx"
cmp -s "$T/nb1.onnx" "$T/nb2.onnx" || fail "gen --no-b is not --no-bias"
cmp -s "$T/g1.onnx" "$T/nb1.onnx" && fail "gen --no-bias wrote the same model"

# merge: shards of a dataset, merged four ways, each what an unsplit run gives
gen -o "$T/m.onnx" --data "$T/x.npy" --batch 4 --seq 3
mha run "$T/m.onnx" "$T/x.npy" -o "$T/whole.npy" -q
[ "$rc" = 0 ] || fail "run whole: $(cat "$T/err")"
for i in 0 1; do
  mha run "$T/m.onnx" "$T/x.npy" -o "$T/s$i.npy" --shard "$i/2" -q
  [ "$rc" = 0 ] || fail "run --shard $i/2: $(cat "$T/err")"
done
mha merge -q "-o$T/j1.npy" "$T/s0.npy" "$T/s1.npy"
[ "$rc" = 0 ] || fail "merge -oFILE: $(cat "$T/err")"
mha merge -q -o "$T/j2.npy" "$T/s1.npy" "$T/s0.npy"
[ "$rc" = 0 ] || fail "merge -o FILE: $(cat "$T/err")"
mha merge -q "--output=$T/j3.npy" "$T/s0.npy" "$T/s1.npy"
[ "$rc" = 0 ] || fail "merge --output=FILE: $(cat "$T/err")"
mha merge "$T/s0.npy" --output "$T/j4.npy" "$T/s1.npy" --quiet
[ "$rc" = 0 ] || fail "merge --output FILE: $(cat "$T/err")"
for k in 1 2 3 4; do cmp -s "$T/whole.npy" "$T/j$k.npy" || fail "merge: output $k differs"; done

echo "options.sh: $n_commands commands, all passed"
