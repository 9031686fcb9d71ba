/*
 * synth_presets.c — the built-in model shapes of `promptfs synth --preset`:
 * the published configs of the models people run, each in every file type
 * of synth_ftype_suffixes ("qwen2.5-7b-instruct-q4_k_m", "…-f16", …), the
 * types chosen as llama.cpp's llama-quantize chooses them (synth_mix.c).
 *
 * Sources of the shapes (config.json of each model on Hugging Face):
 *   Qwen2.5-{0.5,1.5,3,7,14,32,72}B-Instruct  qwen2: QKV biases, NeoX RoPE
 *     base 1e6, rms eps 1e-6, context 32768; tied embeddings up to 3B;
 *     vocabulary 151936 (0.5-3B) or 152064 (7B+: the tokenizer's 151665
 *     tokens padded, as convert_hf_to_gguf pads them with [PADn]);
 *   Llama-3.1-8B-Instruct  llama: base 5e5, rms eps 1e-5, context 131072,
 *     RoPE scaling "llama3" (factor 8, low/high frequency factors 1/4,
 *     original context 8192) written as convert_hf_to_gguf writes it: the
 *     rope_freqs.weight tensor of per-frequency divisors, no scaling keys;
 *   Qwen3-30B-A3B (qwen3moe) and a small Mixtral-shaped llama (see below).
 * Tokenizers are copied from shared/models/vocab/; the 0.5B layout follows
 * the published Qwen2.5-0.5B-Instruct GGUFs (name-ordered layers, see
 * name_order in synth_internal.h), the others this llama.cpp's order.
 */
#include "synth_internal.h"

#include "../gguf/log.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	KEY_HEAD_DIMS = 1 << 0, /* attention.key_length / value_length */
	KEY_LLAMA = 1 << 1,     /* vocab_size and rope.dimension_count (convert's LlamaModel) */
	KEY_NO_BOS = 1 << 2,    /* tokenizer.ggml.add_bos_token = false (Qwen) */
};

struct model {
	const char *name, *title, *arch, *vocab;
	int L, C, H, G, D, F, V, ctx;
	int E, K, Fe;     /* experts, used per token, expert width (E = 0: dense) */
	float rope_base, eps;
	bool tied, qkv_bias, qk_norm, name_order;
	float llama3_rope; /* Llama 3.1 RoPE scaling factor (rope_freqs.weight), 0: none */
	int eos;           /* -1: the vocabulary's */
	int keys;          /* KEY_* */
	const char *chat_template; /* NULL: the vocabulary's */
};

/* Meta-Llama-3-Instruct's template (the Llama 3.1 one adds tool calls
 * around the same turns). */
static const char llama3_template[] =
	"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
	"'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
	"'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
	"{{ content }}{% endfor %}{% if add_generation_prompt %}"
	"{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

#define QWEN2(n, t, l, c, h, g, f, v, tie, order)                                                         \
	{ .name = n, .title = t, .arch = "qwen2", .vocab = "ggml-vocab-qwen2.gguf", .L = l, .C = c, .H = h,   \
	  .G = g, .D = (c) / (h), .F = f, .V = v, .ctx = 32768, .rope_base = 1e6f, .eps = 1e-6f, .tied = tie, \
	  .qkv_bias = true, .name_order = order, .eos = 151645, .keys = KEY_NO_BOS }

static const struct model models[] = {
	QWEN2("qwen2.5-0.5b-instruct", "Qwen2.5 0.5B Instruct", 24, 896, 14, 2, 4864, 151936, true, true),
	QWEN2("qwen2.5-1.5b-instruct", "Qwen2.5 1.5B Instruct", 28, 1536, 12, 2, 8960, 151936, true, false),
	QWEN2("qwen2.5-3b-instruct", "Qwen2.5 3B Instruct", 36, 2048, 16, 2, 11008, 151936, true, false),
	QWEN2("qwen2.5-7b-instruct", "Qwen2.5 7B Instruct", 28, 3584, 28, 4, 18944, 152064, false, false),
	QWEN2("qwen2.5-14b-instruct", "Qwen2.5 14B Instruct", 48, 5120, 40, 8, 13824, 152064, false, false),
	QWEN2("qwen2.5-32b-instruct", "Qwen2.5 32B Instruct", 64, 5120, 40, 8, 27648, 152064, false, false),
	QWEN2("qwen2.5-72b-instruct", "Qwen2.5 72B Instruct", 80, 8192, 64, 8, 29568, 152064, false, false),
	{ .name = "llama-3.1-8b-instruct", .title = "Llama 3.1 8B Instruct", .arch = "llama",
	  .vocab = "ggml-vocab-llama-bpe.gguf", .L = 32, .C = 4096, .H = 32, .G = 8, .D = 128, .F = 14336,
	  .V = 128256, .ctx = 131072, .rope_base = 500000.0f, .eps = 1e-5f, .llama3_rope = 8.0f, .eos = 128009,
	  .keys = KEY_LLAMA, .chat_template = llama3_template },
	/* Qwen3-30B-A3B: 48 layers, 2048 wide, 32/4 heads of 128, 128
	 * experts of 768 with 8 per token, Q/K norms, untied head. */
	{ .name = "qwen3-30b-a3b", .title = "Qwen3 30B A3B", .arch = "qwen3moe", .vocab = "ggml-vocab-qwen2.gguf",
	  .L = 48, .C = 2048, .H = 32, .G = 4, .D = 128, .F = 6144, .V = 151936, .ctx = 40960, .E = 128, .K = 8,
	  .Fe = 768, .rope_base = 1000000.0f, .eps = 1e-6f, .qk_norm = true, .eos = 151645, .keys = KEY_HEAD_DIMS },
	/* a small Mixtral: 8 layers, 1024 wide, 16/4 heads of 64, 8 experts
	 * of 3584 with 2 per token, the Llama 2 SentencePiece vocabulary */
	{ .name = "mixtral-small", .title = "Mixtral-shaped 8x small", .arch = "llama",
	  .vocab = "ggml-vocab-llama-spm.gguf", .L = 8, .C = 1024, .H = 16, .G = 4, .D = 64, .F = 3584, .V = 32000,
	  .ctx = 32768, .E = 8, .K = 2, .Fe = 3584, .rope_base = 1000000.0f, .eps = 1e-5f, .eos = -1,
	  .keys = KEY_HEAD_DIMS },
	/* for the GPU's whole-model checks (tests/gpu/run.sh moe): two of
	 * Qwen3-30B-A3B's layers (its routing: 128 experts, 8 per token), and
	 * mini models of both families that fit F32 (--type f32) */
	{ .name = "qwen3-30b-a3b-2l", .title = "Qwen3 30B A3B, 2 layers", .arch = "qwen3moe",
	  .vocab = "ggml-vocab-qwen2.gguf", .L = 2, .C = 2048, .H = 32, .G = 4, .D = 128, .F = 6144, .V = 151936,
	  .ctx = 40960, .E = 128, .K = 8, .Fe = 768, .rope_base = 1000000.0f, .eps = 1e-6f, .qk_norm = true,
	  .eos = 151645, .keys = KEY_HEAD_DIMS },
	{ .name = "qwen3moe-mini", .title = "Qwen3 MoE layout, mini", .arch = "qwen3moe",
	  .vocab = "ggml-vocab-qwen2.gguf", .L = 2, .C = 512, .H = 8, .G = 2, .D = 64, .F = 1536, .V = 151936,
	  .ctx = 40960, .E = 128, .K = 8, .Fe = 256, .rope_base = 1000000.0f, .eps = 1e-6f, .qk_norm = true,
	  .eos = 151645, .keys = KEY_HEAD_DIMS },
	{ .name = "mixtral-mini", .title = "Mixtral layout, mini", .arch = "llama",
	  .vocab = "ggml-vocab-llama-spm.gguf", .L = 2, .C = 512, .H = 8, .G = 2, .D = 64, .F = 1024, .V = 32000,
	  .ctx = 32768, .E = 8, .K = 2, .Fe = 1024, .rope_base = 1000000.0f, .eps = 1e-5f, .eos = -1,
	  .keys = KEY_HEAD_DIMS },
};
#define N_MODELS ((int)(sizeof(models) / sizeof(models[0])))

static int n_suffixes(void)
{
	int n = 0;

	while (synth_ftype_suffixes[n])
		n++;
	return n;
}

int synth_preset_count(void) { return N_MODELS * n_suffixes(); }

int synth_preset_name(int i, char *buf, size_t size)
{
	int ns = n_suffixes();

	if (i < 0 || i >= N_MODELS * ns)
		return -EINVAL;
	snprintf(buf, size, "%s-%s", models[i / ns].name, synth_ftype_suffixes[i % ns]);
	return 0;
}

// ---- tensors

/* Llama 3.1's rope_freqs: the divisor of each rotary frequency, computed
 * as convert_hf_to_gguf does (float32 arithmetic). */
static float *llama3_rope_factors(const struct model *m)
{
	const int n = m->D / 2;
	const float orig_ctx = 8192.0f, lo = 1.0f, hi = 4.0f;
	float *f = malloc(sizeof(float) * (size_t)n);

	for (int i = 0; f && i < n; i++) {
		float freq = 1.0f / powf(m->rope_base, (float)(2 * i) / (float)m->D);
		float wavelen = 2.0f * (float)M_PI / freq;
		if (wavelen < orig_ctx / hi) {
			f[i] = 1.0f;
		} else if (wavelen > orig_ctx / lo) {
			f[i] = m->llama3_rope;
		} else {
			float smooth = (orig_ctx / wavelen - lo) / (hi - lo);
			f[i] = 1.0f / ((1.0f - smooth) / m->llama3_rope + smooth);
		}
	}
	return f;
}

/* One layer's tensors, in the order converted files have them. */
static int plan_layer(struct synth_plan *p, const struct model *m, int i)
{
	const int HD = m->H * m->D, GD = m->G * m->D;
	const enum gguf_dtype f16 = GGUF_DTYPE_F16, f32 = GGUF_DTYPE_F32;
	char n[GGUF_MAX_NAME];
	int err = 0;

#define ADD(suffix, type, nd, a, b, c) \
	(snprintf(n, sizeof(n), "blk.%d.%s", i, suffix), err = err ? err : synth_plan_add(p, n, type, nd, a, b, c))
	ADD("attn_norm.weight", f32, 1, m->C, 1, 1);
	if (!m->E) {
		ADD("ffn_down.weight", f16, 2, m->F, m->C, 1);
		ADD("ffn_gate.weight", f16, 2, m->C, m->F, 1);
		ADD("ffn_up.weight", f16, 2, m->C, m->F, 1);
		ADD("ffn_norm.weight", f32, 1, m->C, 1, 1);
		if (m->qkv_bias)
			ADD("attn_k.bias", f32, 1, GD, 1, 1);
		ADD("attn_k.weight", f16, 2, m->C, GD, 1);
		ADD("attn_output.weight", f16, 2, HD, m->C, 1);
		if (m->qkv_bias)
			ADD("attn_q.bias", f32, 1, HD, 1, 1);
		ADD("attn_q.weight", f16, 2, m->C, HD, 1);
		if (m->qkv_bias)
			ADD("attn_v.bias", f32, 1, GD, 1, 1);
		ADD("attn_v.weight", f16, 2, m->C, GD, 1);
		return err;
	}
	ADD("attn_q.weight", f16, 2, m->C, HD, 1);
	ADD("attn_k.weight", f16, 2, m->C, GD, 1);
	ADD("attn_v.weight", f16, 2, m->C, GD, 1);
	ADD("attn_output.weight", f16, 2, HD, m->C, 1);
	if (m->qk_norm) {
		ADD("attn_q_norm.weight", f32, 1, m->D, 1, 1);
		ADD("attn_k_norm.weight", f32, 1, m->D, 1, 1);
	}
	ADD("ffn_norm.weight", f32, 1, m->C, 1, 1);
	ADD("ffn_gate_inp.weight", f32, 2, m->C, m->E, 1);
	ADD("ffn_gate_exps.weight", f16, 3, m->C, m->Fe, m->E);
	ADD("ffn_up_exps.weight", f16, 3, m->C, m->Fe, m->E);
	ADD("ffn_down_exps.weight", f16, 3, m->Fe, m->C, m->E);
#undef ADD
	return err;
}

/* The tensor table as convert_hf_to_gguf writes it (F16 matrices, F32
 * vectors and router); synth_mix_apply() then gives the file type's mix. */
static int plan_model(struct synth_plan *p, const struct model *m)
{
	int *order = malloc(sizeof(int) * (size_t)m->L), err = 0;
	char a[16], b[16];

	if (!order)
		return -ENOMEM;
	for (int i = 0; i < m->L; i++)
		order[i] = i;
	for (int i = 1; m->name_order && i < m->L; i++) /* layers in name order: insertion sort */
		for (int j = i; j > 0; j--) {
			snprintf(a, sizeof(a), "%d", order[j - 1]);
			snprintf(b, sizeof(b), "%d", order[j]);
			if (strcmp(a, b) <= 0)
				break;
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	if (m->llama3_rope > 0.0f) {
		float *f = llama3_rope_factors(m);
		if (!f || (err = synth_plan_add(p, "rope_freqs.weight", GGUF_DTYPE_F32, 1, m->D / 2, 1, 1))) {
			free(f);
			err = err ? err : -ENOMEM;
		} else {
			p->t[p->n - 1].values = f; /* owned by the plan */
		}
	}
	if (!err)
		err = synth_plan_add(p, "token_embd.weight", GGUF_DTYPE_F16, 2, m->C, m->V, 1);
	for (int k = 0; k < m->L && !err; k++)
		err = plan_layer(p, m, order[k]);
	if (!err && !m->tied)
		err = synth_plan_add(p, "output.weight", GGUF_DTYPE_F16, 2, m->C, m->V, 1);
	if (!err)
		err = synth_plan_add(p, "output_norm.weight", GGUF_DTYPE_F32, 1, m->C, 1, 1);
	free(order);
	return err;
}

// ---- metadata

bool synth_skip_non_tokenizer(const char *key, void *user)
{
	(void)user;
	return strncmp(key, "tokenizer.", 10) != 0;
}

/* The places a checkout keeps shared/models/vocab/<file>. */
int synth_find_vocab(const char *given, const char *file, char *path, size_t size)
{
	char rel[128], exe[PATH_MAX], exe_a[PATH_MAX + 16], exe_b[PATH_MAX + 16];
	const char *dirs[6] = { getenv("PROMPTFS_SHARED"), "shared", "../shared", "../../shared", NULL, NULL };
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (given) {
		snprintf(path, size, "%s", given);
		return 0;
	}
	snprintf(rel, sizeof(rel), "models/vocab/%s", file);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		snprintf(exe_a, sizeof(exe_a), "%s/../shared", exe);
		snprintf(exe_b, sizeof(exe_b), "%s/../../shared", exe);
		dirs[4] = exe_a;
		dirs[5] = exe_b;
	}
	for (int i = 0; i < 6; i++) {
		if (!dirs[i])
			continue;
		snprintf(path, size, "%s/%s", dirs[i], rel);
		if (access(path, R_OK) == 0)
			return 0;
	}
	LOG_ERR("cannot find %s (looked in $PROMPTFS_SHARED, ./shared, ../shared and beside the binary); pass --vocab", rel);
	return -ENOENT;
}

/* Pads the vocabulary's tokens to V with "[PADn]" entries, of the token
 * type of its last token, as convert_hf_to_gguf pads a vocabulary smaller
 * than the embedding (Qwen2.5 7B+: 152064 rows). */
static int pad_vocab(struct gguf_writer *w, const struct gguf_ctx *v, int64_t tok, int64_t V)
{
	int64_t typ = gguf_find_key(v, "tokenizer.ggml.token_type");
	uint64_t n = gguf_get_arr_n(v, tok);
	const char **strs = calloc((size_t)V, sizeof(*strs));
	int32_t *types = calloc((size_t)V, sizeof(*types));
	char (*pads)[32] = calloc((size_t)(V - (int64_t)n), sizeof(*pads));
	int err = 0;

	if (!strs || !types || !pads) {
		err = -ENOMEM;
		goto out;
	}
	if (typ < 0 || gguf_kv_type(v, typ) != GGUF_VTYPE_ARRAY || gguf_get_arr_type(v, typ) != GGUF_VTYPE_INT32 ||
	    gguf_get_arr_n(v, typ) != n || gguf_get_arr_type(v, tok) != GGUF_VTYPE_STRING) {
		LOG_ERR("the vocabulary's tokenizer.ggml.tokens / token_type arrays do not match (%llu tokens)",
			(unsigned long long)n);
		err = -EINVAL;
		goto out;
	}
	memcpy(types, gguf_get_arr_data(v, typ), sizeof(int32_t) * (size_t)n);
	for (uint64_t i = 0; i < n && !err; i++) {
		size_t len;
		strs[i] = gguf_get_arr_str(v, tok, i, &len);
		if (strlen(strs[i]) != len) {
			LOG_ERR("vocabulary token %llu contains a NUL byte", (unsigned long long)i);
			err = -EINVAL;
		}
	}
	for (int64_t i = (int64_t)n; i < V; i++) {
		snprintf(pads[i - (int64_t)n], sizeof(pads[0]), "[PAD%lld]", (long long)i);
		strs[i] = pads[i - (int64_t)n];
		types[i] = types[n - 1];
	}
	if (!err && !(err = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, (uint64_t)V)))
		err = gguf_writer_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_VTYPE_INT32, types, (uint64_t)V);
out:
	free(strs);
	free(types);
	free(pads);
	return err;
}

/* The tokenizer: every tokenizer.* key of the vocabulary file, padded to
 * V tokens when it has fewer (never more). */
static int tokenizer_kv(struct gguf_writer *w, const struct model *m, const char *vocab_path)
{
	struct gguf_ctx *v = NULL;
	int err = gguf_open(vocab_path, &v);

	if (err)
		return err;
	int64_t tok = gguf_find_key(v, "tokenizer.ggml.tokens");
	uint64_t n = tok >= 0 && gguf_kv_type(v, tok) == GGUF_VTYPE_ARRAY ? gguf_get_arr_n(v, tok) : 0;
	if (n == 0 || n > (uint64_t)m->V || (n < (uint64_t)m->V && n + 4096 < (uint64_t)m->V)) {
		LOG_ERR("%s: %llu tokens, %s wants %d (or a few hundred fewer, padded)", vocab_path,
			(unsigned long long)n, m->name, m->V);
		err = -EINVAL;
	} else if (!(err = gguf_writer_copy_kv(w, v, synth_skip_non_tokenizer, NULL)) && n < (uint64_t)m->V) {
		err = pad_vocab(w, v, tok, m->V);
	}
	gguf_free(v);
	return err;
}

static int model_kv(struct gguf_writer *w, const struct model *m, const char *preset, int ftype,
                    const char *vocab_path)
{
	char name[128], k[16][96];
	int err;

	snprintf(name, sizeof(name), "%s (synthetic %s)", m->title, preset);
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
	    ((m->keys & KEY_HEAD_DIMS) &&
	     ((err = gguf_writer_set_u32(w, KEY(6, "attention.key_length"), m->D)) ||
	      (err = gguf_writer_set_u32(w, KEY(7, "attention.value_length"), m->D)))) ||
	    (err = gguf_writer_set_f32(w, KEY(8, "rope.freq_base"), m->rope_base)) ||
	    (err = gguf_writer_set_f32(w, KEY(9, "attention.layer_norm_rms_epsilon"), m->eps)) ||
	    (m->E && ((err = gguf_writer_set_u32(w, KEY(10, "expert_count"), m->E)) ||
	              (err = gguf_writer_set_u32(w, KEY(11, "expert_used_count"), m->K)) ||
	              (err = gguf_writer_set_u32(w, KEY(12, "expert_feed_forward_length"), m->Fe)))) ||
	    ((m->keys & KEY_LLAMA) && ((err = gguf_writer_set_u32(w, KEY(13, "vocab_size"), m->V)) ||
	                               (err = gguf_writer_set_u32(w, KEY(14, "rope.dimension_count"), m->D)))) ||
	    (err = gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype)) ||
	    (err = tokenizer_kv(w, m, vocab_path)) ||
	    /* the Instruct models' ids: turns end with <|im_end|> / <|eot_id|> */
	    (m->eos >= 0 && (err = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)m->eos))) ||
	    ((m->keys & KEY_NO_BOS) && (err = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false))) ||
	    (m->chat_template && (err = gguf_writer_set_str(w, "tokenizer.chat_template", m->chat_template))) ||
	    (err = gguf_writer_set_u32(w, "general.quantization_version", 2)))
		return err;
#undef KEY
	return 0;
}

int synth_preset_plan(const char *name, const char *vocab, struct gguf_writer *w, struct synth_plan *p)
{
	char path[PATH_MAX];
	const struct model *m = NULL;
	int ftype = -1, err;

	for (int i = 0; i < N_MODELS && !m; i++) {
		size_t n = strlen(models[i].name);
		if (!strncmp(name, models[i].name, n) && name[n] == '-' && (ftype = synth_ftype_parse(name + n + 1)) > 0)
			m = &models[i];
	}
	if (!m) {
		LOG_ERR("unknown preset '%s' (promptfs synth --list-presets)", name);
		return -EINVAL;
	}
	const struct synth_mix_model mm = { .arch = m->arch, .n_layer = m->L, .n_head = m->H, .n_head_kv = m->G,
	                                    .n_expert = m->E, .name_order = m->name_order };
	if ((err = synth_find_vocab(vocab, m->vocab, path, sizeof(path))) || (err = model_kv(w, m, name, ftype, path)) ||
	    (err = plan_model(p, m)))
		return err;
	return synth_mix_apply(p, &mm, ftype);
}
