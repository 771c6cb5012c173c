/* interp.h -- a plain reference interpreter for the ONNX ops an attention
 * layer is built from. It folds constants and shapes for the recogniser and
 * evaluates the original graph on a probe input to verify the recognised
 * layer. Clarity over speed: float ops compute in double where cheap. */
#ifndef MHA_INTERP_H
#define MHA_INTERP_H

#include "onnx_ir.h"

/* Evaluates one node. in[k] is NULL for an omitted optional input; out[k]
 * receives new tensors for each output (NULL for omitted ones). opset is
 * the model's default-domain opset. MHA_ERR_MODEL_UNSUPPORTED names the op
 * when it is not implemented; MHA_ERR_SHAPE / MHA_ERR_MODEL_FORMAT for bad
 * operands (never crashes on them). */
mha_status interp_eval_node(const mha_alloc_ctx *a, const ir_graph *g, const ir_node *n,
                            tensor *const *in, tensor **out, mha_error *err);

/* interp_eval_node for the shapes of the outputs: a float32 MatMul, Gemm
 * or Conv gives a tensor of zeros of its output's shape without summing
 * (every other op computes as always). Only for a run whose values do not
 * decide a shape downstream (plan_probe_shape_only picks such nodes). */
mha_status interp_eval_node_shape(const mha_alloc_ctx *a, const ir_graph *g, const ir_node *n,
                                  tensor *const *in, tensor **out, mha_error *err);

/* Whether interp_eval_node implements op_type in domain. */
int interp_supports(const char *domain, const char *op_type);

/* Evaluates the whole graph. inputs[i] binds to g->inputs[i] (borrowed).
 * values receives g->n_values tensor pointers (owned by the caller, free
 * with interp_values_free); initializers are cloned, graph inputs cloned. */
mha_status interp_run(const mha_alloc_ctx *a, const ir_graph *g, const tensor *const *inputs,
                      tensor ***values, mha_error *err);
void interp_values_free(const ir_graph *g, tensor **values);
/* interp_run for only the nodes the values targets[0..n_targets) depend on
 * (every other value stays NULL): a part of the graph that reads only the
 * inputs' shapes runs at any size without the cost of the rest. */
mha_status interp_run_for(const mha_alloc_ctx *a, const ir_graph *g, const tensor *const *inputs,
                          const int *targets, size_t n_targets, tensor ***values, mha_error *err);

/* Constant folding: evaluates every node all of whose inputs are constant
 * (initializers, Constant nodes, and Shape / Size of a value whose declared
 * dims in the graph are fully known). values[] as in
 * interp_run, NULL where not constant. Never fails on an op it does not
 * know: that value simply stays NULL. */
mha_status interp_fold_constants(const mha_alloc_ctx *a, const ir_graph *g, tensor ***values,
                                 mha_error *err);

/* C [M, N] = init + A [M, K] . B [K, N] in float32 (interp_gemm.c): element
 * (m, k) of A at A[m * a_row + k * a_col], B row-major with row stride ldb,
 * C with row stride ldc. Each element is summed in double from its init
 * value -- init[m] (init_per_row) or init[n], 0 when init is NULL -- over
 * k = 0 .. K-1 in order, and rounded to float once into C, or stored as
 * the double into Cd when Cd is set: the bits of the plain triple loop. */
typedef struct interp_gemm_args {
    int64_t M, N, K;
    const float *A;
    int64_t a_row, a_col;
    const float *B;
    int64_t ldb;
    const float *init;
    int init_per_row;
    float *C;
    double *Cd;
    int64_t ldc;
} interp_gemm_args;

/* MHA_ERR_NO_MEMORY when its scratch (A's rows in doubles, up to 16 MiB,
 * and a block of B) cannot be had. */
/* A Conv's pads along one axis of x by its auto_pad `mode`: SAME_UPPER /
 * SAME_LOWER (ceil(x / stride) outputs, the odd pad at the end / the
 * start), VALID (none): 1. NOTSET or NULL: 0 (the pads attribute holds).
 * Another mode: -1. stride, dil >= 1. */
int interp_conv_auto_pads(const char *mode, int64_t x, int64_t k, int64_t stride, int64_t dil,
                          int64_t *begin, int64_t *end);

mha_status interp_gemm_f32(const mha_alloc_ctx *a, const interp_gemm_args *g, mha_error *err);

/* An Einsum equation of explicit letters ("abc,cde->abde"): the letters of
 * each operand and of the output, in axis order, NUL-terminated. */
#define INTERP_EINSUM_MAX_IN 4
typedef struct interp_einsum {
    char in[INTERP_EINSUM_MAX_IN][MHA_MAX_RANK + 1];
    int rank_in[INTERP_EINSUM_MAX_IN];
    int n_in;
    char out[MHA_MAX_RANK + 1];
    int rank_out;
} interp_einsum;

/* 1 when eq is such an equation (no ellipsis, an explicit output whose
 * letters all come from the operands, no letter twice in one term). */
int interp_einsum_parse(const char *eq, interp_einsum *e);

#endif
