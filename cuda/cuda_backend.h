/*
 * cuda_backend.h — the CUDA backend's one public entry: its ops table
 * (engine/backend.h).  Plain C, no CUDA types, so the engine's registry can
 * reference it without including CUDA headers.
 */
#ifndef PROMPTFS_CUDA_BACKEND_H
#define PROMPTFS_CUDA_BACKEND_H

#include "../engine/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

const struct eng_backend_ops *cuda_backend_get(void);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_CUDA_BACKEND_H */
