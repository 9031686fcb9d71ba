/*
 * grammar.c — the GBNF parser: text → the compiled rules of
 * grammar_internal.h, a line-for-line port of llama.cpp's
 * llama_grammar_parser (src/llama-grammar.cpp) so that every grammar
 * parses to the same rules (same helper rules for groups and repetitions,
 * same symbol ids), plus its validation (undefined rules, missing root,
 * left recursion).  Errors carry line:column of the offending byte.
 * The matcher is grammar_match.c.
 */
#include "grammar_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

#define MAX_REPETITION_THRESHOLD 2000

struct gvec {
	struct gelem *v;
	size_t n, cap;
};

struct psym {
	char *name;
	const char *first_ref; /* where it was first named (for "undefined rule") */
};

struct parser {
	const char *name;     /* for the log */
	const char *base;     /* NUL-terminated copy of the text */
	struct psym *syms;    /* [n_syms] id = index */
	size_t n_syms, cap_syms;
	struct gvec *rules;   /* [n_rules] by symbol id; n == 0: not defined (yet) */
	size_t n_rules;
	bool failed;
	bool nomem;
	const char *err_pos;
	char err[200];
};

// ---- errors

static const char *fail(struct parser *p, const char *pos, const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return NULL;
	p->failed = true;
	p->err_pos = pos;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	return NULL;
}

static const char *oom(struct parser *p)
{
	p->nomem = true;
	return fail(p, NULL, "out of memory");
}

static void where(const struct parser *p, const char *pos, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (const char *c = p->base; pos && c < pos && *c; c++) {
		if (*c == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)*c & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

// ---- small vectors

static bool gv_push(struct gvec *r, uint32_t type, uint32_t value)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		struct gelem *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return false;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = (struct gelem){ type, value };
	return true;
}

static bool gv_append(struct gvec *r, const struct gelem *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!gv_push(r, e[i].type, e[i].value))
			return false;
	return true;
}

// ---- symbols and rules

static long sym_find(const struct parser *p, const char *s, size_t len)
{
	for (size_t i = 0; i < p->n_syms; i++)
		if (strlen(p->syms[i].name) == len && !memcmp(p->syms[i].name, s, len))
			return (long)i;
	return -1;
}

static long sym_add(struct parser *p, const char *s, size_t len, const char *ref)
{
	char *name;

	if (p->n_syms == p->cap_syms) {
		size_t cap = p->cap_syms ? 2 * p->cap_syms : 32;
		struct psym *v = realloc(p->syms, cap * sizeof(*v));

		if (!v)
			return -1;
		p->syms = v;
		p->cap_syms = cap;
	}
	if (!(name = malloc(len + 1)))
		return -1;
	memcpy(name, s, len);
	name[len] = 0;
	p->syms[p->n_syms] = (struct psym){ name, ref };
	return (long)p->n_syms++;
}

/* llama_grammar_parser::get_symbol_id: the id of a name, new ids in order. */
static long get_symbol_id(struct parser *p, const char *s, size_t len, const char *ref)
{
	long id = sym_find(p, s, len);

	return id >= 0 ? id : sym_add(p, s, len, ref);
}

/* generate_symbol_id: "base_N" with N the new id. */
static long generate_symbol_id(struct parser *p, const char *base)
{
	char buf[320];
	int n = snprintf(buf, sizeof(buf), "%s_%zu", base, p->n_syms);

	return sym_add(p, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, NULL);
}

/* add_rule: rules[id] = r (r's storage moves in). */
static bool add_rule(struct parser *p, uint32_t id, struct gvec *r)
{
	if (p->n_rules <= id) {
		struct gvec *v = realloc(p->rules, (id + 1) * sizeof(*v));

		if (!v)
			return false;
		memset(v + p->n_rules, 0, (id + 1 - p->n_rules) * sizeof(*v));
		p->rules = v;
		p->n_rules = id + 1;
	}
	free(p->rules[id].v);
	p->rules[id] = *r;
	memset(r, 0, sizeof(*r));
	return true;
}

// ---- lexing (llama.cpp's helpers)

static bool is_digit_char(char c)
{
	return '0' <= c && c <= '9';
}

static bool is_word_char(char c)
{
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c == '-' || is_digit_char(c);
}

static const char *parse_space(const char *pos, bool newline_ok)
{
	while (*pos == ' ' || *pos == '\t' || *pos == '#' || (newline_ok && (*pos == '\r' || *pos == '\n'))) {
		if (*pos == '#')
			while (*pos && *pos != '\r' && *pos != '\n')
				pos++;
		else
			pos++;
	}
	return pos;
}

static const char *parse_name(struct parser *p, const char *src)
{
	const char *pos = src;

	while (is_word_char(*pos))
		pos++;
	return pos == src ? fail(p, src, "expecting name") : pos;
}

static const char *parse_int(struct parser *p, const char *src, uint64_t *out)
{
	const char *pos = src;
	uint64_t v = 0;

	while (is_digit_char(*pos)) {
		v = v > UINT64_MAX / 16 ? UINT64_MAX / 16 : v * 10 + (uint64_t)(*pos - '0');
		pos++;
	}
	*out = v;
	return pos == src ? fail(p, src, "expecting integer") : pos;
}

static const char *parse_hex(struct parser *p, const char *src, int size, uint32_t *out)
{
	uint32_t v = 0;
	int i;

	for (i = 0; i < size && src[i]; i++) {
		char c = src[i];

		v <<= 4;
		if ('a' <= c && c <= 'f')
			v += (uint32_t)(c - 'a' + 10);
		else if ('A' <= c && c <= 'F')
			v += (uint32_t)(c - 'A' + 10);
		else if ('0' <= c && c <= '9')
			v += (uint32_t)(c - '0');
		else
			break;
	}
	if (i != size)
		return fail(p, src, "expecting %d hex chars", size);
	*out = v;
	return src + size;
}

/* One UTF-8 character (the text was validated as UTF-8 at entry). */
static const char *decode_one(const char *src, uint32_t *out)
{
	static const int lookup[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
	uint8_t first = (uint8_t)*src;
	int len = lookup[first >> 4];
	uint32_t v = first & ((1u << (8 - len)) - 1);
	const char *pos = src + 1;

	for (; pos < src + len && *pos; pos++)
		v = (v << 6) + ((uint8_t)*pos & 0x3f);
	*out = v;
	return pos;
}

static const char *parse_char(struct parser *p, const char *src, uint32_t *out)
{
	if (*src == '\\') {
		switch (src[1]) {
		case 'x': return parse_hex(p, src + 2, 2, out);
		case 'u': return parse_hex(p, src + 2, 4, out);
		case 'U': return parse_hex(p, src + 2, 8, out);
		case 't': *out = '\t'; return src + 2;
		case 'r': *out = '\r'; return src + 2;
		case 'n': *out = '\n'; return src + 2;
		case '\\': case '"': case '[': case ']': case '-':
			*out = (uint8_t)src[1];
			return src + 2;
		default:
			return fail(p, src, "unknown escape");
		}
	}
	if (*src)
		return decode_one(src, out);
	return fail(p, src, "unexpected end of input");
}

// ---- grammar

static const char *parse_alternates(struct parser *p, const char *src, const char *rule_name, uint32_t rule_id,
                                    bool nested);

/* S{min,max} rewrite of rule[last..] (llama.cpp handle_repetitions). */
static bool repetitions(struct parser *p, const char *pos, const char *rule_name, struct gvec *rule,
                        size_t last, uint64_t *n_prev_rules, uint64_t min_t, uint64_t max_t)
{
	bool no_max = max_t == UINT64_MAX;
	uint64_t total = 1, n_opt;
	uint32_t last_rec = 0;
	struct gvec prev = { 0 }, rec = { 0 };
	bool ok = false;

	if (last == rule->n) {
		fail(p, pos, "expecting preceding item to */+/?/{");
		return false;
	}
	if (!gv_append(&prev, rule->v + last, rule->n - last))
		goto nomem;
	if (!no_max && max_t > 0)
		total = max_t;
	else if (min_t > 0)
		total = min_t;
	if (*n_prev_rules * total > MAX_REPETITION_THRESHOLD) {
		fail(p, pos, "number of rules that are going to be repeated multiplied by the new repetition "
		             "exceeds sane defaults (%d)", MAX_REPETITION_THRESHOLD);
		goto out;
	}
	if (min_t == 0)
		rule->n = last;
	else
		for (uint64_t i = 1; i < min_t; i++)
			if (!gv_append(rule, prev.v, prev.n))
				goto nomem;
	n_opt = no_max ? 1 : max_t - min_t;
	for (uint64_t i = 0; i < n_opt; i++) {
		long id = generate_symbol_id(p, rule_name);

		rec.n = 0;
		if (id < 0 || !gv_append(&rec, prev.v, prev.n))
			goto nomem;
		if ((i > 0 || no_max) && !gv_push(&rec, GRE_RULE_REF, no_max ? (uint32_t)id : last_rec))
			goto nomem;
		if (!gv_push(&rec, GRE_ALT, 0) || !gv_push(&rec, GRE_END, 0) || !add_rule(p, (uint32_t)id, &rec))
			goto nomem;
		last_rec = (uint32_t)id;
	}
	if (n_opt > 0 && !gv_push(rule, GRE_RULE_REF, last_rec))
		goto nomem;
	*n_prev_rules *= total;
	ok = true;
	goto out;
nomem:
	oom(p);
out:
	free(prev.v);
	free(rec.v);
	return ok;
}

static const char *parse_braces(struct parser *p, const char *pos, bool nested, uint64_t *mn, uint64_t *mx)
{
	pos = parse_space(pos + 1, nested);
	if (!is_digit_char(*pos))
		return fail(p, pos, "expecting an int");
	if (!(pos = parse_int(p, pos, mn)))
		return NULL;
	pos = parse_space(pos, nested);
	*mx = UINT64_MAX;
	if (*pos == '}') {
		*mx = *mn;
		pos = parse_space(pos + 1, nested);
	} else if (*pos == ',') {
		pos = parse_space(pos + 1, nested);
		if (is_digit_char(*pos)) {
			if (!(pos = parse_int(p, pos, mx)))
				return NULL;
			pos = parse_space(pos, nested);
		}
		if (*pos != '}')
			return fail(p, pos, "expecting '}'");
		pos = parse_space(pos + 1, nested);
	} else {
		return fail(p, pos, "expecting ','");
	}
	if (*mn > MAX_REPETITION_THRESHOLD)
		return fail(p, pos, "number of repetitions exceeds sane defaults (%d)", MAX_REPETITION_THRESHOLD);
	if (*mx != UINT64_MAX && *mx > MAX_REPETITION_THRESHOLD)
		*mx = UINT64_MAX;
	return pos;
}

static const char *parse_class(struct parser *p, const char *pos, struct gvec *rule, bool nested)
{
	uint32_t start = GRE_CHAR, c;
	size_t first = rule->n;

	pos++;
	if (*pos == '^') {
		pos++;
		start = GRE_CHAR_NOT;
	}
	while (*pos != ']') {
		if (!*pos)
			return fail(p, pos, "unexpected end of input");
		if (!(pos = parse_char(p, pos, &c)))
			return NULL;
		if (!gv_push(rule, first < rule->n ? GRE_CHAR_ALT : start, c))
			return oom(p);
		if (pos[0] == '-' && pos[1] != ']') {
			if (!pos[1])
				return fail(p, pos + 1, "unexpected end of input");
			if (!(pos = parse_char(p, pos + 1, &c)))
				return NULL;
			if (!gv_push(rule, GRE_CHAR_RNG_UPPER, c))
				return oom(p);
		}
	}
	return parse_space(pos + 1, nested);
}

static const char *parse_sequence(struct parser *p, const char *src, const char *rule_name, struct gvec *rule,
                                  bool nested)
{
	size_t last = rule->n;
	const char *pos = src;
	uint64_t n_prev = 1, mn = 0, mx = 0;
	uint32_t c;

	while (pos && *pos) {
		if (*pos == '"') {
			pos++;
			last = rule->n;
			n_prev = 1;
			while (*pos != '"') {
				if (!*pos)
					return fail(p, pos, "unexpected end of input");
				if (!(pos = parse_char(p, pos, &c)))
					return NULL;
				if (!gv_push(rule, GRE_CHAR, c))
					return oom(p);
			}
			pos = parse_space(pos + 1, nested);
		} else if (*pos == '[') {
			last = rule->n;
			n_prev = 1;
			pos = parse_class(p, pos, rule, nested);
		} else if (*pos == '<' || *pos == '!') {
			return fail(p, pos, "token references (<[id]>, <token>) are not supported");
		} else if (is_word_char(*pos)) {
			const char *end = parse_name(p, pos);
			long id = get_symbol_id(p, pos, (size_t)(end - pos), pos);

			if (id < 0)
				return oom(p);
			pos = parse_space(end, nested);
			last = rule->n;
			n_prev = 1;
			if (!gv_push(rule, GRE_RULE_REF, (uint32_t)id))
				return oom(p);
		} else if (*pos == '(') {
			size_t before = p->n_syms;
			long id;

			pos = parse_space(pos + 1, true);
			if ((id = generate_symbol_id(p, rule_name)) < 0)
				return oom(p);
			if (!(pos = parse_alternates(p, pos, rule_name, (uint32_t)id, true)))
				return NULL;
			n_prev = p->n_syms - before > 1 ? p->n_syms - before : 1;
			last = rule->n;
			if (!gv_push(rule, GRE_RULE_REF, (uint32_t)id))
				return oom(p);
			if (*pos != ')')
				return fail(p, pos, "expecting ')'");
			pos = parse_space(pos + 1, nested);
		} else if (*pos == '.') {
			last = rule->n;
			n_prev = 1;
			if (!gv_push(rule, GRE_CHAR_ANY, 0))
				return oom(p);
			pos = parse_space(pos + 1, nested);
		} else if (*pos == '*' || *pos == '+' || *pos == '?') {
			char op = *pos;
			const char *at = pos;

			pos = parse_space(pos + 1, nested);
			mn = op == '+' ? 1 : 0;
			mx = op == '?' ? 1 : UINT64_MAX;
			if (!repetitions(p, at, rule_name, rule, last, &n_prev, mn, mx))
				return NULL;
		} else if (*pos == '{') {
			const char *at = pos;

			if (!(pos = parse_braces(p, pos, nested, &mn, &mx)))
				return NULL;
			if (!repetitions(p, at, rule_name, rule, last, &n_prev, mn, mx))
				return NULL;
		} else {
			break;
		}
	}
	return pos;
}

static const char *parse_alternates(struct parser *p, const char *src, const char *rule_name, uint32_t rule_id,
                                    bool nested)
{
	struct gvec rule = { 0 };
	const char *pos = parse_sequence(p, src, rule_name, &rule, nested);

	while (pos && *pos == '|') {
		if (!gv_push(&rule, GRE_ALT, 0)) {
			pos = oom(p);
			break;
		}
		pos = parse_space(pos + 1, true);
		pos = parse_sequence(p, pos, rule_name, &rule, nested);
	}
	if (pos && (!gv_push(&rule, GRE_END, 0) || !add_rule(p, rule_id, &rule)))
		pos = oom(p);
	free(rule.v);
	return pos;
}

static const char *parse_rule(struct parser *p, const char *src)
{
	const char *name_end = parse_name(p, src), *pos;
	char *name;
	long id;

	if (!name_end)
		return NULL;
	pos = parse_space(name_end, false);
	if ((id = get_symbol_id(p, src, (size_t)(name_end - src), src)) < 0)
		return oom(p);
	if (!(pos[0] == ':' && pos[1] == ':' && pos[2] == '='))
		return fail(p, pos, "expecting ::=");
	pos = parse_space(pos + 3, true);
	if (!(name = strndup(src, (size_t)(name_end - src))))
		return oom(p);
	pos = parse_alternates(p, pos, name, (uint32_t)id, false);
	free(name);
	if (!pos)
		return NULL;
	if (*pos == '\r')
		pos += pos[1] == '\n' ? 2 : 1;
	else if (*pos == '\n')
		pos++;
	else if (*pos)
		return fail(p, pos, "expecting newline or end");
	return parse_space(pos, true);
}

// ---- validation

static bool end_of_seq(const struct gelem *e)
{
	return e->type == GRE_END || e->type == GRE_ALT;
}

/* llama_grammar_detect_left_recursion. */
static bool left_rec(const struct parser *p, size_t r, bool *visited, bool *in_progress, bool *may_be_empty)
{
	const struct gvec *rule = &p->rules[r];
	bool at_start = true, recurse = true;

	if (in_progress[r])
		return true;
	in_progress[r] = true;
	for (size_t i = 0; i < rule->n; i++) {
		if (end_of_seq(&rule->v[i])) {
			if (at_start) {
				may_be_empty[r] = true;
				break;
			}
			at_start = true;
		} else {
			at_start = false;
		}
	}
	for (size_t i = 0; i < rule->n; i++) {
		const struct gelem *e = &rule->v[i];

		if (e->type == GRE_RULE_REF && recurse) {
			if (left_rec(p, e->value, visited, in_progress, may_be_empty))
				return true;
			if (!may_be_empty[e->value])
				recurse = false;
		} else if (end_of_seq(e)) {
			recurse = true;
		} else {
			recurse = false;
		}
	}
	in_progress[r] = false;
	visited[r] = true;
	return false;
}

static bool validate(struct parser *p)
{
	bool *flags;
	size_t n = p->n_rules;
	long root;

	for (size_t i = 0; i < p->n_syms; i++)
		if (i >= n || p->rules[i].n == 0) {
			fail(p, p->syms[i].first_ref, "undefined rule identifier '%s'", p->syms[i].name);
			return false;
		}
	if ((root = sym_find(p, "root", 4)) < 0) {
		fail(p, NULL, "grammar does not contain a 'root' symbol");
		return false;
	}
	if (!(flags = calloc(3 * n + 1, sizeof(bool)))) {
		oom(p);
		return false;
	}
	for (size_t i = 0; i < n && !p->failed; i++)
		if (!flags[i] && left_rec(p, i, flags, flags + n, flags + 2 * n))
			fail(p, p->syms[i].first_ref, "left recursion detected for nonterminal '%s' (index %zu)",
			     p->syms[i].name, i);
	free(flags);
	return !p->failed;
}

static int compile(struct parser *p, struct eng_grammar **out)
{
	struct eng_grammar *g = calloc(1, sizeof(*g));
	size_t total = 0, k = 0;

	for (size_t i = 0; i < p->n_rules; i++)
		total += p->rules[i].n;
	if (!g || !(g->e = malloc(total * sizeof(*g->e))) ||
	    !(g->rule_off = malloc(p->n_rules * sizeof(*g->rule_off)))) {
		eng_grammar_unref(g);
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->n_rules; i++) {
		g->rule_off[i] = (uint32_t)k;
		memcpy(g->e + k, p->rules[i].v, p->rules[i].n * sizeof(*g->e));
		k += p->rules[i].n;
	}
	g->n_e = (uint32_t)total;
	g->n_rules = (uint32_t)p->n_rules;
	g->root = (uint32_t)sym_find(p, "root", 4);
	g->refs = 1;
	*out = g;
	return 0;
}

/* Strict UTF-8 without NUL; returns the offset of the first bad byte or len. */
static size_t utf8_prefix(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], k;
		uint32_t cp;

		if (c == 0)
			return i;
		if (c < 0x80) {
			i++;
			continue;
		}
		k = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
		if (!k || i + k >= n)
			return i;
		cp = c & (0x3f >> k);
		for (unsigned j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += k + 1;
	}
	return n;
}

int eng_grammar_parse(const char *name, const char *text, size_t len, struct eng_grammar **out)
{
	struct parser p = { .name = name ? name : "(grammar)" };
	char *copy = NULL;
	const char *pos;
	int rc = -EINVAL, line, col;
	size_t bad;

	*out = NULL;
	if (len > ENG_GRAMMAR_MAX_TEXT) {
		LOG_ERR("grammar %s: %zu bytes (at most %u)", p.name, len, ENG_GRAMMAR_MAX_TEXT);
		return -EINVAL;
	}
	if (!(copy = malloc(len + 1)))
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = 0;
	p.base = copy;
	if ((bad = utf8_prefix((const unsigned char *)copy, len)) < len) {
		fail(&p, copy + bad, "%s byte 0x%02x", copy[bad] ? "invalid UTF-8" : "NUL", (unsigned char)copy[bad]);
		goto report;
	}
	pos = parse_space(copy, true);
	while (pos && *pos)
		pos = parse_rule(&p, pos);
	if (!p.failed && p.n_rules == 0)
		fail(&p, copy, "empty grammar (no rules)");
	if (p.failed || !validate(&p))
		goto report;
	rc = compile(&p, out);
	goto out;
report:
	if (p.nomem) {
		rc = -ENOMEM;
		goto out;
	}
	if (p.err_pos) {
		where(&p, p.err_pos, &line, &col);
		LOG_ERR("grammar %s:%d:%d: %s", p.name, line, col, p.err);
	} else {
		LOG_ERR("grammar %s: %s", p.name, p.err);
	}
out:
	for (size_t i = 0; i < p.n_syms; i++)
		free(p.syms[i].name);
	for (size_t i = 0; i < p.n_rules; i++)
		free(p.rules[i].v);
	free(p.syms);
	free(p.rules);
	free(copy);
	return rc;
}

struct eng_grammar *eng_grammar_ref(struct eng_grammar *g)
{
	if (g)
		__atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
	return g;
}

void eng_grammar_unref(struct eng_grammar *g)
{
	if (!g || (g->refs && __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) > 0))
		return;
	free(g->e);
	free(g->rule_off);
	free(g);
}

int eng_grammar_n_rules(const struct eng_grammar *g)
{
	return (int)g->n_rules;
}
