/*
 * sampler.c — the reference token sampler: the exact chain of sampler.h
 * (repetition penalty, greedy, top-k, softmax, top-p, min-p, temperature,
 * seeded draw), on one row of V logits in host memory.
 *
 * Every backend's device sampler follows the same chain; this file is the
 * definition the CPU backend calls and the tests check (tests/test_sampler.c).
 *
 * Cost: O(V) for the penalty, the softmax and the min-p filter; the sort is
 * over the survivors only (k of them with top-k, the min-p survivors
 * otherwise), so the defaults (top_k 40) cost well under a millisecond for
 * V = 152k.
 */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cand {
	float l; /* logit (after the penalty) */
	float e; /* exp(l - max): unnormalised p */
	int32_t id;
};

struct eng_sampler {
	int n_vocab;
	struct cand *c;       /* [V] candidates */
	unsigned char *seen;  /* [V] penalty marks, all zero between calls */
};

struct eng_sampler *eng_sampler_init(int n_vocab)
{
	struct eng_sampler *s;

	if (n_vocab <= 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->n_vocab = n_vocab;
	s->c = malloc(sizeof(*s->c) * (size_t)n_vocab);
	s->seen = calloc((size_t)n_vocab, 1);
	if (!s->c || !s->seen) {
		eng_sampler_free(s);
		return NULL;
	}
	return s;
}

void eng_sampler_free(struct eng_sampler *s)
{
	if (!s)
		return;
	free(s->c);
	free(s->seen);
	free(s);
}

// ---- orderings

/* a before b: larger logit first, lower id on ties (top-k, greedy). */
static inline bool logit_before(const struct cand *a, const struct cand *b)
{
	return a->l > b->l || (a->l == b->l && a->id < b->id);
}

static int cmp_logit(const void *pa, const void *pb)
{
	const struct cand *a = pa, *b = pb;

	if (logit_before(a, b))
		return -1;
	return logit_before(b, a) ? 1 : 0;
}

/* Step 5's order: p descending, id ascending.  p = e / sum with one common
 * sum, so ordering by e is ordering by p. */
static int cmp_prob(const void *pa, const void *pb)
{
	const struct cand *a = pa, *b = pb;

	if (a->e != b->e)
		return a->e > b->e ? -1 : 1;
	return a->id < b->id ? -1 : (a->id > b->id);
}

// ---- steps

/* 1. l[t] /= penalty (positive) or *= penalty (negative), once per distinct t. */
static void apply_penalty(struct eng_sampler *s, float *logits, const struct eng_sample_req *req)
{
	float pen = req->p.repeat_penalty;
	int i;

	if (pen == 1.0f || !req->recent || req->n_recent <= 0)
		return;
	for (i = 0; i < req->n_recent; i++) {
		int32_t t = req->recent[i];

		if (t < 0 || t >= s->n_vocab || s->seen[t])
			continue;
		s->seen[t] = 1;
		logits[t] = logits[t] > 0 ? logits[t] / pen : logits[t] * pen;
	}
	for (i = 0; i < req->n_recent; i++) {
		int32_t t = req->recent[i];

		if (t >= 0 && t < s->n_vocab)
			s->seen[t] = 0;
	}
}

/* 2. Arg max, lowest id on ties (NaN never wins). */
static int32_t argmax(const float *logits, int n)
{
	int32_t best = 0;
	int i;

	for (i = 1; i < n; i++)
		if (logits[i] > logits[best] || (isnan(logits[best]) && !isnan(logits[i])))
			best = i;
	return best;
}

/* Sift-down for a min-heap whose root is the *worst* of the kept k
 * (the one that sorts last in logit order). */
static void heap_down(struct cand *h, int n, int i)
{
	for (;;) {
		int w = i, l = 2 * i + 1, r = l + 1;
		struct cand t;

		if (l < n && logit_before(&h[w], &h[l]))
			w = l;
		if (r < n && logit_before(&h[w], &h[r]))
			w = r;
		if (w == i)
			return;
		t = h[i];
		h[i] = h[w];
		h[w] = t;
		i = w;
	}
}

/* 3. The k best logits into c[0..k), sorted (logit desc, id asc). */
static int select_top_k(struct eng_sampler *s, const float *logits, int k)
{
	struct cand *h = s->c;
	int i;

	for (i = 0; i < k; i++)
		h[i] = (struct cand){ .l = logits[i], .id = i };
	for (i = k / 2 - 1; i >= 0; i--)
		heap_down(h, k, i);
	for (i = k; i < s->n_vocab; i++) {
		struct cand c = { .l = logits[i], .id = i };

		if (logit_before(&c, &h[0])) {
			h[0] = c;
			heap_down(h, k, 0);
		}
	}
	qsort(h, (size_t)k, sizeof(*h), cmp_logit);
	return k;
}

int32_t eng_sample(struct eng_sampler *s, float *logits, const struct eng_sample_req *req)
{
	const struct eng_sample_params *p = &req->p;
	struct cand *c = s->c;
	int n, i, keep;
	float lmax, sum, pmax, u, qsum, cum;

	apply_penalty(s, logits, req);
	if (!(p->temperature > 0.0f))
		return argmax(logits, s->n_vocab);

	// 3. top-k
	if (p->top_k > 0 && p->top_k < s->n_vocab) {
		n = select_top_k(s, logits, p->top_k);
	} else {
		n = s->n_vocab;
		for (i = 0; i < n; i++)
			c[i] = (struct cand){ .l = logits[i], .id = i };
	}

	// 4. softmax at temperature 1 (unnormalised e, common sum)
	lmax = -INFINITY;
	for (i = 0; i < n; i++)
		if (c[i].l > lmax)
			lmax = c[i].l;
	if (!isfinite(lmax))
		return argmax(logits, s->n_vocab); /* all -inf or NaN: nothing to draw from */
	sum = 0.0f;
	for (i = 0; i < n; i++) {
		c[i].e = isnan(c[i].l) ? 0.0f : expf(c[i].l - lmax);
		sum += c[i].e;
	}
	pmax = 1.0f / sum;

	// 6 (before the sort: both steps keep a prefix of the same order, so
	// the result is the shorter prefix). p_i >= min_p * max p.
	if (p->min_p > 0.0f) {
		float thr = p->min_p * pmax;
		int m = 0;

		for (i = 0; i < n; i++)
			if (c[i].e / sum >= thr || c[i].e == 1.0f) /* the max always survives */
				c[m++] = c[i];
		n = m;
	}

	// 5. sort by p desc / id asc; shortest prefix with cumulative p >= top_p
	qsort(c, (size_t)n, sizeof(*c), cmp_prob);
	if (p->top_p < 1.0f) {
		cum = 0.0f;
		for (i = 0; i < n; i++) {
			cum += c[i].e / sum;
			if (cum >= p->top_p) {
				n = i + 1;
				break;
			}
		}
	}
	if (n < 1)
		n = 1;

	// 7. q = softmax(l / T) over the survivors; draw
	qsum = 0.0f;
	for (i = 0; i < n; i++) {
		c[i].e = expf((c[i].l - lmax) / p->temperature);
		qsum += c[i].e;
	}
	u = eng_rng_uniform(req->seed, req->draw) * qsum;
	cum = 0.0f;
	keep = n - 1;
	for (i = 0; i < n; i++) {
		cum += c[i].e;
		if (cum > u) {
			keep = i;
			break;
		}
	}
	return c[keep].id;
}
