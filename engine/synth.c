/*
 * synth.c — synthetic models (see synth.h): the same tensor table and
 * metadata as a real model, random weights.
 *
 * Two sources of the tensor table:
 *  - --like REAL.gguf: every KV copied, every tensor with the same name,
 *    shape and type;
 *  - presets: llama.cpp's Qwen2.5-0.5B-Instruct layouts (below), with the
 *    tokenizer KVs copied from ggml-vocab-qwen2.gguf; mixture-of-experts
 *    shapes (Qwen3-30B-A3B, whole or 2 of its layers, and small qwen3moe /
 *    Mixtral ones) with a Q4_K_M-like mix; and the dense layouts of gemma3,
 *    gemma2, phi3 and Llama 3.1 (synth_arch.c).
 *
 * Output is streamed (gguf_writer_stream_*): each tensor is generated and
 * quantised in chunks of rows (CHUNK_BYTES of output at most), every chunk
 * split over n_threads pthreads by row range, then written.  Peak memory is
 * one chunk plus one row of floats per thread.
 *
 * Shape letters: V vocabulary, C embedding, L layers, H/G query/KV heads,
 * D head dim, F feed-forward.
 */
#include "synth.h"
#include "synth_internal.h"

#include "../gguf/gguf.h"
#include "../gguf/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK_BYTES ((size_t)32 << 20)
#define MIN_ELEMS_PER_THREAD 65536
#define WEIGHT_STD 0.02f


// ---- presets: Qwen2.5-0.5B-Instruct as llama.cpp quantises it

struct preset {
	const char *name;
	uint32_t file_type; /* llama_ftype */
	enum gguf_dtype embd, attn, v_more, v_less, ffn, down_more, down_less;
};

/* Q4_K_M: attn_v and ffn_down get more bits in "use_more_bits" layers
 * (Q6_K, which for attn_v's 896-wide rows falls back to Q8_0; else Q4_K,
 * falling back to Q5_0); q/k/o/gate/up are Q4_K → Q5_0 (896 % 256 != 0);
 * the tied embedding gets the output type Q6_K → Q8_0. */
static const struct preset presets[] = {
	{ "qwen2.5-0.5b-instruct-q4_k_m", 15, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q8_0,
	  GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q6_K, GGUF_DTYPE_Q4_K },
	{ "qwen2.5-0.5b-instruct-q8_0", 7, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q8_0,
	  GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q8_0 },
	{ "qwen2.5-0.5b-instruct-f16", 1, GGUF_DTYPE_F16, GGUF_DTYPE_F16, GGUF_DTYPE_F16,
	  GGUF_DTYPE_F16, GGUF_DTYPE_F16, GGUF_DTYPE_F16, GGUF_DTYPE_F16 },
};
#define N_PRESETS ((int)(sizeof(presets) / sizeof(presets[0])))

enum { Q_L = 24, Q_C = 896, Q_H = 14, Q_G = 2, Q_D = 64, Q_F = 4864, Q_V = 151936 };


/* llama.cpp's synth_more_bits(i, n). */
bool synth_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp counts attn_v / ffn_down tensors in file order, and converted
 * files list layers in name order (blk.0, blk.1, blk.10, …, blk.19, blk.2,
 * …): layer_order[k] is the k-th layer in that order.  The real Qwen2.5
 * Q4_K_M files bear this out (Q8_0 attn_v in layers 0,1,3,6-10,13,16,19,21). */
static void lexicographic_layers(int n, int *layer_order)
{
	char a[16], b[16];

	for (int i = 0; i < n; i++)
		layer_order[i] = i;
	for (int i = 1; i < n; i++) /* insertion sort by decimal string */
		for (int j = i; j > 0; j--) {
			snprintf(a, sizeof(a), "%d", layer_order[j - 1]);
			snprintf(b, sizeof(b), "%d", layer_order[j]);
			if (strcmp(a, b) <= 0)
				break;
			int t = layer_order[j];
			layer_order[j] = layer_order[j - 1];
			layer_order[j - 1] = t;
		}
}

int synth_plan_add(struct synth_plan *p, const char *name, enum gguf_dtype type, int n_dims,
		    int64_t ne0, int64_t ne1)
{
	if (p->n == p->cap) {
		int cap = p->cap ? p->cap * 2 : 512;
		struct synth_tensor *t = realloc(p->t, (size_t)cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		p->t = t;
		p->cap = cap;
	}
	struct synth_tensor *t = &p->t[p->n++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->type = type;
	t->n_dims = n_dims;
	t->ne[0] = ne0;
	t->ne[1] = n_dims > 1 ? ne1 : 1;
	t->ne[2] = t->ne[3] = 1;
	return 0;
}

static int plan_preset(struct synth_plan *p, const struct preset *ps)
{
	int order[Q_L], err = synth_plan_add(p, "token_embd.weight", ps->embd, 2, Q_C, Q_V);
	char n[GGUF_MAX_NAME];

	lexicographic_layers(Q_L, order);
	for (int k = 0; k < Q_L && !err; k++) {
		int i = order[k];
		bool more = synth_more_bits(k, Q_L);
#define ADD(suffix, type, nd, a, b) \
	(snprintf(n, sizeof(n), "blk.%d.%s", i, suffix), err = err ? err : synth_plan_add(p, n, type, nd, a, b))
		ADD("attn_norm.weight", GGUF_DTYPE_F32, 1, Q_C, 1);
		ADD("ffn_down.weight", more ? ps->down_more : ps->down_less, 2, Q_F, Q_C);
		ADD("ffn_gate.weight", ps->ffn, 2, Q_C, Q_F);
		ADD("ffn_up.weight", ps->ffn, 2, Q_C, Q_F);
		ADD("ffn_norm.weight", GGUF_DTYPE_F32, 1, Q_C, 1);
		ADD("attn_k.bias", GGUF_DTYPE_F32, 1, Q_G * Q_D, 1);
		ADD("attn_k.weight", ps->attn, 2, Q_C, Q_G * Q_D);
		ADD("attn_output.weight", ps->attn, 2, Q_H * Q_D, Q_C);
		ADD("attn_q.bias", GGUF_DTYPE_F32, 1, Q_H * Q_D, 1);
		ADD("attn_q.weight", ps->attn, 2, Q_C, Q_H * Q_D);
		ADD("attn_v.bias", GGUF_DTYPE_F32, 1, Q_G * Q_D, 1);
		ADD("attn_v.weight", more ? ps->v_more : ps->v_less, 2, Q_C, Q_G * Q_D);
#undef ADD
	}
	return err ? err : synth_plan_add(p, "output_norm.weight", GGUF_DTYPE_F32, 1, Q_C, 1);
}

bool synth_skip_non_tokenizer(const char *key, void *user)
{
	(void)user;
	return strncmp(key, "tokenizer.", 10) != 0;
}

/* The places a checkout keeps shared/models/vocab/<file>. */
int synth_find_vocab(const char *given, const char *file, char *path, size_t size)
{
	char rel[128];
	const char *env = getenv("PROMPTFS_SHARED");
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *dirs[6] = { env, "shared", "../shared", "../../shared", NULL, NULL };
	char exe_a[PATH_MAX + 16], exe_b[PATH_MAX + 16];

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

static int preset_kv(struct gguf_writer *w, const struct preset *ps, const char *vocab_path)
{
	struct gguf_ctx *v = NULL;
	char name[128];
	int err = gguf_open(vocab_path, &v);

	if (err)
		return err;
	snprintf(name, sizeof(name), "Qwen2.5 0.5B Instruct (synthetic %s)", ps->name);
	if ((err = gguf_writer_set_str(w, "general.architecture", "qwen2")) ||
	    (err = gguf_writer_set_str(w, "general.type", "model")) ||
	    (err = gguf_writer_set_str(w, "general.name", name)) ||
	    (err = gguf_writer_set_u32(w, "qwen2.block_count", Q_L)) ||
	    (err = gguf_writer_set_u32(w, "qwen2.context_length", 32768)) ||
	    (err = gguf_writer_set_u32(w, "qwen2.embedding_length", Q_C)) ||
	    (err = gguf_writer_set_u32(w, "qwen2.feed_forward_length", Q_F)) ||
	    (err = gguf_writer_set_u32(w, "qwen2.attention.head_count", Q_H)) ||
	    (err = gguf_writer_set_u32(w, "qwen2.attention.head_count_kv", Q_G)) ||
	    (err = gguf_writer_set_f32(w, "qwen2.rope.freq_base", 1000000.0f)) ||
	    (err = gguf_writer_set_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f)) ||
	    (err = gguf_writer_set_u32(w, "general.file_type", ps->file_type)) ||
	    (err = gguf_writer_copy_kv(w, v, synth_skip_non_tokenizer, NULL)) ||
	    /* the Instruct model's ids: ends turns with <|im_end|>, no BOS */
	    (err = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 151645)) ||
	    (err = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false)) ||
	    (err = gguf_writer_set_u32(w, "general.quantization_version", 2)))
		goto out_vocab;
	int64_t tok = gguf_find_key(v, "tokenizer.ggml.tokens");
	if (tok < 0 || gguf_kv_type(v, tok) != GGUF_VTYPE_ARRAY || gguf_get_arr_n(v, tok) != Q_V) {
		LOG_ERR("%s: expected a %d-token qwen2 vocabulary", vocab_path, Q_V);
		err = -EINVAL;
	}
out_vocab:
	gguf_free(v);
	return err;
}

// ---- --like: the source's own table

/* llama.cpp's fallback when rows do not split into a type's blocks. */
enum gguf_dtype synth_fit_type(enum gguf_dtype t, int64_t ne0)
{
	if (ne0 % gguf_type_traits(t)->blck_size == 0)
		return t;
	switch (t) {
	case GGUF_DTYPE_Q2_K: case GGUF_DTYPE_Q3_K: t = GGUF_DTYPE_Q4_0; break;
	case GGUF_DTYPE_Q4_K: t = GGUF_DTYPE_Q5_0; break;
	case GGUF_DTYPE_Q5_K: t = GGUF_DTYPE_Q5_1; break;
	default: t = GGUF_DTYPE_Q8_0; break;
	}
	return ne0 % gguf_type_traits(t)->blck_size == 0 ? t : GGUF_DTYPE_F16;
}

static int plan_like(struct synth_plan *p, const struct gguf_ctx *src, int force)
{
	for (int64_t i = 0; i < gguf_n_tensors(src); i++) {
		const struct gguf_tensor_info *s = gguf_get_tensor(src, i);
		int err = synth_plan_add(p, s->name, s->type, s->n_dims, s->ne[0], s->ne[1]);
		if (err)
			return err;
		struct synth_tensor *t = &p->t[p->n - 1];
		memcpy(t->ne, s->ne, sizeof(t->ne));
		if (force >= 0 && s->n_dims >= 2)
			t->type = synth_fit_type((enum gguf_dtype)force, s->ne[0]);
	}
	return 0;
}

/* Value distribution from the tensor's role. */
static void set_distributions(struct synth_plan *p)
{
	for (int i = 0; i < p->n; i++) {
		struct synth_tensor *t = &p->t[i];
		t->mean = 0.0f;
		t->std = WEIGHT_STD;
		if (strstr(t->name, "norm")) {
			t->mean = 1.0f;
		} else if (strstr(t->name, "rope_freqs")) {
			t->mean = 1.0f;
			t->std = 0.0f;
		}
	}
}

// ---- presets: mixture-of-experts shapes

/* The published shapes of Qwen3-30B-A3B (config.json: 48 layers, 2048 wide,
 * 32/4 heads of 128, 128 experts of 768, 8 per token, untied head) and a
 * small Mixtral-shaped model (8 experts, 2 per token, the Llama 2
 * SentencePiece vocabulary).  Types follow llama.cpp's Q4_K_M rules in
 * outline: Q4_K matrices, Q6_K for attn_v and ffn_down(_exps) in the
 * use_more_bits layers, Q6_K output, F32 norms and router; not byte-exact
 * with a file llama.cpp would write. */
struct moe_preset {
	const char *name, *arch, *title, *vocab;
	int L, C, H, G, D, F, E, K, Fe, V, ctx;
	float rope_base, eps;
	bool qk_norm;
	int eos; /* -1: the vocabulary's */
};

static const struct moe_preset moe_presets[] = {
	{ "qwen3-30b-a3b-q4_k_m", "qwen3moe", "Qwen3 30B A3B", "ggml-vocab-qwen2.gguf",
	  48, 2048, 32, 4, 128, 6144, 128, 8, 768, 151936, 40960, 1000000.0f, 1e-6f, true, 151645 },
	{ "mixtral-small-q4_k_m", "llama", "Mixtral-shaped 8x small", "ggml-vocab-llama-spm.gguf",
	  8, 1024, 16, 4, 64, 3584, 8, 2, 3584, 32000, 32768, 1000000.0f, 1e-5f, false, -1 },
	/* for the GPU's whole-model checks: two of Qwen3-30B-A3B's layers (its
	 * routing: 128 experts, 8 per token), and small models of both families
	 * that fit F32 (--type F32: no activation rounding on either side) */
	{ "qwen3-30b-a3b-2l-q4_k_m", "qwen3moe", "Qwen3 30B A3B, 2 layers", "ggml-vocab-qwen2.gguf",
	  2, 2048, 32, 4, 128, 6144, 128, 8, 768, 151936, 40960, 1000000.0f, 1e-6f, true, 151645 },
	{ "qwen3moe-mini-q4_k_m", "qwen3moe", "Qwen3 MoE layout, mini", "ggml-vocab-qwen2.gguf",
	  2, 512, 8, 2, 64, 1536, 128, 8, 256, 151936, 40960, 1000000.0f, 1e-6f, true, 151645 },
	{ "mixtral-mini-q4_k_m", "llama", "Mixtral layout, mini", "ggml-vocab-llama-spm.gguf",
	  2, 512, 8, 2, 64, 1024, 8, 2, 1024, 32000, 32768, 1000000.0f, 1e-5f, false, -1 },
};
#define N_MOE ((int)(sizeof(moe_presets) / sizeof(moe_presets[0])))

static int moe_kv(struct gguf_writer *w, const struct moe_preset *m, const char *vocab_path)
{
	struct gguf_ctx *v = NULL;
	char name[128], k[16][96];
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
	    (err = gguf_writer_set_u32(w, KEY(10, "expert_count"), m->E)) ||
	    (err = gguf_writer_set_u32(w, KEY(11, "expert_used_count"), m->K)) ||
	    (err = gguf_writer_set_u32(w, KEY(12, "expert_feed_forward_length"), m->Fe)) ||
	    (err = gguf_writer_set_u32(w, "general.file_type", 15)) ||
	    (err = gguf_writer_copy_kv(w, v, synth_skip_non_tokenizer, NULL)) ||
	    (m->eos >= 0 && (err = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)m->eos))) ||
	    (err = gguf_writer_set_u32(w, "general.quantization_version", 2)))
		goto out_vocab;
#undef KEY
	int64_t tok = gguf_find_key(v, "tokenizer.ggml.tokens");
	if (tok < 0 || gguf_kv_type(v, tok) != GGUF_VTYPE_ARRAY || gguf_get_arr_n(v, tok) != (uint64_t)m->V) {
		LOG_ERR("%s: expected a %d-token vocabulary", vocab_path, m->V);
		err = -EINVAL;
	}
out_vocab:
	gguf_free(v);
	return err;
}

static int plan_add3(struct synth_plan *p, const char *name, enum gguf_dtype type, int64_t ne0,
                     int64_t ne1, int64_t ne2)
{
	int err = synth_plan_add(p, name, type, 3, ne0, ne1);

	if (!err)
		p->t[p->n - 1].ne[2] = ne2;
	return err;
}

static int plan_moe(struct synth_plan *p, const struct moe_preset *m)
{
	const enum gguf_dtype q4 = GGUF_DTYPE_Q4_K, q6 = GGUF_DTYPE_Q6_K, f32 = GGUF_DTYPE_F32;
	const int HD = m->H * m->D, GD = m->G * m->D;
	int err = synth_plan_add(p, "token_embd.weight", synth_fit_type(q4, m->C), 2, m->C, m->V);
	char n[GGUF_MAX_NAME];

	for (int i = 0; i < m->L && !err; i++) {
		const enum gguf_dtype more = synth_more_bits(i, m->L) ? q6 : q4;
#define ADD(suffix, type, nd, a, b) \
	(snprintf(n, sizeof(n), "blk.%d.%s", i, suffix), err = err ? err : synth_plan_add(p, n, synth_fit_type(type, a), nd, a, b))
#define ADD3(suffix, type, a, b) \
	(snprintf(n, sizeof(n), "blk.%d.%s", i, suffix), err = err ? err : plan_add3(p, n, synth_fit_type(type, a), a, b, m->E))
		ADD("attn_norm.weight", f32, 1, m->C, 1);
		ADD("attn_q.weight", q4, 2, m->C, HD);
		ADD("attn_k.weight", q4, 2, m->C, GD);
		ADD("attn_v.weight", more, 2, m->C, GD);
		ADD("attn_output.weight", q4, 2, HD, m->C);
		if (m->qk_norm) {
			ADD("attn_q_norm.weight", f32, 1, m->D, 1);
			ADD("attn_k_norm.weight", f32, 1, m->D, 1);
		}
		ADD("ffn_norm.weight", f32, 1, m->C, 1);
		ADD("ffn_gate_inp.weight", f32, 2, m->C, m->E);
		ADD3("ffn_gate_exps.weight", q4, m->C, m->Fe);
		ADD3("ffn_up_exps.weight", q4, m->C, m->Fe);
		ADD3("ffn_down_exps.weight", more, m->Fe, m->C);
#undef ADD
#undef ADD3
	}
	if (!err)
		err = synth_plan_add(p, "output.weight", synth_fit_type(q6, m->C), 2, m->C, m->V);
	return err ? err : synth_plan_add(p, "output_norm.weight", GGUF_DTYPE_F32, 1, m->C, 1);
}

const char *const *eng_synth_presets(void)
{
	static const char *names[N_PRESETS + N_MOE + 16 + 1];
	int n = 0;

	for (int i = 0; i < N_PRESETS; i++)
		names[n++] = presets[i].name;
	for (int i = 0; i < N_MOE; i++)
		names[n++] = moe_presets[i].name;
	for (int i = 0; synth_arch_preset_name(i) && n < N_PRESETS + N_MOE + 16; i++)
		names[n++] = synth_arch_preset_name(i);
	names[n] = NULL;
	return names;
}

// ---- generation

struct gen_job {
	const struct synth_tensor *t;
	uint64_t seed;   /* per tensor */
	int64_t r0, r1;  /* rows of the tensor this job fills */
	int64_t base;    /* first row of the chunk (row r goes to out + (r - base) * row_bytes) */
	uint8_t *out;
	size_t row_bytes;
	int err;
};

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* x[n] ~ mean + std * N(0,1), the normal approximated by the sum of four
 * 16-bit uniforms (Irwin-Hall, variance 1/3, rescaled): one 64-bit draw
 * per value, which keeps generation well under the quantisers' cost. */
static void fill_row(float *x, int64_t n, uint64_t state, float mean, float std)
{
	const float k = std * 1.7320508f / 65536.0f; /* sqrt(3) */

	for (int64_t i = 0; i < n; i++) {
		uint64_t z = splitmix64(&state);
		float s = (float)(z & 0xffff) + (float)((z >> 16) & 0xffff) + (float)((z >> 32) & 0xffff) +
			  (float)(z >> 48) + 2.0f - 2.0f * 65536.0f;
		x[i] = mean + k * s;
	}
}

static void *gen_worker(void *arg)
{
	struct gen_job *j = arg;
	int64_t ne0 = j->t->ne[0];
	float *x = malloc((size_t)ne0 * sizeof(float));

	if (!x) {
		j->err = -ENOMEM;
		return NULL;
	}
	for (int64_t r = j->r0; r < j->r1 && !j->err; r++) {
		uint64_t state = j->seed ^ ((uint64_t)r * 0xD1B54A32D192ED03ull);
		if (j->t->fixed)
			memcpy(x, j->t->fixed, (size_t)ne0 * sizeof(float));
		else
			fill_row(x, ne0, state, j->t->mean, j->t->std);
		j->err = gguf_quantize_row((int)j->t->type, x, j->out + (size_t)(r - j->base) * j->row_bytes, ne0);
	}
	free(x);
	return NULL;
}

/* Fills rows [r0, r1) of t into out, over up to n_threads threads. */
static int gen_chunk(const struct synth_tensor *t, uint64_t seed, int64_t r0, int64_t r1, uint8_t *out,
		     size_t row_bytes, int n_threads)
{
	struct gen_job jobs[256];
	pthread_t tid[256];
	int64_t rows = r1 - r0, elems = rows * t->ne[0];
	int n = n_threads;
	int err = 0;

	if (n > 256)
		n = 256;
	if (n > rows)
		n = (int)rows;
	if (n > elems / MIN_ELEMS_PER_THREAD)
		n = (int)(elems / MIN_ELEMS_PER_THREAD);
	if (n < 1)
		n = 1;
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct gen_job){ .t = t, .seed = seed, .r0 = r0 + rows * i / n,
					    .r1 = r0 + rows * (i + 1) / n, .base = r0, .out = out,
					    .row_bytes = row_bytes };
	}
	int started = 1;
	for (int i = 1; i < n; i++, started++)
		if (pthread_create(&tid[i], NULL, gen_worker, &jobs[i]) != 0)
			break;
	gen_worker(&jobs[0]);
	for (int i = started; i < n; i++)
		gen_worker(&jobs[i]); /* threads that could not start: run here */
	for (int i = 1; i < started; i++)
		pthread_join(tid[i], NULL);
	for (int i = 0; i < n && !err; i++)
		err = jobs[i].err;
	return err;
}

static int write_tensors(struct gguf_writer *w, const struct synth_plan *p, const struct eng_synth_opts *o,
			 int n_threads)
{
	uint8_t *chunk = NULL;
	int err = 0;

	for (int i = 0; i < p->n && !err; i++) {
		const struct synth_tensor *t = &p->t[i];
		int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
		size_t row_bytes = gguf_row_size(t->type, t->ne[0]);
		int64_t per = (int64_t)(CHUNK_BYTES / row_bytes);
		if (per < 1)
			per = 1;
		if (per > rows)
			per = rows;
		uint8_t *c = realloc(chunk, (size_t)per * row_bytes);
		if (!c) {
			err = -ENOMEM;
			break;
		}
		chunk = c;
		uint64_t seed = o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xC2B2AE3D27D4EB4Full + 1;
		for (int64_t r = 0; r < rows && !err; r += per) {
			int64_t r1 = r + per < rows ? r + per : rows;
			err = gen_chunk(t, seed, r, r1, chunk, row_bytes, n_threads);
			if (!err)
				err = gguf_writer_stream_tensor(w, chunk, (size_t)(r1 - r) * row_bytes);
		}
		if (o->verbose && (i % 32 == 0 || i == p->n - 1))
			fprintf(stderr, "synth: %d/%d tensors\r", i + 1, p->n);
		if (err == -EINVAL)
			LOG_ERR("tensor '%s' (%s, ne[0] = %lld) could not be generated", t->name,
				gguf_dtype_name(t->type), (long long)t->ne[0]);
	}
	if (o->verbose)
		fputc('\n', stderr);
	free(chunk);
	return err;
}

/* --type: every matrix in o->type (falling back as llama.cpp). */
static void force_type(const struct eng_synth_opts *o, struct synth_plan *p)
{
	if (o->type >= 0)
		for (int k = 0; k < p->n; k++)
			if (p->t[k].n_dims >= 2)
				p->t[k].type = synth_fit_type((enum gguf_dtype)o->type, p->t[k].ne[0]);
}

static int build_plan(const struct eng_synth_opts *o, struct gguf_writer *w, struct synth_plan *p)
{
	char vocab[PATH_MAX];
	int err = 0;

	if (o->like) {
		struct gguf_ctx *src = NULL;
		if ((err = gguf_open(o->like, &src)))
			return err;
		if (gguf_alignment(src) != GGUF_DEFAULT_ALIGNMENT)
			gguf_writer_set_alignment(w, gguf_alignment(src));
		if (!(err = gguf_writer_copy_kv(w, src, NULL, NULL)))
			err = plan_like(p, src, o->type);
		gguf_free(src);
		return err;
	}
	for (int i = 0; i < N_PRESETS; i++) {
		if (strcmp(presets[i].name, o->preset))
			continue;
		if ((err = synth_find_vocab(o->vocab, "ggml-vocab-qwen2.gguf", vocab, sizeof(vocab))) ||
		    (err = preset_kv(w, &presets[i], vocab)) ||
		    (err = plan_preset(p, &presets[i])))
			return err;
		force_type(o, p);
		return 0;
	}
	for (int i = 0; i < N_MOE; i++) {
		if (strcmp(moe_presets[i].name, o->preset))
			continue;
		if ((err = synth_find_vocab(o->vocab, moe_presets[i].vocab, vocab, sizeof(vocab))) ||
		    (err = moe_kv(w, &moe_presets[i], vocab)) || (err = plan_moe(p, &moe_presets[i])))
			return err;
		force_type(o, p);
		return 0;
	}
	if (synth_arch_build(o, w, p, &err)) {
		if (!err)
			force_type(o, p);
		return err;
	}
	LOG_ERR("unknown preset '%s'", o->preset);
	return -EINVAL;
}

int eng_synth(const struct eng_synth_opts *o)
{
	struct gguf_writer *w = gguf_writer_init();
	struct synth_plan plan = { 0 };
	int n_threads = o->n_threads > 0 ? o->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	int err;

	if (!w)
		return -ENOMEM;
	if (!o->out || !!o->like == !!o->preset) {
		LOG_ERR("need an output path and exactly one of --like / --preset");
		err = -EINVAL;
		goto out_writer;
	}
	if (o->type >= 0 && (!gguf_type_traits(o->type) || !gguf_type_traits(o->type)->is_weight)) {
		LOG_ERR("type %s cannot hold weights", gguf_dtype_name(o->type));
		err = -EINVAL;
		goto out_writer;
	}
	if ((err = build_plan(o, w, &plan)))
		goto out_plan;
	set_distributions(&plan);
	for (int i = 0; i < plan.n && !err; i++)
		err = gguf_writer_add_tensor(w, plan.t[i].name, plan.t[i].type, plan.t[i].n_dims, plan.t[i].ne, NULL);
	if (err)
		goto out_plan;
	if ((err = gguf_writer_stream_begin(w, o->out)))
		goto out_plan;
	err = write_tensors(w, &plan, o, n_threads < 1 ? 1 : n_threads);
	int end = gguf_writer_stream_end(w);
	if (!err)
		err = end;
	if (err)
		unlink(o->out);
out_plan:
	for (int i = 0; i < plan.n; i++)
		free(plan.t[i].fixed);
	free(plan.t);
out_writer:
	gguf_writer_free(w);
	return err;
}
