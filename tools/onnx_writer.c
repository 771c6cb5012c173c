/* onnx_writer.c -- the protobuf wire format for the ONNX messages `mha gen`
 * writes (see onnx_writer.h).
 *
 * A message is a list of parts: runs of bytes already encoded (tags,
 * varints, strings), nested messages, and lazy random tensors. Writing is
 * two passes over the tree: sizes bottom-up (a nested message's length
 * prefix needs its size), then the bytes into one buffer. Fields go in
 * field-number order within each message, as protobuf's own encoders
 * write them; repeated scalars unpacked (onnx.proto is proto2).
 *
 * Field numbers (onnx.proto): ModelProto ir_version 1, producer_name 2,
 * producer_version 3, graph 7, opset_import 8; OperatorSetIdProto domain 1,
 * version 2; GraphProto node 1, name 2, initializer 5, input 11, output 12;
 * NodeProto input 1, output 2, name 3, op_type 4, attribute 5, domain 7;
 * AttributeProto name 1, f 2, i 3, ints 8, type 20 (FLOAT 1, INT 2, INTS 7);
 * TensorProto dims 1, data_type 2, name 8, raw_data 9; ValueInfoProto name
 * 1, type 2; TypeProto tensor_type 1; TypeProto.Tensor elem_type 1, shape 2;
 * TensorShapeProto dim 1; Dimension dim_value 1, dim_param 2. */
#include "onnx_writer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha_cli.h"

enum { PART_BYTES, PART_CHILD, PART_RANDOM };

/* A float32 tensor's data drawn when written: n values U(-scale, scale) +
 * offset from the splitmix64 stream at `seed`. */
typedef struct ow_random_data {
    size_t n;
    float scale, offset;
    uint64_t seed;
} ow_random_data;

typedef struct ow_part {
    int kind;
    uint32_t field;      /* PART_CHILD, PART_RANDOM: the field they are */
    size_t off, len;     /* PART_BYTES: msg->buf[off, off + len) */
    ow_msg *child;       /* PART_CHILD */
    ow_random_data *rnd; /* PART_RANDOM */
} ow_part;

struct ow_msg {
    ow_writer *w;
    uint8_t *buf;
    size_t len, cap;
    ow_part *parts;
    size_t n_parts, cap_parts;
    size_t size; /* the encoded size, set by the sizing pass */
};

struct ow_writer {
    int failed;
    void **ptrs; /* every block of the arena */
    size_t n_ptrs, cap_ptrs;
    ow_msg **msgs; /* every message (their buffers are freed with them) */
    size_t n_msgs, cap_msgs;
    ow_msg *model, *graph;
    /* the graph's fields, kept apart so they are written in field order
     * whatever order the builder adds them in */
    ow_msg *nodes, *inits, *inputs, *outputs;
};

/* Grows *p (of *cap elements of size sz) to hold n; 0 when out of memory. */
static int ow_grow(void **p, size_t *cap, size_t n, size_t sz) {
    if (n <= *cap) return 1;
    size_t c = *cap ? *cap : 8;
    while (c < n)
        c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static void *ow_alloc(ow_writer *w, size_t size) {
    if (w->failed) return NULL;
    void *p = calloc(1, size ? size : 1);
    if (!p || !ow_grow((void **)&w->ptrs, &w->cap_ptrs, w->n_ptrs + 1, sizeof *w->ptrs)) {
        free(p);
        w->failed = 1;
        return NULL;
    }
    w->ptrs[w->n_ptrs++] = p;
    return p;
}

const char *ow_str(ow_writer *w, const char *s) {
    char *p = ow_alloc(w, strlen(s) + 1);
    if (p) memcpy(p, s, strlen(s) + 1);
    return p ? p : "";
}

const char *ow_fmt(ow_writer *w, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return ow_str(w, buf);
}

static ow_msg *ow_msg_new(ow_writer *w) {
    ow_msg *m = ow_alloc(w, sizeof *m);
    if (!m) return NULL;
    if (!ow_grow((void **)&w->msgs, &w->cap_msgs, w->n_msgs + 1, sizeof *w->msgs)) {
        w->failed = 1;
        return NULL;
    }
    w->msgs[w->n_msgs++] = m;
    m->w = w;
    return m;
}

static ow_part *ow_part_add(ow_msg *m) {
    if (!m || m->w->failed) return NULL;
    if (!ow_grow((void **)&m->parts, &m->cap_parts, m->n_parts + 1, sizeof *m->parts)) {
        m->w->failed = 1;
        return NULL;
    }
    ow_part *p = &m->parts[m->n_parts++];
    memset(p, 0, sizeof *p);
    return p;
}

/* Appends encoded bytes, extending the last run when it is one. */
static void ow_bytes(ow_msg *m, const void *data, size_t n) {
    if (!m || m->w->failed) return;
    if (!ow_grow((void **)&m->buf, &m->cap, m->len + n, 1)) {
        m->w->failed = 1;
        return;
    }
    ow_part *last = m->n_parts ? &m->parts[m->n_parts - 1] : NULL;
    if (!last || last->kind != PART_BYTES || last->off + last->len != m->len) {
        if (!(last = ow_part_add(m))) return;
        last->kind = PART_BYTES;
        last->off = m->len;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    last->len += n;
}

static size_t ow_varint_encode(uint64_t v, uint8_t *out) {
    size_t n = 0;
    do {
        out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static size_t ow_varint_size(uint64_t v) {
    uint8_t tmp[10];
    return ow_varint_encode(v, tmp);
}

static void ow_varint(ow_msg *m, uint64_t v) {
    uint8_t tmp[10];
    ow_bytes(m, tmp, ow_varint_encode(v, tmp));
}

/* Wire types: 0 varint, 2 length-delimited, 5 fixed 32 bits. */
static void ow_tag(ow_msg *m, uint32_t field, int wire) {
    ow_varint(m, ((uint64_t)field << 3) | (uint64_t)wire);
}

static void ow_field_varint(ow_msg *m, uint32_t field, int64_t v) {
    ow_tag(m, field, 0);
    ow_varint(m, (uint64_t)v); /* negative int64: ten bytes, as protobuf */
}

static void ow_field_bytes(ow_msg *m, uint32_t field, const void *data, size_t n) {
    ow_tag(m, field, 2);
    ow_varint(m, n);
    ow_bytes(m, data, n);
}

static void ow_field_string(ow_msg *m, uint32_t field, const char *s) {
    ow_field_bytes(m, field, s, strlen(s));
}

/* A nested message as field `field` of m. */
static ow_msg *ow_field_msg(ow_msg *m, uint32_t field) {
    ow_msg *c = m ? ow_msg_new(m->w) : NULL;
    ow_part *p = c ? ow_part_add(m) : NULL;
    if (!p) return NULL;
    p->kind = PART_CHILD;
    p->field = field;
    p->child = c;
    return c;
}

/* ---- sizes, then bytes ---- */

static size_t ow_part_size(const ow_part *p) {
    size_t body = p->kind == PART_CHILD ? p->child->size : p->rnd->n * sizeof(float);
    return ow_varint_size((uint64_t)p->field << 3) + ow_varint_size(body) + body;
}

static size_t ow_measure(ow_msg *m) {
    size_t n = 0;
    for (size_t i = 0; i < m->n_parts; i++) {
        ow_part *p = &m->parts[i];
        if (p->kind == PART_BYTES) {
            n += p->len;
            continue;
        }
        if (p->kind == PART_CHILD) ow_measure(p->child);
        n += ow_part_size(p);
    }
    return m->size = n;
}

/* The float32 values go out little-endian: the layout of this host (x86),
 * as raw_data wants. */
static uint8_t *ow_emit(const ow_msg *m, uint8_t *out) {
    for (size_t i = 0; i < m->n_parts; i++) {
        const ow_part *p = &m->parts[i];
        if (p->kind == PART_BYTES) {
            memcpy(out, m->buf + p->off, p->len);
            out += p->len;
            continue;
        }
        int is_child = p->kind == PART_CHILD;
        size_t body = is_child ? p->child->size : p->rnd->n * sizeof(float);
        out += ow_varint_encode(((uint64_t)p->field << 3) | 2, out);
        out += ow_varint_encode(body, out);
        if (is_child) {
            out = ow_emit(p->child, out);
            continue;
        }
        uint64_t seed = p->rnd->seed;
        for (size_t k = 0; k < p->rnd->n; k++) {
            float v = (float)((2.0 * cli_rng_uniform(&seed) - 1.0) * p->rnd->scale);
            if (p->rnd->offset != 0.0f) v += p->rnd->offset;
            memcpy(out, &v, sizeof v);
            out += sizeof v;
        }
    }
    return out;
}

/* The graph's fields in field order (node 1, name 2, initializer 5, input
 * 11, output 12): the builder's lists are moved into the graph's parts. */
static void ow_graph_assemble(ow_writer *w) {
    ow_msg *lists[4] = {w->nodes, w->inits, w->inputs, w->outputs};
    ow_msg *g = w->graph;
    ow_part name = g->parts[0]; /* the name, written first by ow_create */
    size_t n = 0;
    for (int k = 0; k < 4; k++)
        n += lists[k]->n_parts;
    ow_part *parts = calloc(n + 1, sizeof *parts);
    if (!parts) {
        w->failed = 1;
        return;
    }
    size_t at = 0;
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < lists[k]->n_parts; i++)
            parts[at++] = lists[k]->parts[i];
        if (k == 0) parts[at++] = name;
    }
    free(g->parts);
    g->parts = parts;
    g->n_parts = g->cap_parts = n + 1;
}

uint8_t *ow_serialize(ow_writer *w, size_t *size) {
    if (!w || w->failed) return NULL;
    ow_graph_assemble(w);
    if (w->failed) return NULL;
    size_t n = ow_measure(w->model);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return NULL;
    ow_emit(w->model, buf);
    *size = n;
    return buf;
}

/* ---- the model ---- */

ow_writer *ow_create(int64_t ir_version, int64_t opset, int ms_opset, const char *version,
                     const char *name) {
    ow_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->model = ow_msg_new(w);
    ow_field_varint(w->model, 1, ir_version);
    ow_field_string(w->model, 2, "mha gen");
    ow_field_string(w->model, 3, version);
    w->graph = ow_field_msg(w->model, 7);
    ow_field_string(w->graph, 2, name);
    ow_msg *set = ow_field_msg(w->model, 8);
    ow_field_string(set, 1, "");
    ow_field_varint(set, 2, opset);
    if (ms_opset) {
        set = ow_field_msg(w->model, 8);
        ow_field_string(set, 1, "com.microsoft");
        ow_field_varint(set, 2, 1);
    }
    /* holders of the graph's repeated fields, never written themselves */
    w->nodes = ow_msg_new(w);
    w->inits = ow_msg_new(w);
    w->inputs = ow_msg_new(w);
    w->outputs = ow_msg_new(w);
    if (w->failed) {
        ow_free(w);
        return NULL;
    }
    return w;
}

void ow_free(ow_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_msgs; i++) {
        free(w->msgs[i]->buf);
        free(w->msgs[i]->parts);
    }
    for (size_t i = 0; i < w->n_ptrs; i++)
        free(w->ptrs[i]);
    free(w->msgs);
    free(w->ptrs);
    free(w);
}

int ow_failed(const ow_writer *w) {
    return !w || w->failed;
}

static void ow_value_info(ow_msg *list, uint32_t field, const char *name, int elem_type, int rank,
                          const int64_t *dims, const char *const *names) {
    ow_msg *vi = ow_field_msg(list, field);
    ow_field_string(vi, 1, name);
    ow_msg *tensor = ow_field_msg(ow_field_msg(vi, 2), 1);
    ow_field_varint(tensor, 1, elem_type);
    ow_msg *shape = ow_field_msg(tensor, 2);
    for (int i = 0; i < rank; i++) {
        ow_msg *dim = ow_field_msg(shape, 1);
        if (dims[i] >= 0)
            ow_field_varint(dim, 1, dims[i]);
        else
            ow_field_string(dim, 2, names[i]);
    }
}

void ow_input(ow_writer *w, const char *name, int elem_type, int rank, const int64_t *dims,
              const char *const *names) {
    ow_value_info(w->inputs, 11, name, elem_type, rank, dims, names);
}

void ow_output(ow_writer *w, const char *name, int elem_type, int rank, const int64_t *dims,
               const char *const *names) {
    ow_value_info(w->outputs, 12, name, elem_type, rank, dims, names);
}

/* A TensorProto's head: dims, data type, name (raw_data follows). */
static ow_msg *ow_tensor(ow_writer *w, const char *name, int rank, const int64_t *dims,
                         int data_type) {
    ow_msg *t = ow_field_msg(w->inits, 5);
    for (int i = 0; i < rank; i++)
        ow_field_varint(t, 1, dims[i]);
    ow_field_varint(t, 2, data_type);
    ow_field_string(t, 8, name);
    return t;
}

void ow_random(ow_writer *w, const char *name, int rank, const int64_t *dims, float scale,
               float offset, uint64_t *seed) {
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    ow_msg *t = ow_tensor(w, name, rank, dims, OW_FLOAT);
    ow_random_data *r = ow_alloc(w, sizeof *r);
    ow_part *p = r ? ow_part_add(t) : NULL;
    if (p) {
        r->n = n, r->scale = scale, r->offset = offset, r->seed = *seed;
        p->kind = PART_RANDOM;
        p->field = 9;
        p->rnd = r;
    }
    *seed += n * 0x9e3779b97f4a7c15ull; /* n draws of cli_rng_next */
}

void ow_floats(ow_writer *w, const char *name, const float *v, size_t n) {
    int64_t dim = (int64_t)n;
    ow_field_bytes(ow_tensor(w, name, n ? 1 : 0, &dim, OW_FLOAT), 9, v, (n ? n : 1) * sizeof *v);
}

void ow_ints(ow_writer *w, const char *name, const int64_t *v, size_t n) {
    int64_t dim = (int64_t)n;
    ow_field_bytes(ow_tensor(w, name, n ? 1 : 0, &dim, OW_INT64), 9, v, (n ? n : 1) * sizeof *v);
}

ow_msg *ow_node(ow_writer *w, const char *op, const char *name, const char *const *inputs,
                const char *const *outputs) {
    ow_msg *n = ow_field_msg(w->nodes, 1);
    for (size_t i = 0; inputs && inputs[i]; i++)
        ow_field_string(n, 1, inputs[i]);
    for (size_t i = 0; outputs[i]; i++)
        ow_field_string(n, 2, outputs[i]);
    ow_field_string(n, 3, name);
    ow_field_string(n, 4, op);
    return n;
}

/* Attributes (field 5) come before the domain (field 7): a node's domain is
 * set after its attributes. */
void ow_domain(ow_msg *node, const char *domain) {
    ow_field_string(node, 7, domain);
}

void ow_attr_int(ow_msg *node, const char *name, int64_t v) {
    ow_msg *a = ow_field_msg(node, 5);
    ow_field_string(a, 1, name);
    ow_field_varint(a, 3, v);
    ow_field_varint(a, 20, 2);
}

void ow_attr_float(ow_msg *node, const char *name, float v) {
    ow_msg *a = ow_field_msg(node, 5);
    ow_field_string(a, 1, name);
    ow_tag(a, 2, 5);
    ow_bytes(a, &v, sizeof v); /* fixed32, little-endian as this host */
    ow_field_varint(a, 20, 1);
}

void ow_attr_ints(ow_msg *node, const char *name, const int64_t *v, size_t n) {
    ow_msg *a = ow_field_msg(node, 5);
    ow_field_string(a, 1, name);
    for (size_t i = 0; i < n; i++)
        ow_field_varint(a, 8, v[i]);
    ow_field_varint(a, 20, 7);
}
