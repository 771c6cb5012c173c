/* tensorfile.c -- whole tensors in files (.npy through npy.c, ONNX
 * TensorProto .pb through the ONNX importer's one tensor loader), their
 * elements converted to the model's dtypes (convert.c). Every output goes
 * through the atomic writer (atomic_file.c). */
#define _GNU_SOURCE
#include "tensorfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx_ir.h"

/* ------------------------------------------------------------------------ */
/* whole tensors                                                             */
/* ------------------------------------------------------------------------ */

tensorfile_format tensorfile_format_of(const char *path) {
    size_t n = strlen(path);
    if (n >= 4 && strcasecmp(path + n - 4, ".npy") == 0) return TENSORFILE_NPY;
    if (n >= 3 && strcasecmp(path + n - 3, ".pb") == 0) return TENSORFILE_PB;
    return TENSORFILE_UNKNOWN;
}

tensorfile_format tensorfile_output_format(const char *path) {
    tensorfile_format f = tensorfile_format_of(path);
    if (f != TENSORFILE_UNKNOWN) return f;
    if (atomic_dest_descriptor(path) >= 0) return TENSORFILE_NPY;
    struct stat sb;
    if (stat(path, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode)))
        return TENSORFILE_NPY;
    return TENSORFILE_UNKNOWN;
}

mha_status tensorfile_check_output(const char *path, mha_dtype dtype, int rank,
                                   const int64_t *shape, mha_error *err) {
    tensorfile_format fmt = tensorfile_output_format(path);
    if (fmt == TENSORFILE_UNKNOWN)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: unknown tensor file type (expected .npy or .pb)", path);
    if (fmt == TENSORFILE_NPY && !npy_dtype_descr(dtype))
        return mha_fail(err, MHA_ERR_DTYPE, "%s: %s cannot be written as .npy", path,
                        mha_dtype_name(dtype));
    uint64_t bytes = mha_dtype_size(dtype);
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return MHA_OK; /* not known yet: checked when written */
        if (__builtin_mul_overflow(bytes, (uint64_t)shape[i], &bytes)) bytes = UINT64_MAX;
    }
    if (fmt == TENSORFILE_PB && bytes > TENSORFILE_PB_MAX_DATA_BYTES)
        return mha_fail(err, MHA_ERR_LIMIT,
                        "%s: %llu bytes of %s exceed the 2 GiB a .pb file (one TensorProto) can "
                        "hold; write it as .npy",
                        path, (unsigned long long)bytes, mha_dtype_name(dtype));
    return MHA_OK;
}

void tensorfile_free(tensorfile *tf) {
    if (!tf) return;
    const mha_alloc_ctx *a = tf->alloc;
    npy_reader_close(tf->reader);
    tensor_free(tf->pb);
    mha_free(a, tf->owned);
    mha_free(a, tf->name);
    mha_free(a, tf);
}

static mha_status tensorfile_read_npy(tensorfile *tf, const char *path,
                                      const tensorfile_read_options *o, mha_error *err) {
    npy_reader *r;
    mha_status st = npy_reader_open(tf->alloc, path, o->mmap_mode, &r, err);
    if (st != MHA_OK) return st;
    const npy_header hdr = *npy_reader_header(r); /* outlives the reader */
    const npy_header *h = &hdr;
    mha_dtype want = o->want == MHA_DTYPE_UNDEFINED ? h->dtype : o->want;
    if (!tensorfile_can_convert(h->dtype, want)) {
        npy_reader_close(r);
        return mha_fail(err, MHA_ERR_DTYPE, "%s: holds %s data but %s is needed", path,
                        mha_dtype_name(h->dtype), mha_dtype_name(want));
    }
    tf->t.dtype = want;
    tf->t.rank = h->rank;
    for (int i = 0; i < h->rank; i++)
        tf->t.shape[i] = h->dims[i];

    /* zero copy: the mapping already holds the elements as wanted (bools
     * are copied so that they come out 0 / 1) */
    const void *mapped = npy_reader_mapped_data(r);
    if (mapped && want == h->dtype && want != MHA_DTYPE_BOOL &&
        (uintptr_t)mapped % mha_dtype_size(want) == 0) {
        tf->reader = r;
        tf->t.data = (void *)(uintptr_t)mapped; /* read-only: mha_run only reads inputs */
        return MHA_OK;
    }
    size_t n = h->data_bytes / mha_dtype_size(h->dtype), bytes;
    if (!mha_mul_size(n, mha_dtype_size(want), &bytes)) {
        npy_reader_close(r);
        return mha_fail(err, MHA_ERR_LIMIT, "%s: too large", path);
    }
    tf->owned = mha_malloc(tf->alloc, bytes ? bytes : 1);
    if (!tf->owned) {
        npy_reader_close(r);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory for %zu bytes", path, bytes);
    }
    st = npy_reader_read_rows(r, 0, h->rows, want, tf->owned, bytes, err);
    npy_reader_close(r);
    tf->t.data = tf->owned;
    return st;
}

/* Reads a whole regular file of at most max_bytes into an mha_malloc'd
 * buffer, size checked before the allocation. */
static mha_status tensorfile_slurp(const mha_alloc_ctx *a, const char *path, uint64_t max_bytes,
                                   void **data, size_t *size, mha_error *err) {
    *data = NULL;
    *size = 0;
    /* O_NONBLOCK: a FIFO given as an input must not hang the open; it is
     * refused as not a regular file after the fstat. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return mha_fail(err, MHA_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    mha_status st = MHA_OK;
    if (fstat(fd, &sb) != 0)
        st = mha_fail(err, MHA_ERR_IO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = mha_fail(err, MHA_ERR_IO, "%s: not a regular file", path);
    else if ((uint64_t)sb.st_size > max_bytes)
        st = mha_fail(err, MHA_ERR_LIMIT, "%s: file of %llu bytes exceeds the %llu-byte limit",
                      path, (unsigned long long)sb.st_size, (unsigned long long)max_bytes);
    if (st != MHA_OK) {
        close(fd);
        return st;
    }
    size_t n = (size_t)sb.st_size;
    unsigned char *buf = mha_malloc(a, n ? n : 1);
    if (!buf) {
        close(fd);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            st = r < 0
                     ? mha_fail(err, MHA_ERR_IO, "%s: read failed: %s", path, strerror(errno))
                     : mha_fail(err, MHA_ERR_IO, "%s: file became shorter while being read", path);
            mha_free(a, buf);
            close(fd);
            return st;
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = n;
    return MHA_OK;
}

static mha_status tensorfile_read_pb(tensorfile *tf, const char *path,
                                     const tensorfile_read_options *o, mha_error *err) {
    void *buf;
    size_t size;
    uint64_t max = o->max_pb_bytes ? o->max_pb_bytes : ((uint64_t)4 << 30);
    mha_status st = tensorfile_slurp(tf->alloc, path, max, &buf, &size, err);
    if (st != MHA_OK) return st;
    char *name = NULL;
    st = ir_load_tensor_proto(tf->alloc, buf, size, path, &tf->pb, &name, err);
    mha_free(tf->alloc, buf);
    if (st != MHA_OK) return st;
    mha_free(tf->alloc, tf->name);
    tf->name = name;
    const tensor *p = tf->pb;
    mha_dtype want = o->want == MHA_DTYPE_UNDEFINED ? p->dtype : o->want;
    if (!tensorfile_can_convert(p->dtype, want))
        return mha_fail(err, MHA_ERR_DTYPE, "%s: holds %s data but %s is needed", path,
                        mha_dtype_name(p->dtype), mha_dtype_name(want));
    tf->t.dtype = want;
    tf->t.rank = p->rank;
    for (int i = 0; i < p->rank; i++)
        tf->t.shape[i] = p->dims[i];
    size_t n = p->nbytes / mha_dtype_size(p->dtype);
    if (want == p->dtype && want != MHA_DTYPE_BOOL) {
        tf->t.data = p->data;
        return MHA_OK;
    }
    size_t bytes = n * mha_dtype_size(want); /* n elements of <= 8 bytes exist already */
    tf->owned = mha_malloc(tf->alloc, bytes ? bytes : 1);
    if (!tf->owned)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory for %zu bytes", path, bytes);
    tensorfile_convert(p->data, p->dtype, tf->owned, want, n);
    tf->t.data = tf->owned;
    return MHA_OK;
}

mha_status tensorfile_read(const mha_alloc_ctx *a, const char *path,
                           const tensorfile_read_options *opts, tensorfile **out, mha_error *err) {
    *out = NULL;
    tensorfile_read_options o = {0};
    if (opts) o = *opts;
    tensorfile_format fmt = tensorfile_format_of(path);
    if (fmt == TENSORFILE_UNKNOWN)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: unknown tensor file type (expected .npy or .pb)", path);
    tensorfile *tf = mha_calloc(a, 1, sizeof *tf);
    if (tf) {
        tf->alloc = a;
        tf->name = mha_strdup(a, "");
    }
    if (!tf || !tf->name) {
        tensorfile_free(tf);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    mha_status st = fmt == TENSORFILE_NPY ? tensorfile_read_npy(tf, path, &o, err)
                                          : tensorfile_read_pb(tf, path, &o, err);
    if (st != MHA_OK) {
        tensorfile_free(tf);
        return st;
    }
    *out = tf;
    return MHA_OK;
}

mha_status tensorfile_write_pending(const mha_alloc_ctx *a, const char *path, const mha_tensor *t,
                                    const char *name, atomic_file **pending, mha_error *err) {
    *pending = NULL;
    tensorfile_format fmt = tensorfile_output_format(path);
    if (fmt == TENSORFILE_UNKNOWN)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: unknown tensor file type (expected .npy or .pb)", path);
    int64_t numel = mha_tensor_numel(t);
    size_t esize = mha_dtype_size(t->dtype), bytes;
    if (numel < 0 || esize == 0 || !mha_mul_size((size_t)numel, esize, &bytes))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: invalid tensor to write", path);

    if (fmt == TENSORFILE_NPY) {
        unsigned char head[640];
        size_t hn = npy_format_header(t->dtype, t->rank, t->shape, head, sizeof head);
        if (hn == 0)
            return mha_fail(err, MHA_ERR_DTYPE, "%s: %s cannot be written as .npy", path,
                            mha_dtype_name(t->dtype));
        atomic_file *f;
        mha_status st = atomic_file_begin(a, path, &f, err);
        if (st == MHA_OK) st = atomic_file_write(f, head, hn, err);
        if (st == MHA_OK) st = atomic_file_write(f, t->data, bytes, err);
        if (st != MHA_OK) {
            if (f) atomic_file_abort(f);
            return st;
        }
        *pending = f;
        return MHA_OK;
    }

    /* .pb: the ONNX importer serializes; wrap the caller's data without
     * copying it */
    tensor view = {0};
    view.dtype = t->dtype;
    view.rank = t->rank;
    for (int i = 0; i < t->rank; i++)
        view.dims[i] = t->shape[i];
    view.data = t->data;
    view.nbytes = bytes;
    view.owns_data = 0;
    view.alloc = a;
    void *buf = NULL;
    size_t size = 0;
    mha_status st = ir_save_tensor_proto(a, &view, name ? name : "", &buf, &size, err);
    if (st != MHA_OK) {
        mha_error_prefix(err, "%s", path);
        return st;
    }
    atomic_file *f;
    st = atomic_file_begin(a, path, &f, err);
    if (st == MHA_OK) {
        st = atomic_file_write(f, buf, size, err);
        if (st != MHA_OK)
            atomic_file_abort(f);
        else
            *pending = f;
    }
    mha_free(a, buf);
    return st;
}

mha_status tensorfile_write(const mha_alloc_ctx *a, const char *path, const mha_tensor *t,
                            const char *name, mha_error *err) {
    atomic_file *f;
    mha_status st = tensorfile_write_pending(a, path, t, name, &f, err);
    if (st != MHA_OK) return st;
    return atomic_file_commit(f, err);
}
