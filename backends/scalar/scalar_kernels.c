/* scalar_kernels.c -- placeholder until the scalar backend lands. */
#include "mha/plugin.h"
