/* recognize_eval.c -- phase 2 of the layer recogniser: the graph evaluated
 * on a probe input (seeded random data at the probe sizes, every value kept
 * in z->probe), and what those values say about a chain of layout ops: its
 * product of scalar factors. recognize_map.c and recognize_mask.c read the
 * values; they re-run the graph through rz_rerun after changing inputs. */
#include "recognize_internal.h"

#include <math.h>
#include <string.h>

static void rz_free_inputs(rz_ctx *z) {
    if (!z->inputs) return;
    for (size_t i = 0; i < z->g->n_inputs; i++)
        tensor_free(z->inputs[i]);
    mha_free(z->a, z->inputs);
    z->inputs = NULL;
}

void rz_free_probe(rz_ctx *z) {
    rz_free_inputs(z);
    if (z->probe) interp_values_free(z->g, z->probe);
    z->probe = NULL;
}

mha_status rz_rerun(rz_ctx *z) {
    if (z->probe) interp_values_free(z->g, z->probe);
    z->probe = NULL;
    mha_status st = interp_run(z->a, z->g, (const tensor *const *)z->inputs, &z->probe, z->err);
    if (st != MHA_OK) mha_error_prefix(z->err, "evaluating the graph on a probe input");
    return st;
}

static int rz_layer_is_self(const layer *L) {
    if (!L->has_proj) return 0;
    for (size_t i = 0; i < L->n_inputs; i++)
        if (L->inputs[i].role == MHA_ROLE_KEY_VALUE || L->inputs[i].role == MHA_ROLE_K) return 0;
    return 1;
}

static mha_status rz_probe_with(rz_ctx *z, const layer *L, rz_sizes sz) {
    const ir_graph *g = z->g;
    mha_status st = MHA_OK;
    int64_t(*dims)[MHA_MAX_RANK] = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, sizeof *dims);
    if (!dims) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory building probe inputs");
    st = rz_probe_dims(L, rz_layer_is_self(L), &sz, dims, z->err);
    rz_free_inputs(z);
    if (st == MHA_OK) {
        z->inputs = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, sizeof *z->inputs);
        if (!z->inputs) st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    }
    uint64_t seed = 0x6d68612d70726f62ull; /* fixed: recognition is deterministic */
    for (size_t i = 0; i < g->n_inputs && st == MHA_OK; i++) {
        const layer_io *io = &L->inputs[i];
        st = tensor_new(z->a, io->dtype, io->rank, dims[i], &z->inputs[i], z->err);
        if (st != MHA_OK) break;
        if (io->dtype == MHA_DTYPE_FLOAT32)
            rz_fill_random(z->inputs[i]->data, tensor_numel(z->inputs[i]), &seed);
        rz_fill_rotary_input(L, io, z->inputs[i], 0, 0, sz.P);
    }
    mha_free(z->a, dims);
    if (st != MHA_OK) return st;
    z->B = sz.B;
    z->Sq = sz.Sq;
    z->Skv = sz.Skv;
    z->P = sz.P;
    return rz_rerun(z);
}

mha_status rz_run_probe(rz_ctx *z, const layer *L, int64_t B, int64_t Sq, int64_t Skv) {
    rz_sizes sz = {B, Sq, Skv, z->P};
    return rz_probe_with(z, L, sz);
}

mha_status rz_chain_factor(rz_ctx *z, const rz_chain *ch, double *f) {
    *f = 1.0;
    for (int s = 0; s < ch->n; s++) {
        const rz_step *step = &ch->steps[s];
        const ir_node *n = &z->g->nodes[step->node];
        const tensor *in = rz_val(z, n->inputs[step->data_in]);
        const tensor *out = rz_val(z, n->outputs[step->data_out]);
        char d[160];
        if (!in || !out)
            return mha_fail(z->err, MHA_ERR_INTERNAL, "%s: no probe value",
                            rz_node_desc(z, step->node, d, sizeof d));
        if (step->kind == RZ_STEP_IDENTITY && in->dtype != out->dtype)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: casts %s to %s on the attention path (only float32 is "
                            "supported)",
                            rz_node_desc(z, step->node, d, sizeof d), mha_dtype_name(in->dtype),
                            mha_dtype_name(out->dtype));
        if (step->kind != RZ_STEP_MUL && step->kind != RZ_STEP_DIV) continue;
        const tensor *k = rz_val(z, n->inputs[1 - step->data_in]);
        if (!k || tensor_numel(k) != 1 ||
            (k->dtype != MHA_DTYPE_FLOAT32 && k->dtype != MHA_DTYPE_FLOAT64))
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: multiplies the attention path by a constant that is not a "
                            "float scalar",
                            rz_node_desc(z, step->node, d, sizeof d));
        if (out->rank != in->rank ||
            memcmp(out->dims, in->dims, sizeof(int64_t) * (size_t)in->rank) != 0)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: the scalar factor changes the shape",
                            rz_node_desc(z, step->node, d, sizeof d));
        double c = tensor_get_f64(k, 0);
        if (step->kind == RZ_STEP_DIV) {
            if (c == 0.0 || !isfinite(c))
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: divides by %g",
                                rz_node_desc(z, step->node, d, sizeof d), c);
            c = 1.0 / c;
        }
        if (!isfinite(c))
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: factor %g",
                            rz_node_desc(z, step->node, d, sizeof d), c);
        *f *= c;
    }
    return MHA_OK;
}

mha_status rz_subgraph_eval(rz_ctx *z, int x, int y, const tensor *xin, tensor **out) {
    const ir_graph *g = z->g;
    *out = NULL;
    tensor **over = mha_calloc(z->a, g->n_values, sizeof *over);
    if (!over) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory probing a subgraph");
    if (x < 0 || (size_t)x >= g->n_values || y < 0 || (size_t)y >= g->n_values) {
        mha_free(z->a, over);
        return mha_fail(z->err, MHA_ERR_INTERNAL, "a probed subgraph between unknown values");
    }
    /* nodes are in topological order: those after x's producer, up to y's */
    const int first = g->values[x].producer + 1, last = g->values[y].producer;
    mha_status st = MHA_OK;
    for (int ni = first; ni <= last && st == MHA_OK; ni++) {
        const ir_node *n = &g->nodes[ni];
        int touched = 0;
        for (size_t k = 0; k < n->n_inputs; k++)
            touched |= n->inputs[k] == x || (n->inputs[k] >= 0 && over[n->inputs[k]]);
        if (!touched) continue;
        tensor *in[16] = {0}, *outs[16] = {0};
        if (n->n_inputs > 16 || n->n_outputs > 16) {
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "a node of %zu inputs on a probed subgraph", n->n_inputs);
            break;
        }
        for (size_t k = 0; k < n->n_inputs; k++) {
            const int v = n->inputs[k];
            in[k] = v < 0 ? NULL : v == x ? (tensor *)xin : over[v] ? over[v] : z->probe[v];
        }
        st = interp_eval_node(z->a, g, n, in, outs, z->err);
        for (size_t k = 0; k < n->n_outputs; k++) {
            const int v = n->outputs[k];
            if (st == MHA_OK && v >= 0)
                over[v] = outs[k];
            else
                tensor_free(outs[k]);
        }
    }
    if (st == MHA_OK && !over[y])
        st = mha_fail(z->err, MHA_ERR_INTERNAL, "a probed subgraph: '%s' was not recomputed",
                      g->values[y].name);
    if (st == MHA_OK) {
        *out = over[y];
        over[y] = NULL;
    }
    for (size_t v = 0; v < g->n_values; v++)
        tensor_free(over[v]);
    mha_free(z->a, over);
    return st;
}
