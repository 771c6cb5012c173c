/* tensor.c -- the engine's owned tensor, element access for any dtype, and
 * float16 / bfloat16 conversions. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

mha_status tensor_new(const mha_alloc_ctx *a, mha_dtype dt, int rank, const int64_t *dims,
                      tensor **out, mha_error *err) {
    *out = NULL;
    size_t esize = mha_dtype_size(dt);
    if (esize == 0) return mha_fail(err, MHA_ERR_DTYPE, "unsupported data type %d", (int)dt);
    if (rank < 0 || rank > MHA_MAX_RANK)
        return mha_fail(err, MHA_ERR_LIMIT, "rank %d exceeds the limit of %d", rank, MHA_MAX_RANK);
    size_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return mha_fail(err, MHA_ERR_SHAPE, "negative dimension %lld", (long long)dims[i]);
        if ((uint64_t)dims[i] > SIZE_MAX || !mha_mul_size(numel, (size_t)dims[i], &numel))
            return mha_fail(err, MHA_ERR_LIMIT, "tensor element count overflows");
    }
    size_t nbytes;
    if (!mha_mul_size(numel, esize, &nbytes) || nbytes > ((size_t)1 << 40))
        return mha_fail(err, MHA_ERR_LIMIT, "tensor of %zu elements is too large", numel);
    tensor *t = mha_calloc(a, 1, sizeof *t);
    if (!t) return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory allocating a tensor");
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->nbytes = nbytes;
    t->alloc = a;
    t->owns_data = 1;
    t->data = mha_calloc(a, nbytes ? nbytes : 1, 1);
    if (!t->data) {
        mha_free(a, t);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory allocating %zu bytes", nbytes);
    }
    *out = t;
    return MHA_OK;
}

void tensor_free(tensor *t) {
    if (!t) return;
    if (t->owns_data) mha_free(t->alloc, t->data);
    mha_free(t->alloc, t);
}

void tensor_as_mha(const tensor *t, mha_tensor *out) {
    memset(out, 0, sizeof *out);
    out->dtype = t->dtype;
    out->rank = t->rank;
    for (int i = 0; i < t->rank; i++)
        out->shape[i] = t->dims[i];
    out->data = t->data;
}

mha_status tensor_clone(const tensor *src, tensor **out, mha_error *err) {
    mha_status st = tensor_new(src->alloc, src->dtype, src->rank, src->dims, out, err);
    if (st != MHA_OK) return st;
    if (src->nbytes) memcpy((*out)->data, src->data, src->nbytes);
    return MHA_OK;
}

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

double tensor_get_f64(const tensor *t, int64_t i) {
    switch (t->dtype) {
    case MHA_DTYPE_FLOAT32:
        return ((const float *)t->data)[i];
    case MHA_DTYPE_FLOAT64:
        return ((const double *)t->data)[i];
    case MHA_DTYPE_FLOAT16:
        return mha_half_to_float(((const uint16_t *)t->data)[i]);
    case MHA_DTYPE_BFLOAT16:
        return mha_bf16_to_float(((const uint16_t *)t->data)[i]);
    case MHA_DTYPE_INT64:
        return (double)((const int64_t *)t->data)[i];
    case MHA_DTYPE_INT32:
        return ((const int32_t *)t->data)[i];
    case MHA_DTYPE_INT8:
        return ((const int8_t *)t->data)[i];
    case MHA_DTYPE_UINT8:
        return ((const uint8_t *)t->data)[i];
    case MHA_DTYPE_UINT16:
        return ((const uint16_t *)t->data)[i];
    case MHA_DTYPE_INT16:
        return ((const int16_t *)t->data)[i];
    case MHA_DTYPE_UINT32:
        return ((const uint32_t *)t->data)[i];
    case MHA_DTYPE_BOOL:
        return ((const uint8_t *)t->data)[i] ? 1.0 : 0.0;
    case MHA_DTYPE_UNDEFINED:
        break;
    }
    return 0.0;
}

int64_t tensor_get_i64(const tensor *t, int64_t i) {
    switch (t->dtype) {
    case MHA_DTYPE_INT64:
        return ((const int64_t *)t->data)[i];
    case MHA_DTYPE_INT32:
        return ((const int32_t *)t->data)[i];
    case MHA_DTYPE_INT8:
        return ((const int8_t *)t->data)[i];
    case MHA_DTYPE_UINT8:
        return ((const uint8_t *)t->data)[i];
    case MHA_DTYPE_BOOL:
        return ((const uint8_t *)t->data)[i] != 0;
    default: {
        double d = tensor_get_f64(t, i);
        if (!(d == d)) return 0;
        if (d >= 9.2e18) return INT64_MAX;
        if (d <= -9.2e18) return INT64_MIN;
        return (int64_t)d;
    }
    }
}

void tensor_set_f64(tensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case MHA_DTYPE_FLOAT32:
        ((float *)t->data)[i] = (float)v;
        break;
    case MHA_DTYPE_FLOAT64:
        ((double *)t->data)[i] = v;
        break;
    case MHA_DTYPE_FLOAT16:
        ((uint16_t *)t->data)[i] = mha_float_to_half((float)v);
        break;
    case MHA_DTYPE_BFLOAT16:
        ((uint16_t *)t->data)[i] = mha_float_to_bf16((float)v);
        break;
    case MHA_DTYPE_INT64:
        ((int64_t *)t->data)[i] = (v != v)       ? 0
                                  : v >= 9.2e18  ? INT64_MAX
                                  : v <= -9.2e18 ? INT64_MIN
                                                 : (int64_t)v;
        break;
    case MHA_DTYPE_INT32:
        ((int32_t *)t->data)[i] = (v != v || fabs(v) > 2.1e9) ? 0 : (int32_t)v;
        break;
    case MHA_DTYPE_INT8:
        ((int8_t *)t->data)[i] = (v != v || fabs(v) > 127) ? 0 : (int8_t)v;
        break;
    case MHA_DTYPE_UINT8:
        ((uint8_t *)t->data)[i] = (v != v || v < 0 || v > 255) ? 0 : (uint8_t)v;
        break;
    case MHA_DTYPE_BOOL:
        ((uint8_t *)t->data)[i] = v != 0.0;
        break;
    case MHA_DTYPE_UINT16: /* file-only types: no model computes in them */
    case MHA_DTYPE_INT16:
    case MHA_DTYPE_UINT32:
    case MHA_DTYPE_UNDEFINED:
        break;
    }
}

const char *tensor_shape_str(int rank, const int64_t *dims, char *buf, size_t n) {
    size_t used = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    if (rank == 0) {
        snprintf(buf, n, "scalar");
        return buf;
    }
    if (rank < 0 || rank > MHA_MAX_RANK) {
        /* a caller's tensor with a rank out of range: its dims past
         * MHA_MAX_RANK are other memory, never to be read (or shown) */
        snprintf(buf, n, "of rank %d", rank);
        return buf;
    }
    for (int i = 0; i < rank && used < n; i++) {
        int w = dims[i] < 0
                    ? snprintf(buf + used, n - used, "%s?", i ? "x" : "")
                    : snprintf(buf + used, n - used, "%s%lld", i ? "x" : "", (long long)dims[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

/* ---- half precision ---- */

float mha_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mha_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (absx < 0x38800000u) {                                  /* subnormal or zero in half */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value = m * 2^(e-150) = r * 2^-24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t e = (absx >> 23) - 127 + 15;
    uint32_t m = absx & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float mha_bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mha_float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}
