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
 * KV pages come from one pool.  When it runs out, idle sessions lose their
 * pages, least recently used first, and are rebuilt from their token history
 * when next used.  When every page is held by running turns, a turn takes
 * the pages of turns that started after it (they are recomputed from their
 * token history later, with the same text) or waits: turns get the pool in
 * the order they started.  Only a conversation that cannot fit the pool
 * alone (a pool smaller than one context) fails, with -EFBIG.
 */
#ifndef PROMPTFS_ENGINE_ENGINE_H
#define PROMPTFS_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct eng_model;   /* opaque: gguf, weights, tokenizer, template, backend, pages */
struct eng_session; /* opaque: one conversation */

// ---- model

struct eng_model_params {
	const char *backend;  /* "auto" (NULL), "cpu", "cuda" */
	int n_threads;        /* CPU threads; 0 = all cores */
	int n_ctx;            /* per-session context limit; 0 = min(n_ctx_train, 4096) */
	size_t kv_bytes;      /* KV pool budget; 0 = enough for 8 full contexts, at most 25% of RAM / device memory */
	int max_sessions;     /* 0 = 256 */
	int max_batch_tokens; /* most tokens per forward pass (prefill chunk); 0 = 512 */
	bool copy_weights;    /* read the file into memory instead of mapping it (the daemon:
	                       * the file may then change or shrink under a running mount) */
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
	uint64_t evictions;
};
void eng_model_stats(struct eng_model *m, struct eng_stats *out);

// ---- settings (per session; the `defaults` file and xattrs use these keys)

enum eng_mode { ENG_MODE_CHAT = 0, ENG_MODE_RAW = 1 };

#define ENG_MAX_STOP 8
#define ENG_MAX_SYSTEM 65536

struct eng_settings {
	float temperature;    /* default 0.8 */
	int top_k;            /* 40 */
	float top_p;          /* 0.95 */
	float min_p;          /* 0.05 */
	float repeat_penalty; /* 1.0 (off) */
	int repeat_last_n;    /* 64 */
	int64_t seed;         /* -1 = a fresh random seed per turn */
	int max_tokens;       /* 0 = until the context is full */
	enum eng_mode mode;   /* chat where the model has a template, else raw */
	char *system;         /* system prompt, malloc'd or NULL */
	char *stop[ENG_MAX_STOP]; /* stop strings, malloc'd */
	int n_stop;
};

/* Keys, in the order `defaults` lists them: temperature top_k top_p min_p
 * repeat_penalty repeat_last_n seed max_tokens mode system stop */
extern const char *const eng_settings_keys[];
void eng_settings_default(const struct eng_model *m, struct eng_settings *s);
int eng_settings_copy(struct eng_settings *dst, const struct eng_settings *src);
void eng_settings_free(struct eng_settings *s); /* frees strings, keeps struct */
/* Parses and validates one value (-EINVAL bad value, -ENOENT unknown key);
 * on error s is unchanged.  "stop" takes strings separated by "|" (or an
 * empty value for none); "system" any UTF-8 text. */
int eng_settings_set(struct eng_settings *s, const char *key, const char *val, size_t len);
/* Formats one value; returns its length or -ENOENT. */
int eng_settings_get(const struct eng_settings *s, const char *key, char *buf, size_t n);

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
	double last_prefill_tps, last_decode_tps;
	uint64_t total_prefill_tokens, total_gen_tokens;
	size_t reply_bytes;       /* bytes of the latest reply so far */
};

typedef void (*eng_notify_fn)(void *user, struct eng_session *s);
/* Called (engine thread, no locks held) when a session's reply grew or its
 * turn ended; set before eng_model_start(). */
void eng_model_set_notify(struct eng_model *m, eng_notify_fn fn, void *user);

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
/* The whole conversation: text ("### user\n…\n### assistant\n…\n") or JSON
 * ([{"role":"user","content":…},…]).  *out malloc'd. */
int eng_session_history(struct eng_session *s, bool json, char **out, size_t *len);
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
