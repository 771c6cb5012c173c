/* test_faults_malformed.c -- the error paths of the parsers and validators
 * that neither the module tests nor the fuzz corpora reach (found with
 * tools/coverage.sh): sparse tensors in every malformed shape, attribute
 * kinds the engine refuses, IR-version-1 models, value declarations beyond
 * the rank limit, external data in a folder that cannot be opened, and the
 * argument checks of the .npy writer and the TensorProto serializer.
 *
 * Each case builds its input here (protobuf-c structs packed to bytes, or a
 * direct call), expects one status and a message naming the culprit, and
 * runs under LeakSanitizer in the ASan build like every unit test. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx_load_internal.h"
#include "tensorfile.h"

static mha_alloc_ctx alloc;

/* ------------------------------------------------------------------------ */
/* building models                                                           */
/* ------------------------------------------------------------------------ */

/* A graph Identity(X) -> Y with X a float32 [4] input, to which a case adds
 * what it tests. */
typedef struct model_parts {
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
    Onnx__NodeProto node;
    Onnx__NodeProto *nodes[1];
    char *node_in[1], *node_out[1];
    Onnx__ValueInfoProto x, y;
    Onnx__ValueInfoProto *inputs[1], *outputs[1];
    Onnx__TypeProto x_type;
    Onnx__TypeProto__Tensor x_tensor;
    Onnx__TensorShapeProto x_shape;
    Onnx__TensorShapeProto__Dimension x_dim0;
    Onnx__TensorShapeProto__Dimension *x_dims[1];
} model_parts;

static void model_init(model_parts *p) {
    memset(p, 0, sizeof *p);
    onnx__model_proto__init(&p->model);
    onnx__graph_proto__init(&p->graph);
    onnx__operator_set_id_proto__init(&p->opset);
    onnx__node_proto__init(&p->node);
    onnx__value_info_proto__init(&p->x);
    onnx__value_info_proto__init(&p->y);
    onnx__type_proto__init(&p->x_type);
    onnx__type_proto__tensor__init(&p->x_tensor);
    onnx__tensor_shape_proto__init(&p->x_shape);
    onnx__tensor_shape_proto__dimension__init(&p->x_dim0);
    p->opset.domain = "";
    p->opset.has_version = 1;
    p->opset.version = 17;
    p->opsets[0] = &p->opset;
    p->model.has_ir_version = 1;
    p->model.ir_version = 8;
    p->model.n_opset_import = 1;
    p->model.opset_import = p->opsets;
    p->model.graph = &p->graph;
    p->node_in[0] = "X";
    p->node_out[0] = "Y";
    p->node.op_type = "Identity";
    p->node.name = "id";
    p->node.n_input = 1;
    p->node.input = p->node_in;
    p->node.n_output = 1;
    p->node.output = p->node_out;
    p->nodes[0] = &p->node;
    p->graph.n_node = 1;
    p->graph.node = p->nodes;
    p->x_dim0.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    p->x_dim0.dim_value = 4;
    p->x_dims[0] = &p->x_dim0;
    p->x_shape.n_dim = 1;
    p->x_shape.dim = p->x_dims;
    p->x_tensor.has_elem_type = 1;
    p->x_tensor.elem_type = MHA_DTYPE_FLOAT32;
    p->x_tensor.shape = &p->x_shape;
    p->x_type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    p->x_type.tensor_type = &p->x_tensor;
    p->x.name = "X";
    p->x.type = &p->x_type;
    p->y.name = "Y";
    p->inputs[0] = &p->x;
    p->outputs[0] = &p->y;
    p->graph.n_input = 1;
    p->graph.input = p->inputs;
    p->graph.n_output = 1;
    p->graph.output = p->outputs;
}

/* Packs the model and loads it from memory (base_dir as given, max_bytes
 * 0 = default). */
static mha_status model_load(const model_parts *p, const char *base_dir, uint64_t max_bytes,
                             ir_graph **g, mha_error *err) {
    size_t n = onnx__model_proto__get_packed_size(&p->model);
    unsigned char *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    assert_int_equal(onnx__model_proto__pack(&p->model, buf), n);
    ir_load_options o;
    memset(&o, 0, sizeof o);
    o.max_file_bytes = max_bytes;
    mha_error_clear(err);
    *g = NULL;
    mha_status st = ir_load_memory(&alloc, buf, n, base_dir, &o, g, err);
    free(buf);
    if (st != MHA_OK) assert_null(*g);
    return st;
}

static void expect_refused(const model_parts *p, mha_status want, const char *needle) {
    ir_graph *g;
    mha_error err;
    mha_status st = model_load(p, NULL, 1 << 20, &g, &err);
    if (st != want || !strstr(err.message, needle))
        fail_msg("expected %s with '%s', got %s: %s", mha_status_name(want), needle,
                 mha_status_name(st), err.message);
    ir_free(g);
}

/* A float32 or int64 TensorProto with inline data. */
static void tensor_init(Onnx__TensorProto *t, const char *name, int32_t dtype, size_t rank,
                        int64_t *dims, void *data, size_t bytes) {
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = rank;
    t->dims = dims;
    t->has_raw_data = 1;
    t->raw_data.data = data;
    t->raw_data.len = bytes;
}

/* ------------------------------------------------------------------------ */
/* sparse tensors                                                            */
/* ------------------------------------------------------------------------ */

typedef struct sparse_case {
    model_parts p;
    Onnx__SparseTensorProto sp;
    Onnx__SparseTensorProto *sps[1];
    Onnx__TensorProto values, indices;
    int64_t dense_dims[MHA_MAX_RANK + 1];
    int64_t values_dims[2];
    int64_t indices_dims[2];
    float values_data[3];
    int64_t indices_data[6];
} sparse_case;

/* A valid sparse initializer S: dense [2, 3] float32 with 3 values at
 * linear positions 0, 4, 5 (a graph initializer no node reads). */
static void sparse_init(sparse_case *c) {
    memset(c, 0, sizeof *c);
    model_init(&c->p);
    onnx__sparse_tensor_proto__init(&c->sp);
    c->values_data[0] = 1.0f;
    c->values_data[1] = 2.0f;
    c->values_data[2] = 3.0f;
    c->indices_data[0] = 0;
    c->indices_data[1] = 4;
    c->indices_data[2] = 5;
    c->values_dims[0] = 3;
    c->indices_dims[0] = 3;
    tensor_init(&c->values, "S", MHA_DTYPE_FLOAT32, 1, c->values_dims, c->values_data,
                3 * sizeof(float));
    tensor_init(&c->indices, "", MHA_DTYPE_INT64, 1, c->indices_dims, c->indices_data,
                3 * sizeof(int64_t));
    c->dense_dims[0] = 2;
    c->dense_dims[1] = 3;
    c->sp.values = &c->values;
    c->sp.indices = &c->indices;
    c->sp.n_dims = 2;
    c->sp.dims = c->dense_dims;
    c->sps[0] = &c->sp;
    c->p.graph.n_sparse_initializer = 1;
    c->p.graph.sparse_initializer = c->sps;
}

static const tensor *initializer(const ir_graph *g, const char *name) {
    for (size_t v = 0; v < g->n_values; v++)
        if (strcmp(g->values[v].name, name) == 0) return g->values[v].init;
    return NULL;
}

static void test_sparse_valid(void **state) {
    (void)state;
    sparse_case c;
    static const float want[6] = {1, 0, 0, 0, 2, 3};
    for (int coords = 0; coords <= 1; coords++) {
        sparse_init(&c);
        if (coords) { /* the same positions as [NNZ, rank] coordinates */
            int64_t co[6] = {0, 0, 1, 1, 1, 2};
            memcpy(c.indices_data, co, sizeof co);
            c.indices_dims[1] = 2;
            c.indices.n_dims = 2;
            c.indices.raw_data.len = 6 * sizeof(int64_t);
        }
        ir_graph *g;
        mha_error err;
        assert_int_equal(model_load(&c.p, NULL, 0, &g, &err), MHA_OK);
        const tensor *t = initializer(g, "S");
        assert_non_null(t);
        assert_int_equal(t->rank, 2);
        assert_memory_equal(t->data, want, sizeof want);
        ir_free(g);
    }
}

static void test_sparse_refused(void **state) {
    (void)state;
    sparse_case c;

    sparse_init(&c);
    c.sp.values = NULL; /* an initializer is named by its values */
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "has no name");
    sparse_init(&c);
    c.sp.indices = NULL;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "sparse tensor without indices");

    sparse_init(&c);
    c.sp.n_dims = MHA_MAX_RANK + 1;
    for (int i = 0; i <= MHA_MAX_RANK; i++)
        c.dense_dims[i] = 1;
    expect_refused(&c.p, MHA_ERR_LIMIT, "rank 9 exceeds");
    sparse_init(&c);
    c.dense_dims[1] = -3;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "negative dimension -3");
    sparse_init(&c);
    c.dense_dims[0] = INT64_MAX / 2;
    c.dense_dims[1] = 3;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "element count overflows");
    /* the count fits in int64, its bytes do not fit in size_t */
    sparse_init(&c);
    c.sp.n_dims = 1;
    c.dense_dims[0] = INT64_MAX;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "byte size overflows");
    /* a few bytes of sparse data must not densify past the limit */
    sparse_init(&c);
    c.dense_dims[0] = 1 << 20;
    c.dense_dims[1] = 1 << 10;
    expect_refused(&c.p, MHA_ERR_LIMIT, "densifies to");

    sparse_init(&c);
    c.values.data_type = 8; /* string */
    expect_refused(&c.p, MHA_ERR_DTYPE, "values");
    sparse_init(&c);
    c.indices.data_type = 8;
    expect_refused(&c.p, MHA_ERR_DTYPE, "indices");
    sparse_init(&c);
    c.values.n_dims = 2; /* [3, 1] */
    c.values_dims[1] = 1;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "values must be 1-D");
    sparse_init(&c);
    c.indices.data_type = MHA_DTYPE_FLOAT64;
    expect_refused(&c.p, MHA_ERR_DTYPE, "indices must be int64");
    sparse_init(&c);
    c.indices_dims[0] = 1;
    c.indices.raw_data.len = sizeof(int64_t);
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "fit neither");
    sparse_init(&c);
    c.indices_data[2] = 6;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "index 6 of value 2 is out of range");
    sparse_init(&c);
    c.indices_data[1] = -1;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "out of range");
    sparse_init(&c);
    {
        int64_t co[6] = {0, 0, 1, 3, 1, 2}; /* column 3 of 3 */
        memcpy(c.indices_data, co, sizeof co);
        c.indices_dims[1] = 2;
        c.indices.n_dims = 2;
        c.indices.raw_data.len = sizeof co;
    }
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "coordinate 3 on axis 1");
}

/* A Constant node whose value is a sparse tensor attribute. */
static void test_sparse_attribute(void **state) {
    (void)state;
    sparse_case c;
    sparse_init(&c);
    c.p.graph.n_sparse_initializer = 0;
    Onnx__AttributeProto at;
    onnx__attribute_proto__init(&at);
    at.name = "sparse_value";
    at.sparse_tensor = &c.sp; /* no type: inferred, as IR version 1 files do */
    Onnx__AttributeProto *ats[1] = {&at};
    Onnx__NodeProto k;
    onnx__node_proto__init(&k);
    char *kout[1] = {"K"};
    k.op_type = "Constant";
    k.n_output = 1;
    k.output = kout;
    k.n_attribute = 1;
    k.attribute = ats;
    Onnx__NodeProto *nodes[2] = {&k, &c.p.node};
    c.p.graph.n_node = 2;
    c.p.graph.node = nodes;
    ir_graph *g;
    mha_error err;
    assert_int_equal(model_load(&c.p, NULL, 0, &g, &err), MHA_OK);
    const ir_attr *a = NULL;
    for (size_t i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].op_type, "Constant") == 0)
            a = ir_node_attr(&g->nodes[i], "sparse_value");
    assert_non_null(a);
    assert_int_equal(a->type, IR_ATTR_TENSOR);
    assert_int_equal(tensor_numel(a->t), 6);
    ir_free(g);

    /* a broken one names the attribute and the node */
    c.indices_data[0] = 99;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "attribute 'sparse_value' of Constant");
    c.indices_data[0] = 0;
    c.sp.values = NULL;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "sparse tensor without values");
    c.sp.values = &c.values;
    at.sparse_tensor = NULL;
    at.has_type = 1;
    at.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "SPARSE_TENSOR attribute without a tensor");
    at.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    expect_refused(&c.p, MHA_ERR_MODEL_FORMAT, "TENSOR attribute without a tensor");
}

/* ------------------------------------------------------------------------ */
/* attributes, opsets, declarations                                          */
/* ------------------------------------------------------------------------ */

static void test_attribute_kinds(void **state) {
    (void)state;
    model_parts p;
    model_init(&p);
    Onnx__AttributeProto at;
    onnx__attribute_proto__init(&at);
    at.name = "a";
    Onnx__AttributeProto *ats[1] = {&at};
    p.node.n_attribute = 1;
    p.node.attribute = ats;

    /* the kinds the engine has no use for are refused by name */
    static const struct {
        int type;
        const char *name;
    } refused[] = {
        {ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH, "GRAPH"},
        {ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS, "GRAPHS"},
        {ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS, "TENSORS"},
        {ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSORS, "SPARSE_TENSORS"},
        {ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTO, "TYPE_PROTO"},
        {ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTOS, "TYPE_PROTOS"},
        {ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED, "UNDEFINED"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        at.has_type = 1;
        at.type = (Onnx__AttributeProto__AttributeType)refused[i].type;
        char needle[64];
        snprintf(needle, sizeof needle, "has type %s,", refused[i].name);
        expect_refused(&p, MHA_ERR_MODEL_UNSUPPORTED, needle);
    }
    /* no type field (IR version 1): inferred from the field that is set; a
     * subgraph is refused as GRAPH, nothing set as UNDEFINED */
    at.has_type = 0;
    Onnx__GraphProto sub;
    onnx__graph_proto__init(&sub);
    at.g = &sub;
    expect_refused(&p, MHA_ERR_MODEL_UNSUPPORTED, "has type GRAPH");
    at.g = NULL;
    expect_refused(&p, MHA_ERR_MODEL_UNSUPPORTED, "has type UNDEFINED");

    /* a STRING attribute read as a number gives the default */
    at.has_s = 1;
    at.s.data = (uint8_t *)"text";
    at.s.len = 4;
    ir_graph *g;
    mha_error err;
    assert_int_equal(model_load(&p, NULL, 0, &g, &err), MHA_OK);
    assert_true(ir_attr_float(&g->nodes[0], "a", 2.5f) == 2.5f);
    assert_int_equal(ir_attr_int(&g->nodes[0], "a", 7), 7);
    assert_string_equal(ir_node_attr(&g->nodes[0], "a")->s, "text");
    ir_free(g);
}

static void test_opsets(void **state) {
    (void)state;
    model_parts p;
    model_init(&p);
    /* IR version 1 and 2 files predate opset_import: opset 1, older than
     * any opset the interpreter implements */
    p.model.n_opset_import = 0;
    p.model.ir_version = 2;
    expect_refused(&p, MHA_ERR_MODEL_UNSUPPORTED, "imports opset 1 of the default ONNX domain");
    p.model.ir_version = 3;
    expect_refused(&p, MHA_ERR_MODEL_FORMAT, "imports no operator set");
    /* a version that is not positive */
    p.model.n_opset_import = 1;
    p.opset.version = 0;
    expect_refused(&p, MHA_ERR_MODEL_FORMAT, "has no valid version");
    p.opset.domain = "com.microsoft";
    p.opset.has_version = 0;
    expect_refused(&p, MHA_ERR_MODEL_FORMAT, "domain 'com.microsoft' has no valid version");
}

/* Opset and IR versions outside what the engine implements are refused with
 * the range it supports; the ends of the range load. */
static void test_version_range(void **state) {
    (void)state;
    model_parts p;
    model_init(&p);
    static const int64_t bad_opsets[] = {1, 7, 8, 26, 99, 1000000000, INT64_MAX};
    for (size_t i = 0; i < sizeof bad_opsets / sizeof bad_opsets[0]; i++) {
        p.opset.version = bad_opsets[i];
        char want[96];
        snprintf(want, sizeof want,
                 "imports opset %lld of the default ONNX domain; this engine "
                 "supports opsets 9 to 25",
                 (long long)bad_opsets[i]);
        expect_refused(&p, MHA_ERR_MODEL_UNSUPPORTED, want);
    }
    static const int64_t good_opsets[] = {9, 17, 25};
    for (size_t i = 0; i < sizeof good_opsets / sizeof good_opsets[0]; i++) {
        p.opset.version = good_opsets[i];
        ir_graph *g;
        mha_error err;
        assert_int_equal(model_load(&p, NULL, 0, &g, &err), MHA_OK);
        assert_int_equal(g->opset, good_opsets[i]);
        ir_free(g);
    }
    p.opset.version = 17;
    static const int64_t bad_ir[] = {14, 999, -1, 0};
    for (size_t i = 0; i < sizeof bad_ir / sizeof bad_ir[0]; i++) {
        p.model.ir_version = bad_ir[i];
        char want[64];
        snprintf(want, sizeof want, "IR version %lld is not supported", (long long)bad_ir[i]);
        expect_refused(&p, MHA_ERR_MODEL_UNSUPPORTED, want);
    }
    p.model.ir_version = 13;
    ir_graph *g;
    mha_error err;
    assert_int_equal(model_load(&p, NULL, 0, &g, &err), MHA_OK);
    ir_free(g);
    /* com.microsoft has only version 1 */
    p.model.ir_version = 8;
    p.opset.domain = "com.microsoft";
    p.opset.version = 2;
    expect_refused(&p, MHA_ERR_MODEL_UNSUPPORTED, "opset 2 of domain 'com.microsoft'");
}

static void test_declared_rank(void **state) {
    (void)state;
    model_parts p;
    model_init(&p);
    Onnx__TensorShapeProto__Dimension d[MHA_MAX_RANK + 1];
    Onnx__TensorShapeProto__Dimension *dp[MHA_MAX_RANK + 1];
    for (int i = 0; i <= MHA_MAX_RANK; i++) {
        onnx__tensor_shape_proto__dimension__init(&d[i]);
        d[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        d[i].dim_value = 1;
        dp[i] = &d[i];
    }
    Onnx__TensorShapeProto shape;
    onnx__tensor_shape_proto__init(&shape);
    shape.n_dim = MHA_MAX_RANK + 1;
    shape.dim = dp;
    Onnx__TypeProto__Tensor tt;
    onnx__type_proto__tensor__init(&tt);
    tt.has_elem_type = 1;
    tt.elem_type = MHA_DTYPE_FLOAT32;
    tt.shape = &shape;
    Onnx__TypeProto type;
    onnx__type_proto__init(&type);
    type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type.tensor_type = &tt;

    /* an intermediate value declared with rank 9: left unknown */
    Onnx__ValueInfoProto vi;
    onnx__value_info_proto__init(&vi);
    vi.name = "Y";
    vi.type = &type;
    Onnx__ValueInfoProto *vis[1] = {&vi};
    p.graph.n_value_info = 1;
    p.graph.value_info = vis;
    ir_graph *g;
    mha_error err;
    assert_int_equal(model_load(&p, NULL, 0, &g, &err), MHA_OK);
    for (size_t v = 0; v < g->n_values; v++)
        if (strcmp(g->values[v].name, "Y") == 0) assert_int_equal(g->values[v].rank, -1);
    ir_free(g);
    /* a graph input declared so is refused */
    p.graph.n_value_info = 0;
    p.x.type = &type;
    expect_refused(&p, MHA_ERR_LIMIT, "declared rank 9 exceeds");
}

/* External data in a folder that cannot be opened. */
static void test_external_folder_missing(void **state) {
    (void)state;
    model_parts p;
    model_init(&p);
    Onnx__StringStringEntryProto loc;
    onnx__string_string_entry_proto__init(&loc);
    loc.key = "location";
    loc.value = "w.bin";
    Onnx__StringStringEntryProto *kv[1] = {&loc};
    Onnx__TensorProto w;
    int64_t dims[1] = {4};
    tensor_init(&w, "W", MHA_DTYPE_FLOAT32, 1, dims, NULL, 0);
    w.has_raw_data = 0;
    w.n_external_data = 1;
    w.external_data = kv;
    w.has_data_location = 1;
    w.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    Onnx__TensorProto *inits[1] = {&w};
    p.graph.n_initializer = 1;
    p.graph.initializer = inits;
    ir_graph *g;
    mha_error err;
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/no-such-folder", tu_tmpdir("faults_malformed_ext"));
    assert_int_equal(model_load(&p, missing, 0, &g, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "cannot open the model folder"));
    assert_non_null(strstr(err.message, "no-such-folder"));
}

/* A model file given as a bare name resolves external data in ".". */
static void test_model_path_without_folder(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("faults_malformed_cwd");
    char src[1024];
    snprintf(src, sizeof src, "%s/conformance/mha_self_d16_h1_b1_s1/model.onnx", MHA_TEST_DATA);
    size_t n = 0;
    void *bytes = tu_read_file(src, &n);
    assert_non_null(bytes);
    assert_int_equal(tu_write_file(tu_path(dir, "m.onnx"), bytes, n), 0);
    free(bytes);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    ir_graph *g = NULL;
    mha_error err;
    mha_status st = ir_load_file(&alloc, "m.onnx", NULL, &g, &err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(st, MHA_OK);
    ir_free(g);
    /* and a model over the size limit is refused before it is read */
    ir_load_options o;
    memset(&o, 0, sizeof o);
    o.max_file_bytes = 64;
    assert_int_equal(ir_load_file(&alloc, src, &o, &g, &err), MHA_ERR_LIMIT);
    assert_non_null(strstr(err.message, "exceeds the limit"));
}

/* ------------------------------------------------------------------------ */
/* writers: argument checks                                                  */
/* ------------------------------------------------------------------------ */

static void test_npy_writer_arguments(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("faults_malformed_npy");
    const char *path = tu_path(dir, "w.npy");
    npy_writer *w = NULL;
    mha_error err;
    int64_t dims[MHA_MAX_RANK + 1] = {2, 3};
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_BFLOAT16, 2, dims, &w, &err),
                     MHA_ERR_DTYPE);
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, -1, dims, &w, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, MHA_MAX_RANK + 1, dims, &w, &err),
        MHA_ERR_INVALID_ARGUMENT);
    dims[1] = -3;
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT32, 2, dims, &w, &err),
                     MHA_ERR_SHAPE);
    dims[1] = INT64_MAX / 2; /* a row that does not fit in size_t bytes */
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT64, 2, dims, &w, &err),
                     MHA_ERR_LIMIT);
    dims[0] = INT64_MAX / 4; /* rows x row bytes overflows */
    dims[1] = 16;
    assert_int_equal(npy_writer_begin(&alloc, path, MHA_DTYPE_FLOAT64, 2, dims, &w, &err),
                     MHA_ERR_LIMIT);
    assert_null(w);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(tu_system("ls -A '%s' | grep -q .", dir), 1);

    /* a header for a shape too long for the buffer */
    unsigned char head[64];
    int64_t d2[2] = {2, 3};
    assert_int_equal(npy_format_header(MHA_DTYPE_FLOAT32, 2, d2, head, sizeof head), 0);
    assert_int_equal(npy_format_header(MHA_DTYPE_BFLOAT16, 2, d2, head, sizeof head), 0);
    /* a header over 64 KiB needs version 2.0: not with 8 dims, so no case */
}

static void test_tensorfile_write_arguments(void **state) {
    (void)state;
    const char *dir = tu_tmpdir("faults_malformed_tf");
    float x[4] = {0};
    mha_error err;
    mha_tensor t = {MHA_DTYPE_FLOAT32, 1, {-4}, x};
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "a.npy"), &t, "", &err),
                     MHA_ERR_INVALID_ARGUMENT);
    t.shape[0] = 4;
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "a.txt"), &t, "", &err),
                     MHA_ERR_INVALID_ARGUMENT);
    t.dtype = MHA_DTYPE_BFLOAT16;
    assert_int_equal(tensorfile_write(&alloc, tu_path(dir, "a.npy"), &t, "", &err), MHA_ERR_DTYPE);
    assert_int_equal(tu_system("ls -A '%s' | grep -q .", dir), 1);

    /* reading a folder or a missing file */
    tensorfile *tf = NULL;
    assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "missing.pb"), NULL, &tf, &err),
                     MHA_ERR_IO);
    assert_int_equal(mkdir(tu_path(dir, "d.pb"), 0755), 0);
    assert_int_equal(tensorfile_read(&alloc, tu_path(dir, "d.pb"), NULL, &tf, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "not a regular file"));
    assert_null(tf);
}

static void test_save_tensor_proto_arguments(void **state) {
    (void)state;
    float x[6] = {0};
    tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = MHA_DTYPE_FLOAT32;
    t.rank = 2;
    t.dims[0] = 2;
    t.dims[1] = 3;
    t.data = x;
    t.nbytes = sizeof x;
    void *buf = NULL;
    size_t n = 0;
    mha_error err;
    t.dtype = (mha_dtype)8; /* string: no element size */
    assert_int_equal(ir_save_tensor_proto(&alloc, &t, "t", &buf, &n, &err), MHA_ERR_DTYPE);
    t.dtype = MHA_DTYPE_FLOAT32;
    t.rank = MHA_MAX_RANK + 1;
    assert_int_equal(ir_save_tensor_proto(&alloc, &t, "t", &buf, &n, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    t.rank = 2;
    t.dims[1] = -3;
    assert_int_equal(ir_save_tensor_proto(&alloc, &t, "t", &buf, &n, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    t.dims[1] = 3;
    t.nbytes = 5;
    assert_int_equal(ir_save_tensor_proto(&alloc, &t, NULL, &buf, &n, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_null(buf);
    /* a tensor above protobuf's 2 GiB field limit (never touched) */
    t.dims[0] = (int64_t)1 << 30;
    t.nbytes = ((size_t)1 << 30) * 3 * sizeof(float);
    assert_int_equal(ir_save_tensor_proto(&alloc, &t, "big", &buf, &n, &err), MHA_ERR_LIMIT);
    assert_null(buf);
}

int main(void) {
    mha_alloc_ctx_init(&alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparse_valid),
        cmocka_unit_test(test_sparse_refused),
        cmocka_unit_test(test_sparse_attribute),
        cmocka_unit_test(test_attribute_kinds),
        cmocka_unit_test(test_opsets),
        cmocka_unit_test(test_version_range),
        cmocka_unit_test(test_declared_rank),
        cmocka_unit_test(test_external_folder_missing),
        cmocka_unit_test(test_model_path_without_folder),
        cmocka_unit_test(test_npy_writer_arguments),
        cmocka_unit_test(test_tensorfile_write_arguments),
        cmocka_unit_test(test_save_tensor_proto_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
