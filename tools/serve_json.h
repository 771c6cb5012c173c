/* serve_json.h -- JSON bodies of `mha serve` (see serve_json.c). */
#ifndef MHA_SERVE_JSON_H
#define MHA_SERVE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "mha/mha.h"

#define SERVE_JSON_MAX_RANK 3

/* Reads text[0..n) as one sequence of nested arrays: float32, rank 2
 * ([S, D]) or 3; or with ids, int64 token ids, rank 1 ([S]) or 2 ([1, S]).
 * dims receives SERVE_JSON_MAX_RANK entries (rank used). *data is malloc'd
 * (free it). 0, or -1 with msg saying where and what. */
int serve_json_parse(const char *text, size_t n, int ids, void **data, int *rank, int64_t *dims,
                     char *msg, size_t msg_size);

/* Outputs y[0..n_out) (float32, any rank) and a newline: one as nested
 * arrays, several as an object of them by names[k]; malloc'd, NULL when out
 * of memory. */
char *serve_json_format(const mha_tensor *y, const char *const *names, size_t n_out, size_t *len);

/* "%.9g" of f (every float32 back exactly) at out, which has room for 16
 * characters and a NUL; returns the length. The same text as snprintf's,
 * several times faster. */
size_t serve_json_float(float f, char *out);

/* strtof of a number as JSON spells it, the same float, faster. */
float serve_json_strtof(const char *s);

#endif
