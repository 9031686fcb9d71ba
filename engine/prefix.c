/*
 * prefix.c — shared prefixes: a table from prefix hash to KV page, so that
 * sessions whose token histories begin the same way hold the same pages for
 * that prefix and prefill it once.
 *
 * A page is named by the hash of its ENG_KV_PAGE tokens chained with the
 * hash of the page before it (eng_prefix_chain), so one hash names the whole
 * prefix up to the page's end: the K/V a page holds depends on every token
 * before it, and two pages with the same chained hash (and, checked on every
 * lookup, the same tokens) hold the same K/V bit for bit on one backend.
 *
 * Only full, finished pages are in the table: step.c adds a page when a
 * forward pass wrote its last slot.  The table holds no reference: a page
 * leaves it when it is freed (pages.c, at its last holder's release), or
 * when its only holder is about to write into it (a history rewritten from
 * inside the page; step.c own_pages).  A page that is in several tables is
 * read-only and copied on write, as for forks (pages.c).
 *
 * Layout: buckets of page ids chained through next[]; per page its hash and
 * its tokens (to rule out a hash collision on lookup).  Sized from the pool
 * at load; nothing grows later.  Everything here runs with m->lock held.
 *
 * Shapes: NP pages in the pool, P = ENG_KV_PAGE tokens per page, NB buckets
 * (a power of two >= NP).
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

#define NO_PAGE (-1)

int eng_prefix_init(struct eng_model *m)
{
	struct eng_prefix *t = &m->prefix;
	size_t nb = 16;

	while (nb < (size_t)m->n_pages)
		nb *= 2;
	t->mask = (uint32_t)(nb - 1);
	t->bucket = malloc(sizeof(*t->bucket) * nb);
	t->next = malloc(sizeof(*t->next) * (size_t)m->n_pages);
	t->hash = calloc((size_t)m->n_pages, sizeof(*t->hash));
	t->in = calloc((size_t)m->n_pages, sizeof(*t->in));
	t->tokens = malloc(sizeof(*t->tokens) * (size_t)m->n_pages * ENG_KV_PAGE);
	if (!t->bucket || !t->next || !t->hash || !t->in || !t->tokens)
		return -ENOMEM;
	for (size_t i = 0; i < nb; i++)
		t->bucket[i] = NO_PAGE;
	t->n_in = 0;
	return 0;
}

void eng_prefix_free(struct eng_model *m)
{
	struct eng_prefix *t = &m->prefix;

	free(t->bucket);
	free(t->next);
	free(t->hash);
	free(t->in);
	free(t->tokens);
	memset(t, 0, sizeof(*t));
}

uint64_t eng_prefix_chain(uint64_t prev, const int32_t *tok)
{
	/* prev == 0 starts a prefix; the constant keeps page 0 from hashing
	 * like a page whose predecessor hashed to 0 */
	return eng_hash64(prev ? prev : 0x70726566697821ull, tok, sizeof(*tok) * ENG_KV_PAGE);
}

uint64_t eng_prefix_hash_to(const int32_t *tokens, int n_pages)
{
	uint64_t h = 0;

	for (int i = 0; i < n_pages; i++)
		h = eng_prefix_chain(h, tokens + (size_t)i * ENG_KV_PAGE);
	return h;
}

int32_t eng_prefix_find_locked(struct eng_model *m, uint64_t h, const int32_t *tok)
{
	struct eng_prefix *t = &m->prefix;

	if (!t->bucket)
		return NO_PAGE;
	for (int32_t p = t->bucket[h & t->mask]; p != NO_PAGE; p = t->next[p])
		if (t->hash[p] == h && !memcmp(t->tokens + (size_t)p * ENG_KV_PAGE, tok, sizeof(*tok) * ENG_KV_PAGE))
			return p;
	return NO_PAGE;
}

void eng_prefix_add_locked(struct eng_model *m, int32_t page, uint64_t h, const int32_t *tok)
{
	struct eng_prefix *t = &m->prefix;
	uint32_t b;

	PF_ASSERT(page >= 0 && page < m->n_pages && m->page_refs[page] > 0);
	if (!t->bucket || t->in[page] || eng_prefix_find_locked(m, h, tok) != NO_PAGE)
		return; /* already named, or another page holds this prefix */
	b = (uint32_t)(h & t->mask);
	t->hash[page] = h;
	memcpy(t->tokens + (size_t)page * ENG_KV_PAGE, tok, sizeof(*tok) * ENG_KV_PAGE);
	t->next[page] = t->bucket[b];
	t->bucket[b] = page;
	t->in[page] = true;
	t->n_in++;
}

void eng_prefix_drop_locked(struct eng_model *m, int32_t page)
{
	struct eng_prefix *t = &m->prefix;
	int32_t *link;

	if (!t->bucket || !t->in[page])
		return;
	for (link = &t->bucket[t->hash[page] & t->mask]; *link != page; link = &t->next[*link])
		PF_ASSERT(*link != NO_PAGE);
	*link = t->next[page];
	t->in[page] = false;
	t->n_in--;
}

bool eng_prefix_named_locked(const struct eng_model *m, int32_t page)
{
	return m->prefix.bucket && m->prefix.in[page];
}
