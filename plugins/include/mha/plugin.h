/*
 * plugin.h -- the backend plugin ABI of libmha, version 2.0. The only header
 * a plugin needs; a plugin links nothing of libmha.
 *
 * A plugin is a shared object exporting exactly one symbol:
 *
 *     const mha_plugin *mha_plugin_get(uint32_t host_abi_major);
 *
 * It returns a pointer to static const data, or NULL when it cannot serve
 * that host ABI major version. The host dlopen()s the file with
 * RTLD_NOW|RTLD_LOCAL, calls mha_plugin_get, checks abi_major and
 * struct_size before it reads any other field, then calls probe() with the
 * CPU features it detected once (CPUID and XGETBV). probe() returns 0 when
 * the plugin cannot run here, otherwise a score: the highest score wins
 * "auto" selection. A table of another major (a plugin built against ABI
 * 1.x) is refused with a message naming the ABI it was built for; the
 * first three fields and `name` keep their place in every major version so
 * that message can be written.
 *
 * Rules for plugin authors:
 *  - Entry and probe code are compiled without ISA flags and without LTO, so
 *    loading a plugin on an older CPU never raises SIGILL. ISA flags go only
 *    on kernel sources, reached only after probe() said yes.
 *  - init() (optional) chooses what the plugin runs here -- its kernels and
 *    its packed-weight layouts -- from services->cpu_features alone, never
 *    from its own CPUID (MHA_CPU_MASK must hold). The host shares weights
 *    packed with one state among the states of the same plugin that were
 *    given the same features. NULL init: the state is NULL; NULL fini:
 *    nothing to free.
 *  - Kernels never allocate, print, spawn threads or keep thread-local state
 *    on the hot path. Scratch memory comes from the host, sized by
 *    attention_workspace_size(). Logging and allocation outside kernels go
 *    through the services table given to init(). A kernel call may use up
 *    to 256 KiB of the calling thread's stack (the host's threads have at
 *    least 512 KiB).
 *  - A plugin flagged MHA_PLUGIN_SELF_PARALLEL is given whole problems on one
 *    host thread (the host pool idles) and `num_threads` in the arguments; it
 *    must set its width per parallel region (e.g. OpenMP num_threads(n)),
 *    never through a process-global setter.
 *  - Results must not depend on how the host splits the work: element (m, n)
 *    of a GEMM and row (b, h, i) of an attention output must be bitwise the
 *    same whatever range a call covers (ranges are aligned to the plugin's
 *    gemm_m_block / gemm_n_block). That makes runs deterministic for any
 *    thread count.
 *  - The host asks only for what the table declares: a precision in
 *    `precisions`, an activation or a residual in `epilogues`, ALiBi,
 *    rotary or normalisation in `ops`. What a plugin does not declare the
 *    host does itself (its reference code) or refuses with a message naming
 *    the plugin.
 *
 * Versioning: minor versions only append fields to mha_plugin and to the
 * argument structs. Each minor version's sizes are frozen (MHA_*_SIZE_2_x
 * below): the host accepts a table whose struct_size is at least the frozen
 * size of the minor version it declares, and reads a later field only when
 * struct_size covers it; a plugin reads a later field of an argument struct
 * only when the struct_size the host wrote covers it (an older host leaves
 * it out: treat it as absent).
 *
 *   2.0  one table for whole models: packing with the plugin's state and the
 *        precision; GEMM epilogues (bias, activation, residual); the
 *        precisions and optional ops a plugin serves (ALiBi, rotary,
 *        Layer / RMS normalisation).
 *        (1.0-1.3, the layer ABI, are no longer loaded.)
 */
#ifndef MHA_PLUGIN_H
#define MHA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MHA_PLUGIN_ABI_MAJOR 2u
#define MHA_PLUGIN_ABI_MINOR 0u
#define MHA_PLUGIN_ENTRY_SYMBOL "mha_plugin_get"

/* CPU features, detected by the host (CPUID leaf 1 and 7, plus XGETBV for
 * the OS saving the wider registers). */
#define MHA_CPU_SSE2 (1ull << 0)
#define MHA_CPU_SSE41 (1ull << 1)
#define MHA_CPU_AVX (1ull << 2)
#define MHA_CPU_F16C (1ull << 3)
#define MHA_CPU_FMA (1ull << 4)
#define MHA_CPU_AVX2 (1ull << 5)
#define MHA_CPU_AVX512F (1ull << 6)
#define MHA_CPU_AVX512DQ (1ull << 7)
#define MHA_CPU_AVX512BW (1ull << 8)
#define MHA_CPU_AVX512VL (1ull << 9)
#define MHA_CPU_AVX512BF16 (1ull << 10)

/* Plugin capability flags. */
#define MHA_PLUGIN_SELF_PARALLEL (1u << 0) /* parallelises inside itself */

/* Compute precisions, as mha_precision of mha.h. Inputs and outputs stay
 * float in every precision; bfloat16 rounds both operands of each product
 * to bfloat16 (round to nearest even, subnormals to signed zero) and sums
 * the exact products in float32. Softmax, masks, biases, epilogues and
 * outputs stay float32. */
#define MHA_PRECISION_FLOAT32 0
#define MHA_PRECISION_BFLOAT16 1
#define MHA_PRECISION_BIT(p) (1u << (p)) /* its bit in mha_plugin.precisions */

/* Optional operations (mha_plugin.ops). */
#define MHA_OP_ALIBI (1u << 0)  /* attention reads mha_attn_args.alibi_* */
#define MHA_OP_ROTARY (1u << 1) /* mha_plugin.rotary is set */
#define MHA_OP_NORM (1u << 2)   /* mha_plugin.norm is set (LayerNorm and RMSNorm) */

/* GEMM epilogue activations (mha_gemm_args.activation), applied to
 * x = A.B + bias of each element, in float32:
 *   GELU_ERF   0.5 x (1 + erf(x / sqrt 2))
 *   GELU_TANH  0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
 *   RELU       max(x, 0) (NaN stays NaN)
 *   SILU       x / (1 + exp(-x))
 * The scalar backend's code is the reference (backends/scalar); a plugin
 * matches it within the bound tests/unit/test_backends.c states. */
#define MHA_ACT_NONE 0
#define MHA_ACT_GELU_ERF 1
#define MHA_ACT_GELU_TANH 2
#define MHA_ACT_RELU 3
#define MHA_ACT_SILU 4
#define MHA_ACT_COUNT 5

/* Epilogue parts a plugin serves (mha_plugin.epilogues). The bias is not
 * listed: every plugin adds it. */
#define MHA_EPILOGUE_ACT(act) (1u << (act)) /* act in 1..MHA_ACT_COUNT-1 */
#define MHA_EPILOGUE_RESIDUAL (1u << 16)

/* Log levels, as mha_log_level of mha.h. */
#define MHA_PLUGIN_LOG_ERROR 0
#define MHA_PLUGIN_LOG_WARN 1
#define MHA_PLUGIN_LOG_INFO 2
#define MHA_PLUGIN_LOG_DEBUG 3

/** Services the host lends a plugin at init(). Valid until fini(). */
typedef struct mha_plugin_services {
    uint32_t struct_size;
    void *ctx;
    void (*log)(void *ctx, int level, const char *message);
    void *(*alloc)(void *ctx, size_t size, size_t align);
    void (*free)(void *ctx, void *ptr);
    /* The CPU features (MHA_CPU_*) the host gave probe(), after its mask: a
     * plugin with kernels for several ISAs picks among them by this. */
    uint64_t cpu_features;
} mha_plugin_services;

/**
 * For m in [m0, m1), n in [n0, n1):
 *
 *   x = sum_k A[m, k] * B[k, n] + (bias ? bias[n] : 0)
 *   C[m, n] = act(x) + (residual ? residual[m * ldr + n] : 0)
 *
 * A is row-major with leading dimension lda; B was packed once by
 * gemm_pack_b in `precision` (with a state of the same features); C is
 * row-major with leading dimension ldc. The epilogue runs on each tile
 * while it is in cache. residual never overlaps the part of C a call
 * writes (a kernel may store partial sums in C before it reads it). The
 * host sets activation and residual only when the plugin declared them in
 * `epilogues`.
 */
typedef struct mha_gemm_args {
    uint32_t struct_size;
    int precision; /* MHA_PRECISION_* */
    int64_t M, N, K;
    const float *A;
    int64_t lda;
    const void *B_packed;
    float *C;
    int64_t ldc;
    int64_t m0, m1, n0, n1; /* the part to compute */
    int num_threads;        /* self-parallel plugins only; else 1 */
    /* epilogue */
    int activation;        /* MHA_ACT_* */
    const float *bias;     /* [N] or NULL */
    const float *residual; /* [M, ldr] or NULL */
    int64_t ldr;
} mha_gemm_args;

/**
 * Scaled dot-product attention over a range of (batch, query head, query
 * rows):
 *
 *   for b in [b0,b1), h in [h0,h1), i in [q0,q1):
 *     g = h / (Hq / Hkv)                                (GQA: shared kv head)
 *     s[j] = scale * dot(Q[b,h,i,:], K[b,g,j,:])        j in [0, Skv)
 *     if softcap > 0: s[j] = softcap * tanh(s[j] / softcap)
 *     if alibi:       s[j] += slope[h] * (p_j - r)      (p_j = j or
 *                                      alibi_pos[b, j]; r = 0, or
 *                                      i + causal_offset[b] when relative)
 *     if mask:        s[j] += mask[b,h,i,j]             (via the strides)
 *     masked when: mask value <= -FLT_MAX (-inf or the lowest float),
 *                  causal and j > i + causal_offset[b],
 *                  kv_len and j >= kv_len[b]
 *     p = softmax over the unmasked j; O[b,h,i,:] = sum_j p[j] * V[b,g,j,:]
 *     a row with every key masked gives O[b,h,i,:] = 0 (never NaN)
 *
 * Every tensor is addressed by element strides per axis (batch, head, seq);
 * the last axis (d) is contiguous. Mask strides may be 0 to broadcast.
 * bfloat16 rounds q, k (for Q.K^T) and p, v (for P.V) to bfloat16; scores,
 * softmax and o stay float.
 *
 * ALiBi (only for a plugin declaring MHA_OP_ALIBI) is computed on the fly
 * from the slopes, never as an Sq x Skv tensor. BLOOM adds slope * j (key
 * position; MPT the same minus a constant), the ALiBi paper slope * (j - i);
 * they differ by a constant per row, which softmax does not see, but the
 * kernels compute the form the model names so the float rounding matches.
 * BLOOM counts a key's position among the attended keys of its batch item
 * (cumsum(mask) - 1): the host passes those positions in alibi_pos.
 */
typedef struct mha_attn_args {
    uint32_t struct_size;
    int precision; /* MHA_PRECISION_* */
    int64_t B, Hq, Hkv, Sq, Skv, dk, dv;
    const float *q;
    int64_t q_sb, q_sh, q_ss;
    const float *k;
    int64_t k_sb, k_sh, k_ss;
    const float *v;
    int64_t v_sb, v_sh, v_ss;
    float *o;
    int64_t o_sb, o_sh, o_ss;
    float scale;
    float softcap;     /* 0 = none */
    const float *mask; /* additive, or NULL */
    int64_t m_sb, m_sh, m_sq, m_sk;
    int causal;
    const int64_t *causal_offset;   /* [B]; NULL means 0 for every batch */
    const int64_t *kv_len;          /* [B] valid keys per batch, or NULL */
    int64_t b0, b1, h0, h1, q0, q1; /* the part to compute */
    int num_threads;                /* self-parallel plugins only; else 1 */
    const float *alibi_slopes;      /* [Hq] ALiBi slope of each query head, or NULL */
    int alibi_relative;     /* 0: + slope * p_j; 1: + slope * (p_j - i - causal_offset[b]) */
    const float *alibi_pos; /* key positions p_j [B, Skv] (row b at b * alibi_pos_sb, keys
                               contiguous), or NULL: p_j = j */
    int64_t alibi_pos_sb;
} mha_attn_args;

/* Rotary position embedding kinds. With half = rotary_dim / 2 and t in
 * [0, half), the pair (x1, x2) of a row at position p turns by the angle
 * whose cos / sin are cos[p, t] / sin[p, t]:
 *   MHA_ROTARY_HALF         x1 = x[t],  x2 = x[t + half]     (rotate-half:
 *                                          GPT-NeoX, LLaMA, Mistral, Qwen)
 *   MHA_ROTARY_INTERLEAVED  x1 = x[2t], x2 = x[2t + 1]       (GPT-J)
 *   x1' = x1 * cos - x2 * sin,  x2' = x2 * cos + x1 * sin
 * Dimensions from rotary_dim on are left alone (partial rotary). */
#define MHA_ROTARY_NONE 0
#define MHA_ROTARY_HALF 1
#define MHA_ROTARY_INTERLEAVED 2

/**
 * Rotary embedding applied in place to rows [s0, s1) of heads [h0, h1) of
 * batch items [b0, b1) of x [B, H, S, d] (element strides per batch, head
 * and sequence axis; d contiguous). Row s of batch item b is at position
 * s + pos_offset[b] (pos_offset NULL: 0), which must lie in [0, n_pos).
 * cos and sin are [n_pos, rotary_dim / 2] tables the host computed once from
 * the model's own constants. A row's result never depends on the range.
 */
typedef struct mha_rotary_args {
    uint32_t struct_size;
    int64_t B, H, S, d;
    float *x;
    int64_t x_sb, x_sh, x_ss;
    int kind;           /* MHA_ROTARY_HALF or MHA_ROTARY_INTERLEAVED */
    int64_t rotary_dim; /* even, 2 <= rotary_dim <= d */
    const float *cos;   /* [n_pos, rotary_dim / 2] */
    const float *sin;   /* [n_pos, rotary_dim / 2] */
    int64_t n_pos;
    const int64_t *pos_offset;      /* [B], or NULL */
    int64_t b0, b1, h0, h1, s0, s1; /* the part to rotate */
    int num_threads;                /* self-parallel plugins only; else 1 */
} mha_rotary_args;

/* Normalisation kinds (mha_norm_args.kind). */
#define MHA_NORM_LAYER 1 /* LayerNorm: mu = mean(x), var = mean((x - mu)^2) */
#define MHA_NORM_RMS 2   /* RMSNorm:   mu = 0,       var = mean(x^2) */

/**
 * Normalisation over the last axis of rows [r0, r1) of x [rows, D] (ldx),
 * after the residual add before it when there is one:
 *
 *   s[r, i] = x[r, i] + residual[r, i]     (float; s = x without residual)
 *   y[r, i] = (s[r, i] - mu) / sqrt(var + eps) * gamma[i] + beta[i]
 *
 * (gamma NULL: 1; beta NULL: 0), mu and var of s as the kind says. y
 * [rows, D] (ldy) may be x or residual itself (same leading dimension).
 * The statistics of a row are summed in double in a fixed order (the
 * scalar reference, which the in-tree backends share: 8 interleaved partial
 * sums), so a row's result never depends on the range.
 */
typedef struct mha_norm_args {
    uint32_t struct_size;
    int kind; /* MHA_NORM_* */
    int64_t rows, D;
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy;
    const float *residual; /* [rows, ldr] added to x first, or NULL */
    int64_t ldr;
    const float *gamma; /* [D] or NULL */
    const float *beta;  /* [D] or NULL */
    float eps;
    int64_t r0, r1;  /* the rows to normalise */
    int num_threads; /* self-parallel plugins only; else 1 */
} mha_norm_args;

/* The host refuses a plugin whose GEMM blocks lie outside 1..this (a
 * register block is a few dozen rows or columns; a block this large means
 * the table is wrong). Workspace and packed sizes are checked too: a
 * packed size below K x N x (bytes of the precision), or a size whose
 * rounding would wrap, is refused before anything is allocated. */
#define MHA_PLUGIN_GEMM_BLOCK_MAX 4096

typedef struct mha_plugin {
    uint32_t abi_major;   /* MHA_PLUGIN_ABI_MAJOR */
    uint32_t abi_minor;   /* MHA_PLUGIN_ABI_MINOR */
    uint32_t struct_size; /* sizeof(mha_plugin) as the plugin was built */
    const char *name;     /* short, [a-z0-9_]: "scalar", "avx2", ... */
    const char *version;
    const char *description;
    uint32_t flags;      /* MHA_PLUGIN_* */
    uint32_t precisions; /* MHA_PRECISION_BIT() of each precision served; float32 required */
    uint32_t ops;        /* MHA_OP_* served */
    uint32_t epilogues;  /* MHA_EPILOGUE_* served (the bias always is) */

    /** 0 = cannot run with these features; else a score (higher = better).
     *  May set *reason to a static string saying why 0. */
    int (*probe)(uint64_t cpu_features, const char **reason);
    /** Once per runtime; may be NULL (state NULL). *state is passed to every
     *  later call. 0 = ok. */
    int (*init)(const mha_plugin_services *services, void **state);
    void (*fini)(void *state); /* may be NULL */

    /* GEMM: B is packed once per model (weights), then reused. */
    int64_t gemm_m_block; /* host splits M at multiples of this, 1..MHA_PLUGIN_GEMM_BLOCK_MAX */
    int64_t gemm_n_block; /* host splits N at multiples of this, 1..MHA_PLUGIN_GEMM_BLOCK_MAX */
    /** Bytes of B [K, N] packed in `precision` for this state's layout;
     *  SIZE_MAX when it overflows or the precision is not served. */
    size_t (*gemm_packed_size)(void *state, int precision, int64_t K, int64_t N);
    /** B [K, N] row-major (ldb) into `packed` (gemm_packed_size bytes,
     *  64-byte aligned). 0 = ok. */
    int (*gemm_pack_b)(void *state, int precision, int64_t K, int64_t N, const float *B,
                       int64_t ldb, void *packed);
    int (*gemm)(void *state, const mha_gemm_args *args); /* 0 = ok */

    /* Attention: workspace bytes one call over the given args needs (the host
     * sizes it with the widest range it will pass). */
    size_t (*attention_workspace_size)(void *state, const mha_attn_args *args);
    int (*attention)(void *state, const mha_attn_args *args, void *workspace,
                     size_t workspace_size); /* 0 = ok */

    /** Rotary embedding in place; set exactly when ops has MHA_OP_ROTARY
     *  (else NULL: the host rotates with its reference code). 0 = ok. */
    int (*rotary)(void *state, const mha_rotary_args *args);
    /** Layer / RMS normalisation; set exactly when ops has MHA_OP_NORM
     *  (else NULL: the host normalises with its reference code). 0 = ok. */
    int (*norm)(void *state, const mha_norm_args *args);
} mha_plugin;

/* Frozen sizes of each minor version. They never change: later versions only
 * append. */
#define MHA_PLUGIN_SIZE_2_0 (offsetof(mha_plugin, norm) + sizeof(void (*)(void)))
#define MHA_GEMM_ARGS_SIZE_2_0 (offsetof(mha_gemm_args, ldr) + sizeof(int64_t))
#define MHA_ATTN_ARGS_SIZE_2_0 (offsetof(mha_attn_args, alibi_pos_sb) + sizeof(int64_t))
#define MHA_ROTARY_ARGS_SIZE_2_0 (offsetof(mha_rotary_args, num_threads) + sizeof(int))
#define MHA_NORM_ARGS_SIZE_2_0 (offsetof(mha_norm_args, num_threads) + sizeof(int))
#define MHA_SERVICES_SIZE_2_0 (offsetof(mha_plugin_services, cpu_features) + sizeof(uint64_t))

typedef const mha_plugin *(*mha_plugin_get_fn)(uint32_t host_abi_major);

#ifdef __cplusplus
}
#endif

#endif /* MHA_PLUGIN_H */
