/* layer_reference.c -- a recognised layer run single-threaded on the
 * built-in scalar backend, no runtime needed: the reference the verifier
 * and the tests compare against.
 *
 * Its projections (most of its work at load: every attention layer of a
 * model is run here twice while it is verified) go through the
 * interpreter's blocked GEMM instead of the scalar backend's dot products,
 * with the scalar backend's numerics kept: each element summed in double
 * from 0 over k in order (the interpreter's sums, stored as doubles), then
 * the bias added in double and rounded to float once -- the scalar
 * kernel's bits, about four times faster (test_layer_reference). */
#include <string.h>

#include "exec_ext.h"
#include "interp.h"
#include "layer_reference.h"
#include "registry_table.h"

/* The state of the reference GEMM: the allocator of its scratch, and the
 * first failure of a call (the plugin ABI returns only an int). */
typedef struct reference_gemm_state {
    const mha_alloc_ctx *alloc;
    mha_error err;
    int failed;
} reference_gemm_state;

/* Packed B is B itself, [K, N] row-major: the interpreter's GEMM packs its
 * own panels per call. Float32 only (the reference precision). */
static size_t reference_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state;
    if (precision != MHA_PRECISION_FLOAT32 || K < 0 || N < 0) return SIZE_MAX;
    size_t n;
    if (!mha_mul_size((size_t)K, (size_t)N, &n) || !mha_mul_size(n, sizeof(float), &n))
        return SIZE_MAX;
    return n;
}

static int reference_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                            int64_t ldb, void *packed) {
    (void)state;
    if (precision != MHA_PRECISION_FLOAT32 || ldb < N) return -1;
    float *kn = packed;
    for (int64_t i = 0, n = K * N; i < n; i++)
        kn[i] = B[i / N * ldb + i % N];
    return 0;
}

/* C [m0, m1) x [n0, n1) = A . B + bias: the sums over k in double (the
 * interpreter's, into a scratch of doubles), + bias in double, rounded
 * once. The layer's projections carry no activation or residual (exec
 * fuses none into them); a call with either is refused. */
static int reference_gemm(void *state, const mha_gemm_args *a) {
    reference_gemm_state *s = state;
    if (!s || !a || a->precision != MHA_PRECISION_FLOAT32 || a->activation != MHA_ACT_NONE ||
        a->residual || a->m0 < 0 || a->m1 > a->M || a->n0 < 0 || a->n1 > a->N || a->K < 0)
        return -1;
    const int64_t rows = a->m1 - a->m0, cols = a->n1 - a->n0;
    if (rows <= 0 || cols <= 0) return 0;
    double *sums = mha_malloc(s->alloc, (size_t)rows * (size_t)cols * sizeof *sums);
    if (!sums) {
        s->failed = 1;
        mha_fail(&s->err, MHA_ERR_NO_MEMORY, "reference GEMM: out of memory");
        return -1;
    }
    mha_status st = MHA_OK;
    if (a->K == 0)
        memset(sums, 0, (size_t)rows * (size_t)cols * sizeof *sums);
    else {
        const interp_gemm_args g = {.M = rows,
                                    .N = cols,
                                    .K = a->K,
                                    .A = a->A + a->m0 * a->lda,
                                    .a_row = a->lda,
                                    .a_col = 1,
                                    .B = (const float *)a->B_packed + a->n0,
                                    .ldb = a->N,
                                    .Cd = sums,
                                    .ldc = cols};
        st = interp_gemm_f32(s->alloc, &g, &s->err);
    }
    if (st == MHA_OK)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                double acc = sums[i * cols + j];
                if (a->bias) acc += (double)a->bias[a->n0 + j];
                a->C[(a->m0 + i) * a->ldc + a->n0 + j] = (float)acc;
            }
    mha_free(s->alloc, sums);
    if (st != MHA_OK) s->failed = 1;
    return st == MHA_OK ? 0 : -1;
}

mha_status layer_reference_forward(const mha_alloc_ctx *a, const layer *L, const mha_tensor *inputs,
                                   size_t n_inputs, mha_tensor *outputs, size_t n_outputs,
                                   mha_error *err) {
    const mha_plugin *scalar = mha_scalar_plugin_table();
    if (!scalar) return mha_fail(err, MHA_ERR_BACKEND, "the built-in scalar backend is missing");
    /* the scalar backend's attention, rotary and norm (stateless), with the
     * reference GEMM above */
    mha_plugin p = *scalar;
    p.gemm_m_block = 1;
    p.gemm_n_block = 1;
    p.gemm_packed_size = reference_packed_size;
    p.gemm_pack_b = reference_pack_b;
    p.gemm = reference_gemm;
    p.init = NULL;
    p.fini = NULL;
    reference_gemm_state state;
    memset(&state, 0, sizeof state);
    state.alloc = a;
    exec_packed *pk = NULL;
    mha_status st = exec_pack_weights(a, L, &p, &state, MHA_PRECISION_FLOAT32, &pk, err);
    if (st == MHA_OK) {
        exec_env env;
        memset(&env, 0, sizeof env);
        env.alloc = a;
        env.plugin = &p;
        env.plugin_state = &state;
        env.num_threads = 1;
        st = exec_run(&env, L, pk, inputs, n_inputs, outputs, n_outputs, err);
    }
    exec_packed_free(a, pk);
    /* the GEMM's own reason (out of memory) rather than "gemm failed" */
    if (st != MHA_OK && state.failed) {
        if (err) *err = state.err;
        st = state.err.status;
    }
    return st;
}
