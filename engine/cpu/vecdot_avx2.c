/*
 * vecdot_avx2.c — AVX2 + FMA + F16C tile kernels for every weight type
 * (the build's baseline is x86-64-v3, so these are always compiled there;
 * elsewhere cpu_tile_avx2 returns NULL and the scalar kernels run).
 *
 * Every kernel computes, per block, the same integers as the scalar
 * reference in vecdot.c and accumulates d_w * d_a * isum in f32 lanes, so
 * it differs from the reference only in the order of f32 additions.
 *
 * Tiles: a row function handles one weight row against NA (1..4, a
 * compile-time constant after inlining) activation rows, decoding each
 * weight block once into registers and reusing it NA times.  Per output
 * the sequence of operations does not depend on NA, so results are
 * bit-identical whatever the tiling (test_vecdot checks this).
 *
 * Integer products: weights are made unsigned (or |w| with the sign moved
 * to the activation: _mm256_sign_epi8) for _mm256_maddubs_epi16; no i16
 * overflow is possible for the ranges used (|w| <= 128, |a| <= 127, pairs
 * <= 32512).  The K types' per-16 scales multiply in _mm256_madd_epi16; a
 * type's offset (Q3_K: -4, Q6_K: -32) is taken out through the activation
 * block sums (bsums) rather than per element.
 */
#include <string.h>

#include "../../gguf/gguf.h"
#include "vecdot_impl.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

INLINE float h2f(gguf_half h)
{
	return _cvtsh_ss(h);
}

INLINE float hsum8(__m256 v)
{
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	return _mm_cvtss_f32(r);
}

INLINE __m256i load32(const void *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

/* 16 packed nibbles → 32 bytes: low nibbles first, then high nibbles. */
INLINE __m256i nibbles32(const uint8_t *p)
{
	const __m128i t = _mm_loadu_si128((const __m128i *)p);
	const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
	return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits → 32 bytes, 0xFF where the bit is set. */
INLINE __m256i bits32(const uint8_t *p)
{
	uint32_t u;
	memcpy(&u, p, 4);
	const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
	                                       0x0101010101010101, 0x0000000000000000);
	__m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), shuf);
	b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
	return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* Σ of 4 consecutive u8*s8 products per i32 lane, as floats. */
INLINE __m256 dot_us8(__m256i u, __m256i s)
{
	const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
	return _mm256_cvtepi32_ps(p);
}

// ---- 32-element blocks against Q8_0 (signed weights)

INLINE __m256i dec_q4_0(const struct block_q4_0 *b)
{
	return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
}

INLINE __m256i dec_q5_0(const struct block_q5_0 *b)
{
	/* (nib | h<<4) - 16 == nib | 0xF0 where h is 0, nib where h is 1 */
	const __m256i hi = _mm256_andnot_si256(bits32(b->qh), _mm256_set1_epi8((char)0xF0));
	return _mm256_or_si256(nibbles32(b->qs), hi);
}

INLINE __m256i dec_q8_0(const struct block_q8_0 *b)
{
	return load32(b->qs);
}

#define ROW_SIGNED32(NAME, WT, DEC)                                                           \
	INLINE void NAME(int64_t n, const void *wrow, const char *act, size_t bx, const int NA, \
	                 float *out, int64_t lds)                                               \
	{                                                                                       \
		const WT *w = wrow;                                                             \
		__m256 acc[CPU_TILE_A];                                                         \
		for (int j = 0; j < NA; j++)                                                    \
			acc[j] = _mm256_setzero_ps();                                           \
		for (int64_t ib = 0; ib < n / 32; ib++) {                                       \
			const __m256i q = DEC(&w[ib]);                                          \
			const __m256i aq = _mm256_sign_epi8(q, q);                              \
			const float dw = h2f(w[ib].d);                                          \
			for (int j = 0; j < NA; j++) {                                          \
				const struct block_q8_0 *a = (const void *)(act + j * bx);      \
				const __m256i sa = _mm256_sign_epi8(load32(a[ib].qs), q);       \
				const __m256 d = _mm256_set1_ps(dw * h2f(a[ib].d));             \
				acc[j] = _mm256_fmadd_ps(d, dot_us8(aq, sa), acc[j]);           \
			}                                                                       \
		}                                                                               \
		for (int j = 0; j < NA; j++)                                                    \
			out[j * lds] = hsum8(acc[j]);                                           \
	}

ROW_SIGNED32(row_q4_0, struct block_q4_0, dec_q4_0)
ROW_SIGNED32(row_q5_0, struct block_q5_0, dec_q5_0)
ROW_SIGNED32(row_q8_0, struct block_q8_0, dec_q8_0)

// ---- 32-element blocks with a minimum against Q8_1 (unsigned weights)

INLINE __m256i dec_q4_1(const struct block_q4_1 *b)
{
	return nibbles32(b->qs);
}

INLINE __m256i dec_q5_1(const struct block_q5_1 *b)
{
	const __m256i hi = _mm256_and_si256(bits32(b->qh), _mm256_set1_epi8(0x10));
	return _mm256_or_si256(nibbles32(b->qs), hi);
}

#define ROW_MIN32(NAME, WT, DEC)                                                              \
	INLINE void NAME(int64_t n, const void *wrow, const char *act, size_t bx, const int NA, \
	                 float *out, int64_t lds)                                               \
	{                                                                                       \
		const WT *w = wrow;                                                             \
		__m256 acc[CPU_TILE_A];                                                         \
		float summs[CPU_TILE_A];                                                        \
		for (int j = 0; j < NA; j++) {                                                  \
			acc[j] = _mm256_setzero_ps();                                           \
			summs[j] = 0.0f;                                                        \
		}                                                                               \
		for (int64_t ib = 0; ib < n / 32; ib++) {                                       \
			const __m256i q = DEC(&w[ib]);                                          \
			const float dw = h2f(w[ib].d), mw = h2f(w[ib].m);                       \
			for (int j = 0; j < NA; j++) {                                          \
				const struct block_q8_1 *a = (const void *)(act + j * bx);      \
				const __m256 d = _mm256_set1_ps(dw * h2f(a[ib].d));             \
				acc[j] = _mm256_fmadd_ps(d, dot_us8(q, load32(a[ib].qs)), acc[j]); \
				summs[j] += mw * h2f(a[ib].s);                                  \
			}                                                                       \
		}                                                                               \
		for (int j = 0; j < NA; j++)                                                    \
			out[j * lds] = hsum8(acc[j]) + summs[j];                                \
	}

ROW_MIN32(row_q4_1, struct block_q4_1, dec_q4_1)
ROW_MIN32(row_q5_1, struct block_q5_1, dec_q5_1)

// ---- K types against Q8_K
//
// A super-block is handled as 8 vectors of 32 unsigned weights (elements
// 32v .. 32v+31) with an i16 scale vector each (low lane: the scale of
// elements 32v..32v+15, high lane: 32v+16..32v+31).  Per activation:
//   isum = Σ_v madd(maddubs(q_v, a_v), sc_v) - madd(bsums, corr)
//   acc += (d_w d_a) * isum  [- (dmin_w d_a) * madd(bsums, mins)]
// where corr removes a constant offset (Q3_K 4, Q6_K 32) and mins the
// per-sub-block minimum (Q2_K, Q4_K, Q5_K).

struct kblock {
	__m256i sc[8]; /* i16 scales per vector (see above) */
	__m256i corr;  /* i16 per 16-sub-block, dotted with bsums; subtracted from isum */
	__m256i mins;  /* i16 per 16-sub-block, dotted with bsums; times dmin */
	float d, dmin;
	bool has_corr, has_min;
};

INLINE __m256i scale_pair(int lo, int hi)
{
	return _mm256_set_m128i(_mm_set1_epi16((short)hi), _mm_set1_epi16((short)lo));
}

INLINE __m256i shr_bits(__m256i v, int shift, int mask)
{
	return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8((char)mask));
}

INLINE __m256i dec_q2_K(const struct block_q2_K *b, int v)
{
	return shr_bits(load32(b->qs + 32 * (v / 4)), 2 * (v % 4), 3);
}

INLINE __m256i dec_q3_K(const struct block_q3_K *b, int v)
{
	const __m256i lo = shr_bits(load32(b->qs + 32 * (v / 4)), 2 * (v % 4), 3);
	const __m256i hb = shr_bits(load32(b->hmask), v, 1); /* bit 4n+g == v */
	return _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));
}

INLINE __m256i dec_q4_K(const struct block_q4_K *b, int v)
{
	return shr_bits(load32(b->qs + 32 * (v / 2)), 4 * (v % 2), 0xF);
}

INLINE __m256i dec_q5_K(const struct block_q5_K *b, int v)
{
	const __m256i lo = shr_bits(load32(b->qs + 32 * (v / 2)), 4 * (v % 2), 0xF);
	const __m256i hb = shr_bits(load32(b->qh), v, 1);
	return _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
}

INLINE __m256i dec_q6_K(const struct block_q6_K *b, int v)
{
	const int n = v / 4, g = v % 4;
	const __m256i lo = shr_bits(load32(b->ql + 64 * n + 32 * (g & 1)), 4 * (g >> 1), 0xF);
	const __m256i hi = shr_bits(load32(b->qh + 32 * n), 2 * g, 3);
	return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

INLINE void kb_q2_K(const struct block_q2_K *b, struct kblock *k)
{
	const __m128i s = _mm_loadu_si128((const __m128i *)b->scales);
	const __m256i s16 = _mm256_cvtepu8_epi16(s);
	int16_t L[16];
	_mm256_storeu_si256((__m256i *)L, _mm256_and_si256(s16, _mm256_set1_epi16(0xF)));
	for (int v = 0; v < 8; v++)
		k->sc[v] = scale_pair(L[2 * v], L[2 * v + 1]);
	k->mins = _mm256_srli_epi16(s16, 4);
	k->d = h2f(b->d);
	k->dmin = h2f(b->dmin);
	k->has_corr = false;
	k->has_min = true;
}

INLINE void kb_q3_K(const struct block_q3_K *b, struct kblock *k)
{
	int16_t sc[16];
	for (int j = 0; j < 16; j++) {
		const int lo = (b->scales[j % 8] >> (4 * (j / 8))) & 0xF;
		const int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
		sc[j] = (int16_t)((lo | (hi << 4)) - 32);
	}
	for (int v = 0; v < 8; v++)
		k->sc[v] = scale_pair(sc[2 * v], sc[2 * v + 1]);
	k->corr = _mm256_slli_epi16(_mm256_loadu_si256((const __m256i *)sc), 2); /* 4 * sc */
	k->d = h2f(b->d);
	k->has_corr = true;
	k->has_min = false;
}

INLINE void kb_k4(const uint8_t *scales, gguf_half d, gguf_half dmin, struct kblock *k)
{
	int16_t m16[16];
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		gguf_get_scale_min_k4(j, scales, &sc, &m);
		k->sc[j] = _mm256_set1_epi16(sc);
		m16[2 * j] = m16[2 * j + 1] = m;
	}
	k->mins = _mm256_loadu_si256((const __m256i *)m16);
	k->d = h2f(d);
	k->dmin = h2f(dmin);
	k->has_corr = false;
	k->has_min = true;
}

INLINE void kb_q4_K(const struct block_q4_K *b, struct kblock *k)
{
	kb_k4(b->scales, b->d, b->dmin, k);
}

INLINE void kb_q5_K(const struct block_q5_K *b, struct kblock *k)
{
	kb_k4(b->scales, b->d, b->dmin, k);
}

INLINE void kb_q6_K(const struct block_q6_K *b, struct kblock *k)
{
	const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
	for (int v = 0; v < 8; v++)
		k->sc[v] = scale_pair(b->scales[2 * v], b->scales[2 * v + 1]);
	k->corr = _mm256_slli_epi16(s16, 5); /* 32 * sc */
	k->d = h2f(b->d);
	k->has_corr = true;
	k->has_min = false;
}

#define ROW_K(NAME, WT, KB, DEC)                                                              \
	INLINE void NAME(int64_t n, const void *wrow, const char *act, size_t bx, const int NA, \
	                 float *out, int64_t lds)                                               \
	{                                                                                       \
		const WT *w = wrow;                                                             \
		__m256 acc[CPU_TILE_A];                                                         \
		for (int j = 0; j < NA; j++)                                                    \
			acc[j] = _mm256_setzero_ps();                                           \
		for (int64_t ib = 0; ib < n / QK_K; ib++) {                                     \
			struct kblock k;                                                        \
			__m256i isum[CPU_TILE_A];                                               \
			KB(&w[ib], &k);                                                         \
			for (int j = 0; j < NA; j++)                                            \
				isum[j] = _mm256_setzero_si256();                               \
			for (int v = 0; v < 8; v++) {                                           \
				const __m256i q = DEC(&w[ib], v);                               \
				for (int j = 0; j < NA; j++) {                                  \
					const struct block_q8_K *a = (const void *)(act + j * bx); \
					const __m256i p = _mm256_maddubs_epi16(q, load32(a[ib].qs + 32 * v)); \
					isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(p, k.sc[v])); \
				}                                                               \
			}                                                                       \
			for (int j = 0; j < NA; j++) {                                          \
				const struct block_q8_K *a = (const void *)(act + j * bx);      \
				const __m256i bs = load32(a[ib].bsums);                         \
				if (k.has_corr)                                                 \
					isum[j] = _mm256_sub_epi32(isum[j], _mm256_madd_epi16(bs, k.corr)); \
				acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(k.d * a[ib].d),          \
				                         _mm256_cvtepi32_ps(isum[j]), acc[j]);  \
				if (k.has_min)                                                  \
					acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(-k.dmin * a[ib].d), \
					                         _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, k.mins)), \
					                         acc[j]);                       \
			}                                                                       \
		}                                                                               \
		for (int j = 0; j < NA; j++)                                                    \
			out[j * lds] = hsum8(acc[j]);                                           \
	}

ROW_K(row_q2_K, struct block_q2_K, kb_q2_K, dec_q2_K)
ROW_K(row_q3_K, struct block_q3_K, kb_q3_K, dec_q3_K)
ROW_K(row_q4_K, struct block_q4_K, kb_q4_K, dec_q4_K)
ROW_K(row_q5_K, struct block_q5_K, kb_q5_K, dec_q5_K)
ROW_K(row_q6_K, struct block_q6_K, kb_q6_K, dec_q6_K)

// ---- float types (F32 × F32, F16 × F16, BF16 × BF16)

INLINE __m256 ld_f32(const void *p, int64_t i)
{
	return _mm256_loadu_ps((const float *)p + i);
}

INLINE __m256 ld_f16(const void *p, int64_t i)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const gguf_half *)p + i)));
}

INLINE __m256 ld_bf16(const void *p, int64_t i)
{
	const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const gguf_bf16 *)p + i)));
	return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

INLINE float el_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
INLINE float el_f16(const void *p, int64_t i) { return h2f(((const gguf_half *)p)[i]); }
INLINE float el_bf16(const void *p, int64_t i) { return gguf_bf16_to_f32(((const gguf_bf16 *)p)[i]); }

/* Two independent accumulators per activation row (8 elements each) hide
 * the FMA latency; a scalar tail handles n % 16. */
#define ROW_FLOAT(NAME, LD, EL)                                                               \
	INLINE void NAME(int64_t n, const void *w, const char *act, size_t bx, const int NA,  \
	                 float *out, int64_t lds)                                               \
	{                                                                                       \
		__m256 acc0[CPU_TILE_A], acc1[CPU_TILE_A];                                      \
		int64_t i = 0;                                                                  \
		for (int j = 0; j < NA; j++)                                                    \
			acc0[j] = acc1[j] = _mm256_setzero_ps();                                \
		for (; i + 16 <= n; i += 16) {                                                  \
			const __m256 w0 = LD(w, i), w1 = LD(w, i + 8);                          \
			for (int j = 0; j < NA; j++) {                                          \
				acc0[j] = _mm256_fmadd_ps(w0, LD(act + j * bx, i), acc0[j]);    \
				acc1[j] = _mm256_fmadd_ps(w1, LD(act + j * bx, i + 8), acc1[j]); \
			}                                                                       \
		}                                                                               \
		for (int j = 0; j < NA; j++) {                                                  \
			float s = hsum8(_mm256_add_ps(acc0[j], acc1[j]));                       \
			for (int64_t k = i; k < n; k++)                                         \
				s += EL(w, k) * EL(act + j * bx, k);                            \
			out[j * lds] = s;                                                       \
		}                                                                               \
	}

ROW_FLOAT(row_f32, ld_f32, el_f32)
ROW_FLOAT(row_f16, ld_f16, el_f16)
ROW_FLOAT(row_bf16, ld_bf16, el_bf16)

// ---- tiles

/* For each group of up to CPU_TILE_A activation rows, every weight row of
 * the tile (the caller keeps the tile small enough to stay in L1). */
#define TILE(NAME, ROW)                                                                       \
	static void NAME(int64_t n, const void *w, size_t bw, int nw, const void *x, size_t bx, \
	                 int na, float *s, int64_t lds)                                         \
	{                                                                                       \
		const char *wc = w, *xc = x;                                                    \
		int a = 0;                                                                      \
		for (; a + 4 <= na; a += 4)                                                     \
			for (int r = 0; r < nw; r++)                                            \
				ROW(n, wc + r * bw, xc + a * bx, bx, 4, s + a * lds + r, lds);  \
		const int rest = na - a;                                                        \
		for (int r = 0; r < nw; r++) {                                                  \
			const char *wr = wc + r * bw, *xr = xc + a * bx;                        \
			float *sr = s + a * lds + r;                                            \
			if (rest == 3)                                                          \
				ROW(n, wr, xr, bx, 3, sr, lds);                                 \
			else if (rest == 2)                                                     \
				ROW(n, wr, xr, bx, 2, sr, lds);                                 \
			else if (rest == 1)                                                     \
				ROW(n, wr, xr, bx, 1, sr, lds);                                 \
		}                                                                               \
	}

TILE(tile_q4_0, row_q4_0)
TILE(tile_q5_0, row_q5_0)
TILE(tile_q8_0, row_q8_0)
TILE(tile_q4_1, row_q4_1)
TILE(tile_q5_1, row_q5_1)
TILE(tile_q2_K, row_q2_K)
TILE(tile_q3_K, row_q3_K)
TILE(tile_q4_K, row_q4_K)
TILE(tile_q5_K, row_q5_K)
TILE(tile_q6_K, row_q6_K)
TILE(tile_f32, row_f32)
TILE(tile_f16, row_f16)
TILE(tile_bf16, row_bf16)

cpu_tile_fn cpu_tile_avx2(enum gguf_dtype wtype)
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

#else /* no AVX2/FMA/F16C at compile time */

cpu_tile_fn cpu_tile_avx2(enum gguf_dtype wtype)
{
	(void)wtype;
	return NULL;
}

#endif
