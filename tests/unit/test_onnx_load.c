/* test_onnx_load.c -- the ONNX importer (onnx_load*.c): every real model and
 * test-data tensor of tests/data loads with the right facts, and every kind
 * of bad input is refused with the right status and a message that names
 * the problem. Bad models are built here from protobuf-c structs or by byte
 * surgery on real ones. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "onnx_load_internal.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* ---- helpers: an arena for the protobuf-c structs a test builds ---- */

static void *arena[1 << 14];
static size_t n_arena;

static void *ta(size_t n) {
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    assert_true(n_arena < sizeof arena / sizeof arena[0]);
    arena[n_arena++] = p;
    return p;
}

static char *ts(const char *s) {
    char *d = ta(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

static int arena_teardown(void **state) {
    (void)state;
    for (size_t i = 0; i < n_arena; i++)
        free(arena[i]);
    n_arena = 0;
    mha_alloc_fail_at(0, 0);
    return 0;
}

/* Splits "a,b,,c" into 4 strings ("" for an omitted name). */
static char **split_names(const char *csv, size_t *n) {
    *n = 0;
    if (!csv) return NULL;
    size_t cnt = 1;
    for (const char *p = csv; *p; p++)
        cnt += *p == ',';
    char **v = ta(cnt * sizeof *v);
    const char *p = csv;
    for (size_t i = 0; i < cnt; i++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        v[i] = ta(len + 1);
        memcpy(v[i], p, len);
        p = e ? e + 1 : p + len;
    }
    *n = cnt;
    return v;
}

#define GB_CAP 32

typedef struct gb {
    Onnx__ModelProto *m;
    Onnx__GraphProto *g;
} gb;

static gb gb_new(int64_t opset) {
    gb b;
    b.m = ta(sizeof *b.m);
    onnx__model_proto__init(b.m);
    b.m->has_ir_version = 1;
    b.m->ir_version = 8;
    if (opset > 0) {
        Onnx__OperatorSetIdProto *op = ta(sizeof *op);
        onnx__operator_set_id_proto__init(op);
        op->domain = ts("");
        op->has_version = 1;
        op->version = opset;
        b.m->opset_import = ta(sizeof *b.m->opset_import);
        b.m->opset_import[0] = op;
        b.m->n_opset_import = 1;
    }
    b.g = ta(sizeof *b.g);
    onnx__graph_proto__init(b.g);
    b.g->name = ts("test");
    b.g->node = ta(GB_CAP * sizeof *b.g->node);
    b.g->initializer = ta(GB_CAP * sizeof *b.g->initializer);
    b.g->sparse_initializer = ta(GB_CAP * sizeof *b.g->sparse_initializer);
    b.g->input = ta(GB_CAP * sizeof *b.g->input);
    b.g->output = ta(GB_CAP * sizeof *b.g->output);
    b.g->value_info = ta(GB_CAP * sizeof *b.g->value_info);
    b.m->graph = b.g;
    return b;
}

static Onnx__NodeProto *gb_node(gb *b, const char *op, const char *name, const char *ins,
                                const char *outs) {
    Onnx__NodeProto *n = ta(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = ts(op);
    if (name) n->name = ts(name);
    n->input = split_names(ins, &n->n_input);
    n->output = split_names(outs, &n->n_output);
    n->attribute = ta(8 * sizeof *n->attribute);
    b->g->node[b->g->n_node++] = n;
    return n;
}

static Onnx__AttributeProto *node_attr(Onnx__NodeProto *n, const char *name, int type) {
    Onnx__AttributeProto *a = ta(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = ts(name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

/* dims[i] < 0 becomes the dim_param "N<i>" */
static Onnx__ValueInfoProto *mk_value_info(const char *name, int elem, int rank,
                                           const int64_t *dims) {
    Onnx__ValueInfoProto *vi = ta(sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = ts(name);
    if (elem <= 0) return vi;
    Onnx__TypeProto *tp = ta(sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = ta(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    if (rank >= 0) {
        Onnx__TensorShapeProto *sh = ta(sizeof *sh);
        onnx__tensor_shape_proto__init(sh);
        sh->dim = ta((size_t)(rank + 1) * sizeof *sh->dim);
        for (int i = 0; i < rank; i++) {
            Onnx__TensorShapeProto__Dimension *d = ta(sizeof *d);
            onnx__tensor_shape_proto__dimension__init(d);
            if (dims[i] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = dims[i];
            } else {
                char p[16];
                snprintf(p, sizeof p, "N%d", i);
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = ts(p);
            }
            sh->dim[i] = d;
        }
        sh->n_dim = (size_t)rank;
        tt->shape = sh;
    }
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->type = tp;
    return vi;
}

static void gb_input(gb *b, const char *name, int elem, int rank, const int64_t *dims) {
    b->g->input[b->g->n_input++] = mk_value_info(name, elem, rank, dims);
}

static void gb_output(gb *b, const char *name) {
    b->g->output[b->g->n_output++] = mk_value_info(name, 0, -1, NULL);
}

static Onnx__TensorProto *mk_tensor(const char *name, int dtype, int rank, const int64_t *dims,
                                    const void *raw, size_t rawlen) {
    Onnx__TensorProto *t = ta(sizeof *t);
    onnx__tensor_proto__init(t);
    if (name) t->name = ts(name);
    t->has_data_type = 1;
    t->data_type = dtype;
    t->dims = ta((size_t)(rank + 1) * sizeof *t->dims);
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->n_dims = (size_t)rank;
    if (raw) {
        t->has_raw_data = 1;
        t->raw_data.len = rawlen;
        t->raw_data.data = ta(rawlen);
        memcpy(t->raw_data.data, raw, rawlen);
    }
    return t;
}

static void tensor_external(Onnx__TensorProto *t, const char *loc, const char *off,
                            const char *len) {
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->external_data = ta(4 * sizeof *t->external_data); /* room for one key more */
    const char *keys[3] = {"location", "offset", "length"};
    const char *vals[3] = {loc, off, len};
    for (int i = 0; i < 3; i++) {
        if (!vals[i]) continue;
        Onnx__StringStringEntryProto *kv = ta(sizeof *kv);
        onnx__string_string_entry_proto__init(kv);
        kv->key = ts(keys[i]);
        kv->value = ts(vals[i]);
        t->external_data[t->n_external_data++] = kv;
    }
}

static void gb_init(gb *b, Onnx__TensorProto *t) {
    b->g->initializer[b->g->n_initializer++] = t;
}

static void *pack_msg(const ProtobufCMessage *m, size_t *size) {
    *size = protobuf_c_message_get_packed_size(m);
    void *buf = ta(*size);
    assert_int_equal(protobuf_c_message_pack(m, buf), *size);
    return buf;
}

static void *gb_pack(gb *b, size_t *size) {
    return pack_msg(&b->m->base, size);
}

/* Loads b from memory; returns the status, *g set on success. */
static mha_status gb_load(gb *b, const char *base_dir, ir_graph **g, mha_error *err) {
    size_t size;
    void *buf = gb_pack(b, &size);
    mha_error_clear(err);
    return ir_load_memory(NULL, buf, size, base_dir, NULL, g, err);
}

/* Asserts that loading b fails with status st and a message holding frag. */
static void expect_fail(gb *b, const char *base_dir, mha_status st, const char *frag) {
    ir_graph *g = NULL;
    mha_error err;
    mha_status got = gb_load(b, base_dir, &g, &err);
    if (got != st || !strstr(err.message, frag))
        print_error("expected %s with '%s', got %s: %s\n", mha_status_name(st), frag,
                    mha_status_name(got), err.message);
    assert_int_equal(got, st);
    assert_int_equal(err.status, st);
    assert_non_null(strstr(err.message, frag));
    assert_null(g);
}

static const int64_t dims23[2] = {2, 3};
static const float vals6[6] = {1, 2, 3, 4, 5, 6};

/* A minimal valid model: y = Relu(x) + W, W an initializer of [2,3]. */
static gb base_model(void) {
    gb b = gb_new(17);
    gb_input(&b, "x", 1, 2, dims23);
    gb_init(&b, mk_tensor("W", 1, 2, dims23, vals6, sizeof vals6));
    gb_node(&b, "Relu", "relu", "x", "r");
    gb_node(&b, "Add", "add", "r,W", "y");
    gb_output(&b, "y");
    return b;
}

/* ---- the real models ---- */

typedef struct model_fact {
    const char *dir;
    size_t n_nodes;
    size_t n_inits;
    int64_t opset;
    size_t n_inputs;
    const char *init_name; /* and its shape */
    int init_rank;
    int64_t init_dims[2];
} model_fact;

static const model_fact facts[] = {
    {"conformance/mha_self_d16_h1_b1_s1", 9, 8, 23, 1, "q_proj.weight", 2, {16, 16}},
    {"conformance/mha_cross_d48_h3_b2_q5_kv12", 9, 8, 23, 2, "out_proj.bias", 1, {48, 0}},
    {"conformance/onnx_attention_3d", 1, 0, 23, 3, NULL, 0, {0, 0}},
    {"conformance/onnx_attention_24_qk_matmul_output_mode3_softmax_precision",
     1,
     0,
     24,
     4,
     NULL,
     0,
     {0, 0}},
    {"torch-export/torch_mha_self_d32_h4_b2_s6_op17", 94, 4, 17, 1, "mha.in_proj_bias", 1, {96, 0}},
    {"torch-export/torch_mha_self_d24_h2_b1_s11_causal_op14",
     112,
     4,
     14,
     1,
     "mha.out_proj.weight",
     2,
     {24, 24}},
    {"torch-export/torch_mha_cross_d16_h2_b1_q3_kv8",
     127,
     4,
     17,
     2,
     "mha.in_proj_weight",
     2,
     {48, 16}},
};

static const char *data_path(const char *rel) {
    static char buf[4][1024];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 1024, "%s/%s", MHA_TEST_DATA, rel);
    return p;
}

static int value_id(const ir_graph *g, const char *name) {
    for (size_t i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0) return (int)i;
    return -1;
}

/* Structural invariants every loaded graph satisfies. */
static void check_graph_invariants(const ir_graph *g) {
    for (size_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        assert_non_null(n->op_type);
        assert_non_null(n->name);
        assert_non_null(n->domain);
        for (size_t k = 0; k < n->n_inputs; k++) {
            int v = n->inputs[k];
            assert_true(v >= -1 && v < (int)g->n_values);
            /* topological: an input's producer comes earlier */
            if (v >= 0 && g->values[v].producer >= (int)i)
                print_error("node %zu input %zu '%s' produced by node %d\n", i, k,
                            g->values[v].name, g->values[v].producer);
            if (v >= 0) assert_true(g->values[v].producer < (int)i);
        }
        int any_output = 0;
        for (size_t k = 0; k < n->n_outputs; k++) {
            int v = n->outputs[k];
            assert_true(v >= -1 && v < (int)g->n_values);
            if (v >= 0) assert_int_equal(g->values[v].producer, (int)i);
            any_output |= v >= 0;
        }
        assert_true(any_output || n->n_outputs == 0);
    }
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        assert_int_equal(v->graph_input, (int)i);
        assert_null(v->init);
        assert_int_equal(v->producer, -1);
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        const ir_value *v = &g->values[g->outputs[i]];
        assert_true(v->producer >= 0 || v->init || v->graph_input >= 0);
    }
    /* every value has exactly one source */
    for (size_t i = 0; i < g->n_values; i++) {
        const ir_value *v = &g->values[i];
        assert_int_equal((v->producer >= 0) + (v->init != NULL) + (v->graph_input >= 0), 1);
    }
}

/* ---- model-local functions (onnx_load_functions.c) ---- */

static Onnx__FunctionProto *fn_new(gb *b, const char *name, const char *ins, const char *outs,
                                   int64_t opset) {
    Onnx__FunctionProto *f = ta(sizeof *f);
    onnx__function_proto__init(f);
    f->name = ts(name);
    f->domain = ts("fn");
    f->input = split_names(ins, &f->n_input);
    f->output = split_names(outs, &f->n_output);
    f->node = ta(8 * sizeof *f->node);
    f->opset_import = ta(2 * sizeof *f->opset_import);
    Onnx__OperatorSetIdProto *op = ta(sizeof *op);
    onnx__operator_set_id_proto__init(op);
    op->domain = ts("");
    op->has_version = 1;
    op->version = opset;
    f->opset_import[f->n_opset_import++] = op;
    if (!b->m->functions) b->m->functions = ta(8 * sizeof *b->m->functions);
    b->m->functions[b->m->n_functions++] = f;
    return f;
}

static Onnx__NodeProto *fn_node(Onnx__FunctionProto *f, const char *op, const char *domain,
                                const char *ins, const char *outs) {
    Onnx__NodeProto *n = ta(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = ts(op);
    n->domain = ts(domain);
    n->name = ts(op);
    n->input = split_names(ins, &n->n_input);
    n->output = split_names(outs, &n->n_output);
    n->attribute = ta(4 * sizeof *n->attribute);
    f->node[f->n_node++] = n;
    return n;
}

/* An attribute of a function body's node that refers to the function's. */
static void fn_attr_ref(Onnx__NodeProto *n, const char *name, const char *ref, int type) {
    Onnx__AttributeProto *a = node_attr(n, name, type);
    a->ref_attr_name = ts(ref);
}

/* f declares an attribute `names` (what a reference may name). */
static void fn_declare(Onnx__FunctionProto *f, const char *names) {
    f->attribute = split_names(names, &f->n_attribute);
}

/* y = Outer(x; a = 0.5): Outer(x) = Relu(Inner(x; a = a)), Inner(x) =
 * LeakyRelu(x; alpha = a): two nested calls inline to LeakyRelu (alpha 0.5)
 * then Relu, the inner value renamed per call, the graph's names kept */
static gb fn_model(void) {
    gb b = gb_new(17);
    gb_input(&b, "x", 1, 2, dims23);
    Onnx__NodeProto *call = gb_node(&b, "Outer", "call", "x", "y");
    call->domain = ts("fn");
    Onnx__AttributeProto *a = node_attr(call, "a", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = 0.5f;
    gb_output(&b, "y");
    Onnx__FunctionProto *outer = fn_new(&b, "Outer", "x", "y", 17);
    fn_declare(outer, "a");
    fn_attr_ref(fn_node(outer, "Inner", "fn", "x", "t"), "a", "a",
                ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    fn_node(outer, "Relu", "", "t", "y");
    Onnx__FunctionProto *inner = fn_new(&b, "Inner", "x", "y", 17);
    fn_declare(inner, "a");
    fn_attr_ref(fn_node(inner, "LeakyRelu", "", "x", "y"), "alpha", "a",
                ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    return b;
}

static void test_model_local_functions(void **state) {
    (void)state;
    gb b = fn_model();
    ir_graph *g = NULL;
    mha_error err;
    mha_status st = gb_load(&b, NULL, &g, &err);
    if (st != MHA_OK) print_error("%s\n", err.message);
    assert_int_equal(st, MHA_OK);
    assert_int_equal(g->n_nodes, 2);
    assert_string_equal(g->nodes[0].op_type, "LeakyRelu");
    assert_string_equal(g->nodes[1].op_type, "Relu");
    assert_true(ir_attr_float(&g->nodes[0], "alpha", 0.01f) == 0.5f);
    assert_int_equal(g->nodes[0].inputs[0], value_id(g, "x"));
    assert_int_equal(g->nodes[1].outputs[0], value_id(g, "y"));
    assert_int_equal(g->nodes[0].outputs[0], g->nodes[1].inputs[0]);
    assert_string_not_equal(g->values[g->nodes[0].outputs[0]].name, "t");
    check_graph_invariants(g);
    ir_free(g);
    /* without the call's attribute the reference is left out: the op's default */
    b = fn_model();
    b.g->node[0]->n_attribute = 0;
    assert_int_equal(gb_load(&b, NULL, &g, &err), MHA_OK);
    assert_false(ir_node_attr(&g->nodes[0], "alpha"));
    ir_free(g);
    /* a function calling itself */
    b = fn_model();
    fn_node(b.m->functions[1], "Outer", "fn", "y", "z");
    expect_fail(&b, NULL, MHA_ERR_MODEL_UNSUPPORTED, "function 'fn.Outer' calls itself");
    /* a call of a function the model does not define, in the functions' domain */
    b = fn_model();
    b.g->node[0]->op_type = ts("Missing");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "calls function 'fn.Missing', which the model");
    /* a function body at another opset than the model's */
    b = fn_model();
    b.m->functions[1]->opset_import[0]->version = 13;
    expect_fail(&b, NULL, MHA_ERR_MODEL_UNSUPPORTED, "imports opset 13 of the default domain");
}

static void test_real_model_facts(void **state) {
    (void)state;
    for (size_t f = 0; f < sizeof facts / sizeof facts[0]; f++) {
        const model_fact *mf = &facts[f];
        char rel[512];
        snprintf(rel, sizeof rel, "%s/model.onnx", mf->dir);
        ir_graph *g = NULL;
        mha_error err;
        mha_error_clear(&err);
        mha_status st = ir_load_file(NULL, data_path(rel), NULL, &g, &err);
        if (st != MHA_OK) print_error("%s: %s\n", rel, err.message);
        assert_int_equal(st, MHA_OK);
        check_graph_invariants(g);
        assert_int_equal(g->n_nodes, mf->n_nodes);
        assert_int_equal(g->opset, mf->opset);
        assert_int_equal(g->ms_opset, 0);
        assert_int_equal(g->n_inputs, mf->n_inputs);
        assert_int_equal(g->n_outputs >= 1, 1);
        size_t n_inits = 0;
        for (size_t i = 0; i < g->n_values; i++)
            n_inits += g->values[i].init != NULL;
        assert_int_equal(n_inits, mf->n_inits);
        if (mf->init_name) {
            int v = value_id(g, mf->init_name);
            assert_true(v >= 0);
            const tensor *t = g->values[v].init;
            assert_non_null(t);
            assert_int_equal(t->dtype, MHA_DTYPE_FLOAT32);
            assert_int_equal(t->rank, mf->init_rank);
            for (int d = 0; d < t->rank; d++)
                assert_int_equal(t->dims[d], mf->init_dims[d]);
            assert_int_equal(t->nbytes, (size_t)tensor_numel(t) * 4);
        }
        assert_string_equal(g->path, data_path(rel));
        ir_free(g);
    }
}

static void test_real_model_details(void **state) {
    (void)state;
    ir_graph *g = NULL;
    mha_error err;
    /* torch export: symbolic dims, Constant tensors, node order kept */
    assert_int_equal(ir_load_file(NULL,
                                  data_path("torch-export/torch_mha_self_d32_h4_b2_s6_op17/"
                                            "model.onnx"),
                                  NULL, &g, &err),
                     MHA_OK);
    const ir_value *x = &g->values[g->inputs[0]];
    assert_string_equal(x->name, "x");
    assert_int_equal(x->dtype, MHA_DTYPE_FLOAT32);
    assert_int_equal(x->rank, 3);
    assert_int_equal(x->dims[0], -1);
    assert_string_equal(x->dim_params[0], "batch");
    assert_string_equal(x->dim_params[1], "seq_x");
    assert_int_equal(x->dims[2], 32);
    assert_null(x->dim_params[2]);
    assert_string_equal(g->nodes[0].op_type, "Transpose");
    const ir_attr *perm = ir_node_attr(&g->nodes[0], "perm");
    assert_non_null(perm);
    assert_int_equal(perm->type, IR_ATTR_INTS);
    assert_int_equal(perm->n, 3);
    size_t n_const = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        assert_int_equal(n->index, (int)i); /* the file was already sorted */
        if (strcmp(n->op_type, "Constant") == 0) {
            const ir_attr *v = ir_node_attr(n, "value");
            assert_non_null(v);
            assert_int_equal(v->type, IR_ATTR_TENSOR);
            assert_non_null(v->t);
            n_const++;
        }
    }
    assert_int_equal(n_const, 30);
    ir_free(g);

    /* bare Attention node: attributes and static shapes */
    assert_int_equal(
        ir_load_file(NULL, data_path("conformance/onnx_attention_3d/model.onnx"), NULL, &g, &err),
        MHA_OK);
    assert_string_equal(g->nodes[0].op_type, "Attention");
    assert_string_equal(g->nodes[0].domain, "");
    assert_int_equal(ir_attr_int(&g->nodes[0], "q_num_heads", 0), 3);
    assert_int_equal(ir_attr_int(&g->nodes[0], "kv_num_heads", 0), 3);
    assert_int_equal(ir_attr_int(&g->nodes[0], "is_causal", 7), 7);
    assert_true(ir_attr_float(&g->nodes[0], "scale", 0.5f) == 0.5f);
    assert_int_equal(ir_node_input(&g->nodes[0], 0), g->inputs[0]);
    assert_int_equal(ir_node_input(&g->nodes[0], 99), -1);
    const ir_value *y = &g->values[g->outputs[0]];
    assert_string_equal(y->name, "Y");
    assert_int_equal(y->rank, 3);
    assert_int_equal(y->dims[0], 2);
    assert_int_equal(y->dims[1], 4);
    assert_int_equal(y->dims[2], 24);
    ir_free(g);
}

/* Every model.onnx under a folder of tests/data loads; returns the count. */
static int load_every_model(const char *sub) {
    const char *root = data_path(sub);
    DIR *d = opendir(root);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s/model.onnx", root, e->d_name);
        if (access(path, R_OK) != 0) continue;
        ir_graph *g = NULL;
        mha_error err;
        mha_error_clear(&err);
        mha_status st = ir_load_file(NULL, path, NULL, &g, &err);
        if (st != MHA_OK) print_error("%s: %s\n", path, err.message);
        assert_int_equal(st, MHA_OK);
        check_graph_invariants(g);
        assert_true(g->n_nodes >= 1);
        assert_true(g->opset >= 14 && g->opset <= 24);
        ir_free(g);
        count++;
    }
    closedir(d);
    return count;
}

static void test_every_model_loads(void **state) {
    (void)state;
    assert_true(load_every_model("conformance") >= 50);
    assert_true(load_every_model("torch-export") >= 5);
}

/* Every test_data_set_0 .pb file loads through the tensor loader, survives a
 * save and reload, and agrees with the model's declaration of that input or
 * output (input_<k>.pb is the k-th graph input, output_<k>.pb the k-th
 * output). */
static void check_pb(const ir_graph *g, const char *path, const char *file) {
    size_t size;
    void *buf = tu_read_file(path, &size);
    assert_non_null(buf);
    tensor *t = NULL;
    char *name = NULL;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = ir_load_tensor_proto(NULL, buf, size, path, &t, &name, &err);
    if (st != MHA_OK) print_error("%s: %s\n", path, err.message);
    assert_int_equal(st, MHA_OK);
    assert_int_equal(t->nbytes, (size_t)tensor_numel(t) * mha_dtype_size(t->dtype));

    size_t k;
    int is_output = sscanf(file, "output_%zu.pb", &k) == 1;
    assert_true(is_output || sscanf(file, "input_%zu.pb", &k) == 1);
    assert_true(k < (is_output ? g->n_outputs : g->n_inputs));
    const ir_value *v = &g->values[is_output ? g->outputs[k] : g->inputs[k]];
    assert_string_equal(name, v->name);
    assert_int_equal(t->dtype, v->dtype);
    assert_int_equal(t->rank, v->rank);
    for (int a = 0; a < t->rank; a++)
        if (v->dims[a] >= 0) assert_int_equal(t->dims[a], v->dims[a]);

    /* save and reload: the same tensor */
    void *saved = NULL;
    size_t saved_size = 0;
    assert_int_equal(ir_save_tensor_proto(NULL, t, name, &saved, &saved_size, &err), MHA_OK);
    tensor *t2 = NULL;
    char *name2 = NULL;
    assert_int_equal(ir_load_tensor_proto(NULL, saved, saved_size, "saved", &t2, &name2, &err),
                     MHA_OK);
    assert_string_equal(name2, name);
    assert_int_equal(t2->dtype, t->dtype);
    assert_int_equal(t2->rank, t->rank);
    for (int a = 0; a < t->rank; a++)
        assert_int_equal(t2->dims[a], t->dims[a]);
    assert_int_equal(t2->nbytes, t->nbytes);
    if (t->nbytes) assert_memory_equal(t2->data, t->data, t->nbytes);
    tensor_free(t2);
    mha_free(NULL, name2);
    mha_free(NULL, saved);
    tensor_free(t);
    mha_free(NULL, name);
    free(buf);
}

static int load_every_pb(const char *sub) {
    const char *root = data_path(sub);
    DIR *d = opendir(root);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char dir[1536], path[2048];
        snprintf(dir, sizeof dir, "%s/%s/test_data_set_0", root, e->d_name);
        snprintf(path, sizeof path, "%s/%s/model.onnx", root, e->d_name);
        DIR *td = opendir(dir);
        if (!td) continue;
        ir_graph *g = NULL;
        mha_error err;
        assert_int_equal(ir_load_file(NULL, path, NULL, &g, &err), MHA_OK);
        struct dirent *f;
        while ((f = readdir(td)) != NULL) {
            size_t len = strlen(f->d_name);
            if (len < 4 || strcmp(f->d_name + len - 3, ".pb") != 0) continue;
            snprintf(path, sizeof path, "%s/%s", dir, f->d_name);
            check_pb(g, path, f->d_name);
            count++;
        }
        closedir(td);
        ir_free(g);
    }
    closedir(d);
    return count;
}

static void test_every_test_data_tensor_loads(void **state) {
    (void)state;
    assert_true(load_every_pb("conformance") >= 150);
    assert_true(load_every_pb("torch-export") >= 10);
}

/* ---- malformed files ---- */

static void expect_file_fail(const char *path, const ir_load_options *opts, mha_status st,
                             const char *frag) {
    ir_graph *g = NULL;
    mha_error err;
    mha_error_clear(&err);
    mha_status got = ir_load_file(NULL, path, opts, &g, &err);
    if (got != st || !strstr(err.message, frag))
        print_error("expected %s with '%s', got %s: %s\n", mha_status_name(st), frag,
                    mha_status_name(got), err.message);
    assert_int_equal(got, st);
    assert_non_null(strstr(err.message, frag));
    assert_null(g);
}

static void test_file_errors(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("onnx_file_errors");
    const char *empty = tu_path(dir, "empty.onnx");
    assert_int_equal(tu_write_file(empty, "", 0), 0);
    expect_file_fail(empty, NULL, MHA_ERR_MODEL_FORMAT, "empty file");
    expect_file_fail(tu_path(dir, "missing.onnx"), NULL, MHA_ERR_IO, "missing.onnx");
    expect_file_fail(dir, NULL, MHA_ERR_IO, "not a regular file");
    const char *fifo = tu_path(dir, "fifo.onnx");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_file_fail(fifo, NULL, MHA_ERR_IO, "not a regular file"); /* and does not hang */

    /* max_file_bytes: a real 223-byte model over a 100-byte limit */
    ir_load_options opts = {.max_file_bytes = 100, .max_nesting_depth = 0};
    expect_file_fail(data_path("conformance/onnx_attention_3d/model.onnx"), &opts, MHA_ERR_LIMIT,
                     "exceeds the limit of 100 bytes");

    mha_error err;
    ir_graph *g = NULL;
    assert_int_equal(ir_load_memory(NULL, "", 0, NULL, NULL, &g, &err), MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "empty"));
}

static void test_truncated_models(void **state) {
    (void)state;
    const char *models[] = {"conformance/onnx_attention_3d/model.onnx",
                            "torch-export/torch_mha_self_d32_h4_b2_s6_op17/model.onnx"};
    for (size_t m = 0; m < 2; m++) {
        size_t size;
        unsigned char *buf = tu_read_file(data_path(models[m]), &size);
        assert_non_null(buf);
        /* every offset of the small model, ~400 spread over the big one */
        size_t step = size < 1000 ? 1 : size / 397;
        int past_end = 0;
        for (size_t cut = 0; cut < size; cut += step) {
            /* a copy of exactly `cut` bytes, so ASan sees any overread */
            unsigned char *part = malloc(cut ? cut : 1);
            memcpy(part, buf, cut);
            ir_graph *g = NULL;
            mha_error err;
            mha_error_clear(&err);
            mha_status st = ir_load_memory(NULL, part, cut, NULL, NULL, &g, &err);
            if (st == MHA_OK) print_error("%s cut at %zu loaded\n", models[m], cut);
            assert_int_not_equal(st, MHA_OK);
            assert_null(g);
            assert_true(err.message[0] != '\0');
            past_end += strstr(err.message, "length past end of file") != NULL;
            free(part);
        }
        assert_true(past_end > 0);
        free(buf);
    }

    /* a cut inside the graph field names the field's offset */
    size_t size;
    unsigned char *buf = tu_read_file(data_path("conformance/onnx_attention_3d/model.onnx"), &size);
    ir_graph *g = NULL;
    mha_error err;
    assert_int_equal(ir_load_memory(NULL, buf, 100, NULL, NULL, &g, &err), MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "length past end of file at byte offset 29"));
    /* the cut right after the graph leaves no opset_import */
    assert_int_equal(ir_load_memory(NULL, buf, 217, NULL, NULL, &g, &err), MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "opset"));
    free(buf);
}

static void test_random_bytes(void **state) {
    (void)state;
    uint64_t seed = 12345;
    unsigned char buf[2048];
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + (size_t)(tu_rand_u64(&seed) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)tu_rand_u64(&seed);
        ir_graph *g = NULL;
        mha_error err;
        mha_error_clear(&err);
        mha_status st = ir_load_memory(NULL, buf, n, NULL, NULL, &g, &err);
        assert_int_not_equal(st, MHA_OK);
        assert_null(g);
        assert_true(err.message[0] != '\0');
    }
    /* the same through the TensorProto reader */
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + (size_t)(tu_rand_u64(&seed) % 256);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)tu_rand_u64(&seed);
        tensor *t = NULL;
        mha_error err;
        mha_status st = ir_load_tensor_proto(NULL, buf, n, "random.pb", &t, NULL, &err);
        if (st == MHA_OK) {
            tensor_free(t); /* random bytes can spell a valid tiny tensor */
            continue;
        }
        assert_null(t);
        assert_non_null(strstr(err.message, "random.pb"));
    }
}

/* Files that are something else are named as such ("not an ONNX model"),
 * not as a protobuf wire error at byte 0. */
static void test_not_a_model(void **state) {
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;
        const char *what;
    } cs[] = {
        {"\223NUMPY\001\000v\000{'descr': '<f4'", 24, "a .npy file"},
        {"PK\003\004\024\000\000\000", 8, "a zip archive"},
        {"{\"graph\": 1}", 12, "text (JSON?)"},
        {"# a README\n", 11, "its first byte starts no protobuf field"},
        {"\000\000\000\000", 4, "its first byte starts no protobuf field"},
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        ir_graph *g = NULL;
        mha_error err;
        assert_int_equal(ir_load_memory(NULL, cs[k].bytes, cs[k].n, NULL, NULL, &g, &err),
                         MHA_ERR_MODEL_FORMAT);
        assert_null(g);
        if (!strstr(err.message, "not an ONNX model") || !strstr(err.message, cs[k].what))
            fail_msg("case %zu: '%s'", k, err.message);
    }
}

static void test_wire_errors(void **state) {
    (void)state;
    ir_graph *g = NULL;
    mha_error err;
    /* ModelProto.graph (field 7) declares 127 bytes, 3 follow */
    const unsigned char past[] = {0x08, 0x07, 0x3a, 0x7f, 1, 2, 3};
    assert_int_equal(ir_load_memory(NULL, past, sizeof past, NULL, NULL, &g, &err),
                     MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "length past end of file at byte offset 2"));
    assert_non_null(strstr(err.message, "<memory>"));

    /* a NUL inside a string: the node name "re\0u" (protobuf-c would have
     * cut it to "re"; a location "w.bin\0../x" would have read w.bin) */
    {
        gb nb = base_model();
        size_t nsize;
        unsigned char *nbuf = gb_pack(&nb, &nsize);
        unsigned char *at = memmem(nbuf, nsize, "relu", 4);
        assert_non_null(at);
        at[2] = 0;
        assert_int_equal(ir_load_memory(NULL, nbuf, nsize, NULL, NULL, &g, &err),
                         MHA_ERR_MODEL_FORMAT);
        assert_non_null(strstr(err.message, "string field 'name' of onnx.NodeProto"));
        assert_non_null(strstr(err.message, "holds a NUL byte"));
        assert_null(g);
    }

    /* ir_version (field 1) varint cut off */
    const unsigned char trunc[] = {0x08, 0xff, 0xff};
    assert_int_equal(ir_load_memory(NULL, trunc, sizeof trunc, NULL, NULL, &g, &err),
                     MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "truncated varint at byte offset 1"));

    /* a group (wire type 3) after a valid first field (one in the first
     * byte is "not an ONNX model", test_not_a_model) */
    const unsigned char group[] = {0x08, 0x07, 0x0b, 0x0c};
    assert_int_equal(ir_load_memory(NULL, group, sizeof group, NULL, NULL, &g, &err),
                     MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "wire type 3"));

    /* a sub-message longer than its parent: graph (5 bytes) holds a node of 9 */
    const unsigned char inner[] = {0x3a, 0x05, 0x0a, 0x09, 0, 0, 0, 0x40, 0x11};
    assert_int_equal(ir_load_memory(NULL, inner, sizeof inner, NULL, NULL, &g, &err),
                     MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "past end of the enclosing message at byte offset 2"));

    /* the right framing but a field of the wrong type: graph as a varint,
     * named with its place (protobuf-c only says the message failed) */
    const unsigned char wrongtype[] = {0x38, 0x01};
    assert_int_equal(ir_load_memory(NULL, wrongtype, sizeof wrongtype, NULL, NULL, &g, &err),
                     MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "field 'graph' of onnx.ModelProto at byte offset 0 has "
                                        "wire type 0 (varint); a field of its type takes wire "
                                        "type 2 (length-delimited)"));
    /* a singular number sent as a length-delimited run (only repeated
     * ones may come packed): opset_import's version */
    const unsigned char packed_single[] = {0x42, 0x04, 0x12, 0x02, 0x01, 0x02};
    assert_int_equal(
        ir_load_memory(NULL, packed_single, sizeof packed_single, NULL, NULL, &g, &err),
        MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "field 'version' of onnx.OperatorSetIdProto at byte "
                                        "offset 2 has wire type 2 (length-delimited)"));

    /* 2^24 + 1 empty producer_name fields: 32 MiB that protobuf-c would turn
     * into 2^24 allocations (~550 MiB); refused by the scan's memory bound
     * before any is made */
    size_t n = ((size_t)1 << 24) + 1;
    unsigned char *many = malloc(2 * n);
    assert_non_null(many);
    for (size_t i = 0; i < n; i++) {
        many[2 * i] = 0x12;
        many[2 * i + 1] = 0x00;
    }
    mha_alloc_fail_at(0, 0);
    assert_int_equal(ir_load_memory(NULL, many, 2 * n, NULL, NULL, &g, &err), MHA_ERR_LIMIT);
    assert_non_null(strstr(err.message, "would take more than 320 MiB of memory to unpack"));
    assert_true(mha_alloc_count() < 10);
    free(many);
}

/* ModelProto bytes: graph (field 7) holding n copies of `item` (bytes each)
 * after an opset import; *size set. */
static unsigned char *graph_of_items(const unsigned char *item, size_t bytes, size_t n,
                                     size_t *size) {
    size_t inner = n * bytes, cap = inner + 32, at;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    static const unsigned char head[] = {0x08, 0x08, 0x42, 0x02, 0x10, 0x11}; /* ir 8, opset 17 */
    memcpy(buf, head, sizeof head);
    at = sizeof head;
    buf[at++] = 0x3a; /* graph, then its length as a varint */
    size_t v = inner;
    while (v >= 0x80) {
        buf[at++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    buf[at++] = (unsigned char)v;
    for (size_t i = 0; i < n; i++, at += bytes)
        memcpy(buf + at, item, bytes);
    *size = at;
    return buf;
}

/* Memory per byte of input: files of tiny messages are refused by the wire
 * scan, before protobuf-c allocates anything and within a fraction of a
 * second, with the limit in the message. */
static void test_amplification_limits(void **state) {
    (void)state;
    ir_graph *g = NULL;
    mha_error err;
    size_t size;
    /* 2^18 + 1 empty NodeProtos (512 KiB) */
    static const unsigned char empty_node[] = {0x0a, 0x00};
    unsigned char *nodes = graph_of_items(empty_node, 2, ((size_t)1 << 18) + 1, &size);
    mha_alloc_fail_at(0, 0);
    mha_error_clear(&err);
    assert_int_equal(ir_load_memory(NULL, nodes, size, NULL, NULL, &g, &err), MHA_ERR_LIMIT);
    if (!strstr(err.message, "more than 262144 nodes")) fail_msg("%s", err.message);
    assert_true(mha_alloc_count() < 10);
    free(nodes);
    /* a chain of 300000 Relu nodes, 26 bytes each (7.8 MB): the node bound */
    static const unsigned char relu[] = {0x0a, 0x18, 0x0a, 0x07, 'v', '1', '2', '3', '4',
                                         '5',  '6',  0x12, 0x07, 'w', '1', '2', '3', '4',
                                         '5',  '6',  0x22, 0x04, 'R', 'e', 'l', 'u'};
    unsigned char *chain = graph_of_items(relu, sizeof relu, 300000, &size);
    mha_alloc_fail_at(0, 0);
    assert_int_equal(ir_load_memory(NULL, chain, size, NULL, NULL, &g, &err), MHA_ERR_LIMIT);
    assert_true(mha_alloc_count() < 10);
    free(chain);
    /* 12 M empty value_info entries (24 MiB; ~1 GiB for protobuf-c): the
     * memory bound, 64 MiB + 8 per byte */
    static const unsigned char empty_vi[] = {0x6a, 0x00};
    unsigned char *vis = graph_of_items(empty_vi, 2, (size_t)12 << 20, &size);
    mha_alloc_fail_at(0, 0);
    assert_int_equal(ir_load_memory(NULL, vis, size, NULL, NULL, &g, &err), MHA_ERR_LIMIT);
    if (!strstr(err.message, "would take more than 256 MiB of memory to unpack"))
        fail_msg("%s", err.message);
    assert_true(mha_alloc_count() < 10);
    free(vis);
    /* ... while 100000 of them (200 KiB, under the 64 MiB base) load */
    vis = graph_of_items(empty_vi, 2, 100000, &size);
    assert_int_equal(ir_load_memory(NULL, vis, size, NULL, NULL, &g, &err), MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "declares no outputs"));
    free(vis);
}

/* Builds ModelProto bytes nested `levels` sub-messages deep:
 * graph -> node -> attribute -> g -> node -> attribute -> g ... */
static unsigned char *nested_model(size_t levels, size_t *size) {
    size_t cap = levels * 8 + 16;
    unsigned char *buf = ta(cap);
    size_t pos = cap;
    static const unsigned fields[3] = {1 /* Graph.node */, 5 /* Node.attribute */,
                                       6 /* Attribute.g */};
    for (size_t i = levels; i-- > 0;) {
        unsigned field = i == 0 ? 7 /* Model.graph */ : fields[(i - 1) % 3];
        size_t len = cap - pos;
        unsigned char tmp[12];
        size_t n = 0;
        tmp[n++] = (unsigned char)(field << 3 | 2);
        do {
            tmp[n] = (unsigned char)(len & 0x7f);
            len >>= 7;
            if (len) tmp[n] |= 0x80;
            n++;
        } while (len);
        pos -= n;
        memcpy(buf + pos, tmp, n);
    }
    *size = cap - pos;
    return buf + pos;
}

static void test_nesting_limit(void **state) {
    (void)state;
    ir_graph *g = NULL;
    mha_error err;
    size_t size;
    /* 100 levels: over the default of 64 */
    unsigned char *m = nested_model(100, &size);
    assert_int_equal(ir_load_memory(NULL, m, size, NULL, NULL, &g, &err), MHA_ERR_LIMIT);
    assert_non_null(strstr(err.message, "nested deeper than the limit of 64"));
    assert_null(g);
    /* the limit is the option: at 200 the scan passes and the model fails
     * later for what it is (a graph attribute without opsets) */
    ir_load_options opts = {.max_file_bytes = 0, .max_nesting_depth = 200};
    assert_int_equal(ir_load_memory(NULL, m, size, NULL, &opts, &g, &err), MHA_ERR_MODEL_FORMAT);
    opts.max_nesting_depth = 50;
    assert_int_equal(ir_load_memory(NULL, m, size, NULL, &opts, &g, &err), MHA_ERR_LIMIT);
    assert_non_null(strstr(err.message, "limit of 50"));
    /* 300000 levels would overflow protobuf-c's recursion: refused early */
    m = nested_model(300000, &size);
    assert_int_equal(ir_load_memory(NULL, m, size, NULL, NULL, &g, &err), MHA_ERR_LIMIT);
    /* and a generous limit still scans it without recursion, then refuses */
    opts.max_nesting_depth = 250000;
    assert_int_equal(ir_load_memory(NULL, m, size, NULL, &opts, &g, &err), MHA_ERR_LIMIT);
    assert_non_null(strstr(err.message, "limit of 250000"));
}

/* ---- tensors ---- */

static void test_tensor_errors(void **state) {
    (void)state;
    gb b = base_model();
    /* data shorter than dims */
    b.g->initializer[0] = mk_tensor("W", 1, 2, dims23, vals6, 20);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT,
                "initializer 'W': raw_data has 20 bytes, expected 24");

    /* negative dims */
    const int64_t neg[2] = {-1, 3};
    b.g->initializer[0] = mk_tensor("W", 1, 2, neg, vals6, 24);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "initializer 'W': negative dimension -1");

    /* dims whose product overflows */
    const int64_t huge[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 16};
    b.g->initializer[0] = mk_tensor("W", 1, 3, huge, vals6, 24);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "initializer 'W': element count overflows");
    /* ... or whose byte size does */
    const int64_t big[2] = {(int64_t)1 << 31, (int64_t)1 << 31};
    b.g->initializer[0] = mk_tensor("W", 11, 2, big, vals6, 24);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "byte size overflows");

    /* unsupported dtypes */
    b.g->initializer[0] = mk_tensor("W", 8, 2, dims23, NULL, 0);
    expect_fail(&b, NULL, MHA_ERR_DTYPE, "initializer 'W': data type string (8) is not supported");
    b.g->initializer[0] = mk_tensor("W", 14, 2, dims23, NULL, 0);
    expect_fail(&b, NULL, MHA_ERR_DTYPE, "complex64");
    b.g->initializer[0] = mk_tensor("W", 0, 2, dims23, NULL, 0);
    expect_fail(&b, NULL, MHA_ERR_DTYPE, "no data type");

    /* rank over the limit */
    const int64_t ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    b.g->initializer[0] = mk_tensor("W", 1, 9, ones, vals6, 4);
    expect_fail(&b, NULL, MHA_ERR_LIMIT, "rank 9 exceeds the limit of 8");

    /* no data at all */
    b.g->initializer[0] = mk_tensor("W", 1, 2, dims23, NULL, 0);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "the tensor has no data");

    /* typed fields: count, wrong field, range */
    Onnx__TensorProto *t = mk_tensor("W", 1, 2, dims23, NULL, 0);
    t->float_data = (float *)vals6;
    t->n_float_data = 5;
    b.g->initializer[0] = t;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "float_data has 5 values, expected 6");
    t = mk_tensor("W", 1, 2, dims23, NULL, 0);
    int64_t i64[6] = {1, 2, 3, 4, 5, 6};
    t->int64_data = i64;
    t->n_int64_data = 6;
    b.g->initializer[0] = t;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "wrong field (expected float_data)");
    t = mk_tensor("W", 3, 2, dims23, NULL, 0);
    int32_t i32[6] = {1, 2, 3, 400, 5, 6};
    t->int32_data = i32;
    t->n_int32_data = 6;
    b.g->initializer[0] = t;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "int32_data element 3 is 400");
    t = mk_tensor("W", 1, 2, dims23, vals6, 24);
    t->float_data = (float *)vals6;
    t->n_float_data = 6;
    b.g->initializer[0] = t;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "both raw_data and float_data");
    const unsigned char bools[6] = {0, 1, 2, 0, 1, 0};
    b.g->initializer[0] = mk_tensor("W", 9, 2, dims23, bools, 6);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "bool element 2 is 2");

    /* a Constant node's tensor goes through the same loader */
    b = base_model();
    Onnx__NodeProto *c = gb_node(&b, "Constant", "cst", NULL, "k");
    Onnx__AttributeProto *a = node_attr(c, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = mk_tensor("kv", 1, 2, dims23, vals6, 8);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT,
                "attribute 'value' of Constant node 'cst': tensor 'kv': raw_data has 8 bytes");

    /* the TensorProto file reader reports DATA_FORMAT and names the file */
    size_t size;
    void *buf = pack_msg(&mk_tensor("in", 1, 2, dims23, vals6, 12)->base, &size);
    tensor *out = NULL;
    mha_error err;
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "input_0.pb", &out, NULL, &err),
                     MHA_ERR_DATA_FORMAT);
    assert_non_null(strstr(err.message, "input_0.pb: tensor 'in': raw_data has 12 bytes"));
    assert_int_equal(ir_load_tensor_proto(NULL, buf, 0, "input_0.pb", &out, NULL, &err),
                     MHA_ERR_DATA_FORMAT);
    assert_non_null(strstr(err.message, "empty"));
    buf = pack_msg(&mk_tensor("x", 13, 1, dims23, vals6, 16)->base, &size);
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "x.pb", &out, NULL, &err),
                     MHA_ERR_DTYPE);
    assert_non_null(strstr(err.message, "uint64"));
    /* int16 token ids in a tensor file are read (and widened by the
     * readers); in a model they are refused, as before */
    const int16_t ids[2] = {-3, 700};
    buf = pack_msg(&mk_tensor("x", 5, 1, dims23, ids, sizeof ids)->base, &size);
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "x.pb", &out, NULL, &err), MHA_OK);
    assert_int_equal(out->dtype, MHA_DTYPE_INT16);
    assert_int_equal(((const int16_t *)out->data)[0], -3);
    assert_int_equal(((const int16_t *)out->data)[1], 700);
    tensor_free(out);
    out = NULL;
}

static void test_tensor_typed_fields(void **state) {
    (void)state;
    mha_error err;
    size_t size;
    tensor *t = NULL;
    /* float16 bit patterns and int8 values travel in int32_data */
    Onnx__TensorProto *p = mk_tensor("h", 10, 1, dims23 + 1, NULL, 0);
    int32_t bits[3] = {0x3c00, 0xc000, 0x7c00}; /* 1, -2, inf */
    p->int32_data = bits;
    p->n_int32_data = 3;
    void *buf = pack_msg(&p->base, &size);
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "h.pb", &t, NULL, &err), MHA_OK);
    assert_int_equal(t->dtype, MHA_DTYPE_FLOAT16);
    assert_true(tensor_get_f64(t, 0) == 1.0);
    assert_true(tensor_get_f64(t, 1) == -2.0);
    assert_true(tensor_get_f64(t, 2) > 1e300);
    tensor_free(t);

    p = mk_tensor("i", 3, 1, dims23 + 1, NULL, 0);
    int32_t i8[3] = {-128, 0, 127};
    p->int32_data = i8;
    p->n_int32_data = 3;
    buf = pack_msg(&p->base, &size);
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "i.pb", &t, NULL, &err), MHA_OK);
    assert_int_equal(tensor_get_i64(t, 0), -128);
    assert_int_equal(tensor_get_i64(t, 2), 127);
    tensor_free(t);

    p = mk_tensor("d", 11, 1, dims23 + 1, NULL, 0);
    double dv[3] = {0.5, -1.25, 3e100};
    p->double_data = dv;
    p->n_double_data = 3;
    buf = pack_msg(&p->base, &size);
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "d.pb", &t, NULL, &err), MHA_OK);
    assert_true(tensor_get_f64(t, 2) == 3e100);
    tensor_free(t);

    /* a scalar (rank 0) and an empty tensor (a zero dim, no data) */
    float one = 1.5f;
    buf = pack_msg(&mk_tensor("s", 1, 0, NULL, &one, 4)->base, &size);
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "s.pb", &t, NULL, &err), MHA_OK);
    assert_int_equal(t->rank, 0);
    assert_true(tensor_get_f64(t, 0) == 1.5);
    tensor_free(t);
    const int64_t zero[2] = {0, 3};
    buf = pack_msg(&mk_tensor("e", 1, 2, zero, NULL, 0)->base, &size);
    assert_int_equal(ir_load_tensor_proto(NULL, buf, size, "e.pb", &t, NULL, &err), MHA_OK);
    assert_int_equal(t->nbytes, 0);
    assert_int_equal(t->dims[0], 0);
    tensor_free(t);
}

/* ---- external data ---- */

static void write_floats(const char *path, size_t pad, const float *v, size_t n) {
    unsigned char buf[256];
    memset(buf, 0xee, pad);
    memcpy(buf + pad, v, n * sizeof *v);
    assert_int_equal(tu_write_file(path, buf, pad + n * sizeof *v), 0);
}

/* Writes base_model with W external (loc, off, len) as dir/name. */
static const char *write_ext_model(const char *dir, const char *name, const char *loc,
                                   const char *off, const char *len) {
    gb b = base_model();
    Onnx__TensorProto *w = mk_tensor("W", 1, 2, dims23, NULL, 0);
    tensor_external(w, loc, off, len);
    b.g->initializer[0] = w;
    size_t size;
    void *buf = gb_pack(&b, &size);
    const char *path = tu_path(dir, name);
    assert_int_equal(tu_write_file(path, buf, size), 0);
    return path;
}

static void test_external_data(void **state) {
    (void)state;
    const char *top = tu_tmpdir("onnx_external");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/model", top);
    assert_int_equal(mkdir(dir, 0755), 0);
    write_floats(tu_path(dir, "w.bin"), 8, vals6, 6);
    write_floats(tu_path(top, "outside.bin"), 8, vals6, 6);
    assert_int_equal(tu_system("mkdir -p '%s/sub' && cp '%s/w.bin' '%s/sub/w.bin'", dir, dir, dir),
                     0);
    assert_int_equal(symlink("../outside.bin", tu_path(dir, "escape.bin")), 0);
    assert_int_equal(symlink("/etc/passwd", tu_path(dir, "abs.bin")), 0);
    assert_int_equal(symlink("w.bin", tu_path(dir, "inner.bin")), 0);
    assert_int_equal(symlink("sub", tu_path(dir, "linkdir")), 0);
    assert_int_equal(mkfifo(tu_path(dir, "pipe.bin"), 0600), 0);

    /* the valid one */
    ir_graph *g = NULL;
    mha_error err;
    const char *ok = write_ext_model(dir, "ok.onnx", "w.bin", "8", "24");
    mha_error_clear(&err);
    assert_int_equal(ir_load_file(NULL, ok, NULL, &g, &err), MHA_OK);
    const tensor *w = g->values[value_id(g, "W")].init;
    assert_non_null(w);
    assert_memory_equal(w->data, vals6, sizeof vals6);
    ir_free(g);
    /* in a sub-folder, offset and length omitted (length = the tensor's) */
    assert_int_equal(tu_write_file(tu_path(dir, "sub/plain.bin"), vals6, sizeof vals6), 0);
    ok = write_ext_model(dir, "ok2.onnx", "sub/plain.bin", NULL, NULL);
    assert_int_equal(ir_load_file(NULL, ok, NULL, &g, &err), MHA_OK);
    assert_memory_equal(g->values[value_id(g, "W")].init->data, vals6, sizeof vals6);
    ir_free(g);

    struct {
        const char *loc, *off, *len;
        mha_status st;
        const char *frag;
    } bad[] = {
        {"/etc/passwd", NULL, NULL, MHA_ERR_MODEL_FORMAT, "'/etc/passwd' is an absolute path"},
        {"../outside.bin", "8", "24", MHA_ERR_MODEL_FORMAT, "contains a '..' component"},
        {"sub/../w.bin", "8", "24", MHA_ERR_MODEL_FORMAT, "contains a '..' component"},
        {"escape.bin", "8", "24", MHA_ERR_MODEL_FORMAT, "resolves outside the model folder"},
        {"abs.bin", "8", "24", MHA_ERR_MODEL_FORMAT, "resolves outside the model folder"},
        {"nothere.bin", NULL, NULL, MHA_ERR_IO, "'nothere.bin' not found"},
        {"w.bin", "16", "24", MHA_ERR_MODEL_FORMAT,
         "offset 16 + length 24 runs past the file's end (32 bytes)"},
        {"w.bin", "8", "20", MHA_ERR_MODEL_FORMAT, "length 20 bytes, expected 24"},
        {"w.bin", "-8", "24", MHA_ERR_MODEL_FORMAT, "offset '-8' is not a non-negative integer"},
        {"w.bin", "8", "-24", MHA_ERR_MODEL_FORMAT, "length '-24' is not a non-negative"},
        {"w.bin", "99999999999999999999", "24", MHA_ERR_MODEL_FORMAT, "not a non-negative"},
        {"", NULL, NULL, MHA_ERR_MODEL_FORMAT, "no location"},
        {"sub", NULL, NULL, MHA_ERR_MODEL_FORMAT, "not a regular file"},
        {"pipe.bin", NULL, NULL, MHA_ERR_MODEL_FORMAT, "not a regular file"}, /* no hang */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.onnx", i);
        const char *path = write_ext_model(dir, name, bad[i].loc, bad[i].off, bad[i].len);
        expect_file_fail(path, NULL, bad[i].st, bad[i].frag);
        expect_file_fail(path, NULL, bad[i].st, "initializer 'W'");
        expect_file_fail(path, NULL, bad[i].st, name); /* the model file */
    }

    /* external_data entries without data_location EXTERNAL: ambiguous */
    gb amb = base_model();
    tensor_external(amb.g->initializer[0], "w.bin", "8", "24");
    amb.g->initializer[0]->has_data_location = 0;
    expect_fail(&amb, dir, MHA_ERR_MODEL_FORMAT, "data_location is not EXTERNAL");

    /* a key given twice: two places for one tensor, refused (the second
     * offset was read: the tensor held the 0xee padding, no error) */
    const char *twice[] = {"offset", "location", "length"};
    const char *twice_value[] = {"0", "../outside.bin", "24"};
    for (int k = 0; k < 3; k++) {
        gb dup = base_model();
        Onnx__TensorProto *dw = mk_tensor("W", 1, 2, dims23, NULL, 0);
        tensor_external(dw, "w.bin", "8", "24");
        Onnx__StringStringEntryProto *kv = ta(sizeof *kv);
        onnx__string_string_entry_proto__init(kv);
        kv->key = ts(twice[k]);
        kv->value = ts(twice_value[k]);
        dw->external_data[dw->n_external_data++] = kv;
        dup.g->initializer[0] = dw;
        expect_fail(&dup, dir, MHA_ERR_MODEL_FORMAT, "is given twice");
    }

    /* from memory without a folder: refused; with one: resolved there */
    size_t size;
    void *buf = tu_read_file(tu_path(dir, "ok.onnx"), &size);
    assert_int_equal(ir_load_memory(NULL, buf, size, NULL, NULL, &g, &err), MHA_ERR_MODEL_FORMAT);
    assert_non_null(strstr(err.message, "loaded from memory without a folder"));
    assert_int_equal(ir_load_memory(NULL, buf, size, dir, NULL, &g, &err), MHA_OK);
    ir_free(g);
    free(buf);

    /* the resolver itself, both ways */
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    for (int fallback = 0; fallback < 2; fallback++) {
        int fd = onnx_open_beneath(dfd, "w.bin", fallback);
        assert_true(fd >= 0);
        close(fd);
        fd = onnx_open_beneath(dfd, "sub/w.bin", fallback);
        assert_true(fd >= 0);
        close(fd);
        fd = onnx_open_beneath(dfd, "./sub//w.bin", fallback);
        assert_true(fd >= 0);
        close(fd);
        errno = 0;
        assert_int_equal(onnx_open_beneath(dfd, "escape.bin", fallback), -1);
        assert_true(errno == EXDEV || errno == ELOOP);
        assert_int_equal(onnx_open_beneath(dfd, "../outside.bin", fallback), -1);
        assert_true(errno == EXDEV || errno == ELOOP);
        assert_int_equal(onnx_open_beneath(dfd, "nothere.bin", fallback), -1);
        assert_int_equal(errno, ENOENT);
    }
    /* openat2 (when the kernel has it) allows a link that stays inside... */
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH;
    long probe = syscall(SYS_openat2, dfd, "w.bin", &how, sizeof how);
    if (probe >= 0) {
        close((int)probe);
        int fd = onnx_open_beneath(dfd, "inner.bin", 0);
        assert_true(fd >= 0);
        close(fd);
    } else {
        print_message("openat2 unavailable (%s): only the fallback is tested\n", strerror(errno));
    }
    /* ...the fallback refuses every symlink, even one that stays inside */
    assert_int_equal(onnx_open_beneath(dfd, "inner.bin", 1), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(onnx_open_beneath(dfd, "linkdir/w.bin", 1), -1);
    assert_int_equal(errno, ELOOP);
    close(dfd);
}

/* External data is bounded like the model file (all external tensors of a
 * load together), and an initializer no node reads is checked but never
 * read: a small model naming a 6 GiB sparse file loads (or is refused) in
 * well under a second without touching the file's data. */
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* base_model plus external initializers named names[i] (float32 [count]
 * from huge.bin at offset 0); reader non-NULL: Identity nodes read them. */
static const char *write_huge_model(const char *dir, const char *file, const char *const *names,
                                    size_t n, int64_t count, int read) {
    gb b = base_model();
    char len[32];
    snprintf(len, sizeof len, "%lld", (long long)count * 4);
    for (size_t i = 0; i < n; i++) {
        Onnx__TensorProto *t = mk_tensor(names[i], 1, 1, &count, NULL, 0);
        tensor_external(t, "huge.bin", "0", len);
        gb_init(&b, t);
        if (read) {
            char out[64];
            snprintf(out, sizeof out, "%s_copy", names[i]);
            gb_node(&b, "Identity", NULL, names[i], out);
            gb_output(&b, out);
        }
    }
    size_t size;
    void *buf = gb_pack(&b, &size);
    const char *path = tu_path(dir, file);
    assert_int_equal(tu_write_file(path, buf, size), 0);
    return path;
}

static void test_external_data_bounded(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("onnx_external_huge");
    const int64_t huge = (int64_t)6 << 30;
    int fd = open(tu_path(dir, "huge.bin"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)huge), 0); /* sparse: no disk used */
    close(fd);
    static const char *const one[] = {"Huge"};
    ir_graph *g = NULL;
    mha_error err;

    /* nobody reads it: loads at once, W still loaded, Huge not */
    const char *unread = write_huge_model(dir, "unread.onnx", one, 1, huge / 4, 0);
    double t0 = now_seconds();
    mha_error_clear(&err);
    if (ir_load_file(NULL, unread, NULL, &g, &err) != MHA_OK) fail_msg("%s", err.message);
    double t_unread = now_seconds() - t0;
    assert_null(g->values[value_id(g, "Huge")].init);
    assert_int_equal(g->values[value_id(g, "Huge")].dims[0], huge / 4);
    assert_non_null(g->values[value_id(g, "W")].init);
    ir_free(g);
    /* an unread initializer is still checked: past the file's end refused */
    const char *past = write_huge_model(dir, "past.onnx", one, 1, huge / 4 + 1, 0);
    expect_file_fail(past, NULL, MHA_ERR_MODEL_FORMAT, "runs past the file's end");

    /* read by a node: over the 4 GiB default limit, refused before reading */
    const char *read = write_huge_model(dir, "read.onnx", one, 1, huge / 4, 1);
    t0 = now_seconds();
    expect_file_fail(read, NULL, MHA_ERR_LIMIT, "past the limit of 4294967296 bytes");
    double t_read = now_seconds() - t0;
    print_message("6 GiB external initializer: unread %.3f s, read refused %.3f s\n", t_unread,
                  t_read);
    assert_true(t_unread < 1.0 && t_read < 1.0);

    /* the limit covers every external tensor together: one of 60000 bytes fits a
     * 100 KiB limit alone, not both */
    static const char *const two[] = {"A", "B"};
    ir_load_options small = {.max_file_bytes = 100 << 10};
    const char *a_only = write_huge_model(dir, "a.onnx", two, 1, 15000, 1);
    mha_error_clear(&err);
    assert_int_equal(ir_load_file(NULL, a_only, &small, &g, &err), MHA_OK);
    ir_free(g);
    const char *both = write_huge_model(dir, "both.onnx", two, 2, 15000, 1);
    expect_file_fail(both, &small, MHA_ERR_LIMIT, "initializer 'B'");
    expect_file_fail(both, &small, MHA_ERR_LIMIT, "past the limit of 102400 bytes (after 60000");
    unlink(tu_path(dir, "huge.bin"));
}

/* ---- sparse initializers ---- */

/* Resident memory of this process, VmRSS or VmHWM, in KiB (-1 unknown). */
static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}

/* ASan maps shadow memory for what the load touches, so a peak RSS bound
 * holds in the Release build only (on some kernels it held under ASan too). */
#if defined(__SANITIZE_ADDRESS__)
#define MHA_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MHA_TEST_UNDER_ASAN 1
#endif
#endif
#ifndef MHA_TEST_UNDER_ASAN
#define MHA_TEST_UNDER_ASAN 0
#endif

/* Loads a model file of float32 initializers W0.. of counts[0..n) elements
 * (each read by an Identity, in file order) in a child, whose peak starts
 * at its size at the fork; checks every weight keeps its bytes and that
 * what the load added at its peak is at most `bound` x the file. */
static void check_load_peak(const char *dirname, const int64_t *counts, int n, double bound) {
    int64_t most = 0;
    for (int i = 0; i < n; i++)
        most = counts[i] > most ? counts[i] : most;
    float *vals = malloc((size_t)most * sizeof *vals);
    assert_non_null(vals);
    gb b = base_model();
    for (int i = 0; i < n; i++) {
        char name[16], out[24];
        for (int64_t e = 0; e < counts[i]; e++)
            vals[e] = (float)(i * 1000 + e % 997);
        snprintf(name, sizeof name, "W%d", i);
        snprintf(out, sizeof out, "W%d_copy", i);
        gb_init(&b, mk_tensor(name, 1, 1, &counts[i], vals, (size_t)counts[i] * sizeof *vals));
        gb_node(&b, "Identity", NULL, name, out);
        gb_output(&b, out);
    }
    size_t size;
    void *buf = gb_pack(&b, &size);
    const char *dir = tu_tmpdir(dirname);
    const char *path = tu_path(dir, "big.onnx");
    assert_int_equal(tu_write_file(path, buf, size), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long rss0 = status_kib("VmRSS");
        ir_graph *g = NULL;
        mha_error err;
        int bad = ir_load_file(NULL, path, NULL, &g, &err) != MHA_OK;
        long peak = status_kib("VmHWM");
        for (int i = 0; !bad && i < n; i++) {
            char name[16];
            snprintf(name, sizeof name, "W%d", i);
            const tensor *t = g->values[value_id(g, name)].init;
            const float *d = t ? t->data : NULL;
            bad = !d;
            for (int64_t e = 0; !bad && e < counts[i]; e++)
                bad = d[e] != (float)(i * 1000 + e % 997);
        }
        ir_free(g);
        if (bad) _exit(2);
        if (rss0 < 0 || peak < 0) _exit(3);
        long added = peak - rss0;
        if (MHA_TEST_UNDER_ASAN) { /* its shadow of every mapping counts in VmHWM */
            fprintf(stderr,
                    "under ASan: weights checked, the peak bound (%.1fx) only in the "
                    "Release build (added %ld KiB for %zu KiB)\n",
                    bound, added, size / 1024);
            _exit(0);
        }
        if ((double)added > bound * (double)size / 1024.0) {
            fprintf(stderr, "load of a %zu KiB file added %ld KiB at its peak\n", size / 1024,
                    added);
            _exit(4);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    free(vals);
}

/* A model file of large raw_data initializers loads with its file buffer
 * given back as it is decoded: the peak is about the weights once, not
 * the file plus its copy (twice). */
static void test_large_file_peak_memory(void **state) {
    (void)state;
    const int64_t counts[6] = {1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20}; /* 4 MiB */
    check_load_peak("onnx_peak", counts, 6, 1.5);
}

/* The file is mapped, not read whole: a first tensor of half the file (a
 * token embedding) is copied out while its own pages are resident and,
 * of the rest, what the decoder read around the other tensors' headers
 * (the page cache maps up to 2 MiB around each), not the whole file
 * beside it (1.5x the file when read whole). */
static void test_large_first_tensor_peak(void **state) {
    (void)state;
    const int64_t counts[3] = {3 << 20, 3 << 19, 3 << 19}; /* 12, 6, 6 MiB */
    check_load_peak("onnx_peak_first", counts, 3, 1.3);
}

static Onnx__SparseTensorProto *mk_sparse(const char *name, int rank, const int64_t *dims,
                                          const float *vals, int64_t nnz, const int64_t *idx,
                                          int idx_rank) {
    Onnx__SparseTensorProto *sp = ta(sizeof *sp);
    onnx__sparse_tensor_proto__init(sp);
    sp->values = mk_tensor(name, 1, 1, &nnz, vals, (size_t)nnz * sizeof(float));
    int64_t idims[2] = {nnz, rank};
    size_t n_idx = (size_t)nnz * (idx_rank == 2 ? (size_t)rank : 1);
    sp->indices = mk_tensor(NULL, 7, idx_rank, idims, idx, n_idx * sizeof(int64_t));
    sp->dims = ta((size_t)rank * sizeof *sp->dims);
    for (int i = 0; i < rank; i++)
        sp->dims[i] = dims[i];
    sp->n_dims = (size_t)rank;
    return sp;
}

static void test_sparse_initializers(void **state) {
    (void)state;
    const int64_t dims34[2] = {3, 4};
    const float v[2] = {7, 8};
    const int64_t linear[2] = {1, 10};
    const int64_t coords[4] = {0, 1, 2, 2};
    for (int form = 0; form < 2; form++) {
        gb b = gb_new(17);
        b.g->sparse_initializer[b.g->n_sparse_initializer++] =
            form == 0 ? mk_sparse("S", 2, dims34, v, 2, linear, 1)
                      : mk_sparse("S", 2, dims34, v, 2, coords, 2);
        gb_output(&b, "S");
        ir_graph *g = NULL;
        mha_error err;
        assert_int_equal(gb_load(&b, NULL, &g, &err), MHA_OK);
        const tensor *t = g->values[g->outputs[0]].init;
        assert_non_null(t);
        assert_int_equal(t->rank, 2);
        assert_int_equal(t->dims[1], 4);
        for (int64_t i = 0; i < 12; i++) {
            double want = i == 1 ? 7 : i == 10 ? 8 : 0;
            assert_true(tensor_get_f64(t, i) == want);
        }
        ir_free(g);
    }
    const int64_t bad_linear[2] = {1, 12};
    const int64_t bad_coords[4] = {0, 1, 3, 0};
    const int64_t neg_linear[2] = {-1, 0};
    gb b = gb_new(17);
    b.g->sparse_initializer[b.g->n_sparse_initializer++] =
        mk_sparse("S", 2, dims34, v, 2, bad_linear, 1);
    gb_output(&b, "S");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT,
                "sparse initializer 'S': index 12 of value 1 is out of range [0, 12)");
    b.g->sparse_initializer[0] = mk_sparse("S", 2, dims34, v, 2, neg_linear, 1);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "index -1 of value 0 is out of range");
    b.g->sparse_initializer[0] = mk_sparse("S", 2, dims34, v, 2, bad_coords, 2);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "coordinate 3 on axis 0 of value 1");
    /* indices of the wrong shape */
    Onnx__SparseTensorProto *sp = mk_sparse("S", 2, dims34, v, 2, linear, 1);
    sp->indices->dims[0] = 1;
    sp->indices->raw_data.len = 8;
    b.g->sparse_initializer[0] = sp;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "fit neither");
    /* a huge dense shape from a few bytes */
    const int64_t vast[2] = {(int64_t)1 << 20, (int64_t)1 << 20};
    b.g->sparse_initializer[0] = mk_sparse("S", 2, vast, v, 2, linear, 1);
    expect_fail(&b, NULL, MHA_ERR_LIMIT, "densifies to");
}

/* ---- graph structure ---- */

static void test_graph_structure(void **state) {
    (void)state;
    /* nodes listed out of order are sorted; "" inputs are -1 */
    gb b = gb_new(17);
    gb_input(&b, "x", 1, 2, dims23);
    gb_node(&b, "Add", "second", "r,x", "y");
    gb_node(&b, "Relu", NULL, "x", "r");
    gb_node(&b, "Clip", "third", "y,,", "z");
    gb_output(&b, "z");
    ir_graph *g = NULL;
    mha_error err;
    assert_int_equal(gb_load(&b, NULL, &g, &err), MHA_OK);
    check_graph_invariants(g);
    assert_string_equal(g->nodes[0].op_type, "Relu");
    assert_string_equal(g->nodes[1].name, "second");
    assert_string_equal(g->nodes[2].name, "third");
    assert_int_equal(g->nodes[0].index, 1);
    assert_int_equal(g->nodes[2].n_inputs, 3);
    assert_int_equal(g->nodes[2].inputs[1], -1);
    assert_int_equal(g->nodes[2].inputs[2], -1);
    char desc[128];
    assert_string_equal(ir_node_desc(&g->nodes[0], desc, sizeof desc), "Relu node #1");
    assert_string_equal(ir_node_desc(&g->nodes[1], desc, sizeof desc), "Add node 'second'");
    ir_free(g);

    /* a graph input that is also an initializer is a constant */
    b = base_model();
    gb_input(&b, "W", 1, 2, dims23);
    assert_int_equal(gb_load(&b, NULL, &g, &err), MHA_OK);
    assert_int_equal(g->n_inputs, 1);
    assert_string_equal(g->values[g->inputs[0]].name, "x");
    int w = value_id(g, "W");
    assert_true(w >= 0);
    assert_non_null(g->values[w].init);
    assert_int_equal(g->values[w].graph_input, -1);
    ir_free(g);

    /* symbolic dims and value_info */
    b = base_model();
    const int64_t dyn[3] = {-1, 5, -1};
    b.g->input[0] = mk_value_info("x", 1, 3, dyn);
    b.g->value_info[b.g->n_value_info++] = mk_value_info("r", 10, 3, dyn);
    b.g->value_info[b.g->n_value_info++] = mk_value_info("stale", 1, 1, dyn);
    assert_int_equal(gb_load(&b, NULL, &g, &err), MHA_OK);
    const ir_value *x = &g->values[g->inputs[0]];
    assert_int_equal(x->rank, 3);
    assert_int_equal(x->dims[0], -1);
    assert_string_equal(x->dim_params[0], "N0");
    assert_int_equal(x->dims[1], 5);
    assert_null(x->dim_params[1]);
    const ir_value *r = &g->values[value_id(g, "r")];
    assert_int_equal(r->dtype, MHA_DTYPE_FLOAT16);
    assert_int_equal(r->rank, 3);
    const ir_value *y = &g->values[g->outputs[0]];
    assert_int_equal(y->rank, -1);
    assert_int_equal(y->dtype, MHA_DTYPE_UNDEFINED);
    ir_free(g);

    /* attributes of every supported kind; com.microsoft opset */
    b = base_model();
    Onnx__OperatorSetIdProto *ms = ta(sizeof *ms);
    onnx__operator_set_id_proto__init(ms);
    ms->domain = ts("com.microsoft");
    ms->has_version = 1;
    ms->version = 1;
    Onnx__OperatorSetIdProto **ops = ta(2 * sizeof *ops);
    ops[0] = b.m->opset_import[0];
    ops[1] = ms;
    b.m->opset_import = ops;
    b.m->n_opset_import = 2;
    Onnx__NodeProto *n = gb_node(&b, "MultiHeadAttention", "mha", "y", "o");
    n->domain = ts("com.microsoft");
    Onnx__AttributeProto *a = node_attr(n, "num_heads", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = 4;
    a = node_attr(n, "scale", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = 0.25f;
    a = node_attr(n, "mode", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.data = (uint8_t *)ts("causal");
    a->s.len = 6;
    a = node_attr(n, "fs", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
    a->floats = (float *)vals6;
    a->n_floats = 2;
    a = node_attr(n, "names", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);
    a->strings = ta(2 * sizeof *a->strings);
    a->strings[0].data = (uint8_t *)ts("ab");
    a->strings[0].len = 2;
    a->n_strings = 2; /* the second is empty */
    a = node_attr(n, "untyped_int", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED);
    a->has_type = 0;
    a->has_i = 1;
    a->i = -3;
    Onnx__NodeProto *cn = gb_node(&b, "Constant", NULL, NULL, "cst");
    a = node_attr(cn, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = mk_tensor(NULL, 7, 1, dims23, NULL, 0);
    int64_t two[2] = {11, 12};
    a->t->int64_data = two;
    a->t->n_int64_data = 2;
    assert_int_equal(gb_load(&b, NULL, &g, &err), MHA_OK);
    assert_int_equal(g->ms_opset, 1);
    assert_int_equal(g->opset, 17);
    const ir_node *mha = NULL, *cst = NULL;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (strcmp(g->nodes[i].op_type, "MultiHeadAttention") == 0) mha = &g->nodes[i];
        if (strcmp(g->nodes[i].op_type, "Constant") == 0) cst = &g->nodes[i];
    }
    assert_non_null(mha);
    assert_string_equal(mha->domain, "com.microsoft");
    assert_string_equal(ir_node_desc(mha, desc, sizeof desc),
                        "MultiHeadAttention (com.microsoft) node 'mha'");
    assert_int_equal(ir_attr_int(mha, "num_heads", 0), 4);
    assert_true(ir_attr_float(mha, "scale", 1.0f) == 0.25f);
    assert_true(ir_attr_float(mha, "num_heads", 1.0f) == 4.0f);
    assert_int_equal(ir_attr_int(mha, "scale", -9), -9);
    assert_string_equal(ir_node_attr(mha, "mode")->s, "causal");
    assert_int_equal(ir_node_attr(mha, "fs")->n, 2);
    assert_true(ir_node_attr(mha, "fs")->floats[1] == 2.0f);
    assert_int_equal(ir_node_attr(mha, "names")->n, 2);
    assert_string_equal(ir_node_attr(mha, "names")->strings[0], "ab");
    assert_string_equal(ir_node_attr(mha, "names")->strings[1], "");
    assert_int_equal(ir_attr_int(mha, "untyped_int", 0), -3);
    assert_null(ir_node_attr(mha, "absent"));
    assert_non_null(cst);
    const tensor *ct = ir_node_attr(cst, "value")->t;
    assert_int_equal(ct->dtype, MHA_DTYPE_INT64);
    assert_int_equal(tensor_get_i64(ct, 1), 12);
    ir_free(g);
}

static void test_graph_errors(void **state) {
    (void)state;
    /* a cycle: a -> b -> a, fed by x */
    gb b = gb_new(17);
    gb_input(&b, "x", 1, 2, dims23);
    gb_node(&b, "Relu", "head", "x", "h");
    gb_node(&b, "Add", "a", "h,v2", "v1");
    gb_node(&b, "Relu", "b", "v1", "v2");
    gb_node(&b, "Relu", "tail", "v2", "y");
    gb_output(&b, "y");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "graph has a cycle through");
    ir_graph *g = NULL;
    mha_error err;
    gb_load(&b, NULL, &g, &err);
    /* the node named is on the cycle, not the one downstream of it */
    assert_true(strstr(err.message, "node 'a'") || strstr(err.message, "node 'b'"));
    /* a node reading its own output */
    b = gb_new(17);
    gb_input(&b, "x", 1, 2, dims23);
    gb_node(&b, "Add", "self", "x,s", "s");
    gb_output(&b, "s");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "cycle through Add node 'self'");

    /* the default domain imported twice (as '' and as 'ai.onnx'): at two
     * versions refused (the first was overridden by the last, in silence);
     * at one version only redundant */
    for (int same = 0; same < 2; same++) {
        b = base_model();
        Onnx__OperatorSetIdProto *again = ta(sizeof *again);
        onnx__operator_set_id_proto__init(again);
        again->domain = ts("ai.onnx");
        again->has_version = 1;
        again->version = same ? 17 : 23;
        Onnx__OperatorSetIdProto **two = ta(2 * sizeof *two);
        two[0] = b.m->opset_import[0];
        two[1] = again;
        b.m->opset_import = two;
        b.m->n_opset_import = 2;
        if (!same) {
            expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT,
                        "imports domain 'ai.onnx' twice, as opset 17 and 23");
        } else {
            assert_int_equal(gb_load(&b, NULL, &g, &err), MHA_OK);
            assert_int_equal(g->opset, 17);
            ir_free(g);
        }
    }

    /* an input nobody defines */
    b = base_model();
    b.g->node[1]->input[1] = ts("nope");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT,
                "Add node 'add': input 1 'nope' is not defined by any graph input");

    /* defined twice */
    b = base_model();
    gb_node(&b, "Relu", "again", "x", "r");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT,
                "value 'r' is defined twice: by an output of Relu node 'relu' and by Relu node "
                "'again'");
    b = base_model();
    gb_node(&b, "Relu", "shadow", "x", "W");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "value 'W' is defined twice: by an initializer");
    b = base_model();
    gb_input(&b, "x", 1, 2, dims23);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "graph input 'x' is declared twice");

    /* graph outputs */
    b = base_model();
    gb_output(&b, "ghost");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "graph output #1 'ghost' is not defined");
    b = base_model();
    b.g->n_output = 0;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "no outputs");

    /* no graph, no opsets */
    b = base_model();
    b.m->graph = NULL;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "the model has no graph");
    b = base_model();
    b.m->n_opset_import = 0;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "imports no operator set");
    b = base_model();
    b.m->has_ir_version = 0;
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "declares no IR version");

    /* unnamed things and unsupported attributes */
    b = base_model();
    b.g->node[0]->op_type = ts("");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "node 'relu' has no op_type");
    b = base_model();
    b.g->initializer[0]->name = ts("");
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "initializer #0 has no name");
    b = base_model();
    Onnx__NodeProto *n = gb_node(&b, "If", "branch", "x", "q");
    Onnx__AttributeProto *a =
        node_attr(n, "then_branch", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
    a->g = ta(sizeof *a->g);
    onnx__graph_proto__init(a->g);
    expect_fail(&b, NULL, MHA_ERR_MODEL_UNSUPPORTED,
                "attribute 'then_branch' of If node 'branch' has type GRAPH");
    b = base_model();
    n = b.g->node[0];
    a = node_attr(n, "k", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a = node_attr(n, "k", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    expect_fail(&b, NULL, MHA_ERR_MODEL_FORMAT, "has attribute 'k' twice");
}

/* ---- allocation failure at every point ---- */

static void fault_inject_load(const char *path) {
    ir_graph *g = NULL;
    mha_error err;
    mha_alloc_fail_at(0, 0);
    assert_int_equal(ir_load_file(NULL, path, NULL, &g, &err), MHA_OK);
    ir_free(g);
    long total = mha_alloc_count(); /* allocations of one load (and free) */
    long failures = 0;
    for (long at = 1;; at++) {
        mha_alloc_fail_at(at, 0);
        mha_error_clear(&err);
        mha_status st = ir_load_file(NULL, path, NULL, &g, &err);
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            ir_free(g);
            break;
        }
        if (st != MHA_ERR_NO_MEMORY) print_error("alloc %ld: %s\n", at, err.message);
        assert_int_equal(st, MHA_ERR_NO_MEMORY);
        assert_null(g);
        failures++;
    }
    if (getenv("MHA_TEST_VERBOSE")) print_message("%s: %ld allocation points\n", path, failures);
    assert_true(failures > 10);
    assert_true(failures <= total);
    /* persistent failure from a few points on */
    for (long at = 1; at < failures; at += 1 + failures / 7) {
        mha_alloc_fail_at(at, 1);
        mha_status st = ir_load_file(NULL, path, NULL, &g, &err);
        mha_alloc_fail_at(0, 0);
        assert_int_equal(st, MHA_ERR_NO_MEMORY);
    }
}

static void test_allocation_failures(void **state) {
    (void)state;
    fault_inject_load(data_path("conformance/mha_self_d16_h1_b1_s1/model.onnx"));
    fault_inject_load(data_path("torch-export/torch_mha_self_d32_h4_b2_s6_op17/model.onnx"));

    /* external data and a sparse initializer under failures too */
    const char *dir = tu_tmpdir("onnx_fault");
    write_floats(tu_path(dir, "w.bin"), 8, vals6, 6);
    gb b = base_model();
    Onnx__TensorProto *w = mk_tensor("W", 1, 2, dims23, NULL, 0);
    tensor_external(w, "w.bin", "8", "24");
    b.g->initializer[0] = w;
    const int64_t dims34[2] = {3, 4};
    const float v[2] = {7, 8};
    const int64_t linear[2] = {1, 10};
    b.g->sparse_initializer[b.g->n_sparse_initializer++] =
        mk_sparse("S", 2, dims34, v, 2, linear, 1);
    size_t size;
    void *buf = gb_pack(&b, &size);
    assert_int_equal(tu_write_file(tu_path(dir, "m.onnx"), buf, size), 0);
    fault_inject_load(tu_path(dir, "m.onnx"));

    /* the TensorProto reader and writer */
    void *pb =
        tu_read_file(data_path("conformance/onnx_attention_3d/test_data_set_0/input_0.pb"), &size);
    for (long at = 1;; at++) {
        tensor *t = NULL;
        char *name = NULL;
        mha_error err;
        mha_alloc_fail_at(at, 0);
        mha_status st = ir_load_tensor_proto(NULL, pb, size, "input_0.pb", &t, &name, &err);
        mha_alloc_fail_at(0, 0);
        if (st != MHA_OK) {
            assert_int_equal(st, MHA_ERR_NO_MEMORY);
            continue;
        }
        void *out = NULL;
        size_t out_size;
        mha_alloc_fail_at(1, 0);
        assert_int_equal(ir_save_tensor_proto(NULL, t, name, &out, &out_size, &err),
                         MHA_ERR_NO_MEMORY);
        mha_alloc_fail_at(0, 0);
        assert_null(out);
        tensor_free(t);
        mha_free(NULL, name);
        break;
    }
    free(pb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_real_model_facts, arena_teardown),
        cmocka_unit_test_teardown(test_model_local_functions, arena_teardown),
        cmocka_unit_test_teardown(test_real_model_details, arena_teardown),
        cmocka_unit_test_teardown(test_every_model_loads, arena_teardown),
        cmocka_unit_test_teardown(test_every_test_data_tensor_loads, arena_teardown),
        cmocka_unit_test_teardown(test_file_errors, arena_teardown),
        cmocka_unit_test_teardown(test_truncated_models, arena_teardown),
        cmocka_unit_test_teardown(test_random_bytes, arena_teardown),
        cmocka_unit_test_teardown(test_not_a_model, arena_teardown),
        cmocka_unit_test_teardown(test_wire_errors, arena_teardown),
        cmocka_unit_test_teardown(test_nesting_limit, arena_teardown),
        cmocka_unit_test_teardown(test_tensor_errors, arena_teardown),
        cmocka_unit_test_teardown(test_tensor_typed_fields, arena_teardown),
        cmocka_unit_test_teardown(test_external_data, arena_teardown),
        cmocka_unit_test_teardown(test_external_data_bounded, arena_teardown),
        cmocka_unit_test_teardown(test_large_file_peak_memory, arena_teardown),
        cmocka_unit_test_teardown(test_large_first_tensor_peak, arena_teardown),
        cmocka_unit_test(test_amplification_limits),
        cmocka_unit_test_teardown(test_sparse_initializers, arena_teardown),
        cmocka_unit_test_teardown(test_graph_structure, arena_teardown),
        cmocka_unit_test_teardown(test_graph_errors, arena_teardown),
        cmocka_unit_test_teardown(test_allocation_failures, arena_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
