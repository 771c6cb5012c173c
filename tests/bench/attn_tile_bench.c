/* attn_tile_bench.c -- the float32 flash attention's three phases of a key
 * block, alone (a program, not a test: it prints figures and checks
 * nothing). avx512 kernels (common/flash_attention.h as
 * avx512_attention_kernels.h sets it up); skips itself without AVX-512.
 *
 * d_k = d_v = 64, a query block of FA_BR rows against key blocks of FA_BC
 * keys taken in turn from 32 of them (512 KiB of K^T and as much of V: a
 * W3 head's, from L2 as in a run). Per score tile (FA_MR rows x FA_BC keys):
 *   score  fa_score_tile_full: the Q.K^T products alone, stored;
 *   fused  fa_score_plain_tile: the same products and the row's online
 *          softmax on them (max, exp, sums, the probabilities stored) --
 *          what a plain float32 row runs; fused - score is the softmax;
 *   pv     fa_pv_block over the block's rows, per FA_MR rows: the P.V
 *          products and the accumulators' loads and stores.
 * Each is 2 FA_MR FA_BC 64 FLOPs of products per tile; the ideal time
 * at --peak GFLOP/s (the FMA peak of `mha peak`, default 222) is printed
 * beside the measured one. The three phases alternate in every repetition
 * (so a shared machine's load touches them alike); min and median over the
 * repetitions.
 *
 * Usage: attn_tile_bench [--reps N] [--blocks N] [--peak GFLOPS] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && defined(__AVX512F__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "avx512/avx512_kernels.h"
#include "avx512/avx512_vec.h"
#include "avx512/avx512_gemm.h"
#include "avx512/avx512_gemm_bf16.h"
#include "avx512/avx512_attention_kernels.h"

#define TB_D 64
#define TB_KBLOCKS 32
#define TB_TILES (FA_BR / FA_MR)

static double tb_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int tb_cmp(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static float qp[TB_D * FA_BR] __attribute__((aligned(64)));
static float kt[TB_KBLOCKS * TB_D * FA_BC] __attribute__((aligned(64)));
static float vv[TB_KBLOCKS * FA_BC * TB_D] __attribute__((aligned(64)));
static float sc[FA_BR * FA_BC] __attribute__((aligned(64)));
static float acc[FA_BR * TB_D] __attribute__((aligned(64)));
static float lv[FA_BR * VLEN] __attribute__((aligned(64)));
static float pad[FA_BC + TB_D] __attribute__((aligned(64)));

/* ns per score tile of one phase over `blocks` key blocks */
static double tb_phase(int phase, int blocks) {
    mha_attn_args a;
    memset(&a, 0, sizeof a);
    a.scale = 0.125f;
    float m[FA_BR], corr[FA_BR];
    int64_t live[FA_BR], live_nv[FA_BR];
    for (int r = 0; r < FA_BR; r++) {
        m[r] = -INFINITY;
        corr[r] = 1.0f;
        live[r] = r;
        live_nv[r] = FA_BC;
    }
    const double t0 = tb_now();
    for (int j = 0; j < blocks; j++) {
        const float *ktb = kt + (size_t)(j % TB_KBLOCKS) * TB_D * FA_BC;
        const float *vb = vv + (size_t)(j % TB_KBLOCKS) * FA_BC * TB_D;
        for (int r0 = 0; phase < 2 && r0 < FA_BR; r0 += FA_MR) {
            if (phase == 0)
                fa_score_tile_full(TB_D, qp + r0, ktb, sc + r0 * FA_BC);
            else
                fa_score_plain_tile(&a, TB_D, qp + r0, ktb, sc + r0 * FA_BC, m + r0, lv + r0 * VLEN,
                                    corr + r0);
        }
        if (phase == 2) fa_pv_block(sc, acc, pad, live, live_nv, corr, FA_BR, vb, TB_D, TB_D);
        __asm__ volatile("" ::: "memory");
    }
    return (tb_now() - t0) / ((double)blocks * TB_TILES) * 1e9;
}

int main(int argc, char **argv) {
    int reps = 201, blocks = 64;
    double peak = 222.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--blocks"))
            blocks = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--peak"))
            peak = atof(argv[i + 1]);
        else {
            fprintf(stderr, "usage: attn_tile_bench [--reps N] [--blocks N] [--peak GFLOPS]\n");
            return 2;
        }
    }
    if (reps < 1 || blocks < 1 || !(peak > 0.0)) return 2;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
        printf("attn_tile_bench: no AVX-512 here, nothing measured\n");
        return 0;
    }
    uint32_t seed = 1;
    for (size_t i = 0; i < sizeof qp / sizeof qp[0]; i++) {
        seed = seed * 1664525u + 1013904223u;
        qp[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
    for (size_t i = 0; i < sizeof kt / sizeof kt[0]; i++) {
        seed = seed * 1664525u + 1013904223u;
        kt[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
        vv[i] = kt[i] * 0.5f;
    }
    double *t[3];
    for (int p = 0; p < 3; p++)
        if (!(t[p] = malloc((size_t)reps * sizeof(double)))) return 1;
    for (int r = 0; r < reps; r++)
        for (int p = 0; p < 3; p++)
            t[p][r] = tb_phase(p, blocks);
    const char *name[3] = {"score (products alone)", "fused (products + softmax)",
                           "pv (P.V products)"};
    const double ideal = 2.0 * FA_MR * FA_BC * TB_D / peak; /* ns per tile at peak */
    printf("score tile %d rows x %d keys, d 64; ideal %.1f ns per tile's products at %.0f "
           "GFLOP/s\n",
           FA_MR, FA_BC, ideal, peak);
    for (int p = 0; p < 3; p++) {
        qsort(t[p], (size_t)reps, sizeof(double), tb_cmp);
        printf("  %-28s min %7.1f ns (%5.1f %% of peak), median %7.1f ns\n", name[p], t[p][0],
               100.0 * ideal / t[p][0], t[p][reps / 2]);
    }
    printf("  softmax (fused - score)      min %7.1f ns, median %7.1f ns\n", t[1][0] - t[0][0],
           t[1][reps / 2] - t[0][reps / 2]);
    for (int p = 0; p < 3; p++)
        free(t[p]);
    return 0;
}
#else
int main(void) {
    printf("attn_tile_bench: built without AVX-512, nothing measured\n");
    return 0;
}
#endif
