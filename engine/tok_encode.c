/*
 * tok_encode.c — the public tokenizer calls: text → ids (special-token
 * partition, then SPM or BPE per raw fragment), id → piece, and the small
 * accessors.  Loading is in tokenizer.c.
 *
 * Special tokens (llama.cpp tokenizer_st_partition): the CONTROL,
 * USER_DEFINED and UNKNOWN tokens are taken longest text first; each one
 * splits every raw fragment at every occurrence, left to right.  Without
 * ENG_TOK_PARSE_SPECIAL only USER_DEFINED tokens take part (as in
 * llama.cpp and Hugging Face tokenizers).  A byte trie first finds which
 * of them occur at all, so a text without special tokens costs one pass.
 */
#define _GNU_SOURCE /* memmem */
#include "tok_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"
#include "unicode.h"

struct frag {
	size_t off, len;
	int32_t tok; /* -1: raw text */
};

struct frag_vec {
	struct frag *v;
	size_t n, cap;
};

static int frag_push(struct frag_vec *f, size_t off, size_t len, int32_t tok)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		struct frag *v = realloc(f->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n++] = (struct frag){off, len, tok};
	return 0;
}

static inline bool c_isspace(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool special_allowed(const struct eng_tokenizer *t, int32_t id, bool parse_special)
{
	return parse_special || !(t->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
}

/* Marks in seen[] every special token (index into t->special) occurring in
 * text. */
static void find_specials(const struct eng_tokenizer *t, const char *s, size_t n, bool parse_special,
                          uint8_t *seen)
{
	for (size_t i = 0; i < n; i++) {
		int32_t node = 0;
		for (size_t j = i; j < n; j++) {
			int32_t c = t->trie[node].child;
			while (c >= 0 && t->trie[c].byte != (uint8_t)s[j])
				c = t->trie[c].sibling;
			if (c < 0)
				break;
			node = c;
			int32_t sp = t->trie[node].special;
			if (sp >= 0 && special_allowed(t, t->special[sp], parse_special))
				seen[sp] = 1;
		}
	}
}

/* Splits one raw fragment at every occurrence of token id. */
static int split_fragment(const struct eng_tokenizer *t, const char *s, const struct frag *f, int32_t id,
                          struct frag_vec *out)
{
	const char *tt = tok_str(t, id);
	size_t tl = t->tok[id].len, base = f->off, blen = f->len;
	uint16_t attr = t->tok[id].attr;
	bool found = false;
	int rc;

	for (;;) {
		const char *m = blen >= tl ? memmem(s + base, blen, tt, tl) : NULL;
		if (!m)
			break;
		size_t mo = (size_t)(m - s), left = mo - base;
		found = true;
		if (attr & TOK_ATTR_LSTRIP)
			while (left > 0 && c_isspace(s[base + left - 1]))
				left--;
		if (left > 0 && (rc = frag_push(out, base, left, -1)) != 0)
			return rc;
		if ((rc = frag_push(out, 0, 0, id)) != 0)
			return rc;
		blen -= mo + tl - base;
		base = mo + tl;
		if (attr & TOK_ATTR_RSTRIP)
			while (blen > 0 && c_isspace(s[base])) {
				base++;
				blen--;
			}
	}
	if (!found)
		return frag_push(out, f->off, f->len, -1);
	return blen > 0 ? frag_push(out, base, blen, -1) : 0;
}

static int partition(const struct eng_tokenizer *t, const char *s, size_t n, bool parse_special,
                     struct frag_vec *frags)
{
	struct frag_vec next = {0};
	uint8_t *seen = calloc(t->n_special ? t->n_special : 1, 1);
	int rc = -ENOMEM;

	if (!seen || frag_push(frags, 0, n, -1) != 0)
		goto free_seen;
	find_specials(t, s, n, parse_special, seen);
	for (size_t k = 0; k < t->n_special; k++) {
		if (!seen[k])
			continue;
		next.n = 0;
		for (size_t i = 0; i < frags->n; i++) {
			const struct frag *f = &frags->v[i];
			rc = f->tok >= 0 ? frag_push(&next, f->off, f->len, f->tok)
			                 : split_fragment(t, s, f, t->special[k], &next);
			if (rc != 0)
				goto free_seen;
		}
		struct frag_vec tmp = *frags;
		*frags = next;
		next = tmp;
	}
	rc = 0;
free_seen:
	free(next.v);
	free(seen);
	return rc;
}

int eng_tokenize(const struct eng_tokenizer *t, const char *text, size_t len, unsigned flags,
                 int32_t **out, size_t *n_out)
{
	struct tok_ivec ids = {0};
	struct frag_vec frags = {0};
	bool prev_special = true; /* SPM: a space prefix for the first fragment */
	int rc = 0;

	*out = NULL;
	*n_out = 0;
	if (len > ENG_TOK_MAX_TEXT) {
		LOG_ERR("text of %zu bytes is longer than the %u the tokenizer takes", len, ENG_TOK_MAX_TEXT);
		return -EFBIG;
	}
	if ((flags & ENG_TOK_ADD_BOS)) {
		if (t->bos < 0) {
			LOG_ERR("ENG_TOK_ADD_BOS, but the vocabulary has no BOS token");
			return -EINVAL;
		}
		if ((rc = tok_ivec_push(&ids, t->bos)) != 0)
			goto free_all;
	}
	if (len > 0 && (rc = partition(t, text, len, flags & ENG_TOK_PARSE_SPECIAL, &frags)) != 0)
		goto free_all;
	for (size_t i = 0; i < frags.n; i++) {
		const struct frag *f = &frags.v[i];
		if (f->tok >= 0) {
			rc = tok_ivec_push(&ids, f->tok);
			prev_special = true;
		} else if (t->kind == ENG_TOK_KIND_SPM) {
			rc = tok_spm_encode(t, text + f->off, f->len, t->add_space_prefix && prev_special, &ids);
			prev_special = false;
		} else {
			rc = tok_bpe_encode(t, text + f->off, f->len, &ids);
		}
		if (rc != 0)
			goto free_all;
	}
	if (ids.n == 0 && !(ids.v = malloc(sizeof(int32_t)))) {
		rc = -ENOMEM;
		goto free_all;
	}
	*out = ids.v;
	*n_out = ids.n;
	ids.v = NULL;
free_all:
	free(ids.v);
	free(frags.v);
	return rc;
}

// ---- id → text

static int copy_out(const char *s, size_t n, char *buf, size_t cap)
{
	if (n > cap)
		return -ENOSPC;
	memcpy(buf, s, n);
	return (int)n;
}

/* llama_decode_text: each code point of a byte-level token is one byte. */
static int bpe_decode(const char *s, size_t n, char *buf, size_t cap)
{
	size_t w = 0;
	for (size_t pos = 0; pos < n;) {
		uint32_t cpt = eng_uni_decode(s, n, &pos);
		int b = eng_uni_cpt_to_byte(cpt);
		if (b >= 0) {
			if (w + 1 > cap)
				return -ENOSPC;
			buf[w++] = (char)b;
			continue;
		}
		/* not a byte-level character: llama.cpp writes this marker */
		char u[4], tmp[64];
		size_t m = eng_uni_encode(cpt, u), k = 0;
		k += (size_t)snprintf(tmp, sizeof(tmp), "[UNK_BYTE_0x");
		for (size_t j = 0; j < m; j++)
			k += (size_t)snprintf(tmp + k, sizeof(tmp) - k, "%02x", (unsigned char)u[j]);
		if (w + k + n + 1 > cap)
			return -ENOSPC;
		memcpy(buf + w, tmp, k);
		memcpy(buf + w + k, s, n);
		buf[w + k + n] = ']';
		w += k + n + 1;
	}
	return (int)w;
}

static int spm_unescape(const char *s, size_t n, char *buf, size_t cap)
{
	size_t w = 0;
	for (size_t i = 0; i < n;) {
		if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
			if (w + 1 > cap)
				return -ENOSPC;
			buf[w++] = ' ';
			i += 3;
		} else {
			if (w + 1 > cap)
				return -ENOSPC;
			buf[w++] = s[i++];
		}
	}
	return (int)w;
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int eng_token_piece(const struct eng_tokenizer *t, int32_t id, bool render_special, char *buf, size_t n)
{
	if (id < 0 || id >= t->n_vocab)
		return -EINVAL;
	const char *s = tok_str(t, id);
	size_t len = t->tok[id].len;
	uint16_t attr = t->tok[id].attr;

	if (attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
		if (!render_special && (attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL)))
			return 0;
		return copy_out(s, len, buf, n);
	}
	if (attr & TOK_ATTR_NORMAL)
		return t->kind == ENG_TOK_KIND_SPM ? spm_unescape(s, len, buf, n) : bpe_decode(s, len, buf, n);
	if (attr & TOK_ATTR_BYTE) {
		/* "<0xXX>": llama.cpp strtol()s the two characters after "<0x" */
		int hi = len > 3 ? hex_val(s[3]) : -1, lo = len > 4 ? hex_val(s[4]) : -1;
		char b = (char)(hi < 0 ? 0 : lo < 0 ? hi : hi * 16 + lo);
		return copy_out(&b, 1, buf, n);
	}
	return 0; /* UNUSED, UNDEFINED: nothing, as llama.cpp */
}

// ---- accessors

enum eng_tok_kind eng_tokenizer_kind(const struct eng_tokenizer *t) { return t->kind; }
const char *eng_tokenizer_pre(const struct eng_tokenizer *t) { return t->pre; }
int eng_tokenizer_n_vocab(const struct eng_tokenizer *t) { return t->n_vocab; }
int32_t eng_token_bos(const struct eng_tokenizer *t) { return t->bos; }
int32_t eng_token_eos(const struct eng_tokenizer *t) { return t->eos; }
bool eng_tokenizer_add_bos(const struct eng_tokenizer *t) { return t->add_bos; }
size_t eng_tokenizer_max_piece(const struct eng_tokenizer *t) { return t->max_piece; }

const char *eng_token_text(const struct eng_tokenizer *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab ? tok_str(t, id) : NULL;
}

int32_t eng_token_find(const struct eng_tokenizer *t, const char *text)
{
	return tok_lookup(t, text, strlen(text));
}

bool eng_token_is_eog(const struct eng_tokenizer *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab && t->eog[id];
}

bool eng_token_is_control(const struct eng_tokenizer *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab && (t->tok[id].attr & TOK_ATTR_CONTROL);
}
