/* node_steps.c -- steps of one graph node each, written into the run's
 * arena instead of a fresh allocation per run (new pages the kernel
 * zeroes on first touch) and the interpreter's general loops:
 *
 * - add steps: the float32 Adds no other step takes (after the GEMM
 *   epilogues, the residuals of the attention steps and the norms took
 *   theirs), y = a + b with a of y's shape and b of y's shape or over y's
 *   last axes (leading axes of 1 broadcast): GPT-2's token rows [B, S, D]
 *   plus position rows [1, S, D], ViT's position table [1, 1 + patches, D]
 *   over the class token and patches;
 * - gather steps: the embedding lookups, a Gather on axis 0 of a constant
 *   float32 table [V, D] by computed integer ids (token, position, segment
 *   ids) into rows [ids..., D] (MiniLM-L6 at B 32, S 128: two of 6.3 MB);
 * - concat steps: a float32 Concat of values of its rank (ViT's class
 *   token before its patches, [B, 1 + P, D]: 4.8 MB at B 8 for ViT-B/16).
 *
 * The same float additions of the same stored values (a + b = b + a
 * exactly) and the same rows copied: the bits are the interpreter's. */
#include <string.h>

#include "plan_internal.h"

/* Whether b runs along y's last axes: after its leading 1s, its dims are
 * y's last ones at every probe (b float32, of y's rank or less). */
static int add_broadcasts(const plan_shape *b, const plan_shape *y) {
    if (b->dtype != MHA_DTYPE_FLOAT32 || b->rank < 1 || b->rank > y->rank) return 0;
    for (int p = 0; p < PLAN_PROBES; p++) {
        int d = 0;
        while (d < b->rank && b->dims[p][d] == 1)
            d++;
        for (; d < b->rank; d++)
            if (b->dims[p][d] != y->dims[p][y->rank - b->rank + d]) return 0;
    }
    return 1;
}

/* The operands of Add node n as a step: *a computed, of y's shape; *b
 * computed or constant, over y's last axes. 0 when it is not one. */
static int add_operands(const plan *P, const plan_shape *shp, const ir_node *n, int *a, int *b) {
    if (strcmp(n->op_type, "Add") != 0 || n->domain[0] != '\0' || n->n_inputs != 2 ||
        n->n_outputs != 1 || n->outputs[0] < 0 || n->inputs[0] < 0 || n->inputs[1] < 0)
        return 0;
    /* a folded Add is a constant, no step */
    if (plan_const(P, n->outputs[0])) return 0;
    const plan_shape *y = &shp[n->outputs[0]];
    const int c0 = plan_const(P, n->inputs[0]) != NULL, c1 = plan_const(P, n->inputs[1]) != NULL;
    if (y->dtype != MHA_DTYPE_FLOAT32 || y->rank < 1 || (c0 && c1)) return 0;
    for (int k = 0; k < 2; k++) {
        /* the operand of y's shape first, unless it is the constant */
        *a = n->inputs[k];
        *b = n->inputs[1 - k];
        /* a constant's shape is its own at every probe (the shape pass
         * records computed values only) */
        const tensor *cb = plan_const(P, *b);
        plan_shape sb = cb ? (plan_shape){cb->dtype, cb->rank, {{0}}} : shp[*b];
        for (int p = 0; cb && p < PLAN_PROBES && cb->rank <= MHA_MAX_RANK; p++)
            memcpy(sb.dims[p], cb->dims, sizeof(int64_t) * (size_t)cb->rank);
        if (!plan_const(P, *a) && plan_shape_same(&shp[*a], y) && add_broadcasts(&sb, y)) return 1;
    }
    return 0;
}

/* Whether node n is such a Gather: *table the constant, *ids the computed
 * indices. */
static int gather_operands(const plan *P, const plan_shape *shp, const ir_node *n, int *table,
                           int *ids) {
    if (strcmp(n->op_type, "Gather") != 0 || n->domain[0] != '\0' || n->n_inputs != 2 ||
        n->n_outputs != 1 || n->outputs[0] < 0 || n->inputs[0] < 0 || n->inputs[1] < 0)
        return 0;
    const tensor *t = plan_const(P, n->inputs[0]);
    const int64_t axis = ir_attr_int(n, "axis", 0);
    if (!t || t->dtype != MHA_DTYPE_FLOAT32 || t->rank != 2 || !t->data || t->dims[0] < 1 ||
        t->dims[1] < 1 || (axis != 0 && axis != -2))
        return 0;
    /* folded (constant ids), or ids the shape pass did not see as integers */
    const plan_shape *x = &shp[n->inputs[1]], *y = &shp[n->outputs[0]];
    if (plan_const(P, n->inputs[1]) || plan_const(P, n->outputs[0]) || x->rank < 0 ||
        (x->dtype != MHA_DTYPE_INT64 && x->dtype != MHA_DTYPE_INT32) ||
        y->dtype != MHA_DTYPE_FLOAT32 || y->rank != x->rank + 1)
        return 0;
    *table = n->inputs[0];
    *ids = n->inputs[1];
    return 1;
}

/* Whether node n is a Concat of float32 values of y's rank, not all
 * constant, y computed (a Concat of shapes is int64; a folded one a
 * constant): *axis its axis in [0, rank). */
static int concat_operands(const plan *P, const plan_shape *shp, const ir_node *n, int *axis) {
    if (strcmp(n->op_type, "Concat") != 0 || n->domain[0] != '\0' || n->n_inputs < 1 ||
        n->n_outputs != 1 || n->outputs[0] < 0 || plan_const(P, n->outputs[0]))
        return 0;
    const plan_shape *y = &shp[n->outputs[0]];
    if (y->dtype != MHA_DTYPE_FLOAT32 || y->rank < 1) return 0;
    int64_t a = ir_attr_int(n, "axis", 0);
    if (a < 0) a += y->rank;
    if (a < 0 || a >= y->rank) return 0;
    size_t computed = 0;
    for (size_t k = 0; k < n->n_inputs; k++) {
        const int v = n->inputs[k];
        if (v < 0) return 0;
        const tensor *c = plan_const(P, v);
        if (c ? c->dtype != MHA_DTYPE_FLOAT32 || c->rank != y->rank || !c->data
              : shp[v].dtype != MHA_DTYPE_FLOAT32 || shp[v].rank != y->rank)
            return 0;
        computed += c == NULL;
    }
    if (!computed) return 0;
    *axis = (int)a;
    return 1;
}

/* The adds, gathers and concats among the nodes not taken, in graph
 * order; marks theirs. Two passes: count, then fill. */
mha_status plan_find_node_steps(plan *P, const plan_shape *shp, unsigned char *taken,
                                mha_error *err) {
    const ir_graph *g = P->g;
    for (int fill = 0; fill < 2; fill++) {
        size_t n_adds = 0, n_gathers = 0, n_concats = 0;
        for (size_t ni = 0; ni < g->n_nodes; ni++) {
            const ir_node *n = &g->nodes[ni];
            int x = -1, y = -1;
            if (taken[ni]) continue;
            if (add_operands(P, shp, n, &x, &y)) {
                if (fill) P->adds[n_adds] = (plan_add){(int)ni, x, y, n->outputs[0], {x, y}, 2};
                n_adds++;
            } else if (gather_operands(P, shp, n, &x, &y)) {
                if (fill)
                    P->gathers[n_gathers] = (plan_gather){(int)ni, x, y, n->outputs[0], {y}, 1};
                n_gathers++;
            } else if (concat_operands(P, shp, n, &x)) {
                if (fill)
                    P->concats[n_concats] =
                        (plan_concat){(int)ni, n->outputs[0], x, n->inputs, n->n_inputs};
                n_concats++;
            } else {
                continue;
            }
            if (fill) taken[ni] = 1;
        }
        if (fill) break;
        P->adds = n_adds ? mha_calloc(&P->alloc, n_adds, sizeof *P->adds) : NULL;
        P->gathers = n_gathers ? mha_calloc(&P->alloc, n_gathers, sizeof *P->gathers) : NULL;
        P->concats = n_concats ? mha_calloc(&P->alloc, n_concats, sizeof *P->concats) : NULL;
        if ((n_adds && !P->adds) || (n_gathers && !P->gathers) || (n_concats && !P->concats))
            return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        P->n_adds = n_adds;
        P->n_gathers = n_gathers;
        P->n_concats = n_concats;
    }
    return MHA_OK;
}
