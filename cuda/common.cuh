/*
 * common.cuh — what every .cu file of the CUDA backend shares: the CHECK
 * macros (error tier b of style.md: the failing statement, file and line
 * go to the log and the caller gets -EIO), warp reductions, half/bfloat16
 * loads, and the q8 activation format.
 *
 * Shape letters: see engine/model.h (V C L H G D F T S P).
 *
 * ---- q8 activations ----
 * Activations that meet a quantised weight are quantised once per matrix
 * input to blocks of 32: qs int8 [ncols][K] and ds float2 [ncols][K/32]
 * with ds = (d, d * sum(qs)), q = round(x / d), d = amax / 127 (llama.cpp's
 * q8_1, with float scales since the format never leaves the device).
 */
#ifndef PROMPTFS_CUDA_COMMON_CUH
#define PROMPTFS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <stdint.h>

#include "../gguf/log.h"

#define CUDA_CHECK(stmt)                                                                      \
	do {                                                                                  \
		cudaError_t err_ = (stmt);                                                    \
		if (err_ != cudaSuccess) {                                                    \
			pf_log(PF_LOG_LEVEL_ERROR, __func__, "CUDA error %s (%s) in %s at %s:%d", \
			       cudaGetErrorName(err_), cudaGetErrorString(err_), #stmt, __FILE__, \
			       __LINE__);                                                     \
			return -EIO;                                                          \
		}                                                                             \
	} while (0)

/* For launchers: checks the launch itself (bad grid, missing kernel image). */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

/* Propagates a launcher's -errno. */
#define TRY(stmt)                      \
	do {                           \
		int rc_ = (stmt);      \
		if (rc_ != 0)          \
			return rc_;    \
	} while (0)

#define WARP 32
#define Q8_BLOCK 32

static __host__ __device__ __forceinline__ int cdiv(int a, int b) { return (a + b - 1) / b; }

// ---- device helpers

static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

static __device__ __forceinline__ int warp_sum_int(int v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* Sum over a block of up to 1024 threads; every thread gets the result.
 * red: __shared__ float[32]. */
static __device__ __forceinline__ float block_sum(float v, float *red)
{
	int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = (blockDim.x + WARP - 1) / WARP;
	v = warp_sum(v);
	__syncthreads();
	if (lane == 0)
		red[w] = v;
	__syncthreads();
	v = lane < nw ? red[lane] : 0.0f;
	return warp_sum(v);
}

static __device__ __forceinline__ float ld_half(const void *p)
{
	return __half2float(*(const __half *)p);
}

/* 4 bytes from an address aligned to 2 (most 32-blocks) or 4. */
static __device__ __forceinline__ int ld_b2(const void *p, int i)
{
	const uint16_t *x = (const uint16_t *)p;
	return (int)((uint32_t)x[2 * i] | ((uint32_t)x[2 * i + 1] << 16));
}

static __device__ __forceinline__ int ld_b4(const void *p, int i)
{
	return ((const int *)p)[i];
}

/* Quantises 32 consecutive values held one per lane (lane = element) to a q8
 * block: qs[lane] and, from lane 0, ds = (d, d * sum(q)). */
static __device__ __forceinline__ void quant_group_warp(float v, int8_t *qs, float2 *ds)
{
	int lane = threadIdx.x % WARP;
	float amax = warp_max(fabsf(v));
	float d = amax / 127.0f;
	float id = d != 0.0f ? 1.0f / d : 0.0f;
	int q = __float2int_rn(v * id);
	qs[lane] = (int8_t)q;
	int sum = warp_sum_int(q);
	if (lane == 0)
		*ds = make_float2(d, d * (float)sum);
}

#endif /* PROMPTFS_CUDA_COMMON_CUH */
