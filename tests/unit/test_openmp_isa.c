/* test_openmp_isa.c -- the openmp plugin (backends/openmp, loaded from
 * MHA_PLUGIN_PATH through the registry) picks its kernel variant at init()
 * from the CPU features the services table reports, never from its own
 * CPUID, and every variant is right and deterministic:
 *  - the choice: every feature -> "avx512"; AVX-512 hidden -> "avx2"; AVX2
 *    and FMA hidden too -> "baseline"; no features -> "baseline"; a
 *    services table too short to hold cpu_features -> "baseline" whatever
 *    lies past it. init() names the variant in its debug log line; the
 *    packed layout follows the state (AVX2: 16-column panels of the avx2
 *    backend's kernel; AVX-512 and baseline: 32).
 *  - each variant this CPU can run: GEMM and attention against the built-in
 *    scalar reference (max |err| <= 1e-5 x max |scalar|) on a few problems
 *    (k past one k-block, tails, bias, GQA, masks, causal with offsets,
 *    softcap, kv_len), bitwise the same for num_threads 1, 2 and 3 and for
 *    ranges split at the plugin's blocks; B packed by each variant's state.
 *  - with denormals flushed on the calling thread (as the host does), the
 *    OpenMP threads flush them too: num_threads 3 gives the bits of 1. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define TEST_X86 1
#endif

#include "registry.h"

/* Sanitizer builds: as in test_backends.c, LSan must not scan the dynamic
 * TLS of the threads the dlopen'ed OpenMP runtime keeps (clang 14 + glibc
 * >= 2.34 crash there); the dlerror() block only TLS holds is suppressed. */
const char *__lsan_default_options(void);
const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void) {
    return "use_tls=0";
}
const char *__lsan_default_suppressions(void) {
    return "leak:_dlerror_run\nleak:_dl_exception_create_format\n";
}

#define CPU_AVX2_SET (MHA_CPU_AVX | MHA_CPU_AVX2 | MHA_CPU_FMA)
#define CPU_AVX512_SET                                                                             \
    (CPU_AVX2_SET | MHA_CPU_AVX512F | MHA_CPU_AVX512DQ | MHA_CPU_AVX512BW | MHA_CPU_AVX512VL)

static registry *REG;
static const mha_plugin *OMP; /* the openmp plugin */
static const mha_plugin *REF; /* the built-in scalar */
static char INIT_LOG[128];    /* the last line init() logged */

static int setup(void **state) {
    (void)state;
    /* ctest sets MHA_PLUGIN_PATH; run by hand, fall back to the build's folder */
    if (!getenv("MHA_PLUGIN_PATH")) setenv("MHA_PLUGIN_PATH", MHA_PLUGIN_BUILD_DIR, 1);
    registry_options o = {0};
    o.use_env = 1;
    mha_error err = {0};
    if (registry_create(NULL, &o, &REG, &err) != MHA_OK) {
        fprintf(stderr, "registry_create: %s\n", err.message);
        return -1;
    }
    REF = REG->entries[0].plugin;
    for (size_t i = 1; i < REG->n_entries; i++)
        if (REG->entries[i].plugin && strcmp(REG->entries[i].plugin->name, "openmp") == 0)
            OMP = REG->entries[i].plugin;
    if (!OMP) {
        fprintf(stderr, "no openmp plugin in MHA_PLUGIN_PATH\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    registry_free(REG);
    return 0;
}

static void init_log(void *ctx, int level, const char *message) {
    (void)ctx, (void)level;
    snprintf(INIT_LOG, sizeof INIT_LOG, "%s", message);
}

/* init() with a services table reporting `features`, truncated to
 * struct_size bytes as a shorter table would be. */
static void *omp_init(uint64_t features, uint32_t struct_size) {
    mha_plugin_services s = tu_plugin_services(features);
    s.struct_size = struct_size;
    s.log = init_log;
    INIT_LOG[0] = '\0';
    void *st = NULL;
    assert_int_equal(OMP->init(&s, &st), 0);
    return st;
}

/* ------------------------------------------------------------------------ */
/* The choice                                                                */
/* ------------------------------------------------------------------------ */

/* The variant the last init() chose, as its log line names it. */
static void assert_isa(const char *isa) {
    char want[64];
    snprintf(want, sizeof want, "openmp: %s kernels", isa);
    assert_string_equal(INIT_LOG, want);
}

/* Bytes of a packed [1, 16] B: one panel of the state's width. */
static size_t panel_bytes(void *st) {
    return OMP->gemm_packed_size(st, MHA_PRECISION_FLOAT32, 1, 16);
}

static void expect_isa(uint64_t features, uint32_t struct_size, const char *isa) {
    void *st = omp_init(features, struct_size);
    assert_isa(isa);
    /* the layout follows the variant: 16-column panels for AVX2, 32 else */
    assert_int_equal(panel_bytes(st), (strcmp(isa, "avx2") == 0 ? 16 : 32) * sizeof(float));
    if (OMP->fini) OMP->fini(st);
}

static void test_choice_follows_features(void **state) {
    (void)state;
    const uint32_t now = sizeof(mha_plugin_services);
    const uint64_t all = ~(uint64_t)0;
    expect_isa(all, now, "avx512");
    expect_isa(CPU_AVX512_SET | MHA_CPU_SSE2, now, "avx512");
    expect_isa(all & ~(MHA_CPU_AVX512F | MHA_CPU_AVX512DQ | MHA_CPU_AVX512BW | MHA_CPU_AVX512VL |
                       MHA_CPU_AVX512BF16),
               now, "avx2");
    expect_isa(all & ~MHA_CPU_AVX512BW, now, "avx2"); /* one AVX-512 part missing is enough */
    expect_isa(all & ~(MHA_CPU_AVX512F | MHA_CPU_AVX2 | MHA_CPU_FMA), now, "baseline");
    expect_isa(all & ~MHA_CPU_FMA, now, "baseline"); /* both variants need FMA */
    expect_isa(0, now, "baseline");                  /* 0 = not told */
    expect_isa(MHA_CPU_SSE2, now, "baseline");
}

/* A services table ending before cpu_features: whatever lies past its
 * struct_size is not read. */
static void test_choice_short_services(void **state) {
    (void)state;
    const uint32_t v10 = (uint32_t)offsetof(mha_plugin_services, cpu_features);
    expect_isa(~(uint64_t)0, v10, "baseline");
    expect_isa(~(uint64_t)0, v10 + 4, "baseline"); /* half the field is not the field */
}

/* ------------------------------------------------------------------------ */
/* Each variant against the reference                                        */
/* ------------------------------------------------------------------------ */

/* The features selecting each variant; a variant is run only where this
 * CPU has them (its choice is tested above everywhere). */
static const struct {
    const char *isa;
    uint64_t features;
} VARIANTS[] = {
    {"avx512", CPU_AVX512_SET | MHA_CPU_SSE2},
    {"avx2", CPU_AVX2_SET | MHA_CPU_SSE2},
    {"baseline", MHA_CPU_SSE2},
};
#define N_VARIANTS (sizeof VARIANTS / sizeof VARIANTS[0])

static int variant_runs_here(size_t v) {
    return (cpu_detect_features() & VARIANTS[v].features) == VARIANTS[v].features;
}

static const int THREADS[] = {1, 2, 3};
#if defined(TEST_UNDER_TSAN)
/* libgomp is not instrumented: TSan would report its own barriers. */
#define N_THREADS 1
#else
#define N_THREADS 3
#endif

/* max |a - b| over n values, NaN if any is NaN. */
static double max_abs_diff(const float *a, const float *b, size_t n) {
    double err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= err)) err = d;
    }
    return err;
}

static double max_abs(const float *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i]));
    return m;
}

/* ---- GEMM ---- */

typedef struct gemm_problem {
    int64_t M, N, K;
    int bias;
} gemm_problem;

static void gemm_run(const mha_plugin *p, void *st, const gemm_problem *g, const float *A,
                     const void *packed, const float *bias, float *C, int64_t m0, int64_t m1,
                     int64_t n0, int64_t n1, int nt) {
    mha_gemm_args a = {0};
    a.struct_size = sizeof a;
    a.M = g->M, a.N = g->N, a.K = g->K;
    a.A = A, a.lda = g->K, a.B_packed = packed, a.bias = bias;
    a.C = C, a.ldc = g->N;
    a.m0 = m0, a.m1 = m1, a.n0 = n0, a.n1 = n1;
    a.num_threads = nt;
    assert_int_equal(p->gemm(st, &a), 0);
}

static void *gemm_pack(const mha_plugin *p, void *st, const gemm_problem *g, const float *B) {
    size_t sz = p->gemm_packed_size(st, MHA_PRECISION_FLOAT32, g->K, g->N);
    assert_true(sz != SIZE_MAX);
    void *packed = NULL;
    assert_int_equal(posix_memalign(&packed, 64, sz ? sz : 1), 0);
    assert_int_equal(p->gemm_pack_b(st, MHA_PRECISION_FLOAT32, g->K, g->N, B, g->N, packed), 0);
    return packed;
}

static void gemm_check(const gemm_problem *g, uint64_t seed) {
    const size_t nc = (size_t)(g->M * g->N);
    float *A = malloc((size_t)(g->M * g->K + 1) * sizeof(float));
    float *B = malloc((size_t)(g->K * g->N + 1) * sizeof(float));
    float *bias = g->bias ? malloc((size_t)(g->N + 1) * sizeof(float)) : NULL;
    tu_fill_random(A, (size_t)(g->M * g->K), seed);
    tu_fill_random(B, (size_t)(g->K * g->N), seed + 1);
    if (bias) tu_fill_random(bias, (size_t)g->N, seed + 2);
    float *ref = malloc((nc + 1) * sizeof(float));
    float *c1 = malloc((nc + 1) * sizeof(float));
    float *c2 = malloc((nc + 1) * sizeof(float));

    void *rp = gemm_pack(REF, NULL, g, B);
    gemm_run(REF, NULL, g, A, rp, bias, ref, 0, g->M, 0, g->N, 1);
    free(rp);
    const double scale = max_abs(ref, nc);

    for (size_t v = 0; v < N_VARIANTS; v++) {
        if (!variant_runs_here(v)) continue;
        void *st = omp_init(VARIANTS[v].features, sizeof(mha_plugin_services));
        assert_isa(VARIANTS[v].isa);
        void *packed = gemm_pack(OMP, st, g, B); /* in this variant's layout */
        for (int t = 0; t < N_THREADS; t++) {
            float *c = t == 0 ? c1 : c2;
            for (size_t i = 0; i < nc; i++)
                c[i] = NAN; /* every element must be written */
            gemm_run(OMP, st, g, A, packed, bias, c, 0, g->M, 0, g->N, THREADS[t]);
            if (t == 0) {
                double err = max_abs_diff(c1, ref, nc);
                if (!(err <= 1e-5 * scale))
                    fail_msg("%s gemm M%lld N%lld K%lld: err %g scale %g", VARIANTS[v].isa,
                             (long long)g->M, (long long)g->N, (long long)g->K, err, scale);
            } else {
                assert_memory_equal(c1, c2, nc * sizeof(float));
            }
        }
        /* ranges cut at the plugin's blocks, one call each: the same bits */
        const int64_t mb = OMP->gemm_m_block, nb = OMP->gemm_n_block;
        for (int64_t m0 = 0; m0 < g->M; m0 += 2 * mb) {
            const int64_t m1 = m0 + 2 * mb < g->M ? m0 + 2 * mb : g->M;
            for (int64_t n0 = 0; n0 < g->N; n0 += nb)
                gemm_run(OMP, st, g, A, packed, bias, c2, m0, m1, n0,
                         n0 + nb < g->N ? n0 + nb : g->N, 1);
        }
        assert_memory_equal(c1, c2, nc * sizeof(float));
        if (OMP->fini) OMP->fini(st);
        free(packed);
    }
    free(A), free(B), free(bias), free(ref), free(c1), free(c2);
}

static void test_gemm_variants(void **state) {
    (void)state;
    static const gemm_problem problems[] = {
        {1, 1, 1, 0},       /* one element */
        {5, 33, 3, 1},      /* short sliver, one column past a panel */
        {37, 100, 257, 1},  /* tails in every direction, K past 256 */
        {100, 70, 513, 0},  /* K past 512 (the AVX-512 k-block) */
        {500, 40, 33, 1},   /* 6 row blocks: whole blocks, then column pieces */
        {13, 200, 64, 0},   /* one row block of a few rows: column pieces only */
        {200, 64, 1100, 1}, /* three k-blocks */
    };
    for (size_t i = 0; i < sizeof problems / sizeof problems[0]; i++)
        gemm_check(&problems[i], 300 + 10 * i);
}

/* ---- attention ---- */

typedef struct attn_problem {
    int64_t B, Hq, Hkv, Sq, Skv, dk, dv;
    int mask, causal, offsets, kv_len;
    float softcap;
} attn_problem;

static void attn_run(const mha_plugin *p, void *st, mha_attn_args *a, float *o, size_t n_o,
                     int nt) {
    for (size_t i = 0; i < n_o; i++)
        o[i] = NAN;
    a->o = o;
    a->num_threads = nt;
    size_t ws = p->attention_workspace_size(st, a);
    assert_true(ws != SIZE_MAX);
    void *w = NULL;
    assert_int_equal(posix_memalign(&w, 64, ws ? ws : 1), 0);
    assert_int_equal(p->attention(st, a, w, ws), 0);
    free(w);
}

static void attn_check(const attn_problem *c, uint64_t seed) {
    const size_t nq = (size_t)(c->B * c->Hq * c->Sq * c->dk);
    const size_t nk = (size_t)(c->B * c->Hkv * c->Skv * c->dk);
    const size_t nv = (size_t)(c->B * c->Hkv * c->Skv * c->dv);
    const size_t n_o = (size_t)(c->B * c->Hq * c->Sq * c->dv);
    const size_t nm = (size_t)(c->B * c->Hq * c->Sq * c->Skv);
    float *q = malloc((nq + 1) * sizeof(float)), *k = malloc((nk + 1) * sizeof(float));
    float *v = malloc((nv + 1) * sizeof(float)), *mask = NULL;
    int64_t *offs = malloc((size_t)c->B * sizeof(int64_t));
    int64_t *kvl = malloc((size_t)c->B * sizeof(int64_t));
    tu_fill_random(q, nq, seed);
    tu_fill_random(k, nk, seed + 1);
    tu_fill_random(v, nv, seed + 2);
    uint64_t rs = seed * 7919 + 3;

    /* [B, H, S, d] layout */
    mha_attn_args a = {0};
    a.struct_size = sizeof a;
    a.B = c->B, a.Hq = c->Hq, a.Hkv = c->Hkv, a.Sq = c->Sq, a.Skv = c->Skv;
    a.dk = c->dk, a.dv = c->dv;
    a.q = q, a.q_sb = c->Hq * c->Sq * c->dk, a.q_sh = c->Sq * c->dk, a.q_ss = c->dk;
    a.k = k, a.k_sb = c->Hkv * c->Skv * c->dk, a.k_sh = c->Skv * c->dk, a.k_ss = c->dk;
    a.v = v, a.v_sb = c->Hkv * c->Skv * c->dv, a.v_sh = c->Skv * c->dv, a.v_ss = c->dv;
    a.o_sb = c->Hq * c->Sq * c->dv, a.o_sh = c->Sq * c->dv, a.o_ss = c->dv;
    a.scale = 2.0f / sqrtf((float)c->dk); /* scores large enough that softmax is not flat */
    a.softcap = c->softcap;
    a.causal = c->causal;
    if (c->mask) { /* [B, H, Sq, Skv] with hidden keys, -inf and the lowest float */
        mask = malloc((nm + 1) * sizeof(float));
        tu_fill_random(mask, nm, seed + 3);
        for (size_t i = 0; i < nm; i++) {
            uint64_t r = tu_rand_u64(&rs) % 12;
            if (r == 0) mask[i] = -INFINITY;
            if (r == 1) mask[i] = -FLT_MAX;
        }
        a.mask = mask;
        a.m_sb = c->Hq * c->Sq * c->Skv, a.m_sh = c->Sq * c->Skv, a.m_sq = c->Skv, a.m_sk = 1;
    }
    for (int64_t b = 0; b < c->B; b++) {
        offs[b] = (int64_t)(tu_rand_u64(&rs) % (uint64_t)(c->Skv + 3)) - 2;
        kvl[b] = (int64_t)(tu_rand_u64(&rs) % (uint64_t)(c->Skv + 1));
    }
    if (c->offsets) a.causal_offset = offs;
    if (c->kv_len) a.kv_len = kvl;
    a.b1 = c->B, a.h1 = c->Hq, a.q1 = c->Sq;

    float *ref = malloc((n_o + 1) * sizeof(float));
    float *o1 = malloc((n_o + 1) * sizeof(float)), *o2 = malloc((n_o + 1) * sizeof(float));
    attn_run(REF, NULL, &a, ref, n_o, 1);
    const double scale = max_abs(ref, n_o);

    for (size_t vi = 0; vi < N_VARIANTS; vi++) {
        if (!variant_runs_here(vi)) continue;
        void *st = omp_init(VARIANTS[vi].features, sizeof(mha_plugin_services));
        assert_isa(VARIANTS[vi].isa);
        for (int t = 0; t < N_THREADS; t++) {
            attn_run(OMP, st, &a, t == 0 ? o1 : o2, n_o, THREADS[t]);
            if (t == 0) {
                double err = max_abs_diff(o1, ref, n_o);
                if (!(err <= 1e-5 * scale))
                    fail_msg("%s attention B%lld Hq%lld Hkv%lld Sq%lld Skv%lld d%lld/%lld: "
                             "err %g scale %g",
                             VARIANTS[vi].isa, (long long)c->B, (long long)c->Hq, (long long)c->Hkv,
                             (long long)c->Sq, (long long)c->Skv, (long long)c->dk,
                             (long long)c->dv, err, scale);
            } else {
                assert_memory_equal(o1, o2, n_o * sizeof(float));
            }
        }
        /* one call per (b, h, 5 query rows): the same bits */
        for (size_t i = 0; i < n_o; i++)
            o2[i] = NAN;
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->Hq; h++)
                for (int64_t i = 0; i < c->Sq; i += 5) {
                    mha_attn_args s = a;
                    s.b0 = b, s.b1 = b + 1, s.h0 = h, s.h1 = h + 1;
                    s.q0 = i, s.q1 = i + 5 < c->Sq ? i + 5 : c->Sq;
                    s.o = o2, s.num_threads = 1;
                    size_t ws = OMP->attention_workspace_size(st, &s);
                    void *w = malloc(ws + 1);
                    assert_int_equal(OMP->attention(st, &s, w, ws), 0);
                    free(w);
                }
        assert_memory_equal(o1, o2, n_o * sizeof(float));
        if (OMP->fini) OMP->fini(st);
    }
    free(q), free(k), free(v), free(mask), free(offs), free(kvl), free(ref), free(o1), free(o2);
}

static void test_attention_variants(void **state) {
    (void)state;
    /* B, Hq, Hkv, Sq, Skv, dk, dv, mask, causal, offsets, kv_len, softcap */
    static const attn_problem problems[] = {
        {3, 4, 2, 33, 47, 64, 64, 1, 0, 0, 0, 0.0f},   /* many heads: whole heads per unit */
        {1, 2, 1, 130, 150, 80, 80, 0, 1, 1, 0, 0.0f}, /* few heads, causal: query chunks */
        {1, 1, 1, 100, 70, 17, 40, 0, 0, 0, 1, 5.0f},  /* one head, kv_len, softcap, dv != dk */
        {2, 3, 3, 1, 200, 128, 128, 1, 0, 0, 0, 0.0f}, /* a decode step: one query row */
    };
    for (size_t i = 0; i < sizeof problems / sizeof problems[0]; i++)
        attn_check(&problems[i], 500 + 10 * i);
}

/* ------------------------------------------------------------------------ */
/* Denormals                                                                 */
/* ------------------------------------------------------------------------ */

/* The host flushes denormals (FTZ/DAZ) on the thread that calls a
 * self-parallel plugin. Products of 1e-30 and 1e-10 are denormal: flushed
 * they are 0, so C is exactly 0 on the calling thread; the OpenMP threads
 * must compute their rows the same way. */
static void test_denormals_flushed_on_every_thread(void **state) {
    (void)state;
#if !defined(TEST_X86) || defined(TEST_UNDER_TSAN)
    skip();
#else
    /* enough row blocks that every thread gets some */
    const gemm_problem g = {4000, 256, 40, 0};
    const size_t nc = (size_t)(g.M * g.N);
    float *A = malloc((size_t)(g.M * g.K) * sizeof(float));
    float *B = malloc((size_t)(g.K * g.N) * sizeof(float));
    float *c1 = malloc(nc * sizeof(float)), *c3 = malloc(nc * sizeof(float));
    for (int64_t i = 0; i < g.M * g.K; i++)
        A[i] = 1e-30f;
    for (int64_t i = 0; i < g.K * g.N; i++)
        B[i] = 1e-10f;
    for (size_t v = 0; v < N_VARIANTS; v++) {
        if (!variant_runs_here(v)) continue;
        void *st = omp_init(VARIANTS[v].features, sizeof(mha_plugin_services));
        void *packed = gemm_pack(OMP, st, &g, B);
        const unsigned saved = _mm_getcsr();
        _mm_setcsr(saved | 0x8040u); /* FTZ | DAZ, as the host sets them */
        gemm_run(OMP, st, &g, A, packed, NULL, c1, 0, g.M, 0, g.N, 1);
        gemm_run(OMP, st, &g, A, packed, NULL, c3, 0, g.M, 0, g.N, 3);
        _mm_setcsr(saved);
        for (size_t i = 0; i < nc; i++)
            assert_true(c1[i] == 0.0f);
        assert_memory_equal(c1, c3, nc * sizeof(float));
        /* and with nothing flushed on the caller, no thread flushes */
        gemm_run(OMP, st, &g, A, packed, NULL, c3, 0, g.M, 0, g.N, 3);
        for (size_t i = 0; i < nc; i++)
            assert_true(c3[i] > 0.0f);
        if (OMP->fini) OMP->fini(st);
        free(packed);
    }
    free(A), free(B), free(c1), free(c3);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choice_follows_features),
        cmocka_unit_test(test_choice_short_services),
        cmocka_unit_test(test_gemm_variants),
        cmocka_unit_test(test_attention_variants),
        cmocka_unit_test(test_denormals_flushed_on_every_thread),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
