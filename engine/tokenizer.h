/*
 * tokenizer.h — text ↔ token ids, from the tokenizer stored in a GGUF.
 *
 * tokenizer.ggml.model = "llama": SentencePiece BPE (scores as merge
 *   priority) with byte fallback <0xXX> and the "▁" space prefix.
 * tokenizer.ggml.model = "gpt2": byte-level BPE (merges ranks), with the
 *   pre-tokenizer regex named by tokenizer.ggml.pre (qwen2, llama-bpe/llama3,
 *   gpt-2/default, …), Unicode-aware.
 * Special tokens: CONTROL (and UNKNOWN) token texts in the input become
 * their token only with ENG_TOK_PARSE_SPECIAL; USER_DEFINED ones (e.g.
 * Qwen's <tool_call>) always do, as in llama.cpp and Hugging Face.
 * Behaviour is llama.cpp's (llama-vocab.cpp, unicode.cpp): its test
 * vectors in shared/models/vocab/ pass, and tests/test_tokenizer_ref.py
 * compares ids, pieces and the EOG set with llama.cpp on every vocabulary.
 * Implementation: tokenizer.c (load), tok_encode.c (API), tok_merge.c,
 * tok_pretok.c, detok.c, unicode.c.
 *
 * Thread-safety: a tokenizer is immutable after init; every function may be
 * called from any thread concurrently.
 */
#ifndef PROMPTFS_ENGINE_TOKENIZER_H
#define PROMPTFS_ENGINE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../gguf/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

enum eng_tok_flags {
	ENG_TOK_ADD_BOS = 1 << 0,       /* prepend BOS (callers decide using eng_tokenizer_add_bos) */
	ENG_TOK_PARSE_SPECIAL = 1 << 1, /* "<|im_end|>" in text becomes the special token */
};

enum eng_tok_kind {
	ENG_TOK_KIND_SPM = 0, /* "llama" */
	ENG_TOK_KIND_BPE = 1, /* "gpt2" */
};

struct eng_tokenizer; /* opaque */

/* Builds the tokenizer from GGUF metadata (the strings are copied; the gguf
 * context may be freed afterwards).  0 / -EINVAL with a log line. */
int eng_tokenizer_init(const struct gguf_ctx *g, struct eng_tokenizer **out);
void eng_tokenizer_free(struct eng_tokenizer *t); /* accepts NULL */

enum eng_tok_kind eng_tokenizer_kind(const struct eng_tokenizer *t);
const char *eng_tokenizer_pre(const struct eng_tokenizer *t); /* tokenizer.ggml.pre: "qwen2", "llama-bpe", … */
int eng_tokenizer_n_vocab(const struct eng_tokenizer *t);

/* Longest text eng_tokenize takes (far beyond any context window). */
#define ENG_TOK_MAX_TEXT (1u << 28)

/* Tokenises len bytes (any bytes; invalid UTF-8 is handled as llama.cpp
 * does).  *out is malloc'd (free() it), *n_out its length.  0 / -errno
 * (-EFBIG beyond ENG_TOK_MAX_TEXT, -ENOMEM). */
int eng_tokenize(const struct eng_tokenizer *t, const char *text, size_t len, unsigned flags,
                 int32_t **out, size_t *n_out);

/* The bytes of one token as they appear in text: byte-level decoding for
 * BPE, "▁" → " " and <0xXX> → the byte for SPM.  Control tokens (BOS, EOS,
 * <|im_end|> …) give "" unless render_special; USER_DEFINED tokens always
 * give their text; UNUSED ones give "" (llama_token_to_piece).  A piece may
 * be part of a UTF-8 character: stream pieces through eng_detok_push.
 * Returns the length written (at most n), -EINVAL for a bad id, -ENOSPC if
 * n is too small.  Pieces are short: 256 bytes suffice for every
 * vocabulary we know; eng_tokenizer_max_piece() is the exact bound. */
int eng_token_piece(const struct eng_tokenizer *t, int32_t id, bool render_special, char *buf, size_t n);
/* The longest piece any token of this vocabulary renders to. */
size_t eng_tokenizer_max_piece(const struct eng_tokenizer *t);
/* The token's vocabulary string as stored (for `info`, debugging). */
const char *eng_token_text(const struct eng_tokenizer *t, int32_t id);
/* Id of a token whose stored text is exactly `text`, or -1. */
int32_t eng_token_find(const struct eng_tokenizer *t, const char *text);

int32_t eng_token_bos(const struct eng_tokenizer *t); /* -1 if none */
int32_t eng_token_eos(const struct eng_tokenizer *t); /* -1 if none */
bool eng_tokenizer_add_bos(const struct eng_tokenizer *t); /* tokenizer.ggml.add_bos_token, or the model kind's default */
/* End of generation: EOS, EOT, EOM and the end-of-turn tokens that
 * llama.cpp treats as EOG (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>,
 * <|endoftext|> …). */
bool eng_token_is_eog(const struct eng_tokenizer *t, int32_t id);
bool eng_token_is_control(const struct eng_tokenizer *t, int32_t id);

/* Streaming detokeniser: holds back the bytes of a UTF-8 character that is
 * split across tokens, so every emitted chunk is valid UTF-8.  Start from a
 * zeroed struct (struct eng_detok d = {0}). */
struct eng_detok {
	char pending[8];
	int n_pending;
};
/* Room eng_detok_push needs for a piece of n bytes: each invalid byte can
 * become a 3-byte U+FFFD. */
#define ENG_DETOK_OUT_MAX(n) (3 * (size_t)(n) + 8)
/* Appends piece (n bytes) and writes the complete UTF-8 prefix to out
 * (capacity ENG_DETOK_OUT_MAX(n)); returns bytes written.  Invalid
 * sequences become U+FFFD, one per maximal invalid subpart (as Python's
 * decode(errors="replace")). */
size_t eng_detok_push(struct eng_detok *d, const char *piece, size_t n, char *out);
/* Flushes what is left at the end of a reply: an incomplete character
 * becomes one U+FFFD (capacity 8). */
size_t eng_detok_flush(struct eng_detok *d, char *out);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_TOKENIZER_H */
