/* backend_scores.h -- the probe scores of the in-tree backends, in one place
 * so their order is a decision, not an accident. "auto" picks the highest
 * score among the usable plugins:
 *
 *   avx512 (40) > avx2 (30) > openmp (20) > scalar (10)
 *
 * Why this order: the SIMD kernels run on the host's thread pool (one pool
 * per runtime, predictable threads, the engine's scheduling); openmp runs
 * the same kernel sets under OpenMP's threads (a process-wide runtime the
 * embedder may not want by default), and scalar is the reference (one
 * element at a time, double accumulation), kept last. An out-of-tree plugin that wants to win
 * "auto" returns more than 40; one that only wants to be chosen by name
 * returns less than 10. */
#ifndef MHA_BACKENDS_BACKEND_SCORES_H
#define MHA_BACKENDS_BACKEND_SCORES_H

#define MHA_SCORE_SCALAR 10
#define MHA_SCORE_OPENMP 20
#define MHA_SCORE_AVX2 30
#define MHA_SCORE_AVX512 40

#endif
