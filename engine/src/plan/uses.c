/* uses.c -- who reads each value: the consumers of every value in
 * compressed rows (plan_uses), and the questions the fusions ask of them
 * (a graph output? the one node reading the data?). A leaf: the plan's
 * stages call it, it calls none of them. */
#include <string.h>

#include "plan_internal.h"

mha_status plan_uses_build(const mha_alloc_ctx *a, const ir_graph *g, plan_uses *u,
                           mha_error *err) {
    memset(u, 0, sizeof *u);
    size_t total = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        total += g->nodes[i].n_inputs;
    u->first = mha_calloc(a, g->n_values + 1, sizeof *u->first);
    u->node = mha_calloc(a, total ? total : 1, sizeof *u->node);
    int *fill = mha_calloc(a, g->n_values + 1, sizeof *fill);
    if (!u->first || !u->node || !fill) {
        mha_free(a, fill);
        plan_uses_free(a, u);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) u->first[g->nodes[i].inputs[k] + 1]++;
    for (size_t v = 0; v < g->n_values; v++)
        u->first[v + 1] += u->first[v];
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++) {
            int v = g->nodes[i].inputs[k];
            if (v >= 0) u->node[u->first[v] + fill[v]++] = (int)i;
        }
    mha_free(a, fill);
    return MHA_OK;
}

void plan_uses_free(const mha_alloc_ctx *a, plan_uses *u) {
    mha_free(a, u->first);
    mha_free(a, u->node);
    memset(u, 0, sizeof *u);
}

int plan_is_output(const ir_graph *g, int v) {
    for (size_t k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == v) return 1;
    return 0;
}

int plan_data_reader(const plan *P, const plan_uses *u, int v) {
    if (v < 0 || plan_is_output(P->g, v)) return -1;
    int found = -1;
    for (int e = u->first[v]; e < u->first[v + 1]; e++) {
        const int ni = u->node[e];
        if (strcmp(P->g->nodes[ni].op_type, "Shape") == 0) continue;
        if (found >= 0 && found != ni) return -1;
        found = ni;
    }
    return found;
}

int plan_shape_same(const plan_shape *a, const plan_shape *b) {
    if (a->rank < 0 || a->rank != b->rank || a->dtype != MHA_DTYPE_FLOAT32 ||
        b->dtype != MHA_DTYPE_FLOAT32)
        return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        if (memcmp(a->dims[p], b->dims[p], sizeof(int64_t) * (size_t)a->rank) != 0) return 0;
    return 1;
}

/* How many nodes plan_shape_reads_end_at follows from one value before it
 * gives up (and answers no). */
#define USES_SHAPE_WALK 64

int plan_shape_reads_end_at(const plan *P, const plan_uses *u, int v, int stop) {
    const ir_graph *g = P->g;
    int seen[USES_SHAPE_WALK], todo[USES_SHAPE_WALK];
    int n_seen = 0, n_todo = 0;
    if (v < 0) return 1;
    for (int e = u->first[v]; e < u->first[v + 1]; e++) {
        const ir_node *n = &g->nodes[u->node[e]];
        if (strcmp(n->op_type, "Shape") != 0 && strcmp(n->op_type, "Size") != 0) continue;
        if (n_todo == USES_SHAPE_WALK) return 0;
        todo[n_todo++] = u->node[e];
    }
    while (n_todo > 0) {
        const int ni = todo[--n_todo];
        int known = ni == stop;
        for (int s = 0; s < n_seen && !known; s++)
            known = seen[s] == ni;
        if (known) continue;
        if (n_seen == USES_SHAPE_WALK) return 0;
        seen[n_seen++] = ni;
        const ir_node *n = &g->nodes[ni];
        for (size_t o = 0; o < n->n_outputs; o++) {
            const int w = n->outputs[o];
            if (w < 0) continue;
            if (plan_is_output(g, w)) return 0;
            for (int e = u->first[w]; e < u->first[w + 1]; e++) {
                if (n_todo == USES_SHAPE_WALK) return 0;
                todo[n_todo++] = u->node[e];
            }
        }
    }
    return 1;
}
