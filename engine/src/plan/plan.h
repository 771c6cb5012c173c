/* plan.h -- a whole model as an ordered plan of steps over the values of
 * its ONNX graph: one fused attention step per recognised attention layer,
 * and an interpreted step (the reference interpreter) for every other node.
 *
 * Data flows one way: the importer's graph goes in, the recogniser is asked
 * about each attention layer carved out of it (partition.c), the plan is
 * checked against the reference interpreter of the whole graph (verify.c),
 * and the run (run.c) hands each attention step to a callback, so the plan
 * never reaches into the executor or the backends. */
#ifndef MHA_PLAN_H
#define MHA_PLAN_H

#include <pthread.h>

#include "interp.h"
#include "layer.h"
#include "mha/plugin.h"

typedef enum plan_step_kind {
    PLAN_STEP_ATTENTION = 1, /* a recognised layer: plan_layer */
    PLAN_STEP_INTERP,        /* one node of the graph, interpreted */
    PLAN_STEP_GEMM,          /* MatMul / Gemm with constant weights (+ bias): plan_gemm */
    PLAN_STEP_NORM,          /* LayerNorm / RMSNorm over the last axis: plan_norm */
    PLAN_STEP_ADD,           /* a float32 Add no other step takes: plan_add */
    PLAN_STEP_GATHER,        /* rows of a constant float32 table by ids: plan_gather */
    PLAN_STEP_CONCAT         /* a float32 Concat of computed values: plan_concat */
} plan_step_kind;

/* Graph outputs an attention step writes beside Y: present key, value. */
#define PLAN_LAYER_MAX_EXTRA 2

/* One attention layer found in the graph. A refused one (recognised == 0)
 * keeps its nodes in the interpreted stream and says why. */
typedef struct plan_layer {
    int core_node;    /* the Softmax / Attention node, graph index */
    int recognised;   /* 1: L is valid and the nodes below run as one step */
    char reason[256]; /* why it was not recognised (recognised == 0) */
    layer L;
    /* graph value id of each input of L, [L.n_inputs], then (residual)
     * the residual the step adds to Y: what the step reads */
    int *in_values;
    int out_value; /* graph value id of the step's output: Y, or Y + residual */
    /* A decoding step with a KV cache: the graph outputs inside the layer
     * that its step writes too, L's outputs 1 .. n_extra (L's output 0 is
     * Y): the present keys and values (the past with the new ones
     * appended), -1 unused */
    int extra_out[PLAN_LAYER_MAX_EXTRA];
    size_t n_extra;
    /* 1: the Add after the layer (Y + in_values[L.n_inputs], residual.c)
     * is the last of nodes, done in the output projection's epilogue */
    int residual;
    /* the norm step (into plan.norms) run on each row of Y (+ residual)
     * once complete, in place (a post-norm LayerNorm: postnorm.c); -1:
     * none. out_value is then the norm's. */
    int norm;
    char desc[48]; /* the form and what the step fuses ("onnx-decomposed+residual"), or "" */
    int *nodes;    /* graph nodes the step replaces, graph order */
    size_t n_nodes;
    double flops; /* at the first probe's sizes */
    /* W_q, W_k, W_v, W_o of L freed after packing (release.c): L's weight
     * pointers are NULL and w_hash is a hash of their bytes */
    int w_released;
    uint64_t w_hash;
} plan_layer;

/* An elementwise program (epilogue.c) run on a GEMM's output: registers
 * hold blocks of elements, register 0 the GEMM's result. */
#define PLAN_EW_MAX_OPS 24
#define PLAN_EW_MAX_REGS 25

typedef enum plan_ew_code {
    PLAN_EW_SQRT = 1, /* unary, in the order of epilogue.c's table */
    PLAN_EW_ERF,
    PLAN_EW_TANH,
    PLAN_EW_RELU,
    PLAN_EW_SIGMOID,
    PLAN_EW_NEG,
    PLAN_EW_EXP,
    PLAN_EW_ADD, /* binary, likewise */
    PLAN_EW_SUB,
    PLAN_EW_MUL,
    PLAN_EW_DIV,
    PLAN_EW_POW
} plan_ew_code;

typedef enum plan_ew_kind {
    PLAN_EW_REG = 1, /* a register */
    PLAN_EW_SCALAR,  /* a constant */
    PLAN_EW_VECTOR,  /* a constant [N] along the last axis */
    PLAN_EW_EXT      /* the external tensor of the output's shape (a residual) */
} plan_ew_kind;

typedef struct plan_ew_arg {
    plan_ew_kind kind;
    int reg;
    float scalar;
    const float *vec;
} plan_ew_arg;

typedef struct plan_ew_op {
    plan_ew_code code;
    int dst;
    plan_ew_arg a, b;
} plan_ew_op;

typedef struct plan_ew_prog {
    int n_ops, n_regs;
    plan_ew_op ops[PLAN_EW_MAX_OPS];
    int ext_value; /* graph value of the external operand, or -1 */
} plan_ew_prog;

/* y = x . W + bias over the last axis of x: a MatMul with a constant
 * [K, N] weight (and the Add of a constant [N] bias after it), or a Gemm. */
typedef struct plan_gemm {
    int node;      /* the MatMul / Gemm */
    int bias_node; /* the fused Add, or -1 */
    int in_value, out_value;
    int64_t K, N;
    const float *W;    /* [K, N]: the initializer's data, or W_owned */
    float *W_owned;    /* Gemm with transB: the transposed copy */
    const float *bias; /* [N] or NULL */
    int reads[2];      /* values the step reads: in_value, epilogue.ext_value */
    size_t n_reads;
    plan_ew_prog epilogue; /* n_ops 0: none */
    /* The epilogue as a plugin's GEMM computes it (plugin.h: act(y) +
     * residual), when it is exactly that: fused_act MHA_ACT_* and
     * fused_residual 1 when the program ends by adding the external
     * operand; fused_act -1 when it is not (the host always runs it). */
    int fused_act, fused_residual;
    /* A Conv whose kernel is its stride (ViT's patch embedding), kh x kw
     * (0: a MatMul / Gemm): x [B, C, H, W] is cut into patch rows [B * Hp *
     * Wp, K = C kh kw], the product [.., N] is written back as the Conv's
     * [B, N, Hp, Wp]; W is the kernel as [K, N]. No epilogue. */
    int64_t conv_kh, conv_kw;
    /* conv_kh > 0 and 1: the Conv's [B, N, Hp, Wp] was only flattened and
     * transposed to patch rows [B, Hp Wp, N] (the Reshape and Transpose in
     * ep_nodes, layout.c): the product is written as those rows, out_value
     * is the Transpose's output. */
    int conv_rows;
    /* conv_general 1: a Conv of any geometry, group 1 (speech front ends:
     * Whisper's kernel 3 padded 1, wav2vec2's kernel 10 stride 5): x cut
     * into rows of its receptive fields (im2col), a position outside x
     * read as 0; strides, dilations [h, w] and pads [h begin, w begin, h
     * end, w end] (a 1-D Conv: h 1, 1, 0). The epilogue (GELU) runs on the
     * Conv's output [B, N, (Ho,) Wo] once written (scalar operands or a
     * tensor of that shape only). */
    int conv_general;
    int64_t conv_stride[2], conv_dil[2], conv_pad[4];
    /* conv_auto: the pads by auto_pad from the input's size at run time
     * (1 SAME_UPPER, 2 SAME_LOWER; conv_pad then holds the first probe's) */
    int conv_auto;
    /* conv_groups G > 1: a grouped Conv (wav2vec2's positional Conv, 16
     * groups; SqueezeBERT's kernel-1 projections) as G GEMMs of [Kg = C / G
     * kh kw, Ng = N / G], one packed weight each: this entry is group 0's
     * and makes the step; gemms[gi + g] (conv_group g, 1 .. G - 1) hold
     * group g's weight and bias and make no step of their own. */
    int conv_groups, conv_group;
    /* conv_depthwise: a Conv of one input channel per group (CvT's and
     * ConvBERT's depthwise projections): a direct loop over the taps
     * (conv_direct.c) on dw_w [Nc, kh kw] (its own copy, Nc = mult x C
     * output channels), not the GEMM; K, N and W are that weight as [kh
     * kw, Nc] for the packing. */
    int conv_depthwise;
    int64_t dw_channels; /* Nc */
    float *dw_w;
    char desc[96]; /* "gemm+bias+Div+Erf+Add+Mul+Mul", for mha info */
    /* the norm step (into plan.norms) run on each row of the product once
     * all its columns are done, in place, after the epilogue (a post-norm
     * LayerNorm: postnorm.c); -1: none. out_value is then the norm's. */
    int norm;
    int *ep_nodes; /* the graph nodes the epilogue computes */
    size_t n_ep_nodes;
    uint64_t w_hash; /* W released (NULL): a hash of its bytes (release.c) */
} plan_gemm;

/* y = (x - mean) / sqrt(var + eps) [* gamma] [+ beta] over the last axis
 * (LayerNorm; RMSNorm: mean 0, var the mean of x^2), x = in_value [+
 * res_value] (the residual Add before the norm). */
#define PLAN_NORM_MAX_NODES 14
typedef struct plan_norm {
    int kind; /* MHA_NORM_LAYER or MHA_NORM_RMS */
    int in_value, out_value;
    int res_value; /* -1: none */
    int reads[2];  /* in_value, res_value: what the step reads */
    size_t n_reads;
    int64_t D;
    float eps;
    const float *gamma, *beta;      /* [D] or NULL */
    int nodes[PLAN_NORM_MAX_NODES]; /* the graph nodes it computes, the last makes the step */
    size_t n_nodes;
    char desc[40]; /* "residual+rmsnorm", "layernorm (no affine)", for mha info */
    int in_step;   /* 1: computed by the epilogue of the GEMM or attention step before it
                      (plan_gemm.norm, plan_layer.norm), no step of its own */
} plan_norm;

/* y = a + b over float32 values (node_steps.c): a of y's shape, b of y's shape
 * too or a constant over y's last axes, the same for every leading index
 * (a position table [1, S, D] over a batch [B, S, D]). The Adds that stay
 * once every other step has taken its own: the position embeddings'
 * (GPT-2's token + position rows, ViT's table over the class token and
 * patches), written into the arena, not a fresh allocation per run. */
typedef struct plan_add {
    int node; /* the Add */
    int a_value, b_value, out_value;
    int reads[2]; /* a_value, b_value: what the step reads */
    size_t n_reads;
} plan_add;

/* y [ids..., D] = table [V, D] rows by ids (node_steps.c): a Gather on axis 0
 * of a constant float32 table by computed int64 / int32 ids (negative ids
 * count from the end, as ONNX says; others out of range fail the run). */
typedef struct plan_gather {
    int node; /* the Gather */
    int table_value, ids_value, out_value;
    int reads[1]; /* ids_value: what the step reads (the table is the plan's) */
    size_t n_reads;
} plan_gather;

/* y = Concat(x_0, x_1, ...) along axis over float32 values (node_steps.c):
 * every input of y's rank, computed or constant; the pieces of each
 * outer index copied one after another. ViT's class token before its
 * patches ([B, 1, D] and [B, P, D] into [B, 1 + P, D], 4.8 MB at B 8 for
 * ViT-B/16), written into the arena, not a fresh allocation per run. */
typedef struct plan_concat {
    int node; /* the Concat */
    int out_value;
    int axis;         /* in [0, rank) */
    const int *reads; /* the node's inputs, in order: what the step reads */
    size_t n_reads;
} plan_concat;

typedef struct plan_step {
    plan_step_kind kind;
    int index;    /* ATTENTION: into plan.layers; GEMM: plan.gemms; NORM: plan.norms; ADD:
                     plan.adds; GATHER: plan.gathers; CONCAT: plan.concats; INTERP: graph
                     node */
    double flops; /* at the first probe's sizes (MatMul, Gemm, attention) */
} plan_step;

/* An axis of a graph output: fixed, or floor((mul * x + offset) / div) of
 * the size x of an input's axis (or x + y + offset of two, plus_input)
 * (dims.c): x itself, x plus a constant (a
 * class token concatenated before the patches: N + 1), the output length
 * of a strided Conv or pooling (Whisper's ceil(frames / 2)). */
typedef struct plan_dim_rule {
    int64_t fixed;    /* >= 0: this size */
    int input;        /* else: graph input index ... */
    int axis;         /* ... and its axis */
    int64_t mul, div; /* ... times mul, divided by div (>= 1) ... */
    int64_t offset;   /* ... after adding this */
    /* >= 0 (mul = div = 1): plus the size of this input's axis plus_axis,
     * another symbolic axis (a decoding step's present keys and values:
     * past + new tokens, when no input has that many); -1: none */
    int plus_input, plus_axis;
    /* > 0: at most this (a truncation, `x[:, :4]`: min(S, 4)); 0: none */
    int64_t cap;
} plan_dim_rule;

/* Largest probe input, in elements (16 MiB of float32), as the
 * recogniser's probes: a declared fixed shape never sizes one alone. */
#define PLAN_PROBE_MAX_ELEMENTS ((int64_t)1 << 22)

/* Sizes a probe gives to each symbolic axis of the graph's inputs. */
#define PLAN_PROBES 2
/* plan.batch_axis when the probes cannot tell */
#define PLAN_BATCH_UNKNOWN (-1)
/* Distinct symbolic axes (batch, sequence, ...) over the graph inputs. */
#define PLAN_MAX_SYMS 4
#define PLAN_MAX_CONVLEN 8
/* plan.id_extent of an integer 0 / 1 mask input */
#define PLAN_IDS_MASK01 (-1)

/* Where the outputs of fused steps go in a run's arena, for one set of
 * input sizes (arena.c). */
#define PLAN_IDLE_BLOCKS                                                                           \
    2 /* arena blocks kept between runs: one per concurrent caller, up to 2                        \
       */

typedef struct plan_arena {
    int64_t key[PLAN_MAX_SYMS]; /* the size of each symbolic axis, -1 unused */
    size_t *offset;             /* [n_values]: byte offset, SIZE_MAX: not in the arena */
    size_t *size;               /* [n_values]: bytes recorded */
    size_t bytes;               /* the arena's size */
    struct plan_arena *next;
} plan_arena;

typedef struct plan {
    mha_alloc_ctx alloc;
    /* the one mutable part: arena layouts by input sizes, under the lock */
    pthread_mutex_t arena_lock;
    plan_arena *arenas;
    /* arena blocks of finished runs, kept for the next ones (a fresh block of
     * tens of MB is fresh pages: the kernel zeroes each on first touch, some
     * 10% of a MiniLM run); idle_bytes[i] 0 = an empty slot */
    void *idle[PLAN_IDLE_BLOCKS];
    size_t idle_bytes[PLAN_IDLE_BLOCKS];
    /* a patch Conv's rows (its GEMM's A) of the last run that built them,
     * kept for the next one (plan_rows_block_take); rows_bytes 0 = none */
    void *rows_block;
    size_t rows_bytes;
    ir_graph *g;     /* owned: nodes of interpreted steps, initializers */
    tensor **consts; /* [n_values]: folded constants (owned), NULL elsewhere */
    plan_layer *layers;
    size_t n_layers;
    plan_gemm *gemms;
    size_t n_gemms;
    plan_norm *norms;
    size_t n_norms;
    plan_add *adds;
    size_t n_adds;
    plan_gather *gathers;
    size_t n_gathers;
    plan_concat *concats;
    size_t n_concats;
    plan_step *steps;
    size_t n_steps;
    int *last_step; /* [n_values]: last step reading the value, -1 none */
    /* [n_nodes]: 1 for a node left out of the steps although nothing else
     * computes it, because no step and no graph output reads what it makes
     * (the shape arithmetic of a fused layer's reshapes, the slice of a
     * causal buffer the fused step does not read); its inputs are not
     * kept for it */
    unsigned char *dead;
    plan_dim_rule (*out_rules)[MHA_MAX_RANK]; /* [n_outputs] */
    int (*in_syms)[MHA_MAX_RANK]; /* [g->n_inputs]: symbolic axis id of each axis, -1 fixed */
    int n_syms;
    int64_t probe_sizes[PLAN_PROBES][PLAN_MAX_SYMS]; /* symbolic axis k -> size, per probe */
    /* symbolic axis k is axis sym_sum[k][0] plus axis [1] (-1: none) plus
     * the constant [2] (a decoding step's keys: past + new tokens, or past +
     * 1); [0] -1 when it is free (probe.c) */
    int sym_sum[PLAN_MAX_SYMS][3];
    /* symbolic axis k is a length through strided 1-D Convs (convlen.c):
     * the candidate rules floor((x + [1]) / [0]) of each prefix of the
     * chain, n_convlen[k] of them (0: none) */
    int64_t convlen[PLAN_MAX_SYMS][PLAN_MAX_CONVLEN][2];
    int n_convlen[PLAN_MAX_SYMS];
    int64_t convlen_min[PLAN_MAX_SYMS]; /* the fewest samples making a frame */
    /* unnamed symbolic axes (no name, or torch.onnx.export's
     * "<input>_dynamic_axes_<n>" for an axis given by index alone) are one
     * axis per index over the inputs, not one per input (probe.c) */
    int merge_unnamed;
    layer_io *inputs, *outputs; /* the graph's, with roles, for mha_model_input/output */
    /* [g->n_inputs]: x > 0, a token-id input's ids must lie in [0, x) (the
     * smallest extent of the constant tables it indexes; ONNX Gather would
     * take [-x, 0) from the table's end, but the embedding a model was
     * exported from refuses negative ids, and -1 / -100 are padding and
     * ignore markers, not tokens); PLAN_IDS_MASK01, an integer mask input
     * (named so, and probed and verified with 0 and 1 only: the fused
     * layers read it as keep / drop, not as the graph's (1 - m) * c)
     * must hold 0 or 1; 0 = not checked. Checked before a run so a bad
     * value is reported against the input, not deep inside the graph. */
    int64_t *id_extent;
    int keep_graph; /* PLAN_KEEP_GRAPH: no initializer freed while building */
    /* The token ids' input (an integer [sym, sym] input indexing a table;
     * -1 none) and which of its axes is the batch: 0, 1 (sequence first:
     * the tutorial language model's `src` [S, B]) or PLAN_BATCH_UNKNOWN
     * (batch_axis.c) */
    int ids_input;
    int batch_axis;
    /* While plan_build runs: per probe, its inputs [g->n_inputs] and the
     * graph outputs [g->n_outputs] the interpreter computed from them in
     * the shape pass (what plan_verify compares against); NULL after. */
    tensor **probe_in[PLAN_PROBES], **probe_out[PLAN_PROBES];
} plan;

/* A GEMM step's epilogue at run time: its program and the external
 * operand (a residual [M, N] laid out as C, or NULL). */
typedef struct plan_ep {
    const plan_ew_prog *prog;
    const float *ext;
} plan_ep;

/* Runs ep on rows [m0, m1), columns [n0, n1) of C [M, N], in place. */
void plan_ep_tile(const plan_ep *ep, float *C, int64_t N, int64_t m0, int64_t m1, int64_t n0,
                  int64_t n1);

/* Values step `layer` reads: L's inputs, then its residual. */
static inline size_t plan_layer_n_reads(const plan_layer *pl) {
    return pl->L.n_inputs + (pl->residual ? 1u : 0u);
}

/* What runs the fused steps: the runtime's executor, or the reference.
 * attention: one recognised layer, inputs as L's, outputs as L's (Y first,
 * then the present keys and values of a cache) allocated with
 * layer_output_shapes' shapes, plus residual (NULL: none), float32 laid
 * out as outputs[0], added to it; gemm: C [M, N] = A [M, K] . W + bias, then
 * the step's epilogue ep (NULL: none): by plan_ep_tile on each tile of C on
 * the thread that computed it, or by the plugin's GEMM when it declares
 * the step's fused form (plan_gemm.fused_act); norm (NULL: the host's
 * plan_norm_rows on the calling thread): y [rows, D] = norm step
 * norm_index of x (+ res, its fused residual, or NULL). */
typedef struct plan_backend {
    mha_status (*attention)(void *user, const plan *P, size_t layer_index, const mha_tensor *inputs,
                            size_t n_inputs, mha_tensor *outputs, size_t n_outputs,
                            const float *residual, mha_error *err);
    mha_status (*gemm)(void *user, const plan *P, size_t gemm_index, const float *A, int64_t M,
                       float *C, const plan_ep *ep, mha_error *err);
    void *user;
    mha_status (*norm)(void *user, const plan *P, size_t norm_index, const float *x,
                       const float *res, float *y, int64_t rows, mha_error *err);
    /* [n_steps] wall seconds of each step of the run (0 for a step that did
     * not run), or NULL: the steps are not timed. */
    double *step_seconds;
    /* Runs fn over [0, n) cut into pieces of at least `grain` items, the
     * pieces on the runtime's threads (fn(ctx, i0, i1) per piece; pieces
     * are disjoint, so fn must not care which thread runs which), or NULL:
     * the caller runs fn(ctx, 0, n) itself. For passes of a step that move
     * data only (a patch Conv's rows): any split gives the same bits. */
    mha_status (*parallel)(void *user, void (*fn)(void *ctx, int64_t i0, int64_t i1), void *ctx,
                           int64_t n, int64_t grain, mha_error *err);
    /* The run's FLOP count (mha_run_options.flops), or NULL: the steps that
     * compute without calling gemm or attention (a depthwise Conv's direct
     * loop) add theirs to it. */
    double *flops;
} plan_backend;

/* The plugin arguments of norm step nm over x (+ res, or NULL), y [rows,
 * D] (every row). A GEMM step with a norm (plan_gemm.norm): gemm runs it on
 * the rows of C in place after the epilogue (plan_gemm_norm_rows on the
 * reference). */
void plan_norm_args(const plan_norm *nm, const float *x, const float *res, float *y, int64_t rows,
                    mha_norm_args *out);

/* Number of attention cores of g (Softmax nodes, Attention nodes of the
 * default and com.microsoft domains). */
size_t plan_count_cores(const ir_graph *g);

/* Flags of plan_build: no verification (a rebuild of a file verified
 * already); every initializer kept, so that the whole graph can still be
 * interpreted after the build (tests) -- else each recognised layer's
 * initializers are freed as soon as it holds its own copy. */
#define PLAN_SKIP_VERIFY 1
#define PLAN_KEEP_GRAPH 2

/* Builds the plan of g, taking ownership of g (freed on failure too, *g
 * cleared). Every attention layer is carved out, recognised and checked
 * with layer_verify; refused ones are interpreted. Unless flags has
 * PLAN_SKIP_VERIFY, the whole plan is then verified against the reference
 * interpreter of g. */
mha_status plan_build(const mha_alloc_ctx *a, ir_graph **g, int flags, plan **out, mha_error *err);
void plan_free(plan *P);

/* After plan_build: frees the initializers and folded constants that only
 * recognised attention layers read (each keeps its own copy), so a model
 * does not hold those weights twice. What interpreted, GEMM and norm steps
 * read stays (GEMM weights are packed lazily, once per backend). The whole
 * graph cannot be evaluated afterwards: plan_verify comes first. */
mha_status plan_release_weights(plan *P, mha_error *err);

/* After GEMM step i was packed (release.c): frees its unpacked weight if
 * nothing else reads it, else its own transposed copy of it if it has one
 * (W becomes NULL, w_hash remembers it); returns
 * the bytes freed. The reference backend cannot run that step afterwards. */
size_t plan_release_gemm_weight(plan *P, size_t i);
/* After attention layer i was packed (release.c): frees its unpacked
 * projection weights W_q, W_k, W_v, W_o (biases stay: they are small)
 * unless the layer computes an attention-weights output from them;
 * returns the bytes freed. Packing it again, or its reference forward
 * pass, then needs the weights of a fresh build (plan_weights_match). */
size_t plan_release_layer_weights(plan *P, size_t i);
/* Whether fresh (a new build of the same file, weights kept) has the GEMM
 * steps and attention layers of P with the weights P released. */
int plan_weights_match(const plan *P, const plan *fresh);

/* Checks the inputs against the graph's (count, dtype, rank, fixed dims)
 * and fills the outputs' dtype, rank and shape. */
mha_status plan_output_shapes(const plan *P, const mha_tensor *inputs, size_t n_inputs,
                              mha_tensor *outputs, size_t n_outputs, mha_error *err);

/* Runs the plan: interpreted steps here, fused steps through be.
 * Outputs as plan_output_shapes gives them. */
mha_status plan_run(const plan *P, const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                    size_t n_outputs, const plan_backend *be, mha_error *err);

/* The reference backend (verify.c): the scalar layer forward and a plain
 * GEMM. */
extern const plan_backend plan_reference_backend;

/* Verification (verify.c): runs the plan with the reference layer forward
 * and the whole graph with the reference interpreter on each probe input,
 * MHA_ERR_MODEL_VERIFY with the max error on a mismatch. */
mha_status plan_verify(const plan *P, mha_error *err);

/* Probe inputs (probe.c): seeded values for the graph inputs at probe p
 * (token ids inside the embedding tables they index, masks 0 / 1). */
mha_status plan_probe_inputs(const plan *P, int p, tensor **in, mha_error *err);
void plan_free_tensors(const mha_alloc_ctx *a, tensor **t, size_t n);

/* Weight bytes of the plan: float weights of recognised layers plus
 * initializers read by interpreted steps. */
size_t plan_weight_bytes(const plan *P);
/* Whether GEMM steps i and j multiply by the same weight and bias (a
 * weight released after packing read from fresh, a fresh build of the
 * file, or NULL: then not alike). */
int plan_gemms_alike(const plan *P, const plan *fresh, size_t i, size_t j);
double plan_flops(const plan *P, double *interp_flops);

#endif
