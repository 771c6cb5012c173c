/* test_registry.c -- CPU feature detection, feature masks and the plugin
 * registry (engine/src/runtime/cpu.c, registry.c):
 *  - the feature bits agree with /proc/cpuinfo; mask parsing (hex, names,
 *    errors) and the printable list;
 *  - a folder holding deliberately broken plugins (plugins/testing: no entry
 *    symbol, NULL table, wrong ABI major, too-small table, probe 0, a 2.0
 *    declaration in a table short of the 2.0 size, plugins built for ABI
 *    1.3 and 1.1 (refused naming that ABI), GEMM blocks of INT64_MAX) plus a
 *    garbage file, a non-plugin name and a folder named like a plugin: each
 *    broken one is recorded with a reason naming its path and the symbol,
 *    logged, and the good plugins still load;
 *  - search order and duplicates (first wins, later ones recorded), explicit
 *    file, missing explicit path, empty MHA_PLUGIN_PATH items never meaning
 *    the current directory;
 *  - a probe or init that crashes costs only its plugin; a named backend
 *    opens only its own file;
 *  - trust: plugin files and folders writable by group or others, or owned
 *    by another user, are refused before dlopen, naming the path;
 *  - selection: auto picks avx512 here, avx2 with AVX-512 hidden (by
 *    cpu_mask and by MHA_CPU_MASK), openmp with AVX2 hidden too, scalar by
 *    name, errors naming what exists;
 *  - the plugins export exactly one symbol;
 *  - allocation failure at every step of registry_create is reported, not
 *    crashed on. */
#include "testutil.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"

#define TEST_PLUGIN_DIR MHA_PLUGIN_BUILD_DIR "/../testing-plugins"

static mha_alloc_ctx A;

/* ---- a logger that keeps what it was told ---- */

typedef struct log_sink {
    char text[16384];
    size_t used;
    int warnings;
} log_sink;

static void sink_log(void *user, mha_log_level level, const char *msg) {
    log_sink *s = user;
    if (level == MHA_LOG_WARN) s->warnings++;
    int n = snprintf(s->text + s->used, sizeof s->text - s->used, "%d %s\n", (int)level, msg);
    if (n > 0 && s->used + (size_t)n < sizeof s->text) s->used += (size_t)n;
}

static int setup(void **state) {
    (void)state;
    mha_alloc_ctx_init(&A, NULL);
    return 0;
}

static const plugin_entry *entry_by_path_end(const registry *r, const char *suffix) {
    size_t ls = strlen(suffix);
    for (size_t i = 0; i < r->n_entries; i++) {
        const char *p = r->entries[i].path;
        size_t lp = strlen(p);
        if (lp >= ls && strcmp(p + lp - ls, suffix) == 0) return &r->entries[i];
    }
    return NULL;
}

static const plugin_entry *usable_by_name(const registry *r, const char *name) {
    for (size_t i = 0; i < r->n_entries; i++)
        if (r->entries[i].usable && r->entries[i].name && strcmp(r->entries[i].name, name) == 0)
            return &r->entries[i];
    return NULL;
}

/* ---- CPU features and masks ---- */

/* 1 if the first "flags" line of /proc/cpuinfo lists `flag`, 0 if not,
 * -1 if there is no such file (procfs files report size 0: read by line). */
static int cpuinfo_has(const char *flag) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    static char line[1 << 16];
    int has = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        char pat[64];
        snprintf(pat, sizeof pat, " %s", flag);
        size_t lp = strlen(pat);
        has = 0;
        for (char *p = strstr(line, pat); p; p = strstr(p + 1, pat))
            if (p[lp] == ' ' || p[lp] == '\n' || p[lp] == '\0') has = 1;
        break;
    }
    fclose(f);
    return has;
}

static void test_cpu_detect_matches_cpuinfo(void **state) {
    (void)state;
    uint64_t f = cpu_detect_features();
    static const struct {
        const char *flag;
        uint64_t bit;
    } m[] = {{"sse2", MHA_CPU_SSE2},         {"avx", MHA_CPU_AVX},
             {"fma", MHA_CPU_FMA},           {"avx2", MHA_CPU_AVX2},
             {"avx512f", MHA_CPU_AVX512F},   {"avx512dq", MHA_CPU_AVX512DQ},
             {"avx512bw", MHA_CPU_AVX512BW}, {"avx512vl", MHA_CPU_AVX512VL}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        int has = cpuinfo_has(m[i].flag);
        if (has < 0) skip();
        /* the kernel lists a flag only if the OS enabled its state, as XGETBV says */
        assert_int_equal(has, (f & m[i].bit) != 0);
    }
    /* dependent bits never appear without their base */
    if (f & MHA_CPU_AVX512F) assert_true(f & MHA_CPU_AVX);
    if (f & MHA_CPU_AVX2) assert_true(f & MHA_CPU_AVX);
}

static void test_cpu_parse_mask(void **state) {
    (void)state;
    int ok = -1;
    assert_int_equal(cpu_parse_mask("0x60", &ok), 0x60);
    assert_int_equal(ok, 1);
    assert_int_equal(cpu_parse_mask("  0XfF ", &ok), 0xff);
    assert_int_equal(ok, 1);
    uint64_t all512 = MHA_CPU_AVX512F | MHA_CPU_AVX512DQ | MHA_CPU_AVX512BW | MHA_CPU_AVX512VL |
                      MHA_CPU_AVX512BF16;
    assert_int_equal(cpu_parse_mask("avx512", &ok), all512);
    assert_int_equal(ok, 1);
    assert_int_equal(cpu_parse_mask("AVX512, avx2", &ok), all512 | MHA_CPU_AVX2 | MHA_CPU_FMA);
    assert_int_equal(ok, 1);
    assert_int_equal(cpu_parse_mask("avx512bw,sse4.1", &ok), MHA_CPU_AVX512BW | MHA_CPU_SSE41);
    assert_int_equal(ok, 1);
    assert_int_equal(cpu_parse_mask("", &ok), 0);
    assert_int_equal(ok, 1);
    /* errors */
    cpu_parse_mask("avx3", &ok);
    assert_int_equal(ok, 0);
    cpu_parse_mask("0x", &ok);
    assert_int_equal(ok, 0);
    cpu_parse_mask("0x12345678901234567", &ok); /* 17 digits */
    assert_int_equal(ok, 0);
    cpu_parse_mask("0x60g", &ok);
    assert_int_equal(ok, 0);
    cpu_parse_mask(NULL, &ok);
    assert_int_equal(ok, 0);
}

static void test_cpu_features_str(void **state) {
    (void)state;
    char buf[256];
    assert_string_equal(
        cpu_features_str(MHA_CPU_SSE2 | MHA_CPU_AVX2 | MHA_CPU_FMA, buf, sizeof buf),
        "sse2 fma avx2");
    assert_string_equal(cpu_features_str(0, buf, sizeof buf), "(none)");
    char small[10];
    cpu_features_str(MHA_CPU_SSE2 | MHA_CPU_AVX | MHA_CPU_AVX2, small, sizeof small);
    assert_string_equal(small, "sse2 avx"); /* whole names only */
}

/* ---- loading ---- */

/* A folder with the broken plugins, a garbage .so, a copy of a good plugin (avx2),
 * a file whose name does not match and a folder named like a plugin. */
static const char *make_mixed_folder(void) {
    const char *dir = tu_tmpdir("registry_mixed");
    static const char *broken[] = {"nosym",   "null",  "badabi",    "small",   "probe0",
                                   "short20", "abi13", "hugeblock", "abi11any"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        char src[1024], dst[64];
        snprintf(src, sizeof src, "%s/mha-plugin-test-%s.so", TEST_PLUGIN_DIR, broken[i]);
        snprintf(dst, sizeof dst, "mha-plugin-test-%s.so", broken[i]);
        assert_int_equal(symlink(src, tu_path(dir, dst)), 0);
    }
    const char junk[] = "this is not an ELF file\n";
    assert_int_equal(tu_write_file(tu_path(dir, "mha-plugin-garbage.so"), junk, sizeof junk), 0);
    assert_int_equal(tu_write_file(tu_path(dir, "not-a-plugin.so"), junk, sizeof junk), 0);
    assert_int_equal(mkdir(tu_path(dir, "mha-plugin-dir.so"), 0755), 0);
    /* a copy (another inode), so the build's own avx2 is a true duplicate */
    assert_int_equal(tu_system("cp '%s' '%s'", MHA_PLUGIN_BUILD_DIR "/mha-plugin-avx2.so",
                               tu_path(dir, "mha-plugin-zz-avx2-copy.so")),
                     0);
    return dir;
}

static void test_broken_plugins_are_skipped_with_reasons(void **state) {
    (void)state;
    const char *dir = make_mixed_folder();
    static log_sink sink;
    memset(&sink, 0, sizeof sink);
    registry_options o = {0};
    o.plugin_path = dir;
    o.log = sink_log;
    o.log_user = &sink;
    o.log_level = MHA_LOG_DEBUG;
    registry *r = NULL;
    mha_error err = {0};
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);

    /* entry 0 is the built-in */
    assert_string_equal(r->entries[0].path, "(built-in)");
    assert_string_equal(r->entries[0].name, "scalar");
    assert_true(r->entries[0].usable);
    assert_null(r->entries[0].dl_handle);

    struct {
        const char *file;
        const char *needle; /* in the reason */
    } expect[] = {
        {"/mha-plugin-garbage.so", "dlopen failed"},
        {"/mha-plugin-test-nosym.so", "no symbol 'mha_plugin_get'"},
        {"/mha-plugin-test-null.so", "mha_plugin_get(2) returned NULL"},
        {"/mha-plugin-test-badabi.so", "ABI major 3; this host speaks 2"},
        {"/mha-plugin-test-small.so", "16 bytes"},
        {"/mha-plugin-test-probe0.so", "testing: this probe always says no"},
        {"/mha-plugin-test-short20.so", "a table of 144 bytes; ABI 2.0 needs 152"},
        /* plugins of the layer ABI, however their entry answers */
        {"/mha-plugin-test-abi13.so",
         "built for plugin ABI 1.3; this host loads ABI 2 plugins only (rebuild it"},
        {"/mha-plugin-test-abi11any.so", "built for plugin ABI 1.1; this host loads ABI 2"},
        {"/mha-plugin-test-hugeblock.so", "gemm blocks 9223372036854775807 x 1 (need 1..4096)"},
        {"/mha-plugin-dir.so", "not a readable regular file"},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const plugin_entry *e = entry_by_path_end(r, expect[i].file);
        if (!e) fail_msg("no entry for %s", expect[i].file);
        assert_false(e->usable);
        if (!strstr(e->reason, expect[i].needle))
            fail_msg("%s: reason '%s' lacks '%s'", expect[i].file, e->reason, expect[i].needle);
        /* the reason names the file (dlopen's message does too) */
        const char *base = strrchr(expect[i].file, '/') + 1;
        if (!strstr(e->reason, base)) fail_msg("reason '%s' does not name %s", e->reason, base);
        /* and the logger heard about it */
        if (!strstr(sink.text, base)) fail_msg("log lacks %s:\n%s", base, sink.text);
    }
    /* only files named mha-plugin-*.so are considered */
    assert_null(entry_by_path_end(r, "/not-a-plugin.so"));
    /* the probe-0 plugin is a valid table: its name is known */
    const plugin_entry *p0 = entry_by_path_end(r, "/mha-plugin-test-probe0.so");
    assert_non_null(p0->name);
    assert_string_equal(p0->name, "broken");
    assert_int_equal(p0->score, 0);
    assert_true(sink.warnings >= 9);

    /* the good ones still load: avx2 from this folder (a symlink, first),
     * the rest from the folder beside the test binary (build/lib/mha/plugins) */
    const plugin_entry *avx2 = usable_by_name(r, "avx2");
    assert_non_null(avx2);
    assert_non_null(strstr(avx2->path, "mha-plugin-zz-avx2-copy.so"));
    assert_non_null(usable_by_name(r, "openmp"));
    const plugin_entry *dup = entry_by_path_end(r, "/lib/mha/plugins/mha-plugin-avx2.so");
    assert_non_null(dup);
    assert_false(dup->usable);
    assert_non_null(strstr(dup->reason, "duplicate"));
    assert_non_null(strstr(dup->reason, "zz-avx2-copy"));

    /* a broken plugin is never selectable, even by its name */
    const plugin_entry *sel = NULL;
    assert_int_equal(registry_select(r, "broken", &sel, &err), MHA_ERR_BACKEND);
    assert_non_null(strstr(err.message, "always says no"));
    registry_free(r);
}

/* A registry whose explicit plugin_path is `path`. */
static registry *registry_with_path(const char *path) {
    registry_options o = {0};
    o.plugin_path = path;
    registry *r = NULL;
    mha_error err = {0};
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    return r;
}

/* What a table declares is what the host reads: the "wrong" test plugin
 * (no state, float32 only, no optional op, no epilogue) loads, is usable
 * and gets no rotary entry; the in-tree plugins declare theirs. A table of
 * a later minor (larger) loads and is used at this host's minor; one a
 * byte short of 2.0, or with init/fini NULL, is judged by size alone. */
static void test_declared_ops_and_minor_versions(void **state) {
    (void)state;
    registry *r = registry_with_path(TEST_PLUGIN_DIR "/mha-plugin-wrong.so");
    const plugin_entry *w = usable_by_name(r, "wrong");
    if (!w) fail_msg("the minimal 2.0 plugin did not load: %s", r->entries[1].reason);
    assert_null(w->plugin->init);
    assert_null(registry_plugin_rotary(w->plugin));
    assert_false(registry_plugin_has_op(w->plugin, MHA_OP_ALIBI));
    assert_false(registry_plugin_epilogue(w->plugin, MHA_ACT_GELU_ERF, 0));
    assert_false(registry_plugin_serves(w->plugin, MHA_PRECISION_BFLOAT16));
    const plugin_entry *sc = usable_by_name(r, "scalar");
    assert_int_equal(registry_plugin_minor(sc->plugin), MHA_PLUGIN_ABI_MINOR);
    assert_non_null(registry_plugin_rotary(sc->plugin));
    assert_true(registry_plugin_has_op(sc->plugin, MHA_OP_ALIBI | MHA_OP_ROTARY));
    const plugin_entry *avx2 = usable_by_name(r, "avx2");
    if (avx2) assert_non_null(registry_plugin_rotary(avx2->plugin));
    /* a later minor: read at this host's; rotary declared but absent is
     * not handed out */
    mha_plugin later = *sc->plugin;
    later.abi_minor = MHA_PLUGIN_ABI_MINOR + 3;
    assert_int_equal(registry_plugin_minor(&later), MHA_PLUGIN_ABI_MINOR);
    later.ops = 0;
    assert_null(registry_plugin_rotary(&later));
    registry_free(r);
}

static void test_explicit_file_and_missing_path(void **state) {
    (void)state;
    registry_options o = {0};
    mha_error err = {0};
    registry *r = registry_with_path(TEST_PLUGIN_DIR "/mha-plugin-test-badabi.so");
    assert_true(r->n_entries >= 2);
    assert_non_null(strstr(r->entries[1].reason, "ABI major"));
    registry_free(r);

    /* an explicit FIFO is refused before dlopen, which would wait on it */
    const char *fifo = tu_path(tu_tmpdir("registry_fifo"), "mha-plugin-fifo.so");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    o.plugin_path = fifo;
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    assert_non_null(strstr(r->entries[1].reason, "not a regular file"));
    assert_null(r->entries[1].dl_handle);
    registry_free(r);

    o.plugin_path = "/nonexistent/mha-plugins";
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    assert_string_equal(r->entries[1].path, "/nonexistent/mha-plugins");
    assert_non_null(strstr(r->entries[1].reason, "No such file"));
    assert_null(r->entries[1].name);
    registry_free(r);
}

/* Plugins others could have written are refused, naming the path that is
 * writable or foreign; a sticky world-writable folder (/tmp-like) is not a
 * reason by itself. Each case scans one folder holding a copy of the avx2
 * plugin. */
static const plugin_entry *scan_one(registry **r, const char *dir) {
    registry_options o = {0};
    o.plugin_path = dir;
    mha_error err = {0};
    assert_int_equal(registry_create(&A, &o, r, &err), MHA_OK);
    return entry_by_path_end(*r, "/mha-plugin-trust.so");
}

static void expect_untrusted(const char *dir, const char *needle_path, const char *needle) {
    registry *r = NULL;
    const plugin_entry *e = scan_one(&r, dir);
    assert_non_null(e);
    assert_false(e->usable);
    assert_null(e->dl_handle); /* refused before dlopen: its code never ran */
    if (!strstr(e->reason, needle) || !strstr(e->reason, needle_path))
        fail_msg("reason '%s' lacks '%s' or '%s'", e->reason, needle, needle_path);
    registry_free(r);
}

static void test_untrusted_plugins_refused(void **state) {
    (void)state;
    const char *base = tu_tmpdir("registry_trust");
    char dir[1024], file[1100];
    snprintf(dir, sizeof dir, "%s/plugins", base);
    snprintf(file, sizeof file, "%s/mha-plugin-trust.so", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(tu_system("cp '%s' '%s'", MHA_PLUGIN_BUILD_DIR "/mha-plugin-avx2.so", file),
                     0);
    char real_dir[4096];
    assert_non_null(realpath(dir, real_dir));

    /* trusted: loads (a duplicate of the build's avx2, which is fine) */
    registry *r = NULL;
    const plugin_entry *e = scan_one(&r, dir);
    assert_non_null(e);
    assert_non_null(e->dl_handle);
    registry_free(r);

    assert_int_equal(chmod(file, 0757), 0);
    expect_untrusted(dir, "mha-plugin-trust.so", "plugin file");
    expect_untrusted(dir, "mha-plugin-trust.so", "writable by everyone");
    assert_int_equal(chmod(file, 0775), 0);
    expect_untrusted(dir, "mha-plugin-trust.so", "writable by its group");
    assert_int_equal(chmod(file, 0755), 0);

    assert_int_equal(chmod(dir, 0777), 0);
    expect_untrusted(dir, real_dir, "folder of the plugin");
    /* the same folder with the sticky bit: others cannot replace the file */
    assert_int_equal(chmod(dir, 01777), 0);
    e = scan_one(&r, dir);
    assert_non_null(e);
    if (!e->dl_handle) fail_msg("refused in a sticky folder: %s", e->reason);
    registry_free(r);
    assert_int_equal(chmod(dir, 0755), 0);

    /* owned by someone else (only root can give a file away) */
    if (geteuid() == 0) {
        assert_int_equal(chown(file, 65534, 65534), 0);
        expect_untrusted(dir, "mha-plugin-trust.so", "owned by uid 65534");
        assert_int_equal(chown(file, 0, 0), 0);
    } else {
        print_message("not root: the foreign-owner case is not exercised\n");
    }
}

/* Plugins whose probe or init crashes are recorded as unusable (opened,
 * probed and initialised in a child process first); the others still load,
 * and auto does not pick the one whose probe scored 1000 before its init
 * crashed. */
static void test_crashing_probe_isolated(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("registry_crash");
    static const char *const crashing[] = {"crashprobe", "crashinit"};
    for (size_t i = 0; i < 2; i++) {
        char src[1024], dst[64];
        snprintf(src, sizeof src, "%s/mha-plugin-test-%s.so", TEST_PLUGIN_DIR, crashing[i]);
        snprintf(dst, sizeof dst, "mha-plugin-test-%s.so", crashing[i]);
        assert_int_equal(symlink(src, tu_path(dir, dst)), 0);
    }
    registry_options o = {0};
    o.plugin_path = dir;
    registry *r = NULL;
    mha_error err = {0};
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    for (size_t i = 0; i < 2; i++) {
        char file[64];
        snprintf(file, sizeof file, "/mha-plugin-test-%s.so", crashing[i]);
        const plugin_entry *e = entry_by_path_end(r, file);
        assert_non_null(e);
        assert_false(e->usable);
        assert_null(e->dl_handle); /* never opened in this process */
        if (!strstr(e->reason, "child process did not return") || !strstr(e->reason, file + 1))
            fail_msg("reason: %s", e->reason);
    }
    const plugin_entry *sel = NULL;
    assert_int_equal(registry_select(r, NULL, &sel, &err), MHA_OK);
    assert_string_not_equal(sel->name, "broken");
    assert_non_null(usable_by_name(r, "avx2"));
    registry_free(r);
}

/* A probe that never returns: the child is killed after the timeout and
 * the plugin recorded as unusable; registry_create returns. */
static void test_hanging_probe_times_out(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("registry_hang");
    assert_int_equal(symlink(MHA_PLUGIN_BUILD_DIR
                             "/../testing-plugins-hang/mha-plugin-test-hangprobe.so",
                             tu_path(dir, "mha-plugin-test-hangprobe.so")),
                     0);
    registry_options o = {0};
    o.plugin_path = dir;
    o.probe_timeout_ms = 300;
    registry *r = NULL;
    mha_error err = {0};
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    const plugin_entry *e = entry_by_path_end(r, "/mha-plugin-test-hangprobe.so");
    assert_non_null(e);
    assert_false(e->usable);
    assert_null(e->dl_handle);
    if (!strstr(e->reason, "did not return within 300 ms (killed)")) fail_msg("%s", e->reason);
    registry_free(r);
}

/* With a backend name, folders are searched for that plugin's file only:
 * the broken and crashing plugins planted beside it are never opened. */
static void test_named_backend_opens_only_its_file(void **state) {
    (void)state;
    const char *dir = make_mixed_folder();
    assert_int_equal(symlink(TEST_PLUGIN_DIR "/mha-plugin-test-crashprobe.so",
                             tu_path(dir, "mha-plugin-test-crashprobe.so")),
                     0);
    registry_options o = {0};
    o.plugin_path = dir;
    o.only_name = "scalar";
    registry *r = NULL;
    mha_error err = {0};
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    for (size_t i = 1; i < r->n_entries; i++)
        if (!strstr(r->entries[i].path, "mha-plugin-scalar.so"))
            fail_msg("opened %s for backend 'scalar'", r->entries[i].path);
    const plugin_entry *sel = NULL;
    assert_int_equal(registry_select(r, "scalar", &sel, &err), MHA_OK);
    registry_free(r);

    o.only_name = "avx2";
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    assert_non_null(entry_by_path_end(r, "/mha-plugin-avx2.so"));
    assert_null(entry_by_path_end(r, "/mha-plugin-test-crashprobe.so"));
    assert_null(entry_by_path_end(r, "/mha-plugin-openmp.so"));
    registry_free(r);

    o.only_name = "auto"; /* every file */
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    assert_non_null(entry_by_path_end(r, "/mha-plugin-test-crashprobe.so"));
    registry_free(r);
}

/* An empty or relative MHA_PLUGIN_PATH item is not ".": plant a broken
 * plugin in the current directory and check it is never looked at. */
static void test_never_the_current_directory(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("registry_cwd");
    const char junk[] = "garbage";
    assert_int_equal(tu_write_file(tu_path(dir, "mha-plugin-cwd.so"), junk, sizeof junk), 0);
    char old[4096];
    assert_non_null(getcwd(old, sizeof old));
    assert_int_equal(chdir(dir), 0);
    /* empty items, and relative ones (which would resolve here), are skipped */
    static const char *const paths[] = {"::", ".", "./:", "mha-plugin-cwd.so", "../registry_cwd"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        setenv("MHA_PLUGIN_PATH", paths[i], 1);
        static log_sink sink;
        memset(&sink, 0, sizeof sink);
        registry_options o = {0};
        o.use_env = 1;
        o.log = sink_log;
        o.log_user = &sink;
        o.log_level = MHA_LOG_WARN;
        registry *r = NULL;
        mha_error err = {0};
        assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
        /* the file is never looked at: no entry of it, but the listing of
         * an ignored item (named as given) */
        const plugin_entry *cwd = entry_by_path_end(r, "mha-plugin-cwd.so");
        if (cwd && (cwd->plugin || !strstr(cwd->reason, "is not an absolute path: ignored")))
            fail_msg("MHA_PLUGIN_PATH=%s: %s", paths[i], cwd->reason);
        if (i > 0 && !strstr(sink.text, "is not an absolute path: ignored"))
            fail_msg("MHA_PLUGIN_PATH=%s: no warning: %s", paths[i], sink.text);
        /* a relative item is listed, unusable, with the reason: what
         * `mha backends` prints (the log is not read there) */
        if (i > 0) {
            char first[64];
            snprintf(first, sizeof first, "%.*s", (int)strcspn(paths[i], ":"), paths[i]);
            const plugin_entry *e = NULL;
            for (size_t k = 0; k < r->n_entries && !e; k++)
                if (strcmp(r->entries[k].path, first) == 0) e = &r->entries[k];
            if (!e || e->usable || e->plugin || !strstr(e->reason, "MHA_PLUGIN_PATH item") ||
                !strstr(e->reason, "is not an absolute path: ignored"))
                fail_msg("MHA_PLUGIN_PATH=%s: the ignored item '%s' is not listed", paths[i],
                         first);
        } else {
            for (size_t k = 0; k < r->n_entries; k++)
                if (strstr(r->entries[k].reason, "MHA_PLUGIN_PATH item"))
                    fail_msg("an empty item listed: %s", r->entries[k].reason);
        }
        registry_free(r);
    }
    assert_int_equal(chdir(old), 0);
    unsetenv("MHA_PLUGIN_PATH");
}

/* Without any path option the folder beside libmha (here: beside the test
 * binary, build/bin/../lib/mha/plugins) is still found. */
static void test_beside_libmha(void **state) {
    (void)state;
    registry_options o = {0};
    registry *r = NULL;
    mha_error err = {0};
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    const plugin_entry *e = usable_by_name(r, "openmp");
    assert_non_null(e);
    assert_non_null(strstr(e->path, "/lib/mha/plugins/mha-plugin-openmp.so"));
    /* the folder is scanned once although two spellings reach it */
    size_t n_openmp = 0;
    for (size_t i = 0; i < r->n_entries; i++)
        if (r->entries[i].name && strcmp(r->entries[i].name, "openmp") == 0) n_openmp++;
    assert_int_equal(n_openmp, 1);
    registry_free(r);
}

/* ---- selection ---- */

static registry *make_registry(uint64_t cpu_mask, int use_env) {
    registry_options o = {0};
    o.plugin_path = MHA_PLUGIN_BUILD_DIR;
    o.cpu_mask = cpu_mask;
    o.use_env = use_env;
    registry *r = NULL;
    mha_error err = {0};
    if (registry_create(&A, &o, &r, &err) != MHA_OK) fail_msg("%s", err.message);
    return r;
}

static const char *auto_name(const registry *r) {
    const plugin_entry *e = NULL;
    mha_error err = {0};
    if (registry_select(r, "auto", &e, &err) != MHA_OK) fail_msg("%s", err.message);
    return e->name;
}

static void test_auto_selection_follows_scores(void **state) {
    (void)state;
    uint64_t f = cpu_detect_features();
    if (!(f & MHA_CPU_AVX512F) || !(f & MHA_CPU_AVX2)) skip();
    int ok;
    registry *r = make_registry(0, 0);
    assert_string_equal(auto_name(r), "avx512");
    const plugin_entry *e = NULL;
    assert_int_equal(registry_select(r, NULL, &e, NULL), MHA_OK);
    assert_string_equal(e->name, "avx512");
    assert_int_equal(registry_select(r, "", &e, NULL), MHA_OK);
    assert_string_equal(e->name, "avx512");
    registry_free(r);

    r = make_registry(cpu_parse_mask("avx512", &ok), 0);
    assert_string_equal(auto_name(r), "avx2");
    assert_false(r->cpu_features & MHA_CPU_AVX512F);
    /* avx512 is there but cannot run: selecting it by name says why */
    mha_error err = {0};
    assert_int_equal(registry_select(r, "avx512", &e, &err), MHA_ERR_BACKEND);
    assert_non_null(strstr(err.message, "AVX-512"));
    assert_non_null(strstr(err.message, "avx2"));
    registry_free(r);

    r = make_registry(cpu_parse_mask("avx512,avx2", &ok), 0);
    assert_string_equal(auto_name(r), "openmp");
    registry_free(r);

    /* the same through MHA_CPU_MASK */
    setenv("MHA_CPU_MASK", "avx512", 1);
    r = make_registry(0, 1);
    assert_string_equal(auto_name(r), "avx2");
    registry_free(r);
    setenv("MHA_CPU_MASK", "0x60", 1); /* AVX2 | AVX512F */
    r = make_registry(0, 1);
    assert_string_equal(auto_name(r), "openmp");
    registry_free(r);
    /* ignored without use_env */
    r = make_registry(0, 0);
    assert_string_equal(auto_name(r), "avx512");
    registry_free(r);
    /* a bad mask is an error naming the variable */
    setenv("MHA_CPU_MASK", "avx9000", 1);
    registry_options o = {0};
    o.use_env = 1;
    registry *bad = NULL;
    assert_int_equal(registry_create(&A, &o, &bad, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_null(bad);
    assert_non_null(strstr(err.message, "MHA_CPU_MASK"));
    unsetenv("MHA_CPU_MASK");
}

static void test_select_by_name(void **state) {
    (void)state;
    registry *r = make_registry(0, 0);
    const plugin_entry *e = NULL;
    mha_error err = {0};
    /* the scalar plugin file beats the built-in on the tie */
    assert_int_equal(registry_select(r, "scalar", &e, &err), MHA_OK);
    assert_non_null(e->dl_handle);
    assert_non_null(strstr(e->path, "mha-plugin-scalar.so"));
    assert_int_equal(registry_select(r, "openmp", &e, &err), MHA_OK);
    assert_true(e->plugin->flags & MHA_PLUGIN_SELF_PARALLEL);
    assert_int_equal(registry_select(r, "nosuch", &e, &err), MHA_ERR_BACKEND);
    assert_null(e);
    assert_non_null(strstr(err.message, "'nosuch' not found"));
    assert_non_null(strstr(err.message, "scalar (built-in"));
    assert_non_null(strstr(err.message, "openmp"));
    registry_free(r);

    /* only the built-in: auto and "scalar" give it */
    registry_options o = {0};
    o.plugin_path = TEST_PLUGIN_DIR "/mha-plugin-test-null.so";
    assert_int_equal(registry_create(&A, &o, &r, &err), MHA_OK);
    assert_int_equal(registry_select(r, "scalar", &e, &err), MHA_OK);
    registry_free(r);
}

/* Each plugin exports mha_plugin_get and nothing else of its own. */
static void test_plugins_export_one_symbol(void **state) {
    (void)state;
    static const char *names[] = {"scalar", "avx2", "avx512", "openmp"};
    static const char *hidden[] = {"scalar_attention_row",    "avx2_gemm",
                                   "avx512_attention",        "openmp_gemm",
                                   "mha_scalar_plugin_table", "mha_avx2_plugin_table",
                                   "gemm_blocked_rows"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/mha-plugin-%s.so", MHA_PLUGIN_BUILD_DIR, names[i]);
        if (access(path, R_OK) != 0) continue;
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        assert_non_null(h);
        assert_non_null(dlsym(h, "mha_plugin_get"));
        for (size_t j = 0; j < sizeof hidden / sizeof hidden[0]; j++)
            if (dlsym(h, hidden[j])) fail_msg("%s exports %s", path, hidden[j]);
        /* never dlclose'd, like the registry */
    }
}

/* Allocation failure at each step: a clean MHA_ERR_NO_MEMORY, no leak
 * (ASan builds check the latter), then success once allocations work. */
static void test_allocation_failures(void **state) {
    (void)state;
    registry_options o = {0};
    o.plugin_path = MHA_PLUGIN_BUILD_DIR;
    int failures = 0;
    for (long n = 1; n < 400; n++) {
        registry *r = NULL;
        mha_error err = {0};
        mha_alloc_fail_at(n, 0);
        mha_status st = registry_create(&A, &o, &r, &err);
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            registry_free(r);
            break;
        }
        assert_int_equal(st, MHA_ERR_NO_MEMORY);
        assert_null(r);
        assert_non_null(strstr(err.message, "memory"));
        failures++;
    }
    assert_true(failures > 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_declared_ops_and_minor_versions),
        cmocka_unit_test(test_cpu_detect_matches_cpuinfo),
        cmocka_unit_test(test_cpu_parse_mask),
        cmocka_unit_test(test_cpu_features_str),
        cmocka_unit_test(test_broken_plugins_are_skipped_with_reasons),
        cmocka_unit_test(test_explicit_file_and_missing_path),
        cmocka_unit_test(test_never_the_current_directory),
        cmocka_unit_test(test_untrusted_plugins_refused),
        cmocka_unit_test(test_crashing_probe_isolated),
        cmocka_unit_test(test_hanging_probe_times_out),
        cmocka_unit_test(test_named_backend_opens_only_its_file),
        cmocka_unit_test(test_beside_libmha),
        cmocka_unit_test(test_auto_selection_follows_scores),
        cmocka_unit_test(test_select_by_name),
        cmocka_unit_test(test_plugins_export_one_symbol),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
