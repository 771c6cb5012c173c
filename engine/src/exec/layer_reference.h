/* layer_reference.h -- a recognised layer run on the built-in scalar
 * backend (layer_reference.c). */
#ifndef MHA_LAYER_REFERENCE_H
#define MHA_LAYER_REFERENCE_H

#include "layer.h"

/* Runs the layer single-threaded with the built-in scalar backend (no
 * runtime needed): the reference the verifier and tests compare against.
 * outputs[] must be allocated with the shapes from layer_output_shapes. */
mha_status layer_reference_forward(const mha_alloc_ctx *a, const layer *L, const mha_tensor *inputs,
                                   size_t n_inputs, mha_tensor *outputs, size_t n_outputs,
                                   mha_error *err);

#endif
