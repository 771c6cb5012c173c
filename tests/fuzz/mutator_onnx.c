/* mutator_onnx.c -- a structure-aware libFuzzer mutator for the onnx_model
 * target. Byte-level mutation of a model mostly breaks the protobuf framing
 * and stops in the importer; the recogniser and verifier behind it need
 * models that parse but mean something slightly different. So two times in
 * three this mutator unpacks the input as a ModelProto, changes one to three
 * things the way a confused exporter would -- an op type, a node input wired
 * to another value, a dropped node or attribute, an attribute value, a
 * dimension (or a fixed axis made symbolic, a symbolic one fixed), a data
 * type, an opset -- and packs it again; otherwise (and
 * whenever the input does not unpack) it leaves the bytes to libFuzzer's own
 * mutations.
 *
 * protobuf-c owns the unpacked message, so every pointer, count or oneof
 * this file changes is logged and restored before the message is freed;
 * values changed in place (numbers, dims, raw bytes) need no undo. Linked only into the
 * fuzz_onnx_model binary. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_entry.h"
#include "onnx_load_internal.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

/* ---- undo log ---- */

#define UNDO_MAX 64

typedef struct undo_entry {
    void **ptr_slot; /* a pointer field, or NULL */
    void *ptr_old;
    size_t *count_slot; /* a count field, or NULL */
    size_t count_old;
    void *raw_slot; /* a field of raw_len bytes (an enum, a oneof's union), or NULL */
    unsigned char raw_old[8];
    size_t raw_len;
} undo_entry;

typedef struct mutator {
    uint64_t rng;
    undo_entry undo[UNDO_MAX];
    int n_undo;
    /* value names seen in the graph (borrowed from the message) */
    char *names[256];
    size_t n_names;
} mutator;

static uint64_t next(mutator *m) {
    /* splitmix64 */
    uint64_t z = (m->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t pick(mutator *m, size_t n) {
    return n ? (size_t)(next(m) % n) : 0;
}

static int set_ptr(mutator *m, void **slot, void *value) {
    if (m->n_undo >= UNDO_MAX) return 0;
    m->undo[m->n_undo++] = (undo_entry){.ptr_slot = slot, .ptr_old = *slot};
    *slot = value;
    return 1;
}

static int set_count(mutator *m, size_t *slot, size_t value) {
    if (m->n_undo >= UNDO_MAX) return 0;
    m->undo[m->n_undo++] = (undo_entry){.count_slot = slot, .count_old = *slot};
    *slot = value;
    return 1;
}

/* A field of up to 8 bytes by its bytes: a oneof's case and its union,
 * which protobuf-c reads to know what to free. */
static int set_raw(mutator *m, void *slot, const void *value, size_t len) {
    if (m->n_undo >= UNDO_MAX || len > sizeof m->undo[0].raw_old) return 0;
    undo_entry *e = &m->undo[m->n_undo++];
    *e = (undo_entry){.raw_slot = slot, .raw_len = len};
    memcpy(e->raw_old, slot, len);
    memcpy(slot, value, len);
    return 1;
}

static void undo_all(mutator *m) {
    while (m->n_undo > 0) {
        undo_entry *e = &m->undo[--m->n_undo];
        if (e->ptr_slot) *e->ptr_slot = e->ptr_old;
        if (e->count_slot) *e->count_slot = e->count_old;
        if (e->raw_slot) memcpy(e->raw_slot, e->raw_old, e->raw_len);
    }
}

/* Swaps element i and the last of a pointer array, then drops the last
 * (undone in reverse: count restored, then the swap). */
static int drop_element(mutator *m, void **array, size_t *count, size_t i) {
    size_t last = *count - 1;
    if (m->n_undo + 3 > UNDO_MAX) return 0;
    void *a = array[i], *b = array[last];
    set_ptr(m, &array[i], b);
    set_ptr(m, &array[last], a);
    set_count(m, count, last);
    return 1;
}

/* ---- what mutations choose from ---- */

#define N_OF(array) (sizeof(array) / sizeof((array)[0]))

/* clang-format off */
static char *const op_types[] = {
    "MatMul", "Add", "Mul", "Div", "Sub", "Softmax", "Transpose", "Reshape", "Attention",
    "MultiHeadAttention", "Gemm", "Identity", "Cast", "Where", "Concat", "Split", "Slice",
    "Unsqueeze", "Squeeze", "Shape", "Gather", "Sqrt", "Neg", "Expand", "Trilu", "Constant",
    "ConstantOfShape", "Equal", "Not", "LogSoftmax", "ReduceMax", "Tanh", "Flatten", "Tile",
    /* the whole-model plan's ops: normalisations, MLPs, the patch Conv */
    "LayerNormalization", "SimplifiedLayerNormalization", "ReduceMean", "Pow", "Erf", "Gelu",
    "Relu", "Sigmoid", "Conv", "Einsum", "Range", "CumSum", "Pad"};
/* clang-format on */
/* names of symbolic axes, some shared between inputs */
static char *const dim_params[] = {"batch", "sequence", "height", "width", "N"};
static char *const domains[] = {"", "com.microsoft", "ai.onnx", "org.other"};
static const int64_t ints[] = {-3, -2, -1, 0,  1,       2,         3,         4,
                               5,  8,  16, 64, 1000000, INT64_MAX, INT64_MIN, (int64_t)1 << 31};
static const int32_t dtypes[] = {1, 2, 3, 6, 7, 9, 10, 11, 16, 8, 0, 5};
static const int64_t opsets[] = {1, 11, 13, 14, 17, 21, 23, 24, 25, 1000};

static int64_t pick_int(mutator *m, int64_t old) {
    size_t k = pick(m, N_OF(ints) + 2);
    /* wrap instead of overflowing (the harness must itself be free of UB) */
    if (k == N_OF(ints)) return (int64_t)((uint64_t)old + 1u);
    if (k == N_OF(ints) + 1) return (int64_t)((uint64_t)old - 1u);
    return ints[k];
}

static float pick_float(mutator *m, float old) {
    switch (pick(m, 9)) {
    case 0:
        return 0.0f;
    case 1:
        return 1.0f;
    case 2:
        return -1.0f;
    case 3:
        return old * 2.0f;
    case 4:
        return old / 2.0f;
    case 5:
        return INFINITY;
    case 6:
        return NAN;
    case 7:
        return 1e30f;
    default:
        return -old;
    }
}

static void collect_names(mutator *m, Onnx__GraphProto *g) {
    m->n_names = 0;
    char *empty = "";
    m->names[m->n_names++] = empty;
    for (size_t i = 0; i < g->n_input && m->n_names < 256; i++)
        if (g->input[i]->name) m->names[m->n_names++] = g->input[i]->name;
    for (size_t i = 0; i < g->n_initializer && m->n_names < 256; i++)
        if (g->initializer[i]->name) m->names[m->n_names++] = g->initializer[i]->name;
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_output && m->n_names < 256; k++)
            m->names[m->n_names++] = g->node[i]->output[k];
}

/* ---- one mutation ---- */

static int mutate_node(mutator *m, Onnx__NodeProto *n) {
    switch (pick(m, 8)) {
    case 0:
        return set_ptr(m, (void **)&n->op_type, op_types[pick(m, N_OF(op_types))]);
    case 1:
        return set_ptr(m, (void **)&n->domain, domains[pick(m, N_OF(domains))]);
    case 2:
        if (!n->n_input) return 0;
        return set_ptr(m, (void **)&n->input[pick(m, n->n_input)], m->names[pick(m, m->n_names)]);
    case 3: { /* swap two inputs */
        if (n->n_input < 2) return 0;
        size_t a = pick(m, n->n_input), b = pick(m, n->n_input);
        char *x = n->input[a], *y = n->input[b];
        return set_ptr(m, (void **)&n->input[a], y) && set_ptr(m, (void **)&n->input[b], x);
    }
    case 4: /* drop the last input or output */
        if (pick(m, 2) && n->n_input) return set_count(m, &n->n_input, n->n_input - 1);
        if (n->n_output) return set_count(m, &n->n_output, n->n_output - 1);
        return 0;
    case 5:
        if (!n->n_output) return 0;
        return set_ptr(m, (void **)&n->output[pick(m, n->n_output)], m->names[pick(m, m->n_names)]);
    case 6:
        if (!n->n_attribute) return 0;
        return drop_element(m, (void **)n->attribute, &n->n_attribute, pick(m, n->n_attribute));
    default: { /* an attribute's value, in place */
        if (!n->n_attribute) return 0;
        Onnx__AttributeProto *a = n->attribute[pick(m, n->n_attribute)];
        if (a->has_i) a->i = pick_int(m, a->i);
        if (a->has_f) a->f = pick_float(m, a->f);
        if (a->n_ints) {
            size_t j = pick(m, a->n_ints);
            a->ints[j] = pick_int(m, a->ints[j]);
        }
        if (a->n_floats) {
            size_t j = pick(m, a->n_floats);
            a->floats[j] = pick_float(m, a->floats[j]);
        }
        if (a->t && a->t->n_dims) {
            size_t j = pick(m, a->t->n_dims);
            a->t->dims[j] = pick_int(m, a->t->dims[j]);
        }
        return 1;
    }
    }
}

static int mutate_tensor(mutator *m, Onnx__TensorProto *t) {
    switch (pick(m, 4)) {
    case 0:
        if (!t->n_dims) return 0;
        t->dims[pick(m, t->n_dims)] = pick_int(m, 0);
        return 1;
    case 1:
        t->data_type = dtypes[pick(m, N_OF(dtypes))];
        return 1;
    case 2:
        if (!t->n_dims) return 0;
        return set_count(m, &t->n_dims, t->n_dims - 1);
    default: { /* one float32 element becomes special */
        if (t->data_type != 1 || t->raw_data.len < 4) return 0;
        size_t j = pick(m, t->raw_data.len / 4);
        float v;
        memcpy(&v, t->raw_data.data + 4 * j, 4);
        v = pick_float(m, v);
        memcpy(t->raw_data.data + 4 * j, &v, 4);
        return 1;
    }
    }
}

static int mutate_value_info(mutator *m, Onnx__ValueInfoProto *vi) {
    if (!vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        !vi->type->tensor_type)
        return 0;
    Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
    if (pick(m, 3) == 0) {
        tt->elem_type = dtypes[pick(m, N_OF(dtypes))];
        tt->has_elem_type = 1;
        return 1;
    }
    if (!tt->shape || !tt->shape->n_dim) return 0;
    if (pick(m, 4) == 0) return set_count(m, &tt->shape->n_dim, tt->shape->n_dim - 1);
    Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[pick(m, tt->shape->n_dim)];
    const int is_param = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    if (pick(m, 3) == 0 && m->n_undo + 2 <= UNDO_MAX) {
        /* a fixed axis becomes symbolic, a symbolic one fixed: what the
         * plan's probes and its image-size fitting see */
        Onnx__TensorShapeProto__Dimension__ValueCase vc =
            is_param ? ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                     : ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
        int64_t v = pick_int(m, 2);
        char *name = dim_params[pick(m, N_OF(dim_params))];
        int ok = is_param ? set_raw(m, &d->dim_value, &v, sizeof v)
                          : set_raw(m, &d->dim_param, &name, sizeof name);
        return ok && set_raw(m, &d->value_case, &vc, sizeof vc);
    }
    if (d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) return 0;
    d->dim_value = pick_int(m, d->dim_value);
    return 1;
}

static int mutate_once(mutator *m, Onnx__ModelProto *model) {
    Onnx__GraphProto *g = model->graph;
    switch (pick(m, 10)) {
    case 0:
    case 1:
    case 2:
        if (!g->n_node) return 0;
        return mutate_node(m, g->node[pick(m, g->n_node)]);
    case 3: /* drop a node */
        if (!g->n_node) return 0;
        return drop_element(m, (void **)g->node, &g->n_node, pick(m, g->n_node));
    case 4:
    case 5:
        if (!g->n_initializer) return 0;
        return mutate_tensor(m, g->initializer[pick(m, g->n_initializer)]);
    case 6:
        if (!g->n_input) return 0;
        return mutate_value_info(m, g->input[pick(m, g->n_input)]);
    case 7:
        if (!g->n_output) return 0;
        return mutate_value_info(m, g->output[pick(m, g->n_output)]);
    case 8:
        if (!model->n_opset_import) return 0;
        model->opset_import[pick(m, model->n_opset_import)]->version =
            opsets[pick(m, N_OF(opsets))];
        return 1;
    default: /* drop an initializer or a graph input */
        if (pick(m, 2) && g->n_initializer)
            return drop_element(m, (void **)g->initializer, &g->n_initializer,
                                pick(m, g->n_initializer));
        if (g->n_input) return drop_element(m, (void **)g->input, &g->n_input, pick(m, g->n_input));
        return 0;
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    mutator m;
    memset(&m, 0, sizeof m);
    m.rng = seed;
    if (pick(&m, 3) == 0 || size == 0) return LLVMFuzzerMutate(data, size, max_size);

    /* protobuf-c recurses per nesting level: let the engine's own scan
     * refuse deep inputs first */
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    if (onnx_wire_prescan(&a, data, size, &onnx__model_proto__descriptor, 64, NULL) != MHA_OK)
        return LLVMFuzzerMutate(data, size, max_size);
    Onnx__ModelProto *model = onnx__model_proto__unpack(NULL, size, data);
    if (!model) return LLVMFuzzerMutate(data, size, max_size);
    if (!model->graph) {
        onnx__model_proto__free_unpacked(model, NULL);
        return LLVMFuzzerMutate(data, size, max_size);
    }
    collect_names(&m, model->graph);
    int changed = 0;
    for (size_t k = 1 + pick(&m, 3); k > 0; k--)
        changed |= mutate_once(&m, model);

    size_t out = 0;
    size_t n = onnx__model_proto__get_packed_size(model);
    if (changed && n <= max_size) {
        uint8_t *buf = malloc(n ? n : 1);
        if (buf) {
            out = onnx__model_proto__pack(model, buf);
            memcpy(data, buf, out);
            free(buf);
        }
    }
    undo_all(&m);
    onnx__model_proto__free_unpacked(model, NULL);
    return out ? out : LLVMFuzzerMutate(data, size, max_size);
}
