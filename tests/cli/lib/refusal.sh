# refusal.sh -- sourced by shell tests of bad inputs: fail MSG ends the
# test; expect RC NAME CMD... runs CMD (stdout in $T/out, stderr in $T/err)
# and wants exit RC and, for a refusal, exactly one stderr line and
# nothing on stdout -- the rule for bad input: one line naming the file
# and the problem.
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect RC NAME CMD...: CMD must exit RC, and a refusal say so in one
# stderr line (kept in $T/err)
expect() {
  want=$1 name=$2
  shift 2
  if "$@" >"$T/out" 2>"$T/err"; then got=0; else got=$?; fi
  if [ "$got" -ne "$want" ]; then fail "$name: exit $got, wanted $want ($(head -c 600 "$T/err"))"; fi
  if [ "$want" -ne 0 ] && [ "$(wc -l <"$T/err")" -ne 1 ]; then
    fail "$name: not one line: $(head -c 600 "$T/err")"
  fi
  if [ "$want" -ne 0 ] && [ -s "$T/out" ]; then
    fail "$name: a refusal wrote on stdout: $(head -c 300 "$T/out")"
  fi
}
# one_line RC PATTERN CMD...: exit RC, stdout empty, one stderr line
# matching PATTERN
one_line() {
  want=$1 pattern=$2
  shift 2
  expect "$want" "$*" "$@"
  grep -q -- "$pattern" "$T/err" || fail "$*: $(cat "$T/err")"
  echo "ok: $(cat "$T/err")"
}
