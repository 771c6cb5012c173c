/* partition.c -- carving each attention layer out of a whole graph.
 *
 * For each attention core (a Softmax, an Attention node):
 *   Y = the output of its output projection: forward from the core through
 *       layout ops and the P.V MatMul to the first MatMul / Gemm with a
 *       constant weight, plus its bias Add (and the Reshape of flat
 *       [S * B, D] rows back to [S, B, D] that follows it);
 *   X = the data input of its input projections: backward from the core
 *       (Shape / Size not followed) to the MatMuls / Gemms with constant
 *       weights (one X for self attention, two for cross attention);
 *   nodes = ancestors of Y that descend from X (Shape of X included) or
 *       are computable from constants alone; inputs = X plus every other
 *       value those nodes read from outside (a mask prepared once for all
 *       layers, a position bias handed from layer to layer).
 * The nodes become a graph of their own, handed to the existing layer
 * recogniser and verifier unchanged; a layer they refuse stays with the
 * interpreter, with the reason kept for `mha info`. */
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

/* Longest walk from a core to its output projection. */
#define PART_MAX_WALK 64

typedef struct part_ctx {
    plan *P;
    const plan_uses *u;
    const plan_shape *shp;
    unsigned char *mark; /* [n_values] scratch */
    int *stack;          /* [n_values] scratch */
    int *owner;          /* [n_nodes]: recognised layer owning the node, -1 */
    int *shape_of;       /* [n_nodes]: the X a Shape node of the last carved layer reads
                            instead of its own input (part_same_shape), else -1 */
    char why_buf[200];   /* a refusal naming values and nodes */
    mha_error *err;
} part_ctx;

static int part_is(const ir_node *n, const char *op) {
    return strcmp(n->op_type, op) == 0;
}

static int part_is_shape(const ir_node *n) {
    return part_is(n, "Shape") || part_is(n, "Size");
}

static int part_is_core(const ir_node *n) {
    if (strcmp(n->domain, "com.microsoft") == 0)
        return part_is(n, "Attention") || part_is(n, "MultiHeadAttention");
    if (n->domain[0] != '\0' && strcmp(n->domain, "ai.onnx") != 0) return 0;
    return part_is(n, "Softmax") || part_is(n, "Attention");
}

size_t plan_count_cores(const ir_graph *g) {
    size_t n = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        n += part_is_core(&g->nodes[i]) != 0;
    return n;
}

/* How far (nodes of data flow) a Softmax's probabilities are followed to
 * the P.V product, and how many values at once. */
#define PART_PV_DEPTH 6
#define PART_PV_WIDTH 16

/* Whether the Softmax `core` weighs values: its probabilities reach, within
 * PART_PV_DEPTH nodes, a MatMul or Einsum whose other operand is not a
 * constant (P.V). A mixture-of-experts router's softmax over its experts
 * (TopK after it) and a head's output probabilities do not: they are nodes
 * of the graph, not attention layers. Other cores weigh values. */
static int part_weighs_values(const part_ctx *c, int core) {
    const ir_graph *g = c->P->g;
    const ir_node *cn = &g->nodes[core];
    if (!part_is(cn, "Softmax")) return 1;
    int frontier[PART_PV_WIDTH], next[PART_PV_WIDTH], nf = 0;
    if (cn->n_outputs >= 1 && cn->outputs[0] >= 0) frontier[nf++] = cn->outputs[0];
    for (int depth = 0; depth < PART_PV_DEPTH && nf > 0; depth++) {
        int nn = 0;
        for (int f = 0; f < nf; f++) {
            const int v = frontier[f];
            for (int k = c->u->first[v]; k < c->u->first[v + 1]; k++) {
                const ir_node *n = &g->nodes[c->u->node[k]];
                const int product = part_is(n, "MatMul") || part_is(n, "Einsum");
                for (size_t i = 0; product && i < n->n_inputs; i++)
                    if (n->inputs[i] >= 0 && n->inputs[i] != v && !plan_const(c->P, n->inputs[i]))
                        return 1;
                if (product || part_is_shape(n)) continue;
                for (size_t o = 0; o < n->n_outputs && nn < PART_PV_WIDTH; o++)
                    if (n->outputs[o] >= 0) next[nn++] = n->outputs[o];
            }
        }
        memcpy(frontier, next, (size_t)nn * sizeof *next);
        nf = nn;
    }
    return 0;
}

/* How far (nodes of data flow) back a Softmax's scores are followed to
 * the product that made them, and how many values at once. */
#define PART_QK_DEPTH 8
#define PART_QK_WIDTH 16

/* Whether node n multiplies two values the graph computes (Q.K^T): a
 * MatMul, Einsum or com.microsoft FusedMatMul with two inputs that are
 * not constants, or a ReduceSum of such an elementwise Mul. */
static int part_is_act_product(const plan *P, const ir_node *n) {
    const ir_graph *g = P->g;
    if (part_is(n, "ReduceSum") && n->n_inputs >= 1 && n->inputs[0] >= 0) {
        const int pid = g->values[n->inputs[0]].producer;
        if (pid < 0 || !part_is(&g->nodes[pid], "Mul")) return 0;
        n = &g->nodes[pid];
    } else if (!part_is(n, "MatMul") && !part_is(n, "Einsum") && !part_is(n, "FusedMatMul")) {
        return 0;
    }
    int acts = 0;
    for (size_t i = 0; i < n->n_inputs && i < 2; i++)
        acts += n->inputs[i] >= 0 && !plan_const(P, n->inputs[i]);
    return acts == 2;
}

/* Whether the scores of the Softmax `core` come from a product of two
 * computed values (Q.K^T), within PART_QK_DEPTH nodes back through any
 * ops but products and shape reads: an attention layer. ConvBERT's
 * dynamic convolution weighs its unfolded values by a Softmax over a
 * Linear of the activations (a product with a constant weight): a node
 * of the graph, not an attention layer. Other cores pass. */
static int part_scores_of_product(const part_ctx *c, int core) {
    const ir_graph *g = c->P->g;
    const ir_node *cn = &g->nodes[core];
    if (!part_is(cn, "Softmax")) return 1;
    int frontier[PART_QK_WIDTH], next[PART_QK_WIDTH], nf = 0;
    if (cn->n_inputs >= 1 && cn->inputs[0] >= 0) frontier[nf++] = cn->inputs[0];
    for (int depth = 0; depth < PART_QK_DEPTH && nf > 0; depth++) {
        int nn = 0;
        for (int f = 0; f < nf; f++) {
            const int pid = g->values[frontier[f]].producer;
            if (pid < 0 || plan_const(c->P, frontier[f])) continue;
            const ir_node *n = &g->nodes[pid];
            if (part_is_act_product(c->P, n)) return 1;
            if (part_is(n, "MatMul") || part_is(n, "Einsum") || part_is(n, "FusedMatMul") ||
                part_is(n, "Gemm") || part_is_shape(n))
                continue;
            for (size_t i = 0; i < n->n_inputs && nn < PART_QK_WIDTH; i++)
                if (n->inputs[i] >= 0 && !plan_const(c->P, n->inputs[i])) next[nn++] = n->inputs[i];
        }
        memcpy(frontier, next, (size_t)nn * sizeof *next);
        nf = nn;
    }
    return 0;
}

/* A MatMul / Gemm reading `v` as data and a constant as weights. */
static int part_is_proj(const plan *P, const ir_node *n, int v) {
    return (part_is(n, "MatMul") || part_is(n, "Gemm")) && n->n_inputs >= 2 && n->inputs[0] == v &&
           plan_const(P, n->inputs[1]) != NULL;
}

/* The single consumer of v that reads its data (Shape / Size aside), or -1. */
static int part_data_consumer(const part_ctx *c, int v, int *count) {
    int found = -1;
    *count = 0;
    for (int k = c->u->first[v]; k < c->u->first[v + 1]; k++) {
        const ir_node *n = &c->P->g->nodes[c->u->node[k]];
        if (part_is_shape(n)) continue;
        if (found != c->u->node[k]) (*count)++;
        found = c->u->node[k];
    }
    return found;
}

/* nn.MultiheadAttention projects its output as a Gemm over [S * B, D] rows
 * and reshapes them back to [S, B, D] after: a layer ending in the flat rows
 * has no token axis for the recogniser to see (its sequence-first form needs
 * a 3-D output), so Y takes in that Reshape. */
static int part_unflatten_y(const part_ctx *c, int y) {
    int count;
    if (c->shp[y].rank != 2 || plan_is_output(c->P->g, y)) return y;
    int ni = part_data_consumer(c, y, &count);
    if (ni < 0 || count != 1) return y;
    const ir_node *n = &c->P->g->nodes[ni];
    if (!part_is(n, "Reshape") || n->inputs[0] != y || n->n_outputs < 1 || n->outputs[0] < 0)
        return y;
    return c->shp[n->outputs[0]].rank == 3 ? n->outputs[0] : y;
}

/* Hugging Face's GPT-2 (its Conv1D) projects with addmm: a Gemm over the
 * rows flattened by a Reshape of [B, S, D] to [B * S, D]. The flat rows
 * have no token axis for the recogniser, and the Reshape's target shape is
 * computed from the Shape of the 3-D value: X is that 3-D value, so the
 * Reshape (and the Shape it reads) are inside the layer. */
static int part_flat_x(const part_ctx *c, int x) {
    const ir_graph *g = c->P->g;
    int p = g->values[x].producer;
    if (c->shp[x].rank != 2 || p < 0) return x;
    const ir_node *n = &g->nodes[p];
    if (!(part_is(n, "Reshape") || part_is(n, "Flatten")) || n->n_inputs < 1 || n->inputs[0] < 0)
        return x;
    const plan_shape *in = &c->shp[n->inputs[0]];
    for (int k = 0; k < PLAN_PROBES; k++)
        if (in->rank != 3 || in->dims[k][2] != c->shp[x].dims[k][1] ||
            in->dims[k][0] * in->dims[k][1] != c->shp[x].dims[k][0])
            return x;
    return n->inputs[0];
}

/* Forward from the core to Y; *pv is the P.V MatMul (Softmax cores). */
/* An activation no layer form has inside it (one data input, the shape
 * kept): LeViT's hard swish between the merged heads and the projection. */
static int part_is_activation(const ir_node *n) {
    static const char *const acts[] = {"HardSwish", "HardSigmoid", "Relu", "LeakyRelu", "Gelu"};
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++)
        if (part_is(n, acts[k])) return 1;
    return 0;
}

static int part_find_y(part_ctx *c, int core, int *pv, const char **why) {
    const plan *P = c->P;
    const ir_node *cn = &P->g->nodes[core];
    int v = cn->n_outputs ? cn->outputs[0] : -1;
    int passed_pv = !part_is(cn, "Softmax");
    *pv = -1;
    for (int step = 0; step < PART_MAX_WALK && v >= 0; step++) {
        int count;
        int ni = part_data_consumer(c, v, &count);
        if (plan_is_output(P->g, v) || count != 1) {
            *why = "the attention output does not go through a single chain to an output "
                   "projection";
            return -1;
        }
        const ir_node *n = &P->g->nodes[ni];
        /* an activation after P.V (LeViT's hard swish), or a Concat of
         * this head's context with other heads' (each head a module of its
         * own, its own softmax): the layer ends at its input (no projection
         * of its own: the identity), and what follows, the projection too,
         * are steps of the plan */
        if (passed_pv && ((part_is_activation(n) && n->n_inputs == 1) || part_is(n, "Concat")))
            return v;
        if (part_is_proj(P, n, v)) {
            int y = n->outputs[0], add_count;
            int add = y >= 0 ? part_data_consumer(c, y, &add_count) : -1;
            if (part_is(n, "MatMul") && add >= 0 && add_count == 1 && !plan_is_output(P->g, y)) {
                const ir_node *an = &P->g->nodes[add];
                if (part_is(an, "Add") && an->n_inputs == 2 &&
                    plan_const(P, an->inputs[an->inputs[0] == y ? 1 : 0]) != NULL)
                    y = an->outputs[0];
            }
            return part_unflatten_y(c, y);
        }
        /* P.V as a MatMul, or an Einsum of the two (CvT's
         * 'bhlt,bhtv->bhlv'): its second input is V's path */
        if ((part_is(n, "MatMul") || (part_is(n, "Einsum") && n->n_inputs == 2)) && !passed_pv &&
            n->inputs[0] == v) {
            passed_pv = 1;
            *pv = ni;
        } else if (part_is(n, "MatMul") || part_is(n, "Gemm") || part_is_core(n) ||
                   n->n_outputs < 1) {
            *why = "no output projection (MatMul or Gemm with constant weights) after the "
                   "attention";
            return -1;
        }
        v = n->outputs[0];
    }
    *why = "no output projection found after the attention";
    return -1;
}

/* The most data inputs a layer's projections read: the query's, the key's
 * and the value's (DETR's cross-attention: tgt + query_pos, memory + pos,
 * memory). */
#define PART_MAX_X 3

/* Whether v is one of the layer's data inputs x[0..nx). */
static int part_is_x(const int *x, int nx, int v) {
    for (int i = 0; i < nx; i++)
        if (x[i] == v) return 1;
    return 0;
}

/* Backward from the core to the data inputs of its input projections. */
static int part_find_x(part_ctx *c, int core, int pv, int x[PART_MAX_X], const char **why) {
    const plan *P = c->P;
    const ir_graph *g = P->g;
    const ir_node *cn = &g->nodes[core];
    int nx = 0, top = 0;
    memset(c->mark, 0, g->n_values);
    if (strcmp(cn->domain, "com.microsoft") == 0 && part_is(cn, "Attention")) {
        /* the projections are inside the node */
        x[0] = cn->inputs[0];
        return 1;
    }
    for (size_t k = 0; k < cn->n_inputs; k++)
        if (cn->inputs[k] >= 0) c->stack[top++] = cn->inputs[k];
    if (pv >= 0 && g->nodes[pv].inputs[1] >= 0) c->stack[top++] = g->nodes[pv].inputs[1];
    while (top > 0) {
        int v = c->stack[--top];
        if (c->mark[v]) continue;
        c->mark[v] = 1;
        const ir_value *val = &g->values[v];
        if (plan_const(P, v) || val->producer < 0) continue;
        const ir_node *n = &g->nodes[val->producer];
        if (part_is_shape(n)) continue;
        if (part_is_core(n)) {
            *why = "its inputs come from another attention core without a projection between";
            return 0;
        }
        if (n->n_inputs >= 1 && part_is_proj(P, n, n->inputs[0])) {
            int in = part_flat_x(c, n->inputs[0]), seen = part_is_x(x, nx, in);
            if (!seen && nx == PART_MAX_X) {
                *why = "its projections read more than three inputs";
                return 0;
            }
            if (!seen) x[nx++] = in;
            continue;
        }
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && !c->mark[n->inputs[k]] && top < (int)g->n_values)
                c->stack[top++] = n->inputs[k];
    }
    if (nx == 0) *why = "no input projection (MatMul or Gemm with constant weights) before it";
    return nx;
}

/* Whether node n of the last carved layer computes from X's data (not
 * only its shape, not only constants): those the attention step replaces. */
static int part_reads_data(const part_ctx *c, const ir_node *n) {
    return n->n_outputs > 0 && n->outputs[0] >= 0 && (c->mark[n->outputs[0]] & 4) != 0;
}

/* A graph of the layer's nodes alone; arrays owned, contents borrowed. */
static void part_sub_free(const mha_alloc_ctx *a, ir_graph *s) {
    mha_free(a, s->values);
    mha_free(a, s->nodes);
    mha_free(a, s->inputs);
    mha_free(a, s->outputs);
}

/* Declared type of a boundary value from the probes: an axis whose size
 * differs between them is dynamic. */
static void part_declare(const plan_shape *sh, ir_value *v) {
    v->dtype = sh->dtype;
    v->rank = sh->rank;
    for (int d = 0; d < MHA_MAX_RANK; d++) {
        v->dim_params[d] = NULL;
        v->dims[d] = 0;
    }
    for (int d = 0; d < sh->rank; d++)
        v->dims[d] = sh->dims[0][d] == sh->dims[1][d] ? sh->dims[0][d] : -1;
}

/* Whether v has x's shape at every probe. A block written as
 * `b, s, _ = x.shape; h = norm(x); q = proj(h).view(b, s, heads, d)` reads
 * the shape of the residual stream, a value outside the layer, where the
 * layer's X is h: the two always agree (the plan is verified at load). */
static int part_same_shape(const part_ctx *c, int v, int x) {
    const plan_shape *a = &c->shp[v], *b = &c->shp[x];
    if (a->rank < 1 || a->rank != b->rank) return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        for (int d = 0; d < a->rank; d++)
            if (a->dims[p][d] != b->dims[p][d]) return 0;
    return 1;
}

/* Whether Shape node `sn` of a value v outside the layer may read X's shape
 * instead: v has X's shape at every probe, or every reader of its output
 * that is not folded is a Gather of constant indices picking only axes on
 * which v and X agree at every probe (DeiT's `b` read from the patch
 * tokens, [B, 16, D], beside X [B, 18, D]). */
static int part_same_read_shape(const part_ctx *c, const ir_node *sn, int x) {
    const int v = sn->inputs[0], s = sn->outputs[0];
    if (part_same_shape(c, v, x)) return 1;
    const plan_shape *a = &c->shp[v], *b = &c->shp[x];
    if (s < 0 || a->rank < 1 || b->rank < 1 || sn->n_attrs > 0) return 0;
    const ir_graph *g = c->P->g;
    int readers = 0;
    for (int u = c->u->first[s]; u < c->u->first[s + 1]; u++) {
        const ir_node *n = &g->nodes[c->u->node[u]];
        if (n->n_outputs > 0 && n->outputs[0] >= 0 && plan_const(c->P, n->outputs[0])) continue;
        const tensor *idx = n->n_inputs == 2 ? plan_const(c->P, n->inputs[1]) : NULL;
        if (!part_is(n, "Gather") || n->inputs[0] != s || ir_attr_int(n, "axis", 0) != 0 || !idx ||
            (idx->dtype != MHA_DTYPE_INT64 && idx->dtype != MHA_DTYPE_INT32))
            return 0;
        for (int64_t k = 0, nk = tensor_numel(idx); k < nk; k++) {
            int64_t d = tensor_get_i64(idx, k);
            d = d < 0 ? d + a->rank : d;
            if (d < 0 || d >= a->rank || d >= b->rank) return 0;
            for (int p = 0; p < PLAN_PROBES; p++)
                if (a->dims[p][d] != b->dims[p][d]) return 0;
        }
        readers++;
    }
    return readers > 0;
}

/* Whether every input of node p is known at load (a constant folded from
 * the shape of data is not: its producer reads a Shape of a value). */
static int plan_node_inputs_const(const plan *P, int p) {
    const ir_node *n = &P->g->nodes[p];
    for (size_t k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0 && !plan_const(P, n->inputs[k])) return 0;
    return 1;
}

/* Input k of node ni as the layer's graph reads it. */
static int part_input(const part_ctx *c, size_t ni, size_t k) {
    return c->shape_of[ni] >= 0 ? c->shape_of[ni] : c->P->g->nodes[ni].inputs[k];
}

/* Whether every reader of v is a node of the layer (in_set). */
static int part_read_inside(const part_ctx *c, const unsigned char *in_set, int v) {
    for (int e = c->u->first[v]; e < c->u->first[v + 1]; e++)
        if (!in_set[c->u->node[e]]) return 0;
    return c->u->first[v + 1] > c->u->first[v] && !plan_is_output(c->P->g, v);
}

/* A layer input (bound[nx..]) that is a Transpose of a graph input, read by
 * the layer alone -- the keys of a cached cross-attention given as
 * [B, H, T, d] and transposed to K^T outside the nodes that descend from X
 * -- becomes that graph input, the Transposes nodes of the layer: the
 * recogniser then sees the cache in its own layout. */
static void part_take_input_layouts(part_ctx *c, unsigned char *in_set, int *bound, size_t *nb,
                                    int nx) {
    const ir_graph *g = c->P->g;
    for (size_t i = (size_t)nx; i < *nb; i++) {
        int v = bound[i], hops = 0;
        for (int p = g->values[v].producer; p >= 0 && hops < 4; p = g->values[v].producer) {
            const ir_node *n = &g->nodes[p];
            if (!part_is(n, "Transpose") || n->n_inputs != 1 || n->inputs[0] < 0 ||
                plan_const(c->P, n->inputs[0]) || !part_read_inside(c, in_set, v))
                break;
            v = n->inputs[0];
            hops++;
        }
        if (hops == 0 || g->values[v].producer >= 0 || g->values[v].graph_input < 0) continue;
        int seen = 0;
        for (size_t j = 0; j < *nb; j++)
            seen |= bound[j] == v;
        for (int w = bound[i]; w != v; w = g->nodes[g->values[w].producer].inputs[0]) {
            in_set[g->values[w].producer] = 1;
            c->mark[w] |= 1 | 2 | 4; /* computed from the layer's data, inside */
        }
        if (seen) /* the same input taken twice: once is enough */
            bound[i--] = bound[--*nb];
        else
            bound[i] = v;
    }
}

/* Carves the layer of core `core` into pl and its nodes into in_set[]. */
/* A refused layer with an activation inside it, after its core (LeViT's
 * hard swish between the merged heads and the output projection): no
 * layer form has one there, so the reason says that rather than the first
 * value found read outside. */
static void part_explain_activation(part_ctx *c, const unsigned char *in_set, int core,
                                    const char **why) {
    const ir_graph *g = c->P->g;
    for (size_t ni = (size_t)core + 1; ni < g->n_nodes; ni++)
        if (in_set[ni] && part_is_activation(&g->nodes[ni])) {
            char d[160];
            snprintf(c->why_buf, sizeof c->why_buf,
                     "%.80s between the attention's context and its output projection (no "
                     "layer form has an activation there)",
                     ir_node_desc(&g->nodes[ni], d, sizeof d));
            *why = c->why_buf;
            return;
        }
}

static mha_status part_carve(part_ctx *c, int core, plan_layer *pl, unsigned char *in_set,
                             ir_graph *sub, const char **why) {
    plan *P = c->P;
    const ir_graph *g = P->g;
    const mha_alloc_ctx *a = &P->alloc;
    int pv, x[PART_MAX_X];
    int y = part_find_y(c, core, &pv, why);
    if (y < 0) return MHA_OK;
    int nx = part_find_x(c, core, pv, x, why);
    if (nx == 0) return MHA_OK;
    /* descendants of X (bit 1); those that read its data, not only its
     * shape (bit 4): the shape-only ones may be read outside the layer too,
     * so they stay interpreted steps as well. Bit 8: computed from the
     * shape of values shaped as X (and constants) alone, taken in as if
     * from X's (part_same_shape); it spreads to nothing else, so the data
     * of another layer shaped by such sizes stays outside. Bit 32 (cleared
     * after): computed after another attention core, so outside this layer
     * whatever it descends from -- DETR's decoder reads the memory in every
     * cross-attention, and the next layer's state, computed from the
     * memory through this one, is then the data of neither (the shape of
     * that state is read as X's, not carved with the layer before); its
     * shape is still read as the shape of a value outside. */
    unsigned char *dsc = c->mark;
    memset(dsc, 0, g->n_values);
    for (int i = 0; i < nx; i++)
        dsc[x[i]] = 1 | 4;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        unsigned char any = 0;
        int shape8 = 0, foreign = 0, after_core = 0;
        c->shape_of[ni] = -1;
        for (size_t k = 0; k < n->n_inputs; k++) {
            int v = n->inputs[k];
            if (v < 0) continue;
            any |= dsc[v] & (1 | 4);
            shape8 |= (dsc[v] & 8) != 0;
            foreign |= !(dsc[v] & ~32) && !plan_const(P, v);
            after_core |= (dsc[v] & 32) != 0;
        }
        if ((after_core && !part_is_shape(n)) ||
            ((int)ni != core && part_is_core(n) && part_weighs_values(c, (int)ni))) {
            for (size_t k = 0; k < n->n_outputs; k++)
                if (n->outputs[k] >= 0 && !part_is_x(x, nx, n->outputs[k])) dsc[n->outputs[k]] = 32;
            continue;
        }
        /* the shape of X itself is known outside the layer; the shape of
         * a value inside is not */
        if (part_is_shape(n) && n->n_inputs == 1 && part_is_x(x, nx, n->inputs[0])) any &= 1;
        /* the shape of a value outside that has X's shape is read from X
         * (bit 8), and so is what is computed from such shapes and
         * constants alone -- not a node reading other data outside (an
         * earlier layer reshaping its own values by the same shape) */
        if (part_is_shape(n) && n->n_inputs == 1 && n->inputs[0] >= 0 && !any)
            for (int i = 0; i < nx && c->shape_of[ni] < 0; i++)
                if (part_same_read_shape(c, n, x[i])) c->shape_of[ni] = x[i];
        if (c->shape_of[ni] >= 0 || (!any && shape8 && !foreign)) any = 8;
        for (size_t k = 0; any && k < n->n_outputs; k++)
            if (n->outputs[k] >= 0) dsc[n->outputs[k]] = any;
    }
    /* Y computed after another core (LED's local and global attentions
     * merged row by row, BigBird's block contexts concatenated, before one
     * output projection): the layer would be carved empty */
    if (!(dsc[y] & (1 | 8))) {
        *why = dsc[y] & 32 ? "its output projection also reads another attention core's output "
                             "(attentions merged before one projection)"
                           : "its output projection reads nothing computed from its inputs";
        return MHA_OK;
    }
    for (size_t v = 0; v < g->n_values; v++)
        dsc[v] &= (unsigned char)~32;
    /* ancestors of Y among them (or constant); 2 marks "visited" */
    int *bound = mha_calloc(a, g->n_values ? g->n_values : 1, sizeof *bound);
    if (!bound) return mha_fail(c->err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    size_t nb = 0;
    for (int i = 0; i < nx; i++)
        bound[nb++] = x[i];
    int top = 0;
    c->stack[top++] = y;
    while (top > 0) {
        int v = c->stack[--top];
        if (dsc[v] & 2) continue;
        dsc[v] |= 2;
        if (part_is_x(x, nx, v) || g->values[v].init) continue;
        int p = g->values[v].producer;
        if (p >= 0 && P->consts[v] && !(dsc[v] & (1 | 8)) && !plan_node_inputs_const(P, p)) {
            dsc[v] |= 16; /* folded from sizes (shape_fold.c): a constant of the layer */
            continue;
        }
        if (p >= 0 && ((dsc[v] & (1 | 8)) || P->consts[v])) {
            in_set[p] = 1;
            const ir_node *n = &g->nodes[p];
            for (size_t k = 0; k < n->n_inputs; k++) {
                int in = part_input(c, (size_t)p, k);
                if (in >= 0 && !(dsc[in] & 2) && top < (int)g->n_values) c->stack[top++] = in;
            }
        } else {
            bound[nb++] = v;
        }
    }
    part_take_input_layouts(c, in_set, bound, &nb, nx);
    /* nothing computed inside may be needed outside, but Y -- and graph
     * outputs nothing else reads, up to two: the sub-graph gives them
     * back too, and the recogniser takes them as the present keys and
     * values of a cache or refuses the layer */
    mha_status st = MHA_OK;
    pl->n_extra = 0;
    for (size_t ni = 0; ni < g->n_nodes && !*why; ni++) {
        if (!in_set[ni]) continue;
        const ir_node *n = &g->nodes[ni];
        if (c->owner[ni] >= 0 && part_reads_data(c, n))
            *why = "its nodes overlap another attention layer";
        for (size_t k = 0; k < n->n_outputs && !*why; k++) {
            int o = n->outputs[k];
            if (o < 0 || o == y || !(dsc[o] & 4)) continue;
            if (plan_is_output(g, o) && pl->n_extra == PLAN_LAYER_MAX_EXTRA)
                *why = "a value inside it is a graph output";
            else if (plan_is_output(g, o))
                pl->extra_out[pl->n_extra++] = o;
            for (int e = c->u->first[o]; e < c->u->first[o + 1] && !*why; e++)
                if (!in_set[c->u->node[e]]) {
                    char d[160];
                    snprintf(c->why_buf, sizeof c->why_buf,
                             "value '%.60s' inside it is also read by %.80s", g->values[o].name,
                             ir_node_desc(&g->nodes[c->u->node[e]], d, sizeof d));
                    *why = c->why_buf;
                }
        }
    }
    if (*why) {
        part_explain_activation(c, in_set, core, why);
        goto done;
    }
    /* the layer's own graph */
    memset(sub, 0, sizeof *sub);
    sub->alloc = g->alloc;
    sub->opset = g->opset;
    sub->ms_opset = g->ms_opset;
    sub->path = g->path;
    sub->values = mha_calloc(a, g->n_values ? g->n_values : 1, sizeof *sub->values);
    sub->nodes = mha_calloc(a, g->n_nodes ? g->n_nodes : 1, sizeof *sub->nodes);
    sub->inputs = mha_calloc(a, nb ? nb : 1, sizeof *sub->inputs);
    sub->outputs = mha_calloc(a, 1 + PLAN_LAYER_MAX_EXTRA, sizeof *sub->outputs);
    if (!sub->values || !sub->nodes || !sub->inputs || !sub->outputs) {
        st = mha_fail(c->err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        goto done;
    }
    memcpy(sub->values, g->values, g->n_values * sizeof *sub->values);
    sub->n_values = g->n_values;
    for (size_t v = 0; v < g->n_values; v++) {
        sub->values[v].producer = -1;
        sub->values[v].graph_input = -1;
        sub->values[v].init = NULL; /* only what the layer reads, below */
    }
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        if (!in_set[ni]) continue;
        const ir_node *n = &g->nodes[ni];
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0) sub->values[n->inputs[k]].init = g->values[n->inputs[k]].init;
        for (size_t k = 0; k < n->n_outputs; k++)
            if (n->outputs[k] >= 0) sub->values[n->outputs[k]].producer = (int)sub->n_nodes;
        sub->nodes[sub->n_nodes] = *n;
        if (c->shape_of[ni] >= 0) sub->nodes[sub->n_nodes].inputs = &c->shape_of[ni];
        sub->n_nodes++;
    }
    for (size_t v = 0; v < g->n_values; v++)
        if (dsc[v] & 16) sub->values[v].init = (tensor *)P->consts[v]; /* borrowed */
    for (size_t i = 0; i < nb; i++) {
        ir_value *v = &sub->values[bound[i]];
        if (c->shp[bound[i]].rank < 0) {
            *why = "an input of it was not computed by the probe";
            goto done;
        }
        part_declare(&c->shp[bound[i]], v);
        v->graph_input = (int)i;
        v->producer = -1;
        v->init = NULL;
        sub->inputs[sub->n_inputs++] = bound[i];
    }
    part_declare(&c->shp[y], &sub->values[y]);
    sub->outputs[0] = y;
    sub->n_outputs = 1;
    for (size_t k = 0; k < pl->n_extra; k++) {
        if (c->shp[pl->extra_out[k]].rank < 0) {
            *why = "an output of it was not computed by the probe";
            goto done;
        }
        part_declare(&c->shp[pl->extra_out[k]], &sub->values[pl->extra_out[k]]);
        sub->outputs[sub->n_outputs++] = pl->extra_out[k];
    }
    pl->in_values = bound;
    bound = NULL;
    pl->out_value = y;
done:
    mha_free(a, bound);
    return st;
}

/* Whether the step can write L's outputs: Y first, then (n_extra) the
 * present keys and values of its cache. */
static int part_outputs_served(const layer *L, size_t n_extra) {
    if (L->n_outputs != 1 + n_extra || L->outputs[0].role != MHA_ROLE_OUTPUT) return 0;
    for (size_t k = 1; k < L->n_outputs; k++)
        if (L->outputs[k].role != MHA_ROLE_PRESENT_KEY &&
            L->outputs[k].role != MHA_ROLE_PRESENT_VALUE)
            return 0;
    return 1;
}

/* Right after attention layer li was recognised (owner[node] >= 0 for the
 * nodes of recognised layers): frees the initializers that only those
 * nodes read, as the layer holds its own copy of its weights. The load then
 * holds the model's weights once plus one layer, not the graph's weights
 * beside every layer's copy; the whole graph cannot be interpreted after
 * it (plan.keep_graph keeps them). */
static size_t part_release_inputs(plan *P, const plan_uses *u, const int *owner, size_t li) {
    ir_graph *g = P->g;
    size_t freed = 0;
    const plan_layer *pl = &P->layers[li];
    for (size_t k = 0; k < pl->n_nodes; k++) {
        const ir_node *n = &g->nodes[pl->nodes[k]];
        for (size_t j = 0; j < n->n_inputs; j++) {
            int v = n->inputs[j];
            if (v < 0 || !g->values[v].init) continue;
            /* a reader outside every recognised layer (interpreted, a GEMM
             * or norm step, a folded node, a layer not carved yet) keeps it */
            int only_layers = 1;
            for (int e = u->first[v]; e < u->first[v + 1] && only_layers; e++)
                only_layers = owner[u->node[e]] >= 0;
            for (size_t o = 0; o < g->n_outputs && only_layers; o++)
                only_layers = g->outputs[o] != v;
            if (!only_layers) continue;
            freed += g->values[v].init->nbytes;
            tensor_free(g->values[v].init);
            g->values[v].init = NULL;
        }
    }
    return freed;
}

mha_status plan_partition(plan *P, const plan_uses *u, const plan_shape *shp, mha_error *err) {
    const ir_graph *g = P->g;
    const mha_alloc_ctx *a = &P->alloc;
    size_t n_cores = plan_count_cores(g);
    part_ctx c = {P, u, shp, NULL, NULL, NULL, NULL, "", err};
    c.mark = mha_calloc(a, g->n_values ? g->n_values : 1, 1);
    c.stack = mha_calloc(a, g->n_values ? g->n_values : 1, sizeof *c.stack);
    c.owner = mha_calloc(a, g->n_nodes ? g->n_nodes : 1, sizeof *c.owner);
    c.shape_of = mha_calloc(a, g->n_nodes ? g->n_nodes : 1, sizeof *c.shape_of);
    unsigned char *in_set = mha_calloc(a, g->n_nodes ? g->n_nodes : 1, 1);
    P->layers = mha_calloc(a, n_cores ? n_cores : 1, sizeof *P->layers);
    mha_status st = MHA_OK;
    size_t unreturned = 0; /* weight bytes freed since the last trim */
    if (!c.mark || !c.stack || !c.owner || !c.shape_of || !in_set || !P->layers) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        goto done;
    }
    for (size_t ni = 0; ni < g->n_nodes; ni++)
        c.owner[ni] = -1;
    for (size_t core = 0; core < g->n_nodes && st == MHA_OK; core++) {
        if (!part_is_core(&g->nodes[core]) || !part_weighs_values(&c, (int)core) ||
            !part_scores_of_product(&c, (int)core))
            continue;
        plan_layer *pl = &P->layers[P->n_layers++];
        pl->core_node = (int)core;
        pl->out_value = -1;
        pl->norm = -1;
        memset(in_set, 0, g->n_nodes);
        ir_graph sub;
        memset(&sub, 0, sizeof sub);
        const char *why = NULL;
        st = part_carve(&c, (int)core, pl, in_set, &sub, &why);
        if (st == MHA_OK && !why) {
            mha_error e;
            mha_error_clear(&e);
            mha_status rs = layer_recognize(a, &sub, &pl->L, &e);
            /* a whole model's rows of hidden keys give what its graph gives */
            if (rs == MHA_OK)
                pl->L.softmax_nan =
                    pl->L.has_proj && strcmp(g->nodes[core].op_type, "Softmax") == 0;
            if (rs == MHA_OK) rs = layer_verify(a, &sub, &pl->L, &e);
            if (rs == MHA_OK && !part_outputs_served(&pl->L, pl->n_extra)) {
                rs = MHA_ERR_MODEL_UNSUPPORTED;
                snprintf(e.message, sizeof e.message, "%s",
                         pl->n_extra ? "a value inside it is a graph output (not the present "
                                       "keys and values of a cache)"
                                     : "the layer has more than one output");
            }
            if (rs == MHA_ERR_NO_MEMORY) {
                st = mha_fail(err, rs, "%s", e.message);
            } else if (rs != MHA_OK) {
                layer_clear(a, &pl->L);
                snprintf(pl->reason, sizeof pl->reason, "%.250s", e.message);
            } else {
                pl->recognised = 1;
                /* a norm of Q and K before the rotary (per head, or over the
                 * row: "-row"), a mask per window of a batch of windows; a
                 * decoding step writes the present keys and values */
                const layer *L = &pl->L;
                const int qkn = L->qk_norm[0] ? 0 : 1;
                if (L->qk_norm[qkn])
                    snprintf(pl->desc, sizeof pl->desc, "%.20s+qk-%s%s", L->form ? L->form : "",
                             L->qk_norm[qkn] == LAYER_QK_NORM_LAYER ? "layernorm" : "rmsnorm",
                             L->qk_norm_whole[qkn] ? "-row" : "");
                else if (L->bias && L->bias_windows > 1)
                    snprintf(pl->desc, sizeof pl->desc, "%.20s+window-mask",
                             L->form ? L->form : "");
                if (pl->n_extra) {
                    char form[sizeof pl->desc];
                    snprintf(form, sizeof form, "%s",
                             pl->desc[0] ? pl->desc
                             : L->form   ? L->form
                                         : "");
                    snprintf(pl->desc, sizeof pl->desc, "%.36s+kv-cache", form);
                }
            }
        } else if (why) {
            snprintf(pl->reason, sizeof pl->reason, "%s", why);
        }
        part_sub_free(a, &sub);
        if (!pl->recognised) pl->n_extra = 0;
        if (st != MHA_OK || !pl->recognised) continue;
        /* the nodes the step replaces: the layer's, but for constants and
         * shape computations */
        size_t cnt = 0;
        for (size_t ni = 0; ni < g->n_nodes; ni++)
            cnt += in_set[ni] && part_reads_data(&c, &g->nodes[ni]);
        pl->nodes = mha_calloc(a, cnt ? cnt : 1, sizeof *pl->nodes);
        if (!pl->nodes) {
            st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
            continue;
        }
        for (size_t ni = 0; ni < g->n_nodes; ni++)
            if (in_set[ni] && part_reads_data(&c, &g->nodes[ni])) {
                pl->nodes[pl->n_nodes++] = (int)ni;
                c.owner[ni] = (int)(P->n_layers - 1);
            }
        if (!P->keep_graph) unreturned += part_release_inputs(P, u, c.owner, P->n_layers - 1);
        if (unreturned >= MHA_TRIM_AFTER_BYTES) { /* with the recogniser's probe values */
            mha_alloc_trim(a);
            unreturned = 0;
        }
    }
done:
    mha_free(a, c.mark);
    mha_free(a, c.stack);
    mha_free(a, c.owner);
    mha_free(a, c.shape_of);
    mha_free(a, in_set);
    return st;
}
