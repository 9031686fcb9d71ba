/* PLACEHOLDER — replaced by the CUDA backend work. */
#include "cuda_backend.h"
extern "C" const struct eng_backend_ops *cuda_backend_get(void) { return NULL; }
