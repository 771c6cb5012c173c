/* gemm_blocked.h -- the blocked GEMM driver the SIMD and openmp backends
 * share, BLIS-style: B is packed once into panels of GEMM_NR columns, A is
 * packed per tile into GEMM_MR-row slivers, and one register-blocked
 * micro-kernel computes every GEMM_MR x GEMM_NR tile. Edges never reach the
 * micro-kernel as special cases: the packing pads with zeros, and tiles that
 * hang over the edge of C go through a small buffer.
 *
 * A template by inclusion: the including kernel file defines, before the
 * #include,
 *   GEMM_MR, GEMM_NR   tile size (rows of A, columns of B)
 *   GEMM_KC            k-block (B panel block kc x NR meant for L1)
 *   GEMM_MC            optional: rows packed per block (a multiple of MR;
 *                      default 4 MR; the A block MC x KC lives on the stack)
 *   void gemm_ukernel(int64_t kc, const float *ap, const float *bp,
 *                     float *c, int64_t ldc, int accumulate);
 *       c[r, n] (+)= sum_{k<kc} ap[k*MR + r] * bp[k*NR + n], r < MR, n < NR,
 *       the sum as ONE chain over k ascending starting from c (accumulate)
 *       or from 0.
 *   optional: GEMM_HAVE_PACK_A and
 *   void gemm_pack_a(const float *A, int64_t lda, int64_t kc, float *dst):
 *       dst[k * MR + r] = A[r * lda + k] for r < MR, k < kc (a full sliver).
 *   optional: GEMM_HAVE_UKERNEL_PF and
 *   void gemm_ukernel_pf(kc, ap, bp, c, ldc, accumulate, const char *pf,
 *                        int64_t npf):
 *       gemm_ukernel's full tile, the same chain, prefetching the npf
 *       64-byte lines from pf on (a hint; npf may be <= 0); the driver gives
 *       each sliver its share of the next B slice it will read.
 *   optional: GEMM_HAVE_UKERNEL_PACK (with GEMM_HAVE_UKERNEL_PF) and
 *   void gemm_ukernel_pf_pack(kc, ap, bp, c, ldc, accumulate, pf, npf,
 *                             const float *A, int64_t lda, float *dst):
 *       gemm_ukernel_pf's tile and hint, and meanwhile gemm_pack_a(A, lda,
 *       kc, dst)'s bytes written: a many-row block's first panel packs
 *       each next full sliver in the kernel call before it, and pass 1
 *       only the first (and a short last) one.
 *   optional: GEMM_HAVE_UKERNEL_BIAS (with GEMM_HAVE_UKERNEL_PACK) and
 *   gemm_ukernel_pf_bias(..., const float *bias),
 *   gemm_ukernel_pf_pack_bias(..., const float *bias):
 *       the two kernels above, the tile stored as x + bias[n] when bias is
 *       not NULL (the tile's first column). A many-row block whose
 *       epilogue is the bias alone gives it every full tile of its last
 *       k-block in a whole panel; the pass after the block does the rest.
 *   optional: GEMM_HAVE_GELU_ERF_SPAN and
 *   void gemm_gelu_erf_span(float *c, int64_t n0, int64_t n1):
 *       the GELU (erf) epilogue over c[n0, n1) in place, bitwise
 *       kernel_gelu_erf element by element.
 *   optional: GEMM_HAVE_UKERNEL_ROWS and
 *   void gemm_ukernel_rows(kc, ap, bp, c, ldc, accumulate, int64_t mr):
 *       the same for rows r < mr only (0 < mr < MR; c has only mr rows),
 *       each element the same chain; used for full-width short slivers.
 *
 * Determinism: element C[m, n] is bias[n] + (chain over k = 0..K-1), the
 * chain split at the fixed k-blocks [0,KC), [KC,2KC), ... and continued
 * through memory (a store and reload do not round). Nothing depends on which
 * tile or range the element was computed in, so any split of [m0,m1) x
 * [n0,n1) gives bitwise-identical C.
 *
 * Plain-C version of what the loops compute:
 *   for each MC-row block mb of [m0,m1):
 *     for k0 in 0, KC, 2KC, ...:
 *       ap[t] = A[mb+t*MR : +MR, k0:k0+KC] packed [k][r], zero rows past M
 *       for each panel p covering [n0,n1):
 *         for each sliver t of the block:
 *           C[rows of t, panel p] (+)= ap[t] . Bpacked[p][k0:k0+KC]  (micro-kernel)
 *     C[mb:mb+MC, n0:n1] = act(C + bias[n0:n1]) + residual   (epilogue)
 */
#ifndef MHA_BACKENDS_GEMM_BLOCKED_H
#define MHA_BACKENDS_GEMM_BLOCKED_H

#include <stdint.h>
#include <string.h>

#include "common/kernel_common.h"

#if !defined(GEMM_MR) || !defined(GEMM_NR) || !defined(GEMM_KC)
#error "define GEMM_MR, GEMM_NR and GEMM_KC before including gemm_blocked.h"
#endif
#ifndef GEMM_MC
#define GEMM_MC (4 * GEMM_MR) /* rows packed per block (a multiple of GEMM_MR) */
#endif

/* Packed B: ceil(N/NR) panels, each [K][NR] floats, columns past N zero.
 * SIZE_MAX when the size overflows. */
static inline size_t gemm_blocked_packed_size(int64_t K, int64_t N) {
    if (K < 0 || N < 0) return SIZE_MAX;
    uint64_t panels = (uint64_t)(N + GEMM_NR - 1) / GEMM_NR;
    uint64_t floats_per_panel = (uint64_t)K * GEMM_NR;
    if (panels && floats_per_panel > SIZE_MAX / sizeof(float) / panels) return SIZE_MAX;
    return (size_t)(panels * floats_per_panel * sizeof(float));
}

/* B: [K, N] row-major (ldb) -> packed panels [N/NR][K][NR]. */
static inline void gemm_blocked_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb,
                                       void *packed) {
    float *dst = packed;
    int64_t panels = (N + GEMM_NR - 1) / GEMM_NR;
    for (int64_t p = 0; p < panels; p++) {
        int64_t n0 = p * GEMM_NR;
        int64_t nn = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
        for (int64_t k = 0; k < K; k++) {
            float *row = dst + (p * K + k) * GEMM_NR;
            memcpy(row, B + k * ldb + n0, (size_t)nn * sizeof(float));
            for (int64_t c = nn; c < GEMM_NR; c++)
                row[c] = 0.0f; /* pad, not branch */
        }
    }
}

/* Asks for the C tile after sliver t of panel p (the next sliver, else
 * the first of the next panel) while sliver t computes: its rows are
 * loaded (a later k-block) or stored (the first) by the micro-kernel, and
 * a C larger than the caches (GPT-2's logits, [1024, 50257]) otherwise
 * stalls each kernel call on 2 x MR misses. A hint only: no result changes. */
static inline void gemm_prefetch_next_c(const mha_gemm_args *a, int64_t mb, int64_t rows, int64_t p,
                                        int64_t p_last, int64_t t, int64_t tiles) {
    if (t + 1 < tiles) {
        t++;
    } else if (p < p_last) {
        p++;
        t = 0;
    } else {
        return;
    }
    const int64_t n = p * GEMM_NR > a->n0 ? p * GEMM_NR : a->n0;
    const int64_t r1 = rows - t * GEMM_MR < GEMM_MR ? rows - t * GEMM_MR : GEMM_MR;
    const float *c = a->C + (mb + t * GEMM_MR) * a->ldc + n;
    for (int64_t r = 0; r < r1; r++)
        for (int64_t j = 0; j < GEMM_NR; j += 16)
            __builtin_prefetch(c + r * a->ldc + j, 1, 3);
}

/* A short row block (at most GEMM_STREAM_ROWS, three slivers: a request of
 * a few tokens, W2's 32 rows) reads each B panel slice once, from memory for
 * a model whose weights outgrow the caches; the slice it reads after panel
 * p's at k-block k0 (the next panel's, after the last the first panel's of
 * the next k-block; NULL after the last) is what its first sliver's kernel
 * asks for while it computes, when the kernel file defines
 * GEMM_HAVE_UKERNEL_STREAM and
 *   void gemm_ukernel_stream(kc, ap, bp, c, ldc, accumulate, int64_t mr,
 *                            const float *next):
 *       gemm_ukernel_rows' rows r < mr (0 < mr <= MR), the same chains,
 *       asking for next[k * NR .. +NR] at each k-step (a hint).
 * Up to 24 rows at first; at 25-36 rows the full slivers' share of the
 * slice (GEMM_HAVE_UKERNEL_PF, one line every two k-steps) covered half of
 * it and W2 (32 rows) ran 1.02-1.03x slower with it than without; streamed,
 * 0.89-0.90x main's CPU time, BERT-base at 32 tokens 0.89x (paired, same
 * bits; docs/PERFORMANCE.md, "w2_17"). The other slivers keep their share:
 * with both, 24 and 32 rows ran level with the stream alone. */
#define GEMM_STREAM_ROWS (3 * GEMM_MR)
static inline const float *gemm_blocked_next_slice(const mha_gemm_args *a, int64_t p,
                                                   int64_t p_first, int64_t p_last, int64_t k0) {
    if (p < p_last) return (const float *)a->B_packed + ((p + 1) * a->K + k0) * GEMM_NR;
    if (k0 + GEMM_KC < a->K)
        return (const float *)a->B_packed + (p_first * a->K + k0 + GEMM_KC) * GEMM_NR;
    return NULL;
}

/* The A rows a many-row block packs next (more than GEMM_STREAM_ROWS rows:
 * the short blocks stream B instead), asked for while the current k-block's
 * kernels run, when the kernel file defines GEMM_PREFETCH_NEXT_A: the same
 * rows' next k-block, else the first k-block of the next row block (at one
 * thread the next unit's rows, past m1 but inside A's M rows). Pass 1
 * otherwise reads them from L3 (a whole model's activations, 6-25 MB, are
 * written a step before) with a few loads in flight: MiniLM-L6's packing
 * was ~4.6 % of its GEMM samples at 1 thread, most of it waiting. Spread
 * as a share of lines before each full tile's kernel call (lpr lines a
 * row). A hint only: no result changes. */
typedef struct gemm_next_a {
    const char *row0; /* the first row's first byte, or NULL: nothing next */
    int64_t row_bytes, lpr, lines, share;
} gemm_next_a;

static inline gemm_next_a gemm_blocked_next_a(const mha_gemm_args *a, int64_t mb, int64_t rows,
                                              int64_t k0, int64_t calls) {
    gemm_next_a n = {NULL, 0, 0, 0, 0};
#ifdef GEMM_PREFETCH_NEXT_A
    int64_t r0 = mb, nr = rows, c0 = k0 + GEMM_KC;
    if (c0 >= a->K) { /* the next row block's first k-block */
        r0 = mb + GEMM_MC;
        nr = a->M - r0 < GEMM_MC ? a->M - r0 : GEMM_MC;
        c0 = 0;
    }
    if (rows <= GEMM_STREAM_ROWS || nr <= 0 || calls <= 0) return n;
    const int64_t ckc = a->K - c0 < GEMM_KC ? a->K - c0 : GEMM_KC;
    n.row0 = (const char *)(a->A + r0 * a->lda + c0);
    n.row_bytes = a->lda * (int64_t)sizeof(float);
    n.lpr = (ckc * (int64_t)sizeof(float) + 63) / 64;
    n.lines = nr * n.lpr;
    n.share = (n.lines + calls - 1) / calls;
#else
    (void)a, (void)mb, (void)rows, (void)k0, (void)calls;
#endif
    return n;
}

/* Lines [call * share, +share) of the next A rows (see gemm_next_a).
 * Always inlined: gcc (12, -O1 and up) finds a function whose only effect
 * is a prefetch free of side effects and deletes the call. */
static inline __attribute__((always_inline)) void gemm_blocked_prefetch_a(const gemm_next_a *n,
                                                                          int64_t call) {
    if (!n->row0) return;
    int64_t i = call * n->share, end = i + n->share < n->lines ? i + n->share : n->lines;
    if (i >= end) return;
    int64_t row = i / n->lpr, line = i % n->lpr;
    for (; i < end; i++) {
        __builtin_prefetch(n->row0 + row * n->row_bytes + line * 64, 0, 2);
        if (++line == n->lpr) {
            line = 0;
            row++;
        }
    }
}

#if defined(GEMM_HAVE_UKERNEL_BIAS) && defined(GEMM_HAVE_GELU_ERF_TILE)
/* A full MR x NR tile's GELU (erf) right after its last kernel call added
 * the bias (or stored it without one), when the kernel file has
 * GEMM_HAVE_GELU_ERF_TILE and
 *   void gemm_gelu_erf_tile(float *c, int64_t ldc):
 *       the GELU (erf) over C's MR x NR tile at c in place, bitwise
 *       kernel_gelu_erf element by element.
 * The tile is in L1 (just stored); the pass after the block read it again
 * from L2, or from L3 when a whole-width FFN up block (72 x 3072 floats)
 * outgrows L2: BERT-base 0.982-0.994x the CPU time at 1 thread (0.985 over
 * 31 pairs, the same bits; docs/PERFORMANCE.md, "gemm20"). Not with a
 * residual: its rows read tile by tile (12 x 128 bytes from L2 or L3 after
 * each call) made MiniLM-L6's output projection [4096 x 384] . [384 x 384]
 * 1.025-1.037x slower than the pass's streams. Nor when the last k-block is
 * short of GEMM_KC: at K 384 (MiniLM-L6's FFN up, kernel calls of half the
 * length) the model ran 1.006-1.010x, its FFN up alone 0.991-1.017x. */
#define GEMM_TILE_EPILOGUE 1
static inline int gemm_blocked_tile_epilogue_ok(const mha_gemm_args *a) {
    return a->activation == MHA_ACT_GELU_ERF && !a->residual && a->K % GEMM_KC == 0;
}
static inline void gemm_blocked_tile_epilogue(const mha_gemm_args *a, int64_t m, int64_t n) {
    gemm_gelu_erf_tile(a->C + m * a->ldc + n, a->ldc);
}
#endif

/*
 * One row block against panels [p_first, p_last]: rows [mb, mb + GEMM_MC)
 * of C (clipped to m1), the panels' columns clipped to [n0, n1). Per
 * k-block the block's A rows are packed once as GEMM_MC / MR slivers; then
 * each B panel [kc][NR] (kc*NR floats, sized to stay in L1) meets every
 * sliver of the block before the next panel is touched, so B streams from
 * memory once per row block and A slivers come from L1/L2. Shapes: A [M, K]
 * (lda), packed B panel p [K][NR], C [M, N] (ldc), bias [N] or NULL; K > 0.
 */
static inline void gemm_blocked_rows(const mha_gemm_args *a, int64_t mb, int64_t p_first,
                                     int64_t p_last) {
    _Alignas(64) float ap[GEMM_MC * GEMM_KC];
    _Alignas(64) float ct[GEMM_MR * GEMM_NR];
    const int64_t rows = a->m1 - mb < GEMM_MC ? a->m1 - mb : GEMM_MC;
    const int64_t tiles = (rows + GEMM_MR - 1) / GEMM_MR;

    /* Full slivers the first panel's kernel calls pack (each the next
     * one's), when its tiles are full: all but the first, else none. Pass
     * 1 alone read the block's A rows (a step's output, from L2 or L3) with
     * the FMA pipes idle; at 1 thread BERT-base 0.982x the CPU time (each
     * column slab packs A again), MiniLM-L6 0.989-0.996x, the same bits
     * (paired; docs/PERFORMANCE.md, "gemm18"). */
    int64_t in_kernel = 0;
#if defined(GEMM_HAVE_UKERNEL_PACK) && defined(GEMM_HAVE_UKERNEL_PF)
    if (rows > GEMM_STREAM_ROWS && a->n0 <= p_first * GEMM_NR && a->n1 >= (p_first + 1) * GEMM_NR)
        in_kernel = rows / GEMM_MR - 1;
#endif
    /* The bias of the full tiles in whole panels [fc0, fc1) of the range
     * added in their last kernel call when it is the whole epilogue (the
     * pass after the block does the rest; avx512_gemm.h, "GEMM_HAVE_
     * UKERNEL_BIAS"). */
    const int64_t rn0 = a->n0 > p_first * GEMM_NR ? a->n0 : p_first * GEMM_NR;
    const int64_t rn1 = a->n1 < (p_last + 1) * GEMM_NR ? a->n1 : (p_last + 1) * GEMM_NR;
    const int64_t fc0 = (rn0 + GEMM_NR - 1) / GEMM_NR * GEMM_NR, fc1 = rn1 / GEMM_NR * GEMM_NR;
    int out = 0, tile = 0;
#ifdef GEMM_HAVE_UKERNEL_BIAS
    out = rows > GEMM_STREAM_ROWS && fc0 < fc1 && a->bias && !a->residual &&
          a->activation == MHA_ACT_NONE;
#ifdef GEMM_TILE_EPILOGUE
    /* and the GELU on each such tile right after that call
     * (gemm_blocked_tile_epilogue) */
    tile = rows > GEMM_STREAM_ROWS && fc0 < fc1 && gemm_blocked_tile_epilogue_ok(a);
    out = out || tile;
#endif
#endif
    (void)tile;

    for (int64_t k0 = 0; k0 < a->K; k0 += GEMM_KC) {
        const int64_t kc = a->K - k0 < GEMM_KC ? a->K - k0 : GEMM_KC;

        /* pass 1: pack the A slivers [tile][kc][MR], zero rows past the range
         * (slivers 1 .. in_kernel later, in the first panel's kernels) */
        for (int64_t t = 0; t < tiles; t++) {
            float *dst = ap + t * kc * GEMM_MR;
            if (t >= 1 && t <= in_kernel) continue;
#ifdef GEMM_HAVE_PACK_A
            if (t * GEMM_MR + GEMM_MR <= rows) { /* a full sliver: the kernel's packer */
                gemm_pack_a(a->A + (mb + t * GEMM_MR) * a->lda + k0, a->lda, kc, dst);
                continue;
            }
#endif
            for (int64_t r = 0; r < GEMM_MR; r++) {
                if (t * GEMM_MR + r < rows) {
                    const float *arow = a->A + (mb + t * GEMM_MR + r) * a->lda + k0;
                    for (int64_t k = 0; k < kc; k++)
                        dst[k * GEMM_MR + r] = arow[k];
                } else {
                    for (int64_t k = 0; k < kc; k++)
                        dst[k * GEMM_MR + r] = 0.0f;
                }
            }
        }

        /* pass 2: per panel, the micro-kernel per sliver, into C or (edge
         * tile) through ct */
        const gemm_next_a next_a =
            gemm_blocked_next_a(a, mb, rows, k0, (p_last - p_first + 1) * (rows / GEMM_MR));
        for (int64_t p = p_first; p <= p_last; p++) {
            const int64_t cn0 = a->n0 > p * GEMM_NR ? a->n0 : p * GEMM_NR;
            const int64_t cn1 = a->n1 < (p + 1) * GEMM_NR ? a->n1 : (p + 1) * GEMM_NR;
            const int full_n = cn0 == p * GEMM_NR && cn1 == (p + 1) * GEMM_NR;
            const float *bp = (const float *)a->B_packed + (p * a->K + k0) * GEMM_NR;
#ifdef GEMM_HAVE_UKERNEL_PF
            /* the B slice this loop reads next (the next panel's; after the
             * last panel, the first panel's of the next k-block, or of
             * k-block 0 for the next row block), its lines shared out over
             * the slivers' kernel calls */
            const int64_t nk0 = p < p_last ? k0 : k0 + GEMM_KC < a->K ? k0 + GEMM_KC : 0;
            const int64_t nkc = a->K - nk0 < GEMM_KC ? a->K - nk0 : GEMM_KC;
            const char *next =
                (const char *)((const float *)a->B_packed +
                               ((p < p_last ? p + 1 : p_first) * a->K + nk0) * GEMM_NR);
            const int64_t lines = nkc * GEMM_NR * (int64_t)sizeof(float) / 64;
            const int64_t share = (lines + tiles - 1) / tiles;
#endif
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t m = mb + t * GEMM_MR;
                const int64_t mr = rows - t * GEMM_MR < GEMM_MR ? rows - t * GEMM_MR : GEMM_MR;
                const float *as = ap + t * kc * GEMM_MR;
                gemm_prefetch_next_c(a, mb, rows, p, p_last, t, tiles);
#ifdef GEMM_HAVE_UKERNEL_STREAM
                const float *ahead = t == 0 && full_n && rows <= GEMM_STREAM_ROWS
                                         ? gemm_blocked_next_slice(a, p, p_first, p_last, k0)
                                         : NULL;
                if (ahead) {
                    gemm_ukernel_stream(kc, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc, k0 > 0,
                                        mr, ahead);
                    continue;
                }
#endif
                if (mr == GEMM_MR && full_n) {
                    gemm_blocked_prefetch_a(&next_a, (p - p_first) * (rows / GEMM_MR) + t);
#ifdef GEMM_HAVE_UKERNEL_PF
                    /* left <= 0: no lines, and no pointer past the slice */
                    const int64_t left = lines - t * share;
#ifdef GEMM_HAVE_UKERNEL_PACK
#ifdef GEMM_HAVE_UKERNEL_BIAS
                    const int last = out && k0 + kc == a->K;
                    const float *bias = last && a->bias ? a->bias + p * GEMM_NR : NULL;
                    if (p == p_first && t < in_kernel) /* and sliver t + 1 packed */
                        gemm_ukernel_pf_pack_bias(
                            kc, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc, k0 > 0,
                            left > 0 ? next + t * share * 64 : next, left < share ? left : share,
                            a->A + (m + GEMM_MR) * a->lda + k0, a->lda, ap + (t + 1) * kc * GEMM_MR,
                            bias);
                    else
                        gemm_ukernel_pf_bias(kc, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc,
                                             k0 > 0, left > 0 ? next + t * share * 64 : next,
                                             left < share ? left : share, bias);
#ifdef GEMM_TILE_EPILOGUE
                    if (last && tile) gemm_blocked_tile_epilogue(a, m, p * GEMM_NR);
#endif
                    continue;
#else
                    if (p == p_first && t < in_kernel) { /* and sliver t + 1 packed */
                        gemm_ukernel_pf_pack(kc, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc,
                                             k0 > 0, left > 0 ? next + t * share * 64 : next,
                                             left < share ? left : share,
                                             a->A + (m + GEMM_MR) * a->lda + k0, a->lda,
                                             ap + (t + 1) * kc * GEMM_MR);
                        continue;
                    }
#endif
#endif
                    gemm_ukernel_pf(kc, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc, k0 > 0,
                                    left > 0 ? next + t * share * 64 : next,
                                    left < share ? left : share);
#else
                    gemm_ukernel(kc, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc, k0 > 0);
#endif
                    continue;
                }
#ifdef GEMM_HAVE_UKERNEL_ROWS
                if (full_n) { /* a short sliver: fewer rows computed, none copied */
                    gemm_ukernel_rows(kc, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc, k0 > 0,
                                      mr);
                    continue;
                }
#endif
                if (k0 > 0) kernel_gemm_tile_in(a, ct, GEMM_NR, m, mr, p * GEMM_NR, cn0, cn1);
                gemm_ukernel(kc, as, bp, ct, GEMM_NR, k0 > 0);
                kernel_gemm_tile_out(a, ct, GEMM_NR, m, mr, p * GEMM_NR, cn0, cn1);
            }
        }
    }

    /* pass 3: the epilogue (bias, activation, residual), once after the
     * whole k chain, while the block is in cache */
#ifdef GEMM_HAVE_GELU_ERF_SPAN
    kernel_gelu_span_fn gelu = gemm_gelu_erf_span;
#else
    kernel_gelu_span_fn gelu = NULL;
#endif
    if (!out) {
        kernel_gemm_epilogue(a, mb, rows, p_first, p_last, GEMM_NR, gelu);
        return;
    }
    /* the columns outside the whole panels, and the short sliver's rows */
    const int64_t full = rows / GEMM_MR * GEMM_MR;
    if (rn0 < fc0) kernel_gemm_epilogue_rows(a, mb, mb + rows, rn0, fc0, 0, gelu);
    if (fc1 < rn1) kernel_gemm_epilogue_rows(a, mb, mb + rows, fc1, rn1, 0, gelu);
    if (full < rows) kernel_gemm_epilogue_rows(a, mb + full, mb + rows, fc0, fc1, 0, gelu);
}

/* K == 0: the product is 0, C = epilogue(bias) over the range. */
static inline void gemm_blocked_k0(const mha_gemm_args *a) {
    kernel_gemm_epilogue_range(a, a->m0, a->m1, a->n0, a->n1, 1);
}

/* Panels [*p_first, *p_last] cover [n0, n1); the number of MC-row blocks. */
static inline int64_t gemm_blocked_grid(const mha_gemm_args *a, int64_t *p_first, int64_t *p_last) {
    *p_first = a->n0 / GEMM_NR;
    *p_last = (a->n1 - 1) / GEMM_NR;
    return (a->m1 - a->m0 + GEMM_MC - 1) / GEMM_MC;
}

/* The whole range on the calling thread: row blocks outer, each packing its
 * A slivers once per k-block and sweeping every panel of the range. */
static inline int gemm_blocked_run(const mha_gemm_args *a) {
    if (!kernel_gemm_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->m0 == a->m1 || a->n0 == a->n1) return KERNEL_OK;
    if (a->K == 0) {
        gemm_blocked_k0(a);
        return KERNEL_OK;
    }
    int64_t p_first, p_last;
    int64_t tiles = gemm_blocked_grid(a, &p_first, &p_last);
    for (int64_t t = 0; t < tiles; t++)
        gemm_blocked_rows(a, a->m0 + t * GEMM_MC, p_first, p_last);
    return KERNEL_OK;
}

#endif
