/* scalar_kernels.c -- the reference backend: plain, obviously correct C for
 * the GEMM and the attention of plugin.h, one output element (GEMM) or one
 * output row (attention) at a time, every sum accumulated in double.
 *
 * Every other backend is tested against this file, so it favours being easy
 * to check over being fast. It is compiled twice: into libmha as the
 * built-in fallback (always present, entry 0 of the registry) and into the
 * mha-plugin-scalar.so plugin (through plugins/common/plugin_entry.c).
 *
 * Numerics (why double): a reference should be more accurate than what it
 * judges. Each GEMM element and each attention row is computed in double
 * and rounded to float once at the end, so the float backends' error against
 * it is their own error, not the sum of both. The reduction order of each
 * element is fixed (k ascending; keys ascending), so the result of an
 * element never depends on the range a call covers.
 *
 * bfloat16: the operands of every product are first rounded to
 * bfloat16 exactly as the fast kernels round them (common/bf16.h: weights
 * when packed, activations when read; in attention q and k for the scores,
 * the probabilities p = exp(s - max) and v for P.V); the products are then
 * exact and summed in double as above. What a fast backend adds is only its
 * float32 summation: at most K * 2^-24 * sum |a_k b_k| away from this
 * reference for a GEMM element (the usual bound for a float chain of K
 * additions), which test_backends.c checks.
 */
#include "scalar/scalar_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/backend_scores.h"
#include "common/bf16.h"
#include "common/kernel_common.h"

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

/* Packed B is B transposed: [N][K] floats. SIZE_MAX when K*N overflows. */
size_t scalar_gemm_packed_size(int64_t K, int64_t N) {
    if (K < 0 || N < 0) return SIZE_MAX;
    if (K == 0 || N == 0) return 0;
    if ((uint64_t)K > SIZE_MAX / sizeof(float) / (uint64_t)N) return SIZE_MAX;
    return (size_t)K * (size_t)N * sizeof(float);
}

/* B: [K, N] row-major with leading dimension ldb -> packed: [N][K]. */
void scalar_gemm_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed) {
    float *bt = packed;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            bt[n * K + k] = B[k * ldb + n];
}

/* Packed B in float32 as above; in bfloat16 B transposed, [N][K] bfloat16
 * (uint16). One layout whatever the state. */
static size_t scalar_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state;
    size_t f32 = scalar_gemm_packed_size(K, N);
    if (precision == MHA_PRECISION_FLOAT32 || f32 == SIZE_MAX) return f32;
    return precision == MHA_PRECISION_BFLOAT16 ? f32 / 2 : SIZE_MAX;
}

static int scalar_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                         int64_t ldb, void *packed) {
    (void)state;
    if (precision == MHA_PRECISION_FLOAT32) {
        scalar_gemm_pack_b(K, N, B, ldb, packed);
        return KERNEL_OK;
    }
    if (precision != MHA_PRECISION_BFLOAT16) return KERNEL_ERR_ARGS;
    uint16_t *bt = packed;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            bt[n * K + k] = bf16_from_float(B[k * ldb + n]);
    return KERNEL_OK;
}

/* B^T[n][k] of either packed layout, as a double. */
static inline double scalar_packed_b(const mha_gemm_args *a, int bf, int64_t n, int64_t k) {
    if (bf) return (double)bf16_to_float(((const uint16_t *)a->B_packed)[n * a->K + k]);
    return (double)((const float *)a->B_packed)[n * a->K + k];
}

/* Pass 2 of element (m, n): bias, one rounding to float, then the
 * activation and the residual in float. */
static inline void scalar_gemm_store(const mha_gemm_args *a, int64_t m, int64_t n, double acc) {
    if (a->bias) acc += (double)a->bias[n];
    const float x = kernel_act(a->activation, (float)acc);
    a->C[m * a->ldc + n] = a->residual ? x + a->residual[m * a->ldr + n] : x;
}

/* Float32 elements 4 x 4 at a time: sixteen dot products side by side,
 * each still over k ascending in double (the same bits as one at a time),
 * so that the additions overlap instead of each waiting on the last.
 * Compiled for AVX-512 and AVX2 too (it is most of the verification of a
 * model at load): a product of two floats is exact in double, so a fused
 * multiply-add gives the bits of a multiply and an add. */
#define SCALAR_GEMM_BLOCK 4

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void
scalar_gemm_block4(const mha_gemm_args *a, int64_t m, int64_t n) {
    const float *bt = a->B_packed;
    double acc[SCALAR_GEMM_BLOCK][SCALAR_GEMM_BLOCK] = {{0.0}};
    for (int64_t k = 0; k < a->K; k++) {
        double ak[SCALAR_GEMM_BLOCK], bk[SCALAR_GEMM_BLOCK];
        for (int i = 0; i < SCALAR_GEMM_BLOCK; i++) {
            ak[i] = (double)a->A[(m + i) * a->lda + k];
            bk[i] = (double)bt[(n + i) * a->K + k];
        }
        for (int i = 0; i < SCALAR_GEMM_BLOCK; i++)
            for (int j = 0; j < SCALAR_GEMM_BLOCK; j++)
                acc[i][j] += ak[i] * bk[j];
    }
    for (int i = 0; i < SCALAR_GEMM_BLOCK; i++)
        for (int j = 0; j < SCALAR_GEMM_BLOCK; j++)
            scalar_gemm_store(a, m + i, n + j, acc[i][j]);
}

/* A: [M, K] (lda), packed B^T: [N][K] (float, or bfloat16 in that
 * precision), bias: [N] or NULL, residual [M, ldr] or NULL, C: [M, N]
 * (ldc). Writes C[m, n] for m in [m0,m1), n in [n0,n1). The epilogue is
 * the shared float code of kernel_common.h on x = A.B + bias rounded to
 * float once: a fast backend's epilogue differs from this only through its
 * own x. */
void scalar_gemm_block(const mha_gemm_args *a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (a->K == 0) { /* C = epilogue(bias); A and B may be NULL then */
        kernel_gemm_epilogue_range(a, m0, m1, n0, n1, 1);
        return;
    }
    const int bf = kernel_gemm_precision(a) == MHA_PRECISION_BFLOAT16;
    /* the float32 blocks of 4 x 4; the rest element by element below */
    const int64_t mq = bf ? m0 : m0 + (m1 - m0) / SCALAR_GEMM_BLOCK * SCALAR_GEMM_BLOCK;
    const int64_t nq = bf ? n0 : n0 + (n1 - n0) / SCALAR_GEMM_BLOCK * SCALAR_GEMM_BLOCK;
    for (int64_t m = m0; m < mq; m += SCALAR_GEMM_BLOCK)
        for (int64_t n = n0; n < nq; n += SCALAR_GEMM_BLOCK)
            scalar_gemm_block4(a, m, n);
    for (int64_t m = m0; m < m1; m++) {
        const float *arow = a->A + m * a->lda;
        for (int64_t n = m < mq ? nq : n0; n < n1; n++) {
            /* pass 1: the dot product over k, ascending, in double (bfloat16:
             * of the rounded operands, each product exact) */
            double acc = 0.0;
            for (int64_t k = 0; k < a->K; k++) {
                const double ak = bf ? (double)bf16_round(arow[k]) : (double)arow[k];
                acc += ak * scalar_packed_b(a, bf, n, k);
            }
            scalar_gemm_store(a, m, n, acc);
        }
    }
}

static int scalar_gemm(void *state, const mha_gemm_args *a) {
    (void)state;
    if (!kernel_gemm_args_ok(a) || !kernel_precision_known(kernel_gemm_precision(a)))
        return KERNEL_ERR_ARGS;
    scalar_gemm_block(a, a->m0, a->m1, a->n0, a->n1);
    return KERNEL_OK;
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

size_t scalar_attention_row_doubles(const mha_attn_args *a) {
    int64_t skv = a->Skv > 0 ? a->Skv : 0;
    int64_t dv = a->dv > 0 ? a->dv : 0;
    return (size_t)skv + (size_t)dv + 1;
}

/*
 * One output row, two-pass softmax in double:
 *   q = Q[b,h,i,:] [dk], K = K[b,g,:,:] [Skv, dk], V = V[b,g,:,:] [Skv, dv],
 *   o = O[b,h,i,:] [dv]; scratch: s [Skv] then acc [dv] (doubles).
 */
void scalar_attention_row(const mha_attn_args *a, int64_t b, int64_t h, int64_t i,
                          double *scratch) {
    const int64_t g = h / (a->Hq / a->Hkv); /* GQA: the kv head this q head reads */
    const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_ss;
    const float *kb = a->k + b * a->k_sb + g * a->k_sh;
    const float *vb = a->v + b * a->v_sb + g * a->v_sh;
    float *o = a->o + b * a->o_sb + h * a->o_sh + i * a->o_ss;
    const float *mrow = kernel_mask_row(a, b, h, i);
    const int64_t end = kernel_row_key_end(a, b, i);   /* keys >= end are masked */
    double *s = scratch;                               /* [Skv] scores; -inf = masked */
    double *acc = scratch + (a->Skv > 0 ? a->Skv : 0); /* [dv] */
    const float *slopes = kernel_alibi_slopes(a);
    const double slope = slopes ? (double)slopes[h] : 0.0;
    const int64_t origin = kernel_alibi_origin(a, b, i);
    const float *kpos = slopes ? kernel_alibi_pos(a, b) : NULL;
    const int bf = kernel_attn_precision(a) == MHA_PRECISION_BFLOAT16; /* operands rounded */

    /* pass 1: scores s[j] = scale * q.k_j, softcap, + ALiBi, + mask; and
     * their max. NaN never wins `sj > smax`, so keys that are not masked are
     * counted apart: a row of NaN scores is not a fully masked row. */
    double smax = -INFINITY;
    int64_t n_live = 0;
    for (int64_t j = 0; j < end; j++) {
        const float *kj = kb + j * a->k_ss;
        double dot = 0.0;
        for (int64_t d = 0; d < a->dk; d++)
            dot += bf ? (double)bf16_round(q[d]) * (double)bf16_round(kj[d])
                      : (double)q[d] * (double)kj[d];
        double sj = (double)a->scale * dot;
        if (a->softcap > 0.0f) sj = (double)a->softcap * tanh(sj / (double)a->softcap);
        if (slopes) sj += slope * ((kpos ? (double)kpos[j] : (double)j) - (double)origin);
        if (mrow) {
            float mv = mrow[j * a->m_sk];
            sj = kernel_mask_hides(mv) ? -INFINITY : sj + (double)mv;
        }
        s[j] = sj;
        if (sj > smax) smax = sj;
        if (sj != -INFINITY) n_live++;
    }

    /* a row with every key masked gives zeros, never NaN */
    if (n_live == 0) {
        memset(o, 0, (size_t)(a->dv > 0 ? a->dv : 0) * sizeof(float));
        return;
    }

    /* pass 2: p_j = exp(s_j - max) and their sum (masked keys give 0); a
     * NaN score, or a +inf one (inf - inf), makes the whole row NaN */
    double sum = 0.0;
    for (int64_t j = 0; j < end; j++) {
        s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - smax);
        sum += s[j];
    }

    /* pass 3: o = sum_j p_j v_j / sum, keys ascending (bfloat16: p_j and
     * v rounded, the sum of the unrounded p_j as the fast kernels keep it) */
    for (int64_t d = 0; d < a->dv; d++)
        acc[d] = 0.0;
    for (int64_t j = 0; j < end; j++) {
        if (s[j] == 0.0) continue;
        const float *vj = vb + j * a->v_ss;
        const double pj = bf ? (double)bf16_round((float)s[j]) : s[j];
        for (int64_t d = 0; d < a->dv; d++)
            acc[d] += pj * (bf ? (double)bf16_round(vj[d]) : (double)vj[d]);
    }
    for (int64_t d = 0; d < a->dv; d++)
        o[d] = (float)(acc[d] / sum);
}

static size_t scalar_attention_workspace_size(void *state, const mha_attn_args *a) {
    (void)state;
    if (!a) return 0;
    return scalar_attention_row_doubles(a) * sizeof(double);
}

static int scalar_attention(void *state, const mha_attn_args *a, void *workspace,
                            size_t workspace_size) {
    (void)state;
    if (!kernel_attn_args_ok(a) || !kernel_precision_known(kernel_attn_precision(a)))
        return KERNEL_ERR_ARGS;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->q0 == a->q1) return KERNEL_OK;
    if (!workspace || workspace_size < scalar_attention_workspace_size(state, a))
        return KERNEL_ERR_WORKSPACE;
    for (int64_t b = a->b0; b < a->b1; b++)
        for (int64_t h = a->h0; h < a->h1; h++)
            for (int64_t i = a->q0; i < a->q1; i++)
                scalar_attention_row(a, b, h, i, workspace);
    return KERNEL_OK;
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding                                                          */
/* ------------------------------------------------------------------------ */

/* One row x [d] at table row cs = cos / sin + pos * half: each rotated pair
 * computed in double and rounded once. */
static void scalar_rotary_row(const mha_rotary_args *a, float *x, const float *cs,
                              const float *sn) {
    const int64_t half = a->rotary_dim / 2;
    const int64_t step = a->kind == MHA_ROTARY_INTERLEAVED ? 1 : half; /* x2 after x1 */
    for (int64_t t = 0; t < half; t++) {
        float *p1 = a->kind == MHA_ROTARY_INTERLEAVED ? x + 2 * t : x + t;
        float *p2 = p1 + step;
        const double x1 = (double)*p1, x2 = (double)*p2, c = (double)cs[t], s = (double)sn[t];
        *p1 = (float)(x1 * c - x2 * s);
        *p2 = (float)(x2 * c + x1 * s);
    }
}

static int scalar_rotary(void *state, const mha_rotary_args *a) {
    (void)state;
    if (!kernel_rotary_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->s0 == a->s1) return KERNEL_OK;
    const int64_t half = a->rotary_dim / 2;
    for (int64_t b = a->b0; b < a->b1; b++) {
        const int64_t off = a->pos_offset ? a->pos_offset[b] : 0;
        for (int64_t h = a->h0; h < a->h1; h++)
            for (int64_t s = a->s0; s < a->s1; s++)
                scalar_rotary_row(a, a->x + b * a->x_sb + h * a->x_sh + s * a->x_ss,
                                  a->cos + (s + off) * half, a->sin + (s + off) * half);
    }
    return KERNEL_OK;
}

/* ------------------------------------------------------------------------ */
/* Plugin table                                                              */
/* ------------------------------------------------------------------------ */

/* The reference runs on any CPU: baseline x86-64 (or any C11 target). */
static int scalar_probe(uint64_t cpu_features, const char **reason) {
    (void)cpu_features;
    (void)reason;
    return MHA_SCORE_SCALAR;
}

/* ------------------------------------------------------------------------ */
/* Normalisation                                                             */
/* ------------------------------------------------------------------------ */

/* The reference of common/kernel_common.h (statistics in double), which
 * the host's plan steps run too. */
static int scalar_norm(void *state, const mha_norm_args *a) {
    (void)state;
    return kernel_norm_run(a);
}

/* No state (init and fini NULL): one layout and one set of kernels. */
static const mha_plugin scalar_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "scalar",
    .version = "0.2.0",
    .description = "reference kernels: plain C, double accumulation",
    .flags = 0,
    .precisions =
        MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32) | MHA_PRECISION_BIT(MHA_PRECISION_BFLOAT16),
    .ops = MHA_OP_ALIBI | MHA_OP_ROTARY | MHA_OP_NORM,
    .epilogues = KERNEL_EPILOGUES,
    .probe = scalar_probe,
    .init = NULL,
    .fini = NULL,
    .gemm_m_block = 1,
    .gemm_n_block = 1,
    .gemm_packed_size = scalar_packed_size,
    .gemm_pack_b = scalar_pack_b,
    .gemm = scalar_gemm,
    .attention_workspace_size = scalar_attention_workspace_size,
    .attention = scalar_attention,
    .rotary = scalar_rotary,
    .norm = scalar_norm,
};

const mha_plugin *mha_scalar_plugin_table(void) {
    return &scalar_plugin;
}
