/*
 * json.c — the strict JSON reader, nlohmann-style compact writer and the
 * growable string of json.h.
 *
 * The reader is a recursive descent over a cursor that never reads past
 * the end (every access checks p < e); members of arrays and objects are
 * collected on a scratch stack and copied into the document's arena when
 * the container closes, so the arena holds exactly the tree.
 */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

// ---- the growable string

void eng_sb_add(struct eng_sb *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void eng_sb_str(struct eng_sb *b, const char *s)
{
	eng_sb_add(b, s, strlen(s));
}

void eng_sb_printf(struct eng_sb *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		eng_sb_add(b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);

	if (!big) {
		b->oom = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	eng_sb_add(b, big, (size_t)n);
	free(big);
}

void eng_sb_free(struct eng_sb *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

// ---- the arena

struct block {
	struct block *next;
	size_t used, cap;
	_Alignas(16) unsigned char mem[];
};

struct eng_json_doc {
	struct block *blocks;
};

static void *arena_alloc(struct eng_json_doc *d, size_t n)
{
	struct block *b = d->blocks;

	n = (n + 15) & ~(size_t)15;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 65536 ? n : 65536;

		if (!(b = malloc(sizeof(*b) + cap)))
			return NULL;
		b->next = d->blocks;
		b->used = 0;
		b->cap = cap;
		d->blocks = b;
	}
	b->used += n;
	return b->mem + b->used - n;
}

void eng_json_free(struct eng_json_doc *doc)
{
	if (!doc)
		return;
	while (doc->blocks) {
		struct block *b = doc->blocks;

		doc->blocks = b->next;
		free(b);
	}
	free(doc);
}

// ---- the reader

struct reader {
	const char *what;
	const char *base, *p, *e;
	struct eng_json_doc *doc;
	bool failed, nomem;
};

static bool bad(struct reader *r, const char *at, const char *why)
{
	if (!r->failed) {
		LOG_ERR("json %s: byte %zu: %s", r->what, (size_t)(at - r->base), why);
		r->failed = true;
	}
	return false;
}

static bool oom(struct reader *r)
{
	r->nomem = r->failed = true;
	return false;
}

static void skip_ws(struct reader *r)
{
	while (r->p < r->e && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static bool literal(struct reader *r, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(r->e - r->p) < n || memcmp(r->p, word, n))
		return bad(r, r->p, "not a JSON value");
	r->p += n;
	return true;
}

static int hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
		      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of the valid UTF-8 sequence at p (strict: no overlongs, no
 * surrogates, <= U+10FFFF), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *e)
{
	unsigned c = p[0];
	size_t k;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		k = 1, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		k = 2, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 3, cp = c & 0x07;
	else
		return 0;
	if ((size_t)(e - p) <= k)
		return 0;
	for (size_t j = 1; j <= k; j++) {
		if ((p[j] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[j] & 0x3f);
	}
	if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k + 1;
}

/* A string at r->p (the opening quote): decoded into the arena. */
static bool read_string(struct reader *r, const char **out, size_t *len)
{
	const char *start = ++r->p;
	size_t cap = 0;
	char *o;

	/* the decoded text is never longer than the raw text */
	while (r->p < r->e && *r->p != '"') {
		if (*r->p == '\\' && r->p + 1 < r->e)
			r->p++;
		r->p++;
	}
	if (r->p >= r->e)
		return bad(r, start - 1, "unterminated string");
	cap = (size_t)(r->p - start) + 1;
	if (!(o = arena_alloc(r->doc, cap)))
		return oom(r);
	*out = o;
	for (const char *q = start; q < r->p;) {
		unsigned char c = (unsigned char)*q;

		if (c < 0x20)
			return bad(r, q, "control character in a string (escape it)");
		if (c != '\\') {
			size_t k = utf8_len((const unsigned char *)q, (const unsigned char *)r->p);

			if (!k)
				return bad(r, q, "invalid UTF-8");
			memcpy(o, q, k);
			o += k;
			q += k;
			continue;
		}
		q++;
		switch (*q) {
		case '"': *o++ = '"'; q++; continue;
		case '\\': *o++ = '\\'; q++; continue;
		case '/': *o++ = '/'; q++; continue;
		case 'b': *o++ = '\b'; q++; continue;
		case 'f': *o++ = '\f'; q++; continue;
		case 'n': *o++ = '\n'; q++; continue;
		case 'r': *o++ = '\r'; q++; continue;
		case 't': *o++ = '\t'; q++; continue;
		case 'u': break;
		default: return bad(r, q - 1, "unknown escape");
		}
		int hi = r->p - q >= 5 ? hex4(q + 1) : -1, lo;
		uint32_t cp;

		if (hi < 0)
			return bad(r, q - 1, "\\u needs 4 hex digits");
		q += 5;
		cp = (uint32_t)hi;
		if (hi >= 0xdc00 && hi <= 0xdfff)
			return bad(r, q - 6, "lone low surrogate");
		if (hi >= 0xd800 && hi <= 0xdbff) {
			if (r->p - q < 6 || q[0] != '\\' || q[1] != 'u' || (lo = hex4(q + 2)) < 0xdc00 || lo > 0xdfff)
				return bad(r, q - 6, "lone high surrogate");
			cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
			q += 6;
		}
		if (cp == 0)
			return bad(r, q - 6, "\\u0000 is not supported");
		/* a \u escape is at least 6 bytes and encodes to at most 4 */
		o += put_utf8(o, cp);
	}
	*o = 0;
	*len = (size_t)(o - *out);
	r->p++; /* closing quote */
	return true;
}

static bool read_number(struct reader *r, struct eng_json *v)
{
	const char *s = r->p;
	char buf[64], *end;
	bool frac = false;

	if (r->p < r->e && *r->p == '-')
		r->p++;
	if (r->p >= r->e || *r->p < '0' || *r->p > '9')
		return bad(r, s, "not a JSON value");
	if (*r->p == '0' && r->p + 1 < r->e && r->p[1] >= '0' && r->p[1] <= '9')
		return bad(r, s, "leading zero in a number");
	while (r->p < r->e && *r->p >= '0' && *r->p <= '9')
		r->p++;
	if (r->p < r->e && *r->p == '.') {
		frac = true;
		r->p++;
		if (r->p >= r->e || *r->p < '0' || *r->p > '9')
			return bad(r, s, "digits must follow '.'");
		while (r->p < r->e && *r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	if (r->p < r->e && (*r->p == 'e' || *r->p == 'E')) {
		frac = true;
		r->p++;
		if (r->p < r->e && (*r->p == '+' || *r->p == '-'))
			r->p++;
		if (r->p >= r->e || *r->p < '0' || *r->p > '9')
			return bad(r, s, "digits must follow the exponent");
		while (r->p < r->e && *r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	if ((size_t)(r->p - s) >= sizeof(buf))
		return bad(r, s, "number longer than 63 characters");
	memcpy(buf, s, (size_t)(r->p - s));
	buf[r->p - s] = 0;
	v->type = ENG_JSON_NUMBER;
	v->d = strtod(buf, NULL);
	if (!isfinite(v->d))
		return bad(r, s, "number out of range");
	if (!frac) {
		errno = 0;
		v->i = strtoll(buf, &end, 10);
		v->is_int = errno == 0 && !*end;
	}
	return true;
}

struct stack {
	struct eng_json *v;
	const char **k;
	int n, cap;
};

static bool push(struct reader *r, struct stack *st, const struct eng_json *v, const char *key)
{
	if (st->n == st->cap) {
		int cap = st->cap ? 2 * st->cap : 8;
		struct eng_json *nv = realloc(st->v, sizeof(*nv) * (size_t)cap);
		const char **nk;

		if (nv)
			st->v = nv;
		nk = nv ? realloc(st->k, sizeof(*nk) * (size_t)cap) : NULL;
		if (!nk)
			return oom(r);
		st->k = nk;
		st->cap = cap;
	}
	st->v[st->n] = *v;
	st->k[st->n++] = key;
	return true;
}

static bool read_value(struct reader *r, struct eng_json *v, int depth);

/* The members of an array or object (r->p just after the bracket). */
static bool read_container(struct reader *r, struct eng_json *v, bool obj, int depth)
{
	struct stack st = { 0 };
	char close = obj ? '}' : ']';
	bool ok = false;

	v->type = obj ? ENG_JSON_OBJECT : ENG_JSON_ARRAY;
	skip_ws(r);
	if (r->p < r->e && *r->p == close) {
		r->p++;
		return true;
	}
	for (;;) {
		struct eng_json m = { 0 };
		const char *key = NULL, *at;
		size_t klen;

		skip_ws(r);
		at = r->p;
		if (obj) {
			if (r->p >= r->e || *r->p != '"') {
				bad(r, r->p, "expecting a string key");
				goto out;
			}
			if (!read_string(r, &key, &klen))
				goto out;
			for (int i = 0; i < st.n; i++)
				if (!strcmp(st.k[i], key)) {
					bad(r, at, "duplicate key");
					LOG_ERR("json %s: the duplicate key is \"%.60s\"", r->what, key);
					goto out;
				}
			skip_ws(r);
			if (r->p >= r->e || *r->p != ':') {
				bad(r, r->p, "expecting ':'");
				goto out;
			}
			r->p++;
		}
		if (!read_value(r, &m, depth + 1) || !push(r, &st, &m, key))
			goto out;
		skip_ws(r);
		if (r->p < r->e && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->e && *r->p == close) {
			r->p++;
			break;
		}
		bad(r, r->p, obj ? "expecting ',' or '}'" : "expecting ',' or ']'");
		goto out;
	}
	v->n = st.n;
	if (!(v->v = arena_alloc(r->doc, sizeof(*v->v) * (size_t)st.n))) {
		oom(r);
		goto out;
	}
	memcpy(v->v, st.v, sizeof(*v->v) * (size_t)st.n);
	if (obj) {
		if (!(v->k = arena_alloc(r->doc, sizeof(*v->k) * (size_t)st.n))) {
			oom(r);
			goto out;
		}
		memcpy(v->k, st.k, sizeof(*v->k) * (size_t)st.n);
	}
	ok = true;
out:
	free(st.v);
	free(st.k);
	return ok;
}

static bool read_value(struct reader *r, struct eng_json *v, int depth)
{
	memset(v, 0, sizeof(*v));
	if (depth > ENG_JSON_MAX_DEPTH)
		return bad(r, r->p, "nested deeper than 64 levels");
	skip_ws(r);
	if (r->p >= r->e)
		return bad(r, r->p, "unexpected end of text");
	switch (*r->p) {
	case '{':
	case '[':
		r->p++;
		return read_container(r, v, r->p[-1] == '{', depth);
	case '"':
		v->type = ENG_JSON_STRING;
		return read_string(r, &v->s, &v->len);
	case 't':
		v->type = ENG_JSON_BOOL;
		v->b = true;
		return literal(r, "true");
	case 'f':
		v->type = ENG_JSON_BOOL;
		return literal(r, "false");
	case 'n':
		v->type = ENG_JSON_NULL;
		return literal(r, "null");
	}
	return read_number(r, v);
}

int eng_json_parse(const char *what, const char *text, size_t len, struct eng_json_doc **doc,
                   const struct eng_json **root)
{
	struct reader r = { .what = what ? what : "(text)", .base = text, .p = text, .e = text + len };
	struct eng_json *v;

	*doc = NULL;
	*root = NULL;
	if (len > ENG_JSON_MAX_TEXT) {
		LOG_ERR("json %s: %zu bytes (at most %u)", r.what, len, ENG_JSON_MAX_TEXT);
		return -EINVAL;
	}
	if (!(r.doc = calloc(1, sizeof(*r.doc))))
		return -ENOMEM;
	if (!(v = arena_alloc(r.doc, sizeof(*v)))) {
		eng_json_free(r.doc);
		return -ENOMEM;
	}
	if (read_value(&r, v, 1)) {
		skip_ws(&r);
		if (r.p < r.e)
			bad(&r, r.p, "text after the JSON value");
	}
	if (r.failed) {
		eng_json_free(r.doc);
		return r.nomem ? -ENOMEM : -EINVAL;
	}
	*doc = r.doc;
	*root = v;
	return 0;
}

const struct eng_json *eng_json_get(const struct eng_json *obj, const char *key)
{
	if (!obj || obj->type != ENG_JSON_OBJECT)
		return NULL;
	for (int i = 0; i < obj->n; i++)
		if (!strcmp(obj->k[i], key))
			return &obj->v[i];
	return NULL;
}

// ---- the writer

static void dump_string(struct eng_sb *b, const char *s, size_t n)
{
	eng_sb_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
		                : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;

		if (esc)
			eng_sb_str(b, esc);
		else if (c < 0x20)
			eng_sb_printf(b, "\\u%04x", c);
		else
			eng_sb_add(b, (const char *)&c, 1);
	}
	eng_sb_add(b, "\"", 1);
}

/* nlohmann's double format: the shortest digits that read back as d, then
 * plain notation for decimal exponents in (-4, 15], else d.ddde+XX. */
static void dump_double(struct eng_sb *b, double d)
{
	char buf[64], digits[32];
	int p, n, k = 0, exp10;
	char *e;

	for (p = 1; p <= 17; p++) {
		snprintf(buf, sizeof(buf), "%.*e", p - 1, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (d < 0)
		eng_sb_add(b, "-", 1);
	for (const char *q = buf + (d < 0); *q && *q != 'e'; q++)
		if (*q >= '0' && *q <= '9')
			digits[k++] = *q;
	while (k > 1 && digits[k - 1] == '0')
		k--;
	digits[k] = 0;
	e = strchr(buf, 'e');
	exp10 = e ? atoi(e + 1) : 0;
	n = exp10 + 1; /* the decimal point sits after n digits */
	if (k <= n && n <= 15) {
		eng_sb_add(b, digits, (size_t)k);
		for (int i = k; i < n; i++)
			eng_sb_add(b, "0", 1);
		eng_sb_add(b, ".0", 2);
	} else if (0 < n && n <= 15) {
		eng_sb_add(b, digits, (size_t)n);
		eng_sb_add(b, ".", 1);
		eng_sb_add(b, digits + n, (size_t)(k - n));
	} else if (-4 < n && n <= 0) {
		eng_sb_add(b, "0.", 2);
		for (int i = n; i < 0; i++)
			eng_sb_add(b, "0", 1);
		eng_sb_add(b, digits, (size_t)k);
	} else {
		eng_sb_add(b, digits, 1);
		if (k > 1) {
			eng_sb_add(b, ".", 1);
			eng_sb_add(b, digits + 1, (size_t)(k - 1));
		}
		eng_sb_printf(b, "e%c%02d", n - 1 < 0 ? '-' : '+', abs(n - 1));
	}
}

void eng_json_dump(struct eng_sb *b, const struct eng_json *v)
{
	switch (v->type) {
	case ENG_JSON_NULL: eng_sb_str(b, "null"); return;
	case ENG_JSON_BOOL: eng_sb_str(b, v->b ? "true" : "false"); return;
	case ENG_JSON_NUMBER:
		if (v->is_int)
			eng_sb_printf(b, "%lld", (long long)v->i);
		else
			dump_double(b, v->d);
		return;
	case ENG_JSON_STRING: dump_string(b, v->s, v->len); return;
	case ENG_JSON_ARRAY:
	case ENG_JSON_OBJECT:
		eng_sb_add(b, v->type == ENG_JSON_ARRAY ? "[" : "{", 1);
		for (int i = 0; i < v->n; i++) {
			if (i)
				eng_sb_add(b, ",", 1);
			if (v->type == ENG_JSON_OBJECT) {
				dump_string(b, v->k[i], strlen(v->k[i]));
				eng_sb_add(b, ":", 1);
			}
			eng_json_dump(b, &v->v[i]);
		}
		eng_sb_add(b, v->type == ENG_JSON_ARRAY ? "]" : "}", 1);
		return;
	}
}
