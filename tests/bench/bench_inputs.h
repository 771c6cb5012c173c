/* bench_inputs.h -- seeded input values the bench programs on the public
 * API share (lib_ab, open_loop_trace): floats uniform in [-1, 1), token
 * ids in [0, 1000), other integers 1, booleans true, from one linear
 * congruential sequence. Header only and no library call (lib_ab reaches
 * the library through dlopen). */
#ifndef MHA_TESTS_BENCH_INPUTS_H
#define MHA_TESTS_BENCH_INPUTS_H

#include <stdint.h>

#include "mha/mha.h"

/* n elements of dtype at data, the sequence continued from *seed */
static inline void bench_fill_seeded(void *data, int64_t n, mha_dtype dtype, int token_ids,
                                     uint32_t *seed) {
    for (int64_t k = 0; k < n; k++) {
        *seed = *seed * 1664525u + 1013904223u;
        const uint32_t r = *seed >> 8;
        if (dtype == MHA_DTYPE_FLOAT32)
            ((float *)data)[k] = (float)r / 16777216.0f * 2.0f - 1.0f;
        else if (dtype == MHA_DTYPE_INT64)
            ((int64_t *)data)[k] = token_ids ? r % 1000 : 1;
        else if (dtype == MHA_DTYPE_INT32)
            ((int32_t *)data)[k] = token_ids ? (int32_t)(r % 1000) : 1;
        else if (dtype == MHA_DTYPE_BOOL)
            ((unsigned char *)data)[k] = 1;
    }
}

#endif
