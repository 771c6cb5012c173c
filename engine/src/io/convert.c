/* convert.c -- element conversions between the dtypes of files and of
 * models (see convert.h), shared by the .npy reader and whole-tensor
 * files. */
#include "convert.h"

#include <string.h>

#include "tensor.h"

static int dtype_is_float(mha_dtype d) {
    return d == MHA_DTYPE_FLOAT32 || d == MHA_DTYPE_FLOAT64 || d == MHA_DTYPE_FLOAT16 ||
           d == MHA_DTYPE_BFLOAT16;
}

static int dtype_is_integer(mha_dtype d) {
    return d == MHA_DTYPE_INT64 || d == MHA_DTYPE_INT32 || d == MHA_DTYPE_INT8 ||
           d == MHA_DTYPE_UINT8 || d == MHA_DTYPE_BOOL || d == MHA_DTYPE_INT16 ||
           d == MHA_DTYPE_UINT16 || d == MHA_DTYPE_UINT32;
}

int tensorfile_can_convert(mha_dtype from, mha_dtype to) {
    if (mha_dtype_size(from) == 0 || mha_dtype_size(to) == 0) return 0;
    if (from == to) return 1;
    if (dtype_is_float(from) && dtype_is_float(to)) return to != MHA_DTYPE_BFLOAT16;
    if (dtype_is_integer(from) && to == MHA_DTYPE_BOOL) return 1;
    /* integer widening, which loses nothing: token ids or masks stored as
     * int32 (or bytes) for a model that takes int64. Not bool: whether true
     * means keep or ignore a key is the model's, 1 would mean keep. */
    if (dtype_is_integer(from) && from != MHA_DTYPE_BOOL &&
        (to == MHA_DTYPE_INT64 || to == MHA_DTYPE_INT32))
        return mha_dtype_size(from) < mha_dtype_size(to);
    return 0;
}

/* Element i of src, which may sit at any address (a mapped file's data
 * need not be aligned to the element size): every load is a memcpy of
 * `size` bytes into `v`. */
static void convert_load(const void *src, size_t i, size_t size, void *v) {
    memcpy(v, (const unsigned char *)src + i * size, size);
}

static double convert_get(const void *src, mha_dtype d, size_t i) {
    float f;
    double x;
    uint16_t u;
    switch (d) {
    case MHA_DTYPE_FLOAT32:
        convert_load(src, i, sizeof f, &f);
        return f;
    case MHA_DTYPE_FLOAT64:
        convert_load(src, i, sizeof x, &x);
        return x;
    case MHA_DTYPE_FLOAT16:
        convert_load(src, i, sizeof u, &u);
        return mha_half_to_float(u);
    case MHA_DTYPE_BFLOAT16:
        convert_load(src, i, sizeof u, &u);
        return mha_bf16_to_float(u);
    default:
        return 0.0;
    }
}

/* Integer element i of src: its 1, 2, 4 or 8 little-endian bytes (the
 * engine runs on little-endian hosts only), sign-extended for int8 / 16 /
 * 32 / 64, zero-extended for uint8 / 16 / 32. */
static int64_t convert_get_int(const void *src, mha_dtype d, size_t i) {
    const size_t size = mha_dtype_size(d);
    uint64_t u = 0;
    convert_load(src, i, size, &u);
    if (size == 8) return (int64_t)u;
    const int is_signed = d == MHA_DTYPE_INT32 || d == MHA_DTYPE_INT16 || d == MHA_DTYPE_INT8;
    const uint64_t sign = (uint64_t)1 << (8 * size - 1);
    return is_signed ? (int64_t)(u ^ sign) - (int64_t)sign : (int64_t)u;
}

static int convert_nonzero(const void *src, mha_dtype d, size_t i) {
    if (d == MHA_DTYPE_BOOL) return ((const uint8_t *)src)[i] != 0;
    return convert_get_int(src, d, i) != 0;
}

void tensorfile_convert(const void *src, mha_dtype from, void *dst, mha_dtype to, size_t n) {
    if (to == MHA_DTYPE_BOOL) { /* also normalises bool bytes to 0 / 1 */
        uint8_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = (uint8_t)convert_nonzero(src, from, i);
        return;
    }
    if (from == to) {
        if (src != dst) memcpy(dst, src, n * mha_dtype_size(from));
        return;
    }
    switch (to) {
    case MHA_DTYPE_FLOAT32: {
        float *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = (float)convert_get(src, from, i);
        break;
    }
    case MHA_DTYPE_FLOAT64: {
        double *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = convert_get(src, from, i);
        break;
    }
    case MHA_DTYPE_FLOAT16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = mha_float_to_half((float)convert_get(src, from, i));
        break;
    }
    case MHA_DTYPE_INT64: { /* widening only: in place is safe back to front */
        int64_t *d = dst;
        for (size_t i = n; i-- > 0;)
            d[i] = convert_get_int(src, from, i);
        break;
    }
    case MHA_DTYPE_INT32: {
        int32_t *d = dst;
        for (size_t i = n; i-- > 0;)
            d[i] = (int32_t)convert_get_int(src, from, i);
        break;
    }
    default:
        break;
    }
}
