/* test_npy.c -- the .npy reader and writer (engine/src/io/npy.c): round trips
 * through every supported dtype and both read paths (mmap and pread), row
 * chunks, conversions, and every malformed file the reader must refuse with
 * a message naming the file and the problem -- before allocating anything. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mha/npy.h"
#include "tensorfile.h"

static mha_alloc_ctx alloc;

/* Builds a .npy file: magic, version major.0, a length field that says
 * `claimed_len` (or the real text length when claimed_len < 0), the header
 * text as given, then `data`. */
static size_t make_npy(unsigned char *buf, size_t cap, int major, const char *text,
                       long claimed_len, const void *data, size_t data_bytes) {
    size_t tlen = strlen(text);
    size_t prefix = major == 1 ? 10 : 12;
    assert_true(prefix + tlen + data_bytes <= cap);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    unsigned long len = claimed_len < 0 ? (unsigned long)tlen : (unsigned long)claimed_len;
    buf[8] = (unsigned char)(len & 0xff);
    buf[9] = (unsigned char)(len >> 8 & 0xff);
    if (major != 1) {
        buf[10] = (unsigned char)(len >> 16 & 0xff);
        buf[11] = (unsigned char)(len >> 24 & 0xff);
    }
    memcpy(buf + prefix, text, tlen);
    if (data_bytes) memcpy(buf + prefix + tlen, data, data_bytes);
    return prefix + tlen + data_bytes;
}

/* The header text numpy's np.save writes for a float32 2x3 array (v1). */
static const char *numpy_2x3_f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
                                  "                                                          \n";

static void write_bytes(const char *path, const void *b, size_t n) {
    assert_int_equal(tu_write_file(path, b, n), 0);
}

/* Expects tensorfile_read to fail with status st and a message that
 * contains the path and `needle`. */
static void expect_refused(const char *path, mha_status st, const char *needle) {
    for (int mode = NPY_MMAP_AUTO; mode <= NPY_MMAP_ALWAYS; mode++) {
        tensorfile_read_options o = {0};
        o.mmap_mode = (npy_mmap_mode)mode;
        tensorfile *tf = (tensorfile *)0x1;
        mha_error err;
        mha_error_clear(&err);
        mha_status got = tensorfile_read(&alloc, path, &o, &tf, &err);
        if (got != st || !strstr(err.message, path) || !strstr(err.message, needle))
            fail_msg("%s: status %s, message '%s'; wanted %s with '%s'", path, mha_status_name(got),
                     err.message, mha_status_name(st), needle);
        assert_null(tf);
        assert_null(strchr(err.message, '\n'));
    }
}

/* ---- round trips ---- */

static void roundtrip(const char *dir, mha_dtype dt, int rank, const int64_t *dims) {
    mha_tensor t = {0};
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.shape[i] = dims[i];
    int64_t n = mha_tensor_numel(&t);
    size_t bytes = (size_t)n * mha_dtype_size(dt);
    unsigned char *data = malloc(bytes + 1);
    uint64_t s = (uint64_t)dt * 77 + (uint64_t)rank;
    for (size_t i = 0; i < bytes; i++)
        data[i] = (unsigned char)tu_rand_u64(&s);
    if (dt == MHA_DTYPE_BOOL)
        for (size_t i = 0; i < bytes; i++)
            data[i] &= 1;
    t.data = data;
    const char *path = tu_path(dir, "rt.npy");
    mha_error err;
    assert_int_equal(tensorfile_write(&alloc, path, &t, NULL, &err), MHA_OK);

    for (int mode = NPY_MMAP_AUTO; mode <= NPY_MMAP_ALWAYS; mode++) {
        tensorfile_read_options o = {0};
        o.mmap_mode = (npy_mmap_mode)mode;
        tensorfile *tf;
        mha_status st = tensorfile_read(&alloc, path, &o, &tf, &err);
        if (st != MHA_OK) fail_msg("%s", err.message);
        assert_int_equal(tf->t.dtype, dt);
        assert_int_equal(tf->t.rank, rank);
        for (int i = 0; i < rank; i++)
            assert_int_equal(tf->t.shape[i], dims[i]);
        if (bytes) assert_memory_equal(tf->t.data, data, bytes);
        tensorfile_free(tf);
    }
    free(data);
}

static void test_roundtrip_dtypes_and_ranks(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_roundtrip");
    const mha_dtype dts[] = {MHA_DTYPE_FLOAT32, MHA_DTYPE_FLOAT64, MHA_DTYPE_FLOAT16,
                             MHA_DTYPE_BOOL,    MHA_DTYPE_INT64,   MHA_DTYPE_INT32,
                             MHA_DTYPE_INT8,    MHA_DTYPE_UINT8};
    const int64_t d3[] = {3, 10, 32}, d1[] = {7}, d0[] = {0}, d8[] = {2, 1, 2, 1, 2, 1, 2, 3},
                  dz[] = {4, 0, 5};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        roundtrip(dir, dts[i], 3, d3);
        roundtrip(dir, dts[i], 1, d1);
        roundtrip(dir, dts[i], 0, d0); /* a scalar */
        roundtrip(dir, dts[i], 1, d0); /* empty */
        roundtrip(dir, dts[i], 8, d8);
        roundtrip(dir, dts[i], 3, dz);
    }
    /* large enough for the automatic mmap path */
    const int64_t big[] = {300, 1024};
    roundtrip(dir, MHA_DTYPE_FLOAT32, 2, big);
}

/* What npy_format_header writes is what numpy writes: v1.0, the dict in
 * numpy's key order, the data 64-byte aligned, a final newline. */
static void test_header_format_matches_numpy(void **state) {
    (void)state;
    unsigned char buf[256];
    const int64_t dims[] = {2, 3};
    size_t n = npy_format_header(MHA_DTYPE_FLOAT32, 2, dims, buf, sizeof buf);
    assert_int_equal(n, 10 + strlen(numpy_2x3_f4));
    assert_memory_equal(buf + 10, numpy_2x3_f4, strlen(numpy_2x3_f4));
    assert_int_equal(buf[6], 1);
    assert_int_equal(n % 64, 0);

    const int64_t one[] = {5};
    n = npy_format_header(MHA_DTYPE_BOOL, 1, one, buf, sizeof buf);
    assert_non_null(strstr((char *)buf + 10, "'descr': '|b1'"));
    assert_non_null(strstr((char *)buf + 10, "'shape': (5,), }"));
    n = npy_format_header(MHA_DTYPE_INT64, 0, NULL, buf, sizeof buf);
    assert_non_null(strstr((char *)buf + 10, "'shape': (), }"));
    assert_int_equal(npy_format_header(MHA_DTYPE_BFLOAT16, 0, NULL, buf, sizeof buf), 0);
    assert_int_equal(npy_format_header(MHA_DTYPE_FLOAT32, 2, dims, buf, 32), 0);
}

/* Files as other writers make them: versions 2.0 and 3.0, double quotes,
 * keys in another order, no trailing comma, '=' byte order, NUL padding. */
static void test_reads_other_writers(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_writers");
    const float data[6] = {1, 2, 3, 4, 5, 6};
    const char *texts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
        "{\"shape\": (2,3), \"fortran_order\": False, \"descr\": \"<f4\"}\n",
        "{'descr':'=f4','fortran_order':False,'shape':(2,3,)}   \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n\0\0",
    };
    unsigned char buf[512];
    for (int major = 1; major <= 3; major++) {
        for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
            size_t tl = strlen(texts[k]) + (k == 3 ? 2 : 0);
            char text[256];
            memcpy(text, texts[k], tl);
            text[tl] = '\0';
            size_t n = make_npy(buf, sizeof buf, major, text, -1, NULL, 0);
            if (k == 3) { /* strlen stopped at the NULs: add them by hand */
                size_t prefix = major == 1 ? 10 : 12;
                memcpy(buf + prefix, texts[k], tl);
                buf[8] = (unsigned char)tl;
                n = prefix + tl;
            }
            memcpy(buf + n, data, sizeof data);
            const char *path = tu_path(dir, "w.npy");
            write_bytes(path, buf, n + sizeof data);
            tensorfile *tf;
            mha_error err;
            mha_status st = tensorfile_read(&alloc, path, NULL, &tf, &err);
            if (st != MHA_OK) fail_msg("v%d text %zu: %s", major, k, err.message);
            assert_int_equal(tf->t.rank, 2);
            assert_int_equal(tf->t.shape[0], 2);
            assert_int_equal(tf->t.shape[1], 3);
            assert_memory_equal(tf->t.data, data, sizeof data);
            tensorfile_free(tf);
        }
    }
}

/* ---- conversions ---- */

static void test_float64_and_float16_to_float32(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_convert");
    double d[5] = {0.5, -1.25, 1e-3, 3.0e38, -0.0};
    uint16_t h[5] = {0x3800, 0xbd00, 0x0001, 0x7c00, 0x8000}; /* 0.5 -1.25 tiny inf -0 */
    mha_tensor t = {MHA_DTYPE_FLOAT64, 1, {5}, d};
    mha_error err;
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "d.npy"), &t, NULL, &err), MHA_OK);
    t.dtype = MHA_DTYPE_FLOAT16;
    t.data = h;
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "h.npy"), &t, NULL, &err), MHA_OK);
    for (int mode = NPY_MMAP_AUTO; mode <= NPY_MMAP_ALWAYS; mode++) {
        tensorfile_read_options o = {MHA_DTYPE_FLOAT32, (npy_mmap_mode)mode, 0};
        tensorfile *tf;
        assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "d.npy"), &o, &tf, &err), MHA_OK);
        assert_int_equal(tf->t.dtype, MHA_DTYPE_FLOAT32);
        const float *f = tf->t.data;
        for (int i = 0; i < 5; i++)
            assert_true(f[i] == (float)d[i]);
        tensorfile_free(tf);
        assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "h.npy"), &o, &tf, &err), MHA_OK);
        f = tf->t.data;
        assert_true(f[0] == 0.5f && f[1] == -1.25f && f[2] > 0 && f[2] < 1e-7f);
        assert_true(isinf(f[3]) && f[4] == 0.0f && signbit(f[4]));
        tensorfile_free(tf);
    }
}

/* Data that starts at an odd offset (a header whose length another writer
 * chose freely): every read gives the values, and nothing hands out a
 * misaligned pointer -- zero copy is refused for it (the kernels would load
 * misaligned floats, undefined behaviour that UBSan reports), conversions
 * load byte-wise. */
static void test_misaligned_data(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_misaligned");
    const float f[3] = {1.5f, -2.0f, 3.25f};
    const uint16_t h[3] = {0x3e00, 0xc000, 0x4280}; /* 1.5 -2 3.25 */
    const int64_t l[3] = {0, 7, -1};
    const struct {
        const char *descr;
        const void *data;
        size_t esize;
        mha_dtype want;
    } cs[] = {{"<f4", f, 4, MHA_DTYPE_FLOAT32},
              {"<f2", h, 2, MHA_DTYPE_FLOAT32},
              {"<f2", h, 2, MHA_DTYPE_FLOAT16},
              {"<i8", l, 8, MHA_DTYPE_BOOL}};
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        /* 10 + 61 header bytes: the data starts at byte 71 */
        char text[64];
        int tl = snprintf(text, sizeof text,
                          "{'descr': '%s', 'fortran_order': False, 'shape': (3,)}", cs[k].descr);
        assert_true(tl > 0 && tl < 60);
        memset(text + tl, ' ', (size_t)(60 - tl));
        text[60] = '\n';
        text[61] = '\0';
        unsigned char buf[128];
        size_t n = make_npy(buf, sizeof buf, 1, text, -1, cs[k].data, 3 * cs[k].esize);
        assert_int_equal(n - 3 * cs[k].esize, 71);
        const char *path = tu_path(dir, "odd.npy");
        write_bytes(path, buf, n);
        for (int mode = NPY_MMAP_AUTO; mode <= NPY_MMAP_ALWAYS; mode++) {
            mha_error err;
            npy_reader *r;
            assert_int_equal(npy_reader_open(&alloc, path, (npy_mmap_mode)mode, &r, &err), MHA_OK);
            assert_null(npy_reader_mapped_data(r));
            assert_null(npy_reader_mapped_rows(r, 0, 1));
            npy_reader_close(r);
            tensorfile_read_options o = {cs[k].want, (npy_mmap_mode)mode, 0};
            tensorfile *tf;
            assert_int_equal(tensorfile_read(&alloc, path, &o, &tf, &err), MHA_OK);
            assert_int_equal((uintptr_t)tf->t.data % mha_dtype_size(cs[k].want), 0);
            if (cs[k].want == MHA_DTYPE_FLOAT32) {
                const float *y = tf->t.data;
                assert_true(y[0] == 1.5f && y[1] == -2.0f && y[2] == 3.25f);
            } else if (cs[k].want == MHA_DTYPE_FLOAT16) {
                assert_memory_equal(tf->t.data, h, sizeof h);
            } else {
                const uint8_t *y = tf->t.data;
                assert_true(y[0] == 0 && y[1] == 1 && y[2] == 1);
            }
            tensorfile_free(tf);
        }
    }
}

static void test_bool_and_int_masks(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_bool");
    /* numpy writes 0/1, but any nonzero byte means True: it comes out as 1 */
    unsigned char raw[4] = {0, 1, 2, 255};
    unsigned char buf[256];
    size_t n = make_npy(buf, sizeof buf, 1,
                        "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }\n", -1, raw, 4);
    write_bytes(tu_path(dir, "b.npy"), buf, n);
    int64_t iv[4] = {0, 1, -3, 0};
    mha_tensor t = {MHA_DTYPE_INT64, 1, {4}, iv};
    mha_error err;
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "i.npy"), &t, NULL, &err), MHA_OK);
    for (int mode = NPY_MMAP_AUTO; mode <= NPY_MMAP_ALWAYS; mode++) {
        tensorfile_read_options o = {MHA_DTYPE_UNDEFINED, (npy_mmap_mode)mode, 0};
        tensorfile *tf;
        assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "b.npy"), &o, &tf, &err), MHA_OK);
        assert_int_equal(tf->t.dtype, MHA_DTYPE_BOOL);
        const unsigned char want[4] = {0, 1, 1, 1};
        assert_memory_equal(tf->t.data, want, 4);
        tensorfile_free(tf);
        /* int64 kept as int64, or read as a bool mask */
        assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "i.npy"), &o, &tf, &err), MHA_OK);
        assert_int_equal(tf->t.dtype, MHA_DTYPE_INT64);
        assert_memory_equal(tf->t.data, iv, sizeof iv);
        tensorfile_free(tf);
        o.want = MHA_DTYPE_BOOL;
        assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "i.npy"), &o, &tf, &err), MHA_OK);
        const unsigned char wb[4] = {0, 1, 1, 0};
        assert_memory_equal(tf->t.data, wb, 4);
        tensorfile_free(tf);
        /* but never an int as float, nor a float as a mask */
        o.want = MHA_DTYPE_FLOAT32;
        tf = NULL;
        assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "i.npy"), &o, &tf, &err),
                         MHA_ERR_DTYPE);
        assert_non_null(strstr(err.message, "i.npy: holds int64 data but float32 is needed"));
        assert_null(tf);
    }
}

/* ---- row chunks (the streaming reader) ---- */

static void test_read_rows_chunks(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_rows");
    const char *path = tu_path(dir, "x.npy");
    enum { R = 37, C = 5, K = 3 };
    double x[R * C * K];
    for (int i = 0; i < R * C * K; i++)
        x[i] = i * 0.25 - 7;
    int64_t dims[3] = {R, C, K};
    mha_error err;
    /* written in uneven row chunks by the streaming writer */
    npy_writer *w;
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT64, 3, dims, &w, &err), MHA_OK);
    for (int r = 0; r < R;) {
        int k = r % 4 + 1 < R - r ? r % 4 + 1 : R - r;
        assert_int_equal(npy_writer_write_rows(w, x + r * C * K, k, &err), MHA_OK);
        r += k;
    }
    assert_int_equal(npy_writer_commit(w, &err), MHA_OK);

    for (int mode = NPY_MMAP_AUTO; mode <= NPY_MMAP_ALWAYS; mode++) {
        npy_reader *r;
        assert_int_equal(npy_reader_open(&alloc, path, (npy_mmap_mode)mode, &r, &err), MHA_OK);
        const npy_header *h = npy_reader_header(r);
        assert_int_equal(h->rows, R);
        assert_int_equal(h->row_bytes, C * K * 8);
        assert_int_equal(h->dtype, MHA_DTYPE_FLOAT64);
        assert_true(mode != NPY_MMAP_ALWAYS || npy_reader_mapped_data(r) != NULL);
        assert_true(mode != NPY_MMAP_NEVER || npy_reader_mapped_data(r) == NULL);
        float f[R * C * K];
        double d[R * C * K];
        for (int r0 = 0; r0 < R; r0 += 6) {
            int r1 = r0 + 6 < R ? r0 + 6 : R;
            assert_int_equal(npy_reader_read_rows(r, r0, r1, MHA_DTYPE_FLOAT32, f, sizeof f, &err),
                             MHA_OK);
            assert_int_equal(
                npy_reader_read_rows(r, r0, r1, MHA_DTYPE_UNDEFINED, d, sizeof d, &err), MHA_OK);
            for (int i = 0; i < (r1 - r0) * C * K; i++) {
                assert_true(f[i] == (float)x[r0 * C * K + i]);
                assert_true(d[i] == x[r0 * C * K + i]);
            }
        }
        /* empty range, bad ranges, short buffer, impossible conversion */
        assert_int_equal(npy_reader_read_rows(r, 5, 5, MHA_DTYPE_FLOAT32, f, 0, &err), MHA_OK);
        assert_int_equal(npy_reader_read_rows(r, 5, 4, MHA_DTYPE_FLOAT32, f, sizeof f, &err),
                         MHA_ERR_INVALID_ARGUMENT);
        assert_int_equal(npy_reader_read_rows(r, 0, R + 1, MHA_DTYPE_FLOAT32, f, sizeof f, &err),
                         MHA_ERR_INVALID_ARGUMENT);
        assert_int_equal(npy_reader_read_rows(r, -1, 2, MHA_DTYPE_FLOAT32, f, sizeof f, &err),
                         MHA_ERR_INVALID_ARGUMENT);
        assert_int_equal(
            npy_reader_read_rows(r, 0, 2, MHA_DTYPE_FLOAT32, f, 2 * C * K * 4 - 1, &err),
            MHA_ERR_INVALID_ARGUMENT);
        assert_int_equal(npy_reader_read_rows(r, 0, 2, MHA_DTYPE_INT64, f, sizeof f, &err),
                         MHA_ERR_DTYPE);
        npy_reader_close(r);
    }
    npy_reader_close(NULL);
}

/* A file that shrinks after open is an I/O error on the pread path, not a
 * crash or a short tensor. */
static void test_file_shrinks_after_open(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_shrink");
    const char *path = tu_path(dir, "x.npy");
    float x[64] = {0};
    mha_tensor t = {MHA_DTYPE_FLOAT32, 2, {8, 8}, x};
    mha_error err;
    assert_int_equal(tensorfile_write(&alloc, path, &t, NULL, &err), MHA_OK);
    npy_reader *r;
    assert_int_equal(npy_reader_open(&alloc, path, NPY_MMAP_NEVER, &r, &err), MHA_OK);
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(npy_reader_read_rows(r, 0, 8, MHA_DTYPE_FLOAT32, x, sizeof x, &err),
                     MHA_ERR_IO);
    assert_non_null(strstr(err.message, "x.npy: file became shorter"));
    npy_reader_close(r);
}

/* ---- the streaming writer ---- */

static int folder_is_empty(const char *dir) {
    return tu_system("test -z \"$(ls -A '%s')\"", dir) == 0;
}

static void test_writer_refuses_wrong_row_counts(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_writer");
    const char *path = tu_path(dir, "y.npy");
    float rows[4 * 3] = {0};
    int64_t dims[2] = {4, 3};
    mha_error err;
    npy_writer *w;
    /* too many rows: refused, and the file can still be finished */
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, 2, dims, &w, &err), MHA_OK);
    assert_int_equal(npy_writer_write_rows(w, rows, 3, &err), MHA_OK);
    assert_int_equal(npy_writer_write_rows(w, rows, 2, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_false(access(path, F_OK) == 0); /* nothing visible before commit */
    assert_int_equal(npy_writer_write_rows(w, rows, 1, &err), MHA_OK);
    assert_int_equal(npy_writer_commit(w, &err), MHA_OK);
    assert_true(access(path, F_OK) == 0);
    /* too few rows: commit fails and leaves nothing, not even the old file
     * replaced */
    assert_int_equal(tu_system("rm -f '%s'", path), 0);
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, 2, dims, &w, &err), MHA_OK);
    assert_int_equal(npy_writer_write_rows(w, rows, 3, &err), MHA_OK);
    assert_int_equal(npy_writer_commit(w, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "y.npy: only 3 of 4 rows were written"));
    assert_true(folder_is_empty(dir));
    /* abort leaves nothing */
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, 2, dims, &w, &err), MHA_OK);
    assert_int_equal(npy_writer_write_rows(w, rows, 4, &err), MHA_OK);
    npy_writer_abort(w);
    npy_writer_abort(NULL);
    assert_true(folder_is_empty(dir));
    /* a dtype .npy cannot hold */
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_BFLOAT16, 2, dims, &w, &err),
                     MHA_ERR_DTYPE);
    assert_true(folder_is_empty(dir));
}

static void test_writer_missing_and_readonly_folder(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_nofolder");
    int64_t dims[1] = {2};
    float x[2] = {1, 2};
    mha_tensor t = {MHA_DTYPE_FLOAT32, 1, {2}, x};
    mha_error err;
    npy_writer *w = (npy_writer *)0x1;
    const char *missing = tu_path(dir, "nope/y.npy");
    assert_int_equal(npy_writer_begin(&alloc, missing, MHA_DTYPE_FLOAT32, 1, dims, &w, &err),
                     MHA_ERR_IO);
    assert_null(w);
    assert_non_null(strstr(err.message, "nope/y.npy: the folder '"));
    assert_non_null(strstr(err.message, "/nope' does not exist"));
    assert_int_equal(tensorfile_write(&alloc, missing, &t, NULL, &err), MHA_ERR_IO);
    assert_true(folder_is_empty(dir));

    if (geteuid() != 0) { /* root writes into read-only folders anyway */
        const char *ro = tu_path(dir, "ro");
        assert_int_equal(mkdir(ro, 0555), 0);
        assert_int_equal(tensorfile_write(&alloc, tu_path(ro, "y.npy"), &t, NULL, &err),
                         MHA_ERR_IO);
        assert_true(folder_is_empty(ro));
        chmod(ro, 0755);
    }
}

/* ---- malformed files ---- */

static void test_bad_files(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_bad");
    unsigned char buf[16384];
    float data[6] = {0};
    size_t n;
    const char *p;

    p = tu_path(dir, "empty.npy");
    write_bytes(p, "", 0);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "not a .npy file (bad magic)");

    p = tu_path(dir, "magic.npy");
    n = make_npy(buf, sizeof buf, 1, numpy_2x3_f4, -1, data, sizeof data);
    buf[1] = 'X';
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "not a .npy file (bad magic)");

    p = tu_path(dir, "preamble.npy");
    write_bytes(p, "\x93NUMPY\x01\x00", 8);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "file ends inside the .npy preamble");

    p = tu_path(dir, "version.npy");
    n = make_npy(buf, sizeof buf, 4, numpy_2x3_f4, -1, data, sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "unsupported .npy version 4.0");

    p = tu_path(dir, "garbage.npy");
    n = make_npy(buf, sizeof buf, 1, "this is not a python dict at all\n", -1, data, sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "malformed .npy header");

    const char *bad_dicts[] = {
        "{'descr': '<f4', 'fortran_order': False}\n",                          /* no shape */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}\n", /* extra key */
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\n",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3)}\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3.5)}\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}\n",
        "{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)}\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} junk\n",
        "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}\n",
        "",
    };
    for (size_t k = 0; k < sizeof bad_dicts / sizeof bad_dicts[0]; k++) {
        p = tu_path(dir, "dict.npy");
        n = make_npy(buf, sizeof buf, 1, bad_dicts[k], -1, data, sizeof data);
        write_bytes(p, buf, n);
        expect_refused(p, MHA_ERR_DATA_FORMAT, "malformed .npy header");
    }

    p = tu_path(dir, "hdrlong.npy"); /* length field points past the end */
    n = make_npy(buf, sizeof buf, 1, "{'descr': '<f4'", 4000, NULL, 0);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "header longer than the file");

    p = tu_path(dir, "hdrbig.npy"); /* a real, well-formed header over 10 KB */
    {
        char text[12000];
        int k = snprintf(text, sizeof text,
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
        memset(text + k, ' ', 11000 - (size_t)k);
        text[11000] = '\n';
        text[11001] = '\0';
        n = make_npy(buf, sizeof buf, 2, text, -1, data, sizeof data);
        write_bytes(p, buf, n);
        expect_refused(p, MHA_ERR_LIMIT, "exceeds the 10240-byte limit");
        /* 4 GB claimed by a v2 length field */
        n = make_npy(buf, sizeof buf, 2, "{}", 0xfffffff0L, NULL, 0);
        write_bytes(p, buf, n);
        expect_refused(p, MHA_ERR_LIMIT, "exceeds the 10240-byte limit");
    }

    p = tu_path(dir, "short.npy"); /* shape larger than the data */
    n = make_npy(buf, sizeof buf, 1,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 10, 32), }\n", -1, data,
                 sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DATA_FORMAT,
                   "short.npy: shape 3x10x32 needs 3840 bytes but the file holds 24");

    p = tu_path(dir, "trunc.npy"); /* data cut off mid-element */
    n = make_npy(buf, sizeof buf, 1, numpy_2x3_f4, -1, data, sizeof data);
    write_bytes(p, buf, n - 3);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "shape 2x3 needs 24 bytes but the file holds 21");

    p = tu_path(dir, "trailing.npy");
    n = make_npy(buf, sizeof buf, 1, numpy_2x3_f4, -1, data, sizeof data);
    write_bytes(p, buf, n + 4);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "trailing data");

    p = tu_path(dir, "overflow.npy");
    n = make_npy(
        buf, sizeof buf, 1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }\n", -1,
        data, sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_LIMIT, "shape 4294967296x4294967296x16 overflows");
    n = make_npy(buf, sizeof buf, 1,
                 "{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976, 2), }\n",
                 -1, data, sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_LIMIT, "overflows");
    n = make_npy(buf, sizeof buf, 1,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n",
                 -1, data, sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_LIMIT, "overflows");

    p = tu_path(dir, "negative.npy");
    n = make_npy(buf, sizeof buf, 1,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }\n", -1, data,
                 sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "negative dimension");

    p = tu_path(dir, "rank9.npy");
    n = make_npy(buf, sizeof buf, 1,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", -1,
                 data, 4);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_LIMIT, "more than 8 dimensions");

    const char *bad_descrs[] = {"<c8", ">f4", "<f16", "<U8", "O", "<M8", "|b2", "<u8", ">u2"};
    for (size_t k = 0; k < sizeof bad_descrs / sizeof bad_descrs[0]; k++) {
        char text[200], needle[64];
        snprintf(text, sizeof text, "{'descr': '%s', 'fortran_order': False, 'shape': (2, 3), }\n",
                 bad_descrs[k]);
        snprintf(needle, sizeof needle, "unsupported dtype '%s'", bad_descrs[k]);
        p = tu_path(dir, "dtype.npy");
        n = make_npy(buf, sizeof buf, 1, text, -1, data, sizeof data);
        write_bytes(p, buf, n);
        expect_refused(p, MHA_ERR_DTYPE, needle);
    }
    p = tu_path(dir, "struct.npy");
    n = make_npy(buf, sizeof buf, 1,
                 "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }\n", -1, data,
                 sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DTYPE, "structured dtypes are not supported");

    p = tu_path(dir, "fortran.npy");
    n = make_npy(buf, sizeof buf, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
                 -1, data, sizeof data);
    write_bytes(p, buf, n);
    expect_refused(p, MHA_ERR_DATA_FORMAT, "fortran_order arrays are not supported");

    p = tu_path(dir, "missing.npy");
    expect_refused(p, MHA_ERR_IO, "No such file");
    expect_refused(dir, MHA_ERR_INVALID_ARGUMENT, "unknown tensor file type");
    p = tu_path(dir, "folder.npy");
    assert_int_equal(mkdir(p, 0755), 0);
    expect_refused(p, MHA_ERR_IO, "not a regular file");
}

/* The header checks run on what the file claims, before any allocation: a
 * file claiming terabytes costs nothing. */
static void test_no_allocation_before_checks(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_noalloc");
    unsigned char buf[256];
    const char *p = tu_path(dir, "huge.npy");
    size_t n = make_npy(buf, sizeof buf, 1,
                        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }\n",
                        -1, NULL, 0);
    write_bytes(p, buf, n);
    mha_alloc_fail_at(0, 0); /* resets the counter */
    tensorfile *tf;
    mha_error err;
    assert_int_equal(tensorfile_read(&alloc, p, NULL, &tf, &err), MHA_ERR_DATA_FORMAT);
    /* at most the tensorfile shell and its name were allocated */
    assert_true(mha_alloc_count() <= 2);
}

/* Every allocation failing in turn: a clean NO_MEMORY each time, nothing
 * leaked (ASan) and no file left behind. */
static void test_allocation_failures(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_oom");
    float x[12];
    tu_fill_random(x, 12, 5);
    mha_tensor t = {MHA_DTYPE_FLOAT32, 2, {3, 4}, x};
    mha_error err;
    char src[1200];
    snprintf(src, sizeof src, "%s", tu_path(dir, "src.npy"));
    assert_int_equal(tensorfile_write(&alloc, src, &t, NULL, &err), MHA_OK);
    for (long k = 1; k < 64; k++) {
        const char *dst = tu_path(dir, "dst.npy");
        mha_alloc_fail_at(k, 0);
        mha_status st = tensorfile_write(&alloc, dst, &t, NULL, &err);
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            unlink(dst);
        } else {
            assert_int_equal(st, MHA_ERR_NO_MEMORY);
            assert_int_equal(access(dst, F_OK), -1);
        }
        for (int mode = NPY_MMAP_AUTO; mode <= NPY_MMAP_ALWAYS; mode++) {
            tensorfile_read_options o = {MHA_DTYPE_FLOAT64, (npy_mmap_mode)mode, 0};
            tensorfile *tf = NULL;
            mha_alloc_fail_at(k, 0);
            st = tensorfile_read(&alloc, src, &o, &tf, &err);
            mha_alloc_fail_at(0, 0);
            if (st == MHA_OK) {
                assert_true(((double *)tf->t.data)[5] == (double)x[5]);
                tensorfile_free(tf);
            } else {
                if (st != MHA_ERR_NO_MEMORY) fail_msg("k=%ld: %s", k, err.message);
                assert_null(tf);
            }
        }
    }
    assert_int_equal(tu_system("test \"$(ls -A '%s')\" = src.npy", dir), 0);
}

/* ---- the public face (mha/npy.h) ---- */

static void test_public_npy(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_public");
    char path[1200];
    snprintf(path, sizeof path, "%s", tu_path(dir, "rows.npy"));
    mha_error err;
    int g_live = 0;
    mha_allocator al = tu_counting_allocator(&g_live);
    float x[4 * 3];
    for (int i = 0; i < 12; i++)
        x[i] = (float)i - 5.5f;
    int64_t dims[2] = {4, 3};

    /* rows appended in two pieces; nothing published until commit */
    mha_npy_writer *w = NULL;
    assert_int_equal(mha_npy_writer_begin(path, MHA_DTYPE_FLOAT32, 2, dims, &al, &w, &err), MHA_OK);
    assert_int_equal(mha_npy_writer_write_rows(w, x, 1, &err), MHA_OK);
    assert_int_equal(mha_npy_writer_write_rows(w, x + 3, 3, &err), MHA_OK);
    assert_int_equal(mha_npy_writer_write_rows(w, x, 1, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(mha_npy_writer_commit(w, &err), MHA_OK);
    assert_int_equal(g_live, 0);

    /* read back: the header, rows [1, 3) converted to float64 */
    mha_npy_reader *r = NULL;
    assert_int_equal(mha_npy_reader_open(path, MHA_MMAP_ALWAYS, &al, &r, &err), MHA_OK);
    const mha_npy_header *h = mha_npy_reader_header(r);
    assert_int_equal(h->dtype, MHA_DTYPE_FLOAT32);
    assert_int_equal(h->rank, 2);
    assert_int_equal(h->dims[1], 3);
    assert_int_equal(h->rows, 4);
    assert_int_equal(h->row_bytes, 12);
    assert_int_equal(h->is_shard, 0);
    double d[6];
    assert_int_equal(mha_npy_reader_read_rows(r, 1, 3, MHA_DTYPE_FLOAT64, d, sizeof d, &err),
                     MHA_OK);
    for (int i = 0; i < 6; i++)
        assert_true(d[i] == (double)x[3 + i]);
    assert_int_equal(mha_npy_reader_read_rows(r, 3, 5, MHA_DTYPE_UNDEFINED, d, sizeof d, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    mha_npy_reader_close(r);
    assert_int_equal(g_live, 0);

    /* a header formatted, then parsed as a body would be */
    unsigned char buf[256];
    size_t hn = mha_npy_format_header(MHA_DTYPE_FLOAT32, 2, dims, buf, sizeof buf - 48);
    assert_int_equal(hn % 64, 0);
    memcpy(buf + hn, x, 48);
    mha_npy_header ph;
    assert_int_equal(mha_npy_parse_header(buf, hn + 48, hn + 48, "body", &ph, &err), MHA_OK);
    assert_int_equal(ph.header_bytes, hn);
    assert_int_equal(ph.data_bytes, 48);
    assert_int_equal(mha_npy_parse_header(buf, hn + 40, hn + 40, "body", &ph, &err),
                     MHA_ERR_DATA_FORMAT);
    assert_non_null(strstr(err.message, "body"));
    assert_int_equal(mha_npy_format_header(MHA_DTYPE_FLOAT32, 2, dims, buf, 8), 0);

    /* a short file: the writer refuses to publish it, the reader to open bad paths */
    assert_int_equal(mha_npy_writer_begin(path, MHA_DTYPE_FLOAT32, 2, dims, NULL, &w, &err),
                     MHA_OK);
    assert_int_equal(mha_npy_writer_write_rows(w, x, 2, &err), MHA_OK);
    assert_int_equal(mha_npy_writer_commit(w, &err), MHA_ERR_INVALID_ARGUMENT);
    r = (mha_npy_reader *)&ph;
    assert_int_equal(mha_npy_reader_open(tu_path(dir, "none.npy"), MHA_MMAP_AUTO, NULL, &r, &err),
                     MHA_ERR_IO);
    assert_null(r);
    assert_null(mha_npy_reader_header(NULL));
    mha_npy_reader_close(NULL);
    mha_npy_writer_abort(NULL);
    assert_int_equal(mha_npy_writer_begin(NULL, MHA_DTYPE_FLOAT32, 2, dims, NULL, &w, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_null(w);
}

/* The resumable writer, the zero-copy and advice calls and the output
 * helpers the dataset runs use, through the public headers only: a run
 * stopped after a sync resumes from its partial file at the rows a
 * checkpoint would count; stale partial files are removed except those
 * kept; a checkpoint saved through a symlink replaces the link. */
static void test_public_resume(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_public_resume");
    char path[1200], partial[1200], other[1200];
    snprintf(path, sizeof path, "%s", tu_path(dir, "out.npy"));
    mha_error err;
    int g_live = 0;
    mha_allocator al = tu_counting_allocator(&g_live);
    float x[4 * 3];
    for (int i = 0; i < 12; i++)
        x[i] = (float)i * 0.25f - 1.0f;
    const int64_t dims[2] = {4, 3};
    unsigned char head[256];
    const size_t hn = mha_npy_format_header(MHA_DTYPE_FLOAT32, 2, dims, head, sizeof head);
    assert_true(hn > 0);

    /* a first run: 2 rows synced (what a checkpoint records), then stopped */
    mha_npy_writer *w = NULL;
    assert_int_equal(mha_npy_writer_begin_partial(path, NULL, MHA_DTYPE_FLOAT32, 2, dims, 0, 0, 0,
                                                  &al, &w, &err),
                     MHA_OK);
    assert_int_equal(mha_npy_writer_write_rows(w, x, 2, &err), MHA_OK);
    uint64_t bytes = 0;
    assert_int_equal(mha_npy_writer_sync(w, &bytes, &err), MHA_OK);
    assert_int_equal(bytes, hn + 2 * 3 * sizeof(float));
    snprintf(partial, sizeof partial, "%s", mha_npy_writer_partial_path(w));
    mha_npy_writer_detach(w);
    struct stat sb;
    assert_int_equal(stat(partial, &sb), 0);
    assert_int_not_equal(stat(path, &sb), 0); /* nothing published */

    /* a stale partial of another run is removed, the kept one stays */
    assert_int_equal(mha_npy_writer_begin_partial(path, NULL, MHA_DTYPE_FLOAT32, 2, dims, 0, 0, 0,
                                                  NULL, &w, &err),
                     MHA_OK);
    snprintf(other, sizeof other, "%s", mha_npy_writer_partial_path(w));
    mha_npy_writer_detach(w);
    const char *keep = partial;
    assert_int_equal(mha_output_clean_stale_except(path, &keep, 1), 1);
    assert_int_not_equal(stat(other, &sb), 0);
    assert_int_equal(stat(partial, &sb), 0);

    /* resumed at row 1 (as if the checkpoint counted 1): rows 1..3 again */
    assert_int_equal(mha_npy_writer_begin_partial(path, partial, MHA_DTYPE_FLOAT32, 2, dims, 0, 0,
                                                  1, &al, &w, &err),
                     MHA_OK);
    assert_int_equal(mha_npy_writer_write_rows(w, x + 3, 3, &err), MHA_OK);
    assert_int_equal(mha_npy_writer_commit(w, &err), MHA_OK);

    /* the whole file, read in place from its mapping */
    mha_npy_reader *r = NULL;
    assert_int_equal(mha_npy_reader_open(path, MHA_MMAP_ALWAYS, &al, &r, &err), MHA_OK);
    assert_non_null(mha_npy_reader_mapped_rows(r, 0, 0));
    const float *rows = mha_npy_reader_mapped_rows(r, 1, 4);
    assert_non_null(rows);
    assert_memory_equal(rows, x + 3, 9 * sizeof(float));
    assert_null(mha_npy_reader_mapped_rows(r, 2, 5));
    mha_npy_reader_advise(r, 0, 4, MHA_NPY_WILLNEED);
    mha_npy_reader_advise(r, 0, 9, MHA_NPY_DONTNEED); /* out of range: ignored */
    mha_npy_reader_close(r);
    assert_int_equal(mha_npy_reader_open(path, MHA_MMAP_NEVER, NULL, &r, &err), MHA_OK);
    assert_null(mha_npy_reader_mapped_rows(r, 0, 0));
    mha_npy_reader_close(r);

    /* a resume from a partial file shorter than the rows done is refused */
    assert_int_equal(mha_npy_writer_begin_partial(path, NULL, MHA_DTYPE_FLOAT32, 2, dims, 0, 0, 0,
                                                  NULL, &w, &err),
                     MHA_OK);
    snprintf(partial, sizeof partial, "%s", mha_npy_writer_partial_path(w));
    mha_npy_writer_detach(w);
    assert_int_not_equal(mha_npy_writer_begin_partial(path, partial, MHA_DTYPE_FLOAT32, 2, dims, 0,
                                                      0, 3, NULL, &w, &err),
                         MHA_OK);
    assert_null(w);
    assert_int_equal(mha_output_clean_stale(path), 1);

    /* a shard's header says which rows it holds */
    size_t sn =
        mha_npy_format_header_shard(MHA_DTYPE_FLOAT32, 2, dims, 4, 8, 10, head, sizeof head);
    assert_true(sn > 0);
    mha_npy_header h;
    assert_int_equal(mha_npy_parse_header(head, sn, sn + 12 * sizeof(float), "shard", &h, &err),
                     MHA_OK);
    assert_true(h.is_shard);
    assert_int_equal(h.shard_r0, 4);
    assert_int_equal(h.shard_r1, 8);
    assert_int_equal(h.shard_total, 10);

    /* streams, and a checkpoint saved over a symlink replaces the link */
    int stream = -1;
    assert_int_equal(mha_output_is_stream("-", &stream, &err), MHA_OK);
    assert_int_equal(stream, 1);
    assert_int_equal(mha_output_is_stream(path, &stream, &err), MHA_OK);
    assert_int_equal(stream, 0);
    assert_int_equal(mha_output_is_stream(tu_path(dir, "no/such/dir/x.npy"), &stream, &err),
                     MHA_ERR_IO);
    char target[1200], link_path[1200];
    snprintf(target, sizeof target, "%s", tu_path(dir, "target.txt"));
    snprintf(link_path, sizeof link_path, "%s", tu_path(dir, "run.ckpt"));
    assert_int_equal(mha_output_save(target, "keep", 4, &err), MHA_OK);
    unlink(link_path);
    assert_int_equal(symlink(target, link_path), 0);
    assert_int_equal(mha_output_save_nofollow(link_path, "ckpt", 4, &err), MHA_OK);
    assert_int_equal(lstat(link_path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(stat(target, &sb), 0);
    assert_int_equal(sb.st_size, 4);
    FILE *f = fopen(target, "rb");
    char got[8] = {0};
    assert_non_null(f);
    assert_int_equal(fread(got, 1, sizeof got, f), 4);
    fclose(f);
    assert_memory_equal(got, "keep", 4);

    /* a partial file for a writer of its own (MPI-IO), committed */
    mha_output_file *of = NULL;
    assert_int_equal(mha_output_file_begin_partial(path, &al, &of, &err), MHA_OK);
    const char *tmp = mha_output_file_tmp_path(of);
    assert_non_null(tmp);
    f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("abc", 1, 3, f), 3);
    fclose(f);
    assert_int_equal(mha_output_file_commit(of, &err), MHA_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 3);
    assert_int_equal(g_live, 0);
}

/* A shard's rows must lie in its dataset: a first row below 0 or past the
 * rows left, or one whose last row passes INT64_MAX, is the caller's
 * mistake (MHA_ERR_INVALID_ARGUMENT naming the file), not an internal
 * error; the sum r0 + rows was formed unchecked (signed overflow: a header
 * "rows 9223372036854775806:-9223372036854775805" its own reader refuses). */
static void test_public_shard_bounds(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("npy_public_shard_bounds");
    char path[1200];
    snprintf(path, sizeof path, "%s", tu_path(dir, "s.npy"));
    const int64_t dims[2] = {5, 4};
    const struct {
        int64_t r0, total;
    } bad[] = {{-1, 10}, {6, 10}, {INT64_MAX - 1, INT64_MAX}, {INT64_MAX, 1}};
    mha_npy_shard sh;
    mha_npy_shard_init(&sh);
    unsigned char head[1024];
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        mha_error err;
        mha_error_clear(&err);
        mha_npy_writer *w = (mha_npy_writer *)&sh;
        sh.r0 = bad[k].r0;
        sh.total = bad[k].total;
        assert_int_equal(mha_npy_writer_begin_shard(path, NULL, MHA_DTYPE_FLOAT32, 2, dims, &sh, 0,
                                                    NULL, &w, &err),
                         MHA_ERR_INVALID_ARGUMENT);
        assert_null(w);
        assert_non_null(strstr(err.message, "does not lie in a dataset of"));
        assert_int_equal(mha_npy_writer_begin_partial(path, NULL, MHA_DTYPE_FLOAT32, 2, dims,
                                                      bad[k].r0, bad[k].total, 0, NULL, &w, &err),
                         MHA_ERR_INVALID_ARGUMENT);
        assert_int_equal(
            mha_npy_format_header_shard_run(MHA_DTYPE_FLOAT32, 2, dims, &sh, head, sizeof head), 0);
        struct stat sb;
        assert_int_not_equal(stat(path, &sb), 0);
    }
    /* a shard of rank 0 holds no rows to place */
    mha_error err;
    mha_npy_writer *w = NULL;
    sh.r0 = 0;
    sh.total = 3;
    assert_int_equal(
        mha_npy_writer_begin_shard(path, NULL, MHA_DTYPE_FLOAT32, 0, dims, &sh, 0, NULL, &w, &err),
        MHA_ERR_INVALID_ARGUMENT);
    /* the last rows of a dataset at the top of the range still write */
    sh.r0 = INT64_MAX - 5;
    sh.total = INT64_MAX;
    assert_true(
        mha_npy_format_header_shard_run(MHA_DTYPE_FLOAT32, 2, dims, &sh, head, sizeof head) > 0);
    /* quotes of either kind cannot stand in the note (mha/npy.h) */
    sh.r0 = 0;
    sh.total = 10;
    sh.run = "model \"x\"";
    assert_int_equal(
        mha_npy_writer_begin_shard(path, NULL, MHA_DTYPE_FLOAT32, 2, dims, &sh, 0, NULL, &w, &err),
        MHA_ERR_INVALID_ARGUMENT);
    assert_null(w);
}

int main(void) {
    mha_alloc_ctx_init(&alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_dtypes_and_ranks),
        cmocka_unit_test(test_header_format_matches_numpy),
        cmocka_unit_test(test_reads_other_writers),
        cmocka_unit_test(test_float64_and_float16_to_float32),
        cmocka_unit_test(test_misaligned_data),
        cmocka_unit_test(test_bool_and_int_masks),
        cmocka_unit_test(test_read_rows_chunks),
        cmocka_unit_test(test_file_shrinks_after_open),
        cmocka_unit_test(test_writer_refuses_wrong_row_counts),
        cmocka_unit_test(test_writer_missing_and_readonly_folder),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_no_allocation_before_checks),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_public_npy),
        cmocka_unit_test(test_public_resume),
        cmocka_unit_test(test_public_shard_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
