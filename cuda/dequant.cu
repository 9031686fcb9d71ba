/*
 * dequant.cu — weights out of their GGUF type: the embedding lookup (rows
 * to f32), dequantisation of a block of rows to F16 for the prefill GEMM,
 * and the f32 → F16/BF16 conversion of GEMM inputs.  All quantised types go
 * through the block traits of quant.cuh.
 */
#include "cuda_ops.h"
#include "quant.cuh"

// ---- embedding rows

/* Quantised: one warp per 32-group (lane = element; the group's bytes are
 * read once per warp and broadcast).  grid (cdiv(K/32, 4), T), block 128. */
template <int TYPE>
static __global__ void get_rows_q_kernel(const uint8_t *W, size_t row_bytes, int K,
                                         const int32_t *ids, float *y, int ldy)
{
	pdl_enter();
	int g = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, t = blockIdx.y;
	if (g >= K / Q8_BLOCK)
		return;
	wgroup w;
	wq<TYPE>::load(W + (size_t)ids[t] * row_bytes, g, w);
	int lane = threadIdx.x % WARP;
	y[(size_t)t * ldy + g * Q8_BLOCK + lane] = group_elem<TYPE>(w, lane);
}

/* Float types: grid (cdiv(K, 256), T), block 256. */
template <int TYPE>
static __global__ void get_rows_f_kernel(const void *W, int K, const int32_t *ids, float *y, int ldy)
{
	pdl_enter();
	int e = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
	if (e < K)
		y[(size_t)t * ldy + e] = ld_float_weight<TYPE>(W, (size_t)ids[t] * K + e);
}

extern "C" int cuda_get_rows(const struct cuda_mat *w, const int32_t *ids, int T, float *y, int ldy,
                             cudaStream_t st)
{
	if (T <= 0)
		return 0;
	switch (w->type) {
#define X(t)                                                                                \
	case t:                                                                             \
		launch_k(get_rows_q_kernel<t>, dim3(cdiv(w->K / Q8_BLOCK, 4), T), 128, 0, st,     \
			(const uint8_t *)w->d, w->row_bytes, w->K, ids, y, ldy);            \
		break;
		CUDA_QUANT_TYPES(X)
#undef X
#define F(t)                                                                                           \
	case t:                                                                                        \
		launch_k(get_rows_f_kernel<t>, dim3(cdiv(w->K, 256), T), 256, 0, st, w->d, w->K, ids, y, ldy); \
		break;
		F(GGUF_DTYPE_F32) F(GGUF_DTYPE_F16) F(GGUF_DTYPE_BF16)
#undef F
	default:
		LOG_ERR("no row lookup for type %s", gguf_dtype_name(w->type));
		return -EINVAL;
	}
	CUDA_CHECK_LAUNCH();
	return 0;
}

// ---- dequantisation to F16

/* One thread per 32-group; y rows are K halves.  grid cdiv(nr*K/32, 256). */
template <int TYPE>
static __global__ void dequant_q_kernel(const uint8_t *W, size_t row_bytes, int K, int nr,
                                        __half *y)
{
	pdl_enter();
	const int ng = K / Q8_BLOCK;
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)nr * ng)
		return;
	int r = (int)(i / ng), g = (int)(i % ng);
	wgroup w;
	wq<TYPE>::load(W + (size_t)r * row_bytes, g, w);
	uint4 out[4];
	__half2 *h = (__half2 *)out;
#pragma unroll
	for (int e = 0; e < 32; e += 2)
		h[e / 2] = __floats2half2_rn(group_elem<TYPE>(w, e), group_elem<TYPE>(w, e + 1));
	uint4 *dst = (uint4 *)(y + (size_t)r * K + g * Q8_BLOCK);
#pragma unroll
	for (int k = 0; k < 4; k++)
		dst[k] = out[k];
}

template <int TYPE>
static __global__ void dequant_f_kernel(const void *W, size_t n, __half *y)
{
	pdl_enter();
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] = __float2half_rn(ld_float_weight<TYPE>(W, i));
}

extern "C" int cuda_dequant_f16(const struct cuda_mat *w, int r0, int nr, void *y, cudaStream_t st)
{
	if (nr <= 0)
		return 0;
	size_t n = (size_t)nr * w->K;
	const uint8_t *W = (const uint8_t *)w->d + (size_t)r0 * w->row_bytes;
	switch (w->type) {
#define X(t)                                                                                  \
	case t:                                                                               \
		launch_k(dequant_q_kernel<t>, (unsigned)((n / Q8_BLOCK + 255) / 256), 256, 0, st,   \
			W, w->row_bytes, w->K, nr, (__half *)y);                              \
		break;
		CUDA_QUANT_TYPES(X)
#undef X
#define F(t)                                                                                       \
	case t:                                                                                    \
		launch_k(dequant_f_kernel<t>, (unsigned)((n + 255) / 256), 256, 0, st, W, n, (__half *)y); \
		break;
		F(GGUF_DTYPE_F32) F(GGUF_DTYPE_F16) F(GGUF_DTYPE_BF16)
#undef F
	default:
		LOG_ERR("no dequantiser for type %s", gguf_dtype_name(w->type));
		return -EINVAL;
	}
	CUDA_CHECK_LAUNCH();
	return 0;
}

// ---- f32 → F16 / BF16

static __global__ void f32_to_half_kernel(const float *x, int ldx, int T, int K, void *y, bool bf16)
{
	pdl_enter();
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)T * K)
		return;
	int t = (int)(i / K), k = (int)(i % K);
	float v = x[(size_t)t * ldx + k];
	if (bf16)
		((__nv_bfloat16 *)y)[i] = __float2bfloat16_rn(v);
	else
		((__half *)y)[i] = __float2half_rn(v);
}

extern "C" int cuda_f32_to_f16(const float *x, int ldx, int T, int K, void *y, bool bf16,
                               cudaStream_t st)
{
	size_t n = (size_t)T * K;
	if (n == 0)
		return 0;
	launch_k(f32_to_half_kernel, (unsigned)((n + 255) / 256), 256, 0, st, x, ldx, T, K, y, bf16);
	CUDA_CHECK_LAUNCH();
	return 0;
}
