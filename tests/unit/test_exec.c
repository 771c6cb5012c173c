/* test_exec.c -- the executor (exec.c, layer_util.c) against a naive
 * triple-loop attention layer written here: hand-built layers (self, cross,
 * GQA, causal, key padding, bool and float masks, sequence-first, bare 3D
 * and 4D, rotary embeddings from tables or inverse frequencies, ALiBi), an
 * plugin declaring no optional op (no rotary entry: the host rotates;
 * ALiBi refused, naming it), bitwise identical results for 1, 2, 3 and 7 threads, batch
 * chunking, NaN isolation, self-parallel plugins, cancellation, input checks
 * and allocation failure at every point. */
#include "testutil.h"

#include <float.h>
#include <pthread.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec_ext.h"
#include "layer.h"
#include "layer_reference.h"
#include "pool.h"
#include "registry.h"
#include "registry_table.h"

/* ------------------------------------------------------------------------ */
/* A tiny plain-C kernel set ("testk"): float accumulation in a fixed order,
 * GEMM blocks 4 x 8 so the executor's tile alignment is exercised. */
/* ------------------------------------------------------------------------ */

static atomic_int testk_gemm_calls, testk_attn_calls, testk_max_threads_seen;
static atomic_int testk_masked_calls; /* attention calls given a mask */

static size_t testk_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state, (void)precision;
    return (size_t)(K * N) * sizeof(float);
}

static int testk_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                        int64_t ldb, void *packed) {
    (void)state, (void)precision;
    float *p = packed;
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++)
            p[k * N + n] = B[k * ldb + n];
    return 0;
}

static int testk_gemm(void *state, const mha_gemm_args *g) {
    (void)state;
    atomic_fetch_add(&testk_gemm_calls, 1);
    if (g->num_threads > atomic_load(&testk_max_threads_seen))
        atomic_store(&testk_max_threads_seen, g->num_threads);
    if (g->m0 % 4 || g->n0 % 8 || g->m1 > g->M || g->n1 > g->N) return 1;
    const float *B = g->B_packed;
    for (int64_t m = g->m0; m < g->m1; m++)
        for (int64_t n = g->n0; n < g->n1; n++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < g->K; k++)
                acc += g->A[m * g->lda + k] * B[k * g->N + n];
            if (g->bias) acc += g->bias[n];
            g->C[m * g->ldc + n] = acc;
        }
    return 0;
}

static size_t testk_ws(void *state, const mha_attn_args *a) {
    (void)state;
    return (size_t)(a->Skv + 1) * sizeof(float);
}

static int testk_attention(void *state, const mha_attn_args *a, void *ws, size_t ws_size) {
    atomic_fetch_add(&testk_attn_calls, 1);
    if (a->mask) atomic_fetch_add(&testk_masked_calls, 1);
    if (ws_size < testk_ws(state, a)) return 2;
    float *s = ws;
    for (int64_t b = a->b0; b < a->b1; b++)
        for (int64_t h = a->h0; h < a->h1; h++)
            for (int64_t i = a->q0; i < a->q1; i++) {
                int64_t g = h / (a->Hq / a->Hkv);
                const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_ss;
                float *o = a->o + b * a->o_sb + h * a->o_sh + i * a->o_ss;
                float mx = -INFINITY;
                for (int64_t j = 0; j < a->Skv; j++) {
                    const float *k = a->k + b * a->k_sb + g * a->k_sh + j * a->k_ss;
                    float dot = 0.0f;
                    for (int64_t d = 0; d < a->dk; d++)
                        dot += q[d] * k[d];
                    float v = a->scale * dot;
                    if (a->softcap > 0.0f) v = a->softcap * tanhf(v / a->softcap);
                    if (a->mask) {
                        float mv = a->mask[b * a->m_sb + h * a->m_sh + i * a->m_sq + j * a->m_sk];
                        v = mv <= -FLT_MAX ? -INFINITY : v + mv;
                    }
                    if (a->causal && j > i + (a->causal_offset ? a->causal_offset[b] : 0))
                        v = -INFINITY;
                    s[j] = v;
                    if (v > mx) mx = v;
                }
                if (mx == -INFINITY) {
                    for (int64_t d = 0; d < a->dv; d++)
                        o[d] = 0.0f;
                    continue;
                }
                float sum = 0.0f;
                for (int64_t j = 0; j < a->Skv; j++) {
                    s[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - mx);
                    sum += s[j];
                }
                for (int64_t d = 0; d < a->dv; d++) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < a->Skv; j++)
                        acc += s[j] * a->v[b * a->v_sb + g * a->v_sh + j * a->v_ss + d];
                    o[d] = acc / sum;
                }
            }
    return 0;
}

/* A plugin declaring no optional op (no state, float32, no rotary, no
 * ALiBi, no epilogue): the host rotates Q and K for it and refuses it
 * ALiBi layers. */
static const mha_plugin testk_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "testk",
    .version = "0",
    .precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32),
    .gemm_m_block = 4,
    .gemm_n_block = 8,
    .gemm_packed_size = testk_packed_size,
    .gemm_pack_b = testk_pack_b,
    .gemm = testk_gemm,
    .attention_workspace_size = testk_ws,
    .attention = testk_attention,
};

/* the same kernels, declared self-parallel */
static const mha_plugin testk_sp_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "testk_sp",
    .version = "0",
    .precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32),
    .flags = MHA_PLUGIN_SELF_PARALLEL,
    .gemm_m_block = 4,
    .gemm_n_block = 8,
    .gemm_packed_size = testk_packed_size,
    .gemm_pack_b = testk_pack_b,
    .gemm = testk_gemm,
    .attention_workspace_size = testk_ws,
    .attention = testk_attention,
};

/* ------------------------------------------------------------------------ */
/* Test layers                                                               */
/* ------------------------------------------------------------------------ */

typedef struct cfg {
    int has_proj, cross, seq_first, causal, qkv_rank, bias;
    int64_t B, Sq, Skv, D, Dkv, Dout, Hq, Hkv, dk, dv;
    int attn_mask; /* 0 none, 1 bool, 2 float */
    int am_rank;
    int64_t am_shape[4];
    int kpm; /* 0 none, 1 bool True = attend, 2 bool True = ignore */
    float softcap;
    int rotary;         /* MHA_ROTARY_* */
    int64_t rotary_dim; /* of dk */
    int64_t rope_rows;  /* positions in the layer's tables (0: none) */
    int rope_inv;       /* inverse frequencies too (positions past the tables) */
    int alibi;          /* 0 none, 1 slope * j, 2 slope * (j - i) */
    int alibi_counted;  /* key j at the count of unpadded keys before it (BLOOM); the key
                           padding then has holes */
} cfg;

typedef struct fixture {
    cfg c;
    layer L;
    mha_tensor in[5];
    size_t n_in;
    mha_tensor out;
    int64_t out_numel;
} fixture;

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

static float *rand_floats(size_t n, uint64_t seed) {
    float *p = mha_malloc(NULL, n ? n * sizeof(float) : 1);
    tu_fill_random(p, n, seed);
    return p;
}

static void add_io(layer_io *io, const char *name, mha_io_role role, mha_dtype dt, int rank) {
    io->name = mha_strdup(NULL, name);
    io->role = role;
    io->dtype = dt;
    io->rank = rank;
    for (int i = 0; i < rank; i++)
        io->dims[i] = -1;
}

static void set_tensor(mha_tensor *t, mha_dtype dt, int rank, const int64_t *shape, void *data) {
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    t->data = data;
}

static void fixture_make(fixture *f, const cfg *c, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->c = *c;
    layer *L = &f->L;
    L->form = c->has_proj ? "test-layer" : "test-attention";
    L->has_proj = c->has_proj;
    L->d_model = c->D;
    L->d_kv = c->cross ? c->Dkv : c->D;
    L->d_out = c->Dout;
    L->q_heads = c->Hq;
    L->kv_heads = c->Hkv;
    L->d_head = c->dk;
    L->d_head_v = c->dv;
    L->scale = 1.0f / sqrtf((float)c->dk);
    L->softcap = c->softcap;
    L->causal = c->causal;
    L->cross = c->cross;
    L->seq_first = c->seq_first;
    L->qkv_rank = c->qkv_rank;
    L->kpm_true_means_ignore = c->kpm == 2;
    if (c->rotary) {
        /* theta 10000 as LLaMA; tables made the way the model makes them */
        const int64_t half = c->rotary_dim / 2;
        L->rotary = c->rotary;
        L->rotary_dim = c->rotary_dim;
        float *inv = mha_malloc(NULL, (size_t)half * sizeof(float));
        for (int64_t t = 0; t < half; t++)
            inv[t] = powf(10000.0f, -2.0f * (float)t / (float)c->rotary_dim);
        if (c->rope_rows > 0) {
            L->rotary_n_pos = c->rope_rows;
            L->rotary_cos = mha_malloc(NULL, (size_t)(c->rope_rows * half) * sizeof(float));
            L->rotary_sin = mha_malloc(NULL, (size_t)(c->rope_rows * half) * sizeof(float));
            layer_rotary_fill(inv, half, 0, c->rope_rows, L->rotary_cos, L->rotary_sin);
        }
        if (c->rope_inv)
            L->rotary_inv_freq = inv;
        else
            mha_free(NULL, inv);
    }
    if (c->alibi) {
        L->alibi_slopes = mha_malloc(NULL, (size_t)c->Hq * sizeof(float));
        for (int64_t h = 0; h < c->Hq; h++)
            L->alibi_slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)c->Hq);
        L->alibi_relative = c->alibi == 2;
        L->alibi_pos_from_mask = c->alibi_counted;
    }
    const int64_t dkv = L->d_kv;
    if (c->has_proj) {
        L->wq = rand_floats((size_t)(c->D * c->Hq * c->dk), seed + 1);
        L->wk = rand_floats((size_t)(dkv * c->Hkv * c->dk), seed + 2);
        L->wv = rand_floats((size_t)(dkv * c->Hkv * c->dv), seed + 3);
        L->wo = rand_floats((size_t)(c->Hq * c->dv * c->Dout), seed + 4);
        if (c->bias) {
            L->bq = rand_floats((size_t)(c->Hq * c->dk), seed + 5);
            L->bk = rand_floats((size_t)(c->Hkv * c->dk), seed + 6);
            L->bv = rand_floats((size_t)(c->Hkv * c->dv), seed + 7);
            L->bo = rand_floats((size_t)c->Dout, seed + 8);
        }
    }
    L->inputs = mha_calloc(NULL, 5, sizeof(layer_io));
    L->outputs = mha_calloc(NULL, 1, sizeof(layer_io));
    size_t n = 0;
    const int sf = c->seq_first;
    if (c->has_proj) {
        int64_t sq[3] = {sf ? c->Sq : c->B, sf ? c->B : c->Sq, c->D};
        add_io(&L->inputs[n], "query", MHA_ROLE_QUERY, MHA_DTYPE_FLOAT32, 3);
        set_tensor(&f->in[n], MHA_DTYPE_FLOAT32, 3, sq,
                   rand_floats((size_t)(c->B * c->Sq * c->D), seed + 10));
        n++;
        if (c->cross) {
            int64_t skv[3] = {sf ? c->Skv : c->B, sf ? c->B : c->Skv, c->Dkv};
            add_io(&L->inputs[n], "memory", MHA_ROLE_KEY_VALUE, MHA_DTYPE_FLOAT32, 3);
            set_tensor(&f->in[n], MHA_DTYPE_FLOAT32, 3, skv,
                       rand_floats((size_t)(c->B * c->Skv * c->Dkv), seed + 11));
            n++;
        }
        int64_t so[3] = {sf ? c->Sq : c->B, sf ? c->B : c->Sq, c->Dout};
        set_tensor(&f->out, MHA_DTYPE_FLOAT32, 3, so, NULL);
    } else {
        const char *names[3] = {"Q", "K", "V"};
        const mha_io_role roles[3] = {MHA_ROLE_Q, MHA_ROLE_K, MHA_ROLE_V};
        int64_t shapes[3][4];
        if (c->qkv_rank == 3) {
            int64_t s3[3][4] = {{c->B, c->Sq, c->Hq * c->dk, 0},
                                {c->B, c->Skv, c->Hkv * c->dk, 0},
                                {c->B, c->Skv, c->Hkv * c->dv, 0}};
            memcpy(shapes, s3, sizeof s3);
            int64_t so[3] = {c->B, c->Sq, c->Hq * c->dv};
            set_tensor(&f->out, MHA_DTYPE_FLOAT32, 3, so, NULL);
        } else {
            int64_t s4[3][4] = {{c->B, c->Hq, c->Sq, c->dk},
                                {c->B, c->Hkv, c->Skv, c->dk},
                                {c->B, c->Hkv, c->Skv, c->dv}};
            memcpy(shapes, s4, sizeof s4);
            int64_t so[4] = {c->B, c->Hq, c->Sq, c->dv};
            set_tensor(&f->out, MHA_DTYPE_FLOAT32, 4, so, NULL);
        }
        for (int i = 0; i < 3; i++) {
            add_io(&L->inputs[n], names[i], roles[i], MHA_DTYPE_FLOAT32, c->qkv_rank);
            set_tensor(&f->in[n], MHA_DTYPE_FLOAT32, c->qkv_rank, shapes[i], NULL);
            f->in[n].data =
                rand_floats((size_t)mha_tensor_numel(&f->in[n]), seed + 20 + (uint64_t)i);
            n++;
        }
    }
    if (c->attn_mask) {
        mha_dtype dt = c->attn_mask == 1 ? MHA_DTYPE_BOOL : MHA_DTYPE_FLOAT32;
        add_io(&L->inputs[n], "attn_mask", MHA_ROLE_ATTN_MASK, dt, c->am_rank);
        set_tensor(&f->in[n], dt, c->am_rank, c->am_shape, NULL);
        size_t numel = (size_t)mha_tensor_numel(&f->in[n]);
        uint64_t s = seed + 30;
        if (dt == MHA_DTYPE_BOOL) {
            uint8_t *m = malloc(numel ? numel : 1);
            for (size_t i = 0; i < numel; i++)
                m[i] = (tu_rand_u64(&s) % 10) < 7;
            f->in[n].data = m;
        } else {
            float *m = rand_floats(numel, seed + 31);
            for (size_t i = 0; i < numel; i++)
                if (tu_rand_u64(&s) % 10 < 2) m[i] = (i & 1) ? -INFINITY : -FLT_MAX;
            f->in[n].data = m;
        }
        n++;
    }
    if (c->kpm) {
        add_io(&L->inputs[n], "key_padding_mask", MHA_ROLE_KEY_PADDING_MASK, MHA_DTYPE_BOOL, 2);
        int64_t shape[2] = {c->B, c->Skv};
        uint8_t *m = malloc((size_t)(c->B * c->Skv));
        /* right padding: batch item b has Skv - b % 3 real keys (at least 1);
         * with alibi_counted, holes: key j > 0 is padding when (j + b) % 3 == 1 */
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t j = 0; j < c->Skv; j++) {
                int real =
                    c->alibi_counted ? j == 0 || (j + b) % 3 != 1 : j < max64(1, c->Skv - b % 3);
                m[b * c->Skv + j] = (uint8_t)(c->kpm == 1 ? real : !real);
            }
        set_tensor(&f->in[n], MHA_DTYPE_BOOL, 2, shape, m);
        n++;
    }
    f->n_in = n;
    L->n_inputs = n;
    add_io(&L->outputs[0], "output", MHA_ROLE_OUTPUT, MHA_DTYPE_FLOAT32, f->out.rank);
    L->n_outputs = 1;
    f->out_numel = mha_tensor_numel(&f->out);
}

static void fixture_free(fixture *f) {
    for (size_t i = 0; i < f->n_in; i++) {
        if (f->in[i].dtype == MHA_DTYPE_BOOL)
            free(f->in[i].data);
        else
            mha_free(NULL, f->in[i].data);
    }
    layer_clear(NULL, &f->L);
}

/* ------------------------------------------------------------------------ */
/* The naive layer: triple loops in double, straight from the definition.   */
/* ------------------------------------------------------------------------ */

static const mha_tensor *fixture_input(const fixture *f, mha_io_role role) {
    for (size_t i = 0; i < f->n_in; i++)
        if (f->L.inputs[i].role == role) return &f->in[i];
    return NULL;
}

/* Additive mask term of score (b, h, i, j); *masked = 1 when the key is
 * hidden (bool False / key padding / -inf / causal). */
static double naive_mask(const fixture *f, int64_t b, int64_t h, int64_t i, int64_t j,
                         int *masked) {
    const cfg *c = &f->c;
    double add = 0.0;
    *masked = c->causal && j > i;
    const mha_tensor *am = fixture_input(f, MHA_ROLE_ATTN_MASK);
    if (am) {
        const int64_t idx[4] = {b, h, i, j};
        int64_t off = 0;
        for (int k = 0; k < am->rank; k++) {
            int64_t dim = am->shape[k];
            int64_t ix = dim == 1 ? 0 : idx[4 - am->rank + k];
            off = off * dim + ix;
        }
        if (am->dtype == MHA_DTYPE_BOOL) {
            if (!((const uint8_t *)am->data)[off]) *masked = 1;
        } else {
            float v = ((const float *)am->data)[off];
            if (v <= -FLT_MAX)
                *masked = 1;
            else
                add += v;
        }
    }
    const mha_tensor *kp = fixture_input(f, MHA_ROLE_KEY_PADDING_MASK);
    if (kp) {
        int v = ((const uint8_t *)kp->data)[b * c->Skv + j] != 0;
        int attend = c->kpm == 1 ? v : !v;
        if (!attend) *masked = 1;
    }
    return add;
}

/* Rotates the head vectors of S rows of x [S, H*dk] (row stride ld) as
 * the model defines it, in double: the angle of position p and pair t is
 * float(p) * inv_freq[t] (its cos / sin from the layer's tables where they
 * reach, which hold the same values). */
static void naive_rotary(const layer *L, double *x, int64_t S, int64_t H, int64_t dk, int64_t ld) {
    const int64_t half = L->rotary_dim / 2;
    for (int64_t p = 0; p < S; p++)
        for (int64_t h = 0; h < H; h++) {
            double *r = x + p * ld + h * dk;
            for (int64_t t = 0; t < half; t++) {
                double c, sn;
                if (p < L->rotary_n_pos) {
                    c = L->rotary_cos[p * half + t];
                    sn = L->rotary_sin[p * half + t];
                } else {
                    const float ang = (float)p * L->rotary_inv_freq[t];
                    c = (double)(float)cos((double)ang);
                    sn = (double)(float)sin((double)ang);
                }
                double *x1 = L->rotary == MHA_ROTARY_INTERLEAVED ? r + 2 * t : r + t;
                double *x2 = L->rotary == MHA_ROTARY_INTERLEAVED ? x1 + 1 : x1 + half;
                const double a = *x1, b = *x2;
                *x1 = a * c - b * sn;
                *x2 = b * c + a * sn;
            }
        }
}

static void naive_forward(const fixture *f, float *y) {
    const cfg *c = &f->c;
    const layer *L = &f->L;
    const int64_t B = c->B, Sq = c->Sq, Skv = c->Skv, Hq = c->Hq, Hkv = c->Hkv;
    const int64_t dk = c->dk, dv = c->dv, nq = Hq * dk, nk = Hkv * dk, nv = Hkv * dv;
    double *q = calloc((size_t)(Sq * nq + 1), sizeof(double));
    double *k = calloc((size_t)(Skv * nk + 1), sizeof(double));
    double *v = calloc((size_t)(Skv * nv + 1), sizeof(double));
    double *att = calloc((size_t)(Sq * Hq * dv + 1), sizeof(double));
    double *s = calloc((size_t)(Skv + 1), sizeof(double));
    for (int64_t b = 0; b < B; b++) {
        /* Q, K, V of batch item b: [S, H*d] */
        if (c->has_proj) {
            const float *xq = fixture_input(f, MHA_ROLE_QUERY)->data;
            const mha_tensor *tkv = fixture_input(f, MHA_ROLE_KEY_VALUE);
            const float *xkv = tkv ? tkv->data : xq;
            const int64_t D = c->D, Dkv = c->cross ? c->Dkv : c->D;
            for (int64_t i = 0; i < Sq; i++) {
                const float *x = xq + (c->seq_first ? (i * B + b) : (b * Sq + i)) * D;
                for (int64_t n = 0; n < nq; n++) {
                    double acc = L->bq ? L->bq[n] : 0.0;
                    for (int64_t d = 0; d < D; d++)
                        acc += (double)x[d] * L->wq[d * nq + n];
                    q[i * nq + n] = acc;
                }
            }
            for (int64_t j = 0; j < Skv; j++) {
                const float *x = xkv + (c->seq_first ? (j * B + b) : (b * Skv + j)) * Dkv;
                for (int64_t n = 0; n < nk; n++) {
                    double acc = L->bk ? L->bk[n] : 0.0;
                    for (int64_t d = 0; d < Dkv; d++)
                        acc += (double)x[d] * L->wk[d * nk + n];
                    k[j * nk + n] = acc;
                }
                for (int64_t n = 0; n < nv; n++) {
                    double acc = L->bv ? L->bv[n] : 0.0;
                    for (int64_t d = 0; d < Dkv; d++)
                        acc += (double)x[d] * L->wv[d * nv + n];
                    v[j * nv + n] = acc;
                }
            }
        } else {
            const float *tq = fixture_input(f, MHA_ROLE_Q)->data;
            const float *tk = fixture_input(f, MHA_ROLE_K)->data;
            const float *tv = fixture_input(f, MHA_ROLE_V)->data;
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < Sq; i++)
                    for (int64_t d = 0; d < dk; d++)
                        q[i * nq + h * dk + d] = c->qkv_rank == 3
                                                     ? tq[(b * Sq + i) * nq + h * dk + d]
                                                     : tq[((b * Hq + h) * Sq + i) * dk + d];
            for (int64_t g = 0; g < Hkv; g++)
                for (int64_t j = 0; j < Skv; j++) {
                    for (int64_t d = 0; d < dk; d++)
                        k[j * nk + g * dk + d] = c->qkv_rank == 3
                                                     ? tk[(b * Skv + j) * nk + g * dk + d]
                                                     : tk[((b * Hkv + g) * Skv + j) * dk + d];
                    for (int64_t d = 0; d < dv; d++)
                        v[j * nv + g * dv + d] = c->qkv_rank == 3
                                                     ? tv[(b * Skv + j) * nv + g * dv + d]
                                                     : tv[((b * Hkv + g) * Skv + j) * dv + d];
                }
        }
        if (L->rotary) {
            naive_rotary(L, q, Sq, Hq, dk, nq);
            naive_rotary(L, k, Skv, Hkv, dk, nk);
        }
        /* attention per head and query row */
        for (int64_t h = 0; h < Hq; h++) {
            const int64_t g = h / (Hq / Hkv);
            for (int64_t i = 0; i < Sq; i++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < Skv; j++) {
                    double dot = 0.0;
                    for (int64_t d = 0; d < dk; d++)
                        dot += q[i * nq + h * dk + d] * k[j * nk + g * dk + d];
                    double sc = (double)L->scale * dot;
                    if (c->softcap > 0) sc = c->softcap * tanh(sc / c->softcap);
                    if (c->alibi) {
                        double pj = (double)j; /* BLOOM: unpadded keys before j */
                        if (c->alibi_counted) {
                            pj = -1.0;
                            for (int64_t kk = 0; kk <= j; kk++) {
                                int pad; /* (a row past the causal frontier of every key) */
                                naive_mask(f, b, h, Skv, kk, &pad);
                                pj += !pad;
                            }
                        }
                        sc += (double)L->alibi_slopes[h] * (c->alibi == 2 ? pj - (double)i : pj);
                    }
                    int masked;
                    double add = naive_mask(f, b, h, i, j, &masked);
                    s[j] = masked ? -INFINITY : sc + add;
                    if (s[j] > mx) mx = s[j];
                }
                double sum = 0.0;
                for (int64_t j = 0; j < Skv; j++) {
                    s[j] = mx == -INFINITY || s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                    sum += s[j];
                }
                for (int64_t d = 0; d < dv; d++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < Skv; j++)
                        acc += s[j] * v[j * nv + g * dv + d];
                    att[(i * Hq + h) * dv + d] = sum > 0 ? acc / sum : 0.0;
                }
            }
        }
        /* output */
        if (c->has_proj) {
            for (int64_t i = 0; i < Sq; i++)
                for (int64_t n = 0; n < c->Dout; n++) {
                    double acc = L->bo ? L->bo[n] : 0.0;
                    for (int64_t d = 0; d < Hq * dv; d++)
                        acc += att[i * Hq * dv + d] * L->wo[d * c->Dout + n];
                    y[(c->seq_first ? (i * B + b) : (b * Sq + i)) * c->Dout + n] = (float)acc;
                }
        } else {
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < Sq; i++)
                    for (int64_t d = 0; d < dv; d++) {
                        float val = (float)att[(i * Hq + h) * dv + d];
                        if (c->qkv_rank == 3)
                            y[(b * Sq + i) * Hq * dv + h * dv + d] = val;
                        else
                            y[((b * Hq + h) * Sq + i) * dv + d] = val;
                    }
        }
    }
    free(q);
    free(k);
    free(v);
    free(att);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Running the executor                                                      */
/* ------------------------------------------------------------------------ */

typedef struct run_opts {
    pool *pool;
    int threads;
    size_t chunk_bytes;
    int (*cancel)(void *);
    void *cancel_user;
} run_opts;

static mha_status run_exec_state(const mha_plugin *p, void *pstate, const run_opts *ro, fixture *f,
                                 float *y, mha_error *err) {
    exec_packed *pk = NULL;
    mha_status st = exec_pack_weights(NULL, &f->L, p, pstate, MHA_PRECISION_FLOAT32, &pk, err);
    if (st != MHA_OK) return st;
    exec_env env;
    memset(&env, 0, sizeof env);
    env.plugin = p;
    env.plugin_state = pstate;
    env.pool = ro ? ro->pool : NULL;
    env.num_threads = ro ? ro->threads : 1;
    env.chunk_bytes = ro ? ro->chunk_bytes : 0;
    env.cancel = ro ? ro->cancel : NULL;
    env.cancel_user = ro ? ro->cancel_user : NULL;
    f->out.data = y;
    st = exec_run(&env, &f->L, pk, f->in, f->n_in, &f->out, 1, err);
    f->out.data = NULL;
    exec_packed_free(NULL, pk);
    return st;
}

static mha_status run_exec(const mha_plugin *p, const run_opts *ro, fixture *f, float *y,
                           mha_error *err) {
    return run_exec_state(p, NULL, ro, f, y, err);
}

static float *out_buffer(const fixture *f) {
    float *y = malloc((size_t)(f->out_numel + 1) * sizeof(float));
    for (int64_t i = 0; i < f->out_numel; i++)
        y[i] = NAN; /* every element must be written */
    return y;
}

/* The configurations every test walks through. */
static cfg base_self(void) {
    cfg c = {.has_proj = 1,
             .bias = 1,
             .B = 2,
             .Sq = 5,
             .Skv = 5,
             .D = 16,
             .Dout = 16,
             .Hq = 2,
             .Hkv = 2,
             .dk = 8,
             .dv = 8,
             .qkv_rank = 3};
    return c;
}

static cfg make_cfg(int which) {
    cfg c = base_self();
    switch (which) {
    case 0:
        break; /* self */
    case 1:    /* cross, different widths, d_out != d_model */
        c.cross = 1, c.Sq = 3, c.Skv = 7, c.D = 16, c.Dkv = 12, c.Dout = 20, c.Hq = 4, c.Hkv = 4,
        c.dk = 4, c.dv = 4;
        break;
    case 2: /* GQA, causal */
        c.Hq = 4, c.Hkv = 2, c.dk = 4, c.dv = 4, c.causal = 1, c.Sq = c.Skv = 9;
        break;
    case 3: /* key padding, True = ignore (PyTorch) */
        c.kpm = 2, c.B = 3, c.Sq = c.Skv = 6;
        break;
    case 4: /* key padding True = attend, cross, no bias */
        c.kpm = 1, c.cross = 1, c.Dkv = 16, c.Sq = 4, c.Skv = 6, c.B = 3, c.bias = 0;
        break;
    case 5: /* bool attn_mask [B, 1, Sq, Skv] */
        c.attn_mask = 1, c.am_rank = 4, c.am_shape[0] = 2, c.am_shape[1] = 1, c.am_shape[2] = 5,
        c.am_shape[3] = 5;
        break;
    case 6: /* float attn_mask [Sq, Skv] with -inf / lowest entries, plus key padding */
        c.attn_mask = 2, c.am_rank = 2, c.am_shape[0] = 5, c.am_shape[1] = 5, c.kpm = 2;
        break;
    case 7: /* sequence-first self */
        c.seq_first = 1, c.B = 3, c.Sq = c.Skv = 4;
        break;
    case 8: /* sequence-first cross, causal-free, GQA */
        c.seq_first = 1, c.cross = 1, c.B = 2, c.Sq = 3, c.Skv = 5, c.Dkv = 8, c.Hq = 4, c.Hkv = 1,
        c.dk = 4, c.dv = 4;
        break;
    case 9: /* bare 3D, float mask [Sq, Skv], dv != dk, softcap */
        c.has_proj = 0, c.qkv_rank = 3, c.B = 2, c.Sq = 4, c.Skv = 6, c.Hq = 3, c.Hkv = 3, c.dk = 8,
        c.dv = 10, c.attn_mask = 2, c.am_rank = 2, c.am_shape[0] = 4, c.am_shape[1] = 6,
        c.softcap = 2.0f;
        break;
    case 10: /* bare 4D, GQA, bool mask [B, H, Sq, Skv], causal */
        c.has_proj = 0, c.qkv_rank = 4, c.B = 2, c.Sq = 4, c.Skv = 6, c.Hq = 6, c.Hkv = 2, c.dk = 8,
        c.dv = 8, c.attn_mask = 1, c.am_rank = 4, c.am_shape[0] = 2, c.am_shape[1] = 6,
        c.am_shape[2] = 4, c.am_shape[3] = 6, c.causal = 1;
        break;
    case 11: /* bare 4D, rank-3 float mask [H, Sq, Skv] */
        c.has_proj = 0, c.qkv_rank = 4, c.B = 1, c.Sq = 3, c.Skv = 5, c.Hq = 2, c.Hkv = 2, c.dk = 4,
        c.dv = 4, c.attn_mask = 2, c.am_rank = 3, c.am_shape[0] = 2, c.am_shape[1] = 3,
        c.am_shape[2] = 5;
        break;
    case 12: /* many rows: query blocks and several GEMM tiles */
        c.B = 1, c.Sq = c.Skv = 70, c.D = 24, c.Dout = 24, c.Hq = 3, c.Hkv = 3, c.dk = 8, c.dv = 8,
        c.causal = 1;
        break;
    case 13: /* LLaMA-like: rotate-half over every dim, GQA, causal, tables just long enough */
        c.Hq = 4, c.Hkv = 2, c.dk = 4, c.dv = 4, c.causal = 1, c.Sq = c.Skv = 9;
        c.rotary = MHA_ROTARY_HALF, c.rotary_dim = 4, c.rope_rows = 9;
        break;
    case 14: /* GPT-J-like: interleaved over half the dims, sequence-first, no tables at
              * all (every position from the inverse frequencies) */
        c.seq_first = 1, c.B = 3, c.Sq = c.Skv = 6, c.causal = 1;
        c.rotary = MHA_ROTARY_INTERLEAVED, c.rotary_dim = 4, c.rope_inv = 1;
        break;
    case 15: /* BLOOM-like: ALiBi on the key position, causal, key padding */
        c.B = 3, c.Sq = c.Skv = 7, c.Hq = 4, c.Hkv = 4, c.dk = 4, c.dv = 4, c.causal = 1;
        c.kpm = 1, c.alibi = 1;
        break;
    case 17: /* BLOOM-like: ALiBi positions counted over the unpadded keys, padding with
              * holes, causal */
        c.B = 3, c.Sq = c.Skv = 8, c.Hq = 4, c.Hkv = 4, c.dk = 4, c.dv = 4, c.causal = 1;
        c.kpm = 1, c.alibi = 1, c.alibi_counted = 1;
        break;
    case 16: /* cross, relative ALiBi and a partial rotary whose tables are too short */
        c.cross = 1, c.Dkv = 12, c.Sq = 5, c.Skv = 8, c.alibi = 2;
        c.rotary = MHA_ROTARY_HALF, c.rotary_dim = 6, c.rope_rows = 3, c.rope_inv = 1;
        break;
    }
    return c;
}

#define N_CFGS 18

/* The test kernels, the built-in scalar and every plugin built beside the
 * tests (MHA_PLUGIN_PATH): avx2, avx512, openmp (self-parallel). */
typedef struct backend_list {
    registry *reg;
    const mha_plugin *plugin[16];
    void *state[16];
    exec_services services;
    int n;
} backend_list;

static void backends_open(backend_list *bl) {
    memset(bl, 0, sizeof *bl);
    exec_services_init(&bl->services, NULL, NULL, NULL, MHA_LOG_ERROR, cpu_detect_features());
    bl->plugin[bl->n++] = &testk_plugin;
    registry_options ro = {.use_env = 1};
    assert_int_equal(registry_create(NULL, &ro, &bl->reg, NULL), MHA_OK);
    for (size_t i = 0; i < bl->reg->n_entries && bl->n < 16; i++) {
        const plugin_entry *e = &bl->reg->entries[i];
        if (!e->usable) continue;
#if defined(TEST_UNDER_TSAN)
        /* libgomp is not instrumented: TSan cannot see its barriers and
         * reports races inside any OpenMP region. testk_sp still covers the
         * executor's self-parallel path. */
        if (e->plugin->flags & MHA_PLUGIN_SELF_PARALLEL) continue;
#endif
        if (e->plugin->init)
            assert_int_equal(e->plugin->init(&bl->services.table, &bl->state[bl->n]), 0);
        bl->plugin[bl->n++] = e->plugin;
    }
}

static void backends_close(backend_list *bl) {
    for (int i = 0; i < bl->n; i++)
        if (bl->plugin[i]->fini && bl->plugin[i] != &testk_plugin)
            bl->plugin[i]->fini(bl->state[i]);
    registry_free(bl->reg);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

static void test_forms_match_naive(void **state) {
    (void)state;
    backend_list bl;
    backends_open(&bl);
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &pl, NULL), MHA_OK);
    for (int w = 0; w < N_CFGS; w++) {
        cfg c = make_cfg(w);
        fixture f;
        fixture_make(&f, &c, 100 + (uint64_t)w * 17);
        float *ref = out_buffer(&f);
        naive_forward(&f, ref);
        for (int pi = 0; pi < bl.n; pi++) {
            for (int t = 1; t <= 4; t += 3) {
                run_opts ro = {.pool = pl, .threads = t};
                float *y = out_buffer(&f);
                mha_error err = {0};
                mha_status st = run_exec_state(bl.plugin[pi], bl.state[pi], &ro, &f, y, &err);
                if (c.alibi && !(bl.plugin[pi]->ops & MHA_OP_ALIBI)) {
                    /* a plugin without ALiBi would drop the slopes: refused, named */
                    assert_int_equal(st, MHA_ERR_BACKEND);
                    if (!strstr(err.message, bl.plugin[pi]->name) ||
                        !strstr(err.message, "MHA_OP_ALIBI"))
                        fail_msg("cfg %d: '%s'", w, err.message);
                    free(y);
                    continue;
                }
                if (st != MHA_OK) fail_msg("cfg %d %s: %s", w, bl.plugin[pi]->name, err.message);
                double e = tu_max_rel_err(y, ref, (size_t)f.out_numel);
                if (!(e < 1e-4))
                    fail_msg("cfg %d %s threads %d: max rel err %g", w, bl.plugin[pi]->name, t, e);
                free(y);
            }
        }
        /* the reference forward (scalar plugin, no pool) */
        float *y = out_buffer(&f);
        f.out.data = y;
        mha_error err = {0};
        assert_int_equal(layer_reference_forward(NULL, &f.L, f.in, f.n_in, &f.out, 1, &err),
                         MHA_OK);
        f.out.data = NULL;
        assert_true(tu_max_rel_err(y, ref, (size_t)f.out_numel) < 1e-5);
        free(y);
        free(ref);
        fixture_free(&f);
    }
    pool_destroy(pl);
    backends_close(&bl);
}

/* The reference forward runs its projections on the interpreter's GEMM
 * (faster at load) but keeps the scalar backend's numerics: every form
 * gives the scalar backend's bits at one thread, bias and all. */
static void test_reference_is_scalar_bits(void **state) {
    (void)state;
    const mha_plugin *scalar = mha_scalar_plugin_table();
    assert_non_null(scalar);
    for (int w = 0; w < N_CFGS; w++) {
        cfg c = make_cfg(w);
        fixture f;
        fixture_make(&f, &c, 300 + (uint64_t)w * 13);
        float *want = out_buffer(&f), *got = out_buffer(&f);
        mha_error err = {0};
        run_opts ro = {.pool = NULL, .threads = 1};
        if (run_exec_state(scalar, NULL, &ro, &f, want, &err) != MHA_OK)
            fail_msg("cfg %d scalar: %s", w, err.message);
        f.out.data = got;
        if (layer_reference_forward(NULL, &f.L, f.in, f.n_in, &f.out, 1, &err) != MHA_OK)
            fail_msg("cfg %d reference: %s", w, err.message);
        f.out.data = NULL;
        if (memcmp(want, got, (size_t)f.out_numel * sizeof(float)) != 0)
            fail_msg("cfg %d: the reference forward differs from the scalar backend's bits", w);
        free(want);
        free(got);
        fixture_free(&f);
    }
}

/* Thread counts 1, 2, 3 and 7 give bitwise identical outputs, with batch x
 * heads below, equal to and above the thread count. */
static void test_threads_bitwise(void **state) {
    (void)state;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 6, 0, &pl, NULL), MHA_OK);
    cfg shapes[9];
    shapes[0] = base_self();
    shapes[0].B = 1, shapes[0].Hq = shapes[0].Hkv = 2, shapes[0].Sq = shapes[0].Skv = 37; /* BH 2 */
    shapes[1] = base_self();
    shapes[1].B = 1, shapes[1].Hq = shapes[1].Hkv = 7, shapes[1].dk = shapes[1].dv = 4,
    shapes[1].D = shapes[1].Dout = 20, shapes[1].causal = 1,
    shapes[1].Sq = shapes[1].Skv = 19; /* BH 7 */
    shapes[2] = base_self();
    shapes[2].B = 3, shapes[2].Hq = 4, shapes[2].Hkv = 2, shapes[2].dk = shapes[2].dv = 4,
    shapes[2].Sq = shapes[2].Skv = 11, shapes[2].kpm = 2; /* BH 12 */
    shapes[3] = make_cfg(8);                              /* seq-first cross GQA */
    shapes[4] = make_cfg(10);                             /* bare 4D causal */
    shapes[5] = make_cfg(9);                              /* bare 3D */
    shapes[5].B = 1;
    shapes[6] = make_cfg(16); /* rotary + ALiBi */
    shapes[7] = make_cfg(14); /* rotary, sequence-first */
    shapes[7].B = 1, shapes[7].Sq = shapes[7].Skv = 40;
    shapes[8] = base_self(); /* 240 rows: 4 row tiles, the middle ones cut at 2 threads */
    shapes[8].B = 4, shapes[8].Sq = shapes[8].Skv = 60;
    const int counts[4] = {1, 2, 3, 7};
    backend_list bl;
    backends_open(&bl);
    fprintf(stderr, "backends checked:");
    for (int i = 0; i < bl.n; i++)
        fprintf(stderr, " %s", bl.plugin[i]->name);
    fprintf(stderr, "\n");
    for (int w = 0; w < 9; w++) {
        fixture f;
        fixture_make(&f, &shapes[w], 900 + (uint64_t)w);
        for (int pi = 0; pi < bl.n; pi++) {
            const mha_plugin *plugin = bl.plugin[pi];
            if (shapes[w].alibi && !(plugin->ops & MHA_OP_ALIBI)) continue; /* refused: above */
            void *pstate = bl.state[pi];
            float *first = NULL;
            for (int t = 0; t < 4; t++) {
                run_opts rop = {.pool = pl, .threads = counts[t]};
                float *y = out_buffer(&f);
                mha_error err = {0};
                if (run_exec_state(plugin, pstate, &rop, &f, y, &err) != MHA_OK)
                    fail_msg("shape %d backend %s: %s", w, plugin->name, err.message);
                if (!first) {
                    first = y;
                    continue;
                }
                if (memcmp(first, y, (size_t)f.out_numel * sizeof(float)) != 0)
                    fail_msg("shape %d backend %s: %d threads differ from 1 thread", w,
                             plugin->name, counts[t]);
                free(y);
            }
            free(first);
        }
        fixture_free(&f);
    }
    backends_close(&bl);
    pool_destroy(pl);
}

/* exec_gemm_plan's cut of C [M, W->N] for `threads` threads, with the
 * avx512 kernels' blocks (12 x 32). */
static void plan_units(const exec_gemm_weights *W, int64_t M, int threads, exec_gemm_family *f) {
    mha_plugin p;
    memset(&p, 0, sizeof p);
    p.gemm_m_block = 12;
    p.gemm_n_block = 32;
    memset(f, 0, sizeof *f);
    f->W = W;
    f->M = M;
    f->n_segs = 1;
    exec_gemm_plan(f, &p, threads);
}

/* exec_gemm_plan's units of one GEMM (blocks 12 x 32 as the avx512
 * kernels): every C element in exactly one unit; a weight of many MiB (the
 * [768 x 50257] logits of GPT-2, the FFN's [768 x 3072]) cut into column
 * slabs of at most ~2 MiB of B, each over many rows, their count a multiple
 * of the threads; a narrow or deep weight ([3072 x 768]) left whole-width. */
static void check_gemm_units(int64_t M, int64_t K, int64_t N, int threads, int want_slabs) {
    exec_gemm_weights W = {.K = K, .N = N};
    exec_gemm_family f;
    plan_units(&W, M, threads, &f);
    const int64_t mb = (M + 11) / 12, nb = (N + 31) / 32;
    int *seen = calloc((size_t)(mb * nb), sizeof(int));
    assert_non_null(seen);
    int64_t widest = 0, rows_min = M;
    for (int64_t u = 0; u < f.n_units; u++) {
        int64_t seg, r[4];
        exec_gemm_unit_range(&f, u, &seg, r);
        assert_true(r[0] % 12 == 0 && r[2] % 32 == 0 && r[0] < r[1] && r[2] < r[3]);
        if (r[3] - r[2] > widest) widest = r[3] - r[2];
        if (r[1] - r[0] < rows_min) rows_min = r[1] - r[0];
        for (int64_t i = r[0] / 12; i < (r[1] + 11) / 12; i++)
            for (int64_t j = r[2] / 32; j < (r[3] + 31) / 32; j++)
                seen[i * nb + j]++;
    }
    for (int64_t i = 0; i < mb * nb; i++)
        if (seen[i] != 1)
            fail_msg("M %lld K %lld N %lld, %d threads: block %lld computed %d times", (long long)M,
                     (long long)K, (long long)N, threads, (long long)i, seen[i]);
    free(seen);
    if (want_slabs) {
        assert_true(f.n_tiles > 1);
        assert_true(widest * K * (int64_t)sizeof(float) <= ((int64_t)2 << 20) + 32 * K * 4);
        assert_true(rows_min >= 72 || rows_min == M);
        assert_int_equal(f.n_units % threads, 0);
    } else {
        assert_int_equal(widest, N);
    }
}

static void test_gemm_column_slabs(void **state) {
    (void)state;
    for (int t = 1; t <= 2; t++) {
        check_gemm_units(1024, 768, 50257, t, 1); /* GPT-2 logits */
        check_gemm_units(1024, 768, 3072, t, 1);  /* FFN up */
        check_gemm_units(1576, 768, 2304, t, 1);  /* ViT's Q|K|V */
        check_gemm_units(4096, 384, 1536, t, 0);  /* MiniLM FFN up: 2.4 MB, whole width */
        check_gemm_units(1024, 3072, 768, t, 0);  /* FFN down: deep, whole width */
        check_gemm_units(4096, 768, 2304, t, 1);  /* W1's Q|K|V: row pieces last */
        check_gemm_units(4000, 768, 2304, t, 1);  /* a short last tile: column pieces */
    }
    check_gemm_units(100, 64, 96, 1, 0); /* small (at 2 threads its columns split: too few rows) */
    check_gemm_units(5, 768, 50257, 2, 1); /* a few rows: slabs over all of them */
}

/* At 2 threads, exec_gemm_plan's units of the four models' GEMMs end
 * small: a phase waits for its last unit, so the last 2 x threads units
 * (in claim order) each hold at most end_share of the largest unit's
 * elements of C (a whole-width tile's tail in 2 x threads column pieces,
 * a slab's in halves, a tall slab tile's in row quarters), and a slab
 * GEMM has at least 8 units per thread (BERT's Q|K|V was 8 units in all,
 * its last ones as large as the rest). */
static void check_gemm_balance(int64_t M, int64_t K, int64_t N, double end_share) {
    const int threads = 2;
    exec_gemm_weights W = {.K = K, .N = N};
    exec_gemm_family f;
    plan_units(&W, M, threads, &f);
    int64_t largest = 0, last = 0;
    for (int64_t u = 0; u < f.n_units; u++) {
        int64_t seg, r[4];
        exec_gemm_unit_range(&f, u, &seg, r);
        const int64_t size = (r[1] - r[0]) * (r[3] - r[2]);
        if (size > largest) largest = size;
        if (u >= f.n_units - 2 * threads && size > last) last = size;
    }
    print_message("M %lld K %lld N %lld: %lld units, the last at most %.2f of the largest\n",
                  (long long)M, (long long)K, (long long)N, (long long)f.n_units,
                  (double)last / (double)largest);
    assert_true((double)last <= end_share * (double)largest);
    if (f.n_tiles > 1) assert_true(f.n_units >= 8 * threads);
}

static void test_gemm_balanced_end(void **state) {
    (void)state;
    check_gemm_balance(1024, 768, 2304, 0.5);  /* BERT Q|K|V: 4 slabs */
    check_gemm_balance(1024, 768, 3072, 0.5);  /* BERT FFN up: 6 slabs */
    check_gemm_balance(1576, 768, 2304, 0.5);  /* ViT Q|K|V */
    check_gemm_balance(1576, 768, 3072, 0.5);  /* ViT FFN up */
    check_gemm_balance(1024, 768, 768, 0.25);  /* BERT out: whole width */
    check_gemm_balance(1024, 3072, 768, 0.25); /* BERT FFN down */
    check_gemm_balance(1576, 3072, 768, 0.25); /* ViT FFN down */
    check_gemm_balance(4096, 384, 1536, 0.25); /* MiniLM FFN up */
    /* W1's Q|K|V: 4 slabs over tiles of 1032 rows, the last cut into row
     * pieces of 264 (the column halves were 0.5) */
    check_gemm_balance(4096, 768, 2304, 0.26);
}

/* At 2 threads a slab GEMM whose units go out from both ends (paired_ends:
 * the caller claims from the first unit, the helper from the last) has
 * its cut tiles in the middle: every unit is paired, the units are in row
 * order, each end starts with whole tiles and meets the other in the
 * pieces, each thread's rows are one range (the step after reads its own
 * rows), and the pieces are one kernel row block (72 rows) by the slab.
 * Simulated claims (a unit's time its elements) end within one piece.
 * Without paired_ends, and for whole-width weights, the pieces stay last
 * (test_gemm_balanced_end). */
static void check_gemm_middle(int64_t M, int64_t K, int64_t N, double piece_share) {
    exec_gemm_weights W = {.K = K, .N = N};
    exec_gemm_family f;
    mha_plugin p;
    memset(&p, 0, sizeof p);
    p.gemm_m_block = 12;
    p.gemm_n_block = 32;
    memset(&f, 0, sizeof f);
    f.W = &W;
    f.M = M;
    f.n_segs = 1;
    f.paired_ends = 1;
    exec_gemm_plan(&f, &p, 2);
    assert_true(f.tail_tiles > 0);
    if (f.n_tiles == 1) { /* whole width: the pieces last, after the paired body */
        assert_int_equal(f.tail_first, f.m_tiles - f.tail_tiles);
        assert_true(exec_gemm_body_units(&f) < f.n_units);
        return;
    }
    assert_int_equal(exec_gemm_body_units(&f), f.n_units);
    int64_t *r = malloc(sizeof(int64_t) * 4 * (size_t)f.n_units);
    assert_non_null(r);
    int64_t largest = 0, area = 0;
    for (int64_t u = 0; u < f.n_units; u++) {
        int64_t seg, *q = r + 4 * u;
        exec_gemm_unit_range(&f, u, &seg, q);
        const int64_t size = (q[1] - q[0]) * (q[3] - q[2]);
        area += size;
        if (size > largest) largest = size;
        if (u > 0) assert_true(q[0] >= r[4 * (u - 1)]); /* row order */
    }
    assert_int_equal(area, M * N);
    const int64_t first = (r[1] - r[0]) * (r[3] - r[2]);
    const int64_t n = f.n_units, *z = r + 4 * (n - 1);
    assert_int_equal(r[1] - r[0], f.m_tile); /* the front starts on a whole tile */
    assert_true(first == largest);
    assert_true(z[0] >= f.m_tile * (f.m_tiles - 1)); /* the back on the last tile */
    /* two threads of equal speed claiming from both ends */
    int64_t front = 0, back = n, clock[2] = {0, 0}, lo[2] = {M, M}, hi[2] = {0, 0};
    while (front < back) {
        const int t = clock[1] < clock[0];
        const int64_t u = t == 0 ? front++ : --back, *q = r + 4 * u;
        const int64_t size = (q[1] - q[0]) * (q[3] - q[2]);
        clock[t] += size;
        if (q[0] < lo[t]) lo[t] = q[0];
        if (q[1] > hi[t]) hi[t] = q[1];
    }
    const int64_t gap = clock[0] > clock[1] ? clock[0] - clock[1] : clock[1] - clock[0];
    print_message("M %lld K %lld N %lld: %lld units, the caller's rows [%lld, %lld), the helper's "
                  "[%lld, %lld), the end %.3f of the largest unit apart\n",
                  (long long)M, (long long)K, (long long)N, (long long)n, (long long)lo[0],
                  (long long)hi[0], (long long)lo[1], (long long)hi[1],
                  (double)gap / (double)largest);
    assert_true(lo[0] == 0 && hi[1] == M);
    assert_true(hi[0] <= lo[1] + f.m_tile); /* they share at most the tile where they meet */
    assert_true((double)gap <= piece_share * (double)largest);
    assert_int_equal(f.tail_m_tile, 72);
    free(r);
}

static void test_gemm_middle_pieces(void **state) {
    (void)state;
    check_gemm_middle(1024, 768, 2304, 0.3); /* BERT Q|K|V: 4 slabs, tiles of 256 rows */
    check_gemm_middle(1024, 768, 3072, 0.3); /* BERT FFN up: 6 slabs */
    check_gemm_middle(1576, 768, 2304, 0.3); /* ViT Q|K|V */
    check_gemm_middle(4096, 768, 2304, 0.1); /* W1's Q|K|V: tiles of 1032 rows */
    check_gemm_middle(1024, 3072, 768, 0);   /* BERT FFN down: whole width, pieces last */
    check_gemm_middle(4096, 384, 1536, 0);   /* MiniLM FFN up: the same */
}

/* exec_gemm_run with a slab weight (2 threads: 72-row pieces in the
 * middle) and a whole-width one (column pieces last) is bitwise the same
 * at 1, 2 and 3 threads on every backend, and its rows epilogue sees every
 * row once, after its last piece. The slab shape (629 MFLOP a run) skips
 * the reference kernels (scalar, testk). */
static void count_rows(void *user, float *C, int64_t N, int64_t m0, int64_t m1) {
    (void)C;
    (void)N;
    atomic_int *count = user;
    for (int64_t m = m0; m < m1; m++)
        atomic_fetch_add(&count[m], 1);
}

static void test_gemm_middle_pieces_bitwise(void **state) {
    (void)state;
    const struct { int64_t M, K, N; } shapes[] = {{300, 64, 16384}, {300, 24, 96}};
    backend_list bl;
    backends_open(&bl);
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, NULL), MHA_OK);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t M = shapes[i].M, K = shapes[i].K, N = shapes[i].N;
        float *w = malloc(sizeof(float) * (size_t)(K * N)),
              *bias = malloc(sizeof(float) * (size_t)N);
        float *A = malloc(sizeof(float) * (size_t)(M * K));
        float *C[3];
        atomic_int *seen = malloc(sizeof(atomic_int) * (size_t)M);
        assert_true(w && bias && A && seen);
        tu_fill_random(w, (size_t)(K * N), 31 + i);
        tu_fill_random(bias, (size_t)N, 37 + i);
        tu_fill_random(A, (size_t)(M * K), 41 + i);
        for (int pi = 0; pi < bl.n; pi++) {
            const mha_plugin *plugin = bl.plugin[pi];
            if (i == 0 && (plugin == &testk_plugin || strcmp(plugin->name, "scalar") == 0))
                continue;
            exec_gemm_weights W;
            memset(&W, 0, sizeof W);
            const float *wp[1] = {w}, *bp[1] = {bias};
            const int64_t cols[1] = {N};
            mha_error err;
            assert_int_equal(exec_pack_parts(NULL, plugin, bl.state[pi], MHA_PRECISION_FLOAT32, K,
                                             1, wp, cols, bp, "W", &W, &err),
                             MHA_OK);
            for (int t = 0; t < 3; t++) {
                C[t] = malloc(sizeof(float) * (size_t)(M * N));
                assert_non_null(C[t]);
                for (int64_t m = 0; m < M; m++)
                    atomic_init(&seen[m], 0);
                exec_env env;
                memset(&env, 0, sizeof env);
                env.plugin = plugin;
                env.plugin_state = bl.state[pi];
                env.pool = pl;
                env.num_threads = t + 1;
                exec_gemm_epilogue ep = {.rows = count_rows, .user = seen};
                if (exec_gemm_run(&env, &W, A, M, C[t], NULL, &ep, &err) != MHA_OK)
                    fail_msg("%s, %d threads: %s", plugin->name, t + 1, err.message);
                for (int64_t m = 0; m < M; m++)
                    if (atomic_load(&seen[m]) != 1)
                        fail_msg("%s, %d threads: row %lld completed %d times", plugin->name, t + 1,
                                 (long long)m, atomic_load(&seen[m]));
                if (t > 0 && memcmp(C[0], C[t], sizeof(float) * (size_t)(M * N)) != 0)
                    fail_msg("M %lld K %lld N %lld, %s: %d threads differ from 1 thread",
                             (long long)M, (long long)K, (long long)N, plugin->name, t + 1);
            }
            for (int t = 0; t < 3; t++)
                free(C[t]);
            exec_weights_free(NULL, &W);
        }
        free(w);
        free(bias);
        free(A);
        free(seen);
    }
    pool_destroy(pl);
    backends_close(&bl);
}

/* Self-attention's W_q|W_k|W_v is packed head by head (exec_qkv_by_head):
 * columns [h (2 dk + dv), (h + 1)(2 dk + dv)) of the Q|K|V GEMM are Q_h,
 * K_h and V_h, so a column slab of whole heads is all a core needs for
 * those heads' attention. Checked: the packed columns hold each head's
 * three parts there (else they are Q of other heads), and a run is
 * bitwise the run of the side-by-side packing at 1, 2 and 3 threads on
 * every backend (3 heads, dk 8, dv 4: odd units). Rotary layers keep the
 * side-by-side packing. */
static void test_qkv_by_head(void **state) {
    (void)state;
    cfg c = base_self();
    c.B = 2, c.Sq = c.Skv = 29, c.Hq = c.Hkv = 3, c.dk = 8, c.dv = 4, c.D = 20, c.Dout = 12;
    fixture f;
    fixture_make(&f, &c, 4242);
    const layer *L = &f.L;
    const int64_t K = c.D, H = c.Hq, w3 = 2 * c.dk + c.dv, N = H * w3, M = c.B * c.Sq;
    const float *x = fixture_input(&f, MHA_ROLE_QUERY)->data;
    backend_list bl;
    backends_open(&bl);
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &pl, NULL), MHA_OK);
    float *C = malloc(sizeof(float) * (size_t)(M * N));
    assert_non_null(C);
    for (int pi = 0; pi < bl.n; pi++) {
        const mha_plugin *plugin = bl.plugin[pi];
        void *ps = bl.state[pi];
        exec_packed *pk = NULL;
        mha_error err = {0};
        if (exec_pack_weights(NULL, L, plugin, ps, MHA_PRECISION_FLOAT32, &pk, &err) != MHA_OK)
            fail_msg("%s: %s", plugin->name, err.message);
        assert_true(pk->fused_qkv && pk->qkv_by_head);
        exec_env env;
        memset(&env, 0, sizeof env);
        env.plugin = plugin;
        env.plugin_state = ps;
        assert_int_equal(exec_gemm_tile(&env, &pk->qkv, M, x, K, C, N, 0, M, 0, N, 1, NULL, &err),
                         MHA_OK);
        const float *w[3] = {L->wq, L->wk, L->wv}, *b[3] = {L->bq, L->bk, L->bv};
        const int64_t d[3] = {c.dk, c.dk, c.dv}, at[3] = {0, c.dk, 2 * c.dk};
        for (int64_t m = 0; m < M; m++)
            for (int64_t h = 0; h < H; h++)
                for (int part = 0; part < 3; part++)
                    for (int64_t j = 0; j < d[part]; j++) {
                        const int64_t col = h * d[part] + j;
                        double want = b[part] ? b[part][col] : 0.0;
                        for (int64_t k = 0; k < K; k++)
                            want += (double)x[m * K + k] * w[part][k * H * d[part] + col];
                        const double got = C[m * N + h * w3 + at[part] + j];
                        if (fabs(got - want) > 1e-4 * (1.0 + fabs(want)))
                            fail_msg("%s: row %lld head %lld part %d dim %lld: %g, want %g",
                                     plugin->name, (long long)m, (long long)h, part, (long long)j,
                                     got, want);
                    }
        /* the same layer with Q | K | V side by side */
        exec_packed side = *pk;
        side.qkv_by_head = 0;
        memset(&side.qkv, 0, sizeof side.qkv);
        const int64_t cols[3] = {H * c.dk, H * c.dk, H * c.dv};
        assert_int_equal(exec_pack_parts(NULL, plugin, ps, MHA_PRECISION_FLOAT32, K, 3, w, cols, b,
                                         "W_q|W_k|W_v", &side.qkv, &err),
                         MHA_OK);
        float *first = NULL;
        for (int t = 0; t < 6; t++) {
            float *y = out_buffer(&f);
            env.pool = pl;
            env.num_threads = t % 3 + 1;
            f.out.data = y;
            if (exec_run(&env, L, t < 3 ? pk : &side, f.in, f.n_in, &f.out, 1, &err) != MHA_OK)
                fail_msg("%s: %s", plugin->name, err.message);
            f.out.data = NULL;
            if (!first) {
                first = y;
                continue;
            }
            if (memcmp(first, y, (size_t)f.out_numel * sizeof(float)) != 0)
                fail_msg("%s: %s at %d threads differs from head by head at 1 thread", plugin->name,
                         t < 3 ? "head by head" : "side by side", t % 3 + 1);
            free(y);
        }
        free(first);
        exec_weights_free(NULL, &side.qkv);
        exec_packed_free(NULL, pk);
    }
    free(C);
    fixture_free(&f);
    cfg r = make_cfg(14); /* self, 2 heads each side, rotary: side by side */
    fixture_make(&f, &r, 4243);
    exec_packed *pk = NULL;
    assert_int_equal(
        exec_pack_weights(NULL, &f.L, bl.plugin[0], bl.state[0], MHA_PRECISION_FLOAT32, &pk, NULL),
        MHA_OK);
    assert_false(pk->qkv_by_head);
    exec_packed_free(NULL, pk);
    fixture_free(&f);
    pool_destroy(pl);
    backends_close(&bl);
}

/* The testk kernels, each call stamped from one clock: the last end of a
 * Q|K|V GEMM call (N == seqk_qkv_n; its second column piece held 30 ms)
 * and the first start of an attention call. */
static atomic_int seqk_clock, seqk_qkv_end, seqk_attn_start;
static int64_t seqk_qkv_n;

static int seqk_gemm(void *state, const mha_gemm_args *g) {
    const int rc = testk_gemm(state, g);
    if (g->N != seqk_qkv_n) return rc;
    if (g->n0 > 0) nanosleep(&(struct timespec){0, 30000000}, NULL);
    const int t = atomic_fetch_add(&seqk_clock, 1);
    int at = atomic_load(&seqk_qkv_end);
    while (t > at && !atomic_compare_exchange_weak(&seqk_qkv_end, &at, t))
        ;
    return rc;
}

static int seqk_attention(void *state, const mha_attn_args *a, void *ws, size_t ws_size) {
    const int t = atomic_fetch_add(&seqk_clock, 1);
    int at = atomic_load(&seqk_attn_start);
    while (t < at && !atomic_compare_exchange_weak(&seqk_attn_start, &at, t))
        ;
    return testk_attention(state, a, ws, ws_size);
}

/* One batch item's Q|K|V at 2 threads is two column pieces (exec_merge):
 * the attention of the heads in the first piece starts while the second
 * piece is still being computed (its GEMM held 30 ms), on the caller, or
 * on the helper when it is there first; with a phase end between them
 * (1 thread, 3 threads, two batch items) every Q|K|V call ends first.
 * A causal layer's whole heads too. The results are bitwise the same in
 * every case. */
static void test_qkv_attention_one_phase(void **state) {
    (void)state;
    mha_plugin seqk = testk_plugin;
    seqk.name = "seqk";
    seqk.gemm = seqk_gemm;
    seqk.attention = seqk_attention;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &pl, NULL), MHA_OK);
    for (int64_t i = 0; i < 4; i++) {
        const int64_t B = 1 + i % 2;
        cfg c = base_self();
        c.B = B, c.Sq = c.Skv = 7, c.Hq = c.Hkv = 4, c.dk = 8, c.dv = 6, c.D = 20, c.Dout = 12;
        c.causal = i >= 2; /* whole causal heads too (test_causal_heads_paired) */
        /* 88 columns: pieces of 48 and 40, head 2's columns [44, 66) in both */
        seqk_qkv_n = c.Hq * (2 * c.dk + c.dv);
        fixture f;
        fixture_make(&f, &c, 77 + (uint64_t)i);
        float *first = NULL;
        for (int threads = 1; threads <= 3; threads++) {
            atomic_store(&seqk_clock, 0);
            atomic_store(&seqk_qkv_end, -1);
            atomic_store(&seqk_attn_start, 1 << 30);
            run_opts ro = {.pool = pl, .threads = threads};
            float *y = out_buffer(&f);
            mha_error err = {0};
            if (run_exec(&seqk, &ro, &f, y, &err) != MHA_OK) fail_msg("%s", err.message);
            const int overlap = atomic_load(&seqk_attn_start) < atomic_load(&seqk_qkv_end);
            if (overlap != (B == 1 && threads == 2))
                fail_msg("B %lld%s, %d threads: attention started %s the last Q|K|V call ended",
                         (long long)B, c.causal ? " causal" : "", threads,
                         overlap ? "before" : "after");
            if (!first) {
                first = y;
                continue;
            }
            if (memcmp(first, y, (size_t)f.out_numel * sizeof(float)) != 0)
                fail_msg("B %lld: %d threads differ from 1 thread", (long long)B, threads);
            free(y);
        }
        free(first);
        fixture_free(&f);
    }
    pool_destroy(pl);
}

/* The testk attention, each call's (batch item, head) stamped with its
 * thread (the test's own, or another); a call waits (up to 10 s) until
 * both threads have run one, so the helper takes part, then 1 ms. */
static pthread_t pairk_main;
static atomic_int pairk_seen, pairk_owner[4][8];

static int pairk_attention(void *state, const mha_attn_args *a, void *ws, size_t ws_size) {
    const int mine = pthread_equal(pthread_self(), pairk_main) ? 1 : 2;
    atomic_fetch_or(&pairk_seen, mine);
    for (int i = 0; i < 100000 && atomic_load(&pairk_seen) != 3; i++)
        nanosleep(&(struct timespec){0, 100000}, NULL);
    nanosleep(&(struct timespec){0, 1000000}, NULL); /* both threads take units meanwhile */
    for (int64_t b = a->b0; b < a->b1; b++)
        for (int64_t h = a->h0; h < a->h1; h++)
            atomic_store(&pairk_owner[b][h], mine);
    return testk_attention(state, a, ws, ws_size);
}

/* A causal layer whose heads are whole units (no query blocks: GPT-2 small
 * at B 4, S 256 has 48 of them) costs the same per unit, so at 2 threads
 * its units go out from both ends like a non-causal layer's: the caller
 * computes the first (batch item, head) units, the helper the last, each
 * on the rows of Q|K|V its own core wrote. Before, a causal layer's units
 * were claimed in order by both threads, taking turns. The results are
 * bitwise the same at 1, 2 and 3 threads. */
static void test_causal_heads_paired(void **state) {
    (void)state;
    mha_plugin pairk = testk_plugin;
    pairk.name = "pairk";
    pairk.attention = pairk_attention;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, NULL), MHA_OK);
    cfg c = base_self();
    c.causal = 1;
    c.B = 2, c.Sq = c.Skv = 16, c.Hq = c.Hkv = 8, c.D = 64, c.Dout = 16;
    fixture f;
    fixture_make(&f, &c, 4711);
    pairk_main = pthread_self();
    float *first = NULL;
    for (int threads = 1; threads <= 3; threads++) {
        atomic_store(&pairk_seen, threads == 1 ? 3 : 0);
        for (int b = 0; b < 4; b++)
            for (int h = 0; h < 8; h++)
                atomic_store(&pairk_owner[b][h], 0);
        run_opts ro = {.pool = pl, .threads = threads};
        float *y = out_buffer(&f);
        mha_error err = {0};
        if (run_exec(&pairk, &ro, &f, y, &err) != MHA_OK) fail_msg("%s", err.message);
        if (threads == 2) { /* the caller's units first, then the helper's, in unit order */
            int helper = 0, caller_after = 0;
            for (int64_t u = 0; u < c.B * c.Hq; u++) {
                const int who = atomic_load(&pairk_owner[u / c.Hq][u % c.Hq]);
                if (who == 0)
                    fail_msg("unit %lld (item %lld, head %lld) not run", (long long)u,
                             (long long)(u / c.Hq), (long long)(u % c.Hq));
                if (who == 2) helper++;
                if (who == 1 && helper > 0) caller_after = 1;
            }
            if (helper == 0) fail_msg("the helper ran no attention unit");
            if (caller_after)
                fail_msg("2 threads: the caller ran a unit after one of the helper's (in order, "
                         "not from both ends)");
        }
        if (!first) {
            first = y;
            continue;
        }
        if (memcmp(first, y, (size_t)f.out_numel * sizeof(float)) != 0)
            fail_msg("%d threads differ from 1 thread", threads);
        free(y);
    }
    free(first);
    fixture_free(&f);
    pool_destroy(pl);
}

/* A GEMM whose rows are one tile of a whole-width weight (W2's output
 * projection, a short request's or a decoding step's GEMMs), or of a
 * weight of at most two slabs a thread (W2's Q|K|V), is one column unit
 * per thread, not two: each column unit packs all of A again. Two row
 * tiles, or many slabs (a decoding step's logits), keep their units; at 1
 * thread one row tile is one unit, slabs or not. Every element of C is in
 * one unit. */
static void test_gemm_one_row_tile_units(void **state) {
    (void)state;
    const struct {
        int64_t M, K, N;
        int threads;
        int64_t units;
    } want[] = {
        {32, 768, 768, 2, 2},   /* W2's output projection */
        {32, 768, 768, 3, 3},   /* 3 of 256 columns */
        {1, 768, 768, 2, 2},    /* a decoding step */
        {16, 384, 1536, 2, 2},  /* MiniLM-L6's FFN up at S 16 */
        {128, 384, 384, 2, 4},  /* two row tiles */
        {32, 768, 2304, 2, 2},  /* W2's Q|K|V: no slabs, heads 0-5 and 6-11 */
        {32, 768, 2304, 3, 3},  /* 4 heads a thread */
        {1, 768, 50257, 2, 72}, /* a decoding step's logits: 72 slabs balance */
        {32, 768, 2304, 1, 1},  /* at 1 thread one unit: A packed once */
        {1, 768, 50257, 1, 1},  /* a decoding step's logits at 1 thread */
        {100, 768, 2304, 1, 4}, /* two row tiles: the slabs stay */
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        exec_gemm_weights W = {.K = want[i].K, .N = want[i].N};
        exec_gemm_family f;
        plan_units(&W, want[i].M, want[i].threads, &f);
        if (f.n_units != want[i].units)
            fail_msg("M %lld K %lld N %lld at %d threads: %lld units, want %lld",
                     (long long)want[i].M, (long long)want[i].K, (long long)want[i].N,
                     want[i].threads, (long long)f.n_units, (long long)want[i].units);
        int64_t area = 0;
        for (int64_t u = 0; u < f.n_units; u++) {
            int64_t seg, r[4];
            exec_gemm_unit_range(&f, u, &seg, r);
            area += (r[1] - r[0]) * (r[3] - r[2]);
        }
        assert_int_equal(area, want[i].M * want[i].N);
    }
}

/* Slabs count a packed weight's own bytes: BERT's FFN up [768 x 3072] is
 * 9 MiB in float32 (6 slabs at 2 threads) and 4.5 MiB in bfloat16 (4 slabs:
 * counted as float32 it was 6, each repacking A); its Q|K|V [768 x 2304],
 * 3.4 MiB in bfloat16, is under two slabs and stays whole-width, as a
 * float32 weight of that size does. */
static void test_gemm_slabs_bfloat16(void **state) {
    (void)state;
    const struct {
        int64_t K, N;
        int weight_bytes;
        int64_t tiles;
    } want[] = {
        {768, 3072, 4, 6}, {768, 3072, 0, 6}, {768, 3072, 2, 4},
        {768, 2304, 4, 4}, {768, 2304, 2, 1}, {1536, 2304, 2, 4},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        exec_gemm_weights W = {.K = want[i].K, .N = want[i].N};
        W.weight_bytes = want[i].weight_bytes;
        exec_gemm_family f;
        plan_units(&W, 1024, 2, &f);
        if (f.n_tiles != want[i].tiles)
            fail_msg("K %lld N %lld, %d bytes a weight: %lld column tiles, want %lld",
                     (long long)want[i].K, (long long)want[i].N, want[i].weight_bytes,
                     (long long)f.n_tiles, (long long)want[i].tiles);
        int64_t area = 0; /* the units tile C: their areas add up to M x N */
        for (int64_t u = 0; u < f.n_units; u++) {
            int64_t seg, r[4];
            exec_gemm_unit_range(&f, u, &seg, r);
            area += (r[1] - r[0]) * (r[3] - r[2]);
        }
        assert_int_equal(area, 1024 * want[i].N);
    }
}

/* A tiny intermediate budget forces one batch item per chunk: same bits. */
static void test_batch_chunks(void **state) {
    (void)state;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, NULL), MHA_OK);
    const int which[5] = {0, 4, 7, 8, 14};
    for (int w = 0; w < 5; w++) {
        cfg c = make_cfg(which[w]);
        c.B = 5;
        if (c.kpm) c.kpm = 1;
        fixture f;
        fixture_make(&f, &c, 300 + (uint64_t)w);
        float *a = out_buffer(&f), *b = out_buffer(&f);
        run_opts whole = {.pool = pl, .threads = 3};
        run_opts chunked = {.pool = pl, .threads = 3, .chunk_bytes = 1};
        assert_int_equal(run_exec(&testk_plugin, &whole, &f, a, NULL), MHA_OK);
        assert_int_equal(run_exec(&testk_plugin, &chunked, &f, b, NULL), MHA_OK);
        assert_memory_equal(a, b, (size_t)f.out_numel * sizeof(float));
        free(a);
        free(b);
        fixture_free(&f);
    }
    pool_destroy(pl);
}

/* ---- plugins reporting sizes the host must not trust ---- */

static size_t liar_ws_huge(void *state, const mha_attn_args *a) {
    (void)state, (void)a;
    return SIZE_MAX - 8; /* + 63 for alignment would wrap to a tiny buffer */
}

static size_t liar_packed_small(void *state, int precision, int64_t K, int64_t N) {
    (void)state, (void)precision;
    return (size_t)(K * N); /* a quarter of the floats it must hold */
}

static size_t liar_packed_huge(void *state, int precision, int64_t K, int64_t N) {
    (void)state, (void)precision, (void)K, (void)N;
    return SIZE_MAX - 1;
}

/* A copy of testk with one size replaced; every run must be refused with a
 * message naming the backend, before any kernel sees the size. */
static void expect_refused_plugin(mha_plugin *p, const char *needle) {
    cfg c = base_self();
    fixture f;
    fixture_make(&f, &c, 77);
    float *y = out_buffer(&f);
    mha_error err;
    mha_error_clear(&err);
    int attn_before = atomic_load(&testk_attn_calls);
    mha_status st = run_exec(p, NULL, &f, y, &err);
    if (st == MHA_OK || !strstr(err.message, needle) || !strstr(err.message, "liar"))
        fail_msg("expected a refusal with '%s', got %s: %s", needle, mha_status_name(st),
                 err.message);
    assert_int_equal(atomic_load(&testk_attn_calls), attn_before);
    free(y);
    fixture_free(&f);
}

static void test_plugin_sizes_checked(void **state) {
    (void)state;
    /* blocks of INT64_MAX: tile sizes are rounded up to them (a wrap, then a
     * division by zero) */
    const struct {
        size_t (*ws)(void *, const mha_attn_args *);
        size_t (*packed)(void *, int, int64_t, int64_t);
        int64_t m_block, n_block;
        const char *needle;
    } cases[] = {
        {liar_ws_huge, NULL, 4, 8, "attention workspace of 18446744073709551607 bytes"},
        {NULL, liar_packed_small, 4, 8, "packed bytes"},
        {NULL, liar_packed_huge, 4, 8, "out of memory"},
        {NULL, NULL, INT64_MAX, 8, "gemm blocks 9223372036854775807 x 8"},
        {NULL, NULL, 4, INT64_MAX, "gemm blocks 4 x 9223372036854775807"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mha_plugin p = testk_plugin;
        p.name = "liar";
        if (cases[i].ws) p.attention_workspace_size = cases[i].ws;
        if (cases[i].packed) p.gemm_packed_size = cases[i].packed;
        p.gemm_m_block = cases[i].m_block;
        p.gemm_n_block = cases[i].n_block;
        expect_refused_plugin(&p, cases[i].needle);
    }
}

/* NaN in one batch item's input changes only that item's output. */
static void test_nan_stays_in_its_batch_item(void **state) {
    (void)state;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, NULL), MHA_OK);
    const int which[4] = {0, 1, 7, 10};
    for (int w = 0; w < 4; w++) {
        cfg c = make_cfg(which[w]);
        c.B = 3;
        if (c.am_rank == 4) c.am_shape[0] = 3;
        fixture f;
        fixture_make(&f, &c, 500 + (uint64_t)w);
        float *clean = out_buffer(&f), *dirty = out_buffer(&f);
        run_opts ro = {.pool = pl, .threads = 3};
        assert_int_equal(run_exec(&testk_plugin, &ro, &f, clean, NULL), MHA_OK);
        /* poison batch item 1 of the first input (query or Q) */
        float *x = f.in[0].data;
        int64_t per_item = mha_tensor_numel(&f.in[0]) / c.B;
        if (c.seq_first)
            x[1 * c.D + 2] = NAN; /* row (s 0, b 1) */
        else
            x[per_item + 2] = NAN;
        assert_int_equal(run_exec(&testk_plugin, &ro, &f, dirty, NULL), MHA_OK);
        for (int64_t i = 0; i < f.out_numel; i++) {
            int64_t b;
            if (c.has_proj)
                b = c.seq_first ? (i / c.Dout) % c.B : i / (f.out_numel / c.B);
            else
                b = i / (f.out_numel / c.B);
            if (b == 1) continue;
            assert_false(isnan(dirty[i]));
            assert_memory_equal(&clean[i], &dirty[i], sizeof(float));
        }
        free(clean);
        free(dirty);
        fixture_free(&f);
    }
    pool_destroy(pl);
}

/* A softmax_nan layer (a plan's Softmax layer): values holding a NaN in a
 * key a row does not see (the causal frontier) still make every row of that
 * batch item NaN, as 0 x NaN does in the graph's P.V, and no row of the other
 * item. The NaN is in the second kv head only (GQA, 2 query heads per kv
 * head), so the attention units that check the values (exec_attn_unit_values)
 * must cover every kv head, at every thread count and batch chunk. */
static void test_softmax_nan_values_per_head(void **state) {
    (void)state;
    backend_list bl;
    backends_open(&bl);
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &pl, NULL), MHA_OK);
    cfg c = make_cfg(2); /* GQA, causal */
    fixture f;
    fixture_make(&f, &c, 1300);
    f.L.softmax_nan = 1;
    const int64_t D = c.D, Sq = c.Sq, nv = c.Hkv * c.dv, per_item = f.out_numel / c.B;
    /* the last token of item 1: components 0 and 1 at +inf; V's columns of
     * kv head 1 weigh them +1 and -1 (+inf + -inf = NaN, in float or double
     * sums), kv head 0's +1 and +1 (+inf, not a NaN) */
    for (int64_t col = 0; col < nv; col++) {
        f.L.wv[0 * nv + col] = 1.0f;
        f.L.wv[1 * nv + col] = col >= c.dv ? -1.0f : 1.0f;
    }
    float *x = f.in[0].data;
    for (int p = 0; p < bl.n; p++) {
        x[(1 * Sq + Sq - 1) * D + 0] = x[(1 * Sq + Sq - 1) * D + 1] = 0.5f;
        float *clean = out_buffer(&f);
        const run_opts ro1 = {.pool = pl, .threads = 1};
        assert_int_equal(run_exec_state(bl.plugin[p], bl.state[p], &ro1, &f, clean, NULL), MHA_OK);
        x[(1 * Sq + Sq - 1) * D + 0] = x[(1 * Sq + Sq - 1) * D + 1] = INFINITY;
        for (int t = 1; t <= 3; t++)
            for (int chunked = 0; chunked < 2; chunked++) {
                const run_opts ro = {.pool = pl, .threads = t, .chunk_bytes = chunked ? 1 : 0};
                float *y = out_buffer(&f);
                assert_int_equal(run_exec_state(bl.plugin[p], bl.state[p], &ro, &f, y, NULL),
                                 MHA_OK);
                assert_memory_equal(clean, y, (size_t)per_item * sizeof(float));
                for (int64_t i = per_item; i < f.out_numel; i++)
                    if (!isnan(y[i]))
                        fail_msg("%s, threads %d, chunked %d: element %lld of item 1 is %g, "
                                 "not NaN",
                                 bl.plugin[p]->name, t, chunked, (long long)(i - per_item),
                                 (double)y[i]);
                free(y);
            }
        free(clean);
    }
    fixture_free(&f);
    pool_destroy(pl);
    backends_close(&bl);
}

/* A float mask the graph adds: a row whose keys are all finfo.min
 * (-FLT_MAX) or -inf averages V over the finfo.min keys, as the graph's
 * float32 softmax does (CLIP's causal + padding terms summed); a row of
 * -inf alone gives zeros. On every backend. */
static void test_lowest_mask_rows(void **state) {
    (void)state;
    backend_list bl;
    backends_open(&bl);
    cfg c = make_cfg(11); /* bare 4D, float mask [H, Sq, Skv] */
    fixture f;
    fixture_make(&f, &c, 900);
    float *m = f.in[3].data;
    const int64_t Sq = c.Sq, Skv = c.Skv, dv = c.dv;
    for (int64_t i = 0; i < mha_tensor_numel(&f.in[3]); i++)
        m[i] = 0.0f;
    /* head 0: query 0 sees key 0 at -inf and the rest at finfo.min;
     * query 1 sees -inf only */
    m[0] = -INFINITY;
    for (int64_t j = 1; j < Skv; j++)
        m[j] = -FLT_MAX;
    for (int64_t j = 0; j < Skv; j++)
        m[Skv + j] = -INFINITY;
    const float *v = f.in[2].data; /* [B 1, Hkv, Skv, dv] */
    for (int p = 0; p < bl.n; p++) {
        float *y = out_buffer(&f);
        assert_int_equal(run_exec_state(bl.plugin[p], bl.state[p], NULL, &f, y, NULL), MHA_OK);
        for (int64_t d = 0; d < dv; d++) {
            double mean = 0.0;
            for (int64_t j = 1; j < Skv; j++)
                mean += v[j * dv + d] / (double)(Skv - 1);
            if (fabs(y[d] - mean) > 1e-5 * (1.0 + fabs(mean)))
                fail_msg("%s: row of finfo.min keys, dim %lld: %g, want the mean %g",
                         bl.plugin[p]->name, (long long)d, (double)y[d], mean);
            assert_true(y[Sq > 1 ? dv + d : d] == 0.0f);
        }
        free(y);
    }
    fixture_free(&f);
    backends_close(&bl);
}

/* A float mask of zeros (-0 and +0: an all-ones extended mask) reaches no
 * kernel: it hides and adds nothing, so every backend runs its unmasked
 * path, with the bits of the same layer without a mask. A mask with one
 * term that is not a zero, a NaN included, is passed as it is. */
static void test_zero_mask_dropped(void **state) {
    (void)state;
    backend_list bl;
    backends_open(&bl);
    cfg c = make_cfg(11);        /* bare 4D, float mask [H, Sq, Skv] */
    c.Skv = c.am_shape[2] = 130; /* whole key blocks too (the SIMD kernels' plain rows) */
    fixture f, plain;
    fixture_make(&f, &c, 901);
    cfg cn = c;
    cn.attn_mask = 0;
    fixture_make(&plain, &cn, 901);
    for (int i = 0; i < 3; i++) /* the same q, k, v */
        memcpy(plain.in[i].data, f.in[i].data, (size_t)mha_tensor_numel(&f.in[i]) * sizeof(float));
    float *m = f.in[3].data;
    const int64_t nm = mha_tensor_numel(&f.in[3]);
    for (int64_t i = 0; i < nm; i++)
        m[i] = i % 2 ? -0.0f : 0.0f;
    for (int p = 0; p < bl.n; p++) {
        float *y = out_buffer(&f), *want = out_buffer(&plain);
        atomic_store(&testk_masked_calls, 0);
        assert_int_equal(run_exec_state(bl.plugin[p], bl.state[p], NULL, &f, y, NULL), MHA_OK);
        if (bl.plugin[p] == &testk_plugin) assert_int_equal(atomic_load(&testk_masked_calls), 0);
        assert_int_equal(run_exec_state(bl.plugin[p], bl.state[p], NULL, &plain, want, NULL),
                         MHA_OK);
        if (memcmp(y, want, (size_t)f.out_numel * sizeof(float)) != 0)
            fail_msg("%s: a mask of zeros changed the output", bl.plugin[p]->name);
        free(y);
        free(want);
    }
    /* one term that is not a zero: the mask reaches the kernel */
    const float kept[2] = {-1e-30f, NAN};
    for (int k = 0; k < 2; k++) {
        m[nm - 1] = kept[k];
        float *y = out_buffer(&f);
        atomic_store(&testk_masked_calls, 0);
        assert_int_equal(run_exec_state(&testk_plugin, NULL, NULL, &f, y, NULL), MHA_OK);
        assert_true(atomic_load(&testk_masked_calls) > 0);
        free(y);
    }
    fixture_free(&plain);
    fixture_free(&f);
    backends_close(&bl);
}

/* A causal layer whose file hides future keys with finfo.min
 * (causal_finite), beside a float padding mask with rows of its own [B, 1,
 * S, S] (CLIP's, expanded): query 0 of an item whose key 0 is padding sees
 * only finfo.min terms, and the file's softmax averages every key, future
 * ones too; query 1 sees key 1 alone. On every backend. */
static void test_finite_causal_row_mask(void **state) {
    (void)state;
    backend_list bl;
    backends_open(&bl);
    cfg c = make_cfg(11); /* bare 4D, float mask */
    c.Sq = c.Skv = 5;
    c.causal = 1;
    c.am_rank = 4;
    c.am_shape[0] = 1, c.am_shape[1] = 1, c.am_shape[2] = 5, c.am_shape[3] = 5;
    fixture f;
    fixture_make(&f, &c, 901);
    f.L.causal_finite = 1;
    f.L.causal_fill = nextafterf(-FLT_MAX, 0.0f);
    float *m = f.in[3].data;
    for (int64_t i = 0; i < 25; i++)
        m[i] = i % 5 == 0 ? -FLT_MAX : 0.0f; /* key 0 is padding, every row */
    const float *v = f.in[2].data;           /* [1, Hkv, Skv, dv]: head 0 first */
    const int64_t dv = c.dv;
    for (int p = 0; p < bl.n; p++) {
        float *y = out_buffer(&f); /* [1, Hq, Sq, dv] */
        assert_int_equal(run_exec_state(bl.plugin[p], bl.state[p], NULL, &f, y, NULL), MHA_OK);
        for (int64_t d = 0; d < dv; d++) {
            double mean = 0.0;
            for (int64_t j = 0; j < 5; j++)
                mean += v[j * dv + d] / 5.0;
            if (fabs(y[d] - mean) > 1e-5 * (1.0 + fabs(mean)))
                fail_msg("%s: query 0, dim %lld: %g, want the mean of every key %g",
                         bl.plugin[p]->name, (long long)d, (double)y[d], mean);
            assert_true(fabs(y[dv + d] - v[dv + d]) <= 1e-5 * (1.0 + fabs(v[dv + d])));
        }
        free(y);
    }
    fixture_free(&f);
    backends_close(&bl);
}

/* A self-parallel plugin gets each phase as one call with the run's
 * threads, on the calling thread; the result is the same. */
static void test_self_parallel(void **state) {
    (void)state;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 6, 0, &pl, NULL), MHA_OK);
    const int which[3] = {0, 1, 9};
    for (int w = 0; w < 3; w++) {
        cfg c = make_cfg(which[w]);
        fixture f;
        fixture_make(&f, &c, 700 + (uint64_t)w);
        float *a = out_buffer(&f), *b = out_buffer(&f);
        run_opts ro = {.pool = pl, .threads = 7};
        assert_int_equal(run_exec(&testk_plugin, &ro, &f, a, NULL), MHA_OK);
        atomic_store(&testk_gemm_calls, 0);
        atomic_store(&testk_attn_calls, 0);
        atomic_store(&testk_max_threads_seen, 0);
        assert_int_equal(run_exec(&testk_sp_plugin, &ro, &f, b, NULL), MHA_OK);
        assert_memory_equal(a, b, (size_t)f.out_numel * sizeof(float));
        assert_int_equal(atomic_load(&testk_attn_calls), 1);
        if (c.has_proj) {
            /* one projection GEMM per input (fused QKV, or Q and KV) + the output */
            assert_int_equal(atomic_load(&testk_gemm_calls), c.cross ? 3 : 2);
            assert_int_equal(atomic_load(&testk_max_threads_seen), 7);
        }
        free(a);
        free(b);
        fixture_free(&f);
    }
    pool_destroy(pl);
}

static int cancel_after(void *user) {
    atomic_int *n = user;
    return atomic_fetch_sub(n, 1) <= 0;
}

static void test_cancel(void **state) {
    (void)state;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, NULL), MHA_OK);
    cfg c = make_cfg(12);
    fixture f;
    fixture_make(&f, &c, 42);
    float *y = out_buffer(&f);
    /* How often the caller polls depends on how many units the pool's
     * workers took from it (pool.h): a run that ends before its budget of
     * polls is spent is complete and says so; one that saw the "yes" stops
     * with MHA_ERR_CANCELLED. The first poll comes before any unit, so a
     * budget of 0 always cancels. */
    for (int after = 0; after < 3; after++) {
        for (int sp = 0; sp < 2; sp++) {
            atomic_int budget;
            atomic_init(&budget, after);
            run_opts ro = {
                .pool = pl, .threads = 3, .cancel = cancel_after, .cancel_user = &budget};
            mha_error err = {0};
            mha_status st = run_exec(sp ? &testk_sp_plugin : &testk_plugin, &ro, &f, y, &err);
            if (after == 0 || st != MHA_OK) {
                assert_int_equal(st, MHA_ERR_CANCELLED);
                assert_int_equal(err.status, MHA_ERR_CANCELLED);
                assert_non_null(strstr(err.message, "cancel"));
            } else {
                assert_true(atomic_load(&budget) >= 0); /* never told to cancel */
            }
        }
    }
    /* a callback that never cancels lets the run finish */
    atomic_int big;
    atomic_init(&big, 1 << 30);
    run_opts ro = {.pool = pl, .threads = 3, .cancel = cancel_after, .cancel_user = &big};
    assert_int_equal(run_exec(&testk_plugin, &ro, &f, y, NULL), MHA_OK);
    free(y);
    fixture_free(&f);
    pool_destroy(pl);
}

static void expect_shape_error(fixture *f, mha_status want, const char *needle) {
    mha_tensor out;
    mha_error err = {0};
    mha_status st = layer_output_shapes(&f->L, f->in, f->n_in, &out, 1, &err);
    if (st != want || !strstr(err.message, needle))
        fail_msg("expected %s with '%s', got %s: %s", mha_status_name(want), needle,
                 mha_status_name(st), err.message);
}

static void test_input_checks(void **state) {
    (void)state;
    cfg c = make_cfg(4); /* cross + key padding */
    fixture f;
    fixture_make(&f, &c, 7);
    mha_tensor out;
    mha_error err = {0};
    assert_int_equal(layer_output_shapes(&f.L, f.in, f.n_in, &out, 1, &err), MHA_OK);
    assert_int_equal(out.rank, 3);
    assert_int_equal(out.shape[0], c.B);
    assert_int_equal(out.shape[1], c.Sq);
    assert_int_equal(out.shape[2], c.Dout);

    f.in[0].dtype = MHA_DTYPE_FLOAT64;
    expect_shape_error(&f, MHA_ERR_DTYPE, "'query'");
    f.in[0].dtype = MHA_DTYPE_FLOAT32;
    f.in[0].shape[2] = c.D + 1;
    expect_shape_error(&f, MHA_ERR_SHAPE, "'query'");
    f.in[0].shape[2] = c.D;
    f.in[1].shape[0] = c.B + 1; /* memory batch differs from the query's */
    expect_shape_error(&f, MHA_ERR_SHAPE, "'memory'");
    f.in[1].shape[0] = c.B;
    f.in[1].rank = 2;
    expect_shape_error(&f, MHA_ERR_SHAPE, "'memory'");
    f.in[1].rank = 3;
    f.in[2].shape[1] = c.Skv + 1;
    expect_shape_error(&f, MHA_ERR_SHAPE, "'key_padding_mask'");
    f.in[2].shape[1] = c.Skv;
    f.in[2].dtype = MHA_DTYPE_INT64;
    expect_shape_error(&f, MHA_ERR_DTYPE, "'key_padding_mask'");
    f.in[2].dtype = MHA_DTYPE_BOOL;
    f.in[0].shape[1] = -3;
    expect_shape_error(&f, MHA_ERR_SHAPE, "'query'");
    f.in[0].shape[1] = c.Sq;
    void *saved = f.in[0].data;
    f.in[0].data = NULL;
    expect_shape_error(&f, MHA_ERR_INVALID_ARGUMENT, "'query'");
    f.in[0].data = saved;
    assert_int_equal(layer_output_shapes(&f.L, f.in, f.n_in - 1, &out, 1, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "inputs"));

    /* wrong output shape given to the run */
    exec_packed *pk = NULL;
    assert_int_equal(
        exec_pack_weights(NULL, &f.L, &testk_plugin, NULL, MHA_PRECISION_FLOAT32, &pk, NULL),
        MHA_OK);
    exec_env env = {.plugin = &testk_plugin};
    float *y = out_buffer(&f);
    f.out.data = y;
    f.out.shape[2] += 1;
    assert_int_equal(exec_run(&env, &f.L, pk, f.in, f.n_in, &f.out, 1, &err), MHA_ERR_SHAPE);
    assert_non_null(strstr(err.message, "output 'output'"));
    f.out.shape[2] -= 1;
    f.out.data = NULL;
    free(y);
    exec_packed_free(NULL, pk);
    fixture_free(&f);

    /* masks that do not broadcast */
    c = make_cfg(10);
    fixture_make(&f, &c, 8);
    f.in[3].shape[1] = 4; /* heads 6 */
    expect_shape_error(&f, MHA_ERR_SHAPE, "does not broadcast");
    f.in[3].shape[1] = 1;
    assert_int_equal(layer_output_shapes(&f.L, f.in, f.n_in, &out, 1, &err), MHA_OK);
    f.in[1].shape[2] = 7; /* K's Skv 7 but V's 6 */
    expect_shape_error(&f, MHA_ERR_SHAPE, "'V'");
    fixture_free(&f);
}

/* Empty batch / query / key sequences. */
static void test_empty_sizes(void **state) {
    (void)state;
    cfg c = make_cfg(1);
    c.Skv = 0; /* no keys: attention rows are 0, Y rows are the output bias */
    fixture f;
    fixture_make(&f, &c, 9);
    float *y = out_buffer(&f);
    assert_int_equal(run_exec(&testk_plugin, NULL, &f, y, NULL), MHA_OK);
    for (int64_t i = 0; i < f.out_numel; i++)
        assert_true(y[i] == f.L.bo[i % c.Dout]);
    free(y);
    fixture_free(&f);
    c = make_cfg(0);
    c.B = 0;
    fixture_make(&f, &c, 10);
    assert_int_equal(run_exec(&testk_plugin, NULL, &f, NULL, NULL), MHA_OK);
    fixture_free(&f);
}

/* Every allocation of a run fails in turn: a clean NO_MEMORY each time
 * (LeakSanitizer checks nothing leaks), then success. */
static void test_allocation_failures(void **state) {
    (void)state;
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, NULL), MHA_OK);
    const int which[3] = {6, 4, 1};
    for (int w = 0; w < 3; w++) {
        cfg c = make_cfg(which[w]);
        fixture f;
        fixture_make(&f, &c, 11);
        float *y = out_buffer(&f);
        int ok = 0;
        for (long n = 1; n < 200 && !ok; n++) {
            run_opts ro = {.pool = pl, .threads = 3};
            mha_error err = {0};
            mha_alloc_fail_at(n, 0);
            mha_status st = run_exec(&testk_plugin, &ro, &f, y, &err);
            mha_alloc_fail_at(0, 0);
            if (st == MHA_OK) {
                ok = 1;
            } else {
                assert_int_equal(st, MHA_ERR_NO_MEMORY);
                assert_true(err.message[0] != '\0');
            }
        }
        assert_true(ok);
        free(y);
        fixture_free(&f);
    }
    pool_destroy(pl);
}

/* A rotary layer whose tables end before the sequence, with no inverse
 * frequencies to go on, is refused (never rotated with garbage); with them
 * the same sequence runs. */
static void test_rotary_tables_end(void **state) {
    (void)state;
    cfg c = make_cfg(13);
    c.Sq = c.Skv = 10; /* one past the 9 rows */
    fixture f;
    fixture_make(&f, &c, 77);
    float *y = out_buffer(&f);
    mha_error err = {0};
    assert_int_equal(layer_reference_forward(NULL, &f.L, f.in, f.n_in, &f.out, 0, &err),
                     MHA_ERR_INVALID_ARGUMENT);
    f.out.data = y;
    assert_int_equal(layer_reference_forward(NULL, &f.L, f.in, f.n_in, &f.out, 1, &err),
                     MHA_ERR_SHAPE);
    assert_non_null(strstr(err.message, "rotary tables end at 9"));
    fixture_free(&f);
    c.rope_inv = 1;
    fixture_make(&f, &c, 77);
    float *ref = out_buffer(&f);
    naive_forward(&f, ref);
    f.out.data = y;
    assert_int_equal(layer_reference_forward(NULL, &f.L, f.in, f.n_in, &f.out, 1, &err), MHA_OK);
    f.out.data = NULL;
    assert_true(tu_max_rel_err(y, ref, (size_t)f.out_numel) < 1e-5);
    free(ref);
    free(y);
    fixture_free(&f);
}

/* One step of a layer with a KV cache: x [B, S, D] after past [B, Hkv, P,
 * dk|dv] (the same tensor for keys and values when dk == dv would hide a
 * swap: they differ here); y [B, S, Dout], present [B, Hkv, P + S, d]. */
static mha_status run_cache_step(const mha_plugin *p, void *pstate, pool *pl, const layer *L,
                                 const float *x, int64_t B, int64_t S, const float *past_k,
                                 const float *past_v, int64_t P, float *y, float *pres_k,
                                 float *pres_v, mha_error *err) {
    exec_packed *pk = NULL;
    mha_status st = exec_pack_weights(NULL, L, p, pstate, MHA_PRECISION_FLOAT32, &pk, err);
    if (st != MHA_OK) return st;
    const int64_t sx[3] = {B, S, L->d_model}, sy[3] = {B, S, L->d_out};
    const int64_t spk[4] = {B, L->kv_heads, P, L->d_head},
                  spv[4] = {B, L->kv_heads, P, L->d_head_v};
    const int64_t sk[4] = {B, L->kv_heads, P + S, L->d_head};
    const int64_t sv[4] = {B, L->kv_heads, P + S, L->d_head_v};
    mha_tensor in[3], out[3];
    set_tensor(&in[0], MHA_DTYPE_FLOAT32, 3, sx, (void *)x);
    set_tensor(&in[1], MHA_DTYPE_FLOAT32, 4, spk, (void *)past_k);
    set_tensor(&in[2], MHA_DTYPE_FLOAT32, 4, spv, (void *)past_v);
    set_tensor(&out[0], MHA_DTYPE_FLOAT32, 3, sy, y);
    set_tensor(&out[1], MHA_DTYPE_FLOAT32, 4, sk, pres_k);
    set_tensor(&out[2], MHA_DTYPE_FLOAT32, 4, sv, pres_v);
    exec_env env;
    memset(&env, 0, sizeof env);
    env.plugin = p;
    env.plugin_state = pstate;
    env.pool = pl;
    st = exec_run(&env, L, pk, in, 3, out, 3, err);
    exec_packed_free(NULL, pk);
    return st;
}

/* Rows [r0, r0 + n) of each batch item of x [B, rows, w]. */
static float *slice_rows(const float *x, int64_t B, int64_t rows, int64_t w, int64_t r0,
                         int64_t n) {
    float *o = malloc((size_t)(B * n * w + 1) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        memcpy(o + b * n * w, x + (b * rows + r0) * w, (size_t)(n * w) * sizeof(float));
    return o;
}

/* A KV cache between projections (issue 14): decoding P tokens, then the
 * S next ones after their cache, gives what one run over the P + S tokens
 * gives (the last S output rows, and the whole present K / V; a step of no
 * token gives the past back as the present) -- with GQA,
 * rotary at positions P + i (past the layer's tables: from its inverse
 * frequencies), the causal frontier at P + i and a sliding window moving
 * with it, on every backend. The one-shot run (an empty past, P = 0) is the
 * naive layer's. */
static void test_kv_cache_steps(void **state) {
    (void)state;
    backend_list bl;
    backends_open(&bl);
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &pl, NULL), MHA_OK);
    for (int windowed = 0; windowed < 2; windowed++) {
        cfg c = make_cfg(13); /* GQA, causal, rotate-half */
        const int64_t P = 7, S = 4, N = P + S, B = 2;
        c.B = B, c.Sq = c.Skv = N, c.rope_rows = 5, c.rope_inv = 1, c.dv = 6;
        fixture f;
        fixture_make(&f, &c, 4242);
        layer *L = &f.L;
        float *ref = out_buffer(&f);
        if (!windowed) naive_forward(&f, ref);
        L->has_left_window = windowed, L->left_window = 2;
        /* the same layer with a cache: query, past_key, past_value -> output,
         * present_key, present_value */
        const float *x = f.in[0].data;
        layer_io *io = mha_calloc(NULL, 3, sizeof *io);
        io[0] = L->outputs[0];
        add_io(&io[1], "present_key", MHA_ROLE_PRESENT_KEY, MHA_DTYPE_FLOAT32, 4);
        add_io(&io[2], "present_value", MHA_ROLE_PRESENT_VALUE, MHA_DTYPE_FLOAT32, 4);
        mha_free(NULL, L->outputs);
        L->outputs = io, L->n_outputs = 3;
        add_io(&L->inputs[1], "past_key", MHA_ROLE_PAST_KEY, MHA_DTYPE_FLOAT32, 4);
        add_io(&L->inputs[2], "past_value", MHA_ROLE_PAST_VALUE, MHA_DTYPE_FLOAT32, 4);
        L->n_inputs = 3;
        assert_true(layer_has_cache(L));
        const int64_t Hkv = c.Hkv, dk = c.dk, dv = c.dv, Do = c.Dout;
        float *y_all = malloc((size_t)(B * N * Do) * sizeof(float));
        float *k_all = malloc((size_t)(B * Hkv * N * dk) * sizeof(float));
        float *v_all = malloc((size_t)(B * Hkv * N * dv) * sizeof(float));
        float *y1 = malloc((size_t)(B * P * Do) * sizeof(float));
        float *k1 = malloc((size_t)(B * Hkv * P * dk) * sizeof(float));
        float *v1 = malloc((size_t)(B * Hkv * P * dv) * sizeof(float));
        float *y2 = malloc((size_t)(B * S * Do) * sizeof(float));
        float *k2 = malloc((size_t)(B * Hkv * N * dk) * sizeof(float));
        float *v2 = malloc((size_t)(B * Hkv * N * dv) * sizeof(float));
        float *x1 = slice_rows(x, B, N, c.D, 0, P), *x2 = slice_rows(x, B, N, c.D, P, S);
        for (int i = 0; i < bl.n; i++) {
            const mha_plugin *p = bl.plugin[i];
            mha_error err = {0};
            pool *use = (p->flags & MHA_PLUGIN_SELF_PARALLEL) ? NULL : pl;
            /* every token at once after an empty past (a zero-sized tensor) */
            if (run_cache_step(p, bl.state[i], use, L, x, B, N, NULL, NULL, 0, y_all, k_all, v_all,
                               &err) != MHA_OK)
                fail_msg("%s: %s", p->name, err.message);
            if (!windowed && tu_max_rel_err(y_all, ref, (size_t)(B * N * Do)) > 1e-4)
                fail_msg("%s: one run with an empty past differs from the naive layer", p->name);
            /* P tokens, then S after their cache */
            if (run_cache_step(p, bl.state[i], use, L, x1, B, P, NULL, NULL, 0, y1, k1, v1, &err) !=
                    MHA_OK ||
                run_cache_step(p, bl.state[i], use, L, x2, B, S, k1, v1, P, y2, k2, v2, &err) !=
                    MHA_OK)
                fail_msg("%s: %s", p->name, err.message);
            /* no new token: the present K / V are the past */
            float *k0 = malloc((size_t)(B * Hkv * P * dk) * sizeof(float));
            float *v0 = malloc((size_t)(B * Hkv * P * dv) * sizeof(float));
            if (run_cache_step(p, bl.state[i], use, L, x2, B, 0, k1, v1, P, y2, k0, v0, &err) !=
                MHA_OK)
                fail_msg("%s: %s", p->name, err.message);
            assert_memory_equal(k0, k1, (size_t)(B * Hkv * P * dk) * sizeof(float));
            assert_memory_equal(v0, v1, (size_t)(B * Hkv * P * dv) * sizeof(float));
            free(k0), free(v0);
            float *tail = slice_rows(y_all, B, N, Do, P, S);
            double ey = tu_max_rel_err(y2, tail, (size_t)(B * S * Do));
            double ek = tu_max_rel_err(k2, k_all, (size_t)(B * Hkv * N * dk));
            double ev = tu_max_rel_err(v2, v_all, (size_t)(B * Hkv * N * dv));
            free(tail);
            if (ey > 1e-5 || ek > 1e-5 || ev > 1e-5)
                fail_msg("%s%s: cached steps differ from one run: output %g, present_key %g, "
                         "present_value %g",
                         p->name, windowed ? " (window)" : "", ey, ek, ev);
        }
        free(x1), free(x2), free(y_all), free(k_all), free(v_all);
        free(y1), free(k1), free(v1), free(y2), free(k2), free(v2), free(ref);
        f.n_in = 1; /* the past tensors were never the fixture's */
        fixture_free(&f);
    }
    pool_destroy(pl);
    backends_close(&bl);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotary_tables_end),
        cmocka_unit_test(test_kv_cache_steps),
        cmocka_unit_test(test_forms_match_naive),
        cmocka_unit_test(test_reference_is_scalar_bits),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_gemm_column_slabs),
        cmocka_unit_test(test_gemm_balanced_end),
        cmocka_unit_test(test_gemm_one_row_tile_units),
        cmocka_unit_test(test_gemm_middle_pieces),
        cmocka_unit_test(test_gemm_middle_pieces_bitwise),
        cmocka_unit_test(test_qkv_by_head),
        cmocka_unit_test(test_causal_heads_paired),
        cmocka_unit_test(test_qkv_attention_one_phase),
        cmocka_unit_test(test_gemm_slabs_bfloat16),
        cmocka_unit_test(test_batch_chunks),
        cmocka_unit_test(test_plugin_sizes_checked),
        cmocka_unit_test(test_nan_stays_in_its_batch_item),
        cmocka_unit_test(test_softmax_nan_values_per_head),
        cmocka_unit_test(test_lowest_mask_rows),
        cmocka_unit_test(test_zero_mask_dropped),
        cmocka_unit_test(test_finite_causal_row_mask),
        cmocka_unit_test(test_self_parallel),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_input_checks),
        cmocka_unit_test(test_empty_sizes),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
