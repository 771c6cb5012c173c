/* bn_fold.c -- a BatchNormalization of a projection's rows folded into the
 * projection at load (LeViT's Linear + BatchNorm1d over the flattened rows,
 * its q / k / v and its MLP):
 *
 *   a = x . W         W [K, C] constant, read by this MatMul alone
 *   r = Flatten(a)    [N, C] (or no flatten: a is [N, C] itself)
 *   y = BN(r)         y = (r - mean) / sqrt(var + eps) * scale + B
 *
 * becomes, with s = scale / sqrt(var + eps) and t = B - mean s per column,
 *
 *   a = x . W'        W'[k, c] = W[k, c] s[c]
 *   r = a + t         the bias Add right after the MatMul, where the
 *   y = Flatten(r)    recogniser and the GEMM steps take a bias
 *
 * The Flatten and BatchNormalization nodes trade places (op, attributes,
 * data input), their output values stay; W's and B's constants (read by
 * these nodes alone) are rewritten in place. The channel axis is the last
 * one (the BatchNormalization reads a 2-D value), so the Add broadcasts t
 * over the rows. Done before the shape probes: everything after sees the
 * rewritten graph, the verifier too; the fold is algebra, rounded once
 * more (mha check holds the corpus case to PyTorch's outputs). */
#include <math.h>
#include <string.h>

#include "plan_internal.h"

/* Readers of v (node inputs, graph outputs). */
static int bn_readers(const ir_graph *g, int v) {
    int n = plan_is_output(g, v);
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++)
            n += g->nodes[i].inputs[k] == v;
    return n;
}

/* The float32 [C] constant of input k of node n, or NULL. */
static float *bn_vector(const plan *P, const ir_node *n, size_t k, int64_t C) {
    const tensor *t = k < n->n_inputs ? plan_const(P, n->inputs[k]) : NULL;
    if (!t || t->dtype != MHA_DTYPE_FLOAT32 || t->rank != 1 || t->dims[0] != C) return NULL;
    return t->data;
}

static int bn_is(const ir_node *n, const char *op) {
    return strcmp(n->op_type, op) == 0 && n->domain[0] == '\0';
}

/* Folds BatchNormalization node bi when it has the form above. */
static void bn_fold_one(plan *P, size_t bi) {
    ir_graph *g = P->g;
    ir_node *bn = &g->nodes[bi];
    if (bn->n_inputs != 5 || bn->n_outputs < 1 || bn->outputs[0] < 0 || bn->inputs[0] < 0 ||
        ir_attr_int(bn, "training_mode", 0) != 0)
        return;
    for (size_t k = 1; k < bn->n_outputs; k++)
        if (bn->outputs[k] >= 0) return;
    /* the rows: a Flatten to 2-D of the MatMul's output, or the output */
    const int r = bn->inputs[0];
    int fi = g->values[r].producer, a = r;
    if (fi < 0) return;
    if (bn_is(&g->nodes[fi], "Flatten")) {
        a = g->nodes[fi].n_inputs == 1 ? g->nodes[fi].inputs[0] : -1;
        if (a < 0 || bn_readers(g, r) != 1) return;
    } else {
        fi = -1;
    }
    const int mi = g->values[a].producer;
    if (mi < 0 || !bn_is(&g->nodes[mi], "MatMul") || g->nodes[mi].n_inputs != 2 ||
        bn_readers(g, a) != 1)
        return;
    const int wv = g->nodes[mi].inputs[1];
    tensor *W = (tensor *)plan_const(P, wv);
    if (!W || W->dtype != MHA_DTYPE_FLOAT32 || W->rank != 2 || bn_readers(g, wv) != 1) return;
    const int64_t K = W->dims[0], C = W->dims[1];
    /* without a Flatten the MatMul's rows must be 2-D: x [N, K] */
    const ir_value *xv = &g->values[g->nodes[mi].inputs[0]];
    if (fi < 0 && xv->rank != 2) return;
    float *scale = bn_vector(P, bn, 1, C), *bias = bn_vector(P, bn, 2, C);
    const float *mean = bn_vector(P, bn, 3, C), *var = bn_vector(P, bn, 4, C);
    if (!scale || !bias || !mean || !var || bn_readers(g, bn->inputs[2]) != 1) return;
    const double eps = ir_attr_float(bn, "epsilon", 1e-5f);
    float *w = W->data;
    for (int64_t c = 0; c < C; c++) {
        const double s = (double)scale[c] / sqrt((double)var[c] + eps);
        for (int64_t k = 0; k < K; k++)
            w[k * C + c] = (float)((double)w[k * C + c] * s);
        bias[c] = (float)((double)bias[c] - (double)mean[c] * s);
    }
    /* the BatchNormalization's op name buffer becomes the Add's */
    if (fi < 0) {
        strcpy(bn->op_type, "Add");
        bn->n_inputs = 2;
        bn->inputs[1] = bn->inputs[2];
        return;
    }
    ir_node *fl = &g->nodes[fi];
    char *op = fl->op_type;
    ir_attr *attrs = fl->attrs;
    const size_t n_attrs = fl->n_attrs;
    fl->op_type = bn->op_type; /* its attributes (epsilon ...) ride along, unread */
    strcpy(fl->op_type, "Add");
    fl->attrs = bn->attrs;
    fl->n_attrs = bn->n_attrs;
    int *in = fl->inputs;
    fl->inputs = bn->inputs;
    fl->n_inputs = 2;
    fl->inputs[0] = a;
    fl->inputs[1] = fl->inputs[2];
    bn->op_type = op;
    bn->attrs = attrs;
    bn->n_attrs = n_attrs;
    bn->inputs = in;
    bn->n_inputs = 1;
    bn->inputs[0] = r;
    /* r is a's shape now: what the file declared of it no longer holds */
    ir_value *rv = &g->values[r];
    rv->rank = -1;
    for (int d = 0; d < MHA_MAX_RANK; d++) {
        mha_free(&g->alloc, rv->dim_params[d]);
        rv->dim_params[d] = NULL;
    }
}

void plan_fold_batchnorm(plan *P) {
    for (size_t i = 0; i < P->g->n_nodes; i++)
        if (bn_is(&P->g->nodes[i], "BatchNormalization")) bn_fold_one(P, i);
}
