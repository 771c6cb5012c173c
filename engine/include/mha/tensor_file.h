/* mha/tensor_file.h -- whole tensors in files, as the mha command reads
 * and writes them: NumPy .npy (versions 1 to 3, little-endian, C order)
 * and ONNX TensorProto .pb (the ONNX test-data format), chosen by the
 * file's extension. Part of libmha's public API (see mha.h for statuses, errors,
 * dtypes, tensors and allocators).
 *
 * Reading never trusts the file: every size in a header is checked against
 * the file's real size before anything is allocated, and every message
 * names the file and the problem ("x.npy: header longer than the file").
 * Large .npy files are mapped read-only instead of copied.
 *
 * Writing is atomic: data goes to a temporary created exclusively in the
 * destination's folder, is fsync'ed and then renamed into place, so a
 * failed or interrupted run never leaves a file that looks complete
 * (standard output, FIFOs and devices are written directly).
 *
 * Thread-safety: a mha_tensor_file is not locked (use it from one thread
 * at a time); reading the same file from several threads is fine. */
#ifndef MHA_TENSOR_FILE_H
#define MHA_TENSOR_FILE_H

#include "mha/mha.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A tensor read from a file: its data may be a read-only mapping of the
 *  file, kept alive until mha_tensor_file_free. */
typedef struct mha_tensor_file mha_tensor_file;

/** How a .npy file's data is read. */
typedef enum mha_mmap_mode {
    MHA_MMAP_AUTO = 0, /* mapped when the data is 1 MiB or more */
    MHA_MMAP_NEVER,    /* plain reads into memory */
    MHA_MMAP_ALWAYS    /* mapped whenever the data is not empty */
} mha_mmap_mode;

typedef struct mha_tensor_file_options {
    uint32_t struct_size;           /* sizeof(mha_tensor_file_options); set by _init */
    mha_dtype want;                 /* convert the elements to this dtype (see
                                       mha_dtype_can_convert); MHA_DTYPE_UNDEFINED
                                       keeps what the file holds */
    mha_mmap_mode mmap_mode;        /* .npy only */
    uint64_t max_pb_bytes;          /* .pb files larger are refused; 0 = 4 GiB */
    const mha_allocator *allocator; /* NULL = malloc; used until _free */
} mha_tensor_file_options;

/** Fills *opts with the defaults. Always call it before setting fields. */
MHA_API void mha_tensor_file_options_init(mha_tensor_file_options *opts);

/** Reads a .npy or .pb file (by extension, case-insensitive) completely.
 *  opts may be NULL (defaults). Errors: MHA_ERR_IO (cannot open or read),
 *  MHA_ERR_DATA_FORMAT (a malformed or truncated file, or an unknown
 *  extension), MHA_ERR_DTYPE (a dtype that cannot be converted to
 *  opts->want), MHA_ERR_LIMIT, MHA_ERR_NO_MEMORY, MHA_ERR_INVALID_ARGUMENT
 *  (NULL path or out, or opts->struct_size too small). *out is NULL on
 *  failure. */
MHA_API mha_status mha_tensor_file_read(const char *path, const mha_tensor_file_options *opts,
                                        mha_tensor_file **out, mha_error *err);
/** The tensor, ready to hand to mha_run: dtype, rank, shape and read-only
 *  data (valid until mha_tensor_file_free). NULL for a NULL file. */
MHA_API const mha_tensor *mha_tensor_file_tensor(const mha_tensor_file *file);
/** The TensorProto's name for a .pb file, "" for .npy (NULL for a NULL
 *  file). Untrusted text: escape it (mha_text_escape) before printing. */
MHA_API const char *mha_tensor_file_name(const mha_tensor_file *file);
/** Frees the file and unmaps its data. Accepts NULL. */
MHA_API void mha_tensor_file_free(mha_tensor_file *file);

/** File formats, by extension. */
typedef enum mha_file_format {
    MHA_FILE_UNKNOWN = 0,
    MHA_FILE_NPY, /* *.npy */
    MHA_FILE_PB   /* *.pb: one serialized onnx.TensorProto */
} mha_file_format;

/** The format of a file to read, by extension (case-insensitive). */
MHA_API mha_file_format mha_file_format_of(const char *path);
/** The format an output is written in: by extension; an open descriptor
 *  ("-", /dev/stdout, /dev/fd/N) and a FIFO or character device (/dev/null)
 *  without a known extension take .npy. */
MHA_API mha_file_format mha_file_output_format(const char *path);
/** Checks, before anything is computed, that a tensor of this dtype and
 *  shape can be written to path: a known output format (else
 *  MHA_ERR_INVALID_ARGUMENT), a dtype the format stores (MHA_ERR_DTYPE),
 *  and for .pb data of at most 2 GiB - 1 (MHA_ERR_LIMIT naming the file,
 *  the size and the way out). */
MHA_API mha_status mha_tensor_file_check_output(const char *path, mha_dtype dtype, int rank,
                                                const int64_t *shape, mha_error *err);

/** An output file written but not yet in place. */
typedef struct mha_output_file mha_output_file;

/** Writes t into a temporary beside path, by extension (.npy, or .pb with
 *  the TensorProto name `name`; NULL = ""), and hands back the unfinished
 *  file: commit it once every output of a run is written, or abort it, so a
 *  program publishes its outputs only when all of them were written.
 *  allocator: NULL = malloc, used until commit or abort. Errors as
 *  mha_tensor_file_check_output, and MHA_ERR_IO. *out is NULL on failure. */
MHA_API mha_status mha_tensor_file_write_pending(const char *path, const mha_tensor *t,
                                                 const char *name, const mha_allocator *allocator,
                                                 mha_output_file **out, mha_error *err);
/** The destination path as given (for messages). NULL for a NULL file. */
MHA_API const char *mha_output_file_path(const mha_output_file *file);
/** fsyncs the file, gives it the usual 0666 & ~umask mode and renames it to
 *  its destination (a symlink destination is written through). Frees the
 *  file whether it succeeds or not; on failure the temporary is removed
 *  (MHA_ERR_IO naming the file). */
MHA_API mha_status mha_output_file_commit(mha_output_file *file, mha_error *err);
/** Removes the temporary and frees the file. Accepts NULL. */
MHA_API void mha_output_file_abort(mha_output_file *file);
/** Starts an empty output file for a writer of its own (ranks writing
 *  their rows at offsets through MPI-IO): "<name>.partial.XXXXXX" beside
 *  path's target, created exclusively (mha_output_clean_stale removes it
 *  after a crash); write it by mha_output_file_tmp_path, then commit or
 *  abort it as above. A stream destination has no such file: *out is
 *  still made, and its tmp_path is NULL. allocator: NULL = malloc.
 *  MHA_ERR_IO naming the file. */
MHA_API mha_status mha_output_file_begin_partial(const char *path, const mha_allocator *allocator,
                                                 mha_output_file **out, mha_error *err);
/** The temporary being written; NULL for a stream and for a NULL file. */
MHA_API const char *mha_output_file_tmp_path(const mha_output_file *file);
/** Removes what earlier writers of path left behind when killed: regular
 *  files of this user named ".<name>.tmp.XXXXXX" or "<name>.partial.XXXXXX"
 *  beside path's destination. Only safe while no other process writes path.
 *  Returns how many were removed. */
MHA_API int mha_output_clean_stale(const char *path);

/** mha_output_clean_stale, except for the n_keep paths in keep (partial
 *  files a checkpoint still names, see mha_npy_writer_begin_partial). */
MHA_API int mha_output_clean_stale_except(const char *path, const char *const *keep, size_t n_keep);

/** Checks, before any work starts, that path can be written: a missing,
 *  read-only or non-folder parent is MHA_ERR_IO naming it, and so is a path
 *  that is a folder, socket or block device, a symlink loop or an
 *  unreadable link. A symlink is followed to its target; "-", /dev/stdout,
 *  FIFOs and character devices are streams (written directly). */
MHA_API mha_status mha_output_check(const char *path, mha_error *err);
/** 1 when paths a and b lead to the same file (folders and symlinks
 *  resolved), so that two outputs would overwrite each other; 0 when they
 *  differ, when the place is a character device such as /dev/null (which
 *  takes several outputs) or when either path cannot be resolved. */
MHA_API int mha_output_same_file(const char *a, const char *b);
/** Writes n bytes of data to path, whole or not at all (a temporary renamed
 *  into place; a stream is written directly). MHA_ERR_IO naming the file. */
MHA_API mha_status mha_output_save(const char *path, const void *data, size_t n, mha_error *err);
/** The same for a file a program keeps for itself (a checkpoint): a
 *  symlink at path is replaced, never followed, and anything but a regular
 *  file there is refused, so a link planted in a shared folder cannot
 *  redirect it. */
MHA_API mha_status mha_output_save_nofollow(const char *path, const void *data, size_t n,
                                            mha_error *err);
/** Sets *is_stream to 1 when path is written directly ("-", /dev/stdout,
 *  a FIFO, a character device: no temporary, no partial file, no
 *  checkpoint), else 0. Errors as mha_output_check. */
MHA_API mha_status mha_output_is_stream(const char *path, int *is_stream, mha_error *err);

/** An exclusive lock on one output, held while a program writes it. */
typedef struct mha_output_lock mha_output_lock;
/** Takes an exclusive lock (flock) on "<target>.lock" beside path's
 *  target, so that a second process writing the same output is refused at
 *  once: MHA_ERR_IO "another process is writing this output". The lock file
 *  is opened without following a symlink and removed on release; one left
 *  by kill -9 is reused. A stream needs no lock, nor can a file system
 *  without flock give one: then *out = NULL and MHA_OK. */
MHA_API mha_status mha_output_lock_acquire(const char *path, mha_output_lock **out, mha_error *err);
/** Removes the lock file and releases the lock. Accepts NULL. */
MHA_API void mha_output_lock_release(mha_output_lock *lock);

/** Whether elements of dtype `from` can be converted to `to`: the same
 *  dtype; any float type (float16/32/64, bfloat16) to float16/32/64; any
 *  integer or bool to bool (nonzero = 1); a narrower integer (not bool)
 *  to int32 / int64 (widening, exact: int32 token ids for an int64 input). */
MHA_API int mha_dtype_can_convert(mha_dtype from, mha_dtype to);
/** Converts n elements from src to dst (which may be src when the sizes
 *  agree). Does nothing unless mha_dtype_can_convert(from, to). src needs
 *  no alignment. Thread-safe. */
MHA_API void mha_dtype_convert(const void *src, mha_dtype from, void *dst, mha_dtype to, size_t n);

#ifdef __cplusplus
}
#endif

#endif
