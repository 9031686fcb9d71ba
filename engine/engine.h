/*
 * engine.h — the engine's public API: load a model, make sessions
 * (conversations), add turns, generate, read replies, cancel, free.
 * Used by fs/ (the FUSE daemon and the CLI).  Never includes FUSE headers.
 *
 * ---- Threads ----
 * One engine thread owns the backend (eng_model_start()), or a caller drives
 * eng_step() itself (CLI, tests) — never both.  Every eng_session_* function
 * and eng_model_stats() may be called from any thread at any time; they take
 * the model's lock briefly and never wait for a forward pass.  The notify
 * callback runs on the engine thread with no engine lock held.
 *
 * ---- Turns ----
 * A session is a conversation: a token history, a KV page table, settings and
 * a list of turns (user text, reply text).  eng_session_submit() adds a user
 * turn: in chat mode it is formatted with the model's chat template (system
 * prompt on the first turn), in raw mode the text is appended as is.  The
 * new tokens are prefilled (only those: the KV cache of the earlier turns is
 * reused), then the reply is generated until an end-of-generation token, a
 * stop string, max_tokens, the context limit, or cancel.  A turn submitted
 * while another is running waits for it (queued, in order).
 *
 * ---- Memory ----
 * KV pages come from one pool, reference counted (pages.c): a fork
 * (eng_session_fork) shares its source's pages, and a shared page is copied
 * before the first write into it.  When the pool runs out, idle sessions
 * lose their pages, least recently used first, and are rebuilt from their
 * token history when next used.  When every page is held by running turns,
 * a turn takes the pages of turns that started after it (they are
 * recomputed from their token history later, with the same text) or waits:
 * turns get the pool in the order they started.  Only a conversation that
 * cannot fit the pool alone (a pool smaller than one context) fails, with
 * -EFBIG.
 */
#ifndef PROMPTFS_ENGINE_ENGINE_H
#define PROMPTFS_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h" /* struct eng_logit_bias */

#ifdef __cplusplus
extern "C" {
#endif

struct eng_model;   /* opaque: gguf, weights, tokenizer, template, backend, pages */
struct eng_grammar; /* opaque: a compiled grammar (grammar.h) */
struct eng_session; /* opaque: one conversation */

// ---- model

#define ENG_MAX_BATCH_SEQS 512 /* the most sequences one forward pass may take */

struct eng_model_params {
	const char *backend;  /* "auto" (NULL), "cpu", "cuda" */
	int n_threads;        /* CPU threads; 0 = all cores */
	int n_ctx;            /* per-session context limit; 0 = min(n_ctx_train, 4096) */
	size_t kv_bytes;      /* KV pool budget; 0 = enough for 8 full contexts, at most 25% of RAM / device memory */
	int max_sessions;     /* 0 = 256 */
	int max_batch_tokens; /* most tokens per forward pass (prefill chunk); 0 = 512 */
	bool copy_weights;    /* read the file into memory instead of mapping it (the daemon:
	                       * the file may then change or shrink under a running mount) */
	bool no_prefix_share; /* sessions with the same token prefix do not share its full KV
	                       * pages (shared by default: prefilled once, copied on write) */
	int max_batch_seqs;   /* most sequences in one forward pass, 1..512; 0 = 128 (capped by
	                       * max_sessions and max_batch_tokens) */
	int window_pages;     /* models with sliding-window layers: window pages of the pool
	                       * (engine.c); 0 = split kv_bytes for full-context sessions */
};

void eng_model_params_default(struct eng_model_params *p);
/* Opens, validates and binds the GGUF, builds tokenizer, template and
 * backend.  0 / -errno with a log line (-EINVAL bad file or unsupported
 * model, -ENODEV backend unavailable, -ENOMEM). */
int eng_model_load(const char *path, const struct eng_model_params *p, struct eng_model **out);
void eng_model_free(struct eng_model *m); /* stops the engine thread; accepts NULL */

const struct eng_config *eng_model_config(const struct eng_model *m);
const struct eng_tokenizer *eng_model_tokenizer(const struct eng_model *m);
const char *eng_model_backend_name(const struct eng_model *m);
int eng_model_n_ctx(const struct eng_model *m);
/* Human-readable description: architecture, parameter count, layers, heads,
 * context, vocabulary, tensor types (count and bytes per type), chat
 * template family, backend and device.  *out is malloc'd. */
int eng_model_describe(const struct eng_model *m, char **out);

struct eng_stats {
	int n_sessions, n_busy;
	uint64_t tokens_in;          /* prompt tokens submitted */
	uint64_t tokens_out;         /* tokens generated */
	uint64_t prefill_tokens;     /* tokens run through prefill (incl. cache rebuilds) */
	uint64_t decode_tokens;
	double prefill_seconds, decode_seconds;
	uint64_t forward_passes;
	size_t kv_bytes_total, kv_bytes_used;
	int kv_pages_total, kv_pages_used;
	int kv_pages_shared;         /* pages in more than one session's table (forks) */
	uint64_t pages_copied;       /* shared pages copied before a write (copy-on-write) */
	uint64_t evictions;
	uint64_t preemptions;        /* running turns whose pages went to older turns (full pool) */
	bool prefix_share;           /* shared prefixes are on */
	int prefix_pages;            /* full pages named in the shared-prefix table */
	uint64_t prefill_saved;      /* prompt tokens taken from shared prefix pages, not prefilled */
	int max_batch_seqs;          /* sequences one forward pass takes at most */
	int kv_wpages_total, kv_wpages_used; /* window pages of sliding-window layers (0: none) */
	uint64_t window_rebuilds;    /* caches rebuilt because their window pages had been reused */
};
void eng_model_stats(struct eng_model *m, struct eng_stats *out);

// ---- settings (per session; the `defaults` file and xattrs use these keys)

/* json: formatted as chat (raw where the model has no template), the reply
 * constrained to one JSON value (a built-in grammar).  What constrains a
 * reply, the first that is set: json_schema, schema, grammar, mode json. */
enum eng_mode { ENG_MODE_CHAT = 0, ENG_MODE_RAW = 1, ENG_MODE_JSON = 2 };

#define ENG_MAX_STOP 8
#define ENG_MAX_SYSTEM 65536
#define ENG_MAX_BIAS 1024     /* logit_bias entries */
#define ENG_MAX_LOGPROBS 20   /* top-K alternatives per token in NAME.tokens */
#define ENG_GRAMMAR_NAME_MAX 255
#define ENG_GRAMMAR_MAX_TEXT (1u << 20) /* bytes of GBNF source (also in grammar.h) */
#define ENG_MAX_SCHEMA 65536  /* bytes of a json_schema value (an xattr holds at most 64 KiB) */

/* The settings keys, in the order `defaults` lists them.  This enum and
 * eng_settings_keys[] are the one list of keys (fs/ has none of its own). */
enum eng_key {
	ENG_KEY_TEMPERATURE, ENG_KEY_TOP_K, ENG_KEY_TOP_P, ENG_KEY_MIN_P,
	ENG_KEY_REPEAT_PENALTY, ENG_KEY_REPEAT_LAST_N, ENG_KEY_SEED, ENG_KEY_MAX_TOKENS,
	ENG_KEY_MODE, ENG_KEY_SYSTEM, ENG_KEY_STOP,
	ENG_KEY_PRESENCE_PENALTY, ENG_KEY_FREQUENCY_PENALTY, ENG_KEY_TYPICAL_P,
	ENG_KEY_DRY_MULTIPLIER, ENG_KEY_DRY_BASE, ENG_KEY_DRY_ALLOWED_LENGTH,
	ENG_KEY_DRY_PENALTY_LAST_N, ENG_KEY_XTC_PROBABILITY, ENG_KEY_XTC_THRESHOLD,
	ENG_KEY_LOGIT_BIAS, ENG_KEY_LOGPROBS, ENG_KEY_GRAMMAR, ENG_KEY_JSON_SCHEMA, ENG_KEY_SCHEMA,
	ENG_KEY_COUNT
};

struct eng_settings {
	float temperature;    /* default 0.8 */
	int top_k;            /* 40 */
	float top_p;          /* 0.95 */
	float min_p;          /* 0.05 */
	float repeat_penalty; /* 1.0 (off) */
	int repeat_last_n;    /* 64: window of the repeat/presence/frequency penalties */
	int64_t seed;         /* -1 = a fresh random seed per turn */
	int max_tokens;       /* 0 = until the context is full */
	enum eng_mode mode;   /* chat where the model has a template, else raw */
	char *system;         /* system prompt, malloc'd or NULL */
	char *stop[ENG_MAX_STOP]; /* stop strings, malloc'd */
	int n_stop;
	float presence_penalty;  /* 0 (off) */
	float frequency_penalty; /* 0 (off) */
	float typical_p;         /* 1 (off) */
	float dry_multiplier;    /* 0 (off) */
	float dry_base;          /* 1.75 */
	int dry_allowed_length;  /* 2 */
	int dry_penalty_last_n;  /* -1 = the whole context */
	float xtc_probability;   /* 0 (off) */
	float xtc_threshold;     /* 0.1 */
	struct eng_logit_bias *bias; /* [n_bias] malloc'd, ids unique */
	int n_bias;
	int logprobs;            /* 0: alternatives per token in NAME.tokens */
	char *grammar;           /* name of a grammar (eng_grammars_*), malloc'd or NULL */
	char *json_schema;       /* a JSON Schema, the text as set, malloc'd or NULL */
	struct eng_grammar *json_schema_g; /* its grammar (a reference), with json_schema */
	char *schema;            /* name of a JSON Schema in schemas/ (eng_schemas_*), malloc'd or NULL */
};

extern const char *const eng_settings_keys[]; /* [ENG_KEY_COUNT + 1], NULL-terminated */
/* enum eng_key of a key name, or -1. */
int eng_settings_key_index(const char *key);
void eng_settings_default(const struct eng_model *m, struct eng_settings *s);
/* A deep copy; dst is overwritten, not freed (free it first if it holds
 * anything).  0 / -ENOMEM (dst untouched). */
int eng_settings_copy(struct eng_settings *dst, const struct eng_settings *src);
void eng_settings_free(struct eng_settings *s); /* frees strings, keeps struct */
/* Parses and validates one value (-EINVAL bad value, -ENOENT unknown key);
 * on error s is unchanged.  "stop" takes strings separated by "|" (or an
 * empty value for none); "system" any UTF-8 text; "logit_bias" a list of
 * id:bias (comma or space separated; bias a number, -inf or inf);
 * "json_schema" a JSON Schema (converted and compiled here, once: -EINVAL
 * with a log line naming the keyword it cannot convert; "" for none);
 * "schema" a name in schemas/ (checked when a turn starts). */
int eng_settings_set(struct eng_settings *s, const char *key, const char *val, size_t len);
/* Copies one key's (already parsed) value from src to dst: 0 / -ENOMEM. */
int eng_settings_take(struct eng_settings *dst, const struct eng_settings *src, enum eng_key key);
/* Formats one value; returns its length or -ENOENT. */
int eng_settings_get(const struct eng_settings *s, const char *key, char *buf, size_t n);

// ---- grammars (the mount's grammars/ folder; see grammar.h for the language)

/* Parses text as GBNF and stores it under name (replacing one of that
 * name).  -EINVAL (bad name, or a grammar that does not parse: the log
 * names line:column), -ENOMEM.  Turns already running keep their grammar. */
int eng_grammars_put(struct eng_model *m, const char *name, const char *text, size_t len);
int eng_grammars_remove(struct eng_model *m, const char *name); /* -ENOENT */
int eng_grammars_rename(struct eng_model *m, const char *from, const char *to); /* replaces `to` */
/* A copy of the source (malloc'd) or -ENOENT. */
int eng_grammars_text(struct eng_model *m, const char *name, char **text, size_t *len);
/* The names, sorted (one malloc'd block: free(*names)); -ENOMEM. */
int eng_grammars_names(struct eng_model *m, char ***names, int *n);

// ---- JSON schemas (the mount's schemas/ folder; json_schema.h for what converts)

/* The same calls for named JSON Schemas: put converts the text to a
 * grammar (as llama.cpp's json-schema-to-grammar) and compiles it, once;
 * -EINVAL with a log line naming the keyword or byte it cannot take. */
int eng_schemas_put(struct eng_model *m, const char *name, const char *text, size_t len);
int eng_schemas_remove(struct eng_model *m, const char *name);
int eng_schemas_rename(struct eng_model *m, const char *from, const char *to);
int eng_schemas_text(struct eng_model *m, const char *name, char **text, size_t *len);
int eng_schemas_names(struct eng_model *m, char ***names, int *n);
/* The GBNF a schema converts to (malloc'd), for users and tests. */
int eng_schema_gbnf(const char *text, size_t len, char **gbnf, size_t *glen);

// ---- sessions

enum eng_state {
	ENG_STATE_EMPTY = 0,   /* no turn yet (or reset) */
	ENG_STATE_QUEUED,      /* turn submitted, waiting for the engine */
	ENG_STATE_PREFILL,
	ENG_STATE_GENERATING,
	ENG_STATE_DONE,        /* reply complete */
	ENG_STATE_ERROR,       /* turn failed: see error and status */
};

enum eng_stop_reason {
	ENG_STOP_NONE = 0, ENG_STOP_EOG, ENG_STOP_STRING, ENG_STOP_MAX_TOKENS,
	ENG_STOP_CONTEXT, ENG_STOP_CANCEL,
};

struct eng_session_info {
	enum eng_state state;
	enum eng_stop_reason stop;
	int error;                /* -errno of a failed turn, else 0 */
	char status[160];         /* "idle", "queued", "prefill", "generating",
	                           * "done (eos)", "error: KV cache full (ENOSPC)" … */
	int n_ctx;                /* limit */
	int n_past;               /* tokens in the conversation */
	int n_cached;             /* of which are in the KV cache now */
	int n_turns;
	int last_prompt_tokens;   /* tokens the latest turn added (template included) */
	int last_prefill_tokens;  /* tokens prefilled for it (== last_prompt_tokens when the cache was reused) */
	int last_gen_tokens;
	int last_cached_tokens;   /* of last_prompt_tokens' history, tokens taken from shared prefix pages */
	double last_prefill_tps, last_decode_tps;
	uint64_t total_prefill_tokens, total_gen_tokens;
	size_t reply_bytes;       /* bytes of the latest reply so far */
	size_t tokens_bytes;      /* bytes of its token view so far (eng_session_read_tokens) */
};

typedef void (*eng_notify_fn)(void *user, struct eng_session *s);
/* Called (engine thread, no locks held) when a session's reply grew or its
 * turn ended; set before eng_model_start(). */
void eng_model_set_notify(struct eng_model *m, eng_notify_fn fn, void *user);

enum eng_event {
	ENG_EVENT_EVICTED = 1,  /* the session lost its KV cache to make room */
	ENG_EVENT_RESTORED,     /* an evicted session's KV cache is whole again */
	ENG_EVENT_DONE,         /* a turn ended: end of turn, stop string, max_tokens */
	ENG_EVENT_CONTEXT_FULL, /* a turn ended at the end of the context */
	ENG_EVENT_CANCELLED,
	ENG_EVENT_ERROR,        /* a turn failed (status says why) */
	ENG_EVENT_PREEMPTED,    /* a running turn gave its KV pages to an older turn (recomputed later) */
};
typedef void (*eng_event_fn)(void *user, struct eng_session *s, enum eng_event ev);
/* Called on the engine thread with no engine lock held; set before
 * eng_model_start(). */
void eng_model_set_events(struct eng_model *m, eng_event_fn fn, void *user);

/* -ENOSPC when max_sessions exist. */
int eng_session_init(struct eng_model *m, const struct eng_settings *s, struct eng_session **out);
/* Cancels any running turn and frees the session once the engine thread has
 * let go of it (safe to call while a step runs). */
void eng_session_free(struct eng_session *s);
void eng_session_set_user(struct eng_session *s, void *user);
void *eng_session_get_user(const struct eng_session *s);
/* Replaces the session's settings (takes effect for the next turn; sampling
 * settings also for the rest of the current one). */
int eng_session_set_settings(struct eng_session *s, const struct eng_settings *st);
int eng_session_get_settings(struct eng_session *s, struct eng_settings *out); /* copy; free with eng_settings_free */

/* Adds a user turn.  -EFBIG: the conversation plus this turn (and at least
 * one reply token) does not fit n_ctx — nothing is changed.  -EINVAL: text
 * is empty. */
int eng_session_submit(struct eng_session *s, const char *text, size_t len);
/* Drops the conversation, its queued turns and its KV pages (cancels a
 * running turn); settings stay. */
void eng_session_reset(struct eng_session *s);
/* Stops the running turn at the next step (reply keeps what it has). */
void eng_session_cancel(struct eng_session *s);
/* Re-adds a finished turn without running the model (journal replay); the
 * KV cache is rebuilt on first use. -EFBIG if it does not fit. */
int eng_session_restore_turn(struct eng_session *s, const char *user, size_t ulen,
                             const char *reply, size_t rlen);

/* Makes dst a fork of src: dst's conversation is replaced by src's first
 * n_turns finished turns (n_turns < 0: every finished turn; a running or
 * queued turn of src is not copied), with src's system prompt, token
 * history and KV cache up to the end of the last copied turn.  Full KV
 * pages are shared (refcounted, copy-on-write: whichever session writes
 * into a shared page first gets its own copy), so the fork costs no
 * prefill and dst's next turn prefills only its own tokens.  dst's
 * settings are not touched.  -EINVAL: src == dst, different models, or
 * n_turns above src's finished turns (dst unchanged). */
int eng_session_fork(struct eng_session *dst, struct eng_session *src, int n_turns);

void eng_session_info(struct eng_session *s, struct eng_session_info *out);
/* Copies up to n bytes of the latest reply from offset off; returns bytes
 * copied (0 at the current end).  *final (if non-NULL) tells whether the
 * reply is complete (done, error, or no turn), so 0 bytes + final = EOF. */
size_t eng_session_read_reply(struct eng_session *s, uint64_t off, char *buf, size_t n, bool *final);
/* One finished turn as text (journal, eng_session_turns). */
struct eng_turn_text {
	char *user, *reply;       /* NUL-terminated copies */
	size_t ulen, rlen;
};
/* The conversation's finished turns, in order, as copies (*out malloc'd,
 * free with eng_turn_texts_free): the inverse of eng_session_restore_turn.
 * Returns the count (0: none, *out NULL) or -ENOMEM. */
int eng_session_turns(struct eng_session *s, struct eng_turn_text **out);
void eng_turn_texts_free(struct eng_turn_text *t, int n); /* accepts NULL */
/* The token view of the latest reply (the mount's NAME.tokens: one line
 * per sampled token, "INDEX ID PIECE LOGPROB [ID PIECE LOGPROB]...", see
 * engine/tokview.c), read like eng_session_read_reply.  Nothing is
 * recorded, and no log-probability computed, until the view is asked for
 * (eng_session_watch_tokens, which stays on for the session; the tokens
 * sampled before are then listed from the history, their log-probability
 * "-") or logprobs > 0. */
void eng_session_watch_tokens(struct eng_session *s);
size_t eng_session_read_tokens(struct eng_session *s, uint64_t off, char *buf, size_t n, bool *final);
/* The whole conversation: text ("### user\n…\n### assistant\n…\n") or JSON
 * ([{"role":"user","content":…},…]).  *out malloc'd. */
int eng_session_history(struct eng_session *s, bool json, char **out, size_t *len);
/* The byte length eng_session_history_more() would return, counted
 * without building the text. */
int eng_session_history_size(struct eng_session *s, bool json, const struct eng_turn_text *more, int n_more,
			     size_t *len);
/* Message j of the conversation: 0 the system prompt (when there is one),
 * 2i+1 turn i's user text, 2i+2 its reply (once the turn started).  *role
 * is "system", "user" or "assistant" (static); *text (malloc'd, NUL-
 * terminated) only when text != NULL.  -ENOENT: no such message. */
int eng_session_message(struct eng_session *s, int j, const char **role, char **text, size_t *len);
/* One more than the highest message number that may exist (2 n_turns + 1). */
int eng_session_n_messages(struct eng_session *s);

// ---- KV images (page files of the state directory; kvimage.c)

/* What a saved KV cache is valid for. */
struct eng_kv_id {
	uint64_t file_size;    /* of the model file */
	uint64_t header_hash;  /* eng_hash64 of the GGUF header (metadata + tensor table) */
	char kv_type[16];      /* "f16" */
	char backend[16];      /* "cpu", "cuda": page bytes are in the backend's own order */
	uint32_t n_layer, n_head_kv, head_dim, page_tokens;
	uint64_t page_bytes;
};
int eng_model_kv_id(const struct eng_model *m, struct eng_kv_id *id);
uint64_t eng_hash64(uint64_t h, const void *p, size_t n); /* h = 0 starts a hash */

struct eng_kv_image {
	int n_tokens;          /* the cached prefix of the history */
	int32_t *tokens;       /* [n_tokens] */
	int n_pages;           /* ceil(n_tokens / page) */
	size_t page_bytes;
	uint8_t *pages;        /* [n_pages][page_bytes]: after eng_kv_image_read() */
	int32_t *page_ids;     /* export: pages held (a reference each) until read */
	int32_t *wpage_ids;    /* export: their window pages held (sliding-window layers), -1 none */
	struct eng_model *m;
};
/* The session's cached prefix: its tokens, and a reference on the pages
 * holding them (shared pages are never written, so they stay as they are).
 * Brief, under the engine lock.  -EBUSY while it has a turn (try again
 * when idle); n_tokens 0 when nothing is cached (evicted, reset). */
int eng_session_kv_export(struct eng_session *s, struct eng_kv_image *img);
/* Copies the exported pages to img->pages and lets them go (any thread, no
 * lock held; the session may be gone by now).  0 / -errno. */
int eng_kv_image_read(struct eng_kv_image *img);
/* Attaches a saved cache to an idle session with no cache (a restored one):
 * the prefix where the image's tokens equal the session's history, as far
 * as free pages allow (no eviction).
 * Returns the tokens now cached (0: nothing usable), -EINVAL for an image
 * of another geometry, -EBUSY. */
int eng_session_kv_import(struct eng_session *s, const struct eng_kv_image *img);
void eng_kv_image_free(struct eng_kv_image *img);
/* Hands a saved cache (read from its page file, with pages) to a session
 * whose cache is empty (evicted): the engine thread attaches its matching
 * prefix before the session's next prefill, evicting idle sessions for the
 * pages if it must, so that prefill covers only what the image lacks.  The
 * session takes img's contents (img is emptied); an unused offer is dropped
 * with the conversation. */
void eng_session_kv_offer(struct eng_session *s, struct eng_kv_image *img);
/* The same followed by n_more finished turns that are not in the session
 * (the journal's turns that did not fit the context). */
int eng_session_history_more(struct eng_session *s, bool json, const struct eng_turn_text *more,
                             int n_more, char **out, size_t *len);

// ---- running

/* One scheduler step: a single forward pass over every session with work
 * (prefill chunks and one decode token each), then sampling, reply text and
 * notifications.  Returns the number of sessions served (0: nothing to do)
 * or -errno of a backend failure (the affected turns end in ERROR). */
int eng_step(struct eng_model *m);
/* Starts / stops the engine thread that loops eng_step() and sleeps when
 * there is no work. */
int eng_model_start(struct eng_model *m);
void eng_model_stop(struct eng_model *m);

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_ENGINE_H */
