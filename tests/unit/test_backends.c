/* test_backends.c -- every backend plugin found in MHA_PLUGIN_PATH (the
 * build's plugin folder, loaded through the registry) against the built-in
 * scalar reference, on randomised shapes:
 *  - attention: head sizes 1, 3, 17, 64, 80, 128; sequence lengths 1, 7,
 *    33, 513; batch 1-5; additive masks with broadcast strides holding -inf
 *    and lowest-float entries and fully masked rows; causal with per-batch
 *    offsets; kv_len; GQA; cross (Sq != Skv); softcap; strided layouts;
 *    ALiBi slopes (key position and relative forms, with causal offsets,
 *    positions given per key as BLOOM counts them).
 *    max |err| <= 1e-5 * max |scalar|, fully masked rows exactly 0.
 *  - rotary embedding: rotate-half and interleaved, partial
 *    rotary, per-batch position offsets, strided layouts; max |err| <=
 *    1e-6 * max |scalar|; positions past the tables and odd rotary_dim
 *    refused.
 *  - heads of at most 256 keys every row sees (the avx512 float32
 *    short-head path) at S 128, 197, 250, d 32 / 64 / 80, GQA, key lengths,
 *    beside a padding mask and causal rows (test_attention_short_heads).
 *  - determinism: any split of the range (b, h, q) gives bitwise the same
 *    output as one call; GEMM splits at the plugin's m/n blocks likewise;
 *    the openmp plugin with num_threads 1 and 2 is bitwise identical.
 *  - GEMM: odd M, N, K (K past one k-block), with and without bias, padded
 *    leading dimensions; every declared epilogue (GELU erf / tanh, ReLU,
 *    SiLU, residual) exact given the backend's own product and within
 *    1.13 |dx| + 8 ulp of the scalar reference (test_gemm_epilogues).
 *  - normalisation (LayerNorm, RMSNorm, with and without the residual add
 *    before it): the scalar reference within 1e-5 of the definition, every
 *    backend bitwise equal to it for any row split and in place
 *    (test_norm).
 *  - argument checks: bad ranges / GQA / small workspace return nonzero.
 *  - bfloat16: every backend declaring it (and the avx512 one
 *    both with VDPBF16PS and with its emulation) against the scalar
 *    bfloat16 reference, element by element within the float32 summation
 *    bound (K + 2) * 2^-24 * (sum_k |a_k b_k| + |bias|) of the rounded
 *    operands; the emulation bitwise equal to VDPBF16PS (GEMM and
 *    attention); an infinite V on a key a causal row does not see, but
 *    that shares a bfloat16 pair with its last key, kept out; rounding to nearest
 *    even, subnormals to zero, NaN kept, overflow to inf; bf16 within 2^-7
 *    relative of float32 and not equal to it. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"

#define MAX_BACKENDS 16

/* Sanitizer builds (clang 14 + glibc >= 2.34): LeakSanitizer crashes while
 * scanning the dynamic TLS of the threads a dlopen'ed OpenMP runtime keeps
 * (the openmp plugin's), a known LSan/glibc DTV-layout bug fixed in later
 * LLVM. Leave TLS out of the leak scan; the one block glibc keeps only in
 * TLS (the dlerror() state) then looks leaked, so suppress exactly that.
 * Without a sanitizer nothing calls these. */
const char *__lsan_default_options(void);
const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void) {
    return "use_tls=0";
}
const char *__lsan_default_suppressions(void) {
    return "leak:_dlerror_run\nleak:_dl_exception_create_format\n";
}

typedef struct backend {
    const char *name;
    const char *path;
    const mha_plugin *p;
    void *state;
} backend;

static registry *REG;
static backend BK[MAX_BACKENDS];
static int NBK;
static const mha_plugin *REF; /* built-in scalar */
static mha_alloc_ctx A;

static mha_plugin_services SVC;

static int setup(void **state) {
    (void)state;
    mha_alloc_ctx_init(&A, NULL);
    /* ctest sets MHA_PLUGIN_PATH; run by hand, fall back to the build's folder */
    if (!getenv("MHA_PLUGIN_PATH")) setenv("MHA_PLUGIN_PATH", MHA_PLUGIN_BUILD_DIR, 1);
    registry_options o = {0};
    o.use_env = 1;
    mha_error err = {0};
    if (registry_create(&A, &o, &REG, &err) != MHA_OK) {
        fprintf(stderr, "registry_create: %s\n", err.message);
        return -1;
    }
    REF = REG->entries[0].plugin;
    SVC = tu_plugin_services(REG->cpu_features); /* the kernels the host would pick */
    for (size_t i = 1; i < REG->n_entries && NBK < MAX_BACKENDS; i++) {
        plugin_entry *e = &REG->entries[i];
        if (!e->usable) continue;
        backend *b = &BK[NBK++];
        b->name = e->name;
        b->path = e->path;
        b->p = e->plugin;
        if (b->p->init && b->p->init(&SVC, &b->state) != 0) {
            fprintf(stderr, "init of %s failed\n", b->name);
            return -1;
        }
    }
    fprintf(stderr, "backends under test:");
    for (int i = 0; i < NBK; i++)
        fprintf(stderr, " %s", BK[i].name);
    fprintf(stderr, "\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < NBK; i++)
        if (BK[i].p->fini) BK[i].p->fini(BK[i].state);
    registry_free(REG);
    return 0;
}

static const backend *find_backend(const char *name) {
    for (int i = 0; i < NBK; i++)
        if (strcmp(BK[i].name, name) == 0) return &BK[i];
    return NULL;
}

/* The build makes these; all must load here (this CPU has AVX-512). */
static void test_expected_backends_present(void **state) {
    (void)state;
    assert_non_null(find_backend("scalar"));
    assert_non_null(find_backend("openmp"));
    uint64_t f = cpu_detect_features();
    if ((f & (MHA_CPU_AVX2 | MHA_CPU_FMA)) == (MHA_CPU_AVX2 | MHA_CPU_FMA))
        assert_non_null(find_backend("avx2"));
    if (f & MHA_CPU_AVX512F) assert_non_null(find_backend("avx512"));
}

/* ------------------------------------------------------------------------ */
/* Attention cases                                                           */
/* ------------------------------------------------------------------------ */

enum {
    MASK_NONE,
    MASK_FULL,
    MASK_BCAST_ROWS,
    MASK_KEYPAD,
    MASK_KEY_STRIDED,
    MASK_KEY_CONST,
    MASK_HUGE /* [B, H, Sq, Skv], odd rows finite values near -3e38 */
};

typedef struct attn_case {
    int64_t B, Hq, Hkv, Sq, Skv, dk, dv;
    int layout_bshd; /* 1: [B, S, H, d] (torch), 0: [B, H, S, d] */
    int mask_kind;
    int causal, use_offsets, use_kv_len;
    float softcap;
    int alibi;     /* 0 none, 1 slope * j, 2 slope * (j - i - offset) */
    int alibi_pos; /* key positions given (BLOOM: counted over attended keys) */
    uint64_t seed;
} attn_case;

typedef struct attn_data {
    mha_attn_args a;
    float *q, *k, *v, *mask, *slopes, *pos;
    int64_t *offs, *kvl;
    size_t n_o;
    int64_t mask_rows; /* rows fully masked on purpose: mask row of (b=0,h=0,i=0) */
} attn_data;

static void strides(int bshd, int64_t H, int64_t S, int64_t d, int64_t *sb, int64_t *sh,
                    int64_t *ss) {
    if (bshd) {
        *sb = S * H * d, *sh = d, *ss = H * d;
    } else {
        *sb = H * S * d, *sh = S * d, *ss = d;
    }
}

static void attn_make(const attn_case *c, attn_data *D) {
    memset(D, 0, sizeof *D);
    mha_attn_args *a = &D->a;
    a->struct_size = sizeof *a;
    a->B = c->B, a->Hq = c->Hq, a->Hkv = c->Hkv, a->Sq = c->Sq, a->Skv = c->Skv;
    a->dk = c->dk, a->dv = c->dv;
    size_t nq = (size_t)(c->B * c->Hq * c->Sq * c->dk);
    size_t nk = (size_t)(c->B * c->Hkv * c->Skv * c->dk);
    size_t nv = (size_t)(c->B * c->Hkv * c->Skv * c->dv);
    D->n_o = (size_t)(c->B * c->Hq * c->Sq * c->dv);
    D->q = malloc((nq + 1) * sizeof(float));
    D->k = malloc((nk + 1) * sizeof(float));
    D->v = malloc((nv + 1) * sizeof(float));
    tu_fill_random(D->q, nq, c->seed * 3 + 1);
    tu_fill_random(D->k, nk, c->seed * 3 + 2);
    tu_fill_random(D->v, nv, c->seed * 3 + 3);
    a->q = D->q, a->k = D->k, a->v = D->v;
    strides(c->layout_bshd, c->Hq, c->Sq, c->dk, &a->q_sb, &a->q_sh, &a->q_ss);
    strides(c->layout_bshd, c->Hkv, c->Skv, c->dk, &a->k_sb, &a->k_sh, &a->k_ss);
    strides(c->layout_bshd, c->Hkv, c->Skv, c->dv, &a->v_sb, &a->v_sh, &a->v_ss);
    strides(c->layout_bshd, c->Hq, c->Sq, c->dv, &a->o_sb, &a->o_sh, &a->o_ss);
    /* scores large enough that softmax is not flat */
    a->scale = 2.0f / sqrtf((float)(c->dk > 0 ? c->dk : 1));
    a->softcap = c->softcap;
    a->causal = c->causal;

    uint64_t rs = c->seed * 7919 + 11;
    if (c->mask_kind != MASK_NONE) {
        size_t nm = (size_t)(c->B * c->Hq * c->Sq * c->Skv);
        D->mask = malloc((nm + 1) * sizeof(float));
        tu_fill_random(D->mask, nm, c->seed * 3 + 4);
        for (size_t i = 0; i < nm; i++) {
            uint64_t r = tu_rand_u64(&rs) % 16;
            if (r == 0)
                D->mask[i] = -INFINITY;
            else if (r == 1)
                D->mask[i] = -FLT_MAX;
        }
        a->mask = D->mask;
        switch (c->mask_kind) {
        case MASK_FULL: /* [B, H, Sq, Skv] */
            a->m_sb = c->Hq * c->Sq * c->Skv, a->m_sh = c->Sq * c->Skv, a->m_sq = c->Skv;
            a->m_sk = 1;
            /* fully masked rows: (b, h, 0) for every b, h */
            for (int64_t b = 0; b < c->B; b++)
                for (int64_t h = 0; h < c->Hq; h++)
                    for (int64_t j = 0; j < c->Skv; j++)
                        D->mask[b * a->m_sb + h * a->m_sh + j] = (j & 1) ? -INFINITY : -FLT_MAX;
            break;
        case MASK_HUGE:
            /* finite but huge negative, rising with the key (each key
             * block raises the row max): the softmax must not scale them
             * into overflow (m * log2(e) is -inf past 2.4e38) */
            a->m_sb = c->Hq * c->Sq * c->Skv, a->m_sh = c->Sq * c->Skv, a->m_sq = c->Skv;
            a->m_sk = 1;
            for (size_t i = 0; i < nm; i++)
                if ((i / (size_t)c->Skv) & 1)
                    D->mask[i] = -3.0e38f + (float)(i % (size_t)c->Skv) * 1e34f;
            break;
        case MASK_BCAST_ROWS: /* [1, 1, Sq, Skv] */
            a->m_sb = 0, a->m_sh = 0, a->m_sq = c->Skv, a->m_sk = 1;
            break;
        case MASK_KEYPAD: /* [B, 1, 1, Skv] */
            a->m_sb = c->Skv, a->m_sh = 0, a->m_sq = 0, a->m_sk = 1;
            break;
        case MASK_KEY_STRIDED: /* [1, 1, Skv, Sq] read transposed */
            a->m_sb = 0, a->m_sh = 0, a->m_sq = 1, a->m_sk = c->Sq;
            break;
        case MASK_KEY_CONST: /* [B, H, Sq, 1] broadcast over keys */
            a->m_sb = c->Hq * c->Sq, a->m_sh = c->Sq, a->m_sq = 1, a->m_sk = 0;
            break;
        }
    }
    if (c->use_offsets) {
        D->offs = malloc((size_t)c->B * sizeof(int64_t));
        for (int64_t b = 0; b < c->B; b++)
            D->offs[b] = (int64_t)(tu_rand_u64(&rs) % (uint64_t)(c->Skv + 3)) - 2;
        a->causal_offset = D->offs;
    }
    if (c->use_kv_len) {
        D->kvl = malloc((size_t)c->B * sizeof(int64_t));
        for (int64_t b = 0; b < c->B; b++)
            D->kvl[b] = (int64_t)(tu_rand_u64(&rs) % (uint64_t)(c->Skv + 2));
        a->kv_len = D->kvl;
    }
    if (c->alibi) {
        /* the geometric slopes of the ALiBi paper, 2^(-8 (h + 1) / Hq) */
        D->slopes = malloc((size_t)c->Hq * sizeof(float));
        for (int64_t h = 0; h < c->Hq; h++)
            D->slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)c->Hq);
        a->alibi_slopes = D->slopes;
        a->alibi_relative = c->alibi == 2;
    }
    if (c->alibi && c->alibi_pos) {
        /* positions among kept keys, one key in four skipped */
        D->pos = malloc((size_t)(c->B * c->Skv + 1) * sizeof(float));
        for (int64_t b = 0; b < c->B; b++) {
            int64_t seen = 0;
            for (int64_t j = 0; j < c->Skv; j++)
                D->pos[b * c->Skv + j] = tu_rand_u64(&rs) % 4 ? (float)seen++ : 0.0f;
        }
        a->alibi_pos = D->pos;
        a->alibi_pos_sb = c->Skv;
    }
    a->b0 = 0, a->b1 = c->B, a->h0 = 0, a->h1 = c->Hq, a->q0 = 0, a->q1 = c->Sq;
    a->num_threads = 1;
}

static void attn_free(attn_data *D) {
    free(D->q), free(D->k), free(D->v), free(D->mask), free(D->offs), free(D->kvl);
    free(D->slopes), free(D->pos);
}

/* Runs one call of plugin p over args a (its range) into o, the workspace
 * filled with the byte fill first (fill < 0: as allocated). */
static int attn_call_filled(const mha_plugin *p, void *st, mha_attn_args *a, float *o, int fill) {
    a->o = o;
    size_t ws = p->attention_workspace_size(st, a);
    void *w = NULL;
    if (posix_memalign(&w, 64, ws ? ws : 1) != 0) return -1;
    if (fill >= 0) memset(w, fill, ws ? ws : 1);
    int rc = p->attention(st, a, w, ws);
    free(w);
    return rc;
}

static int attn_call(const mha_plugin *p, void *st, mha_attn_args *a, float *o) {
    return attn_call_filled(p, st, a, o, -1);
}

static void attn_full(const mha_plugin *p, void *st, attn_data *D, float *o, int nt) {
    mha_attn_args a = D->a;
    a.num_threads = nt;
    for (size_t i = 0; i < D->n_o; i++)
        o[i] = NAN; /* every element must be written */
    assert_int_equal(attn_call(p, st, &a, o), 0);
}

/* One call per query row (every block one row long: the narrowest score
 * tile and the per-row P.V path), all heads of a batch item at once. */
static void attn_rows(const mha_plugin *p, void *st, attn_data *D, float *o) {
    for (size_t i = 0; i < D->n_o; i++)
        o[i] = NAN;
    const mha_attn_args *f = &D->a;
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t i = 0; i < f->Sq; i++) {
            mha_attn_args a = *f;
            a.b0 = b, a.b1 = b + 1, a.h0 = 0, a.h1 = f->Hq, a.q0 = i, a.q1 = i + 1;
            assert_int_equal(attn_call(p, st, &a, o), 0);
        }
}

/* Calls over a random split of (b, h, q) into pieces. */
static void attn_split(const mha_plugin *p, void *st, attn_data *D, float *o, uint64_t seed) {
    uint64_t rs = seed;
    for (size_t i = 0; i < D->n_o; i++)
        o[i] = NAN;
    const mha_attn_args *f = &D->a;
    for (int64_t b = 0; b < f->B; b++) {
        int64_t h = 0;
        while (h < f->Hq) {
            int64_t hn = 1 + (int64_t)(tu_rand_u64(&rs) % (uint64_t)(f->Hq - h));
            int64_t i = 0;
            while (i < f->Sq) {
                int64_t in = 1 + (int64_t)(tu_rand_u64(&rs) % (uint64_t)(f->Sq - i));
                mha_attn_args a = *f;
                a.b0 = b, a.b1 = b + 1, a.h0 = h, a.h1 = h + hn, a.q0 = i, a.q1 = i + in;
                assert_int_equal(attn_call(p, st, &a, o), 0);
                i += in;
            }
            h += hn;
        }
    }
}

static int64_t nonfinite_count(const float *x, size_t n) {
    int64_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) c++;
    return c;
}

/* Checks every backend against the reference on one case. */
static void attn_check_case(const attn_case *c) {
    attn_data D;
    attn_make(c, &D);
    float *ref = malloc((D.n_o + 1) * sizeof(float));
    float *out = malloc((D.n_o + 1) * sizeof(float));
    float *out2 = malloc((D.n_o + 1) * sizeof(float));
    attn_full(REF, NULL, &D, ref, 1);
    assert_int_equal(nonfinite_count(ref, D.n_o), 0);
    double scale = 0.0;
    for (size_t i = 0; i < D.n_o; i++)
        scale = fmax(scale, fabs(ref[i]));

    for (int bi = 0; bi < NBK; bi++) {
        const backend *bk = &BK[bi];
        attn_full(bk->p, bk->state, &D, out, 1);
        double err = 0.0;
        for (size_t i = 0; i < D.n_o; i++) {
            double d = fabs((double)out[i] - (double)ref[i]);
            if (!(d <= err)) err = d; /* NaN propagates */
        }
        if (!(err <= 1e-5 * scale) || getenv("MHA_TEST_VERBOSE")) {
            fprintf(stderr,
                    "%s: B%lld Hq%lld Hkv%lld Sq%lld Skv%lld dk%lld dv%lld mask%d causal%d "
                    "offs%d kvl%d cap%g bshd%d alibi%d/%d: err %g scale %g\n",
                    bk->name, (long long)c->B, (long long)c->Hq, (long long)c->Hkv,
                    (long long)c->Sq, (long long)c->Skv, (long long)c->dk, (long long)c->dv,
                    c->mask_kind, c->causal, c->use_offsets, c->use_kv_len, (double)c->softcap,
                    c->layout_bshd, c->alibi, c->alibi_pos, err, scale);
            if (!(err <= 1e-5 * scale)) fail();
        }
        /* fully masked rows (MASK_FULL puts them at i = 0) are exactly 0 */
        if (c->mask_kind == MASK_FULL)
            for (int64_t b = 0; b < c->B; b++)
                for (int64_t h = 0; h < c->Hq; h++)
                    for (int64_t d = 0; d < c->dv; d++)
                        assert_true(out[b * D.a.o_sb + h * D.a.o_sh + d] == 0.0f);

        /* determinism: a random split gives bitwise the same output */
        attn_split(bk->p, bk->state, &D, out2, c->seed + 77);
        assert_memory_equal(out, out2, D.n_o * sizeof(float));
        /* ... and so does one query row per call */
        attn_rows(bk->p, bk->state, &D, out2);
        assert_memory_equal(out, out2, D.n_o * sizeof(float));

        /* self-parallel: 2 threads give bitwise the same output as 1 */
        if (bk->p->flags & MHA_PLUGIN_SELF_PARALLEL) {
            attn_full(bk->p, bk->state, &D, out2, 2);
            assert_memory_equal(out, out2, D.n_o * sizeof(float));
            attn_full(bk->p, bk->state, &D, out2, 3);
            assert_memory_equal(out, out2, D.n_o * sizeof(float));
        }
    }
    free(ref), free(out), free(out2);
    attn_free(&D);
}

static int64_t pick(uint64_t *rs, const int64_t *v, size_t n) {
    return v[tu_rand_u64(rs) % n];
}

static void test_attention_random(void **state) {
    (void)state;
    static const int64_t heads[] = {1, 3, 17, 64, 80, 128};
    static const int64_t seqs[] = {1, 7, 33};
    uint64_t rs = 12345;
    for (int t = 0; t < 72; t++) {
        attn_case c = {0};
        c.seed = 1000 + (uint64_t)t;
        c.B = 1 + (int64_t)(tu_rand_u64(&rs) % 5);
        c.Hkv = 1 + (int64_t)(tu_rand_u64(&rs) % 3);
        c.Hq = c.Hkv * (1 + (int64_t)(tu_rand_u64(&rs) % 3)); /* GQA when > Hkv */
        c.dk = heads[t % 6];
        c.dv = (t % 4 == 3) ? pick(&rs, heads, 6) : c.dk;
        c.Sq = pick(&rs, seqs, 3);
        c.Skv = (t % 3 == 0) ? pick(&rs, seqs, 3) : c.Sq; /* cross attention */
        c.layout_bshd = (int)(tu_rand_u64(&rs) & 1);
        c.mask_kind = (int)(tu_rand_u64(&rs) % 6);
        c.causal = (t % 5 == 1) || (t % 5 == 2);
        c.use_offsets = c.causal && (t & 1);
        c.use_kv_len = (t % 7 == 3) || (t % 7 == 5);
        c.softcap = (t % 6 == 4) ? 5.0f : 0.0f;
        c.alibi = (t % 8 == 2) ? 1 : (t % 8 == 6) ? 2 : 0;
        c.alibi_pos = c.alibi && (t % 16 >= 8);
        attn_check_case(&c);
    }
}

/* A few long rows: several key blocks, online rescaling across them. */
static void test_attention_long(void **state) {
    (void)state;
    attn_case cs[] = {
        {.B = 1,
         .Hq = 2,
         .Hkv = 1,
         .Sq = 33,
         .Skv = 513,
         .dk = 64,
         .dv = 64,
         .mask_kind = MASK_KEYPAD,
         .use_kv_len = 1,
         .seed = 1},
        {.B = 1,
         .Hq = 1,
         .Hkv = 1,
         .Sq = 513,
         .Skv = 513,
         .dk = 17,
         .dv = 17,
         .causal = 1,
         .use_offsets = 1,
         .seed = 2},
        {.B = 2,
         .Hq = 2,
         .Hkv = 2,
         .Sq = 7,
         .Skv = 513,
         .dk = 128,
         .dv = 80,
         .softcap = 3.0f,
         .mask_kind = MASK_FULL,
         .layout_bshd = 1,
         .seed = 3},
        /* huge finite mask values on every other row, over 4 key blocks */
        {.B = 1,
         .Hq = 2,
         .Hkv = 1,
         .Sq = 9,
         .Skv = 200,
         .dk = 64,
         .dv = 64,
         .mask_kind = MASK_HUGE,
         .seed = 4},
        /* ALiBi over many key blocks: relative with KV-cache offsets, and
         * BLOOM's key-position form behind a padding mask */
        {.B = 2,
         .Hq = 4,
         .Hkv = 2,
         .Sq = 33,
         .Skv = 513,
         .dk = 64,
         .dv = 64,
         .causal = 1,
         .use_offsets = 1,
         .alibi = 2,
         .seed = 4},
        {.B = 1,
         .Hq = 3,
         .Hkv = 3,
         .Sq = 129,
         .Skv = 129,
         .dk = 32,
         .dv = 32,
         .causal = 1,
         .mask_kind = MASK_KEYPAD,
         .alibi = 1,
         .seed = 5},
        {.B = 2,
         .Hq = 6,
         .Hkv = 6,
         .Sq = 70,
         .Skv = 70,
         .dk = 64,
         .dv = 64,
         .causal = 1,
         .alibi = 1,
         .alibi_pos = 1,
         .seed = 6},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        attn_check_case(&cs[i]);
}

/* Edge shapes: no keys at all, every key hidden, d = 1. */
static void test_attention_edges(void **state) {
    (void)state;
    attn_case cs[] = {
        {.B = 2,
         .Hq = 2,
         .Hkv = 2,
         .Sq = 5,
         .Skv = 3,
         .dk = 1,
         .dv = 1,
         .causal = 1,
         .use_offsets = 1,
         .seed = 9},
        {.B = 3,
         .Hq = 4,
         .Hkv = 1,
         .Sq = 7,
         .Skv = 7,
         .dk = 3,
         .dv = 3,
         .use_kv_len = 1,
         .seed = 10},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        attn_check_case(&cs[i]);

    /* kv_len 0 for every batch: all rows are zero, never NaN */
    attn_case c = {.B = 2, .Hq = 2, .Hkv = 1, .Sq = 4, .Skv = 9, .dk = 17, .dv = 17, .seed = 5};
    for (int bi = 0; bi < NBK; bi++) {
        attn_data D;
        attn_make(&c, &D);
        int64_t zero[2] = {0, 0};
        D.a.kv_len = zero;
        float *o = malloc(D.n_o * sizeof(float));
        attn_full(BK[bi].p, BK[bi].state, &D, o, 1);
        for (size_t i = 0; i < D.n_o; i++)
            assert_true(o[i] == 0.0f);
        free(o);
        attn_free(&D);
    }
}

/* NaN and +inf scores are never taken for masked keys: a row whose scores
 * hold NaN (a NaN query, key or mask value) or +inf (a +inf mask value)
 * is NaN in every backend, as the reference's exp(s - max) makes it; rows
 * that never see the poisoned key stay finite, and a fully masked row
 * stays 0. Key counts cross vector and key-block edges. */
static void nan_case_check(const attn_case *c, void (*poison)(attn_data *D),
                           const unsigned char *want_nan_row) {
    const backend *all[MAX_BACKENDS + 1];
    all[0] = NULL; /* the reference */
    for (int i = 0; i < NBK; i++)
        all[i + 1] = &BK[i];
    const size_t rows = (size_t)(c->B * c->Hq * c->Sq);
    for (int bi = 0; bi <= NBK; bi++) {
        attn_data D;
        attn_make(c, &D);
        poison(&D);
        float *o = malloc(D.n_o * sizeof(float));
        if (all[bi])
            attn_full(all[bi]->p, all[bi]->state, &D, o, 1);
        else
            attn_full(REF, NULL, &D, o, 1);
        for (size_t r = 0; r < rows; r++) {
            /* [B, H, S, dv] layout: row r is the dv floats at r * dv */
            for (int64_t d = 0; d < c->dv; d++) {
                float x = o[r * (size_t)c->dv + (size_t)d];
                if (want_nan_row[r] ? !isnan(x) : !isfinite(x))
                    fail_msg("%s: row %zu element %lld is %g, wanted %s",
                             all[bi] ? all[bi]->name : "scalar", r, (long long)d, (double)x,
                             want_nan_row[r] ? "NaN" : "finite");
            }
        }
        free(o);
        attn_free(&D);
    }
}

enum { NAN_B = 2, NAN_H = 2, NAN_SQ = 5, NAN_SKV = 83, NAN_D = 19 };
static void poison_query(attn_data *D) { /* all of q[0, 1, 3, :] */
    for (int64_t d = 0; d < NAN_D; d++)
        D->q[((0 * NAN_H + 1) * NAN_SQ + 3) * NAN_D + d] = NAN;
}
static void poison_key(attn_data *D) { /* one element of k[1, 0, 70, :] */
    D->k[((1 * 1 + 0) * NAN_SKV + 70) * NAN_D + 4] = NAN;
}
static void poison_mask(attn_data *D) { /* mask[0, 0, 2, 66] NaN, mask[1, 1, 4, 5] +inf */
    D->mask[((0 * NAN_H + 0) * NAN_SQ + 2) * NAN_SKV + 66] = NAN;
    D->mask[((1 * NAN_H + 1) * NAN_SQ + 4) * NAN_SKV + 5] = INFINITY;
}

static void test_attention_nan_rows(void **state) {
    (void)state;
    attn_case c = {.B = NAN_B,
                   .Hq = NAN_H,
                   .Hkv = 1,
                   .Sq = NAN_SQ,
                   .Skv = NAN_SKV,
                   .dk = NAN_D,
                   .dv = NAN_D,
                   .seed = 21};
    unsigned char want[NAN_B * NAN_H * NAN_SQ];
    size_t rows = sizeof want;

    /* a NaN query row: that row only, with and without softcap */
    memset(want, 0, rows);
    want[(0 * NAN_H + 1) * NAN_SQ + 3] = 1;
    nan_case_check(&c, poison_query, want);
    c.softcap = 3.0f;
    nan_case_check(&c, poison_query, want);
    c.softcap = 0.0f;

    /* a NaN in one key: every row of that batch item (both heads read kv
     * head 0); causal rows that stop before key 70 stay finite */
    memset(want, 1, rows);
    memset(want, 0, (size_t)(NAN_H * NAN_SQ));
    nan_case_check(&c, poison_key, want);
    c.causal = 1;
    c.use_offsets = 0;
    memset(want, 0, rows); /* causal, top-left: row i sees keys 0..i < 70 */
    nan_case_check(&c, poison_key, want);
    c.causal = 0;

    /* NaN and +inf mask values poison their rows; the [B, H, Sq, Skv] mask
     * also masks row (b, h, 0) fully, which stays finite (0) */
    c.mask_kind = MASK_FULL;
    memset(want, 0, rows);
    want[(0 * NAN_H + 0) * NAN_SQ + 2] = 1;
    want[(1 * NAN_H + 1) * NAN_SQ + 4] = 1;
    nan_case_check(&c, poison_mask, want);
}

/* Bad arguments are refused (nonzero), never crash. */
static void test_attention_bad_args(void **state) {
    (void)state;
    attn_case c = {.B = 2, .Hq = 3, .Hkv = 1, .Sq = 4, .Skv = 4, .dk = 8, .dv = 8, .seed = 6};
    attn_data D;
    attn_make(&c, &D);
    float *o = malloc(D.n_o * sizeof(float));
    for (int bi = -1; bi < NBK; bi++) {
        const mha_plugin *p = bi < 0 ? REF : BK[bi].p;
        void *st = bi < 0 ? NULL : BK[bi].state;
        mha_attn_args a = D.a;
        a.o = o;
        size_t ws = p->attention_workspace_size(st, &a);
        void *w = malloc(ws + 64);
        a.h1 = 4; /* past Hq */
        assert_int_not_equal(p->attention(st, &a, w, ws), 0);
        a = D.a, a.o = o, a.Hkv = 2; /* 3 q heads cannot share 2 kv heads */
        assert_int_not_equal(p->attention(st, &a, w, ws), 0);
        a = D.a, a.o = o, a.struct_size = 8;
        assert_int_not_equal(p->attention(st, &a, w, ws), 0);
        a = D.a, a.o = o;
        if (ws > 0) assert_int_not_equal(p->attention(st, &a, w, ws - 1), 0);
        free(w);
    }
    free(o);
    attn_free(&D);
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding                                                          */
/* ------------------------------------------------------------------------ */

typedef struct rot_case {
    int64_t B, H, S, d, rotary_dim;
    int kind, layout_bshd, use_offsets;
    uint64_t seed;
} rot_case;

typedef struct rot_data {
    mha_rotary_args a;
    float *x0;  /* the input, [B, H, S, d] in the case's layout */
    float *tab; /* cos then sin, [n_pos, half] each */
    int64_t *offs;
    size_t n_x;
} rot_data;

static void rot_make(const rot_case *c, rot_data *D) {
    memset(D, 0, sizeof *D);
    mha_rotary_args *a = &D->a;
    a->struct_size = sizeof *a;
    a->B = c->B, a->H = c->H, a->S = c->S, a->d = c->d;
    D->n_x = (size_t)(c->B * c->H * c->S * c->d);
    D->x0 = malloc((D->n_x + 1) * sizeof(float));
    tu_fill_random(D->x0, D->n_x, c->seed);
    strides(c->layout_bshd, c->H, c->S, c->d, &a->x_sb, &a->x_sh, &a->x_ss);
    a->kind = c->kind;
    a->rotary_dim = c->rotary_dim;
    uint64_t rs = c->seed * 13 + 5;
    int64_t max_off = 0;
    if (c->use_offsets) {
        D->offs = malloc((size_t)c->B * sizeof(int64_t));
        for (int64_t b = 0; b < c->B; b++) {
            D->offs[b] = (int64_t)(tu_rand_u64(&rs) % 40);
            if (D->offs[b] > max_off) max_off = D->offs[b];
        }
        a->pos_offset = D->offs;
    }
    /* tables as a model makes them: theta 10000, angle p / theta^(2t / rd) */
    const int64_t half = c->rotary_dim / 2;
    a->n_pos = c->S + max_off;
    D->tab = malloc((size_t)(2 * a->n_pos * half + 1) * sizeof(float));
    for (int64_t p = 0; p < a->n_pos; p++)
        for (int64_t t = 0; t < half; t++) {
            double ang = (double)p * pow(10000.0, -2.0 * (double)t / (double)c->rotary_dim);
            D->tab[p * half + t] = (float)cos(ang);
            D->tab[(a->n_pos + p) * half + t] = (float)sin(ang);
        }
    a->cos = D->tab;
    a->sin = D->tab + a->n_pos * half;
    a->b1 = c->B, a->h1 = c->H, a->s1 = c->S;
    a->num_threads = 1;
}

/* One rotary call of plugin p over args a (its range) on x. */
static int rot_call(const mha_plugin *p, void *st, const mha_rotary_args *a0, float *x, int nt) {
    mha_rotary_args a = *a0;
    a.x = x;
    a.num_threads = nt;
    return p->rotary(st, &a);
}

static void rot_check_case(const rot_case *c) {
    rot_data D;
    rot_make(c, &D);
    const size_t bytes = (D.n_x + 1) * sizeof(float);
    float *ref = malloc(bytes), *out = malloc(bytes), *out2 = malloc(bytes);
    memcpy(ref, D.x0, bytes);
    assert_int_equal(rot_call(REF, NULL, &D.a, ref, 1), 0);
    double scale = 0.0, moved = 0.0;
    for (size_t i = 0; i < D.n_x; i++) {
        scale = fmax(scale, fabs(ref[i]));
        moved = fmax(moved, fabs(ref[i] - D.x0[i]));
    }
    assert_true(moved > 0.0); /* something turned */
    /* dims from rotary_dim on are untouched */
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t t = 0; t < c->S; t++)
                for (int64_t e = c->rotary_dim; e < c->d; e++) {
                    int64_t o = b * D.a.x_sb + h * D.a.x_sh + t * D.a.x_ss + e;
                    assert_true(ref[o] == D.x0[o]);
                }
    for (int bi = 0; bi < NBK; bi++) {
        const backend *bk = &BK[bi];
        assert_non_null(bk->p->rotary); /* every in-tree backend has its own */
        memcpy(out, D.x0, bytes);
        assert_int_equal(rot_call(bk->p, bk->state, &D.a, out, 1), 0);
        double err = 0.0;
        for (size_t i = 0; i < D.n_x; i++) {
            double d = fabs((double)out[i] - (double)ref[i]);
            if (!(d <= err)) err = d;
        }
        if (!(err <= 1e-6 * scale) || getenv("MHA_TEST_VERBOSE")) {
            fprintf(stderr, "%s rotary B%lld H%lld S%lld d%lld rd%lld kind%d offs%d: err %g\n",
                    bk->name, (long long)c->B, (long long)c->H, (long long)c->S, (long long)c->d,
                    (long long)c->rotary_dim, c->kind, c->use_offsets, err);
            if (!(err <= 1e-6 * scale)) fail();
        }
        /* any split of (b, h, s): bitwise the same */
        uint64_t rs = c->seed + 99;
        memcpy(out2, D.x0, bytes);
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->H;) {
                int64_t hn = 1 + (int64_t)(tu_rand_u64(&rs) % (uint64_t)(c->H - h));
                for (int64_t t = 0; t < c->S;) {
                    int64_t tn = 1 + (int64_t)(tu_rand_u64(&rs) % (uint64_t)(c->S - t));
                    mha_rotary_args a = D.a;
                    a.b0 = b, a.b1 = b + 1, a.h0 = h, a.h1 = h + hn, a.s0 = t, a.s1 = t + tn;
                    assert_int_equal(rot_call(bk->p, bk->state, &a, out2, 1), 0);
                    t += tn;
                }
                h += hn;
            }
        assert_memory_equal(out, out2, D.n_x * sizeof(float));
        if (bk->p->flags & MHA_PLUGIN_SELF_PARALLEL)
            for (int nt = 2; nt <= 3; nt++) {
                memcpy(out2, D.x0, bytes);
                assert_int_equal(rot_call(bk->p, bk->state, &D.a, out2, nt), 0);
                assert_memory_equal(out, out2, D.n_x * sizeof(float));
            }
    }
    free(ref), free(out), free(out2);
    free(D.x0), free(D.tab), free(D.offs);
}

static void test_rotary(void **state) {
    (void)state;
    static const rot_case cs[] = {
        {.B = 2, .H = 3, .S = 7, .d = 64, .rotary_dim = 64, .kind = MHA_ROTARY_HALF, .seed = 1},
        {.B = 1,
         .H = 2,
         .S = 33,
         .d = 64,
         .rotary_dim = 64,
         .kind = MHA_ROTARY_INTERLEAVED,
         .layout_bshd = 1,
         .seed = 2},
        /* partial rotary: Pythia (a quarter), GPT-J (rotary_dim 64 of 256) */
        {.B = 3,
         .H = 4,
         .S = 9,
         .d = 80,
         .rotary_dim = 20,
         .kind = MHA_ROTARY_HALF,
         .use_offsets = 1,
         .seed = 3},
        {.B = 2,
         .H = 2,
         .S = 17,
         .d = 256,
         .rotary_dim = 64,
         .kind = MHA_ROTARY_INTERLEAVED,
         .use_offsets = 1,
         .layout_bshd = 1,
         .seed = 4},
        /* odd sizes: half of 3 pairs, one row */
        {.B = 1,
         .H = 1,
         .S = 1,
         .d = 7,
         .rotary_dim = 6,
         .kind = MHA_ROTARY_HALF,
         .use_offsets = 1,
         .seed = 5},
        {.B = 4,
         .H = 5,
         .S = 65,
         .d = 128,
         .rotary_dim = 128,
         .kind = MHA_ROTARY_HALF,
         .use_offsets = 1,
         .seed = 6},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        rot_check_case(&cs[i]);
}

/* Bad rotary arguments are refused (nonzero): odd or too wide rotary_dim,
 * an unknown kind, positions past the tables, a range past H. */
static void test_rotary_bad_args(void **state) {
    (void)state;
    rot_case c = {.B = 2,
                  .H = 2,
                  .S = 5,
                  .d = 8,
                  .rotary_dim = 8,
                  .kind = MHA_ROTARY_HALF,
                  .use_offsets = 1,
                  .seed = 7};
    rot_data D;
    rot_make(&c, &D);
    for (int bi = -1; bi < NBK; bi++) {
        const mha_plugin *p = bi < 0 ? REF : BK[bi].p;
        void *st = bi < 0 ? NULL : BK[bi].state;
        mha_rotary_args a = D.a;
        assert_int_equal(rot_call(p, st, &a, D.x0, 1), 0);
        a.rotary_dim = 7;
        assert_int_not_equal(rot_call(p, st, &a, D.x0, 1), 0);
        a = D.a, a.rotary_dim = 10;
        assert_int_not_equal(rot_call(p, st, &a, D.x0, 1), 0);
        a = D.a, a.kind = 3;
        assert_int_not_equal(rot_call(p, st, &a, D.x0, 1), 0);
        a = D.a, a.n_pos = D.a.n_pos - 1; /* the last row of some item falls off */
        int64_t big = 0;
        for (int64_t b = 0; b < c.B; b++)
            if (D.offs[b] > big) big = D.offs[b];
        a.n_pos = c.S + big - 1;
        assert_int_not_equal(rot_call(p, st, &a, D.x0, 1), 0);
        a = D.a, a.h1 = 3;
        assert_int_not_equal(rot_call(p, st, &a, D.x0, 1), 0);
        a = D.a, a.struct_size = 8;
        assert_int_not_equal(rot_call(p, st, &a, D.x0, 1), 0);
    }
    free(D.x0), free(D.tab), free(D.offs);
}

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct gemm_data {
    int64_t M, N, K, lda, ldc;
    float *A, *B, *bias;
} gemm_data;

/* B packed in `precision` with state st's layout (ABI 2.0: the plugin's
 * own entry, with its state). */
static void *pack_prec_for(const mha_plugin *p, void *st, const gemm_data *g, int precision) {
    size_t sz = p->gemm_packed_size(st, precision, g->K, g->N);
    assert_true(sz != SIZE_MAX);
    void *packed = NULL;
    assert_int_equal(posix_memalign(&packed, 64, sz ? sz : 1), 0);
    assert_int_equal(p->gemm_pack_b(st, precision, g->K, g->N, g->B, g->N, packed), 0);
    return packed;
}

static void *pack_for(const mha_plugin *p, void *st, const gemm_data *g) {
    return pack_prec_for(p, st, g, MHA_PRECISION_FLOAT32);
}

/* C = act(A.B + bias) + residual (ldr = ldc) over the range, one call. */
static void gemm_call_full(const mha_plugin *p, void *st, const gemm_data *g, const void *packed,
                           float *C, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int nt,
                           int precision, int act, const float *residual) {
    mha_gemm_args a = {0};
    a.struct_size = sizeof a;
    a.M = g->M, a.N = g->N, a.K = g->K;
    a.A = g->A, a.lda = g->lda, a.B_packed = packed, a.bias = g->bias;
    a.C = C, a.ldc = g->ldc;
    a.m0 = m0, a.m1 = m1, a.n0 = n0, a.n1 = n1;
    a.num_threads = nt;
    a.precision = precision;
    a.activation = act;
    a.residual = residual, a.ldr = g->ldc;
    assert_int_equal(p->gemm(st, &a), 0);
}

static void gemm_call_prec(const mha_plugin *p, void *st, const gemm_data *g, const void *packed,
                           float *C, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int nt,
                           int precision) {
    gemm_call_full(p, st, g, packed, C, m0, m1, n0, n1, nt, precision, MHA_ACT_NONE, NULL);
}

static void gemm_call(const mha_plugin *p, void *st, const gemm_data *g, const void *packed,
                      float *C, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int nt) {
    gemm_call_prec(p, st, g, packed, C, m0, m1, n0, n1, nt, MHA_PRECISION_FLOAT32);
}

/* Split points at multiples of `block`, random. */
static int64_t next_cut(uint64_t *rs, int64_t at, int64_t end, int64_t block) {
    int64_t left = (end - at + block - 1) / block;
    int64_t steps = 1 + (int64_t)(tu_rand_u64(rs) % (uint64_t)left);
    int64_t to = at + steps * block;
    return to > end ? end : to;
}

/* The whole of C in tiles cut at random multiples of the plugin's blocks. */
static void gemm_split_call(const mha_plugin *p, void *st, const gemm_data *g, const void *packed,
                            float *C, uint64_t *rs, int precision) {
    for (int64_t m0 = 0; m0 < g->M;) {
        const int64_t m1 = next_cut(rs, m0, g->M, p->gemm_m_block);
        for (int64_t n0 = 0; n0 < g->N;) {
            const int64_t n1 = next_cut(rs, n0, g->N, p->gemm_n_block);
            gemm_call_prec(p, st, g, packed, C, m0, m1, n0, n1, 1, precision);
            n0 = n1;
        }
        m0 = m1;
    }
}

/* Random A [M, K] (lda K + 3), B [K, N], bias [N] (or none), C's leading
 * dimension N + 5 (its padding must survive). */
static gemm_data gemm_make(int64_t M, int64_t N, int64_t K, int with_bias, uint64_t seed) {
    gemm_data g = {.M = M, .N = N, .K = K, .lda = K + 3, .ldc = N + 5};
    g.A = malloc((size_t)(M * g.lda + 1) * sizeof(float));
    g.B = malloc((size_t)(K * N + 1) * sizeof(float));
    g.bias = with_bias ? malloc((size_t)(N + 1) * sizeof(float)) : NULL;
    tu_fill_random(g.A, (size_t)(M * g.lda), seed);
    tu_fill_random(g.B, (size_t)(K * N), seed + 1);
    if (g.bias) tu_fill_random(g.bias, (size_t)N, seed + 2);
    return g;
}

static void gemm_check(int64_t M, int64_t N, int64_t K, int with_bias, uint64_t seed) {
    gemm_data g = gemm_make(M, N, K, with_bias, seed);
    size_t nc = (size_t)(M * g.ldc);
    float *ref = calloc(nc + 1, sizeof(float));
    float *c1 = calloc(nc + 1, sizeof(float));
    float *c2 = calloc(nc + 1, sizeof(float));

    void *rp = pack_for(REF, NULL, &g);
    gemm_call(REF, NULL, &g, rp, ref, 0, M, 0, N, 1);
    free(rp);
    /* the reference itself is the plain loop, bit for bit (it sums 4 x 4
     * elements side by side, each over k ascending in double) */
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)g.A[m * g.lda + k] * (double)g.B[k * N + n];
            if (g.bias) acc += (double)g.bias[n];
            const float want = (float)acc;
            assert_memory_equal(&ref[m * g.ldc + n], &want, sizeof want);
        }
    double scale = 0.0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++)
            scale = fmax(scale, fabs(ref[m * g.ldc + n]));

    uint64_t rs = seed * 31 + 7;
    for (int bi = 0; bi < NBK; bi++) {
        const backend *bk = &BK[bi];
        void *packed = pack_for(bk->p, bk->state, &g);
        for (size_t i = 0; i < nc; i++)
            c1[i] = c2[i] = -7.0f; /* padding must survive */
        gemm_call(bk->p, bk->state, &g, packed, c1, 0, M, 0, N, 1);
        double err = 0.0;
        for (int64_t m = 0; m < M; m++) {
            for (int64_t n = 0; n < N; n++) {
                double d = fabs((double)c1[m * g.ldc + n] - (double)ref[m * g.ldc + n]);
                if (!(d <= err)) err = d;
            }
            for (int64_t n = N; n < g.ldc; n++)
                assert_true(c1[m * g.ldc + n] == -7.0f);
        }
        if (!(err <= 1e-5 * scale) || getenv("MHA_TEST_VERBOSE")) {
            fprintf(stderr, "%s gemm M%lld N%lld K%lld bias%d: err %g scale %g\n", bk->name,
                    (long long)M, (long long)N, (long long)K, with_bias, err, scale);
            if (!(err <= 1e-5 * scale)) fail();
        }
        /* every tile split at the plugin's blocks: bitwise identical */
        for (int rep = 0; rep < 3; rep++) {
            gemm_split_call(bk->p, bk->state, &g, packed, c2, &rs, MHA_PRECISION_FLOAT32);
            assert_memory_equal(c1, c2, nc * sizeof(float));
        }
        if (bk->p->flags & MHA_PLUGIN_SELF_PARALLEL) {
            for (int nt = 2; nt <= 3; nt++) {
                memset(c2, 0, nc * sizeof(float));
                for (size_t i = 0; i < nc; i++)
                    c2[i] = -7.0f;
                gemm_call(bk->p, bk->state, &g, packed, c2, 0, M, 0, N, nt);
                assert_memory_equal(c1, c2, nc * sizeof(float));
            }
        }
        free(packed);
    }
    free(g.A), free(g.B), free(g.bias), free(ref), free(c1), free(c2);
}

/* M, N, K of the GEMM tests: odd sizes, K past one k-block (512) and odd
 * (bfloat16 pads the last pair). */
static const int64_t GEMM_DIMS[][3] = {
    {1, 1, 1},     {1, 37, 5},     {13, 1, 7},    {5, 17, 3},    {12, 32, 64},
    {25, 49, 301}, {37, 100, 257}, {64, 80, 128}, {7, 33, 513},  {100, 3, 17},
    {3, 200, 1},   {6, 16, 256},   {7, 33, 1025}, {97, 64, 768}, {26, 70, 1601},
};
#define GEMM_NDIMS (sizeof GEMM_DIMS / sizeof GEMM_DIMS[0])

static void test_gemm_odd_sizes(void **state) {
    (void)state;
    for (size_t i = 0; i < GEMM_NDIMS; i++)
        gemm_check(GEMM_DIMS[i][0], GEMM_DIMS[i][1], GEMM_DIMS[i][2], (int)(i & 1), 100 + i);
}

static void gemm_bf16_check(int64_t M, int64_t N, int64_t K, int with_bias, uint64_t seed);

/* The same sizes in bfloat16, every backend that serves it against the
 * scalar bfloat16 reference. */
static void test_gemm_bf16(void **state) {
    (void)state;
    for (size_t i = 0; i < GEMM_NDIMS; i++) {
        const int64_t *d = GEMM_DIMS[i];
        gemm_bf16_check(d[0], d[1], d[2], (int)(i & 1), 500 + i);
    }
}

/* K == 0: C = bias (or 0). Empty ranges touch nothing. Bad ranges fail. */
static void test_gemm_edges(void **state) {
    (void)state;
    float bias[3] = {1.0f, -2.0f, 3.0f};
    for (int bi = -1; bi < NBK; bi++) {
        const mha_plugin *p = bi < 0 ? REF : BK[bi].p;
        void *st = bi < 0 ? NULL : BK[bi].state;
        float C[6];
        for (int i = 0; i < 6; i++)
            C[i] = 99.0f;
        mha_gemm_args a = {.struct_size = sizeof a,
                           .M = 2,
                           .N = 3,
                           .K = 0,
                           .bias = bias,
                           .C = C,
                           .ldc = 3,
                           .m0 = 0,
                           .m1 = 2,
                           .n0 = 0,
                           .n1 = 3,
                           .num_threads = 1};
        assert_int_equal(p->gemm(st, &a), 0);
        for (int i = 0; i < 6; i++)
            assert_true(C[i] == bias[i % 3]);
        a.m0 = 1, a.m1 = 1;
        assert_int_equal(p->gemm(st, &a), 0);
        a.m0 = 0, a.m1 = 3; /* past M */
        assert_int_not_equal(p->gemm(st, &a), 0);
        a.m1 = 2, a.ldc = 2; /* ldc < N */
        assert_int_not_equal(p->gemm(st, &a), 0);
    }
}

/* ---- GEMM epilogues (ABI 2.0) ---- */

/* C = act(A.B + bias) + residual with one backend, float32. */
static void gemm_call_epilogue(const mha_plugin *p, void *st, const gemm_data *g,
                               const void *packed, float *C, int act, const float *residual,
                               int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    gemm_call_full(p, st, g, packed, C, m0, m1, n0, n1, 1, MHA_PRECISION_FLOAT32, act, residual);
}

/* The scalar reference's epilogue on given x [M, ldc] (a K = 0 product with
 * bias = x, row by row): what a backend must give from its own x. */
static void epilogue_on(const gemm_data *g, const float *x, const float *r, int act, float *out) {
    for (int64_t m = 0; m < g->M; m++) {
        gemm_data row = {.M = 1, .N = g->N, .K = 0, .lda = 1, .ldc = g->ldc};
        row.bias = (float *)(x + m * g->ldc);
        gemm_call_epilogue(REF, NULL, &row, NULL, out + m * g->ldc, act, r ? r + m * g->ldc : NULL,
                           0, 1, 0, g->N);
    }
}

/*
 * Every backend and every epilogue it declares, against the scalar
 * reference. With x the product plus bias (x_b the backend's, x_r the
 * reference's, |x_b - x_r| <= 1e-5 scale as test_gemm_odd_sizes checks):
 *   - the backend's epilogue is exact given its x: bitwise the reference's
 *     epilogue code run on x_b (one shared float formula, plugin.h);
 *   - so against the reference: |y_b - y_r| <= 1.13 |x_b - x_r| + 8 ulp,
 *     1.13 bounding |act'| (GELU's slope peaks at 1.129, SiLU's at 1.100,
 *     ReLU's is 1) and 8 ulp of max(|y|, |x|, |r|) covering the roundings
 *     of the activation and of the residual add;
 *   - bitwise the same for any split at the plugin's blocks.
 */
static void gemm_epilogue_check(int64_t M, int64_t N, int64_t K, uint64_t seed) {
    gemm_data g = gemm_make(M, N, K, 1, seed);
    const size_t nc = (size_t)(M * g.ldc);
    float *r = calloc(nc + 1, sizeof(float)), *xr = calloc(nc + 1, sizeof(float));
    float *yr = calloc(nc + 1, sizeof(float)), *xb = calloc(nc + 1, sizeof(float));
    float *yb = calloc(nc + 1, sizeof(float)), *ye = calloc(nc + 1, sizeof(float));
    float *ys = calloc(nc + 1, sizeof(float));
    tu_fill_random(r, nc, seed + 9);
    for (size_t i = 0; i < nc; i++)
        r[i] *= 3.0f; /* x around +-3 reaches every part of the activations */
    void *rp = pack_for(REF, NULL, &g);
    gemm_call(REF, NULL, &g, rp, xr, 0, M, 0, N, 1);
    uint64_t rs = seed * 17 + 3;
    int checked = 0;
    for (int bi = 0; bi < NBK; bi++) {
        const backend *bk = &BK[bi];
        void *packed = pack_for(bk->p, bk->state, &g);
        gemm_call(bk->p, bk->state, &g, packed, xb, 0, M, 0, N, 1);
        for (int act = MHA_ACT_NONE; act < MHA_ACT_COUNT; act++)
            for (int res = 0; res < 2; res++) {
                if (!registry_plugin_epilogue(bk->p, act, res)) continue;
                const float *rr = res ? r : NULL;
                gemm_call_epilogue(REF, NULL, &g, rp, yr, act, rr, 0, M, 0, N);
                gemm_call_epilogue(bk->p, bk->state, &g, packed, yb, act, rr, 0, M, 0, N);
                epilogue_on(&g, xb, rr, act, ye);
                for (int64_t m = 0; m < M; m++)
                    for (int64_t n = 0; n < N; n++) {
                        const int64_t i = m * g.ldc + n;
                        if (memcmp(&yb[i], &ye[i], sizeof(float)) != 0)
                            fail_msg("%s act %d residual %d: (%lld, %lld) is %.9g, its own x "
                                     "gives %.9g",
                                     bk->name, act, res, (long long)m, (long long)n, yb[i], ye[i]);
                        const double big =
                            fmax(fmax(fabs(yr[i]), fabs(xr[i])), rr ? fabs(r[i]) : 0);
                        const double bound = 1.13 * fabs((double)xb[i] - (double)xr[i]) +
                                             8.0 * ldexp(1.0, -24) * big;
                        if (!(fabs((double)yb[i] - (double)yr[i]) <= bound))
                            fail_msg("%s act %d residual %d: (%lld, %lld) %.9g vs scalar %.9g "
                                     "(bound %.3g)",
                                     bk->name, act, res, (long long)m, (long long)n, yb[i], yr[i],
                                     bound);
                    }
                /* split at the blocks */
                if (!(bk->p->flags & MHA_PLUGIN_SELF_PARALLEL)) {
                    for (int64_t m0 = 0; m0 < M;) {
                        const int64_t m1 = next_cut(&rs, m0, M, bk->p->gemm_m_block);
                        for (int64_t n0 = 0; n0 < N;) {
                            const int64_t n1 = next_cut(&rs, n0, N, bk->p->gemm_n_block);
                            gemm_call_epilogue(bk->p, bk->state, &g, packed, ys, act, rr, m0, m1,
                                               n0, n1);
                            n0 = n1;
                        }
                        m0 = m1;
                    }
                    for (int64_t m = 0; m < M; m++)
                        assert_memory_equal(ys + m * g.ldc, yb + m * g.ldc,
                                            (size_t)N * sizeof(float));
                }
                checked++;
            }
        free(packed);
    }
    assert_true(checked >= NBK); /* at least "none" on every backend */
    free(rp), free(r), free(xr), free(yr), free(xb), free(yb), free(ye), free(ys);
    free(g.A), free(g.B), free(g.bias);
}

static void test_gemm_epilogues(void **state) {
    (void)state;
    /* every in-tree backend declares every epilogue */
    for (int bi = 0; bi < NBK; bi++)
        if (strcmp(BK[bi].name, "scalar") == 0 || strcmp(BK[bi].name, "avx2") == 0 ||
            strcmp(BK[bi].name, "avx512") == 0 || strcmp(BK[bi].name, "openmp") == 0)
            for (int act = MHA_ACT_GELU_ERF; act < MHA_ACT_COUNT; act++)
                assert_true(registry_plugin_epilogue(BK[bi].p, act, 1));
    assert_true(registry_plugin_epilogue(REF, MHA_ACT_SILU, 1));
    assert_false(registry_plugin_epilogue(REF, MHA_ACT_COUNT, 0));
    mha_plugin none = *REF;
    none.epilogues = 0;
    assert_true(registry_plugin_epilogue(&none, MHA_ACT_NONE, 0));
    assert_false(registry_plugin_epilogue(&none, MHA_ACT_RELU, 0));
    assert_false(registry_plugin_epilogue(&none, MHA_ACT_NONE, 1));
    for (size_t i = 0; i < GEMM_NDIMS; i += 2)
        gemm_epilogue_check(GEMM_DIMS[i][0], GEMM_DIMS[i][1], GEMM_DIMS[i][2], 900 + i);
}

/* ---- normalisation (MHA_OP_NORM) ---- */

static mha_norm_args norm_make(int kind, int64_t rows, int64_t D, const float *x, float *y,
                               const float *gamma, const float *beta) {
    mha_norm_args a = {.struct_size = sizeof a,
                       .kind = kind,
                       .rows = rows,
                       .D = D,
                       .x = x,
                       .ldx = D + 3,
                       .y = y,
                       .ldy = D + 3,
                       .gamma = gamma,
                       .beta = beta,
                       .eps = 1e-5f,
                       .r0 = 0,
                       .r1 = rows,
                       .num_threads = 1};
    return a;
}

/*
 * Every backend declaring MHA_OP_NORM against the scalar reference, which
 * is checked against the definition in double (|y - def| <= 1e-5 (1 +
 * |def|)): LayerNorm and RMSNorm, with and without gamma / beta and the
 * residual added first (rounded to float, as the graph's Add), rows of
 * 1..1025 floats with an offset of 100 (LayerNorm must not lose it), padded
 * rows. The in-tree backends share the reference's code: bitwise equal,
 * for any split of the rows, num_threads 3, and in place (y = x). Bad
 * arguments are refused.
 */
static void test_norm(void **state) {
    (void)state;
    static const int64_t dims[][2] = {{1, 1}, {3, 7}, {33, 64}, {100, 384}, {5, 1025}};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int64_t rows = dims[di][0], D = dims[di][1], ld = D + 3;
        const size_t n = (size_t)(rows * ld);
        float *x = malloc((n + 1) * sizeof(float)), *ref = calloc(n + 1, sizeof(float));
        float *y = calloc(n + 1, sizeof(float)), *g = malloc((size_t)(D + 1) * sizeof(float));
        float *b = malloc((size_t)(D + 1) * sizeof(float));
        tu_fill_random(x, n, 60 + di);
        for (size_t i = 0; i < n; i++)
            x[i] += 100.0f;
        tu_fill_random(g, (size_t)D, 70 + di);
        tu_fill_random(b, (size_t)D, 80 + di);
        float *res = malloc((n + 1) * sizeof(float)), *s = malloc((n + 1) * sizeof(float));
        tu_fill_random(res, n, 90 + di);
        for (int kind = MHA_NORM_LAYER; kind <= MHA_NORM_RMS; kind++)
            for (int affine = 0; affine < 4; affine++) { /* bit 0: gamma, beta; bit 1: residual */
                const float *rr = (affine & 2) ? res : NULL;
                for (size_t i = 0; i < n; i++)
                    s[i] = rr ? x[i] + rr[i] : x[i]; /* the sum, rounded as the Add does */
                mha_norm_args a =
                    norm_make(kind, rows, D, x, ref, affine & 1 ? g : NULL, affine & 1 ? b : NULL);
                a.residual = rr, a.ldr = ld;
                assert_int_equal(REF->norm(NULL, &a), 0);
                for (int64_t r = 0; r < rows; r++) {
                    double mu = 0.0, var = 0.0;
                    for (int64_t i = 0; kind == MHA_NORM_LAYER && i < D; i++)
                        mu += s[r * ld + i] / (double)D;
                    for (int64_t i = 0; i < D; i++)
                        var += (s[r * ld + i] - mu) * (s[r * ld + i] - mu) / (double)D;
                    for (int64_t i = 0; i < D; i++) {
                        double want = (s[r * ld + i] - mu) / sqrt(var + 1e-5);
                        if (affine & 1) want = want * g[i] + b[i];
                        if (!(fabs(ref[r * ld + i] - want) <= 1e-5 * (1.0 + fabs(want))))
                            fail_msg("scalar norm kind %d D %lld: %.9g, want %.9g", kind,
                                     (long long)D, ref[r * ld + i], want);
                    }
                }
                for (int bi = 0; bi < NBK; bi++) {
                    const backend *bk = &BK[bi];
                    if (!registry_plugin_norm(bk->p)) continue;
                    uint64_t rs = 11 + di;
                    for (int64_t r0 = 0; r0 < rows;) { /* random splits */
                        a = norm_make(kind, rows, D, x, y, affine & 1 ? g : NULL,
                                      affine & 1 ? b : NULL);
                        a.residual = rr, a.ldr = ld;
                        a.r0 = r0;
                        a.r1 = next_cut(&rs, r0, rows, 1);
                        assert_int_equal(bk->p->norm(bk->state, &a), 0);
                        r0 = a.r1;
                    }
                    for (int64_t r = 0; r < rows; r++)
                        assert_memory_equal(y + r * ld, ref + r * ld, (size_t)D * sizeof(float));
                    /* in place, and (self-parallel) three threads */
                    memcpy(y, x, n * sizeof(float));
                    a = norm_make(kind, rows, D, y, y, affine & 1 ? g : NULL,
                                  affine & 1 ? b : NULL);
                    a.residual = rr, a.ldr = ld;
                    a.num_threads = (bk->p->flags & MHA_PLUGIN_SELF_PARALLEL) ? 3 : 1;
                    assert_int_equal(bk->p->norm(bk->state, &a), 0);
                    for (int64_t r = 0; r < rows; r++)
                        assert_memory_equal(y + r * ld, ref + r * ld, (size_t)D * sizeof(float));
                    /* refused: unknown kind, negative eps, rows past the end */
                    a = norm_make(kind, rows, D, x, y, NULL, NULL);
                    a.kind = 0;
                    assert_int_not_equal(bk->p->norm(bk->state, &a), 0);
                    a.kind = kind, a.eps = -1.0f;
                    assert_int_not_equal(bk->p->norm(bk->state, &a), 0);
                    a.eps = 1e-5f, a.r1 = rows + 1;
                    assert_int_not_equal(bk->p->norm(bk->state, &a), 0);
                }
            }
        free(x), free(ref), free(y), free(g), free(b), free(res), free(s);
    }
    /* every in-tree backend declares it */
    for (int bi = 0; bi < NBK; bi++)
        assert_non_null(registry_plugin_norm(BK[bi].p));
}

/* ---- bfloat16 ---- */

/* bfloat16 packing of a backend that serves it. */
static void *pack_bf16_for(const mha_plugin *p, void *st, const gemm_data *g) {
    return pack_prec_for(p, st, g, MHA_PRECISION_BFLOAT16);
}

/* The bfloat16 backends under test: those the registry says serve it, and
 * the avx512 one a second time initialised without AVX512-BF16 (its
 * emulation). */
typedef struct bf16_backend {
    const char *label;
    const mha_plugin *p;
    void *state;
    int own_state; /* fini it */
} bf16_backend;

static int bf16_backends(bf16_backend *out, int cap) {
    int n = 0;
    for (int i = 0; i < NBK && n < cap; i++) {
        if (!registry_plugin_serves(BK[i].p, MHA_PRECISION_BFLOAT16)) continue;
        out[n++] = (bf16_backend){BK[i].name, BK[i].p, BK[i].state, 0};
        if (strcmp(BK[i].name, "avx512") == 0 && n < cap) {
            mha_plugin_services svc = tu_plugin_services(REG->cpu_features & ~MHA_CPU_AVX512BF16);
            bf16_backend *e = &out[n++];
            *e = (bf16_backend){"avx512 (emulated bf16)", BK[i].p, NULL, 1};
            if (BK[i].p->init) assert_int_equal(BK[i].p->init(&svc, &e->state), 0);
        }
    }
    return n;
}

static void bf16_backends_free(bf16_backend *b, int n) {
    for (int i = 0; i < n; i++)
        if (b[i].own_state && b[i].p->fini) b[i].p->fini(b[i].state);
}

/* The rounding as the test states it, apart from the code under test: the
 * nearest bfloat16 by comparing the two neighbours (ties: even mantissa). */
static double bf16_expect(float x) {
    if (x != x) return x;
    if (fabsf(x) < FLT_MIN) return 0.0;
    int e;
    frexp((double)x, &e);                 /* |x| in [2^(e-1), 2^e) */
    const double ulp = ldexp(1.0, e - 8); /* 8 significant bits */
    const double lo = floor((double)x / ulp) * ulp, hi = lo + ulp;
    const double dl = (double)x - lo, dh = hi - (double)x;
    double r = dl < dh ? lo : dh < dl ? hi : (fmod(lo / ulp, 2.0) == 0.0 ? lo : hi);
    return fabs(r) > (double)FLT_MAX ? copysign(INFINITY, r) : r;
}

static void gemm_bf16_check(int64_t M, int64_t N, int64_t K, int with_bias, uint64_t seed) {
    gemm_data g = gemm_make(M, N, K, with_bias, seed);
    const size_t nc = (size_t)(M * g.ldc);
    float *ref = calloc(nc + 1, sizeof(float)), *f32 = calloc(nc + 1, sizeof(float));
    float *c1 = calloc(nc + 1, sizeof(float)), *c2 = calloc(nc + 1, sizeof(float));
    double *bound = calloc((size_t)(M * N) + 1, sizeof(double));

    /* the references: scalar bfloat16 and scalar float32 */
    void *rp = pack_bf16_for(REF, NULL, &g);
    gemm_call_prec(REF, NULL, &g, rp, ref, 0, M, 0, N, 1, MHA_PRECISION_BFLOAT16);
    free(rp);
    rp = pack_for(REF, NULL, &g);
    gemm_call(REF, NULL, &g, rp, f32, 0, M, 0, N, 1);
    free(rp);

    /* per element: the float32 summation bound over the rounded operands,
     * and the reference against bf16's own error from float32 */
    const double u = ldexp(1.0, -24);
    double max_rel = 0.0;
    int64_t differ = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = g.bias ? fabs((double)g.bias[n]) : 0.0, s32 = s;
            for (int64_t k = 0; k < K; k++) {
                s += fabs(bf16_expect(g.A[m * g.lda + k]) * bf16_expect(g.B[k * N + n]));
                s32 += fabs((double)g.A[m * g.lda + k] * (double)g.B[k * N + n]);
            }
            bound[m * N + n] = (double)(K + 2) * u * s;
            const double r = ref[m * g.ldc + n], f = f32[m * g.ldc + n];
            if (r != f) differ++;
            /* each operand off by <= 2^-8 relative (8 significant bits):
             * |error| <= (2^-7 + 2^-16) sum |a b|, plus float32 roundings */
            max_rel = fmax(max_rel, fabs(r - f) / s32);
        }
    assert_true(max_rel <= ldexp(1.0, -7) * 1.01);
    if (K >= 4) assert_true(differ > 0); /* bfloat16 is not float32 */

    bf16_backend bb[MAX_BACKENDS + 1];
    const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
    uint64_t rs = seed * 17 + 3;
    for (int bi = 0; bi < nb; bi++) {
        const bf16_backend *bk = &bb[bi];
        void *packed = pack_bf16_for(bk->p, bk->state, &g);
        for (size_t i = 0; i < nc; i++)
            c1[i] = c2[i] = -7.0f;
        gemm_call_prec(bk->p, bk->state, &g, packed, c1, 0, M, 0, N, 1, MHA_PRECISION_BFLOAT16);
        double worst = 0.0; /* error / bound */
        for (int64_t m = 0; m < M; m++) {
            for (int64_t n = 0; n < N; n++) {
                const double d = fabs((double)c1[m * g.ldc + n] - (double)ref[m * g.ldc + n]);
                const double q = d / (bound[m * N + n] + 1e-30);
                if (!(q <= worst)) worst = q;
            }
            for (int64_t n = N; n < g.ldc; n++)
                assert_true(c1[m * g.ldc + n] == -7.0f);
        }
        if (!(worst <= 1.0) || getenv("MHA_TEST_VERBOSE")) {
            fprintf(stderr, "%s bf16 gemm M%lld N%lld K%lld bias%d: error/bound %g\n", bk->label,
                    (long long)M, (long long)N, (long long)K, with_bias, worst);
            if (!(worst <= 1.0)) fail();
        }
        /* any split at the plugin's blocks: bitwise the same */
        gemm_split_call(bk->p, bk->state, &g, packed, c2, &rs, MHA_PRECISION_BFLOAT16);
        assert_memory_equal(c1, c2, nc * sizeof(float));
        /* the emulation computes what VDPBF16PS computes, bit for bit */
        if (bi > 0 && bk->p == bb[bi - 1].p) {
            gemm_call_prec(bb[bi - 1].p, bb[bi - 1].state, &g, packed, c2, 0, M, 0, N, 1,
                           MHA_PRECISION_BFLOAT16);
            assert_memory_equal(c1, c2, nc * sizeof(float));
        }
        free(packed);
    }
    bf16_backends_free(bb, nb);
    free(g.A), free(g.B), free(g.bias), free(ref), free(f32), free(c1), free(c2), free(bound);
}

/* The bfloat16 GEMM's epilogues: on every bfloat16 backend (the avx512
 * emulation too) and every activation it declares, with and without a
 * residual, the output is bitwise the scalar reference's epilogue code run
 * on the backend's own bfloat16 product (the avx512 driver takes GELU (erf)
 * through its vector span, as the float32 one), and any split at the
 * plugin's blocks gives the same bits. Sizes: many-row blocks, a column
 * range not a multiple of the span's 64, a K past one k-block. */
static void test_gemm_bf16_epilogues(void **state) {
    (void)state;
    static const int64_t dims[][3] = {{97, 100, 257}, {26, 70, 1601}};
    bf16_backend bb[MAX_BACKENDS + 1];
    const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        const int64_t M = dims[d][0], N = dims[d][1], K = dims[d][2];
        gemm_data g = gemm_make(M, N, K, 1, 950 + d);
        const size_t nc = (size_t)(M * g.ldc);
        float *r = calloc(nc + 1, sizeof(float)), *x = calloc(nc + 1, sizeof(float));
        float *y = calloc(nc + 1, sizeof(float)), *ye = calloc(nc + 1, sizeof(float));
        float *ys = calloc(nc + 1, sizeof(float));
        tu_fill_random(r, nc, 960 + d);
        uint64_t rs = 970 + d;
        for (int bi = 0; bi < nb; bi++) {
            void *packed = pack_bf16_for(bb[bi].p, bb[bi].state, &g);
            gemm_call_prec(bb[bi].p, bb[bi].state, &g, packed, x, 0, M, 0, N, 1,
                           MHA_PRECISION_BFLOAT16);
            for (int act = MHA_ACT_NONE; act < MHA_ACT_COUNT; act++)
                for (int res = 0; res < 2; res++) {
                    if (!registry_plugin_epilogue(bb[bi].p, act, res)) continue;
                    const float *rr = res ? r : NULL;
                    gemm_call_full(bb[bi].p, bb[bi].state, &g, packed, y, 0, M, 0, N, 1,
                                   MHA_PRECISION_BFLOAT16, act, rr);
                    epilogue_on(&g, x, rr, act, ye);
                    for (int64_t m = 0; m < M; m++)
                        if (memcmp(y + m * g.ldc, ye + m * g.ldc, (size_t)N * sizeof(float)))
                            fail_msg("%s bf16 gemm M%lld K%lld act %d residual %d: row %lld "
                                     "is not the reference epilogue of its own product",
                                     bb[bi].label, (long long)M, (long long)K, act, res,
                                     (long long)m);
                    for (int64_t m0 = 0; m0 < M;) {
                        const int64_t m1 = next_cut(&rs, m0, M, bb[bi].p->gemm_m_block);
                        for (int64_t n0 = 0; n0 < N;) {
                            const int64_t n1 = next_cut(&rs, n0, N, bb[bi].p->gemm_n_block);
                            gemm_call_full(bb[bi].p, bb[bi].state, &g, packed, ys, m0, m1, n0, n1,
                                           1, MHA_PRECISION_BFLOAT16, act, rr);
                            n0 = n1;
                        }
                        m0 = m1;
                    }
                    for (int64_t m = 0; m < M; m++)
                        assert_memory_equal(ys + m * g.ldc, y + m * g.ldc,
                                            (size_t)N * sizeof(float));
                }
            free(packed);
        }
        free(r), free(x), free(y), free(ye), free(ys);
        free(g.A), free(g.B), free(g.bias);
    }
    bf16_backends_free(bb, nb);
}

/* Rounding through each backend's own packing: C = x * 1 with K = 1 is x
 * rounded to bfloat16 (the product by 1 is exact). */
static void test_bf16_rounding(void **state) {
    (void)state;
    const float xs[] = {
        1.0f + 0x1p-8f,            /* tie between 1 and 1 + 2^-7: even is 1 */
        1.0f + 3 * 0x1p-8f,        /* tie: even is 1 + 2^-6 */
        1.0f + 0x1p-8f + 0x1p-20f, /* above the tie */
        -3.0f,
        1e-40f,
        -1e-40f, /* subnormals: signed zero */
        FLT_MAX, /* past the largest bfloat16: inf */
        NAN,
        0.1f,
        -1234.567f,
    };
    const int nx = (int)(sizeof xs / sizeof xs[0]);
    float one = 1.0f;
    bf16_backend bb[MAX_BACKENDS + 2];
    bb[0] = (bf16_backend){"scalar (built-in)", REF, NULL, 0};
    const int nb = 1 + bf16_backends(bb + 1, MAX_BACKENDS + 1);
    for (int bi = 0; bi < nb; bi++) {
        for (int i = 0; i < nx; i++) {
            float x = xs[i], c = -7.0f;
            gemm_data g = {.M = 1, .N = 1, .K = 1, .lda = 1, .ldc = 1, .A = &x, .B = &one};
            void *packed = pack_bf16_for(bb[bi].p, bb[bi].state, &g);
            gemm_call_prec(bb[bi].p, bb[bi].state, &g, packed, &c, 0, 1, 0, 1, 1,
                           MHA_PRECISION_BFLOAT16);
            free(packed);
            const double want = bf16_expect(x);
            if (want != want) {
                assert_true(c != c);
                continue;
            }
            if ((double)c != want || !signbit(c) != !signbit(want)) {
                fprintf(stderr, "%s: bf16(%a) = %a, want %a\n", bb[bi].label, (double)x, (double)c,
                        want);
                fail();
            }
        }
    }
    bf16_backends_free(bb + 1, nb - 1);
}

/* The same values where a backend rounds whole vectors of A (a row of K =
 * 70: two vectors of 16 pairs, then 3 pairs one by one): row m holds x at
 * column k_m (even and odd columns, every lane, the vectors and the tail)
 * and zeros elsewhere, B is the identity, so C[m, k_m] = bf16(x) exactly
 * (the other columns of a row holding inf or NaN are NaN, not checked). */
static void test_bf16_rounding_rows(void **state) {
    (void)state;
    const float xs[] = {1.0f + 0x1p-8f,
                        1.0f + 3 * 0x1p-8f,
                        1.0f + 0x1p-8f + 0x1p-20f,
                        -3.0f,
                        1e-40f,
                        -1e-40f,
                        FLT_MAX,
                        -FLT_MAX,
                        NAN,
                        0.1f,
                        -1234.567f,
                        0x1.fffffep-127f};
    const int64_t nx = (int64_t)(sizeof xs / sizeof xs[0]), K = 70, M = 70;
    float *a = calloc((size_t)(M * K), sizeof(float)), *b = calloc((size_t)(K * K), sizeof(float));
    float *c_out = calloc((size_t)(M * K), sizeof(float));
    for (int64_t k = 0; k < K; k++)
        b[k * K + k] = 1.0f;
    for (int64_t m = 0; m < M; m++)
        a[m * K + (m * 11) % K] = xs[m % nx];
    gemm_data g = {.M = M, .N = K, .K = K, .lda = K, .ldc = K, .A = a, .B = b};
    bf16_backend bb[MAX_BACKENDS + 2];
    bb[0] = (bf16_backend){"scalar (built-in)", REF, NULL, 0};
    const int nb = 1 + bf16_backends(bb + 1, MAX_BACKENDS + 1);
    for (int bi = 0; bi < nb; bi++) {
        void *packed = pack_bf16_for(bb[bi].p, bb[bi].state, &g);
        gemm_call_prec(bb[bi].p, bb[bi].state, &g, packed, c_out, 0, M, 0, K, 1,
                       MHA_PRECISION_BFLOAT16);
        free(packed);
        for (int64_t m = 0; m < M; m++) {
            const float x = xs[m % nx], c = c_out[m * K + (m * 11) % K];
            const double want = bf16_expect(x);
            if (want != want ? c == c : (double)c != want || !signbit(c) != !signbit(want)) {
                fprintf(stderr, "%s: row %lld: bf16(%a) = %a, want %a\n", bb[bi].label,
                        (long long)m, (double)x, (double)c, want);
                fail();
            }
        }
    }
    bf16_backends_free(bb + 1, nb - 1);
    free(a), free(b), free(c_out);
}

/* Attention in bfloat16 on one case: every bfloat16 backend against the
 * scalar bfloat16 reference. Both round q, k, v and p to bfloat16, but p at
 * different points (the reference after the row's final max, the flash
 * kernels after a running max), each within 2^-8 of the exact p: the
 * outputs differ by at most 2^-7 max|v| (plus the float32 error the float32
 * test allows). bfloat16 must differ from float32 and be split-invariant. */
/* edit (or NULL) changes the data first; with huge logits (edit_big) the
 * rounding of q and k alone moves them by ~1, so bfloat16 and float32 are
 * no longer within 2^-6 max|v| of each other and that check is skipped. */
static void attn_bf16_case_with(const attn_case *c, void (*edit)(attn_data *), int edit_big) {
    attn_data D;
    attn_make(c, &D);
    if (edit) edit(&D);
    float *ref = malloc((D.n_o + 1) * sizeof(float)), *f32 = malloc((D.n_o + 1) * sizeof(float));
    float *out = malloc((D.n_o + 1) * sizeof(float)), *out2 = malloc((D.n_o + 1) * sizeof(float));
    attn_full(REF, NULL, &D, f32, 1);
    D.a.precision = MHA_PRECISION_BFLOAT16;
    attn_full(REF, NULL, &D, ref, 1);
    double scale = 0.0, vmax = 0.0, diff32 = 0.0;
    for (size_t i = 0; i < D.n_o; i++) {
        scale = fmax(scale, fabs(ref[i]));
        diff32 = fmax(diff32, fabs((double)ref[i] - (double)f32[i]));
    }
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t g = 0; g < c->Hkv; g++)
            for (int64_t j = 0; j < c->Skv; j++)
                for (int64_t d = 0; d < c->dv; d++)
                    vmax = fmax(vmax, fabs(D.v[b * D.a.v_sb + g * D.a.v_sh + j * D.a.v_ss + d]));
    assert_true(diff32 > 0.0 && (edit_big || diff32 <= ldexp(1.0, -6) * vmax));
    const double tol = ldexp(1.0, -7) * vmax + 1e-5 * scale;

    bf16_backend bb[MAX_BACKENDS + 1];
    const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
    float *prev = malloc((D.n_o + 1) * sizeof(float)); /* the previous backend's output */
    for (int bi = 0; bi < nb; bi++) {
        attn_full(bb[bi].p, bb[bi].state, &D, out, 1);
        /* the emulation of VDPBF16PS gives the instruction's bits */
        if (bi > 0 && bb[bi].own_state && bb[bi - 1].p == bb[bi].p)
            assert_memory_equal(out, prev, D.n_o * sizeof(float));
        memcpy(prev, out, D.n_o * sizeof(float));
        double err = 0.0, from32 = 0.0;
        for (size_t i = 0; i < D.n_o; i++) {
            const double d = fabs((double)out[i] - (double)ref[i]);
            if (!(d <= err)) err = d;
            from32 = fmax(from32, fabs((double)out[i] - (double)f32[i]));
        }
        if (!(err <= tol) || getenv("MHA_TEST_VERBOSE")) {
            fprintf(stderr, "%s bf16 attention Sq%lld Skv%lld dk%lld: err %g tol %g (f32 %g)\n",
                    bb[bi].label, (long long)c->Sq, (long long)c->Skv, (long long)c->dk, err, tol,
                    from32);
            if (!(err <= tol)) fail();
        }
        assert_true(from32 > 0.0); /* the precision was honoured */
        attn_split(bb[bi].p, bb[bi].state, &D, out2, c->seed + 5);
        assert_memory_equal(out, out2, D.n_o * sizeof(float));
    }
    bf16_backends_free(bb, nb);
    free(ref), free(f32), free(out), free(out2), free(prev);
    attn_free(&D);
}

static void attn_bf16_case(const attn_case *c) {
    attn_bf16_case_with(c, NULL, 0);
}

static void test_attention_bf16(void **state) {
    (void)state;
    /* B Hq Hkv Sq Skv dk dv, bshd, mask, causal offsets kv_len, softcap, alibi pos, seed:
     * GQA; long cross rows with causal offsets and key padding; ALiBi with
     * fully masked rows in [B, S, H, d] */
    const attn_case cs[] = {
        {2, 4, 2, 33, 33, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 71},
        {1, 2, 2, 7, 513, 80, 17, 0, MASK_KEYPAD, 1, 1, 0, 0.0f, 0, 0, 72},
        {3, 3, 1, 130, 200, 128, 128, 1, MASK_FULL, 0, 0, 1, 0.0f, 2, 0, 73},
        /* causal S 300, GQA: blocks of 128 keys (avx512) scored in two
         * 64-key pieces, the diagonal in either piece, a last block of 44 */
        {1, 2, 1, 300, 300, 64, 64, 0, MASK_NONE, 1, 0, 0, 0.0f, 0, 0, 77},
        /* an odd d: the pairs of K and the Q block packed straight from
         * their rows (fa_bf20.h) end on a pair with no odd element in a
         * tile short of 16 pairs; 40 rows and 91 keys end on rows paired
         * one by one, V on an odd key and a part vector */
        {1, 2, 1, 40, 91, 45, 45, 1, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 94},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        attn_bf16_case(&cs[i]);
}

/* Keys of the third 128-key block and past scaled by 4 (or 64): every
 * row's max jumps there by far more than the lazy max's slack (2^8 in base
 * 2), so rows change their reference max after their first block, in the
 * fused score tiles' fallback (avx512) and in the per-row path. Without the
 * move the factor is wrong (x 4); without the slack test in the fused tile
 * p overflows (x 64: logits ~150 above the first block's max). */
static void attn_edit_keys_by(attn_data *D, float by) {
    const mha_attn_args *a = &D->a;
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t g = 0; g < a->Hkv; g++)
            for (int64_t j = 256; j < a->Skv; j++)
                for (int64_t d = 0; d < a->dk; d++)
                    D->k[b * a->k_sb + g * a->k_sh + j * a->k_ss + d] *= by;
}
static void attn_edit_late_keys(attn_data *D) {
    attn_edit_keys_by(D, 4.0f);
}
static void attn_edit_late_keys_64(attn_data *D) {
    attn_edit_keys_by(D, 64.0f);
}

/* bfloat16 rows with no mask (the lazy reference max, scores and softmax
 * fused in the score tile on avx512): within the bound of the reference and
 * split-invariant when the max moves late in the row, then a NaN key in a
 * late block poisons exactly the rows the reference makes NaN (its head's),
 * the same in every split. */
static void test_attention_bf16_lazy_max(void **state) {
    (void)state;
    const attn_case c = {1, 2, 1, 100, 700, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 78};
    attn_bf16_case_with(&c, attn_edit_late_keys, 0);
    attn_bf16_case_with(&c, attn_edit_late_keys_64, 1);

    const attn_case cn = {1, 2, 2, 100, 600, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 79};
    attn_data D;
    attn_make(&cn, &D);
    D.a.precision = MHA_PRECISION_BFLOAT16;
    D.k[1 * D.a.k_sh + 450 * D.a.k_ss + 3] = NAN; /* head 1, key 450 */
    float *ref = malloc(D.n_o * sizeof(float)), *out = malloc(D.n_o * sizeof(float));
    float *out2 = malloc(D.n_o * sizeof(float));
    attn_full(REF, NULL, &D, ref, 1);
    assert_true(nonfinite_count(ref, D.n_o) == cn.Sq * cn.dv); /* head 1's rows */
    bf16_backend bb[MAX_BACKENDS + 1];
    const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
    for (int bi = 0; bi < nb; bi++) {
        attn_full(bb[bi].p, bb[bi].state, &D, out, 1);
        for (size_t i = 0; i < D.n_o; i++)
            if (!isnan(out[i]) != !isnan(ref[i]))
                fail_msg("%s: element %zu is %g, the reference %g", bb[bi].label, i, (double)out[i],
                         (double)ref[i]);
        attn_split(bb[bi].p, bb[bi].state, &D, out2, 80);
        assert_memory_equal(out, out2, D.n_o * sizeof(float));
    }
    bf16_backends_free(bb, nb);
    free(ref), free(out), free(out2);
    attn_free(&D);
}

/* float32 rows with no mask take the lazy reference max too where the
 * backend has an exp to float32 accuracy (avx512, openmp's AVX-512
 * variant: whole score tiles in fa_score_f32_fused, the rest in
 * fa_row_softmax_lazy). With the late keys scaled by 4 and by 64 every
 * row's max passes the slack after its first blocks: the fused tile must
 * hand those tiles' dots to the row pass (without the slack test p
 * overflows at x 64; without the dots stored the row reads stale
 * probabilities). Every float32 backend: within 1e-5 of the reference
 * (1e-4 at x 64: logits 64 times larger round 64 times coarser in float,
 * the exact-max backends' too -- avx2 reads 1.8e-5 there), split-invariant,
 * and bitwise the same under a mask of zeros (then no tile is fused: the
 * row pass alone must give the fused tile's bits). */
static void test_attention_f32_lazy_max(void **state) {
    (void)state;
    const attn_case c = {1, 2, 1, 100, 700, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 93};
    for (int big = 0; big <= 2; big++) {
        attn_data D;
        attn_make(&c, &D);
        if (big) attn_edit_keys_by(&D, big == 1 ? 4.0f : 64.0f);
        float *ref = malloc(D.n_o * sizeof(float)), *out = malloc(D.n_o * sizeof(float));
        float *out2 = malloc(D.n_o * sizeof(float));
        float *zeros = calloc((size_t)c.Skv, sizeof(float));
        attn_full(REF, NULL, &D, ref, 1);
        double scale = 0.0;
        for (size_t i = 0; i < D.n_o; i++)
            scale = fmax(scale, fabs(ref[i]));
        for (int bi = 0; bi < NBK; bi++) {
            D.a.mask = NULL;
            attn_full(BK[bi].p, BK[bi].state, &D, out, 1);
            double err = 0.0;
            for (size_t i = 0; i < D.n_o; i++) {
                const double d = fabs((double)out[i] - (double)ref[i]);
                if (!(d <= err)) err = d;
            }
            const double tol = (big == 2 ? 1e-4 : 1e-5) * scale;
            if (getenv("MHA_TEST_VERBOSE"))
                fprintf(stderr, "%s, keys x %d: err %g, scale %g\n", BK[bi].name,
                        big ? 1 << (4 * big - 2) : 1, err, scale);
            if (!(err <= tol))
                fail_msg("%s, keys x %d: err %g, scale %g", BK[bi].name,
                         big ? 1 << (4 * big - 2) : 1, err, scale);
            attn_split(BK[bi].p, BK[bi].state, &D, out2, 94);
            assert_memory_equal(out, out2, D.n_o * sizeof(float));
            D.a.mask = zeros; /* [1, 1, 1, Skv] */
            D.a.m_sb = c.Skv, D.a.m_sh = 0, D.a.m_sq = 0, D.a.m_sk = 1;
            attn_full(BK[bi].p, BK[bi].state, &D, out2, 1);
            if (memcmp(out, out2, D.n_o * sizeof(float)) != 0)
                fail_msg("%s, keys x %d: no mask and a mask of zeros differ", BK[bi].name,
                         big ? 1 << (4 * big - 2) : 1);
        }
        D.a.mask = NULL;
        free(ref), free(out), free(out2), free(zeros);
        attn_free(&D);
    }
}

/* Every float32 backend on D against the scalar reference (finite): max
 * |err| <= rel * max |reference| (label and the figures on stderr when
 * not, or with MHA_TEST_VERBOSE), and a split (split_seed) bitwise the
 * same. */
static void attn_f32_backends_check(attn_data *D, double rel, uint64_t split_seed,
                                    const char *label) {
    float *ref = malloc(D->n_o * sizeof(float)), *out = malloc(D->n_o * sizeof(float));
    float *out2 = malloc(D->n_o * sizeof(float));
    attn_full(REF, NULL, D, ref, 1);
    assert_int_equal(nonfinite_count(ref, D->n_o), 0);
    double scale = 0.0;
    for (size_t i = 0; i < D->n_o; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (int bi = 0; bi < NBK; bi++) {
        attn_full(BK[bi].p, BK[bi].state, D, out, 1);
        double err = 0.0;
        for (size_t i = 0; i < D->n_o; i++) {
            const double d = fabs((double)out[i] - (double)ref[i]);
            if (!(d <= err)) err = d;
        }
        if (!(err <= rel * scale) || getenv("MHA_TEST_VERBOSE"))
            fprintf(stderr, "%s, %s: err %g, scale %g, %lld not finite\n", BK[bi].name, label, err,
                    scale, (long long)nonfinite_count(out, D->n_o));
        if (!(err <= rel * scale)) fail();
        attn_split(BK[bi].p, BK[bi].state, D, out2, split_seed);
        assert_memory_equal(out, out2, D->n_o * sizeof(float));
    }
    free(ref), free(out), free(out2);
}

/* float32 rows under a general additive mask (terms other than 0, hidden
 * and fills) take the lazy form in logit units where the backend has an
 * exp to float32 accuracy (avx512, openmp's AVX-512 variant:
 * fa_row_softmax_lazy's general form). Terms uniform in [-1, 1) with a
 * sixteenth of the keys at -inf and as many at -FLT_MAX (hidden), for
 * each row (m_sq = Skv) and shared by the rows of an item (a key padding
 * row, m_sq = 0), then the terms of keys 256 on raised by 20 or by 100:
 * the row's max passes the lazy slack through its mask alone (20 log2(e)
 * = 29 > 8), so the reference must move in logit units, not in dots (a
 * term not taken in base 2 moves it too late, and 100 overflows p).
 * Every float32 backend within 1e-5 of the reference, split-invariant,
 * and the rows of fully hidden keys 0. */
static void test_attention_f32_general_mask(void **state) {
    (void)state;
    const attn_case cs[] = {
        {1, 2, 1, 100, 700, 64, 64, 0, MASK_BCAST_ROWS, 0, 0, 0, 0.0f, 0, 0, 95},
        {2, 2, 2, 70, 400, 32, 32, 1, MASK_KEYPAD, 0, 0, 0, 0.0f, 0, 0, 96},
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        for (int lift = 0; lift <= 2; lift++) {
            const attn_case *c = &cs[ci];
            attn_data D;
            attn_make(c, &D);
            const mha_attn_args *a = &D.a;
            const float by = lift == 0 ? 0.0f : lift == 1 ? 20.0f : 100.0f;
            const int64_t rows = a->m_sq ? c->Sq : 1, items = a->m_sb ? c->B : 1;
            for (int64_t b = 0; b < items; b++)
                for (int64_t i = 0; i < rows; i++)
                    for (int64_t j = 256; j < c->Skv; j++) {
                        float *m = D.mask + b * a->m_sb + i * a->m_sq + j;
                        if (*m > -FLT_MAX) *m += by;
                    }
            char label[64];
            snprintf(label, sizeof label, "case %zu, late terms + %g", ci, (double)by);
            attn_f32_backends_check(&D, 1e-5, 97, label);
            attn_free(&D);
        }
    }
}

/* Huge logits in the lazy max (avx512, openmp's AVX-512 variant; round 11
 * of docs/RELIABILITY.md): scaled dots of 1e10 and more, where the lazy
 * form's reference m2 = max c2 rounds by more than 2^7, and 2^(dot c2 -
 * m2) at the max itself overflowed (NaN rows) or every key's underflowed
 * (rows of 0). Query component 0 is 1; HUGE_KIND picks the keys:
 *  0  every key times 1e10 (row maxima ~ +8e10);
 *  1  every key's component 0 -4e10, the others times 1e9 (maxima ~ -3e10);
 *  2  keys 256 on as 0: the reference moves from a normal max to a huge one;
 *  3  keys below 256 as 1: from a huge negative max to a normal one;
 *  4  as 0, keys 256..511 copies of keys 0..255 and their V halves of
 *     theirs: a later block ties the row's max without moving the
 *     reference (the fused score tiles must not keep a huge one); a tied
 *     row is 3/4 of its first key's V;
 *  5  row i's query the unit vector i mod dk, keys times 1e11, the copies
 *     as in 4 but 1 ulp above: a copy passes its row's max by 1 ulp, so
 *     the row's thr must be the max itself (not (m2 + FA_LAZY_SLACK) / c2,
 *     which rounds up past it for 7 % of maxima), and dot - max must not
 *     round to 0 (dot c2 rounded first merges the two: 3/4 of V, not 1/2).
 * Under a key padding mask its terms but hidden ones are set to 0 (the
 * form that only hides keys); with 4 the copies' terms are copied too. The
 * gaps between a row's largest dots are ~1e9, so every row is its largest
 * key's V (or as said for the copies). */
static int HUGE_KIND;
static void attn_edit_huge(attn_data *D) {
    const mha_attn_args *a = &D->a;
    const int kind = HUGE_KIND, negative = kind == 1 || kind == 3;
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->Hq; h++)
            for (int64_t i = 0; i < a->Sq; i++)
                for (int64_t d = 0; d < a->dk; d++)
                    if (d == 0 || kind == 5)
                        D->q[b * a->q_sb + h * a->q_sh + i * a->q_ss + d] =
                            kind == 5 ? (float)(d == i % a->dk) : 1.0f;
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t g = 0; g < a->Hkv; g++)
            for (int64_t j = 0; j < a->Skv; j++) {
                float *k = D->k + b * a->k_sb + g * a->k_sh + j * a->k_ss;
                if ((kind == 2 && j < 256) || (kind == 3 && j >= 256)) continue;
                if (kind >= 4 && j >= 256 && j < 512) {
                    float *v = D->v + b * a->v_sb + g * a->v_sh + j * a->v_ss;
                    for (int64_t d = 0; d < a->dk; d++)
                        k[d] = k[d - 256 * a->k_ss];
                    for (int64_t d = 0; d < a->dv; d++)
                        v[d] = 0.5f * v[d - 256 * a->v_ss];
                    for (int64_t d = 0; kind == 5 && d < a->dk; d++)
                        k[d] = nextafterf(k[d], INFINITY);
                    continue;
                }
                for (int64_t d = 0; d < a->dk; d++)
                    k[d] *= negative ? 1e9f : kind == 5 ? 1e11f : 1e10f;
                if (negative) k[0] = -4e10f;
            }
    if (a->mask && a->m_sq == 0)
        for (int64_t b = 0; b < a->B; b++)
            for (int64_t j = 0; j < a->Skv; j++) {
                float *m = D->mask + b * a->m_sb + j * a->m_sk;
                if (*m > -FLT_MAX) *m = 0.0f;
            }
    if (a->mask && kind == 4) /* the copies' terms too (a term of ~1 is below a logit's ulp) */
        for (int64_t b = 0; b < a->B; b++)
            for (int64_t h = 0; h < a->Hq; h++)
                for (int64_t i = 0; i < a->Sq; i++)
                    for (int64_t j = 256; j < 512; j++) {
                        float *m = D->mask + b * a->m_sb + h * a->m_sh + i * a->m_sq;
                        m[j * a->m_sk] = m[(j - 256) * a->m_sk];
                    }
}

static void test_attention_huge_logits(void **state) {
    (void)state;
    /* no mask; causal; a key padding mask that only hides keys ([B, S, H,
     * d]); a general additive mask (float32's lazy form in logit units) */
    const attn_case cs[] = {
        {1, 2, 1, 40, 600, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 101},
        {1, 2, 2, 600, 600, 64, 64, 0, MASK_NONE, 1, 0, 0, 0.0f, 0, 0, 102},
        {2, 2, 2, 40, 600, 64, 64, 1, MASK_KEYPAD, 0, 0, 0, 0.0f, 0, 0, 103},
        {1, 2, 1, 40, 600, 32, 32, 0, MASK_BCAST_ROWS, 0, 0, 0, 0.0f, 0, 0, 104},
        /* kind 5 alone: 256 row maxima, 7 % of whose thr rounds up */
        {2, 2, 2, 64, 600, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 106},
    };
    const size_t nc = sizeof cs / sizeof cs[0];
    for (size_t ci = 0; ci < nc; ci++)
        for (HUGE_KIND = 0; HUGE_KIND <= 5; HUGE_KIND++) {
            const attn_case *c = &cs[ci];
            if ((HUGE_KIND == 5) != (ci == nc - 1)) continue;
            attn_data D;
            attn_make(c, &D);
            attn_edit_huge(&D);
            char label[64];
            snprintf(label, sizeof label, "case %zu, kind %d", ci, HUGE_KIND);
            attn_f32_backends_check(&D, 1e-5, 105, label);
            attn_free(&D);
            /* bfloat16: the bound of the scalar bfloat16 reference */
            attn_bf16_case_with(c, attn_edit_huge, 1);
        }
}

/* bfloat16 pairs keys two by two in P.V: a causal row that sees an odd
 * number of keys of a block ends on a pair whose second key it must not
 * see. V = +inf on that key (an overflowed value) must not reach the row
 * through 0 * inf: causal rows 0..64 of a 66- and a 70-key self-attention
 * (with 64-key blocks row 64 sees one key of the second block, key 65 is
 * inf; 66 rows take the one-row P.V path there, 70 the grouped one; with
 * avx512's 128-key bfloat16 blocks row 64 ends on the pair (64, 65) inside
 * the first block) stay finite and within the
 * bfloat16 bound of the reference, in every bfloat16 backend. */
static void test_attention_bf16_unseen_inf(void **state) {
    (void)state;
    for (int64_t S = 66; S <= 70; S += 4) {
        const attn_case c = {1, 2, 2, S, S, 16, 16, 0, MASK_NONE, 1, 0, 0, 0.0f, 0, 0, 74};
        attn_data D;
        attn_make(&c, &D);
        D.a.precision = MHA_PRECISION_BFLOAT16;
        double vmax = 0.0;
        for (int64_t h = 0; h < c.Hkv; h++)
            for (int64_t j = 0; j < S; j++)
                for (int64_t d = 0; d < c.dv; d++) {
                    float *v = &D.v[h * D.a.v_sh + j * D.a.v_ss + d];
                    if (j == 65)
                        *v = INFINITY;
                    else
                        vmax = fmax(vmax, fabs(*v));
                }
        float *ref = malloc(D.n_o * sizeof(float)), *out = malloc(D.n_o * sizeof(float));
        attn_full(REF, NULL, &D, ref, 1);
        bf16_backend bb[MAX_BACKENDS + 1];
        const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
        for (int bi = 0; bi < nb; bi++) {
            attn_full(bb[bi].p, bb[bi].state, &D, out, 1);
            for (int64_t h = 0; h < c.Hq; h++)
                for (int64_t i = 0; i <= 64; i++)
                    for (int64_t d = 0; d < c.dv; d++) {
                        const size_t at = (size_t)(h * D.a.o_sh + i * D.a.o_ss + d);
                        if (!(fabs((double)out[at] - (double)ref[at]) <= ldexp(1.0, -7) * vmax)) {
                            fprintf(stderr, "%s S%lld row %lld: %g, reference %g\n", bb[bi].label,
                                    (long long)S, (long long)i, (double)out[at], (double)ref[at]);
                            fail();
                        }
                    }
        }
        bf16_backends_free(bb, nb);
        free(ref), free(out);
        attn_free(&D);
    }
}

/* Who serves bfloat16: the scalar reference and avx512 declare it; a
 * plugin that does not (avx2), or a table without the bit, is not asked. */
static void test_bf16_declared(void **state) {
    (void)state;
    assert_true(registry_plugin_serves(REF, MHA_PRECISION_BFLOAT16));
    assert_true(registry_plugin_serves(REF, MHA_PRECISION_FLOAT32));
    assert_false(registry_plugin_serves(REF, 7));
    const backend *avx512 = find_backend("avx512"), *avx2 = find_backend("avx2");
    assert_non_null(avx512);
    assert_non_null(avx2);
    assert_true(registry_plugin_serves(avx512->p, MHA_PRECISION_BFLOAT16));
    assert_false(registry_plugin_serves(avx2->p, MHA_PRECISION_BFLOAT16));
    assert_true(registry_plugin_serves(avx2->p, MHA_PRECISION_FLOAT32));
    mha_plugin f32 = *avx512->p; /* the same table declaring float32 only */
    f32.precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32);
    assert_false(registry_plugin_serves(&f32, MHA_PRECISION_BFLOAT16));
    assert_true(registry_plugin_serves(&f32, MHA_PRECISION_FLOAT32));
    /* a precision no kernel knows is refused by the call, not computed */
    gemm_data g = {.M = 1, .N = 1, .K = 1, .lda = 1, .ldc = 1};
    float x = 1.0f, c = 0.0f;
    g.A = &x, g.B = &x;
    void *packed = pack_for(avx512->p, avx512->state, &g);
    mha_gemm_args a = {.struct_size = sizeof a,
                       .M = 1,
                       .N = 1,
                       .K = 1,
                       .A = &x,
                       .lda = 1,
                       .B_packed = packed,
                       .C = &c,
                       .ldc = 1,
                       .m1 = 1,
                       .n1 = 1,
                       .num_threads = 1,
                       .precision = 5};
    assert_int_not_equal(avx512->p->gemm(avx512->state, &a), 0);
    assert_int_not_equal(REF->gemm(NULL, &a), 0);
    free(packed);
}

/* Rows with no mask, softcap or ALiBi take a shorter softmax path in the
 * flash kernels (fa_row_softmax_plain) that must give the general path's
 * bits in float32: each backend, no mask against an all-zero [B, 1, 1, Skv]
 * mask (the general path; s + 0 is s), bitwise. In bfloat16 such rows take
 * a lazy reference max (p up to 2^8, rounded at other points than the
 * general path's) with or without a mask that only hides keys: bitwise
 * too. Then key
 * 77's elements are -3e38 and rows 5 and 6 of each head have q = 1 and
 * q = -1: in float their scores there overflow to -inf (a zero
 * probability: row 5 stays finite) and +inf (row 6 is NaN in the float
 * backends; the scalar sums in double), and both leave the short path for
 * the general one. 150 keys: two whole key blocks of 64 and a short one. */
static void test_attention_plain_rows(void **state) {
    (void)state;
    for (int overflow = 0; overflow <= 1; overflow++) {
        const attn_case c = {2, 2, 1, 20, 150, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 75};
        attn_data D;
        attn_make(&c, &D);
        if (overflow) {
            for (int64_t b = 0; b < c.B; b++) {
                for (int64_t d = 0; d < c.dk; d++)
                    D.k[b * D.a.k_sb + 77 * D.a.k_ss + d] = -3.0e38f;
                for (int64_t h = 0; h < c.Hq; h++)
                    for (int64_t d = 0; d < c.dk; d++) {
                        D.q[b * D.a.q_sb + h * D.a.q_sh + 5 * D.a.q_ss + d] = 1.0f;
                        D.q[b * D.a.q_sb + h * D.a.q_sh + 6 * D.a.q_ss + d] = -1.0f;
                    }
            }
        }
        const size_t nm = (size_t)(c.B * c.Skv);
        float *zeros = calloc(nm, sizeof(float));
        float *plain = malloc(D.n_o * sizeof(float)), *general = malloc(D.n_o * sizeof(float));
        bf16_backend bb[MAX_BACKENDS + 1];
        const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
        for (int prec = 0; prec <= 1; prec++) {
            const int n = prec ? nb : NBK;
            for (int bi = 0; bi < n; bi++) {
                const mha_plugin *p = prec ? bb[bi].p : BK[bi].p;
                void *st = prec ? bb[bi].state : BK[bi].state;
                D.a.precision = prec ? MHA_PRECISION_BFLOAT16 : MHA_PRECISION_FLOAT32;
                D.a.mask = NULL;
                attn_full(p, st, &D, plain, 1);
                D.a.mask = zeros; /* [B, 1, 1, Skv] */
                D.a.m_sb = c.Skv, D.a.m_sh = 0, D.a.m_sq = 0, D.a.m_sk = 1;
                attn_full(p, st, &D, general, 1);
                if (memcmp(plain, general, D.n_o * sizeof(float)) != 0)
                    fail_msg("%s %s: no mask and a mask of zeros differ",
                             prec ? bb[bi].label : BK[bi].name, prec ? "bfloat16" : "float32");
                if (!overflow) continue;
                for (int64_t b = 0; b < c.B; b++)
                    for (int64_t h = 0; h < c.Hq; h++)
                        for (int64_t d = 0; d < c.dv; d++) {
                            const float *row = plain + b * D.a.o_sb + h * D.a.o_sh;
                            if (!isfinite(row[5 * D.a.o_ss + d]))
                                fail_msg("%s prec %d: b %lld h %lld d %lld: %g",
                                         prec ? bb[bi].label : BK[bi].name, prec, (long long)b,
                                         (long long)h, (long long)d, (double)row[5 * D.a.o_ss + d]);
                        }
            }
        }
        bf16_backends_free(bb, nb);
        free(zeros), free(plain), free(general);
        attn_free(&D);
    }
}

/* Heads of at most 256 keys (the avx512 float32 short-head path:
 * fa_short_head), at the models' shapes -- ViT's S 197 (a last key block
 * of 5), MiniLM's d 32, 250 rows (the last tile of 6 overlaps), d 80, GQA,
 * key lengths; causal rows (GPT-2's S 256, a past, key lengths); a key
 * padding row and a mask per row of random additive terms with -inf and
 * -FLT_MAX among them (the lazy form in logit units), rows of it fully
 * masked (the block path then), causal too: every backend within 1e-5 of
 * the reference, and one call, a random split and one row per call (the
 * block path) bitwise the same (attn_check_case). */
static void test_attention_short_heads(void **state) {
    (void)state;
    const attn_case cs[] = {
        {2, 3, 3, 197, 197, 64, 64, 1, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 201},
        {2, 2, 2, 128, 128, 32, 32, 1, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 202},
        {1, 4, 2, 250, 250, 80, 80, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 203},
        {3, 2, 2, 90, 200, 32, 32, 1, MASK_NONE, 0, 0, 1, 0.0f, 0, 0, 204},
        {2, 2, 2, 197, 197, 32, 32, 1, MASK_KEYPAD, 0, 0, 0, 0.0f, 0, 0, 205},
        {1, 2, 2, 128, 128, 64, 64, 1, MASK_NONE, 1, 0, 0, 0.0f, 0, 0, 206},
        {1, 2, 2, 256, 256, 64, 64, 1, MASK_NONE, 1, 0, 0, 0.0f, 0, 0, 207},
        {3, 2, 1, 70, 190, 32, 32, 1, MASK_NONE, 1, 1, 1, 0.0f, 0, 0, 208},
        {2, 2, 2, 128, 128, 64, 64, 1, MASK_KEYPAD, 0, 0, 0, 0.0f, 0, 0, 209},
        {2, 2, 2, 100, 100, 64, 64, 0, MASK_FULL, 0, 0, 0, 0.0f, 0, 0, 210},
        {1, 2, 2, 150, 150, 32, 32, 1, MASK_BCAST_ROWS, 1, 0, 0, 0.0f, 0, 0, 211},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        attn_check_case(&cs[i]);
}

/* Key padding hidden by a mask gives the bits of the same keys cut off by
 * the key lengths (a batch item of mha_queue: its padding masked against
 * the item alone): a [B, 1, 1, Skv] mask (then the same as [B, 1, Sq, Skv])
 * of 0 on keys j < n_b and a fill after them -- -inf, -FLT_MAX, the host's
 * finfo.min (the next float up), -1e30 -- against no mask and kv_len n_b,
 * bitwise, every backend in float32 and bfloat16, plain and causal rows;
 * lengths across the 64- and 128-key blocks. In bfloat16 the unmasked rows
 * keep a lazy max (avx512): the masked ones must keep it too. Then left
 * padding (fills first, then zeros) and an item of fills alone (averaged,
 * as the graph's softmax does) within the bound of the scalar reference. */
static void attn_edit_left_fills(attn_data *D) {
    const mha_attn_args *a = &D->a;
    const float fill = nextafterf(-FLT_MAX, 0.0f);
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t j = 0; j < a->Skv; j++)
            D->mask[b * a->m_sb + j * a->m_sk] = b == 0 || j < 40 * b ? fill : 0.0f;
}

static void test_attention_masked_padding(void **state) {
    (void)state;
    enum { B = 5, SQ = 150, SKV = 200 };
    const int64_t len[B] = {SKV, 131, 7, 64, 129};
    const float fills[B] = {0.0f, -INFINITY, -FLT_MAX, nextafterf(-FLT_MAX, 0.0f), -1e30f};
    bf16_backend bb[MAX_BACKENDS + 1];
    const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
    for (int causal = 0; causal <= 1; causal++) {
        /* d 48: a scale 2 / sqrt(48) that is no power of 2 (the lazy and
         * exact softmax then round apart even where the max stays) */
        const attn_case c = {B, 2, 1, SQ, SKV, 48, 48, 0, MASK_NONE, causal, 0, 0, 0.0f, 0, 0, 91};
        attn_data D;
        attn_make(&c, &D);
        float *mask = malloc((size_t)(B * SQ * SKV) * sizeof(float));
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < SQ; i++)
                for (int64_t j = 0; j < SKV; j++)
                    mask[(b * SQ + i) * SKV + j] = j < len[b] ? 0.0f : fills[b];
        float *cut = malloc(D.n_o * sizeof(float)), *hid = malloc(D.n_o * sizeof(float));
        for (int prec = 0; prec <= 1; prec++)
            for (int bi = 0; bi < (prec ? nb : NBK); bi++) {
                const mha_plugin *p = prec ? bb[bi].p : BK[bi].p;
                void *st = prec ? bb[bi].state : BK[bi].state;
                const char *name = prec ? bb[bi].label : BK[bi].name;
                D.a.precision = prec ? MHA_PRECISION_BFLOAT16 : MHA_PRECISION_FLOAT32;
                D.a.mask = NULL;
                D.a.kv_len = len;
                attn_full(p, st, &D, cut, 1);
                D.a.kv_len = NULL;
                D.a.mask = mask;
                for (int rows = 0; rows <= 1; rows++) {
                    D.a.m_sb = SQ * SKV, D.a.m_sh = 0; /* item b at its first row */
                    D.a.m_sq = rows ? SKV : 0, D.a.m_sk = 1;
                    attn_full(p, st, &D, hid, 1);
                    if (memcmp(cut, hid, D.n_o * sizeof(float)) != 0)
                        fail_msg("%s %s causal %d, mask %s: padding masked differs from cut off",
                                 name, prec ? "bfloat16" : "float32", causal,
                                 rows ? "[B, 1, Sq, Skv]" : "[B, 1, 1, Skv]");
                }
                if (causal) continue;
                /* a NaN key in the padding: hidden under -inf (item 1),
                 * every row NaN under a finite fill (item 3), as the
                 * graph's softmax gives it */
                float *k1 = D.k + 1 * D.a.k_sb + 150 * D.a.k_ss,
                      *k3 = D.k + 3 * D.a.k_sb + 100 * D.a.k_ss;
                const float keep1 = k1[0], keep3 = k3[0];
                k1[0] = k3[0] = NAN;
                attn_full(p, st, &D, hid, 1);
                k1[0] = keep1, k3[0] = keep3;
                const size_t per = D.n_o / B;
                for (int64_t b = 0; b < B; b++) {
                    const int64_t bad = nonfinite_count(hid + b * per, per);
                    if (bad != (b == 3 ? (int64_t)per : 0))
                        fail_msg("%s %s: item %lld: a NaN key in the padding gives %lld of %zu "
                                 "non-finite",
                                 name, prec ? "bfloat16" : "float32", (long long)b, (long long)bad,
                                 per);
                }
            }
        free(mask), free(cut), free(hid);
        attn_free(&D);
    }
    bf16_backends_free(bb, nb);
    const attn_case cl = {4, 2, 1, 30, 150, 32, 32, 0, MASK_KEYPAD, 0, 0, 0, 0.0f, 0, 0, 92};
    attn_bf16_case_with(&cl, attn_edit_left_fills, 0);
}

/*
 * A key block the rows of a score tile see only in part (S 197: the last
 * block holds 5 keys; causal diagonals; kv_len) has only the key vectors
 * they see computed, the rest of the tile's scores left as they were in the
 * workspace. Whatever the workspace held -- NaN, +inf, zeros -- the output
 * must be the same bits: those lanes are hidden, never read as scores.
 */
static void test_attention_stale_scores(void **state) {
    (void)state;
    const attn_case cs[] = {
        /* ViT's S 197, GQA: the last key block 5 keys */
        {1, 2, 1, 197, 197, 64, 64, 0, MASK_NONE, 0, 0, 0, 0.0f, 0, 0, 31},
        /* causal, d 32: every diagonal block seen in part */
        {1, 2, 2, 100, 100, 32, 32, 0, MASK_NONE, 1, 0, 0, 0.0f, 0, 0, 32},
        /* kv_len, softcap and ALiBi: the general path on stale lanes */
        {2, 2, 2, 21, 75, 16, 16, 0, MASK_NONE, 0, 0, 1, 5.0f, 1, 0, 33},
    };
    /* 0xff: NaN in every float; 0x7f: 3.4e38 (huge finite scores) */
    const int fills[] = {0xff, 0x7f};
    bf16_backend bb[MAX_BACKENDS + 1];
    const int nb = bf16_backends(bb, MAX_BACKENDS + 1);
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        attn_data D;
        attn_make(&cs[ci], &D);
        float *ref = malloc(D.n_o * sizeof(float)), *o = malloc(D.n_o * sizeof(float));
        for (int prec = 0; prec <= 1; prec++) {
            const int n = prec ? nb : NBK;
            for (int bi = 0; bi < n; bi++) {
                const mha_plugin *p = prec ? bb[bi].p : BK[bi].p;
                void *st = prec ? bb[bi].state : BK[bi].state;
                D.a.precision = prec ? MHA_PRECISION_BFLOAT16 : MHA_PRECISION_FLOAT32;
                assert_int_equal(attn_call_filled(p, st, &D.a, ref, 0), 0);
                for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
                    assert_int_equal(attn_call_filled(p, st, &D.a, o, fills[f]), 0);
                    if (memcmp(ref, o, D.n_o * sizeof(float)) != 0)
                        fail_msg("case %zu %s prec %d fill 0x%02x: output depends on the "
                                 "workspace",
                                 ci, prec ? bb[bi].label : BK[bi].name, prec, fills[f]);
                }
            }
        }
        free(ref), free(o);
        attn_free(&D);
    }
    bf16_backends_free(bb, nb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_stale_scores),
        cmocka_unit_test(test_bf16_declared),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_bf16_rounding_rows),
        cmocka_unit_test(test_gemm_bf16),
        cmocka_unit_test(test_gemm_bf16_epilogues),
        cmocka_unit_test(test_attention_bf16),
        cmocka_unit_test(test_attention_bf16_lazy_max),
        cmocka_unit_test(test_attention_f32_lazy_max),
        cmocka_unit_test(test_attention_f32_general_mask),
        cmocka_unit_test(test_attention_huge_logits),
        cmocka_unit_test(test_attention_masked_padding),
        cmocka_unit_test(test_attention_bf16_unseen_inf),
        cmocka_unit_test(test_expected_backends_present),
        cmocka_unit_test(test_gemm_odd_sizes),
        cmocka_unit_test(test_gemm_edges),
        cmocka_unit_test(test_gemm_epilogues),
        cmocka_unit_test(test_norm),
        cmocka_unit_test(test_attention_edges),
        cmocka_unit_test(test_attention_bad_args),
        cmocka_unit_test(test_attention_nan_rows),
        cmocka_unit_test(test_attention_plain_rows),
        cmocka_unit_test(test_attention_short_heads),
        cmocka_unit_test(test_attention_random),
        cmocka_unit_test(test_attention_long),
        cmocka_unit_test(test_rotary),
        cmocka_unit_test(test_rotary_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
