/* npy_api.c -- the public face of .npy files (mha/npy.h) over npy.c: the
 * allocator kept beside the reader or writer it serves, the internal
 * objects kept out of the public header (the header struct is shared). */
#include <stddef.h>
#include <string.h>

#include "mha/npy.h"
#include "npy.h"

MHA_API mha_status mha_npy_parse_header(const void *buf, size_t avail, uint64_t file_size,
                                        const char *what, mha_npy_header *out, mha_error *err) {
    if (!buf || !out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy header: NULL argument");
    return npy_parse_header(buf, avail, file_size, what ? what : "npy", out, err);
}

MHA_API size_t mha_npy_format_header(mha_dtype dtype, int rank, const int64_t *dims, void *buf,
                                     size_t cap) {
    if (!buf || rank < 0 || rank > MHA_MAX_RANK || (rank > 0 && !dims)) return 0;
    return npy_format_header(dtype, rank, dims, buf, cap);
}

struct mha_npy_reader {
    mha_alloc_ctx alloc; /* r's allocator: lives as long as r */
    npy_reader *r;
};

static npy_mmap_mode npy_api_mmap_mode(mha_mmap_mode m) {
    return m == MHA_MMAP_NEVER    ? NPY_MMAP_NEVER
           : m == MHA_MMAP_ALWAYS ? NPY_MMAP_ALWAYS
                                  : NPY_MMAP_AUTO;
}

MHA_API mha_status mha_npy_reader_open(const char *path, mha_mmap_mode mode,
                                       const mha_allocator *allocator, mha_npy_reader **out,
                                       mha_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy reader: NULL argument");
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, allocator);
    mha_npy_reader *r = mha_calloc(&a, 1, sizeof *r);
    if (!r) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    r->alloc = a;
    mha_status st = npy_reader_open(&r->alloc, path, npy_api_mmap_mode(mode), &r->r, err);
    if (st != MHA_OK) {
        mha_free(&a, r);
        return st;
    }
    *out = r;
    return MHA_OK;
}

MHA_API const mha_npy_header *mha_npy_reader_header(const mha_npy_reader *reader) {
    return reader ? npy_reader_header(reader->r) : NULL;
}

/* Both row readers: the arguments checked, then rows of axis 0 or 1. */
static mha_status npy_api_read_rows(mha_npy_reader *reader, int axis, int64_t r0, int64_t r1,
                                    mha_dtype want, void *dst, size_t dst_bytes, mha_error *err) {
    if (!reader || (!dst && r1 > r0))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy reader: NULL argument");
    return axis ? npy_reader_read_rows_axis1(reader->r, r0, r1, want, dst, dst_bytes, err)
                : npy_reader_read_rows(reader->r, r0, r1, want, dst, dst_bytes, err);
}

MHA_API mha_status mha_npy_reader_read_rows(mha_npy_reader *reader, int64_t r0, int64_t r1,
                                            mha_dtype want, void *dst, size_t dst_bytes,
                                            mha_error *err) {
    return npy_api_read_rows(reader, 0, r0, r1, want, dst, dst_bytes, err);
}

MHA_API const void *mha_npy_reader_mapped_rows(const mha_npy_reader *reader, int64_t r0,
                                               int64_t r1) {
    return reader ? npy_reader_mapped_rows(reader->r, r0, r1) : NULL;
}

MHA_API void mha_npy_reader_advise(mha_npy_reader *reader, int64_t r0, int64_t r1,
                                   mha_npy_advice advice) {
    if (reader)
        npy_reader_advise(reader->r, r0, r1,
                          advice == MHA_NPY_DONTNEED ? NPY_ADVICE_DONTNEED : NPY_ADVICE_WILLNEED);
}

MHA_API void mha_npy_reader_close(mha_npy_reader *reader) {
    if (!reader) return;
    mha_alloc_ctx a = reader->alloc;
    npy_reader_close(reader->r);
    mha_free(&a, reader);
}

struct mha_npy_writer {
    mha_alloc_ctx alloc; /* w's allocator: lives as long as w */
    npy_writer *w;
};

/* A public writer holding its allocator (its inner writer not started);
 * NULL when out of memory. */
static mha_npy_writer *npy_api_writer_new(const mha_allocator *allocator) {
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, allocator);
    mha_npy_writer *w = mha_calloc(&a, 1, sizeof *w);
    if (w) w->alloc = a;
    return w;
}

/* Hands w out when its inner writer started (st: how that went), else frees
 * it. */
static mha_status npy_api_writer_out(mha_npy_writer *w, mha_status st, mha_npy_writer **out) {
    if (st != MHA_OK) {
        mha_alloc_ctx a = w->alloc;
        mha_free(&a, w);
        return st;
    }
    *out = w;
    return MHA_OK;
}

MHA_API mha_status mha_npy_writer_begin(const char *path, mha_dtype dtype, int rank,
                                        const int64_t *dims, const mha_allocator *allocator,
                                        mha_npy_writer **out, mha_error *err) {
    if (out) *out = NULL;
    if (!path || !out || rank < 0 || rank > MHA_MAX_RANK || (rank > 0 && !dims))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy writer: bad argument");
    mha_npy_writer *w = npy_api_writer_new(allocator);
    if (!w) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    return npy_api_writer_out(w, npy_writer_begin(&w->alloc, path, dtype, rank, dims, &w->w, err),
                              out);
}

/* Both partial writers: the arguments checked, then npy_writer_begin_partial. */
static mha_status npy_api_begin_partial(const char *path, const char *partial_path, mha_dtype dtype,
                                        int rank, const int64_t *dims, int64_t shard_r0,
                                        int64_t shard_total, const char *run, int axis,
                                        int64_t rows_done, const mha_allocator *allocator,
                                        mha_npy_writer **out, mha_error *err) {
    if (out) *out = NULL;
    if (!path || !out || rank < 0 || rank > MHA_MAX_RANK || (rank > 0 && !dims) || rows_done < 0 ||
        (rows_done > 0 && !partial_path))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy writer: bad argument");
    mha_npy_writer *w = npy_api_writer_new(allocator);
    if (!w) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    return npy_api_writer_out(w,
                              npy_writer_begin_partial(&w->alloc, path, partial_path, dtype, rank,
                                                       dims, shard_r0, shard_total, run, axis,
                                                       rows_done, &w->w, err),
                              out);
}

MHA_API mha_status mha_npy_writer_begin_partial(const char *path, const char *partial_path,
                                                mha_dtype dtype, int rank, const int64_t *dims,
                                                int64_t shard_r0, int64_t shard_total,
                                                int64_t rows_done, const mha_allocator *allocator,
                                                mha_npy_writer **out, mha_error *err) {
    return npy_api_begin_partial(path, partial_path, dtype, rank, dims, shard_r0, shard_total, NULL,
                                 0, rows_done, allocator, out, err);
}

MHA_API const char *mha_npy_writer_partial_path(const mha_npy_writer *writer) {
    return writer ? npy_writer_partial_path(writer->w) : NULL;
}

MHA_API mha_status mha_npy_writer_sync(mha_npy_writer *writer, uint64_t *bytes, mha_error *err) {
    if (!writer) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy writer: NULL argument");
    return npy_writer_sync(writer->w, bytes, err);
}

MHA_API void mha_npy_writer_detach(mha_npy_writer *writer) {
    if (!writer) return;
    mha_alloc_ctx a = writer->alloc;
    npy_writer_detach(writer->w);
    mha_free(&a, writer);
}

MHA_API size_t mha_npy_format_header_shard(mha_dtype dtype, int rank, const int64_t *dims,
                                           int64_t r0, int64_t r1, int64_t total, void *buf,
                                           size_t cap) {
    if (!buf || rank < 0 || rank > MHA_MAX_RANK || (rank > 0 && !dims)) return 0;
    return npy_format_header_shard(dtype, rank, dims, r0, r1, total, NULL, 0, buf, cap);
}

MHA_API void mha_npy_shard_init(mha_npy_shard *shard) {
    if (!shard) return;
    memset(shard, 0, sizeof *shard);
    shard->struct_size = sizeof *shard;
}

/* The first version's size: every field up to run. */
#define NPY_SHARD_V0 (offsetof(mha_npy_shard, run) + sizeof(const char *))

MHA_API mha_status mha_npy_writer_begin_shard(const char *path, const char *partial_path,
                                              mha_dtype dtype, int rank, const int64_t *dims,
                                              const mha_npy_shard *shard, int64_t rows_done,
                                              const mha_allocator *allocator, mha_npy_writer **out,
                                              mha_error *err) {
    if (out) *out = NULL;
    if (!shard || shard->struct_size < NPY_SHARD_V0 || shard->total <= 0)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "npy writer: shard not initialised (mha_npy_shard_init) or of no rows");
    return npy_api_begin_partial(path, partial_path, dtype, rank, dims, shard->r0, shard->total,
                                 shard->run, 0, rows_done, allocator, out, err);
}

MHA_API size_t mha_npy_format_header_shard_run(mha_dtype dtype, int rank, const int64_t *dims,
                                               const mha_npy_shard *shard, void *buf, size_t cap) {
    if (!buf || rank < 1 || rank > MHA_MAX_RANK || !dims || !shard ||
        shard->struct_size < NPY_SHARD_V0)
        return 0;
    /* r0 + dims[0] formed only where it cannot overflow */
    if (dims[0] < 0 || shard->r0 < 0 || shard->total < 0 || shard->r0 > shard->total - dims[0])
        return 0;
    return npy_format_header_shard(dtype, rank, dims, shard->r0, shard->r0 + dims[0], shard->total,
                                   shard->run, 0, buf, cap);
}

MHA_API const char *mha_npy_reader_shard_run(const mha_npy_reader *reader) {
    return reader ? npy_reader_shard_run(reader->r) : NULL;
}

MHA_API mha_status mha_npy_writer_write_rows(mha_npy_writer *writer, const void *data, int64_t rows,
                                             mha_error *err) {
    if (!writer || (!data && rows > 0))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy writer: NULL argument");
    return npy_writer_write_rows(writer->w, data, rows, err);
}

MHA_API mha_status mha_npy_writer_commit(mha_npy_writer *writer, mha_error *err) {
    if (!writer) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "npy writer: NULL argument");
    mha_alloc_ctx a = writer->alloc;
    mha_status st = npy_writer_commit(writer->w, err);
    mha_free(&a, writer);
    return st;
}

MHA_API void mha_npy_writer_abort(mha_npy_writer *writer) {
    if (!writer) return;
    mha_alloc_ctx a = writer->alloc;
    npy_writer_abort(writer->w);
    mha_free(&a, writer);
}

MHA_API mha_status mha_npy_reader_read_rows_axis1(mha_npy_reader *reader, int64_t r0, int64_t r1,
                                                  mha_dtype want, void *dst, size_t dst_bytes,
                                                  mha_error *err) {
    return npy_api_read_rows(reader, 1, r0, r1, want, dst, dst_bytes, err);
}

MHA_API int mha_npy_reader_shard_axis(const mha_npy_reader *reader) {
    return reader ? npy_reader_shard_axis(reader->r) : 0;
}

MHA_API mha_status mha_npy_writer_begin_axis1(const char *path, const char *partial_path,
                                              mha_dtype dtype, int rank, const int64_t *dims,
                                              const mha_npy_shard *shard, int64_t rows_done,
                                              const mha_allocator *allocator, mha_npy_writer **out,
                                              mha_error *err) {
    if (out) *out = NULL;
    if (shard && (shard->struct_size < NPY_SHARD_V0 || shard->total <= 0))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "npy writer: shard not initialised (mha_npy_shard_init) or of no rows");
    return npy_api_begin_partial(path, partial_path, dtype, rank, dims, shard ? shard->r0 : 0,
                                 shard ? shard->total : 0, shard ? shard->run : NULL, 1, rows_done,
                                 allocator, out, err);
}

MHA_API size_t mha_npy_format_header_axis1(mha_dtype dtype, int rank, const int64_t *dims,
                                           const mha_npy_shard *shard, void *buf, size_t cap) {
    if (!buf || rank < 2 || rank > MHA_MAX_RANK || !dims ||
        (shard && shard->struct_size < NPY_SHARD_V0))
        return 0;
    if (!shard) return npy_format_header(dtype, rank, dims, buf, cap);
    return npy_format_header_shard(dtype, rank, dims, shard->r0, shard->r0 + dims[1], shard->total,
                                   shard->run, 1, buf, cap);
}
