/*
 * vecdot_amx.c — Intel AMX (tile matrix multiply, int8) kernels for the
 * 32-element block types Q4_0, Q5_0 and Q8_0 against Q8_0 activations,
 * chosen at run time where the CPU has AMX-INT8 and Linux grants the tile
 * state (cpu_amx_usable).  Other types use the AVX-512 / AVX2 kernels.
 *
 * One TDPBSSD multiplies a 16x32 int8 tile A by a 32x16 int8 tile B into
 * 16x16 int32: 8,192 multiply-adds, exact.  Here
 *   A = 16 weight rows x one block (32 signed quants; Q4_0/Q5_0 decoded to
 *       int8 into a panel, Q8_0 loaded straight from the GGUF blocks),
 *   B = one block of 16 activation rows, in the VNNI layout TDPBSSD reads
 *       (8 rows of 64 bytes: row k4 holds, for each activation row m, its
 *       quants 4k4..4k4+3),
 *   C = the block's integer dot products, sumi[n][m].
 * Each block's integers are then scaled in f32 and accumulated:
 *   y[m][n] = fma(float(sumi[n][m]), dw[n] * da[m], y[m][n])   block by block,
 * the reference's numerics (exact block integers, one f32 scale product per
 * block) with one f32 rounding order.  A single activation row (decode)
 * uses the same A tiles against a 32x1 B tile, and the same fma per block,
 * so a token's result is bit-identical whether it is computed alone or in
 * a batch of any size: prefill, decode and batched decode agree exactly.
 *
 * Activation layout (prep_group): rows come in groups of 16; a group holds,
 * per block kb, the 512-byte B tile, then 16 f32 scales per block:
 *   group: int8 b[K/32][8][64] | f32 d[K/32][16]      (16 rows x bx bytes)
 * so one activation row occupies bx = K + K/8 bytes on average, and a
 * group of fewer than 16 rows still takes 16 rows of scratch.  A group of
 * one row (decode, or the last row of a batch) is kept in row order for
 * the AVX-512 VNNI product that serves it (gemv_rows16):
 *   single: int8 qs[K] | f32 d[K/32] | i32 sum[K/32]   (the block sums of qs)
 * That product computes the same exact block integers and the same fma
 * per block as the tiles, so its results are bit-identical; TDPBSSD with
 * one activation column is slower than it.
 *
 * The tile intrinsics of GCC 12 declare too little of the memory they touch
 * (_tile_loadconfig reads 8 of 64 bytes; _tile_loadd/_tile_stored none), so
 * the compiler may drop the stores they depend on: the asm wrappers below
 * name every byte.  That is the bug that crashes llama.cpp's AMX kernels
 * built with GCC 12 (scripts/deps.sh).
 *
 * Shape letters: K elements per row (a multiple of 32), n weight rows (16
 * per panel), m activation rows (16 per group), kb blocks.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "../../gguf/gguf.h"
#include "../../gguf/log.h"
#include "vecdot_impl.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define HAVE_AMX_KERNELS 1
#endif

#ifdef HAVE_AMX_KERNELS

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* AMX-TILE and AMX-INT8 (CPUID 7.0 EDX bits 24, 25), the OS saving tile
 * state (XCR0 bits 17, 18), AVX-512 for the epilogues, and Linux's
 * permission for this process (arch_prctl; refused on kernels before 5.16
 * or where a signal stack is too small). */
static int amx_probe(void)
{
	unsigned a, b, c, d;
	if (!cpu_avx512_usable() || __get_cpuid_max(0, NULL) < 7)
		return 0;
	__cpuid_count(7, 0, a, b, c, d);
	if (!((d >> 24) & 1) || !((d >> 25) & 1))
		return 0;
	__cpuid(1, a, b, c, d);
	if (!((c >> 27) & 1)) /* OSXSAVE */
		return 0;
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if (((lo >> 17) & 3) != 3)
		return 0;
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
		LOG_WARN("the CPU has AMX but Linux refused the tile state (arch_prctl: %s): "
		         "using AVX-512", strerror(errno));
		return 0;
	}
	return 1;
}

int cpu_amx_usable(void)
{
	static int usable = -1;
	int u = __atomic_load_n(&usable, __ATOMIC_ACQUIRE);
	if (u < 0) {
		u = amx_probe();
		__atomic_store_n(&usable, u, __ATOMIC_RELEASE);
	}
	return u;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#include <immintrin.h>

#include "simd_avx512.h"

#define SEG 64 /* blocks per panel segment: 16 rows x 64 x 32 = 32 KiB of decoded weights */

// ---- tiles: configuration and the asm wrappers (every byte named)

struct tile_cfg {
	uint8_t palette, start_row;
	uint8_t reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};
_Static_assert(sizeof(struct tile_cfg) == 64, "LDTILECFG reads 64 bytes");

/* tmm0 = A (16 rows x kq bytes), tmm1 = B (kq/4 x 64 B), tmm2 = C (16 x 16
 * i32), for kq = 32 (a block) or 16 (a Q6_K sub-block). */
INLINE void tile_config(int kq)
{
	struct tile_cfg c __attribute__((aligned(64)));
	memset(&c, 0, sizeof(c));
	c.palette = 1;
	c.rows[0] = 16, c.colsb[0] = (uint16_t)kq;
	c.rows[1] = (uint8_t)(kq / 4), c.colsb[1] = 64;
	c.rows[2] = 16, c.colsb[2] = 64;
	__asm__ volatile("ldtilecfg %0" ::"m"(c));
}

#define TILE_LOAD(t, base, stride)                                                    \
	__asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"((long)(stride)) \
	                 : "memory")
#define TILE_STORE(t, base, stride)                                                    \
	__asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"((long)(stride)) \
	                 : "memory")
#define TILE_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
/* C += A . B (signed x signed) */
#define TILE_DPBSSD(c, a, b) __asm__ volatile("tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)

INLINE void tile_release(void)
{
	__asm__ volatile("tilerelease" ::);
}

// ---- activation packing

static size_t round64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static size_t amx_row_size(enum gguf_dtype wtype, int64_t K)
{
	(void)wtype;
	return round64((size_t)K + (size_t)K / 8);
}

/* Row `lane` of the group at g of n rows: quants at b[kb][j/4][lane*4 +
 * j%4], the block's scale at d[kb][lane]; a group of one row in row order
 * (see the top).  Same quantiser as every other kernel. */
static void amx_prep_group(enum gguf_dtype wtype, const float *x, void *g, int lane, int n, int64_t K)
{
	int8_t *b = g;
	float *d = (float *)(b + 16 * K);
	(void)wtype;
	if (n == 1) {
		float *d1 = (float *)(b + K);
		int32_t *sum = (int32_t *)(d1 + K / 32);
		for (int64_t kb = 0; kb < K / 32; kb++) {
			struct block_q8_0 blk;
			cpu_quantize_q8_0(x + 32 * kb, &blk, 32);
			memcpy(b + 32 * kb, blk.qs, 32);
			d1[kb] = _cvtsh_ss(blk.d);
			int su = 0;
			for (int j = 0; j < 32; j++)
				su += blk.qs[j];
			sum[kb] = su;
		}
		return;
	}
	for (int64_t kb = 0; kb < K / 32; kb++) {
		struct block_q8_0 blk;
		cpu_quantize_q8_0(x + 32 * kb, &blk, 32);
		int8_t *t = b + kb * 512 + lane * 4;
		for (int k4 = 0; k4 < 8; k4++)
			memcpy(t + 64 * k4, blk.qs + 4 * k4, 4);
		d[kb * 16 + lane] = _cvtsh_ss(blk.d);
	}
}

// ---- weight panels: 16 rows of one segment decoded to signed int8

/* Signed quants: the unsigned decoders less their offset. */
INLINE __m256i s_q4_0(const struct block_q4_0 *b)
{
	return _mm256_sub_epi8(u_q4_0(b), _mm256_set1_epi8(8));
}

INLINE __m256i s_q5_0(const struct block_q5_0 *b)
{
	return _mm256_sub_epi8(u_q5_0(b), _mm256_set1_epi8(16));
}

INLINE __m256i s_q8_0(const struct block_q8_0 *b)
{
	return load32(b->qs);
}

/* Panel of rows [0, nw) (rows nw..15 zero), blocks [kb0, kb0 + nb):
 * q[kb][n][32] int8 (row stride 32: the A tiles) and dw[kb][n] f32.  Q8_0
 * full panels need no q: their A tiles are read from the weights (A_TILE);
 * q is NULL then. */
#define PANEL(NAME, WT, DEC)                                                              \
	static void NAME(const char *w, size_t bw, int nw, int64_t kb0, int nb, int8_t *q,   \
	                 float *dw)                                                         \
	{                                                                                   \
		for (int n = 0; n < 16; n++) {                                              \
			const WT *r = (const WT *)(w + (size_t)n * bw) + kb0;               \
			for (int kb = 0; kb < nb; kb++) {                                   \
				__m256i v = _mm256_setzero_si256();                         \
				float s = 0.0f;                                             \
				if (n < nw) {                                               \
					if (q)                                              \
						v = DEC(&r[kb]);                            \
					s = _cvtsh_ss(r[kb].d);                             \
				}                                                           \
				if (q)                                                      \
					_mm256_store_si256((__m256i *)(q + kb * 512 + n * 32), v); \
				dw[kb * 16 + n] = s;                                        \
			}                                                                   \
		}                                                                           \
	}

PANEL(panel_q4_0, struct block_q4_0, s_q4_0)
PANEL(panel_q5_0, struct block_q5_0, s_q5_0)
PANEL(panel_q8_0, struct block_q8_0, s_q8_0)

typedef void (*panel_fn)(const char *w, size_t bw, int nw, int64_t kb0, int nb, int8_t *q, float *dw);

// ---- the products

/* A for block kb0 + ks: from the weights (a full Q8_0 panel: rows past nw
 * would read past the matrix) or from the decoded panel q. */
#define A_TILE(ks)                                                                 \
	do {                                                                       \
		if (direct)                                                        \
			TILE_LOAD(0, w + (size_t)(kb0 + (ks)) * t->bs + 2, bw);     \
		else                                                               \
			TILE_LOAD(0, q + (ks) * 512, 32);                           \
	} while (0)

typedef void (*gemv_fn)(int64_t K, const char *w, size_t bw, int nw, const int8_t *x, float *s);

struct amx_type {
	panel_fn panel;
	gemv_fn gemv;
	size_t bs;   /* bytes per block */
	int direct;  /* A tiles straight from the weight blocks (Q8_0) */
};

/* nw <= 16 weight rows against the na <= 16 rows of group g. */
static void gemm_panel(const struct amx_type *t, int64_t K, const char *w, size_t bw, int nw,
                       const int8_t *g, int na, float *s, int64_t lds)
{
	int8_t q[SEG * 512] __attribute__((aligned(64)));
	float dw[SEG * 16] __attribute__((aligned(64)));
	int32_t c[256] __attribute__((aligned(64)));
	float out[256] __attribute__((aligned(64)));
	const float *da = (const float *)(g + 16 * K);
	const int direct = t->direct && nw == 16;
	__m512 acc[16];
	for (int n = 0; n < 16; n++)
		acc[n] = _mm512_setzero_ps();
	for (int64_t kb0 = 0; kb0 < K / 32; kb0 += SEG) {
		const int nb = K / 32 - kb0 < SEG ? (int)(K / 32 - kb0) : SEG;
		t->panel(w, bw, nw, kb0, nb, direct ? NULL : q, dw);
		for (int ks = 0; ks < nb; ks++) {
			const int64_t kb = kb0 + ks;
			A_TILE(ks);
			TILE_LOAD(1, g + kb * 512, 64);
			TILE_ZERO(2);
			TILE_DPBSSD(2, 0, 1);
			TILE_STORE(2, c, 64);
			const __m512 dav = _mm512_load_ps(da + kb * 16);
			for (int n = 0; n < 16; n++) {
				const __m512 sc = _mm512_mul_ps(dav, _mm512_set1_ps(dw[ks * 16 + n]));
				acc[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * n)),
				                         sc, acc[n]);
			}
		}
	}
	for (int n = 0; n < 16; n++)
		_mm512_store_ps(out + 16 * n, acc[n]);
	for (int m = 0; m < na; m++)
		for (int n = 0; n < nw; n++)
			s[m * lds + n] = out[16 * n + m];
}

/* The first two stages of summing 8 vectors d[p] = [row p | row p + 8]
 * (8 i32 lanes each) by row: each 128-bit lane of f[0] holds rows 0-3 (lanes
 * 0, 1: elements 0-3 and 4-7 of the low half) or rows 8-11 (lanes 2, 3);
 * f[1] the same for rows 4-7 and 12-15. */
INLINE void reduce16_stages(const __m512i d[8], __m512i f[2])
{
	__m512i e[4];
	for (int i = 0; i < 4; i++)
		e[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2 * i], d[2 * i + 1]),
		                        _mm512_unpackhi_epi32(d[2 * i], d[2 * i + 1]));
	for (int i = 0; i < 2; i++)
		f[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(e[2 * i], e[2 * i + 1]),
		                        _mm512_unpackhi_epi64(e[2 * i], e[2 * i + 1]));
}

/* Sum of each row's 8 lanes: lane n of the result is row n's total (exact). */
INLINE __m512i reduce16(const __m512i d[8])
{
	__m512i f[2];
	reduce16_stages(d, f);
	/* f[0] lanes: [rows 0-3 (elements 0-3) | rows 0-3 (4-7) | rows 8-11 | rows 8-11],
	 * f[1] the same for rows 4-7 and 12-15 */
	const __m512i g = _mm512_add_epi32(_mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(2, 0, 2, 0)),
	                                   _mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(3, 1, 3, 1)));
	return _mm512_shuffle_i32x4(g, g, _MM_SHUFFLE(3, 1, 2, 0)); /* rows 0-3, 4-7, 8-11, 12-15 */
}

/* nw <= 16 weight rows against one activation row in row order (decode):
 * VNNI on the unsigned quants (value + o), less o times the block's
 * activation sum, gives each row's exact block integer; then the tiles'
 * fma.  Rows past nw repeat row nw - 1 and are not stored. */
#define PF_DIST 12 /* blocks ahead */
#define GEMV16(NAME, WT, DEC, O)                                                            \
	static void NAME(int64_t K, const char *w, size_t bw, int nw, const int8_t *x, float *s) \
	{                                                                                     \
		const float *da = (const float *)(x + K);                                     \
		const int32_t *sa = (const int32_t *)(da + K / 32);                           \
		const WT *r[16];                                                              \
		for (int n = 0; n < 16; n++)                                                  \
			r[n] = (const WT *)(w + (size_t)(n < nw ? n : nw - 1) * bw);          \
		const __m512i rows = _mm512_min_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, \
		                                                       6, 5, 4, 3, 2, 1, 0),     \
		                                      _mm512_set1_epi32(nw - 1));              \
		const __m512i vidx = _mm512_mullo_epi32(rows, _mm512_set1_epi32((int)bw));    \
		__m512 acc = _mm512_setzero_ps();                                             \
		for (int64_t kb = 0; kb < K / 32; kb++) {                                     \
			const __m512i a = _mm512_broadcast_i64x4(load32(x + 32 * kb));         \
			if ((kb & 1) == 0 && kb + PF_DIST < K / 32)                             \
				for (int n = 0; n < 16; n++) /* 16 strided streams: help the prefetcher */ \
					_mm_prefetch((const char *)&r[n][kb + PF_DIST], _MM_HINT_T0); \
			__m512i d[8];                                                         \
			for (int p = 0; p < 8; p++)                                           \
				d[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(),            \
				                           cat_i(DEC(&r[p][kb]), DEC(&r[p + 8][kb])), a); \
			const __m512i si = _mm512_sub_epi32(reduce16(d), _mm512_set1_epi32((O) * sa[kb])); \
			/* the 16 rows' f16 scales: the first 2 bytes of each block */       \
			const __m512i h = _mm512_i32gather_epi32(vidx, (const char *)w + kb * sizeof(WT), 1); \
			const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));          \
			const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(da[kb]));          \
			acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), sc, acc);               \
		}                                                                             \
		_mm512_mask_storeu_ps(s, (__mmask16)((1u << nw) - 1), acc);                   \
	}

GEMV16(gemv_q4_0, struct block_q4_0, u_q4_0, 8)
GEMV16(gemv_q5_0, struct block_q5_0, u_q5_0, 16)
GEMV16(gemv_q8_0, struct block_q8_0, u_q8_0, 128)

/* The tile contract of vecdot_impl.h: x is the base of a group (the
 * caller's activation blocks start at multiples of 16 rows).  Each group of
 * activation rows meets each panel of 16 weight rows: a group of one row
 * (row order) through the VNNI product GEMV, larger ones through the tiles
 * (GEMM), configured for KQ-byte pieces on first use. */
#define GROUPS(NAME, TT, KQ, GEMV, GEMM)                                                       \
	static void NAME(const TT *t, int64_t K, const void *w, size_t bw, int nw, const void *x, \
	                 size_t bx, int na, float *s, int64_t lds)                                 \
	{                                                                                         \
		const char *wc = w;                                                               \
		const int8_t *xc = x;                                                             \
		int tiles = 0;                                                                    \
		for (int a = 0; a < na; a += 16) {                                                \
			const int8_t *g = xc + (size_t)a * bx;                                    \
			const int ga = na - a < 16 ? na - a : 16;                                 \
			if (ga > 1 && !tiles) {                                                   \
				tile_config(KQ);                                                  \
				tiles = 1;                                                        \
			}                                                                         \
			for (int r = 0; r < nw; r += 16) {                                        \
				const int nr = nw - r < 16 ? nw - r : 16;                         \
				if (ga == 1)                                                      \
					GEMV(t, K, wc + (size_t)r * bw, bw, nr, g, s + a * lds + r); \
				else                                                              \
					GEMM(t, K, wc + (size_t)r * bw, bw, nr, g, ga, s + a * lds + r, lds); \
			}                                                                         \
		}                                                                                 \
		if (tiles)                                                                        \
			tile_release();                                                           \
	}

static void gemv32(const struct amx_type *t, int64_t K, const char *w, size_t bw, int nw,
                   const int8_t *x, float *s)
{
	t->gemv(K, w, bw, nw, x, s);
}

GROUPS(amx_tile, struct amx_type, 32, gemv32, gemm_panel)

static const struct amx_type t_q4_0 = {panel_q4_0, gemv_q4_0, sizeof(struct block_q4_0), 0};
static const struct amx_type t_q5_0 = {panel_q5_0, gemv_q5_0, sizeof(struct block_q5_0), 0};
static const struct amx_type t_q8_0 = {panel_q8_0, gemv_q8_0, sizeof(struct block_q8_0), 1};

/* tile_TYPE: the cpu_tile_fn of one type, DRIVER over its traits T. */
#define AMX_TILE(NAME, DRIVER, T)                                                            \
	static void NAME(int64_t n, const void *w, size_t bw, int nw, const void *x, size_t bx, \
	                 int na, float *s, int64_t lds)                                         \
	{                                                                                       \
		DRIVER(&T, n, w, bw, nw, x, bx, na, s, lds);                                    \
	}

AMX_TILE(tile_q4_0, amx_tile, t_q4_0)
AMX_TILE(tile_q5_0, amx_tile, t_q5_0)
AMX_TILE(tile_q8_0, amx_tile, t_q8_0)

// ---- K types: Q4_K, Q5_K, Q6_K against Q8_K
//
// Per super-block of 256 and weight row n, activation row m:
//   sb   = Σ_j float(sumi_j) * sc_j         (j: sub-blocks of 32, Q6_K 16; exact terms)
//   mi   = Σ_j mn_j * bsum_j                 (Q6_K: sc_j * bsum16_j; exact in f32)
//   acc  = fma(sb, d * da, acc)
//   acc  = fnmadd(mi, dmin * da, acc)        (Q6_K: 32 * d * da: its -32 offset)
// in that order, in the tiles (lanes m) and in the one-row product (lanes n).
//
// Activation layout: group of 16 rows
//   int8 b[K/32][8][64] | f32 d[K/256][16] | f32 bsum16[K/16][16]
// and a group of one row in row order: int8 qs[K] | f32 d[K/256] | f32 bsum16[K/16].

#define SEGK 8 /* super-blocks per panel segment (2,048 elements) */

static size_t amxk_row_size(enum gguf_dtype wtype, int64_t K)
{
	(void)wtype;
	return round64((size_t)K + (size_t)K / 64 + (size_t)K / 4);
}

static void amxk_prep_group(enum gguf_dtype wtype, const float *x, void *g, int lane, int n, int64_t K)
{
	int8_t *b = g;
	(void)wtype;
	for (int64_t sb = 0; sb < K / QK_K; sb++) {
		struct block_q8_K blk;
		cpu_quantize_act(GGUF_DTYPE_Q8_K, x + QK_K * sb, &blk, QK_K);
		if (n == 1) {
			float *d1 = (float *)(b + K), *bs1 = d1 + K / QK_K;
			memcpy(b + QK_K * sb, blk.qs, QK_K);
			d1[sb] = blk.d;
			for (int j = 0; j < 16; j++)
				bs1[16 * sb + j] = (float)blk.bsums[j];
			continue;
		}
		float *d = (float *)(b + 16 * K), *bs = d + 16 * (K / QK_K);
		for (int kb = 0; kb < 8; kb++) {
			int8_t *t = b + (8 * sb + kb) * 512 + lane * 4;
			for (int k4 = 0; k4 < 8; k4++)
				memcpy(t + 64 * k4, blk.qs + 32 * kb + 4 * k4, 4);
		}
		d[16 * sb + lane] = blk.d;
		for (int j = 0; j < 16; j++)
			bs[(16 * sb + j) * 16 + lane] = (float)blk.bsums[j];
	}
}

/* 16 rows of SEGK super-blocks: quants q[sb][j][n][32] (j: 8 pieces of 32;
 * a Q6_K sub-block is half a piece), per-row scales transposed to [.][n]. */
struct kpanel {
	int8_t q[SEGK][8][16][32];
	float sc[SEGK][16][16]; /* [sb][j][n]: Q4_K/Q5_K 8 sub-block scales, Q6_K 16 */
	float mn[SEGK][8][16];  /* [sb][j][n]: Q4_K/Q5_K minima */
	float d[SEGK][16], dm[SEGK][16];
};

INLINE void sc_k4_rows(const uint8_t *scales, struct kpanel *p, int sb, int n)
{
	uint8_t u[16];
	k4_unpack(scales, u);
	for (int j = 0; j < 8; j++) {
		p->sc[sb][j][n] = (float)u[j];
		p->mn[sb][j][n] = (float)u[8 + j];
	}
}

INLINE void sc_q4_K_rows(const struct block_q4_K *b, struct kpanel *p, int sb, int n)
{
	sc_k4_rows(b->scales, p, sb, n);
	p->d[sb][n] = h2f(b->d);
	p->dm[sb][n] = h2f(b->dmin);
}

INLINE void sc_q5_K_rows(const struct block_q5_K *b, struct kpanel *p, int sb, int n)
{
	sc_k4_rows(b->scales, p, sb, n);
	p->d[sb][n] = h2f(b->d);
	p->dm[sb][n] = h2f(b->dmin);
}

INLINE void sc_q6_K_rows(const struct block_q6_K *b, struct kpanel *p, int sb, int n)
{
	for (int j = 0; j < 16; j++)
		p->sc[sb][j][n] = (float)b->scales[j];
	p->d[sb][n] = h2f(b->d);
	p->dm[sb][n] = 0.0f;
}

/* Rows past nw repeat row nw - 1: their results are never stored. */
#define PANELK(NAME, WT, DEC, SC)                                                             \
	static void NAME(const char *w, size_t bw, int nw, int64_t sb0, int nsb, struct kpanel *p) \
	{                                                                                       \
		for (int n = 0; n < 16; n++) {                                                  \
			const WT *r = (const WT *)(w + (size_t)(n < nw ? n : nw - 1) * bw) + sb0; \
			for (int sb = 0; sb < nsb; sb++) {                                      \
				SC(&r[sb], p, sb, n);                                           \
				for (int k = 0; k < 4; k++) {                                   \
					const __m512i v = DEC(&r[sb], k);                       \
					_mm256_store_si256((__m256i *)p->q[sb][2 * k][n], _mm512_castsi512_si256(v)); \
					_mm256_store_si256((__m256i *)p->q[sb][2 * k + 1][n],    \
					                   _mm512_extracti64x4_epi64(v, 1));    \
				}                                                               \
			}                                                                       \
		}                                                                               \
	}

PANELK(panel_q4_K, struct block_q4_K, dec_q4_K, sc_q4_K_rows)
PANELK(panel_q5_K, struct block_q5_K, dec_q5_K, sc_q5_K_rows)
PANELK(panel_q6_K, struct block_q6_K, dec_q6_K, sc_q6_K_rows)

typedef void (*panelk_fn)(const char *w, size_t bw, int nw, int64_t sb0, int nsb, struct kpanel *p);

/* One row's 16 sub-block sums of a super-block for 16 rows at once, from
 * the VNNI products d[p] = [row p | row p + 8] of one 32-byte piece: the
 * first and the second 16 bytes separately (Q6_K's sub-blocks). */
INLINE void reduce16_halves(const __m512i d[8], __m512i *lo, __m512i *hi)
{
	__m512i f[2];
	reduce16_stages(d, f);
	/* 128-bit lane 0 of f[0]: rows 0-3, bytes 0-15; lane 1: rows 0-3, bytes
	 * 16-31; lanes 2, 3: rows 8-11; f[1]: rows 4-7 and 12-15 */
	const __m512i a = _mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(2, 0, 2, 0));
	const __m512i b = _mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(3, 1, 3, 1));
	*lo = _mm512_shuffle_i32x4(a, a, _MM_SHUFFLE(3, 1, 2, 0));
	*hi = _mm512_shuffle_i32x4(b, b, _MM_SHUFFLE(3, 1, 2, 0));
}

struct amxk_type {
	panelk_fn panel;
	size_t bs;
	int sub16; /* Q6_K: sub-blocks of 16, scales signed, the offset 32 */
};

/* nw <= 16 weight rows against the na <= 16 rows of group g (tiles). */
static void gemm_k_panel(const struct amxk_type *t, int64_t K, const char *w, size_t bw, int nw,
                         const int8_t *g, int na, float *s, int64_t lds)
{
	struct kpanel p __attribute__((aligned(64)));
	int32_t c[256] __attribute__((aligned(64)));
	float accm[256] __attribute__((aligned(64)));
	const float *da = (const float *)(g + 16 * K), *bs = da + 16 * (K / QK_K);
	memset(accm, 0, sizeof(accm));
	for (int64_t sb0 = 0; sb0 < K / QK_K; sb0 += SEGK) {
		const int nsb = K / QK_K - sb0 < SEGK ? (int)(K / QK_K - sb0) : SEGK;
		t->panel(w, bw, nw, sb0, nsb, &p);
		for (int sb = 0; sb < nsb; sb++) {
			const int64_t SB = sb0 + sb;
			__m512 sba[16];
			for (int n = 0; n < 16; n++)
				sba[n] = _mm512_setzero_ps();
			for (int j = 0; j < (t->sub16 ? 16 : 8); j++) {
				const int piece = t->sub16 ? j / 2 : j, off = t->sub16 ? 16 * (j % 2) : 0;
				TILE_LOAD(0, p.q[sb][piece][0] + off, 32);
				TILE_LOAD(1, g + (SB * 8 + piece) * 512 + 16 * off, 64);
				TILE_ZERO(2);
				TILE_DPBSSD(2, 0, 1);
				TILE_STORE(2, c, 64);
				for (int n = 0; n < 16; n++)
					sba[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * n)),
					                         _mm512_set1_ps(p.sc[sb][j][n]), sba[n]);
			}
			const __m512 dav = _mm512_load_ps(da + SB * 16);
			for (int n = 0; n < 16; n++) {
				__m512 mi = _mm512_setzero_ps();
				if (t->sub16) {
					for (int j = 0; j < 16; j++)
						mi = _mm512_fmadd_ps(_mm512_set1_ps(p.sc[sb][j][n]),
						                     _mm512_load_ps(bs + (SB * 16 + j) * 16), mi);
				} else {
					for (int j = 0; j < 8; j++) {
						const __m512 b32 = _mm512_add_ps(_mm512_load_ps(bs + (SB * 16 + 2 * j) * 16),
						                                 _mm512_load_ps(bs + (SB * 16 + 2 * j + 1) * 16));
						mi = _mm512_fmadd_ps(_mm512_set1_ps(p.mn[sb][j][n]), b32, mi);
					}
				}
				const __m512 dd = _mm512_mul_ps(_mm512_set1_ps(p.d[sb][n]), dav);
				const __m512 dm = t->sub16 ? _mm512_mul_ps(dd, _mm512_set1_ps(32.0f))
				                           : _mm512_mul_ps(_mm512_set1_ps(p.dm[sb][n]), dav);
				__m512 a = _mm512_load_ps(accm + 16 * n);
				a = _mm512_fmadd_ps(sba[n], dd, a);
				a = _mm512_fnmadd_ps(mi, dm, a);
				_mm512_store_ps(accm + 16 * n, a);
			}
		}
	}
	for (int m = 0; m < na; m++)
		for (int n = 0; n < nw; n++)
			s[m * lds + n] = accm[16 * n + m];
}

/* byte b of each i32 lane, unsigned / signed, as f32 */
INLINE __m512 byte_u(__m512i v, int b)
{
	return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, 8 * b), _mm512_set1_epi32(0xff)));
}

INLINE __m512 byte_s(__m512i v, int b)
{
	return _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * b), 24));
}

/* The scales of super-block sb for 16 rows at once (row offsets vidx from
 * blk, the super-block's address in row 0), into p's [sb] slots: the same
 * values the tiles' panel holds (k4_unpack on i32 lanes). */
INLINE void scales_k_rows(const struct amxk_type *t, const char *blk, __m512i vidx, struct kpanel *p, int sb)
{
	if (t->sub16) {
		const char *sc = blk + offsetof(struct block_q6_K, scales);
		for (int q = 0; q < 4; q++) {
			const __m512i v = _mm512_i32gather_epi32(vidx, sc + 4 * q, 1);
			for (int b = 0; b < 4; b++)
				_mm512_store_ps(p->sc[sb][4 * q + b], byte_s(v, b));
		}
		/* d is the last 2 bytes of the block: read from 2 bytes before it */
		const __m512i h = _mm512_i32gather_epi32(vidx, blk + offsetof(struct block_q6_K, d) - 2, 1);
		_mm512_store_ps(p->d[sb], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16))));
		_mm512_store_ps(p->dm[sb], _mm512_setzero_ps());
		return;
	}
	/* Q4_K and Q5_K: d, dmin, then the 12 scale bytes */
	const __m512i dd = _mm512_i32gather_epi32(vidx, blk, 1);
	const __m512i u0 = _mm512_i32gather_epi32(vidx, blk + 4, 1);
	const __m512i u1 = _mm512_i32gather_epi32(vidx, blk + 8, 1);
	const __m512i u2 = _mm512_i32gather_epi32(vidx, blk + 12, 1);
	const __m512i m4 = _mm512_set1_epi32(0x0f0f0f0f), m2 = _mm512_set1_epi32(0x03030303),
	              m6 = _mm512_set1_epi32(0x3f3f3f3f);
	const __m512i s03 = _mm512_and_si512(u0, m6);
	const __m512i s47 = _mm512_or_si512(_mm512_and_si512(u2, m4),
	                                    _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m2), 4));
	const __m512i n03 = _mm512_and_si512(u1, m6);
	const __m512i n47 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4),
	                                    _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m2), 4));
	for (int b = 0; b < 4; b++) {
		_mm512_store_ps(p->sc[sb][b], byte_u(s03, b));
		_mm512_store_ps(p->sc[sb][4 + b], byte_u(s47, b));
		_mm512_store_ps(p->mn[sb][b], byte_u(n03, b));
		_mm512_store_ps(p->mn[sb][4 + b], byte_u(n47, b));
	}
	_mm512_store_ps(p->d[sb], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)));
	_mm512_store_ps(p->dm[sb], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
}

/* nw <= 16 weight rows against one activation row in row order: VNNI. */
static void gemv_k(const struct amxk_type *t, int64_t K, const char *w, size_t bw, int nw,
                   const int8_t *x, float *s)
{
	struct kpanel p __attribute__((aligned(64)));
	const float *d1 = (const float *)(x + K), *bs1 = d1 + K / QK_K;
	__m512 acc = _mm512_setzero_ps();
	const char *rows[16];
	for (int n = 0; n < 16; n++)
		rows[n] = w + (size_t)(n < nw ? n : nw - 1) * bw;
	const __m512i vidx = _mm512_mullo_epi32(
		_mm512_min_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
		                 _mm512_set1_epi32(nw - 1)),
		_mm512_set1_epi32((int)bw));
	for (int64_t sb0 = 0; sb0 < K / QK_K; sb0 += SEGK) {
		const int nsb = K / QK_K - sb0 < SEGK ? (int)(K / QK_K - sb0) : SEGK;
		for (int sb = 0; sb < nsb; sb++) {
			const int64_t SB = sb0 + sb;
			if (SB + 2 < K / QK_K) /* 16 strided streams: help the prefetcher */
				for (int n = 0; n < 16; n++)
					for (size_t o = 0; o < t->bs; o += 64)
						_mm_prefetch(rows[n] + (size_t)(SB + 2) * t->bs + o, _MM_HINT_T0);
			scales_k_rows(t, w + (size_t)SB * t->bs, vidx, &p, sb);
			__m512 sba = _mm512_setzero_ps();
			for (int k = 0; k < 4; k++) {
				__m512i v[16];
				for (int n = 0; n < 16; n++) {
					const void *blk = rows[n] + (size_t)SB * t->bs;
					v[n] = t->bs == sizeof(struct block_q4_K) ? dec_q4_K(blk, k)
					     : t->bs == sizeof(struct block_q5_K) ? dec_q5_K(blk, k)
					                                            : dec_q6_K(blk, k);
				}
				for (int h = 0; h < 2; h++) {
					const __m512i a = _mm512_broadcast_i64x4(load32(x + QK_K * SB + 64 * k + 32 * h));
					__m512i dp[8];
					for (int q = 0; q < 8; q++) {
						const __m512i wq = h ? _mm512_shuffle_i64x2(v[q], v[q + 8], _MM_SHUFFLE(3, 2, 3, 2))
						                     : _mm512_shuffle_i64x2(v[q], v[q + 8], _MM_SHUFFLE(1, 0, 1, 0));
						dp[q] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, a);
					}
					if (t->sub16) {
						__m512i lo, hi;
						const int j = 4 * k + 2 * h;
						reduce16_halves(dp, &lo, &hi);
						sba = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), _mm512_load_ps(p.sc[sb][j]), sba);
						sba = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_load_ps(p.sc[sb][j + 1]), sba);
					} else {
						sba = _mm512_fmadd_ps(_mm512_cvtepi32_ps(reduce16(dp)),
						                      _mm512_load_ps(p.sc[sb][2 * k + h]), sba);
					}
				}
			}
			__m512 mi = _mm512_setzero_ps();
			if (t->sub16) {
				for (int j = 0; j < 16; j++)
					mi = _mm512_fmadd_ps(_mm512_load_ps(p.sc[sb][j]), _mm512_set1_ps(bs1[SB * 16 + j]), mi);
			} else {
				for (int j = 0; j < 8; j++)
					mi = _mm512_fmadd_ps(_mm512_load_ps(p.mn[sb][j]),
					                     _mm512_set1_ps(bs1[SB * 16 + 2 * j] + bs1[SB * 16 + 2 * j + 1]), mi);
			}
			const __m512 dd = _mm512_mul_ps(_mm512_load_ps(p.d[sb]), _mm512_set1_ps(d1[SB]));
			const __m512 dm = t->sub16 ? _mm512_mul_ps(dd, _mm512_set1_ps(32.0f))
			                           : _mm512_mul_ps(_mm512_load_ps(p.dm[sb]), _mm512_set1_ps(d1[SB]));
			acc = _mm512_fmadd_ps(sba, dd, acc);
			acc = _mm512_fnmadd_ps(mi, dm, acc);
		}
	}
	_mm512_mask_storeu_ps(s, (__mmask16)((1u << nw) - 1), acc);
}

GROUPS(amxk_tile, struct amxk_type, t->sub16 ? 16 : 32, gemv_k, gemm_k_panel)

static const struct amxk_type t_q4_K = {panel_q4_K, sizeof(struct block_q4_K), 0};
static const struct amxk_type t_q5_K = {panel_q5_K, sizeof(struct block_q5_K), 0};
static const struct amxk_type t_q6_K = {panel_q6_K, sizeof(struct block_q6_K), 1};

AMX_TILE(tile_q4_K, amxk_tile, t_q4_K)
AMX_TILE(tile_q5_K, amxk_tile, t_q5_K)
AMX_TILE(tile_q6_K, amxk_tile, t_q6_K)
#pragma GCC pop_options

struct cpu_kernel cpu_kernel_amx(enum gguf_dtype wtype)
{
	struct cpu_kernel k = {0};
	if (!cpu_amx_usable())
		return k;
	switch (wtype) {
	case GGUF_DTYPE_Q4_0: k.tile = tile_q4_0; break;
	case GGUF_DTYPE_Q5_0: k.tile = tile_q5_0; break;
	case GGUF_DTYPE_Q8_0: k.tile = tile_q8_0; break;
	case GGUF_DTYPE_Q4_K: k.tile = tile_q4_K; break;
	case GGUF_DTYPE_Q5_K: k.tile = tile_q5_K; break;
	case GGUF_DTYPE_Q6_K: k.tile = tile_q6_K; break;
	default: return k;
	}
	const int ktype = wtype == GGUF_DTYPE_Q4_K || wtype == GGUF_DTYPE_Q5_K || wtype == GGUF_DTYPE_Q6_K;
	k.prep_group = ktype ? amxk_prep_group : amx_prep_group;
	k.prep_size = ktype ? amxk_row_size : amx_row_size;
	k.group = 16;
	k.isa = CPU_ISA_AMX;
	return k;
}

#else /* not x86-64 Linux GCC */

int cpu_amx_usable(void)
{
	return 0;
}

struct cpu_kernel cpu_kernel_amx(enum gguf_dtype wtype)
{
	struct cpu_kernel k = {0};
	(void)wtype;
	return k;
}

#endif
