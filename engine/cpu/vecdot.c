/*
 * vecdot.c — dot products of one weight row with one activation row, per
 * tensor type: the vec_dot type table, activation quantisation, the
 * scalar reference kernels, and the dispatch to SIMD (vecdot_avx2.c).
 *
 * Numerics follow ggml-cpu: activations are quantised to the weight type's
 * vec_dot type; each block's integer dot product is exact, then scaled in
 * f32:  Σ_blocks (d_w d_a) Σ q_w q_a  (+ offset terms for the types with a
 * minimum).  SIMD kernels compute the same integers per block and differ
 * from these scalar ones only in the order of the f32 summation.
 *
 * Shape letters: n elements per row (multiple of the block size).
 */
#include <math.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "../../gguf/gguf.h"
#include "../../gguf/log.h"
#include "vecdot_impl.h"

#define H2F(h) gguf_half_to_f32(h)

// ---- type table

enum gguf_dtype cpu_vec_dot_type(enum gguf_dtype wtype)
{
	switch (wtype) {
	case GGUF_DTYPE_Q4_0:
	case GGUF_DTYPE_Q5_0:
	case GGUF_DTYPE_Q8_0:
		return GGUF_DTYPE_Q8_0;
	case GGUF_DTYPE_Q4_1:
	case GGUF_DTYPE_Q5_1:
		return GGUF_DTYPE_Q8_1;
	case GGUF_DTYPE_Q2_K:
	case GGUF_DTYPE_Q3_K:
	case GGUF_DTYPE_Q4_K:
	case GGUF_DTYPE_Q5_K:
	case GGUF_DTYPE_Q6_K:
		return GGUF_DTYPE_Q8_K;
	case GGUF_DTYPE_F16:
		return GGUF_DTYPE_F16;
	case GGUF_DTYPE_BF16:
		return GGUF_DTYPE_BF16;
	default:
		return GGUF_DTYPE_F32;
	}
}

// ---- activation quantisation

/* One block of 32 as ggml-cpu's x86 quantize_row_q8_0/_q8_1 does it:
 * d = amax/127, values x * (127/amax) rounded half-to-even; also returns
 * the sum of the quants (for Q8_1's s). */
static inline void q8_block(const float *x, int8_t *qs, float *d_out, int *sum)
{
#ifdef __AVX2__
	__m256 v[4];
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 mx = _mm256_setzero_ps();
	for (int k = 0; k < 4; k++) {
		v[k] = _mm256_loadu_ps(x + 8 * k);
		mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[k]));
	}
	__m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
	m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
	m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
	const float amax = _mm_cvtss_f32(m4);
	const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
	__m256i iv[4];
	for (int k = 0; k < 4; k++)
		iv[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], id),
		                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	__m256i s = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
	__m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
	s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
	s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
	*sum = _mm_cvtsi128_si32(s4);
	/* pack 32-bit → 8-bit; the in-lane packs interleave, the permute fixes it */
	__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
	p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	_mm256_storeu_si256((__m256i *)qs, p);
	*d_out = amax / 127.f;
#else
	float amax = 0.0f;
	for (int j = 0; j < 32; j++)
		amax = fmaxf(amax, fabsf(x[j]));
	const float id = amax != 0.0f ? 127.f / amax : 0.0f;
	int s = 0;
	for (int j = 0; j < 32; j++) {
		qs[j] = (int8_t)nearbyintf(x[j] * id);
		s += qs[j];
	}
	*d_out = amax / 127.f;
	*sum = s;
#endif
}

void cpu_quantize_q8_0(const float *x, void *vy, int64_t n)
{
	struct block_q8_0 *y = vy;
	for (int64_t i = 0; i < n / QK8_0; i++) {
		float d;
		int s;
		q8_block(x + i * QK8_0, y[i].qs, &d, &s);
		y[i].d = gguf_f32_to_half(d);
	}
}

void cpu_quantize_q8_1(const float *x, void *vy, int64_t n)
{
	struct block_q8_1 *y = vy;
	for (int64_t i = 0; i < n / QK8_1; i++) {
		float d;
		int s;
		q8_block(x + i * QK8_1, y[i].qs, &d, &s);
		y[i].d = gguf_f32_to_half(d);
		y[i].s = gguf_f32_to_half(d * (float)s);
	}
}

#ifdef __AVX2__
/* ggml's quantize_row_q8_K_ref, vectorised with the same results: the
 * scale comes from the first element of largest magnitude, values are
 * rounded half-to-even (cvtps2dq in the default mode is ggml's
 * nearest_int), capped at 127; bsums are sums of 16 quants. */
static void quantize_q8_K(const float *x, struct block_q8_K *y, int64_t n)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
		__m256 mx = _mm256_setzero_ps();
		for (int k = 0; k < QK_K; k += 8)
			mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
		__m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
		m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
		m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
		const float amax = _mm_cvtss_f32(m4);
		memset(&y[i], 0, sizeof(y[i]));
		if (amax == 0.0f)
			continue;
		float max = 0.0f;
		const __m256 va = _mm256_set1_ps(amax);
		for (int k = 0; k < QK_K; k += 8) {
			const __m256 ax = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k));
			const int m = _mm256_movemask_ps(_mm256_cmp_ps(ax, va, _CMP_EQ_OQ));
			if (m) {
				max = x[k + __builtin_ctz((unsigned)m)];
				break;
			}
		}
		const float iscale = -127.f / max;
		const __m256 vs = _mm256_set1_ps(iscale);
		const __m256i cap = _mm256_set1_epi32(127);
		for (int k = 0; k < QK_K; k += 32) {
			__m256i v[4];
			for (int l = 0; l < 4; l++)
				v[l] = _mm256_min_epi32(cap, _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + k + 8 * l))));
			__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
			p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
			_mm256_storeu_si256((__m256i *)(y[i].qs + k), p);
			/* sums of 8 bytes via sad on the bytes biased to unsigned */
			int64_t s8[4];
			const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(p, _mm256_set1_epi8((char)0x80)),
			                                    _mm256_setzero_si256());
			_mm256_storeu_si256((__m256i *)s8, sad);
			y[i].bsums[k / 16] = (int16_t)(s8[0] + s8[1] - 16 * 128);
			y[i].bsums[k / 16 + 1] = (int16_t)(s8[2] + s8[3] - 16 * 128);
		}
		y[i].d = 1 / iscale;
	}
}
#endif

void cpu_quantize_act(enum gguf_dtype vtype, const float *x, void *y, int64_t n)
{
	switch (vtype) {
	case GGUF_DTYPE_Q8_0: cpu_quantize_q8_0(x, y, n); break;
	case GGUF_DTYPE_Q8_1: cpu_quantize_q8_1(x, y, n); break;
#ifdef __AVX2__
	case GGUF_DTYPE_Q8_K: quantize_q8_K(x, y, n); break;
#endif
	case GGUF_DTYPE_F32: memcpy(y, x, (size_t)n * sizeof(float)); break;
	default: gguf_quantize_row(vtype, x, y, n); break; /* Q8_K, F16, BF16 */
	}
}

// ---- scalar row dots (reference)

static float dot_q4_0(int64_t n, const void *vw, const void *va)
{
	const struct block_q4_0 *w = vw;
	const struct block_q8_0 *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK8_0; i++) {
		int si = 0;
		for (int j = 0; j < 16; j++) {
			si += ((w[i].qs[j] & 0xF) - 8) * a[i].qs[j];
			si += ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
		}
		sum += (float)si * H2F(w[i].d) * H2F(a[i].d);
	}
	return sum;
}

static float dot_q4_1(int64_t n, const void *vw, const void *va)
{
	const struct block_q4_1 *w = vw;
	const struct block_q8_1 *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK8_1; i++) {
		int si = 0;
		for (int j = 0; j < 16; j++) {
			si += (w[i].qs[j] & 0xF) * a[i].qs[j];
			si += (w[i].qs[j] >> 4) * a[i].qs[j + 16];
		}
		sum += (float)si * H2F(w[i].d) * H2F(a[i].d) + H2F(w[i].m) * H2F(a[i].s);
	}
	return sum;
}

/* The 5th bits of a Q5 block as 0/16 per element. */
static inline void q5_high(const uint8_t *qh4, int *h)
{
	uint32_t qh;
	memcpy(&qh, qh4, 4);
	for (int j = 0; j < 32; j++)
		h[j] = (int)((qh >> j) & 1u) << 4;
}

static float dot_q5_0(int64_t n, const void *vw, const void *va)
{
	const struct block_q5_0 *w = vw;
	const struct block_q8_0 *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK8_0; i++) {
		int h[32], si = 0;
		q5_high(w[i].qh, h);
		for (int j = 0; j < 16; j++) {
			si += (((w[i].qs[j] & 0xF) | h[j]) - 16) * a[i].qs[j];
			si += (((w[i].qs[j] >> 4) | h[j + 16]) - 16) * a[i].qs[j + 16];
		}
		sum += (float)si * H2F(w[i].d) * H2F(a[i].d);
	}
	return sum;
}

static float dot_q5_1(int64_t n, const void *vw, const void *va)
{
	const struct block_q5_1 *w = vw;
	const struct block_q8_1 *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK8_1; i++) {
		int h[32], si = 0;
		q5_high(w[i].qh, h);
		for (int j = 0; j < 16; j++) {
			si += ((w[i].qs[j] & 0xF) | h[j]) * a[i].qs[j];
			si += ((w[i].qs[j] >> 4) | h[j + 16]) * a[i].qs[j + 16];
		}
		sum += (float)si * H2F(w[i].d) * H2F(a[i].d) + H2F(w[i].m) * H2F(a[i].s);
	}
	return sum;
}

static float dot_q8_0(int64_t n, const void *vw, const void *va)
{
	const struct block_q8_0 *w = vw;
	const struct block_q8_0 *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK8_0; i++) {
		int si = 0;
		for (int j = 0; j < 32; j++)
			si += w[i].qs[j] * a[i].qs[j];
		sum += (float)si * H2F(w[i].d) * H2F(a[i].d);
	}
	return sum;
}

/* K types: q[256] integer weights (offset removed where the type has one)
 * and per-16 sub-block scales; the integer part of one super-block. */
static int isum_16(const int *q, const int8_t *a, const int *sc16)
{
	int total = 0;
	for (int j = 0; j < 16; j++) {
		int s = 0;
		for (int l = 0; l < 16; l++)
			s += q[16 * j + l] * a[16 * j + l];
		total += sc16[j] * s;
	}
	return total;
}

static float dot_q2_K(int64_t n, const void *vw, const void *va)
{
	const struct block_q2_K *w = vw;
	const struct block_q8_K *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK_K; i++) {
		int q[QK_K], sc[16], summs = 0;
		for (int e = 0; e < QK_K; e++) {
			const int c = e % 128;
			q[e] = (w[i].qs[32 * (e / 128) + c % 32] >> (2 * (c / 32))) & 3;
		}
		for (int j = 0; j < 16; j++) {
			sc[j] = w[i].scales[j] & 0xF;
			summs += a[i].bsums[j] * (w[i].scales[j] >> 4);
		}
		const float dall = a[i].d * H2F(w[i].d);
		const float dmin = a[i].d * H2F(w[i].dmin);
		sum += dall * (float)isum_16(q, a[i].qs, sc) - dmin * (float)summs;
	}
	return sum;
}

static float dot_q3_K(int64_t n, const void *vw, const void *va)
{
	const struct block_q3_K *w = vw;
	const struct block_q8_K *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK_K; i++) {
		int q[QK_K], sc[16];
		for (int e = 0; e < QK_K; e++) {
			const int c = e % 128, nn = e / 128;
			const int lo = (w[i].qs[32 * nn + c % 32] >> (2 * (c / 32))) & 3;
			const int hi = (w[i].hmask[c % 32] >> (4 * nn + c / 32)) & 1;
			q[e] = lo - (hi ? 0 : 4);
		}
		for (int k = 0; k < 16; k++) {
			const int lo = (w[i].scales[k % 8] >> (4 * (k / 8))) & 0xF;
			const int hi = (w[i].scales[8 + k % 4] >> (2 * (k / 4))) & 3;
			sc[k] = (lo | (hi << 4)) - 32;
		}
		sum += H2F(w[i].d) * a[i].d * (float)isum_16(q, a[i].qs, sc);
	}
	return sum;
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scale and min. */
static float k4_block(const int *q, const uint8_t *scales, gguf_half hd, gguf_half hdmin,
                      const struct block_q8_K *a)
{
	int sc16[16], summs = 0;
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		gguf_get_scale_min_k4(j, scales, &sc, &m);
		sc16[2 * j] = sc16[2 * j + 1] = sc;
		summs += m * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
	}
	const float d = H2F(hd) * a->d;
	const float dmin = H2F(hdmin) * a->d;
	return d * (float)isum_16(q, a->qs, sc16) - dmin * (float)summs;
}

static float dot_q4_K(int64_t n, const void *vw, const void *va)
{
	const struct block_q4_K *w = vw;
	const struct block_q8_K *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK_K; i++) {
		int q[QK_K];
		for (int j = 0; j < 4; j++) {
			for (int l = 0; l < 32; l++) {
				q[64 * j + l] = w[i].qs[32 * j + l] & 0xF;
				q[64 * j + 32 + l] = w[i].qs[32 * j + l] >> 4;
			}
		}
		sum += k4_block(q, w[i].scales, w[i].d, w[i].dmin, &a[i]);
	}
	return sum;
}

static float dot_q5_K(int64_t n, const void *vw, const void *va)
{
	const struct block_q5_K *w = vw;
	const struct block_q8_K *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK_K; i++) {
		int q[QK_K];
		for (int j = 0; j < 4; j++) {
			for (int l = 0; l < 32; l++) {
				const uint8_t b = w[i].qs[32 * j + l], h = w[i].qh[l];
				q[64 * j + l] = (b & 0xF) | (((h >> (2 * j)) & 1) << 4);
				q[64 * j + 32 + l] = (b >> 4) | (((h >> (2 * j + 1)) & 1) << 4);
			}
		}
		sum += k4_block(q, w[i].scales, w[i].d, w[i].dmin, &a[i]);
	}
	return sum;
}

static float dot_q6_K(int64_t n, const void *vw, const void *va)
{
	const struct block_q6_K *w = vw;
	const struct block_q8_K *a = va;
	float sum = 0.0f;
	for (int64_t i = 0; i < n / QK_K; i++) {
		int q[QK_K], sc[16];
		for (int e = 0; e < QK_K; e++) {
			const int nn = e / 128, c = e % 128, l = c % 32, g = c / 32;
			const int lo = (w[i].ql[64 * nn + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0xF;
			const int hi = (w[i].qh[32 * nn + l] >> (2 * g)) & 3;
			q[e] = (lo | (hi << 4)) - 32;
		}
		for (int j = 0; j < 16; j++)
			sc[j] = w[i].scales[j];
		sum += H2F(w[i].d) * a[i].d * (float)isum_16(q, a[i].qs, sc);
	}
	return sum;
}

static float dot_f32(int64_t n, const void *vw, const void *va)
{
	const float *w = vw, *a = va;
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)(w[i] * a[i]);
	return (float)sum;
}

static float dot_f16(int64_t n, const void *vw, const void *va)
{
	const gguf_half *w = vw, *a = va;
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)(H2F(w[i]) * H2F(a[i]));
	return (float)sum;
}

static float dot_bf16(int64_t n, const void *vw, const void *va)
{
	const gguf_bf16 *w = vw, *a = va;
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)(gguf_bf16_to_f32(w[i]) * gguf_bf16_to_f32(a[i]));
	return (float)sum;
}

// ---- scalar tiles: one row dot per output

#define SCALAR_TILE(T)                                                                       \
	static void tile_##T(int64_t n, const void *w, size_t bw, int nw, const void *x,      \
	                     size_t bx, int na, float *s, int64_t lds)                        \
	{                                                                                     \
		for (int a = 0; a < na; a++)                                                  \
			for (int r = 0; r < nw; r++)                                          \
				s[a * lds + r] = dot_##T(n, (const char *)w + r * bw,         \
				                         (const char *)x + a * bx);           \
	}

SCALAR_TILE(f32)
SCALAR_TILE(f16)
SCALAR_TILE(bf16)
SCALAR_TILE(q4_0)
SCALAR_TILE(q4_1)
SCALAR_TILE(q5_0)
SCALAR_TILE(q5_1)
SCALAR_TILE(q8_0)
SCALAR_TILE(q2_K)
SCALAR_TILE(q3_K)
SCALAR_TILE(q4_K)
SCALAR_TILE(q5_K)
SCALAR_TILE(q6_K)

cpu_tile_fn cpu_tile_scalar(enum gguf_dtype wtype)
{
	switch (wtype) {
	case GGUF_DTYPE_F32: return tile_f32;
	case GGUF_DTYPE_F16: return tile_f16;
	case GGUF_DTYPE_BF16: return tile_bf16;
	case GGUF_DTYPE_Q4_0: return tile_q4_0;
	case GGUF_DTYPE_Q4_1: return tile_q4_1;
	case GGUF_DTYPE_Q5_0: return tile_q5_0;
	case GGUF_DTYPE_Q5_1: return tile_q5_1;
	case GGUF_DTYPE_Q8_0: return tile_q8_0;
	case GGUF_DTYPE_Q2_K: return tile_q2_K;
	case GGUF_DTYPE_Q3_K: return tile_q3_K;
	case GGUF_DTYPE_Q4_K: return tile_q4_K;
	case GGUF_DTYPE_Q5_K: return tile_q5_K;
	case GGUF_DTYPE_Q6_K: return tile_q6_K;
	default: return NULL;
	}
}

// ---- dispatch

static int isa_level = -1; /* -1: not chosen yet */

static enum cpu_isa isa_from_env(void)
{
	const char *e = getenv("PROMPTFS_CPU_ISA");
	if (!e || !*e)
		return CPU_ISA_BEST;
	if (!strcmp(e, "scalar"))
		return CPU_ISA_SCALAR;
	if (!strcmp(e, "avx2"))
		return CPU_ISA_AVX2;
	if (!strcmp(e, "avx512"))
		return CPU_ISA_AVX512;
	if (!strcmp(e, "amx"))
		return CPU_ISA_AMX;
	if (strcmp(e, "best"))
		LOG_WARN("PROMPTFS_CPU_ISA=%s: not one of scalar, avx2, avx512, amx, best: using the best", e);
	return CPU_ISA_BEST;
}

void cpu_set_isa(enum cpu_isa isa)
{
	__atomic_store_n(&isa_level, (int)isa, __ATOMIC_RELAXED);
}

enum cpu_isa cpu_get_isa(void)
{
	int l = __atomic_load_n(&isa_level, __ATOMIC_RELAXED);
	if (l < 0) {
		l = (int)isa_from_env();
		__atomic_store_n(&isa_level, l, __ATOMIC_RELAXED);
	}
	return (enum cpu_isa)l;
}

struct cpu_kernel cpu_kernel_get(enum gguf_dtype wtype, enum cpu_isa isa)
{
	struct cpu_kernel k = {0};
	if (isa >= CPU_ISA_AMX && cpu_amx_usable()) {
		k = cpu_kernel_amx(wtype);
		if (k.tile)
			return k;
	}
	if (isa >= CPU_ISA_AVX512 && cpu_avx512_usable()) {
		k = cpu_kernel_avx512(wtype);
		if (k.tile) {
			k.isa = CPU_ISA_AVX512;
			return k;
		}
	}
	if (isa >= CPU_ISA_AVX2 && (k.tile = cpu_tile_avx2(wtype)) != NULL) {
		k.isa = CPU_ISA_AVX2;
		return k;
	}
	k.tile = cpu_tile_scalar(wtype);
	k.isa = CPU_ISA_SCALAR;
	return k;
}

/* Row dots use the vec_dot blocks as they are: AVX2 at most. */
float cpu_vec_dot(enum gguf_dtype wtype, int64_t n, const void *wrow, const void *act)
{
	enum cpu_isa isa = cpu_get_isa() < CPU_ISA_AVX2 ? cpu_get_isa() : CPU_ISA_AVX2;
	struct cpu_kernel k = cpu_kernel_get(wtype, isa);
	float s = 0.0f;
	if (k.tile)
		k.tile(n, wrow, 0, 1, act, 0, 1, &s, 1);
	return s;
}
