/* atomic_file.c -- output files (see atomic_file.h): destinations resolved
 * through symlinks, temporaries created exclusively beside their target and
 * renamed into place, streams written directly, resumable partial files,
 * stale temporaries cleaned, and a flock per output. */
#define _GNU_SOURCE
#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Symlinks followed before giving up (as the kernel's ELOOP). */
#define AF_MAX_LINKS 40
/* The random part of mkstemp names. */
#define AF_RANDOM_CHARS 6

/* ------------------------------------------------------------------------ */
/* paths                                                                     */
/* ------------------------------------------------------------------------ */

/* The folder of path ("." when it has none, "/" for "/name"). */
static char *af_dirname(const mha_alloc_ctx *a, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return mha_strdup(a, ".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = mha_malloc(a, n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static const char *af_basename(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* dir + "/" + name + suffix, mha_malloc'd. */
static char *af_join(const mha_alloc_ctx *a, const char *dir, const char *name,
                     const char *suffix) {
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *s = mha_malloc(a, n);
    if (s) snprintf(s, n, "%s/%s%s", dir, name, suffix);
    return s;
}

/* Follows symlinks from path to the name they end at (which may not exist).
 * *missing = 1 when nothing is there. */
static mha_status af_follow_links(const mha_alloc_ctx *a, const char *path, int follow, char **out,
                                  struct stat *sb, int *missing, mha_error *err) {
    *out = NULL;
    *missing = 0;
    char *cur = mha_strdup(a, path);
    if (!cur) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    for (int hops = 0;; hops++) {
        if (lstat(cur, sb) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) { /* the folder check says why */
                *missing = 1;
                break;
            }
            mha_status st = mha_fail(err, MHA_ERR_IO, "%s: %s", path, strerror(errno));
            mha_free(a, cur);
            return st;
        }
        if (!S_ISLNK(sb->st_mode) || !follow) break;
        if (hops == AF_MAX_LINKS) {
            mha_free(a, cur);
            return mha_fail(err, MHA_ERR_IO, "%s: too many levels of symbolic links", path);
        }
        char link[PATH_MAX];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n <= 0) {
            mha_status st = mha_fail(err, MHA_ERR_IO, "%s: cannot read the symbolic link %s: %s",
                                     path, cur, n < 0 ? strerror(errno) : "empty");
            mha_free(a, cur);
            return st;
        }
        link[n] = '\0';
        char *next;
        if (link[0] == '/') {
            next = mha_strdup(a, link);
        } else {
            char *dir = af_dirname(a, cur);
            next = dir ? af_join(a, dir, link, "") : NULL;
            mha_free(a, dir);
        }
        mha_free(a, cur);
        if (!next) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
        cur = next;
    }
    *out = cur;
    return MHA_OK;
}

void atomic_dest_clear(const mha_alloc_ctx *a, atomic_dest *d) {
    if (!d) return;
    mha_free(a, d->target);
    mha_free(a, d->canonical);
    memset(d, 0, sizeof *d);
}

/* The folder of a file to be created must exist and take new files. */
static mha_status af_check_folder(const char *path, const char *dir, mha_error *err) {
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno == ENOENT)
            return mha_fail(err, MHA_ERR_IO, "%s: the folder '%s' does not exist", path, dir);
        return mha_fail(err, MHA_ERR_IO, "%s: folder '%s': %s", path, dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return mha_fail(err, MHA_ERR_IO, "%s: '%s' is not a folder", path, dir);
    /* a folder without any write bit was made read-only by its owner:
     * refused by its mode bits too, which root's access() ignores (as a
     * read-only file is not replaced) */
    if ((sb.st_mode & 0222) == 0)
        return mha_fail(err, MHA_ERR_IO,
                        "%s: cannot create files in the folder '%s': it is read-only (mode %04o)",
                        path, dir, (unsigned)(sb.st_mode & 07777));
    if (access(dir, W_OK | X_OK) != 0)
        return mha_fail(err, MHA_ERR_IO, "%s: cannot create files in the folder '%s': %s", path,
                        dir, strerror(errno));
    return MHA_OK;
}

/* The descriptor a path names when it names one this process already has
 * open: "-" (standard output), /dev/stdout, /dev/stderr, /dev/fd/N,
 * /proc/self/fd/N. Written through that descriptor: following the link
 * would reach the file behind it and replace it, losing what was already
 * written there (a report printed before a --json /dev/stdout). -1 for
 * any other path. */
int atomic_dest_descriptor(const char *path) {
    if (strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0) return STDOUT_FILENO;
    if (strcmp(path, "/dev/stderr") == 0) return STDERR_FILENO;
    const char *n = strncmp(path, "/dev/fd/", 8) == 0          ? path + 8
                    : strncmp(path, "/proc/self/fd/", 14) == 0 ? path + 14
                                                               : NULL;
    if (!n || *n < '0' || *n > '9') return -1;
    char *end;
    long fd = strtol(n, &end, 10);
    return *end == '\0' && fd <= INT_MAX ? (int)fd : -1;
}

/* atomic_dest_resolve; with follow = 0 a symlink at path is itself the
 * target (replaced by the rename, never followed). */
static mha_status af_resolve(const mha_alloc_ctx *a, const char *path, int follow, atomic_dest *out,
                             mha_error *err) {
    memset(out, 0, sizeof *out);
    int std_fd = follow ? atomic_dest_descriptor(path) : -1;
    if (std_fd >= 0) {
        int fl = fcntl(std_fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
            return mha_fail(err, MHA_ERR_IO, "%s: descriptor %d is not open for writing", path,
                            std_fd);
        char name[32];
        snprintf(name, sizeof name, "descriptor %d", std_fd);
        out->kind = ATOMIC_DEST_STREAM;
        out->target = mha_strdup(a, path);
        out->canonical = mha_strdup(a, name);
        out->exists = 1;
        if (!out->target || !out->canonical) {
            atomic_dest_clear(a, out);
            return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory");
        }
        return MHA_OK;
    }
    const char *base = af_basename(path);
    if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: not a file name", path);
    struct stat sb;
    int missing;
    mha_status st = af_follow_links(a, path, follow, &out->target, &sb, &missing, err);
    if (st != MHA_OK) return st;
    char *dir = af_dirname(a, out->target);
    if (!dir) {
        atomic_dest_clear(a, out);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    out->exists = !missing;
    if (missing || S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) { /* a link: follow = 0 */
        out->kind = ATOMIC_DEST_FILE;
        st = af_check_folder(path, dir, err);
        /* the rename would replace a file its owner made read-only (or one
         * this user may not write) as if it were writable: refused, as
         * opening it for writing would be -- by its mode bits too, which
         * root's access() ignores */
        if (st == MHA_OK && follow && !missing && S_ISREG(sb.st_mode) &&
            ((sb.st_mode & 0222) == 0 || access(out->target, W_OK) != 0))
            st = mha_fail(err, MHA_ERR_IO,
                          "%s: the file is read-only; it is not replaced (make it writable, or "
                          "remove it, to write it)",
                          path);
    } else if (follow && (S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode))) {
        out->kind = ATOMIC_DEST_STREAM;
        out->shareable = S_ISCHR(sb.st_mode);
        if (access(out->target, W_OK) != 0)
            st = mha_fail(err, MHA_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    } else {
        st = mha_fail(err, MHA_ERR_IO, "%s: is %s, not a file that can be written", path,
                      S_ISDIR(sb.st_mode)    ? "a folder"
                      : S_ISSOCK(sb.st_mode) ? "a socket"
                      : S_ISBLK(sb.st_mode)  ? "a block device"
                                             : "a FIFO or device");
    }
    if (st == MHA_OK) {
        /* one spelling of the place: the real folder plus the name */
        char *real = realpath(dir, NULL);
        if (!real) {
            st = mha_fail(err, MHA_ERR_IO, "%s: folder '%s': %s", path, dir, strerror(errno));
        } else {
            out->canonical =
                af_join(a, strcmp(real, "/") == 0 ? "" : real, af_basename(out->target), "");
            free(real);
            if (!out->canonical) st = mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
        }
    }
    mha_free(a, dir);
    if (st != MHA_OK) atomic_dest_clear(a, out);
    return st;
}

mha_status atomic_dest_resolve(const mha_alloc_ctx *a, const char *path, atomic_dest *out,
                               mha_error *err) {
    return af_resolve(a, path, 1, out, err);
}

/* ------------------------------------------------------------------------ */
/* atomic files                                                              */
/* ------------------------------------------------------------------------ */

struct atomic_file {
    const mha_alloc_ctx *alloc;
    int fd;
    int stream;      /* written directly: no temporary, nothing to rename */
    char *path;      /* as given */
    char *target;    /* where the rename goes */
    char *tmp_path;  /* the temporary, in the target's folder */
    char *dir;       /* the target's folder, for the fsync after rename */
    uint64_t offset; /* append position */
};

static void atomic_file_free(atomic_file *f) {
    mha_free(f->alloc, f->path);
    mha_free(f->alloc, f->target);
    mha_free(f->alloc, f->tmp_path);
    mha_free(f->alloc, f->dir);
    mha_free(f->alloc, f);
}

/* A new atomic_file for path resolved to d (d's strings move into it). */
static mha_status af_new(const mha_alloc_ctx *a, const char *path, atomic_dest *d,
                         atomic_file **out, mha_error *err) {
    atomic_file *f = mha_calloc(a, 1, sizeof *f);
    if (f) {
        f->alloc = a;
        f->fd = -1;
        f->stream = d->kind == ATOMIC_DEST_STREAM;
        f->target = d->target;
        d->target = NULL;
        f->path = mha_strdup(a, path);
        f->dir = af_dirname(a, f->target);
    }
    atomic_dest_clear(a, d);
    if (!f || !f->path || !f->dir) {
        if (f) atomic_file_free(f);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    *out = f;
    return MHA_OK;
}

/* Creates `<dir>/.<name>.tmp.XXXXXX` (or `<dir>/<name>.partial.XXXXXX`)
 * exclusively: O_EXCL, so a name taken by anything, a symlink included, is
 * never opened. */
static mha_status af_create_temporary(atomic_file *f, int partial, mha_error *err);

/* Opens a stream destination for writing. */
static mha_status af_open_stream(atomic_file *f, mha_error *err) {
    int std_fd = atomic_dest_descriptor(f->target);
    if (std_fd >= 0)
        f->fd = fcntl(std_fd, F_DUPFD_CLOEXEC, 3);
    else
        f->fd = open(f->target, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (f->fd < 0)
        return mha_fail(err, MHA_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    return MHA_OK;
}

static mha_status af_begin(const mha_alloc_ctx *a, const char *path, int follow, atomic_file **out,
                           mha_error *err) {
    *out = NULL;
    atomic_dest d;
    mha_status st = af_resolve(a, path, follow, &d, err);
    if (st != MHA_OK) return st;
    atomic_file *f;
    if ((st = af_new(a, path, &d, &f, err)) != MHA_OK) return st;
    st = f->stream ? af_open_stream(f, err) : af_create_temporary(f, 0, err);
    if (st != MHA_OK) {
        atomic_file_free(f);
        return st;
    }
    *out = f;
    return MHA_OK;
}

mha_status atomic_file_begin(const mha_alloc_ctx *a, const char *path, atomic_file **out,
                             mha_error *err) {
    return af_begin(a, path, 1, out, err);
}

/* Whether name is `<head><random part>`, the random part as mkstemp makes
 * it. */
static int af_matches(const char *name, const char *head) {
    size_t n = strlen(head);
    if (strncmp(name, head, n) != 0 || strlen(name + n) != AF_RANDOM_CHARS) return 0;
    for (const char *r = name + n; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= 'A' && *r <= 'Z') || (*r >= '0' && *r <= '9')))
            return 0;
    return 1;
}

/* The head of the temporaries of target: `.<name>.tmp.` or
 * `<name>.partial.` (mha_malloc'd). */
static char *af_head(const mha_alloc_ctx *a, const char *target, int partial) {
    const char *base = af_basename(target);
    size_t n = strlen(base) + 16;
    char *h = mha_malloc(a, n);
    if (h) snprintf(h, n, partial ? "%s.partial." : ".%s.tmp.", base);
    return h;
}

static mha_status af_create_temporary(atomic_file *f, int partial, mha_error *err) {
    char *head = af_head(f->alloc, f->target, partial);
    f->tmp_path = head ? af_join(f->alloc, f->dir, head, "XXXXXX") : NULL;
    mha_free(f->alloc, head);
    if (!f->tmp_path) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", f->path);
    f->fd = mkostemp(f->tmp_path, O_CLOEXEC);
    if (f->fd < 0)
        return mha_fail(err, MHA_ERR_IO, "%s: cannot create a file in the folder '%s': %s", f->path,
                        f->dir, strerror(errno));
    return MHA_OK;
}

/* Whether reuse names a partial file of f's target: `<dir>/<name>.partial.`
 * followed by the random part, nothing else. */
static int af_is_partial_name(const atomic_file *f, const char *reuse) {
    size_t nd = strlen(f->dir);
    if (strncmp(reuse, f->dir, nd) != 0 || reuse[nd] != '/') return 0;
    char *head = af_head(f->alloc, f->target, 1);
    int ok = head && af_matches(reuse + nd + 1, head);
    mha_free(f->alloc, head);
    return ok;
}

/* Reopens the partial file an interrupted run left, refusing anything that
 * is not plainly ours. */
static mha_status af_reopen_partial(atomic_file *f, const char *reuse, mha_error *err) {
    if (!af_is_partial_name(f, reuse))
        return mha_fail(err, MHA_ERR_IO, "%s: not a partial file of %s", reuse, f->path);
    f->tmp_path = mha_strdup(f->alloc, reuse);
    if (!f->tmp_path) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", f->path);
    f->fd = open(reuse, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (f->fd < 0)
        return mha_fail(err, MHA_ERR_IO, "%s: cannot open the partial file: %s", reuse,
                        errno == ELOOP ? "it is a symbolic link" : strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) return mha_fail(err, MHA_ERR_IO, "%s: %s", reuse, strerror(errno));
    if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() || sb.st_nlink != 1)
        return mha_fail(err, MHA_ERR_IO,
                        "%s: not a partial file this user wrote (not a regular file, another "
                        "owner or more than one link)",
                        reuse);
    int fl = fcntl(f->fd, F_GETFL);
    if (fl >= 0) fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
    return MHA_OK;
}

/* Whether the file at fd starts with the n bytes of head. */
static int af_starts_with(int fd, const void *head, size_t n) {
    unsigned char buf[1024];
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < sizeof buf ? n - done : sizeof buf;
        ssize_t r = pread(fd, buf, chunk, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || memcmp(buf, (const unsigned char *)head + done, (size_t)r) != 0) return 0;
        done += (size_t)r;
    }
    return 1;
}

mha_status atomic_file_begin_partial(const mha_alloc_ctx *a, const char *path, const char *reuse,
                                     uint64_t keep_bytes, const void *head, size_t head_bytes,
                                     atomic_file **out, mha_error *err) {
    *out = NULL;
    atomic_dest d;
    mha_status st = atomic_dest_resolve(a, path, &d, err);
    if (st != MHA_OK) return st;
    if (d.kind == ATOMIC_DEST_STREAM && (reuse || keep_bytes > 0)) {
        atomic_dest_clear(a, &d);
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: written directly (standard output, a FIFO or a device): it has no "
                        "partial file to resume",
                        path);
    }
    atomic_file *f;
    if ((st = af_new(a, path, &d, &f, err)) != MHA_OK) return st;
    if (f->stream) {
        if ((st = af_open_stream(f, err)) != MHA_OK) {
            atomic_file_free(f);
            return st;
        }
        *out = f;
        return MHA_OK;
    }
    if (!reuse && keep_bytes > 0)
        st = mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: resuming needs the partial file", path);
    else
        st = reuse ? af_reopen_partial(f, reuse, err) : af_create_temporary(f, 1, err);
    struct stat sb;
    const char *tmp = f->tmp_path ? f->tmp_path : path;
    if (st == MHA_OK && fstat(f->fd, &sb) != 0)
        st = mha_fail(err, MHA_ERR_IO, "%s: %s", tmp, strerror(errno));
    else if (st == MHA_OK && reuse && head && !af_starts_with(f->fd, head, head_bytes))
        st = mha_fail(err, MHA_ERR_DATA_FORMAT,
                      "%s: the partial file's header does not match this run's output", tmp);
    else if (st == MHA_OK && (uint64_t)sb.st_size < keep_bytes)
        st = mha_fail(err, MHA_ERR_IO,
                      "%s: partial file holds %llu bytes, fewer than the %llu its checkpoint "
                      "records",
                      tmp, (unsigned long long)sb.st_size, (unsigned long long)keep_bytes);
    else if (st == MHA_OK && ftruncate(f->fd, (off_t)keep_bytes) != 0)
        st = mha_fail(err, MHA_ERR_IO, "%s: cannot truncate to %llu bytes: %s", tmp,
                      (unsigned long long)keep_bytes, strerror(errno));
    if (st != MHA_OK) {
        if (f->fd >= 0) close(f->fd);
        if (!reuse && f->fd >= 0) unlink(f->tmp_path); /* ours, just made */
        atomic_file_free(f);
        return st;
    }
    f->offset = keep_bytes;
    *out = f;
    return MHA_OK;
}

mha_status atomic_file_sync(atomic_file *f, mha_error *err) {
    if (f->stream) return MHA_OK; /* a pipe or device has nothing to make durable */
    if (fsync(f->fd) != 0)
        return mha_fail(err, MHA_ERR_IO, "%s: fsync failed: %s", f->tmp_path, strerror(errno));
    return MHA_OK;
}

void atomic_file_detach(atomic_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    atomic_file_free(f);
}

uint64_t atomic_file_offset(const atomic_file *f) {
    return f->offset;
}

const char *atomic_file_path(const atomic_file *f) {
    return f->path;
}

const char *atomic_file_tmp_path(const atomic_file *f) {
    return f->stream ? NULL : f->tmp_path;
}

/* Writes n bytes at offset (a file) or at the stream's position. */
static mha_status atomic_file_put(atomic_file *f, const void *data, size_t n, uint64_t offset,
                                  mha_error *err) {
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = f->stream ? write(f->fd, p, chunk) : pwrite(f->fd, p, chunk, (off_t)offset);
        if (w < 0) {
            if (errno == EINTR) continue;
            return mha_fail(err, MHA_ERR_IO, "%s: write failed: %s", f->path, strerror(errno));
        }
        if (w == 0) return mha_fail(err, MHA_ERR_IO, "%s: write made no progress", f->path);
        p += w;
        n -= (size_t)w;
        offset += (uint64_t)w;
    }
    return MHA_OK;
}

mha_status atomic_file_write(atomic_file *f, const void *data, size_t n, mha_error *err) {
    mha_status st = atomic_file_put(f, data, n, f->offset, err);
    if (st == MHA_OK) f->offset += n;
    return st;
}

mha_status atomic_file_pwrite(atomic_file *f, const void *data, size_t n, uint64_t offset,
                              mha_error *err) {
    if (f->stream)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: written directly: what was written cannot be changed", f->path);
    return atomic_file_put(f, data, n, offset, err);
}

/* The process umask without changing it (umask() would race with other
 * threads): /proc/self/status has it since Linux 4.7; else assume 022. */
static mode_t atomic_file_umask(void) {
    mode_t mask = 022;
    FILE *s = fopen("/proc/self/status", "re");
    if (!s) return mask;
    char line[256];
    while (fgets(line, sizeof line, s)) {
        if (strncmp(line, "Umask:", 6) == 0) {
            mask = (mode_t)strtoul(line + 6, NULL, 8) & 0777;
            break;
        }
    }
    fclose(s);
    return mask;
}

mha_status atomic_file_commit(atomic_file *f, mha_error *err) {
    mha_status st = MHA_OK;
    if (f->stream) {
        if (close(f->fd) != 0)
            st = mha_fail(err, MHA_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
        atomic_file_free(f);
        return st;
    }
    fchmod(f->fd, 0666 & ~atomic_file_umask()); /* mkstemp made it 0600 */
    if (fsync(f->fd) != 0)
        st = mha_fail(err, MHA_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
    if (close(f->fd) != 0 && st == MHA_OK)
        st = mha_fail(err, MHA_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
    f->fd = -1;
    if (st == MHA_OK && rename(f->tmp_path, f->target) != 0)
        st = mha_fail(err, MHA_ERR_IO, "%s: cannot rename the finished file into place: %s",
                      f->path, strerror(errno));
    if (st != MHA_OK) {
        unlink(f->tmp_path);
    } else {
        /* make the rename itself durable; a folder that cannot be opened
         * or synced does not undo a complete file */
        int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    atomic_file_free(f);
    return st;
}

void atomic_file_abort(atomic_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (!f->stream) unlink(f->tmp_path);
    atomic_file_free(f);
}

/* Both saves: the whole buffer through af_begin. */
static mha_status af_save(const mha_alloc_ctx *a, const char *path, int follow, const void *data,
                          size_t n, mha_error *err) {
    atomic_file *f;
    mha_status st = af_begin(a, path, follow, &f, err);
    if (st != MHA_OK) return st;
    st = atomic_file_write(f, data, n, err);
    if (st != MHA_OK) {
        atomic_file_abort(f);
        return st;
    }
    return atomic_file_commit(f, err);
}

mha_status atomic_file_save(const mha_alloc_ctx *a, const char *path, const void *data, size_t n,
                            mha_error *err) {
    return af_save(a, path, 1, data, n, err);
}

mha_status atomic_file_save_nofollow(const mha_alloc_ctx *a, const char *path, const void *data,
                                     size_t n, mha_error *err) {
    return af_save(a, path, 0, data, n, err);
}

/* ------------------------------------------------------------------------ */
/* stale temporaries                                                         */
/* ------------------------------------------------------------------------ */

int atomic_file_clean_stale(const mha_alloc_ctx *a, const char *path, const char *const *keep,
                            size_t n_keep) {
    atomic_dest d;
    mha_error err;
    if (atomic_dest_resolve(a, path, &d, &err) != MHA_OK) return 0;
    int removed = 0;
    char *dir = d.kind == ATOMIC_DEST_FILE ? af_dirname(a, d.target) : NULL;
    char *tmp_head = dir ? af_head(a, d.target, 0) : NULL;
    char *partial_head = dir ? af_head(a, d.target, 1) : NULL;
    DIR *dh = tmp_head && partial_head ? opendir(dir) : NULL;
    struct dirent *e;
    while (dh && (e = readdir(dh)) != NULL) {
        if (!af_matches(e->d_name, tmp_head) && !af_matches(e->d_name, partial_head)) continue;
        char *full = af_join(a, dir, e->d_name, "");
        if (!full) break;
        int kept = 0;
        for (size_t k = 0; k < n_keep && !kept; k++)
            kept = keep[k] && strcmp(keep[k], full) == 0;
        struct stat sb;
        if (!kept && fstatat(dirfd(dh), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(sb.st_mode) && sb.st_uid == geteuid() && unlinkat(dirfd(dh), e->d_name, 0) == 0)
            removed++;
        mha_free(a, full);
    }
    if (dh) closedir(dh);
    mha_free(a, tmp_head);
    mha_free(a, partial_head);
    mha_free(a, dir);
    atomic_dest_clear(a, &d);
    return removed;
}

/* ------------------------------------------------------------------------ */
/* locks                                                                     */
/* ------------------------------------------------------------------------ */

struct atomic_lock {
    mha_alloc_ctx alloc; /* a copy: a lock may outlive the caller's context */
    int fd;
    char *lock_path;
};

mha_status atomic_lock_acquire(const mha_alloc_ctx *a, const char *path, atomic_lock **out,
                               mha_error *err) {
    *out = NULL;
    atomic_dest d;
    mha_status st = atomic_dest_resolve(a, path, &d, err);
    if (st != MHA_OK) return st;
    if (d.kind == ATOMIC_DEST_STREAM) {
        atomic_dest_clear(a, &d);
        return MHA_OK;
    }
    atomic_lock *l = mha_calloc(a, 1, sizeof *l);
    if (l) {
        l->alloc = *a;
        l->fd = -1;
        l->lock_path = mha_malloc(a, strlen(d.target) + 6);
        if (l->lock_path) snprintf(l->lock_path, strlen(d.target) + 6, "%s.lock", d.target);
    }
    atomic_dest_clear(a, &d);
    if (!l || !l->lock_path) {
        atomic_lock_release(l);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    /* The lock file is removed on release, so a lock taken on a file that
     * was just unlinked (or replaced) is taken again on the new one. */
    for (int tries = 0; tries < 100; tries++) {
        l->fd = open(l->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
        if (l->fd < 0) {
            st = mha_fail(err, MHA_ERR_IO, "%s: cannot open the lock file %s: %s", path,
                          l->lock_path, errno == ELOOP ? "it is a symbolic link" : strerror(errno));
            break;
        }
        struct stat fsb, psb;
        if (fstat(l->fd, &fsb) != 0 || !S_ISREG(fsb.st_mode)) {
            st = mha_fail(err, MHA_ERR_IO, "%s: the lock file %s is not a regular file", path,
                          l->lock_path);
            break;
        }
        int locked = flock(l->fd, LOCK_EX | LOCK_NB) == 0, e = errno;
        if (!locked && (e == ENOLCK || e == ENOSYS || e == EOPNOTSUPP)) {
            /* a file system without locks (some network mounts): the run
             * goes on unprotected rather than not at all */
            atomic_lock_release(l); /* removes the lock file */
            return MHA_OK;
        }
        if (!locked) {
            st = e == EWOULDBLOCK
                     ? mha_fail(err, MHA_ERR_IO,
                                "%s: another process is writing this output (%s is locked)", path,
                                l->lock_path)
                     : mha_fail(err, MHA_ERR_IO, "%s: cannot lock %s: %s", path, l->lock_path,
                                strerror(e));
            break;
        }
        if (lstat(l->lock_path, &psb) == 0 && psb.st_dev == fsb.st_dev &&
            psb.st_ino == fsb.st_ino) {
            *out = l;
            return MHA_OK;
        }
        close(l->fd); /* the file we locked was removed meanwhile: again */
        l->fd = -1;
    }
    if (st == MHA_OK)
        st = mha_fail(err, MHA_ERR_IO, "%s: the lock file %s keeps changing", path, l->lock_path);
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    mha_free(a, l->lock_path);
    mha_free(a, l);
    return st;
}

void atomic_lock_release(atomic_lock *l) {
    if (!l) return;
    if (l->fd >= 0) {
        unlink(l->lock_path); /* while still locked: see atomic_lock_acquire */
        close(l->fd);
    }
    mha_alloc_ctx a = l->alloc;
    mha_free(&a, l->lock_path);
    mha_free(&a, l);
}
