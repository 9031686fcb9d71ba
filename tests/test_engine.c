/*
 * test_engine.c — the engine API (engine/engine.h) on the tiny real model
 * shared/models/stories260K.gguf (raw mode, no chat template).
 *
 * Every expectation is a property, never text recorded from our own runs:
 *   cancel ends a turn early; two sessions batched together produce the
 *   same text as each alone (greedy and seeded sampling); a second turn
 *   prefills only its new tokens and equals a fresh session given the
 *   concatenated text; -EFBIG leaves the session as it was; an evicted
 *   session rebuilds its cache and continues exactly as without eviction;
 *   reset; max_sessions → -ENOSPC; stop strings cut the reply exactly where
 *   the unstopped reply has the string; queued turns; settings parsing;
 *   history; the engine thread with notifications and a free mid-step;
 *   forks (shared pages, copy-on-write, equal continuations, no leak).
 *
 * Run: ctest -R engine  (PROMPTFS_SHARED must point at shared/)
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "gguf/log.h"
#include "check.h"



static char model_path[4096];

static struct eng_model *load(int n_ctx, size_t kv_bytes, int max_sessions, int max_batch)
{
	struct eng_model_params p;
	struct eng_model *m = NULL;
	int rc;

	eng_model_params_default(&p);
	p.backend = "cpu";
	p.n_threads = 1;
	p.n_ctx = n_ctx;
	p.kv_bytes = kv_bytes;
	p.max_sessions = max_sessions;
	p.max_batch_tokens = max_batch;
	rc = eng_model_load(model_path, &p, &m);
	if (rc < 0) {
		fprintf(stderr, "cannot load %s: %d\n", model_path, rc);
		exit(1);
	}
	return m;
}

static struct eng_session *session(struct eng_model *m, float temp, int64_t seed, int max_tokens)
{
	struct eng_settings st;
	struct eng_session *s = NULL;

	eng_settings_default(m, &st);
	st.temperature = temp;
	st.seed = seed;
	st.max_tokens = max_tokens;
	if (eng_session_init(m, &st, &s) < 0) {
		fprintf(stderr, "eng_session_init failed\n");
		exit(1);
	}
	eng_settings_free(&st);
	return s;
}

static bool is_final(struct eng_session *s)
{
	bool final = false;
	char c;

	eng_session_read_reply(s, 0, &c, 0, &final);
	return final;
}

/* Steps until every given session's reply is final; returns steps taken. */
static int run(struct eng_model *m, struct eng_session **ss, int n)
{
	int steps = 0;

	for (;;) {
		bool all = true;

		for (int i = 0; i < n; i++)
			all = all && is_final(ss[i]);
		if (all || steps > 100000)
			return steps;
		if (eng_step(m) < 0)
			return -1;
		steps++;
	}
}

static char *reply(struct eng_session *s)
{
	struct eng_session_info in;
	char *b;

	eng_session_info(s, &in);
	b = calloc(1, in.reply_bytes + 1);
	eng_session_read_reply(s, 0, b, in.reply_bytes, NULL);
	return b;
}

static int submit(struct eng_session *s, const char *t)
{
	return eng_session_submit(s, t, strlen(t));
}

/* One session alone, one prompt: the reply. */
static char *alone(struct eng_model *m, const char *prompt, float temp, int64_t seed, int n)
{
	struct eng_session *s = session(m, temp, seed, n);
	char *r;

	submit(s, prompt);
	run(m, &s, 1);
	r = reply(s);
	eng_session_free(s);
	return r;
}

// ---- tests

static void test_cancel(struct eng_model *m)
{
	struct eng_session *s = session(m, 0, 0, 200);
	struct eng_session_info in;

	submit(s, "Once upon a time");
	for (int i = 0; i < 6; i++)
		eng_step(m);
	eng_session_cancel(s);
	run(m, &s, 1);
	eng_session_info(s, &in);
	CHECK(in.state == ENG_STATE_DONE && in.stop == ENG_STOP_CANCEL, "cancelled turn: state %d stop %d",
	      in.state, in.stop);
	CHECK(in.last_gen_tokens >= 4 && in.last_gen_tokens <= 7, "cancel stopped early (%d tokens)",
	      in.last_gen_tokens);
	/* the session stays usable */
	CHECK(submit(s, " The end.") == 0, "submit after cancel");
	run(m, &s, 1);
	eng_session_info(s, &in);
	CHECK(in.state == ENG_STATE_DONE && in.n_turns == 2, "second turn after cancel ran");
	eng_session_free(s);
}

static void test_interleaved(struct eng_model *m, float temp)
{
	const char *pa = "Once upon a time", *pb = "Tom and Sue went to the park";
	char *ra = alone(m, pa, temp, 11, 48), *rb = alone(m, pb, temp, 22, 48);
	struct eng_session *ss[2] = { session(m, temp, 11, 48), session(m, temp, 22, 48) };
	struct eng_stats st0, st1;
	char *xa, *xb;
	int steps;

	eng_model_stats(m, &st0);
	submit(ss[0], pa);
	for (int i = 0; i < 5; i++) /* b joins while a is generating */
		eng_step(m);
	submit(ss[1], pb);
	steps = run(m, ss, 2);
	eng_model_stats(m, &st1);
	xa = reply(ss[0]);
	xb = reply(ss[1]);
	CHECK(strlen(ra) > 20 && !strcmp(ra, xa), "T=%.1f session a batched == alone:\n  %s\n  %s", temp, ra, xa);
	CHECK(strlen(rb) > 20 && !strcmp(rb, xb), "T=%.1f session b batched == alone:\n  %s\n  %s", temp, rb, xb);
	/* they really shared forward passes */
	CHECK((int)(st1.forward_passes - st0.forward_passes) < 5 + 48 + 20 && steps > 0,
	      "shared batches: %llu passes", (unsigned long long)(st1.forward_passes - st0.forward_passes));
	free(ra);
	free(rb);
	free(xa);
	free(xb);
	eng_session_free(ss[0]);
	eng_session_free(ss[1]);
}

static void test_second_turn(struct eng_model *m)
{
	struct eng_session *a = session(m, 0, 0, 24), *b = session(m, 0, 0, 24);
	struct eng_session_info in, ib;
	const char *t1 = "Once upon a time", *t2 = " One day, Lily";
	char *r1, *r2, *cat, *rb;
	int32_t *ta, *tb;
	int na, nb;
	enum eng_stop_reason stop1;

	submit(a, t1);
	run(m, &a, 1);
	r1 = reply(a);
	eng_session_info(a, &in);
	stop1 = in.stop;
	submit(a, t2);
	run(m, &a, 1);
	r2 = reply(a);
	eng_session_info(a, &in);
	/* only the new tokens (plus the reply's last token when the reply ended
	 * without an end-of-generation token: sampled, never run) */
	CHECK(in.last_prefill_tokens == in.last_prompt_tokens + (stop1 == ENG_STOP_EOG ? 0 : 1),
	      "second turn prefilled %d tokens for %d new ones (first stop %d)", in.last_prefill_tokens,
	      in.last_prompt_tokens, stop1);
	CHECK(in.last_prompt_tokens > 0 && in.last_prompt_tokens < 10, "second turn added %d tokens",
	      in.last_prompt_tokens);

	cat = malloc(strlen(t1) + strlen(r1) + strlen(t2) + 1);
	sprintf(cat, "%s%s%s", t1, r1, t2);
	submit(b, cat);
	run(m, &b, 1);
	rb = reply(b);
	eng_session_info(b, &ib);
	CHECK(!strcmp(r2, rb), "second turn == fresh session given the concatenation:\n  %s\n  %s", r2, rb);
	eng_session_tokens(a, &ta, &na);
	eng_session_tokens(b, &tb, &nb);
	CHECK(na == nb && !memcmp(ta, tb, sizeof(*ta) * (size_t)na), "token histories equal (%d, %d)", na, nb);
	free(ta);
	free(tb);
	free(r1);
	free(r2);
	free(rb);
	free(cat);
	eng_session_free(a);
	eng_session_free(b);
}

/* Forks: shared pages, copy-on-write of the tail page only, the fork and
 * its source continue as if each were alone, a fork from turn 1 equals a
 * fresh session that only ran turn 1, and every page goes back to the pool
 * at the end. */
static void test_fork(void)
{
	struct eng_model *m = load(512, 0, 8, 0);
	const char *t1 = "Tom had a big red ball. He liked to play with it every day in the garden. "
	                 "One day the ball went over the fence and Tom was sad.";
	const char *t2 = " Then the sun", *t3 = " The dog";
	struct eng_session *a = session(m, 0, 0, 24), *b = session(m, 0, 0, 24);
	struct eng_session *c = session(m, 0, 0, 24), *d = session(m, 0, 0, 24), *ab[2];
	struct eng_session_info ia, ib, ic;
	struct eng_stats st0, st1;
	int32_t *ta, *tb;
	int na, nb;
	char *ra, *rb, *rc, *rd;

	submit(a, t1);
	run(m, &a, 1);
	submit(a, t2);
	run(m, &a, 1);
	CHECK(eng_session_fork(a, a, -1) == -EINVAL, "fork onto itself refused");
	CHECK(eng_session_fork(b, a, 3) == -EINVAL, "fork beyond the finished turns refused");
	CHECK(eng_session_fork(b, a, -1) == 0, "fork");
	eng_session_info(a, &ia);
	eng_session_info(b, &ib);
	eng_model_stats(m, &st0);
	CHECK(ib.n_turns == 2 && ib.n_past == ia.n_past && ib.n_cached == ia.n_cached && ia.n_cached > 64,
	      "fork: %d turns, %d/%d tokens (source %d/%d)", ib.n_turns, ib.n_cached, ib.n_past, ia.n_cached,
	      ia.n_past);
	CHECK(st0.kv_pages_shared == (ia.n_cached + 63) / 64, "%d pages shared for %d cached tokens",
	      st0.kv_pages_shared, ia.n_cached);
	eng_session_tokens(a, &ta, &na);
	eng_session_tokens(b, &tb, &nb);
	CHECK(na == nb && !memcmp(ta, tb, sizeof(*ta) * (size_t)na), "token histories equal");
	free(ta);
	free(tb);
	submit(a, t3);
	submit(b, t3);
	ab[0] = a;
	ab[1] = b;
	run(m, ab, 2); /* batched together */
	ra = reply(a);
	rb = reply(b);
	eng_session_info(b, &ib);
	eng_model_stats(m, &st1);
	CHECK(!strcmp(ra, rb), "fork and source give the same next reply:\n  %s\n  %s", ra, rb);
	CHECK(ib.last_prefill_tokens <= ib.last_prompt_tokens + 1, "fork prefilled %d for %d new tokens",
	      ib.last_prefill_tokens, ib.last_prompt_tokens);
	CHECK(st1.pages_copied - st0.pages_copied == (ia.n_cached % 64 ? 1 : 0),
	      "%llu pages copied on write (the tail only)", (unsigned long long)(st1.pages_copied - st0.pages_copied));
	CHECK(st1.kv_pages_shared == ia.n_cached / 64, "%d full pages still shared", st1.kv_pages_shared);
	/* from the end of turn 1 of a (raw mode: later turns re-tokenised the text) */
	CHECK(eng_session_fork(c, a, 1) == 0, "fork a@1");
	eng_session_info(c, &ic);
	CHECK(ic.n_turns == 1, "a@1 has %d turns", ic.n_turns);
	submit(c, t3);
	submit(d, t1);
	run(m, &d, 1);
	submit(d, t3);
	ab[0] = c;
	ab[1] = d;
	run(m, ab, 2);
	rc = reply(c);
	rd = reply(d);
	CHECK(!strcmp(rc, rd), "fork a@1 + turn == fresh turn 1 + turn:\n  %s\n  %s", rc, rd);
	free(ra);
	free(rb);
	free(rc);
	free(rd);
	eng_session_free(a);
	eng_session_free(b);
	eng_session_free(c);
	eng_session_free(d);
	eng_model_stats(m, &st1);
	CHECK(st1.kv_pages_used == 0 && st1.kv_pages_shared == 0, "pages back in the pool: %d used, %d shared",
	      st1.kv_pages_used, st1.kv_pages_shared);
	eng_model_free(m);
}

static void test_efbig(void)
{
	struct eng_model *m = load(64, 0, 4, 0);
	struct eng_session *s = session(m, 0, 0, 8);
	struct eng_session_info in0, in1;
	char big[1024];
	char *r;

	memset(big, 0, sizeof(big));
	for (int i = 0; i < 60; i++)
		strcat(big, "big dog ");
	CHECK(submit(s, big) == -EFBIG, "prompt longer than n_ctx → -EFBIG");
	eng_session_info(s, &in0);
	CHECK(in0.state == ENG_STATE_EMPTY && in0.n_turns == 0 && in0.n_past == 0, "nothing changed");
	CHECK(submit(s, "Once upon a time") == 0, "a prompt that fits");
	run(m, &s, 1);
	eng_session_info(s, &in0);
	CHECK(submit(s, big) == -EFBIG, "second turn too long → -EFBIG");
	eng_session_info(s, &in1);
	CHECK(in1.n_turns == in0.n_turns && in1.n_past == in0.n_past && in1.state == ENG_STATE_DONE,
	      "conversation unchanged after -EFBIG");
	CHECK(submit(s, " Then") == 0, "still usable");
	run(m, &s, 1);
	eng_session_info(s, &in1);
	r = reply(s);
	CHECK(in1.state == ENG_STATE_DONE && in1.n_turns == 2 && strlen(r) > 0, "turn after -EFBIG ran");
	free(r);
	/* the context fills: the turn ends with CONTEXT */
	eng_session_reset(s);
	{
		struct eng_settings st;

		eng_session_get_settings(s, &st);
		st.max_tokens = 0;
		eng_session_set_settings(s, &st);
		eng_settings_free(&st);
	}
	submit(s, "Once upon a time");
	run(m, &s, 1);
	eng_session_info(s, &in1);
	CHECK(in1.stop == ENG_STOP_EOG || (in1.stop == ENG_STOP_CONTEXT && in1.n_past == 64),
	      "unlimited reply ends at EOG or a full context (stop %d, n_past %d)", in1.stop, in1.n_past);
	eng_session_free(s);
	eng_model_free(m);
}

/* Turn 1 of a, then pressure (or an explicit eviction), then turn 2 of a:
 * the same text as with plenty of memory. */
static void test_eviction(void)
{
	struct eng_model *big = load(512, 0, 8, 0);
	struct eng_model *m;
	struct eng_session *a, *b;
	struct eng_session_info in;
	struct eng_stats st;
	char *ref1, *ref2, *x1, *x2;
	size_t page = eng_model_page_bytes(big);

	a = session(big, 0, 0, 40);
	submit(a, "Once upon a time");
	run(big, &a, 1);
	ref1 = reply(a);
	submit(a, " Then the sun");
	run(big, &a, 1);
	ref2 = reply(a);
	eng_session_free(a);

	m = load(512, 2 * page, 8, 0); /* 2 pages of 64 tokens */
	a = session(m, 0, 0, 40);
	b = session(m, 0, 0, 30);
	submit(a, "Once upon a time");
	run(m, &a, 1);
	x1 = reply(a);
	submit(b, "Tom had a big red ball. He liked to play with it every day in the garden. "
	          "One day the ball went over the fence and Tom was sad. His mom said they would find it.");
	run(m, &b, 1); /* needs 2 pages (> 64 tokens): takes a's */
	eng_model_stats(m, &st);
	eng_session_info(a, &in);
	CHECK(st.evictions >= 1 && in.n_cached == 0, "a was evicted (evictions %llu, a cached %d)",
	      (unsigned long long)st.evictions, in.n_cached);
	eng_session_info(b, &in);
	CHECK(in.state == ENG_STATE_DONE && in.error == 0, "b ran in the freed pages: %s", in.status);
	submit(a, " Then the sun");
	run(m, &a, 1);
	x2 = reply(a);
	eng_session_info(a, &in);
	CHECK(!strcmp(ref1, x1), "turn 1 equal");
	CHECK(!strcmp(ref2, x2), "after eviction + rebuild:\n  %s\n  %s", ref2, x2);
	CHECK(in.last_prefill_tokens > in.last_prompt_tokens + 20, "rebuild prefilled the history (%d for %d new)",
	      in.last_prefill_tokens, in.last_prompt_tokens);
	free(x1);
	free(x2);
	/* explicit eviction of an idle session gives the same */
	eng_session_reset(a);
	submit(a, "Once upon a time");
	run(m, &a, 1);
	eng_session_evict(a);
	eng_session_info(a, &in);
	CHECK(in.n_cached == 0, "evicted");
	submit(a, " Then the sun");
	run(m, &a, 1);
	x2 = reply(a);
	CHECK(!strcmp(ref2, x2), "explicit eviction:\n  %s\n  %s", ref2, x2);
	free(x2);
	free(ref1);
	free(ref2);
	eng_session_free(a);
	eng_session_free(b);
	eng_model_free(m);
	eng_model_free(big);
}

static void test_reset_and_limits(void)
{
	struct eng_model *m = load(256, 0, 2, 0);
	struct eng_session *a = session(m, 0, 0, 16), *b = session(m, 0, 0, 16), *c = NULL;
	struct eng_session_info in;
	struct eng_settings st;
	char *r1, *r2, buf[8];
	bool final = false;

	eng_settings_default(m, &st);
	CHECK(eng_session_init(m, &st, &c) == -ENOSPC, "max_sessions 2: a third → -ENOSPC");
	eng_session_free(b);
	CHECK(eng_session_init(m, &st, &c) == 0, "after a free there is room again");
	eng_settings_free(&st);

	submit(a, "Once upon a time");
	run(m, &a, 1);
	r1 = reply(a);
	eng_session_reset(a);
	eng_session_info(a, &in);
	CHECK(in.state == ENG_STATE_EMPTY && in.n_past == 0 && in.n_turns == 0 && in.n_cached == 0,
	      "reset empties the session");
	CHECK(eng_session_read_reply(a, 0, buf, sizeof(buf), &final) == 0 && final, "empty reply is EOF");
	submit(a, "Once upon a time");
	run(m, &a, 1);
	r2 = reply(a);
	CHECK(!strcmp(r1, r2), "after reset == fresh");
	CHECK(submit(a, "") == -EINVAL, "empty text → -EINVAL");
	free(r1);
	free(r2);
	eng_session_free(a);
	eng_session_free(c);
	eng_model_free(m);
}

static void test_stop_strings(struct eng_model *m)
{
	char *full = alone(m, "Once upon a time", 0, 0, 60);
	const char *stops[] = { "Lily", "girl na", ".", "\n" };

	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
		const char *hit = strstr(full, stops[i]);
		struct eng_session *s = session(m, 0, 0, 60);
		struct eng_session_info in;
		struct eng_settings st;
		char *r;

		if (!hit) {
			fprintf(stderr, "note: stop '%s' not in the reference text\n", stops[i]);
			eng_session_free(s);
			continue;
		}
		eng_session_get_settings(s, &st);
		CHECK(eng_settings_set(&st, "stop", i == 3 ? "zzz|\\n" : stops[i], strlen(i == 3 ? "zzz|\\n" : stops[i])) == 0,
		      "set stop");
		eng_session_set_settings(s, &st);
		eng_settings_free(&st);
		submit(s, "Once upon a time");
		run(m, &s, 1);
		r = reply(s);
		eng_session_info(s, &in);
		CHECK(strlen(r) == (size_t)(hit - full) && !strncmp(r, full, strlen(r)),
		      "stop '%s': reply is the text before it:\n  %s", stops[i], r);
		CHECK(in.stop == ENG_STOP_STRING, "stop reason STRING (%d)", in.stop);
		free(r);
		eng_session_free(s);
	}
	free(full);
}

static void test_queue_and_history(struct eng_model *m)
{
	struct eng_session *s = session(m, 0, 0, 12);
	struct eng_session_info in;
	char *h, *r, *j;
	size_t n;

	submit(s, "Once upon a time");
	eng_step(m);
	CHECK(submit(s, " The end.") == 0, "submit while busy queues");
	eng_session_info(s, &in);
	CHECK(in.state == ENG_STATE_QUEUED && in.n_turns == 2, "latest turn is queued (state %d)", in.state);
	CHECK(!is_final(s), "queued reply is not final");
	run(m, &s, 1);
	eng_session_info(s, &in);
	CHECK(in.state == ENG_STATE_DONE && in.n_turns == 2 && in.last_gen_tokens > 0, "queued turn ran");
	r = reply(s);
	eng_session_history(s, false, &h, &n);
	CHECK(!strncmp(h, "### user\nOnce upon a time\n### assistant\n", 40) && strstr(h, "### user\n The end.\n") &&
	      n > strlen(r) && !strncmp(h + n - strlen(r) - 1, r, strlen(r)) && h[n - 1] == '\n', "history text:\n%s", h);
	eng_session_history(s, true, &j, &n);
	CHECK(!strncmp(j, "[{\"role\":\"user\",\"content\":\"Once upon a time\"},{\"role\":\"assistant\",\"content\":\"",
	               strlen("[{\"role\":\"user\",\"content\":\"Once upon a time\"},{\"role\":\"assistant\",\"content\":\"")),
	      "history JSON: %s", j);
	free(h);
	free(j);
	free(r);
	eng_session_free(s);
}

static void test_seeds(struct eng_model *m)
{
	char *a = alone(m, "Once upon a time", 1.0f, 1234, 40);
	char *b = alone(m, "Once upon a time", 1.0f, 1234, 40);
	char *c = alone(m, "Once upon a time", 1.0f, -1, 40);
	char *d = alone(m, "Once upon a time", 1.0f, -1, 40);

	CHECK(!strcmp(a, b), "same seed → same text");
	CHECK(strcmp(c, d), "seed -1 → a fresh seed per turn");
	free(a);
	free(b);
	free(c);
	free(d);
}

static void test_settings(struct eng_model *m)
{
	struct eng_settings s;
	char buf[256];
	const struct { const char *k, *v; } bad[] = {
		{ "temperature", "nan" }, { "temperature", "-1" }, { "temperature", "0.5x" }, { "top_k", "-3" },
		{ "top_k", "1.5" }, { "top_p", "0" }, { "top_p", "1.5" }, { "min_p", "2" }, { "min_p", "inf" },
		{ "repeat_penalty", "0" }, { "seed", "-2" }, { "max_tokens", "-1" }, { "mode", "poem" },
		{ "repeat_last_n", "" }, { "system", "\xff\xfe" },
	};

	eng_settings_default(m, &s);
	CHECK(s.mode == ENG_MODE_RAW, "no template → raw by default");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct eng_settings before = s;

		CHECK(eng_settings_set(&s, bad[i].k, bad[i].v, strlen(bad[i].v)) == -EINVAL, "%s = '%s' → EINVAL",
		      bad[i].k, bad[i].v);
		CHECK(!memcmp(&before, &s, sizeof(s)), "%s unchanged after a bad value", bad[i].k);
	}
	CHECK(eng_settings_set(&s, "colour", "red", 3) == -ENOENT, "unknown key → ENOENT");
	CHECK(eng_settings_set(&s, "temperature", " 0.25\n", 6) == 0 && s.temperature == 0.25f, "temperature");
	CHECK(eng_settings_set(&s, "top_p", "1", 1) == 0 && s.top_p == 1.0f, "top_p = 1");
	CHECK(eng_settings_set(&s, "seed", "42", 2) == 0 && s.seed == 42, "seed");
	CHECK(eng_settings_set(&s, "mode", "chat", 4) == 0 && s.mode == ENG_MODE_CHAT, "mode");
	CHECK(eng_settings_set(&s, "stop", "a\\|b|\\n||c", 10) == 0 && s.n_stop == 3 && !strcmp(s.stop[0], "a|b") &&
	      !strcmp(s.stop[1], "\n") && !strcmp(s.stop[2], "c"), "stop parsing");
	CHECK(eng_settings_get(&s, "stop", buf, sizeof(buf)) > 0 && !strcmp(buf, "a\\|b|\\n|c"), "stop formats: %s", buf);
	CHECK(eng_settings_get(&s, "temperature", buf, sizeof(buf)) > 0 && !strcmp(buf, "0.25"), "temperature formats: %s", buf);
	CHECK(eng_settings_set(&s, "system", "Be nice.", 8) == 0 && !strcmp(s.system, "Be nice."), "system");
	CHECK(eng_settings_set(&s, "system", "", 0) == 0 && s.system == NULL, "empty system clears");
	for (int i = 0; eng_settings_keys[i]; i++)
		CHECK(eng_settings_get(&s, eng_settings_keys[i], buf, sizeof(buf)) >= 0, "get %s", eng_settings_keys[i]);
	eng_settings_free(&s);
}

// ---- the engine thread

static atomic_int notified;
static void on_notify(void *user, struct eng_session *s)
{
	(void)user;
	(void)s;
	atomic_fetch_add(&notified, 1);
}

static void test_thread(void)
{
	struct eng_model *m = load(256, 0, 16, 0);
	struct eng_session *ss[6];
	char *ref = alone(m, "Once upon a time", 0, 0, 30);
	char *r;

	eng_model_set_notify(m, on_notify, NULL);
	CHECK(eng_model_start(m) == 0, "engine thread starts");
	for (int i = 0; i < 6; i++) {
		ss[i] = session(m, 0, 0, 30);
		submit(ss[i], "Once upon a time");
	}
	usleep(2000);
	eng_session_free(ss[5]); /* possibly mid-step */
	for (int k = 0; k < 2000; k++) {
		bool all = true;

		for (int i = 0; i < 5; i++)
			all = all && is_final(ss[i]);
		if (all)
			break;
		usleep(5000);
	}
	for (int i = 0; i < 5; i++) {
		r = reply(ss[i]);
		CHECK(!strcmp(r, ref), "threaded session %d == alone", i);
		free(r);
	}
	CHECK(atomic_load(&notified) >= 5, "notifications (%d)", atomic_load(&notified));
	for (int i = 0; i < 5; i++)
		eng_session_free(ss[i]);
	free(ref);
	eng_model_free(m); /* stops the thread */
}

int main(void)
{
	const char *shared = getenv("PROMPTFS_SHARED");
	struct eng_model *m;

	snprintf(model_path, sizeof(model_path), "%s/models/stories260K.gguf", shared ? shared : "../shared");
	if (access(model_path, R_OK)) {
		fprintf(stderr, "FAIL: %s not found (set PROMPTFS_SHARED)\n", model_path);
		return 1;
	}
	m = load(512, 0, 16, 0);
	test_settings(m);
	test_cancel(m);
	test_interleaved(m, 0.0f);
	test_interleaved(m, 0.9f);
	test_second_turn(m);
	test_stop_strings(m);
	test_queue_and_history(m);
	test_seeds(m);
	eng_model_free(m);
	test_fork();
	test_efbig();
	test_eviction();
	test_reset_and_limits();
	test_thread();
	return check_summary();
}
