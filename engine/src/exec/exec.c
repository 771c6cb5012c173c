/* exec.c -- the forward pass of an attention layer on a backend plugin,
 * split into pool units (see exec.h for the phases).
 *
 * Layout of the intermediates of one chunk of nb batch items (row-major,
 * batch-major rows r = b*S + s whatever the input layout):
 *
 *   self:  proj [nb*Sq, Hq*dk | Hkv*dk | Hkv*dv]   Q | K | V side by side,
 *          or [nb*Sq, H*(dk | dk | dv)]           head by head (exec_qkv_by_head)
 *   cross: projq [nb*Sq, Hq*dk], projkv [nb*Skv, Hkv*dk | Hkv*dv]
 *   att   [nb*Sq, Hq*dv]                          heads side by side
 *
 * Q of head h is the column block [h*dk, (h+1)*dk) of its buffer (head by
 * head: [h*(2dk+dv), +dk)): the attention kernel reads it through strides
 * (no transposes). Inputs given
 * sequence-first ([S, B, D]) are read through strides too: one GEMM
 * "segment" per batch item, whose rows are B*D floats apart.
 *
 *   mask = one additive float view of every mask input       (once per run)
 *   for each chunk of nb batch items (so intermediates stay bounded):
 *     phase 1, unit = GEMM tile:  proj = X . [Wq|Wk|Wv] + b
 *     (rotary layers) unit = (b, Q or K, row block): rotate Q and K in place
 *     phase 2, unit = (query block, b, h), heaviest first if causal:
 *              att[b, rows, h] = softmax(scale Q K^T + mask) V
 *              (one batch item at 2 threads: phases 1 and 2 are one,
 *              EXEC_PHASE_PROJ_ATTN)
 *     phase 3, unit = GEMM tile:  Y = att . Wo + bo
 * A self-parallel plugin gets each phase as one call instead. */
#include "exec.h"

#include "registry_table.h"
#include "tensor.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define EXEC_DEFAULT_CHUNK_BYTES ((size_t)64 << 20)
/* Preferred GEMM tile before it is split further for more threads: a few
 * row blocks of the plugin by every column. The plugin packs a tile's A rows
 * once per k-block and reuses them across all its columns, so splitting N
 * costs a repack of A per column tile; M is split first, N only when M alone
 * gives too few units (small batches). 72 rows are the row block of the
 * avx512 kernels (GEMM_MC: 72 rows of a whole 768-deep k-block fill the
 * 216 KiB of stack the A block may take); a 96-row tile was one 72-row block
 * and one of 24, whose B panels served 2 slivers: BERT-base at 1 thread was
 * 5 % slower with it than with 72 (CPU time, alternated). The avx2 kernels'
 * 96-row block sees one 72-row block (12 of its slivers per B panel). W1's
 * [4096 x 2304] GEMM has 57 units, enough for claiming from one counter to
 * balance two or more threads. */
#define EXEC_GEMM_TILE_M 72
#define EXEC_GEMM_TILE_N INT64_MAX
/* Column slabs: a packed weight larger than this is cut into slabs of
 * columns of about this size, each slab a unit over many row tiles. Its
 * part of B is read from memory once and stays in cache while every row
 * block of A passes (whole-width tiles stream all of B once per 72 rows: the
 * [768 x 50257] logits of GPT-2, 154 MB, fifteen times per run), and a row
 * block's C slab stays in L2 between k-blocks. Slabs keep at least
 * EXEC_GEMM_SLAB_MIN_N columns, as each one repacks A. CPU time, one
 * thread, M 1024: K 768 N 3072 +6 %, N 2304 +8 %; K 3072 N 768 (9 MB) is
 * left whole, its 256-column slabs were no faster. */
#define EXEC_GEMM_SLAB_BYTES ((int64_t)2 << 20)
#define EXEC_GEMM_SLAB_MIN_N 512
/* With several threads, a slab GEMM's rows are halved until it has this
 * many units per thread (row tiles of at least 2 x EXEC_GEMM_TILE_M): a
 * phase ends when its last unit does, so a thread that falls behind (a
 * late wake-up, an interrupt, a unit whose B came from memory) leaves the
 * others idle for up to one unit. BERT-base's Q|K|V [1024 x 2304] at 2
 * threads was 8 units of ~4.5 ms each, ViT-B/16's [1576 x 2304] 8 of ~7 ms;
 * now 16 units, each row tile rereading its slab from L3. */
#define EXEC_GEMM_UNITS_PER_THREAD 8
/* Causal attention, when it splits queries at all, uses blocks of at least
 * this many rows, so the heavy late rows can be spread over threads. */
#define EXEC_CAUSAL_Q_BLOCK 64
/* pool_scratch_take slots: a run's intermediates, its attention workspace */
#define EXEC_SCRATCH_INTERMEDIATES 0
#define EXEC_SCRATCH_WORKSPACE 1

static int64_t exec_min(int64_t a, int64_t b) {
    return a < b ? a : b;
}

static int64_t exec_max(int64_t a, int64_t b) {
    return a > b ? a : b;
}

static int64_t exec_ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

static int64_t exec_round_up(int64_t a, int64_t m) {
    return exec_ceil_div(a, m) * m;
}

/* ------------------------------------------------------------------------ */
/* Packing                                                                   */
/* ------------------------------------------------------------------------ */

/* Packs the side-by-side concatenation of n_parts weight matrices
 * w[i] [K, cols[i]] (and their biases, NULL = zeros) as one [K, N] matrix. */
static const char *exec_precision_name(int precision) {
    return precision == MHA_PRECISION_FLOAT32    ? "float32"
           : precision == MHA_PRECISION_BFLOAT16 ? "bfloat16"
                                                 : "(unknown)";
}

mha_status exec_pack_parts(const mha_alloc_ctx *a, const mha_plugin *p, void *state, int precision,
                           int64_t K, int n_parts, const float *const *w, const int64_t *cols,
                           const float *const *bias, const char *what, exec_gemm_weights *out,
                           mha_error *err) {
    int64_t N = 0;
    int any_bias = 0;
    for (int i = 0; i < n_parts; i++) {
        if (!w[i] || cols[i] < 0)
            return mha_fail(err, MHA_ERR_INTERNAL, "packing %s: weight part %d missing", what, i);
        N += cols[i];
        any_bias |= bias[i] != NULL;
    }
    if (K < 0) return mha_fail(err, MHA_ERR_INTERNAL, "packing %s: K = %lld", what, (long long)K);
    out->K = K;
    out->N = N;
    size_t kn;
    if (!mha_mul_size((size_t)K, (size_t)N, &kn) || !mha_mul_size(kn, sizeof(float), &kn))
        return mha_fail(err, MHA_ERR_LIMIT, "packing %s: %lldx%lld weights too large", what,
                        (long long)K, (long long)N);
    size_t packed_size = p->gemm_packed_size(state, precision, K, N);
    /* bfloat16 packs 2 bytes a weight */
    if (precision == MHA_PRECISION_BFLOAT16) kn /= 2;
    if (packed_size == SIZE_MAX)
        return mha_fail(err, MHA_ERR_LIMIT, "packing %s: backend '%s' cannot pack %lldx%lld", what,
                        p->name, (long long)K, (long long)N);
    /* the packed panels hold every weight: fewer bytes than K x N floats
     * would let pack_b write past the buffer */
    if (packed_size < kn)
        return mha_fail(err, MHA_ERR_PLUGIN,
                        "packing %s: backend '%s' reports %zu packed bytes for %lldx%lld "
                        "weights (%zu bytes)",
                        what, p->name, packed_size, (long long)K, (long long)N, kn);
    out->packed = mha_malloc(a, packed_size ? packed_size : 1);
    out->packed_bytes = packed_size;
    out->weight_bytes = precision == MHA_PRECISION_BFLOAT16 ? 2 : (int)sizeof(float);
    if (!out->packed)
        return mha_fail(err, MHA_ERR_NO_MEMORY,
                        "packing %s: out of memory for the %zu bytes backend '%s' asks for", what,
                        packed_size, p->name);
    int rc = 0;
    if (n_parts == 1) {
        rc = p->gemm_pack_b(state, precision, K, N, w[0], N, out->packed);
    } else {
        float *cat = mha_malloc(a, (size_t)K * (size_t)N * sizeof(float));
        if (!cat)
            return mha_fail(err, MHA_ERR_NO_MEMORY, "packing %s: out of memory for %zu bytes", what,
                            kn);
        for (int64_t r = 0; r < K; r++) {
            int64_t c0 = 0;
            for (int i = 0; i < n_parts; i++) {
                memcpy(cat + r * N + c0, w[i] + r * cols[i], (size_t)cols[i] * sizeof(float));
                c0 += cols[i];
            }
        }
        rc = p->gemm_pack_b(state, precision, K, N, cat, N, out->packed);
        mha_free(a, cat);
    }
    if (rc != 0)
        return mha_fail(err, MHA_ERR_PLUGIN, "packing %s: backend '%s' failed to pack %lldx%lld",
                        what, p->name, (long long)K, (long long)N);
    if (any_bias) {
        out->bias = mha_calloc(a, (size_t)(N ? N : 1), sizeof(float));
        if (!out->bias)
            return mha_fail(err, MHA_ERR_NO_MEMORY, "packing %s: out of memory for the bias", what);
        int64_t c0 = 0;
        for (int i = 0; i < n_parts; i++) {
            if (bias[i]) memcpy(out->bias + c0, bias[i], (size_t)cols[i] * sizeof(float));
            c0 += cols[i];
        }
    }
    return MHA_OK;
}

/* Whether self-attention's W_q|W_k|W_v is packed head by head: the columns
 * [Q_h | K_h | V_h] of each head side by side (the Q|K|V buffer then reads
 * q, k and v of head h at h * (2 dk + dv) + 0, dk, 2 dk, every head
 * stride 2 dk + dv). The GEMM's column slabs and pieces then hold whole
 * heads (W2's Q|K|V at 2 threads: two pieces of 1152 columns, heads 0-5
 * on the caller, 6-11 on the helper), so each core computes the Q, K and
 * V of the heads whose attention it runs next and reads them from its own
 * cache; side by side, a head's Q came from one core and its V from the
 * other (two18: W2's attention units 4.9 us at 2 threads against 2.7 at
 * 1). Each element of C is the same sum whatever its column, so
 * the bits do not change. Only the plain form: one K and V head per query
 * head, and no reader of the buffer that assumes [Q | K | V] (the rotary
 * and the norms of Q and K, a KV cache's gather into its presents). */
static int exec_qkv_by_head(const layer *L) {
    if (L->cross || L->q_heads < 2 || L->kv_heads != L->q_heads || L->rotary || L->qk_norm[0] ||
        L->qk_norm[1])
        return 0;
    for (size_t i = 0; i < L->n_inputs; i++)
        if (L->inputs[i].role == MHA_ROLE_PAST_KEY || L->inputs[i].role == MHA_ROLE_PAST_VALUE)
            return 0;
    for (size_t i = 0; i < L->n_outputs; i++)
        if (L->outputs[i].role == MHA_ROLE_PRESENT_KEY ||
            L->outputs[i].role == MHA_ROLE_PRESENT_VALUE)
            return 0;
    return 1;
}

/* W_q|W_k|W_v [d_model, H (2 dk + dv)] head by head (exec_qkv_by_head),
 * packed as one part. */
static mha_status exec_pack_qkv_by_head(const mha_alloc_ctx *a, const layer *L,
                                        const mha_plugin *plugin, void *state, int precision,
                                        exec_gemm_weights *out, mha_error *err) {
    const int64_t K = L->d_model, H = L->q_heads, dk = L->d_head, dv = layer_dv(L);
    const int64_t w3 = 2 * dk + dv, N = H * w3;
    float *cat = mha_malloc(a, (size_t)(K > 0 ? K : 1) * (size_t)N * sizeof(float));
    float *bias = mha_calloc(a, (size_t)N, sizeof(float));
    if (!cat || !bias) {
        mha_free(a, cat);
        mha_free(a, bias);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "packing W_q|W_k|W_v: out of memory");
    }
    const float *w[3] = {L->wq, L->wk, L->wv}, *b[3] = {L->bq, L->bk, L->bv};
    const int64_t d[3] = {dk, dk, dv}, at[3] = {0, dk, 2 * dk};
    for (int part = 0; part < 3; part++)
        for (int64_t h = 0; h < H; h++) {
            for (int64_t r = 0; r < K; r++)
                memcpy(cat + r * N + h * w3 + at[part], w[part] + r * H * d[part] + h * d[part],
                       (size_t)d[part] * sizeof(float));
            if (b[part])
                memcpy(bias + h * w3 + at[part], b[part] + h * d[part],
                       (size_t)d[part] * sizeof(float));
        }
    const float *wc[1] = {cat}, *bc[1] = {L->bq || L->bk || L->bv ? bias : NULL};
    const int64_t cols[1] = {N};
    mha_status st =
        exec_pack_parts(a, plugin, state, precision, K, 1, wc, cols, bc, "W_q|W_k|W_v", out, err);
    mha_free(a, cat);
    mha_free(a, bias);
    return st;
}

mha_status exec_pack_weights(const mha_alloc_ctx *a, const layer *L, const mha_plugin *plugin,
                             void *state, int precision, exec_packed **out, mha_error *err) {
    *out = NULL;
    if (!registry_plugin_serves(plugin, precision))
        return mha_fail(err, MHA_ERR_BACKEND,
                        "backend '%s' does not serve precision %s (its plugin table does not "
                        "declare it)",
                        plugin->name, exec_precision_name(precision));
    exec_packed *pk = mha_calloc(a, 1, sizeof *pk);
    if (!pk) return mha_fail(err, MHA_ERR_NO_MEMORY, "packing weights: out of memory");
    pk->plugin = plugin;
    pk->precision = precision;
    if (!L->has_proj) {
        *out = pk;
        return MHA_OK;
    }
    if (!L->wq || (!L->kv_given && (!L->wk || !L->wv)) || !L->wo) {
        exec_packed_free(a, pk);
        return mha_fail(err, MHA_ERR_INTERNAL,
                        "packing weights: the layer has projections but a weight is missing");
    }
    const int64_t dk = L->d_head, dv = layer_dv(L);
    const int64_t nq = L->q_heads * dk, nk = L->kv_heads * dk, nv = L->kv_heads * dv;
    mha_status st;
    if (!L->cross) {
        const float *w[3] = {L->wq, L->wk, L->wv};
        const float *b[3] = {L->bq, L->bk, L->bv};
        const int64_t cols[3] = {nq, nk, nv};
        pk->fused_qkv = 1;
        pk->qkv_by_head = exec_qkv_by_head(L);
        st = pk->qkv_by_head ? exec_pack_qkv_by_head(a, L, plugin, state, precision, &pk->qkv, err)
                             : exec_pack_parts(a, plugin, state, precision, L->d_model, 3, w, cols,
                                               b, "W_q|W_k|W_v", &pk->qkv, err);
    } else {
        const float *wq[1] = {L->wq}, *bq[1] = {L->bq};
        const int64_t cq[1] = {nq};
        st = exec_pack_parts(a, plugin, state, precision, L->d_model, 1, wq, cq, bq, "W_q", &pk->q,
                             err);
        if (st == MHA_OK && !L->kv_given) { /* else K, V come in projected */
            const float *w[2] = {L->wk, L->wv}, *b[2] = {L->bk, L->bv};
            const int64_t cols[2] = {nk, nv};
            /* one GEMM for K and V from one input, or one each from two */
            st = exec_pack_parts(a, plugin, state, precision, L->d_kv, L->v_input ? 1 : 2, w, cols,
                                 b, L->v_input ? "W_k" : "W_k|W_v", &pk->kv, err);
            if (st == MHA_OK && L->v_input)
                st = exec_pack_parts(a, plugin, state, precision, layer_v_rows(L), 1, w + 1,
                                     cols + 1, b + 1, "W_v", &pk->v, err);
        }
    }
    if (st == MHA_OK) {
        const float *wo[1] = {L->wo}, *bo[1] = {L->bo};
        const int64_t co[1] = {layer_dout(L)};
        st = exec_pack_parts(a, plugin, state, precision, L->q_heads * dv, 1, wo, co, bo, "W_o",
                             &pk->o, err);
    }
    if (st != MHA_OK) {
        exec_packed_free(a, pk);
        return st;
    }
    *out = pk;
    return MHA_OK;
}

void exec_weights_free(const mha_alloc_ctx *a, exec_gemm_weights *w) {
    mha_free(a, w->packed);
    mha_free(a, w->bias);
    w->packed = NULL;
    w->bias = NULL;
}

void exec_packed_free(const mha_alloc_ctx *a, exec_packed *pk) {
    if (!pk) return;
    exec_weights_free(a, &pk->qkv);
    exec_weights_free(a, &pk->q);
    exec_weights_free(a, &pk->kv);
    exec_weights_free(a, &pk->v);
    exec_weights_free(a, &pk->o);
    mha_free(a, pk);
}

size_t exec_weights_bytes(const exec_gemm_weights *w) {
    if (!w->packed) return 0;
    size_t n = w->packed_bytes;
    if (w->bias) n += (size_t)w->N * sizeof(float);
    return n;
}

size_t exec_packed_bytes(const exec_packed *pk) {
    if (!pk) return 0;
    return sizeof *pk + exec_weights_bytes(&pk->qkv) + exec_weights_bytes(&pk->q) +
           exec_weights_bytes(&pk->kv) + exec_weights_bytes(&pk->o) + exec_weights_bytes(&pk->v);
}

/* ------------------------------------------------------------------------ */
/* Services lent to a plugin                                                 */
/* ------------------------------------------------------------------------ */

/* Plugins may ask for alignments above the 64 bytes mha_malloc gives: every
 * block is over-allocated and the raw pointer kept just before the aligned
 * one, so one free() serves any alignment. */
static void *exec_services_alloc(void *ctx, size_t size, size_t align) {
    const exec_services *s = ctx;
    if (align < 64) align = 64;
    if (align > 4096 || (align & (align - 1))) return NULL;
    size_t total;
    if (!mha_add_size(size, align + sizeof(void *), &total)) return NULL;
    char *raw = mha_malloc(s->alloc, total);
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void exec_services_free(void *ctx, void *ptr) {
    const exec_services *s = ctx;
    if (ptr) mha_free(s->alloc, ((void **)ptr)[-1]);
}

static void exec_services_log(void *ctx, int level, const char *message) {
    const exec_services *s = ctx;
    char safe[1024]; /* a plugin's text: one line, no control characters */
    if (s->log && level >= 0 && level <= (int)s->log_level)
        s->log(s->log_user, (mha_log_level)level, mha_text_escape(safe, sizeof safe, message));
}

void exec_services_init(exec_services *s, const mha_alloc_ctx *a, mha_log_fn log, void *log_user,
                        mha_log_level log_level, uint64_t cpu_features) {
    memset(s, 0, sizeof *s);
    s->alloc = a;
    s->log = log;
    s->log_user = log_user;
    s->log_level = log_level;
    s->table.struct_size = sizeof s->table;
    s->table.ctx = s;
    s->table.log = exec_services_log;
    s->table.alloc = exec_services_alloc;
    s->table.free = exec_services_free;
    s->table.cpu_features = cpu_features;
}

/* ------------------------------------------------------------------------ */
/* Masks                                                                     */
/* ------------------------------------------------------------------------ */

/* A term of the mask seen as 4-D [B', H', Sq', Skv'] (each dim full or 1):
 * a mask input, the layer's constant bias, or the sliding window. */
typedef enum exec_mask_kind {
    EXEC_MASK_TENSOR = 0, /* bool 0 / -inf by polarity, or float additive */
    EXEC_MASK_VALUED,     /* key padding m -> the layer's kpm_add (any dtype) */
    EXEC_MASK_WINDOW,     /* -inf where j < i - left_window */
    EXEC_MASK_RELATIVE,   /* the layer's bias[h][j - i + len - 1] (T5) */
    EXEC_MASK_CAUSAL      /* the file's finite causal term where j > i (causal_finite) */
} exec_mask_kind;

typedef struct exec_mask_view {
    exec_mask_kind kind;
    const mha_tensor *t;
    int64_t dims[4];
    int64_t strides[4];   /* elements; 0 where dims == 1 */
    int attend_when_true; /* bool masks */
    float hide;           /* EXEC_MASK_WINDOW: the term on a key outside the window */
    int64_t off;          /* computed kinds: query i is at key position i + off (the past
                             length of a KV cache) */
    int64_t windows;      /* > 0: batch item b reads entry b % windows of axis 0 (a bias
                             per window of a batch of windows, layer.bias_windows) */
} exec_mask_view;

/* An attention mask right-aligned to [B, H, Sq, Skv] -- or, batch_first
 * and 3-D, [B, Sq, Skv] as [B, 1, Sq, Skv]. */
static void exec_mask_view_attn(const mha_tensor *t, int attend_when_true, int batch_first,
                                int64_t heads, exec_mask_view *v) {
    memset(v, 0, sizeof *v);
    v->kind = EXEC_MASK_TENSOR;
    v->t = t;
    v->attend_when_true = attend_when_true;
    if (batch_first == 4 && t->rank == 4) { /* [B, Sq, H, Skv] as [B, H, Sq, Skv] */
        const int ax[4] = {0, 2, 1, 3};
        int64_t stride = 1;
        for (int k = 3; k >= 0; k--) {
            v->dims[ax[k]] = t->shape[k];
            v->strides[ax[k]] = t->shape[k] == 1 ? 0 : stride;
            stride *= t->shape[k];
        }
        return;
    }
    if (batch_first == 2 && t->rank == 3) { /* [B*H, Sq, Skv] as [B, H, Sq, Skv] */
        v->dims[0] = t->shape[0] / heads, v->dims[1] = heads;
        v->dims[2] = t->shape[1], v->dims[3] = t->shape[2];
        v->strides[3] = t->shape[2] == 1 ? 0 : 1;
        v->strides[2] = t->shape[1] == 1 ? 0 : t->shape[2];
        v->strides[1] = t->shape[1] * t->shape[2];
        v->strides[0] = heads * v->strides[1];
        return;
    }
    int64_t stride = 1;
    for (int i = 3; i >= 0; i--) {
        int src = batch_first && t->rank == 3 ? (i == 1   ? -1
                                                 : i == 0 ? 0
                                                          : i - 1)
                                              : t->rank - (4 - i);
        int64_t d = src >= 0 ? t->shape[src] : 1;
        v->dims[i] = d;
        v->strides[i] = d == 1 ? 0 : stride;
        stride *= d;
    }
}

static void exec_mask_view_padding(const mha_tensor *t, int true_means_ignore, int valued,
                                   exec_mask_view *v) {
    memset(v, 0, sizeof *v);
    /* [B', Skv] -> [B', 1, 1, Skv] */
    v->kind = valued ? EXEC_MASK_VALUED : EXEC_MASK_TENSOR;
    v->t = t;
    v->attend_when_true = !true_means_ignore;
    v->dims[0] = t->shape[0];
    v->dims[1] = 1;
    v->dims[2] = 1;
    v->dims[3] = t->shape[1];
    v->strides[0] = t->shape[0] == 1 ? 0 : t->shape[1];
    v->strides[1] = 0;
    v->strides[2] = 0;
    v->strides[3] = t->shape[1] == 1 ? 0 : 1;
}

static double exec_mask_raw(const mha_tensor *t, int64_t off) {
    switch (t->dtype) {
    case MHA_DTYPE_BOOL:
        return ((const uint8_t *)t->data)[off] != 0;
    case MHA_DTYPE_INT32:
        return ((const int32_t *)t->data)[off];
    case MHA_DTYPE_INT64:
        return (double)((const int64_t *)t->data)[off];
    default:
        return ((const float *)t->data)[off];
    }
}

/* A float mask the graph adds to the scores: finfo.min (-FLT_MAX) is a
 * finite term there, but the kernels hide a key whose term is <= -FLT_MAX
 * (plugin.h). The two part ways on a row where no key has a larger term
 * (CLIP's causal + padding mask summed: keys at finfo.min, padded future
 * ones at -inf): the graph's softmax averages the finfo.min keys, the
 * kernels would give zeros. The next float up keeps such a key in the
 * softmax, and its score still rounds away beside it (the float spacing
 * there is 2^104), so the row averages as in the graph; on any other row
 * the key weighs exp(-3.4e38) = 0 either way. -inf stays hidden. */
static float exec_mask_float_term(float v) {
    return v == -FLT_MAX ? nextafterf(-FLT_MAX, 0.0f) : v;
}

/* Whether the float mask t holds a finfo.min term (exec_mask_float_term
 * then differs from the raw value). */
static int exec_mask_has_lowest(const mha_tensor *t) {
    const float *x = t->data;
    for (int64_t i = 0, n = mha_tensor_numel(t); i < n; i++)
        if (x[i] == -FLT_MAX) return 1;
    return 0;
}

/* The additive of view v at (head h, query i, key j), element off of its
 * tensor. */
static float exec_mask_value(const layer *L, const exec_mask_view *v, int64_t off, int64_t h,
                             int64_t i, int64_t j) {
    if (v->kind == EXEC_MASK_WINDOW) return j < i + v->off - L->left_window ? v->hide : 0.0f;
    if (v->kind == EXEC_MASK_CAUSAL) return j > i + v->off ? L->causal_fill : 0.0f;
    if (v->kind == EXEC_MASK_RELATIVE)
        return L->bias[h * (2 * L->bias_rel_len - 1) + (j - i + L->bias_rel_len - 1)];
    if (v->kind == EXEC_MASK_VALUED) {
        /* the graph's own arithmetic: (1 - m) * c is c0 + (c1 - c0) * m */
        const float *add = L->kpm_add;
        double m = exec_mask_raw(v->t, off);
        if (L->kpm_affine && v->t->dtype == MHA_DTYPE_FLOAT32 && isfinite(add[0]) &&
            isfinite(add[1]))
            return add[0] + (add[1] - add[0]) * (float)m;
        return add[m != 0.0];
    }
    if (v->t->dtype == MHA_DTYPE_BOOL) {
        int on = ((const uint8_t *)v->t->data)[off] != 0;
        return on == v->attend_when_true ? 0.0f : -INFINITY;
    }
    return exec_mask_float_term(((const float *)v->t->data)[off]);
}

/* A view computed per element, no tensor: [1, heads, Sq, T] (T: the past
 * keys of a KV cache, then the new ones). */
static void exec_mask_view_computed(exec_mask_kind kind, int64_t heads, const exec_binding *bd,
                                    exec_mask_view *v) {
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->dims[0] = 1;
    v->dims[1] = heads;
    v->dims[2] = bd->Sq;
    v->dims[3] = bd->T;
    v->off = bd->P;
}

/* Whether the causal mask goes into the mask tensor this run, as the finite
 * term the file adds (layer.h causal_finite), instead of the kernels' own
 * -inf: only when some query row sees nothing but padding (key 0 of a batch
 * item hidden; later rows see it too -- or, a mask with rows of its own
 * [B, H', Sq, Skv], a row whose every visible key is hidden), where the two
 * part ways. */
static int exec_fold_causal(const layer *L, const exec_binding *bd, const exec_mask_view *kpm) {
    if (!L->causal || !L->causal_finite || L->causal_finite == 3 || !kpm || L->bias ||
        bd->Sq != bd->Skv)
        return 0;
    const int64_t *s = kpm->strides;
    /* under a sliding window row i sees keys i - left_window .. i: a row
     * of key padding alone ([B, 1, 1, Skv]) is read for every query row */
    const int64_t rows = L->has_left_window ? bd->Sq : kpm->dims[2];
    for (int64_t b = 0; b < kpm->dims[0]; b++)
        for (int64_t h = 0; h < kpm->dims[1]; h++)
            for (int64_t i = 0; i < rows; i++) {
                const int64_t j0 =
                    L->has_left_window && i > L->left_window ? i - L->left_window : 0;
                int64_t hidden = 0, finite = 0;
                for (int64_t j = j0; j <= i && j < kpm->dims[3]; j++) {
                    const float v =
                        exec_mask_value(L, kpm, b * s[0] + h * s[1] + i * s[2] + j * s[3], h, i, j);
                    hidden += v <= -1e30f;
                    finite += v > -INFINITY;
                }
                if (hidden == i - j0 + 1 && finite > 0) return 1;
            }
    return 0;
}

/* A mask of zeros (an extended mask of all ones: (1 - 1) * finfo.min is
 * -0) hides and adds nothing: score + 0 is the score but for the sign of a
 * zero, which no exp(score - max) sees, so the kernels' unmasked path (no
 * mask load and select per key vector) gives the same bits. Dropped then,
 * unless the causal mask was folded into it (the kernels' own would come
 * back). dims [B', H', Sq', Skv'] over m's strides; a NaN is not a zero.
 *
 * With key lengths (kv_len [B], a batch of right-padded items: mha_queue's)
 * only the terms the kernels read count -- keys j < kv_len[b] of item b,
 * every head and query row; the keys past it are ignored as if masked --
 * so a mask that hides nothing but the padding is dropped too, and each
 * item runs the kernels' unmasked path, as it does alone with its mask of
 * ones (bfloat16 on avx512: the lazy-max softmax, whose bits differ from
 * the masked path's). */
static void exec_mask_drop_zeros(exec_mask *m, const int64_t dims[4], int64_t B,
                                 const int64_t *kv_len) {
    if (!m->data || m->causal_folded) return;
    const int64_t items = kv_len ? B : dims[0];
    for (int64_t b = 0; b < items; b++) {
        const float *mb = m->data + (dims[0] == 1 ? 0 : b) * m->sb;
        int64_t keys = dims[3];
        if (kv_len && kv_len[b] <= 0)
            keys = 0;
        else if (kv_len && dims[3] > 1 && kv_len[b] < keys)
            keys = kv_len[b];
        for (int64_t i1 = 0; i1 < dims[1]; i1++)
            for (int64_t i2 = 0; i2 < dims[2]; i2++)
                for (int64_t i3 = 0; i3 < keys; i3++)
                    if (mb[i1 * m->sh + i2 * m->sq + i3 * m->sk] != 0.0f) return;
    }
    m->data = NULL;
}

mha_status exec_mask_build(const mha_alloc_ctx *a, const layer *L, const exec_binding *bd,
                           const int64_t *kv_len, exec_mask *m, mha_error *err) {
    memset(m, 0, sizeof *m);
    exec_mask_view views[6];
    mha_tensor bias;
    int n = 0;
    if (bd->attn_mask) {
        exec_mask_view_attn(bd->attn_mask, !L->attn_bool_ignore_true, L->attn_mask_batch_first,
                            L->q_heads, &views[n]);
        if (L->attn_mask_window) { /* its first Sq rows and T columns, by its strides */
            if (views[n].dims[2] > bd->Sq) views[n].dims[2] = bd->Sq;
            if (views[n].dims[3] > bd->T) views[n].dims[3] = bd->T;
        }
        if (L->attn_valued) views[n].kind = EXEC_MASK_VALUED;
        n++;
    }
    if (bd->attn_bias) /* float, the attention mask's layout */
        exec_mask_view_attn(bd->attn_bias, 1, L->attn_mask_batch_first, L->q_heads, &views[n++]);
    const exec_mask_view *kpm = NULL;
    if (bd->key_padding) {
        exec_mask_view_padding(bd->key_padding, L->kpm_true_means_ignore, L->kpm_valued, &views[n]);
        kpm = &views[n++];
    }
    /* a float attention mask over the keys alone ([B, 1, 1, Skv], a
     * model's extended mask) pads keys as a key padding mask does; one
     * with rows ([B, 1, Sq, Skv], CLIP's expanded one) may too */
    const exec_mask_view *pad = kpm;
    if (!pad && bd->attn_mask && views[0].kind == EXEC_MASK_TENSOR &&
        bd->attn_mask->dtype == MHA_DTYPE_FLOAT32)
        pad = &views[0];
    if (exec_fold_causal(L, bd, pad)) {
        exec_mask_view_computed(EXEC_MASK_CAUSAL, 1, bd, &views[n++]);
        m->causal_folded = 1;
    }
    if (L->bias && L->bias_rel_len > 0) {
        /* [1, heads, Sq, Skv] from the diagonals (layer_bind checked the lengths) */
        exec_mask_view_computed(EXEC_MASK_RELATIVE, L->bias_heads, bd, &views[n++]);
    } else if (L->bias) {
        /* [bias_heads, Sq, Skv], fixed lengths (layer_bind checked them);
         * over a batch of windows [windows, bias_heads, Sq, Skv], item b
         * taking window b % windows */
        const int w = L->bias_windows > 1;
        memset(&bias, 0, sizeof bias);
        bias.dtype = MHA_DTYPE_FLOAT32;
        bias.rank = 3 + w;
        if (w) bias.shape[0] = L->bias_windows;
        bias.shape[w] = L->bias_heads;
        bias.shape[w + 1] = L->bias_sq;
        bias.shape[w + 2] = L->bias_skv;
        bias.data = L->bias;
        exec_mask_view_attn(&bias, 1, 0, 1, &views[n]);
        if (w) {
            views[n].dims[0] = bd->B;
            views[n].windows = L->bias_windows;
        }
        n++;
    }
    if (L->has_proj && L->has_left_window) {
        /* with the causal term folded in (merged terms), the window's
         * finfo.min as well */
        exec_mask_view_computed(EXEC_MASK_WINDOW, 1, bd, &views[n]);
        views[n++].hide = m->causal_folded ? L->causal_fill : -INFINITY;
    }
    if (n == 0) return MHA_OK;

    if (n == 1 && views[0].kind == EXEC_MASK_TENSOR && !views[0].windows &&
        views[0].t->dtype == MHA_DTYPE_FLOAT32 && !exec_mask_has_lowest(views[0].t) &&
        !L->mask_clamped) {
        /* a float mask is used as it is, through its strides (one with
         * finfo.min terms is copied below, exec_mask_float_term) */
        m->data = views[0].t->data;
        m->sb = views[0].strides[0];
        m->sh = views[0].strides[1];
        m->sq = views[0].strides[2];
        m->sk = views[0].strides[3];
        exec_mask_drop_zeros(m, views[0].dims, bd->B, kv_len);
        return MHA_OK;
    }
    /* bool masks become 0 / -inf, valued key padding its additive; several
     * terms are summed into one tensor of their common broadcast shape (a
     * key padding row alone stays a [B, 1, 1, Skv] row) */
    int64_t dims[4], strides[4], total = 1;
    for (int i = 0; i < 4; i++) {
        dims[i] = views[0].dims[i];
        for (int k = 1; k < n; k++)
            if (views[k].dims[i] > dims[i]) dims[i] = views[k].dims[i];
    }
    for (int i = 3; i >= 0; i--) {
        strides[i] = dims[i] == 1 ? 0 : total;
        if (!mha_mul_i64(total, dims[i], &total))
            return mha_fail(err, MHA_ERR_LIMIT, "attention mask too large");
    }
    m->owned = mha_calloc(a, (size_t)(total ? total : 1), sizeof(float));
    if (!m->owned)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "attention mask: out of memory for %lld floats",
                        (long long)total);
    float *dst = m->owned;
    for (int64_t i0 = 0; i0 < dims[0]; i0++)
        for (int64_t i1 = 0; i1 < dims[1]; i1++)
            for (int64_t i2 = 0; i2 < dims[2]; i2++)
                for (int64_t i3 = 0; i3 < dims[3]; i3++) {
                    float sum = 0.0f;
                    for (int k = 0; k < n; k++) {
                        const int64_t *s = views[k].strides;
                        const int64_t b = views[k].windows ? i0 % views[k].windows : i0;
                        int64_t off = b * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3];
                        sum += exec_mask_value(L, &views[k], off, i1, i2, i3);
                    }
                    /* terms merged into one finfo.min (causal_finite 2) do
                     * not overflow to -inf together */
                    if (m->causal_folded && L->causal_finite == 2 && sum < -FLT_MAX)
                        sum = L->causal_fill;
                    /* the file's clamp (a NaN stays NaN, as in its Max) */
                    if (L->mask_clamped && sum < L->mask_floor)
                        sum = exec_mask_float_term(L->mask_floor);
                    *dst++ = sum;
                }
    m->data = m->owned;
    m->sb = strides[0];
    m->sh = strides[1];
    m->sq = strides[2];
    m->sk = strides[3];
    exec_mask_drop_zeros(m, dims, bd->B, kv_len);
    return MHA_OK;
}

/* BLOOM's ALiBi positions, [B, Skv]: key j of batch item b is at the
 * number of keys its key padding lets through before it (cumsum(m) - 1); a
 * hidden key gets 0 (its score is hidden anyway). NULL unless the layer
 * counts positions so and has a key padding input. */
static mha_status exec_alibi_positions(const mha_alloc_ctx *a, const layer *L,
                                       const exec_binding *bd, float **out, mha_error *err) {
    *out = NULL;
    if (!L->alibi_slopes || !L->alibi_pos_from_mask || !bd->key_padding) return MHA_OK;
    exec_mask_view v;
    exec_mask_view_padding(bd->key_padding, L->kpm_true_means_ignore, L->kpm_valued, &v);
    const int64_t B = bd->B, S = bd->T;
    size_t n;
    if (!mha_mul_size((size_t)B, (size_t)S, &n))
        return mha_fail(err, MHA_ERR_LIMIT, "ALiBi positions of %lld x %lld keys", (long long)B,
                        (long long)S);
    float *pos = mha_malloc(a, (n ? n : 1) * sizeof(float));
    if (!pos) return mha_fail(err, MHA_ERR_NO_MEMORY, "ALiBi positions: out of memory");
    for (int64_t b = 0; b < B; b++) {
        int64_t seen = 0;
        for (int64_t j = 0; j < S; j++) {
            const int64_t off = b * v.strides[0] + j * v.strides[3];
            const int attend = !(exec_mask_value(L, &v, off, 0, 0, j) <= -FLT_MAX);
            seen += attend;
            pos[b * S + j] = attend ? (float)(seen - 1) : 0.0f;
        }
    }
    *out = pos;
    return MHA_OK;
}

/* ------------------------------------------------------------------------ */
/* Work plan                                                                 */
/* ------------------------------------------------------------------------ */

/* Attention over the chunk: args covers it all; units are (query block,
 * batch item, head), heaviest query block first when a causal head is
 * cut into query blocks. */
typedef struct exec_attn_plan {
    mha_attn_args args;
    int64_t q_block, n_qb;
    int64_t h_block, n_hb; /* heads per unit, head groups per batch item */
    int heaviest_first;
    int64_t n_units;
    int fill_rows; /* a causal_finite 3 layer (layer.h): rows of left padding
                      computed again after the kernel (exec_fill_rows) */
    float fill;    /* its causal fill */
} exec_attn_plan;

/* Q and K of the chunk between their projections and attention, in
 * place: the norm of each head (or of all heads) when the layer has one
 * (layer.qk_norm), then the rotary embedding. Units are (batch item, Q or
 * K, block of rows). args[0] covers Q, args[1] K, each the whole chunk. */
typedef struct exec_rope_plan {
    mha_rotary_args args[2];
    int rotate;            /* the layer has a rotary embedding */
    registry_rotary_fn fn; /* the plugin's, or the built-in scalar's */
    void *fn_state;
    registry_norm_fn norm_fn; /* the same for the norms */
    void *norm_state;
    int64_t s_block[2], n_sb[2];
    int64_t n_units;
} exec_rope_plan;

/* A KV cache's K' and V' of the chunk gathered: [n, Hkv, T, d] each, the
 * past rows [B, Hkv, P, d] of items b0 .. b0 + n then the S new rows of
 * each head (row (b, s) of the projections at (b * S + s) * ld, head g at
 * g * d). Units are (K or V, item, head, block of t_block rows of T): a
 * long past is copied by every thread, each unit a disjoint part of dst. */
typedef struct exec_cache_plan {
    const float *past[2]; /* past_key, past_value: the whole [B, Hkv, P, d] */
    const float *rows[2]; /* the new K, V rows of the chunk */
    float *dst[2];
    int64_t d[2];
    int64_t b0, n, Hkv, P, S, ld;
    int64_t t_block, n_tb; /* rows per unit; blocks per (K or V, item, head) */
    int64_t n_units;
} exec_cache_plan;

enum {
    EXEC_PHASE_PROJ,
    EXEC_PHASE_ROPE,
    EXEC_PHASE_CACHE,
    EXEC_PHASE_ATTN,
    EXEC_PHASE_OUT,
    EXEC_PHASE_PROJ_ATTN /* Q|K|V's two column pieces and the attention, one phase (exec_merge) */
};

/* A Q|K|V piece of the merged phase: free, being computed, done, failed. */
enum { EXEC_PIECE_FREE, EXEC_PIECE_TAKEN, EXEC_PIECE_DONE, EXEC_PIECE_FAILED };

typedef struct exec_state {
    const exec_env *env;
    const mha_plugin *plugin;
    const layer *layer; /* the layer of a projected run (its norms of Q and K) */
    int threads;
    int phase_kind[POOL_MAX_PHASES];
    int n_phases;
    exec_gemm_family proj[3]; /* QKV; or Q, KV; or Q, K, V (a separate value input) */
    int n_proj;
    exec_rope_plan rope;
    exec_cache_plan cache;
    exec_attn_plan attn;
    exec_gemm_family out;
    atomic_int *out_pieces; /* env->y_rows: [out.m_tiles] (exec_gemm_pieces_init) */
    int64_t out_pieces_cap;
    atomic_int *v_nan;       /* a softmax_nan layer on the pool: [chunk items], whether the item's
                                values hold a NaN (exec_attn_unit_values); else NULL */
    atomic_int *merge_piece; /* EXEC_PHASE_PROJ_ATTN: [2] EXEC_PIECE_* of Q|K|V's pieces */
    int64_t head_cols;       /* EXEC_PHASE_PROJ_ATTN: a head's columns of Q|K|V, 2 dk + dv */
    const float *alibi_pos;  /* [B, Skv] ALiBi key positions of the run, or NULL */
    char *workspace;         /* threads x ws_stride bytes */
    size_t ws_stride, ws_size, ws_capacity;
} exec_state;

/* How many column slabs a K x N weight of weight_bytes a packed weight is
 * cut into (1: none): enough for EXEC_GEMM_SLAB_BYTES each, a multiple of
 * the thread count, no slab narrower than EXEC_GEMM_SLAB_MIN_N; none for
 * a weight under two slabs' bytes (MiniLM's [384 x 1536], 2.4 MB, stays
 * in L3 whole: in slabs its run was ~2 % slower, alternated with the
 * whole-width build). A bfloat16 weight is half the bytes of its float32
 * one: counted as float32, BERT's [768 x 3072] was 6 slabs of 0.8 MB, each
 * repacking A, where 2 MB slabs need 4. */
static int64_t exec_gemm_slabs(int64_t K, int64_t N, int weight_bytes, int threads) {
    const int64_t bytes = K * (int64_t)(weight_bytes > 0 ? weight_bytes : (int)sizeof(float));
    if (K <= 0 || N < 2 * EXEC_GEMM_SLAB_MIN_N ||
        bytes > EXEC_GEMM_SLAB_BYTES / EXEC_GEMM_SLAB_MIN_N ||
        N < 2 * (EXEC_GEMM_SLAB_BYTES / bytes))
        return 1;
    int64_t n = exec_ceil_div(N, EXEC_GEMM_SLAB_BYTES / bytes);
    if (threads > 1) n = exec_round_up(n, threads);
    return exec_min(n, N / EXEC_GEMM_SLAB_MIN_N);
}

/* Tiles are multiples of the plugin's blocks (so every range the plugin
 * sees is aligned); they shrink until there are about two units per
 * thread, or to the plugin's blocks. */
void exec_gemm_plan(exec_gemm_family *f, const mha_plugin *p, int threads) {
    const int64_t mb = p->gemm_m_block > 0 ? p->gemm_m_block : 1;
    const int64_t nbk = p->gemm_n_block > 0 ? p->gemm_n_block : 1;
    const int64_t M = f->M, N = f->W->N;
    if (M <= 0 || N <= 0 || f->n_segs <= 0) {
        f->m_tile = mb;
        f->n_tile = nbk;
        f->m_tiles = f->n_tiles = 0;
        f->tail_tiles = 0;
        f->tail_split = 1;
        f->tail_n_tile = nbk;
        f->tail_m_tile = mb;
        f->tail_first = 0;
        f->n_units = 0;
        return;
    }
    int64_t mt = exec_min(exec_round_up(EXEC_GEMM_TILE_M, mb), exec_round_up(M, mb));
    int64_t nt = exec_round_up(exec_min(EXEC_GEMM_TILE_N, N), nbk);
    /* At 1 thread, C of one row tile is not cut into slabs: a slab keeps B
     * in L2 for the next row tile, and there is none; each slab's unit only
     * packs all of A again and ends the plugin's stream of B slices (W2's
     * Q|K|V [32 x 768] . [768 x 2304]: 4 units, now 1; W2 0.98x CPU time,
     * paired, same bits). At 2 threads they stay: the units balance. */
    const int64_t slabs = threads <= 1 && exec_ceil_div(M, mt) == 1
                              ? 1
                              : exec_gemm_slabs(f->W->K, N, f->W->weight_bytes, threads);
    /* Units wanted: two per thread, so a thread that falls behind shares
     * the end; but one per thread when all of C is one row tile of a
     * whole-width weight (a short request, W2's output projection): its
     * units are column pieces, and each packs all of A again, rows half
     * of which the other core wrote in the step before. W2 at 2 threads
     * (pairs in one process, same bits): its output projection's busy
     * time was 220 us in 4 units against 184 in one at 1 thread; in 2
     * units the run took 0.97-0.995 of the wall time, MiniLM-L6 at B 1,
     * S 16 and S 64 0.95-0.97. Its columns are cut into `threads` equal
     * pieces at once (3 threads: 3 of 256 columns, where halving gave 4
     * for 3 threads). Two row tiles or more keep two units a thread (one
     * per thread: level at S 128, and 3 units for 2 threads at S 200,
     * 1.14x slower). */
    /* Nor at 2 threads when one row tile would be at most two slabs a
     * thread (one_tile: one column piece per thread, A packed once by
     * each): W2's 4 slabs of 576 columns packed its 32 rows of A twice on
     * each core, and with Q|K|V head by head (exec_qkv_by_head) the two
     * pieces are heads 0-5 and 6-11. Many slabs stay (a decoding step's
     * logits, [768 x 50257] from memory: their units balance the threads). */
    const int64_t n_slabs =
        f->n_segs * exec_ceil_div(M, mt) == 1 && slabs <= 2 * (int64_t)threads ? 1 : slabs;
    const int one_tile = threads > 1 && n_slabs == 1 && f->n_segs * exec_ceil_div(M, mt) == 1;
    const int64_t want = threads <= 1 ? 1 : one_tile ? (int64_t)threads : 2 * (int64_t)threads;
    if (one_tile) nt = exec_max(nbk, exec_round_up(exec_ceil_div(N, threads), nbk));
    if (n_slabs > 1) {
        nt = exec_round_up(exec_ceil_div(N, n_slabs), nbk);
        /* row tiles: all rows, halved while the units are too few to
         * balance the threads (each row tile rereads its B slab) */
        mt = exec_round_up(M, mb);
        while (threads > 1 &&
               f->n_segs * exec_ceil_div(M, mt) * exec_ceil_div(N, nt) <
                   EXEC_GEMM_UNITS_PER_THREAD * (int64_t)threads &&
               mt > 2 * EXEC_GEMM_TILE_M)
            mt = exec_round_up(mt / 2, mb);
    }
    for (;;) {
        int64_t units = f->n_segs * exec_ceil_div(M, mt) * exec_ceil_div(N, nt);
        if (units >= want) break;
        if (nt > nbk && (nt >= 2 * mt || mt <= mb))
            nt = exec_round_up(nt / 2, nbk);
        else if (mt > mb)
            mt = exec_round_up(mt / 2, mb);
        else
            break;
    }
    f->m_tile = mt;
    f->n_tile = nt;
    f->m_tiles = exec_ceil_div(M, mt);
    f->n_tiles = exec_ceil_div(N, nt);
    f->n_units = f->n_segs * f->m_tiles * f->n_tiles;
    f->tail_tiles = 0;
    f->tail_split = 1;
    f->tail_n_tile = nt;
    f->tail_m_tile = mt;
    /* Row tiles, several per thread: the last `threads` of them go out
     * last as column pieces, so the threads that finish the body early
     * share the end (W4's 2048 rows are 22 whole-width tiles; without
     * this one thread computes 11 of them, the other 10 and a third of
     * one, and waits). A whole-width tile is cut into 2 x threads pieces
     * (BERT's FFN down [1024 x 3072] . [3072 x 768]: the last pieces ~1 ms
     * of one core instead of ~2.3), a slab's tile into halves; each piece
     * repacks its rows of A, which only the tail pays. A slab GEMM's tall
     * tiles (of 864 rows or more) are cut by rows instead, a quarter of
     * the tile by a slab each: W1's Q|K|V [4096 x 2304] had 1032 x 288
     * pieces last (~2.3 ms of one core: a thread could wait that long for
     * the other's last one); 264 x 576 pieces are half that, and no piece
     * packs the same rows of A for a slab twice (each rereads its slab of
     * B from L3). W1 at 2 threads: 0.991 of the wall time before (pairs in
     * one process, same bits). Shorter pieces would reread their slab
     * for fewer rows (ViT's 396-row tiles stay in halves). Only when every
     * piece of the last tile has rows. */
    const int64_t row_piece = exec_round_up(mt / 4, mb);
    if (threads > 1 && f->m_tiles >= 2 * (int64_t)threads && f->n_tiles > 1 &&
        row_piece >= 3 * EXEC_GEMM_TILE_M &&
        M - (f->m_tiles - 1) * mt > (exec_ceil_div(mt, row_piece) - 1) * row_piece) {
        f->tail_tiles = threads;
        f->tail_m_tile = row_piece;
        f->tail_split = f->n_tiles * exec_ceil_div(mt, row_piece);
        f->n_units += f->tail_tiles * (f->tail_split - f->n_tiles);
    } else if (threads > 1 && f->m_tiles >= 2 * (int64_t)threads) {
        const int64_t cut = f->n_tiles == 1 ? 2 * (int64_t)threads : 2;
        const int64_t piece = exec_round_up(exec_ceil_div(nt, cut), nbk);
        if (piece < nt) {
            f->tail_tiles = threads;
            f->tail_n_tile = piece;
            f->tail_split = exec_ceil_div(N, piece);
            f->n_units += f->tail_tiles * (f->tail_split - f->n_tiles);
        }
    }
    f->tail_first = f->m_tiles - f->tail_tiles;
    /* Slab tiles on two threads claiming from both ends (paired_ends: the
     * caller from the first rows, the helper from the last) are cut in the
     * middle, where the two meet, not at the end: each thread keeps whole
     * tiles of its own rows from the start and the pieces where they meet;
     * its rows of C are then the rows the next step (attention by batch
     * item, the next GEMM) reads on its core (BERT-base: the batch items of
     * the last tiles' column pieces came half from each core). The pieces
     * are EXEC_GEMM_TILE_M rows by a slab (the kernels' row block: each
     * block reads its slab of B once whatever the tile), none repacking A,
     * about half a column piece's time: BERT-base's Q|K|V and FFN up
     * phases ended with one thread idle a median 340 us (the pieces of 256
     * x 288), now ~20. A whole-width tile stays cut at the end: its last
     * tile, often short, gives the smallest last pieces (W4's 32 rows). */
    if (threads == 2 && f->paired_ends && f->n_segs == 1 && f->tail_tiles > 0 && f->n_tiles > 1) {
        f->tail_first = (f->m_tiles - f->tail_tiles) / 2;
        const int64_t rows = exec_round_up(EXEC_GEMM_TILE_M, mb);
        if (rows < mt) {
            f->n_units -= f->tail_tiles * (f->tail_split - f->n_tiles);
            f->tail_m_tile = rows;
            f->tail_n_tile = nt;
            f->tail_split = f->n_tiles * exec_ceil_div(mt, rows);
            f->n_units += f->tail_tiles * (f->tail_split - f->n_tiles);
        }
    }
}

void exec_gemm_pieces_init(const exec_gemm_family *f, atomic_int *pieces) {
    for (int64_t t = 0; t < f->m_tiles; t++)
        atomic_init(&pieces[t], 0);
    for (int64_t u = 0; u < f->n_units; u++) {
        int64_t seg, r[4];
        exec_gemm_unit_range(f, u, &seg, r);
        atomic_fetch_add_explicit(&pieces[r[0] / f->m_tile], 1, memory_order_relaxed);
    }
}

int exec_gemm_piece_done(const exec_gemm_family *f, atomic_int *pieces, int64_t u, int64_t r[4]) {
    int64_t seg;
    exec_gemm_unit_range(f, u, &seg, r);
    const int64_t tile = r[0] / f->m_tile;
    r[0] = tile * f->m_tile; /* a row piece: the whole tile's rows are complete */
    r[1] = exec_min(f->M, r[0] + f->m_tile);
    return atomic_fetch_sub_explicit(&pieces[tile], 1, memory_order_acq_rel) == 1;
}

/* Query blocks: when batch x heads alone gives fewer than two units per
 * thread, or under a causal mask (late rows see more keys; small blocks,
 * heaviest first, balance them). The split never changes a row's result:
 * plugins compute each row the same whatever range they are given. */
static void exec_attn_plan_make(exec_attn_plan *pl, int threads) {
    const mha_attn_args *a = &pl->args;
    const int64_t BH = a->B * a->Hq, Sq = a->Sq;
    int64_t n_qb = 1;
    if (threads > 1 && Sq > 1) {
        if (BH < 2 * (int64_t)threads) n_qb = exec_ceil_div(4 * (int64_t)threads, exec_max(BH, 1));
        /* Causal units differ in cost, so want about 8 per thread. But each
         * unit repacks its head's K and V up to its last key (W5, 64-row
         * blocks: ~40 % more time at 2 threads), so a head is split only
         * when batch x heads alone gives too few units. */
        if (a->causal && BH < 8 * (int64_t)threads)
            n_qb = exec_max(n_qb, exec_min(exec_ceil_div(8 * (int64_t)threads, exec_max(BH, 1)),
                                           exec_ceil_div(Sq, EXEC_CAUSAL_Q_BLOCK)));
    }
    n_qb = exec_max(1, exec_min(n_qb, Sq));
    int64_t qb = exec_ceil_div(Sq, n_qb);
    if (qb > 8) qb = exec_round_up(qb, 8); /* whole row groups for SIMD kernels */
    if (qb < 1) qb = 1;
    pl->q_block = qb;
    pl->n_qb = Sq > 0 ? exec_ceil_div(Sq, qb) : 0;
    /* Whole causal heads cost the same: no order to keep, so at 2 threads
     * they go out from both ends like any layer's, the caller's first batch
     * items on the rows of Q|K|V its core wrote (GPT-2 small at B 4, S 256:
     * 48 whole heads, taken in turns by the two threads before). */
    pl->heaviest_first = a->causal != 0 && pl->n_qb > 1;
    /* Tiny heads (a few queries and keys: short-sequence batch scoring)
     * cost less than a unit's overhead (claim, call, per-call setup), so
     * a unit then takes several heads of one batch item -- as long as
     * there are still 8 units per thread. */
    int64_t hb = 1;
    if (pl->n_qb == 1 && a->Hq > 1) {
        const double head_flops = 2.0 * (double)Sq * (double)a->Skv * (double)(a->dk + a->dv);
        const double unit_flops = 262144.0; /* ~1 us of a SIMD core */
        if (head_flops < unit_flops) {
            hb = exec_min(a->Hq, (int64_t)(unit_flops / (head_flops > 1.0 ? head_flops : 1.0)));
            while (hb > 1 && a->B * exec_ceil_div(a->Hq, hb) < 8 * (int64_t)threads)
                hb /= 2;
            hb = exec_max(hb, 1);
        }
    }
    pl->h_block = hb;
    pl->n_hb = exec_ceil_div(a->Hq, hb);
    pl->n_units = a->B * pl->n_hb * pl->n_qb;
}

/* Workspace for one attention call: for a pool, per worker, sized for the
 * widest unit; for a self-parallel plugin, one for the whole range. */
static mha_status exec_workspace_reserve(exec_state *s, const mha_alloc_ctx *a, int self_parallel,
                                         mha_error *err) {
    const mha_plugin *p = s->plugin;
    if (!p->attention_workspace_size) {
        s->ws_size = 0;
        s->ws_stride = 0;
        return MHA_OK;
    }
    mha_attn_args widest = s->attn.args;
    int copies = 1;
    if (!self_parallel) {
        widest.b0 = 0;
        widest.b1 = exec_min(1, widest.B);
        widest.h0 = 0;
        widest.h1 = exec_min(s->attn.h_block, widest.Hq);
        widest.q0 = 0;
        widest.q1 = exec_min(s->attn.q_block, widest.Sq);
        widest.num_threads = 1;
        copies = s->threads;
    } else {
        widest.num_threads = s->threads;
    }
    size_t ws = p->attention_workspace_size(s->env->plugin_state, &widest);
    size_t stride, total;
    if (!mha_add_size(ws, 63, &stride) ||
        !mha_mul_size(stride & ~(size_t)63, (size_t)copies, &total))
        return mha_fail(err, MHA_ERR_PLUGIN,
                        "backend '%s' asks for an attention workspace of %zu bytes x %d "
                        "threads, more than memory can hold",
                        p->name, ws, copies);
    stride &= ~(size_t)63;
    if (total > s->ws_capacity) {
        pool_scratch_give(s->env->pool, a, EXEC_SCRATCH_WORKSPACE, s->workspace);
        s->workspace = NULL;
        s->ws_capacity = 0;
        s->workspace = pool_scratch_take(s->env->pool, a, EXEC_SCRATCH_WORKSPACE, total);
        if (!s->workspace)
            return mha_fail(err, MHA_ERR_NO_MEMORY,
                            "attention workspace: out of memory for %zu bytes", total);
        s->ws_capacity = total;
    }
    s->ws_size = ws;
    s->ws_stride = stride;
    return MHA_OK;
}

/* ------------------------------------------------------------------------ */
/* Units                                                                     */
/* ------------------------------------------------------------------------ */

mha_status exec_gemm_tile(const exec_env *env, const exec_gemm_weights *W, int64_t M,
                          const float *A, int64_t lda, float *C, int64_t ldc, int64_t m0,
                          int64_t m1, int64_t n0, int64_t n1, int num_threads,
                          const exec_gemm_fused *fused, mha_error *err) {
    const mha_plugin *p = env->plugin;
    mha_gemm_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = sizeof g;
    g.M = M;
    g.N = W->N;
    g.K = W->K;
    g.A = A;
    g.lda = lda;
    g.B_packed = W->packed;
    g.bias = W->bias;
    g.C = C;
    g.ldc = ldc;
    g.m0 = m0;
    g.m1 = m1;
    g.n0 = n0;
    g.n1 = n1;
    g.num_threads = num_threads;
    g.precision = env->precision; /* W was packed in it (the model's cache is per precision) */
    if (fused) {                  /* only what the plugin declared (exec_gemm_fuse) */
        g.activation = fused->activation;
        g.residual = fused->residual;
        g.ldr = fused->ldr;
    }
    if (p->gemm(env->plugin_state, &g) != 0)
        return mha_fail(err, MHA_ERR_PLUGIN,
                        "backend '%s': gemm failed on rows [%lld, %lld) columns [%lld, %lld) "
                        "of a %lldx%lld . %lldx%lld product",
                        p->name, (long long)m0, (long long)m1, (long long)n0, (long long)n1,
                        (long long)g.M, (long long)g.K, (long long)g.K, (long long)g.N);
    return MHA_OK;
}

/* A family's call over rows [m0, m1), columns [n0, n1) of segment seg; its
 * residual (f->R) added by the plugin's kernel when it declares that
 * epilogue, else here right after, while the tile is in cache (the same
 * float addition either way). */
static mha_status exec_gemm_call(const exec_state *s, const exec_gemm_family *f, int64_t seg,
                                 int64_t m0, int64_t m1, int64_t n0, int64_t n1, int num_threads,
                                 mha_error *err) {
    float *C = f->C + seg * f->c_seg;
    const float *R = f->R ? f->R + seg * f->c_seg : NULL;
    exec_gemm_fused fused = {MHA_ACT_NONE, R, f->ldc};
    const int in_kernel = R && registry_plugin_epilogue(s->plugin, MHA_ACT_NONE, 1);
    mha_status st = exec_gemm_tile(s->env, f->W, f->M, f->A + seg * f->a_seg, f->lda, C, f->ldc, m0,
                                   m1, n0, n1, num_threads, in_kernel ? &fused : NULL, err);
    for (int64_t m = m0; st == MHA_OK && R && !in_kernel && m < m1; m++)
        for (int64_t n = n0; n < n1; n++)
            C[m * f->ldc + n] += R[m * f->ldc + n];
    return st;
}

void exec_gemm_touch(const exec_gemm_family *f, int64_t seg, const int64_t r[4], const float *R) {
    const int64_t fl = (int64_t)sizeof(float);
    pool_trace_touch(f->A + seg * f->a_seg, f->lda * fl, r[0], r[1], 0, f->W->K * fl, 0);
    if (R) pool_trace_touch(R + seg * f->c_seg, f->ldc * fl, r[0], r[1], r[2] * fl, r[3] * fl, 0);
    pool_trace_touch(f->C + seg * f->c_seg, f->ldc * fl, r[0], r[1], r[2] * fl, r[3] * fl, 1);
}

void exec_gemm_unit_range(const exec_gemm_family *f, int64_t u, int64_t *seg, int64_t r[4]) {
    const int64_t per_seg = f->m_tiles * f->n_tiles;
    /* units: the body before the cut tiles, their pieces, the body after */
    const int64_t before = (f->n_segs - 1) * per_seg + f->tail_first * f->n_tiles;
    const int64_t pieces = f->tail_tiles * f->tail_split;
    int64_t m0, m_end, n0, n_tile;
    if (u >= before && u < before + pieces) { /* a cut tile's piece: rows outer, columns inner */
        const int64_t t = u - before, piece = t % f->tail_split;
        const int64_t cols = exec_ceil_div(f->W->N, f->tail_n_tile);
        const int64_t tile0 = (f->tail_first + t / f->tail_split) * f->m_tile;
        m0 = tile0 + (piece / cols) * f->tail_m_tile;
        m_end = exec_min(tile0 + f->m_tile, m0 + f->tail_m_tile);
        n0 = (piece % cols) * f->tail_n_tile;
        n_tile = f->tail_n_tile;
        *seg = f->n_segs - 1;
    } else {
        if (u >= before + pieces) u -= pieces - f->tail_tiles * f->n_tiles;
        const int64_t k = u % per_seg;
        m0 = (k / f->n_tiles) * f->m_tile;
        m_end = m0 + f->m_tile;
        n0 = (k % f->n_tiles) * f->n_tile;
        n_tile = f->n_tile;
        *seg = u / per_seg;
    }
    r[0] = m0;
    r[1] = exec_min(f->M, m_end);
    r[2] = n0;
    r[3] = exec_min(f->W->N, n0 + n_tile);
}

int64_t exec_gemm_body_units(const exec_gemm_family *f) {
    if (f->tail_first + f->tail_tiles < f->m_tiles) return f->n_units; /* middle pieces */
    return f->n_segs * f->m_tiles * f->n_tiles - f->tail_tiles * f->n_tiles;
}

static mha_status exec_gemm_unit(const exec_state *s, const exec_gemm_family *f, int64_t u,
                                 mha_error *err) {
    int64_t seg, r[4];
    exec_gemm_unit_range(f, u, &seg, r);
    exec_gemm_touch(f, seg, r, f->R);
    return exec_gemm_call(s, f, seg, r[0], r[1], r[2], r[3], 1, err);
}

/* A kernel call over batch [r[0], r[1]) heads [r[2], r[3]) rows [r[4], r[5])
 * failed: the message names the backend, the kernel, the range and `shape`. */
static mha_status exec_kernel_failed(const exec_state *s, const char *kernel, const char *rows,
                                     const int64_t r[6], const char *shape, mha_error *err) {
    return mha_fail(err, MHA_ERR_PLUGIN,
                    "backend '%s': %s failed on batch [%lld, %lld) heads [%lld, %lld) %s "
                    "[%lld, %lld) (%s)",
                    s->plugin->name, kernel, (long long)r[0], (long long)r[1], (long long)r[2],
                    (long long)r[3], rows, (long long)r[4], (long long)r[5], shape);
}

/* A causal_finite 3 layer (layer.h: older GPT-2's torch.where(causal, w,
 * -1e4), then + (1 - m) * -1e4): the file replaces a future key's score by
 * the fill and adds the mask's term to it; the kernels hide future keys.
 * The two agree on a row where some visible key's term is above the fill
 * (future keys weigh exp(fill - score) = 0 beside it for any score above
 * fill + 104), not on a row whose every visible key carries a term at or
 * below the fill (left padding): there the filled future keys compete.
 * Those rows of a's range are computed again here, as the file does, over
 * every key before the item's length; the rest is the kernel's. */
/* The file's term on key j of query row q (batch item b, kv head g): the
 * fill where the key is in the future, else its scaled score, then the
 * mask's term added. */
static float exec_fill_term(const mha_attn_args *a, const float *q, int64_t b, int64_t g, int64_t j,
                            int future, float fill, float mask) {
    if (future) return fill + mask;
    const float *k = a->k + b * a->k_sb + g * a->k_sh + j * a->k_ss;
    double dot = 0.0;
    for (int64_t d = 0; d < a->dk; d++)
        dot += (double)q[d] * k[d];
    return (float)(a->scale * dot) + mask;
}

static void exec_fill_rows(const mha_attn_args *a, float fill) {
    if (!a->mask || a->Skv <= 0) return;
    const int64_t group = a->Hkv > 0 && a->Hq >= a->Hkv ? a->Hq / a->Hkv : 1;
    for (int64_t b = a->b0; b < a->b1; b++) {
        const int64_t off = a->causal_offset ? a->causal_offset[b] : 0;
        int64_t end = a->Skv;
        if (a->kv_len && a->kv_len[b] < end) end = a->kv_len[b];
        for (int64_t h = a->h0; h < a->h1; h++)
            for (int64_t i = a->q0; i < a->q1; i++) {
                const float *m = a->mask + b * a->m_sb + h * a->m_sh + i * a->m_sq;
                const int64_t front = i + off; /* keys after it are filled */
                int own = 0;                   /* a visible key whose term is above the fill */
                for (int64_t j = 0; j <= front && j < end && !own; j++)
                    own = m[j * a->m_sk] > fill;
                if (own) continue;
                const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_ss;
                const int64_t g = h / group;
                float mx = -INFINITY;
                for (int64_t j = 0; j < end; j++) {
                    const float t = exec_fill_term(a, q, b, g, j, j > front, fill, m[j * a->m_sk]);
                    if (t > mx) mx = t;
                }
                float *o = a->o + b * a->o_sb + h * a->o_sh + i * a->o_ss;
                for (int64_t d = 0; d < a->dv; d++)
                    o[d] = 0.0f;
                if (!(mx > -INFINITY)) continue; /* every key hidden: zeros (plugin.h) */
                double sum = 0.0;
                for (int64_t j = 0; j < end; j++) {
                    const float t = exec_fill_term(a, q, b, g, j, j > front, fill, m[j * a->m_sk]);
                    const float p = expf(t - mx);
                    if (p == 0.0f) continue;
                    sum += p;
                    const float *v = a->v + b * a->v_sb + g * a->v_sh + j * a->v_ss;
                    for (int64_t d = 0; d < a->dv; d++)
                        o[d] += p * v[d];
                }
                for (int64_t d = 0; d < a->dv; d++)
                    o[d] = (float)(o[d] / sum);
            }
    }
}

static mha_status exec_attn_call(const exec_state *s, const mha_attn_args *a, int worker,
                                 mha_error *err) {
    void *ws = s->workspace ? s->workspace + (size_t)worker * s->ws_stride : NULL;
    if (s->plugin->attention(s->env->plugin_state, a, ws, s->ws_size) == 0) {
        if (s->attn.fill_rows) exec_fill_rows(a, s->attn.fill);
        return MHA_OK;
    }
    const int64_t r[6] = {a->b0, a->b1, a->h0, a->h1, a->q0, a->q1};
    char shape[96];
    snprintf(shape, sizeof shape, "Sq %lld, Skv %lld, d_head %lld", (long long)a->Sq,
             (long long)a->Skv, (long long)a->dk);
    return exec_kernel_failed(s, "attention", "queries", r, shape, err);
}

/* Whether the values of batch item b, kv heads [g0, g1) (keys before the
 * item's length) hold a NaN. */
static int exec_values_have_nan(const mha_attn_args *a, int64_t b, int64_t g0, int64_t g1) {
    int64_t end = a->Skv;
    if (a->kv_len && a->kv_len[b] < end) end = a->kv_len[b];
    int nan = 0;
    for (int64_t g = g0; g < g1; g++)
        for (int64_t j = 0; j < end; j++) {
            const float *v = a->v + b * a->v_sb + g * a->v_sh + j * a->v_ss;
            for (int64_t d = 0; d < a->dv; d++)
                nan |= v[d] != v[d];
        }
    return nan;
}

/* A softmax_nan layer's check of the values, done by the attention units
 * (exec_state.v_nan) while the kernel has just read them: the unit of a
 * head block's first query block checks the kv heads whose first query
 * head is in its block, so every kv head of item b is checked once, on
 * the pool's threads, from cache (one pass over the chunk's V after the
 * phases, on one thread from memory, was 1.3 % of MiniLM-L6's run). */
static void exec_attn_unit_values(const exec_state *s, const mha_attn_args *a, int64_t qb) {
    if (!s->v_nan || qb != 0 || a->Hkv <= 0 || a->Hq % a->Hkv != 0) return;
    const int64_t group = a->Hq / a->Hkv;
    const int64_t g0 = (a->h0 + group - 1) / group, g1 = (a->h1 + group - 1) / group;
    if (g0 < g1 && exec_values_have_nan(a, a->b0, g0, g1))
        atomic_store_explicit(&s->v_nan[a->b0], 1, memory_order_relaxed);
}

/* The trace's record of a unit's rows (pool_trace_touch): a head's
 * features are contiguous in its row of Q, K, V and the output. */
static void exec_attn_touch(const mha_attn_args *a) {
    const int64_t fl = (int64_t)sizeof(float);
    for (int64_t b = a->b0; b < a->b1; b++)
        for (int64_t h = a->h0; h < a->h1; h++) {
            const int64_t g = h / (a->Hq / (a->Hkv > 0 ? a->Hkv : 1));
            pool_trace_touch(a->q + b * a->q_sb, a->q_ss * fl, a->q0, a->q1, h * a->q_sh * fl,
                             (h * a->q_sh + a->dk) * fl, 0);
            pool_trace_touch(a->k + b * a->k_sb, a->k_ss * fl, 0, a->Skv, g * a->k_sh * fl,
                             (g * a->k_sh + a->dk) * fl, 0);
            pool_trace_touch(a->v + b * a->v_sb, a->v_ss * fl, 0, a->Skv, g * a->v_sh * fl,
                             (g * a->v_sh + a->dv) * fl, 0);
            pool_trace_touch(a->o + b * a->o_sb, a->o_ss * fl, a->q0, a->q1, h * a->o_sh * fl,
                             (h * a->o_sh + a->dv) * fl, 1);
        }
}

static mha_status exec_attn_unit(const exec_state *s, int64_t u, int worker, mha_error *err) {
    const exec_attn_plan *pl = &s->attn;
    const int64_t per_qb = pl->args.B * pl->n_hb;
    int64_t qb = u / per_qb;
    if (pl->heaviest_first) qb = pl->n_qb - 1 - qb;
    const int64_t bg = u % per_qb;
    mha_attn_args a = pl->args;
    a.b0 = bg / pl->n_hb;
    a.b1 = a.b0 + 1;
    a.h0 = (bg % pl->n_hb) * pl->h_block;
    a.h1 = exec_min(a.Hq, a.h0 + pl->h_block);
    a.q0 = qb * pl->q_block;
    a.q1 = exec_min(a.Sq, a.q0 + pl->q_block);
    a.num_threads = 1;
    exec_attn_touch(&a);
    const mha_status st = exec_attn_call(s, &a, worker, err);
    if (st == MHA_OK) exec_attn_unit_values(s, &a, qb);
    return st;
}

static mha_status exec_rope_call(const exec_state *s, const mha_rotary_args *a, mha_error *err) {
    if (s->rope.fn(s->rope.fn_state, a) == 0) return MHA_OK;
    const int64_t r[6] = {a->b0, a->b1, a->h0, a->h1, a->s0, a->s1};
    char shape[96];
    snprintf(shape, sizeof shape, "S %lld, d_head %lld, rotary_dim %lld", (long long)a->S,
             (long long)a->d, (long long)a->rotary_dim);
    return exec_kernel_failed(s, "rotary embedding", "rows", r, shape, err);
}

/* The norm of side `which` (0 Q, 1 K) on the rows of a (batch items [b0,
 * b1), rows [s0, s1)) before the rotary, on the plugin's norm entry (or
 * the scalar's): a call per batch item and head over the rows, the head's
 * features contiguous in a row; one per batch item over all heads when the
 * norm takes the whole row (OLMo-2). */
static mha_status exec_qk_norm(const exec_state *s, const layer *L, int which,
                               const mha_rotary_args *a, mha_error *err) {
    const int64_t width = L->qk_norm_whole[which] ? a->H * a->d : a->d;
    const int64_t groups = L->qk_norm_whole[which] ? 1 : a->H;
    for (int64_t b = a->b0; b < a->b1; b++)
        for (int64_t g = 0; g < groups; g++) {
            float *x = a->x + b * a->x_sb + g * a->x_sh + a->s0 * a->x_ss;
            mha_norm_args n;
            memset(&n, 0, sizeof n);
            n.struct_size = sizeof n;
            n.kind = L->qk_norm[which] == LAYER_QK_NORM_LAYER ? MHA_NORM_LAYER : MHA_NORM_RMS;
            n.rows = a->s1 - a->s0, n.D = width;
            n.x = x, n.ldx = a->x_ss, n.y = x, n.ldy = a->x_ss;
            n.gamma = L->qk_norm_w[which] + g * width;
            n.beta = L->qk_norm_b[which] ? L->qk_norm_b[which] + g * width : NULL;
            n.eps = L->qk_norm_eps[which];
            n.r0 = 0, n.r1 = n.rows;
            n.num_threads = 1;
            if (n.rows > 0 && s->rope.norm_fn(s->rope.norm_state, &n) != 0) {
                const int64_t r[6] = {b, b + 1, g, g + 1, a->s0, a->s1};
                char shape[96];
                snprintf(shape, sizeof shape, "S %lld, %lld features", (long long)a->S,
                         (long long)width);
                return exec_kernel_failed(s, which ? "norm of K" : "norm of Q", "rows", r, shape,
                                          err);
            }
        }
    return MHA_OK;
}

/* Side `which` of a part a: its norm, then its rotation. */
static mha_status exec_qk_part(const exec_state *s, int which, const mha_rotary_args *a,
                               mha_error *err) {
    const layer *L = s->layer;
    mha_status st = L->qk_norm[which] ? exec_qk_norm(s, L, which, a, err) : MHA_OK;
    if (st == MHA_OK && s->rope.rotate) st = exec_rope_call(s, a, err);
    return st;
}

/* Unit u: Q units first ((b, row block), b-major), then K's. */
static mha_status exec_rope_unit(const exec_state *s, int64_t u, mha_error *err) {
    const exec_rope_plan *pl = &s->rope;
    const int64_t nq_units = pl->args[0].B * pl->n_sb[0];
    const int which = u >= nq_units;
    if (which) u -= nq_units;
    mha_rotary_args a = pl->args[which];
    a.b0 = u / pl->n_sb[which];
    a.b1 = a.b0 + 1;
    a.s0 = (u % pl->n_sb[which]) * pl->s_block[which];
    a.s1 = exec_min(a.S, a.s0 + pl->s_block[which]);
    a.num_threads = 1;
    return exec_qk_part(s, which, &a, err);
}

/* Unit u of the gather (exec_cache_plan): rows [t0, t1) of one head of K'
 * or V', those under P from the past, the rest from the new rows. */
static void exec_cache_unit(const exec_cache_plan *pl, int64_t u) {
    const int64_t per_kv = pl->n * pl->Hkv * pl->n_tb;
    const int w = u >= per_kv;
    if (w) u -= per_kv;
    const int64_t tb = u % pl->n_tb, bg = u / pl->n_tb; /* bg = b * Hkv + g */
    const int64_t b = bg / pl->Hkv, g = bg % pl->Hkv;
    const int64_t P = pl->P, T = P + pl->S, d = pl->d[w];
    const int64_t t0 = tb * pl->t_block, t1 = exec_min(T, t0 + pl->t_block);
    float *o = pl->dst[w] + bg * T * d;
    const int64_t p1 = exec_min(t1, P);
    if (t0 < p1)
        memcpy(o + t0 * d, pl->past[w] + ((pl->b0 + b) * pl->Hkv + g) * P * d + t0 * d,
               (size_t)((p1 - t0) * d) * sizeof(float));
    for (int64_t t = exec_max(t0, P); t < t1; t++)
        memcpy(o + t * d, pl->rows[w] + (b * pl->S + t - P) * pl->ld + g * d,
               (size_t)d * sizeof(float));
}

/* The gather's units: enough for every thread (at least 4 each) when the
 * heads alone are too few, no block under EXEC_CACHE_MIN_ROWS rows. */
#define EXEC_CACHE_MIN_ROWS 64
static void exec_cache_plan_make(exec_cache_plan *pl, int threads) {
    const int64_t T = pl->P + pl->S, heads = 2 * pl->n * pl->Hkv;
    const int64_t want = threads > 1 ? 4 * (int64_t)threads : 1;
    int64_t n_tb = exec_ceil_div(want, exec_max(heads, 1));
    n_tb = exec_max(1, exec_min(n_tb, exec_ceil_div(T, EXEC_CACHE_MIN_ROWS)));
    pl->t_block = T > 0 ? exec_ceil_div(T, n_tb) : 1;
    pl->n_tb = T > 0 ? exec_ceil_div(T, pl->t_block) : 0;
    pl->n_units = heads * pl->n_tb;
}

/* ---- Q|K|V and attention in one phase (two threads, one row tile) ----
 *
 * W2 (B 1, S 32, 12 heads) at 2 threads: Q|K|V head by head is two column
 * pieces, heads 0-5 and 6-11, one per core; the attention of a head reads
 * only its piece. So instead of a phase end between them (the thread
 * done first waited ~8 us for the other's piece, then both passed a phase
 * hand-off), the two pieces and the 12 attention units are one phase of
 * 14 units listed [piece 0, heads 0 .. 11, piece 1] from both ends: the
 * caller computes piece 0 then the heads from 0 up, the helper piece 1
 * then the heads from 11 down, and whoever is done first takes the
 * other's next heads. An attention unit first makes sure each piece its
 * heads read is done: one nobody took yet it computes itself (one thread
 * alone, or a helper not yet there, never waits for a unit nobody runs);
 * one the other thread is computing it waits for. Same units, same
 * results: only when each starts changes. */
static mha_status exec_merge_piece(const exec_state *s, int64_t p, mha_error *err) {
    int want = EXEC_PIECE_FREE;
    if (!atomic_compare_exchange_strong_explicit(&s->merge_piece[p], &want, EXEC_PIECE_TAKEN,
                                                 memory_order_relaxed, memory_order_relaxed))
        return MHA_OK;
    const mha_status st = exec_gemm_unit(s, &s->proj[0], p, err);
    atomic_store_explicit(&s->merge_piece[p], st == MHA_OK ? EXEC_PIECE_DONE : EXEC_PIECE_FAILED,
                          memory_order_release);
    return st;
}

static mha_status exec_merge_unit(const exec_state *s, int64_t u, int worker, mha_error *err) {
    const exec_attn_plan *pl = &s->attn;
    if (u == 0 || u == pl->n_units + 1) return exec_merge_piece(s, u == 0 ? 0 : 1, err);
    const int64_t h0 = ((u - 1) % pl->n_hb) * pl->h_block;
    const int64_t h1 = exec_min(pl->args.Hq, h0 + pl->h_block);
    const int64_t nt = s->proj[0].n_tile;
    for (int64_t p = h0 * s->head_cols / nt; p <= (h1 * s->head_cols - 1) / nt; p++) {
        mha_status st = exec_merge_piece(s, p, err);
        if (st != MHA_OK) return st;
        for (unsigned spins = 0;; spins++) {
            const int at = atomic_load_explicit(&s->merge_piece[p], memory_order_acquire);
            if (at == EXEC_PIECE_DONE) break;
            if (at == EXEC_PIECE_FAILED)
                return mha_fail(err, MHA_ERR_PLUGIN,
                                "exec: the Q|K|V columns of heads %lld-%lld "
                                "failed",
                                (long long)h0, (long long)h1 - 1);
            pool_wait_step(spins);
        }
    }
    return exec_attn_unit(s, u - 1, worker, err);
}

/* Whether the chunk's Q|K|V and attention run as one phase (above): two
 * threads, Q|K|V head by head in two column pieces of one row tile, one
 * batch item whose attention units are whole heads in order. */
static int exec_merge_fits(const exec_state *s, int by_head, int64_t n) {
    const exec_gemm_family *f = &s->proj[0];
    return by_head && s->threads == 2 && s->n_proj == 1 && n == 1 && f->n_segs == 1 &&
           f->m_tiles == 1 && f->n_tiles == 2 && f->tail_tiles == 0 && f->n_units == 2 &&
           s->attn.n_units > 0 && s->attn.n_qb == 1 && !s->attn.heaviest_first &&
           s->n_phases == 3 && s->phase_kind[0] == EXEC_PHASE_PROJ &&
           s->phase_kind[1] == EXEC_PHASE_ATTN;
}

static mha_status exec_unit(void *ctx, int phase, int64_t u, int worker, mha_error *err) {
    const exec_state *s = ctx;
    switch (s->phase_kind[phase]) {
    case EXEC_PHASE_PROJ: { /* the units of the projections one after the other */
        int i = 0;
        while (i < s->n_proj - 1 && u >= s->proj[i].n_units)
            u -= s->proj[i++].n_units;
        return exec_gemm_unit(s, &s->proj[i], u, err);
    }
    case EXEC_PHASE_ROPE:
        return exec_rope_unit(s, u, err);
    case EXEC_PHASE_CACHE:
        exec_cache_unit(&s->cache, u);
        return MHA_OK;
    case EXEC_PHASE_ATTN:
        return exec_attn_unit(s, u, worker, err);
    case EXEC_PHASE_PROJ_ATTN:
        return exec_merge_unit(s, u, worker, err);
    case EXEC_PHASE_OUT: {
        mha_status st = exec_gemm_unit(s, &s->out, u, err);
        int64_t r[4];
        if (st == MHA_OK && s->out_pieces && exec_gemm_piece_done(&s->out, s->out_pieces, u, r)) {
            s->env->y_rows->rows(s->env->y_rows->user, s->out.C, s->out.W->N, r[0], r[1]);
            pool_trace_touch(s->out.C, s->out.ldc * (int64_t)sizeof(float), r[0], r[1], 0,
                             s->out.W->N * (int64_t)sizeof(float), 1);
        }
        return st;
    }
    }
    return mha_fail(err, MHA_ERR_INTERNAL, "exec: unknown phase %d", phase);
}

static int exec_cancelled(const exec_env *env) {
    return env->cancel && env->cancel(env->cancel_user);
}

/* A self-parallel plugin gets each phase as one call on this thread. */
static mha_status exec_phases_self_parallel(exec_state *s, mha_error *err) {
    mha_status st = MHA_OK;
    for (int ph = 0; ph < s->n_phases && st == MHA_OK; ph++) {
        if (exec_cancelled(s->env))
            return mha_fail(err, MHA_ERR_CANCELLED,
                            "run cancelled by the caller's cancel callback");
        switch (s->phase_kind[ph]) {
        case EXEC_PHASE_PROJ:
        case EXEC_PHASE_OUT: {
            int nf = s->phase_kind[ph] == EXEC_PHASE_PROJ ? s->n_proj : 1;
            for (int i = 0; i < nf && st == MHA_OK; i++) {
                const exec_gemm_family *f =
                    s->phase_kind[ph] == EXEC_PHASE_PROJ ? &s->proj[i] : &s->out;
                if (f->n_units == 0) continue;
                for (int64_t seg = 0; seg < f->n_segs && st == MHA_OK; seg++)
                    st = exec_gemm_call(s, f, seg, 0, f->M, 0, f->W->N, s->threads, err);
                if (st == MHA_OK && f == &s->out && s->env->y_rows)
                    s->env->y_rows->rows(s->env->y_rows->user, f->C, f->W->N, 0, f->M);
            }
            break;
        }
        case EXEC_PHASE_ROPE:
            for (int w = 0; w < 2 && st == MHA_OK; w++) {
                mha_rotary_args a = s->rope.args[w];
                if (s->layer->qk_norm[w]) st = exec_qk_norm(s, s->layer, w, &a, err);
                a.num_threads = s->threads;
                if (st == MHA_OK && s->rope.rotate) st = exec_rope_call(s, &a, err);
            }
            break;
        case EXEC_PHASE_CACHE: /* copies: this thread, before the plugin's call */
            for (int64_t u = 0; u < s->cache.n_units; u++)
                exec_cache_unit(&s->cache, u);
            break;
        case EXEC_PHASE_ATTN: {
            if (s->attn.n_units == 0) break;
            mha_attn_args a = s->attn.args;
            a.num_threads = s->threads;
            st = exec_attn_call(s, &a, 0, err);
            break;
        }
        }
    }
    if (st == MHA_OK && exec_cancelled(s->env))
        return mha_fail(err, MHA_ERR_CANCELLED, "run cancelled by the caller's cancel callback");
    return st;
}

static mha_status exec_phases_run(exec_state *s, int self_parallel, mha_error *err) {
    if (self_parallel) return exec_phases_self_parallel(s, err);
    pool_job job;
    memset(&job, 0, sizeof job);
    job.fn = exec_unit;
    job.ctx = s;
    job.n_phases = s->n_phases;
    for (int ph = 0; ph < s->n_phases; ph++) {
        switch (s->phase_kind[ph]) {
        case EXEC_PHASE_PROJ:
            job.n_units[ph] = s->proj[0].n_units + s->proj[1].n_units + s->proj[2].n_units;
            /* one family's rows (self-attention's Q|K|V) from both ends */
            if (s->n_proj == 1) job.paired[ph] = exec_gemm_body_units(&s->proj[0]);
            break;
        case EXEC_PHASE_ROPE:
            job.n_units[ph] = s->rope.n_units;
            break;
        case EXEC_PHASE_CACHE:
            job.n_units[ph] = s->cache.n_units;
            break;
        case EXEC_PHASE_ATTN:
            job.n_units[ph] = s->attn.n_units;
            /* batch items in order (exec_attn_unit); a causal run's heaviest
             * query blocks go first, in order only */
            if (!s->attn.heaviest_first) job.paired[ph] = s->attn.n_units;
            break;
        case EXEC_PHASE_PROJ_ATTN:
            job.n_units[ph] = job.paired[ph] = s->attn.n_units + 2;
            break;
        case EXEC_PHASE_OUT:
            job.n_units[ph] = s->out.n_units;
            job.paired[ph] = exec_gemm_body_units(&s->out);
            break;
        }
    }
    job.num_threads = s->threads;
    job.cancel = s->env->cancel;
    job.cancel_user = s->env->cancel_user;
    return pool_run(s->env->pool, &job, err);
}

/* ------------------------------------------------------------------------ */
/* The two forms                                                             */
/* ------------------------------------------------------------------------ */

static void exec_attn_args_common(mha_attn_args *a, const layer *L, const exec_binding *bd,
                                  int64_t nb) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->B = nb;
    a->Hq = L->q_heads;
    a->Hkv = L->kv_heads;
    a->Sq = bd->Sq;
    a->Skv = bd->Skv;
    a->dk = bd->dk;
    a->dv = bd->dv;
    a->scale = L->scale;
    a->softcap = L->softcap;
    a->causal = L->causal;
    a->b0 = 0;
    a->b1 = nb;
    a->h0 = 0;
    a->h1 = L->q_heads;
    a->q0 = 0;
    a->q1 = bd->Sq;
    a->num_threads = 1;
    a->alibi_slopes = L->alibi_slopes;
    a->alibi_relative = L->alibi_relative;
}

static void exec_attn_fill_set(exec_attn_plan *pl, const layer *L) {
    pl->fill_rows = L->causal && L->causal_finite == 3;
    pl->fill = L->causal_fill;
}

static void exec_attn_set_mask(mha_attn_args *a, const exec_mask *m, int64_t b0) {
    if (!m->data) return;
    if (m->causal_folded) a->causal = 0; /* in the mask this run */
    a->mask = m->data + b0 * m->sb;
    a->m_sb = m->sb;
    a->m_sh = m->sh;
    a->m_sq = m->sq;
    a->m_sk = m->sk;
}

/* Whether query row i of batch item b, head h sees no key: keys before
 * the item's length (none: zeros, the contract), the causal frontier, then
 * each visible key's mask term hides it (-inf, as the kernels read it). */
static int exec_row_sees_nothing(const mha_attn_args *a, int64_t b, int64_t h, int64_t i) {
    int64_t end = a->Skv;
    if (a->kv_len && a->kv_len[b] < end) end = a->kv_len[b];
    if (end <= 0) return 0;
    if (a->causal) {
        const int64_t off = a->causal_offset ? a->causal_offset[b] : 0;
        if (off < -i) return 1;
        if (i + off + 1 < end) end = i + off + 1;
    }
    if (!a->mask) return 0;
    const float *m = a->mask + b * a->m_sb + h * a->m_sh + i * a->m_sq;
    for (int64_t j = 0; j < end; j++)
        if (!(m[j * a->m_sk] <= -FLT_MAX)) return 0;
    return 1;
}

/* A softmax_nan layer (layer.h) after its chunk of n batch items ran:
 * rows of Y (d_out wide, row (b, i) at f's C + b * c_seg + i * ldc, or
 * (b * Sq + i) * ldc batch-first) set to NaN where the graph's softmax and
 * P.V give NaN and the kernels gave a finite row. */
static void exec_softmax_nan_rows(const exec_state *s, const mha_attn_args *a,
                                  const exec_gemm_family *f, int64_t n, int64_t d_out) {
    const int heads_alike = !a->mask || a->m_sh == 0;
    for (int64_t b = 0; b < n; b++) {
        const int item = s->v_nan ? atomic_load_explicit(&s->v_nan[b], memory_order_relaxed)
                                  : exec_values_have_nan(a, b, 0, a->Hkv);
        for (int64_t i = 0; i < a->Sq; i++) {
            int nan = item;
            for (int64_t h = 0; h < (heads_alike ? 1 : a->Hq) && !nan; h++)
                nan = exec_row_sees_nothing(a, b, h, i);
            if (!nan) continue;
            float *y =
                f->C + (f->n_segs > 1 ? b * f->c_seg + i * f->ldc : (b * a->Sq + i) * f->ldc);
            for (int64_t c = 0; c < d_out; c++)
                y[c] = NAN;
        }
    }
}

/* A bare Attention node: one attention phase on the caller's tensors. */
static mha_status exec_run_bare(exec_state *s, const layer *L, const exec_binding *bd,
                                const exec_mask *m, float *y, int self_parallel, mha_error *err) {
    const int64_t Hq = L->q_heads, Hkv = L->kv_heads, dk = bd->dk, dv = bd->dv;
    const int64_t Sq = bd->Sq, Skv = bd->Skv;
    mha_attn_args *a = &s->attn.args;
    exec_attn_args_common(a, L, bd, bd->B);
    exec_attn_fill_set(&s->attn, L);
    a->precision = s->env->precision;
    a->alibi_pos = s->alibi_pos;
    a->alibi_pos_sb = bd->Skv;
    a->kv_len = s->env->kv_lengths;
    a->q = bd->q->data;
    a->k = bd->k->data;
    a->v = bd->v->data;
    a->o = y;
    if (bd->q->rank == 3) { /* [B, S, H*d]: head h at columns h*d */
        a->q_sb = Sq * Hq * dk, a->q_ss = Hq * dk, a->q_sh = dk;
        a->k_sb = Skv * Hkv * dk, a->k_ss = Hkv * dk, a->k_sh = dk;
        a->v_sb = Skv * Hkv * dv, a->v_ss = Hkv * dv, a->v_sh = dv;
        a->o_sb = Sq * Hq * dv, a->o_ss = Hq * dv, a->o_sh = dv;
    } else { /* [B, H, S, d] */
        a->q_sb = Hq * Sq * dk, a->q_sh = Sq * dk, a->q_ss = dk;
        a->k_sb = Hkv * Skv * dk, a->k_sh = Skv * dk, a->k_ss = dk;
        a->v_sb = Hkv * Skv * dv, a->v_sh = Skv * dv, a->v_ss = dv;
        a->o_sb = Hq * Sq * dv, a->o_sh = Sq * dv, a->o_ss = dv;
    }
    exec_attn_set_mask(a, m, 0);
    if (Skv == 0) { /* every key masked: output rows are 0 */
        memset(y, 0, (size_t)(bd->B * Hq * Sq * dv) * sizeof(float));
        return MHA_OK;
    }
    exec_attn_plan_make(&s->attn, self_parallel ? 1 : s->threads);
    s->phase_kind[0] = EXEC_PHASE_ATTN;
    s->n_phases = 1;
    mha_status st = exec_workspace_reserve(s, s->env->alloc, self_parallel, err);
    if (st != MHA_OK) return st;
    return exec_phases_run(s, self_parallel, err);
}

static void exec_family_rows(exec_gemm_family *f, const float *x, int64_t b0, int64_t nb, int64_t B,
                             int64_t S, int64_t D, int seq_first) {
    if (seq_first) { /* x is [S, B, D]: batch item b is rows b, b+B, ... */
        f->A = x + b0 * D;
        f->lda = B * D;
        f->a_seg = D;
        f->M = S;
        f->n_segs = nb;
    } else { /* x is [B, S, D]: the chunk's rows are contiguous */
        f->A = x + b0 * S * D;
        f->lda = D;
        f->a_seg = 0;
        f->M = nb * S;
        f->n_segs = 1;
    }
}

/* The rotary tables of a run: row s + pos_offset[b] (pos_offset NULL: row
 * s) holds the angles of token s of batch item b. */
typedef struct exec_rope_tables {
    const float *cos, *sin; /* [n_pos, rotary_dim / 2] */
    int64_t n_pos;
    float *owned;        /* a run's own tables, or NULL */
    int64_t *pos_offset; /* [B], owned, or NULL */
} exec_rope_tables;

/* The layer's tables when they reach position n - 1; else, from the model's
 * inverse frequencies, tables for this run made as the model makes them. */
static mha_status exec_rope_tables_get(const mha_alloc_ctx *a, const layer *L, int64_t n,
                                       exec_rope_tables *t, mha_error *err) {
    memset(t, 0, sizeof *t);
    if (n <= L->rotary_n_pos) {
        t->cos = L->rotary_cos;
        t->sin = L->rotary_sin;
        t->n_pos = L->rotary_n_pos;
        return MHA_OK;
    }
    if (!L->rotary_inv_freq)
        return mha_fail(err, MHA_ERR_SHAPE,
                        "sequence of %lld positions: the model's rotary tables end at %lld",
                        (long long)n, (long long)L->rotary_n_pos);
    const int64_t half = L->rotary_dim / 2;
    size_t count;
    if (!mha_mul_size((size_t)n, (size_t)half, &count) || !mha_mul_size(count, 2, &count))
        return mha_fail(err, MHA_ERR_LIMIT, "rotary tables of %lld positions", (long long)n);
    t->owned = mha_malloc(a, count * sizeof(float));
    if (!t->owned)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "rotary tables of %lld positions: out of memory",
                        (long long)n);
    /* the layer's rows as they are, the positions past them computed */
    float *cs = t->owned, *sn = t->owned + (size_t)n * (size_t)half;
    const int64_t have =
        L->rotary_n_pos > 0 && L->rotary_cos && L->rotary_sin ? L->rotary_n_pos : 0;
    if (have) {
        memcpy(cs, L->rotary_cos, (size_t)(have * half) * sizeof(float));
        memcpy(sn, L->rotary_sin, (size_t)(have * half) * sizeof(float));
    }
    layer_rotary_fill(L->rotary_inv_freq, half, have, n - have, cs + have * half, sn + have * half);
    t->cos = cs;
    t->sin = sn;
    t->n_pos = n;
    return MHA_OK;
}

/* Reads element i of an integer tensor (int64 or int32). */
static int64_t exec_int_at(const mha_tensor *t, int64_t i) {
    return t->dtype == MHA_DTYPE_INT32 ? ((const int32_t *)t->data)[i]
                                       : ((const int64_t *)t->data)[i];
}

/* One row [2 * half] of a given cos or sin table into the kernels' [half]
 * (one angle per pair), or 0 when a pair's two columns differ: rotate-half
 * pairs (t, t + half) read columns t and t + half, interleaved pairs (2t,
 * 2t + 1) columns 2t and 2t + 1. */
static int exec_rope_row_given(int kind, const float *row, int64_t half, float *out) {
    for (int64_t t = 0; t < half; t++) {
        const float a = kind == MHA_ROTARY_HALF ? row[t] : row[2 * t];
        const float b = kind == MHA_ROTARY_HALF ? row[t + half] : row[2 * t + 1];
        if (memcmp(&a, &b, sizeof a)) return 0;
        out[t] = a;
    }
    return 1;
}

/* Tables for positions or cos / sin given as inputs (bd->position_ids, or
 * bd->rotary_cos / rotary_sin): one row per token, [nb * Sq, half] with
 * nb = 1 when the input broadcasts over the batch, so that row s +
 * pos_offset[b] is token s of item b and the kernels turn every token by
 * its own angles. Positions index the model's tables (made as the model
 * makes them past their end when it has inverse frequencies). Given tables
 * must give both columns of a pair one angle (exec_rope_row_given). */
static mha_status exec_rope_tables_given(const mha_alloc_ctx *a, const layer *L,
                                         const exec_binding *bd, exec_rope_tables *t,
                                         mha_error *err) {
    memset(t, 0, sizeof *t);
    const mha_tensor *in = bd->position_ids ? bd->position_ids : bd->rotary_cos;
    const int64_t half = L->rotary_dim / 2, S = bd->Sq, B = bd->B;
    /* [S, rotary_dim] tables (no batch axis) broadcast too; a stacked
     * cache [S, B | 1, half, 2] has its items on axis 1 */
    const int stacked = !bd->position_ids && L->rotary_tables_input == 3;
    const int64_t items = stacked && in->rank == 4 ? in->shape[1] : 1;
    const int64_t nb = stacked ? (items == 1 ? 1 : B)
                       : in->shape[0] == 1 || (!bd->position_ids && in->rank == 2) ? 1
                                                                                   : B;
    const int64_t rows = nb * S;
    exec_rope_tables src;
    memset(&src, 0, sizeof src);
    if (bd->position_ids) {
        int64_t top = 0;
        for (int64_t i = 0; i < rows; i++) {
            const int64_t p = exec_int_at(in, i);
            if (p < 0 || p >= ((int64_t)1 << 40))
                return mha_fail(
                    err, MHA_ERR_INVALID_ARGUMENT,
                    "input position_ids: element %lld is %lld (positions are 0 .. 2^40)",
                    (long long)i, (long long)p);
            if (p > top) top = p;
        }
        mha_status st = exec_rope_tables_get(a, L, top + 1, &src, err);
        if (st != MHA_OK) return st;
    }
    size_t count;
    if (!mha_mul_size((size_t)rows, (size_t)half, &count) || !mha_mul_size(count, 2, &count)) {
        mha_free(a, src.owned);
        return mha_fail(err, MHA_ERR_LIMIT, "rotary tables of %lld tokens", (long long)rows);
    }
    t->owned = mha_malloc(a, count * sizeof(float));
    t->pos_offset = mha_malloc(a, (size_t)(B > 0 ? B : 1) * sizeof(int64_t));
    if (!t->owned || !t->pos_offset) {
        mha_free(a, src.owned);
        mha_free(a, t->owned);
        mha_free(a, t->pos_offset);
        memset(t, 0, sizeof *t);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "rotary tables of %lld tokens: out of memory",
                        (long long)rows);
    }
    float *cs = t->owned, *sn = t->owned + rows * half;
    const size_t row_bytes = (size_t)half * sizeof(float);
    for (int64_t r = 0; r < rows; r++) {
        if (bd->position_ids) {
            const int64_t p = exec_int_at(in, r);
            memcpy(cs + r * half, src.cos + p * half, row_bytes);
            memcpy(sn + r * half, src.sin + p * half, row_bytes);
            continue;
        }
        if (stacked) { /* token s of item b: pairs at ((s * items + b) * half + t) * 2 */
            const float *x = (const float *)in->data + (r % S * items + r / S) * half * 2;
            for (int64_t k = 0; k < half; k++) {
                cs[r * half + k] = x[2 * k];
                sn[r * half + k] = x[2 * k + 1];
            }
            continue;
        }
        if (L->rotary_tables_input == 2) { /* one column per pair: the angles as they are */
            memcpy(cs + r * half, (const float *)bd->rotary_cos->data + r * half, row_bytes);
            memcpy(sn + r * half, (const float *)bd->rotary_sin->data + r * half, row_bytes);
            continue;
        }
        const float *c = (const float *)bd->rotary_cos->data + r * 2 * half;
        const float *s = (const float *)bd->rotary_sin->data + r * 2 * half;
        if (!exec_rope_row_given(L->rotary, c, half, cs + r * half) ||
            !exec_rope_row_given(L->rotary, s, half, sn + r * half)) {
            mha_free(a, t->owned);
            mha_free(a, t->pos_offset);
            memset(t, 0, sizeof *t);
            return mha_fail(
                err, MHA_ERR_INVALID_ARGUMENT,
                "inputs rotary cos / sin: the two columns of a pair of token %lld "
                "differ; the layer turns %s by one angle (tables made as %s)",
                (long long)r,
                L->rotary == MHA_ROTARY_HALF ? "dims t and t + half" : "dims 2t and 2t + 1",
                L->rotary == MHA_ROTARY_HALF ? "cat(freqs, freqs)" : "repeat_interleave(freqs, 2)");
        }
    }
    mha_free(a, src.owned);
    for (int64_t b = 0; b < B; b++)
        t->pos_offset[b] = nb == 1 ? 0 : b * S;
    t->cos = cs;
    t->sin = sn;
    t->n_pos = rows;
    return MHA_OK;
}

/* Plans the rotation of Q [n, Hq, Sq, dk] and K [n, Hkv, Skv, dk] of a
 * chunk, both read through strides in the projection buffers; row s of
 * batch item b at position s + pos_offset[b] (NULL: s). */
static void exec_rope_plan_make(exec_rope_plan *pl, const layer *L, const exec_rope_tables *t,
                                int64_t n, int64_t dk, float *const x[2], const int64_t S[2],
                                const int64_t ld[2], const int64_t *pos_offset, int threads) {
    const int64_t H[2] = {L->q_heads, L->kv_heads};
    pl->n_units = 0;
    for (int w = 0; w < 2; w++) {
        mha_rotary_args *a = &pl->args[w];
        memset(a, 0, sizeof *a);
        a->struct_size = sizeof *a;
        a->B = n, a->H = H[w], a->S = S[w], a->d = dk;
        a->x = x[w];
        a->x_sb = S[w] * ld[w], a->x_sh = dk, a->x_ss = ld[w];
        a->kind = L->rotary;
        a->rotary_dim = L->rotary_dim;
        a->cos = t->cos, a->sin = t->sin, a->n_pos = t->n_pos;
        a->pos_offset = pos_offset;
        a->b1 = n, a->h1 = H[w], a->s1 = S[w];
        a->num_threads = 1;
        /* whole rows of every head per unit; rows split only for too few */
        const int64_t want = threads > 1 ? 2 * (int64_t)threads : 1;
        int64_t nsb = exec_min(S[w], exec_ceil_div(want, exec_max(2 * n, 1)));
        pl->s_block[w] = nsb > 0 ? exec_ceil_div(S[w], nsb) : 1;
        pl->n_sb[w] = S[w] > 0 ? exec_ceil_div(S[w], pl->s_block[w]) : 0;
        pl->n_units += n * pl->n_sb[w];
    }
}

/* present[0] / present[1]: the present_key / present_value outputs of a
 * KV cache (float32 [B, Hkv, T, dk|dv]), or NULL. */
static mha_status exec_run_projected(exec_state *s, const layer *L, const exec_binding *bd,
                                     const exec_packed *pk, const exec_mask *m,
                                     const exec_rope_tables *rope, float *y,
                                     float *const present[2], int self_parallel, mha_error *err) {
    const mha_alloc_ctx *a = s->env->alloc;
    const int64_t B = bd->B, Sq = bd->Sq, Skv = bd->Skv, dk = bd->dk, dv = bd->dv;
    const int64_t Hq = L->q_heads, Hkv = L->kv_heads, d_out = bd->d_out;
    const int64_t nq = Hq * dk, nkv = Hkv * (dk + dv), natt = Hq * dv;
    const int self = !L->cross;
    const int seq_first = L->seq_first != 0;
    const int threads_plan = self_parallel ? 1 : s->threads;
    /* a KV cache (self-attention, layer_bind): the keys are the P past ones
     * then the Skv new ones, gathered into K' / V' [n, Hkv, T, d]; query i
     * is at position P + i (rotary angles, causal frontier); without a
     * past (P = 0) the present outputs are the new rows */
    const int cached = bd->past_key != NULL || present[0] || present[1];
    /* K' / V' gathered into the scratch unless both go straight into the
     * present outputs (GPT-2 / LLaMA with use_cache=True: no scratch for
     * them, and more batch items a chunk) */
    const int cache_scratch = cached && !(present[0] && present[1]);
    const int64_t P = bd->P, T = bd->T;

    /* floats of intermediates per batch item; chunk the batch to bound them */
    size_t per_item, t1, t2, t_cache = 0;
    int ok = !cache_scratch || mha_mul_size((size_t)T, (size_t)nkv, &t_cache);
    if (self) {
        ok = ok && mha_mul_size((size_t)Sq, (size_t)(nq + nkv), &t1) &&
             mha_mul_size((size_t)Sq, (size_t)natt, &t2) && mha_add_size(t1, t2, &per_item) &&
             mha_add_size(per_item, t_cache, &per_item);
    } else {
        size_t t3;
        ok = mha_mul_size((size_t)Sq, (size_t)nq, &t1) &&
             mha_mul_size((size_t)(L->kv_given ? 0 : Skv), (size_t)nkv, &t2) &&
             mha_add_size(t1, t2, &t1) && mha_mul_size((size_t)Sq, (size_t)natt, &t3) &&
             mha_add_size(t1, t3, &per_item);
    }
    if (!ok || !mha_mul_size(per_item, sizeof(float), &per_item))
        return mha_fail(err, MHA_ERR_LIMIT,
                        "intermediates of one batch item (Sq %lld, Skv %lld) "
                        "overflow",
                        (long long)Sq, (long long)Skv);
    const size_t chunk_bytes = s->env->chunk_bytes ? s->env->chunk_bytes : EXEC_DEFAULT_CHUNK_BYTES;
    int64_t nb = per_item ? (int64_t)(chunk_bytes / per_item) : B;
    nb = exec_max(1, exec_min(nb, B));

    float *proj = NULL, *projkv = NULL, *att = NULL, *kc = NULL;
    int64_t *offsets = NULL;
    mha_status st = MHA_OK;
    size_t n_proj = (size_t)(nb * Sq * (self ? nq + nkv : nq));
    size_t n_projkv = self || L->kv_given ? 0 : (size_t)(nb * Skv * nkv);
    size_t n_att = (size_t)(nb * Sq * natt);
    /* K' and V' of a cache go where the cross-attention's K/V rows would */
    if (cached) n_projkv = (size_t)nb * t_cache; /* 0 when both go to the presents */
    /* One buffer for the three, kept by the pool between runs (no page
     * faults per run); each part starts on a 64-byte boundary. Every
     * element is written (GEMM C ranges cover it, attention writes every
     * row, Skv = 0 clears att) before it is read, so it is not zeroed. */
    const size_t r_proj = (n_proj + 15) / 16 * 16, r_projkv = (n_projkv + 15) / 16 * 16;
    size_t n_all = 0;
    if (!mha_add_size(r_proj, r_projkv, &n_all) || !mha_add_size(n_all, n_att, &n_all) ||
        !mha_mul_size(n_all, sizeof(float), &n_all)) {
        return mha_fail(err, MHA_ERR_LIMIT,
                        "intermediates for %lld batch items (Sq %lld, Skv %lld) overflow",
                        (long long)nb, (long long)Sq, (long long)Skv);
    }
    float *scratch = pool_scratch_take(s->env->pool, a, EXEC_SCRATCH_INTERMEDIATES, n_all);
    if (scratch) {
        proj = scratch;
        projkv = self ? NULL : scratch + r_proj;
        kc = cache_scratch ? scratch + r_proj : NULL;
        att = scratch + r_proj + r_projkv;
    }
    if (cached) offsets = mha_malloc(a, (size_t)(B > 0 ? B : 1) * sizeof *offsets);
    if (L->softmax_nan && !self_parallel) s->v_nan = mha_calloc(a, (size_t)nb, sizeof *s->v_nan);
    if (!scratch || (cached && !offsets) || (L->softmax_nan && !self_parallel && !s->v_nan)) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY,
                      "intermediates for %lld batch items (Sq %lld, Skv %lld): out of memory",
                      (long long)nb, (long long)Sq, (long long)Skv);
        goto done;
    }
    for (int64_t b = 0; cached && b < B; b++)
        offsets[b] = P;

    const float *xq = bd->x_q->data, *xkv = bd->x_kv ? bd->x_kv->data : NULL;
    const float *xv = bd->x_v ? bd->x_v->data : NULL;
    for (int64_t b0 = 0; b0 < B && st == MHA_OK; b0 += nb) {
        const int64_t n = exec_min(nb, B - b0);
        int ph = 0;
        for (int64_t b = 0; s->v_nan && b < n; b++)
            atomic_store_explicit(&s->v_nan[b], 0, memory_order_relaxed);

        /* (1) projections */
        memset(s->proj, 0, sizeof s->proj);
        /* one family alone (exec_phases_run pairs its units) */
        s->proj[0].paired_ends = (self || L->kv_given) && !L->v_input;
        if (self) {
            exec_gemm_family *f = &s->proj[0];
            f->W = &pk->qkv;
            exec_family_rows(f, xq, b0, n, B, Sq, L->d_model, seq_first);
            f->C = proj;
            f->ldc = nq + nkv;
            f->c_seg = seq_first ? Sq * (nq + nkv) : 0;
            exec_gemm_plan(f, s->plugin, threads_plan);
            s->n_proj = 1;
        } else {
            exec_gemm_family *f = &s->proj[0];
            f->W = &pk->q;
            exec_family_rows(f, xq, b0, n, B, Sq, L->d_model, seq_first);
            f->C = proj;
            f->ldc = nq;
            f->c_seg = seq_first ? Sq * nq : 0;
            exec_gemm_plan(f, s->plugin, threads_plan);
            s->n_proj = 1;
        }
        if (!self && !L->kv_given) {
            exec_gemm_family *f = &s->proj[1];
            f->W = &pk->kv;
            exec_family_rows(f, xkv, b0, n, B, Skv, L->d_kv, seq_first);
            f->C = projkv;
            f->ldc = nkv;
            f->c_seg = seq_first ? Skv * nkv : 0;
            exec_gemm_plan(f, s->plugin, threads_plan);
            s->n_proj = 2;
        }
        if (L->v_input) { /* V from its own input, into the V columns of projkv */
            exec_gemm_family *f = &s->proj[2];
            f->W = &pk->v;
            exec_family_rows(f, xv, b0, n, B, Skv, layer_v_rows(L), seq_first);
            f->C = projkv + Hkv * dk;
            f->ldc = nkv;
            f->c_seg = seq_first ? Skv * nkv : 0;
            exec_gemm_plan(f, s->plugin, threads_plan);
            s->n_proj = 3;
        }
        s->phase_kind[ph++] = EXEC_PHASE_PROJ;
        const int64_t ldq = self ? nq + nkv : nq, ldkv = self ? nq + nkv : nkv;
        float *kbase = self ? proj + nq : projkv;
        /* head by head (exec_qkv_by_head): Q_h | K_h | V_h, each head 2 dk + dv */
        const int by_head = self && pk->qkv_by_head;
        const int64_t q_sh = by_head ? 2 * dk + dv : dk;
        if (by_head) kbase = proj + dk;
        if (by_head && (cached || L->rotary || L->qk_norm[0] || L->qk_norm[1])) {
            st = mha_fail(err, MHA_ERR_INTERNAL,
                          "exec: Q|K|V packed head by head for a layer "
                          "that reads them side by side");
            break;
        }

        /* (1b) the norms and the rotary embedding of Q and K, in place */
        if (L->rotary || L->qk_norm[0] || L->qk_norm[1]) {
            float *const x[2] = {proj, kbase};
            const int64_t S[2] = {Sq, Skv}, ld[2] = {ldq, ldkv};
            /* positions given as inputs: rows of per-token tables; a cache:
             * the new rows start at the past length */
            const int64_t *pos = rope->pos_offset ? rope->pos_offset + b0
                                 : cached         ? offsets + b0
                                                  : NULL;
            exec_rope_plan_make(&s->rope, L, rope, n, dk, x, S, ld, pos, threads_plan);
            s->phase_kind[ph++] = EXEC_PHASE_ROPE;
        }

        /* (1c) a KV cache: after the projections (and rotary), K' / V'
         * gathered on the pool straight into the present outputs when the
         * graph gives them back (else into the scratch kc), attended from
         * there; one job for every phase */
        const float *k_att = kbase, *v_att = by_head ? kbase + dk : kbase + Hkv * dk;
        int64_t k_sb = Skv * ldkv, k_ss = ldkv, k_sh = by_head ? q_sh : dk, v_sb = k_sb,
                v_ss = ldkv, v_sh = by_head ? q_sh : dv;
        if (cached) {
            float *kd = present[0] ? present[0] + b0 * Hkv * T * dk : kc;
            float *vd = present[1] ? present[1] + b0 * Hkv * T * dv : kc + n * Hkv * T * dk;
            exec_cache_plan *cp = &s->cache;
            cp->past[0] = bd->past_key ? bd->past_key->data : NULL;
            cp->past[1] = bd->past_value ? bd->past_value->data : NULL;
            cp->rows[0] = kbase, cp->rows[1] = kbase + Hkv * dk;
            cp->dst[0] = kd, cp->dst[1] = vd;
            cp->d[0] = dk, cp->d[1] = dv;
            cp->b0 = b0, cp->n = n, cp->Hkv = Hkv, cp->P = P, cp->S = Skv, cp->ld = ldkv;
            exec_cache_plan_make(cp, threads_plan);
            s->phase_kind[ph++] = EXEC_PHASE_CACHE;
            k_att = kd, v_att = vd;
            k_sb = Hkv * T * dk, k_sh = T * dk, k_ss = dk;
            v_sb = Hkv * T * dv, v_sh = T * dv, v_ss = dv;
        }
        if (L->kv_given) { /* the caller's K, V [B, Hkv, Skv, dk | dv] */
            k_att = (const float *)bd->k->data + b0 * Hkv * Skv * dk;
            v_att = (const float *)bd->v->data + b0 * Hkv * Skv * dv;
            k_sb = Hkv * Skv * dk, k_sh = Skv * dk, k_ss = dk;
            v_sb = Hkv * Skv * dv, v_sh = Skv * dv, v_ss = dv;
        }

        /* (2) attention, reading Q/K/V in place through strides */
        mha_attn_args *at = &s->attn.args;
        exec_attn_args_common(at, L, bd, n);
        exec_attn_fill_set(&s->attn, L);
        at->Skv = T; /* Skv without a cache */
        at->causal_offset = cached ? offsets + b0 : NULL;
        at->precision = s->env->precision;
        at->alibi_pos = s->alibi_pos ? s->alibi_pos + b0 * T : NULL; /* [n] of [B] rows */
        at->alibi_pos_sb = T;
        at->kv_len = s->env->kv_lengths ? s->env->kv_lengths + b0 : NULL; /* [n] of [B] */
        at->q = proj;
        at->q_sb = Sq * ldq, at->q_ss = ldq, at->q_sh = q_sh;
        at->k = k_att;
        at->k_sb = k_sb, at->k_ss = k_ss, at->k_sh = k_sh;
        at->v = v_att;
        at->v_sb = v_sb, at->v_ss = v_ss, at->v_sh = v_sh;
        at->o = att;
        at->o_sb = Sq * natt, at->o_ss = natt, at->o_sh = dv;
        exec_attn_set_mask(at, m, b0);
        if (T > 0) {
            exec_attn_plan_make(&s->attn, threads_plan);
            st = exec_workspace_reserve(s, a, self_parallel, err);
            if (st != MHA_OK) break;
            s->phase_kind[ph++] = EXEC_PHASE_ATTN;
        } else {
            /* no keys: every attention row is 0, Y rows are the bias */
            memset(att, 0, n_att * sizeof(float));
            s->attn.n_units = 0;
        }

        /* (3) output projection, written straight into Y */
        exec_gemm_family *f = &s->out;
        memset(f, 0, sizeof *f);
        f->paired_ends = 1;
        f->W = &pk->o;
        f->A = att;
        f->lda = natt;
        if (seq_first) {
            f->a_seg = Sq * natt;
            f->M = Sq;
            f->n_segs = n;
            f->C = y + b0 * d_out;
            f->ldc = B * d_out;
            f->c_seg = d_out;
        } else {
            f->a_seg = 0;
            f->M = n * Sq;
            f->n_segs = 1;
            f->C = y + b0 * Sq * d_out;
            f->ldc = d_out;
            f->c_seg = 0;
        }
        /* the model's residual connection, laid out as Y (exec_env) */
        f->R = s->env->residual ? s->env->residual + (f->C - y) : NULL;
        exec_gemm_plan(f, s->plugin, threads_plan);
        if (s->env->y_rows && !self_parallel) { /* whole rows of Y: batch-first only */
            if (f->n_segs != 1) {
                st = mha_fail(err, MHA_ERR_INTERNAL, "exec: a row epilogue on a seq-first layer");
                break;
            }
            if (f->m_tiles > s->out_pieces_cap) {
                mha_free(a, s->out_pieces);
                s->out_pieces_cap = 0;
                s->out_pieces = mha_calloc(a, (size_t)f->m_tiles, sizeof *s->out_pieces);
                if (!s->out_pieces) {
                    st = mha_fail(err, MHA_ERR_NO_MEMORY, "exec: out of memory");
                    break;
                }
                s->out_pieces_cap = f->m_tiles;
            }
            exec_gemm_pieces_init(f, s->out_pieces);
        }
        s->phase_kind[ph++] = EXEC_PHASE_OUT;
        s->n_phases = ph;
        atomic_int pieces[2];
        s->merge_piece = NULL;
        if (!self_parallel && exec_merge_fits(s, by_head, n)) {
            atomic_init(&pieces[0], EXEC_PIECE_FREE);
            atomic_init(&pieces[1], EXEC_PIECE_FREE);
            s->merge_piece = pieces;
            s->head_cols = q_sh;
            s->phase_kind[0] = EXEC_PHASE_PROJ_ATTN;
            s->phase_kind[1] = EXEC_PHASE_OUT;
            s->n_phases = 2;
        }

        st = exec_phases_run(s, self_parallel, err);
        s->merge_piece = NULL;
        if (st == MHA_OK && L->softmax_nan && T > 0) exec_softmax_nan_rows(s, at, f, n, d_out);
    }

done:
    pool_scratch_give(s->env->pool, a, EXEC_SCRATCH_INTERMEDIATES, scratch);
    mha_free(a, offsets);
    mha_free(a, s->out_pieces);
    s->out_pieces = NULL;
    s->out_pieces_cap = 0;
    mha_free(a, s->v_nan);
    s->v_nan = NULL;
    return st;
}

/* A plugin that does not declare ALiBi would ignore the slopes: refuse,
 * naming it. */
static mha_status exec_fail_no_alibi(const mha_plugin *p, mha_error *err) {
    return mha_fail(err, MHA_ERR_BACKEND,
                    "backend '%s' does not declare ALiBi (MHA_OP_ALIBI in its plugin table): "
                    "this layer needs a backend that does (scalar, avx2, avx512 and openmp do)",
                    p->name);
}

/* One attention phase over prepared arguments (exec_ext.c: KV cache, key
 * lengths, windows, float16 -- everything already float32 and in place). The
 * same units, workspace and threading as a bare layer. */
mha_status exec_run_attention_args(const exec_env *env, const mha_attn_args *args, mha_error *err) {
    if (!env || !env->plugin || !args)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "run: NULL argument");
    const mha_plugin *p = env->plugin;
    if (!p->attention)
        return mha_fail(err, MHA_ERR_PLUGIN, "backend '%s' lacks a kernel entry point", p->name);
    if (args->alibi_slopes && !registry_plugin_has_op(p, MHA_OP_ALIBI))
        return exec_fail_no_alibi(p, err);
    if (args->B == 0 || args->Hq == 0 || args->Sq == 0 || args->Skv == 0) return MHA_OK;
    exec_state s;
    memset(&s, 0, sizeof s);
    s.env = env;
    s.plugin = p;
    s.threads = pool_threads(env->pool);
    if (env->num_threads > 0 && env->num_threads < s.threads) s.threads = env->num_threads;
    const int self_parallel = (p->flags & MHA_PLUGIN_SELF_PARALLEL) != 0;
    int reserved = 0;
    if (self_parallel && s.threads > 1) {
        reserved = pool_try_reserve(env->pool);
        if (!reserved) s.threads = 1;
    }
    unsigned fp_saved = 0;
    if (env->pool) fp_saved = pool_fp_flush_denormals();
    s.attn.args = *args;
    s.attn.args.struct_size = sizeof s.attn.args;
    s.attn.args.precision = env->precision;
    s.attn.args.num_threads = 1;
    exec_attn_plan_make(&s.attn, self_parallel ? 1 : s.threads);
    s.phase_kind[0] = EXEC_PHASE_ATTN;
    s.n_phases = 1;
    mha_status st = exec_workspace_reserve(&s, env->alloc, self_parallel, err);
    if (st == MHA_OK) st = exec_phases_run(&s, self_parallel, err);
    if (env->pool) pool_fp_restore(fp_saved);
    if (reserved) pool_release(env->pool);
    pool_scratch_give(env->pool, env->alloc, EXEC_SCRATCH_WORKSPACE, s.workspace);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Entry                                                                     */
/* ------------------------------------------------------------------------ */

mha_status exec_run_core(const exec_env *env, const layer *L, const exec_packed *pk,
                         const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                         size_t n_outputs, mha_error *err) {
    if (!env || !env->plugin || !L || (n_outputs && !outputs) || (n_inputs && !inputs))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "run: NULL argument");
    exec_binding bd;
    mha_status st = layer_bind(L, inputs, n_inputs, n_outputs, &bd, err);
    if (st != MHA_OK) return st;

    mha_tensor *y = &outputs[bd.y_index];
    const char *y_name = L->outputs[bd.y_index].name ? L->outputs[bd.y_index].name : "?";
    int same = y->dtype == bd.y_shape.dtype && y->rank == bd.y_shape.rank;
    for (int i = 0; same && i < y->rank; i++)
        same = y->shape[i] == bd.y_shape.shape[i];
    if (!same) {
        char want[128], got[128];
        return mha_fail(err, MHA_ERR_SHAPE, "output '%s': expected %s %s, got %s %s", y_name,
                        mha_dtype_name(bd.y_shape.dtype),
                        tensor_shape_str(bd.y_shape.rank, bd.y_shape.shape, want, sizeof want),
                        mha_dtype_name(y->dtype),
                        tensor_shape_str(y->rank, y->shape, got, sizeof got));
    }
    int64_t y_numel = mha_tensor_numel(y);
    if (y_numel > 0 && !y->data)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output '%s': data is NULL", y_name);
    /* a KV cache's present_key / present_value: float32 [B, Hkv, T, dk|dv] */
    for (int k = 0; k < 2; k++) {
        const int64_t at = k ? bd.present_value_index : bd.present_key_index;
        if (at < 0) continue;
        const mha_tensor *t = &outputs[at];
        const int64_t want[4] = {bd.B, L->kv_heads, bd.T, k ? bd.dv : bd.dk};
        int fits = t->dtype == MHA_DTYPE_FLOAT32 && t->rank == 4;
        for (int i = 0; fits && i < 4; i++)
            fits = t->shape[i] == want[i];
        if (!fits || (mha_tensor_numel(t) > 0 && !t->data)) {
            char w[128], g[128];
            return mha_fail(err, MHA_ERR_SHAPE, "output '%s': expected float32 %s, got %s %s%s",
                            L->outputs[at].name ? L->outputs[at].name : "?",
                            tensor_shape_str(4, want, w, sizeof w), mha_dtype_name(t->dtype),
                            tensor_shape_str(t->rank, t->shape, g, sizeof g),
                            fits ? " without data" : "");
        }
    }
    if (L->has_proj && (!pk || pk->plugin != env->plugin || pk->precision != env->precision))
        return mha_fail(err, MHA_ERR_INTERNAL, "run: weights not packed for backend '%s'",
                        env->plugin->name);
    const mha_plugin *p = env->plugin;
    if (!p->gemm || !p->attention || !p->gemm_packed_size || !p->gemm_pack_b)
        return mha_fail(err, MHA_ERR_PLUGIN, "backend '%s' lacks a kernel entry point", p->name);
    if (p->gemm_m_block > MHA_PLUGIN_GEMM_BLOCK_MAX || p->gemm_n_block > MHA_PLUGIN_GEMM_BLOCK_MAX)
        return mha_fail(
            err, MHA_ERR_PLUGIN, "backend '%s' has gemm blocks %lld x %lld (need 1..%d)", p->name,
            (long long)p->gemm_m_block, (long long)p->gemm_n_block, MHA_PLUGIN_GEMM_BLOCK_MAX);
    for (int64_t b = 0; env->kv_lengths && b < bd.B; b++)
        if (env->kv_lengths[b] < 0)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "run options: kv_lengths[%lld] = %lld is negative", (long long)b,
                            (long long)env->kv_lengths[b]);
    if (L->alibi_slopes && !registry_plugin_has_op(p, MHA_OP_ALIBI))
        return exec_fail_no_alibi(p, err);
    if (bd.B == 0 || bd.Sq == 0 || y_numel == 0) {
        /* no new token: a KV cache's present outputs are its past */
        for (int k = 0; k < 2 && bd.past_key; k++) {
            const int64_t at = k ? bd.present_value_index : bd.present_key_index;
            const mha_tensor *past = k ? bd.past_value : bd.past_key;
            const int64_t n = mha_tensor_numel(past);
            if (at >= 0 && n > 0) memcpy(outputs[at].data, past->data, (size_t)n * sizeof(float));
        }
        return MHA_OK;
    }

    exec_state s;
    memset(&s, 0, sizeof s);
    s.env = env;
    s.plugin = p;
    s.layer = L;
    /* norms of Q and K: the plugin's norm entry, else the reference's */
    s.rope.norm_fn = registry_plugin_norm(p);
    s.rope.norm_state = env->plugin_state;
    if (!s.rope.norm_fn) {
        s.rope.norm_fn = mha_scalar_plugin_table()->norm;
        s.rope.norm_state = NULL;
    }
    /* rotary: the plugin's kernel when it declares one, else the reference's */
    exec_rope_tables rope;
    memset(&rope, 0, sizeof rope);
    s.rope.rotate = L->rotary != MHA_ROTARY_NONE;
    if (L->rotary) {
        s.rope.fn = registry_plugin_rotary(p);
        s.rope.fn_state = env->plugin_state;
        if (!s.rope.fn) {
            s.rope.fn = mha_scalar_plugin_table()->rotary;
            s.rope.fn_state = NULL;
        }
        st = bd.position_ids || bd.rotary_cos
                 ? exec_rope_tables_given(env->alloc, L, &bd, &rope, err)
                 : exec_rope_tables_get(env->alloc, L, bd.P + exec_max(bd.Sq, bd.Skv), &rope, err);
        if (st != MHA_OK) return st;
    }
    s.threads = pool_threads(env->pool);
    if (env->num_threads > 0 && env->num_threads < s.threads) s.threads = env->num_threads;
    const int self_parallel = (p->flags & MHA_PLUGIN_SELF_PARALLEL) != 0;
    /* A self-parallel plugin runs its own threads while the pool idles;
     * holding the pool keeps it to one parallel run at a time, as for pool
     * jobs: a run that finds it busy goes single-threaded (same bits). */
    int reserved = 0;
    if (self_parallel && s.threads > 1) {
        reserved = pool_try_reserve(env->pool);
        if (!reserved) s.threads = 1;
    }

    exec_mask mask;
    float *alibi_pos = NULL;
    st = exec_mask_build(env->alloc, L, &bd, env->kv_lengths, &mask, err);
    if (st == MHA_OK) st = exec_alibi_positions(env->alloc, L, &bd, &alibi_pos, err);
    if (st != MHA_OK) {
        if (reserved) pool_release(env->pool);
        mha_free(env->alloc, rope.owned);
        mha_free(env->alloc, rope.pos_offset);
        mha_free(env->alloc, mask.owned);
        return st;
    }
    s.alibi_pos = alibi_pos;

    /* Workers flush denormals; so does the caller while it works with them
     * (one FP mode for every unit keeps the result thread-count independent). */
    unsigned fp_saved = 0;
    if (env->pool) fp_saved = pool_fp_flush_denormals();
    if (L->has_proj) {
        float *const present[2] = {
            bd.present_key_index >= 0 ? outputs[bd.present_key_index].data : NULL,
            bd.present_value_index >= 0 ? outputs[bd.present_value_index].data : NULL};
        st = exec_run_projected(&s, L, &bd, pk, &mask, &rope, y->data, present, self_parallel, err);
    } else
        st = exec_run_bare(&s, L, &bd, &mask, y->data, self_parallel, err);
    if (env->pool) pool_fp_restore(fp_saved);

    if (reserved) pool_release(env->pool);
    pool_scratch_give(env->pool, env->alloc, EXEC_SCRATCH_WORKSPACE, s.workspace);
    mha_free(env->alloc, mask.owned);
    mha_free(env->alloc, rope.owned);
    mha_free(env->alloc, rope.pos_offset);
    mha_free(env->alloc, alibi_pos);
    return st;
}
