/*
 * tool_logits.c — runs a model's forward pass on given token ids and dumps
 * the logits, for tests/test_logits.py (CPU vs llama.cpp) and the GPU tests
 * (CUDA vs CPU).
 *
 *   tool_logits MODEL.gguf [options] [ID ...]
 *     --tokens FILE     prompt ids (whitespace- or comma-separated) instead of argv
 *     --batch FILE      a second prompt, run as a second sequence in the same batches
 *     --out FILE        write logits as raw float32 [rows][V]: every prompt position
 *                       of the first sequence, then of the second (--batch)
 *     --chunk K         feed the prompt K tokens per forward() (pos0 > 0, page crossings)
 *     --first K         ... but K tokens in the first forward() (--first P --chunk 1: a
 *                       P-token prompt prefilled, then one token per step, as the
 *                       scheduler runs a single session)
 *     --greedy N        after the prompt, decode N tokens one per forward() through the
 *                       backend's sampler at temperature 0 and print the ids (one line
 *                       per sequence)
 *     --window-ring     models with sliding-window layers: their KV in a window pool
 *                       (backend.h) of the fewest pages a window and a chunk span, used
 *                       as a ring (page i → window page i mod ring), so pages that left
 *                       the window are overwritten: a backend that read one would
 *                       differ from llama.cpp
 *     --backend NAME    cpu (default), cuda, auto
 *     --threads N       CPU threads (default 2; 0 = all cores)
 *     --time            print prefill / decode tokens per second to stderr
 *
 * Sequences get interleaved, non-contiguous KV pages (sequence s, page i →
 * pool page 2i + s), so page tables are exercised even with one sequence.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/backend.h"
#include "engine/model.h"
#include "gguf/gguf.h"
#include "gguf/log.h"

#define MAX_SEQS 2

struct opts {
	const char *model, *tokens_file, *batch_file, *out_file, *backend;
	int chunk, first, greedy, threads;
	bool timing, window_ring;
	int32_t *argv_ids;
	int n_argv_ids;
};

struct seq {
	int32_t *ids; /* prompt, then generated tokens */
	int n_prompt, n, cap;
	int32_t *pages;
	int32_t *wpages; /* --window-ring */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int read_ids(const char *path, struct seq *s)
{
	FILE *f = fopen(path, "r");
	long v;
	int c;

	if (!f) {
		fprintf(stderr, "tool_logits: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	for (;;) {
		if (fscanf(f, "%ld", &v) == 1) {
			if (s->n == s->cap) {
				s->cap = s->cap ? 2 * s->cap : 64;
				s->ids = realloc(s->ids, (size_t)s->cap * sizeof(*s->ids));
			}
			s->ids[s->n++] = (int32_t)v;
			continue;
		}
		c = fgetc(f); /* skip a separator */
		if (c == EOF)
			break;
	}
	fclose(f);
	s->n_prompt = s->n;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->backend = "cpu";
	o->threads = 2;
	o->argv_ids = calloc((size_t)argc, sizeof(int32_t));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--time")) {
			o->timing = true;
			continue;
		}
		if (!strcmp(a, "--window-ring")) {
			o->window_ring = true;
			continue;
		}
		if (a[0] == '-' && a[1] == '-' && !val) {
			fprintf(stderr, "tool_logits: %s needs a value\n", a);
			return -EINVAL;
		}
		if (!strcmp(a, "--tokens")) o->tokens_file = val;
		else if (!strcmp(a, "--batch")) o->batch_file = val;
		else if (!strcmp(a, "--out")) o->out_file = val;
		else if (!strcmp(a, "--backend")) o->backend = val;
		else if (!strcmp(a, "--chunk")) o->chunk = atoi(val);
		else if (!strcmp(a, "--first")) o->first = atoi(val);
		else if (!strcmp(a, "--greedy")) o->greedy = atoi(val);
		else if (!strcmp(a, "--threads")) o->threads = atoi(val);
		else if (!o->model) { o->model = a; continue; }
		else { o->argv_ids[o->n_argv_ids++] = atoi(a); continue; }
		i++;
	}
	if (!o->model) {
		fprintf(stderr, "usage: tool_logits MODEL.gguf [--tokens FILE | ID ...] [--batch FILE] "
		                "[--out FILE] [--chunk K] [--first K] [--greedy N] [--window-ring] [--backend NAME] [--threads N] [--time]\n");
		return -EINVAL;
	}
	return 0;
}

/* Prefills every sequence's prompt, chunk tokens per forward (0: all at
 * once), all sequences in the same batches; logits of every prompt
 * position go to out[sum of prompts][V] when out is non-NULL (through
 * rows[max_batch_tokens][V]). */
static int prefill(const struct eng_backend_ops *ops, struct eng_backend *be, struct seq *seqs,
                   int n_seqs, int chunk, int first, int V, float *out, float *rows)
{
	int done[MAX_SEQS] = { 0 }, off[MAX_SEQS], left = 1, rc = 0;

	for (int s = 0, o = 0; s < n_seqs; s++) {
		off[s] = o;
		o += seqs[s].n_prompt;
	}
	while (left) {
		struct eng_batch_seq bs[MAX_SEQS];
		struct eng_batch b = { .n_seqs = 0, .seqs = bs };
		int bs_of[MAX_SEQS];
		left = 0;
		for (int s = 0; s < n_seqs; s++) {
			int n = seqs[s].n_prompt - done[s];
			if (n <= 0)
				continue;
			int lim = done[s] == 0 && first > 0 ? first : chunk;

			if (lim > 0 && n > lim)
				n = lim;
			bs_of[b.n_seqs] = s;
			bs[b.n_seqs++] = (struct eng_batch_seq){
				.tokens = seqs[s].ids + done[s], .n_tokens = n, .pos0 = done[s],
				.pages = seqs[s].pages, .logits_all = true, .wpages = seqs[s].wpages,
			};
		}
		if (!b.n_seqs)
			break;
		rc = ops->forward(be, &b, rows, NULL, NULL);
		if (rc)
			return rc;
		/* rows come back sequence after sequence: scatter them */
		for (int i = 0, r = 0; i < b.n_seqs; i++) {
			int s = bs_of[i];
			if (out)
				memcpy(out + (size_t)(off[s] + done[s]) * V, rows + (size_t)r * V,
				       (size_t)bs[i].n_tokens * V * sizeof(float));
			r += bs[i].n_tokens;
			done[s] += bs[i].n_tokens;
			left |= done[s] < seqs[s].n_prompt;
		}
	}
	return 0;
}

/* Decodes n tokens per sequence, all sequences in one batch per step. */
static int greedy(const struct eng_backend_ops *ops, struct eng_backend *be, struct seq *seqs,
                  int n_seqs, int n)
{
	for (int step = 0; step < n; step++) {
		struct eng_batch_seq bs[MAX_SEQS];
		struct eng_sample_req req[MAX_SEQS];
		int32_t tok[MAX_SEQS];
		struct eng_batch b = { .n_seqs = n_seqs, .seqs = bs };
		int rc;

		for (int s = 0; s < n_seqs; s++) {
			struct seq *q = &seqs[s];
			/* the first step samples from the prompt's last row */
			bs[s] = (struct eng_batch_seq){
				.tokens = q->ids + q->n - 1, .n_tokens = 1, .pos0 = q->n - 1,
				.pages = q->pages, .wpages = q->wpages,
			};
			req[s] = (struct eng_sample_req){
				.p = { .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
				       .repeat_penalty = 1.0f },
				.draw = (uint64_t)step,
			};
		}
		rc = ops->forward(be, &b, NULL, req, tok);
		if (rc)
			return rc;
		for (int s = 0; s < n_seqs; s++)
			seqs[s].ids[seqs[s].n++] = tok[s];
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct seq seqs[MAX_SEQS] = { 0 };
	struct gguf_ctx *g = NULL;
	struct eng_config cfg;
	struct eng_weights w = { 0 };
	const struct eng_backend_ops *ops = NULL;
	struct eng_backend *be = NULL;
	struct eng_backend_params bp = { 0 };
	float *logits = NULL, *rows = NULL;
	int n_seqs = 1, rc, max_prompt = 0, total_prompt = 0, max_len;
	double t0, t1, t2;

	rc = parse_args(argc, argv, &o);
	if (rc)
		return 2;
	if (o.tokens_file) {
		if (read_ids(o.tokens_file, &seqs[0]))
			return 2;
	} else {
		seqs[0].ids = o.argv_ids;
		seqs[0].n = seqs[0].n_prompt = seqs[0].cap = o.n_argv_ids;
		o.argv_ids = NULL;
	}
	if (o.batch_file) {
		if (read_ids(o.batch_file, &seqs[1]))
			return 2;
		n_seqs = 2;
	}
	for (int s = 0; s < n_seqs; s++) {
		if (seqs[s].n_prompt < 1) {
			fprintf(stderr, "tool_logits: prompt %d has no tokens\n", s);
			return 2;
		}
		seqs[s].cap = seqs[s].n + o.greedy;
		seqs[s].ids = realloc(seqs[s].ids, (size_t)seqs[s].cap * sizeof(int32_t));
		max_prompt = seqs[s].n_prompt > max_prompt ? seqs[s].n_prompt : max_prompt;
		total_prompt += seqs[s].n_prompt;
	}
	max_len = max_prompt + o.greedy;

	rc = gguf_open(o.model, &g);
	if (rc)
		goto out;
	rc = eng_model_bind(g, &cfg, &w);
	if (rc)
		goto out;
	ops = eng_backend_find(o.backend);
	if (!ops) {
		rc = -ENODEV;
		goto out;
	}
	bp.n_threads = o.threads;
	bp.max_ctx = max_len;
	bp.max_seqs = n_seqs;
	bp.max_batch_tokens = n_seqs * (o.first > 0 ? max_prompt
	                                : o.chunk > 0 && o.chunk < max_prompt ? o.chunk : max_prompt);
	bp.n_pages = MAX_SEQS * ((max_len + ENG_KV_PAGE - 1) / ENG_KV_PAGE);
	for (int s = 0; s < n_seqs; s++) {
		seqs[s].pages = calloc((size_t)bp.n_pages, sizeof(int32_t));
		for (int i = 0; i < bp.n_pages / MAX_SEQS; i++)
			seqs[s].pages[i] = MAX_SEQS * i + s;
	}
	if (o.window_ring) {
		int per = bp.max_batch_tokens / n_seqs, ring;

		if (!cfg.n_swa || !cfg.n_layer_swa) {
			fprintf(stderr, "tool_logits: --window-ring: the model has no sliding-window layers\n");
			rc = -EINVAL;
			goto out;
		}
		/* the pages a window of n_swa keys plus a chunk of per tokens span */
		ring = (cfg.n_swa - 1 + per + ENG_KV_PAGE - 1) / ENG_KV_PAGE + 1;
		bp.n_wpages = MAX_SEQS * ring;
		for (int s = 0; s < n_seqs; s++) {
			seqs[s].wpages = calloc((size_t)bp.n_pages, sizeof(int32_t));
			for (int i = 0; i < bp.n_pages / MAX_SEQS; i++)
				seqs[s].wpages[i] = MAX_SEQS * (i % ring) + s;
		}
		fprintf(stderr, "tool_logits: window ring of %d pages per sequence (window %d, chunk %d)\n",
		        ring, cfg.n_swa, per);
	}
	rc = ops->init(&cfg, &w, &bp, &be);
	if (rc)
		goto out;
	if (o.out_file) {
		logits = malloc((size_t)total_prompt * cfg.n_vocab * sizeof(float));
		rows = malloc((size_t)bp.max_batch_tokens * cfg.n_vocab * sizeof(float));
		if (!logits || !rows) {
			rc = -ENOMEM;
			goto out;
		}
	}
	t0 = now_s();
	rc = prefill(ops, be, seqs, n_seqs, o.chunk, o.first, cfg.n_vocab, logits, rows);
	if (rc)
		goto out;
	t1 = now_s();
	if (o.greedy > 0) {
		rc = greedy(ops, be, seqs, n_seqs, o.greedy);
		if (rc)
			goto out;
		for (int s = 0; s < n_seqs; s++) {
			for (int i = seqs[s].n_prompt; i < seqs[s].n; i++)
				printf("%s%d", i > seqs[s].n_prompt ? " " : "", seqs[s].ids[i]);
			printf("\n");
		}
	}
	t2 = now_s();
	if (o.timing) {
		fprintf(stderr, "%s: prefill %d tokens in %.3f s (%.1f tok/s)", ops->device_name(be),
		        total_prompt, t1 - t0, total_prompt / (t1 - t0));
		if (o.greedy > 0)
			fprintf(stderr, ", decode %d tokens in %.3f s (%.1f tok/s)", o.greedy * n_seqs,
			        t2 - t1, o.greedy * n_seqs / (t2 - t1));
		fprintf(stderr, "\n");
	}
	if (o.out_file) {
		FILE *f = fopen(o.out_file, "wb");
		size_t n = (size_t)total_prompt * cfg.n_vocab;
		if (!f || fwrite(logits, sizeof(float), n, f) != n || fclose(f)) {
			fprintf(stderr, "tool_logits: cannot write %s\n", o.out_file);
			rc = -EIO;
			goto out;
		}
	}
out:
	if (rc)
		fprintf(stderr, "tool_logits: failed: %s\n", strerror(-rc));
	if (be)
		ops->free(be);
	free(logits);
	free(rows);
	eng_weights_free(&w);
	gguf_free(g);
	for (int s = 0; s < MAX_SEQS; s++) {
		free(seqs[s].ids);
		free(seqs[s].pages);
		free(seqs[s].wpages);
	}
	free(o.argv_ids);
	return rc ? 1 : 0;
}
