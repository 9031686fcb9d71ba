/*
 * grammar_match.c — the GBNF matcher: llama.cpp's pushdown automaton
 * (llama_grammar_advance_stack / accept_chr / match_char /
 * match_partial_char) over the compiled rules of grammar_internal.h, and
 * the vocabulary mask by a walk over the sorted token pieces.
 *
 * Glossary: a stack is a list of element indices into g->e (top last,
 * always a char element); a set is the list of distinct stacks the text so
 * far can be in.  The empty stack means "complete".
 *
 * Mask cost: pieces are sorted once per model; the walk feeds the bytes of
 * the common prefix of a group of tokens once, and drops the whole group
 * when the grammar rejects the prefix.  Inside a JSON string almost every
 * token survives and the walk is O(total piece bytes); elsewhere (numbers,
 * keywords) it touches a few hundred prefixes.  The sampler calls it only
 * when none of the chain's survivors is allowed and the allowed tokens it
 * needs are not among the largest logits either (sampler.c LAZY_SCAN).
 */
#include "grammar_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

// ---- stack sets

struct sset {
	uint32_t *pool;   /* stacks, back to back */
	size_t n_pool, cap_pool;
	uint32_t *off, *len; /* [n] */
	size_t n, cap;
};

static void sset_free(struct sset *s)
{
	free(s->pool);
	free(s->off);
	free(s->len);
	memset(s, 0, sizeof(*s));
}

static bool sset_has(const struct sset *s, const uint32_t *st, size_t n)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->len[i] == n && !memcmp(s->pool + s->off[i], st, n * sizeof(*st)))
			return true;
	return false;
}

static bool sset_add(struct sset *s, const uint32_t *st, size_t n)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 8;
		uint32_t *o = realloc(s->off, cap * sizeof(*o)), *l;

		if (!o)
			return false;
		s->off = o;
		if (!(l = realloc(s->len, cap * sizeof(*l))))
			return false;
		s->len = l;
		s->cap = cap;
	}
	if (s->n_pool + n > s->cap_pool) {
		size_t cap = s->cap_pool ? 2 * s->cap_pool : 64;
		uint32_t *p;

		while (cap < s->n_pool + n)
			cap *= 2;
		if (!(p = realloc(s->pool, cap * sizeof(*p))))
			return false;
		s->pool = p;
		s->cap_pool = cap;
	}
	if (n) /* an empty stack: pool may still be NULL */
		memcpy(s->pool + s->n_pool, st, n * sizeof(*st));
	s->off[s->n] = (uint32_t)s->n_pool;
	s->len[s->n] = (uint32_t)n;
	s->n_pool += n;
	s->n++;
	return true;
}

static bool sset_copy(struct sset *d, const struct sset *s)
{
	d->n = d->n_pool = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!sset_add(d, s->pool + s->off[i], s->len[i]))
			return false;
	return true;
}

// ---- elements

static bool end_of_seq(const struct gelem *e)
{
	return e->type == GRE_END || e->type == GRE_ALT;
}

/* llama_grammar_match_char: does chr match the class at e[pos]; *after is
 * the element after the class. */
static bool match_char(const struct gelem *e, uint32_t pos, uint32_t chr, uint32_t *after)
{
	bool found = false, positive = e[pos].type == GRE_CHAR || e[pos].type == GRE_CHAR_ANY;

	do {
		if (e[pos + 1].type == GRE_CHAR_RNG_UPPER) {
			found = found || (e[pos].value <= chr && chr <= e[pos + 1].value);
			pos += 2;
		} else if (e[pos].type == GRE_CHAR_ANY) {
			found = true;
			pos += 1;
		} else {
			found = found || e[pos].value == chr;
			pos += 1;
		}
	} while (e[pos].type == GRE_CHAR_ALT);
	*after = pos;
	return found == positive;
}

struct partial {
	uint32_t value;
	int n_remain; /* bytes still expected; -1: invalid sequence */
};

/* llama_grammar_match_partial_char. */
static bool match_partial(const struct gelem *e, uint32_t pos, struct partial pu)
{
	bool positive = e[pos].type == GRE_CHAR || e[pos].type == GRE_CHAR_ANY;
	uint32_t low, high;

	if (pu.n_remain < 0 || (pu.n_remain == 1 && pu.value < 2))
		return false;
	low = pu.value << (pu.n_remain * 6);
	high = low | ((1u << (pu.n_remain * 6)) - 1);
	if (low == 0) {
		if (pu.n_remain == 2)
			low = 1u << 11;
		else if (pu.n_remain == 3)
			low = 1u << 16;
	}
	do {
		if (e[pos + 1].type == GRE_CHAR_RNG_UPPER) {
			if (e[pos].value <= high && low <= e[pos + 1].value)
				return positive;
			pos += 2;
		} else if (e[pos].type == GRE_CHAR_ANY) {
			return true;
		} else {
			if (low <= e[pos].value && e[pos].value <= high)
				return positive;
			pos += 1;
		}
	} while (e[pos].type == GRE_CHAR_ALT);
	return !positive;
}

// ---- the automaton

struct eng_grammar_state {
	struct eng_grammar *g;  /* holds a reference */
	struct sset cur;        /* the stacks now */
	struct partial pu;      /* an unfinished UTF-8 character */
	struct sset tmp[2];     /* scratch for allows/accept */
	struct sset todo, seen; /* scratch for advance */
	uint32_t *buf;          /* scratch stack */
	size_t cap_buf;
	struct sset *lvl;       /* [n_lvl] per-depth sets of the mask walk */
	struct partial *lvl_pu;
	size_t n_lvl;
};

static bool buf_fit(struct eng_grammar_state *st, size_t n)
{
	if (n <= st->cap_buf)
		return true;
	size_t cap = st->cap_buf ? st->cap_buf : 64;
	while (cap < n)
		cap *= 2;
	uint32_t *b = realloc(st->buf, cap * sizeof(*b));
	if (!b)
		return false;
	st->buf = b;
	st->cap_buf = cap;
	return true;
}

/* llama_grammar_advance_stack: expands the stack until every top is a
 * char element (or the stack is empty), adding the results to out. */
static bool advance(struct eng_grammar_state *st, const uint32_t *stack, size_t n, struct sset *out)
{
	const struct eng_grammar *g = st->g;
	const struct gelem *e = g->e;

	st->todo.n = st->todo.n_pool = 0;
	st->seen.n = st->seen.n_pool = 0;
	if (!sset_add(&st->todo, stack, n))
		return false;
	while (st->todo.n) {
		size_t k = --st->todo.n, len = st->todo.len[k];
		uint32_t pos;

		if (!buf_fit(st, len + 2))
			return false;
		memcpy(st->buf, st->todo.pool + st->todo.off[k], len * sizeof(uint32_t));
		st->todo.n_pool = st->todo.off[k];
		if (sset_has(&st->seen, st->buf, len))
			continue;
		if (!sset_add(&st->seen, st->buf, len))
			return false;
		if (len == 0 || e[st->buf[len - 1]].type != GRE_RULE_REF) {
			if (!sset_has(out, st->buf, len) && !sset_add(out, st->buf, len))
				return false;
			continue;
		}
		pos = st->buf[len - 1];
		uint32_t sub = g->rule_off[e[pos].value];
		for (;;) {
			size_t m = len - 1;

			if (!end_of_seq(&e[pos + 1]))
				st->buf[m++] = pos + 1;
			if (!end_of_seq(&e[sub]))
				st->buf[m++] = sub;
			if (!sset_add(&st->todo, st->buf, m))
				return false;
			st->buf[len - 1] = pos; /* restore the top for the next alternative */
			while (!end_of_seq(&e[sub]))
				sub++;
			if (e[sub].type != GRE_ALT)
				break;
			sub++;
		}
	}
	return true;
}

/* llama_grammar_accept: every stack of in that takes chr, advanced, to out. */
static bool accept_chr(struct eng_grammar_state *st, const struct sset *in, uint32_t chr, struct sset *out)
{
	const struct gelem *e = st->g->e;

	out->n = out->n_pool = 0;
	for (size_t i = 0; i < in->n; i++) {
		size_t len = in->len[i];
		const uint32_t *s = in->pool + in->off[i];
		uint32_t after;
		uint32_t tmp[1024];
		uint32_t *ns;

		if (len == 0 || !match_char(e, s[len - 1], chr, &after))
			continue;
		ns = len + 1 <= 1024 ? tmp : malloc((len + 1) * sizeof(*ns));
		if (!ns)
			return false;
		memcpy(ns, s, (len - 1) * sizeof(*ns));
		size_t m = len - 1;
		if (!end_of_seq(&e[after]))
			ns[m++] = after;
		bool ok = advance(st, ns, m, out);
		if (ns != tmp)
			free(ns);
		if (!ok)
			return false;
	}
	return true;
}

/* One byte into the partial character: 1 = a code point is complete in
 * *cp, 0 = more bytes needed, -1 = invalid UTF-8. */
static int feed_byte(struct partial *pu, uint8_t b, uint32_t *cp)
{
	static const int lookup[] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4 };

	if (pu->n_remain > 0) {
		if ((b >> 6) != 2)
			return -1;
		pu->value = (pu->value << 6) + (b & 0x3f);
		if (--pu->n_remain > 0)
			return 0;
		*cp = pu->value;
		return 1;
	}
	int n = lookup[b >> 4] - 1;
	if (n < 0)
		return -1;
	pu->value = b & ((1u << (7 - n)) - 1);
	pu->n_remain = n;
	if (n > 0)
		return 0;
	*cp = pu->value;
	return 1;
}

/* Some stack of s can continue the partial character pu. */
static bool partial_ok(const struct eng_grammar_state *st, const struct sset *s, struct partial pu)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->len[i] && match_partial(st->g->e, s->pool[s->off[i] + s->len[i] - 1], pu))
			return true;
	return false;
}

/* Runs bytes from (cur, pu) into tmp[*which]; false if rejected. */
static int run_bytes(struct eng_grammar_state *st, const char *bytes, size_t n, int *which, struct partial *pu)
{
	const struct sset *in = &st->cur;
	int w = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t cp;
		int r = feed_byte(pu, (uint8_t)bytes[i], &cp);

		if (r < 0 || (r == 1 && cp == 0))
			return 0;
		if (r == 0)
			continue;
		if (!accept_chr(st, in, cp, &st->tmp[w]))
			return -ENOMEM;
		if (st->tmp[w].n == 0)
			return 0;
		in = &st->tmp[w];
		w ^= 1;
	}
	*which = in == &st->cur ? -1 : (w ^ 1);
	if (pu->n_remain > 0 && !partial_ok(st, in, *pu))
		return 0;
	return 1;
}

int eng_grammar_state_init(struct eng_grammar *g, struct eng_grammar_state **out)
{
	struct eng_grammar_state *st = calloc(1, sizeof(*st));
	uint32_t pos;

	*out = NULL;
	if (!st)
		return -ENOMEM;
	st->g = eng_grammar_ref(g);
	pos = g->rule_off[g->root];
	for (;;) {
		uint32_t one = pos;

		if (!advance(st, &one, end_of_seq(&g->e[pos]) ? 0 : 1, &st->cur)) {
			eng_grammar_state_free(st);
			return -ENOMEM;
		}
		while (!end_of_seq(&g->e[pos]))
			pos++;
		if (g->e[pos].type != GRE_ALT)
			break;
		pos++;
	}
	*out = st;
	return 0;
}

void eng_grammar_state_free(struct eng_grammar_state *st)
{
	if (!st)
		return;
	sset_free(&st->cur);
	sset_free(&st->tmp[0]);
	sset_free(&st->tmp[1]);
	sset_free(&st->todo);
	sset_free(&st->seen);
	for (size_t i = 0; i < st->n_lvl; i++)
		sset_free(&st->lvl[i]);
	free(st->lvl);
	free(st->lvl_pu);
	free(st->buf);
	eng_grammar_unref(st->g);
	free(st);
}

bool eng_grammar_state_allows(struct eng_grammar_state *st, const char *bytes, size_t n)
{
	struct partial pu = st->pu;
	int which;

	return run_bytes(st, bytes, n, &which, &pu) == 1;
}

int eng_grammar_state_accept(struct eng_grammar_state *st, const char *bytes, size_t n)
{
	struct partial pu = st->pu;
	int which, r = run_bytes(st, bytes, n, &which, &pu);

	if (r < 0)
		return r;
	if (r == 0)
		return -EINVAL;
	if (which >= 0) {
		struct sset t = st->cur;

		st->cur = st->tmp[which];
		st->tmp[which] = t;
	}
	st->pu = pu;
	return 0;
}

bool eng_grammar_state_complete(const struct eng_grammar_state *st)
{
	if (st->pu.n_remain != 0)
		return false;
	for (size_t i = 0; i < st->cur.n; i++)
		if (st->cur.len[i] == 0)
			return true;
	return false;
}

// ---- vocabulary

struct eng_grammar_vocab {
	const struct eng_tokenizer *t;
	int n_vocab;
	char *bytes;          /* all pieces back to back */
	uint32_t *off, *len;  /* [V] piece of each token (len 0: never allowed as text) */
	bool *eog;            /* [V] */
	int32_t *sorted;      /* [n_sorted] tokens with a piece, by piece bytes */
	int n_sorted;
};

static const struct eng_grammar_vocab *sort_v;

static int cmp_piece(const void *a, const void *b)
{
	const struct eng_grammar_vocab *v = sort_v;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	size_t lx = v->len[x], ly = v->len[y], n = lx < ly ? lx : ly;
	int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], n);

	if (c)
		return c;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

int eng_grammar_vocab_init(const struct eng_tokenizer *t, struct eng_grammar_vocab **out)
{
	static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
	struct eng_grammar_vocab *v = calloc(1, sizeof(*v));
	int V = eng_tokenizer_n_vocab(t);
	size_t cap = 0, n = 0, mp = eng_tokenizer_max_piece(t) + 1;
	char *piece = malloc(mp);

	*out = NULL;
	if (!v || !piece)
		goto nomem;
	v->t = t;
	v->n_vocab = V;
	v->off = calloc((size_t)V, sizeof(*v->off));
	v->len = calloc((size_t)V, sizeof(*v->len));
	v->eog = calloc((size_t)V, sizeof(*v->eog));
	v->sorted = malloc((size_t)V * sizeof(*v->sorted));
	if (!v->off || !v->len || !v->eog || !v->sorted)
		goto nomem;
	for (int32_t id = 0; id < V; id++) {
		int k = eng_token_piece(t, id, false, piece, mp);

		v->eog[id] = eng_token_is_eog(t, id);
		if (k <= 0 || v->eog[id] || eng_token_is_control(t, id) || memchr(piece, 0, (size_t)k))
			continue;
		if (n + (size_t)k > cap) {
			size_t c2 = cap ? 2 * cap : 1 << 20;
			char *b;

			while (c2 < n + (size_t)k)
				c2 *= 2;
			if (!(b = realloc(v->bytes, c2)))
				goto nomem;
			v->bytes = b;
			cap = c2;
		}
		memcpy(v->bytes + n, piece, (size_t)k);
		v->off[id] = (uint32_t)n;
		v->len[id] = (uint32_t)k;
		n += (size_t)k;
		v->sorted[v->n_sorted++] = id;
	}
	pthread_mutex_lock(&sort_lock);
	sort_v = v;
	qsort(v->sorted, (size_t)v->n_sorted, sizeof(*v->sorted), cmp_piece);
	sort_v = NULL;
	pthread_mutex_unlock(&sort_lock);
	free(piece);
	*out = v;
	return 0;
nomem:
	free(piece);
	eng_grammar_vocab_free(v);
	return -ENOMEM;
}

void eng_grammar_vocab_free(struct eng_grammar_vocab *v)
{
	if (!v)
		return;
	free(v->bytes);
	free(v->off);
	free(v->len);
	free(v->eog);
	free(v->sorted);
	free(v);
}

bool eng_grammar_token_ok(const struct eng_grammar_vocab *v, struct eng_grammar_state *st, int32_t id)
{
	if (id < 0 || id >= v->n_vocab)
		return false;
	if (v->eog[id])
		return eng_grammar_state_complete(st);
	if (v->len[id] == 0)
		return false;
	return eng_grammar_state_allows(st, v->bytes + v->off[id], v->len[id]);
}

int eng_grammar_accept_token(const struct eng_grammar_vocab *v, struct eng_grammar_state *st, int32_t id)
{
	if (id < 0 || id >= v->n_vocab)
		return -EINVAL;
	if (v->eog[id])
		return eng_grammar_state_complete(st) ? 0 : -EINVAL;
	if (v->len[id] == 0)
		return -EINVAL;
	return eng_grammar_state_accept(st, v->bytes + v->off[id], v->len[id]);
}

// ---- the mask walk

static bool lvl_fit(struct eng_grammar_state *st, size_t depth)
{
	if (depth < st->n_lvl)
		return true;
	size_t n = depth + 16;
	struct sset *l = realloc(st->lvl, n * sizeof(*l));
	if (!l)
		return false;
	memset(l + st->n_lvl, 0, (n - st->n_lvl) * sizeof(*l));
	st->lvl = l;
	struct partial *p = realloc(st->lvl_pu, n * sizeof(*p));
	if (!p)
		return false;
	st->lvl_pu = p;
	st->n_lvl = n;
	return true;
}

/* Tokens sorted[lo, hi) share their first `depth` bytes, and the grammar
 * is in lvl[depth] / lvl_pu[depth] after them. */
static int walk(const struct eng_grammar_vocab *v, struct eng_grammar_state *st, int lo, int hi, size_t depth,
                bool *allowed)
{
	int n_ok = 0;

	/* tokens that end here come first (shorter sorts first) */
	while (lo < hi && v->len[v->sorted[lo]] == depth) {
		allowed[v->sorted[lo++]] = true;
		n_ok++;
	}
	if (!lvl_fit(st, depth + 1))
		return -ENOMEM;
	while (lo < hi) {
		uint8_t c = (uint8_t)v->bytes[v->off[v->sorted[lo]] + depth];
		int end = lo + 1, r;
		struct partial pu = st->lvl_pu[depth];
		uint32_t cp;

		while (end < hi && (uint8_t)v->bytes[v->off[v->sorted[end]] + depth] == c)
			end++;
		r = feed_byte(&pu, c, &cp);
		if (r == 1 && cp != 0) {
			if (!accept_chr(st, &st->lvl[depth], cp, &st->lvl[depth + 1]))
				return -ENOMEM;
			r = st->lvl[depth + 1].n ? 1 : -1;
		} else if (r == 0) {
			if (!sset_copy(&st->lvl[depth + 1], &st->lvl[depth]))
				return -ENOMEM;
			r = partial_ok(st, &st->lvl[depth + 1], pu) ? 1 : -1;
		} else {
			r = -1;
		}
		if (r == 1) {
			st->lvl_pu[depth + 1] = pu;
			int k = walk(v, st, lo, end, depth + 1, allowed);
			if (k < 0)
				return k;
			n_ok += k;
		}
		lo = end;
	}
	return n_ok;
}

int eng_grammar_mask(const struct eng_grammar_vocab *v, struct eng_grammar_state *st, bool *allowed)
{
	bool done = eng_grammar_state_complete(st);
	int n_ok = 0, lo = 0, k;

	memset(allowed, 0, (size_t)v->n_vocab * sizeof(*allowed));
	for (int32_t id = 0; id < v->n_vocab; id++)
		if (v->eog[id] && done) {
			allowed[id] = true;
			n_ok++;
		}
	if (!lvl_fit(st, 0) || !sset_copy(&st->lvl[0], &st->cur))
		return -ENOMEM;
	st->lvl_pu[0] = st->pu;
	while (lo < v->n_sorted && v->len[v->sorted[lo]] == 0)
		lo++;
	k = walk(v, st, lo, v->n_sorted, 0, allowed);
	return k < 0 ? k : n_ok + k;
}
