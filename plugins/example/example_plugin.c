/* example_plugin.c -- a complete backend plugin written outside the
 * project, as a template for your own: plain C kernels, one exported
 * symbol, a probe. It speaks plugin ABI 2.0 with the least a plugin must
 * do: no state (init and fini NULL), float32 only, no GEMM epilogue beyond
 * the bias (the host applies activations and residuals itself), no rotary
 * entry (the host rotates Q and K with its reference code); its attention
 * adds ALiBi, so it declares MHA_OP_ALIBI. It scores 1, below
 * every in-tree backend, so `auto` never picks it; select it by name
 * (`--backend example`). Check it with `mha backends --check --backend
 * example` (the plugin test kit). */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <mha/plugin.h>

#define EXPORT __attribute__((visibility("default")))

/* Any x86-64 (or other) CPU can run plain C. */
static int example_probe(uint64_t cpu_features, const char **reason) {
    (void)cpu_features;
    (void)reason;
    return 1;
}

/* The packed B is just B copied row-major [K, N] (float32, the only
 * precision declared; SIZE_MAX says "not served" and "too large"). */
static size_t example_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state;
    if (precision != MHA_PRECISION_FLOAT32 || K < 0 || N < 0) return SIZE_MAX;
    if (N > 0 && (uint64_t)K > SIZE_MAX / sizeof(float) / (uint64_t)N) return SIZE_MAX;
    return (size_t)K * (size_t)N * sizeof(float);
}

static int example_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                          int64_t ldb, void *packed) {
    (void)state;
    if (precision != MHA_PRECISION_FLOAT32) return -1;
    float *dst = packed;
    for (int64_t k = 0; k < K; k++)
        memcpy(dst + k * N, B + k * ldb, (size_t)N * sizeof(float));
    return 0;
}

/* C[m, n] = sum_k A[m, k] B[k, n] + bias[n], summed in double in k order.
 * The host never passes an activation or a residual: none is declared. */
static int example_gemm(void *state, const mha_gemm_args *g) {
    (void)state;
    if (g->precision != MHA_PRECISION_FLOAT32 || g->activation != MHA_ACT_NONE || g->residual)
        return -1;
    const float *B = g->B_packed;
    for (int64_t m = g->m0; m < g->m1; m++)
        for (int64_t n = g->n0; n < g->n1; n++) {
            double acc = g->bias ? g->bias[n] : 0.0;
            for (int64_t k = 0; k < g->K; k++)
                acc += (double)g->A[m * g->lda + k] * B[k * g->N + n];
            g->C[m * g->ldc + n] = (float)acc;
        }
    return 0;
}

/* Scores of one query row live in the workspace: Skv doubles. */
static size_t example_workspace(void *state, const mha_attn_args *a) {
    (void)state;
    return (size_t)(a->Skv > 0 ? a->Skv : 1) * sizeof(double);
}

/* One query row: O[b,h,i,:] = softmax_j(s_j) V[b,g,j,:] over unmasked j. */
static void example_row(const mha_attn_args *a, int64_t b, int64_t h, int64_t i, double *s) {
    int64_t g = h / (a->Hq / a->Hkv);
    const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_ss;
    float *o = a->o + b * a->o_sb + h * a->o_sh + i * a->o_ss;
    int64_t last = a->Skv; /* keys [0, last) may be visible */
    if (a->kv_len && a->kv_len[b] < last) last = a->kv_len[b];
    if (a->causal) {
        int64_t off = a->causal_offset ? a->causal_offset[b] : 0;
        if (i + off + 1 < last) last = i + off + 1;
    }
    const float *slopes = a->alibi_slopes; /* ALiBi, declared by MHA_OP_ALIBI */
    const int64_t origin = a->alibi_relative ? i + (a->causal_offset ? a->causal_offset[b] : 0) : 0;
    const float *kpos = slopes && a->alibi_pos ? a->alibi_pos + b * a->alibi_pos_sb : NULL;
    double best = -INFINITY;
    for (int64_t j = 0; j < last; j++) {
        const float *k = a->k + b * a->k_sb + g * a->k_sh + j * a->k_ss;
        double dot = 0.0;
        for (int64_t d = 0; d < a->dk; d++)
            dot += (double)q[d] * k[d];
        double x = (double)(a->scale * (float)dot);
        if (a->softcap > 0) x = a->softcap * tanh(x / a->softcap);
        if (slopes)
            x += (double)slopes[h] * ((kpos ? (double)kpos[j] : (double)j) - (double)origin);
        if (a->mask) {
            float mv = a->mask[b * a->m_sb + h * a->m_sh + i * a->m_sq + j * a->m_sk];
            x = mv <= -FLT_MAX ? -INFINITY : x + mv;
        }
        s[j] = x;
        if (x > best) best = x;
    }
    for (int64_t d = 0; d < a->dv; d++)
        o[d] = 0.0f;
    if (best == -INFINITY) return; /* every key masked: a zero row */
    double sum = 0.0;
    for (int64_t j = 0; j < last; j++)
        sum += (s[j] = exp(s[j] - best));
    for (int64_t d = 0; d < a->dv; d++) {
        double acc = 0.0;
        for (int64_t j = 0; j < last; j++)
            acc += s[j] * a->v[b * a->v_sb + g * a->v_sh + j * a->v_ss + d];
        o[d] = (float)(acc / sum);
    }
}

static int example_attention(void *state, const mha_attn_args *a, void *ws, size_t ws_size) {
    (void)state;
    if (ws_size < example_workspace(NULL, a) || a->Hkv <= 0 || a->Hq % a->Hkv) return -1;
    for (int64_t b = a->b0; b < a->b1; b++)
        for (int64_t h = a->h0; h < a->h1; h++)
            for (int64_t i = a->q0; i < a->q1; i++)
                example_row(a, b, h, i, ws);
    return 0;
}

static const mha_plugin example_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "example",
    .version = "1.0.0",
    .description = "out-of-tree example: plain C kernels",
    .flags = 0,
    .precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32),
    .ops = MHA_OP_ALIBI,
    .epilogues = 0,
    .probe = example_probe,
    .init = NULL,
    .fini = NULL,
    .gemm_m_block = 1,
    .gemm_n_block = 1,
    .gemm_packed_size = example_packed_size,
    .gemm_pack_b = example_pack_b,
    .gemm = example_gemm,
    .attention_workspace_size = example_workspace,
    .attention = example_attention,
};

EXPORT const mha_plugin *mha_plugin_get(uint32_t host_abi_major) {
    return host_abi_major == MHA_PLUGIN_ABI_MAJOR ? &example_plugin : NULL;
}
