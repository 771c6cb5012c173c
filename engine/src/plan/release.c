/* release.c -- after a model's first packing, the unpacked weights of its
 * GEMM steps are freed: the packed copy is what runs, and keeping both
 * doubles the model in memory. Only weights nothing else reads (no
 * interpreted node, no graph output) go. A later packing for another
 * backend or precision takes them from a fresh build of the same file,
 * checked against a hash of what was freed (plan_gemm_weights_match). */
#include <string.h>

#include "plan_internal.h"

/* FNV-1a over the bytes of w [K, N]: the identity of a released weight. */
static uint64_t release_hash(const float *w, int64_t K, int64_t N) {
    const unsigned char *p = (const unsigned char *)w;
    size_t n = (size_t)K * (size_t)N * sizeof *w;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The graph value holding the weight of GEMM step pg (its MatMul's or
 * Gemm's second input). */
static int release_weight_value(const plan *P, const plan_gemm *pg) {
    const ir_node *n = &P->g->nodes[pg->node];
    return n->n_inputs >= 2 ? n->inputs[1] : -1;
}

/* Readers of value v among the nodes still run (not folded, not inside a
 * recognised layer), graph outputs counted as readers. */
static size_t release_readers(const plan *P, const unsigned char *in_layer, int v) {
    const ir_graph *g = P->g;
    size_t n = 0;
    for (size_t k = 0; k < g->n_outputs; k++)
        n += g->outputs[k] == v;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *nd = &g->nodes[ni];
        if (in_layer[ni] || plan_node_folded(P, nd)) continue;
        for (size_t k = 0; k < nd->n_inputs; k++)
            n += nd->inputs[k] == v;
    }
    return n;
}

size_t plan_release_gemm_weight(plan *P, size_t i) {
    ir_graph *g = P->g;
    plan_gemm *pg = &P->gemms[i];
    int v = release_weight_value(P, pg);
    if (!pg->W || v < 0) return 0;
    unsigned char *in_layer = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    if (!in_layer) return 0; /* keeping it is always correct */
    for (size_t li = 0; li < P->n_layers; li++)
        for (size_t k = 0; P->layers[li].recognised && k < P->layers[li].n_nodes; k++)
            in_layer[P->layers[li].nodes[k]] = 1;
    size_t readers = release_readers(P, in_layer, v);
    mha_free(&P->alloc, in_layer);
    tensor **holder = g->values[v].init ? &g->values[v].init : &P->consts[v];
    if (readers != 1 || !*holder) return 0;
    pg->w_hash = release_hash(pg->W, pg->K, pg->N);
    size_t freed = (size_t)pg->K * (size_t)pg->N * sizeof(float);
    if (pg->W_owned) { /* a transposed copy, and the value it came from */
        mha_free(&P->alloc, pg->W_owned);
        pg->W_owned = NULL;
        freed += (*holder)->nbytes;
    }
    tensor_free(*holder);
    *holder = NULL;
    pg->W = NULL;
    return freed;
}

int plan_gemm_weights_match(const plan *P, const plan *fresh) {
    if (!fresh || fresh->n_gemms != P->n_gemms) return 0;
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *a = &P->gemms[i], *b = &fresh->gemms[i];
        if (a->K != b->K || a->N != b->N || a->node != b->node || !b->W) return 0;
        if (!a->W && a->w_hash != release_hash(b->W, b->K, b->N)) return 0;
    }
    return 1;
}
