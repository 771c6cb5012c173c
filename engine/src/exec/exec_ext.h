/* exec_ext.h -- the forward pass of what the float32 core of exec.c does
 * not do itself: the whole ONNX Attention operator (KV cache, key lengths
 * with a bottom-right causal frontier, opset-25 windows, keys beyond a short
 * mask, qk_matmul_output, float16 / bfloat16 data) and the input forms of
 * com.microsoft Attention (integer masks, key lengths). Everything is turned
 * into float32 tensors and an mha_attn_args the plugins already know (mask,
 * kv_len, causal_offset), so every backend runs it with its own attention
 * kernel; conversions, cache concatenation and the qk_matmul_output scores
 * are done here, in plain C. */
#ifndef MHA_EXEC_EXT_H
#define MHA_EXEC_EXT_H

#include "exec.h"

/* Runs L forward: the calls exec_ext_wanted names through exec_ext_run,
 * the rest straight through the float32 core (exec_run_core, same
 * contract). pk must have been packed for env->plugin. outputs must have
 * exactly the dtype, rank and shape layer_output_shapes gives. */
mha_status exec_run(const exec_env *env, const layer *L, const exec_packed *pk,
                    const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                    size_t n_outputs, mha_error *err);

/* Whether exec_run must hand this call to exec_ext_run (layer features, or
 * an ONNX attn_mask whose key axis is not the full key length). Cheap; looks
 * only at roles, dtypes and shapes. */
int exec_ext_wanted(const layer *L, const mha_tensor *inputs, size_t n_inputs);

/* The forward pass of those calls: the same contract (outputs shaped as
 * layer_output_shapes says, every output written). */
mha_status exec_ext_run(const exec_env *env, const layer *L, const exec_packed *pk,
                        const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                        size_t n_outputs, mha_error *err);

#endif
