/* avx2_vec.h -- the vector layer of the AVX2+FMA kernels: 8-float vectors
 * under the names common/flash_attention.h and the GEMM micro-kernels expect
 * (vf, VLEN, vf_load, vf_fma, vf_exp, ...). Shared by avx2_kernels.c and the
 * openmp backend's AVX2 variant, so both run the same arithmetic.
 *
 * Include only from a file compiled with -mavx2 -mfma, reached after a probe
 * or an init() saw AVX, AVX2 and FMA. */
#ifndef MHA_BACKENDS_AVX2_VEC_H
#define MHA_BACKENDS_AVX2_VEC_H

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

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
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x); /* NaN stays NaN */
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
/* Lanes that are NaN or +inf, as bits: such a score poisons its row. */
static inline unsigned vf_bad_bits(vf x) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_set1_ps(INFINITY), _CMP_NLT_UQ));
}
static inline vf vf_exp_or_zero(vf s, vf m) {
    vf live = _mm256_cmp_ps(s, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ);
    return _mm256_and_ps(live, vf_exp(_mm256_sub_ps(s, m)));
}

#endif
