/*
 * model.c — binds a GGUF file to an architecture: hyper-parameters from the
 * metadata, weight views by tensor name, every shape checked against the
 * config before any backend touches a byte.
 *
 * Supported architectures: llama, qwen2, qwen3, gemma3, gemma2 (model.h).  Keys are read as
 * "<arch>.<name>" the way llama.cpp names them; an absent optional key takes
 * llama.cpp's default.  A malformed or unsupported model is refused with
 * -EINVAL and one log line naming the key or tensor.
 *
 * Shape letters (model.h): V vocabulary, C n_embd, L layers, H heads,
 * G KV heads, D head dim, F feed-forward width.
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

static const char *const arch_names[ENG_ARCH_COUNT] = {
	[ENG_ARCH_LLAMA] = "llama",
	[ENG_ARCH_QWEN2] = "qwen2",
	[ENG_ARCH_QWEN3] = "qwen3",
	[ENG_ARCH_GEMMA3] = "gemma3",
	[ENG_ARCH_GEMMA2] = "gemma2",
	[ENG_ARCH_PHI3] = "phi3",
	[ENG_ARCH_QWEN3MOE] = "qwen3moe",
};
#define SUPPORTED "llama, qwen2, qwen3, gemma3, gemma2, phi3, qwen3moe"

static bool is_gemma(enum eng_arch a)
{
	return a == ENG_ARCH_GEMMA3 || a == ENG_ARCH_GEMMA2;
}

const char *eng_arch_name(enum eng_arch arch)
{
	if ((int)arch < 0 || arch >= ENG_ARCH_COUNT)
		return "unknown";
	return arch_names[arch];
}

// ---- hyper-parameters

/* Reads "<arch>.<name>" as an integer in [lo, hi].  Absent: *out = def and
 * 0 when def >= 0 (optional key), else -EINVAL (required key). */
static int get_hparam_int(const struct gguf_ctx *g, const char *arch, const char *name,
                          int64_t def, int64_t lo, int64_t hi, int *out)
{
	char key[128];
	int64_t v;
	int rc;

	snprintf(key, sizeof(key), "%s.%s", arch, name);
	rc = gguf_get_int_key(g, key, &v);
	if (rc == -ENOENT) {
		if (def < 0) {
			LOG_ERR("required key '%s' is missing", key);
			return -EINVAL;
		}
		v = def;
	} else if (rc < 0) {
		LOG_ERR("key '%s' is not an integer scalar", key);
		return -EINVAL;
	}
	if (v < lo || v > hi) {
		LOG_ERR("key '%s' = %lld is out of range [%lld, %lld]", key, (long long)v,
		        (long long)lo, (long long)hi);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

/* Reads "<arch>.<name>" as a float; absent → def (NAN def: required). */
static int get_hparam_float(const struct gguf_ctx *g, const char *arch, const char *name,
                            double def, double lo, double hi, float *out)
{
	char key[128];
	double v;
	int rc;

	snprintf(key, sizeof(key), "%s.%s", arch, name);
	rc = gguf_get_float_key(g, key, &v);
	if (rc == -ENOENT) {
		if (isnan(def)) {
			LOG_ERR("required key '%s' is missing", key);
			return -EINVAL;
		}
		v = def;
	} else if (rc < 0) {
		LOG_ERR("key '%s' is not a number", key);
		return -EINVAL;
	}
	if (!(v >= lo && v <= hi)) {
		LOG_ERR("key '%s' = %g is out of range [%g, %g]", key, v, lo, hi);
		return -EINVAL;
	}
	*out = (float)v;
	return 0;
}

static int read_arch(const struct gguf_ctx *g, enum eng_arch *out)
{
	const char *name = gguf_get_str_key(g, "general.architecture");

	if (!name) {
		LOG_ERR("key 'general.architecture' is missing (supported: " SUPPORTED ")");
		return -EINVAL;
	}
	for (int a = 0; a < ENG_ARCH_COUNT; a++) {
		if (!strcmp(name, arch_names[a])) {
			*out = (enum eng_arch)a;
			return 0;
		}
	}
	LOG_ERR("unsupported architecture '%s' (supported: " SUPPORTED ")", name);
	return -EINVAL;
}

/* Vocabulary size from the token list; 0 when the file has none (then the
 * embedding tensor decides). */
static int64_t vocab_from_tokens(const struct gguf_ctx *g)
{
	int64_t id = gguf_find_key(g, "tokenizer.ggml.tokens");

	if (id < 0 || gguf_kv_type(g, id) != GGUF_VTYPE_ARRAY)
		return 0;
	return (int64_t)gguf_get_arr_n(g, id);
}

/* RoPE scaling as llama.cpp reads it: a factor from rope.scaling.factor
 * (or the older rope.scale_linear) divides positions.  Types other than
 * linear and none (yarn, longrope …) are refused, naming the key: running
 * without them would be a silently wrong answer at long contexts. */
static int read_rope_scaling(const struct gguf_ctx *g, const char *a, struct eng_config *c)
{
	char key[128];
	const char *type;
	float factor = 0.0f;
	int rc;

	snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
	type = gguf_get_str_key(g, key);
	c->rope_freq_scale = 1.0f;
	/* phi3's LongRoPE is its factor tensors and attn_factor (read below) */
	if (type && strcmp(type, "linear") && strcmp(type, "none") &&
	    !(c->arch == ENG_ARCH_PHI3 && !strcmp(type, "longrope"))) {
		LOG_ERR("%s = '%s' is not supported (linear, none%s)", key, type,
		        c->arch == ENG_ARCH_PHI3 ? ", longrope" : "");
		return -EINVAL;
	}
	if ((rc = get_hparam_float(g, a, "rope.scaling.attn_factor", 1.0, 1e-6, 1e6, &c->rope_attn_factor)) ||
	    (rc = get_hparam_int(g, a, "rope.scaling.original_context_length", c->n_ctx_train, 1, 1 << 24,
	                         &c->n_ctx_orig)))
		return rc;
	rc = get_hparam_float(g, a, "rope.scaling.factor", 0.0, 0.0, 1e6, &factor);
	if (!rc && factor == 0.0f)
		rc = get_hparam_float(g, a, "rope.scale_linear", 0.0, 0.0, 1e6, &factor);
	if (rc)
		return rc;
	if (factor != 0.0f && !(type && !strcmp(type, "none")))
		c->rope_freq_scale = 1.0f / factor;
	return 0;
}

/* Gemma 2/3 as llama.cpp's llama_model_gemma2/3 read them: the window
 * (gemma2 default 4096; gemma3 without one has no sliding layers), the
 * sliding layers' RoPE base (gemma3 10000 unscaled; gemma2 the global one),
 * Q scaled by 1/sqrt(D) (1/sqrt(C/H) for the 27B models, told apart by
 * their layer count as llama.cpp does), soft-caps. */
static int read_gemma(const struct gguf_ctx *g, const char *a, struct eng_config *c)
{
	const bool g2 = c->arch == ENG_ARCH_GEMMA2;
	const bool is27b = c->n_layer == (g2 ? 46 : 62);
	int rc;

	c->embd_scale = true;
	c->has_post_norm = true;
	c->ffn_act = ENG_FFN_ACT_GELU;
	c->q_scale = 1.0f / sqrtf((float)(is27b ? c->n_embd / c->n_head : c->head_dim));
	c->rope_freq_scale_swa = g2 ? c->rope_freq_scale : 1.0f;
	if ((rc = get_hparam_int(g, a, "attention.sliding_window", g2 ? 4096 : 0, 0, 1 << 24, &c->n_swa)) ||
	    (rc = get_hparam_float(g, a, "rope.freq_base_swa", g2 ? c->rope_base : 10000.0, 1e-3, 1e30,
	                           &c->rope_base_swa)) ||
	    (rc = get_hparam_float(g, a, "final_logit_softcapping", g2 ? 30.0 : 0.0, 0.0, 1e6,
	                           &c->final_softcap)) ||
	    (rc = get_hparam_float(g, a, "attn_logit_softcapping", g2 ? 50.0 : 0.0, 0.0, 1e6,
	                           &c->attn_softcap)))
		return rc;
	if (!g2 && c->attn_softcap) {
		LOG_ERR("%s.attn_logit_softcapping = %g: gemma3 has no attention soft-capping", a,
		        c->attn_softcap);
		return -EINVAL;
	}
	return 0;
}

/* Which layers slide: "<arch>.attention.sliding_window_pattern" as an
 * array of bools (one per layer) or an integer n (layer il slides unless
 * il % n == n - 1); absent: gemma3 6, gemma2 2 (llama.cpp's defaults). */
static int read_swa_layers(const struct gguf_ctx *g, const struct eng_config *c,
                           struct eng_layer *layers)
{
	char key[128];
	int64_t id, n = c->arch == ENG_ARCH_GEMMA2 ? 2 : 6;

	snprintf(key, sizeof(key), "%s.attention.sliding_window_pattern", arch_names[c->arch]);
	id = gguf_find_key(g, key);
	if (id >= 0 && gguf_kv_type(g, id) == GGUF_VTYPE_ARRAY) {
		const uint8_t *v = gguf_get_arr_data(g, id);
		if (gguf_get_arr_type(g, id) != GGUF_VTYPE_BOOL || gguf_get_arr_n(g, id) != (uint64_t)c->n_layer || !v) {
			LOG_ERR("key '%s' is not an array of %d bools", key, c->n_layer);
			return -EINVAL;
		}
		for (int il = 0; il < c->n_layer; il++)
			layers[il].swa = c->n_swa > 0 && v[il];
		return 0;
	}
	if (id >= 0 && (gguf_get_int_key(g, key, &n) || n < 0 || n > 4096)) {
		LOG_ERR("key '%s' is not an integer in [0, 4096] or an array of bools", key);
		return -EINVAL;
	}
	for (int il = 0; il < c->n_layer; il++)
		layers[il].swa = c->n_swa > 0 && (n == 0 || il % n < n - 1);
	return 0;
}

/* Mixture of experts: "<arch>.expert_count" > 0 (qwen3moe requires it; a
 * llama with it is Mixtral-style), expert_used_count in [1, count],
 * expert_feed_forward_length (default feed_forward_length, as Mixtral). */
static int read_experts(const struct gguf_ctx *g, const char *a, struct eng_config *c)
{
	const bool moe_arch = c->arch == ENG_ARCH_QWEN3MOE;
	int rc;

	if (!moe_arch && c->arch != ENG_ARCH_LLAMA)
		return 0; /* other families: an expert key is unused, the tensors are refused */
	if ((rc = get_hparam_int(g, a, "expert_count", moe_arch ? -1 : 0, 0, 1 << 16, &c->n_expert)))
		return rc;
	if (!c->n_expert)
		return 0;
	if ((rc = get_hparam_int(g, a, "expert_used_count", -1, 1, c->n_expert, &c->n_expert_used)) ||
	    (rc = get_hparam_int(g, a, "expert_feed_forward_length", c->n_ff, 1, 1 << 22, &c->n_ff_exp)))
		return rc;
	if (c->n_expert < 2) {
		LOG_ERR("%s.expert_count = %d: a mixture needs at least 2 experts", a, c->n_expert);
		return -EINVAL;
	}
	return 0;
}

static int read_config(const struct gguf_ctx *g, struct eng_config *c)
{
	const char *a;
	int rc, key_len_v = 0;

	memset(c, 0, sizeof(*c));
	rc = read_arch(g, &c->arch);
	if (rc)
		return rc;
	a = arch_names[c->arch];
	if ((rc = get_hparam_int(g, a, "block_count", -1, 1, 4096, &c->n_layer)) ||
	    (rc = get_hparam_int(g, a, "embedding_length", -1, 1, 1 << 20, &c->n_embd)) ||
	    (rc = get_hparam_int(g, a, "feed_forward_length", -1, 1, 1 << 22, &c->n_ff)) ||
	    (rc = get_hparam_int(g, a, "attention.head_count", -1, 1, 4096, &c->n_head)) ||
	    (rc = get_hparam_int(g, a, "attention.head_count_kv", c->n_head, 1, 4096, &c->n_head_kv)) ||
	    (rc = get_hparam_int(g, a, "context_length", -1, 1, 1 << 24, &c->n_ctx_train)) ||
	    (rc = get_hparam_float(g, a, "attention.layer_norm_rms_epsilon", NAN, 0.0, 1.0, &c->rms_eps)) ||
	    (rc = get_hparam_float(g, a, "rope.freq_base", 10000.0, 1e-3, 1e30, &c->rope_base)))
		return rc;
	if (c->n_head % c->n_head_kv) {
		LOG_ERR("%s.attention.head_count %d is not a multiple of head_count_kv %d", a,
		        c->n_head, c->n_head_kv);
		return -EINVAL;
	}
	if ((rc = get_hparam_int(g, a, "attention.key_length",
	                         c->n_embd % c->n_head ? -1 : c->n_embd / c->n_head, 1, 1 << 16,
	                         &c->head_dim)) ||
	    (rc = get_hparam_int(g, a, "attention.value_length", c->head_dim, 1, 1 << 16, &key_len_v)) ||
	    (rc = get_hparam_int(g, a, "rope.dimension_count", c->head_dim, 0, c->head_dim, &c->n_rot)))
		return rc;
	if (key_len_v != c->head_dim) {
		LOG_ERR("%s.attention.value_length %d != key_length %d (not supported)", a, key_len_v,
		        c->head_dim);
		return -EINVAL;
	}
	if (c->n_rot % 2) {
		LOG_ERR("%s.rope.dimension_count %d is odd", a, c->n_rot);
		return -EINVAL;
	}
	rc = read_rope_scaling(g, a, c);
	if (rc)
		return rc;
	c->rope_type = c->arch == ENG_ARCH_LLAMA ? ENG_ROPE_TYPE_NORM : ENG_ROPE_TYPE_NEOX;
	if (c->arch == ENG_ARCH_PHI3) {
		/* llama.cpp scales Q by 1/sqrt(D) before attention (then unscaled
		 * scores) and ignores phi3's sliding_window (disabled there) */
		c->q_scale = 1.0f / sqrtf((float)c->head_dim);
	}
	if (is_gemma(c->arch) && (rc = read_gemma(g, a, c)))
		return rc;
	if ((rc = read_experts(g, a, c)))
		return rc;
	c->n_vocab = (int)vocab_from_tokens(g); /* 0: from the tensor, in bind_weights */
	return 0;
}

// ---- tensors

#define LAYER_TENSORS_MAX 32

/* Every tensor view of a layer (bound or not), for sums and checks. */
static size_t layer_tensors(const struct eng_layer *l, const struct eng_tensor **ts)
{
	const struct eng_tensor *all[] = {
		&l->attn_norm, &l->wq, &l->wk, &l->wv, &l->bq, &l->bk, &l->bv,
		&l->q_norm, &l->k_norm, &l->wo, &l->ffn_norm, &l->w_gate, &l->w_up,
		&l->w_down, &l->post_attn_norm, &l->post_ffn_norm, &l->ffn_gate_inp,
		&l->gate_exps, &l->up_exps, &l->down_exps,
	};
	const size_t n = sizeof(all) / sizeof(all[0]);

	_Static_assert(sizeof(all) / sizeof(all[0]) <= LAYER_TENSORS_MAX, "LAYER_TENSORS_MAX");
	memcpy(ts, all, sizeof(all));
	return n;
}

/* Binds `name` into *t.  rows == 0 means a vector of ne0 elements; a missing
 * tensor is an error unless optional.  F32 is required for vectors (norms,
 * biases), any weight type for matrices. */
static int bind_tensor(const struct gguf_ctx *g, const char *name, int64_t ne0, int64_t rows,
                       bool optional, struct eng_tensor *t)
{
	int64_t id = gguf_find_tensor(g, name);
	const struct gguf_tensor_info *ti;
	const struct gguf_type_traits *tr;
	int64_t want1 = rows ? rows : 1;

	memset(t, 0, sizeof(*t));
	if (id < 0) {
		if (optional)
			return 0;
		LOG_ERR("tensor '%s' is missing", name);
		return -EINVAL;
	}
	ti = gguf_get_tensor(g, id);
	tr = gguf_type_traits(ti->type);
	if (!tr || !tr->is_weight) {
		LOG_ERR("tensor '%s' has unsupported type %s", name, gguf_dtype_name(ti->type));
		return -EINVAL;
	}
	if (!rows && ti->type != GGUF_DTYPE_F32) {
		LOG_ERR("tensor '%s' has type %s, expected F32", name, gguf_dtype_name(ti->type));
		return -EINVAL;
	}
	if (ti->ne[0] != ne0 || ti->ne[1] != want1 || ti->ne[2] != 1 || ti->ne[3] != 1) {
		LOG_ERR("tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
		        (long long)ti->ne[0], (long long)ti->ne[1], (long long)ti->ne[2],
		        (long long)ti->ne[3], (long long)ne0, (long long)want1);
		return -EINVAL;
	}
	t->name = ti->name;
	t->type = ti->type;
	t->ne[0] = ti->ne[0];
	t->ne[1] = ti->ne[1];
	t->data = ti->data;
	t->nbytes = ti->nbytes;
	return 0;
}

/* Splits a fused tensor's view (rows stacked: a, then b, then c) into row
 * views; *t becomes the first.  The views share the fused tensor's name. */
static void split_rows(struct eng_tensor *t, struct eng_tensor *b, struct eng_tensor *c,
                       int64_t na, int64_t nb, int64_t nc)
{
	const size_t row = t->nbytes / (size_t)t->ne[1];
	struct eng_tensor all = *t;

	t->ne[1] = na;
	t->nbytes = row * (size_t)na;
	*b = all;
	b->ne[1] = nb;
	b->data = (const char *)all.data + row * (size_t)na;
	b->nbytes = row * (size_t)nb;
	if (c) {
		*c = all;
		c->ne[1] = nc;
		c->data = (const char *)all.data + row * (size_t)(na + nb);
		c->nbytes = row * (size_t)nc;
	}
}

/* Binds a stacked expert tensor [ne0, rows, n_expert]. */
static int bind_tensor3(const struct gguf_ctx *g, const char *name, int64_t ne0, int64_t rows,
                        int64_t n_exp, struct eng_tensor *t)
{
	int64_t id = gguf_find_tensor(g, name);
	const struct gguf_tensor_info *ti;
	const struct gguf_type_traits *tr;

	memset(t, 0, sizeof(*t));
	if (id < 0) {
		LOG_ERR("tensor '%s' is missing", name);
		return -EINVAL;
	}
	ti = gguf_get_tensor(g, id);
	tr = gguf_type_traits(ti->type);
	if (!tr || !tr->is_weight) {
		LOG_ERR("tensor '%s' has unsupported type %s", name, gguf_dtype_name(ti->type));
		return -EINVAL;
	}
	if (ti->ne[0] != ne0 || ti->ne[1] != rows || ti->ne[2] != n_exp || ti->ne[3] != 1) {
		LOG_ERR("tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld]", name,
		        (long long)ti->ne[0], (long long)ti->ne[1], (long long)ti->ne[2],
		        (long long)ti->ne[3], (long long)ne0, (long long)rows, (long long)n_exp);
		return -EINVAL;
	}
	t->name = ti->name;
	t->type = ti->type;
	t->ne[0] = ti->ne[0];
	t->ne[1] = ti->ne[1];
	t->ne[2] = ti->ne[2];
	t->data = ti->data;
	t->nbytes = ti->nbytes;
	return 0;
}

static int bind_experts(const struct gguf_ctx *g, const struct eng_config *c, int il,
                        struct eng_layer *l)
{
	const int64_t C = c->n_embd, E = c->n_expert, Fe = c->n_ff_exp;
	char n[4][64];
	int rc;

#define NAME(i, s) (snprintf(n[i], sizeof(n[i]), "blk.%d." s, il), n[i])
	if ((rc = bind_tensor(g, NAME(0, "ffn_gate_inp.weight"), C, E, false, &l->ffn_gate_inp)) ||
	    (rc = bind_tensor3(g, NAME(1, "ffn_gate_exps.weight"), C, Fe, E, &l->gate_exps)) ||
	    (rc = bind_tensor3(g, NAME(2, "ffn_up_exps.weight"), C, Fe, E, &l->up_exps)) ||
	    (rc = bind_tensor3(g, NAME(3, "ffn_down_exps.weight"), Fe, C, E, &l->down_exps)))
		return rc;
#undef NAME
	return 0;
}

struct eng_tensor eng_expert_view(const struct eng_tensor *t, int e)
{
	struct eng_tensor v = *t;
	const size_t per = t->nbytes / (size_t)t->ne[2];

	v.ne[2] = 0;
	v.nbytes = per;
	v.data = (const char *)t->data + per * (size_t)e;
	return v;
}

static int bind_layer(const struct gguf_ctx *g, const struct eng_config *c, int il,
                      struct eng_layer *l)
{
	const int64_t C = c->n_embd, HD = (int64_t)c->n_head * c->head_dim;
	const int64_t GD = (int64_t)c->n_head_kv * c->head_dim, F = c->n_ff, D = c->head_dim;
	const bool qk_norm = c->arch == ENG_ARCH_QWEN3 || c->arch == ENG_ARCH_GEMMA3 ||
	                     c->arch == ENG_ARCH_QWEN3MOE;
	const bool post = c->has_post_norm;
	char n[16][64];
	int rc;

#define NAME(i, s) (snprintf(n[i], sizeof(n[i]), "blk.%d." s, il), n[i])
	if (c->arch == ENG_ARCH_PHI3 && gguf_find_tensor(g, NAME(1, "attn_qkv.weight")) >= 0) {
		if ((rc = bind_tensor(g, n[1], C, HD + 2 * GD, false, &l->wq)))
			return rc;
		split_rows(&l->wq, &l->wk, &l->wv, HD, GD, GD);
	} else if ((rc = bind_tensor(g, NAME(1, "attn_q.weight"), C, HD, false, &l->wq)) ||
	           (rc = bind_tensor(g, NAME(2, "attn_k.weight"), C, GD, false, &l->wk)) ||
	           (rc = bind_tensor(g, NAME(3, "attn_v.weight"), C, GD, false, &l->wv))) {
		return rc;
	}
	if (c->arch == ENG_ARCH_PHI3) { /* gate and up fused: gate the first F rows (ggml_swiglu) */
		if ((rc = bind_tensor(g, NAME(12, "ffn_up.weight"), C, 2 * F, false, &l->w_gate)))
			return rc;
		split_rows(&l->w_gate, &l->w_up, NULL, F, F, 0);
	} else if (c->n_expert) {
		if ((rc = bind_experts(g, c, il, l)))
			return rc;
	} else if ((rc = bind_tensor(g, NAME(11, "ffn_gate.weight"), C, F, false, &l->w_gate)) ||
	           (rc = bind_tensor(g, NAME(12, "ffn_up.weight"), C, F, false, &l->w_up))) {
		return rc;
	}
	if ((rc = bind_tensor(g, NAME(0, "attn_norm.weight"), C, 0, false, &l->attn_norm)) ||
	    (rc = bind_tensor(g, NAME(4, "attn_q.bias"), HD, 0, true, &l->bq)) ||
	    (rc = bind_tensor(g, NAME(5, "attn_k.bias"), GD, 0, true, &l->bk)) ||
	    (rc = bind_tensor(g, NAME(6, "attn_v.bias"), GD, 0, true, &l->bv)) ||
	    (rc = bind_tensor(g, NAME(7, "attn_q_norm.weight"), D, 0, !qk_norm, &l->q_norm)) ||
	    (rc = bind_tensor(g, NAME(8, "attn_k_norm.weight"), D, 0, !qk_norm, &l->k_norm)) ||
	    (rc = bind_tensor(g, NAME(9, "attn_output.weight"), HD, C, false, &l->wo)) ||
	    (rc = bind_tensor(g, NAME(10, "ffn_norm.weight"), C, 0, false, &l->ffn_norm)) ||
	    (!c->n_expert && (rc = bind_tensor(g, NAME(13, "ffn_down.weight"), F, C, false, &l->w_down))))
		return rc;
	/* only where the architecture has them: elsewhere they stay unbound and
	 * check_all_bound refuses the file */
	if (post &&
	    ((rc = bind_tensor(g, NAME(14, "post_attention_norm.weight"), C, 0, false, &l->post_attn_norm)) ||
	     (rc = bind_tensor(g, NAME(15, "post_ffw_norm.weight"), C, 0, false, &l->post_ffn_norm))))
		return rc;
#undef NAME
	return 0;
}

/* The vocabulary size comes from the token list; with none, from the
 * embedding's row count. */
static int bind_embedding(const struct gguf_ctx *g, struct eng_config *c, struct eng_weights *w)
{
	int64_t id = gguf_find_tensor(g, "token_embd.weight");
	int64_t rows;

	if (id < 0) {
		LOG_ERR("tensor 'token_embd.weight' is missing");
		return -EINVAL;
	}
	rows = gguf_get_tensor(g, id)->ne[1];
	if (!c->n_vocab) {
		if (rows < 1 || rows > INT32_MAX) {
			LOG_ERR("tensor 'token_embd.weight' has %lld rows", (long long)rows);
			return -EINVAL;
		}
		c->n_vocab = (int)rows;
	}
	return bind_tensor(g, "token_embd.weight", c->n_embd, c->n_vocab, false, &w->tok_embd);
}

/* Every tensor of the file must have been bound: a tensor the architecture
 * does not use (MoE experts in a dense llama, a gemma projection head …)
 * means a model this code would run wrongly.  The first one is named. */
static int check_all_bound(const struct gguf_ctx *g, const struct eng_config *c,
                           const struct eng_weights *w)
{
	const int64_t n = gguf_n_tensors(g);
	char *bound = calloc((size_t)n + 1, 1);
	int rc = 0;

	if (!bound)
		return -ENOMEM;
	/* eng_weights' and eng_layer's tensors, by name (the names point into the gguf) */
	const struct eng_tensor *top[] = { &w->tok_embd, &w->output_norm, &w->output, &w->rope_freqs,
	                                   &w->rope_long, &w->rope_short };
	for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
		if (top[i]->data)
			bound[gguf_find_tensor(g, top[i]->name)] = 1;
	for (int il = 0; il < c->n_layer; il++) {
		const struct eng_tensor *lt[LAYER_TENSORS_MAX];
		const size_t nt = layer_tensors(&w->layers[il], lt);
		for (size_t i = 0; i < nt; i++)
			if (lt[i]->data)
				bound[gguf_find_tensor(g, lt[i]->name)] = 1;
	}
	for (int64_t id = 0; id < n; id++) {
		if (!bound[id]) {
			LOG_ERR("tensor '%s' is not used by architecture '%s': refusing a model it would run wrongly",
			        gguf_get_tensor(g, id)->name, arch_names[c->arch]);
			rc = -EINVAL;
			break;
		}
	}
	free(bound);
	return rc;
}

int eng_model_bind(const struct gguf_ctx *g, struct eng_config *cfg, struct eng_weights *w)
{
	int rc;

	memset(w, 0, sizeof(*w));
	rc = read_config(g, cfg);
	if (rc)
		goto fail;
	rc = bind_embedding(g, cfg, w);
	if (rc)
		goto fail;
	if ((rc = bind_tensor(g, "output_norm.weight", cfg->n_embd, 0, false, &w->output_norm)) ||
	    (rc = bind_tensor(g, "output.weight", cfg->n_embd, cfg->n_vocab, true, &w->output)) ||
	    (rc = bind_tensor(g, "rope_freqs.weight", cfg->n_rot / 2, 0, true, &w->rope_freqs)))
		goto fail;
	if (cfg->arch == ENG_ARCH_PHI3 &&
	    ((rc = bind_tensor(g, "rope_factors_long.weight", cfg->n_rot / 2, 0, true, &w->rope_long)) ||
	     (rc = bind_tensor(g, "rope_factors_short.weight", cfg->n_rot / 2, 0, true, &w->rope_short))))
		goto fail;
	cfg->tied_output = w->output.data == NULL;
	if (cfg->tied_output)
		w->output = w->tok_embd;
	w->layers = calloc((size_t)cfg->n_layer, sizeof(*w->layers));
	if (!w->layers) {
		rc = -ENOMEM;
		goto fail;
	}
	for (int il = 0; il < cfg->n_layer; il++) {
		rc = bind_layer(g, cfg, il, &w->layers[il]);
		if (rc)
			goto fail;
		/* Flags say whether any layer has the optional tensors. */
		cfg->has_qkv_bias |= w->layers[il].bq.data || w->layers[il].bk.data ||
		                     w->layers[il].bv.data;
		cfg->has_qk_norm |= w->layers[il].q_norm.data != NULL;
	}
	if (is_gemma(cfg->arch) && (rc = read_swa_layers(g, cfg, w->layers)))
		goto fail;
	cfg->n_layer_swa = 0;
	for (int il = 0; il < cfg->n_layer; il++)
		cfg->n_layer_swa += w->layers[il].swa;
	rc = check_all_bound(g, cfg, w);
	if (rc)
		goto fail;
	return 0;
fail:
	eng_weights_free(w);
	return rc;
}

const float *eng_rope_factors(const struct eng_config *cfg, const struct eng_weights *w, int max_ctx)
{
	if (w->rope_freqs.data)
		return w->rope_freqs.data;
	if (max_ctx > cfg->n_ctx_orig && w->rope_long.data)
		return w->rope_long.data;
	return w->rope_short.data;
}

void eng_weights_free(struct eng_weights *w)
{
	if (!w)
		return;
	free(w->layers);
	memset(w, 0, sizeof(*w));
}

// ---- sizes

static uint64_t tensor_params(const struct eng_tensor *t)
{
	return t->data ? (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)(t->ne[2] ? t->ne[2] : 1) : 0;
}

static uint64_t tensor_bytes(const struct eng_tensor *t)
{
	return t->data ? t->nbytes : 0;
}

/* The unchosen experts' share of a stacked expert tensor's f (0 when dense). */
static uint64_t unused_experts(const struct eng_config *cfg, const struct eng_weights *w,
                               uint64_t (*f)(const struct eng_tensor *))
{
	uint64_t s = 0;

	for (int il = 0; il < cfg->n_layer && w->layers && cfg->n_expert; il++) {
		const struct eng_layer *l = &w->layers[il];
		const struct eng_tensor *ts[] = { &l->gate_exps, &l->up_exps, &l->down_exps };
		for (int i = 0; i < 3; i++)
			s += f(ts[i]) / (uint64_t)cfg->n_expert * (uint64_t)(cfg->n_expert - cfg->n_expert_used);
	}
	return s;
}

uint64_t eng_weights_n_active_params(const struct eng_config *cfg, const struct eng_weights *w)
{
	return eng_weights_n_params(cfg, w) - unused_experts(cfg, w, tensor_params);
}


/* Sums f over every layer tensor. */
static uint64_t layers_sum(const struct eng_config *cfg, const struct eng_weights *w,
                           uint64_t (*f)(const struct eng_tensor *))
{
	uint64_t s = 0;

	for (int il = 0; il < cfg->n_layer && w->layers; il++) {
		const struct eng_tensor *ts[LAYER_TENSORS_MAX];
		const size_t nt = layer_tensors(&w->layers[il], ts);
		for (size_t i = 0; i < nt; i++)
			s += f(ts[i]);
	}
	return s;
}

uint64_t eng_weights_n_params(const struct eng_config *cfg, const struct eng_weights *w)
{
	uint64_t s = layers_sum(cfg, w, tensor_params);

	s += tensor_params(&w->tok_embd) + tensor_params(&w->output_norm) +
	     tensor_params(&w->rope_freqs);
	if (!cfg->tied_output)
		s += tensor_params(&w->output);
	return s;
}

uint64_t eng_weights_nbytes(const struct eng_config *cfg, const struct eng_weights *w)
{
	uint64_t s = layers_sum(cfg, w, tensor_bytes);

	s += tensor_bytes(&w->tok_embd) + tensor_bytes(&w->output_norm) +
	     tensor_bytes(&w->rope_freqs);
	if (!cfg->tied_output)
		s += tensor_bytes(&w->output);
	return s;
}

uint64_t eng_weights_bytes_per_token(const struct eng_config *cfg, const struct eng_weights *w)
{
	/* Every layer tensor and the LM head are read whole; of the embedding
	 * only one row (when untied). */
	uint64_t s = layers_sum(cfg, w, tensor_bytes);

	s += tensor_bytes(&w->output_norm) + tensor_bytes(&w->output);
	s -= unused_experts(cfg, w, tensor_bytes);
	if (!cfg->tied_output && w->tok_embd.data && w->tok_embd.ne[1] > 0)
		s += w->tok_embd.nbytes / (uint64_t)w->tok_embd.ne[1];
	return s;
}
