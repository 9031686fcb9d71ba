/*
 * tool_grammar_cost.c — what the host sampling step costs per token with
 * and without a grammar, on the logits a real decode produces (the step a
 * constrained row takes on the host, also on the CUDA backend, which copies
 * such rows to the host and samples them with eng_sample: cuda/forward.cu
 * sample_host).
 *
 *   tool_grammar_cost MODEL.gguf GRAMMAR.gbnf PROMPT [options]
 *     -n N                   tokens to decode (default 128)
 *     --temp T               temperature (default 0: greedy, as scripts/bench-grammar.sh);
 *                            top_k, top_p, min_p are the session defaults
 *     --seed S               seed of the draws (default 1)
 *     --bias-containing STR  logit_bias -inf on every token whose piece contains STR,
 *                            in both rows (as the bench biases '}' away)
 *     --reps R               timings per token and row, the fastest kept (default 5)
 *     --threads N            CPU threads of the forward pass (default 2)
 * PROMPT is tokenised with special tokens parsed: write the chat template's
 * text (<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n) yourself.
 *
 * Each step: one CPU forward pass gives the row of logits; eng_sample runs
 * on fresh copies of it (the copy is not timed) R times unconstrained and R
 * times under the grammar, same settings, seed and draw; the grammar then
 * accepts the constrained token (timed) and that token is fed next, so the
 * text is the constrained reply.  The whole-vocabulary mask
 * (eng_grammar_mask) is timed too, for comparison.  Two counts: steps
 * where none of the unconstrained chain's survivors (greedy: the arg max)
 * is allowed, so the sampler looks further, and of those the steps where
 * the allowed tokens it needs are not among the 256 largest logits either
 * (sampler.c LAZY_SCAN), so it builds the mask.
 * Prints one line per measure: median, 90th percentile and mean in
 * microseconds over the steps, then the reply.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/backend.h"
#include "engine/grammar.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "gguf/gguf.h"

enum { M_FREE, M_GRAMMAR, M_ACCEPT, M_MASK, N_MEASURES };
static const char *const measure_name[N_MEASURES] = {
	"sample_unconstrained", "sample_grammar", "grammar_accept", "grammar_mask_full",
};

struct opts {
	const char *model, *grammar, *prompt, *bias_sub;
	int n, reps, threads;
	float temp;
	unsigned long long seed;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return 1e6 * (double)ts.tv_sec + 1e-3 * (double)ts.tv_nsec;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){ .n = 128, .reps = 5, .threads = 2, .seed = 1 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (a[0] == '-' && !v) {
			fprintf(stderr, "tool_grammar_cost: %s needs a value\n", a);
			return -EINVAL;
		}
		if (!strcmp(a, "-n")) o->n = atoi(v);
		else if (!strcmp(a, "--temp")) o->temp = strtof(v, NULL);
		else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--bias-containing")) o->bias_sub = v;
		else if (!strcmp(a, "--reps")) o->reps = atoi(v);
		else if (!strcmp(a, "--threads")) o->threads = atoi(v);
		else if (!o->model) { o->model = a; continue; }
		else if (!o->grammar) { o->grammar = a; continue; }
		else if (!o->prompt) { o->prompt = a; continue; }
		else { fprintf(stderr, "tool_grammar_cost: unexpected '%s'\n", a); return -EINVAL; }
		i++;
	}
	if (!o->prompt || o->n < 1 || o->reps < 1) {
		fprintf(stderr, "usage: tool_grammar_cost MODEL.gguf GRAMMAR.gbnf PROMPT [-n N] [--temp T] "
		                "[--seed S] [--bias-containing STR] [--reps R] [--threads N]\n");
		return -EINVAL;
	}
	return 0;
}

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (b = malloc((size_t)len + 1)) && fread(b, 1, (size_t)len, f) == (size_t)len) {
		*n = (size_t)len;
	} else {
		free(b);
		b = NULL;
	}
	fclose(f);
	return b;
}

/* -inf on every token whose piece contains sub (as `promptfs info
 * --tokens-containing`). */
static int bias_of(const struct eng_tokenizer *t, const char *sub, struct eng_logit_bias **out)
{
	int V = eng_tokenizer_n_vocab(t), n = 0;
	char piece[1024];

	*out = malloc(sizeof(**out) * (size_t)V);
	if (!*out)
		return -ENOMEM;
	for (int32_t id = 0; sub && id < V; id++) {
		int k = eng_token_piece(t, id, false, piece, sizeof(piece));

		if (k > 0 && memmem(piece, (size_t)k, sub, strlen(sub)))
			(*out)[n++] = (struct eng_logit_bias){ id, -INFINITY };
	}
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *name, double *v, int n)
{
	double sum = 0.0;

	for (int i = 0; i < n; i++)
		sum += v[i];
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	printf("%-22s median %9.1f us   p90 %9.1f us   mean %9.1f us   (%d tokens)\n", name, v[n / 2],
	       v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1], sum / n, n);
}

/* The fastest of reps runs of eng_sample on copies of row (us). */
static double time_sample(struct eng_sampler *s, const float *row, float *tmp, int V,
                          const struct eng_sample_req *r, int reps, int32_t *tok)
{
	double best = INFINITY;

	for (int k = 0; k < reps; k++) {
		memcpy(tmp, row, sizeof(*tmp) * (size_t)V);
		double t0 = now_us();
		*tok = eng_sample(s, tmp, r);
		double t = now_us() - t0;
		best = t < best ? t : best;
	}
	return best;
}

/* 0: a survivor of the unconstrained chain (greedy: the arg max) is
 * allowed; 1: none is, but what the sampler needs next is among the 256
 * largest logits (greedy: an allowed token; else top_k + 1 allowed ones,
 * 4 (top_k + 1) largest when that is more); 2: it builds the mask. */
static int fallback(struct eng_sampler *s, const float *row, float *tmp, int V, const struct eng_sample_req *r,
                    const struct eng_grammar_vocab *gv, struct eng_grammar_state *st, int32_t *ids, float *q)
{
	struct eng_sample_req u = *r;
	bool greedy = !(r->p.temperature > 0.0f);
	int n, k = greedy ? 1 : r->p.top_k, M = 4 * (k + 1) > 256 ? 4 * (k + 1) : 256, m = 0;

	memcpy(tmp, row, sizeof(*tmp) * (size_t)V);
	u.grammar = NULL;
	if (greedy)
		u.p = (struct eng_sample_params){ .temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .repeat_penalty = 1.0f };
	n = eng_sample_survivors(s, tmp, &u, ids, q);
	for (int i = 0; i < n; i++)
		if (eng_grammar_token_ok(gv, st, ids[i]))
			return 0;
	if (k <= 0)
		return 2;
	memcpy(tmp, row, sizeof(*tmp) * (size_t)V);
	u.p = (struct eng_sample_params){ .temperature = 1.0f, .top_k = M < V ? M : V, .top_p = 1.0f, .repeat_penalty = 1.0f };
	n = eng_sample_survivors(s, tmp, &u, ids, q);
	for (int i = 0; i < n; i++)
		m += eng_grammar_token_ok(gv, st, ids[i]);
	return m >= (greedy ? 1 : k + 1) ? 1 : 2;
}

struct run {
	const struct eng_backend_ops *ops;
	struct eng_backend *be;
	struct eng_tokenizer *tok;
	struct eng_grammar_vocab *gv;
	struct eng_grammar *g;
	struct eng_grammar_state *st;
	struct eng_sampler *smp;
	int32_t *ids, *pages;
	int n_ids, V;
};

static int decode(struct run *R, const struct opts *o, const struct eng_logit_bias *bias, int n_bias)
{
	float *row = malloc(sizeof(float) * (size_t)R->V), *tmp = malloc(sizeof(float) * (size_t)R->V);
	float *q = malloc(sizeof(float) * (size_t)R->V);
	int32_t *sids = malloc(sizeof(int32_t) * (size_t)R->V);
	bool *mask = malloc((size_t)R->V);
	double *m[N_MEASURES];
	int n_prompt = R->n_ids, steps = 0, n_fb[3] = { 0 }, rc = 0;
	char piece[1024];
	struct eng_batch_seq bs = { .tokens = R->ids, .n_tokens = n_prompt, .pos0 = 0, .pages = R->pages };
	struct eng_batch b = { .n_seqs = 1, .seqs = &bs };

	for (int k = 0; k < N_MEASURES; k++)
		m[k] = malloc(sizeof(double) * (size_t)o->n);
	if (!row || !tmp || !q || !sids || !mask || !m[0] || !m[1] || !m[2] || !m[3]) {
		rc = -ENOMEM;
		goto out;
	}
	for (; steps < o->n; steps++) {
		struct eng_sample_req r = {
			.p = { .temperature = o->temp, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.0f },
			.seed = o->seed, .draw = (uint64_t)steps, .bias = bias, .n_bias = n_bias,
		};
		int32_t t_free, t_gram;
		double t0;

		if ((rc = R->ops->forward(R->be, &b, row, NULL, NULL)) < 0)
			goto out;
		m[M_FREE][steps] = time_sample(R->smp, row, tmp, R->V, &r, o->reps, &t_free);
		n_fb[fallback(R->smp, row, tmp, R->V, &r, R->gv, R->st, sids, q)]++;
		r.grammar = R->st;
		r.gvocab = R->gv;
		m[M_GRAMMAR][steps] = time_sample(R->smp, row, tmp, R->V, &r, o->reps, &t_gram);
		t0 = now_us();
		if (eng_grammar_mask(R->gv, R->st, mask) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		m[M_MASK][steps] = now_us() - t0;
		if (eng_token_is_eog(R->tok, t_gram)) {
			m[M_ACCEPT][steps++] = 0.0;
			break;
		}
		t0 = now_us();
		if (eng_grammar_accept_token(R->gv, R->st, t_gram) < 0) {
			fprintf(stderr, "tool_grammar_cost: the sampler returned token %d, which the grammar refuses\n", t_gram);
			rc = -EINVAL;
			goto out;
		}
		m[M_ACCEPT][steps] = now_us() - t0;
		R->ids[R->n_ids++] = t_gram;
		int k = eng_token_piece(R->tok, t_gram, false, piece, sizeof(piece));
		fwrite(piece, 1, k > 0 ? (size_t)k : 0, stderr);
		bs = (struct eng_batch_seq){ .tokens = R->ids + R->n_ids - 1, .n_tokens = 1, .pos0 = R->n_ids - 1,
		                             .pages = R->pages };
	}
	fprintf(stderr, "\n");
	printf("tokens %d (prompt %d), temperature %g, %d tokens biased -inf, fastest of %d runs per token\n", steps,
	       n_prompt, o->temp, n_bias, o->reps);
	for (int k = 0; k < N_MEASURES; k++)
		report(measure_name[k], m[k], steps);
	printf("%-22s %d of %d tokens (no survivor of the chain allowed; greedy: the arg max refused)\n",
	       "refused_choice", n_fb[1] + n_fb[2], steps);
	printf("%-22s %d of %d tokens (the sampler builds the whole-vocabulary mask)\n", "mask_built", n_fb[2], steps);
out:
	for (int k = 0; k < N_MEASURES; k++)
		free(m[k]);
	free(row);
	free(tmp);
	free(q);
	free(sids);
	free(mask);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct run R = { 0 };
	struct gguf_ctx *gg = NULL;
	struct eng_config cfg;
	struct eng_weights w = { 0 };
	struct eng_backend_params bp = { 0 };
	struct eng_logit_bias *bias = NULL;
	int32_t *pids = NULL;
	size_t n_pids = 0, glen = 0;
	char *gtext = NULL;
	int rc, n_bias;

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	if ((rc = gguf_open(o.model, &gg)) < 0 || (rc = eng_model_bind(gg, &cfg, &w)) < 0 ||
	    (rc = eng_tokenizer_init(gg, &R.tok)) < 0 || (rc = eng_grammar_vocab_init(R.tok, &R.gv)) < 0)
		goto out;
	if (!(gtext = slurp(o.grammar, &glen)) || (rc = eng_grammar_parse(o.grammar, gtext, glen, &R.g)) < 0 ||
	    (rc = eng_grammar_state_init(R.g, &R.st)) < 0) {
		rc = rc < 0 ? rc : -errno;
		goto out;
	}
	if ((rc = eng_tokenize(R.tok, o.prompt, strlen(o.prompt), ENG_TOK_PARSE_SPECIAL, &pids, &n_pids)) < 0)
		goto out;
	if ((n_bias = bias_of(R.tok, o.bias_sub, &bias)) < 0) {
		rc = n_bias;
		goto out;
	}
	R.V = cfg.n_vocab;
	R.ids = malloc(sizeof(int32_t) * (n_pids + (size_t)o.n + 1));
	bp = (struct eng_backend_params){ .n_threads = o.threads, .max_seqs = 1, .max_batch_tokens = (int)n_pids,
	                                  .max_ctx = (int)n_pids + o.n + 1 };
	bp.n_pages = (bp.max_ctx + ENG_KV_PAGE - 1) / ENG_KV_PAGE;
	R.pages = malloc(sizeof(int32_t) * (size_t)bp.n_pages);
	R.smp = eng_sampler_init(R.V);
	if (!R.ids || !R.pages || !R.smp || n_pids == 0) {
		rc = n_pids == 0 ? -EINVAL : -ENOMEM;
		goto out;
	}
	memcpy(R.ids, pids, sizeof(int32_t) * n_pids);
	R.n_ids = (int)n_pids;
	for (int i = 0; i < bp.n_pages; i++)
		R.pages[i] = i;
	R.ops = eng_backend_find("cpu");
	if ((rc = R.ops->init(&cfg, &w, &bp, &R.be)) < 0)
		goto out;
	rc = decode(&R, &o, bias, n_bias);
out:
	if (rc < 0)
		fprintf(stderr, "tool_grammar_cost: failed: %s\n", strerror(-rc));
	if (R.be)
		R.ops->free(R.be);
	eng_sampler_free(R.smp);
	eng_grammar_state_free(R.st);
	eng_grammar_unref(R.g);
	eng_grammar_vocab_free(R.gv);
	eng_tokenizer_free(R.tok);
	eng_weights_free(&w);
	gguf_free(gg);
	free(gtext);
	free(pids);
	free(bias);
	free(R.ids);
	free(R.pages);
	return rc < 0 ? 1 : 0;
}
