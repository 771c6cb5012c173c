/* test_interp_gemm.c -- the blocked reference GEMM (interp_gemm.c) and the
 * Conv that runs on it, bit for bit against the plain loops they replace:
 * odd sizes around every block size (rows, columns, steps of k), a row and a
 * column init, the double output, a transposed A; and a Conv with strides,
 * dilations and groups against the loop over its taps. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "onnx_ir.h"

static mha_alloc_ctx A;

static uint64_t gemm_rand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

/* floats of all magnitudes and both signs, some zero, so that a change of
 * the order of the sums shows in the last bits */
static void gemm_fill(float *x, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t r = gemm_rand(s);
        const double u = (double)(r & 0xffffff) / 16777216.0 - 0.5;
        x[i] = (r >> 24) % 17 == 0 ? 0.0f : (float)ldexp(u, (int)((r >> 30) % 24) - 12);
    }
}

/* The loop interp_gemm_f32 must equal: element by element, from init, k in
 * order, in double. */
static double plain_sum(const interp_gemm_args *g, int64_t m, int64_t n) {
    double acc = g->init ? (double)g->init[g->init_per_row ? m : n] : 0.0;
    for (int64_t k = 0; k < g->K; k++)
        acc += (double)g->A[m * g->a_row + k * g->a_col] * (double)g->B[k * g->ldb + n];
    return acc;
}

static void check_gemm(int64_t M, int64_t N, int64_t K, int trans_a, int init_mode, int dbl) {
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)(M * 131 + N * 17 + K);
    const int64_t ldb = N + 3, ldc = N + 1; /* strides wider than the rows */
    float *a = malloc((size_t)(M * K + 1) * sizeof *a);
    float *b = malloc((size_t)(K * ldb + 1) * sizeof *b);
    float *init = malloc((size_t)(M + N + 1) * sizeof *init);
    float *c = malloc((size_t)(M * ldc + 1) * sizeof *c);
    double *cd = malloc((size_t)(M * ldc + 1) * sizeof *cd);
    assert_true(a && b && init && c && cd);
    gemm_fill(a, (size_t)(M * K), &seed);
    gemm_fill(b, (size_t)(K * ldb), &seed);
    gemm_fill(init, (size_t)(M + N), &seed);
    for (int64_t i = 0; i < M * ldc; i++) {
        c[i] = -7.0f; /* the gaps between rows must stay as they were */
        cd[i] = -7.0;
    }
    interp_gemm_args g = {.M = M,
                          .N = N,
                          .K = K,
                          .A = a,
                          .a_row = trans_a ? 1 : K,
                          .a_col = trans_a ? M : 1,
                          .B = b,
                          .ldb = ldb,
                          .init = init_mode ? init : NULL,
                          .init_per_row = init_mode == 2,
                          .C = dbl ? NULL : c,
                          .Cd = dbl ? cd : NULL,
                          .ldc = ldc};
    mha_error err;
    assert_int_equal(interp_gemm_f32(&A, &g, &err), MHA_OK);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < ldc; n++) {
            const int64_t at = m * ldc + n;
            if (n >= N) {
                assert_true(dbl ? cd[at] == -7.0 : c[at] == -7.0f);
                continue;
            }
            const double want = plain_sum(&g, m, n);
            if (dbl) {
                assert_memory_equal(&cd[at], &want, sizeof want);
            } else {
                const float wf = (float)want;
                assert_memory_equal(&c[at], &wf, sizeof wf);
            }
        }
    free(a);
    free(b);
    free(init);
    free(c);
    free(cd);
}

/* Sizes on both sides of every block: rows 6 / 192, columns 8 / 64, steps
 * of k 256, and the degenerate ones. */
static void test_gemm_sizes(void **state) {
    (void)state;
    static const int64_t sizes[][3] = {{1, 1, 1},      {1, 1, 0},    {5, 7, 3},     {6, 8, 1},
                                       {7, 9, 257},    {13, 19, 37}, {97, 65, 5},   {3, 129, 300},
                                       {101, 70, 513}, {2, 200, 64}, {192, 8, 256}, {197, 13, 40},
                                       {385, 66, 7}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int mode = 0; mode < 3; mode++)
            check_gemm(sizes[i][0], sizes[i][1], sizes[i][2], (int)(i & 1), mode, mode == 1);
}

/* A long k: a pass of A holds only one chunk of rows (two passes, of 192
 * and 2 rows), a block of B one block of columns (three, the last of 2),
 * k in many tiles and slices: every loop of the blocking with its edges. */
static void test_gemm_long_k(void **state) {
    (void)state;
    check_gemm(194, 130, 8200, 0, 1, 0);
}

/* A transposed, the double output, no init: what Gemm (transA) asks. */
static void test_gemm_transposed(void **state) {
    (void)state;
    check_gemm(23, 17, 29, 1, 0, 1);
    check_gemm(100, 9, 11, 1, 1, 0);
}

/* NaN and infinities stay in their own elements: the zero padding beside
 * them is summed and dropped. */
static void test_gemm_specials(void **state) {
    (void)state;
    float a[3 * 2] = {1, 2, INFINITY, 1, 0, 1}, b[2 * 3] = {1, NAN, 2, 3, 4, -INFINITY};
    float c[3 * 3];
    interp_gemm_args g = {
        .M = 3, .N = 3, .K = 2, .A = a, .a_row = 2, .a_col = 1, .B = b, .ldb = 3, .C = c, .ldc = 3};
    mha_error err;
    assert_int_equal(interp_gemm_f32(&A, &g, &err), MHA_OK);
    assert_true(c[0] == 7.0f && isnan(c[1]) && isinf(c[2]) && c[2] < 0);
    assert_true(isinf(c[3]) && isnan(c[4]) && isnan(c[5]));
    assert_true(c[6] == 3.0f && isnan(c[7]) && isinf(c[8]));
}

static tensor *gemm_tensor(int rank, const int64_t *dims, uint64_t *seed) {
    tensor *t = NULL;
    mha_error err;
    assert_int_equal(tensor_new(&A, MHA_DTYPE_FLOAT32, rank, dims, &t, &err), MHA_OK);
    gemm_fill(t->data, (size_t)tensor_numel(t), seed);
    return t;
}

/* A node of op reading n_in values ins, writing outs[0]. */
static ir_node gemm_node(const char *op, int *ins, size_t n_in, int *outs) {
    ir_node n;
    memset(&n, 0, sizeof n);
    n.name = (char *)op;
    n.op_type = (char *)op;
    n.domain = (char *)"";
    n.inputs = ins;
    n.n_inputs = n_in;
    n.outputs = outs;
    n.n_outputs = 1;
    return n;
}

/* MatMul of A [S, B, K] by a weight [K, N] (a projection of a
 * sequence-first layer: S batches of B rows) is one GEMM over all S.B
 * rows: the plain loop's bits for every batch; and the same node for its
 * shape only is zeros of that shape. */
static void test_matmul_shared_weight(void **state) {
    (void)state;
    const int64_t S = 9, Bt = 2, K = 70, N = 33;
    const int64_t ad[3] = {S, Bt, K}, wd[2] = {K, N};
    uint64_t seed = 7;
    tensor *in[2] = {gemm_tensor(3, ad, &seed), gemm_tensor(2, wd, &seed)}, *out[1] = {NULL};
    int ins[2] = {0, 1}, outs[1] = {2};
    ir_node n = gemm_node("MatMul", ins, 2, outs);
    mha_error err;
    assert_int_equal(interp_eval_node(&A, NULL, &n, in, out, &err), MHA_OK);
    assert_true(out[0]->rank == 3 && out[0]->dims[0] == S && out[0]->dims[1] == Bt &&
                out[0]->dims[2] == N);
    const float *a = in[0]->data, *w = in[1]->data, *y = out[0]->data;
    for (int64_t r = 0; r < S * Bt; r++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)a[r * K + k] * (double)w[k * N + j];
            const float want = (float)acc;
            assert_memory_equal(&y[r * N + j], &want, sizeof want);
        }
    tensor_free(out[0]);
    out[0] = NULL;
    assert_int_equal(interp_eval_node_shape(&A, NULL, &n, in, out, &err), MHA_OK);
    assert_true(out[0]->rank == 3 && out[0]->dims[0] == S && out[0]->dims[2] == N);
    for (int64_t i = 0; i < tensor_numel(out[0]); i++)
        assert_true(((const float *)out[0]->data)[i] == 0.0f);
    tensor_free(out[0]);
    tensor_free(in[0]);
    tensor_free(in[1]);
}

/* The Conv of interp_conv.c (without padding, on interp_gemm_f32) against
 * its taps summed one by one from the bias: strides, dilations, groups. */
static void test_conv_as_gemm(void **state) {
    (void)state;
    const int64_t N = 2, C = 4, H = 11, W = 9, M = 6, group = 2, kH = 3, kW = 2;
    const int64_t Cg = C / group, Mg = M / group, sh = 2, sw = 1, dh = 1, dw = 3;
    const int64_t OH = (H - (dh * (kH - 1) + 1)) / sh + 1, OW = (W - (dw * (kW - 1) + 1)) / sw + 1;
    uint64_t seed = 42;
    float x[2 * 4 * 11 * 9], w[6 * 2 * 3 * 2], bias[6];
    gemm_fill(x, sizeof x / sizeof x[0], &seed);
    gemm_fill(w, sizeof w / sizeof w[0], &seed);
    gemm_fill(bias, 6, &seed);
    tensor *in[3] = {NULL, NULL, NULL}, *out[1] = {NULL};
    const int64_t xd[4] = {N, C, H, W}, wd[4] = {M, Cg, kH, kW}, bd[1] = {M};
    mha_error err;
    assert_int_equal(tensor_new(&A, MHA_DTYPE_FLOAT32, 4, xd, &in[0], &err), MHA_OK);
    assert_int_equal(tensor_new(&A, MHA_DTYPE_FLOAT32, 4, wd, &in[1], &err), MHA_OK);
    assert_int_equal(tensor_new(&A, MHA_DTYPE_FLOAT32, 1, bd, &in[2], &err), MHA_OK);
    memcpy(in[0]->data, x, sizeof x);
    memcpy(in[1]->data, w, sizeof w);
    memcpy(in[2]->data, bias, sizeof bias);
    ir_attr attrs[3];
    int64_t strides[2] = {sh, sw}, dil[2] = {dh, dw};
    memset(attrs, 0, sizeof attrs);
    attrs[0].name = (char *)"group";
    attrs[0].type = IR_ATTR_INT;
    attrs[0].i = group;
    attrs[1].name = (char *)"strides";
    attrs[1].type = IR_ATTR_INTS;
    attrs[1].ints = strides;
    attrs[1].n = 2;
    attrs[2].name = (char *)"dilations";
    attrs[2].type = IR_ATTR_INTS;
    attrs[2].ints = dil;
    attrs[2].n = 2;
    int ins[3] = {0, 1, 2}, outs[1] = {3};
    ir_node n = gemm_node("Conv", ins, 3, outs);
    n.attrs = attrs;
    n.n_attrs = 3;
    assert_int_equal(interp_eval_node(&A, NULL, &n, in, out, &err), MHA_OK);
    assert_int_equal(out[0]->rank, 4);
    assert_true(out[0]->dims[2] == OH && out[0]->dims[3] == OW);
    const float *y = out[0]->data;
    for (int64_t b = 0; b < N; b++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    const int64_t g = m / Mg;
                    double acc = (double)bias[m];
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t i = 0; i < kH; i++)
                            for (int64_t j = 0; j < kW; j++)
                                acc +=
                                    (double)x[((b * C + g * Cg + ci) * H + oh * sh + i * dh) * W +
                                              ow * sw + j * dw] *
                                    (double)w[((m * Cg + ci) * kH + i) * kW + j];
                    const float want = (float)acc;
                    assert_memory_equal(&y[((b * M + m) * OH + oh) * OW + ow], &want, sizeof want);
                }
    for (int k = 0; k < 3; k++)
        tensor_free(in[k]);
    tensor_free(out[0]);
}

int main(void) {
    mha_alloc_ctx_init(&A, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_sizes),      cmocka_unit_test(test_gemm_long_k),
        cmocka_unit_test(test_gemm_transposed), cmocka_unit_test(test_matmul_shared_weight),
        cmocka_unit_test(test_gemm_specials),   cmocka_unit_test(test_conv_as_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
