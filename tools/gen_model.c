/* gen_model.c -- a whole transformer for `mha gen` (see gen.h), as PyTorch
 * exports one at opset 17 (IR version 8):
 *
 *   input_ids [batch, seq] int64 (and, for an encoder, attention_mask
 *   [batch, seq] int64: 1 = a token, 0 = padding)
 *   x = Gather(embeddings.word.weight [V, D], input_ids)
 *     + Gather(embeddings.position.weight [P, D], Range(0, seq))
 *   mask [batch, 1, 1, seq] = (1 - attention_mask) * finfo(float32).min,
 *     plus the causal -inf above the diagonal [seq, seq] when causal
 *   post-norm (BERT): x = Norm(x); per layer
 *       x = Norm(x + Attn(x)); x = Norm(x + FFN(x))
 *   pre-norm (GPT-2, LLaMA): per layer
 *       x = x + Attn(Norm(x)); x = x + FFN(Norm(x)); then x = Norm(x)
 *   last_hidden_state [batch, seq, D] = x
 *   logits [batch, seq, V] = x . lm_head.weight [D, V]   (a decoder's LM head)
 *
 * Attn is the attention core of gen_blocks.c (head layout, the mask added
 * to the scores) between Linear projections; FFN is Linear, activation,
 * Linear (or SwiGLU's gate and up). Weights are drawn in graph order. */
#include <math.h>

#include "gen.h"
#include "mha/mha.h"

/* A sublayer (the attention with its mask, NULL for none, or the FFN) and
 * its residual: it sees x itself (post-norm) or Norm(x) (pre-norm); the sum
 * is normalised after it in post-norm. */
static const char *model_sublayer(gen_graph *g, const gen_params *p, const char *layer,
                                  const char *which, const char *x, int attention,
                                  const char *mask) {
    const char *final = g->out_name; /* for the last norm only */
    g->out_name = NULL;
    const char *prefix = ow_fmt(g->w, "%s.%s", layer, which);
    const char *in =
        p->pre_norm ? gen_norm(g, p->norm, ow_fmt(g->w, "%s.norm", prefix), x, p->d) : x;
    const char *y;
    if (attention) {
        int64_t dh = p->d / p->heads, dq = p->heads * dh, dkv = p->kv_heads * dh;
        const char *q = gen_linear(g, ow_fmt(g->w, "%s.q", prefix), in, p->d, dq, p->bias);
        const char *k = gen_linear(g, ow_fmt(g->w, "%s.k", prefix), in, p->d, dkv, p->bias);
        const char *v = gen_linear(g, ow_fmt(g->w, "%s.v", prefix), in, p->d, dkv, p->bias);
        if (p->causal) {
            /* per layer, from the length of its own input (as GPT-2 slices
             * its causal buffer to the scores' length) */
            const char *pos = gen_positions(g, ow_fmt(g->w, "%s/positions", prefix), in);
            const char *causal = gen_causal_mask(g, ow_fmt(g->w, "%s/causal_mask", prefix), pos);
            mask = mask ? gen_op(g, NULL, "Add", ow_fmt(g->w, "/%s/mask/Add", prefix), causal, mask,
                                 NULL)
                        : causal;
        }
        const char *c = gen_attention_core(g, prefix, q, k, v, p->heads, p->kv_heads, dh, mask);
        y = gen_linear(g, ow_fmt(g->w, "%s.o", prefix), c, dq, p->d, p->bias);
    } else {
        y = gen_ffn(g, p, prefix, in);
    }
    const char *sum = gen_op(g, NULL, "Add", ow_fmt(g->w, "/%s/%s/Add", layer, which), x, y, NULL);
    if (p->pre_norm) return sum;
    g->out_name = final;
    return gen_norm(g, p->norm, ow_fmt(g->w, "%s.norm", prefix), sum, p->d);
}

/* The encoder's padding mask [B, 1, 1, S] from attention_mask [B, S]. */
static const char *model_padding_mask(gen_graph *g) {
    const char *prefix = "extended_mask";
    const int64_t axes[2] = {1, 2};
    ow_msg *n;
    const char *m = gen_op(g, NULL, "Unsqueeze", ow_fmt(g->w, "/%s/Unsqueeze", prefix),
                           "attention_mask", gen_const_iv(g, axes, 2), NULL);
    m = gen_op(g, &n, "Cast", ow_fmt(g->w, "/%s/Cast", prefix), m, NULL);
    ow_attr_int(n, "to", OW_FLOAT);
    m = gen_op(g, NULL, "Sub", ow_fmt(g->w, "/%s/Sub", prefix), gen_const_f(g, 1.0f), m, NULL);
    return gen_op(g, NULL, "Mul", ow_fmt(g->w, "/%s/Mul", prefix), m,
                  gen_const_f(g, -3.4028234663852886e38f), NULL);
}

ow_writer *gen_model(const gen_params *p) {
    gen_graph g = {ow_create(8, 17, 0, MHA_VERSION_STRING, p->name), p->seed, 0, NULL};
    if (!g.w) return NULL;
    const int encoder = p->kind == GEN_KIND_ENCODER;
    const int64_t ids_dims[2] = {-1, -1}, hid_dims[3] = {-1, -1, p->d},
                  logit_dims[3] = {-1, -1, p->vocab};
    const char *const axes[3] = {"batch", "seq", NULL};
    ow_input(g.w, "input_ids", OW_INT64, 2, ids_dims, axes);
    if (encoder) ow_input(g.w, "attention_mask", OW_INT64, 2, ids_dims, axes);

    const int64_t tok_dims[2] = {p->vocab, p->d}, pos_dims[2] = {p->max_pos, p->d};
    ow_random(g.w, "embeddings.word.weight", 2, tok_dims, 1.0f, 0.0f, &g.seed);
    ow_random(g.w, "embeddings.position.weight", 2, pos_dims, 1.0f, 0.0f, &g.seed);
    const char *tok = gen_op(&g, NULL, "Gather", "/embeddings/word/Gather",
                             "embeddings.word.weight", "input_ids", NULL);
    const char *pos = gen_positions(&g, "positions", "input_ids");
    const char *pe = gen_op(&g, NULL, "Gather", "/embeddings/position/Gather",
                            "embeddings.position.weight", pos, NULL);
    const char *x = gen_op(&g, NULL, "Add", "/embeddings/Add", tok, pe, NULL);
    if (!p->pre_norm) x = gen_norm(&g, p->norm, "embeddings.norm", x, p->d);

    const char *mask = encoder ? model_padding_mask(&g) : NULL; /* NULL: none */
    for (long long i = 0; i < p->layers; i++) {
        const char *layer = ow_fmt(g.w, "layers.%lld", i);
        x = model_sublayer(&g, p, layer, "attention", x, 1, mask);
        /* the norm ending a post-norm model names its output */
        if (!p->pre_norm && i + 1 == p->layers) g.out_name = "last_hidden_state";
        x = model_sublayer(&g, p, layer, "ffn", x, 0, NULL);
    }
    if (p->pre_norm) {
        g.out_name = "last_hidden_state";
        x = gen_norm(&g, p->norm, "final_norm", x, p->d);
    }
    if (p->lm_head) {
        g.out_name = "logits";
        gen_linear(&g, "lm_head", x, p->d, p->vocab, 0);
    }
    ow_output(g.w, "last_hidden_state", OW_FLOAT, 3, hid_dims, axes);
    if (p->lm_head) ow_output(g.w, "logits", OW_FLOAT, 3, logit_dims, axes);
    return g.w;
}
