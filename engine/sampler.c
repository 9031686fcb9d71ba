/*
 * sampler.c — the reference token sampler: the exact chain of sampler.h
 * (repetition penalty, greedy, top-k, softmax, top-p, min-p, temperature,
 * seeded draw), on one row of V logits in host memory.
 *
 * Every backend's device sampler follows the same chain; this file is the
 * definition the CPU backend calls and the tests check (tests/test_sampler.c).
 *
 * Cost: one pass over the V logits (arg max or top-k, by blocks that are
 * skipped when they cannot change the result), then work on the survivors
 * only (k of them with top-k); top_k 0 costs O(V) more for the softmax and
 * the min-p filter.  Under a grammar: a check of each survivor (greedy: of
 * the arg max first), the whole-vocabulary mask only when none is allowed.
 * Measured with tests/tool_grammar_cost on the 0.5B default model (V =
 * 152k): about 17 us greedy and 23 us at the defaults per token, 18 and
 * 25 us under json.gbnf (README "Benchmarks", Grammars).
 */
#include "sampler.h"

#include "grammar.h"

#include <errno.h>
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
	int *count;           /* [V] penalty counts, all zero between calls */
	float *raw;           /* [V] the incoming logits, when log-probabilities are wanted (lazy) */
	bool *allowed;        /* [V] grammar mask (lazy) */
	int *dry_rep;         /* [n_dry] DRY repeat counts (lazy) */
	int *dry_max;         /* [V] DRY longest repeat a token would extend, 0 between calls (lazy) */
	int32_t *dry_touched; /* [n_dry] tokens with dry_max set */
	int n_dry;
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
	s->count = calloc((size_t)n_vocab, sizeof(*s->count));
	if (!s->c || !s->seen || !s->count) {
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
	free(s->count);
	free(s->raw);
	free(s->allowed);
	free(s->dry_rep);
	free(s->dry_max);
	free(s->dry_touched);
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


// ---- steps 0-2: logit edits

/* 0. l[id] += bias. */
static void apply_bias(struct eng_sampler *s, float *logits, const struct eng_sample_req *req)
{
	for (int i = 0; i < req->n_bias; i++) {
		int32_t t = req->bias[i].id;

		if (t >= 0 && t < s->n_vocab)
			logits[t] += req->bias[i].bias;
	}
}

/* 1. Repeat, frequency and presence penalties, once per distinct token of
 * the window (llama.cpp llama_sampler_penalties_apply). */
static void apply_penalty(struct eng_sampler *s, float *logits, const struct eng_sample_req *req)
{
	float pen = req->p.repeat_penalty, fq = req->p.frequency_penalty, pr = req->p.presence_penalty;
	int i;

	if ((pen == 1.0f && fq == 0.0f && pr == 0.0f) || !req->recent || req->n_recent <= 0)
		return;
	for (i = 0; i < req->n_recent; i++) {
		int32_t t = req->recent[i];

		if (t >= 0 && t < s->n_vocab)
			s->count[t]++;
	}
	for (i = 0; i < req->n_recent; i++) {
		int32_t t = req->recent[i];

		if (t < 0 || t >= s->n_vocab || s->seen[t])
			continue;
		s->seen[t] = 1;
		if (pen != 1.0f)
			logits[t] = logits[t] > 0 ? logits[t] / pen : logits[t] * pen;
		logits[t] -= (float)s->count[t] * fq + pr;
	}
	for (i = 0; i < req->n_recent; i++) {
		int32_t t = req->recent[i];

		if (t >= 0 && t < s->n_vocab)
			s->seen[t] = 0, s->count[t] = 0;
	}
}

static int dry_fit(struct eng_sampler *s, int n)
{
	if (!s->dry_max && !(s->dry_max = calloc((size_t)s->n_vocab, sizeof(*s->dry_max))))
		return -1;
	if (n > s->n_dry) {
		int *r = realloc(s->dry_rep, sizeof(*r) * (size_t)n);
		int32_t *t;

		if (!r)
			return -1;
		s->dry_rep = r;
		if (!(t = realloc(s->dry_touched, sizeof(*t) * (size_t)n)))
			return -1;
		s->dry_touched = t;
		s->n_dry = n;
	}
	return 0;
}

/* The repeat counts of the window's suffixes: rep[last - k] = length of
 * the longest match of the window's end that ends k tokens earlier, at
 * most rep_limit (llama.cpp's reverse Z-algorithm). */
static void dry_counts(const int32_t *h, int N, int rep_limit, int *rep)
{
#define RAT(i) h[N - 1 - (i)]
	const int last = N - 1;
	int rt = 0, lt = 0;

	memset(rep, 0, sizeof(*rep) * (size_t)N);
	for (int k = 1; k < N; k++) {
		if (k > rt) {
			int n = 0;

			while (n + k < N && RAT(n) == RAT(n + k))
				n++;
			rep[last - k] = n < rep_limit ? n : rep_limit;
			if (n > 0) {
				lt = k;
				rt = k + n - 1;
			}
		} else {
			int p = k - lt, right = rt - k + 1;

			if (rep[last - p] < right) {
				rep[last - k] = rep[last - p] < rep_limit ? rep[last - p] : rep_limit;
			} else {
				int i = rt + 1;

				while (i < N && RAT(i) == RAT(i - k))
					i++;
				rep[last - k] = i - k < rep_limit ? i - k : rep_limit;
				lt = k;
				rt = i - 1;
			}
		}
	}
#undef RAT
}

/* 2. DRY (llama.cpp llama_sampler_dry_apply with single-token breakers). */
static void apply_dry(struct eng_sampler *s, float *logits, const struct eng_sample_req *req)
{
	const struct eng_sample_params *p = &req->p;
	const int32_t *h = req->dry_hist;
	int N = req->n_dry_hist, rep_limit = N, n_touched = 0, max_exp = 0;

	if (p->dry_multiplier == 0.0f || p->dry_base < 1.0f || !h || N <= p->dry_allowed_length)
		return;
	if (dry_fit(s, N) < 0)
		return; /* no memory: DRY is skipped for this token (log once per call is too noisy) */
	for (int i = 0; i < N; i++) {
		int32_t t = h[N - 1 - i];

		if (req->dry_breaker && t >= 0 && t < s->n_vocab && req->dry_breaker[t]) {
			rep_limit = i;
			break;
		}
	}
	if (rep_limit < p->dry_allowed_length)
		return;
	dry_counts(h, N, rep_limit, s->dry_rep);
	for (int i = 0; i < N - 1; i++) {
		int len = s->dry_rep[i];
		int32_t t = h[N - 1 - (N - 2 - i)];

		if (len < p->dry_allowed_length || t < 0 || t >= s->n_vocab)
			continue;
		if (s->dry_max[t] == 0)
			s->dry_touched[n_touched++] = t;
		if (s->dry_max[t] < len + 1)
			s->dry_max[t] = len + 1; /* stored +1 so that 0 means unset */
	}
	if (p->dry_base > 1.000001f)
		max_exp = (int)(88.7228391f / logf(p->dry_base));
	for (int k = 0; k < n_touched; k++) {
		int32_t t = s->dry_touched[k];
		int e = s->dry_max[t] - 1 - p->dry_allowed_length;

		s->dry_max[t] = 0;
		if (req->dry_breaker && req->dry_breaker[t])
			continue;
		if (max_exp > 0 && e > max_exp)
			e = max_exp;
		logits[t] -= (float)(p->dry_multiplier * pow((double)p->dry_base, e));
	}
}

// ---- step 3: greedy

/* Scans of the whole row (arg max, top-k) are the hot spot of a host-
 * sampled token (V = 152k floats on Qwen): they go a block of SCAN_BLOCK
 * logits at a time, and a block whose largest logit cannot change the
 * result is skipped after one branch-free pass (the compiler vectorises
 * block_max).  NaN never wins: `x > m` is false for a NaN x, as in the
 * element-wise comparisons the skipped blocks stand for. */
#define SCAN_BLOCK 64

/* Under a grammar, when the chain's choice is refused, the allowed tokens
 * are first looked for among this many largest logits, before the whole-
 * vocabulary mask (tens of milliseconds inside a JSON string, where almost
 * every token is allowed). */
#define LAZY_SCAN 256

static inline float block_max(const float *x, int n)
{
	float m[8] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY };
	int i = 0;

	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
	for (; i < n; i++)
		m[0] = x[i] > m[0] ? x[i] : m[0];
	for (int j = 1; j < 8; j++)
		m[0] = m[j] > m[0] ? m[j] : m[0];
	return m[0];
}

/* Arg max, lowest id on ties (NaN never wins; all NaN: 0).  A block is
 * searched element by element only when its maximum beats the best so far,
 * which is the first index holding that maximum. */
static int32_t argmax(const float *logits, int n)
{
	int32_t best = 0;
	float bv = -INFINITY;
	bool found = false;

	for (int b = 0; b < n; b += SCAN_BLOCK) {
		int e = b + SCAN_BLOCK < n ? b + SCAN_BLOCK : n;
		float m = block_max(logits + b, e - b);

		if (m > bv || (!found && m == bv)) /* -inf counts: a row of -inf and NaN gives its first -inf */
			for (int i = b; i < e; i++)
				if (logits[i] == m) {
					best = i;
					bv = m;
					found = true;
					break;
				}
	}
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

/* The k best of src[0..n) (logit order) into h[0..k), sorted.  h may be
 * src itself. */
static int select_top_k(struct cand *h, const struct cand *src, int n, int k)
{
	int i;

	if (h != src)
		memcpy(h, src, sizeof(*h) * (size_t)k);
	for (i = k / 2 - 1; i >= 0; i--)
		heap_down(h, k, i);
	for (i = k; i < n; i++) {
		struct cand c = src[i];

		if (logit_before(&c, &h[0])) {
			h[0] = c;
			heap_down(h, k, 0);
		}
	}
	qsort(h, (size_t)k, sizeof(*h), cmp_logit);
	return k;
}

/* select_top_k over logits[0..n) without building the candidates first.
 * Past the first k, an element enters the heap only if it sorts before the
 * root, i.e. its logit is larger (a tie loses: its id is larger than every
 * id in the heap), so a block whose maximum is not above the root's logit
 * is skipped. */
static int top_k_of_logits(struct cand *h, const float *logits, int n, int k)
{
	int i;

	for (i = 0; i < k; i++)
		h[i] = (struct cand){ .l = logits[i], .id = i };
	for (i = k / 2 - 1; i >= 0; i--)
		heap_down(h, k, i);
	for (int b = k; b < n; b += SCAN_BLOCK) {
		int e = b + SCAN_BLOCK < n ? b + SCAN_BLOCK : n;

		if (!(block_max(logits + b, e - b) > h[0].l))
			continue;
		for (i = b; i < e; i++) {
			struct cand c = { .l = logits[i], .id = i };

			if (logit_before(&c, &h[0])) {
				h[0] = c;
				heap_down(h, k, 0);
			}
		}
	}
	qsort(h, (size_t)k, sizeof(*h), cmp_logit);
	return k;
}

static bool *mask_of(struct eng_sampler *s, const struct eng_sample_req *req)
{
	if (!s->allowed && !(s->allowed = malloc((size_t)s->n_vocab * sizeof(bool))))
		return NULL;
	if (eng_grammar_mask(req->gvocab, req->grammar, s->allowed) < 0)
		return NULL;
	return s->allowed;
}

/* Greedy under a grammar: the best of the LAZY_SCAN largest logits that
 * the grammar allows, else the arg max over the whole mask (the same
 * token: the best allowed one).  The arg max is the first of those, so it
 * is tried alone first: one scan of the row and one grammar check in the
 * common case. */
static int32_t greedy_grammar(struct eng_sampler *s, const float *logits, const struct eng_sample_req *req)
{
	struct cand *c = s->c;
	int k = s->n_vocab < LAZY_SCAN ? s->n_vocab : LAZY_SCAN, i;
	int32_t best = argmax(logits, s->n_vocab);
	bool *ok;

	if (eng_grammar_token_ok(req->gvocab, req->grammar, best))
		return best;
	top_k_of_logits(c, logits, s->n_vocab, k);
	for (i = 0; i < k; i++) /* the arg max (c[0] unless NaNs) was refused above */
		if (c[i].id != best && eng_grammar_token_ok(req->gvocab, req->grammar, c[i].id))
			return c[i].id;
	if (!(ok = mask_of(s, req)))
		return best;
	best = -1;
	for (i = 0; i < s->n_vocab; i++)
		if (ok[i] && (best < 0 || logits[i] > logits[best] || (isnan(logits[best]) && !isnan(logits[i]))))
			best = i;
	return best >= 0 ? best : c[0].id;
}

// ---- steps 4-9: the candidate chain

/* e = exp(l - max) over c[0..n), returns the sum (max l in *lmax). */
static float soft(struct cand *c, int n, float *lmax)
{
	float m = -INFINITY, sum = 0.0f;

	for (int i = 0; i < n; i++)
		if (c[i].l > m)
			m = c[i].l;
	for (int i = 0; i < n; i++) {
		c[i].e = isnan(c[i].l) || !isfinite(m) ? 0.0f : expf(c[i].l - m);
		sum += c[i].e;
	}
	*lmax = m;
	return sum;
}

struct typ {
	float score;
	int idx;
};

static int cmp_typ(const void *pa, const void *pb)
{
	const struct typ *a = pa, *b = pb;

	if (a->score != b->score)
		return a->score < b->score ? -1 : 1;
	return a->idx - b->idx;
}

/* 6. typical_p over c[0..n); compacts c.  The sums run in llama.cpp's
 * order (logits sorted descending, p = e / sum in float) so that the cut
 * falls on the same token even over a whole vocabulary. */
static int typical(struct cand *c, int n, float tp)
{
	struct typ *t = malloc(sizeof(*t) * (size_t)n);
	float *p = malloc(sizeof(*p) * (size_t)n);
	struct cand *keep = NULL;
	float H = 0.0f, cum = 0.0f, sum = 0.0f;
	int last = n;

	if (!t || !p)
		goto out;
	qsort(c, (size_t)n, sizeof(*c), cmp_logit);
	for (int i = 0; i < n; i++) {
		p[i] = expf(c[i].l - c[0].l);
		sum += p[i];
	}
	for (int i = 0; i < n; i++) {
		p[i] /= sum;
		H += -p[i] * logf(p[i]);
	}
	for (int i = 0; i < n; i++)
		t[i] = (struct typ){ fabsf(-logf(p[i]) - H), i };
	qsort(t, (size_t)n, sizeof(*t), cmp_typ);
	for (int i = 0; i < n; i++) {
		cum += p[t[i].idx];
		if (cum > tp) {
			last = i + 1;
			break;
		}
	}
	keep = malloc(sizeof(*keep) * (size_t)last);
	if (keep) {
		for (int i = 0; i < last; i++)
			keep[i] = c[t[i].idx];
		memcpy(c, keep, sizeof(*c) * (size_t)last);
		n = last;
	}
out:
	free(keep);
	free(p);
	free(t);
	return n;
}

static int chain_tail(struct eng_sampler *s, const struct eng_sample_req *req, int n);

/* Steps 4-9 over logits[V] (only the tokens with allowed[id], if given),
 * or over the top_k candidates already in s->c when logits is NULL
 * (eng_sample_top); the survivors end in s->c[0..n), sorted p descending /
 * id ascending. */
static int chain(struct eng_sampler *s, const float *logits, const struct eng_sample_req *req, const bool *allowed)
{
	const struct eng_sample_params *p = &req->p;
	struct cand *c = s->c;
	int n = 0, i;

	if (!logits) {
		// 4. top-k: the first top_k of the given candidates (eng_sample_top)
		n = p->top_k;
	} else if (!allowed && p->top_k > 0 && p->top_k < s->n_vocab) {
		// 4. top-k straight from the logits (the common case: no copy of V)
		n = top_k_of_logits(c, logits, s->n_vocab, p->top_k);
	} else {
		for (i = 0; i < s->n_vocab; i++)
			if (!allowed || allowed[i])
				c[n++] = (struct cand){ .l = logits[i], .id = i };
		if (n == 0)
			return 0;
		// 4. top-k
		if (p->top_k > 0 && p->top_k < n)
			n = select_top_k(c, c, n, p->top_k);
	}
	return chain_tail(s, req, n);
}

/* Steps 5-9 on the candidates s->c[0..n) (after top-k, in logit order). */
static int chain_tail(struct eng_sampler *s, const struct eng_sample_req *req, int n)
{
	const struct eng_sample_params *p = &req->p;
	struct cand *c = s->c;
	float sum, lmax, cum;
	int i;

	// 5. softmax at temperature 1 (unnormalised e, common sum)
	sum = soft(c, n, &lmax);
	if (!isfinite(lmax) || !(sum > 0.0f)) {
		qsort(c, (size_t)n, sizeof(*c), cmp_logit);
		return 1; /* all -inf or NaN: nothing to draw from but the first */
	}
	// 6. typical
	if (p->typical_p > 0.0f && p->typical_p < 1.0f && n > 1) {
		n = typical(c, n, p->typical_p);
		sum = soft(c, n, &lmax);
	}
	// 8 (before the sort: both steps keep a prefix of the same order, so
	// the result is the shorter prefix). p_i >= min_p * max p.
	if (p->min_p > 0.0f) {
		int m = 0;

		for (i = 0; i < n; i++)
			if (c[i].e / sum >= p->min_p * (1.0f / sum) || c[i].e == 1.0f) /* the max always survives */
				c[m++] = c[i];
		n = m;
	}
	// 7. sort by p desc / id asc; shortest prefix with cumulative p >= top_p
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
	// 9. XTC
	if (p->xtc_probability > 0.0f && p->xtc_threshold <= 0.5f && n >= 2 &&
	    !(eng_rng_uniform(req->seed ^ ENG_XTC_SALT, req->draw) > p->xtc_probability)) {
		float s2 = 0.0f;
		int last = 0;

		for (i = 0; i < n; i++)
			s2 += c[i].e;
		for (i = 0; i < n && c[i].e / s2 >= p->xtc_threshold; i++)
			last = i;
		if (last > 0) {
			memmove(c, c + last, sizeof(*c) * (size_t)(n - last));
			n -= last;
		}
	}
	return n;
}

/* The chain over the allowed tokens only, without the mask, when top-k is
 * on: its top-k step keeps the first top_k allowed tokens in logit order
 * (ties: lower id), and they are looked for among the LAZY_SCAN largest
 * logits (at least 4 × (top_k + 1)).  One more allowed token must be found
 * there too: then there are more than top_k allowed, and chain() would
 * have run select_top_k, which leaves them in exactly this order.  Returns
 * the survivors, or 0 when they are not all among those logits (the caller
 * then builds the mask).  Inside a JSON string almost every token is
 * allowed: this costs a few dozen checks, where the mask walks the whole
 * vocabulary (tens of milliseconds). */
static int chain_allowed_top(struct eng_sampler *s, const float *logits, const struct eng_sample_req *req)
{
	struct cand *c = s->c;
	int k = req->p.top_k, M = LAZY_SCAN, m = 0;

	if (k <= 0)
		return 0;
	if (M < 4 * (k + 1))
		M = 4 * (k + 1);
	if (M > s->n_vocab)
		M = s->n_vocab;
	top_k_of_logits(c, logits, s->n_vocab, M);
	for (int i = 0; i < M && m <= k; i++)
		if (eng_grammar_token_ok(req->gvocab, req->grammar, c[i].id))
			c[m++] = c[i];
	if (m <= k)
		return 0;
	return chain_tail(s, req, k);
}

/* 10. The survivors the grammar allows, else the chain again on the
 * allowed tokens (from the largest logits when that suffices, else from
 * the mask). */
static int grammar_filter(struct eng_sampler *s, const float *logits, const struct eng_sample_req *req, int n)
{
	struct cand *c = s->c;
	const bool *ok;
	int m = 0;

	for (int i = 0; i < n; i++)
		if (eng_grammar_token_ok(req->gvocab, req->grammar, c[i].id))
			c[m++] = c[i];
	if (m > 0 || (m = chain_allowed_top(s, logits, req)) > 0 || !(ok = mask_of(s, req)))
		return m;
	return chain(s, logits, req, ok);
}

// ---- log-probabilities of the raw distribution

static void report_top(struct eng_sampler *s, const float *logits, struct eng_sample_lp *lp, float *lse)
{
	int k = lp->n_top < 0 ? 0 : lp->n_top > ENG_SAMPLE_MAX_TOP ? ENG_SAMPLE_MAX_TOP : lp->n_top, n = 0;
	double sum = 0.0;
	float m = -INFINITY;

	for (int i = 0; i < s->n_vocab; i++)
		if (logits[i] > m)
			m = logits[i];
	for (int i = 0; i < s->n_vocab; i++)
		sum += exp((double)logits[i] - m);
	*lse = m + (float)log(sum);
	for (int i = 0; i < s->n_vocab && k > 0; i++) {
		float l = logits[i];
		int j;

		if (n == k && !(l > lp->top_lp[n - 1]))
			continue;
		j = n < k ? n++ : n - 1;
		while (j > 0 && l > lp->top_lp[j - 1]) {
			lp->top_lp[j] = lp->top_lp[j - 1];
			lp->top_id[j] = lp->top_id[j - 1];
			j--;
		}
		lp->top_lp[j] = l;
		lp->top_id[j] = i;
	}
	for (int j = 0; j < n; j++)
		lp->top_lp[j] -= *lse;
	lp->n_top = n;
}

// ---- the chain

/* Steps 0-10; returns the survivors in s->c (0: greedy, *greedy set). */
static int survivors(struct eng_sampler *s, float *logits, const struct eng_sample_req *req, int32_t *greedy)
{
	int n;

	apply_bias(s, logits, req);
	apply_penalty(s, logits, req);
	apply_dry(s, logits, req);
	if (!(req->p.temperature > 0.0f)) {
		*greedy = req->grammar ? greedy_grammar(s, logits, req) : argmax(logits, s->n_vocab);
		return 0;
	}
	n = chain(s, logits, req, NULL);
	if (req->grammar)
		n = grammar_filter(s, logits, req, n);
	if (n == 0)
		*greedy = argmax(logits, s->n_vocab); /* no allowed token at all (out of memory for the mask) */
	return n;
}

/* 11. q = softmax(l / T) over the n survivors (max: c[0], p order); draw. */
static int32_t draw(struct eng_sampler *s, int n, const struct eng_sample_req *req)
{
	struct cand *c = s->c;
	float lmax = c[0].l, u, qsum = 0.0f, cum = 0.0f;
	int keep = n - 1;

	if (!isfinite(lmax))
		return c[0].id;
	for (int i = 0; i < n; i++) {
		c[i].e = expf((c[i].l - lmax) / req->p.temperature);
		qsum += c[i].e;
	}
	u = eng_rng_uniform(req->seed, req->draw) * qsum;
	for (int i = 0; i < n; i++) {
		cum += c[i].e;
		if (cum > u) {
			keep = i;
			break;
		}
	}
	return c[keep].id;
}

int32_t eng_sample_top(struct eng_sampler *s, const int32_t *ids, const float *vals, int n,
                       const struct eng_sample_req *req)
{
	struct cand *c = s->c;
	int m;

	if (n < 1 || !eng_sample_req_top(req, n))
		return -EAGAIN;
	if (!(req->p.temperature > 0.0f)) {
		/* greedy_grammar's order: the arg max, then the rest of the 64 largest */
		for (int i = 0; i < n && i < 64; i++)
			if (!req->grammar || eng_grammar_token_ok(req->gvocab, req->grammar, ids[i]))
				return ids[i];
		return -EAGAIN;
	}
	for (int i = 0; i < req->p.top_k; i++)
		c[i] = (struct cand){ .l = vals[i], .id = ids[i] };
	m = chain(s, NULL, req, NULL);
	if (req->grammar) {
		int k = 0;

		for (int i = 0; i < m; i++)
			if (eng_grammar_token_ok(req->gvocab, req->grammar, c[i].id))
				c[k++] = c[i];
		if (k == 0)
			return -EAGAIN; /* the chain again on the mask: the whole row */
		m = k;
	}
	return draw(s, m, req);
}

int32_t eng_sample(struct eng_sampler *s, float *logits, const struct eng_sample_req *req)
{
	int32_t tok = 0;
	float lse = 0.0f, raw_tok;
	int n;

	if (req->lp) {
		if (!s->raw && !(s->raw = malloc(sizeof(*s->raw) * (size_t)s->n_vocab)))
			return argmax(logits, s->n_vocab);
		memcpy(s->raw, logits, sizeof(*s->raw) * (size_t)s->n_vocab);
		report_top(s, logits, req->lp, &lse);
	}
	n = survivors(s, logits, req, &tok);
	if (n > 0)
		tok = draw(s, n, req);
	if (req->lp) {
		raw_tok = s->raw[tok];
		req->lp->logprob = raw_tok - lse;
	}
	return tok;
}

int eng_sample_survivors(struct eng_sampler *s, float *logits, const struct eng_sample_req *req, int32_t *ids,
                         float *q)
{
	int32_t tok = 0;
	int n = survivors(s, logits, req, &tok);
	float qsum = 0.0f;

	if (n == 0) {
		ids[0] = tok;
		return 0;
	}
	for (int i = 0; i < n; i++) {
		q[i] = isfinite(s->c[0].l) ? expf((s->c[i].l - s->c[0].l) / req->p.temperature) : (i == 0);
		qsum += q[i];
	}
	for (int i = 0; i < n; i++) {
		ids[i] = s->c[i].id;
		q[i] /= qsum;
	}
	return n;
}
