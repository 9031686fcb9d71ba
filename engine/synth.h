/*
 * synth.h — the synthetic-model generator behind `promptfs synth`: writes a
 * GGUF with the exact tensor names, shapes and types of a real model (or of
 * a named preset) and random weights of realistic scale.  GPU machines get
 * their benchmark models this way (timing does not depend on weight values;
 * only 64 MiB travel per call).
 *
 * Presets: "<model>-<file type>", e.g. qwen2.5-7b-instruct-q4_k_m, in the
 * file types f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, q4_0, each with the
 * tensor types llama.cpp's llama-quantize gives that model.
 *
 * Weights: matrices and embeddings ~ N(0, 0.02) (Irwin-Hall approximation),
 * norm weights ~ 1 + N(0, 0.02), biases ~ N(0, 0.02), rope_freqs exactly 1
 * (--like) or the model's own factors (the Llama 3.1 presets).
 * Each row's values come from its own stream seeded by (seed, tensor, row),
 * so the output is the same for any thread count.
 */
#ifndef PROMPTFS_ENGINE_SYNTH_H
#define PROMPTFS_ENGINE_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
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
	bool sparse;        /* header, tensor table and fixed tables only: the random
	                     * weights are holes of the file (read as zeros) */
};

/* The preset names: eng_synth_preset_name(i) for i < eng_synth_preset_count()
 * writes the i-th into buf.  0 / -EINVAL out of range. */
int eng_synth_preset_count(void);
int eng_synth_preset_name(int i, char *buf, size_t size);

/* Writes o->out.  0 / -errno with a log line (partial output is removed). */
int eng_synth(const struct eng_synth_opts *o);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_SYNTH_H */
