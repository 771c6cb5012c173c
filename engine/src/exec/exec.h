/* exec.h -- the forward pass of one attention layer: weights packed for a
 * backend plugin, inputs bound to their roles and checked, and the run
 * itself split into units for the thread pool.
 *
 * A layer with projections runs in three phases per chunk of batch items:
 *   (1) projection GEMM tiles   X[B*S, D] . W -> Q|K|V buffer [B*S, N]
 *   (2) attention units         (batch item, q head, query block)
 *   (3) output GEMM tiles       concat[B*Sq, Hq*dv] . Wo -> Y
 * A bare Attention node runs phase (2) alone, straight on the caller's
 * tensors. Every unit writes a disjoint part of its output, so the result is
 * bitwise the same for any thread count. */
#ifndef MHA_EXEC_H
#define MHA_EXEC_H

#include "layer.h"
#include "mha/plugin.h"
#include "pool.h"

/* One weight matrix packed for a plugin's GEMM: y = x . W + bias. */
typedef struct exec_gemm_weights {
    int64_t K, N;        /* W is [K, N] */
    void *packed;        /* packed_bytes bytes (the plugin's packed size), or NULL */
    size_t packed_bytes; /* in the pack's precision */
    float *bias;         /* [N] or NULL */
} exec_gemm_weights;

/* Every projection of a layer packed for one plugin. Self-attention packs
 * Wq|Wk|Wv side by side into one GEMM; cross attention packs Wq alone and
 * Wk|Wv side by side (they read different inputs). */
typedef struct exec_packed {
    const mha_plugin *plugin;
    int precision; /* MHA_PRECISION_* the weights were packed in */
    int fused_qkv;
    exec_gemm_weights qkv; /* fused_qkv: [d_model, Hq*dk + Hkv*dk + Hkv*dv] */
    exec_gemm_weights q;   /* cross: [d_model, Hq*dk] */
    exec_gemm_weights kv;  /* cross: [d_kv, Hkv*dk + Hkv*dv]; [d_kv, Hkv*dk] (W_k alone)
                              with a separate value input (layer v_input) */
    exec_gemm_weights o;   /* [Hq*dv, d_out] */
    exec_gemm_weights v;   /* v_input: [d_kv, Hkv*dv] (W_v, read from the value input) */
} exec_packed;

/* Packs L's weights with plugin->gemm_pack_b (nothing for a bare Attention
 * layer). *out is freed with exec_packed_free. */
mha_status exec_pack_weights(const mha_alloc_ctx *a, const layer *L, const mha_plugin *plugin,
                             exec_packed **out, mha_error *err);
/* The same in a compute precision (MHA_PRECISION_*) the plugin serves
 * (registry_plugin_serves), through its ABI 1.3 packing with its state;
 * float32 through gemm_pack_b gives exactly exec_pack_weights. */
mha_status exec_pack_weights_prec(const mha_alloc_ctx *a, const layer *L, const mha_plugin *plugin,
                                  void *plugin_state, int precision, exec_packed **out,
                                  mha_error *err);
void exec_packed_free(const mha_alloc_ctx *a, exec_packed *pk); /* accepts NULL */
size_t exec_packed_bytes(const exec_packed *pk);

/* The services table lent to a plugin's init(): its allocator is `alloc`
 * (any power-of-two alignment up to 4096), its logger forwards messages up
 * to log_level. The struct must outlive the plugin's state. */
typedef struct exec_services {
    mha_plugin_services table;
    const mha_alloc_ctx *alloc;
    mha_log_fn log;
    void *log_user;
    mha_log_level log_level;
} exec_services;

void exec_services_init(exec_services *s, const mha_alloc_ctx *a, mha_log_fn log, void *log_user,
                        mha_log_level log_level, uint64_t cpu_features);

/* The caller's tensors bound to their roles, with the sizes they imply. */
typedef struct exec_binding {
    const mha_tensor *x_q;         /* has_proj: query input */
    const mha_tensor *x_kv;        /* has_proj: key/value input (x_q for self) */
    const mha_tensor *q, *k, *v;   /* bare attention */
    const mha_tensor *attn_mask;   /* NULL if absent */
    const mha_tensor *key_padding; /* NULL if absent */
    int64_t B, Sq, Skv;
    int64_t dk, dv, d_out; /* effective head sizes and output width */
    size_t y_index;        /* the output with role MHA_ROLE_OUTPUT */
    mha_tensor y_shape;    /* its dtype, rank and shape (no data) */
    /* ---- appended (issue 7): KV cache, key lengths, extra outputs ---- */
    const mha_tensor *past_key, *past_value; /* [B, Hkv, P, dk|dv], or NULL */
    const mha_tensor *kv_lengths;            /* [B] int64/int32 valid keys, or NULL */
    int64_t P, T;                            /* past length; total keys T = P + Skv */
    int64_t present_key_index, present_value_index, qk_index; /* outputs; -1 = absent */
    /* ---- appended (issue 14) ---- */
    int64_t weights_index; /* output of the head-averaged probabilities; -1 = absent */
    /* ---- appended (issue 14): rotary positions or tables given as inputs ---- */
    const mha_tensor *position_ids;            /* [B or 1, Sq] integer, or NULL */
    const mha_tensor *rotary_cos, *rotary_sin; /* [B or 1, (1,) Sq, rotary_dim], or NULL */
    /* ---- appended (issue 14): a separate value input ---- */
    const mha_tensor *x_v;       /* has_proj: what V is projected from (x_kv unless L->v_input) */
    const mha_tensor *attn_bias; /* MHA_ROLE_ATTN_BIAS: added like a float attn_mask, or NULL */
} exec_binding;

/* Binds and checks every input against L (dtype, rank, widths, batch and
 * sequence agreement between inputs, mask broadcastability). Messages name
 * the input and both shapes. Defined in layer_util.c. */
mha_status layer_bind(const layer *L, const mha_tensor *inputs, size_t n_inputs, size_t n_outputs,
                      exec_binding *bd, mha_error *err);

typedef struct exec_env {
    const mha_alloc_ctx *alloc; /* intermediates of the run */
    const mha_plugin *plugin;
    void *plugin_state;        /* from plugin->init */
    pool *pool;                /* NULL: the calling thread alone */
    int num_threads;           /* 0 = every thread of the pool */
    int (*cancel)(void *user); /* polled between units; may be NULL */
    void *cancel_user;
    size_t chunk_bytes;        /* bound on the intermediates; 0 = 64 MiB */
    const int64_t *kv_lengths; /* [B] valid keys per batch item, or NULL */
    int precision;             /* MHA_PRECISION_*: of every GEMM and attention call */
} exec_env;

/* Packs the side-by-side concatenation of n_parts weight matrices
 * w[i] [K, cols[i]] (and their biases, NULL = zeros) as one [K, N] matrix;
 * free with exec_weights_free. */
mha_status exec_pack_parts(const mha_alloc_ctx *a, const mha_plugin *p, int64_t K, int n_parts,
                           const float *const *w, const int64_t *cols, const float *const *bias,
                           const char *what, exec_gemm_weights *out, mha_error *err);
/* The same in a compute precision (MHA_PRECISION_*) through the plugin's
 * ABI 1.3 packing with its state; float32 is exec_pack_parts. */
mha_status exec_pack_parts_prec(const mha_alloc_ctx *a, const mha_plugin *p, void *state,
                                int precision, int64_t K, int n_parts, const float *const *w,
                                const int64_t *cols, const float *const *bias, const char *what,
                                exec_gemm_weights *out, mha_error *err);
void exec_weights_free(const mha_alloc_ctx *a, exec_gemm_weights *w);

/* The host's epilogue of a GEMM tile: rows [m0, m1), columns [n0, n1) of
 * C (leading dimension N), called right after the tile is computed, on the
 * thread that computed it. */
typedef struct exec_gemm_epilogue {
    void (*fn)(void *user, float *C, int64_t N, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
    void *user;
} exec_gemm_epilogue;

/* One plugin GEMM call: rows [m0, m1) and columns [n0, n1) of C [M, W->N]
 * (ldc) = A [M, W->K] (lda) . W + bias, in env's precision. */
mha_status exec_gemm_tile(const exec_env *env, const exec_gemm_weights *W, int64_t M,
                          const float *A, int64_t lda, float *C, int64_t ldc, int64_t m0,
                          int64_t m1, int64_t n0, int64_t n1, int num_threads, mha_error *err);

/* C[seg] = A[seg] . W (+ bias) for n_segs segments of M rows each; segment s
 * reads rows A + s*a_seg (lda apart) and writes C + s*c_seg (ldc apart).
 * Units are (segment, row tile, column tile), column tile fastest. */
typedef struct exec_gemm_family {
    const exec_gemm_weights *W;
    const float *A;
    int64_t lda, a_seg;
    float *C;
    int64_t ldc, c_seg;
    int64_t M, n_segs;
    int64_t m_tile, n_tile, m_tiles, n_tiles;
    /* The last tail_tiles row tiles (of the last segment) go out as
     * tail_split column pieces each, after every other unit: the threads
     * that finish the body early share the end instead of one of them
     * computing a whole last tile alone. */
    int64_t tail_tiles, tail_split, tail_n_tile;
    int64_t n_units;
} exec_gemm_family;

/* Cuts f (W, M and n_segs set) into units for `threads` (exec.c): row tiles
 * of the kernels' row block, so that each pass over the weights serves as
 * many rows of a batch as the kernel can; columns split only when the rows
 * alone give too few units. Any cut gives the same C, bit for bit (a
 * plugin computes each element whatever range it is given). */
void exec_gemm_plan(exec_gemm_family *f, const mha_plugin *p, int threads);
/* Unit u of f: its segment and its rows [r[0], r[1]), columns [r[2], r[3]). */
void exec_gemm_unit_range(const exec_gemm_family *f, int64_t u, int64_t *seg, int64_t r[4]);

/* One GEMM on given buffers (exec_gemm.c): C [M, N] = A [M, K] . W + bias,
 * cut by exec_gemm_plan over the pool (a self-parallel plugin gets it
 * whole), each tile followed by ep (NULL = none). Each tile writes its own
 * part of C. */
mha_status exec_gemm_run(const exec_env *env, const exec_gemm_weights *W, const float *A, int64_t M,
                         float *C, const exec_gemm_epilogue *ep, mha_error *err);

/* Runs L forward. pk must have been packed for env->plugin. outputs must
 * have exactly the dtype, rank and shape layer_output_shapes gives. With a
 * pool, the calling thread sets FTZ/DAZ for the run (restored afterwards),
 * as every worker does; without one, the FP environment is left alone. */
mha_status exec_run(const exec_env *env, const layer *L, const exec_packed *pk,
                    const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                    size_t n_outputs, mha_error *err);

#endif
