/*
 * rope.cu — the pass between the Q/K/V projections and attention in
 * prefill: bias add (qwen2), per-head Q/K RMSNorm (qwen3) and the rotary
 * embedding (rope.cuh) for every head of every token, then K and V rounded
 * to F16 into their KV pages and Q written back in place (f32).  Decode
 * does the same inside the attention kernel (attn.cu) or the QKV mat-vec's
 * epilogue (mmvq_fused.cu).  The angles are the layer's (a.freq: gemma's
 * sliding-window layers have their own base).
 *
 * One warp per head (Q heads, then K heads, then V heads).
 */
#include "cuda_ops.h"
#include "rope.cuh"
#include "../engine/backend.h"

#define ROPE_WARPS 4

static __global__ void __launch_bounds__(ROPE_WARPS *WARP) rope_store_kernel(struct cuda_rope_args a)
{
	pdl_enter();
	__shared__ float sh[ROPE_WARPS][CUDA_ATTN_MAX_D];
	const int t = blockIdx.x, w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const int hh = blockIdx.y * ROPE_WARPS + w; /* 0..H+2G-1 */
	const int H = a.H, G = a.G, D = a.D;
	if (hh >= H + 2 * G)
		return;
	const bool is_q = hh < H, is_k = !is_q && hh < H + G;
	const int bh = is_q ? hh : is_k ? hh - H : hh - H - G; /* head within its kind */
	const float *bias = is_q ? a.bq : is_k ? a.bk : a.bv;
	float *v = a.qkv + (size_t)t * a.ld + (size_t)hh * D;
	float *s = sh[w];
	const int pos = a.pos[t];
	head_prep(s, v, bias ? bias + bh * D : nullptr, is_q ? a.q_norm : is_k ? a.k_norm : nullptr,
	          a.eps, D, is_q || is_k, pos, a.n_rot, a.neox, a.freq);
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

/* cs[t][i] = (cos, sin) of pair i at pos[t]: grid T, block n_rot / 2 */
static __global__ void rope_table_kernel(const int32_t *pos, int n_rot, struct cuda_rope_freq f,
                                         float2 *cs)
{
	pdl_enter();
	cs[blockIdx.x * (n_rot / 2) + threadIdx.x] = rope_cs(pos[blockIdx.x], threadIdx.x, n_rot, f);
}

extern "C" int cuda_rope_table(const int32_t *pos, int T, int n_rot, const struct cuda_rope_freq *f,
                               void *cs, cudaStream_t st)
{
	if (T <= 0)
		return 0;
	if (n_rot < 2 || n_rot % 2 || n_rot / 2 > 1024) {
		LOG_ERR("unsupported n_rot %d", n_rot);
		return -EINVAL;
	}
	launch_k(rope_table_kernel, T, n_rot / 2, 0, st, pos, n_rot, *f, (float2 *)cs);
	CUDA_CHECK_LAUNCH();
	return 0;
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
	launch_k(rope_store_kernel, grid, ROPE_WARPS * WARP, 0, st, *a);
	CUDA_CHECK_LAUNCH();
	return 0;
}
