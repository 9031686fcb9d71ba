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
 * blocks (grid z; only as many as the context has pages do work); each
 * writes its unnormalised (o, m, l); the last block of a (tile, g) to
 * finish (atomic ticket) merges them — flash-decoding without a second
 * launch — and quantises the result to q8 for the wo mat-vec.  With fuse_rope it also applies bias / QK norm / RoPE to q and
 * to the new token's k, v, which the block owning that position stores in
 * the cache before reading it.  The number of splits is fixed per batch
 * shape and every range is computed on the device from the positions, so a
 * captured graph stays valid as the context grows.
 *
 * Gemma: a sliding-window layer (win > 0) lets the query at p see keys
 * p - win < j <= p only; the key range starts at the window of the tile's
 * first token (whole pages before it are skipped, in every kernel) and each
 * row masks the keys below its own window.  Gemma 2's soft-capping
 * (softcap > 0) maps every scaled score s to cap * tanh(s / cap) before the
 * softmax, as the CPU's attn_scores().
 */
#include <cooperative_groups.h>

#include "cuda_ops.h"
#include "common.cuh"
#include "internal.h"
#include "attn_dec.cuh"
#include "rope.cuh"

namespace cg = cooperative_groups;

static_assert(CUDA_ATTN_KT == 64, "attention assumes 64-key pages (2 keys per lane)");

#define ATTN_THREADS 256
#define ATTN_WARPS (ATTN_THREADS / WARP)

extern "C" int cuda_attn_tile_tokens(int H, int G, int D)
{
	int hpg = H / G, rows = D <= 64 ? 64 : D <= 128 ? 32 : 16;
	int qt = rows / hpg;
	return qt < 1 ? 1 : qt;
}

/* A merged output row (head h of token t0; dims lane + 32 i in v[i]) to
 * out, and to its q8 form when the caller asked for it; call with the whole
 * warp. */
template <int NI>
static __device__ __forceinline__ void store_row(const struct cuda_attn_args &a, int t0, int h, int D,
                                                 const float *v)
{
	const int lane = threadIdx.x % WARP, HD = a.H * D;
#pragma unroll
	for (int i = 0; i < NI; i++) {
		a.out[(size_t)t0 * a.ldo + h * D + i * WARP + lane] = v[i];
		if (a.qs) {
			const size_t e0 = (size_t)t0 * HD + h * D + i * WARP;
			quant_group_warp(v[i], a.qs + e0, (float2 *)a.ds + e0 / WARP);
		}
	}
}

static size_t attn_smem(int D, int R)
{
	return sizeof(float) * ((size_t)CUDA_ATTN_KT * (D + 1) + (size_t)CUDA_ATTN_KT * D +
	                        2 * (size_t)R * D + 2 * (size_t)R);
}

/* Q rows into Qs (scaled); with fuse_rope also the new k, v into the cache
 * when this block owns their position. */
static __device__ void load_q(const struct cuda_attn_args &a, float *Qs, int R, int hpg, int g,
                              int t0, int kbeg, int kend, int kv_end)
{
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, D = a.D;
	if (!a.fuse_rope) {
		for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
			int r = i / D, d = i % D, h = g * hpg + r % hpg;
			Qs[i] = a.q[(size_t)(t0 + r / hpg) * a.ldq + h * D + d] * a.scale;
		}
		return;
	}
	/* one token (t0): R == hpg rows */
	const int pos = a.pos[t0];
	for (int r = warp; r < R; r += ATTN_WARPS) {
		const int h = g * hpg + r;
		float *s = Qs + (size_t)r * D;
		head_prep(s, a.q + (size_t)t0 * a.ldq + h * D, a.bq ? a.bq + h * D : nullptr, a.q_norm,
		          a.eps, D, !(a.dbg & 1), pos, a.n_rot, a.neox, a.freq);
		for (int d = lane; d < D; d += WARP)
			s[d] *= a.scale;
	}
	if (pos >= kbeg && pos < kend && warp >= ATTN_WARPS - 2) {
		/* the two last warps (fewest Q rows): k and v of the new token */
		const bool isk = warp == ATTN_WARPS - 2;
		float *s = Qs + (size_t)(R + (isk ? 0 : 1)) * D; /* scratch rows past Q: see smem sizing */
		const float *raw = (isk ? a.k_new : a.v_new) + (size_t)t0 * a.ldq + g * D;
		const float *b = isk ? a.bk : a.bv;
		head_prep(s, raw, b ? b + g * D : nullptr, isk ? a.k_norm : nullptr, a.eps, D, isk, pos,
		          a.n_rot, a.neox, a.freq);
		const int page = a.pages[(size_t)a.tile_seq[blockIdx.x] * a.page_stride + pos / CUDA_ATTN_KT];
		__half *dst = (__half *)(isk ? a.k_pool : a.v_pool) +
		              cuda_kv_offset(page, g, pos % CUDA_ATTN_KT, a.G, D) / 2;
		for (int d = lane; d < D; d += WARP)
			dst[d] = __float2half_rn(s[d]);
	}
	(void)kv_end;
}

/* One page of keys/values [kt, kt + nk) into Ks (padded rows) and Vs.
 * DT: the head dim when known at compile time (0: a.D). */
template <int DT>
static __device__ __forceinline__ void load_kv(const struct cuda_attn_args &a, float *Ks, float *Vs,
                                               const int32_t *ptab, int g, int kt, int nk)
{
	const int D = DT ? DT : a.D, D1 = D + 1;
	const size_t off = cuda_kv_offset(ptab[kt / CUDA_ATTN_KT], g, 0, a.G, D) / 2;
	const __half2 *Kp = (const __half2 *)((const __half *)a.k_pool + off);
	const __half2 *Vp = (const __half2 *)((const __half *)a.v_pool + off);
	for (int i = threadIdx.x; i < CUDA_ATTN_KT * D / 2; i += blockDim.x) {
		int j = (2 * i) / D, d = (2 * i) % D; /* D is even */
		float2 k = make_float2(0.0f, 0.0f), v = k;
		if (j < nk) {
			k = __half22float2(Kp[i]);
			v = __half22float2(Vp[i]);
		}
		Ks[j * D1 + d] = k.x;
		Ks[j * D1 + d + 1] = k.y;
		Vs[2 * i] = v.x;
		Vs[2 * i + 1] = v.y;
	}
}

/* Merges the eff partial rows of this block into Fo [R][D] (final). */
static __device__ void combine_rows(const struct cuda_attn_args &a, float *Fo, int R, int hpg, int g,
                                    int t0, int eff)
{
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, D = a.D, ns = a.n_split;
	const float2 *ml = (const float2 *)a.part_ml;
	for (int r = warp; r < R; r += ATTN_WARPS) {
		const size_t row = (size_t)(t0 + r / hpg) * a.H + g * hpg + r % hpg;
		const float2 m0 = lane < eff ? __ldcg(ml + row * ns + lane) : make_float2(-INFINITY, 0.0f);
		const float2 m1 = lane + 32 < eff ? __ldcg(ml + row * ns + lane + 32) : make_float2(-INFINITY, 0.0f);
		const float M = warp_max(fmaxf(m0.x, m1.x));
		const float e0 = __expf(m0.x - M), e1 = __expf(m1.x - M);
		const float L = warp_sum(m0.y * e0 + m1.y * e1);
		const float w0 = e0 / L, w1 = e1 / L; /* L > 0: every split saw a key */
		float o[CUDA_ATTN_MAX_D / WARP];
#pragma unroll
		for (int i = 0; i < CUDA_ATTN_MAX_D / WARP; i++)
			o[i] = 0.0f;
		const float *po = a.part_o + row * ns * D;
#pragma unroll 4
		for (int j = 0; j < eff; j++) {
			const float wj = __shfl_sync(0xffffffffu, j < 32 ? w0 : w1, j & 31);
#pragma unroll
			for (int i = 0; i < CUDA_ATTN_MAX_D / WARP; i++) {
				const int d = lane + WARP * i;
				if (d < D)
					o[i] += wj * __ldcg(po + (size_t)j * D + d);
			}
		}
#pragma unroll
		for (int i = 0; i < CUDA_ATTN_MAX_D / WARP; i++) {
			const int d = lane + WARP * i;
			if (d < D)
				Fo[(size_t)r * D + d] = o[i];
		}
	}
}

/* Final rows Fo [R][D] → out (and their q8 form, when asked and aligned). */
static __device__ void write_out(const struct cuda_attn_args &a, const float *Fo, int nt, int hpg,
                                 int g, int t0)
{
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, D = a.D;
	const int seg = hpg * D, HD = a.H * D; /* a token's elements in this block */
	if (a.qs && seg % WARP == 0) {
		const int ng = seg / WARP;
		for (int i = warp; i < nt * ng; i += ATTN_WARPS) {
			const int tl = i / ng, gi = i % ng, t = t0 + tl;
			const float v = Fo[(size_t)tl * seg + gi * WARP + lane];
			const size_t e = (size_t)t * HD + (size_t)g * seg + gi * WARP;
			a.out[(size_t)t * a.ldo + g * seg + gi * WARP + lane] = v;
			quant_group_warp(v, a.qs + e, (float2 *)a.ds + e / WARP);
		}
		return;
	}
	for (int i = threadIdx.x; i < nt * seg; i += blockDim.x) {
		const int tl = i / seg, e = i % seg;
		a.out[(size_t)(t0 + tl) * a.ldo + g * seg + e] = Fo[i];
	}
}

/* Cluster mode (one token per tile, D a multiple of 32): every block of the
 * cluster holds its split's unnormalised (o, m, l) rows in shared memory;
 * block `rank` merges rows rank, rank + n, … reading the others' shared
 * memory, writes them and their q8 form. */
template <int DT>
static __device__ void cluster_combine(const struct cuda_attn_args &a, const float *Os,
                                       const float *Ms, const float *Ls, int R, int hpg, int g,
                                       int t0, int eff)
{
	cg::cluster_group cl = cg::this_cluster();
	const int rank = (int)cl.block_rank(), ns = (int)cl.num_blocks();
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	constexpr int D = DT, NI = DT / WARP;
	cl.sync(); /* every split's rows are complete */
	if (warp == 0)
		for (int r = rank; r < R; r += ns) {
			const float m = lane < eff ? *cl.map_shared_rank(Ms + r, lane) : -INFINITY;
			const float l = lane < eff ? *cl.map_shared_rank(Ls + r, lane) : 0.0f;
			const float M = warp_max(m), e = __expf(m - M), L = warp_sum(l * e);
			const float w = e / L;
			float o[NI];
#pragma unroll
			for (int i = 0; i < NI; i++)
				o[i] = 0.0f;
			for (int j = 0; j < eff; j++) {
				const float wj = __shfl_sync(0xffffffffu, w, j);
				const float *src = cl.map_shared_rank(Os + (size_t)r * D, j);
#pragma unroll
				for (int i = 0; i < NI; i++)
					o[i] += wj * src[lane + WARP * i];
			}
			store_row<NI>(a, t0, g * hpg + r, D, o);
		}
	cl.sync(); /* keep this block's shared memory until the others have read it */
}

/* ND = dims per lane (ceil(D / 32) rounded to a power of two); DT = the
 * head dim when compiled for it (64, 128: loops fully unrolled), else 0. */
template <int ND, int DT, bool CL>
static __global__ void __launch_bounds__(ATTN_THREADS) attn_kernel(struct cuda_attn_args a)
{
	extern __shared__ float sm[];
	__shared__ int last;
	const int tile = blockIdx.x, g = blockIdx.y, split = blockIdx.z;
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const int D = DT ? DT : a.D, D1 = D + 1, hpg = a.H / a.G;
	const int seq = a.tile_seq[tile], t0 = a.tile_tok0[tile], nt = a.tile_ntok[tile];
	const int R = nt * hpg, Rmax = a.qt * hpg + 2; /* + 2 scratch rows for the new k, v */
	float *Ks = sm, *Vs = Ks + CUDA_ATTN_KT * D1, *Qs = Vs + CUDA_ATTN_KT * D;
	float *Os = Qs + (size_t)Rmax * D, *Ms = Os + (size_t)Rmax * D, *Ls = Ms + Rmax;

	/* the key range [k0, kv_end) in pages (k0: the page of the first
	 * token's window start, 0 without a window), over at most n_split
	 * blocks, none empty: blocks past `eff` have nothing to do */
	const int kv_end = a.pos[t0 + nt - 1] + 1;
	const int k0 = a.win ? max(0, a.pos[t0] + 1 - a.win) / CUDA_ATTN_KT * CUDA_ATTN_KT : 0;
	const int n_kt = cdiv(kv_end - k0, CUDA_ATTN_KT);
	const int per = max(cdiv(n_kt, min(a.n_split, n_kt)), a.min_pages), eff = cdiv(n_kt, per);
	const int kbeg = k0 + split * per * CUDA_ATTN_KT, kend = min(kbeg + per * CUDA_ATTN_KT, kv_end);
	const int32_t *ptab = a.pages + (size_t)seq * a.page_stride;
	if (split < eff) {
		/* earlier positions' K/V were written by earlier steps: to L2 now */
		const size_t pg = (size_t)CUDA_ATTN_KT * D * 2;
		for (int kt = kbeg; kt < kend; kt += CUDA_ATTN_KT) {
			const size_t off = cuda_kv_offset(ptab[kt / CUDA_ATTN_KT], g, 0, a.G, D);
			prefetch_l2((const uint8_t *)a.k_pool + off, pg);
			prefetch_l2((const uint8_t *)a.v_pool + off, pg);
		}
	}
	pdl_enter();
	if (split >= eff && !CL)
		return; /* (cluster blocks stay: they take part in the cluster's barriers) */

	load_q(a, Qs, R, hpg, g, t0, kbeg, kend, kv_end);
	for (int i = threadIdx.x; i < R * D; i += blockDim.x)
		Os[i] = 0.0f;
	for (int r = threadIdx.x; r < R; r += blockDim.x) {
		Ms[r] = -INFINITY;
		Ls[r] = 0.0f;
	}
	__syncthreads();

	for (int kt = kbeg; kt < kend && !(a.dbg & 4); kt += CUDA_ATTN_KT) {
		load_kv<DT>(a, Ks, Vs, ptab, g, kt, min(CUDA_ATTN_KT, kend - kt));
		__syncthreads();
		for (int r = warp; r < R; r += ATTN_WARPS) {
			const int pr = a.pos[t0 + r / hpg];
			const int lim = min(kend, pr + 1) - kt; /* causal */
			const int lo = a.win ? pr + 1 - a.win - kt : 0; /* window: keys kt + lo .. */
			if (lim <= 0 || lo >= min(lim, CUDA_ATTN_KT))
				continue;
			const float *qr = Qs + (size_t)r * D;
			float s0 = 0.0f, s1 = 0.0f;
#pragma unroll 16
			for (int d = 0; d < D; d++) {
				float qd = qr[d];
				s0 += qd * Ks[lane * D1 + d];
				s1 += qd * Ks[(lane + 32) * D1 + d];
			}
			if (a.softcap > 0.0f) {
				const float ic = 1.0f / a.softcap;
				s0 = tanhf(s0 * ic) * a.softcap;
				s1 = tanhf(s1 * ic) * a.softcap;
			}
			s0 = lane < lim && lane >= lo ? s0 : -INFINITY;
			s1 = lane + 32 < lim && lane + 32 >= lo ? s1 : -INFINITY;
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
#pragma unroll 8
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

	if constexpr (CL) {
		cluster_combine<DT>(a, Os, Ms, Ls, R, hpg, g, t0, min(eff, a.n_split));
		return;
	}
	if (eff == 1 || (a.dbg & 2)) {
		for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
			const float l = Ls[i / D];
			Os[i] = l > 0.0f ? Os[i] / l : 0.0f;
		}
		__syncthreads();
		write_out(a, Os, nt, hpg, g, t0);
		return;
	}
	for (int r = warp; r < R; r += ATTN_WARPS) {
		const size_t row = (size_t)(t0 + r / hpg) * a.H + g * hpg + r % hpg;
		float *po = a.part_o + (row * a.n_split + split) * D;
		for (int d = lane; d < D; d += WARP)
			po[d] = Os[(size_t)r * D + d];
		if (lane == 0)
			((float2 *)a.part_ml)[row * a.n_split + split] = make_float2(Ms[r], Ls[r]);
	}
	__threadfence();
	__syncthreads();
	if (threadIdx.x == 0) {
		int *c = a.counters + tile * a.G + g;
		last = atomicAdd(c, 1) == eff - 1;
		if (last)
			*c = 0; /* every split has arrived: ready for the next launch */
	}
	__syncthreads();
	if (!last)
		return;
	__threadfence();
	combine_rows(a, Os, R, hpg, g, t0, eff);
	__syncthreads();
	write_out(a, Os, nt, hpg, g, t0);
}

#define ATTN_MAX_SMEM (200 * 1024)

template <int ND, int DT, bool CL>
static int attn_attr(void)
{
	static bool done;
	if (!done) {
		CUDA_CHECK(cudaFuncSetAttribute(attn_kernel<ND, DT, CL>,
		                                cudaFuncAttributeMaxDynamicSharedMemorySize, ATTN_MAX_SMEM));
		done = true;
	}
	return 0;
}

extern "C" int cuda_attn_setup(void)
{
	TRY((attn_attr<1, 0, false>()));
	TRY((attn_attr<2, 0, false>()));
	TRY((attn_attr<4, 0, false>()));
	TRY((attn_attr<8, 0, false>()));
	TRY((attn_attr<2, 64, false>()));
	TRY((attn_attr<4, 128, false>()));
	TRY((attn_attr<2, 64, true>()));
	return attn_attr<4, 128, true>();
}

template <int ND, int DT, bool CL>
static int launch_attn(const struct cuda_attn_args *a, cudaStream_t st)
{
	size_t smem = attn_smem(a->D, a->qt * (a->H / a->G) + 2);
	TRY((attn_attr<ND, DT, CL>()));
	if (smem > ATTN_MAX_SMEM) {
		LOG_ERR("attention tile needs %zu bytes of shared memory (D=%d, H/G=%d)", smem, a->D,
		        a->H / a->G);
		return -EINVAL;
	}
	dim3 grid(a->n_tiles, a->G, a->n_split);
	launch_kc(attn_kernel<ND, DT, CL>, grid, ATTN_THREADS, smem, st,
	          CL ? dim3(1, 1, a->n_split) : dim3(0, 0, 0), *a);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* ---- decode attention, cluster form without shared-memory staging
 *
 * One token per tile, D 64 or 128, at most DEC_RM query heads per KV head.
 * The key range is cut into 32-key chunks spread over the n_split x
 * DEC_WARPS warps of the cluster.  Q·K: lane = key, each lane reads its key
 * row straight from the F16 page and scores it against all H/G query rows
 * (Q in shared memory, broadcast); online softmax per row in registers.
 * P·V: lane = NI consecutive dims, the probabilities of the chunk through
 * shared memory.  Every warp's unnormalised (o, m, l) rows stay in its
 * block's shared memory and are merged across the cluster (distributed
 * shared memory) — one block barrier, two cluster barriers.
 *
 * RW 4 (more than 4 query heads per KV head): two warps share each chunk,
 * one per half of the rows (half the serial work per warp; the chunk's K/V
 * rows are read twice, from L2): warp-unit u = (chunk slot u / 2, rows
 * 4 (u % 2) ..); RW 8: one warp per chunk, all rows. */
#define DEC_WARPS 8
#define DEC_PARTS WARP /* at most one partial per lane of the merging warp */

template <int DT, int RW>
static __global__ void __launch_bounds__(DEC_WARPS *WARP) attn_dec_kernel(struct cuda_attn_args a)
{
	constexpr int D = DT, NI = DT / WARP, W = DEC_WARPS, RM = DEC_RM, SH = RW == 4 ? 1 : 0;
	__shared__ __align__(16) float Qs[RM * D];
	__shared__ __align__(16) float Ps[W][WARP][RM]; /* chunk probabilities [key][row]; scratch */
	__shared__ __align__(16) float Os[W * RM * D];
	__shared__ float Ms[W * RM], Ls[W * RM];
	cg::cluster_group cl = cg::this_cluster();
	const int tile = blockIdx.x, g = blockIdx.y, split = blockIdx.z, ns = a.n_split;
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, hpg = a.H / a.G;
	const int seq = a.tile_seq[tile], t0 = a.tile_tok0[tile], pos = a.pos[t0], kv_end = pos + 1;
	/* the chunks from the one holding the window's first key (kst; 0 without
	 * a window), numbered from c0 */
	const int kst = a.win ? max(0, kv_end - a.win) : 0, c0 = kst / WARP;
	const int n_ch = cdiv(kv_end, WARP) - c0, cpw = cdiv(n_ch, min((ns * W) >> SH, DEC_PARTS)), n_part = cdiv(n_ch, cpw);
	const int wid = split * W + warp, cu = wid >> SH, r0 = (wid & SH) * RW;
	const int cb = min(cu * cpw, n_ch), cbeg = c0 + cb, cend = c0 + min(cb + cpw, n_ch);
	const int32_t *ptab = a.pages + (size_t)seq * a.page_stride;
	const __half *kpool = (const __half *)a.k_pool, *vpool = (const __half *)a.v_pool;
	if (hpg <= ns && !(a.dbg & 32)) /* (push merge: the matching wait comes before the pushes) */
		asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");

	/* earlier positions' K/V were written by earlier steps: the first chunk
	 * into registers now (its new-position row, if any, is read again after
	 * the wait), the others to L2 */
	dec_regs<D> R;
	const bool pre = cbeg < cend && !(a.dbg & 64);
	if (pre)
		dec_load<D>(R, kpool, vpool, ptab, g, a.G, cbeg, kv_end);
	for (int c = pre ? cbeg + 1 : cbeg; c < cend; c++) {
		const size_t off = cuda_kv_offset(ptab[c * WARP / CUDA_ATTN_KT], g, c * WARP % CUDA_ATTN_KT, a.G, D);
		for (int b = lane * 128; b < WARP * D * 2; b += WARP * 128) {
			asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)a.k_pool + off + b));
			asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)a.v_pool + off + b));
		}
	}
	pdl_enter();
	if (a.dbg & 16) /* timing only: an empty kernel */
		return;

	/* Q rows (scaled; rows past hpg zero), and the new k, v by the block
	 * whose warps own the last chunk */
	if (a.dbg & 8) { /* timing only: no q/k/v preparation */
		for (int i = threadIdx.x; i < RM * D; i += blockDim.x)
			Qs[i] = 0.0f;
	} else if (!a.fuse_rope) {
		for (int i = threadIdx.x; i < RM * D; i += blockDim.x) {
			const int r = i / D, d = i % D;
			Qs[i] = r < hpg ? a.q[(size_t)t0 * a.ldq + (g * hpg + r) * D + d] * a.scale : 0.0f;
		}
	} else {
		for (int r = warp; r < RM; r += W) {
			float *s = Qs + (size_t)r * D;
			if (r < hpg) {
				const int h = g * hpg + r;
				head_prep(s, a.q + (size_t)t0 * a.ldq + h * D, a.bq ? a.bq + h * D : nullptr,
				          a.q_norm, a.eps, D, !(a.dbg & 1), pos, a.n_rot, a.neox, a.freq);
				__syncwarp();
				for (int d = lane; d < D; d += WARP)
					s[d] *= a.scale;
			} else {
				for (int d = lane; d < D; d += WARP)
					s[d] = 0.0f;
			}
		}
		const int owner = (((pos / WARP - c0) / cpw) << SH) / W;
		if (split == owner && warp >= W - 2) {
			const bool isk = warp == W - 1; /* (row W - 1 is padding: the heavier k there) */
			float *s = &Ps[warp][0][0]; /* scratch: WARP * RM >= D floats */
			const float *raw = (isk ? a.k_new : a.v_new) + (size_t)t0 * a.ldq + g * D;
			const float *b = isk ? a.bk : a.bv;
			__syncwarp();
			head_prep(s, raw, b ? b + g * D : nullptr, isk ? a.k_norm : nullptr, a.eps, D, isk, pos,
			          a.n_rot, a.neox, a.freq);
			__syncwarp();
			const int page = ptab[pos / CUDA_ATTN_KT];
			__half *dst = (__half *)(isk ? a.k_pool : a.v_pool) +
			              cuda_kv_offset(page, g, pos % CUDA_ATTN_KT, a.G, D) / 2;
			for (int d = lane; d < D; d += WARP)
				dst[d] = __float2half_rn(s[d]);
		}
	}
	__syncthreads();

	if (pre && cbeg == pos / WARP) /* the new position, written since the preload */
		dec_reload<D>(R, kpool, vpool, ptab, g, a.G, cbeg, pos);
	float m[RW], l[RW], o[RW][NI];
	dec_chunks<D, RW>(Qs + r0 * D, Ps[warp], kpool, vpool, ptab, g, a.G, cbeg, (a.dbg & 4) ? cbeg : cend,
	                  kst, kv_end, a.softcap, m, l, o, R, pre); /* (dbg 4, timing only: no key work) */
	/* this warp's partial rows (warps without keys never get read).  Push
	 * (a row per block at most): straight into slot cu of the merging
	 * block's shared memory (block r merges row r; one cluster barrier, then
	 * local reads); else pull: kept here, read across the cluster. */
	const bool push = hpg <= ns && !(a.dbg & 32);
	if (push)
		asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); /* every block has started */
#pragma unroll
	for (int rr = 0; rr < RW; rr++) {
		const int r = r0 + rr;
		const float ls = warp_sum(l[rr]);
		if (r < hpg && push) {
			if (cbeg < cend) {
				float *dst = cl.map_shared_rank(Os + cu * D, r);
#pragma unroll
				for (int i = 0; i < NI; i++)
					dst[NI * lane + i] = o[rr][i];
				if (lane == 0) {
					*cl.map_shared_rank(Ms + cu, r) = m[rr];
					*cl.map_shared_rank(Ls + cu, r) = ls;
				}
			}
		} else if (r < hpg) {
#pragma unroll
			for (int i = 0; i < NI; i++)
				Os[(warp * RM + r) * D + NI * lane + i] = o[rr][i];
			if (lane == 0) {
				Ms[warp * RM + r] = m[rr];
				Ls[warp * RM + r] = ls;
			}
		}
	}
	if (a.dbg & 2) { /* timing only: no merge across the cluster */
		if (push)
			cl.sync(); /* (pushes into other blocks must land before they exit) */
		return;
	}
	cl.sync(); /* every partial is complete (and, pushed, in place) */
	for (int r = split + ns * warp; r < hpg; r += ns * W) {
		/* partial `lane`: pushed into slot lane here, or in the warp (block
		 * pb, warp pw) of chunk slot lane with row r */
		const int gw = (lane << SH) + (SH ? r / RW : 0), pb = gw / W, pw = gw % W;
		const float mj = lane >= n_part ? -INFINITY : push ? Ms[lane] : *cl.map_shared_rank(Ms + pw * RM + r, pb);
		const float lj = lane >= n_part ? 0.0f : push ? Ls[lane] : *cl.map_shared_rank(Ls + pw * RM + r, pb);
		const float M = warp_max(mj), e = __expf(mj - M), L = warp_sum(lj * e);
		const float w = e / L;
		float acc[NI];
#pragma unroll
		for (int i = 0; i < NI; i++)
			acc[i] = 0.0f;
		/* the partials' rows in batches of PB, every load of a batch issued
		 * before the first is used (distributed shared memory round trips) */
		constexpr int PB = NI == 2 ? 16 : 8;
		for (int j0 = 0; j0 < n_part; j0 += PB) {
			float t[PB][NI];
#pragma unroll
			for (int j = 0; j < PB; j++) {
				const int jj = min(j0 + j, n_part - 1), gj = (jj << SH) + (SH ? r / RW : 0);
				const float *src = push ? Os + jj * D
				                        : cl.map_shared_rank(Os + ((gj % W) * RM + r) * D, gj / W);
#pragma unroll
				for (int i = 0; i < NI; i++)
					t[j][i] = src[lane + WARP * i];
			}
#pragma unroll
			for (int j = 0; j < PB; j++) {
				const float wj = __shfl_sync(0xffffffffu, w, j0 + j);
				if (j0 + j < n_part)
#pragma unroll
					for (int i = 0; i < NI; i++)
						acc[i] = fmaf(wj, t[j][i], acc[i]);
			}
		}
		store_row<NI>(a, t0, g * hpg + r, D, acc);
	}
	if (!push)
		cl.sync(); /* keep this block's shared memory until the others have read it */
}

/* An A/B switch from the environment, read once into *cache (-1: unread). */
static bool env_switch(const char *name, int *cache)
{
	if (*cache < 0) {
		const char *e = getenv(name);
		*cache = e && *e && *e != '0';
	}
	return *cache;
}

/* PROMPTFS_CUDA_DEC_NO_SPLIT=1: one warp per chunk for every row (A/B timing) */
static bool dec_no_split(void)
{
	static int v = -1;
	return env_switch("PROMPTFS_CUDA_DEC_NO_SPLIT", &v);
}

template <int DT>
static int launch_attn_dec(const struct cuda_attn_args *a, cudaStream_t st)
{
	dim3 grid(a->n_tiles, a->G, a->n_split);
	if (a->H / a->G > 4 && !dec_no_split())
		launch_kc(attn_dec_kernel<DT, 4>, grid, DEC_WARPS * WARP, 0, st, dim3(1, 1, a->n_split), *a);
	else
		launch_kc(attn_dec_kernel<DT, 8>, grid, DEC_WARPS * WARP, 0, st, dim3(1, 1, a->n_split), *a);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* PROMPTFS_CUDA_OLD_DEC_ATTN=1: the staged cluster kernel (A/B timing) */
static bool old_dec_attn(void)
{
	static int v = -1;
	return env_switch("PROMPTFS_CUDA_OLD_DEC_ATTN", &v);
}

extern "C" int cuda_attn(const struct cuda_attn_args *a, cudaStream_t st)
{
	if (a->n_tiles <= 0)
		return 0;
	if (a->D > CUDA_ATTN_MAX_D || a->D % 2 || a->H % a->G || a->n_split < 1 || a->n_split > 64 ||
	    (a->n_split > 1 && !a->counters && !a->cluster) || (a->cluster && a->n_split > 8) ||
	    a->win < 0 || a->softcap < 0.0f) {
		LOG_ERR("unsupported attention shape D=%d H=%d G=%d n_split=%d", a->D, a->H, a->G,
		        a->n_split);
		return -EINVAL;
	}
	if (a->cluster && (a->D != 64 && a->D != 128)) {
		LOG_ERR("cluster attention needs D 64 or 128 (D=%d)", a->D);
		return -EINVAL;
	}
	if (a->cluster && a->H / a->G <= DEC_RM && !old_dec_attn())
		return a->D == 64 ? launch_attn_dec<64>(a, st) : launch_attn_dec<128>(a, st);
	if (a->D == 64)
		return a->cluster ? launch_attn<2, 64, true>(a, st) : launch_attn<2, 64, false>(a, st);
	if (a->D == 128)
		return a->cluster ? launch_attn<4, 128, true>(a, st) : launch_attn<4, 128, false>(a, st);
	if (a->D <= 32)
		return launch_attn<1, 0, false>(a, st);
	if (a->D <= 64)
		return launch_attn<2, 0, false>(a, st);
	if (a->D <= 128)
		return launch_attn<4, 0, false>(a, st);
	return launch_attn<8, 0, false>(a, st);
}

