/* fuzz_main.c -- the libFuzzer side of a fuzz target: one binary per entry
 * of fuzz_entry.h, chosen at compile time with -DFUZZ_ENTRY=<function>. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_entry.h"

#ifndef FUZZ_ENTRY
#error "compile with -DFUZZ_ENTRY=fuzz_<target>_one"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return FUZZ_ENTRY(data, size);
}
