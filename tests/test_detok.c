/*
 * test_detok.c — the streaming detokeniser (eng_detok_push / _flush).
 *
 *   - the Unicode Standard's own examples of U+FFFD substitution of maximal
 *     subparts (Tables 3-8 … 3-11, Unicode 15 §3.9) give the standard's
 *     output, whatever way the bytes are cut into pieces;
 *   - random byte streams cut at random: every chunk written is valid UTF-8
 *     (checked by an RFC 3629 validator written here), never longer than
 *     ENG_DETOK_OUT_MAX, and the chunks always concatenate to the same
 *     text; valid input comes out byte for byte;
 *   - real tokens: an emoji that the Qwen2 vocabulary writes as several
 *     byte-level tokens, and text SentencePiece spells with <0xXX> byte
 *     tokens, stream out whole — no chunk holds part of a character.
 *
 * Run: ctest -R detok  (needs PROMPTFS_SHARED)
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "gguf/gguf.h"
#include "check.h"



/* RFC 3629 §4 (UTF8-octets ABNF), independent of engine/unicode.c. */
static bool valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		unsigned char lo = 0x80, hi = 0xBF;
		if (c <= 0x7F) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			lo = c == 0xE0 ? 0xA0 : 0x80;
			hi = c == 0xED ? 0x9F : 0xBF;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			lo = c == 0xF0 ? 0x90 : 0x80;
			hi = c == 0xF4 ? 0x8F : 0xBF;
		} else {
			return false;
		}
		if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				return false;
		i += len;
	}
	return true;
}

/* Streams s[0..n) cut at the given lengths (cuts[] cycles); checks every
 * chunk; returns the concatenation (malloc'd) in *out. */
static size_t stream(const unsigned char *s, size_t n, const size_t *cuts, size_t n_cuts, char **out)
{
	struct eng_detok d = {0};
	char *all = malloc(3 * n + 16), chunk[ENG_DETOK_OUT_MAX(64)];
	size_t w = 0, i = 0, k = 0;

	while (i < n) {
		size_t len = cuts[k++ % n_cuts];
		if (len > 64)
			len = 64;
		if (len > n - i)
			len = n - i;
		memset(chunk, 0x55, sizeof(chunk));
		size_t m = eng_detok_push(&d, (const char *)s + i, len, chunk);
		CHECK(m <= ENG_DETOK_OUT_MAX(len), "push of %zu bytes wrote %zu", len, m);
		CHECK(valid_utf8((unsigned char *)chunk, m), "chunk of %zu bytes is not valid UTF-8", m);
		memcpy(all + w, chunk, m);
		w += m;
		i += len;
	}
	size_t m = eng_detok_flush(&d, chunk);
	CHECK(m <= 8 && valid_utf8((unsigned char *)chunk, m), "flush wrote %zu bytes", m);
	memcpy(all + w, chunk, m);
	w += m;
	*out = all;
	return w;
}

// ---- the Unicode Standard's examples

struct example {
	const char *in;
	size_t n_in;
	const char *want; /* U+FFFD written as "\xef\xbf\xbd" */
};

#define R "\xef\xbf\xbd"
static const struct example k_examples[] = {
	/* Table 3-8: maximal subparts */
	{"\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64", 13, "a" R R R "b" R "c" R R "d"},
	/* Table 3-9: non-shortest forms */
	{"\xC0\xAF\xE0\x80\xBF\xF0\x81\x82\x41", 9, R R R R R R R R "A"},
	/* Table 3-10: surrogates */
	{"\xED\xA0\x80\xED\xBF\xBF\xED\xAF\x41", 9, R R R R R R R R "A"},
	/* Table 3-11: other ill-formed sequences */
	{"\xF4\x91\x92\x93\xFF\x41\x80\xBF\x42", 9, R R R R R "A" R R "B"},
	/* Table 3-12: truncated sequences */
	{"\xE1\x80\xE2\xF0\x91\x92\xF1\xBF\x41", 9, R R R R "A"},
	/* incomplete at the very end: one U+FFFD at flush */
	{"ok\xF0\x9F\xA6", 5, "ok" R},
	{"\xE2\x82", 2, R},
	/* valid text passes untouched */
	{"caf\xC3\xA9 \xF0\x9F\xA6\x99 \xE4\xB8\xAD", 14, "caf\xC3\xA9 \xF0\x9F\xA6\x99 \xE4\xB8\xAD"},
	{"\xF4\x8F\xBF\xBF\x00x", 6, "\xF4\x8F\xBF\xBF\x00x"},
};
#undef R

static void test_examples(void)
{
	static const size_t cut_sets[][4] = {{1}, {2}, {3}, {4}, {64}, {1, 2}, {2, 1, 3}, {3, 1}, {5, 2}};
	static const size_t n_cuts[] = {1, 1, 1, 1, 1, 2, 3, 2, 2};

	for (size_t e = 0; e < sizeof(k_examples) / sizeof(k_examples[0]); e++) {
		const struct example *x = &k_examples[e];
		size_t want_len = strlen(x->want) + (e == 8 ? 2 : 0); /* the NUL in example 8 */
		for (size_t c = 0; c < sizeof(n_cuts) / sizeof(n_cuts[0]); c++) {
			char *out;
			size_t n = stream((const unsigned char *)x->in, x->n_in, cut_sets[c], n_cuts[c], &out);
			CHECK(n == want_len && memcmp(out, x->want, n) == 0,
			      "example %zu cut %zu: got %zu bytes, want %zu", e, c, n, want_len);
			free(out);
		}
	}
}

// ---- random streams

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static void test_random(void)
{
	static const unsigned char pool[] = {'a', ' ', 0x00, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1,
	                                     0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF, 0xA0, 0x90, 0x8F, 0x9F};
	unsigned char buf[400];

	for (int iter = 0; iter < 2000; iter++) {
		size_t n = 1 + next() % sizeof(buf);
		bool valid_only = iter % 4 == 0;
		for (size_t i = 0; i < n; i++)
			buf[i] = pool[next() % sizeof(pool)];
		if (valid_only) { /* random code points, encoded */
			size_t w = 0;
			while (w + 4 <= n) {
				uint32_t c = next() % 0x110000;
				if (c >= 0xD800 && c <= 0xDFFF)
					c = 'x';
				if (c < 0x80) {
					buf[w++] = (unsigned char)c;
				} else if (c < 0x800) {
					buf[w++] = (unsigned char)(0xC0 | c >> 6);
					buf[w++] = (unsigned char)(0x80 | (c & 0x3F));
				} else if (c < 0x10000) {
					buf[w++] = (unsigned char)(0xE0 | c >> 12);
					buf[w++] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
					buf[w++] = (unsigned char)(0x80 | (c & 0x3F));
				} else {
					buf[w++] = (unsigned char)(0xF0 | c >> 18);
					buf[w++] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
					buf[w++] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
					buf[w++] = (unsigned char)(0x80 | (c & 0x3F));
				}
			}
			n = w ? w : 1;
			if (!w)
				buf[0] = 'z';
		}
		size_t whole_cut = sizeof(buf), cuts[8];
		for (int k = 0; k < 8; k++)
			cuts[k] = 1 + next() % 7;
		char *a, *b;
		size_t na = stream(buf, n, &whole_cut, 1, &a);
		size_t nb = stream(buf, n, cuts, 8, &b);
		CHECK(na == nb && memcmp(a, b, na) == 0, "iteration %d: chunking changed the output", iter);
		if (valid_only)
			CHECK(na == n && memcmp(a, buf, n) == 0, "iteration %d: valid UTF-8 was altered", iter);
		free(a);
		free(b);
	}
}

// ---- real tokens

static void test_tokens(const char *path, const char *text, bool want_split)
{
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *t = NULL;
	int32_t *ids = NULL;
	size_t n = 0, w = 0;
	char out[1024], piece[512];
	struct eng_detok d = {0};
	bool split = false;

	if (gguf_open(path, &g) != 0 || eng_tokenizer_init(g, &t) != 0) {
		CHECK(0, "cannot load %s", path);
		goto free_all;
	}
	CHECK(eng_tokenize(t, text, strlen(text), 0, &ids, &n) == 0, "tokenize '%s'", text);
	for (size_t i = 0; i < n; i++) {
		int m = eng_token_piece(t, ids[i], false, piece, sizeof(piece));
		CHECK(m >= 0, "piece of %d", (int)ids[i]);
		if (m < 0)
			break;
		split |= !valid_utf8((unsigned char *)piece, (size_t)m);
		char chunk[ENG_DETOK_OUT_MAX(512)];
		size_t k = eng_detok_push(&d, piece, (size_t)m, chunk);
		CHECK(valid_utf8((unsigned char *)chunk, k), "%s: chunk after token %d is not valid UTF-8", path, (int)ids[i]);
		if (w + k < sizeof(out)) {
			memcpy(out + w, chunk, k);
			w += k;
		}
	}
	w += eng_detok_flush(&d, out + w);
	bool spm = eng_tokenizer_kind(t) == ENG_TOK_KIND_SPM;
	size_t len = strlen(text);
	CHECK(spm ? w == len + 1 && out[0] == ' ' && memcmp(out + 1, text, len) == 0
	          : w == len && memcmp(out, text, len) == 0,
	      "%s: '%s' streamed back as '%.*s'", path, text, (int)w, out);
	/* the case this test is about must really occur */
	CHECK(split == want_split, "%s: '%s' %s split a character across tokens", path, text,
	      want_split ? "did not" : "did");
free_all:
	free(ids);
	eng_tokenizer_free(t);
	gguf_free(g);
}

int main(void)
{
	const char *shared = getenv("PROMPTFS_SHARED");
	char qwen[1024], spm[1024], stories[1024];

	if (!shared) {
		fprintf(stderr, "PROMPTFS_SHARED is not set\n");
		return 1;
	}
	snprintf(qwen, sizeof(qwen), "%s/models/vocab/ggml-vocab-qwen2.gguf", shared);
	snprintf(spm, sizeof(spm), "%s/models/vocab/ggml-vocab-llama-spm.gguf", shared);
	snprintf(stories, sizeof(stories), "%s/models/stories260K.gguf", shared);

	test_examples();
	test_random();
	test_tokens(qwen, " \xf0\x9f\xa6\x99", true); /* " 🦙": three byte-level tokens */
	test_tokens(qwen, "llama \xf0\x9f\xa6\x99\xf0\x9f\xa6\x99 done", true);
	test_tokens(qwen, "plain ASCII text", false);
	test_tokens(spm, "\xf0\x9f\xa6\x99 \xe4\xb8\xad\xe6\x96\x87", true); /* byte fallback */
	test_tokens(stories, "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80", true);
	return check_summary();
}
