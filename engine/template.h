/*
 * template.h — chat templates: the family of a model's
 * tokenizer.chat_template (Jinja text, detected by its distinctive markers,
 * never executed) and a renderer per family written in C.
 *
 * Rendering is turn by turn and prefix-stable: the text of a conversation
 * up to turn k+1 is the text up to turn k followed by what
 * eng_template_next_turn() emits, so a session's KV cache is always a
 * prefix of the next turn's prompt.  The renderers reproduce the reference
 * Jinja templates byte for byte (tests/test_template.py renders both).
 *
 * Output goes through a callback in segments of three kinds, so that the
 * engine can tokenise special tokens of the template's own markup as special
 * tokens while user text is never parsed for special tokens:
 *   SPECIAL  exactly one special token's text ("<|im_start|>", the BOS text)
 *   MARKUP   other template text ("user\n", "[INST] ")
 *   CONTENT  text from the user (messages, system prompt, replies)
 */
#ifndef PROMPTFS_ENGINE_TEMPLATE_H
#define PROMPTFS_ENGINE_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum eng_tmpl_family {
	ENG_TMPL_NONE = 0, /* no template or unknown: raw mode */
	ENG_TMPL_CHATML,   /* <|im_start|>role\n…<|im_end|>\n (Qwen, many others) */
	ENG_TMPL_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|> */
	ENG_TMPL_LLAMA2,   /* <s>[INST] <<SYS>>\n…\n<</SYS>>\n\n… [/INST] … </s> */
	ENG_TMPL_MISTRAL,  /* <s>[INST] … [/INST]…</s> (no <<SYS>>) */
	ENG_TMPL_GEMMA,    /* <bos><start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n */
	ENG_TMPL_PHI3,     /* <|user|>\n…<|end|>\n<|assistant|>\n */
	ENG_TMPL_ZEPHYR,   /* <|user|>\n…</s>\n<|assistant|>\n */
	ENG_TMPL_COUNT,
};

enum eng_tmpl_seg {
	ENG_TMPL_SEG_SPECIAL = 0,
	ENG_TMPL_SEG_MARKUP = 1,
	ENG_TMPL_SEG_CONTENT = 2,
};

/* How a family places the system prompt. */
enum eng_tmpl_system {
	ENG_TMPL_SYSTEM_BLOCK = 0, /* a turn of its own */
	ENG_TMPL_SYSTEM_PREFIX,    /* prepended to the first user message */
	ENG_TMPL_SYSTEM_DROP,      /* the template has no place for it: ignored (logged) */
};

struct eng_template {
	enum eng_tmpl_family family;
	enum eng_tmpl_system system_mode;
	bool bos_first;        /* the template starts with bos_token */
	bool eos_space;        /* mistral v0.1: a reply ends with eos_token + ' ' */
	char *default_system;  /* used when the session has none (ChatML/Qwen), malloc'd or NULL */
	char *bos;             /* text of bos_token / eos_token, malloc'd ("" if none) */
	char *eos;
};

/* Returns 0 (or -errno) and the segment is taken; text is not NUL-terminated. */
typedef int (*eng_tmpl_emit_fn)(void *user, enum eng_tmpl_seg kind, const char *text, size_t len);

/* Detects the family from the Jinja text (NULL or unknown → ENG_TMPL_NONE,
 * which is not an error).  bos/eos: the texts of the tokenizer's BOS and EOS
 * tokens (NULL → "").  0 / -ENOMEM. */
int eng_template_init(const char *jinja, const char *bos, const char *eos, struct eng_template *out);
void eng_template_free(struct eng_template *t); /* keeps the struct; accepts a zeroed one */
const char *eng_template_family_name(enum eng_tmpl_family f); /* "chatml", "llama3", … "none" */

/* The start of a conversation and its first user turn, up to and including
 * the assistant header.  system: NULL → the template's default (if any). */
int eng_template_first_turn(const struct eng_template *t, const char *system, size_t slen,
                            const char *user, size_t ulen, eng_tmpl_emit_fn emit, void *arg);
/* Closes the previous assistant reply and renders the next user turn and
 * the assistant header. */
int eng_template_next_turn(const struct eng_template *t, const char *user, size_t ulen,
                           eng_tmpl_emit_fn emit, void *arg);
/* An assistant reply as the template writes it into the history (trimmed
 * where the template trims); the engine never re-emits replies (their tokens
 * are in the cache), tests and tools do. */
int eng_template_reply(const struct eng_template *t, const char *reply, size_t rlen,
                       eng_tmpl_emit_fn emit, void *arg);
/* What closes an assistant reply (the end-of-turn markup), alone. */
int eng_template_end_reply(const struct eng_template *t, eng_tmpl_emit_fn emit, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_TEMPLATE_H */
