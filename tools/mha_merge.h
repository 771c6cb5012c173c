/* mha_merge.h -- `mha merge OUT SHARD...`: joins the shard files of a split
 * run (`mha run --shard I/N`) into the full output file. */
#ifndef MHA_MERGE_H
#define MHA_MERGE_H

/* The subcommand: argv[0] is "merge". Returns the exit status. */
int mha_cmd_merge(int argc, char **argv);

#endif
