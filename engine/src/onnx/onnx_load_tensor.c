/* onnx_load_tensor.c -- the one tensor loader of the ONNX importer. Every
 * tensor the engine reads from a file goes through onnx_tensor_load:
 * initializers, Constant values, attribute tensors, both halves of sparse
 * tensors, and the test-data TensorProto files. Every check lives here:
 * dtype, rank, dims >= 0, checked element count and byte size, exact data
 * length, and external data confined to the model's folder. */
#define _GNU_SOURCE
#include "onnx_load_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437 /* the same number on every Linux architecture */
#endif

const char *onnx_dtype_name(int32_t onnx_type) {
    static const char *const names[] = {
        "undefined",      "float32",    "uint8",          "int8",       "uint16",   "int16",
        "int32",          "int64",      "string",         "bool",       "float16",  "float64",
        "uint32",         "uint64",     "complex64",      "complex128", "bfloat16", "float8e4m3fn",
        "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "uint4",      "int4",     "float4e2m1"};
    if (onnx_type >= 0 && (size_t)onnx_type < sizeof names / sizeof names[0])
        return names[onnx_type];
    return "unknown";
}

/* tensor_file: a TensorProto file (mha run's inputs, mha check's cases),
 * which may also hold token ids stored as uint16, int16 or uint32; a
 * model's tensors may not (no operator computes in them). */
static int dtype_supported(int32_t onnx_type, int tensor_file) {
    switch (onnx_type) {
    case MHA_DTYPE_UINT16:
    case MHA_DTYPE_INT16:
    case MHA_DTYPE_UINT32:
        return tensor_file;
    case MHA_DTYPE_FLOAT32:
    case MHA_DTYPE_UINT8:
    case MHA_DTYPE_INT8:
    case MHA_DTYPE_INT32:
    case MHA_DTYPE_INT64:
    case MHA_DTYPE_BOOL:
    case MHA_DTYPE_FLOAT16:
    case MHA_DTYPE_FLOAT64:
    case MHA_DTYPE_BFLOAT16:
        return 1;
    default:
        return 0;
    }
}

/* ONNX stores raw_data little-endian; convert in place on a big-endian host. */
static void bytes_from_little_endian(void *data, size_t nbytes, size_t esize) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    unsigned char *p = data;
    for (size_t i = 0; esize > 1 && i + esize <= nbytes; i += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            unsigned char c = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = c;
        }
#else
    (void)data;
    (void)nbytes;
    (void)esize;
#endif
}

void onnx_load_ctx_init(onnx_load_ctx *lc, const mha_alloc_ctx *alloc, const char *base_dir,
                        uint64_t max_bytes) {
    lc->alloc = alloc;
    lc->base_dir = base_dir;
    lc->dir_fd = -1;
    lc->max_bytes = max_bytes ? max_bytes : ONNX_DEFAULT_MAX_FILE_BYTES;
    lc->external_bytes = 0;
    lc->skip_external_read = 0;
    lc->tensor_file = 0;
    lc->external_id = 0;
}

void onnx_load_ctx_close(onnx_load_ctx *lc) {
    if (lc->dir_fd >= 0) close(lc->dir_fd);
    lc->dir_fd = -1;
}

/* A tensor header (everything but the data) with owned storage adopted or
 * allocated by the caller. */
static mha_status tensor_shell(const mha_alloc_ctx *a, mha_dtype dt, int rank, const int64_t *dims,
                               size_t nbytes, void *adopt, tensor **out, mha_error *err) {
    tensor *t = mha_calloc(a, 1, sizeof *t);
    if (!t) return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory allocating a tensor");
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->nbytes = nbytes;
    t->alloc = a;
    t->owns_data = 1;
    t->data = adopt;
    *out = t;
    return MHA_OK;
}

/* ---- external data ---- */

int onnx_open_beneath(int dir_fd, const char *rel, int force_fallback) {
    /* O_NONBLOCK: opening a FIFO planted in the folder must not hang; it is
     * refused by the regular-file check after the open. */
    const int file_flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (!force_fallback) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = (uint64_t)file_flags;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = syscall(SYS_openat2, dir_fd, rel, &how, sizeof how);
        if (fd >= 0) return (int)fd;
        /* ENOSYS: kernel older than 5.6; EPERM: a seccomp filter that does
         * not know the call. Anything else is the real answer. */
        if (errno != ENOSYS && errno != EPERM) return -1;
    }

    /* Component by component, refusing every symlink (stricter than
     * RESOLVE_BENEATH, which allows links that stay inside). */
    int cur = dir_fd;
    const char *p = rel;
    for (;;) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *next = p + len;
        while (*next == '/')
            next++;
        int last = *next == '\0';
        if (len == 0) { /* empty path or trailing slash */
            if (cur != dir_fd) close(cur);
            errno = ENOENT;
            return -1;
        }
        char comp[NAME_MAX + 1];
        if (len > NAME_MAX) {
            if (cur != dir_fd) close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        if (strcmp(comp, "..") == 0) {
            if (cur != dir_fd) close(cur);
            errno = EXDEV;
            return -1;
        }
        if (strcmp(comp, ".") == 0 && !last) {
            p = next;
            continue;
        }
        int nfd = last ? openat(cur, comp, file_flags | O_NOFOLLOW)
                       : openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (nfd < 0) {
            struct stat st;
            if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) e = ELOOP;
        }
        if (cur != dir_fd) close(cur);
        if (nfd < 0) {
            errno = e;
            return -1;
        }
        if (last) return nfd;
        cur = nfd;
        p = next;
    }
}

/* Parses a non-negative decimal integer; 0 when it is not one. */
static int parse_decimal(const char *s, int64_t *out) {
    if (!s || !*s) return 0;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        if (v > (INT64_MAX - (*p - '0')) / 10) return 0;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 1;
}

static mha_status check_location(const char *label, const char *loc, mha_error *err) {
    if (!loc || !*loc)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: external data has no location", label);
    if (loc[0] == '/')
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: external data location '%s' is an absolute path (only paths "
                        "relative to the model's folder are allowed)",
                        label, loc);
    for (const char *p = loc; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: external data location '%s' contains a '..' component (only "
                            "paths inside the model's folder are allowed)",
                            label, loc);
        p += len;
        while (*p == '/')
            p++;
    }
    return MHA_OK;
}

static mha_status tensor_read_external(onnx_load_ctx *lc, const Onnx__TensorProto *tp,
                                       const char *label, mha_dtype dt, int rank,
                                       const int64_t *dims, size_t nbytes, tensor **out,
                                       mha_error *err) {
    const char *loc = NULL, *off_s = NULL, *len_s = NULL;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = tp->external_data[i];
        if (!kv->key) continue;
        const char **slot = strcmp(kv->key, "location") == 0 ? &loc
                            : strcmp(kv->key, "offset") == 0 ? &off_s
                            : strcmp(kv->key, "length") == 0 ? &len_s
                                                             : NULL;
        if (!slot) continue; /* checksum and keys of other tools */
        /* a key given twice names two places: which one is the data is a
         * guess (ONNX's Python takes the last, a reader may take the
         * first), so it is refused */
        if (*slot)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: external data key '%s' is given twice ('%s' and '%s')", label,
                            kv->key, *slot, kv->value ? kv->value : "");
        *slot = kv->value ? kv->value : "";
    }
    mha_status st = check_location(label, loc, err);
    if (st != MHA_OK) return st;
    if (!lc->base_dir)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        lc->tensor_file
                            ? "%s: external data '%s' is not read: a tensor file holds its data "
                              "itself (save it without external data)"
                            : "%s: external data '%s' cannot be resolved: the model was loaded "
                              "from memory without a folder",
                        label, loc);
    int64_t offset = 0, length = (int64_t)nbytes;
    if (off_s && !parse_decimal(off_s, &offset))
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: external data offset '%s' is not a non-negative integer", label,
                        off_s);
    if (len_s && !parse_decimal(len_s, &length))
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: external data length '%s' is not a non-negative integer", label,
                        len_s);
    if ((uint64_t)length != (uint64_t)nbytes)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: external data length %lld bytes, expected %zu for the tensor's "
                        "shape and type",
                        label, (long long)length, nbytes);
    /* the same bound as the model file, for all external tensors together:
     * a small model cannot make the loader read (or allocate) more */
    if (!lc->skip_external_read && (uint64_t)nbytes > lc->max_bytes - lc->external_bytes)
        return mha_fail(err, MHA_ERR_LIMIT,
                        "%s: external data '%s' of %zu bytes takes the model's external data "
                        "past the limit of %llu bytes (after %llu bytes)",
                        label, loc, nbytes, (unsigned long long)lc->max_bytes,
                        (unsigned long long)lc->external_bytes);

    if (lc->dir_fd < 0) {
        lc->dir_fd = open(lc->base_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (lc->dir_fd < 0)
            return mha_fail(err, MHA_ERR_IO, "%s: cannot open the model folder '%s': %s", label,
                            lc->base_dir, strerror(errno));
    }
    int fd = onnx_open_beneath(lc->dir_fd, loc, 0);
    if (fd < 0) {
        int e = errno;
        if (e == EXDEV || e == ELOOP)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: external data '%s' resolves outside the model folder '%s' "
                            "(symlink or magic link refused)",
                            label, loc, lc->base_dir);
        if (e == ENOENT)
            return mha_fail(err, MHA_ERR_IO, "%s: external data file '%s' not found in '%s'", label,
                            loc, lc->base_dir);
        return mha_fail(err, MHA_ERR_IO, "%s: cannot open external data '%s' in '%s': %s", label,
                        loc, lc->base_dir, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: external data '%s' is not a regular file",
                        label, loc);
    }
    if (offset > (int64_t)sb.st_size || length > (int64_t)sb.st_size - offset) {
        close(fd);
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: external data '%s' offset %lld + length %lld runs past the "
                        "file's end (%lld bytes)",
                        label, loc, (long long)offset, (long long)length, (long long)sb.st_size);
    }
    if (lc->skip_external_read) { /* checked, not wanted: nothing read */
        close(fd);
        *out = NULL;
        return MHA_OK;
    }
    /* which file, as it is now (see onnx_load_ctx.external_id) */
    const uint64_t parts[6] = {(uint64_t)sb.st_dev,          (uint64_t)sb.st_ino,
                               (uint64_t)sb.st_size,         (uint64_t)sb.st_mtim.tv_sec,
                               (uint64_t)sb.st_mtim.tv_nsec, (uint64_t)offset};
    for (int k = 0; k < 6; k++) {
        lc->external_id ^= parts[k] + 0x9e3779b97f4a7c15ull;
        lc->external_id *= 0xbf58476d1ce4e5b9ull;
        lc->external_id ^= lc->external_id >> 31;
    }
    if (lc->external_id == 0) lc->external_id = 1;
    tensor *t = NULL;
    st = tensor_new(lc->alloc, dt, rank, dims, &t, err);
    if (st != MHA_OK) {
        close(fd);
        mha_error_prefix(err, "%s", label);
        return st;
    }
    lc->external_bytes += nbytes;
    size_t got = 0;
    while (got < nbytes) {
        ssize_t r =
            pread(fd, (unsigned char *)t->data + got, nbytes - got, (off_t)(offset + (int64_t)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            tensor_free(t);
            return mha_fail(err, MHA_ERR_IO, "%s: reading external data '%s' failed: %s", label,
                            loc, r == 0 ? "file shrank while reading" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    bytes_from_little_endian(t->data, nbytes, mha_dtype_size(dt));
    *out = t;
    return MHA_OK;
}

/* ---- typed fields ---- */

/* Which repeated field carries a dtype's values when raw_data is absent. */
typedef enum typed_field { FIELD_FLOAT, FIELD_INT32, FIELD_INT64, FIELD_DOUBLE } typed_field;

static typed_field typed_field_of(mha_dtype dt) {
    switch (dt) {
    case MHA_DTYPE_FLOAT32:
        return FIELD_FLOAT;
    case MHA_DTYPE_INT64:
        return FIELD_INT64;
    case MHA_DTYPE_FLOAT64:
        return FIELD_DOUBLE;
    default:
        return FIELD_INT32; /* int32, int8, uint8, bool, float16/bfloat16 bits */
    }
}

static const char *typed_field_name(typed_field f) {
    switch (f) {
    case FIELD_FLOAT:
        return "float_data";
    case FIELD_INT32:
        return "int32_data";
    case FIELD_INT64:
        return "int64_data";
    case FIELD_DOUBLE:
        return "double_data";
    }
    return "?";
}

static size_t typed_field_count(const Onnx__TensorProto *tp, typed_field f) {
    switch (f) {
    case FIELD_FLOAT:
        return tp->n_float_data;
    case FIELD_INT32:
        return tp->n_int32_data;
    case FIELD_INT64:
        return tp->n_int64_data;
    case FIELD_DOUBLE:
        return tp->n_double_data;
    }
    return 0;
}

/* Narrows int32_data into the tensor's element type, refusing values that do
 * not fit (the field is int32 on the wire whatever the dtype). */
static mha_status typed_from_int32(const Onnx__TensorProto *tp, const char *label, tensor *t,
                                   mha_error *err) {
    int32_t lo, hi;
    switch (t->dtype) {
    case MHA_DTYPE_INT8:
        lo = -128, hi = 127;
        break;
    case MHA_DTYPE_UINT8:
        lo = 0, hi = 255;
        break;
    case MHA_DTYPE_BOOL:
        lo = 0, hi = 1;
        break;
    case MHA_DTYPE_FLOAT16:
    case MHA_DTYPE_BFLOAT16:
    case MHA_DTYPE_UINT16:
        lo = 0, hi = 65535;
        break;
    case MHA_DTYPE_INT16:
        lo = -32768, hi = 32767;
        break;
    default:
        lo = INT32_MIN, hi = INT32_MAX;
        break;
    }
    for (size_t i = 0; i < tp->n_int32_data; i++) {
        int32_t v = tp->int32_data[i];
        if (v < lo || v > hi)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: int32_data element %zu is %d, outside the range of %s "
                            "[%d, %d]",
                            label, i, (int)v, mha_dtype_name(t->dtype), (int)lo, (int)hi);
        switch (t->dtype) {
        case MHA_DTYPE_INT8:
            ((int8_t *)t->data)[i] = (int8_t)v;
            break;
        case MHA_DTYPE_UINT8:
        case MHA_DTYPE_BOOL:
            ((uint8_t *)t->data)[i] = (uint8_t)v;
            break;
        case MHA_DTYPE_FLOAT16:
        case MHA_DTYPE_BFLOAT16:
        case MHA_DTYPE_UINT16:
            ((uint16_t *)t->data)[i] = (uint16_t)v;
            break;
        case MHA_DTYPE_INT16:
            ((int16_t *)t->data)[i] = (int16_t)v;
            break;
        default:
            ((int32_t *)t->data)[i] = v;
            break;
        }
    }
    return MHA_OK;
}

static mha_status check_bool_bytes(const tensor *t, const char *label, mha_error *err) {
    const uint8_t *b = t->data;
    for (size_t i = 0; i < t->nbytes; i++)
        if (b[i] > 1)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: bool element %zu is %u (must be 0 or 1)", label, i,
                            (unsigned)b[i]);
    return MHA_OK;
}

/* ---- the loader ---- */

mha_status onnx_tensor_load(onnx_load_ctx *lc, Onnx__TensorProto *tp, const char *role,
                            tensor **out, mha_error *err) {
    *out = NULL;
    char label[320];
    const char *name = tp->name ? tp->name : "";
    if (*name)
        snprintf(label, sizeof label, "%s '%s'", role, name);
    else
        snprintf(label, sizeof label, "%s (unnamed)", role);

    /* dtype */
    if (!tp->has_data_type || tp->data_type == 0)
        return mha_fail(err, MHA_ERR_DTYPE, "%s: no data type", label);
    if (!dtype_supported(tp->data_type, lc->tensor_file))
        return mha_fail(err, MHA_ERR_DTYPE,
                        "%s: data type %s (%d) is not supported (float32, float16, bfloat16, "
                        "float64, int64, int32, %sint8, %suint8 and bool are)",
                        label, onnx_dtype_name(tp->data_type), (int)tp->data_type,
                        lc->tensor_file ? "int16, " : "",
                        lc->tensor_file ? "uint32, uint16, " : "");
    mha_dtype dt = (mha_dtype)tp->data_type;
    size_t esize = mha_dtype_size(dt);

    /* shape: rank, dims >= 0, checked products */
    if (tp->n_dims > MHA_MAX_RANK)
        return mha_fail(err, MHA_ERR_LIMIT, "%s: rank %zu exceeds the limit of %d", label,
                        tp->n_dims, MHA_MAX_RANK);
    int rank = (int)tp->n_dims;
    int64_t dims[MHA_MAX_RANK] = {0};
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = tp->dims[i];
        if (dims[i] < 0)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: negative dimension %lld at axis %d",
                            label, (long long)dims[i], i);
        if (!mha_mul_i64(numel, dims[i], &numel))
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: element count overflows (dimension %lld at axis %d)", label,
                            (long long)dims[i], i);
    }
    size_t nbytes;
    if ((uint64_t)numel > SIZE_MAX || !mha_mul_size((size_t)numel, esize, &nbytes))
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: byte size overflows (%lld elements)", label,
                        (long long)numel);
    char shape[160];
    tensor_shape_str(rank, dims, shape, sizeof shape);

    if (tp->segment)
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED, "%s: segmented tensors are not supported",
                        label);
    if (dt == MHA_DTYPE_UINT32 && !tp->has_raw_data)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: a uint32 tensor is read from raw_data only (numpy_helper.from_array "
                        "writes it so)",
                        label);
    if (tp->n_string_data || tp->n_uint64_data)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: %s tensor carries %s", label,
                        mha_dtype_name(dt), tp->n_string_data ? "string_data" : "uint64_data");

    typed_field want = typed_field_of(dt);
    size_t n_typed = tp->n_float_data + tp->n_int32_data + tp->n_int64_data + tp->n_double_data;
    size_t n_want = typed_field_count(tp, want);
    int external =
        tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;

    /* external_data entries on a tensor that does not say EXTERNAL are
     * ambiguous (which copy is the data?): refused rather than guessed. */
    if (!external && tp->n_external_data)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: has external_data entries but data_location is not EXTERNAL", label);
    if (external) {
        if (tp->has_raw_data || n_typed)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: external tensor also carries data in the file", label);
        return tensor_read_external(lc, tp, label, dt, rank, dims, nbytes, out, err);
    }
    if (tp->has_raw_data && n_typed)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: both raw_data and %s are set", label,
                        typed_field_name(want));
    if (!tp->has_raw_data && n_typed != n_want)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "%s: %s tensor stores its values in the wrong field (expected %s)", label,
                        mha_dtype_name(dt), typed_field_name(want));

    mha_status st;
    tensor *t = NULL;
    if (tp->has_raw_data) {
        if (tp->raw_data.len != nbytes)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: raw_data has %zu bytes, expected %zu (%s %s)", label,
                            tp->raw_data.len, nbytes, shape, mha_dtype_name(dt));
        if (nbytes >= ONNX_PB_SMALL_BYTES && ((uintptr_t)tp->raw_data.data & 63) == 0) {
            /* Adopt protobuf-c's copy of raw_data instead of copying it again:
             * it came from the same allocator (see onnx_pb_alloc), is exactly
             * nbytes long and, being large, 64-byte aligned. Short ones are
             * copied below -- by their size, never by where the heap happened
             * to put them, so that a load's allocations are the same every
             * time (the allocation-failure tests count on it). Halves peak
             * memory for big initializers. */
            st = tensor_shell(lc->alloc, dt, rank, dims, nbytes, tp->raw_data.data, &t, err);
            if (st != MHA_OK) return st;
            tp->raw_data.data = NULL;
            tp->raw_data.len = 0;
            tp->has_raw_data = 0;
            bytes_from_little_endian(t->data, nbytes, esize);
        } else {
            st = tensor_new(lc->alloc, dt, rank, dims, &t, err);
            if (st != MHA_OK) {
                mha_error_prefix(err, "%s", label);
                return st;
            }
            if (nbytes > 0) {
                memcpy(t->data, tp->raw_data.data, nbytes);
                bytes_from_little_endian(t->data, nbytes, esize);
            }
        }
    } else {
        if (n_want != (size_t)numel)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "%s: %s has %zu values, expected %lld (%s %s)%s", label,
                            typed_field_name(want), n_want, (long long)numel, shape,
                            mha_dtype_name(dt), n_want == 0 ? ": the tensor has no data" : "");
        st = tensor_new(lc->alloc, dt, rank, dims, &t, err);
        if (st != MHA_OK) {
            mha_error_prefix(err, "%s", label);
            return st;
        }
        switch (want) {
        case FIELD_FLOAT:
            if (nbytes) memcpy(t->data, tp->float_data, nbytes);
            break;
        case FIELD_INT64:
            if (nbytes) memcpy(t->data, tp->int64_data, nbytes);
            break;
        case FIELD_DOUBLE:
            if (nbytes) memcpy(t->data, tp->double_data, nbytes);
            break;
        case FIELD_INT32:
            st = typed_from_int32(tp, label, t, err);
            if (st != MHA_OK) {
                tensor_free(t);
                return st;
            }
            break;
        }
    }
    if (dt == MHA_DTYPE_BOOL) {
        st = check_bool_bytes(t, label, err);
        if (st != MHA_OK) {
            tensor_free(t);
            return st;
        }
    }
    *out = t;
    return MHA_OK;
}

/* ---- sparse tensors ---- */

mha_status onnx_sparse_load(onnx_load_ctx *lc, Onnx__SparseTensorProto *sp, const char *role,
                            tensor **out, mha_error *err) {
    *out = NULL;
    char label[320];
    const char *name = sp->values && sp->values->name ? sp->values->name : "";
    snprintf(label, sizeof label, "%s '%s'", role, name);
    if (!sp->values || !sp->indices)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: sparse tensor without %s", label,
                        sp->values ? "indices" : "values");

    /* dense shape */
    if (sp->n_dims > MHA_MAX_RANK)
        return mha_fail(err, MHA_ERR_LIMIT, "%s: rank %zu exceeds the limit of %d", label,
                        sp->n_dims, MHA_MAX_RANK);
    int rank = (int)sp->n_dims;
    int64_t dims[MHA_MAX_RANK] = {0};
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = sp->dims[i];
        if (dims[i] < 0)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: negative dimension %lld at axis %d",
                            label, (long long)dims[i], i);
        if (!mha_mul_i64(numel, dims[i], &numel))
            return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: element count overflows", label);
    }

    char part[400];
    tensor *values = NULL, *indices = NULL, *dense = NULL;
    snprintf(part, sizeof part, "%s values", role);
    mha_status st = onnx_tensor_load(lc, sp->values, part, &values, err);
    if (st != MHA_OK) return st;
    snprintf(part, sizeof part, "%s '%s' indices", role, name);
    st = onnx_tensor_load(lc, sp->indices, part, &indices, err);
    if (st != MHA_OK) goto done;

    size_t esize = mha_dtype_size(values->dtype);
    size_t dense_bytes;
    if ((uint64_t)numel > SIZE_MAX || !mha_mul_size((size_t)numel, esize, &dense_bytes)) {
        st = mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: byte size overflows", label);
        goto done;
    }
    /* A few bytes of sparse data must not become terabytes of zeros. */
    if (dense_bytes > lc->max_bytes) {
        st = mha_fail(err, MHA_ERR_LIMIT, "%s: densifies to %zu bytes, more than the limit of %llu",
                      label, dense_bytes, (unsigned long long)lc->max_bytes);
        goto done;
    }
    if (values->rank != 1) {
        st = mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: values must be 1-D [NNZ], got rank %d", label,
                      values->rank);
        goto done;
    }
    int64_t nnz = values->dims[0];
    if (indices->dtype != MHA_DTYPE_INT64 && indices->dtype != MHA_DTYPE_INT32) {
        st = mha_fail(err, MHA_ERR_DTYPE, "%s: indices must be int64, got %s", label,
                      mha_dtype_name(indices->dtype));
        goto done;
    }
    /* indices: [NNZ] linear positions, or [NNZ, rank] coordinates */
    int linear = indices->rank == 1 && indices->dims[0] == nnz;
    int coords = indices->rank == 2 && indices->dims[0] == nnz && indices->dims[1] == rank;
    if (!linear && !coords) {
        char got[160];
        tensor_shape_str(indices->rank, indices->dims, got, sizeof got);
        st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                      "%s: indices of shape %s fit neither [%lld] nor [%lld, %d]", label, got,
                      (long long)nnz, (long long)nnz, rank);
        goto done;
    }
    st = tensor_new(lc->alloc, values->dtype, rank, dims, &dense, err);
    if (st != MHA_OK) {
        mha_error_prefix(err, "%s", label);
        goto done;
    }
    for (int64_t k = 0; k < nnz; k++) {
        int64_t pos = 0;
        if (linear) {
            pos = tensor_get_i64(indices, k);
            if (pos < 0 || pos >= numel) {
                st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                              "%s: index %lld of value %lld is out of range [0, %lld)", label,
                              (long long)pos, (long long)k, (long long)numel);
                goto done;
            }
        } else {
            for (int j = 0; j < rank; j++) {
                int64_t c = tensor_get_i64(indices, k * rank + j);
                if (c < 0 || c >= dims[j]) {
                    st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                                  "%s: coordinate %lld on axis %d of value %lld is out of "
                                  "range [0, %lld)",
                                  label, (long long)c, j, (long long)k, (long long)dims[j]);
                    goto done;
                }
                pos = pos * dims[j] + c; /* < numel, which did not overflow */
            }
        }
        memcpy((unsigned char *)dense->data + (size_t)pos * esize,
               (const unsigned char *)values->data + (size_t)k * esize, esize);
    }
    *out = dense;
    dense = NULL;
done:
    tensor_free(values);
    tensor_free(indices);
    tensor_free(dense);
    return st;
}

/* ---- TensorProto files ---- */

mha_status ir_load_tensor_proto(const mha_alloc_ctx *alloc, const void *data, size_t size,
                                const char *what, tensor **out, char **name_out, mha_error *err) {
    *out = NULL;
    if (name_out) *name_out = NULL;
    if (!what) what = "<memory>";
    if (!data || size == 0)
        return mha_fail(err, MHA_ERR_DATA_FORMAT, "%s: empty TensorProto (0 bytes)", what);
    onnx_pb_alloc pa;
    onnx_pb_alloc_init(&pa, alloc);
    ProtobufCMessage *msg = NULL;
    mha_status st = onnx_unpack(&onnx__tensor_proto__descriptor, data, size, 0, &pa, &msg, err);
    if (st == MHA_OK) {
        Onnx__TensorProto *tp = (Onnx__TensorProto *)msg;
        onnx_load_ctx lc;
        onnx_load_ctx_init(&lc, alloc, NULL, 0);
        lc.tensor_file = 1;
        st = onnx_tensor_load(&lc, tp, "tensor", out, err);
        onnx_load_ctx_close(&lc);
        if (st == MHA_OK && name_out) {
            *name_out = mha_strdup(alloc, tp->name ? tp->name : "");
            if (!*name_out) {
                tensor_free(*out);
                *out = NULL;
                st = mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory");
            }
        }
        protobuf_c_message_free_unpacked(msg, &pa.pb);
    }
    if (st != MHA_OK) {
        /* a test-data file, not a model: report it as such */
        if (st == MHA_ERR_MODEL_FORMAT) {
            st = MHA_ERR_DATA_FORMAT;
            if (err) err->status = st;
        }
        mha_error_prefix(err, "%s", what);
    }
    return st;
}

mha_status ir_save_tensor_proto(const mha_alloc_ctx *alloc, const tensor *t, const char *name,
                                void **data, size_t *size, mha_error *err) {
    *data = NULL;
    *size = 0;
    size_t esize = mha_dtype_size(t->dtype);
    if (esize == 0)
        return mha_fail(err, MHA_ERR_DTYPE, "tensor '%s': cannot save data type %d",
                        name ? name : "", (int)t->dtype);
    if (t->rank < 0 || t->rank > MHA_MAX_RANK)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "tensor '%s': rank %d out of range",
                        name ? name : "", t->rank);
    int64_t numel = 1;
    for (int i = 0; i < t->rank; i++)
        if (t->dims[i] < 0 || !mha_mul_i64(numel, t->dims[i], &numel))
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "tensor '%s': invalid shape",
                            name ? name : "");
    size_t nbytes;
    if (!mha_mul_size((size_t)numel, esize, &nbytes) || nbytes != t->nbytes)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "tensor '%s': %zu data bytes do not match its shape", name ? name : "",
                        t->nbytes);
    if (nbytes > (size_t)INT_MAX)
        return mha_fail(err, MHA_ERR_LIMIT,
                        "tensor '%s': %zu bytes exceed the 2 GiB limit of a TensorProto",
                        name ? name : "", nbytes);

    int64_t dims[MHA_MAX_RANK];
    for (int i = 0; i < t->rank; i++)
        dims[i] = t->dims[i];
    static uint8_t empty_byte;
    uint8_t *raw = nbytes ? t->data : &empty_byte;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    uint8_t *swapped = NULL;
    if (nbytes && esize > 1) {
        swapped = mha_malloc(alloc, nbytes);
        if (!swapped) return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory");
        memcpy(swapped, t->data, nbytes);
        bytes_from_little_endian(swapped, nbytes, esize); /* the swap is symmetric */
        raw = swapped;
    }
#endif
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    tp.n_dims = (size_t)t->rank;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = (int32_t)t->dtype;
    tp.name = (char *)(name ? name : "");
    tp.has_raw_data = 1;
    tp.raw_data.len = nbytes;
    tp.raw_data.data = raw;

    mha_status st = MHA_OK;
    size_t n = protobuf_c_message_get_packed_size(&tp.base);
    uint8_t *buf = mha_malloc(alloc, n);
    if (!buf) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory serializing tensor '%s'",
                      name ? name : "");
    } else {
        size_t w = protobuf_c_message_pack(&tp.base, buf);
        if (w != n) {
            mha_free(alloc, buf);
            st = mha_fail(err, MHA_ERR_INTERNAL, "tensor '%s': packed %zu of %zu bytes",
                          name ? name : "", w, n);
        } else {
            *data = buf;
            *size = n;
        }
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    mha_free(alloc, swapped);
#endif
    return st;
}
