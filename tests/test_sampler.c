/*
 * test_sampler.c — the sampler chain of engine/sampler.h against sets and
 * distributions computed independently here (in double precision, by plain
 * sorting), never against the sampler's own earlier output.
 *
 *   greedy == argmax, ties → lowest id
 *   top-k / top-p / min-p: every draw lies in the independently computed
 *     support, and with enough draws every member of it is seen
 *   temperature: draw frequencies match softmax(l / T) within 5 sigma
 *   repetition penalty: the exact logit changes, once per distinct token
 *   seed + draw → same token; different draws and seeds differ
 *
 * Run: ctest -R sampler   (or build/test_sampler)
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"
#include "check.h"



// ---- helpers

static uint64_t lcg_state = 12345;
static double rnd(void) /* independent of the sampler's rng */
{
	lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(lcg_state >> 11) * (1.0 / 9007199254740992.0);
}

static struct eng_sample_req req_of(float temp, int k, float top_p, float min_p)
{
	struct eng_sample_req r;

	memset(&r, 0, sizeof(r));
	r.p.temperature = temp;
	r.p.top_k = k;
	r.p.top_p = top_p;
	r.p.min_p = min_p;
	r.p.repeat_penalty = 1.0f;
	r.seed = 42;
	return r;
}

static int32_t draw(struct eng_sampler *s, const float *logits, int V, struct eng_sample_req *r)
{
	float *tmp = malloc(sizeof(float) * (size_t)V);
	int32_t t;

	memcpy(tmp, logits, sizeof(float) * (size_t)V);
	t = eng_sample(s, tmp, r);
	free(tmp);
	return t;
}

/* ids sorted by logit descending, id ascending */
static const float *sort_base;
static int cmp_desc(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;

	if (sort_base[i] != sort_base[j])
		return sort_base[i] > sort_base[j] ? -1 : 1;
	return i - j;
}

static int *order_of(const float *l, int V)
{
	int *o = malloc(sizeof(int) * (size_t)V);

	for (int i = 0; i < V; i++)
		o[i] = i;
	sort_base = l;
	qsort(o, (size_t)V, sizeof(int), cmp_desc);
	return o;
}

static void softmax_d(const float *l, int V, double T, double *p)
{
	double mx = -INFINITY, sum = 0;

	for (int i = 0; i < V; i++)
		mx = fmax(mx, l[i]);
	for (int i = 0; i < V; i++)
		sum += p[i] = exp((l[i] - mx) / T);
	for (int i = 0; i < V; i++)
		p[i] /= sum;
}

/* Draws n times with draw counters 0..n-1; checks every token is in `in`
 * and counts how often each is seen. */
static void check_support(const char *what, struct eng_sampler *s, const float *l, int V,
                          struct eng_sample_req *r, const bool *in, int n)
{
	int *seen = calloc((size_t)V, sizeof(int));
	int outside = -1, missing = -1;

	for (int d = 0; d < n; d++) {
		int32_t t;

		r->draw = (uint64_t)d;
		t = draw(s, l, V, r);
		if (t < 0 || t >= V || !in[t]) {
			outside = t;
			break;
		}
		seen[t]++;
	}
	for (int i = 0; i < V && outside < 0; i++)
		if (in[i] && !seen[i])
			missing = i;
	CHECK(outside < 0, "%s: drew token %d outside the support", what, outside);
	CHECK(missing < 0, "%s: support member %d never drawn in %d draws", what, missing, n);
	free(seen);
}

// ---- tests

static void test_greedy(struct eng_sampler *s, int V)
{
	float *l = malloc(sizeof(float) * (size_t)V);
	struct eng_sample_req r = req_of(0.0f, 40, 0.9f, 0.1f);

	for (int trial = 0; trial < 50; trial++) {
		int best = 0;

		for (int i = 0; i < V; i++)
			l[i] = (float)(rnd() * 20 - 10);
		for (int i = 1; i < V; i++)
			if (l[i] > l[best])
				best = i;
		r.draw = (uint64_t)trial;
		CHECK(draw(s, l, V, &r) == best, "greedy trial %d", trial);
	}
	/* ties: three equal maxima, the lowest id wins */
	for (int i = 0; i < V; i++)
		l[i] = -1.0f;
	l[V - 3] = l[V / 2] = l[7] = 5.0f;
	CHECK(draw(s, l, V, &r) == 7, "greedy tie must pick the lowest id");
	r.p.temperature = -1.0f; /* negative temperature is greedy too */
	CHECK(draw(s, l, V, &r) == 7, "negative temperature is greedy");
	free(l);
}

/* The block scans (argmax, top-k straight from the logits) against plain
 * loops, at sizes around the block length, with many ties, runs of -inf
 * and NaN (which never wins). */
static void test_scans(void)
{
	static const int sizes[] = { 1, 2, 7, 63, 64, 65, 127, 128, 129, 1000, 4099 };

	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		int V = sizes[z], bad_arg = -1, bad_topk = -1;
		struct eng_sampler *s = eng_sampler_init(V);
		float *l = malloc(sizeof(float) * (size_t)V);
		int32_t *ids = malloc(sizeof(int32_t) * (size_t)V);
		float *q = malloc(sizeof(float) * (size_t)V);

		for (int trial = 0; trial < 40; trial++) {
			int best = -1, k = 1 + (int)(rnd() * (V < 50 ? V : 50)), *o;
			struct eng_sample_req r = req_of(0.0f, 0, 1.0f, 0.0f);

			for (int i = 0; i < V; i++) {
				double u = rnd();

				l[i] = (float)(int)(rnd() * 12) - 6.0f; /* few values: ties everywhere */
				if (u < 0.1)
					l[i] = -INFINITY;
				else if (u < 0.15 && trial % 2)
					l[i] = NAN;
			}
			if (trial == 0)
				for (int i = 0; i < V; i++)
					l[i] = -INFINITY; /* all -inf: the first */
			if (trial == 1)
				for (int i = 0; i < V; i++)
					l[i] = i == V - 1 ? 3.0f : NAN; /* NaN everywhere but the last */
			for (int i = 0; i < V; i++)
				if (!isnan(l[i]) && (best < 0 || l[i] > l[best]))
					best = i;
			if (best < 0)
				best = 0;
			if (draw(s, l, V, &r) != best && bad_arg < 0)
				bad_arg = trial;
			if (trial % 2)
				continue; /* top-k with NaN in the row has no defined order */
			r = req_of(1.0f, k, 1.0f, 0.0f);
			memcpy(q, l, sizeof(float) * (size_t)V); /* as scratch for the logits */
			int n = eng_sample_survivors(s, q, &r, ids, q);
			o = order_of(l, V);
			/* all -inf: the sampler keeps only the first (sampler.c chain) */
			bool same = trial == 0 ? n == 1 : n == k;
			for (int i = 0; same && i < n; i++)
				same = ids[i] == o[i];
			if (!same && bad_topk < 0)
				bad_topk = trial;
			free(o);
		}
		CHECK(bad_arg < 0, "V=%d: greedy is not the first arg max (NaN never wins) in trial %d", V, bad_arg);
		CHECK(bad_topk < 0, "V=%d: top-k survivors are not the k largest (ties: lower id) in trial %d", V,
		      bad_topk);
		free(l);
		free(ids);
		free(q);
		eng_sampler_free(s);
	}
}

static void test_top_k(struct eng_sampler *s, int V)
{
	float *l = malloc(sizeof(float) * (size_t)V);
	bool *in = calloc((size_t)V, 1);
	int *o;
	const int k = 5;
	struct eng_sample_req r = req_of(1.0f, k, 1.0f, 0.0f);

	/* close logits so every member of the top k has a fair chance */
	for (int i = 0; i < V; i++)
		l[i] = (float)(rnd() * 2.0);
	o = order_of(l, V);
	for (int i = 0; i < k; i++)
		in[o[i]] = true;
	check_support("top_k=5", s, l, V, &r, in, 4000);

	/* ties at the k-th place go to the lower id */
	for (int i = 0; i < V; i++)
		l[i] = 0.0f;
	memset(in, 0, (size_t)V);
	r.p.top_k = 3;
	for (int i = 0; i < 3; i++)
		in[i] = true; /* all equal: ids 0,1,2 */
	check_support("top_k=3 ties", s, l, V, &r, in, 2000);
	/* top_k = 1 is greedy whatever the temperature */
	r.p.top_k = 1;
	r.p.temperature = 5.0f;
	for (int i = 0; i < V; i++)
		l[i] = (float)(rnd() * 4.0);
	free(o);
	o = order_of(l, V);
	memset(in, 0, (size_t)V);
	in[o[0]] = true;
	check_support("top_k=1", s, l, V, &r, in, 200);
	free(o);
	free(in);
	free(l);
}

/* Logits whose cumulative probabilities stay away from the cut so the
 * independent double-precision set is unambiguous. */
static void test_top_p(struct eng_sampler *s, int V)
{
	float *l = malloc(sizeof(float) * (size_t)V);
	double *p = malloc(sizeof(double) * (size_t)V);
	bool *in = calloc((size_t)V, 1);
	struct eng_sample_req r = req_of(1.0f, 0, 0.0f, 0.0f);
	int *o, trial;

	for (trial = 0; trial < 3; trial++) {
		double cum = 0, top_p = 0;
		int n = 0;

		for (int i = 0; i < V; i++)
			l[i] = (float)(rnd() * 8.0 - 4.0);
		softmax_d(l, V, 1.0, p);
		o = order_of(l, V);
		/* a top_p halfway between two cumulative sums, around 50-60 % */
		for (int i = 0; i < V; i++) {
			double next = cum + p[o[i]];

			if (next >= 0.5 + 0.05 * trial) {
				top_p = (cum + next) / 2;
				break;
			}
			cum = next;
		}
		memset(in, 0, (size_t)V);
		cum = 0;
		for (int i = 0; i < V; i++) {
			in[o[i]] = true;
			n++;
			cum += p[o[i]];
			if (cum >= top_p)
				break;
		}
		r.p.top_p = (float)top_p;
		r.p.temperature = 3.0f; /* flatten the draw so rare members show up */
		char what[64];
		snprintf(what, sizeof(what), "top_p=%.4f (%d tokens)", top_p, n);
		check_support(what, s, l, V, &r, in, 20000);
		free(o);
	}
	free(in);
	free(p);
	free(l);
}

static void test_min_p(struct eng_sampler *s, int V)
{
	float *l = malloc(sizeof(float) * (size_t)V);
	double *p = malloc(sizeof(double) * (size_t)V);
	bool *in = calloc((size_t)V, 1);
	struct eng_sample_req r = req_of(2.0f, 0, 1.0f, 0.2f);
	double pmax = 0;
	int n = 0;

	for (int i = 0; i < V; i++) {
		l[i] = (float)(rnd() * 6.0 - 3.0);
	}
	softmax_d(l, V, 1.0, p);
	for (int i = 0; i < V; i++)
		pmax = fmax(pmax, p[i]);
	for (int i = 0; i < V; i++) {
		/* move borderline tokens clear of the threshold */
		if (fabs(p[i] / pmax - 0.2) < 0.01)
			l[i] -= 0.1f;
	}
	softmax_d(l, V, 1.0, p);
	pmax = 0;
	for (int i = 0; i < V; i++)
		pmax = fmax(pmax, p[i]);
	for (int i = 0; i < V; i++) {
		in[i] = p[i] >= 0.2 * pmax;
		n += in[i];
	}
	CHECK(n > 1 && n < V, "min_p test set has %d members", n);
	check_support("min_p=0.2", s, l, V, &r, in, 20000);
	free(in);
	free(p);
	free(l);
}

/* Frequencies of 200k draws against softmax(l/T), 5 sigma per token. */
static void test_temperature(struct eng_sampler *s)
{
	enum { V = 10, N = 200000 };
	float l[V] = { 1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, 0.2f, -0.5f, 0.8f, 1.2f };
	const float temps[] = { 0.5f, 1.0f, 2.0f };
	double p[V];

	for (size_t ti = 0; ti < sizeof(temps) / sizeof(temps[0]); ti++) {
		struct eng_sample_req r = req_of(temps[ti], 0, 1.0f, 0.0f);
		int cnt[V] = { 0 };
		double worst = 0;

		softmax_d(l, V, temps[ti], p);
		for (int d = 0; d < N; d++) {
			r.draw = (uint64_t)d;
			cnt[draw(s, l, V, &r)]++;
		}
		for (int i = 0; i < V; i++) {
			double sd = sqrt(p[i] * (1 - p[i]) / N);
			double z = fabs((double)cnt[i] / N - p[i]) / sd;

			worst = fmax(worst, z);
		}
		CHECK(worst < 5.0, "T=%.1f: worst deviation %.2f sigma", temps[ti], worst);
		printf("temperature %.1f: worst token frequency off by %.2f sigma over %d draws\n",
		       temps[ti], worst, N);
	}
}

static void test_penalty(struct eng_sampler *s)
{
	enum { V = 16 };
	float l[V], orig[V];
	int32_t recent[] = { 3, 5, 3, 3, 9 }; /* 3 repeated: penalised once */
	struct eng_sample_req r = req_of(0.0f, 0, 1.0f, 0.0f);
	bool ok = true;

	for (int i = 0; i < V; i++)
		orig[i] = l[i] = (float)(i % 4) - 1.5f; /* mix of positive and negative */
	orig[3] = l[3] = 2.5f;  /* the argmax without penalty: 2.5 / 2 < 1.5 after */
	orig[5] = l[5] = -2.0f;
	orig[9] = l[9] = 2.8f;
	r.recent = recent;
	r.n_recent = 5;
	r.p.repeat_penalty = 2.0f;
	int32_t t = eng_sample(s, l, &r);
	for (int i = 0; i < V; i++) {
		float want = orig[i];

		if (i == 3 || i == 9)
			want = orig[i] / 2.0f;
		else if (i == 5)
			want = orig[i] * 2.0f;
		if (l[i] != want)
			ok = false;
	}
	CHECK(ok, "penalty: logits changed exactly once per distinct recent token");
	CHECK(t != 3 && t != 9, "penalty: penalised tokens lost the arg max (got %d)", t);
	CHECK(t == 7, "penalty: arg max of the rest is 7, lowest id of the 1.5s (got %d)", t);

	/* penalty 1 is off */
	memcpy(l, orig, sizeof(l));
	r.p.repeat_penalty = 1.0f;
	CHECK(eng_sample(s, l, &r) == 9, "penalty 1.0 is off (arg max 9)");
	CHECK(!memcmp(l, orig, sizeof(l)), "penalty 1.0 leaves logits alone");
	/* the sampler's marks are cleared between calls */
	memcpy(l, orig, sizeof(l));
	r.p.repeat_penalty = 2.0f;
	(void)eng_sample(s, l, &r);
	CHECK(l[3] == 1.25f, "second call penalises again (marks cleared)");
}

static void test_reproducible(struct eng_sampler *s, int V)
{
	float *l = malloc(sizeof(float) * (size_t)V);
	struct eng_sample_req r = req_of(1.0f, 0, 1.0f, 0.0f);
	int differ_draw = 0, differ_seed = 0, same = 1;

	for (int i = 0; i < V; i++)
		l[i] = (float)(rnd() * 3.0);
	for (int d = 0; d < 200; d++) {
		int32_t a, b, c;

		r.seed = 7;
		r.draw = (uint64_t)d;
		a = draw(s, l, V, &r);
		b = draw(s, l, V, &r);
		if (a != b)
			same = 0;
		r.draw = (uint64_t)d + 1;
		c = draw(s, l, V, &r);
		differ_draw += a != c;
		r.seed = 8;
		r.draw = (uint64_t)d;
		differ_seed += draw(s, l, V, &r) != a;
	}
	CHECK(same, "same seed and draw give the same token");
	CHECK(differ_draw > 150, "consecutive draws differ (%d of 200)", differ_draw);
	CHECK(differ_seed > 150, "different seeds differ (%d of 200)", differ_seed);

	float umin = 1, umax = 0;
	for (uint64_t d = 0; d < 100000; d++) {
		float u = eng_rng_uniform(99, d);

		umin = fminf(umin, u);
		umax = fmaxf(umax, u);
	}
	CHECK(umin >= 0.0f && umax < 1.0f && umin < 0.001f && umax > 0.999f,
	      "uniform range [%g, %g]", umin, umax);
	free(l);
}

int main(void)
{
	const int V = 300;
	struct eng_sampler *s = eng_sampler_init(V);
	struct eng_sampler *s10 = eng_sampler_init(10);
	struct eng_sampler *s16 = eng_sampler_init(16);

	if (!s || !s10 || !s16) {
		fprintf(stderr, "eng_sampler_init failed\n");
		return 1;
	}
	test_greedy(s, V);
	test_scans();
	test_top_k(s, V);
	test_top_p(s, V);
	test_min_p(s, V);
	test_temperature(s10);
	test_penalty(s16);
	test_reproducible(s, V);
	eng_sampler_free(s);
	eng_sampler_free(s10);
	eng_sampler_free(s16);
	return check_summary();
}
