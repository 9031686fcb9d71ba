/*
 * mmvq.cu — decode's matrix-vector products: y = W x for up to
 * CUDA_MMV_MAX_COLS activation columns, W in its GGUF type.
 *
 * Quantised W (llama.cpp's mmvq idea): the activation is quantised once to
 * q8 blocks of 32 (cuda_quantize_q8, or fused into the norm), then each warp
 * computes one row: lane i takes groups i, i+32, … of the row, unpacks the
 * weight ints through the block traits (quant.cuh) and multiplies them with
 * __dp4a; one weight load serves every column.  Reading the weights is all
 * the time of a decode step (bytes/token ≈ weight bytes), so the loads are
 * coalesced across the warp (consecutive lanes, consecutive groups).
 *
 * Float W (F32/F16/BF16): same shape of kernel, f32 activations, 4-wide
 * loads where the row length allows.
 *
 * Epilogues: add (residual: y += W x, one writer per element, no race) and
 * GLU (act(gate) * up from two matrices in one pass; act SiLU or GELU).
 */
#include <stdlib.h>

#include "cuda_ops.h"
#include "quant.cuh"

#define MMV_WARPS 4 /* rows per block, one per warp */

// ---- q8 quantisation of activations

/* One warp per 32-group: grid (ceil(K/32 / 4), ncols), block 128. */
static __global__ void quantize_q8_kernel(const float *x, int ldx, int K, int8_t *qs, float2 *ds)
{
	pdl_enter();
	int g = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
	int c = blockIdx.y, ng = K / Q8_BLOCK;
	if (g >= ng)
		return;
	float v = x[(size_t)c * ldx + g * Q8_BLOCK + threadIdx.x % WARP];
	quant_group_warp(v, qs + (size_t)c * K + g * Q8_BLOCK, ds + (size_t)c * ng + g);
}

extern "C" int cuda_quantize_q8(const float *x, int ldx, int K, int ncols, int8_t *qs, void *ds,
                                cudaStream_t st)
{
	int ng = K / Q8_BLOCK;
	if (K % Q8_BLOCK || ncols <= 0) {
		LOG_ERR("bad shape K=%d ncols=%d", K, ncols);
		return -EINVAL;
	}
	dim3 grid(cdiv(ng, 4), ncols);
	launch_k(quantize_q8_kernel, grid, 128, 0, st, x, ldx, K, qs, (float2 *)ds);
	CUDA_CHECK_LAUNCH();
	return 0;
}

// ---- quantised weights

/* WR warps per row (1, or 4 for long rows: the groups of a row are spread
 * over more loads in flight), MMV_WARPS / WR rows per block. */
template <int TYPE, int NC, bool GLU, int WR>
static __global__ void __launch_bounds__(MMV_WARPS *WARP)
mmvq_kernel(const uint8_t *__restrict__ W, const uint8_t *__restrict__ W2, size_t row_bytes, int K,
            int N, const int8_t *__restrict__ qs, const float2 *__restrict__ ds, float *y, int ldy,
            int add, int act)
{
	__shared__ float red[MMV_WARPS][2][NC];
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const int row = blockIdx.x * (MMV_WARPS / WR) + warp / WR, part = warp % WR;
	{
		/* the block's rows do not depend on the previous kernel: to L2 first */
		const int r0 = blockIdx.x * (MMV_WARPS / WR), nr = min(MMV_WARPS / WR, N - r0);
		prefetch_l2(W + (size_t)r0 * row_bytes, (size_t)nr * row_bytes);
		if (GLU)
			prefetch_l2(W2 + (size_t)r0 * row_bytes, (size_t)nr * row_bytes);
	}
	pdl_enter();
	if (row >= N)
		return;
	/* the residual's old values, requested before the dot products (not
	 * one more round trip after them) */
	float old[NC];
#pragma unroll
	for (int c = 0; c < NC; c++)
		old[c] = add == 2 && lane == 0 && part == 0 ? y[(size_t)c * ldy + row] : 0.0f;
	const int ng = K / Q8_BLOCK;
	const uint8_t *wr = W + (size_t)row * row_bytes;
	const uint8_t *wr2 = GLU ? W2 + (size_t)row * row_bytes : nullptr;
	float acc[NC], acc2[NC];
#pragma unroll
	for (int c = 0; c < NC; c++)
		acc[c] = acc2[c] = 0.0f;

#pragma unroll 2 /* long rows: the second round's loads go out with the first's */
	for (int g = part * WARP + lane; g < ng; g += WARP * WR) {
		wgroup w, w2;
		wq<TYPE>::load(wr, g, w);
		if (GLU)
			wq<TYPE>::load(wr2, g, w2);
#pragma unroll
		for (int c = 0; c < NC; c++) {
			const int4 *ap = (const int4 *)(qs + (size_t)c * K + (size_t)g * Q8_BLOCK);
			int4 a0 = __ldg(ap), a1 = __ldg(ap + 1);
			int a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
			float2 d = __ldg(ds + (size_t)c * ng + g);
			acc[c] += dot_group<TYPE>(w, a, d);
			if (GLU)
				acc2[c] += dot_group<TYPE>(w2, a, d);
		}
	}
#pragma unroll
	for (int c = 0; c < NC; c++) {
		acc[c] = warp_sum(acc[c]);
		acc2[c] = GLU ? warp_sum(acc2[c]) : 0.0f;
	}
	if (WR > 1) {
		/* every warp of the block reaches here (rows are whole per block) */
		if (lane == 0)
#pragma unroll
			for (int c = 0; c < NC; c++) {
				red[warp][0][c] = acc[c];
				red[warp][1][c] = acc2[c];
			}
		__syncthreads();
		if (part != 0)
			return;
#pragma unroll
		for (int c = 0; c < NC; c++)
			for (int p = 1; p < WR; p++) {
				acc[c] += red[warp + p][0][c];
				acc2[c] += red[warp + p][1][c];
			}
	}
	if (lane == 0)
#pragma unroll
		for (int c = 0; c < NC; c++) {
			float v = GLU ? glu_act(act, acc[c], acc2[c]) : acc[c];
			float *o = y + (size_t)c * ldy + row;
			*o = add ? (add == 2 ? old[c] : *o) + v : v;
		}
}

// ---- float weights

template <int TYPE, int NC, bool GLU, bool VEC>
static __global__ void __launch_bounds__(MMV_WARPS *WARP)
mmvf_kernel(const void *__restrict__ W, const void *__restrict__ W2, int K, int N,
            const float *__restrict__ x, int ldx, float *y, int ldy, int add, int act)
{
	pdl_enter();
	const int row = blockIdx.x * MMV_WARPS + threadIdx.x / WARP;
	const int lane = threadIdx.x % WARP;
	if (row >= N)
		return;
	float old[NC]; /* the residual's old values, requested first */
#pragma unroll
	for (int c = 0; c < NC; c++)
		old[c] = add == 2 && lane == 0 ? y[(size_t)c * ldy + row] : 0.0f;
	const size_t base = (size_t)row * K;
	float acc[NC], acc2[NC];
#pragma unroll
	for (int c = 0; c < NC; c++)
		acc[c] = acc2[c] = 0.0f;
	if (VEC) {
		for (int e = 4 * lane; e < K; e += 4 * WARP) {
			float4 w = ldw4<TYPE>(W, base + e), w2;
			if (GLU)
				w2 = ldw4<TYPE>(W2, base + e);
#pragma unroll
			for (int c = 0; c < NC; c++) {
				float4 v = __ldg((const float4 *)(x + (size_t)c * ldx + e));
				acc[c] += w.x * v.x + w.y * v.y + w.z * v.z + w.w * v.w;
				if (GLU)
					acc2[c] += w2.x * v.x + w2.y * v.y + w2.z * v.z + w2.w * v.w;
			}
		}
	} else {
		for (int e = lane; e < K; e += WARP) {
			float w = ld_float_weight<TYPE>(W, base + e), w2 = GLU ? ld_float_weight<TYPE>(W2, base + e) : 0.0f;
#pragma unroll
			for (int c = 0; c < NC; c++) {
				float v = x[(size_t)c * ldx + e];
				acc[c] += w * v;
				if (GLU)
					acc2[c] += w2 * v;
			}
		}
	}
#pragma unroll
	for (int c = 0; c < NC; c++) {
		float s = warp_sum(acc[c]);
		float u = GLU ? warp_sum(acc2[c]) : 0.0f;
		if (lane == 0) {
			float v = GLU ? glu_act(act, s, u) : s;
			float *o = y + (size_t)c * ldy + row;
			*o = add ? (add == 2 ? old[c] : *o) + v : v;
		}
	}
}

// ---- dispatch

template <int TYPE, bool GLU, int WR>
static void launch_qw(const struct cuda_mat *w, const struct cuda_mat *w2, const struct cuda_act *a,
                      int nc, float *y, int ldy, int add, int act, cudaStream_t st)
{
	dim3 grid(cdiv(w->N, MMV_WARPS / WR)), block(MMV_WARPS * WARP);
	const uint8_t *W = (const uint8_t *)w->d, *W2 = w2 ? (const uint8_t *)w2->d : nullptr;
	const float2 *ds = (const float2 *)a->ds;
#define L(n)                                                                                      \
	case n:                                                                                   \
		launch_k(mmvq_kernel<TYPE, n, GLU, WR>, grid, block, 0, st, W, W2, w->row_bytes, w->K, w->N, \
		                                                      a->qs, ds, y, ldy, add, act); \
		break;
	switch (nc) {
		L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8)
	}
#undef L
}

/* Rows of 128 groups and more (K >= 4096) get four warps each. */
template <int TYPE, bool GLU>
static void launch_q(const struct cuda_mat *w, const struct cuda_mat *w2, const struct cuda_act *a,
                     int nc, float *y, int ldy, int add, int act, cudaStream_t st)
{
	if (w->K / Q8_BLOCK >= 128 && !GLU)
		launch_qw<TYPE, GLU, 4>(w, w2, a, nc, y, ldy, add, act, st);
	else
		launch_qw<TYPE, GLU, 1>(w, w2, a, nc, y, ldy, add, act, st);
}

template <int TYPE, bool GLU, bool VEC>
static void launch_f(const struct cuda_mat *w, const struct cuda_mat *w2, const struct cuda_act *a,
                     int nc, float *y, int ldy, int add, int act, cudaStream_t st)
{
	dim3 grid(cdiv(w->N, MMV_WARPS)), block(MMV_WARPS * WARP);
	const void *W2 = w2 ? w2->d : nullptr;
#define L(n)                                                                                  \
	case n:                                                                               \
		launch_k(mmvf_kernel<TYPE, n, GLU, VEC>, grid, block, 0, st, w->d, W2, w->K, w->N, a->x, \
		                                                       a->ldx, y, ldy, add, act); \
		break;
	switch (nc) {
		L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8)
	}
#undef L
}

template <bool GLU>
static int matvec_any(const struct cuda_mat *w, const struct cuda_mat *w2, const struct cuda_act *a,
                      int nc, float *y, int ldy, bool add, int act, cudaStream_t st)
{
	if (nc < 1 || nc > CUDA_MMV_MAX_COLS) {
		LOG_ERR("ncols %d out of range 1..%d", nc, CUDA_MMV_MAX_COLS);
		return -EINVAL;
	}
	bool vec = w->K % 4 == 0 && a->ldx % 4 == 0 && ((uintptr_t)a->x % 16) == 0;
	/* the kernels' add: 0 none, 1 read the old value after the dot products,
	 * 2 request it first (PROMPTFS_CUDA_NO_EARLY_RES=1: 1, for A/B) */
	static int early = -1;
	if (early < 0) {
		const char *e = getenv("PROMPTFS_CUDA_NO_EARLY_RES");
		early = !(e && *e && *e != '0');
	}
	const int addm = add ? 1 + early : 0;
	switch (w->type) {
#define X(t)                                                            \
	case t:                                                         \
		launch_q<t, GLU>(w, w2, a, nc, y, ldy, addm, act, st);   \
		break;
		CUDA_QUANT_TYPES(X)
#undef X
#define F(t)                                                                    \
	case t:                                                                 \
		if (vec)                                                        \
			launch_f<t, GLU, true>(w, w2, a, nc, y, ldy, addm, act, st);  \
		else                                                                 \
			launch_f<t, GLU, false>(w, w2, a, nc, y, ldy, addm, act, st); \
		break;
		F(GGUF_DTYPE_F32) F(GGUF_DTYPE_F16) F(GGUF_DTYPE_BF16)
#undef F
	default:
		LOG_ERR("no mat-vec kernel for type %s", gguf_dtype_name(w->type));
		return -EINVAL;
	}
	CUDA_CHECK_LAUNCH();
	return 0;
}

extern "C" bool cuda_matvec_supported(int type)
{
	return cuda_type_is_quant(type) || cuda_type_is_float(type);
}

extern "C" int cuda_matvec(const struct cuda_mat *w, const struct cuda_act *a, int ncols, float *y,
                           int ldy, bool add, cudaStream_t st)
{
	return matvec_any<false>(w, nullptr, a, ncols, y, ldy, add, CUDA_GLU_SILU, st);
}

extern "C" int cuda_matvec_glu(const struct cuda_mat *gate, const struct cuda_mat *up,
                               const struct cuda_act *a, int ncols, float *y, int ldy, int act,
                               cudaStream_t st)
{
	if (gate->type != up->type || gate->K != up->K || gate->N != up->N ||
	    gate->row_bytes != up->row_bytes) {
		LOG_ERR("gate (%s) and up (%s) differ", gguf_dtype_name(gate->type),
		        gguf_dtype_name(up->type));
		return -EINVAL;
	}
	return matvec_any<true>(gate, up, a, ncols, y, ldy, false, act, st);
}
