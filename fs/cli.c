/*
 * cli.c — `promptfs info`, `promptfs run` and `promptfs bench`: the engine
 * from the command line, without a mount.  Each drives eng_step() itself
 * (no engine thread), so what they run and time is the engine's real path:
 * sessions, batching, the backend's forward pass and its sampler.
 *
 *   promptfs info MODEL.gguf [--all]
 *   promptfs info MODEL.gguf --tokens-containing STR
 *   promptfs run MODEL.gguf PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]
 *                [--min-p P] [--repeat-penalty R] [--seed S] [--system S]
 *                [--stop S] [--raw|--chat] [--backend B] [-t threads] [-c ctx] [-v]
 *   promptfs bench MODEL.gguf [--backend B] [-t threads] [-p 512,2048]
 *                [-n 128] [--ctx 0,1024,4096] [--reps R] [-b batch]
 *   promptfs bench MODEL.gguf --sessions 1,8,64 …  (many sessions: cli_sessions.c)
 * Exit status: 0 ok, 1 runtime failure (bad model file …), 2 usage error.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_internal.h"
#include "fs.h"
#include "gguf/log.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage_err(const char *cmd, const char *fmt, const char *arg)
{
	fprintf(stderr, "promptfs %s: ", cmd);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(see `promptfs help`)\n");
	return 2;
}

static bool parse_int_arg(const char *s, long lo, long hi, int *out)
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

// ---- info

/* The ids of the tokens whose piece (the bytes the token writes into a
 * reply, eng_token_piece without special rendering: control tokens write
 * none) contains sub, one per line, ascending.  For logit_bias lists
 * (`--set logit_bias=ID:-inf,…`) without reading the vocabulary elsewhere.
 * Needs only the tokenizer, so a vocabulary-only GGUF works too. */
static int info_tokens_containing(const struct gguf_ctx *g, const char *path, const char *sub)
{
	struct eng_tokenizer *tok = NULL;
	size_t mp, n_sub = strlen(sub);
	char *piece = NULL;
	int status = 1;

	if (eng_tokenizer_init(g, &tok) < 0) {
		fprintf(stderr, "promptfs info: '%s': bad tokenizer metadata\n", path);
		return 1;
	}
	mp = eng_tokenizer_max_piece(tok) + 1;
	if (!(piece = malloc(mp)))
		goto out;
	for (int32_t id = 0; id < eng_tokenizer_n_vocab(tok); id++) {
		int k = eng_token_piece(tok, id, false, piece, mp);

		if (k > 0 && memmem(piece, (size_t)k, sub, n_sub))
			printf("%d\n", id);
	}
	status = fflush(stdout) == 0 ? 0 : 1;
out:
	free(piece);
	eng_tokenizer_free(tok);
	return status;
}

int fs_cli_info(int argc, char **argv)
{
	struct gguf_ctx *g = NULL;
	struct eng_config cfg;
	struct eng_weights w = { 0 };
	struct eng_tokenizer *tok = NULL;
	struct eng_template tmpl = { 0 };
	const char *path = NULL, *jinja, *containing = NULL;
	bool all = false;
	char *d = NULL;
	int rc, status = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--all"))
			all = true;
		else if (!strcmp(argv[i], "--tokens-containing") && i + 1 < argc)
			containing = argv[++i];
		else if (argv[i][0] == '-' && argv[i][1])
			return usage_err("info", "unknown option '%s'", argv[i]);
		else if (!path)
			path = argv[i];
		else
			return usage_err("info", "unexpected argument '%s'", argv[i]);
	}
	if (!path)
		return usage_err("info", "%smissing MODEL.gguf", "");
	if (containing && (!containing[0] || all))
		return usage_err("info", "--tokens-containing needs a non-empty string and no --all%s", "");
	rc = gguf_open(path, &g);
	if (rc < 0) {
		fprintf(stderr, "promptfs info: cannot read '%s': %s\n", path,
		        rc == -EINVAL ? "not a valid GGUF file" : strerror(-rc));
		return 1;
	}
	if (containing) {
		status = info_tokens_containing(g, path, containing);
		goto out_gguf;
	}
	if (all)
		gguf_dump(g, stdout, true);
	if ((rc = eng_model_bind(g, &cfg, &w)) < 0) {
		fprintf(stderr, "promptfs info: '%s': unsupported or malformed model\n", path);
		goto out_gguf;
	}
	if ((rc = eng_tokenizer_init(g, &tok)) < 0) {
		fprintf(stderr, "promptfs info: '%s': bad tokenizer metadata\n", path);
		goto out_weights;
	}
	jinja = eng_chat_template_text(g, &cfg, tok);
	rc = eng_template_init(jinja, eng_token_bos(tok) >= 0 ? eng_token_text(tok, eng_token_bos(tok)) : "",
	                       eng_token_eos(tok) >= 0 ? eng_token_text(tok, eng_token_eos(tok)) : "", &tmpl);
	if (rc == 0)
		rc = eng_describe(g, &cfg, &w, tok, &tmpl, NULL, NULL, &d);
	if (rc == 0) {
		if (all)
			printf("\n");
		fputs(d, stdout);
		status = 0;
	}
	free(d);
	eng_template_free(&tmpl);
	eng_tokenizer_free(tok);
out_weights:
	eng_weights_free(&w);
out_gguf:
	gguf_free(g);
	return status;
}

// ---- run

struct run_opts {
	struct eng_model_params mp;
	const char *path, *prompt;
	const char *kv[32][2]; /* settings key/value pairs, applied in order */
	int n_kv;
	const char *grammar_file; /* --grammar FILE: bound as grammar "run" */
	const char *schema_file;  /* --json-schema FILE: the json_schema setting */
	bool verbose;
};

static int run_parse(int argc, char **argv, struct run_opts *o)
{
	static const struct { const char *flag, *key; } map[] = {
		{ "-n", "max_tokens" }, { "--temp", "temperature" }, { "--top-k", "top_k" },
		{ "--top-p", "top_p" }, { "--min-p", "min_p" }, { "--repeat-penalty", "repeat_penalty" },
		{ "--repeat-last-n", "repeat_last_n" }, { "--seed", "seed" }, { "--system", "system" },
		{ "--stop", "stop" },
	};

	eng_model_params_default(&o->mp);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool found = false;

		for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++) {
			if (strcmp(a, map[k].flag))
				continue;
			if (i + 1 >= argc)
				return usage_err("run", "option '%s' needs a value", a);
			if (o->n_kv == 32)
				return usage_err("run", "too many options at '%s'", a);
			o->kv[o->n_kv][0] = map[k].key;
			o->kv[o->n_kv++][1] = argv[++i];
			found = true;
		}
		if (found)
			continue;
		if (!strcmp(a, "--raw") || !strcmp(a, "--chat")) {
			o->kv[o->n_kv][0] = "mode";
			o->kv[o->n_kv++][1] = a + 2;
		} else if (!strcmp(a, "--set") && i + 1 < argc) {
			char *eq = strchr(argv[++i], '=');

			if (!eq || eq == argv[i] || o->n_kv == 32)
				return usage_err("run", "--set needs KEY=VALUE, got '%s'", argv[i]);
			*eq = 0;
			o->kv[o->n_kv][0] = argv[i];
			o->kv[o->n_kv++][1] = eq + 1;
		} else if (!strcmp(a, "--grammar") && i + 1 < argc) {
			o->grammar_file = argv[++i];
		} else if (!strcmp(a, "--json-schema") && i + 1 < argc) {
			o->schema_file = argv[++i];
		} else if (!strcmp(a, "-v")) {
			o->verbose = true;
		} else if (!strcmp(a, "--backend") && i + 1 < argc) {
			o->mp.backend = argv[++i];
		} else if (!strcmp(a, "-t") && i + 1 < argc) {
			if (!parse_int_arg(argv[++i], 0, 4096, &o->mp.n_threads))
				return usage_err("run", "bad thread count '%s'", argv[i]);
		} else if (!strcmp(a, "-c") && i + 1 < argc) {
			if (!parse_int_arg(argv[++i], 0, 1 << 24, &o->mp.n_ctx))
				return usage_err("run", "bad context length '%s'", argv[i]);
		} else if (a[0] == '-' && a[1]) {
			return usage_err("run", "unknown option or missing value '%s'", a);
		} else if (!o->path) {
			o->path = a;
		} else if (!o->prompt) {
			o->prompt = a;
		} else {
			return usage_err("run", "unexpected argument '%s'", a);
		}
	}
	if (!o->path || !o->prompt)
		return usage_err("run", "%susage: promptfs run MODEL.gguf PROMPT [options]", "");
	o->mp.max_sessions = 1;
	return 0;
}

static char *read_stdin(size_t *n)
{
	size_t cap = 4096, len = 0;
	char *b = malloc(cap);

	while (b) {
		size_t r = fread(b + len, 1, cap - len, stdin);

		len += r;
		if (r == 0)
			break;
		if (len == cap) {
			char *t = realloc(b, cap *= 2);

			if (!t)
				free(b);
			b = t;
		}
	}
	*n = len;
	return b;
}

/* Reads a grammar or schema file (at most ENG_GRAMMAR_MAX_TEXT + 1 bytes:
 * a longer one is refused by the parser). */
static char *read_small(const char *what, const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *text;

	*len = 0;
	if (!f) {
		fprintf(stderr, "promptfs run: cannot open %s '%s': %s\n", what, path, strerror(errno));
		return NULL;
	}
	text = malloc(ENG_GRAMMAR_MAX_TEXT + 1);
	if (text)
		*len = fread(text, 1, ENG_GRAMMAR_MAX_TEXT + 1, f);
	fclose(f);
	return text;
}

/* Loads a GBNF file into the model's grammars as "run" and binds it, or
 * (schema) a JSON Schema file as the json_schema setting: 0, 1 (cannot
 * read), 2 (refused: the log says where). */
static int run_grammar(struct eng_model *m, struct eng_settings *st, const char *path, bool schema)
{
	size_t len;
	char *text = read_small(schema ? "JSON schema" : "grammar", path, &len);
	int rc;

	if (!text)
		return 1;
	rc = schema ? eng_settings_set(st, "json_schema", text, len) : eng_grammars_put(m, "run", text, len);
	if (rc < 0) {
		fprintf(stderr, "promptfs run: %s '%s' refused (see the log line above)\n",
		        schema ? "JSON schema" : "grammar", path);
		rc = 2;
	} else {
		rc = !schema && eng_settings_set(st, "grammar", "run", 3) < 0 ? 1 : 0;
	}
	free(text);
	return rc;
}

/* Steps until the turn ends, writing the reply as it grows. */
static int run_generate(struct eng_model *m, struct eng_session *s)
{
	uint64_t off = 0;
	char buf[4096];

	for (;;) {
		bool final = false;
		size_t n;
		int rc = eng_step(m);

		if (rc < 0)
			return rc;
		while ((n = eng_session_read_reply(s, off, buf, sizeof(buf), &final)) > 0) {
			fwrite(buf, 1, n, stdout);
			off += n;
		}
		fflush(stdout);
		if (final)
			return 0;
	}
}

int fs_cli_run(int argc, char **argv)
{
	struct run_opts o = { 0 };
	struct eng_model *m = NULL;
	struct eng_session *s = NULL;
	struct eng_settings st;
	struct eng_session_info info;
	char *text = NULL;
	size_t len;
	int rc, status = 1;
	double t0;

	if ((rc = run_parse(argc, argv, &o)) != 0)
		return rc;
	if (o.verbose)
		pf_log_set_level(PF_LOG_LEVEL_INFO);
	t0 = now_s();
	rc = eng_model_load(o.path, &o.mp, &m);
	if (rc < 0) {
		fprintf(stderr, "promptfs run: cannot load model '%s': %s\n", o.path,
		        rc == -EINVAL ? "invalid or unsupported model file" : strerror(-rc));
		return 1;
	}
	eng_settings_default(m, &st);
	for (int i = 0; i < o.n_kv; i++) {
		if (eng_settings_set(&st, o.kv[i][0], o.kv[i][1], strlen(o.kv[i][1])) < 0) {
			fprintf(stderr, "promptfs run: bad value '%s' for %s\n", o.kv[i][1], o.kv[i][0]);
			status = 2;
			goto out_settings;
		}
	}
	if (o.grammar_file && (rc = run_grammar(m, &st, o.grammar_file, false)) != 0) {
		status = rc;
		goto out_settings;
	}
	if (o.schema_file && (rc = run_grammar(m, &st, o.schema_file, true)) != 0) {
		status = rc;
		goto out_settings;
	}
	if (st.mode == ENG_MODE_CHAT && eng_model_template(m)->family == ENG_TMPL_NONE)
		fprintf(stderr, "promptfs run: the model has no known chat template: raw mode\n");
	if ((rc = eng_session_init(m, &st, &s)) < 0)
		goto out_settings;
	if (!strcmp(o.prompt, "-")) {
		text = read_stdin(&len);
		if (!text)
			goto out_session;
		if (len && text[len - 1] == '\n')
			len--; /* the newline echo adds is not part of the prompt */
	} else {
		text = strdup(o.prompt);
		len = strlen(text);
	}
	rc = eng_session_submit(s, text, len);
	if (rc < 0) {
		fprintf(stderr, "promptfs run: %s\n", rc == -EFBIG ? "the prompt does not fit the context (use -c)"
		                                    : rc == -EINVAL ? "empty prompt" : strerror(-rc));
		goto out_session;
	}
	if (o.verbose)
		fprintf(stderr, "promptfs run: model loaded in %.2f s\n", now_s() - t0);
	rc = run_generate(m, s);
	eng_session_info(s, &info);
	if (rc < 0 || info.state == ENG_STATE_ERROR) {
		fprintf(stderr, "\npromptfs run: %s\n", info.status);
		goto out_session;
	}
	if (o.verbose)
		fprintf(stderr, "\npromptfs run: %s; prompt %d tokens at %.1f tok/s, reply %d tokens at %.1f tok/s\n",
		        info.status, info.last_prefill_tokens, info.last_prefill_tps, info.last_gen_tokens,
		        info.last_decode_tps);
	else if (info.reply_bytes)
		fputc('\n', stdout);
	status = 0;
out_session:
	free(text);
	eng_session_free(s);
out_settings:
	eng_settings_free(&st);
	eng_model_free(m);
	return status;
}

// ---- bench

#define BENCH_MAX_LIST 16

struct bench_opts {
	struct eng_model_params mp;
	const char *path;
	int pp[BENCH_MAX_LIST], n_pp;
	int depth[BENCH_MAX_LIST], n_depth;
	int n_gen, reps;
};

static bool parse_list(const char *s, int *v, int *n)
{
	char *dup = strdup(s), *save = NULL, *tok;
	bool ok = dup != NULL;

	*n = 0;
	for (tok = dup ? strtok_r(dup, ",", &save) : NULL; tok && ok; tok = strtok_r(NULL, ",", &save))
		ok = *n < BENCH_MAX_LIST && parse_int_arg(tok, 0, 1 << 22, &v[(*n)++]);
	free(dup);
	return ok && *n > 0;
}

static int bench_parse(int argc, char **argv, struct bench_opts *o)
{
	eng_model_params_default(&o->mp);
	o->pp[0] = 512, o->pp[1] = 2048, o->n_pp = 2;
	o->depth[0] = 0, o->depth[1] = 1024, o->depth[2] = 4096, o->n_depth = 3;
	o->n_gen = 128;
	o->reps = 3;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = true;

		if (!strcmp(a, "--backend") && v)
			o->mp.backend = v;
		else if (!strcmp(a, "-t") && v)
			ok = parse_int_arg(v, 0, 4096, &o->mp.n_threads);
		else if (!strcmp(a, "-p") && v)
			ok = parse_list(v, o->pp, &o->n_pp);
		else if (!strcmp(a, "--ctx") && v)
			ok = parse_list(v, o->depth, &o->n_depth);
		else if (!strcmp(a, "-n") && v)
			ok = parse_int_arg(v, 1, 1 << 20, &o->n_gen);
		else if (!strcmp(a, "--reps") && v)
			ok = parse_int_arg(v, 1, 1000, &o->reps);
		else if (!strcmp(a, "-b") && v)
			ok = parse_int_arg(v, 1, 1 << 16, &o->mp.max_batch_tokens);
		else if (a[0] == '-' && a[1])
			return usage_err("bench", "unknown option or missing value '%s'", a);
		else if (!o->path) {
			o->path = a;
			continue;
		} else
			return usage_err("bench", "unexpected argument '%s'", a);
		if (!ok)
			return usage_err("bench", "bad value '%s'", v);
		i++;
	}
	if (!o->path)
		return usage_err("bench", "%susage: promptfs bench MODEL.gguf [options]", "");
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Steps until the session's turn has sampled `want` tokens or ended. */
static int step_until(struct eng_model *m, struct eng_session *s, int want)
{
	struct eng_session_info in;

	for (;;) {
		int rc = eng_step(m);

		if (rc < 0)
			return rc;
		eng_session_info(s, &in);
		if (in.state == ENG_STATE_ERROR)
			return in.error ? in.error : -EIO;
		if (in.last_gen_tokens >= want || in.state == ENG_STATE_DONE)
			return 0;
	}
}

/* One measurement: prefill `depth` tokens (timed: *prefill_s), then n
 * decode steps (timed: *decode_s).  n = 0: prefill only. */
static int bench_once(struct eng_model *m, struct eng_session *s, const int32_t *toks, int depth, int n,
                      double *prefill_s, double *decode_s)
{
	double t0, t1;
	int rc;

	eng_session_reset(s);
	rc = eng_session_submit_tokens(s, toks, depth > 0 ? depth : 1, n + 1, true);
	if (rc < 0)
		return rc;
	t0 = now_s();
	rc = step_until(m, s, 1);
	t1 = now_s();
	*prefill_s = t1 - t0;
	if (rc < 0 || n == 0)
		return rc;
	rc = step_until(m, s, n + 1);
	*decode_s = now_s() - t1;
	return rc;
}

/* Prompt tokens: a text tokenised and repeated to length n. */
static int32_t *bench_tokens(struct eng_model *m, int n)
{
	static const char text[] =
		"The quick brown fox jumps over the lazy dog. In the beginning the file system held only "
		"text, and every program read and wrote it line by line; the model answers in kind. ";
	int32_t *ids = NULL, *out = malloc(sizeof(*out) * (size_t)(n > 0 ? n : 1));
	size_t k = 0;

	if (!out || eng_tokenize(eng_model_tokenizer(m), text, sizeof(text) - 1, 0, &ids, &k) < 0 || !k) {
		free(out);
		free(ids);
		return NULL;
	}
	for (int i = 0; i < n; i++)
		out[i] = ids[(size_t)i % k];
	free(ids);
	return out;
}

static void bench_header(struct eng_model *m, const struct bench_opts *o, double bw)
{
	const struct eng_config *c = eng_model_config(m);
	const struct eng_weights *w = eng_model_weights(m);
	const struct eng_backend_ops *ops;
	struct eng_backend *be = eng_model_backend(m, &ops);

	printf("model:    %s, %s, %.1f M parameters (%.1f M active), %.1f MiB of weights (%.1f MiB read per token)\n",
	       o->path, eng_arch_name(c->arch), (double)eng_weights_n_params(c, w) / 1e6,
	       (double)eng_weights_n_active_params(c, w) / 1e6,
	       (double)eng_weights_nbytes(c, w) / (1 << 20),
	       (double)eng_weights_bytes_per_token(c, w) / (1 << 20));
	printf("backend:  %s: %s\n", ops->name, ops->device_name(be));
	if (bw > 0)
		printf("memory:   %.1f GB/s measured bandwidth (cpu: the threads reading DRAM; cuda: a device "
		       "copy, read + written)\n", bw / 1e9);
	printf("medians of %d runs after a warm-up; batch %d tokens\n\n", o->reps,
	       o->mp.max_batch_tokens ? o->mp.max_batch_tokens : 512);
	printf("%-22s %12s %10s %10s %10s\n", "test", "tokens/s", "ms/token", "GB/s", bw > 0 ? "of mem bw" : "");
}

int fs_cli_bench(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	struct eng_model *m = NULL;
	struct eng_session *s = NULL;
	struct eng_settings st;
	int32_t *toks = NULL;
	int rc, status = 1, max_len = 1;
	double *tp = NULL, *td = NULL, bw = 0, wbytes;
	const struct eng_backend_ops *ops;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--sessions"))
			return fs_cli_bench_sessions(argc, argv);
	if ((rc = bench_parse(argc, argv, &o)) != 0)
		return rc;
	for (int i = 0; i < o.n_pp; i++)
		max_len = o.pp[i] > max_len ? o.pp[i] : max_len;
	for (int i = 0; i < o.n_depth; i++)
		max_len = o.depth[i] + o.n_gen + 1 > max_len ? o.depth[i] + o.n_gen + 1 : max_len;
	o.mp.n_ctx = max_len + 1;
	o.mp.max_sessions = 1;
	rc = eng_model_load(o.path, &o.mp, &m);
	if (rc < 0) {
		fprintf(stderr, "promptfs bench: cannot load model '%s': %s\n", o.path, strerror(-rc));
		return 1;
	}
	eng_settings_default(m, &st);
	st.temperature = 0; /* greedy: sampling cost is the arg max, as llama-bench's */
	st.mode = ENG_MODE_RAW;
	toks = bench_tokens(m, max_len);
	tp = calloc((size_t)o.reps, sizeof(double));
	td = calloc((size_t)o.reps, sizeof(double));
	if (!toks || !tp || !td || eng_session_init(m, &st, &s) < 0)
		goto out;
	if (eng_model_backend(m, &ops) && ops->mem_bandwidth)
		bw = ops->mem_bandwidth(eng_model_backend(m, NULL));
	wbytes = (double)eng_weights_bytes_per_token(eng_model_config(m), eng_model_weights(m));
	bench_header(m, &o, bw);
	if (bench_once(m, s, toks, 64 < max_len ? 64 : max_len - 1, 8, &tp[0], &td[0]) < 0) /* warm-up */
		goto out_fail;
	for (int i = 0; i < o.n_pp; i++) {
		char name[32];
		double med;

		for (int r = 0; r < o.reps; r++)
			if ((rc = bench_once(m, s, toks, o.pp[i], 0, &tp[r], &td[r])) < 0)
				goto out_fail;
		med = median(tp, o.reps);
		snprintf(name, sizeof(name), "prefill %d", o.pp[i]);
		printf("%-22s %12.1f %10.3f\n", name, o.pp[i] / med, 1e3 * med / o.pp[i]);
		fflush(stdout);
	}
	for (int i = 0; i < o.n_depth; i++) {
		char name[32];
		double med, tps, kv, gbs;

		for (int r = 0; r < o.reps; r++)
			if ((rc = bench_once(m, s, toks, o.depth[i], o.n_gen, &tp[r], &td[r])) < 0)
				goto out_fail;
		med = median(td, o.reps);
		tps = o.n_gen / med;
		/* KV read per token: every cached position's K and V, all layers */
		kv = (double)eng_model_page_bytes(m) / ENG_KV_PAGE * (o.depth[i] + o.n_gen / 2.0);
		gbs = (wbytes + kv) * tps / 1e9;
		snprintf(name, sizeof(name), "decode @%d x%d", o.depth[i], o.n_gen);
		printf("%-22s %12.1f %10.3f %10.2f", name, tps, 1e3 / tps, gbs);
		if (bw > 0)
			printf(" %9.0f%%", 100.0 * gbs * 1e9 / bw);
		printf("\n");
		fflush(stdout);
	}
	status = 0;
	goto out;
out_fail:
	fprintf(stderr, "promptfs bench: run failed: %s\n", strerror(-rc));
out:
	free(tp);
	free(td);
	free(toks);
	eng_session_free(s);
	eng_settings_free(&st);
	eng_model_free(m);
	return status;
}
