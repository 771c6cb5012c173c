/* avx512_vec.h -- the vector layer of the AVX-512 kernels: 16-float vectors
 * under the names common/flash_attention.h and the GEMM micro-kernels expect
 * (vf, VLEN, vf_load, vf_fma, vf_exp, ...). Shared by avx512_kernels.c and
 * the openmp backend's AVX-512 variant, so both run the same arithmetic.
 *
 * Include only from a file compiled with -mavx512f -mavx512dq -mavx512bw
 * -mavx512vl -mfma, reached after a probe or an init() saw those features. */
#ifndef MHA_BACKENDS_AVX512_VEC_H
#define MHA_BACKENDS_AVX512_VEC_H

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define VLEN 16
typedef __m512 vf;

static inline vf vf_zero(void) {
    return _mm512_setzero_ps();
}
static inline vf vf_set1(float x) {
    return _mm512_set1_ps(x);
}
/* Each lane rounded to bfloat16 as common/bf16.h does (nearest even;
 * zero and subnormal -> signed zero; NaN kept, quiet), in integer ops. */
#define FA_HAVE_ROUND_BF16 1
static inline vf vf_round_bf16(vf x) {
    const __m512i u = _mm512_castps_si512(x), hi = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    r = _mm512_and_si512(r, hi);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(
        r, nan, _mm512_or_si512(_mm512_and_si512(u, hi), _mm512_set1_epi32(0x00400000)));
    r = _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_castsi512_ps(r);
}

/* bfloat16 pairs for VDPBF16PS-style products (common/flash_attention.h):
 * 16 uint32 lanes, each the bfloat16 of an even element in its low half and
 * of the next (odd) one in its high half, rounded by vf_round_bf16. */
typedef __m512i vbf;
static inline vbf vbf_load(const uint32_t *p) {
    return _mm512_loadu_si512(p);
}
/* The pairs with their odd (high) element replaced by +0. */
static inline vbf vbf_load_lo(const uint32_t *p) {
    return _mm512_and_si512(_mm512_loadu_si512(p), _mm512_set1_epi32(0xffff));
}
static inline vbf vbf_set1(uint32_t x) {
    return _mm512_set1_epi32((int)x);
}
static inline void vbf_store(uint32_t *p, vbf x) {
    _mm512_storeu_si512(p, x);
}
/* Lane i: (lo[i], hi[i]) -- two rows of a matrix paired along its columns.
 * With AVX512-BF16, VCVTNE2PS2BF16 rounds both (words 0-15 lo, 16-31 hi;
 * the rounding of vbf_pair_adjacent below, the same bits) and one word
 * permute interleaves them: 2 instructions where the two vf_round_bf16
 * take ~20 (V and the Q block of the bfloat16 attention are paired so). */
static inline vbf vbf_pair(__m512 lo, __m512 hi) {
#ifdef __AVX512BF16__
    const __m512i interleave =
        _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
#else
    return _mm512_mask_blend_epi16(0xaaaaaaaau,
                                   _mm512_srli_epi32(_mm512_castps_si512(vf_round_bf16(lo)), 16),
                                   _mm512_castps_si512(vf_round_bf16(hi)));
#endif
}
/* Lane i: (x[2i], x[2i+1]) of the 32 floats x = a then b -- neighbours
 * paired: the high 16-bit word of each rounded float, in order. With
 * AVX512-BF16 (a source built with -mavx512bf16) VCVTNE2PS2BF16 does it in
 * one instruction, the same rounding for every finite, infinite and NaN
 * value; subnormal inputs are the one difference (the instruction reads
 * them as zero of their sign, as vf_round_bf16 makes them), so both give
 * the same bits (test_backends checks the two forms bitwise). */
static inline vbf vbf_pair_adjacent(__m512 a, __m512 b) {
#ifdef __AVX512BF16__
    return (vbf)_mm512_cvtne2ps_pbh(b, a);
#else
    const __m512i odd_words =
        _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                         25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(_mm512_castps_si512(vf_round_bf16(a)), odd_words,
                                     _mm512_castps_si512(vf_round_bf16(b)));
#endif
}

static inline vf vf_load(const float *p) {
    return _mm512_loadu_ps(p);
}
static inline void vf_store(float *p, vf x) {
    _mm512_storeu_ps(p, x);
}
static inline __mmask16 vf_lanes(int64_t n) {
    return n <= 0 ? 0 : n >= VLEN ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}
/* Lanes >= n read nothing and are 0. */
static inline vf vf_load_part(const float *p, int64_t n) {
    return _mm512_maskz_loadu_ps(vf_lanes(n), p);
}
static inline void vf_store_part(float *p, vf x, int64_t n) {
    _mm512_mask_storeu_ps(p, vf_lanes(n), x);
}
static inline vf vf_add(vf a, vf b) {
    return _mm512_add_ps(a, b);
}
static inline vf vf_mul(vf a, vf b) {
    return _mm512_mul_ps(a, b);
}
static inline vf vf_div(vf a, vf b) {
    return _mm512_div_ps(a, b);
}
static inline vf vf_max(vf a, vf b) {
    return _mm512_max_ps(a, b);
}
static inline vf vf_fma(vf a, vf b, vf c) {
    return _mm512_fmadd_ps(a, b, c);
}
static inline float vf_hmax(vf x) {
    return _mm512_reduce_max_ps(x);
}
static inline float vf_hsum(vf x) {
    return _mm512_reduce_add_ps(x);
}

/*
 * exp(x) for x <= 0 (every caller passes a difference to a max, or -2|x|):
 * x = n*ln2 + r with |r| <= ln2/2,
 * exp(r) by its Taylor series to r^7 (truncation < 6e-9 relative), times
 * 2^n by scalef. Inputs below -87.3 are clamped (the result, ~1e-38, is
 * negligible next to the row max's 1); exp(0) is exactly 1.
 */
static inline vf vf_exp(vf x) {
    x = _mm512_max_ps(_mm512_set1_ps(-87.33654f), x); /* NaN stays NaN */
    vf n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - n*ln2, ln2 split in a part exact in float and a correction */
    vf r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    vf p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/*
 * 2^t for t <= 0, the bfloat16 softmax's exp (common/flash_attention.h:
 * FA_HAVE_EXP2): t = floor(t) + r with r = t - floor(t) in [0, 1) from one
 * VREDUCEPS, 2^r by a degree-3 polynomial with its constant exactly 1,
 * fitted to 2^r for relative error (at most 8.6e-5 evaluated in float with
 * these coefficients: bfloat16 rounds each probability to 2^-9 anyway, and
 * the error is smooth, so the sum and the products see nearly the same
 * factor), times 2^floor(t) by VSCALEFPS (which floors its exponent
 * itself). VREDUCEPS gives +0 for -inf and scalef(1, -inf) is 0, so -inf
 * and anything below -150 give exactly 0 with no clamp; NaN stays NaN;
 * 2^0 is exactly 1 (r = 0 leaves the constant). Six operations where
 * vf_exp takes sixteen: bfloat16 runs its products twice as fast, so the
 * softmax is a larger share of it.
 */
#define FA_HAVE_EXP2 1
static inline vf vf_exp2(vf t) {
    const vf r = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    vf p = _mm512_set1_ps(0.07706710696220398f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.2276449203491211f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.6951168179512024f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, t);
}

/*
 * 2^t to float32 accuracy for t <= 8, the float32 softmax's lazy exp
 * (common/flash_attention.h: FA_HAVE_EXP2_F32), built to leave the FMA
 * pipes to the products: t = k/16 + f with k = floor(16 t) and f in
 * [0, 1/16) from one VREDUCEPS; 2^(k mod 16 / 16) from a 16-entry table
 * by VPERMPS, indexed by the low 4 bits of t + 1.5 2^19 rounded down
 * (one VADDPS with its rounding in the instruction: those bits are k mod
 * 16); 2^f = 1 + q, q = f (c1 + f (c2 + f c3)) fitted for relative error
 * on [0, 1/16) (3.7e-2 of 2^-24); then T + T q by one FMA and 2^floor(t)
 * by VSCALEFPS. Four operations on the FMA pipes where vf_exp takes ten.
 * -inf and anything below -150 give 0 (VREDUCEPS gives +0 for -inf, the
 * index 0, scalef(1, -inf) is 0); NaN stays NaN; 2^0 is exactly 1.
 * Relative error at most 1.1 ulp over every float in [-126, 8]
 * (test_avx512_vec's sweep).
 */
#define FA_HAVE_EXP2_F32 1
/* its constants: the table 2^(k / 16), k = 0..15, then 1.5 2^19 and the
 * polynomial's c3, c2, c1 (one copy: common/fa_w3_20.h's scheduled tile
 * reads them too) */
static _Alignas(64) const float vf_exp2_f32_c[20] = {
    0x1p+0f,        0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f, 0x1.306fe0p+0f,
    0x1.3dea64p+0f, 0x1.4bfdaep+0f, 0x1.5ab07ep+0f, 0x1.6a09e6p+0f, 0x1.7a1148p+0f,
    0x1.8ace54p+0f, 0x1.9c4918p+0f, 0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f,
    0x1.ea4afap+0f, 0x1.8p19f,      0x1.d03d3ep-5f, 0x1.ebe5b8p-3f, 0x1.62e43ep-1f};
static inline vf vf_exp2_f32(vf t) {
    const float *c = vf_exp2_f32_c;
    const vf f = _mm512_reduce_ps(t, (4 << 4) | _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const vf u =
        _mm512_add_round_ps(t, _mm512_set1_ps(c[16]), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const vf tk = _mm512_permutexvar_ps(_mm512_castps_si512(u), _mm512_load_ps(c));
    vf q = _mm512_fmadd_ps(_mm512_set1_ps(c[17]), f, _mm512_set1_ps(c[18]));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(c[19]));
    q = _mm512_mul_ps(q, f);
    return _mm512_scalef_ps(_mm512_fmadd_ps(tk, q, tk), t);
}

/* tanh(x) = sign(x) * (1 - e) / (1 + e), e = exp(-2|x|) in (0, 1]. */
static inline vf vf_tanh(vf x) {
    const vf sign = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
    vf ax = _mm512_andnot_ps(sign, x);
    vf e = vf_exp(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    vf t = _mm512_div_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), e),
                         _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_or_ps(t, _mm512_and_ps(sign, x));
}

/* mv <= -FLT_MAX hides the key (-inf); otherwise s + mv. */
static inline vf vf_hide_masked(vf s, vf mv) {
    __mmask16 hidden = _mm512_cmp_ps_mask(mv, _mm512_set1_ps(-FLT_MAX), _CMP_LE_OQ);
    return _mm512_mask_blend_ps(hidden, _mm512_add_ps(s, mv), _mm512_set1_ps(-INFINITY));
}
static inline vf vf_hide_tail(vf s, int64_t n) {
    return _mm512_mask_blend_ps(vf_lanes(n), _mm512_set1_ps(-INFINITY), s);
}
/* Lanes that are NaN or +inf, as bits: such a score poisons its row. */
static inline unsigned vf_bad_bits(vf x) {
    return (unsigned)_mm512_cmp_ps_mask(x, _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);
}
/* Lanes that are NaN, +inf or -inf, as bits (VFPCLASSPS: QNaN 0x01,
 * +inf 0x08, -inf 0x10, SNaN 0x80). */
#define FA_HAVE_NONFINITE_BITS 1
static inline unsigned vf_nonfinite_bits(vf x) {
    return (unsigned)_mm512_fpclass_ps_mask(x, 0x99);
}
/* Lanes with a > b (ordered), as bits. */
#define FA_HAVE_GT_BITS 1
static inline unsigned vf_gt_bits(vf a, vf b) {
    return (unsigned)_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ);
}
static inline vf vf_exp_or_zero(vf s, vf m) {
    __mmask16 live = _mm512_cmp_ps_mask(s, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
    return _mm512_maskz_mov_ps(live, vf_exp(_mm512_sub_ps(s, m)));
}

#endif
