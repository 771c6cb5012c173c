/* tensor_file_api.c -- the public face of tensor files and output files
 * (mha/tensor_file.h) over tensorfile.c and atomic_file.c: options checked
 * by struct_size, the allocator kept beside the file it serves, and the
 * internal reader's and writer's fields kept out of the public header. */
#include <stddef.h>
#include <string.h>

#include "mha/tensor_file.h"
#include "tensorfile.h"

struct mha_tensor_file {
    mha_alloc_ctx alloc; /* tf->alloc points here: lives as long as tf */
    tensorfile *tf;
};

MHA_API void mha_tensor_file_options_init(mha_tensor_file_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
}

static npy_mmap_mode tensor_file_mmap_mode(mha_mmap_mode m) {
    switch (m) {
    case MHA_MMAP_NEVER:
        return NPY_MMAP_NEVER;
    case MHA_MMAP_ALWAYS:
        return NPY_MMAP_ALWAYS;
    case MHA_MMAP_AUTO:
        break;
    }
    return NPY_MMAP_AUTO;
}

MHA_API mha_status mha_tensor_file_read(const char *path, const mha_tensor_file_options *opts,
                                        mha_tensor_file **out, mha_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "tensor file: NULL argument");
    mha_tensor_file_options o;
    mha_tensor_file_options_init(&o);
    if (opts) {
        if (opts->struct_size < sizeof *opts)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "tensor file options: struct_size %u, expected %zu "
                            "(call mha_tensor_file_options_init first)",
                            opts->struct_size, sizeof *opts);
        o = *opts;
    }
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, o.allocator);
    mha_tensor_file *f = mha_calloc(&a, 1, sizeof *f);
    if (!f) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    f->alloc = a;
    tensorfile_read_options ro;
    memset(&ro, 0, sizeof ro);
    ro.want = o.want;
    ro.mmap_mode = tensor_file_mmap_mode(o.mmap_mode);
    ro.max_pb_bytes = o.max_pb_bytes;
    mha_status st = tensorfile_read(&f->alloc, path, &ro, &f->tf, err);
    if (st != MHA_OK) {
        mha_free(&a, f);
        return st;
    }
    *out = f;
    return MHA_OK;
}

MHA_API const mha_tensor *mha_tensor_file_tensor(const mha_tensor_file *file) {
    return file ? &file->tf->t : NULL;
}

MHA_API const char *mha_tensor_file_name(const mha_tensor_file *file) {
    return file ? (file->tf->name ? file->tf->name : "") : NULL;
}

MHA_API void mha_tensor_file_free(mha_tensor_file *file) {
    if (!file) return;
    mha_alloc_ctx a = file->alloc;
    tensorfile_free(file->tf);
    mha_free(&a, file);
}

MHA_API int mha_dtype_can_convert(mha_dtype from, mha_dtype to) {
    return tensorfile_can_convert(from, to);
}

MHA_API void mha_dtype_convert(const void *src, mha_dtype from, void *dst, mha_dtype to, size_t n) {
    if (n && src && dst && tensorfile_can_convert(from, to))
        tensorfile_convert(src, from, dst, to, n);
}

static mha_file_format tensor_file_format(tensorfile_format f) {
    switch (f) {
    case TENSORFILE_NPY:
        return MHA_FILE_NPY;
    case TENSORFILE_PB:
        return MHA_FILE_PB;
    case TENSORFILE_UNKNOWN:
        break;
    }
    return MHA_FILE_UNKNOWN;
}

MHA_API mha_file_format mha_file_format_of(const char *path) {
    return path ? tensor_file_format(tensorfile_format_of(path)) : MHA_FILE_UNKNOWN;
}

MHA_API mha_file_format mha_file_output_format(const char *path) {
    return path ? tensor_file_format(tensorfile_output_format(path)) : MHA_FILE_UNKNOWN;
}

MHA_API mha_status mha_tensor_file_check_output(const char *path, mha_dtype dtype, int rank,
                                                const int64_t *shape, mha_error *err) {
    if (!path || rank < 0 || rank > MHA_MAX_RANK || (rank > 0 && !shape))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output file: bad argument");
    return tensorfile_check_output(path, dtype, rank, shape, err);
}

struct mha_output_file {
    mha_alloc_ctx alloc; /* f's allocator: lives as long as f */
    atomic_file *f;
};

/* An output file holding its allocator (no file yet); NULL when out of
 * memory. */
static mha_output_file *output_file_new(const mha_allocator *allocator) {
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, allocator);
    mha_output_file *f = mha_calloc(&a, 1, sizeof *f);
    if (f) f->alloc = a;
    return f;
}

/* Hands f out when its file was started (st: how that went), else frees
 * it. */
static mha_status output_file_out(mha_output_file *f, mha_status st, mha_output_file **out) {
    if (st != MHA_OK) {
        mha_alloc_ctx a = f->alloc;
        mha_free(&a, f);
        return st;
    }
    *out = f;
    return MHA_OK;
}

MHA_API mha_status mha_tensor_file_write_pending(const char *path, const mha_tensor *t,
                                                 const char *name, const mha_allocator *allocator,
                                                 mha_output_file **out, mha_error *err) {
    if (out) *out = NULL;
    if (!path || !t || !out)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output file: NULL argument");
    mha_output_file *o = output_file_new(allocator);
    if (!o) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    return output_file_out(o, tensorfile_write_pending(&o->alloc, path, t, name, &o->f, err), out);
}

MHA_API const char *mha_output_file_path(const mha_output_file *file) {
    return file ? atomic_file_path(file->f) : NULL;
}

MHA_API mha_status mha_output_file_commit(mha_output_file *file, mha_error *err) {
    if (!file) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output file: NULL argument");
    mha_alloc_ctx a = file->alloc;
    mha_status st = atomic_file_commit(file->f, err);
    mha_free(&a, file);
    return st;
}

MHA_API void mha_output_file_abort(mha_output_file *file) {
    if (!file) return;
    mha_alloc_ctx a = file->alloc;
    atomic_file_abort(file->f);
    mha_free(&a, file);
}

MHA_API mha_status mha_output_file_begin_partial(const char *path, const mha_allocator *allocator,
                                                 mha_output_file **out, mha_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output file: NULL argument");
    mha_output_file *f = output_file_new(allocator);
    if (!f) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    return output_file_out(
        f, atomic_file_begin_partial(&f->alloc, path, NULL, 0, NULL, 0, &f->f, err), out);
}

MHA_API const char *mha_output_file_tmp_path(const mha_output_file *file) {
    return file ? atomic_file_tmp_path(file->f) : NULL;
}

MHA_API int mha_output_clean_stale(const char *path) {
    return mha_output_clean_stale_except(path, NULL, 0);
}

MHA_API int mha_output_clean_stale_except(const char *path, const char *const *keep,
                                          size_t n_keep) {
    if (!path || (!keep && n_keep)) return 0;
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    return atomic_file_clean_stale(&a, path, keep, n_keep);
}

MHA_API mha_status mha_output_is_stream(const char *path, int *is_stream, mha_error *err) {
    if (!path || !is_stream) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output: NULL path");
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    atomic_dest d;
    mha_status st = atomic_dest_resolve(&a, path, &d, err);
    if (st != MHA_OK) return st;
    *is_stream = d.kind == ATOMIC_DEST_STREAM;
    atomic_dest_clear(&a, &d);
    return MHA_OK;
}

MHA_API mha_status mha_output_check(const char *path, mha_error *err) {
    if (!path) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output: NULL path");
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    atomic_dest d;
    mha_status st = atomic_dest_resolve(&a, path, &d, err);
    if (st == MHA_OK) atomic_dest_clear(&a, &d);
    return st;
}

MHA_API int mha_output_same_file(const char *a_path, const char *b_path) {
    if (!a_path || !b_path) return 0;
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    atomic_dest da, db;
    if (atomic_dest_resolve(&a, a_path, &da, NULL) != MHA_OK) return 0;
    int same = 0;
    if (atomic_dest_resolve(&a, b_path, &db, NULL) == MHA_OK) {
        same = !db.shareable && strcmp(da.canonical, db.canonical) == 0;
        atomic_dest_clear(&a, &db);
    }
    atomic_dest_clear(&a, &da);
    return same;
}

MHA_API mha_status mha_output_save(const char *path, const void *data, size_t n, mha_error *err) {
    if (!path || (!data && n))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output: NULL argument");
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    return atomic_file_save(&a, path, data, n, err);
}

MHA_API mha_status mha_output_save_nofollow(const char *path, const void *data, size_t n,
                                            mha_error *err) {
    if (!path || (!data && n))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output: NULL argument");
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    return atomic_file_save_nofollow(&a, path, data, n, err);
}

struct mha_output_lock {
    atomic_lock *lock; /* keeps its own copy of the allocator */
};

MHA_API mha_status mha_output_lock_acquire(const char *path, mha_output_lock **out,
                                           mha_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output lock: NULL argument");
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    atomic_lock *l = NULL;
    mha_status st = atomic_lock_acquire(&a, path, &l, err);
    if (st != MHA_OK || !l) return st;
    mha_output_lock *o = mha_calloc(&a, 1, sizeof *o);
    if (!o) {
        atomic_lock_release(l);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    o->lock = l;
    *out = o;
    return MHA_OK;
}

MHA_API void mha_output_lock_release(mha_output_lock *lock) {
    if (!lock) return;
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    atomic_lock_release(lock->lock);
    mha_free(&a, lock);
}
