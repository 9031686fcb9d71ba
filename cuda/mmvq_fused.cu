/*
 * mmvq_fused.cu — the decode mat-vecs that read the residual stream, with
 * everything before and after them fused in (one launch instead of up to
 * five):
 *   - prologue: every block computes the RMSNorm of its input columns (896
 *     floats: cheaper to redo per block than to launch a kernel for) and
 *     quantises it to q8 in shared memory (and keeps f32 for float weights);
 *   - several matrices per launch: Q, K and V (types may differ: the block's
 *     segment picks the kernel body with one uniform switch);
 *   - GLU: act(gate x) * (up x) from one pass over both matrices (SiLU, or
 *     GELU for gemma);
 *   - epilogue: 32 consecutive rows per block (rows_per_warp 2) so the block
 *     can quantise its outputs to q8 for the next mat-vec (down).
 * Same numerics as mmvq.cu (dp4a on q8 activations; f32 for float types).
 */
#include "cuda_ops.h"
#include "internal.h"
#include "quant.cuh"
#include "rope.cuh"

#include <string.h>

#define FW 16 /* warps per block; rows per block FW * rows_per_warp */
#define FUSED_MAX_SMEM (160 * 1024)

/* NR rows at once (their weight loads in flight together), NC columns. */
template <int TYPE, int NC, int NR>
static __device__ __forceinline__ void rowdot_q(const uint8_t *const *wr, const uint8_t *const *wr2,
                                                int K, const int8_t *xq, const float2 *xd,
                                                float (*acc)[NC], float (*acc2)[NC])
{
	const int ng = K / Q8_BLOCK, lane = threadIdx.x % WARP;
	for (int g = lane; g < ng; g += WARP) {
		wgroup w[NR], w2[NR];
#pragma unroll
		for (int r = 0; r < NR; r++) {
			wq<TYPE>::load(wr[r], g, w[r]);
			if (wr2)
				wq<TYPE>::load(wr2[r], g, w2[r]);
		}
#pragma unroll
		for (int c = 0; c < NC; c++) {
			const int4 *ap = (const int4 *)(xq + c * K + g * Q8_BLOCK);
			const int4 a0 = ap[0], a1 = ap[1];
			const int a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
			const float2 d = xd[c * ng + g];
#pragma unroll
			for (int r = 0; r < NR; r++) {
				acc[r][c] += dot_group<TYPE>(w[r], a, d);
				if (wr2)
					acc2[r][c] += dot_group<TYPE>(w2[r], a, d);
			}
		}
	}
}

template <int TYPE, int NC, int NR>
static __device__ __forceinline__ void rowdot_f(const void *w, const void *w2, const size_t *base,
                                                int K, const float *xf, float (*acc)[NC],
                                                float (*acc2)[NC])
{
	const int lane = threadIdx.x % WARP;
	for (int e = lane; e < K; e += WARP) {
		float a[NR], b[NR];
#pragma unroll
		for (int r = 0; r < NR; r++) {
			a[r] = ld_float_weight<TYPE>(w, base[r] + e);
			b[r] = w2 ? ld_float_weight<TYPE>(w2, base[r] + e) : 0.0f;
		}
#pragma unroll
		for (int c = 0; c < NC; c++) {
			const float x = xf[c * K + e];
#pragma unroll
			for (int r = 0; r < NR; r++) {
				acc[r][c] += a[r] * x;
				if (w2)
					acc2[r][c] += b[r] * x;
			}
		}
	}
}

struct fused_dev {
	struct cuda_mmv_fused a;
	int blk_end[3]; /* cumulative blocks per segment */
	bool need_f32;
};

/* The RPW rows of this warp (loaded together), one weight type: dot
 * products and the epilogue (y, and the block's staging for the q8
 * epilogue).  Rows past N compute row N-1 again and are not stored. */
template <int TYPE, int NC, int RPW>
static __device__ __forceinline__ void rows_t(const struct cuda_mmv_seg &s, int row0, int K,
                                              const int8_t *xq, const float2 *xd, const float *xf,
                                              float (*outv)[WARP], int act)
{
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	int rows[RPW];
	const uint8_t *wr[RPW], *wr2[RPW];
	size_t base[RPW];
#pragma unroll
	for (int r = 0; r < RPW; r++) {
		rows[r] = row0 + warp * RPW + r;
		const int rr = min(rows[r], s.w.N - 1);
		wr[r] = (const uint8_t *)s.w.d + (size_t)rr * s.w.row_bytes;
		wr2[r] = s.w2 ? (const uint8_t *)s.w2 + (size_t)rr * s.w.row_bytes : nullptr;
		base[r] = (size_t)rr * K;
	}
	if (rows[0] >= s.w.N)
		return;
	float acc[RPW][NC], acc2[RPW][NC];
#pragma unroll
	for (int r = 0; r < RPW; r++)
#pragma unroll
		for (int c = 0; c < NC; c++)
			acc[r][c] = acc2[r][c] = 0.0f;
	if constexpr (TYPE == GGUF_DTYPE_F32 || TYPE == GGUF_DTYPE_F16 || TYPE == GGUF_DTYPE_BF16)
		rowdot_f<TYPE, NC, RPW>(s.w.d, s.w2, base, K, xf, acc, acc2);
	else
		rowdot_q<TYPE, NC, RPW>(wr, s.w2 ? wr2 : nullptr, K, xq, xd, acc, acc2);
#pragma unroll
	for (int r = 0; r < RPW; r++)
#pragma unroll
		for (int c = 0; c < NC; c++) {
			const float p = warp_sum(acc[r][c]);
			const float u = s.w2 ? warp_sum(acc2[r][c]) : 0.0f;
			const float v = s.w2 ? glu_act(act, p, u) : p;
			if (lane == 0 && rows[r] < s.w.N) {
				s.y[(size_t)c * s.ldy + rows[r]] = v;
				outv[c][(warp * RPW + r) % WARP] = v;
			}
		}
}

template <int NC, int RPW, int TYPE>
static __device__ void rows_any(const struct cuda_mmv_seg &s, int row0, int K, const int8_t *xq,
                                const float2 *xd, const float *xf, float (*outv)[WARP], int act)
{
	if constexpr (TYPE >= 0) {
		rows_t<TYPE, NC, RPW>(s, row0, K, xq, xd, xf, outv, act);
		return;
	}
	switch (s.w.type) {
#define X(t)                                                               \
	case t:                                                            \
		rows_t<t, NC, RPW>(s, row0, K, xq, xd, xf, outv, act);     \
		break;
		CUDA_QUANT_TYPES(X)
		X(GGUF_DTYPE_F32) X(GGUF_DTYPE_F16) X(GGUF_DTYPE_BF16)
#undef X
	}
}

/* TYPE >= 0: one weight type for every segment (compiled for it alone:
 * fewer registers); -1: any mix, chosen per block. */
template <int NC, int RPW, int TYPE>
static __global__ void __launch_bounds__(FW *WARP, RPW == 2 && NC <= 2 ? 2 : 1) fused_kernel(struct fused_dev f)
{
	extern __shared__ __align__(16) uint8_t fsm[];
	__shared__ float red[FW][CUDA_MMV_MAX_COLS], scl[CUDA_MMV_MAX_COLS];
	__shared__ float outv[CUDA_MMV_MAX_COLS][WARP];
	const struct cuda_mmv_fused &a = f.a;
	const int K = a.K, ng = K / Q8_BLOCK, warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	int8_t *xq = (int8_t *)fsm;
	float2 *xd = (float2 *)(fsm + ((size_t)NC * K + 15) / 16 * 16);
	float *xf = (float *)(xd + (size_t)NC * ng);
	const int b = blockIdx.x, s = b < f.blk_end[0] ? 0 : b < f.blk_end[1] ? 1 : 2;
	const struct cuda_mmv_seg &sg = a.seg[s];
	const int row0 = (b - (s ? f.blk_end[s - 1] : 0)) * FW * RPW;
	{
		/* the block's weight rows do not depend on the previous kernel */
		const int nr = min(FW * RPW, sg.w.N - row0);
		prefetch_l2((const uint8_t *)sg.w.d + (size_t)row0 * sg.w.row_bytes, (size_t)nr * sg.w.row_bytes);
		if (sg.w2)
			prefetch_l2((const uint8_t *)sg.w2 + (size_t)row0 * sg.w.row_bytes,
			            (size_t)nr * sg.w.row_bytes);
	}
	pdl_enter();

	/* prologue: RMSNorm of every column, quantised into shared memory */
	float ss[NC];
#pragma unroll
	for (int c = 0; c < NC; c++) {
		ss[c] = 0.0f;
		if (a.norm_w)
			for (int e = threadIdx.x; e < K; e += blockDim.x) {
				const float v = a.x[(size_t)c * a.ldx + e];
				ss[c] += v * v;
			}
		ss[c] = warp_sum(ss[c]);
		if (lane == 0)
			red[warp][c] = ss[c];
	}
	__syncthreads();
	if (threadIdx.x < NC) {
		float t = 0.0f;
		for (int w = 0; w < FW; w++)
			t += red[w][threadIdx.x];
		scl[threadIdx.x] = a.norm_w ? rsqrtf(t / (float)K + a.eps) : 1.0f;
	}
	__syncthreads();
	for (int i = warp; i < NC * ng; i += FW) {
		const int c = NC == 1 ? 0 : i / ng, g = NC == 1 ? i : i % ng, e = g * Q8_BLOCK + lane;
		float v = a.x[(size_t)c * a.ldx + e] * scl[c];
		if (a.norm_w)
			v *= a.norm_w[e];
		if (f.need_f32)
			xf[c * K + e] = v;
		quant_group_warp(v, xq + c * K + g * Q8_BLOCK, xd + c * ng + g);
	}
	__syncthreads();

	/* the RoPE angles of this thread's epilogue row, requested now */
	float2 cs_pre = make_float2(1.0f, 0.0f);
	if (a.rope.on && a.rope.cs && threadIdx.x < FW * NC && s < 2) {
		const int d = (row0 + (int)threadIdx.x % FW) % a.rope.D;
		if (d < a.rope.n_rot)
			cs_pre = ((const float2 *)a.rope.cs)[(threadIdx.x / FW) * (a.rope.n_rot / 2) + d / 2];
	}

	/* rows */
	rows_any<NC, RPW, TYPE>(sg, row0, K, xq, xd, xf, outv, a.act);
	if (a.rope.on) {
		/* bias, RoPE of the adjacent pair (rows r, r ^ 1 are in this block),
		 * q back to y, k and v into the cache; thread = (column, row) */
		const struct cuda_qkv_rope &q = a.rope;
		__syncthreads();
		const int t = threadIdx.x % FW, c = threadIdx.x / FW, r = row0 + t;
		if (threadIdx.x < FW * NC && r < sg.w.N) {
			const float *bias = q.bias[s];
			const float x = outv[c][t] + (bias ? bias[r] : 0.0f);
			const float xp = outv[c][t ^ 1] + (bias ? bias[r ^ 1] : 0.0f);
			const int d = r % q.D, pos = q.pos[c];
			float v = x;
			if (s < 2 && d < q.n_rot) {
				const float2 cs = q.cs ? cs_pre : rope_cs(pos, d / 2, q.n_rot, q.freq);
				v = (d & 1) ? xp * cs.y + x * cs.x : x * cs.x - xp * cs.y;
			}
			if (s == 0) {
				sg.y[(size_t)c * sg.ldy + r] = v;
			} else {
				const int32_t *pt = q.pages + (size_t)q.tok_seq[c] * q.page_stride;
				__half *pool = (__half *)(s == 1 ? q.k_pool : q.v_pool);
				pool[cuda_kv_offset(pt[pos / ENG_KV_PAGE], r / q.D, pos % ENG_KV_PAGE, q.G, q.D) / 2 + d] =
				    __float2half_rn(v);
			}
		}
	}
	if (a.oqs && s == 0) {
		__syncthreads();
		if (warp < NC && FW * RPW == WARP) {
			const int N = sg.w.N;
			quant_group_warp(outv[warp][lane], a.oqs + (size_t)warp * N + row0,
			                 (float2 *)a.ods + (size_t)warp * (N / WARP) + row0 / WARP);
		}
	}
}

static size_t fused_smem(const struct cuda_mmv_fused *a, bool need_f32)
{
	size_t n = ((size_t)a->ncols * a->K + 15) / 16 * 16 + (size_t)a->ncols * (a->K / Q8_BLOCK) * 8;
	return n + (need_f32 ? (size_t)a->ncols * a->K * 4 : 0);
}

static bool any_float(const struct cuda_mmv_fused *a)
{
	for (int i = 0; i < a->n_seg; i++)
		if (cuda_type_is_float(a->seg[i].w.type))
			return true;
	return false;
}

extern "C" bool cuda_matvec_fused_ok(const struct cuda_mmv_fused *a)
{
	if (a->K % Q8_BLOCK || a->ncols < 1 || a->ncols > CUDA_MMV_MAX_COLS || a->n_seg < 1 ||
	    a->n_seg > 3 || (a->rows_per_warp != 1 && a->rows_per_warp != 2))
		return false;
	if (a->oqs && (a->seg[0].w.N % 32 || FW * a->rows_per_warp != WARP))
		return false;
	if (a->rope.on && (a->rows_per_warp != 1 || a->n_seg != 3 || a->rope.D % 2 || FW % 2 ||
	                   a->seg[0].w.N % a->rope.D || a->seg[1].w.N % a->rope.D || a->seg[0].w.N % FW ||
	                   a->seg[1].w.N % FW || a->seg[2].w.N % FW))
		return false;
	for (int i = 0; i < a->n_seg; i++)
		if (!cuda_matvec_supported(a->seg[i].w.type) || a->seg[i].w.K != a->K ||
		    (a->rows_per_warp == 2 && a->seg[i].w.type != a->seg[0].w.type))
			return false;
	return fused_smem(a, any_float(a)) <= FUSED_MAX_SMEM;
}

template <int NC, int RPW, int TYPE>
static int fused_attr(void)
{
	static bool done;
	if (!done) {
		CUDA_CHECK(cudaFuncSetAttribute(fused_kernel<NC, RPW, TYPE>,
		                                cudaFuncAttributeMaxDynamicSharedMemorySize, FUSED_MAX_SMEM));
		done = true;
	}
	return 0;
}

template <int NC, int RPW, int TYPE>
static int launch_fused(const struct fused_dev *f, int blocks, size_t smem, cudaStream_t st)
{
	TRY((fused_attr<NC, RPW, TYPE>()));
	launch_k(fused_kernel<NC, RPW, TYPE>, blocks, FW * WARP, smem, st, *f);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* RPW 1: any mix of types (Q, K, V); RPW 2 (GLU): compiled per type. */
template <int NC>
static int launch_t(const struct fused_dev *f, int blocks, size_t smem, cudaStream_t st, bool setup)
{
	if (f->a.rows_per_warp == 1)
		return setup ? fused_attr<NC, 1, -1>() : launch_fused<NC, 1, -1>(f, blocks, smem, st);
	switch (f->a.seg[0].w.type) {
#define X(t)                                                                                 \
	case t:                                                                              \
		return setup ? fused_attr<NC, 2, t>() : launch_fused<NC, 2, t>(f, blocks, smem, st);
		CUDA_QUANT_TYPES(X)
		X(GGUF_DTYPE_F32) X(GGUF_DTYPE_F16) X(GGUF_DTYPE_BF16)
#undef X
	}
	return -EINVAL;
}

static int launch_nc(const struct fused_dev *f, int blocks, size_t smem, cudaStream_t st, bool setup)
{
	switch (f->a.ncols) {
	case 1: return launch_t<1>(f, blocks, smem, st, setup);
	case 2: return launch_t<2>(f, blocks, smem, st, setup);
	case 3: return launch_t<3>(f, blocks, smem, st, setup);
	case 4: return launch_t<4>(f, blocks, smem, st, setup);
	case 5: return launch_t<5>(f, blocks, smem, st, setup);
	case 6: return launch_t<6>(f, blocks, smem, st, setup);
	case 7: return launch_t<7>(f, blocks, smem, st, setup);
	default: return launch_t<8>(f, blocks, smem, st, setup);
	}
}

/* Sets the shared-memory limit of every instantiation (at init: never while
 * a graph is being captured). */
extern "C" int cuda_fused_setup(void)
{
	static const int types[] = {GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1, GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_1,
	                            GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q2_K, GGUF_DTYPE_Q3_K, GGUF_DTYPE_Q4_K,
	                            GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q6_K, GGUF_DTYPE_F32, GGUF_DTYPE_F16,
	                            GGUF_DTYPE_BF16};
	struct fused_dev f;
	memset(&f, 0, sizeof(f));
	for (int nc = 1; nc <= CUDA_MMV_MAX_COLS; nc++) {
		f.a.ncols = nc;
		f.a.rows_per_warp = 1;
		TRY(launch_nc(&f, 0, 0, 0, true));
		f.a.rows_per_warp = 2;
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			f.a.seg[0].w.type = types[i];
			TRY(launch_nc(&f, 0, 0, 0, true));
		}
	}
	return 0;
}

extern "C" int cuda_matvec_fused(const struct cuda_mmv_fused *a, cudaStream_t st)
{
	struct fused_dev f;
	if (!cuda_matvec_fused_ok(a)) {
		LOG_ERR("shape not supported (K=%d ncols=%d segments=%d)", a->K, a->ncols, a->n_seg);
		return -EINVAL;
	}
	memset(&f, 0, sizeof(f));
	f.a = *a;
	f.need_f32 = any_float(a);
	const int rb = FW * a->rows_per_warp;
	int blocks = 0;
	for (int i = 0; i < 3; i++) {
		if (i < a->n_seg)
			blocks += cdiv(a->seg[i].w.N, rb);
		f.blk_end[i] = blocks;
	}
	const size_t smem = fused_smem(a, f.need_f32);
	return launch_nc(&f, blocks, smem, st, false);
}
