/* tensorfile.h -- tensors in files: NumPy .npy (read whole, or by row
 * chunks and written row by row through npy.h) and ONNX TensorProto .pb
 * (the ONNX test-data format). Every output file goes through the atomic writer of
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
#include "convert.h"
#include "npy.h"
#include "tensor.h"

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
