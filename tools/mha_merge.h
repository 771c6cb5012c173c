/* mha_merge.h -- `mha merge OUT SHARD...`: joins the shard files of a split
 * run (`mha run --shard I/N`) into the full output file. */
#ifndef MHA_MERGE_H
#define MHA_MERGE_H

#include <stdint.h>

/* The subcommand: argv[0] is "merge". Returns the exit status. */
int mha_cmd_merge(int argc, char **argv);

/* A shard's run note ends in the hash of its rows: `mha run --shard`
 * writes MERGE_ROWS_UNSEALED with the header and the hash of every row
 * once all are written (merge_shard_seal), and `mha merge` refuses a shard
 * whose rows no longer hash so (a byte changed since, by hand or by the
 * disk). Shards of an earlier mha, without the field, merge as before. */
#define MERGE_ROWS_HASH "; rows-hash "
#define MERGE_ROWS_UNSEALED "0000000000000000"

/* Puts the hash of the rows of the shard file at path (a partial file, all
 * its rows written, its note ending in MERGE_ROWS_HASH MERGE_ROWS_UNSEALED)
 * in the placeholder's place in its header: *rows_hash when the writer
 * hashed them as it wrote them (CLI_HASH_SEED, then cli_hash_bytes row by
 * row), else (NULL) read back and hashed as `mha merge` reads them. CLI_OK,
 * or one line naming path and the problem. */
int merge_shard_seal(const char *path, const uint64_t *rows_hash);

#endif
