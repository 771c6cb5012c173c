/* onnx_load_internal.h -- what the three parts of the ONNX importer share:
 * onnx_load_wire.c (file reading, the wire-format pre-scan, protobuf-c with
 * our allocator), onnx_load_tensor.c (the one tensor loader, external data,
 * sparse tensors, TensorProto files) and onnx_load.c (the graph). Private to
 * the importer and its unit test. */
#ifndef MHA_ONNX_LOAD_INTERNAL_H
#define MHA_ONNX_LOAD_INTERNAL_H

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
#include "onnx_ir.h"

#define ONNX_DEFAULT_MAX_FILE_BYTES ((uint64_t)4 << 30)
#define ONNX_DEFAULT_MAX_NESTING 64

/* protobuf-c's allocator, routed through an mha_alloc_ctx so the tests'
 * fault injection reaches protobuf-c's allocations too. `failed` records
 * that an allocation failed, which tells an out-of-memory apart from a
 * malformed message when unpack returns NULL. Must not move after init
 * (pb.allocator_data points at the struct itself). */
/* protobuf-c's blocks below this size come from mha_malloc_small (no 64-byte
 * alignment: names, small structs); larger ones from mha_malloc (64-byte
 * aligned, so that tensors may adopt raw_data). */
#define ONNX_PB_SMALL_BYTES 256

/* Large bytes fields (raw_data) of a file buffer the unpack may release
 * as it goes: protobuf-c copies each one right after allocating its block,
 * in file order, so when the block of field k is asked for, every byte
 * before field k has been decoded and those pages can be given back (the
 * file and the copies are never resident together: peak memory ~1x the
 * weights, not 2x). */
#define ONNX_RELEASE_MIN_BYTES ((size_t)1 << 20)

typedef struct onnx_release {
    unsigned char *base; /* the buffer (owned by the unpack's caller) */
    size_t size;
    size_t *at, *len; /* payload offset and length of each large bytes field, file order */
    size_t n, cap, next;
    size_t released; /* bytes from base given back so far */
} onnx_release;

typedef struct onnx_pb_alloc {
    ProtobufCAllocator pb;
    const mha_alloc_ctx *alloc;
    int failed;
    onnx_release *release; /* NULL: the buffer stays whole */
} onnx_pb_alloc;

void onnx_pb_alloc_init(onnx_pb_alloc *pa, const mha_alloc_ctx *alloc);

/* A whole regular file's bytes: mapped read-only (*mapped = 1) from
 * ONNX_RELEASE_MIN_BYTES on, so that only the pages being decoded are
 * resident (a buffer read in full holds the whole file while the first
 * tensors are copied out of it: file + largest tensor at the peak), else
 * (small files, or no mapping) read into an mha_malloc'd buffer. Refuses an
 * empty file, a non-regular file and one larger than max_bytes
 * (MHA_ERR_LIMIT). Messages start with the path. Freed by
 * onnx_file_free. */
mha_status onnx_read_file(const mha_alloc_ctx *alloc, const char *path, uint64_t max_bytes,
                          void **data, size_t *size, int *mapped, mha_error *err);
void onnx_file_free(const mha_alloc_ctx *alloc, void *data, size_t size, int mapped);

/* Walks the protobuf wire format of a `root` message without building it,
 * descending into every length-delimited field that our schema declares as
 * a sub-message, and refuses: nesting deeper than max_depth (MHA_ERR_LIMIT),
 * truncated varints, bad wire types, length prefixes past the end of the
 * buffer or of the enclosing message (MHA_ERR_MODEL_FORMAT; messages give
 * the byte offset). Also refuses what protobuf-c itself could not frame the
 * same way (a length prefix over 5 bytes or above INT_MAX), so protobuf-c
 * never sees a nesting the scan did not. Iterative: the C stack stays flat. */
mha_status onnx_wire_prescan(const mha_alloc_ctx *alloc, const void *data, size_t size,
                             const ProtobufCMessageDescriptor *root, int max_depth, mha_error *err);
/* The same, also listing the large bytes fields into rel (may be NULL). */
mha_status onnx_wire_prescan_release(const mha_alloc_ctx *alloc, const void *data, size_t size,
                                     const ProtobufCMessageDescriptor *root, int max_depth,
                                     onnx_release *rel, mha_error *err);

/* Pre-scan, then protobuf_c_message_unpack with `pa`. The caller frees *out
 * with protobuf_c_message_free_unpacked(*out, &pa->pb). With pa->release
 * set (base = data), the pages of data are released as they are decoded:
 * data must be a buffer only the caller reads, freed right after. */
mha_status onnx_unpack(const ProtobufCMessageDescriptor *root, const void *data, size_t size,
                       int max_depth, onnx_pb_alloc *pa, ProtobufCMessage **out, mha_error *err);

/* State shared by every tensor of one load. */
typedef struct onnx_load_ctx {
    const mha_alloc_ctx *alloc; /* the tensors' allocator (tensor.alloc points here) */
    const char *base_dir;       /* folder external data resolves in; NULL: refused */
    int dir_fd;                 /* base_dir opened on first use; -1 before */
    uint64_t max_bytes;         /* cap on what a sparse tensor may densify to, and on
                                   the external data of the whole load together */
    uint64_t external_bytes;    /* external data read so far */
    int skip_external_read;     /* check external data (location, file, bounds) but read
                                   nothing: onnx_tensor_load then gives *out = NULL */
    int tensor_file;            /* a TensorProto file, not a model: the file-only id
                                   dtypes (uint16, int16, uint32) are read too */
    uint64_t external_id;       /* the external data files read, as they were: a hash of
                                   each one's device, inode, size and modification time
                                   (and the offset read); 0 when none was read */
} onnx_load_ctx;

void onnx_load_ctx_init(onnx_load_ctx *lc, const mha_alloc_ctx *alloc, const char *base_dir,
                        uint64_t max_bytes);
void onnx_load_ctx_close(onnx_load_ctx *lc);

/* The one tensor loader. `role` names the tensor's place for messages, e.g.
 * "initializer" or "attribute 'value' of Constant node 'c'"; the message
 * then reads "initializer 'W': data has 12 bytes, expected 24 (2x3 float32)".
 * Checks dtype, rank, dims >= 0, the element count and byte size without
 * overflow, the data length (raw_data, typed field or external data), and
 * converts to a tensor. May take over raw_data's buffer (zero copy): `tp`
 * is then left without raw_data. External data counts against
 * lc->max_bytes (with every other external tensor of the load); with
 * lc->skip_external_read an external tensor is checked and *out left NULL. */
mha_status onnx_tensor_load(onnx_load_ctx *lc, Onnx__TensorProto *tp, const char *role,
                            tensor **out, mha_error *err);

/* Densifies a SparseTensorProto (values [NNZ] + indices [NNZ] linear or
 * [NNZ, rank]); both parts go through onnx_tensor_load; every index is
 * bounds-checked. */
mha_status onnx_sparse_load(onnx_load_ctx *lc, Onnx__SparseTensorProto *sp, const char *role,
                            tensor **out, mha_error *err);

/* Opens `rel` (relative, already checked for "/" and "..") for reading
 * beneath the folder dir_fd: openat2 with RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS, or, when the kernel lacks openat2 or force_fallback
 * is set, a walk of openat(O_NOFOLLOW) per component (which refuses every
 * symlink). Returns the fd, or -1 with errno set (EXDEV or ELOOP for an
 * escape). */
int onnx_open_beneath(int dir_fd, const char *rel, int force_fallback);

/* "float32", "string", "complex64", ... for any ONNX TensorProto.DataType. */
const char *onnx_dtype_name(int32_t onnx_type);

/* The graph's nodes with every call of a model-local function replaced by
 * the function's body (onnx_load_functions.c): a flat list of node
 * pointers, the graph's own nodes and new ones owned by `blocks`. opset:
 * the model's default-domain opset (a function importing another is
 * refused). Messages name the function and the calling node. */
typedef struct onnx_inlined {
    Onnx__NodeProto **nodes;
    size_t n, cap;
    void **blocks;
    size_t n_blocks, cap_blocks;
} onnx_inlined;

mha_status onnx_inline_functions(const mha_alloc_ctx *a, const Onnx__ModelProto *m, int64_t opset,
                                 onnx_inlined *out, mha_error *err);
void onnx_inlined_free(const mha_alloc_ctx *a, onnx_inlined *in);

/* A whole float16 model (onnx_load_half.c): float16 initializers and no
 * float32 / float64 / bfloat16 ones. */
int onnx_half_model(const Onnx__GraphProto *gp);
/* The nodes of such a model computed in float32: its float16 graph inputs
 * Cast to float32 first, its float16 outputs Cast to float16 last, every
 * Cast to float16 in between a Cast to float32. The importer widens the
 * float16 tensors it loads. */
mha_status onnx_half_view(const mha_alloc_ctx *a, const Onnx__GraphProto *gp,
                          Onnx__NodeProto *const *nodes, size_t n, onnx_inlined *out,
                          mha_error *err);

#endif
