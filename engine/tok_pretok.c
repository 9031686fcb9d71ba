/*
 * tok_pretok.c — BPE pre-tokenizers: split a text (as code points) into the
 * words that BPE merges run inside, per tokenizer.ggml.pre.
 *
 * llama.cpp (unicode.cpp, unicode_regex_split) applies a list of regexes in
 * turn, each one re-splitting every piece the previous one produced; text a
 * regex does not match stays a piece of its own.  The GPT-2 and Llama-3
 * regexes run through hand-written matchers there
 * (unicode_regex_split_custom_gpt2/_llama3); the others through std::regex
 * over a "collapsed" text in which every non-ASCII code point stands for its
 * class.  Here every regex is a hand-written matcher with the same
 * (ECMAScript, first-alternative-wins, greedy with backtracking) result:
 *
 *   qwen2's regex equals llama3's with \p{N} instead of \p{N}{1,3}; working
 *   each alternative through (see split_llama3) shows the std::regex result
 *   is the llama3 matcher with digit runs cut after every digit.
 *
 * No regex engine, no recursion; every matcher is linear in its input.
 */
#include "tok_internal.h"

#include <errno.h>
#include <stdlib.h>

#include "unicode.h"

/* One piece [a, b) of the code point array; outside it, code points read
 * as OUT_OF_RANGE with no flags (llama.cpp's _get_cpt/_get_flags). */
struct piece {
	const uint32_t *cpt;
	const uint16_t *flags;
	size_t a, b;
	size_t prev_end;       /* end of the last word emitted */
	struct tok_svec *out;
	int err;
};

#define OUT_OF_RANGE 0xFFFFFFFFu

static inline uint32_t get_cpt(const struct piece *p, size_t pos)
{
	return pos >= p->a && pos < p->b ? p->cpt[pos] : OUT_OF_RANGE;
}

static inline unsigned get_flags(const struct piece *p, size_t pos)
{
	return pos >= p->a && pos < p->b ? p->flags[pos] : 0;
}

/* Emits the word [prev_end, end) if non-empty; returns its length. */
static size_t add_word(struct piece *p, size_t end)
{
	size_t len = end - p->prev_end;
	if (len > 0 && tok_svec_push(p->out, len) != 0)
		p->err = -ENOMEM;
	p->prev_end = end;
	return len;
}

#define IS_LNW(f) ((f) & (ENG_UNI_LETTER | ENG_UNI_NUMBER | ENG_UNI_WHITESPACE))

static inline uint32_t ascii_lower(uint32_t c)
{
	/* unicode_tolower maps only two non-ASCII code points to ASCII
	 * (U+0130 → i, U+212A → k), neither of which a contraction uses */
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd at pos: returns the match length (0 = none). */
static size_t contraction(const struct piece *p, size_t pos, bool icase)
{
	if (get_cpt(p, pos) != '\'' || pos + 1 >= p->b)
		return 0;
	uint32_t c1 = get_cpt(p, pos + 1);
	if (icase)
		c1 = ascii_lower(c1);
	if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
		return 2;
	if (pos + 2 >= p->b)
		return 0;
	uint32_t c2 = get_cpt(p, pos + 2);
	if (icase)
		c2 = ascii_lower(c2);
	if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
		return 3;
	return 0;
}

// ---- 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)

static void split_gpt2(struct piece *p)
{
	size_t pos = p->a;

	while (pos < p->b) {
		uint32_t cpt = get_cpt(p, pos);
		unsigned flags = get_flags(p, pos);
		size_t n = contraction(p, pos, false);
		if (n) {
			pos += add_word(p, pos + n);
			continue;
		}
		unsigned f2 = cpt == ' ' ? get_flags(p, pos + 1) : flags;
		if (f2 & ENG_UNI_LETTER) { /* <space>?\p{L}+ */
			pos += cpt == ' ';
			while (f2 & ENG_UNI_LETTER)
				f2 = get_flags(p, ++pos);
			add_word(p, pos);
			continue;
		}
		if (f2 & ENG_UNI_NUMBER) { /* <space>?\p{N}+ */
			pos += cpt == ' ';
			while (f2 & ENG_UNI_NUMBER)
				f2 = get_flags(p, ++pos);
			add_word(p, pos);
			continue;
		}
		if (!IS_LNW(f2) && f2) { /* <space>?[^\s\p{L}\p{N}]+ */
			pos += cpt == ' ';
			while (!IS_LNW(f2) && f2)
				f2 = get_flags(p, ++pos);
			add_word(p, pos);
			continue;
		}
		size_t n_ws = 0;
		while (get_flags(p, pos + n_ws) & ENG_UNI_WHITESPACE)
			n_ws++;
		if (n_ws > 1 && get_cpt(p, pos + n_ws) != OUT_OF_RANGE) { /* \s+(?!\S) */
			pos += n_ws - 1;
			add_word(p, pos);
			continue;
		}
		if (n_ws > 0) { /* \s+ */
			pos += n_ws;
			add_word(p, pos);
			continue;
		}
		add_word(p, ++pos); /* no match: a piece of its own */
	}
}

// ---- llama3 / qwen2
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)        A1
//   [^\r\n\p{L}\p{N}]?\p{L}+            A2
//   \p{N}{1,3}  (qwen2: \p{N})          A3
//    ?[^\s\p{L}\p{N}]+[\r\n]*           A4
//   \s*[\r\n]+                          A5  (backtracks to the last \r or \n of the run)
//   \s+(?!\S)                           A6  (the run less its last char unless at the end)
//   \s+                                 A7
// Every code point starts a match of one of them (L → A2, N → A3,
// whitespace → A5-A7, anything else → A4), so no text is left unmatched.

static void split_llama3(struct piece *p, size_t max_digits)
{
	size_t pos = p->a;

	while (pos < p->b) {
		uint32_t cpt = get_cpt(p, pos);
		unsigned flags = get_flags(p, pos);
		size_t n = contraction(p, pos, true);
		if (n) {
			pos += add_word(p, pos + n);
			continue;
		}
		if (!(cpt == '\r' || cpt == '\n' || (flags & ENG_UNI_NUMBER))) {
			if ((flags & ENG_UNI_LETTER) || (get_flags(p, pos + 1) & ENG_UNI_LETTER)) {
				pos++;
				while (get_flags(p, pos) & ENG_UNI_LETTER)
					pos++;
				add_word(p, pos);
				continue;
			}
		}
		if (flags & ENG_UNI_NUMBER) {
			size_t ini = pos;
			while (get_flags(p, pos) & ENG_UNI_NUMBER) {
				if (++pos - ini >= max_digits) {
					add_word(p, pos);
					ini = pos;
				}
			}
			add_word(p, pos);
			continue;
		}
		unsigned f2 = cpt == ' ' ? get_flags(p, pos + 1) : flags;
		if (!IS_LNW(f2) && flags) {
			pos += cpt == ' ';
			while (!IS_LNW(f2) && f2)
				f2 = get_flags(p, ++pos);
			uint32_t c2 = get_cpt(p, pos);
			while (c2 == '\r' || c2 == '\n')
				c2 = get_cpt(p, ++pos);
			add_word(p, pos);
			continue;
		}
		size_t n_ws = 0, last_rn = 0;
		while (get_flags(p, pos + n_ws) & ENG_UNI_WHITESPACE) {
			uint32_t c2 = get_cpt(p, pos + n_ws);
			if (c2 == '\r' || c2 == '\n')
				last_rn = pos + n_ws + 1;
			n_ws++;
		}
		if (last_rn > 0) {
			pos = last_rn;
			add_word(p, pos);
			continue;
		}
		if (n_ws > 1 && get_cpt(p, pos + n_ws) != OUT_OF_RANGE) {
			pos += n_ws - 1;
			add_word(p, pos);
			continue;
		}
		if (n_ws > 0) {
			pos += n_ws;
			add_word(p, pos);
			continue;
		}
		add_word(p, ++pos);
	}
}

// ---- simple class regexes (std::regex path in llama.cpp): matches and the
// gaps between them both become pieces.

enum cls {
	CLS_PUNCT,          /* [\p{P}\$\+<=>\^~\|]+ */
	CLS_PUNCT_BACKTICK, /* [\p{P}\$\+<=>\^~\|`]+ (falcon) */
	CLS_NUMBER,         /* \p{N}+ */
};

static bool in_class(enum cls c, uint32_t cpt, unsigned flags)
{
	switch (c) {
	case CLS_PUNCT:
	case CLS_PUNCT_BACKTICK:
		if (flags & ENG_UNI_PUNCT)
			return true;
		if (c == CLS_PUNCT_BACKTICK && cpt == '`')
			return true;
		return cpt == '$' || cpt == '+' || cpt == '<' || cpt == '=' || cpt == '>' ||
		       cpt == '^' || cpt == '~' || cpt == '|';
	case CLS_NUMBER:
		return flags & ENG_UNI_NUMBER;
	}
	return false;
}

/* Runs of the class and runs of the rest alternate. */
static void split_runs(struct piece *p, enum cls c)
{
	size_t pos = p->a;
	while (pos < p->b) {
		bool in = in_class(c, p->cpt[pos], p->flags[pos]);
		while (pos < p->b && in_class(c, p->cpt[pos], p->flags[pos]) == in)
			pos++;
		add_word(p, pos);
	}
}

/* \p{N}: every number code point alone; the rest in runs. */
static void split_each_number(struct piece *p)
{
	size_t pos = p->a;
	while (pos < p->b) {
		if (p->flags[pos] & ENG_UNI_NUMBER) {
			add_word(p, ++pos);
			continue;
		}
		while (pos < p->b && !(p->flags[pos] & ENG_UNI_NUMBER))
			pos++;
		add_word(p, pos);
	}
}

/* [0-9][0-9][0-9]: leftmost non-overlapping triples of ASCII digits. */
static void split_digit3(struct piece *p)
{
	size_t pos = p->a;
	while (pos < p->b) {
		if (pos + 3 <= p->b) {
			const uint32_t *c = p->cpt + pos;
			if (c[0] >= '0' && c[0] <= '9' && c[1] >= '0' && c[1] <= '9' && c[2] >= '0' &&
			    c[2] <= '9') {
				add_word(p, pos); /* the gap before, if any */
				pos += 3;
				add_word(p, pos);
				continue;
			}
		}
		pos++;
	}
	add_word(p, p->b);
}

// ---- the regex lists per pre-tokenizer

enum stage {
	ST_END = 0,
	ST_GPT2,
	ST_LLAMA3,
	ST_QWEN2,
	ST_PUNCT,
	ST_PUNCT_BACKTICK,
	ST_NUMBER_RUNS,
	ST_EACH_NUMBER,
	ST_DIGIT3,
};

static const enum stage *stages_of(enum tok_pre pre)
{
	static const enum stage def[] = {ST_PUNCT, ST_GPT2, ST_NUMBER_RUNS, ST_DIGIT3, ST_END};
	static const enum stage gpt2[] = {ST_GPT2, ST_END};
	static const enum stage llama3[] = {ST_LLAMA3, ST_END};
	static const enum stage qwen2[] = {ST_QWEN2, ST_END};
	static const enum stage starcoder[] = {ST_EACH_NUMBER, ST_GPT2, ST_END};
	static const enum stage falcon[] = {ST_PUNCT_BACKTICK, ST_GPT2, ST_DIGIT3, ST_END};

	switch (pre) {
	case TOK_PRE_GPT2: return gpt2;
	case TOK_PRE_LLAMA3: return llama3;
	case TOK_PRE_QWEN2: return qwen2;
	case TOK_PRE_STARCODER: return starcoder;
	case TOK_PRE_FALCON: return falcon;
	case TOK_PRE_DEFAULT: break;
	}
	return def;
}

static void run_stage(enum stage st, struct piece *p)
{
	switch (st) {
	case ST_GPT2: split_gpt2(p); break;
	case ST_LLAMA3: split_llama3(p, 3); break;
	case ST_QWEN2: split_llama3(p, 1); break;
	case ST_PUNCT: split_runs(p, CLS_PUNCT); break;
	case ST_PUNCT_BACKTICK: split_runs(p, CLS_PUNCT_BACKTICK); break;
	case ST_NUMBER_RUNS: split_runs(p, CLS_NUMBER); break;
	case ST_EACH_NUMBER: split_each_number(p); break;
	case ST_DIGIT3: split_digit3(p); break;
	case ST_END: break;
	}
}

int tok_pretokenize(enum tok_pre pre, const uint32_t *cpt, const uint16_t *flags, size_t n,
                    struct tok_svec *out)
{
	const enum stage *st = stages_of(pre);
	struct tok_svec cur = {0}, next = {0};
	int err = 0;

	if (n == 0)
		return 0;
	if (tok_svec_push(&cur, n) != 0) {
		err = -ENOMEM;
		goto free_vecs;
	}
	for (; *st != ST_END; st++) {
		size_t start = 0;
		next.n = 0;
		for (size_t i = 0; i < cur.n; i++) {
			struct piece p = {cpt, flags, start, start + cur.v[i], start, &next, 0};
			run_stage(*st, &p);
			if (p.err) {
				err = p.err;
				goto free_vecs;
			}
			start += cur.v[i];
		}
		struct tok_svec tmp = cur;
		cur = next;
		next = tmp;
	}
	for (size_t i = 0; i < cur.n; i++) {
		if (tok_svec_push(out, cur.v[i]) != 0) {
			err = -ENOMEM;
			goto free_vecs;
		}
	}
free_vecs:
	free(cur.v);
	free(next.v);
	return err;
}
