/*
 * window.c — the window pages of the sliding-window layers (gemma2/gemma3):
 * the KV of those layers for a page of positions lives in a second pool
 * (backend.h), and a session holds it only while a later query can see it.
 * A query at p sees keys p - n_swa < j <= p, so a session whose cache holds
 * positions [0, c) needs the window parts of pages eng_window_first(c) ..
 * the last one; older ones return to the pool as its cache grows
 * (eng_window_slide_locked after every pass).  The other layers keep every
 * page as before.
 *
 * A window page is paired with the page (pages.c) whose positions it holds,
 * so sessions that share a page (a fork, a shared prefix, a saved image)
 * share its window part too: refs[page] counts the holders.  A window page
 * nobody holds goes to the back of a free queue still paired, with its
 * content: a session that rewinds (raw mode, a fork at an earlier turn)
 * or adopts a shared prefix takes it back if it was not handed out since,
 * as vLLM's prefix cache keeps freed blocks.  When it was, the content is
 * gone, and the session's cache is dropped and rebuilt from its token
 * history, exactly like an eviction (nothing else is exact: a window layer
 * at p depends on the window layers below it at p - n_swa and so on back to
 * position 0).
 *
 * Everything runs with m->lock held.  Off (every call a no-op, every
 * window "held") for models without sliding-window layers.
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

static bool on(const struct eng_model *m)
{
	return m->win.n > 0;
}

int eng_window_init(struct eng_model *m, int n)
{
	struct eng_window *w = &m->win;

	memset(w, 0, sizeof(*w));
	if (n <= 0)
		return 0;
	w->of_page = malloc(sizeof(*w->of_page) * (size_t)m->n_pages);
	w->refs = calloc((size_t)m->n_pages, sizeof(*w->refs));
	w->page_of = malloc(sizeof(*w->page_of) * (size_t)n);
	w->prev = malloc(sizeof(*w->prev) * (size_t)n);
	w->next = malloc(sizeof(*w->next) * (size_t)n);
	w->queued = calloc((size_t)n, sizeof(*w->queued));
	if (!w->of_page || !w->refs || !w->page_of || !w->prev || !w->next || !w->queued) {
		eng_window_free(m);
		return -ENOMEM;
	}
	w->n = n;
	w->n_swa = m->cfg.n_swa;
	for (int i = 0; i < m->n_pages; i++)
		w->of_page[i] = -1;
	for (int i = 0; i < n; i++) {
		w->page_of[i] = -1;
		w->prev[i] = i - 1;
		w->next[i] = i + 1 < n ? i + 1 : -1;
		w->queued[i] = 1;
	}
	w->head = 0;
	w->tail = n - 1;
	w->n_free = n;
	return 0;
}

void eng_window_free(struct eng_model *m)
{
	struct eng_window *w = &m->win;

	free(w->of_page);
	free(w->refs);
	free(w->page_of);
	free(w->prev);
	free(w->next);
	free(w->queued);
	memset(w, 0, sizeof(*w));
}

int eng_window_first(const struct eng_model *m, int c)
{
	if (!on(m))
		return 0;
	return (c + 1 > m->win.n_swa ? c + 1 - m->win.n_swa : 0) / ENG_KV_PAGE;
}

int eng_window_n_free(const struct eng_model *m)
{
	return on(m) ? m->win.n_free : 1;
}

// ---- the free queue (least recently freed at the head)

static void unqueue(struct eng_window *w, int32_t x)
{
	PF_ASSERT(w->queued[x]);
	if (w->prev[x] >= 0)
		w->next[w->prev[x]] = w->next[x];
	else
		w->head = w->next[x];
	if (w->next[x] >= 0)
		w->prev[w->next[x]] = w->prev[x];
	else
		w->tail = w->prev[x];
	w->queued[x] = 0;
	w->n_free--;
}

static void enqueue(struct eng_window *w, int32_t x, bool front)
{
	PF_ASSERT(!w->queued[x]);
	w->prev[x] = front ? -1 : w->tail;
	w->next[x] = front ? w->head : -1;
	if (front) {
		if (w->head >= 0)
			w->prev[w->head] = x;
		else
			w->tail = x;
		w->head = x;
	} else {
		if (w->tail >= 0)
			w->next[w->tail] = x;
		else
			w->head = x;
		w->tail = x;
	}
	w->queued[x] = 1;
	w->n_free++;
}

// ---- holding a page's window part

bool eng_window_retain_locked(struct eng_model *m, int32_t page)
{
	struct eng_window *w = &m->win;
	int32_t x;

	if (!on(m))
		return true;
	if ((x = w->of_page[page]) < 0)
		return false; /* handed to another page since: the content is gone */
	if (w->refs[page]++ == 0)
		unqueue(w, x);
	return true;
}

void eng_window_release_locked(struct eng_model *m, int32_t page)
{
	struct eng_window *w = &m->win;

	if (!on(m))
		return;
	PF_ASSERT(w->refs[page] > 0 && w->of_page[page] >= 0);
	if (--w->refs[page] == 0)
		enqueue(w, w->of_page[page], false); /* content kept until handed out */
}

int32_t eng_window_page_locked(const struct eng_model *m, int32_t page)
{
	return on(m) ? m->win.of_page[page] : -1;
}

void eng_window_page_freed_locked(struct eng_model *m, int32_t page)
{
	struct eng_window *w = &m->win;
	int32_t x;

	if (!on(m) || (x = w->of_page[page]) < 0)
		return;
	PF_ASSERT(w->refs[page] == 0 && w->queued[x]);
	w->of_page[page] = -1;
	w->page_of[x] = -1;
	unqueue(w, x);
	enqueue(w, x, true); /* holds nothing anyone can take back: handed out first */
}

int eng_window_give_locked(struct eng_model *m, struct eng_session *s, int i)
{
	struct eng_window *w = &m->win;
	int32_t x, page = s->pages[i];

	if (!on(m))
		return 0;
	PF_ASSERT(!s->wheld[i] && w->of_page[page] < 0);
	if ((x = w->head) < 0)
		return -ENOSPC;
	unqueue(w, x);
	if (w->page_of[x] >= 0)
		w->of_page[w->page_of[x]] = -1; /* the oldest freed content goes */
	w->page_of[x] = page;
	w->of_page[page] = x;
	w->refs[page] = 1;
	s->wheld[i] = true;
	return 0;
}

bool eng_window_take_locked(struct eng_model *m, struct eng_session *s, int i)
{
	if (!on(m) || s->wheld[i])
		return true;
	if (!eng_window_retain_locked(m, s->pages[i]))
		return false;
	s->wheld[i] = true;
	return true;
}

bool eng_window_has_locked(const struct eng_model *m, int32_t page)
{
	return !on(m) || m->win.of_page[page] >= 0;
}

void eng_window_drop_locked(struct eng_model *m, struct eng_session *s, int i)
{
	if (!on(m) || !s->wheld[i])
		return;
	s->wheld[i] = false;
	eng_window_release_locked(m, s->pages[i]);
}

void eng_window_slide_locked(struct eng_model *m, struct eng_session *s)
{
	int lo = eng_window_first(m, s->n_cached);

	for (int i = 0; on(m) && i < lo && i < s->n_pages; i++)
		eng_window_drop_locked(m, s, i);
}

int eng_window_ready_locked(struct eng_model *m, struct eng_session *s)
{
	int lo, hi, i;

	if (!on(m) || s->n_pages == 0)
		return 0;
	lo = eng_window_first(m, s->n_cached);
	hi = (s->n_cached + ENG_KV_PAGE - 1) / ENG_KV_PAGE;
	for (i = lo; i < hi; i++) {
		if (!eng_window_take_locked(m, s, i)) {
			LOG_DEBUG("the window of a session's %d cached tokens is gone (page %d): its cache is "
			          "rebuilt from its history", s->n_cached, i);
			eng_pages_release_locked(m, s);
			m->stats.window_rebuilds++;
			return 1;
		}
	}
	/* pages past the cache are written again: keep those with a window part */
	for (i = hi; i < s->n_pages && eng_window_take_locked(m, s, i); i++)
		;
	while (s->n_pages > i) {
		s->n_pages--;
		eng_window_drop_locked(m, s, s->n_pages);
		eng_page_release_locked(m, s->pages[s->n_pages]);
	}
	eng_window_slide_locked(m, s);
	return 0;
}

void eng_window_table_locked(const struct eng_model *m, const struct eng_session *s, int32_t *out)
{
	for (int i = 0; i < s->n_pages; i++)
		out[i] = s->wheld[i] ? m->win.of_page[s->pages[i]] : -1;
}

int eng_window_pages_used(const struct eng_model *m)
{
	return on(m) ? m->win.n - m->win.n_free : 0;
}
