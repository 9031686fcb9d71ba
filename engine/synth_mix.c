/*
 * synth_mix.c — the tensor types llama.cpp's llama-quantize gives a model
 * for a file type, so that a synthetic Q4_K_M file has exactly the mix of
 * a real one.  The rules are those of llama_tensor_get_type() and
 * tensor_type_fallback() in src/llama-quant.cpp of the llama.cpp that
 * llama-cpp-python 0.3.36 vendors, restricted to the file types of
 * enum synth_ftype and to the tensors our presets have (written from its
 * behaviour, not copied).  tests/test_synth_mix.py runs that llama-quantize
 * on every preset and compares every tensor's type with ours.
 *
 * The rules, for a quantized file type (F16/BF16 files: every quantizable
 * matrix in that type):
 *  - quantizable: 2-D or 3-D, the name ends in "weight", not a norm
 *    ("_norm.weight"), not the MoE router (ffn_gate_inp);
 *  - the LM head (output.weight, or token_embd.weight when there is no
 *    output.weight: tied embeddings) gets Q6_K, or Q8_0 when its rows do not
 *    split into the file type's blocks (and stays Q8_0 in Q8_0 files);
 *  - attn_v (also attn_qkv / attn_kv_b): Q6_K in Q4_K_M / Q5_K_M files in
 *    the use_more_bits layers (the first and last eighth, and every third
 *    between), counted over the attn_v tensors in llama.cpp's order; in a
 *    "70B" model (llama.cpp's size class: 80-layer qwen2, 80-layer llama
 *    with grouped KV) Q3_K/Q4_K become Q5_K; with exactly 8 experts Q8_0;
 *  - attn_k: Q8_0 with exactly 8 experts;
 *  - ffn_down(_exps, _shexp): Q6_K in Q4_K_M / Q5_K_M files in the
 *    use_more_bits layers (the layer read from the name in MoE models,
 *    else a counter over the ffn_down tensors in llama.cpp's order, against
 *    block_count);
 *  - attn_output: Q5_K in Q4_K_M files with exactly 8 experts;
 *  - then the fallback for rows that do not split into the chosen type's
 *    blocks (synth_fit_type).
 * llama.cpp's order: tensors sorted by layer number (those outside blk.N.
 * first), then by name; name_order models sort by name alone.
 */
#include "synth_internal.h"

#include "../gguf/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const synth_ftype_suffixes[] = { "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", NULL };
static const int suffix_ftype[] = { SYNTH_FTYPE_F16,    SYNTH_FTYPE_BF16,   SYNTH_FTYPE_Q8_0, SYNTH_FTYPE_Q6_K,
                                    SYNTH_FTYPE_Q5_K_M, SYNTH_FTYPE_Q4_K_M, SYNTH_FTYPE_Q4_0 };

int synth_ftype_parse(const char *suffix)
{
	for (int i = 0; synth_ftype_suffixes[i]; i++)
		if (!strcmp(suffix, synth_ftype_suffixes[i]))
			return suffix_ftype[i];
	return -1;
}

/* The type most tensors get (llama_ftype_get_default_type). */
static int default_type(int ftype)
{
	switch (ftype) {
	case SYNTH_FTYPE_F16: return GGUF_DTYPE_F16;
	case SYNTH_FTYPE_BF16: return GGUF_DTYPE_BF16;
	case SYNTH_FTYPE_Q4_0: return GGUF_DTYPE_Q4_0;
	case SYNTH_FTYPE_Q8_0: return GGUF_DTYPE_Q8_0;
	case SYNTH_FTYPE_Q4_K_M: return GGUF_DTYPE_Q4_K;
	case SYNTH_FTYPE_Q5_K_M: return GGUF_DTYPE_Q5_K;
	case SYNTH_FTYPE_Q6_K: return GGUF_DTYPE_Q6_K;
	default: return -1;
	}
}

enum gguf_dtype synth_fit_type(enum gguf_dtype t, int64_t ne0)
{
	if (ne0 % gguf_type_traits(t)->blck_size == 0)
		return t;
	switch (t) {
	case GGUF_DTYPE_Q2_K: case GGUF_DTYPE_Q3_K: t = GGUF_DTYPE_Q4_0; break;
	case GGUF_DTYPE_Q4_K: t = GGUF_DTYPE_Q5_0; break;
	case GGUF_DTYPE_Q5_K: t = GGUF_DTYPE_Q5_1; break;
	case GGUF_DTYPE_Q6_K: t = GGUF_DTYPE_Q8_0; break;
	default: break; /* a 32-block type: nothing smaller to fall back to */
	}
	return ne0 % gguf_type_traits(t)->blck_size == 0 ? t : GGUF_DTYPE_F16;
}

// ---- tensor roles (tensor_get_category)

enum role {
	ROLE_OTHER, ROLE_OUTPUT, ROLE_TOKEN_EMBD, ROLE_ATTN_V, ROLE_ATTN_K, ROLE_ATTN_Q,
	ROLE_ATTN_OUTPUT, ROLE_FFN_UP, ROLE_FFN_GATE, ROLE_FFN_DOWN,
};

/* First match wins, in llama.cpp's order (attn_qkv and attn_kv_b count as
 * attn_v: the rules treat them alike). */
static enum role role_of(const char *name)
{
	if (!strcmp(name, "output.weight"))
		return ROLE_OUTPUT;
	if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight"))
		return ROLE_TOKEN_EMBD;
	if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") || strstr(name, "attn_v.weight"))
		return ROLE_ATTN_V;
	if (strstr(name, "attn_k.weight"))
		return ROLE_ATTN_K;
	if (strstr(name, "attn_q.weight"))
		return ROLE_ATTN_Q;
	if (strstr(name, "attn_output.weight"))
		return ROLE_ATTN_OUTPUT;
	if (strstr(name, "ffn_up"))
		return ROLE_FFN_UP;
	if (strstr(name, "ffn_gate"))
		return ROLE_FFN_GATE;
	if (strstr(name, "ffn_down"))
		return ROLE_FFN_DOWN;
	return ROLE_OTHER;
}

/* tensor_allows_quantization, for the tensors a preset can have. */
static bool quantizable(const struct synth_tensor *t)
{
	size_t n = strlen(t->name);

	return t->n_dims >= 2 && n >= 6 && !strcmp(t->name + n - 6, "weight") &&
	       !strstr(t->name, "_norm.weight") && !strstr(t->name, "ffn_gate_inp.weight");
}

bool synth_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// ---- llama.cpp's order

static int layer_of(const char *name)
{
	int il = -1;

	return sscanf(name, "blk.%d.", &il) == 1 ? il : -1;
}

/* A tensor's place in llama.cpp's order: layer key, then name. */
struct order_key {
	int layer; /* -1 outside blk.N.; 0 for every tensor of a name_order model */
	const char *name;
	int idx;
};

static int cmp_order(const void *a, const void *b)
{
	const struct order_key *x = a, *y = b;

	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return strcmp(x->name, y->name);
}

// ---- the rules

struct mix_state {
	const struct synth_mix_model *m;
	int ftype;
	bool tied, is_70b;
	int n_attn_v, i_attn_v, i_ffn_down;
};

/* llama.cpp's size class "70B" (the only one its Q4_K_M rules read). */
static bool is_70b(const struct synth_mix_model *m)
{
	if (!strcmp(m->arch, "qwen2"))
		return m->n_layer == 80;
	if (!strcmp(m->arch, "llama"))
		return m->n_expert != 8 && m->n_layer == 80 && m->n_head != m->n_head_kv;
	return false;
}

/* The type of one quantizable tensor (llama_tensor_get_type_impl, then the
 * fallback).  *err on a layer number out of range. */
static enum gguf_dtype rule(struct mix_state *s, const struct synth_tensor *t, int *err)
{
	const bool km = s->ftype == SYNTH_FTYPE_Q4_K_M || s->ftype == SYNTH_FTYPE_Q5_K_M;
	const int n_expert = s->m->n_expert;
	enum gguf_dtype type = (enum gguf_dtype)default_type(s->ftype);
	enum role r = role_of(t->name);

	if (r == ROLE_OUTPUT || (s->tied && r == ROLE_TOKEN_EMBD)) {
		if (t->ne[0] % gguf_type_traits(type)->blck_size != 0)
			type = GGUF_DTYPE_Q8_0;
		else if (type != GGUF_DTYPE_Q8_0)
			type = GGUF_DTYPE_Q6_K;
	} else if (r == ROLE_ATTN_V) {
		if (km && synth_more_bits(s->i_attn_v, s->n_attn_v))
			type = GGUF_DTYPE_Q6_K;
		if (s->is_70b && (type == GGUF_DTYPE_Q3_K || type == GGUF_DTYPE_Q4_K))
			type = GGUF_DTYPE_Q5_K;
		if (n_expert == 8)
			type = GGUF_DTYPE_Q8_0;
		s->i_attn_v++;
	} else if (r == ROLE_ATTN_K) {
		if (n_expert == 8)
			type = GGUF_DTYPE_Q8_0;
	} else if (r == ROLE_FFN_DOWN) {
		int il = n_expert > 1 ? layer_of(t->name) : s->i_ffn_down;
		if (il < 0 || il >= s->m->n_layer) {
			LOG_ERR("tensor '%s': layer %d outside [0, %d)", t->name, il, s->m->n_layer);
			*err = -EINVAL;
		}
		if (km && synth_more_bits(il, s->m->n_layer))
			type = GGUF_DTYPE_Q6_K;
		s->i_ffn_down++;
	} else if (r == ROLE_ATTN_OUTPUT) {
		if (n_expert == 8 && s->ftype == SYNTH_FTYPE_Q4_K_M)
			type = GGUF_DTYPE_Q5_K;
	}
	return synth_fit_type(type, t->ne[0]);
}

int synth_mix_apply(struct synth_plan *p, const struct synth_mix_model *m, int ftype)
{
	struct mix_state s = { .m = m, .ftype = ftype, .tied = true, .is_70b = is_70b(m) };
	struct order_key *order;
	int err = 0;

	if (default_type(ftype) < 0) {
		LOG_ERR("file type %d is not one the presets offer", ftype);
		return -EINVAL;
	}
	if (!(order = malloc(sizeof(*order) * (size_t)(p->n ? p->n : 1))))
		return -ENOMEM;
	for (int i = 0; i < p->n; i++) {
		const char *name = p->t[i].name;
		order[i] = (struct order_key){ .layer = m->name_order ? 0 : layer_of(name), .name = name, .idx = i };
		s.n_attn_v += role_of(name) == ROLE_ATTN_V;
		s.tied &= role_of(name) != ROLE_OUTPUT;
	}
	qsort(order, (size_t)p->n, sizeof(*order), cmp_order);
	for (int k = 0; k < p->n && !err; k++) {
		struct synth_tensor *t = &p->t[order[k].idx];
		if (!quantizable(t))
			continue;
		if (!gguf_type_traits(default_type(ftype))->is_quantized)
			t->type = (enum gguf_dtype)default_type(ftype); /* F16/BF16: no rules, no fallback */
		else
			t->type = rule(&s, t, &err);
	}
	free(order);
	return err;
}
