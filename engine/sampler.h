/*
 * sampler.h — token sampling, the reference implementation (CPU) and the
 * exact semantics every backend's device sampler must follow.
 *
 * The chain, applied to one row of V logits (each step off at its default):
 *   0. logit_bias: l[id] += bias for each listed id (-inf forbids).
 *   1. penalties over `recent` (the last repeat_last_n tokens), per distinct
 *      token t with count c in the window (llama.cpp's penalties sampler):
 *      l[t] = l[t] > 0 ? l[t] / repeat_penalty : l[t] * repeat_penalty,
 *      then l[t] -= c * frequency_penalty + presence_penalty.
 *   2. DRY over `dry_hist` (llama.cpp's DRY: sequence breakers "\n" ":"
 *      "\"" "*", a token whose piece contains one ends a repetition and is
 *      never penalised): l[t] -= dry_multiplier * dry_base^(len -
 *      dry_allowed_length) for each token t that would extend a repeated
 *      sequence of len >= dry_allowed_length.
 *   3. temperature <= 0: greedy — the arg max (lowest id on ties), among the
 *      tokens the grammar allows when there is one.
 *   4. top_k > 0: keep the k largest logits (ties: lower id first).
 *   5. p_i = softmax(l) over the survivors (temperature 1, as llama.cpp).
 *   6. typical_p < 1: keep the tokens with the smallest |-log p_i - H| until
 *      their p sums past typical_p (llama.cpp's typical), renormalise p.
 *   7. top_p < 1: sort by p descending (ties: lower id first) and keep the
 *      shortest prefix whose cumulative p >= top_p (at least one).
 *   8. min_p > 0: keep tokens with p_i >= min_p * max p.
 *   9. XTC: with probability xtc_probability (coin: eng_rng_uniform of the
 *      seed mixed with ENG_XTC_SALT, same draw), if threshold <= 0.5 and at
 *      least two survivors have p >= xtc_threshold, drop all of those but
 *      the least likely one (llama.cpp's xtc).
 *  10. grammar: drop the survivors the grammar does not allow.  If none is
 *      left, steps 4-9 run again on the allowed tokens only (their top-k
 *      found among the largest logits when they are all there, else the
 *      grammar is applied to the whole vocabulary, eng_grammar_mask); the
 *      result is always a token the grammar allows.  Greedy under a
 *      grammar is the arg max over the allowed tokens.
 *  11. q_i = softmax(l_i / temperature) over the survivors; draw
 *      u = eng_rng_uniform(seed, draw) in [0,1) and return the first survivor
 *      (in the order of step 7: p descending, id ascending) whose cumulative
 *      q exceeds u * sum(q).
 * Identical logits, settings, seed and draw give the identical token on every
 * backend.  The draw counter is the session's count of sampled tokens, so a
 * session's text does not depend on which other sessions share its batches.
 * When req->lp is set, the sampler also reports the raw model distribution
 * (log-softmax of the logits as they came in, before step 0): the chosen
 * token's log-probability and the top n_top alternatives.
 * Backends that sample on the device handle steps 0, 1 (repeat penalty
 * only), 3-5, 7, 8 and 11; a request with anything else
 * (eng_sample_req_host) is sampled on the host.  When the request's host
 * steps are only a grammar, typical_p or XTC (eng_sample_req_top), they
 * act on the top-k survivors, so the device sends the row's 64 largest
 * logits after steps 0-1 and the host finishes with eng_sample_top();
 * only when the grammar refuses all of them does the whole row come over.
 */
#ifndef PROMPTFS_ENGINE_SAMPLER_H
#define PROMPTFS_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_SAMPLE_MAX_BIAS 1024 /* most logit_bias entries of one request (engine.h ENG_MAX_BIAS) */
#define ENG_XTC_SALT 0x585443ull /* "XTC": the XTC coin's stream differs from the draw's */

struct eng_logit_bias {
	int32_t id;
	float bias; /* added to the logit; -inf forbids the token */
};

struct eng_sample_params {
	float temperature;    /* <= 0: greedy */
	int top_k;            /* 0: off */
	float top_p;          /* 1: off */
	float min_p;          /* 0: off */
	float repeat_penalty; /* 1: off */
	float presence_penalty, frequency_penalty; /* 0: off */
	float typical_p;      /* 1 (or 0): off */
	float dry_multiplier; /* 0: off */
	float dry_base;
	int dry_allowed_length;
	float xtc_probability; /* 0: off */
	float xtc_threshold;
};

struct eng_grammar_state;
struct eng_grammar_vocab;

/* Log-probabilities reported for one sampled token (host memory). */
struct eng_sample_lp {
	float logprob;          /* out: the chosen token's */
	int n_top;              /* in: alternatives wanted (<= ENG_SAMPLE_MAX_TOP) */
	int32_t top_id[20];     /* out: the n_top most likely, descending (ties: lower id) */
	float top_lp[20];
};
#define ENG_SAMPLE_MAX_TOP 20

struct eng_sample_req {
	struct eng_sample_params p;
	uint64_t seed;
	uint64_t draw;          /* index of this draw in the session */
	const int32_t *recent;  /* last tokens of the session, for the penalties (host memory) */
	int n_recent;
	const struct eng_logit_bias *bias; /* [n_bias] */
	int n_bias;
	const int32_t *dry_hist; /* the DRY window of the session's tokens, oldest first */
	int n_dry_hist;
	const unsigned char *dry_breaker; /* [V] 1: the token's piece contains a sequence breaker (NULL: none) */
	struct eng_grammar_state *grammar;      /* NULL: unconstrained (engine thread only) */
	const struct eng_grammar_vocab *gvocab; /* with grammar */
	struct eng_sample_lp *lp;               /* NULL: no log-probabilities wanted */
};

/* The request needs the host sampler (anything beyond what device
 * samplers implement: see the header comment). */
static inline int eng_sample_req_host(const struct eng_sample_req *r)
{
	return r->n_bias || r->grammar || r->lp || r->p.presence_penalty != 0.0f ||
	       r->p.frequency_penalty != 0.0f || (r->p.typical_p > 0.0f && r->p.typical_p < 1.0f) ||
	       (r->p.dry_multiplier != 0.0f && r->n_dry_hist > 0) || r->p.xtc_probability > 0.0f;
}

/* The request can be finished from the row's n largest logits after steps
 * 0-1 (eng_sample_top): no log-probabilities, no presence/frequency
 * penalty or DRY (they change logits outside the top k); greedy needs 64
 * of them (the grammar's greedy step tries the 64 largest), else top_k in
 * 1..n. */
static inline int eng_sample_req_top(const struct eng_sample_req *r, int n)
{
	if (r->lp || r->p.presence_penalty != 0.0f || r->p.frequency_penalty != 0.0f ||
	    (r->p.dry_multiplier != 0.0f && r->n_dry_hist > 0))
		return 0;
	return !(r->p.temperature > 0.0f) ? n >= 64 : r->p.top_k > 0 && r->p.top_k <= n;
}

/* splitmix64: the one random function of the project (host and device). */
#if defined(__CUDACC__)
__host__ __device__
#endif
static inline uint64_t eng_rng_mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

/* Uniform in [0, 1) with 24 random bits, from (seed, draw). */
#if defined(__CUDACC__)
__host__ __device__
#endif
static inline float eng_rng_uniform(uint64_t seed, uint64_t draw)
{
	uint64_t r = eng_rng_mix(seed ^ eng_rng_mix(draw));
	return (float)(r >> 40) * (1.0f / 16777216.0f);
}

struct eng_sampler; /* scratch for one row (V floats and indices) */

struct eng_sampler *eng_sampler_init(int n_vocab);
void eng_sampler_free(struct eng_sampler *s);
/* Applies the chain to logits[V] (modified in place) and returns the token. */
int32_t eng_sample(struct eng_sampler *s, float *logits, const struct eng_sample_req *req);
/* The same from the row's n largest logits only, ids[i] / vals[i] in
 * step 4's order (logit descending, id ascending), steps 0-1 already
 * applied (a device sampler's; eng_sample_req_top must hold).  Returns the
 * token eng_sample would return on the whole row, or -EAGAIN when that
 * needs the whole row (a grammar allowed none of the candidates): then
 * call eng_sample on the row with no bias and no repeat penalty. */
int32_t eng_sample_top(struct eng_sampler *s, const int32_t *ids, const float *vals, int n,
                       const struct eng_sample_req *req);
/* Steps 0-10 only (for tests): the survivors' ids in draw order and their
 * q (step 11's softmax at the temperature); returns their number (0 for
 * greedy: ids[0] is then the arg max). */
int eng_sample_survivors(struct eng_sampler *s, float *logits, const struct eng_sample_req *req, int32_t *ids,
                         float *q);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_SAMPLER_H */
