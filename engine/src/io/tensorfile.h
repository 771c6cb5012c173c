/* tensorfile.h -- tensors in files: NumPy .npy (read whole or by row
 * chunks, written whole or row by row) and ONNX TensorProto .pb (the ONNX
 * test-data format). Every output file goes through the atomic writer of
 * atomic_file.h.
 *
 * Reading never trusts the file: every size in a header is checked against
 * the file's real size before anything is allocated, and every message
 * names the file and the problem ("x.npy: header longer than the file").
 *
 * Writing is atomic: data goes to a temporary in the destination folder,
 * is fsync'ed and then renamed into place, so a failed or interrupted run
 * never leaves a file that looks complete (standard output, FIFOs and
 * devices are written directly).
 *
 * The streaming half (npy_reader / npy_writer) is what a dataset larger than
 * memory needs: open once, read rows [r0, r1) of the outer dimension into a
 * caller buffer, write output rows as they are produced, commit at the end.
 *
 * Thread-safety: the objects are not locked; use one per thread. Reading
 * the same file from several readers is fine. */
#ifndef MHA_TENSORFILE_H
#define MHA_TENSORFILE_H

#include "atomic_file.h"
#include "common.h"
#include "tensor.h"

/* Refuse .npy headers longer than this (numpy itself caps them at 10 KB). */
#define NPY_MAX_HEADER_BYTES 10240
/* Whole-file .npy reads map files with at least this many data bytes. */
#define NPY_MMAP_MIN_BYTES ((size_t)1 << 20)

/* ------------------------------------------------------------------------ */
/* .npy header                                                               */
/* ------------------------------------------------------------------------ */

typedef struct npy_header {
    int version_major; /* 1, 2 or 3 */
    mha_dtype dtype;   /* as stored */
    int rank;          /* 0..MHA_MAX_RANK */
    int64_t dims[MHA_MAX_RANK];
    size_t header_bytes; /* magic + length field + header text: offset of the data */
    size_t data_bytes;   /* numel * element size */
    int64_t rows;        /* dims[0], or 1 for rank 0 */
    size_t row_bytes;    /* data_bytes / rows (elements of one row * size) */
    /* A shard of a split run (see npy_format_header_shard): the file holds
     * rows [shard_r0, shard_r1) of a dataset of shard_total rows. numpy
     * reads such a file as a plain array (the note is a header comment). */
    int is_shard;
    int64_t shard_r0, shard_r1, shard_total;
} npy_header;

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

/* Formats a version 1.0 (or 2.0 when needed) header for dtype and shape into
 * buf; total length padded to a multiple of 64 as numpy does. Returns the
 * length, or 0 when dtype has no .npy descr or cap is too small. */
size_t npy_format_header(mha_dtype dtype, int rank, const int64_t *dims, void *buf, size_t cap);

/* The same with a comment after the dict naming the rows a shard holds:
 * "{...}  # mha-shard rows R0:R1 of TOTAL". dims[0] must be r1 - r0. numpy
 * ignores the comment; npy_parse_header fills is_shard and the range. */
size_t npy_format_header_shard(mha_dtype dtype, int rank, const int64_t *dims, int64_t r0,
                               int64_t r1, int64_t total, void *buf, size_t cap);

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
 * writes the shard note of rows [shard_r0, shard_r0 + dims[0]) (see
 * npy_format_header_shard); 0 writes a plain header. */
mha_status npy_writer_begin_partial(const mha_alloc_ctx *a, const char *path,
                                    const char *partial_path, mha_dtype dtype, int rank,
                                    const int64_t *dims, int64_t shard_r0, int64_t shard_total,
                                    int64_t rows_done, npy_writer **out, mha_error *err);
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

/* ------------------------------------------------------------------------ */
/* Whole tensors, by file extension                                          */
/* ------------------------------------------------------------------------ */

typedef enum tensorfile_format {
    TENSORFILE_UNKNOWN = 0,
    TENSORFILE_NPY, /* *.npy */
    TENSORFILE_PB   /* *.pb: one serialized onnx.TensorProto */
} tensorfile_format;

/* By extension, case-insensitive. */
tensorfile_format tensorfile_format_of(const char *path);
/* The format an output is written in: by extension; an open descriptor
 * ("-", /dev/stdout, /dev/fd/N) and a FIFO or character device (/dev/null)
 * without a known extension take .npy. */
tensorfile_format tensorfile_output_format(const char *path);

/* The data of a .pb output is one TensorProto field: at most 2 GiB - 1. */
#define TENSORFILE_PB_MAX_DATA_BYTES ((uint64_t)2147483647)

/* Checks, before anything is computed, that a tensor of this dtype and
 * shape can be written to path: a known output format, a dtype the format
 * stores, and for .pb data within TENSORFILE_PB_MAX_DATA_BYTES
 * (MHA_ERR_LIMIT naming the file, the size and the way out). */
mha_status tensorfile_check_output(const char *path, mha_dtype dtype, int rank,
                                   const int64_t *shape, mha_error *err);

/* Whether elements of dtype `from` can be converted to `to`: the same
 * dtype; any float type (float16/32/64, bfloat16) to float16/32/64; any
 * integer or bool to bool (nonzero = 1). */
int tensorfile_can_convert(mha_dtype from, mha_dtype to);
/* Converts n elements (see tensorfile_can_convert; the caller checked). */
void tensorfile_convert(const void *src, mha_dtype from, void *dst, mha_dtype to, size_t n);

/* A tensor read from a file. `t` is ready to hand to mha_run; its data may
 * be a read-only mapping of the file. */
typedef struct tensorfile {
    mha_tensor t;
    char *name; /* the TensorProto name; "" for .npy */
    /* private */
    const mha_alloc_ctx *alloc;
    void *owned;        /* mha_malloc'd data */
    npy_reader *reader; /* keeps a mapping alive (zero-copy) */
    tensor *pb;         /* a loaded .pb tensor */
} tensorfile;

typedef struct tensorfile_read_options {
    /* Convert the elements to this dtype (see tensorfile_can_convert);
     * MHA_DTYPE_UNDEFINED keeps what the file holds. A float file asked for
     * as float32 is converted; an impossible conversion is MHA_ERR_DTYPE
     * naming the file. */
    mha_dtype want;
    npy_mmap_mode mmap_mode; /* .npy only */
    uint64_t max_pb_bytes;   /* .pb files larger are refused; 0 = 4 GiB */
} tensorfile_read_options;

/* Reads a .npy or .pb file (by extension) completely. opts may be NULL. */
mha_status tensorfile_read(const mha_alloc_ctx *a, const char *path,
                           const tensorfile_read_options *opts, tensorfile **out, mha_error *err);
void tensorfile_free(tensorfile *tf); /* accepts NULL */

/* Writes t into a temporary beside path, by extension (.npy, or .pb with
 * the TensorProto name `name`), and hands back the unfinished file: the
 * caller commits it (atomic_file_commit) once every output is written, or
 * aborts it. Lets a command publish several outputs only when all of them
 * were written. */
mha_status tensorfile_write_pending(const mha_alloc_ctx *a, const char *path, const mha_tensor *t,
                                    const char *name, atomic_file **pending, mha_error *err);
/* The same, committed at once. */
mha_status tensorfile_write(const mha_alloc_ctx *a, const char *path, const mha_tensor *t,
                            const char *name, mha_error *err);

#endif
