/*
 * vecdot_impl.h — internals shared by vecdot.c (dispatch, scalar kernels),
 * vecdot_avx2.c (AVX2/FMA/F16C), vecdot_avx512.c (AVX-512 VNNI, chosen at
 * run time), vecdot_amx.c (AMX-INT8, chosen at run time) and matmul.c.  Not for other files (tests excepted).
 *
 * A "tile" kernel computes a small block of the output at once:
 *   s[a * lds + r] = dot(weight row r, activation row a)   r < nw, a < na
 * where weight row r starts at w + r * bw bytes and activation row a at
 * x + a * bx bytes, in the kernel's activation layout: the vec_dot type's
 * blocks for the scalar and AVX2 kernels, a packed layout (contiguous
 * int8 quants, f32 scales and precomputed offset sums) for AVX-512.  SIMD
 * kernels decode each weight block once and reuse it for several
 * activation rows while it sits in registers; this is what makes prefill
 * (T > 1) compute-bound rather than decode-bound.
 */
#ifndef PROMPTFS_ENGINE_CPU_VECDOT_IMPL_H
#define PROMPTFS_ENGINE_CPU_VECDOT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "cpu.h"

#define CPU_TILE_A 8 /* most activation rows a SIMD kernel handles per weight pass */

typedef void (*cpu_tile_fn)(int64_t n, const void *w, size_t bw, int nw,
                            const void *x, size_t bx, int na, float *s, int64_t lds);

/* Converts one activation row x[K] into a kernel's layout at dst. */
typedef void (*cpu_prep_fn)(enum gguf_dtype wtype, const float *x, void *dst, int64_t K);
/* Converts activation row `lane` of a group of n rows (n <= the kernel's
 * group) into the layout of kernels that interleave rows (vecdot_amx.c); g
 * is the group's first byte, the group takes group * prep_size bytes. */
typedef void (*cpu_prep_group_fn)(enum gguf_dtype wtype, const float *x, void *g, int lane, int n,
                                  int64_t K);
/* Bytes of one activation row in a kernel's layout (a multiple of 64). */
typedef size_t (*cpu_prep_size_fn)(enum gguf_dtype wtype, int64_t K);

enum cpu_isa {
	CPU_ISA_SCALAR = 0,
	CPU_ISA_AVX2 = 1,
	CPU_ISA_AVX512 = 2,
	CPU_ISA_AMX = 3,
	CPU_ISA_BEST = 4,
};

struct cpu_kernel {
	cpu_tile_fn tile;
	cpu_prep_fn prep;           /* NULL: cpu_quantize_act into vec_dot blocks */
	cpu_prep_group_fn prep_group; /* instead of prep: rows interleaved in groups */
	int group;                  /* rows per group (prep_group), else 0; tiles
	                             * then get x at a group's first byte */
	cpu_prep_size_fn prep_size; /* NULL: gguf_row_size of the vec_dot type */
	enum cpu_isa isa;           /* what was chosen */
};

/* The kernel for a weight type at the given level or the best one below
 * it that exists (BEST: the fastest this CPU runs; PROMPTFS_CPU_ISA=scalar|
 * avx2|avx512|amx in the environment caps it, read once).  .tile is NULL only for types
 * with no kernel at all. */
struct cpu_kernel cpu_kernel_get(enum gguf_dtype wtype, enum cpu_isa isa);
/* The level cpu_matmul uses (tests and benchmarks switch it). */
void cpu_set_isa(enum cpu_isa isa);
enum cpu_isa cpu_get_isa(void);

/* Per-level kernels, NULL where a type has none or the CPU lacks the ISA. */
cpu_tile_fn cpu_tile_scalar(enum gguf_dtype wtype);
cpu_tile_fn cpu_tile_avx2(enum gguf_dtype wtype);
struct cpu_kernel cpu_kernel_avx512(enum gguf_dtype wtype); /* .tile NULL if none */
int cpu_avx512_usable(void); /* AVX-512 F/BW/VL/DQ + VNNI present at run time */
struct cpu_kernel cpu_kernel_amx(enum gguf_dtype wtype);    /* .tile NULL if none */
int cpu_amx_usable(void); /* AMX-INT8 present, tile state granted by Linux */

/* Activation quantisation as ggml-cpu does it on x86 (id = 127/amax,
 * round-half-even), scalar and AVX2.  Q8_K uses the reference quantiser. */
void cpu_quantize_q8_0(const float *x, void *y, int64_t n);
void cpu_quantize_q8_1(const float *x, void *y, int64_t n);

#endif /* PROMPTFS_ENGINE_CPU_VECDOT_IMPL_H */
