/* layer_bind.h -- the caller's tensors bound to a recognised layer's roles
 * and checked, and the output shapes that follow (layer_bind.c). */
#ifndef MHA_LAYER_BIND_H
#define MHA_LAYER_BIND_H

#include "layer.h"

/* The caller's tensors bound to their roles, with the sizes they imply. */
typedef struct exec_binding {
    const mha_tensor *x_q;         /* has_proj: query input */
    const mha_tensor *x_kv;        /* has_proj: key/value input (x_q for self) */
    const mha_tensor *q, *k, *v;   /* bare attention */
    const mha_tensor *attn_mask;   /* NULL if absent */
    const mha_tensor *key_padding; /* NULL if absent */
    int64_t B, Sq, Skv;
    int64_t dk, dv, d_out; /* effective head sizes and output width */
    size_t y_index;        /* the output with role MHA_ROLE_OUTPUT */
    mha_tensor y_shape;    /* its dtype, rank and shape (no data) */
    /* ---- appended (issue 7): KV cache, key lengths, extra outputs ---- */
    const mha_tensor *past_key, *past_value; /* [B, Hkv, P, dk|dv], or NULL */
    const mha_tensor *kv_lengths;            /* [B] int64/int32 valid keys, or NULL */
    int64_t P, T;                            /* past length; total keys T = P + Skv */
    int64_t present_key_index, present_value_index, qk_index; /* outputs; -1 = absent */
    /* ---- appended (issue 14) ---- */
    int64_t weights_index; /* output of the head-averaged probabilities; -1 = absent */
    /* ---- appended (issue 14): rotary positions or tables given as inputs ---- */
    const mha_tensor *position_ids;            /* [B or 1, Sq] integer, or NULL */
    const mha_tensor *rotary_cos, *rotary_sin; /* [B or 1, (1,) Sq, rotary_dim], or NULL */
    /* ---- appended (issue 14): a separate value input, a bias input ---- */
    const mha_tensor *x_v;       /* has_proj: what V is projected from (x_kv unless L->v_input) */
    const mha_tensor *attn_bias; /* MHA_ROLE_ATTN_BIAS: added like a float attn_mask, or NULL */
} exec_binding;

/* Binds and checks every input against L (dtype, rank, widths, batch and
 * sequence agreement between inputs, mask broadcastability). Messages name
 * the input and both shapes. */
mha_status layer_bind(const layer *L, const mha_tensor *inputs, size_t n_inputs, size_t n_outputs,
                      exec_binding *bd, mha_error *err);

/* Output shapes for given input shapes, with every input checked (dtype,
 * rank, dims against the layer and against each other). */
mha_status layer_output_shapes(const layer *L, const mha_tensor *inputs, size_t n_inputs,
                               mha_tensor *outputs, size_t n_outputs, mha_error *err);

#endif
