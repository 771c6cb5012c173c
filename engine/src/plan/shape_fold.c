/* shape_fold.c -- sizes read from the shape of a value that are the same at
 * every probe, folded into constants. PyTorch writes `E = query.size(-1)`
 * and slices the packed in_proj_weight of nn.MultiheadAttention by it
 * (w[E:2E]: torch 1.13's cross-attention), or `n = x.shape[1]` of the patch
 * tokens, and the graph then computes weights and reshapes from Shape nodes
 * of the data: the projection's weight is not a constant, and the layer is
 * not recognised. A node reading one Shape output (its other inputs
 * constant) is folded when it gives the same value at both probes -- the
 * rule the partition uses to declare an axis fixed (part_declare); the
 * plan is verified at load as always.
 *
 *   for each node n whose inputs are constants but one, the output of a
 *   Shape of value x (x's shape known at both probes):
 *       y_p = n(shape of x at probe p, constants)      p = 0, 1
 *       y_0 == y_1 (type, shape, bytes): y_0 is a constant
 *
 * Two probes are not enough on their own: `seq // 8` is 0 at both probe
 * lengths (3 and 5) and `min(seq, 4)` is 4 at 4 and 7, yet both change
 * with a longer text. So the axes of x that differ between the probes
 * (the symbolic ones) are also set to each of a few more sizes, tiny and
 * large; y must stay y_0 at all of them (a size read from fixed axes, the
 * folds wanted, does not see them at all). */
#include <string.h>

#include "interp.h"
#include "plan_internal.h"

/* The sizes an axis that differs between the probes is also tried at:
 * below the probes' (a `min` or `max` against a small constant) and far
 * above them (an integer division by the block of a long text). */
static const int64_t shape_fold_more[] = {1, 2, 4099, 65537};
#define SHAPE_FOLD_MORE (int)(sizeof shape_fold_more / sizeof shape_fold_more[0])

/* The output of Shape node s (start / end of opset 15) at probe p, or for
 * p >= PLAN_PROBES at probe 0 with every axis that differs between the
 * probes at shape_fold_more[p - PLAN_PROBES]. */
static mha_status shape_fold_shape_at(const plan *P, const ir_node *s, const plan_shape *x, int p,
                                      tensor **t, mha_error *err) {
    int64_t start = ir_attr_int(s, "start", 0), end = ir_attr_int(s, "end", x->rank);
    const int64_t r = x->rank;
    start = start < 0 ? start + r : start;
    end = end < 0 ? end + r : end;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    const int64_t n = end > start ? end - start : 0;
    mha_status st = tensor_new(&P->alloc, MHA_DTYPE_INT64, 1, &n, t, err);
    for (int64_t d = 0; st == MHA_OK && d < n; d++) {
        const int64_t a = x->dims[0][start + d], b = x->dims[1][start + d];
        ((int64_t *)(*t)->data)[d] = p < PLAN_PROBES ? x->dims[p][start + d]
                                     : a == b        ? a
                                                     : shape_fold_more[p - PLAN_PROBES];
    }
    return st;
}

static int shape_fold_same(const tensor *a, const tensor *b) {
    if (!a || !b || a->dtype != b->dtype || a->rank != b->rank || a->nbytes != b->nbytes) return 0;
    for (int d = 0; d < a->rank; d++)
        if (a->dims[d] != b->dims[d]) return 0;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

/* Folds node n when its one unknown input is Shape node s's output (slot
 * k) and it gives the same at both probes; *folded says whether it did. */
static mha_status shape_fold_node(plan *P, const plan_shape *shp, const ir_node *n, size_t k,
                                  const ir_node *s, int *folded, mha_error *err) {
    tensor *in[16], *out[2][1] = {{NULL}, {NULL}}, *sv = NULL;
    const plan_shape *x = &shp[s->inputs[0]];
    mha_status st = MHA_OK;
    *folded = 0;
    for (size_t i = 0; i < n->n_inputs; i++)
        in[i] = n->inputs[i] >= 0 ? (tensor *)plan_const(P, n->inputs[i]) : NULL;
    /* the probes, then the more sizes (into out[1]) while y stays y_0; a
     * y of more than a few elements (a tensor shaped by the sizes, not a
     * size) is not made at the large sizes */
    int same = 1;
    for (int p = 0; p < PLAN_PROBES + SHAPE_FOLD_MORE && st == MHA_OK && same; p++) {
        const int q = p < PLAN_PROBES ? p : 1;
        if (p >= PLAN_PROBES && shape_fold_more[p - PLAN_PROBES] > 2 &&
            tensor_numel(out[0][0]) > 64)
            continue;
        if (p >= PLAN_PROBES) {
            tensor_free(out[1][0]);
            out[1][0] = NULL;
        }
        st = shape_fold_shape_at(P, s, x, p, &sv, err);
        in[k] = sv;
        if (st == MHA_OK) st = interp_eval_node(&P->alloc, P->g, n, in, out[q], err);
        tensor_free(sv);
        sv = NULL;
        if (st == MHA_OK && p > 0) same = shape_fold_same(out[0][0], out[1][0]);
    }
    if (st == MHA_ERR_MODEL_UNSUPPORTED || st == MHA_ERR_SHAPE) {
        mha_error_clear(err); /* left to the plan's run, which says why (and a
                                 size at which n fails is not a constant) */
        st = MHA_OK;
    } else if (st == MHA_OK && same) {
        P->consts[n->outputs[0]] = out[0][0];
        out[0][0] = NULL;
        *folded = 1;
    }
    tensor_free(out[0][0]);
    tensor_free(out[1][0]);
    return st;
}

mha_status plan_fold_static_dims(plan *P, const plan_shape *shp, size_t *n_folded, mha_error *err) {
    const ir_graph *g = P->g;
    mha_status st = MHA_OK;
    *n_folded = 0;
    for (size_t ni = 0; ni < g->n_nodes && st == MHA_OK; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (n->n_outputs != 1 || n->outputs[0] < 0 || n->n_inputs > 16 ||
            plan_const(P, n->outputs[0]) || !interp_supports(n->domain, n->op_type))
            continue;
        int unknown = 0;
        size_t slot = 0;
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && !plan_const(P, n->inputs[k])) {
                unknown++;
                slot = k;
            }
        if (unknown != 1) continue;
        const int pid = g->values[n->inputs[slot]].producer;
        const ir_node *s = pid >= 0 ? &g->nodes[pid] : NULL;
        if (!s || strcmp(s->op_type, "Shape") != 0 || s->domain[0] != '\0' || s->n_inputs != 1 ||
            s->inputs[0] < 0 || shp[s->inputs[0]].rank < 0)
            continue;
        int folded;
        st = shape_fold_node(P, shp, n, slot, s, &folded, err);
        *n_folded += (size_t)folded;
    }
    return st;
}
