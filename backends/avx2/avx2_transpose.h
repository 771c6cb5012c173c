/* avx2_transpose.h -- an 8 x 8 float tile transposed in registers, for the
 * flash template's K packing (flash_attention.h: FA_HAVE_TRANSPOSE). Needs
 * the AVX2 kernels' ISA flags. Three shuffle stages: pairs of rows
 * interleaved (unpack), 64-bit pairs (shuffle_ps), 128-bit halves
 * (permute2f128); 24 shuffles for 64 floats. */
#ifndef MHA_BACKENDS_AVX2_TRANSPOSE_H
#define MHA_BACKENDS_AVX2_TRANSPOSE_H

#include <immintrin.h>
#include <stdint.h>

/* dst[i * ldd + j] = src[j * lds + i] for i, j < 8. */
static inline void vf_transpose_tile(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m256 r[8], t[8];
    for (int j = 0; j < 8; j++)
        r[j] = _mm256_loadu_ps(src + j * lds);
    for (int p = 0; p < 4; p++) {
        t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    /* r[4q + c]: in 128-bit half k, column 4k + c of rows 4q .. 4q+3 */
    for (int q = 0; q < 2; q++) {
        __m256 lo = t[4 * q], hi = t[4 * q + 1], lo2 = t[4 * q + 2], hi2 = t[4 * q + 3];
        r[4 * q + 0] = _mm256_shuffle_ps(lo, lo2, 0x44);
        r[4 * q + 1] = _mm256_shuffle_ps(lo, lo2, 0xEE);
        r[4 * q + 2] = _mm256_shuffle_ps(hi, hi2, 0x44);
        r[4 * q + 3] = _mm256_shuffle_ps(hi, hi2, 0xEE);
    }
    /* column c: the low halves of r[c] (rows 0..3) and r[4 + c] (rows
     * 4..7); column c + 4: their high halves */
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x20));
        _mm256_storeu_ps(dst + (c + 4) * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x31));
    }
}

#endif
