/*
 * attn.cu — causal attention over the paged F16 KV cache, grouped heads.
 *
 * One kernel serves prefill and decode (flash-attention style: online
 * softmax, no T x T matrix anywhere).  A block takes one tile (up to qt
 * consecutive tokens of one sequence) and one KV head g, i.e. rows =
 * tokens x the H/G query heads that share g, so each K/V tile is read once
 * for all of them.  Keys are walked one page (64 keys) at a time: the page
 * is staged in shared memory as f32, each warp owns some rows and keeps
 * their running max m, sum l and output o (in shared memory between
 * pages); lane j scores keys j and j+32.
 *
 * Decode (few rows, long contexts): the key range is split over n_split
 * blocks (grid z); each writes its unnormalised (o, m, l) and
 * cuda_attn_combine merges them — flash-decoding.  The number of splits is
 * fixed per batch shape and the ranges are computed on the device from the
 * positions, so a captured graph stays valid as the context grows.
 */
#include "cuda_ops.h"
#include "common.cuh"

static_assert(CUDA_ATTN_KT == 64, "attention assumes 64-key pages (2 keys per lane)");

#define ATTN_THREADS 256
#define ATTN_WARPS (ATTN_THREADS / WARP)

extern "C" int cuda_attn_tile_tokens(int H, int G, int D)
{
	int hpg = H / G, rows = D <= 64 ? 64 : D <= 128 ? 32 : 16;
	int qt = rows / hpg;
	return qt < 1 ? 1 : qt;
}

static size_t attn_smem(int D, int R)
{
	return sizeof(float) * ((size_t)CUDA_ATTN_KT * (D + 1) + (size_t)CUDA_ATTN_KT * D +
	                        2 * (size_t)R * D + 2 * (size_t)R);
}

/* ND = dims per lane (ceil(D / 32) rounded to a power of two). */
template <int ND>
static __global__ void __launch_bounds__(ATTN_THREADS) attn_kernel(struct cuda_attn_args a)
{
	extern __shared__ float sm[];
	const int tile = blockIdx.x, g = blockIdx.y, split = blockIdx.z;
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const int D = a.D, D1 = D + 1, hpg = a.H / a.G;
	const int seq = a.tile_seq[tile], t0 = a.tile_tok0[tile], nt = a.tile_ntok[tile];
	const int R = nt * hpg, Rmax = a.qt * hpg;
	float *Ks = sm, *Vs = Ks + CUDA_ATTN_KT * D1, *Qs = Vs + CUDA_ATTN_KT * D;
	float *Os = Qs + (size_t)Rmax * D, *Ms = Os + (size_t)Rmax * D, *Ls = Ms + Rmax;

	const int kv_end = a.pos[t0 + nt - 1] + 1;
	int chunk = cdiv(kv_end, a.n_split);
	chunk = (chunk + CUDA_ATTN_KT - 1) / CUDA_ATTN_KT * CUDA_ATTN_KT;
	const int kbeg = split * chunk, kend = min(kbeg + chunk, kv_end);

	for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
		int r = i / D, d = i % D, h = g * hpg + r % hpg;
		Qs[i] = a.q[(size_t)(t0 + r / hpg) * a.ldq + h * D + d] * a.scale;
		Os[i] = 0.0f;
	}
	for (int r = threadIdx.x; r < R; r += blockDim.x) {
		Ms[r] = -INFINITY;
		Ls[r] = 0.0f;
	}
	__syncthreads();

	const int32_t *ptab = a.pages + (size_t)seq * a.page_stride;
	for (int kt = kbeg; kt < kend; kt += CUDA_ATTN_KT) {
		const int nk = min(CUDA_ATTN_KT, kend - kt);
		const size_t off = cuda_kv_offset(ptab[kt / CUDA_ATTN_KT], g, 0, a.G, D) / 2;
		const __half *Kp = (const __half *)a.k_pool + off, *Vp = (const __half *)a.v_pool + off;
		for (int i = threadIdx.x; i < CUDA_ATTN_KT * D / 2; i += blockDim.x) {
			int j = (2 * i) / D, d = (2 * i) % D; /* D is even */
			float2 k = make_float2(0.0f, 0.0f), v = k;
			if (j < nk) {
				k = __half22float2(((const __half2 *)Kp)[i]);
				v = __half22float2(((const __half2 *)Vp)[i]);
			}
			Ks[j * D1 + d] = k.x;
			Ks[j * D1 + d + 1] = k.y;
			Vs[2 * i] = v.x;
			Vs[2 * i + 1] = v.y;
		}
		__syncthreads();
		for (int r = warp; r < R; r += ATTN_WARPS) {
			const int lim = min(kend, a.pos[t0 + r / hpg] + 1) - kt; /* causal */
			if (lim <= 0)
				continue;
			const float *qr = Qs + (size_t)r * D;
			float s0 = 0.0f, s1 = 0.0f;
			for (int d = 0; d < D; d++) {
				float qd = qr[d];
				s0 += qd * Ks[lane * D1 + d];
				s1 += qd * Ks[(lane + 32) * D1 + d];
			}
			s0 = lane < lim ? s0 : -INFINITY;
			s1 = lane + 32 < lim ? s1 : -INFINITY;
			const float m_old = Ms[r], m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));
			const float corr = __expf(m_old - m_new);
			const float p0 = __expf(s0 - m_new), p1 = __expf(s1 - m_new);
			const float psum = warp_sum(p0 + p1);
			float o[ND];
#pragma unroll
			for (int i = 0; i < ND; i++) {
				int d = lane + 32 * i;
				o[i] = d < D ? Os[(size_t)r * D + d] * corr : 0.0f;
			}
			const int jmax = min(lim, CUDA_ATTN_KT);
			for (int j = 0; j < jmax; j++) {
				float pj = __shfl_sync(0xffffffffu, j < 32 ? p0 : p1, j & 31);
#pragma unroll
				for (int i = 0; i < ND; i++) {
					int d = lane + 32 * i;
					if (d < D)
						o[i] += pj * Vs[j * D + d];
				}
			}
#pragma unroll
			for (int i = 0; i < ND; i++) {
				int d = lane + 32 * i;
				if (d < D)
					Os[(size_t)r * D + d] = o[i];
			}
			if (lane == 0) {
				Ms[r] = m_new;
				Ls[r] = Ls[r] * corr + psum;
			}
		}
		__syncthreads();
	}

	for (int r = warp; r < R; r += ATTN_WARPS) {
		const int t = t0 + r / hpg, h = g * hpg + r % hpg;
		if (a.n_split == 1) {
			const float inv = Ls[r] > 0.0f ? 1.0f / Ls[r] : 0.0f;
			for (int d = lane; d < D; d += WARP)
				a.out[(size_t)t * a.ldo + h * D + d] = Os[(size_t)r * D + d] * inv;
		} else {
			const size_t row = (size_t)t * a.H + h;
			float *po = a.part_o + (row * a.n_split + split) * D;
			for (int d = lane; d < D; d += WARP)
				po[d] = Os[(size_t)r * D + d];
			if (lane == 0)
				((float2 *)a.part_ml)[row * a.n_split + split] = make_float2(Ms[r], Ls[r]);
		}
	}
}

template <int ND>
static int launch_attn(const struct cuda_attn_args *a, cudaStream_t st)
{
	static bool attr_set;
	size_t smem = attn_smem(a->D, a->qt * (a->H / a->G));
	if (!attr_set) {
		CUDA_CHECK(cudaFuncSetAttribute(attn_kernel<ND>, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                                200 * 1024));
		attr_set = true;
	}
	if (smem > 200 * 1024) {
		LOG_ERR("attention tile needs %zu bytes of shared memory (D=%d, H/G=%d)", smem, a->D,
		        a->H / a->G);
		return -EINVAL;
	}
	dim3 grid(a->n_tiles, a->G, a->n_split);
	attn_kernel<ND><<<grid, ATTN_THREADS, smem, st>>>(*a);
	CUDA_CHECK_LAUNCH();
	return 0;
}

extern "C" int cuda_attn(const struct cuda_attn_args *a, cudaStream_t st)
{
	if (a->n_tiles <= 0)
		return 0;
	if (a->D > CUDA_ATTN_MAX_D || a->D % 2 || a->H % a->G || a->n_split < 1) {
		LOG_ERR("unsupported attention shape D=%d H=%d G=%d n_split=%d", a->D, a->H, a->G,
		        a->n_split);
		return -EINVAL;
	}
	if (a->D <= 32)
		return launch_attn<1>(a, st);
	if (a->D <= 64)
		return launch_attn<2>(a, st);
	if (a->D <= 128)
		return launch_attn<4>(a, st);
	return launch_attn<8>(a, st);
}

// ---- combine the splits

static __global__ void __launch_bounds__(ATTN_THREADS)
attn_combine_kernel(struct cuda_attn_args a, int8_t *qs, float2 *ds)
{
	extern __shared__ float wt[]; /* [H][n_split] weights exp(m_j - M) / L */
	const int t = blockIdx.x, warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const int ns = a.n_split, H = a.H, D = a.D;
	const float2 *ml = (const float2 *)a.part_ml;
	for (int h = warp; h < H; h += ATTN_WARPS) {
		const float2 *mh = ml + ((size_t)t * H + h) * ns;
		float M = -INFINITY;
		for (int j = lane; j < ns; j += WARP)
			M = fmaxf(M, mh[j].x);
		M = warp_max(M);
		float L = 0.0f;
		for (int j = lane; j < ns; j += WARP)
			L += mh[j].y * __expf(mh[j].x - M);
		L = warp_sum(L);
		for (int j = lane; j < ns; j += WARP)
			wt[h * ns + j] = L > 0.0f ? __expf(mh[j].x - M) / L : 0.0f;
	}
	__syncthreads();
	const int n = H * D, ng = (n + WARP - 1) / WARP;
	for (int gi = warp; gi < ng; gi += ATTN_WARPS) {
		const int e = gi * WARP + lane;
		float v = 0.0f;
		if (e < n) {
			const int h = e / D, d = e % D;
			const float *po = a.part_o + ((size_t)t * H + h) * ns * D + d;
			for (int j = 0; j < ns; j++) {
				float w = wt[h * ns + j];
				if (w != 0.0f)
					v += w * po[(size_t)j * D];
			}
			a.out[(size_t)t * a.ldo + e] = v;
		}
		if (qs)
			quant_group_warp(v, qs + (size_t)t * n + gi * WARP, ds + (size_t)t * (n / WARP) + gi);
	}
}

extern "C" int cuda_attn_combine(const struct cuda_attn_args *a, int8_t *qs, void *ds,
                                 cudaStream_t st)
{
	if (a->T <= 0)
		return 0;
	if (qs && (a->H * a->D) % Q8_BLOCK) {
		LOG_ERR("q8 output needs H*D %% 32 == 0 (H*D=%d)", a->H * a->D);
		return -EINVAL;
	}
	size_t smem = sizeof(float) * (size_t)a->H * a->n_split;
	if (smem > 48 * 1024) {
		LOG_ERR("too many heads x splits (%d x %d)", a->H, a->n_split);
		return -EINVAL;
	}
	attn_combine_kernel<<<a->T, ATTN_THREADS, smem, st>>>(*a, qs, (float2 *)ds);
	CUDA_CHECK_LAUNCH();
	return 0;
}
