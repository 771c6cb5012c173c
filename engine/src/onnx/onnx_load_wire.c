/* onnx_load_wire.c -- the protobuf layer of the ONNX importer: reading a
 * model file, pre-scanning the wire format (protobuf-c recurses once per
 * nested message with no limit, so a crafted file could exhaust the stack),
 * and unpacking with protobuf-c through the engine's allocator. */
#define _GNU_SOURCE
#include "onnx_load_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- protobuf-c allocator ---- */

/* protobuf-c's structs, names and short arrays need no 64-byte alignment;
 * large blocks (raw_data, which tensors adopt) keep it
 * (ONNX_PB_SMALL_BYTES). */

/* Gives back the pages of the file buffer below the large field about to
 * be copied (see onnx_release). Only whole pages inside the buffer;
 * MADV_DONTNEED leaves them mapped (zero if read again, which nothing
 * does) until the buffer is freed. */
static void pb_release_before(onnx_release *r, size_t size) {
    if (r->next >= r->n || r->len[r->next] != size) return;
    size_t upto = r->at[r->next++];
#ifdef MADV_DONTNEED
    long page_l = sysconf(_SC_PAGESIZE);
    uintptr_t page = page_l > 0 ? (uintptr_t)page_l : 4096;
    uintptr_t lo = ((uintptr_t)r->base + r->released + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)r->base + upto) & ~(page - 1);
    if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
        r->released = (size_t)(hi - (uintptr_t)r->base);
#else
    (void)upto;
#endif
}

static void *pb_alloc(void *data, size_t size) {
    onnx_pb_alloc *pa = data;
    if (pa->release && size >= ONNX_RELEASE_MIN_BYTES) pb_release_before(pa->release, size);
    void *p = size < ONNX_PB_SMALL_BYTES ? mha_malloc_small(pa->alloc, size)
                                         : mha_malloc(pa->alloc, size);
    if (!p) pa->failed = 1;
    return p;
}

static void pb_free(void *data, void *ptr) {
    onnx_pb_alloc *pa = data;
    mha_free(pa->alloc, ptr);
}

void onnx_pb_alloc_init(onnx_pb_alloc *pa, const mha_alloc_ctx *alloc) {
    pa->pb.alloc = pb_alloc;
    pa->pb.free = pb_free;
    pa->pb.allocator_data = pa;
    pa->alloc = alloc;
    pa->failed = 0;
    pa->release = NULL;
}

/* ---- file reading ---- */

mha_status onnx_read_file(const mha_alloc_ctx *alloc, const char *path, uint64_t max_bytes,
                          void **data, size_t *size, int *mapped, mha_error *err) {
    *data = NULL;
    *size = 0;
    *mapped = 0;
    if (max_bytes == 0) max_bytes = ONNX_DEFAULT_MAX_FILE_BYTES;
    /* O_NONBLOCK: a FIFO given as the model must not hang the open; it is
     * refused as not a regular file just below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return mha_fail(err, MHA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mha_fail(err, MHA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mha_fail(err, MHA_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: empty file (0 bytes)", path);
    }
    if ((uint64_t)st.st_size > max_bytes || (uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return mha_fail(err, MHA_ERR_LIMIT,
                        "%s: file of %llu bytes exceeds the limit of %llu bytes", path,
                        (unsigned long long)st.st_size, (unsigned long long)max_bytes);
    }
    size_t n = (size_t)st.st_size;
    if (n >= ONNX_RELEASE_MIN_BYTES) {
        void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) { /* else read below */
            close(fd);
            *data = m;
            *size = n;
            *mapped = 1;
            return MHA_OK;
        }
    }
    unsigned char *buf = mha_malloc(alloc, n);
    if (!buf) {
        close(fd);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            mha_free(alloc, buf);
            if (r == 0)
                return mha_fail(err, MHA_ERR_IO, "%s: file shrank while reading (%zu of %zu bytes)",
                                path, got, n);
            return mha_fail(err, MHA_ERR_IO, "%s: read failed at byte %zu: %s", path, got,
                            strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = n;
    return MHA_OK;
}

void onnx_file_free(const mha_alloc_ctx *alloc, void *data, size_t size, int mapped) {
    if (mapped)
        munmap(data, size);
    else
        mha_free(alloc, data);
}

/* ---- wire-format pre-scan ---- */

/* protobuf-c makes one allocation per sub-message, string, bytes, packed
 * array and unknown field. A file with more of those than this is refused
 * before unpacking: 2-byte fields each costing a 100-200 byte struct (or a
 * 64-byte aligned block) would otherwise blow a file up ~100x in memory.
 * Real models stay far below (a node with its names and value_info needs
 * ~10-20). */
#define ONNX_MAX_ALLOCATING_FIELDS ((size_t)1 << 24)

/* Bounds on what a file may make the importer build, checked on the wire
 * before protobuf-c allocates anything:
 * - nodes: the largest transformer exports have some 10^4 (a few dozen per
 *   layer); a graph of more is refused rather than built, recognised and
 *   verified node by node;
 * - memory: what protobuf-c will allocate for the file, estimated field by
 *   field (struct sizes, strings, arrays, allocator overhead), may be at
 *   most ONNX_MEMORY_BASE + ONNX_MEMORY_PER_BYTE x the file's size. 8 per
 *   byte admits the densest legitimate encoding (int64 values written as
 *   1-byte varints) and refuses files of tiny messages (an empty NodeProto
 *   is 2 bytes on the wire, ~150 in memory). The graph the importer then
 *   builds costs about as much again. */
#define ONNX_MAX_NODES ((size_t)1 << 18)
#define ONNX_MEMORY_BASE ((uint64_t)64 << 20)
#define ONNX_MEMORY_PER_BYTE 8
#define ONNX_ALLOC_OVERHEAD 32 /* malloc's header and rounding, a pointer slot */

typedef struct wire_frame {
    const ProtobufCMessageDescriptor *desc;
    size_t end; /* offset one past the message's last byte */
} wire_frame;

/* Reads a varint of at most max_bytes bytes from buf[*pos, end). Returns 1 on
 * success, 0 when it runs past end, -1 when it is longer than max_bytes. */
static int wire_read_varint(const unsigned char *buf, size_t end, size_t *pos, int max_bytes,
                            uint64_t *value) {
    uint64_t v = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (*pos >= end) return 0;
        unsigned char c = buf[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *value = v;
            return 1;
        }
    }
    return -1;
}

/* Bytes of one C scalar of a protobuf-c field type. */
static size_t wire_scalar_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    default:
        return 4;
    }
}

/* What protobuf-c allocates for the field whose tag was just read (its
 * payload starts at pos): a sub-message's struct, a string's or bytes'
 * copy, a packed array's elements (a 1-byte varint becomes 8 bytes of
 * int64), one element of a repeated scalar, an unknown field's copy. An
 * estimate from above, for the memory bound; lengths past `end` are
 * refused by the caller, so a bad one only costs a little. */
static uint64_t wire_field_memory(const ProtobufCFieldDescriptor *fd, unsigned wire,
                                  const unsigned char *buf, size_t end, size_t pos) {
    uint64_t len = 0;
    if (wire == 2) {
        size_t p = pos;
        if (wire_read_varint(buf, end, &p, 5, &len) <= 0 || len > end - p) len = 0;
    }
    if (!fd) return sizeof(ProtobufCMessageUnknownField) + len + ONNX_ALLOC_OVERHEAD;
    uint64_t slot = fd->label == PROTOBUF_C_LABEL_REPEATED ? sizeof(void *) : 0;
    if (wire != 2) /* a scalar: in the struct, or one element of a repeated array */
        return slot ? wire_scalar_size(fd->type) : 0;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_MESSAGE:
        return ((const ProtobufCMessageDescriptor *)fd->descriptor)->sizeof_message +
               ONNX_ALLOC_OVERHEAD + slot;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
        return len + 1 + ONNX_ALLOC_OVERHEAD + slot;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64: /* a packed array as wide as on the wire */
        return len + ONNX_ALLOC_OVERHEAD;
    default: /* a packed array of varints: at most one element per byte */
        return len * wire_scalar_size(fd->type) + ONNX_ALLOC_OVERHEAD;
    }
}

/* The wire type a field of type t is written with (0 varint, 1 fixed64,
 * 2 length-delimited, 5 fixed32). */
static unsigned wire_type_of(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return 5;
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return 1;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0;
    }
}

static const char *wire_type_name(unsigned wire) {
    switch (wire) {
    case 0:
        return "varint";
    case 1:
        return "fixed64";
    case 2:
        return "length-delimited";
    default:
        return "fixed32";
    }
}

/* A known field sent with a wire type its type does not take (a repeated
 * number may also come packed, as one length-delimited run), or a packed
 * run that is not whole numbers: protobuf-c refuses the message without
 * saying where. Names the field and the offset instead; payload (the
 * bytes of a packed run) is checked only for wire type 2. */
static mha_status wire_check_type(const ProtobufCFieldDescriptor *fd, const char *msg,
                                  unsigned wire, size_t tag_at, const unsigned char *payload,
                                  size_t len, mha_error *err) {
    unsigned want = wire_type_of(fd->type);
    int packed = wire == 2 && want != 2 && fd->label == PROTOBUF_C_LABEL_REPEATED;
    if (wire != want && !packed)
        return mha_fail(
            err, MHA_ERR_MODEL_FORMAT,
            "field '%s' of %s at byte offset %zu has wire type %u (%s); a field of "
            "its type takes wire type %u (%s)%s",
            fd->name, msg, tag_at, wire, wire_type_name(wire), want, wire_type_name(want),
            want != 2 && fd->label == PROTOBUF_C_LABEL_REPEATED ? " or 2 (packed)" : "");
    if (!packed || !payload) return MHA_OK;
    size_t width = want == 5 ? 4 : want == 1 ? 8 : 0;
    if (width && len % width != 0)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "packed field '%s' of %s at byte offset %zu holds %zu bytes, not a "
                        "whole number of %zu-byte elements",
                        fd->name, msg, tag_at, len, width);
    for (size_t p = 0; !width && p < len;) {
        uint64_t v;
        int r = wire_read_varint(payload, len, &p, 10, &v);
        if (r <= 0)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                            "packed field '%s' of %s at byte offset %zu: %s", fd->name, msg, tag_at,
                            r == 0 ? "its last varint runs past its end"
                                   : "a varint longer than 10 bytes");
    }
    return MHA_OK;
}

static const char *wire_bound_name(size_t end, size_t size) {
    return end == size ? "end of file" : "end of the enclosing message";
}

/* Appends a large bytes field to rel's list. */
static mha_status release_note(const mha_alloc_ctx *alloc, onnx_release *rel, size_t at, size_t len,
                               mha_error *err) {
    if (rel->n == rel->cap) {
        size_t cap = rel->cap ? 2 * rel->cap : 64;
        size_t *a = mha_malloc(alloc, cap * sizeof *a), *l = mha_malloc(alloc, cap * sizeof *l);
        if (!a || !l) {
            mha_free(alloc, a);
            mha_free(alloc, l);
            return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory scanning the protobuf");
        }
        if (rel->n) {
            memcpy(a, rel->at, rel->n * sizeof *a);
            memcpy(l, rel->len, rel->n * sizeof *l);
        }
        mha_free(alloc, rel->at);
        mha_free(alloc, rel->len);
        rel->at = a;
        rel->len = l;
        rel->cap = cap;
    }
    rel->at[rel->n] = at;
    rel->len[rel->n++] = len;
    return MHA_OK;
}

mha_status onnx_wire_prescan(const mha_alloc_ctx *alloc, const void *data, size_t size,
                             const ProtobufCMessageDescriptor *root, int max_depth,
                             mha_error *err) {
    return onnx_wire_prescan_release(alloc, data, size, root, max_depth, NULL, err);
}

mha_status onnx_wire_prescan_release(const mha_alloc_ctx *alloc, const void *data, size_t size,
                                     const ProtobufCMessageDescriptor *root, int max_depth,
                                     onnx_release *rel, mha_error *err) {
    const unsigned char *buf = data;
    if (max_depth <= 0) max_depth = ONNX_DEFAULT_MAX_NESTING;

    /* The frame stack grows on the heap as the nesting deepens (bounded by
     * max_depth), so a generous limit costs nothing for shallow files. */
    size_t cap = 16;
    wire_frame *stack = mha_malloc(alloc, cap * sizeof *stack);
    if (!stack) return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory scanning the protobuf");
    size_t depth = 1;
    stack[0].desc = root;
    stack[0].end = size;
    size_t pos = 0, allocating = 1, nodes = 0;
    uint64_t memory = root->sizeof_message + ONNX_ALLOC_OVERHEAD;
    const uint64_t memory_max = ONNX_MEMORY_BASE + ONNX_MEMORY_PER_BYTE * (uint64_t)size;
    mha_status st = MHA_OK;

    while (depth > 0) {
        wire_frame *top = &stack[depth - 1];
        if (pos == top->end) {
            depth--;
            continue;
        }
        size_t tag_at = pos;
        uint64_t tag;
        /* protobuf-c reads tags of at most 5 bytes */
        int r = wire_read_varint(buf, top->end, &pos, 5, &tag);
        if (r <= 0) {
            st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                          r == 0 ? "truncated field tag at byte offset %zu (%s)"
                                 : "field tag longer than 5 bytes at byte offset %zu (%s)",
                          tag_at, r == 0 ? wire_bound_name(top->end, size) : top->desc->name);
            break;
        }
        uint64_t field = tag >> 3;
        unsigned wire = (unsigned)(tag & 7);
        if (field == 0 || field > ((1u << 29) - 1)) {
            st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                          "invalid field number %llu at byte offset %zu in %s",
                          (unsigned long long)field, tag_at, top->desc->name);
            break;
        }
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field(top->desc, (unsigned)field);
        if ((wire == 2 || !fd) && ++allocating > ONNX_MAX_ALLOCATING_FIELDS) {
            st = mha_fail(err, MHA_ERR_LIMIT,
                          "more than %zu protobuf fields that need memory (at byte offset %zu)",
                          ONNX_MAX_ALLOCATING_FIELDS, tag_at);
            break;
        }
        if (fd && wire != 2 && (wire == 0 || wire == 1 || wire == 5) &&
            (st = wire_check_type(fd, top->desc->name, wire, tag_at, NULL, 0, err)) != MHA_OK)
            break;
        memory += wire_field_memory(fd, wire, buf, top->end, pos);
        if (memory > memory_max) {
            st = mha_fail(err, MHA_ERR_LIMIT,
                          "the file would take more than %llu MiB of memory to unpack (%zu bytes "
                          "of many small fields, at byte offset %zu; the limit is %llu MiB + %d "
                          "bytes per byte of file)",
                          (unsigned long long)(memory_max >> 20), size, tag_at,
                          (unsigned long long)(ONNX_MEMORY_BASE >> 20), ONNX_MEMORY_PER_BYTE);
            break;
        }
        switch (wire) {
        case 0: { /* varint */
            uint64_t v;
            size_t at = pos;
            r = wire_read_varint(buf, top->end, &pos, 10, &v);
            if (r <= 0) {
                st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                              r == 0 ? "truncated varint at byte offset %zu (field %llu of %s)"
                                     : "varint longer than 10 bytes at byte offset %zu "
                                       "(field %llu of %s)",
                              at, (unsigned long long)field, top->desc->name);
            }
            break;
        }
        case 1:   /* fixed64 */
        case 5: { /* fixed32 */
            size_t need = wire == 1 ? 8 : 4;
            if (top->end - pos < need)
                st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                              "truncated %s field at byte offset %zu (field %llu of %s, %zu "
                              "bytes before the %s)",
                              wire == 1 ? "fixed64" : "fixed32", tag_at, (unsigned long long)field,
                              top->desc->name, top->end - pos, wire_bound_name(top->end, size));
            else
                pos += need;
            break;
        }
        case 2: { /* length-delimited */
            uint64_t len;
            size_t at = pos;
            /* protobuf-c reads length prefixes of at most 5 bytes */
            r = wire_read_varint(buf, top->end, &pos, 5, &len);
            if (r <= 0) {
                st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                              r == 0 ? "truncated length prefix at byte offset %zu "
                                       "(field %llu of %s)"
                                     : "length prefix longer than 5 bytes at byte offset %zu "
                                       "(field %llu of %s)",
                              at, (unsigned long long)field, top->desc->name);
                break;
            }
            if (len > (uint64_t)INT_MAX) {
                st = mha_fail(err, MHA_ERR_LIMIT,
                              "field %llu of %s at byte offset %zu is %llu bytes; protobuf "
                              "fields are limited to 2 GiB (store large tensors as external "
                              "data)",
                              (unsigned long long)field, top->desc->name, tag_at,
                              (unsigned long long)len);
                break;
            }
            if (len > top->end - pos) {
                if (top->end == size)
                    st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                                  "length past end of file at byte offset %zu (field %llu of "
                                  "%s declares %llu bytes, %zu remain): truncated file?",
                                  tag_at, (unsigned long long)field, top->desc->name,
                                  (unsigned long long)len, top->end - pos);
                else
                    st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                                  "length past end of the enclosing message at byte offset %zu "
                                  "(field %llu of %s declares %llu bytes, %zu remain)",
                                  tag_at, (unsigned long long)field, top->desc->name,
                                  (unsigned long long)len, top->end - pos);
                break;
            }
            if (fd && (st = wire_check_type(fd, top->desc->name, wire, tag_at, buf + pos,
                                            (size_t)len, err)) != MHA_OK)
                break;
            if (!fd || fd->type != PROTOBUF_C_TYPE_MESSAGE) {
                /* protobuf-c ends a string at its first NUL: "w.bin\0../x"
                 * would be read as "w.bin", and two names differing after a
                 * NUL as one -- another model than other readers see */
                if (fd && fd->type == PROTOBUF_C_TYPE_STRING && len &&
                    memchr(buf + pos, 0, (size_t)len)) {
                    st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                                  "string field '%s' of %s at byte offset %zu holds a NUL byte",
                                  fd->name, top->desc->name, tag_at);
                    break;
                }
                if (rel && fd && fd->type == PROTOBUF_C_TYPE_BYTES &&
                    len >= ONNX_RELEASE_MIN_BYTES &&
                    (st = release_note(alloc, rel, pos, (size_t)len, err)) != MHA_OK)
                    break;
                pos += (size_t)len; /* bytes, string, packed numbers, unknown field */
                break;
            }
            if (depth + 1 > (size_t)max_depth) {
                st = mha_fail(err, MHA_ERR_LIMIT,
                              "messages nested deeper than the limit of %d at byte offset %zu "
                              "(field '%s' of %s)",
                              max_depth, tag_at, fd->name, top->desc->name);
                break;
            }
            if (depth == cap) {
                wire_frame *bigger = mha_malloc(alloc, 2 * cap * sizeof *stack);
                if (!bigger) {
                    st = mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory scanning the protobuf");
                    break;
                }
                memcpy(bigger, stack, cap * sizeof *stack);
                mha_free(alloc, stack);
                stack = bigger;
                cap *= 2;
            }
            if (fd->descriptor == &onnx__node_proto__descriptor && ++nodes > ONNX_MAX_NODES) {
                st = mha_fail(err, MHA_ERR_LIMIT,
                              "more than %zu nodes (at byte offset %zu): refused before "
                              "building the graph",
                              ONNX_MAX_NODES, tag_at);
                break;
            }
            stack[depth].desc = fd->descriptor;
            stack[depth].end = pos + (size_t)len;
            depth++;
            break;
        }
        default:
            /* 3 and 4 are the deprecated groups, which protobuf-c refuses too */
            st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                          "unsupported wire type %u at byte offset %zu (field %llu of %s)", wire,
                          tag_at, (unsigned long long)field, top->desc->name);
            break;
        }
        if (st != MHA_OK) break;
    }
    mha_free(alloc, stack);
    return st;
}

mha_status onnx_unpack(const ProtobufCMessageDescriptor *root, const void *data, size_t size,
                       int max_depth, onnx_pb_alloc *pa, ProtobufCMessage **out, mha_error *err) {
    *out = NULL;
    onnx_release *rel = pa->release && pa->release->base == data ? pa->release : NULL;
    mha_status st = onnx_wire_prescan_release(pa->alloc, data, size, root, max_depth, rel, err);
    pa->release = rel; /* only the buffer it describes */
    if (st != MHA_OK) return st;
    pa->failed = 0;
    ProtobufCMessage *msg = protobuf_c_message_unpack(root, &pa->pb, size, data);
    pa->release = NULL;
    if (!msg) {
        if (pa->failed)
            return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory unpacking %s (%zu bytes)",
                            root->name, size);
        /* The framing passed the scan, so this is a field of the wrong wire
         * type for our schema or a bad packed array. */
        return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                        "malformed protobuf: %s could not be decoded (a field has the wrong "
                        "type)",
                        root->name);
    }
    *out = msg;
    return MHA_OK;
}
