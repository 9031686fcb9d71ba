/*
 * tool_grammar.c — drives engine/grammar.* for tests/test_grammar.py.
 *
 *   tool_grammar check FILE.gbnf < records
 *       records: "<len>\n<len bytes>" repeated.  Prints "REFUSED" if the
 *       grammar does not parse, else for each record one line
 *       "<index of the first rejected byte, or -1> <1 if complete>",
 *       feeding the bytes one at a time (as single-byte tokens would).
 *   tool_grammar mask VOCAB.gguf FILE.gbnf < records
 *       for each record (a text prefix the grammar must accept): one line
 *       with the ids eng_grammar_mask allows next, and a second with the
 *       ids eng_grammar_token_ok allows (they must agree).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar.h"
#include "engine/tokenizer.h"
#include "gguf/gguf.h"

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (b = malloc((size_t)len + 1)) && fread(b, 1, (size_t)len, f) == (size_t)len) {
		*n = (size_t)len;
	} else {
		free(b);
		b = NULL;
	}
	fclose(f);
	return b;
}

static char *next_record(size_t *n)
{
	size_t len;
	char *b;

	if (scanf("%zu", &len) != 1 || getchar() != '\n')
		return NULL;
	b = malloc(len + 1);
	if (!b || fread(b, 1, len, stdin) != len) {
		free(b);
		return NULL;
	}
	*n = len;
	return b;
}

static int check(struct eng_grammar *g)
{
	size_t n;
	char *r;

	while ((r = next_record(&n))) {
		struct eng_grammar_state *st;
		long bad = -1;

		if (eng_grammar_state_init(g, &st) < 0)
			return 1;
		for (size_t i = 0; i < n && bad < 0; i++)
			if (eng_grammar_state_accept(st, r + i, 1) < 0)
				bad = (long)i;
		printf("%ld %d\n", bad, bad < 0 && eng_grammar_state_complete(st));
		eng_grammar_state_free(st);
		free(r);
	}
	return 0;
}

static int mask(struct eng_grammar *g, const char *vocab)
{
	struct gguf_ctx *ctx = NULL;
	struct eng_tokenizer *t = NULL;
	struct eng_grammar_vocab *v = NULL;
	size_t n;
	char *r;
	int rc = 1;

	if (gguf_open(vocab, &ctx) != 0 || eng_tokenizer_init(ctx, &t) != 0 || eng_grammar_vocab_init(t, &v) != 0)
		goto out;
	int V = eng_tokenizer_n_vocab(t);
	bool *allowed = malloc((size_t)V);
	while (allowed && (r = next_record(&n))) {
		struct eng_grammar_state *st;

		if (eng_grammar_state_init(g, &st) < 0 || eng_grammar_state_accept(st, r, n) < 0) {
			printf("PREFIX-REJECTED\nPREFIX-REJECTED\n");
		} else {
			int k = eng_grammar_mask(v, st, allowed);

			for (int i = 0; i < V; i++)
				if (allowed[i])
					printf("%d ", i);
			printf("\n");
			for (int i = 0; i < V; i++)
				if (eng_grammar_token_ok(v, st, i))
					printf("%d ", i);
			printf("\n");
			fprintf(stderr, "allowed %d\n", k);
		}
		eng_grammar_state_free(st);
		free(r);
	}
	free(allowed);
	rc = 0;
out:
	eng_grammar_vocab_free(v);
	eng_tokenizer_free(t);
	gguf_free(ctx);
	return rc;
}

int main(int argc, char **argv)
{
	struct eng_grammar *g = NULL;
	const char *gpath;
	size_t n;
	char *text;
	int rc;

	if (argc < 3 || (strcmp(argv[1], "check") && strcmp(argv[1], "mask")) || (!strcmp(argv[1], "mask") && argc < 4)) {
		fprintf(stderr, "usage: tool_grammar check FILE.gbnf | mask VOCAB.gguf FILE.gbnf  (records on stdin)\n");
		return 2;
	}
	gpath = argv[argc - 1];
	if (!(text = slurp(gpath, &n))) {
		fprintf(stderr, "cannot read %s\n", gpath);
		return 1;
	}
	if (eng_grammar_parse(gpath, text, n, &g) < 0) {
		printf("REFUSED\n");
		free(text);
		return 0;
	}
	free(text);
	rc = !strcmp(argv[1], "check") ? check(g) : mask(g, argv[2]);
	eng_grammar_unref(g);
	return rc;
}
