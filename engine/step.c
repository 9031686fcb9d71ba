/*
 * step.c — the scheduler: eng_step() runs one forward pass over every
 * session with work, then samples, detokenises and appends reply text.
 *
 * One step:
 *   1. (lock) start queued turns of idle sessions, end cancelled turns;
 *      pick the work: every session whose history has tokens not yet in its
 *      KV cache — one token for a generating session (decode first, least
 *      recently served first), then prefill chunks, max_batch_tokens in all;
 *      give each the KV pages it needs (from the free list, else by
 *      evicting the least recently used idle session); copy tokens, page
 *      tables and penalty windows into the step arena.
 *   2. (no lock) backend forward over the batch; the backend samples one
 *      token per sequence (sampler.h semantics) from its last row.
 *   3. (lock) for each sequence whose session still exists in the same
 *      epoch: mark its tokens cached; if the chunk ended the history, take
 *      the sampled token: end of generation, or append it, its text (UTF-8
 *      safe, stop strings held back until resolved), and check max_tokens
 *      and the context limit.
 *   4. (no lock) notify the sessions whose reply grew or whose turn ended.
 */
#define _GNU_SOURCE /* memmem */
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../gguf/log.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- reply text and stop strings

static int hold_reserve(struct eng_session *s, size_t n)
{
	if (n > s->cap_hold) {
		size_t cap = s->cap_hold ? s->cap_hold : 256;
		char *h;

		while (cap < n)
			cap *= 2;
		h = realloc(s->hold, cap);
		if (!h)
			return -ENOMEM;
		s->hold = h;
		s->cap_hold = cap;
	}
	return 0;
}

/* Adds text to the reply through the stop-string filter: text that could
 * still become a stop string is held back.  Returns 1 when a stop string
 * matched (the reply ends before it), 0 otherwise, -ENOMEM. */
static int commit_text(struct eng_session *s, const char *text, size_t n, bool final)
{
	struct eng_turn *t = &s->turns[s->cur];
	const struct eng_settings *st = &s->st;
	size_t len, cut = (size_t)-1, keep = 0;
	int rc;

	if (st->n_stop == 0 && s->n_hold == 0)
		return eng_turn_append_reply(t, text, n);
	if ((rc = hold_reserve(s, s->n_hold + n + 1)) < 0)
		return rc;
	memcpy(s->hold + s->n_hold, text, n);
	len = s->n_hold + n;
	s->hold[len] = 0;
	for (int i = 0; i < st->n_stop; i++) {
		const char *p = memmem(s->hold, len, st->stop[i], strlen(st->stop[i]));

		if (p && (size_t)(p - s->hold) < cut)
			cut = (size_t)(p - s->hold);
	}
	if (cut != (size_t)-1) {
		s->n_hold = 0;
		rc = eng_turn_append_reply(t, s->hold, cut);
		return rc < 0 ? rc : 1;
	}
	if (!final) {
		/* the longest suffix that is a proper prefix of a stop string */
		for (int i = 0; i < st->n_stop; i++) {
			size_t sl = strlen(st->stop[i]);

			for (size_t k = sl - 1 < len ? sl - 1 : len; k > keep; k--)
				if (!memcmp(s->hold + len - k, st->stop[i], k)) {
					keep = k;
					break;
				}
		}
	}
	rc = eng_turn_append_reply(t, s->hold, len - keep);
	memmove(s->hold, s->hold + len - keep, keep);
	s->n_hold = keep;
	return rc;
}

void eng_event_queue_locked(struct eng_session *s, enum eng_event ev)
{
	struct step_arena *a = &s->m->arena;

	if (a->n_events >= 4 * s->m->p.max_sessions) {
		LOG_WARN("more than %d engine events in one step: one dropped", a->n_events);
		return;
	}
	s->refs++;
	a->events[a->n_events++] = (struct step_event){ s, ev };
}

void eng_turn_finish_locked(struct eng_session *s, enum eng_stop_reason why, int err)
{
	struct eng_turn *t;
	char tail[16];
	size_t n;

	if (s->cur < 0)
		return;
	t = &s->turns[s->cur];
	if (why != ENG_STOP_STRING) {
		n = eng_detok_flush(&s->detok, tail);
		commit_text(s, tail, n, true);
	}
	s->n_hold = 0;
	t->finished = true;
	t->stop = err ? ENG_STOP_NONE : why;
	t->error = err;
	t->n_end = s->n_past;
	t->draws_end = s->draws;
	eng_event_queue_locked(s, err ? ENG_EVENT_ERROR : why == ENG_STOP_CONTEXT ? ENG_EVENT_CONTEXT_FULL
	                       : why == ENG_STOP_CANCEL ? ENG_EVENT_CANCELLED : ENG_EVENT_DONE);
	s->cur = -1;
	s->cancel = false;
	s->ignore_eog = false;
}

/* The sampled token of a session whose history is all cached now (lp:
 * its log-probabilities when the token view asked for them). */
static void take_token(struct eng_model *m, struct eng_session *s, int32_t tok, const struct eng_sample_lp *lp)
{
	struct eng_turn *t = &s->turns[s->cur];
	char piece[264], text[264 + 8];
	size_t n;
	int len, rc;

	s->draws++;
	if (eng_token_is_eog(m->tok, tok) && !s->ignore_eog) {
		eng_turn_finish_locked(s, ENG_STOP_EOG, 0);
		return;
	}
	if (s->grammar && s->gstate && s->gstate_serial == s->turn_serial &&
	    eng_grammar_accept_token(m->gvocab, s->gstate, tok) < 0) {
		/* the sampler only returns allowed tokens: a broken invariant */
		LOG_ERR("sampled token %d is not allowed by the session's grammar", tok);
		eng_turn_finish_locked(s, ENG_STOP_NONE, -EIO);
		return;
	}
	s->tokens[s->n_past++] = tok;
	t->n_gen++;
	s->total_gen++;
	m->stats.tokens_out++;
	eng_tokview_add_locked(s, t, tok, lp);
	len = eng_token_piece(m->tok, tok, false, piece, sizeof(piece) - 8);
	n = len > 0 ? eng_detok_push(&s->detok, piece, (size_t)len, text) : 0;
	rc = commit_text(s, text, n, false);
	if (rc < 0)
		eng_turn_finish_locked(s, ENG_STOP_NONE, rc);
	else if (rc == 1)
		eng_turn_finish_locked(s, ENG_STOP_STRING, 0);
	else if (s->st.max_tokens > 0 && t->n_gen >= s->st.max_tokens)
		eng_turn_finish_locked(s, ENG_STOP_MAX_TOKENS, 0);
	else if (s->n_past >= m->n_ctx)
		eng_turn_finish_locked(s, ENG_STOP_CONTEXT, 0);
}

// ---- pages

/* Whether letting go of v's pages frees one (it is the only holder of some
 * page; pages shared with forks or other sessions' prefixes stay). */
static bool frees_pages(const struct eng_model *m, const struct eng_session *v)
{
	for (int i = 0; i < v->n_pages; i++)
		if (m->page_refs[v->pages[i]] == 1)
			return true;
	return false;
}

/* The least recently used session that holds pages and has no work; one
 * whose pages would come free first (an idle session that holds only
 * shared pages frees nothing). */
static struct eng_session *lru_idle(struct eng_model *m)
{
	struct eng_session *best = NULL;
	bool best_frees = false;

	for (struct eng_session *s = m->sessions; s; s = s->next) {
		bool frees;

		if (s->n_pages == 0 || s->cur >= 0 || s->in_batch)
			continue;
		frees = frees_pages(m, s);
		if (!best || (frees && !best_frees) || (frees == best_frees && s->lru < best->lru)) {
			best = s;
			best_frees = frees;
		}
	}
	return best;
}

/* The busy session that started its turn last, after s, holding pages it
 * does not use in this step: the one a full pool preempts for s (one
 * whose pages would come free first). */
static struct eng_session *youngest_busy(struct eng_model *m, const struct eng_session *s)
{
	struct eng_session *best = NULL;
	bool best_frees = false;

	for (struct eng_session *v = m->sessions; v; v = v->next) {
		bool frees;

		if (v == s || v->cur < 0 || v->n_pages == 0 || v->in_batch || v->arrival <= s->arrival)
			continue;
		frees = frees_pages(m, v);
		if (!best || (frees && !best_frees) || (frees == best_frees && v->arrival > best->arrival)) {
			best = v;
			best_frees = frees;
		}
	}
	return best;
}

/* Frees pages until one is free: evicts idle sessions, least recently used
 * first, then, for a turn s (NULL: idle sessions only), preempts busy
 * sessions whose turns started after s's (recompute preemption, first come
 * first served: they are rebuilt from their token history when they run
 * again, with the same text).  Pages may be shared with a fork, so one
 * eviction may free nothing.  0, or -ENOSPC: s waits. */
static int make_room_for(struct eng_model *m, const struct eng_session *s)
{
	while (m->n_free == 0 || eng_window_n_free(m) == 0) {
		struct eng_session *v = lru_idle(m);
		bool busy = false;

		if (!v && s && (v = youngest_busy(m, s)))
			busy = true;
		if (!v)
			return -ENOSPC;
		LOG_DEBUG("%s %d KV pages (%d tokens) of %s session", busy ? "preempting" : "evicting",
			  v->n_pages, v->n_cached, busy ? "a younger busy" : "an idle");
		if (v->n_cached > 0 && !v->evicted)
			eng_event_queue_locked(v, busy ? ENG_EVENT_PREEMPTED : ENG_EVENT_EVICTED);
		v->evicted = v->evicted || (!busy && v->n_cached > 0);
		eng_pages_release_locked(m, v);
		m->stats.evictions++;
		if (busy)
			m->stats.preemptions++;
	}
	return 0;
}

static int make_room(struct eng_model *m)
{
	return make_room_for(m, NULL);
}

/* Gives s pages for positions [0, n), each with a window page when the
 * model has sliding-window layers.  0, or -ENOSPC: s waits (its turn goes
 * on in a later step). */
static int ensure_pages(struct eng_model *m, struct eng_session *s, int n)
{
	int need = (n + ENG_KV_PAGE - 1) / ENG_KV_PAGE;

	while (s->n_pages < need) {
		int rc = make_room_for(m, s);

		if (rc < 0)
			return rc;
		s->pages[s->n_pages] = eng_page_alloc_locked(m);
		s->wheld[s->n_pages] = false;
		rc = eng_window_give_locked(m, s, s->n_pages);
		PF_ASSERT(rc == 0); /* make_room_for left one of each free */
		s->n_pages++;
	}
	return 0;
}

/* Copy-on-write: the pages that positions [from, to) fall in become s's own
 * before the pass writes them.  Only the page holding `from` has content
 * to keep (its slots below from).  0 / -ENOSPC / -EIO. */
static int own_pages(struct eng_model *m, struct eng_session *s, int from, int to)
{
	int last = (to - 1) / ENG_KV_PAGE, rc;

	for (int i = from / ENG_KV_PAGE; i <= last && i < s->n_pages; i++) {
		if (!eng_page_shared_locked(m, s->pages[i])) {
			eng_prefix_drop_locked(m, s->pages[i]); /* its content changes: no longer that prefix */
			continue;
		}
		if ((rc = make_room_for(m, s)) < 0)
			return rc;
		rc = eng_page_unshare_locked(m, s, i, i == from / ENG_KV_PAGE ? from % ENG_KV_PAGE : 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

// ---- shared prefixes (prefix.c)

/* Whether a prefill chunk planned earlier in this step completes the page
 * named h. */
static bool page_pending(const struct step_arena *a, uint64_t h)
{
	for (int i = 0; i < a->n_pending; i++)
		if (a->pending[i] == h)
			return true;
	return false;
}

/* Puts the shared pages that hold s's next full pages into its page table
 * (s->n_cached at a page boundary; never the page holding s's last history
 * token, whose logits the pass must compute).  The page s held at that index
 * is let go.  Returns true when s's next page is being prefilled by another
 * sequence of this step: s waits one step and takes it then (prefilled once). */
/* Whether s would hold every window part a cache of its first k pages
 * needs if pages [i0, k) were found[] (window.c: always, without
 * sliding-window layers). */
static bool window_there(const struct eng_model *m, const struct eng_session *s, int i0, int k,
                         const int32_t *found)
{
	for (int j = eng_window_first(m, k * ENG_KV_PAGE); j < k; j++) {
		int32_t p = j >= i0 ? found[j - i0] : s->pages[j];

		if (!(j < i0 && s->wheld[j]) && !eng_window_has_locked(m, p))
			return false;
	}
	return true;
}

static bool share_prefix(struct eng_model *m, struct eng_session *s)
{
	struct eng_turn *t = &s->turns[s->cur];
	int i0 = s->n_cached / ENG_KV_PAGE, i = i0, k;
	int32_t *found = m->arena.found;
	bool wait = false;
	uint64_t h;

	if (s->n_cached % ENG_KV_PAGE || (i + 1) * ENG_KV_PAGE >= s->n_past)
		return false;
	h = eng_prefix_hash_to(s->tokens, i);
	for (; (i + 1) * ENG_KV_PAGE < s->n_past; i++) {
		const int32_t *tok = s->tokens + (size_t)i * ENG_KV_PAGE;

		h = eng_prefix_chain(h, tok);
		if ((found[i - i0] = eng_prefix_find_locked(m, h, tok)) < 0) {
			wait = page_pending(&m->arena, h);
			break;
		}
	}
	/* with sliding-window layers, only as far as the window's pages are
	 * still there (the pages past it need only the other layers) */
	for (k = i; k > i0 && !window_there(m, s, i0, k, found); k--)
		wait = false;
	for (i = i0; i < k; i++) {
		int32_t p = found[i - i0];

		if (i < s->n_pages && s->pages[i] != p) {
			eng_page_retain_locked(m, p);
			eng_window_drop_locked(m, s, i);
			eng_page_release_locked(m, s->pages[i]);
			s->pages[i] = p;
		} else if (i >= s->n_pages) {
			eng_page_retain_locked(m, p);
			s->wheld[s->n_pages] = false;
			s->pages[s->n_pages++] = p;
		}
		s->n_cached += ENG_KV_PAGE;
		t->n_shared += ENG_KV_PAGE;
		m->stats.prefill_saved += ENG_KV_PAGE;
	}
	if (k > i0)
		eng_window_ready_locked(m, s); /* takes what window_there found */
	return wait;
}

/* The prefix hashes of the pages that positions [from, to) of s complete:
 * pending for share_prefix in this step (plan), named in the table once
 * written (collect, page ids given). */
static void complete_pages(struct eng_model *m, struct eng_session *s, int from, int to, bool name)
{
	struct step_arena *a = &m->arena;
	int i = from / ENG_KV_PAGE, end = to / ENG_KV_PAGE;
	int cap = m->p.max_batch_tokens / ENG_KV_PAGE + m->p.max_sessions + 1;
	uint64_t h;

	if (!m->prefix.bucket || end <= i)
		return;
	h = eng_prefix_hash_to(s->tokens, i);
	for (; i < end; i++) {
		const int32_t *tok = s->tokens + (size_t)i * ENG_KV_PAGE;

		h = eng_prefix_chain(h, tok);
		if (name)
			eng_prefix_add_locked(m, s->pages[i], h, tok);
		else if (a->n_pending < cap)
			a->pending[a->n_pending++] = h;
	}
}

static int cmp_arrival(const void *pa, const void *pb)
{
	const struct eng_session *a = *(struct eng_session *const *)pa;
	const struct eng_session *b = *(struct eng_session *const *)pb;

	return a->arrival < b->arrival ? -1 : a->arrival > b->arrival;
}

// ---- planning

_Static_assert(sizeof(struct eng_logit_bias) == 2 * sizeof(int32_t), "bias entries travel in the int32 arena");

/* Tokens of the DRY window of a session with n tokens. */
static int dry_window(const struct eng_session *s, int n)
{
	const struct eng_settings *st = &s->st;

	if (st->dry_multiplier == 0.0f || st->dry_penalty_last_n == 0)
		return 0;
	return st->dry_penalty_last_n < 0 || st->dry_penalty_last_n > n ? n : st->dry_penalty_last_n;
}

/* The request's host-sampler steps for a chunk that ends the history
 * (lock held, engine thread): knobs, logit_bias, the DRY window (copied to
 * buf), the grammar state of the active turn.  Returns the ints of buf used. */
static size_t host_steps(struct eng_model *m, struct eng_session *s, struct eng_sample_req *r, int32_t *buf)
{
	const struct eng_settings *st = &s->st;
	int nd = dry_window(s, s->n_past);

	r->p.presence_penalty = st->presence_penalty;
	r->p.frequency_penalty = st->frequency_penalty;
	r->p.typical_p = st->typical_p;
	r->p.dry_multiplier = st->dry_multiplier;
	r->p.dry_base = st->dry_base;
	r->p.dry_allowed_length = st->dry_allowed_length;
	r->p.xtc_probability = st->xtc_probability;
	r->p.xtc_threshold = st->xtc_threshold;
	/* copied: settings may be replaced while the forward pass runs unlocked */
	if (st->n_bias) {
		memcpy(buf, st->bias, sizeof(*st->bias) * (size_t)st->n_bias);
		r->bias = (const struct eng_logit_bias *)buf;
		r->n_bias = st->n_bias;
		buf += 2 * st->n_bias;
	}
	if (nd > 0 && (r->dry_breaker = eng_model_dry_breakers_locked(m))) {
		memcpy(buf, s->tokens + s->n_past - nd, sizeof(*buf) * (size_t)nd);
		r->dry_hist = buf;
		r->n_dry_hist = nd;
	}
	if (s->grammar && (!s->gstate || s->gstate_serial != s->turn_serial)) {
		eng_grammar_state_free(s->gstate);
		s->gstate = NULL;
		if (eng_grammar_state_init(s->grammar, &s->gstate) == 0)
			s->gstate_serial = s->turn_serial;
	}
	if (s->grammar && s->gstate && (r->gvocab = eng_model_gvocab_locked(m)))
		r->grammar = s->gstate;
	return (size_t)nd + 2 * (size_t)st->n_bias;
}

static int arena_reserve(struct step_arena *a, size_t n)
{
	if (n > a->cap) {
		size_t cap = a->cap ? a->cap : 4096;
		int32_t *b;

		while (cap < n)
			cap *= 2;
		b = realloc(a->buf, sizeof(*b) * cap);
		if (!b)
			return -ENOMEM;
		a->buf = b;
		a->cap = cap;
	}
	return 0;
}

static int cmp_serve(const void *pa, const void *pb)
{
	const struct eng_session *a = *(struct eng_session *const *)pa;
	const struct eng_session *b = *(struct eng_session *const *)pb;
	int da = a->n_past - a->n_cached == 1, db = b->n_past - b->n_cached == 1;

	if (da != db)
		return db - da; /* decode first */
	if (da) /* replies: least recently served first (they rotate when more than a pass holds) */
		return a->lru < b->lru ? -1 : a->lru > b->lru;
	/* prompts: in the order their turns started, so no prompt waits behind newcomers */
	return a->arrival < b->arrival ? -1 : a->arrival > b->arrival;
}

/* Lock held.  Fills the arena; returns the number of sequences. */
static int plan(struct eng_model *m, int *n_notify)
{
	struct step_arena *a = &m->arena;
	struct eng_session **cand = a->notify + 2 * m->p.max_sessions; /* last third as scratch */
	int n_cand = 0, n = 0, budget = m->p.max_batch_tokens;
	uint64_t preempted;
	bool pressure = false; /* the pool ran out for a turn served before */
	size_t used = 0;

	for (struct eng_session *s = m->sessions; s; s = s->next) {
		if (s->cur < 0 && eng_session_has_work_locked(s) && eng_turn_start_locked(s) < 0) {
			a->notify[(*n_notify)++] = s; /* the queued turn failed (EFBIG) */
			eng_event_queue_locked(s, ENG_EVENT_ERROR); /* user.status says why */
		}
		if (s->cur >= 0 && m->weights_lost) {
			eng_turn_finish_locked(s, ENG_STOP_NONE, -EIO);
			a->notify[(*n_notify)++] = s;
			continue;
		}
		if (s->cur >= 0 && s->cancel) {
			eng_turn_finish_locked(s, ENG_STOP_CANCEL, 0);
			a->notify[(*n_notify)++] = s;
		}
		if (s->cur >= 0 && s->n_cached < s->n_past && n_cand < m->p.max_sessions) {
			eng_window_ready_locked(m, s); /* after a rewind, a fork: its window, or a rebuild */
			cand[n_cand++] = s;
		}
	}
	/* while turns wait for KV pages, the oldest turns are served first, so
	 * the pool goes to them and every waiting turn runs in arrival order */
	qsort(cand, (size_t)n_cand, sizeof(*cand), m->kv_waiting ? cmp_arrival : cmp_serve);
	m->kv_waiting = false;
	a->n_pending = 0;
	/* room: tokens + page tables + penalty windows */
	for (int i = 0; i < n_cand; i++)
		used += (size_t)(cand[i]->n_past - cand[i]->n_cached) + (size_t)m->max_pages_seq * (m->n_wpages ? 2 : 1) +
		        (size_t)cand[i]->st.repeat_last_n + (size_t)dry_window(cand[i], cand[i]->n_past) + 2 * (size_t)cand[i]->st.n_bias;
	if (arena_reserve(a, used) < 0)
		return -ENOMEM;
	used = 0;
	for (int i = 0; i < n_cand && budget > 0 && n < m->max_seqs; i++) {
		struct eng_session *s = cand[i];
		struct step_entry *e = &a->ent[n];
		struct eng_sample_req *r = &a->reqs[n];
		int chunk = s->n_past - s->n_cached, rc, nr;
		int32_t *tok, *pg, *wpg, *rec;

		if (s->offer) { /* its saved cache first: less to prefill */
			eng_kv_offer_attach_locked(s, make_room);
			chunk = s->n_past - s->n_cached;
		}
		if (pressure && (s->n_cached + (chunk < budget ? chunk : budget) + ENG_KV_PAGE - 1) / ENG_KV_PAGE >
		                s->n_pages) {
			/* a turn served before in this step waited or preempted for
			 * pages: this one waits too, taking nothing, or a preempted turn
			 * would take pages back at once (with shared prefixes that costs
			 * it little, so it would, and be preempted again) */
			m->kv_waiting = true;
			continue;
		}
		if (m->prefix.bucket && chunk > 1) { /* then pages other sessions hold for the same prefix */
			if (share_prefix(m, s))
				continue; /* its next page is being prefilled in this step */
			chunk = s->n_past - s->n_cached;
		}
		if (chunk > budget) {
			chunk = budget;
			/* a cut chunk ends on a page boundary where it can, so the
			 * next chunk may start with pages other sessions hold */
			if (m->prefix.bucket && (s->n_cached + chunk) / ENG_KV_PAGE * ENG_KV_PAGE > s->n_cached)
				chunk = (s->n_cached + chunk) / ENG_KV_PAGE * ENG_KV_PAGE - s->n_cached;
		}
		if (s->n_past + 1 > eng_model_kv_limit(m)) {
			/* alone it outgrew a pool smaller than one context */
			LOG_WARN("a conversation of %d tokens outgrew the KV pool of %d tokens (EFBIG)",
				 s->n_past, m->n_pages * ENG_KV_PAGE);
			eng_turn_finish_locked(s, ENG_STOP_NONE, -EFBIG);
			a->notify[(*n_notify)++] = s;
			continue;
		}
		preempted = m->stats.preemptions;
		rc = own_pages(m, s, s->n_cached, s->n_cached + chunk);
		if (rc == 0)
			rc = ensure_pages(m, s, s->n_cached + chunk);
		pressure = pressure || rc == -ENOSPC || m->stats.preemptions != preempted;
		if (rc == -ENOSPC && s->n_pages * ENG_KV_PAGE > s->n_cached &&
		    !eng_page_shared_locked(m, s->pages[s->n_cached / ENG_KV_PAGE])) {
			chunk = s->n_pages * ENG_KV_PAGE - s->n_cached; /* what fits; rest later */
			m->kv_waiting = true;
		} else if (rc == -ENOSPC) {
			m->kv_waiting = true; /* waits for pages; older turns go first */
			continue;
		} else if (rc < 0) {
			eng_turn_finish_locked(s, ENG_STOP_NONE, rc);
			a->notify[(*n_notify)++] = s;
			continue;
		}
		complete_pages(m, s, s->n_cached, s->n_cached + chunk, false);
		tok = a->buf + used;
		memcpy(tok, s->tokens + s->n_cached, sizeof(*tok) * (size_t)chunk);
		used += (size_t)chunk;
		pg = a->buf + used;
		memcpy(pg, s->pages, sizeof(*pg) * (size_t)s->n_pages);
		used += (size_t)m->max_pages_seq;
		wpg = NULL;
		if (m->n_wpages) {
			wpg = a->buf + used;
			eng_window_table_locked(m, s, wpg);
			used += (size_t)m->max_pages_seq;
		}
		nr = s->n_cached + chunk < s->st.repeat_last_n ? s->n_cached + chunk : s->st.repeat_last_n;
		rec = a->buf + used;
		memcpy(rec, s->tokens + s->n_cached + chunk - nr, sizeof(*rec) * (size_t)nr);
		used += (size_t)s->st.repeat_last_n;

		a->seqs[n] = (struct eng_batch_seq){ .tokens = tok, .n_tokens = chunk, .pos0 = s->n_cached,
		                                     .pages = pg, .wpages = wpg, .logits_all = false };
		memset(r, 0, sizeof(*r));
		r->p.temperature = s->st.temperature;
		r->p.top_k = s->st.top_k;
		r->p.top_p = s->st.top_p;
		r->p.min_p = s->st.min_p;
		r->p.repeat_penalty = s->st.repeat_penalty;
		r->seed = s->seed;
		r->draw = s->draws;
		r->recent = rec;
		r->n_recent = nr;
		if (s->n_cached + chunk == s->n_past)
			used += host_steps(m, s, r, a->buf + used);
		*e = (struct step_entry){ .s = s, .epoch = s->epoch, .n_tokens = chunk,
		                          .final = s->n_cached + chunk == s->n_past,
		                          .prefill = s->phase != PHASE_GENERATING || chunk > 1 };
		if (e->final)
			eng_tokview_request_locked(s, r, &e->lp);
		if (s->phase == PHASE_QUEUED)
			s->phase = PHASE_PREFILL;
		s->in_batch = true;
		s->refs++;
		s->lru = m->step_no;
		budget -= chunk;
		n++;
	}
	return n;
}

// ---- the step

/* Lock held: results of the forward pass (rc < 0: it failed). */
static void collect(struct eng_model *m, int n, int rc, double dt, int *n_notify)
{
	struct step_arena *a = &m->arena;
	bool any_prefill = false, any_decode = false;

	for (int i = 0; i < n; i++) {
		struct step_entry *e = &a->ent[i];
		struct eng_session *s = e->s;
		struct eng_turn *t;

		s->in_batch = false;
		if (s->dead || s->epoch != e->epoch || s->cur < 0) {
			eng_session_unref_locked(s);
			continue;
		}
		t = &s->turns[s->cur];
		if (rc < 0) {
			eng_turn_finish_locked(s, ENG_STOP_NONE, rc);
			a->notify[(*n_notify)++] = s; /* keeps the batch's reference */
			continue;
		}
		complete_pages(m, s, s->n_cached, s->n_cached + e->n_tokens, true);
		s->n_cached += e->n_tokens;
		eng_window_slide_locked(m, s); /* window parts no later query sees go back */
		if (e->prefill) {
			any_prefill = true;
			t->n_prefill += e->n_tokens;
			t->prefill_s += dt;
			s->total_prefill += (uint64_t)e->n_tokens;
			m->stats.prefill_tokens += (uint64_t)e->n_tokens;
		} else {
			any_decode = true;
			t->decode_s += dt;
			m->stats.decode_tokens++;
		}
		if (e->final && s->evicted) {
			s->evicted = false; /* its history is all cached again */
			eng_event_queue_locked(s, ENG_EVENT_RESTORED);
		}
		if (e->final) {
			size_t before = t->rlen, tv_before = t->tokv.len;

			s->phase = PHASE_GENERATING;
			take_token(m, s, a->out[i], a->reqs[i].lp);
			if (t->rlen == before && t->tokv.len == tv_before && s->cur >= 0) {
				eng_session_unref_locked(s); /* nothing new to tell */
				continue;
			}
		} else {
			eng_session_unref_locked(s); /* prefill goes on next step */
			continue;
		}
		a->notify[(*n_notify)++] = s;
	}
	if (any_prefill)
		m->stats.prefill_seconds += dt;
	if (any_decode)
		m->stats.decode_seconds += dt;
	if (n > 0 && rc == 0)
		m->stats.forward_passes++;
}

int eng_step(struct eng_model *m)
{
	struct step_arena *a = &m->arena;
	int n_notify = 0, n, rc = 0, n_extra;
	double t0, dt;

	pthread_mutex_lock(&m->lock);
	m->step_no++;
	n = plan(m, &n_notify);
	/* sessions notified from plan() hold no batch reference: take one */
	for (int i = 0; i < n_notify; i++)
		a->notify[i]->refs++;
	n_extra = n_notify;
	pthread_mutex_unlock(&m->lock);
	if (n < 0) {
		rc = n;
		n = 0;
		LOG_ERR("step arena: out of memory");
	}

	if (n > 0) {
		struct eng_batch b = { .n_seqs = n, .seqs = a->seqs };

		t0 = now_s();
		rc = m->ops->forward(m->be, &b, NULL, a->reqs, a->out);
		dt = now_s() - t0;
		if (rc < 0)
			LOG_ERR("forward pass over %d sequences failed: %d", n, rc);
		pthread_mutex_lock(&m->lock);
		if (!m->weights_lost && gguf_file_changed(m->g, m->weights_why, sizeof(m->weights_why))) {
			/* the pass may have read other weights: none of its tokens count */
			LOG_ERR("%s while mapped (--mmap): every turn that needs the weights now fails with "
				"EIO; finished replies and journals are kept; remount to load it again",
				m->weights_why);
			m->weights_lost = true;
		}
		if (m->weights_lost)
			rc = -EIO;
		collect(m, n, rc, dt, &n_notify);
		pthread_mutex_unlock(&m->lock);
	}

	for (int i = 0; i < a->n_events; i++)
		if (m->on_event && !a->events[i].s->dead)
			m->on_event(m->event_user, a->events[i].s, a->events[i].ev);
	for (int i = 0; i < n_notify; i++)
		if (m->notify && !a->notify[i]->dead)
			m->notify(m->notify_user, a->notify[i]);
	if (n_notify || a->n_events) {
		pthread_mutex_lock(&m->lock);
		for (int i = 0; i < n_notify; i++)
			eng_session_unref_locked(a->notify[i]);
		for (int i = 0; i < a->n_events; i++)
			eng_session_unref_locked(a->events[i].s);
		a->n_events = 0;
		pthread_mutex_unlock(&m->lock);
	}
	(void)n_extra;
	return rc < 0 ? rc : n + (n == 0 ? n_extra : 0);
}
