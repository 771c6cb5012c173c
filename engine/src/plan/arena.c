/* arena.c -- the activations of a run in one block. The outputs of fused
 * steps (GEMM, norm, attention: the large values of a transformer) are
 * placed in one arena by their lifetimes instead of being allocated step by
 * step. The first run at a set of input sizes records the bytes of each;
 * plan_arena_plan then gives each an offset such that two values alive at
 * the same step never share a byte (greedy by size, as ONNX Runtime and
 * ggml-alloc plan theirs: largest first, at the lowest offset that fits
 * between the values it overlaps in time). Later runs at those sizes take
 * one block for all of them. Interpreted nodes (embeddings, masks, shapes)
 * still allocate their own outputs. */
#include <stdint.h>
#include <string.h>

#include "plan_internal.h"

#define ARENA_ALIGN 64
#define ARENA_MAX_CACHED 8 /* layouts kept per plan (distinct input sizes) */

/* The step that writes fused output v, or -1 for other values. */
static int arena_def_step(const plan *P, int v) {
    for (size_t s = 0; s < P->n_steps; s++) {
        const plan_step *st = &P->steps[s];
        int out = st->kind == PLAN_STEP_GEMM        ? P->gemms[st->index].out_value
                  : st->kind == PLAN_STEP_NORM      ? P->norms[st->index].out_value
                  : st->kind == PLAN_STEP_ADD       ? P->adds[st->index].out_value
                  : st->kind == PLAN_STEP_GATHER    ? P->gathers[st->index].out_value
                  : st->kind == PLAN_STEP_CONCAT    ? P->concats[st->index].out_value
                  : st->kind == PLAN_STEP_ATTENTION ? P->layers[st->index].out_value
                                                    : -1;
        if (out == v) return (int)s;
        for (size_t k = 0; st->kind == PLAN_STEP_ATTENTION && k < P->layers[st->index].n_extra; k++)
            if (P->layers[st->index].extra_out[k] == v) return (int)s;
    }
    return -1;
}

typedef struct arena_item {
    int v;
    size_t bytes, offset;
    int first, last; /* steps the value lives through, inclusive */
} arena_item;

static int arena_overlap(const arena_item *a, const arena_item *b) {
    return a->first <= b->last && b->first <= a->last;
}

mha_status plan_arena_plan(const plan *P, const int64_t *key, const size_t *sizes, plan_arena **out,
                           mha_error *err) {
    const ir_graph *g = P->g;
    *out = NULL;
    size_t n = 0;
    for (size_t v = 0; v < g->n_values; v++)
        n += sizes[v] > 0;
    plan_arena *A = mha_calloc(&P->alloc, 1, sizeof *A);
    arena_item *it = mha_calloc(&P->alloc, n ? n : 1, sizeof *it);
    if (A) A->offset = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, sizeof *A->offset);
    if (A) A->size = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, sizeof *A->size);
    if (!A || !it || !A->offset || !A->size) {
        mha_free(&P->alloc, it);
        plan_arena_free(P, A);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory planning the arena");
    }
    memcpy(A->key, key, sizeof A->key);
    size_t k = 0;
    for (size_t v = 0; v < g->n_values; v++) {
        A->offset[v] = SIZE_MAX;
        if (!sizes[v]) continue;
        arena_item *x = &it[k++];
        x->v = (int)v;
        x->bytes = (sizes[v] + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
        x->first = arena_def_step(P, (int)v);
        x->last = P->last_step[v] > x->first ? P->last_step[v] : x->first;
        for (size_t o = 0; o < g->n_outputs; o++)
            if (g->outputs[o] == (int)v) x->last = (int)P->n_steps; /* copied out at the end */
    }
    /* largest first (insertion sort: a few hundred values at most) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && it[j].bytes > it[j - 1].bytes; j--) {
            arena_item t = it[j];
            it[j] = it[j - 1];
            it[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        /* the lowest offset clear of every placed value alive with it:
         * try 0 and the end of each such value */
        size_t best = SIZE_MAX;
        for (size_t c = 0; c <= i; c++) {
            size_t at = c == i ? 0 : it[c].offset + it[c].bytes;
            if (c < i && !arena_overlap(&it[c], &it[i])) continue;
            int clear = 1;
            for (size_t j = 0; j < i && clear; j++)
                clear = !arena_overlap(&it[j], &it[i]) || at + it[i].bytes <= it[j].offset ||
                        it[j].offset + it[j].bytes <= at;
            if (clear && at < best) best = at;
        }
        it[i].offset = best;
        if (best + it[i].bytes > A->bytes) A->bytes = best + it[i].bytes;
        A->offset[it[i].v] = best;
        A->size[it[i].v] = sizes[it[i].v];
    }
    mha_free(&P->alloc, it);
    *out = A;
    return MHA_OK;
}

void plan_arena_free(const plan *P, plan_arena *A) {
    if (!A) return;
    mha_free(&P->alloc, A->offset);
    mha_free(&P->alloc, A->size);
    mha_free(&P->alloc, A);
}

const plan_arena *plan_arena_find(plan *P, const int64_t *key) {
    pthread_mutex_lock(&P->arena_lock);
    const plan_arena *A = P->arenas;
    while (A && memcmp(A->key, key, sizeof A->key) != 0)
        A = A->next;
    pthread_mutex_unlock(&P->arena_lock);
    return A;
}

void plan_arena_keep(plan *P, plan_arena *A) {
    pthread_mutex_lock(&P->arena_lock);
    size_t n = 0;
    const plan_arena *e = P->arenas;
    for (; e && memcmp(e->key, A->key, sizeof A->key) != 0; e = e->next)
        n++;
    if (!e && n < ARENA_MAX_CACHED) { /* linked entries never change until plan_free */
        A->next = P->arenas;
        P->arenas = A;
        A = NULL;
    }
    pthread_mutex_unlock(&P->arena_lock);
    plan_arena_free(P, A);
}

void *plan_arena_block_take(plan *P, size_t bytes, size_t *got) {
    void *b = NULL;
    pthread_mutex_lock(&P->arena_lock);
    int best = -1;
    for (int i = 0; i < PLAN_IDLE_BLOCKS; i++)
        if (P->idle_bytes[i] >= bytes && (best < 0 || P->idle_bytes[i] < P->idle_bytes[best]))
            best = i;
    if (best >= 0) {
        b = P->idle[best];
        *got = P->idle_bytes[best];
        P->idle[best] = NULL;
        P->idle_bytes[best] = 0;
    }
    pthread_mutex_unlock(&P->arena_lock);
    if (!b) {
        b = mha_malloc(&P->alloc, bytes);
        *got = b ? bytes : 0;
    }
    return b;
}

void plan_arena_block_give(plan *P, void *block, size_t bytes) {
    if (!block) return;
    pthread_mutex_lock(&P->arena_lock);
    int slot = -1; /* an empty slot, else the smallest idle block if smaller */
    for (int i = 0; i < PLAN_IDLE_BLOCKS; i++)
        if (slot < 0 || P->idle_bytes[i] < P->idle_bytes[slot]) slot = i;
    void *drop = block;
    if (P->idle_bytes[slot] < bytes) {
        drop = P->idle[slot];
        P->idle[slot] = block;
        P->idle_bytes[slot] = bytes;
    }
    pthread_mutex_unlock(&P->arena_lock);
    mha_free(&P->alloc, drop);
}

void *plan_rows_block_take(plan *P, size_t bytes, size_t *got) {
    pthread_mutex_lock(&P->arena_lock);
    void *b = P->rows_block;
    size_t have = P->rows_bytes;
    P->rows_block = NULL;
    P->rows_bytes = 0;
    pthread_mutex_unlock(&P->arena_lock);
    if (b && have >= bytes) {
        *got = have;
        return b;
    }
    mha_free(&P->alloc, b);
    b = mha_malloc(&P->alloc, bytes);
    *got = b ? bytes : 0;
    return b;
}

void plan_rows_block_give(plan *P, void *block, size_t bytes) {
    if (!block) return;
    pthread_mutex_lock(&P->arena_lock);
    if (!P->rows_block) {
        P->rows_block = block;
        P->rows_bytes = bytes;
        block = NULL;
    }
    pthread_mutex_unlock(&P->arena_lock);
    mha_free(&P->alloc, block);
}

void plan_arena_blocks_free(plan *P) {
    for (int i = 0; i < PLAN_IDLE_BLOCKS; i++) {
        mha_free(&P->alloc, P->idle[i]);
        P->idle[i] = NULL;
        P->idle_bytes[i] = 0;
    }
    mha_free(&P->alloc, P->rows_block);
    P->rows_block = NULL;
    P->rows_bytes = 0;
}
