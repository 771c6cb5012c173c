/* mha_bench.h -- the `mha bench` subcommand: times every chosen backend x
 * thread count on a model at a given shape, after checking each against
 * the scalar reference (see docs/BENCH.md). */
#ifndef MHA_TOOLS_MHA_BENCH_H
#define MHA_TOOLS_MHA_BENCH_H

/* argv[0] is "bench" (or the program name); options follow. Returns the
 * exit status: 0 every configuration ran and passed the accuracy check,
 * 1 a configuration failed (accuracy, run error) or a file could not be
 * read or written, 2 a usage error. */
int mha_cmd_bench(int argc, char **argv);

#endif
