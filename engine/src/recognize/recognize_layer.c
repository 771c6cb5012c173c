/* recognize_layer.c -- rz_recognize_once: finds the one attention layer of
 * a graph read as it is and fills a `layer` (layer_recognize, in
 * recognize_seqfirst.c, retries through a sequence-first view). This file picks the attention core
 * (an ONNX Attention node or a Softmax), refuses what is out of scope with the op and node that
 * stopped it, records the graph's inputs and outputs with their roles, and hands the projected
 * forms to recognize_graph.c (structure) and recognize_map.c (meaning). See recognize_internal.h
 * for the method. */
#include "recognize_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Attributes of Attention (opsets 23 to 25) this engine understands. */
static const char *const rz_attention_attrs[] = {
    "is_causal", "kv_num_heads",      "q_num_heads",      "qk_matmul_output_mode", "scale",
    "softcap",   "softmax_precision", "left_window_size", "right_window_size"};

/* "<node>: <feature><rest>", e.g. "Attention node 'a': past_key inputs are ..." */
static mha_status rz_refuse(rz_ctx *z, int node, const char *rest, const char *feature) {
    char d[160];
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: %s%s",
                    rz_node_desc(z, node, d, sizeof d), feature, rest);
}

/* An operator of ONNX Runtime's com.microsoft domain. */
static int rz_is_ms_op(const ir_node *n, const char *op) {
    return n && strcmp(n->domain, "com.microsoft") == 0 && strcmp(n->op_type, op) == 0;
}

static int rz_is_float_type(mha_dtype dt) {
    return dt == MHA_DTYPE_FLOAT32 || dt == MHA_DTYPE_FLOAT16 || dt == MHA_DTYPE_BFLOAT16;
}

static int rz_graph_input_index(const rz_ctx *z, int v);

/* Features of Attention. A bare node (Q, K, V graph inputs) serves all of
 * them; a node between projections serves the float32 layer without KV
 * cache, lengths or extra outputs (refused by name). */
static mha_status rz_check_attention_features(rz_ctx *z, int node, int bare) {
    const ir_node *n = &z->g->nodes[node];
    if (!bare) {
        /* a KV cache between projections: past_key and past_value graph
         * inputs, present_key / present_value outputs (recognize_graph.c) */
        const int pk = ir_node_input(n, 4), pv = ir_node_input(n, 5);
        const int past_inputs = pk >= 0 && pv >= 0 && rz_graph_input_index(z, pk) >= 0 &&
                                rz_graph_input_index(z, pv) >= 0 && pk != pv;
        if ((pk >= 0 || pv >= 0) && !past_inputs)
            return rz_refuse(z, node,
                             " between projections must be two graph inputs given together",
                             "past_key / past_value");
        if (ir_node_input(n, 6) >= 0)
            return rz_refuse(z, node,
                             " input between projections is not supported; a bare "
                             "Attention node serves it",
                             "nonpad_kv_seqlen");
        for (size_t k = 1; k < n->n_outputs; k++) {
            if (n->outputs[k] < 0) continue;
            if (k == 3)
                return rz_refuse(z, node,
                                 " output between projections is not supported; a bare "
                                 "Attention node serves it",
                                 "qk_matmul_output");
            if (!past_inputs)
                return rz_refuse(z, node,
                                 " outputs between projections need past_key / past_value "
                                 "inputs",
                                 "present_key / present_value");
        }
    }
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
    int64_t mode = ir_attr_int(n, "qk_matmul_output_mode", 0);
    int64_t left = ir_attr_int(n, "left_window_size", -1);
    int64_t right = ir_attr_int(n, "right_window_size", -1);
    char d[160];
    if (mode < 0 || mode > 3)
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: qk_matmul_output_mode %lld is not 0..3",
                        rz_node_desc(z, node, d, sizeof d), (long long)mode);
    const int64_t causal = ir_attr_int(n, "is_causal", 0);
    if (causal != 0 && causal != 1) /* as interp_attr_flag */
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT,
                        "%s: attribute 'is_causal' is %lld, not 0 or 1",
                        rz_node_desc(z, node, d, sizeof d), (long long)causal);
    if (left < -1 || right < -1)
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT,
                        "%s: left_window_size %lld / right_window_size %lld must be >= -1",
                        rz_node_desc(z, node, d, sizeof d), (long long)left, (long long)right);
    if (!bare && (left >= 0 || right >= 0))
        return rz_refuse(z, node,
                         " between projections are not supported; a bare Attention node "
                         "serves them",
                         "left_window_size / right_window_size");
    for (size_t k = 0; k < 3 && k < n->n_inputs; k++) {
        int v = n->inputs[k];
        mha_dtype dt = v >= 0 ? z->g->values[v].dtype : MHA_DTYPE_UNDEFINED;
        if (dt == MHA_DTYPE_UNDEFINED || dt == MHA_DTYPE_FLOAT32) continue;
        if (bare && rz_is_float_type(dt)) continue;
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: %s inputs are not supported here (float32%s)",
                        rz_node_desc(z, node, d, sizeof d), mha_dtype_name(dt),
                        bare ? ", float16 or bfloat16" : " between projections");
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
            int ok = rz_is_float_type(v->dtype) ||
                     (!pass && (v->dtype == MHA_DTYPE_BOOL || v->dtype == MHA_DTYPE_INT64 ||
                                v->dtype == MHA_DTYPE_INT32));
            if (!ok)
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "graph %s '%s' is %s: float32, float16 and bfloat16 data, "
                                "bool or integer masks and int64 lengths are supported",
                                pass ? "output" : "input", v->name, mha_dtype_name(v->dtype));
        }
    }
    return MHA_OK;
}

static int rz_graph_input_index(const rz_ctx *z, int v) {
    return (v >= 0 && z->g->values[v].producer < 0) ? z->g->values[v].graph_input : -1;
}

/* A bare Attention node: Q, K, V and the optional attn_mask, past_key,
 * past_value, nonpad_kv_seqlen are graph inputs; Y and the optional
 * present_key, present_value, qk_matmul_output are graph outputs. */
static mha_status rz_recognize_bare(rz_ctx *z, int node, layer *L) {
    const ir_graph *g = z->g;
    const ir_node *n = &g->nodes[node];
    char d[160];
    enum { N_IN = 7, N_OUT = 4 };
    int ids[N_IN];
    for (int k = 0; k < N_IN; k++)
        ids[k] = ir_node_input(n, (size_t)k);
    static const mha_io_role roles[N_IN] = {MHA_ROLE_Q,
                                            MHA_ROLE_K,
                                            MHA_ROLE_V,
                                            MHA_ROLE_ATTN_MASK,
                                            MHA_ROLE_PAST_KEY,
                                            MHA_ROLE_PAST_VALUE,
                                            MHA_ROLE_NONPAD_KV_SEQLEN};
    static const char *const names[N_IN] = {
        "Q", "K", "V", "attn_mask", "past_key", "past_value", "nonpad_kv_seqlen"};
    static const mha_io_role out_roles[N_OUT] = {MHA_ROLE_OUTPUT, MHA_ROLE_PRESENT_KEY,
                                                 MHA_ROLE_PRESENT_VALUE, MHA_ROLE_QK_OUTPUT};
    static const char *const out_names[N_OUT] = {"Y", "present_key", "present_value",
                                                 "qk_matmul_output"};
    unsigned char *used = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, 1);
    if (!used) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    mha_status st = MHA_OK;
    for (int k = 0; k < N_IN && st == MHA_OK; k++) {
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
                          "%s: graph input '%s' feeds two inputs of the node",
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
    if ((ids[4] < 0) != (ids[5] < 0))
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT,
                        "%s: past_key and past_value must be given together",
                        rz_node_desc(z, node, d, sizeof d));
    /* every graph output is one output of the node, each at most once */
    if (n->n_outputs < 1 || n->outputs[0] < 0)
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: output Y is missing",
                        rz_node_desc(z, node, d, sizeof d));
    int seen[N_OUT] = {0};
    for (size_t i = 0; i < g->n_outputs; i++) {
        int k = 0;
        while (k < N_OUT &&
               !((size_t)k < n->n_outputs && n->outputs[k] >= 0 && n->outputs[k] == g->outputs[i]))
            k++;
        if (k == N_OUT || seen[k])
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: graph output '%s' is not one of its outputs (Y, present_key, "
                            "present_value, qk_matmul_output)",
                            rz_node_desc(z, node, d, sizeof d), g->values[g->outputs[i]].name);
        seen[k] = 1;
        L->outputs[i].role = out_roles[k];
    }
    if (!seen[0])
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: its output %s must be a graph output",
                        rz_node_desc(z, node, d, sizeof d), out_names[0]);

    const ir_value *q = &g->values[ids[0]], *k = &g->values[ids[1]], *v = &g->values[ids[2]];
    if (!rz_is_float_type(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: Q, K and V must share one type of float32, float16, bfloat16 "
                        "(got %s, %s, %s)",
                        rz_node_desc(z, node, d, sizeof d), mha_dtype_name(q->dtype),
                        mha_dtype_name(k->dtype), mha_dtype_name(v->dtype));
    for (size_t i = 0; i < g->n_outputs; i++)
        if (L->outputs[i].dtype != q->dtype)
            return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: output '%s' is %s, Q is %s",
                            rz_node_desc(z, node, d, sizeof d), L->outputs[i].name,
                            mha_dtype_name(L->outputs[i].dtype), mha_dtype_name(q->dtype));
    for (int kk = 4; kk < 6; kk++) {
        if (ids[kk] < 0) continue;
        const ir_value *pv = &g->values[ids[kk]];
        if (pv->dtype != q->dtype || pv->rank != 4)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: %s '%s' must be 4D %s (got %s rank %d)",
                            rz_node_desc(z, node, d, sizeof d), names[kk], pv->name,
                            mha_dtype_name(q->dtype), mha_dtype_name(pv->dtype), pv->rank);
    }
    if (ids[6] >= 0) {
        const ir_value *nv = &g->values[ids[6]];
        if ((nv->dtype != MHA_DTYPE_INT64 && nv->dtype != MHA_DTYPE_INT32) || nv->rank != 1)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: nonpad_kv_seqlen '%s' must be int64 [batch] (got %s rank %d)",
                            rz_node_desc(z, node, d, sizeof d), nv->name, mha_dtype_name(nv->dtype),
                            nv->rank);
    }
    if (q->rank != k->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: Q, K, V must all be 3D or all 4D (ranks %d, %d, %d)",
                        rz_node_desc(z, node, d, sizeof d), q->rank, k->rank, v->rank);
    if (ids[3] >= 0) {
        const ir_value *m = &g->values[ids[3]];
        if ((m->dtype != MHA_DTYPE_BOOL && m->dtype != q->dtype) || m->rank < 1 || m->rank > 4)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: attn_mask '%s' must be bool or the type of Q, of rank 1 to 4 "
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
    L->dtype = q->dtype;
    L->qk_mode = (int)ir_attr_int(n, "qk_matmul_output_mode", 0);
    L->left_window = ir_attr_int(n, "left_window_size", -1);
    L->right_window = ir_attr_int(n, "right_window_size", -1);
    L->has_left_window = L->left_window >= 0;
    L->has_right_window = L->right_window >= 0;
    /* beyond any sequence length: the same window, and no overflow later */
    if (L->left_window > ((int64_t)1 << 40)) L->left_window = (int64_t)1 << 40;
    if (L->right_window > ((int64_t)1 << 40)) L->right_window = (int64_t)1 << 40;
    L->kv_len_moves_causal = 1;
    L->mask_pads_keys = 1;
    return MHA_OK;
}

/* v, or the value it copies through Identity and Casts that keep float32
 * (PyTorch's key.to(float32) of a float32 key: the present output is then
 * the Cast's). */
static int rz_copy_source(const rz_ctx *z, int v) {
    for (int hops = 0; v >= 0 && hops < RZ_MAX_STEPS; hops++) {
        const ir_node *n = rz_producer(z, v);
        if (!n || !(rz_is_op(n, "Identity") || rz_is_op(n, "Cast")) || n->n_inputs < 1 ||
            n->inputs[0] < 0)
            break;
        /* (an intermediate value's type may be undeclared; the probe's
         * run of the chain checks the cast keeps float32) */
        const mha_dtype in = z->g->values[n->inputs[0]].dtype;
        if ((in != MHA_DTYPE_UNDEFINED && in != MHA_DTYPE_FLOAT32) ||
            (rz_is_op(n, "Cast") && ir_attr_int(n, "to", 0) != 1))
            break;
        v = n->inputs[0];
    }
    return v;
}

/* Whether v is the K (side 0) or V (side 1) path's value after a step of
 * its chain or after the rotary of K, or a few layout ops off it (GPT-2's
 * present key is a Transpose of the head split beside the one the scores
 * read). */
static int rz_on_new_rows(const rz_ctx *z, int side, int v) {
    const rz_chain *ch = side ? &z->core.vchain : &z->core.kchain;
    for (int hops = 0; v >= 0 && hops < 4; hops++) {
        if (!side && z->core.rot_on[1] && z->core.rot_y[1] == v) return 1;
        for (int k = 0; k < ch->n; k++) {
            const ir_node *n = &z->g->nodes[ch->steps[k].node];
            if ((size_t)ch->steps[k].data_out < n->n_outputs &&
                n->outputs[ch->steps[k].data_out] == v)
                return 1;
        }
        const ir_node *p = rz_producer(z, v);
        if (!p || p->n_inputs < 1 ||
            !(rz_is_op(p, "Transpose") || rz_is_op(p, "Reshape") || rz_is_op(p, "Identity")))
            return 0;
        v = p->inputs[0];
    }
    return 0;
}

/* The projected forms: roles, probe, then the meaning of the chains. */
static mha_status rz_recognize_projected(rz_ctx *z, layer *L) {
    const ir_graph *g = z->g;
    rz_core *c = &z->core;
    char d[160];
    const int weights = c->kind == RZ_CORE_SOFTMAX && c->weights_out >= 0;
    const int cache = c->cache_on[0] && c->cache_on[1];
    if (cache && (weights || c->qp.x_input != c->kp.x_input))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: a KV cache ('%s', '%s') is served on self-attention, without an "
                        "attention weights output",
                        rz_node_desc(z, c->cache_node[0], d, sizeof d),
                        g->values[c->past_v[0]].name, g->values[c->past_v[1]].name);
    /* present_key / present_value: the cache Concats' outputs (or copies) */
    size_t n_present = 0;
    for (size_t i = 0; i < g->n_outputs; i++)
        for (int side = 0; cache && side < 2; side++)
            if (rz_copy_source(z, g->outputs[i]) == c->present_v[side]) {
                L->outputs[i].role = side ? MHA_ROLE_PRESENT_VALUE : MHA_ROLE_PRESENT_KEY;
                n_present++;
            }
    /* no past (Hugging Face's use_cache=True): a graph output that is the
     * new K or V on its way to the scores is the present of an empty cache
     * (the verifier checks it is the [B, kv_heads, S, d] the step writes) */
    const int empty_cache = !cache && !weights && !c->kp.given && c->kp.x_input == c->qp.x_input;
    for (size_t i = 0; empty_cache && i < g->n_outputs; i++)
        for (int side = 0; side < 2; side++)
            if (rz_on_new_rows(z, side, rz_copy_source(z, g->outputs[i]))) {
                L->outputs[i].role = side ? MHA_ROLE_PRESENT_VALUE : MHA_ROLE_PRESENT_KEY;
                n_present++;
                break;
            }
    if (g->n_outputs != 1 + (size_t)weights + n_present)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the graph has %zu outputs; a projected attention layer has one (and "
                        "the head-averaged attention weights, or the present keys and values "
                        "of a KV cache)",
                        g->n_outputs);
    for (size_t i = 0; weights && i < g->n_outputs; i++)
        if (g->outputs[i] == c->weights_out) L->outputs[i].role = MHA_ROLE_ATTN_WEIGHTS;
    if (weights) {
        L->need_weights = c->weights_mean ? 1 : 2;
        L->idioms |= LAYER_IDIOM_HEAD_WEIGHTS;
    }
    unsigned char *used = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, 1);
    if (!used) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    used[c->qp.x_input] = 1;
    L->inputs[c->qp.x_input].role = MHA_ROLE_QUERY;
    if (c->kp.given) { /* K and V in head layout, no projection */
        used[c->kp.x_input] = used[c->vp.x_input] = 1;
        L->inputs[c->kp.x_input].role = MHA_ROLE_K;
        L->inputs[c->vp.x_input].role = MHA_ROLE_V;
    } else if (c->kp.x_input != c->qp.x_input) {
        used[c->kp.x_input] = 1;
        L->inputs[c->kp.x_input].role = MHA_ROLE_KEY_VALUE;
        if (c->vp.x_input != c->kp.x_input) {
            used[c->vp.x_input] = 1;
            L->inputs[c->vp.x_input].role = MHA_ROLE_VALUE_INPUT;
        }
    } else if (c->vp.x_input != c->qp.x_input) { /* layer.k_from_query */
        used[c->vp.x_input] = 1;
        L->inputs[c->vp.x_input].role = MHA_ROLE_VALUE_INPUT;
    }
    mha_status st = MHA_OK;
    for (int side = 0; cache && side < 2; side++) {
        const int gi = g->values[c->past_v[side]].graph_input;
        const ir_value *pv = &g->values[c->past_v[side]];
        if (used[gi] || pv->rank != 4 || pv->dtype != MHA_DTYPE_FLOAT32) {
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "cache input '%s' must be float32 [batch, kv_heads, past, d_head] "
                          "and feed nothing else",
                          pv->name);
            break;
        }
        used[gi] = 1;
        L->inputs[gi].role = side ? MHA_ROLE_PAST_VALUE : MHA_ROLE_PAST_KEY;
        L->idioms |= LAYER_IDIOM_KV_CACHE;
    }
    /* probed with a past of 4 positions (P > 0 shows where the new rows go) */
    z->P = cache ? 4 : 0;
    if (st == MHA_OK && c->mask_input >= 0) {
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
            if (!used[i] && ((z->deps[c->masks[t].value] |
                              (c->masks[t].kind == RZ_TERM_WHERE ? z->deps[c->masks[t].cond] : 0)) &
                             ((uint64_t)1 << i))) {
                /* provisional: recognize_mask.c decides by probing */
                used[i] = 1;
                L->inputs[i].role =
                    L->inputs[i].rank == 2 ? MHA_ROLE_KEY_PADDING_MASK : MHA_ROLE_ATTN_MASK;
            }
    if (st == MHA_OK) st = rz_rotary_roles(z, L, used);
    for (size_t i = 0; i < g->n_inputs && st == MHA_OK; i++)
        if (!used[i])
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "graph input '%s' does not feed the attention layer the way an "
                          "input, key/value or mask does",
                          g->values[g->inputs[i]].name);
    mha_free(z->a, used);
    if (st != MHA_OK) return st;
    L->has_proj = 1;
    /* Different sizes so that no two axes can be confused. A 2-D mask
     * input is first taken as [B, Skv] key padding; when the graph does not
     * run so, as an [Sq, Skv] attention mask (nn.MultiheadAttention). */
    int two_d[2], n_two_d = 0;
    for (size_t i = 0; i < g->n_inputs && c->mask_input < 0; i++)
        if (L->inputs[i].role == MHA_ROLE_KEY_PADDING_MASK && n_two_d < 2)
            two_d[n_two_d++] = (int)i;
    st = rz_run_probe(z, L, 2, 3, 5);
    /* then every other choice for up to two such inputs (nn.MultiheadAttention
     * with both an attn_mask and a key_padding_mask) */
    for (int combo = 1; st == MHA_ERR_SHAPE && combo < (1 << n_two_d); combo++) {
        for (int k = 0; k < n_two_d; k++)
            L->inputs[two_d[k]].role =
                (combo >> k) & 1 ? MHA_ROLE_ATTN_MASK : MHA_ROLE_KEY_PADDING_MASK;
        st = rz_run_probe(z, L, 2, 3, 5);
    }
    /* a 3-D mask whose dynamic first axis is not the batch: PyTorch's
     * [B * heads, Sq, Skv], probed as [1, Sq, Skv] until the heads are known */
    for (size_t i = 0; st == MHA_ERR_SHAPE && i < g->n_inputs; i++) {
        layer_io *io = &L->inputs[i];
        if (io->role != MHA_ROLE_ATTN_MASK || io->rank != 3 || io->dims[0] >= 0) continue;
        L->attn_mask_batch_first = 3;
        st = rz_run_probe(z, L, 2, 3, 5);
        if (st != MHA_OK) L->attn_mask_batch_first = 0;
    }
    /* a batch of windows of images (Swin: the scores viewed [B / nW, nW,
     * H, N, N]) runs only at a multiple of the windows per image: the
     * usual counts of windows (grids of 2 x 2 to 8 x 8 windows) */
    static const int64_t windows[] = {4, 16, 64, 9, 25, 36, 49, 144};
    const mha_error first = *z->err; /* the refusal if none runs */
    int64_t width = 1;               /* the widest input row: a retry's cost is its projections' */
    for (size_t i = 0; i < L->n_inputs; i++)
        if (L->inputs[i].rank >= 1 && L->inputs[i].dims[L->inputs[i].rank - 1] > width)
            width = L->inputs[i].dims[L->inputs[i].rank - 1];
    for (size_t k = 0; st == MHA_ERR_SHAPE && k < sizeof windows / sizeof windows[0]; k++) {
        /* 2 images of windows of 64 tokens: at most ~2^31 multiply-adds */
        if ((double)(2 * windows[k] * 64) * (double)width * (double)width > 2147483648.0) continue;
        L->bias_windows = windows[k];
        mha_error_clear(z->err);
        st = rz_run_probe(z, L, 2, 3, 5);
        if (st != MHA_OK) L->bias_windows = 0;
    }
    if (st == MHA_ERR_SHAPE) *z->err = first;
    /* PyTorch's multi_head_attention_forward folds heads into the batch
     * axis ([B*H, S, d] scores); a 4D score MatMul is a hand-written or
     * converter-made decomposition. Both mean the same layer. (Read now:
     * placing the masks probes again, maybe at sizes the graph refuses.) */
    int score_rank = 0;
    if (st == MHA_OK && c->kind == RZ_CORE_SOFTMAX) {
        const tensor *S = z->probe[g->nodes[c->score_mm].outputs[0]];
        score_rank = S ? S->rank : 0;
    }
    if (st == MHA_OK) st = rz_build_projected(z, L);
    if (st == MHA_OK) st = rz_rotary_build(z, L);
    if (st != MHA_OK) return st;
    if (c->kind == RZ_CORE_SOFTMAX) L->form = score_rank == 3 ? "torch-mha" : "onnx-decomposed";
    return MHA_OK;
}

/* A float32 initializer of the given rank (dims checked by the caller). */
static const tensor *rz_const_f32(const rz_ctx *z, int v, int rank) {
    if (v < 0) return NULL;
    const tensor *t = z->g->values[v].init;
    return (t && t->dtype == MHA_DTYPE_FLOAT32 && t->rank == rank) ? t : NULL;
}

/* The only data consumer of value v, or -1. */
static int rz_sole_consumer(const rz_ctx *z, int v) {
    int found = -1;
    for (size_t i = 0; i < z->g->n_nodes; i++) {
        const ir_node *n = &z->g->nodes[i];
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] == v) {
                if (found >= 0 && found != (int)i) return -2;
                found = (int)i;
            }
    }
    return found;
}

/* com.microsoft Attention, as ONNX Runtime's transformer optimizer writes
 * it: input X [B, S, D] a graph input, weights [D, 3 * H*dh] (or
 * qkv_hidden_sizes) and bias initializers, mask_index an optional graph
 * input, then either the graph output directly or one MatMul (+ Add) output
 * projection with initializer weights. */
static mha_status rz_recognize_ms_attention(rz_ctx *z, int node, layer *L) {
    const ir_graph *g = z->g;
    const ir_node *n = &g->nodes[node];
    char d[160];
    rz_node_desc(z, node, d, sizeof d);
    const int x = ir_node_input(n, 0), mk = ir_node_input(n, 3);
    const tensor *W = rz_const_f32(z, ir_node_input(n, 1), 2);
    const tensor *bias = rz_const_f32(z, ir_node_input(n, 2), 1);
    const int64_t H = ir_attr_int(n, "num_heads", 0);
    if (x < 0 || rz_graph_input_index(z, x) < 0)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: its input must be a graph input",
                        d);
    const ir_value *xv = &g->values[x];
    if (xv->rank != 3 || xv->dims[2] <= 0 || xv->dtype != MHA_DTYPE_FLOAT32)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: input '%s' must be float32 [batch, seq, D] with a static D", d,
                        xv->name);
    const int64_t D = xv->dims[2];
    if (!W || W->dims[0] != D || (ir_node_input(n, 2) >= 0 && !bias))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: weights must be a float32 [%lld, N] initializer (and bias a float32 "
                        "[N] one)",
                        d, (long long)D);
    const int64_t N = W->dims[1];
    int64_t hq = N / 3, hk = hq, hv = N - 2 * hq;
    const ir_attr *sizes = ir_node_attr(n, "qkv_hidden_sizes");
    if (sizes) {
        if (sizes->n != 3 || !sizes->ints)
            return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: qkv_hidden_sizes needs 3 values", d);
        hq = sizes->ints[0], hk = sizes->ints[1], hv = sizes->ints[2];
    }
    if (hq != hk || hq <= 0 || hv <= 0 || hq % H || hv % H || hq + hk + hv != N ||
        (bias && bias->dims[0] != N))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: weights [%lld, %lld] do not split into Q, K, V widths %lld, %lld, "
                        "%lld of %lld heads",
                        d, (long long)D, (long long)N, (long long)hq, (long long)hk, (long long)hv,
                        (long long)H);
    /* the output: the graph's, or through one MatMul (+ Add) projection */
    if (g->n_outputs != 1)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the graph has %zu outputs; one expected", g->n_outputs);
    const tensor *Wo = NULL, *bo = NULL;
    int y = n->outputs[0];
    if (y != g->outputs[0]) {
        int mm = rz_sole_consumer(z, y);
        const ir_node *m = mm >= 0 ? &g->nodes[mm] : NULL;
        Wo = m && rz_is_op(m, "MatMul") && m->n_inputs == 2 && m->inputs[0] == y
                 ? rz_const_f32(z, m->inputs[1], 2)
                 : NULL;
        if (!Wo || Wo->dims[0] != hv)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: its output must be the graph output or feed one MatMul with "
                            "float32 [%lld, d_out] initializer weights",
                            d, (long long)hv);
        y = m->outputs[0];
        if (y != g->outputs[0]) {
            int ad = rz_sole_consumer(z, y);
            const ir_node *a = ad >= 0 ? &g->nodes[ad] : NULL;
            int other = a && rz_is_op(a, "Add") && a->n_inputs == 2
                            ? (a->inputs[0] == y ? a->inputs[1] : a->inputs[0])
                            : -1;
            bo = rz_const_f32(z, other, 1);
            if (!bo || bo->dims[0] != Wo->dims[1] || a->outputs[0] != g->outputs[0])
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "%s: the output projection must be MatMul (+ Add of a float32 "
                                "[%lld] initializer) ending at the graph output",
                                d, (long long)Wo->dims[1]);
        }
    }
    /* roles: X the query; mask_index by its rank */
    for (size_t i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        if (v == x) {
            L->inputs[i].role = MHA_ROLE_QUERY;
        } else if (v == mk) {
            const ir_value *mv = &g->values[v];
            int ok = (mv->dtype == MHA_DTYPE_INT32 || mv->dtype == MHA_DTYPE_INT64) &&
                     mv->rank >= 1 && mv->rank <= 3;
            if (!ok)
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "%s: mask_index '%s' must be int32 [B] (key lengths), [B, T] or "
                                "[B, S, T] (0/1); got %s rank %d",
                                d, mv->name, mha_dtype_name(mv->dtype), mv->rank);
            L->inputs[i].role = mv->rank == 1   ? MHA_ROLE_NONPAD_KV_SEQLEN
                                : mv->rank == 2 ? MHA_ROLE_KEY_PADDING_MASK
                                                : MHA_ROLE_ATTN_MASK;
        } else {
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "graph input '%s' does not feed %s as input or mask_index",
                            g->values[v].name, d);
        }
    }
    const int64_t dh = hq / H, dv = hv / H, dout = Wo ? Wo->dims[1] : hv;
    L->form = "ms-attention";
    L->has_proj = 1;
    L->d_model = D, L->d_kv = D, L->d_out = dout;
    L->q_heads = H, L->kv_heads = H, L->d_head = dh, L->d_head_v = dv;
    const ir_attr *sa = ir_node_attr(n, "scale");
    L->scale = sa ? sa->f : (float)(1.0 / sqrt((double)dh));
    L->causal = ir_attr_int(n, "unidirectional", 0) != 0;
    L->int_mask_attend_nonzero = 1;
    L->kv_len_moves_causal = 0;
    L->wq = mha_calloc(z->a, (size_t)(D * hq), sizeof(float));
    L->wk = mha_calloc(z->a, (size_t)(D * hq), sizeof(float));
    L->wv = mha_calloc(z->a, (size_t)(D * hv), sizeof(float));
    L->wo = mha_calloc(z->a, (size_t)(hv * dout), sizeof(float));
    if (bias) {
        L->bq = mha_calloc(z->a, (size_t)hq, sizeof(float));
        L->bk = mha_calloc(z->a, (size_t)hq, sizeof(float));
        L->bv = mha_calloc(z->a, (size_t)hv, sizeof(float));
    }
    if (bo) L->bo = mha_calloc(z->a, (size_t)dout, sizeof(float));
    if (!L->wq || !L->wk || !L->wv || !L->wo || (bias && (!L->bq || !L->bk || !L->bv)) ||
        (bo && !L->bo))
        return mha_fail(z->err, MHA_ERR_NO_MEMORY, "%s: out of memory copying weights", d);
    const float *w = W->data;
    for (int64_t r = 0; r < D; r++) {
        memcpy(L->wq + r * hq, w + r * N, (size_t)hq * sizeof(float));
        memcpy(L->wk + r * hq, w + r * N + hq, (size_t)hq * sizeof(float));
        memcpy(L->wv + r * hv, w + r * N + 2 * hq, (size_t)hv * sizeof(float));
    }
    if (bias) {
        const float *b = bias->data;
        memcpy(L->bq, b, (size_t)hq * sizeof(float));
        memcpy(L->bk, b + hq, (size_t)hq * sizeof(float));
        memcpy(L->bv, b + 2 * hq, (size_t)hv * sizeof(float));
    }
    if (Wo) {
        memcpy(L->wo, Wo->data, (size_t)(hv * dout) * sizeof(float));
    } else { /* no output projection: Y is the attention output itself */
        for (int64_t i = 0; i < hv; i++)
            L->wo[i * dout + i] = 1.0f;
    }
    if (bo) memcpy(L->bo, bo->data, (size_t)dout * sizeof(float));
    return MHA_OK;
}

/* com.microsoft MultiHeadAttention: the unpacked form between projections
 * (query, key, value [B, S, H*d] computed by MatMul(+Add)); Attention: the
 * packed-weight form (rz_recognize_ms_attention). What else they can carry
 * is refused by name. */
static mha_status rz_check_ms_features(rz_ctx *z, int node) {
    const ir_node *n = &z->g->nodes[node];
    static const char *const mha_attrs[] = {"num_heads", "scale", "unidirectional",
                                            "mask_filter_value"};
    static const char *const att_attrs[] = {"num_heads", "scale", "unidirectional",
                                            "mask_filter_value", "qkv_hidden_sizes"};
    const int is_mha = rz_is_ms_op(n, "MultiHeadAttention");
    const char *const *known = is_mha ? mha_attrs : att_attrs;
    const size_t n_known = is_mha ? 4 : 5;
    char d[160];
    for (size_t i = 0; i < n->n_attrs; i++) {
        int ok = 0;
        for (size_t k = 0; k < n_known; k++)
            if (strcmp(n->attrs[i].name, known[k]) == 0) ok = 1;
        if (!ok)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: attribute '%s' is not supported",
                            rz_node_desc(z, node, d, sizeof d), n->attrs[i].name);
    }
    if (ir_attr_int(n, "num_heads", 0) <= 0)
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: num_heads must be > 0",
                        rz_node_desc(z, node, d, sizeof d));
    const int64_t causal = ir_attr_int(n, "unidirectional", 0);
    if (causal != 0 && causal != 1) /* as interp_attr_flag */
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT,
                        "%s: attribute 'unidirectional' is %lld, not 0 or 1",
                        rz_node_desc(z, node, d, sizeof d), (long long)causal);
    if (is_mha) {
        static const char *const names[] = {"bias", "key_padding_mask", "attention_bias",
                                            "past_key", "past_value"};
        /* a KV cache: past_key / past_value graph inputs together
         * (recognize_graph.c), present_key / present_value outputs */
        const int pk = ir_node_input(n, 6), pv = ir_node_input(n, 7);
        const int past_inputs = pk >= 0 && pv >= 0 && rz_graph_input_index(z, pk) >= 0 &&
                                rz_graph_input_index(z, pv) >= 0 && pk != pv;
        for (size_t k = 3; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && !(past_inputs && k >= 6 && k <= 7))
                return rz_refuse(z, node,
                                 k >= 6 ? " inputs must be two graph inputs given together"
                                        : " input is not supported (MatMul + Add projections "
                                          "around query, key, value are)",
                                 k >= 6      ? "past_key / past_value"
                                 : k - 3 < 5 ? names[k - 3]
                                             : "optional");
        for (size_t k = 1; k < n->n_outputs; k++)
            if (n->outputs[k] >= 0 && !(past_inputs && k <= 2))
                return rz_refuse(z, node, " outputs need past_key / past_value inputs",
                                 "present_key / present_value");
    } else {
        static const char *const names[] = {"past", "attention_bias", "past_sequence_length"};
        for (size_t k = 4; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0)
                return rz_refuse(z, node, " input is not supported",
                                 k - 4 < 3 ? names[k - 4] : "optional");
        for (size_t k = 1; k < n->n_outputs; k++)
            if (n->outputs[k] >= 0)
                return rz_refuse(z, node, " output is not supported", "present");
    }
    return MHA_OK;
}

mha_status rz_recognize_once(const mha_alloc_ctx *a, const ir_graph *g, layer *out,
                             mha_error *err) {
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
        const int ms = strcmp(n->domain, "com.microsoft") == 0;
        if (ms && !rz_is_ms_op(n, "MultiHeadAttention") && !rz_is_ms_op(n, "Attention") &&
            !rz_is_fused_matmul(n)) {
            st = mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: of the com.microsoft operators only MultiHeadAttention, "
                          "Attention and FusedMatMul (the scores) are supported",
                          ir_node_desc(n, d1, sizeof d1));
            goto done;
        }
        if (!ms && n->domain[0] != '\0' && strcmp(n->domain, "ai.onnx") != 0) {
            st = mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: operator domain '%s' is not "
                          "supported",
                          ir_node_desc(n, d1, sizeof d1), n->domain);
            goto done;
        }
        if (!rz_is_op(n, "Attention") && !rz_is_op(n, "Softmax") && (!ms || rz_is_fused_matmul(n)))
            continue;
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
    const int ms_core = strcmp(g->nodes[core].domain, "com.microsoft") == 0;
    if (st == MHA_OK && ms_core) {
        st = rz_check_ms_features(&z, core);
        if (st == MHA_OK) st = rz_fill_io(&z, out);
        if (st == MHA_OK && rz_is_ms_op(&g->nodes[core], "Attention"))
            st = rz_recognize_ms_attention(&z, core, out);
        else if (st == MHA_OK) {
            st = rz_parse_attention_core(&z, core);
            if (st == MHA_OK) st = rz_recognize_projected(&z, out);
        }
        goto done;
    }
    if (st == MHA_OK && rz_is_op(&g->nodes[core], "Attention"))
        st = rz_check_attention_features(
            &z, core, rz_graph_input_index(&z, ir_node_input(&g->nodes[core], 0)) >= 0);
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
