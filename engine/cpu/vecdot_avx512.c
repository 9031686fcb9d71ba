/*
 * vecdot_avx512.c — AVX-512 VNNI tile kernels for the types that dominate
 * real models (Q4_0, Q5_0, Q8_0 against Q8_0; Q4_K, Q5_K, Q6_K against
 * Q8_K), chosen at run time (cpu_avx512_usable) since the build targets
 * x86-64-v3.  Other types use the AVX2 kernels.
 *
 * The activation rows are first packed (prep functions below) into a
 * layout made for 512-bit loads:
 *   Q8_0 family (row of K):  int8 qs[K] | f32 d[K/4] | i32 off[K/4]
 *   Q8_K family (row of K):  int8 qs[K] | f32 d[K/256] | i16 bsums[K/16]
 * d[K/4] repeats each block's scale for each of its 8 lanes; off[] holds
 * -o * (sum of 4 consecutive quants) where o is the offset that makes the
 * weight type unsigned (Q4_0 8, Q5_0 16, Q8_0 128).  Weights are
 * decoded to unsigned bytes w + o, and vpdpbusd accumulates
 *   off + Σ (w + o) a = Σ w a
 * exactly, four products per i32 lane, starting from the precomputed
 * offsets: no sign tricks and no per-pair correction.  The K types' per-16
 * offsets and minima are taken out through the Q8_K block sums instead.  Per block the
 * integer sums are scaled in f32 lanes (d_w d_a) and summed at the end, so
 * results equal the scalar reference up to the order of f32 additions.
 *
 * A weight row is decoded once per group of up to 8 activation rows.
 * The quants are the same as the AVX2/scalar kernels' (same quantiser);
 * only the layout differs.
 */
#include <string.h>

#include "../../gguf/gguf.h"
#include "vecdot_impl.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_AVX512_KERNELS 1
#endif

#ifdef HAVE_AVX512_KERNELS

int cpu_avx512_usable(void)
{
	static int usable = -1;
	int u = __atomic_load_n(&usable, __ATOMIC_RELAXED);
	if (u < 0) {
		__builtin_cpu_init();
		u = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
		    __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c") &&
		    __builtin_cpu_supports("fma");
		__atomic_store_n(&usable, u, __ATOMIC_RELAXED);
	}
	return u;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#include <immintrin.h>

#include "simd_avx512.h"

#define GROUP 16 /* most activation rows per pass over a weight row */

static size_t round64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

/* Sum of each 4 consecutive int8, times -o, for n quants. */
static void offset_sums(const int8_t *q, int32_t *off, int64_t n, int o)
{
	for (int64_t l = 0; l < n / 4; l++)
		off[l] = -o * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
}

// ---- activation packing

static int offset_of(enum gguf_dtype t)
{
	switch (t) {
	case GGUF_DTYPE_Q4_0: return 8;
	case GGUF_DTYPE_Q5_0: return 16;
	case GGUF_DTYPE_Q8_0: return 128;
	default: return 0;
	}
}

static size_t pack32_size(enum gguf_dtype wtype, int64_t K)
{
	(void)wtype;
	return round64((size_t)K * 3);
}

static void pack32_prep(enum gguf_dtype wtype, const float *x, void *dst, int64_t K)
{
	int8_t *qs = dst;
	float *dl = (float *)(qs + K);
	int32_t *off = (int32_t *)(qs + 2 * K);
	for (int64_t b = 0; b < K / 32; b++) {
		struct block_q8_0 blk;
		cpu_quantize_q8_0(x + 32 * b, &blk, 32);
		memcpy(qs + 32 * b, blk.qs, 32);
		const float d = h2f(blk.d);
		for (int l = 0; l < 8; l++)
			dl[8 * b + l] = d;
	}
	offset_sums(qs, off, K, offset_of(wtype));
}

/* Q8_K family: no per-lane offsets (the K types take theirs out through
 * the bsums, see sc_q6_K). */
static size_t packK_size(enum gguf_dtype wtype, int64_t K)
{
	(void)wtype;
	return round64((size_t)K + (size_t)K / 64 + (size_t)K / 8);
}

static void packK_prep(enum gguf_dtype wtype, const float *x, void *dst, int64_t K)
{
	int8_t *qs = dst;
	float *d = (float *)(qs + K);
	int16_t *bs = (int16_t *)(qs + K + K / 64);
	(void)wtype;
	for (int64_t b = 0; b < K / QK_K; b++) {
		struct block_q8_K blk;
		cpu_quantize_act(GGUF_DTYPE_Q8_K, x + QK_K * b, &blk, QK_K);
		memcpy(qs + QK_K * b, blk.qs, QK_K);
		memcpy(bs + 16 * b, blk.bsums, sizeof(blk.bsums));
		d[b] = blk.d;
	}
}

/* One weight row against NA activation rows (up to 16: the decoded pair
 * of blocks is reused NA times; 16 accumulators stay in registers). */
#define ROW32(NAME, WT, DEC)                                                                  \
	INLINE void NAME(int64_t n, const void *wrow, const char *act, size_t bx, const int NA, \
	                 float *out, int64_t lds)                                               \
	{                                                                                       \
		const WT *w = wrow;                                                             \
		const int64_t nb = n / 32;                                                      \
		__m512 acc[GROUP];                                                              \
		int64_t ib = 0;                                                                 \
		for (int j = 0; j < NA; j++)                                                    \
			acc[j] = _mm512_setzero_ps();                                           \
		for (; ib + 2 <= nb; ib += 2) {                                                 \
			const __m512i q = cat_i(DEC(&w[ib]), DEC(&w[ib + 1]));                  \
			const __m512 dw = cat_f(_mm256_set1_ps(h2f(w[ib].d)),                   \
			                        _mm256_set1_ps(h2f(w[ib + 1].d)));              \
			for (int j = 0; j < NA; j++) {                                          \
				const int8_t *qs = (const int8_t *)(act + j * bx);              \
				const float *dl = (const float *)(qs + n);                      \
				const int32_t *off = (const int32_t *)(qs + 2 * n);             \
				__m512i s = _mm512_loadu_si512(off + 8 * ib);                   \
				s = _mm512_dpbusd_epi32(s, q, _mm512_loadu_si512(qs + 32 * ib)); \
				const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(s),           \
				                               _mm512_loadu_ps(dl + 8 * ib));   \
				acc[j] = _mm512_fmadd_ps(f, dw, acc[j]);                        \
			}                                                                       \
		}                                                                               \
		if (ib < nb) { /* an odd last block: 256-bit */                                 \
			const __m256i q = DEC(&w[ib]);                                          \
			const __m256 dw = _mm256_set1_ps(h2f(w[ib].d));                         \
			for (int j = 0; j < NA; j++) {                                          \
				const int8_t *qs = (const int8_t *)(act + j * bx);              \
				const float *dl = (const float *)(qs + n);                      \
				const int32_t *off = (const int32_t *)(qs + 2 * n);             \
				__m256i s = load32(off + 8 * ib);                               \
				s = _mm256_dpbusd_epi32(s, q, load32(qs + 32 * ib));            \
				const __m256 f = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), \
				                                             _mm256_loadu_ps(dl + 8 * ib)), dw); \
				acc[j] = _mm512_add_ps(acc[j], _mm512_insertf32x8(_mm512_setzero_ps(), f, 0)); \
			}                                                                       \
		}                                                                               \
		for (int j = 0; j < NA; j++)                                                    \
			out[j * lds] = _mm512_reduce_add_ps(acc[j]);                            \
	}

ROW32(row_q4_0, struct block_q4_0, u_q4_0)
ROW32(row_q5_0, struct block_q5_0, u_q5_0)
ROW32(row_q8_0, struct block_q8_0, u_q8_0)

// ---- K types: a super-block is 4 vectors of 64 unsigned weights
//
// S[v] holds, per i32 lane of vector v, d_w times the scale of the
// sub-block that lane's 4 elements belong to; m16 (Q4_K, Q5_K) the
// sub-block minima per 16 elements, dotted with the activation's bsums.

INLINE void sc_k4(const uint8_t *scales, gguf_half hd, __m512 S[4], __m256i *m16)
{
	uint8_t sm[16];
	k4_unpack(scales, sm);
	const __m128i v = _mm_loadu_si128((const __m128i *)sm);
	const __m256 scf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), _mm256_set1_ps(h2f(hd)));
	const __m512 z = _mm512_castps256_ps512(scf);
	for (int k = 0; k < 4; k++) {
		/* lanes 0-7: sub-block 2k, lanes 8-15: sub-block 2k+1 */
		const __m512i idx = cat_i(_mm256_set1_epi32(2 * k), _mm256_set1_epi32(2 * k + 1));
		S[k] = _mm512_permutexvar_ps(idx, z);
	}
	const __m128i mins = _mm_srli_si128(v, 8);
	*m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins, mins));
}

INLINE void sc_q4_K(const struct block_q4_K *b, __m512 S[4], __m256i *m16, float *dmin)
{
	sc_k4(b->scales, b->d, S, m16);
	*dmin = h2f(b->dmin);
}

INLINE void sc_q5_K(const struct block_q5_K *b, __m512 S[4], __m256i *m16, float *dmin)
{
	sc_k4(b->scales, b->d, S, m16);
	*dmin = h2f(b->dmin);
}

/* Q6_K: the -32 offset is taken out per 16-sub-block through the
 * activation's bsums, like the minima of Q4_K: Σ sc (q - 32) a =
 * Σ sc q a - 32 Σ sc bsum, so m16 = sc and dmin = 32 d. */
INLINE void sc_q6_K(const struct block_q6_K *b, __m512 S[4], __m256i *m16, float *dmin)
{
	const __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales);
	const float d = h2f(b->d);
	const __m512 z = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(s8)), _mm512_set1_ps(d));
	for (int k = 0; k < 4; k++) {
		/* lane l of vector k covers elements 64k + 4l.. → sub-block 4k + l/4 */
		const __m512i idx = _mm512_set_epi32(4 * k + 3, 4 * k + 3, 4 * k + 3, 4 * k + 3,
		                                     4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 2,
		                                     4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 1,
		                                     4 * k, 4 * k, 4 * k, 4 * k);
		S[k] = _mm512_permutexvar_ps(idx, z);
	}
	*m16 = _mm256_cvtepi8_epi16(s8);
	*dmin = 32.0f * d;
}

#define ROWK(NAME, WT, SC, DEC, HAS_MIN)                                             \
	INLINE void NAME(int64_t n, const void *wrow, const char *act, size_t bx, const int NA, \
	                 float *out, int64_t lds)                                               \
	{                                                                                       \
		const WT *w = wrow;                                                             \
		__m512 acc[GROUP];                                                              \
		__m256 accm[GROUP];                                                             \
		for (int j = 0; j < NA; j++) {                                                  \
			acc[j] = _mm512_setzero_ps();                                           \
			accm[j] = _mm256_setzero_ps();                                          \
		}                                                                               \
		for (int64_t ib = 0; ib < n / QK_K; ib++) {                                     \
			__m512 S[4];                                                            \
			__m512i q[4];                                                           \
			__m256i m16;                                                            \
			float dmin;                                                             \
			SC(&w[ib], S, &m16, &dmin);                                             \
			for (int k = 0; k < 4; k++)                                             \
				q[k] = DEC(&w[ib], k);                                          \
			for (int j = 0; j < NA; j++) {                                          \
				const int8_t *qs = (const int8_t *)(act + j * bx);              \
				const float *da = (const float *)(qs + n);                      \
				const int16_t *bs = (const int16_t *)(qs + n + n / 64);         \
				__m512 t = _mm512_setzero_ps();                                 \
				for (int k = 0; k < 4; k++) {                                   \
					__m512i s = _mm512_setzero_si512();                     \
					s = _mm512_dpbusd_epi32(s, q[k],                        \
					                        _mm512_loadu_si512(qs + QK_K * ib + 64 * k)); \
					t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), S[k], t);    \
				}                                                               \
				acc[j] = _mm512_fmadd_ps(t, _mm512_set1_ps(da[ib]), acc[j]);    \
				if (HAS_MIN) {                                                  \
					const __m256i mi = _mm256_madd_epi16(load32(bs + 16 * ib), m16); \
					accm[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mi),       \
					                          _mm256_set1_ps(dmin * da[ib]), accm[j]); \
				}                                                               \
			}                                                                       \
		}                                                                               \
		for (int j = 0; j < NA; j++)                                                    \
			out[j * lds] = _mm512_reduce_add_ps(acc[j]) - (HAS_MIN ? hsum8(accm[j]) : 0.0f); \
	}

ROWK(row_q4_K, struct block_q4_K, sc_q4_K, dec_q4_K, 1)
ROWK(row_q5_K, struct block_q5_K, sc_q5_K, dec_q5_K, 1)
ROWK(row_q6_K, struct block_q6_K, sc_q6_K, dec_q6_K, 1)

// ---- tiles: groups of G activation rows, each against every weight row

#define CALL_NA(ROW, K)                                                                       \
	case K:                                                                                 \
		ROW(n, wr, xr, bx, K, sr, lds);                                                 \
		break;

#define TILE(NAME, ROW, G)                                                                    \
	static void NAME(int64_t n, const void *w, size_t bw, int nw, const void *x, size_t bx, \
	                 int na, float *s, int64_t lds)                                         \
	{                                                                                       \
		const char *wc = w, *xc = x;                                                    \
		for (int a = 0; a < na; a += G) {                                               \
			const int g = na - a < G ? na - a : G;                                  \
			for (int r = 0; r < nw; r++) {                                          \
				const char *wr = wc + r * bw, *xr = xc + a * bx;                \
				float *sr = s + a * lds + r;                                    \
				switch (g) {                                                    \
					CALL_NA(ROW, 1)                                         \
					CALL_NA(ROW, 2)                                         \
					CALL_NA(ROW, 3)                                         \
					CALL_NA(ROW, 4)                                         \
					CALL_NA(ROW, 5)                                         \
					CALL_NA(ROW, 6)                                         \
					CALL_NA(ROW, 7)                                         \
					CALL_NA(ROW, 8)                                         \
					CALL_NA(ROW, 9)                                         \
					CALL_NA(ROW, 10)                                        \
					CALL_NA(ROW, 11)                                        \
					CALL_NA(ROW, 12)                                        \
					CALL_NA(ROW, 13)                                        \
					CALL_NA(ROW, 14)                                        \
					CALL_NA(ROW, 15)                                        \
					CALL_NA(ROW, 16)                                        \
				}                                                               \
			}                                                                       \
		}                                                                               \
	}

/* 16 activation rows per pass for the 32-blocks (1 accumulator each), 8
 * for the K types (their 4 decoded vectors and 4 scale vectors also stay
 * in registers). */
TILE(tile_q4_0, row_q4_0, 16)
TILE(tile_q5_0, row_q5_0, 16)
TILE(tile_q8_0, row_q8_0, 16)
TILE(tile_q4_K, row_q4_K, 8)
TILE(tile_q5_K, row_q5_K, 8)
TILE(tile_q6_K, row_q6_K, 8)
#pragma GCC pop_options

struct cpu_kernel cpu_kernel_avx512(enum gguf_dtype wtype)
{
	struct cpu_kernel k = {0};
	switch (wtype) {
	case GGUF_DTYPE_Q4_0: k.tile = tile_q4_0; break;
	case GGUF_DTYPE_Q5_0: k.tile = tile_q5_0; break;
	case GGUF_DTYPE_Q8_0: k.tile = tile_q8_0; break;
	case GGUF_DTYPE_Q4_K: k.tile = tile_q4_K; break;
	case GGUF_DTYPE_Q5_K: k.tile = tile_q5_K; break;
	case GGUF_DTYPE_Q6_K: k.tile = tile_q6_K; break;
	default: return k;
	}
	if (wtype == GGUF_DTYPE_Q4_0 || wtype == GGUF_DTYPE_Q5_0 || wtype == GGUF_DTYPE_Q8_0) {
		k.prep = pack32_prep;
		k.prep_size = pack32_size;
	} else {
		k.prep = packK_prep;
		k.prep_size = packK_size;
	}
	k.isa = CPU_ISA_AVX512;
	return k;
}

#else /* not x86-64 GCC */

int cpu_avx512_usable(void)
{
	return 0;
}

struct cpu_kernel cpu_kernel_avx512(enum gguf_dtype wtype)
{
	struct cpu_kernel k = {0};
	(void)wtype;
	return k;
}

#endif
