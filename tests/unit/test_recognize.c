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

#include "layer.h"
#include "onnx_ir.h"

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
    static const char *const ms[] = {"ms_mha_d32_h4", "ms_mha_d32_h4_causal"};
    for (size_t i = 0; i < 2; i++) {
        layer L;
        mha_error err;
        assert_int_equal(recognise("peer-forms", ms[i], &L, &err, NULL), MHA_ERR_MODEL_UNSUPPORTED);
        assert_non_null(strstr(err.message, "MultiHeadAttention"));
        assert_non_null(strstr(err.message, "com.microsoft"));
        assert_non_null(strstr(err.message, "'mha'"));
    }
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

static void test_onnx_attention_out_of_scope(void **state) {
    (void)state;
    static const struct {
        const char *name, *feature;
    } cases[] = {
        {"onnx_attention_23_fullymasked_qk_matmul_output_mode3_zero", "qk_matmul_output"},
        {"onnx_attention_24_qk_matmul_output_mode3_softmax_precision", "qk_matmul_output"},
        {"onnx_attention_3d_gqa_with_past_and_present", "past_key"},
        {"onnx_attention_3d_with_past_and_present", "past_key"},
        {"onnx_attention_3d_with_past_and_present_qk_matmul", "past_key"},
        {"onnx_attention_3d_with_past_and_present_qk_matmul_bias", "past_key"},
        {"onnx_attention_3d_with_past_and_present_qk_matmul_softmax", "past_key"},
        {"onnx_attention_4d_causal_nonpad_attn_mask_composition", "nonpad_kv_seqlen"},
        {"onnx_attention_4d_causal_nonpad_negative_offset_structural_empty", "nonpad_kv_seqlen"},
        {"onnx_attention_4d_diff_heads_with_past_and_present", "past_key"},
        {"onnx_attention_4d_diff_heads_with_past_and_present_mask3d", "past_key"},
        {"onnx_attention_4d_fp16", "float16"},
        {"onnx_attention_4d_gqa_causal_nonpad_decode", "nonpad_kv_seqlen"},
        {"onnx_attention_4d_gqa_causal_nonpad_decode_fp16", "nonpad_kv_seqlen"},
        {"onnx_attention_4d_gqa_with_past_and_present_fp16", "past_key"},
        {"onnx_attention_4d_with_past_and_present", "past_key"},
        {"onnx_attention_4d_with_past_and_present_qk_matmul", "past_key"},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias", "past_key"},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias_3d_mask", "past_key"},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias_3d_mask_causal", "past_key"},
        {"onnx_attention_4d_with_past_and_present_qk_matmul_bias_4d_mask", "past_key"},
        {"onnx_attention_4d_with_qk_matmul", "qk_matmul_output"},
        {"onnx_attention_4d_with_qk_matmul_softcap", "qk_matmul_output"},
        {"onnx_attention_4d_with_qk_matmul_softmax", "qk_matmul_output"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layer L;
        mha_error err;
        mha_status st = recognise("conformance", cases[i].name, &L, &err, NULL);
        if (st != MHA_ERR_MODEL_UNSUPPORTED)
            fail_msg("%s: expected a refusal, got %s (%s)", cases[i].name, mha_status_name(st),
                     err.message);
        if (!strstr(err.message, cases[i].feature) || !strstr(err.message, "Attention"))
            fail_msg("%s: message does not name '%s': %s", cases[i].name, cases[i].feature,
                     err.message);
        /* the refused layer is left empty */
        assert_null(L.inputs);
        assert_null(L.wq);
    }
}

/* ---- graphs that cannot be placed, and unusual ones that can ---- */

static void test_refusals(void **state) {
    (void)state;
    static const struct {
        const char *name, *want1, *want2;
    } cases[] = {
        {"no_attention", "no attention", "neither an Attention node nor a Softmax"},
        {"two_softmax", "Softmax", "'extra_softmax'"},
        {"unknown_op_on_path", "Sin", "'q_sin'"},
        {"where_mask", "Where", "'m_where_scores'"},
        {"softmax_axis", "Softmax", "axis"},
        {"weight_input", "MatMul", "'q_matmul'"},
        {"const_bias_mask", "Add", "'qk_const_bias'"},
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
}

static void test_unusual_plumbing(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int64_t q_heads, kv_heads;
        int causal, has_bias, kpm;
    } cases[] = {
        {"interleaved_heads", 4, 4, 0, 1, 0},
        {"kpm_attend", 4, 4, 0, 1, 1},
        {"gqa_expand", 4, 2, 0, 1, 0},
        {"gqa_tile", 4, 2, 0, 1, 0},
        {"scale_after_mask", 4, 4, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/recognize/%s.onnx", MHA_TEST_DATA, cases[i].name);
        ir_graph *g = load_graph(path);
        layer L;
        mha_error err;
        mha_error_clear(&err);
        mha_status st = layer_recognize(&g_alloc, g, &L, &err);
        if (st != MHA_OK) fail_msg("%s: %s", cases[i].name, err.message);
        assert_string_equal(L.form, "onnx-decomposed");
        assert_int_equal(L.d_model, 16);
        assert_int_equal(L.q_heads, cases[i].q_heads);
        assert_int_equal(L.kv_heads, cases[i].kv_heads);
        assert_int_equal(L.d_head, 4);
        assert_int_equal(L.causal, cases[i].causal);
        assert_int_equal(L.bq != NULL, cases[i].has_bias);
        expect_close(L.scale, 0.5, "scale", cases[i].name);
        if (cases[i].kpm) {
            assert_int_equal(L.n_inputs, 2);
            assert_int_equal(L.inputs[1].role, MHA_ROLE_KEY_PADDING_MASK);
            assert_int_equal(L.kpm_true_means_ignore, 0);
        }
        st = layer_verify(&g_alloc, g, &L, &err);
        if (st != MHA_OK) fail_msg("%s: verify: %s", cases[i].name, err.message);
        layer_clear(&g_alloc, &L);
        ir_free(g);
    }
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
        cmocka_unit_test(test_onnx_attention_out_of_scope),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_unusual_plumbing),
        cmocka_unit_test(test_verify_catches_corruption),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
