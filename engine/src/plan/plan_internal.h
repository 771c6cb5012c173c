/* plan_internal.h -- what the files of plan/ share: the graph's consumer
 * lists, the shapes every value takes on the two probes, and the step
 * runner that keeps every value (for those shapes). Not used outside
 * plan/. */
#ifndef MHA_PLAN_INTERNAL_H
#define MHA_PLAN_INTERNAL_H

#include "plan.h"

/* Bounds of the fixed-size arrays of a run. */
#define RUN_MAX_LAYER_INPUTS 16
#define RUN_MAX_OUTPUTS 64

/* Shape of a value on each probe; rank -1 when never computed. */
typedef struct plan_shape {
    mha_dtype dtype;
    int rank;
    int64_t dims[PLAN_PROBES][MHA_MAX_RANK];
} plan_shape;

/* Consumers of each value, in compressed rows: the nodes reading value v
 * are node[first[v] .. first[v + 1]). */
typedef struct plan_uses {
    int *first; /* [n_values + 1] */
    int *node;
} plan_uses;

/* Folds the nodes reading one Shape output (their other inputs constant)
 * that give the same value at both probes (shape_fold.c); *n_folded of
 * them. */
mha_status plan_fold_static_dims(plan *P, const plan_shape *shp, size_t *n_folded, mha_error *err);

mha_status plan_uses_build(const mha_alloc_ctx *a, const ir_graph *g, plan_uses *u, mha_error *err);
void plan_uses_free(const mha_alloc_ctx *a, plan_uses *u);

/* Whether value v is one of the graph's outputs. */
int plan_is_output(const ir_graph *g, int v);
/* The single node reading v's data (Shape nodes aside: they need no data),
 * v no graph output; else -1. */
int plan_data_reader(const plan *P, const plan_uses *u, int v);
/* Whether the sizes read from v (its Shape / Size nodes) go only to node
 * `stop` or to nothing live (no graph output reached from them): a step
 * that makes v no more (it writes a view of v instead) keeps them right. A
 * Shape of v read on (ONNX Runtime's transpose optimizer moves Shape nodes
 * before Transposes) would find no value there at run. */
int plan_shape_reads_end_at(const plan *P, const plan_uses *u, int v, int stop);

/* Whether a and b are float32 of the same rank and dims on every probe. */
int plan_shape_same(const plan_shape *a, const plan_shape *b);

/* A grouped Conv of at most this many groups is a GEMM per group (more:
 * interpreted, unless depthwise) */
#define PLAN_CONV_MAX_GROUPS 64

/* The pads [h begin, w begin, h end, w end] of Conv step pg over an input
 * of H x W (its auto_pad's, or the fixed ones) (gemm.c). */
void plan_conv_pads(const plan_gemm *pg, int64_t H, int64_t W, int64_t pad[4]);

/* A depthwise Conv's run (conv_direct.c): x [B, C, H, W], w [Nc, kh kw]
 * (Nc = mult x C: output channel n reads input channel n / mult), bias
 * [Nc] or NULL, y [B, Nc, Ho, Wo]; stride, dil [h, w], pad [h begin, w
 * begin, h end, w end]. plan_dwconv_planes: the output planes (b Nc + n)
 * [p0, p1), a pool unit's part. */
typedef struct plan_dwconv {
    const float *x, *w, *bias;
    float *y;
    int64_t C, H, W, Nc, Ho, Wo, kh, kw;
    const int64_t *stride, *dil, *pad;
} plan_dwconv;
void plan_dwconv_planes(void *ctx, int64_t p0, int64_t p1);

/* Each BatchNormalization of a MatMul's rows (through a Flatten to 2-D, or
 * none) folded into the MatMul's weight and a bias Add after it
 * (bn_fold.c); before the shape probes. */
void plan_fold_batchnorm(plan *P);

/* Whether the value is known at load (initializer or folded constant). */
static inline const tensor *plan_const(const plan *P, int v) {
    if (v < 0) return NULL;
    return P->g->values[v].init ? P->g->values[v].init : P->consts[v];
}

/* Arena layouts (arena.c). plan_arena_plan: from the bytes of each fused
 * output of a run (sizes [n_values], 0 for other values) at input sizes
 * key. plan_arena_find: the layout for key, or NULL. plan_arena_keep:
 * adds A to P's layouts (or frees it: known already, or too many). */
mha_status plan_arena_plan(const plan *P, const int64_t *key, const size_t *sizes, plan_arena **out,
                           mha_error *err);
void plan_arena_free(const plan *P, plan_arena *A);
const plan_arena *plan_arena_find(plan *P, const int64_t *key);
void plan_arena_keep(plan *P, plan_arena *A);
/* A block of at least `bytes` for a run's arena: an idle one kept by an
 * earlier run (the smallest that fits), else a new one; NULL when out of
 * memory. plan_arena_block_give hands it back after the run: kept while a
 * slot is free (or in place of a smaller idle block), else freed.
 * plan_arena_blocks_free frees the idle ones (plan_free). */
void *plan_arena_block_take(plan *P, size_t bytes, size_t *got);
void plan_arena_block_give(plan *P, void *block, size_t bytes);
void plan_arena_blocks_free(plan *P);
/* The same for a patch Conv's rows (run.c): the block kept by an earlier
 * run when it holds `bytes`, else a new one (NULL when out of memory);
 * given back, it is kept when no other is, else freed. ViT-B/16's 4.8 MB
 * of rows, a fresh block each run, cost ~10 ms of page faults at 1 thread.
 * plan_arena_blocks_free frees the kept one too. */
void *plan_rows_block_take(plan *P, size_t bytes, size_t *got);
void plan_rows_block_give(plan *P, void *block, size_t bytes);

/* A run's arena: fused outputs placed by layout in base, or (record set)
 * their bytes recorded; NULL fields: every output allocated on its own.
 * outputs (plan_run): the caller's output tensors [g->n_outputs], where a
 * fused step making a float32 graph output writes it directly, neither in
 * the arena nor copied (GPT-2's logits: 196 MiB held once, not twice). */
typedef struct plan_run_arena {
    const plan_arena *layout;
    char *base;
    size_t *record; /* [n_values] */
    const mha_tensor *outputs;
} plan_run_arena;

/* plan_exec with an arena (ar may be NULL). */
mha_status plan_exec_arena(const plan *P, tensor *const *in, const plan_backend *be,
                           const plan_run_arena *ar, tensor ***values, mha_error *err);

/* Runs the steps of P on graph inputs `in` ([g->n_inputs], borrowed).
 * keep_all: *values receives every value (free with plan_values_free);
 * else values are freed after their last step and *values keeps only the
 * graph outputs. be runs fused steps (NULL when the plan has none). */
mha_status plan_exec(const plan *P, tensor *const *in, const plan_backend *be, int keep_all,
                     tensor ***values, mha_error *err);

/* Told about every value a step writes, right after the step (before
 * values are freed at their last step). */
typedef struct plan_observer {
    void (*value)(void *user, int v, const tensor *t);
    void *user;
    /* [g->n_nodes] or NULL: interpreted nodes run for their outputs'
     * shapes only (interp_eval_node_shape; plan_probe_shape_only) */
    const unsigned char *shape_only;
    /* > 0: the run stops with MHA_ERR_LIMIT once its steps have made more
     * elements than this (a probe of a malformed file: plan_probe_run_budget) */
    int64_t max_elements;
} plan_observer;

/* What one probe run of the graph may make, in elements of all its values:
 * 4 x the model's weights, at least 2^25 (a real model's probe makes a
 * fraction of that; a graph input that declares a fixed axis of 10^6 beside
 * a symbolic one makes it in masks and gathers of no use). */
int64_t plan_probe_run_budget(const ir_graph *g);

/* Adds the elements of t to *made, saturating at INT64_MAX (the probes'
 * budgets: what a run made, what the weights hold). */
static inline void plan_add_elements(int64_t *made, const tensor *t) {
    const int64_t n = tensor_numel(t);
    *made = n > INT64_MAX - *made ? INT64_MAX : *made + n;
}

/* plan_exec freeing values after their last step, obs told about each
 * value as it is made (the shapes of a probe run without holding every
 * value of the graph at once). */
mha_status plan_exec_observed(const plan *P, tensor *const *in, const plan_backend *be,
                              const plan_observer *obs, tensor ***values, mha_error *err);

/* The elementwise run after value y (epilogue.c): 1 and *prog, *out (its
 * last value), nodes[] (room for PLAN_EW_MAX_OPS) when there is one. N is
 * the size of the last axis. taken: nodes already in other steps;
 * reg_scratch: [n_values]. An external operand is produced before y's
 * producer (the step runs there). */
int plan_ew_compile(const plan *P, const plan_uses *u, const plan_shape *shp,
                    const unsigned char *taken, int start_node, int y, int64_t N, int *reg_scratch,
                    plan_ew_prog *prog, int *out, int *nodes, size_t *n_nodes);
/* The fused form of prog (plan_gemm.fused_act / fused_residual): its
 * activation as a plugin computes it, found by running the part before a
 * final residual add on sample values against each MHA_ACT_*; -1 when the
 * program is not act(y) [+ residual]. */
void plan_ew_classify(const plan_ew_prog *prog, int *act, int *residual);
/* Runs prog in place on x [count], elements of one row of N starting at
 * column col0; ext: the external operand at the same elements. */
void plan_ew_apply(const plan_ew_prog *prog, float *x, const float *ext, int64_t count, int64_t N,
                   int64_t col0);

/* The residual Add after each recognised attention layer taken into its
 * step (residual.c) when it is the only reader of the layer's output;
 * marks the Adds taken. */
mha_status plan_fuse_residuals(plan *P, const plan_uses *u, const plan_shape *shp,
                               unsigned char *taken, mha_error *err);

/* Each norm step without a residual whose input is made by a GEMM step
 * and read by it alone becomes that GEMM's row epilogue (postnorm.c). */
void plan_fuse_gemm_norms(plan *P, const plan_uses *u);

/* Finds the norm steps among the nodes not taken (norm.c); marks theirs. */
mha_status plan_find_norms(plan *P, const plan_uses *u, const plan_shape *shp, unsigned char *taken,
                           mha_error *err);
/* y [rows, D] = the norm of x [rows, D] (+ res [rows, D], or NULL), by the
 * built-in scalar's norm entry; nonzero when it refuses the arguments (a
 * negative or NaN eps). */
int plan_norm_rows(const plan_norm *nm, const float *x, const float *res, float *y, int64_t rows);

/* Finds the add, gather and concat steps among the nodes not taken
 * (node_steps.c); marks theirs. */
mha_status plan_find_node_steps(plan *P, const plan_shape *shp, unsigned char *taken,
                                mha_error *err);
/* An add step's arithmetic (run.c): y [n] = a [n] + b [i mod nb], nb
 * dividing n. Here, not in node_steps.c: the run calls it, and node_steps.c is
 * called by the build, which the run's callers call. */
static inline void plan_add_values(const float *a, const float *b, float *y, int64_t n,
                                   int64_t nb) {
    for (int64_t i0 = 0; i0 < n; i0 += nb)
        for (int64_t j = 0; j < nb; j++)
            y[i0 + j] = a[i0 + j] + b[j];
}

/* Finds the GEMM steps among the nodes no layer owns (gemm.c). */
mha_status plan_find_gemms(plan *P, const plan_uses *u, const plan_shape *shp, unsigned char *taken,
                           mha_error *err);
/* Whether every output of node n is a folded constant. */
int plan_node_folded(const plan *P, const ir_node *n);

/* Frees what plan_exec computed (never initializers, constants or inputs). */
void plan_values_free(const plan *P, tensor *const *in, tensor **values);

/* Partition (partition.c): carves the attention layers out of P->g, given
 * the shapes of the probes, into P->layers. */
mha_status plan_partition(plan *P, const plan_uses *u, const plan_shape *shp, mha_error *err);

/* Sequence-first layers between Transposes of their first two axes read
 * and write the Transposes' batch-first sides instead; patch Convs whose
 * output is only flattened and transposed to rows write those rows
 * (layout.c); *n_folded: how many. */
mha_status plan_fold_layouts(plan *P, const plan_uses *u, const plan_shape *shp, size_t *n_folded,
                             mha_error *err);

/* Which axis of the token ids is the batch (batch_axis.c): sets
 * P->ids_input and P->batch_axis from probe 0 and two runs more. */
mha_status plan_find_batch_axis(plan *P, const plan_shape *shp, mha_error *err);

/* The symbolic axes of the graph inputs (probe.c): fills P->probe_sizes. */
mha_status plan_probe_sizes(plan *P, mha_error *err);
/* Whether the graph's one symbolic axis is a batch of fixed-size items
 * (images, fixed-length texts; probe.c): a probe item is then a whole
 * forward pass at full size, so the probes are batches of 1 and 2, only
 * the first is verified, and the second only gives shapes. */
int plan_probe_items_fixed(const plan *P);
/* The smallest extent of the constant tables the integer value v indexes
 * through Gathers, directly or after Cast / Reshape / Unsqueeze / Squeeze
 * / Flatten / Identity; 0 when it indexes none (probe.c: the probes feed
 * such an input 0 and 1 only, as a mask). */
int64_t plan_probe_index_bound(const plan *P, int v);
/* Whether integer value v is (sliced, reshaped, cast) the target of a loss
 * (SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss): labels, ids of the
 * text (-100 ignored), not a mask. */
int plan_probe_is_loss_target(const plan *P, int v);
/* The shape pass failed: when a Conv reads an input whose symbolic last
 * axis the probes made shorter than its kernel (wav2vec2's samples), says
 * so in front of err's message. */
void plan_probe_explain_short(const plan *P, mha_error *err);
/* Whether graph input i is a float attention mask (probe.c): float32
 * [B, S] or [B, 1, 1 | S, S] over the batch and tokens of a token ids
 * input (one that indexes an embedding table). */
int plan_probe_float_mask(const plan *P, size_t i);
/* The nodes whose arithmetic a run for shapes alone may skip (probe.c):
 * skip[ni] = 1 for a MatMul, Gemm or Conv none of whose outputs reaches,
 * through any chain of nodes, an input that decides a shape or picks
 * elements (a Reshape's shape, a Gather's indices, a NonZero, an op the
 * rule does not know). skip: [g->n_nodes]. */
mha_status plan_probe_shape_only(const plan *P, unsigned char *skip, mha_error *err);
/* When the probes fail: the height and width of an image input (float,
 * [N, C, H, W], H and W symbolic) read by a Conv, sized by the Conv's
 * kernel and stride -- kernel + stride * (g - 1) for g = 1, 2, .. -- and
 * run for shapes at each (plan_probe_shape_only) until one works. Works
 * at one g alone (the position table added to the patches has g * g + 1
 * rows): the axes become that size in the graph input (its dim_params
 * kept, to name them). Works at g + 1 too: the probes take those two
 * sizes. MHA_ERR_MODEL_UNSUPPORTED (err untouched) when there is no such
 * input or no size works; P->steps must interpret every node. */
mha_status plan_probe_fit_images(plan *P, mha_error *err);
/* The shape pass failed: a symbolic axis that is the sum of two others (the
 * attention mask over past + new tokens of a decoding step with a cache)
 * makes probes whose free sizes disagree with it. Finds the sum under which
 * both probes run (P->sym_sum, probe sizes updated); MHA_ERR_MODEL_UNSUPPORTED
 * when none does. plan_dim_sums (dims.c): sizes[k] of every summed axis k
 * from its terms. */
mha_status plan_probe_fit_sums(plan *P, mha_error *err);
/* The shape pass failed: a float32 input's symbolic last axis (audio
 * samples) read by strided 1-D Convs whose receptive field the probes fall
 * short of. The probes set past it (both must run, shape-only) and the
 * Convs' composed length rules kept for dims.c (P->convlen);
 * MHA_ERR_MODEL_UNSUPPORTED (sizes as they were) when no such input runs
 * (convlen.c). only_short: only an input whose probes (both) are shorter
 * than the field -- the Convs then make no frame, so a graph that runs
 * on empty tensors would give the dims no length to fit (plan_build,
 * before the first shape pass); 0: any (after a failed pass). plan_convlen_rules: the rules {div,
 * offset} of each prefix of the Convs input i reaches, at most max; plan_convlen_match (dims.c):
 * the candidate of axis sym through the n points (x, y) as *r (y
 * PLAN_DIM_NOT_PROBED: no point), 0 none. plan_probe_runs_at: whether the
 * graph runs (for shapes: skip) at the given sizes (probe.c). */
mha_status plan_probe_fit_convlen(plan *P, int only_short, mha_error *err);
int plan_convlen_rules(const plan *P, size_t input, int64_t (*rules)[2], int max);
mha_status plan_probe_runs_at(plan *P, const int64_t *sizes, const unsigned char *skip, int *runs,
                              int64_t *made, mha_error *err);
/* Whether a symbolic axis of the graph inputs is unnamed (P->merge_unnamed). */
int plan_probe_has_unnamed(const plan *P);
void plan_dim_sums(const plan *P, int64_t *sizes);
/* Probe inputs at the given size of each symbolic axis, values from seed
 * (probe.c; plan_probe_inputs is this at P->probe_sizes[p]). */
mha_status plan_probe_inputs_sized(const plan *P, const int64_t *sizes, uint64_t seed, tensor **in,
                                   mha_error *err);

/* Output axis rules (dims.c). plan_dim_need_probes: whether the two
 * probes leave some output axis's rule open (more than one symbolic axis,
 * or an axis that is not the one symbolic axis as it is), so that plan_dim_rules wants one more
 * probe per symbolic axis k, at plan_dim_probe_sizes(P, k) (probe 0 with axis k grown).
 * plan_dim_rules fills P->out_rules from the two probes' shapes and qdims (NULL: not run), the size
 * of axis d of output o at the probe of k at qdims[(o * PLAN_MAX_SYMS + k) * MHA_MAX_RANK + d].
 * plan_dim_fit: the simplest rule floor((mul x + offset) / div) through the n points (x, y)
 * (general 0: mul = div = 1 only); 0 when none fits. */
int plan_dim_need_probes(const plan *P, const plan_shape *shp);
/* qdims entries of a probe not run; plan_dim_need_probe0: whether the
 * probe of axis 0 is needed after those of the others (an output axis none
 * of them moved that is not axis 0 as it is). */
#define PLAN_DIM_NOT_PROBED INT64_MIN
int plan_dim_need_probe0(const plan *P, const plan_shape *shp, const int64_t *qdims);
void plan_dim_probe_sizes(const plan *P, int k, int64_t *sizes);
mha_status plan_dim_rules(plan *P, const plan_shape *shp, const int64_t *qdims, mha_error *err);
int plan_dim_fit(const int64_t *x, const int64_t *y, int n, int general, plan_dim_rule *r);
int64_t plan_dim_apply(const plan_dim_rule *r, int64_t x);
/* The first input axis carrying symbolic axis s: *input, *axis; 0: none. */
int plan_dim_input_axis(const plan *P, int s, int *input, int *axis);
int plan_convlen_match(const plan *P, int sym, const int64_t *x, const int64_t *y, int n,
                       plan_dim_rule *r);

/* The rules checked at sizes past the probes (dims_check.c).
 * plan_dim_check_probes runs the graph for shapes with each symbolic axis
 * alone at PLAN_DIM_CHECKS sizes (1, 2, a long one) into *cdims (NULL: not
 * needed); plan_dim_check then fits again (or refuses by name) each output
 * axis rule that a check contradicts. */
#define PLAN_DIM_CHECKS 3
mha_status plan_dim_check_probes(plan *P, int64_t **cdims, mha_error *err);
mha_status plan_dim_check(plan *P, const plan_shape *shp, const int64_t *cdims, mha_error *err);

#endif
