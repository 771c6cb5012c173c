/* plugin_kit.c -- the plugin test kit: checks any backend plugin's kernels
 * against the built-in scalar reference on randomised problems, through the
 * plugin ABI alone. `mha backends --check` runs it on every usable plugin
 * (an out-of-tree plugin joins through --plugin-path or MHA_PLUGIN_PATH).
 *
 * What a plugin must satisfy (plugins/include/mha/plugin.h):
 *   - attention and GEMM results within 1e-5 of the scalar output's scale;
 *   - fully masked rows give zeros, never NaN;
 *   - results do not depend on how the range is split (bitwise), so the
 *     host's scheduling stays deterministic;
 *   - what the table declares (ABI 2.0): ALiBi (key position, relative,
 *     positions given per key) in attention with MHA_OP_ALIBI, the rotary
 *     entry with MHA_OP_ROTARY, and each GEMM epilogue it lists
 *     (activations, residual) against the reference's. */
#include "plugin_kit.h"

#include "mha_cli.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIT_TOL 1e-5

static void *kit_alloc(void *ctx, size_t size, size_t align) {
    (void)ctx;
    if (align < sizeof(void *)) align = sizeof(void *);
    size = (size + align - 1) / align * align;
    return aligned_alloc(align, size ? size : align);
}

static void kit_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

static void kit_log(void *ctx, int level, const char *msg) {
    (void)ctx;
    (void)level;
    (void)msg;
}

static void kit_fill(float *x, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(cli_rng_uniform(s) * 2.0 - 1.0);
}

/* max |a - b| relative to max(1, max |ref|); +inf when a has a NaN. */
static double kit_err(const float *a, const float *ref, size_t n) {
    double scale = 1.0, err = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)ref[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d != d) return INFINITY;
        err = fmax(err, d);
    }
    return err / scale;
}

typedef struct kit_plugin {
    const mha_plugin *p;
    void *state;
} kit_plugin;

/* One attention problem: Q [B,Hq,Sq,dk], K [B,Hkv,Skv,dk], V [B,Hkv,Skv,dv],
 * O [B,Hq,Sq,dv] in B,H,S,d layout; optional additive mask [B,1,Sq,Skv]
 * (broadcast over heads), causal offsets and kv lengths per batch. */
typedef struct kit_attn {
    int64_t B, Hq, Hkv, Sq, Skv, dk, dv;
    int masked, causal, kvlen, softcap;
    int alibi; /* 0 none, 1 slope * j, 2 slope * (j - i), 3 positions given */
} kit_attn;

/* The plugin declares optional op `op` (MHA_OP_*). */
static int kit_has_op(const mha_plugin *p, uint32_t op) {
    return (p->ops & op) == op;
}

static int kit_attn_run(const kit_plugin *kp, mha_attn_args *a, float *o, size_t on) {
    memset(o, 0, on * sizeof *o);
    a->o = o;
    size_t ws = kp->p->attention_workspace_size(kp->state, a);
    void *w = ws ? kit_alloc(NULL, ws, 64) : NULL;
    if (ws && !w) return -1;
    int rc = kp->p->attention(kp->state, a, w, ws);
    free(w);
    return rc;
}

/* Returns 1 when the plugin passes this problem; writes why not into why. */
static int kit_attn_case(const kit_plugin *kp, const kit_plugin *ref, const kit_attn *c,
                         uint64_t seed, char *why, size_t why_size) {
    size_t nq = (size_t)(c->B * c->Hq * c->Sq * c->dk),
           nk = (size_t)(c->B * c->Hkv * c->Skv * c->dk);
    size_t nv = (size_t)(c->B * c->Hkv * c->Skv * c->dv),
           no = (size_t)(c->B * c->Hq * c->Sq * c->dv);
    size_t nm = (size_t)(c->B * c->Sq * c->Skv);
    float *q = malloc(nq * 4 + 4), *k = malloc(nk * 4 + 4), *v = malloc(nv * 4 + 4);
    float *m = malloc(nm * 4 + 4), *o_ref = malloc(no * 4 + 4), *o = malloc(no * 4 + 4);
    float *o_split = malloc(no * 4 + 4);
    float *pos = malloc((size_t)(c->B * c->Skv) * 4 + 4), slopes[8];
    int64_t offs[8], lens[8];
    int ok = 0;
    if (!q || !k || !v || !m || !o_ref || !o || !o_split || !pos || c->B > 8 || c->Hq > 8) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    uint64_t s = seed;
    kit_fill(q, nq, &s);
    kit_fill(k, nk, &s);
    kit_fill(v, nv, &s);
    /* A mask with -inf and lowest-float entries and one fully masked row. */
    for (size_t i = 0; i < nm; i++) {
        uint64_t r = cli_rng_next(&s) % 8;
        m[i] = r == 0 ? -INFINITY : r == 1 ? -FLT_MAX : (float)(r)*0.25f - 1.0f;
    }
    for (int64_t j = 0; j < c->Skv; j++)
        m[j] = -INFINITY; /* row (b0, i0): all masked */
    for (int64_t b = 0; b < c->B; b++) {
        offs[b] = (int64_t)(cli_rng_next(&s) % 3) - 1 + (c->Skv - c->Sq);
        lens[b] = 1 + (int64_t)(cli_rng_next(&s) % (uint64_t)c->Skv);
    }

    mha_attn_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.B = c->B, a.Hq = c->Hq, a.Hkv = c->Hkv, a.Sq = c->Sq, a.Skv = c->Skv, a.dk = c->dk,
    a.dv = c->dv;
    a.q = q, a.q_sb = c->Hq * c->Sq * c->dk, a.q_sh = c->Sq * c->dk, a.q_ss = c->dk;
    a.k = k, a.k_sb = c->Hkv * c->Skv * c->dk, a.k_sh = c->Skv * c->dk, a.k_ss = c->dk;
    a.v = v, a.v_sb = c->Hkv * c->Skv * c->dv, a.v_sh = c->Skv * c->dv, a.v_ss = c->dv;
    a.o_sb = c->Hq * c->Sq * c->dv, a.o_sh = c->Sq * c->dv, a.o_ss = c->dv;
    a.scale = 1.0f / sqrtf((float)c->dk);
    a.softcap = c->softcap ? 2.0f : 0.0f;
    if (c->masked) a.mask = m, a.m_sb = c->Sq * c->Skv, a.m_sh = 0, a.m_sq = c->Skv, a.m_sk = 1;
    a.causal = c->causal;
    a.causal_offset = c->causal ? offs : NULL;
    a.kv_len = c->kvlen ? lens : NULL;
    a.b0 = 0, a.b1 = c->B, a.h0 = 0, a.h1 = c->Hq, a.q0 = 0, a.q1 = c->Sq;
    a.num_threads = 1;
    if (c->alibi) {
        for (int64_t h = 0; h < c->Hq; h++)
            slopes[h] = ldexpf(1.0f, -(int)(h + 1));
        a.alibi_slopes = slopes;
        a.alibi_relative = c->alibi == 2;
        if (c->alibi == 3) { /* BLOOM: positions among the kept keys, holes between */
            for (int64_t b = 0; b < c->B; b++) {
                int64_t seen = 0;
                for (int64_t j = 0; j < c->Skv; j++)
                    pos[b * c->Skv + j] = cli_rng_next(&s) % 4 ? (float)seen++ : 0.0f;
            }
            a.alibi_pos = pos, a.alibi_pos_sb = c->Skv;
        }
    }

    if (kit_attn_run(ref, &a, o_ref, no) != 0 || kit_attn_run(kp, &a, o, no) != 0) {
        snprintf(why, why_size, "attention call failed");
        goto done;
    }
    double e = kit_err(o, o_ref, no);
    if (!(e <= KIT_TOL)) {
        snprintf(why, why_size, "max error %.3g > %.0e", e, KIT_TOL);
        goto done;
    }
    /* The same problem as one call per (b, h, query row): bitwise equal. */
    if (!(kp->p->flags & MHA_PLUGIN_SELF_PARALLEL)) {
        memset(o_split, 0, no * sizeof *o_split);
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->Hq; h++)
                for (int64_t i = 0; i < c->Sq; i++) {
                    mha_attn_args u = a;
                    u.o = o_split;
                    u.b0 = b, u.b1 = b + 1, u.h0 = h, u.h1 = h + 1, u.q0 = i, u.q1 = i + 1;
                    size_t ws = kp->p->attention_workspace_size(kp->state, &a);
                    void *w = ws ? kit_alloc(NULL, ws, 64) : NULL;
                    int rc = kp->p->attention(kp->state, &u, w, ws);
                    free(w);
                    if (rc != 0) {
                        snprintf(why, why_size, "attention call on one row failed");
                        goto done;
                    }
                }
        if (memcmp(o_split, o, no * sizeof *o) != 0) {
            snprintf(why, why_size, "result depends on how the range is split");
            goto done;
        }
    }
    ok = 1;
done:
    free(q), free(k), free(v), free(m), free(o_ref), free(o), free(o_split), free(pos);
    return ok;
}

/* The rotary entry (MHA_OP_ROTARY): x [B, H, S, d] turned in place against the
 * reference, whole and one row per call (bitwise equal). kind and rd as in
 * mha_rotary_args; tables of theta 10000; a position offset per item. */
static int kit_rotary_case(const kit_plugin *kp, const kit_plugin *ref, int kind, int64_t d,
                           int64_t rd, uint64_t seed, char *why, size_t why_size) {
    const int64_t B = 2, H = 3, S = 9, half = rd / 2, n_pos = S + 4;
    const size_t nx = (size_t)(B * H * S * d);
    float *x = malloc(nx * 4), *x_ref = malloc(nx * 4), *x_split = malloc(nx * 4);
    float *tab = malloc((size_t)(2 * n_pos * half) * 4);
    int64_t offs[2] = {0, 4};
    int ok = 0;
    if (!x || !x_ref || !x_split || !tab) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    uint64_t s = seed;
    kit_fill(x_ref, nx, &s);
    memcpy(x, x_ref, nx * 4);
    memcpy(x_split, x_ref, nx * 4);
    for (int64_t p = 0; p < n_pos; p++)
        for (int64_t t = 0; t < half; t++) {
            double ang = (double)p * pow(10000.0, -2.0 * (double)t / (double)rd);
            tab[p * half + t] = (float)cos(ang);
            tab[(n_pos + p) * half + t] = (float)sin(ang);
        }
    mha_rotary_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.B = B, a.H = H, a.S = S, a.d = d;
    a.x_sb = H * S * d, a.x_sh = S * d, a.x_ss = d;
    a.kind = kind, a.rotary_dim = rd;
    a.cos = tab, a.sin = tab + n_pos * half, a.n_pos = n_pos, a.pos_offset = offs;
    a.b1 = B, a.h1 = H, a.s1 = S, a.num_threads = 1;
    a.x = x_ref;
    if (ref->p->rotary(ref->state, &a) != 0) goto call_failed;
    a.x = x;
    if (kp->p->rotary(kp->state, &a) != 0) goto call_failed;
    double e = kit_err(x, x_ref, nx);
    if (!(e <= KIT_TOL)) {
        snprintf(why, why_size, "rotary kind %d, %lld of %lld dims: max error %.3g > %.0e", kind,
                 (long long)rd, (long long)d, e, KIT_TOL);
        goto done;
    }
    a.x = x_split;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < S; i++) {
                mha_rotary_args u = a;
                u.b0 = b, u.b1 = b + 1, u.h0 = h, u.h1 = h + 1, u.s0 = i, u.s1 = i + 1;
                if (kp->p->rotary(kp->state, &u) != 0) goto call_failed;
            }
    if (memcmp(x_split, x, nx * 4) != 0) {
        snprintf(why, why_size, "rotary result depends on how the range is split");
        goto done;
    }
    ok = 1;
    goto done;
call_failed:
    snprintf(why, why_size, "rotary call failed");
done:
    free(x), free(x_ref), free(x_split), free(tab);
    return ok;
}

/* B [K, N] packed in float32 by kp's state; NULL when the plugin reports
 * no size (SIZE_MAX) or its packing fails. */
static void *kit_pack(const kit_plugin *kp, int64_t K, int64_t N, const float *B) {
    size_t size = kp->p->gemm_packed_size(kp->state, MHA_PRECISION_FLOAT32, K, N);
    if (size == SIZE_MAX || size < (size_t)(K * N) * sizeof(float)) return NULL;
    void *packed = kit_alloc(NULL, size, 64);
    if (packed && kp->p->gemm_pack_b(kp->state, MHA_PRECISION_FLOAT32, K, N, B, N, packed) != 0) {
        free(packed);
        return NULL;
    }
    return packed;
}

/* C[M,N] = act(A[M,K] . B[K,N] + bias) + residual, whole and tile by tile. */
static int kit_gemm_case(const kit_plugin *kp, const kit_plugin *ref, int64_t M, int64_t N,
                         int64_t K, int bias, int act, int residual, uint64_t seed, char *why,
                         size_t why_size) {
    size_t na = (size_t)(M * K), nb = (size_t)(K * N), nc = (size_t)(M * N);
    float *A = malloc(na * 4 + 4), *Bm = malloc(nb * 4 + 4), *bv = malloc((size_t)N * 4 + 4);
    float *c_ref = malloc(nc * 4 + 4), *c = malloc(nc * 4 + 4), *c_split = malloc(nc * 4 + 4);
    float *r = malloc(nc * 4 + 4);
    void *pr = NULL, *pp = NULL;
    int ok = 0;
    if (!A || !Bm || !bv || !c_ref || !c || !c_split || !r) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    uint64_t s = seed;
    kit_fill(A, na, &s);
    kit_fill(Bm, nb, &s);
    kit_fill(bv, (size_t)N, &s);
    kit_fill(r, nc, &s);
    pr = kit_pack(ref, K, N, Bm);
    pp = kit_pack(kp, K, N, Bm);
    if (!pr || !pp) {
        snprintf(why, why_size, "gemm %lldx%lld: packing failed or reported too few bytes",
                 (long long)K, (long long)N);
        goto done;
    }
    mha_gemm_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = sizeof g;
    g.M = M, g.N = N, g.K = K, g.A = A, g.lda = K, g.bias = bias ? bv : NULL, g.ldc = N;
    g.activation = act, g.residual = residual ? r : NULL, g.ldr = N;
    g.m0 = 0, g.m1 = M, g.n0 = 0, g.n1 = N, g.num_threads = 1;
    g.B_packed = pr, g.C = c_ref;
    if (ref->p->gemm(ref->state, &g) != 0) goto call_failed;
    g.B_packed = pp, g.C = c;
    if (kp->p->gemm(kp->state, &g) != 0) goto call_failed;
    double e = kit_err(c, c_ref, nc);
    if (!(e <= KIT_TOL)) {
        snprintf(why, why_size, "gemm %lldx%lldx%lld act %d residual %d: max error %.3g > %.0e",
                 (long long)M, (long long)N, (long long)K, act, residual, e, KIT_TOL);
        goto done;
    }
    if (!(kp->p->flags & MHA_PLUGIN_SELF_PARALLEL)) {
        int64_t mb = kp->p->gemm_m_block > 0 ? kp->p->gemm_m_block : 1;
        int64_t nbk = kp->p->gemm_n_block > 0 ? kp->p->gemm_n_block : 1;
        g.C = c_split;
        for (int64_t m0 = 0; m0 < M; m0 += mb)
            for (int64_t n0 = 0; n0 < N; n0 += nbk) {
                g.m0 = m0, g.m1 = m0 + mb < M ? m0 + mb : M;
                g.n0 = n0, g.n1 = n0 + nbk < N ? n0 + nbk : N;
                if (kp->p->gemm(kp->state, &g) != 0) goto call_failed;
            }
        if (memcmp(c_split, c, nc * sizeof *c) != 0) {
            snprintf(why, why_size, "gemm %lldx%lldx%lld depends on the tile split", (long long)M,
                     (long long)N, (long long)K);
            goto done;
        }
    }
    ok = 1;
    goto done;
call_failed:
    snprintf(why, why_size, "gemm call failed");
done:
    free(A), free(Bm), free(bv), free(c_ref), free(c), free(c_split), free(r), free(pr), free(pp);
    return ok;
}

void plugin_kit_services(uint64_t cpu_features, mha_plugin_services *out) {
    const mha_plugin_services s = {
        sizeof(mha_plugin_services), NULL, kit_log, kit_alloc, kit_free, cpu_features};
    *out = s;
}

int plugin_kit_check(const mha_plugin *plugin, const mha_plugin *reference, uint64_t cpu_features,
                     FILE *report, int *passed, int *failed) {
    mha_plugin_services kit_services;
    plugin_kit_services(cpu_features, &kit_services);
    kit_plugin kp = {plugin, NULL}, ref = {reference, NULL};
    *passed = *failed = 0;
    if ((plugin->init && plugin->init(&kit_services, &kp.state) != 0) ||
        (reference->init && reference->init(&kit_services, &ref.state) != 0)) {
        fprintf(report, "  %s: init failed\n", plugin->name);
        (*failed)++;
        return 1;
    }
    static const int64_t heads[][2] = {{1, 1},   {3, 3},     {17, 17}, {64, 64},
                                       {80, 80}, {128, 128}, {8, 10}};
    static const int64_t seqs[][2] = {{1, 1}, {7, 7}, {33, 20}, {5, 33}};
    char why[160];
    uint64_t seed = 1;
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++)
        for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++) {
            int variant = (int)((h * 4 + s) % 6);
            kit_attn c = {1 + (int64_t)(s % 3),
                          variant == 3 ? 4 : 2,
                          2,
                          seqs[s][0],
                          seqs[s][1],
                          heads[h][0],
                          heads[h][1],
                          variant != 0,
                          variant == 1 || variant == 4,
                          variant == 2 || variant == 4,
                          variant == 5,
                          kit_has_op(plugin, MHA_OP_ALIBI) ? (int)((h + s) % 4) : 0};
            if (kit_attn_case(&kp, &ref, &c, seed++, why, sizeof why)) {
                (*passed)++;
            } else {
                (*failed)++;
                fprintf(report,
                        "  %s: attention B%lld Hq%lld Hkv%lld Sq%lld Skv%lld dk%lld dv%lld "
                        "mask%d causal%d kvlen%d softcap%d alibi%d: %s\n",
                        plugin->name, (long long)c.B, (long long)c.Hq, (long long)c.Hkv,
                        (long long)c.Sq, (long long)c.Skv, (long long)c.dk, (long long)c.dv,
                        c.masked, c.causal, c.kvlen, c.softcap, c.alibi, why);
            }
        }
    /* the rotary entry is optional (not declared: the host rotates) */
    static const int64_t rot[][3] = {{MHA_ROTARY_HALF, 64, 64},
                                     {MHA_ROTARY_HALF, 80, 20},
                                     {MHA_ROTARY_INTERLEAVED, 16, 16},
                                     {MHA_ROTARY_INTERLEAVED, 256, 64}};
    for (size_t i = 0;
         kit_has_op(plugin, MHA_OP_ROTARY) && plugin->rotary && i < sizeof rot / sizeof rot[0];
         i++) {
        if (kit_rotary_case(&kp, &ref, (int)rot[i][0], rot[i][1], rot[i][2], seed++, why,
                            sizeof why)) {
            (*passed)++;
        } else {
            (*failed)++;
            fprintf(report, "  %s: %s\n", plugin->name, why);
        }
    }
    static const int64_t gemms[][3] = {
        {1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {64, 96, 128}, {50, 200, 64}};
    /* epilogues: without bias, with bias, then each declared activation
     * (with a residual when declared too) on one shape each */
    const int residual = (plugin->epilogues & MHA_EPILOGUE_RESIDUAL) != 0;
    for (size_t i = 0; i < sizeof gemms / sizeof gemms[0]; i++)
        for (int v = 0; v < 2 + MHA_ACT_COUNT - 1; v++) {
            const int act = v < 2 ? MHA_ACT_NONE : v - 1;
            if (act != MHA_ACT_NONE && !(plugin->epilogues & MHA_EPILOGUE_ACT(act))) continue;
            if (act != MHA_ACT_NONE && (size_t)act % 2 != i % 2) continue;
            if (kit_gemm_case(&kp, &ref, gemms[i][0], gemms[i][1], gemms[i][2], v != 0, act,
                              act != MHA_ACT_NONE && residual, seed++, why, sizeof why)) {
                (*passed)++;
            } else {
                (*failed)++;
                fprintf(report, "  %s: %s\n", plugin->name, why);
            }
        }
    if (plugin->fini) plugin->fini(kp.state);
    if (reference->fini) reference->fini(ref.state);
    return *failed ? 1 : 0;
}
