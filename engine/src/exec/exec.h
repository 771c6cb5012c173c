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

#include <stdatomic.h>

#include "layer.h"
#include "layer_bind.h"
#include "mha/plugin.h"
#include "pool.h"

/* One weight matrix packed for a plugin's GEMM: y = x . W + bias. */
typedef struct exec_gemm_weights {
    int64_t K, N;        /* W is [K, N] */
    void *packed;        /* packed_bytes bytes (the plugin's packed size), or NULL */
    size_t packed_bytes; /* in the pack's precision */
    float *bias;         /* [N] or NULL */
    int weight_bytes;    /* of one packed weight: 4 float32, 2 bfloat16 (0: 4) */
} exec_gemm_weights;

/* Every projection of a layer packed for one plugin. Self-attention packs
 * Wq|Wk|Wv side by side into one GEMM; cross attention packs Wq alone and
 * Wk|Wv side by side (they read different inputs). */
typedef struct exec_packed {
    const mha_plugin *plugin;
    int precision; /* MHA_PRECISION_* the weights were packed in */
    int fused_qkv;
    int qkv_by_head;       /* fused_qkv's columns head by head, [Q_h | K_h | V_h] for
                              h = 0..H-1 (exec_qkv_by_head), else [Q | K | V] */
    exec_gemm_weights qkv; /* fused_qkv: [d_model, Hq*dk + Hkv*dk + Hkv*dv] */
    exec_gemm_weights q;   /* cross: [d_model, Hq*dk] */
    exec_gemm_weights kv;  /* cross: [d_kv, Hkv*dk + Hkv*dv]; [d_kv, Hkv*dk] (W_k alone)
                              with a separate value input (layer v_input) */
    exec_gemm_weights o;   /* [Hq*dv, d_out] */
    exec_gemm_weights v;   /* v_input: [d_kv, Hkv*dv] (W_v, read from the value input) */
} exec_packed;

/* Packs L's weights with plugin->gemm_pack_b in `precision`
 * (MHA_PRECISION_*, one the plugin serves: registry_plugin_serves) for the
 * layout of plugin_state (the state init() gave the runtime that will run
 * them); nothing for a bare Attention layer. *out is freed with
 * exec_packed_free. */
mha_status exec_pack_weights(const mha_alloc_ctx *a, const layer *L, const mha_plugin *plugin,
                             void *plugin_state, int precision, exec_packed **out, mha_error *err);
void exec_packed_free(const mha_alloc_ctx *a, exec_packed *pk); /* accepts NULL */
size_t exec_packed_bytes(const exec_packed *pk);
/* Bytes of one packed weight (its packing and bias). */
size_t exec_weights_bytes(const exec_gemm_weights *w);

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
    /* float32 laid out as the layer's one output Y, added to it (a model's
     * residual connection): by the output projection's epilogue, or after
     * the layer when it has none; NULL: nothing added */
    const float *residual;
    /* NULL, or its rows callback run on rows [m0, m1) of the layer's one
     * output Y (batch-first [rows, d_out], C = the first row of the batch
     * chunk) once each row is complete, residual added: a LayerNorm after
     * the layer (exec_gemm_epilogue.rows) */
    const struct exec_gemm_epilogue *y_rows;
} exec_env;

/* Packs the side-by-side concatenation of n_parts weight matrices
 * w[i] [K, cols[i]] (and their biases, NULL = zeros) as one [K, N] matrix,
 * in `precision` for the layout of plugin state `state`; the packed size
 * the plugin reports is checked (at least every weight) before use. Free
 * with exec_weights_free. */
mha_status exec_pack_parts(const mha_alloc_ctx *a, const mha_plugin *p, void *state, int precision,
                           int64_t K, int n_parts, const float *const *w, const int64_t *cols,
                           const float *const *bias, const char *what, exec_gemm_weights *out,
                           mha_error *err);
void exec_weights_free(const mha_alloc_ctx *a, exec_gemm_weights *w);

/* The host's epilogue of a GEMM tile: rows [m0, m1), columns [n0, n1) of
 * C (leading dimension N), called right after the tile is computed, on the
 * thread that computed it. */
typedef struct exec_gemm_epilogue {
    void (*fn)(void *user, float *C, int64_t N, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
    void *user;
    /* NULL, or called once on rows [m0, m1) of C once every column of
     * them is done (tile and fn), on the thread that finished the last
     * piece: what needs whole rows (a LayerNorm after the product) */
    void (*rows)(void *user, float *C, int64_t N, int64_t m0, int64_t m1);
} exec_gemm_epilogue;

/* The part of a GEMM's epilogue the plugin applies on its tiles
 * (mha_gemm_args): an activation and a residual add, set only when the
 * plugin declares them (registry_plugin_epilogue). */
typedef struct exec_gemm_fused {
    int activation;        /* MHA_ACT_* */
    const float *residual; /* [M, ldr] or NULL */
    int64_t ldr;
} exec_gemm_fused;

/* One plugin GEMM call: rows [m0, m1) and columns [n0, n1) of C [M, W->N]
 * (ldc) = A [M, W->K] (lda) . W + bias, then fused (NULL = none), in env's
 * precision. */
mha_status exec_gemm_tile(const exec_env *env, const exec_gemm_weights *W, int64_t M,
                          const float *A, int64_t lda, float *C, int64_t ldc, int64_t m0,
                          int64_t m1, int64_t n0, int64_t n1, int num_threads,
                          const exec_gemm_fused *fused, mha_error *err);

/* One phase of `units` pool units fn(ctx, 0, u, worker, err) on env's pool
 * (exec_gemm.c), at most `threads` wide, with env's cancel hook and
 * denormals flushed as on the pool's workers; the first `paired` from both
 * ends on two threads (pool_job.paired: units in the order of the rows
 * they touch). */
mha_status exec_pool_units(const exec_env *env, pool_unit_fn fn, void *ctx, int64_t units,
                           int64_t paired, int threads, mha_error *err);

/* One normalisation (exec_norm.c): rows [args->r0, args->r1) of
 * args->x normalised into args->y on env's plugin when it declares
 * MHA_OP_NORM, else on the built-in scalar's, split into row blocks over
 * the pool (a self-parallel plugin gets them whole). */
mha_status exec_norm_run(const exec_env *env, const mha_norm_args *args, mha_error *err);
/* The same on the calling thread alone, rows [args->r0, args->r1) (a
 * GEMM's row epilogue: exec_gemm_epilogue.rows). */
mha_status exec_norm_rows(const exec_env *env, const mha_norm_args *args, mha_error *err);

/* The fused part for a GEMM whose epilogue is act(y) [+ residual]
 * (act MHA_ACT_*, residual [M, ldr] or NULL): 1 and *out when env's plugin
 * declares both, so its kernel applies them on its tiles; 0 when the host
 * must run the epilogue itself. */
int exec_gemm_fuse(const exec_env *env, int act, const float *residual, int64_t ldr,
                   exec_gemm_fused *out);

/* C[seg] = A[seg] . W (+ bias) for n_segs segments of M rows each; segment s
 * reads rows A + s*a_seg (lda apart) and writes C + s*c_seg (ldc apart).
 * Units are (segment, row tile, column tile), column tile fastest. */
typedef struct exec_gemm_family {
    const exec_gemm_weights *W;
    const float *A;
    int64_t lda, a_seg;
    float *C;
    int64_t ldc, c_seg;
    const float *R; /* added to C after the product (laid out as C: ldc, c_seg), or NULL */
    int64_t M, n_segs;
    int64_t m_tile, n_tile, m_tiles, n_tiles;
    /* The last tail_tiles row tiles (of the last segment) go out as
     * tail_split pieces each (tail_m_tile rows by tail_n_tile columns),
     * after every other unit: the threads that finish the body early share
     * the end instead of one of them computing a whole last tile alone. */
    int64_t tail_tiles, tail_split, tail_n_tile;
    int64_t tail_m_tile; /* m_tile: column pieces only */
    /* The first of the cut row tiles: m_tiles - tail_tiles (the last ones),
     * or with paired_ends on two threads the middle ones of a slab weight,
     * where the two ends meet (units then in row order: the body before
     * them, their pieces, the body after them). */
    int64_t tail_first;
    /* Set before exec_gemm_plan: the units go out from both ends on two
     * threads (pool_job.paired: exec_gemm_body_units of them). */
    int paired_ends;
    int64_t n_units;
} exec_gemm_family;

/* Row tiles whose every column is done (exec.c): pieces [m_tiles] set to
 * the units of each row tile of f (n_segs 1); exec_gemm_piece_done after
 * unit u's tile: 1 when it was the tile's last piece (its rows r[0], r[1]
 * then complete; acq_rel: the other pieces' writes are seen). */
void exec_gemm_pieces_init(const exec_gemm_family *f, atomic_int *pieces);
int exec_gemm_piece_done(const exec_gemm_family *f, atomic_int *pieces, int64_t u, int64_t r[4]);

/* Cuts f (W, M and n_segs set) into units for `threads` (exec.c): row tiles
 * of the kernels' row block, so that each pass over the weights serves as
 * many rows of a batch as the kernel can; columns split only when the rows
 * alone give too few units. Any cut gives the same C, bit for bit (a
 * plugin computes each element whatever range it is given). */
void exec_gemm_plan(exec_gemm_family *f, const mha_plugin *p, int threads);
/* Unit u of f: its segment and its rows [r[0], r[1]), columns [r[2], r[3]). */
void exec_gemm_unit_range(const exec_gemm_family *f, int64_t u, int64_t *seg, int64_t r[4]);
/* MHA_POOL_TRACE builds: the rows of A a unit over r (exec_gemm_unit_range)
 * reads, R's and C's it writes (pool_trace_touch); nothing otherwise. */
void exec_gemm_touch(const exec_gemm_family *f, int64_t seg, const int64_t r[4], const float *R);
/* The units of f that may go out from both ends (pool_job.paired), in the
 * order of their rows: those before its end pieces (tail_tiles), or every
 * unit when the pieces are the middle tiles (paired_ends). */
int64_t exec_gemm_body_units(const exec_gemm_family *f);

/* One GEMM on given buffers (exec_gemm.c): C [M, N] = A [M, K] . W + bias,
 * then fused (NULL = none) inside the plugin, cut by exec_gemm_plan over
 * the pool (a self-parallel plugin gets it whole), each tile followed by
 * the host's ep->fn and each completed row tile by ep->rows (ep NULL, or
 * either NULL: none). Each tile writes its own part of C. */
mha_status exec_gemm_run(const exec_env *env, const exec_gemm_weights *W, const float *A, int64_t M,
                         float *C, const exec_gemm_fused *fused, const exec_gemm_epilogue *ep,
                         mha_error *err);

/* The float32 core of the forward pass (what exec_ext_wanted leaves to
 * it; exec_run in exec_ext.h is the entry that chooses). pk must have been
 * packed for env->plugin. outputs must have exactly the dtype, rank and
 * shape layer_output_shapes gives. With a pool, the calling thread sets
 * FTZ/DAZ for the run (restored afterwards), as every worker does; without
 * one, the FP environment is left alone. */
mha_status exec_run_core(const exec_env *env, const layer *L, const exec_packed *pk,
                         const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                         size_t n_outputs, mha_error *err);

/* Every mask of a run as one additive float tensor addressed with strides
 * over [batch, head, query, key]; stride 0 broadcasts. */
typedef struct exec_mask {
    const float *data; /* NULL: no mask */
    int64_t sb, sh, sq, sk;
    float *owned;      /* freed by the caller with mha_free */
    int causal_folded; /* the causal mask is in data (as the file's finite term), the
                          kernels run without theirs */
} exec_mask;

/* The mask inputs, the layer's constant bias and (with
 * projections) its sliding window summed into one additive view; none
 * (data NULL) when it adds nothing to the keys the run reads: kv_len [B]
 * (the run's key lengths, or NULL: every key) limits those. */
mha_status exec_mask_build(const mha_alloc_ctx *a, const layer *L, const exec_binding *bd,
                           const int64_t *kv_len, exec_mask *m, mha_error *err);

/* One attention phase over args (b/h/q ranges covering
 * the whole problem) with env's plugin, pool and threads. */
mha_status exec_run_attention_args(const exec_env *env, const mha_attn_args *args, mha_error *err);

#endif
