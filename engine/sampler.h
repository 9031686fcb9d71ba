/*
 * sampler.h — token sampling, the reference implementation (CPU) and the
 * exact semantics every backend's device sampler must follow.
 *
 * The chain, applied to one row of V logits:
 *   1. repetition penalty: for each distinct token t among `recent`,
 *      l[t] = l[t] > 0 ? l[t] / penalty : l[t] * penalty   (penalty 1 = off)
 *   2. temperature <= 0: greedy — return the arg max (lowest id on ties).
 *   3. top_k > 0: keep the k largest logits (ties: lower id first).
 *   4. p_i = softmax(l) over the survivors (temperature 1 here, as llama.cpp).
 *   5. top_p < 1: sort survivors by p descending (ties: lower id first) and
 *      keep the shortest prefix whose cumulative p >= top_p (at least one).
 *   6. min_p > 0: keep tokens with p_i >= min_p * max p.
 *   7. q_i = softmax(l_i / temperature) over the survivors; draw
 *      u = eng_rng_uniform(seed, draw) in [0,1) and return the first survivor
 *      (in the order of step 5: p descending, id ascending) whose cumulative
 *      q exceeds u * sum(q).
 * Identical logits, settings, seed and draw give the identical token on every
 * backend.  The draw counter is the session's count of sampled tokens, so a
 * session's text does not depend on which other sessions share its batches.
 */
#ifndef PROMPTFS_ENGINE_SAMPLER_H
#define PROMPTFS_ENGINE_SAMPLER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct eng_sample_params {
	float temperature;    /* <= 0: greedy */
	int top_k;            /* 0: off */
	float top_p;          /* 1: off */
	float min_p;          /* 0: off */
	float repeat_penalty; /* 1: off */
};

struct eng_sample_req {
	struct eng_sample_params p;
	uint64_t seed;
	uint64_t draw;          /* index of this draw in the session */
	const int32_t *recent;  /* last tokens of the session, for the penalty (host memory) */
	int n_recent;
};

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

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_SAMPLER_H */
