/* test_fuzz_regressions.c -- replays fuzz inputs through the fuzz targets'
 * own entry code (tests/fuzz/entry_<target>.c) in the regular build, so
 * that every crash or hang the fuzzers ever found stays fixed in builds
 * without libFuzzer, and under ASan in `make test-asan`.
 *
 * Replayed, per target: every file of tests/fuzz/regressions/<target>/
 * (each a former crash, hang or broken invariant), the committed seeds
 * (tests/fuzz/seeds/<target>/) and minimized corpus
 * (tests/fuzz/corpus/<target>/), and a few of the project's own models and
 * TensorProto files. With MHA_FUZZ_REPLAY=dir[:dir...] set, every file of
 * <dir>/<target>/ is replayed too (tools/coverage.sh replays the fuzz
 * corpora that way). An entry that finds a broken invariant aborts. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_entry.h"

static const fuzz_target *target_named(const char *name) {
    for (size_t i = 0; i < fuzz_target_count; i++)
        if (strcmp(fuzz_targets[i].name, name) == 0) return &fuzz_targets[i];
    return NULL;
}

static int replay_file(const fuzz_target *t, const char *path) {
    size_t size = 0;
    void *data = tu_read_file(path, &size);
    if (!data) return 0;
    t->one(data, size);
    free(data);
    return 1;
}

/* Replays every regular file of dir (sorted, README* skipped); returns how
 * many. A missing folder replays nothing. */
static int replay_dir(const fuzz_target *t, const char *dir) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) return 0;
    int done = 0;
    for (int i = 0; i < n; i++) {
        const char *base = names[i]->d_name;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, base);
        struct stat st;
        if (base[0] != '.' && strncmp(base, "README", 6) != 0 && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode))
            done += replay_file(t, path);
        free(names[i]);
    }
    free(names);
    return done;
}

static int replay_env_dirs(const fuzz_target *t) {
    const char *env = getenv("MHA_FUZZ_REPLAY");
    if (!env || !*env) return 0;
    char *list = strdup(env);
    assert_non_null(list);
    int done = 0;
    for (char *save = NULL, *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", d, t->name);
        done += replay_dir(t, sub);
    }
    free(list);
    return done;
}

static void replay_target(const char *name, const char *const *data_files) {
    const fuzz_target *t = target_named(name);
    assert_non_null(t);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/regressions/%s", MHA_FUZZ_DIR, name);
    int regressions = replay_dir(t, dir);
    snprintf(dir, sizeof dir, "%s/seeds/%s", MHA_FUZZ_DIR, name);
    int seeds = replay_dir(t, dir);
    snprintf(dir, sizeof dir, "%s/corpus/%s", MHA_FUZZ_DIR, name);
    seeds += replay_dir(t, dir);
    int data = 0;
    for (size_t i = 0; data_files && data_files[i]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", MHA_TEST_DATA, data_files[i]);
        int ok = replay_file(t, path);
        if (!ok) fail_msg("cannot read %s", path);
        data += ok;
    }
    int extra = replay_env_dirs(t);
    print_message("%s: replayed %d regression, %d committed seed and corpus, %d data and %d "
                  "more inputs\n",
                  name, regressions, seeds, data, extra);
}

static void test_replay_onnx_model(void **state) {
    (void)state;
    static const char *const models[] = {
        "conformance/mha_self_d16_h1_b1_s1/model.onnx",
        "conformance/mha_cross_d48_h3_b2_q5_kv12/model.onnx",
        "conformance/onnx_attention_4d_attn_mask_bool_4d/model.onnx",
        "torch-export/torch_mha_keypad_d16_h2_b2_s5/model.onnx", NULL};
    replay_target("onnx_model", models);
}

/* Counts the bytes a load asks for, all allocations together, and refuses
 * (and counts) every allocation past a cap: a load whose work grows without
 * bound then ends soon instead of running for minutes, and is seen. */
typedef struct capped_alloc {
    size_t asked, cap;
    int refused;
} capped_alloc;

static void *capped_alloc_fn(void *user, size_t size, size_t align) {
    capped_alloc *c = user;
    if (size > c->cap - c->asked) {
        c->refused++;
        return NULL;
    }
    c->asked += size;
    void *p = NULL;
    return posix_memalign(&p, align < sizeof p ? sizeof p : align, size ? size : 1) ? NULL : p;
}

static void capped_free_fn(void *user, void *p) {
    (void)user;
    free(p);
}

/* Inputs that were slow because a load did work out of proportion to the
 * file: each loads (or is refused) asking for less than a fixed total of
 * bytes. */
static void test_load_work_bounded(void **state) {
    (void)state;
    static const struct {
        const char *file;
        size_t cap; /* bytes asked by the whole load, all allocations */
    } cases[] = {
        /* the image-size search of the plan ran a graph that fails after
         * its attention at every grid up to 64 patches a side: 993 MB
         * asked, 19 s of CPU in a release build, minutes under ASan; now
         * bounded by the model's size (21 MB) */
        {"plan-fit-images-late-failure-every-grid-slow.onnx", (size_t)256 << 20},
        /* graph inputs that declare a fixed axis of 10^6 beside a symbolic
         * one: the probe inputs stay under their limit, the masks and
         * gathers made from them did not (4.3 and 3.5 s of CPU, 20 s
         * timeouts under ASan; 2 GB asked); now each probe run stops past
         * plan_probe_run_budget, and the sum fitting's tries share one
         * (430 and 320 MB); and a shape pass stopped by that budget is not
         * fitted again at other sizes (214 and 160 MB) */
        {"plan-shape-probe-mask-1e6-rows-where-slow.onnx", (size_t)320 << 20},
        {"plan-fit-sums-position-ids-1e6-rows-gather-slow.onnx", (size_t)320 << 20},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/regressions/onnx_model/%s", MHA_FUZZ_DIR, cases[i].file);
        size_t size = 0;
        void *data = tu_read_file(path, &size);
        assert_non_null(data);
        capped_alloc c = {0, cases[i].cap, 0};
        mha_allocator al = {capped_alloc_fn, capped_free_fn, &c};
        mha_model_options o;
        mha_model_options_init(&o);
        o.allocator = &al;
        mha_model *m = NULL;
        mha_error err;
        mha_error_clear(&err);
        mha_status st = mha_model_load_memory(data, size, NULL, &o, &m, &err);
        print_message("%s: %s after %zu MB asked\n", cases[i].file, mha_status_name(st),
                      c.asked >> 20);
        assert_int_equal(c.refused, 0);
        mha_model_free(m);
        free(data);
    }
}

static void test_replay_npy(void **state) {
    (void)state;
    replay_target("npy", NULL);
}

static void test_replay_tensor_proto(void **state) {
    (void)state;
    static const char *const files[] = {
        "conformance/mha_self_d16_h1_b1_s1/test_data_set_0/input_0.pb",
        "conformance/onnx_attention_4d_fp16/test_data_set_0/input_0.pb",
        "conformance/onnx_attention_4d_attn_mask_bool_4d/test_data_set_0/input_3.pb", NULL};
    replay_target("tensor_proto", files);
}

static void test_replay_external_data(void **state) {
    (void)state;
    replay_target("external_data", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_onnx_model),    cmocka_unit_test(test_load_work_bounded),
        cmocka_unit_test(test_replay_npy),           cmocka_unit_test(test_replay_tensor_proto),
        cmocka_unit_test(test_replay_external_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
