/*
 * history.c — the whole conversation of a session as text or JSON
 * (`history/NAME` in the mount).
 *
 *   text: "### system\n…\n" (if any) then per turn "### user\n…\n" and
 *         "### assistant\n…\n" (the reply so far; absent while queued)
 *   JSON: [{"role":"system","content":…},{"role":"user","content":…},
 *          {"role":"assistant","content":…},…]  (UTF-8 kept, controls escaped)
 * and one message at a time (`history/NAME.d/001-user` …), and the sizes of
 * both forms counted without building them (stat).
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hbuf {
	char *s;
	size_t n, cap;
	int err;
	bool count_only; /* sizes only: nothing is stored */
};

static void put(struct hbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->count_only) {
		b->n += n;
		return;
	}
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *t;

		while (cap < b->n + n + 1)
			cap *= 2;
		t = realloc(b->s, cap);
		if (!t) {
			b->err = -ENOMEM;
			return;
		}
		b->s = t;
		b->cap = cap;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = 0;
}

static void puts_(struct hbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void put_json_str(struct hbuf *b, const char *s, size_t n)
{
	size_t i, run = 0;

	puts_(b, "\"");
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"': puts_(b, "\\\""); break;
		case '\\': puts_(b, "\\\\"); break;
		case '\n': puts_(b, "\\n"); break;
		case '\t': puts_(b, "\\t"); break;
		case '\r': puts_(b, "\\r"); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			puts_(b, esc);
		}
	}
	put(b, s + run, n - run);
	puts_(b, "\"");
}

static void put_msg(struct hbuf *b, bool json, bool *first, const char *role, const char *s, size_t n)
{
	if (json) {
		puts_(b, *first ? "{\"role\":\"" : ",{\"role\":\"");
		puts_(b, role);
		puts_(b, "\",\"content\":");
		put_json_str(b, s, n);
		puts_(b, "}");
	} else {
		puts_(b, "### ");
		puts_(b, role);
		puts_(b, "\n");
		put(b, s, n);
		puts_(b, "\n");
	}
	*first = false;
}

/* Lock held: the whole conversation into b (or only its size). */
static void history_put(struct eng_session *s, bool json, const struct eng_turn_text *more, int n_more,
			struct hbuf *b)
{
	bool first = true;

	if (json)
		puts_(b, "[");
	if (s->conv_system)
		put_msg(b, json, &first, "system", s->conv_system, strlen(s->conv_system));
	for (int i = 0; i < s->n_turns; i++) {
		const struct eng_turn *t = &s->turns[i];

		put_msg(b, json, &first, "user", t->user, t->ulen);
		if (t->started)
			put_msg(b, json, &first, "assistant", t->reply ? t->reply : "", t->rlen);
	}
	for (int i = 0; i < n_more; i++) {
		put_msg(b, json, &first, "user", more[i].user, more[i].ulen);
		put_msg(b, json, &first, "assistant", more[i].reply, more[i].rlen);
	}
	if (json)
		puts_(b, "]\n");
}

int eng_session_history_size(struct eng_session *s, bool json, const struct eng_turn_text *more, int n_more,
			     size_t *len)
{
	struct hbuf b = { .count_only = true };

	pthread_mutex_lock(&s->m->lock);
	history_put(s, json, more, n_more, &b);
	pthread_mutex_unlock(&s->m->lock);
	*len = b.n;
	return 0;
}

int eng_session_message(struct eng_session *s, int j, const char **role, char **text, size_t *len)
{
	const char *src = NULL, *r = NULL;
	size_t n = 0;
	int rc = 0;

	pthread_mutex_lock(&s->m->lock);
	if (j == 0 && s->conv_system) {
		r = "system";
		src = s->conv_system;
		n = strlen(src);
	} else if (j > 0 && (j - 1) / 2 < s->n_turns) {
		const struct eng_turn *t = &s->turns[(j - 1) / 2];

		if (j % 2 == 1) {
			r = "user";
			src = t->user;
			n = t->ulen;
		} else if (t->started) {
			r = "assistant";
			src = t->reply ? t->reply : "";
			n = t->rlen;
		}
	}
	if (!r)
		rc = -ENOENT;
	else if (text && !(*text = malloc(n + 1)))
		rc = -ENOMEM;
	else if (text) {
		memcpy(*text, src, n);
		(*text)[n] = 0;
	}
	pthread_mutex_unlock(&s->m->lock);
	if (rc == 0) {
		*role = r;
		*len = n;
	}
	return rc;
}

int eng_session_n_messages(struct eng_session *s)
{
	int n;

	pthread_mutex_lock(&s->m->lock);
	n = 2 * s->n_turns + 1;
	pthread_mutex_unlock(&s->m->lock);
	return n;
}

int eng_session_history(struct eng_session *s, bool json, char **out, size_t *len)
{
	return eng_session_history_more(s, json, NULL, 0, out, len);
}

int eng_session_history_more(struct eng_session *s, bool json, const struct eng_turn_text *more,
			     int n_more, char **out, size_t *len)
{
	struct hbuf b = { 0 };

	pthread_mutex_lock(&s->m->lock);
	history_put(s, json, more, n_more, &b);
	put(&b, "", 0); /* an empty conversation is still a string */
	pthread_mutex_unlock(&s->m->lock);
	if (b.err) {
		free(b.s);
		return b.err;
	}
	*out = b.s;
	*len = b.n;
	return 0;
}

// ---- turns as data (the journal): the inverse of eng_session_restore_turn

static char *dup_text(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		if (n)
			memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

void eng_turn_texts_free(struct eng_turn_text *t, int n)
{
	for (int i = 0; t && i < n; i++) {
		free(t[i].user);
		free(t[i].reply);
	}
	free(t);
}

int eng_session_turns(struct eng_session *s, struct eng_turn_text **out)
{
	struct eng_turn_text *v = NULL;
	int n = 0, rc = 0;

	*out = NULL;
	pthread_mutex_lock(&s->m->lock);
	if (s->n_turns > 0 && !(v = calloc((size_t)s->n_turns, sizeof(*v))))
		rc = -ENOMEM;
	for (int i = 0; rc == 0 && i < s->n_turns; i++) {
		const struct eng_turn *t = &s->turns[i];

		if (!t->started || !t->finished)
			break; /* turns after the first unfinished one are queued */
		v[n].user = dup_text(t->user, t->ulen);
		v[n].reply = dup_text(t->reply ? t->reply : "", t->reply ? t->rlen : 0);
		v[n].ulen = t->ulen;
		v[n].rlen = t->reply ? t->rlen : 0;
		n++;
		if (!v[n - 1].user || !v[n - 1].reply)
			rc = -ENOMEM;
	}
	pthread_mutex_unlock(&s->m->lock);
	if (rc < 0) {
		eng_turn_texts_free(v, n);
		return rc;
	}
	if (n == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	return n;
}
