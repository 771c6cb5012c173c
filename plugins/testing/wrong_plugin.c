/* wrong_plugin.c -- the "wrong" test plugin: plain C GEMM and attention
 * kernels, correct except that every attention output element is shifted
 * by WRONG_OFFSET (1e-2), far outside the 1e-4 relative tolerance of the
 * backend checks. It exists so tests can show that `mha bench` (and any
 * other check of a backend against the scalar reference) catches an
 * inaccurate backend instead of timing it as if it were fine.
 *
 * Built into the testing plugin folder only (plugins/testing/wrong.cmake),
 * never where runtimes look by default. Its probe score (1) is below every
 * in-tree backend, so even when it is on the search path "auto" never picks
 * it: it runs only when named. Self-contained: includes plugin.h only. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mha/plugin.h"

#define WRONG_OFFSET 1e-2f
#define WRONG_SCORE 1

static int wrong_probe(uint64_t cpu_features, const char **reason) {
    (void)cpu_features;
    (void)reason;
    return WRONG_SCORE;
}

/* Packed B is B itself, made dense: [K][N] floats. */
static size_t wrong_gemm_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state;
    if (precision != MHA_PRECISION_FLOAT32) return SIZE_MAX;
    if (K <= 0 || N <= 0) return sizeof(float);
    return (size_t)K * (size_t)N * sizeof(float);
}

static int wrong_gemm_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                             int64_t ldb, void *packed) {
    (void)state;
    if (precision != MHA_PRECISION_FLOAT32) return 1;
    float *dst = packed;
    for (int64_t k = 0; k < K; k++)
        memcpy(dst + k * N, B + k * ldb, (size_t)N * sizeof(float));
    return 0;
}

/* C[m, n] = sum_k A[m, k] * Bp[k, n] (+ bias[n]), m in [m0,m1), n in [n0,n1);
 * A [M, lda], Bp [K, N], C [M, ldc]. Correct: the error is in attention. */
static int wrong_gemm(void *state, const mha_gemm_args *a) {
    (void)state;
    if (!a || a->struct_size < MHA_GEMM_ARGS_SIZE_2_0 || a->precision != MHA_PRECISION_FLOAT32 ||
        a->activation != MHA_ACT_NONE || a->residual || a->m0 < 0 || a->m0 > a->m1 ||
        a->m1 > a->M || a->n0 < 0 || a->n0 > a->n1 || a->n1 > a->N)
        return 1;
    if (a->m0 == a->m1 || a->n0 == a->n1) return 0;
    if (!a->C || (a->K > 0 && (!a->A || !a->B_packed))) return 1;
    const float *Bp = a->B_packed;
    for (int64_t m = a->m0; m < a->m1; m++) {
        for (int64_t n = a->n0; n < a->n1; n++) {
            double acc = a->bias ? a->bias[n] : 0.0;
            for (int64_t k = 0; k < a->K; k++)
                acc += (double)a->A[m * a->lda + k] * (double)Bp[k * a->N + n];
            a->C[m * a->ldc + n] = (float)acc;
        }
    }
    return 0;
}

/* Scores of one query row: Skv doubles. */
static size_t wrong_attention_workspace_size(void *state, const mha_attn_args *a) {
    (void)state;
    if (!a || a->Skv <= 0) return sizeof(double);
    return (size_t)a->Skv * sizeof(double);
}

/* The ABI's attention (see plugin.h), then O += WRONG_OFFSET.
 * Shapes: q [B, Hq, Sq, dk], k [B, Hkv, Skv, dk], v [B, Hkv, Skv, dv],
 * o [B, Hq, Sq, dv], each through its strides. */
static int wrong_attention(void *state, const mha_attn_args *a, void *workspace,
                           size_t workspace_size) {
    (void)state;
    if (!a || a->struct_size < sizeof(mha_attn_args) || a->b0 < 0 || a->b0 > a->b1 ||
        a->b1 > a->B || a->h0 < 0 || a->h0 > a->h1 || a->h1 > a->Hq || a->q0 < 0 || a->q0 > a->q1 ||
        a->q1 > a->Sq)
        return 1;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->q0 == a->q1) return 0;
    if (a->Hkv <= 0 || a->Hq % a->Hkv != 0 || !a->q || !a->k || !a->v || !a->o) return 1;
    if (workspace_size < wrong_attention_workspace_size(state, a) || !workspace) return 2;
    double *s = workspace;
    int64_t group = a->Hq / a->Hkv;
    for (int64_t b = a->b0; b < a->b1; b++) {
        for (int64_t h = a->h0; h < a->h1; h++) {
            int64_t g = h / group;
            for (int64_t i = a->q0; i < a->q1; i++) {
                const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_ss;
                float *o = a->o + b * a->o_sb + h * a->o_sh + i * a->o_ss;
                const float *mrow =
                    a->mask ? a->mask + b * a->m_sb + h * a->m_sh + i * a->m_sq : NULL;
                /* keys [0, end) may be visible: kv_len and the causal rule */
                int64_t end = a->Skv;
                if (a->kv_len && a->kv_len[b] < end) end = a->kv_len[b];
                if (a->causal) {
                    int64_t off = a->causal_offset ? a->causal_offset[b] : 0;
                    if (i + off + 1 < end) end = i + off + 1;
                }
                if (end < 0) end = 0;
                /* pass 1: scores and their max */
                double mx = -INFINITY;
                for (int64_t j = 0; j < end; j++) {
                    const float *kr = a->k + b * a->k_sb + g * a->k_sh + j * a->k_ss;
                    double d = 0.0;
                    for (int64_t c = 0; c < a->dk; c++)
                        d += (double)q[c] * (double)kr[c];
                    d *= a->scale;
                    if (a->softcap > 0.0f) d = a->softcap * tanh(d / a->softcap);
                    if (mrow) {
                        float mv = mrow[j * a->m_sk];
                        if (mv <= -FLT_MAX) {
                            s[j] = -INFINITY;
                            continue;
                        }
                        d += mv;
                    }
                    s[j] = d;
                    if (d > mx) mx = d;
                }
                /* pass 2: softmax weights and P.V (all masked: zeros) */
                for (int64_t c = 0; c < a->dv; c++)
                    o[c] = 0.0f;
                if (mx == -INFINITY) {
                    for (int64_t c = 0; c < a->dv; c++)
                        o[c] += WRONG_OFFSET;
                    continue;
                }
                double sum = 0.0;
                for (int64_t j = 0; j < end; j++) {
                    s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                    sum += s[j];
                }
                for (int64_t c = 0; c < a->dv; c++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < end; j++)
                        acc += s[j] * (double)a->v[b * a->v_sb + g * a->v_sh + j * a->v_ss + c];
                    /* pass 3: the deliberate error */
                    o[c] = (float)(acc / sum) + WRONG_OFFSET;
                }
            }
        }
    }
    return 0;
}

/* The least a 2.0 plugin may declare: no state (init and fini NULL),
 * float32, no optional op and no epilogue beyond the bias. The host must
 * still load it, give it no ALiBi (it refuses such a layer, naming the
 * plugin) and rotate Q and K itself. */
static const mha_plugin wrong_table = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "wrong",
    .version = "1.0.0",
    .description = "test plugin: correct kernels with attention output off by 1e-2",
    .flags = 0,
    .precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32),
    .ops = 0,
    .epilogues = 0,
    .probe = wrong_probe,
    .init = NULL,
    .fini = NULL,
    .gemm_m_block = 1,
    .gemm_n_block = 1,
    .gemm_packed_size = wrong_gemm_packed_size,
    .gemm_pack_b = wrong_gemm_pack_b,
    .gemm = wrong_gemm,
    .attention_workspace_size = wrong_attention_workspace_size,
    .attention = wrong_attention,
};

__attribute__((visibility("default"))) const mha_plugin *mha_plugin_get(uint32_t host_abi_major);

const mha_plugin *mha_plugin_get(uint32_t host_abi_major) {
    if (host_abi_major != MHA_PLUGIN_ABI_MAJOR) return NULL;
    return &wrong_table;
}
