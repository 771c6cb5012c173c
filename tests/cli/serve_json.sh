#!/bin/sh
# serve_json.sh -- `mha serve`'s JSON bodies that are not JSON as RFC 8259
# spells it, each refused with a 400 naming the byte, where they were read
# as some other sequence: a NUL byte inside a number ("[1,2\0,3]" ran as
# [1, 2, 3]), a '+' in front or a leading zero ("[+1, 02]" ran as [1, 2]),
# on a token model and on a layer; text after the array named as such.
# JSON as it should be (negative zero, exponents of a layer's floats)
# still answers 200.
# Exit 77 (skipped) when `mha serve` was built without libmicrohttpd or curl
# is missing. Env: MHA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
# fail, serve_start, SRV, U, C
. "$(dirname "$0")/lib/serve_start.sh"
rm -rf "$T" && mkdir -p "$T"

# post NAME WANT BODY [MESSAGE]: BODY (printf's escapes, \000 a NUL) as JSON
# to /run; wants the status WANT and, when given, MESSAGE in the answer
post() {
  name=$1 want=$2
  printf "$3" >"$T/body"
  code=$($C -o "$T/answer" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary @"$T/body" "$U/run") || fail "$name: no answer"
  [ "$code" = "$want" ] || fail "$name: $code, wanted $want: $(head -c 300 "$T/answer")"
  if [ $# -ge 4 ]; then grep -q -- "$4" "$T/answer" || fail "$name: $(head -c 300 "$T/answer")"; fi
  echo "ok: $name: $code $(head -c 80 "$T/answer" | tr -d '\n')"
}

"$MHA" gen --model encoder -d 16 -H 2 --max-pos 16 -o "$T/enc.onnx" >/dev/null
serve_start "$T/enc.onnx" --threads 1
post "token ids" 200 '[1,2,3]'
cp "$T/answer" "$T/ids123"
post "negative zero" 200 '[-0,2,3]'
post "a NUL byte after a digit" 400 '[1,2\0003]' "byte 4: ',' or ']' expected"
post "a NUL byte before a comma" 400 '[1,2\000,3]' "byte 4: ',' or ']' expected"
post "a '+' in front" 400 '[+1,2,3]' "byte 1: not a number as JSON writes it"
post "a leading zero" 400 '[1,02,3]' "byte 3: not a number as JSON writes it"
post "a bare minus" 400 '[1,-,3]' "byte 3: not a number as JSON writes it"
post "text after the array" 400 '[1,2,3] x' "byte 8: text after the array"
post "still the same answer" 200 '[1,2,3]'
cmp -s "$T/answer" "$T/ids123" || fail "[1,2,3] answered otherwise the second time"
kill "$SRV"
serve_wait_exit

"$MHA" gen -d 16 -H 2 -o "$T/layer.onnx" >/dev/null
serve_start "$T/layer.onnx" --threads 1
row='0.5,-1e-1,2E+0,0.25,1,0,0,0,0,0,0,0,0,0,0,-0.0'
post "a layer's floats" 200 "[[$row],[$row]]"
post "a layer's float with a '+'" 400 "[[+0.5${row#0.5}]]" "byte 2: not a number as JSON writes it"
post "a layer's float '.5'" 400 "[[.5${row#0.5}]]" "byte 2: not a number as JSON writes it"
post "a layer's float with a NUL" 400 "[[0.5\000${row#0.5}]]" "byte 5: ',' or ']' expected"
kill "$SRV"
serve_wait_exit
echo "serve_json.sh: ok"
