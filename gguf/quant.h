/*
 * quant.h — block layouts of every supported tensor type, half-precision
 * conversion, and the reference (scalar, readable) dequantisers and
 * quantisers.  Included by gguf.h; also compiled by nvcc (cuda/), so it is
 * plain C with no GNU extensions in the struct definitions.
 *
 * Layouts are ggml's, byte for byte (ggml-common.h).  QK_K = 256 elements
 * per super-block for the K types; 32 elements per block for the rest.
 *
 * The reference functions are the oracle for the CPU vec_dot kernels and
 * for the CUDA kernels; they are tested against the `gguf` Python package.
 */
#ifndef PROMPTFS_GGUF_QUANT_H
#define PROMPTFS_GGUF_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define GGUF_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define GGUF_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

typedef uint16_t gguf_half; /* IEEE binary16 bits */
typedef uint16_t gguf_bf16; /* bfloat16 bits */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

struct block_q4_0 { gguf_half d; uint8_t qs[QK4_0 / 2]; };
struct block_q4_1 { gguf_half d; gguf_half m; uint8_t qs[QK4_1 / 2]; };
struct block_q5_0 { gguf_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };
struct block_q5_1 { gguf_half d; gguf_half m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };
struct block_q8_0 { gguf_half d; int8_t qs[QK8_0]; };
struct block_q8_1 { gguf_half d; gguf_half s; int8_t qs[QK8_1]; }; /* s = d * sum(qs) */

/* 2-bit: 16 sub-blocks of 16; scales: low 4 bits scale, high 4 bits min */
struct block_q2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; gguf_half d; gguf_half dmin; };
/* 3-bit: hmask = high bit; qs = low 2 bits; 16 6-bit scales packed in 12 bytes */
struct block_q3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; gguf_half d; };
/* 4-bit: 8 sub-blocks of 32; 6-bit scales and mins packed in 12 bytes */
struct block_q4_K { gguf_half d; gguf_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct block_q5_K { gguf_half d; gguf_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
/* 6-bit: ql low 4 bits, qh high 2 bits, 16 int8 scales */
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; gguf_half d; };
/* activations for K-type dot products */
struct block_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };

GGUF_STATIC_ASSERT(sizeof(struct block_q4_0) == 18, "q4_0 size");
GGUF_STATIC_ASSERT(sizeof(struct block_q4_1) == 20, "q4_1 size");
GGUF_STATIC_ASSERT(sizeof(struct block_q5_0) == 22, "q5_0 size");
GGUF_STATIC_ASSERT(sizeof(struct block_q5_1) == 24, "q5_1 size");
GGUF_STATIC_ASSERT(sizeof(struct block_q8_0) == 34, "q8_0 size");
GGUF_STATIC_ASSERT(sizeof(struct block_q8_1) == 36, "q8_1 size");
GGUF_STATIC_ASSERT(sizeof(struct block_q2_K) == 84, "q2_K size");
GGUF_STATIC_ASSERT(sizeof(struct block_q3_K) == 110, "q3_K size");
GGUF_STATIC_ASSERT(sizeof(struct block_q4_K) == 144, "q4_K size");
GGUF_STATIC_ASSERT(sizeof(struct block_q5_K) == 176, "q5_K size");
GGUF_STATIC_ASSERT(sizeof(struct block_q6_K) == 210, "q6_K size");
GGUF_STATIC_ASSERT(sizeof(struct block_q8_K) == 292, "q8_K size");

// ---- half / bfloat16 conversion (exact, round-to-nearest-even on the way down)

float gguf_half_to_f32(gguf_half h);
gguf_half gguf_f32_to_half(float f);
float gguf_bf16_to_f32(gguf_bf16 h);
gguf_bf16 gguf_f32_to_bf16(float f);

/* Unpacks the j-th 6-bit (scale, min) pair of a Q4_K/Q5_K scales array. */
void gguf_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m);

// ---- reference dequantisation: n elements (a multiple of the block size)

/* x points at n elements' worth of blocks of `type`; y: [n] floats.
 * Returns 0, or -EINVAL for an unsupported type or n. */
int gguf_dequantize_row(int type, const void *x, float *y, int64_t n);

// ---- reference quantisation: n floats → blocks of `type`
/* Round-to-nearest quantisers (llama.cpp's *_ref variants for the 32-blocks
 * and Q8_K; simple min/max scale search for the K types).  Used for
 * activations on the CPU (Q8_0, Q8_1, Q8_K), for synthetic models, and for
 * tests.  Returns 0, or -EINVAL for an unsupported type or n. */
int gguf_quantize_row(int type, const float *x, void *y, int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_GGUF_QUANT_H */
