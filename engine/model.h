/*
 * model.h — architecture, hyper-parameters and weight views of a model,
 * bound from GGUF metadata and tensor names.  Shared by the engine and every
 * backend (backend.h includes it); holds no state and owns no memory beyond
 * the layer array.
 *
 * Shape letters used in comments across engine/, engine/cpu/ and cuda/:
 *   V vocabulary, C embedding width (n_embd), L layers, H query heads,
 *   G KV heads (n_head_kv), D head dim, F feed-forward width,
 *   T tokens in a batch, S sequences in a batch, P KV page size (tokens).
 * Weight tensors are GGUF-shaped: ne[0] is the row length (input width),
 * ne[1] the number of rows (output width), so y = W x computes
 * y[r] = dot(row r of W, x) for r < ne[1].
 */
#ifndef PROMPTFS_ENGINE_MODEL_H
#define PROMPTFS_ENGINE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../gguf/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

enum eng_arch {
	ENG_ARCH_LLAMA = 0, /* Llama 1-3, TinyLlama, SmolLM, Mistral; adjacent-pair RoPE */
	ENG_ARCH_QWEN2,     /* Q/K/V biases, NeoX RoPE */
	ENG_ARCH_QWEN3,     /* Q/K RMS norms per head, NeoX RoPE */
	ENG_ARCH_GEMMA3,    /* sliding-window + global layers (own RoPE bases), Q/K norms,
	                     * pre/post norms, GELU-gated FFN, embedding x sqrt(C), NeoX RoPE */
	ENG_ARCH_GEMMA2,    /* gemma3 without Q/K norms, plus attention and output soft-capping */
	ENG_ARCH_PHI3,      /* fused QKV and gate/up tensors, LongRoPE factors, NeoX RoPE */
	ENG_ARCH_QWEN3MOE,  /* qwen3 attention, mixture-of-experts feed-forward */
	ENG_ARCH_COUNT,
};

enum eng_ffn_act {
	ENG_FFN_ACT_SILU = 0, /* SwiGLU: silu(gate) * up */
	ENG_FFN_ACT_GELU = 1, /* GeGLU: gelu_tanh(gate) * up (gemma) */
};

enum eng_rope_type {
	ENG_ROPE_TYPE_NORM = 0, /* rotate pairs (x[2i], x[2i+1]) — GGUF llama (Q/K permuted by the converter) */
	ENG_ROPE_TYPE_NEOX = 1, /* rotate pairs (x[i], x[i + n_rot/2]) — qwen2, qwen3 */
};

struct eng_config {
	enum eng_arch arch;
	int n_vocab;     /* V */
	int n_embd;      /* C */
	int n_layer;     /* L */
	int n_head;      /* H */
	int n_head_kv;   /* G; H % G == 0 */
	int head_dim;    /* D (attention.key_length, default C / H) */
	int n_ff;        /* F */
	int n_ctx_train; /* context length the model was trained for */
	int n_rot;       /* rotated dims per head (rope.dimension_count, default D) */
	float rms_eps;
	float rope_base; /* rope.freq_base (10000 default) */
	enum eng_rope_type rope_type;
	bool has_qkv_bias;
	bool has_qk_norm;
	bool tied_output; /* output.weight absent: the LM head is tok_embd */
	/* Added by the CPU backend's author: RoPE scaling as llama.cpp applies it.
	 * theta_i = rope_freq_scale * (pos * base^(-2i/n_rot) / rope_freqs[i]),
	 * rope_freqs (weights) being 1 when absent. */
	float rope_freq_scale; /* 1 / rope.scaling.factor (linear scaling); 1 when unscaled */
	float rope_attn_factor; /* rope.scaling.attn_factor: cos/sin multiplied by it (phi3 LongRoPE); 1 default */
	int n_ctx_orig;         /* rope.scaling.original_context_length (default n_ctx_train): a
	                         * context longer than this uses the long LongRoPE factors */
	/* Gemma family (0 / false elsewhere).  Sliding-window layers (eng_layer.swa)
	 * attend to the last n_swa positions (the query's own included) and rotate
	 * with rope_base_swa, unscaled; the others attend to everything. */
	int n_swa;             /* attention.sliding_window; 0 = no sliding-window layers */
	int n_layer_swa;       /* layers that slide (eng_layer.swa); 0 when n_swa is 0 */
	float rope_base_swa;   /* RoPE base of the sliding-window layers */
	float rope_freq_scale_swa; /* their RoPE scaling (gemma3: 1, gemma2: as the global layers) */
	float q_scale;         /* Q multiplied by this after RoPE, scores then unscaled; 0 = scores x 1/sqrt(D) */
	float attn_softcap;    /* scores = cap * tanh(scores / cap); 0 = off (gemma2) */
	float final_softcap;   /* logits = cap * tanh(logits / cap); 0 = off */
	bool embd_scale;       /* embeddings multiplied by sqrt(C) */
	bool has_post_norm;    /* RMS norms on the attention and FFN outputs, before the residual add */
	enum eng_ffn_act ffn_act;
	/* Mixture of experts (qwen3moe; llama with ffn_*_exps tensors, Mixtral):
	 * a router picks n_expert_used of n_expert SwiGLU experts of width
	 * n_ff_exp per token; softmax over all experts, the chosen ones' weights
	 * renormalised to sum 1 (both families).  0 = dense. */
	int n_expert;
	int n_expert_used;
	int n_ff_exp;
};

/* A non-owning view of one GGUF tensor (into the mmap).  data == NULL means
 * the tensor is absent (optional tensors only). */
struct eng_tensor {
	const char *name;
	enum gguf_dtype type;
	int64_t ne[3];   /* ne[0] row length, ne[1] rows (1 for vectors); ne[2] experts
	                  * (stacked matrices of ne[1] rows each), 0 for 2-D tensors */
	const void *data;
	size_t nbytes;
};

struct eng_layer {
	struct eng_tensor attn_norm;  /* [C] F32 */
	struct eng_tensor wq;         /* rows H*D, row length C */
	struct eng_tensor wk;         /* rows G*D, row length C */
	struct eng_tensor wv;         /* rows G*D, row length C */
	struct eng_tensor bq;         /* [H*D] F32 (qwen2) or absent */
	struct eng_tensor bk;         /* [G*D] F32 (qwen2) or absent */
	struct eng_tensor bv;         /* [G*D] F32 (qwen2) or absent */
	struct eng_tensor q_norm;     /* [D] F32 (qwen3) or absent */
	struct eng_tensor k_norm;     /* [D] F32 (qwen3) or absent */
	struct eng_tensor wo;         /* rows C, row length H*D */
	struct eng_tensor ffn_norm;   /* [C] F32 */
	struct eng_tensor w_gate;     /* rows F, row length C */
	struct eng_tensor w_up;       /* rows F, row length C */
	struct eng_tensor w_down;     /* rows C, row length F */
	struct eng_tensor post_attn_norm; /* [C] F32 (gemma) or absent */
	struct eng_tensor post_ffn_norm;  /* [C] F32 (gemma) or absent */
	/* mixture of experts (then w_gate/w_up/w_down are absent) */
	struct eng_tensor ffn_gate_inp;   /* router: rows E, row length C */
	struct eng_tensor gate_exps;      /* E x (rows F_exp, row length C) */
	struct eng_tensor up_exps;        /* E x (rows F_exp, row length C) */
	struct eng_tensor down_exps;      /* E x (rows C, row length F_exp) */
	bool swa;                     /* a sliding-window layer (cfg.n_swa positions) */
};

struct eng_weights {
	struct eng_tensor tok_embd;    /* rows V, row length C (any weight type) */
	struct eng_tensor output_norm; /* [C] F32 */
	struct eng_tensor output;      /* rows V, row length C; a copy of tok_embd's view when tied */
	struct eng_layer *layers;      /* [L], owned (freed by eng_weights_free) */
	struct eng_tensor rope_freqs;  /* [n_rot/2] F32 frequency divisors (Llama 3.1+), or absent */
	struct eng_tensor rope_long;   /* [n_rot/2] F32 LongRoPE divisors for contexts > n_ctx_orig (phi3), or absent */
	struct eng_tensor rope_short;  /* [n_rot/2] F32 LongRoPE divisors otherwise (phi3), or absent */
};

/* The RoPE frequency divisors a backend uses for sequences of up to
 * max_ctx positions: rope_freqs, else LongRoPE's long or short factors (as
 * llama.cpp picks them from the context size), else NULL (all 1). */
const float *eng_rope_factors(const struct eng_config *cfg, const struct eng_weights *w, int max_ctx);

/* Reads the architecture and hyper-parameters from metadata and binds every
 * tensor by name, checking shapes and types against the config.  An
 * unsupported architecture is refused with the list of supported ones.
 * 0 / -EINVAL (log line names the key or tensor). */
int eng_model_bind(const struct gguf_ctx *g, struct eng_config *cfg, struct eng_weights *w);
void eng_weights_free(struct eng_weights *w); /* accepts a zeroed or half-bound struct */

const char *eng_arch_name(enum eng_arch arch);
/* The 2-D view of expert e of a stacked expert tensor. */
struct eng_tensor eng_expert_view(const struct eng_tensor *t, int e);
/* Total parameters and weight bytes (for `info`, the `model` file, benches). */
uint64_t eng_weights_n_params(const struct eng_config *cfg, const struct eng_weights *w);
uint64_t eng_weights_nbytes(const struct eng_config *cfg, const struct eng_weights *w);
/* Parameters a token uses: all but the unchosen experts' (= n_params when dense). */
uint64_t eng_weights_n_active_params(const struct eng_config *cfg, const struct eng_weights *w);
/* Bytes of weights read per decoded token (every layer matrix + LM head;
 * of the experts, the n_expert_used / n_expert share). */
uint64_t eng_weights_bytes_per_token(const struct eng_config *cfg, const struct eng_weights *w);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_MODEL_H */
