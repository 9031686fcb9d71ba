/*
 * cli_sessions.c — `promptfs bench MODEL --sessions N[,N…]`: the engine
 * with N sessions at once and real prompts, without the mount.  For each N,
 * N conversations are submitted before the first step (a shared preamble as
 * the system prompt — chat models format it with their template — then a
 * question of their own), and eng_step() runs until every reply has n_gen
 * tokens (generation goes on past end-of-turn so every reply has the same
 * length).  Prints one row per N: aggregate generated tokens/s over the
 * wall time, per-session decode tokens/s (after its first token; median
 * and worst), time to the first token (median and worst), prefill tokens
 * run and prefill tokens taken from shared prefix pages.
 *
 *   promptfs bench MODEL.gguf --sessions 1,8,64 [-n 128] [--backend B]
 *                  [-t threads] [-b batch_tokens] [--batch-seqs S]
 *                  [--no-prefix-share] [--no-preamble]
 * Exit status: 0 ok, 1 runtime failure, 2 usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_internal.h"
#include "fs.h"

#define MAX_LIST 16

struct sess_opts {
	struct eng_model_params mp;
	const char *path;
	int n[MAX_LIST], n_n;
	int n_gen;
	bool no_preamble;
};

/* About 150 tokens: with the template head, two or more full KV pages
 * every session has in common (the shared prefix a real deployment has). */
static const char preamble[] =
	"You are a helpful storyteller for young children. Answer in plain words that a child can "
	"follow, keep every sentence short, and stay kind. When you tell a story, give it a "
	"beginning, a middle and an end, name the characters, and say where they are. When you "
	"explain something, start with what the child can see or touch, then say why it happens, "
	"and give one small example from daily life. Never use words that could frighten a child, "
	"never talk about violence, and never ask for personal information. If a question is not "
	"clear, say what you understood and answer that. End each answer with one line that sums "
	"it up, starting with the words: In short.";

static const char *const questions[] = {
	"Tell me a story about a cat who finds a key.",
	"Why is the sky blue?",
	"Write a short poem about rain on the roof.",
	"What do bees do all day?",
	"Tell me about a boy who builds a boat.",
	"How does a seed become a tree?",
	"Write a story about a lost red ball.",
	"What is the moon made of?",
	"Tell me a story about a dragon who is afraid of the dark.",
	"Why do we need to sleep?",
	"Write a story about two friends and a kite.",
	"How do fish breathe under water?",
	"Tell me about a girl who talks to birds.",
	"What makes a rainbow?",
	"Write a story about a snowman in spring.",
	"Where does the wind come from?",
};
#define N_QUESTIONS ((int)(sizeof(questions) / sizeof(questions[0])))

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(const char *msg, const char *arg)
{
	fprintf(stderr, "promptfs bench: %s%s\nusage: promptfs bench MODEL.gguf --sessions N[,N...] [-n 128] "
	        "[--backend B] [-t threads] [-b batch_tokens] [--batch-seqs S] [--no-prefix-share] "
	        "[--no-preamble]\n", msg, arg);
	return 2;
}

static bool parse_num(const char *s, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

static bool parse_counts(const char *s, struct sess_opts *o)
{
	char *dup = strdup(s), *save = NULL, *tok;
	bool ok = dup != NULL;

	o->n_n = 0;
	for (tok = dup ? strtok_r(dup, ",", &save) : NULL; tok && ok; tok = strtok_r(NULL, ",", &save))
		ok = o->n_n < MAX_LIST && parse_num(tok, 1, 4096, &o->n[o->n_n++]);
	free(dup);
	return ok && o->n_n > 0;
}

static int parse(int argc, char **argv, struct sess_opts *o)
{
	eng_model_params_default(&o->mp);
	o->n_gen = 128;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = true;

		if (!strcmp(a, "--no-prefix-share")) {
			o->mp.no_prefix_share = true;
			continue;
		} else if (!strcmp(a, "--no-preamble")) {
			o->no_preamble = true;
			continue;
		} else if (!strcmp(a, "--sessions") && v)
			ok = parse_counts(v, o);
		else if (!strcmp(a, "--backend") && v)
			o->mp.backend = v;
		else if (!strcmp(a, "-t") && v)
			ok = parse_num(v, 0, 4096, &o->mp.n_threads);
		else if (!strcmp(a, "-n") && v)
			ok = parse_num(v, 1, 1 << 20, &o->n_gen);
		else if (!strcmp(a, "-b") && v)
			ok = parse_num(v, 1, 1 << 16, &o->mp.max_batch_tokens);
		else if (!strcmp(a, "--batch-seqs") && v)
			ok = parse_num(v, 1, ENG_MAX_BATCH_SEQS, &o->mp.max_batch_seqs);
		else if (a[0] == '-' && a[1])
			return usage("unknown option or missing value: ", a);
		else if (!o->path) {
			o->path = a;
			continue;
		} else
			return usage("unexpected argument: ", a);
		if (!ok)
			return usage("bad value: ", v);
		i++;
	}
	if (!o->path || !o->n_n)
		return usage("a model and --sessions are needed", "");
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v; its median. */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct sess_run {
	struct eng_session **s;   /* [n] */
	double *first, *end;      /* [n] seconds after the start: first token, last token */
	int *gen;                 /* [n] tokens generated */
};

/* Creates and submits n sessions; steps until every reply is complete. */
static int run_n(struct eng_model *m, const struct sess_opts *o, int n, struct sess_run *r, double *wall)
{
	struct eng_settings st;
	char text[sizeof(preamble) + 256];
	double t0;
	int rc = 0, left = n;

	eng_settings_default(m, &st);
	st.temperature = 0;
	st.max_tokens = o->n_gen;
	if (!o->no_preamble && st.mode == ENG_MODE_CHAT && eng_settings_set(&st, "system", preamble, strlen(preamble)) < 0)
		rc = -ENOMEM;
	for (int i = 0; i < n && rc == 0; i++) {
		int len;

		if (st.mode == ENG_MODE_CHAT || o->no_preamble)
			len = snprintf(text, sizeof(text), "%s", questions[i % N_QUESTIONS]);
		else /* raw: the preamble is the head of the text */
			len = snprintf(text, sizeof(text), "%s\n%s", preamble, questions[i % N_QUESTIONS]);
		if ((rc = eng_session_init(m, &st, &r->s[i])) == 0 &&
		    (rc = eng_session_submit(r->s[i], text, (size_t)len)) == 0)
			eng_session_set_ignore_eog(r->s[i]);
		r->first[i] = r->end[i] = -1;
	}
	eng_settings_free(&st);
	t0 = now_s();
	while (rc == 0 && left > 0) {
		if ((rc = eng_step(m)) < 0)
			break;
		rc = 0;
		for (int i = 0; i < n; i++) {
			struct eng_session_info in;

			if (r->end[i] >= 0)
				continue;
			eng_session_info(r->s[i], &in);
			if (in.state == ENG_STATE_ERROR) {
				rc = in.error ? in.error : -EIO;
				break;
			}
			if (r->first[i] < 0 && in.last_gen_tokens > 0)
				r->first[i] = now_s() - t0;
			if (in.state == ENG_STATE_DONE) {
				r->end[i] = now_s() - t0;
				r->gen[i] = in.last_gen_tokens;
				left--;
			}
		}
	}
	*wall = now_s() - t0;
	return rc;
}

/* One row of the table for n sessions. */
static int row(struct eng_model *m, const struct sess_opts *o, int n)
{
	struct sess_run r = { calloc((size_t)n, sizeof(*r.s)), calloc((size_t)n, sizeof(double)),
	                      calloc((size_t)n, sizeof(double)), calloc((size_t)n, sizeof(int)) };
	double *rate = calloc((size_t)n, sizeof(double)), *ttfb = calloc((size_t)n, sizeof(double));
	struct eng_stats a, b;
	double wall = 0, total = 0;
	int rc = -ENOMEM;

	if (!r.s || !r.first || !r.end || !r.gen || !rate || !ttfb)
		goto out;
	eng_model_stats(m, &a);
	rc = run_n(m, o, n, &r, &wall);
	eng_model_stats(m, &b);
	if (rc < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		double dt = r.end[i] - r.first[i];

		total += r.gen[i];
		rate[i] = r.gen[i] > 1 && dt > 0 ? (r.gen[i] - 1) / dt : 0;
		ttfb[i] = 1e3 * r.first[i];
	}
	{
		double rmed = median(rate, n), tmed = median(ttfb, n); /* sorted: [0] slowest, [n-1] latest */

		printf("%8d %10d %12.1f %12.1f %12.1f %12.1f %12.1f %9.2f %10llu %10llu\n", n, (int)total,
		       total / wall, rmed, rate[0], tmed, ttfb[n - 1], wall,
		       (unsigned long long)(b.prefill_tokens - a.prefill_tokens),
		       (unsigned long long)(b.prefill_saved - a.prefill_saved));
	}
	fflush(stdout);
out:
	for (int i = 0; r.s && i < n; i++)
		eng_session_free(r.s[i]);
	free(r.s);
	free(r.first);
	free(r.end);
	free(r.gen);
	free(rate);
	free(ttfb);
	return rc;
}

/* One short untimed run (first-touch of weights and scratch). */
static int warm_up(struct eng_model *m, const struct sess_opts *o)
{
	struct sess_opts w = *o;
	struct eng_session *s = NULL;
	struct sess_run r = { &s, (double[1]){ 0 }, (double[1]){ 0 }, (int[1]){ 0 } };
	double wall;
	int rc;

	w.n_gen = 4;
	rc = run_n(m, &w, 1, &r, &wall);
	eng_session_free(s);
	return rc;
}

int fs_cli_bench_sessions(int argc, char **argv)
{
	struct sess_opts o = { 0 };
	struct eng_model *m = NULL;
	const struct eng_backend_ops *ops;
	struct eng_stats st;
	size_t need;
	int rc, max_n = 1;

	if ((rc = parse(argc, argv, &o)) != 0)
		return rc;
	for (int i = 0; i < o.n_n; i++)
		max_n = o.n[i] > max_n ? o.n[i] : max_n;
	o.mp.max_sessions = max_n;
	o.mp.n_ctx = 640 + o.n_gen; /* the prompts: at most ~400 tokens (a byte-level vocabulary of 512) */
	if ((rc = eng_model_load(o.path, &o.mp, &m)) < 0) {
		fprintf(stderr, "promptfs bench: cannot load model '%s': %s\n", o.path, strerror(-rc));
		return 1;
	}
	eng_model_stats(m, &st);
	need = (size_t)max_n * (size_t)((o.mp.n_ctx + ENG_KV_PAGE - 1) / ENG_KV_PAGE) * eng_model_page_bytes(m);
	if (st.kv_bytes_total < need) { /* room for every session: the bench measures compute, not eviction */
		eng_model_free(m);
		o.mp.kv_bytes = need;
		if ((rc = eng_model_load(o.path, &o.mp, &m)) < 0) {
			fprintf(stderr, "promptfs bench: cannot load model '%s' with a %zu-byte KV pool: %s\n",
			        o.path, need, strerror(-rc));
			return 1;
		}
		eng_model_stats(m, &st);
	}
	eng_model_backend(m, &ops);
	printf("model:    %s\n", o.path);
	printf("backend:  %s: %s\n", ops->name, ops->device_name(eng_model_backend(m, NULL)));
	printf("sessions at once, %d generated tokens each (greedy, past end of turn); prefix sharing %s; "
	       "at most %d sequences and %d tokens per pass; KV pool %d pages\n", o.n_gen,
	       st.prefix_share ? "on" : "off", st.max_batch_seqs,
	       o.mp.max_batch_tokens ? o.mp.max_batch_tokens : 512, st.kv_pages_total);
	printf("per-session tok/s: decode after its first token; ttfb: submit to first token\n\n");
	printf("%8s %10s %12s %12s %12s %12s %12s %9s %10s %10s\n", "sessions", "generated", "agg_tok/s",
	       "sess_median", "sess_worst", "ttfb_ms_med", "ttfb_ms_max", "wall_s", "prefill", "shared");
	rc = warm_up(m, &o);
	for (int i = 0; i < o.n_n && rc == 0; i++)
		rc = row(m, &o, o.n[i]);
	if (rc < 0)
		fprintf(stderr, "promptfs bench: run failed: %s\n", strerror(-rc));
	eng_model_free(m);
	return rc < 0 ? 1 : 0;
}
