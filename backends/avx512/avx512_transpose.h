/* avx512_transpose.h -- a 16 x 16 float tile transposed in registers, for
 * the flash template's K packing (flash_attention.h: FA_HAVE_TRANSPOSE).
 * Needs the AVX-512F kernels' ISA flags. Four shuffle stages: pairs of rows
 * interleaved (unpack), then 64-bit pairs (shuffle_ps), then 128-bit lanes
 * twice (shuffle_f32x4); 64 shuffles for 256 floats instead of 256 scalar
 * loads and stores. */
#ifndef MHA_BACKENDS_AVX512_TRANSPOSE_H
#define MHA_BACKENDS_AVX512_TRANSPOSE_H

#include <immintrin.h>
#include <stdint.h>

/* dst[i * ldd + j] = src[j * lds + i] for i, j < 16. */
static inline void vf_transpose_tile(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m512 r[16], t[16];
    for (int j = 0; j < 16; j++)
        r[j] = _mm512_loadu_ps(src + j * lds);
    /* t[2p] / t[2p+1]: rows 2p and 2p+1 interleaved, low / high pairs of
     * each 128-bit lane */
    for (int p = 0; p < 8; p++) {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    /* r[4q + c]: in 128-bit lane k, column 4k + c of rows 4q .. 4q+3 */
    for (int q = 0; q < 4; q++) {
        __m512 lo = t[4 * q], hi = t[4 * q + 1], lo2 = t[4 * q + 2], hi2 = t[4 * q + 3];
        r[4 * q + 0] = _mm512_shuffle_ps(lo, lo2, 0x44);
        r[4 * q + 1] = _mm512_shuffle_ps(lo, lo2, 0xEE);
        r[4 * q + 2] = _mm512_shuffle_ps(hi, hi2, 0x44);
        r[4 * q + 3] = _mm512_shuffle_ps(hi, hi2, 0xEE);
    }
    /* t[c] / t[4 + c] (and t[8 + ...] for rows 8..15): the lanes of columns
     * c, c + 8 / c + 4, c + 12 for rows 0..7 (8..15) */
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    }
    /* column c (rows 0..15) and column c + 8 */
    for (int c = 0; c < 8; c++) {
        _mm512_storeu_ps(dst + c * ldd, _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88));
        _mm512_storeu_ps(dst + (c + 8) * ldd, _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD));
    }
}

#endif
