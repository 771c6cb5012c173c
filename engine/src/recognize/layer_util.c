/* layer_util.c -- what every user of a recognised `layer` needs besides the
 * recogniser: freeing it, its rotary tables, its weight size. Binding the
 * caller's inputs is the executor's (exec/layer_bind.c), and so is the
 * reference forward pass (exec/layer_reference.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layer.h"

void layer_clear(const mha_alloc_ctx *a, layer *L) {
    if (!L) return;
    float *weights[] = {L->wq,           L->bq,           L->wk,           L->bk,
                        L->wv,           L->bv,           L->wo,           L->bo,
                        L->bias,         L->rotary_cos,   L->rotary_sin,   L->rotary_inv_freq,
                        L->alibi_slopes, L->qk_norm_w[0], L->qk_norm_w[1], L->qk_norm_b[0],
                        L->qk_norm_b[1]};
    for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++)
        mha_free(a, weights[i]);
    for (size_t i = 0; L->inputs && i < L->n_inputs; i++)
        mha_free(a, L->inputs[i].name);
    for (size_t i = 0; L->outputs && i < L->n_outputs; i++)
        mha_free(a, L->outputs[i].name);
    mha_free(a, L->inputs);
    mha_free(a, L->outputs);
    memset(L, 0, sizeof *L);
}

void layer_rotary_fill(const float *inv_freq, int64_t half, int64_t p0, int64_t n, float *cos_out,
                       float *sin_out) {
    for (int64_t p = 0; p < n; p++)
        for (int64_t t = 0; t < half; t++) {
            const float angle = (float)(p0 + p) * inv_freq[t];
            cos_out[p * half + t] = (float)cos((double)angle);
            sin_out[p * half + t] = (float)sin((double)angle);
        }
}

size_t layer_weight_bytes(const layer *L) {
    if (!L || !L->has_proj) return 0;
    const int64_t dk = L->d_head, dv = layer_dv(L), d_out = layer_dout(L);
    const int64_t nq = L->q_heads * dk, nk = L->kv_heads * dk, nv = L->kv_heads * dv;
    const int64_t natt = L->q_heads * dv;
    int64_t n = 0;
    if (L->wq) n += L->d_model * nq;
    if (L->bq) n += nq;
    if (L->wk) n += L->d_kv * nk;
    if (L->bk) n += nk;
    if (L->wv) n += layer_v_rows(L) * nv;
    if (L->bv) n += nv;
    if (L->wo) n += natt * d_out;
    if (L->bo) n += d_out;
    if (L->qk_norm_w[0]) n += nq;
    if (L->qk_norm_w[1]) n += nk;
    if (L->qk_norm_b[0]) n += nq;
    if (L->qk_norm_b[1]) n += nk;
    return (size_t)n * sizeof(float);
}
