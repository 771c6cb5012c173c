/* release.c -- after a model's first packing, the unpacked weights of its
 * GEMM steps and attention layers are freed: the packed copy is what runs,
 * and keeping both doubles the model in memory. Only weights nothing else
 * reads (no interpreted node, no graph output; no attention-weights output
 * computed from a layer's own W_q, W_k) go. A later packing for another
 * backend or precision takes them from a fresh build of the same file,
 * checked against a hash of what was freed (plan_weights_match). (At load,
 * partition.c frees each attention layer's initializers as soon as the
 * layer holds its own copy.) */
#include <string.h>

#include "plan_internal.h"

#define RELEASE_HASH_SEED 1469598103934665603ull

/* FNV-1a over the bytes of w [K, N], continuing from h: the identity of a
 * released weight (w NULL adds nothing). */
static uint64_t release_hash_more(uint64_t h, const float *w, int64_t K, int64_t N) {
    const unsigned char *p = (const unsigned char *)w;
    size_t n = w ? (size_t)K * (size_t)N * sizeof *w : 0;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t release_hash(const float *w, int64_t K, int64_t N) {
    return release_hash_more(RELEASE_HASH_SEED, w, K, N);
}

/* The projection weights of L in a fixed order, with their [rows, cols]:
 * W_q [d_model, Hq*dk], W_k [d_kv, Hkv*dk], W_v [d_kv, Hkv*dv],
 * W_o [Hq*dv, d_out]. */
static void release_layer_parts(layer *L, float ***w, int64_t (*rc)[2]) {
    const int64_t dk = L->d_head, dv = layer_dv(L), d_kv = L->cross ? L->d_kv : L->d_model;
    w[0] = &L->wq;
    w[1] = &L->wk;
    w[2] = &L->wv;
    w[3] = &L->wo;
    rc[0][0] = L->d_model, rc[0][1] = L->q_heads * dk;
    rc[1][0] = d_kv, rc[1][1] = L->kv_heads * dk;
    rc[2][0] = L->d_v_in > 0 ? L->d_v_in : d_kv, rc[2][1] = L->kv_heads * dv;
    rc[3][0] = L->q_heads * dv, rc[3][1] = layer_dout(L);
}

static uint64_t release_layer_hash(const layer *L) {
    float **w[4];
    int64_t rc[4][2];
    release_layer_parts((layer *)L, w, rc);
    uint64_t h = RELEASE_HASH_SEED;
    for (int k = 0; k < 4; k++)
        h = release_hash_more(h, *w[k], rc[k][0], rc[k][1]);
    return h;
}

size_t plan_release_layer_weights(plan *P, size_t i) {
    plan_layer *pl = &P->layers[i];
    layer *L = &pl->L;
    /* the attention-weights output projects Q and K itself (exec_ext.c) */
    if (!pl->recognised || !L->has_proj || L->need_weights || pl->w_released) return 0;
    float **w[4];
    int64_t rc[4][2];
    release_layer_parts(L, w, rc);
    pl->w_hash = release_layer_hash(L);
    size_t freed = 0;
    for (int k = 0; k < 4; k++) {
        if (!*w[k]) continue;
        freed += (size_t)rc[k][0] * (size_t)rc[k][1] * sizeof(float);
        mha_free(&P->alloc, *w[k]);
        *w[k] = NULL;
    }
    pl->w_released = 1;
    return freed;
}

/* The graph value holding the weight of GEMM step pg (its MatMul's or
 * Gemm's second input). */
static int release_weight_value(const plan *P, const plan_gemm *pg) {
    const ir_node *n = &P->g->nodes[pg->node];
    return n->n_inputs >= 2 ? n->inputs[1] : -1;
}

/* Readers of value v among the nodes still run (not folded, not inside a
 * recognised layer, not dropped as dead), graph outputs counted as
 * readers. */
static size_t release_readers(const plan *P, const unsigned char *in_layer, int v) {
    const ir_graph *g = P->g;
    size_t n = 0;
    for (size_t k = 0; k < g->n_outputs; k++)
        n += g->outputs[k] == v;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *nd = &g->nodes[ni];
        if (in_layer[ni] || plan_node_folded(P, nd) || (P->dead && P->dead[ni])) continue;
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
    /* a value read elsewhere too (a tied embedding table: a Gather reads
     * it, a Gemm with transB reads it transposed) stays; the step's own
     * transposed copy, packed now, goes all the same */
    if (!*holder || (readers != 1 && !pg->W_owned)) return 0;
    pg->w_hash = release_hash(pg->W, pg->K, pg->N);
    size_t freed = (size_t)pg->K * (size_t)pg->N * sizeof(float);
    const int owned = pg->W_owned != NULL;
    mha_free(&P->alloc, pg->W_owned);
    pg->W_owned = NULL;
    if (readers == 1) {
        if (owned) freed += (*holder)->nbytes; /* the value the copy came from */
        tensor_free(*holder);
        *holder = NULL;
    }
    pg->W = NULL;
    return freed;
}

/* The layer's shape as the packing reads it. */
static int release_same_layer(const layer *a, const layer *b) {
    return a->has_proj == b->has_proj && a->cross == b->cross &&
           a->k_from_query == b->k_from_query && a->d_v_in == b->d_v_in &&
           a->d_model == b->d_model && a->d_kv == b->d_kv && a->q_heads == b->q_heads &&
           a->kv_heads == b->kv_heads && a->d_head == b->d_head && layer_dv(a) == layer_dv(b) &&
           layer_dout(a) == layer_dout(b);
}

int plan_weights_match(const plan *P, const plan *fresh) {
    if (!fresh || fresh->n_gemms != P->n_gemms || fresh->n_layers != P->n_layers) return 0;
    for (size_t i = 0; i < P->n_layers; i++) {
        const plan_layer *a = &P->layers[i], *b = &fresh->layers[i];
        if (!a->w_released) continue;
        if (!b->recognised || a->core_node != b->core_node || !release_same_layer(&a->L, &b->L) ||
            !b->L.wq || a->w_hash != release_layer_hash(&b->L))
            return 0;
    }
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *a = &P->gemms[i], *b = &fresh->gemms[i];
        if (a->K != b->K || a->N != b->N || a->node != b->node || !b->W) return 0;
        if (!a->W && a->w_hash != release_hash(b->W, b->K, b->N)) return 0;
    }
    return 1;
}
