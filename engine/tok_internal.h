/*
 * tok_internal.h — the tokenizer's internal structure, shared by
 * tokenizer.c (loading, special tokens, public API), tok_merge.c (the SPM
 * and BPE merge loops) and tok_pretok.c (BPE pre-tokenizer splitters).
 * Not part of the public API (that is tokenizer.h).
 *
 * Everything mirrors llama.cpp's llama-vocab.cpp; names of the llama.cpp
 * pieces are given where a function reproduces one.
 */
#ifndef PROMPTFS_ENGINE_TOK_INTERNAL_H
#define PROMPTFS_ENGINE_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* Token attributes (llama_token_attr values). */
enum tok_attr {
	TOK_ATTR_UNDEFINED = 0,
	TOK_ATTR_UNKNOWN = 1 << 0,
	TOK_ATTR_UNUSED = 1 << 1,
	TOK_ATTR_NORMAL = 1 << 2,
	TOK_ATTR_CONTROL = 1 << 3,
	TOK_ATTR_USER_DEFINED = 1 << 4,
	TOK_ATTR_BYTE = 1 << 5,
	TOK_ATTR_LSTRIP = 1 << 7,
	TOK_ATTR_RSTRIP = 1 << 8,
};

/* Pre-tokenizer regex sets (llama.cpp's llm_tokenizer_bpe constructor). */
enum tok_pre {
	TOK_PRE_DEFAULT = 0, /* [\p{P}$+<=>^~|]+, gpt2, \p{N}+, [0-9][0-9][0-9] */
	TOK_PRE_GPT2,        /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
	TOK_PRE_LLAMA3,      /* (?i:'s|…)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
	TOK_PRE_QWEN2,       /* as LLAMA3 with \p{N} (single digits) */
	TOK_PRE_STARCODER,   /* \p{N}, then gpt2 */
	TOK_PRE_FALCON,      /* [\p{P}$+<=>^~|`]+, gpt2, [0-9][0-9][0-9] */
};

struct tok_entry {
	uint32_t off;   /* into text arena */
	uint32_t len;
	float score;
	uint16_t attr;  /* enum tok_attr bits */
};

struct tok_merge {
	uint32_t off;   /* into merge arena: "left right" */
	uint32_t len;
	uint32_t split; /* length of left (the space is at off + split) */
};

/* Open-addressing hash index over strings stored elsewhere: slot holds
 * entry index + 1 (0 = empty); hash[i] is entry i's 64-bit hash. */
struct tok_index {
	uint32_t *slot;
	uint64_t *hash;
	size_t mask;
};

struct eng_tokenizer {
	enum eng_tok_kind kind;
	enum tok_pre pre_type;
	char pre[64];

	int32_t n_vocab;
	struct tok_entry *tok;     /* [n_vocab] */
	char *text;                /* arena of token texts */
	struct tok_index tok_idx;
	uint32_t max_token_len;
	size_t max_piece;          /* longest eng_token_piece() result */

	uint32_t n_merges;
	struct tok_merge *merge;   /* [n_merges] */
	char *merge_text;          /* arena of merge strings */
	struct tok_index merge_idx;

	int32_t bos, eos, eot, eom, unk, pad;
	int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
	bool add_bos, add_eos, add_space_prefix, ignore_merges;

	int32_t byte_tok[256];     /* token of each raw byte (-1 if none) */
	uint8_t *eog;              /* [n_vocab] 1 = end of generation */

	/* CONTROL / USER_DEFINED / UNKNOWN tokens, longest text first
	 * (llama.cpp cache_special_tokens), and a byte trie over their texts
	 * to find which of them occur in a text. */
	int32_t *special;
	size_t n_special;
	struct tok_trie_node *trie;
	size_t n_trie;
};

struct tok_trie_node {
	int32_t child;   /* first child node, -1 none */
	int32_t sibling; /* next sibling, -1 none */
	int32_t special; /* index into special[] of the token ending here, -1 none */
	uint8_t byte;
};

/* A growable int32 array (tokens) and size_t array (pre-token lengths). */
struct tok_ivec {
	int32_t *v;
	size_t n, cap;
};
struct tok_svec {
	size_t *v;
	size_t n, cap;
};
int tok_ivec_push(struct tok_ivec *a, int32_t x);
int tok_svec_push(struct tok_svec *a, size_t x);

static inline const char *tok_str(const struct eng_tokenizer *t, int32_t id)
{
	return t->text + t->tok[id].off;
}

/* Token id of the exact byte string s[0..n), or -1. */
int32_t tok_lookup(const struct eng_tokenizer *t, const char *s, size_t n);
/* Merge rank of (left, right), or -1 (llama_vocab::find_bpe_rank). */
int32_t tok_merge_rank(const struct eng_tokenizer *t, const char *l, size_t nl, const char *r, size_t nr);

/* Encoders for one raw-text fragment; append to out.  0 / -ENOMEM. */
int tok_spm_encode(const struct eng_tokenizer *t, const char *s, size_t n, bool space_prefix,
                   struct tok_ivec *out);
int tok_bpe_encode(const struct eng_tokenizer *t, const char *s, size_t n, struct tok_ivec *out);

/* Splits code points cpt[0..n) (with their eng_uni_flags) into pre-token
 * words; appends each word's length in code points.  0 / -ENOMEM. */
int tok_pretokenize(enum tok_pre pre, const uint32_t *cpt, const uint16_t *flags, size_t n,
                    struct tok_svec *out);

#endif /* PROMPTFS_ENGINE_TOK_INTERNAL_H */
