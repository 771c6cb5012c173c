/* avx2_kernels.c -- the AVX2+FMA kernels: a 6 x 16 register-blocked GEMM
 * micro-kernel over packed B panels, and the flash attention of
 * common/flash_attention.h on 8-float vectors with a vectorised exp.
 *
 * Compiled with -mavx2 -mfma: reached only after avx2_plugin.c's probe saw
 * AVX, AVX2 and FMA (and the OS saving YMM state). Accumulation is in float
 * with FMA, one chain per element (see the determinism notes of the two
 * templates).
 */
#include "avx2/avx2_kernels.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------------------ */
/* Vector layer (the names the templates expect)                             */
/* ------------------------------------------------------------------------ */

#define VLEN 8
typedef __m256 vf;

static inline vf vf_zero(void) {
    return _mm256_setzero_ps();
}
static inline vf vf_set1(float x) {
    return _mm256_set1_ps(x);
}
static inline vf vf_load(const float *p) {
    return _mm256_loadu_ps(p);
}
static inline void vf_store(float *p, vf x) {
    _mm256_storeu_ps(p, x);
}
/* All-ones in lanes < n (n clamped to [0, 8]), as maskload/maskstore want. */
static inline __m256i vf_lanes(int64_t n) {
    int32_t k = n <= 0 ? 0 : n >= VLEN ? VLEN : (int32_t)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* Lanes >= n read nothing (maskload does not fault on them) and are 0. */
static inline vf vf_load_part(const float *p, int64_t n) {
    return _mm256_maskload_ps(p, vf_lanes(n));
}
static inline void vf_store_part(float *p, vf x, int64_t n) {
    _mm256_maskstore_ps(p, vf_lanes(n), x);
}
static inline vf vf_add(vf a, vf b) {
    return _mm256_add_ps(a, b);
}
static inline vf vf_mul(vf a, vf b) {
    return _mm256_mul_ps(a, b);
}
static inline vf vf_div(vf a, vf b) {
    return _mm256_div_ps(a, b);
}
static inline vf vf_max(vf a, vf b) {
    return _mm256_max_ps(a, b);
}
static inline vf vf_fma(vf a, vf b, vf c) {
    return _mm256_fmadd_ps(a, b, c);
}

/* Horizontal reductions, always the same tree: halves, then pairs. */
static inline float vf_hmax(vf x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
static inline float vf_hsum(vf x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/*
 * exp(x) for x <= 0 (every caller passes a difference to a max, or -2|x|):
 * x = n*ln2 + r with |r| <= ln2/2,
 * exp(r) by its Taylor series to r^7 (truncation < 6e-9 relative), times
 * 2^n built in the exponent bits (n in [-126, 0] after the clamp, so the
 * result stays a normal float). exp(0) is exactly 1.
 */
static inline vf vf_exp(vf x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
    vf n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    vf p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* tanh(x) = sign(x) * (1 - e) / (1 + e), e = exp(-2|x|) in (0, 1]. */
static inline vf vf_tanh(vf x) {
    const vf sign = _mm256_set1_ps(-0.0f);
    vf ax = _mm256_andnot_ps(sign, x);
    vf e = vf_exp(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    vf t = _mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), e),
                         _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    return _mm256_or_ps(t, _mm256_and_ps(sign, x));
}

/* mv <= -FLT_MAX hides the key (-inf); otherwise s + mv. */
static inline vf vf_hide_masked(vf s, vf mv) {
    vf hidden = _mm256_cmp_ps(mv, _mm256_set1_ps(-FLT_MAX), _CMP_LE_OQ);
    return _mm256_blendv_ps(_mm256_add_ps(s, mv), _mm256_set1_ps(-INFINITY), hidden);
}
static inline vf vf_hide_tail(vf s, int64_t n) {
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, _mm256_castsi256_ps(vf_lanes(n)));
}
static inline vf vf_exp_or_zero(vf s, vf m) {
    vf live = _mm256_cmp_ps(s, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ);
    return _mm256_and_ps(live, vf_exp(_mm256_sub_ps(s, m)));
}

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_KC 256
/* 96-row blocks, one exec unit: each B panel (16 KiB) meets 16 slivers of a
 * 96 KiB A block held in L2 before the next panel streams in */
#define GEMM_MC (16 * GEMM_MR)

/*
 * C[0:6, 0:16] (+)= ap . bp. ap: [kc][6] (A sliver), bp: [kc][16] (B panel
 * rows), c: row-major, ldc. 12 accumulators + 2 B vectors + 1 broadcast =
 * 15 of the 16 YMM registers.
 */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    vf acc[GEMM_MR][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
        acc[r][0] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
        acc[r][1] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        vf b0 = _mm256_loadu_ps(bp + k * GEMM_NR);
        vf b1 = _mm256_loadu_ps(bp + k * GEMM_NR + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
            vf a = _mm256_broadcast_ss(ap + k * GEMM_MR + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
        _mm256_storeu_ps(c + r * ldc, acc[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
}

/*
 * The same product for a short sliver: rows [0, mr) of C only, mr < 6 (the
 * last sliver of a range, e.g. rows 30..31 of W2's 32). R = 2, 4 or 6 rows
 * are computed (R >= mr; the packed sliver is zero past mr), so a 2-row
 * tail costs a third of a full tile, not a whole one. Each element is the
 * same one FMA chain over k as in gemm_ukernel.
 */
#define AVX2_GEMM_UKERNEL_ROWS(R)                                                                  \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        vf acc[R][2];                                                                              \
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                      \
            int live = accumulate && r < mr;                                                       \
            acc[r][0] = live ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();                 \
            acc[r][1] = live ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();             \
        }                                                                                          \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            vf b0 = _mm256_loadu_ps(bp + k * GEMM_NR);                                             \
            vf b1 = _mm256_loadu_ps(bp + k * GEMM_NR + 8);                                         \
            _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                  \
                vf a = _mm256_broadcast_ss(ap + k * GEMM_MR + r);                                  \
                acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);                                     \
                acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);                                     \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R && r < mr; r++) {                                                    \
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);                                              \
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);                                          \
        }                                                                                          \
    }
AVX2_GEMM_UKERNEL_ROWS(2)
AVX2_GEMM_UKERNEL_ROWS(4)
AVX2_GEMM_UKERNEL_ROWS(6)

/* Rows [0, mr) of a full-width tile, 0 < mr < GEMM_MR. */
static inline void gemm_ukernel_rows(int64_t kc, const float *ap, const float *bp, float *c,
                                     int64_t ldc, int accumulate, int64_t mr) {
    if (mr <= 2)
        gemm_ukernel_2(kc, ap, bp, c, ldc, accumulate, mr);
    else if (mr <= 4)
        gemm_ukernel_4(kc, ap, bp, c, ldc, accumulate, mr);
    else
        gemm_ukernel_6(kc, ap, bp, c, ldc, accumulate, mr);
}
#define GEMM_HAVE_UKERNEL_ROWS 1

#include "common/gemm_blocked.h"

size_t avx2_gemm_packed_size(int64_t K, int64_t N) {
    return gemm_blocked_packed_size(K, N);
}

void avx2_gemm_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed) {
    gemm_blocked_pack_b(K, N, B, ldb, packed);
}

int avx2_gemm(void *state, const mha_gemm_args *args) {
    (void)state;
    return gemm_blocked_run(args);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

#define FA_MR 3  /* score tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_BR 24 /* query rows per block */
#define FA_BC 32 /* keys per block: 4 vectors amortise each row's softmax */
#define FA_PVR 3 /* P.V tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_PVW 4

#include "common/flash_attention.h"

size_t avx2_attention_workspace_size(void *state, const mha_attn_args *args) {
    (void)state;
    return fa_workspace_size(args);
}

int avx2_attention(void *state, const mha_attn_args *args, void *workspace, size_t workspace_size) {
    (void)state;
    return fa_attention_run(args, workspace, workspace_size);
}
