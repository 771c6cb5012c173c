/* interp.c -- the reference interpreter's driver: the op table, one-node
 * evaluation, whole-graph evaluation and constant folding. The ops
 * themselves live in interp_shape.c, interp_elementwise.c, interp_math.c,
 * interp_attention.c and the other interp_*.c files, on top of the helpers
 * they share (interp_helpers.c). */
#include "interp_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- the op table ---- */

typedef struct interp_op_entry {
    const char *op_type;
    interp_op_fn fn;
} interp_op_entry;

static const interp_op_entry interp_ops[] = {
    {"Identity", interp_op_identity},
    {"Constant", interp_op_constant},
    {"ConstantOfShape", interp_op_constant_of_shape},
    {"Shape", interp_op_shape},
    {"Size", interp_op_size},
    {"Gather", interp_op_gather},
    {"GatherElements", interp_op_gather_elements},
    {"Unsqueeze", interp_op_unsqueeze},
    {"Squeeze", interp_op_squeeze},
    {"Concat", interp_op_concat},
    {"Reshape", interp_op_reshape},
    {"Transpose", interp_op_transpose},
    {"Slice", interp_op_slice},
    {"Split", interp_op_split},
    {"Expand", interp_op_expand},
    {"Range", interp_op_range},
    {"Trilu", interp_op_trilu},
    {"EyeLike", interp_op_eye_like},
    {"Flatten", interp_op_flatten},
    {"Tile", interp_op_tile},
    {"Pad", interp_op_pad},
    {"Resize", interp_op_resize},
    {"Cast", interp_op_cast},
    {"CastLike", interp_op_cast_like},
    {"Add", interp_op_add},
    {"Sub", interp_op_sub},
    {"Mul", interp_op_mul},
    {"Div", interp_op_div},
    {"Pow", interp_op_pow},
    {"Mod", interp_op_mod},
    {"Sqrt", interp_op_sqrt},
    {"Neg", interp_op_neg},
    {"Reciprocal", interp_op_reciprocal},
    {"Exp", interp_op_exp},
    {"Log", interp_op_log},
    {"Tanh", interp_op_tanh},
    {"Cos", interp_op_cos},
    {"Sin", interp_op_sin},
    {"CumSum", interp_op_cumsum},
    {"DFT", interp_op_dft},
    {"Erf", interp_op_erf},
    {"Relu", interp_op_relu},
    {"Sigmoid", interp_op_sigmoid},
    {"HardSigmoid", interp_op_hard_sigmoid},
    {"HardSwish", interp_op_hard_swish},
    {"Abs", interp_op_abs},
    {"Max", interp_op_max},
    {"Min", interp_op_min},
    {"Clip", interp_op_clip},
    {"ArgMax", interp_op_argmax},
    {"ArgMin", interp_op_argmin},
    {"TopK", interp_op_topk},
    {"ScatterElements", interp_op_scatter_elements},
    {"Equal", interp_op_equal},
    {"Less", interp_op_less},
    {"Greater", interp_op_greater},
    {"LessOrEqual", interp_op_less_or_equal},
    {"GreaterOrEqual", interp_op_greater_or_equal},
    {"Not", interp_op_not},
    {"And", interp_op_and},
    {"Or", interp_op_or},
    {"Xor", interp_op_xor},
    {"Where", interp_op_where},
    {"IsNaN", interp_op_isnan},
    {"IsInf", interp_op_isinf},
    {"MatMul", interp_op_matmul},
    {"Einsum", interp_op_einsum},
    {"Gemm", interp_op_gemm},
    {"Conv", interp_op_conv},
    {"AveragePool", interp_op_average_pool},
    {"MaxPool", interp_op_max_pool},
    {"Softmax", interp_op_softmax},
    {"LogSoftmax", interp_op_log_softmax},
    {"SoftmaxCrossEntropyLoss", interp_op_softmax_cross_entropy_loss},
    {"NegativeLogLikelihoodLoss", interp_op_negative_log_likelihood_loss},
    {"ReduceSum", interp_op_reduce_sum},
    {"ReduceMean", interp_op_reduce_mean},
    {"LayerNormalization", interp_op_layer_normalization},
    {"RMSNormalization", interp_op_rms_normalization},
    {"RotaryEmbedding", interp_op_rotary_embedding},
    {"InstanceNormalization", interp_op_instance_normalization},
    {"BatchNormalization", interp_op_batch_normalization},
    {"ReduceMax", interp_op_reduce_max},
    {"ReduceMin", interp_op_reduce_min},
    {"ReduceProd", interp_op_reduce_prod},
    {"ReduceL1", interp_op_reduce_l1},
    {"ReduceL2", interp_op_reduce_l2},
    {"ReduceSumSquare", interp_op_reduce_sum_square},
    {"Attention", interp_op_attention},
    {"QuantizeLinear", interp_op_quantize_linear},
    {"DequantizeLinear", interp_op_dequantize_linear},
    {"DynamicQuantizeLinear", interp_op_dynamic_quantize_linear},
    {"MatMulInteger", interp_op_matmul_integer},
    {"Gelu", interp_op_gelu},
    {"GroupNormalization", interp_op_group_normalization},
    {"ScatterND", interp_op_scatter_nd},
};

static int interp_default_domain(const char *domain) {
    return domain == NULL || domain[0] == '\0' || strcmp(domain, "ai.onnx") == 0;
}

/* ONNX Runtime's contrib ops the engine imports (interp_msft.c). */
static const struct {
    const char *op_type;
    interp_op_fn fn;
} interp_msft_ops[] = {
    {"MultiHeadAttention", interp_op_ms_multihead_attention},
    {"Attention", interp_op_ms_attention},
    {"FusedMatMul", interp_op_ms_fused_matmul},
    {"FusedGemm", interp_op_ms_fused_gemm},
    {"Gelu", interp_op_ms_gelu},
    {"BiasGelu", interp_op_ms_bias_gelu},
    {"FastGelu", interp_op_ms_fast_gelu},
    {"SkipLayerNormalization", interp_op_ms_skip_layer_norm},
    {"SkipSimplifiedLayerNormalization", interp_op_ms_skip_simplified_layer_norm},
    {"SimplifiedLayerNormalization", interp_op_ms_simplified_layer_norm},
    {"MatMulIntegerToFloat", interp_op_ms_matmul_integer_to_float},
    {"DynamicQuantizeMatMul", interp_op_ms_dynamic_quantize_matmul},
    {"EmbedLayerNormalization", interp_op_ms_embed_layer_norm},
    {"QuantizeLinear", interp_op_quantize_linear},
    {"DequantizeLinear", interp_op_dequantize_linear},
};

static interp_op_fn interp_find_op(const char *domain, const char *op_type) {
    if (op_type != NULL && domain != NULL && strcmp(domain, "com.microsoft") == 0) {
        for (size_t i = 0; i < sizeof interp_msft_ops / sizeof interp_msft_ops[0]; i++)
            if (strcmp(interp_msft_ops[i].op_type, op_type) == 0) return interp_msft_ops[i].fn;
        return NULL;
    }
    if (!interp_default_domain(domain) || op_type == NULL) return NULL;
    for (size_t i = 0; i < sizeof interp_ops / sizeof interp_ops[0]; i++)
        if (strcmp(interp_ops[i].op_type, op_type) == 0) return interp_ops[i].fn;
    return NULL;
}

int interp_supports(const char *domain, const char *op_type) {
    return interp_find_op(domain, op_type) != NULL;
}

/* ---- evaluating one node ---- */

static int64_t interp_graph_opset(const ir_graph *g) {
    return (g != NULL && g->opset > 0) ? g->opset : INTERP_DEFAULT_OPSET;
}

static mha_status interp_eval(const mha_alloc_ctx *a, const ir_graph *g, const ir_node *n,
                              tensor *const *in, tensor **out, int shape_only, mha_error *err) {
    char desc[160];
    for (size_t k = 0; k < n->n_outputs; k++)
        out[k] = NULL;
    interp_op_fn fn = interp_find_op(n->domain, n->op_type);
    if (fn == NULL) {
        if (!interp_default_domain(n->domain))
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: domain '%s' is not supported by the reference interpreter",
                            ir_node_desc(n, desc, sizeof desc), n->domain);
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: op is not supported by the reference interpreter",
                        ir_node_desc(n, desc, sizeof desc));
    }
    interp_ctx c = {.a = a,
                    .n = n,
                    .opset = interp_graph_opset(g),
                    .in = in,
                    .n_in = n->n_inputs,
                    .out = out,
                    .n_out = n->n_outputs,
                    .err = err,
                    .shape_only = shape_only};
    mha_status st = fn(&c);
    if (st == MHA_OK) {
        /* Every output the node names must have been produced; those it
         * omits ("" in the file) are dropped. */
        for (size_t k = 0; k < n->n_outputs; k++) {
            if (n->outputs[k] < 0) {
                tensor_free(out[k]);
                out[k] = NULL;
            } else if (out[k] == NULL) {
                st = interp_fail(&c, MHA_ERR_MODEL_UNSUPPORTED, "output %zu is not produced", k);
                break;
            }
        }
    }
    if (st != MHA_OK) {
        for (size_t k = 0; k < n->n_outputs; k++) {
            tensor_free(out[k]);
            out[k] = NULL;
        }
    }
    return st;
}

mha_status interp_eval_node(const mha_alloc_ctx *a, const ir_graph *g, const ir_node *n,
                            tensor *const *in, tensor **out, mha_error *err) {
    return interp_eval(a, g, n, in, out, 0, err);
}

mha_status interp_eval_node_shape(const mha_alloc_ctx *a, const ir_graph *g, const ir_node *n,
                                  tensor *const *in, tensor **out, mha_error *err) {
    return interp_eval(a, g, n, in, out, 1, err);
}

/* ---- whole graphs ---- */

void interp_values_free(const ir_graph *g, tensor **values) {
    if (values == NULL || g == NULL) return;
    for (size_t i = 0; i < g->n_values; i++)
        tensor_free(values[i]);
    mha_free(&g->alloc, values);
}

/* values[] with every initializer cloned in. The array itself belongs to
 * the graph's allocator (interp_values_free has only the graph); the
 * tensors to `a`, as each tensor records. */
static mha_status interp_values_init(const mha_alloc_ctx *a, const ir_graph *g, tensor ***values,
                                     mha_error *err) {
    *values = NULL;
    tensor **v = mha_calloc(&g->alloc, g->n_values ? g->n_values : 1, sizeof *v);
    if (v == NULL)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory for %zu graph values", g->n_values);
    for (size_t i = 0; i < g->n_values; i++) {
        const tensor *init = g->values[i].init;
        if (init == NULL) continue;
        mha_status st = tensor_new(a, init->dtype, init->rank, init->dims, &v[i], err);
        if (st != MHA_OK) {
            mha_error_prefix(err, "initializer '%s'", g->values[i].name);
            interp_values_free(g, v);
            return st;
        }
        if (init->nbytes) memcpy(v[i]->data, init->data, init->nbytes);
    }
    *values = v;
    return MHA_OK;
}

/* Checks a bound graph input against its declared type and static dims. */
static mha_status interp_check_input(const ir_value *val, const tensor *t, mha_error *err) {
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    if (val->dtype != MHA_DTYPE_UNDEFINED && val->dtype != t->dtype)
        return mha_fail(err, MHA_ERR_DTYPE, "input '%s': expected %s, got %s", val->name,
                        mha_dtype_name(val->dtype), mha_dtype_name(t->dtype));
    if (val->rank < 0) return MHA_OK;
    int bad = val->rank != t->rank;
    for (int i = 0; !bad && i < t->rank; i++)
        if (val->dims[i] >= 0 && val->dims[i] != t->dims[i]) bad = 1;
    if (bad)
        return mha_fail(err, MHA_ERR_SHAPE, "input '%s': expected shape %s, got %s", val->name,
                        tensor_shape_str(val->rank, val->dims, s0, sizeof s0),
                        tensor_shape_str(t->rank, t->dims, s1, sizeof s1));
    return MHA_OK;
}

/* Evaluates node ni with inputs from values[] and stores its outputs. */
static mha_status interp_run_node(const mha_alloc_ctx *a, const ir_graph *g, size_t ni,
                                  tensor **values, tensor **in, tensor **out, mha_error *err) {
    const ir_node *n = &g->nodes[ni];
    char desc[160];
    for (size_t k = 0; k < n->n_inputs; k++) {
        int id = n->inputs[k];
        in[k] = NULL;
        if (id < 0) continue;
        if ((size_t)id >= g->n_values)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: input %zu has invalid value id %d",
                            ir_node_desc(n, desc, sizeof desc), k, id);
        if (values[id] == NULL)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: input '%s' has no value",
                            ir_node_desc(n, desc, sizeof desc), g->values[id].name);
        in[k] = values[id];
    }
    for (size_t k = 0; k < n->n_outputs; k++) {
        int id = n->outputs[k];
        if (id >= 0 && (size_t)id >= g->n_values)
            return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: output %zu has invalid value id %d",
                            ir_node_desc(n, desc, sizeof desc), k, id);
    }
    mha_status st = interp_eval_node(a, g, n, in, out, err);
    if (st != MHA_OK) return st;
    for (size_t k = 0; k < n->n_outputs; k++) {
        int id = n->outputs[k];
        if (id < 0) continue;
        tensor_free(values[id]); /* a value written twice keeps the last one */
        values[id] = out[k];
        out[k] = NULL;
    }
    return MHA_OK;
}

/* Scratch arrays for the largest node's inputs and outputs. */
static mha_status interp_scratch(const ir_graph *g, tensor ***in, tensor ***out, mha_error *err) {
    size_t max_in = 1, max_out = 1;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].n_inputs > max_in) max_in = g->nodes[i].n_inputs;
        if (g->nodes[i].n_outputs > max_out) max_out = g->nodes[i].n_outputs;
    }
    *in = mha_calloc(&g->alloc, max_in, sizeof **in);
    *out = mha_calloc(&g->alloc, max_out, sizeof **out);
    if (*in == NULL || *out == NULL) {
        mha_free(&g->alloc, *in);
        mha_free(&g->alloc, *out);
        *in = *out = NULL;
        return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory for node operands");
    }
    return MHA_OK;
}

/* need[ni] for the nodes the targets depend on (all nodes without
 * targets). The nodes are in topological order: one backward sweep. */
static unsigned char *interp_needed_nodes(const ir_graph *g, const int *targets, size_t n_targets) {
    unsigned char *need = mha_calloc(&g->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    unsigned char *want = mha_calloc(&g->alloc, g->n_values ? g->n_values : 1, 1);
    if (need == NULL || want == NULL) {
        mha_free(&g->alloc, need);
        mha_free(&g->alloc, want);
        return NULL;
    }
    for (size_t t = 0; t < n_targets; t++)
        if (targets[t] >= 0 && (size_t)targets[t] < g->n_values) want[targets[t]] = 1;
    for (size_t ni = g->n_nodes; ni-- > 0;) {
        const ir_node *n = &g->nodes[ni];
        int hit = targets == NULL;
        for (size_t k = 0; k < n->n_outputs && !hit; k++)
            hit = n->outputs[k] >= 0 && (size_t)n->outputs[k] < g->n_values && want[n->outputs[k]];
        if (!hit) continue;
        need[ni] = 1;
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && (size_t)n->inputs[k] < g->n_values) want[n->inputs[k]] = 1;
    }
    mha_free(&g->alloc, want);
    return need;
}

mha_status interp_run(const mha_alloc_ctx *a, const ir_graph *g, const tensor *const *inputs,
                      tensor ***values, mha_error *err) {
    return interp_run_for(a, g, inputs, NULL, 0, values, err);
}

mha_status interp_run_for(const mha_alloc_ctx *a, const ir_graph *g, const tensor *const *inputs,
                          const int *targets, size_t n_targets, tensor ***values, mha_error *err) {
    *values = NULL;
    tensor **v = NULL, **in = NULL, **out = NULL;
    unsigned char *need = interp_needed_nodes(g, targets, n_targets);
    if (need == NULL)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory for %zu nodes", g->n_nodes);
    mha_status st = interp_values_init(a, g, &v, err);
    if (st != MHA_OK) {
        mha_free(&g->alloc, need);
        return st;
    }
    for (size_t i = 0; i < g->n_inputs && st == MHA_OK; i++) {
        int id = g->inputs[i];
        if (id < 0 || (size_t)id >= g->n_values) {
            st = mha_fail(err, MHA_ERR_MODEL_FORMAT, "graph input %zu has invalid value id %d", i,
                          id);
        } else if (inputs == NULL || inputs[i] == NULL) {
            st = mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "graph input '%s' is not bound",
                          g->values[id].name);
        } else if ((st = interp_check_input(&g->values[id], inputs[i], err)) == MHA_OK) {
            tensor_free(v[id]);
            v[id] = NULL;
            st = tensor_new(a, inputs[i]->dtype, inputs[i]->rank, inputs[i]->dims, &v[id], err);
            if (st == MHA_OK && inputs[i]->nbytes)
                memcpy(v[id]->data, inputs[i]->data, inputs[i]->nbytes);
        }
    }
    if (st == MHA_OK) st = interp_scratch(g, &in, &out, err);
    for (size_t ni = 0; ni < g->n_nodes && st == MHA_OK; ni++)
        if (need[ni]) st = interp_run_node(a, g, ni, v, in, out, err);
    mha_free(&g->alloc, in);
    mha_free(&g->alloc, out);
    mha_free(&g->alloc, need);
    if (st != MHA_OK) {
        interp_values_free(g, v);
        return st;
    }
    *values = v;
    return MHA_OK;
}

/* Shape (or Size) of a value whose declared dims are all known. */
static mha_status interp_fold_static_shape(const mha_alloc_ctx *a, const ir_graph *g,
                                           const ir_node *n, tensor **values, tensor **in,
                                           tensor **out, mha_error *err) {
    int id = ir_node_input(n, 0);
    if (id < 0 || (size_t)id >= g->n_values || n->n_inputs != 1) return MHA_OK;
    const ir_value *val = &g->values[id];
    if (val->rank < 0 || val->rank > MHA_MAX_RANK) return MHA_OK;
    for (int i = 0; i < val->rank; i++)
        if (val->dims[i] < 0) return MHA_OK;
    /* A stand-in tensor with the declared dims: Shape reads only dims. */
    tensor proxy = {.dtype = val->dtype != MHA_DTYPE_UNDEFINED ? val->dtype : MHA_DTYPE_FLOAT32,
                    .rank = val->rank,
                    .data = NULL,
                    .alloc = a};
    for (int i = 0; i < val->rank; i++)
        proxy.dims[i] = val->dims[i];
    in[0] = &proxy;
    mha_status st = interp_eval_node(a, g, n, in, out, err);
    in[0] = NULL;
    if (st != MHA_OK) return st;
    for (size_t k = 0; k < n->n_outputs; k++) {
        int oid = n->outputs[k];
        if (oid < 0 || (size_t)oid >= g->n_values) {
            tensor_free(out[k]);
        } else {
            tensor_free(values[oid]);
            values[oid] = out[k];
        }
        out[k] = NULL;
    }
    return MHA_OK;
}

mha_status interp_fold_constants(const mha_alloc_ctx *a, const ir_graph *g, tensor ***values,
                                 mha_error *err) {
    *values = NULL;
    tensor **v = NULL, **in = NULL, **out = NULL;
    mha_status st = interp_values_init(a, g, &v, err);
    if (st == MHA_OK) st = interp_scratch(g, &in, &out, err);
    for (size_t ni = 0; ni < g->n_nodes && st == MHA_OK; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (!interp_supports(n->domain, n->op_type)) continue;
        int all_const = 1;
        for (size_t k = 0; k < n->n_inputs; k++) {
            int id = n->inputs[k];
            if (id >= 0 && ((size_t)id >= g->n_values || v[id] == NULL)) all_const = 0;
        }
        if (all_const)
            st = interp_run_node(a, g, ni, v, in, out, err);
        else if (strcmp(n->op_type, "Shape") == 0 || strcmp(n->op_type, "Size") == 0)
            st = interp_fold_static_shape(a, g, n, v, in, out, err);
        else
            continue;
        /* Malformed constant operands are the model's error and fail the
         * fold, naming the node; only what the interpreter cannot do is
         * skipped. */
        if (st == MHA_ERR_MODEL_UNSUPPORTED) {
            /* An op variant the interpreter does not implement (an attribute
             * it does not know, ...): the value stays unknown. */
            if (err) mha_error_clear(err);
            st = MHA_OK;
        }
    }
    mha_free(&g->alloc, in);
    mha_free(&g->alloc, out);
    if (st != MHA_OK) {
        interp_values_free(g, v);
        return st;
    }
    *values = v;
    return MHA_OK;
}
