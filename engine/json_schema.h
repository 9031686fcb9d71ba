/*
 * json_schema.h — JSON Schema → GBNF, the conversion llama.cpp's
 * common/json-schema-to-grammar.cpp makes (same rules, same rule names,
 * same text for every schema both accept), refusing what a grammar cannot
 * enforce instead of silently producing output that would not validate.
 *
 * Supported: type (one or a list), properties / required /
 * additionalProperties (false, true, a schema), nested objects, items (a
 * schema, or an array: a tuple), prefixItems, minItems / maxItems, enum,
 * const, string minLength / maxLength, format date, time, date-time, uuid,
 * integer minimum / maximum / exclusiveMinimum / exclusiveMaximum, anyOf,
 * oneOf (as anyOf: a warning when the alternatives' types overlap), allOf
 * of objects (their properties merged, all required, as llama.cpp) or of
 * enums (the intersection), $ref to "#" or "#/…" (JSON pointers: $defs,
 * definitions, …; recursion allowed), true and {} (any value).
 * Annotations (title, description, default, examples, $schema, $id,
 * $comment, deprecated, readOnly, writeOnly, …) and unknown keywords are
 * ignored, as JSON Schema says.
 * Refused (-EINVAL, the log names the keyword and its JSON pointer):
 * not, if/then/else, pattern, patternProperties, propertyNames,
 * min/maxProperties, dependent*, unevaluated*, contains, multipleOf,
 * uniqueItems true, $dynamicRef, formats other than the four, bounds on
 * "number", keywords a grammar would silently ignore (a length next to a
 * format, minItems next to a tuple, validation keywords next to $ref, enum
 * or anyOf, required naming a property not in properties, …), false (no
 * value validates), $ref outside the document.
 */
#ifndef PROMPTFS_ENGINE_JSON_SCHEMA_H
#define PROMPTFS_ENGINE_JSON_SCHEMA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Converts the JSON Schema text (len bytes) to GBNF.  *gbnf (malloc'd,
 * NUL-terminated, *glen bytes): "name ::= body\n" lines sorted by name, as
 * llama.cpp prints them.  0 / -EINVAL (log: "json_schema WHAT: POINTER:
 * why") / -ENOMEM.  what names the schema in the log. */
int eng_json_schema_to_gbnf(const char *what, const char *text, size_t len, char **gbnf, size_t *glen);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_JSON_SCHEMA_H */
