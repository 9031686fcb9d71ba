/*
 * tool_tokenize.c — tokenizer CLI for tests/test_tokenizer_ref.py (and for
 * people debugging a prompt).
 *
 *   tool_tokenize MODEL.gguf text STRING [special]   ids and pieces, readable
 *   tool_tokenize MODEL.gguf batch                   binary requests on stdin
 *   tool_tokenize MODEL.gguf info                    one line per fact (see below)
 *   tool_tokenize MODEL.gguf bench FILE              time to tokenize FILE
 *   tool_tokenize flags                              eng_uni_flags of every code
 *                                                    point, u16 little-endian, stdout
 *
 * batch: each request is  u8 op, u32 length (little-endian), payload;
 * one output line per request:
 *   't' / 'T'  payload = text; prints the ids (T: parse special tokens)
 *   'p' / 'P'  payload = ids as decimal text; prints the hex of the pieces
 *              concatenated (P: render special tokens)
 *   'd'        payload = ids; prints the hex of the streamed detokeniser
 *              output (eng_detok_push per piece, then flush)
 * An error prints "ERR <errno>".
 *
 * info prints: "kind spm|bpe", "pre NAME", "n_vocab N", "bos N", "eos N",
 * "add_bos 0|1", "eog ID..." and "control ID...".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/tokenizer.h"
#include "engine/unicode.h"
#include "gguf/gguf.h"

static int read_exact(void *buf, size_t n)
{
	return fread(buf, 1, n, stdin) == n ? 0 : -1;
}

static void print_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", (unsigned char)s[i]);
}

/* Parses decimal ids; returns the count (ids is large enough: n/2+1). */
static size_t parse_ids(const char *s, size_t n, int32_t *ids)
{
	size_t k = 0, i = 0;
	while (i < n) {
		while (i < n && (s[i] == ' ' || s[i] == ','))
			i++;
		if (i >= n)
			break;
		long v = 0;
		int neg = s[i] == '-';
		i += neg;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			v = v * 10 + (s[i++] - '0');
		ids[k++] = (int32_t)(neg ? -v : v);
		while (i < n && s[i] != ' ' && s[i] != ',')
			i++;
	}
	return k;
}

static int do_pieces(const struct eng_tokenizer *t, const int32_t *ids, size_t n, int op)
{
	size_t cap = eng_tokenizer_max_piece(t) + 1;
	char *piece = malloc(cap), *out = malloc(ENG_DETOK_OUT_MAX(cap));
	struct eng_detok d = {0};
	int rc = 0;

	if (!piece || !out) {
		rc = -ENOMEM;
		goto free_bufs;
	}
	for (size_t i = 0; i < n; i++) {
		int m = eng_token_piece(t, ids[i], op == 'P', piece, cap);
		if (m < 0) {
			rc = m;
			goto free_bufs;
		}
		if (op == 'd')
			print_hex(out, eng_detok_push(&d, piece, (size_t)m, out));
		else
			print_hex(piece, (size_t)m);
	}
	if (op == 'd')
		print_hex(out, eng_detok_flush(&d, out));
free_bufs:
	free(piece);
	free(out);
	return rc;
}

static int batch(const struct eng_tokenizer *t)
{
	unsigned char hdr[5];

	while (read_exact(hdr, 5) == 0) {
		size_t len = hdr[1] | (size_t)hdr[2] << 8 | (size_t)hdr[3] << 16 | (size_t)hdr[4] << 24;
		char *buf = malloc(len + 1);
		int rc = 0;
		if (!buf || read_exact(buf, len) != 0) {
			free(buf);
			return 1;
		}
		if (hdr[0] == 't' || hdr[0] == 'T') {
			int32_t *ids;
			size_t n;
			rc = eng_tokenize(t, buf, len, hdr[0] == 'T' ? ENG_TOK_PARSE_SPECIAL : 0, &ids, &n);
			for (size_t i = 0; rc == 0 && i < n; i++)
				printf(i ? " %d" : "%d", (int)ids[i]);
			if (rc == 0)
				free(ids);
		} else {
			int32_t *ids = malloc((len / 2 + 1) * sizeof(*ids));
			rc = ids ? do_pieces(t, ids, parse_ids(buf, len, ids), hdr[0]) : -ENOMEM;
			free(ids);
		}
		if (rc != 0)
			printf("ERR %d", -rc);
		printf("\n");
		fflush(stdout);
		free(buf);
	}
	return 0;
}

static void info(const struct eng_tokenizer *t)
{
	int n = eng_tokenizer_n_vocab(t);
	printf("kind %s\npre %s\nn_vocab %d\nbos %d\neos %d\nadd_bos %d\n",
	       eng_tokenizer_kind(t) == ENG_TOK_KIND_SPM ? "spm" : "bpe", eng_tokenizer_pre(t), n,
	       (int)eng_token_bos(t), (int)eng_token_eos(t), (int)eng_tokenizer_add_bos(t));
	printf("eog");
	for (int i = 0; i < n; i++)
		if (eng_token_is_eog(t, i))
			printf(" %d", i);
	printf("\ncontrol");
	for (int i = 0; i < n; i++)
		if (eng_token_is_control(t, i))
			printf(" %d", i);
	printf("\n");
}

static int bench(const struct eng_tokenizer *t, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 1;
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc(sz > 0 ? (size_t)sz : 1);
	if (!buf || fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
		fclose(f);
		free(buf);
		return 1;
	}
	fclose(f);
	struct timespec a, b;
	int32_t *ids;
	size_t n;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int rc = eng_tokenize(t, buf, (size_t)sz, 0, &ids, &n);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (rc == 0) {
		printf("%ld bytes -> %zu tokens in %.3f s\n", sz, n,
		       (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9);
		free(ids);
	}
	free(buf);
	return rc != 0;
}

int main(int argc, char **argv)
{
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *t = NULL;
	int rc = 1;

	if (argc == 2 && strcmp(argv[1], "flags") == 0) {
		for (uint32_t c = 0; c < ENG_UNI_MAX_CPT; c++) {
			uint16_t f = (uint16_t)eng_uni_flags(c);
			fwrite(&f, 2, 1, stdout);
		}
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: %s MODEL.gguf text STRING [special] | batch | info | bench FILE\n"
		                "       %s flags\n", argv[0], argv[0]);
		return 2;
	}
	if (gguf_open(argv[1], &g) != 0 || eng_tokenizer_init(g, &t) != 0) {
		fprintf(stderr, "%s: cannot load the tokenizer of %s\n", argv[0], argv[1]);
		goto free_all;
	}
	if (strcmp(argv[2], "batch") == 0) {
		rc = batch(t);
	} else if (strcmp(argv[2], "info") == 0) {
		info(t);
		rc = 0;
	} else if (strcmp(argv[2], "bench") == 0 && argc > 3) {
		rc = bench(t, argv[3]);
	} else if (strcmp(argv[2], "text") == 0 && argc > 3) {
		int32_t *ids;
		size_t n;
		char piece[1024];
		unsigned fl = argc > 4 ? ENG_TOK_PARSE_SPECIAL : 0;
		if (eng_tokenize(t, argv[3], strlen(argv[3]), fl, &ids, &n) == 0) {
			for (size_t i = 0; i < n; i++) {
				int m = eng_token_piece(t, ids[i], true, piece, sizeof(piece));
				printf("%6d  '%.*s'\n", (int)ids[i], m > 0 ? m : 0, piece);
			}
			free(ids);
			rc = 0;
		}
	} else {
		fprintf(stderr, "%s: unknown command '%s'\n", argv[0], argv[2]);
	}
free_all:
	eng_tokenizer_free(t);
	gguf_free(g);
	return rc;
}
