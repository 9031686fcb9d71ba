/*
 * test_sampler_grammar.c — the grammar step of the sampler chain
 * (sampler.h step 10, greedy under a grammar) against a plain computation
 * here, on the real Qwen2 vocabulary (151,936 tokens) and llama.cpp's
 * json.gbnf, in grammar states from the start of a reply to a complete
 * object (end of turn allowed).
 *
 * The reference never uses the sampler: allowed[] is eng_grammar_token_ok
 * for every token (the grammar module's per-token check, which
 * test_grammar.py holds to llama.cpp), the chain is computed in double by
 * plain sorting, and the draw is sampler.h step 11 written out again.
 *   greedy:      the arg max over the allowed tokens (lowest id on ties)
 *   temperature: survivors of the chain (top-k, softmax, min-p) that are
 *                allowed, in order; none → the chain over the allowed
 *                tokens only; the token drawn with the same (seed, draw)
 * Rows: random logits with an exponential tail (a few tokens within
 * min_p's reach, most of them allowed inside a string, few after '{'), and
 * rows whose 200 largest logits are all refused (so the sampler has to fall
 * back: to the largest logits' allowed tokens inside a string, to the
 * whole-vocabulary mask where few are allowed).  Logits are multiples of 1/4 (ties
 * further down) and min_p's cut, ln 0.05 = -2.996, is never
 * within 0.004 of one, so float and double agree on the survivors.
 *
 * Run: ctest -R sampler_grammar   (PROMPTFS_SHARED, PROMPTFS_SRC)
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/grammar.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "gguf/gguf.h"

static uint64_t lcg = 2024;
static double rnd(void)
{
	lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(lcg >> 11) * (1.0 / 9007199254740992.0);
}

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (b = malloc((size_t)len + 1)) && fread(b, 1, (size_t)len, f) == (size_t)len)
		*n = (size_t)len;
	else {
		free(b);
		b = NULL;
	}
	fclose(f);
	return b;
}

static const float *sort_l;
static int cmp_desc(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;

	if (sort_l[i] != sort_l[j])
		return sort_l[i] > sort_l[j] ? -1 : 1;
	return i - j;
}

/* The chain (top_k, softmax at 1, min_p; top_p off) over the tokens with
 * in[id] (all when NULL), in double; survivors in draw order into out. */
static int ref_chain(const float *l, int V, const bool *in, int top_k, double min_p, int *out)
{
	int *o = malloc(sizeof(int) * (size_t)V), n = 0, m = 0;

	for (int i = 0; i < V; i++)
		if (!in || in[i])
			o[n++] = i;
	sort_l = l;
	qsort(o, (size_t)n, sizeof(int), cmp_desc);
	if (top_k > 0 && top_k < n)
		n = top_k;
	for (int i = 0; i < n; i++)
		if (exp((double)l[o[i]] - l[o[0]]) >= min_p)
			out[m++] = o[i];
	free(o);
	return m;
}

/* Step 11 over the survivors s[0..n): q = exp((l - l0) / T), first whose
 * cumulative q exceeds u * sum. */
static int ref_draw(const float *l, const int *s, int n, double T, uint64_t seed, uint64_t draw)
{
	double sum = 0, cum = 0, u;

	for (int i = 0; i < n; i++)
		sum += exp((l[s[i]] - l[s[0]]) / T);
	u = eng_rng_uniform(seed, draw) * sum;
	for (int i = 0; i < n; i++) {
		cum += exp((l[s[i]] - l[s[0]]) / T);
		if (cum > u)
			return s[i];
	}
	return s[n - 1];
}

struct ctx {
	const struct eng_grammar_vocab *gv;
	struct eng_sampler *smp;
	int V;
	float *row, *tmp;
	bool *allowed;
	int *ref, *ref2;
	int32_t *ids;
	float *q;
};

/* One row in one grammar state: greedy and two temperature settings. */
static void check_row(struct ctx *c, struct eng_grammar_state *st, const char *what, uint64_t seed)
{
	struct eng_sample_req r = { .p = { .temperature = 0.0f, .top_k = 40, .top_p = 1.0f, .min_p = 0.05f,
	                                   .repeat_penalty = 1.0f },
	                            .seed = seed, .grammar = st, .gvocab = c->gv };
	int best = -1, V = c->V;

	for (int i = 0; i < V; i++)
		if (c->allowed[i] && (best < 0 || c->row[i] > c->row[best]))
			best = i;
	memcpy(c->tmp, c->row, sizeof(float) * (size_t)V);
	CHECK(eng_sample(c->smp, c->tmp, &r) == best, "%s: greedy is not the best allowed token %d", what, best);
	for (int k = 0; k < 2; k++) {
		int top_k = k ? 0 : 40, n, m = 0, bad = -1;

		r.p.temperature = 0.8f;
		r.p.top_k = top_k;
		n = ref_chain(c->row, V, NULL, top_k, 0.05, c->ref);
		for (int i = 0; i < n; i++)
			if (c->allowed[c->ref[i]])
				c->ref2[m++] = c->ref[i];
		if (m == 0)
			m = ref_chain(c->row, V, c->allowed, top_k, 0.05, c->ref2);
		memcpy(c->tmp, c->row, sizeof(float) * (size_t)V);
		n = eng_sample_survivors(c->smp, c->tmp, &r, c->ids, c->q);
		for (int i = 0; i < m && i < n && bad < 0; i++)
			if (c->ids[i] != c->ref2[i])
				bad = i;
		CHECK(n == m && bad < 0, "%s top_k %d: %d survivors, the reference %d (first difference at %d)", what,
		      top_k, n, m, bad);
		for (uint64_t d = 0; d < 8 && m > 0; d++) {
			int want = ref_draw(c->row, c->ref2, m, 0.8, seed, d), got;

			r.draw = d;
			memcpy(c->tmp, c->row, sizeof(float) * (size_t)V);
			got = eng_sample(c->smp, c->tmp, &r);
			CHECK(got == want, "%s top_k %d draw %d: token %d, the reference %d", what, top_k, (int)d, got, want);
		}
	}
}

/* An exponential tail (as a model's logits have): a handful of tokens
 * within min_p's reach of the top, ties further down. */
static void fill_random(float *row, int V)
{
	for (int i = 0; i < V; i++)
		row[i] = (float)(int)(-log(1.0 - rnd()) * 6.0) * 0.25f - 6.0f;
}

/* The 200 largest logits all on refused tokens, the sampler must fall
 * back; below them 300 tokens (allowed or not) within a logit of each
 * other, so that min_p keeps all of the top-k allowed ones. */
static void fill_refused_top(float *row, const bool *allowed, int V)
{
	int n = 0;

	fill_random(row, V);
	for (int i = 0; i < 300; i++)
		row[(int)(rnd() * V)] = 15.0f + (float)(i % 4) * 0.25f;
	for (int i = 0; i < V && n < 200; i++) {
		int t = (int)(rnd() * V);

		if (!allowed[t]) {
			row[t] = 20.0f + (float)(n % 8) * 0.25f;
			n++;
		}
	}
}

int main(void)
{
	static const char *const prefixes[] = {
		"", "{", "{\"na", "{\"name\": ", "{\"name\": \"Bud", "{\"age\": 12", "{\"a\": [1, ", "{\"a\": {\"b\": true",
		"{\"a\": 1}",
	};
	const char *shared = getenv("PROMPTFS_SHARED"), *src = getenv("PROMPTFS_SRC");
	char path[4096];
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *tok = NULL;
	struct eng_grammar_vocab *gv = NULL;
	struct eng_grammar *gr = NULL;
	struct ctx c = { 0 };
	size_t glen = 0;
	char *gtext;

	if (!shared || !src) {
		fprintf(stderr, "FAIL: PROMPTFS_SHARED and PROMPTFS_SRC must be set (run through ctest)\n");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/models/vocab/ggml-vocab-qwen2.gguf", shared);
	if (gguf_open(path, &g) || eng_tokenizer_init(g, &tok) || eng_grammar_vocab_init(tok, &gv)) {
		fprintf(stderr, "FAIL: cannot load the vocabulary %s\n", path);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/tests/grammars/json.gbnf", src);
	if (!(gtext = slurp(path, &glen)) || eng_grammar_parse("json.gbnf", gtext, glen, &gr) < 0) {
		fprintf(stderr, "FAIL: cannot load the grammar %s\n", path);
		return 1;
	}
	c.gv = gv;
	c.V = eng_tokenizer_n_vocab(tok);
	c.smp = eng_sampler_init(c.V);
	c.row = malloc(sizeof(float) * (size_t)c.V);
	c.tmp = malloc(sizeof(float) * (size_t)c.V);
	c.q = malloc(sizeof(float) * (size_t)c.V);
	c.allowed = malloc((size_t)c.V);
	c.ref = malloc(sizeof(int) * (size_t)c.V);
	c.ref2 = malloc(sizeof(int) * (size_t)c.V);
	c.ids = malloc(sizeof(int32_t) * (size_t)c.V);
	for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
		struct eng_grammar_state *st = NULL;
		char what[96];
		int n_ok = 0;

		if (eng_grammar_state_init(gr, &st) < 0 ||
		    eng_grammar_state_accept(st, prefixes[p], strlen(prefixes[p])) < 0) {
			CHECK(0, "json.gbnf refuses the prefix '%s'", prefixes[p]);
			eng_grammar_state_free(st);
			continue;
		}
		for (int i = 0; i < c.V; i++)
			n_ok += c.allowed[i] = eng_grammar_token_ok(gv, st, i);
		printf("after '%s': %d tokens allowed\n", prefixes[p], n_ok);
		for (int k = 0; k < 3; k++) {
			snprintf(what, sizeof(what), "after '%s', random row %d", prefixes[p], k);
			fill_random(c.row, c.V);
			check_row(&c, st, what, 100 + p * 10 + (uint64_t)k);
		}
		snprintf(what, sizeof(what), "after '%s', top refused", prefixes[p]);
		fill_refused_top(c.row, c.allowed, c.V);
		check_row(&c, st, what, 7 + p);
		eng_grammar_state_free(st);
	}
	free(c.row);
	free(c.tmp);
	free(c.q);
	free(c.allowed);
	free(c.ref);
	free(c.ref2);
	free(c.ids);
	eng_sampler_free(c.smp);
	eng_grammar_unref(gr);
	free(gtext);
	eng_grammar_vocab_free(gv);
	eng_tokenizer_free(tok);
	gguf_free(g);
	return check_summary();
}
