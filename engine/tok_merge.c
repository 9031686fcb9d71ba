/*
 * tok_merge.c — the merge loops: SentencePiece BPE over a raw-text fragment
 * (llm_tokenizer_spm_session) and byte-level BPE over pre-token words
 * (llm_tokenizer_bpe_session).
 *
 * Both keep the symbols of the text in a doubly linked list and candidate
 * pairs in a binary heap ordered as llama.cpp's priority queues: SPM by
 * score (highest first), BPE by merge rank (lowest first), ties broken by
 * the leftmost pair.  Stale pairs (a side already merged away or grown) are
 * skipped when popped.  Each merge costs O(log n), so a 1 MB fragment (one
 * SPM "word") stays O(n log n): this runs on every prompt.
 */
#include "tok_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

struct sym {
	int32_t prev, next; /* -1 at the ends */
	uint32_t off, n;    /* bytes of the text; n == 0 once merged away */
};

struct pair {
	double key;         /* higher merges first: SPM score, BPE -rank */
	int32_t left, right;
	uint32_t size;      /* left.n + right.n when pushed */
};

struct heap {
	struct pair *v;
	size_t n, cap;
};

/* a before b: larger key, then smaller left (the std::priority_queue top) */
static inline bool pair_before(const struct pair *a, const struct pair *b)
{
	return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(struct heap *h, struct pair p)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct pair *v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (!pair_before(&p, &h->v[up]))
			break;
		h->v[i] = h->v[up];
		i = up;
	}
	h->v[i] = p;
	return 0;
}

static struct pair heap_pop(struct heap *h)
{
	struct pair top = h->v[0], last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && pair_before(&h->v[c + 1], &h->v[c]))
			c++;
		if (!pair_before(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0)
		h->v[i] = last;
	return top;
}

// ---- symbols

struct work {
	struct sym *sym;
	size_t n_sym, cap_sym;
	struct heap heap;
	char *buf; /* the escaped / byte-encoded text */
	size_t n_buf, cap_buf;
};

static void work_free(struct work *w)
{
	free(w->sym);
	free(w->heap.v);
	free(w->buf);
}

static int buf_reserve(struct work *w, size_t need)
{
	if (need <= w->cap_buf)
		return 0;
	size_t cap = w->cap_buf ? w->cap_buf : 256;
	while (cap < need)
		cap *= 2;
	char *b = realloc(w->buf, cap);
	if (!b)
		return -ENOMEM;
	w->buf = b;
	w->cap_buf = cap;
	return 0;
}

/* Splits buf[0..n_buf) into UTF-8 characters by lead byte, as llama.cpp
 * does (a stray byte is a character of its own; a truncated sequence at the
 * end is cut short). */
static int make_symbols(struct work *w)
{
	if (w->cap_sym < w->n_buf) {
		struct sym *s = realloc(w->sym, (w->n_buf ? w->n_buf : 1) * sizeof(*s));
		if (!s)
			return -ENOMEM;
		w->sym = s;
		w->cap_sym = w->n_buf;
	}
	w->n_sym = 0;
	for (size_t off = 0; off < w->n_buf;) {
		size_t len = eng_uni_len_utf8((unsigned char)w->buf[off]);
		if (len > w->n_buf - off)
			len = w->n_buf - off;
		struct sym *s = &w->sym[w->n_sym];
		s->off = (uint32_t)off;
		s->n = (uint32_t)len;
		s->prev = (int32_t)w->n_sym - 1;
		off += len;
		s->next = off == w->n_buf ? -1 : (int32_t)w->n_sym + 1;
		w->n_sym++;
	}
	w->heap.n = 0;
	return 0;
}

/* Pops pairs and merges right into left until the heap is empty; add_pair
 * is called for the new neighbours of every merged symbol. */
typedef int (*add_pair_fn)(const struct eng_tokenizer *t, struct work *w, int32_t l, int32_t r);

static int merge_all(const struct eng_tokenizer *t, struct work *w, add_pair_fn add_pair)
{
	int err;
	while (w->heap.n > 0) {
		struct pair p = heap_pop(&w->heap);
		struct sym *l = &w->sym[p.left], *r = &w->sym[p.right];
		if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
			continue; /* stale */
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			w->sym[r->next].prev = p.left;
		if ((err = add_pair(t, w, l->prev, p.left)) != 0)
			return err;
		if ((err = add_pair(t, w, p.left, l->next)) != 0)
			return err;
	}
	return 0;
}

// ---- SentencePiece

/* llm_tokenizer_spm_session::try_add_bigram: the pair is a candidate when
 * its joined text is a token; its priority is that token's score. */
static int spm_add_pair(const struct eng_tokenizer *t, struct work *w, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return 0;
	uint32_t size = w->sym[l].n + w->sym[r].n;
	int32_t id = tok_lookup(t, w->buf + w->sym[l].off, size);
	if (id < 0)
		return 0;
	struct pair p = {t->tok[id].score, l, r, size};
	return heap_push(&w->heap, p);
}

int tok_spm_encode(const struct eng_tokenizer *t, const char *s, size_t n, bool space_prefix,
                   struct tok_ivec *out)
{
	struct work w = {0};
	int err;

	/* escape: " " → "▁" (U+2581), with the space prefix first */
	if ((err = buf_reserve(&w, 3 * (n + 1))) != 0)
		goto free_work;
	for (size_t i = 0; i < n + space_prefix; i++) {
		char c = i < space_prefix ? ' ' : s[i - space_prefix];
		if (c == ' ') {
			memcpy(w.buf + w.n_buf, "\xe2\x96\x81", 3);
			w.n_buf += 3;
		} else {
			w.buf[w.n_buf++] = c;
		}
	}
	if ((err = make_symbols(&w)) != 0)
		goto free_work;
	for (size_t i = 1; i < w.n_sym; i++)
		if ((err = spm_add_pair(t, &w, (int32_t)i - 1, (int32_t)i)) != 0)
			goto free_work;
	if ((err = merge_all(t, &w, spm_add_pair)) != 0)
		goto free_work;

	/* resegment: merged symbols are always tokens (only token pairs merge),
	 * so llama.cpp's rev_merge fallback never fires; unknown characters
	 * become their bytes */
	for (int32_t i = w.n_sym ? 0 : -1; i != -1; i = w.sym[i].next) {
		const struct sym *sy = &w.sym[i];
		int32_t id = tok_lookup(t, w.buf + sy->off, sy->n);
		if (id >= 0) {
			if ((err = tok_ivec_push(out, id)) != 0)
				goto free_work;
			continue;
		}
		for (uint32_t j = 0; j < sy->n; j++) {
			int32_t b = t->byte_tok[(unsigned char)w.buf[sy->off + j]];
			if (b < 0)
				b = t->unk; /* llama.cpp throws here; no vocab we load lacks bytes */
			if (b >= 0 && (err = tok_ivec_push(out, b)) != 0)
				goto free_work;
		}
	}
free_work:
	work_free(&w);
	return err;
}

// ---- byte-level BPE

/* llm_tokenizer_bpe_session::add_new_bigram: candidates are the pairs with
 * a merge rule; lower rank merges first. */
static int bpe_add_pair(const struct eng_tokenizer *t, struct work *w, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return 0;
	const struct sym *a = &w->sym[l], *b = &w->sym[r];
	int32_t rank = tok_merge_rank(t, w->buf + a->off, a->n, w->buf + b->off, b->n);
	if (rank < 0)
		return 0;
	struct pair p = {-(double)rank, l, r, a->n + b->n};
	return heap_push(&w->heap, p);
}

/* One pre-token word, already byte-encoded in w->buf. */
static int bpe_word(const struct eng_tokenizer *t, struct work *w, struct tok_ivec *out)
{
	int err;

	if (t->ignore_merges) {
		int32_t id = tok_lookup(t, w->buf, w->n_buf);
		if (id >= 0)
			return tok_ivec_push(out, id);
	}
	if ((err = make_symbols(w)) != 0)
		return err;
	for (size_t i = 1; i < w->n_sym; i++)
		if ((err = bpe_add_pair(t, w, (int32_t)i - 1, (int32_t)i)) != 0)
			return err;
	if ((err = merge_all(t, w, bpe_add_pair)) != 0)
		return err;
	for (int32_t i = w->n_sym ? 0 : -1; i != -1; i = w->sym[i].next) {
		const struct sym *sy = &w->sym[i];
		int32_t id = tok_lookup(t, w->buf + sy->off, sy->n);
		if (id >= 0) {
			if ((err = tok_ivec_push(out, id)) != 0)
				return err;
			continue;
		}
		/* not a token: llama.cpp looks up each byte of the encoded text
		 * as a one-byte token and drops those that are not */
		for (uint32_t j = 0; j < sy->n; j++) {
			int32_t b = tok_lookup(t, w->buf + sy->off + j, 1);
			if (b >= 0 && (err = tok_ivec_push(out, b)) != 0)
				return err;
		}
	}
	return 0;
}

int tok_bpe_encode(const struct eng_tokenizer *t, const char *s, size_t n, struct tok_ivec *out)
{
	struct work w = {0};
	struct tok_svec words = {0};
	uint32_t *cpt = NULL;
	uint16_t *flags = NULL;
	size_t n_cpt = 0;
	int err = -ENOMEM;

	cpt = malloc((n ? n : 1) * sizeof(*cpt));
	flags = malloc((n ? n : 1) * sizeof(*flags));
	if (!cpt || !flags)
		goto free_all;
	for (size_t pos = 0; pos < n;) {
		cpt[n_cpt] = eng_uni_decode(s, n, &pos);
		flags[n_cpt] = (uint16_t)eng_uni_flags(cpt[n_cpt]);
		n_cpt++;
	}
	if ((err = tok_pretokenize(t->pre_type, cpt, flags, n_cpt, &words)) != 0)
		goto free_all;

	size_t start = 0;
	for (size_t i = 0; i < words.n; i++) {
		/* the word's UTF-8 (invalid input re-encoded as U+FFFD), each
		 * byte mapped to its GPT-2 code point: at most 2 bytes per byte */
		if ((err = buf_reserve(&w, 8 * words.v[i])) != 0)
			goto free_all;
		w.n_buf = 0;
		for (size_t k = start; k < start + words.v[i]; k++) {
			char u[4];
			size_t m = eng_uni_encode(cpt[k], u);
			for (size_t j = 0; j < m; j++)
				w.n_buf += eng_uni_encode(eng_uni_byte_to_cpt((uint8_t)u[j]), w.buf + w.n_buf);
		}
		start += words.v[i];
		if ((err = bpe_word(t, &w, out)) != 0)
			goto free_all;
	}
	err = 0;
free_all:
	work_free(&w);
	free(words.v);
	free(cpt);
	free(flags);
	return err;
}
