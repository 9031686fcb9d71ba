/*
 * rope.cuh — one head vector from raw projection output to what attention
 * uses: + bias (qwen2), per-head RMSNorm (qwen3), rotary embedding.  One
 * warp per head, the vector staged in shared memory (any D, any n_rot).
 * Shared by the RoPE pass (rope.cu, prefill) and the decode attention
 * kernel, which applies it itself (attn.cu).
 *
 * NORM rotates pairs (2i, 2i+1), NEOX pairs (i, i + n_rot/2); theta =
 * scale * (pos * base^(-2i/n_rot) / ff[i]), (cos, sin) x attn (struct
 * cuda_rope_freq: llama.cpp's linear scaling, Llama 3.1's rope_freqs and
 * phi3's LongRoPE factors); dims >= n_rot are left alone.  The angle is
 * formed and reduced to [-pi, pi] in double (fast-math sinf is inaccurate
 * for the large arguments of long contexts: pos * 1 rad at pos 4096), then
 * __sincosf on the reduced angle (absolute error ~4e-7).
 */
#ifndef PROMPTFS_CUDA_ROPE_CUH
#define PROMPTFS_CUDA_ROPE_CUH

#include "common.cuh"
#include "cuda_ops.h"

/* (cos, sin) of pair i's angle at pos. */
static __device__ __forceinline__ float2 rope_cs(int pos, int i, int n_rot, const struct cuda_rope_freq &f)
{
	double th = (double)pos * exp2(-2.0 * i / (double)n_rot * f.log2_base);
	if (f.ff)
		th /= (double)f.ff[i];
	th *= (double)f.scale;
	const double r = th - 6.283185307179586 * rint(th * 0.15915494309189535);
	float sn, cs;
	__sincosf((float)r, &sn, &cs);
	return make_float2(cs * f.attn, sn * f.attn);
}

/* Rotates pair i of s[] by (cos, sin). */
static __device__ __forceinline__ void rope_pair(float *s, int i, int n_rot, bool neox, float2 cs)
{
	const int half = n_rot / 2;
	const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
	const float x0 = s[i0], x1 = s[i1];
	s[i0] = x0 * cs.x - x1 * cs.y;
	s[i1] = x0 * cs.y + x1 * cs.x;
}

/* s[D] (shared) += bias, then the per-head RMSNorm when nw; call with the
 * whole warp, s already holding the raw vector. */
static __device__ __forceinline__ void head_bias_norm(float *s, const float *bias, const float *nw,
                                                      float eps, int D)
{
	const int lane = threadIdx.x % WARP;
	if (bias)
		for (int d = lane; d < D; d += WARP)
			s[d] += bias[d];
	__syncwarp();
	if (nw) {
		float ss = 0.0f;
		for (int d = lane; d < D; d += WARP)
			ss += s[d] * s[d];
		ss = warp_sum(ss);
		const float sc = rsqrtf(ss / (float)D + eps);
		for (int d = lane; d < D; d += WARP)
			s[d] = s[d] * sc * nw[d];
		__syncwarp();
	}
}

/* s[D] (shared) = rope(norm(raw + bias)); call with the whole warp.
 * bias, nw may be NULL; rotate false for V. */
static __device__ __forceinline__ void head_prep(float *s, const float *raw, const float *bias,
                                                 const float *nw, float eps, int D, bool rotate,
                                                 int pos, int n_rot, bool neox,
                                                 const struct cuda_rope_freq &f)
{
	const int lane = threadIdx.x % WARP;
	for (int d = lane; d < D; d += WARP) /* both loads in flight at once */
		s[d] = raw[d] + (bias ? bias[d] : 0.0f);
	head_bias_norm(s, nullptr, nw, eps, D);
	if (rotate) {
		for (int i = lane; i < n_rot / 2; i += WARP)
			rope_pair(s, i, n_rot, neox, rope_cs(pos, i, n_rot, f));
		__syncwarp();
	}
}

/* The same with the angles' (cos, sin) precomputed for this position
 * (cs[n_rot / 2], rope_cs()), s already holding the raw vector. */
static __device__ __forceinline__ void head_prep_cs(float *s, const float *bias, const float *nw,
                                                    float eps, int D, bool rotate, int n_rot,
                                                    bool neox, const float2 *cs)
{
	head_bias_norm(s, bias, nw, eps, D);
	if (rotate) {
		for (int i = threadIdx.x % WARP; i < n_rot / 2; i += WARP)
			rope_pair(s, i, n_rot, neox, cs[i]);
		__syncwarp();
	}
}

#endif /* PROMPTFS_CUDA_ROPE_CUH */
