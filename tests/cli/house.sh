#!/bin/sh
# house.sh -- the library's calls go one way: no file of engine/src calls,
# directly or through others, back into a file that calls it. Read from the
# built objects (nm): file A calls file B when A needs a symbol that B
# defines. Any pair of files that reach each other is named with the
# symbols of the first arrow, and the test fails. Then what the tools take
# from the library is public: declared in engine/include/mha and exported
# by libmha.so; and tools/ includes nothing of engine/src.
# Env: MHA_BUILD_DIR, MHA_SOURCE_DIR, MHA_TEST_TMP.
set -eu
: "${MHA_BUILD_DIR:?}" "${MHA_SOURCE_DIR:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
die() { echo "FAIL: $*" >&2; exit 1; }
command -v nm >/dev/null 2>&1 || { echo "skip: no nm"; exit 77; }

OBJ="$MHA_BUILD_DIR/engine/CMakeFiles"
# (only objects whose source still exists: a build folder used before files
# moved keeps the objects of their old paths)
find "$OBJ/mha_objs.dir" "$OBJ/mha_common.dir" -name '*.c.o' -path '*/src/*' 2>/dev/null |
  sort | while IFS= read -r o; do
    s=${o#*/src/}
    if [ -e "$MHA_SOURCE_DIR/engine/src/${s%.o}" ]; then echo "$o"; fi
  done >"$T/objects"
n=$(wc -l <"$T/objects")
[ "$n" -ge 10 ] || die "found $n engine objects under $OBJ"

# "D file symbol" for every definition, "U file symbol" for every need,
# from one nm over all the objects for each kind (-A: each line begins
# "OBJECT:"; an object path holds no ':'). Two nm per object cost 19 s of
# CPU here: starting nm costs ~30 ms on this VM.
syms() {
  tr '\n' '\0' <"$T/objects" | xargs -0 nm -A "$@" |
    awk -v kind="$1" '{
      i = index($0, ":"); f = substr($0, 1, i - 1); sub(/.*\/src\//, "", f); sub(/\.c\.o$/, "", f)
      n = split(substr($0, i + 1), w, " ")
      if (kind == "-u" && n >= 2) print "U", f, w[2]
      else if (kind != "-u" && n == 3) print "D", f, w[3]
    }'
}
{ syms -g --defined-only && syms -u; } >"$T/syms"
grep -q '^D base/common mha_status_name$' "$T/syms" || die "nm read no definitions"

# the arrows, then every pair that reaches each other (closure by rounds)
awk '
  $1 == "D" { def[$3] = $2; next }
  { need[++n] = $2; sym[n] = $3 }
  END {
    for (i = 1; i <= n; i++) {
      b = def[sym[i]]
      if (b == "" || b == need[i]) continue
      k = need[i] SUBSEP b
      if (!(k in names)) { names[k] = sym[i]; edges[++ne] = k }
      else if (length(names[k]) < 120) names[k] = names[k] " " sym[i]
      reach[k] = 1; node[need[i]] = 1; node[b] = 1
    }
    do {
      grew = 0
      for (a in node) for (b in node) if ((a, b) in reach)
        for (c in node) if (((b, c) in reach) && !((a, c) in reach)) { reach[a, c] = 1; grew = 1 }
    } while (grew)
    bad = 0
    for (e = 1; e <= ne; e++) {
      split(edges[e], ab, SUBSEP)
      if ((ab[2], ab[1]) in reach) {
        print "circle: " ab[1] " -> " ab[2] " (" names[edges[e]] "), and back"
        bad = 1
      }
    }
    exit bad
  }' "$T/syms" >"$T/circles" || { cat "$T/circles" >&2; die "files of engine/src call back into their callers"; }
echo "ok: $n engine objects, no file calls back into a file that calls it"

# the tools' needs that became public: declared with MHA_API, exported
LIB="$MHA_BUILD_DIR/lib/libmha.so"
[ -f "$LIB" ] || die "no $LIB"
nm -D --defined-only "$LIB" | awk '{ print $3 }' >"$T/exported"
for f in mha_model_layout mha_text_escape mha_tensor_file_options_init mha_tensor_file_read \
  mha_tensor_file_tensor mha_tensor_file_name mha_tensor_file_free mha_dtype_can_convert \
  mha_dtype_convert mha_file_format_of mha_file_output_format mha_tensor_file_check_output \
  mha_tensor_file_write_pending mha_output_file_path mha_output_file_commit \
  mha_output_file_abort mha_output_clean_stale mha_npy_parse_header mha_npy_format_header \
  mha_npy_reader_open mha_npy_reader_header mha_npy_reader_read_rows mha_npy_reader_close \
  mha_npy_writer_begin mha_npy_writer_write_rows mha_npy_writer_commit mha_npy_writer_abort \
  mha_output_check mha_output_same_file mha_output_save mha_output_lock_acquire \
  mha_output_lock_release mha_runtime_plugin_table mha_runtime_cpu_features \
  mha_cpu_features_string mha_npy_reader_mapped_rows mha_npy_reader_advise \
  mha_npy_writer_begin_partial mha_npy_writer_partial_path mha_npy_writer_sync \
  mha_npy_writer_detach mha_npy_format_header_shard mha_output_clean_stale_except \
  mha_output_save_nofollow mha_output_is_stream mha_output_file_begin_partial \
  mha_output_file_tmp_path; do
  grep -q "MHA_API .*[ *]$f(" "$MHA_SOURCE_DIR"/engine/include/mha/*.h ||
    die "$f is not declared in a public header"
  grep -qx "$f" "$T/exported" || die "libmha.so does not export $f"
done
echo "ok: what the tools need from the library is public"

# the command stands on the public API: a tool includes its own headers,
# engine/include/mha and the plugin ABI, and nothing of engine/src
: >"$T/inside"
for f in "$MHA_SOURCE_DIR"/tools/*.c "$MHA_SOURCE_DIR"/tools/*.h; do
  sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | while IFS= read -r h; do
    [ -f "$MHA_SOURCE_DIR/tools/$h" ] && continue
    [ -f "$MHA_SOURCE_DIR/engine/include/$h" ] && continue
    [ -f "$MHA_SOURCE_DIR/plugins/include/$h" ] && continue
    echo "${f##*/}:$h"
  done
done | sort >"$T/inside"
if [ -s "$T/inside" ]; then
  echo "tools including the engine's insides:" >&2
  cat "$T/inside" >&2
  die "tools/ reaches into engine/src"
fi
echo "ok: tools/ uses the public API only"
