/* avx512_kernels.c -- the AVX-512F kernels: a 12 x 32 register-blocked GEMM
 * micro-kernel over packed B panels, and the flash attention of
 * common/flash_attention.h on 16-float vectors with a vectorised exp.
 *
 * Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma: reached
 * only after avx512_plugin.c's probe saw those features (and the OS saving
 * ZMM state). Accumulation is in float with FMA, one chain per element (see
 * the determinism notes of the two templates).
 */
#include "avx512/avx512_kernels.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------------------ */
/* Vector layer (the names the templates expect)                             */
/* ------------------------------------------------------------------------ */

#include "avx512/avx512_vec.h"

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

#define GEMM_MR 12
#define GEMM_NR 32
#define GEMM_KC 512
/* 96-row blocks, one exec unit: each B panel slice (KC x 32 floats, 64 KiB,
 * L1/L2) meets 8 slivers of a 192 KiB A block held in L2 before the next
 * slice streams in. At 48 rows B's traffic from L3 was twice this and W1 ran
 * ~10 % slower at 2 threads; KC 512 instead of 256 halves the passes over C
 * (a 96 x 3072 C block is larger than L2): +2-4 % on the d_model 768 and
 * 1024 projections. The A block lives on the stack (plugin.h: <= 256 KiB). */
#define GEMM_MC (8 * GEMM_MR)

/*
 * C[0:12, 0:32] (+)= ap . bp. ap: [kc][12] (A sliver), bp: [kc][32] (B
 * panel rows), c: row-major, ldc. 24 accumulators + 2 B vectors + 1
 * broadcast = 27 of the 32 ZMM registers; no loop in the MR or NR direction
 * survives unrolling.
 */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    vf acc[GEMM_MR][2];
    _Pragma("GCC unroll 12") for (int r = 0; r < GEMM_MR; r++) {
        acc[r][0] = accumulate ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
        acc[r][1] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        vf b0 = _mm512_loadu_ps(bp + k * GEMM_NR);
        vf b1 = _mm512_loadu_ps(bp + k * GEMM_NR + 16);
        _Pragma("GCC unroll 12") for (int r = 0; r < GEMM_MR; r++) {
            vf a = _mm512_set1_ps(ap[k * GEMM_MR + r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 12") for (int r = 0; r < GEMM_MR; r++) {
        _mm512_storeu_ps(c + r * ldc, acc[r][0]);
        _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
    }
}

/*
 * The same product for a short sliver: rows [0, mr) of C only, mr < 12 (the
 * last sliver of a range, e.g. rows 24..31 of W2's 32). R = 4, 8 or 12 rows are
 * computed (R >= mr; the packed sliver is zero past mr), so W2 no longer
 * spends a third of its last sliver's FMAs on padding. Each element is the
 * same one FMA chain over k as in gemm_ukernel, so results do not depend on
 * which kernel computed them.
 */
#define AVX512_GEMM_UKERNEL_ROWS(R)                                                                \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        vf acc[R][2];                                                                              \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                     \
            int live = accumulate && r < mr;                                                       \
            acc[r][0] = live ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();                 \
            acc[r][1] = live ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();            \
        }                                                                                          \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            vf b0 = _mm512_loadu_ps(bp + k * GEMM_NR);                                             \
            vf b1 = _mm512_loadu_ps(bp + k * GEMM_NR + 16);                                        \
            _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                 \
                vf a = _mm512_set1_ps(ap[k * GEMM_MR + r]);                                        \
                acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);                                     \
                acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);                                     \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R && r < mr; r++) {                                                    \
            _mm512_storeu_ps(c + r * ldc, acc[r][0]);                                              \
            _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);                                         \
        }                                                                                          \
    }
AVX512_GEMM_UKERNEL_ROWS(4)
AVX512_GEMM_UKERNEL_ROWS(8)
AVX512_GEMM_UKERNEL_ROWS(12)

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

#include "common/gemm_blocked.h"

size_t avx512_gemm_packed_size(int64_t K, int64_t N) {
    return gemm_blocked_packed_size(K, N);
}

void avx512_gemm_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed) {
    gemm_blocked_pack_b(K, N, B, ldb, packed);
}

int avx512_gemm(void *state, const mha_gemm_args *args) {
    (void)state;
    return gemm_blocked_run(args);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

#define FA_MR 6  /* score tile: 6 rows x 4 vectors = 24 accumulators */
#define FA_BR 48 /* query rows per block */
#define FA_BC 64 /* keys per block */
#define FA_PVR 6 /* P.V tile: 6 rows x 4 vectors = 24 accumulators */
#define FA_PVW 4

#include "common/flash_attention.h"

size_t avx512_attention_workspace_size(void *state, const mha_attn_args *args) {
    (void)state;
    return fa_workspace_size(args);
}

int avx512_attention(void *state, const mha_attn_args *args, void *workspace,
                     size_t workspace_size) {
    (void)state;
    return fa_attention_run(args, workspace, workspace_size);
}
