/*
 * cuda_ops.h — host launchers of the CUDA backend's kernels (internal: used
 * by the .cu files of cuda/ and by the GPU test programs in tests/gpu/, never by the
 * engine).  Plain C: device pointers are void * / float * / int32_t *, and
 * every launcher enqueues on an explicit stream, checks the launch, and
 * returns 0 or -EIO (with a log line naming the failing call).
 *
 * Shape letters: engine/model.h.  Layout conventions:
 *  - activations are row-major [T][width] f32 with a leading dimension ld;
 *  - a weight matrix (struct cuda_mat) is GGUF-shaped: N rows of K
 *    elements, row r at d + r * row_bytes, in its GGUF type;
 *  - q8 activations (for quantised weights): qs int8 [ncols][K] and ds
 *    float2 [ncols][K/32] (common.cuh);
 *  - KV pages: per layer, K and V pools of n_pages pages, each page
 *    [G][P][D] F16 (cuda_kv_at()).
 */
#ifndef PROMPTFS_CUDA_OPS_H
#define PROMPTFS_CUDA_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "../engine/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most activation columns the quantised mat-vec kernels take at once;
 * batches of more tokens go through the dequantise + GEMM path. */
#define CUDA_MMV_MAX_COLS 8
/* Attention: key tile (one KV page) and the largest head dim supported. */
#define CUDA_ATTN_KT ENG_KV_PAGE
#define CUDA_ATTN_MAX_D 256
/* Device sampling: top_k up to this many (larger or 0 → host sampler). */
#define CUDA_SAMPLE_KMAX 64

struct cuda_mat {
	int type;         /* enum gguf_dtype */
	int K;            /* ne[0], row length */
	int N;            /* ne[1], rows */
	const void *d;    /* device */
	size_t row_bytes;
};

/* A mat-vec input: f32 rows (float weights) and/or their q8 form
 * (quantised weights). */
struct cuda_act {
	const float *x; /* [ncols][ldx] */
	int ldx;
	const int8_t *qs; /* [ncols][K] */
	const void *ds;   /* float2 [ncols][K/32] */
};

/* The gate's activation of a gated feed-forward (engine/model.h
 * eng_ffn_act): SwiGLU silu(g) * u, or GeGLU gelu(g) * u (gemma; ggml's
 * tanh GELU through F16 as the CPU backend computes it). */
enum cuda_glu_act { CUDA_GLU_SILU = 0, CUDA_GLU_GELU = 1 };

/* The rotary angles of one layer, as llama.cpp scales them (engine/cpu
 * cpu_rope_cache_ext): theta_i = scale * (pos * base^(-2i/n_rot) / ff[i]),
 * then (cos, sin) x attn.  Gemma's sliding-window layers have their own. */
struct cuda_rope_freq {
	double log2_base; /* log2(rope.freq_base) */
	float scale;      /* rope_freq_scale (1 / linear factor); 1: unscaled */
	float attn;       /* rope_attn_factor (LongRoPE); 1: none */
	const float *ff;  /* device [n_rot/2] frequency divisors (rope_freqs, LongRoPE), or NULL */
};

// ---- dequant.cu: embedding rows, dequantisation, conversions

/* y[t][:] = row ids[t] of W as f32; ids: device [T] (already validated). */
int cuda_get_rows(const struct cuda_mat *w, const int32_t *ids, int T, float *y, int ldy,
                  cudaStream_t st);
/* Rows [r0, r0 + nr) of W → F16 [nr][K]. */
int cuda_dequant_f16(const struct cuda_mat *w, int r0, int nr, void *y, cudaStream_t st);
/* x [T][ldx] f32 (first K columns) → y [T][K] F16 (or BF16 when bf16). */
int cuda_f32_to_f16(const float *x, int ldx, int T, int K, void *y, bool bf16, cudaStream_t st);

// ---- gemm.cu: the batched path (T > CUDA_MMV_MAX_COLS), tensor cores via cuBLAS

/* Scratch of the GEMM path: a cuBLAS handle (bound to the stream), a
 * buffer for dequantised F16 weight rows (matrices larger than it are done
 * in row chunks) and one for F16/BF16 copies of the input. */
struct cuda_gemm_ws {
	void *cublas;      /* cublasHandle_t */
	void *w16;         /* F16 [w16_bytes / 2] */
	size_t w16_bytes;
	void *x16;         /* F16/BF16 [T][K] */
	size_t x16_bytes;
};
enum cuda_x16_state { CUDA_X16_NONE = 0, CUDA_X16_F16, CUDA_X16_BF16 };
/* y[t][r] (+)= dot(row r of W, x[t]), t < T, r < N: F32 W in F32 (exact),
 * F16/BF16 W used in place, quantised W dequantised to F16 in row chunks;
 * inputs rounded to F16/BF16, accumulation in F32.  *x16 tells what ws->x16
 * holds for this x (callers reset it to CUDA_X16_NONE when x changes), so
 * matrices that share an input convert it once. */
int cuda_gemm(const struct cuda_gemm_ws *ws, const struct cuda_mat *w, const float *x, int ldx, int T,
              float *y, int ldy, bool add, enum cuda_x16_state *x16, cudaStream_t st);

// ---- mmvq.cu: q8 quantisation and mat-vec products (T <= CUDA_MMV_MAX_COLS)

/* x [ncols][ldx] (K columns, K % 32 == 0) → q8 qs/ds. */
int cuda_quantize_q8(const float *x, int ldx, int K, int ncols, int8_t *qs, void *ds,
                     cudaStream_t st);
/* y[c][r] (+)= dot(row r of W, x[c]) for c < ncols <= CUDA_MMV_MAX_COLS.
 * add: accumulate into y (residual).  Quantised W reads a->qs/ds; float W
 * reads a->x. */
int cuda_matvec(const struct cuda_mat *w, const struct cuda_act *a, int ncols, float *y, int ldy,
                bool add, cudaStream_t st);
/* y[c][r] = act(dot(gate r, x[c])) * dot(up r, x[c]); gate and up of the
 * same type and shape; act: enum cuda_glu_act. */
int cuda_matvec_glu(const struct cuda_mat *gate, const struct cuda_mat *up,
                    const struct cuda_act *a, int ncols, float *y, int ldy, int act, cudaStream_t st);
/* True when cuda_matvec handles this type. */
bool cuda_matvec_supported(int type);

// ---- mmvq_fused.cu: decode's fused mat-vec (norm prologue, several matrices, q8 epilogue)

struct cuda_mmv_seg {
	struct cuda_mat w;   /* rows of this segment */
	const void *w2;      /* GLU: the up matrix (same type and shape as w), else NULL */
	float *y;            /* [ncols][ldy] */
	int ldy;
};

/* Decode QKV epilogue (fused kernel, rows_per_warp 1, segments q, k, v):
 * + bias, RoPE of adjacent row pairs (2i, 2i + 1) of q and k (the backend
 * stores NEOX models' Wq / Wk rows interleaved to make the pairs adjacent),
 * then q back into y and k, v as F16 into the KV cache at each column's
 * position — what the RoPE pass (rope.cu) does, so that attention finds q
 * ready and the new k, v stored.  Column c = token c (T == S decode). */
struct cuda_qkv_rope {
	int on;
	int D, G, n_rot;
	struct cuda_rope_freq freq;
	const float *bias[3];   /* q, k, v biases or NULL (rows in the weights' order) */
	const int32_t *pos;     /* device [T] */
	const int32_t *tok_seq; /* device [T] */
	const int32_t *pages;   /* device [S][page_stride] */
	int page_stride;
	void *k_pool, *v_pool;  /* this layer's F16 pools */
	const void *cs;         /* float2 [T][n_rot/2] from cuda_rope_table() with the same freq,
	                         * or NULL: computed */
};

/* y_s = W_s norm(x) for up to three matrices sharing the input x (Q, K, V),
 * or y = act(W norm(x)) * (W2 norm(x)) (GLU), in one launch.  Every block
 * first computes the RMSNorm of x (norm_w; NULL: x as is) and quantises it
 * to q8 in shared memory, so no separate norm / quantise kernel runs.  With
 * oqs, segment 0's output is also written in q8 form (oqs [ncols][N],
 * ods float2 [ncols][N/32]; needs N % 32 == 0 and rows_per_warp == 2).
 * K % 32 == 0; ncols <= CUDA_MMV_MAX_COLS. */
struct cuda_mmv_fused {
	int n_seg;
	struct cuda_mmv_seg seg[3];
	int K, ncols;
	const float *x;      /* [ncols][ldx] */
	int ldx;
	const float *norm_w; /* [K] or NULL */
	float eps;
	int rows_per_warp;   /* 1 or 2 (16 warps per block) */
	int8_t *oqs;
	void *ods;
	struct cuda_qkv_rope rope; /* rope.on: the decode QKV epilogue above */
	int act;             /* GLU: enum cuda_glu_act */
};
/* Whether the fused kernel takes this shape (shared memory, alignment). */
bool cuda_matvec_fused_ok(const struct cuda_mmv_fused *a);
int cuda_matvec_fused(const struct cuda_mmv_fused *a, cudaStream_t st);

// ---- norm.cu

/* y[r] = x[rows ? rows[r] : r] / rms * w, for r < n (C columns); when qs is
 * non-NULL also its q8 form (C % 32 == 0).  rows: device [n] or NULL. */
int cuda_rmsnorm(const float *x, int ldx, const int32_t *rows, int n, int C, const float *w,
                 float eps, float *y, int ldy, int8_t *qs, void *ds, cudaStream_t st);
/* x[t] += rmsnorm(y[t]) * w for t < T (C columns): gemma's post-attention
 * and post-FFN norms before the residual add. */
int cuda_rmsnorm_add(float *x, int ldx, const float *y, int ldy, int T, int C, const float *w,
                     float eps, cudaStream_t st);

// ---- act.cu

/* y[t][i] = silu(g[t][i]) * u[t][i] for i < F. */
int cuda_swiglu(const float *g, const float *u, int ld, int T, int F, float *y, int ldy,
                cudaStream_t st);
/* y[t][i] = act(g[t][i]) * u[t][i] for i < F; act: enum cuda_glu_act. */
int cuda_glu(int act, const float *g, const float *u, int ld, int T, int F, float *y, int ldy,
             cudaStream_t st);
/* y[t][i] += b[i] */
int cuda_add_bias(float *y, int ldy, int T, int N, const float *b, cudaStream_t st);
/* x[t][i] *= s for i < N (gemma's embedding x sqrt(C)). */
int cuda_scale(float *x, int ldx, int T, int N, float s, cudaStream_t st);
/* x[t][i] = cap * tanh(x[t][i] / cap) for i < N (logit soft-capping), cap > 0. */
int cuda_softcap(float *x, int ldx, int T, int N, float cap, cudaStream_t st);

// ---- rope.cu: bias, Q/K norm, RoPE and the KV store, fused

struct cuda_rope_args {
	float *qkv;            /* [T][ld]: q heads at 0, k at H*D, v at (H+G)*D; q is rewritten */
	int ld;
	int T, H, G, D, n_rot;
	int neox;              /* 0: adjacent pairs (NORM), 1: halves (NEOX) */
	struct cuda_rope_freq freq; /* this layer's angles */
	const float *bq, *bk, *bv;         /* [H*D], [G*D], [G*D] or NULL */
	const float *q_norm, *k_norm;      /* [D] or NULL (qwen3) */
	float eps;
	const int32_t *pos;    /* device [T] */
	const int32_t *tok_seq;/* device [T]: sequence of each token */
	const int32_t *pages;  /* device [S][page_stride] */
	int page_stride;
	void *k_pool, *v_pool; /* this layer's F16 pools */
};
int cuda_rope_store(const struct cuda_rope_args *a, cudaStream_t st);
/* cs float2 [T][n_rot/2] = (cos, sin) of every rotary pair at pos[t] (the
 * angles rope_cs() forms), for kernels that read them instead. */
int cuda_rope_table(const int32_t *pos, int T, int n_rot, const struct cuda_rope_freq *f, void *cs,
                    cudaStream_t st);

// ---- attn.cu

struct cuda_attn_args {
	const float *q;        /* [T][ldq], head h at h*D (already roped) */
	int ldq;
	const void *k_pool, *v_pool; /* this layer's F16 pools */
	int H, G, D;
	float scale;           /* 1/sqrt(D) */
	/* tiles: up to qt consecutive tokens of one sequence each */
	int n_tiles;
	const int32_t *tile_seq, *tile_tok0, *tile_ntok; /* device [n_tiles] */
	const int32_t *pos;    /* device [T] */
	const int32_t *pages;  /* device [S][page_stride] */
	int page_stride;
	int qt;                /* tokens per tile (cuda_attn_tile_tokens) */
	/* Up to n_split blocks (<= 64) share a tile's keys; with more than one,
	 * each writes partial results to part_o [T*H][n_split][D] and part_ml
	 * float2 [T*H][n_split], and the last to finish merges them (counters). */
	int n_split;
	float *out;
	int ldo;
	float *part_o;
	void *part_ml;
	int T;
	/* decode fusions (all zero = off) */
	int fuse_rope;          /* one new token per sequence: q is raw; bias, QK norm and RoPE
	                         * are applied here to q and to the new k, v, which the block
	                         * owning their position stores (no rope pass) */
	const float *k_new, *v_new; /* raw k, v rows [T][ldq], KV head g at g*D */
	const float *bq, *bk, *bv, *q_norm, *k_norm;
	float eps;
	struct cuda_rope_freq freq; /* this layer's angles */
	int n_rot, neox;
	int32_t *counters;      /* [n_tiles * G] zeros (needed when n_split > 1): the last
	                         * split block of each (tile, g) combines; left zero again */
	int8_t *qs;             /* q8 of out as well (qs [T][H*D], ds [T][H*D/32]) when */
	void *ds;               /* (H/G * D) % 32 == 0; else the caller quantises */
	int min_pages;          /* fewest pages a split takes (0: 1): fewer, longer splits */
	int cluster;            /* decode (one token per tile), D 64 or 128, n_split <= 8: the
	                         * splits of a tile run as one thread-block cluster and merge
	                         * through distributed shared memory (no counters needed) */
	int dbg;                /* timing experiments only (wrong results): 1 no RoPE math,
	                         * 2 no cross-split combine, 4 no K/V tile work, 8 (decode
	                         * kernel) no q/k/v preparation, 16 (decode kernel) empty;
	                         * 32 (decode kernel, A/B) pull merge instead of push, 64
	                         * (decode kernel, A/B) no K/V preload before the wait */
	/* gemma (both 0 = off) */
	int win;                /* sliding window: a query at p sees keys p - win < j <= p */
	float softcap;          /* scores (after scale) = cap * tanh(score / cap) (gemma2) */
};
/* Tokens per tile for H/G heads per group and head dim D. */
int cuda_attn_tile_tokens(int H, int G, int D);
int cuda_attn(const struct cuda_attn_args *a, cudaStream_t st);
// ---- moe.cu: mixture of experts (router top-k, grouping by expert, grouped products)

/* Most experts (E) and experts per token (K) the routing kernel takes. */
#define CUDA_MOE_MAX_E 256
#define CUDA_MOE_MAX_K 32

/* A stacked expert tensor: E matrices of N rows x K, expert e at
 * m.d + e * stride (GGUF [K, N, E]). */
struct cuda_experts {
	struct cuda_mat m; /* one expert's shape and type; m.d: expert 0 */
	size_t stride;     /* bytes per expert */
	int n;             /* E */
};

/* Routing of T tokens (engine/cpu/forward.c item_route): softmax over the E
 * router logits, the K largest (best first, the lower id on ties), their
 * probabilities renormalised to sum 1 (the sum clamped at 2^-14 as
 * llama.cpp).  Pair p = t * K + k is token t's k-th choice.  Then the pairs
 * grouped by expert, so that each chosen expert's weights are read once per
 * batch: slots 0 .. n_used-1 hold the used experts in increasing id, slot s
 * owning pairs[slot_off[s] .. slot_off[s + 1]) in increasing pair order;
 * slots past n_used hold expert -1 (and empty ranges).  Any T: one block. */
struct cuda_moe_route {
	int T, E, K;
	const float *logits; /* [T][ld] */
	int ld;
	int32_t *sel;        /* [T*K] chosen experts */
	float *wt;           /* [T*K] their weights */
	int32_t *slot_exp;   /* [E] */
	int32_t *slot_off;   /* [E + 1] */
	int32_t *pairs;      /* [T*K] */
	int32_t *n_used;     /* [1] */
};
int cuda_moe_route(const struct cuda_moe_route *r, cudaStream_t st);

/* Grouped expert mat-vec of decode (T <= CUDA_MMV_MAX_COLS tokens): a block
 * of grid row y takes slot y (its expert e; nothing when e == -1) and rows
 * of e's matrix against the columns of every pair routed to e (at most T),
 * so each chosen expert's rows are read once for the whole batch:
 *   GLU (w2.m.d != NULL): y[p][r] = act(gate_e r . x[p / div]) * (up_e r . x[p / div])
 *   else:                  y[p][r] = wt[p] * (W_e r . x[p / div])
 * Activations by column: q8 qs/ds (quantised W) or f32 x (float W). */
struct cuda_moe_mv {
	struct cuda_experts w, w2;
	const int32_t *slot_exp, *slot_off, *pairs; /* from cuda_moe_route */
	const float *wt;
	int n_slots;     /* slots launched: min(E, T * K) */
	int max_cols;    /* T: most pairs of one slot */
	int div;         /* column of pair p: p / div (K: token rows; 1: pair rows) */
	const float *x;  /* [cols][ldx] */
	int ldx;
	const int8_t *qs; /* [cols][K] */
	const void *ds;   /* float2 [cols][K/32] */
	float *y;        /* [T*K][ldy] */
	int ldy;
	int act;         /* GLU: enum cuda_glu_act */
};
int cuda_moe_matvec(const struct cuda_moe_mv *a, cudaStream_t st);

/* Prefill's grouped products run one GEMM per used expert over its rows:
 * y[j] = x[pairs[j] / div] for j < n (C columns) gathers them, */
int cuda_moe_gather(const float *x, int ldx, int C, const int32_t *pairs, int n, int div, float *y,
                    int ldy, cudaStream_t st);
/* eo[pairs[j]] = wt[pairs[j]] * y[j] scatters the weighted outputs, */
int cuda_moe_scatter(const float *y, int ldy, int C, const int32_t *pairs, int n, const float *wt,
                     float *eo, cudaStream_t st);
/* and x[t] += eo[t*K] + eo[t*K+1] + ... (in rank order, as the CPU) adds
 * them to the residual.  eo: [T*K][C]. */
int cuda_moe_sum(const float *eo, int K, int T, int C, float *x, int ldx, cudaStream_t st);

// ---- sample.cu

/* Per-sequence sampling settings as the kernels read them (device).
 * cands: the row's CUDA_SAMPLE_KMAX largest logits (after bias and
 * penalty) go to cands[s] instead of a draw (the host finishes: grammar,
 * typical_p, XTC; engine/sampler.h eng_sample_top). */
struct cuda_samp {
	float temperature, top_p, min_p, penalty;
	int top_k, n_recent, recent_off, n_bias;
	int bias_off, cands, pad0, pad1;
	uint64_t seed, draw;
};
struct cuda_bias {
	int32_t id;
	float bias;
};
/* Scratch bytes for S sequences over V logits. */
size_t cuda_sample_scratch_bytes(int S, int V);
/* tokens[s] = the token sampled from logits[s] (rows of ld floats) per
 * sampler.h; logits are modified (bias, penalty).  recent: device int32
 * pool indexed by cuda_samp.recent_off; bias: pool indexed by bias_off;
 * cands: [S][CUDA_SAMPLE_KMAX] keys (value desc, id asc; cuda_sample_key_*)
 * for the rows with cuda_samp.cands. */
int cuda_sample(float *logits, int ld, int S, int V, const struct cuda_samp *sp,
                const int32_t *recent, const struct cuda_bias *bias, void *scratch, int32_t *tokens,
                uint64_t *cands, cudaStream_t st);
/* A candidate key's logit and token id (host side of cands). */
float cuda_sample_key_val(uint64_t k);
int cuda_sample_key_id(uint64_t k);

// ---- misc

#ifdef __CUDACC__
#define CUDA_HD __host__ __device__
#else
#define CUDA_HD
#endif

/* Byte offset of (page, kv head g, slot) in a layer's K or V pool. */
CUDA_HD static inline size_t cuda_kv_offset(int page, int g, int slot, int G, int D)
{
	return ((((size_t)page * G + g) * ENG_KV_PAGE + slot) * D) * 2;
}

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_CUDA_OPS_H */
