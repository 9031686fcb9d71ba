/*
 * synth_internal.h — what the synthetic-model generator's files share
 * (synth.c: generation, the Qwen2.5 and MoE presets, --like; synth_arch.c:
 * the presets of the newer dense architectures).  Not a public header:
 * engine/synth.h is the module's contract.
 *
 * A plan is the tensor table of the file to write: names, types, shapes
 * and how to fill each tensor (random with mean/std, or fixed values).
 */
#ifndef PROMPTFS_ENGINE_SYNTH_INTERNAL_H
#define PROMPTFS_ENGINE_SYNTH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../gguf/gguf.h"
#include "synth.h"

struct synth_tensor {
	char name[GGUF_MAX_NAME + 1];
	enum gguf_dtype type;
	int n_dims;
	int64_t ne[GGUF_MAX_DIMS];
	float mean, std; /* distribution of its values */
	float *fixed;    /* [ne[0]] the values of a one-row F32 tensor (owned), or NULL: random */
};

struct synth_plan {
	struct synth_tensor *t;
	int n, cap;
};

/* Appends a tensor (ne1 ignored for 1-D).  0 / -ENOMEM. */
int synth_plan_add(struct synth_plan *p, const char *name, enum gguf_dtype type, int n_dims,
                   int64_t ne0, int64_t ne1);
/* llama.cpp's type fallback for rows that do not split into t's blocks. */
enum gguf_dtype synth_fit_type(enum gguf_dtype t, int64_t ne0);
/* llama.cpp's use_more_bits(i, n) of its Q4_K_M mix (attn_v, ffn_down). */
bool synth_more_bits(int i, int n);
/* shared/models/vocab/<file> (or `given`) into path.  0 / -ENOENT. */
int synth_find_vocab(const char *given, const char *file, char *path, size_t size);
/* gguf_writer_copy_kv filter: true for keys other than tokenizer.* (skipped). */
bool synth_skip_non_tokenizer(const char *key, void *user);

/* synth_arch.c: the dense presets of the newer architectures.  The names
 * (NULL past the last); and the plan and metadata of preset o->preset when
 * it is one of them: 1 (built, or an error in *err), 0 when it is not. */
const char *synth_arch_preset_name(int i);
int synth_arch_build(const struct eng_synth_opts *o, struct gguf_writer *w, struct synth_plan *p,
                     int *err);

#endif /* PROMPTFS_ENGINE_SYNTH_INTERNAL_H */
