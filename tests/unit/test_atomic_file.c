/* test_atomic_file.c -- output files (engine/src/io/atomic_file.c): where a
 * destination leads (symlinks followed, "-", FIFOs and devices as streams,
 * folders refused, the missing folder named), the partial files of a
 * resumable run (created exclusively, reopened only when plainly ours), the
 * lock per output, and the cleaning of what kill -9 left. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dlfcn.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"

static mha_alloc_ctx alloc;

/* The engine, linked statically into this test, calls this flock: an errno
 * to fail with, or 0 for the C library's. */
static int flock_fails_with;

int flock(int fd, int operation) {
    if (flock_fails_with) {
        errno = flock_fails_with;
        return -1;
    }
    int (*real)(int, int) = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
    return real(fd, operation);
}

/* buf (1200 bytes) = dir + "/" + name */
static void path_in(char *buf, const char *dir, const char *name) {
    snprintf(buf, 1200, "%s/%s", dir, name);
}

static int is_link(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode);
}

static char *read_text(const char *path) {
    size_t n;
    char *t = tu_read_file(path, &n);
    if (!t) return NULL;
    char *z = realloc(t, n + 1);
    if (!z) {
        free(t);
        return NULL;
    }
    z[n] = '\0';
    return z;
}

static void assert_text(const char *path, const char *want) {
    char *got = read_text(path);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* ---- destinations ---- */

static void test_resolve_kinds(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("af_resolve");
    char file[1200], link[1200], chain[1200], fifo[1200], loop[1200];
    path_in(file, dir, "f.bin");
    path_in(link, dir, "link");
    path_in(chain, dir, "chain");
    path_in(fifo, dir, "fifo");
    path_in(loop, dir, "loop");
    assert_int_equal(tu_write_file(file, "x", 1), 0);
    assert_int_equal(symlink("f.bin", link), 0);
    assert_int_equal(symlink("link", chain), 0);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(symlink("loop", loop), 0);
    mha_error err;
    atomic_dest d, e;

    /* descriptors the process has open: written through, never followed */
    assert_int_equal(atomic_dest_resolve(&alloc, "-", &d, &err), MHA_OK);
    assert_int_equal(d.kind, ATOMIC_DEST_STREAM);
    assert_false(d.shareable);
    assert_int_equal(atomic_dest_resolve(&alloc, "/dev/stdout", &e, &err), MHA_OK);
    assert_int_equal(e.kind, ATOMIC_DEST_STREAM);
    assert_string_equal(d.canonical, e.canonical);
    atomic_dest_clear(&alloc, &d);
    atomic_dest_clear(&alloc, &e);
    assert_int_equal(atomic_dest_descriptor("/proc/self/fd/2"), 2);
    assert_int_equal(atomic_dest_descriptor("/dev/fd/"), -1);
    assert_int_equal(atomic_dest_descriptor("/dev/fd/1x"), -1);
    assert_int_equal(atomic_dest_resolve(&alloc, "/dev/fd/987", &d, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "descriptor 987 is not open for writing"));

    /* a chain of links ends at the file; both name the same place */
    assert_int_equal(atomic_dest_resolve(&alloc, chain, &d, &err), MHA_OK);
    assert_int_equal(d.kind, ATOMIC_DEST_FILE);
    assert_string_equal(d.target, file);
    assert_true(d.exists);
    assert_int_equal(atomic_dest_resolve(&alloc, file, &e, &err), MHA_OK);
    assert_string_equal(d.canonical, e.canonical);
    atomic_dest_clear(&alloc, &d);
    atomic_dest_clear(&alloc, &e);

    /* "dir/./f.bin" is the same file too */
    char dotted[1300];
    snprintf(dotted, sizeof dotted, "%s/./f.bin", dir);
    assert_int_equal(atomic_dest_resolve(&alloc, dotted, &d, &err), MHA_OK);
    assert_int_equal(atomic_dest_resolve(&alloc, file, &e, &err), MHA_OK);
    assert_string_equal(d.canonical, e.canonical);
    atomic_dest_clear(&alloc, &d);
    atomic_dest_clear(&alloc, &e);

    assert_int_equal(atomic_dest_resolve(&alloc, fifo, &d, &err), MHA_OK);
    assert_int_equal(d.kind, ATOMIC_DEST_STREAM);
    atomic_dest_clear(&alloc, &d);
    assert_int_equal(atomic_dest_resolve(&alloc, "/dev/null", &d, &err), MHA_OK);
    assert_int_equal(d.kind, ATOMIC_DEST_STREAM);
    assert_true(d.shareable);
    atomic_dest_clear(&alloc, &d);

    /* refusals name what is wrong */
    assert_int_equal(atomic_dest_resolve(&alloc, dir, &d, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "is a folder"));
    assert_null(d.target);
    assert_int_equal(atomic_dest_resolve(&alloc, loop, &d, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "too many levels of symbolic links"));
    assert_int_equal(atomic_dest_resolve(&alloc, tu_path(dir, "no/y.npy"), &d, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "/no' does not exist"));
    assert_int_equal(atomic_dest_resolve(&alloc, tu_path(dir, "f.bin/y.npy"), &d, &err),
                     MHA_ERR_IO);
    assert_non_null(strstr(err.message, "is not a folder"));
}

static void test_write_through_links_and_streams(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("af_through");
    char target[1200], link[1200], dangling[1200], made[1200];
    path_in(target, dir, "t.bin");
    path_in(link, dir, "link");
    path_in(dangling, dir, "dangling");
    path_in(made, dir, "made.bin");
    assert_int_equal(tu_write_file(target, "old", 3), 0);
    assert_int_equal(symlink("t.bin", link), 0);
    assert_int_equal(symlink("made.bin", dangling), 0);
    mha_error err;

    assert_int_equal(atomic_file_save(&alloc, link, "new", 3, &err), MHA_OK);
    assert_true(is_link(link));
    assert_text(target, "new");
    assert_int_equal(atomic_file_save(&alloc, dangling, "made", 4, &err), MHA_OK);
    assert_true(is_link(dangling));
    assert_text(made, "made");

    /* a program's own file: the link is replaced, its target untouched */
    assert_int_equal(atomic_file_save_nofollow(&alloc, link, "own", 3, &err), MHA_OK);
    assert_false(is_link(link));
    assert_text(link, "own");
    assert_text(target, "new");

    /* a device is written directly, never replaced, never removed */
    atomic_file *f;
    assert_int_equal(atomic_file_begin(&alloc, "/dev/null", &f, &err), MHA_OK);
    assert_null(atomic_file_tmp_path(f));
    assert_int_equal(atomic_file_write(f, "abc", 3, &err), MHA_OK);
    assert_int_equal(atomic_file_pwrite(f, "x", 1, 0, &err), MHA_ERR_INVALID_ARGUMENT);
    atomic_file_abort(f);
    assert_int_equal(atomic_file_begin(&alloc, "/dev/null", &f, &err), MHA_OK);
    assert_int_equal(atomic_file_commit(f, &err), MHA_OK);
    struct stat sb;
    assert_int_equal(stat("/dev/null", &sb), 0);
    assert_true(S_ISCHR(sb.st_mode));
    /* a FIFO too: what is written comes out the other end */
    char fifo[1200];
    path_in(fifo, dir, "fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    FILE *reader = NULL;
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cat '%s'", fifo);
    reader = popen(cmd, "r");
    assert_non_null(reader);
    assert_int_equal(atomic_file_save(&alloc, fifo, "piped", 5, &err), MHA_OK);
    char got[16] = {0};
    assert_int_equal(fread(got, 1, sizeof got - 1, reader), 5);
    pclose(reader);
    assert_string_equal(got, "piped");
    assert_int_equal(lstat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
}

/* ---- partial files ---- */

static void test_partial_files(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("af_partial");
    char out[1200], partial[1200], victim[1200], head[1300];
    path_in(out, dir, "y.npy");
    path_in(victim, dir, "victim");
    snprintf(head, sizeof head, "%s.partial.", out);
    assert_int_equal(tu_write_file(victim, "victim", 6), 0);
    /* the fixed name earlier versions used, planted: never followed */
    assert_int_equal(symlink("victim", tu_path(dir, "y.npy.partial")), 0);
    mha_error err;
    atomic_file *f;
    assert_int_equal(atomic_file_begin_partial(&alloc, out, NULL, 0, NULL, 0, &f, &err), MHA_OK);
    snprintf(partial, sizeof partial, "%s", atomic_file_tmp_path(f));
    assert_int_equal(strncmp(partial, head, strlen(head)), 0);
    assert_int_equal(strlen(partial), strlen(head) + 6);
    assert_int_equal(atomic_file_write(f, "HEADrows", 8, &err), MHA_OK);
    atomic_file_detach(f);
    assert_text(victim, "victim");

    /* reopened: the header checked first, then truncated to keep_bytes */
    assert_int_equal(atomic_file_begin_partial(&alloc, out, partial, 6, "HEAX", 4, &f, &err),
                     MHA_ERR_DATA_FORMAT);
    assert_null(f);
    assert_int_equal(atomic_file_begin_partial(&alloc, out, partial, 9, "HEAD", 4, &f, &err),
                     MHA_ERR_IO);
    assert_non_null(strstr(err.message, "fewer than the 9"));
    assert_int_equal(atomic_file_begin_partial(&alloc, out, partial, 6, "HEAD", 4, &f, &err),
                     MHA_OK);
    assert_int_equal(atomic_file_offset(f), 6);
    assert_int_equal(atomic_file_write(f, "!!", 2, &err), MHA_OK);
    assert_int_equal(atomic_file_commit(f, &err), MHA_OK);
    assert_text(out, "HEADro!!");
    assert_int_equal(access(partial, F_OK), -1);

    /* only a partial file of this very output, plainly ours, is reopened */
    assert_int_equal(atomic_file_begin_partial(&alloc, out, victim, 1, NULL, 0, &f, &err),
                     MHA_ERR_IO);
    assert_non_null(strstr(err.message, "not a partial file of"));
    assert_int_equal(atomic_file_begin_partial(&alloc, out, NULL, 0, NULL, 0, &f, &err), MHA_OK);
    snprintf(partial, sizeof partial, "%s", atomic_file_tmp_path(f));
    atomic_file_detach(f);
    assert_int_equal(unlink(partial), 0);
    assert_int_equal(symlink("victim", partial), 0); /* a link in its place */
    assert_int_equal(atomic_file_begin_partial(&alloc, out, partial, 1, NULL, 0, &f, &err),
                     MHA_ERR_IO);
    assert_non_null(strstr(err.message, "symbolic link"));
    assert_int_equal(unlink(partial), 0);
    assert_int_equal(tu_write_file(partial, "HEADrows", 8), 0);
    assert_int_equal(link(partial, tu_path(dir, "second-name")), 0); /* two links */
    assert_int_equal(atomic_file_begin_partial(&alloc, out, partial, 1, NULL, 0, &f, &err),
                     MHA_ERR_IO);
    assert_non_null(strstr(err.message, "more than one link"));
    assert_text(victim, "victim");
    assert_text(partial, "HEADrows");
    /* a stream has no partial file to resume */
    assert_int_equal(atomic_file_begin_partial(&alloc, "/dev/null", partial, 1, NULL, 0, &f, &err),
                     MHA_ERR_INVALID_ARGUMENT);
}

/* ---- stale temporaries ---- */

static void test_clean_stale(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("af_stale");
    const char *stale[] = {".y.npy.tmp.Ab12Cd", "y.npy.partial.Zz9Yy8", "y.npy.partial.keep01"};
    const char *other[] = {".y.npy.tmp.toolong7", "y.npy.partial", ".x.npy.tmp.Ab12Cd",
                           "y.npy.partialAb12Cd", "y.npy"};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(tu_write_file(tu_path(dir, stale[i]), "s", 1), 0);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(tu_write_file(tu_path(dir, other[i]), "o", 1), 0);
    assert_int_equal(symlink("y.npy", tu_path(dir, "y.npy.partial.Link01")), 0);
    char keep[1200];
    snprintf(keep, sizeof keep, "%s", tu_path(dir, stale[2]));
    const char *keep_list[1] = {keep};
    assert_int_equal(atomic_file_clean_stale(&alloc, tu_path(dir, "y.npy"), keep_list, 1), 2);
    assert_int_equal(access(tu_path(dir, stale[0]), F_OK), -1);
    assert_int_equal(access(tu_path(dir, stale[1]), F_OK), -1);
    assert_int_equal(access(keep, F_OK), 0);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(access(tu_path(dir, other[i]), F_OK), 0);
    assert_true(is_link(tu_path(dir, "y.npy.partial.Link01"))); /* links are not ours */
    assert_int_equal(atomic_file_clean_stale(&alloc, "/dev/null", NULL, 0), 0);
}

/* ---- locks ---- */

static void test_lock_per_output(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("af_lock");
    char out[1200], lock_path[1300], link[1200];
    path_in(out, dir, "y.npy");
    snprintf(lock_path, sizeof lock_path, "%s.lock", out);
    path_in(link, dir, "alias.npy");
    assert_int_equal(symlink("y.npy", link), 0);
    mha_error err;
    atomic_lock *l1 = NULL, *l2 = (atomic_lock *)0x1;
    assert_int_equal(atomic_lock_acquire(&alloc, out, &l1, &err), MHA_OK);
    assert_non_null(l1);
    assert_int_equal(access(lock_path, F_OK), 0);
    /* a second writer, by another name for the same file, is refused */
    assert_int_equal(atomic_lock_acquire(&alloc, link, &l2, &err), MHA_ERR_IO);
    assert_null(l2);
    assert_non_null(strstr(err.message, "another process is writing this output"));
    atomic_lock_release(l1);
    assert_int_equal(access(lock_path, F_OK), -1); /* nothing left behind */
    assert_int_equal(atomic_lock_acquire(&alloc, link, &l2, &err), MHA_OK);
    atomic_lock_release(l2);
    atomic_lock_release(NULL);

    /* a lock file left by kill -9 is reused; a planted link is refused */
    assert_int_equal(tu_write_file(lock_path, "", 0), 0);
    assert_int_equal(atomic_lock_acquire(&alloc, out, &l1, &err), MHA_OK);
    atomic_lock_release(l1);
    assert_int_equal(tu_write_file(tu_path(dir, "victim"), "victim", 6), 0);
    assert_int_equal(symlink("victim", lock_path), 0);
    assert_int_equal(atomic_lock_acquire(&alloc, out, &l1, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "it is a symbolic link"));
    assert_text(tu_path(dir, "victim"), "victim");
    /* a file system without locks: no lock, no lock file, no refusal; any
     * other failure is one */
    assert_int_equal(unlink(lock_path), 0);
    flock_fails_with = ENOLCK;
    l1 = (atomic_lock *)0x1;
    assert_int_equal(atomic_lock_acquire(&alloc, out, &l1, &err), MHA_OK);
    assert_null(l1);
    assert_int_equal(access(lock_path, F_OK), -1);
    flock_fails_with = EIO;
    assert_int_equal(atomic_lock_acquire(&alloc, out, &l1, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "cannot lock"));
    flock_fails_with = 0;
    /* a stream needs none */
    l1 = (atomic_lock *)0x1;
    assert_int_equal(atomic_lock_acquire(&alloc, "-", &l1, &err), MHA_OK);
    assert_null(l1);
}

int main(void) {
    mha_alloc_ctx_init(&alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_kinds),
        cmocka_unit_test(test_write_through_links_and_streams),
        cmocka_unit_test(test_partial_files),
        cmocka_unit_test(test_clean_stale),
        cmocka_unit_test(test_lock_per_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
