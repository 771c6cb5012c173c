/* kernel_common.h -- plain-C helpers every backend's kernels share: checking
 * the argument structs of plugin.h before touching memory, the key range a
 * query row may see (causal + kv_len), and the "masked" test of a mask
 * value. Header-only (static inline), ISA-neutral, so it can be compiled
 * into any kernel file whatever its ISA flags. */
#ifndef MHA_BACKENDS_KERNEL_COMMON_H
#define MHA_BACKENDS_KERNEL_COMMON_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mha/plugin.h"

/* Kernel status codes (0 = ok); the host maps nonzero to MHA_ERR_PLUGIN. */
#define KERNEL_OK 0
#define KERNEL_ERR_ARGS 1      /* inconsistent shapes, ranges or pointers */
#define KERNEL_ERR_WORKSPACE 2 /* workspace smaller than workspace_size() */

/* A mask value hides its key when it is -inf or the lowest float: the ABI
 * says "masked = value <= -FLT_MAX" (so boolean masks converted with
 * -FLT_MAX by some exporters behave like -inf). */
static inline int kernel_mask_hides(float value) {
    return value <= -FLT_MAX;
}

/* Checks a GEMM call: sizes >= 0, the range inside [0,M) x [0,N), the
 * pointers it needs present, leading dimensions wide enough and a known
 * activation. */
static inline int kernel_gemm_args_ok(const mha_gemm_args *a) {
    if (!a || a->struct_size < MHA_GEMM_ARGS_SIZE_2_0) return 0;
    if (a->M < 0 || a->N < 0 || a->K < 0) return 0;
    if (a->m0 < 0 || a->m0 > a->m1 || a->m1 > a->M) return 0;
    if (a->n0 < 0 || a->n0 > a->n1 || a->n1 > a->N) return 0;
    if (a->activation < MHA_ACT_NONE || a->activation >= MHA_ACT_COUNT) return 0;
    if (a->m0 == a->m1 || a->n0 == a->n1) return 1; /* nothing to touch */
    if (!a->C || a->ldc < a->N) return 0;
    if (a->residual && a->ldr < a->N) return 0;
    if (a->K > 0 && (!a->A || !a->B_packed || a->lda < a->K)) return 0;
    return 1;
}

/* Rows [m, m + mr) x columns [cn0, cn1) of C to (in) or from (out) the
 * edge tile ct [mr][nr], whose column 0 is C's column c0: the blocked GEMMs
 * run a tile that hangs over the range through ct. */
static inline void kernel_gemm_tile_in(const mha_gemm_args *a, float *ct, int64_t nr, int64_t m,
                                       int64_t mr, int64_t c0, int64_t cn0, int64_t cn1) {
    for (int64_t r = 0; r < mr; r++)
        for (int64_t n = cn0; n < cn1; n++)
            ct[r * nr + (n - c0)] = a->C[(m + r) * a->ldc + n];
}

static inline void kernel_gemm_tile_out(const mha_gemm_args *a, const float *ct, int64_t nr,
                                        int64_t m, int64_t mr, int64_t c0, int64_t cn0,
                                        int64_t cn1) {
    for (int64_t r = 0; r < mr; r++)
        for (int64_t n = cn0; n < cn1; n++)
            a->C[(m + r) * a->ldc + n] = ct[r * nr + (n - c0)];
}

/*
 * erf(x) in float arithmetic alone (+, -, *, fmaf, compares, copysign): no
 * libm call where the ISA has an FMA, so a loop of it vectorises at every
 * ISA width, and every backend compiling it (-ffp-contract=off; fmaf is
 * exactly rounded everywhere) gets the same bits. Two polynomials
 * fitted here (least squares reweighted towards the largest error), both
 * evaluated and one chosen:
 *   |x| < 1:          |x| + |x| * P(x^2), P of degree 6 (P(0) = 2/sqrt(pi)
 *                     - 1: the leading 1 kept apart adds its bits exactly)
 *   1 <= |x| < 3.9192: 1 - E(|x| - 2.4596), E of degree 14 fitting erfc
 *                     within 7e-9 absolute
 *   |x| >= 3.9192:     1 (erf rounds to 1 in float from there), Inf too
 * then the sign of x (erf(-0) = -0), NaN stays NaN. Measured against erf in
 * double over every float (test_erf_bound): at most 1.24 ulp (libm's erff
 * at most 0.9; 1.46 when the polynomials ran a multiply and an add per
 * step), so a GELU moves by ulps, never more.
 */
/* c[0] + c[1] t + ... + c[n - 1] t^(n - 1), by Horner from the top, one
 * fused multiply-add per step: fmaf rounds once, exactly as IEEE says, so
 * the FMA instruction of a vector loop and libm's fmaf of a build without
 * one give the same bits (-ffp-contract=off only stops the compiler from
 * fusing a * b + c on its own). Half the operations of a multiply and an
 * add: the polynomials are the GELU epilogue's cost. */
static inline float kernel_horner(const float *c, int n, float t) {
    float r = c[n - 1];
    for (int i = n - 2; i >= 0; i--)
        r = fmaf(r, t, c[i]);
    return r;
}

/* kernel_erf's polynomials and break points (a SIMD copy of its steps, as
 * a kernel file's GELU span, reads them here: one set of numbers). */
static const float KERNEL_ERF_P[7] = {1.283791660e-01f,  -3.761262464e-01f, 1.128357118e-01f,
                                      -2.685320599e-02f, 5.187138645e-03f,  -7.999440278e-04f,
                                      7.817408896e-05f};
static const float KERNEL_ERF_E[15] = {
    5.044171823e-04f,  -2.661468658e-03f, 6.546328516e-03f,  -9.848345143e-03f, 9.927787523e-03f,
    -6.806526066e-03f, 2.938475217e-03f,  -4.583268309e-04f, -3.570151933e-04f, 3.000430636e-04f,
    -7.568634089e-05f, -2.484151630e-05f, 1.731979097e-05f,  -8.039911426e-08f, -1.092574442e-06f};
#define KERNEL_ERF_E_CENTRE 2.4596f /* E's argument is |x| - this */
#define KERNEL_ERF_ONE_FROM 3.9192f /* erf rounds to 1 from here */
#define KERNEL_GELU_ERF_SCALE 0.70710678118654752f

static inline float kernel_erf(float x) {
    const float a = fabsf(x);
    const float p = kernel_horner(KERNEL_ERF_P, 7, a * a),
                q = kernel_horner(KERNEL_ERF_E, 15, a - KERNEL_ERF_E_CENTRE);
    float r = a < 1.0f ? fmaf(a, p, a) : 1.0f - q;
    r = a >= KERNEL_ERF_ONE_FROM ? 1.0f : r;
    return copysignf(r, x);
}

/* GELU in its erf form, on kernel_erf. */
static inline float kernel_gelu_erf(float x) {
    return 0.5f * x * (1.0f + kernel_erf(x * KERNEL_GELU_ERF_SCALE));
}

/*
 * tanh(x) in float arithmetic alone, like kernel_erf (libm's tanhf, over
 * expm1f, was 16 % of a GPT-2 run in its GELU epilogue, one call per element):
 *   tanh(a) = m / (m + 2),  m = expm1(2a),  a = |x|
 * with m = 2^n (expm1(r) + 1) - 1 = 2^n expm1(r) + (2^n - 1), where
 * 2a = n ln2 + r, |r| <= ln2 / 2 (ln2 in two parts: n ln2_hi is exact), and
 * expm1(r) its Taylor polynomial to r^9 (the rest below 1e-11 of r). No
 * cancellation near 0 (m ~ 2a), 1 from a >= 9 (tanh rounds to 1 in float),
 * then the sign of x; NaN stays NaN. Both polynomials by fmaf Horner steps.
 * Bound (test_kernel_erf: every 97th float against tanh in double): 1.5 ulp
 * (measured 1.49).
 */
static inline float kernel_tanh(float x) {
    const float a = fabsf(x);
    const float y = a < 9.0f ? a + a : 18.0f; /* NaN too: no float-to-int of a NaN */
    /* n = round(y / ln2) by the 1.5 * 2^23 trick (no float-to-int conversion,
     * which keeps gcc from vectorising the loop); its bits hold n too */
    const float kf = y * 1.44269504088896341f + 12582912.0f;
    const float n = kf - 12582912.0f;
    const float r = (y - n * 0.693145751953125f) - n * 1.42860676533018570e-06f;
    static const float X[8] = {0.5f,
                               1.66666672e-01f,
                               4.16666679e-02f,
                               8.33333377e-03f,
                               1.38888892e-03f,
                               1.98412701e-04f,
                               2.48015876e-05f,
                               2.75573188e-06f};
    const float p = fmaf(r * r, kernel_horner(X, 8, r), r);
    int32_t kb;
    memcpy(&kb, &kf, sizeof kb);
    const int32_t bits = (kb - 0x4B400000 + 127) << 23; /* 2^n */
    float s;
    memcpy(&s, &bits, sizeof s);
    const float m = fmaf(p, s, s - 1.0f);
    /* below 0.4 the odd series to a^15 (the rest below 1e-9 of a): the
     * quotient's three roundings would cost 2.4 ulp there */
    static const float T[7] = {-3.33333343e-01f, 1.33333340e-01f, -5.39682545e-02f, 2.18694881e-02f,
                               -8.86323489e-03f, 3.59212966e-03f, -1.45583438e-03f};
    const float a2 = a * a;
    const float q = fmaf(a * a2, kernel_horner(T, 7, a2), a);
    const float d = m / (m + 2.0f); /* computed for every x: a select, not a branch */
    float t = a < 0.4f ? q : a < 9.0f ? d : 1.0f;
    t = copysignf(t, x);
    return x != x ? x : t;
}

/* GELU in its tanh form (GPT-2's gelu_new), on kernel_tanh. */
static inline float kernel_gelu_tanh(float x) {
    return 0.5f * x * (1.0f + kernel_tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

/* The activation of a GEMM epilogue on x = A.B + bias (plugin.h). Plain
 * float C: every backend compiles this same code (with -ffp-contract=off),
 * so for the same x they agree bit for bit; the scalar reference applies it
 * to its own x, rounded to float first. */
static inline float kernel_act(int act, float x) {
    switch (act) {
    case MHA_ACT_GELU_ERF:
        return kernel_gelu_erf(x);
    case MHA_ACT_GELU_TANH:
        return kernel_gelu_tanh(x);
    case MHA_ACT_RELU:
        return x > 0.0f ? x : (x == x ? 0.0f : x); /* -0 gives 0, NaN stays NaN */
    case MHA_ACT_SILU:
        return x / (1.0f + expf(-x));
    default:
        return x;
    }
}

/* mha_plugin.epilogues of a backend whose GEMM ends in
 * kernel_gemm_epilogue: every activation and the residual. */
#define KERNEL_EPILOGUES                                                                           \
    (MHA_EPILOGUE_ACT(MHA_ACT_GELU_ERF) | MHA_EPILOGUE_ACT(MHA_ACT_GELU_TANH) |                    \
     MHA_EPILOGUE_ACT(MHA_ACT_RELU) | MHA_EPILOGUE_ACT(MHA_ACT_SILU) | MHA_EPILOGUE_RESIDUAL)

/* A kernel file's GELU (erf) over c[n0, n1) in place, bitwise the plain
 * loop of kernel_gelu_erf (avx512_gemm.h's runs 4 vectors at a time). */
typedef void (*kernel_gelu_span_fn)(float *c, int64_t n0, int64_t n1);

/* The epilogue of one row's columns [n0, n1): each step a plain loop, its
 * test hoisted out (the compiler vectorises them: a test per element cost
 * 7 % of a projection GEMM); every element goes through the same
 * operations as one at a time, so the bits do not depend on the loop's
 * form. r: the residual row or NULL; gelu_erf: NULL or the GELU's span. */
static inline void kernel_gemm_epilogue_span(float *c, const float *bias, int act, const float *r,
                                             int64_t n0, int64_t n1, int from_zero,
                                             kernel_gelu_span_fn gelu_erf) {
    if (from_zero) {
        for (int64_t n = n0; n < n1; n++)
            c[n] = bias ? bias[n] : 0.0f;
    } else if (bias) {
        for (int64_t n = n0; n < n1; n++)
            c[n] = c[n] + bias[n];
    }
    if (act == MHA_ACT_GELU_ERF && gelu_erf)
        gelu_erf(c, n0, n1);
    else if (act == MHA_ACT_GELU_ERF) /* its own loop: this one vectorises */
        for (int64_t n = n0; n < n1; n++)
            c[n] = kernel_gelu_erf(c[n]);
    else if (act == MHA_ACT_GELU_TANH) /* likewise */
        for (int64_t n = n0; n < n1; n++)
            c[n] = kernel_gelu_tanh(c[n]);
    else if (act != MHA_ACT_NONE)
        for (int64_t n = n0; n < n1; n++)
            c[n] = kernel_act(act, c[n]);
    if (r)
        for (int64_t n = n0; n < n1; n++)
            c[n] = c[n] + r[n];
}

/* The epilogue of a row without an activation, once its k chain is
 * complete: c = (c + bias) + r over [n0, n1) in one loop (bias or r may be
 * NULL), the same two additions in the same order as the span's separate
 * loops, so the same bits. One pass loads and stores each element once:
 * alone (72 x 768 floats, bias + residual, CPU time) 0.74x the span's two
 * loops, bias only 0.83x (docs/PERFORMANCE.md, "model18"). */
static inline void kernel_gemm_epilogue_add_row(float *c, const float *bias, const float *r,
                                                int64_t n0, int64_t n1) {
    if (bias && r)
        for (int64_t n = n0; n < n1; n++)
            c[n] = (c[n] + bias[n]) + r[n];
    else if (bias)
        for (int64_t n = n0; n < n1; n++)
            c[n] = c[n] + bias[n];
    else if (r)
        for (int64_t n = n0; n < n1; n++)
            c[n] = c[n] + r[n];
}

/* Columns of a row that one pass of the epilogue's steps covers: 1 KiB, so
 * that the steps after the first find the span in L1 (the block is in L2:
 * a pass per step over the whole row loaded and stored every element
 * again, a third of a GELU epilogue's time). */
#define KERNEL_EPILOGUE_SPAN 256

/* The epilogue of C[m0:m1, n0:n1] once its k chain is complete (`from_zero`:
 * K == 0, the product is 0 and C is not read): C = act(C + bias) +
 * residual, element by element, while the tile is in cache; gelu_erf as
 * kernel_gemm_epilogue_span's. */
static inline void kernel_gemm_epilogue_rows(const mha_gemm_args *a, int64_t m0, int64_t m1,
                                             int64_t n0, int64_t n1, int from_zero,
                                             kernel_gelu_span_fn gelu_erf) {
    if (!from_zero && !a->bias && a->activation == MHA_ACT_NONE && !a->residual) return;
    if (!from_zero && a->activation == MHA_ACT_NONE) { /* bias and / or residual: one pass */
        for (int64_t m = m0; m < m1; m++)
            kernel_gemm_epilogue_add_row(a->C + m * a->ldc, a->bias,
                                         a->residual ? a->residual + m * a->ldr : NULL, n0, n1);
        return;
    }
    for (int64_t m = m0; m < m1; m++) {
        float *c = a->C + m * a->ldc;
        const float *r = a->residual ? a->residual + m * a->ldr : NULL;
        for (int64_t n = n0; n < n1; n += KERNEL_EPILOGUE_SPAN)
            kernel_gemm_epilogue_span(c, a->bias, a->activation, r, n,
                                      n1 - n < KERNEL_EPILOGUE_SPAN ? n1 : n + KERNEL_EPILOGUE_SPAN,
                                      from_zero, gelu_erf);
    }
}

/* kernel_gemm_epilogue_rows with the plain GELU loop. */
static inline void kernel_gemm_epilogue_range(const mha_gemm_args *a, int64_t m0, int64_t m1,
                                              int64_t n0, int64_t n1, int from_zero) {
    kernel_gemm_epilogue_rows(a, m0, m1, n0, n1, from_zero, NULL);
}

/* The epilogue of rows [mb, mb + rows) over the columns of panels
 * [p_first, p_last] (nr wide) inside [n0, n1): once, after the whole k
 * chain (gelu_erf: NULL, or the kernel file's GELU span). */
static inline void kernel_gemm_epilogue(const mha_gemm_args *a, int64_t mb, int64_t rows,
                                        int64_t p_first, int64_t p_last, int64_t nr,
                                        kernel_gelu_span_fn gelu_erf) {
    const int64_t n0 = a->n0 > p_first * nr ? a->n0 : p_first * nr;
    const int64_t n1 = a->n1 < (p_last + 1) * nr ? a->n1 : (p_last + 1) * nr;
    kernel_gemm_epilogue_rows(a, mb, mb + rows, n0, n1, 0, gelu_erf);
}

/* The precision of a GEMM call (MHA_PRECISION_*). */
static inline int kernel_gemm_precision(const mha_gemm_args *a) {
    return a->precision;
}

/* The precision of an attention call. */
static inline int kernel_attn_precision(const mha_attn_args *a) {
    return a->precision;
}

/* 1 for the precisions the in-tree backends know. */
static inline int kernel_precision_known(int precision) {
    return precision == MHA_PRECISION_FLOAT32 || precision == MHA_PRECISION_BFLOAT16;
}

/* The ALiBi slopes [Hq] of an attention call, or NULL. */
static inline const float *kernel_alibi_slopes(const mha_attn_args *a) {
    return a->alibi_slopes;
}

/* ALiBi key positions of batch item b [Skv], or NULL (key j is at j). */
static inline const float *kernel_alibi_pos(const mha_attn_args *a, int64_t b) {
    return a->alibi_pos ? a->alibi_pos + b * a->alibi_pos_sb : NULL;
}

/* The key position ALiBi measures from in row i of batch item b: 0, or the
 * query's own position i + causal_offset[b] in the relative form. */
static inline int64_t kernel_alibi_origin(const mha_attn_args *a, int64_t b, int64_t i) {
    if (!a->alibi_relative) return 0;
    return i + (a->causal_offset ? a->causal_offset[b] : 0);
}

/* Checks an attention call: sizes >= 0, Hq a multiple of Hkv (GQA), the
 * range inside [0,B) x [0,Hq) x [0,Sq) and the tensors it reads present.
 */
static inline int kernel_attn_args_ok(const mha_attn_args *a) {
    if (!a || a->struct_size < MHA_ATTN_ARGS_SIZE_2_0) return 0;
    if (a->B < 0 || a->Hq < 0 || a->Hkv < 0 || a->Sq < 0 || a->Skv < 0 || a->dk < 0 || a->dv < 0)
        return 0;
    if (a->b0 < 0 || a->b0 > a->b1 || a->b1 > a->B) return 0;
    if (a->h0 < 0 || a->h0 > a->h1 || a->h1 > a->Hq) return 0;
    if (a->q0 < 0 || a->q0 > a->q1 || a->q1 > a->Sq) return 0;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->q0 == a->q1) return 1;
    if (a->Hkv <= 0 || a->Hq % a->Hkv != 0) return 0;
    if (!a->o || !a->q || !a->k || !a->v) return 0;
    if (!(a->scale == a->scale) || !(a->softcap >= 0.0f)) return 0;
    return 1;
}

/* Checks a rotary call: a known kind, an even rotary_dim in [2, d], the
 * range inside [0,B) x [0,H) x [0,S), the tables and x present, and every
 * position of the range inside the tables. */
static inline int kernel_rotary_args_ok(const mha_rotary_args *a) {
    if (!a || a->struct_size < MHA_ROTARY_ARGS_SIZE_2_0) return 0;
    if (a->B < 0 || a->H < 0 || a->S < 0 || a->d < 0 || a->n_pos < 0) return 0;
    if (a->b0 < 0 || a->b0 > a->b1 || a->b1 > a->B) return 0;
    if (a->h0 < 0 || a->h0 > a->h1 || a->h1 > a->H) return 0;
    if (a->s0 < 0 || a->s0 > a->s1 || a->s1 > a->S) return 0;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->s0 == a->s1) return 1;
    if (a->kind != MHA_ROTARY_HALF && a->kind != MHA_ROTARY_INTERLEAVED) return 0;
    if (a->rotary_dim < 2 || a->rotary_dim % 2 || a->rotary_dim > a->d) return 0;
    if (!a->x || !a->cos || !a->sin) return 0;
    for (int64_t b = a->b0; b < a->b1; b++) {
        const int64_t off = a->pos_offset ? a->pos_offset[b] : 0;
        if (off < 0 || off > a->n_pos || a->s1 > a->n_pos - off) return 0;
    }
    return 1;
}

/* Keys [0, end) may be visible to query row i of batch b; every key from
 * `end` on is masked by the causal rule (j > i + offset[b]) or by kv_len.
 * Shapes: causal_offset [B], kv_len [B] (either may be NULL). */
static inline int64_t kernel_row_key_end(const mha_attn_args *a, int64_t b, int64_t i) {
    int64_t end = a->Skv;
    if (a->kv_len && a->kv_len[b] < end) end = a->kv_len[b];
    if (a->causal) {
        int64_t off = a->causal_offset ? a->causal_offset[b] : 0;
        /* j <= i + off is visible; compare before adding to avoid overflow */
        if (off < -i)
            end = 0;
        else if (off < end - i - 1)
            end = i + off + 1;
    }
    return end < 0 ? 0 : end;
}

/* First element of row (b, h, i) of the mask, or NULL without a mask. The
 * key axis is then mask[row + j * m_sk]. */
static inline const float *kernel_mask_row(const mha_attn_args *a, int64_t b, int64_t h,
                                           int64_t i) {
    if (!a->mask) return NULL;
    return a->mask + b * a->m_sb + h * a->m_sh + i * a->m_sq;
}

/* Rounds n up to a multiple of m (m > 0). */
static inline int64_t kernel_round_up(int64_t n, int64_t m) {
    return (n + m - 1) / m * m;
}

/* Checks a norm call: a known kind, sizes >= 0, the range inside
 * [0, rows), x and y present with leading dimensions >= D. */
static inline int kernel_norm_args_ok(const mha_norm_args *a) {
    if (!a || a->struct_size < MHA_NORM_ARGS_SIZE_2_0) return 0;
    if (a->kind != MHA_NORM_LAYER && a->kind != MHA_NORM_RMS) return 0;
    if (a->rows < 0 || a->D < 0 || a->r0 < 0 || a->r0 > a->r1 || a->r1 > a->rows) return 0;
    if (a->r0 == a->r1 || a->D == 0) return 1;
    if (a->residual && a->ldr < a->D) return 0;
    return a->x && a->y && a->ldx >= a->D && a->ldy >= a->D && a->eps >= 0.0f;
}

/* sum_i (x[i] - mean) (squares: its square) over a row, in double: column
 * i into partial sum i mod 8, the 8 combined pairwise in a fixed order.
 * The 8 chains are independent, so the loop vectorises (one chain of
 * double adds was most of a norm's time), and the order is the same on
 * every backend. */
static inline double kernel_norm_sum(const float *x, int64_t D, double mean, int squares) {
    double s[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + 8 <= D; i += 8)
        for (int j = 0; j < 8; j++) {
            const double d = (double)x[i + j] - mean;
            s[j] += squares ? d * d : d;
        }
    for (int j = 0; i < D; i++, j++) {
        const double d = (double)x[i] - mean;
        s[j] += squares ? d * d : d;
    }
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* Row r's s of kernel_norm_rows: x + residual stored into y, or x. */
static inline const float *kernel_norm_row_input(const mha_norm_args *a, int64_t r) {
    const float *x = a->x + r * a->ldx;
    if (!a->residual) return x;
    const float *res = a->residual + r * a->ldr;
    float *y = a->y + r * a->ldy;
    for (int64_t i = 0; i < a->D; i++)
        y[i] = x[i] + res[i];
    return y;
}

/* Row r's output of kernel_norm_rows from its s (x) and its two sums. */
static inline void kernel_norm_row_output(const mha_norm_args *a, int64_t r, const float *x,
                                          double mean, double var) {
    float *y = a->y + r * a->ldy;
    const float inv = (float)(1.0 / sqrt(var + (double)a->eps)), mu = (float)mean;
    for (int64_t i = 0; i < a->D; i++) {
        float v = (x[i] - mu) * inv;
        if (a->gamma) v *= a->gamma[i];
        if (a->beta) v += a->beta[i];
        y[i] = v;
    }
}

/*
 * Rows [r0, r1) of the normalisation of plugin.h (args checked), the
 * reference every in-tree backend runs (a norm is a few passes over a row:
 * memory-bound, so the SIMD backends gain by the host's threads, not by
 * wider arithmetic):
 *   s   = x + residual            in float, into y first (as the graph's
 *                                 Add rounded it), or x itself
 *   mu  = sum_i s[i] / D           in double, kernel_norm_sum's order
 *                                  (0 for RMS)
 *   var = sum_i (s[i] - mu)^2 / D  in double, likewise
 *   y[i] = (s[i] - (float)mu) * (float)(1 / sqrt(var + eps)) [* gamma] [+ beta]
 * in float, each element read before it is written (y may be x or the
 * residual).
 */
static inline void kernel_norm_rows(const mha_norm_args *a, int64_t r0, int64_t r1) {
    const int64_t D = a->D;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = kernel_norm_row_input(a, r);
        const double mean =
            a->kind == MHA_NORM_LAYER ? kernel_norm_sum(x, D, 0.0, 0) / (double)D : 0.0;
        const double var = kernel_norm_sum(x, D, mean, 1) / (double)D;
        kernel_norm_row_output(a, r, x, mean, var);
    }
}

/* The norm entry of a backend without threads of its own. */
static inline int kernel_norm_run(const mha_norm_args *a) {
    if (!kernel_norm_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->D > 0) kernel_norm_rows(a, a->r0, a->r1);
    return KERNEL_OK;
}

#endif
