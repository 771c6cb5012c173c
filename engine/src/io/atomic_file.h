/* atomic_file.h -- output files: where a destination path really leads,
 * files written whole or not at all, resumable partial files, and a lock
 * per output.
 *
 * Destinations (atomic_dest_resolve):
 *   - a regular file or a name not there yet: data goes to a temporary
 *     created exclusively (mkstemp: O_CREAT|O_EXCL, so a symlink planted at
 *     its name is never followed) in the destination's folder, is fsync'ed
 *     and renamed into place: a failed or interrupted run never leaves a
 *     file that looks complete;
 *   - a symbolic link: followed to its target, which is written (atomically
 *     as above when it is a regular file or missing); the link stays;
 *   - "-" (standard output), /dev/stdout, /dev/stderr, /dev/fd/N: written
 *     through that open descriptor (never by following the link to the
 *     file behind it, which would replace that file);
 *   - a FIFO, a character device: written directly, never removed or
 *     replaced;
 *   - a folder, a socket, a block device: refused.
 *
 * Thread-safety: the objects are not locked; use one per thread. */
#ifndef MHA_ATOMIC_FILE_H
#define MHA_ATOMIC_FILE_H

#include "common.h"

/* ------------------------------------------------------------------------ */
/* Destinations                                                              */
/* ------------------------------------------------------------------------ */

typedef enum atomic_dest_kind {
    ATOMIC_DEST_FILE = 0, /* temporary + rename onto `target` */
    ATOMIC_DEST_STREAM    /* written directly: "-", a FIFO, a character device */
} atomic_dest_kind;

typedef struct atomic_dest {
    atomic_dest_kind kind;
    char *target;    /* FILE: where the rename goes (symlinks followed);
                        STREAM: what is opened ("-" for standard output) */
    char *canonical; /* the same place spelled one way (folders resolved):
                        two paths with equal canonical names are one file */
    int exists;      /* the target exists now */
    int shareable;   /* a character device such as /dev/null: several
                        outputs may go there */
} atomic_dest;

/* Resolves path as described above and checks it can be written before any
 * work starts: MHA_ERR_IO naming the folder when it is missing, not a
 * folder or not writable, naming the path for a folder, socket or block
 * device, a symlink loop or an unreadable link. out is cleared on failure. */
mha_status atomic_dest_resolve(const mha_alloc_ctx *a, const char *path, atomic_dest *out,
                               mha_error *err);
void atomic_dest_clear(const mha_alloc_ctx *a, atomic_dest *d); /* frees the strings */
/* The descriptor path names when it names one the process has open ("-",
 * /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N); -1 otherwise. */
int atomic_dest_descriptor(const char *path);

/* ------------------------------------------------------------------------ */
/* Files written whole or not at all                                         */
/* ------------------------------------------------------------------------ */

typedef struct atomic_file atomic_file;

/* Starts writing path (see atomic_dest_resolve): a regular destination gets
 * `.<name>.tmp.XXXXXX` beside its target; a stream is opened directly (a
 * FIFO blocks here until it has a reader, as a shell redirection does). */
mha_status atomic_file_begin(const mha_alloc_ctx *a, const char *path, atomic_file **out,
                             mha_error *err);
/* Appends n bytes (short writes and EINTR retried; ENOSPC reported). */
mha_status atomic_file_write(atomic_file *f, const void *data, size_t n, mha_error *err);
/* Overwrites n bytes at offset (used to patch a header); does not move the
 * append position. Refused for a stream. */
mha_status atomic_file_pwrite(atomic_file *f, const void *data, size_t n, uint64_t offset,
                              mha_error *err);
/* fsync, gives the file the usual 0666 & ~umask mode, renames it to the
 * target and frees f. On any failure the temporary is unlinked and f freed
 * too: after commit f is gone either way. A stream is closed. */
mha_status atomic_file_commit(atomic_file *f, mha_error *err);
/* Unlinks the temporary (never a stream) and frees f. Accepts NULL. */
void atomic_file_abort(atomic_file *f);
/* The destination path as given (for messages). */
const char *atomic_file_path(const atomic_file *f);
/* The temporary's path; NULL for a stream. */
const char *atomic_file_tmp_path(const atomic_file *f);

/* Resumable variant for long runs: the temporary is `<name>.partial.XXXXXX`
 * beside the target, created exclusively (reuse = NULL, keep_bytes = 0), or
 * the one an interrupted run made (reuse = its path, as
 * atomic_file_tmp_path gave it): reopened without following a symlink, and
 * only when it is a regular file of this user with one link, named like a
 * partial file of this very target, starting with the head_bytes of head
 * (MHA_ERR_DATA_FORMAT otherwise; head may be NULL); then truncated to
 * exactly keep_bytes
 * (dropping whatever was written after the last checkpoint) and appended
 * to. MHA_ERR_IO when it is missing, foreign or shorter than keep_bytes;
 * A stream destination is written directly (atomic_file_tmp_path gives
 * NULL) and cannot be resumed: MHA_ERR_INVALID_ARGUMENT with reuse. Commit
 * and abort work as for atomic_file_begin. */
mha_status atomic_file_begin_partial(const mha_alloc_ctx *a, const char *path, const char *reuse,
                                     uint64_t keep_bytes, const void *head, size_t head_bytes,
                                     atomic_file **out, mha_error *err);
/* fsync of what was written so far (data before a checkpoint records it). */
mha_status atomic_file_sync(atomic_file *f, mha_error *err);
/* Closes the file and frees f but keeps the temporary on disk (an
 * interrupted run that will be resumed). Accepts NULL. */
void atomic_file_detach(atomic_file *f);
/* Bytes appended so far (the append position). */
uint64_t atomic_file_offset(const atomic_file *f);

/* Writes a whole buffer atomically to path. */
mha_status atomic_file_save(const mha_alloc_ctx *a, const char *path, const void *data, size_t n,
                            mha_error *err);
/* The same for a file the program keeps for itself (a checkpoint): a
 * symlink at path is replaced, never followed, and anything but a regular
 * file there is refused, so a link planted in a shared folder cannot
 * redirect it. */
mha_status atomic_file_save_nofollow(const mha_alloc_ctx *a, const char *path, const void *data,
                                     size_t n, mha_error *err);

/* Removes what earlier writers of path left after kill -9: the regular
 * files of this user named `.<name>.tmp.XXXXXX` or `<name>.partial.XXXXXX`
 * beside path's target, except the n_keep paths in keep (partial files a
 * checkpoint still names). Only safe while holding path's lock. Returns how
 * many were removed; a stream destination has none. */
int atomic_file_clean_stale(const mha_alloc_ctx *a, const char *path, const char *const *keep,
                            size_t n_keep);

/* ------------------------------------------------------------------------ */
/* A lock per output                                                         */
/* ------------------------------------------------------------------------ */

typedef struct atomic_lock atomic_lock;

/* Takes an exclusive lock (flock) on `<target>.lock` beside path's target,
 * so that a second process writing the same output is refused at once:
 * MHA_ERR_IO "another process is writing this output". The lock file is
 * opened without following a symlink and removed on release; one left by
 * kill -9 is simply reused. A stream destination needs no lock, nor can a
 * file system without flock (ENOLCK, ENOSYS, EOPNOTSUPP: some network
 * mounts) give one: *out = NULL and MHA_OK. */
mha_status atomic_lock_acquire(const mha_alloc_ctx *a, const char *path, atomic_lock **out,
                               mha_error *err);
/* Removes the lock file and releases the lock. Accepts NULL. */
void atomic_lock_release(atomic_lock *l);

#endif
