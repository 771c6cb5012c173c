/* onnx_load_half.c -- whole float16 models (`model.half()` exports, the
 * float16 converters' output: every float weight float16) computed in
 * float32: the importer widens the weights and constant tensors to float32
 * as it loads them (onnx_load.c), and this file gives it the graph's nodes
 * with
 *   - each float16 graph input read through a Cast to float32
 *     ("<input>/float32"),
 *   - each float16 graph output written as "<output>/float32" and Cast to
 *     float16 at the end,
 *   - each Cast to float16 inside the graph a Cast to float32 (the
 *     softmax / LayerNorm up- and down-casts PyTorch writes become
 *     no-ops),
 * so that callers see the model's float16 inputs and outputs while the
 * layers run in float32 (fused like any float32 model). The results are
 * float32's rounded once at the outputs, closer to the float32 model than
 * float16 arithmetic op by op (ONNX Runtime's CPU kernels also run most of
 * such a graph in float32). */
#include <string.h>

#include "onnx_load_internal.h"

#define HALF_SUFFIX "/float32"

static int half_is_f16(const Onnx__ValueInfoProto *vi) {
    return vi && vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
           vi->type->tensor_type && vi->type->tensor_type->has_elem_type &&
           vi->type->tensor_type->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
}

int onnx_half_model(const Onnx__GraphProto *gp) {
    size_t n16 = 0, other = 0;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const int dt = gp->initializer[i]->data_type;
        n16 += dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
        other += dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
                 dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ||
                 dt == ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16;
    }
    return n16 > 0 && other == 0;
}

typedef struct half_ctx {
    const mha_alloc_ctx *a;
    onnx_inlined *out;
} half_ctx;

static void *half_alloc(half_ctx *c, size_t size) {
    onnx_inlined *o = c->out;
    if (o->n_blocks == o->cap_blocks) {
        size_t cap = o->cap_blocks ? 2 * o->cap_blocks : 64;
        void **nb = mha_calloc(c->a, cap, sizeof *nb);
        if (!nb) return NULL;
        if (o->n_blocks) memcpy(nb, o->blocks, o->n_blocks * sizeof *nb);
        mha_free(c->a, o->blocks);
        o->blocks = nb;
        o->cap_blocks = cap;
    }
    void *p = mha_calloc_small(c->a, 1, size ? size : 1);
    if (p) o->blocks[o->n_blocks++] = p;
    return p;
}

static char *half_suffixed(half_ctx *c, const char *name) {
    size_t n = strlen(name) + sizeof HALF_SUFFIX;
    char *d = half_alloc(c, n);
    if (d) {
        memcpy(d, name, strlen(name));
        memcpy(d + strlen(name), HALF_SUFFIX, sizeof HALF_SUFFIX);
    }
    return d;
}

/* Cast(from) -> to, with the `to` attribute dt. */
static Onnx__NodeProto *half_cast(half_ctx *c, const char *from, const char *to, int dt) {
    Onnx__NodeProto *np = half_alloc(c, sizeof *np);
    char **io = half_alloc(c, 2 * sizeof *io);
    Onnx__AttributeProto *at = half_alloc(c, sizeof *at);
    Onnx__AttributeProto **ats = half_alloc(c, sizeof *ats);
    char *name = np && io && at && ats ? half_suffixed(c, to) : NULL;
    if (!name) return NULL;
    onnx__node_proto__init(np);
    onnx__attribute_proto__init(at);
    at->name = "to";
    at->has_type = 1;
    at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    at->has_i = 1;
    at->i = dt;
    ats[0] = at;
    io[0] = (char *)from;
    io[1] = (char *)to;
    np->name = name;
    np->op_type = "Cast";
    np->domain = "";
    np->input = io;
    np->n_input = 1;
    np->output = io + 1;
    np->n_output = 1;
    np->attribute = ats;
    np->n_attribute = 1;
    return np;
}

static int half_push(half_ctx *c, Onnx__NodeProto *np) {
    onnx_inlined *o = c->out;
    if (!np) return 0;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        Onnx__NodeProto **nn = mha_calloc(c->a, cap, sizeof *nn);
        if (!nn) return 0;
        if (o->n) memcpy(nn, o->nodes, o->n * sizeof *nn);
        mha_free(c->a, o->nodes);
        o->nodes = nn;
        o->cap = cap;
    }
    o->nodes[o->n++] = np;
    return 1;
}

/* The graph input or output named `name` if it is float16, else NULL. */
static const Onnx__ValueInfoProto *half_edge(Onnx__ValueInfoProto *const *vi, size_t n,
                                             const char *name) {
    for (size_t i = 0; i < n; i++)
        if (vi[i]->name && strcmp(vi[i]->name, name) == 0) return half_is_f16(vi[i]) ? vi[i] : NULL;
    return NULL;
}

/* Whether the graph's nodes know `name` as "<name>/float32": a float16
 * graph input or output (a node reading an output reads the float32 one). */
static int half_renamed(const Onnx__GraphProto *gp, const char *name) {
    return half_edge(gp->input, gp->n_input, name) || half_edge(gp->output, gp->n_output, name);
}

/* np with its float16 graph inputs / outputs renamed and a Cast to float16
 * made a Cast to float32; np itself when nothing changes. */
static Onnx__NodeProto *half_node(half_ctx *c, const Onnx__GraphProto *gp, Onnx__NodeProto *np) {
    int change = 0;
    for (size_t k = 0; k < np->n_input; k++)
        change |= np->input[k] && half_renamed(gp, np->input[k]);
    for (size_t k = 0; k < np->n_output; k++)
        change |= np->output[k] && half_edge(gp->output, gp->n_output, np->output[k]) != NULL;
    const int is_cast = np->op_type && strcmp(np->op_type, "Cast") == 0 &&
                        (!np->domain || !*np->domain || strcmp(np->domain, "ai.onnx") == 0);
    for (size_t k = 0; is_cast && k < np->n_attribute; k++)
        change |= np->attribute[k]->name && strcmp(np->attribute[k]->name, "to") == 0 &&
                  np->attribute[k]->i == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
    if (!change) return np;
    Onnx__NodeProto *cp = half_alloc(c, sizeof *cp);
    char **in = half_alloc(c, (np->n_input + 1) * sizeof *in);
    char **out = half_alloc(c, (np->n_output + 1) * sizeof *out);
    Onnx__AttributeProto **ats = half_alloc(c, (np->n_attribute + 1) * sizeof *ats);
    if (!cp || !in || !out || !ats) return NULL;
    *cp = *np;
    for (size_t k = 0; k < np->n_input; k++) {
        in[k] = np->input[k];
        if (in[k] && half_renamed(gp, in[k]) && !(in[k] = half_suffixed(c, in[k]))) return NULL;
    }
    for (size_t k = 0; k < np->n_output; k++) {
        out[k] = np->output[k];
        if (out[k] && half_edge(gp->output, gp->n_output, out[k]) &&
            !(out[k] = half_suffixed(c, out[k])))
            return NULL;
    }
    for (size_t k = 0; k < np->n_attribute; k++) {
        ats[k] = np->attribute[k];
        if (is_cast && ats[k]->name && strcmp(ats[k]->name, "to") == 0 &&
            ats[k]->i == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16) {
            Onnx__AttributeProto *at = half_alloc(c, sizeof *at);
            if (!at) return NULL;
            *at = *ats[k];
            at->i = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
            ats[k] = at;
        }
    }
    cp->input = in;
    cp->output = out;
    cp->attribute = ats;
    return cp;
}

mha_status onnx_half_view(const mha_alloc_ctx *a, const Onnx__GraphProto *gp,
                          Onnx__NodeProto *const *nodes, size_t n, onnx_inlined *out,
                          mha_error *err) {
    memset(out, 0, sizeof *out);
    half_ctx c = {.a = a, .out = out};
    int ok = 1;
    for (size_t i = 0; ok && i < gp->n_input; i++)
        if (half_is_f16(gp->input[i]) && gp->input[i]->name) {
            char *wide = half_suffixed(&c, gp->input[i]->name);
            ok = wide && half_push(&c, half_cast(&c, gp->input[i]->name, wide,
                                                 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT));
        }
    for (size_t i = 0; ok && i < n; i++)
        ok = half_push(&c, half_node(&c, gp, nodes[i]));
    for (size_t i = 0; ok && i < gp->n_output; i++)
        if (half_is_f16(gp->output[i]) && gp->output[i]->name) {
            char *wide = half_suffixed(&c, gp->output[i]->name);
            ok = wide && half_push(&c, half_cast(&c, wide, gp->output[i]->name,
                                                 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16));
        }
    if (ok) return MHA_OK;
    onnx_inlined_free(a, out);
    return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory widening the float16 model");
}
