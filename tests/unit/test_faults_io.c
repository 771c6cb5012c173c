/* test_faults_io.c -- I/O faults: short reads, EINTR, EIO and early end of
 * file on input (models, external data, .npy, .pb); ENOSPC, EIO, short
 * writes and EINTR on output (the atomic writer behind every output file),
 * and a real full filesystem (a 16 KiB tmpfs in a private mount namespace,
 * when the kernel lets the test make one).
 *
 * Faults are injected by interposition: this executable defines read,
 * pread, write, pwrite and fsync itself, so the engine (linked statically
 * into it) calls these, which pass through to the C library's (dlsym
 * RTLD_NEXT) unless a fault is armed. The engine needs no test hook, and
 * every I/O call of every module is reachable -- the importer's as much as
 * tensorfile.c's.
 *
 * What must hold: retried conditions (short transfers, EINTR) give exactly
 * the result of a run without faults; errors give a clean MHA_ERR_IO whose
 * message names the file and says what the system said; a failed write
 * leaves no output file that looks complete -- neither the final name (an
 * older file there is left as it was) nor a temporary -- and no descriptor
 * is leaked. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "onnx_load_internal.h"
#include "tensorfile.h"

/* ------------------------------------------------------------------------ */
/* the fault switch and the interposed calls                                 */
/* ------------------------------------------------------------------------ */

enum {
    OP_READ = 1,  /* read, pread */
    OP_WRITE = 2, /* write, pwrite */
    OP_FSYNC = 4
};

static struct fault {
    int ops;     /* which calls are affected; 0 = none (disarmed) */
    long skip;   /* let this many affected calls through first */
    long fail;   /* then fail this many (-1: all the rest) */
    int err;     /* with this errno; 0: "end of file" (return 0) */
    size_t cap;  /* > 0: every affected transfer moves at most cap bytes */
    long seen;   /* affected calls so far */
    long failed; /* calls made to fail */
} fault;

static void fault_arm(int ops, long skip, long fail, int err, size_t cap) {
    memset(&fault, 0, sizeof fault);
    fault.skip = skip;
    fault.fail = fail;
    fault.err = err;
    fault.cap = cap;
    fault.ops = ops; /* last: arms */
}

static void fault_disarm(void) {
    fault.ops = 0;
}

/* Whether this call fails (-1 with errno, or 0 for end of file), else
 * caps *n. */
static int fault_hit(int op, size_t *n, ssize_t *ret) {
    if (!(fault.ops & op)) return 0;
    long k = fault.seen++;
    if (k >= fault.skip && (fault.fail < 0 || k < fault.skip + fault.fail)) {
        fault.failed++;
        if (fault.err) {
            errno = fault.err;
            *ret = -1;
        } else {
            *ret = 0;
        }
        return 1;
    }
    if (n && fault.cap && *n > fault.cap) *n = fault.cap;
    return 0;
}

#define REAL(name) ((__typeof__(&name))real_fn(#name))

static void *real_fn(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) abort();
    return f;
}

ssize_t read(int fd, void *buf, size_t n) {
    static ssize_t (*real)(int, void *, size_t);
    if (!real) real = REAL(read);
    ssize_t r;
    if (fault_hit(OP_READ, &n, &r)) return r;
    return real(fd, buf, n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) {
    static ssize_t (*real)(int, void *, size_t, off_t);
    if (!real) real = REAL(pread);
    ssize_t r;
    if (fault_hit(OP_READ, &n, &r)) return r;
    return real(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = REAL(write);
    ssize_t r;
    if (fault_hit(OP_WRITE, &n, &r)) return r;
    return real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = REAL(pwrite);
    ssize_t r;
    if (fault_hit(OP_WRITE, &n, &r)) return r;
    return real(fd, buf, n, off);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = REAL(fsync);
    ssize_t r;
    if (fault_hit(OP_FSYNC, NULL, &r)) return (int)r;
    return real(fd);
}

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static mha_alloc_ctx alloc;
static const char *dir; /* this test's folder */

static int lowest_free_fd(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    return fd;
}

static int path_exists(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Whether folder d holds a temporary (a name containing ".tmp.") */
static int temporaries_in(const char *d) {
    return tu_system("ls -A '%s' | grep -q '\\.tmp\\.'", d) == 0;
}

static void expect_io_error(mha_status st, const mha_error *err, const char *path,
                            const char *syserr) {
    if (st != MHA_ERR_IO || err->status != MHA_ERR_IO)
        fail_msg("expected MHA_ERR_IO, got %s: %s", mha_status_name(st), err->message);
    if (path && !strstr(err->message, path))
        fail_msg("message does not name '%s': %s", path, err->message);
    if (syserr && !strstr(err->message, syserr))
        fail_msg("message does not say '%s': %s", syserr, err->message);
    assert_null(strchr(err->message, '\n'));
}

/* ------------------------------------------------------------------------ */
/* input                                                                     */
/* ------------------------------------------------------------------------ */

/* A reader of one file, run with and without a fault. */
typedef struct reader {
    const char *what;
    const char *path;
    /* reads the file; on success fills *bytes / *size with what was read
     * (malloc'd) */
    mha_status (*read)(const char *path, void **bytes, size_t *size, mha_error *err);
} reader;

static mha_status read_tensorfile(const char *path, npy_mmap_mode mode, void **bytes, size_t *size,
                                  mha_error *err) {
    tensorfile_read_options o = {0};
    o.mmap_mode = mode;
    tensorfile *tf = (tensorfile *)&o;
    mha_status st = tensorfile_read(&alloc, path, &o, &tf, err);
    if (st != MHA_OK) {
        assert_null(tf);
        return st;
    }
    *size = (size_t)mha_tensor_numel(&tf->t) * mha_dtype_size(tf->t.dtype);
    *bytes = malloc(*size ? *size : 1);
    assert_non_null(*bytes);
    memcpy(*bytes, tf->t.data, *size);
    tensorfile_free(tf);
    return MHA_OK;
}

static mha_status read_npy_pread(const char *path, void **bytes, size_t *size, mha_error *err) {
    return read_tensorfile(path, NPY_MMAP_NEVER, bytes, size, err);
}

static mha_status read_npy_mmap(const char *path, void **bytes, size_t *size, mha_error *err) {
    return read_tensorfile(path, NPY_MMAP_ALWAYS, bytes, size, err);
}

static mha_status read_pb(const char *path, void **bytes, size_t *size, mha_error *err) {
    return read_tensorfile(path, NPY_MMAP_AUTO, bytes, size, err);
}

/* A model through ir_load_file: what was read is every initializer's data
 * (external data included), in value order. */
static mha_status read_model(const char *path, void **bytes, size_t *size, mha_error *err) {
    ir_graph *g = (ir_graph *)&alloc;
    mha_status st = ir_load_file(&alloc, path, NULL, &g, err);
    if (st != MHA_OK) {
        assert_null(g);
        return st;
    }
    size_t total = 0;
    for (size_t v = 0; v < g->n_values; v++)
        if (g->values[v].init) total += g->values[v].init->nbytes;
    unsigned char *out = malloc(total ? total : 1);
    assert_non_null(out);
    size_t at = 0;
    for (size_t v = 0; v < g->n_values; v++) {
        const tensor *t = g->values[v].init;
        if (!t || !t->nbytes) continue;
        memcpy(out + at, t->data, t->nbytes);
        at += t->nbytes;
    }
    ir_free(g);
    *bytes = out;
    *size = total;
    return MHA_OK;
}

/* Runs r under every read fault: a short-transfer cap of 1 and 7 bytes and
 * EINTR on the first calls must give the same bytes; EIO and an early end of
 * file at each read call in turn must be clean I/O errors. Returns the
 * number of read calls a clean run makes. */
static long read_faults(const reader *r) {
    void *want = NULL, *got = NULL;
    size_t want_n = 0, got_n = 0;
    mha_error err;
    int fd0 = lowest_free_fd();

    fault_arm(OP_READ, 0, 0, 0, 0); /* count only */
    mha_status st = r->read(r->path, &want, &want_n, &err);
    long calls = fault.seen;
    fault_disarm();
    if (st != MHA_OK) fail_msg("%s: clean read failed: %s", r->what, err.message);
    assert_true(calls > 0);

    /* retried conditions: the same result */
    static const size_t caps[] = {1, 7};
    for (size_t k = 0; k < 2; k++) {
        fault_arm(OP_READ, 0, 0, 0, caps[k]);
        st = r->read(r->path, &got, &got_n, &err);
        fault_disarm();
        if (st != MHA_OK) fail_msg("%s: reads of %zu bytes: %s", r->what, caps[k], err.message);
        assert_int_equal(got_n, want_n);
        assert_memory_equal(got, want, want_n);
        free(got);
    }
    fault_arm(OP_READ, 0, 3, EINTR, 0);
    st = r->read(r->path, &got, &got_n, &err);
    fault_disarm();
    if (st != MHA_OK) fail_msg("%s: EINTR not retried: %s", r->what, err.message);
    assert_int_equal(got_n, want_n);
    assert_memory_equal(got, want, want_n);
    free(got);

    /* errors at each call in turn */
    for (long k = 0; k < calls; k++) {
        fault_arm(OP_READ, k, 1, EIO, 0);
        st = r->read(r->path, &got, &got_n, &err);
        fault_disarm();
        expect_io_error(st, &err, NULL, "Input/output error");
        fault_arm(OP_READ, k, -1, 0, 0); /* the file "ends" at this call */
        st = r->read(r->path, &got, &got_n, &err);
        fault_disarm();
        if (st == MHA_OK) fail_msg("%s: end of file at read %ld not noticed", r->what, k);
        expect_io_error(st, &err, NULL, NULL);
    }
    assert_int_equal(lowest_free_fd(), fd0);
    free(want);
    print_message("%-34s %3ld read calls: short, EINTR, EIO and EOF at each handled\n", r->what,
                  calls);
    return calls;
}

static void test_read_npy(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/in.npy", dir);
    float data[3 * 50];
    tu_fill_random(data, 150, 1);
    mha_tensor t = {MHA_DTYPE_FLOAT32, 2, {3, 50}, data};
    mha_error err;
    assert_int_equal(tensorfile_write(&alloc, path, &t, "", &err), MHA_OK);
    reader r = {"tensorfile_read .npy (pread)", path, read_npy_pread};
    read_faults(&r);
    /* mapped: only the header goes through read calls */
    reader m = {"tensorfile_read .npy (mmap)", path, read_npy_mmap};
    read_faults(&m);
}

static void test_read_pb(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/conformance/mha_self_d16_h1_b1_s1/test_data_set_0/input_0.pb",
             MHA_TEST_DATA);
    reader r = {"tensorfile_read .pb", path, read_pb};
    read_faults(&r);
}

static void test_read_model(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/conformance/mha_self_d16_h1_b1_s1/model.onnx", MHA_TEST_DATA);
    reader r = {"ir_load_file", path, read_model};
    read_faults(&r);
}

/* A model whose one initializer lives in an external file. */
static void write_external_model(const char *model_path, const char *data_name, size_t n) {
    Onnx__StringStringEntryProto loc = ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    loc.key = "location";
    loc.value = (char *)data_name;
    Onnx__StringStringEntryProto *kv[1] = {&loc};
    Onnx__TensorProto w = ONNX__TENSOR_PROTO__INIT;
    int64_t dims[1] = {(int64_t)n};
    w.n_dims = 1;
    w.dims = dims;
    w.has_data_type = 1;
    w.data_type = MHA_DTYPE_FLOAT32;
    w.name = "W";
    w.n_external_data = 1;
    w.external_data = kv;
    w.has_data_location = 1;
    w.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    Onnx__TensorProto *inits[1] = {&w};
    char *in[1] = {"W"}, *out[1] = {"Y"};
    Onnx__NodeProto node = ONNX__NODE_PROTO__INIT;
    node.op_type = "Identity";
    node.n_input = 1;
    node.input = in;
    node.n_output = 1;
    node.output = out;
    Onnx__NodeProto *nodes[1] = {&node};
    Onnx__ValueInfoProto y = ONNX__VALUE_INFO_PROTO__INIT;
    y.name = "Y";
    Onnx__ValueInfoProto *outs[1] = {&y};
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.n_node = 1;
    graph.node = nodes;
    graph.n_initializer = 1;
    graph.initializer = inits;
    graph.n_output = 1;
    graph.output = outs;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    opset.domain = "";
    opset.has_version = 1;
    opset.version = 17;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = 8;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.graph = &graph;
    size_t size = onnx__model_proto__get_packed_size(&model);
    unsigned char *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(onnx__model_proto__pack(&model, buf), size);
    assert_int_equal(tu_write_file(model_path, buf, size), 0);
    free(buf);
}

static void test_read_external_data(void **state) {
    (void)state;
    char model[1024], data_path[1024];
    snprintf(model, sizeof model, "%s/ext.onnx", dir);
    snprintf(data_path, sizeof data_path, "%s/ext.bin", dir);
    float w[300];
    tu_fill_random(w, 300, 2);
    assert_int_equal(tu_write_file(data_path, w, sizeof w), 0);
    write_external_model(model, "ext.bin", 300);
    reader r = {"ir_load_file + external data", model, read_model};
    long calls = read_faults(&r);
    assert_true(calls >= 2); /* the model file, then the external data */

    /* the message of a failing external read names the data file */
    fault_arm(OP_READ, calls - 1, 1, EIO, 0);
    ir_graph *g = NULL;
    mha_error err;
    mha_status st = ir_load_file(&alloc, model, NULL, &g, &err);
    fault_disarm();
    expect_io_error(st, &err, "ext.bin", "Input/output error");
}

/* The mapping of a .npy is read after open: a file cut short after opening
 * must not crash the reader. pread path: a clean I/O error. */
static void test_read_file_shrinks(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/shrink.npy", dir);
    float data[4 * 64];
    tu_fill_random(data, 256, 3);
    mha_tensor t = {MHA_DTYPE_FLOAT32, 2, {4, 64}, data};
    mha_error err;
    assert_int_equal(tensorfile_write(&alloc, path, &t, "", &err), MHA_OK);
    npy_reader *r = NULL;
    assert_int_equal(npy_reader_open(&alloc, path, NPY_MMAP_NEVER, &r, &err), MHA_OK);
    assert_int_equal(truncate(path, 200), 0);
    float rows[4 * 64];
    mha_status st = npy_reader_read_rows(r, 0, 4, MHA_DTYPE_UNDEFINED, rows, sizeof rows, &err);
    expect_io_error(st, &err, path, NULL);
    npy_reader_close(r);
}

/* ------------------------------------------------------------------------ */
/* output                                                                    */
/* ------------------------------------------------------------------------ */

static float out_data[8 * 256];
static const mha_tensor out_tensor = {MHA_DTYPE_FLOAT32, 2, {8, 256}, out_data};

/* Writes out_tensor to path under the armed fault; returns the status. */
static mha_status write_out(const char *path, mha_error *err) {
    return tensorfile_write(&alloc, path, &out_tensor, "y", err);
}

/* The file at path must hold exactly what a fault-free write gives. */
static void expect_complete(const char *path, const void *want, size_t want_n) {
    size_t n = 0;
    void *got = tu_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, want_n);
    assert_memory_equal(got, want, n);
    free(got);
}

static void write_faults(const char *ext) {
    char path[1024], ref_path[1024];
    snprintf(path, sizeof path, "%s/out.%s", dir, ext);
    snprintf(ref_path, sizeof ref_path, "%s/ref.%s", dir, ext);
    mha_error err;
    int fd0 = lowest_free_fd();

    /* the reference, and how many write calls it takes */
    fault_arm(OP_WRITE, 0, 0, 0, 0);
    assert_int_equal(write_out(ref_path, &err), MHA_OK);
    long calls = fault.seen;
    fault_disarm();
    size_t ref_n = 0;
    void *ref = tu_read_file(ref_path, &ref_n);
    assert_non_null(ref);

    /* short writes and EINTR: the same file */
    static const size_t caps[] = {1, 1000};
    for (size_t k = 0; k < 2; k++) {
        unlink(path);
        fault_arm(OP_WRITE, 0, 0, 0, caps[k]);
        mha_status st = write_out(path, &err);
        fault_disarm();
        if (st != MHA_OK) fail_msg("writes of %zu bytes: %s", caps[k], err.message);
        expect_complete(path, ref, ref_n);
    }
    unlink(path);
    fault_arm(OP_WRITE, 0, 3, EINTR, 0);
    assert_int_equal(write_out(path, &err), MHA_OK);
    fault_disarm();
    expect_complete(path, ref, ref_n);

    /* errors: ENOSPC and EIO at each write call (after partial writes of
     * 100 bytes each, so the file is part-written when it fails), EIO from
     * fsync. An older complete file at the destination survives. */
    static const char old[] = "an older, complete file";
    static const int errs[] = {ENOSPC, EIO};
    static const char *const texts[] = {"No space left on device", "Input/output error"};
    long total_calls = 0;
    for (int with_old = 0; with_old <= 1; with_old++) {
        for (size_t e = 0; e < 2; e++) {
            for (long k = 0;; k++) {
                unlink(path);
                if (with_old) assert_int_equal(tu_write_file(path, old, sizeof old), 0);
                fault_arm(OP_WRITE, k, 1, errs[e], 100);
                mha_status st = write_out(path, &err);
                long seen = fault.seen, failed = fault.failed;
                fault_disarm();
                if (failed == 0) { /* past the last write call */
                    assert_int_equal(st, MHA_OK);
                    total_calls = seen;
                    break;
                }
                expect_io_error(st, &err, path, texts[e]);
                if (with_old)
                    expect_complete(path, old, sizeof old);
                else
                    assert_false(path_exists(path));
                assert_false(temporaries_in(dir));
            }
        }
        unlink(path);
        if (with_old) assert_int_equal(tu_write_file(path, old, sizeof old), 0);
        fault_arm(OP_FSYNC, 0, 1, EIO, 0);
        mha_status st = write_out(path, &err);
        fault_disarm();
        expect_io_error(st, &err, path, "Input/output error");
        if (with_old)
            expect_complete(path, old, sizeof old);
        else
            assert_false(path_exists(path));
        assert_false(temporaries_in(dir));
    }
    assert_int_equal(lowest_free_fd(), fd0);
    unlink(path);
    unlink(ref_path);
    free(ref);
    print_message("tensorfile_write .%-4s %ld write calls (%ld in 100-byte pieces): short, "
                  "EINTR, ENOSPC, EIO and fsync EIO handled\n",
                  ext, calls, total_calls);
}

static void test_write_npy(void **state) {
    (void)state;
    write_faults("npy");
}

static void test_write_pb(void **state) {
    (void)state;
    write_faults("pb");
}

/* The streaming writer: a failure in the middle of the rows, then abort. */
static void test_write_npy_streaming(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/stream.npy", dir);
    unlink(path);
    mha_error err;
    int64_t dims[2] = {8, 256};
    npy_writer *w = NULL;
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, 2, dims, &w, &err), MHA_OK);
    assert_int_equal(npy_writer_write_rows(w, out_data, 3, &err), MHA_OK);
    fault_arm(OP_WRITE, 0, -1, ENOSPC, 0);
    mha_status st = npy_writer_write_rows(w, out_data + 3 * 256, 3, &err);
    fault_disarm();
    expect_io_error(st, &err, path, "No space left on device");
    npy_writer_abort(w);
    assert_false(path_exists(path));
    assert_false(temporaries_in(dir));

    /* a failure at commit (fsync) */
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, 2, dims, &w, &err), MHA_OK);
    assert_int_equal(npy_writer_write_rows(w, out_data, 8, &err), MHA_OK);
    fault_arm(OP_FSYNC, 0, -1, EIO, 0);
    st = npy_writer_commit(w, &err);
    fault_disarm();
    expect_io_error(st, &err, path, "Input/output error");
    assert_false(path_exists(path));
    assert_false(temporaries_in(dir));
}

/* The rename that publishes a file fails (a folder has the name). */
static void test_write_rename_fails(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/taken.npy", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    mha_error err;
    mha_status st = write_out(path, &err);
    expect_io_error(st, &err, path, NULL);
    assert_false(temporaries_in(dir));
    rmdir(path);
}

/* A real full filesystem: in a child with a private mount namespace (made
 * as root, or through a user namespace), a 16 KiB tmpfs; a 64 KiB output
 * must fail with ENOSPC and leave nothing behind. Skipped when the kernel
 * or the sandbox refuses namespaces or mounts. */
static int full_fs_child(const char *mnt) {
    if (unshare(CLONE_NEWNS) != 0) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return 77;
        char map[64];
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        if (tu_write_file("/proc/self/uid_map", map, strlen(map)) != 0) return 77;
        tu_write_file("/proc/self/setgroups", "deny", 4);
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if (tu_write_file("/proc/self/gid_map", map, strlen(map)) != 0) return 77;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return 77;
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=16k") != 0) return 77;
    char path[1100];
    snprintf(path, sizeof path, "%s/full.npy", mnt);
    static float big[16384];
    mha_tensor t = {MHA_DTYPE_FLOAT32, 1, {16384}, big};
    mha_error err;
    mha_status st = tensorfile_write(&alloc, path, &t, "", &err);
    if (st != MHA_ERR_IO || !strstr(err.message, "No space left on device")) {
        fprintf(stderr, "full tmpfs: got %s: %s\n", mha_status_name(st), err.message);
        return 1;
    }
    if (path_exists(path) || temporaries_in(mnt)) {
        fprintf(stderr, "full tmpfs: something was left behind\n");
        return 1;
    }
    /* a file that fits still works there */
    mha_tensor small = {MHA_DTYPE_FLOAT32, 1, {256}, big};
    if (tensorfile_write(&alloc, path, &small, "", &err) != MHA_OK) {
        fprintf(stderr, "full tmpfs: small write: %s\n", err.message);
        return 1;
    }
    return 0;
}

static void test_write_full_filesystem(void **state) {
    (void)state;
    char mnt[1024];
    snprintf(mnt, sizeof mnt, "%s/tmpfs", dir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(full_fs_child(mnt));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        print_message("full filesystem: skipped (no mount namespace here)\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(status), 0);
    print_message("full filesystem: a 64 KiB write to a 16 KiB tmpfs fails cleanly\n");
}

int main(void) {
    mha_alloc_ctx_init(&alloc, NULL);
    dir = tu_tmpdir("faults_io");
    tu_fill_random(out_data, sizeof out_data / sizeof out_data[0], 4);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_npy),           cmocka_unit_test(test_read_pb),
        cmocka_unit_test(test_read_model),         cmocka_unit_test(test_read_external_data),
        cmocka_unit_test(test_read_file_shrinks),  cmocka_unit_test(test_write_npy),
        cmocka_unit_test(test_write_pb),           cmocka_unit_test(test_write_npy_streaming),
        cmocka_unit_test(test_write_rename_fails), cmocka_unit_test(test_write_full_filesystem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
