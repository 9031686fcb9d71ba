/*
 * json_schema_internal.h — shared by json_schema.c (the schema walk: kinds,
 * keywords, refusals) and json_schema_rules.c (the rule table and the rule
 * bodies llama.cpp builds: repetitions, integer ranges, objects, keys that
 * are none of some strings).
 *
 * Every string here comes from the conversion's pool (S(), freed with the
 * conversion), so the walk never frees a name; an allocation failure sets
 * c->nomem and c->failed, and S() then returns "" so callers go on
 * safely until the walk unwinds.
 */
#ifndef PROMPTFS_ENGINE_JSON_SCHEMA_INTERNAL_H
#define PROMPTFS_ENGINE_JSON_SCHEMA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "json.h"
#include "json_schema.h"

struct js_rule {
	const char *name, *body;
};

struct js_conv {
	const char *what;
	const struct eng_json *root;
	struct js_rule *rules;        /* [n_rules], unsorted; printed sorted */
	int n_rules, cap_rules;
	const char *resolving[ENG_JSON_MAX_DEPTH]; /* $refs being converted (cycles) */
	int n_resolving;
	void **pool;                  /* every string of the conversion */
	int n_pool, cap_pool;
	int depth;                    /* visit nesting (refs add to it) */
	bool failed, nomem;
};

/* A pooled printf string ("" after a failure). */
const char *S(struct js_conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs the first error: "json_schema WHAT: PATH: message"; returns "". */
const char *js_fail(struct js_conv *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* llama.cpp's _add_rule: the name with runs of [^a-zA-Z0-9-] made "-",
 * numbered (name0, name1 …) when taken by another body. */
const char *js_add_rule(struct js_conv *c, const char *name, const char *body);
const char *js_rule_name(struct js_conv *c, const char *name); /* the sanitised name */
bool js_has_rule(const struct js_conv *c, const char *name);
/* _add_primitive: a built-in rule (boolean, number, string, value, uuid,
 * date-string …) and the rules it uses. */
const char *js_add_primitive(struct js_conv *c, const char *name, const char *prim);
bool js_reserved_name(const char *name);
/* GBNF literal of raw bytes: "…" with \r \n \" \\ escaped. */
const char *js_literal(struct js_conv *c, const char *s, size_t n);
/* The literal matching v's compact JSON text. */
const char *js_constant(struct js_conv *c, const struct eng_json *v);
/* item repeated min..max times (max < 0: unbounded), sep between. */
const char *js_repetition(struct js_conv *c, const char *item, int min, int max, const char *sep);
/* The integer range rule body; has_min / has_max say which bounds apply. */
const char *js_int_range(struct js_conv *c, bool has_min, int64_t min, bool has_max, int64_t max);
/* The JSON string that is none of the given strings (a trie of their code
 * points), the key rule of additionalProperties next to properties. */
const char *js_not_strings(struct js_conv *c, const char *const *v, int n);

/* One property of an object rule: its name and its key-value rule. */
struct js_prop {
	const char *name;
	const char *kv;
	bool required;
};
/* _build_object_rule's body over props (their kv rules already made, in
 * llama.cpp's order), with add_kv the additionalProperties key-value rule
 * (NULL: none). */
const char *js_object_rule(struct js_conv *c, const struct js_prop *props, int n, const char *name,
                           const char *add_kv);

#endif /* PROMPTFS_ENGINE_JSON_SCHEMA_INTERNAL_H */
