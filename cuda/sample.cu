/*
 * sample.cu — the sampler of engine/sampler.h on the device, so that only
 * the chosen token crosses PCIe.
 *
 *   1. repetition penalty on the distinct recent tokens (in place);
 *   2. stage 1, one block per 2048 logits of a row: greedy → the block's
 *      best (value desc, id asc) key; otherwise a bitonic sort of the slice
 *      and its first CUDA_SAMPLE_KMAX keys.  Keys are 64 bits: an
 *      order-preserving image of the float above, ~id below, so sorting
 *      keys descending sorts by (value desc, id asc) — the chain's order;
 *   3. stage 2, one block per row: the candidates are sorted again (the
 *      global top k is among the per-slice top k's) and one thread runs the
 *      rest of the chain on at most CUDA_SAMPLE_KMAX survivors: top-k,
 *      softmax, top-p, min-p, softmax(l / T), the eng_rng_uniform draw.
 * Step 0 (logit_bias) comes before the penalty.  A row with cands set
 * stops after the sort and hands its CUDA_SAMPLE_KMAX largest keys to the
 * host (grammar, typical_p, XTC run there on them: eng_sample_top).
 * top_k == 0 or > CUDA_SAMPLE_KMAX (with temperature > 0) is not handled
 * here: the backend samples such rows on the host with eng_sample().
 * The tail uses double exp so that its rounding matches the host's expf
 * closely (fast-math __expf would not).
 */
#include <string.h>

#include "cuda_ops.h"
#include "common.cuh"
#include "internal.h"
#include "../engine/sampler.h"

#define SLICE 2048
#define S1_THREADS 1024

static __device__ __forceinline__ uint64_t make_key(float v, int id)
{
	uint32_t u = __float_as_uint(v);
	u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
	return ((uint64_t)u << 32) | (uint32_t)(0xFFFFFFFFu - (uint32_t)id);
}

static __device__ __forceinline__ float key_val(uint64_t k)
{
	uint32_t u = (uint32_t)(k >> 32);
	u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
	return __uint_as_float(u);
}

static __device__ __forceinline__ int key_id(uint64_t k)
{
	return (int)(0xFFFFFFFFu - (uint32_t)k);
}

static __device__ __forceinline__ bool greedy(const struct cuda_samp *p)
{
	return p->temperature <= 0.0f;
}

/* Descending bitonic sort of n (a power of two) keys in shared memory. */
static __device__ void bitonic_desc(uint64_t *s, int n)
{
	for (int k = 2; k <= n; k <<= 1) {
		for (int j = k >> 1; j > 0; j >>= 1) {
			for (int i = threadIdx.x; i < n; i += blockDim.x) {
				int ixj = i ^ j;
				if (ixj > i) {
					uint64_t a = s[i], b = s[ixj];
					bool up = (i & k) == 0;
					if (up ? a < b : a > b) {
						s[i] = b;
						s[ixj] = a;
					}
				}
			}
			__syncthreads();
		}
	}
}

static __device__ uint64_t block_max_u64(uint64_t v, uint64_t *red)
{
	int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
	for (int o = 16; o > 0; o >>= 1) {
		uint64_t x = __shfl_xor_sync(0xffffffffu, v, o);
		v = x > v ? x : v;
	}
	__syncthreads();
	if (lane == 0)
		red[w] = v;
	__syncthreads();
	v = lane < nw ? red[lane] : 0;
	for (int o = 16; o > 0; o >>= 1) {
		uint64_t x = __shfl_xor_sync(0xffffffffu, v, o);
		v = x > v ? x : v;
	}
	return v;
}

/* Steps 0 and 1: logit_bias (ids are distinct: settings.c keeps the last of
 * a repeated id), then the repetition penalty. */
static __global__ void penalty_kernel(float *logits, int ld, int V, const struct cuda_samp *sp,
                                      const int32_t *recent, const struct cuda_bias *bias)
{
	pdl_enter();
	const struct cuda_samp *p = sp + blockIdx.x;
	const float pen = p->penalty;
	float *l = logits + (size_t)blockIdx.x * ld;
	if (p->n_bias) {
		const struct cuda_bias *b = bias + p->bias_off;
		for (int j = threadIdx.x; j < p->n_bias; j += blockDim.x)
			if (b[j].id >= 0 && b[j].id < V)
				l[b[j].id] += b[j].bias;
		__syncthreads();
	}
	if (pen == 1.0f)
		return;
	const int32_t *r = recent + p->recent_off;
	for (int j = threadIdx.x; j < p->n_recent; j += blockDim.x) {
		int tok = r[j];
		bool dup = false;
		for (int i = 0; i < j && !dup; i++)
			dup = r[i] == tok;
		if (!dup) {
			float v = l[tok];
			l[tok] = v > 0.0f ? v / pen : v * pen;
		}
	}
}

/* grid (NB, S); cand [S][NB][KMAX] */
static __global__ void __launch_bounds__(S1_THREADS)
stage1_kernel(const float *logits, int ld, int V, const struct cuda_samp *sp, uint64_t *cand)
{
	pdl_enter();
	__shared__ uint64_t keys[SLICE];
	__shared__ uint64_t red[32];
	const int b = blockIdx.x, s = blockIdx.y, NB = gridDim.x;
	const float *l = logits + (size_t)s * ld;
	uint64_t *out = cand + ((size_t)s * NB + b) * CUDA_SAMPLE_KMAX;
	if (greedy(sp + s) && !sp[s].cands) {
		uint64_t best = 0;
		for (int i = threadIdx.x; i < SLICE; i += blockDim.x) {
			int e = b * SLICE + i;
			if (e < V) {
				uint64_t k = make_key(l[e], e);
				best = k > best ? k : best;
			}
		}
		best = block_max_u64(best, red);
		if (threadIdx.x == 0)
			out[0] = best;
		return;
	}
	for (int i = threadIdx.x; i < SLICE; i += blockDim.x) {
		int e = b * SLICE + i;
		keys[i] = e < V ? make_key(l[e], e) : 0;
	}
	__syncthreads();
	bitonic_desc(keys, SLICE);
	for (int i = threadIdx.x; i < CUDA_SAMPLE_KMAX; i += blockDim.x)
		out[i] = keys[i];
}

/* The chain after top-k, on n <= KMAX keys sorted (value desc, id asc);
 * mirrors eng_sample() (engine/sampler.c) operation for operation. */
static __device__ int32_t sample_tail(const uint64_t *keys, int n, const struct cuda_samp *p)
{
	float l[CUDA_SAMPLE_KMAX], e[CUDA_SAMPLE_KMAX];
	int id[CUDA_SAMPLE_KMAX], ord[CUDA_SAMPLE_KMAX];
	const float lmax = key_val(keys[0]);
	float sum = 0.0f;
	for (int i = 0; i < n; i++) {
		l[i] = key_val(keys[i]);
		id[i] = key_id(keys[i]);
		e[i] = (float)exp((double)(l[i] - lmax));
		sum += e[i];
	}
	/* order by e desc, id asc (distinct logits can round to equal e) */
	for (int i = 0; i < n; i++) {
		int rank = 0;
		for (int j = 0; j < n; j++)
			rank += e[j] > e[i] || (e[j] == e[i] && id[j] < id[i]);
		ord[rank] = i;
	}
	int keep = n;
	if (p->min_p > 0.0f) {
		const float thr = p->min_p * (1.0f / sum);
		int m = 0;
		for (int r = 0; r < n; r++)
			if (e[ord[r]] / sum >= thr || e[ord[r]] == 1.0f)
				m = r + 1;
		keep = m;
	}
	if (p->top_p < 1.0f) {
		float cum = 0.0f;
		for (int r = 0; r < keep; r++) {
			cum += e[ord[r]] / sum;
			if (cum >= p->top_p) {
				keep = r + 1;
				break;
			}
		}
	}
	if (keep < 1)
		keep = 1;
	float q[CUDA_SAMPLE_KMAX], qsum = 0.0f;
	for (int r = 0; r < keep; r++) {
		q[r] = (float)exp((double)((l[ord[r]] - lmax) / p->temperature));
		qsum += q[r];
	}
	const float target = eng_rng_uniform(p->seed, p->draw) * qsum;
	float cum = 0.0f;
	for (int r = 0; r < keep; r++) {
		cum += q[r];
		if (cum > target)
			return id[ord[r]];
	}
	return id[ord[keep - 1]];
}

/* grid S; dynamic smem: pow2 >= NB * KMAX keys */
static __global__ void __launch_bounds__(S1_THREADS)
stage2_kernel(const uint64_t *cand, int NB, int V, int n2, const struct cuda_samp *sp, int32_t *tokens,
              uint64_t *cands)
{
	pdl_enter();
	extern __shared__ uint64_t keys2[];
	__shared__ uint64_t red[32];
	const int s = blockIdx.x;
	const struct cuda_samp *p = sp + s;
	const uint64_t *c = cand + (size_t)s * NB * CUDA_SAMPLE_KMAX;
	if (greedy(p) && !p->cands) {
		uint64_t best = 0;
		for (int b = threadIdx.x; b < NB; b += blockDim.x)
			best = c[(size_t)b * CUDA_SAMPLE_KMAX] > best ? c[(size_t)b * CUDA_SAMPLE_KMAX] : best;
		best = block_max_u64(best, red);
		if (threadIdx.x == 0)
			tokens[s] = key_id(best);
		return;
	}
	const int n = NB * CUDA_SAMPLE_KMAX;
	for (int i = threadIdx.x; i < n2; i += blockDim.x)
		keys2[i] = i < n ? c[i] : 0;
	__syncthreads();
	bitonic_desc(keys2, n2);
	if (p->cands) { /* the host finishes the chain (eng_sample_top) */
		for (int i = threadIdx.x; i < CUDA_SAMPLE_KMAX; i += blockDim.x)
			cands[(size_t)s * CUDA_SAMPLE_KMAX + i] = keys2[i];
		if (threadIdx.x == 0)
			tokens[s] = key_id(keys2[0]);
		return;
	}
	if (threadIdx.x == 0) {
		int k = min(min(p->top_k, CUDA_SAMPLE_KMAX), V);
		tokens[s] = sample_tail(keys2, k, p);
	}
}

static int n_slices(int V)
{
	return cdiv(V, SLICE);
}

static int pow2_at_least(int n)
{
	int p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

extern "C" size_t cuda_sample_scratch_bytes(int S, int V)
{
	return (size_t)S * n_slices(V) * CUDA_SAMPLE_KMAX * sizeof(uint64_t);
}

extern "C" int cuda_sample_setup(void)
{
	static bool done;
	if (!done) {
		CUDA_CHECK(cudaFuncSetAttribute(stage2_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                                200 * 1024));
		done = true;
	}
	return 0;
}

extern "C" float cuda_sample_key_val(uint64_t k)
{
	uint32_t u = (uint32_t)(k >> 32);
	u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

extern "C" int cuda_sample_key_id(uint64_t k)
{
	return (int)(0xFFFFFFFFu - (uint32_t)k);
}

extern "C" int cuda_sample(float *logits, int ld, int S, int V, const struct cuda_samp *sp,
                           const int32_t *recent, const struct cuda_bias *bias, void *scratch,
                           int32_t *tokens, uint64_t *cands, cudaStream_t st)
{
	const int NB = n_slices(V), n2 = pow2_at_least(NB * CUDA_SAMPLE_KMAX);
	const size_t smem2 = (size_t)n2 * sizeof(uint64_t);
	if (S <= 0)
		return 0;
	if (smem2 > 200 * 1024) {
		LOG_ERR("vocabulary of %d too large for the device sampler", V);
		return -EINVAL;
	}
	TRY(cuda_sample_setup());
	launch_k(penalty_kernel, S, 256, 0, st, logits, ld, V, sp, recent, bias);
	CUDA_CHECK_LAUNCH();
	launch_k(stage1_kernel, dim3(NB, S), S1_THREADS, 0, st, logits, ld, V, sp, (uint64_t *)scratch);
	CUDA_CHECK_LAUNCH();
	launch_k(stage2_kernel, S, S1_THREADS, smem2, st, (const uint64_t *)scratch, NB, V, n2, sp, tokens, cands);
	CUDA_CHECK_LAUNCH();
	return 0;
}
