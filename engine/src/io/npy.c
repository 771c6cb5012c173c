/* npy.c -- NumPy .npy files: the header (parse with every size checked
 * against the file, and format), a row-chunk reader that maps large files
 * read-only or falls back to pread(), and a row-appending atomic writer.
 *
 * The format (numpy/lib/format.py, versions 1.0, 2.0, 3.0):
 *
 *   "\x93NUMPY" major minor  header_len (u16 LE for 1.x, u32 LE for 2.x/3.x)
 *   header text: a Python dict literal, e.g.
 *       {'descr': '<f4', 'fortran_order': False, 'shape': (3, 10, 32), }
 *   padded with spaces and a final '\n'; then the raw C-order data.
 */
#define _GNU_SOURCE
#include "npy.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor.h"

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* ------------------------------------------------------------------------ */
/* dtypes                                                                    */
/* ------------------------------------------------------------------------ */

const char *npy_dtype_descr(mha_dtype dtype) {
    switch (dtype) {
    case MHA_DTYPE_FLOAT32:
        return "<f4";
    case MHA_DTYPE_FLOAT64:
        return "<f8";
    case MHA_DTYPE_FLOAT16:
        return "<f2";
    case MHA_DTYPE_BOOL:
        return "|b1";
    case MHA_DTYPE_INT64:
        return "<i8";
    case MHA_DTYPE_INT32:
        return "<i4";
    case MHA_DTYPE_INT8:
        return "|i1";
    case MHA_DTYPE_UINT8:
        return "|u1";
    case MHA_DTYPE_UINT16:
        return "<u2";
    case MHA_DTYPE_INT16:
        return "<i2";
    case MHA_DTYPE_UINT32:
        return "<u4";
    default:
        return NULL;
    }
}

/* descr -> dtype, for the descrs numpy reads as one of the engine's dtypes
 * in this host's (little-endian) order: an optional byte order ('<' little,
 * '=' native, '|' not applicable -- numpy takes it for any size and writes
 * it for one-byte types; '>' big, which only a one-byte type ignores), then
 * a kind and a size in bytes ("f4", "f04": numpy reads the size as a
 * number) or one of numpy's one-letter codes ("f", "e", "?"); or, without
 * a byte order, a type name ("float32", "bool"). numpy writes "<f4", "|b1",
 * "|i1"; the rest are what other writers and hand-made headers hold. */
static mha_dtype npy_dtype_from_code(char code) {
    switch (code) {
    case 'e':
        return MHA_DTYPE_FLOAT16;
    case 'f':
        return MHA_DTYPE_FLOAT32;
    case 'd':
        return MHA_DTYPE_FLOAT64;
    case '?':
        return MHA_DTYPE_BOOL;
    case 'b':
        return MHA_DTYPE_INT8;
    case 'B':
        return MHA_DTYPE_UINT8;
    case 'h':
        return MHA_DTYPE_INT16;
    case 'H':
        return MHA_DTYPE_UINT16;
    case 'i':
        return MHA_DTYPE_INT32;
    case 'I':
        return MHA_DTYPE_UINT32;
    case 'l': /* C long: 8 bytes on the LP64 hosts the engine builds on */
    case 'q':
        return MHA_DTYPE_INT64;
    default:
        return MHA_DTYPE_UNDEFINED;
    }
}

static mha_dtype npy_dtype_from_kind(char kind, long bytes) {
    switch (kind) {
    case 'f':
        return bytes == 4   ? MHA_DTYPE_FLOAT32
               : bytes == 8 ? MHA_DTYPE_FLOAT64
               : bytes == 2 ? MHA_DTYPE_FLOAT16
                            : MHA_DTYPE_UNDEFINED;
    case 'i':
        return bytes == 8   ? MHA_DTYPE_INT64
               : bytes == 4 ? MHA_DTYPE_INT32
               : bytes == 2 ? MHA_DTYPE_INT16
               : bytes == 1 ? MHA_DTYPE_INT8
                            : MHA_DTYPE_UNDEFINED;
    case 'u': /* uint16 / uint32: token ids, widened to the model's ids */
        return bytes == 1   ? MHA_DTYPE_UINT8
               : bytes == 2 ? MHA_DTYPE_UINT16
               : bytes == 4 ? MHA_DTYPE_UINT32
                            : MHA_DTYPE_UNDEFINED;
    case 'b':
        return bytes == 1 ? MHA_DTYPE_BOOL : MHA_DTYPE_UNDEFINED;
    default:
        return MHA_DTYPE_UNDEFINED;
    }
}

static mha_dtype npy_dtype_from_descr(const char *d) {
    static const struct {
        const char *name;
        mha_dtype dtype;
    } names[] = {
        {"float16", MHA_DTYPE_FLOAT16}, {"float32", MHA_DTYPE_FLOAT32},
        {"float64", MHA_DTYPE_FLOAT64}, {"int8", MHA_DTYPE_INT8},
        {"int16", MHA_DTYPE_INT16},     {"int32", MHA_DTYPE_INT32},
        {"int64", MHA_DTYPE_INT64},     {"uint8", MHA_DTYPE_UINT8},
        {"uint16", MHA_DTYPE_UINT16},   {"uint32", MHA_DTYPE_UINT32},
        {"bool", MHA_DTYPE_BOOL},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(d, names[i].name) == 0) return names[i].dtype;
    const char *t = d;
    char order = '=';
    if (*t && strchr("<>=|", *t)) order = *t++;
    mha_dtype dtype = MHA_DTYPE_UNDEFINED;
    size_t len = strlen(t);
    if (len == 1) {
        dtype = npy_dtype_from_code(t[0]);
    } else if (len >= 2 && len <= 8 && strspn(t + 1, "0123456789") == len - 1) {
        dtype = npy_dtype_from_kind(t[0], strtol(t + 1, NULL, 10));
    }
    if (dtype == MHA_DTYPE_UNDEFINED) return dtype;
    if (order == '>' && mha_dtype_size(dtype) > 1) return MHA_DTYPE_UNDEFINED;
    return dtype;
}

/* A refused descr in words for its message, " (big-endian uint16)", or ""
 * when it is not a numeric one ("|O", "<U8", ...: the descr says enough). */
static const char *npy_descr_name(const char *d, char *buf, size_t n) {
    const char *kind = NULL;
    size_t len = strlen(d);
    if (len >= 3 && len <= 4 && strspn(d + 2, "0123456789") == len - 2) {
        switch (d[1]) {
        case 'i':
            kind = "int";
            break;
        case 'u':
            kind = "uint";
            break;
        case 'f':
            kind = "float";
            break;
        case 'c':
            kind = "complex";
            break;
        }
    }
    if (!kind) return "";
    snprintf(buf, n, " (%s%s%d)", d[0] == '>' ? "big-endian " : "", kind, 8 * atoi(d + 2));
    return buf;
}

/* ------------------------------------------------------------------------ */
/* header parsing                                                            */
/* ------------------------------------------------------------------------ */

/* A cursor over the header text; `what` names the file in messages. */
typedef struct npy_text {
    const char *p, *end;
    const char *what;
    mha_error *err;
} npy_text;

static mha_status npy_text_fail(npy_text *t, const char *problem) {
    return mha_fail(t->err, MHA_ERR_DATA_FORMAT, "%s: malformed .npy header: %s", t->what, problem);
}

static void npy_text_skip_space(npy_text *t) {
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
        t->p++;
}

static int npy_text_take(npy_text *t, char c) {
    npy_text_skip_space(t);
    if (t->p < t->end && *t->p == c) {
        t->p++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...", no escapes: numpy never writes them in
 * keys or descrs) into buf. */
static mha_status npy_text_string(npy_text *t, char *buf, size_t cap) {
    npy_text_skip_space(t);
    if (t->p >= t->end || (*t->p != '\'' && *t->p != '"'))
        return npy_text_fail(t, "expected a string");
    char quote = *t->p++;
    size_t n = 0;
    while (t->p < t->end && *t->p != quote) {
        if (*t->p == '\\' || n + 1 >= cap) return npy_text_fail(t, "unexpected string");
        /* a NUL would end the C string early ('<f4\0junk' read as '<f4':
         * numpy refuses the header); a line break ends a Python string
         * literal without closing it */
        if (*t->p == '\0') return npy_text_fail(t, "a string holds a NUL byte");
        if (*t->p == '\n' || *t->p == '\r') return npy_text_fail(t, "unterminated string");
        buf[n++] = *t->p++;
    }
    if (t->p >= t->end) return npy_text_fail(t, "unterminated string");
    t->p++;
    buf[n] = '\0';
    return MHA_OK;
}

static mha_status npy_text_bool(npy_text *t, int *out) {
    npy_text_skip_space(t);
    size_t left = (size_t)(t->end - t->p);
    if (left >= 4 && memcmp(t->p, "True", 4) == 0) {
        t->p += 4;
        *out = 1;
        return MHA_OK;
    }
    if (left >= 5 && memcmp(t->p, "False", 5) == 0) {
        t->p += 5;
        *out = 0;
        return MHA_OK;
    }
    return npy_text_fail(t, "fortran_order is neither True nor False");
}

/* A tuple of non-negative integers: (), (5,), (2, 3), (2, 3,). */
static mha_status npy_text_shape(npy_text *t, int *rank, int64_t *dims) {
    if (!npy_text_take(t, '(')) return npy_text_fail(t, "shape is not a tuple");
    int n = 0;
    for (;;) {
        if (npy_text_take(t, ')')) break;
        npy_text_skip_space(t);
        if (t->p < t->end && *t->p == '-')
            return mha_fail(t->err, MHA_ERR_DATA_FORMAT, "%s: negative dimension in the shape",
                            t->what);
        if (t->p >= t->end || *t->p < '0' || *t->p > '9')
            return npy_text_fail(t, "shape holds something other than integers");
        int64_t v = 0;
        const char *digits = t->p;
        while (t->p < t->end && *t->p >= '0' && *t->p <= '9') {
            if (!mha_mul_i64(v, 10, &v) || __builtin_add_overflow(v, (int64_t)(*t->p - '0'), &v))
                return mha_fail(t->err, MHA_ERR_LIMIT, "%s: a dimension of the shape overflows",
                                t->what);
            t->p++;
        }
        /* "010": Python 3 (numpy) refuses the header, Python 2 read 8 */
        if (*digits == '0' && t->p - digits > 1)
            return npy_text_fail(t, "a dimension of the shape has a leading zero");
        /* "0x2", "2L", "1_6": no decimal integer as numpy writes one */
        if (t->p < t->end && (isalnum((unsigned char)*t->p) || *t->p == '_' || *t->p == '.'))
            return npy_text_fail(t, "shape holds something other than decimal integers");
        if (n >= MHA_MAX_RANK)
            return mha_fail(t->err, MHA_ERR_LIMIT, "%s: shape has more than %d dimensions", t->what,
                            MHA_MAX_RANK);
        dims[n++] = v;
        if (npy_text_take(t, ',')) continue;
        if (npy_text_take(t, ')')) break;
        return npy_text_fail(t, "shape tuple is not closed");
    }
    *rank = n;
    return MHA_OK;
}

#define NPY_SHARD_NOTE "# mha-shard rows "

#define NPY_SHARD_RUN "; run "

/* After the total, a shard of a sequence-first file ([S, B, ...]: its rows
 * lie along axis 1) says so. */
#define NPY_SHARD_AXIS1 " on axis 1"

/* "# mha-shard rows R0:R1 of TOTAL", " on axis 1" for rows along axis 1
 * (*axis 1, else 0), then "; run TEXT" naming the run (copied into run
 * when not NULL, "" without); any other comment is ignored. */
static mha_status npy_parse_shard_note(const char *c, size_t n, const char *what, npy_header *out,
                                       char *run, int *axis, mha_error *err) {
    const size_t tag = sizeof NPY_SHARD_NOTE - 1;
    while (n > 0 && (c[n - 1] == ' ' || c[n - 1] == '\r' || c[n - 1] == '\t'))
        n--; /* the header's padding */
    if (n < tag || memcmp(c, NPY_SHARD_NOTE, tag) != 0) return MHA_OK;
    char text[64 + MHA_NPY_SHARD_RUN_MAX];
    if (n - tag >= sizeof text)
        return mha_fail(err, MHA_ERR_DATA_FORMAT, "%s: shard note of %zu bytes (%zu at most)", what,
                        n - tag, sizeof text - 1);
    memcpy(text, c + tag, n - tag);
    text[n - tag] = '\0';
    long long r0, r1, total;
    int used = 0;
    const size_t tail = sizeof NPY_SHARD_RUN - 1, on = sizeof NPY_SHARD_AXIS1 - 1;
    int ok = sscanf(text, "%lld:%lld of %lld%n", &r0, &r1, &total, &used) == 3;
    *axis = ok && strncmp(text + used, NPY_SHARD_AXIS1, on) == 0;
    if (*axis) used += (int)on;
    if (!ok || r0 < 0 || r1 < r0 || total < r1 ||
        (text[used] != '\0' && (strncmp(text + used, NPY_SHARD_RUN, tail) != 0 ||
                                strlen(text + used + tail) >= MHA_NPY_SHARD_RUN_MAX)))
        return mha_fail(err, MHA_ERR_DATA_FORMAT, "%s: malformed shard note '%.*s'", what, (int)n,
                        c);
    if (run) strcpy(run, text[used] ? text + used + tail : "");
    out->is_shard = 1;
    out->shard_r0 = r0;
    out->shard_r1 = r1;
    out->shard_total = total;
    return MHA_OK;
}

mha_status npy_parse_header(const void *buf, size_t avail, uint64_t file_size, const char *what,
                            npy_header *out, mha_error *err) {
    int axis;
    return npy_parse_header_run(buf, avail, file_size, what, out, NULL, &axis, err);
}

mha_status npy_parse_header_run(const void *buf, size_t avail, uint64_t file_size, const char *what,
                                npy_header *out, char *run, int *axis, mha_error *err) {
    const unsigned char *b = buf;
    if (run) run[0] = '\0';
    *axis = 0;
    memset(out, 0, sizeof *out);
    if (avail > file_size) avail = (size_t)file_size;

    /* 1. magic, version, header length -- all against the file size */
    if (avail < 6 || memcmp(b, npy_magic, 6) != 0)
        return mha_fail(err, MHA_ERR_DATA_FORMAT, "%s: not a .npy file (bad magic)", what);
    if (avail < 10)
        return mha_fail(err, MHA_ERR_DATA_FORMAT, "%s: file ends inside the .npy preamble", what);
    int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return mha_fail(err, MHA_ERR_DATA_FORMAT, "%s: unsupported .npy version %d.%d", what, major,
                        minor);
    size_t prefix = major == 1 ? 10 : 12;
    if (avail < prefix)
        return mha_fail(err, MHA_ERR_DATA_FORMAT, "%s: file ends inside the .npy preamble", what);
    uint64_t hlen = major == 1 ? (uint64_t)b[8] | (uint64_t)b[9] << 8
                               : (uint64_t)b[8] | (uint64_t)b[9] << 8 | (uint64_t)b[10] << 16 |
                                     (uint64_t)b[11] << 24;
    if (hlen > NPY_MAX_HEADER_BYTES)
        return mha_fail(err, MHA_ERR_LIMIT,
                        "%s: .npy header of %llu bytes exceeds the %d-byte limit", what,
                        (unsigned long long)hlen, NPY_MAX_HEADER_BYTES);
    if (prefix + hlen > file_size)
        return mha_fail(err, MHA_ERR_DATA_FORMAT,
                        "%s: header longer than the file (%llu header bytes, file of %llu)", what,
                        (unsigned long long)hlen, (unsigned long long)file_size);
    if (prefix + hlen > avail)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: header not fully read", what);

    /* 2. the dict: exactly descr, fortran_order, shape, in any order */
    npy_text t = {(const char *)b + prefix, (const char *)b + prefix + hlen, what, err};
    char descr[32] = "";
    int fortran = 0, have_descr = 0, have_fortran = 0, have_shape = 0;
    mha_status st;
    if (!npy_text_take(&t, '{')) return npy_text_fail(&t, "not a dict");
    for (;;) {
        if (npy_text_take(&t, '}')) break;
        char key[32];
        if ((st = npy_text_string(&t, key, sizeof key)) != MHA_OK) return st;
        if (!npy_text_take(&t, ':')) return npy_text_fail(&t, "expected ':' after a key");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            npy_text_skip_space(&t);
            if (t.p < t.end && *t.p == '[')
                return mha_fail(err, MHA_ERR_DTYPE, "%s: structured dtypes are not supported",
                                what);
            if ((st = npy_text_string(&t, descr, sizeof descr)) != MHA_OK) return st;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if ((st = npy_text_bool(&t, &fortran)) != MHA_OK) return st;
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if ((st = npy_text_shape(&t, &out->rank, out->dims)) != MHA_OK) return st;
            have_shape = 1;
        } else {
            return npy_text_fail(&t, "unexpected or repeated key");
        }
        if (npy_text_take(&t, ',')) continue;
        if (npy_text_take(&t, '}')) break;
        return npy_text_fail(&t, "expected ',' or '}'");
    }
    npy_text_skip_space(&t);
    if (t.p < t.end && *t.p == '#') {
        /* a Python comment up to the end of the line: numpy ignores it; the
         * shards of a split run carry their row range in one */
        const char *c = t.p;
        while (t.p < t.end && *t.p != '\n')
            t.p++;
        if ((st = npy_parse_shard_note(c, (size_t)(t.p - c), what, out, run, axis, err)) != MHA_OK)
            return st;
        npy_text_skip_space(&t);
    }
    while (t.p < t.end && *t.p == '\0')
        t.p++; /* some writers pad with NULs */
    if (t.p != t.end) return npy_text_fail(&t, "text after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return npy_text_fail(&t, "missing descr, fortran_order or shape");

    /* 3. what the dict says */
    if (fortran)
        return mha_fail(err, MHA_ERR_DATA_FORMAT,
                        "%s: fortran_order arrays are not supported (save in C order)", what);
    out->dtype = npy_dtype_from_descr(descr);
    if (out->dtype == MHA_DTYPE_UNDEFINED) {
        char name[48];
        return mha_fail(err, MHA_ERR_DTYPE,
                        "%s: unsupported dtype '%s'%s; .npy files of float32, float64, float16, "
                        "int64, int32, int16, int8, uint32, uint16, uint8 or bool, "
                        "little-endian, are read (numpy's astype converts)",
                        what, descr, npy_descr_name(descr, name, sizeof name));
    }

    char shape[160];
    tensor_shape_str(out->rank, out->dims, shape, sizeof shape);
    int64_t numel = 1;
    for (int i = 0; i < out->rank; i++)
        if (!mha_mul_i64(numel, out->dims[i], &numel))
            return mha_fail(err, MHA_ERR_LIMIT, "%s: shape %s overflows", what, shape);
    size_t esize = mha_dtype_size(out->dtype);
    if ((uint64_t)numel > SIZE_MAX || !mha_mul_size((size_t)numel, esize, &out->data_bytes))
        return mha_fail(err, MHA_ERR_LIMIT, "%s: shape %s overflows", what, shape);

    /* 4. the data must be exactly what the shape needs */
    out->version_major = major;
    out->header_bytes = prefix + (size_t)hlen;
    uint64_t held = file_size - out->header_bytes;
    if (held < out->data_bytes)
        return mha_fail(err, MHA_ERR_DATA_FORMAT,
                        "%s: shape %s needs %zu bytes but the file holds %llu", what, shape,
                        out->data_bytes, (unsigned long long)held);
    if (held > out->data_bytes)
        return mha_fail(err, MHA_ERR_DATA_FORMAT,
                        "%s: shape %s needs %zu bytes but the file holds %llu (trailing data)",
                        what, shape, out->data_bytes, (unsigned long long)held);
    out->rows = out->rank == 0 ? 1 : out->dims[0];
    if (out->is_shard && (out->rank <= *axis || out->shard_r1 - out->shard_r0 !=
                                                    out->dims[out->rank > *axis ? *axis : 0]))
        return mha_fail(err, MHA_ERR_DATA_FORMAT,
                        "%s: shard note says rows %lld:%lld%s but the shape %s holds %lld", what,
                        (long long)out->shard_r0, (long long)out->shard_r1,
                        *axis ? NPY_SHARD_AXIS1 : "", shape,
                        (long long)(out->rank > *axis ? out->dims[*axis] : 0));
    out->row_bytes = out->rows > 0 ? out->data_bytes / (size_t)out->rows : 0;
    if (out->rows == 0) { /* no data at all: a row still has a size */
        size_t rb = esize;
        for (int i = 1; i < out->rank; i++)
            if (!mha_mul_size(rb, (size_t)out->dims[i], &rb))
                return mha_fail(err, MHA_ERR_LIMIT, "%s: shape %s overflows", what, shape);
        out->row_bytes = rb;
    }
    return MHA_OK;
}

/* ------------------------------------------------------------------------ */
/* header formatting                                                         */
/* ------------------------------------------------------------------------ */

static size_t npy_format_header_note(mha_dtype dtype, int rank, const int64_t *dims,
                                     const char *note, void *buf, size_t cap);

size_t npy_format_header(mha_dtype dtype, int rank, const int64_t *dims, void *buf, size_t cap) {
    return npy_format_header_note(dtype, rank, dims, "", buf, cap);
}

int npy_shard_run_ok(const char *run) {
    if (!run) return 1;
    size_t n = 0;
    for (; run[n]; n++)
        if (run[n] < ' ' || run[n] > '~' || run[n] == '#' || run[n] == '\'' || run[n] == '"')
            return 0;
    return n < MHA_NPY_SHARD_RUN_MAX && (n == 0 || (run[0] != ' ' && run[n - 1] != ' '));
}

size_t npy_format_header_shard(mha_dtype dtype, int rank, const int64_t *dims, int64_t r0,
                               int64_t r1, int64_t total, const char *run, int axis, void *buf,
                               size_t cap) {
    if ((axis != 0 && axis != 1) || rank <= axis || r0 < 0 || r1 < r0 || total < r1 ||
        dims[axis] != r1 - r0)
        return 0;
    if (!npy_shard_run_ok(run)) return 0;
    char note[112 + MHA_NPY_SHARD_RUN_MAX];
    snprintf(note, sizeof note, "  " NPY_SHARD_NOTE "%lld:%lld of %lld%s%s%s", (long long)r0,
             (long long)r1, (long long)total, axis ? NPY_SHARD_AXIS1 : "",
             run && *run ? NPY_SHARD_RUN : "", run && *run ? run : "");
    return npy_format_header_note(dtype, rank, dims, note, buf, cap);
}

static size_t npy_format_header_note(mha_dtype dtype, int rank, const int64_t *dims,
                                     const char *note, void *buf, size_t cap) {
    const char *descr = npy_dtype_descr(dtype);
    if (!descr || rank < 0 || rank > MHA_MAX_RANK) return 0;
    char text[512 + MHA_NPY_SHARD_RUN_MAX];
    size_t n = (size_t)snprintf(text, sizeof text,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < rank; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s%lld", i ? ", " : "",
                              (long long)dims[i]);
    n += (size_t)snprintf(text + n, sizeof text - n, "%s), }%s", rank == 1 ? "," : "", note);
    if (n >= sizeof text) return 0;
    /* version 1.0 unless the text needs a 4-byte length; pad with spaces so
     * that the data starts at a multiple of 64 (aligned for any dtype and
     * for SIMD loads from a mapping), ending in '\n' */
    size_t prefix = n + 1 < 65536 - 64 ? 10 : 12;
    size_t total = (prefix + n + 1 + 63) & ~(size_t)63;
    if (total > cap) return 0;
    unsigned char *b = buf;
    size_t hlen = total - prefix;
    memcpy(b, npy_magic, 6);
    b[6] = prefix == 10 ? 1 : 2;
    b[7] = 0;
    b[8] = (unsigned char)(hlen & 0xff);
    b[9] = (unsigned char)(hlen >> 8 & 0xff);
    if (prefix == 12) {
        b[10] = (unsigned char)(hlen >> 16 & 0xff);
        b[11] = (unsigned char)(hlen >> 24 & 0xff);
    }
    memcpy(b + prefix, text, n);
    memset(b + prefix + n, ' ', total - prefix - n - 1);
    b[total - 1] = '\n';
    return total;
}

/* ------------------------------------------------------------------------ */
/* reader                                                                    */
/* ------------------------------------------------------------------------ */

struct npy_reader {
    const mha_alloc_ctx *alloc;
    char *path;
    int fd;
    npy_header h;
    int shard_axis;                        /* a shard's rows along axis 0 or 1 */
    char shard_run[MHA_NPY_SHARD_RUN_MAX]; /* a shard's run note, or "" */
    void *map;                             /* whole file, read-only, or NULL */
    size_t map_len;
    void *bounce; /* pread + conversion scratch */
    size_t bounce_bytes;
};

/* Reads exactly n bytes at offset; a short file is an I/O error (the file
 * was checked at open, so it shrank). */
static mha_status npy_pread_all(int fd, void *dst, size_t n, uint64_t offset, const char *what,
                                mha_error *err) {
    unsigned char *p = dst;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t got = pread(fd, p, chunk, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR) continue;
            return mha_fail(err, MHA_ERR_IO, "%s: read failed: %s", what, strerror(errno));
        }
        if (got == 0)
            return mha_fail(err, MHA_ERR_IO, "%s: file became shorter while being read", what);
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return MHA_OK;
}

mha_status npy_reader_open(const mha_alloc_ctx *a, const char *path, npy_mmap_mode mode,
                           npy_reader **out, mha_error *err) {
    *out = NULL;
    /* O_NONBLOCK: a FIFO given as an input must not hang the open; it is
     * refused as not a regular file after the fstat. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return mha_fail(err, MHA_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return mha_fail(err, MHA_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return mha_fail(err, MHA_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t file_size = (uint64_t)sb.st_size;

    /* The header is at most 12 + NPY_MAX_HEADER_BYTES bytes: read that much
     * (or the whole file) onto the stack, then check it before allocating. */
    unsigned char head[12 + NPY_MAX_HEADER_BYTES];
    size_t want = file_size < sizeof head ? (size_t)file_size : sizeof head;
    npy_header h;
    char run[MHA_NPY_SHARD_RUN_MAX];
    int axis = 0;
    mha_status st = npy_pread_all(fd, head, want, 0, path, err);
    if (st == MHA_OK) st = npy_parse_header_run(head, want, file_size, path, &h, run, &axis, err);
    if (st != MHA_OK) {
        close(fd);
        return st;
    }

    npy_reader *r = mha_calloc(a, 1, sizeof *r);
    char *p = mha_strdup(a, path);
    if (!r || !p) {
        mha_free(a, r);
        mha_free(a, p);
        close(fd);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory opening the file", path);
    }
    r->alloc = a;
    r->path = p;
    r->fd = fd;
    r->h = h;
    r->shard_axis = axis;
    memcpy(r->shard_run, run, sizeof run);
    int map = h.data_bytes > 0 && (mode == NPY_MMAP_ALWAYS ||
                                   (mode == NPY_MMAP_AUTO && h.data_bytes >= NPY_MMAP_MIN_BYTES));
    if (map && file_size <= SIZE_MAX) {
        void *m = mmap(NULL, (size_t)file_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) { /* else: the pread path below serves every read */
            r->map = m;
            r->map_len = (size_t)file_size;
        }
    }
    *out = r;
    return MHA_OK;
}

const char *npy_reader_shard_run(const npy_reader *r) {
    return r->shard_run;
}

int npy_reader_shard_axis(const npy_reader *r) {
    return r->shard_axis;
}

const npy_header *npy_reader_header(const npy_reader *r) {
    return &r->h;
}

/* Zero copy only where the elements sit at a multiple of their size: a
 * header of odd length (any writer may pad it so) would hand the kernels
 * misaligned floats. Such a file is read through the copying path. */
static int npy_reader_map_aligned(const npy_reader *r) {
    size_t esize = mha_dtype_size(r->h.dtype);
    return r->map && esize > 0 && r->h.header_bytes % esize == 0;
}

const void *npy_reader_mapped_data(const npy_reader *r) {
    return npy_reader_map_aligned(r) ? (const unsigned char *)r->map + r->h.header_bytes : NULL;
}

static mha_status npy_reader_read_span(npy_reader *r, uint64_t offset, size_t n, mha_dtype want,
                                       void *dst, mha_error *err);

mha_status npy_reader_read_rows(npy_reader *r, int64_t r0, int64_t r1, mha_dtype want, void *dst,
                                size_t dst_bytes, mha_error *err) {
    const npy_header *h = &r->h;
    mha_dtype from = h->dtype;
    if (want == MHA_DTYPE_UNDEFINED) want = from;
    if (r0 < 0 || r1 < r0 || r1 > h->rows)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: rows [%lld, %lld) outside [0, %lld)",
                        r->path, (long long)r0, (long long)r1, (long long)h->rows);
    if (!tensorfile_can_convert(from, want))
        return mha_fail(err, MHA_ERR_DTYPE, "%s: cannot convert %s to %s", r->path,
                        mha_dtype_name(from), mha_dtype_name(want));
    size_t esize = mha_dtype_size(from), wsize = mha_dtype_size(want);
    size_t row_elems = h->row_bytes / esize;
    size_t n = (size_t)(r1 - r0) * row_elems; /* fits: the file holds these */
    size_t need;
    if (!mha_mul_size(n, wsize, &need) || dst_bytes < need)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: buffer of %zu bytes too small for rows [%lld, %lld)", r->path,
                        dst_bytes, (long long)r0, (long long)r1);
    if (n == 0) return MHA_OK;
    return npy_reader_read_span(r, h->header_bytes + (uint64_t)r0 * h->row_bytes, n, want, dst,
                                err);
}

/* Reads n elements at offset into dst, converted from the file's dtype to
 * want (checked by the caller). */
static mha_status npy_reader_read_span(npy_reader *r, uint64_t offset, size_t n, mha_dtype want,
                                       void *dst, mha_error *err) {
    const mha_dtype from = r->h.dtype;
    const size_t esize = mha_dtype_size(from), wsize = mha_dtype_size(want);
    if (r->map) {
        tensorfile_convert((const unsigned char *)r->map + offset, from, dst, want, n);
        return MHA_OK;
    }
    if (from == want) {
        mha_status st = npy_pread_all(r->fd, dst, n * esize, offset, r->path, err);
        if (st == MHA_OK && from == MHA_DTYPE_BOOL) tensorfile_convert(dst, from, dst, want, n);
        return st;
    }
    /* pread a chunk into the bounce buffer, convert it into dst */
    if (!r->bounce) {
        r->bounce_bytes = (size_t)1 << 18;
        r->bounce = mha_malloc(r->alloc, r->bounce_bytes);
        if (!r->bounce)
            return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory for a read buffer", r->path);
    }
    size_t per = r->bounce_bytes / esize;
    unsigned char *d = dst;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < per ? n - done : per;
        mha_status st =
            npy_pread_all(r->fd, r->bounce, k * esize, offset + done * esize, r->path, err);
        if (st != MHA_OK) return st;
        tensorfile_convert(r->bounce, from, d + done * wsize, want, k);
        done += k;
    }
    return MHA_OK;
}

mha_status npy_reader_read_rows_axis1(npy_reader *r, int64_t r0, int64_t r1, mha_dtype want,
                                      void *dst, size_t dst_bytes, mha_error *err) {
    const npy_header *h = &r->h;
    const mha_dtype from = h->dtype;
    if (want == MHA_DTYPE_UNDEFINED) want = from;
    if (h->rank < 2 || r0 < 0 || r1 < r0 || r1 > h->dims[1])
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: rows [%lld, %lld) of axis 1 outside [0, %lld)", r->path, (long long)r0,
                        (long long)r1, (long long)(h->rank < 2 ? 0 : h->dims[1]));
    if (!tensorfile_can_convert(from, want))
        return mha_fail(err, MHA_ERR_DTYPE, "%s: cannot convert %s to %s", r->path,
                        mha_dtype_name(from), mha_dtype_name(want));
    const size_t esize = mha_dtype_size(from), wsize = mha_dtype_size(want);
    /* one item of axis 1 under one index of axis 0, in elements */
    const size_t item = h->dims[1] > 0 ? h->row_bytes / esize / (size_t)h->dims[1] : 0;
    const size_t span = (size_t)(r1 - r0) * item; /* elements per index of axis 0 */
    size_t need;
    if (!mha_mul_size(span * (size_t)h->rows, wsize, &need) || dst_bytes < need)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: buffer of %zu bytes too small for rows [%lld, %lld) of axis 1",
                        r->path, dst_bytes, (long long)r0, (long long)r1);
    if (span == 0) return MHA_OK;
    unsigned char *d = dst;
    for (int64_t o = 0; o < h->rows; o++) {
        const uint64_t offset =
            h->header_bytes + (uint64_t)o * h->row_bytes + (uint64_t)r0 * item * esize;
        mha_status st =
            npy_reader_read_span(r, offset, span, want, d + (size_t)o * span * wsize, err);
        if (st != MHA_OK) return st;
    }
    return MHA_OK;
}

const void *npy_reader_mapped_rows(const npy_reader *r, int64_t r0, int64_t r1) {
    if (!npy_reader_map_aligned(r) || r0 < 0 || r1 < r0 || r1 > r->h.rows) return NULL;
    return (const unsigned char *)r->map + r->h.header_bytes + (size_t)r0 * r->h.row_bytes;
}

void npy_reader_advise(npy_reader *r, int64_t r0, int64_t r1, npy_advice advice) {
    if (r0 < 0 || r1 <= r0 || r1 > r->h.rows) return;
    uint64_t start = r->h.header_bytes + (uint64_t)r0 * r->h.row_bytes;
    uint64_t end = r->h.header_bytes + (uint64_t)r1 * r->h.row_bytes;
    if (!r->map) {
        posix_fadvise(r->fd, (off_t)start, (off_t)(end - start),
                      advice == NPY_ADVICE_WILLNEED ? POSIX_FADV_WILLNEED : POSIX_FADV_DONTNEED);
        return;
    }
    /* whole pages: a page shared with a neighbouring chunk that is dropped
     * is just faulted in again from the page cache (the mapping is
     * read-only, nothing is lost) */
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t a0 = start / page * page;
    uint64_t a1 = (end + page - 1) / page * page;
    if (a1 > r->map_len) a1 = r->map_len;
    if (a1 <= a0) return;
    madvise((unsigned char *)r->map + a0, (size_t)(a1 - a0),
            advice == NPY_ADVICE_WILLNEED ? MADV_WILLNEED : MADV_DONTNEED);
}

void npy_reader_close(npy_reader *r) {
    if (!r) return;
    if (r->map) munmap(r->map, r->map_len);
    if (r->fd >= 0) close(r->fd);
    mha_free(r->alloc, r->bounce);
    mha_free(r->alloc, r->path);
    mha_free(r->alloc, r);
}

/* ------------------------------------------------------------------------ */
/* writer                                                                    */
/* ------------------------------------------------------------------------ */

struct npy_writer {
    const mha_alloc_ctx *alloc;
    atomic_file *file;
    int64_t rows, rows_written;
    size_t row_bytes;
    /* rows along axis 1 (a sequence-first [S, B, ...] file): row_bytes is
     * one item under one of the `outer` indices of axis 0, each write puts
     * `outer` runs at their places in the file, which has its full size
     * from the start */
    int axis;
    int64_t outer;
    uint64_t head_bytes;
};

/* Checks a shape for writing: *rows = dims[0] (1 for rank 0), *row_bytes
 * the bytes of one row. */
static mha_status npy_writer_shape_axis(const char *path, mha_dtype dtype, int rank,
                                        const int64_t *dims, int axis, int64_t *rows_out,
                                        size_t *row_bytes_out, mha_error *err);

static mha_status npy_writer_shape(const char *path, mha_dtype dtype, int rank, const int64_t *dims,
                                   int64_t *rows_out, size_t *row_bytes_out, mha_error *err) {
    return npy_writer_shape_axis(path, dtype, rank, dims, 0, rows_out, row_bytes_out, err);
}

/* The same along axis (0, or 1: *rows = dims[1], *row_bytes one item of
 * axis 1 under one index of axis 0). */
static mha_status npy_writer_shape_axis(const char *path, mha_dtype dtype, int rank,
                                        const int64_t *dims, int axis, int64_t *rows_out,
                                        size_t *row_bytes_out, mha_error *err) {
    if (!npy_dtype_descr(dtype))
        return mha_fail(err, MHA_ERR_DTYPE, "%s: %s cannot be written as .npy", path,
                        mha_dtype_name(dtype));
    if (rank < 0 || rank > MHA_MAX_RANK)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: rank %d", path, rank);
    if (rank <= axis)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: rank %d has no axis %d", path, rank,
                        axis);
    size_t row_bytes = mha_dtype_size(dtype);
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return mha_fail(err, MHA_ERR_SHAPE, "%s: negative dimension %lld", path,
                            (long long)dims[i]);
        if (i > axis &&
            ((uint64_t)dims[i] > SIZE_MAX || !mha_mul_size(row_bytes, (size_t)dims[i], &row_bytes)))
            return mha_fail(err, MHA_ERR_LIMIT, "%s: shape overflows", path);
    }
    int64_t rows = rank == 0 ? 1 : dims[axis];
    size_t total;
    if ((uint64_t)rows > SIZE_MAX || !mha_mul_size(row_bytes, (size_t)rows, &total) ||
        (axis == 1 &&
         ((uint64_t)dims[0] > SIZE_MAX || !mha_mul_size(total, (size_t)dims[0], &total))))
        return mha_fail(err, MHA_ERR_LIMIT, "%s: shape overflows", path);
    *rows_out = rows;
    *row_bytes_out = row_bytes;
    return MHA_OK;
}

mha_status npy_writer_begin_partial(const mha_alloc_ctx *a, const char *path,
                                    const char *partial_path, mha_dtype dtype, int rank,
                                    const int64_t *dims, int64_t shard_r0, int64_t shard_total,
                                    const char *shard_run, int axis, int64_t rows_done,
                                    npy_writer **out, mha_error *err) {
    *out = NULL;
    int64_t rows = 0;
    size_t row_bytes = 0;
    if (axis != 0 && axis != 1)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: rows along axis %d", path, axis);
    mha_status st = npy_writer_shape_axis(path, dtype, rank, dims, axis, &rows, &row_bytes, err);
    if (st != MHA_OK) return st;
    if (rows_done < 0 || rows_done > rows)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: resuming after %lld of %lld rows", path,
                        (long long)rows_done, (long long)rows);
    if (!npy_shard_run_ok(shard_run))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: a shard's run note is printable ASCII without '#' or quotes, "
                        "under %d bytes",
                        path, MHA_NPY_SHARD_RUN_MAX);
    /* rows [r0, r0 + rows) of total, checked before the sum is formed */
    if (shard_total > 0 && rank < 1)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: a shard holds rows: rank 0", path);
    if (shard_total > 0 && (shard_r0 < 0 || shard_r0 > shard_total - rows))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "%s: a shard of %lld rows from row %lld does not lie in a dataset of "
                        "%lld rows",
                        path, (long long)rows, (long long)shard_r0, (long long)shard_total);
    unsigned char head[640 + MHA_NPY_SHARD_RUN_MAX];
    size_t hn = shard_total > 0
                    ? npy_format_header_shard(dtype, rank, dims, shard_r0, shard_r0 + rows,
                                              shard_total, shard_run, axis, head, sizeof head)
                    : npy_format_header(dtype, rank, dims, head, sizeof head);
    if (hn == 0) return mha_fail(err, MHA_ERR_INTERNAL, "%s: cannot format the header", path);
    if (rows_done > 0 && !partial_path)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: resuming needs the partial file", path);
    npy_writer *w = mha_calloc(a, 1, sizeof *w);
    if (!w) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    w->alloc = a;
    w->rows = rows;
    w->row_bytes = row_bytes;
    w->rows_written = rows_done;
    w->axis = axis;
    w->outer = axis ? dims[0] : 1;
    w->head_bytes = hn;
    /* along axis 1 every row written so far is spread over the file, which
     * has its full size from the start: a resumed one keeps all of it */
    const uint64_t full = hn + (uint64_t)rows * row_bytes * (uint64_t)w->outer;
    uint64_t keep = rows_done > 0 ? (axis ? full : hn + (uint64_t)rows_done * row_bytes) : 0;
    /* resuming: the partial file must have been started with this very
     * header (checked before it is truncated) */
    st = atomic_file_begin_partial(a, path, rows_done > 0 ? partial_path : NULL, keep, head, hn,
                                   &w->file, err);
    if (st == MHA_OK && axis && !atomic_file_tmp_path(w->file))
        st = mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                      "%s: rows along axis 1 are written in place: give a regular file, not "
                      "standard output, a FIFO or a device",
                      path);
    if (st != MHA_OK && w->file) {
        npy_writer_abort(w);
        return st;
    }
    if (st == MHA_OK && rows_done == 0) {
        st = atomic_file_write(w->file, head, hn, err);
        /* the full size at once (a hole until written): the rows of axis 1
         * land at their places, and a resume finds every byte it keeps */
        if (st == MHA_OK && axis && full > hn)
            st = atomic_file_pwrite(w->file, "", 1, full - 1, err);
        if (st != MHA_OK) {
            npy_writer_abort(w);
            return st;
        }
    }
    if (st != MHA_OK) {
        mha_free(a, w);
        return st;
    }
    *out = w;
    return MHA_OK;
}

mha_status npy_writer_sync(npy_writer *w, uint64_t *bytes, mha_error *err) {
    mha_status st = atomic_file_sync(w->file, err);
    if (st == MHA_OK && bytes)
        *bytes = w->axis
                     ? w->head_bytes + (uint64_t)w->rows_written * w->row_bytes * (uint64_t)w->outer
                     : atomic_file_offset(w->file);
    return st;
}

const char *npy_writer_partial_path(const npy_writer *w) {
    return atomic_file_tmp_path(w->file);
}

int64_t npy_writer_rows_written(const npy_writer *w) {
    return w->rows_written;
}

void npy_writer_detach(npy_writer *w) {
    if (!w) return;
    atomic_file_detach(w->file);
    mha_free(w->alloc, w);
}

mha_status npy_writer_begin(const mha_alloc_ctx *a, const char *path, mha_dtype dtype, int rank,
                            const int64_t *dims, npy_writer **out, mha_error *err) {
    *out = NULL;
    int64_t rows = 0;
    size_t row_bytes = 0;
    mha_status shape_st = npy_writer_shape(path, dtype, rank, dims, &rows, &row_bytes, err);
    if (shape_st != MHA_OK) return shape_st;

    unsigned char head[640];
    size_t hn = npy_format_header(dtype, rank, dims, head, sizeof head);
    if (hn == 0) return mha_fail(err, MHA_ERR_INTERNAL, "%s: cannot format the header", path);
    npy_writer *w = mha_calloc(a, 1, sizeof *w);
    if (!w) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    w->alloc = a;
    w->rows = rows;
    w->row_bytes = row_bytes;
    mha_status st = atomic_file_begin(a, path, &w->file, err);
    if (st == MHA_OK) st = atomic_file_write(w->file, head, hn, err);
    if (st != MHA_OK) {
        npy_writer_abort(w);
        return st;
    }
    *out = w;
    return MHA_OK;
}

mha_status npy_writer_write_rows(npy_writer *w, const void *data, int64_t rows, mha_error *err) {
    if (rows < 0 || rows > w->rows - w->rows_written)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: writing %lld rows after %lld of %lld",
                        atomic_file_path(w->file), (long long)rows, (long long)w->rows_written,
                        (long long)w->rows);
    mha_status st = MHA_OK;
    const size_t run = (size_t)rows * w->row_bytes;
    if (!w->axis) {
        st = atomic_file_write(w->file, data, run, err);
    } else { /* data [outer, rows, ...]: each index of axis 0 its run */
        for (int64_t o = 0; o < w->outer && st == MHA_OK && run > 0; o++)
            st = atomic_file_pwrite(
                w->file, (const unsigned char *)data + (size_t)o * run, run,
                w->head_bytes +
                    ((uint64_t)o * (uint64_t)w->rows + (uint64_t)w->rows_written) * w->row_bytes,
                err);
    }
    if (st == MHA_OK) w->rows_written += rows;
    return st;
}

mha_status npy_writer_commit(npy_writer *w, mha_error *err) {
    mha_status st;
    if (w->rows_written != w->rows) {
        st = mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "%s: only %lld of %lld rows were written",
                      atomic_file_path(w->file), (long long)w->rows_written, (long long)w->rows);
        npy_writer_abort(w);
        return st;
    }
    st = atomic_file_commit(w->file, err);
    mha_free(w->alloc, w);
    return st;
}

void npy_writer_abort(npy_writer *w) {
    if (!w) return;
    atomic_file_abort(w->file);
    mha_free(w->alloc, w);
}
