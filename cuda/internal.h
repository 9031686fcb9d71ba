/*
 * internal.h — the CUDA backend's state (struct eng_backend) shared by
 * backend.cu (ops table, init, weights, bandwidth) and forward.cu (batch
 * metadata, the layer loop, CUDA graphs).  Not a public header.
 *
 * Device memory, all allocated at init and never in the hot path:
 *   weights  one buffer, every tensor in its GGUF type (256-byte aligned);
 *   kv       per layer a K pool and a V pool of n_pages pages [G][P][D] F16;
 *   scratch  activations sized from max_batch_tokens / max_seqs / max_ctx;
 *   meta     the per-step metadata (tokens, positions, page tables, tiles,
 *            sampling settings), filled in pinned host memory and copied by
 *            one cudaMemcpyAsync at the start of each step (inside the graph).
 */
#ifndef PROMPTFS_CUDA_INTERNAL_H
#define PROMPTFS_CUDA_INTERNAL_H

#include <stdio.h>

#include "cuda_backend.h"
#include "cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Penalty window that a captured decode graph reserves per sequence; a step
 * with a longer recent list runs without the graph. */
#define CUDA_GRAPH_RECENT_CAP 256
#define CUDA_GRAPH_VARIANTS 16 /* graphs per batch size: sampled, long context, logit_bias, host candidates */

enum cuda_prof_op {
	CUDA_PROF_EMBED = 0, CUDA_PROF_NORM, CUDA_PROF_QKV, CUDA_PROF_ROPE, CUDA_PROF_ATTN,
	CUDA_PROF_WO, CUDA_PROF_GATE_UP, CUDA_PROF_QUANT, CUDA_PROF_DOWN,
	CUDA_PROF_HEAD, CUDA_PROF_SAMPLE, CUDA_PROF_COPY, CUDA_PROF_ROUTE, CUDA_PROF_COUNT,
};

struct cuda_layer_w {
	struct cuda_mat wq, wk, wv, wo, gate, up, down;
	const float *attn_norm, *ffn_norm;  /* [C] */
	const float *bq, *bk, *bv;          /* [H*D], [G*D], [G*D] or NULL */
	const float *q_norm, *k_norm;       /* [D] or NULL */
	bool q8_qkv, q8_wo, q8_ffn, q8_down; /* inputs needing the q8 form */
	bool glu;                            /* gate and up fuse in one mat-vec */
	const float *post_attn_norm, *post_ffn_norm; /* [C] or NULL (gemma: norm before the residual add) */
	bool swa;                            /* sliding-window layer (cfg.n_swa keys, rope_swa angles;
	                                      * its KV in the window pool when p.n_wpages) */
	/* mixture of experts (then gate, up, down are unused) */
	bool moe;
	struct cuda_mat router;              /* rows E, row length C */
	struct cuda_experts gate_e, up_e;    /* E x (rows F_exp, row length C) */
	struct cuda_experts down_e;          /* E x (rows C, row length F_exp) */
	bool q8_router, q8_exp, q8_exp_down;
};

struct cuda_graph_slot {
	cudaGraphExec_t exec;
	bool ready;
};

struct eng_backend {
	struct eng_config cfg;
	struct eng_backend_params p;
	int dev, n_sm;
	char name[192];
	cudaStream_t st;
	void *cublas; /* cublasHandle_t */

	void *wbuf;
	size_t wbytes;
	struct cuda_mat tok_embd, output;
	const float *output_norm;
	bool q8_head;
	struct cuda_layer_w *layers; /* [L] */

	void *kv;
	size_t kv_bytes;
	uint8_t **kv_layer;  /* [L] the layer's K pool; V follows at kv_pool_bytes(il) (forward.cu) */

	void *scratch;
	size_t scratch_bytes;
	float *x, *xn, *qkv, *attn, *ffn_g, *ffn_u, *ffn_h, *logits;
	float *tmp;             /* [T][C] a block's output before its post-norm (gemma) */
	int8_t *q8s;
	void *q8d;
	float *part_o;
	void *part_ml;
	void *samp_scratch;
	struct cuda_gemm_ws gemm;
	int ld_qkv, max_k, logit_rows, page_stride, max_split;

	void *meta_h, *meta_d; /* pinned host, device */
	size_t meta_cap;
	int recent_cap;         /* recent-token ints the metadata can carry */
	int32_t *tok_h, *tok_d; /* sampled tokens [max_seqs] */
	float *host_rows;       /* host fallback sampler staging, malloc'd on demand */
	uint64_t *cands_d, *cands_h; /* [max_seqs][CUDA_SAMPLE_KMAX] candidate keys (sample.cu), device / pinned */
	struct eng_sampler *host_sampler;

	bool use_graphs;
	bool fuse;              /* fused decode kernels (PROMPTFS_CUDA_NO_FUSE=1: off) */
	int attn_min_pages;     /* PROMPTFS_CUDA_ATTN_MIN_PAGES: fewest pages per decode split */
	bool cluster;           /* decode attention splits as one cluster (PROMPTFS_CUDA_NO_CLUSTER=1: off) */
	bool fuse_qkv, fuse_glu; /* PROMPTFS_CUDA_NO_FUSE_QKV=1 / _GLU=1: those two unfused */
	bool rope_perm;         /* NEOX model with Wq / Wk rows stored interleaved (backend.cu) */
	bool rope_neox;         /* the RoPE pairing the kernels apply: NEOX unless rope_perm */
	void *rope_cs;          /* float2 [CUDA_MMV_MAX_COLS][n_rot/2]: this step's RoPE angles
	                         * (decode with rope_epi; PROMPTFS_CUDA_NO_ROPE_TABLE=1: none) */
	void *rope_cs_swa;      /* the same with rope_swa (models with sliding-window layers) */
	struct cuda_rope_freq rope_glob, rope_swa; /* the angles of global / sliding-window layers */
	/* mixture of experts (K = n_expert_used, E = n_expert, Fe = n_ff_exp, M = CUDA_MMV_MAX_COLS) */
	float *moe_logits;      /* [T][E] router logits */
	int32_t *moe_sel;       /* [T*K] chosen experts */
	float *moe_wt;          /* [T*K] their weights */
	int32_t *moe_tab;       /* [1 + E + E + 1]: n_used, slot_exp[E], slot_off[E + 1] (cuda_moe_route) */
	int32_t *moe_pairs;     /* [T*K] pairs grouped by slot */
	float *moe_h;           /* [M*K][Fe] decode: the experts' GLU outputs */
	int8_t *moe_qs;         /* [M*K][Fe] their q8 form */
	void *moe_ds;
	float *moe_eo;          /* [T*K][C] weighted expert outputs */
	float *moe_xg;          /* [T][C] prefill: one expert's gathered input rows */
	int32_t *moe_host;      /* pinned copy of moe_tab (prefill) */
	bool rope_epi;          /* decode: bias + RoPE + KV store in the QKV epilogue
	                         * (PROMPTFS_CUDA_NO_ROPE_EPI=1: in the attention kernel) */
	int attn_dbg;           /* PROMPTFS_CUDA_ATTN_DBG (timing only, see cuda_attn_args.dbg) */
	unsigned skip;          /* PROMPTFS_CUDA_TIMING_SKIP: op families left out of decode (timing
	                         * experiments only: the results are wrong) */
	int32_t *attn_counters; /* [CUDA_MMV_MAX_COLS * G] split tickets, zero between launches */
	struct cuda_graph_slot *graphs; /* [(max_seqs + 1) * CUDA_GRAPH_VARIANTS]: (S, forward.cu slot()) */

	bool prof;
	cudaEvent_t ev[2];
	double prof_ms[CUDA_PROF_COUNT];
	uint64_t prof_n[CUDA_PROF_COUNT];
};

/* attn.cu, sample.cu: kernel attributes, set once at init (never while a
 * graph is being captured) */
int cuda_attn_setup(void);
int cuda_sample_setup(void);
int cuda_fused_setup(void);

/* forward.cu */
int cuda_be_forward(struct eng_backend *be, const struct eng_batch *b, float *logits,
                    const struct eng_sample_req *samp, int32_t *tokens_out);
void cuda_be_graphs_free(struct eng_backend *be);

/* Per-op kernel times (CUDA events, eager launches): PROMPTFS_CUDA_PROFILE=1
 * at init, or this call; disables graphs while on.  The report lists each op
 * family's total and per-call time since the last reset. */
void cuda_backend_set_profile(struct eng_backend *be, bool on);
void cuda_backend_profile_report(struct eng_backend *be, FILE *f);

#ifdef __cplusplus
}
#endif

/* Layer il's KV: pages in its pool (window pages for a sliding-window
 * layer when the backend has them), bytes of its K (or V) pool. */
int cuda_kv_pool_pages(const struct eng_backend *be, int il);
size_t cuda_kv_pool_bytes(const struct eng_backend *be, int il);

#endif /* PROMPTFS_CUDA_INTERNAL_H */
