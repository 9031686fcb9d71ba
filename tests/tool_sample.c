/*
 * tool_sample.c — runs engine/sampler.c's chain on fixed logits, for
 * tests/test_sampler_ref.py (which runs llama.cpp's samplers on the same).
 *
 *   tool_sample VOCAB.gguf < cases
 * Each case on stdin, whitespace separated:
 *   temperature top_k top_p min_p repeat_penalty presence frequency typical
 *   dry_multiplier dry_base dry_allowed_length xtc_probability xtc_threshold
 *   seed draw n_top
 *   n_recent ids…   n_dry ids…   n_bias (id bias)…
 *   LOGITS_FILE (V float32, the vocabulary's size)
 * Output per case: "n" then n lines "id q" (eng_sample_survivors: ids in
 * draw order, q = the final probabilities), then "lp LOGPROB_OF_FIRST"
 * and "top id lp …" (the raw log-softmax report), then "token ID"
 * (eng_sample on a fresh copy).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "gguf/gguf.h"

static int read_ids(int32_t **v, int *n)
{
	if (scanf("%d", n) != 1 || *n < 0 || *n > (1 << 20))
		return -1;
	*v = malloc(sizeof(**v) * (size_t)(*n + 1));
	for (int i = 0; *v && i < *n; i++)
		if (scanf("%d", &(*v)[i]) != 1)
			return -1;
	return *v ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *t = NULL;
	struct eng_sampler *smp;
	unsigned char *breakers;
	int V;

	if (argc != 2 || gguf_open(argv[1], &g) != 0 || eng_tokenizer_init(g, &t) != 0) {
		fprintf(stderr, "usage: tool_sample VOCAB.gguf < cases\n");
		return 2;
	}
	V = eng_tokenizer_n_vocab(t);
	smp = eng_sampler_init(V);
	breakers = eng_dry_breakers_build(t);
	float *logits = malloc(sizeof(float) * (size_t)V), *copy = malloc(sizeof(float) * (size_t)V);
	float *q = malloc(sizeof(float) * (size_t)V);
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)V);
	if (!smp || !breakers || !logits || !copy || !q || !ids)
		return 1;
	for (;;) {
		struct eng_sample_req r = { 0 };
		struct eng_sample_lp lp = { 0 };
		unsigned long long seed, draw;
		int32_t *rec = NULL, *dry = NULL;
		struct eng_logit_bias *bias = NULL;
		int n_rec, n_dry, n_bias;
		char path[4096];
		FILE *f;

		if (scanf("%f %d %f %f %f %f %f %f %f %f %d %f %f %llu %llu %d", &r.p.temperature, &r.p.top_k,
		          &r.p.top_p, &r.p.min_p, &r.p.repeat_penalty, &r.p.presence_penalty,
		          &r.p.frequency_penalty, &r.p.typical_p, &r.p.dry_multiplier, &r.p.dry_base,
		          &r.p.dry_allowed_length, &r.p.xtc_probability, &r.p.xtc_threshold, &seed, &draw,
		          &lp.n_top) != 16)
			break;
		if (read_ids(&rec, &n_rec) < 0 || read_ids(&dry, &n_dry) < 0 || scanf("%d", &n_bias) != 1)
			return 1;
		bias = malloc(sizeof(*bias) * (size_t)(n_bias + 1));
		for (int i = 0; i < n_bias; i++) {
			char b[64];

			if (scanf("%d %63s", &bias[i].id, b) != 2)
				return 1;
			bias[i].bias = strtof(b, NULL);
		}
		if (scanf("%4095s", path) != 1 || !(f = fopen(path, "rb")) ||
		    fread(logits, sizeof(float), (size_t)V, f) != (size_t)V)
			return 1;
		fclose(f);
		r.seed = seed;
		r.draw = draw;
		r.recent = rec;
		r.n_recent = n_rec;
		r.dry_hist = dry;
		r.n_dry_hist = n_dry;
		r.dry_breaker = breakers;
		r.bias = bias;
		r.n_bias = n_bias;
		memcpy(copy, logits, sizeof(float) * (size_t)V);
		int n = eng_sample_survivors(smp, copy, &r, ids, q);
		printf("%d\n", n);
		for (int i = 0; i < (n ? n : 1); i++)
			printf("%d %.9g\n", ids[i], n ? q[i] : 1.0);
		memcpy(copy, logits, sizeof(float) * (size_t)V);
		r.lp = &lp;
		int tok = eng_sample(smp, copy, &r);
		printf("lp %.9g\ntop", lp.logprob);
		for (int i = 0; i < lp.n_top; i++)
			printf(" %d %.9g", lp.top_id[i], lp.top_lp[i]);
		printf("\ntoken %d\n", tok);
		fflush(stdout);
		free(rec);
		free(dry);
		free(bias);
	}
	free(logits);
	free(copy);
	free(q);
	free(ids);
	free(breakers);
	eng_sampler_free(smp);
	eng_tokenizer_free(t);
	gguf_free(g);
	return 0;
}
