/*
 * test_sample_top.c — eng_sample_top (the row known by its 64 largest
 * logits, the CUDA backend's path for constrained rows: cuda/forward.cu)
 * against eng_sample on the whole row, which test_sampler, sampler_ref
 * (llama.cpp) and grammar check on their own.
 *
 * The real Qwen2 vocabulary (151,936 tokens, shared/models/vocab) and
 * llama.cpp's json.gbnf; random rows of logits, some with a wide spread,
 * some nearly flat, some with every large logit on a token the grammar
 * refuses; the grammar state walks through a JSON text token by token so
 * that the allowed set changes (object start, keys, strings, numbers).
 * For each row and each setting (greedy; temperature with top_k 1, 40, 64;
 * top_p, min_p, typical_p, XTC; with and without the grammar): the top-64
 * path returns the same token as the whole row, or -EAGAIN exactly when
 * the grammar allows none of the unconstrained chain's survivors (greedy:
 * of the 64 largest), i.e. when the whole row's sampler masks the whole
 * vocabulary; its token is then one the grammar allows.
 *
 * Run: ctest -R sample_top   (needs PROMPTFS_SHARED, PROMPTFS_SRC)
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/grammar.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "gguf/gguf.h"
#include "gguf/log.h"

#define K 64

static uint64_t lcg = 99;
static double rnd(void)
{
	lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(lcg >> 11) * (1.0 / 9007199254740992.0);
}

static const float *base;
static int by_logit(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	if (base[x] != base[y])
		return base[x] > base[y] ? -1 : 1;
	return x - y;
}

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *t = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (t = malloc((size_t)len + 1)) && fread(t, 1, (size_t)len, f) == (size_t)len) {
		t[len] = 0;
		*n = (size_t)len;
	} else {
		free(t);
		t = NULL;
	}
	fclose(f);
	return t;
}

int main(void)
{
	const char *shared = getenv("PROMPTFS_SHARED"), *src = getenv("PROMPTFS_SRC");
	char path[4096];
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *tok = NULL;
	struct eng_grammar *gr = NULL;
	struct eng_grammar_state *st = NULL;
	struct eng_grammar_vocab *gv = NULL;
	size_t glen;
	char *gtext;
	int V, n_same = 0, n_again = 0;
	/* the JSON text whose tokens the grammar state walks through */
	static const char *json = "{\"name\": \"promptfs\", \"version\": 12, \"tags\": [\"fs\", \"llm\"], "
	                          "\"ok\": true, \"ratio\": -0.25e3, \"nested\": {\"a\": null}}";

	if (!shared || !src) {
		fprintf(stderr, "PROMPTFS_SHARED and PROMPTFS_SRC must be set\n");
		return 1;
	}
	pf_log_set_level(-1);
	snprintf(path, sizeof(path), "%s/models/vocab/ggml-vocab-qwen2.gguf", shared);
	if (gguf_open(path, &g) < 0 || eng_tokenizer_init(g, &tok) < 0) {
		fprintf(stderr, "cannot load %s\n", path);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/tests/grammars/json.gbnf", src);
	if (!(gtext = slurp(path, &glen)) || eng_grammar_parse("json.gbnf", gtext, glen, &gr) < 0 ||
	    eng_grammar_vocab_init(tok, &gv) < 0) {
		fprintf(stderr, "cannot load the grammar %s\n", path);
		return 1;
	}
	V = eng_tokenizer_n_vocab(tok);
	struct eng_sampler *s = eng_sampler_init(V);
	float *row = malloc(sizeof(float) * (size_t)V), *tmp = malloc(sizeof(float) * (size_t)V);
	int *ord = malloc(sizeof(int) * (size_t)V);
	int32_t *jt = NULL, ids[K];
	float vals[K];
	size_t njt = 0;

	if (!s || !row || !tmp || !ord || eng_tokenize(tok, json, strlen(json), 0, &jt, &njt) < 0 ||
	    eng_grammar_state_init(gr, &st) < 0) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	for (int step = 0; step <= (int)njt; step++) {
		for (int kind = 0; kind < 3; kind++) {
			/* 0: spread out; 1: nearly flat; 2: the 80 largest on refused tokens */
			for (int i = 0; i < V; i++)
				row[i] = kind == 1 ? (float)(rnd() * 0.01) : (float)(rnd() * 20.0 - 10.0);
			if (kind == 2)
				for (int i = 0, m = 0; i < V && m < 80; i++)
					if (!eng_grammar_token_ok(gv, st, i)) {
						row[i] = 30.0f + (float)rnd();
						m++;
					}
			for (int i = 0; i < V; i++)
				ord[i] = i;
			base = row;
			qsort(ord, (size_t)V, sizeof(*ord), by_logit);
			for (int i = 0; i < K; i++) {
				ids[i] = ord[i];
				vals[i] = row[ord[i]];
			}
			for (int c = 0; c < 16; c++) {
				struct eng_sample_req r;
				int32_t full, top;
				bool any = false;

				memset(&r, 0, sizeof(r));
				r.p.repeat_penalty = 1.0f;
				r.p.typical_p = 1.0f;
				r.p.xtc_threshold = 0.1f;
				r.p.temperature = c < 2 ? 0.0f : 0.8f;
				r.p.top_k = (int[]){ 40, 40, 1, 40, 64, 40, 40, 40, 40, 40, 64, 40, 40, 40, 40, 40 }[c];
				r.p.top_p = c == 5 || c == 12 ? 0.9f : 1.0f;
				r.p.min_p = c == 6 || c == 12 ? 0.05f : 0.0f;
				r.p.typical_p = c == 7 || c == 13 ? 0.7f : 1.0f;
				r.p.xtc_probability = c == 8 || c == 14 ? 0.5f : 0.0f;
				r.seed = 1234 + (uint64_t)c;
				r.draw = (uint64_t)(step * 3 + kind);
				if (c % 2 == 1 || c >= 9) {
					r.grammar = st;
					r.gvocab = gv;
				}
				memcpy(tmp, row, sizeof(float) * (size_t)V);
				full = eng_sample(s, tmp, &r);
				top = eng_sample_top(s, ids, vals, K, &r);
				/* what the whole row's grammar step sees first: the
				 * unconstrained chain's survivors (greedy: the 64 largest) */
				if (r.grammar) {
					struct eng_sample_req u = r;
					int32_t sid[K];
					float q[K];
					int ns;

					u.grammar = NULL;
					u.gvocab = NULL;
					memcpy(tmp, row, sizeof(float) * (size_t)V);
					ns = r.p.temperature > 0.0f ? eng_sample_survivors(s, tmp, &u, sid, q) : 0;
					for (int i = 0; i < (ns ? ns : K); i++)
						any |= eng_grammar_token_ok(gv, st, ns ? sid[i] : ids[i]);
				}
				if (top == -EAGAIN) {
					CHECK(r.grammar && !any && eng_grammar_token_ok(gv, st, full),
					      "step %d row %d setting %d: -EAGAIN with %s, a survivor allowed: %d; "
					      "the whole row's token %d", step, kind, c, r.grammar ? "a grammar" : "no grammar",
					      any, full);
					n_again++;
				} else {
					CHECK(top == full, "step %d row %d setting %d (T %g, top_k %d%s): top-64 gives %d, whole row %d",
					      step, kind, c, r.p.temperature, r.p.top_k, r.grammar ? ", grammar" : "", top, full);
					n_same++;
				}
			}
		}
		if (step < (int)njt && eng_grammar_accept_token(gv, st, jt[step]) < 0) {
			fprintf(stderr, "the grammar refused token %d of the JSON text\n", step);
			return 1;
		}
	}
	CHECK(n_again > 0 && n_same > 0, "%d rows equal through the top 64, %d needed the whole row", n_same,
	      n_again);
	printf("%d equal, %d needed the whole row (%zu JSON steps)\n", n_same, n_again, njt);
	eng_grammar_state_free(st);
	eng_grammar_vocab_free(gv);
	eng_grammar_unref(gr);
	eng_sampler_free(s);
	eng_tokenizer_free(tok);
	gguf_free(g);
	free(row);
	free(tmp);
	free(ord);
	free(jt);
	free(gtext);
	return check_summary();
}
