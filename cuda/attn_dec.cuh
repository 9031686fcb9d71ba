/*
 * attn_dec.cuh — the inner loop of decode attention, shared by the cluster
 * kernel (attn.cu); kept apart so that other decode kernels can share it.
 *
 * One warp walks 32-key chunks [cbeg, cend) of one KV head g for RM query
 * rows at once (one token; the H/G heads that share g, zero-padded to RM).
 * Q·K: lane = key, each lane reads its key row straight from the F16 page
 * (L2 loads, no shared-memory staging) and scores it against every row of
 * Qs (scaled Q, broadcast from shared memory); online softmax per row in
 * registers.  P·V: lane = NI = D/32 consecutive dims, the chunk's
 * probabilities through the warp's slice of shared memory.  A chunk's K
 * and V rows are all requested at once, before the first is used (one
 * round trip to L2 per chunk; a per-row V loop cost ~10 us per chunk on the
 * H100), and the first chunk's can be requested before the kernel waits
 * for its predecessor (dec_load(); the new position's row is reloaded
 * after the wait, dec_reload()).  The warp ends
 * with its unnormalised running max m (uniform), sum l (this lane's share)
 * and output o (this lane's dims).
 */
#ifndef PROMPTFS_CUDA_ATTN_DEC_CUH
#define PROMPTFS_CUDA_ATTN_DEC_CUH

#include <math.h>

#include "common.cuh"
#include "cuda_ops.h"

#define DEC_RM 8 /* query rows per KV head taken at once */

/* One 32-key chunk's K and V as this lane holds them: K row `lane`
 * (D halves), and V dims NI*lane.. of the first VB rows (D 64: all 32; D
 * 128: 16, the other 16 are loaded in dec_chunk()). */
template <int D> struct dec_regs {
	static constexpr int NI = D / WARP, VB = NI == 2 ? WARP : WARP / 2;
	uint4 k[D / 8];
	uint2 v[VB];
};

static __device__ __forceinline__ size_t dec_base(const int32_t *ptab, int c, int g, int G, int D)
{
	return cuda_kv_offset(ptab[c * WARP / CUDA_ATTN_KT], g, c * WARP % CUDA_ATTN_KT, G, D) / 2;
}

/* V dims of row j for this lane (zero past nk). */
template <int D>
static __device__ __forceinline__ uint2 dec_vrow(const __half *Vp, int j, int nk)
{
	const int lane = threadIdx.x % WARP;
	uint2 r = make_uint2(0u, 0u);
	if (j < nk) {
		if constexpr (D / WARP == 2)
			r.x = __ldcg((const unsigned *)(Vp + (size_t)j * D + 2 * lane));
		else
			r = __ldcg((const uint2 *)(Vp + (size_t)j * D + 4 * lane));
	}
	return r;
}

/* Every load of chunk c, issued at once (rows past kv_end read as zero). */
template <int D>
static __device__ __forceinline__ void dec_load(dec_regs<D> &R, const __half *kpool,
                                                const __half *vpool, const int32_t *ptab, int g,
                                                int G, int c, int kv_end)
{
	const int lane = threadIdx.x % WARP, nk = min(WARP, kv_end - c * WARP);
	const size_t base = dec_base(ptab, c, g, G, D);
	const uint4 *kr = (const uint4 *)(kpool + base + (size_t)lane * D);
#pragma unroll
	for (int i = 0; i < D / 8; i++)
		R.k[i] = lane < nk ? __ldcg(kr + i) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
	for (int j = 0; j < dec_regs<D>::VB; j++)
		R.v[j] = dec_vrow<D>(vpool + base, j, nk);
}

/* Reloads key row `key` (its lane's K and every lane's V dims) of chunk c,
 * loaded before the kernel waited for the one who wrote it. */
template <int D>
static __device__ __forceinline__ void dec_reload(dec_regs<D> &R, const __half *kpool,
                                                  const __half *vpool, const int32_t *ptab, int g,
                                                  int G, int c, int key)
{
	const int lane = threadIdx.x % WARP, j = key - c * WARP;
	const size_t base = dec_base(ptab, c, g, G, D);
	if (lane == j) {
		const uint4 *kr = (const uint4 *)(kpool + base + (size_t)lane * D);
#pragma unroll
		for (int i = 0; i < D / 8; i++)
			R.k[i] = __ldcg(kr + i);
	}
#pragma unroll
	for (int jj = 0; jj < dec_regs<D>::VB; jj++)
		if (jj == j)
			R.v[jj] = dec_vrow<D>(vpool + base, jj, WARP);
}

/* Qs [RM][D] scaled query rows (RM 8, or 4: a warp may take half of a
 * KV head's rows, so that two warps share a chunk); Pw [WARP][DEC_RM] this
 * warp's scratch; ptab: the sequence's page table; keys [kst, kv_end) of
 * the context are seen (kst > 0: a sliding window; chunks start at the one
 * holding kst, so each has a key); cap > 0: scores soft-capped, cap *
 * tanh(s / cap).  pre: chunk cbeg is already in R (dec_load), else every
 * chunk is loaded here. */
template <int D, int RM>
static __device__ __forceinline__ void dec_chunks(const float *Qs, float (*Pw)[DEC_RM],
                                                  const __half *kpool, const __half *vpool,
                                                  const int32_t *ptab, int g, int G, int cbeg,
                                                  int cend, int kst, int kv_end, float cap,
                                                  float (&m)[RM],
                                                  float (&l)[RM], float (&o)[RM][D / WARP],
                                                  dec_regs<D> &R, bool pre)
{
	constexpr int NI = D / WARP, VB = dec_regs<D>::VB;
	static_assert(RM == 8 || RM == 4, "probabilities are stored as float4s");
	const int lane = threadIdx.x % WARP;
#pragma unroll
	for (int r = 0; r < RM; r++) {
		m[r] = -INFINITY;
		l[r] = 0.0f;
#pragma unroll
		for (int i = 0; i < NI; i++)
			o[r][i] = 0.0f;
	}
	for (int c = cbeg; c < cend; c++) {
		if (c != cbeg || !pre)
			dec_load<D>(R, kpool, vpool, ptab, g, G, c, kv_end);
		const int nk = min(WARP, kv_end - c * WARP);
		float s[RM];
#pragma unroll
		for (int r = 0; r < RM; r++)
			s[r] = 0.0f;
#pragma unroll
		for (int i = 0; i < D / 8; i++) {
			const uint4 kk = R.k[i];
			const float2 k0 = __half22float2(*(const __half2 *)&kk.x);
			const float2 k1 = __half22float2(*(const __half2 *)&kk.y);
			const float2 k2 = __half22float2(*(const __half2 *)&kk.z);
			const float2 k3 = __half22float2(*(const __half2 *)&kk.w);
#pragma unroll
			for (int r = 0; r < RM; r++) {
				const float4 qa = *(const float4 *)(Qs + r * D + 8 * i);
				const float4 qb = *(const float4 *)(Qs + r * D + 8 * i + 4);
				float t = s[r];
				t = fmaf(qa.x, k0.x, t);
				t = fmaf(qa.y, k0.y, t);
				t = fmaf(qa.z, k1.x, t);
				t = fmaf(qa.w, k1.y, t);
				t = fmaf(qb.x, k2.x, t);
				t = fmaf(qb.y, k2.y, t);
				t = fmaf(qb.z, k3.x, t);
				t = fmaf(qb.w, k3.y, t);
				s[r] = t;
			}
		}
		if (cap > 0.0f) {
			const float ic = 1.0f / cap;
#pragma unroll
			for (int r = 0; r < RM; r++)
				s[r] = tanhf(s[r] * ic) * cap;
		}
		const bool seen = lane < nk && c * WARP + lane >= kst;
		float p[RM];
#pragma unroll
		for (int r = 0; r < RM; r++) {
			const float sr = seen ? s[r] : -INFINITY;
			const float mn = fmaxf(m[r], warp_max(sr)); /* finite: the chunk has a key */
			const float corr = __expf(m[r] - mn);
			p[r] = __expf(sr - mn);
			l[r] = l[r] * corr + p[r];
#pragma unroll
			for (int i = 0; i < NI; i++)
				o[r][i] *= corr;
			m[r] = mn;
		}
		__syncwarp();
		*(float4 *)&Pw[lane][0] = make_float4(p[0], p[1], p[2], p[3]);
		if constexpr (RM == 8)
			*(float4 *)&Pw[lane][4] = make_float4(p[4], p[5], p[6], p[7]);
		__syncwarp();
		/* P·V: the V rows came with the K rows (batch 0), batch 1 (D 128)
		 * all at once here */
#pragma unroll
		for (int j0 = 0; j0 < WARP; j0 += VB) {
			if (j0 >= nk)
				break;
			if (j0 > 0) {
				const __half *Vp = vpool + dec_base(ptab, c, g, G, D);
#pragma unroll
				for (int j = 0; j < VB; j++)
					R.v[j] = dec_vrow<D>(Vp, j0 + j, nk);
			}
#pragma unroll
			for (int j = 0; j < VB; j++) {
				if (j0 + j >= nk)
					break;
				float v[NI];
				const float2 t0v = __half22float2(*(const __half2 *)&R.v[j].x);
				v[0] = t0v.x, v[1] = t0v.y;
				if constexpr (NI == 4) {
					const float2 t1v = __half22float2(*(const __half2 *)&R.v[j].y);
					v[2] = t1v.x, v[3] = t1v.y;
				}
				const float4 pa = *(const float4 *)&Pw[j0 + j][0];
				float pj[RM];
				pj[0] = pa.x, pj[1] = pa.y, pj[2] = pa.z, pj[3] = pa.w;
				if constexpr (RM == 8) {
					const float4 pb = *(const float4 *)&Pw[j0 + j][4];
					pj[4] = pb.x, pj[5] = pb.y, pj[6] = pb.z, pj[7] = pb.w;
				}
#pragma unroll
				for (int r = 0; r < RM; r++)
#pragma unroll
					for (int i = 0; i < NI; i++)
						o[r][i] = fmaf(pj[r], v[i], o[r][i]);
			}
		}
	}
}

#endif /* PROMPTFS_CUDA_ATTN_DEC_CUH */
