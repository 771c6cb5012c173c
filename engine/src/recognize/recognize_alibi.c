/* recognize_alibi.c -- ALiBi (BLOOM, MPT, the ALiBi paper) recognised by
 * its effect on the scores. recognize_mask.c finds the additive term that
 * lands on the scaled scores of every (slot, query i, key j) at the probe;
 * when it is neither a mask nor zero and the sequence axes are dynamic (so
 * it cannot be a constant table), it is ALiBi when, on every key it does
 * not hide,
 *
 *     term[n, i, j] = slope[head(n)] * j + c[n, i]
 *
 * with one slope per head (the same in every batch item). The row constant
 * c does not change the softmax; the form the file computes is kept so the
 * float rounding matches: BLOOM adds slope * j (c = 0), MPT slope * (j - S +
 * 1) (c the same in every row: computed as slope * j too, the constant
 * dropped), the paper slope * (j - i) (c = -slope * i: the relative form).
 * The layer then computes it on the fly in the attention kernels; the
 * verifier checks it at two probe sizes.
 *
 * BLOOM counts positions over the keys its padding mask lets through
 * (cumsum(mask) - 1): with a mask of holes its term is not slope * j. The
 * mask placement (recognize_mask.c) then matches the term against slope *
 * (counted position - j) on top of the mask's own effect, with the slopes
 * read here from the run with every key attended. */
#include <math.h>
#include <string.h>

#include "recognize_internal.h"

/* Relative tolerance of a term against slope * j + c: the file computes
 * float(slope * j), one rounding. */
#define RZ_ALIBI_TOL 1e-6

/* A term value that hides its key (recognize_mask.c's threshold). */
static int rz_alibi_hidden(double v) {
    return v <= -1e30;
}

/* The slope of one row (keys [0, skv) of row, hidden ones skipped): exact
 * when two neighbouring keys hold 0 and the slope (BLOOM's key 0, MPT's
 * last key), else from the two farthest keys. 0 when fewer than two keys
 * show. */
static int rz_alibi_row_slope(const double *row, int64_t skv, double *slope) {
    int64_t first = -1, last = -1;
    for (int64_t j = 0; j < skv; j++) {
        if (rz_alibi_hidden(row[j])) continue;
        if (first < 0) first = j;
        last = j;
        if (j > 0 && !rz_alibi_hidden(row[j - 1]) && (row[j] == 0.0 || row[j - 1] == 0.0)) {
            *slope = row[j] - row[j - 1];
            return 1;
        }
    }
    if (first < 0 || last == first) return 0;
    *slope = (row[last] - row[first]) / (double)(last - first);
    return 1;
}

static int rz_alibi_close(double got, double want) {
    return fabs(got - want) <= RZ_ALIBI_TOL * fmax(1.0, fmax(fabs(got), fabs(want)));
}

int rz_alibi_slopes(rz_ctx *z, const double *raw, int64_t n_slots, int64_t sq, int64_t skv,
                    const int64_t *head, int64_t H, double *slope, int *relative) {
    if (H < 1 || sq < 1 || skv < 2 || n_slots < H) return 0;
    unsigned char *seen = mha_calloc(z->a, rz_count(H), 1);
    if (!seen) {
        mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    int ok = 1, key_form = 1, rel_form = 1, moves = 0;
    for (int64_t n = 0; n < n_slots && ok; n++) {
        const int64_t h = head[n];
        const double *slot = raw + n * sq * skv;
        /* the last query row sees the most keys */
        double s;
        ok = h >= 0 && h < H && rz_alibi_row_slope(slot + (sq - 1) * skv, skv, &s);
        if (!ok) break;
        s = (double)(float)s; /* the file's slopes are float32 */
        if (seen[h] && !rz_alibi_close(s, slope[h])) ok = 0;
        slope[h] = s;
        seen[h] = 1;
        moves |= s != 0.0;
        /* every row: term - slope * j is one constant c_i over its keys */
        double c_first = 0.0;
        for (int64_t i = 0; i < sq && ok; i++) {
            const double *row = slot + i * skv;
            int have = 0;
            double c = 0.0;
            for (int64_t j = 0; j < skv && ok; j++) {
                if (rz_alibi_hidden(row[j])) continue;
                if (!have) c = row[j] - s * (double)j;
                ok = rz_alibi_close(row[j], s * (double)j + c);
                have = 1;
            }
            if (!have) continue;
            if (i == 0) c_first = c;
            key_form &= rz_alibi_close(c, c_first);
            rel_form &= rz_alibi_close(c + s * (double)i, c_first);
        }
    }
    for (int64_t h = 0; h < H && ok; h++)
        ok = seen[h];
    mha_free(z->a, seen);
    if (relative) *relative = !key_form && rel_form;
    return ok && moves ? 1 : 0;
}

int rz_alibi_take(rz_ctx *z, layer *L, const double *raw, int64_t n_slots, int64_t sq, int64_t skv,
                  const int64_t *head) {
    const int64_t H = L->q_heads;
    double *slope = mha_calloc(z->a, rz_count(H), sizeof *slope);
    if (!slope) {
        mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    int relative = 0;
    int found = rz_alibi_slopes(z, raw, n_slots, sq, skv, head, H, slope, &relative);
    if (found > 0) {
        L->alibi_slopes = mha_malloc(z->a, (size_t)H * sizeof(float));
        if (!L->alibi_slopes) {
            mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
            found = -1;
        } else {
            for (int64_t h = 0; h < H; h++)
                L->alibi_slopes[h] = (float)slope[h];
            L->alibi_relative = relative;
        }
    }
    mha_free(z->a, slope);
    return found;
}
