/*
 * pages.c — the KV page pool (backend-neutral): a stack of free page ids and
 * one reference count per page.  A session's page table holds one reference
 * on each of its pages; a fork (session.c:eng_session_fork) retains the
 * source's pages instead of copying them, so a page may be in several
 * tables.  Shared pages are read-only: before a forward pass writes into a
 * page whose count is above one, step.c gives the writer its own copy
 * (eng_page_unshare_locked, copy-on-write).  A page returns to the free list
 * when its last reference is released.
 *
 * Everything here runs with m->lock held.  The page contents live in the
 * backend (backend.h kv_page_copy / kv_page_read / kv_page_write).
 */
#include "engine_internal.h"

#include <errno.h>

#include "../gguf/log.h"

int eng_page_alloc_locked(struct eng_model *m)
{
	int32_t p;

	if (m->n_free == 0)
		return -ENOSPC;
	p = m->free_pages[--m->n_free];
	PF_ASSERT(m->page_refs[p] == 0);
	m->page_refs[p] = 1;
	return p;
}

void eng_page_retain_locked(struct eng_model *m, int32_t page)
{
	PF_ASSERT(page >= 0 && page < m->n_pages && m->page_refs[page] > 0);
	m->page_refs[page]++;
}

void eng_page_release_locked(struct eng_model *m, int32_t page)
{
	PF_ASSERT(page >= 0 && page < m->n_pages && m->page_refs[page] > 0);
	if (--m->page_refs[page] == 0) {
		eng_prefix_drop_locked(m, page); /* the prefix it named is gone */
		eng_window_page_freed_locked(m, page);
		m->free_pages[m->n_free++] = page;
	}
}

bool eng_page_shared_locked(const struct eng_model *m, int32_t page)
{
	return m->page_refs[page] > 1;
}

void eng_pages_release_locked(struct eng_model *m, struct eng_session *s)
{
	for (int i = 0; i < s->n_pages; i++) {
		eng_window_drop_locked(m, s, i);
		eng_page_release_locked(m, s->pages[i]);
	}
	s->n_pages = 0;
	s->n_cached = 0;
}

/* Replaces s->pages[i] (shared) by a page of its own, with a window page of
 * its own when s holds the old one's (window.c).  The first `keep` token
 * slots are copied; the rest will be written by the caller's forward pass.
 * 0 / -ENOSPC (no free page or window page) / the backend's -errno. */
int eng_page_unshare_locked(struct eng_model *m, struct eng_session *s, int i, int keep)
{
	int32_t old = s->pages[i], wold = s->wheld[i] ? eng_window_page_locked(m, old) : -1;
	bool win = s->wheld[i];
	int p, rc = 0;

	if (win && eng_window_n_free(m) == 0)
		return -ENOSPC;
	if ((p = eng_page_alloc_locked(m)) < 0)
		return p;
	eng_window_drop_locked(m, s, i); /* old keeps its window part for its other holders */
	s->pages[i] = p;
	if (win && (rc = eng_window_give_locked(m, s, i)) < 0)
		goto undo;
	if (keep > 0) {
		rc = m->ops->kv_page_copy(m->be, p, win ? eng_window_page_locked(m, p) : -1, old, wold);
		if (rc < 0) {
			LOG_ERR("copy of shared KV page %d to page %d failed: %d", old, p, rc);
			goto undo;
		}
		m->stats.pages_copied++;
	}
	eng_page_release_locked(m, old);
	return 0;
undo:
	eng_window_drop_locked(m, s, i);
	eng_page_release_locked(m, p);
	s->pages[i] = old;
	if (win && !eng_window_take_locked(m, s, i))
		LOG_ERR("KV page %d: its window part went while copying it", old); /* cannot happen: old holds refs */
	return rc;
}

int eng_model_n_pages_shared(struct eng_model *m)
{
	int n = 0;

	for (int i = 0; i < m->n_pages; i++)
		n += m->page_refs[i] > 1;
	return n;
}
