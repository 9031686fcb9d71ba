/*
 * test_prefix.c — shared prefixes (engine/prefix.c) and the scheduler's
 * fairness, on the tiny real model shared/models/stories260K.gguf, CPU.
 *
 * Every expectation is a property, never text recorded from our own runs:
 *   - sharing on vs off: a session whose prompt begins like another's holds
 *     the other's pages for the full pages of the common prefix, and its
 *     KV bytes, its next-token logits and its greedy reply are bit-identical
 *     to the same session with sharing off;
 *   - sessions arriving at once with one prefix prefill it once (the
 *     tokens saved are exactly the others' shared pages); one arriving
 *     while another's long head is half prefilled takes every full page
 *     of it (chunks end on page boundaries);
 *   - 1,000 sessions that shared pages, then removed: the pool's free count
 *     and the prefix table are back where they started; the same under a
 *     pool too small for them (evictions, preemptions), where every reply
 *     equals the reply of sharing off with a roomy pool;
 *   - a prompt is not pushed back by newcomers (prompts are served in the
 *     order their turns started);
 *   - a long prompt (4,000 tokens) is prefilled in chunks while 8 running
 *     replies get a token at every step of it.
 *
 * Run: ctest -R prefix  (PROMPTFS_SHARED must point at shared/)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "gguf/log.h"
#include "check.h"

static char model_path[4096];

static struct eng_model *load(int n_ctx, size_t kv_bytes, int max_sessions, bool share)
{
	struct eng_model_params p;
	struct eng_model *m = NULL;

	eng_model_params_default(&p);
	p.backend = "cpu";
	p.n_threads = 1;
	p.n_ctx = n_ctx;
	p.kv_bytes = kv_bytes;
	p.max_sessions = max_sessions;
	p.no_prefix_share = !share;
	if (eng_model_load(model_path, &p, &m) < 0) {
		fprintf(stderr, "cannot load %s\n", model_path);
		exit(1);
	}
	return m;
}

static struct eng_session *session(struct eng_model *m)
{
	struct eng_settings st;
	struct eng_session *s = NULL;

	eng_settings_default(m, &st);
	st.temperature = 0;
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

static int run(struct eng_model *m, struct eng_session **ss, int n)
{
	int steps = 0;

	for (;;) {
		bool all = true;

		for (int i = 0; i < n && all; i++)
			all = is_final(ss[i]);
		if (all || steps > 1000000)
			return steps;
		if (eng_step(m) < 0)
			return -1;
		steps++;
	}
}

/* Tokens of prompt k: a common head of `common` tokens, then `own` tokens
 * of its own (deterministic, never BOS/EOS). */
static void prompt(int32_t *v, int common, int own, int k)
{
	uint32_t x = 12345;

	for (int i = 0; i < common; i++) {
		x = x * 1103515245u + 12345u;
		v[i] = 3 + (int32_t)((x >> 16) % 500);
	}
	x = 777u + 31u * (uint32_t)k;
	for (int i = 0; i < own; i++) {
		x = x * 1103515245u + 12345u;
		v[common + i] = 3 + (int32_t)((x >> 16) % 500);
	}
}

static void submit(struct eng_session *s, int common, int own, int k, int max_tokens)
{
	int32_t v[4200];

	prompt(v, common, own, k);
	if (eng_session_submit_tokens(s, v, common + own, max_tokens, true) < 0) {
		fprintf(stderr, "submit failed\n");
		exit(1);
	}
}

static int32_t *history(struct eng_session *s, int *n)
{
	int32_t *t = NULL;

	if (eng_session_tokens(s, &t, n) < 0)
		exit(1);
	return t;
}

/* The next-token logits after s's whole history: one forward pass over its
 * last token (whose KV slot is in its own, unshared last page). */
static float *next_logits(struct eng_model *m, struct eng_session *s)
{
	const struct eng_backend_ops *ops;
	struct eng_backend *be = eng_model_backend(m, &ops);
	int V = eng_model_config(m)->n_vocab, n;
	int32_t *t = history(s, &n);
	float *lg = calloc((size_t)V, sizeof(*lg));
	struct eng_batch_seq q = { .tokens = t + n - 1, .n_tokens = 1, .pos0 = n - 1, .pages = s->pages };
	struct eng_batch b = { .n_seqs = 1, .seqs = &q };

	CHECK((n - 1) / ENG_KV_PAGE < s->n_pages && !eng_page_shared_locked(m, s->pages[(n - 1) / ENG_KV_PAGE]),
	      "last page must be the session's own");
	CHECK(ops->forward(be, &b, lg, NULL, NULL) == 0, "forward");
	free(t);
	return lg;
}

// ---- sharing on vs off: bit-identical

/* A and B share a 150-token head (two full pages), then differ. */
static void run_pair(struct eng_model *m, struct eng_session **a, struct eng_session **b)
{
	struct eng_session *ss[2];

	ss[0] = *a = session(m);
	ss[1] = *b = session(m);
	submit(*a, 150, 20, 1, 6);
	submit(*b, 150, 30, 2, 6);
	CHECK(run(m, ss, 2) > 0, "run");
}

/* s (sharing on, model on) against t (the same prompt, sharing off): the
 * same history, KV bytes in every full page, next-token logits. */
static void same_session(struct eng_model *on, struct eng_session *s, struct eng_model *off,
                         struct eng_session *t)
{
	const struct eng_backend_ops *ops;
	size_t pb = eng_model_page_bytes(on);
	uint8_t *k1 = malloc(pb), *k0 = malloc(pb);
	int V = eng_model_config(on)->n_vocab, n1, n0;
	int32_t *h1 = history(s, &n1), *h0 = history(t, &n0);
	float *l1, *l0;

	CHECK(n1 == n0 && !memcmp(h1, h0, sizeof(*h1) * (size_t)n1), "same greedy reply tokens");
	eng_model_backend(on, &ops);
	for (int p = 0; p < (n1 - 1) / ENG_KV_PAGE; p++) {
		ops->kv_page_read(eng_model_backend(on, NULL), s->pages[p], -1, k1);
		ops->kv_page_read(eng_model_backend(off, NULL), t->pages[p], -1, k0);
		CHECK(!memcmp(k1, k0, pb), "KV page %d differs between sharing on and off", p);
	}
	l1 = next_logits(on, s);
	l0 = next_logits(off, t);
	CHECK(!memcmp(l1, l0, sizeof(*l1) * (size_t)V), "next-token logits differ between sharing on and off");
	free(l1);
	free(l0);
	free(h1);
	free(h0);
	free(k1);
	free(k0);
}

static void test_bit_identical(void)
{
	struct eng_model *on = load(512, 0, 8, true), *off = load(512, 0, 8, false);
	struct eng_session *a1, *b1, *a0, *b0;
	struct eng_session_info ia1, ib1, ia0, ib0;
	struct eng_stats st;

	run_pair(on, &a1, &b1);
	run_pair(off, &a0, &b0);
	eng_session_info(a1, &ia1);
	eng_session_info(b1, &ib1);
	eng_session_info(a0, &ia0);
	eng_session_info(b0, &ib0);
	/* one of the two prefilled the head, the other took its two pages */
	CHECK(ia1.last_cached_tokens + ib1.last_cached_tokens == 2 * ENG_KV_PAGE,
	      "%d + %d tokens from shared pages, want 128", ia1.last_cached_tokens, ib1.last_cached_tokens);
	CHECK(ia0.last_cached_tokens + ib0.last_cached_tokens == 0, "sharing off: shared tokens");
	CHECK(ia1.last_prefill_tokens + ib1.last_prefill_tokens ==
	      ia0.last_prefill_tokens + ib0.last_prefill_tokens - 2 * ENG_KV_PAGE, "prefilled %d + %d",
	      ia1.last_prefill_tokens, ib1.last_prefill_tokens);
	CHECK(b1->pages[0] == a1->pages[0] && b1->pages[1] == a1->pages[1] && b1->pages[2] != a1->pages[2],
	      "b holds a's first two pages, its own third");
	CHECK(b0->pages[0] != a0->pages[0], "sharing off shares nothing");
	eng_model_stats(on, &st);
	CHECK(st.prefix_share && st.kv_pages_shared == 2 && st.prefill_saved == 2 * ENG_KV_PAGE,
	      "stats: shared %d saved %llu", st.kv_pages_shared, (unsigned long long)st.prefill_saved);
	eng_model_stats(off, &st);
	CHECK(!st.prefix_share && st.prefix_pages == 0 && st.prefill_saved == 0, "off: no table");
	same_session(on, a1, off, a0);
	same_session(on, b1, off, b0);
	eng_model_free(on);
	eng_model_free(off);
}

// ---- many sessions, then removed

/* n sessions with a `common`-token head, all submitted before the first
 * step; checks the pool and table after they are freed. */
static void many(struct eng_model *m, int n, int common, int max_tokens, int32_t **out, int *n_out)
{
	struct eng_session **ss = calloc((size_t)n, sizeof(*ss));

	for (int i = 0; i < n; i++) {
		ss[i] = session(m);
		submit(ss[i], common, 10, i, max_tokens);
	}
	CHECK(run(m, ss, n) > 0, "run");
	for (int i = 0; i < n; i++) {
		if (out)
			out[i] = history(ss[i], &n_out[i]);
		eng_session_free(ss[i]);
	}
	free(ss);
}

static void test_thousand(void)
{
	struct eng_model *m = load(512, 0, 1, true);
	size_t pb = eng_model_page_bytes(m);
	struct eng_stats before, mid, after;
	int free0;

	eng_model_free(m);
	m = load(512, 1100 * pb, 1000, true); /* room for all: one own page each, two shared */

	eng_model_stats(m, &before);
	free0 = before.kv_pages_total - before.kv_pages_used;
	many(m, 1000, 2 * ENG_KV_PAGE, 2, NULL, NULL);
	eng_model_stats(m, &mid);
	/* prefilled once: all but the first took the two shared pages */
	CHECK(mid.prefill_saved == 999ull * 2 * ENG_KV_PAGE, "saved %llu, want %d",
	      (unsigned long long)mid.prefill_saved, 999 * 2 * ENG_KV_PAGE);
	CHECK(mid.evictions == 0, "roomy pool: %llu evictions", (unsigned long long)mid.evictions);
	eng_model_stats(m, &after);
	CHECK(after.kv_pages_total - after.kv_pages_used == free0, "free pages %d, started at %d",
	      after.kv_pages_total - after.kv_pages_used, free0);
	CHECK(after.prefix_pages == 0 && after.kv_pages_shared == 0, "table holds %d pages after the last free",
	      after.prefix_pages);
	eng_model_free(m);
}

/* A pool of 24 pages for 200 sessions that need 3 pages each while they
 * run: evictions and preemptions with shared pages; every reply equals
 * sharing off with a roomy pool. */
static void test_eviction(void)
{
	enum { N = 200 };
	struct eng_model *small, *roomy;
	static int32_t *hs[N], *hr[N];
	static int ns[N], nr[N];
	struct eng_stats st;
	size_t pb;
	int same = 0;

	roomy = load(512, 0, N, false);
	pb = eng_model_page_bytes(roomy);
	small = load(512, 24 * pb, N, true);
	many(small, N, 2 * ENG_KV_PAGE, 8, hs, ns);
	many(roomy, N, 2 * ENG_KV_PAGE, 8, hr, nr);
	eng_model_stats(small, &st);
	CHECK(st.evictions > 0, "the small pool evicted nothing");
	CHECK(st.prefill_saved > 0, "nothing shared under eviction");
	CHECK(st.kv_pages_used == 0 && st.prefix_pages == 0, "after the frees: %d pages used, %d named",
	      st.kv_pages_used, st.prefix_pages);
	for (int i = 0; i < N; i++) {
		same += ns[i] == nr[i] && !memcmp(hs[i], hr[i], sizeof(int32_t) * (size_t)ns[i]);
		free(hs[i]);
		free(hr[i]);
	}
	CHECK(same == N, "%d of %d histories equal sharing off", same, N);
	printf("eviction: %llu evictions, %llu preemptions, %llu tokens saved\n", (unsigned long long)st.evictions,
	       (unsigned long long)st.preemptions, (unsigned long long)st.prefill_saved);
	eng_model_free(small);
	eng_model_free(roomy);
}

// ---- a late joiner shares a long prefix being prefilled in chunks

static void test_late_joiner(void)
{
	struct eng_model *m = load(2048, 0, 4, true);
	struct eng_session *ss[2];
	struct eng_session_info ia, ib;

	ss[0] = session(m);
	ss[1] = session(m);
	submit(ss[0], 1000, 10, 1, 4);
	CHECK(eng_step(m) == 1, "a's first chunk");
	submit(ss[1], 1000, 10, 2, 4); /* while a is half way through the head */
	CHECK(run(m, ss, 2) > 0, "run");
	eng_session_info(ss[0], &ia);
	eng_session_info(ss[1], &ib);
	/* every full page of the 1,000-token head: 15 pages */
	CHECK(ib.last_cached_tokens == 15 * ENG_KV_PAGE, "b took %d tokens from a's pages, want %d",
	      ib.last_cached_tokens, 15 * ENG_KV_PAGE);
	CHECK(ib.last_prefill_tokens == 1010 - 15 * ENG_KV_PAGE, "b prefilled %d", ib.last_prefill_tokens);
	CHECK(ia.last_cached_tokens == 0 && ia.last_prefill_tokens == 1010, "a prefilled %d", ia.last_prefill_tokens);
	eng_session_free(ss[0]);
	eng_session_free(ss[1]);
	eng_model_free(m);
}

// ---- newcomers do not push an older prompt back

/* A 2,000-token prompt, then two 300-token newcomers at every step: the
 * older prompt still gets the step's prefill budget first, so it is done
 * in about 2000 / 512 steps, whatever keeps arriving. */
static void test_newcomers(void)
{
	enum { MAXN = 64 };
	struct eng_model *m = load(4096, 0, MAXN + 1, true);
	struct eng_session *old = session(m), *nw[MAXN];
	struct eng_session_info in;
	int steps = 0, k = 0;

	submit(old, 0, 2000, 5, 1);
	for (;;) {
		eng_session_info(old, &in);
		if ((in.state != ENG_STATE_QUEUED && in.state != ENG_STATE_PREFILL) || k + 2 > MAXN)
			break;
		for (int j = 0; j < 2; j++) {
			nw[k] = session(m);
			submit(nw[k], 0, 300, 1000 + k, 2);
			k++;
		}
		eng_step(m);
		steps++;
	}
	CHECK(in.state != ENG_STATE_QUEUED && in.state != ENG_STATE_PREFILL, "still prefilling after %d steps", steps);
	/* 2000 tokens at 512 a step (less the newcomers' decode rows): 4, at most 5 */
	CHECK(steps <= 5, "the older prompt took %d steps behind %d newcomers", steps, k);
	printf("newcomers: a 2000-token prompt prefilled in %d steps while %d newcomers arrived\n", steps, k);
	run(m, nw, k);
	for (int i = 0; i < k; i++)
		eng_session_free(nw[i]);
	eng_session_free(old);
	eng_model_free(m);
}

// ---- a long prompt does not stop running replies

static void test_long_prefill(void)
{
	struct eng_model *m = load(4200, 0, 16, true);
	struct eng_session *r[8], *big;
	struct eng_session_info in;
	int gen0[8], steps = 0, starved = 0;

	for (int i = 0; i < 8; i++) {
		r[i] = session(m);
		submit(r[i], 0, 20, 100 + i, 4000);
	}
	for (int i = 0; i < 20; i++)
		eng_step(m); /* the 8 are generating now */
	big = session(m);
	submit(big, 0, 4000, 7, 1);
	for (int i = 0; i < 8; i++) {
		eng_session_info(r[i], &in);
		gen0[i] = in.last_gen_tokens;
	}
	for (;;) {
		int before[8];

		eng_session_info(big, &in);
		if (in.state != ENG_STATE_QUEUED && in.state != ENG_STATE_PREFILL)
			break;
		for (int i = 0; i < 8; i++) {
			struct eng_session_info ri;

			eng_session_info(r[i], &ri);
			before[i] = ri.last_gen_tokens;
		}
		eng_step(m);
		steps++;
		for (int i = 0; i < 8; i++) {
			struct eng_session_info ri;

			eng_session_info(r[i], &ri);
			starved += ri.last_gen_tokens != before[i] + 1;
		}
	}
	eng_session_info(big, &in);
	CHECK(in.last_prefill_tokens == 4000, "prefilled %d of 4000", in.last_prefill_tokens);
	CHECK(steps >= 4000 / 512, "a 4000-token prompt in %d steps: not chunked", steps);
	CHECK(starved == 0, "%d reply-steps without a token during the long prefill", starved);
	for (int i = 0; i < 8; i++) {
		eng_session_info(r[i], &in);
		CHECK(in.last_gen_tokens - gen0[i] == steps, "reply %d: %d tokens in %d steps", i,
		      in.last_gen_tokens - gen0[i], steps);
	}
	printf("long prefill: 4000 tokens in %d steps, each of 8 replies got %d tokens meanwhile\n", steps, steps);
	for (int i = 0; i < 8; i++)
		eng_session_free(r[i]);
	eng_session_free(big);
	eng_model_free(m);
}

int main(void)
{
	const char *shared = getenv("PROMPTFS_SHARED");

	snprintf(model_path, sizeof(model_path), "%s/models/stories260K.gguf", shared ? shared : "../shared");
	if (access(model_path, R_OK)) {
		fprintf(stderr, "FAIL: %s not found (set PROMPTFS_SHARED)\n", model_path);
		return 1;
	}
	test_bit_identical();
	test_thousand();
	test_late_joiner();
	test_newcomers();
	test_eviction();
	test_long_prefill();
	return check_summary();
}
