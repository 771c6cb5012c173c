/* test_model.c -- the mha_model API (model.c, model_load.c) and the run path
 * of runtime.c: conformance and PyTorch-export models load with the right
 * facts, run through a runtime to the expected outputs, share one packed
 * weight set per backend, and every misuse gets a clear status. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "onnx_ir.h"

typedef struct case_data {
    mha_tensor in[8];
    size_t n_in;
    mha_tensor want;
    tensor *owned[9];
    size_t n_owned;
} case_data;

static tensor *load_pb(const char *path) {
    size_t size = 0;
    void *bytes = tu_read_file(path, &size);
    if (!bytes) return NULL;
    tensor *t = NULL;
    mha_status st = ir_load_tensor_proto(NULL, bytes, size, path, &t, NULL, NULL);
    free(bytes);
    return st == MHA_OK ? t : NULL;
}

static void as_mha_tensor(const tensor *t, mha_tensor *out) {
    memset(out, 0, sizeof *out);
    out->dtype = t->dtype;
    out->rank = t->rank;
    for (int i = 0; i < t->rank; i++)
        out->shape[i] = t->dims[i];
    out->data = t->data;
}

/* Reads <dir>/test_data_set_0/input_<i>.pb (n of them) and output_0.pb. */
static void case_load(const char *dir, size_t n_in, case_data *c) {
    memset(c, 0, sizeof *c);
    char path[1024];
    for (size_t i = 0; i < n_in; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%zu.pb", dir, i);
        tensor *t = load_pb(path);
        if (!t) fail_msg("cannot read %s", path);
        c->owned[c->n_owned++] = t;
        as_mha_tensor(t, &c->in[i]);
    }
    c->n_in = n_in;
    snprintf(path, sizeof path, "%s/test_data_set_0/output_0.pb", dir);
    tensor *t = load_pb(path);
    if (!t) fail_msg("cannot read %s", path);
    c->owned[c->n_owned++] = t;
    as_mha_tensor(t, &c->want);
}

static void case_free(case_data *c) {
    for (size_t i = 0; i < c->n_owned; i++)
        tensor_free(c->owned[i]);
}

static const char *data_path(const char *rel) {
    static char buf[4][1024];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 1024, "%s/%s", MHA_TEST_DATA, rel);
    return p;
}

static mha_runtime *runtime_new(const char *backend, int threads) {
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.backend = backend;
    o.num_threads = threads;
    o.no_env = 1;
    o.plugin_path = MHA_PLUGIN_BUILD_DIR;
    mha_runtime *rt = NULL;
    mha_error err = {0};
    if (mha_runtime_create(&o, &rt, &err) != MHA_OK) fail_msg("runtime: %s", err.message);
    return rt;
}

/* Runs model on the case's inputs and compares with the expected output. */
static void run_and_compare(mha_runtime *rt, mha_model *m, case_data *c, double tol) {
    mha_tensor out;
    mha_error err = {0};
    if (mha_model_output_shapes(m, c->in, c->n_in, &out, 1, &err) != MHA_OK)
        fail_msg("output shapes: %s", err.message);
    assert_int_equal(out.rank, c->want.rank);
    for (int i = 0; i < out.rank; i++)
        assert_int_equal(out.shape[i], c->want.shape[i]);
    int64_t n = mha_tensor_numel(&out);
    out.data = malloc((size_t)n * sizeof(float));
    if (mha_run(rt, m, c->in, c->n_in, &out, 1, NULL, &err) != MHA_OK)
        fail_msg("run: %s", err.message);
    double e = tu_max_rel_err(out.data, c->want.data, (size_t)n);
    if (!(e <= tol)) fail_msg("max rel err %g > %g", e, tol);
    free(out.data);
}

typedef struct expect {
    const char *dir;
    const char *form;
    int has_proj, cross, causal, kpm_ignore;
    int64_t d_model, q_heads, kv_heads, d_head;
    size_t n_in;
    mha_io_role roles[4];
} expect;

static const expect cases[] = {
    {"conformance/mha_self_d32_h2_b2_s8",
     "onnx-attention-layer",
     1,
     0,
     0,
     0,
     32,
     2,
     2,
     16,
     1,
     {MHA_ROLE_QUERY}},
    {"conformance/mha_causal_d16_h2_b4_s64",
     "onnx-attention-layer",
     1,
     0,
     1,
     0,
     16,
     2,
     2,
     8,
     1,
     {MHA_ROLE_QUERY}},
    {"conformance/mha_gqa_causal_d64_h8_kv2_b1_s20",
     "onnx-attention-layer",
     1,
     0,
     1,
     0,
     64,
     8,
     2,
     8,
     1,
     {MHA_ROLE_QUERY}},
    {"conformance/mha_cross_padmask_d32_h4_b2_q6_kv9",
     "onnx-attention-layer",
     1,
     1,
     0,
     0,
     32,
     4,
     4,
     8,
     3,
     {MHA_ROLE_QUERY, MHA_ROLE_KEY_VALUE, MHA_ROLE_ATTN_MASK}},
    {"torch-export/torch_mha_keypad_d16_h2_b2_s5",
     "torch-mha",
     1,
     0,
     0,
     1,
     16,
     2,
     2,
     8,
     2,
     {MHA_ROLE_QUERY, MHA_ROLE_KEY_PADDING_MASK}},
    {"torch-export/torch_mha_cross_d16_h2_b1_q3_kv8",
     "torch-mha",
     1,
     1,
     0,
     0,
     16,
     2,
     2,
     8,
     2,
     {MHA_ROLE_QUERY, MHA_ROLE_KEY_VALUE}},
    {"torch-export/torch_mha_self_d24_h2_b1_s11_causal_op14",
     "torch-mha",
     1,
     0,
     1,
     0,
     24,
     2,
     2,
     12,
     1,
     {MHA_ROLE_QUERY}},
    {"conformance/onnx_attention_4d_gqa_causal",
     "onnx-attention",
     0,
     0,
     1,
     0,
     0,
     9,
     3,
     8,
     3,
     {MHA_ROLE_Q, MHA_ROLE_K, MHA_ROLE_V}},
    {"conformance/onnx_attention_3d_attn_mask",
     "onnx-attention",
     0,
     0,
     0,
     0,
     0,
     3,
     3,
     8,
     4,
     {MHA_ROLE_Q, MHA_ROLE_K, MHA_ROLE_V, MHA_ROLE_ATTN_MASK}},
};

static void test_load_info_and_run(void **state) {
    (void)state;
    mha_runtime *rt = runtime_new("scalar", 3);
    mha_runtime *rt_auto = runtime_new(NULL, 2);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const expect *x = &cases[k];
        char path[1024];
        snprintf(path, sizeof path, "%s/model.onnx", data_path(x->dir));
        mha_model *m = NULL;
        mha_error err = {0};
        if (mha_model_load_file(path, NULL, &m, &err) != MHA_OK)
            fail_msg("%s: %s", x->dir, err.message);
        mha_model_info info;
        assert_int_equal(mha_model_get_info(m, &info), MHA_OK);
        assert_string_equal(info.form, x->form);
        assert_int_equal(info.has_projections, x->has_proj);
        assert_int_equal(info.cross, x->cross);
        assert_int_equal(info.causal, x->causal);
        assert_int_equal(info.key_padding_true_means_ignore, x->kpm_ignore);
        assert_int_equal(info.d_model, x->d_model);
        assert_int_equal(info.q_heads, x->q_heads);
        assert_int_equal(info.kv_heads, x->kv_heads);
        assert_int_equal(info.d_head, x->d_head);
        assert_true(fabsf(info.scale - 1.0f / sqrtf((float)x->d_head)) < 1e-6f);
        assert_int_equal(info.num_inputs, x->n_in);
        assert_int_equal(info.num_outputs, 1);
        if (x->has_proj) assert_true(info.weight_bytes > 0);
        for (size_t i = 0; i < x->n_in; i++) {
            mha_io_info io;
            assert_int_equal(mha_model_input(m, i, &io), MHA_OK);
            assert_int_equal(io.role, x->roles[i]);
            assert_non_null(io.name);
        }
        mha_io_info io;
        assert_int_equal(mha_model_input(m, x->n_in, &io), MHA_ERR_INVALID_ARGUMENT);
        assert_int_equal(mha_model_output(m, 0, &io), MHA_OK);
        assert_int_equal(io.role, MHA_ROLE_OUTPUT);
        assert_string_equal(mha_io_role_name(io.role), "output");
        assert_int_equal(mha_model_output(m, 1, &io), MHA_ERR_INVALID_ARGUMENT);

        case_data c;
        case_load(data_path(x->dir), x->n_in, &c);
        run_and_compare(rt, m, &c, 1e-5);
        run_and_compare(rt_auto, m, &c, 1e-4);
        /* one packed weight set per backend, reused by later runs */
        if (x->has_proj) {
            size_t want = strcmp(mha_runtime_backend(rt_auto), "scalar") == 0 ? 1 : 2;
            assert_int_equal(model_pack_count(m), want);
            run_and_compare(rt, m, &c, 1e-5);
            assert_int_equal(model_pack_count(m), want);
        }
        case_free(&c);
        mha_model_free(m);
    }
    mha_runtime_destroy(rt_auto);
    mha_runtime_destroy(rt);
}

/* The same bytes from memory; skip_verify gives the same layer. */
static void test_load_memory_and_options(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/model.onnx",
             data_path("conformance/mha_padmask_d32_h4_b3_s10"));
    size_t size = 0;
    void *bytes = tu_read_file(path, &size);
    assert_non_null(bytes);
    mha_model_options o;
    mha_model_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    o.skip_verify = 1;
    mha_model *m = NULL;
    mha_error err = {0};
    assert_int_equal(mha_model_load_memory(bytes, size, NULL, &o, &m, &err), MHA_OK);
    mha_model_info info;
    assert_int_equal(mha_model_get_info(m, &info), MHA_OK);
    assert_int_equal(info.q_heads, 4);
    mha_runtime *rt = runtime_new("scalar", 2);
    case_data c;
    case_load(data_path("conformance/mha_padmask_d32_h4_b3_s10"), 2, &c);
    run_and_compare(rt, m, &c, 1e-5);
    case_free(&c);
    mha_model_free(m);

    /* misuse */
    o.struct_size = 4;
    assert_int_equal(mha_model_load_memory(bytes, size, NULL, &o, &m, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_null(m);
    assert_non_null(strstr(err.message, "mha_model_options_init"));
    assert_int_equal(mha_model_load_memory(NULL, 10, NULL, NULL, &m, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(mha_model_load_memory(bytes, size, NULL, NULL, NULL, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(mha_model_load_file(NULL, NULL, &m, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(mha_model_load_file("/nonexistent/model.onnx", NULL, &m, &err), MHA_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(err.message, "/nonexistent/model.onnx"));
    const char garbage[] = "this is not an onnx file at all";
    mha_status st = mha_model_load_memory(garbage, sizeof garbage, NULL, NULL, &m, &err);
    assert_true(st == MHA_ERR_MODEL_FORMAT || st == MHA_ERR_MODEL_UNSUPPORTED);
    assert_null(m);
    assert_int_equal(mha_model_get_info(NULL, &info), MHA_ERR_INVALID_ARGUMENT);
    mha_model_free(NULL);
    free(bytes);
    mha_runtime_destroy(rt);
}

/* Run-time misuse: every one a status with a message, nothing written. */
static void test_run_errors(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/model.onnx",
             data_path("conformance/mha_cross_padmask_d32_h4_b2_q6_kv9"));
    mha_model *m = NULL;
    mha_error err = {0};
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    mha_runtime *rt = runtime_new("scalar", 2);
    case_data c;
    case_load(data_path("conformance/mha_cross_padmask_d32_h4_b2_q6_kv9"), 3, &c);
    mha_tensor out;
    assert_int_equal(mha_model_output_shapes(m, c.in, 3, &out, 1, &err), MHA_OK);
    float *y = malloc((size_t)mha_tensor_numel(&out) * sizeof(float));
    out.data = y;

    assert_int_equal(mha_run(NULL, m, c.in, 3, &out, 1, NULL, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(mha_run(rt, NULL, c.in, 3, &out, 1, NULL, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(mha_run(rt, m, c.in, 2, &out, 1, NULL, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(mha_run(rt, m, c.in, 3, &out, 0, NULL, &err), MHA_ERR_INVALID_ARGUMENT);
    /* memory batch 2 vs query batch 1 */
    mha_tensor bad[3];
    memcpy(bad, c.in, sizeof bad);
    bad[0].shape[0] = 1;
    assert_int_equal(mha_run(rt, m, bad, 3, &out, 1, NULL, &err), MHA_ERR_SHAPE);
    assert_non_null(strstr(err.message, "'memory'"));
    memcpy(bad, c.in, sizeof bad);
    bad[2].dtype = MHA_DTYPE_FLOAT32; /* the model declares a bool mask */
    assert_int_equal(mha_run(rt, m, bad, 3, &out, 1, NULL, &err), MHA_ERR_DTYPE);
    memcpy(bad, c.in, sizeof bad);
    bad[2].shape[3] = 4; /* Skv 9 */
    assert_int_equal(mha_model_output_shapes(m, bad, 3, &out, 1, &err), MHA_ERR_SHAPE);
    assert_non_null(strstr(err.message, "broadcast"));
    mha_tensor wrong = out;
    wrong.shape[1] += 1;
    assert_int_equal(mha_run(rt, m, c.in, 3, &wrong, 1, NULL, &err), MHA_ERR_SHAPE);
    /* an output of a rank out of range: named by its rank; the message once
     * showed the "dims" past shape[8] -- the data pointer and the stack
     * beyond the caller's tensor */
    struct {
        mha_tensor t;
        int64_t canary[4];
    } far = {out, {0x5eed5eed, 0x5eed5eed, 0x5eed5eed, 0x5eed5eed}};
    int ranks[] = {9, 1000, -5};
    for (int i = 0; i < 3; i++) {
        far.t.rank = ranks[i];
        assert_int_equal(mha_run(rt, m, c.in, 3, &far.t, 1, NULL, &err), MHA_ERR_SHAPE);
        char want[64];
        snprintf(want, sizeof want, "got float32 of rank %d", ranks[i]);
        assert_non_null(strstr(err.message, want));
        assert_null(strstr(err.message, "1592614637")); /* 0x5eed5eed */
    }
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.struct_size = 0;
    assert_int_equal(mha_run(rt, m, c.in, 3, &out, 1, &ro, &err), MHA_ERR_INVALID_ARGUMENT);
    mha_run_options_init(&ro);
    ro.num_threads = -1;
    assert_int_equal(mha_run(rt, m, c.in, 3, &out, 1, &ro, &err), MHA_ERR_INVALID_ARGUMENT);
    ro.num_threads = 64; /* more than the runtime has: capped */
    assert_int_equal(mha_run(rt, m, c.in, 3, &out, 1, &ro, &err), MHA_OK);
    assert_true(tu_max_rel_err(y, c.want.data, (size_t)mha_tensor_numel(&out)) < 1e-5);
    free(y);
    case_free(&c);
    mha_runtime_destroy(rt);
    mha_model_free(m);
}

/* A bare Attention layer (q, k, v -> y; 2 query heads, 1 key/value head,
 * head size 4) built in memory, as the tools and tests build one. */
static void bare_layer(layer *L) {
    memset(L, 0, sizeof *L);
    L->form = "onnx-attention";
    L->q_heads = 2;
    L->kv_heads = 1;
    L->d_head = 4;
    L->d_head_v = 4;
    L->scale = 0.5f;
    L->qkv_rank = 4;
    L->n_inputs = 3;
    L->inputs = mha_calloc(NULL, 3, sizeof(layer_io));
    const char *names[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        L->inputs[i].name = mha_strdup(NULL, names[i]);
        L->inputs[i].role = (mha_io_role)(MHA_ROLE_Q + i);
        L->inputs[i].dtype = MHA_DTYPE_FLOAT32;
        L->inputs[i].rank = 4;
    }
    L->n_outputs = 1;
    L->outputs = mha_calloc(NULL, 1, sizeof(layer_io));
    L->outputs[0].name = mha_strdup(NULL, "y");
    L->outputs[0].role = MHA_ROLE_OUTPUT;
    L->outputs[0].dtype = MHA_DTYPE_FLOAT32;
    L->outputs[0].rank = 4;
}

/* A model built from a layer in memory (no ONNX file). */
static void test_model_from_layer(void **state) {
    (void)state;
    layer L;
    bare_layer(&L);
    mha_model *m = NULL;
    assert_int_equal(model_create_from_layer(NULL, &L, &m, NULL), MHA_OK);
    assert_null(L.inputs); /* ownership moved */
    mha_model_info info;
    assert_int_equal(mha_model_get_info(m, &info), MHA_OK);
    assert_int_equal(info.weight_bytes, 0);
    assert_int_equal(info.d_model, 0);

    float q[2 * 3 * 4], k[1 * 5 * 4], v[1 * 5 * 4], y[2 * 3 * 4];
    tu_fill_random(q, 24, 1);
    tu_fill_random(k, 20, 2);
    tu_fill_random(v, 20, 3);
    mha_tensor in[3] = {{MHA_DTYPE_FLOAT32, 4, {1, 2, 3, 4}, q},
                        {MHA_DTYPE_FLOAT32, 4, {1, 1, 5, 4}, k},
                        {MHA_DTYPE_FLOAT32, 4, {1, 1, 5, 4}, v}};
    mha_tensor out = {MHA_DTYPE_FLOAT32, 4, {1, 2, 3, 4}, y};
    mha_runtime *rt = runtime_new("scalar", 1);
    mha_error err = {0};
    assert_int_equal(mha_run(rt, m, in, 3, &out, 1, NULL, &err), MHA_OK);
    /* row 0 of head 1 by hand: softmax(0.5 q.k_j) . v_j (GQA: kv head 0) */
    double s[5], mx = -INFINITY, sum = 0;
    for (int j = 0; j < 5; j++) {
        double d = 0;
        for (int t = 0; t < 4; t++)
            d += (double)q[12 + t] * k[j * 4 + t];
        s[j] = 0.5 * d;
        if (s[j] > mx) mx = s[j];
    }
    for (int j = 0; j < 5; j++)
        sum += (s[j] = exp(s[j] - mx));
    for (int t = 0; t < 4; t++) {
        double o = 0;
        for (int j = 0; j < 5; j++)
            o += s[j] / sum * v[j * 4 + t];
        assert_true(fabs(o - y[12 + t]) < 1e-5);
    }
    mha_runtime_destroy(rt);
    mha_model_free(m);
}

/* The input layout is public (mha_model_layout): tools choose how to stream
 * a dataset from it, not from the layer inside. */
static void test_model_layout(void **state) {
    (void)state;
    assert_int_equal(mha_model_layout(NULL), MHA_LAYOUT_BATCH_FIRST);
    for (int seq_first = 0; seq_first < 2; seq_first++) {
        layer L;
        bare_layer(&L);
        L.seq_first = seq_first;
        mha_model *m = NULL;
        assert_int_equal(model_create_from_layer(NULL, &L, &m, NULL), MHA_OK);
        assert_int_equal(mha_model_layout(m),
                         seq_first ? MHA_LAYOUT_SEQ_FIRST : MHA_LAYOUT_BATCH_FIRST);
        mha_model_free(m);
    }
}

static void test_runtime_queries(void **state) {
    (void)state;
    mha_runtime *rt = runtime_new("scalar", 2);
    assert_string_equal(mha_runtime_backend(rt), "scalar");
    assert_int_equal(mha_runtime_num_threads(rt), 2);
    size_t n = mha_runtime_plugin_count(rt);
    assert_true(n >= 1);
    int selected = 0;
    for (size_t i = 0; i < n; i++) {
        mha_plugin_info pi;
        assert_int_equal(mha_runtime_plugin(rt, i, &pi), MHA_OK);
        assert_non_null(pi.path);
        assert_non_null(pi.reason);
        selected += pi.selected;
        if (pi.selected) assert_string_equal(pi.name, "scalar");
    }
    assert_int_equal(selected, 1);
    mha_plugin_info pi;
    assert_int_equal(mha_runtime_plugin(rt, n, &pi), MHA_ERR_INVALID_ARGUMENT);
    assert_true(mha_runtime_cpu_features(rt) != 0);
    mha_runtime_destroy(rt);
    mha_runtime_destroy(NULL);

    /* bad options */
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.num_threads = -2;
    mha_runtime *bad = NULL;
    mha_error err = {0};
    assert_int_equal(mha_runtime_create(&o, &bad, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_null(bad);
    mha_runtime_options_init(&o);
    o.no_env = 1;
    o.backend = "no-such-backend";
    assert_int_equal(mha_runtime_create(&o, &bad, &err), MHA_ERR_BACKEND);
    assert_non_null(strstr(err.message, "no-such-backend"));
    o.struct_size = 8;
    assert_int_equal(mha_runtime_create(&o, &bad, &err), MHA_ERR_INVALID_ARGUMENT);
    /* default thread count: the CPUs this process may use */
    mha_runtime_options_init(&o);
    o.no_env = 1;
    o.backend = "scalar";
    assert_int_equal(mha_runtime_create(&o, &bad, &err), MHA_OK);
    assert_true(mha_runtime_num_threads(bad) >= 1);
    mha_runtime_destroy(bad);
    /* MHA_BACKEND picks the backend when the options do not */
    setenv("MHA_BACKEND", "scalar", 1);
    mha_runtime_options_init(&o);
    o.num_threads = 1;
    assert_int_equal(mha_runtime_create(&o, &bad, &err), MHA_OK);
    assert_string_equal(mha_runtime_backend(bad), "scalar");
    mha_runtime_destroy(bad);
    setenv("MHA_BACKEND", "no-such-backend", 1);
    assert_int_equal(mha_runtime_create(&o, &bad, &err), MHA_ERR_BACKEND);
    o.no_env = 1; /* ignored now */
    assert_int_equal(mha_runtime_create(&o, &bad, &err), MHA_OK);
    mha_runtime_destroy(bad);
    unsetenv("MHA_BACKEND");
}

/* mha_model_idioms names what the recogniser met (issue 14). */
static void test_model_idioms(void **state) {
    (void)state;
    static const struct {
        const char *file, *want;
    } idiom_cases[] = {
        {"recognize/ext_mask_i64.onnx",
         "key padding from an extended mask: m = 0 adds -3.40282e+38"},
        {"recognize/window_mask.onnx", "causal mask with a sliding window of 3 keys"},
        {"recognize/gqa_expand.onnx", "GQA 4 query / 2 key/value heads"},
        {"recognize/const_bias_mask.onnx", "constant position bias [4 heads, 5, 5]"},
        {"recognize/bool_ignore_mask.onnx", "bool attention mask, true = hidden"},
        {"recognize/softmax_casts.onnx", "float32 softmax between Casts"},
        {"recognize/interleaved_heads.onnx", "projection bias on QKV"},
        {"families/gptj_interleaved_op14/model.onnx",
         "rotary embedding (interleaved pairs) on 8 of 16 head dims, the model's cos / sin "
         "tables"},
        {"families/llama_gqa_op14/model.onnx",
         "rotary embedding (rotate-half pairs) on 8 of 8 head dims, angles from the model's "
         "inverse frequencies"},
        {"recognize/alibi_relative.onnx", "ALiBi, slope 0.25 to 0.00390625, slope * (j - i)"},
        {"families/bloom_alibi_op14/model.onnx",
         "ALiBi, slope 0.25 to 0.00390625, slope * key position counted over the unpadded keys"},
    };
    for (size_t i = 0; i < sizeof idiom_cases / sizeof idiom_cases[0]; i++) {
        mha_model *m = NULL;
        mha_error err = {0};
        if (mha_model_load_file(data_path(idiom_cases[i].file), NULL, &m, &err) != MHA_OK)
            fail_msg("%s: %s", idiom_cases[i].file, err.message);
        const char *got = mha_model_idioms(m);
        assert_non_null(got);
        if (!strstr(got, idiom_cases[i].want))
            fail_msg("%s: idioms '%s' lack '%s'", idiom_cases[i].file, got, idiom_cases[i].want);
        mha_model_free(m);
    }
    assert_null(mha_model_idioms(NULL));
}

/* One run of m on the case into a fresh buffer, with run options ro
 * (NULL: defaults); returns the status, *out the output (caller frees). */
static mha_status run_with(mha_runtime *rt, mha_model *m, case_data *c, const mha_run_options *ro,
                           float **out, mha_error *err) {
    mha_tensor y;
    assert_int_equal(mha_model_output_shapes(m, c->in, c->n_in, &y, 1, err), MHA_OK);
    y.data = calloc((size_t)mha_tensor_numel(&y) + 1, sizeof(float));
    *out = y.data;
    return mha_run(rt, m, c->in, c->n_in, &y, 1, ro, err);
}

/* The model.onnx of a case folder, loaded (the test fails if it does not). */
static mha_model *load_dir_model(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    mha_model *m = NULL;
    mha_error err = {0};
    if (mha_model_load_file(path, NULL, &m, &err) != MHA_OK) fail_msg("load: %s", err.message);
    return m;
}

/* ALBERT runs one layer's weights in every layer: the plan's layers and
 * their feed-forward GEMM steps are packed once and shared, so the packed
 * bytes stay near the file's weights (45,952 bytes of initializers; packed
 * per layer they were 112,840), and the outputs are still PyTorch's. */
static void test_albert_packed_once(void **state) {
    (void)state;
    mha_error err = {0};
    const char *dir = data_path("models/z_albert_shared_op14");
    mha_model *m = load_dir_model(dir);
    assert_int_equal(mha_model_num_layers(m), 3);
    case_data c;
    case_load(dir, 3, &c);
    mha_tensor out[2];
    assert_int_equal(mha_model_output_shapes(m, c.in, c.n_in, out, 2, &err), MHA_OK);
    for (int k = 0; k < 2; k++)
        out[k].data = calloc((size_t)mha_tensor_numel(&out[k]), sizeof(float));
    mha_runtime *rt = runtime_new("scalar", 1);
    if (mha_run(rt, m, c.in, c.n_in, out, 2, NULL, &err) != MHA_OK)
        fail_msg("run: %s", err.message);
    const double e = tu_max_rel_err(out[0].data, c.want.data, (size_t)mha_tensor_numel(&out[0]));
    if (!(e <= 1e-4)) fail_msg("max rel err %g", e);
    const size_t packed = model_packed_bytes(m);
    if (!(packed * 5 <= (size_t)45952 * 6))
        fail_msg("packed %zu bytes for 45952 bytes of weights (over 1.2 x)", packed);
    for (int k = 0; k < 2; k++)
        free(out[k].data);
    mha_runtime_destroy(rt);
    case_free(&c);
    mha_model_free(m);
}

/* A whole model without attention (PoolFormer: pooling mixes the tokens)
 * loads as a plan of GEMM, norm and interpreted steps, no layer, and runs
 * to PyTorch's output; a plan without layers reports no layer. */
static void test_plan_without_attention(void **state) {
    (void)state;
    mha_error err = {0};
    const char *dir = data_path("models/z8_poolformer_pool_op14");
    mha_model *m = load_dir_model(dir);
    assert_int_equal(mha_model_num_layers(m), 0);
    assert_true(mha_model_num_steps(m) > 0);
    mha_model_info mi;
    assert_int_equal(mha_model_get_info(m, &mi), MHA_OK);
    assert_string_equal(mi.form, "plan");
    mha_layer_info li;
    assert_int_equal(mha_model_layer(m, 0, &li), MHA_ERR_INVALID_ARGUMENT);
    case_data c;
    case_load(dir, 1, &c);
    mha_tensor out[1];
    assert_int_equal(mha_model_output_shapes(m, c.in, c.n_in, out, 1, &err), MHA_OK);
    out[0].data = calloc((size_t)mha_tensor_numel(&out[0]), sizeof(float));
    mha_runtime *rt = runtime_new("scalar", 1);
    if (mha_run(rt, m, c.in, c.n_in, out, 1, NULL, &err) != MHA_OK)
        fail_msg("run: %s", err.message);
    const double e = tu_max_rel_err(out[0].data, c.want.data, (size_t)mha_tensor_numel(&out[0]));
    if (!(e <= 1e-4)) fail_msg("max rel err %g", e);
    free(out[0].data);
    mha_runtime_destroy(rt);
    case_free(&c);
    mha_model_free(m);
}

/* mha_run_options.precision: float32 (explicit, or a caller built before
 * the field) gives the default's bits; bfloat16 runs on the backends that
 * declare it, differs from float32 within the bench bound 3 * 2^-7, packs
 * its own weights; a backend that does not declare it (avx2) is refused,
 * named; an unknown precision is an argument error. */
static void test_run_precision(void **state) {
    (void)state;
    mha_error err = {0};
    const char *dir = data_path("conformance/mha_self_d32_h2_b2_s8");
    mha_model *m = load_dir_model(dir);
    case_data c;
    case_load(dir, 1, &c);
    const size_t n = (size_t)mha_tensor_numel(&c.want);
    static const char *const names[] = {"scalar", "avx512"};
    for (int b = 0; b < 2; b++) {
        mha_runtime *rt = runtime_new(names[b], 1);
        float *y0, *y1, *y2, *y3;
        assert_int_equal(run_with(rt, m, &c, NULL, &y0, &err), MHA_OK);
        const size_t packs = model_pack_count(m);
        mha_run_options ro;
        mha_run_options_init(&ro);
        ro.precision = MHA_PRECISION_FLOAT32;
        assert_int_equal(run_with(rt, m, &c, &ro, &y1, &err), MHA_OK);
        assert_memory_equal(y0, y1, n * sizeof(float));
        ro.precision = MHA_PRECISION_BFLOAT16;
        assert_int_equal(run_with(rt, m, &c, &ro, &y2, &err), MHA_OK);
        assert_int_equal(model_pack_count(m), packs + 1);
        assert_true(memcmp(y0, y2, n * sizeof(float)) != 0);
        const double e = tu_max_rel_err(y2, c.want.data, n);
        if (!(e <= 3.0 / 128.0)) fail_msg("%s bfloat16: max rel err %g", names[b], e);
        /* a caller built before the field: float32, whatever follows */
        ro.struct_size = (uint32_t)offsetof(mha_run_options, precision);
        assert_int_equal(run_with(rt, m, &c, &ro, &y3, &err), MHA_OK);
        assert_memory_equal(y0, y3, n * sizeof(float));
        free(y0), free(y1), free(y2), free(y3);
        ro.struct_size = sizeof ro;
        ro.precision = 7;
        assert_int_equal(run_with(rt, m, &c, &ro, &y0, &err), MHA_ERR_INVALID_ARGUMENT);
        free(y0);
        mha_runtime_destroy(rt);
    }
    mha_runtime *rt = runtime_new("avx2", 1);
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.precision = MHA_PRECISION_BFLOAT16;
    float *y;
    assert_int_equal(run_with(rt, m, &c, &ro, &y, &err), MHA_ERR_BACKEND);
    assert_non_null(strstr(err.message, "'avx2'"));
    assert_non_null(strstr(err.message, "bfloat16"));
    free(y);
    mha_runtime_destroy(rt);
    case_free(&c);
    mha_model_free(m);
}

int main(void) {
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_info_and_run),
        cmocka_unit_test(test_load_memory_and_options),
        cmocka_unit_test(test_run_errors),
        cmocka_unit_test(test_model_from_layer),
        cmocka_unit_test(test_model_layout),
        cmocka_unit_test(test_runtime_queries),
        cmocka_unit_test(test_model_idioms),
        cmocka_unit_test(test_run_precision),
        cmocka_unit_test(test_albert_packed_once),
        cmocka_unit_test(test_plan_without_attention),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
