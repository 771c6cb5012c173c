/* convert.h -- element conversions between file and model dtypes. */
#ifndef MHA_CONVERT_H
#define MHA_CONVERT_H

#include <stddef.h>

#include "mha/mha.h"

/* Whether elements of dtype `from` can be converted to `to`: the same
 * dtype; any float type (float16/32/64, bfloat16) to float16/32/64; any
 * integer or bool to bool (nonzero = 1); a narrower integer (not bool)
 * to int32 / int64 (widening, exact). */
int tensorfile_can_convert(mha_dtype from, mha_dtype to);
/* Converts n elements (see tensorfile_can_convert; the caller checked). */
void tensorfile_convert(const void *src, mha_dtype from, void *dst, mha_dtype to, size_t n);

#endif
