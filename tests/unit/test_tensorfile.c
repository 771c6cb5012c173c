/* test_tensorfile.c -- whole-tensor files by extension (engine/src/io/
 * tensorfile.c): ONNX TensorProto .pb round trips and the conformance data,
 * element conversions, and the atomic writer: nothing appears before
 * commit, a failure leaves nothing behind, the mode follows the umask. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mha/tensor_file.h"
#include "tensorfile.h"

static mha_alloc_ctx alloc;

static int folder_entries(const char *dir) {
    /* counts every entry, hidden temporaries included */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* ---- the atomic writer ---- */

static void test_atomic_file_commit_and_abort(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_atomic");
    char path[1200];
    snprintf(path, sizeof path, "%s", tu_path(dir, "out.bin"));
    mha_error err;
    atomic_file *f;
    assert_int_equal(atomic_file_begin(&alloc, path, &f, &err), MHA_OK);
    assert_string_equal(atomic_file_path(f), path);
    assert_int_equal(atomic_file_write(f, "hello world", 11, &err), MHA_OK);
    assert_int_equal(atomic_file_pwrite(f, "J", 1, 0, &err), MHA_OK);
    assert_int_equal(atomic_file_write(f, "!", 1, &err), MHA_OK);
    /* only the hidden temporary exists until commit */
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(folder_entries(dir), 1);
    assert_int_equal(tu_system("ls -A '%s' | grep -q '^\\.out\\.bin\\.tmp\\.'", dir), 0);
    assert_int_equal(atomic_file_commit(f, &err), MHA_OK);
    size_t n;
    char *got = tu_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, 12);
    assert_memory_equal(got, "Jello world!", 12);
    free(got);
    assert_int_equal(folder_entries(dir), 1);
    /* mkstemp makes 0600; the committed file follows the umask */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    mode_t mask = umask(0);
    umask(mask);
    assert_int_equal(sb.st_mode & 0777, 0666 & ~mask);

    /* abort: the old file stays as it was, the temporary is gone */
    assert_int_equal(atomic_file_begin(&alloc, path, &f, &err), MHA_OK);
    assert_int_equal(atomic_file_write(f, "partial", 7, &err), MHA_OK);
    atomic_file_abort(f);
    atomic_file_abort(NULL);
    got = tu_read_file(path, &n);
    assert_int_equal(n, 12);
    free(got);
    assert_int_equal(folder_entries(dir), 1);

    /* replacing a file is atomic too */
    assert_int_equal(atomic_file_save(&alloc, path, "new", 3, &err), MHA_OK);
    got = tu_read_file(path, &n);
    assert_int_equal(n, 3);
    free(got);
    assert_int_equal(folder_entries(dir), 1);
}

static void test_atomic_file_failures_leave_nothing(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_atomic_fail");
    mha_error err;
    atomic_file *f = (atomic_file *)0x1;
    /* a missing folder, a name that is no file name */
    assert_int_equal(atomic_file_begin(&alloc, tu_path(dir, "no/such/x.bin"), &f, &err),
                     MHA_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(err.message, "no/such/x.bin: the folder '"));
    assert_non_null(strstr(err.message, "/no/such' does not exist"));
    assert_int_equal(atomic_file_begin(&alloc, tu_path(dir, ""), &f, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(atomic_file_begin(&alloc, "..", &f, &err), MHA_ERR_INVALID_ARGUMENT);
    /* a folder is refused at once; one that appears meanwhile makes the
     * rename fail at commit: the temporary is removed */
    const char *sub = tu_path(dir, "sub");
    assert_int_equal(atomic_file_begin(&alloc, sub, &f, &err), MHA_OK);
    assert_int_equal(atomic_file_write(f, "x", 1, &err), MHA_OK);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(tu_system("touch '%s/keep'", sub), 0);
    atomic_file *g = (atomic_file *)0x1;
    assert_int_equal(atomic_file_begin(&alloc, sub, &g, &err), MHA_ERR_IO);
    assert_null(g);
    assert_non_null(strstr(err.message, "is a folder"));
    assert_int_equal(atomic_file_commit(f, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "cannot rename"));
    assert_int_equal(folder_entries(dir), 1);

    if (geteuid() != 0) {
        const char *ro = tu_path(dir, "ro");
        assert_int_equal(mkdir(ro, 0555), 0);
        assert_int_equal(atomic_file_save(&alloc, tu_path(ro, "x.bin"), "x", 1, &err), MHA_ERR_IO);
        assert_int_equal(folder_entries(ro), 0);
        chmod(ro, 0755);
    }
}

/* ---- formats and conversions ---- */

/* Outputs: streams without an extension take .npy; the 2 GiB of a .pb is
 * known from the shape alone, before any data exists. */
static void test_output_format_and_limits(void **state) {
    (void)state;
    assert_int_equal(tensorfile_output_format("y.pb"), TENSORFILE_PB);
    assert_int_equal(tensorfile_output_format("-"), TENSORFILE_NPY);
    assert_int_equal(tensorfile_output_format("/dev/stdout"), TENSORFILE_NPY);
    assert_int_equal(tensorfile_output_format("/dev/null"), TENSORFILE_NPY);
    assert_int_equal(tensorfile_output_format("no-such-file"), TENSORFILE_UNKNOWN);
    assert_int_equal(tensorfile_format_of("-"), TENSORFILE_UNKNOWN); /* inputs: by extension */
    mha_error err;
    const int64_t fits[3] = {1, 1 << 20, 511}, over[3] = {1, 1 << 20, 512};
    assert_int_equal(tensorfile_check_output("y.pb", MHA_DTYPE_FLOAT32, 3, fits, &err), MHA_OK);
    assert_int_equal(tensorfile_check_output("y.pb", MHA_DTYPE_FLOAT32, 3, over, &err),
                     MHA_ERR_LIMIT);
    assert_non_null(strstr(err.message, "y.pb: 2147483648 bytes of float32 exceed the 2 GiB"));
    assert_int_equal(tensorfile_check_output("y.npy", MHA_DTYPE_FLOAT32, 3, over, &err), MHA_OK);
    const int64_t unknown[2] = {-1, 1 << 30}; /* not known yet: checked when written */
    assert_int_equal(tensorfile_check_output("y.pb", MHA_DTYPE_FLOAT32, 2, unknown, &err), MHA_OK);
    assert_int_equal(tensorfile_check_output("y.txt", MHA_DTYPE_FLOAT32, 3, fits, &err),
                     MHA_ERR_INVALID_ARGUMENT);
}

static void test_format_by_extension(void **state) {
    (void)state;
    assert_int_equal(tensorfile_format_of("a.npy"), TENSORFILE_NPY);
    assert_int_equal(tensorfile_format_of("dir.x/A.NPY"), TENSORFILE_NPY);
    assert_int_equal(tensorfile_format_of("input_0.pb"), TENSORFILE_PB);
    assert_int_equal(tensorfile_format_of("x.Pb"), TENSORFILE_PB);
    assert_int_equal(tensorfile_format_of("x.onnx"), TENSORFILE_UNKNOWN);
    assert_int_equal(tensorfile_format_of("npy"), TENSORFILE_UNKNOWN);
    assert_int_equal(tensorfile_format_of(".pb"), TENSORFILE_PB);
    assert_int_equal(tensorfile_format_of(""), TENSORFILE_UNKNOWN);
    mha_error err;
    float x = 1;
    mha_tensor t = {MHA_DTYPE_FLOAT32, 0, {0}, &x};
    const char *dir = tu_tmpdir("tf_ext");
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "y.txt"), &t, NULL, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "y.txt: unknown tensor file type"));
    assert_int_equal(folder_entries(dir), 0);
}

static void test_conversions(void **state) {
    (void)state;
    assert_true(tensorfile_can_convert(MHA_DTYPE_FLOAT64, MHA_DTYPE_FLOAT32));
    assert_true(tensorfile_can_convert(MHA_DTYPE_FLOAT16, MHA_DTYPE_FLOAT32));
    assert_true(tensorfile_can_convert(MHA_DTYPE_BFLOAT16, MHA_DTYPE_FLOAT32));
    assert_true(tensorfile_can_convert(MHA_DTYPE_FLOAT32, MHA_DTYPE_FLOAT16));
    assert_true(tensorfile_can_convert(MHA_DTYPE_INT64, MHA_DTYPE_BOOL));
    assert_true(tensorfile_can_convert(MHA_DTYPE_UINT8, MHA_DTYPE_BOOL));
    assert_true(tensorfile_can_convert(MHA_DTYPE_INT64, MHA_DTYPE_INT64));
    assert_false(tensorfile_can_convert(MHA_DTYPE_INT64, MHA_DTYPE_FLOAT32));
    assert_false(tensorfile_can_convert(MHA_DTYPE_FLOAT32, MHA_DTYPE_BOOL));
    assert_false(tensorfile_can_convert(MHA_DTYPE_BOOL, MHA_DTYPE_INT64));
    assert_true(tensorfile_can_convert(MHA_DTYPE_INT32, MHA_DTYPE_INT64)); /* widening */
    assert_true(tensorfile_can_convert(MHA_DTYPE_INT8, MHA_DTYPE_INT32));
    assert_true(tensorfile_can_convert(MHA_DTYPE_UINT8, MHA_DTYPE_INT64));
    assert_false(tensorfile_can_convert(MHA_DTYPE_INT64, MHA_DTYPE_INT32)); /* narrowing */
    assert_false(tensorfile_can_convert(MHA_DTYPE_BOOL, MHA_DTYPE_INT32));
    assert_false(tensorfile_can_convert(MHA_DTYPE_FLOAT32, MHA_DTYPE_BFLOAT16));
    assert_false(tensorfile_can_convert(MHA_DTYPE_UNDEFINED, MHA_DTYPE_UNDEFINED));

    double d[4] = {1.5, -INFINITY, NAN, 1e-320};
    float f[4];
    tensorfile_convert(d, MHA_DTYPE_FLOAT64, f, MHA_DTYPE_FLOAT32, 4);
    assert_true(f[0] == 1.5f && isinf(f[1]) && f[1] < 0 && isnan(f[2]) && f[3] == 0.0f);
    uint16_t h[4];
    tensorfile_convert(f, MHA_DTYPE_FLOAT32, h, MHA_DTYPE_FLOAT16, 4);
    assert_int_equal(h[0], 0x3e00);
    assert_int_equal(h[1], 0xfc00);
    assert_true((h[2] & 0x7c00) == 0x7c00 && (h[2] & 0x3ff) != 0);
    int32_t iv[3] = {0, -1, 7};
    uint8_t b[3];
    tensorfile_convert(iv, MHA_DTYPE_INT32, b, MHA_DTYPE_BOOL, 3);
    assert_true(b[0] == 0 && b[1] == 1 && b[2] == 1);
    int64_t wide[4];
    int32_t narrow[4] = {-7, 2147483647, -2147483647 - 1, 30521};
    tensorfile_convert(narrow, MHA_DTYPE_INT32, wide, MHA_DTYPE_INT64, 4);
    assert_true(wide[0] == -7 && wide[1] == 2147483647 && wide[2] == -2147483648LL &&
                wide[3] == 30521);
    int8_t s8[2] = {-128, 127};
    uint8_t u8[2] = {255, 0};
    tensorfile_convert(s8, MHA_DTYPE_INT8, wide, MHA_DTYPE_INT64, 2);
    assert_true(wide[0] == -128 && wide[1] == 127);
    tensorfile_convert(u8, MHA_DTYPE_UINT8, narrow, MHA_DTYPE_INT32, 2);
    assert_true(narrow[0] == 255 && narrow[1] == 0);
    uint8_t bb[3] = {0, 9, 1};
    tensorfile_convert(bb, MHA_DTYPE_BOOL, bb, MHA_DTYPE_BOOL, 3); /* in place */
    assert_true(bb[0] == 0 && bb[1] == 1 && bb[2] == 1);
}

/* ---- ONNX TensorProto files ---- */

static void test_pb_roundtrip(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_pb");
    mha_error err;
    float x[2 * 3 * 4];
    tu_fill_random(x, 24, 9);
    x[5] = NAN;
    x[6] = -INFINITY;
    mha_tensor t = {MHA_DTYPE_FLOAT32, 3, {2, 3, 4}, x};
    char path[1200];
    snprintf(path, sizeof path, "%s", tu_path(dir, "output_0.pb"));
    assert_int_equal(tensorfile_write(&alloc, path, &t, "output", &err), MHA_OK);
    tensorfile *tf;
    assert_int_equal(tensorfile_read(&alloc, path, NULL, &tf, &err), MHA_OK);
    assert_string_equal(tf->name, "output");
    assert_int_equal(tf->t.dtype, MHA_DTYPE_FLOAT32);
    assert_int_equal(tf->t.rank, 3);
    assert_int_equal(tf->t.shape[2], 4);
    assert_memory_equal(tf->t.data, x, sizeof x);
    tensorfile_free(tf);
    /* read as float64 and float16 */
    tensorfile_read_options o = {MHA_DTYPE_FLOAT64, NPY_MMAP_AUTO, 0};
    assert_int_equal(tensorfile_read(&alloc, path, &o, &tf, &err), MHA_OK);
    assert_true(((double *)tf->t.data)[0] == (double)x[0]);
    assert_true(isnan(((double *)tf->t.data)[5]));
    tensorfile_free(tf);
    /* .pb -> .npy -> .pb keeps everything */
    assert_int_equal(tensorfile_read(&alloc, path, NULL, &tf, &err), MHA_OK);
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "x.npy"), &tf->t, NULL, &err), MHA_OK);
    tensorfile_free(tf);
    assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "x.npy"), NULL, &tf, &err), MHA_OK);
    assert_string_equal(tf->name, "");
    assert_memory_equal(tf->t.data, x, sizeof x);
    tensorfile_free(tf);

    /* bool and int64 and a scalar */
    uint8_t m[6] = {1, 0, 1, 1, 0, 0};
    mha_tensor tb = {MHA_DTYPE_BOOL, 2, {2, 3}, m};
    assert_int_equal(tensorfile_write(&alloc, path, &tb, "mask", &err), MHA_OK);
    assert_int_equal(tensorfile_read(&alloc, path, NULL, &tf, &err), MHA_OK);
    assert_int_equal(tf->t.dtype, MHA_DTYPE_BOOL);
    assert_memory_equal(tf->t.data, m, 6);
    tensorfile_free(tf);
    int64_t s = -42;
    mha_tensor ts = {MHA_DTYPE_INT64, 0, {0}, &s};
    assert_int_equal(tensorfile_write(&alloc, path, &ts, "n", &err), MHA_OK);
    assert_int_equal(tensorfile_read(&alloc, path, NULL, &tf, &err), MHA_OK);
    assert_int_equal(tf->t.rank, 0);
    assert_int_equal(*(int64_t *)tf->t.data, -42);
    tensorfile_free(tf);
    assert_int_equal(folder_entries(dir), 2);
}

/* The conformance data (written by ONNX Runtime's tools): float32, float16,
 * bool and int64 tensors. */
static void test_pb_conformance_files(void **state) {
    (void)state;
    struct {
        const char *file;
        mha_dtype dtype;
        int rank;
        const char *name;
    } cases[] = {
        {"conformance/mha_self_d32_h2_b2_s8/test_data_set_0/input_0.pb", MHA_DTYPE_FLOAT32, 3,
         "query"},
        {"conformance/onnx_attention_4d_fp16/test_data_set_0/input_0.pb", MHA_DTYPE_FLOAT16, 4,
         "Q"},
        {"conformance/mha_padmask_d32_h4_b3_s10/test_data_set_0/input_1.pb", MHA_DTYPE_BOOL, 4,
         "key_padding_mask"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", MHA_TEST_DATA, cases[k].file);
        tensorfile *tf;
        mha_error err;
        mha_status st = tensorfile_read(&alloc, path, NULL, &tf, &err);
        if (st != MHA_OK) fail_msg("%s", err.message);
        assert_int_equal(tf->t.dtype, cases[k].dtype);
        assert_int_equal(tf->t.rank, cases[k].rank);
        assert_string_equal(tf->name, cases[k].name);
        tensorfile_free(tf);
        if (cases[k].dtype == MHA_DTYPE_FLOAT16) {
            tensorfile_read_options o = {MHA_DTYPE_FLOAT32, NPY_MMAP_AUTO, 0};
            assert_int_equal(tensorfile_read(&alloc, path, &o, &tf, &err), MHA_OK);
            assert_int_equal(tf->t.dtype, MHA_DTYPE_FLOAT32);
            const float *f = tf->t.data;
            assert_true(f[0] >= -1.0f && f[0] <= 1.0f);
            tensorfile_free(tf);
        }
    }
}

static void test_pb_bad_files(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_pb_bad");
    mha_error err;
    tensorfile *tf = (tensorfile *)0x1;
    const char *p = tu_path(dir, "missing.pb");
    assert_int_equal(tensorfile_read(&alloc, p, NULL, &tf, &err), MHA_ERR_IO);
    assert_null(tf);
    assert_non_null(strstr(err.message, "missing.pb"));

    /* random bytes, a truncated tensor: refused with the file named */
    unsigned char junk[256];
    uint64_t s = 3;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)tu_rand_u64(&s);
    p = tu_path(dir, "junk.pb");
    assert_int_equal(tu_write_file(p, junk, sizeof junk), 0);
    mha_status st = tensorfile_read(&alloc, p, NULL, &tf, &err);
    assert_int_not_equal(st, MHA_OK);
    assert_null(tf);
    assert_non_null(strstr(err.message, "junk.pb"));

    float x[64] = {0};
    mha_tensor t = {MHA_DTYPE_FLOAT32, 2, {8, 8}, x};
    char good[1200];
    snprintf(good, sizeof good, "%s", tu_path(dir, "good.pb"));
    assert_int_equal(tensorfile_write(&alloc, good, &t, "x", &err), MHA_OK);
    size_t n;
    unsigned char *bytes = tu_read_file(good, &n);
    p = tu_path(dir, "trunc.pb");
    assert_int_equal(tu_write_file(p, bytes, n - 10), 0);
    free(bytes);
    st = tensorfile_read(&alloc, p, NULL, &tf, &err);
    assert_int_not_equal(st, MHA_OK);
    assert_non_null(strstr(err.message, "trunc.pb"));

    /* a size cap */
    tensorfile_read_options o = {MHA_DTYPE_UNDEFINED, NPY_MMAP_AUTO, 100};
    assert_int_equal(tensorfile_read(&alloc, good, &o, &tf, &err), MHA_ERR_LIMIT);
    assert_non_null(strstr(err.message, "good.pb: file of"));
    /* a dtype the caller cannot use */
    o.max_pb_bytes = 0;
    o.want = MHA_DTYPE_BOOL;
    assert_int_equal(tensorfile_read(&alloc, good, &o, &tf, &err), MHA_ERR_DTYPE);
    assert_non_null(strstr(err.message, "good.pb: holds float32 data but bool is needed"));
}

/* Several outputs published together: written pending, then committed. */
static void test_write_pending(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_pending");
    mha_error err;
    float x[4] = {1, 2, 3, 4};
    mha_tensor t = {MHA_DTYPE_FLOAT32, 1, {4}, x};
    atomic_file *a, *b;
    assert_int_equal(tensorfile_write_pending(&alloc, tu_path(dir, "a.npy"), &t, "a", &a, &err),
                     MHA_OK);
    assert_int_equal(tensorfile_write_pending(&alloc, tu_path(dir, "b.pb"), &t, "b", &b, &err),
                     MHA_OK);
    assert_int_equal(access(tu_path(dir, "a.npy"), F_OK), -1);
    assert_int_equal(access(tu_path(dir, "b.pb"), F_OK), -1);
    assert_int_equal(atomic_file_commit(a, &err), MHA_OK);
    atomic_file_abort(b);
    assert_int_equal(access(tu_path(dir, "a.npy"), F_OK), 0);
    assert_int_equal(access(tu_path(dir, "b.pb"), F_OK), -1);
    assert_int_equal(folder_entries(dir), 1);
    /* a dtype .npy cannot hold leaves nothing */
    mha_tensor tb = {MHA_DTYPE_BFLOAT16, 1, {2}, x};
    a = (atomic_file *)0x1;
    assert_int_equal(tensorfile_write_pending(&alloc, tu_path(dir, "c.npy"), &tb, "c", &a, &err),
                     MHA_ERR_DTYPE);
    assert_null(a);
    assert_int_equal(folder_entries(dir), 1);
}

/* Allocation failure at every point of a .pb read and write. */
static void test_pb_allocation_failures(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_pb_oom");
    float x[12];
    tu_fill_random(x, 12, 1);
    mha_tensor t = {MHA_DTYPE_FLOAT32, 2, {3, 4}, x};
    mha_error err;
    char src[1200], dst[1200];
    snprintf(src, sizeof src, "%s", tu_path(dir, "src.pb"));
    snprintf(dst, sizeof dst, "%s", tu_path(dir, "dst.pb"));
    assert_int_equal(tensorfile_write(&alloc, src, &t, "x", &err), MHA_OK);
    int clean_write = 0, clean_read = 0;
    for (long k = 1; k < 200 && !(clean_write && clean_read); k++) {
        mha_alloc_fail_at(k, 0);
        mha_status st = tensorfile_write(&alloc, dst, &t, "x", &err);
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            clean_write = 1;
            unlink(dst);
        } else {
            if (st != MHA_ERR_NO_MEMORY) fail_msg("write k=%ld: %s", k, err.message);
            assert_int_equal(access(dst, F_OK), -1);
        }
        tensorfile *tf = NULL;
        mha_alloc_fail_at(k, 0);
        st = tensorfile_read(&alloc, src, NULL, &tf, &err);
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            clean_read = 1;
            assert_memory_equal(tf->t.data, x, sizeof x);
            tensorfile_free(tf);
        } else {
            if (st != MHA_ERR_NO_MEMORY) fail_msg("read k=%ld: %s", k, err.message);
            assert_null(tf);
        }
    }
    assert_true(clean_write && clean_read);
    assert_int_equal(folder_entries(dir), 1);
}

/* ---- the public face (mha/tensor_file.h) ---- */

static void test_public_tensor_file(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_public");
    mha_error err;
    float x[2 * 3 * 4];
    tu_fill_random(x, 24, 4);
    mha_tensor t = {MHA_DTYPE_FLOAT32, 3, {2, 3, 4}, x};
    char pb[1200], npy[1200], ids[1200];
    snprintf(pb, sizeof pb, "%s", tu_path(dir, "y.pb"));
    snprintf(npy, sizeof npy, "%s", tu_path(dir, "big.npy"));
    snprintf(ids, sizeof ids, "%s", tu_path(dir, "ids.npy"));
    assert_int_equal(tensorfile_write(&alloc, pb, &t, "output", &err), MHA_OK);

    /* converted on reading, named, through the caller's allocator */
    int live = 0;
    mha_allocator al = tu_counting_allocator(&live);
    mha_tensor_file_options o;
    mha_tensor_file_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    o.want = MHA_DTYPE_FLOAT64;
    o.mmap_mode = MHA_MMAP_NEVER;
    o.allocator = &al;
    mha_tensor_file *f = NULL;
    assert_int_equal(mha_tensor_file_read(pb, &o, &f, &err), MHA_OK);
    assert_true(live > 0);
    const mha_tensor *got = mha_tensor_file_tensor(f);
    assert_int_equal(got->dtype, MHA_DTYPE_FLOAT64);
    assert_int_equal(got->rank, 3);
    assert_int_equal(got->shape[0], 2);
    assert_int_equal(got->shape[2], 4);
    for (int i = 0; i < 24; i++)
        assert_true(((const double *)got->data)[i] == (double)x[i]);
    assert_string_equal(mha_tensor_file_name(f), "output");
    mha_tensor_file_free(f);
    assert_int_equal(live, 0);

    /* a large .npy, mapped by default: the same bits, no name */
    size_t n = 300000; /* 1.2 MB of data */
    float *big = malloc(n * sizeof *big);
    assert_non_null(big);
    tu_fill_random(big, (int64_t)n, 5);
    mha_tensor tb = {MHA_DTYPE_FLOAT32, 2, {1000, 300}, big};
    assert_int_equal(tensorfile_write(&alloc, npy, &tb, NULL, &err), MHA_OK);
    assert_int_equal(mha_tensor_file_read(npy, NULL, &f, &err), MHA_OK);
    assert_memory_equal(mha_tensor_file_tensor(f)->data, big, n * sizeof *big);
    assert_string_equal(mha_tensor_file_name(f), "");
    mha_tensor_file_free(f);
    free(big);

    /* refusals leave *out NULL and say why */
    int64_t id[3] = {1, 2, 3};
    mha_tensor ti = {MHA_DTYPE_INT64, 1, {3}, id};
    assert_int_equal(tensorfile_write(&alloc, ids, &ti, NULL, &err), MHA_OK);
    o.want = MHA_DTYPE_FLOAT32;
    o.allocator = NULL;
    f = (mha_tensor_file *)&o;
    assert_int_equal(mha_tensor_file_read(ids, &o, &f, &err), MHA_ERR_DTYPE);
    assert_null(f);
    assert_non_null(strstr(err.message, "ids.npy"));
    o.struct_size = 4; /* an options struct of an older, smaller layout */
    assert_int_equal(mha_tensor_file_read(pb, &o, &f, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_null(f);
    assert_int_equal(mha_tensor_file_read(tu_path(dir, "none.npy"), NULL, &f, &err), MHA_ERR_IO);
    assert_int_equal(mha_tensor_file_read(NULL, NULL, &f, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_null(mha_tensor_file_tensor(NULL));
    assert_null(mha_tensor_file_name(NULL));
    mha_tensor_file_free(NULL);

    /* conversions: what can_convert allows, nothing else */
    uint16_t h[2] = {0x3c00, 0xc000}; /* 1.0, -2.0 in float16 */
    float fl[2] = {0, 0};
    assert_true(mha_dtype_can_convert(MHA_DTYPE_FLOAT16, MHA_DTYPE_FLOAT32));
    mha_dtype_convert(h, MHA_DTYPE_FLOAT16, fl, MHA_DTYPE_FLOAT32, 2);
    assert_true(fl[0] == 1.0f && fl[1] == -2.0f);
    assert_false(mha_dtype_can_convert(MHA_DTYPE_INT64, MHA_DTYPE_FLOAT32));
    mha_dtype_convert(id, MHA_DTYPE_INT64, fl, MHA_DTYPE_FLOAT32, 2);
    assert_true(fl[0] == 1.0f && fl[1] == -2.0f); /* untouched */
}

static void test_public_output_file(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_public_out");
    mha_error err;
    assert_int_equal(mha_file_format_of("a/x.NPY"), MHA_FILE_NPY);
    assert_int_equal(mha_file_format_of("x.pb"), MHA_FILE_PB);
    assert_int_equal(mha_file_format_of("x.txt"), MHA_FILE_UNKNOWN);
    assert_int_equal(mha_file_output_format("-"), MHA_FILE_NPY);
    assert_int_equal(mha_file_output_format("x.csv"), MHA_FILE_UNKNOWN);
    int64_t big[2] = {1 << 20, 1 << 10}; /* 4 GiB of float32: too much for one .pb */
    assert_int_equal(mha_tensor_file_check_output("y.pb", MHA_DTYPE_FLOAT32, 2, big, &err),
                     MHA_ERR_LIMIT);
    assert_int_equal(mha_tensor_file_check_output("y.npy", MHA_DTYPE_FLOAT32, 2, big, &err),
                     MHA_OK);
    assert_int_equal(mha_tensor_file_check_output("y.csv", MHA_DTYPE_FLOAT32, 2, big, &err),
                     MHA_ERR_INVALID_ARGUMENT);

    /* nothing at the destination before commit; then the tensor, read back */
    float x[6] = {1, 2, 3, 4, 5, 6};
    mha_tensor t = {MHA_DTYPE_FLOAT32, 2, {2, 3}, x};
    char path[1200];
    snprintf(path, sizeof path, "%s", tu_path(dir, "y.pb"));
    int live = 0;
    mha_allocator al = tu_counting_allocator(&live);
    mha_output_file *f = NULL;
    assert_int_equal(mha_tensor_file_write_pending(path, &t, "y", &al, &f, &err), MHA_OK);
    assert_string_equal(mha_output_file_path(f), path);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(mha_output_file_commit(f, &err), MHA_OK);
    assert_int_equal(live, 0);
    mha_tensor_file *r = NULL;
    assert_int_equal(mha_tensor_file_read(path, NULL, &r, &err), MHA_OK);
    assert_string_equal(mha_tensor_file_name(r), "y");
    assert_memory_equal(mha_tensor_file_tensor(r)->data, x, sizeof x);
    mha_tensor_file_free(r);

    /* aborted: nothing left behind */
    snprintf(path, sizeof path, "%s", tu_path(dir, "z.npy"));
    assert_int_equal(mha_tensor_file_write_pending(path, &t, NULL, NULL, &f, &err), MHA_OK);
    assert_int_equal(folder_entries(dir), 2);
    mha_output_file_abort(f);
    assert_int_equal(folder_entries(dir), 1);
    mha_output_file_abort(NULL);
    assert_null(mha_output_file_path(NULL));
    f = (mha_output_file *)&t;
    assert_int_equal(mha_tensor_file_write_pending(tu_path(dir, "z.csv"), &t, NULL, NULL, &f, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_null(f);

    /* a temporary a killed writer left is cleaned; the output is not */
    assert_int_equal(tu_system("touch '%s/.z.npy.tmp.AbC123'", dir), 0);
    assert_int_equal(folder_entries(dir), 2);
    assert_int_equal(mha_output_clean_stale(path), 1);
    assert_int_equal(folder_entries(dir), 1);
}

static void test_public_output_paths(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("tf_public_paths");
    mha_error err;
    char path[1200], link[1200];
    snprintf(path, sizeof path, "%s", tu_path(dir, "a.txt"));
    snprintf(link, sizeof link, "%s", tu_path(dir, "b.txt"));
    /* checked before any work: a missing folder is named */
    assert_int_equal(mha_output_check(tu_path(dir, "no/such/x.npy"), &err), MHA_ERR_IO);
    assert_int_equal(mha_output_check(dir, &err), MHA_ERR_IO); /* a folder */
    assert_int_equal(mha_output_check(path, &err), MHA_OK);
    assert_int_equal(access(path, F_OK), -1); /* checking writes nothing */

    /* saved whole; a symlink is followed, so both names are one file */
    assert_int_equal(mha_output_save(path, "hi\n", 3, &err), MHA_OK);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(mha_output_same_file(path, link), 1);
    assert_int_equal(mha_output_same_file(path, tu_path(dir, "c.txt")), 0);
    assert_int_equal(mha_output_same_file("/dev/null", "/dev/null"), 0);
    size_t n;
    char *got = tu_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, 3);
    free(got);

    /* one writer per output */
    mha_output_lock *l1 = NULL, *l2 = NULL;
    assert_int_equal(mha_output_lock_acquire(path, &l1, &err), MHA_OK);
    assert_non_null(l1);
    assert_int_equal(mha_output_lock_acquire(link, &l2, &err), MHA_ERR_IO);
    assert_null(l2);
    mha_output_lock_release(l1);
    assert_int_equal(mha_output_lock_acquire(path, &l2, &err), MHA_OK);
    mha_output_lock_release(l2);
    assert_int_equal(mha_output_lock_acquire("-", &l1, &err), MHA_OK);
    assert_null(l1); /* a stream needs none */
    mha_output_lock_release(NULL);
}

int main(void) {
    mha_alloc_ctx_init(&alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_atomic_file_commit_and_abort),
        cmocka_unit_test(test_atomic_file_failures_leave_nothing),
        cmocka_unit_test(test_format_by_extension),
        cmocka_unit_test(test_output_format_and_limits),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_pb_roundtrip),
        cmocka_unit_test(test_pb_conformance_files),
        cmocka_unit_test(test_pb_bad_files),
        cmocka_unit_test(test_write_pending),
        cmocka_unit_test(test_pb_allocation_failures),
        cmocka_unit_test(test_public_tensor_file),
        cmocka_unit_test(test_public_output_file),
        cmocka_unit_test(test_public_output_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
