/*
 * synth.h — the synthetic-model generator behind `promptfs synth`: writes a
 * GGUF with the exact tensor names, shapes and types of a real model (or of
 * a named preset) and random weights of realistic scale.  GPU machines get
 * their benchmark models this way (timing does not depend on weight values;
 * only 64 MiB travel per call).
 *
 * Weights: matrices and embeddings ~ N(0, 0.02) (Irwin-Hall approximation),
 * norm weights ~ 1 + N(0, 0.02), biases ~ N(0, 0.02), rope_freqs exactly 1.
 * Each row's values come from its own stream seeded by (seed, tensor, row),
 * so the output is the same for any thread count.
 */
#ifndef PROMPTFS_ENGINE_SYNTH_H
#define PROMPTFS_ENGINE_SYNTH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct eng_synth_opts {
	const char *like;   /* real model to mirror (every KV, every tensor), or NULL */
	const char *preset; /* a name from eng_synth_presets(), or NULL */
	const char *vocab;  /* presets: tokenizer source GGUF; NULL = search the usual places */
	const char *out;    /* output path */
	uint64_t seed;
	int type;           /* -1: types as the source/preset; else every matrix gets this dtype
	                     * (rows not divisible by its block fall back as llama.cpp does) */
	int n_threads;      /* 0: all online CPUs */
	int verbose;        /* progress lines on stderr */
};

/* NULL-terminated list of preset names. */
const char *const *eng_synth_presets(void);

/* Writes o->out.  0 / -errno with a log line (partial output is removed). */
int eng_synth(const struct eng_synth_opts *o);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_SYNTH_H */
