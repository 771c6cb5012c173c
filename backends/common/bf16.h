/* bf16.h -- bfloat16 rounding as every backend does it, so the scalar
 * reference and the SIMD kernels see the same operands.
 *
 * A bfloat16 is the high 16 bits of a float32: sign, 8 exponent bits, 7
 * mantissa bits. float -> bfloat16 rounds to nearest, ties to even, as
 * VCVTNE2PS2BF16 does; as that instruction (and VDPBF16PS, which treats
 * denormal inputs as zero) subnormals become a zero of the same sign and a
 * NaN stays a quiet NaN. The product of two bfloat16 values has at most 16
 * significant bits, so it is exact in float32: a bfloat16 dot product only
 * rounds where it adds.
 */
#ifndef MHA_BACKENDS_BF16_H
#define MHA_BACKENDS_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t bf16_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) /* NaN: keep it, quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u); /* zero, subnormal */
    u += 0x7fffu + ((u >> 16) & 1u); /* nearest, ties to even; may carry into inf */
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* x rounded to the nearest bfloat16, as a float. */
static inline float bf16_round(float x) {
    return bf16_to_float(bf16_from_float(x));
}

#endif
