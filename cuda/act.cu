/*
 * act.cu — element-wise ops of the prefill path: SwiGLU (silu(gate) * up)
 * and bias adds.  In decode these are fused into the mat-vec epilogues
 * (mmvq.cu) or the RoPE pass (rope.cu).
 */
#include "cuda_ops.h"
#include "common.cuh"

static __global__ void swiglu_kernel(const float *g, const float *u, int ld, int T, int F, float *y,
                                     int ldy)
{
	pdl_enter();
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)T * F)
		return;
	int t = (int)(i / F), f = (int)(i % F);
	float a = g[(size_t)t * ld + f], b = u[(size_t)t * ld + f];
	y[(size_t)t * ldy + f] = a / (1.0f + __expf(-a)) * b;
}

extern "C" int cuda_swiglu(const float *g, const float *u, int ld, int T, int F, float *y, int ldy,
                           cudaStream_t st)
{
	size_t n = (size_t)T * F;
	if (n == 0)
		return 0;
	launch_k(swiglu_kernel, (unsigned)((n + 255) / 256), 256, 0, st, g, u, ld, T, F, y, ldy);
	CUDA_CHECK_LAUNCH();
	return 0;
}

static __global__ void add_bias_kernel(float *y, int ldy, int T, int N, const float *b)
{
	pdl_enter();
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)T * N)
		return;
	int t = (int)(i / N), n = (int)(i % N);
	y[(size_t)t * ldy + n] += b[n];
}

extern "C" int cuda_add_bias(float *y, int ldy, int T, int N, const float *b, cudaStream_t st)
{
	size_t n = (size_t)T * N;
	if (n == 0)
		return 0;
	launch_k(add_bias_kernel, (unsigned)((n + 255) / 256), 256, 0, st, y, ldy, T, N, b);
	CUDA_CHECK_LAUNCH();
	return 0;
}
