/* interp_internal.h -- what the files of the reference interpreter share:
 *  the per-node evaluation context, the helpers every op uses (inputs,
 * outputs, typed attributes, axis checks, error messages naming the node)
 * and the op functions the dispatch table in interp.c lists. Not used
 * outside engine/src/interp/. */
#ifndef MHA_INTERP_INTERNAL_H
#define MHA_INTERP_INTERNAL_H

#include "interp.h"

/* The largest tensor one node may create (bytes). Graph evaluation here is
 * for constant folding and small probe inputs; anything bigger is a
 * malformed or hostile shape, refused before allocating. */
#define INTERP_MAX_TENSOR_BYTES ((size_t)1 << 31)

/* The default-domain opset assumed when interp_eval_node gets no graph. */
#define INTERP_DEFAULT_OPSET 25

/* Everything an op function sees of the node it evaluates. in[k] is NULL
 * for an omitted optional input; out has n_out slots (one per node output,
 * omitted ones included); the op fills each slot it defines. */
typedef struct interp_ctx {
    const mha_alloc_ctx *a;
    const ir_node *n;
    int64_t opset;
    tensor *const *in;
    size_t n_in;
    tensor **out;
    size_t n_out;
    mha_error *err;
    /* interp_eval_node_shape: the float32 MatMul, Gemm and Conv leave their
     * outputs at zero (the shape is right, the sums are skipped) */
    int shape_only;
} interp_ctx;

typedef mha_status (*interp_op_fn)(interp_ctx *c);

/* Fails with "<Op 'name'>: <message>". Returns st. */
mha_status interp_fail(const interp_ctx *c, mha_status st, const char *fmt, ...) MHA_PRINTF(3, 4);

/* Checks the node's input / output counts against what the op accepts
 * (counted as written in the node, omitted optional slots included). */
mha_status interp_check_arity(const interp_ctx *c, size_t min_in, size_t max_in, size_t min_out,
                              size_t max_out);

/* Input k, or NULL when omitted / beyond the node's inputs. */
const tensor *interp_in(const interp_ctx *c, size_t k);
/* Input k, failing with MHA_ERR_MODEL_FORMAT when it is missing. */
mha_status interp_in_req(const interp_ctx *c, size_t k, const tensor **t);

/* Creates output k (zeroed) after checking the size against
 * INTERP_MAX_TENSOR_BYTES; the slot owns it from then on. */
mha_status interp_out_new(interp_ctx *c, size_t k, mha_dtype dt, int rank, const int64_t *dims,
                          tensor **t);

/* The same size checks without storing: a temporary the op frees itself,
 * or hands to an output slot. */
mha_status interp_tensor_new(const interp_ctx *c, mha_dtype dt, int rank, const int64_t *dims,
                             tensor **t);

/* Typed attribute access. A present attribute of the wrong type is an
 * MHA_ERR_MODEL_FORMAT error naming it. */
mha_status interp_attr_int(const interp_ctx *c, const char *name, int64_t dflt, int64_t *v);
mha_status interp_attr_float(const interp_ctx *c, const char *name, float dflt, float *v);
/* An int attribute that is a truth value: 0 or 1, anything else an
 * MHA_ERR_MODEL_FORMAT error (readers differ on 2: ONNX's reference takes
 * any non-zero, ONNX Runtime only 1, for is_causal, unidirectional,
 * interleaved). */
mha_status interp_attr_flag(const interp_ctx *c, const char *name, int64_t dflt, int64_t *v);
/* *ints = NULL, *n = 0 when absent. */
mha_status interp_attr_ints(const interp_ctx *c, const char *name, const int64_t **ints, size_t *n);
/* An INTS attribute of exactly n values into out, or n times dflt when it
 * is absent (a kernel's strides, pads, dilations). */
mha_status interp_attr_ints_n(const interp_ctx *c, const char *name, size_t n, int64_t dflt,
                              int64_t *out);
int interp_has_attr(const interp_ctx *c, const char *name);

/* Reads a 0-D or 1-D integer tensor (int32 / int64) of at most max values
 * into buf. `what` names the operand in messages. */
mha_status interp_read_ints(const interp_ctx *c, const tensor *t, const char *what, int64_t *buf,
                            size_t max, size_t *n);
/* Reads one integer from a tensor with exactly one element (int32 / int64). */
mha_status interp_read_scalar_int(const interp_ctx *c, const tensor *t, const char *what,
                                  int64_t *v);

/* Normalises axis (-rank..rank-1) into 0..rank-1. */
mha_status interp_axis(const interp_ctx *c, int64_t axis, int rank, const char *what, int *out);

/* x seen as [outer, dims[ax], inner]: the element counts before and after
 * axis ax (row-major). */
static inline void interp_around_axis(const tensor *x, int ax, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < ax; i++)
        *outer *= x->dims[i];
    for (int i = ax + 1; i < x->rank; i++)
        *inner *= x->dims[i];
}

/* Shape text for messages, in a caller buffer. */
#define INTERP_SHAPE_BUF 96
const char *interp_shape(const tensor *t, char *buf);

/* dtype classes. */
int interp_is_float(mha_dtype dt);
int interp_is_int(mha_dtype dt); /* int8, uint8, int32, int64 */
/* Stores an integer into element i of any dtype (wraps for narrow ints). */
void interp_set_i64(tensor *t, int64_t i, int64_t v);
/* The most negative finite value of a float dtype (-FLT_MAX for float32). */
double interp_lowest(mha_dtype dt);

/* Multidirectional (numpy) broadcasting of up to 3 shapes: out dims, and for
 * each operand the element stride per output axis (0 where broadcast). */
typedef struct interp_bcast {
    int rank;
    int64_t dims[MHA_MAX_RANK];
    int64_t numel;
    int n_ops;
    int64_t strides[3][MHA_MAX_RANK];
} interp_bcast;

mha_status interp_bcast_init(const interp_ctx *c, interp_bcast *b, int n_ops,
                             const tensor *const *ops);
/* Offsets into each operand of output element i. */
void interp_bcast_offsets(const interp_bcast *b, int64_t i, int64_t *off);

/* The same offsets for the elements in order, by carrying an index per axis
 * (no division per element): start at element 0, then step once after each
 * element. */
typedef struct interp_bcast_walk {
    int64_t idx[MHA_MAX_RANK];
    int64_t off[3];
} interp_bcast_walk;

void interp_bcast_walk_start(const interp_bcast *b, interp_bcast_walk *w);
void interp_bcast_walk_step(const interp_bcast *b, interp_bcast_walk *w);

/* GatherElements / ScatterElements: the element of x (its offset) at the
 * coordinates of element i of idx (same rank, no larger on the other
 * axes), axis `axis` replaced by the index idx holds there (negative from
 * the end; out of range fails naming it). */
mha_status interp_element_at(const interp_ctx *c, const tensor *x, const tensor *idx, int axis,
                             int64_t i, int64_t *off);

/* Row by row of the last axis (extent *row_len, operand k stepping by
 * row_stride[k] along it, 0 where it broadcasts): *outer walks the other
 * axes, so after interp_bcast_walk_start(outer, w) w->off holds each
 * operand's offset at the first row's start and interp_bcast_walk_step
 * (outer, w) moves it to the next row's. Per-element work then needs no
 * carry over the axes, which costs most for short last axes (a [10^6, 3]
 * mask broadcast). A rank-0 b is one row of one element. */
void interp_bcast_rows(const interp_bcast *b, interp_bcast *outer, int64_t *row_len,
                       int64_t row_stride[3]);

/* ---- op functions, one per ONNX op (files: interp_elementwise.c,
 * interp_shape.c, interp_math.c, interp_attention.c) ---- */
mha_status interp_op_identity(interp_ctx *c);
mha_status interp_op_constant(interp_ctx *c);
mha_status interp_op_constant_of_shape(interp_ctx *c);
mha_status interp_op_shape(interp_ctx *c);
mha_status interp_op_size(interp_ctx *c);
mha_status interp_op_gather(interp_ctx *c);
mha_status interp_op_gather_elements(interp_ctx *c);
mha_status interp_op_unsqueeze(interp_ctx *c);
mha_status interp_op_squeeze(interp_ctx *c);
mha_status interp_op_concat(interp_ctx *c);
mha_status interp_op_reshape(interp_ctx *c);
mha_status interp_op_transpose(interp_ctx *c);
mha_status interp_op_slice(interp_ctx *c);
mha_status interp_op_split(interp_ctx *c);
mha_status interp_op_expand(interp_ctx *c);
mha_status interp_op_range(interp_ctx *c);
mha_status interp_op_trilu(interp_ctx *c);
mha_status interp_op_eye_like(interp_ctx *c);
mha_status interp_op_flatten(interp_ctx *c);
mha_status interp_op_tile(interp_ctx *c);
mha_status interp_op_pad(interp_ctx *c);
mha_status interp_op_resize(interp_ctx *c); /* interp_resize.c */

mha_status interp_op_cast(interp_ctx *c);
mha_status interp_op_cast_like(interp_ctx *c);
mha_status interp_op_add(interp_ctx *c);
mha_status interp_op_sub(interp_ctx *c);
mha_status interp_op_mul(interp_ctx *c);
mha_status interp_op_div(interp_ctx *c);
mha_status interp_op_pow(interp_ctx *c);
mha_status interp_op_mod(interp_ctx *c);
mha_status interp_op_sqrt(interp_ctx *c);
mha_status interp_op_neg(interp_ctx *c);
mha_status interp_op_reciprocal(interp_ctx *c);
mha_status interp_op_exp(interp_ctx *c);
mha_status interp_op_log(interp_ctx *c);
mha_status interp_op_tanh(interp_ctx *c);
mha_status interp_op_cos(interp_ctx *c);
mha_status interp_op_cumsum(interp_ctx *c);
mha_status interp_op_sin(interp_ctx *c);
mha_status interp_op_erf(interp_ctx *c);
mha_status interp_op_relu(interp_ctx *c);
mha_status interp_op_sigmoid(interp_ctx *c);
mha_status interp_op_hard_sigmoid(interp_ctx *c);
mha_status interp_op_hard_swish(interp_ctx *c);
mha_status interp_op_abs(interp_ctx *c);
mha_status interp_op_max(interp_ctx *c);
mha_status interp_op_min(interp_ctx *c);
mha_status interp_op_clip(interp_ctx *c);
mha_status interp_op_argmax(interp_ctx *c);
mha_status interp_op_argmin(interp_ctx *c);
/* interp_route.c */
mha_status interp_op_topk(interp_ctx *c);
mha_status interp_op_scatter_elements(interp_ctx *c);
mha_status interp_op_equal(interp_ctx *c);
mha_status interp_op_less(interp_ctx *c);
mha_status interp_op_greater(interp_ctx *c);
mha_status interp_op_less_or_equal(interp_ctx *c);
mha_status interp_op_greater_or_equal(interp_ctx *c);
mha_status interp_op_not(interp_ctx *c);
mha_status interp_op_and(interp_ctx *c);
mha_status interp_op_or(interp_ctx *c);
mha_status interp_op_xor(interp_ctx *c);
mha_status interp_op_where(interp_ctx *c);
mha_status interp_op_isnan(interp_ctx *c);
mha_status interp_op_isinf(interp_ctx *c);

mha_status interp_op_matmul(interp_ctx *c);
mha_status interp_op_einsum(interp_ctx *c);
mha_status interp_op_gemm(interp_ctx *c);
mha_status interp_op_conv(interp_ctx *c);
mha_status interp_op_average_pool(interp_ctx *c);
mha_status interp_op_max_pool(interp_ctx *c);
mha_status interp_op_softmax(interp_ctx *c);
mha_status interp_op_log_softmax(interp_ctx *c);
/* interp_loss.c */
mha_status interp_op_softmax_cross_entropy_loss(interp_ctx *c);
mha_status interp_op_negative_log_likelihood_loss(interp_ctx *c);
mha_status interp_op_reduce_sum(interp_ctx *c);
mha_status interp_op_reduce_mean(interp_ctx *c);
mha_status interp_op_layer_normalization(interp_ctx *c);
mha_status interp_op_instance_normalization(interp_ctx *c); /* interp_norm.c */
mha_status interp_op_batch_normalization(interp_ctx *c);    /* interp_norm.c */
mha_status interp_op_rms_normalization(interp_ctx *c);      /* interp_norm.c */
mha_status interp_op_rotary_embedding(interp_ctx *c);       /* interp_rotary.c */
mha_status interp_op_dft(interp_ctx *c);                    /* interp_dft.c */
/* interp_msft_fused.c: what ONNX Runtime's optimizer saves */
mha_status interp_op_ms_fused_matmul(interp_ctx *c);
mha_status interp_op_ms_fused_gemm(interp_ctx *c);
mha_status interp_op_ms_gelu(interp_ctx *c);
mha_status interp_op_ms_bias_gelu(interp_ctx *c);
mha_status interp_op_ms_fast_gelu(interp_ctx *c);
mha_status interp_op_ms_skip_layer_norm(interp_ctx *c);
mha_status interp_op_ms_skip_simplified_layer_norm(interp_ctx *c);
mha_status interp_op_ms_simplified_layer_norm(interp_ctx *c);
mha_status interp_op_ms_embed_layer_norm(interp_ctx *c);
mha_status interp_op_reduce_max(interp_ctx *c);
mha_status interp_op_reduce_min(interp_ctx *c);
mha_status interp_op_reduce_prod(interp_ctx *c);
mha_status interp_op_reduce_l1(interp_ctx *c);
mha_status interp_op_reduce_l2(interp_ctx *c);
mha_status interp_op_reduce_sum_square(interp_ctx *c);

mha_status interp_op_attention(interp_ctx *c);
/* com.microsoft (interp_msft.c) */
mha_status interp_op_ms_multihead_attention(interp_ctx *c);
mha_status interp_op_ms_attention(interp_ctx *c);
/* interp_quant.c: 8-bit quantization as ONNX Runtime's tools write it */
mha_status interp_op_quantize_linear(interp_ctx *c);
mha_status interp_op_dequantize_linear(interp_ctx *c);
mha_status interp_op_dynamic_quantize_linear(interp_ctx *c);
mha_status interp_op_matmul_integer(interp_ctx *c);
mha_status interp_op_ms_matmul_integer_to_float(interp_ctx *c);
mha_status interp_op_ms_dynamic_quantize_matmul(interp_ctx *c);
/* opset 18-20 forms */
mha_status interp_op_gelu(interp_ctx *c);                /* interp_msft_fused.c */
mha_status interp_op_group_normalization(interp_ctx *c); /* interp_norm.c */
mha_status interp_op_scatter_nd(interp_ctx *c);          /* interp_route.c */

#endif
