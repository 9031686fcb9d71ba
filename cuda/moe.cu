/*
 * moe.cu — the mixture-of-experts feed-forward (qwen3moe, Mixtral-style
 * llama): routing, grouping by expert, and the grouped expert products.
 *
 * The CPU backend (engine/cpu/forward.c moe_forward) is the reference:
 * softmax over the router logits, the K best experts per token, their
 * probabilities renormalised; each chosen expert runs its three matrices
 * once over the rows routed to it; the weighted outputs are summed in rank
 * order and added to the residual.  Here:
 *
 *   route   one block: a warp per token (softmax, K rounds of warp argmax),
 *           then the (token, rank) pairs grouped by expert — a warp per
 *           expert counts and places its pairs with ballots, so the order is
 *           deterministic (increasing pair index) and no host sync is needed;
 *   decode  (T <= CUDA_MMV_MAX_COLS) grouped mat-vecs: grid row y is slot y
 *           (an expert, or nothing), each warp one row of that expert's
 *           matrix against every column routed to it (dp4a on q8
 *           activations, quant.cuh's block traits), so one batch reads each
 *           chosen expert's weights once; gate and up in one pass with the
 *           GLU epilogue, down with the routing weight in its epilogue.
 *           Launch shapes depend only on T (graphs stay valid);
 *   prefill (forward.cu) the slot table comes to the host and every used
 *           expert's rows are gathered, multiplied by cuBLAS GEMMs
 *           (gemm.cu), weighted and scattered back.
 *
 * Shape letters: T tokens, E experts, K experts per token, C width, pairs
 * p = t * K + k.
 */
#include "cuda_ops.h"
#include "quant.cuh"

#define ROUTE_THREADS 512
#define ROUTE_PL (CUDA_MOE_MAX_E / WARP) /* router values per lane */
#define MOE_WARPS 4                       /* rows per block, one per warp */

// ---- routing

/* Token t's K choices (warp): sel and wt of its pairs. */
static __device__ void route_token(const struct cuda_moe_route &r, int t)
{
	const int lane = threadIdx.x % WARP, E = r.E, K = r.K;
	const float *lg = r.logits + (size_t)t * r.ld;
	float p[ROUTE_PL], mx = -INFINITY;
#pragma unroll
	for (int i = 0; i < ROUTE_PL; i++) {
		const int e = lane + WARP * i;
		p[i] = e < E ? lg[e] : -INFINITY;
		mx = fmaxf(mx, p[i]);
	}
	mx = warp_max(mx);
	/* as the CPU: e^(l - max) rounded to f32 (exp in double here: the
	 * fast-math expf differs in the last bits, and a near-tie between two
	 * experts would then pick differently), the sum in double */
	double sum = 0.0;
#pragma unroll
	for (int i = 0; i < ROUTE_PL; i++) {
		p[i] = lane + WARP * i < E ? (float)exp((double)(p[i] - mx)) : 0.0f;
		sum += (double)p[i];
	}
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
	const float inv = (float)(1.0 / sum);
#pragma unroll
	for (int i = 0; i < ROUTE_PL; i++)
		p[i] = lane + WARP * i < E ? p[i] * inv : -1.0f; /* -1: never chosen */
	float mine = 0.0f, wsum = 0.0f;
	int mine_e = 0;
	for (int k = 0; k < K; k++) {
		/* the best (largest p, then lowest id) over the lanes */
		float bv = -2.0f;
		int be = 0x7fffffff;
#pragma unroll
		for (int i = 0; i < ROUTE_PL; i++)
			if (p[i] > bv) {
				bv = p[i];
				be = lane + WARP * i;
			}
#pragma unroll
		for (int o = 16; o > 0; o >>= 1) {
			const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
			const int oe = __shfl_xor_sync(0xffffffffu, be, o);
			if (ov > bv || (ov == bv && oe < be)) {
				bv = ov;
				be = oe;
			}
		}
#pragma unroll
		for (int i = 0; i < ROUTE_PL; i++)
			if (lane + WARP * i == be)
				p[i] = -2.0f;
		if (lane == k) {
			mine = bv;
			mine_e = be;
		}
		wsum += bv;
	}
	wsum = fmaxf(wsum, 6.103515625e-5f);
	if (lane < K) {
		r.sel[(size_t)t * K + lane] = mine_e;
		r.wt[(size_t)t * K + lane] = mine / wsum;
	}
}

/* Pairs routed to expert e among [0, n), by ballots (warp); with `place`,
 * also written to pairs[base ..] in increasing order.  Returns the count. */
static __device__ int expert_pairs(const int32_t *sel, int n, int e, int32_t *pairs, int base, bool place)
{
	const int lane = threadIdx.x % WARP;
	int c = 0;
	for (int i0 = 0; i0 < n; i0 += WARP) {
		const int i = i0 + lane;
		const bool m = i < n && sel[i] == e;
		const unsigned b = __ballot_sync(0xffffffffu, m);
		if (place && m)
			pairs[base + c + __popc(b & ((1u << lane) - 1u))] = i;
		c += __popc(b);
	}
	return c;
}

static __global__ void __launch_bounds__(ROUTE_THREADS) route_kernel(struct cuda_moe_route r)
{
	__shared__ int cnt[CUDA_MOE_MAX_E], off[CUDA_MOE_MAX_E];
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, nw = blockDim.x / WARP;
	const int n = r.T * r.K;
	pdl_enter();
	for (int t = warp; t < r.T; t += nw)
		route_token(r, t);
	__syncthreads(); /* sel, written by every warp, is visible to the block */
	for (int e = warp; e < r.E; e += nw) {
		const int c = expert_pairs(r.sel, n, e, r.pairs, 0, false);
		if (lane == 0)
			cnt[e] = c;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int s = 0, o = 0;
		for (int e = 0; e < r.E; e++) {
			off[e] = o;
			if (cnt[e]) {
				r.slot_exp[s] = e;
				r.slot_off[s++] = o;
				o += cnt[e];
			}
		}
		*r.n_used = s;
		for (int i = s; i < r.E; i++)
			r.slot_exp[i] = -1;
		for (int i = s; i <= r.E; i++)
			r.slot_off[i] = o;
	}
	__syncthreads();
	for (int e = warp; e < r.E; e += nw)
		if (cnt[e])
			expert_pairs(r.sel, n, e, r.pairs, off[e], true);
}

extern "C" int cuda_moe_route(const struct cuda_moe_route *r, cudaStream_t st)
{
	if (r->T <= 0)
		return 0;
	if (r->E < 1 || r->E > CUDA_MOE_MAX_E || r->K < 1 || r->K > r->E || r->K > CUDA_MOE_MAX_K) {
		LOG_ERR("unsupported routing: %d experts, %d per token (at most %d and %d)", r->E, r->K,
		        CUDA_MOE_MAX_E, CUDA_MOE_MAX_K);
		return -EINVAL;
	}
	launch_k(route_kernel, 1, ROUTE_THREADS, 0, st, *r);
	CUDA_CHECK_LAUNCH();
	return 0;
}

// ---- grouped expert mat-vec (decode)

/* NC: most columns (pairs) of a slot, as compiled (1, 2, 4, 8). */
template <int TYPE, int NC, bool GLU>
static __global__ void __launch_bounds__(MOE_WARPS *WARP) moe_mv_kernel(struct cuda_moe_mv a)
{
	pdl_enter();
	const int slot = blockIdx.y, e = a.slot_exp[slot];
	const int row = blockIdx.x * MOE_WARPS + threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const int K = a.w.m.K, N = a.w.m.N;
	if (e < 0 || row >= N)
		return;
	const int o0 = a.slot_off[slot], n = min(a.slot_off[slot + 1] - o0, NC);
	int pr[NC], col[NC];
#pragma unroll
	for (int c = 0; c < NC; c++) {
		pr[c] = c < n ? a.pairs[o0 + c] : 0;
		col[c] = pr[c] / a.div;
	}
	const uint8_t *wb = (const uint8_t *)a.w.m.d + (size_t)e * a.w.stride;
	const uint8_t *wb2 = GLU ? (const uint8_t *)a.w2.m.d + (size_t)e * a.w2.stride : nullptr;
	float acc[NC], acc2[NC];
#pragma unroll
	for (int c = 0; c < NC; c++)
		acc[c] = acc2[c] = 0.0f;
	if constexpr (TYPE == GGUF_DTYPE_F32 || TYPE == GGUF_DTYPE_F16 || TYPE == GGUF_DTYPE_BF16) {
		const size_t base = (size_t)row * K;
		for (int k = lane; k < K; k += WARP) {
			const float w = ld_float_weight<TYPE>(wb, base + k);
			const float w2 = GLU ? ld_float_weight<TYPE>(wb2, base + k) : 0.0f;
#pragma unroll
			for (int c = 0; c < NC; c++)
				if (c < n) {
					const float x = a.x[(size_t)col[c] * a.ldx + k];
					acc[c] += w * x;
					if (GLU)
						acc2[c] += w2 * x;
				}
		}
	} else {
		const int ng = K / Q8_BLOCK;
		const uint8_t *wr = wb + (size_t)row * a.w.m.row_bytes;
		const uint8_t *wr2 = GLU ? wb2 + (size_t)row * a.w.m.row_bytes : nullptr;
		const float2 *ds = (const float2 *)a.ds;
#pragma unroll 2
		for (int g = lane; g < ng; g += WARP) {
			wgroup w, w2;
			wq<TYPE>::load(wr, g, w);
			if (GLU)
				wq<TYPE>::load(wr2, g, w2);
#pragma unroll
			for (int c = 0; c < NC; c++)
				if (c < n) {
					const int4 *ap = (const int4 *)(a.qs + (size_t)col[c] * K + (size_t)g * Q8_BLOCK);
					const int4 a0 = __ldg(ap), a1 = __ldg(ap + 1);
					const int q[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
					const float2 d = __ldg(ds + (size_t)col[c] * ng + g);
					acc[c] += dot_group<TYPE>(w, q, d);
					if (GLU)
						acc2[c] += dot_group<TYPE>(w2, q, d);
				}
		}
	}
#pragma unroll
	for (int c = 0; c < NC; c++) {
		const float s = warp_sum(acc[c]);
		const float u = GLU ? warp_sum(acc2[c]) : 0.0f;
		if (lane == 0 && c < n)
			a.y[(size_t)pr[c] * a.ldy + row] = GLU ? glu_act(a.act, s, u) : s * a.wt[pr[c]];
	}
}

template <int TYPE, int NC>
static void launch_mv(const struct cuda_moe_mv *a, cudaStream_t st)
{
	dim3 grid(cdiv(a->w.m.N, MOE_WARPS), a->n_slots);
	if (a->w2.m.d)
		launch_k(moe_mv_kernel<TYPE, NC, true>, grid, MOE_WARPS * WARP, 0, st, *a);
	else
		launch_k(moe_mv_kernel<TYPE, NC, false>, grid, MOE_WARPS * WARP, 0, st, *a);
}

template <int TYPE>
static void launch_mv_nc(const struct cuda_moe_mv *a, cudaStream_t st)
{
	if (a->max_cols <= 1)
		launch_mv<TYPE, 1>(a, st);
	else if (a->max_cols <= 2)
		launch_mv<TYPE, 2>(a, st);
	else if (a->max_cols <= 4)
		launch_mv<TYPE, 4>(a, st);
	else
		launch_mv<TYPE, 8>(a, st);
}

extern "C" int cuda_moe_matvec(const struct cuda_moe_mv *a, cudaStream_t st)
{
	const struct cuda_mat *m = &a->w.m;
	if (a->n_slots <= 0)
		return 0;
	if (a->max_cols < 1 || a->max_cols > CUDA_MMV_MAX_COLS || a->div < 1 || a->n_slots > 65535 ||
	    (cuda_type_is_quant(m->type) && m->K % Q8_BLOCK)) {
		LOG_ERR("unsupported grouped mat-vec: %d columns, K=%d, %d slots", a->max_cols, m->K,
		        a->n_slots);
		return -EINVAL;
	}
	if (a->w2.m.d && (a->w2.m.type != m->type || a->w2.m.K != m->K || a->w2.m.N != m->N)) {
		LOG_ERR("gate (%s) and up (%s) experts differ", gguf_dtype_name(m->type),
		        gguf_dtype_name(a->w2.m.type));
		return -EINVAL;
	}
	switch (m->type) {
#define X(t)                              \
	case t:                           \
		launch_mv_nc<t>(a, st);   \
		break;
		CUDA_QUANT_TYPES(X)
		X(GGUF_DTYPE_F32) X(GGUF_DTYPE_F16) X(GGUF_DTYPE_BF16)
#undef X
	default:
		LOG_ERR("no grouped mat-vec for type %s", gguf_dtype_name(m->type));
		return -EINVAL;
	}
	CUDA_CHECK_LAUNCH();
	return 0;
}

// ---- gather, scatter, sum (element-wise; grid (cdiv(C, 256), rows))

static __global__ void gather_kernel(const float *x, int ldx, int C, const int32_t *pairs, int div,
                                     float *y, int ldy)
{
	pdl_enter();
	const int c = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
	if (c < C)
		y[(size_t)j * ldy + c] = x[(size_t)(pairs[j] / div) * ldx + c];
}

extern "C" int cuda_moe_gather(const float *x, int ldx, int C, const int32_t *pairs, int n, int div,
                               float *y, int ldy, cudaStream_t st)
{
	if (n <= 0)
		return 0;
	launch_k(gather_kernel, dim3(cdiv(C, 256), n), 256, 0, st, x, ldx, C, pairs, div, y, ldy);
	CUDA_CHECK_LAUNCH();
	return 0;
}

static __global__ void scatter_kernel(const float *y, int ldy, int C, const int32_t *pairs,
                                      const float *wt, float *eo)
{
	pdl_enter();
	const int c = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
	if (c < C) {
		const int p = pairs[j];
		eo[(size_t)p * C + c] = y[(size_t)j * ldy + c] * wt[p];
	}
}

extern "C" int cuda_moe_scatter(const float *y, int ldy, int C, const int32_t *pairs, int n,
                                const float *wt, float *eo, cudaStream_t st)
{
	if (n <= 0)
		return 0;
	launch_k(scatter_kernel, dim3(cdiv(C, 256), n), 256, 0, st, y, ldy, C, pairs, wt, eo);
	CUDA_CHECK_LAUNCH();
	return 0;
}

static __global__ void sum_kernel(const float *eo, int K, int C, float *x, int ldx)
{
	pdl_enter();
	const int c = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
	if (c >= C)
		return;
	const float *e = eo + (size_t)t * K * C + c;
	float s = e[0];
	for (int k = 1; k < K; k++)
		s += e[(size_t)k * C];
	x[(size_t)t * ldx + c] += s;
}

extern "C" int cuda_moe_sum(const float *eo, int K, int T, int C, float *x, int ldx, cudaStream_t st)
{
	if (T <= 0)
		return 0;
	launch_k(sum_kernel, dim3(cdiv(C, 256), T), 256, 0, st, eo, K, C, x, ldx);
	CUDA_CHECK_LAUNCH();
	return 0;
}
