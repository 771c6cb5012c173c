#!/bin/sh
# plugin_abi.sh -- plugins of an older ABI minor version, end to end: the
# "wrong" test plugin is built for ABI 1.1 (its table the frozen 1.1 size,
# smaller than this host's). It must load and be usable; a layer with ALiBi
# is refused on it with a message naming the plugin and its ABI; a layer
# with a rotary embedding runs on it (the host rotates Q and K itself), so
# it fails only on the values (that plugin's attention is off on purpose).
# Env: MHA (the mha binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -u
: "${MHA:?set MHA to the mha binary}"
: "${MHA_TEST_DATA:?set MHA_TEST_DATA to tests/data}"
TESTING_PLUGINS="$(cd "$(dirname "$MHA")/.." && pwd)/lib/mha/testing-plugins"
F="$MHA_TEST_DATA/families"
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[ -f "$TESTING_PLUGINS/mha-plugin-wrong.so" ] || fail "no $TESTING_PLUGINS/mha-plugin-wrong.so"
export MHA_PLUGIN_PATH="$TESTING_PLUGINS/mha-plugin-wrong.so"

out=$("$MHA" backends 2>&1)
echo "$out" | grep -Eq "^wrong +[^ ]+ +[0-9]+ +usable" ||
    fail "the ABI 1.1 plugin is not usable: $out"

out=$("$MHA" check --backend wrong "$F/mpt_alibi_op15" 2>&1) && fail "ALiBi ran on an ABI 1.1 plugin"
echo "$out" | grep -q "backend 'wrong' is a plugin of ABI 1.1, which has no ALiBi" ||
    fail "the ALiBi refusal does not name the plugin and its ABI: $out"

out=$("$MHA" check --backend wrong "$F/llama_gqa_op14" 2>&1) && fail "the wrong plugin passed"
echo "$out" | grep -q "elements off" || fail "the rotary layer did not run on it: $out"
echo "$out" | grep -q "ABI" && fail "the rotary layer was refused for the ABI: $out"
"$MHA" check --backend scalar "$F/llama_gqa_op14" >/dev/null 2>&1 || fail "scalar fails the rotary layer"
echo "plugin_abi.sh: all passed"
