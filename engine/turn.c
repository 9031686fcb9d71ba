/*
 * turn.c — how a user turn becomes tokens, and starting a queued turn:
 *   chat mode: the template renders the turn (template.h) as segments; text
 *     runs are tokenised WITHOUT special-token parsing and each SPECIAL
 *     segment of the template's own markup becomes its token id, so
 *     "<|im_end|>" typed by a user stays plain text.  The first turn carries
 *     BOS (where the template or tokenizer wants it) and the system prompt;
 *     a later turn first closes the previous reply (its end-of-turn token
 *     was sampled but never entered the cache).  New tokens are appended.
 *   raw mode: the whole conversation text (every turn's text and reply, and
 *     the new text) is tokenised again, with BOS if the tokenizer wants it,
 *     and compared with the history: the common prefix is kept (its KV cache
 *     reused) and the rest replaces the history's tail.  So a raw session's
 *     tokens are always exactly the tokenisation of its text, as a fresh
 *     session given the concatenated text would have; usually only the new
 *     text is prefilled.
 * A turn that does not fit n_ctx (with one token to spare for the reply) is
 * refused with -EFBIG before anything changes.
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../gguf/log.h"

uint64_t eng_random_seed(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		v = eng_rng_mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uintptr_t)&v);
	}
	return v;
}

// ---- token building (chat mode)

struct tok_builder {
	const struct eng_tokenizer *tok;
	int32_t *v;
	int n, cap;
	char *text;       /* pending text run, tokenised at the next special or the end */
	size_t tlen, tcap;
};

static int tb_push(struct tok_builder *b, const int32_t *ids, size_t n)
{
	if (b->n + (int)n > b->cap) {
		int cap = b->cap ? b->cap : 64;
		int32_t *v;

		while (cap < b->n + (int)n)
			cap *= 2;
		v = realloc(b->v, sizeof(*v) * (size_t)cap);
		if (!v)
			return -ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	memcpy(b->v + b->n, ids, sizeof(*ids) * n);
	b->n += (int)n;
	return 0;
}

static int tb_flush(struct tok_builder *b)
{
	int32_t *ids = NULL;
	size_t n = 0;
	int rc;

	if (!b->tlen)
		return 0;
	rc = eng_tokenize(b->tok, b->text, b->tlen, 0, &ids, &n);
	if (rc == 0)
		rc = tb_push(b, ids, n);
	free(ids);
	b->tlen = 0;
	return rc;
}

static int tb_text(struct tok_builder *b, const char *s, size_t n)
{
	if (b->tlen + n > b->tcap) {
		size_t cap = b->tcap ? b->tcap : 256;
		char *t;

		while (cap < b->tlen + n)
			cap *= 2;
		t = realloc(b->text, cap);
		if (!t)
			return -ENOMEM;
		b->text = t;
		b->tcap = cap;
	}
	memcpy(b->text + b->tlen, s, n);
	b->tlen += n;
	return 0;
}

static int tb_emit(void *arg, enum eng_tmpl_seg kind, const char *s, size_t n)
{
	struct tok_builder *b = arg;

	if (kind == ENG_TMPL_SEG_SPECIAL && n < 128) {
		char name[128];
		int32_t id;
		int rc;

		memcpy(name, s, n);
		name[n] = 0;
		id = eng_token_find(b->tok, name);
		if (id >= 0) {
			rc = tb_flush(b);
			return rc ? rc : tb_push(b, &id, 1);
		}
		/* the vocabulary lacks it: plain text, as llama.cpp would see it */
	}
	return tb_text(b, s, n);
}

static void tb_free(struct tok_builder *b)
{
	free(b->v);
	free(b->text);
}

/* Tokens a chat turn appends to the history. */
static int chat_tokens(struct eng_session *s, const char *user, size_t ulen, int32_t **out, int *n)
{
	struct eng_model *m = s->m;
	struct tok_builder b = { .tok = m->tok };
	int rc;

	if (s->n_past == 0) {
		const char *sys = s->st.system;
		int32_t bos = eng_token_bos(m->tok);

		if (!m->tmpl.bos_first && eng_tokenizer_add_bos(m->tok) && bos >= 0)
			tb_push(&b, &bos, 1);
		rc = eng_template_first_turn(&m->tmpl, sys, sys ? strlen(sys) : 0, user, ulen, tb_emit, &b);
	} else {
		rc = eng_template_next_turn(&m->tmpl, user, ulen, tb_emit, &b);
	}
	if (rc == 0)
		rc = tb_flush(&b);
	if (rc < 0) {
		tb_free(&b);
		return rc;
	}
	free(b.text);
	*out = b.v;
	*n = b.n;
	return 0;
}

/* Raw mode: the whole text again (see the header comment).  *keep: tokens
 * of the history that stay. */
static int raw_tokens(struct eng_session *s, int upto, const char *user, size_t ulen,
                      const char *reply, size_t rlen, int32_t **out, int *n, int *keep)
{
	struct eng_model *m = s->m;
	size_t len = ulen + rlen, off = 0, nt = 0;
	int32_t *all = NULL;
	char *text;
	int rc, k;

	for (int i = 0; i < upto; i++)
		len += s->turns[i].ulen + s->turns[i].rlen;
	text = malloc(len + 1);
	if (!text)
		return -ENOMEM;
	for (int i = 0; i < upto; i++) {
		memcpy(text + off, s->turns[i].user, s->turns[i].ulen);
		off += s->turns[i].ulen;
		if (s->turns[i].rlen)
			memcpy(text + off, s->turns[i].reply, s->turns[i].rlen);
		off += s->turns[i].rlen;
	}
	memcpy(text + off, user, ulen);
	off += ulen;
	if (rlen)
		memcpy(text + off, reply, rlen);
	rc = eng_tokenize(m->tok, text, len, eng_tokenizer_add_bos(m->tok) ? ENG_TOK_ADD_BOS : 0, &all, &nt);
	free(text);
	if (rc < 0)
		return rc;
	for (k = 0; k < s->n_past && (size_t)k < nt && s->tokens[k] == all[k]; k++)
		;
	if ((size_t)k == nt && k > 0)
		k--; /* keep at least one token to run, so the turn has logits to sample */
	memmove(all, all + k, sizeof(*all) * (nt - (size_t)k));
	*out = all;
	*n = (int)nt - k;
	*keep = k;
	return 0;
}

enum eng_mode eng_effective_mode(const struct eng_session *s)
{
	return s->st.mode != ENG_MODE_RAW && s->m->tmpl.family != ENG_TMPL_NONE ? ENG_MODE_CHAT : ENG_MODE_RAW;
}

/* The tokens turn `idx` (not yet started) would add: new[n] replacing the
 * history from *keep.  -EFBIG when it does not fit n_ctx with one token to
 * spare.  Changes nothing. */
int eng_turn_tokens(struct eng_session *s, int idx, const char *reply, size_t rlen,
                       int32_t **out, int *n, int *keep)
{
	struct eng_turn *t = &s->turns[idx];
	int rc;

	*keep = s->n_past;
	if (t->mode == ENG_MODE_CHAT) {
		rc = chat_tokens(s, t->user, t->ulen, out, n);
		if (rc == 0 && rlen) {
			int32_t *r = NULL, *v;
			size_t nr = 0;

			rc = eng_tokenize(s->m->tok, reply, rlen, 0, &r, &nr);
			v = rc ? NULL : realloc(*out, sizeof(*v) * (size_t)(*n + (int)nr + 1));
			if (v) {
				memcpy(v + *n, r, sizeof(*r) * nr);
				*out = v;
				*n += (int)nr;
			} else if (rc == 0) {
				rc = -ENOMEM;
			}
			free(r);
			if (rc < 0)
				free(*out);
		}
	} else {
		rc = raw_tokens(s, idx, t->user, t->ulen, reply, rlen, out, n, keep);
	}
	if (rc < 0)
		return rc;
	if (*keep + *n + 1 > eng_model_kv_limit(s->m)) {
		LOG_INFO("turn of %d tokens does not fit: %d in the conversation, context %d, KV pool %d tokens",
		         *n, *keep, s->m->n_ctx, s->m->n_pages * ENG_KV_PAGE);
		free(*out);
		*out = NULL;
		return -EFBIG;
	}
	return 0;
}

/* The system prompt a new conversation starts with, for its history. */
void eng_conv_set_system(struct eng_session *s, enum eng_mode mode)
{
	const struct eng_template *t = &s->m->tmpl;
	const char *sys = s->st.system ? s->st.system : t->default_system;

	free(s->conv_system);
	s->conv_system = NULL;
	if (mode != ENG_MODE_CHAT || !sys)
		return;
	if (t->system_mode == ENG_TMPL_SYSTEM_DROP) {
		LOG_WARN("the model's chat template has no place for a system prompt: ignored");
		return;
	}
	s->conv_system = strdup(sys);
}

void eng_turn_apply_tokens(struct eng_session *s, const int32_t *v, int n, int keep)
{
	memcpy(s->tokens + keep, v, sizeof(*v) * (size_t)n);
	s->n_past = keep + n;
	if (s->n_cached > keep) {
		s->n_cached = keep;
		eng_window_ready_locked(s->m, s); /* take back the window of the kept part while it is there */
	}
}

int eng_turn_start_locked(struct eng_session *s)
{
	struct eng_model *m = s->m;
	struct eng_turn *t;
	int32_t *v = NULL;
	int n = 0, keep = 0, idx, rc;

	for (idx = 0; idx < s->n_turns && s->turns[idx].started; idx++)
		;
	if (idx == s->n_turns || s->cur >= 0)
		return 0;
	t = &s->turns[idx];
	t->mode = eng_effective_mode(s);
	/* the grammar is bound when the turn starts; the state follows in
	 * step.c on the engine thread (it may be sampling the last turn now) */
	s->turn_serial++;
	if ((rc = eng_turn_bind_grammar_locked(s)) < 0) {
		t->started = true;
		t->finished = true;
		t->error = rc;
		return rc;
	}
	rc = eng_turn_tokens(s, idx, NULL, 0, &v, &n, &keep);
	if (rc < 0) {
		/* drop it: a queued turn that cannot run leaves no empty turn behind */
		free(t->user);
		free(t->reply);
		memmove(t, t + 1, sizeof(*t) * (size_t)(s->n_turns - idx - 1));
		s->n_turns--;
		memset(&s->turns[s->n_turns], 0, sizeof(*t));
		s->dropped = rc;
		return rc;
	}
	t->started = true;
	s->dropped = 0;
	s->arrival = ++m->n_arrivals;
	if (s->n_past == 0)
		eng_conv_set_system(s, t->mode);
	eng_turn_apply_tokens(s, v, n, keep);
	free(v);
	t->n_prompt = n;
	t->n_keep = keep;
	s->cur = idx;
	s->phase = PHASE_QUEUED;
	s->cancel = false;
	s->seed = s->st.seed >= 0 ? (uint64_t)s->st.seed : eng_random_seed();
	memset(&s->detok, 0, sizeof(s->detok));
	s->n_hold = 0;
	m->stats.tokens_in += (uint64_t)n;
	return 0;
}

