/*
 * cpu.h — internals of the CPU backend shared by its files (not a public
 * header: only the files in engine/cpu/ and tests include it).
 *
 * Files: pool.c (thread pool), vecdot.c (per-type dot products, SIMD),
 * matmul.c (y = x W^T over threads), ops.c (rmsnorm, rope, attention, …),
 * forward.c (the transformer and the ops table eng_cpu_backend_ops).
 *
 * Numerics follow ggml's CPU backend so logits match llama.cpp: activations
 * are quantised per call to the weight type's "vec_dot type" and the dot
 * product is done in integers per block:
 *   Q4_0, Q5_0, Q8_0 → Q8_0;  Q4_1, Q5_1 → Q8_1;  Q2_K … Q6_K → Q8_K;
 *   F16 → F16;  BF16 → BF16;  F32 → F32.
 */
#ifndef PROMPTFS_ENGINE_CPU_H
#define PROMPTFS_ENGINE_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "../model.h"

// ---- thread pool (pool.c)

struct cpu_pool;
typedef void (*cpu_task_fn)(void *arg, int ith, int nth);

/* n_threads <= 0: all online cores.  0 / -errno. */
int cpu_pool_init(int n_threads, struct cpu_pool **out);
void cpu_pool_free(struct cpu_pool *p); /* accepts NULL */
int cpu_pool_n_threads(const struct cpu_pool *p);
/* Runs fn(arg, ith, nth) on every thread (the caller is thread 0) and
 * returns when all have finished.  Not reentrant. */
void cpu_pool_run(struct cpu_pool *p, cpu_task_fn fn, void *arg);

// ---- memory read bandwidth (membw.c)

/* Bytes/s the pool's threads read from DRAM together (median of 5 passes
 * over a buffer ≫ the caches); 0 when the buffer cannot be allocated. */
double cpu_mem_read_bandwidth(struct cpu_pool *pool);

// ---- dot products (vecdot.c)

/* The activation type a weight type is multiplied with (table above). */
enum gguf_dtype cpu_vec_dot_type(enum gguf_dtype wtype);
/* Converts n floats (a multiple of the block size) to the vec_dot type
 * (F32 is a copy).  Bytes written: gguf_row_size(vtype, n). */
void cpu_quantize_act(enum gguf_dtype vtype, const float *x, void *y, int64_t n);
/* Dot product of one weight row (n elements of wtype) with one activation
 * row already in cpu_vec_dot_type(wtype).  SIMD where available. */
float cpu_vec_dot(enum gguf_dtype wtype, int64_t n, const void *wrow, const void *act);

// ---- matrix multiplication (matmul.c)

/* Scratch bytes cpu_matmul needs for T activation rows of length K. */
size_t cpu_matmul_scratch_size(enum gguf_dtype wtype, int64_t K, int T);
/* y[t][r] = dot(row r of W, x[t]) for t < T, r < N = w->ne[1];
 * x: [T][K] f32 (K = w->ne[0]); y: [T][ldy] f32, ldy >= N.
 * Activations are converted once into scratch; rows of W are split over the
 * pool's threads, each weight block reused for every activation row while
 * it is in cache (most of the time of a forward pass is spent here). */
void cpu_matmul(struct cpu_pool *pool, const struct eng_tensor *w, const float *x, int T,
                float *y, int ldy, void *scratch);

#endif /* PROMPTFS_ENGINE_CPU_H */
