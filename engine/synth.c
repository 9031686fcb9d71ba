/*
 * synth.c — synthetic models (see synth.h): the same tensor table and
 * metadata as a real model, random weights.
 *
 * Two sources of the tensor table:
 *  - --like REAL.gguf: every KV copied, every tensor with the same name,
 *    shape and type;
 *  - presets (synth_presets.c): published model shapes, the tokenizer
 *    copied from shared/models/vocab/, each file type's tensor types as
 *    llama.cpp's llama-quantize chooses them (synth_mix.c).
 * A sparse file (--sparse) has the whole header and tensor table and no
 * random weights (holes that read as zeros; fixed tables such as
 * rope_freqs are written): a big preset's layout in a moment, for tools
 * that read only tables (llama-quantize --dry-run, gguf-dump).
 *
 * Output is streamed (gguf_writer_stream_*): each tensor is generated and
 * quantised in chunks of rows (CHUNK_BYTES of output at most), every chunk
 * split over n_threads pthreads by row range, then written.  Peak memory is
 * one chunk plus one row of floats per thread.
 *
 * Shape letters: synth_internal.h.
 */
#include "synth.h"
#include "synth_internal.h"

#include "../gguf/gguf.h"
#include "../gguf/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK_BYTES ((size_t)32 << 20)
#define MIN_ELEMS_PER_THREAD 65536
#define WEIGHT_STD 0.02f

// ---- the plan

void synth_plan_free(struct synth_plan *p)
{
	for (int i = 0; i < p->n; i++)
		free(p->t[i].values);
	free(p->t);
	*p = (struct synth_plan){ 0 };
}

int synth_plan_add(struct synth_plan *p, const char *name, enum gguf_dtype type, int n_dims, int64_t ne0,
                   int64_t ne1, int64_t ne2)
{
	if (p->n == p->cap) {
		int cap = p->cap ? p->cap * 2 : 512;
		struct synth_tensor *t = realloc(p->t, (size_t)cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		p->t = t;
		p->cap = cap;
	}
	struct synth_tensor *t = &p->t[p->n++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->type = type;
	t->n_dims = n_dims;
	t->ne[0] = ne0;
	t->ne[1] = n_dims > 1 ? ne1 : 1;
	t->ne[2] = n_dims > 2 ? ne2 : 1;
	t->ne[3] = 1;
	return 0;
}

// ---- --like: the source's own table

static int plan_like(struct synth_plan *p, const struct gguf_ctx *src, int force)
{
	for (int64_t i = 0; i < gguf_n_tensors(src); i++) {
		const struct gguf_tensor_info *s = gguf_get_tensor(src, i);
		int err = synth_plan_add(p, s->name, s->type, s->n_dims, s->ne[0], s->ne[1], s->ne[2]);
		if (err)
			return err;
		struct synth_tensor *t = &p->t[p->n - 1];
		memcpy(t->ne, s->ne, sizeof(t->ne));
		if (force >= 0 && s->n_dims >= 2)
			t->type = synth_fit_type((enum gguf_dtype)force, s->ne[0]);
	}
	return 0;
}

/* Value distribution from the tensor's role. */
static void set_distributions(struct synth_plan *p)
{
	for (int i = 0; i < p->n; i++) {
		struct synth_tensor *t = &p->t[i];
		t->mean = 0.0f;
		t->std = WEIGHT_STD;
		if (strstr(t->name, "norm")) {
			t->mean = 1.0f;
		} else if (strstr(t->name, "rope_freqs")) {
			t->mean = 1.0f;
			t->std = 0.0f;
		}
	}
}

int eng_synth_preset_count(void) { return synth_preset_count(); }

int eng_synth_preset_name(int i, char *buf, size_t size) { return synth_preset_name(i, buf, size); }

// ---- generation

struct gen_job {
	const struct synth_tensor *t;
	uint64_t seed;   /* per tensor */
	int64_t r0, r1;  /* rows of the tensor this job fills */
	int64_t base;    /* first row of the chunk (row r goes to out + (r - base) * row_bytes) */
	uint8_t *out;
	size_t row_bytes;
	int err;
};

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* x[n] ~ mean + std * N(0,1), the normal approximated by the sum of four
 * 16-bit uniforms (Irwin-Hall, variance 1/3, rescaled): one 64-bit draw
 * per value, which keeps generation well under the quantisers' cost. */
static void fill_row(float *x, int64_t n, uint64_t state, float mean, float std)
{
	const float k = std * 1.7320508f / 65536.0f; /* sqrt(3) */

	for (int64_t i = 0; i < n; i++) {
		uint64_t z = splitmix64(&state);
		float s = (float)(z & 0xffff) + (float)((z >> 16) & 0xffff) + (float)((z >> 32) & 0xffff) +
			  (float)(z >> 48) + 2.0f - 2.0f * 65536.0f;
		x[i] = mean + k * s;
	}
}

static void *gen_worker(void *arg)
{
	struct gen_job *j = arg;
	int64_t ne0 = j->t->ne[0];
	float *x = malloc((size_t)ne0 * sizeof(float));

	if (!x) {
		j->err = -ENOMEM;
		return NULL;
	}
	for (int64_t r = j->r0; r < j->r1 && !j->err; r++) {
		uint64_t state = j->seed ^ ((uint64_t)r * 0xD1B54A32D192ED03ull);
		if (j->t->values)
			memcpy(x, j->t->values, (size_t)ne0 * sizeof(float));
		else
			fill_row(x, ne0, state, j->t->mean, j->t->std);
		j->err = gguf_quantize_row((int)j->t->type, x, j->out + (size_t)(r - j->base) * j->row_bytes, ne0);
	}
	free(x);
	return NULL;
}

/* Fills rows [r0, r1) of t into out, over up to n_threads threads. */
static int gen_chunk(const struct synth_tensor *t, uint64_t seed, int64_t r0, int64_t r1, uint8_t *out,
		     size_t row_bytes, int n_threads)
{
	struct gen_job jobs[256];
	pthread_t tid[256];
	int64_t rows = r1 - r0, elems = rows * t->ne[0];
	int n = n_threads;
	int err = 0;

	if (n > 256)
		n = 256;
	if (n > rows)
		n = (int)rows;
	if (n > elems / MIN_ELEMS_PER_THREAD)
		n = (int)(elems / MIN_ELEMS_PER_THREAD);
	if (n < 1)
		n = 1;
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct gen_job){ .t = t, .seed = seed, .r0 = r0 + rows * i / n,
					    .r1 = r0 + rows * (i + 1) / n, .base = r0, .out = out,
					    .row_bytes = row_bytes };
	}
	int started = 1;
	for (int i = 1; i < n; i++, started++)
		if (pthread_create(&tid[i], NULL, gen_worker, &jobs[i]) != 0)
			break;
	gen_worker(&jobs[0]);
	for (int i = started; i < n; i++)
		gen_worker(&jobs[i]); /* threads that could not start: run here */
	for (int i = 1; i < started; i++)
		pthread_join(tid[i], NULL);
	for (int i = 0; i < n && !err; i++)
		err = jobs[i].err;
	return err;
}

static int write_tensors(struct gguf_writer *w, const struct synth_plan *p, const struct eng_synth_opts *o,
			 int n_threads)
{
	uint8_t *chunk = NULL;
	int err = 0;

	for (int i = 0; i < p->n && !err; i++) {
		const struct synth_tensor *t = &p->t[i];
		int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
		size_t row_bytes = gguf_row_size(t->type, t->ne[0]);
		int64_t per = (int64_t)(CHUNK_BYTES / row_bytes);
		if (per < 1)
			per = 1;
		if (per > rows)
			per = rows;
		uint8_t *c = realloc(chunk, (size_t)per * row_bytes);
		if (!c) {
			err = -ENOMEM;
			break;
		}
		chunk = c;
		uint64_t seed = o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xC2B2AE3D27D4EB4Full + 1;
		if (o->sparse && !t->values) {
			err = gguf_writer_stream_skip(w);
			continue;
		}
		for (int64_t r = 0; r < rows && !err; r += per) {
			int64_t r1 = r + per < rows ? r + per : rows;
			err = gen_chunk(t, seed, r, r1, chunk, row_bytes, n_threads);
			if (!err)
				err = gguf_writer_stream_tensor(w, chunk, (size_t)(r1 - r) * row_bytes);
		}
		if (o->verbose && (i % 32 == 0 || i == p->n - 1))
			fprintf(stderr, "synth: %d/%d tensors\r", i + 1, p->n);
		if (err == -EINVAL)
			LOG_ERR("tensor '%s' (%s, ne[0] = %lld) could not be generated", t->name,
				gguf_dtype_name(t->type), (long long)t->ne[0]);
	}
	if (o->verbose)
		fputc('\n', stderr);
	free(chunk);
	return err;
}

static int build_plan(const struct eng_synth_opts *o, struct gguf_writer *w, struct synth_plan *p)
{
	int err = 0;

	if (o->like) {
		struct gguf_ctx *src = NULL;
		if ((err = gguf_open(o->like, &src)))
			return err;
		if (gguf_alignment(src) != GGUF_DEFAULT_ALIGNMENT)
			gguf_writer_set_alignment(w, gguf_alignment(src));
		if (!(err = gguf_writer_copy_kv(w, src, NULL, NULL)))
			err = plan_like(p, src, o->type);
		gguf_free(src);
		return err;
	}
	if (!synth_arch_build(o->preset, o->vocab, w, p, &err))
		err = synth_preset_plan(o->preset, o->vocab, w, p);
	if (err)
		return err;
	if (o->type >= 0)
		for (int k = 0; k < p->n; k++)
			if (p->t[k].n_dims >= 2)
				p->t[k].type = synth_fit_type((enum gguf_dtype)o->type, p->t[k].ne[0]);
	return 0;
}

int eng_synth(const struct eng_synth_opts *o)
{
	struct gguf_writer *w = gguf_writer_init();
	struct synth_plan plan = { 0 };
	int n_threads = o->n_threads > 0 ? o->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	int err;

	if (!w)
		return -ENOMEM;
	if (!o->out || !!o->like == !!o->preset) {
		LOG_ERR("need an output path and exactly one of --like / --preset");
		err = -EINVAL;
		goto out_writer;
	}
	if (o->type >= 0 && (!gguf_type_traits(o->type) || !gguf_type_traits(o->type)->is_weight)) {
		LOG_ERR("type %s cannot hold weights", gguf_dtype_name(o->type));
		err = -EINVAL;
		goto out_writer;
	}
	if ((err = build_plan(o, w, &plan)))
		goto out_plan;
	set_distributions(&plan);
	for (int i = 0; i < plan.n && !err; i++)
		err = gguf_writer_add_tensor(w, plan.t[i].name, plan.t[i].type, plan.t[i].n_dims, plan.t[i].ne, NULL);
	if (err)
		goto out_plan;
	if ((err = gguf_writer_stream_begin(w, o->out)))
		goto out_plan;
	err = write_tensors(w, &plan, o, n_threads < 1 ? 1 : n_threads);
	int end = gguf_writer_stream_end(w);
	if (!err)
		err = end;
	if (err)
		unlink(o->out);
out_plan:
	synth_plan_free(&plan);
out_writer:
	gguf_writer_free(w);
	return err;
}
