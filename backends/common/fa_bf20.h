/* fa_bf20.h -- the bfloat16 pair packing of the flash template's operands
 * (common/flash_attention.h with FA_HAVE_BF16_DOT): K per key block and the
 * Q block paired along d and transposed, V paired along the keys, each in
 * one pass from the rows where they lie. Included by flash_attention.h
 * (FA_HAVE_BF16_DOT: the backend's vbf, vbf_pair, vbf_pair_adjacent).
 *
 * The float path these replace copied first and paired after: K and Q
 * transposed as floats (16 x 16 register tiles over dk floats), then every
 * two rows d, d + 1 of the copy rounded and paired; V copied row by row,
 * then rows j, j + 1 paired. Here a row's neighbours d, d + 1 are paired
 * as they are loaded (vbf_pair_adjacent: one VCVTNE2PS2BF16 per 32 floats
 * with AVX512-BF16), so the transpose moves dk / 2 pairs, not dk floats,
 * and V's copy is the pairing itself. At W1's heads (S 128, d 64) the
 * transposes and copies were ~1/5 of the bfloat16 core's time
 * (docs/PERFORMANCE.md, "bf20").
 *
 *   pairs of row j:  P[j][t] = pair(X[j][2t], X[j][2t + 1] or 0 past dk)
 *   K block, Q block: dst[t][j] = P[j][t]       (16 x 16 uint32 tiles)
 *   V:                dst[t][d] = pair(V[2t][d], V[2t + 1][d] or 0)
 */
#ifndef MHA_BACKENDS_FA_BF20_H
#define MHA_BACKENDS_FA_BF20_H

#include <stdint.h>
#include <string.h>

#include "common/bf16.h"

/* lo, hi rounded to bfloat16 as one pair: lo in the low half */
static inline uint32_t fa_bf16_pair(float lo, float hi) {
    return (uint32_t)bf16_from_float(lo) | ((uint32_t)bf16_from_float(hi) << 16);
}

/*
 * dst[t * ldd + j] = pair(src[j * lds + 2t], src[j * lds + 2t + 1], the
 * latter 0 when 2t + 1 == dk) for j < n, t < ceil(dk / 2): n rows of dk
 * floats paired along d and transposed. Whole groups of VLEN rows go
 * through the backend's register transpose (FA_HAVE_TRANSPOSE) as 32-bit
 * lanes; the rest pair by pair. The bits of the float path: the rows
 * transposed (a copy), then rows d and d + 1 of the copy paired.
 */
static inline void fa_bf20_pair_transpose(const float *src, int64_t lds, int64_t n, int64_t dk,
                                          uint32_t *dst, int64_t ldd) {
    const int64_t np = (dk + 1) / 2;
    int64_t j0 = 0;
#ifdef FA_HAVE_TRANSPOSE
    _Alignas(64) uint32_t rows[VLEN * VLEN], cols[VLEN * VLEN];
    for (; j0 + VLEN <= n; j0 += VLEN) {
        for (int64_t t0 = 0; t0 < np; t0 += VLEN) {
            /* rows[r][i]: pair t0 + i of row j0 + r (lanes past dk are 0) */
            const int64_t left = dk - 2 * t0;
            for (int r = 0; r < VLEN; r++) {
                const float *p = src + (j0 + r) * lds + 2 * t0;
                vbf_store(rows + r * VLEN,
                          left >= 2 * VLEN
                              ? vbf_pair_adjacent(vf_load(p), vf_load(p + VLEN))
                              : vbf_pair_adjacent(vf_load_part(p, left),
                                                  vf_load_part(p + VLEN, left - VLEN)));
            }
            if (t0 + VLEN <= np) {
                vf_transpose_tile((const float *)(const void *)rows, VLEN,
                                  (float *)(void *)(dst + t0 * ldd + j0), ldd);
                continue;
            }
            /* the last pairs of a dk short of whole tiles: transposed
             * aside, their rows copied */
            vf_transpose_tile((const float *)(const void *)rows, VLEN, (float *)(void *)cols, VLEN);
            for (int64_t t = t0; t < np; t++)
                memcpy(dst + t * ldd + j0, cols + (t - t0) * VLEN, VLEN * sizeof(uint32_t));
        }
    }
#endif
    for (int64_t j = j0; j < n; j++)
        for (int64_t t = 0; t < np; t++) {
            const float *x = src + j * lds + 2 * t;
            dst[t * ldd + j] = fa_bf16_pair(x[0], 2 * t + 1 < dk ? x[1] : 0.0f);
        }
}

/*
 * V rows [0, nkeys) (vb, v_ss apart, dv floats) paired along the keys:
 * dst[t * dvp + d] = pair(V[2t][d], V[2t + 1][d]) for t < ceil(nkeys / 2),
 * d < dvp, zeros past dv and as the missing odd key. The bits of V copied
 * padded to dvp, then rows 2t and 2t + 1 of the copy paired.
 */
static inline void fa_bf20_pair_v(const float *vb, int64_t v_ss, int64_t nkeys, int64_t dv,
                                  int64_t dvp, uint32_t *dst) {
    for (int64_t t = 0; 2 * t < nkeys; t++) {
        const float *lo = vb + 2 * t * v_ss;
        const float *hi = 2 * t + 1 < nkeys ? lo + v_ss : NULL;
        uint32_t *out = dst + t * dvp;
        int64_t d = 0;
        for (; d + VLEN <= dv; d += VLEN)
            vbf_store(out + d, vbf_pair(vf_load(lo + d), hi ? vf_load(hi + d) : vf_zero()));
        for (; d < dvp; d += VLEN)
            vbf_store(out + d, vbf_pair(vf_load_part(lo + d, dv - d),
                                        hi ? vf_load_part(hi + d, dv - d) : vf_zero()));
    }
}

#endif
