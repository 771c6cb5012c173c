/* test_recognize.c -- the layer recogniser (layer_recognize) and the
 * verifier (layer_verify): every conformance, PyTorch-export and peer form
 * in scope is recognised with the right facts, passes verification and --
 * run with the reference forward pass -- reproduces the expected output
 * file; out-of-scope features and graphs that cannot be placed are refused
 * naming the op / node / feature; deliberate corruptions of a recognised
 * layer are caught by the verifier; allocation failures are clean. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "layer.h"
#include "layer_bind.h"
#include "layer_reference.h"
#include "mha/plugin.h"
#include "onnx_ir.h"
#include "recognize_internal.h"
#include "tensor.h"

static mha_alloc_ctx g_alloc;

static const char *case_path(const char *family, const char *name, const char *file) {
    static char buf[4][1024];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 1024, "%s/%s/%s/%s", MHA_TEST_DATA, family, name, file);
    return p;
}

static ir_graph *load_graph(const char *path) {
    ir_graph *g = NULL;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = ir_load_file(&g_alloc, path, NULL, &g, &err);
    if (st != MHA_OK) fail_msg("loading %s: %s", path, err.message);
    return g;
}

/* Recognises family/name; on success also verifies. Returns the status of
 * layer_recognize; err receives the message. */
static mha_status recognise(const char *family, const char *name, layer *L, mha_error *err,
                            ir_graph **gout) {
    ir_graph *g = load_graph(case_path(family, name, "model.onnx"));
    mha_error_clear(err);
    mha_status st = layer_recognize(&g_alloc, g, L, err);
    if (gout)
        *gout = g;
    else
        ir_free(g);
    return st;
}

/* The layer of tests/data/recognize/<name>.onnx; *gout keeps the graph. */
static mha_status recognise_graph(const char *name, layer *L, mha_error *err, ir_graph **gout) {
    char path[1024];
    snprintf(path, sizeof path, "%s/recognize/%s.onnx", MHA_TEST_DATA, name);
    *gout = load_graph(path);
    mha_error_clear(err);
    return layer_recognize(&g_alloc, *gout, L, err);
}

/* recognise_graph() that must succeed: the graph. */
static ir_graph *recognise_graph_ok(const char *name, layer *L) {
    ir_graph *g;
    mha_error err;
    if (recognise_graph(name, L, &err, &g) != MHA_OK) fail_msg("%s: %s", name, err.message);
    return g;
}

/* recognise() that must succeed. */
static void recognise_ok(const char *family, const char *name, layer *L, ir_graph **g) {
    mha_error err;
    mha_status st = recognise(family, name, L, &err, g);
    if (st != MHA_OK) fail_msg("%s: %s", name, err.message);
}

/* Runs L with the reference forward pass on the case's test_data_set_0
 * inputs and compares with output_0.pb. */
static void check_against_expected(const char *family, const char *name, const layer *L) {
    mha_error err;
    mha_error_clear(&err);
    tensor *in[8] = {0};
    mha_tensor min[8], mout[4];
    assert_true(L->n_inputs <= 8 && L->n_outputs <= 4);
    for (size_t i = 0; i < L->n_inputs; i++) {
        char file[64];
        snprintf(file, sizeof file, "test_data_set_0/input_%zu.pb", i);
        size_t size = 0;
        void *data = tu_read_file(case_path(family, name, file), &size);
        assert_non_null(data);
        mha_status st = ir_load_tensor_proto(&g_alloc, data, size, file, &in[i], NULL, &err);
        free(data);
        if (st != MHA_OK) fail_msg("%s/%s: %s", name, file, err.message);
        memset(&min[i], 0, sizeof min[i]);
        min[i].dtype = in[i]->dtype;
        min[i].rank = in[i]->rank;
        for (int d = 0; d < in[i]->rank; d++)
            min[i].shape[d] = in[i]->dims[d];
        min[i].data = in[i]->data;
    }
    mha_status st = layer_output_shapes(L, min, L->n_inputs, mout, L->n_outputs, &err);
    if (st != MHA_OK) fail_msg("%s: output shapes: %s", name, err.message);
    int64_t n = mha_tensor_numel(&mout[0]);
    float *y = calloc((size_t)n, sizeof *y);
    mout[0].data = y;
    st = layer_reference_forward(&g_alloc, L, min, L->n_inputs, mout, L->n_outputs, &err);
    if (st != MHA_OK) fail_msg("%s: reference forward: %s", name, err.message);
    size_t size = 0;
    void *data = tu_read_file(case_path(family, name, "test_data_set_0/output_0.pb"), &size);
    assert_non_null(data);
    tensor *want = NULL;
    st = ir_load_tensor_proto(&g_alloc, data, size, "output_0.pb", &want, NULL, &err);
    free(data);
    assert_int_equal(st, MHA_OK);
    assert_int_equal(tensor_numel(want), n);
    double e = tu_max_rel_err(y, want->data, (size_t)n);
    if (!(e <= 1e-4))
        fail_msg("%s: reference forward differs from the expected output by %g", name, e);
    tensor_free(want);
    free(y);
    for (size_t i = 0; i < L->n_inputs; i++)
        tensor_free(in[i]);
}

static void expect_close(float got, double want, const char *what, const char *name) {
    if (fabs((double)got - want) > 1e-6 * fmax(1.0, fabs(want)))
        fail_msg("%s: %s is %g, expected %g", name, what, (double)got, want);
}

/* ---- mha_* conformance layers (Attention with projections) ---- */

typedef struct layer_case {
    const char *name;
    int64_t d_model, q_heads, kv_heads, d_head;
    int causal, cross;
    int mask_input; /* index of the mask input, or -1 */
    mha_io_role mask_role;
    int kpm_ignore;
    const char *form;
} layer_case;

static void run_layer_case(const char *family, const layer_case *c) {
    layer L;
    mha_error err;
    ir_graph *g = NULL;
    mha_status st = recognise(family, c->name, &L, &err, &g);
    if (st != MHA_OK) fail_msg("%s: %s", c->name, err.message);
    assert_string_equal(L.form, c->form);
    assert_int_equal(L.has_proj, 1);
    assert_int_equal(L.d_model, c->d_model);
    assert_int_equal(L.d_kv, c->d_model);
    assert_int_equal(L.d_out, c->d_model);
    assert_int_equal(L.q_heads, c->q_heads);
    assert_int_equal(L.kv_heads, c->kv_heads);
    assert_int_equal(L.d_head, c->d_head);
    assert_int_equal(L.d_head_v, c->d_head);
    assert_int_equal(L.causal, c->causal);
    assert_int_equal(L.cross, c->cross);
    assert_int_equal(L.seq_first, 0);
    assert_float_equal(L.softcap, 0.0f, 0.0f);
    expect_close(L.scale, 1.0 / sqrt((double)c->d_head), "scale", c->name);
    assert_non_null(L.wq);
    assert_non_null(L.wk);
    assert_non_null(L.wv);
    assert_non_null(L.wo);
    assert_int_equal(L.inputs[0].role, MHA_ROLE_QUERY);
    if (c->cross) assert_int_equal(L.inputs[1].role, MHA_ROLE_KEY_VALUE);
    if (c->mask_input >= 0) {
        assert_int_equal(L.inputs[c->mask_input].role, c->mask_role);
        if (c->mask_role == MHA_ROLE_KEY_PADDING_MASK)
            assert_int_equal(L.kpm_true_means_ignore, c->kpm_ignore);
    }
    assert_int_equal(L.n_outputs, 1);
    assert_int_equal(L.outputs[0].role, MHA_ROLE_OUTPUT);
    st = layer_verify(&g_alloc, g, &L, &err);
    if (st != MHA_OK) fail_msg("%s: verify: %s", c->name, err.message);
    check_against_expected(family, c->name, &L);
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

static void test_conformance_layers(void **state) {
    (void)state;
    static const layer_case cases[] = {
        {"mha_causal_d16_h2_b4_s64", 16, 2, 2, 8, 1, 0, -1, 0, 0, "onnx-attention-layer"},
        {"mha_causal_d64_h8_b2_s24", 64, 8, 8, 8, 1, 0, -1, 0, 0, "onnx-attention-layer"},
        {"mha_cross_d48_h3_b2_q5_kv12", 48, 3, 3, 16, 0, 1, -1, 0, 0, "onnx-attention-layer"},
        {"mha_cross_padmask_d32_h4_b2_q6_kv9", 32, 4, 4, 8, 0, 1, 2, MHA_ROLE_ATTN_MASK, 0,
         "onnx-attention-layer"},
        {"mha_gqa_causal_d64_h8_kv2_b1_s20", 64, 8, 2, 8, 1, 0, -1, 0, 0, "onnx-attention-layer"},
        {"mha_padmask_d32_h4_b3_s10", 32, 4, 4, 8, 0, 0, 1, MHA_ROLE_ATTN_MASK, 0,
         "onnx-attention-layer"},
        {"mha_self_d16_h1_b1_s1", 16, 1, 1, 16, 0, 0, -1, 0, 0, "onnx-attention-layer"},
        {"mha_self_d256_h8_b1_s32", 256, 8, 8, 32, 0, 0, -1, 0, 0, "onnx-attention-layer"},
        {"mha_self_d32_h2_b2_s8", 32, 2, 2, 16, 0, 0, -1, 0, 0, "onnx-attention-layer"},
        {"mha_self_d64_h4_b2_s16", 64, 4, 4, 16, 0, 0, -1, 0, 0, "onnx-attention-layer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_layer_case("conformance", &cases[i]);
}

static void test_torch_exports(void **state) {
    (void)state;
    static const layer_case cases[] = {
        {"torch_mha_cross_d16_h2_b1_q3_kv8", 16, 2, 2, 8, 0, 1, -1, 0, 0, "torch-mha"},
        {"torch_mha_keypad_d16_h2_b2_s5", 16, 2, 2, 8, 0, 0, 1, MHA_ROLE_KEY_PADDING_MASK, 1,
         "torch-mha"},
        {"torch_mha_self_d16_h1_b2_s5_nobias_op17", 16, 1, 1, 16, 0, 0, -1, 0, 0, "torch-mha"},
        {"torch_mha_self_d24_h2_b1_s11_causal_op14", 24, 2, 2, 12, 1, 0, -1, 0, 0, "torch-mha"},
        {"torch_mha_self_d32_h4_b2_s6_op17", 32, 4, 4, 8, 0, 0, -1, 0, 0, "torch-mha"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_layer_case("torch-export", &cases[i]);
    /* bias=False: no bias vectors at all */
    layer L;
    mha_error err;
    assert_int_equal(
        recognise("torch-export", "torch_mha_self_d16_h1_b2_s5_nobias_op17", &L, &err, NULL),
        MHA_OK);
    assert_null(L.bq);
    assert_null(L.bk);
    assert_null(L.bv);
    assert_null(L.bo);
    layer_clear(&g_alloc, &L);
}

static void test_peer_forms(void **state) {
    (void)state;
    static const layer_case cases[] = {
        {"attention23_d32_h4", 32, 4, 4, 8, 0, 0, -1, 0, 0, "onnx-attention-layer"},
        {"attention23_d32_h4_causal", 32, 4, 4, 8, 1, 0, -1, 0, 0, "onnx-attention-layer"},
        {"decomposed_d32_h4", 32, 4, 4, 8, 0, 0, -1, 0, 0, "onnx-decomposed"},
        {"decomposed_d32_h4_causal", 32, 4, 4, 8, 1, 0, -1, 0, 0, "onnx-decomposed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_layer_case("peer-forms", &cases[i]);
}

/* com.microsoft forms: MultiHeadAttention between projections (the peer's
 * and our own), Attention with packed weights and its mask_index forms. */
static void test_msft_forms(void **state) {
    (void)state;
    static const layer_case peer[] = {
        {"ms_mha_d32_h4", 32, 4, 4, 8, 0, 0, -1, 0, 0, "ms-mha"},
        {"ms_mha_d32_h4_causal", 32, 4, 4, 8, 1, 0, -1, 0, 0, "ms-mha"},
    };
    for (size_t i = 0; i < sizeof peer / sizeof peer[0]; i++)
        run_layer_case("peer-forms", &peer[i]);
    static const layer_case own[] = {
        {"ms_mha_d32_h4_b2_s5", 32, 4, 4, 8, 0, 0, -1, 0, 0, "ms-mha"},
        {"ms_mha_causal_d32_h4_b2_s6", 32, 4, 4, 8, 1, 0, -1, 0, 0, "ms-mha"},
        {"ms_attention_d32_h4_b2_s5", 32, 4, 4, 8, 0, 0, -1, 0, 0, "ms-attention"},
        {"ms_attention_noproj_causal_d16_h2_b2_s6", 16, 2, 2, 8, 1, 0, -1, 0, 0, "ms-attention"},
        {"ms_attention_keylen_d32_h4_b3_s6", 32, 4, 4, 8, 0, 0, 1, MHA_ROLE_NONPAD_KV_SEQLEN, 0,
         "ms-attention"},
        {"ms_attention_keymask_d32_h4_b2_s7", 32, 4, 4, 8, 0, 0, 1, MHA_ROLE_KEY_PADDING_MASK, 0,
         "ms-attention"},
        {"ms_attention_mask3d_d16_h2_b2_s5", 16, 2, 2, 8, 0, 0, 1, MHA_ROLE_ATTN_MASK, 0,
         "ms-attention"},
        {"ms_attention_keylen_causal_d16_h4_b2_s6", 16, 4, 4, 4, 1, 0, 1, MHA_ROLE_NONPAD_KV_SEQLEN,
         0, "ms-attention"},
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        run_layer_case("msft", &own[i]);
    /* Attention's mask_index: integer masks, key lengths that do not move
     * the causal frontier */
    layer L;
    mha_error err;
    assert_int_equal(recognise("msft", "ms_attention_keylen_d32_h4_b3_s6", &L, &err, NULL), MHA_OK);
    assert_int_equal(L.int_mask_attend_nonzero, 1);
    assert_int_equal(L.kv_len_moves_causal, 0);
    layer_clear(&g_alloc, &L);
}

/* ---- bare ONNX Attention nodes ---- */

typedef struct bare_case {
    const char *name;
    int rank;
    int64_t q_heads, kv_heads, d_head, d_head_v;
    int causal;
    double scale; /* 0: 1/sqrt(d_head) */
    float softcap;
    int mask_input; /* -1 none */
} bare_case;

static void test_onnx_attention_in_scope(void **state) {
    (void)state;
    static const bare_case cases[] = {
        {"onnx_attention_3d", 3, 3, 3, 8, 8, 0, 0, 0, -1},
        {"onnx_attention_3d_attn_mask", 3, 3, 3, 8, 8, 0, 0, 0, 3},
        {"onnx_attention_3d_causal", 3, 3, 3, 8, 8, 1, 0, 0, -1},
        {"onnx_attention_3d_diff_heads_sizes", 3, 3, 3, 8, 10, 0, 0, 0, -1},
        {"onnx_attention_3d_diff_heads_sizes_attn_mask", 3, 3, 3, 8, 10, 0, 0, 0, 3},
        {"onnx_attention_3d_diff_heads_sizes_scaled", 3, 3, 3, 8, 10, 0, 0.01, 0, -1},
        {"onnx_attention_3d_diff_heads_sizes_softcap", 3, 3, 3, 8, 10, 0, 0, 3.0f, -1},
        {"onnx_attention_3d_gqa_causal", 3, 9, 3, 8, 8, 1, 0, 0, -1},
        {"onnx_attention_3d_gqa_scaled", 3, 9, 3, 8, 8, 0, 0.01, 0, -1},
        {"onnx_attention_3d_gqa_softcap", 3, 9, 3, 8, 8, 0, 0, 3.0f, -1},
        {"onnx_attention_4d", 4, 3, 3, 8, 8, 0, 0, 0, -1},
        {"onnx_attention_4d_attn_mask", 4, 3, 3, 8, 8, 0, 0, 0, 3},
        {"onnx_attention_4d_attn_mask_3d_causal", 4, 3, 3, 8, 8, 1, 0, 0, 3},
        {"onnx_attention_4d_attn_mask_4d", 4, 3, 3, 8, 8, 0, 0, 0, 3},
        {"onnx_attention_4d_attn_mask_bool_4d", 4, 3, 3, 8, 8, 0, 0, 0, 3},
        {"onnx_attention_4d_diff_heads_sizes", 4, 3, 3, 8, 10, 0, 0, 0, -1},
        {"onnx_attention_4d_diff_heads_sizes_attn_mask", 4, 3, 3, 8, 10, 0, 0, 0, 3},
        {"onnx_attention_4d_gqa_causal", 4, 9, 3, 8, 8, 1, 0, 0, -1},
        {"onnx_attention_4d_gqa_scaled", 4, 9, 3, 8, 8, 0, 0.01, 0, -1},
        {"onnx_attention_4d_gqa_softcap", 4, 9, 3, 8, 8, 0, 0, 2.0f, -1},
        {"onnx_attention_4d_scaled", 4, 3, 3, 8, 8, 0, 0.01, 0, -1},
        {"onnx_attention_4d_softcap", 4, 3, 3, 8, 8, 0, 0, 2.0f, -1},
        {"onnx_attention_4d_softcap_neginf_mask", 4, 1, 1, 8, 8, 0, 0, 0.5f, 3},
        {"onnx_attention_causal_boolmask_nan_robustness", 4, 2, 2, 8, 8, 1, 0, 0, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bare_case *c = &cases[i];
        layer L;
        mha_error err;
        ir_graph *g = NULL;
        mha_status st = recognise("conformance", c->name, &L, &err, &g);
        if (st != MHA_OK) fail_msg("%s: %s", c->name, err.message);
        assert_string_equal(L.form, "onnx-attention");
        assert_int_equal(L.has_proj, 0);
        assert_int_equal(L.qkv_rank, c->rank);
        assert_int_equal(L.q_heads, c->q_heads);
        assert_int_equal(L.kv_heads, c->kv_heads);
        assert_int_equal(L.d_head, c->d_head);
        assert_int_equal(L.d_head_v, c->d_head_v);
        assert_int_equal(L.causal, c->causal);
        expect_close(L.scale, c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->d_head), "scale",
                     c->name);
        expect_close(L.softcap, c->softcap, "softcap", c->name);
        assert_null(L.wq);
        assert_int_equal(L.inputs[0].role, MHA_ROLE_Q);
        assert_int_equal(L.inputs[1].role, MHA_ROLE_K);
        assert_int_equal(L.inputs[2].role, MHA_ROLE_V);
        assert_int_equal(L.n_inputs, c->mask_input >= 0 ? 4 : 3);
        if (c->mask_input >= 0) assert_int_equal(L.inputs[3].role, MHA_ROLE_ATTN_MASK);
        st = layer_verify(&g_alloc, g, &L, &err);
        if (st != MHA_OK) fail_msg("%s: verify: %s", c->name, err.message);
        check_against_expected("conformance", c->name, &L);
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
}

/* Every output of a case against its output_<k>.pb, any float type:
 * |got - want| <= atol + rtol |want| (float16 1e-3 / 1e-3), and a hidden
 * score (-inf or the lowest value) matches either. */
static void check_all_outputs(const char *family, const char *name, const layer *L) {
    mha_error err;
    mha_error_clear(&err);
    tensor *in[8] = {0}, *want[4] = {0};
    mha_tensor min[8], mout[4];
    assert_true(L->n_inputs <= 8 && L->n_outputs <= 4);
    for (size_t i = 0; i < L->n_inputs + L->n_outputs; i++) {
        int is_in = i < L->n_inputs;
        size_t k = is_in ? i : i - L->n_inputs;
        char file[64];
        snprintf(file, sizeof file, "test_data_set_0/%s_%zu.pb", is_in ? "input" : "output", k);
        size_t size = 0;
        void *data = tu_read_file(case_path(family, name, file), &size);
        assert_non_null(data);
        tensor **dst = is_in ? &in[k] : &want[k];
        mha_status st = ir_load_tensor_proto(&g_alloc, data, size, file, dst, NULL, &err);
        free(data);
        if (st != MHA_OK) fail_msg("%s/%s: %s", name, file, err.message);
        if (!is_in) continue;
        memset(&min[k], 0, sizeof min[k]);
        min[k].dtype = in[k]->dtype;
        min[k].rank = in[k]->rank;
        for (int d = 0; d < in[k]->rank; d++)
            min[k].shape[d] = in[k]->dims[d];
        min[k].data = in[k]->data;
    }
    mha_status st = layer_output_shapes(L, min, L->n_inputs, mout, L->n_outputs, &err);
    if (st != MHA_OK) fail_msg("%s: output shapes: %s", name, err.message);
    void *buf[4] = {0};
    for (size_t k = 0; k < L->n_outputs; k++) {
        buf[k] = calloc((size_t)mha_tensor_numel(&mout[k]) + 1, mha_dtype_size(mout[k].dtype));
        mout[k].data = buf[k];
    }
    st = layer_reference_forward(&g_alloc, L, min, L->n_inputs, mout, L->n_outputs, &err);
    if (st != MHA_OK) fail_msg("%s: reference forward: %s", name, err.message);
    for (size_t k = 0; k < L->n_outputs; k++) {
        assert_int_equal(mout[k].dtype, want[k]->dtype);
        assert_int_equal(mha_tensor_numel(&mout[k]), tensor_numel(want[k]));
        tensor got;
        memset(&got, 0, sizeof got);
        got.dtype = mout[k].dtype;
        got.data = mout[k].data;
        int half = want[k]->dtype == MHA_DTYPE_FLOAT16;
        double rtol = half ? 1e-3 : 1e-4, atol = half ? 1e-3 : 1e-5;
        double low = half ? -65504.0 : -3.4028234663852886e38;
        for (int64_t i = 0; i < tensor_numel(want[k]); i++) {
            double w = tensor_get_f64(want[k], i), g = tensor_get_f64(&got, i);
            if (w <= low && g <= low) continue;
            if (!(fabs(g - w) <= atol + rtol * fabs(w)))
                fail_msg("%s: output %zu element %lld is %g, expected %g", name, k, (long long)i, g,
                         w);
        }
        tensor_free(want[k]);
        free(buf[k]);
    }
    for (size_t i = 0; i < L->n_inputs; i++)
        tensor_free(in[i]);
}

/* The whole operator: KV cache, key lengths, qk_matmul_output modes,
 * float16 -- recognised with the right roles and facts, verified, and every
 * output reproduced. */
static void test_onnx_attention_whole_operator(void **state) {
    (void)state;
    static const struct {
        const char *name;
        mha_dtype dtype;
        int qk_mode, past, nonpad, present, qk;
    } cases[] = {
        {"onnx_attention_23_fullymasked_qk_matmul_output_mode3_zero", MHA_DTYPE_FLOAT32, 3, 0, 0, 0,
         1},
        {"onnx_attention_24_qk_matmul_output_mode3_softmax_precision", MHA_DTYPE_FLOAT16, 3, 0, 0,
         0, 1},
        {"onnx_attention_3d_gqa_with_past_and_present", MHA_DTYPE_FLOAT32, 0, 1, 0, 1, 0},
        {"onnx_attention_3d_with_past_and_present", MHA_DTYPE_FLOAT32, 0, 1, 0, 1, 0},
        {"onnx_attention_3d_with_past_and_present_qk_matmul", MHA_DTYPE_FLOAT32, 0, 1, 0, 1, 1},
        {"onnx_attention_3d_with_past_and_present_qk_matmul_bias", MHA_DTYPE_FLOAT32, 2, 1, 0, 1,
         1},
        {"onnx_attention_3d_with_past_and_present_qk_matmul_softmax", MHA_DTYPE_FLOAT32, 3, 1, 0, 1,
         1},
        {"onnx_attention_4d_causal_nonpad_attn_mask_composition", MHA_DTYPE_FLOAT32, 0, 0, 1, 0, 0},
        {"onnx_attention_4d_causal_nonpad_negative_offset_structural_empty", MHA_DTYPE_FLOAT32, 0,
         0, 1, 0, 0},
        {"onnx_attention_4d_diff_heads_with_past_and_present", MHA_DTYPE_FLOAT32, 0, 1, 0, 1, 0},
        {"onnx_attention_4d_diff_heads_with_past_and_present_mask3d", MHA_DTYPE_FLOAT32, 0, 1, 0, 1,
         0},
        {"onnx_attention_4d_fp16", MHA_DTYPE_FLOAT16, 0, 0, 0, 0, 0},
        {"onnx_attention_4d_gqa_causal_nonpad_decode", MHA_DTYPE_FLOAT32, 0, 0, 1, 0, 0},
        {"onnx_attention_4d_gqa_causal_nonpad_decode_fp16", MHA_DTYPE_FLOAT16, 0, 0, 1, 0, 0},
        {"onnx_attention_4d_gqa_with_past_and_present_fp16", MHA_DTYPE_FLOAT16, 0, 1, 0, 1, 0},
        {"onnx_attention_4d_with_past_and_present", MHA_DTYPE_FLOAT32, 0, 1, 0, 1, 0},
        {"onnx_attention_4d_with_past_and_present_qk_matmul", MHA_DTYPE_FLOAT32, 0, 1, 0, 1, 1},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias", MHA_DTYPE_FLOAT32, 2, 1, 0, 1,
         1},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias_3d_mask", MHA_DTYPE_FLOAT32, 2, 1,
         0, 1, 1},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias_3d_mask_causal", MHA_DTYPE_FLOAT32,
         2, 1, 0, 1, 1},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias_4d_mask", MHA_DTYPE_FLOAT32, 2, 1,
         0, 1, 1},
        {"onnx_attention_4d_with_qk_matmul", MHA_DTYPE_FLOAT32, 0, 0, 0, 0, 1},
        {"onnx_attention_4d_with_qk_matmul_softcap", MHA_DTYPE_FLOAT32, 1, 0, 0, 0, 1},
        {"onnx_attention_4d_with_qk_matmul_softmax", MHA_DTYPE_FLOAT32, 3, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layer L;
        mha_error err;
        ir_graph *g = NULL;
        recognise_ok("conformance", cases[i].name, &L, &g);
        mha_status st;
        assert_string_equal(L.form, "onnx-attention");
        assert_int_equal(L.dtype, cases[i].dtype);
        assert_int_equal(L.has_left_window, 0);
        assert_int_equal(L.has_right_window, 0);
        int n_past = 0, n_nonpad = 0, n_present = 0, n_qk = 0;
        for (size_t k = 0; k < L.n_inputs; k++) {
            n_past +=
                L.inputs[k].role == MHA_ROLE_PAST_KEY || L.inputs[k].role == MHA_ROLE_PAST_VALUE;
            n_nonpad += L.inputs[k].role == MHA_ROLE_NONPAD_KV_SEQLEN;
        }
        assert_int_equal(L.outputs[0].role, MHA_ROLE_OUTPUT);
        for (size_t k = 0; k < L.n_outputs; k++) {
            n_present += L.outputs[k].role == MHA_ROLE_PRESENT_KEY ||
                         L.outputs[k].role == MHA_ROLE_PRESENT_VALUE;
            n_qk += L.outputs[k].role == MHA_ROLE_QK_OUTPUT;
        }
        assert_int_equal(n_past, 2 * cases[i].past);
        assert_int_equal(n_nonpad, cases[i].nonpad);
        assert_int_equal(n_present, 2 * cases[i].present);
        assert_int_equal(n_qk, cases[i].qk);
        if (cases[i].qk) assert_int_equal(L.qk_mode, cases[i].qk_mode);
        if (cases[i].nonpad) assert_int_equal(L.kv_len_moves_causal, 1);
        st = layer_verify(&g_alloc, g, &L, &err);
        if (st != MHA_OK) fail_msg("%s: verify: %s", cases[i].name, err.message);
        check_all_outputs("conformance", cases[i].name, &L);
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
}

/* ---- graphs that cannot be placed, and unusual ones that can ---- */

/* A refused model and two parts its message must contain. */
typedef struct refusal_case {
    const char *name, *want1, *want2;
} refusal_case;

static void test_refusals(void **state) {
    (void)state;
    static const refusal_case cases[] = {
        {"no_attention", "no attention", "neither an Attention node nor a Softmax"},
        {"two_softmax", "Softmax", "'extra_softmax'"},
        {"unknown_op_on_path", "Sin", "'q_sin'"},
        {"softmax_axis", "Softmax", "axis"},
        {"weight_input", "MatMul", "'q_matmul'"},
        {"where_fill_zero", "'m_where_zero'", "does not hide them"},
        {"dyn_bias", "'qk_dyn_bias'", "more than the head and the key - query distance"},
        {"rotary_q_only", "'q_rot_add'", "only one of Q and K is rotated"},
        /* fractional m would count fractional positions (and once crashed) */
        {"alibi_counted_float", "'ac_fill'", "changes the scores"},
        {"kv_cache_concat", "'k_cache_concat'", "cache input ('past_k'), but the V path"},
        {"kv_cache_after", "'k_cache_concat'", "appends the cache input after the new rows"},
        {"residual_block", "'residual_add'", "residual connection"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/recognize/%s.onnx", MHA_TEST_DATA, cases[i].name);
        ir_graph *g = load_graph(path);
        layer L;
        mha_error err;
        mha_error_clear(&err);
        mha_status st = layer_recognize(&g_alloc, g, &L, &err);
        if (st != MHA_ERR_MODEL_UNSUPPORTED)
            fail_msg("%s: expected a refusal, got %s (%s)", cases[i].name, mha_status_name(st),
                     err.message);
        if (!strstr(err.message, cases[i].want1) || !strstr(err.message, cases[i].want2))
            fail_msg("%s: message lacks '%s' / '%s': %s", cases[i].name, cases[i].want1,
                     cases[i].want2, err.message);
        assert_int_equal(err.status, MHA_ERR_MODEL_UNSUPPORTED);
        assert_null(strchr(err.message, '\n'));
        ir_free(g);
    }
    /* a family case the layer recogniser alone refuses, saying what the
     * graph does (the model loads as a plan: test_plan) */
    static const refusal_case families[] = {
        {"vit_clstoken_op17", "Concat node '/Concat_1' on the Q path", "only layout ops"},
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        layer L;
        mha_error err;
        mha_status st = recognise("families", families[i].name, &L, &err, NULL);
        if (st != MHA_ERR_MODEL_UNSUPPORTED || !strstr(err.message, families[i].want1) ||
            !strstr(err.message, families[i].want2))
            fail_msg("%s: %s: %s", families[i].name, mha_status_name(st), err.message);
    }
}

/* Norms of Q and K between the projections and the scores, read by their
 * meaning: an RMSNorm of each head of both (weights [DH] of their own), a
 * LayerNormalization node over all of Q's row and none on K; each must
 * verify against its graph (without the norm in the step, they differ). A
 * per-head LayerNorm with a bias (Persimmon) has it read: without it, the
 * layer differs from its graph. */
static void test_qk_norms(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int kind[2], whole[2];
        float eps;
    } cases[] = {
        {"qknorm_head_rms", {LAYER_QK_NORM_RMS, LAYER_QK_NORM_RMS}, {0, 0}, 1e-6f},
        {"qknorm_row_ln", {LAYER_QK_NORM_LAYER, LAYER_QK_NORM_NONE}, {1, 0}, 1e-5f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layer L;
        mha_error err;
        ir_graph *g = recognise_graph_ok(cases[i].name, &L);
        mha_status st;
        for (int s = 0; s < 2; s++) {
            if (L.qk_norm[s] != cases[i].kind[s] || L.qk_norm_whole[s] != cases[i].whole[s] ||
                (L.qk_norm_w[s] != NULL) != (cases[i].kind[s] != 0))
                fail_msg("%s: side %d: kind %d whole %d, want %d / %d", cases[i].name, s,
                         L.qk_norm[s], L.qk_norm_whole[s], cases[i].kind[s], cases[i].whole[s]);
            if (cases[i].kind[s] && fabsf(L.qk_norm_eps[s] - cases[i].eps) > 1e-3f * cases[i].eps)
                fail_msg("%s: side %d: eps %g", cases[i].name, s, (double)L.qk_norm_eps[s]);
        }
        st = layer_verify(&g_alloc, g, &L, &err);
        if (st != MHA_OK) fail_msg("%s: verify: %s", cases[i].name, err.message);
        /* the weights are the file's, not ones: without them it differs */
        for (int64_t c = 0; c < L.q_heads * L.d_head; c++)
            L.qk_norm_w[0][c] = 1.0f;
        st = layer_verify(&g_alloc, g, &L, &err);
        if (st != MHA_ERR_MODEL_VERIFY)
            fail_msg("%s: verified with the Q norm's weights all 1: %s", cases[i].name,
                     mha_status_name(st));
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
    layer L;
    mha_error err;
    ir_graph *g = recognise_graph_ok("qknorm_head_ln_bias", &L);
    for (int s = 0; s < 2; s++)
        if (L.qk_norm[s] != LAYER_QK_NORM_LAYER || L.qk_norm_whole[s] || !L.qk_norm_b[s])
            fail_msg("qknorm_head_ln_bias: side %d: kind %d whole %d, bias %s", s, L.qk_norm[s],
                     L.qk_norm_whole[s], L.qk_norm_b[s] ? "read" : "missing");
    mha_status st = layer_verify(&g_alloc, g, &L, &err);
    if (st != MHA_OK) fail_msg("qknorm_head_ln_bias: verify: %s", err.message);
    /* (K's bias adds q . b to a whole row of scores: the softmax does not
     * see it; Q's adds b . k, which differs between keys) */
    for (int64_t c = 0; c < L.q_heads * L.d_head; c++)
        L.qk_norm_b[0][c] = 0.0f;
    st = layer_verify(&g_alloc, g, &L, &err);
    if (st != MHA_ERR_MODEL_VERIFY)
        fail_msg("qknorm_head_ln_bias: verified with Q's norm bias 0: %s", mha_status_name(st));
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

/* Forms read through something other than a projection of [B, S, D] rows:
 * sequence-first inputs (nn.MultiheadAttention's default), K / V given in
 * head layout (a cached cross-attention), rotary positions or tables as
 * inputs. Each must be read as such and verify against its graph. */
static void test_inputs_beyond_projections(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int seq_first, kv_given, tables_input;
        mha_io_role role1, role2;
    } cases[] = {
        {"torchmha_seqfirst_keypad_op18", 1, 0, 0, MHA_ROLE_KEY_PADDING_MASK, MHA_ROLE_OUTPUT},
        {"torchmha_seqfirst_cross_op15", 1, 0, 0, MHA_ROLE_KEY_VALUE, MHA_ROLE_OUTPUT},
        {"whisper_crosscache_op15", 0, 1, 0, MHA_ROLE_K, MHA_ROLE_V},
        {"llama_posids_op17", 0, 0, 0, MHA_ROLE_KEY_PADDING_MASK, MHA_ROLE_POSITION_IDS},
        {"llama_cossin_op16", 0, 0, 1, MHA_ROLE_KEY_PADDING_MASK, MHA_ROLE_ROTARY_COS},
        {"bert_extmask_op14", 0, 0, 0, MHA_ROLE_KEY_PADDING_MASK, MHA_ROLE_OUTPUT},
        {"torchmha_sepkv_op17", 0, 0, 0, MHA_ROLE_KEY_VALUE, MHA_ROLE_VALUE_INPUT},
        {"bloom_alibiinput_op17", 0, 0, 0, MHA_ROLE_ATTN_BIAS, MHA_ROLE_ATTN_MASK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layer L;
        ir_graph *g = NULL;
        recognise_ok("families", cases[i].name, &L, &g);
        mha_error err;
        if (layer_verify(&g_alloc, g, &L, &err) != MHA_OK)
            fail_msg("%s: %s", cases[i].name, err.message);
        if (L.seq_first != cases[i].seq_first || L.kv_given != cases[i].kv_given ||
            L.rotary_tables_input != cases[i].tables_input)
            fail_msg("%s: seq_first %d, kv_given %d, tables input %d", cases[i].name, L.seq_first,
                     L.kv_given, L.rotary_tables_input);
        assert_int_equal(L.inputs[0].role, MHA_ROLE_QUERY);
        assert_int_equal(L.inputs[1].role, cases[i].role1);
        if (cases[i].role2 != MHA_ROLE_OUTPUT) assert_int_equal(L.inputs[2].role, cases[i].role2);
        if (cases[i].seq_first) /* [S, B, D] as declared, D static */
            assert_int_equal(L.inputs[0].dims[2], L.d_model);
        if (cases[i].kv_given) assert_null(L.wk);
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
}

/* Different key and value inputs (DETR): V is projected from its own input,
 * which must have the key input's shape; the layer's output follows PyTorch's
 * (the value input swapped for the key one would not). */
static void test_separate_value_input(void **state) {
    (void)state;
    layer L;
    recognise_ok("families", "torchmha_sepkv_op17", &L, NULL);
    assert_true(L.cross && L.v_input);
    check_against_expected("families", "torchmha_sepkv_op17", &L);
    static float x[2 * 7 * 32];
    mha_tensor in[3], out;
    memset(in, 0, sizeof in);
    const int64_t len[3] = {4, 7, 6}; /* the value input one row short of the key's */
    for (int i = 0; i < 3; i++) {
        in[i].dtype = MHA_DTYPE_FLOAT32;
        in[i].rank = 3;
        in[i].shape[0] = 2, in[i].shape[1] = len[i], in[i].shape[2] = 32;
        in[i].data = x;
    }
    mha_error err;
    assert_int_equal(layer_output_shapes(&L, in, 3, &out, 1, &err), MHA_ERR_SHAPE);
    assert_non_null(strstr(err.message, "'value'"));
    in[2].shape[1] = 7;
    assert_int_equal(layer_output_shapes(&L, in, 3, &out, 1, &err), MHA_OK);
    assert_int_equal(out.shape[1], 4);
    layer_clear(&g_alloc, &L);
}

/* BLOOM's layer given its ALiBi tensor [B*H, 1, S] and its bool mask
 * [B, 1, S, S]: the tensor is an additive per-head bias input beside the
 * attention mask, summed with it (PyTorch's output), and shaped per head. */
static void test_bias_input_beside_mask(void **state) {
    (void)state;
    layer L;
    recognise_ok("families", "bloom_alibiinput_op17", &L, NULL);
    assert_int_equal(L.inputs[1].role, MHA_ROLE_ATTN_BIAS);
    assert_int_equal(L.inputs[2].role, MHA_ROLE_ATTN_MASK);
    assert_int_equal(L.attn_mask_batch_first, 2);
    check_against_expected("families", "bloom_alibiinput_op17", &L);
    static float x[2 * 5 * 32], bias[2 * 4 * 5];
    static unsigned char mask[2 * 5 * 5];
    mha_tensor in[3], out;
    memset(in, 0, sizeof in);
    in[0] = (mha_tensor){MHA_DTYPE_FLOAT32, 3, {2, 5, 32}, x};
    in[1] = (mha_tensor){MHA_DTYPE_FLOAT32, 3, {2 * 3, 1, 5}, bias}; /* 3 heads, not 4 */
    in[2] = (mha_tensor){MHA_DTYPE_BOOL, 4, {2, 1, 5, 5}, mask};
    mha_error err;
    assert_int_equal(layer_output_shapes(&L, in, 3, &out, 1, &err), MHA_ERR_SHAPE);
    assert_non_null(strstr(err.message, "'alibi'"));
    in[1].shape[0] = 2 * 4;
    assert_int_equal(layer_output_shapes(&L, in, 3, &out, 1, &err), MHA_OK);
    layer_clear(&g_alloc, &L);
}

/* position_ids declared [1, S]: one row for the whole batch. It must not
 * fix the batch of the probes to 1 (the layer would be verified at batch 1
 * alone). */
static void test_broadcast_positions_probe_batch(void **state) {
    (void)state;
    layer L;
    recognise_ok("families", "llama_posids_bcast_op15", &L, NULL);
    assert_int_equal(L.inputs[2].role, MHA_ROLE_POSITION_IDS);
    assert_int_equal(L.inputs[2].dims[0], 1);
    rz_sizes sz = {2, 3, 5, 0};
    int64_t dims[3][MHA_MAX_RANK];
    mha_error err;
    assert_int_equal(rz_probe_dims(&L, 1, &sz, dims, &err), MHA_OK);
    assert_int_equal(sz.B, 2);
    assert_int_equal(dims[0][0], 2); /* hidden_states */
    assert_int_equal(dims[2][0], 1); /* position_ids */
    assert_int_equal(dims[2][1], dims[0][1]);
    layer_clear(&g_alloc, &L);
}

/* The roles and readings the family idioms must get. kpm: 0 none, 1 bool
 * True = attend, 2 valued (additive for m = 0 / 1 below, affine or step). */
typedef struct plumbing_case {
    const char *name;
    int64_t q_heads, kv_heads;
    int causal, has_bias, kpm;
    float add0, add1;
    int affine;
    int attn_ignore_true; /* a bool attn_mask input, True = hidden */
    int64_t window;       /* -1: none */
    int pos_bias;         /* a per-head bias: 1 constant [H, 5, 5], 2 relative (j - i) */
    unsigned idioms;      /* LAYER_IDIOM_* that must be named */
    int mask_layout;      /* attn_mask_batch_first: 2 for [B * H, Sq, Skv] */
} plumbing_case;

static void check_plumbing(const plumbing_case *c, const layer *L) {
    assert_string_equal(L->form, "onnx-decomposed");
    assert_int_equal(L->d_model, 16);
    assert_int_equal(L->q_heads, c->q_heads);
    assert_int_equal(L->kv_heads, c->kv_heads);
    assert_int_equal(L->d_head, 4);
    assert_int_equal(L->causal, c->causal);
    assert_int_equal(L->bq != NULL, c->has_bias);
    expect_close(L->scale, 0.5, "scale", c->name);
    if (c->kpm) {
        assert_int_equal(L->n_inputs, 2);
        assert_int_equal(L->inputs[1].role, MHA_ROLE_KEY_PADDING_MASK);
        assert_int_equal(L->kpm_true_means_ignore, 0);
        assert_int_equal(L->kpm_valued, c->kpm == 2);
        if (c->kpm == 2) {
            expect_close(L->kpm_add[0], c->add0, "kpm_add[0]", c->name);
            expect_close(L->kpm_add[1], c->add1, "kpm_add[1]", c->name);
            assert_int_equal(L->kpm_affine, c->affine);
        }
    }
    if (c->attn_ignore_true) {
        assert_int_equal(L->inputs[1].role, MHA_ROLE_ATTN_MASK);
        assert_int_equal(L->attn_bool_ignore_true, 1);
    }
    assert_int_equal(L->has_left_window, c->window >= 0);
    if (c->window >= 0) assert_int_equal(L->left_window, c->window);
    assert_int_equal(L->bias != NULL, c->pos_bias != 0);
    assert_int_equal(L->bias_rel_len > 0, c->pos_bias == 2);
    if (c->pos_bias == 2) { /* tabulated up to 512: a longer input is refused */
        float one = 0.0f;
        mha_tensor x = {.dtype = MHA_DTYPE_FLOAT32, .rank = 3, .shape = {1, 513, 16}, .data = &one};
        mha_tensor y;
        mha_error err;
        mha_error_clear(&err);
        assert_int_equal(layer_output_shapes(L, &x, 1, &y, 1, &err), MHA_ERR_SHAPE);
        assert_non_null(strstr(err.message, "up to 512"));
        x.shape[1] = 512;
        assert_int_equal(layer_output_shapes(L, &x, 1, &y, 1, &err), MHA_OK);
    }
    if (c->pos_bias == 1) {
        assert_int_equal(L->bias_heads, c->q_heads);
        assert_int_equal(L->bias_sq, 5);
        assert_int_equal(L->bias_skv, 5);
    }
    assert_int_equal(L->attn_mask_batch_first, c->mask_layout);
    if ((L->idioms & c->idioms) != c->idioms)
        fail_msg("%s: idioms 0x%x, expected at least 0x%x", c->name, L->idioms, c->idioms);
}

static void test_unusual_plumbing(void **state) {
    (void)state;
    static const plumbing_case cases[] = {
        {"interleaved_heads", 4, 4, 0, 1, 0, 0, 0, 0, 0, -1, 0, 0, 0},
        {"kpm_attend", 4, 4, 0, 1, 1, 0, 0, 0, 0, -1, 0, 0, 0},
        {"gqa_expand", 4, 2, 0, 1, 0, 0, 0, 0, 0, -1, 0, 0, 0},
        {"gqa_tile", 4, 2, 0, 1, 0, 0, 0, 0, 0, -1, 0, 0, 0},
        {"scale_after_mask", 4, 4, 1, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0},
        {"where_mask", 4, 4, 1, 1, 0, 0, 0, 0, 0, -1, 0, LAYER_IDIOM_WHERE_MASK, 0},
        {"const_bias_mask", 4, 4, 0, 1, 0, 0, 0, 0, 0, -1, 1, LAYER_IDIOM_POS_BIAS, 0},
        {"ext_mask_i64", 4, 4, 0, 1, 2, -3.40282347e38f, 0, 0, 0, -1, 0, LAYER_IDIOM_EXT_MASK, 0},
        {"ext_mask_10000", 4, 4, 0, 1, 2, -10000.0f, 0, 1, 0, -1, 0, LAYER_IDIOM_EXT_MASK, 0},
        {"fill_mask_eq0", 4, 4, 0, 1, 2, -3.40282347e38f, 0, 0, 0, -1, 0,
         LAYER_IDIOM_EXT_MASK | LAYER_IDIOM_WHERE_MASK, 0},
        {"bool_ignore_mask", 4, 4, 0, 1, 0, 0, 0, 0, 1, -1, 0, 0, 0},
        {"window_mask", 4, 4, 1, 1, 0, 0, 0, 0, 0, 2, 0, LAYER_IDIOM_WINDOW, 0},
        {"softmax_casts", 4, 4, 1, 1, 0, 0, 0, 0, 0, -1, 0,
         LAYER_IDIOM_SOFTMAX_CAST | LAYER_IDIOM_SCORE_RESHAPE, 0},
        {"rel_bias", 4, 4, 0, 1, 0, 0, 0, 0, 0, -1, 2, LAYER_IDIOM_POS_BIAS, 0},
        {"bh_mask", 4, 4, 0, 1, 0, 0, 0, 0, 1, -1, 0, 0, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layer L;
        mha_error err;
        ir_graph *g = recognise_graph_ok(cases[i].name, &L);
        mha_status st;
        check_plumbing(&cases[i], &L);
        st = layer_verify(&g_alloc, g, &L, &err);
        if (st != MHA_OK) fail_msg("%s: verify: %s", cases[i].name, err.message);
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
}

/* tests/data/recognize/<name>.onnx loaded and recognised (or the test fails). */
static ir_graph *recognize_model(const char *name, layer *L) {
    char path[1024];
    snprintf(path, sizeof path, "%s/recognize/%s.onnx", MHA_TEST_DATA, name);
    ir_graph *g = load_graph(path);
    mha_error err;
    mha_error_clear(&err);
    if (layer_recognize(&g_alloc, g, L, &err) != MHA_OK) fail_msg("%s: %s", name, err.message);
    return g;
}

/* An ONNX Attention node, and a com.microsoft MultiHeadAttention, between
 * projections with their own KV cache (issue 14): past / present roles, a
 * projected layer with a cache, verified against the graph at a past of 2
 * and an empty one. */
static void test_attention_node_cache(void **state) {
    (void)state;
    static const struct {
        const char *name;
        size_t n_in;
        mha_io_role roles[4];
        int64_t kv_heads;
    } cases[] = {
        {"attention_past",
         4,
         {MHA_ROLE_QUERY, MHA_ROLE_ATTN_MASK, MHA_ROLE_PAST_KEY, MHA_ROLE_PAST_VALUE},
         2},
        {"ms_mha_past", 3, {MHA_ROLE_QUERY, MHA_ROLE_PAST_KEY, MHA_ROLE_PAST_VALUE}, 4},
    };
    static const mha_io_role out_roles[3] = {MHA_ROLE_OUTPUT, MHA_ROLE_PRESENT_KEY,
                                             MHA_ROLE_PRESENT_VALUE};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        layer L;
        mha_error err;
        mha_error_clear(&err);
        ir_graph *g = recognize_model(cases[c].name, &L);
        assert_int_equal(L.n_inputs, cases[c].n_in);
        assert_int_equal(L.n_outputs, 3);
        for (size_t i = 0; i < cases[c].n_in; i++)
            assert_int_equal(L.inputs[i].role, cases[c].roles[i]);
        for (int i = 0; i < 3; i++)
            assert_int_equal(L.outputs[i].role, out_roles[i]);
        assert_true(layer_has_cache(&L));
        assert_int_equal(L.causal, 1);
        assert_int_equal(L.kv_heads, cases[c].kv_heads);
        if (layer_verify(&g_alloc, g, &L, &err) != MHA_OK)
            fail_msg("%s: verify: %s", cases[c].name, err.message);
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
}

/* An attention mask and a key padding mask on one layer, each read by its
 * own polarity (True = hidden in both, as nn.MultiheadAttention). */
static void test_two_masks(void **state) {
    (void)state;
    layer L;
    mha_error err;
    mha_error_clear(&err);
    ir_graph *g = recognize_model("two_masks", &L);
    mha_status st;
    assert_int_equal(L.n_inputs, 3);
    assert_int_equal(L.inputs[1].role, MHA_ROLE_ATTN_MASK);
    assert_int_equal(L.inputs[2].role, MHA_ROLE_KEY_PADDING_MASK);
    assert_int_equal(L.attn_bool_ignore_true, 1);
    assert_int_equal(L.kpm_true_means_ignore, 1);
    st = layer_verify(&g_alloc, g, &L, &err);
    if (st != MHA_OK) fail_msg("two_masks: verify: %s", err.message);
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

/* A batch item whose every key is padding, with the extended mask
 * (1 - m) * finfo.min: the graph's softmax averages all keys (the scores
 * are absorbed into one value); the layer must do the same, not hide them. */
static void test_fully_masked_row(void **state) {
    (void)state;
    layer L;
    mha_error err;
    mha_error_clear(&err);
    ir_graph *g = recognize_model("ext_mask_i64", &L);
    const int64_t xd[3] = {2, 3, 16}, md[2] = {2, 3};
    tensor *in[2] = {NULL, NULL};
    assert_int_equal(tensor_new(&g_alloc, MHA_DTYPE_FLOAT32, 3, xd, &in[0], &err), MHA_OK);
    assert_int_equal(tensor_new(&g_alloc, MHA_DTYPE_INT64, 2, md, &in[1], &err), MHA_OK);
    float *x = in[0]->data;
    for (int64_t i = 0; i < 2 * 3 * 16; i++)
        x[i] = (float)((i * 37 % 23) - 11) / 8.0f;
    int64_t *m = in[1]->data;
    for (int64_t j = 0; j < 3; j++) {
        m[j] = 1;     /* item 0 attends everywhere */
        m[3 + j] = 0; /* item 1 is all padding */
    }
    tensor **values = NULL;
    assert_int_equal(interp_run(&g_alloc, g, (const tensor *const *)in, &values, &err), MHA_OK);
    mha_tensor min[2], mout;
    for (int k = 0; k < 2; k++) {
        memset(&min[k], 0, sizeof min[k]);
        min[k].dtype = in[k]->dtype;
        min[k].rank = in[k]->rank;
        for (int d = 0; d < in[k]->rank; d++)
            min[k].shape[d] = in[k]->dims[d];
        min[k].data = in[k]->data;
    }
    assert_int_equal(layer_output_shapes(&L, min, 2, &mout, 1, &err), MHA_OK);
    float y[2 * 3 * 16];
    mout.data = y;
    if (layer_reference_forward(&g_alloc, &L, min, 2, &mout, 1, &err) != MHA_OK)
        fail_msg("%s", err.message);
    const tensor *want = values[g->outputs[0]];
    double e = tu_max_rel_err(y, want->data, 2 * 3 * 16);
    if (!(e <= 1e-4)) fail_msg("the all-padding item differs from the graph by %g", e);
    interp_values_free(g, values);
    tensor_free(in[0]);
    tensor_free(in[1]);
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

/* ---- the verifier catches a wrong layer ---- */

static void expect_verify_fails(ir_graph *g, const layer *L, const char *what) {
    mha_error err;
    mha_error_clear(&err);
    mha_status st = layer_verify(&g_alloc, g, L, &err);
    if (st != MHA_ERR_MODEL_VERIFY)
        fail_msg("%s: expected MHA_ERR_MODEL_VERIFY, got %s (%s)", what, mha_status_name(st),
                 err.message);
    assert_non_null(strstr(err.message, "differs from the graph by"));
}

static void swap_columns(float *w, int64_t rows, int64_t cols, int64_t a, int64_t b,
                         int64_t width) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t d = 0; d < width; d++) {
            float t = w[r * cols + a * width + d];
            w[r * cols + a * width + d] = w[r * cols + b * width + d];
            w[r * cols + b * width + d] = t;
        }
}

static void test_verify_catches_corruption(void **state) {
    (void)state;
    layer L;
    mha_error err;
    ir_graph *g = NULL;

    /* key padding polarity */
    assert_int_equal(recognise("torch-export", "torch_mha_keypad_d16_h2_b2_s5", &L, &err, &g),
                     MHA_OK);
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    L.kpm_true_means_ignore = !L.kpm_true_means_ignore;
    expect_verify_fails(g, &L, "swapped key padding polarity");
    layer_clear(&g_alloc, &L);
    ir_free(g);

    /* scale */
    assert_int_equal(recognise("conformance", "mha_self_d32_h2_b2_s8", &L, &err, &g), MHA_OK);
    L.scale *= 2.0f;
    expect_verify_fails(g, &L, "doubled scale");
    L.scale *= 0.5f;
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);

    /* heads 0 and 1 of Q swapped (K, V, Wo untouched) */
    swap_columns(L.wq, L.d_model, L.q_heads * L.d_head, 0, 1, L.d_head);
    if (L.bq) swap_columns(L.bq, 1, L.q_heads * L.d_head, 0, 1, L.d_head);
    expect_verify_fails(g, &L, "swapped Q heads");
    layer_clear(&g_alloc, &L);
    ir_free(g);

    /* causal flag on a causal PyTorch export */
    assert_int_equal(
        recognise("torch-export", "torch_mha_self_d24_h2_b1_s11_causal_op14", &L, &err, &g),
        MHA_OK);
    L.causal = 0;
    expect_verify_fails(g, &L, "causal dropped");
    layer_clear(&g_alloc, &L);
    ir_free(g);

    /* head order of the output projection in a GQA layer */
    assert_int_equal(recognise("conformance", "mha_gqa_causal_d64_h8_kv2_b1_s20", &L, &err, &g),
                     MHA_OK);
    /* rows (h, e) of Wo: swap the row blocks of heads 0 and 5 */
    for (int64_t e = 0; e < L.d_head_v; e++)
        for (int64_t k = 0; k < L.d_out; k++) {
            float *a = &L.wo[(0 * L.d_head_v + e) * L.d_out + k];
            float *b = &L.wo[(5 * L.d_head_v + e) * L.d_out + k];
            float t = *a;
            *a = *b;
            *b = t;
        }
    expect_verify_fails(g, &L, "swapped output heads");
    layer_clear(&g_alloc, &L);
    ir_free(g);

    /* bare Attention: softcap and scale */
    assert_int_equal(recognise("conformance", "onnx_attention_4d_softcap", &L, &err, &g), MHA_OK);
    L.softcap = 0.0f;
    expect_verify_fails(g, &L, "softcap dropped");
    L.softcap = 2.0f;
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    layer_clear(&g_alloc, &L);
    ir_free(g);

    /* bool attention mask of a layer ignored */
    assert_int_equal(recognise("conformance", "mha_padmask_d32_h4_b3_s10", &L, &err, &g), MHA_OK);
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    L.kpm_true_means_ignore = 1; /* not a KPM: must not matter */
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    L.causal = 1;
    expect_verify_fails(g, &L, "causal added");
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

/* ---- rotary embeddings as the families export them ---- */

/* The kind, the dims that turn and the model's own tables (its cos / sin
 * cache, or its inverse frequencies); the layer reproduces PyTorch's output;
 * a wrong pairing, a wrong angle or a dropped rotation is caught. */
static void test_rotary_families(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int kind;
        int64_t rotary_dim, n_pos;
        int inv_freq; /* tables made from inverse frequencies */
    } cases[] = {
        {"llama_gqa_op14", MHA_ROTARY_HALF, 8, 4096, 1},
        {"qwen2_qkvbias_op16", MHA_ROTARY_HALF, 8, 4096, 1},
        {"gptneox_rot25_op14", MHA_ROTARY_HALF, 4, 16, 0}, /* a quarter of 16 dims */
        {"pythia_rotfull_op16", MHA_ROTARY_HALF, 8, 16, 0},
        {"gptj_interleaved_op14", MHA_ROTARY_INTERLEAVED, 8, 16, 0}, /* 8 of 16 dims */
        {"falcon_mqa_op15", MHA_ROTARY_HALF, 8, 16, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layer L;
        mha_error err;
        ir_graph *g = NULL;
        recognise_ok("families", cases[i].name, &L, &g);
        if (L.rotary != cases[i].kind || L.rotary_dim != cases[i].rotary_dim ||
            L.rotary_n_pos != cases[i].n_pos || (L.rotary_inv_freq != NULL) != cases[i].inv_freq)
            fail_msg("%s: rotary kind %d dims %lld positions %lld inv_freq %d", cases[i].name,
                     L.rotary, (long long)L.rotary_dim, (long long)L.rotary_n_pos,
                     L.rotary_inv_freq != NULL);
        assert_null(L.alibi_slopes);
        assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
        check_against_expected("families", cases[i].name, &L);
        /* the other pairing */
        L.rotary = L.rotary == MHA_ROTARY_HALF ? MHA_ROTARY_INTERLEAVED : MHA_ROTARY_HALF;
        expect_verify_fails(g, &L, "rotary pairs swapped");
        L.rotary = cases[i].kind;
        /* position 1 turned the other way */
        const int64_t half = L.rotary_dim / 2;
        for (int64_t t = 0; t < half; t++)
            L.rotary_sin[half + t] = -L.rotary_sin[half + t];
        expect_verify_fails(g, &L, "an angle negated");
        for (int64_t t = 0; t < half; t++)
            L.rotary_sin[half + t] = -L.rotary_sin[half + t];
        assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
        L.rotary = MHA_ROTARY_NONE;
        expect_verify_fails(g, &L, "rotation dropped");
        L.rotary = cases[i].kind;
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
}

/* The opset-23 RotaryEmbedding op (3-D rows, num_heads, interleaved pairs,
 * 4 of each head's 8 dims) read as a rotary of the layer, its tables the
 * model's 48-row caches; com.microsoft FusedMatMul with transB = 1 read as
 * Q.K^T with its alpha as the scale. Each verified, and caught when
 * changed. */
static void test_rotary_op_and_fused_matmul(void **state) {
    (void)state;
    layer L;
    mha_error err;
    ir_graph *g = recognise_graph_ok("ropeop_3d_pairs_partial", &L);
    if (L.rotary != MHA_ROTARY_INTERLEAVED || L.rotary_dim != 4 || L.rotary_n_pos != 48 ||
        L.q_heads != 4 || L.d_head != 8)
        fail_msg("rotary op: kind %d dims %lld positions %lld heads %lld d %lld", L.rotary,
                 (long long)L.rotary_dim, (long long)L.rotary_n_pos, (long long)L.q_heads,
                 (long long)L.d_head);
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    L.rotary = MHA_ROTARY_HALF;
    expect_verify_fails(g, &L, "rotary op: pairs as halves");
    L.rotary = MHA_ROTARY_NONE;
    expect_verify_fails(g, &L, "rotary op: rotation dropped");
    layer_clear(&g_alloc, &L);
    ir_free(g);

    g = recognise_graph_ok("fusedmatmul_transb", &L);
    assert_true(fabsf(L.scale - 0.3f) < 1e-6f);
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    L.scale = 1.0f / sqrtf(8.0f);
    expect_verify_fails(g, &L, "FusedMatMul: alpha dropped");
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

/* ---- ALiBi ---- */

/* One slope per head as the file computes it, the form (key position or
 * relative), PyTorch's output (family cases); negated or dropped slopes are
 * caught by the verifier. family NULL: name is a file of recognize/. */
static void check_alibi(const char *family, const char *name, int relative, int counted,
                        const float *want) {
    layer L;
    mha_error err;
    ir_graph *g = NULL;
    if (family) {
        recognise_ok(family, name, &L, &g);
    } else {
        char path[1024];
        snprintf(path, sizeof path, "%s/recognize/%s", MHA_TEST_DATA, name);
        g = load_graph(path);
        mha_error_clear(&err);
        if (layer_recognize(&g_alloc, g, &L, &err) != MHA_OK) fail_msg("%s: %s", name, err.message);
    }
    assert_non_null(L.alibi_slopes);
    assert_int_equal(L.alibi_relative, relative);
    assert_int_equal(L.alibi_pos_from_mask, counted);
    assert_int_equal(L.rotary, MHA_ROTARY_NONE);
    assert_null(L.bias);
    for (int64_t h = 0; h < L.q_heads; h++)
        if (L.alibi_slopes[h] != want[h])
            fail_msg("%s: slope %lld is %.9g, the file's %.9g", name, (long long)h,
                     (double)L.alibi_slopes[h], (double)want[h]);
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    if (family) check_against_expected(family, name, &L);
    for (int64_t h = 0; h < L.q_heads; h++)
        L.alibi_slopes[h] = -L.alibi_slopes[h];
    expect_verify_fails(g, &L, "slopes negated");
    for (int64_t h = 0; h < L.q_heads; h++)
        L.alibi_slopes[h] = -L.alibi_slopes[h];
    float *slopes = L.alibi_slopes;
    L.alibi_slopes = NULL;
    expect_verify_fails(g, &L, "ALiBi dropped");
    L.alibi_slopes = slopes;
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

static void test_alibi(void **state) {
    (void)state;
    /* MPT, 8 heads: 1 / 2^(h + 1), from a [1, H, 1, max] buffer of
     * slope * (j - max + 1) sliced to the keys: the key-position form */
    float want[8];
    for (int h = 0; h < 8; h++)
        want[h] = exp2f(-(float)(h + 1));
    check_alibi("families", "mpt_alibi_op15", 0, 0, want);
    /* BLOOM, 4 heads: 2^(-2 (h + 1)), positions cumsum(mask) - 1 */
    const float six[6] = {0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f};
    check_alibi("families", "bloom_alibi_op14", 0, 1, six);
    /* BLOOM, 6 heads: those 4, then the recipe's 2^-1 and 2^-3 */
    check_alibi("families", "bloom_alibi_h6_op16", 0, 1, six);
    /* the paper's slope * (j - i) from runtime positions, 4 heads: the
     * relative form */
    for (int h = 0; h < 4; h++)
        want[h] = exp2f(-8.0f * (float)(h + 1) / 4.0f);
    check_alibi(NULL, "alibi_relative.onnx", 1, 0, want);
    /* BLOOM's form written with the onnx helper: counted positions */
    check_alibi(NULL, "alibi_counted.onnx", 0, 1, want);
}

/* ---- left padding under a finite causal mask ---- */

/* A query row whose every visible key is padding: the file's softmax
 * averages the keys whose total term stays finite. The form is read from
 * the graph (terms added: a padded future key overflows to -inf; merged:
 * none does), and so is the causal term (GPT-J divides finfo.min by its
 * scale); the layer reproduces PyTorch, and the verifier, which pads one
 * probe item on the left for such layers, catches the kernels' -inf. */
static void test_finite_causal_left_padding(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int form;
        int scaled_fill; /* the causal term is finfo.min over the scale */
    } cases[] = {
        {"gpt2_leftpad_op15", 1, 0},    {"llama_leftpad_op17", 2, 0}, {"gptj_leftpad_op16", 1, 1},
        {"bloom_leftpad_op17", 2, 0},   /* masked_fill of causal | padding, ALiBi */
        {"mpt_leftpad_op14", 2, 0},     /* masked_fill of each, ALiBi */
        {"mistral_leftpad_op18", 2, 0}, /* with a sliding window of finfo.min */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layer L;
        mha_error err;
        ir_graph *g = NULL;
        recognise_ok("families", cases[i].name, &L, &g);
        assert_true(L.causal);
        if (L.causal_finite != cases[i].form)
            fail_msg("%s: causal_finite %d, want %d", cases[i].name, L.causal_finite,
                     cases[i].form);
        /* finfo.min(float32) / sqrt(8), or the padding's own finfo.min */
        const float want = cases[i].scaled_fill ? (float)(-3.4028234663852886e38 / sqrt(8.0))
                                                : nextafterf(-3.4028234663852886e38f, 0.0f);
        if (fabsf(L.causal_fill - want) > 1e-6f * fabsf(want))
            fail_msg("%s: causal term %.9g, want %.9g", cases[i].name, (double)L.causal_fill,
                     (double)want);
        assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
        check_against_expected("families", cases[i].name, &L);
        const int form = L.causal_finite;
        L.causal_finite = 0;
        expect_verify_fails(g, &L, "the kernels' -inf causal mask");
        L.causal_finite = form == 1 ? 2 : 1;
        expect_verify_fails(g, &L, "the other way to combine the terms");
        L.causal_finite = form;
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
}

/* A relative bias sliced from a buffer of the model's maximum length (MPT's
 * non-causal ALiBi, -|j - i| * slope from [1, H, 16, 16]) is kept for the
 * lengths the file computes: up to 16. */
static void test_relative_bias_from_buffer(void **state) {
    (void)state;
    layer L;
    mha_error err;
    ir_graph *g = NULL;
    recognise_ok("families", "mpt_bidir_alibi_op16", &L, &g);
    assert_non_null(L.bias);
    assert_null(L.alibi_slopes);
    assert_int_equal(L.bias_rel_len, 16);
    /* head 0's slope is 2^-2 (4 heads, alibi_bias_max 8): distance 3 */
    assert_true(fabsf(L.bias[16 - 1 + 3] + 0.75f) < 1e-6f);
    assert_true(fabsf(L.bias[16 - 1 - 3] + 0.75f) < 1e-6f);
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    check_against_expected("families", "mpt_bidir_alibi_op16", &L);
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

/* ---- allocation failures: a clean status at every point, no leak ---- */

static void test_allocation_failures(void **state) {
    (void)state;
    ir_graph *g =
        load_graph(case_path("torch-export", "torch_mha_keypad_d16_h2_b2_s5", "model.onnx"));
    layer L;
    mha_error err;
    long before = mha_alloc_count();
    assert_int_equal(layer_recognize(&g_alloc, g, &L, &err), MHA_OK);
    long total = mha_alloc_count() - before;
    layer_clear(&g_alloc, &L);
    assert_true(total > 0);
    /* every point for the first 300, then a spread of 300 more */
    long step = total > 600 ? (total - 300) / 300 : 1;
    for (long n = 1; n <= total; n += (n < 300 ? 1 : step)) {
        mha_error_clear(&err);
        mha_alloc_fail_at(n, 0);
        mha_status st = layer_recognize(&g_alloc, g, &L, &err);
        mha_alloc_fail_at(0, 0);
        if (st == MHA_OK) {
            layer_clear(&g_alloc, &L);
            continue;
        }
        if (st != MHA_ERR_NO_MEMORY)
            fail_msg("allocation %ld of %ld failed: got %s (%s)", n, total, mha_status_name(st),
                     err.message);
        assert_null(L.inputs);
    }
    /* the verifier too */
    assert_int_equal(layer_recognize(&g_alloc, g, &L, &err), MHA_OK);
    before = mha_alloc_count();
    assert_int_equal(layer_verify(&g_alloc, g, &L, &err), MHA_OK);
    total = mha_alloc_count() - before;
    step = total > 600 ? (total - 300) / 300 : 1;
    for (long n = 1; n <= total; n += (n < 300 ? 1 : step)) {
        mha_error_clear(&err);
        mha_alloc_fail_at(n, 0);
        mha_status st = layer_verify(&g_alloc, g, &L, &err);
        mha_alloc_fail_at(0, 0);
        if (st != MHA_OK && st != MHA_ERR_NO_MEMORY)
            fail_msg("verify, allocation %ld of %ld failed: got %s (%s)", n, total,
                     mha_status_name(st), err.message);
    }
    layer_clear(&g_alloc, &L);
    ir_free(g);
}

int main(void) {
    mha_alloc_ctx_init(&g_alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conformance_layers),
        cmocka_unit_test(test_torch_exports),
        cmocka_unit_test(test_peer_forms),
        cmocka_unit_test(test_onnx_attention_in_scope),
        cmocka_unit_test(test_onnx_attention_whole_operator),
        cmocka_unit_test(test_rotary_families),
        cmocka_unit_test(test_rotary_op_and_fused_matmul),
        cmocka_unit_test(test_alibi),
        cmocka_unit_test(test_finite_causal_left_padding),
        cmocka_unit_test(test_relative_bias_from_buffer),
        cmocka_unit_test(test_msft_forms),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_qk_norms),
        cmocka_unit_test(test_inputs_beyond_projections),
        cmocka_unit_test(test_separate_value_input),
        cmocka_unit_test(test_bias_input_beside_mask),
        cmocka_unit_test(test_broadcast_positions_probe_batch),
        cmocka_unit_test(test_unusual_plumbing),
        cmocka_unit_test(test_two_masks),
        cmocka_unit_test(test_attention_node_cache),
        cmocka_unit_test(test_fully_masked_row),
        cmocka_unit_test(test_verify_catches_corruption),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
