/* recognize_seqfirst.c -- layer_recognize, the recogniser's entry: the
 * graph read as it is (rz_recognize_once, recognize_layer.c), else as a
 * layer whose data inputs and output are sequence-first, [S, B, D]
 * (nn.MultiheadAttention with its default batch_first=False, fairseq-style
 * code): the graph is viewed through a
 * Transpose(perm 1, 0, 2) after each float [?, ?, D] input and before each
 * float [?, ?, D] output, the view is recognised as a batch-first layer, and
 * the layer is marked seq_first with the inputs' and output's own shapes
 * (the executor reads [S, B, D] through strides). The caller verifies the
 * layer against the original graph, as for any other form.
 *
 * The view borrows the graph's values and nodes (shallow copies): only its
 * arrays, the new values and the Transpose nodes are its own. */
#include <string.h>

#include "recognize_internal.h"

static const int64_t rz_sf_perm[3] = {1, 0, 2};
static char rz_sf_op[] = "Transpose";
static char rz_sf_domain[] = "";
static char rz_sf_perm_name[] = "perm";

typedef struct rz_sf_view {
    ir_graph g;
    ir_attr attr; /* perm = (1, 0, 2), shared by the view's Transpose nodes */
    int *io;      /* value ids the view's nodes read and write: 2 per Transpose */
} rz_sf_view;

static int rz_sf_candidate(const ir_value *v) {
    return v->dtype == MHA_DTYPE_FLOAT32 && v->rank == 3 && v->dims[2] > 0;
}

/* Whether v is computed from initializers and shapes alone
 * (nn.MultiheadAttention slices its K and V weights out of in_proj_weight
 * at offsets read from the query's shape), looking a few nodes up. */
static int rz_sf_constant(const ir_graph *g, int v, int depth) {
    if (v < 0 || g->values[v].graph_input >= 0 || depth > 8) return 0;
    if (g->values[v].init) return 1;
    const int p = g->values[v].producer;
    if (p < 0) return 0;
    if (rz_is_shape_op(&g->nodes[p])) return 1;
    for (size_t k = 0; k < g->nodes[p].n_inputs; k++)
        if (g->nodes[p].inputs[k] >= 0 && !rz_sf_constant(g, g->nodes[p].inputs[k], depth + 1))
            return 0;
    return 1;
}

/* An input the view turns: a float [?, ?, D] whose rows reach a projection
 * (a MatMul / Gemm with a constant weight) through at most a few layout
 * ops -- not a float mask of the same rank ([B * heads, Sq, Skv], made
 * outside a layer exported without dynamic axes). */
static int rz_sf_turned_input(const ir_graph *g, int v) {
    if (!rz_sf_candidate(&g->values[v])) return 0;
    for (int depth = 0; depth < 4; depth++) {
        int next = -1;
        for (size_t ni = 0; ni < g->n_nodes; ni++) {
            const ir_node *n = &g->nodes[ni];
            if (n->n_inputs < 1 || n->inputs[0] != v) continue;
            if ((rz_is_op(n, "MatMul") || rz_is_op(n, "Gemm")) && n->n_inputs >= 2 &&
                rz_sf_constant(g, n->inputs[1], 0))
                return 1;
            if (rz_is_layout_op(n) && n->n_outputs >= 1) next = n->outputs[0];
        }
        if (next < 0) return 0;
        v = next;
    }
    return 0;
}

static void rz_sf_swap(int64_t *dims) {
    const int64_t t = dims[0];
    dims[0] = dims[1];
    dims[1] = t;
}

static void rz_sf_view_free(const mha_alloc_ctx *a, rz_sf_view *w) {
    mha_free(a, w->g.values);
    mha_free(a, w->g.nodes);
    mha_free(a, w->g.inputs);
    mha_free(a, w->g.outputs);
    mha_free(a, w->io);
}

/* One Transpose node of the view reading value `in` and writing `out`. */
static void rz_sf_node(rz_sf_view *w, size_t k, int in, int out) {
    ir_node *n = &w->g.nodes[w->g.n_nodes];
    memset(n, 0, sizeof *n);
    n->name = rz_sf_op;
    n->op_type = rz_sf_op;
    n->domain = rz_sf_domain;
    w->io[2 * k] = in;
    w->io[2 * k + 1] = out;
    n->inputs = &w->io[2 * k];
    n->n_inputs = 1;
    n->outputs = &w->io[2 * k + 1];
    n->n_outputs = 1;
    n->attrs = &w->attr;
    n->n_attrs = 1;
    n->index = -1;
    w->g.values[out].producer = (int)w->g.n_nodes++;
}

/* The batch-first view of g; 0 in *n_turned when no input is a candidate. */
static mha_status rz_sf_view_make(const mha_alloc_ctx *a, const ir_graph *g, rz_sf_view *w,
                                  size_t *n_turned, mha_error *err) {
    memset(w, 0, sizeof *w);
    *n_turned = 0;
    size_t ni = 0, no = 0;
    for (size_t i = 0; i < g->n_inputs; i++)
        ni += rz_sf_turned_input(g, g->inputs[i]);
    for (size_t i = 0; i < g->n_outputs; i++)
        no += rz_sf_candidate(&g->values[g->outputs[i]]) != 0;
    if (ni == 0 || no == 0) return MHA_OK;
    const size_t nv = g->n_values + ni + no, nn = g->n_nodes + ni + no;
    w->g = *g;
    w->g.values = mha_calloc(a, nv, sizeof *w->g.values);
    w->g.nodes = mha_calloc(a, nn, sizeof *w->g.nodes);
    w->g.inputs = mha_calloc(a, g->n_inputs ? g->n_inputs : 1, sizeof *w->g.inputs);
    w->g.outputs = mha_calloc(a, g->n_outputs ? g->n_outputs : 1, sizeof *w->g.outputs);
    w->io = mha_calloc(a, 2 * (ni + no), sizeof *w->io);
    if (!w->g.values || !w->g.nodes || !w->g.inputs || !w->g.outputs || !w->io) {
        rz_sf_view_free(a, w);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory viewing a sequence-first graph");
    }
    w->attr.name = rz_sf_perm_name;
    w->attr.type = IR_ATTR_INTS;
    w->attr.ints = (int64_t *)rz_sf_perm;
    w->attr.n = 3;
    memcpy(w->g.values, g->values, g->n_values * sizeof *g->values);
    memcpy(w->g.inputs, g->inputs, g->n_inputs * sizeof *g->inputs);
    memcpy(w->g.outputs, g->outputs, g->n_outputs * sizeof *g->outputs);
    w->g.n_values = g->n_values;
    w->g.n_nodes = 0;
    size_t k = 0;
    /* input x [S, B, D] becomes x' [B, S, D] and x = Transpose(x') */
    for (size_t i = 0; i < g->n_inputs; i++) {
        const int v = g->inputs[i];
        if (!rz_sf_turned_input(g, v)) continue;
        const int nvid = (int)w->g.n_values++;
        w->g.values[nvid] = g->values[v];
        rz_sf_swap(w->g.values[nvid].dims);
        w->g.values[nvid].dim_params[0] = g->values[v].dim_params[1];
        w->g.values[nvid].dim_params[1] = g->values[v].dim_params[0];
        w->g.values[v].graph_input = -1;
        w->g.inputs[i] = nvid;
        rz_sf_node(w, k++, nvid, v);
    }
    const int shift = (int)w->g.n_nodes;
    for (size_t n = 0; n < g->n_nodes; n++)
        w->g.nodes[w->g.n_nodes++] = g->nodes[n];
    for (size_t v = 0; v < g->n_values; v++)
        if (g->values[v].producer >= 0) w->g.values[v].producer = g->values[v].producer + shift;
    /* output y [S, B, D] is read as y' = Transpose(y) [B, S, D] */
    for (size_t i = 0; i < g->n_outputs; i++) {
        const int v = g->outputs[i];
        if (!rz_sf_candidate(&g->values[v])) continue;
        const int nvid = (int)w->g.n_values++;
        w->g.values[nvid] = g->values[v];
        w->g.values[nvid].graph_input = -1;
        rz_sf_swap(w->g.values[nvid].dims);
        w->g.values[nvid].dim_params[0] = g->values[v].dim_params[1];
        w->g.values[nvid].dim_params[1] = g->values[v].dim_params[0];
        w->g.outputs[i] = nvid;
        rz_sf_node(w, k++, v, nvid);
    }
    *n_turned = ni;
    return MHA_OK;
}

mha_status rz_recognize_seq_first(const mha_alloc_ctx *a, const ir_graph *g, layer *out,
                                  mha_error *err) {
    rz_sf_view w;
    size_t turned = 0;
    mha_status st = rz_sf_view_make(a, g, &w, &turned, err);
    if (st != MHA_OK) return st;
    if (!turned) return MHA_ERR_MODEL_UNSUPPORTED;
    st = rz_recognize_once(a, &w.g, out, err);
    /* only a projected layer reading [S, B, D] rows is served this way */
    if (st == MHA_OK && !out->has_proj) {
        layer_clear(a, out);
        st = MHA_ERR_MODEL_UNSUPPORTED;
    }
    if (st == MHA_OK) {
        out->seq_first = 1;
        for (size_t i = 0; i < g->n_inputs; i++)
            if (rz_sf_turned_input(g, g->inputs[i])) {
                const mha_io_role r = out->inputs[i].role;
                if (r != MHA_ROLE_QUERY && r != MHA_ROLE_KEY_VALUE && r != MHA_ROLE_VALUE_INPUT) {
                    layer_clear(a, out);
                    st = MHA_ERR_MODEL_UNSUPPORTED;
                    break;
                }
                rz_sf_swap(out->inputs[i].dims);
            }
        for (size_t i = 0; st == MHA_OK && i < g->n_outputs; i++)
            if (rz_sf_candidate(&g->values[g->outputs[i]])) rz_sf_swap(out->outputs[i].dims);
    }
    rz_sf_view_free(a, &w);
    return st;
}

/* Whether g reads as sequence-first on its face: every input the view
 * would turn, and every [?, ?, D] output, has a fixed first axis of more
 * than one and a symbolic second (nn.MultiheadAttention of a model whose
 * sequence is fixed: ViT's [197, batch, 768]). Read as it is, such a graph
 * is probed with 197 batch items of a few tokens -- a full-size run of the
 * interpreter before the refusal -- so the view is tried first. */
static int rz_sf_on_its_face(const ir_graph *g) {
    size_t turned = 0;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        if (!rz_sf_turned_input(g, g->inputs[i])) continue;
        if (v->dims[0] <= 1 || v->dims[1] >= 0) return 0;
        turned++;
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        const ir_value *v = &g->values[g->outputs[i]];
        if (rz_sf_candidate(v) && (v->dims[0] <= 1 || v->dims[1] >= 0)) return 0;
    }
    return turned > 0;
}

/* The entry: the graph read as it is, else through the sequence-first
 * view (the view first when the graph reads so on its face; either way
 * the first reading's refusal is the one reported). */
mha_status layer_recognize(const mha_alloc_ctx *a, const ir_graph *g, layer *out, mha_error *err) {
    if (!g || !out)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "layer_recognize: NULL argument");
    if (rz_sf_on_its_face(g)) {
        mha_error first;
        mha_error_clear(&first);
        const mha_status sf = rz_recognize_seq_first(a, g, out, &first);
        if (sf == MHA_OK || sf == MHA_ERR_NO_MEMORY) {
            if (sf != MHA_OK && err) *err = first;
            return sf;
        }
        return rz_recognize_once(a, g, out, err);
    }
    mha_status st = rz_recognize_once(a, g, out, err);
    if (st == MHA_OK || st == MHA_ERR_NO_MEMORY || st == MHA_ERR_INVALID_ARGUMENT) return st;
    /* maybe [S, B, D] inputs (probing them as [B, S, D] may also fail to
     * run the graph); else the first refusal */
    mha_error again;
    mha_error_clear(&again);
    if (rz_recognize_seq_first(a, g, out, &again) == MHA_OK) {
        if (err) mha_error_clear(err);
        return MHA_OK;
    }
    return st;
}
