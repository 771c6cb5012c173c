/* attn_tile_bench.c -- the float32 flash attention's three phases of a key
 * block, alone, and a pipelined form of the second (a program, not a
 * test: it prints figures). avx512 kernels (common/flash_attention.h as
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
 *          products and the accumulators' loads and stores;
 *   piped  fa_score_plain_pipe (below; not in the plugin) over the
 *          block's rows: fused's work in tiles of 4 rows, each tile's
 *          softmax inside the next tile's product loop; piped - score is
 *          the softmax left over. Its bits are checked against fused's
 *          first (printed: the only check the program makes);
 *   lazy   fa_score_f32_fused (FA_HAVE_FUSED_F32, the float32 rows' lazy
 *          form): the same products and the lazy softmax with
 *          vf_exp2_f32, each row's reference max set (no row passes its
 *          slack); lazy - score is that softmax;
 *   sched  lazy's tiles through fa_sch_tile (FA_HAVE_SCHED_F32,
 *          common/fa_w3_20.h): each tile's exponentials in the next
 *          tile's product loop, the block's last tile's alone.
 * Each is 2 FA_MR FA_BC 64 FLOPs of products per tile; the ideal time
 * at --peak GFLOP/s (the FMA peak of `mha peak`, default 222) is printed
 * beside the measured one. The phases alternate in every repetition
 * (so a shared machine's load touches them alike); min and median over the
 * repetitions.
 *
 * Usage: attn_tile_bench [--reps N] [--blocks N] [--peak GFLOPS]
 * Exit: 0 measured, 3 the piped phase's bits differ from fused's (nothing
 * measured), 2 usage, 1 out of memory. */
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

#ifdef FA_HAVE_PLAIN_TILE
/*
 * The pipelined plain tile (session 14, measured, not kept in the plugin:
 * docs/PERFORMANCE.md "Session 14"). Its kernel lives here, beside the
 * phases it is measured against, so the figures can be made again: the
 * template's plain tile (fa_score_plain_tile) with each tile's softmax run
 * inside the next tile's product loop; the same bits (checked below).
 */
#define FA_HAVE_PIPE_TILE 1
#define FA_PIPE_MR 4                     /* rows: 16 accumulators, 12 registers free */
#define FA_PIPE_NX (FA_PIPE_MR * FA_NCV) /* exps of a pipelined tile */
#if FA_BR % FA_PIPE_MR
#error "attn_tile_bench.c: FA_PIPE_MR must divide FA_BR"
#endif
/* v with lane r set to x (in registers: no store of lanes and load of the
 * vector, which the store buffer cannot forward) */
static inline vf fa_lane_set(vf v, int r, float x) {
    return _mm512_mask_broadcastss_ps(v, (__mmask16)(1u << r), _mm_set_ss(x));
}
/* slots of a pipelined tile's product loop, nd / FA_PIPE_SLOTS steps of d
 * each: the first FA_PIPE_RM take the pending tile's row maxima (two rows
 * each), the others its exps, [FA_PIPE_E(k), FA_PIPE_E(k + 1)) in slot k */
#define FA_PIPE_RM ((FA_PIPE_MR + 1) / 2)
#define FA_PIPE_SLOTS 16
#define FA_PIPE_E(k)                                                                               \
    ((k) <= FA_PIPE_RM ? 0 : ((k)-FA_PIPE_RM) * FA_PIPE_NX / (FA_PIPE_SLOTS - FA_PIPE_RM))

/* one step d of a pipelined tile's products */
#define FA_PIPE_STEP(d)                                                                            \
    do {                                                                                           \
        vf kv_[FA_NCV];                                                                            \
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) kv_[c] =                          \
            FA_F32_LOAD(kt + (d)*FA_BC + c * VLEN);                                                \
        _Pragma("GCC unroll 16") for (int r = 0; r < FA_PIPE_MR; r++) {                            \
            const vf qb_ = FA_F32_SET1(q[(d)*FA_BR + r]);                                          \
            _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) acc[r][c] =                   \
                FA_F32_MAC(acc[r][c], qb_, kv_[c]);                                                \
        }                                                                                          \
    } while (0)

/* The pending tile's state between its products and its end. */
typedef struct fa_pipe {
    float *s; /* its rows' dots, then logits, then probabilities */
    int64_t row;
    float pm[FA_PIPE_MR], negm[FA_PIPE_MR]; /* new maxima, -them */
    vf dm;                                  /* m - m_new per lane (0 while m was -inf) */
    unsigned odd;                           /* a NaN or +-inf logit */
} fa_pipe;

/* Row r of the pending tile: logits = scale * dot (stored over the dots),
 * the class test, the block max and the new max, as fa_score_plain_tile. */
static inline void fa_pipe_rowmax(fa_pipe *P, const float *m, vf vscale, int r) {
    float *sr = P->s + r * FA_BC;
    vf x[FA_NCV];
    _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) {
        x[c] = vf_mul(vf_load(sr + c * VLEN), vscale);
        P->odd |= vf_nonfinite_bits(x[c]);
        vf_store(sr + c * VLEN, x[c]);
    }
    vf vmax = x[0];
    _Pragma("GCC unroll 4") for (int c = 1; c < FA_NCV; c++) vmax = vf_max(vmax, x[c]);
    const float h = vf_hmax(vmax), mr = m[P->row + r];
    P->pm[r] = h > mr ? h : mr;
    P->negm[r] = -P->pm[r];
    P->dm = fa_lane_set(P->dm, r, mr == -INFINITY ? 0.0f : mr - P->pm[r]);
}

/* Exp k of the pending tile's FA_PIPE_NX (row k / FA_NCV, vector k %
 * FA_NCV): its logit read back, the probability stored over it and added
 * to its row's sum -- fa_score_plain_tile's arithmetic, element by
 * element. */
static inline void fa_pipe_exp(const fa_pipe *P, vf *psum, int k) {
    const int r = k / FA_NCV, c = k % FA_NCV;
    float *p = P->s + r * FA_BC + c * VLEN;
    const vf e = vf_exp(vf_add(vf_load(p), vf_set1(P->negm[r])));
    psum[r] = vf_add(psum[r], e);
    vf_store(p, e);
}

/*
 * fa_score_plain_tile over the nt tiles of FA_PIPE_MR rows at qp (rows [0,
 * nt FA_PIPE_MR) of a query block, every one seeing every key of the
 * block), software-pipelined: tile t's products end with its dots stored;
 * its softmax -- the logits, class test and maxima of its rows, then its
 * exps one by one -- runs in FA_PIPE_SLOTS slots spread over tile t+1's
 * product loop, so those operations fill the slots the products leave
 * (the max, add, round and scalef pipes; the FMA pipes' few free ones)
 * instead of waiting, serialized, on the tile's last products. Each
 * element's arithmetic and order is fa_score_plain_tile's: the same bits.
 * A tile holding a NaN or +-inf logit is scored again as raw dots and left
 * to the row pass (done[r] 0), as fa_score_plain_tile's caller does; the
 * others get done[r] 1 and their rows' m, lv, corr. Returns the rows done.
 * Not inlined: its loops are laid out for a run-time nd, as a plugin's
 * would be; one call a key block.
 */
__attribute__((noinline)) static int64_t fa_score_plain_pipe(const mha_attn_args *a, int64_t nd,
                                                             const float *qp, const float *kt,
                                                             float *s, float *m, float *lv,
                                                             float *corr, int64_t nt, char *done) {
    const vf vscale = vf_set1(a->scale);
    const int64_t step = nd / FA_PIPE_SLOTS; /* the rest of d after the slots */
    fa_pipe P = {.s = s, .row = 0, .odd = 0};
    P.dm = vf_zero();
    int pend = 0;
    int64_t ndone = 0;
    for (int64_t t = 0; t <= nt; t++) {
        const int prod = t < nt; /* past the last tile only the pending one's softmax */
        const int64_t r0 = t * FA_PIPE_MR;
        const float *q = qp + r0;
        vf acc[FA_PIPE_MR][FA_NCV];
        _Pragma("GCC unroll 16") for (int r = 0; r < FA_PIPE_MR; r++)
            _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) acc[r][c] = vf_zero();
        if (pend) {
            vf psum[FA_PIPE_MR];
            _Pragma("GCC unroll 16") for (int r = 0; r < FA_PIPE_MR; r++) psum[r] = vf_zero();
            _Alignas(64) float pe[VLEN];
            int64_t d = 0;
            const int64_t dstep = prod ? step : 0;
            _Pragma("GCC unroll 32") for (int k = 0; k < FA_PIPE_SLOTS; k++) {
                for (int64_t i = 0; i < dstep; i++, d++)
                    FA_PIPE_STEP(d);
                if (k < FA_PIPE_RM) {
                    fa_pipe_rowmax(&P, m, vscale, 2 * k);
                    if (2 * k + 1 < FA_PIPE_MR) fa_pipe_rowmax(&P, m, vscale, 2 * k + 1);
                }
                /* the factors exp(m - m_new), lane r for row r, as
                 * fa_score_plain_tile: wanted when the tile ends */
                if (k == FA_PIPE_RM - 1) vf_store(pe, vf_exp(P.dm));
                for (int e = FA_PIPE_E(k); e < FA_PIPE_E(k + 1); e++)
                    fa_pipe_exp(&P, psum, e);
            }
            for (; prod && d < nd; d++)
                FA_PIPE_STEP(d);
            if (P.odd) {
                /* its rows go back to the row pass with their raw dots */
                fa_score_rows(nd, qp + P.row, kt, P.s, FA_PIPE_MR, FA_NCV);
                for (int r = 0; r < FA_PIPE_MR; r++)
                    done[P.row + r] = 0;
            } else {
                _Pragma("GCC unroll 16") for (int r = 0; r < FA_PIPE_MR; r++) {
                    const float mr = m[P.row + r];
                    const float cr = mr == P.pm[r] ? 1.0f : mr == -INFINITY ? 0.0f : pe[r];
                    float *l = lv + (P.row + r) * VLEN;
                    vf_store(l, vf_fma(vf_load(l), vf_set1(cr), psum[r]));
                    m[P.row + r] = P.pm[r];
                    corr[P.row + r] = cr;
                    done[P.row + r] = 1;
                }
                ndone += FA_PIPE_MR;
            }
            pend = 0;
        } else if (prod) {
            for (int64_t d = 0; d < nd; d++)
                FA_PIPE_STEP(d);
        }
        if (!prod) break;
        /* the dots wait in s for the next tile's loop */
        _Pragma("GCC unroll 16") for (int r = 0; r < FA_PIPE_MR; r++)
            _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++)
                vf_store(s + (r0 + r) * FA_BC + c * VLEN, acc[r][c]);
        P.s = s + r0 * FA_BC;
        P.row = r0;
        P.dm = vf_zero();
        P.odd = 0;
        pend = 1;
    }
    return ndone;
}
#endif

#define TB_D 64
#define TB_KBLOCKS 32
#define TB_TILES (FA_BR / FA_MR)
#define TB_PHASES 6

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
#ifdef FA_HAVE_PIPE_TILE
        char done[FA_BR];
        if (phase == 3)
            fa_score_plain_pipe(&a, TB_D, qp, ktb, sc, m, lv, corr, FA_BR / FA_PIPE_MR, done);
#endif
        for (int r0 = 0; phase < 2 && r0 < FA_BR; r0 += FA_MR) {
            if (phase == 0)
                fa_score_tile_full(TB_D, qp + r0, ktb, sc + r0 * FA_BC);
            else
                fa_score_plain_tile(&a, TB_D, qp + r0, ktb, sc + r0 * FA_BC, m + r0, lv + r0 * VLEN,
                                    corr + r0);
        }
        if (phase == 2) fa_pv_block(sc, acc, pad, live, live_nv, corr, FA_BR, vb, TB_D, TB_D);
#ifdef FA_HAVE_FUSED_F32
        if (phase == 4) {
            /* dots here are ~N(0, 2.7^2): a reference max of 10 c2, no
             * row past its slack */
            const float c2 = a.scale * FA_LOG2E;
            float m2[FA_BR], thr[FA_BR];
            for (int r = 0; r < FA_BR; r++) {
                m2[r] = 10.0f * c2;
                thr[r] = (10.0f * c2 + FA_LAZY_SLACK) / c2;
            }
            for (int r0 = 0; r0 < FA_BR; r0 += FA_MR)
                (void)fa_score_f32_fused(TB_D, qp + r0, ktb, sc + r0 * FA_BC, m2 + r0, thr + r0,
                                         lv + r0 * VLEN, corr + r0, c2);
        }
#endif
#ifdef FA_HAVE_SCHED_F32
        if (phase == 5) {
            /* lazy's tiles through fa_sch_tile: each tile's exponentials
             * in the next one's product loop, the last one's alone */
            const float c2 = a.scale * FA_LOG2E;
            float m2[FA_BR], thr[FA_BR];
            for (int r = 0; r < FA_BR; r++) {
                m2[r] = 10.0f * c2;
                thr[r] = (10.0f * c2 + FA_LAZY_SLACK) / c2;
            }
            fa_sch_pend pend = {.on = 0, .r0 = 0};
            int prev;
            for (int r0 = 0; r0 < FA_BR; r0 += FA_MR)
                (void)fa_sch_tile(TB_D, qp + r0, ktb, sc + r0 * FA_BC, m2 + r0, thr + r0,
                                  lv + r0 * VLEN, corr + r0, c2, &pend, r0, &prev);
            if (pend.on) (void)fa_sch_flush(&pend);
        }
#endif
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
    int run[TB_PHASES] = {1, 1, 1, 0, 0, 0};
#ifdef FA_HAVE_PIPE_TILE
    run[3] = 1;
#endif
#ifdef FA_HAVE_FUSED_F32
    run[4] = 1;
#endif
#ifdef FA_HAVE_SCHED_F32
    run[5] = 1;
#endif
    const int phases = TB_PHASES;
#ifdef FA_HAVE_PIPE_TILE
    /* the pipelined tiles against the plain tile, bit for bit: the
     * probabilities and every row's m, l and factor over 8 key blocks */
    {
        static float s1[FA_BR * FA_BC], s2[FA_BR * FA_BC], l1[FA_BR * VLEN], l2[FA_BR * VLEN];
        float m1[FA_BR], m2[FA_BR], c1[FA_BR], c2[FA_BR];
        char done[FA_BR];
        mha_attn_args a;
        memset(&a, 0, sizeof a);
        a.scale = 0.125f;
        for (int r = 0; r < FA_BR; r++)
            m1[r] = m2[r] = -INFINITY;
        memset(l1, 0, sizeof l1);
        memset(l2, 0, sizeof l2);
        int same = 1;
        for (int j = 0; j < 8; j++) {
            const float *ktb = kt + (size_t)j * TB_D * FA_BC;
            for (int r0 = 0; r0 < FA_BR; r0 += FA_MR)
                fa_score_plain_tile(&a, TB_D, qp + r0, ktb, s1 + r0 * FA_BC, m1 + r0,
                                    l1 + r0 * VLEN, c1 + r0);
            same &= fa_score_plain_pipe(&a, TB_D, qp, ktb, s2, m2, l2, c2, FA_BR / FA_PIPE_MR,
                                        done) == FA_BR;
            same &= !memcmp(s1, s2, sizeof s1) && !memcmp(l1, l2, sizeof l1) &&
                    !memcmp(m1, m2, sizeof m1) && !memcmp(c1, c2, sizeof c1);
        }
        printf("piped against fused, 8 key blocks: %s\n", same ? "the same bits" : "BITS DIFFER");
        if (!same) return 3;
    }
#endif
    double *t[TB_PHASES];
    for (int p = 0; p < phases; p++)
        if (!(t[p] = malloc((size_t)reps * sizeof(double)))) return 1;
    for (int r = 0; r < reps; r++)
        for (int p = 0; p < phases; p++)
            t[p][r] = run[p] ? tb_phase(p, blocks) : 0.0;
    const char *name[TB_PHASES] = {"score (products alone)",      "fused (products + softmax)",
                                   "pv (P.V products)",           "piped (pipelined softmax)",
                                   "lazy (float32 lazy softmax)", "sched (lazy, exps scheduled)"};
    const double ideal = 2.0 * FA_MR * FA_BC * TB_D / peak; /* ns per tile at peak */
    printf("score tile %d rows x %d keys, d 64; ideal %.1f ns per tile's products at %.0f "
           "GFLOP/s\n",
           FA_MR, FA_BC, ideal, peak);
    for (int p = 0; p < phases; p++) {
        if (!run[p]) continue;
        qsort(t[p], (size_t)reps, sizeof(double), tb_cmp);
        printf("  %-28s min %7.1f ns (%5.1f %% of peak), median %7.1f ns\n", name[p], t[p][0],
               100.0 * ideal / t[p][0], t[p][reps / 2]);
    }
    printf("  softmax (fused - score)      min %7.1f ns, median %7.1f ns\n", t[1][0] - t[0][0],
           t[1][reps / 2] - t[0][reps / 2]);
    if (run[3])
        printf("  softmax left (piped - score) min %7.1f ns, median %7.1f ns\n", t[3][0] - t[0][0],
               t[3][reps / 2] - t[0][reps / 2]);
    if (run[4])
        printf("  lazy softmax (lazy - score)  min %7.1f ns, median %7.1f ns\n", t[4][0] - t[0][0],
               t[4][reps / 2] - t[0][reps / 2]);
    if (run[5])
        printf("  sched softmax (sched - score) min %7.1f ns, median %7.1f ns\n", t[5][0] - t[0][0],
               t[5][reps / 2] - t[0][reps / 2]);
    for (int p = 0; p < phases; p++)
        free(t[p]);
    return 0;
}
#else
int main(void) {
    printf("attn_tile_bench: built without AVX-512, nothing measured\n");
    return 0;
}
#endif
