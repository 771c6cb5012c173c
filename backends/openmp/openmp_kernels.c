/* openmp_kernels.c -- the openmp backend's kernels: the host hands it a
 * whole problem on one thread (MHA_PLUGIN_SELF_PARALLEL) and it spreads the
 * work with OpenMP, `num_threads(args->num_threads)` on each parallel
 * region (never omp_set_num_threads: that is process-global and would
 * change other OpenMP users of the process).
 *
 * Baseline ISA only (no -m flags), so it runs wherever the scalar does:
 *  - GEMM: the blocked driver of common/gemm_blocked.h with a plain-C
 *    4 x 8 micro-kernel the compiler vectorises with SSE2; threads take
 *    (panel, row tile) units.
 *  - attention: the flash attention of common/flash_attention.h on a
 *    portable 4-float vector type (GCC vector extensions; SSE2 code on
 *    x86-64), threads take (batch, head, 32-row query chunk) units, each
 *    with its own workspace slice.
 * Each unit writes a disjoint part of the output and every element's
 * reduction order is fixed, so the result is bitwise the same for any
 * num_threads.
 */
#include "openmp/openmp_kernels.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common/kernel_common.h"

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

#define GEMM_MR OPENMP_GEMM_MR
#define GEMM_NR OPENMP_GEMM_NR
#define GEMM_KC 256
#define GEMM_MC GEMM_MR /* units are (panel, row tile): one sliver per block */

/*
 * C[0:4, 0:8] (+)= ap . bp. ap: [kc][4], bp: [kc][8], c: row-major (ldc).
 * Multiply and add stay separate (the file is built with -ffp-contract=off),
 * one chain per element, k ascending.
 */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    float acc[GEMM_MR][GEMM_NR];
    for (int r = 0; r < GEMM_MR; r++)
        for (int n = 0; n < GEMM_NR; n++)
            acc[r][n] = accumulate ? c[r * ldc + n] : 0.0f;
    for (int64_t k = 0; k < kc; k++) {
        const float *b = bp + k * GEMM_NR;
        for (int r = 0; r < GEMM_MR; r++) {
            const float x = ap[k * GEMM_MR + r];
            for (int n = 0; n < GEMM_NR; n++)
                acc[r][n] += x * b[n];
        }
    }
    for (int r = 0; r < GEMM_MR; r++)
        for (int n = 0; n < GEMM_NR; n++)
            c[r * ldc + n] = acc[r][n];
}

#include "common/gemm_blocked.h"

size_t openmp_gemm_packed_size(int64_t K, int64_t N) {
    return gemm_blocked_packed_size(K, N);
}

void openmp_gemm_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed) {
    gemm_blocked_pack_b(K, N, B, ldb, packed);
}

static int openmp_threads(int n) {
    return n > 0 ? n : 1;
}

/* Units: (panel, row tile) pairs of the range, panel-major. */
int openmp_gemm(void *state, const mha_gemm_args *a) {
    (void)state;
    if (!kernel_gemm_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->m0 == a->m1 || a->n0 == a->n1) return KERNEL_OK;
    if (a->K == 0) {
        gemm_blocked_k0(a);
        return KERNEL_OK;
    }
    int64_t p_first, p_last;
    const int64_t tiles = gemm_blocked_grid(a, &p_first, &p_last);
    const int64_t units = (p_last - p_first + 1) * tiles;
    const int nt = openmp_threads(a->num_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t u = 0; u < units; u++) {
        const int64_t p = p_first + u / tiles;
        gemm_blocked_rows(a, a->m0 + (u % tiles) * GEMM_MC, p, p);
    }
    return KERNEL_OK;
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

/* Vector layer for the flash template: 4 floats, written with GCC vector
 * extensions so it needs no ISA flag (SSE2 is the x86-64 baseline; other
 * targets get their own baseline or scalar code). Multiply and add stay
 * separate (-ffp-contract=off); horizontal reductions use a fixed order. */
#define VLEN 4
typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));

static inline vf vf_set1(float x) {
    return (vf){x, x, x, x};
}
static inline vf vf_zero(void) {
    return vf_set1(0.0f);
}
static inline vf vf_load(const float *p) {
    vf r;
    memcpy(&r, p, sizeof r);
    return r;
}
static inline void vf_store(float *p, vf x) {
    memcpy(p, &x, sizeof x);
}
static inline vf vf_load_part(const float *p, int64_t n) {
    vf r = vf_zero();
    for (int64_t i = 0; i < n && i < VLEN; i++)
        r[i] = p[i];
    return r;
}
static inline void vf_store_part(float *p, vf x, int64_t n) {
    for (int64_t i = 0; i < n && i < VLEN; i++)
        p[i] = x[i];
}
static inline vf vf_add(vf a, vf b) {
    return a + b;
}
static inline vf vf_mul(vf a, vf b) {
    return a * b;
}
static inline vf vf_div(vf a, vf b) {
    return a / b;
}
static inline vf vf_fma(vf a, vf b, vf c) {
    return a * b + c;
}
/* Lane select by a comparison mask (all ones = take a). */
static inline vf vf_select(vi m, vf a, vf b) {
    return (vf)((m & (vi)a) | (~m & (vi)b));
}
static inline vf vf_max(vf a, vf b) {
    return vf_select(a > b, a, b);
}
static inline float vf_hmax(vf x) {
    float a = x[0] > x[1] ? x[0] : x[1], b = x[2] > x[3] ? x[2] : x[3];
    return a > b ? a : b;
}
static inline float vf_hsum(vf x) {
    return (x[0] + x[1]) + (x[2] + x[3]);
}

/* exp as in the SIMD backends, for x <= 0: x = n*ln2 + r, Taylor to r^7, 2^n in the
 * exponent bits; n rounded to nearest by the 1.5*2^23 shift. */
static inline vf vf_exp(vf x) {
    x = vf_max(x, vf_set1(-87.33654f));
    const vf shift = vf_set1(12582912.0f);
    vf n = (x * vf_set1(1.44269504088896341f) + shift) - shift;
    vf r = x - n * vf_set1(0.693359375f);
    r = r - n * vf_set1(-2.12194440e-4f);
    vf p = vf_set1(1.0f / 5040.0f);
    p = p * r + vf_set1(1.0f / 720.0f);
    p = p * r + vf_set1(1.0f / 120.0f);
    p = p * r + vf_set1(1.0f / 24.0f);
    p = p * r + vf_set1(1.0f / 6.0f);
    p = p * r + vf_set1(0.5f);
    p = p * r + vf_set1(1.0f);
    p = p * r + vf_set1(1.0f);
    vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;
}
static inline vf vf_tanh(vf x) {
    const vi sign = (vi)vf_set1(-0.0f);
    vf ax = (vf)((vi)x & ~sign);
    vf e = vf_exp(ax * vf_set1(-2.0f));
    vf t = (vf_set1(1.0f) - e) / (vf_set1(1.0f) + e);
    return (vf)((vi)t | ((vi)x & sign));
}
static inline vf vf_hide_masked(vf s, vf mv) {
    return vf_select(mv <= vf_set1(-FLT_MAX), vf_set1(-INFINITY), s + mv);
}
static inline vf vf_hide_tail(vf s, int64_t n) {
    int32_t k = n <= 0 ? 0 : n >= VLEN ? VLEN : (int32_t)n;
    vi lane = {0, 1, 2, 3};
    return vf_select(lane < (vi){k, k, k, k}, s, vf_set1(-INFINITY));
}
static inline vf vf_exp_or_zero(vf s, vf m) {
    return vf_select(s != vf_set1(-INFINITY), vf_exp(s - m), vf_zero());
}

#define FA_MR 4  /* score tile: 4 rows x 2 vectors */
#define FA_BR 32 /* query rows per block = per parallel unit */
#define FA_BC 8  /* keys per block */

#include "common/flash_attention.h"

/* One workspace slice per thread, each what one unit needs. */
static size_t openmp_attention_slice(const mha_attn_args *a) {
    size_t one = fa_workspace_size(a);
    if (one == SIZE_MAX) return SIZE_MAX;
    return (one + 63) & ~(size_t)63;
}

size_t openmp_attention_workspace_size(void *state, const mha_attn_args *a) {
    (void)state;
    if (!a) return 0;
    size_t slice = openmp_attention_slice(a);
    size_t nt = (size_t)openmp_threads(a->num_threads);
    if (slice == SIZE_MAX || slice > SIZE_MAX / nt) return SIZE_MAX;
    return nt * slice;
}

/* Units: (b, h, FA_BR-row query chunk) of the range, each run as its own
 * flash call (it packs its kv head into its thread's slice). A row's result
 * does not depend on the unit it is in, so any thread count gives the same
 * bits. */
int openmp_attention(void *state, const mha_attn_args *a, void *workspace, size_t workspace_size) {
    if (!kernel_attn_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->q0 == a->q1) return KERNEL_OK;
    const size_t slice = openmp_attention_slice(a);
    if (slice == SIZE_MAX) return KERNEL_ERR_ARGS;
    if (!workspace || workspace_size < openmp_attention_workspace_size(state, a))
        return KERNEL_ERR_WORKSPACE;
    const int64_t nh = a->h1 - a->h0;
    const int64_t nchunks = (a->q1 - a->q0 + FA_BR - 1) / FA_BR;
    const int64_t units = (a->b1 - a->b0) * nh * nchunks;
    const int nt = openmp_threads(a->num_threads);
    int failed = 0;
    /* dynamic: under a causal mask later chunks see more keys */
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1) reduction(| : failed)
    for (int64_t u = 0; u < units; u++) {
        mha_attn_args sub = *a;
        sub.b0 = a->b0 + u / (nh * nchunks);
        sub.b1 = sub.b0 + 1;
        sub.h0 = a->h0 + (u / nchunks) % nh;
        sub.h1 = sub.h0 + 1;
        sub.q0 = a->q0 + (u % nchunks) * FA_BR;
        sub.q1 = sub.q0 + FA_BR < a->q1 ? sub.q0 + FA_BR : a->q1;
        char *mine = (char *)workspace + (size_t)omp_get_thread_num() * slice;
        failed |= fa_attention_run(&sub, mine, slice) != KERNEL_OK;
    }
    return failed ? KERNEL_ERR_ARGS : KERNEL_OK;
}
