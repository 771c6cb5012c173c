/* residual.c -- the residual Add after an attention layer, taken into the
 * layer's step: h = x + attention(x') becomes the output projection's
 * epilogue (Y [rows, d_out] . Wo + bo + x, each tile while it is in cache)
 * instead of an interpreted pass over B x S x d floats into a fresh
 * allocation. The Add must be the only reader of the layer's output Y
 * (float32, not a graph output), and its other operand a computed float32
 * value of Y's shape on every probe (no broadcast): then the sum is the
 * same float addition whichever side does it, so the step's output is
 * bitwise the Add's. */
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

/* The Add node taking layer pl's output as its one reader, with *other
 * its residual operand; -1 when there is none to fuse. */
static int residual_add(const plan *P, const plan_uses *u, const plan_shape *shp,
                        const unsigned char *taken, const plan_layer *pl, int *other) {
    const ir_graph *g = P->g;
    const int y = pl->out_value;
    if (y < 0 || plan_is_output(g, y) || u->first[y + 1] - u->first[y] != 1) return -1;
    const int ai = u->node[u->first[y]];
    const ir_node *a = &g->nodes[ai];
    if (taken[ai] || strcmp(a->op_type, "Add") != 0 || a->domain[0] != '\0' || a->n_inputs != 2 ||
        a->n_outputs != 1 || a->outputs[0] < 0)
        return -1;
    const int x = a->inputs[0] == y ? a->inputs[1] : a->inputs[0];
    /* the residual is computed before the Add (graph order), read as it is */
    if (x < 0 || x == y || plan_const(P, x) || !plan_shape_same(&shp[x], &shp[y]) ||
        !plan_shape_same(&shp[a->outputs[0]], &shp[y]))
        return -1;
    *other = x;
    return ai;
}

mha_status plan_fuse_residuals(plan *P, const plan_uses *u, const plan_shape *shp,
                               unsigned char *taken, mha_error *err) {
    for (size_t li = 0; li < P->n_layers; li++) {
        plan_layer *pl = &P->layers[li];
        const layer *L = &pl->L;
        int x = -1;
        /* Y is L's output 0; the others are the present keys and values
         * of a cache (partition.c) */
        if (!pl->recognised || pl->residual || L->n_outputs != 1 + pl->n_extra || L->n_inputs == 0)
            continue;
        const int ai = residual_add(P, u, shp, taken, pl, &x);
        if (ai < 0) continue;
        /* the step reads the residual as one more value after L's inputs,
         * and is placed at the Add (both operands are made by then) */
        int *reads = mha_calloc(&P->alloc, L->n_inputs + 1, sizeof *reads);
        int *nodes = mha_calloc(&P->alloc, pl->n_nodes + 1, sizeof *nodes);
        if (!reads || !nodes) {
            mha_free(&P->alloc, reads);
            mha_free(&P->alloc, nodes);
            return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        }
        memcpy(reads, pl->in_values, L->n_inputs * sizeof *reads);
        reads[L->n_inputs] = x;
        memcpy(nodes, pl->nodes, pl->n_nodes * sizeof *nodes);
        nodes[pl->n_nodes] = ai;
        mha_free(&P->alloc, pl->in_values);
        mha_free(&P->alloc, pl->nodes);
        pl->in_values = reads;
        pl->nodes = nodes;
        pl->n_nodes++;
        pl->residual = 1;
        char form[sizeof pl->desc];
        snprintf(form, sizeof form, "%s", pl->desc[0] ? pl->desc : L->form ? L->form : "");
        snprintf(pl->desc, sizeof pl->desc, "%.38s+residual", form);
        pl->out_value = P->g->nodes[ai].outputs[0];
        taken[ai] = 1;
    }
    return MHA_OK;
}
