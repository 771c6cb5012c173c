/*
 * mha.h -- libmha, a multi-head attention inference engine.
 *
 * This header is the manual. Read it top to bottom: the simple calls come
 * first (versions, errors, tensors), then the objects (runtime, model), then
 * running a layer, then the advanced hooks.
 *
 * The three objects and who may touch them:
 *
 *   mha_runtime  a thread pool, the plugin registry and the chosen backend.
 *                THREAD-SAFE: any number of threads may call mha_run() on
 *                one runtime at once; each call gets a correct result.
 *   mha_model    one loaded attention layer (weights + configuration).
 *                IMMUTABLE after loading: share it freely across threads and
 *                across runtimes. Free it only when no call uses it.
 *   mha_error    a small caller-owned struct that receives the status and a
 *                detailed message of the last failing call it was passed to.
 *                Give each thread its own (or pass NULL when the message is
 *                not wanted). The library keeps no per-thread or global state.
 *
 * Error policy: every fallible function returns an mha_status. The library
 * never prints, never calls exit(), abort() or assert() on user input, and
 * never installs signal handlers. Messages name the file, node and shape
 * involved where there is one.
 *
 * Tensors are caller-owned, dense and row-major (C order); see mha_tensor.
 */
#ifndef MHA_MHA_H
#define MHA_MHA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MHA_BUILDING_LIBRARY) && defined(__GNUC__)
#define MHA_API __attribute__((visibility("default")))
#else
#define MHA_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define MHA_VERSION_MAJOR 0
#define MHA_VERSION_MINOR 1
#define MHA_VERSION_PATCH 0
#define MHA_VERSION_NUMBER (MHA_VERSION_MAJOR * 10000 + MHA_VERSION_MINOR * 100 + MHA_VERSION_PATCH)
#define MHA_VERSION_STRING "0.1.0"

/** The version of the library actually linked (compare with
 *  MHA_VERSION_NUMBER to detect a header/library mismatch). */
MHA_API unsigned mha_version_number(void);
/** The same as a string, e.g. "0.1.0". Static storage; never NULL. */
MHA_API const char *mha_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/* Every status, once: X(enum name, value, short description). */
#define MHA_STATUS_LIST(X)                                                                         \
    X(MHA_OK, 0, "success")                                                                        \
    X(MHA_ERR_INVALID_ARGUMENT, 1, "invalid argument")                                             \
    X(MHA_ERR_NO_MEMORY, 2, "out of memory")                                                       \
    X(MHA_ERR_IO, 3, "input/output error")                                                         \
    X(MHA_ERR_MODEL_FORMAT, 4, "malformed model file")                                             \
    X(MHA_ERR_MODEL_UNSUPPORTED, 5, "model graph cannot be placed")                                \
    X(MHA_ERR_MODEL_VERIFY, 6, "recognised layer disagrees with the graph")                        \
    X(MHA_ERR_SHAPE, 7, "tensor shape mismatch")                                                   \
    X(MHA_ERR_DTYPE, 8, "unsupported or mismatched data type")                                     \
    X(MHA_ERR_LIMIT, 9, "a size limit was exceeded")                                               \
    X(MHA_ERR_BACKEND, 10, "backend not found or unusable")                                        \
    X(MHA_ERR_PLUGIN, 11, "plugin failed")                                                         \
    X(MHA_ERR_CANCELLED, 12, "cancelled")                                                          \
    X(MHA_ERR_FORKED, 13, "runtime used in a forked child process")                                \
    X(MHA_ERR_DATA_FORMAT, 14, "malformed tensor data file")                                       \
    X(MHA_ERR_INTERNAL, 15, "internal error")                                                      \
    X(MHA_ERR_QUEUE_FULL, 16, "request queue full")                                                \
    X(MHA_ERR_DEADLINE, 17, "deadline passed before the request ran")                              \
    X(MHA_ERR_SHUTDOWN, 18, "request queue shut down")

typedef enum mha_status {
#define MHA_STATUS_ENUM_(name, value, text) name = value,
    MHA_STATUS_LIST(MHA_STATUS_ENUM_)
#undef MHA_STATUS_ENUM_
} mha_status;

/** The enum's name, e.g. "MHA_ERR_SHAPE". Static; "MHA_UNKNOWN_STATUS" for
 *  values outside the list. Thread-safe. */
MHA_API const char *mha_status_name(mha_status status);
/** A short description, e.g. "tensor shape mismatch". Static. Thread-safe. */
MHA_API const char *mha_status_text(mha_status status);

/** Receives the detail of a failure. Caller-owned; one per thread (it is a
 *  plain struct, no locking). On success the functions leave it untouched. */
#define MHA_ERROR_MESSAGE_MAX 512
typedef struct mha_error {
    mha_status status;
    char message[MHA_ERROR_MESSAGE_MAX]; /* NUL-terminated, one line */
} mha_error;

/** Resets *err to MHA_OK and an empty message. Accepts NULL. */
MHA_API void mha_error_clear(mha_error *err);

/** Copies src into dst (dst_size bytes, always NUL-terminated, truncated
 *  between characters) so that no byte a terminal acts on survives: C0
 *  controls and DEL, C1 controls written as UTF-8 (U+0080..U+009F, U+009B is
 *  CSI) and bytes that are not well-formed UTF-8 (a lone 0x9b is CSI on an
 *  8-bit terminal) become "\xNN"; newline, CR and tab become a space
 *  (messages are one line). Printable ASCII and valid UTF-8 pass unchanged,
 *  so escaping twice changes nothing. Returns dst. Names in a model are
 *  untrusted text: every message that may carry one goes through this (the
 *  library's own messages already do). Thread-safe. */
MHA_API char *mha_text_escape(char *dst, size_t dst_size, const char *src);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

/* Element types, numbered as ONNX TensorProto.DataType. */
typedef enum mha_dtype {
    MHA_DTYPE_UNDEFINED = 0,
    MHA_DTYPE_FLOAT32 = 1,
    MHA_DTYPE_UINT8 = 2,
    MHA_DTYPE_INT8 = 3,
    MHA_DTYPE_INT32 = 6,
    MHA_DTYPE_INT64 = 7,
    MHA_DTYPE_BOOL = 9,
    MHA_DTYPE_FLOAT16 = 10,
    MHA_DTYPE_FLOAT64 = 11,
    MHA_DTYPE_BFLOAT16 = 16,
    /* Storage types of token ids in files (.npy, .pb), added in 0.x without
     * changing a value above: the readers widen them to a model's int32 /
     * int64 (mha_dtype_can_convert); no model computes in them, so a model
     * declaring one is refused as before. */
    MHA_DTYPE_UINT16 = 4,
    MHA_DTYPE_INT16 = 5,
    MHA_DTYPE_UINT32 = 12
} mha_dtype;

/** Bytes per element of dtype, 0 for an unknown dtype. */
MHA_API size_t mha_dtype_size(mha_dtype dtype);
/** "float32", "bool", ...; "undefined" for unknown values. Static. */
MHA_API const char *mha_dtype_name(mha_dtype dtype);

#define MHA_MAX_RANK 8

/** A dense row-major tensor. The caller owns `data` (the library only reads
 *  inputs and only writes outputs, never keeps the pointer after a call).
 *  Bool elements are one byte, 0 or 1. */
typedef struct mha_tensor {
    mha_dtype dtype;
    int rank;                    /* 0..MHA_MAX_RANK */
    int64_t shape[MHA_MAX_RANK]; /* each >= 0 */
    void *data;                  /* rank 0 means one element */
} mha_tensor;

/** Number of elements (product of the shape), or -1 if it overflows or a
 *  dimension is negative. */
MHA_API int64_t mha_tensor_numel(const mha_tensor *t);

/* ------------------------------------------------------------------------ */
/* Hooks: allocator and logger                                               */
/* ------------------------------------------------------------------------ */

/** Optional allocator. All of the library's memory for a runtime or model
 *  goes through it (protobuf-c's too). alloc returns memory aligned to at
 *  least `align` (a power of two <= 4096) or NULL; free accepts NULL.
 *  Must be thread-safe if the runtime is used from several threads. */
typedef struct mha_allocator {
    void *(*alloc)(void *user, size_t size, size_t align);
    void (*free)(void *user, void *ptr);
    void *user;
} mha_allocator;

typedef enum mha_log_level {
    MHA_LOG_ERROR = 0,
    MHA_LOG_WARN = 1,
    MHA_LOG_INFO = 2,
    MHA_LOG_DEBUG = 3
} mha_log_level;

/** Optional logger. Called from any thread of the runtime; must be
 *  thread-safe. `message` is one line without a newline, valid only during
 *  the call. Without a logger the library says nothing. */
typedef void (*mha_log_fn)(void *user, mha_log_level level, const char *message);

/* ------------------------------------------------------------------------ */
/* Runtime                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct mha_runtime mha_runtime;

typedef struct mha_runtime_options {
    uint32_t struct_size;           /* sizeof(mha_runtime_options); set by _init */
    int num_threads;                /* 0 = number of online CPUs; the caller's
                                       thread counts as one of them */
    const char *backend;            /* "auto" (NULL), or a plugin name such as
                                       "scalar", "avx2", "avx512", "openmp" */
    const char *plugin_path;        /* a plugin file or folder searched first;
                                       NULL = none (a relative path is taken from
                                       the current directory; a missing one fails
                                       mha_runtime_create with MHA_ERR_BACKEND).
                                       Then MHA_PLUGIN_PATH (':'-separated),
                                       then the folder beside libmha, then the
                                       installed plugin folder. Never the CWD
                                       otherwise. */
    int no_env;                     /* nonzero: ignore MHA_BACKEND, MHA_PLUGIN_PATH
                                       and MHA_CPU_MASK */
    uint64_t cpu_feature_mask;      /* features hidden from plugin probes
                                       (MHA_CPU_* bits of plugin.h); 0 = none */
    size_t worker_stack_bytes;      /* 0 = 1 MiB; less than 512 KiB is raised
                                       to 512 KiB (kernels use up to 256 KiB) */
    const mha_allocator *allocator; /* NULL = malloc; copied */
    mha_log_fn log;                 /* NULL = silent */
    void *log_user;
    mha_log_level log_level; /* highest level passed to log */
} mha_runtime_options;

/** Fills *opts with the defaults. Always call it before setting fields. */
MHA_API void mha_runtime_options_init(mha_runtime_options *opts);

/** Creates a runtime: detects CPU features, loads the plugins, picks the
 *  backend, starts num_threads-1 workers. opts may be NULL (defaults).
 *  Environment (unless opts->no_env): MHA_BACKEND sets the backend when
 *  opts->backend is NULL; MHA_CPU_MASK (hex or names like "avx512,avx2")
 *  hides features; MHA_PLUGIN_PATH adds plugin folders.
 *  Errors: MHA_ERR_BACKEND when the named backend is missing or cannot run
 *  on this CPU (the message lists what was found), MHA_ERR_NO_MEMORY, and
 *  MHA_ERR_INVALID_ARGUMENT. A built-in scalar backend always exists.
 *  Thread-safe (no shared state between runtimes). */
MHA_API mha_status mha_runtime_create(const mha_runtime_options *opts, mha_runtime **out,
                                      mha_error *err);

/** Stops the workers and frees the runtime. Accepts NULL. Must not be
 *  called while another thread runs on this runtime. Safe in a forked
 *  child (it then frees what it can and never waits for threads that do
 *  not exist there). */
MHA_API void mha_runtime_destroy(mha_runtime *rt);

/** Name of the backend in use ("avx512", ...). Valid while rt lives. */
MHA_API const char *mha_runtime_backend(const mha_runtime *rt);
/** Number of threads a run uses (the caller's included). */
MHA_API int mha_runtime_num_threads(const mha_runtime *rt);

/** What the registry knows of one plugin file (see mha_runtime_plugin). */
typedef struct mha_plugin_info {
    const char *name; /* NULL if the file could not be read as a plugin */
    const char *version;
    const char *path; /* "(built-in)" for the built-in scalar fallback */
    int score;        /* probe score; 0 = unusable here */
    int usable;
    int selected;       /* the runtime's backend */
    const char *reason; /* why unusable or skipped; "" otherwise */
} mha_plugin_info;

/** Number of plugin entries the runtime saw (usable or not). A runtime made
 *  with a backend name opens only that plugin's file (mha-plugin-NAME.so),
 *  so it lists the built-in scalar and that file; one made with "auto" (or
 *  no name) lists every plugin found. */
MHA_API size_t mha_runtime_plugin_count(const mha_runtime *rt);
/** Entry i (0-based). Strings stay valid while rt lives.
 *  MHA_ERR_INVALID_ARGUMENT when i is out of range. */
MHA_API mha_status mha_runtime_plugin(const mha_runtime *rt, size_t i, mha_plugin_info *out);

/** The CPU feature bits (MHA_CPU_* of plugin.h) this runtime detected, after
 *  the mask. */
MHA_API uint64_t mha_runtime_cpu_features(const mha_runtime *rt);
/** The names of the feature bits set in `features` ("sse2 avx avx2 fma
 *  ..."), space-separated, into buf (size bytes; whole names only when it
 *  is short). Returns buf ("" when buf is NULL or size 0). Thread-safe. */
MHA_API const char *mha_cpu_features_string(uint64_t features, char *buf, size_t size);

struct mha_plugin; /* mha/plugin.h */
/** The function table of entry i (mha/plugin.h), for a tool that tests a
 *  plugin directly against the built-in scalar reference (whose entry's
 *  path is "(built-in)"), as `mha backends --check` does. NULL when i is out
 *  of range or the entry is not usable here. Valid while rt lives. Calls
 *  into the table bypass the runtime: the caller owns the plugin state it
 *  makes with the table's init, and calls probe first as the ABI says. */
MHA_API const struct mha_plugin *mha_runtime_plugin_table(const mha_runtime *rt, size_t i);

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct mha_model mha_model;

typedef struct mha_model_options {
    uint32_t struct_size;           /* sizeof(mha_model_options); set by _init */
    const mha_allocator *allocator; /* NULL = malloc; used for the model's life */
    int skip_verify;                /* nonzero: skip the reference check of the
                                       recognised layer against the graph */
    uint64_t max_file_bytes;        /* 0 = 4 GiB */
    int max_nesting_depth;          /* protobuf nesting limit; 0 = 64 */
} mha_model_options;

MHA_API void mha_model_options_init(mha_model_options *opts);

/** Loads an ONNX file and recognises the attention layer it holds.
 *  External data is read only from inside the model's folder.
 *  opts may be NULL. On failure *out is NULL and err says why:
 *  MHA_ERR_IO (cannot read), MHA_ERR_MODEL_FORMAT (bad bytes, bad tensor,
 *  bad external data), MHA_ERR_MODEL_UNSUPPORTED (the graph cannot be
 *  placed: the message names the op type and node), MHA_ERR_MODEL_VERIFY,
 *  MHA_ERR_LIMIT, MHA_ERR_NO_MEMORY. Thread-safe. */
MHA_API mha_status mha_model_load_file(const char *path, const mha_model_options *opts,
                                       mha_model **out, mha_error *err);

/** The same from bytes in memory. base_dir is the folder external data is
 *  resolved in; NULL refuses external data. The bytes are not kept. */
MHA_API mha_status mha_model_load_memory(const void *data, size_t size, const char *base_dir,
                                         const mha_model_options *opts, mha_model **out,
                                         mha_error *err);

/** Frees a model. Accepts NULL. No run may be using it. */
MHA_API void mha_model_free(mha_model *model);

/** Roles of the model's inputs. */
typedef enum mha_io_role {
    MHA_ROLE_QUERY = 0, /* layer input: query sequence [B, Sq, D] */
    MHA_ROLE_KEY_VALUE, /* layer input: memory for cross attention */
    MHA_ROLE_Q,         /* bare Attention: Q, K, V */
    MHA_ROLE_K,
    MHA_ROLE_V,
    MHA_ROLE_ATTN_MASK,        /* bool (True = attend) or float additive */
    MHA_ROLE_KEY_PADDING_MASK, /* bool [B, Skv]; see mha_model_info */
    MHA_ROLE_PAST_KEY,         /* KV cache [B, kv_heads, P, d] (bare Attention, or a projected
                                  self-attention layer: query i is then at position P + i, and
                                  the masks cover the P + Sq keys); P may be 0 */
    MHA_ROLE_PAST_VALUE,
    MHA_ROLE_NONPAD_KV_SEQLEN,
    MHA_ROLE_OUTPUT,      /* outputs: Y */
    MHA_ROLE_PRESENT_KEY, /* the past keys then the new ones [B, kv_heads, P + Skv, d] */
    MHA_ROLE_PRESENT_VALUE,
    MHA_ROLE_QK_OUTPUT,
    MHA_ROLE_ATTN_WEIGHTS, /* output: the softmax probabilities averaged over the query
                              heads, [B, Sq, Skv], or of every head, [B, q_heads, Sq, Skv]
                              (nn.MultiheadAttention's need_weights=True) */
    /* appended for whole models (a plan of steps) */
    MHA_ROLE_TOKEN_IDS, /* integer ids that index an embedding table [B, S] */
    /* appended for rotary embeddings given by the caller (Hugging Face layers) */
    MHA_ROLE_POSITION_IDS, /* int64 / int32 [B or 1, S]: the position of each token, the
                              row of the model's rotary tables it turns by (>= 0) */
    MHA_ROLE_ROTARY_COS,   /* float [B or 1, S, rotary_dim] (or [B or 1, 1, S, rotary_dim]):
                              the cos of each token's angles, halves repeated as
                              cat(freqs, freqs) makes them */
    MHA_ROLE_ROTARY_SIN,   /* the sin, likewise */
    /* appended for different key and value inputs (DETR: keys = memory + positions) */
    MHA_ROLE_VALUE_INPUT, /* layer input [B, S_kv, d_kv]: what the V projection reads when it
                            differs from MHA_ROLE_KEY_VALUE, which the K projection reads */
    /* appended for an additive per-head bias given beside the attention mask */
    MHA_ROLE_ATTN_BIAS /* float, added to the scaled scores like a float attn_mask and
                          shaped like one ([B*heads, 1|Sq, Skv] or [B, heads, 1|Sq, Skv]):
                          BLOOM's ALiBi tensor beside its bool mask */
} mha_io_role;

MHA_API const char *mha_io_role_name(mha_io_role role);

/** One graph input or output. Dynamic dimensions are -1. */
typedef struct mha_io_info {
    const char *name;
    mha_io_role role;
    mha_dtype dtype;
    int rank;
    int64_t shape[MHA_MAX_RANK];
} mha_io_info;

/** What was recognised. Strings live as long as the model. */
typedef struct mha_model_info {
    const char *form;    /* "onnx-attention", "onnx-attention-layer",
                            "torch-mha", "onnx-decomposed", "ms-mha",
                            "ms-attention" */
    int has_projections; /* 0 for a bare Attention node */
    int64_t d_model;     /* query input width (0 for bare attention) */
    int64_t d_kv;        /* key/value input width */
    int64_t q_heads, kv_heads;
    int64_t d_head, d_head_v;
    int causal;
    float scale;                       /* as applied to Q.K^T */
    float softcap;                     /* 0 = none */
    int cross;                         /* separate key/value input */
    int key_padding_true_means_ignore; /* for MHA_ROLE_KEY_PADDING_MASK */
    size_t weight_bytes;
    size_t num_inputs, num_outputs;
} mha_model_info;

MHA_API mha_status mha_model_get_info(const mha_model *model, mha_model_info *out);
/** Where the batch axis of the model's sequence inputs and outputs lies:
 *  MHA_LAYOUT_BATCH_FIRST ([B, S, D], the batch on axis 0: ONNX Attention,
 *  most whole models' token ids [B, S]) or MHA_LAYOUT_SEQ_FIRST ([S, B, D],
 *  the batch on axis 1: nn.MultiheadAttention exported with
 *  batch_first=False; a whole model whose token ids are [S, B], as PyTorch's
 *  tutorial language model takes `src`). A whole model's layout is read at
 *  load from what a batch axis means: the load changes one item's tokens
 *  along each axis of the ids ([sym, sym] integers indexing a table) and
 *  keeps the axis whose change stays in that item's outputs.
 *  MHA_LAYOUT_UNKNOWN (appended) when neither axis behaves so (the model
 *  mixes items, or no output has an item axis): nothing can pad or split
 *  its batches. A dataset that streams rows of axis 0 needs the batch
 *  there. BATCH_FIRST for a NULL model. Thread-safe. */
typedef enum mha_layout {
    MHA_LAYOUT_BATCH_FIRST = 0,
    MHA_LAYOUT_SEQ_FIRST = 1,
    MHA_LAYOUT_UNKNOWN = 2
} mha_layout;
MHA_API mha_layout mha_model_layout(const mha_model *model);
/** The idioms the recogniser found on its way to the layer, as one line of
 *  "; "-separated phrases (mask kinds, biases, grouped-query heads, fused
 *  projections, a float32 softmax between Casts, ...), e.g. "key padding from
 *  an extended mask (1 - m) * -3.40282e+38; GQA 8 query / 2 key/value heads".
 *  "" when there is nothing to name, NULL for a NULL model. Lives as long as
 *  the model. Thread-safe. */
MHA_API const char *mha_model_idioms(const mha_model *model);
/** Input i / output i, in graph order. MHA_ERR_INVALID_ARGUMENT if out of
 *  range. */
MHA_API mha_status mha_model_input(const mha_model *model, size_t i, mha_io_info *out);
MHA_API mha_status mha_model_output(const mha_model *model, size_t i, mha_io_info *out);
/** Output i as the file declares it (its ValueInfo): rank -1 when it
 *  declares no shape, -1 for a symbolic or missing dimension; name, role
 *  and dtype as mha_model_output. A declaration the computed shape
 *  contradicts is a hint, not an error (ONNX Runtime warns and runs): the
 *  outputs are as computed, mha_model_output_shapes gives them, and the
 *  `mha` command warns once. MHA_ERR_INVALID_ARGUMENT if out of range. */
MHA_API mha_status mha_model_output_declared(const mha_model *model, size_t i, mha_io_info *out);
/** How many ids input i of a whole model indexes: the rows of the constant
 *  table its integer values are gathered from (the vocabulary of token
 *  ids, the positions of position ids), ids being valid in [0, n); the
 *  smallest such table when it indexes several. 0 when the input indexes
 *  no constant table (a float input, a 0 / 1 mask, a one-layer model) or
 *  i is out of range. Thread-safe. */
MHA_API int64_t mha_model_input_id_extent(const mha_model *model, size_t i);

/* ---- whole models: the plan (appended) ----
 * A graph with several attention layers (or one layer with the rest of a
 * transformer around it) loads as a plan of steps: form "plan" in
 * mha_model_info. A one-layer model has no steps and no layers here. */

/** One step of a plan, in run order. Strings live as long as the model. */
typedef struct mha_step_info {
    /* "attention" (a recognised layer, fused), "gemm", "norm", "add", "gather",
     * "concat" or "interpreted" */
    const char *kind;
    const char *op;   /* attention: the layer's form; interpreted: the node's op type */
    const char *name; /* the graph node (attention: its Softmax / Attention node) */
    double flops;     /* at the verification probe's sizes: compare, do not add up */
    size_t num_nodes; /* graph nodes the step computes */
} mha_step_info;

/** One attention layer found in the graph, recognised or not. */
typedef struct mha_layer_info {
    int recognised;     /* 1: runs as one fused attention step */
    const char *form;   /* recognised: the layer's form, else "" */
    const char *core;   /* the Softmax / Attention node's name */
    const char *reason; /* not recognised: why (its nodes are interpreted), else "" */
} mha_layer_info;

/** Number of steps / attention layers of a plan (0 for a one-layer model).
 *  Thread-safe (the model is immutable). */
MHA_API size_t mha_model_num_steps(const mha_model *model);
MHA_API mha_status mha_model_step(const mha_model *model, size_t i, mha_step_info *out);
MHA_API size_t mha_model_num_layers(const mha_model *model);
MHA_API mha_status mha_model_layer(const mha_model *model, size_t i, mha_layer_info *out);
/** Which axes of a whole model's inputs must have the same extent in a run:
 *  axis `axis` of input i gets an id, the same for every input axis of the
 *  same size symbol (the file's dim_params; axes it leaves unnamed merged
 *  per index when the plan had to). -1 for a fixed axis, an argument out of
 *  range, or a one-layer model. E.g. the token ids' and a padding mask's
 *  axis 1 share an id; an encoder's states or a cache's past keys (the keys
 *  a decoder's mask may cover) have their own. Thread-safe. */
MHA_API int mha_model_input_axis_symbol(const mha_model *model, size_t i, int axis);
/** Bytes of the activation arena of a whole model: the outputs of its
 *  fused steps in one block laid out by their lifetimes, planned on the
 *  first run at each set of input sizes; the largest planned so far (0
 *  before the first run, and for a one-layer model). Interpreted steps'
 *  values and the backend's scratch are not in it. Thread-safe. */
MHA_API size_t mha_model_arena_bytes(const mha_model *model);
/** Which external data files the load read, as they were then: a hash of
 *  each file's device, inode, size and modification time (and the offsets
 *  read). 0 for a model without external data (or NULL). A file replaced
 *  or rewritten since gives another value when the model is loaded again:
 *  `mha run --resume` keeps it in its checkpoint, so a dataset is not
 *  finished with other weights than it was begun with. Thread-safe. */
MHA_API uint64_t mha_model_external_data_id(const mha_model *model);
/** Bytes of the per-run buffers the runtime keeps between runs (an
 *  attention layer's projections, kernel workspaces), with
 *  mha_model_arena_bytes a run's activation memory. Call it while no run
 *  of the runtime is in flight. */
MHA_API size_t mha_runtime_scratch_bytes(const mha_runtime *rt);

/* ------------------------------------------------------------------------ */
/* Running                                                                   */
/* ------------------------------------------------------------------------ */

/** Fills dtype, rank and shape of every output (data untouched) for the
 *  given inputs, and checks the inputs as mha_run would:
 *  MHA_ERR_SHAPE / MHA_ERR_DTYPE / MHA_ERR_INVALID_ARGUMENT with the input
 *  name and shapes in the message. Thread-safe. */
MHA_API mha_status mha_model_output_shapes(const mha_model *model, const mha_tensor *inputs,
                                           size_t num_inputs, mha_tensor *outputs,
                                           size_t num_outputs, mha_error *err);

typedef struct mha_run_options {
    uint32_t struct_size; /* set by _init */
    /* Checked between work units; a nonzero return ends the run with
     * MHA_ERR_CANCELLED (outputs then hold partial results). Called only
     * on the thread that called mha_run, never concurrently for one run. */
    int (*cancel)(void *user);
    void *cancel_user;
    int num_threads; /* 0 = the runtime's; else at most that */
    /* Appended in 0.1 (read only when struct_size covers it).
     * Valid keys per batch item, [B] (B of this call's inputs), or NULL:
     * keys j >= kv_lengths[b] of item b are ignored as if masked, the way a
     * key-padding mask would (a length of 0 gives output rows of 0 before
     * the output projection). Lengths above S_kv mean every key. Lets a
     * batch of right-padded sequences score each item exactly as it would
     * alone at its true length. MHA_ERR_INVALID_ARGUMENT for a negative
     * length. The array must stay valid during the call. */
    const int64_t *kv_lengths;
    /* For a whole model (a plan), the lengths apply to each fused
     * attention step over the model's sequence: batch B and S_q = S_kv =
     * S of the token ids [B, S] ([S, B] when mha_model_layout is
     * MHA_LAYOUT_SEQ_FIRST; the first input's axes 0 and 1 in a model
     * without ids) -- self-attention over the tokens; other steps compute
     * each row on its own. */
    /* Appended in 0.2 (issue 16; read only when struct_size covers it).
     * The compute precision: MHA_PRECISION_FLOAT32 (the default: the
     * results of earlier versions, bit for bit) or MHA_PRECISION_BFLOAT16:
     * weights packed once as bfloat16, activations rounded to bfloat16
     * where they are packed, products summed in float32; softmax, masks,
     * biases and outputs stay float32. Expect about 1e-2 relative error at
     * worst against float32 and far less on average (`mha bench` and `mha
     * check --precision bfloat16` measure it). A backend whose plugin does
     * not declare bfloat16 (mha_plugin.precisions) is refused with MHA_ERR_BACKEND naming
     * it; the model keeps one packing per backend and precision. */
    int precision;
    /* Appended in 0.3 (read only when struct_size covers it). When not
     * NULL, *flops receives the floating-point operations of the run
     * (also when it fails: those of the steps that ran): 2 M N K of every
     * fused matrix product (an attention layer's projections, a whole
     * model's GEMM steps, the patch Conv of a ViT) and 2 B H S_q S_kv
     * (d_k + d_v) of each attention core, halved under a causal mask (the
     * kernels skip the hidden keys). Nodes a whole model leaves to the
     * interpreter and norms are not counted (`mha info` gives their share).
     * FLOPs over the time of the run: its GFLOP/s, as `mha bench` reports. */
    double *flops;
    /* Appended in 0.4 (read only when struct_size covers it). For a whole
     * model (a plan), when not NULL: mha_model_num_steps(model) doubles
     * that receive the wall time of each step of the run in seconds, in
     * mha_model_step's order (0 for a step that did not run: the run
     * failed before it). Where a run's time goes, step by step; timing
     * costs two clock reads per step. Ignored for a one-layer model. */
    double *step_seconds;
} mha_run_options;

/* Compute precisions of mha_run_options.precision (the same values as the
 * plugin ABI's, plugin.h). */
#define MHA_PRECISION_FLOAT32 0
#define MHA_PRECISION_BFLOAT16 1

MHA_API void mha_run_options_init(mha_run_options *opts);

/** Runs the layer forward. inputs[i] binds to model input i (in graph
 *  order); outputs[i] to model output i, whose dtype, rank and shape must
 *  equal what mha_model_output_shapes gives and whose data the caller
 *  allocated. opts may be NULL.
 *  Thread-safe: many threads may run on one runtime and one model at once.
 *  The result is bitwise identical for any thread count.
 *  Concurrent runs split the runtime's threads: with R runs in progress
 *  each step of a run uses its share, num_threads / R (at least 1), so N
 *  callers on an N-thread runtime each run on one core with no handoff
 *  between threads, and a lone run uses every thread (a run that started
 *  beside another widens at its next step once that one ends). At most
 *  max(num_threads, online CPUs) runs are in progress at once; a later
 *  caller hands its run over and sleeps until it is done: the thread of
 *  the next run to end computes it, in arrival order, on the core it
 *  holds (bitwise the same result; a run with a cancel callback waits for
 *  a core and computes on its own thread). A thread computes at most one
 *  other caller's run after its own before it hands its core on. While
 *  another thread computes its run, a SCHED_OTHER calling thread has a
 *  0.1 ms time slice (Linux 6.12+), so that its wake-up preempts a
 *  computing thread at once; its own scheduling attributes are set back
 *  before mha_run returns. The calling thread works (it needs 512 KiB of
 *  free stack: kernels use up to 256 KiB of it); it flushes denormals to
 *  zero during the run (FTZ/DAZ, as the workers do) and gets its
 *  floating-point mode back on return.
 *  Dimensions the model declares for batch and sequence lengths are not
 *  binding: any B, S_q, S_kv consistent across the inputs run.
 *  Errors: MHA_ERR_SHAPE, MHA_ERR_DTYPE, MHA_ERR_INVALID_ARGUMENT,
 *  MHA_ERR_NO_MEMORY, MHA_ERR_CANCELLED, MHA_ERR_FORKED (runtime created
 *  in the parent process), MHA_ERR_PLUGIN. */
MHA_API mha_status mha_run(mha_runtime *rt, const mha_model *model, const mha_tensor *inputs,
                           size_t num_inputs, mha_tensor *outputs, size_t num_outputs,
                           const mha_run_options *opts, mha_error *err);

/* ------------------------------------------------------------------------ */
/* Serving: a request queue with dynamic batching                            */
/* ------------------------------------------------------------------------ */

/* Guidance for servers:
 *  - One runtime for the process (num_threads 0: every CPU) and one model
 *    per file; both are shared by every request thread.
 *  - Many threads calling mha_run at once split the runtime's threads
 *    between their runs: N callers on an N-thread runtime each use one core
 *    (no handoffs, nothing spins), a lone caller uses them all; callers
 *    beyond the cores (or the runtime's threads, the larger) wait for a
 *    turn, first come first served, rather than share a core by time
 *    slices. So the default num_threads (0: every CPU) is right whatever
 *    the number of request threads. That is the right shape for long
 *    requests (hundreds of tokens and more).
 *  - An mha_queue groups the requests that wait while a batch runs into
 *    the next batch (each item with its own key length, so each result is
 *    bitwise what the request gives alone with mha_run), bounded by
 *    max_batch requests and max_batch_tokens (batch size x longest
 *    sequence). A request that finds the queue idle goes at once: holding
 *    it for company (hold_when_idle, max_delay_ms) leaves the cores idle
 *    and adds its wait to every request behind it.
 *    What a batch saves is the per-run cost (waking the pool, the phases'
 *    barriers) and the cores' idle time between requests, not arithmetic:
 *    where the GEMM kernel is compute-bound from a few rows (avx512 on a
 *    d_model 768 layer), a row costs the same alone or in a batch, and a
 *    padded row costs as much as a real one. So a batch is cut into runs
 *    of similar lengths (max_padding, default 1/8 of a run's rows): 16
 *    requests of 8 tokens share one run; requests of 32, 24, 16 and 8
 *    tokens run as three. A request arriving behind a batch waits for its
 *    whole run: the run is bounded by max_batch_ms (about a fifth of the
 *    latency target; by default 2 ms, a fifth of 10 ms, or 0.4 x
 *    max_queue_ms when that is set) rather than only by max_batch. Where a
 *    row costs the same in a batch (the layer above at S 32), bigger
 *    batches only lengthen every request's wait: at 900 S 32 requests/s on
 *    2 cores the p50 was 7 ms with max_batch 16 unbounded and 3.4-3.9 ms at
 *    2 ms. A batch that fits that bound on one core runs on one thread by
 *    default (num_threads 0): a short run split over two threads pays the
 *    phases' barriers (a fifth more CPU), and near the cores' capacity the
 *    other core takes the next batch. For a latency target other than
 *    10 ms set max_batch_ms to a fifth of it (or max_queue_ms to half).
 *  - At a 10 ms p99 with Poisson arrivals no queue reaches the FMA peak's
 *    rate: a d_model 768 layer at S 32 on two cores at 92 % of a core's
 *    peak a request (0.78 ms) sustains at most 89 % of it with every core
 *    busy and nobody waiting, 83 % simulated (docs/SERVING.md, "The float32
 *    ceiling"); MHA_PRECISION_BFLOAT16 passes it.
 *  - The queue is bounded: submit fails at once with MHA_ERR_QUEUE_FULL, so
 *    an overloaded server refuses (HTTP 503) rather than building a backlog.
 *    Bound it in time as well as in count: max_latency_ms, the latency
 *    target, refuses a request whose predicted completion (the tokens
 *    ahead and its own at the rate the queue drained lately) passes it, so
 *    that under overload the accepted requests keep their latency and the
 *    excess is refused at once instead of waiting in line (max_queue_ms,
 *    about half the target, bounds the wait alone and sets max_latency_ms
 *    to twice itself). A request's deadline_ms is weighed at submit too.
 *  - Whole models over token ids (BERT-, MiniLM-, GPT-2-style exports) batch
 *    the same way: a request gives its ids, the queue fills the masks and
 *    the other ids and returns every output cut to the request.
 *  - Batching never changes a result: the masks and key lengths keep the
 *    padding out of attention, but a model may read it elsewhere (the last
 *    position's logits, a pooling or an attention they do not reach) or
 *    mix the requests of a run (activations quantized over the batch). So
 *    mha_queue_create probes the model once through the batches' own path
 *    and runs only equal lengths together, or one request a run, when that
 *    is what keeps every result bitwise the request's alone
 *    (mha_queue_stats.batching). A lone attention layer is not probed.
 *  - `mha serve MODEL` is an HTTP face on this queue (docs/SERVING.md). */

typedef struct mha_queue mha_queue;
typedef struct mha_request mha_request;

typedef struct mha_queue_options {
    uint32_t struct_size;     /* sizeof(mha_queue_options); set by _init */
    int max_batch;            /* requests per batch at most; default 16; 1 = no batching */
    int64_t max_batch_tokens; /* batch size x longest sequence at most; default 4096 (a
                                 longer single request still runs, alone) */
    double max_delay_ms;      /* how long a batch's first request waits for company
                                 while the cores are busy (hold_when_idle); default
                                 1 ms; 0 = take what is there */
    int capacity;             /* requests waiting at most; default 1024 */
    int num_dispatchers;      /* batches computed at once (threads the queue starts);
                                 0 (the default): one per thread of the runtime. They
                                 share the runtime's threads: a batch running alone
                                 gets every thread, two at once one each (a run on
                                 one core wastes no time at the phases' barriers:
                                 4-5 % less CPU a request, S 32 on 2 cores; a
                                 fifth less for a MiniLM-sized model at 16 tokens).
                                 Requests waiting while several dispatchers are free
                                 are shared out between them, an even part each */
    int num_threads;          /* threads per batch run. 0 (the default): a batch whose
                                 tokens, at the cost a token took the last runs on
                                 one thread, compute within max_batch_ms (2 ms when
                                 that is off) runs on one thread (the first batch
                                 too, measuring it); a longer one gets the runtime's
                                 threads (a batch running alone gets them all). A
                                 short run split over two threads pays the phases'
                                 barriers (a lone 8-token request of a d_model 768
                                 layer cost a fifth more CPU on two threads than on
                                 one, at 32 tokens 0.96 against 0.78 ms, a
                                 MiniLM-sized model at 16 tokens a quarter more),
                                 and near the cores' capacity the other core takes
                                 the next batch. 1: every batch on one core, even
                                 alone. N (the runtime's thread count): every batch
                                 on the runtime's threads, shared out between the
                                 batches running (the former default: the lowest
                                 latency alone, more CPU a request) */
    size_t stack_bytes;       /* stack of each dispatcher thread; 0 = 2 MiB */
    double max_queue_ms;      /* 0 = off; else submit also refuses (MHA_ERR_QUEUE_FULL)
                                 when the tokens ahead of the request would take longer
                                 than this to compute, at the cost per token the last
                                 batches took, or when the oldest waiting request has
                                 already waited longer than this past max_delay_ms (the
                                 queue's delay as seen, which follows a machine that
                                 slows at once): a queue bounded in time, so that under
                                 overload the accepted requests keep their latency. A
                                 request also waits for its own batch's run: bound that
                                 with max_batch_ms */
    double max_padding;       /* share of a run's rows that may be padding; default
                                 0.125. A batch of requests whose lengths differ more is
                                 run as several runs of similar lengths (longest first):
                                 a padded row costs as much as a real one. 1 = always one
                                 run. (Appended: a struct_size without it takes the
                                 default.) */
    double max_batch_ms;      /* 0 (the default): a fifth of the latency target, taken
                                 as twice max_queue_ms when that is set, else 10 ms
                                 (2 ms); negative: off (the former default); else
                                 a batch takes requests
                                 only while their tokens would take at most this long
                                 to compute (at the cost per token the last batches
                                 took; the first request always), and counts as full
                                 once the waiting ones would: a batch's run is what a
                                 request arriving behind it waits, so a latency target
                                 bounds it (about a fifth of the target). When the
                                 queue is behind, a batch may take as long as its
                                 oldest request has already waited past
                                 max_delay_ms: requests that piled up while every
                                 dispatcher computed go together (a whole model whose
                                 one request takes longer than max_batch_ms batches
                                 then too). (Appended after max_padding.) */
    int hold_when_idle;       /* 0 (the default): a request that finds no batch of the
                                 queue running goes at once, with whatever waits, and
                                 max_delay_ms applies only while another dispatcher's
                                 batch holds the cores: a request is never held while
                                 they are free (requests that arrive during a run form
                                 the next batch by themselves). 1: the first request
                                 waits max_delay_ms for company even on an idle queue.
                                 (Appended after max_batch_ms.) */
    int caller_runs;          /* 0 (the default): dispatcher threads compute every
                                 batch. 1: a thread in mha_request_wait (timeout < 0)
                                 whose request still waits, while fewer batches run
                                 than there are dispatchers (a core is free), takes
                                 the next batch and computes it itself, its own
                                 request in it or not, until its request has left the
                                 list: a lone request then runs on its submitter's
                                 thread with no hand-off to a dispatcher and back.
                                 Such a waiter calls mha_run (the stack it needs) and
                                 runs other requests' callbacks. Not with
                                 hold_when_idle (MHA_ERR_INVALID_ARGUMENT).
                                 (Appended after hold_when_idle.) */
    int precision;            /* MHA_PRECISION_FLOAT32 (the default) or
                                 MHA_PRECISION_BFLOAT16: every batch's run in that
                                 precision (mha_run_options.precision). In bfloat16
                                 too each result is bitwise what mha_run in bfloat16
                                 gives for the request alone -- but for a whole
                                 model's attention over padded keys that gets no key
                                 lengths (a cross-attention's) and whose mask fills
                                 the padding with a finite term above -1e30 (-10000,
                                 say): there the last bits may differ
                                 (docs/SERVING.md). The weights are packed at
                                 create; a backend that does not serve it is refused
                                 there with MHA_ERR_BACKEND. (Appended after
                                 caller_runs.) */
    double max_latency_ms;    /* the latency budget of an accepted request, submit to
                                 completion. 0 (the default): twice max_queue_ms when
                                 that is set, else off; negative: off. Submit refuses
                                 (MHA_ERR_QUEUE_FULL, counted in rejected_full) a
                                 request whose predicted completion passes it: the
                                 tokens waiting and running ahead of it plus its own,
                                 at the rate the queue has drained tokens lately (its
                                 dispatchers together, over the time it computed;
                                 moving, so it follows the load), or the oldest
                                 waiting request's delay plus its own tokens, if
                                 longer; plus the part of waited_ms the queue had
                                 work. An idle queue (nothing waiting or running)
                                 accepts: no refusal shortens a lone run. A bounded
                                 count is not a bounded wait: under overload the
                                 excess is refused at once and the accepted requests
                                 keep about this latency. Set it to the latency
                                 target. (Appended after precision.) */
} mha_queue_options;

MHA_API void mha_queue_options_init(mha_queue_options *opts);

/** Creates a queue serving `model` on `rt` and starts its dispatcher
 *  threads. The model takes either one float32 query sequence (a
 *  self-attention layer, or a whole model over one: input role
 *  MHA_ROLE_QUERY [B, S, D] and no other input), or token ids (a whole
 *  model: its first MHA_ROLE_TOKEN_IDS input [B, S], the one a request
 *  gives), beside which it may take only masks and more token ids [B, S]:
 *  a batch fills each mask with 1 at the request's tokens and 0 at the
 *  padding (the Hugging Face attention_mask; a key padding mask whose
 *  true means ignore the other way round) and further token ids (token
 *  type / segment ids) with 0. A whole model's outputs must have the batch
 *  on axis 0 and, when they have one, the sequence on axis 1; its
 *  attention layers must all be fused, or the model must take a mask.
 *  Anything else is MHA_ERR_MODEL_UNSUPPORTED with the reason. Each
 *  request's results are bitwise what mha_run gives for it alone (batch
 *  1, its own length, masks of 1, other ids 0). rt and model must outlive
 *  the queue. The
 *  queue's memory (requests, batch buffers) comes from malloc, not the
 *  runtime's allocator.
 *  Errors: MHA_ERR_INVALID_ARGUMENT (bad options), MHA_ERR_NO_MEMORY,
 *  MHA_ERR_MODEL_UNSUPPORTED, MHA_ERR_BACKEND (the runtime's backend does
 *  not serve the options' precision). Thread-safe. */
MHA_API mha_status mha_queue_create(mha_runtime *rt, const mha_model *model,
                                    const mha_queue_options *opts, mha_queue **out, mha_error *err);

/** Called once when a request completes (whatever its status), on a
 *  dispatcher thread, or on the thread of mha_request_cancel /
 *  mha_queue_shutdown for a request that never ran. Keep it short: it
 *  delays the next batch. It may read the request and call
 *  mha_request_free on it; it must not call mha_queue_shutdown or
 *  mha_queue_destroy. */
typedef void (*mha_request_done_fn)(void *user, mha_request *req);

typedef struct mha_submit_options {
    uint32_t struct_size;     /* set by _init */
    double deadline_ms;       /* from now; a request not started by then completes
                                 with MHA_ERR_DEADLINE (refused at submit when the
                                 work ahead would already take longer); 0 = none */
    mha_request_done_fn done; /* NULL: use mha_request_wait */
    void *done_user;
    /* Appended after 0.1.0: how long the request already waited before
     * this submit (a server reading its body, say), in ms; 0 = none. The
     * part of it during which the queue had work (requests waiting or
     * running, without a break up to this submit) counts against
     * max_queue_ms: the request is refused at once (MHA_ERR_QUEUE_FULL)
     * when that part plus the expected wait passes it. Time the queue sat
     * idle (a slow client's own upload) does not count. */
    double waited_ms;
} mha_submit_options;

MHA_API void mha_submit_options_init(mha_submit_options *opts);

/** Queues one sequence: a float32 tensor [S, d_model] or [1, S, d_model],
 *  or for a model taking token ids, the ids [S] or [1, S] (the model's
 *  integer type, int64 for exported transformers); [S, 1, d_model] / [S, 1]
 *  for a sequence-first model (mha_model_layout), whose outputs then keep
 *  that order ([S, 1, ...]); S >= 1 (a whole model's
 *  limit, such as its position table, shows when it runs: a batch that
 *  fails is run again request by request, so only the request at fault
 *  fails). The data is copied: the caller may reuse `input` at once. On
 *  success *out is a request the caller owns and releases with
 *  mha_request_free (also when a callback is used). opts may be NULL.
 *  Fails at once, with no request made, with: MHA_ERR_QUEUE_FULL (capacity
 *  requests are waiting, or the expected wait exceeds max_queue_ms or would
 *  keep the request from starting before its deadline_ms: the work ahead
 *  at the cost per token the last batches took, or what the oldest waiting
 *  request has waited already, the larger: back-pressure, try later or
 *  refuse),
 *  MHA_ERR_SHUTDOWN (the queue no longer accepts), MHA_ERR_SHAPE,
 *  MHA_ERR_DTYPE, MHA_ERR_INVALID_ARGUMENT, MHA_ERR_NO_MEMORY.
 *  Thread-safe: any number of threads may submit at once. */
MHA_API mha_status mha_queue_submit(mha_queue *q, const mha_tensor *input,
                                    const mha_submit_options *opts, mha_request **out,
                                    mha_error *err);

/** Blocks until the request completed and returns its status: MHA_OK (the
 *  output is ready), MHA_ERR_CANCELLED (mha_request_cancel),
 *  MHA_ERR_DEADLINE, MHA_ERR_SHUTDOWN (cancelled by mha_queue_shutdown
 *  without draining), or the run's error (the batch failed; err has its
 *  message). timeout_ms < 0 waits forever; when the time runs out first
 *  the request is still pending and the return is MHA_ERR_LIMIT.
 *  Thread-safe; any number of threads may wait on one request. */
MHA_API mha_status mha_request_wait(mha_request *req, double timeout_ms, mha_error *err);

/** Asks for the request to be dropped. A request still waiting completes
 *  at once with MHA_ERR_CANCELLED (its callback runs on this thread); one
 *  already in a running batch completes with MHA_ERR_CANCELLED when the
 *  batch ends, its result discarded (a batch whose every request was
 *  cancelled stops early). Returns 1 if the request will complete as
 *  cancelled, 0 if it had already completed. Thread-safe. */
MHA_API int mha_request_cancel(mha_request *req);

/** What happened to a request. Fields are meaningful once it completed. */
typedef struct mha_request_info {
    int done;          /* 1 once completed */
    mha_status status; /* as mha_request_wait returns */
    int batch_size;    /* requests in the batch it ran in; 0 if it never ran */
    int64_t seq_len;   /* its S */
    double queue_ms;   /* submit -> its batch started (or it completed) */
    double run_ms;     /* its batch's run */
} mha_request_info;

MHA_API void mha_request_get_info(const mha_request *req, mha_request_info *out);

/** The output of a completed request with status MHA_OK: float32, shaped
 *  like the input ([S, d_out] or [1, S, d_out]), owned by the request (valid
 *  until mha_request_free); NULL otherwise. For a whole model, its first
 *  output (see mha_request_output_at). */
MHA_API const mha_tensor *mha_request_output(const mha_request *req);

/** Number of outputs a request gets: 1 for a layer (its first output), every
 *  output of a whole model (e.g. last_hidden_state and pooler_output).
 *  Known from submit on; 0 for NULL. */
MHA_API size_t mha_request_num_outputs(const mha_request *req);
/** Output i of a completed request with status MHA_OK, in the model's output
 *  order, NULL otherwise. Per-token outputs are [S, ...] ([1, S, ...] when
 *  the input had its batch axis), per-sequence ones (a pooled vector) [...]
 *  ([1, ...]). Owned by the request, valid until mha_request_free. */
MHA_API const mha_tensor *mha_request_output_at(const mha_request *req, size_t i);

/** Releases the caller's hold on a request; call it exactly once per
 *  request (in its callback is fine). A request still pending is cancelled
 *  and its memory released once it completes (its callback, if any, still
 *  runs once). Accepts NULL. Thread-safe with respect to the queue. */
MHA_API void mha_request_free(mha_request *req);

/** How a queue puts requests together in one run, decided once by a probe
 *  at mha_queue_create (a short sequence alone, beside one of its length,
 *  and padded beside a longer one; every output compared bitwise). */
typedef enum mha_queue_batching {
    MHA_BATCH_MIXED_LENGTHS = 0, /* nothing differed: lengths mixed within max_padding */
    MHA_BATCH_EQUAL_LENGTHS = 1, /* padding changed a result (the model reads the last
                                    position, or pools or attends where neither the masks
                                    nor the key lengths reach): equal lengths only */
    MHA_BATCH_ALONE = 2          /* a request's results depend on the others in its run
                                    (activations quantized over the whole batch), or the
                                    probe could not run: one request a run */
} mha_queue_batching;

/** Counters since the queue was created. */
typedef struct mha_queue_stats {
    uint64_t submitted;     /* accepted by submit */
    uint64_t rejected_full; /* MHA_ERR_QUEUE_FULL: capacity or max_queue_ms (the
                               deadline refusals are rejected_deadline) */
    uint64_t completed_ok;
    uint64_t failed; /* completed with a run error */
    uint64_t cancelled;
    uint64_t expired; /* MHA_ERR_DEADLINE */
    uint64_t shut;    /* cancelled by a shutdown without draining */
    uint64_t batches; /* batch runs */
    uint64_t batched; /* requests that ran in them (mean batch = batched / batches) */
    int depth;        /* waiting now */
    int running;      /* in batches running now */
    /* Appended after 0.1.0: MHA_ERR_QUEUE_FULL from submit because the work
     * ahead would pass the request's own deadline_ms (the queue neither
     * full nor behind max_queue_ms); not counted in rejected_full. */
    uint64_t rejected_deadline;
    /* Appended after 0.1.0: how requests share a run, fixed at
     * mha_queue_create by its probe (mha_queue_batching). */
    int batching;
    /* Appended after batching: batch runs computed on one thread
     * (num_threads 1, or 0 and the batch short). */
    uint64_t runs_one_core;
} mha_queue_stats;

MHA_API void mha_queue_get_stats(mha_queue *q, mha_queue_stats *out);

/** Stops accepting (submit then fails with MHA_ERR_SHUTDOWN) and empties the
 *  queue: drain = 1 computes every waiting request, drain = 0 completes
 *  each with MHA_ERR_SHUTDOWN (batches already running finish either way).
 *  Returns when no request is waiting or running. *drained and *cancelled
 *  (either may be NULL) receive how many requests this call let run and
 *  how many it cancelled. Thread-safe; a second call returns at once with
 *  zero counts. Must not be called from a completion callback. */
MHA_API void mha_queue_shutdown(mha_queue *q, int drain, uint64_t *drained, uint64_t *cancelled);

/** Shuts down without draining (if not done yet), joins the dispatcher
 *  threads and frees the queue. Requests still held by the caller stay
 *  valid until mha_request_free. Accepts NULL. No other call on q may run
 *  or follow. */
MHA_API void mha_queue_destroy(mha_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* MHA_MHA_H */
