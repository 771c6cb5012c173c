/* layout.c -- a sequence-first attention layer between two Transposes run
 * as a batch-first one.
 *
 * torch's nn.MultiheadAttention (batch_first=False) inside a batch-first
 * model (torchvision's ViT, many encoders) is exported as
 *     X = Transpose(T, perm [1, 0, 2])     T [B, S, D] -> X [S, B, D]
 *     Y = layer(X)                         [S, B, D], a seq_first step
 *     Z = Transpose(Y, perm [1, 0, 2])     [B, S, D]
 * The two Transposes are passes over the whole activation in the
 * interpreter, each with a fresh output (ViT-B/16 at B 8: 24 passes over
 * 1576 x 768 floats, some 4 % of a run). The layer computes each batch
 * item's rows on their own whichever layout holds them, so the step reads T
 * and writes Z directly as a batch-first layer: the same rows, the same
 * bits. The front Transpose is then read by no step and dropped as dead
 * (build_drop_dead); the back one joins the layer's nodes (its step is made
 * where Z is).
 *
 * Likewise ViT's patch embedding: the Conv's [B, N, Hp, Wp] is flattened
 * to [B, N, Hp Wp] and transposed to patch rows [B, Hp Wp, N], which is
 * the layout of the GEMM that computes the Conv: the step writes its
 * product as those rows, instead of scattering it into [B, N, Hp, Wp] for
 * the interpreter to copy and gather back (plan_gemm.conv_rows).
 *
 * The plan verification checks the results like any step's. */
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

/* Whether node n swaps the first two axes of a rank-3 tensor. */
static int layout_is_swap01(const plan_shape *shp, const ir_node *n) {
    if (strcmp(n->op_type, "Transpose") != 0 || (n->domain[0] && strcmp(n->domain, "ai.onnx")) ||
        n->n_inputs != 1 || n->n_outputs != 1 || n->inputs[0] < 0 || n->outputs[0] < 0)
        return 0;
    const ir_attr *perm = ir_node_attr(n, "perm");
    return perm && perm->type == IR_ATTR_INTS && perm->n == 3 && perm->ints[0] == 1 &&
           perm->ints[1] == 0 && perm->ints[2] == 2 && shp[n->inputs[0]].rank == 3;
}

/* The node swapping the first two axes of Y when it is Y's only reader
 * and Y no graph output, else -1. */
static int layout_back_swap(const plan *P, const plan_uses *u, const plan_shape *shp, int y) {
    if (y < 0 || plan_is_output(P->g, y) || u->first[y + 1] - u->first[y] != 1) return -1;
    int ni = u->node[u->first[y]];
    return layout_is_swap01(shp, &P->g->nodes[ni]) ? ni : -1;
}

/* The data inputs of a sequence-first layer: [S, B, D] like its output. */
static int layout_is_data(mha_io_role r) {
    return r == MHA_ROLE_QUERY || r == MHA_ROLE_KEY_VALUE || r == MHA_ROLE_VALUE_INPUT;
}

/* Inputs whose meaning does not depend on the data layout. */
static int layout_is_neutral(mha_io_role r) {
    return r == MHA_ROLE_ATTN_MASK || r == MHA_ROLE_KEY_PADDING_MASK || r == MHA_ROLE_ATTN_BIAS;
}

static void layout_swap_dims(layer_io *io) {
    int64_t d = io->dims[0];
    io->dims[0] = io->dims[1];
    io->dims[1] = d;
}

/* Folds layer li when it is sequence-first with every data input made by a
 * swap Transpose and its output read by one; 1 if folded. */
static mha_status layout_fold_layer(plan *P, const plan_uses *u, const plan_shape *shp, size_t li,
                                    int *folded, mha_error *err) {
    plan_layer *pl = &P->layers[li];
    layer *L = &pl->L;
    const ir_graph *g = P->g;
    *folded = 0;
    if (!pl->recognised || !L->seq_first || !L->has_proj || L->n_outputs != 1) return MHA_OK;
    const int back = layout_back_swap(P, u, shp, pl->out_value);
    if (back < 0) return MHA_OK;
    for (size_t o = 0; o < P->n_layers; o++) /* a node of another layer stays there */
        for (size_t k = 0; P->layers[o].recognised && k < P->layers[o].n_nodes; k++)
            if (P->layers[o].nodes[k] == back) return MHA_OK;
    int src[RUN_MAX_LAYER_INPUTS];
    if (L->n_inputs > RUN_MAX_LAYER_INPUTS) return MHA_OK;
    for (size_t i = 0; i < L->n_inputs; i++) {
        src[i] = -1;
        if (layout_is_neutral(L->inputs[i].role)) continue;
        if (!layout_is_data(L->inputs[i].role)) return MHA_OK;
        int prod = g->values[pl->in_values[i]].producer;
        if (prod < 0 || !layout_is_swap01(shp, &g->nodes[prod])) return MHA_OK;
        src[i] = g->nodes[prod].inputs[0];
    }
    int *nodes = mha_calloc(&P->alloc, pl->n_nodes + 1, sizeof *nodes);
    if (!nodes) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    memcpy(nodes, pl->nodes, sizeof *nodes * pl->n_nodes);
    nodes[pl->n_nodes] = back; /* it reads Y, made by a node before it */
    mha_free(&P->alloc, pl->nodes);
    pl->nodes = nodes;
    pl->n_nodes++;
    for (size_t i = 0; i < L->n_inputs; i++) {
        if (src[i] < 0) continue;
        pl->in_values[i] = src[i];
        if (L->inputs[i].rank == 3) layout_swap_dims(&L->inputs[i]);
    }
    pl->out_value = g->nodes[back].outputs[0];
    if (L->outputs[0].rank == 3) layout_swap_dims(&L->outputs[0]);
    L->seq_first = 0;
    *folded = 1;
    return MHA_OK;
}

/* Whether value v has the same dims as `want` (rank 3) at every probe. */
static int layout_dims_are(const plan_shape *shp, int v, const int64_t want[][3]) {
    if (shp[v].rank != 3) return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        for (int d = 0; d < 3; d++)
            if (shp[v].dims[p][d] != want[p][d]) return 0;
    return 1;
}

/* Patch Conv gi followed by Reshape to [B, N, Hp Wp] and Transpose perm
 * [0, 2, 1]: the step writes the Transpose's output as its rows. */
static mha_status layout_fold_patch(plan *P, const plan_uses *u, const plan_shape *shp, size_t gi,
                                    int *folded, mha_error *err) {
    plan_gemm *pg = &P->gemms[gi];
    const ir_graph *g = P->g;
    *folded = 0;
    if (pg->conv_kh <= 0 || pg->conv_rows || pg->n_ep_nodes > 0 || pg->conv_groups > 1 ||
        pg->conv_group > 0 || pg->conv_depthwise)
        return MHA_OK;
    const int c = pg->out_value;
    const int r = plan_data_reader(P, u, c);
    if (r < 0 || strcmp(g->nodes[r].op_type, "Reshape") != 0 || g->nodes[r].inputs[0] != c ||
        g->nodes[r].n_outputs != 1 || shp[c].rank != 4)
        return MHA_OK;
    const int t = plan_data_reader(P, u, g->nodes[r].outputs[0]);
    if (t < 0 || strcmp(g->nodes[t].op_type, "Transpose") != 0 || g->nodes[t].n_outputs != 1 ||
        g->nodes[t].outputs[0] < 0)
        return MHA_OK;
    const ir_attr *perm = ir_node_attr(&g->nodes[t], "perm");
    if (!perm || perm->type != IR_ATTR_INTS || perm->n != 3 || perm->ints[0] != 0 ||
        perm->ints[1] != 2 || perm->ints[2] != 1)
        return MHA_OK;
    /* the Conv's output and the flat view are made no more: their sizes may
     * feed only the view's own target shape */
    if (!plan_shape_reads_end_at(P, u, c, r) ||
        !plan_shape_reads_end_at(P, u, g->nodes[r].outputs[0], r))
        return MHA_OK;
    int64_t flat[PLAN_PROBES][3], rows[PLAN_PROBES][3];
    for (int p = 0; p < PLAN_PROBES; p++) {
        const int64_t *d = shp[c].dims[p];
        flat[p][0] = rows[p][0] = d[0];
        flat[p][1] = rows[p][2] = d[1];
        flat[p][2] = rows[p][1] = d[2] * d[3];
    }
    if (!layout_dims_are(shp, g->nodes[r].outputs[0], flat) ||
        !layout_dims_are(shp, g->nodes[t].outputs[0], rows))
        return MHA_OK;
    pg->ep_nodes = mha_calloc(&P->alloc, 2, sizeof *pg->ep_nodes);
    if (!pg->ep_nodes) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    pg->ep_nodes[0] = r;
    pg->ep_nodes[1] = t;
    pg->n_ep_nodes = 2;
    pg->out_value = g->nodes[t].outputs[0];
    pg->conv_rows = 1;
    if (pg->conv_general) {
        /* its geometry kept: "conv2d k3x3 s2 p1 gemm+bias as rows" */
        const size_t used = strlen(pg->desc);
        snprintf(pg->desc + used, sizeof pg->desc - used, " as rows");
    } else {
        snprintf(pg->desc, sizeof pg->desc, "patch-conv gemm%s as rows", pg->bias ? "+bias" : "");
    }
    *folded = 1;
    return MHA_OK;
}

mha_status plan_fold_layouts(plan *P, const plan_uses *u, const plan_shape *shp, size_t *n_folded,
                             mha_error *err) {
    *n_folded = 0;
    for (size_t li = 0; li < P->n_layers; li++) {
        int folded = 0;
        mha_status st = layout_fold_layer(P, u, shp, li, &folded, err);
        if (st != MHA_OK) return st;
        *n_folded += (size_t)folded;
    }
    for (size_t gi = 0; gi < P->n_gemms; gi++) {
        int folded = 0;
        mha_status st = layout_fold_patch(P, u, shp, gi, &folded, err);
        if (st != MHA_OK) return st;
        *n_folded += (size_t)folded;
    }
    return MHA_OK;
}
