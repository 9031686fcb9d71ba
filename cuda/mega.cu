/*
 * mega.cu — decode of one sequence, one token, as one persistent kernel.
 *
 * Why: a decode step of a small model is a chain of ~120 dependent
 * mat-vecs and attentions whose own work is a few microseconds each; as
 * separate kernels every link pays a launch, a drain and a cold start, and
 * the weights of a kernel can only be fetched once it is resident (PDL
 * gives each one the previous kernel's duration as lead time).  Here one
 * block per SM runs the whole step: every stage is split over all blocks,
 * a grid-wide barrier (an atomic counter in L2) separates dependent
 * stages, and each block asks for its share of the *next layer's* weights
 * (cp.async.bulk.prefetch.L2) a whole layer ahead, so DRAM streams
 * continuously while the dependent chain runs out of L2.
 *
 * Stages per layer (5 barriers):
 *   A  RMSNorm(x) → q8 in shared memory (every block, 896 floats), then the
 *      block's rows of [Wq; Wk; Wv] → qkv.  Layer 0 takes the embedding
 *      row itself (no separate lookup).
 *   B  attention: per KV head g, nbg blocks; each warp walks 32-key chunks
 *      (attn_dec.cuh, the cluster kernel's loop), the block merges its warps
 *      in shared memory; with nbg > 1 the last block of g (atomic ticket)
 *      merges the blocks' partials.  Bias / QK norm / RoPE of q and of the
 *      new k, v happen here (RoPE angles computed once per step), and the
 *      block owning the new position stores k, v in the cache.
 *   C  attention output → q8 (every block), rows of Wo, x += (residual).
 *   D  RMSNorm(x) → q8, rows of gate and up: h = silu(g) * u.
 *   E  h → q8 (every block, 8 threads per 32-group), rows of Wdown, x +=.
 * Then the final norm and the LM head (rows over every warp, four at a
 * time for bandwidth) → logits; sampling stays a separate kernel.
 *
 * Numerics are the layered path's (mmvq.cu, mmvq_fused.cu, attn.cu): the
 * same q8 activation format and rounding, dp4a dot products, f32 softmax;
 * only summation orders differ.  Data written by other blocks during the
 * kernel is read with ld.global.cg (L2), never through L1.
 *
 * Deadlock freedom: the grid is one block per SM, launched cooperatively
 * (every block resident).  The barrier counter and the exit counter return
 * to zero at the end of every launch (the last block to leave resets
 * them); a barrier that waits over 5 s traps (a launch error for the
 * engine) instead of hanging.
 *
 * Taken for: one sequence of one token (a decode graph or an eager step),
 * head dim 64 or 128, H/G <= 8, every matrix a type of the mat-vec
 * kernels, C, H*D and F multiples of 32.  PROMPTFS_CUDA_NO_MEGA=1 turns it
 * off (the layered kernels then run, as they do for batches).
 */
#include <stdlib.h>
#include <string.h>

#include "attn_dec.cuh"
#include "internal.h"
#include "quant.cuh"
#include "rope.cuh"

#define MW 16            /* warps per block */
#define MT (MW * WARP)   /* threads per block */
#define RM DEC_RM        /* query rows per KV head */

struct mega_mat {
	const uint8_t *d; /* row r at d + r * row_bytes */
	int type, K, N, row_bytes;
};

enum { MQ, MK, MV, MO, MGATE, MUP, MDOWN, MMATS };

struct mega_layer {
	struct mega_mat m[MMATS];
	const float *attn_norm, *ffn_norm;  /* [C] */
	const float *bq, *bk, *bv;          /* [H*D], [G*D], [G*D] or NULL */
	const float *q_norm, *k_norm;       /* [D] or NULL */
	__half *k_pool, *v_pool;            /* this layer's pools */
};

struct mega_args {
	const struct mega_layer *layers; /* device [L] */
	int L, C, H, G, D, F, V, n_rot, neox, kmax, solo;
	float eps, scale;
	double log2_base;
	struct mega_mat embd, out;
	const float *out_norm;
	const int32_t *tok, *pos, *pages; /* step metadata: token, position, page table */
	float *x;       /* [C] residual stream */
	float *qkv;     /* [H*D + 2*G*D] */
	float *attn;    /* [H*D] */
	float *h;       /* [F] */
	float *logits;  /* [V] */
	float *part_o;  /* [G][nb][RM][D] block partials of attention */
	float2 *part_ml;/* [G][nb][RM] */
	unsigned *tickets; /* [G] zero between stages */
	unsigned *bar;  /* [2] barrier and exit counters, zero between launches */
	unsigned long long *trace; /* NULL, or [2 * (5L + 2)] globaltimer stamps (timing) */
	int flags;      /* timing experiments: MEGA_NO_PREFETCH, MEGA_NO_WORK */
};
#define MEGA_NO_PREFETCH 1
#define MEGA_NO_WORK 2 /* barriers only: wrong results */
#define MEGA_BACKOFF 4 /* poll the barrier with a 100 ns sleep between reads */
#define MEGA_RELAXED 8 /* poll with relaxed loads, one fence after */

/* Shared memory of a block (dynamic; offsets from mega_smem_layout()). */
struct mega_smem {
	float *af;      /* [kmax] staged activation, f32 */
	int8_t *aq;     /* [kmax] its q8 values */
	float2 *ad;     /* [kmax/32] its q8 scales (d, d * sum) */
	float *red;     /* [4 * MW] reductions */
	float2 *cs;     /* [D/2] RoPE (cos, sin) of this step's position */
	int *flag;
	float *Qs;      /* [RM][D] */
	float (*Ps)[WARP][RM]; /* [MW] */
	float *Os;      /* [MW][RM][D] */
	float *Ms, *Ls; /* [MW][RM] */
	float *nws;     /* [kmax] the norm weight of the staged activation */
	float *xo;      /* [kmax] this block's rows of x (the residual rows it owns) */
	struct mega_layer *ly; /* [L] the layer descriptors */
};

static __host__ __device__ size_t mega_smem_layout(int kmax, int D, int L, struct mega_smem *s,
                                                    uint8_t *base)
{
	size_t o = 0;
#define CARVE(field, type, n)                                            \
	do {                                                             \
		if (s)                                                   \
			s->field = (type)(base + o);                     \
		o += ((size_t)(n) + 15) / 16 * 16;                       \
	} while (0)
	CARVE(af, float *, 4 * (size_t)kmax);
	CARVE(aq, int8_t *, (size_t)kmax);
	CARVE(ad, float2 *, 8 * (size_t)(kmax / 32));
	CARVE(red, float *, 4 * 4 * MW);
	CARVE(cs, float2 *, 8 * (size_t)(D / 2));
	CARVE(flag, int *, 16);
	CARVE(Qs, float *, 4 * (size_t)RM * D);
	CARVE(Ps, float(*)[WARP][RM], 4 * (size_t)MW * WARP * RM);
	CARVE(Os, float *, 4 * (size_t)MW * RM * D);
	CARVE(Ms, float *, 4 * MW * RM);
	CARVE(Ls, float *, 4 * MW * RM);
	CARVE(nws, float *, 4 * (size_t)kmax);
	CARVE(xo, float *, 4 * (size_t)kmax);
	CARVE(ly, struct mega_layer *, sizeof(struct mega_layer) * (size_t)L);
#undef CARVE
	return o;
}

// ---- grid barrier, prefetch

static __device__ __forceinline__ unsigned ld_acquire(const unsigned *p)
{
	unsigned v;
	asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
	return v;
}

static __device__ __forceinline__ unsigned long long globaltimer(void)
{
	unsigned long long t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}

/* Every block of the grid arrives before any leaves; writes before it are
 * visible (at L2) after it. */
static __device__ __forceinline__ unsigned ld_relaxed(const unsigned *p)
{
	unsigned v;
	asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
	return v;
}

static __device__ __forceinline__ void grid_sync(unsigned *bar, unsigned &target,
                                                 unsigned long long *trace, int slot, int flags)
{
	__syncthreads();
	target += gridDim.x;
	if (threadIdx.x == 0) {
		if (trace) /* timing (PROMPTFS_CUDA_MEGA_TRACE): the last block's arrival */
			atomicMax(trace + 2 * slot, globaltimer());
		__threadfence();
		atomicAdd(bar, 1u);
		if ((flags & MEGA_RELAXED) ? ld_relaxed(bar) < target : ld_acquire(bar) < target) {
			const unsigned long long t0 = globaltimer();
			for (;;) {
				if (flags & MEGA_BACKOFF)
					__nanosleep(100);
				if ((flags & MEGA_RELAXED) ? ld_relaxed(bar) >= target : ld_acquire(bar) >= target)
					break;
				if (globaltimer() - t0 > 5000000000ull)
					__trap(); /* a block never arrived: fail the launch, never hang */
			}
		}
		__threadfence();
		if (trace && blockIdx.x == 0)
			trace[2 * slot + 1] = globaltimer();
	}
	__syncthreads();
}

/* [p, p + n) to L2 (L1 too when l1), one 128-byte line per thread at a
 * time: call with the whole block. */
static __device__ __forceinline__ void prefetch_lines(const void *p, size_t n, bool l1)
{
	const uintptr_t a = (uintptr_t)p & ~(uintptr_t)127, e = (uintptr_t)p + n;
	for (uintptr_t q = a + (uintptr_t)threadIdx.x * 128; q < e; q += (uintptr_t)MT * 128) {
		if (l1)
			asm volatile("prefetch.global.L1 [%0];" ::"l"(q));
		else
			asm volatile("prefetch.global.L2 [%0];" ::"l"(q));
	}
}

/* This block's share of every matrix of a layer, to L2. */
static __device__ void prefetch_layer(const struct mega_layer &ly)
{
	for (int i = 0; i < MMATS; i++) {
		const struct mega_mat &m = ly.m[i];
		const size_t bytes = (size_t)m.N * m.row_bytes;
		const size_t b0 = bytes * blockIdx.x / gridDim.x, b1 = bytes * (blockIdx.x + 1) / gridDim.x;
		prefetch_lines(m.d + b0, b1 - b0, false);
	}
}

/* Rows [v0, v1) of m, to L1 (the rows a later stage of this block reads). */
static __device__ __forceinline__ void prefetch_rows(const struct mega_mat &m, int v0, int v1)
{
	if (v1 > v0)
		prefetch_lines(m.d + (size_t)v0 * m.row_bytes, (size_t)(v1 - v0) * m.row_bytes, true);
}

// ---- activations: staged in shared memory as f32 and q8

/* af[0, K) = src (written earlier in this launch: L2 loads), and nws the
 * norm weight nw when there is one (loaded in the same round trip). */
static __device__ void stage_load(const struct mega_smem &sm, const float *src, int K, const float *nw)
{
	for (int i = threadIdx.x; i < K / 4; i += MT) {
		((float4 *)sm.af)[i] = __ldcg((const float4 *)src + i);
		if (nw)
			((float4 *)sm.nws)[i] = ((const float4 *)nw)[i];
	}
}

/* af[0, C) = row tok of the embedding. */
template <int TYPE>
static __device__ void embed_t(const struct mega_smem &sm, const struct mega_mat &e, int tok)
{
	const uint8_t *row = e.d + (size_t)tok * e.row_bytes;
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	if constexpr (TYPE == GGUF_DTYPE_F32 || TYPE == GGUF_DTYPE_F16 || TYPE == GGUF_DTYPE_BF16) {
		for (int i = threadIdx.x; i < e.K; i += MT)
			sm.af[i] = ld_float_weight<TYPE>(row, i);
	} else {
		for (int g = warp; g < e.K / Q8_BLOCK; g += MW) {
			wgroup w;
			wq<TYPE>::load(row, g, w);
			sm.af[g * Q8_BLOCK + lane] = group_elem<TYPE>(w, lane);
		}
	}
}

#define MEGA_TYPES(X) CUDA_QUANT_TYPES(X) X(GGUF_DTYPE_F32) X(GGUF_DTYPE_F16) X(GGUF_DTYPE_BF16)

static __device__ __noinline__ void stage_embed(const struct mega_smem &sm, const struct mega_mat &e, int tok)
{
	switch (e.type) {
#define X(t)                         \
	case t:                      \
		embed_t<t>(sm, e, tok); \
		break;
		MEGA_TYPES(X)
#undef X
	}
}

/* RMS-normalises af[0, K) (norm: by the weight in nws) and quantises it
 * to aq / ad, 8 threads per 32-group (the rounding of quant_group_warp()).
 * Starts and ends with a block barrier. */
static __device__ void stage_quant(const struct mega_smem &sm, int K, bool norm, float eps)
{
	__syncthreads();
	if (norm) {
		float ss = 0.0f;
		for (int i = threadIdx.x; i < K; i += MT)
			ss += sm.af[i] * sm.af[i];
		ss = block_sum(ss, sm.red);
		const float sc = rsqrtf(ss / (float)K + eps);
		for (int i = threadIdx.x; i < K; i += MT)
			sm.af[i] = sm.af[i] * sc * sm.nws[i];
		__syncthreads();
	}
	const int nq = K / 4;
	for (int i0 = threadIdx.x / WARP * WARP; i0 < nq; i0 += MT) {
		const int i = i0 + threadIdx.x % WARP;
		const bool on = i < nq; /* 8-lane groups are whole: nq % 8 == 0 */
		const float4 v = on ? ((const float4 *)sm.af)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
		float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
		for (int o = 1; o < 8; o <<= 1)
			amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
		const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
		const int q0 = __float2int_rn(v.x * id), q1 = __float2int_rn(v.y * id);
		const int q2 = __float2int_rn(v.z * id), q3 = __float2int_rn(v.w * id);
		int s = q0 + q1 + q2 + q3;
#pragma unroll
		for (int o = 1; o < 8; o <<= 1)
			s += __shfl_xor_sync(0xffffffffu, s, o);
		if (on) {
			((int *)sm.aq)[i] = (q0 & 0xFF) | (q1 & 0xFF) << 8 | (q2 & 0xFF) << 16 | (int)((unsigned)q3 << 24);
			if (i % 8 == 0)
				sm.ad[i / 8] = make_float2(d, d * (float)s);
		}
	}
	__syncthreads();
}

// ---- mat-vec rows

/* NR rows (and NR rows of a second matrix of the same type when W2) dotted
 * with the staged activation; this warp's part p of np takes groups (or
 * 4-element quads for float weights) p*32 + lane, stepping 32 * np.  The
 * sums end warp-reduced in every lane. */
template <int TYPE, int NR, bool W2>
static __device__ __forceinline__ void dot_rows(const uint8_t *const *wr, const uint8_t *const *wr2,
                                                int K, int part, int np, const struct mega_smem &sm,
                                                float *acc, float *acc2)
{
	const int lane = threadIdx.x % WARP;
#pragma unroll
	for (int r = 0; r < NR; r++)
		acc[r] = acc2[r] = 0.0f;
	if constexpr (TYPE == GGUF_DTYPE_F32 || TYPE == GGUF_DTYPE_F16 || TYPE == GGUF_DTYPE_BF16) {
		if (K % 4 == 0) {
			for (int e = 4 * (part * WARP + lane); e < K; e += 4 * WARP * np) {
				const float4 x = *(const float4 *)(sm.af + e);
#pragma unroll
				for (int r = 0; r < NR; r++) {
					const float4 w = ldw4<TYPE>(wr[r], e);
					acc[r] += w.x * x.x + w.y * x.y + w.z * x.z + w.w * x.w;
					if (W2) {
						const float4 u = ldw4<TYPE>(wr2[r], e);
						acc2[r] += u.x * x.x + u.y * x.y + u.z * x.z + u.w * x.w;
					}
				}
			}
		} else {
			for (int e = part * WARP + lane; e < K; e += WARP * np) {
				const float x = sm.af[e];
#pragma unroll
				for (int r = 0; r < NR; r++) {
					acc[r] += ld_float_weight<TYPE>(wr[r], e) * x;
					if (W2)
						acc2[r] += ld_float_weight<TYPE>(wr2[r], e) * x;
				}
			}
		}
	} else {
		const int ng = K / Q8_BLOCK;
		for (int g = part * WARP + lane; g < ng; g += WARP * np) {
			wgroup w[NR], w2[NR];
#pragma unroll
			for (int r = 0; r < NR; r++) {
				wq<TYPE>::load(wr[r], g, w[r]);
				if (W2)
					wq<TYPE>::load(wr2[r], g, w2[r]);
			}
			const int4 *ap = (const int4 *)(sm.aq + g * Q8_BLOCK);
			const int4 a0 = ap[0], a1 = ap[1];
			const int a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
			const float2 d = sm.ad[g];
#pragma unroll
			for (int r = 0; r < NR; r++) {
				acc[r] += dot_group<TYPE>(w[r], a, d);
				if (W2)
					acc2[r] += dot_group<TYPE>(w2[r], a, d);
			}
		}
	}
#pragma unroll
	for (int r = 0; r < NR; r++) {
		acc[r] = warp_sum(acc[r]);
		if (W2)
			acc2[r] = warp_sum(acc2[r]);
	}
}

template <int NR, bool W2>
static __device__ __forceinline__ void dot_any(int type, const uint8_t *const *wr, const uint8_t *const *wr2, int K,
                               int part, int np, const struct mega_smem &sm, float *acc, float *acc2)
{
	switch (type) {
#define X(t)                                                                 \
	case t:                                                              \
		dot_rows<t, NR, W2>(wr, wr2, K, part, np, sm, acc, acc2);    \
		break;
		MEGA_TYPES(X)
#undef X
	}
}

/* A stage's matrices: rows of up to 3 matrices (one virtual row range), or
 * gate/up pairs (m2).  Epilogue per row r of a segment: */
enum { EPI_STORE, EPI_ADD, EPI_GLU };
struct mseg {
	const struct mega_mat *m, *m2;
	int v0;    /* first virtual row */
	float *y;  /* y[r] */
	int epi;
	float *res; /* EPI_ADD: the old y[r] at res[r - rbase] (shared memory), updated too */
	int rbase;
};

static __device__ __forceinline__ float silu_m(float x)
{
	return x / (1.0f + __expf(-x));
}

static __device__ __forceinline__ void epilogue(const struct mseg &s, int r, float v, float u)
{
	if (s.epi == EPI_STORE)
		s.y[r] = v;
	else if (s.epi == EPI_ADD) {
		const float nv = s.res[r - s.rbase] + v;
		s.res[r - s.rbase] = nv;
		s.y[r] = nv;
	}
	else
		s.y[r] = silu_m(v) * u;
}

/* NR rows of segment s starting at r (stride MW) by this warp, part p of
 * np; lane 0 gets the sums. */
template <int NR>
static __device__ __forceinline__ void seg_rows(const struct mseg &s, int r, int stride, int part,
                                                int np, const struct mega_smem &sm, float *acc,
                                                float *acc2)
{
	const uint8_t *wr[NR], *wr2[NR];
#pragma unroll
	for (int k = 0; k < NR; k++) {
		wr[k] = s.m->d + (size_t)(r + k * stride) * s.m->row_bytes;
		wr2[k] = s.m2 ? s.m2->d + (size_t)(r + k * stride) * s.m2->row_bytes : nullptr;
	}
	if constexpr (NR > 2) {
		/* (callers take four rows at once only without a second matrix) */
		dot_any<NR, false>(s.m->type, wr, wr, s.m->K, part, np, sm, acc, acc2);
	} else if (s.m2 && s.m2->type == s.m->type) {
		dot_any<NR, true>(s.m->type, wr, wr2, s.m->K, part, np, sm, acc, acc2);
	} else {
		dot_any<NR, false>(s.m->type, wr, wr, s.m->K, part, np, sm, acc, acc2);
		if (s.m2) {
			float t[NR];
			dot_any<NR, false>(s.m2->type, wr2, wr2, s.m2->K, part, np, sm, acc2, t);
		}
	}
}

static __device__ __forceinline__ int seg_of(const struct mseg *sg, int ns, int v)
{
	int i = 0;
	while (i + 1 < ns && v >= sg[i + 1].v0)
		i++;
	return i;
}

/* Virtual rows [v0, v1) of the segments (all of one row length K) by the
 * block's warps.  Rows with K beyond 32 groups and fewer rows than warps
 * get several warps each (parts, summed in order through shared memory). */
static __device__ __noinline__ void block_rows(const struct mseg *sg, int ns, int v0, int v1,
                                  const struct mega_smem &sm)
{
	const int n = v1 - v0, warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
	if (n <= 0)
		return;
	const int K = sg[0].m->K;
	const int t0 = sg[0].m->type;
	const bool flt = t0 == GGUF_DTYPE_F32 || t0 == GGUF_DTYPE_F16 || t0 == GGUF_DTYPE_BF16;
	const int units = flt ? (K % 4 == 0 ? K / 4 : K) : K / Q8_BLOCK;
	int np = 1;
	if (2 * n <= MW && units > WARP)
		np = min(min(MW / n, 4), cdiv(units, WARP));
	if (np == 1) {
		for (int i = warp; i < n;) {
			const int v = v0 + i, si = seg_of(sg, ns, v);
			const struct mseg &s = sg[si];
			const int r = v - s.v0, vend = si + 1 < ns ? sg[si + 1].v0 : v1;
			float acc[4], acc2[4];
			int nr = 1;
			if (!s.m2 && v + 3 * MW < min(vend, v1))
				nr = 4;
			else if (v + MW < min(vend, v1))
				nr = 2;
			if (nr == 4)
				seg_rows<4>(s, r, MW, 0, 1, sm, acc, acc2);
			else if (nr == 2)
				seg_rows<2>(s, r, MW, 0, 1, sm, acc, acc2);
			else
				seg_rows<1>(s, r, MW, 0, 1, sm, acc, acc2);
			if (lane == 0)
				for (int k = 0; k < nr; k++)
					epilogue(s, r + k * MW, acc[k], acc2[k]);
			i += nr * MW;
		}
		return;
	}
	/* n * np <= MW: slot = row, one pass */
	const int slot = warp / np, part = warp % np;
	float *red = sm.red, *red2 = sm.red + 2 * MW;
	if (slot < n) {
		const int v = v0 + slot, si = seg_of(sg, ns, v);
		float acc[1], acc2[1];
		seg_rows<1>(sg[si], v - sg[si].v0, MW, part, np, sm, acc, acc2);
		if (lane == 0) {
			red[slot * np + part] = acc[0];
			red2[slot * np + part] = acc2[0];
		}
	}
	__syncthreads();
	if (threadIdx.x < n) {
		const int v = v0 + threadIdx.x, si = seg_of(sg, ns, v);
		float s = 0.0f, u = 0.0f;
		for (int p = 0; p < np; p++) {
			s += red[threadIdx.x * np + p];
			u += red2[threadIdx.x * np + p];
		}
		epilogue(sg[si], v - sg[si].v0, s, u);
	}
	__syncthreads();
}

/* This block's share [v0, v1) of n virtual rows. */
static __device__ __forceinline__ void block_share(int n, int *v0, int *v1)
{
	*v0 = (int)((long long)n * blockIdx.x / gridDim.x);
	*v1 = (int)((long long)n * (blockIdx.x + 1) / gridDim.x);
}

// ---- attention

/* Blocks per KV head (nbg) and 32-key chunks per warp (cpw) for n_ch
 * chunks: one block while each warp has at most `solo` chunks, else up
 * to nb / G blocks. */
static __device__ __forceinline__ void attn_plan(int n_ch, int G, int solo, int *nbg, int *cpw)
{
	const int maxb = max(1, (int)gridDim.x / G);
	int b = min(cdiv(n_ch, solo * MW), maxb);
	const int c = cdiv(n_ch, b * MW);
	*cpw = c;
	*nbg = cdiv(n_ch, c * MW);
}

/* Stage A side job: the K/V rows this block's attention will read, to L2. */
static __device__ void attn_prefetch(const struct mega_args &a, const struct mega_layer &ly, int pos)
{
	const int n = pos + 1, n_ch = cdiv(n, WARP);
	int nbg, cpw;
	attn_plan(n_ch, a.G, a.solo, &nbg, &cpw);
	const int b = blockIdx.x;
	if (b >= a.G * nbg)
		return;
	const int g = b / nbg, j = b % nbg;
	const int c0 = j * MW * cpw, c1 = min(c0 + MW * cpw, n_ch);
	for (int c = c0 + (int)threadIdx.x; c < c1; c += MT) {
		const size_t off = cuda_kv_offset(a.pages[c * WARP / CUDA_ATTN_KT], g, c * WARP % CUDA_ATTN_KT, a.G, a.D);
		const size_t nb = (size_t)min(WARP, n - c * WARP) * a.D * 2;
		for (size_t o = 0; o < nb; o += 128) {
			asm volatile("prefetch.global.L2 [%0];" ::"l"((const uint8_t *)ly.k_pool + off + o));
			asm volatile("prefetch.global.L2 [%0];" ::"l"((const uint8_t *)ly.v_pool + off + o));
		}
	}
}

template <int D>
static __device__ __noinline__ void attn_stage(const struct mega_args &a, const struct mega_layer &ly,
                                               int pos, const struct mega_smem &sm,
                                               unsigned long long *st)
{
	unsigned long long ts = st ? globaltimer() : 0;
	constexpr int NI = D / WARP;
	const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, hpg = a.H / a.G;
	const int n = pos + 1, n_ch = cdiv(n, WARP);
	int nbg, cpw;
	attn_plan(n_ch, a.G, a.solo, &nbg, &cpw);
	const int b = blockIdx.x;
	if (b >= a.G * nbg)
		return;
	const int g = b / nbg, j = b % nbg;

	/* q rows (bias, QK norm, RoPE, scale); rows past hpg are zero */
	if (warp < RM) {
		float *s = sm.Qs + warp * D;
		if (warp < hpg) {
			const int h = g * hpg + warp;
			for (int d = lane; d < D; d += WARP)
				s[d] = __ldcg(a.qkv + h * D + d) + (ly.bq ? ly.bq[h * D + d] : 0.0f);
			head_prep_cs(s, nullptr, ly.q_norm, a.eps, D, true, a.n_rot, a.neox, sm.cs);
			for (int d = lane; d < D; d += WARP)
				s[d] *= a.scale;
		} else {
			for (int d = lane; d < D; d += WARP)
				s[d] = 0.0f;
		}
	}
	/* the new k, v: prepared and stored by the block whose warps own the
	 * last chunk, before any of them reads it */
	if (j == (n_ch - 1) / cpw / MW && (warp == RM || warp == RM + 1)) {
		const bool isk = warp == RM;
		float *s = &sm.Ps[warp][0][0]; /* scratch, WARP * RM >= D floats */
		const int off = (isk ? a.H * D : (a.H + a.G) * D) + g * D;
		const float *bias = isk ? ly.bk : ly.bv;
		for (int d = lane; d < D; d += WARP)
			s[d] = __ldcg(a.qkv + off + d) + (bias ? bias[g * D + d] : 0.0f);
		head_prep_cs(s, nullptr, isk ? ly.k_norm : nullptr, a.eps, D, isk, a.n_rot, a.neox, sm.cs);
		__half *dst = (isk ? ly.k_pool : ly.v_pool) +
		              cuda_kv_offset(a.pages[pos / CUDA_ATTN_KT], g, pos % CUDA_ATTN_KT, a.G, D) / 2;
		for (int d = lane; d < D; d += WARP)
			dst[d] = __float2half_rn(s[d]);
	}
	__syncthreads();
	if (st && b == 0 && threadIdx.x == 0) { /* timing: q/k/v preparation */
		const unsigned long long t = globaltimer();
		atomicAdd(st, t - ts);
		ts = t;
	}

	const int u = j * MW + warp, cbeg = min(u * cpw, n_ch), cend = min(cbeg + cpw, n_ch);
	float m[RM], l[RM], o[RM][NI];
	dec_chunks<D>(sm.Qs, sm.Ps[warp], ly.k_pool, ly.v_pool, a.pages, g, a.G, cbeg, cend, n, m, l, o);
#pragma unroll
	for (int r = 0; r < RM; r++) {
		const float ls = warp_sum(l[r]);
		if (r < hpg) {
#pragma unroll
			for (int i = 0; i < NI; i++)
				sm.Os[(warp * RM + r) * D + NI * lane + i] = o[r][i];
			if (lane == 0) {
				sm.Ms[warp * RM + r] = m[r]; /* -inf for a warp without keys */
				sm.Ls[warp * RM + r] = ls;
			}
		}
	}
	__syncthreads();
	if (st && b == 0 && threadIdx.x == 0) { /* timing: the chunks */
		const unsigned long long t = globaltimer();
		atomicAdd(st + 1, t - ts);
		ts = t;
	}

	/* the block's warps merged: (r, d) per thread */
	const int nw = min(MW, cdiv(n_ch - j * MW * cpw, cpw)); /* warps with keys */
	for (int t = threadIdx.x; t < hpg * D; t += MT) {
		const int r = t / D, d = t % D;
		float M = -INFINITY;
		for (int w = 0; w < nw; w++)
			M = fmaxf(M, sm.Ms[w * RM + r]);
		float L = 0.0f, O = 0.0f;
		for (int w = 0; w < nw; w++) {
			const float e = __expf(sm.Ms[w * RM + r] - M);
			L += e * sm.Ls[w * RM + r];
			O += e * sm.Os[(w * RM + r) * D + d];
		}
		if (nbg == 1) {
			a.attn[(g * hpg + r) * D + d] = O / L;
		} else {
			const size_t pi = ((size_t)g * gridDim.x + j) * RM + r;
			a.part_o[pi * D + d] = O;
			if (d == 0)
				a.part_ml[pi] = make_float2(M, L);
		}
	}
	if (nbg == 1)
		return;
	/* several blocks: the last one of g to finish merges their partials */
	__syncthreads();
	if (threadIdx.x == 0) {
		__threadfence();
		const unsigned t = atomicAdd(a.tickets + g, 1u);
		sm.flag[0] = t == (unsigned)nbg - 1;
		if (sm.flag[0]) {
			a.tickets[g] = 0; /* every block of g has counted */
			__threadfence();
		}
	}
	__syncthreads();
	if (!sm.flag[0])
		return;
	for (int t = threadIdx.x; t < hpg * D; t += MT) {
		const int r = t / D, d = t % D;
		const size_t p0 = (size_t)g * gridDim.x * RM + r;
		float M = -INFINITY;
		for (int jj = 0; jj < nbg; jj++)
			M = fmaxf(M, __ldcg(&a.part_ml[p0 + (size_t)jj * RM].x));
		float L = 0.0f, O = 0.0f;
		for (int jj = 0; jj < nbg; jj++) {
			const float2 ml = __ldcg(&a.part_ml[p0 + (size_t)jj * RM]);
			const float e = __expf(ml.x - M);
			L += e * ml.y;
			O += e * __ldcg(&a.part_o[(p0 + (size_t)jj * RM) * D + d]);
		}
		a.attn[(g * hpg + r) * D + d] = O / L;
	}
}

// ---- the kernel

/* Timing (trace only): block 0's time since *t0, added to acc. */
static __device__ __forceinline__ void sub_trace(unsigned long long *tr, int idx,
                                                 unsigned long long &t0)
{
	if (tr && blockIdx.x == 0 && threadIdx.x == 0) {
		const unsigned long long t = globaltimer();
		atomicAdd(tr + idx, t - t0);
		t0 = t;
	}
}

static __global__ void __launch_bounds__(MT, 1) mega_kernel(const __grid_constant__ struct mega_args a)
{
	extern __shared__ __align__(16) uint8_t msm[];
	struct mega_smem sm;
	mega_smem_layout(a.kmax, a.D, a.L, &sm, msm);
	unsigned target = 0;
	const int pos = a.pos[0], tok = a.tok[0];
	const int HD = a.H * a.D, GD = a.G * a.D;
	const bool work = !(a.flags & MEGA_NO_WORK), pf = !(a.flags & MEGA_NO_PREFETCH);
	unsigned long long *tr = a.trace;
	const int TS = 2 * (5 * a.L + 2); /* first sub-trace accumulator */
	const long long clk0 = clock64();
	if (tr && blockIdx.x == 0 && threadIdx.x == 0)
		tr[2 * (5 * a.L + 1)] = globaltimer();

	/* rows this block owns in each stage (the same every layer) */
	int qv0, qv1, cv0, cv1, fv0, fv1;
	block_share(HD + 2 * GD, &qv0, &qv1);
	block_share(a.C, &cv0, &cv1);
	block_share(a.F, &fv0, &fv1);

	/* layer descriptors to shared memory; RoPE angles of this position */
	for (int i = threadIdx.x; i < a.L * (int)(sizeof(struct mega_layer) / 4); i += MT)
		((int *)sm.ly)[i] = ((const int *)a.layers)[i];
	for (int i = threadIdx.x; i < a.n_rot / 2; i += MT)
		sm.cs[i] = rope_cs(pos, i, a.n_rot, a.log2_base);
	__syncthreads();
	if (pf) {
		const struct mega_layer &l0 = sm.ly[0];
		prefetch_rows(l0.m[MQ], min(qv0, HD), min(qv1, HD));
		prefetch_rows(l0.m[MK], min(max(qv0 - HD, 0), GD), min(max(qv1 - HD, 0), GD));
		prefetch_rows(l0.m[MV], min(max(qv0 - HD - GD, 0), GD), min(max(qv1 - HD - GD, 0), GD));
		prefetch_layer(l0);
	}

	for (int il = 0; il < a.L; il++) {
		const struct mega_layer &ly = sm.ly[il];
		unsigned long long ts = 0;
		if (pf) {
			prefetch_rows(ly.m[MO], cv0, cv1); /* stage C, to L1 */
			if (il + 1 < a.L)
				prefetch_layer(sm.ly[il + 1]); /* the next layer, to L2 */
		}

		/* A: norm, Q K V */
		if (il == 0) {
			stage_embed(sm, a.embd, tok);
			for (int i = threadIdx.x; i < a.C / 4; i += MT)
				((float4 *)sm.nws)[i] = ((const float4 *)ly.attn_norm)[i];
			__syncthreads();
			if (blockIdx.x == 0)
				for (int i = threadIdx.x; i < a.C; i += MT)
					a.x[i] = sm.af[i];
			for (int i = cv0 + (int)threadIdx.x; i < cv1; i += MT)
				sm.xo[i - cv0] = sm.af[i];
		} else {
			stage_load(sm, a.x, a.C, ly.attn_norm);
		}
		stage_quant(sm, a.C, true, a.eps);
		if (pf)
			attn_prefetch(a, ly, pos);
		if (work) {
			const struct mseg sg[3] = {
				{&ly.m[MQ], nullptr, 0, a.qkv, EPI_STORE, nullptr, 0},
				{&ly.m[MK], nullptr, HD, a.qkv + HD, EPI_STORE, nullptr, 0},
				{&ly.m[MV], nullptr, HD + GD, a.qkv + HD + GD, EPI_STORE, nullptr, 0},
			};
			block_rows(sg, 3, qv0, qv1, sm);
		}
		grid_sync(a.bar, target, tr, 5 * il + 0, a.flags);

		/* B: attention */
		if (pf) {
			prefetch_rows(ly.m[MGATE], fv0, fv1); /* stage D, to L1 */
			prefetch_rows(ly.m[MUP], fv0, fv1);
		}
		if (tr)
			ts = globaltimer();
		if (!work)
			;
		else if (a.D == 64)
			attn_stage<64>(a, ly, pos, sm, tr ? tr + TS : nullptr);
		else
			attn_stage<128>(a, ly, pos, sm, tr ? tr + TS : nullptr);
		sub_trace(tr, TS + 3, ts);
		grid_sync(a.bar, target, tr, 5 * il + 1, a.flags);

		/* C: wo + residual */
		if (pf)
			prefetch_rows(ly.m[MDOWN], cv0, cv1); /* stage E, to L1 */
		stage_load(sm, a.attn, HD, nullptr);
		stage_quant(sm, HD, false, 0.0f);
		if (work) {
			const struct mseg sg = {&ly.m[MO], nullptr, 0, a.x, EPI_ADD, sm.xo, cv0};
			block_rows(&sg, 1, cv0, cv1, sm);
		}
		grid_sync(a.bar, target, tr, 5 * il + 2, a.flags);

		/* D: norm, gate/up, SwiGLU */
		if (pf && il + 1 < a.L) { /* the next layer's stage A, to L1 */
			const struct mega_layer &ln = sm.ly[il + 1];
			prefetch_rows(ln.m[MQ], min(qv0, HD), min(qv1, HD));
			prefetch_rows(ln.m[MK], min(max(qv0 - HD, 0), GD), min(max(qv1 - HD, 0), GD));
			prefetch_rows(ln.m[MV], min(max(qv0 - HD - GD, 0), GD), min(max(qv1 - HD - GD, 0), GD));
		}
		stage_load(sm, a.x, a.C, ly.ffn_norm);
		stage_quant(sm, a.C, true, a.eps);
		if (work) {
			const struct mseg sg = {&ly.m[MGATE], &ly.m[MUP], 0, a.h, EPI_GLU, nullptr, 0};
			block_rows(&sg, 1, fv0, fv1, sm);
		}
		grid_sync(a.bar, target, tr, 5 * il + 3, a.flags);

		/* E: down + residual */
		stage_load(sm, a.h, a.F, nullptr);
		stage_quant(sm, a.F, false, 0.0f);
		if (work) {
			const struct mseg sg = {&ly.m[MDOWN], nullptr, 0, a.x, EPI_ADD, sm.xo, cv0};
			block_rows(&sg, 1, cv0, cv1, sm);
		}
		grid_sync(a.bar, target, tr, 5 * il + 4, a.flags);
	}

	/* final norm, LM head */
	stage_load(sm, a.x, a.C, a.out_norm);
	stage_quant(sm, a.C, true, a.eps);
	if (work) {
		const struct mseg sg = {&a.out, nullptr, 0, a.logits, EPI_STORE, nullptr, 0};
		int v0, v1;
		block_share(a.V, &v0, &v1);
		block_rows(&sg, 1, v0, v1, sm);
	}
	/* the next step's first layer, to L2 while sampling runs */
	if (pf)
		prefetch_layer(sm.ly[0]);
	__syncthreads();
	if (threadIdx.x == 0) {
		if (tr)
			atomicMax(tr + 2 * (5 * a.L), globaltimer());
		if (tr && blockIdx.x == 0)
			atomicAdd(tr + TS + 2, (unsigned long long)(clock64() - clk0));
		__threadfence();
		if (atomicAdd(a.bar + 1, 1u) == gridDim.x - 1) {
			/* every block is past its last barrier: reset for the next launch */
			a.bar[0] = 0;
			a.bar[1] = 0;
			__threadfence();
		}
	}
}

// ---- host

static struct mega_mat mm(const struct cuda_mat *m)
{
	struct mega_mat r = {(const uint8_t *)m->d, m->type, m->K, m->N, (int)m->row_bytes};
	return r;
}

static bool env_on(const char *name)
{
	const char *e = getenv(name);
	return e && *e && strcmp(e, "0") != 0;
}

/* Why the persistent kernel cannot take this model (NULL: it can). */
static const char *unsupported(const struct eng_backend *be)
{
	const struct eng_config *c = &be->cfg;
	const int hpg = c->n_head / c->n_head_kv;
	if (c->head_dim != 64 && c->head_dim != 128)
		return "head dim is not 64 or 128";
	if (hpg > RM || hpg + 2 > MW)
		return "more than 8 query heads per KV head";
	if (c->n_embd % 32 || (c->n_head * c->head_dim) % 32 || c->n_ff % 32)
		return "a width is not a multiple of 32";
	if (c->n_rot > c->head_dim || c->n_rot % 2)
		return "rotary dims";
	for (int l = 0; l < c->n_layer; l++) {
		const struct cuda_layer_w *L = &be->layers[l];
		const struct cuda_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
		for (int i = 0; i < MMATS; i++)
			if (!cuda_matvec_supported(ms[i]->type) || ms[i]->row_bytes > (size_t)INT32_MAX)
				return "a matrix type";
		if (L->wq.K != c->n_embd || L->wk.K != c->n_embd || L->wv.K != c->n_embd ||
		    L->wo.K != c->n_head * c->head_dim || L->gate.K != c->n_embd || L->up.K != c->n_embd ||
		    L->down.K != c->n_ff || L->wq.N != c->n_head * c->head_dim ||
		    L->wk.N != c->n_head_kv * c->head_dim || L->wv.N != c->n_head_kv * c->head_dim ||
		    L->wo.N != c->n_embd || L->gate.N != c->n_ff || L->up.N != c->n_ff ||
		    L->down.N != c->n_embd)
			return "matrix shapes";
	}
	if (be->output.K != c->n_embd || be->tok_embd.K != c->n_embd)
		return "embedding shapes";
	return NULL;
}

extern "C" int cuda_mega_init(struct eng_backend *be)
{
	const struct eng_config *c = &be->cfg;
	be->mega = false;
	if (!env_on("PROMPTFS_CUDA_MEGA") || env_on("PROMPTFS_CUDA_NO_MEGA"))
		return 0;
	const char *why = unsupported(be);
	if (why) {
		LOG_INFO("persistent decode kernel not used: %s", why);
		return 0;
	}
	be->mega_kmax = c->n_embd;
	if (c->n_head * c->head_dim > be->mega_kmax)
		be->mega_kmax = c->n_head * c->head_dim;
	if (c->n_ff > be->mega_kmax)
		be->mega_kmax = c->n_ff;
	be->mega_smem = mega_smem_layout(be->mega_kmax, c->head_dim, c->n_layer, NULL, NULL);
	int optin = 0, coop = 0, per_sm = 0;
	CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, be->dev));
	CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, be->dev));
	if (!coop || be->mega_smem > (size_t)optin) {
		LOG_INFO("persistent decode kernel not used: %s", coop ? "shared memory" : "no cooperative launch");
		return 0;
	}
	CUDA_CHECK(cudaFuncSetAttribute(mega_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                                (int)be->mega_smem));
	CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mega_kernel, MT, be->mega_smem));
	if (per_sm < 1) {
		LOG_INFO("persistent decode kernel not used: no block fits an SM");
		return 0;
	}
	be->mega_blocks = be->n_sm;
	if (getenv("PROMPTFS_CUDA_MEGA_BLOCKS")) { /* experiments: fewer blocks */
		int nb = atoi(getenv("PROMPTFS_CUDA_MEGA_BLOCKS"));
		if (nb >= 1 && nb < be->mega_blocks)
			be->mega_blocks = nb;
	}
	be->mega_solo = getenv("PROMPTFS_CUDA_MEGA_SOLO") ? atoi(getenv("PROMPTFS_CUDA_MEGA_SOLO")) : 2;
	if (be->mega_solo < 1)
		be->mega_solo = 1;

	const int L = c->n_layer, G = c->n_head_kv, D = c->head_dim, nb = be->mega_blocks;
	struct mega_layer *ly = (struct mega_layer *)calloc((size_t)L, sizeof(*ly));
	if (!ly)
		return -ENOMEM;
	for (int l = 0; l < L; l++) {
		const struct cuda_layer_w *s = &be->layers[l];
		const struct cuda_mat *ms[MMATS] = {&s->wq, &s->wk, &s->wv, &s->wo, &s->gate, &s->up, &s->down};
		for (int i = 0; i < MMATS; i++)
			ly[l].m[i] = mm(ms[i]);
		ly[l].attn_norm = s->attn_norm, ly[l].ffn_norm = s->ffn_norm;
		ly[l].bq = s->bq, ly[l].bk = s->bk, ly[l].bv = s->bv;
		ly[l].q_norm = s->q_norm, ly[l].k_norm = s->k_norm;
		uint8_t *kpool = (uint8_t *)be->kv + (size_t)(2 * l) * be->kv_pool_bytes;
		ly[l].k_pool = (__half *)kpool;
		ly[l].v_pool = (__half *)(kpool + be->kv_pool_bytes);
	}
	const size_t lb = (size_t)L * sizeof(*ly), pob = (size_t)G * nb * RM * D * 4,
	             pmb = (size_t)G * nb * RM * 8, cb = 64 + 4 * (size_t)G;
	cudaError_t e = cudaMalloc(&be->mega_buf, lb + pob + pmb + cb + 3 * 256);
	if (e != cudaSuccess) {
		free(ly);
		(void)cudaGetLastError();
		LOG_WARN("persistent decode kernel not used: %s", cudaGetErrorString(e));
		return 0;
	}
	uint8_t *p = (uint8_t *)be->mega_buf;
	be->mega_layers = p;
	p += (lb + 255) / 256 * 256;
	be->mega_part_o = (float *)p;
	p += (pob + 255) / 256 * 256;
	be->mega_part_ml = p;
	p += (pmb + 255) / 256 * 256;
	be->mega_sync = (unsigned *)p;
	e = cudaMemcpy(be->mega_layers, ly, lb, cudaMemcpyHostToDevice);
	free(ly);
	CUDA_CHECK(e);
	CUDA_CHECK(cudaMemset(be->mega_sync, 0, cb));
	be->mega_flags = getenv("PROMPTFS_CUDA_MEGA_FLAGS") ? atoi(getenv("PROMPTFS_CUDA_MEGA_FLAGS")) : 0;
	if (be->mega_flags)
		LOG_WARN("PROMPTFS_CUDA_MEGA_FLAGS=%d: timing experiment%s", be->mega_flags,
		         be->mega_flags & MEGA_NO_WORK ? " (results are wrong)" : "");
	if (env_on("PROMPTFS_CUDA_MEGA_TRACE")) {
		const size_t tb = sizeof(unsigned long long) * (2 * (5 * (size_t)L + 2) + 4);
		CUDA_CHECK(cudaMalloc((void **)&be->mega_trace, tb));
		CUDA_CHECK(cudaMemset(be->mega_trace, 0, tb));
	}
	be->mega = true;
	LOG_INFO("persistent decode kernel: %d blocks x %d threads, %zu bytes of shared memory", nb, MT,
	         be->mega_smem);
	return 0;
}

/* Timing (PROMPTFS_CUDA_MEGA_TRACE=1): after a synchronised launch, adds
 * its stage times — the slowest block's work since the previous barrier,
 * then the barrier itself until block 0 leaves it — per stage kind. */
extern "C" void cuda_mega_trace_add(struct eng_backend *be)
{
	const int L = be->cfg.n_layer, n = 2 * (5 * L + 2) + 4;
	unsigned long long *t = (unsigned long long *)malloc(sizeof(*t) * n);
	if (!t || cudaMemcpy(t, be->mega_trace, sizeof(*t) * n, cudaMemcpyDeviceToHost) != cudaSuccess) {
		free(t);
		return;
	}
	unsigned long long prev = t[2 * (5 * L + 1)];
	const unsigned long long start = prev;
	for (int s = 0; s < 5 * L; s++) {
		be->mega_tr[s % 5][0] += (double)(t[2 * s] - prev);
		be->mega_tr[s % 5][1] += (double)(t[2 * s + 1] - t[2 * s]);
		prev = t[2 * s + 1];
	}
	be->mega_tr[5][0] += (double)(t[2 * 5 * L] - prev);
	be->mega_tr[6][0] += (double)(t[2 * 5 * L] - start);
	for (int i = 0; i < 4; i++) /* cumulative on the device */
		be->mega_sub[i] = (double)t[2 * (5 * L + 2) + i];
	be->mega_tr_n++;
	free(t);
}

static void trace_report(struct eng_backend *be)
{
	static const char *const names[] = {"A norm+qkv", "B attention", "C wo", "D norm+gate/up",
	                                    "E down", "head", "kernel"};
	const double n = be->mega_tr_n ? (double)be->mega_tr_n : 1.0, L = be->cfg.n_layer;
	fprintf(stderr, "persistent kernel, %llu launches (globaltimer; us per layer / per launch):\n",
	        (unsigned long long)be->mega_tr_n);
	fprintf(stderr, "%-16s %12s %12s %14s\n", "stage", "work us", "barrier us", "sum us/launch");
	for (int k = 0; k < 5; k++)
		fprintf(stderr, "%-16s %12.2f %12.2f %14.1f\n", names[k], be->mega_tr[k][0] / n / L / 1e3,
		        be->mega_tr[k][1] / n / L / 1e3, (be->mega_tr[k][0] + be->mega_tr[k][1]) / n / 1e3);
	fprintf(stderr, "%-16s %12.2f %12s %14.1f\n", names[5], be->mega_tr[5][0] / n / 1e3, "-",
	        be->mega_tr[5][0] / n / 1e3);
	fprintf(stderr, "%-16s %12s %12s %14.1f\n", names[6], "-", "-", be->mega_tr[6][0] / n / 1e3);
	fprintf(stderr, "attention in block 0, us per layer: q/k/v prep %.2f, chunks %.2f, whole %.2f\n",
	        be->mega_sub[0] / n / L / 1e3, be->mega_sub[1] / n / L / 1e3, be->mega_sub[3] / n / L / 1e3);
	fprintf(stderr, "SM clock of block 0: %.0f MHz (clock64 over the kernel / globaltimer)\n",
	        1e3 * be->mega_sub[2] / be->mega_tr[6][0]);
}

extern "C" void cuda_mega_free(struct eng_backend *be)
{
	if (be->mega_trace && be->mega_tr_n)
		trace_report(be);
	cudaFree(be->mega_buf);
	cudaFree(be->mega_trace);
	be->mega_buf = NULL;
	be->mega_trace = NULL;
	be->mega = false;
}

extern "C" int cuda_mega_launch(struct eng_backend *be, const int32_t *tok, const int32_t *pos,
                                const int32_t *pages, cudaStream_t st)
{
	const struct eng_config *c = &be->cfg;
	struct mega_args a;
	memset(&a, 0, sizeof(a));
	a.layers = (const struct mega_layer *)be->mega_layers;
	a.L = c->n_layer, a.C = c->n_embd, a.H = c->n_head, a.G = c->n_head_kv, a.D = c->head_dim;
	a.F = c->n_ff, a.V = c->n_vocab, a.n_rot = c->n_rot;
	a.neox = c->rope_type == ENG_ROPE_TYPE_NEOX;
	a.kmax = be->mega_kmax, a.solo = be->mega_solo;
	a.eps = c->rms_eps, a.scale = 1.0f / sqrtf((float)c->head_dim);
	a.log2_base = log2((double)c->rope_base);
	a.embd = mm(&be->tok_embd), a.out = mm(&be->output), a.out_norm = be->output_norm;
	a.tok = tok, a.pos = pos, a.pages = pages;
	a.x = be->x, a.qkv = be->qkv, a.attn = be->attn, a.h = be->ffn_h, a.logits = be->logits;
	a.part_o = be->mega_part_o, a.part_ml = (float2 *)be->mega_part_ml;
	a.tickets = be->mega_sync + 16, a.bar = be->mega_sync;
	a.trace = be->mega_trace, a.flags = be->mega_flags;

	cudaLaunchAttribute at[1];
	at[0].id = cudaLaunchAttributeCooperative;
	at[0].val.cooperative = 1;
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = dim3(be->mega_blocks);
	cfg.blockDim = dim3(MT);
	cfg.dynamicSmemBytes = be->mega_smem;
	cfg.stream = st;
	cfg.attrs = at;
	cfg.numAttrs = 1;
	CUDA_CHECK(cudaLaunchKernelEx(&cfg, mega_kernel, a));
	return 0;
}
