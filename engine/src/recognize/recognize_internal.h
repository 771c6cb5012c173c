/* recognize_internal.h -- what the files of the layer recogniser share
 * (recognize*.c, verify.c). The recogniser works in three phases:
 *
 *   1. static: which graph inputs each value depends on, where the attention
 *      core is (one Attention node, or one Softmax between two MatMuls), the
 *      chains of layout ops and scalar factors from each projection to the
 *      core and from the core to the output -- by op types and data flow only;
 *   2. probe: every graph input gets a small concrete shape and seeded random
 *      values, and the reference interpreter evaluates the whole graph, so
 *      every value (reshape targets computed from Shape chains included) has
 *      a concrete shape and value;
 *   3. meaning: each chain is re-run on tensors whose elements are their own
 *      indices (int64), which says exactly which projection column and which
 *      token ends up in which head slot of the core, whatever the reshapes and
 *      transposes did. Heads, head order, GQA grouping and the weights in the
 *      layer's standard layout follow from those maps; masks are placed by
 *      re-running the graph with chosen mask inputs.
 *
 * Not used outside these files. */
#ifndef MHA_RECOGNIZE_INTERNAL_H
#define MHA_RECOGNIZE_INTERNAL_H

#include "interp.h"
#include "layer.h"

/* Graph inputs are tracked in a 64-bit set. */
#define RZ_MAX_INPUTS 64
/* Longest chain of layout ops between a projection and the core. */
#define RZ_MAX_STEPS 64
/* Additive terms on the scores (masks) a Softmax core may carry. */
#define RZ_MAX_MASK_TERMS 4

/* One node of a chain, in data-flow order. */
typedef enum rz_step_kind {
    RZ_STEP_LAYOUT = 1, /* moves elements: re-run on index tensors */
    RZ_STEP_IDENTITY,   /* Identity, Cast to the same type */
    RZ_STEP_MUL,        /* times a scalar (the other operand) */
    RZ_STEP_DIV,        /* divided by a scalar (input 1) */
    RZ_STEP_CACHE       /* Concat(past graph input, new rows) along the key axis: a KV
                           cache; traced with the past as negative indices -1 - i */
} rz_step_kind;

typedef struct rz_step {
    int node;
    rz_step_kind kind;
    int data_in;  /* input slot that carries the data */
    int data_out; /* output slot that carries it on (Split) */
} rz_step;

/* A path src -> dst through layout ops and scalar factors. */
typedef struct rz_chain {
    int src, dst; /* value ids */
    rz_step steps[RZ_MAX_STEPS];
    int n;
} rz_chain;

/* A projection y = x . W (+ b): MatMul (+ Add) or Gemm. */
typedef struct rz_proj {
    int node;        /* the MatMul or Gemm */
    int bias_node;   /* the Add of the bias, or -1 (Gemm: its C input) */
    int in_v;        /* data input of the MatMul / Gemm */
    int w_v;         /* weight value */
    int b_v;         /* bias value, or -1 */
    int out_v;       /* after the bias */
    int x_input;     /* graph input index the data comes from (input side) */
    rz_chain xchain; /* graph input -> in_v (input projections only) */
    int given;       /* K or V: a graph input [B, H, S, d] read with no projection
                        (a cached cross-attention); node, w_v are -1 */
    int identity;    /* the output side: no projection, the merged heads are the
                        graph output (LeViT's attention, carved before the hard swish
                        its projection reads); node, w_v are -1, in_v = out_v */
} rz_proj;

typedef enum rz_core_kind { RZ_CORE_ATTENTION = 1, RZ_CORE_SOFTMAX } rz_core_kind;

/* Where a core reads Q, K, V and writes its output, as index views: slot n
 * (one (batch item, head) pair), row r (token), column c (feature) sits at
 * flat index base[n] + r * s_row + c * s_col of the value. */
typedef struct rz_view {
    int64_t n_slots, rows, cols;
    int64_t *base;
    int64_t s_row, s_col;
} rz_view;

/* A term on the scores: an Add of a mask (scores + value), a Where that
 * replaces masked scores by a fill value (masked_fill, torch.where), or a
 * Max that clamps the masked scores from below at a huge negative constant
 * (OPT's torch.max(w, finfo.min): two hiding terms that overflowed to -inf
 * come back to finfo.min, so every key stays finite). */
typedef enum rz_term_kind { RZ_TERM_ADD = 0, RZ_TERM_WHERE, RZ_TERM_CLAMP } rz_term_kind;

typedef struct rz_mask_term {
    rz_term_kind kind;
    int value;     /* the added value, the Where's fill value or the Max's floor */
    int cond;      /* Where: its condition */
    int fill_when; /* Where: the condition value (0 or 1) that selects the fill */
    int above;     /* number of score-path factor steps applied after it */
    int add_node;  /* the Add, Where or Max (or a Sub: see negated) */
    int negated;   /* RZ_TERM_ADD of a Sub: the value is subtracted from the scores
                      (Funnel's `score - 1e6 * (1 - m)`) */
} rz_mask_term;

typedef struct rz_core {
    rz_core_kind kind;
    int node;                          /* Attention or Softmax */
    int q_v, k_v, v_v;                 /* operands: Attention Q/K/V, or Q_h, K_h^T, V_h */
    int o_v;                           /* Attention Y, or P.V */
    int score_mm, pv_mm;               /* Softmax core */
    int mask_input;                    /* Attention core: the attn_mask graph input value, or -1 */
    rz_step score_steps[RZ_MAX_STEPS]; /* Softmax input back to the QK MatMul */
    int n_score_steps;
    /* soft-capping c * tanh(s / c) on the scores (Gemma-2): the Tanh sits
     * below the first softcap_at score steps (those after it, the outer
     * factor c) and above the rest (the inner factors, 1 / c among them) */
    int softcap_on, softcap_at;
    rz_step p_steps[RZ_MAX_STEPS]; /* Softmax output to the P.V MatMul (casts) */
    int n_p_steps;
    int weights_out;  /* graph output of the probabilities (need_weights), or -1 */
    int weights_mean; /* ... averaged over the heads */
    rz_mask_term masks[RZ_MAX_MASK_TERMS];
    int n_masks;
    rz_chain qchain, kchain, vchain; /* projection output -> operand */
    rz_chain ochain;                 /* o_v -> output projection input */
    rz_chain ychain;                 /* output projection output -> graph output */
    rz_proj qp, kp, vp, op;
    /* rotary embedding on Q (0) and K (1): the value rotated and the
     * rotation's output (recognize_rotary.c) */
    int rot_on[2], rot_x[2], rot_y[2];
    uint64_t rot_inputs; /* graph inputs the rotations read besides the rotated data:
                            positions or cos / sin tables given by the caller */
    /* the rotation is one opset-23 RotaryEmbedding node: it turns each head
     * of a [.., heads * d] row alike, so it is probed on every head at once */
    int rot_op[2];
    /* a KV cache on K (0) and V (1): the Concat of the past graph input and
     * the new rows, and its output (present_key / present_value when it is a
     * graph output) (recognize_graph.c) */
    int cache_on[2], cache_node[2], past_v[2], present_v[2];
    /* a norm of Q (0) or K (1) before the rotary: the value normalised, the
     * norm's output, and how many steps of the side's chain lie below it
     * (projection -> x, recognize_qknorm.c) */
    int qkn_on[2], qkn_x[2], qkn_y[2], qkn_lower[2];
} rz_core;

typedef struct rz_ctx {
    const mha_alloc_ctx *a;
    const ir_graph *g;
    mha_error *err;
    uint64_t *deps;     /* per value: graph inputs its VALUES depend on */
    int *n_uses;        /* per value: data consumers (Shape / Size not counted) */
    tensor **probe;     /* values of the probe run (NULL before it) */
    tensor **inputs;    /* the probe inputs, g->n_inputs */
    int64_t B, Sq, Skv; /* probe sizes (Skv: every key, past ones included) */
    int64_t P;          /* probe past length of a KV cache (0 without one) */
    rz_core core;
    /* a Where fill too small to hide its key by itself (older GPT-2's
     * masked_bias, -1e4) applied first, other terms added after it: seen by
     * rz_eff_eval_in (times the factors after it), taken by rz_place_masks
     * as the causal fill that replaces a future key's score */
    int soft_fill_on;
    double soft_fill;
    int soft_fill_cond; /* the Where's condition value */
    int64_t fold;       /* query heads folded into the scores' rows (GPT-BigCode: [B, S*H,
                           S], row t*H + h), unfolded by the map; 1 (or 0) when not */
} rz_ctx;

/* Probe sizes for the symbolic axes of the layer's inputs. */
/* Largest probe input (16 MiB of float32) and probe score matrix (64 MiB),
 * in elements: bound the memory and time of probing and verifying a model
 * whose shapes are fixed in the file (the reference interpreter is plain
 * and slow; a crafted [10^6, 1, 16] query took seconds). Models with
 * dynamic batch / sequence axes are probed at small sizes whatever this is. */
#define RZ_PROBE_MAX_ELEMENTS ((int64_t)1 << 22)
#define RZ_PROBE_MAX_SCORES ((int64_t)1 << 24)

typedef struct rz_sizes {
    int64_t B, Sq, Skv;
    int64_t P; /* past length of a projected layer's KV cache; its total key length
                  Skv is then Sq + P (rz_probe_dims) */
} rz_sizes;

/* An element count for mha_calloc: at least 1 (zero-size allocations are
 * not distinguishable from failure). */
static inline size_t rz_count(int64_t n) {
    return n > 0 ? (size_t)n : 1;
}

/* ---- recognize_layer.c, recognize_seqfirst.c ---- */
/* layer_recognize without the sequence-first retry. */
mha_status rz_recognize_once(const mha_alloc_ctx *a, const ir_graph *g, layer *out, mha_error *err);
/* g read through a batch-first view of its [S, B, D] inputs and outputs:
 * the layer (seq_first) or MHA_ERR_MODEL_UNSUPPORTED (err may be unset). */
mha_status rz_recognize_seq_first(const mha_alloc_ctx *a, const ir_graph *g, layer *out,
                                  mha_error *err);

/* ---- recognize_chain.c: data-flow primitives ---- */
int rz_is_op(const ir_node *n, const char *op);
/* com.microsoft FusedMatMul: alpha * op(A) . op(B) (ONNX Runtime's optimizer
 * at level extended writes Q.K^T and its scale so) */
int rz_is_fused_matmul(const ir_node *n);
int rz_is_shape_op(const ir_node *n);  /* Shape or Size */
int rz_is_layout_op(const ir_node *n); /* moves elements only; input 0 is the data */
const char *rz_node_desc(const rz_ctx *z, int node, char *buf, size_t size);
const ir_node *rz_producer(const rz_ctx *z, int v);
int rz_producer_id(const rz_ctx *z, int v);        /* node index, or -1 */
const char *rz_value_name(const rz_ctx *z, int v); /* "" when out of range */
int rz_is_graph_output(const rz_ctx *z, int v);
/* MHA_ERR_MODEL_UNSUPPORTED unless every input of `node` but data_in is
 * plumbing (independent of the values of every graph input). */
mha_status rz_check_plumbing(rz_ctx *z, int node, int data_in, const char *what);
/* Fills *s when `node` is a chain step for data flowing into its input
 * in_slot (a layout op, Identity / Cast, or with allow_factors a Mul / Div
 * by a constant); 0 when it is not one. */
int rz_classify_step(const rz_ctx *z, int node, int in_slot, int allow_factors, rz_step *s);
/* The single data consumer of v (Shape / Size aside): *node, *slot, or
 * *node = -1 when none; refused when v feeds two, or feeds one and is a
 * graph output. */
mha_status rz_single_consumer(rz_ctx *z, int v, const char *what, int *node, int *slot);
/* Walks back from `v` through layout ops and scalar factors; stops at a
 * value that is a graph input, has no producer, or is produced by an op that
 * is neither (MatMul, Gemm, Add, ...). The chain goes from that value to v. */
mha_status rz_walk_back(rz_ctx *z, int v, int allow_factors, const char *what, rz_chain *ch);
/* Walks forward from `v` to the single data consumer that is not a layout op
 * or scalar factor; *stop_node is it, or -1 when the chain ends at a graph
 * output. */
mha_status rz_walk_forward(rz_ctx *z, int v, const char *what, rz_chain *ch, int *stop_node);

/* ch goes on below its source: lower (ending at a value the chain skipped
 * to, under a rotation or a norm) then ch's steps past its first `skip`.
 * node names the refusal of a chain too long. */
mha_status rz_chain_splice(rz_ctx *z, rz_chain *ch, const rz_chain *lower, int skip, int node,
                           const char *what);
/* MHA_ERR_MODEL_UNSUPPORTED: "<producer of y> on the Q / K path <does>: <why>". */
mha_status rz_refuse_on_path(rz_ctx *z, int y, int side, const char *does, const char *why);

/* ---- recognize_graph.c: static analysis ---- */
mha_status rz_analyse_deps(rz_ctx *z);
/* Parses the input projection that produces `v`. */
mha_status rz_parse_in_proj(rz_ctx *z, int v, const char *what, rz_proj *p);
/* Parses the output projection that consumes `v` through node `node`, and
 * the chain from it to the graph output. */
mha_status rz_parse_out_proj(rz_ctx *z, int node, int v, rz_proj *p, rz_chain *ych);
mha_status rz_parse_softmax_core(rz_ctx *z, int softmax_node);
mha_status rz_parse_attention_core(rz_ctx *z, int attention_node);
/* The parsed equation of an Einsum node (0 if not one, or not readable). */
int rz_einsum_of(const ir_node *n, interp_einsum *e);
/* An Einsum projection X . W (W constant): the number k of X's trailing
 * axes contracted with W's leading ones (W is [prod k axes, rest] as a
 * matrix); 0 if n is not one. */
int rz_einsum_proj_k(const rz_ctx *z, const ir_node *n);

/* ---- recognize_probe.c: probe shapes and inputs (shared with verify.c) ---- */
/* Concrete dims for every input of L (roles and static dims decide which
 * axis is batch / query length / key length); sz is adjusted to static
 * dims first. self: the key length is the query length. */
mha_status rz_probe_dims(const layer *L, int self, rz_sizes *sz, int64_t (*dims)[MHA_MAX_RANK],
                         mha_error *err);
/* Whether every dynamic axis of L's inputs is a batch axis (the lengths are
 * fixed: a layer of a ViT or of a fixed-length text model). */
int rz_batch_only(const layer *L);
/* Fills a rotary input (positions, cos or sin tables; other roles are left
 * alone) with valid values: positions first + s, or tables of the angles
 * (p + 1) * f_t, the same for every batch item; with vary_batch, batch item
 * b is shifted by 3 b positions and positions advance by 2 (so that a layer
 * reading them through the sequence index shows). max_pos > 0 bounds the
 * positions. first: the past length of a KV cache, where a step's
 * positions start. */
void rz_fill_rotary_input(const layer *L, const layer_io *io, tensor *t, int vary_batch,
                          int64_t max_pos, int64_t first);
/* Seeded uniform [-1, 1) floats. */
void rz_fill_random(float *x, int64_t n, uint64_t *state);
uint64_t rz_rand(uint64_t *state);

/* ---- recognize_eval.c: the graph on a probe input ---- */
/* Evaluates the graph on seeded random inputs of the given sizes (static
 * dims win), keeping inputs in z->inputs and every value in z->probe. */
mha_status rz_run_probe(rz_ctx *z, const layer *L, int64_t B, int64_t Sq, int64_t Skv);
/* Re-evaluates after the caller changed z->inputs' data. */
mha_status rz_rerun(rz_ctx *z);
void rz_free_probe(rz_ctx *z);
/* Scalar factors of a chain (product). */
mha_status rz_chain_factor(rz_ctx *z, const rz_chain *ch, double *f);
/* y = the subgraph x -> y of the graph re-run with x replaced by `xin`
 * (borrowed); every other value is the probe's. *out is new (rotations and
 * per-head norms are read this way). */
mha_status rz_subgraph_eval(rz_ctx *z, int x, int y, const tensor *xin, tensor **out);
/* The probe's value v, or NULL when v is out of range. */
static inline const tensor *rz_val(const rz_ctx *z, int v) {
    return (v >= 0 && (size_t)v < z->g->n_values) ? z->probe[v] : NULL;
}

/* ---- recognize_map.c: the meaning of the chains ---- */
mha_status rz_build_projected(rz_ctx *z, layer *L);

/* ---- recognize_rotary.c: rotary position embeddings on Q and K ---- */
/* Phase 1: when ch (side 0 = Q, 1 = K) starts at a value that mixes two
 * data paths, and they meet again in one tensor, the chain goes on below
 * it (recorded in z->core.rot_*). A no-op otherwise. */
mha_status rz_rotary_pass(rz_ctx *z, int side, const char *what, rz_chain *ch);
/* Roles of the graph inputs the rotations read besides the data (before
 * the probe): one integer input is the position ids, two float inputs the
 * cos and sin tables; marks them used, refuses anything else. */
mha_status rz_rotary_roles(rz_ctx *z, layer *L, unsigned char *used);
/* Phase 3 (after the probe): the rotation's kind, dims and tables into L,
 * or a refusal saying what the subgraph is not. */
mha_status rz_rotary_build(rz_ctx *z, layer *L);

/* ---- recognize_qknorm.c: a norm of each head's Q or K before the rotary ---- */
/* Phase 1: when ch (side 0 = Q, 1 = K) starts at the output of a norm --
 * elementwise ops and a reduction whose data paths all meet again in one
 * tensor x -- the chain goes on below x (recorded in z->core.qkn_*). A
 * no-op otherwise. */
mha_status rz_qknorm_pass(rz_ctx *z, int side, const char *what, rz_chain *ch);
/* What the norm of one side is, read by probing it (phase 3). */
typedef struct rz_qkn {
    int kind; /* LAYER_QK_NORM_* */
    float eps;
    int64_t group; /* features per group: the last axis of x */
    int64_t n;     /* the projection's output columns */
    float *w;      /* [n] the weight of each projection column (NaN: not normalised) */
    float *b;      /* [n] the bias of each projection column, or NULL: none */
    tensor *xi;    /* x's elements as projection output indices (token * n + column) */
} rz_qkn;
void rz_qknorm_free(rz_ctx *z, rz_qkn *f);
/* The norm of side `side` from the probe: xi (taken over) numbers x's
 * elements as the projection's output (token * n + column). */
mha_status rz_qknorm_fit(rz_ctx *z, int side, tensor *xi, int64_t n, rz_qkn *f);
/* The norm into L for the final heads: head h feature d is projection
 * column col[rep[h] * width + d]; a group must be one head or all of them. */
mha_status rz_qknorm_place(rz_ctx *z, int side, const rz_qkn *f, const int64_t *col,
                           const int64_t *rep, int64_t heads, int64_t width, layer *L);

/* ---- recognize_alibi.c: ALiBi from the term on the scores ---- */
/* raw [n_slots, sq, skv]: the additive on the scaled scores (hidden keys
 * <= -1e30), head[n] the query head of slot n. 1: it is ALiBi (slopes and
 * form into L); 0: it is not; -1: out of memory (z->err set). */
int rz_alibi_take(rz_ctx *z, layer *L, const double *raw, int64_t n_slots, int64_t sq, int64_t skv,
                  const int64_t *head);
/* The same reading without a layer: slope [H] and the form. */
int rz_alibi_slopes(rz_ctx *z, const double *raw, int64_t n_slots, int64_t sq, int64_t skv,
                    const int64_t *head, int64_t H, double *slope, int *relative);

/* ---- recognize_effect.c: the mask terms' effect on the scores ---- */
/* What the mask terms put on the scores [n_slots, sq, skv]. */
typedef struct rz_eff {
    int64_t n_slots, sq, skv;
    int64_t off; /* query i sits at key position i + off (the past length of a KV cache) */
    double *raw; /* the additive that lands on each score; <= -1e30 hides it */
} rz_eff;
void rz_eff_free(rz_ctx *z, rz_eff *e);
int rz_is_masked_value(double v);
/* The terms' effect from values vals; target (or NULL) the scores' shape. */
mha_status rz_eff_eval_in(rz_ctx *z, const double *cf, tensor *const *vals, const tensor *target,
                          rz_eff *e);

/* ---- recognize_mask.c ---- */
/* Places the additive mask terms of a Softmax core: causal, key padding or
 * an attention mask input. head_of_slot / batch_of_slot after head
 * assembly. */
mha_status rz_place_masks(rz_ctx *z, layer *L, const int64_t *batch_of_slot,
                          const int64_t *head_of_slot, int64_t n_slots);

/* ---- recognize_relbias.c ---- */
/* A bias on 4-D scores that depends on the head and the key - query
 * distance only (T5's bucketed relative positions), computed from the
 * sequence length: tabulated into L->bias by running the part of the graph
 * that computes it at a long length. mi: the mask input (holding its
 * neutral fill), or -1; cf: the factor after each term. */
mha_status rz_relbias_take(rz_ctx *z, layer *L, const double *cf, int mi, const int64_t *head);

#endif
