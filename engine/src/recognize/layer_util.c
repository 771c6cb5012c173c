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

/* n floats at a and at b alike (both absent, or the same values). */
static int layer_same_floats(const float *a, const float *b, int64_t n) {
    if (!a || !b) return a == b;
    return a == b || memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

int layer_weights_alike(const layer *A, const layer *B) {
    if (!A->has_proj || !B->has_proj || !A->wq || !B->wq || A->cross != B->cross ||
        A->kv_given != B->kv_given || !A->v_input != !B->v_input || A->d_head != B->d_head ||
        A->q_heads != B->q_heads || A->kv_heads != B->kv_heads || A->d_model != B->d_model ||
        A->d_kv != B->d_kv || layer_dv(A) != layer_dv(B) || layer_dout(A) != layer_dout(B) ||
        layer_v_rows(A) != layer_v_rows(B))
        return 0;
    const int64_t nq = A->q_heads * A->d_head, nk = A->kv_heads * A->d_head;
    const int64_t nv = A->kv_heads * layer_dv(A), natt = A->q_heads * layer_dv(A);
    const int64_t kv_rows = A->cross ? A->d_kv : A->d_model;
    const int64_t v_rows = !A->cross ? A->d_model : A->v_input ? layer_v_rows(A) : A->d_kv;
    return layer_same_floats(A->wq, B->wq, A->d_model * nq) &&
           layer_same_floats(A->bq, B->bq, nq) && layer_same_floats(A->wk, B->wk, kv_rows * nk) &&
           layer_same_floats(A->bk, B->bk, nk) && layer_same_floats(A->wv, B->wv, v_rows * nv) &&
           layer_same_floats(A->bv, B->bv, nv) &&
           layer_same_floats(A->wo, B->wo, natt * layer_dout(A)) &&
           layer_same_floats(A->bo, B->bo, layer_dout(A));
}
