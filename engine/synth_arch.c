/*
 * synth_arch.c — synthetic-model presets of the dense architectures added
 * after qwen (engine/model.h): gemma3, gemma2, phi3 and Llama 3.1's
 * rope_freqs.  The GPU machine writes these for tests/gpu/run.sh's
 * whole-model checks of the CUDA backend against the CPU (only 64 MiB
 * travel per call).
 *
 * Layouts: Gemma 3 270M as it is (18 layers, 640 wide, 4/1 heads of 256,
 * window 512 on 5 of 6 layers, RoPE bases 1e6 / 1e4); the others small but
 * with their real head shapes (gemma2 window 128 and soft-caps small enough
 * to change the result, as tests/test_arch.py; phi3 fused QKV and gate/up,
 * head dim 96, LongRoPE factors and attn_factor; Llama 3.1's rope_freqs
 * from its published scaling rule).  Types follow llama.cpp's Q4_K_M mix in
 * outline (Q4_K, Q6_K for attn_v / ffn_down in use_more_bits layers and the
 * output, F32 vectors), --type overrides every matrix.  Vocabularies come
 * from shared/models/vocab (the Llama 2 SentencePiece one stands in for
 * Gemma's 262k, which is not there).
 *
 * Shape letters: L layers, C width, H/G heads, D head dim, F feed-forward,
 * V vocabulary.
 */
#include "synth_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

enum {
	ARCH_QK_NORM = 1,    /* attn_q_norm / attn_k_norm */
	ARCH_POST_NORM = 2,  /* post_attention_norm / post_ffw_norm (gemma) */
	ARCH_FUSED = 4,      /* attn_qkv and ffn_up = gate|up (phi3) */
	ARCH_LONGROPE = 8,   /* rope_factors_long / _short, attn_factor (phi3) */
	ARCH_ROPE_FREQS = 16, /* rope_freqs (Llama 3.1) */
	ARCH_UNTIED = 32,    /* an output.weight of its own */
};

struct arch_preset {
	const char *name, *arch, *title, *vocab;
	int L, C, H, G, D, F, ctx;
	float rope_base, eps;
	int swa, swa_period;   /* gemma: window, and layer il global when il % period == period - 1 */
	float rope_base_swa, attn_cap, final_cap;
	unsigned flags;
};

static const struct arch_preset arch_presets[] = {
	{ "gemma3-270m-q4_k_m", "gemma3", "Gemma 3 270M layout", "ggml-vocab-llama-spm.gguf",
	  18, 640, 4, 1, 256, 2048, 32768, 1e6f, 1e-6f, 512, 6, 1e4f, 0.0f, 0.0f,
	  ARCH_QK_NORM | ARCH_POST_NORM },
	{ "gemma2-small-q4_k_m", "gemma2", "Gemma 2 layout, small", "ggml-vocab-llama-spm.gguf",
	  4, 1024, 8, 4, 128, 4096, 8192, 1e4f, 1e-6f, 128, 2, 1e4f, 0.5f, 1.0f, ARCH_POST_NORM },
	{ "phi3-small-q4_k_m", "phi3", "Phi-3 layout, small", "ggml-vocab-phi-3.gguf",
	  4, 1536, 16, 16, 96, 4096, 131072, 1e4f, 1e-5f, 0, 0, 0.0f, 0.0f, 0.0f,
	  ARCH_FUSED | ARCH_LONGROPE | ARCH_UNTIED },
	{ "llama3.1-small-q4_k_m", "llama", "Llama 3.1 layout, small", "ggml-vocab-llama-bpe.gguf",
	  4, 2048, 16, 4, 128, 8192, 131072, 5e5f, 1e-5f, 0, 0, 0.0f, 0.0f, 0.0f,
	  ARCH_ROPE_FREQS | ARCH_UNTIED },
};
#define N_ARCH ((int)(sizeof(arch_presets) / sizeof(arch_presets[0])))

const char *synth_arch_preset_name(int i)
{
	return i >= 0 && i < N_ARCH ? arch_presets[i].name : NULL;
}

// ---- metadata

/* Writes the architecture's keys; *V = the vocabulary's size. */
static int arch_kv(struct gguf_writer *w, const struct arch_preset *m, const char *vocab_path, int *V)
{
	struct gguf_ctx *v = NULL;
	char name[128], k[20][96];
	int err = gguf_open(vocab_path, &v);

	if (err)
		return err;
	snprintf(name, sizeof(name), "%s (synthetic %s)", m->title, m->name);
#define KEY(i, s) (snprintf(k[i], sizeof(k[i]), "%s." s, m->arch), k[i])
	if ((err = gguf_writer_set_str(w, "general.architecture", m->arch)) ||
	    (err = gguf_writer_set_str(w, "general.type", "model")) ||
	    (err = gguf_writer_set_str(w, "general.name", name)) ||
	    (err = gguf_writer_set_u32(w, KEY(0, "block_count"), m->L)) ||
	    (err = gguf_writer_set_u32(w, KEY(1, "context_length"), m->ctx)) ||
	    (err = gguf_writer_set_u32(w, KEY(2, "embedding_length"), m->C)) ||
	    (err = gguf_writer_set_u32(w, KEY(3, "feed_forward_length"), m->F)) ||
	    (err = gguf_writer_set_u32(w, KEY(4, "attention.head_count"), m->H)) ||
	    (err = gguf_writer_set_u32(w, KEY(5, "attention.head_count_kv"), m->G)) ||
	    (err = gguf_writer_set_u32(w, KEY(6, "attention.key_length"), m->D)) ||
	    (err = gguf_writer_set_u32(w, KEY(7, "attention.value_length"), m->D)) ||
	    (err = gguf_writer_set_f32(w, KEY(8, "rope.freq_base"), m->rope_base)) ||
	    (err = gguf_writer_set_f32(w, KEY(9, "attention.layer_norm_rms_epsilon"), m->eps)) ||
	    (m->swa && (err = gguf_writer_set_u32(w, KEY(10, "attention.sliding_window"), m->swa))) ||
	    (m->swa && (err = gguf_writer_set_u32(w, KEY(11, "attention.sliding_window_pattern"), m->swa_period))) ||
	    (m->swa && !strcmp(m->arch, "gemma3") &&
	     (err = gguf_writer_set_f32(w, KEY(12, "rope.freq_base_swa"), m->rope_base_swa))) ||
	    (m->attn_cap && (err = gguf_writer_set_f32(w, KEY(13, "attn_logit_softcapping"), m->attn_cap))) ||
	    (m->final_cap && (err = gguf_writer_set_f32(w, KEY(14, "final_logit_softcapping"), m->final_cap))) ||
	    ((m->flags & ARCH_LONGROPE) &&
	     ((err = gguf_writer_set_f32(w, KEY(15, "rope.scaling.attn_factor"), 1.1902380714f)) ||
	      (err = gguf_writer_set_u32(w, KEY(16, "rope.scaling.original_context_length"), 4096)))) ||
	    (err = gguf_writer_set_u32(w, "general.file_type", 15)) ||
	    (err = gguf_writer_copy_kv(w, v, synth_skip_non_tokenizer, NULL)) ||
	    (err = gguf_writer_set_u32(w, "general.quantization_version", 2)))
		goto out_vocab;
#undef KEY
	int64_t tok = gguf_find_key(v, "tokenizer.ggml.tokens");
	if (tok < 0 || gguf_kv_type(v, tok) != GGUF_VTYPE_ARRAY || gguf_get_arr_n(v, tok) < 1 ||
	    gguf_get_arr_n(v, tok) > INT32_MAX) {
		LOG_ERR("%s: no token list", vocab_path);
		err = -EINVAL;
	} else {
		*V = (int)gguf_get_arr_n(v, tok);
	}
out_vocab:
	gguf_free(v);
	return err;
}

// ---- tensors

/* A one-row F32 tensor with the values f(i, n) for i < n. */
static int add_fixed(struct synth_plan *p, const char *name, int n, double (*f)(int i, int n, float base),
                     float base)
{
	int err = synth_plan_add(p, name, GGUF_DTYPE_F32, 1, n, 1, 1);
	float *v = err ? NULL : malloc(sizeof(float) * (size_t)n);

	if (err)
		return err;
	if (!v)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		v[i] = (float)f(i, n, base);
	p->t[p->n - 1].values = v;
	return 0;
}

/* Llama 3.1's rope_freqs (llama.cpp's converter, rope_scaling llama3:
 * factor 8, low / high frequency factors 1 / 4, original context 8192):
 * 1 for short wavelengths, 8 for long ones, interpolated between. */
static double llama3_factor(int i, int n, float base)
{
	const double factor = 8.0, lo = 1.0, hi = 4.0, old_ctx = 8192.0;
	const double freq = 1.0 / pow((double)base, 2.0 * i / (2.0 * n)), wavelen = 2.0 * M_PI / freq;
	if (wavelen < old_ctx / hi)
		return 1.0;
	if (wavelen > old_ctx / lo)
		return factor;
	const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
	return 1.0 / ((1.0 - smooth) / factor + smooth);
}

/* LongRoPE divisors in the ranges of Phi-3-mini-128k's: short 1 .. 3, long 1 .. 40 */
static double longrope_short(int i, int n, float base)
{
	(void)base;
	return 1.0 + 2.0 * i / (n - 1);
}

static double longrope_long(int i, int n, float base)
{
	(void)base;
	const double x = (double)i / (n - 1);
	return 1.0 + 39.0 * x * x;
}

static int plan_layer(struct synth_plan *p, const struct arch_preset *m, int i)
{
	const enum gguf_dtype q4 = GGUF_DTYPE_Q4_K, f32 = GGUF_DTYPE_F32;
	const enum gguf_dtype more = synth_more_bits(i, m->L) ? GGUF_DTYPE_Q6_K : q4;
	const int HD = m->H * m->D, GD = m->G * m->D;
	char n[GGUF_MAX_NAME];
	int err = 0;

#define ADD(suffix, type, nd, a, b) \
	(snprintf(n, sizeof(n), "blk.%d.%s", i, suffix), err = err ? err : synth_plan_add(p, n, synth_fit_type(type, a), nd, a, b, 1))
	ADD("attn_norm.weight", f32, 1, m->C, 1);
	if (m->flags & ARCH_FUSED) {
		ADD("attn_qkv.weight", more, 2, m->C, HD + 2 * GD);
	} else {
		ADD("attn_q.weight", q4, 2, m->C, HD);
		ADD("attn_k.weight", q4, 2, m->C, GD);
		ADD("attn_v.weight", more, 2, m->C, GD);
	}
	ADD("attn_output.weight", q4, 2, HD, m->C);
	if (m->flags & ARCH_QK_NORM) {
		ADD("attn_q_norm.weight", f32, 1, m->D, 1);
		ADD("attn_k_norm.weight", f32, 1, m->D, 1);
	}
	if (m->flags & ARCH_POST_NORM)
		ADD("post_attention_norm.weight", f32, 1, m->C, 1);
	ADD("ffn_norm.weight", f32, 1, m->C, 1);
	if (m->flags & ARCH_FUSED) {
		ADD("ffn_up.weight", q4, 2, m->C, 2 * m->F);
	} else {
		ADD("ffn_gate.weight", q4, 2, m->C, m->F);
		ADD("ffn_up.weight", q4, 2, m->C, m->F);
	}
	ADD("ffn_down.weight", more, 2, m->F, m->C);
	if (m->flags & ARCH_POST_NORM)
		ADD("post_ffw_norm.weight", f32, 1, m->C, 1);
#undef ADD
	return err;
}

static int plan_arch(struct synth_plan *p, const struct arch_preset *m, int V)
{
	const enum gguf_dtype q6 = GGUF_DTYPE_Q6_K;
	/* a tied embedding is the LM head: Q6_K as llama.cpp's output type */
	int err = synth_plan_add(p, "token_embd.weight",
	                         synth_fit_type(m->flags & ARCH_UNTIED ? GGUF_DTYPE_Q4_K : q6, m->C), 2, m->C, V, 1);

	for (int i = 0; i < m->L && !err; i++)
		err = plan_layer(p, m, i);
	if (!err && (m->flags & ARCH_UNTIED))
		err = synth_plan_add(p, "output.weight", synth_fit_type(q6, m->C), 2, m->C, V, 1);
	if (!err)
		err = synth_plan_add(p, "output_norm.weight", GGUF_DTYPE_F32, 1, m->C, 1, 1);
	if (!err && (m->flags & ARCH_ROPE_FREQS))
		err = add_fixed(p, "rope_freqs.weight", m->D / 2, llama3_factor, m->rope_base);
	if (!err && (m->flags & ARCH_LONGROPE) &&
	    !(err = add_fixed(p, "rope_factors_long.weight", m->D / 2, longrope_long, 0.0f)))
		err = add_fixed(p, "rope_factors_short.weight", m->D / 2, longrope_short, 0.0f);
	return err;
}

int synth_arch_build(const char *name, const char *vocab_given, struct gguf_writer *w, struct synth_plan *p,
                     int *err)
{
	char vocab[PATH_MAX];
	int V = 0;

	for (int i = 0; i < N_ARCH; i++) {
		const struct arch_preset *m = &arch_presets[i];
		if (strcmp(m->name, name))
			continue;
		if (!(*err = synth_find_vocab(vocab_given, m->vocab, vocab, sizeof(vocab))) &&
		    !(*err = arch_kv(w, m, vocab, &V)))
			*err = plan_arch(p, m, V);
		return 1;
	}
	return 0;
}
