/* attn_core_bench.c -- the float32 flash attention core of the avx512
 * backend alone at one model's shape (a program, not a test: it prints
 * figures and checks nothing). common/flash_attention.h as
 * avx512_attention_kernels.h sets it up, called as exec calls it on a
 * self-attention layer: Q, K and V read in place through the strides of
 * one fused projection output [B, S, 3, H, d], O written [B, S, H, d]
 * (heads side by side); skips itself without AVX-512.
 *
 * attn_tile_bench times one key block's phases from L1/L2; this times the
 * whole call (every (b, h): K packed, Q blocks transposed, prefetches,
 * scores, softmax, P.V, the normalised rows written), from memory as in a
 * run. One thread. Each repetition is followed by a fixed loop of
 * independent FMAs timed the same way (CPU time), so the figure that
 * matters, the core's GFLOP/s as a share of the FMA peak measured beside
 * it, is read against what the machine gave at that moment (a shared
 * machine's load moves both); medians over the repetitions. The hash of O
 * (FNV-1a over its bytes) compares two builds' bits.
 *
 * FLOPs counted: 4 B H S^2 d (Q.K^T and P.V), half that when causal.
 *
 * Usage: attn_core_bench B H S D [--causal] [--mask] [--per-head] [--reps N]
 *   --mask      an additive mask [B, 1, 1, S] of zeros but for the last
 *               key of each item (-10000: a padding mask), so rows take the
 *               masked path (a mask of zeros is dropped by exec).
 *   --per-head  one call per (batch item, head), in that order, as the
 *               executor's units at these shapes; default one call.
 * Shapes of the session 13 notes: MiniLM-L6 32 12 128 32; GPT-2 small
 * 4 12 256 64 --causal; BERT-base 8 12 128 64. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "avx512/avx512_kernels.h"
#include "avx512/avx512_vec.h"
#include "avx512/avx512_gemm.h"
#include "avx512/avx512_gemm_bf16.h"
#include "avx512/avx512_attention_kernels.h"

#define CB_MAX_REPS 201

static double cb_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* GFLOP/s of 16 independent chains of zmm FMAs (2 FLOPs a lane): the
 * FMA peak this thread gets now */
static double cb_peak(void) {
    __m512 x[16];
    for (int i = 0; i < 16; i++)
        x[i] = _mm512_set1_ps(1.0f + (float)i * 1e-7f);
    const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    const long n = 1000000;
    const double t0 = cb_cpu();
    for (long k = 0; k < n; k++) {
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) x[i] = _mm512_fmadd_ps(x[i], m, c);
        __asm__ volatile("" ::"v"(x[0]), "v"(x[1]), "v"(x[2]), "v"(x[3]), "v"(x[4]), "v"(x[5]),
                         "v"(x[6]), "v"(x[7]));
        __asm__ volatile("" ::"v"(x[8]), "v"(x[9]), "v"(x[10]), "v"(x[11]), "v"(x[12]), "v"(x[13]),
                         "v"(x[14]), "v"(x[15]));
    }
    const double t = cb_cpu() - t0;
    return (double)n * 16 * 32 / t * 1e-9;
}

/* The whole call, or one call per (b, h) in order (per_head) */
static int cb_run(const mha_attn_args *a, int per_head, void *ws, size_t ws_size) {
    if (!per_head) return fa_attention_run(a, ws, ws_size);
    mha_attn_args u = *a;
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->Hq; h++) {
            u.b0 = b, u.b1 = b + 1, u.h0 = h, u.h1 = h + 1;
            const int rc = fa_attention_run(&u, ws, ws_size);
            if (rc != KERNEL_OK) return rc;
        }
    return KERNEL_OK;
}

int main(int argc, char **argv) {
    if (!__builtin_cpu_supports("avx512f")) {
        puts("attn_core_bench: no AVX-512 here, skipped");
        return 0;
    }
    if (argc < 5) {
        fprintf(stderr,
                "usage: attn_core_bench B H S D [--causal] [--mask] [--per-head] [--reps N]\n");
        return 2;
    }
    const int64_t B = atol(argv[1]), H = atol(argv[2]), S = atol(argv[3]), d = atol(argv[4]);
    int causal = 0, masked = 0, per_head = 0, reps = 15;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--causal"))
            causal = 1;
        else if (!strcmp(argv[i], "--mask"))
            masked = 1;
        else if (!strcmp(argv[i], "--per-head"))
            per_head = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "attn_core_bench: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (B < 1 || H < 1 || S < 1 || d < 1 || d > 512 || reps < 1 || reps > CB_MAX_REPS) {
        fprintf(stderr, "attn_core_bench: B, H, S >= 1, D in [1, 512], --reps in [1, %d]\n",
                CB_MAX_REPS);
        return 2;
    }
    const int64_t ld = 3 * H * d; /* a row of the fused projection */
    const size_t n_qkv = (size_t)(B * S * ld), n_o = (size_t)(B * S * H * d);
    float *qkv = malloc(n_qkv * sizeof(float)), *o = malloc(n_o * sizeof(float));
    float *mask = malloc((size_t)(B * S) * sizeof(float));
    if (!qkv || !o || !mask) {
        fprintf(stderr, "attn_core_bench: out of memory\n");
        return 1;
    }
    uint32_t seed = 12345;
    for (size_t i = 0; i < n_qkv; i++) {
        seed = seed * 1664525u + 1013904223u;
        qkv[i] = (float)(seed >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    for (int64_t i = 0; i < B * S; i++)
        mask[i] = i % S == S - 1 ? -10000.0f : 0.0f;

    mha_attn_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.precision = MHA_PRECISION_FLOAT32;
    a.B = B, a.Hq = H, a.Hkv = H, a.Sq = S, a.Skv = S, a.dk = d, a.dv = d;
    a.q = qkv, a.q_sb = S * ld, a.q_sh = d, a.q_ss = ld;
    a.k = qkv + H * d, a.k_sb = S * ld, a.k_sh = d, a.k_ss = ld;
    a.v = qkv + 2 * H * d, a.v_sb = S * ld, a.v_sh = d, a.v_ss = ld;
    a.o = o, a.o_sb = S * H * d, a.o_sh = d, a.o_ss = H * d;
    a.scale = 1.0f / sqrtf((float)d);
    a.causal = causal;
    if (masked) a.mask = mask, a.m_sb = S, a.m_sh = 0, a.m_sq = 0, a.m_sk = 1;
    a.b0 = 0, a.b1 = B, a.h0 = 0, a.h1 = H, a.q0 = 0, a.q1 = S;
    a.num_threads = 1;
    const size_t ws_size = fa_workspace_size(&a) + 64;
    void *ws = malloc(ws_size);
    if (!ws) {
        fprintf(stderr, "attn_core_bench: out of memory\n");
        return 1;
    }

    const double flops = 4.0 * (double)(B * H) * (double)(S * S) * (double)d * (causal ? 0.5 : 1.0);
    double t[CB_MAX_REPS], pk[CB_MAX_REPS], share[CB_MAX_REPS];
    (void)cb_run(&a, per_head, ws, ws_size); /* warm: pages touched */
    for (int r = 0; r < reps; r++) {
        const double t0 = cb_cpu();
        if (cb_run(&a, per_head, ws, ws_size) != KERNEL_OK) {
            fprintf(stderr, "attn_core_bench: the kernel refused the call\n");
            return 1;
        }
        t[r] = cb_cpu() - t0;
        pk[r] = cb_peak();
        share[r] = flops / t[r] * 1e-9 / pk[r];
    }
    qsort(t, (size_t)reps, sizeof(double), bench_cmp_double);
    qsort(pk, (size_t)reps, sizeof(double), bench_cmp_double);
    qsort(share, (size_t)reps, sizeof(double), bench_cmp_double);
    printf("core B %lld H %lld S %lld d %lld%s%s%s: %.3f GFLOP, CPU median %.2f ms (min %.2f), "
           "%.1f GFLOP/s\n",
           (long long)B, (long long)H, (long long)S, (long long)d, causal ? " causal" : "",
           masked ? " masked" : "", per_head ? " per head" : "", flops * 1e-9, t[reps / 2] * 1e3,
           t[0] * 1e3, flops / t[reps / 2] * 1e-9);
    printf("  FMA peak beside it %.0f GFLOP/s (median); the core at %.1f %% of it (median of "
           "per-repetition shares, q1 %.1f, q3 %.1f)\n",
           pk[reps / 2], 100 * share[reps / 2], 100 * share[reps / 4], 100 * share[3 * reps / 4]);
    printf("  O hash %016llx\n", (unsigned long long)bench_fnv1a(o, n_o * sizeof(float)));
    free(ws);
    free(mask);
    free(o);
    free(qkv);
    return 0;
}
#else
int main(void) {
    puts("attn_core_bench: built without AVX-512, skipped");
    return 0;
}
#endif
