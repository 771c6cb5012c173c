/* mha/npy.h -- NumPy .npy files row by row, as mha's dataset commands
 * stream them: the header (checked against the file on reading, formatted
 * as numpy does on writing), a reader of rows [r0, r1) of the outer
 * dimension, and an atomic writer that appends rows and publishes the file
 * whole at the end. Part of libmha's public API (see mha.h; whole tensors
 * are in mha/tensor_file.h).
 *
 * The format (numpy/lib/format.py, versions 1.0, 2.0, 3.0): "\x93NUMPY",
 * major, minor, the header length (u16 LE for 1.x, u32 LE after), a Python
 * dict literal ({'descr': '<f4', 'fortran_order': False, 'shape': (3, 10),
 * }) padded with spaces and '\n', then the raw C-order data.
 *
 * Thread-safety: readers and writers are not locked; use each from one
 * thread at a time. */
#ifndef MHA_PUBLIC_NPY_H
#define MHA_PUBLIC_NPY_H

#include "mha/mha.h"
#include "mha/tensor_file.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Headers longer than this are refused (numpy itself caps them at 10 KB). */
#define MHA_NPY_MAX_HEADER_BYTES 10240

/** What a .npy header says, checked against the file's size. */
typedef struct mha_npy_header {
    int version_major; /* 1, 2 or 3 */
    mha_dtype dtype;   /* as stored */
    int rank;          /* 0..MHA_MAX_RANK */
    int64_t dims[MHA_MAX_RANK];
    size_t header_bytes; /* magic + length field + header text: offset of the data */
    size_t data_bytes;   /* numel * element size */
    int64_t rows;        /* dims[0], or 1 for rank 0 */
    size_t row_bytes;    /* data_bytes / rows */
    /* A shard of a split run (mha run --shard): the file holds rows
     * [shard_r0, shard_r1) of a dataset of shard_total rows, noted in a
     * comment after the dict (numpy reads it as a plain array). */
    int is_shard;
    int64_t shard_r0, shard_r1, shard_total;
} mha_npy_header;

/** Parses the first `avail` bytes of a .npy file whose total size is
 *  file_size, and checks everything against file_size: magic, version,
 *  header length, the dict (descr, fortran_order False, shape), the dtype,
 *  and that the data holds exactly what the shape needs. `what` names the
 *  file in messages. MHA_ERR_DATA_FORMAT, MHA_ERR_DTYPE or MHA_ERR_LIMIT
 *  otherwise. avail must cover the header (up to 12 +
 *  MHA_NPY_MAX_HEADER_BYTES bytes). */
MHA_API mha_status mha_npy_parse_header(const void *buf, size_t avail, uint64_t file_size,
                                        const char *what, mha_npy_header *out, mha_error *err);
/** Formats a version 1.0 (or 2.0 when needed) header for dtype and shape
 *  into buf, padded to a multiple of 64 bytes as numpy does. Returns its
 *  length, or 0 when the dtype has no .npy descr or cap is too small. */
MHA_API size_t mha_npy_format_header(mha_dtype dtype, int rank, const int64_t *dims, void *buf,
                                     size_t cap);

/** Reads rows of a .npy file. */
typedef struct mha_npy_reader mha_npy_reader;

/** Opens path and checks its header against the file. Maps the data
 *  read-only per mode, falling back to plain reads when mapping fails.
 *  allocator: NULL = malloc, used until close. MHA_ERR_IO, and the errors
 *  of mha_npy_parse_header. *out is NULL on failure. */
MHA_API mha_status mha_npy_reader_open(const char *path, mha_mmap_mode mode,
                                       const mha_allocator *allocator, mha_npy_reader **out,
                                       mha_error *err);
/** The file's header. NULL for a NULL reader. */
MHA_API const mha_npy_header *mha_npy_reader_header(const mha_npy_reader *reader);
/** Reads rows [r0, r1) of the outer dimension into dst (dst_bytes long),
 *  converting each element to `want` (MHA_DTYPE_UNDEFINED = as stored; see
 *  mha_dtype_can_convert). MHA_ERR_INVALID_ARGUMENT for a bad range or a
 *  short dst, MHA_ERR_DTYPE for a conversion that does not exist, MHA_ERR_IO
 *  for read errors and files that shrank since open. */
MHA_API mha_status mha_npy_reader_read_rows(mha_npy_reader *reader, int64_t r0, int64_t r1,
                                            mha_dtype want, void *dst, size_t dst_bytes,
                                            mha_error *err);
/** Rows [r0, r1) in place in a mapped file (read-only, as stored: no
 *  conversion), valid until close: for reading without a copy. NULL when
 *  the file is read by plain reads (see mha_mmap_mode; a mapping whose data
 *  is misaligned for its dtype counts as not mapped) or the range is bad.
 *  mapped_rows(reader, 0, 0) says whether the file is mapped at all. */
MHA_API const void *mha_npy_reader_mapped_rows(const mha_npy_reader *reader, int64_t r0,
                                               int64_t r1);

/** What a streaming reader will do with rows next (a hint; never fails). */
typedef enum mha_npy_advice {
    MHA_NPY_WILLNEED = 0, /* read ahead: the rows are wanted soon */
    MHA_NPY_DONTNEED      /* drop from the page cache: the rows are done */
} mha_npy_advice;

/** Passes the hint for rows [r0, r1) to the kernel (madvise on a mapping,
 *  posix_fadvise otherwise). Out-of-range rows are ignored. */
MHA_API void mha_npy_reader_advise(mha_npy_reader *reader, int64_t r0, int64_t r1,
                                   mha_npy_advice advice);

/** Closes the file and frees the reader. Accepts NULL. */
MHA_API void mha_npy_reader_close(mha_npy_reader *reader);

/** Writes a .npy file row by row, atomically (see mha/tensor_file.h). */
typedef struct mha_npy_writer mha_npy_writer;

/** Starts a .npy file of the given dtype and shape at path; dims[0] rows
 *  (1 for rank 0) are expected before commit. allocator: NULL = malloc,
 *  used until commit or abort. MHA_ERR_DTYPE (no .npy descr), MHA_ERR_IO.
 *  *out is NULL on failure. */
MHA_API mha_status mha_npy_writer_begin(const char *path, mha_dtype dtype, int rank,
                                        const int64_t *dims, const mha_allocator *allocator,
                                        mha_npy_writer **out, mha_error *err);
/** Appends `rows` rows (rows * the row size bytes of data). More rows than
 *  the shape has are refused (MHA_ERR_INVALID_ARGUMENT). */
MHA_API mha_status mha_npy_writer_write_rows(mha_npy_writer *writer, const void *data, int64_t rows,
                                             mha_error *err);
/** Checks that every row was written, then publishes the file in place.
 *  Frees the writer either way. */
MHA_API mha_status mha_npy_writer_commit(mha_npy_writer *writer, mha_error *err);
/** Removes the unfinished file and frees the writer. Accepts NULL. */
MHA_API void mha_npy_writer_abort(mha_npy_writer *writer);

/* Resumable writing, for runs that keep a checkpoint (mha run). The rows
 * go to "<path>.partial.XXXXXX" beside path's target, made exclusively;
 * sync makes them durable and says how many bytes are, so a checkpoint
 * written after it never counts rows the file lacks; after a crash a run
 * reopens that partial file at the rows its checkpoint counts and appends
 * from there; commit renames it into place. */

/** Starts (partial_path NULL) or resumes (partial_path: the file a
 *  checkpoint named, cut back to rows_done rows, which it must hold) a
 *  .npy of the given dtype and shape at path. A shard of a split run
 *  (shard_total > 0) holds rows [shard_r0, shard_r0 + dims[0]) of
 *  shard_total and says so in its header (mha_npy_header.is_shard).
 *  Errors as mha_npy_writer_begin, and MHA_ERR_IO naming partial_path when
 *  it is not a regular file of this run's header and at least rows_done
 *  rows. *out is NULL on failure. */
MHA_API mha_status mha_npy_writer_begin_partial(const char *path, const char *partial_path,
                                                mha_dtype dtype, int rank, const int64_t *dims,
                                                int64_t shard_r0, int64_t shard_total,
                                                int64_t rows_done, const mha_allocator *allocator,
                                                mha_npy_writer **out, mha_error *err);
/** The partial file being written (for a checkpoint and for messages);
 *  NULL when path is a stream, and for a NULL writer. */
MHA_API const char *mha_npy_writer_partial_path(const mha_npy_writer *writer);
/** fsyncs what was written and gives its size in *bytes (may be NULL;
 *  header included): what a checkpoint records. MHA_ERR_IO naming the
 *  partial file. */
MHA_API mha_status mha_npy_writer_sync(mha_npy_writer *writer, uint64_t *bytes, mha_error *err);
/** Frees the writer and leaves its partial file where it is, for a later
 *  run to resume (a stream is just closed). Accepts NULL. */
MHA_API void mha_npy_writer_detach(mha_npy_writer *writer);

/** mha_npy_format_header for a shard: rows [r0, r1) of total, noted after
 *  the dict (see mha_npy_header.is_shard). 0 as mha_npy_format_header. */
MHA_API size_t mha_npy_format_header_shard(mha_dtype dtype, int rank, const int64_t *dims,
                                           int64_t r0, int64_t r1, int64_t total, void *buf,
                                           size_t cap);

/* ---- the run a shard comes from (appended) ----
 * A shard file may name the run that wrote it after its rows:
 * "# mha-shard rows R0:R1 of TOTAL; run TEXT". `mha run --shard` writes
 * "shard K/N; model HASH; precision P; data HASH; lengths HASH; output I"
 * and `mha merge` refuses shards whose runs differ, naming what differs
 * (docs/DATASETS.md). Files without it read as before. */

/** Bytes of a run note, its terminating NUL included, at most. */
#define MHA_NPY_SHARD_RUN_MAX 240

/** Where a shard lies and the run it comes from. Initialise with
 *  mha_npy_shard_init; later versions append fields, read only when
 *  struct_size covers them. */
typedef struct mha_npy_shard {
    uint32_t struct_size; /* set by mha_npy_shard_init */
    int64_t r0;           /* the dataset row of the file's first row */
    int64_t total;        /* rows of the whole dataset (> 0) */
    /* NULL / "" (no run note) or printable ASCII without '#' or quotes,
     * no space at either end, under MHA_NPY_SHARD_RUN_MAX bytes */
    const char *run;
} mha_npy_shard;

MHA_API void mha_npy_shard_init(mha_npy_shard *shard);
/** mha_npy_writer_begin_partial for a shard with its run note.
 *  MHA_ERR_INVALID_ARGUMENT for an uninitialised struct or a note that
 *  cannot stand in the header. */
MHA_API mha_status mha_npy_writer_begin_shard(const char *path, const char *partial_path,
                                              mha_dtype dtype, int rank, const int64_t *dims,
                                              const mha_npy_shard *shard, int64_t rows_done,
                                              const mha_allocator *allocator, mha_npy_writer **out,
                                              mha_error *err);
/** The header mha_npy_writer_begin_shard writes (rows [r0, r0 + dims[0])
 *  of total, and the run note). 0 as mha_npy_format_header, and for a bad
 *  shard. */
MHA_API size_t mha_npy_format_header_shard_run(mha_dtype dtype, int rank, const int64_t *dims,
                                               const mha_npy_shard *shard, void *buf, size_t cap);
/** A shard file's run note ("" when it has none: not a shard, or written
 *  without one); lives as long as the reader. NULL for a NULL reader. */
MHA_API const char *mha_npy_reader_shard_run(const mha_npy_reader *reader);

/* ---- rows along axis 1 (appended) ----
 * A sequence-first file [S, B, ...] (a model whose batch is axis 1,
 * mha_model_layout MHA_LAYOUT_SEQ_FIRST) holds its B items along axis 1:
 * read and written in chunks of them, with bounded memory. A shard of such
 * a file notes "# mha-shard rows R0:R1 of TOTAL on axis 1" (R1 - R0 =
 * dims[1]); mha_npy_header.shard_r0 / _r1 / _total hold the range as for
 * axis 0. */

/** Reads items [r0, r1) of axis 1 under every index of axis 0 into dst as
 *  [dims[0], r1 - r0, dims[2], ...], converted as mha_npy_reader_read_rows
 *  does (one strided read per index of axis 0). MHA_ERR_INVALID_ARGUMENT
 *  for a file of rank under 2, a bad range or a short dst. */
MHA_API mha_status mha_npy_reader_read_rows_axis1(mha_npy_reader *reader, int64_t r0, int64_t r1,
                                                  mha_dtype want, void *dst, size_t dst_bytes,
                                                  mha_error *err);
/** The axis a shard file's rows lie along: 1 when its note says "on axis
 *  1", else 0 (a plain file too). 0 for a NULL reader. */
MHA_API int mha_npy_reader_shard_axis(const mha_npy_reader *reader);
/** mha_npy_writer_begin_partial (shard NULL) or _begin_shard whose rows
 *  are the dims[1] items of axis 1: each mha_npy_writer_write_rows(rows)
 *  gives [dims[0], rows, dims[2], ...] and puts every index of axis 0's
 *  part in place. The partial file has its full size from the start; a
 *  resume (rows_done > 0) keeps it and writes on after rows_done. A stream
 *  (standard output, a FIFO, a device) is refused (MHA_ERR_INVALID_ARGUMENT). */
MHA_API mha_status mha_npy_writer_begin_axis1(const char *path, const char *partial_path,
                                              mha_dtype dtype, int rank, const int64_t *dims,
                                              const mha_npy_shard *shard, int64_t rows_done,
                                              const mha_allocator *allocator, mha_npy_writer **out,
                                              mha_error *err);
/** The header mha_npy_writer_begin_axis1 writes: plain (shard NULL) or
 *  with the note of items [r0, r0 + dims[1]) of total on axis 1. 0 as
 *  mha_npy_format_header, and for a rank under 2 or a bad shard. */
MHA_API size_t mha_npy_format_header_axis1(mha_dtype dtype, int rank, const int64_t *dims,
                                           const mha_npy_shard *shard, void *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
