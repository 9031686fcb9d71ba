/*
 * rope.cu — everything between the Q/K/V projections and attention, in one
 * pass over the qkv buffer: bias add (qwen2), per-head Q/K RMSNorm (qwen3),
 * rotary embedding (NORM: pairs (2i, 2i+1); NEOX: pairs (i, i + n_rot/2);
 * theta = pos * base^(-2i/n_rot), dims >= n_rot untouched), then K and V
 * rounded to F16 into their KV pages and Q written back in place (f32).
 *
 * One warp per head (Q heads, then K heads, then V heads), the head vector
 * staged in shared memory so any D and n_rot work.  The angle is computed in
 * double: fast-math sinf is inaccurate for the large arguments of long
 * contexts (pos * 1 rad at pos 4096).
 */
#include "cuda_ops.h"
#include "common.cuh"
#include "../engine/backend.h"

#define ROPE_WARPS 4

static __global__ void __launch_bounds__(ROPE_WARPS *WARP) rope_store_kernel(struct cuda_rope_args a)
{
	__shared__ float sh[ROPE_WARPS][CUDA_ATTN_MAX_D];
	const int t = blockIdx.x, w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const int hh = blockIdx.y * ROPE_WARPS + w; /* 0..H+2G-1 */
	const int H = a.H, G = a.G, D = a.D;
	if (hh >= H + 2 * G)
		return;
	const bool is_q = hh < H, is_k = !is_q && hh < H + G;
	float *v = a.qkv + (size_t)t * a.ld + (size_t)hh * D;
	float *s = sh[w];
	const float *bias = is_q ? a.bq : is_k ? a.bk : a.bv;
	const int bh = is_q ? hh : is_k ? hh - H : hh - H - G; /* head within its kind */
	for (int d = lane; d < D; d += WARP)
		s[d] = v[d] + (bias ? bias[bh * D + d] : 0.0f);
	__syncwarp();
	const float *nw = is_q ? a.q_norm : is_k ? a.k_norm : nullptr;
	if (nw) {
		float ss = 0.0f;
		for (int d = lane; d < D; d += WARP)
			ss += s[d] * s[d];
		ss = warp_sum(ss);
		float sc = rsqrtf(ss / (float)D + a.eps);
		for (int d = lane; d < D; d += WARP)
			s[d] = s[d] * sc * nw[d];
		__syncwarp();
	}
	const int pos = a.pos[t];
	if (is_q || is_k) {
		const int half = a.n_rot / 2;
		for (int i = lane; i < half; i += WARP) {
			int i0 = a.neox ? i : 2 * i, i1 = a.neox ? i + half : 2 * i + 1;
			double th = (double)pos * pow((double)a.base, -2.0 * i / (double)a.n_rot);
			double sn, cs;
			sincos(th, &sn, &cs);
			float x0 = s[i0], x1 = s[i1];
			s[i0] = x0 * (float)cs - x1 * (float)sn;
			s[i1] = x0 * (float)sn + x1 * (float)cs;
		}
		__syncwarp();
	}
	if (is_q) {
		for (int d = lane; d < D; d += WARP)
			v[d] = s[d];
		return;
	}
	const int seq = a.tok_seq[t];
	const int page = a.pages[(size_t)seq * a.page_stride + pos / ENG_KV_PAGE];
	__half *pool = (__half *)(is_k ? a.k_pool : a.v_pool);
	__half *dst = pool + cuda_kv_offset(page, bh, pos % ENG_KV_PAGE, G, D) / 2;
	for (int d = lane; d < D; d += WARP)
		dst[d] = __float2half_rn(s[d]);
}

extern "C" int cuda_rope_store(const struct cuda_rope_args *a, cudaStream_t st)
{
	if (a->T <= 0)
		return 0;
	if (a->D > CUDA_ATTN_MAX_D || a->n_rot > a->D || a->n_rot % 2) {
		LOG_ERR("unsupported head dim %d / n_rot %d", a->D, a->n_rot);
		return -EINVAL;
	}
	dim3 grid(a->T, cdiv(a->H + 2 * a->G, ROPE_WARPS));
	rope_store_kernel<<<grid, ROPE_WARPS * WARP, 0, st>>>(*a);
	CUDA_CHECK_LAUNCH();
	return 0;
}
