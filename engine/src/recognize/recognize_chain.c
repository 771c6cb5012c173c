/* recognize_chain.c -- the data-flow primitives of the recogniser's static
 * analysis (recognize_graph.c, recognize_rotary.c): questions about one
 * node (its op, a printable description, its producer), and chains of
 * layout ops and scalar factors walked back from a value or forward to its
 * single consumer. Nothing here looks at tensor values or shapes. */
#include "recognize_internal.h"

#include <stdio.h>
#include <string.h>

int rz_is_op(const ir_node *n, const char *op) {
    return n && n->domain[0] == '\0' && strcmp(n->op_type, op) == 0;
}

int rz_is_fused_matmul(const ir_node *n) {
    return n && strcmp(n->domain, "com.microsoft") == 0 && strcmp(n->op_type, "FusedMatMul") == 0;
}

int rz_is_shape_op(const ir_node *n) {
    return rz_is_op(n, "Shape") || rz_is_op(n, "Size");
}

/* Ops that only move elements: their input 0 is the data, every other
 * input is plumbing (shapes, axes, indices) computed from shapes alone. */
int rz_is_layout_op(const ir_node *n) {
    static const char *const ops[] = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten",
                                      "Expand",  "Tile",      "Slice",   "Gather",    "Split"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (rz_is_op(n, ops[i])) return 1;
    return 0;
}

const char *rz_node_desc(const rz_ctx *z, int node, char *buf, size_t size) {
    if (node < 0 || (size_t)node >= z->g->n_nodes) {
        snprintf(buf, size, "(no node)");
        return buf;
    }
    return ir_node_desc(&z->g->nodes[node], buf, size);
}

const ir_node *rz_producer(const rz_ctx *z, int v) {
    if (v < 0 || (size_t)v >= z->g->n_values) return NULL;
    int p = z->g->values[v].producer;
    return p >= 0 ? &z->g->nodes[p] : NULL;
}

int rz_producer_id(const rz_ctx *z, int v) {
    if (v < 0 || (size_t)v >= z->g->n_values) return -1;
    return z->g->values[v].producer;
}

const char *rz_value_name(const rz_ctx *z, int v) {
    if (v < 0 || (size_t)v >= z->g->n_values) return "";
    return z->g->values[v].name;
}

int rz_is_graph_output(const rz_ctx *z, int v) {
    for (size_t i = 0; i < z->g->n_outputs; i++)
        if (z->g->outputs[i] == v) return 1;
    return 0;
}

/* Every input but the data input must be plumbing: no dependence on the
 * values of any graph input. */
mha_status rz_check_plumbing(rz_ctx *z, int node, int data_in, const char *what) {
    const ir_node *n = &z->g->nodes[node];
    for (size_t k = 0; k < n->n_inputs; k++) {
        int v = n->inputs[k];
        if ((int)k == data_in || v < 0) continue;
        if (z->deps[v] != 0) {
            char d[160];
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s on the %s path: its input %zu ('%s') depends on the data, "
                            "not only on shapes and constants",
                            rz_node_desc(z, node, d, sizeof d), what, k, rz_value_name(z, v));
        }
    }
    return MHA_OK;
}

/* Classifies node `node` as a chain step when `v` flows through its input
 * `in_slot`. Returns 0 when the node is not a layout op / factor. */
int rz_classify_step(const rz_ctx *z, int node, int in_slot, int allow_factors, rz_step *s) {
    const ir_node *n = &z->g->nodes[node];
    s->node = node;
    s->data_in = in_slot;
    s->data_out = 0;
    if (rz_is_layout_op(n)) {
        if (in_slot != 0) return 0;
        s->kind = RZ_STEP_LAYOUT;
        return 1;
    }
    if (rz_is_op(n, "Identity") || rz_is_op(n, "Cast")) {
        if (in_slot != 0) return 0;
        s->kind = RZ_STEP_IDENTITY;
        return 1;
    }
    if (!allow_factors || n->n_inputs != 2) return 0;
    int other = n->inputs[1 - in_slot];
    if (other < 0 || z->deps[other] != 0) return 0;
    if (rz_is_op(n, "Mul")) {
        s->kind = RZ_STEP_MUL;
        return 1;
    }
    if (rz_is_op(n, "Div") && in_slot == 0) {
        s->kind = RZ_STEP_DIV;
        return 1;
    }
    return 0;
}

mha_status rz_walk_back(rz_ctx *z, int v, int allow_factors, const char *what, rz_chain *ch) {
    rz_step rev[RZ_MAX_STEPS];
    int n = 0, cur = v;
    for (;;) {
        int pid = rz_producer_id(z, cur);
        if (pid < 0) break;
        const ir_node *p = &z->g->nodes[pid];
        /* Which input of the producer carries the data: the one that
         * depends on graph inputs (for a factor, the other is a constant). */
        int in_slot = 0;
        if ((rz_is_op(p, "Mul") || rz_is_op(p, "Div")) && p->n_inputs == 2 && p->inputs[0] >= 0 &&
            z->deps[p->inputs[0]] == 0)
            in_slot = 1;
        rz_step s;
        if (!rz_classify_step(z, pid, in_slot, allow_factors, &s)) break;
        for (size_t k = 0; k < p->n_outputs; k++)
            if (p->outputs[k] == cur) s.data_out = (int)k;
        mha_status st = rz_check_plumbing(z, pid, s.data_in, what);
        if (st != MHA_OK) return st;
        if (n == RZ_MAX_STEPS) {
            char d[160];
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: more than %d layout ops on the %s path",
                            rz_node_desc(z, pid, d, sizeof d), RZ_MAX_STEPS, what);
        }
        rev[n++] = s;
        cur = p->inputs[s.data_in];
        if (cur < 0) {
            char d[160];
            return mha_fail(z->err, MHA_ERR_MODEL_FORMAT, "%s: missing data input",
                            rz_node_desc(z, pid, d, sizeof d));
        }
    }
    ch->src = cur;
    ch->dst = v;
    ch->n = n;
    for (int i = 0; i < n; i++)
        ch->steps[i] = rev[n - 1 - i];
    return MHA_OK;
}

/* The single data consumer of v: *node, *slot; 0 consumers -> *node = -1. */
mha_status rz_single_consumer(rz_ctx *z, int v, const char *what, int *node, int *slot) {
    const ir_graph *g = z->g;
    *node = -1;
    *slot = -1;
    int count = 0, second = -1;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (rz_is_shape_op(n)) continue;
        for (size_t k = 0; k < n->n_inputs; k++) {
            if (n->inputs[k] != v) continue;
            if (count == 0) {
                *node = (int)ni;
                *slot = (int)k;
            } else if (second < 0) {
                second = (int)ni;
            }
            count++;
        }
    }
    if (count > 1) {
        char d1[160], d2[160];
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "'%s' on the %s path feeds both %s and %s: the attention output "
                        "must flow through one chain",
                        rz_value_name(z, v), what, rz_node_desc(z, *node, d1, sizeof d1),
                        rz_node_desc(z, second, d2, sizeof d2));
    }
    if (count == 1 && rz_is_graph_output(z, v)) {
        char d1[160];
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "'%s' on the %s path is a graph output and also feeds %s",
                        rz_value_name(z, v), what, rz_node_desc(z, *node, d1, sizeof d1));
    }
    return MHA_OK;
}

mha_status rz_walk_forward(rz_ctx *z, int v, const char *what, rz_chain *ch, int *stop_node) {
    int n = 0, cur = v;
    *stop_node = -1;
    for (;;) {
        int node, slot;
        mha_status st = rz_single_consumer(z, cur, what, &node, &slot);
        if (st != MHA_OK) return st;
        if (node < 0) {
            if (!rz_is_graph_output(z, cur))
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "'%s' on the %s path reaches no graph output",
                                rz_value_name(z, cur), what);
            break;
        }
        rz_step s;
        const ir_node *nd = &z->g->nodes[node];
        /* Split forward would fork the data: not a chain. */
        if (rz_is_op(nd, "Split") || !rz_classify_step(z, node, slot, 1, &s) || nd->n_outputs < 1) {
            *stop_node = node;
            break;
        }
        st = rz_check_plumbing(z, node, s.data_in, what);
        if (st != MHA_OK) return st;
        if (n == RZ_MAX_STEPS) {
            char d[160];
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: more than %d layout ops on the %s path",
                            rz_node_desc(z, node, d, sizeof d), RZ_MAX_STEPS, what);
        }
        ch->steps[n++] = s;
        cur = nd->outputs[0];
        if (cur < 0) {
            char d[160];
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: its output is omitted",
                            rz_node_desc(z, node, d, sizeof d));
        }
    }
    ch->src = v;
    ch->dst = cur;
    ch->n = n;
    return MHA_OK;
}

mha_status rz_chain_splice(rz_ctx *z, rz_chain *ch, const rz_chain *lower, int skip, int node,
                           const char *what) {
    if (lower->n + ch->n - skip > RZ_MAX_STEPS) {
        char d[160];
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: more than %d layout ops on the %s path",
                        rz_node_desc(z, node, d, sizeof d), RZ_MAX_STEPS, what);
    }
    memmove(ch->steps + lower->n, ch->steps + skip, (size_t)(ch->n - skip) * sizeof ch->steps[0]);
    memcpy(ch->steps, lower->steps, (size_t)lower->n * sizeof ch->steps[0]);
    ch->n += lower->n - skip;
    ch->src = lower->src;
    return MHA_OK;
}

mha_status rz_refuse_on_path(rz_ctx *z, int y, int side, const char *does, const char *why) {
    char d[160];
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s on the %s path %s: %s",
                    rz_node_desc(z, rz_producer_id(z, y), d, sizeof d), side ? "K" : "Q", does,
                    why);
}
