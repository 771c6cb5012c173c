/* test_rotary_inputs.c -- rotary embeddings whose positions (position_ids
 * [B, S]) or cos / sin tables ([B, S, d]) are graph inputs (issue 14): the
 * model runs on every backend this machine has with positions that are not
 * 0 .. S - 1 and differ per batch item, and matches the reference
 * interpreter of the original graph; invalid positions and tables whose
 * halves differ are refused with a message. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "mha/mha.h"
#include "onnx_ir.h"

static mha_alloc_ctx g_alloc;

#define POSIDS "llama_posids_op17"
#define COSSIN "llama_cossin_op16"

enum { B = 3, S = 6 };

static const char *model_path(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/families/%s/model.onnx", MHA_TEST_DATA, name);
    return path;
}

/* The inputs of either case: hidden_states [B, S, D], attention_mask [B, S]
 * (item 1 pads its last 2 keys), then position_ids [B, S] (item b at 7 b +
 * s, item 2 counting down) or cos, sin [B, S, d] made from those positions
 * as LLaMA makes them (halves repeated). */
typedef struct case_inputs {
    tensor *t[4];
    size_t n;
} case_inputs;

static void make_inputs(int tables, int64_t D, int64_t d, case_inputs *ci) {
    memset(ci, 0, sizeof *ci);
    const int64_t dx[3] = {B, S, D}, dm[2] = {B, S}, dt[3] = {B, S, d};
    mha_error err;
    assert_int_equal(tensor_new(&g_alloc, MHA_DTYPE_FLOAT32, 3, dx, &ci->t[0], &err), MHA_OK);
    tu_fill_random(ci->t[0]->data, (size_t)(B * S * D), 0x726f7470ull);
    assert_int_equal(tensor_new(&g_alloc, MHA_DTYPE_INT64, 2, dm, &ci->t[1], &err), MHA_OK);
    for (int64_t i = 0; i < B * S; i++)
        ((int64_t *)ci->t[1]->data)[i] = !(i / S == 1 && i % S >= S - 2);
    int64_t pos[B * S];
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++)
            pos[b * S + s] = b == 2 ? 20 - s : 7 * b + s;
    if (!tables) {
        assert_int_equal(tensor_new(&g_alloc, MHA_DTYPE_INT64, 2, dm, &ci->t[2], &err), MHA_OK);
        memcpy(ci->t[2]->data, pos, sizeof pos);
        ci->n = 3;
        return;
    }
    const int64_t half = d / 2;
    for (int w = 0; w < 2; w++) {
        assert_int_equal(tensor_new(&g_alloc, MHA_DTYPE_FLOAT32, 3, dt, &ci->t[2 + w], &err),
                         MHA_OK);
        float *p = ci->t[2 + w]->data;
        for (int64_t r = 0; r < B * S; r++)
            for (int64_t c = 0; c < d; c++) {
                const float inv = powf(10000.0f, -(float)(2 * (c % half)) / (float)d);
                const float angle = (float)pos[r] * inv;
                p[r * d + c] = w ? sinf(angle) : cosf(angle);
            }
    }
    ci->n = 4;
}

static void free_inputs(case_inputs *ci) {
    for (size_t i = 0; i < 4; i++)
        tensor_free(ci->t[i]);
}

static void as_mha(const case_inputs *ci, mha_tensor *m) {
    for (size_t i = 0; i < ci->n; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].dtype = ci->t[i]->dtype;
        m[i].rank = ci->t[i]->rank;
        for (int a = 0; a < m[i].rank; a++)
            m[i].shape[a] = ci->t[i]->dims[a];
        m[i].data = ci->t[i]->data;
    }
}

/* The graph's own output on ci, by the reference interpreter. */
static float *graph_output(const char *name, const case_inputs *ci, int64_t *numel) {
    ir_graph *g = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (ir_load_file(&g_alloc, model_path(name), NULL, &g, &err) != MHA_OK)
        fail_msg("%s: %s", name, err.message);
    tensor **values = NULL;
    if (interp_run(&g_alloc, g, (const tensor *const *)ci->t, &values, &err) != MHA_OK)
        fail_msg("%s: interpreter: %s", name, err.message);
    const tensor *y = values[g->outputs[0]];
    *numel = tensor_numel(y);
    float *out = malloc((size_t)*numel * sizeof(float));
    assert_non_null(out);
    memcpy(out, y->data, (size_t)*numel * sizeof(float));
    interp_values_free(g, values);
    ir_free(g);
    return out;
}

static mha_runtime *runtime_for(const char *backend) {
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.backend = backend;
    o.num_threads = 2;
    mha_runtime *rt = NULL;
    mha_error err;
    if (mha_runtime_create(&o, &rt, &err) != MHA_OK) return NULL; /* not on this CPU */
    return rt;
}

static mha_status run_model(mha_runtime *rt, const mha_model *m, const case_inputs *ci, float *y,
                            mha_error *err) {
    mha_tensor in[4], out;
    as_mha(ci, in);
    memset(&out, 0, sizeof out);
    mha_status st = mha_model_output_shapes(m, in, ci->n, &out, 1, err);
    if (st != MHA_OK) return st;
    out.data = y;
    return mha_run(rt, m, in, ci->n, &out, 1, NULL, err);
}

static void check_case(const char *name, int tables, int64_t D, int64_t d, mha_io_role role) {
    mha_model *m = NULL;
    mha_error err;
    if (mha_model_load_file(model_path(name), NULL, &m, &err) != MHA_OK)
        fail_msg("%s: %s", name, err.message);
    mha_io_info io;
    assert_int_equal(mha_model_input(m, 2, &io), MHA_OK);
    assert_int_equal(io.role, role);
    case_inputs ci;
    make_inputs(tables, D, d, &ci);
    int64_t n = 0;
    float *want = graph_output(name, &ci, &n);
    float *got = malloc((size_t)n * sizeof(float));
    assert_non_null(got);
    static const char *const backends[] = {"scalar", "avx2", "avx512", "openmp"};
    int ran = 0;
    for (size_t k = 0; k < sizeof backends / sizeof backends[0]; k++) {
        mha_runtime *rt = runtime_for(backends[k]);
        if (!rt) continue;
        memset(got, 0, (size_t)n * sizeof(float));
        if (run_model(rt, m, &ci, got, &err) != MHA_OK)
            fail_msg("%s on %s: %s", name, backends[k], err.message);
        const double e = tu_max_rel_err(got, want, (size_t)n);
        if (!(e < 1e-4)) fail_msg("%s on %s: max error %g against the graph", name, backends[k], e);
        mha_runtime_destroy(rt);
        ran++;
    }
    assert_true(ran >= 1);
    free(got);
    free(want);
    free_inputs(&ci);
    mha_model_free(m);
}

static void test_position_ids_input(void **state) {
    (void)state;
    check_case(POSIDS, 0, 64, 8, MHA_ROLE_POSITION_IDS);
}

static void test_cos_sin_inputs(void **state) {
    (void)state;
    check_case(COSSIN, 1, 32, 8, MHA_ROLE_ROTARY_COS);
}

/* A negative position, and tables whose pairs of columns differ (here rotate-half's t and t +
 * half), are the caller's error: refused with a message, never run as something else. */
static void test_invalid_rotary_inputs(void **state) {
    (void)state;
    mha_runtime *rt = runtime_for("scalar");
    assert_non_null(rt);
    mha_error err;
    for (int tables = 0; tables < 2; tables++) {
        const char *name = tables ? COSSIN : POSIDS;
        const int64_t D = tables ? 32 : 64;
        mha_model *m = NULL;
        if (mha_model_load_file(model_path(name), NULL, &m, &err) != MHA_OK)
            fail_msg("%s: %s", name, err.message);
        case_inputs ci;
        make_inputs(tables, D, 8, &ci);
        if (tables)
            ((float *)ci.t[2]->data)[S * 8 + 1] += 0.25f; /* item 1, token 0: dim 1 != dim 5 */
        else
            ((int64_t *)ci.t[2]->data)[4] = -1;
        float *y = calloc((size_t)(B * S * D), sizeof(float));
        assert_non_null(y);
        mha_status st = run_model(rt, m, &ci, y, &err);
        assert_int_equal(st, MHA_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, tables ? "dims t and t + half" : "position_ids"));
        free(y);
        free_inputs(&ci);
        mha_model_free(m);
    }
    mha_runtime_destroy(rt);
}

int main(void) {
    mha_alloc_ctx_init(&g_alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_position_ids_input),
        cmocka_unit_test(test_cos_sin_inputs),
        cmocka_unit_test(test_invalid_rotary_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
