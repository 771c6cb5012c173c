/* avx2_kernels.c -- the AVX2+FMA kernels: a 6 x 16 register-blocked GEMM
 * micro-kernel over packed B panels, and the flash attention of
 * common/flash_attention.h on 8-float vectors with a vectorised exp.
 *
 * Compiled with -mavx2 -mfma: reached only after avx2_plugin.c's probe saw
 * AVX, AVX2 and FMA (and the OS saving YMM state). Accumulation is in float
 * with FMA, one chain per element (see the determinism notes of the two
 * templates).
 */
#include "avx2/avx2_kernels.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------------------ */
/* Vector layer (the names the templates expect)                             */
/* ------------------------------------------------------------------------ */

#include "avx2/avx2_vec.h"

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_KC 256
/* 96-row blocks, one exec unit: each B panel (16 KiB) meets 16 slivers of a
 * 96 KiB A block held in L2 before the next panel streams in */
#define GEMM_MC (16 * GEMM_MR)

/*
 * C[0:6, 0:16] (+)= ap . bp. ap: [kc][6] (A sliver), bp: [kc][16] (B panel
 * rows), c: row-major, ldc. 12 accumulators + 2 B vectors + 1 broadcast =
 * 15 of the 16 YMM registers.
 */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    vf acc[GEMM_MR][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
        acc[r][0] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
        acc[r][1] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        vf b0 = _mm256_loadu_ps(bp + k * GEMM_NR);
        vf b1 = _mm256_loadu_ps(bp + k * GEMM_NR + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
            vf a = _mm256_broadcast_ss(ap + k * GEMM_MR + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
        _mm256_storeu_ps(c + r * ldc, acc[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
}

/*
 * The same product for a short sliver: rows [0, mr) of C only, mr < 6 (the
 * last sliver of a range, e.g. rows 30..31 of W2's 32). R = 2, 4 or 6 rows
 * are computed (R >= mr; the packed sliver is zero past mr), so a 2-row
 * tail costs a third of a full tile, not a whole one. Each element is the
 * same one FMA chain over k as in gemm_ukernel.
 */
#define AVX2_GEMM_UKERNEL_ROWS(R)                                                                  \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        vf acc[R][2];                                                                              \
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                      \
            int live = accumulate && r < mr;                                                       \
            acc[r][0] = live ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();                 \
            acc[r][1] = live ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();             \
        }                                                                                          \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            vf b0 = _mm256_loadu_ps(bp + k * GEMM_NR);                                             \
            vf b1 = _mm256_loadu_ps(bp + k * GEMM_NR + 8);                                         \
            _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                  \
                vf a = _mm256_broadcast_ss(ap + k * GEMM_MR + r);                                  \
                acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);                                     \
                acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);                                     \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R && r < mr; r++) {                                                    \
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);                                              \
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);                                          \
        }                                                                                          \
    }
AVX2_GEMM_UKERNEL_ROWS(2)
AVX2_GEMM_UKERNEL_ROWS(4)
AVX2_GEMM_UKERNEL_ROWS(6)

/* Rows [0, mr) of a full-width tile, 0 < mr < GEMM_MR. */
static inline void gemm_ukernel_rows(int64_t kc, const float *ap, const float *bp, float *c,
                                     int64_t ldc, int accumulate, int64_t mr) {
    if (mr <= 2)
        gemm_ukernel_2(kc, ap, bp, c, ldc, accumulate, mr);
    else if (mr <= 4)
        gemm_ukernel_4(kc, ap, bp, c, ldc, accumulate, mr);
    else
        gemm_ukernel_6(kc, ap, bp, c, ldc, accumulate, mr);
}
#define GEMM_HAVE_UKERNEL_ROWS 1

#include "common/gemm_blocked.h"

size_t avx2_gemm_packed_size(int64_t K, int64_t N) {
    return gemm_blocked_packed_size(K, N);
}

void avx2_gemm_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed) {
    gemm_blocked_pack_b(K, N, B, ldb, packed);
}

int avx2_gemm(void *state, const mha_gemm_args *args) {
    (void)state;
    return gemm_blocked_run(args);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

#include "avx2/avx2_transpose.h"
/* K and the Q block are packed by register transposes */
#define FA_HAVE_TRANSPOSE 1
#define FA_MR 3  /* score tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_BR 24 /* query rows per block */
#define FA_BC 32 /* keys per block: 4 vectors amortise each row's softmax */
#define FA_PVR 3 /* P.V tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_PVW 4

#include "common/flash_attention.h"

size_t avx2_attention_workspace_size(void *state, const mha_attn_args *args) {
    (void)state;
    return fa_workspace_size(args);
}

int avx2_attention(void *state, const mha_attn_args *args, void *workspace, size_t workspace_size) {
    (void)state;
    return fa_attention_run(args, workspace, workspace_size);
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding                                                          */
/* ------------------------------------------------------------------------ */

#include "common/rotary.h"

int avx2_rotary(void *state, const mha_rotary_args *args) {
    (void)state;
    return rotary_run(args);
}
