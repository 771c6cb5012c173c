/* attn_ab.c -- two builds of the avx512 float32 attention core side by side
 * in one process (a program, not a test: it prints figures and checks only
 * that both builds give the same bits).
 *
 * plugin_ab compares two plugin files on a model; a change inside
 * common/flash_attention.h is a few percent of a layer at most, below what
 * a loaded machine lets a model show. Here the core alone is compiled twice
 * from two backends folders (the one before a change, copied aside, and the
 * one after) by tests/bench/attn_ab.sh: this file with ATTN_AB_SIDE a or b
 * is one build of the core, its entry renamed (attn_ab_run_a / _b), and
 * without it the driver. The driver calls both on the same Q, K and V
 * (floats uniform in [-1, 1) from a fixed seed, 64-byte aligned) in pairs
 * whose order flips each time (A B, B A, ...), one thread, and times each
 * call's CPU time (CLOCK_PROCESS_CPUTIME_ID). Printed: each side's median
 * and GFLOP/s, the median and quartiles over the pairs of the ratio B / A,
 * and the FNV-1a hash of both outputs; exit 3 when the hashes differ.
 *
 * Layouts: a bare Attention node's Q, K, V and O [B, H, S, d] (default), or
 * with --qkv a layer's: Q, K and V read in place from one projection output
 * [B, S, 3, H, d], O [B, S, H, d]. --per-head: one call per (batch item,
 * head), as the executor's units; default one call. FLOPs counted: 4 B H
 * S^2 d, half when --causal.
 *
 * Usage: attn_ab B H S D [--pairs N] [--causal] [--qkv] [--per-head]
 * Exit: 0 measured (same bits), 3 the bits differ, 2 usage, 1 out of memory
 * or no AVX-512 at build time. */
#if defined(ATTN_AB_SIDE)
#if defined(__x86_64__) && defined(__AVX512F__)
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "avx512/avx512_kernels.h"
#include "avx512/avx512_vec.h"
#include "avx512/avx512_gemm.h"
#include "avx512/avx512_gemm_bf16.h"
#ifdef ATTN_AB_BF16
#define FA_BC AVX512_FA_BC_BF16 /* as avx512_bf16_kernels.c */
#endif
#include "avx512/avx512_attention_kernels.h"

#define ATTN_AB_JOIN2(x, y) x##y
#define ATTN_AB_JOIN(x, y) ATTN_AB_JOIN2(x, y)
size_t ATTN_AB_JOIN(attn_ab_ws_, ATTN_AB_SIDE)(const mha_attn_args *a);
int ATTN_AB_JOIN(attn_ab_run_, ATTN_AB_SIDE)(const mha_attn_args *a, void *ws, size_t n);
size_t ATTN_AB_JOIN(attn_ab_ws_, ATTN_AB_SIDE)(const mha_attn_args *a) {
    return fa_workspace_size(a);
}
int ATTN_AB_JOIN(attn_ab_run_, ATTN_AB_SIDE)(const mha_attn_args *a, void *ws, size_t n) {
    return fa_attention_run(a, ws, n);
}
#endif
#else
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha/plugin.h"

#include "bench_util.h"

typedef int (*attn_ab_fn)(const mha_attn_args *, void *, size_t);
size_t attn_ab_ws_a(const mha_attn_args *a);
size_t attn_ab_ws_b(const mha_attn_args *a);
int attn_ab_run_a(const mha_attn_args *a, void *ws, size_t n);
int attn_ab_run_b(const mha_attn_args *a, void *ws, size_t n);

/* one timed call of a side (CPU seconds): the whole call, or one per
 * (batch item, head) */
static double attn_ab_time(attn_ab_fn f, mha_attn_args a, int per_head, void *ws, size_t n) {
    const double t0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    if (!per_head) {
        f(&a, ws, n);
    } else {
        const int64_t B = a.B, H = a.Hq;
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                a.b0 = b, a.b1 = b + 1, a.h0 = h, a.h1 = h + 1;
                f(&a, ws, n);
            }
    }
    return bench_clock(CLOCK_PROCESS_CPUTIME_ID) - t0;
}

static void *attn_ab_alloc(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: attn_ab B H S D [--pairs N] [--causal] [--qkv] [--per-head]\n");
        return 2;
    }
    const int64_t B = atoll(argv[1]), H = atoll(argv[2]), S = atoll(argv[3]), d = atoll(argv[4]);
    int pairs = 15, causal = 0, qkv = 0, per_head = 0;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--pairs") && i + 1 < argc)
            pairs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--causal"))
            causal = 1;
        else if (!strcmp(argv[i], "--qkv"))
            qkv = 1;
        else if (!strcmp(argv[i], "--per-head"))
            per_head = 1;
        else
            return fprintf(stderr, "attn_ab: unknown argument %s\n", argv[i]), 2;
    }
    if (B < 1 || H < 1 || S < 1 || d < 1 || pairs < 1 || B * H * S * d > (INT64_C(1) << 28))
        return fprintf(stderr, "attn_ab: sizes out of range\n"), 2;
    const size_t n = (size_t)(B * H * S * d);
    float *in = attn_ab_alloc(3 * n * sizeof(float));
    float *out[2] = {attn_ab_alloc(n * sizeof(float)), attn_ab_alloc(n * sizeof(float))};
    double *ta = malloc((size_t)pairs * sizeof(double)),
           *tb = malloc((size_t)pairs * sizeof(double));
    double *ratio = malloc((size_t)pairs * sizeof(double));
    if (!in || !out[0] || !out[1] || !ta || !tb || !ratio)
        return fprintf(stderr, "attn_ab: no memory\n"), 1;
    uint32_t seed = 12345;
    for (size_t i = 0; i < 3 * n; i++) {
        seed = seed * 1664525u + 1013904223u;
        in[i] = (float)(seed >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    mha_attn_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
#ifdef ATTN_AB_BF16
    a.precision = MHA_PRECISION_BFLOAT16; /* attn_ab.sh with ATTN_AB_BF16=1 */
#else
    a.precision = MHA_PRECISION_FLOAT32;
#endif
    a.B = B, a.Hq = H, a.Hkv = H, a.Sq = S, a.Skv = S, a.dk = d, a.dv = d;
    if (qkv) {
        const int64_t ld = 3 * H * d; /* [B, S, 3, H, d] */
        a.q = in, a.k = in + H * d, a.v = in + 2 * H * d;
        a.q_sb = a.k_sb = a.v_sb = S * ld;
        a.q_sh = a.k_sh = a.v_sh = d;
        a.q_ss = a.k_ss = a.v_ss = ld;
        a.o_sb = S * H * d, a.o_sh = d, a.o_ss = H * d;
    } else {
        a.q = in, a.k = in + n, a.v = in + 2 * n;
        a.q_sb = a.k_sb = a.v_sb = a.o_sb = H * S * d;
        a.q_sh = a.k_sh = a.v_sh = a.o_sh = S * d;
        a.q_ss = a.k_ss = a.v_ss = a.o_ss = d;
    }
    a.scale = 1.0f / sqrtf((float)d);
    a.causal = causal;
    a.b0 = 0, a.b1 = B, a.h0 = 0, a.h1 = H, a.q0 = 0, a.q1 = S;
    a.num_threads = 1;
    const attn_ab_fn run[2] = {attn_ab_run_a, attn_ab_run_b};
    const size_t wn[2] = {attn_ab_ws_a(&a), attn_ab_ws_b(&a)};
    if (wn[0] == SIZE_MAX || wn[1] == SIZE_MAX) return fprintf(stderr, "attn_ab: sizes\n"), 2;
    void *ws[2] = {attn_ab_alloc(wn[0]), attn_ab_alloc(wn[1])};
    if (!ws[0] || !ws[1]) return fprintf(stderr, "attn_ab: no memory\n"), 1;
    for (int s = 0; s < 2; s++) { /* warm: pages touched, K and V in the caches alike */
        a.o = out[s];
        attn_ab_time(run[s], a, per_head, ws[s], wn[s]);
    }
    for (int p = 0; p < pairs; p++) {
        double t[2];
        for (int k = 0; k < 2; k++) {
            const int s = (p & 1) ? 1 - k : k;
            a.o = out[s];
            t[s] = attn_ab_time(run[s], a, per_head, ws[s], wn[s]);
        }
        ta[p] = t[0], tb[p] = t[1], ratio[p] = t[1] / t[0];
    }
    qsort(ta, (size_t)pairs, sizeof(double), bench_cmp_double);
    qsort(tb, (size_t)pairs, sizeof(double), bench_cmp_double);
    qsort(ratio, (size_t)pairs, sizeof(double), bench_cmp_double);
    const double flop = 4.0 * (double)n * (double)S * (causal ? 0.5 : 1.0);
    const uint64_t ha = bench_fnv1a(out[0], n * sizeof(float));
    const uint64_t hb = bench_fnv1a(out[1], n * sizeof(float));
    printf("B %lld H %lld S %lld d %lld%s%s%s, %d pairs: A %.3f ms (%.1f GFLOP/s), B %.3f ms "
           "(%.1f GFLOP/s), B / A %.3f (quartiles %.3f-%.3f), hash A %016llx B %016llx\n",
           (long long)B, (long long)H, (long long)S, (long long)d, causal ? " causal" : "",
           qkv ? " qkv" : "", per_head ? " per-head" : "", pairs, ta[pairs / 2] * 1e3,
           flop / ta[pairs / 2] * 1e-9, tb[pairs / 2] * 1e3, flop / tb[pairs / 2] * 1e-9,
           ratio[pairs / 2], ratio[pairs / 4], ratio[3 * pairs / 4], (unsigned long long)ha,
           (unsigned long long)hb);
    return ha == hb ? 0 : 3;
}
#endif
