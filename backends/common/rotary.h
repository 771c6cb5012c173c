/* rotary.h -- the rotary position embedding the SIMD backends share (see
 * mha_rotary_args in plugin.h): rows of Q or K turned in place, pair by
 * pair, in float. A template by inclusion only in the sense that each kernel
 * file compiles it with its own ISA flags; the loops are plain C the
 * compiler vectorises (the rotate-half form reads two contiguous halves; the
 * interleaved form reads even / odd lanes).
 *
 * Per row at position p, half = rotary_dim / 2, t in [0, half):
 *   (x1, x2) = (x[t], x[t + half])  or  (x[2t], x[2t + 1])
 *   x1' = x1 * cos[p, t] - x2 * sin[p, t];  x2' = x2 * cos[p, t] + x1 * sin[p, t]
 * Each element's arithmetic depends on its row alone, so any split of the
 * range gives the same bits. */
#ifndef MHA_BACKENDS_ROTARY_H
#define MHA_BACKENDS_ROTARY_H

#include <stdint.h>

#include "common/kernel_common.h"

/* One row x [d]; cs, sn: the table rows of its position [half]. */
static inline void rotary_row(int kind, int64_t half, float *restrict x, const float *restrict cs,
                              const float *restrict sn) {
    if (kind == MHA_ROTARY_INTERLEAVED) {
        for (int64_t t = 0; t < half; t++) {
            const float x1 = x[2 * t], x2 = x[2 * t + 1];
            x[2 * t] = x1 * cs[t] - x2 * sn[t];
            x[2 * t + 1] = x2 * cs[t] + x1 * sn[t];
        }
    } else {
        float *restrict lo = x, *restrict hi = x + half;
        for (int64_t t = 0; t < half; t++) {
            const float x1 = lo[t], x2 = hi[t];
            lo[t] = x1 * cs[t] - x2 * sn[t];
            hi[t] = x2 * cs[t] + x1 * sn[t];
        }
    }
}

/* Rows [s0, s1) of heads [h0, h1) of batch item b. */
static inline void rotary_rows(const mha_rotary_args *a, int64_t b, int64_t h0, int64_t h1) {
    const int64_t half = a->rotary_dim / 2;
    const int64_t off = a->pos_offset ? a->pos_offset[b] : 0;
    for (int64_t h = h0; h < h1; h++)
        for (int64_t s = a->s0; s < a->s1; s++)
            rotary_row(a->kind, half, a->x + b * a->x_sb + h * a->x_sh + s * a->x_ss,
                       a->cos + (s + off) * half, a->sin + (s + off) * half);
}

/* The whole call on one thread. */
static inline int rotary_run(const mha_rotary_args *a) {
    if (!kernel_rotary_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->s0 == a->s1) return KERNEL_OK;
    for (int64_t b = a->b0; b < a->b1; b++)
        rotary_rows(a, b, a->h0, a->h1);
    return KERNEL_OK;
}

#endif
