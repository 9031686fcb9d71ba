/*
 * grammar.h — GBNF grammars (llama.cpp's syntax and semantics) that
 * constrain sampling.
 *
 * Language (llama.cpp grammars/README.md): rules `name ::= alternatives`,
 * names [a-zA-Z0-9-]+, `|` alternatives, `( … )` groups, literals "…",
 * character classes [a-z0-9_] and [^…], `.` any character, repetitions
 * `*` `+` `?` `{m}` `{m,}` `{m,n}` (expanded into helper rules exactly as
 * llama.cpp does, at most 2000 repetitions), escapes \x.. \u.... \U........
 * \t \n \r \\ \" \[ \] \-, `#` comments, Unicode code points throughout.
 * Token references (<[id]>, <token>) are refused (not supported).
 * A grammar is refused, with a log line naming line:column, when it does
 * not parse, references an undefined rule, has no `root` rule, or is left
 * recursive (llama.cpp's llama_grammar_detect_left_recursion) — the
 * grammars llama.cpp refuses.
 *
 * Matching is llama.cpp's pushdown automaton: a set of stacks of element
 * positions, advanced one code point at a time; a token's bytes may end
 * inside a UTF-8 character (partial state carried to the next token).
 * End of generation is allowed only when some stack is empty (the text so
 * far is a complete sentence of the grammar).
 *
 * Cost: a compiled grammar is immutable and shared by every session that
 * uses it; a state is per turn.  Checking one token walks its code points
 * through the stacks; the whole-vocabulary mask (eng_grammar_mask) walks a
 * byte trie of the vocabulary's pieces (eng_grammar_vocab) with the stacks,
 * so a shared prefix is matched once and a rejected prefix prunes its whole
 * subtree — it never runs every token through the grammar separately.
 */
#ifndef PROMPTFS_ENGINE_GRAMMAR_H
#define PROMPTFS_ENGINE_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_GRAMMAR_MAX_TEXT (1u << 20) /* bytes of GBNF source (also in engine.h) */

struct eng_grammar;       /* compiled rules (immutable, refcounted) */
struct eng_grammar_state; /* stacks + partial UTF-8 of one generation */
struct eng_grammar_vocab; /* pieces, EOG marks and the piece trie of one tokenizer */

/* Parses and validates GBNF text (len bytes, no NUL).  0 / -EINVAL (with a
 * log line "grammar NAME:LINE:COL: what") / -ENOMEM.  name is only for
 * the log. */
int eng_grammar_parse(const char *name, const char *text, size_t len, struct eng_grammar **out);
struct eng_grammar *eng_grammar_ref(struct eng_grammar *g);
void eng_grammar_unref(struct eng_grammar *g); /* accepts NULL */
int eng_grammar_n_rules(const struct eng_grammar *g);

/* A fresh state at the start of the root rule. */
int eng_grammar_state_init(struct eng_grammar *g, struct eng_grammar_state **out);
void eng_grammar_state_free(struct eng_grammar_state *st); /* accepts NULL */
/* Would these bytes (continuing the text so far) keep the text a prefix of
 * some sentence?  Does not change st. */
bool eng_grammar_state_allows(struct eng_grammar_state *st, const char *bytes, size_t n);
/* Accepts the bytes: 0, or -EINVAL (state unchanged) if not allowed. */
int eng_grammar_state_accept(struct eng_grammar_state *st, const char *bytes, size_t n);
/* The text so far is a complete sentence (end of generation allowed). */
bool eng_grammar_state_complete(const struct eng_grammar_state *st);

/* Pieces of every token (eng_token_piece, control tokens give none) and
 * their trie.  Built once per model. */
int eng_grammar_vocab_init(const struct eng_tokenizer *t, struct eng_grammar_vocab **out);
void eng_grammar_vocab_free(struct eng_grammar_vocab *v);
/* Token allowed next: EOG tokens when complete, tokens with a non-empty
 * piece that st allows; never control tokens or empty pieces. */
bool eng_grammar_token_ok(const struct eng_grammar_vocab *v, struct eng_grammar_state *st, int32_t id);
/* allowed[V] = eng_grammar_token_ok for every token, by the trie walk.
 * Returns the number allowed, or -ENOMEM. */
int eng_grammar_mask(const struct eng_grammar_vocab *v, struct eng_grammar_state *st, bool *allowed);
/* Accepts token id's piece (EOG tokens: nothing).  0 / -EINVAL. */
int eng_grammar_accept_token(const struct eng_grammar_vocab *v, struct eng_grammar_state *st, int32_t id);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_GRAMMAR_H */
