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

/* Whether exec_run must hand this call to exec_ext_run (layer features, or
 * an ONNX attn_mask whose key axis is not the full key length). Cheap; looks
 * only at roles, dtypes and shapes. */
int exec_ext_wanted(const layer *L, const mha_tensor *inputs, size_t n_inputs);

/* exec_run for those calls: the same contract (outputs shaped as
 * layer_output_shapes says, every output written). */
mha_status exec_ext_run(const exec_env *env, const layer *L, const exec_packed *pk,
                        const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                        size_t n_outputs, mha_error *err);

/* Every mask of a run as one additive float tensor addressed with strides
 * over [batch, head, query, key]; stride 0 broadcasts. */
typedef struct exec_mask {
    const float *data; /* NULL: no mask */
    int64_t sb, sh, sq, sk;
    float *owned;      /* freed by the caller with mha_free */
    int causal_folded; /* the causal mask is in data (as the file's finite term), the
                          kernels run without theirs */
} exec_mask;

/* Defined in exec.c: the mask inputs, the layer's constant bias and (with
 * projections) its sliding window summed into one additive view. */
mha_status exec_mask_build(const mha_alloc_ctx *a, const layer *L, const exec_binding *bd,
                           exec_mask *m, mha_error *err);

/* Defined in exec.c: one attention phase over args (b/h/q ranges covering
 * the whole problem) with env's plugin, pool and threads. */
mha_status exec_run_attention_args(const exec_env *env, const mha_attn_args *args, mha_error *err);

#endif
