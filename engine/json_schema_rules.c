/*
 * json_schema_rules.c — the rule table of a JSON Schema conversion and
 * the rule bodies llama.cpp's json-schema-to-grammar builds, so that a
 * schema converts to the same GBNF text as there: the built-in rules
 * (PRIMITIVE_RULES, STRING_FORMAT_RULES), _add_rule's naming,
 * build_repetition, build_min_max_int (integer ranges as digit classes),
 * _not_strings (a trie) and _build_object_rule (required properties in
 * order, then every optional suffix as its own "-rest" rule).
 *
 * Everything allocates from the conversion's pool (S()); see
 * json_schema_internal.h.
 */
#define _GNU_SOURCE /* vasprintf */
#include "json_schema_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

#define MAX_RULES 20000 /* a schema that needs more is refused */

// ---- the pool

static void *pool_keep(struct js_conv *c, void *p)
{
	if (!p) {
		c->nomem = c->failed = true;
		return NULL;
	}
	if (c->n_pool == c->cap_pool) {
		int cap = c->cap_pool ? 2 * c->cap_pool : 256;
		void **v = realloc(c->pool, sizeof(*v) * (size_t)cap);

		if (!v) {
			free(p);
			c->nomem = c->failed = true;
			return NULL;
		}
		c->pool = v;
		c->cap_pool = cap;
	}
	c->pool[c->n_pool++] = p;
	return p;
}

const char *S(struct js_conv *c, const char *fmt, ...)
{
	va_list ap;
	char *p = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		p = NULL;
	p = pool_keep(c, p);
	return p ? p : "";
}

const char *js_fail(struct js_conv *c, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!c->failed) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		LOG_ERR("json_schema %s: %s: %s", c->what, path && *path ? path : "#", msg);
	}
	c->failed = true;
	return "";
}

static const char *sb_take(struct js_conv *c, struct eng_sb *b)
{
	if (b->oom) {
		eng_sb_free(b);
		c->nomem = c->failed = true;
		return "";
	}
	if (!b->p)
		return "";
	return pool_keep(c, b->p) ? b->p : "";
}

// ---- rules

static const struct {
	const char *name, *body, *deps[6];
} prims[] = {
	{ "boolean", "(\"true\" | \"false\")", { 0 } },
	{ "decimal-part", "[0-9]{1,16}", { 0 } },
	{ "integral-part", "[0] | [1-9] [0-9]{0,15}", { 0 } },
	{ "number", "(\"-\"? integral-part) (\".\" decimal-part)? ([eE] [-+]? integral-part)?",
	  { "integral-part", "decimal-part" } },
	{ "integer", "(\"-\"? integral-part)", { "integral-part" } },
	{ "value", "object | array | string | number | boolean | null",
	  { "object", "array", "string", "number", "boolean", "null" } },
	{ "object", "\"{\" space ( string \":\" space value (\",\" space string \":\" space value)* )? space \"}\"",
	  { "string", "value" } },
	{ "array", "\"[\" space ( value (\",\" space value)* )? space \"]\"", { "value" } },
	{ "uuid", "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" "
	          "[0-9a-fA-F]{12} \"\\\"\"", { 0 } },
	{ "char", "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4})", { 0 } },
	{ "string", "\"\\\"\" char* \"\\\"\"", { "char" } },
	{ "null", "\"null\"", { 0 } },
	/* STRING_FORMAT_RULES */
	/* promptfs: a real calendar date (llama.cpp's rule allows 02-31 and year 0000) */
	{ "date", "( [0-9]{3} [1-9] | [0-9]{2} [1-9] \"0\" | [0-9] [1-9] \"00\" | [1-9] \"000\" ) \"-\" "
	          "( ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] ) | "
	          "( \"0\" [469] | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) | "
	          "\"02\" \"-\" ( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] ) ) | "
	          "( [0-9]{2} ( \"0\" [48] | [2468] [048] | [13579] [26] ) | ( \"0\" [48] | [2468] [048] | [13579] [26] ) "
	          "\"00\" ) \"-02-29\"", { 0 } },
	{ "time", "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{3} )? ( \"Z\" | "
	          "( \"+\" | \"-\" ) ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )", { 0 } },
	{ "date-time", "date \"T\" time", { "date", "time" } },
	{ "date-string", "\"\\\"\" date \"\\\"\"", { "date" } },
	{ "time-string", "\"\\\"\" time \"\\\"\"", { "time" } },
	{ "date-time-string", "\"\\\"\" date-time \"\\\"\"", { "date-time" } },
};
#define N_PRIMS ((int)(sizeof(prims) / sizeof(prims[0])))

static int prim_index(const char *name)
{
	for (int i = 0; i < N_PRIMS; i++)
		if (!strcmp(prims[i].name, name))
			return i;
	return -1;
}

bool js_reserved_name(const char *name)
{
	return !strcmp(name, "root") || prim_index(name) >= 0;
}

static const char *find_rule(const struct js_conv *c, const char *name)
{
	for (int i = 0; i < c->n_rules; i++)
		if (!strcmp(c->rules[i].name, name))
			return c->rules[i].body;
	return NULL;
}

static void set_rule(struct js_conv *c, const char *name, const char *body)
{
	for (int i = 0; i < c->n_rules; i++)
		if (!strcmp(c->rules[i].name, name)) {
			c->rules[i].body = body;
			return;
		}
	if (c->n_rules >= MAX_RULES) {
		js_fail(c, NULL, "the grammar would need more than %d rules", MAX_RULES);
		return;
	}
	if (c->n_rules == c->cap_rules) {
		int cap = c->cap_rules ? 2 * c->cap_rules : 64;
		struct js_rule *v = realloc(c->rules, sizeof(*v) * (size_t)cap);

		if (!v) {
			c->nomem = c->failed = true;
			return;
		}
		c->rules = v;
		c->cap_rules = cap;
	}
	c->rules[c->n_rules++] = (struct js_rule){ name, body };
}

static bool rule_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
}

const char *js_rule_name(struct js_conv *c, const char *name)
{
	struct eng_sb b = { 0 };

	for (const char *p = name; *p;) {
		if (rule_char(*p)) {
			eng_sb_add(&b, p++, 1);
			continue;
		}
		while (*p && !rule_char(*p))
			p++;
		eng_sb_add(&b, "-", 1);
	}
	return sb_take(c, &b);
}

bool js_has_rule(const struct js_conv *c, const char *name)
{
	return find_rule(c, name) != NULL;
}

const char *js_add_rule(struct js_conv *c, const char *name, const char *body)
{
	const char *esc, *cur;

	if (c->failed)
		return "";
	esc = js_rule_name(c, name);
	cur = find_rule(c, esc);
	if (!cur || !strcmp(cur, body)) {
		set_rule(c, esc, body);
		return esc;
	}
	for (int i = 0;; i++) {
		const char *key = S(c, "%s%d", esc, i);

		if (c->failed)
			return "";
		cur = find_rule(c, key);
		if (!cur || !strcmp(cur, body)) {
			set_rule(c, key, body);
			return key;
		}
	}
}

const char *js_add_primitive(struct js_conv *c, const char *name, const char *prim)
{
	int k = prim_index(prim);
	const char *n;

	if (k < 0)
		return js_fail(c, NULL, "no built-in rule '%s' (a bug)", prim);
	n = js_add_rule(c, name, prims[k].body);
	for (int d = 0; d < 6 && prims[k].deps[d]; d++)
		if (!find_rule(c, prims[k].deps[d]))
			js_add_primitive(c, prims[k].deps[d], prims[k].deps[d]);
	return n;
}

// ---- literals and constants

const char *js_literal(struct js_conv *c, const char *s, size_t n)
{
	struct eng_sb b = { 0 };

	eng_sb_add(&b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		const char *esc = s[i] == '\r' ? "\\r" : s[i] == '\n' ? "\\n" : s[i] == '"' ? "\\\""
		                : s[i] == '\\' ? "\\\\" : NULL;

		if (esc)
			eng_sb_str(&b, esc);
		else
			eng_sb_add(&b, s + i, 1);
	}
	eng_sb_add(&b, "\"", 1);
	return sb_take(c, &b);
}

const char *js_constant(struct js_conv *c, const struct eng_json *v)
{
	struct eng_sb b = { 0 };
	const char *text;

	eng_json_dump(&b, v);
	text = sb_take(c, &b);
	return js_literal(c, text, strlen(text));
}

// ---- repetitions

const char *js_repetition(struct js_conv *c, const char *item, int min, int max, const char *sep)
{
	bool has_max = max >= 0;
	const char *r;

	if (max == 0)
		return "";
	if (min == 0 && max == 1)
		return S(c, "%s?", item);
	if (!sep || !*sep) {
		if (min == 1 && !has_max)
			return S(c, "%s+", item);
		if (min == 0 && !has_max)
			return S(c, "%s*", item);
		return has_max ? S(c, "%s{%d,%d}", item, min, max) : S(c, "%s{%d,}", item, min);
	}
	r = S(c, "%s %s", item, js_repetition(c, S(c, "(%s %s)", sep, item), min == 0 ? 0 : min - 1,
	                                      has_max ? max - 1 : -1, NULL));
	return min == 0 ? S(c, "(%s)?", r) : r;
}

// ---- integer ranges (build_min_max_int)

static void digit_range(struct eng_sb *o, char from, char to)
{
	if (from == to)
		eng_sb_printf(o, "[%c]", from);
	else
		eng_sb_printf(o, "[%c-%c]", from, to);
}

static void more_digits(struct eng_sb *o, int min, int max)
{
	eng_sb_str(o, "[0-9]");
	if (min == max && min == 1)
		return;
	eng_sb_printf(o, "{%d", min);
	if (max != min) {
		eng_sb_str(o, ",");
		if (max >= 0)
			eng_sb_printf(o, "%d", max);
	}
	eng_sb_str(o, "}");
}

static bool all_of(const char *s, size_t n, char ch)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ch)
			return false;
	return true;
}

/* from and to have the same number of digits (n). */
static void uniform_range(struct eng_sb *o, const char *from, const char *to, size_t n)
{
	size_t i = 0, sub;
	char zeros[24], nines[24];

	while (i < n && from[i] == to[i])
		i++;
	if (i > 0) {
		eng_sb_str(o, "\"");
		eng_sb_add(o, from, i);
		eng_sb_str(o, "\"");
	}
	if (i >= n)
		return;
	if (i > 0)
		eng_sb_str(o, " ");
	sub = n - i - 1;
	if (sub == 0) {
		eng_sb_printf(o, "[%c-%c]", from[i], to[i]);
		return;
	}
	memset(zeros, '0', sub);
	memset(nines, '9', sub);
	bool to_reached = false;

	eng_sb_str(o, "(");
	if (all_of(from + i + 1, sub, '0')) {
		digit_range(o, from[i], (char)(to[i] - 1));
		eng_sb_str(o, " ");
		more_digits(o, (int)sub, (int)sub);
	} else {
		eng_sb_printf(o, "[%c] (", from[i]);
		uniform_range(o, from + i + 1, nines, sub);
		eng_sb_str(o, ")");
		if (from[i] < to[i] - 1) {
			eng_sb_str(o, " | ");
			if (all_of(to + i + 1, sub, '9')) {
				digit_range(o, (char)(from[i] + 1), to[i]);
				to_reached = true;
			} else {
				digit_range(o, (char)(from[i] + 1), (char)(to[i] - 1));
			}
			eng_sb_str(o, " ");
			more_digits(o, (int)sub, (int)sub);
		}
	}
	if (!to_reached) {
		eng_sb_str(o, " | ");
		digit_range(o, to[i], to[i]);
		eng_sb_str(o, " ");
		uniform_range(o, zeros, to + i + 1, sub);
	}
	eng_sb_str(o, ")");
}

static void min_max_int(struct eng_sb *o, bool has_min, int64_t min, bool has_max, int64_t max, int decimals,
                        bool top)
{
	int less = decimals - 1 > 1 ? decimals - 1 : 1;
	char min_s[24], max_s[24], nines[24];

	if (has_min && has_max) {
		if (min < 0 && max < 0) {
			eng_sb_str(o, "\"-\" (");
			min_max_int(o, true, -max, true, -min, decimals, true);
			eng_sb_str(o, ")");
			return;
		}
		if (min < 0) {
			eng_sb_str(o, "\"-\" (");
			min_max_int(o, true, 0, true, -min, decimals, true);
			eng_sb_str(o, ") | ");
			min = 0;
		}
		snprintf(min_s, sizeof(min_s), "%lld", (long long)min);
		snprintf(max_s, sizeof(max_s), "%lld", (long long)max);
		for (size_t d = strlen(min_s); d < strlen(max_s); d++) {
			memset(nines, '9', d);
			uniform_range(o, min_s, nines, d);
			min_s[0] = '1';
			memset(min_s + 1, '0', d);
			min_s[d + 1] = 0;
			eng_sb_str(o, " | ");
		}
		uniform_range(o, min_s, max_s, strlen(max_s));
		return;
	}
	if (has_min) {
		if (min < 0) {
			eng_sb_str(o, "\"-\" (");
			min_max_int(o, false, 0, true, -min, decimals, false);
			eng_sb_str(o, ") | [0] | [1-9] ");
			more_digits(o, 0, decimals - 1);
		} else if (min == 0) {
			if (top) {
				eng_sb_str(o, "[0] | [1-9] ");
				more_digits(o, 0, less);
			} else {
				more_digits(o, 1, decimals);
			}
		} else if (min <= 9) {
			char ch = (char)('0' + min), start = top ? '1' : '0';

			if (ch > start) {
				digit_range(o, start, (char)(ch - 1));
				eng_sb_str(o, " ");
				more_digits(o, 1, less);
				eng_sb_str(o, " | ");
			}
			digit_range(o, ch, '9');
			eng_sb_str(o, " ");
			more_digits(o, 0, less);
		} else {
			int len = snprintf(min_s, sizeof(min_s), "%lld", (long long)min);
			char ch = min_s[0];

			if (ch > '1') {
				digit_range(o, top ? '1' : '0', (char)(ch - 1));
				eng_sb_str(o, " ");
				more_digits(o, len, less);
				eng_sb_str(o, " | ");
			}
			digit_range(o, ch, ch);
			eng_sb_str(o, " (");
			min_max_int(o, true, strtoll(min_s + 1, NULL, 10), false, 0, less, false);
			eng_sb_str(o, ")");
			if (ch < '9') {
				eng_sb_str(o, " | ");
				digit_range(o, (char)(ch + 1), '9');
				eng_sb_str(o, " ");
				more_digits(o, len - 1, less);
			}
		}
		return;
	}
	if (max >= 0) {
		if (top) {
			eng_sb_str(o, "\"-\" [1-9] ");
			more_digits(o, 0, less);
			eng_sb_str(o, " | ");
		}
		min_max_int(o, true, 0, true, max, decimals, true);
	} else {
		eng_sb_str(o, "\"-\" (");
		min_max_int(o, true, -max, false, 0, decimals, false);
		eng_sb_str(o, ")");
	}
}

const char *js_int_range(struct js_conv *c, bool has_min, int64_t min, bool has_max, int64_t max)
{
	struct eng_sb b = { 0 };

	/* negation must not overflow: llama.cpp's sentinels are INT64_MIN/MAX */
	if ((has_min && min == INT64_MIN) || (has_max && max == INT64_MIN))
		return js_fail(c, NULL, "integer bound %lld out of range", (long long)INT64_MIN);
	eng_sb_str(&b, "(");
	min_max_int(&b, has_min, min, has_max, max, 16, true);
	eng_sb_str(&b, ")");
	return sb_take(c, &b);
}

// ---- keys that are none of some strings (_not_strings)

struct trie {
	struct tnode {
		uint32_t *cp;     /* [n] children's code points, ascending */
		int *child;       /* [n] */
		int n;
		bool end;         /* a string ends here */
	} *v;
	int n, cap;
	bool oom;
};

static int trie_node(struct trie *t)
{
	if (t->n == t->cap) {
		int cap = t->cap ? 2 * t->cap : 16;
		struct tnode *v = realloc(t->v, sizeof(*v) * (size_t)cap);

		if (!v) {
			t->oom = true;
			return -1;
		}
		t->v = v;
		t->cap = cap;
	}
	memset(&t->v[t->n], 0, sizeof(t->v[0]));
	return t->n++;
}

static uint32_t next_cp(const unsigned char **p)
{
	const unsigned char *s = *p;
	uint32_t cp;
	int k = s[0] < 0x80 ? 0 : s[0] < 0xe0 ? 1 : s[0] < 0xf0 ? 2 : 3;

	cp = k == 0 ? s[0] : k == 1 ? s[0] & 0x1fu : k == 2 ? s[0] & 0x0fu : s[0] & 0x07u;
	for (int j = 1; j <= k; j++)
		cp = (cp << 6) | (s[j] & 0x3fu);
	*p = s + k + 1;
	return cp;
}

static void trie_insert(struct trie *t, const char *word)
{
	const unsigned char *p = (const unsigned char *)word;
	int node = 0;

	while (*p && !t->oom) {
		uint32_t cp = next_cp(&p);
		struct tnode *nd = &t->v[node];
		int j = 0, k;

		while (j < nd->n && nd->cp[j] < cp)
			j++;
		if (j < nd->n && nd->cp[j] == cp) {
			node = nd->child[j];
			continue;
		}
		if ((k = trie_node(t)) < 0)
			return;
		nd = &t->v[node];
		uint32_t *ncp = realloc(nd->cp, sizeof(*ncp) * (size_t)(nd->n + 1));
		int *nch = ncp ? realloc(nd->child, sizeof(*nch) * (size_t)(nd->n + 1)) : NULL;

		if (ncp)
			nd->cp = ncp;
		if (!nch) {
			t->oom = true;
			return;
		}
		nd->child = nch;
		memmove(nd->cp + j + 1, nd->cp + j, sizeof(*nd->cp) * (size_t)(nd->n - j));
		memmove(nd->child + j + 1, nd->child + j, sizeof(*nd->child) * (size_t)(nd->n - j));
		nd->cp[j] = cp;
		nd->child[j] = k;
		nd->n++;
		node = k;
	}
	t->v[node].end = true;
}

/* One code point inside a character class: UTF-8, with ] \ - ^ escaped. */
static void class_char(struct eng_sb *o, uint32_t cp)
{
	char u[4];
	int n;

	if (cp == ']' || cp == '\\' || cp == '-' || cp == '^') {
		eng_sb_printf(o, "\\x%02X", cp);
		return;
	}
	n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
	if (n == 1) {
		u[0] = (char)cp;
	} else if (n == 2) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
	} else if (n == 3) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
	}
	eng_sb_add(o, u, (size_t)n);
}

static void not_visit(struct eng_sb *o, const struct trie *t, int node, const char *char_rule)
{
	const struct tnode *nd = &t->v[node];

	for (int j = 0; j < nd->n; j++) {
		if (j)
			eng_sb_str(o, " | ");
		eng_sb_str(o, "[");
		class_char(o, nd->cp[j]);
		eng_sb_str(o, "]");
		if (t->v[nd->child[j]].n > 0) {
			eng_sb_str(o, " (");
			not_visit(o, t, nd->child[j], char_rule);
			eng_sb_str(o, ")");
		} else {
			eng_sb_printf(o, " %s+", char_rule);
		}
	}
	if (nd->n > 0) {
		/* promptfs: llama.cpp's [^"…] lets a raw control character or a
		 * lone backslash start the rest of the key (not JSON); the class
		 * excludes what char excludes too */
		eng_sb_str(o, " | [^\"\\\\\\x7F\\x00-\\x1F");
		for (int j = 0; j < nd->n; j++)
			class_char(o, nd->cp[j]);
		eng_sb_printf(o, "] %s*", char_rule);
	}
}

const char *js_not_strings(struct js_conv *c, const char *const *v, int n)
{
	const char *char_rule = js_add_primitive(c, "char", "char");
	struct trie t = { 0 };
	struct eng_sb b = { 0 };

	if (trie_node(&t) == 0)
		for (int i = 0; i < n; i++)
			trie_insert(&t, v[i]);
	if (t.oom) {
		c->nomem = c->failed = true;
	} else {
		eng_sb_str(&b, "[\"] ( ");
		not_visit(&b, &t, 0, char_rule);
		eng_sb_str(&b, " )");
		if (!t.v[0].end)
			eng_sb_str(&b, "?");
		eng_sb_str(&b, " [\"]");
	}
	for (int i = 0; i < t.n; i++) {
		free(t.v[i].cp);
		free(t.v[i].child);
	}
	free(t.v);
	return t.oom ? "" : sb_take(c, &b);
}

// ---- objects (_build_object_rule)

struct optional {
	const char *name; /* "*" for additional properties */
	const char *kv;
	bool star;        /* additional properties (any number of them) */
};

/* get_recursive_refs(ks[i:], first_is_optional); rest[i] memoises the
 * name of the "-rest" rule that follows ks[i] (same body every time). */
static const char *recursive_refs(struct js_conv *c, const struct optional *ks, int n, int i, bool first_opt,
                                  const char *name, const char **rest)
{
	bool star = ks[i].star;
	const char *comma = S(c, "( \",\" space %s )", ks[i].kv), *res;

	res = first_opt ? S(c, "%s%s", comma, star ? "*" : "?")
	                : star ? S(c, "%s %s*", ks[i].kv, comma) : ks[i].kv;
	if (i + 1 < n) {
		if (!rest[i])
			rest[i] = js_add_rule(c, S(c, "%s%s%s-rest", name, *name ? "-" : "", ks[i].name),
			                      recursive_refs(c, ks, n, i + 1, true, name, rest));
		res = S(c, "%s %s", res, rest[i]);
	}
	return res;
}

const char *js_object_rule(struct js_conv *c, const struct js_prop *props, int n, const char *name,
                           const char *add_kv)
{
	struct optional *opt = calloc((size_t)n + 1, sizeof(*opt));
	const char **rest = calloc((size_t)n + 1, sizeof(*rest));
	int n_req = 0, n_opt = 0;
	struct eng_sb b = { 0 };

	if (!opt || !rest) {
		free(opt);
		free(rest);
		c->nomem = c->failed = true;
		return "";
	}
	for (int i = 0; i < n; i++)
		if (props[i].required)
			n_req++;
		else
			opt[n_opt++] = (struct optional){ props[i].name, props[i].kv, false };
	if (add_kv)
		opt[n_opt++] = (struct optional){ "*", add_kv, true };
	if (n_req == 0 && n_opt == 0) {
		eng_sb_str(&b, "\"{\" space \"}\"");
		goto out;
	}
	eng_sb_str(&b, "\"{\" space ");
	for (int i = 0, k = 0; i < n; i++)
		if (props[i].required)
			eng_sb_printf(&b, "%s%s", k++ ? " \",\" space " : "", props[i].kv);
	if (n_opt) {
		eng_sb_str(&b, " (");
		if (n_req)
			eng_sb_str(&b, " \",\" space ( ");
		for (int i = 0; i < n_opt; i++) {
			if (i)
				eng_sb_str(&b, " | ");
			eng_sb_str(&b, recursive_refs(c, opt, n_opt, i, false, name, rest));
		}
		if (n_req)
			eng_sb_str(&b, " )");
		eng_sb_str(&b, " )?");
	}
	eng_sb_str(&b, " space \"}\"");
out:
	free(opt);
	free(rest);
	return sb_take(c, &b);
}
