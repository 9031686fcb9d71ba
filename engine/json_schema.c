/*
 * json_schema.c — JSON Schema → GBNF (json_schema.h): the walk over the
 * schema.  Each schema node is classified the way llama.cpp's
 * common/json-schema.cpp builds its node kinds ($ref, then oneOf/anyOf,
 * then a list of types, const, enum, then the type or, without one, the
 * structural keywords), and converted the way its json-schema-to-grammar
 * visits that kind; the rule bodies come from json_schema_rules.c.
 *
 * Where llama.cpp would drop a keyword and emit a grammar whose output
 * may not validate, this walk refuses the schema instead, naming the
 * keyword and its JSON pointer (see json_schema.h for the list).
 */
#include "json_schema_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

#define MAX_VISIT_DEPTH 256
#define SPACE_RULE "| \" \" | \"\\n\"{1,2} [ \\t]{0,20}"

/* Keywords that change what validates and that no grammar here enforces. */
static const char *const unsupported[] = {
	"not", "if", "then", "else", "pattern", "patternProperties", "propertyNames",
	"minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "dependencies",
	"unevaluatedProperties", "unevaluatedItems", "contains", "minContains", "maxContains",
	"multipleOf", "additionalItems", "$dynamicRef", "$recursiveRef", "contentSchema",
};

/* Keywords this converter reads (everything else is an annotation or
 * unknown, and ignored as JSON Schema says). */
static const char *const validation[] = {
	"$ref", "anyOf", "oneOf", "allOf", "type", "const", "enum", "properties", "required",
	"additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minLength",
	"maxLength", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "uniqueItems",
};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const struct eng_json json_true = { .type = ENG_JSON_BOOL, .b = true };

static const char *visit(struct js_conv *c, const struct eng_json *s, const char *name, const char *path,
                         const struct eng_json *type);

static const struct eng_json *get(const struct eng_json *s, const char *key)
{
	return eng_json_get(s, key);
}

static bool has(const struct eng_json *s, const char *key)
{
	return get(s, key) != NULL;
}

/* The first validation keyword of s outside allow (a NULL-terminated list). */
static const char *other_keyword(const struct eng_json *s, const char *const *allow)
{
	for (int i = 0; i < N_OF(validation); i++) {
		bool ok = !has(s, validation[i]) || !strcmp(validation[i], "uniqueItems");

		for (int j = 0; allow[j] && !ok; j++)
			ok = !strcmp(validation[i], allow[j]);
		if (!ok)
			return validation[i];
	}
	return NULL;
}

static bool check_unsupported(struct js_conv *c, const struct eng_json *s, const char *path)
{
	const struct eng_json *u;

	for (int i = 0; i < N_OF(unsupported); i++)
		if (has(s, unsupported[i])) {
			js_fail(c, path, "keyword \"%s\" is not supported", unsupported[i]);
			return false;
		}
	if ((u = get(s, "uniqueItems")) && !(u->type == ENG_JSON_BOOL && !u->b)) {
		js_fail(c, path, "keyword \"uniqueItems\" is not supported (only false)");
		return false;
	}
	return true;
}

/* Any value: true, or an object with no keyword that constrains. */
static bool is_any(const struct eng_json *s)
{
	const char *const none[] = { NULL };

	if (s->type == ENG_JSON_BOOL)
		return s->b;
	if (s->type != ENG_JSON_OBJECT || other_keyword(s, none))
		return false;
	for (int i = 0; i < N_OF(unsupported); i++)
		if (has(s, unsupported[i]))
			return false;
	return true;
}

// ---- value types (the oneOf overlap warning, type next to anyOf and enum)

enum {
	T_NULL = 1, T_BOOL = 2, T_INT = 4, T_FRAC = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64, T_ALL = 127,
};

static unsigned type_bits(const char *t)
{
	return !strcmp(t, "null") ? T_NULL : !strcmp(t, "boolean") ? T_BOOL : !strcmp(t, "integer") ? T_INT
	     : !strcmp(t, "number") ? T_INT | T_FRAC : !strcmp(t, "string") ? T_STR
	     : !strcmp(t, "array") ? T_ARR : !strcmp(t, "object") ? T_OBJ : 0;
}

static unsigned value_bits(const struct eng_json *v)
{
	switch (v->type) {
	case ENG_JSON_NULL: return T_NULL;
	case ENG_JSON_BOOL: return T_BOOL;
	case ENG_JSON_NUMBER: return v->is_int || (v->d == floor(v->d) && fabs(v->d) < 9e15) ? T_INT : T_FRAC;
	case ENG_JSON_STRING: return T_STR;
	case ENG_JSON_ARRAY: return T_ARR;
	case ENG_JSON_OBJECT: return T_OBJ;
	}
	return 0;
}

/* The types of the "type" keyword (a string or a list), T_ALL if none. */
static unsigned declared_bits(const struct eng_json *t)
{
	unsigned b = 0;

	if (!t)
		return T_ALL;
	if (t->type == ENG_JSON_STRING)
		return type_bits(t->s);
	for (int i = 0; t->type == ENG_JSON_ARRAY && i < t->n; i++)
		if (t->v[i].type == ENG_JSON_STRING)
			b |= type_bits(t->v[i].s);
	return b;
}

static const struct eng_json *resolve(struct js_conv *c, const char *ref, const char *path);

/* The types of the values s can produce (an over-estimate is fine). */
static unsigned schema_bits(struct js_conv *c, const struct eng_json *s, int depth)
{
	const struct eng_json *x, *t;
	unsigned b = 0;

	if (depth > 16 || s->type != ENG_JSON_OBJECT)
		return T_ALL;
	if ((x = get(s, "$ref")) && x->type == ENG_JSON_STRING) {
		const struct eng_json *target = resolve(c, x->s, NULL); /* NULL path: no log */

		return target ? schema_bits(c, target, depth + 1) : T_ALL;
	}
	if (((x = get(s, "oneOf")) || (x = get(s, "anyOf"))) && x->type == ENG_JSON_ARRAY) {
		for (int i = 0; i < x->n; i++)
			b |= schema_bits(c, &x->v[i], depth + 1);
		return b;
	}
	if ((x = get(s, "const")))
		return value_bits(x);
	if ((x = get(s, "enum")) && x->type == ENG_JSON_ARRAY) {
		for (int i = 0; i < x->n; i++)
			b |= value_bits(&x->v[i]);
		return b;
	}
	if ((t = get(s, "type")))
		return declared_bits(t);
	if (has(s, "properties") || has(s, "additionalProperties") || has(s, "allOf"))
		return T_OBJ;
	if (has(s, "items") || has(s, "prefixItems"))
		return T_ARR;
	if (has(s, "minLength") || has(s, "maxLength") || has(s, "format"))
		return T_STR;
	return T_ALL;
}

// ---- $ref

/* The node a same-document reference points at ("#" or "#/a/b/0"), or
 * NULL (logged at path when path != NULL). */
static const struct eng_json *resolve(struct js_conv *c, const char *ref, const char *path)
{
	const struct eng_json *t = c->root;
	const char *p;

	if (ref[0] != '#' || (ref[1] && ref[1] != '/')) {
		if (path)
			js_fail(c, path, "$ref \"%.80s\": only references into the same document (\"#/…\") are supported", ref);
		return NULL;
	}
	for (p = ref + 1; *p == '/';) {
		const char *q = ++p;
		char tok[256];
		size_t n = 0;

		while (*q && *q != '/')
			q++;
		for (; p < q && n + 1 < sizeof(tok); p++) {
			if (*p == '~' && p + 1 < q && (p[1] == '0' || p[1] == '1')) {
				tok[n++] = p[1] == '0' ? '~' : '/';
				p++;
			} else {
				tok[n++] = *p;
			}
		}
		tok[n] = 0;
		p = q;
		if (t->type == ENG_JSON_OBJECT && get(t, tok)) {
			t = get(t, tok);
		} else if (t->type == ENG_JSON_ARRAY && n && strspn(tok, "0123456789") == n && atoi(tok) < t->n) {
			t = &t->v[atoi(tok)];
		} else {
			if (path)
				js_fail(c, path, "cannot resolve $ref \"%.80s\": \"%s\" not found", ref, tok);
			return NULL;
		}
	}
	return t;
}

static const char *ref_rule(struct js_conv *c, const char *ref, const char *path)
{
	const struct eng_json *target = resolve(c, ref, path);
	const char *ref_name = js_rule_name(c, S(c, "ref%s", ref + 1)), *got;
	bool busy = false;

	if (!target)
		return "";
	for (int i = 0; i < c->n_resolving; i++)
		busy = busy || !strcmp(c->resolving[i], ref);
	if (busy || js_has_rule(c, ref_name))
		return ref_name; /* a cycle back to it, or converted already */
	if (c->n_resolving == N_OF(c->resolving))
		return js_fail(c, path, "$ref chain deeper than %d", N_OF(c->resolving));
	c->resolving[c->n_resolving++] = ref;
	got = visit(c, target, ref_name, ref, NULL);
	c->n_resolving--;
	return got;
}

// ---- kinds

static const char *primitive(struct js_conv *c, const char *rule_name, const char *type)
{
	return js_add_primitive(c, !strcmp(rule_name, "root") ? "root" : type, type);
}

static const char *any_rule(struct js_conv *c, const char *rule_name)
{
	return js_add_rule(c, rule_name, js_add_primitive(c, "value", "value"));
}

/* A non-negative integer keyword (minItems …): *out, or def when absent. */
static bool count_of(struct js_conv *c, const struct eng_json *s, const char *key, const char *path, int def,
                     int *out)
{
	const struct eng_json *v = get(s, key);

	*out = def;
	if (!v)
		return true;
	if (v->type != ENG_JSON_NUMBER || !v->is_int || v->i < 0 || v->i > INT32_MAX) {
		js_fail(c, path, "%s must be a non-negative integer", key);
		return false;
	}
	*out = (int)v->i;
	return true;
}

/* alternatives: anyOf, oneOf, a list of types (type != NULL: alternative i
 * is s itself with type[i]). */
static const char *union_rule(struct js_conv *c, const struct eng_json *alts, const struct eng_json *s,
                              const char *name, const char *path, const char *key)
{
	struct eng_sb b = { 0 };
	unsigned seen = 0;
	bool overlap = false;

	if (alts->type != ENG_JSON_ARRAY || alts->n == 0)
		return js_fail(c, path, "%s must be a non-empty array", key);
	for (int i = 0; i < alts->n && !c->failed; i++) {
		const char *sub = S(c, "%s%s%d", name, *name ? "-" : "alternative-", i);
		const char *p = S(c, "%s/%s/%d", path, key, i);
		const char *r = s ? visit(c, s, sub, p, &alts->v[i]) : visit(c, &alts->v[i], sub, p, NULL);
		unsigned bits = s ? declared_bits(&alts->v[i]) : schema_bits(c, &alts->v[i], 0);

		overlap = overlap || (seen & bits);
		seen |= bits;
		eng_sb_printf(&b, "%s%s", i ? " | " : "", r);
	}
	if (overlap && !strcmp(key, "oneOf"))
		LOG_WARN("json_schema %s: %s: oneOf alternatives can match the same value; "
		         "converted as anyOf (a value matching two does not validate)", c->what, path);
	if (b.oom)
		c->nomem = c->failed = true;
	const char *body = S(c, "%s", b.p ? b.p : "");

	eng_sb_free(&b);
	return body;
}

static const char *object_rule(struct js_conv *c, const struct eng_json *s, const char *name,
                               const char *rule_name, const char *path)
{
	const struct eng_json *props = get(s, "properties"), *req = get(s, "required");
	const struct eng_json *add = get(s, "additionalProperties");
	const char *sep = *name ? "-" : "", *add_kv = NULL, *body;
	struct js_prop *v;
	int n = props ? props->n : 0;

	if (props && props->type != ENG_JSON_OBJECT)
		return js_fail(c, path, "properties must be an object");
	if (req && req->type != ENG_JSON_ARRAY)
		return js_fail(c, path, "required must be an array of strings");
	for (int i = 0; req && i < req->n; i++)
		if (req->v[i].type != ENG_JSON_STRING || !get(props, req->v[i].s))
			return js_fail(c, path, "required names %s%.60s%s, which is not in properties",
			               req->v[i].type == ENG_JSON_STRING ? "\"" : "a non-string",
			               req->v[i].type == ENG_JSON_STRING ? req->v[i].s : "",
			               req->v[i].type == ENG_JSON_STRING ? "\"" : "");
	if (add && add->type != ENG_JSON_BOOL && add->type != ENG_JSON_OBJECT)
		return js_fail(c, path, "additionalProperties must be a boolean or a schema");
	if (!add && !props)
		add = &json_true;
	if (add && add->type == ENG_JSON_BOOL && !add->b)
		add = NULL;
	if (n == 0 && add && is_any(add))
		return js_add_rule(c, rule_name, js_add_primitive(c, "object", "object"));
	if (!(v = calloc((size_t)n + 1, sizeof(*v)))) {
		c->nomem = c->failed = true;
		return "";
	}
	for (int i = 0; i < n && !c->failed; i++) {
		const char *pn = props->k[i];
		const char *r = visit(c, &props->v[i], S(c, "%s%s%s", name, sep, pn),
		                      S(c, "%s/properties/%s", path, pn), NULL);
		struct eng_json key = { .type = ENG_JSON_STRING, .s = pn, .len = strlen(pn) };
		bool required = false;

		for (int j = 0; req && j < req->n; j++)
			required = required || !strcmp(req->v[j].s, pn);
		v[i] = (struct js_prop){ pn, js_add_rule(c, S(c, "%s%s%s-kv", name, sep, pn),
		                                         S(c, "%s space \":\" space %s", js_constant(c, &key), r)),
		                         required };
		if (add && strpbrk(pn, "\"\\\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
		                       "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"))
			js_fail(c, path, "property name \"%.60s\" (a quote, backslash or control character) next to "
			        "additionalProperties is not supported", pn);
	}
	if (add && !c->failed) {
		const char *sub = S(c, "%s%sadditional", name, sep), *val, *key;

		val = is_any(add) ? js_add_primitive(c, "value", "value")
		                  : visit(c, add, S(c, "%s-value", sub), S(c, "%s/additionalProperties", path), NULL);
		key = n == 0 ? js_add_primitive(c, "string", "string")
		             : js_add_rule(c, S(c, "%s-k", sub), js_not_strings(c, props->k, n));
		add_kv = js_add_rule(c, S(c, "%s-kv", sub), S(c, "%s \":\" space %s", key, val));
	}
	body = c->failed ? "" : js_object_rule(c, v, n, name, add_kv);
	free(v);
	return js_add_rule(c, rule_name, body);
}

static const char *array_rule(struct js_conv *c, const struct eng_json *s, const char *name,
                              const char *rule_name, const char *path)
{
	const struct eng_json *items = get(s, "items"), *prefix = get(s, "prefixItems"), *tuple = NULL;
	const char *key = "items", *sub = *name ? S(c, "%s-", name) : "", *item;
	struct eng_sb b = { 0 };
	int min, max;

	if (items && prefix && !(items->type == ENG_JSON_BOOL && !items->b))
		return js_fail(c, path, "items next to prefixItems is not supported (only items: false)");
	if (items && items->type == ENG_JSON_ARRAY)
		tuple = items;
	else if (prefix && prefix->type == ENG_JSON_ARRAY)
		tuple = prefix, key = "prefixItems";
	else if (prefix)
		items = prefix; /* llama.cpp: a schema instead of an array is the item schema */
	if (tuple) {
		if (has(s, "minItems") || has(s, "maxItems"))
			return js_fail(c, path, "%s next to a tuple (%s) is not supported",
			               has(s, "minItems") ? "minItems" : "maxItems", key);
		eng_sb_str(&b, "\"[\" space ");
		for (int i = 0; i < tuple->n && !c->failed; i++)
			eng_sb_printf(&b, "%s%s", i ? " \",\" space " : "",
			              visit(c, &tuple->v[i], S(c, "%stuple-%d", sub, i), S(c, "%s/%s/%d", path, key, i), NULL));
		eng_sb_str(&b, " space \"]\"");
		if (b.oom)
			c->nomem = c->failed = true;
		item = S(c, "%s", b.p ? b.p : "");
		eng_sb_free(&b);
		return js_add_rule(c, rule_name, item);
	}
	if (items && items->type == ENG_JSON_BOOL && !items->b)
		return js_fail(c, path, "items: false without prefixItems (only the empty array) is not supported");
	if (items && items->type != ENG_JSON_OBJECT && items->type != ENG_JSON_BOOL)
		return js_fail(c, path, "items must be a schema or an array of schemas");
	if (!count_of(c, s, "minItems", path, 0, &min) || !count_of(c, s, "maxItems", path, -1, &max))
		return "";
	if (max >= 0 && min > max)
		return js_fail(c, path, "minItems %d > maxItems %d: no array validates", min, max);
	if ((!items || is_any(items)) && min == 0 && max < 0)
		return primitive(c, rule_name, "array");
	item = items ? visit(c, items, S(c, "%sitem", sub), S(c, "%s/items", path), NULL)
	             : visit(c, &json_true, S(c, "%sitem", sub), path, NULL);
	return js_add_rule(c, rule_name, S(c, "\"[\" space %s space \"]\"", js_repetition(c, item, min, max, "\",\" space")));
}

static const char *string_rule(struct js_conv *c, const struct eng_json *s, const char *rule_name,
                               const char *path)
{
	const struct eng_json *f = get(s, "format");
	int min, max;

	if (f) {
		const char *fs = f->type == ENG_JSON_STRING ? f->s : "";
		bool uuid = !strcmp(fs, "uuid") || (strlen(fs) == 5 && !strncmp(fs, "uuid", 4) && fs[4] >= '1' && fs[4] <= '5');

		if (f->type != ENG_JSON_STRING)
			return js_fail(c, path, "format must be a string");
		if (!uuid && strcmp(fs, "date") && strcmp(fs, "time") && strcmp(fs, "date-time"))
			return js_fail(c, path, "format \"%.40s\" is not supported (date, time, date-time, uuid)", fs);
		if (has(s, "minLength") || has(s, "maxLength"))
			return js_fail(c, path, "%s next to format is not supported", has(s, "minLength") ? "minLength" : "maxLength");
		if (uuid)
			return primitive(c, rule_name, "uuid");
		const char *prim = S(c, "%s-string", fs);

		return js_add_rule(c, rule_name, js_add_primitive(c, prim, prim));
	}
	if (!count_of(c, s, "minLength", path, 0, &min) || !count_of(c, s, "maxLength", path, -1, &max))
		return "";
	if (max >= 0 && min > max)
		return js_fail(c, path, "minLength %d > maxLength %d: no string validates", min, max);
	if (min > 0 || max >= 0)
		return js_add_rule(c, rule_name, S(c, "\"\\\"\" %s \"\\\"\"",
		                                   js_repetition(c, js_add_primitive(c, "char", "char"), min, max, NULL)));
	return primitive(c, rule_name, "string");
}

/* A bound of an integer: minimum rounds up, maximum down, exclusive bounds
 * step to the next integer past them (llama.cpp's get_bound); both kinds
 * present: the tighter one. */
static bool bound(struct js_conv *c, const struct eng_json *s, const char *key, const char *path, bool up,
                  int step, bool is_min, bool *set, int64_t *out)
{
	const struct eng_json *v = get(s, key);
	double d;
	int64_t b;

	if (!v)
		return true;
	if (v->type != ENG_JSON_NUMBER) {
		js_fail(c, path, "%s must be a number", key);
		return false;
	}
	d = v->is_int ? (double)v->i : up ? ceil(v->d) : floor(v->d);
	if (fabs(d) > 1e15) {
		js_fail(c, path, "%s %g: at most 1e15 in magnitude", key, d);
		return false;
	}
	b = (v->is_int ? v->i : (int64_t)d) + step;
	if (!*set || (is_min ? b > *out : b < *out))
		*out = b;
	*set = true;
	return true;
}

static const char *integer_rule(struct js_conv *c, const struct eng_json *s, const char *rule_name,
                                const char *path)
{
	bool has_min = false, has_max = false;
	int64_t min = 0, max = 0;

	if (!bound(c, s, "minimum", path, true, 0, true, &has_min, &min) ||
	    !bound(c, s, "exclusiveMinimum", path, false, 1, true, &has_min, &min) ||
	    !bound(c, s, "maximum", path, false, 0, false, &has_max, &max) ||
	    !bound(c, s, "exclusiveMaximum", path, true, -1, false, &has_max, &max))
		return "";
	if (has_min && has_max && min > max)
		return js_fail(c, path, "no integer lies between the bounds (%lld > %lld)", (long long)min, (long long)max);
	if (!has_min && !has_max)
		return primitive(c, rule_name, "integer");
	return js_add_rule(c, rule_name, js_int_range(c, has_min, min, has_max, max));
}

// ---- allOf (llama.cpp's _visit_all_of, for the cases that stay sound)

struct allof {
	const struct eng_json **pv; /* properties of the parts, in order */
	const char **pn;
	int n, cap;
	const char **enums;         /* constant rules of each part's enum */
	int *count;
	int n_enum, cap_enum;
	int n_enum_parts;
};

static bool allof_add(struct js_conv *c, struct allof *a, const struct eng_json *part, const char *path, int depth)
{
	const struct eng_json *x;

	if (depth > 16)
		return !*js_fail(c, path, "allOf: $ref chain too deep");
	if (part->type != ENG_JSON_OBJECT)
		return !*js_fail(c, path, "allOf parts must be schema objects");
	if (!check_unsupported(c, part, path))
		return false;
	if ((x = get(part, "$ref"))) {
		const struct eng_json *t = x->type == ENG_JSON_STRING ? resolve(c, x->s, path) : NULL;

		if (x->type != ENG_JSON_STRING)
			js_fail(c, path, "$ref must be a string");
		return t && allof_add(c, a, t, x->s, depth + 1);
	}
	if (has(part, "anyOf") || has(part, "oneOf"))
		return !*js_fail(c, path, "%s inside allOf is not supported", has(part, "anyOf") ? "anyOf" : "oneOf");
	if ((x = get(part, "enum")) && x->type == ENG_JSON_ARRAY) {
		a->n_enum_parts++;
		for (int i = 0; i < x->n; i++) {
			const char *lit = js_constant(c, &x->v[i]);
			int k;

			for (k = 0; k < a->n_enum && strcmp(a->enums[k], lit); k++)
				;
			if (k == a->n_enum) {
				if (a->n_enum == a->cap_enum) {
					int cap = a->cap_enum ? 2 * a->cap_enum : 16;
					const char **e = realloc(a->enums, sizeof(*e) * (size_t)cap);
					int *n = e ? realloc(a->count, sizeof(*n) * (size_t)cap) : NULL;

					if (e)
						a->enums = e;
					if (!n) {
						c->nomem = c->failed = true;
						return false;
					}
					a->count = n;
					a->cap_enum = cap;
				}
				a->enums[a->n_enum] = lit;
				a->count[a->n_enum++] = 0;
			}
			a->count[k]++;
		}
		return true;
	}
	x = get(part, "type");
	if (!has(part, "properties") && !(x && x->type == ENG_JSON_STRING && !strcmp(x->s, "object")))
		return !*js_fail(c, path, "allOf parts must be objects (with properties) or enums");
	if ((x = get(part, "additionalProperties")) && !(x->type == ENG_JSON_BOOL && x->b))
		return !*js_fail(c, path, "additionalProperties inside allOf is not supported");
	if ((x = get(part, "properties")) && x->type == ENG_JSON_OBJECT) {
		for (int i = 0; i < x->n; i++) {
			for (int j = 0; j < a->n; j++)
				if (!strcmp(a->pn[j], x->k[i]))
					return !*js_fail(c, path, "property \"%.60s\" in two allOf parts is not supported", x->k[i]);
			if (a->n == a->cap) {
				int cap = a->cap ? 2 * a->cap : 16;
				const struct eng_json **v = realloc(a->pv, sizeof(*v) * (size_t)cap);
				const char **n = v ? realloc(a->pn, sizeof(*n) * (size_t)cap) : NULL;

				if (v)
					a->pv = v;
				if (!n) {
					c->nomem = c->failed = true;
					return false;
				}
				a->pn = n;
				a->cap = cap;
			}
			a->pv[a->n] = &x->v[i];
			a->pn[a->n++] = x->k[i];
		}
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *allof_rule(struct js_conv *c, const struct eng_json *s, const char *name,
                              const char *rule_name, const char *path)
{
	const struct eng_json *parts = get(s, "allOf");
	struct allof a = { 0 };
	const char *out = "";
	struct js_prop *v = NULL;
	const char *sep = *name ? "-" : "";

	if (parts->type != ENG_JSON_ARRAY || parts->n == 0)
		return js_fail(c, path, "allOf must be a non-empty array");
	for (int i = 0; i < parts->n && !c->failed; i++)
		allof_add(c, &a, &parts->v[i], S(c, "%s/allOf/%d", path, i), 0);
	if (c->failed)
		goto out;
	if (a.n_enum_parts && (a.n_enum_parts != parts->n || a.n)) {
		out = js_fail(c, path, "allOf mixing enums with objects is not supported");
	} else if (a.n_enum_parts) {
		struct eng_sb b = { 0 };
		const char **common = malloc(sizeof(*common) * (size_t)a.n_enum);
		int k = 0;

		for (int i = 0; common && i < a.n_enum; i++)
			if (a.count[i] == parts->n)
				common[k++] = a.enums[i];
		if (!common) {
			c->nomem = c->failed = true;
		} else if (!k) {
			js_fail(c, path, "the enums of allOf have no value in common");
		} else {
			qsort(common, (size_t)k, sizeof(*common), cmp_str); /* llama.cpp keeps them in a std::map */
			eng_sb_str(&b, "(");
			for (int i = 0; i < k; i++)
				eng_sb_printf(&b, "%s%s", i ? " | " : "", common[i]);
			eng_sb_str(&b, ")");
			out = js_add_rule(c, rule_name, S(c, "%s", b.p ? b.p : ""));
			if (b.oom)
				c->nomem = c->failed = true;
		}
		eng_sb_free(&b);
		free(common);
	} else if ((v = calloc((size_t)a.n + 1, sizeof(*v)))) {
		for (int i = 0; i < a.n && !c->failed; i++) {
			struct eng_json key = { .type = ENG_JSON_STRING, .s = a.pn[i], .len = strlen(a.pn[i]) };
			const char *r = visit(c, a.pv[i], S(c, "%s%s%s", name, sep, a.pn[i]),
			                      S(c, "%s/allOf/properties/%s", path, a.pn[i]), NULL);

			v[i] = (struct js_prop){ a.pn[i], js_add_rule(c, S(c, "%s%s%s-kv", name, sep, a.pn[i]),
			                                              S(c, "%s space \":\" space %s", js_constant(c, &key), r)),
			                         true };
		}
		out = js_add_rule(c, rule_name, c->failed ? "" : js_object_rule(c, v, a.n, name, NULL));
	} else {
		c->nomem = c->failed = true;
	}
out:
	free(v);
	free(a.pv);
	free(a.pn);
	free(a.enums);
	free(a.count);
	return out;
}

// ---- the walk

/* const and enum: values (checked against a type next to them). */
static const char *constant_rule(struct js_conv *c, const struct eng_json *s, const struct eng_json *type,
                                 const char *rule_name, const char *path)
{
	const char *const allow[] = { "type", "const", "enum", NULL };
	const struct eng_json *k = get(s, "const"), *e = get(s, "enum");
	unsigned want = declared_bits(type);
	const char *other = other_keyword(s, allow);
	struct eng_sb b = { 0 };
	const char *body;

	if (other)
		return js_fail(c, path, "%s next to %s is not supported", other, k ? "const" : "enum");
	if (k && e)
		return js_fail(c, path, "const next to enum is not supported");
	if (k) {
		if (!(value_bits(k) & want))
			return js_fail(c, path, "the const value does not match the type");
		return js_add_rule(c, rule_name, js_constant(c, k));
	}
	if (e->type != ENG_JSON_ARRAY || e->n == 0)
		return js_fail(c, path, "enum must be a non-empty array");
	eng_sb_str(&b, "(");
	for (int i = 0; i < e->n; i++) {
		if (!(value_bits(&e->v[i]) & want)) {
			eng_sb_free(&b);
			return js_fail(c, path, "enum value %d does not match the type", i);
		}
		eng_sb_printf(&b, "%s%s", i ? " | " : "", js_constant(c, &e->v[i]));
	}
	eng_sb_str(&b, ")");
	if (b.oom)
		c->nomem = c->failed = true;
	body = S(c, "%s", b.p ? b.p : "");
	eng_sb_free(&b);
	return js_add_rule(c, rule_name, body);
}

/* A schema without a type: the structural keywords decide (llama.cpp's
 * order); with none of them, any value — unless a keyword that only
 * constrains some types is there. */
static const char *untyped_rule(struct js_conv *c, const struct eng_json *s, const char *name,
                                const char *rule_name, const char *path, bool has_props)
{
	const char *const allow[] = { "uniqueItems", "additionalProperties", NULL }; /* the latter true here */
	const char *other;

	if (has_props)
		return has(s, "allOf") ? js_fail(c, path, "allOf next to properties is not supported")
		                       : object_rule(c, s, name, rule_name, path);
	if (has(s, "allOf"))
		return allof_rule(c, s, name, rule_name, path);
	if (has(s, "items") || has(s, "prefixItems"))
		return array_rule(c, s, name, rule_name, path);
	if (has(s, "minLength") || has(s, "maxLength") || has(s, "format"))
		return string_rule(c, s, rule_name, path);
	if ((other = other_keyword(s, allow)))
		return js_fail(c, path, "%s without a type is not supported (add \"type\")", other);
	return any_rule(c, rule_name);
}

static const char *typed_rule(struct js_conv *c, const struct eng_json *s, const char *t, const char *name,
                              const char *rule_name, const char *path, bool has_props)
{
	if (has(s, "allOf") && (strcmp(t, "object") || has_props))
		return js_fail(c, path, "allOf next to %s is not supported", has_props ? "properties" : "type");
	if (!strcmp(t, "object"))
		return has(s, "allOf") ? allof_rule(c, s, name, rule_name, path) : object_rule(c, s, name, rule_name, path);
	if (!strcmp(t, "string"))
		return string_rule(c, s, rule_name, path);
	if (!strcmp(t, "array"))
		return array_rule(c, s, name, rule_name, path);
	if (!strcmp(t, "integer"))
		return integer_rule(c, s, rule_name, path);
	if (!strcmp(t, "number") || !strcmp(t, "boolean") || !strcmp(t, "null")) {
		const char *const b[] = { "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum" };

		for (int i = 0; i < 4 && !strcmp(t, "number"); i++)
			if (has(s, b[i]))
				return js_fail(c, path, "%s on a number is not supported (only integers take bounds)", b[i]);
		return primitive(c, rule_name, t);
	}
	return js_fail(c, path, "unknown type \"%.40s\"", t);
}

/* The rule of schema s (type: the type to use instead of s's own, for a
 * list of types); returns its name. */
static const char *visit(struct js_conv *c, const struct eng_json *s, const char *name, const char *path,
                         const struct eng_json *type)
{
	const char *rule_name = js_reserved_name(name) ? S(c, "%s-", name) : *name ? name : "root";
	const struct eng_json *x, *add;
	const char *r = "";
	bool has_props;

	if (c->failed)
		return "";
	if (++c->depth > MAX_VISIT_DEPTH) {
		r = js_fail(c, path, "schema nested deeper than %d", MAX_VISIT_DEPTH);
		goto out;
	}
	if (s->type == ENG_JSON_BOOL) {
		r = s->b ? any_rule(c, rule_name) : js_fail(c, path, "false: no value validates");
		goto out;
	}
	if (s->type != ENG_JSON_OBJECT) {
		r = js_fail(c, path, "a schema must be an object or a boolean");
		goto out;
	}
	if (!check_unsupported(c, s, path))
		goto out;
	if (!type && (x = get(s, "$ref"))) {
		const char *const allow[] = { "$ref", NULL };
		const char *other = other_keyword(s, allow);

		if (other)
			r = js_fail(c, path, "%s next to $ref is not supported", other);
		else if (x->type != ENG_JSON_STRING)
			r = js_fail(c, path, "$ref must be a string");
		else
			r = js_add_rule(c, rule_name, ref_rule(c, x->s, path));
		goto out;
	}
	if (!type && (has(s, "oneOf") || has(s, "anyOf"))) {
		const char *key = has(s, "oneOf") ? "oneOf" : "anyOf";
		const char *const allow[] = { key, "type", NULL };
		const char *other = has(s, "oneOf") && has(s, "anyOf") ? "anyOf" : other_keyword(s, allow);

		if (other) {
			r = js_fail(c, path, "%s next to %s is not supported", other, key);
		} else if (has(s, "type") && (schema_bits(c, s, 0) & ~declared_bits(get(s, "type")))) {
			r = js_fail(c, path, "type next to %s allows fewer types than its alternatives", key);
		} else {
			r = union_rule(c, get(s, key), NULL, name, path, key);
			r = js_add_rule(c, rule_name, r);
		}
		goto out;
	}
	if (!type && (x = get(s, "type")) && x->type == ENG_JSON_ARRAY) {
		for (int i = 0; i < x->n; i++)
			if (x->v[i].type != ENG_JSON_STRING)
				r = js_fail(c, path, "type must be a string or an array of strings");
		if (!c->failed)
			r = js_add_rule(c, rule_name, union_rule(c, x, s, name, path, "type"));
		goto out;
	}
	if (!type)
		type = get(s, "type");
	if (has(s, "const") || has(s, "enum")) {
		r = constant_rule(c, s, type, rule_name, path);
		goto out;
	}
	if (type && type->type != ENG_JSON_STRING) {
		r = js_fail(c, path, "type must be a string or an array of strings");
		goto out;
	}
	add = get(s, "additionalProperties");
	has_props = has(s, "properties") || (add && !(add->type == ENG_JSON_BOOL && add->b));
	r = type ? typed_rule(c, s, type->s, name, rule_name, path, has_props)
	         : untyped_rule(c, s, name, rule_name, path, has_props);
out:
	c->depth--;
	return r;
}

static int cmp_rule(const void *a, const void *b)
{
	return strcmp(((const struct js_rule *)a)->name, ((const struct js_rule *)b)->name);
}

int eng_json_schema_to_gbnf(const char *what, const char *text, size_t len, char **gbnf, size_t *glen)
{
	struct js_conv c = { .what = what ? what : "(schema)" };
	struct eng_json_doc *doc = NULL;
	struct eng_sb out = { 0 };
	int rc;

	*gbnf = NULL;
	*glen = 0;
	rc = eng_json_parse(c.what, text, len, &doc, &c.root);
	if (rc < 0)
		return rc;
	js_add_rule(&c, "space", SPACE_RULE);
	visit(&c, c.root, "", "#", NULL);
	if (!c.failed) {
		qsort(c.rules, (size_t)c.n_rules, sizeof(*c.rules), cmp_rule);
		for (int i = 0; i < c.n_rules; i++)
			eng_sb_printf(&out, "%s ::= %s\n", c.rules[i].name, c.rules[i].body);
		if (out.oom)
			c.nomem = c.failed = true;
	}
	rc = c.nomem ? -ENOMEM : c.failed ? -EINVAL : 0;
	if (rc == 0) {
		*gbnf = out.p;
		*glen = out.len;
	} else {
		eng_sb_free(&out);
	}
	for (int i = 0; i < c.n_pool; i++)
		free(c.pool[i]);
	free(c.pool);
	free(c.rules);
	eng_json_free(doc);
	return rc;
}
