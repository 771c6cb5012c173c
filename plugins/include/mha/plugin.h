/*
 * plugin.h -- the backend plugin ABI of libmha. The only header a plugin
 * needs; a plugin links nothing of libmha.
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
 * "auto" selection.
 *
 * Rules for plugin authors:
 *  - Entry and probe code are compiled without ISA flags and without LTO, so
 *    loading a plugin on an older CPU never raises SIGILL. ISA flags go only
 *    on kernel sources, reached only after probe() said yes.
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
 *
 * Versioning: minor versions only append fields to mha_plugin and to the
 * argument structs; the host checks struct_size before reading a later field.
 */
#ifndef MHA_PLUGIN_H
#define MHA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MHA_PLUGIN_ABI_MAJOR 1u
#define MHA_PLUGIN_ABI_MINOR 1u
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
    /* ABI 1.1: the CPU features (MHA_CPU_*) the host gave probe(), after
     * its mask; a plugin with kernels for several ISAs picks among them by
     * this, never by its own CPUID (MHA_CPU_MASK must hold). Read it only
     * when struct_size covers it; 0 = not told: use the baseline. */
    uint64_t cpu_features;
} mha_plugin_services;

/**
 * C[m, n] = sum_k A[m, k] * B[k, n] (+ bias[n]) for m in [m0, m1), n in
 * [n0, n1). A is row-major with leading dimension lda; B was packed once by
 * gemm_pack_b; C is row-major with leading dimension ldc.
 */
typedef struct mha_gemm_args {
    uint32_t struct_size;
    int64_t M, N, K;
    const float *A;
    int64_t lda;
    const void *B_packed;
    const float *bias; /* [N] or NULL */
    float *C;
    int64_t ldc;
    int64_t m0, m1, n0, n1; /* the part to compute */
    int num_threads;        /* self-parallel plugins only; else 1 */
} mha_gemm_args;

/**
 * Scaled dot-product attention over a range of (batch, query head, query
 * rows):
 *
 *   for b in [b0,b1), h in [h0,h1), i in [q0,q1):
 *     g = h / (Hq / Hkv)                                (GQA: shared kv head)
 *     s[j] = scale * dot(Q[b,h,i,:], K[b,g,j,:])        j in [0, Skv)
 *     if softcap > 0: s[j] = softcap * tanh(s[j] / softcap)
 *     if mask:        s[j] += mask[b,h,i,j]             (via the strides)
 *     masked when: mask value <= -FLT_MAX (-inf or the lowest float),
 *                  causal and j > i + causal_offset[b],
 *                  kv_len and j >= kv_len[b]
 *     p = softmax over the unmasked j; O[b,h,i,:] = sum_j p[j] * V[b,g,j,:]
 *     a row with every key masked gives O[b,h,i,:] = 0 (never NaN)
 *
 * Every tensor is addressed by element strides per axis (batch, head, seq);
 * the last axis (d) is contiguous. Mask strides may be 0 to broadcast.
 */
typedef struct mha_attn_args {
    uint32_t struct_size;
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
} mha_attn_args;

/* The host refuses a plugin whose GEMM blocks lie outside 1..this (a
 * register block is a few dozen rows or columns; a block this large means
 * the table is wrong). Workspace and packed sizes are checked too: a
 * packed size below K x N floats, or a size whose rounding would wrap, is
 * refused before anything is allocated. */
#define MHA_PLUGIN_GEMM_BLOCK_MAX 4096

typedef struct mha_plugin {
    uint32_t abi_major;   /* MHA_PLUGIN_ABI_MAJOR */
    uint32_t abi_minor;   /* MHA_PLUGIN_ABI_MINOR */
    uint32_t struct_size; /* sizeof(mha_plugin) as the plugin was built */
    const char *name;     /* short, [a-z0-9_]: "scalar", "avx2", ... */
    const char *version;
    const char *description;
    uint32_t flags; /* MHA_PLUGIN_* */

    /** 0 = cannot run with these features; else a score (higher = better).
     *  May set *reason to a static string saying why 0. */
    int (*probe)(uint64_t cpu_features, const char **reason);
    /** Once per runtime. *state is passed to every later call. 0 = ok. */
    int (*init)(const mha_plugin_services *services, void **state);
    void (*fini)(void *state);

    /* GEMM: B is packed once per model (weights), then reused. */
    int64_t gemm_m_block; /* host splits M at multiples of this, 1..MHA_PLUGIN_GEMM_BLOCK_MAX */
    int64_t gemm_n_block; /* host splits N at multiples of this, 1..MHA_PLUGIN_GEMM_BLOCK_MAX */
    size_t (*gemm_packed_size)(int64_t K, int64_t N);
    void (*gemm_pack_b)(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed);
    int (*gemm)(void *state, const mha_gemm_args *args); /* 0 = ok */

    /* Attention: workspace bytes one call over the given args needs (the host
     * sizes it with the widest range it will pass). */
    size_t (*attention_workspace_size)(void *state, const mha_attn_args *args);
    int (*attention)(void *state, const mha_attn_args *args, void *workspace,
                     size_t workspace_size); /* 0 = ok */

    /** Extras by name; NULL when unknown. May itself be NULL. */
    void *(*get_proc)(const char *name);
} mha_plugin;

typedef const mha_plugin *(*mha_plugin_get_fn)(uint32_t host_abi_major);

#ifdef __cplusplus
}
#endif

#endif /* MHA_PLUGIN_H */
