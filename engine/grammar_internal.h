/*
 * grammar_internal.h — the compiled form of a GBNF grammar, shared by the
 * parser (grammar.c) and the matcher (grammar_match.c).  The element
 * layout is llama.cpp's llama_grammar_element: each rule is a run of
 * elements, alternatives separated by ALT, ended by END; a character class
 * is CHAR (or CHAR_NOT) followed by CHAR_ALT / CHAR_RNG_UPPER elements.
 */
#ifndef PROMPTFS_ENGINE_GRAMMAR_INTERNAL_H
#define PROMPTFS_ENGINE_GRAMMAR_INTERNAL_H

#include <stdint.h>

#include "grammar.h"

enum gre {
	GRE_END = 0,        /* end of a rule */
	GRE_ALT = 1,        /* start of an alternative */
	GRE_RULE_REF = 2,   /* value: rule id */
	GRE_CHAR = 3,       /* value: code point (starts a class) */
	GRE_CHAR_NOT = 4,   /* inverse class start */
	GRE_CHAR_RNG_UPPER = 5, /* makes the preceding char a range [prev-value] */
	GRE_CHAR_ALT = 6,   /* another char of the class */
	GRE_CHAR_ANY = 7,   /* "." */
};

struct gelem {
	uint32_t type;  /* enum gre */
	uint32_t value;
};

struct eng_grammar {
	int refs;              /* atomic */
	struct gelem *e;       /* [n_e] all rules, flat */
	uint32_t n_e;
	uint32_t *rule_off;    /* [n_rules] first element of each rule in e */
	uint32_t n_rules;
	uint32_t root;         /* rule id of "root" */
};

#endif /* PROMPTFS_ENGINE_GRAMMAR_INTERNAL_H */
