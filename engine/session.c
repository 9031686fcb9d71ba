/*
 * session.c — sessions (engine.h): create and free, submit a user turn
 * (queued while busy), reset, cancel, replay a journaled turn, report
 * status, read the reply.  How a turn becomes tokens is in turn.c.
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

// ---- small helpers

static void lock(struct eng_model *m)
{
	pthread_mutex_lock(&m->lock);
}

static void unlock(struct eng_model *m)
{
	pthread_mutex_unlock(&m->lock);
}

static void turn_clear(struct eng_turn *t)
{
	free(t->user);
	free(t->reply);
	eng_sb_free(&t->tokv);
	memset(t, 0, sizeof(*t));
}

int eng_turn_append_reply(struct eng_turn *t, const char *s, size_t n)
{
	if (!n)
		return 0;
	if (t->rlen + n + 1 > t->rcap) {
		size_t cap = t->rcap ? t->rcap : 256;
		char *r;

		while (cap < t->rlen + n + 1)
			cap *= 2;
		r = realloc(t->reply, cap);
		if (!r)
			return -ENOMEM;
		t->reply = r;
		t->rcap = cap;
	}
	memcpy(t->reply + t->rlen, s, n);
	t->rlen += n;
	t->reply[t->rlen] = 0;
	return 0;
}

bool eng_session_has_work_locked(const struct eng_session *s)
{
	if (s->dead)
		return false;
	if (s->cur >= 0)
		return true;
	return s->n_turns > 0 && !s->turns[s->n_turns - 1].started;
}

bool eng_model_has_work_locked(const struct eng_model *m)
{
	for (const struct eng_session *s = m->sessions; s; s = s->next)
		if (eng_session_has_work_locked(s))
			return true;
	return false;
}

// ---- public API

int eng_session_init(struct eng_model *m, const struct eng_settings *st, struct eng_session **out)
{
	struct eng_session *s = calloc(1, sizeof(*s));
	int rc = -ENOMEM;

	if (!s)
		return -ENOMEM;
	s->m = m;
	s->cur = -1;
	s->refs = 1;
	s->tokens = malloc(sizeof(*s->tokens) * (size_t)(m->n_ctx + 1));
	s->pages = malloc(sizeof(*s->pages) * (size_t)m->max_pages_seq);
	s->wheld = calloc((size_t)m->max_pages_seq, sizeof(*s->wheld));
	if (!s->tokens || !s->pages || !s->wheld)
		goto fail;
	if (st)
		rc = eng_settings_copy(&s->st, st);
	else {
		eng_settings_default(m, &s->st);
		rc = 0;
	}
	if (rc < 0)
		goto fail;
	lock(m);
	if (m->n_sessions >= m->p.max_sessions) {
		unlock(m);
		LOG_INFO("too many sessions (%d, the limit)", m->p.max_sessions);
		rc = -ENOSPC;
		goto fail_settings;
	}
	s->next = m->sessions;
	if (m->sessions)
		m->sessions->prev = s;
	m->sessions = s;
	m->n_sessions++;
	unlock(m);
	*out = s;
	return 0;

fail_settings:
	eng_settings_free(&s->st);
fail:
	free(s->tokens);
	free(s->pages);
	free(s->wheld);
	free(s);
	return rc;
}

/* Drops the conversation (lock held); settings stay. */
static void clear_conversation(struct eng_session *s)
{
	for (int i = 0; i < s->n_turns; i++)
		turn_clear(&s->turns[i]);
	s->n_turns = 0;
	s->cur = -1;
	s->dropped = 0;
	s->cancel = false;
	s->epoch++;
	s->n_past = 0;
	s->draws = 0;
	s->n_hold = 0;
	s->ignore_eog = false;
	s->evicted = false;
	if (s->offer) {
		eng_kv_image_free(s->offer); /* no pages held: the engine lock may be held */
		free(s->offer);
		s->offer = NULL;
	}
	memset(&s->detok, 0, sizeof(s->detok));
	free(s->conv_system);
	s->conv_system = NULL;
	eng_pages_release_locked(s->m, s);
}

void eng_session_unref_locked(struct eng_session *s)
{
	if (--s->refs > 0)
		return;
	clear_conversation(s);
	free(s->turns);
	free(s->tokens);
	free(s->pages);
	free(s->wheld);
	free(s->hold);
	eng_grammar_state_free(s->gstate);
	eng_grammar_unref(s->grammar);
	eng_settings_free(&s->st);
	free(s);
}

void eng_session_free(struct eng_session *s)
{
	struct eng_model *m;

	if (!s)
		return;
	m = s->m;
	lock(m);
	clear_conversation(s);
	s->dead = true;
	if (s->prev)
		s->prev->next = s->next;
	else
		m->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	m->n_sessions--;
	eng_session_unref_locked(s);
	unlock(m);
}

void eng_session_set_user(struct eng_session *s, void *user)
{
	s->user = user;
}

void *eng_session_get_user(const struct eng_session *s)
{
	return s->user;
}

int eng_session_set_settings(struct eng_session *s, const struct eng_settings *st)
{
	struct eng_settings n, old;
	int rc = eng_settings_copy(&n, st);

	if (rc < 0)
		return rc;
	lock(s->m);
	old = s->st;
	s->st = n;
	unlock(s->m);
	eng_settings_free(&old);
	return 0;
}

int eng_session_get_settings(struct eng_session *s, struct eng_settings *out)
{
	int rc;

	lock(s->m);
	rc = eng_settings_copy(out, &s->st);
	unlock(s->m);
	return rc;
}

static int push_turn(struct eng_session *s, const char *text, size_t len)
{
	struct eng_turn *t;

	if (s->n_turns == s->cap_turns) {
		int cap = s->cap_turns ? 2 * s->cap_turns : 8;
		struct eng_turn *v = realloc(s->turns, sizeof(*v) * (size_t)cap);

		if (!v)
			return -ENOMEM;
		s->turns = v;
		s->cap_turns = cap;
	}
	t = &s->turns[s->n_turns];
	memset(t, 0, sizeof(*t));
	t->user = malloc(len + 1);
	if (!t->user)
		return -ENOMEM;
	memcpy(t->user, text, len);
	t->user[len] = 0;
	t->ulen = len;
	s->n_turns++;
	return 0;
}

static void pop_turn(struct eng_session *s)
{
	turn_clear(&s->turns[--s->n_turns]);
}

/* Busy session: a lower bound of what the turn needs, checked now; the
 * exact check happens when the turn starts. */
static int queued_fits(struct eng_session *s, const char *text, size_t len)
{
	int32_t *ids = NULL;
	size_t n = 0;
	int rc = eng_tokenize(s->m->tok, text, len, 0, &ids, &n);
	int need = s->n_past + (int)n + 1;

	free(ids);
	/* the turns queued ahead need at least their text and one reply token */
	for (int i = 0; rc == 0 && i < s->n_turns; i++) {
		if (s->turns[i].started)
			continue;
		rc = eng_tokenize(s->m->tok, s->turns[i].user, s->turns[i].ulen, 0, &ids, &n);
		free(ids);
		ids = NULL;
		need += (int)n + 1;
	}
	if (rc < 0)
		return rc;
	if (need > eng_model_kv_limit(s->m)) {
		LOG_INFO("queued turn refused: at least %d tokens with the turns ahead, room for %d", need,
			 eng_model_kv_limit(s->m));
		return -EFBIG;
	}
	return 0;
}

int eng_session_submit(struct eng_session *s, const char *text, size_t len)
{
	struct eng_model *m = s->m;
	bool busy;
	int rc;

	if (!text || !len)
		return -EINVAL;
	lock(m);
	busy = eng_session_has_work_locked(s);
	s->dropped = 0;
	rc = busy ? queued_fits(s, text, len) : 0;
	if (rc == 0)
		rc = push_turn(s, text, len);
	if (rc == 0 && !busy) {
		rc = eng_turn_start_locked(s); /* on failure the turn is gone again */
		if (rc < 0)
			s->dropped = 0;    /* the caller reports it */
	}
	if (rc == 0)
		pthread_cond_signal(&m->work);
	unlock(m);
	return rc;
}

int eng_session_submit_tokens(struct eng_session *s, const int32_t *tokens, int n, int max_tokens,
                              bool ignore_eog)
{
	struct eng_model *m = s->m;
	struct eng_turn *t;
	int rc;

	if (n <= 0)
		return -EINVAL;
	lock(m);
	if (eng_session_has_work_locked(s)) {
		rc = -EBUSY;
	} else if (s->n_past + n + 1 > m->n_ctx) {
		rc = -EFBIG;
	} else if ((rc = push_turn(s, "", 0)) == 0) {
		t = &s->turns[s->n_turns - 1];
		t->mode = ENG_MODE_RAW;
		t->started = true;
		t->n_prompt = n;
		t->n_keep = s->n_past;
		eng_turn_apply_tokens(s, tokens, n, s->n_past);
		s->cur = s->n_turns - 1;
		s->phase = PHASE_QUEUED;
		s->cancel = false;
		s->seed = s->st.seed >= 0 ? (uint64_t)s->st.seed : eng_random_seed();
		s->st.max_tokens = max_tokens;
		s->ignore_eog = ignore_eog;
		s->arrival = ++m->n_arrivals; /* as eng_turn_start_locked: fairness order */
		memset(&s->detok, 0, sizeof(s->detok));
		s->n_hold = 0;
		m->stats.tokens_in += (uint64_t)n;
		pthread_cond_signal(&m->work);
	}
	unlock(m);
	return rc;
}

void eng_session_set_ignore_eog(struct eng_session *s)
{
	lock(s->m);
	if (s->n_turns > 0 && !s->turns[s->n_turns - 1].finished)
		s->ignore_eog = true;
	unlock(s->m);
}

void eng_session_reset(struct eng_session *s)
{
	lock(s->m);
	clear_conversation(s);
	unlock(s->m);
}

void eng_session_evict(struct eng_session *s)
{
	lock(s->m);
	if (!s->in_batch && s->cur < 0) {
		s->evicted = s->n_cached > 0;
		eng_pages_release_locked(s->m, s);
		s->m->stats.evictions++;
	}
	unlock(s->m);
}

void eng_session_cancel(struct eng_session *s)
{
	lock(s->m);
	if (s->cur >= 0) {
		s->cancel = true;
		pthread_cond_signal(&s->m->work);
	}
	unlock(s->m);
}

int eng_session_restore_turn(struct eng_session *s, const char *user, size_t ulen,
                             const char *reply, size_t rlen)
{
	struct eng_model *m = s->m;
	int32_t *v = NULL;
	int n = 0, keep = 0, rc;
	struct eng_turn *t;

	if (!user || !ulen)
		return -EINVAL;
	lock(m);
	if (eng_session_has_work_locked(s)) {
		rc = -EBUSY;
		goto out;
	}
	rc = push_turn(s, user, ulen);
	if (rc < 0)
		goto out;
	t = &s->turns[s->n_turns - 1];
	t->mode = eng_effective_mode(s);
	rc = eng_turn_tokens(s, s->n_turns - 1, reply, rlen, &v, &n, &keep);
	if (rc == 0)
		rc = eng_turn_append_reply(t, reply ? reply : "", reply ? rlen : 0);
	if (rc < 0) {
		free(v);
		pop_turn(s);
		goto out;
	}
	if (s->n_past == 0)
		eng_conv_set_system(s, t->mode);
	eng_turn_apply_tokens(s, v, n, keep);
	free(v);
	t->n_keep = keep;
	t->started = t->finished = true;
	t->stop = ENG_STOP_EOG;
	t->n_prompt = n;
	t->n_end = s->n_past;
	t->draws_end = s->draws;
out:
	unlock(m);
	return rc;
}

// ---- forks

static int copy_turn(struct eng_turn *d, const struct eng_turn *t)
{
	*d = *t;
	memset(&d->tokv, 0, sizeof(d->tokv));
	if (t->tokv.len)
		eng_sb_add(&d->tokv, t->tokv.p, t->tokv.len);
	if (d->tokv.oom) {
		memset(d, 0, sizeof(*d));
		return -ENOMEM;
	}
	d->user = malloc(t->ulen + 1);
	d->reply = malloc(t->rlen + 1);
	d->rcap = t->rlen + 1;
	if (!d->user || !d->reply) {
		free(d->user);
		free(d->reply);
		eng_sb_free(&d->tokv);
		memset(d, 0, sizeof(*d));
		return -ENOMEM;
	}
	memcpy(d->user, t->user, t->ulen + 1);
	if (t->rlen)
		memcpy(d->reply, t->reply, t->rlen);
	d->reply[t->rlen] = 0;
	return 0;
}

/* Lock held: the finished turns of src that lead its list. */
static int finished_turns(const struct eng_session *s)
{
	int n = 0;

	while (n < s->n_turns && s->turns[n].finished && n != s->cur)
		n++;
	return n;
}

/* Lock held; dst has been cleared.  Copies turns, tokens, system, pages. */
static int fork_locked(struct eng_session *dst, const struct eng_session *src, int n)
{
	struct eng_model *m = src->m;
	struct eng_turn *v = n ? malloc(sizeof(*v) * (size_t)n) : NULL;
	int end = n ? src->turns[n - 1].n_end : 0, cached, np;

	if (n && !v)
		return -ENOMEM;
	/* raw mode: a later turn may have rewritten the history past its keep
	 * point; dst's next turn re-tokenises the text and prefills the rest */
	for (int i = n; i < src->n_turns; i++)
		if (src->turns[i].started && src->turns[i].n_keep < end)
			end = src->turns[i].n_keep;
	for (int i = 0; i < n; i++)
		if (copy_turn(&v[i], &src->turns[i]) < 0) {
			while (i--)
				turn_clear(&v[i]);
			free(v);
			return -ENOMEM;
		}
	if (src->conv_system && n && !(dst->conv_system = strdup(src->conv_system))) {
		for (int i = 0; i < n; i++)
			turn_clear(&v[i]);
		free(v);
		return -ENOMEM;
	}
	free(dst->turns);
	dst->turns = v;
	dst->n_turns = dst->cap_turns = n;
	memcpy(dst->tokens, src->tokens, sizeof(*dst->tokens) * (size_t)end);
	dst->n_past = end;
	dst->draws = n ? src->turns[n - 1].draws_end : 0;
	/* the KV cache up to the fork point: pages shared, not copied */
	cached = src->n_cached < end ? src->n_cached : end;
	np = (cached + ENG_KV_PAGE - 1) / ENG_KV_PAGE;
	for (int i = 0; i < np; i++) {
		eng_page_retain_locked(m, src->pages[i]);
		dst->pages[i] = src->pages[i];
	}
	dst->n_pages = np;
	dst->n_cached = cached;
	/* the window parts too, while they are there (a fork at an earlier
	 * turn may find them reused: then dst rebuilds its cache) */
	eng_window_ready_locked(m, dst);
	return 0;
}

int eng_session_fork(struct eng_session *dst, struct eng_session *src, int n_turns)
{
	struct eng_model *m = src->m;
	int rc = 0, nf;

	if (dst == src || dst->m != m) {
		LOG_ERR("fork: a session cannot be forked onto itself or across models");
		return -EINVAL;
	}
	lock(m);
	nf = finished_turns(src);
	if (n_turns < 0)
		n_turns = nf;
	if (n_turns > nf) {
		LOG_ERR("fork: turn %d asked, the source has %d finished turns", n_turns, nf);
		rc = -EINVAL;
		goto out;
	}
	clear_conversation(dst);
	rc = fork_locked(dst, src, n_turns);
	if (rc == 0)
		LOG_DEBUG("fork: %d turns, %d tokens, %d cached in %d shared pages", n_turns, dst->n_past,
		          dst->n_cached, dst->n_pages);
out:
	unlock(m);
	return rc;
}

// ---- status and reading

static const char *stop_name(enum eng_stop_reason r)
{
	switch (r) {
	case ENG_STOP_EOG: return "done (end of turn)";
	case ENG_STOP_STRING: return "done (stop string)";
	case ENG_STOP_MAX_TOKENS: return "done (max_tokens)";
	case ENG_STOP_CONTEXT: return "done (context full)";
	case ENG_STOP_CANCEL: return "cancelled";
	default: return "done";
	}
}

static const char *error_text(int err)
{
	switch (err) {
	case -EFBIG: return "does not fit the context or the KV pool (EFBIG)";
	case -ENOSPC: return "KV cache full (ENOSPC)";
	case -ENOMEM: return "out of memory (ENOMEM)";
	case -EIO: return "device failure (EIO)";
	default: return "failed";
	}
}

void eng_session_info(struct eng_session *s, struct eng_session_info *o)
{
	struct eng_model *m = s->m;
	const struct eng_turn *t;

	memset(o, 0, sizeof(*o));
	lock(m);
	o->n_ctx = m->n_ctx;
	o->n_past = s->n_past;
	o->n_cached = s->n_cached;
	o->n_turns = s->n_turns;
	o->total_prefill_tokens = s->total_prefill;
	o->total_gen_tokens = s->total_gen;
	if (s->n_turns == 0 && !s->dropped) {
		o->state = ENG_STATE_EMPTY;
		snprintf(o->status, sizeof(o->status), "idle");
		goto out;
	}
	if (s->dropped && (s->n_turns == 0 || s->turns[s->n_turns - 1].finished)) {
		/* the latest turn was dropped before it ran: the reply is the one before */
		o->state = s->n_turns ? ENG_STATE_DONE : ENG_STATE_EMPTY;
		o->error = s->dropped;
		if (s->n_turns)
			o->reply_bytes = s->turns[s->n_turns - 1].rlen;
		snprintf(o->status, sizeof(o->status), "error: a queued turn was dropped: %s",
		         error_text(s->dropped));
		goto out;
	}
	t = &s->turns[s->n_turns - 1];
	o->reply_bytes = t->rlen;
	o->tokens_bytes = t->tokv.len;
	o->last_prompt_tokens = t->n_prompt;
	o->last_prefill_tokens = t->n_prefill;
	o->last_gen_tokens = t->n_gen;
	o->last_cached_tokens = t->n_shared;
	o->last_prefill_tps = t->prefill_s > 0 ? t->n_prefill / t->prefill_s : 0;
	o->last_decode_tps = t->decode_s > 0 ? t->n_gen / t->decode_s : 0;
	o->stop = t->stop;
	o->error = t->error;
	if (!t->started) {
		o->state = ENG_STATE_QUEUED;
		snprintf(o->status, sizeof(o->status), "queued");
	} else if (!t->finished) {
		o->state = s->phase == PHASE_QUEUED ? ENG_STATE_QUEUED
		           : s->phase == PHASE_PREFILL ? ENG_STATE_PREFILL : ENG_STATE_GENERATING;
		snprintf(o->status, sizeof(o->status), "%s",
		         o->state == ENG_STATE_QUEUED ? "queued" : o->state == ENG_STATE_PREFILL ? "prefill" : "generating");
	} else if (t->error) {
		o->state = ENG_STATE_ERROR;
		if (t->error == -EIO && m->weights_lost)
			snprintf(o->status, sizeof(o->status), "error: %s (EIO); remount to load it again",
				 m->weights_why);
		else
			snprintf(o->status, sizeof(o->status), "error: %s", error_text(t->error));
	} else {
		o->state = ENG_STATE_DONE;
		snprintf(o->status, sizeof(o->status), "%s", stop_name(t->stop));
	}
out:
	unlock(m);
}

size_t eng_session_read_reply(struct eng_session *s, uint64_t off, char *buf, size_t n, bool *final)
{
	size_t got = 0;

	lock(s->m);
	if (s->n_turns == 0) {
		if (final)
			*final = true;
	} else {
		const struct eng_turn *t = &s->turns[s->n_turns - 1];

		if (off < t->rlen) {
			got = t->rlen - off < n ? t->rlen - (size_t)off : n;
			memcpy(buf, t->reply + off, got);
		}
		if (final)
			*final = t->finished;
	}
	unlock(s->m);
	return got;
}

int eng_session_tokens(struct eng_session *s, int32_t **out, int *n)
{
	int32_t *v;

	lock(s->m);
	v = malloc(sizeof(*v) * (size_t)(s->n_past + 1));
	if (v) {
		memcpy(v, s->tokens, sizeof(*v) * (size_t)s->n_past);
		*n = s->n_past;
	}
	unlock(s->m);
	*out = v;
	return v ? 0 : -ENOMEM;
}
