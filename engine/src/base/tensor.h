/* tensor.h -- the engine's own tensor: an mha_tensor plus ownership, used by
 * the ONNX loader, the reference interpreter and the tensor file readers. */
#ifndef MHA_TENSOR_H
#define MHA_TENSOR_H

#include "common.h"

typedef struct tensor {
    mha_dtype dtype;
    int rank;
    int64_t dims[MHA_MAX_RANK];
    void *data; /* numel * mha_dtype_size(dtype) bytes; may be NULL if numel == 0 */
    size_t nbytes;
    int owns_data; /* data freed with the tensor's alloc ctx */
    const mha_alloc_ctx *alloc;
} tensor;

/* Creates a tensor with zeroed, owned storage. Checks dims >= 0, rank <=
 * MHA_MAX_RANK and that the byte size fits (MHA_ERR_LIMIT otherwise). */
mha_status tensor_new(const mha_alloc_ctx *a, mha_dtype dt, int rank, const int64_t *dims,
                      tensor **out, mha_error *err);
void tensor_free(tensor *t); /* accepts NULL */
mha_status tensor_clone(const tensor *src, tensor **out, mha_error *err);
int64_t tensor_numel(const tensor *t);
/* Reads element i as double / int64 whatever the dtype (float16/bfloat16 included). */
double tensor_get_f64(const tensor *t, int64_t i);
int64_t tensor_get_i64(const tensor *t, int64_t i);
void tensor_set_f64(tensor *t, int64_t i, double v);
/* The public view of t (shares its data). */
void tensor_as_mha(const tensor *t, mha_tensor *out);
/* "2x3x4" into buf. */
const char *tensor_shape_str(int rank, const int64_t *dims, char *buf, size_t n);

/* IEEE half and bfloat16 conversions. */
float mha_half_to_float(uint16_t h);
uint16_t mha_float_to_half(float f);
float mha_bf16_to_float(uint16_t h);
uint16_t mha_float_to_bf16(float f);

#endif
