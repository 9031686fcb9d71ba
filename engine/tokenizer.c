/*
 * tokenizer.c — builds an eng_tokenizer from GGUF metadata (llama.cpp's
 * llama_vocab::impl::load): vocabulary, scores, token types, merges,
 * special token ids, add_bos/add_space_prefix, the pre-tokenizer, the
 * attribute fix-ups llama.cpp applies by token text, the end-of-generation
 * set, and the special-token table used to split text before encoding.
 *
 * Encoding lives in tok_encode.c / tok_merge.c / tok_pretok.c, streaming
 * decoding in detok.c.  Every array from the file is checked (type, length,
 * ids in range) before use: a bad file gives -EINVAL and one LOG_ERR line.
 */
#include "tok_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"
#include "unicode.h"

#define TOK_MAX_VOCAB (1 << 24)

// ---- growable arrays

int tok_ivec_push(struct tok_ivec *a, int32_t x)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		int32_t *v = realloc(a->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = x;
	return 0;
}

int tok_svec_push(struct tok_svec *a, size_t x)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		size_t *v = realloc(a->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = x;
	return 0;
}

// ---- string hash index (token text → id, merge pair → rank)

#define FNV_INIT 0xcbf29ce484222325ull

static inline uint64_t fnv(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int index_init(struct tok_index *ix, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	ix->slot = calloc(cap, sizeof(*ix->slot));
	ix->hash = malloc((n ? n : 1) * sizeof(*ix->hash));
	ix->mask = cap - 1;
	return ix->slot && ix->hash ? 0 : -ENOMEM;
}

static void index_free(struct tok_index *ix)
{
	free(ix->slot);
	free(ix->hash);
}

/* Inserts entry i with hash h; returns the index of an earlier entry with
 * an equal key (same(i, j)) instead, or -1 when inserted. */
static int64_t index_insert(struct tok_index *ix, uint32_t i, uint64_t h,
                            bool (*same)(const void *, uint32_t, uint32_t), const void *ctx)
{
	size_t s = h & ix->mask;
	ix->hash[i] = h;
	for (; ix->slot[s]; s = (s + 1) & ix->mask) {
		uint32_t j = ix->slot[s] - 1;
		if (ix->hash[j] == h && same(ctx, i, j))
			return j;
	}
	ix->slot[s] = i + 1;
	return -1;
}

static bool same_token(const void *ctx, uint32_t i, uint32_t j)
{
	const struct eng_tokenizer *t = ctx;
	return t->tok[i].len == t->tok[j].len && memcmp(tok_str(t, i), tok_str(t, j), t->tok[i].len) == 0;
}

static bool same_merge(const void *ctx, uint32_t i, uint32_t j)
{
	const struct eng_tokenizer *t = ctx;
	const struct tok_merge *a = &t->merge[i], *b = &t->merge[j];
	return a->len == b->len && a->split == b->split &&
	       memcmp(t->merge_text + a->off, t->merge_text + b->off, a->len) == 0;
}

int32_t tok_lookup(const struct eng_tokenizer *t, const char *s, size_t n)
{
	uint64_t h = fnv(FNV_INIT, s, n);
	for (size_t k = h & t->tok_idx.mask; t->tok_idx.slot[k]; k = (k + 1) & t->tok_idx.mask) {
		uint32_t j = t->tok_idx.slot[k] - 1;
		if (t->tok_idx.hash[j] == h && t->tok[j].len == n && memcmp(tok_str(t, j), s, n) == 0)
			return (int32_t)j;
	}
	return -1;
}

int32_t tok_merge_rank(const struct eng_tokenizer *t, const char *l, size_t nl, const char *r, size_t nr)
{
	if (!t->merge_idx.slot)
		return -1;
	uint64_t h = fnv(fnv(fnv(FNV_INIT, l, nl), " ", 1), r, nr);
	for (size_t k = h & t->merge_idx.mask; t->merge_idx.slot[k]; k = (k + 1) & t->merge_idx.mask) {
		uint32_t j = t->merge_idx.slot[k] - 1;
		const struct tok_merge *m = &t->merge[j];
		const char *s = t->merge_text + m->off;
		if (t->merge_idx.hash[j] == h && m->split == nl && m->len == nl + 1 + nr &&
		    memcmp(s, l, nl) == 0 && memcmp(s + nl + 1, r, nr) == 0)
			return (int32_t)j;
	}
	return -1;
}

// ---- metadata helpers

/* Index of a string array key, or -1 absent; -EINVAL (logged) when the key
 * exists with another type. */
static int64_t find_arr(const struct gguf_ctx *g, const char *key, enum gguf_vtype elem)
{
	int64_t k = gguf_find_key(g, key);
	if (k < 0)
		return -1;
	if (gguf_kv_type(g, k) != GGUF_VTYPE_ARRAY || gguf_get_arr_type(g, k) != elem) {
		LOG_ERR("%s: expected an array of type %d", key, (int)elem);
		return -EINVAL;
	}
	return k;
}

/* Reads an optional token id key into *id: absent → unchanged; -1 or
 * 0xFFFFFFFF ("none", as stories260K's padding id) → unchanged, as
 * llama.cpp keeps its default; another id outside the vocabulary → -EINVAL. */
static int read_id(const struct gguf_ctx *g, const char *key, int32_t n_vocab, int32_t *id)
{
	int64_t v;
	int rc = gguf_get_int_key(g, key, &v);
	if (rc == -ENOENT)
		return 0;
	if (rc != 0) {
		LOG_ERR("%s: not an integer", key);
		return -EINVAL;
	}
	if (v == -1 || v == 0xFFFFFFFFll)
		return 0;
	if (v < 0 || v >= n_vocab) {
		LOG_ERR("%s = %lld is outside the vocabulary (%d tokens)", key, (long long)v, (int)n_vocab);
		return -EINVAL;
	}
	*id = (int32_t)v;
	return 0;
}

static int read_bool(const struct gguf_ctx *g, const char *key, bool *out)
{
	int rc = gguf_get_bool_key(g, key, out);
	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		LOG_ERR("%s: not a bool", key);
	return rc;
}

static bool name_in(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

// ---- tokenizer.ggml.model / .pre

static int set_kind(struct eng_tokenizer *t, const struct gguf_ctx *g)
{
	static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1",
	                                     "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", NULL};
	static const char *const llama3_re[] = {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe", NULL};
	static const char *const gpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
	                                   "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "exaone4",
	                                   "mpt", "olmo", "jais", "trillion", "granite-docling",
	                                   "jina-v1-en", "jina-v2-code", "roberta-bpe", NULL};
	static const char *const qwen2[] = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2",
	                                    "megrez", "hunyuan", "solar-open", "grok-2", NULL};
	static const char *const starcoder[] = {"starcoder", "refact", "command-r", "smollm", "codeshell",
	                                        "exaone", "minerva-7b", "mellum2", NULL};
	const char *model = gguf_get_str_key(g, "tokenizer.ggml.model");
	const char *pre = gguf_get_str_key(g, "tokenizer.ggml.pre");

	if (!model) {
		LOG_ERR("tokenizer.ggml.model missing or not a string");
		return -EINVAL;
	}
	if (strcmp(model, "llama") == 0) {
		t->kind = ENG_TOK_KIND_SPM;
		t->pre_type = TOK_PRE_DEFAULT;
		snprintf(t->pre, sizeof(t->pre), "%s", "default");
		t->bos = 1, t->eos = 2, t->unk = 0;
		t->add_bos = true;
		t->add_space_prefix = true;
		return 0;
	}
	if (strcmp(model, "gpt2") != 0) {
		LOG_ERR("tokenizer.ggml.model '%s' is not supported (llama, gpt2)", model);
		return -EINVAL;
	}
	t->kind = ENG_TOK_KIND_BPE;
	t->bos = 11, t->eos = 11; /* llama.cpp's BPE defaults */
	snprintf(t->pre, sizeof(t->pre), "%s", pre && *pre ? pre : "default");
	if (!pre || !*pre || strcmp(pre, "default") == 0) {
		if (!pre || !*pre)
			LOG_WARN("tokenizer.ggml.pre missing: using the default pre-tokenizer");
		t->pre_type = TOK_PRE_DEFAULT;
	} else if (name_in(pre, llama3)) {
		t->pre_type = TOK_PRE_LLAMA3;
		t->ignore_merges = true;
		t->add_bos = true;
	} else if (name_in(pre, llama3_re)) {
		t->pre_type = TOK_PRE_LLAMA3;
		if (strcmp(pre, "glm4") == 0 || strcmp(pre, "chatglm-bpe") == 0)
			t->bos = -1;
	} else if (name_in(pre, gpt2)) {
		t->pre_type = TOK_PRE_GPT2;
	} else if (name_in(pre, qwen2)) {
		t->pre_type = TOK_PRE_QWEN2;
	} else if (name_in(pre, starcoder)) {
		t->pre_type = TOK_PRE_STARCODER;
	} else if (strcmp(pre, "falcon") == 0) {
		t->pre_type = TOK_PRE_FALCON;
	} else {
		LOG_WARN("tokenizer.ggml.pre '%s' is not implemented: using the default pre-tokenizer, "
		         "so prompts may tokenize differently from llama.cpp", pre);
		t->pre_type = TOK_PRE_DEFAULT;
	}
	return 0;
}

// ---- vocabulary and merges

static int load_tokens(struct eng_tokenizer *t, const struct gguf_ctx *g)
{
	int64_t k_tok = find_arr(g, "tokenizer.ggml.tokens", GGUF_VTYPE_STRING);
	int64_t k_score = gguf_find_key(g, "tokenizer.ggml.scores");
	int64_t k_type = find_arr(g, "tokenizer.ggml.token_type", GGUF_VTYPE_INT32);
	const float *fscore = NULL;
	const int32_t *iscore = NULL, *types = NULL;
	size_t total = 0;
	uint64_t n;

	if (k_tok < 0 || k_type == -EINVAL) {
		if (k_tok == -1)
			LOG_ERR("tokenizer.ggml.tokens missing");
		return -EINVAL;
	}
	n = gguf_get_arr_n(g, k_tok);
	if (n == 0 || n > TOK_MAX_VOCAB) {
		LOG_ERR("tokenizer.ggml.tokens: %llu tokens (1..%d allowed)", (unsigned long long)n, TOK_MAX_VOCAB);
		return -EINVAL;
	}
	t->n_vocab = (int32_t)n;
	if (k_score >= 0) {
		enum gguf_vtype et = gguf_kv_type(g, k_score) == GGUF_VTYPE_ARRAY ? gguf_get_arr_type(g, k_score)
		                                                                  : GGUF_VTYPE_COUNT;
		if ((et != GGUF_VTYPE_FLOAT32 && et != GGUF_VTYPE_INT32) || gguf_get_arr_n(g, k_score) != n) {
			LOG_ERR("tokenizer.ggml.scores: need %llu float32 or int32 values",
			        (unsigned long long)n);
			return -EINVAL;
		}
		if (et == GGUF_VTYPE_FLOAT32)
			fscore = gguf_get_arr_data(g, k_score);
		else
			iscore = gguf_get_arr_data(g, k_score);
	}
	if (k_type >= 0) {
		if (gguf_get_arr_n(g, k_type) != n) {
			LOG_ERR("tokenizer.ggml.token_type has %llu entries, tokens %llu",
			        (unsigned long long)gguf_get_arr_n(g, k_type), (unsigned long long)n);
			return -EINVAL;
		}
		types = gguf_get_arr_data(g, k_type);
	}

	t->tok = calloc(n, sizeof(*t->tok));
	if (!t->tok)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		size_t len;
		gguf_get_arr_str(g, k_tok, i, &len);
		total += (len ? len : 32) + 1;
	}
	if (total > UINT32_MAX) {
		LOG_ERR("tokenizer.ggml.tokens: %zu bytes of text", total);
		return -EINVAL;
	}
	t->text = malloc(total);
	if (!t->text || index_init(&t->tok_idx, n) != 0)
		return -ENOMEM;

	size_t off = 0;
	for (uint64_t i = 0; i < n; i++) {
		size_t len;
		const char *s = gguf_get_arr_str(g, k_tok, i, &len);
		struct tok_entry *e = &t->tok[i];
		e->off = (uint32_t)off;
		if (len == 0) { /* llama.cpp renames empty tokens */
			LOG_WARN("empty token at index %llu", (unsigned long long)i);
			len = (size_t)snprintf(t->text + off, 32, "[EMPTY_%llu]", (unsigned long long)i);
		} else {
			memcpy(t->text + off, s, len);
		}
		t->text[off + len] = '\0';
		e->len = (uint32_t)len;
		off += len + 1;
		e->score = fscore ? fscore[i] : iscore ? (float)iscore[i] : 0.0f;
		e->attr = TOK_ATTR_NORMAL;
		if (types) {
			static const uint16_t attr_of[7] = {TOK_ATTR_UNDEFINED, TOK_ATTR_NORMAL, TOK_ATTR_UNKNOWN,
			                                    TOK_ATTR_CONTROL, TOK_ATTR_USER_DEFINED,
			                                    TOK_ATTR_UNUSED, TOK_ATTR_BYTE};
			e->attr = types[i] >= 0 && types[i] < 7 ? attr_of[types[i]] : TOK_ATTR_UNDEFINED;
		}
		if (e->len > t->max_token_len)
			t->max_token_len = e->len;
		int64_t dup = index_insert(&t->tok_idx, (uint32_t)i, fnv(FNV_INIT, tok_str(t, i), len),
		                           same_token, t);
		if (dup >= 0) {
			LOG_ERR("duplicate token '%s': ids %lld and %llu", tok_str(t, i), (long long)dup,
			        (unsigned long long)i);
			return -EINVAL;
		}
	}
	return 0;
}

static int load_merges(struct eng_tokenizer *t, const struct gguf_ctx *g)
{
	int64_t k = find_arr(g, "tokenizer.ggml.merges", GGUF_VTYPE_STRING);
	size_t total = 0, off = 0;
	uint64_t n;

	if (k < 0) {
		if (k == -1)
			LOG_ERR("tokenizer.ggml.merges missing (needed by a gpt2 tokenizer)");
		return -EINVAL;
	}
	n = gguf_get_arr_n(g, k);
	if (n > TOK_MAX_VOCAB) {
		LOG_ERR("tokenizer.ggml.merges: %llu merges", (unsigned long long)n);
		return -EINVAL;
	}
	t->n_merges = (uint32_t)n;
	for (uint64_t i = 0; i < n; i++) {
		size_t len;
		gguf_get_arr_str(g, k, i, &len);
		total += len;
	}
	if (total > UINT32_MAX) {
		LOG_ERR("tokenizer.ggml.merges: %zu bytes of text", total);
		return -EINVAL;
	}
	t->merge = calloc(n ? n : 1, sizeof(*t->merge));
	t->merge_text = malloc(total ? total : 1);
	if (!t->merge || !t->merge_text || index_init(&t->merge_idx, n) != 0)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		size_t len;
		const char *s = gguf_get_arr_str(g, k, i, &len);
		const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
		struct tok_merge *m = &t->merge[i];
		memcpy(t->merge_text + off, s, len);
		m->off = (uint32_t)off;
		m->len = (uint32_t)len;
		off += len;
		/* "left right", split at the first space after the first byte;
		 * without one llama.cpp records ("", ""), which never matches */
		if (!sp)
			continue;
		m->split = (uint32_t)(sp - s);
		/* a repeated pair keeps its first (lowest) rank, as emplace does */
		index_insert(&t->merge_idx, (uint32_t)i, fnv(FNV_INIT, s, len), same_merge, t);
	}
	return 0;
}

static void find_byte_tokens(struct eng_tokenizer *t)
{
	for (int b = 0; b < 256; b++) {
		char buf[8];
		int32_t id;
		if (t->kind == ENG_TOK_KIND_SPM) {
			snprintf(buf, sizeof(buf), "<0x%02X>", b);
			id = tok_lookup(t, buf, 6);
			if (id < 0) {
				buf[0] = (char)b;
				id = tok_lookup(t, buf, 1);
			}
		} else {
			id = tok_lookup(t, buf, eng_uni_encode(eng_uni_byte_to_cpt((uint8_t)b), buf));
		}
		t->byte_tok[b] = id;
	}
}

// ---- special tokens, attributes and the end-of-generation set

static int read_special_ids(struct eng_tokenizer *t, const struct gguf_ctx *g)
{
	static const char *const pfx = "tokenizer.ggml.";
	struct {
		const char *key;
		int32_t *id;
	} keys[] = {
		{"bos_token_id", &t->bos}, {"eos_token_id", &t->eos}, {"eot_token_id", &t->eot},
		{"eom_token_id", &t->eom}, {"unknown_token_id", &t->unk}, {"padding_token_id", &t->pad},
		{"fim_pre_token_id", &t->fim_pre}, {"fim_suf_token_id", &t->fim_suf},
		{"fim_mid_token_id", &t->fim_mid}, {"prefix_token_id", &t->fim_pre},
		{"suffix_token_id", &t->fim_suf}, {"middle_token_id", &t->fim_mid},
		{"fim_pad_token_id", &t->fim_pad}, {"fim_rep_token_id", &t->fim_rep},
		{"fim_sep_token_id", &t->fim_sep},
	};
	char key[96];
	int rc;

	/* defaults beyond the vocabulary are disabled */
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (*keys[i].id >= t->n_vocab)
			*keys[i].id = -1;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(key, sizeof(key), "%s%s", pfx, keys[i].key);
		if ((rc = read_id(g, key, t->n_vocab, keys[i].id)) != 0)
			return rc;
	}
	if ((rc = read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos)) != 0 ||
	    (rc = read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos)) != 0 ||
	    (rc = read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)) != 0)
		return rc;
	if (t->add_bos && t->bos < 0) {
		LOG_ERR("tokenizer.ggml.add_bos_token is true, but there is no BOS token");
		return -EINVAL;
	}
	if (t->add_eos && t->eos < 0) {
		LOG_ERR("tokenizer.ggml.add_eos_token is true, but there is no EOS token");
		return -EINVAL;
	}
	return 0;
}

/* The first token whose text is in list (in id order), marked CONTROL as
 * llama.cpp does for "control-looking" tokens; -1 if none. */
static int32_t detect(struct eng_tokenizer *t, const char *const *list)
{
	for (; *list; list++) {
		int32_t id = tok_lookup(t, *list, strlen(*list));
		if (id >= 0) {
			t->tok[id].attr |= TOK_ATTR_CONTROL;
			return id;
		}
	}
	return -1;
}

static int32_t find_text(const struct eng_tokenizer *t, const char *s)
{
	return tok_lookup(t, s, strlen(s));
}

static void mark_eog(struct eng_tokenizer *t)
{
	static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
	                                  "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
	                                  "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	                                  "<end_of_utterance>", NULL};
	static const char *const eom[] = {"<|eom_id|>", NULL};
	static const char *const fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
	                                      "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
	                                      "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
	static const char *const fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
	                                      "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
	                                      "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
	static const char *const fim_mid[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
	                                      "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
	                                      "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
	static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
	static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
	                                      "<reponame>", NULL};
	static const char *const fim_sep[] = {"<|file_sep|>", NULL};
	static const char *const eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
	                                  "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
	                                  "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
	                                  "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	                                  "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	                                  "[e~[", NULL};
	static const char *const gpt_oss_user[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>",
	                                           NULL};
	if (t->eot < 0)
		t->eot = detect(t, eot);
	if (t->eom < 0)
		t->eom = detect(t, eom);
	if (t->fim_pre < 0)
		t->fim_pre = detect(t, fim_pre);
	if (t->fim_suf < 0)
		t->fim_suf = detect(t, fim_suf);
	if (t->fim_mid < 0)
		t->fim_mid = detect(t, fim_mid);
	if (t->fim_pad < 0)
		t->fim_pad = detect(t, fim_pad);
	if (t->fim_rep < 0)
		t->fim_rep = detect(t, fim_rep);
	if (t->fim_sep < 0)
		t->fim_sep = detect(t, fim_sep);

	int32_t always[] = {t->fim_pad, t->fim_rep, t->fim_sep, t->eos, t->eot, t->eom};
	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		if (always[i] >= 0)
			t->eog[always[i]] = 1;
	for (const char *const *s = eog; *s; s++) {
		int32_t id = find_text(t, *s);
		if (id >= 0) {
			t->eog[id] = 1;
			t->tok[id].attr |= TOK_ATTR_CONTROL;
		}
	}
	for (const char *const *s = gpt_oss_user; *s; s++) {
		int32_t id = find_text(t, *s);
		if (id >= 0)
			t->tok[id].attr = TOK_ATTR_USER_DEFINED;
	}

	/* o200k_harmony / solar-open: <|end|> is not the end of generation */
	int32_t ret = find_text(t, "<|return|>"), call = find_text(t, "<|call|>");
	int32_t calls = find_text(t, "<|calls|>"), flush = find_text(t, "<|flush|>");
	int32_t end = find_text(t, "<|end|>");
	bool has_call = (call >= 0 && t->eog[call]) || (calls >= 0 && t->eog[calls]);
	bool has_return = ret >= 0 && t->eog[ret], has_flush = flush >= 0 && t->eog[flush];
	if (end >= 0 && t->eog[end] && ((has_return && has_call) || (has_call && has_flush))) {
		t->eog[end] = 0;
		t->tok[end].attr = TOK_ATTR_USER_DEFINED;
	}
	/* gemma4 / paddleocr: </s> is not, where <|tool_response> is */
	int32_t tool = find_text(t, "<|tool_response>"), s_end = find_text(t, "</s>");
	if (tool >= 0 && t->eog[tool] && s_end >= 0 && t->eog[s_end]) {
		t->eog[s_end] = 0;
		t->tok[s_end].attr = TOK_ATTR_NORMAL;
	}
}

struct len_id {
	uint32_t len;
	int32_t id;
};

/* longest first; equal lengths by id (std::sort leaves them unordered) */
static int cmp_special(const void *a, const void *b)
{
	const struct len_id *x = a, *y = b;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int trie_add(struct eng_tokenizer *t, const char *s, size_t n, int32_t special, size_t *cap)
{
	int32_t node = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t c = t->trie[node].child;
		while (c >= 0 && t->trie[c].byte != (uint8_t)s[i])
			c = t->trie[c].sibling;
		if (c < 0) {
			if (t->n_trie == *cap) {
				size_t nc = *cap * 2;
				struct tok_trie_node *v = realloc(t->trie, nc * sizeof(*v));
				if (!v)
					return -ENOMEM;
				t->trie = v;
				*cap = nc;
			}
			c = (int32_t)t->n_trie++;
			t->trie[c] = (struct tok_trie_node){-1, t->trie[node].child, -1, (uint8_t)s[i]};
			t->trie[node].child = c;
		}
		node = c;
	}
	t->trie[node].special = special;
	return 0;
}

/* cache_special_tokens, then llama.cpp's per-model attributes (phi-3
 * strips the whitespace after its special tokens). */
static int build_specials(struct eng_tokenizer *t, const struct gguf_ctx *g)
{
	size_t cap = 64;
	int rc;

	t->special = malloc(t->n_vocab * sizeof(*t->special));
	t->trie = malloc(cap * sizeof(*t->trie));
	if (!t->special || !t->trie)
		return -ENOMEM;
	struct len_id *order = malloc(t->n_vocab * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (int32_t id = 0; id < t->n_vocab; id++)
		if (t->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
			order[t->n_special++] = (struct len_id){t->tok[id].len, id};
	qsort(order, t->n_special, sizeof(*order), cmp_special);
	for (size_t i = 0; i < t->n_special; i++)
		t->special[i] = order[i].id;
	free(order);
	t->trie[0] = (struct tok_trie_node){-1, -1, -1, 0};
	t->n_trie = 1;
	for (size_t i = 0; i < t->n_special; i++) {
		int32_t id = t->special[i];
		if ((rc = trie_add(t, tok_str(t, id), t->tok[id].len, (int32_t)i, &cap)) != 0)
			return rc;
	}

	const char *name = gguf_get_str_key(g, "general.name");
	char lower[128];
	size_t i = 0;
	for (; name && name[i] && i + 1 < sizeof(lower); i++)
		lower[i] = (char)tolower((unsigned char)name[i]);
	lower[i] = '\0';
	if (strstr(lower, "phi-3") || strstr(lower, "phi3")) {
		for (size_t k = 0; k < t->n_special; k++)
			t->tok[t->special[k]].attr |= TOK_ATTR_RSTRIP;
		static const char *const off[] = {"<unk>", "<s>", "<|endoftext|>"};
		int32_t id = find_text(t, "</s>");
		if (id >= 0)
			t->tok[id].attr |= TOK_ATTR_RSTRIP;
		for (size_t k = 0; k < 3; k++)
			if ((id = find_text(t, off[k])) >= 0)
				t->tok[id].attr &= (uint16_t)~TOK_ATTR_RSTRIP;
	}
	return 0;
}

/* The longest piece any token renders to (llama.cpp builds its piece
 * cache the same way), so callers can size buffers. */
static int measure_pieces(struct eng_tokenizer *t)
{
	size_t cap = 4 * (size_t)t->max_token_len + 64;
	char *buf = malloc(cap);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (int32_t id = 0; id < t->n_vocab; id++) {
		int n = eng_token_piece(t, id, true, buf, cap);
		while (n == -ENOSPC) { /* only "[UNK_BYTE_0x…]" markers grow this much */
			char *b = realloc(buf, cap * 4);
			if (!b) {
				rc = -ENOMEM;
				goto free_buf;
			}
			buf = b;
			cap *= 4;
			n = eng_token_piece(t, id, true, buf, cap);
		}
		if (n > 0 && (size_t)n > t->max_piece)
			t->max_piece = (size_t)n;
	}
free_buf:
	free(buf);
	return rc;
}

// ---- init / free

int eng_tokenizer_init(const struct gguf_ctx *g, struct eng_tokenizer **out)
{
	struct eng_tokenizer *t = calloc(1, sizeof(*t));
	int rc = -ENOMEM;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->bos = t->eos = t->eot = t->eom = t->unk = t->pad = -1;
	t->fim_pre = t->fim_suf = t->fim_mid = -1;
	t->fim_pad = t->fim_rep = t->fim_sep = -1;
	if ((rc = set_kind(t, g)) != 0 || (rc = load_tokens(t, g)) != 0)
		goto free_tok;
	if (t->kind == ENG_TOK_KIND_BPE && (rc = load_merges(t, g)) != 0)
		goto free_tok;
	find_byte_tokens(t);
	if ((rc = read_special_ids(t, g)) != 0)
		goto free_tok;
	rc = -ENOMEM;
	t->eog = calloc(t->n_vocab, 1);
	if (!t->eog)
		goto free_tok;
	mark_eog(t);
	if ((rc = build_specials(t, g)) != 0 || (rc = measure_pieces(t)) != 0)
		goto free_tok;
	LOG_DEBUG("%s tokenizer, pre '%s': %d tokens, %u merges, %zu special, bos %d eos %d",
	          t->kind == ENG_TOK_KIND_SPM ? "SPM" : "BPE", t->pre, (int)t->n_vocab, t->n_merges,
	          t->n_special, (int)t->bos, (int)t->eos);
	*out = t;
	return 0;
free_tok:
	eng_tokenizer_free(t);
	return rc;
}

void eng_tokenizer_free(struct eng_tokenizer *t)
{
	if (!t)
		return;
	free(t->tok);
	free(t->text);
	index_free(&t->tok_idx);
	free(t->merge);
	free(t->merge_text);
	index_free(&t->merge_idx);
	free(t->eog);
	free(t->special);
	free(t->trie);
	free(t);
}
