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
 *   tool_grammar schema FILE.json
 *       prints the GBNF eng_json_schema_to_gbnf makes of the JSON Schema,
 *       or "REFUSED" (the reason is logged on stderr).
 *   tool_grammar check-schema FILE.json < records
 *       as check, on the grammar of the JSON Schema.
 *   tool_grammar sample N SEED FILE.json
 *       N random sentences of the schema's grammar (a seeded walk that
 *       picks each next character among those the grammar allows, ending
 *       once the text is complete, more eagerly the longer it gets), each
 *       printed as "<len>\n<bytes>\n"; walks past 4000 bytes are dropped.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar.h"
#include "engine/json_schema.h"
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

/* The characters a walk may pick: printable ASCII, \n \t, a few
 * multi-byte UTF-8 characters. */
static const char *walk_chars[128];
static int n_walk_chars;

static void walk_init(void)
{
	static char ascii[128][2];
	static const char *const multi[] = { "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80" };

	for (int ch = 0x20; ch < 0x7f; ch++) {
		ascii[ch][0] = (char)ch;
		walk_chars[n_walk_chars++] = ascii[ch];
	}
	walk_chars[n_walk_chars++] = "\n";
	walk_chars[n_walk_chars++] = "\t";
	for (int i = 0; i < 3; i++)
		walk_chars[n_walk_chars++] = multi[i];
}

static uint64_t rng(uint64_t *s)
{
	*s += 0x9E3779B97F4A7C15ull;
	uint64_t x = *s;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static int sample(struct eng_grammar *g, int n, uint64_t seed)
{
	const char *ok[sizeof(walk_chars) / sizeof(walk_chars[0])];
	char *out = malloc(4096 + 8);

	walk_init();
	for (int k = 0; out && k < n; k++) {
		struct eng_grammar_state *st;
		size_t len = 0;

		if (eng_grammar_state_init(g, &st) < 0)
			return 1;
		while (len < 4000) {
			int m = 0;

			/* stop with probability len/400 once complete */
			if (eng_grammar_state_complete(st) && rng(&seed) % 400 < len)
				break;
			for (int i = 0; i < n_walk_chars; i++)
				if (eng_grammar_state_allows(st, walk_chars[i], strlen(walk_chars[i])))
					ok[m++] = walk_chars[i];
			if (m == 0)
				break; /* complete, nothing can follow */
			const char *pick = ok[rng(&seed) % (uint64_t)m];
			size_t pl = strlen(pick);

			eng_grammar_state_accept(st, pick, pl);
			memcpy(out + len, pick, pl);
			len += pl;
		}
		if (len < 4000 && eng_grammar_state_complete(st)) {
			printf("%zu\n", len);
			fwrite(out, 1, len, stdout);
			printf("\n");
		}
		eng_grammar_state_free(st);
	}
	free(out);
	return 0;
}

int main(int argc, char **argv)
{
	struct eng_grammar *g = NULL;
	const char *gpath;
	size_t n;
	char *text;
	int rc;

	bool schema;

	if (argc == 5 && !strcmp(argv[1], "sample"))
		argv[1] = "schema"; /* sample N SEED FILE: the schema path with a walk */
	if (argc < 3 || (strcmp(argv[1], "check") && strcmp(argv[1], "mask") && strcmp(argv[1], "schema") &&
	                 strcmp(argv[1], "check-schema")) || (!strcmp(argv[1], "mask") && argc < 4)) {
		fprintf(stderr, "usage: tool_grammar check FILE.gbnf | mask VOCAB.gguf FILE.gbnf | schema FILE.json | "
		        "check-schema FILE.json | sample N SEED FILE.json  (records on stdin)\n");
		return 2;
	}
	gpath = argv[argc - 1];
	if (!(text = slurp(gpath, &n))) {
		fprintf(stderr, "cannot read %s\n", gpath);
		return 1;
	}
	schema = !strcmp(argv[1], "schema") || !strcmp(argv[1], "check-schema");
	if (schema) {
		char *gbnf;
		size_t glen;

		rc = eng_json_schema_to_gbnf(gpath, text, n, &gbnf, &glen);
		free(text);
		if (rc < 0) {
			printf("REFUSED\n");
			return rc == -EINVAL ? 0 : 1;
		}
		if (!strcmp(argv[1], "schema") && argc > 3) {
			struct eng_grammar *sg = NULL;

			rc = eng_grammar_parse(gpath, gbnf, glen, &sg) < 0 ? 1 : sample(sg, atoi(argv[2]), strtoull(argv[3], NULL, 10));
			eng_grammar_unref(sg);
			free(gbnf);
			return rc;
		}
		if (!strcmp(argv[1], "schema")) {
			fwrite(gbnf, 1, glen, stdout);
			free(gbnf);
			return 0;
		}
		text = gbnf;
		n = glen;
	}
	if (eng_grammar_parse(gpath, text, n, &g) < 0) {
		printf("REFUSED\n");
		free(text);
		return 0;
	}
	free(text);
	rc = strcmp(argv[1], "mask") ? check(g) : mask(g, argv[2]);
	eng_grammar_unref(g);
	return rc;
}
