/*
 * norm.cu — RMSNorm, fused with the q8 quantisation of its output for the
 * next mat-vec (one pass instead of two in decode), and with a row gather
 * (the final norm runs only on the rows whose logits are wanted); and the
 * post-norm + residual add of gemma's blocks.
 *   y = x / sqrt(mean(x^2) + eps) * w
 */
#include "cuda_ops.h"
#include "quant.cuh"

#define NORM_THREADS 256

static __global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_kernel(const float *x, int ldx, const int32_t *rows, int C, const float *w, float eps,
               float *y, int ldy, int8_t *qs, float2 *ds)
{
	pdl_enter();
	__shared__ float red[32];
	const int r = blockIdx.x;
	const float *in = x + (size_t)(rows ? rows[r] : r) * ldx;
	float *out = y + (size_t)r * ldy;
	float ss = 0.0f;
	for (int e = threadIdx.x; e < C; e += blockDim.x)
		ss += in[e] * in[e];
	ss = block_sum(ss, red);
	const float scale = rsqrtf(ss / (float)C + eps);
	if (qs) {
		/* warp per 32-group, lane = element: quantise as we write */
		const int lane = threadIdx.x % WARP, nw = blockDim.x / WARP, ng = C / Q8_BLOCK;
		for (int g = threadIdx.x / WARP; g < ng; g += nw) {
			int e = g * Q8_BLOCK + lane;
			float v = in[e] * scale * w[e];
			out[e] = v;
			quant_group_warp(v, qs + (size_t)r * C + g * Q8_BLOCK, ds + (size_t)r * ng + g);
		}
	} else {
		for (int e = threadIdx.x; e < C; e += blockDim.x)
			out[e] = in[e] * scale * w[e];
	}
}

extern "C" int cuda_rmsnorm(const float *x, int ldx, const int32_t *rows, int n, int C,
                            const float *w, float eps, float *y, int ldy, int8_t *qs, void *ds,
                            cudaStream_t st)
{
	if (n <= 0)
		return 0;
	if (qs && C % Q8_BLOCK) {
		LOG_ERR("q8 output needs C %% 32 == 0 (C=%d)", C);
		return -EINVAL;
	}
	launch_k(rmsnorm_kernel, n, NORM_THREADS, 0, st, x, ldx, rows, C, w, eps, y, ldy, qs, (float2 *)ds);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* x[r] += y[r] / rms(y[r]) * w: one block per row */
static __global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_add_kernel(float *x, int ldx, const float *y, int ldy, int C, const float *w, float eps)
{
	pdl_enter();
	__shared__ float red[32];
	const int r = blockIdx.x;
	const float *in = y + (size_t)r * ldy;
	float *out = x + (size_t)r * ldx;
	float ss = 0.0f;
	for (int e = threadIdx.x; e < C; e += blockDim.x)
		ss += in[e] * in[e];
	ss = block_sum(ss, red);
	const float scale = rsqrtf(ss / (float)C + eps);
	for (int e = threadIdx.x; e < C; e += blockDim.x)
		out[e] += in[e] * scale * w[e];
}

extern "C" int cuda_rmsnorm_add(float *x, int ldx, const float *y, int ldy, int T, int C,
                                const float *w, float eps, cudaStream_t st)
{
	if (T <= 0)
		return 0;
	launch_k(rmsnorm_add_kernel, T, NORM_THREADS, 0, st, x, ldx, y, ldy, C, w, eps);
	CUDA_CHECK_LAUNCH();
	return 0;
}
