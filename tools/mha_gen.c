/* mha_gen.c -- `mha gen`: writes a seeded random-weight attention layer as
 * ONNX, by default in the form of tests/data/conformance/mha_self_*:
 *
 *   query [batch, seq, D]
 *     -> MatMul(q_proj.weight [D, H*dh]) (+ Add q_proj.bias)      q_3d
 *     -> MatMul(k_proj.weight [D, Hkv*dh]) (+ Add k_proj.bias)    k_3d
 *     -> MatMul(v_proj.weight [D, Hkv*dh]) (+ Add v_proj.bias)    v_3d
 *   Attention(q_3d, k_3d, v_3d; q_num_heads H, kv_num_heads Hkv[, is_causal])
 *     -> MatMul(out_proj.weight [H*dh, D]) (+ Add out_proj.bias)  output [batch, seq, D]
 *
 * opset 23, IR version 11 (--form attention23). The same layer -- same
 * seed, same weights, same projections -- can be written with the middle
 * step in two other forms, so engines can be compared on each:
 *   --form ms_mha      com.microsoft MultiHeadAttention(q_3d, k_3d, v_3d;
 *                      num_heads H, scale[, unidirectional]); opset 17
 *   --form decomposed  plain opset-17 ops: Reshape to [B, S, H, dh],
 *                      Transpose (K to [B, H, dh, S]), MatMul, Mul(scale),
 *                      [Add of a causal -inf mask built from Shape / Range /
 *                      Greater / Where], Softmax, MatMul, Transpose, Reshape
 *
 * Weights ~ U(-1, 1) / sqrt(D) from a splitmix64 stream seeded by --seed.
 * Optionally also a seeded random float32 dataset [B, S, D] in U(-1, 1).
 * Both files are written atomically. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_options.h"
#include "mha_cli.h"
#include "onnx.pb-c.h"
#include "mha/npy.h"

enum {
    GEN_D_MODEL = 1,
    GEN_HEADS,
    GEN_KV_HEADS,
    GEN_CAUSAL,
    GEN_NO_BIAS,
    GEN_SEED,
    GEN_FORM,
    GEN_OUTPUT,
    GEN_DATA,
    GEN_BATCH,
    GEN_SEQ,
};

static const cli_opt gen_opts[] = {
    {GEN_D_MODEL, "d-model", 'd', "D", "model width (a multiple of H)"},
    {GEN_HEADS, "heads", 'H', "H", "query heads"},
    {GEN_KV_HEADS, "kv-heads", 0, "N", "key/value heads (divides H; default H; fewer = GQA/MQA)"},
    {GEN_CAUSAL, "causal", 0, NULL, "causal (each position sees itself and earlier ones)"},
    {GEN_NO_BIAS, "no-bias", 0, NULL, "projections without the Add of a bias"},
    {GEN_SEED, "seed", 0, "S", "seed of the weights and the data (default 0)"},
    {GEN_FORM, "form", 0, "F",
     "the attention step: attention23 (ONNX Attention, opset\n"
     "23; default), ms_mha (com.microsoft MultiHeadAttention,\n"
     "opset 17) or decomposed (MatMul/Softmax/... opset 17);\n"
     "same weights"},
    {GEN_OUTPUT, "output", 'o', "FILE", "the model file to write"},
    {GEN_DATA, "data", 0, "FILE.npy", "also write a float32 dataset [B, S, D] in U(-1, 1)"},
    {GEN_BATCH, "batch", 0, "B", "the dataset's batch size"},
    {GEN_SEQ, "seq", 0, "S", "the dataset's sequence length"},
    {0},
};

/* No runtime options: gen runs no model. */
static const cli_spec gen_spec = {
    "Usage: mha gen -d D -H H [--kv-heads N] [--causal] [--no-bias] [--seed S]\n"
    "               [--form attention23|ms_mha|decomposed]\n"
    "               -o MODEL.onnx [--data FILE.npy --batch B --seq S]\n"
    "\n"
    "Writes a random-weight multi-head attention layer (ONNX opset 23: MatMul+Add\n"
    "projections, an Attention node, MatMul+Add output projection) with input 'query'\n"
    "[batch, seq, D] and output 'output'. Weights ~ U(-1, 1)/sqrt(D), seeded.\n",
    gen_opts,
    0,
    NULL,
};

/* Uniform in [-scale, scale). */
static void gen_fill(float *x, size_t n, float scale, uint64_t *s) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((2.0 * cli_rng_uniform(s) - 1.0) * scale);
}

/* ---- building the ModelProto (every message lives in this arena) ---- */

typedef struct gen_tensor {
    Onnx__TensorProto proto;
    int64_t dims[2];
    void *data; /* float32 or int64, owned */
} gen_tensor;

typedef struct gen_node {
    Onnx__NodeProto proto;
    char *inputs[3];
    char *outputs[1];
    Onnx__AttributeProto attrs[3];
    Onnx__AttributeProto *attr_ptrs[3];
    int64_t ints[4]; /* storage of one INTS attribute (a Transpose perm) */
} gen_node;

#define GEN_MAX_WEIGHTS 24
#define GEN_MAX_NODES 40

typedef struct gen_value {
    Onnx__ValueInfoProto proto;
    Onnx__TypeProto type;
    Onnx__TypeProto__Tensor tensor_type;
    Onnx__TensorShapeProto shape;
    Onnx__TensorShapeProto__Dimension dims[3];
    Onnx__TensorShapeProto__Dimension *dim_ptrs[3];
} gen_value;

typedef struct gen_model {
    gen_tensor weights[GEN_MAX_WEIGHTS];
    Onnx__TensorProto *weight_ptrs[GEN_MAX_WEIGHTS];
    size_t n_weights;
    gen_node nodes[GEN_MAX_NODES];
    Onnx__NodeProto *node_ptrs[GEN_MAX_NODES];
    size_t n_nodes;
    gen_value input, output;
    Onnx__ValueInfoProto *input_ptr, *output_ptr;
    Onnx__OperatorSetIdProto opset[2];
    Onnx__OperatorSetIdProto *opset_ptr[2];
    Onnx__GraphProto graph;
    Onnx__ModelProto model;
} gen_model;

static Onnx__TensorProto *gen_add_weight(gen_model *g, const char *name, int64_t rows, int64_t cols,
                                         float scale, uint64_t *seed) {
    gen_tensor *t = &g->weights[g->n_weights];
    size_t n = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    t->data = malloc(n * sizeof(float));
    if (!t->data) return NULL;
    gen_fill(t->data, n, scale, seed);
    onnx__tensor_proto__init(&t->proto);
    t->dims[0] = rows;
    t->dims[1] = cols;
    t->proto.n_dims = cols > 0 ? 2 : 1;
    t->proto.dims = t->dims;
    t->proto.has_data_type = 1;
    t->proto.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->proto.name = (char *)name;
    t->proto.has_raw_data = 1; /* little-endian float32, as on this host */
    t->proto.raw_data.len = n * sizeof(float);
    t->proto.raw_data.data = (uint8_t *)t->data;
    g->weight_ptrs[g->n_weights++] = &t->proto;
    return &t->proto;
}

/* A constant initializer: int64 (rank 0 when n_dims == 0, else [n]) or a
 * float32 scalar. */
static int gen_add_i64(gen_model *g, const char *name, const int64_t *v, size_t n, int rank1) {
    gen_tensor *t = &g->weights[g->n_weights];
    t->data = malloc((n ? n : 1) * sizeof(int64_t));
    if (!t->data) return 0;
    memcpy(t->data, v, n * sizeof(int64_t));
    onnx__tensor_proto__init(&t->proto);
    t->dims[0] = (int64_t)n;
    t->proto.n_dims = rank1 ? 1 : 0;
    t->proto.dims = t->dims;
    t->proto.has_data_type = 1;
    t->proto.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->proto.name = (char *)name;
    t->proto.has_raw_data = 1; /* little-endian, as on this host */
    t->proto.raw_data.len = n * sizeof(int64_t);
    t->proto.raw_data.data = t->data;
    g->weight_ptrs[g->n_weights++] = &t->proto;
    return 1;
}

static int gen_add_f32_scalar(gen_model *g, const char *name, float v) {
    gen_tensor *t = &g->weights[g->n_weights];
    t->data = malloc(sizeof(float));
    if (!t->data) return 0;
    memcpy(t->data, &v, sizeof v);
    onnx__tensor_proto__init(&t->proto);
    t->proto.n_dims = 0;
    t->proto.dims = t->dims;
    t->proto.has_data_type = 1;
    t->proto.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->proto.name = (char *)name;
    t->proto.has_raw_data = 1;
    t->proto.raw_data.len = sizeof(float);
    t->proto.raw_data.data = t->data;
    g->weight_ptrs[g->n_weights++] = &t->proto;
    return 1;
}

static gen_node *gen_add_node(gen_model *g, const char *op, const char *name, const char *in0,
                              const char *in1, const char *in2, const char *out) {
    gen_node *n = &g->nodes[g->n_nodes];
    onnx__node_proto__init(&n->proto);
    n->inputs[0] = (char *)in0;
    n->inputs[1] = (char *)in1;
    n->inputs[2] = (char *)in2;
    n->outputs[0] = (char *)out;
    n->proto.n_input = in2 ? 3 : in1 ? 2 : 1;
    n->proto.input = n->inputs;
    n->proto.n_output = 1;
    n->proto.output = n->outputs;
    n->proto.name = (char *)name;
    n->proto.op_type = (char *)op;
    g->node_ptrs[g->n_nodes++] = &n->proto;
    return n;
}

static void gen_add_int_attr(gen_node *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = &n->attrs[n->proto.n_attribute];
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    n->attr_ptrs[n->proto.n_attribute++] = a;
    n->proto.attribute = n->attr_ptrs;
}

static void gen_add_float_attr(gen_node *n, const char *name, float v) {
    Onnx__AttributeProto *a = &n->attrs[n->proto.n_attribute];
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
    n->attr_ptrs[n->proto.n_attribute++] = a;
    n->proto.attribute = n->attr_ptrs;
}

/* A Transpose perm (4 axes). */
static void gen_add_perm_attr(gen_node *n, int64_t p0, int64_t p1, int64_t p2, int64_t p3) {
    Onnx__AttributeProto *a = &n->attrs[n->proto.n_attribute];
    onnx__attribute_proto__init(a);
    n->ints[0] = p0, n->ints[1] = p1, n->ints[2] = p2, n->ints[3] = p3;
    a->name = "perm";
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = 4;
    a->ints = n->ints;
    n->attr_ptrs[n->proto.n_attribute++] = a;
    n->proto.attribute = n->attr_ptrs;
}

/* A float32 value [batch, seq, D] with symbolic batch and seq. */
static Onnx__ValueInfoProto *gen_value_info(gen_value *v, const char *name, int64_t d) {
    onnx__value_info_proto__init(&v->proto);
    onnx__type_proto__init(&v->type);
    onnx__type_proto__tensor__init(&v->tensor_type);
    onnx__tensor_shape_proto__init(&v->shape);
    static char *params[2] = {"batch", "seq"};
    for (int i = 0; i < 3; i++) {
        onnx__tensor_shape_proto__dimension__init(&v->dims[i]);
        if (i < 2) {
            v->dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            v->dims[i].dim_param = params[i];
        } else {
            v->dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            v->dims[i].dim_value = d;
        }
        v->dim_ptrs[i] = &v->dims[i];
    }
    v->shape.n_dim = 3;
    v->shape.dim = v->dim_ptrs;
    v->tensor_type.has_elem_type = 1;
    v->tensor_type.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    v->tensor_type.shape = &v->shape;
    v->type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type.tensor_type = &v->tensor_type;
    v->proto.name = (char *)name;
    v->proto.type = &v->type;
    return &v->proto;
}

enum { GEN_FORM_ATTENTION23, GEN_FORM_MS_MHA, GEN_FORM_DECOMPOSED };

typedef struct gen_params {
    long long d, heads, kv_heads, batch, seq;
    unsigned long long seed;
    int causal, bias, form;
    const char *out, *data;
} gen_params;

/* The decomposed middle step: q_3d, k_3d, v_3d [B, S, H*dh] -> attn_out
 * [B, S, H*dh] in plain opset-17 ops (as PyTorch-style exporters write it).
 * 0 when out of memory. */
static int gen_add_decomposed(gen_model *g, const gen_params *p, int64_t dh) {
    const int64_t bshd[4] = {0, 0, p->heads, dh}, bsd[3] = {0, 0, p->heads * dh};
    if (!gen_add_i64(g, "shape_bshd", bshd, 4, 1) || !gen_add_i64(g, "shape_bsd", bsd, 3, 1) ||
        !gen_add_f32_scalar(g, "attn_scale", (float)(1.0 / sqrt((double)dh))))
        return 0;
    gen_add_node(g, "Reshape", "q_reshape", "q_3d", "shape_bshd", NULL, "q_4d");
    gen_add_node(g, "Reshape", "k_reshape", "k_3d", "shape_bshd", NULL, "k_4d");
    gen_add_node(g, "Reshape", "v_reshape", "v_3d", "shape_bshd", NULL, "v_4d");
    /* q, v -> [B, H, S, dh]; k -> [B, H, dh, S] */
    gen_add_perm_attr(gen_add_node(g, "Transpose", "q_transpose", "q_4d", NULL, NULL, "q_t"), 0, 2,
                      1, 3);
    gen_add_perm_attr(gen_add_node(g, "Transpose", "k_transpose", "k_4d", NULL, NULL, "k_t"), 0, 2,
                      3, 1);
    gen_add_perm_attr(gen_add_node(g, "Transpose", "v_transpose", "v_4d", NULL, NULL, "v_t"), 0, 2,
                      1, 3);
    gen_add_node(g, "MatMul", "qk_matmul", "q_t", "k_t", NULL, "qk");
    gen_add_node(g, "Mul", "qk_scale", "qk", "attn_scale", NULL, "qk_s");
    const char *scores = "qk_s";
    if (p->causal) {
        /* mask[i, j] = -inf where j > i, from the runtime sequence length */
        const int64_t one_v[1] = {1}, zero_v[1] = {0};
        if (!gen_add_i64(g, "seq_axis", one_v, 1, 1) || !gen_add_i64(g, "zero_i", zero_v, 1, 0) ||
            !gen_add_i64(g, "one_i", one_v, 1, 0) || !gen_add_i64(g, "axis0", zero_v, 1, 1) ||
            !gen_add_i64(g, "axis1", one_v, 1, 1) || !gen_add_f32_scalar(g, "neg_inf", -INFINITY) ||
            !gen_add_f32_scalar(g, "zero_f", 0.0f))
            return 0;
        gen_add_node(g, "Shape", "mask_shape", "query", NULL, NULL, "x_shape");
        gen_add_int_attr(
            gen_add_node(g, "Gather", "mask_gather", "x_shape", "seq_axis", NULL, "seq_1d"), "axis",
            0);
        gen_add_node(g, "Squeeze", "mask_squeeze", "seq_1d", "axis0", NULL, "seq_len");
        gen_add_node(g, "Range", "mask_range", "zero_i", "seq_len", "one_i", "pos");
        gen_add_node(g, "Unsqueeze", "mask_rows", "pos", "axis1", NULL, "pos_rows");
        gen_add_node(g, "Unsqueeze", "mask_cols", "pos", "axis0", NULL, "pos_cols");
        gen_add_node(g, "Greater", "mask_greater", "pos_cols", "pos_rows", NULL, "future");
        gen_add_node(g, "Where", "mask_where", "future", "neg_inf", "zero_f", "causal_mask");
        gen_add_node(g, "Add", "qk_mask", "qk_s", "causal_mask", NULL, "qk_m");
        scores = "qk_m";
    }
    gen_add_int_attr(gen_add_node(g, "Softmax", "softmax", scores, NULL, NULL, "probs"), "axis",
                     -1);
    gen_add_node(g, "MatMul", "pv_matmul", "probs", "v_t", NULL, "ctx");
    gen_add_perm_attr(gen_add_node(g, "Transpose", "ctx_transpose", "ctx", NULL, NULL, "ctx_t"), 0,
                      2, 1, 3);
    gen_add_node(g, "Reshape", "ctx_reshape", "ctx_t", "shape_bsd", NULL, "attn_out");
    return 1;
}

static int gen_write_model(const gen_params *p) {
    gen_model *g = calloc(1, sizeof *g);
    if (!g) return cli_fail("out of memory");
    int64_t D = p->d, dh = p->d / p->heads, dq = p->heads * dh, dkv = p->kv_heads * dh;
    float scale = (float)(1.0 / sqrt((double)D));
    uint64_t seed = p->seed;
    int rc = CLI_OK;
    struct {
        const char *w, *b;
        int64_t rows, cols;
    } proj[4] = {{"q_proj.weight", "q_proj.bias", D, dq},
                 {"k_proj.weight", "k_proj.bias", D, dkv},
                 {"v_proj.weight", "v_proj.bias", D, dkv},
                 {"out_proj.weight", "out_proj.bias", dq, D}};
    for (int k = 0; k < 4 && rc == CLI_OK; k++) {
        if (!gen_add_weight(g, proj[k].w, proj[k].rows, proj[k].cols, scale, &seed))
            rc = cli_fail("out of memory for the weights");
        else if (p->bias && !gen_add_weight(g, proj[k].b, proj[k].cols, 0, scale, &seed))
            rc = cli_fail("out of memory for the weights");
    }
    if (rc == CLI_OK) {
        /* the projections, the attention, the output projection */
        static const char *names[3][5] = {
            {"q_proj_matmul", "q_proj_add", "q_mm", "q_3d", "q"},
            {"k_proj_matmul", "k_proj_add", "k_mm", "k_3d", "k"},
            {"v_proj_matmul", "v_proj_add", "v_mm", "v_3d", "v"},
        };
        for (int k = 0; k < 3; k++) {
            const char *mm_out = p->bias ? names[k][2] : names[k][3];
            gen_add_node(g, "MatMul", names[k][0], "query", proj[k].w, NULL, mm_out);
            if (p->bias)
                gen_add_node(g, "Add", names[k][1], names[k][2], proj[k].b, NULL, names[k][3]);
        }
        if (p->form == GEN_FORM_ATTENTION23) {
            gen_node *att =
                gen_add_node(g, "Attention", "attention", "q_3d", "k_3d", "v_3d", "attn_out");
            if (p->causal) gen_add_int_attr(att, "is_causal", 1);
            gen_add_int_attr(att, "kv_num_heads", p->kv_heads);
            gen_add_int_attr(att, "q_num_heads", p->heads);
        } else if (p->form == GEN_FORM_MS_MHA) {
            gen_node *att =
                gen_add_node(g, "MultiHeadAttention", "mha", "q_3d", "k_3d", "v_3d", "attn_out");
            att->proto.domain = "com.microsoft";
            gen_add_int_attr(att, "num_heads", p->heads);
            gen_add_float_attr(att, "scale", (float)(1.0 / sqrt((double)dh)));
            if (p->causal) gen_add_int_attr(att, "unidirectional", 1);
        } else if (!gen_add_decomposed(g, p, dh)) {
            rc = cli_fail("out of memory for the weights");
        }
    }
    if (rc == CLI_OK) {
        gen_add_node(g, "MatMul", "out_proj_matmul", "attn_out", proj[3].w, NULL,
                     p->bias ? "o_mm" : "output");
        if (p->bias) gen_add_node(g, "Add", "out_proj_add", "o_mm", proj[3].b, NULL, "output");

        char graph_name[128];
        static const char *form_names[3] = {"attention23", "ms_mha", "decomposed"};
        snprintf(graph_name, sizeof graph_name, "mha_gen_%s_d%lld_h%lld_kv%lld%s_seed%llu",
                 form_names[p->form], p->d, p->heads, p->kv_heads, p->causal ? "_causal" : "",
                 p->seed);
        onnx__graph_proto__init(&g->graph);
        g->graph.name = graph_name;
        g->graph.n_node = g->n_nodes;
        g->graph.node = g->node_ptrs;
        g->graph.n_initializer = g->n_weights;
        g->graph.initializer = g->weight_ptrs;
        g->input_ptr = gen_value_info(&g->input, "query", D);
        g->output_ptr = gen_value_info(&g->output, "output", D);
        g->graph.n_input = 1;
        g->graph.input = &g->input_ptr;
        g->graph.n_output = 1;
        g->graph.output = &g->output_ptr;
        const int opset17 = p->form != GEN_FORM_ATTENTION23;
        for (int i = 0; i < 2; i++) {
            onnx__operator_set_id_proto__init(&g->opset[i]);
            g->opset[i].has_version = 1;
            g->opset_ptr[i] = &g->opset[i];
        }
        g->opset[0].domain = "";
        g->opset[0].version = opset17 ? 17 : 23;
        g->opset[1].domain = "com.microsoft";
        g->opset[1].version = 1;
        onnx__model_proto__init(&g->model);
        g->model.has_ir_version = 1;
        g->model.ir_version = opset17 ? 8 : 11;
        g->model.n_opset_import = p->form == GEN_FORM_MS_MHA ? 2 : 1;
        g->model.opset_import = g->opset_ptr;
        g->model.producer_name = "mha gen";
        g->model.producer_version = MHA_VERSION_STRING;
        g->model.graph = &g->graph;

        size_t size = onnx__model_proto__get_packed_size(&g->model);
        uint8_t *buf = malloc(size ? size : 1);
        if (!buf) {
            rc = cli_fail("%s: out of memory for %zu bytes", p->out, size);
        } else {
            onnx__model_proto__pack(&g->model, buf);
            mha_error err;
            mha_error_clear(&err);
            if (mha_output_save(p->out, buf, size, &err) != MHA_OK) rc = cli_fail_err(p->out, &err);
            free(buf);
        }
    }
    for (size_t k = 0; k < g->n_weights; k++)
        free(g->weights[k].data);
    free(g);
    return rc;
}

/* The dataset, row by row: [B, S, D] float32 in U(-1, 1). */
static int gen_write_data(const gen_params *p) {
    int64_t dims[3] = {p->batch, p->seq, p->d};
    size_t row = (size_t)p->seq * (size_t)p->d;
    float *x = malloc(row * sizeof *x);
    if (!x) return cli_fail("%s: out of memory for a row of %zu floats", p->data, row);
    mha_error err;
    mha_error_clear(&err);
    mha_npy_writer *w;
    uint64_t seed = p->seed ^ 0x5eed0da7a5eed0daull; /* not the weights' stream */
    int rc = CLI_OK;
    if (mha_npy_writer_begin(p->data, MHA_DTYPE_FLOAT32, 3, dims, NULL, &w, &err) != MHA_OK) {
        free(x);
        return cli_fail_err(p->data, &err);
    }
    for (long long b = 0; b < p->batch; b++) {
        gen_fill(x, row, 1.0f, &seed);
        if (mha_npy_writer_write_rows(w, x, 1, &err) != MHA_OK) {
            mha_npy_writer_abort(w);
            free(x);
            return cli_fail_err(p->data, &err);
        }
    }
    if (mha_npy_writer_commit(w, &err) != MHA_OK) rc = cli_fail_err(p->data, &err);
    free(x);
    return rc;
}

int cli_cmd_gen(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "gen";
    gen_params p = {0};
    p.bias = 1;
    p.kv_heads = -1;
    int have_batch = 0, have_seq = 0;
    cli_parser cp;
    if (cli_parse_begin(&cp, &gen_spec, &c, argc, argv) != 0) return cli_fail("too many options");
    for (int id; (id = cli_parse_next(&cp)) != CLI_PARSE_END;) {
        const char *v = cp.value;
        long long *num = NULL, hi = 8192, seed;
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", cp.name ? cp.name : "");
        switch (id) {
        case CLI_PARSE_EXIT:
            return cp.status;
        case CLI_PARSE_ARG:
            return cli_usage_error(&c, "unexpected argument '%s'", v);
        case GEN_D_MODEL:
            num = &p.d;
            break;
        case GEN_HEADS:
            num = &p.heads;
            break;
        case GEN_KV_HEADS:
            num = &p.kv_heads;
            break;
        case GEN_BATCH:
            num = &p.batch, hi = 1ll << 31, have_batch = 1;
            break;
        case GEN_SEQ:
            num = &p.seq, hi = 1ll << 31, have_seq = 1;
            break;
        case GEN_SEED:
            if (!cli_parse_int(&c, opt, v, 0, INT64_MAX, &seed)) return CLI_USAGE;
            p.seed = (unsigned long long)seed;
            break;
        case GEN_OUTPUT:
            p.out = v;
            break;
        case GEN_DATA:
            p.data = v;
            break;
        case GEN_FORM:
            if (strcmp(v, "attention23") == 0)
                p.form = GEN_FORM_ATTENTION23;
            else if (strcmp(v, "ms_mha") == 0)
                p.form = GEN_FORM_MS_MHA;
            else if (strcmp(v, "decomposed") == 0)
                p.form = GEN_FORM_DECOMPOSED;
            else
                return cli_usage_error(
                    &c, "--form wants attention23, ms_mha or decomposed, not '%s'", v);
            break;
        case GEN_CAUSAL:
            p.causal = 1;
            break;
        case GEN_NO_BIAS:
            p.bias = 0;
            break;
        }
        if (num && !cli_parse_int(&c, opt, v, 1, hi, num)) return CLI_USAGE;
    }
    if (!p.d || !p.heads) return cli_usage_error(&c, "-d D and -H H are required");
    if (!p.out) return cli_usage_error(&c, "-o MODEL.onnx is required");
    if (p.kv_heads < 0) p.kv_heads = p.heads;
    if (p.d % p.heads)
        return cli_usage_error(&c, "d_model %lld is not a multiple of %lld heads", p.d, p.heads);
    if (p.kv_heads > p.heads || p.heads % p.kv_heads)
        return cli_usage_error(&c, "%lld kv heads do not divide %lld heads", p.kv_heads, p.heads);
    if (p.form != GEN_FORM_ATTENTION23 && p.kv_heads != p.heads)
        return cli_usage_error(&c, "--form %s writes as many kv heads as heads",
                               p.form == GEN_FORM_MS_MHA ? "ms_mha" : "decomposed");
    if (p.data && (!have_batch || !have_seq))
        return cli_usage_error(&c, "--data needs --batch and --seq");
    if (!p.data && (have_batch || have_seq))
        return cli_usage_error(&c, "--batch and --seq only go with --data");
    if (p.data && mha_file_output_format(p.data) != MHA_FILE_NPY)
        return cli_usage_error(&c, "--data writes .npy files ('%s')", p.data);
    if (p.data) {
        size_t bytes;
        if (__builtin_mul_overflow((size_t)p.batch * (size_t)p.seq, (size_t)p.d * 4, &bytes) ||
            bytes > ((size_t)1 << 40))
            return cli_usage_error(&c, "a %lldx%lldx%lld dataset is too large", p.batch, p.seq,
                                   p.d);
    }
    /* both files checked, distinct and locked before either is written */
    const char *outs[2] = {p.out, p.data};
    cli_outputs claimed;
    int rc = cli_outputs_claim(&c, outs, 2, 1, &claimed);
    if (rc != CLI_OK) return rc;
    rc = gen_write_model(&p);
    if (rc == CLI_OK && p.data) rc = gen_write_data(&p);
    cli_outputs_release(&claimed);
    return rc;
}
