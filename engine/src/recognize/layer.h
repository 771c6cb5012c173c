/* layer.h -- the recognised attention layer: what the recogniser produces
 * from an ONNX graph and what the executor runs. One struct for every form
 * (bare Attention node, projected layer, PyTorch export, com.microsoft). */
#ifndef MHA_LAYER_H
#define MHA_LAYER_H

#include "common.h"
#include "onnx_ir.h"

typedef struct layer_io {
    char *name;
    mha_io_role role;
    mha_dtype dtype;
    int rank;
    int64_t dims[MHA_MAX_RANK]; /* -1 = dynamic */
} layer_io;

typedef struct layer {
    const char *form; /* static: "onnx-attention", "onnx-attention-layer",
                         "torch-mha", "ms-mha", "ms-attention",
                         "onnx-decomposed" (plain ops with 4D scores) */
    int has_proj;     /* projections present (else bare Attention) */
    int64_t d_model;  /* query input width (has_proj) */
    int64_t d_kv;     /* key/value input width (has_proj) */
    int64_t d_out;    /* output width (has_proj) */
    int64_t q_heads, kv_heads, d_head, d_head_v;
    float scale;               /* multiplies Q.K^T */
    float softcap;             /* 0 = none */
    int causal;                /* top-left aligned unless past/nonpad say otherwise */
    int cross;                 /* a separate key/value input */
    int seq_first;             /* layer inputs/outputs are [S, B, D] instead of [B, S, D] */
    int qkv_rank;              /* bare attention: 3 ([B,S,H*d]) or 4 ([B,H,S,d]) */
    int kpm_true_means_ignore; /* MHA_ROLE_KEY_PADDING_MASK polarity */

    /* Projection weights, row-major [in, out] so that y = x . W + b.
     * Biases may be NULL. Owned (freed by layer_clear). */
    float *wq, *bq; /* [d_model, q_heads*d_head] */
    float *wk, *bk; /* [d_kv, kv_heads*d_head] */
    float *wv, *bv; /* [d_kv, kv_heads*d_head_v] */
    float *wo, *bo; /* [q_heads*d_head_v, d_out] */

    layer_io *inputs; /* graph inputs, graph order */
    size_t n_inputs;
    layer_io *outputs; /* graph outputs, graph order */
    size_t n_outputs;

    /* ---- appended for the whole ONNX Attention operator (issue 7) ---- */
    mha_dtype dtype;                       /* float type of the data inputs and outputs:
                                              float32 (UNDEFINED means float32 too), float16
                                              or bfloat16; computed in float32 inside */
    int qk_mode;                           /* qk_matmul_output_mode 0..3, for the output with
                                              role MHA_ROLE_QK_OUTPUT: 0 scale*Q.K^T, 1 after
                                              softcap, 2 after the mask, 3 after softmax */
    int has_left_window, has_right_window; /* opset 25 windows present */
    int64_t left_window;                   /* keys j < frontier - left_window are hidden */
    int64_t right_window;                  /* keys j > frontier + right_window are hidden */
    int kv_len_moves_causal;               /* MHA_ROLE_NONPAD_KV_SEQLEN also sets the causal
                                              frontier (ONNX: offset = len - Sq); 0 for
                                              com.microsoft mask_index key lengths */
    int mask_pads_keys;                    /* an attn_mask shorter than the total key length
                                              is padded with -inf (ONNX), not broadcast */
    int int_mask_attend_nonzero;           /* integer masks (com.microsoft mask_index):
                                              nonzero = attend */
    int attn_mask_window;                  /* the attn_mask's query / key axes may be
                                              longer than the scores': its first Sq rows
                                              and T columns are read (a causal buffer
                                              the graph slices to the lengths, GPT-2's
                                              `bias` as a graph input) */

    /* ---- appended for the model families' forms (issue 14) ---- */
    int kpm_valued;            /* the key padding input m [B, Skv] (bool, integer or float)
                                  adds kpm_add[m != 0] to the scores of key j -- or, with
                                  kpm_affine and a float m, kpm_add[0] + (kpm_add[1] -
                                  kpm_add[0]) * m (the extended mask (1 - m) * c) */
    int kpm_affine;            /* see kpm_valued */
    float kpm_add[2];          /* the additive for m == 0 and m == 1 (finite or -inf) */
    int attn_bool_ignore_true; /* a bool attn_mask hides True (nn.MultiheadAttention) */
    float *bias;               /* constant additive bias [bias_heads, bias_sq, bias_skv]
                                  on the scaled scores (T5), or NULL; owned */
    int64_t bias_heads;        /* 1 (every head) or q_heads */
    int64_t bias_sq, bias_skv; /* the only query / key lengths the layer accepts then */
    int64_t bias_rel_len;      /* > 0: bias is relative instead, [bias_heads, 2 len - 1]:
                                  score (i, j) of head h gets bias[h][j - i + len - 1], for
                                  query and key lengths up to len (T5) */
    int need_weights;          /* an MHA_ROLE_ATTN_WEIGHTS output: 1 the probabilities
                                  averaged over the heads [B, Sq, Skv], 2 those of every
                                  head [B, Hq, Sq, Skv] */
    int attn_valued;           /* the attn_mask input adds kpm_add as a valued key padding
                                  input does (any type; Keras (1 - m) * -1e9) */
    int attn_mask_batch_first; /* a 3-D attn_mask is, instead of right-aligned: 1 [B, Sq,
                                  Skv] (Keras), 2 [B * q_heads, Sq, Skv] (PyTorch); 3 only
                                  while recognising: probed as [1, Sq, Skv]; 4 a 4-D one
                                  is [B, Sq, q_heads, Skv] (GPT-BigCode's scores of heads
                                  folded into the query rows, viewed so) */
    unsigned idioms;           /* LAYER_IDIOM_* found by the recogniser (mha info) */

    /* ---- appended for rotary embeddings and ALiBi (issue 14) ---- */
    int rotary;                     /* MHA_ROTARY_NONE / _HALF / _INTERLEAVED (plugin.h):
                                       Q and K rotated after their projections */
    int64_t rotary_dim;             /* even, <= d_head: the dims of each head that turn */
    int64_t rotary_n_pos;           /* rows of the tables */
    float *rotary_cos, *rotary_sin; /* [rotary_n_pos, rotary_dim / 2], owned: the model's
                                       own values (its cos / sin caches, or computed
                                       at load from its inverse frequencies) */
    float *rotary_inv_freq;         /* [rotary_dim / 2] or NULL, owned: when present,
                                       positions past the tables are computed per run
                                       as the model does, cos(float(p * inv_freq)) */
    float *alibi_slopes;            /* [q_heads] or NULL, owned: ALiBi */
    int alibi_relative;             /* 0: score += slope * j (BLOOM, MPT);
                                       1: score += slope * (j - i) (the ALiBi paper) */
    int alibi_pos_from_mask;        /* key j is at the count of keys the key padding
                                       input lets through before it (BLOOM's
                                       cumsum(mask) - 1), not at j */

    /* ---- appended for left padding under a finite causal mask (issue 14) ---- */
    int causal_finite; /* the file hides future keys with a huge finite value (finfo.min),
                          not -inf, so a query row whose every visible key is padding
                          averages the keys whose total term stays finite, future ones
                          included: 1 the causal and padding terms add up (GPT-2:
                          torch.where then + (1 - m) * finfo.min; a padded future key
                          overflows to -inf), 2 they merge into one finfo.min (LLaMA's
                          masked_fill of the causal mask: every key stays finite);
                          3 the file replaces a future key's score by causal_fill, a
                          fill too small to hide it by itself, then adds the mask's
                          term (older GPT-2: torch.where(causal, w, masked_bias -1e4)
                          then + (1 - m) * -1e4): a row whose every visible key has a
                          term at or below the fill weighs the future keys by their
                          terms (exec computes those rows as the file does);
                          0 hidden outright */
    float causal_fill; /* causal_finite: the term on a future key's scaled score (GPT-J
                          divides finfo.min by its scale: then such keys win over the
                          padding) */

    /* ---- appended for rotary inputs (issue 14) ---- */
    int rotary_tables_input; /* the cos / sin of every token come in as inputs
                                (MHA_ROLE_ROTARY_COS / _SIN): the layer has no tables;
                                1: a column per turning dim [.., rotary_dim], 2: one per
                                pair [.., rotary_dim / 2]; 3: one input (_COS) holding
                                both, [S, B | 1, rotary_dim / 2, 2] (ChatGLM's cache) */
    /* ---- appended for a cached cross-attention (issue 14) ---- */
    int kv_given; /* has_proj and cross, but K and V come in already projected, in head
                     layout [B, kv_heads, Skv, d] (roles MHA_ROLE_K / _V); only Q and the
                     output are projected: wk, wv, bk, bv are NULL, d_kv 0 */
    /* ---- appended for different key and value inputs (issue 14) ---- */
    int v_input; /* cross: the V projection reads its own input (MHA_ROLE_VALUE_INPUT,
                    the shape of the MHA_ROLE_KEY_VALUE one), K reads the key/value input */
    /* ---- appended for a clamp of the masked scores (issue 15) ---- */
    int mask_clamped; /* the file clamps the masked scores from below at mask_floor (OPT's
                         torch.max(w, finfo.min)): a mask term below it -- two finfo.min
                         terms that overflowed to -inf -- counts as mask_floor, so every
                         key stays finite and a row of hidden keys averages all of them */
    float mask_floor; /* mask_clamped: the floor, a finite float at or below -1e30 */
    /* ---- appended for rows of hidden keys in whole models (issue 15) ---- */
    int softmax_nan; /* the layer is a graph's Softmax over its masked scores, then P.V
                        (a projected layer of a plan), and gives what that graph gives
                        where the kernels' contract gives zeros: NaN on a query row whose
                        every key is hidden (a softmax over -inf alone), and NaN on every
                        row of a batch item whose values hold a NaN (0 x NaN in P.V: the
                        rows a row of hidden keys made in the layer before); the output
                        projection then spreads it over the whole output row */
    /* ---- appended for q / k norms before the rotary (issue 15) ---- */
    int qk_norm[2];       /* Q (0) and K (1) after their projections (and biases), before
                             the rotary: LAYER_QK_NORM_* over each group of features */
    int qk_norm_whole[2]; /* 0: a group is one head's d_head features (Qwen3, Gemma-3,
                             Cohere); 1: the whole row of that side's heads (OLMo-2) */
    float qk_norm_eps[2]; /* added to the mean square (variance) */
    float *qk_norm_w[2];  /* [q_heads * d_head] and [kv_heads * d_head] in the layer's head
                             order, owned: each feature's weight (a Gemma-style 1 + w
                             already added; per head when the file's weight is [heads, d]) */
    /* ---- appended for Swin's shifted windows (issue 15) ---- */
    int64_t bias_windows; /* > 1: the layer's batch is windows of images, bias_windows
                             each (the graph views its scores [B / bias_windows,
                             bias_windows, H, N, N]); a constant bias is then
                             [bias_windows, bias_heads, bias_sq, bias_skv], and batch item
                             b takes window b % bias_windows (Swin's -100 region mask of
                             the shifted windows beside the relative position bias) */
    /* ---- appended for a q / k norm with a bias (issue 15) ---- */
    float *qk_norm_b[2]; /* NULL, or as qk_norm_w: each feature's bias after the norm's
                            weight (Persimmon's LayerNorm of each head of q and k); owned */
    /* ---- appended for the key projection on the query input (issue 15) ---- */
    int k_from_query; /* cross and v_input, but K reads the query input (role QUERY) and no
                         key/value input exists: DETR's self-attention, q = k = x + pos and
                         v = x; MobileBERT's q and k from one bottleneck, v from the state */
    /* ---- appended for a value input of its own width (issue 15) ---- */
    int64_t d_v_in; /* v_input: the width of V's input when it is not d_kv (MobileBERT: q and
                       k from a 32-wide bottleneck, v from the 64-wide state); 0: d_kv */
} layer;

/* The rows of W_v: the width of the input V is projected from. */
static inline int64_t layer_v_rows(const layer *L) {
    return L->d_v_in > 0 ? L->d_v_in : L->d_kv;
}

/* What normalises a group of Q or K features (layer.qk_norm). */
enum {
    LAYER_QK_NORM_NONE = 0,
    LAYER_QK_NORM_RMS = 1,  /* w * x / sqrt(mean(x^2) + eps) */
    LAYER_QK_NORM_LAYER = 2 /* w * (x - mean) / sqrt(var + eps), no bias */
};

/* A projected layer with a KV cache: past_key / past_value [B, kv_heads, P,
 * d] inputs hold the keys and values of P earlier positions, the new ones
 * are appended after them (present_key / present_value outputs [B, kv_heads,
 * P + S, d] when the graph has them); query i is at position P + i: rotary
 * angles and the causal frontier (key j visible iff j <= i + P) move with
 * it, masks cover the P + S keys. Self-attention only. */
static inline int layer_has_cache(const layer *L) {
    for (size_t i = 0; L->has_proj && i < L->n_inputs; i++)
        if (L->inputs[i].role == MHA_ROLE_PAST_KEY) return 1;
    return 0;
}

/* Whether a projected layer writes present keys or values: those of its
 * cache, or (no past input) the new rows of an empty one. */
static inline int layer_keeps_cache(const layer *L) {
    for (size_t i = 0; L->has_proj && i < L->n_outputs; i++)
        if (L->outputs[i].role == MHA_ROLE_PRESENT_KEY ||
            L->outputs[i].role == MHA_ROLE_PRESENT_VALUE)
            return 1;
    return layer_has_cache(L);
}

/* What the recogniser met on the way (named by mha info). */
enum {
    LAYER_IDIOM_WHERE_MASK = 1u << 0,    /* masked_fill / torch.where on the scores */
    LAYER_IDIOM_EXT_MASK = 1u << 1,      /* key padding from an extended mask (1 - m) * c */
    LAYER_IDIOM_SOFTMAX_CAST = 1u << 2,  /* Casts around the Softmax (float32 softmax) */
    LAYER_IDIOM_SCORE_RESHAPE = 1u << 3, /* reshapes of the scores between mask terms */
    LAYER_IDIOM_POS_BIAS = 1u << 4,      /* a constant per-head position bias */
    LAYER_IDIOM_WINDOW = 1u << 5,        /* a sliding window with the causal mask */
    LAYER_IDIOM_QK_FACTORS = 1u << 6,    /* scale factors on Q and K (before the product) */
    LAYER_IDIOM_FUSED_QKV = 1u << 7,     /* one projection split into Q, K, V */
    LAYER_IDIOM_HEAD_WEIGHTS = 1u << 8,  /* head-averaged attention weights as an output */
    LAYER_IDIOM_KV_CACHE = 1u << 9       /* past / present keys and values (layer_has_cache) */
};

/* Finds the attention layer in g by meaning (folding constants and shapes,
 * tracing Q/K/V to their projections) and fills *out. Refuses anything it
 * cannot place with MHA_ERR_MODEL_UNSUPPORTED naming op type and node. */
mha_status layer_recognize(const mha_alloc_ctx *a, const ir_graph *g, layer *out, mha_error *err);

/* Trust, then verify: evaluates g with the reference interpreter on a small
 * seeded random probe input and compares with layer_reference_forward.
 * MHA_ERR_MODEL_VERIFY on a mismatch (message gives the max error). */
mha_status layer_verify(const mha_alloc_ctx *a, const ir_graph *g, const layer *L, mha_error *err);

void layer_clear(const mha_alloc_ctx *a, layer *L);

/* Rotary tables of positions [p0, p0 + n) from the inverse frequencies
 * inv_freq [half], as PyTorch models compute them in float32: the angle
 * float(p) * inv_freq[t] rounded to float, then its cos and sin (rounded
 * once). cos, sin: [n, half]. */
void layer_rotary_fill(const float *inv_freq, int64_t half, int64_t p0, int64_t n, float *cos,
                       float *sin);
size_t layer_weight_bytes(const layer *L);
/* Whether A and B project with the same weights (the same sizes and
 * values; both with projections): ALBERT's one layer run N times, packed
 * and counted once. */
int layer_weights_alike(const layer *A, const layer *B);

/* The value head size and the output width, where the layer leaves them 0
 * (equal to d_head, d_model). */
/* Whether the layer's query rows come in a dynamic length (the sequence
 * axis of its QUERY or Q input is not fixed in the file). */
static inline int layer_query_len_dynamic(const layer *L) {
    for (size_t i = 0; i < L->n_inputs; i++) {
        const layer_io *io = &L->inputs[i];
        if (io->role == MHA_ROLE_QUERY && io->rank == 3) return io->dims[L->seq_first ? 0 : 1] < 0;
        if (io->role == MHA_ROLE_Q && io->rank >= 3) return io->dims[io->rank - 2] < 0;
    }
    return 0;
}

static inline int64_t layer_dv(const layer *L) {
    return L->d_head_v > 0 ? L->d_head_v : L->d_head;
}
static inline int64_t layer_dout(const layer *L) {
    return L->d_out > 0 ? L->d_out : L->d_model;
}

#endif
