/* openmp_kernels.c -- the openmp backend's kernels: the host hands it a
 * whole problem on one thread (MHA_PLUGIN_SELF_PARALLEL) and it spreads the
 * work with OpenMP, `num_threads(args->num_threads)` on each parallel
 * region (never omp_set_num_threads: that is process-global and would
 * change other OpenMP users of the process).
 *
 * This file is compiled once per ISA variant, with exactly one of
 * OPENMP_VARIANT_BASELINE / _AVX2 / _AVX512 defined and that variant's -m
 * flags (backends/CMakeLists.txt). The variant's header (openmp_isa_*.h)
 * gives the vector layer, the GEMM micro-kernel and the flash attention
 * parameters; the drivers below are the same for all three:
 *  - GEMM: the blocked driver of common/gemm_blocked.h; threads take
 *    (row block of GEMM_MC rows, group of B panels) units, whole-width row
 *    blocks while there are enough of them, so A is packed once per block.
 *  - attention: the flash attention of common/flash_attention.h; threads
 *    take (batch, head, query chunk) units, whole heads while there are
 *    enough of them, so K and V are packed once per head.
 * The variant defines one kernel set, openmp_kernels_<isa>, which init()
 * picks (openmp_plugin.c), with its own packing of B (its panel width).
 *
 * Each unit writes a disjoint part of the output and every element's
 * reduction order is fixed by the variant alone, so a variant's result is
 * bitwise the same for any split of the range and any num_threads.
 */
#include "openmp/openmp_kernels.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define OPENMP_X86 1
#endif

#if defined(OPENMP_VARIANT_AVX512)
#include "openmp/openmp_isa_avx512.h"
#elif defined(OPENMP_VARIANT_AVX2)
#include "openmp/openmp_isa_avx2.h"
#elif defined(OPENMP_VARIANT_BASELINE)
#include "openmp/openmp_isa_baseline.h"
#else
#error "define one of OPENMP_VARIANT_BASELINE, OPENMP_VARIANT_AVX2, OPENMP_VARIANT_AVX512"
#endif

#include "common/kernel_common.h"

#if OPENMP_GEMM_NR % GEMM_NR != 0 || OPENMP_GEMM_M_BLOCK % GEMM_MR != 0 || GEMM_MC % GEMM_MR != 0
#error "the table's blocks (32 columns, 12 rows) must be multiples of every variant's tile"
#endif

#include "common/flash_attention.h"
#include "common/gemm_blocked.h"
#include "common/rotary.h"

static int openmp_threads(int n) {
    return n > 0 ? n : 1;
}

static int64_t openmp_ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

/* ------------------------------------------------------------------------ */
/* Floating-point environment of the team                                    */
/* ------------------------------------------------------------------------ */

/* The host runs a call with denormals flushed (FTZ/DAZ) on its own thread,
 * but OpenMP's threads keep whatever they had. Each thread of a region takes
 * the calling thread's MXCSR controls for the region and restores its own
 * after: rows computed by any thread then round alike (so results stay
 * bitwise independent of num_threads even when denormals appear) and run
 * at the caller's speed, and other OpenMP users of the process see their
 * threads unchanged. */
static unsigned openmp_fp_controls(void) {
#ifdef OPENMP_X86
    return _mm_getcsr();
#else
    return 0;
#endif
}

static unsigned openmp_fp_enter(unsigned caller) {
#ifdef OPENMP_X86
    const unsigned mine = _mm_getcsr();
    /* bits 0-5 are sticky exception flags, the rest controls */
    _mm_setcsr((caller & ~0x3Fu) | (mine & 0x3Fu));
    return mine;
#else
    (void)caller;
    return 0;
#endif
}

static void openmp_fp_leave(unsigned mine) {
#ifdef OPENMP_X86
    _mm_setcsr(mine);
#else
    (void)mine;
#endif
}

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

/* This variant's panels (GEMM_NR columns); float32 only. */
static size_t openmp_gemm_packed_size(int precision, int64_t K, int64_t N) {
    return precision == MHA_PRECISION_FLOAT32 ? gemm_blocked_packed_size(K, N) : SIZE_MAX;
}

static int openmp_gemm_pack_b(int precision, int64_t K, int64_t N, const float *B, int64_t ldb,
                              void *packed) {
    if (precision != MHA_PRECISION_FLOAT32) return KERNEL_ERR_ARGS;
    gemm_blocked_pack_b(K, N, B, ldb, packed);
    return KERNEL_OK;
}

/*
 * The units of a GEMM range: `body` whole-width row blocks, then the last
 * blocks cut into `split` column pieces of `piece` panels each.
 *   one thread:              every block whole (no split);
 *   blocks >= 2 x threads:   the last `threads` blocks in `threads` pieces,
 *                            so the threads that finish early share the end
 *                            instead of one of them computing a block alone;
 *   fewer blocks (a decode step's few rows): every block in enough pieces
 *                            for about 2 units per thread.
 * A piece packs its rows of A again, so no more pieces than balance needs:
 * W2 (32 rows) at 2 threads ran ~7 % slower with 4 pieces per thread.
 */
typedef struct openmp_gemm_plan {
    int64_t p_first, panels; /* the range's panels */
    int64_t blocks, body;    /* row blocks; whole-width ones first */
    int64_t split, piece;    /* pieces per split block, panels per piece */
    int64_t units;
} openmp_gemm_plan;

static void openmp_gemm_plan_make(const mha_gemm_args *a, int nt, openmp_gemm_plan *pl) {
    int64_t p_last;
    pl->blocks = gemm_blocked_grid(a, &pl->p_first, &p_last);
    pl->panels = p_last - pl->p_first + 1;
    pl->body = pl->blocks;
    pl->split = 1;
    pl->piece = pl->panels;
    if (nt > 1) {
        int64_t want = nt;
        if (pl->blocks >= 2 * (int64_t)nt) {
            pl->body = pl->blocks - nt;
        } else {
            pl->body = 0;
            want = openmp_ceil_div(2 * (int64_t)nt, pl->blocks);
        }
        pl->piece = openmp_ceil_div(pl->panels, want < pl->panels ? want : pl->panels);
        pl->split = openmp_ceil_div(pl->panels, pl->piece);
    }
    pl->units = pl->body + (pl->blocks - pl->body) * pl->split;
}

/* Unit u of the plan: one row block against its panels. */
static void openmp_gemm_unit(const mha_gemm_args *a, const openmp_gemm_plan *pl, int64_t u) {
    int64_t block = u, p0 = pl->p_first, p1 = pl->p_first + pl->panels - 1;
    if (u >= pl->body) {
        const int64_t t = u - pl->body;
        block = pl->body + t / pl->split;
        p0 = pl->p_first + (t % pl->split) * pl->piece;
        if (p0 + pl->piece - 1 < p1) p1 = p0 + pl->piece - 1;
    }
    gemm_blocked_rows(a, a->m0 + block * GEMM_MC, p0, p1);
}

static int openmp_gemm(const mha_gemm_args *a) {
    if (!kernel_gemm_args_ok(a) || a->precision != MHA_PRECISION_FLOAT32) return KERNEL_ERR_ARGS;
    if (a->m0 == a->m1 || a->n0 == a->n1) return KERNEL_OK;
    if (a->K == 0) {
        gemm_blocked_k0(a);
        return KERNEL_OK;
    }
    const int nt = openmp_threads(a->num_threads);
    openmp_gemm_plan pl;
    openmp_gemm_plan_make(a, nt, &pl);
    const unsigned fp = openmp_fp_controls();
    /* dynamic: units are big (a block of 96 rows), and a thread slowed by
     * another process should not hold the others up */
#pragma omp parallel num_threads(nt) if (nt > 1 && pl.units > 1)
    {
        const unsigned mine = openmp_fp_enter(fp);
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < pl.units; u++)
            openmp_gemm_unit(a, &pl, u);
        openmp_fp_leave(mine);
    }
    return KERNEL_OK;
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

/* One workspace slice per thread, each what one unit needs. */
static size_t openmp_attention_slice(const mha_attn_args *a) {
    size_t one = fa_workspace_size(a);
    if (one == SIZE_MAX) return SIZE_MAX;
    return (one + 63) & ~(size_t)63;
}

static size_t openmp_attention_workspace_size(const mha_attn_args *a) {
    if (!a) return 0;
    size_t slice = openmp_attention_slice(a);
    size_t nt = (size_t)openmp_threads(a->num_threads);
    if (slice == SIZE_MAX || slice > SIZE_MAX / nt) return SIZE_MAX;
    return nt * slice;
}

/*
 * Query rows per unit: a whole head while batch x heads gives two units per
 * thread (each unit packs its head's K and V, so splitting a head costs a
 * repack); else chunks for about 4 units per thread. Under a causal mask
 * later rows see more keys, so heads are cut into up to 8 units per thread
 * (heaviest first, dynamic) -- still only when batch x heads alone is too
 * few. Chunks are whole query blocks (FA_BR rows).
 */
static int64_t openmp_attention_chunk(const mha_attn_args *a, int nt) {
    const int64_t rows = a->q1 - a->q0;
    const int64_t bh = (a->b1 - a->b0) * (a->h1 - a->h0);
    int64_t n = 1;
    if (nt > 1 && rows > 1) {
        if (bh < 2 * (int64_t)nt) n = openmp_ceil_div(4 * (int64_t)nt, bh);
        if (a->causal && bh < 8 * (int64_t)nt) {
            int64_t c = openmp_ceil_div(8 * (int64_t)nt, bh);
            int64_t blocks = openmp_ceil_div(rows, FA_BR);
            if (c > blocks) c = blocks;
            if (c > n) n = c;
        }
    }
    if (n > rows) n = rows;
    return kernel_round_up(openmp_ceil_div(rows, n), FA_BR);
}

/* Units: (query chunk, b, h) of the range, chunk-major with the last chunk
 * first under a causal mask, each run as its own flash call (it packs its kv
 * head into its thread's slice). A row's result does not depend on the unit
 * it is in, so any thread count gives the same bits. */
static int openmp_attention(const mha_attn_args *a, void *workspace, size_t workspace_size) {
    if (!kernel_attn_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->q0 == a->q1) return KERNEL_OK;
    const size_t slice = openmp_attention_slice(a);
    if (slice == SIZE_MAX) return KERNEL_ERR_ARGS;
    if (!workspace || workspace_size < openmp_attention_workspace_size(a))
        return KERNEL_ERR_WORKSPACE;
    const int nt = openmp_threads(a->num_threads);
    if (nt == 1) return fa_attention_run(a, workspace, slice); /* shares GQA packing too */

    const int64_t nh = a->h1 - a->h0, bh = (a->b1 - a->b0) * nh;
    const int64_t chunk = openmp_attention_chunk(a, nt);
    const int64_t nchunks = openmp_ceil_div(a->q1 - a->q0, chunk);
    const int64_t units = bh * nchunks;
    const unsigned fp = openmp_fp_controls();
    int failed = 0;
    /* dynamic: under a causal mask later chunks see more keys */
#pragma omp parallel num_threads(nt) if (units > 1)
    {
        const unsigned mine = openmp_fp_enter(fp);
        char *ws = (char *)workspace + (size_t)omp_get_thread_num() * slice;
#pragma omp for schedule(dynamic, 1) reduction(| : failed)
        for (int64_t u = 0; u < units; u++) {
            int64_t c = u / bh;
            if (a->causal) c = nchunks - 1 - c;
            mha_attn_args sub = *a;
            sub.b0 = a->b0 + (u % bh) / nh;
            sub.b1 = sub.b0 + 1;
            sub.h0 = a->h0 + (u % bh) % nh;
            sub.h1 = sub.h0 + 1;
            sub.q0 = a->q0 + c * chunk;
            sub.q1 = sub.q0 + chunk < a->q1 ? sub.q0 + chunk : a->q1;
            failed |= fa_attention_run(&sub, ws, slice) != KERNEL_OK;
        }
        openmp_fp_leave(mine);
    }
    return failed ? KERNEL_ERR_ARGS : KERNEL_OK;
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding                                                          */
/* ------------------------------------------------------------------------ */

/* Units are (batch item, head): each rotates its rows alone, so any thread
 * count gives the same bits. Memory-bound and small next to the GEMMs, so a
 * region only when there are units for every thread. */
static int openmp_rotary(const mha_rotary_args *a) {
    if (!kernel_rotary_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->s0 == a->s1) return KERNEL_OK;
    const int nt = openmp_threads(a->num_threads);
    const int64_t nh = a->h1 - a->h0, units = (a->b1 - a->b0) * nh;
    const unsigned fp = openmp_fp_controls();
#pragma omp parallel num_threads(nt) if (nt > 1 && units >= nt)
    {
        const unsigned mine = openmp_fp_enter(fp);
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            const int64_t h = a->h0 + u % nh;
            rotary_rows(a, a->b0 + u / nh, h, h + 1);
        }
        openmp_fp_leave(mine);
    }
    return KERNEL_OK;
}

/* Rows of the shared reference norm (common/kernel_common.h), spread over
 * the team in blocks of 16 rows. */
static int openmp_norm(const mha_norm_args *a) {
    if (!kernel_norm_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->r0 == a->r1 || a->D == 0) return KERNEL_OK;
    const int nt = openmp_threads(a->num_threads);
    const int64_t units = openmp_ceil_div(a->r1 - a->r0, 16);
    const unsigned fp = openmp_fp_controls();
#pragma omp parallel num_threads(nt) if (nt > 1 && units > 1)
    {
        const unsigned mine = openmp_fp_enter(fp);
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            const int64_t r0 = a->r0 + u * 16;
            kernel_norm_rows(a, r0, r0 + 16 < a->r1 ? r0 + 16 : a->r1);
        }
        openmp_fp_leave(mine);
    }
    return KERNEL_OK;
}

/* ------------------------------------------------------------------------ */
/* The variant's kernel set                                                  */
/* ------------------------------------------------------------------------ */

const openmp_kernels OMP_ISA_NAME(openmp_kernels) = {
    .isa = OMP_ISA_STRING,
    .gemm_packed_size = openmp_gemm_packed_size,
    .gemm_pack_b = openmp_gemm_pack_b,
    .gemm = openmp_gemm,
    .attention_workspace_size = openmp_attention_workspace_size,
    .attention = openmp_attention,
    .rotary = openmp_rotary,
    .norm = openmp_norm,
};
