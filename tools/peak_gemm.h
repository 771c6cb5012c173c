/* peak_gemm.h -- `mha peak --gemm` (see peak_gemm.c). */
#ifndef MHA_PEAK_GEMM_H
#define MHA_PEAK_GEMM_H

/* Times backend's (NULL: auto) GEMM in `precision` at each shape of
 * `shapes` ("MxKxN,MxKxN,...") and each of the n_threads thread counts
 * (<= 64), printing GFLOP/s and, where peak[t] > 0, its percent of peak[t]
 * (wall time); and GFLOP per CPU second x threads, against threads x
 * core_peak (one core's peak per CPU second) when that is > 0.
 * Returns a CLI_* status (it prints its error). */
int peak_gemm_run(const char *shapes, const char *backend, int precision, const int *threads,
                  int n_threads, double seconds, int reps, const double *peak, double core_peak);

#endif
