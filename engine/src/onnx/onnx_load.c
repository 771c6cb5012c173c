/* onnx_load.c -- builds the engine's view of an ONNX model (onnx_ir.h) from
 * protobuf-c's ModelProto: value ids for every name (graph inputs,
 * initializers, node outputs), static type info, attributes, the opsets,
 * and the nodes in topological order. Refuses undefined inputs, values
 * defined twice, cycles, a missing graph and undefined graph outputs.
 * The wire format and tensors are handled by onnx_load_wire.c and
 * onnx_load_tensor.c. */
#include "onnx_load_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small lookups (public within the engine) ---- */

const ir_attr *ir_node_attr(const ir_node *n, const char *name) {
    if (!n || !name) return NULL;
    for (size_t i = 0; i < n->n_attrs; i++)
        if (n->attrs[i].name && strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t ir_attr_int(const ir_node *n, const char *name, int64_t dflt) {
    const ir_attr *a = ir_node_attr(n, name);
    return a && a->type == IR_ATTR_INT ? a->i : dflt;
}

float ir_attr_float(const ir_node *n, const char *name, float dflt) {
    const ir_attr *a = ir_node_attr(n, name);
    if (!a) return dflt;
    if (a->type == IR_ATTR_FLOAT) return a->f;
    if (a->type == IR_ATTR_INT) return (float)a->i; /* a float written as an int */
    return dflt;
}

int ir_node_input(const ir_node *n, size_t k) {
    return n && k < n->n_inputs ? n->inputs[k] : -1;
}

const char *ir_node_desc(const ir_node *n, char *buf, size_t size) {
    if (!buf || size == 0) return "";
    const char *op = n && n->op_type && *n->op_type ? n->op_type : "?";
    const char *dom = n && n->domain && *n->domain ? n->domain : NULL;
    char opbuf[160];
    if (dom)
        snprintf(opbuf, sizeof opbuf, "%s (%s)", op, dom);
    else
        snprintf(opbuf, sizeof opbuf, "%s", op);
    if (n && n->name && *n->name)
        snprintf(buf, size, "%s node '%s'", opbuf, n->name);
    else
        snprintf(buf, size, "%s node #%d", opbuf, n ? n->index : -1);
    return buf;
}

/* ---- freeing ---- */

static void attr_free(const mha_alloc_ctx *a, ir_attr *at) {
    mha_free(a, at->name);
    mha_free(a, at->s);
    mha_free(a, at->floats);
    mha_free(a, at->ints);
    if (at->strings)
        for (size_t k = 0; k < at->n; k++)
            mha_free(a, at->strings[k]);
    mha_free(a, at->strings);
    tensor_free(at->t);
}

static void node_free(const mha_alloc_ctx *a, ir_node *n) {
    mha_free(a, n->name);
    mha_free(a, n->op_type);
    mha_free(a, n->domain);
    mha_free(a, n->inputs);
    mha_free(a, n->outputs);
    if (n->attrs)
        for (size_t k = 0; k < n->n_attrs; k++)
            attr_free(a, &n->attrs[k]);
    mha_free(a, n->attrs);
}

void ir_free(ir_graph *g) {
    if (!g) return;
    const mha_alloc_ctx *a = &g->alloc;
    if (g->values)
        for (size_t i = 0; i < g->n_values; i++) {
            ir_value *v = &g->values[i];
            mha_free(a, v->name);
            tensor_free(v->init);
            for (int d = 0; d < MHA_MAX_RANK; d++)
                mha_free(a, v->dim_params[d]);
        }
    mha_free(a, g->values);
    if (g->nodes)
        for (size_t i = 0; i < g->n_nodes; i++)
            node_free(a, &g->nodes[i]);
    mha_free(a, g->nodes);
    mha_free(a, g->inputs);
    mha_free(a, g->outputs);
    mha_free(a, g->output_declared);
    mha_free(a, g->path);
    /* g itself came from the same allocator */
    mha_alloc_ctx copy = g->alloc;
    mha_free(&copy, g);
}

/* ---- the builder ---- */

typedef struct builder {
    ir_graph *g;
    onnx_load_ctx *lc;
    mha_error *err;
    size_t cap_values;             /* g->values has room for this many */
    int *slots;                    /* open-addressing name table: value id + 1, 0 = empty */
    size_t n_slots;                /* a power of two */
    unsigned char *declared_input; /* per value: named by a graph input */
    unsigned char *unread_init;    /* per value: an initializer no node reads, its
                                      external data checked but not read */
    const char **used;             /* names read by a node or a graph output: an
                                      open-addressing set, NULL = empty slot */
    size_t n_used_slots;           /* a power of two */
    int half;                      /* a whole float16 model: its tensors widened */
} builder;

static mha_status oom(builder *b) {
    return mha_fail(b->err, MHA_ERR_NO_MEMORY, "out of memory building the graph");
}

static const char *str_or_empty(const char *s) {
    return s ? s : "";
}

static size_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

/* The slot holding `name`, or the empty slot where it would go. */
static size_t name_slot(const builder *b, const char *name) {
    size_t mask = b->n_slots - 1, i = name_hash(name) & mask;
    while (b->slots[i] && strcmp(b->g->values[b->slots[i] - 1].name, name) != 0)
        i = (i + 1) & mask;
    return i;
}

static int name_lookup(const builder *b, const char *name) {
    return b->slots[name_slot(b, name)] - 1;
}

/* What defines value v, for "defined twice" messages. */
static const char *value_origin(const builder *b, int v, char *buf, size_t size) {
    const ir_value *val = &b->g->values[v];
    if (val->producer >= 0) {
        char desc[256];
        snprintf(buf, size, "an output of %s",
                 ir_node_desc(&b->g->nodes[val->producer], desc, sizeof desc));
    } else if (val->init) {
        snprintf(buf, size, "an initializer");
    } else {
        snprintf(buf, size, "a graph input");
    }
    return buf;
}

/* Adds a value named `name`; refuses a name already taken. `what` says who
 * defines it ("initializer", "graph input", a node description). */
static mha_status value_add(builder *b, const char *name, const char *what, int *id) {
    size_t s = name_slot(b, name);
    if (b->slots[s]) {
        char origin[320];
        return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                        "value '%s' is defined twice: by %s and by %s", name,
                        value_origin(b, b->slots[s] - 1, origin, sizeof origin), what);
    }
    if (b->g->n_values >= b->cap_values)
        return mha_fail(b->err, MHA_ERR_INTERNAL, "value table overflow at '%s'", name);
    int v = (int)b->g->n_values;
    ir_value *val = &b->g->values[v];
    memset(val, 0, sizeof *val);
    val->producer = -1;
    val->graph_input = -1;
    val->rank = -1;
    val->dtype = MHA_DTYPE_UNDEFINED;
    val->name = mha_strdup(&b->g->alloc, name);
    if (!val->name) return oom(b);
    b->g->n_values++;
    b->slots[s] = v + 1;
    *id = v;
    return MHA_OK;
}

/* Records dtype / rank / dims / dim_params from a ValueInfoProto on a value
 * that has no type info yet (an initializer's own shape always wins).
 * strict: refuse a rank over MHA_MAX_RANK (graph inputs / outputs); else
 * such a declaration is left unknown. */
static mha_status value_apply_info(builder *b, int v, const Onnx__ValueInfoProto *vi, int strict) {
    ir_value *val = &b->g->values[v];
    if (val->init || !vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        !vi->type->tensor_type)
        return MHA_OK;
    const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
    if (val->dtype == MHA_DTYPE_UNDEFINED && tt->has_elem_type &&
        mha_dtype_in_models((mha_dtype)tt->elem_type))
        val->dtype = (mha_dtype)tt->elem_type;
    /* a whole float16 model's values inside are float32 */
    if (b->half && !strict && val->dtype == MHA_DTYPE_FLOAT16) val->dtype = MHA_DTYPE_FLOAT32;
    if (val->rank >= 0 || !tt->shape) return MHA_OK;
    const Onnx__TensorShapeProto *sh = tt->shape;
    if (sh->n_dim > MHA_MAX_RANK) {
        if (!strict) return MHA_OK;
        return mha_fail(b->err, MHA_ERR_LIMIT,
                        "value '%s': declared rank %zu exceeds the limit of %d", val->name,
                        sh->n_dim, MHA_MAX_RANK);
    }
    for (size_t d = 0; d < sh->n_dim; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = sh->dim[d];
        val->dims[d] = -1;
        /* ONNX's dim_value is >= 0; -1 is what older converters wrote for
         * "unknown" (ONNX Runtime reads it so), and is read as a symbolic
         * axis. Any other negative value of a graph input or output is a
         * broken declaration, not a symbol: refused (an intermediate
         * value's declaration is a hint, left unknown). */
        if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
            dim->dim_value < -1 && strict)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                            "value '%s': declared dimension %lld at axis %zu is negative "
                            "(ONNX dimensions are >= 0; -1 is read as unknown)",
                            val->name, (long long)dim->dim_value, d);
        if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
            dim->dim_value >= 0) {
            val->dims[d] = dim->dim_value;
        } else if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   dim->dim_param && *dim->dim_param) {
            val->dim_params[d] = mha_strdup(&b->g->alloc, dim->dim_param);
            if (!val->dim_params[d]) return oom(b);
        }
    }
    val->rank = (int)sh->n_dim;
    return MHA_OK;
}

/* A whole float16 model's float16 tensor *t replaced by its float32 copy. */
static mha_status half_widen(builder *b, tensor **t) {
    if (!b->half || !*t || (*t)->dtype != MHA_DTYPE_FLOAT16) return MHA_OK;
    tensor *w = NULL;
    mha_status st = tensor_new(&b->g->alloc, MHA_DTYPE_FLOAT32, (*t)->rank, (*t)->dims, &w, b->err);
    if (st != MHA_OK) return st;
    for (int64_t i = 0, n = tensor_numel(w); i < n; i++)
        ((float *)w->data)[i] = mha_half_to_float(((const uint16_t *)(*t)->data)[i]);
    tensor_free(*t);
    *t = w;
    return MHA_OK;
}

static mha_status value_set_init(builder *b, int v, tensor *t) {
    ir_value *val = &b->g->values[v];
    val->init = t;
    val->dtype = t->dtype;
    val->rank = t->rank;
    for (int d = 0; d < t->rank; d++)
        val->dims[d] = t->dims[d];
    return MHA_OK;
}

/* The set of names some node reads or the graph outputs, so initializers
 * nobody reads are not read from external data (a small model naming a huge
 * file for a weight it never uses). */
static size_t used_slot(const builder *b, const char *name) {
    size_t mask = b->n_used_slots - 1, i = name_hash(name) & mask;
    while (b->used[i] && strcmp(b->used[i], name) != 0)
        i = (i + 1) & mask;
    return i;
}

static mha_status collect_used_names(builder *b, const Onnx__GraphProto *gp) {
    size_t n = gp->n_output;
    for (size_t i = 0; i < gp->n_node; i++)
        n += gp->node[i]->n_input;
    b->n_used_slots = 16;
    while (b->n_used_slots < 2 * n)
        b->n_used_slots *= 2;
    b->used = mha_calloc(&b->g->alloc, b->n_used_slots, sizeof *b->used);
    if (!b->used) return oom(b);
    for (size_t i = 0; i < gp->n_output; i++)
        if (gp->output[i]->name && *gp->output[i]->name)
            b->used[used_slot(b, gp->output[i]->name)] = gp->output[i]->name;
    for (size_t i = 0; i < gp->n_node; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++) {
            const char *in = gp->node[i]->input[k];
            if (in && *in) b->used[used_slot(b, in)] = in;
        }
    return MHA_OK;
}

static int name_used(const builder *b, const char *name) {
    return b->used[used_slot(b, name)] != NULL;
}

static mha_status add_initializers(builder *b, Onnx__GraphProto *gp) {
    mha_status st;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        const char *name = str_or_empty(tp->name);
        if (!*name)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "initializer #%zu has no name", i);
        int v;
        if ((st = value_add(b, name, "an initializer", &v)) != MHA_OK) return st;
        tensor *t = NULL;
        b->lc->skip_external_read = !name_used(b, name);
        st = onnx_tensor_load(b->lc, tp, "initializer", &t, b->err);
        b->lc->skip_external_read = 0;
        if (st != MHA_OK) return st;
        if (t && (st = half_widen(b, &t)) != MHA_OK) {
            tensor_free(t);
            return st;
        }
        if (t) {
            value_set_init(b, v, t);
        } else { /* unread: the value keeps its declared type only */
            ir_value *val = &b->g->values[v];
            b->unread_init[v] = 1;
            val->dtype = (mha_dtype)tp->data_type;
            val->rank = (int)tp->n_dims;
            for (size_t d = 0; d < tp->n_dims; d++)
                val->dims[d] = tp->dims[d];
        }
    }
    for (size_t i = 0; i < gp->n_sparse_initializer; i++) {
        Onnx__SparseTensorProto *sp = gp->sparse_initializer[i];
        const char *name = sp->values ? str_or_empty(sp->values->name) : "";
        if (!*name)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                            "sparse initializer #%zu has no name (values.name)", i);
        int v;
        if ((st = value_add(b, name, "a sparse initializer", &v)) != MHA_OK) return st;
        tensor *t = NULL;
        if ((st = onnx_sparse_load(b->lc, sp, "sparse initializer", &t, b->err)) != MHA_OK)
            return st;
        value_set_init(b, v, t);
    }
    return MHA_OK;
}

/* Graph inputs. One that names an initializer is a constant with a
 * declared type, not an input of ir_graph.inputs. */
static mha_status add_graph_inputs(builder *b, Onnx__GraphProto *gp) {
    mha_status st;
    ir_graph *g = b->g;
    g->inputs = mha_calloc(&g->alloc, gp->n_input ? gp->n_input : 1, sizeof *g->inputs);
    if (!g->inputs) return oom(b);
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        const char *name = str_or_empty(vi->name);
        if (!*name)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "graph input #%zu has no name", i);
        int v = name_lookup(b, name);
        if (v >= 0 && !b->declared_input[v] && (g->values[v].init || b->unread_init[v])) {
            b->declared_input[v] = 1; /* an initializer with a default: a constant */
            continue;
        }
        if (v >= 0)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "graph input '%s' is declared twice",
                            name);
        if ((st = value_add(b, name, "a graph input", &v)) != MHA_OK) return st;
        b->declared_input[v] = 1;
        g->values[v].graph_input = (int)g->n_inputs;
        g->inputs[g->n_inputs++] = v;
        if ((st = value_apply_info(b, v, vi, 1)) != MHA_OK) return st;
    }
    return MHA_OK;
}

static const char *attr_type_name(int t) {
    switch (t) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH:
        return "GRAPH";
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS:
        return "GRAPHS";
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS:
        return "TENSORS";
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSORS:
        return "SPARSE_TENSORS";
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTO:
        return "TYPE_PROTO";
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTOS:
        return "TYPE_PROTOS";
    default:
        return "UNDEFINED";
    }
}

/* IR versions before 2 left AttributeProto.type out: infer it from the one
 * field that is set. */
static int attr_infer_type(const Onnx__AttributeProto *ap) {
    if (ap->has_type) return (int)ap->type;
    if (ap->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    if (ap->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    if (ap->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    if (ap->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    if (ap->sparse_tensor) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR;
    if (ap->g) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
    if (ap->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    if (ap->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    if (ap->n_strings) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
    return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

static char *bytes_dup(const mha_alloc_ctx *a, const ProtobufCBinaryData *bd) {
    char *s = mha_malloc_small(a, bd->len + 1);
    if (!s) return NULL;
    if (bd->len) memcpy(s, bd->data, bd->len);
    s[bd->len] = '\0';
    return s;
}

static mha_status convert_attr(builder *b, const ir_node *n, Onnx__AttributeProto *ap,
                               ir_attr *at) {
    const mha_alloc_ctx *a = &b->g->alloc;
    char desc[256], role[400];
    ir_node_desc(n, desc, sizeof desc);
    const char *name = str_or_empty(ap->name);
    if (!*name)
        return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "%s has an attribute without a name", desc);
    at->name = mha_strdup(a, name);
    if (!at->name) return oom(b);
    snprintf(role, sizeof role, "attribute '%s' of %s", name, desc);
    int type = attr_infer_type(ap);
    mha_status st;
    switch (type) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        at->type = IR_ATTR_FLOAT;
        at->f = ap->f;
        return MHA_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        at->type = IR_ATTR_INT;
        at->i = ap->i;
        return MHA_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
        at->type = IR_ATTR_STRING;
        at->s = bytes_dup(a, &ap->s);
        return at->s ? MHA_OK : oom(b);
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR:
        at->type = IR_ATTR_TENSOR;
        if (!ap->t)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "%s: TENSOR attribute without a tensor",
                            role);
        st = onnx_tensor_load(b->lc, ap->t, "tensor", &at->t, b->err);
        if (st == MHA_OK) st = half_widen(b, &at->t);
        if (st != MHA_OK) mha_error_prefix(b->err, "%s", role);
        return st;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR:
        /* e.g. Constant's sparse_value: densified, then an ordinary tensor */
        at->type = IR_ATTR_TENSOR;
        if (!ap->sparse_tensor)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                            "%s: SPARSE_TENSOR attribute without a tensor", role);
        st = onnx_sparse_load(b->lc, ap->sparse_tensor, "sparse tensor", &at->t, b->err);
        if (st != MHA_OK) mha_error_prefix(b->err, "%s", role);
        return st;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        at->type = IR_ATTR_FLOATS;
        at->floats = mha_calloc_small(a, ap->n_floats ? ap->n_floats : 1, sizeof *at->floats);
        if (!at->floats) return oom(b);
        if (ap->n_floats) memcpy(at->floats, ap->floats, ap->n_floats * sizeof *at->floats);
        at->n = ap->n_floats;
        return MHA_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        at->type = IR_ATTR_INTS;
        at->ints = mha_calloc_small(a, ap->n_ints ? ap->n_ints : 1, sizeof *at->ints);
        if (!at->ints) return oom(b);
        if (ap->n_ints) memcpy(at->ints, ap->ints, ap->n_ints * sizeof *at->ints);
        at->n = ap->n_ints;
        return MHA_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS:
        at->type = IR_ATTR_STRINGS;
        at->strings = mha_calloc_small(a, ap->n_strings ? ap->n_strings : 1, sizeof *at->strings);
        if (!at->strings) return oom(b);
        at->n = ap->n_strings;
        for (size_t k = 0; k < ap->n_strings; k++) {
            at->strings[k] = bytes_dup(a, &ap->strings[k]);
            if (!at->strings[k]) return oom(b);
        }
        return MHA_OK;
    default:
        /* optimum's decoder_model_merged: an If on use_cache_branch */
        if (type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH && n->op_type &&
            strcmp(n->op_type, "If") == 0)
            return mha_fail(b->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s has type GRAPH: an If choosing between subgraphs (optimum's "
                            "decoder_model_merged on use_cache_branch) is not supported; run "
                            "its decoder_model.onnx for the first step and "
                            "decoder_with_past_model.onnx for the cached ones",
                            role);
        st = mha_fail(b->err, MHA_ERR_MODEL_UNSUPPORTED,
                      "%s has type %s, which the engine does not support (no subgraphs, "
                      "tensor lists or type attributes)",
                      role, attr_type_name(type));
        return st;
    }
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Refuses an attribute name given twice. Sorted, not pairwise: a crafted
 * node may carry millions of attributes. */
static mha_status check_attr_names(builder *b, const ir_node *n, const char *desc) {
    if (n->n_attrs < 2) return MHA_OK;
    const char **names = mha_calloc(&b->g->alloc, n->n_attrs, sizeof *names);
    if (!names) return oom(b);
    for (size_t k = 0; k < n->n_attrs; k++)
        names[k] = n->attrs[k].name;
    qsort(names, n->n_attrs, sizeof *names, cmp_str_ptr);
    mha_status st = MHA_OK;
    for (size_t k = 1; k < n->n_attrs; k++)
        if (strcmp(names[k - 1], names[k]) == 0) {
            st = mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "%s has attribute '%s' twice", desc,
                          names[k]);
            break;
        }
    mha_free(&b->g->alloc, names);
    return st;
}

static mha_status names_dup_into(builder *b, char **dst, const char *src) {
    *dst = mha_strdup(&b->g->alloc, src ? src : "");
    return *dst ? MHA_OK : oom(b);
}

/* Parses the nodes in file order and defines their outputs. Inputs are
 * resolved afterwards, when every name is known (the file need not be
 * sorted). */
static mha_status add_nodes(builder *b, Onnx__GraphProto *gp) {
    ir_graph *g = b->g;
    const mha_alloc_ctx *a = &g->alloc;
    mha_status st;
    g->nodes = mha_calloc(a, gp->n_node ? gp->n_node : 1, sizeof *g->nodes);
    if (!g->nodes) return oom(b);
    for (size_t i = 0; i < gp->n_node; i++) {
        Onnx__NodeProto *np = gp->node[i];
        ir_node *n = &g->nodes[i];
        g->n_nodes = i + 1; /* from here on ir_free releases what n holds */
        n->index = (int)i;
        const char *domain = str_or_empty(np->domain);
        if (strcmp(domain, "ai.onnx") == 0) domain = "";
        if ((st = names_dup_into(b, &n->name, np->name)) != MHA_OK) return st;
        if ((st = names_dup_into(b, &n->op_type, np->op_type)) != MHA_OK) return st;
        if ((st = names_dup_into(b, &n->domain, domain)) != MHA_OK) return st;
        char desc[256];
        ir_node_desc(n, desc, sizeof desc);
        if (!*n->op_type) return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "%s has no op_type", desc);
        if (!*n->domain && g->opset <= 0)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                            "%s is in the default ONNX domain, but the model imports no opset "
                            "for it",
                            desc);

        n->inputs = mha_calloc_small(a, np->n_input ? np->n_input : 1, sizeof *n->inputs);
        n->outputs = mha_calloc_small(a, np->n_output ? np->n_output : 1, sizeof *n->outputs);
        n->attrs = mha_calloc_small(a, np->n_attribute ? np->n_attribute : 1, sizeof *n->attrs);
        if (!n->inputs || !n->outputs || !n->attrs) return oom(b);
        n->n_inputs = np->n_input;
        n->n_outputs = np->n_output;
        n->n_attrs = np->n_attribute;
        for (size_t k = 0; k < np->n_input; k++)
            n->inputs[k] = -1;

        for (size_t k = 0; k < np->n_attribute; k++)
            if ((st = convert_attr(b, n, np->attribute[k], &n->attrs[k])) != MHA_OK) return st;
        if ((st = check_attr_names(b, n, desc)) != MHA_OK) return st;
        for (size_t k = 0; k < np->n_output; k++) {
            const char *out = str_or_empty(np->output[k]);
            n->outputs[k] = -1;
            if (!*out) continue; /* omitted optional output */
            int v;
            if ((st = value_add(b, out, desc, &v)) != MHA_OK) return st;
            g->values[v].producer = (int)i; /* file index until the sort */
            n->outputs[k] = v;
        }
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        Onnx__NodeProto *np = gp->node[i];
        ir_node *n = &g->nodes[i];
        for (size_t k = 0; k < np->n_input; k++) {
            const char *in = str_or_empty(np->input[k]);
            if (!*in) continue; /* omitted optional input: -1 */
            int v = name_lookup(b, in);
            if (v < 0) {
                char desc[256];
                return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                                "%s: input %zu '%s' is not defined by any graph input, "
                                "initializer or node output",
                                ir_node_desc(n, desc, sizeof desc), k, in);
            }
            n->inputs[k] = v;
        }
    }
    return MHA_OK;
}

/* Min-heap of node indices: Kahn's algorithm then emits the ready node that
 * comes first in the file, so a file already in order keeps its order. */
static void heap_push(int *h, size_t *n, int x) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > x) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static int heap_pop(int *h, size_t *n) {
    int top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

/* Sorts g->nodes topologically (Kahn) and rewrites value producers to the
 * sorted positions. On a cycle, names one node that lies on it. */
static mha_status sort_nodes(builder *b) {
    ir_graph *g = b->g;
    const mha_alloc_ctx *a = &g->alloc;
    size_t n = g->n_nodes;
    if (n == 0) return MHA_OK;
    mha_status st = MHA_OK;
    size_t n_edges = 0;
    for (size_t i = 0; i < n; i++)
        n_edges += g->nodes[i].n_inputs;

    /* consumers of each node as CSR: edge_start[p] .. edge_start[p+1] */
    size_t *edge_start = mha_calloc(a, n + 1, sizeof *edge_start);
    int *edges = mha_calloc(a, n_edges ? n_edges : 1, sizeof *edges);
    size_t *indeg = mha_calloc(a, n, sizeof *indeg);
    int *heap = mha_calloc(a, n, sizeof *heap);
    int *order = mha_calloc(a, n, sizeof *order);
    ir_node *sorted = mha_calloc(a, n, sizeof *sorted);
    if (!edge_start || !edges || !indeg || !heap || !order || !sorted) {
        st = oom(b);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++) {
            int v = g->nodes[i].inputs[k];
            if (v >= 0 && g->values[v].producer >= 0) {
                edge_start[g->values[v].producer + 1]++;
                indeg[i]++;
            }
        }
    for (size_t p = 0; p < n; p++)
        edge_start[p + 1] += edge_start[p];
    /* fill edges using order[] as a per-producer cursor (reset below) */
    for (size_t i = 0; i < n; i++)
        order[i] = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++) {
            int v = g->nodes[i].inputs[k];
            if (v >= 0 && g->values[v].producer >= 0) {
                int p = g->values[v].producer;
                edges[edge_start[p] + (size_t)order[p]++] = (int)i;
            }
        }

    size_t n_heap = 0, n_done = 0;
    for (size_t i = 0; i < n; i++)
        if (indeg[i] == 0) heap_push(heap, &n_heap, (int)i);
    while (n_heap) {
        int u = heap_pop(heap, &n_heap);
        order[n_done++] = u;
        for (size_t e = edge_start[u]; e < edge_start[u + 1]; e++)
            if (--indeg[edges[e]] == 0) heap_push(heap, &n_heap, edges[e]);
    }

    if (n_done < n) {
        /* Every node not emitted waits on another node not emitted; walking
         * those waits backwards must come back to a node already seen, and
         * that node lies on a cycle. heap[] now marks the nodes seen. */
        int s = -1;
        for (size_t i = 0; i < n && s < 0; i++)
            if (indeg[i] > 0) s = (int)i;
        for (size_t i = 0; i < n; i++)
            heap[i] = 0;
        int via = -1;
        while (!heap[s]) {
            heap[s] = 1;
            const ir_node *nd = &g->nodes[s];
            for (size_t k = 0; k < nd->n_inputs; k++) {
                int v = nd->inputs[k];
                if (v >= 0 && g->values[v].producer >= 0 && indeg[g->values[v].producer] > 0) {
                    s = g->values[v].producer;
                    via = v;
                    break;
                }
            }
        }
        char desc[256];
        ir_node_desc(&g->nodes[s], desc, sizeof desc);
        st = mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                      "graph has a cycle through %s (its output '%s' feeds back into its own "
                      "inputs)",
                      desc, via >= 0 ? g->values[via].name : "?");
        goto done;
    }

    /* permute; producers become sorted positions */
    for (size_t k = 0; k < n; k++)
        sorted[k] = g->nodes[order[k]];
    for (size_t k = 0; k < n; k++)
        for (size_t j = 0; j < sorted[k].n_outputs; j++)
            if (sorted[k].outputs[j] >= 0) g->values[sorted[k].outputs[j]].producer = (int)k;
    mha_free(a, g->nodes);
    g->nodes = sorted;
    sorted = NULL;
done:
    mha_free(a, edge_start);
    mha_free(a, edges);
    mha_free(a, indeg);
    mha_free(a, heap);
    mha_free(a, order);
    mha_free(a, sorted);
    return st;
}

static mha_status add_graph_outputs(builder *b, Onnx__GraphProto *gp) {
    ir_graph *g = b->g;
    mha_status st;
    if (gp->n_output == 0)
        return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "the graph declares no outputs");
    g->outputs = mha_calloc(&g->alloc, gp->n_output, sizeof *g->outputs);
    g->output_declared = mha_calloc(&g->alloc, gp->n_output, sizeof *g->output_declared);
    /* outputs named twice: their answers are found by name (mha serve's
     * JSON would hold a key twice) */
    unsigned char *named = mha_calloc(&g->alloc, g->n_values ? g->n_values : 1, 1);
    if (!g->outputs || !g->output_declared || !named) {
        mha_free(&g->alloc, named);
        return oom(b);
    }
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        const char *name = str_or_empty(vi->name);
        int v = *name ? name_lookup(b, name) : -1;
        if (v < 0 || named[v]) {
            mha_free(&g->alloc, named);
            if (v >= 0)
                return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "graph output '%s' is declared twice",
                                name);
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                            "graph output #%zu '%s' is not defined by any graph input, "
                            "initializer or node output",
                            i, name);
        }
        named[v] = 1;
        const Onnx__TypeProto__Tensor *tt =
            vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
                ? vi->type->tensor_type
                : NULL;
        g->output_declared[g->n_outputs] =
            tt && tt->has_elem_type && mha_dtype_in_models((mha_dtype)tt->elem_type)
                ? (mha_dtype)tt->elem_type
                : MHA_DTYPE_UNDEFINED;
        g->outputs[g->n_outputs++] = v;
        if ((st = value_apply_info(b, v, vi, 1)) != MHA_OK) {
            mha_free(&g->alloc, named);
            return st;
        }
    }
    mha_free(&g->alloc, named);
    /* value_info naming a value the graph does not define is harmless (some
     * exporters leave stale entries): it is ignored. */
    for (size_t i = 0; i < gp->n_value_info; i++) {
        const Onnx__ValueInfoProto *vi = gp->value_info[i];
        const char *name = str_or_empty(vi->name);
        int v = *name ? name_lookup(b, name) : -1;
        if (v >= 0 && (st = value_apply_info(b, v, vi, 0)) != MHA_OK) return st;
    }
    return MHA_OK;
}

/* The versions this engine reads. IR 13 is what ONNX 1.20 writes (opset 25);
 * a later IR version may change the meaning of fields we read. Opset 9 is
 * the oldest whose operator semantics the interpreter implements and tests
 * (multidirectional broadcasting, the attribute forms of Slice, Split,
 * Squeeze, Softmax's 2-D coercion); 25 is the newest (Attention's window
 * attributes). com.microsoft has only ever had version 1. */
#define ONNX_IR_VERSION_MAX 13
#define ONNX_OPSET_MIN 9
#define ONNX_OPSET_MAX 25
#define ONNX_MS_OPSET_MAX 1

static mha_status check_versions(builder *b, const Onnx__ModelProto *m) {
    const ir_graph *g = b->g;
    /* the IR version says how every other field reads; the format requires
     * it, and a file without it is no exporter's output */
    if (!m->has_ir_version)
        return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                        "the model declares no IR version (ModelProto.ir_version is required)");
    if (m->has_ir_version && (m->ir_version <= 0 || m->ir_version > ONNX_IR_VERSION_MAX))
        return mha_fail(b->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "IR version %lld is not supported (this engine reads IR versions 1 to "
                        "%d)",
                        (long long)m->ir_version, ONNX_IR_VERSION_MAX);
    if (g->opset > 0 && (g->opset < ONNX_OPSET_MIN || g->opset > ONNX_OPSET_MAX))
        return mha_fail(b->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the model imports opset %lld of the default ONNX domain; this engine "
                        "supports opsets %d to %d",
                        (long long)g->opset, ONNX_OPSET_MIN, ONNX_OPSET_MAX);
    if (g->ms_opset > ONNX_MS_OPSET_MAX)
        return mha_fail(b->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the model imports opset %lld of domain 'com.microsoft'; this engine "
                        "supports version %d",
                        (long long)g->ms_opset, ONNX_MS_OPSET_MAX);
    return MHA_OK;
}

static mha_status read_opsets(builder *b, const Onnx__ModelProto *m) {
    ir_graph *g = b->g;
    if (m->n_opset_import == 0) {
        /* IR versions 1 and 2 predate opset_import and mean opset 1 */
        if (m->has_ir_version && m->ir_version < 3) {
            g->opset = 1;
            return check_versions(b, m);
        }
        return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                        "the model imports no operator set (opset_import is empty)");
    }
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *op = m->opset_import[i];
        const char *dom = str_or_empty(op->domain);
        int64_t *slot = NULL;
        if (!*dom || strcmp(dom, "ai.onnx") == 0)
            slot = &g->opset;
        else if (strcmp(dom, "com.microsoft") == 0)
            slot = &g->ms_opset;
        else
            continue;
        if (!op->has_version || op->version <= 0)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                            "opset import of domain '%s' has no valid version", dom);
        /* two versions of one domain give two meanings to its operators
         * (which one is a guess): refused; the same version twice is only
         * redundant */
        if (*slot && *slot != op->version)
            return mha_fail(b->err, MHA_ERR_MODEL_FORMAT,
                            "the model imports domain '%s' twice, as opset %lld and %lld",
                            *dom ? dom : "ai.onnx", (long long)*slot, (long long)op->version);
        *slot = op->version;
    }
    return check_versions(b, m);
}

static mha_status build_graph_nodes(builder *b, Onnx__GraphProto *gp);

static mha_status build_graph(builder *b, Onnx__ModelProto *m) {
    mha_status st;
    if ((st = read_opsets(b, m)) != MHA_OK) return st;
    Onnx__GraphProto *gp = m->graph;
    if (!gp) return mha_fail(b->err, MHA_ERR_MODEL_FORMAT, "the model has no graph");
    b->half = onnx_half_model(gp);
    if (m->n_functions == 0 && !b->half) return build_graph_nodes(b, gp);
    /* the graph seen with the calls of model-local functions inlined, and a
     * whole float16 model's edges cast for float32 inside */
    onnx_inlined inl = {0}, half = {0};
    Onnx__GraphProto view = *gp;
    st = MHA_OK;
    if (m->n_functions > 0) {
        st = onnx_inline_functions(&b->g->alloc, m, b->g->opset, &inl, b->err);
        view.node = inl.nodes;
        view.n_node = inl.n;
    }
    if (st == MHA_OK && b->half) {
        st = onnx_half_view(&b->g->alloc, gp, view.node, view.n_node, &half, b->err);
        view.node = half.nodes;
        view.n_node = half.n;
    }
    if (st == MHA_OK) st = build_graph_nodes(b, &view);
    onnx_inlined_free(&b->g->alloc, &half);
    onnx_inlined_free(&b->g->alloc, &inl);
    return st;
}

static mha_status build_graph_nodes(builder *b, Onnx__GraphProto *gp) {
    ir_graph *g = b->g;
    const mha_alloc_ctx *a = &g->alloc;
    mha_status st;

    /* every value is an initializer, a graph input or a node output */
    size_t cap = gp->n_initializer + gp->n_sparse_initializer + gp->n_input;
    for (size_t i = 0; i < gp->n_node; i++)
        cap += gp->node[i]->n_output;
    if (cap > (size_t)INT32_MAX / 4)
        return mha_fail(b->err, MHA_ERR_LIMIT, "the graph has too many values (%zu)", cap);
    b->cap_values = cap;
    g->values = mha_calloc(a, cap ? cap : 1, sizeof *g->values);
    b->declared_input = mha_calloc(a, cap ? cap : 1, 1);
    b->unread_init = mha_calloc(a, cap ? cap : 1, 1);
    b->n_slots = 16;
    while (b->n_slots < 2 * cap)
        b->n_slots *= 2;
    b->slots = mha_calloc(a, b->n_slots, sizeof *b->slots);
    if (!g->values || !b->declared_input || !b->unread_init || !b->slots) return oom(b);
    if ((st = collect_used_names(b, gp)) != MHA_OK) return st;

    if ((st = add_initializers(b, gp)) != MHA_OK) return st;
    if ((st = add_graph_inputs(b, gp)) != MHA_OK) return st;
    if ((st = add_nodes(b, gp)) != MHA_OK) return st;
    if ((st = add_graph_outputs(b, gp)) != MHA_OK) return st;
    return sort_nodes(b);
}

/* Files that are plainly something else are named as such, before the
 * protobuf decoder says "wire type 3 at byte offset 0": a known magic
 * number, or a first byte that cannot begin any protobuf message (field 0,
 * or the group / reserved wire types 3, 4, 6, 7). */
static const char *onnx_not_a_model(const unsigned char *p, size_t n) {
    static const struct {
        const char *magic;
        size_t len;
        const char *what;
    } kinds[] = {
        {"\223NUMPY", 6, "a .npy file"}, {"PK\003\004", 4, "a zip archive (.npz, .pt, ...)"},
        {"\211HDF", 4, "an HDF5 file"},  {"\177ELF", 4, "an ELF binary"},
        {"\037\213", 2, "a gzip file"},  {"{", 1, "text (JSON?)"},
        {"<", 1, "text (XML or HTML?)"},
    };
    if (n == 0) return NULL;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (n >= kinds[k].len && memcmp(p, kinds[k].magic, kinds[k].len) == 0) return kinds[k].what;
    unsigned wire = p[0] & 7u;
    int field0 = (p[0] >> 3) == 0 && !(p[0] & 0x80);
    if (field0 || wire == 3 || wire == 4 || wire == 6 || wire == 7)
        return "its first byte starts no protobuf field";
    return NULL;
}

/* Whether the first byte is the tag of a TensorProto's dims (packed or
 * not) or data_type. Read only once a load failed: a buffer being decoded
 * gives its pages back, and touching one again would map it anew. */
static int onnx_starts_as_tensor(const void *data, size_t size) {
    unsigned char first = size ? *(const unsigned char *)data : 0;
    return first == 0x08 || first == 0x0a || first == 0x10;
}

/* Unpacks and builds. `owned` (may be NULL) is the file buffer holding
 * `data` (a mapping of the file when owned_mapped), released as it is
 * decoded and freed right after unpacking, to lower the peak memory. */
static mha_status load_common(ir_graph *g, const void *data, size_t size, void *owned,
                              int owned_mapped, const char *base_dir, const ir_load_options *opts,
                              mha_error *err) {
    const char *other = onnx_not_a_model(data, size);
    if (other) {
        if (owned) onnx_file_free(&g->alloc, owned, size, owned_mapped);
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "not an ONNX model: %s", other);
    }
    int depth =
        opts && opts->max_nesting_depth > 0 ? opts->max_nesting_depth : ONNX_DEFAULT_MAX_NESTING;
    uint64_t max_bytes =
        opts && opts->max_file_bytes ? opts->max_file_bytes : ONNX_DEFAULT_MAX_FILE_BYTES;
    onnx_pb_alloc pa;
    onnx_pb_alloc_init(&pa, &g->alloc);
    /* a buffer of ours (the file's bytes) is given back as it is decoded */
    onnx_release rel;
    memset(&rel, 0, sizeof rel);
    rel.base = owned;
    rel.size = size;
    if (owned == data) pa.release = &rel;
    ProtobufCMessage *msg = NULL;
    mha_status st = onnx_unpack(&onnx__model_proto__descriptor, data, size, depth, &pa, &msg, err);
    /* a tensor file given as the model (input_0.pb of a test case) fails
     * as a ModelProto at some field of the wrong wire type; said as what it
     * is when it starts as writers start a TensorProto (its dims, packed or
     * not, or its data_type: fields go in number order) and reads as one
     * (unpacking, which gives pages of a buffer back, did not start then:
     * the scan refused it first) */
    mha_error as_tensor;
    if (st == MHA_ERR_MODEL_FORMAT && err && strstr(err->message, "has wire type") &&
        onnx_starts_as_tensor(data, size) &&
        onnx_wire_prescan(&g->alloc, data, size, &onnx__tensor_proto__descriptor, depth,
                          &as_tensor) == MHA_OK)
        st = mha_fail(err, MHA_ERR_MODEL_FORMAT,
                      "not an ONNX model: an ONNX TensorProto (a tensor file, as input_0.pb of "
                      "a test case; the model is the .onnx file)");
    mha_free(&g->alloc, rel.at);
    mha_free(&g->alloc, rel.len);
    if (owned) onnx_file_free(&g->alloc, owned, size, owned_mapped);
    if (st != MHA_OK) return st;

    onnx_load_ctx lc;
    onnx_load_ctx_init(&lc, &g->alloc, base_dir, max_bytes);
    builder b;
    memset(&b, 0, sizeof b);
    b.g = g;
    b.lc = &lc;
    b.err = err;
    st = build_graph(&b, (Onnx__ModelProto *)msg);
    g->external_id = lc.external_id;
    onnx_load_ctx_close(&lc);
    mha_free(&g->alloc, b.slots);
    mha_free(&g->alloc, b.declared_input);
    mha_free(&g->alloc, b.unread_init);
    mha_free(&g->alloc, b.used);
    protobuf_c_message_free_unpacked(msg, &pa.pb);
    return st;
}

static ir_graph *graph_new(const mha_alloc_ctx *alloc, const char *path) {
    mha_alloc_ctx ctx;
    if (alloc)
        ctx = *alloc;
    else
        mha_alloc_ctx_init(&ctx, NULL);
    ir_graph *g = mha_calloc(&ctx, 1, sizeof *g);
    if (!g) return NULL;
    g->alloc = ctx;
    g->path = mha_strdup(&g->alloc, path);
    if (!g->path) {
        mha_free(&ctx, g);
        return NULL;
    }
    return g;
}

mha_status ir_load_memory(const mha_alloc_ctx *alloc, const void *data, size_t size,
                          const char *base_dir, const ir_load_options *opts, ir_graph **out,
                          mha_error *err) {
    *out = NULL;
    const char *label = "<memory>";
    if (!data || size == 0)
        return mha_fail(err, MHA_ERR_MODEL_FORMAT, "%s: empty model (0 bytes)", label);
    uint64_t max_bytes =
        opts && opts->max_file_bytes ? opts->max_file_bytes : ONNX_DEFAULT_MAX_FILE_BYTES;
    if ((uint64_t)size > max_bytes)
        return mha_fail(err, MHA_ERR_LIMIT,
                        "%s: model of %zu bytes exceeds the limit of %llu bytes", label, size,
                        (unsigned long long)max_bytes);
    ir_graph *g = graph_new(alloc, "");
    if (!g) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", label);
    mha_status st = load_common(g, data, size, NULL, 0, base_dir, opts, err);
    if (st != MHA_OK) {
        mha_error_prefix(err, "%s", label);
        ir_free(g);
        return st;
    }
    *out = g;
    return MHA_OK;
}

mha_status ir_load_file(const mha_alloc_ctx *alloc, const char *path, const ir_load_options *opts,
                        ir_graph **out, mha_error *err) {
    *out = NULL;
    if (!path || !*path) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "no model path given");
    ir_graph *g = graph_new(alloc, path);
    if (!g) return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);

    /* external data resolves in the folder of the model file */
    const char *slash = strrchr(path, '/');
    char *base_dir;
    if (!slash) {
        base_dir = mha_strdup(&g->alloc, ".");
    } else {
        size_t len = slash == path ? 1 : (size_t)(slash - path);
        base_dir = mha_malloc(&g->alloc, len + 1);
        if (base_dir) {
            memcpy(base_dir, path, len);
            base_dir[len] = '\0';
        }
    }
    if (!base_dir) {
        ir_free(g);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "%s: out of memory", path);
    }

    void *data = NULL;
    size_t size = 0;
    int mapped = 0;
    mha_status st = onnx_read_file(&g->alloc, path, opts ? opts->max_file_bytes : 0, &data, &size,
                                   &mapped, err);
    if (st == MHA_OK) {
        st = load_common(g, data, size, data, mapped, base_dir, opts, err);
        if (st != MHA_OK) mha_error_prefix(err, "%s", path);
    }
    mha_free(&g->alloc, base_dir);
    if (st != MHA_OK) {
        ir_free(g);
        return st;
    }
    *out = g;
    return MHA_OK;
}
