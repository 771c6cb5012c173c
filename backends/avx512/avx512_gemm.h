/* avx512_gemm.h -- the AVX-512 GEMM micro-kernels and blocking for
 * common/gemm_blocked.h, shared by the avx512 backend and the AVX-512 variant
 * of the openmp backend. Needs the AVX-512F / FMA kernels' ISA flags and
 * avx512_vec.h (the vf type) first. */
#ifndef MHA_BACKENDS_AVX512_GEMM_H
#define MHA_BACKENDS_AVX512_GEMM_H

#include <immintrin.h>
#include <stdint.h>

#include "common/kernel_common.h"

#define GEMM_MR 12
#define GEMM_NR 32
#define GEMM_KC 768
/* 72-row blocks (the exec unit's rows, EXEC_GEMM_TILE_M), k-blocks of 768:
 * a d_model 768 projection is one k-block, so C is stored once, never
 * reloaded, and K 3072 is 4 passes over C instead of 6; each B panel slice
 * (KC x 32 floats, 96 KiB, L2) meets the 6 slivers of a 216 KiB A block held
 * in L2. The A block lives on the stack (plugin.h: <= 256 KiB), so 96 rows
 * of 768 (288 KiB) do not fit. CPU time, BERT-base B 8 S 128, 1 thread,
 * alternated with the 96 x 512 build: 1179 ms against 1256 (medians of 7;
 * the same bits: a block boundary stores and reloads the chain). At 48 rows
 * B's traffic from L3 was twice that of 96 and W1 ran ~10 % slower at 2
 * threads. */
#define GEMM_MC (6 * GEMM_MR)
/* gemm_blocked.h asks for the A rows a many-row block packs next while the
 * current k-block computes (gemm_next_a). */
#define GEMM_PREFETCH_NEXT_A 1

/*
 * C[0:R, 0:32] (+)= ap . bp for rows r < mr only (mr <= R; the packed
 * sliver is zero past mr). ap: [kc][12] (A sliver), bp: [kc][32] (B panel
 * rows), c: row-major, ldc. At R = 12: 24 accumulators + 2 B vectors + 1
 * broadcast = 27 of the 32 ZMM registers; no loop in the MR or NR direction
 * survives unrolling. R = 4 and 8 serve the short last sliver of a range
 * (W2's 32 rows end in an 8-row sliver: no FMAs spent on padding). Each
 * element is the same one FMA chain over k ascending whatever R computed it,
 * so results do not depend on the kernel.
 */
/* The R x 32 accumulators of a micro-kernel: from C (accumulate, rows
 * r < mr) or zero; and back to C's rows r < mr. */
#define AVX512_GEMM_ACC_LOAD(R)                                                                    \
    vf acc[R][2];                                                                                  \
    _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                         \
        int live = accumulate && r < mr;                                                           \
        acc[r][0] = live ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();                     \
        acc[r][1] = live ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();                \
    }
#define AVX512_GEMM_ACC_STORE(R)                                                                   \
    _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                         \
        if (r >= mr) break;                                                                        \
        _mm512_storeu_ps(c + r * ldc, acc[r][0]);                                                  \
        _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);                                             \
    }

/*
 * A full 12 x 32 tile of C stored with the bias (gemm_blocked.h's
 * GEMM_HAVE_UKERNEL_BIAS): in the kernel call of its last k-block, when the
 * epilogue is the bias alone, bias[0:32] is added to the accumulators before
 * the one store, each element x + bias as kernel_gemm_epilogue_rows adds it,
 * so the same bits. The pass after the block read every row of C again from
 * L2 (a 72 x 2304 block of Q|K|V is 648 KiB) for one add: BERT-base 0.989x
 * the CPU time at 1 thread (paired, same bits). The residual in the same
 * place cost more than that pass (1.010x: 12 rows of it read when the
 * kernel ends, where the pass streams them), and the GELU made gcc spill in
 * the FMA loop (1.19x); both stay in the pass.
 */
#define GEMM_HAVE_UKERNEL_BIAS 1

/* The full tile's accumulators stored, bias (NULL: none) added first. */
#define AVX512_GEMM_ACC_STORE_BIAS(bias)                                                           \
    if (bias) {                                                                                    \
        const vf bias0 = _mm512_loadu_ps(bias), bias1 = _mm512_loadu_ps(bias + 16);                \
        _Pragma("GCC unroll 12") for (int r = 0; r < GEMM_MR; r++) {                               \
            acc[r][0] = _mm512_add_ps(acc[r][0], bias0);                                           \
            acc[r][1] = _mm512_add_ps(acc[r][1], bias1);                                           \
        }                                                                                          \
    }                                                                                              \
    AVX512_GEMM_ACC_STORE(12)

/* Step k of the chain: two B vectors, R broadcasts of A, 2 R FMAs. */
#define AVX512_GEMM_KSTEP(R, k)                                                                    \
    {                                                                                              \
        const int64_t kq = k;                                                                      \
        vf b0 = _mm512_loadu_ps(bp + kq * GEMM_NR);                                                \
        vf b1 = _mm512_loadu_ps(bp + kq * GEMM_NR + 16);                                           \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                     \
            vf a = _mm512_set1_ps(ap[kq * GEMM_MR + r]);                                           \
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);                                         \
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);                                         \
        }                                                                                          \
    }

#define AVX512_GEMM_UKERNEL_ROWS(R)                                                                \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        AVX512_GEMM_ACC_LOAD(R)                                                                    \
        for (int64_t k = 0; k < kc; k++)                                                           \
            AVX512_GEMM_KSTEP(R, k)                                                                \
        AVX512_GEMM_ACC_STORE(R)                                                                   \
    }
AVX512_GEMM_UKERNEL_ROWS(4)
AVX512_GEMM_UKERNEL_ROWS(8)
AVX512_GEMM_UKERNEL_ROWS(12)

/* The full tile: C[0:12, 0:32]. */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    gemm_ukernel_12(kc, ap, bp, c, ldc, accumulate, GEMM_MR);
}

/*
 * The full tile, asking meanwhile for npf cache lines from pf into L2, one
 * every two k-steps: gemm_blocked.h hands each sliver of a row block its
 * share of the next B panel slice (96 KiB at KC 768), which otherwise comes
 * from L3 or memory on the first sliver that reads it and stalls that
 * kernel call. A hint only: each element is the same chain as
 * gemm_ukernel's, the same bits. Paired, 1 thread, CPU time: BERT-base's
 * FFN down GEMM (K 3072) ~7 % faster with its weight in memory, the whole
 * model ~1.4 %; W1, W4 and MiniLM-L6 level (docs/PERFORMANCE.md, "gemm16").
 */
static inline void gemm_ukernel_pf_bias(int64_t kc, const float *ap, const float *bp, float *c,
                                        int64_t ldc, int accumulate, const char *pf, int64_t npf,
                                        const float *bias) {
    const int64_t mr = GEMM_MR;
    AVX512_GEMM_ACC_LOAD(12)
    int64_t k = 0;
    for (int64_t j = 0; k + 2 <= kc; k += 2, j++) {
        if (j < npf) _mm_prefetch(pf + j * 64, _MM_HINT_T1);
        AVX512_GEMM_KSTEP(12, k)
        AVX512_GEMM_KSTEP(12, k + 1)
    }
    if (k < kc) AVX512_GEMM_KSTEP(12, k)
    AVX512_GEMM_ACC_STORE_BIAS(bias)
}
static inline void gemm_ukernel_pf(int64_t kc, const float *ap, const float *bp, float *c,
                                   int64_t ldc, int accumulate, const char *pf, int64_t npf) {
    gemm_ukernel_pf_bias(kc, ap, bp, c, ldc, accumulate, pf, npf, NULL);
}
#define GEMM_HAVE_UKERNEL_PF 1

/* Rows [0, mr) of a full-width tile, 0 < mr < GEMM_MR. */
static inline void gemm_ukernel_rows(int64_t kc, const float *ap, const float *bp, float *c,
                                     int64_t ldc, int accumulate, int64_t mr) {
    if (mr <= 4)
        gemm_ukernel_4(kc, ap, bp, c, ldc, accumulate, mr);
    else if (mr <= 8)
        gemm_ukernel_8(kc, ap, bp, c, ldc, accumulate, mr);
    else
        gemm_ukernel_12(kc, ap, bp, c, ldc, accumulate, mr);
}
#define GEMM_HAVE_UKERNEL_ROWS 1

/*
 * Rows [0, mr) of a full-width tile while the next B panel slice streams
 * in: per k-step also the two lines of next[k * 32 .. +32] requested (a
 * hint; each element the same chain as gemm_ukernel's, the same bits).
 * gemm_blocked.h gives it the slice after this one for a short row
 * block's first sliver: at 16 rows a weight byte serves 8 FLOPs, so a
 * slice left to come from memory when its kernel starts stalls every
 * k-step (MiniLM's 7 MB of weights a layer: no cache holds six layers'),
 * and the hardware prefetchers run only a few lines ahead. Into L1 (T0):
 * the slice is read within ~1 us, and the current one's last reads (the
 * block's short second sliver) hit L1 or L2; in gemm_bench --cold T0 beat
 * T1 and a distance of two slices (docs/PERFORMANCE.md, "serveB16").
 */
#define AVX512_GEMM_UKERNEL_STREAM(R)                                                              \
    static inline void gemm_ukernel_stream_##R(int64_t kc, const float *ap, const float *bp,       \
                                               float *c, int64_t ldc, int accumulate, int64_t mr,  \
                                               const float *next) {                                \
        AVX512_GEMM_ACC_LOAD(R)                                                                    \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            _mm_prefetch((const char *)(next + k * GEMM_NR), _MM_HINT_T0);                         \
            _mm_prefetch((const char *)(next + k * GEMM_NR + 16), _MM_HINT_T0);                    \
            AVX512_GEMM_KSTEP(R, k)                                                                \
        }                                                                                          \
        AVX512_GEMM_ACC_STORE(R)                                                                   \
    }
AVX512_GEMM_UKERNEL_STREAM(4)
AVX512_GEMM_UKERNEL_STREAM(8)
AVX512_GEMM_UKERNEL_STREAM(12)

static inline void gemm_ukernel_stream(int64_t kc, const float *ap, const float *bp, float *c,
                                       int64_t ldc, int accumulate, int64_t mr, const float *next) {
    if (mr <= 4)
        gemm_ukernel_stream_4(kc, ap, bp, c, ldc, accumulate, mr, next);
    else if (mr <= 8)
        gemm_ukernel_stream_8(kc, ap, bp, c, ldc, accumulate, mr, next);
    else
        gemm_ukernel_stream_12(kc, ap, bp, c, ldc, accumulate, mr, next);
}
#define GEMM_HAVE_UKERNEL_STREAM 1

/*
 * A full sliver packed: dst[k * 12 + r] = A[r * lda + k] for r < 12, k < kc
 * (gemm_blocked.h's pass 1). The plain loop moves one float per load and
 * store with a 48-byte stride, some 5 % of a MiniLM run; here 4 rows x 8 k
 * at a time are transposed in registers (two 4 x 4 transposes, one per
 * 128-bit lane) and stored as 16-byte column pieces. Only data moves: the
 * packed sliver is the same bytes.
 */
/* Rows p0 .. p0 + 3 lda, columns [k, k + 8), into dst's rows r0 .. r0 + 3. */
static inline __attribute__((always_inline)) void gemm_pack_a_4x8(const float *p0, int64_t lda,
                                                                  int64_t k, float *dst, int r0) {
    const float *p1 = p0 + lda, *p2 = p1 + lda, *p3 = p2 + lda;
    __m256 a0 = _mm256_loadu_ps(p0 + k), a1 = _mm256_loadu_ps(p1 + k);
    __m256 a2 = _mm256_loadu_ps(p2 + k), a3 = _mm256_loadu_ps(p3 + k);
    __m256 t0 = _mm256_unpacklo_ps(a0, a1); /* a0[0] a1[0] a0[1] a1[1] | k + 4 */
    __m256 t1 = _mm256_unpackhi_ps(a0, a1); /* a0[2] a1[2] a0[3] a1[3] | k + 4 */
    __m256 t2 = _mm256_unpacklo_ps(a2, a3);
    __m256 t3 = _mm256_unpackhi_ps(a2, a3);
    __m256 c[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                   _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
    for (int j = 0; j < 4; j++) { /* c[j]: column k + j | column k + 4 + j */
        _mm_storeu_ps(dst + (k + j) * GEMM_MR + r0, _mm256_castps256_ps128(c[j]));
        _mm_storeu_ps(dst + (k + 4 + j) * GEMM_MR + r0, _mm256_extractf128_ps(c[j], 1));
    }
}

static inline void gemm_pack_a(const float *A, int64_t lda, int64_t kc, float *dst) {
    for (int r0 = 0; r0 < GEMM_MR; r0 += 4) {
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8)
            gemm_pack_a_4x8(A + r0 * lda, lda, k, dst, r0);
        for (; k < kc; k++)
            for (int r = r0; r < r0 + 4; r++)
                dst[k * GEMM_MR + r] = A[r * lda + k];
    }
}
#define GEMM_HAVE_PACK_A 1

/*
 * gemm_ukernel_pf's full tile and prefetch, and meanwhile the next full
 * sliver packed (gemm_pack_a's bytes: A's 12 rows, lda, columns [0, kc)
 * into dst): each 8 k-steps pack the same 8 columns, 4 rows between two
 * k-step pairs. gemm_blocked.h gives it the first panel of a many-row
 * block, so that pass 1 packs only the block's first sliver and the loads
 * of the others' rows (the activations a step wrote, from L2 or L3) wait
 * beside the FMAs, not before them: the 4 x 4 transposes run on the shuffle
 * ports, which the FMA loop leaves idle. Each element the same chain as
 * gemm_ukernel's, the same bits.
 */
static inline void gemm_ukernel_pf_pack_bias(int64_t kc, const float *ap, const float *bp, float *c,
                                             int64_t ldc, int accumulate, const char *pf,
                                             int64_t npf, const float *A, int64_t lda, float *dst,
                                             const float *bias) {
    const int64_t mr = GEMM_MR;
    AVX512_GEMM_ACC_LOAD(12)
    int64_t k = 0, j = 0;
    const float *a4 = A + 4 * lda, *a8 = A + 8 * lda;
    for (; k + 8 <= kc; k += 8)
        _Pragma("GCC unroll 4") for (int u = 0; u < 8; u += 2, j++) {
            if (u < 6) gemm_pack_a_4x8(u == 0 ? A : u == 2 ? a4 : a8, lda, k, dst, u * 2);
            if (j < npf) _mm_prefetch(pf + j * 64, _MM_HINT_T1);
            AVX512_GEMM_KSTEP(12, k + u)
            AVX512_GEMM_KSTEP(12, k + u + 1)
        }
    for (; k < kc; k++) {
        for (int r = 0; r < GEMM_MR; r++)
            dst[k * GEMM_MR + r] = A[r * lda + k];
        if ((k & 1) == 0 && j < npf) _mm_prefetch(pf + j++ * 64, _MM_HINT_T1);
        AVX512_GEMM_KSTEP(12, k)
    }
    AVX512_GEMM_ACC_STORE_BIAS(bias)
}
static inline void gemm_ukernel_pf_pack(int64_t kc, const float *ap, const float *bp, float *c,
                                        int64_t ldc, int accumulate, const char *pf, int64_t npf,
                                        const float *A, int64_t lda, float *dst) {
    gemm_ukernel_pf_pack_bias(kc, ap, bp, c, ldc, accumulate, pf, npf, A, lda, dst, NULL);
}
#define GEMM_HAVE_UKERNEL_PACK 1

/*
 * GELU (erf form) over c[n0, n1), in place (gemm_blocked.h's epilogue,
 * through kernel_common.h's span): each element the operations of
 * kernel_gelu_erf (kernel_common.h) in the same order -- y = x * (1 / sqrt
 * 2), a = |y|, P(a^2) and E(a - 2.4596) by fused Horner steps, the select
 * on a, the sign of y, 0.5 x (1 + erf) -- so the same bits as the plain
 * loop and the scalar reference. What differs is the schedule: gcc's
 * vectorised loop runs one vector's 14-step Horner chain (4-cycle FMAs)
 * at a time and waited on it; here GELU_SPAN_VECS vectors go through each
 * step together. The span alone (72 x 1536 floats in L2, 1 thread, CPU
 * time, alternated in one process): 0.75 of the plain loop's time. Out of
 * line: inlined into gemm_blocked_rows, MiniLM-L6 ran 1.6 % slower.
 */
#define GELU_SPAN_VECS 4
/* The GELU of the GELU_SPAN_VECS vectors at v[0 ..], in place, each step
 * on all of them before the next. */
static inline __attribute__((always_inline)) void gemm_gelu_erf_vecs(float *const *v) {
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 x[GELU_SPAN_VECS], y[GELU_SPAN_VECS], a[GELU_SPAN_VECS], a2[GELU_SPAN_VECS];
    __m512 ac[GELU_SPAN_VECS], p[GELU_SPAN_VECS], q[GELU_SPAN_VECS];
    for (int u = 0; u < GELU_SPAN_VECS; u++) {
        x[u] = _mm512_loadu_ps(v[u]);
        y[u] = _mm512_mul_ps(x[u], _mm512_set1_ps(KERNEL_GELU_ERF_SCALE));
        a[u] = _mm512_and_ps(y[u], abs_mask);
        a2[u] = _mm512_mul_ps(a[u], a[u]);
        ac[u] = _mm512_sub_ps(a[u], _mm512_set1_ps(KERNEL_ERF_E_CENTRE));
        p[u] = _mm512_set1_ps(KERNEL_ERF_P[6]);
        q[u] = _mm512_set1_ps(KERNEL_ERF_E[14]);
    }
    for (int i = 13; i >= 0; i--) /* Horner from the top, both at once */
        for (int u = 0; u < GELU_SPAN_VECS; u++) {
            q[u] = _mm512_fmadd_ps(q[u], ac[u], _mm512_set1_ps(KERNEL_ERF_E[i]));
            if (i < 6) p[u] = _mm512_fmadd_ps(p[u], a2[u], _mm512_set1_ps(KERNEL_ERF_P[i]));
        }
    for (int u = 0; u < GELU_SPAN_VECS; u++) {
        const __mmask16 small = _mm512_cmp_ps_mask(a[u], one, _CMP_LT_OQ);
        const __mmask16 whole =
            _mm512_cmp_ps_mask(a[u], _mm512_set1_ps(KERNEL_ERF_ONE_FROM), _CMP_GE_OQ);
        __m512 r = _mm512_mask_blend_ps(small, _mm512_sub_ps(one, q[u]),
                                        _mm512_fmadd_ps(a[u], p[u], a[u]));
        r = _mm512_mask_blend_ps(whole, r, one);
        r = _mm512_or_ps(_mm512_and_ps(r, abs_mask), _mm512_andnot_ps(abs_mask, y[u]));
        const __m512 half_x = _mm512_mul_ps(_mm512_set1_ps(0.5f), x[u]);
        _mm512_storeu_ps(v[u], _mm512_mul_ps(half_x, _mm512_add_ps(one, r)));
    }
}

static __attribute__((noinline, unused)) void gemm_gelu_erf_span(float *c, int64_t n0, int64_t n1) {
    int64_t n = n0;
    for (; n + 16 * GELU_SPAN_VECS <= n1; n += 16 * GELU_SPAN_VECS) {
        float *const v[GELU_SPAN_VECS] = {c + n, c + n + 16, c + n + 32, c + n + 48};
        gemm_gelu_erf_vecs(v);
    }
    for (; n < n1; n++)
        c[n] = kernel_gelu_erf(c[n]);
}
#define GEMM_HAVE_GELU_ERF_SPAN 1

/* The GELU (erf) over a full 12 x 32 tile of C (ldc), in place: the
 * span's operations on two rows' four vectors at a time, the same bits. */
static inline void gemm_gelu_erf_tile(float *c, int64_t ldc) {
    for (int r = 0; r < GEMM_MR; r += 2) {
        float *const v[GELU_SPAN_VECS] = {c + r * ldc, c + r * ldc + 16, c + (r + 1) * ldc,
                                          c + (r + 1) * ldc + 16};
        gemm_gelu_erf_vecs(v);
    }
}
#define GEMM_HAVE_GELU_ERF_TILE 1

#endif
