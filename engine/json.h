/*
 * json.h — a strict JSON reader (RFC 8259) for untrusted text, the compact
 * writer llama.cpp's json-schema-to-grammar uses for constants, and the
 * engine's growable string buffer.  Internal to the engine (json_schema.c,
 * tokview.c) and its tests; fs/ never includes it.
 *
 * Reading refuses, with a log line naming the byte offset and what was
 * wrong: anything after the value but whitespace, trailing commas,
 * comments, leading zeros, invalid UTF-8, lone surrogates, control
 * characters in strings, \u0000 (strings are NUL-terminated C strings),
 * duplicate object keys, nesting deeper than ENG_JSON_MAX_DEPTH, more than
 * ENG_JSON_MAX_TEXT bytes.  Objects keep their members in document order.
 * A document lives in one arena (eng_json_free frees it all).
 */
#ifndef PROMPTFS_ENGINE_JSON_H
#define PROMPTFS_ENGINE_JSON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_JSON_MAX_DEPTH 64
#define ENG_JSON_MAX_TEXT (1u << 20)

enum eng_json_type {
	ENG_JSON_NULL = 0, ENG_JSON_BOOL, ENG_JSON_NUMBER, ENG_JSON_STRING, ENG_JSON_ARRAY, ENG_JSON_OBJECT,
};

struct eng_json {
	enum eng_json_type type;
	bool b;                 /* BOOL */
	bool is_int;            /* NUMBER: written without fraction or exponent and fits int64 */
	int64_t i;              /* NUMBER with is_int */
	double d;               /* NUMBER */
	const char *s;          /* STRING: decoded UTF-8, NUL-terminated */
	size_t len;             /* STRING: bytes of s */
	int n;                  /* ARRAY, OBJECT: members */
	struct eng_json *v;     /* ARRAY, OBJECT: [n] values */
	const char **k;         /* OBJECT: [n] keys (decoded, NUL-terminated) */
};

struct eng_json_doc; /* the arena of one parsed document */

/* Parses text (len bytes).  0 / -EINVAL (log: "json WHAT: byte N: why") /
 * -ENOMEM.  what names the text in the log. */
int eng_json_parse(const char *what, const char *text, size_t len, struct eng_json_doc **doc,
                   const struct eng_json **root);
void eng_json_free(struct eng_json_doc *doc); /* accepts NULL */

/* The member called key of an object, or NULL. */
const struct eng_json *eng_json_get(const struct eng_json *obj, const char *key);

// ---- a growable string (allocation failure sticks in oom; callers check once)

struct eng_sb {
	char *p;                /* NUL-terminated once anything was added */
	size_t len, cap;
	bool oom;
};
void eng_sb_add(struct eng_sb *b, const char *s, size_t n);
void eng_sb_str(struct eng_sb *b, const char *s);
void eng_sb_printf(struct eng_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void eng_sb_free(struct eng_sb *b);

/* Appends v as nlohmann::json's dump() writes it (no spaces; strings with
 * \" \\ \b \f \n \r \t and \u00xx for other control characters, UTF-8 as
 * is; doubles in their shortest round-trip form, "1.0" for integral ones). */
void eng_json_dump(struct eng_sb *b, const struct eng_json *v);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_JSON_H */
