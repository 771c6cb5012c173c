#!/bin/sh
# plugin_abi.sh -- what a plugin table declares, end to end. The "wrong"
# test plugin is the least an ABI 2.0 plugin may be (no state, float32, no
# optional op, no epilogue): it must load and be usable; a layer with ALiBi
# is refused on it with a message naming the plugin and what it lacks; a
# layer with a rotary embedding runs on it (the host rotates Q and K
# itself), so it fails only on the values (that plugin's attention is off
# on purpose). A plugin built for ABI 1.3 is refused with one line naming
# that ABI.
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
    fail "the minimal 2.0 plugin is not usable: $out"

# the plugin test kit (backends --check, on the public API): the wrong
# plugin fails it, the scalar plugin file passes it
out=$("$MHA" backends --check --backend wrong 2>&1) && fail "the kit passed the wrong plugin: $out"
echo "$out" | tail -n 1 | grep -Eq "^[0-9]+ passed, [1-9][0-9]* failed$" ||
    fail "the kit on the wrong plugin: $out"
out=$("$MHA" backends --check --backend scalar 2>&1) || fail "the kit fails the scalar plugin: $out"
echo "$out" | tail -n 1 | grep -Eq "^[1-9][0-9]* passed, 0 failed$" ||
    fail "the kit on the scalar plugin: $out"

out=$("$MHA" check --backend wrong "$F/mpt_alibi_op15" 2>&1) && fail "ALiBi ran on a plugin without it"
echo "$out" | grep -q "backend 'wrong' does not declare ALiBi (MHA_OP_ALIBI" ||
    fail "the ALiBi refusal does not name the plugin and what it lacks: $out"

out=$("$MHA" check --backend wrong "$F/llama_gqa_op14" 2>&1) && fail "the wrong plugin passed"
echo "$out" | grep -q "elements off" || fail "the rotary layer did not run on it: $out"
echo "$out" | grep -q "ALiBi\|ABI" && fail "the rotary layer was refused: $out"
"$MHA" check --backend scalar "$F/llama_gqa_op14" >/dev/null 2>&1 || fail "scalar fails the rotary layer"

# a plugin of the layer ABI: refused, in one line naming its ABI
export MHA_PLUGIN_PATH="$TESTING_PLUGINS/mha-plugin-test-abi13.so"
out=$("$MHA" backends 2>&1)
n=$(echo "$out" | grep -c "built for plugin ABI 1.3; this host loads ABI 2 plugins only")
[ "$n" -ge 1 ] || fail "the ABI 1.3 plugin is not refused naming its ABI: $out"
echo "$out" | grep "mha-plugin-test-abi13.so" | grep -q " usable " &&
    fail "the ABI 1.3 plugin is listed usable: $out"
out=$("$MHA" run --backend oldabi "$F/llama_gqa_op14" 2>&1) && fail "an ABI 1.3 plugin ran"
echo "plugin_abi.sh: all passed"
