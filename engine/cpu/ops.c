/*
 * ops.c — RMS norm, RoPE, paged F16 attention, SwiGLU, adds and embedding
 * lookup for the CPU backend (see ops.h for the numerics contract).
 *
 * AVX2 + FMA + F16C paths where the compiler targets them (the default
 * x86-64-v3 build), scalar code otherwise; both compute the same formulas,
 * differing only in summation order.  These ops are a small fraction of a
 * forward pass (the matrix products in matmul.c dominate), but attention
 * grows with the context, so its inner loops are vectorised.
 *
 * Shape letters as model.h: G KV heads, D head dim, P page size.
 */
#include "ops.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>

#include "../../gguf/log.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CPU_OPS_AVX2 1
#include <immintrin.h>
#endif

// ---- vector helpers

#ifdef CPU_OPS_AVX2
static inline float hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* e^x for 8 floats: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite split of ln2),
 * e^r by its degree-7 Taylor polynomial (error < 2e-7 relative), scaled by
 * 2^n built in the exponent bits.  Inputs are clamped to [-87, 88] so 2^n
 * stays a normal float; below that the result is ~1e-38 instead of 0,
 * which no caller can tell apart. */
static inline __m256 exp256(__m256 x)
{
	const __m256 ln2_hi = _mm256_set1_ps(0.693145751953125f);
	const __m256 ln2_lo = _mm256_set1_ps(1.428606765330187e-06f);
	__m256 n, r, p;
	__m256i e;

	x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
	n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.4426950408889634f)),
	                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm256_fnmadd_ps(n, ln2_hi, x);
	r = _mm256_fnmadd_ps(n, ln2_lo, r);
	p = _mm256_set1_ps(1.0f / 5040);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 load_f16x8(const gguf_half *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
#endif

static inline float round_f16_1(float x)
{
	return gguf_half_to_f32(gguf_f32_to_half(x));
}

void cpu_round_f16(float *y, const float *x, int n)
{
	int i = 0;

#ifdef CPU_OPS_AVX2
	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
	}
#endif
	for (; i < n; i++)
		y[i] = round_f16_1(x[i]);
}

static void store_f16(gguf_half *y, const float *x, int n)
{
	int i = 0;

#ifdef CPU_OPS_AVX2
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(y + i),
		                 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
	for (; i < n; i++)
		y[i] = gguf_f32_to_half(x[i]);
}

/* dot(k[n] F16, q[n] f32) in f32. */
static inline float dot_f16_f32(const gguf_half *k, const float *q, int n)
{
	float s = 0.0f;
	int i = 0;

#ifdef CPU_OPS_AVX2
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();

	for (; i + 16 <= n; i += 16) {
		a0 = _mm256_fmadd_ps(load_f16x8(k + i), _mm256_loadu_ps(q + i), a0);
		a1 = _mm256_fmadd_ps(load_f16x8(k + i + 8), _mm256_loadu_ps(q + i + 8), a1);
	}
	for (; i + 8 <= n; i += 8)
		a0 = _mm256_fmadd_ps(load_f16x8(k + i), _mm256_loadu_ps(q + i), a0);
	s = hsum256(_mm256_add_ps(a0, a1));
#endif
	for (; i < n; i++)
		s += gguf_half_to_f32(k[i]) * q[i];
	return s;
}

// ---- norms and element-wise ops

void cpu_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
	/* As ggml: squares in f32, summed in double; the scale in f32. */
	double sum = 0.0;
	float scale;

	for (int i = 0; i < n; i++)
		sum += (double)(x[i] * x[i]);
	scale = 1.0f / sqrtf((float)(sum / n) + eps);
	if (w) {
		for (int i = 0; i < n; i++)
			y[i] = (x[i] * scale) * w[i];
	} else {
		for (int i = 0; i < n; i++)
			y[i] = x[i] * scale;
	}
}

void cpu_add(float *y, const float *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += x[i];
}

void cpu_swiglu(float *y, const float *g, const float *u, int n)
{
	int i = 0;

#ifdef CPU_OPS_AVX2
	const __m256 one = _mm256_set1_ps(1.0f);

	for (; i + 8 <= n; i += 8) {
		__m256 gv = _mm256_loadu_ps(g + i);
		__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
		__m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
		_mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
	}
#endif
	for (; i < n; i++)
		y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ggml's GELU (tanh form) as its CPU backend evaluates it: through a table
 * of F16 inputs, so x is rounded to F16, gelu computed in f32 and rounded
 * to F16 again; |x| >= 10 short-cut to 0 / x. */
static float gelu_ggml(float x)
{
	const float c = 0.79788456080286535587989211986876f, a = 0.044715f;
	float h;

	if (x <= -10.0f)
		return 0.0f;
	if (x >= 10.0f)
		return x;
	h = gguf_half_to_f32(gguf_f32_to_half(x));
	h = 0.5f * h * (1.0f + tanhf(c * h * (1.0f + a * h * h)));
	return gguf_half_to_f32(gguf_f32_to_half(h));
}

void cpu_geglu(float *y, const float *g, const float *u, int n)
{
	for (int i = 0; i < n; i++)
		y[i] = gelu_ggml(g[i]) * u[i];
}

void cpu_softcap(float *x, int n, float cap)
{
	const float inv = 1.0f / cap;

	for (int i = 0; i < n; i++)
		x[i] = tanhf(x[i] * inv) * cap;
}

void cpu_scale(float *x, int n, float s)
{
	for (int i = 0; i < n; i++)
		x[i] *= s;
}

void cpu_moe_route(float *p, int E, int K, int32_t *sel, float *w)
{
	float max = -INFINITY, wsum = 0.0f;
	double sum = 0.0;

	for (int e = 0; e < E; e++)
		max = p[e] > max ? p[e] : max;
	for (int e = 0; e < E; e++) {
		p[e] = expf(p[e] - max);
		sum += (double)p[e];
	}
	for (int e = 0; e < E; e++)
		p[e] *= (float)(1.0 / sum);
	for (int k = 0; k < K; k++) { /* K is small: selection by repeated scans */
		int best = -1;
		for (int e = 0; e < E; e++) {
			bool taken = false;
			for (int j = 0; j < k; j++)
				taken |= sel[j] == e;
			if (!taken && (best < 0 || p[e] > p[best]))
				best = e;
		}
		sel[k] = best;
		w[k] = p[best];
		wsum += w[k];
	}
	wsum = wsum < 6.103515625e-5f ? 6.103515625e-5f : wsum;
	for (int k = 0; k < K; k++)
		w[k] /= wsum;
}

int cpu_embed(float *y, const struct eng_tensor *emb, int32_t tok)
{
	size_t row_bytes;

	if (tok < 0 || tok >= emb->ne[1]) {
		LOG_ERR("token id %d is outside the vocabulary [0, %lld)", tok, (long long)emb->ne[1]);
		return -EINVAL;
	}
	row_bytes = gguf_row_size(emb->type, emb->ne[0]);
	return gguf_dequantize_row(emb->type, (const uint8_t *)emb->data + (size_t)tok * row_bytes, y,
	                           emb->ne[0]);
}

// ---- rotary position embedding

void cpu_rope_cache_ext(float *cs, int pos, int n_rot, float base, float freq_scale,
                        const float *freq_factors)
{
	/* ggml's order of operations: theta_0 = pos, theta_{i+1} = theta_i * s
	 * with s = base^(-2/n_rot) in f32, so positions far out accumulate the
	 * same rounding as llama.cpp; the factors divide, then the scale. */
	const float theta_scale = powf(base, -2.0f / (float)n_rot);
	float theta = (float)pos;

	for (int i0 = 0; i0 < n_rot; i0 += 2) {
		const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
		const float t = freq_scale * (theta / ff);
		cs[i0] = cosf(t);
		cs[i0 + 1] = sinf(t);
		theta *= theta_scale;
	}
}

void cpu_rope_cache(float *cs, int pos, int n_rot, float base)
{
	cpu_rope_cache_ext(cs, pos, n_rot, base, 1.0f, NULL);
}

void cpu_rope(float *x, int n_head, int D, int n_rot, const float *cs, enum eng_rope_type type)
{
	const int half = n_rot / 2;

	for (int h = 0; h < n_head; h++) {
		float *xh = x + (size_t)h * D;
		for (int i = 0; i < half; i++) {
			const float c = cs[2 * i], s = cs[2 * i + 1];
			/* NORM rotates adjacent pairs, NEOX the two halves. */
			const int i0 = type == ENG_ROPE_TYPE_NEOX ? i : 2 * i;
			const int i1 = type == ENG_ROPE_TYPE_NEOX ? i + half : 2 * i + 1;
			const float x0 = xh[i0], x1 = xh[i1];
			xh[i0] = x0 * c - x1 * s;
			xh[i1] = x0 * s + x1 * c;
		}
	}
}

// ---- paged F16 KV cache and attention

static inline size_t page_stride(const struct cpu_kv_layer *kv)
{
	return (size_t)ENG_KV_PAGE * (size_t)kv->G * (size_t)kv->D;
}

void cpu_kv_store(const struct cpu_kv_layer *kv, const int32_t *pages, int pos, const float *k,
                  const float *v)
{
	const int GD = kv->G * kv->D;
	const size_t off = (size_t)pages[pos / ENG_KV_PAGE] * page_stride(kv) +
	                   (size_t)(pos % ENG_KV_PAGE) * GD;

	store_f16(kv->k + off, k, GD);
	store_f16(kv->v + off, v, GD);
}

/* scores[j - j0] = scale * dot(K_j, q16) for j0 <= j < n_kv, soft-capped
 * (cap * tanh(s / cap), as ggml: scale by 1/cap, tanh, scale by cap) when
 * cap > 0; returns the max. */
static float attn_scores(float *scores, const float *q16, const struct cpu_kv_layer *kv,
                         const int32_t *pages, int j0, int n_kv, int g, float scale, float cap)
{
	const int D = kv->D, GD = kv->G * kv->D;
	const float inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
	float max = -INFINITY;

	for (int j = j0; j < n_kv;) {
		const int slot = j % ENG_KV_PAGE;
		const gguf_half *kp = kv->k + (size_t)pages[j / ENG_KV_PAGE] * page_stride(kv) +
		                      (size_t)slot * GD + (size_t)g * D;
		const int n = n_kv - j < ENG_KV_PAGE - slot ? n_kv - j : ENG_KV_PAGE - slot;
		for (int i = 0; i < n; i++) {
			float s = dot_f16_f32(kp + (size_t)i * GD, q16, D) * scale;
			if (cap > 0.0f)
				s = tanhf(s * inv_cap) * cap;
			scores[j - j0 + i] = s;
			max = s > max ? s : max;
		}
		j += n;
	}
	return max;
}

/* scores[j] = f16(exp(scores[j] - max) / sum), as ggml's soft_max followed
 * by the F16 conversion of KQ for the V product. */
static void attn_softmax(float *scores, int n, float max)
{
	double sum = 0.0;
	float inv;
	int j = 0;

#ifdef CPU_OPS_AVX2
	const __m256 vmax = _mm256_set1_ps(max);

	for (; j + 8 <= n; j += 8) {
		__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmax));
		_mm256_storeu_ps(scores + j, e);
		sum += (double)hsum256(e);
	}
#endif
	for (; j < n; j++) {
		const float e = expf(scores[j] - max);
		scores[j] = e;
		sum += (double)e;
	}
	inv = (float)(1.0 / sum);
	for (j = 0; j < n; j++)
		scores[j] *= inv;
	cpu_round_f16(scores, scores, n);
}

/* out[d0 .. d0+nd) = sum_j p_{j-j0} V_j[d0 ..] over j0 <= j < n_kv (V F16,
 * sums in f32).  nd <= 32 so the accumulators stay in registers over the
 * whole sequence. */
static void attn_values(float *out, const float *p, const struct cpu_kv_layer *kv,
                        const int32_t *pages, int j0, int n_kv, int g, int d0, int nd)
{
	const int GD = kv->G * kv->D;
	const size_t base = (size_t)g * kv->D + d0;

#ifdef CPU_OPS_AVX2
	if (nd == 32) {
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
		for (int j = j0; j < n_kv;) {
			const int slot = j % ENG_KV_PAGE;
			const gguf_half *vp = kv->v + (size_t)pages[j / ENG_KV_PAGE] * page_stride(kv) +
			                      (size_t)slot * GD + base;
			const int n = n_kv - j < ENG_KV_PAGE - slot ? n_kv - j : ENG_KV_PAGE - slot;
			for (int i = 0; i < n; i++) {
				const float pi = p[j - j0 + i];
				const gguf_half *vr = vp + (size_t)i * GD;
				const __m256 pj = _mm256_set1_ps(pi);
				if (pi == 0.0f)
					continue;
				a0 = _mm256_fmadd_ps(pj, load_f16x8(vr), a0);
				a1 = _mm256_fmadd_ps(pj, load_f16x8(vr + 8), a1);
				a2 = _mm256_fmadd_ps(pj, load_f16x8(vr + 16), a2);
				a3 = _mm256_fmadd_ps(pj, load_f16x8(vr + 24), a3);
			}
			j += n;
		}
		_mm256_storeu_ps(out + d0, a0);
		_mm256_storeu_ps(out + d0 + 8, a1);
		_mm256_storeu_ps(out + d0 + 16, a2);
		_mm256_storeu_ps(out + d0 + 24, a3);
		return;
	}
#endif
	for (int d = 0; d < nd; d++)
		out[d0 + d] = 0.0f;
	for (int j = j0; j < n_kv;) {
		const int slot = j % ENG_KV_PAGE;
		const gguf_half *vp = kv->v + (size_t)pages[j / ENG_KV_PAGE] * page_stride(kv) +
		                      (size_t)slot * GD + base;
		const int n = n_kv - j < ENG_KV_PAGE - slot ? n_kv - j : ENG_KV_PAGE - slot;
		for (int i = 0; i < n; i++) {
			const float pj = p[j - j0 + i];
			if (pj == 0.0f)
				continue;
			for (int d = 0; d < nd; d++)
				out[d0 + d] += pj * gguf_half_to_f32(vp[(size_t)i * GD + d]);
		}
		j += n;
	}
}

void cpu_attn_head_ext(float *out, const float *q, const struct cpu_kv_layer *kv,
                       const int32_t *pages, int j0, int n_kv, int g, float scale, float cap,
                       float *scores, float *q16)
{
	float max;

	/* ggml converts Q to the K cache type (F16) before the KQ product. */
	cpu_round_f16(q16, q, kv->D);
	max = attn_scores(scores, q16, kv, pages, j0, n_kv, g, scale, cap);
	attn_softmax(scores, n_kv - j0, max);
	for (int d0 = 0; d0 < kv->D; d0 += 32)
		attn_values(out, scores, kv, pages, j0, n_kv, g, d0, kv->D - d0 < 32 ? kv->D - d0 : 32);
}

void cpu_attn_head(float *out, const float *q, const struct cpu_kv_layer *kv,
                   const int32_t *pages, int n_kv, int g, float scale, float *scores, float *q16)
{
	cpu_attn_head_ext(out, q, kv, pages, 0, n_kv, g, scale, 0.0f, scores, q16);
}
