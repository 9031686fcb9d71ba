/*
 * quant.cuh — device-side block traits of every quantised weight type.
 *
 * Every type is seen as a row of 32-element groups.  wq<TYPE>::load(row, g, …)
 * unpacks group g of a row into 8 ints of packed signed int8 (4 elements
 * each, in element order) and the affine map back to the weight:
 *     w[e] = dlo * q[e] + mlo   for e < 16,   dhi * q[e] + mhi   for e >= 16
 * (dlo == dhi, mlo == mhi unless SPLIT16; mlo == 0 unless HAS_MIN), where
 * q[e] is the unpacked byte minus the type's constant offset OFF (Q4_0's 8,
 * Q5_0's 16, Q3_K's 4, Q6_K's 32).  The ints hold the bytes as stored
 * (0..63, no per-byte subtraction); dot_group() takes OFF off the integer
 * sum once per group (OFF * the activation's sum, by dp4a), and
 * group_elem() per element — the same integers as subtracting first, with
 * ~a third of the unpacking instructions (measured on the H100: the
 * per-byte subtraction and bit spreading were half of the gate/up kernel's
 * instructions).  One template of each kernel (mat-vec with dp4a,
 * dequantise, row lookup) then serves every type (style.md: traits, not
 * copy-pasted per-type kernels).
 *
 * Layouts are ggml's (gguf/quant.h); the reference dequantisers in
 * gguf/quant.c are the oracle (tests/gpu/ops.c checks every type).
 */
#ifndef PROMPTFS_CUDA_QUANT_CUH
#define PROMPTFS_CUDA_QUANT_CUH

#include "../gguf/gguf.h"
#include "common.cuh"

struct wgroup {
	int q[8];
	float dlo, dhi, mlo, mhi;
};

/* bit k of x (k < 4) → bit 8k: spreads 4 flag bits over the bytes of an int
 * (x * (1 + 2^7 + 2^14 + 2^21) places the 4-bit copies at bits 0, 7, 14 and
 * 21 without overlap; the mask keeps bit k of copy k) */
static __device__ __forceinline__ int spread4(int x)
{
	return (int)(((unsigned)x & 0xFu) * 0x00204081u & 0x01010101u);
}

static __device__ __forceinline__ void scale_min_k4(int j, const uint8_t *q, int *d, int *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

template <int TYPE> struct wq;

template <> struct wq<GGUF_DTYPE_Q4_0> {
	static constexpr int BLCK = 32, BYTES = 18, OFF = 8;
	static constexpr bool HAS_MIN = false, SPLIT16 = false;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)g * BYTES;
		w.dlo = w.dhi = ld_half(b);
		w.mlo = w.mhi = 0.0f;
		int qs[4];
		ld_ints_b2<4>(b + 2, qs);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			int v = qs[i];
			w.q[i] = v & 0x0F0F0F0F;
			w.q[i + 4] = (v >> 4) & 0x0F0F0F0F;
		}
	}
};

template <> struct wq<GGUF_DTYPE_Q4_1> {
	static constexpr int BLCK = 32, BYTES = 20, OFF = 0;
	static constexpr bool HAS_MIN = true, SPLIT16 = false;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)g * BYTES;
		w.dlo = w.dhi = ld_half(b);
		w.mlo = w.mhi = ld_half(b + 2);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			int v = ld_b4(b + 4, i);
			w.q[i] = v & 0x0F0F0F0F;
			w.q[i + 4] = (v >> 4) & 0x0F0F0F0F;
		}
	}
};

template <> struct wq<GGUF_DTYPE_Q5_0> {
	static constexpr int BLCK = 32, BYTES = 22, OFF = 16;
	static constexpr bool HAS_MIN = false, SPLIT16 = false;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)g * BYTES;
		w.dlo = w.dhi = ld_half(b);
		w.mlo = w.mhi = 0.0f;
		int h[5]; /* qh, then the 16 bytes of qs */
		ld_ints_b2<5>(b + 2, h);
		const int qh = h[0];
#pragma unroll
		for (int i = 0; i < 4; i++) {
			int v = h[1 + i];
			w.q[i] = (v & 0x0F0F0F0F) | (spread4(qh >> (4 * i)) << 4);
			w.q[i + 4] = ((v >> 4) & 0x0F0F0F0F) | (spread4(qh >> (16 + 4 * i)) << 4);
		}
	}
};

template <> struct wq<GGUF_DTYPE_Q5_1> {
	static constexpr int BLCK = 32, BYTES = 24, OFF = 0;
	static constexpr bool HAS_MIN = true, SPLIT16 = false;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)g * BYTES;
		w.dlo = w.dhi = ld_half(b);
		w.mlo = w.mhi = ld_half(b + 2);
		int qh = ld_b4(b + 4, 0);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			int v = ld_b4(b + 8, i);
			w.q[i] = (v & 0x0F0F0F0F) | (spread4(qh >> (4 * i)) << 4);
			w.q[i + 4] = ((v >> 4) & 0x0F0F0F0F) | (spread4(qh >> (16 + 4 * i)) << 4);
		}
	}
};

template <> struct wq<GGUF_DTYPE_Q8_0> {
	static constexpr int BLCK = 32, BYTES = 34, OFF = 0;
	static constexpr bool HAS_MIN = false, SPLIT16 = false;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)g * BYTES;
		w.dlo = w.dhi = ld_half(b);
		w.mlo = w.mhi = 0.0f;
		ld_ints_b2<8>(b + 2, w.q);
	}
};

/* K types: 256-element super-blocks of 8 groups. */
template <> struct wq<GGUF_DTYPE_Q2_K> {
	static constexpr int BLCK = 256, BYTES = 84, OFF = 0;
	static constexpr bool HAS_MIN = true, SPLIT16 = true;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)(g >> 3) * BYTES;
		int j8 = g & 7, half = j8 >> 2, j = j8 & 3;
		float d = ld_half(b + 80), dmin = ld_half(b + 82);
		int sc0 = b[2 * j8], sc1 = b[2 * j8 + 1];
		w.dlo = d * (float)(sc0 & 0xF);
		w.mlo = -dmin * (float)(sc0 >> 4);
		w.dhi = d * (float)(sc1 & 0xF);
		w.mhi = -dmin * (float)(sc1 >> 4);
#pragma unroll
		for (int i = 0; i < 8; i++)
			w.q[i] = (ld_b4(b + 16 + 32 * half, i) >> (2 * j)) & 0x03030303;
	}
};

static __device__ __forceinline__ int q3k_scale(const uint8_t *sc, int s)
{
	int lo = s < 8 ? (sc[s] & 0xF) : (sc[s - 8] >> 4);
	int hi = (sc[8 + (s & 3)] >> (2 * (s >> 2))) & 3;
	return (lo | (hi << 4)) - 32;
}

template <> struct wq<GGUF_DTYPE_Q3_K> {
	static constexpr int BLCK = 256, BYTES = 110, OFF = 4;
	static constexpr bool HAS_MIN = false, SPLIT16 = true;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)(g >> 3) * BYTES;
		int j8 = g & 7, half = j8 >> 2, j = j8 & 3;
		float d = ld_half(b + 108);
		w.dlo = d * (float)q3k_scale(b + 96, 2 * j8);
		w.dhi = d * (float)q3k_scale(b + 96, 2 * j8 + 1);
		w.mlo = w.mhi = 0.0f;
		int qs[8], hm[8];
		ld_ints_b2<8>(b + 32 + 32 * half, qs);
		ld_ints_b2<8>(b, hm);
#pragma unroll
		for (int i = 0; i < 8; i++) {
			int low = (qs[i] >> (2 * j)) & 0x03030303;
			int hb = (hm[i] >> j8) & 0x01010101;
			w.q[i] = low | (hb << 2);
		}
	}
};

template <> struct wq<GGUF_DTYPE_Q4_K> {
	static constexpr int BLCK = 256, BYTES = 144, OFF = 0;
	static constexpr bool HAS_MIN = true, SPLIT16 = false;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)(g >> 3) * BYTES;
		int j8 = g & 7, sc, mn;
		scale_min_k4(j8, b + 4, &sc, &mn);
		w.dlo = w.dhi = ld_half(b) * (float)sc;
		w.mlo = w.mhi = -ld_half(b + 2) * (float)mn;
		int shift = 4 * (j8 & 1);
#pragma unroll
		for (int i = 0; i < 8; i++)
			w.q[i] = (ld_b4(b + 16 + 32 * (j8 >> 1), i) >> shift) & 0x0F0F0F0F;
	}
};

template <> struct wq<GGUF_DTYPE_Q5_K> {
	static constexpr int BLCK = 256, BYTES = 176, OFF = 0;
	static constexpr bool HAS_MIN = true, SPLIT16 = false;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)(g >> 3) * BYTES;
		int j8 = g & 7, sc, mn;
		scale_min_k4(j8, b + 4, &sc, &mn);
		w.dlo = w.dhi = ld_half(b) * (float)sc;
		w.mlo = w.mhi = -ld_half(b + 2) * (float)mn;
		int shift = 4 * (j8 & 1);
#pragma unroll
		for (int i = 0; i < 8; i++) {
			int nib = (ld_b4(b + 48 + 32 * (j8 >> 1), i) >> shift) & 0x0F0F0F0F;
			int hb = (ld_b4(b + 16, i) >> j8) & 0x01010101;
			w.q[i] = nib | (hb << 4);
		}
	}
};

template <> struct wq<GGUF_DTYPE_Q6_K> {
	static constexpr int BLCK = 256, BYTES = 210, OFF = 32;
	static constexpr bool HAS_MIN = false, SPLIT16 = true;
	static __device__ __forceinline__ void load(const uint8_t *row, int g, wgroup &w)
	{
		const uint8_t *b = row + (size_t)(g >> 3) * BYTES;
		int j8 = g & 7, half = j8 >> 2, k = j8 & 3;
		const int8_t *sc = (const int8_t *)(b + 192);
		float d = ld_half(b + 208);
		w.dlo = d * (float)sc[8 * half + 2 * k];
		w.dhi = d * (float)sc[8 * half + 2 * k + 1];
		w.mlo = w.mhi = 0.0f;
		int shift = 4 * (k >> 1);
		int ql[8], qh[8];
		ld_ints_b2<8>(b + 64 * half + 32 * (k & 1), ql);
		ld_ints_b2<8>(b + 128 + 32 * half, qh);
#pragma unroll
		for (int i = 0; i < 8; i++) {
			int nib = (ql[i] >> shift) & 0x0F0F0F0F;
			int hb = (qh[i] >> (2 * k)) & 0x03030303;
			w.q[i] = nib | (hb << 4);
		}
	}
};

/* Dot product of one weight group with one q8 activation group (32 bytes
 * at a, scales ds).  The type's offset comes off the integer sums:
 * sum((q - OFF) a) = sum(q a) - OFF sum(a), exactly. */
template <int TYPE>
static __device__ __forceinline__ float dot_group(const wgroup &w, const int *a, float2 ds)
{
	typedef wq<TYPE> T;
	int slo = 0, shi = 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		slo = __dp4a(w.q[i], a[i], slo);
		shi = __dp4a(w.q[i + 4], a[i + 4], shi);
	}
	int alo = 0, ahi = 0; /* sums of the activation's halves (OFF or a min term) */
	if (T::OFF != 0 || (T::HAS_MIN && T::SPLIT16)) {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			alo = __dp4a(0x01010101, a[i], alo);
			ahi = __dp4a(0x01010101, a[i + 4], ahi);
		}
		slo -= T::OFF * alo;
		shi -= T::OFF * ahi;
	}
	float r;
	if (T::SPLIT16)
		r = ds.x * (w.dlo * (float)slo + w.dhi * (float)shi);
	else
		r = ds.x * w.dlo * (float)(slo + shi);
	if (T::HAS_MIN) {
		if (T::SPLIT16)
			r += ds.x * (w.mlo * (float)alo + w.mhi * (float)ahi);
		else
			r += w.mlo * ds.y;
	}
	return r;
}

/* Element e (0..31) of an unpacked group as a float. */
template <int TYPE>
static __device__ __forceinline__ float group_elem(const wgroup &w, int e)
{
	const int q = (int)(int8_t)((w.q[e >> 2] >> (8 * (e & 3))) & 0xFF) - wq<TYPE>::OFF;
	return e < 16 ? w.dlo * (float)q + w.mlo : w.dhi * (float)q + w.mhi;
}

/* Calls F::template run<TYPE>(args…) for a run-time type; false for a type
 * with no quantised kernel. */
#define CUDA_QUANT_TYPES(X)                                                            \
	X(GGUF_DTYPE_Q4_0) X(GGUF_DTYPE_Q4_1) X(GGUF_DTYPE_Q5_0) X(GGUF_DTYPE_Q5_1)    \
	X(GGUF_DTYPE_Q8_0) X(GGUF_DTYPE_Q2_K) X(GGUF_DTYPE_Q3_K) X(GGUF_DTYPE_Q4_K)    \
	X(GGUF_DTYPE_Q5_K) X(GGUF_DTYPE_Q6_K)

static inline bool cuda_type_is_quant(int type)
{
	switch (type) {
#define X(t) case t:
		CUDA_QUANT_TYPES(X)
#undef X
		return true;
	default:
		return false;
	}
}

static inline bool cuda_type_is_float(int type)
{
	return type == GGUF_DTYPE_F32 || type == GGUF_DTYPE_F16 || type == GGUF_DTYPE_BF16;
}


/* Element i of an F32, F16 or BF16 weight tensor, as float. */
template <int TYPE>
static __device__ __forceinline__ float ld_float_weight(const void *w, size_t i)
{
	if (TYPE == GGUF_DTYPE_F32)
		return ((const float *)w)[i];
	if (TYPE == GGUF_DTYPE_F16)
		return __half2float(((const __half *)w)[i]);
	return __bfloat162float(((const __nv_bfloat16 *)w)[i]);
}

/* 4 consecutive weights from a 4-element-aligned index. */
template <int TYPE>
static __device__ __forceinline__ float4 ldw4(const void *w, size_t i)
{
	if (TYPE == GGUF_DTYPE_F32)
		return *(const float4 *)((const float *)w + i);
	uint2 u = *(const uint2 *)((const uint16_t *)w + i);
	if (TYPE == GGUF_DTYPE_F16) {
		float2 a = __half22float2(*(const __half2 *)&u.x), b = __half22float2(*(const __half2 *)&u.y);
		return make_float4(a.x, a.y, b.x, b.y);
	}
	return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xFFFF0000u),
	                   __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xFFFF0000u));
}

#endif /* PROMPTFS_CUDA_QUANT_CUH */
