/*
 * quant.c — half/bfloat16 conversion and the reference (scalar, readable)
 * dequantisers and quantisers of every supported tensor type.
 *
 * These are the oracle for the SIMD vec_dot kernels (engine/cpu/vecdot.c)
 * and for the CUDA kernels, and they are checked bit for bit against the
 * `gguf` Python package by tests/test_quant.py (through tests/tool_dequant.c).
 *
 * Numerics:
 *  - Dequantisation evaluates each element in the same order of float
 *    operations as ggml's dequantize_row_* and gguf-py (e.g. Q4_K:
 *    (d*sc)*q - (dmin*m)), with floating-point contraction OFF so that no
 *    fused multiply-add changes a rounding: results are then exactly equal.
 *  - Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and Q8_K quantise as ggml's
 *    quantize_row_*_ref (round-to-nearest; Q8_K with nearest-even and the
 *    -127/max scale), which gguf-py reproduces for the first five.
 *  - Q2_K … Q6_K use a simple min/max scale search (not ggml's iterative
 *    one): correct and within a step of the best, enough for tests and
 *    synthetic models.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "gguf.h"
#include "log.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

// ---- bit casts

static inline uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

// ---- half / bfloat16

float gguf_half_to_f32(gguf_half h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t mant = h & 0x3ffu;

	if (exp == 0) {
		if (mant == 0)
			return bits_f32(sign);
		/* subnormal: normalise (value = mant * 2^-24) */
		uint32_t e = 0;
		while (!(mant & 0x400u)) {
			mant <<= 1;
			e++;
		}
		mant &= 0x3ffu;
		return bits_f32(sign | ((113u - e) << 23) | (mant << 13));
	}
	if (exp == 31)
		return bits_f32(sign | 0x7f800000u | (mant << 13));
	return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

gguf_half gguf_f32_to_half(float f)
{
	uint32_t x = f32_bits(f);
	uint32_t sign = (x >> 16) & 0x8000u;
	uint32_t ax = x & 0x7fffffffu;

	if (ax >= 0x7f800000u) /* inf, or NaN (made quiet, like F16C) */
		return (gguf_half)(sign | (ax > 0x7f800000u ? 0x7e00u | ((ax >> 13) & 0x3ffu) : 0x7c00u));
	if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity */
		return (gguf_half)(sign | 0x7c00u);
	if (ax < 0x38800000u) { /* below 2^-14: half subnormal (or zero) */
		if (ax <= 0x33000000u) /* <= 2^-25: rounds (ties-to-even) to zero */
			return (gguf_half)sign;
		uint32_t e = ax >> 23;
		uint32_t m = (ax & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126u - e; /* value / 2^-24 = m >> shift */
		uint32_t r = m >> shift;
		uint32_t rem = m & ((1u << shift) - 1u);
		uint32_t half = 1u << (shift - 1u);
		if (rem > half || (rem == half && (r & 1u)))
			r++;
		return (gguf_half)(sign | r);
	}
	uint32_t h = (ax >> 13) - (112u << 10);
	uint32_t rem = ax & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
		h++;
	return (gguf_half)(sign | h);
}

float gguf_bf16_to_f32(gguf_bf16 h)
{
	return bits_f32((uint32_t)h << 16);
}

gguf_bf16 gguf_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it, force quiet */
		return (gguf_bf16)((u >> 16) | 64u);
	return (gguf_bf16)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

void gguf_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
	}
}

#define H2F(h) gguf_half_to_f32(h)

// ---- dequantisation, 32-element blocks

static void dq_q4_0(const struct block_q4_0 *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, y += QK4_0) {
		const float d = H2F(x[i].d);
		for (int j = 0; j < QK4_0 / 2; j++) {
			y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
			y[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
		}
	}
}

static void dq_q4_1(const struct block_q4_1 *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, y += QK4_1) {
		const float d = H2F(x[i].d), m = H2F(x[i].m);
		for (int j = 0; j < QK4_1 / 2; j++) {
			y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
			y[j + QK4_1 / 2] = (float)(x[i].qs[j] >> 4) * d + m;
		}
	}
}

static void dq_q5_0(const struct block_q5_0 *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, y += QK5_0) {
		const float d = H2F(x[i].d);
		uint32_t qh;
		memcpy(&qh, x[i].qh, sizeof(qh));
		for (int j = 0; j < QK5_0 / 2; j++) {
			const int h0 = (int)((qh >> j) & 1u) << 4;
			const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
			y[j] = (float)(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
			y[j + QK5_0 / 2] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
		}
	}
}

static void dq_q5_1(const struct block_q5_1 *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, y += QK5_1) {
		const float d = H2F(x[i].d), m = H2F(x[i].m);
		uint32_t qh;
		memcpy(&qh, x[i].qh, sizeof(qh));
		for (int j = 0; j < QK5_1 / 2; j++) {
			const int h0 = (int)((qh >> j) & 1u) << 4;
			const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
			y[j] = (float)((x[i].qs[j] & 0x0F) | h0) * d + m;
			y[j + QK5_1 / 2] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
		}
	}
}

static void dq_q8_0(const struct block_q8_0 *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, y += QK8_0) {
		const float d = H2F(x[i].d);
		for (int j = 0; j < QK8_0; j++)
			y[j] = (float)x[i].qs[j] * d;
	}
}

static void dq_q8_1(const struct block_q8_1 *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, y += QK8_1) {
		const float d = H2F(x[i].d);
		for (int j = 0; j < QK8_1; j++)
			y[j] = (float)x[i].qs[j] * d;
	}
}

// ---- dequantisation, K types (256-element super-blocks)

static void dq_q2_K(const struct block_q2_K *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++) {
		const float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
		const uint8_t *q = x[i].qs;
		int is = 0;
		for (int n = 0; n < QK_K; n += 128, q += 32) {
			for (int j = 0; j < 4; j++) {
				const int shift = 2 * j;
				for (int half = 0; half < 2; half++) {
					const uint8_t sc = x[i].scales[is++];
					const float dl = d * (float)(sc & 0xF);
					const float ml = dmin * (float)(sc >> 4);
					for (int l = 0; l < 16; l++)
						*y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
				}
			}
		}
	}
}

/* Unpacks the 16 6-bit Q3_K scales: scale k has its low nibble in byte k%8
 * (low half for k<8, high half for k>=8) and its top 2 bits in byte
 * 8 + k%4 at bit 2*(k/4).  Returns them minus 32. */
static void q3_K_scales(const uint8_t *s, int *out)
{
	for (int k = 0; k < 16; k++) {
		int lo = (s[k % 8] >> (4 * (k / 8))) & 0xF;
		int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
		out[k] = (lo | (hi << 4)) - 32;
	}
}

static void dq_q3_K(const struct block_q3_K *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++) {
		const float d = H2F(x[i].d);
		const uint8_t *q = x[i].qs;
		const uint8_t *hm = x[i].hmask;
		int sc[16], is = 0;
		uint8_t m = 1;
		q3_K_scales(x[i].scales, sc);
		for (int n = 0; n < QK_K; n += 128, q += 32) {
			for (int j = 0; j < 4; j++, m <<= 1) {
				const int shift = 2 * j;
				for (int half = 0; half < 2; half++) {
					const float dl = d * (float)sc[is++];
					for (int l = 16 * half; l < 16 * half + 16; l++) {
						int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
						*y++ = dl * (float)v;
					}
				}
			}
		}
	}
}

static void dq_q4_K(const struct block_q4_K *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++) {
		const float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
		const uint8_t *q = x[i].qs;
		for (int j = 0; j < QK_K / 64; j++, q += 32) {
			uint8_t sc, m;
			gguf_get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
			const float d1 = d * (float)sc, m1 = dmin * (float)m;
			gguf_get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
			const float d2 = d * (float)sc, m2 = dmin * (float)m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (float)(q[l] & 0xF) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (float)(q[l] >> 4) - m2;
		}
	}
}

static void dq_q5_K(const struct block_q5_K *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++) {
		const float d = H2F(x[i].d), dmin = H2F(x[i].dmin);
		const uint8_t *ql = x[i].qs;
		const uint8_t *qh = x[i].qh;
		for (int j = 0; j < QK_K / 64; j++, ql += 32) {
			const uint8_t u1 = (uint8_t)(1u << (2 * j)), u2 = (uint8_t)(2u << (2 * j));
			uint8_t sc, m;
			gguf_get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
			const float d1 = d * (float)sc, m1 = dmin * (float)m;
			gguf_get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
			const float d2 = d * (float)sc, m2 = dmin * (float)m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (float)((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
		}
	}
}

static void dq_q6_K(const struct block_q6_K *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++) {
		const float d = H2F(x[i].d);
		const uint8_t *ql = x[i].ql;
		const uint8_t *qh = x[i].qh;
		const int8_t *sc = x[i].scales;
		for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
			for (int l = 0; l < 32; l++) {
				const int is = l / 16;
				const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
				const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
				const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l + 0] = d * (float)sc[is + 0] * (float)q1;
				y[l + 32] = d * (float)sc[is + 2] * (float)q2;
				y[l + 64] = d * (float)sc[is + 4] * (float)q3;
				y[l + 96] = d * (float)sc[is + 6] * (float)q4;
			}
		}
	}
}

static void dq_q8_K(const struct block_q8_K *x, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, y += QK_K)
		for (int j = 0; j < QK_K; j++)
			y[j] = x[i].d * (float)x[i].qs[j];
}

/* Elements per block of a type this file handles, or 0. */
static int64_t block_elems(int type)
{
	switch (type) {
	case GGUF_DTYPE_F32:
	case GGUF_DTYPE_F16:
	case GGUF_DTYPE_BF16:
		return 1;
	case GGUF_DTYPE_Q4_0:
	case GGUF_DTYPE_Q4_1:
	case GGUF_DTYPE_Q5_0:
	case GGUF_DTYPE_Q5_1:
	case GGUF_DTYPE_Q8_0:
	case GGUF_DTYPE_Q8_1:
		return 32;
	case GGUF_DTYPE_Q2_K:
	case GGUF_DTYPE_Q3_K:
	case GGUF_DTYPE_Q4_K:
	case GGUF_DTYPE_Q5_K:
	case GGUF_DTYPE_Q6_K:
	case GGUF_DTYPE_Q8_K:
		return QK_K;
	default:
		return 0;
	}
}

static bool check_args(const char *func, int type, int64_t n)
{
	int64_t bs = block_elems(type);
	if (bs == 0) {
		pf_log(PF_LOG_LEVEL_ERROR, func, "unsupported tensor type %d", type);
		return false;
	}
	if (n < 0 || n % bs != 0) {
		pf_log(PF_LOG_LEVEL_ERROR, func, "n = %lld is not a multiple of the block size %lld",
		       (long long)n, (long long)bs);
		return false;
	}
	return true;
}

int gguf_dequantize_row(int type, const void *x, float *y, int64_t n)
{
	if (!check_args(__func__, type, n))
		return -EINVAL;
	const int64_t nb = n / block_elems(type);
	switch (type) {
	case GGUF_DTYPE_F32: memcpy(y, x, (size_t)n * sizeof(float)); break;
	case GGUF_DTYPE_F16:
		for (int64_t i = 0; i < n; i++)
			y[i] = gguf_half_to_f32(((const gguf_half *)x)[i]);
		break;
	case GGUF_DTYPE_BF16:
		for (int64_t i = 0; i < n; i++)
			y[i] = gguf_bf16_to_f32(((const gguf_bf16 *)x)[i]);
		break;
	case GGUF_DTYPE_Q4_0: dq_q4_0(x, y, nb); break;
	case GGUF_DTYPE_Q4_1: dq_q4_1(x, y, nb); break;
	case GGUF_DTYPE_Q5_0: dq_q5_0(x, y, nb); break;
	case GGUF_DTYPE_Q5_1: dq_q5_1(x, y, nb); break;
	case GGUF_DTYPE_Q8_0: dq_q8_0(x, y, nb); break;
	case GGUF_DTYPE_Q8_1: dq_q8_1(x, y, nb); break;
	case GGUF_DTYPE_Q2_K: dq_q2_K(x, y, nb); break;
	case GGUF_DTYPE_Q3_K: dq_q3_K(x, y, nb); break;
	case GGUF_DTYPE_Q4_K: dq_q4_K(x, y, nb); break;
	case GGUF_DTYPE_Q5_K: dq_q5_K(x, y, nb); break;
	case GGUF_DTYPE_Q6_K: dq_q6_K(x, y, nb); break;
	case GGUF_DTYPE_Q8_K: dq_q8_K(x, y, nb); break;
	}
	return 0;
}

// ---- quantisation, 32-element blocks (ggml's *_ref)

/* The element of largest magnitude, sign kept (the first one on ties). */
static float signed_absmax(const float *x, int n)
{
	float amax = 0.0f, max = 0.0f;
	for (int j = 0; j < n; j++) {
		if (amax < fabsf(x[j])) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	return max;
}

static void min_max(const float *x, int n, float *mn, float *mx)
{
	*mn = FLT_MAX;
	*mx = -FLT_MAX;
	for (int j = 0; j < n; j++) {
		if (x[j] < *mn)
			*mn = x[j];
		if (x[j] > *mx)
			*mx = x[j];
	}
}

static void q_q4_0(const float *x, struct block_q4_0 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK4_0) {
		const float d = signed_absmax(x, QK4_0) / -8;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = gguf_f32_to_half(d);
		for (int j = 0; j < QK4_0 / 2; j++) {
			const float x0 = x[j] * id, x1 = x[j + QK4_0 / 2] * id;
			int q0 = (int8_t)(x0 + 8.5f), q1 = (int8_t)(x1 + 8.5f);
			q0 = q0 > 15 ? 15 : q0;
			q1 = q1 > 15 ? 15 : q1;
			y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
		}
	}
}

static void q_q4_1(const float *x, struct block_q4_1 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK4_1) {
		float mn, mx;
		min_max(x, QK4_1, &mn, &mx);
		const float d = (mx - mn) / 15;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = gguf_f32_to_half(d);
		y[i].m = gguf_f32_to_half(mn);
		for (int j = 0; j < QK4_1 / 2; j++) {
			const float x0 = (x[j] - mn) * id, x1 = (x[j + QK4_1 / 2] - mn) * id;
			int q0 = (int8_t)(x0 + 0.5f), q1 = (int8_t)(x1 + 0.5f);
			q0 = q0 > 15 ? 15 : q0;
			q1 = q1 > 15 ? 15 : q1;
			y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
		}
	}
}

static void q_q5_0(const float *x, struct block_q5_0 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK5_0) {
		const float d = signed_absmax(x, QK5_0) / -16;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		uint32_t qh = 0;
		y[i].d = gguf_f32_to_half(d);
		for (int j = 0; j < QK5_0 / 2; j++) {
			const float x0 = x[j] * id, x1 = x[j + QK5_0 / 2] * id;
			int q0 = (int8_t)(x0 + 16.5f), q1 = (int8_t)(x1 + 16.5f);
			q0 = q0 > 31 ? 31 : q0;
			q1 = q1 > 31 ? 31 : q1;
			y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
			qh |= (uint32_t)(q0 >> 4) << j;
			qh |= (uint32_t)(q1 >> 4) << (j + QK5_0 / 2);
		}
		memcpy(y[i].qh, &qh, sizeof(qh));
	}
}

static void q_q5_1(const float *x, struct block_q5_1 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK5_1) {
		float mn, mx;
		min_max(x, QK5_1, &mn, &mx);
		const float d = (mx - mn) / 31;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		uint32_t qh = 0;
		y[i].d = gguf_f32_to_half(d);
		y[i].m = gguf_f32_to_half(mn);
		for (int j = 0; j < QK5_1 / 2; j++) {
			const float x0 = (x[j] - mn) * id, x1 = (x[j + QK5_1 / 2] - mn) * id;
			int q0 = (uint8_t)(x0 + 0.5f), q1 = (uint8_t)(x1 + 0.5f);
			q0 = q0 > 31 ? 31 : q0;
			q1 = q1 > 31 ? 31 : q1;
			y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
			qh |= (uint32_t)(q0 >> 4) << j;
			qh |= (uint32_t)(q1 >> 4) << (j + QK5_1 / 2);
		}
		memcpy(y[i].qh, &qh, sizeof(qh));
	}
}

static void q_q8_0(const float *x, struct block_q8_0 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK8_0) {
		float amax = 0.0f;
		for (int j = 0; j < QK8_0; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		const float d = amax / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = gguf_f32_to_half(d);
		for (int j = 0; j < QK8_0; j++)
			y[i].qs[j] = (int8_t)roundf(x[j] * id);
	}
}

static void q_q8_1(const float *x, struct block_q8_1 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK8_1) {
		float amax = 0.0f;
		int sum = 0;
		for (int j = 0; j < QK8_1; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		const float d = amax / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = gguf_f32_to_half(d);
		for (int j = 0; j < QK8_1; j++) {
			y[i].qs[j] = (int8_t)roundf(x[j] * id);
			sum += y[i].qs[j];
		}
		y[i].s = gguf_f32_to_half((float)sum * d);
	}
}

/* ggml's nearest_int: round half to even through the float mantissa. */
static inline int nearest_int(float v)
{
	float t = v + 12582912.f;
	int32_t i;
	memcpy(&i, &t, sizeof(i));
	return (i & 0x007fffff) - 0x00400000;
}

static void q_q8_K(const float *x, struct block_q8_K *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		const float max = signed_absmax(x, QK_K);
		memset(&y[i], 0, sizeof(y[i]));
		if (max == 0.0f)
			continue;
		const float iscale = -127.f / max;
		for (int j = 0; j < QK_K; j++) {
			int v = nearest_int(iscale * x[j]);
			y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
		}
		for (int j = 0; j < QK_K / 16; j++) {
			int sum = 0;
			for (int l = 0; l < 16; l++)
				sum += y[i].qs[16 * j + l];
			y[i].bsums[j] = (int16_t)sum;
		}
		y[i].d = 1 / iscale;
	}
}

// ---- quantisation, K types (simple min/max scale search)

static inline int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* nearest(v / s) clamped to [lo, hi]; 0 when s is 0. */
static inline int qdiv(float v, float s, int lo, int hi)
{
	return s != 0.0f ? clampi(nearest_int(v / s), lo, hi) : clampi(0, lo, hi);
}

/* Asymmetric sub-block fit for Q2_K/Q4_K/Q5_K: value = ds*q - dm with
 * q in [0, qmax]; returns the wanted step and offset (dm >= 0). */
static void fit_min(const float *x, int n, int qmax, float *step, float *off)
{
	float lo, hi;
	min_max(x, n, &lo, &hi);
	if (lo > 0.0f)
		lo = 0.0f;
	*step = (hi - lo) / (float)qmax;
	*off = -lo;
}

/* Super-block scales for sub-block steps/offsets: d = max/smax (stored as
 * half), then each sub-block's integer scale and min, then the actual
 * step each sub-block gets.  Writes L[], M[], the halves, and ds[], dm[]. */
static void fit_super(int nsub, const float *step, const float *off, int smax,
                      gguf_half *hd, gguf_half *hdmin, int *L, int *M, float *ds, float *dm)
{
	float mstep = 0.0f, moff = 0.0f;
	for (int j = 0; j < nsub; j++) {
		mstep = fmaxf(mstep, step[j]);
		moff = fmaxf(moff, off[j]);
	}
	*hd = gguf_f32_to_half(mstep / (float)smax);
	*hdmin = gguf_f32_to_half(moff / (float)smax);
	const float d = H2F(*hd), dmin = H2F(*hdmin);
	for (int j = 0; j < nsub; j++) {
		M[j] = qdiv(off[j], dmin, 0, smax);
		dm[j] = dmin * (float)M[j];
		L[j] = qdiv(step[j], d, 0, smax);
		ds[j] = d * (float)L[j];
	}
}

static void q_q2_K(const float *x, struct block_q2_K *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		float step[16], off[16], ds[16], dm[16];
		int L[16], M[16];
		for (int j = 0; j < 16; j++)
			fit_min(x + 16 * j, 16, 3, &step[j], &off[j]);
		fit_super(16, step, off, 15, &y[i].d, &y[i].dmin, L, M, ds, dm);
		memset(y[i].qs, 0, sizeof(y[i].qs));
		for (int j = 0; j < 16; j++)
			y[i].scales[j] = (uint8_t)(L[j] | (M[j] << 4));
		for (int e = 0; e < QK_K; e++) {
			const int j = e / 16, c = e % 128;
			const int q = qdiv(x[e] + dm[j], ds[j], 0, 3);
			y[i].qs[32 * (e / 128) + c % 32] |= (uint8_t)(q << (2 * (c / 32)));
		}
	}
}

static void q_q3_K(const float *x, struct block_q3_K *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		float s[16], big = 0.0f;
		for (int j = 0; j < 16; j++) {
			s[j] = signed_absmax(x + 16 * j, 16) / -4;
			if (fabsf(s[j]) > fabsf(big))
				big = s[j];
		}
		y[i].d = gguf_f32_to_half(big / -32);
		const float d = H2F(y[i].d);
		memset(y[i].scales, 0, sizeof(y[i].scales));
		memset(y[i].qs, 0, sizeof(y[i].qs));
		memset(y[i].hmask, 0, sizeof(y[i].hmask));
		float dl[16];
		for (int k = 0; k < 16; k++) {
			const int sc = qdiv(s[k], d, -32, 31);
			const int u = sc + 32;
			dl[k] = d * (float)sc;
			y[i].scales[k % 8] |= (uint8_t)((u & 0xF) << (4 * (k / 8)));
			y[i].scales[8 + k % 4] |= (uint8_t)((u >> 4) << (2 * (k / 4)));
		}
		for (int e = 0; e < QK_K; e++) {
			const int c = e % 128, n = e / 128;
			const int q = qdiv(x[e], dl[e / 16], -4, 3) + 4;
			y[i].qs[32 * n + c % 32] |= (uint8_t)((q & 3) << (2 * (c / 32)));
			if (q & 4)
				y[i].hmask[c % 32] |= (uint8_t)(1u << (4 * n + c / 32));
		}
	}
}

/* Packs 8 6-bit (scale, min) pairs for Q4_K/Q5_K (get_scale_min_k4 inverse). */
static void pack_scale_min_k4(const int *L, const int *M, uint8_t *q)
{
	memset(q, 0, K_SCALE_SIZE);
	for (int j = 0; j < 4; j++) {
		q[j] = (uint8_t)L[j];
		q[j + 4] = (uint8_t)M[j];
	}
	for (int j = 4; j < 8; j++) {
		q[j + 4] = (uint8_t)((L[j] & 0xF) | ((M[j] & 0xF) << 4));
		q[j - 4] |= (uint8_t)((L[j] >> 4) << 6);
		q[j] |= (uint8_t)((M[j] >> 4) << 6);
	}
}

/* Q4_K (qmax 15) and Q5_K (qmax 31) share everything but the bit layout:
 * q[] receives the 256 integer values in element order. */
static void fit_k4(const float *x, int qmax, gguf_half *hd, gguf_half *hdmin, uint8_t *scales, int *q)
{
	float step[8], off[8], ds[8], dm[8];
	int L[8], M[8];
	for (int j = 0; j < 8; j++)
		fit_min(x + 32 * j, 32, qmax, &step[j], &off[j]);
	fit_super(8, step, off, 63, hd, hdmin, L, M, ds, dm);
	pack_scale_min_k4(L, M, scales);
	for (int e = 0; e < QK_K; e++)
		q[e] = qdiv(x[e] + dm[e / 32], ds[e / 32], 0, qmax);
}

static void q_q4_K(const float *x, struct block_q4_K *y, int64_t nb)
{
	int q[QK_K];
	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		fit_k4(x, 15, &y[i].d, &y[i].dmin, y[i].scales, q);
		for (int j = 0; j < 4; j++)
			for (int l = 0; l < 32; l++)
				y[i].qs[32 * j + l] = (uint8_t)(q[64 * j + l] | (q[64 * j + 32 + l] << 4));
	}
}

static void q_q5_K(const float *x, struct block_q5_K *y, int64_t nb)
{
	int q[QK_K];
	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		fit_k4(x, 31, &y[i].d, &y[i].dmin, y[i].scales, q);
		memset(y[i].qh, 0, sizeof(y[i].qh));
		for (int j = 0; j < 4; j++) {
			for (int l = 0; l < 32; l++) {
				const int a = q[64 * j + l], b = q[64 * j + 32 + l];
				y[i].qs[32 * j + l] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
				y[i].qh[l] |= (uint8_t)(((a >> 4) << (2 * j)) | ((b >> 4) << (2 * j + 1)));
			}
		}
	}
}

static void q_q6_K(const float *x, struct block_q6_K *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		float s[16], big = 0.0f, dl[16];
		for (int j = 0; j < 16; j++) {
			s[j] = signed_absmax(x + 16 * j, 16) / -32;
			if (fabsf(s[j]) > fabsf(big))
				big = s[j];
		}
		y[i].d = gguf_f32_to_half(big / -128);
		const float d = H2F(y[i].d);
		for (int j = 0; j < 16; j++) {
			const int sc = qdiv(s[j], d, -128, 127);
			y[i].scales[j] = (int8_t)sc;
			dl[j] = d * (float)sc;
		}
		memset(y[i].ql, 0, sizeof(y[i].ql));
		memset(y[i].qh, 0, sizeof(y[i].qh));
		for (int e = 0; e < QK_K; e++) {
			const int n = e / 128, c = e % 128, l = c % 32, g = c / 32;
			const int q = qdiv(x[e], dl[e / 16], -32, 31) + 32;
			/* g: 0 → ql[l] low, 1 → ql[l+32] low, 2 → ql[l] high, 3 → ql[l+32] high */
			y[i].ql[64 * n + l + 32 * (g & 1)] |= (uint8_t)((q & 0xF) << (4 * (g >> 1)));
			y[i].qh[32 * n + l] |= (uint8_t)((q >> 4) << (2 * g));
		}
	}
}

int gguf_quantize_row(int type, const float *x, void *y, int64_t n)
{
	if (!check_args(__func__, type, n))
		return -EINVAL;
	const int64_t nb = n / block_elems(type);
	switch (type) {
	case GGUF_DTYPE_F32: memcpy(y, x, (size_t)n * sizeof(float)); break;
	case GGUF_DTYPE_F16:
		for (int64_t i = 0; i < n; i++)
			((gguf_half *)y)[i] = gguf_f32_to_half(x[i]);
		break;
	case GGUF_DTYPE_BF16:
		for (int64_t i = 0; i < n; i++)
			((gguf_bf16 *)y)[i] = gguf_f32_to_bf16(x[i]);
		break;
	case GGUF_DTYPE_Q4_0: q_q4_0(x, y, nb); break;
	case GGUF_DTYPE_Q4_1: q_q4_1(x, y, nb); break;
	case GGUF_DTYPE_Q5_0: q_q5_0(x, y, nb); break;
	case GGUF_DTYPE_Q5_1: q_q5_1(x, y, nb); break;
	case GGUF_DTYPE_Q8_0: q_q8_0(x, y, nb); break;
	case GGUF_DTYPE_Q8_1: q_q8_1(x, y, nb); break;
	case GGUF_DTYPE_Q2_K: q_q2_K(x, y, nb); break;
	case GGUF_DTYPE_Q3_K: q_q3_K(x, y, nb); break;
	case GGUF_DTYPE_Q4_K: q_q4_K(x, y, nb); break;
	case GGUF_DTYPE_Q5_K: q_q5_K(x, y, nb); break;
	case GGUF_DTYPE_Q6_K: q_q6_K(x, y, nb); break;
	case GGUF_DTYPE_Q8_K: q_q8_K(x, y, nb); break;
	}
	return 0;
}
