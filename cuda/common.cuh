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

#include <utility>

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

// ---- launches: programmatic dependent launch (PDL, Hopper)
//
// Every kernel is launched with programmatic stream serialisation allowed:
// it may start while its predecessor in the stream is still running, does
// only independent work first (prefetching its weights into L2), then waits
// in pdl_wait() until the predecessor has completed and its writes are
// visible, and then lets its own successor launch (pdl_trigger()).  Every
// kernel calls pdl_wait() on every path before it exits, so completion stays
// transitive down the stream.  PROMPTFS_CUDA_NO_PDL=1 launches plainly
// (the device instructions are then no-ops).

/* backend.cu: true while this thread records a decode graph (PDL only pays
 * off there: eager launches with the attribute cost more host time) and the
 * environment does not say PROMPTFS_CUDA_NO_PDL=1. */
bool cuda_pdl_enabled(void);
void cuda_pdl_capture(bool on);
/* Shared-memory carve-out (percent) asked for every launch, -1 for the
 * driver's choice: PROMPTFS_CUDA_CARVEOUT, default 50 (backend.cu). */
int cuda_carveout(void);

/* cluster: thread-block cluster dimensions, or 0 x 0 x 0 for none. */
template <typename... P, typename... A>
static inline cudaError_t launch_kc(void (*k)(P...), dim3 grid, dim3 block, size_t smem,
                                    cudaStream_t st, dim3 cluster, A &&...args)
{
	cudaLaunchAttribute at[3];
	int n = 0;
	if (cluster.x) {
		at[n].id = cudaLaunchAttributeClusterDimension;
		at[n].val.clusterDim.x = cluster.x;
		at[n].val.clusterDim.y = cluster.y;
		at[n++].val.clusterDim.z = cluster.z;
	}
	if (cuda_carveout() >= 0) {
		/* one shared-memory carve-out for every kernel: no L1/shared
		 * reconfiguration (which drains the SM) between launches */
		at[n].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
		at[n++].val.sharedMemCarveout = (unsigned)cuda_carveout();
	}
	if (cuda_pdl_enabled()) {
		at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
		at[n++].val.programmaticStreamSerializationAllowed = 1;
	}
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = grid;
	cfg.blockDim = block;
	cfg.dynamicSmemBytes = smem;
	cfg.stream = st;
	cfg.attrs = at;
	cfg.numAttrs = n;
	return cudaLaunchKernelEx(&cfg, k, std::forward<A>(args)...);
}

template <typename... P, typename... A>
static inline cudaError_t launch_k(void (*k)(P...), dim3 grid, dim3 block, size_t smem,
                                   cudaStream_t st, A &&...args)
{
	return launch_kc(k, grid, block, smem, st, dim3(0, 0, 0), std::forward<A>(args)...);
}

static __device__ __forceinline__ void pdl_wait(void)
{
	asm volatile("griddepcontrol.wait;" ::: "memory");
}

static __device__ __forceinline__ void pdl_trigger(void)
{
	asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

/* Starts the wait-free part of a kernel: pdl_wait(), then pdl_trigger(). */
static __device__ __forceinline__ void pdl_enter(void)
{
	pdl_wait();
	pdl_trigger();
}

/* Every thread of the block prefetches its share of [p, p + n) into L2. */
static __device__ __forceinline__ void prefetch_l2(const void *p, size_t n)
{
	const char *c = (const char *)p;
	for (size_t off = (size_t)threadIdx.x * 128; off < n; off += (size_t)blockDim.x * 128)
		asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

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

// ---- gated feed-forward activations (enum cuda_glu_act)

static __device__ __forceinline__ float act_silu(float x)
{
	return x / (1.0f + __expf(-x));
}

/* ggml's tanh GELU as the CPU backend evaluates it (engine/cpu/ops.c
 * gelu_ggml: through its F16 table): x rounded to F16, the GELU in f32,
 * rounded to F16 again; |x| >= 10 short-cut to 0 / x. */
static __device__ __forceinline__ float act_gelu(float x)
{
	if (x <= -10.0f)
		return 0.0f;
	if (x >= 10.0f)
		return x;
	const float h = __half2float(__float2half_rn(x));
	const float y = 0.5f * h * (1.0f + tanhf(0.79788456080286535588f * h * (1.0f + 0.044715f * h * h)));
	return __half2float(__float2half_rn(y));
}

/* act(g) * u; act 0 SiLU, 1 GELU (uniform per launch) */
static __device__ __forceinline__ float glu_act(int act, float g, float u)
{
	return (act ? act_gelu(g) : act_silu(g)) * u;
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

/* N consecutive ints from a 2-byte-aligned address: N + 1 aligned 32-bit
 * loads, funnel-shifted (instead of 2N 16-bit loads).  May read up to 4
 * bytes past p + 4N, so weight buffers carry slack at their end. */
template <int N>
static __device__ __forceinline__ void ld_ints_b2(const void *p, int *out)
{
	const uintptr_t a = (uintptr_t)p;
	const uint32_t *w = (const uint32_t *)(a & ~(uintptr_t)3);
	const uint32_t sh = (uint32_t)(a & 2) * 8;
	uint32_t v[N + 1];
#pragma unroll
	for (int i = 0; i <= N; i++)
		v[i] = w[i];
#pragma unroll
	for (int i = 0; i < N; i++)
		out[i] = (int)__funnelshift_r(v[i], v[i + 1], sh);
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
