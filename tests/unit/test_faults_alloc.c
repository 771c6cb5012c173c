/* test_faults_alloc.c -- allocation-failure injection (common.c's
 * mha_alloc_fail_at): model loading, runtime creation, mha_run and the
 * tensor file readers and writers, each made to fail at allocation 1, 2,
 * 3, ... until the operation succeeds, once-only and persistent.
 *
 * Every failure must be a clean MHA_ERR_NO_MEMORY with a message, leave the
 * out-pointer NULL and leak nothing (the ASan build's LeakSanitizer checks
 * at exit); a failure the operation absorbs (a once-only failure it can
 * retry around) must still give the right result; and the runtime and model
 * must work normally afterwards, bitwise as before. The sweep also proves
 * that protobuf-c's allocations go through the engine's allocator: some
 * failure point must land inside protobuf-c's unpack. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "onnx_ir.h"
#include "tensorfile.h"

/* A sweep stops with a failure if the operation never finishes within this
 * many allocations (a loop that retries an allocation forever). */
#define SWEEP_MAX_ALLOCS 200000

/* tensors and readers keep a pointer to their allocator: one for the file */
static mha_alloc_ctx alloc;

#define MHA_CASE "conformance/mha_self_d32_h2_b2_s8"
#define TORCH_CASE "torch-export/torch_mha_self_d16_h1_b2_s5_nobias_op17"

typedef struct sweep_op {
    const char *name;
    /* Runs the operation once; MHA_OK or a failure status with err set. */
    mha_status (*run)(void *ctx, mha_error *err);
    /* After a success: checks the result and releases it. */
    void (*check_and_release)(void *ctx);
    /* After a failure: checks nothing was left behind (out-pointers NULL). */
    void (*check_failed)(void *ctx);
    void *ctx;
} sweep_op;

typedef struct sweep_stats {
    long points;     /* allocations the successful run made */
    long failures;   /* runs that failed cleanly */
    long absorbed;   /* runs that succeeded although an allocation failed */
    int unpack_hits; /* failures reported from inside protobuf-c's unpack */
} sweep_stats;

static int path_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static sweep_stats sweep(const sweep_op *op, int persistent) {
    sweep_stats s = {0};
    for (long n = 1;; n++) {
        if (n > SWEEP_MAX_ALLOCS)
            fail_msg("%s: still allocating after %d failure points", op->name, SWEEP_MAX_ALLOCS);
        mha_error err;
        mha_error_clear(&err);
        mha_alloc_fail_at(n, persistent);
        mha_status st = op->run(op->ctx, &err);
        long count = mha_alloc_count();
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            op->check_and_release(op->ctx);
            if (count < n) { /* the failure point was never reached: done */
                s.points = count;
                break;
            }
            s.absorbed++;
            continue;
        }
        if (st != MHA_ERR_NO_MEMORY || err.status != st || err.message[0] == '\0')
            fail_msg("%s: allocation %ld of %s failing gave %s (err %s): '%s'", op->name, n,
                     persistent ? "all" : "one", mha_status_name(st), mha_status_name(err.status),
                     err.message);
        if (strchr(err.message, '\n')) fail_msg("%s: message not one line", op->name);
        if (strstr(err.message, "unpacking")) s.unpack_hits++;
        op->check_failed(op->ctx);
        s.failures++;
    }
    print_message("%-28s %-10s %5ld allocations, %5ld clean failures, %ld absorbed\n", op->name,
                  persistent ? "persistent" : "once", s.points, s.failures, s.absorbed);
    return s;
}

static void sweep_both(const sweep_op *op, sweep_stats *once, sweep_stats *all) {
    sweep_stats a = sweep(op, 0), b = sweep(op, 1);
    assert_true(a.points > 0);
    /* a persistent failure cannot be retried around */
    assert_int_equal(b.absorbed, 0);
    if (once) *once = a;
    if (all) *all = b;
}

/* ------------------------------------------------------------------------ */
/* model loading                                                             */
/* ------------------------------------------------------------------------ */

typedef struct load_ctx {
    char path[1024];
    mha_model *model;
    mha_model_info want; /* from a load without faults */
    mha_model_options opts;
} load_ctx;

static mha_status load_run(void *vc, mha_error *err) {
    load_ctx *c = vc;
    c->model = (mha_model *)c; /* must be overwritten */
    return mha_model_load_file(c->path, &c->opts, &c->model, err);
}

static void load_check_and_release(void *vc) {
    load_ctx *c = vc;
    assert_non_null(c->model);
    mha_model_info got;
    assert_int_equal(mha_model_get_info(c->model, &got), MHA_OK);
    assert_string_equal(got.form, c->want.form);
    assert_int_equal(got.q_heads, c->want.q_heads);
    assert_int_equal(got.d_head, c->want.d_head);
    assert_int_equal(got.weight_bytes, c->want.weight_bytes);
    mha_model_free(c->model);
    c->model = NULL;
}

static void load_check_failed(void *vc) {
    load_ctx *c = vc;
    assert_null(c->model);
}

static void sweep_model_load(const char *case_dir) {
    load_ctx c;
    memset(&c, 0, sizeof c);
    snprintf(c.path, sizeof c.path, "%s/%s/model.onnx", MHA_TEST_DATA, case_dir);
    assert_true(path_exists(c.path));
    mha_model_options_init(&c.opts);
    mha_error err;
    mha_model *m = NULL;
    assert_int_equal(mha_model_load_file(c.path, &c.opts, &m, &err), MHA_OK);
    assert_int_equal(mha_model_get_info(m, &c.want), MHA_OK);
    /* form points into the model: keep a copy of what is compared */
    static char form[64];
    snprintf(form, sizeof form, "%s", c.want.form);
    c.want.form = form;
    mha_model_free(m);

    sweep_op op = {"mha_model_load_file", load_run, load_check_and_release, load_check_failed, &c};
    sweep_stats once, all;
    sweep_both(&op, &once, &all);
    /* protobuf-c's own allocations must reach the engine's allocator */
    assert_true(once.unpack_hits > 0);
    assert_true(all.unpack_hits > 0);

    /* the same through mha_model_load_memory, persistent only */
    size_t size = 0;
    void *bytes = tu_read_file(c.path, &size);
    assert_non_null(bytes);
    for (long n = 1;; n++) {
        mha_alloc_fail_at(n, 1);
        mha_model *mm = (mha_model *)&c;
        mha_status st = mha_model_load_memory(bytes, size, NULL, &c.opts, &mm, &err);
        long count = mha_alloc_count();
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            mha_model_free(mm);
            assert_true(count < n);
            break;
        }
        assert_int_equal(st, MHA_ERR_NO_MEMORY);
        assert_null(mm);
    }
    free(bytes);
}

static void test_load_mha_model(void **state) {
    (void)state;
    sweep_model_load(MHA_CASE);
}

static void test_load_torch_model(void **state) {
    (void)state;
    sweep_model_load(TORCH_CASE);
}

/* ------------------------------------------------------------------------ */
/* runtime creation                                                          */
/* ------------------------------------------------------------------------ */

typedef struct runtime_ctx {
    mha_runtime_options opts;
    mha_runtime *rt;
} runtime_ctx;

static mha_status runtime_run(void *vc, mha_error *err) {
    runtime_ctx *c = vc;
    c->rt = (mha_runtime *)c;
    return mha_runtime_create(&c->opts, &c->rt, err);
}

static void runtime_check_and_release(void *vc) {
    runtime_ctx *c = vc;
    assert_non_null(c->rt);
    assert_non_null(mha_runtime_backend(c->rt));
    assert_int_equal(mha_runtime_num_threads(c->rt), c->opts.num_threads);
    mha_runtime_destroy(c->rt);
    c->rt = NULL;
}

static void runtime_check_failed(void *vc) {
    runtime_ctx *c = vc;
    assert_null(c->rt);
}

static void test_runtime_create(void **state) {
    (void)state;
    runtime_ctx c;
    memset(&c, 0, sizeof c);
    mha_runtime_options_init(&c.opts);
    c.opts.num_threads = 3; /* the pool's workers are allocated too */
    sweep_op op = {"mha_runtime_create", runtime_run, runtime_check_and_release,
                   runtime_check_failed, &c};
    sweep_both(&op, NULL, NULL);
    /* a forced backend takes the same paths plus the lookup by name */
    c.opts.backend = "scalar";
    c.opts.num_threads = 1;
    op.name = "mha_runtime_create(scalar)";
    sweep_both(&op, NULL, NULL);
}

/* ------------------------------------------------------------------------ */
/* mha_run                                                                   */
/* ------------------------------------------------------------------------ */

#define MAX_IO 8

typedef struct run_ctx {
    mha_runtime *rt;
    mha_model *model;
    tensorfile *in_files[MAX_IO];
    mha_tensor in[MAX_IO], out[MAX_IO];
    void *baseline[MAX_IO]; /* outputs of a run without faults */
    size_t out_bytes[MAX_IO];
    size_t n_in, n_out;
    tensorfile *expect; /* output_0.pb */
} run_ctx;

static mha_status run_run(void *vc, mha_error *err) {
    run_ctx *c = vc;
    for (size_t i = 0; i < c->n_out; i++)
        memset(c->out[i].data, 0xff, c->out_bytes[i]);
    return mha_run(c->rt, c->model, c->in, c->n_in, c->out, c->n_out, NULL, err);
}

static void run_check_and_release(void *vc) {
    run_ctx *c = vc;
    for (size_t i = 0; i < c->n_out; i++)
        assert_memory_equal(c->out[i].data, c->baseline[i], c->out_bytes[i]);
}

static void run_check_failed(void *vc) {
    (void)vc;
}

static void run_setup(run_ctx *c, const char *case_dir, int threads) {
    memset(c, 0, sizeof *c);
    char path[1024];
    mha_error err;
    snprintf(path, sizeof path, "%s/%s/model.onnx", MHA_TEST_DATA, case_dir);
    assert_int_equal(mha_model_load_file(path, NULL, &c->model, &err), MHA_OK);
    mha_model_info info;
    assert_int_equal(mha_model_get_info(c->model, &info), MHA_OK);
    c->n_in = info.num_inputs;
    c->n_out = info.num_outputs;
    assert_true(c->n_in <= MAX_IO && c->n_out <= MAX_IO);
    for (size_t i = 0; i < c->n_in; i++) {
        snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_%zu.pb", MHA_TEST_DATA, case_dir,
                 i);
        mha_io_info io;
        assert_int_equal(mha_model_input(c->model, i, &io), MHA_OK);
        tensorfile_read_options o = {0};
        o.want = io.dtype;
        assert_int_equal(tensorfile_read(&alloc, path, &o, &c->in_files[i], &err), MHA_OK);
        c->in[i] = c->in_files[i]->t;
    }
    assert_int_equal(mha_model_output_shapes(c->model, c->in, c->n_in, c->out, c->n_out, &err),
                     MHA_OK);
    for (size_t i = 0; i < c->n_out; i++) {
        int64_t n = mha_tensor_numel(&c->out[i]);
        c->out_bytes[i] = (size_t)n * mha_dtype_size(c->out[i].dtype);
        c->out[i].data = malloc(c->out_bytes[i] ? c->out_bytes[i] : 1);
        c->baseline[i] = malloc(c->out_bytes[i] ? c->out_bytes[i] : 1);
        assert_non_null(c->out[i].data);
        assert_non_null(c->baseline[i]);
    }
    mha_runtime_options ro;
    mha_runtime_options_init(&ro);
    ro.num_threads = threads;
    assert_int_equal(mha_runtime_create(&ro, &c->rt, &err), MHA_OK);
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/output_0.pb", MHA_TEST_DATA, case_dir);
    tensorfile_read_options o = {0};
    o.want = MHA_DTYPE_FLOAT32;
    assert_int_equal(tensorfile_read(&alloc, path, &o, &c->expect, &err), MHA_OK);
}

/* Output 0 against the expected output of the test case. */
static void run_check_expected(run_ctx *c) {
    assert_int_equal(c->out[0].dtype, MHA_DTYPE_FLOAT32);
    size_t n = c->out_bytes[0] / sizeof(float);
    double e = tu_max_rel_err(c->out[0].data, c->expect->t.data, n);
    if (e > 1e-4) fail_msg("output differs from the expected by %g", e);
}

static void run_teardown(run_ctx *c) {
    for (size_t i = 0; i < c->n_in; i++)
        tensorfile_free(c->in_files[i]);
    for (size_t i = 0; i < c->n_out; i++) {
        free(c->out[i].data);
        free(c->baseline[i]);
    }
    tensorfile_free(c->expect);
    mha_runtime_destroy(c->rt);
    mha_model_free(c->model);
}

static void sweep_run(const char *case_dir, int threads) {
    run_ctx c;
    run_setup(&c, case_dir, threads);
    mha_error err;
    /* the first run packs the weights into the model: sweep that too, on a
     * fresh model, before the baseline exists -- compare with the expected
     * output instead */
    for (long n = 1;; n++) {
        mha_alloc_fail_at(n, 1);
        mha_status st = mha_run(c.rt, c.model, c.in, c.n_in, c.out, c.n_out, NULL, &err);
        long count = mha_alloc_count();
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            assert_true(count < n);
            print_message("%-28s %-10s %5ld allocations, %5ld clean failures\n",
                          "mha_run (packs weights)", "persistent", count, n - 1);
            break;
        }
        if (st != MHA_ERR_NO_MEMORY) fail_msg("first run, allocation %ld: %s", n, err.message);
    }
    run_check_expected(&c);
    for (size_t i = 0; i < c.n_out; i++)
        memcpy(c.baseline[i], c.out[i].data, c.out_bytes[i]);

    sweep_op op = {"mha_run", run_run, run_check_and_release, run_check_failed, &c};
    sweep_both(&op, NULL, NULL);
    /* still usable: a plain run gives the same bits */
    assert_int_equal(run_run(&c, &err), MHA_OK);
    run_check_and_release(&c);
    run_teardown(&c);
}

static void test_run_single_thread(void **state) {
    (void)state;
    sweep_run(MHA_CASE, 1);
}

static void test_run_threads(void **state) {
    (void)state;
    sweep_run(TORCH_CASE, 3);
}

/* ------------------------------------------------------------------------ */
/* tensor files                                                              */
/* ------------------------------------------------------------------------ */

typedef struct file_ctx {
    char path[1024];
    tensorfile_read_options opts;
    tensorfile *tf;
    size_t want_bytes;
    void *want;
} file_ctx;

static mha_status file_run(void *vc, mha_error *err) {
    file_ctx *c = vc;
    c->tf = (tensorfile *)c;
    return tensorfile_read(&alloc, c->path, &c->opts, &c->tf, err);
}

static void file_check_and_release(void *vc) {
    file_ctx *c = vc;
    assert_non_null(c->tf);
    assert_memory_equal(c->tf->t.data, c->want, c->want_bytes);
    tensorfile_free(c->tf);
    c->tf = NULL;
}

static void file_check_failed(void *vc) {
    file_ctx *c = vc;
    assert_null(c->tf);
}

static void sweep_file(const char *path, mha_dtype want, npy_mmap_mode mode) {
    file_ctx c;
    memset(&c, 0, sizeof c);
    snprintf(c.path, sizeof c.path, "%s", path);
    c.opts.want = want;
    c.opts.mmap_mode = mode;
    mha_error err;
    assert_int_equal(file_run(&c, &err), MHA_OK);
    c.want_bytes = (size_t)mha_tensor_numel(&c.tf->t) * mha_dtype_size(c.tf->t.dtype);
    c.want = malloc(c.want_bytes ? c.want_bytes : 1);
    assert_non_null(c.want);
    memcpy(c.want, c.tf->t.data, c.want_bytes);
    tensorfile_free(c.tf);
    sweep_op op = {"tensorfile_read", file_run, file_check_and_release, file_check_failed, &c};
    sweep_both(&op, NULL, NULL);
    free(c.want);
}

static void test_tensor_files(void **state) {
    (void)state;
    char pb[1024];
    snprintf(pb, sizeof pb, "%s/%s/test_data_set_0/input_0.pb", MHA_TEST_DATA, MHA_CASE);
    sweep_file(pb, MHA_DTYPE_UNDEFINED, NPY_MMAP_AUTO);
    sweep_file(pb, MHA_DTYPE_FLOAT64, NPY_MMAP_AUTO);

    /* a .npy written by the engine, read back every way */
    const char *dir = tu_tmpdir("faults_alloc");
    char npy[1024];
    snprintf(npy, sizeof npy, "%s/x.npy", dir);
    float data[2 * 3 * 4];
    tu_fill_random(data, 24, 8);
    mha_tensor t = {MHA_DTYPE_FLOAT32, 3, {2, 3, 4}, data};
    mha_error err;
    assert_int_equal(tensorfile_write(&alloc, npy, &t, "", &err), MHA_OK);
    sweep_file(npy, MHA_DTYPE_UNDEFINED, NPY_MMAP_NEVER);
    sweep_file(npy, MHA_DTYPE_UNDEFINED, NPY_MMAP_ALWAYS);
    sweep_file(npy, MHA_DTYPE_FLOAT16, NPY_MMAP_NEVER);

    /* writing: a failure leaves neither the file nor a temporary */
    char out[1024];
    for (int pbfmt = 0; pbfmt <= 1; pbfmt++) {
        snprintf(out, sizeof out, "%s/out.%s", dir, pbfmt ? "pb" : "npy");
        for (long n = 1;; n++) {
            mha_alloc_fail_at(n, 1);
            mha_status st = tensorfile_write(&alloc, out, &t, "y", &err);
            long count = mha_alloc_count();
            mha_alloc_fail_at(0, 0);
            if (st == MHA_OK) {
                assert_true(count < n);
                break;
            }
            assert_int_equal(st, MHA_ERR_NO_MEMORY);
            assert_false(path_exists(out));
            assert_int_equal(tu_system("ls -A '%s' | grep -q tmp", dir), 1);
        }
        assert_true(path_exists(out));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_mha_model), cmocka_unit_test(test_load_torch_model),
        cmocka_unit_test(test_runtime_create), cmocka_unit_test(test_run_single_thread),
        cmocka_unit_test(test_run_threads),    cmocka_unit_test(test_tensor_files),
    };
    mha_alloc_ctx_init(&alloc, NULL);
    clock_t t0 = clock();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    print_message("allocation-failure sweeps: %.1f s of CPU\n",
                  (double)(clock() - t0) / CLOCKS_PER_SEC);
    return rc;
}
