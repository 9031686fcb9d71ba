/*
 * simd_avx512.h — small AVX-512 helpers and the 32-block weight decoders
 * shared by vecdot_avx512.c and vecdot_amx.c.  Include it after
 * `#pragma GCC target("...avx512...")` and <immintrin.h>: every function is
 * static inline and compiled for the includer's target.
 */
#ifndef PROMPTFS_ENGINE_CPU_SIMD_AVX512_H
#define PROMPTFS_ENGINE_CPU_SIMD_AVX512_H

#define INLINE static inline __attribute__((always_inline))

INLINE float h2f(gguf_half h)
{
	return _cvtsh_ss(h);
}

INLINE __m256i load32(const void *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

INLINE __m512i cat_i(__m256i lo, __m256i hi)
{
	return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

INLINE __m512 cat_f(__m256 lo, __m256 hi)
{
	return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

INLINE float hsum8(__m256 v)
{
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	return _mm_cvtss_f32(r);
}

// ---- 32-element blocks: decode to unsigned bytes (value + offset)

INLINE __m256i nib32(const uint8_t *p)
{
	const __m128i t = _mm_loadu_si128((const __m128i *)p);
	const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
	return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

INLINE __m256i u_q4_0(const struct block_q4_0 *b)
{
	return nib32(b->qs);
}

INLINE __m256i u_q5_0(const struct block_q5_0 *b)
{
	uint32_t h;
	memcpy(&h, b->qh, 4);
	const __m256i v = nib32(b->qs);
	return _mm256_mask_add_epi8(v, (__mmask32)h, v, _mm256_set1_epi8(16));
}

INLINE __m256i u_q8_0(const struct block_q8_0 *b)
{
	return _mm256_xor_si256(load32(b->qs), _mm256_set1_epi8((char)0x80));
}

// ---- K types: a super-block of 256 as 4 vectors of 64 unsigned quants
// (vector k holds elements 64k .. 64k + 63, in order)

/* The 8 6-bit scales and 8 mins of Q4_K/Q5_K as bytes sc[0..7], m[0..7]. */
INLINE void k4_unpack(const uint8_t *scales, uint8_t out[16])
{
	uint32_t u[4];
	memcpy(u, scales, 12);
	u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
	const uint32_t mins_lo = u[1] & 0x3f3f3f3fu;
	u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
	u[2] = mins_lo;
	u[0] &= 0x3f3f3f3fu;
	memcpy(out, u, 16);
}

INLINE __m512i dec_q4_K(const struct block_q4_K *b, int k)
{
	const __m256i x = load32(b->qs + 32 * k);
	return _mm512_and_si512(cat_i(x, _mm256_srli_epi16(x, 4)), _mm512_set1_epi8(0x0F));
}

INLINE __m512i dec_q5_K(const struct block_q5_K *b, int k)
{
	const __m256i x = load32(b->qs + 32 * k);
	const __m512i lo = _mm512_and_si512(cat_i(x, _mm256_srli_epi16(x, 4)), _mm512_set1_epi8(0x0F));
	const __m256i h = load32(b->qh);
	const __m512i bits = cat_i(_mm256_set1_epi8((char)(1 << (2 * k))), _mm256_set1_epi8((char)(2 << (2 * k))));
	const __mmask64 m = _mm512_test_epi8_mask(cat_i(h, h), bits);
	return _mm512_mask_add_epi8(lo, m, lo, _mm512_set1_epi8(16));
}

INLINE __m512i dec_q6_K(const struct block_q6_K *b, int k)
{
	const int n = k >> 1, hi = k & 1;
	const __m512i ql = _mm512_loadu_si512(b->ql + 64 * n);
	const __m512i lo = _mm512_and_si512(hi ? _mm512_srli_epi16(ql, 4) : ql, _mm512_set1_epi8(0x0F));
	const __m256i qh = load32(b->qh + 32 * n);
	__m512i h = cat_i(_mm256_srli_epi16(qh, 4 * hi), _mm256_srli_epi16(qh, 4 * hi + 2));
	h = _mm512_slli_epi16(_mm512_and_si512(h, _mm512_set1_epi8(3)), 4);
	return _mm512_or_si512(lo, h);
}

#endif /* PROMPTFS_ENGINE_CPU_SIMD_AVX512_H */
