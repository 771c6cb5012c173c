/* test_dataset.c -- what dataset runs (`mha run` by chunks, tools/
 * run_dataset.c) rely on in the library: a row's result does not depend on
 * the rest of its batch (so any chunk size gives the one-shot bits); the
 * kv_lengths run option scores each padded row exactly as that row alone
 * at its true length; the resumable .npy writer truncates to a checkpoint
 * and continues; shard headers round-trip. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mha/mha.h"
#include "tensorfile.h"

static mha_model *load_case(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/conformance/%s/model.onnx", MHA_TEST_DATA, name);
    mha_model *m = NULL;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = mha_model_load_file(path, NULL, &m, &err);
    if (st != MHA_OK) fail_msg("%s: %s", path, err.message);
    return m;
}

static mha_runtime *make_runtime(const char *backend, int threads) {
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.backend = backend;
    o.num_threads = threads;
    mha_runtime *rt = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (mha_runtime_create(&o, &rt, &err) != MHA_OK) fail_msg("runtime: %s", err.message);
    return rt;
}

/* A self-attention layer with input [B, S, D] -> output [B, S, D]. */
static void run_self(mha_runtime *rt, const mha_model *m, const float *x, int64_t B, int64_t S,
                     int64_t D, const int64_t *kv_lengths, float *y) {
    mha_tensor in = {MHA_DTYPE_FLOAT32, 3, {B, S, D}, (void *)x};
    mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {B, S, D}, y};
    mha_run_options o;
    mha_run_options_init(&o);
    o.kv_lengths = kv_lengths;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = mha_run(rt, m, &in, 1, &out, 1, &o, &err);
    if (st != MHA_OK) fail_msg("run: %s", err.message);
}

static const char *const self_cases[] = {"mha_self_d64_h4_b2_s16", "mha_causal_d64_h8_b2_s24",
                                         "mha_gqa_causal_d64_h8_kv2_b1_s20"};
static const char *const backends[] = {NULL, "scalar"};

/* Rows computed in one batch, one by one and in chunks of 4 are the same
 * bits: what makes any --batch-size give the one-shot file. */
static void test_rows_do_not_depend_on_the_batch(void **state) {
    (void)state;
    const int64_t B = 9, S = 13, D = 64;
    for (size_t bk = 0; bk < sizeof backends / sizeof backends[0]; bk++) {
        mha_runtime *rt = make_runtime(backends[bk], 2);
        for (size_t c = 0; c < sizeof self_cases / sizeof self_cases[0]; c++) {
            mha_model *m = load_case(self_cases[c]);
            size_t n = (size_t)(B * S * D);
            float *x = malloc(n * sizeof *x), *all = malloc(n * sizeof *x),
                  *part = malloc(n * sizeof *x);
            assert_non_null(x);
            assert_non_null(all);
            assert_non_null(part);
            tu_fill_random(x, n, 11 + c);
            run_self(rt, m, x, B, S, D, NULL, all);
            for (int64_t b = 0; b < B; b++) /* one by one */
                run_self(rt, m, x + b * S * D, 1, S, D, NULL, part + b * S * D);
            assert_memory_equal(all, part, n * sizeof *x);
            for (int64_t b = 0; b < B; b += 4) { /* chunks of 4, the last of 1 */
                int64_t k = B - b < 4 ? B - b : 4;
                run_self(rt, m, x + b * S * D, k, S, D, NULL, part + b * S * D);
            }
            assert_memory_equal(all, part, n * sizeof *x);
            free(x);
            free(all);
            free(part);
            mha_model_free(m);
        }
        mha_runtime_destroy(rt);
    }
}

/* Padded rows with kv_lengths equal each row run alone at its length:
 * query rows [0, len) bitwise; and a chunk offset into the lengths array
 * (as run_dataset.c passes lengths + r) keeps them aligned. */
static void test_kv_lengths_equal_rows_alone(void **state) {
    (void)state;
    const int64_t B = 6, S = 12, D = 64;
    const int64_t len[6] = {12, 1, 7, 0, 5, 11};
    for (size_t bk = 0; bk < sizeof backends / sizeof backends[0]; bk++) {
        mha_runtime *rt = make_runtime(backends[bk], 2);
        for (size_t c = 0; c < sizeof self_cases / sizeof self_cases[0]; c++) {
            mha_model *m = load_case(self_cases[c]);
            size_t n = (size_t)(B * S * D);
            float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *x),
                  *y2 = malloc(n * sizeof *x), *alone = malloc((size_t)(S * D) * sizeof *x);
            assert_non_null(x);
            assert_non_null(y);
            assert_non_null(y2);
            assert_non_null(alone);
            tu_fill_random(x, n, 21 + c);
            run_self(rt, m, x, B, S, D, len, y);
            for (int64_t b = 0; b < B; b++) {
                if (len[b] == 0) continue;
                run_self(rt, m, x + b * S * D, 1, len[b], D, NULL, alone);
                assert_memory_equal(y + b * S * D, alone, (size_t)(len[b] * D) * sizeof *x);
            }
            /* rows 2..5 as a chunk, lengths pointer offset by 2 */
            run_self(rt, m, x + 2 * S * D, 4, S, D, len + 2, y2 + 2 * S * D);
            assert_memory_equal(y + 2 * S * D, y2 + 2 * S * D, (size_t)(4 * S * D) * sizeof *x);
            for (size_t i = 0; i < n; i++)
                assert_true(isfinite(y[i])); /* length 0: no NaN */
            free(x);
            free(y);
            free(y2);
            free(alone);
            mha_model_free(m);
        }
        mha_runtime_destroy(rt);
    }
}

static void test_kv_lengths_checked(void **state) {
    (void)state;
    mha_runtime *rt = make_runtime(NULL, 1);
    mha_model *m = load_case("mha_self_d32_h2_b2_s8");
    float x[2 * 8 * 32], y[2 * 8 * 32], y_old[2 * 8 * 32];
    tu_fill_random(x, 2 * 8 * 32, 5);
    mha_tensor in = {MHA_DTYPE_FLOAT32, 3, {2, 8, 32}, x};
    mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {2, 8, 32}, y};
    int64_t bad[2] = {3, -1};
    mha_run_options o;
    mha_run_options_init(&o);
    o.kv_lengths = bad;
    mha_error err;
    mha_error_clear(&err);
    assert_int_equal(mha_run(rt, m, &in, 1, &out, 1, &o, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "kv_lengths[1]"));
    /* a caller built before kv_lengths existed passes the old, smaller size:
     * still accepted, and the field it does not have is not read */
    run_self(rt, m, x, 2, 8, 32, NULL, y);
    o.struct_size = (uint32_t)offsetof(mha_run_options, kv_lengths);
    out.data = y_old;
    assert_int_equal(mha_run(rt, m, &in, 1, &out, 1, &o, &err), MHA_OK);
    assert_memory_equal(y, y_old, sizeof y);
    o.struct_size = 4;
    assert_int_equal(mha_run(rt, m, &in, 1, &out, 1, &o, &err), MHA_ERR_INVALID_ARGUMENT);
    mha_model_free(m);
    mha_runtime_destroy(rt);
}

/* Writes rows 0..2, checkpoints, writes rows 3..4 (lost in a "crash"),
 * resumes from the checkpoint and finishes: the file equals one written in
 * one go. */
static void test_partial_writer_resumes_from_checkpoint(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("dataset_partial");
    char out[1024], partial[1024], whole[1024];
    snprintf(out, sizeof out, "%s/y.npy", dir);

    snprintf(whole, sizeof whole, "%s/whole.npy", dir);
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    mha_error err;
    mha_error_clear(&err);
    float data[8][6];
    tu_fill_random(&data[0][0], 48, 3);
    const int64_t dims[3] = {8, 2, 3};

    npy_writer *w = NULL;
    if (npy_writer_begin(&a, whole, MHA_DTYPE_FLOAT32, 3, dims, &w, &err) != MHA_OK)
        fail_msg("%s", err.message);
    assert_int_equal(npy_writer_write_rows(w, data, 8, &err), MHA_OK);
    assert_int_equal(npy_writer_commit(w, &err), MHA_OK);

    assert_int_equal(npy_writer_begin_partial(&a, out, NULL, MHA_DTYPE_FLOAT32, 3, dims, 0, 0, NULL,
                                              0, 0, &w, &err),
                     MHA_OK);
    /* a new partial file of its own name, beside the output */
    snprintf(partial, sizeof partial, "%s", npy_writer_partial_path(w));
    char head[1100];
    snprintf(head, sizeof head, "%s/y.npy.partial.", dir);
    assert_int_equal(strncmp(partial, head, strlen(head)), 0);
    assert_int_equal(strlen(partial), strlen(head) + 6);
    assert_int_equal(npy_writer_write_rows(w, data[0], 3, &err), MHA_OK);
    uint64_t bytes = 0;
    assert_int_equal(npy_writer_sync(w, &bytes, &err), MHA_OK);
    assert_int_equal(bytes, 128 + 3 * 24);
    assert_int_equal(npy_writer_write_rows(w, data[3], 2, &err), MHA_OK);
    npy_writer_detach(w); /* the partial file stays, 5 rows long */
    struct stat sb;
    assert_int_equal(stat(partial, &sb), 0);
    assert_int_equal(sb.st_size, 128 + 5 * 24);
    assert_int_equal(access(out, F_OK), -1);

    /* a different shape is refused, the partial file kept */
    const int64_t other[3] = {8, 3, 2};
    assert_int_equal(npy_writer_begin_partial(&a, out, partial, MHA_DTYPE_FLOAT32, 3, other, 0, 0,
                                              NULL, 0, 3, &w, &err),
                     MHA_ERR_DATA_FORMAT);
    /* more rows than the partial file holds is refused */
    assert_int_equal(npy_writer_begin_partial(&a, out, partial, MHA_DTYPE_FLOAT32, 3, dims, 0, 0,
                                              NULL, 0, 7, &w, &err),
                     MHA_ERR_IO);
    assert_int_equal(stat(partial, &sb), 0);

    assert_int_equal(npy_writer_begin_partial(&a, out, partial, MHA_DTYPE_FLOAT32, 3, dims, 0, 0,
                                              NULL, 0, 3, &w, &err),
                     MHA_OK);
    assert_int_equal(npy_writer_rows_written(w), 3);
    assert_int_equal(npy_writer_write_rows(w, data[3], 5, &err), MHA_OK);
    assert_int_equal(npy_writer_commit(w, &err), MHA_OK);
    assert_int_equal(access(partial, F_OK), -1);
    size_t na = 0, nb = 0;
    void *fa = tu_read_file(out, &na), *fb = tu_read_file(whole, &nb);
    assert_non_null(fa);
    assert_non_null(fb);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    free(fa);
    free(fb);
}

static void test_shard_header_round_trips(void **state) {
    (void)state;
    unsigned char buf[640];
    const int64_t dims[3] = {4, 5, 6};
    size_t n =
        npy_format_header_shard(MHA_DTYPE_FLOAT32, 3, dims, 10, 14, 40, NULL, 0, buf, sizeof buf);
    assert_true(n > 0 && n % 64 == 0);
    npy_header h;
    mha_error err;
    mha_error_clear(&err);
    uint64_t file = n + 4 * 5 * 6 * 4;
    assert_int_equal(npy_parse_header(buf, n, file, "s.npy", &h, &err), MHA_OK);
    assert_true(h.is_shard);
    assert_int_equal(h.shard_r0, 10);
    assert_int_equal(h.shard_r1, 14);
    assert_int_equal(h.shard_total, 40);
    assert_int_equal(h.rows, 4);
    /* the range must match dims[0] */
    assert_int_equal(
        npy_format_header_shard(MHA_DTYPE_FLOAT32, 3, dims, 10, 15, 40, NULL, 0, buf, sizeof buf),
        0);
    /* a plain header is no shard; another comment is ignored */
    n = npy_format_header(MHA_DTYPE_FLOAT32, 3, dims, buf, sizeof buf);
    assert_int_equal(npy_parse_header(buf, n, file, "p.npy", &h, &err), MHA_OK);
    assert_false(h.is_shard);
    char text[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': "
                  "(4, 5, 6), }  # mha-shard rows 1:9 of 40";
    size_t tl = strlen(text + 10) + 10; /* the \x00 in the preamble */
    unsigned char h2[128];
    memset(h2, ' ', sizeof h2);
    memcpy(h2, text, 10);
    memcpy(h2 + 10, text + 10, tl - 10);
    h2[127] = '\n';
    assert_int_equal(npy_parse_header(h2, 128, 128 + 480, "bad.npy", &h, &err),
                     MHA_ERR_DATA_FORMAT);
    assert_non_null(strstr(err.message, "shard note says rows 1:9"));
    memcpy(h2 + 10 + (tl - 10) - 21, "# just a comment here", 21);
    assert_int_equal(npy_parse_header(h2, 128, 128 + 480, "c.npy", &h, &err), MHA_OK);
    assert_false(h.is_shard);
}

/* A shard's run note (what `mha merge` compares) is written after its rows
 * and read back as it was; one that could break the comment is refused. */
static void test_shard_run_note_round_trips(void **state) {
    (void)state;
    unsigned char buf[1024];
    const int64_t dims[2] = {4, 3};
    const char *run = "shard 1/3; model 0123456789abcdef; precision bfloat16";
    size_t n =
        npy_format_header_shard(MHA_DTYPE_FLOAT32, 2, dims, 4, 8, 12, run, 0, buf, sizeof buf);
    assert_true(n > 0 && n % 64 == 0);
    npy_header h;
    char got[MHA_NPY_SHARD_RUN_MAX];
    int axis = -1;
    mha_error err;
    mha_error_clear(&err);
    assert_int_equal(npy_parse_header_run(buf, n, n + 48, "s.npy", &h, got, &axis, &err), MHA_OK);
    assert_true(h.is_shard);
    assert_int_equal(h.shard_r0, 4);
    assert_int_equal(h.shard_total, 12);
    assert_string_equal(got, run);
    /* without a run: "" */
    n = npy_format_header_shard(MHA_DTYPE_FLOAT32, 2, dims, 4, 8, 12, NULL, 0, buf, sizeof buf);
    assert_int_equal(npy_parse_header_run(buf, n, n + 48, "s.npy", &h, got, &axis, &err), MHA_OK);
    assert_string_equal(got, "");
    /* a '#', a newline or an over-long note would not read back */
    assert_int_equal(
        npy_format_header_shard(MHA_DTYPE_FLOAT32, 2, dims, 4, 8, 12, "a # b", 0, buf, sizeof buf),
        0);
    assert_int_equal(
        npy_format_header_shard(MHA_DTYPE_FLOAT32, 2, dims, 4, 8, 12, "a\nb", 0, buf, sizeof buf),
        0);
    char longer[MHA_NPY_SHARD_RUN_MAX + 1];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(
        npy_format_header_shard(MHA_DTYPE_FLOAT32, 2, dims, 4, 8, 12, longer, 0, buf, sizeof buf),
        0);
}

/* Rows along axis 1 (a sequence-first [S, B, ...] file): the shard note
 * says so and is checked against dims[1]; the reader takes items [r0, r1)
 * of axis 1 under every index of axis 0; the writer puts chunks of them in
 * place, keeps the file whole across a detach and a resume, and gives the
 * bytes of one plain write of the whole array. */
static void test_axis1_rows_read_and_written(void **state) {
    (void)state;
    unsigned char buf[640] = {0};      /* the text after the 10-byte preamble ends in NULs */
    const int64_t dims[3] = {3, 5, 2}; /* S 3, B 5, 2 per item */
    size_t n = npy_format_header_shard(MHA_DTYPE_FLOAT32, 3, dims, 4, 9, 12, "shard 1/2", 1, buf,
                                       sizeof buf);
    assert_true(n > 0);
    assert_non_null(
        strstr((const char *)buf + 10, "# mha-shard rows 4:9 of 12 on axis 1; run shard 1/2"));
    npy_header h;
    char run[MHA_NPY_SHARD_RUN_MAX];
    int axis = 0;
    mha_error err;
    mha_error_clear(&err);
    assert_int_equal(npy_parse_header_run(buf, n, n + 3 * 5 * 2 * 4, "s.npy", &h, run, &axis, &err),
                     MHA_OK);
    assert_true(h.is_shard);
    assert_int_equal(axis, 1);
    assert_int_equal(h.shard_r1, 9);
    assert_string_equal(run, "shard 1/2");
    /* dims[1] must be the range (dims[0] is not) */
    assert_int_equal(
        npy_format_header_shard(MHA_DTYPE_FLOAT32, 3, dims, 4, 7, 12, NULL, 1, buf, sizeof buf), 0);

    const char *dir = tu_tmpdir("dataset_axis1");
    char whole[1024], out[1024], partial[1024];
    snprintf(whole, sizeof whole, "%s/whole.npy", dir);
    snprintf(out, sizeof out, "%s/y.npy", dir);
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    float data[30], got[30];
    for (int i = 0; i < 30; i++)
        data[i] = (float)i;
    npy_writer *w = NULL;
    assert_int_equal(npy_writer_begin(&a, whole, MHA_DTYPE_FLOAT32, 3, dims, &w, &err), MHA_OK);
    assert_int_equal(npy_writer_write_rows(w, data, 3, &err), MHA_OK);
    assert_int_equal(npy_writer_commit(w, &err), MHA_OK);
    /* items 1:4 of axis 1: [3, 3, 2], converted to float64 on the way */
    npy_reader *r = NULL;
    assert_int_equal(npy_reader_open(&a, whole, NPY_MMAP_NEVER, &r, &err), MHA_OK);
    double d[18];
    assert_int_equal(npy_reader_read_rows_axis1(r, 1, 4, MHA_DTYPE_FLOAT64, d, sizeof d, &err),
                     MHA_OK);
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 3; b++)
            for (int k = 0; k < 2; k++)
                assert_true(d[(s * 3 + b) * 2 + k] == data[(s * 5 + 1 + b) * 2 + k]);
    assert_int_equal(npy_reader_read_rows_axis1(r, 4, 6, MHA_DTYPE_FLOAT64, d, sizeof d, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    npy_reader_close(r);

    /* written in chunks of 2, 1 (detached, resumed after 3), then 2 */
    assert_int_equal(npy_writer_begin_partial(&a, out, NULL, MHA_DTYPE_FLOAT32, 3, dims, 0, 0, NULL,
                                              1, 0, &w, &err),
                     MHA_OK);
    snprintf(partial, sizeof partial, "%s", npy_writer_partial_path(w));
    float chunk[30];
    int64_t done = 0;
    for (int step = 0; step < 3; step++) {
        const int64_t k = step == 1 ? 1 : 2;
        if (step == 2) { /* a crash after 3 items: resumed on the partial file */
            npy_writer_detach(w);
            w = NULL;
            assert_int_equal(npy_writer_begin_partial(&a, out, partial, MHA_DTYPE_FLOAT32, 3, dims,
                                                      0, 0, NULL, 1, done, &w, &err),
                             MHA_OK);
        }
        for (int s = 0; s < 3; s++)
            memcpy(chunk + s * k * 2, data + (s * 5 + done) * 2, (size_t)k * 2 * sizeof(float));
        assert_int_equal(npy_writer_write_rows(w, chunk, k, &err), MHA_OK);
        done += k;
    }
    assert_int_equal(npy_writer_commit(w, &err), MHA_OK);
    FILE *fa = fopen(whole, "rb"), *fb = fopen(out, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    unsigned char ba[512], bb[512];
    size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
    fclose(fa);
    fclose(fb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    (void)got;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_do_not_depend_on_the_batch),
        cmocka_unit_test(test_kv_lengths_equal_rows_alone),
        cmocka_unit_test(test_kv_lengths_checked),
        cmocka_unit_test(test_partial_writer_resumes_from_checkpoint),
        cmocka_unit_test(test_shard_header_round_trips),
        cmocka_unit_test(test_shard_run_note_round_trips),
        cmocka_unit_test(test_axis1_rows_read_and_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
