/*
 * ops.h — the CPU backend's transformer ops other than the matrix product:
 * RMS norm, RoPE, attention over the paged F16 KV cache, SwiGLU, adds,
 * embedding lookup.  Internal to engine/cpu/ (and tests/test_cpu_ops.c).
 *
 * Each op works on one row (one token, or one head of one token); forward.c
 * splits rows over the thread pool.  Numerics mirror ggml's CPU backend
 * (llama.cpp without flash attention) so logits agree with llama.cpp:
 *   - RMS norm: sum of squares in double, scale 1/sqrtf(mean + eps) in f32,
 *     then the product with the weight;
 *   - RoPE: theta_i = pos * base^(-2i/n_rot) as ggml computes it (an
 *     iterated f32 product), cosf/sinf in f32;
 *   - attention: Q rounded to F16, dot with F16 K in f32, scaled by
 *     1/sqrt(D), softmax in f32 (sum in double), probabilities rounded to
 *     F16, then the F16 V rows weighted in f32.
 *
 * Shape letters as model.h: H heads, G KV heads, D head dim, P page size.
 */
#ifndef PROMPTFS_ENGINE_CPU_OPS_H
#define PROMPTFS_ENGINE_CPU_OPS_H

#include <stdint.h>

#include "../backend.h"
#include "../model.h"

// ---- norms and element-wise ops

/* y[n] = x / sqrt(mean(x^2) + eps) * w (w NULL: no weight).  y may be x. */
void cpu_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* y[n] += x[n] */
void cpu_add(float *y, const float *x, int n);
/* y[n] = silu(g) * u = g / (1 + exp(-g)) * u.  y may alias g or u. */
void cpu_swiglu(float *y, const float *g, const float *u, int n);
/* y[n] = gelu(g) * u with ggml's GELU (tanh form, through F16 as ggml's
 * table).  y may alias g or u. */
void cpu_geglu(float *y, const float *g, const float *u, int n);
/* x[n] = cap * tanh(x / cap) (logit soft-capping), cap > 0. */
void cpu_softcap(float *x, int n, float cap);
/* x[n] *= s */
void cpu_scale(float *x, int n, float s);
/* Mixture-of-experts routing of one token: p[E] router logits become the
 * softmax probabilities (sum in double, as ggml); sel[K] the K largest
 * (best first, the lower id on ties), w[K] their probabilities renormalised
 * to sum 1 (the sum clamped at 2^-14, as llama.cpp). */
void cpu_moe_route(float *p, int E, int K, int32_t *sel, float *w);
/* y[C] = row `tok` of the embedding (any weight type, dequantised).
 * 0, or -EINVAL when tok is out of range or the type unsupported. */
int cpu_embed(float *y, const struct eng_tensor *emb, int32_t tok);

// ---- rotary position embedding

/* cs[n_rot]: (cos theta_i, sin theta_i) pairs for i < n_rot / 2 at `pos`,
 * theta_i = pos * base^(-2i/n_rot). */
void cpu_rope_cache(float *cs, int pos, int n_rot, float base);
/* The same with llama.cpp's scaling: theta_i = freq_scale * (pos *
 * base^(-2i/n_rot) / freq_factors[i]); freq_factors may be NULL (all 1). */
void cpu_rope_cache_ext(float *cs, int pos, int n_rot, float base, float freq_scale,
                        const float *freq_factors);
/* Rotates the first n_rot dims of each of n_head heads of x[n_head][D] in
 * place: NORM pairs (x[2i], x[2i+1]); NEOX pairs (x[i], x[i + n_rot/2]). */
void cpu_rope(float *x, int n_head, int D, int n_rot, const float *cs, enum eng_rope_type type);

// ---- paged F16 KV cache

/* One layer of the KV pool: K and V each [n_pages][P][G][D] halves. */
struct cpu_kv_layer {
	gguf_half *k;
	gguf_half *v;
	int G, D;
};

/* Rounds k[G*D] and v[G*D] to F16 and stores them at position pos of the
 * sequence whose page table is `pages`. */
void cpu_kv_store(const struct cpu_kv_layer *kv, const int32_t *pages, int pos, const float *k,
                  const float *v);

/* One head of one token: out[D] = softmax(scale * q·K_j) · V_j over
 * positions j < n_kv of KV head g of the sequence (pages).  scores: scratch
 * of n_kv floats; q16: scratch of D floats. */
void cpu_attn_head(float *out, const float *q, const struct cpu_kv_layer *kv,
                   const int32_t *pages, int n_kv, int g, float scale, float *scores, float *q16);

/* The same over positions j0 <= j < n_kv only (a sliding window), with the
 * scores soft-capped (cap * tanh(s / cap)) when cap > 0.  scores: n_kv - j0
 * floats. */
void cpu_attn_head_ext(float *out, const float *q, const struct cpu_kv_layer *kv,
                       const int32_t *pages, int j0, int n_kv, int g, float scale, float cap,
                       float *scores, float *q16);

// ---- F16 helpers (F16C where the compiler has it, else gguf's scalar ones)

/* y[n] = f16(x) as floats: every value rounded to the nearest half. */
void cpu_round_f16(float *y, const float *x, int n);

#endif /* PROMPTFS_ENGINE_CPU_OPS_H */
