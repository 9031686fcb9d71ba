/*
 * synth_internal.h — the pieces of the synthetic-model generator
 * (synth.h) shared by its files:
 *   synth.c          the tensor plan, --like, generation and writing
 *   synth_presets.c  the built-in model shapes and their metadata
 *   synth_mix.c      llama.cpp's choice of tensor types for a file type
 *
 * Shape letters: V vocabulary, C embedding, L layers, H/G query/KV heads,
 * D head dim, F feed-forward, E experts, Fe expert feed-forward.
 */
#ifndef PROMPTFS_ENGINE_SYNTH_INTERNAL_H
#define PROMPTFS_ENGINE_SYNTH_INTERNAL_H

#include "../gguf/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct synth_tensor {
	char name[GGUF_MAX_NAME + 1];
	enum gguf_dtype type;
	int n_dims;
	int64_t ne[GGUF_MAX_DIMS];
	float mean, std;     /* distribution of its values */
	float *values;       /* [ne0] fixed values of a 1-row F32 tensor (rope_freqs), or NULL; owned */
};

struct synth_plan {
	struct synth_tensor *t;
	int n, cap;
};

/* Frees every tensor's values and the table; accepts an empty plan. */
void synth_plan_free(struct synth_plan *p);
/* Appends a tensor of shape ne[0..n_dims) (the rest 1).  0 / -ENOMEM. */
int synth_plan_add(struct synth_plan *p, const char *name, enum gguf_dtype type, int n_dims,
                   int64_t ne0, int64_t ne1, int64_t ne2);

/* llama.cpp's fallback when rows of ne0 do not split into t's blocks
 * (tensor_type_fallback): Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0,
 * Q2_K/Q3_K → Q4_0, and F16 when even that does not fit. */
enum gguf_dtype synth_fit_type(enum gguf_dtype t, int64_t ne0);

// ---- llama.cpp's mix (synth_mix.c)

/* The llama_ftype values of the file types the presets come in
 * (general.file_type). */
enum synth_ftype {
	SYNTH_FTYPE_F16 = 1,
	SYNTH_FTYPE_Q4_0 = 2,
	SYNTH_FTYPE_Q8_0 = 7,
	SYNTH_FTYPE_Q4_K_M = 15,
	SYNTH_FTYPE_Q5_K_M = 17,
	SYNTH_FTYPE_Q6_K = 18,
	SYNTH_FTYPE_BF16 = 32,
};

/* What llama.cpp's type choice reads from the model besides the tensors. */
struct synth_mix_model {
	const char *arch; /* general.architecture */
	int n_layer, n_head, n_head_kv, n_expert;
	/* Count layers in name order (blk.0, blk.1, blk.10, …): the order of
	 * the llama.cpp that made the published Qwen2.5 GGUFs; this llama.cpp
	 * counts them by layer number. */
	bool name_order;
};

/* Sets the type of every tensor llama-quantize would convert, as its
 * llama_tensor_get_type does for `ftype` when quantizing a converted
 * (F16 matrices, F32 vectors) file: the per-tensor-role rules, the
 * use_more_bits layers, the head's type, the 70B and 8-expert rules, and
 * the fallbacks for rows that do not split into blocks.  Other tensors
 * keep their types.  0 / -EINVAL (an ftype not listed above, a layer
 * number out of range) with a log line. */
int synth_mix_apply(struct synth_plan *p, const struct synth_mix_model *m, int ftype);

/* "q4_k_m" → SYNTH_FTYPE_Q4_K_M …; -1 when not one of the above. */
int synth_ftype_parse(const char *suffix);
/* The suffixes, NULL-terminated, in the order --list-presets prints them. */
extern const char *const synth_ftype_suffixes[];

// ---- presets (synth_presets.c)

/* Number of preset names, and the i-th ("qwen2.5-7b-instruct-q4_k_m")
 * into buf.  0 / -EINVAL for i out of range. */
int synth_preset_count(void);
int synth_preset_name(int i, char *buf, size_t size);
/* Fills w's metadata and p's tensor table (types final) for preset `name`,
 * the tokenizer copied from vocab (NULL: the preset's file in the usual
 * shared/ places).  0 / -EINVAL unknown name / -errno, with a log line. */
int synth_preset_plan(const char *name, const char *vocab, struct gguf_writer *w, struct synth_plan *p);

/* llama.cpp's use_more_bits(i, n): the layers whose attn_v / ffn_down get
 * more bits in K_M files (synth_mix.c). */
bool synth_more_bits(int i, int n);
/* shared/models/vocab/<file> (or `given`) into path.  0 / -ENOENT
 * (synth_presets.c). */
int synth_find_vocab(const char *given, const char *file, char *path, size_t size);
/* gguf_writer_copy_kv filter: true for keys other than tokenizer.* (skipped). */
bool synth_skip_non_tokenizer(const char *key, void *user);

// ---- GPU test layouts of the newer dense architectures (synth_arch.c)

/* gemma3-270m-q4_k_m, gemma2-small-q4_k_m, phi3-small-q4_k_m,
 * llama3.1-small-q4_k_m: accepted by --preset but not listed (the mix is
 * llama.cpp's in outline only, so test_synth_mix does not check them).
 * The i-th name (NULL past the last); and the plan and metadata of preset
 * `name` when it is one of them: 1 (built, or an error in *err), 0 when it
 * is not. */
const char *synth_arch_preset_name(int i);
int synth_arch_build(const char *name, const char *vocab, struct gguf_writer *w, struct synth_plan *p,
                     int *err);

#endif /* PROMPTFS_ENGINE_SYNTH_INTERNAL_H */
