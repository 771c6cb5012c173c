/* serve_json.h -- JSON bodies of `mha serve` (see serve_json.c). */
#ifndef MHA_SERVE_JSON_H
#define MHA_SERVE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "mha/mha.h"

#define SERVE_JSON_MAX_RANK 3

/* Reads text[0..n) as one sequence of nested arrays: rank 2 ([S, D]) or 3;
 * dims receives SERVE_JSON_MAX_RANK entries (rank used). *data is malloc'd
 * (free it). 0, or -1 with msg saying where and what. */
int serve_json_parse(const char *text, size_t n, float **data, int *rank, int64_t *dims, char *msg,
                     size_t msg_size);

/* y (float32, rank 2 or 3) as nested arrays and a newline; malloc'd, NULL
 * when out of memory. */
char *serve_json_format(const mha_tensor *y, size_t *len);

#endif
