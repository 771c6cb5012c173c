/* recognize_graph.c -- phase 1 of the layer recogniser: static analysis of
 * the graph by op types and data flow. Which graph inputs every value
 * depends on, the chains of layout ops and scalar factors around the
 * attention core (walked by recognize_chain.c), and the projections at
 * their ends. Nothing here looks at tensor values or shapes;
 * recognize_map.c gives the chains their meaning. */
#include "recognize_internal.h"

#include <stdio.h>
#include <string.h>

/* Layout ops that keep the elements in their flat order (only the shape
 * changes): on the scores path they leave every score where it was. */
static int rz_is_flat_layout_op(const ir_node *n) {
    return rz_is_op(n, "Reshape") || rz_is_op(n, "Squeeze") || rz_is_op(n, "Unsqueeze") ||
           rz_is_op(n, "Flatten");
}

/* The equation of an Einsum node, parsed; 0 when it is not one we read. */
int rz_einsum_of(const ir_node *n, interp_einsum *e) {
    if (!rz_is_op(n, "Einsum")) return 0;
    const ir_attr *at = ir_node_attr(n, "equation");
    return at && at->type == IR_ATTR_STRING && interp_einsum_parse(at->s, e) &&
           (size_t)e->n_in == n->n_inputs;
}

int rz_einsum_proj_k(const rz_ctx *z, const ir_node *n) {
    interp_einsum e;
    if (!rz_einsum_of(n, &e) || e.n_in != 2 || n->inputs[0] < 0 || n->inputs[1] < 0 ||
        z->deps[n->inputs[1]] != 0 || z->deps[n->inputs[0]] == 0)
        return 0;
    const char *x = e.in[0], *w = e.in[1];
    int rx = e.rank_in[0], rw = e.rank_in[1], k = 0;
    while (k < rx && k < rw && strchr(w, x[rx - 1 - k])) /* contracted letters shared */
        k++;
    if (k == 0 || k == rw) return 0;
    /* X's last k letters are W's first k, in order; out = X[:-k] W[k:] */
    if (memcmp(x + rx - k, w, (size_t)k) != 0 || e.rank_out != rx - k + rw - k) return 0;
    if (memcmp(e.out, x, (size_t)(rx - k)) != 0 || strcmp(e.out + rx - k, w + k) != 0) return 0;
    for (int i = 0; i < rx - k; i++)
        if (strchr(w, x[i])) return 0;
    return k;
}

/* A product of two data values: MatMul, a two-operand Einsum, or
 * com.microsoft FusedMatMul (Q.K^T with its scale, recognize_map.c). */
static int rz_is_product(const rz_ctx *z, const ir_node *n) {
    interp_einsum e;
    int two = n->n_inputs == 2 && n->inputs[0] >= 0 && n->inputs[1] >= 0;
    if (!two || z->deps[n->inputs[0]] == 0 || z->deps[n->inputs[1]] == 0) return 0;
    return rz_is_op(n, "MatMul") || rz_is_fused_matmul(n) || (rz_einsum_of(n, &e) && e.n_in == 2);
}

/* A projection: MatMul, Gemm, or an Einsum with a constant second operand
 * that is a MatMul of reshaped operands. */
static int rz_is_proj_op(const rz_ctx *z, const ir_node *n) {
    return rz_is_op(n, "MatMul") || rz_is_op(n, "Gemm") || rz_einsum_proj_k(z, n) > 0;
}

mha_status rz_analyse_deps(rz_ctx *z) {
    const ir_graph *g = z->g;
    z->deps = mha_calloc(z->a, g->n_values ? g->n_values : 1, sizeof *z->deps);
    z->n_uses = mha_calloc(z->a, g->n_values ? g->n_values : 1, sizeof *z->n_uses);
    if (!z->deps || !z->n_uses)
        return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory analysing the graph");
    for (size_t i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        if (v >= 0 && (size_t)v < g->n_values) z->deps[v] |= (uint64_t)1 << i;
    }
    /* Nodes are in topological order. Shape / Size read only the shape of
     * their input: what they produce does not depend on its values. */
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        uint64_t d = 0;
        int shape_op = rz_is_shape_op(n);
        for (size_t k = 0; k < n->n_inputs; k++) {
            int v = n->inputs[k];
            if (v < 0 || (size_t)v >= g->n_values) continue;
            if (!shape_op) {
                d |= z->deps[v];
                z->n_uses[v]++;
            }
        }
        for (size_t k = 0; k < n->n_outputs; k++) {
            int v = n->outputs[k];
            if (v >= 0 && (size_t)v < g->n_values) z->deps[v] = d;
        }
    }
    return MHA_OK;
}

static mha_status rz_refuse_node(rz_ctx *z, int node, const char *fmt_what, const char *what) {
    char d[160];
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s on the %s path: %s",
                    rz_node_desc(z, node, d, sizeof d), what, fmt_what);
}

mha_status rz_parse_in_proj(rz_ctx *z, int v, const char *what, rz_proj *p) {
    memset(p, 0, sizeof *p);
    p->bias_node = -1;
    p->b_v = -1;
    p->x_input = -1;
    p->out_v = v;
    int pid = rz_producer_id(z, v);
    if (pid < 0) {
        const ir_value *val = &z->g->values[v];
        if (val->graph_input >= 0 && strcmp(what, "Q") != 0 && val->rank == 4 &&
            val->dtype == MHA_DTYPE_FLOAT32) {
            /* K / V given already projected, in head layout (a cached
             * cross-attention): recognize_map.c reads the heads by meaning */
            p->given = 1;
            p->node = -1;
            p->w_v = -1;
            p->in_v = v;
            p->x_input = val->graph_input;
            p->xchain.src = p->xchain.dst = v;
            return MHA_OK;
        }
        if (val->graph_input >= 0) {
            /* name the node that reads it: Q given already projected ends
             * here, and K / V not in head layout */
            int reader = -1;
            for (size_t n = 0; n < z->g->n_nodes && reader < 0; n++)
                for (size_t k = 0; k < z->g->nodes[n].n_inputs; k++)
                    if (z->g->nodes[n].inputs[k] == v) reader = (int)n;
            if (reader >= 0) {
                char d[160];
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "%s on the %s path reads graph input '%s' with no projection "
                                "before it (MatMul or Gemm with a constant weight): %s given "
                                "already projected is not supported",
                                rz_node_desc(z, reader, d, sizeof d), what, val->name, what);
            }
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "the %s path starts at graph input '%s' without a projection "
                            "(MatMul or Gemm with a constant weight)",
                            what, val->name);
        }
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the %s path starts at constant '%s': no projection found", what,
                        val->name);
    }
    const ir_node *n = &z->g->nodes[pid];
    if (rz_is_op(n, "Add") && n->n_inputs == 2 && n->inputs[0] >= 0 && n->inputs[1] >= 0) {
        int a0 = n->inputs[0], a1 = n->inputs[1], mm;
        if (z->deps[a0] == 0 && z->deps[a1] != 0) {
            p->b_v = a0;
            mm = a1;
        } else if (z->deps[a1] == 0 && z->deps[a0] != 0) {
            p->b_v = a1;
            mm = a0;
        } else {
            return rz_refuse_node(z, pid, "adds two data-dependent values (not a bias)", what);
        }
        p->bias_node = pid;
        pid = rz_producer_id(z, mm);
        if (pid < 0)
            return rz_refuse_node(z, p->bias_node,
                                  "the bias is added to a value that is not a projection", what);
        n = &z->g->nodes[pid];
        if (!rz_is_proj_op(z, n))
            return rz_refuse_node(z, pid,
                                  "expected the projection (MatMul, Gemm or Einsum) before the "
                                  "bias",
                                  what);
    }
    if (rz_is_proj_op(z, n)) {
        int is_gemm = rz_is_op(n, "Gemm");
        if (n->n_inputs < 2 || n->inputs[0] < 0 || n->inputs[1] < 0)
            return rz_refuse_node(z, pid, "missing inputs", what);
        if (z->deps[n->inputs[1]] != 0)
            return rz_refuse_node(z, pid, "its weight (input 1) is not constant", what);
        if (z->deps[n->inputs[0]] == 0)
            return rz_refuse_node(z, pid, "its data input (input 0) is constant", what);
        if (is_gemm) {
            if (ir_attr_int(n, "transA", 0) != 0)
                return rz_refuse_node(z, pid, "Gemm with transA=1 is not supported", what);
            int c = ir_node_input(n, 2);
            if (c >= 0) {
                if (p->b_v >= 0)
                    return rz_refuse_node(z, pid, "Gemm with a bias and a second bias Add", what);
                if (z->deps[c] != 0)
                    return rz_refuse_node(z, pid, "its bias (input 2) is not constant", what);
                p->b_v = c;
            }
        }
        p->node = pid;
        p->in_v = n->inputs[0];
        p->w_v = n->inputs[1];
    } else {
        /* a KV cache: the new keys / values appended to a past graph input */
        int past = -1;
        for (size_t k = 0; rz_is_op(n, "Concat") && k < n->n_inputs; k++) {
            int iv = n->inputs[k];
            if (iv >= 0 && z->g->values[iv].producer < 0 && z->g->values[iv].graph_input >= 0)
                past = iv;
        }
        if (past >= 0) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "concatenates a cache input ('%s') with the data: a KV cache is "
                     "served as Concat(past, new rows) on the K and V paths only",
                     rz_value_name(z, past));
            return rz_refuse_node(z, pid, msg, what);
        }
        return rz_refuse_node(z, pid,
                              "not a projection (MatMul/Gemm [+ Add]), layout op or scalar "
                              "factor",
                              what);
    }
    /* From the graph input to the projection: layout ops only. */
    mha_status st = rz_walk_back(z, p->in_v, 0, what, &p->xchain);
    if (st != MHA_OK) return st;
    int src = p->xchain.src;
    int spid = rz_producer_id(z, src);
    if (spid >= 0)
        return rz_refuse_node(z, spid,
                              "between the graph input and the projection only layout ops "
                              "are supported",
                              what);
    if (z->g->values[src].graph_input < 0)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the %s projection reads '%s', which is not a graph input", what,
                        z->g->values[src].name);
    p->x_input = z->g->values[src].graph_input;
    return MHA_OK;
}

mha_status rz_parse_out_proj(rz_ctx *z, int node, int v, rz_proj *p, rz_chain *ych) {
    memset(p, 0, sizeof *p);
    p->bias_node = -1;
    p->b_v = -1;
    p->x_input = -1;
    const char *what = "output";
    if (node < 0) {
        /* the merged heads are the graph output: a layer whose projection
         * is the identity (the map checks they are [B, S, H dv]) */
        p->node = -1;
        p->w_v = -1;
        p->in_v = p->out_v = v;
        p->identity = 1;
        ych->src = ych->dst = v;
        ych->n = 0;
        return MHA_OK;
    }
    const ir_node *n = &z->g->nodes[node];
    if (!rz_is_proj_op(z, n))
        return rz_refuse_node(z, node,
                              "expected the output projection (MatMul, Gemm or Einsum with a "
                              "constant weight), a layout op or a scalar factor",
                              what);
    if (n->n_inputs < 2 || n->inputs[0] != v || n->inputs[1] < 0 || z->deps[n->inputs[1]] != 0)
        return rz_refuse_node(z, node,
                              "the output projection needs the data as input 0 "
                              "and a constant weight as input 1",
                              what);
    if (rz_is_op(n, "Gemm")) {
        if (ir_attr_int(n, "transA", 0) != 0)
            return rz_refuse_node(z, node, "Gemm with transA=1 is not supported", what);
        int c = ir_node_input(n, 2);
        if (c >= 0) {
            if (z->deps[c] != 0)
                return rz_refuse_node(z, node, "its bias (input 2) is not constant", what);
            p->b_v = c;
        }
    }
    if (n->n_outputs < 1 || n->outputs[0] < 0)
        return rz_refuse_node(z, node, "its output is omitted", what);
    p->node = node;
    p->in_v = v;
    p->w_v = n->inputs[1];
    p->out_v = n->outputs[0];
    /* A bias Add right after (MatMul, or Gemm without C). */
    int cn, cs;
    mha_status st = rz_single_consumer(z, p->out_v, what, &cn, &cs);
    if (st != MHA_OK) return st;
    if (cn >= 0 && p->b_v < 0) {
        const ir_node *an = &z->g->nodes[cn];
        if (rz_is_op(an, "Add") && an->n_inputs == 2) {
            int other = an->inputs[1 - cs];
            if (other >= 0 && z->deps[other] == 0 && an->n_outputs >= 1 && an->outputs[0] >= 0) {
                p->bias_node = cn;
                p->b_v = other;
                p->out_v = an->outputs[0];
            }
        }
    }
    int stop;
    st = rz_walk_forward(z, p->out_v, what, ych, &stop);
    if (st != MHA_OK) return st;
    if (stop >= 0) {
        /* the block around the layer: a residual Add of a graph input */
        const ir_node *sn = &z->g->nodes[stop];
        for (size_t k = 0; rz_is_op(sn, "Add") && k < sn->n_inputs; k++) {
            int iv = sn->inputs[k];
            if (iv >= 0 && iv != ych->dst && z->deps[iv] != 0)
                return rz_refuse_node(z, stop,
                                      "adds the attention output to another data value (a "
                                      "residual connection): the block around the attention "
                                      "layer (residual, normalisation) is not supported, "
                                      "only the layer itself",
                                      what);
        }
        return rz_refuse_node(z, stop,
                              "after the output projection only layout ops and scalar "
                              "factors may lead to the graph output",
                              what);
    }
    return MHA_OK;
}

/* Whether v (walking back through factors, Identity/Cast and Add) comes from
 * a MatMul of two data-dependent operands: the Q.K^T scores. *budget bounds
 * the walk (a chain of Add(x, x) would otherwise branch exponentially). */
static int rz_reaches_scores_walk(const rz_ctx *z, int v, int depth, int *budget) {
    if (depth > RZ_MAX_STEPS || v < 0 || --*budget < 0) return 0;
    const ir_node *n = rz_producer(z, v);
    if (!n) return 0;
    if (rz_is_op(n, "MatMul") || rz_is_op(n, "Einsum") || rz_is_fused_matmul(n))
        return rz_is_product(z, n);
    if ((rz_is_op(n, "Identity") || rz_is_op(n, "Cast") || rz_is_op(n, "Tanh") ||
         rz_is_flat_layout_op(n)) &&
        n->n_inputs >= 1)
        return rz_reaches_scores_walk(z, n->inputs[0], depth + 1, budget);
    if (rz_is_op(n, "Where") && n->n_inputs == 3)
        return rz_reaches_scores_walk(z, n->inputs[1], depth + 1, budget) ||
               rz_reaches_scores_walk(z, n->inputs[2], depth + 1, budget);
    if ((rz_is_op(n, "Mul") || rz_is_op(n, "Div") || rz_is_op(n, "Add") || rz_is_op(n, "Max")) &&
        n->n_inputs == 2)
        return rz_reaches_scores_walk(z, n->inputs[0], depth + 1, budget) ||
               rz_reaches_scores_walk(z, n->inputs[1], depth + 1, budget);
    return 0;
}

static int rz_reaches_scores(const rz_ctx *z, int v) {
    int budget = 4096;
    return rz_reaches_scores_walk(z, v, 0, &budget);
}

/* A KV cache on the K (side 0) or V (side 1) path: the chain starts at
 * Concat(past, new), past a graph input, new computed from the data. The
 * chain goes on below `new` through layout ops only (a factor there would
 * scale the new rows and not the cached ones), with the Concat as a step of
 * its own; recognize_map.c traces the past rows, the verifier the rest. */
static mha_status rz_cache_pass(rz_ctx *z, int side, const char *what, rz_chain *ch) {
    const int pid = rz_producer_id(z, ch->src);
    const ir_node *n = pid >= 0 ? &z->g->nodes[pid] : NULL;
    if (!n || !rz_is_op(n, "Concat") || n->n_inputs != 2 || n->n_outputs < 1) return MHA_OK;
    int past = -1;
    for (int k = 0; k < 2; k++) {
        const int iv = n->inputs[k];
        if (iv >= 0 && z->g->values[iv].producer < 0 && z->g->values[iv].graph_input >= 0) past = k;
    }
    const int nv = past >= 0 ? n->inputs[1 - past] : -1;
    if (nv < 0 || z->deps[nv] == 0) return MHA_OK; /* the projection parser refuses it */
    if (past != 0)
        return rz_refuse_node(z, pid,
                              "appends the cache input after the new rows (a KV cache holds "
                              "the earlier positions first)",
                              what);
    rz_chain lower;
    mha_status st = rz_walk_back(z, nv, 0, what, &lower);
    if (st != MHA_OK) return st;
    if (lower.n + 1 + ch->n > RZ_MAX_STEPS)
        return rz_refuse_node(z, pid, "too many layout ops around the cache", what);
    /* lower (projection -> new), the Concat, then the steps after it */
    memmove(ch->steps + lower.n + 1, ch->steps, (size_t)ch->n * sizeof ch->steps[0]);
    memcpy(ch->steps, lower.steps, (size_t)lower.n * sizeof ch->steps[0]);
    rz_step *cs = &ch->steps[lower.n];
    cs->node = pid;
    cs->kind = RZ_STEP_CACHE;
    cs->data_in = 1;
    cs->data_out = 0;
    ch->n += lower.n + 1;
    ch->src = lower.src;
    rz_core *c = &z->core;
    c->cache_on[side] = 1;
    c->cache_node[side] = pid;
    c->past_v[side] = n->inputs[0];
    c->present_v[side] = n->outputs[0];
    return MHA_OK;
}

static mha_status rz_parse_operands(rz_ctx *z) {
    rz_core *c = &z->core;
    static const char *const names[3] = {"Q", "K", "V"};
    int ops[3] = {c->q_v, c->k_v, c->v_v};
    rz_chain *chains[3] = {&c->qchain, &c->kchain, &c->vchain};
    rz_proj *projs[3] = {&c->qp, &c->kp, &c->vp};
    for (int i = 0; i < 3; i++) {
        mha_status st = rz_walk_back(z, ops[i], 1, names[i], chains[i]);
        if (st == MHA_OK && i > 0) st = rz_cache_pass(z, i - 1, names[i], chains[i]);
        if (st == MHA_OK && i < 2) st = rz_rotary_pass(z, i, names[i], chains[i]);
        if (st == MHA_OK && i < 2) st = rz_qknorm_pass(z, i, names[i], chains[i]);
        if (st == MHA_OK) st = rz_parse_in_proj(z, chains[i]->src, names[i], projs[i]);
        if (st != MHA_OK) return st;
    }
    if (c->cache_on[0] != c->cache_on[1]) {
        const int side = c->cache_on[0] ? 0 : 1;
        char d[160];
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s on the %s path appends the new rows to a cache input ('%s'), but "
                        "the %s path has no cache: a KV cache holds both keys and values",
                        rz_node_desc(z, c->cache_node[side], d, sizeof d), names[1 + side],
                        rz_value_name(z, c->past_v[side]), names[2 - side]);
    }
    if (c->kp.given != c->vp.given)
        return mha_fail(
            z->err, MHA_ERR_MODEL_UNSUPPORTED,
            "%s is given by graph input '%s' without a projection, %s is projected: "
            "K and V given already projected are supported together",
            c->kp.given ? "K" : "V",
            z->g->values[z->g->inputs[c->kp.given ? c->kp.x_input : c->vp.x_input]].name,
            c->kp.given ? "V" : "K");
    if (c->kp.given && c->kp.x_input == c->vp.x_input)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "K and V are both read from graph input '%s' without a projection",
                        z->g->values[z->g->inputs[c->kp.x_input]].name);
    /* different key and value inputs (DETR) are served, the key's the
     * query's too (layer.k_from_query); the value's the query's is not */
    if (c->kp.x_input != c->vp.x_input && !c->kp.given && c->vp.x_input == c->qp.x_input) {
        char d[160];
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s (V projection): the K and V projections read different graph inputs "
                        "('%s' and '%s'), one of them the query's: separate key and value inputs "
                        "are supported, not a query input shared with one of them",
                        rz_node_desc(z, c->vp.node, d, sizeof d),
                        z->g->values[z->g->inputs[c->kp.x_input]].name,
                        z->g->values[z->g->inputs[c->vp.x_input]].name);
    }
    int stop;
    mha_status st = rz_walk_forward(z, c->o_v, "output", &c->ochain, &stop);
    if (st != MHA_OK) return st;
    return rz_parse_out_proj(z, stop, c->ochain.dst, &c->op, &c->ychain);
}

mha_status rz_parse_attention_core(rz_ctx *z, int node) {
    rz_core *c = &z->core;
    const ir_node *n = &z->g->nodes[node];
    c->kind = RZ_CORE_ATTENTION;
    c->node = node;
    c->q_v = ir_node_input(n, 0);
    c->k_v = ir_node_input(n, 1);
    c->v_v = ir_node_input(n, 2);
    c->o_v = n->n_outputs > 0 ? n->outputs[0] : -1;
    c->mask_input = -1;
    char d[160];
    if (c->q_v < 0 || c->k_v < 0 || c->v_v < 0 || c->o_v < 0)
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: Q, K, V and Y are required",
                        rz_node_desc(z, node, d, sizeof d));
    int m = ir_node_input(n, 3);
    if (m >= 0) {
        const ir_value *mv = &z->g->values[m];
        if (mv->producer >= 0 || mv->graph_input < 0)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: an attn_mask computed in the graph ('%s') is not "
                            "supported yet; it must be a graph input",
                            rz_node_desc(z, node, d, sizeof d), mv->name);
        c->mask_input = m;
    }
    /* a KV cache: the node concatenates its past_key / past_value graph
     * inputs (checked by recognize.c) before the new K / V itself: inputs 4
     * and 5 of Attention, 6 and 7 of com.microsoft MultiHeadAttention */
    const int ms = strcmp(n->domain, "com.microsoft") == 0;
    for (int side = 0; side < 2; side++) {
        const int past = ir_node_input(n, (size_t)((ms ? 6 : 4) + side));
        if (past < 0) continue;
        c->cache_on[side] = 1;
        c->cache_node[side] = node;
        c->past_v[side] = past;
        c->present_v[side] = n->n_outputs > (size_t)(1 + side) ? n->outputs[1 + side] : -1;
    }
    return rz_parse_operands(z);
}

/* The consumer of the probabilities P that leads to P.V (MatMul input 0,
 * or a Cast / Identity before it), when P has two consumers. */
static mha_status rz_pv_consumer(rz_ctx *z, int p, int *node, int *slot) {
    *node = -1;
    *slot = -1;
    for (size_t ni = 0; ni < z->g->n_nodes; ni++) {
        const ir_node *n = &z->g->nodes[ni];
        int at = n->n_inputs >= 1 && n->inputs[0] == p   ? 0
                 : n->n_inputs >= 2 && n->inputs[1] == p ? 1
                                                         : -1;
        if (at < 0) continue;
        /* an Einsum may take P second */
        if ((at == 0 &&
             (rz_is_op(n, "MatMul") || rz_is_op(n, "Cast") || rz_is_op(n, "Identity"))) ||
            rz_is_op(n, "Einsum")) {
            *node = (int)ni;
            *slot = at;
        }
    }
    return MHA_OK;
}

/* need_weights: P feeds P.V and a second chain of layout ops -- with one
 * ReduceMean, or a ReduceSum and constant factors, for the mean over the
 * heads; without, the probabilities of every head -- ending at a graph
 * output (what the chain means, the verifier confirms). *out is that
 * output, or -1 when P has one consumer; *reduced whether it averages. */
static mha_status rz_parse_weights_branch(rz_ctx *z, int p, int *out, int *reduced) {
    const ir_graph *g = z->g;
    int other = -1, count = 0;
    *out = -1;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (rz_is_shape_op(n)) continue;
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] == p) {
                count++;
                if (!(rz_is_op(n, "MatMul") || rz_is_op(n, "Einsum") || rz_is_op(n, "Cast") ||
                      rz_is_op(n, "Identity")))
                    other = (int)ni;
            }
    }
    if (count != 2 || other < 0) return MHA_OK; /* the usual single chain, checked later */
    int cur = p, node = other;
    char d[160];
    *reduced = 0;
    for (int hops = 0; node >= 0; hops++) {
        const ir_node *n = &g->nodes[node];
        int reduce = rz_is_op(n, "ReduceMean") || rz_is_op(n, "ReduceSum");
        int factor = (rz_is_op(n, "Mul") || rz_is_op(n, "Div")) && n->n_inputs == 2 &&
                     n->inputs[1] >= 0 && z->deps[n->inputs[1]] == 0;
        int ok = hops < RZ_MAX_STEPS && n->n_outputs >= 1 && n->outputs[0] >= 0 &&
                 n->n_inputs >= 1 && n->inputs[0] == cur &&
                 (rz_is_layout_op(n) || (reduce && !*reduced) || factor);
        if (!ok)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: the attention probabilities feed it besides P.V; only they "
                            "(layout ops) or their mean over the heads (one ReduceMean, or "
                            "ReduceSum and constant factors) may be a second output",
                            rz_node_desc(z, node, d, sizeof d));
        mha_status st = rz_check_plumbing(z, node, 0, "attention weights");
        if (st != MHA_OK) return st;
        *reduced |= reduce;
        cur = n->outputs[0];
        int slot;
        st = rz_single_consumer(z, cur, "attention weights", &node, &slot);
        if (st != MHA_OK) return st;
    }
    if (!rz_is_graph_output(z, cur))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the attention probabilities reach '%s', not a graph output",
                        rz_value_name(z, cur));
    *out = cur;
    return MHA_OK;
}

mha_status rz_parse_softmax_core(rz_ctx *z, int node) {
    rz_core *c = &z->core;
    const ir_node *sm = &z->g->nodes[node];
    char d[160];
    c->kind = RZ_CORE_SOFTMAX;
    c->node = node;
    c->mask_input = -1;
    if (sm->n_inputs < 1 || sm->inputs[0] < 0 || sm->n_outputs < 1 || sm->outputs[0] < 0)
        return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: missing input or output",
                        rz_node_desc(z, node, d, sizeof d));
    /* From the Softmax input back to Q.K^T: scalar factors and additive
     * mask terms only. */
    int cur = sm->inputs[0];
    for (;;) {
        int pid = rz_producer_id(z, cur);
        if (pid < 0)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: its input '%s' is not computed from Q.K^T",
                            rz_node_desc(z, node, d, sizeof d), rz_value_name(z, cur));
        const ir_node *p = &z->g->nodes[pid];
        if (rz_is_product(z, p) && rz_reaches_scores(z, cur)) {
            c->score_mm = pid;
            break;
        }
        if (c->n_score_steps == RZ_MAX_STEPS)
            return rz_refuse_node(z, pid, "too many steps", "scores");
        if (rz_is_op(p, "Add") && p->n_inputs == 2 && p->inputs[0] >= 0 && p->inputs[1] >= 0) {
            int r0 = rz_reaches_scores(z, p->inputs[0]);
            int r1 = rz_reaches_scores(z, p->inputs[1]);
            if (r0 == r1)
                return rz_refuse_node(z, pid,
                                      r0 ? "adds two score terms"
                                         : "neither operand comes from the Q.K^T MatMul",
                                      "scores");
            if (c->n_masks == RZ_MAX_MASK_TERMS)
                return rz_refuse_node(z, pid, "too many additive mask terms", "scores");
            rz_mask_term *t = &c->masks[c->n_masks++];
            t->value = p->inputs[r0 ? 1 : 0];
            t->above = c->n_score_steps;
            t->add_node = pid;
            cur = p->inputs[r0 ? 0 : 1];
            continue;
        }
        if (rz_is_op(p, "Sub") && p->n_inputs == 2 && p->inputs[0] >= 0 && p->inputs[1] >= 0 &&
            rz_reaches_scores(z, p->inputs[0]) && !rz_reaches_scores(z, p->inputs[1])) {
            /* scores minus a term computed apart from them: the term negated */
            if (c->n_masks == RZ_MAX_MASK_TERMS)
                return rz_refuse_node(z, pid, "too many additive mask terms", "scores");
            rz_mask_term *t = &c->masks[c->n_masks++];
            t->value = p->inputs[1];
            t->negated = 1;
            t->above = c->n_score_steps;
            t->add_node = pid;
            cur = p->inputs[0];
            continue;
        }
        if (rz_is_op(p, "Where") && p->n_inputs == 3 && p->inputs[0] >= 0 && p->inputs[1] >= 0 &&
            p->inputs[2] >= 0) {
            /* masked_fill / torch.where: the scores on one side, a fill value
             * on the other, a condition computed apart from the scores */
            int r1 = rz_reaches_scores(z, p->inputs[1]);
            int r2 = rz_reaches_scores(z, p->inputs[2]);
            if (r1 == r2 || rz_reaches_scores(z, p->inputs[0]))
                return rz_refuse_node(z, pid,
                                      "a Where on the scores must choose between the scores "
                                      "and a fill value computed apart from them",
                                      "scores");
            if (c->n_masks == RZ_MAX_MASK_TERMS)
                return rz_refuse_node(z, pid, "too many mask terms", "scores");
            rz_mask_term *t = &c->masks[c->n_masks++];
            t->kind = RZ_TERM_WHERE;
            t->cond = p->inputs[0];
            t->value = p->inputs[r1 ? 2 : 1];
            t->fill_when = r1 ? 0 : 1;
            t->above = c->n_score_steps;
            t->add_node = pid;
            cur = p->inputs[r1 ? 1 : 2];
            continue;
        }
        if (rz_is_op(p, "Tanh") && p->n_inputs == 1 && p->inputs[0] >= 0) {
            if (c->softcap_on)
                return rz_refuse_node(z, pid, "a second Tanh on the scores", "scores");
            c->softcap_on = 1;
            c->softcap_at = c->n_score_steps;
            cur = p->inputs[0];
            continue;
        }
        if (rz_is_op(p, "Max") && p->n_inputs == 2 && p->inputs[0] >= 0 && p->inputs[1] >= 0 &&
            rz_reaches_scores(z, p->inputs[0]) != rz_reaches_scores(z, p->inputs[1])) {
            /* torch.max(scores, floor): the floor a constant (what it
             * clamps, recognize_effect.c reads and checks) */
            const int r0 = rz_reaches_scores(z, p->inputs[0]);
            const int floor_v = p->inputs[r0 ? 1 : 0];
            if (z->deps[floor_v] != 0)
                return rz_refuse_node(z, pid, "a Max on the scores must clamp them at a constant",
                                      "scores");
            if (c->n_masks == RZ_MAX_MASK_TERMS)
                return rz_refuse_node(z, pid, "too many mask terms", "scores");
            rz_mask_term *t = &c->masks[c->n_masks++];
            t->kind = RZ_TERM_CLAMP;
            t->value = floor_v;
            t->above = c->n_score_steps;
            t->add_node = pid;
            cur = p->inputs[r0 ? 0 : 1];
            continue;
        }
        int in_slot = 0;
        if ((rz_is_op(p, "Mul") || rz_is_op(p, "Div")) && p->n_inputs == 2 && p->inputs[0] >= 0 &&
            z->deps[p->inputs[0]] == 0)
            in_slot = 1;
        rz_step s;
        int flat = rz_is_flat_layout_op(p);
        if (rz_is_op(p, "Split") || (rz_is_layout_op(p) && !flat) ||
            !rz_classify_step(z, pid, in_slot, 1, &s))
            return rz_refuse_node(z, pid,
                                  "between Q.K^T and Softmax only scalar factors, reshapes, "
                                  "additive masks and masked fills are supported",
                                  "scores");
        if (flat) {
            mha_status st = rz_check_plumbing(z, pid, 0, "scores");
            if (st != MHA_OK) return st;
        }
        c->score_steps[c->n_score_steps++] = s;
        cur = p->inputs[s.data_in];
    }
    /* a mask term inside the soft-capping would be capped with the scores */
    for (int t = 0; c->softcap_on && t < c->n_masks; t++)
        if (c->masks[t].above > c->softcap_at || c->masks[t].kind == RZ_TERM_CLAMP)
            return rz_refuse_node(z, c->masks[t].add_node,
                                  "a mask term or clamp inside the soft-capping (tanh) of the "
                                  "scores",
                                  "scores");
    /* Softmax -> the P.V MatMul, through casts back to the data type
     * (softmax computed in float32) and reshapes that keep the flat order
     * (BLOOM's [B, H, S, S] probabilities viewed as [B*H, S, S]); maybe also
     * to a graph output of the probabilities (need_weights). */
    int pv, slot, p_v = sm->outputs[0];
    c->weights_out = -1;
    mha_status st = rz_parse_weights_branch(z, p_v, &c->weights_out, &c->weights_mean);
    if (st != MHA_OK) return st;
    for (int hops = 0;; hops++) {
        st = hops == 0 && c->weights_out >= 0 ? rz_pv_consumer(z, p_v, &pv, &slot)
                                              : rz_single_consumer(z, p_v, "attention", &pv, &slot);
        if (st != MHA_OK) return st;
        const ir_node *cn = pv >= 0 ? &z->g->nodes[pv] : NULL;
        const int flat = cn && rz_is_flat_layout_op(cn);
        if (!cn || hops == RZ_MAX_STEPS || slot != 0 || cn->n_outputs < 1 ||
            !(rz_is_op(cn, "Cast") || rz_is_op(cn, "Identity") || flat))
            break;
        if (flat) {
            st = rz_check_plumbing(z, pv, 0, "attention");
            if (st != MHA_OK) return st;
        }
        c->p_steps[c->n_p_steps].node = pv;
        c->p_steps[c->n_p_steps].kind = flat ? RZ_STEP_LAYOUT : RZ_STEP_IDENTITY;
        c->p_steps[c->n_p_steps].data_in = 0;
        c->p_steps[c->n_p_steps].data_out = 0;
        c->n_p_steps++;
        p_v = cn->outputs[0];
    }
    /* P.V: a MatMul with P first, or a two-operand Einsum */
    int pv_ok =
        pv >= 0 && ((rz_is_op(&z->g->nodes[pv], "MatMul") && slot == 0) ||
                    (rz_is_product(z, &z->g->nodes[pv]) && rz_is_op(&z->g->nodes[pv], "Einsum")));
    if (!pv_ok) {
        if (pv < 0)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: its output is not multiplied by V",
                            rz_node_desc(z, node, d, sizeof d));
        return rz_refuse_node(z, pv, "expected the P.V MatMul right after Softmax", "attention");
    }
    const ir_node *pvn = &z->g->nodes[pv];
    const ir_node *qk = &z->g->nodes[c->score_mm];
    c->pv_mm = pv;
    c->q_v = qk->inputs[0];
    c->k_v = qk->inputs[1];
    c->v_v = ir_node_input(pvn, 1 - slot);
    interp_einsum e;
    if (rz_einsum_of(qk, &e)) {
        /* Q is the operand with the scores' query letter (output axis -2) */
        if (e.rank_out < 2 || strchr(e.in[0], e.out[e.rank_out - 2]) == NULL) {
            c->q_v = qk->inputs[1];
            c->k_v = qk->inputs[0];
        }
    }
    c->o_v = pvn->n_outputs > 0 ? pvn->outputs[0] : -1;
    if (c->v_v < 0 || z->deps[c->v_v] == 0 || c->o_v < 0)
        return rz_refuse_node(z, pv, "V must be computed from a graph input", "attention");
    return rz_parse_operands(z);
}
