/* bench_stats.c -- the numbers `mha bench` derives: order statistics of the
 * repetition times, the FLOP count of one layer run, and the error of a
 * backend's output against the scalar reference. */
#include <math.h>
#include <string.h>
#include <stdlib.h>

#include "bench_internal.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p in [0, 1]; v sorted ascending, n >= 1. Linear interpolation between
 * the two order statistics around p*(n-1) (numpy's default). */
double bench_percentile_sorted(const double *v, size_t n, double p) {
    double pos = p * (double)(n - 1);
    size_t lo = (size_t)floor(pos);
    if (lo + 1 >= n) return v[n - 1];
    double frac = pos - (double)lo;
    return v[lo] + (v[lo + 1] - v[lo]) * frac;
}

void bench_stats_compute(double *v, size_t n, bench_stats *s) {
    double sum = 0.0, sq = 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    s->mean = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        sq += (v[i] - s->mean) * (v[i] - s->mean);
    /* sample standard deviation over the mean */
    s->cv = (n > 1 && s->mean > 0.0) ? sqrt(sq / (double)(n - 1)) / s->mean : 0.0;
    s->min = v[0];
    s->max = v[n - 1];
    s->median = bench_percentile_sorted(v, n, 0.5);
    s->p25 = bench_percentile_sorted(v, n, 0.25);
    s->p75 = bench_percentile_sorted(v, n, 0.75);
    s->p90 = bench_percentile_sorted(v, n, 0.9);
    s->p99 = bench_percentile_sorted(v, n, 0.99);
}

/* Per (batch item): projections of the Sq queries and of the S_new new keys
 * (past keys were projected by an earlier call), attention of Sq queries
 * against all Skv keys in every query head, and the output projection.
 *   Q:   2*Sq*d_model*(Hq*dk)     K|V: 2*S_new*d_kv*Hkv*(dk+dv)
 *   QK^T and PV: 2*Hq*Sq*Skv*(dk+dv)     out: 2*Sq*(Hq*dv)*d_out
 * With H*d_head = D and no GQA this is docs/ARCHITECTURE.md's
 * 2B(Sq+2Skv)D^2 + 4B*Sq*Skv*D + 2B*Sq*D^2. A whole model (a plan): 0
 * here; the library counts its run (mha_run_options.flops). */
double bench_flops(const bench_probe *p, int causal_halved) {
    if (strcmp(p->form, "plan") == 0) return 0.0;
    double B = (double)p->B, Sq = (double)p->Sq, Skv = (double)p->Skv;
    double S_new = (double)(p->Skv - p->S_past);
    double hq = (double)p->q_heads, hkv = (double)p->kv_heads;
    double dk = (double)p->d_head, dv = (double)p->d_head_v;
    double attn = 2.0 * B * hq * Sq * Skv * (dk + dv);
    double proj = 0.0;
    if (causal_halved && p->causal) attn *= 0.5;
    if (p->has_projections) {
        proj += 2.0 * B * Sq * (double)p->d_model * hq * dk;
        proj += 2.0 * B * S_new * (double)p->d_kv * hkv * (dk + dv);
        proj += 2.0 * B * Sq * hq * dv * (double)p->d_out;
    }
    return proj + attn;
}

void bench_compare(const float *a, const float *b, size_t n, double *max_abs, double *max_ref) {
    double worst = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        double d;
        if (isnan(y) && isnan(x))
            d = 0.0;
        else if (isnan(x) || isnan(y))
            d = INFINITY;
        else if (isinf(x) || isinf(y))
            d = (x == y) ? 0.0 : INFINITY;
        else
            d = fabs(x - y);
        if (d > worst) worst = d;
        if (isfinite(y) && fabs(y) > ref) ref = fabs(y);
    }
    *max_abs = worst;
    *max_ref = ref;
}
