/* entry_npy.c -- fuzz entry for .npy files: the bytes go to
 * npy_parse_header as a whole file, then the same bytes are written to a
 * file and read back with tensorfile_read through both read paths (pread
 * and mmap) and with and without a float32 conversion.
 *
 * What must hold: the parser and the file reader agree on every input (the
 * reader adds no check the parser lacks and skips none); a parsed header
 * accounts for every byte of the file; a read tensor holds exactly the
 * file's data (bools normalised to 0/1); a refusal is a clean status naming
 * the file; no descriptor leaks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_entry.h"
#include "tensorfile.h"

static const char *npy_path(void) {
    static char path[4200];
    if (!path[0]) snprintf(path, sizeof path, "%s/input.npy", fuzz_tmpdir());
    return path;
}

static void write_input(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot write %s", path);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size, "short write to %s", path);
    FUZZ_CHECK(fclose(f) == 0, "close %s", path);
}

static void check_header(const npy_header *h, size_t size) {
    FUZZ_CHECK(h->version_major >= 1 && h->version_major <= 3, "version %d", h->version_major);
    FUZZ_CHECK(h->rank >= 0 && h->rank <= MHA_MAX_RANK, "rank %d", h->rank);
    size_t esize = mha_dtype_size(h->dtype);
    FUZZ_CHECK(esize > 0, "dtype %d", (int)h->dtype);
    int64_t numel = 1;
    for (int i = 0; i < h->rank; i++) {
        FUZZ_CHECK(h->dims[i] >= 0, "dim %d is %lld", i, (long long)h->dims[i]);
        FUZZ_CHECK(!__builtin_mul_overflow(numel, h->dims[i], &numel), "numel overflows");
    }
    FUZZ_CHECK((uint64_t)numel * esize == h->data_bytes, "data_bytes %zu for %lld elements",
               h->data_bytes, (long long)numel);
    FUZZ_CHECK(h->header_bytes <= size && h->header_bytes + h->data_bytes == size,
               "header %zu + data %zu != file %zu", h->header_bytes, h->data_bytes, size);
    FUZZ_CHECK(h->header_bytes <= 12 + NPY_MAX_HEADER_BYTES, "header of %zu bytes",
               h->header_bytes);
    FUZZ_CHECK(h->rows == (h->rank == 0 ? 1 : h->dims[0]), "rows %lld", (long long)h->rows);
    FUZZ_CHECK((uint64_t)h->rows * h->row_bytes == h->data_bytes || h->rows == 0,
               "rows %lld x row_bytes %zu != %zu", (long long)h->rows, h->row_bytes, h->data_bytes);
}

/* Reads the file with the given options and checks the result against the
 * parsed header (parsed_ok says whether the parser accepted the bytes). */
static void read_and_check(const char *path, const uint8_t *data, size_t size, int parsed_ok,
                           const npy_header *h, mha_dtype want, npy_mmap_mode mode) {
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    tensorfile_read_options o;
    memset(&o, 0, sizeof o);
    o.want = want;
    o.mmap_mode = mode;
    tensorfile *tf = (tensorfile *)&o;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = tensorfile_read(&a, path, &o, &tf, &err);
    int convertible =
        parsed_ok && (want == MHA_DTYPE_UNDEFINED || tensorfile_can_convert(h->dtype, want));
    if (st != MHA_OK) {
        fuzz_check_error("tensorfile_read", st, &err);
        FUZZ_CHECK(tf == NULL, "a failed read left a tensor");
        FUZZ_CHECK(strstr(err.message, path) != NULL, "message does not name the file: %s",
                   err.message);
        FUZZ_CHECK(!convertible, "the parser accepts the file, the reader says: %s", err.message);
        return;
    }
    FUZZ_CHECK(convertible, "the reader accepts a file the parser refuses or cannot convert");
    mha_dtype got = want == MHA_DTYPE_UNDEFINED ? h->dtype : want;
    FUZZ_CHECK(tf->t.dtype == got && tf->t.rank == h->rank &&
                   memcmp(tf->t.shape, h->dims, sizeof(int64_t) * (size_t)h->rank) == 0,
               "read tensor's dtype or shape differs from the header");
    size_t n = h->data_bytes / mha_dtype_size(h->dtype);
    const uint8_t *file_data = data + h->header_bytes;
    if (got == h->dtype && got != MHA_DTYPE_BOOL) {
        FUZZ_CHECK(n == 0 || memcmp(tf->t.data, file_data, h->data_bytes) == 0,
                   "read data differs from the file");
    } else if (n <= ((size_t)1 << 22)) {
        size_t wsize = mha_dtype_size(got);
        uint8_t *expect = malloc(n ? n * wsize : 1);
        FUZZ_CHECK(expect, "malloc");
        tensorfile_convert(file_data, h->dtype, expect, got, n);
        /* compare bit patterns: a NaN converts to the same NaN both ways */
        FUZZ_CHECK(n == 0 || memcmp(tf->t.data, expect, n * wsize) == 0,
                   "converted data differs from a conversion of the file");
        if (got == MHA_DTYPE_BOOL)
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(((const uint8_t *)tf->t.data)[i] <= 1, "bool element %zu", i);
        free(expect);
    }
    tensorfile_free(tf);
}

int fuzz_npy_one(const uint8_t *data, size_t size) {
    int fd_before = fuzz_lowest_free_fd();
    npy_header h;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = npy_parse_header(data, size, size, "fuzz.npy", &h, &err);
    fuzz_note("npy_parse_header", st, &err);
    int ok = st == MHA_OK;
    if (ok) {
        check_header(&h, size);
    } else {
        fuzz_check_error("npy_parse_header", st, &err);
        FUZZ_CHECK(strstr(err.message, "fuzz.npy") != NULL, "message does not name the file: %s",
                   err.message);
        /* only a file too short to hold its header can make the parser ask
         * for more bytes; here it has the whole file */
        FUZZ_CHECK(st != MHA_ERR_INVALID_ARGUMENT, "whole file given, yet: %s", err.message);
    }

    const char *path = npy_path();
    write_input(path, data, size);
    read_and_check(path, data, size, ok, &h, MHA_DTYPE_UNDEFINED, NPY_MMAP_NEVER);
    read_and_check(path, data, size, ok, &h, MHA_DTYPE_UNDEFINED, NPY_MMAP_ALWAYS);
    read_and_check(path, data, size, ok, &h, MHA_DTYPE_FLOAT32, NPY_MMAP_NEVER);
    read_and_check(path, data, size, ok, &h, MHA_DTYPE_FLOAT32, NPY_MMAP_ALWAYS);
    read_and_check(path, data, size, ok, &h, MHA_DTYPE_BOOL, NPY_MMAP_NEVER);

    /* the streaming reader on a slice of rows */
    if (ok && h.rows > 1) {
        mha_alloc_ctx a;
        mha_alloc_ctx_init(&a, NULL);
        npy_reader *r = NULL;
        st = npy_reader_open(&a, path, NPY_MMAP_NEVER, &r, &err);
        FUZZ_CHECK(st == MHA_OK, "npy_reader_open refuses a parsed file: %s", err.message);
        int64_t r0 = h.rows / 2, r1 = h.rows;
        size_t bytes = (size_t)(r1 - r0) * h.row_bytes;
        uint8_t *dst = malloc(bytes ? bytes : 1);
        FUZZ_CHECK(dst, "malloc");
        st = npy_reader_read_rows(r, r0, r1, MHA_DTYPE_UNDEFINED, dst, bytes, &err);
        FUZZ_CHECK(st == MHA_OK, "npy_reader_read_rows: %s", err.message);
        if (h.dtype != MHA_DTYPE_BOOL)
            FUZZ_CHECK(bytes == 0 || memcmp(dst, data + h.header_bytes + (size_t)r0 * h.row_bytes,
                                            bytes) == 0,
                       "rows [%lld, %lld) differ from the file", (long long)r0, (long long)r1);
        /* a range past the end is refused cleanly */
        st = npy_reader_read_rows(r, r0, r1 + 1, MHA_DTYPE_UNDEFINED, dst, bytes, &err);
        FUZZ_CHECK(st == MHA_ERR_INVALID_ARGUMENT, "rows past the end: %s", mha_status_name(st));
        free(dst);
        npy_reader_close(r);
    }
    FUZZ_CHECK(fuzz_lowest_free_fd() == fd_before, "descriptor leak");
    return 0;
}
