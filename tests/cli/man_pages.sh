#!/bin/sh
# man_pages.sh -- the build made a man page for `mha` and for every command
# `mha --help` lists, each naming its command, holding that command's --help
# text, and formatting without a groff warning.
# Env: MHA (the binary), MHA_BUILD_DIR, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_BUILD_DIR:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
dir="$MHA_BUILD_DIR/share/man/man1"

fail() { echo "FAIL: $*" >&2; exit 1; }

commands=$("$MHA" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
[ -n "$commands" ] || fail "no commands in mha --help"
n=0
for c in "" $commands; do
  name="mha${c:+-$c}"
  page="$dir/$name.1"
  [ -f "$page" ] || fail "no man page $page"
  upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
  grep -q "^\\.TH $upper 1 " "$page" || fail "$page: no .TH $upper line"
  grep -q "^$name \\\\- ." "$page" || fail "$page: no NAME line"
  # the first line of the command's usage is in the page
  # shellcheck disable=SC2086
  usage=$("$MHA" $c --help | head -n 1)
  grep -qF "$usage" "$page" || fail "$page: does not hold '$usage'"
  groff -man -Tutf8 -ww -z "$page" 2>"$T/groff.err" || fail "$page: groff failed"
  [ ! -s "$T/groff.err" ] || fail "$page: groff warnings: $(head -n 3 "$T/groff.err")"
  n=$((n + 1))
done
echo "man_pages.sh: $n pages, all passed"
