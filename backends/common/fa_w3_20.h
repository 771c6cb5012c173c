/* fa_w3_20.h -- the float32 fused score tile with the previous tile's
 * exponentials scheduled into its product loop (common/flash_attention.h's
 * FA_HAVE_SCHED_F32; included from there after fa_score_f32_fused).
 *
 * A full float32 score tile whose rows keep their lazy reference (no lane
 * passes thr: every tile of a row's second and later key blocks but the
 * few where its reference moves) leaves its softmax's 24 exponentials --
 * t = dot c2 - m2 by one FMA, then vf_exp2_f32 -- to the next score tile
 * of the block: its dots are stored raw, and the next tile's product loop
 * takes them back one vector per two steps of d, so their FMA-pipe
 * operations fill the slots the products leave instead of waiting on the
 * tile's last FMAs at its end (docs/PERFORMANCE.md, "Session 20 (w3_20)").
 * The sums of the probabilities, the class test and l's update follow the
 * loop. The block's last tile is finished alone (fa_sch_flush).
 *
 * The loop is written in inline assembly with its registers chosen: the 24
 * accumulators in any of zmm0-27, a step's four K^T vectors in zmm28-31,
 * each Q element a broadcast memory operand of its four FMAs; the
 * exponential's four temporaries in zmm28-31 too. In C the compiler kept
 * the exponential's constants in registers and sent accumulators to the
 * stack (session 14's 6-row pipelined tile).
 *
 * Bits: every value is made by the operations fa_f32_fused_softmax and
 * fa_tile_exp2 use, in the same order (a product a b is b a; the exp is
 * vf_exp2_f32's instruction sequence on its constants vf_exp2_f32_c), so a
 * row gets the bits it gets without this file; test_attention_pipe checks
 * the exponential against vf_exp2_f32 and the deferred tiles' fallback.
 *
 * AVX-512 only, FA_MR 6 x FA_SCH_NV 4 (the avx512 backend's float32 core and
 * the openmp backend's AVX-512 variant).
 */
#ifndef MHA_BACKENDS_FA_W3_20_H
#define MHA_BACKENDS_FA_W3_20_H

#if defined(FA_HAVE_EXP2_F32) && defined(__AVX512F__) && defined(__x86_64__) && VLEN == 16 &&      \
    FA_MR == 6 && FA_BC == 64
#define FA_HAVE_SCHED_F32 1
#define FA_SCH_NV 4 /* key vectors of a tile (FA_BC / VLEN) */

/* A score tile whose exponentials wait for the next tile's product loop:
 * its raw dots at s (row r at s + r * FA_BC: vector e = 4 r + c at s + e
 * VLEN), -m2 of vector e's row at negx[e], its rows' l at lv (row r at lv
 * + r * VLEN), its first row r0 in the block */
typedef struct fa_sch_pend {
    float *s;
    float *lv;
    float negx[2 * VLEN]; /* [FA_MR * FA_SCH_NV] used */
    float c2;
    int64_t r0;
    int on;
} fa_sch_pend;

/* vf_exp2_f32 of the pending vector at [x] after t = x c2 + [n], in place,
 * then [x] and [n] to the next vector: zmm24 t, zmm25 f, zmm26 1.5 2^19 +
 * t, then 2^(k/16), then the result, zmm27 q; [c] vf_exp2_f32_c */
#define FA_SCH_EXP                                                                                 \
    "vbroadcastss (%[n]), %%zmm24\n\t"                                                             \
    "vmovups (%[x]), %%zmm25\n\t"                                                                  \
    "vfmadd231ps (%[c2])%{1to16%}, %%zmm25, %%zmm24\n\t"                                           \
    "vreduceps $0x49, %%zmm24, %%zmm25\n\t"                                                        \
    "vbroadcastss 64(%[c]), %%zmm26\n\t"                                                           \
    "vaddps %{rd-sae%}, %%zmm26, %%zmm24, %%zmm26\n\t"                                             \
    "vpermps (%[c]), %%zmm26, %%zmm26\n\t"                                                         \
    "vbroadcastss 68(%[c]), %%zmm27\n\t"                                                           \
    "vfmadd213ps 72(%[c])%{1to16%}, %%zmm25, %%zmm27\n\t"                                          \
    "vfmadd213ps 76(%[c])%{1to16%}, %%zmm25, %%zmm27\n\t"                                          \
    "vmulps %%zmm25, %%zmm27, %%zmm27\n\t"                                                         \
    "vfmadd213ps %%zmm26, %%zmm27, %%zmm26\n\t"                                                    \
    "vscalefps %%zmm24, %%zmm26, %%zmm24\n\t"                                                      \
    "vmovups %%zmm24, (%[x])\n\t"                                                                  \
    "add $64, %[x]\n\t"                                                                            \
    "add $4, %[n]\n\t"

/* The pending tile's exponentials [e, FA_MR FA_SCH_NV) alone */
static inline void fa_sch_exps(fa_sch_pend *p, int e) {
    float *x = p->s + e * VLEN;
    const float *n = p->negx + e;
    for (; e < FA_MR * FA_SCH_NV; e++)
        __asm__ volatile(FA_SCH_EXP
                         : [x] "+r"(x), [n] "+r"(n)
                         : [c2] "r"(&p->c2), [c] "r"(vf_exp2_f32_c)
                         : "zmm24", "zmm25", "zmm26", "zmm27", "memory");
}

/* One step d of the products: acc[r][c] (zmm 4 r + c) += Q[d][r] K^T[d][c];
 * K^T's row at [k] into zmm28-31, Q's elements broadcast from [q]; then
 * [k] and [q] to the next step */
#define FA_SCH_FMA(Q, K, A) "vfmadd231ps %%zmm27, %%zmm" K ", %%zmm" A "\n\t"
#define FA_SCH_ROW(Q, A0, A1, A2, A3)                                                              \
    "vbroadcastss " Q "(%[q]), %%zmm27\n\t" FA_SCH_FMA(Q, "28", A0) FA_SCH_FMA(Q, "29", A1)        \
        FA_SCH_FMA(Q, "30", A2) FA_SCH_FMA(Q, "31", A3)
#define FA_SCH_STEP                                                                                \
    "vmovups (%[k]), %%zmm28\n\t"                                                                  \
    "vmovups 64(%[k]), %%zmm29\n\t"                                                                \
    "vmovups 128(%[k]), %%zmm30\n\t"                                                               \
    "vmovups 192(%[k]), %%zmm31\n\t" FA_SCH_ROW("", "0", "1", "2", "3")                            \
        FA_SCH_ROW("4", "4", "5", "6", "7") FA_SCH_ROW("8", "8", "9", "10", "11")                  \
            FA_SCH_ROW("12", "12", "13", "14", "15") FA_SCH_ROW("16", "16", "17", "18", "19")      \
                FA_SCH_ROW("20", "20", "21", "22", "23") "add %[ks], %[k]\n\t"                     \
                                                         "add %[qs], %[q]\n\t"
/* clang-format off */
#define FA_SCH_ZERO(A) "vpxord %%zmm" A ", %%zmm" A ", %%zmm" A "\n\t"
#define FA_SCH_ZERO_ROW(A0, A1, A2, A3) FA_SCH_ZERO(A0) FA_SCH_ZERO(A1) FA_SCH_ZERO(A2) FA_SCH_ZERO(A3)
/* row r's over bit: max over its vectors in vf_max's order (a NaN takes
 * the later operand), > thr[r] lane by lane, into k2 */
#define FA_SCH_OVER_ROW(A0, A1, A2, A3, T)                                                         \
    "vmaxps %%zmm" A1 ", %%zmm" A0 ", %%zmm24\n\t"                                                 \
    "vmaxps %%zmm" A2 ", %%zmm24, %%zmm24\n\t"                                                     \
    "vmaxps %%zmm" A3 ", %%zmm24, %%zmm24\n\t"                                                     \
    "vcmpgt_oqps " T "(%[thr])%{1to16%}, %%zmm24, %%k1\n\t"                                        \
    "korw %%k1, %%k2, %%k2\n\t"
#define FA_SCH_STORE(A, OFF) "vmovups %%zmm" A ", " OFF "(%[s])\n\t"
#define FA_SCH_STORE_ROW(A0, A1, A2, A3, OFF)                                                      \
    FA_SCH_STORE(A0, OFF "+0") FA_SCH_STORE(A1, OFF "+64") FA_SCH_STORE(A2, OFF "+128")           \
    FA_SCH_STORE(A3, OFF "+192")

/* The tile's products (fa_score_f32_acc's chains: d ascending from 0) to s
 * (row r at s + r * FA_BC); with a pending tile, its first npair
 * exponentials one per two steps of d (npair <= nd / 2). Returns a nonzero
 * when a row's dots pass its thr (fa_f32_fused_softmax's test). */
static inline unsigned fa_sch_products(int64_t nd, const float *qp, const float *kt, float *s,
                                       const float *thr, fa_sch_pend *pend, int64_t npair) {
    int64_t nrest = nd - 2 * npair;
    float *x = pend->s;
    const float *n = pend->negx;
    unsigned over;
    __asm__ volatile(
        FA_SCH_ZERO_ROW("0", "1", "2", "3") FA_SCH_ZERO_ROW("4", "5", "6", "7")
        FA_SCH_ZERO_ROW("8", "9", "10", "11") FA_SCH_ZERO_ROW("12", "13", "14", "15")
        FA_SCH_ZERO_ROW("16", "17", "18", "19") FA_SCH_ZERO_ROW("20", "21", "22", "23")
        "test %[np], %[np]\n\t"
        "jz 2f\n"
        "1:\n\t"
        FA_SCH_STEP FA_SCH_STEP FA_SCH_EXP
        "dec %[np]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %[nr], %[nr]\n\t"
        "jz 4f\n"
        "3:\n\t"
        FA_SCH_STEP
        "dec %[nr]\n\t"
        "jnz 3b\n"
        "4:\n\t"
        FA_SCH_STORE_ROW("0", "1", "2", "3", "0") FA_SCH_STORE_ROW("4", "5", "6", "7", "256")
        FA_SCH_STORE_ROW("8", "9", "10", "11", "512") FA_SCH_STORE_ROW("12", "13", "14", "15", "768")
        FA_SCH_STORE_ROW("16", "17", "18", "19", "1024")
        FA_SCH_STORE_ROW("20", "21", "22", "23", "1280")
        "kxorw %%k2, %%k2, %%k2\n\t"
        FA_SCH_OVER_ROW("0", "1", "2", "3", "0") FA_SCH_OVER_ROW("4", "5", "6", "7", "4")
        FA_SCH_OVER_ROW("8", "9", "10", "11", "8") FA_SCH_OVER_ROW("12", "13", "14", "15", "12")
        FA_SCH_OVER_ROW("16", "17", "18", "19", "16")
        FA_SCH_OVER_ROW("20", "21", "22", "23", "20")
        "kmovw %%k2, %[ov]\n\t"
        : [k] "+r"(kt), [q] "+r"(qp), [np] "+r"(npair), [nr] "+r"(nrest), [x] "+r"(x), [n] "+r"(n),
          [ov] "=r"(over)
        : [s] "r"(s), [thr] "r"(thr), [c2] "r"(&pend->c2), [c] "r"(vf_exp2_f32_c),
          [ks] "i"(FA_BC * 4), [qs] "i"(FA_BR * 4)
        : "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8", "zmm9", "zmm10",
          "zmm11", "zmm12", "zmm13", "zmm14", "zmm15", "zmm16", "zmm17", "zmm18", "zmm19", "zmm20",
          "zmm21", "zmm22", "zmm23", "zmm24", "zmm25", "zmm26", "zmm27", "zmm28", "zmm29", "zmm30",
          "zmm31", "k1", "k2", "cc", "memory");
    return over;
}
/* clang-format on */

/* The end of a pending tile whose probabilities are made: each row's sum
 * (fa_tile_exp2's, from 0, vectors in key order), l = l 1 + sum when no
 * sum is NaN or infinite (fa_f32_fused_softmax's update with corr 1).
 * Returns 1, or -1 with l untouched (the caller scores the tile again for
 * the row pass). */
static inline int fa_sch_finish(fa_sch_pend *p) {
    vf psum[FA_MR];
    unsigned bad = 0;
    p->on = 0;
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        vf ps = vf_zero();
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_SCH_NV; c++) ps =
            vf_add(ps, vf_load(p->s + r * FA_BC + c * VLEN));
        psum[r] = ps;
        bad |= vf_nonfinite_bits(ps) ? 1u << r : 0u;
    }
    if (bad) return -1;
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++)
        vf_store(p->lv + r * VLEN, vf_fma(vf_load(p->lv + r * VLEN), vf_set1(1.0f), psum[r]));
    return 1;
}

/* The pending tile alone (the last of a key block): 1 or -1 as
 * fa_sch_finish */
static inline int fa_sch_flush(fa_sch_pend *p) {
    fa_sch_exps(p, 0);
    return fa_sch_finish(p);
}

/*
 * fa_score_f32_fused with the pending tile's exponentials in its product
 * loop. *prev: the pending tile's result (1, -1 as fa_sch_finish; 0 when
 * none was pending). Then this tile: when no row's dots pass its thr (and
 * every m2 is set or the dots are not finite: the sums then fail), its dots
 * are stored raw at s, corr[r] = 1 (m2, thr stay), and it becomes the
 * pending tile (r0 its first row): returns 2. Else 3, the dots at s and
 * nothing else touched: the caller does that tile's softmax on them
 * (flash_attention.h, fa_f32_fused_stored).
 */
__attribute__((noinline)) static int fa_sch_tile(int64_t nd, const float *qp, const float *kt,
                                                 float *s, float *m2, float *thr, float *lv,
                                                 float *corr, float c2, fa_sch_pend *pend,
                                                 int64_t r0, int *prev) {
    const int64_t npair = !pend->on ? 0 : nd / 2 < FA_MR * FA_SCH_NV ? nd / 2 : FA_MR * FA_SCH_NV;
    const unsigned over = fa_sch_products(nd, qp, kt, s, thr, pend, npair);
    *prev = 0;
    if (pend->on) {
        fa_sch_exps(pend, (int)npair);
        *prev = fa_sch_finish(pend);
    }
    if (over) return 3;
    /* -m2 of each vector's row (row r's lanes 4 r .. 4 r + 3) */
    const vf negm = _mm512_xor_ps(vf_load_part(m2, FA_MR), vf_set1(-0.0f));
    const __m512i lo = _mm512_srli_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 2);
    vf_store(pend->negx, _mm512_permutexvar_ps(lo, negm));
    vf_store(pend->negx + VLEN,
             _mm512_permutexvar_ps(_mm512_add_epi32(lo, _mm512_set1_epi32(4)), negm));
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) corr[r] = 1.0f;
    pend->s = s;
    pend->lv = lv;
    pend->c2 = c2;
    pend->r0 = r0;
    pend->on = 1;
    return 2;
}

#endif
#endif
