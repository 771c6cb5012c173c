/* npy.h -- NumPy .npy files (npy.c): the header, checked against the file
 * on reading and formatted as numpy does on writing; the streaming reader
 * and writer a dataset larger than memory needs (open once, read rows
 * [r0, r1) of the outer dimension into a caller buffer, write output rows as
 * they are produced, commit at the end). Reading never trusts the file;
 * writing goes through the atomic writer (atomic_file.h).
 *
 * Thread-safety: the objects are not locked; use one per thread. */
#ifndef MHA_NPY_H
#define MHA_NPY_H

#include "atomic_file.h"
#include "common.h"
#include "convert.h"
#include "mha/npy.h"

/* Refuse .npy headers longer than this (numpy itself caps them at 10 KB). */
#define NPY_MAX_HEADER_BYTES MHA_NPY_MAX_HEADER_BYTES
/* Whole-file .npy reads map files with at least this many data bytes. */
#define NPY_MMAP_MIN_BYTES ((size_t)1 << 20)

/* ------------------------------------------------------------------------ */
/* .npy header                                                               */
/* ------------------------------------------------------------------------ */

/* What a header says (mha/npy.h): the public struct itself, so the reader
 * hands it out as it is. */
typedef mha_npy_header npy_header;

/* Parses the first `avail` bytes of a .npy file whose total size is
 * file_size and checks everything against file_size: magic, version,
 * header length (<= NPY_MAX_HEADER_BYTES and inside the file), the header
 * dict (descr, fortran_order False, shape), the dtype, the shape product
 * and that the data holds exactly what the shape needs.
 * `what` names the file in messages. MHA_ERR_DATA_FORMAT, MHA_ERR_DTYPE or
 * MHA_ERR_LIMIT otherwise. avail must cover the header (pass up to
 * 12 + NPY_MAX_HEADER_BYTES bytes). */
mha_status npy_parse_header(const void *buf, size_t avail, uint64_t file_size, const char *what,
                            npy_header *out, mha_error *err);
/* The same, copying a shard's run note ("; run TEXT" after its rows) into
 * run (MHA_NPY_SHARD_RUN_MAX bytes; "" without one) when not NULL; *axis
 * gets the axis a shard's rows lie along (1 for a note "... on axis 1",
 * checked against dims[1]; else 0). */
mha_status npy_parse_header_run(const void *buf, size_t avail, uint64_t file_size, const char *what,
                                npy_header *out, char *run, int *axis, mha_error *err);

/* Formats a version 1.0 (or 2.0 when needed) header for dtype and shape into
 * buf; total length padded to a multiple of 64 as numpy does. Returns the
 * length, or 0 when dtype has no .npy descr or cap is too small. */
size_t npy_format_header(mha_dtype dtype, int rank, const int64_t *dims, void *buf, size_t cap);

/* The same with a comment after the dict naming the rows a shard holds:
 * "{...}  # mha-shard rows R0:R1 of TOTAL", then "; run TEXT" when run is
 * neither NULL nor "" (the run it comes from: what `mha merge` compares).
 * dims[axis] must be r1 - r0, run pass npy_shard_run_ok; axis 1 (rows
 * along axis 1, a sequence-first file) adds " on axis 1" after TOTAL.
 * numpy ignores the comment; npy_parse_header fills is_shard and the
 * range. */
size_t npy_format_header_shard(mha_dtype dtype, int rank, const int64_t *dims, int64_t r0,
                               int64_t r1, int64_t total, const char *run, int axis, void *buf,
                               size_t cap);
/* Whether run may stand in a shard note: NULL, or printable ASCII without
 * '#' or quotes, no space at either end, under MHA_NPY_SHARD_RUN_MAX bytes. */
int npy_shard_run_ok(const char *run);

/* The numpy descr of a dtype ("<f4", "|b1", ...), NULL when none. */
const char *npy_dtype_descr(mha_dtype dtype);

/* ------------------------------------------------------------------------ */
/* .npy streaming reader                                                     */
/* ------------------------------------------------------------------------ */

typedef enum npy_mmap_mode {
    NPY_MMAP_AUTO = 0, /* map when the data is at least NPY_MMAP_MIN_BYTES */
    NPY_MMAP_NEVER,    /* plain pread() */
    NPY_MMAP_ALWAYS    /* map whenever the data is not empty */
} npy_mmap_mode;

typedef struct npy_reader npy_reader;

/* Opens a .npy file and checks its header against the file (see
 * npy_parse_header). Maps the data read-only (MAP_PRIVATE) per mode, and
 * falls back to pread() when mapping fails. */
mha_status npy_reader_open(const mha_alloc_ctx *a, const char *path, npy_mmap_mode mode,
                           npy_reader **out, mha_error *err);
const npy_header *npy_reader_header(const npy_reader *r);
/* A shard's run note ("" when the file has none). */
const char *npy_reader_shard_run(const npy_reader *r);
/* The axis a shard's rows lie along: 1 for "... on axis 1", else 0. */
int npy_reader_shard_axis(const npy_reader *r);
/* The mapped data when the reader mapped the file and the data starts at a
 * multiple of its element size, else NULL. Read-only; valid until
 * npy_reader_close. */
const void *npy_reader_mapped_data(const npy_reader *r);
/* Reads rows [r0, r1) of the outer dimension into dst (dst_bytes long),
 * converting each element to `want` (MHA_DTYPE_UNDEFINED = as stored; see
 * tensorfile_can_convert). Bool elements come out as 0 or 1.
 * MHA_ERR_INVALID_ARGUMENT for a bad range or short dst, MHA_ERR_DTYPE for
 * a conversion that does not exist, MHA_ERR_IO for read errors and files
 * that shrank since open. */
mha_status npy_reader_read_rows(npy_reader *r, int64_t r0, int64_t r1, mha_dtype want, void *dst,
                                size_t dst_bytes, mha_error *err);
/* Rows [r0, r1) of axis 1 under every index of axis 0 (a sequence-first
 * file [S, B, ...]: items of its batch) into dst as [dims[0], r1 - r0,
 * ...], converted as npy_reader_read_rows does: one run per index of axis
 * 0, so memory stays what dst holds. MHA_ERR_INVALID_ARGUMENT for a rank
 * under 2, a bad range or a short dst. */
mha_status npy_reader_read_rows_axis1(npy_reader *r, int64_t r0, int64_t r1, mha_dtype want,
                                      void *dst, size_t dst_bytes, mha_error *err);
/* Rows [r0, r1) as stored, straight from the mapping (zero-copy), or NULL
 * when the file is not mapped, its data is misaligned (as for
 * npy_reader_mapped_data) or the range is bad. Valid until close. */
const void *npy_reader_mapped_rows(const npy_reader *r, int64_t r0, int64_t r1);
/* Tells the kernel about rows [r0, r1): NPY_ADVICE_WILLNEED starts reading
 * them in the background (the next chunk while this one computes);
 * NPY_ADVICE_DONTNEED drops their pages from this process (a chunk done
 * with), so a mapped dataset costs no resident memory beyond the chunks in
 * flight. Only a hint: errors are ignored. */
typedef enum npy_advice { NPY_ADVICE_WILLNEED, NPY_ADVICE_DONTNEED } npy_advice;
void npy_reader_advise(npy_reader *r, int64_t r0, int64_t r1, npy_advice advice);
void npy_reader_close(npy_reader *r); /* accepts NULL */

/* ------------------------------------------------------------------------ */
/* .npy streaming writer                                                     */
/* ------------------------------------------------------------------------ */

typedef struct npy_writer npy_writer;

/* Starts an atomic .npy file of the given dtype and shape. dims[0] rows are
 * expected before commit (1 for rank 0). */
mha_status npy_writer_begin(const mha_alloc_ctx *a, const char *path, mha_dtype dtype, int rank,
                            const int64_t *dims, npy_writer **out, mha_error *err);
/* Appends `rows` rows (rows * row_bytes bytes of `data`). Writing more rows
 * than the shape has is refused. */
mha_status npy_writer_write_rows(npy_writer *w, const void *data, int64_t rows, mha_error *err);
/* Resumable writer (dataset runs): rows go to a partial file beside path
 * (see atomic_file_begin_partial), committed to path at the end. With
 * partial_path = NULL and rows_done = 0 it starts afresh in a new partial
 * file (npy_writer_partial_path names it, for the checkpoint); with the
 * path of the partial file an interrupted run left and rows_done > 0 it
 * reopens that file, checks that its header is exactly the one this shape
 * (and shard note) gives and that it holds at least rows_done rows,
 * truncates it to rows_done rows and appends from there. shard_total > 0
 * writes the shard note of rows [shard_r0, shard_r0 + dims[0]), with the
 * run note shard_run (NULL: none; see npy_format_header_shard); 0 writes a
 * plain header. axis 1: the rows are items of axis 1 (dims[1] of them; a
 * sequence-first file [S, B, ...]); each write gives [dims[0], rows, ...]
 * and lands in place (pwrite), the file has its full size from the start,
 * a resume keeps it all and writes on after rows_done; not for streams. */
mha_status npy_writer_begin_partial(const mha_alloc_ctx *a, const char *path,
                                    const char *partial_path, mha_dtype dtype, int rank,
                                    const int64_t *dims, int64_t shard_r0, int64_t shard_total,
                                    const char *shard_run, int axis, int64_t rows_done,
                                    npy_writer **out, mha_error *err);
/* The partial file being written (NULL when path is a stream). */
const char *npy_writer_partial_path(const npy_writer *w);
/* fsyncs what was written; *bytes (may be NULL) gets the file's length,
 * header included: what a checkpoint records. */
mha_status npy_writer_sync(npy_writer *w, uint64_t *bytes, mha_error *err);
int64_t npy_writer_rows_written(const npy_writer *w);
/* Closes the file, keeps the partial file, frees w. Accepts NULL. */
void npy_writer_detach(npy_writer *w);
/* Checks every row was written, then commits the file (see
 * atomic_file_commit). Frees w either way. */
mha_status npy_writer_commit(npy_writer *w, mha_error *err);
/* Drops the temporary file and frees w. Accepts NULL. */
void npy_writer_abort(npy_writer *w);

#endif
