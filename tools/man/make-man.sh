#!/bin/sh
# make-man.sh MHA OUTDIR VERSION -- writes the man pages of the `mha` command
# (mha.1 and one mha-COMMAND.1 per subcommand) from the command's own --help
# texts, so the pages can never say other than the command does. The help
# text goes in verbatim (a no-fill block); a NAME line for apropos and a SEE
# ALSO list are added. Used by tools/man.cmake at build time.
set -eu
mha=$1
out=$2
version=$3
mkdir -p "$out"

# troff-escape a help text: backslashes, and lines that start with . or '
escape() {
  sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

commands=$("$mha" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
[ -n "$commands" ] || {
  echo "make-man.sh: no commands in '$mha --help'" >&2
  exit 1
}

see_also() {
  first=1
  for c in "" $commands; do
    other="mha${c:+-$c}"
    [ "$other" = "$1" ] && continue
    [ $first = 1 ] || printf ',\n'
    printf '.BR %s (1)' "$other"
    first=0
  done
  printf '\n'
}

page() { # page NAME SUMMARY HELP-COMMAND...
  name=$1
  summary=$2
  shift 2
  upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
  tmp="$out/.$name.1.tmp"
  {
    printf '.TH %s 1 "" "mha %s" "User Commands"\n' "$upper" "$version"
    printf '.SH NAME\n%s \\- %s\n' "$name" "$summary"
    printf '.SH DESCRIPTION\n.nf\n'
    "$@" --help 2>&1 | escape
    printf '.fi\n.SH SEE ALSO\n'
    see_also "$name"
  } >"$tmp"
  mv "$tmp" "$out/$name.1"
}

page mha "multi-head attention inference engine" "$mha"
for c in $commands; do
  summary=$("$mha" --help | awk -v c="$c" '$1 == c { $1 = ""; sub(/^ +/, ""); print; exit }')
  page "mha-$c" "$summary" "$mha" "$c"
done
