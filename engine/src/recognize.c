/* recognize.c -- layer_recognize: finds the one attention layer of a graph
 * and fills a `layer`. This file picks the attention core (an ONNX
 * Attention node or a Softmax), refuses what is out of scope with the op and
 * node that stopped it, records the graph's inputs and outputs with their
 * roles, and hands the projected forms to recognize_graph.c (structure) and
 * recognize_map.c (meaning). See recognize_internal.h for the method. */
#include "recognize_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Attributes of Attention (opsets 23/24) this engine understands. */
static const char *const rz_attention_attrs[] = {
    "is_causal", "kv_num_heads", "q_num_heads", "qk_matmul_output_mode", "scale", "softcap"};

/* "<node>: <feature><rest>", e.g. "Attention node 'a': past_key inputs are ..." */
static mha_status rz_refuse(rz_ctx *z, int node, const char *rest, const char *feature) {
    char d[160];
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: %s%s",
                    rz_node_desc(z, node, d, sizeof d), feature, rest);
}

/* Features of Attention that belong to later work: refused by name. */
static mha_status rz_check_attention_features(rz_ctx *z, int node) {
    const ir_node *n = &z->g->nodes[node];
    if (ir_node_input(n, 4) >= 0 || ir_node_input(n, 5) >= 0)
        return rz_refuse(z, node, " inputs (KV cache) are not supported yet",
                         "past_key / past_value");
    if (ir_node_input(n, 6) >= 0)
        return rz_refuse(z, node, " input is not supported yet", "nonpad_kv_seqlen");
    for (size_t k = 1; k < n->n_outputs; k++) {
        if (n->outputs[k] < 0) continue;
        if (k == 3) return rz_refuse(z, node, " output is not supported yet", "qk_matmul_output");
        return rz_refuse(z, node, " outputs (KV cache) are not supported yet",
                         "present_key / present_value");
    }
    if (ir_node_attr(n, "softmax_precision"))
        return rz_refuse(z, node, " attribute is not supported yet", "softmax_precision");
    for (size_t i = 0; i < n->n_attrs; i++) {
        int known = 0;
        for (size_t k = 0; k < sizeof rz_attention_attrs / sizeof rz_attention_attrs[0]; k++)
            if (strcmp(n->attrs[i].name, rz_attention_attrs[k]) == 0) known = 1;
        if (!known) {
            char d[160];
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: attribute '%s' is not supported",
                            rz_node_desc(z, node, d, sizeof d), n->attrs[i].name);
        }
    }
    for (size_t k = 0; k < 3 && k < n->n_inputs; k++) {
        int v = n->inputs[k];
        mha_dtype dt = v >= 0 ? z->g->values[v].dtype : MHA_DTYPE_UNDEFINED;
        if (dt != MHA_DTYPE_FLOAT32 && dt != MHA_DTYPE_UNDEFINED) {
            char d[160];
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: %s inputs are not supported yet (only float32)",
                            rz_node_desc(z, node, d, sizeof d), mha_dtype_name(dt));
        }
    }
    return MHA_OK;
}

static mha_status rz_fill_io(rz_ctx *z, layer *L) {
    const ir_graph *g = z->g;
    L->inputs = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, sizeof *L->inputs);
    L->outputs = mha_calloc(z->a, g->n_outputs ? g->n_outputs : 1, sizeof *L->outputs);
    if (!L->inputs || !L->outputs) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    for (int pass = 0; pass < 2; pass++) {
        size_t cnt = pass ? g->n_outputs : g->n_inputs;
        for (size_t i = 0; i < cnt; i++) {
            const ir_value *v = &g->values[pass ? g->outputs[i] : g->inputs[i]];
            layer_io *io = pass ? &L->outputs[i] : &L->inputs[i];
            io->name = mha_strdup(z->a, v->name);
            if (!io->name) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
            if (pass)
                L->n_outputs++;
            else
                L->n_inputs++;
            io->role = pass ? MHA_ROLE_OUTPUT : MHA_ROLE_QUERY;
            io->dtype = v->dtype;
            io->rank = v->rank;
            for (int d = 0; d < v->rank && d < MHA_MAX_RANK; d++)
                io->dims[d] = v->dims[d];
            if (v->rank < 0 || v->rank > MHA_MAX_RANK)
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "graph %s '%s' has no declared shape (or a rank above %d)",
                                pass ? "output" : "input", v->name, MHA_MAX_RANK);
            if (v->dtype != MHA_DTYPE_FLOAT32 && v->dtype != MHA_DTYPE_BOOL)
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "graph %s '%s' is %s: only float32 (and bool masks) are "
                                "supported for now",
                                pass ? "output" : "input", v->name, mha_dtype_name(v->dtype));
        }
    }
    return MHA_OK;
}

static int rz_graph_input_index(const rz_ctx *z, int v) {
    return (v >= 0 && z->g->values[v].producer < 0) ? z->g->values[v].graph_input : -1;
}

/* A bare Attention node: Q, K, V (and attn_mask) are graph inputs. */
static mha_status rz_recognize_bare(rz_ctx *z, int node, layer *L) {
    const ir_graph *g = z->g;
    const ir_node *n = &g->nodes[node];
    char d[160];
    int ids[4] = {ir_node_input(n, 0), ir_node_input(n, 1), ir_node_input(n, 2),
                  ir_node_input(n, 3)};
    static const mha_io_role roles[4] = {MHA_ROLE_Q, MHA_ROLE_K, MHA_ROLE_V, MHA_ROLE_ATTN_MASK};
    static const char *const names[4] = {"Q", "K", "V", "attn_mask"};
    unsigned char *used = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, 1);
    if (!used) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    mha_status st = MHA_OK;
    for (int k = 0; k < 4 && st == MHA_OK; k++) {
        if (ids[k] < 0) {
            if (k < 3)
                st = mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: input %s is missing",
                              rz_node_desc(z, node, d, sizeof d), names[k]);
            continue;
        }
        int gi = rz_graph_input_index(z, ids[k]);
        if (gi < 0) {
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: %s ('%s') is computed in the graph while Q is a graph input; "
                          "either all of Q, K, V come from projections or none",
                          rz_node_desc(z, node, d, sizeof d), names[k], g->values[ids[k]].name);
            break;
        }
        if (used[gi]) {
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: graph input '%s' feeds two of Q, K, V, attn_mask",
                          rz_node_desc(z, node, d, sizeof d), g->values[ids[k]].name);
            break;
        }
        used[gi] = 1;
        L->inputs[gi].role = roles[k];
    }
    for (size_t i = 0; i < g->n_inputs && st == MHA_OK; i++)
        if (!used[i])
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "graph input '%s' does not feed %s",
                          g->values[g->inputs[i]].name, rz_node_desc(z, node, d, sizeof d));
    mha_free(z->a, used);
    if (st != MHA_OK) return st;
    if (g->n_outputs != 1 || n->n_outputs < 1 || g->outputs[0] != n->outputs[0])
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: its output Y must be the graph's only output",
                        rz_node_desc(z, node, d, sizeof d));

    const ir_value *q = &g->values[ids[0]], *k = &g->values[ids[1]], *v = &g->values[ids[2]];
    if (q->dtype != MHA_DTYPE_FLOAT32 || k->dtype != MHA_DTYPE_FLOAT32 ||
        v->dtype != MHA_DTYPE_FLOAT32)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: Q, K and V must be float32 for now",
                        rz_node_desc(z, node, d, sizeof d));
    if (q->rank != k->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: Q, K, V must all be 3D or all 4D (ranks %d, %d, %d)",
                        rz_node_desc(z, node, d, sizeof d), q->rank, k->rank, v->rank);
    if (ids[3] >= 0) {
        const ir_value *m = &g->values[ids[3]];
        if ((m->dtype != MHA_DTYPE_BOOL && m->dtype != MHA_DTYPE_FLOAT32) || m->rank < 2 ||
            m->rank > 4)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: attn_mask '%s' must be bool or float32 of rank 2 to 4 "
                            "(got %s rank %d)",
                            rz_node_desc(z, node, d, sizeof d), m->name, mha_dtype_name(m->dtype),
                            m->rank);
    }
    int64_t Hq, Hkv, dh, dv;
    int last = q->rank - 1;
    if (q->rank == 4) {
        Hq = q->dims[1], Hkv = k->dims[1], dh = q->dims[3], dv = v->dims[3];
        if (k->dims[3] != dh && k->dims[3] >= 0 && dh >= 0)
            return mha_fail(
                z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: Q and K head sizes differ (%lld, %lld)",
                rz_node_desc(z, node, d, sizeof d), (long long)dh, (long long)k->dims[3]);
    } else {
        Hq = ir_attr_int(n, "q_num_heads", 0);
        Hkv = ir_attr_int(n, "kv_num_heads", 0);
        if (Hq <= 0 || Hkv <= 0)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: 3D inputs need q_num_heads and kv_num_heads",
                            rz_node_desc(z, node, d, sizeof d));
        if (q->dims[2] < 0 || k->dims[2] < 0 || v->dims[2] < 0 || q->dims[2] % Hq ||
            k->dims[2] % Hkv || v->dims[2] % Hkv || q->dims[2] / Hq != k->dims[2] / Hkv)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: hidden sizes %lld, %lld, %lld do not split into %lld / %lld "
                            "heads of one size",
                            rz_node_desc(z, node, d, sizeof d), (long long)q->dims[2],
                            (long long)k->dims[2], (long long)v->dims[2], (long long)Hq,
                            (long long)Hkv);
        dh = q->dims[2] / Hq, dv = v->dims[2] / Hkv;
    }
    if (Hq <= 0 || Hkv <= 0 || dh <= 0 || dv <= 0 || q->dims[last] < 0)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: head counts and head sizes must be static",
                        rz_node_desc(z, node, d, sizeof d));
    if (Hq % Hkv)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: %lld query heads are not a multiple of %lld key/value heads",
                        rz_node_desc(z, node, d, sizeof d), (long long)Hq, (long long)Hkv);
    const ir_attr *sa = ir_node_attr(n, "scale");
    L->form = "onnx-attention";
    L->has_proj = 0;
    L->qkv_rank = q->rank;
    L->q_heads = Hq;
    L->kv_heads = Hkv;
    L->d_head = dh;
    L->d_head_v = dv;
    L->scale = sa ? sa->f : (float)(1.0 / sqrt((double)dh));
    L->softcap = ir_attr_float(n, "softcap", 0.0f);
    L->causal = ir_attr_int(n, "is_causal", 0) != 0;
    L->cross = 0;
    L->seq_first = 0;
    return MHA_OK;
}

/* The projected forms: roles, probe, then the meaning of the chains. */
static mha_status rz_recognize_projected(rz_ctx *z, layer *L) {
    const ir_graph *g = z->g;
    rz_core *c = &z->core;
    char d[160];
    if (g->n_outputs != 1)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the graph has %zu outputs; a projected attention layer has one",
                        g->n_outputs);
    unsigned char *used = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, 1);
    if (!used) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    used[c->qp.x_input] = 1;
    L->inputs[c->qp.x_input].role = MHA_ROLE_QUERY;
    if (c->kp.x_input != c->qp.x_input) {
        used[c->kp.x_input] = 1;
        L->inputs[c->kp.x_input].role = MHA_ROLE_KEY_VALUE;
    }
    mha_status st = MHA_OK;
    if (c->mask_input >= 0) {
        int gi = g->values[c->mask_input].graph_input;
        if (used[gi])
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: graph input '%s' is both data and attn_mask",
                          rz_node_desc(z, c->node, d, sizeof d), g->values[c->mask_input].name);
        used[gi] = 1;
        L->inputs[gi].role = MHA_ROLE_ATTN_MASK;
    }
    for (int t = 0; t < c->n_masks; t++)
        for (size_t i = 0; i < g->n_inputs; i++)
            if (!used[i] && (z->deps[c->masks[t].value] & ((uint64_t)1 << i))) {
                /* provisional: recognize_mask.c decides by probing */
                used[i] = 1;
                L->inputs[i].role =
                    L->inputs[i].rank == 2 ? MHA_ROLE_KEY_PADDING_MASK : MHA_ROLE_ATTN_MASK;
            }
    for (size_t i = 0; i < g->n_inputs && st == MHA_OK; i++)
        if (!used[i])
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "graph input '%s' does not feed the attention layer the way an "
                          "input, key/value or mask does",
                          g->values[g->inputs[i]].name);
    mha_free(z->a, used);
    if (st != MHA_OK) return st;
    L->has_proj = 1;
    /* Different sizes so that no two axes can be confused. */
    st = rz_run_probe(z, L, 2, 3, 5);
    if (st == MHA_OK) st = rz_build_projected(z, L);
    if (st != MHA_OK) return st;
    if (c->kind == RZ_CORE_SOFTMAX) {
        /* PyTorch's multi_head_attention_forward folds heads into the batch
         * axis ([B*H, S, d] scores); a 4D score MatMul is a hand-written or
         * converter-made decomposition. Both mean the same layer. */
        const tensor *S = z->probe[g->nodes[c->score_mm].outputs[0]];
        L->form = S && S->rank == 3 ? "torch-mha" : "onnx-decomposed";
    }
    return MHA_OK;
}

mha_status layer_recognize(const mha_alloc_ctx *a, const ir_graph *g, layer *out, mha_error *err) {
    if (!g || !out)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "layer_recognize: NULL argument");
    memset(out, 0, sizeof *out);
    rz_ctx z;
    memset(&z, 0, sizeof z);
    z.a = a;
    z.g = g;
    z.err = err;
    mha_status st = MHA_OK;
    char d1[160], d2[160];
    if (g->n_inputs > RZ_MAX_INPUTS) {
        st = mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED, "the graph has %zu inputs (at most %d)",
                      g->n_inputs, RZ_MAX_INPUTS);
        goto done;
    }
    /* The attention core: exactly one Attention node or one Softmax. */
    int core = -1, n_cores = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (strcmp(n->domain, "com.microsoft") == 0) {
            st = mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: com.microsoft operators are not supported yet",
                          ir_node_desc(n, d1, sizeof d1));
            goto done;
        }
        if (n->domain[0] != '\0' && strcmp(n->domain, "ai.onnx") != 0) {
            st = mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: operator domain '%s' is not "
                          "supported",
                          ir_node_desc(n, d1, sizeof d1), n->domain);
            goto done;
        }
        if (!rz_is_op(n, "Attention") && !rz_is_op(n, "Softmax")) continue;
        if (n_cores++ == 0) {
            core = (int)i;
            continue;
        }
        st = mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                      "%s: a second attention core after %s; one attention layer per graph is "
                      "supported",
                      ir_node_desc(n, d1, sizeof d1), ir_node_desc(&g->nodes[core], d2, sizeof d2));
        goto done;
    }
    if (core < 0) {
        st = mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                      "no attention found: the graph has neither an Attention node nor a "
                      "Softmax (%zu nodes)",
                      g->n_nodes);
        goto done;
    }
    st = rz_analyse_deps(&z);
    if (st == MHA_OK && rz_is_op(&g->nodes[core], "Attention"))
        st = rz_check_attention_features(&z, core);
    if (st == MHA_OK) st = rz_fill_io(&z, out);
    if (st != MHA_OK) goto done;
    if (rz_is_op(&g->nodes[core], "Attention")) {
        int q = ir_node_input(&g->nodes[core], 0);
        if (q >= 0 && rz_graph_input_index(&z, q) >= 0) {
            st = rz_recognize_bare(&z, core, out);
        } else {
            st = rz_parse_attention_core(&z, core);
            if (st == MHA_OK) st = rz_recognize_projected(&z, out);
        }
    } else {
        st = rz_parse_softmax_core(&z, core);
        if (st == MHA_OK) st = rz_recognize_projected(&z, out);
    }
done:
    rz_free_probe(&z);
    mha_free(a, z.deps);
    mha_free(a, z.n_uses);
    if (st != MHA_OK) layer_clear(a, out);
    return st;
}
