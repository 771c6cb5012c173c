/* gen.h -- what `mha gen` writes, shared by its files: the parameters of a
 * model (mha_gen.c reads them from the command line), the graph builders
 * (gen_layer.c: one attention layer; gen_model.c: a whole encoder or
 * decoder) and the blocks they are made of (gen_blocks.c: Linear layers,
 * norms, activations, the attention core in head layout), written the way
 * PyTorch exports them. */
#ifndef MHA_GEN_H
#define MHA_GEN_H

#include <stdint.h>

#include "onnx_writer.h"

enum { GEN_KIND_LAYER, GEN_KIND_ENCODER, GEN_KIND_DECODER };
enum { GEN_FORM_ATTENTION23, GEN_FORM_MS_MHA, GEN_FORM_DECOMPOSED };
/* LayerNorm decomposed (ReduceMean, Sub, Pow, Sqrt, Div: PyTorch 1.13 at
 * opset < 17), the LayerNormalization op, LLaMA's RMSNorm. */
enum { GEN_NORM_LAYERNORM, GEN_NORM_LAYERNORM_OP, GEN_NORM_RMSNORM };
enum { GEN_ACT_GELU, GEN_ACT_GELU_TANH, GEN_ACT_RELU, GEN_ACT_SWIGLU };

typedef struct gen_params {
    int kind;
    long long d, heads, kv_heads;
    unsigned long long seed;
    int causal, bias, form;
    /* whole models */
    long long layers, ffn, vocab, max_pos;
    int norm, pre_norm, act, lm_head;
    const char *name; /* the graph's name */
} gen_params;

/* The model p describes as an ONNX writer (ow_free it); NULL when out of
 * memory. gen_layer: kind GEN_KIND_LAYER; gen_model: the others. */
ow_writer *gen_layer(const gen_params *p);
ow_writer *gen_model(const gen_params *p);

/* ---- blocks (gen_blocks.c) ---- */

/* A graph under construction: the writer, the weights' random stream and
 * a counter naming the constants. */
typedef struct gen_graph {
    ow_writer *w;
    uint64_t seed;
    int n_const;
    const char *out_name; /* when set, the name of the next node's output
                             (a graph output, as PyTorch names them) */
} gen_graph;

/* A node op(inputs, NULL-terminated) named `name`, whose one output is
 * "<name>_output_0" (PyTorch's naming). Returns the output's name; *node
 * (when not NULL) is the node, for its attributes. */
const char *gen_op(gen_graph *g, ow_msg **node, const char *op, const char *name, ...);
/* Constant initializers: a float32 or int64 scalar, an int64 vector (a
 * scalar when n is 0). */
const char *gen_const_f(gen_graph *g, float v);
const char *gen_const_i(gen_graph *g, int64_t v);
const char *gen_const_iv(gen_graph *g, const int64_t *v, size_t n);

/* nn.Linear over the last axis of x: MatMul(x, <prefix>.weight [in, out])
 * then, with bias, Add(<prefix>.bias, .) as PyTorch writes it. Weights
 * U(-1, 1) / sqrt(in). Returns the output's name. */
const char *gen_linear(gen_graph *g, const char *prefix, const char *x, int64_t in, int64_t out,
                       int bias);
/* A norm over the last axis (d wide), with its weight (and bias for
 * LayerNorm) named <prefix>.weight / .bias. */
const char *gen_norm(gen_graph *g, int norm, const char *prefix, const char *x, int64_t d);
/* The feed-forward network: up (ffn wide), activation, down. */
const char *gen_ffn(gen_graph *g, const gen_params *p, const char *prefix, const char *x);
/* Attention in head layout over projected q [B, S, H*dh], k and v [B, S,
 * kv*dh]: Reshape, Transpose (K to [B, H, dh, S]), kv heads repeated by
 * Unsqueeze / Expand / Reshape when kv < H, MatMul, Div by sqrt(dh), Add of
 * mask (NULL: none), Softmax, MatMul, Transpose, Reshape to [B, S, H*dh]. */
const char *gen_attention_core(gen_graph *g, const char *prefix, const char *q, const char *k,
                               const char *v, int64_t heads, int64_t kv_heads, int64_t dh,
                               const char *mask);
/* The positions 0 .. S-1 (int64 [S]) of `like`'s axis 1 (Shape, Gather,
 * Range), and the causal mask [S, S] over them: 0 on and below the
 * diagonal, -inf above (Unsqueeze, Greater, Where). */
const char *gen_positions(gen_graph *g, const char *prefix, const char *like);
const char *gen_causal_mask(gen_graph *g, const char *prefix, const char *pos);

#endif
