/*
 * engine_internal.h — the structs behind engine.h's opaque handles, shared
 * by engine.c (model), settings.c, session.c (turns), step.c (scheduler)
 * and history.c.  Not a public header: fs/ uses engine.h only; the CLI
 * bench and the tests use the few extra entry points at the bottom.
 *
 * ---- Locking ----
 * m->lock protects every field marked "lock" (all session state, the page
 * free list, the stats).  The forward pass runs without it on copies of the
 * batch's tokens and page tables (m->arena), so any eng_session_* call may
 * change a session while it is in a batch: a reset or free bumps s->epoch and
 * the step drops that session's results; the struct itself lives until its
 * last reference (the owner's, a batch's, a notification's) is gone.
 */
#ifndef PROMPTFS_ENGINE_INTERNAL_H
#define PROMPTFS_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend.h"
#include "engine.h"
#include "sampler.h"
#include "template.h"
#include "tokenizer.h"
#include "grammar.h"
#include "json.h" /* struct eng_sb */

/* One user turn and its reply. */
struct eng_turn {
	char *user;            /* the user's text as submitted, NUL-terminated */
	size_t ulen;
	char *reply;           /* the reply so far (committed text), NUL-terminated */
	size_t rlen, rcap;
	enum eng_mode mode;    /* how it was formatted */
	bool started;          /* its tokens are in the session's history */
	bool finished;
	enum eng_stop_reason stop;
	int error;             /* -errno when the turn failed */
	int n_prompt;          /* tokens the turn added (template included) */
	int n_prefill;         /* tokens prefilled for it (cache rebuilds included) */
	int n_gen;             /* tokens sampled (EOG excluded) */
	int n_shared;          /* prompt tokens whose KV came from shared prefix pages (not prefilled) */
	double prefill_s, decode_s;
	int n_keep;            /* history tokens kept when it started (raw mode may rewrite the rest) */
	int n_end;             /* tokens in the history once the turn finished (fork points) */
	uint64_t draws_end;    /* the session's draw count then */
	struct eng_sb tokv;    /* its token view (tokview.c): one line per sampled token, once asked for */
	int tokv_n;            /* lines in tokv */
};

enum eng_phase { PHASE_QUEUED = 0, PHASE_PREFILL, PHASE_GENERATING };

struct eng_session {
	struct eng_model *m;
	struct eng_session *prev, *next; /* lock: the model's list */
	int refs;                        /* lock */
	bool dead;                       /* lock: eng_session_free() was called */
	bool in_batch;                   /* lock: in the step now running */
	uint64_t epoch;                  /* lock: bumped by reset/free */
	void *user;

	struct eng_settings st;          /* lock */
	char *conv_system;               /* lock: system prompt of the conversation (history) */

	struct eng_turn *turns;          /* lock: [n_turns]; started ones first */
	int n_turns, cap_turns;
	int cur;                         /* lock: active turn index, -1 none */
	enum eng_phase phase;            /* lock: of the active turn */
	bool cancel;                     /* lock: stop the active turn at the next step */
	uint64_t seed;                   /* lock: seed of the active turn */
	uint64_t draws;                  /* lock: tokens sampled in the conversation */

	int32_t *tokens;                 /* lock: [n_ctx] the conversation's token history */
	int n_past;                      /* lock: tokens in the history */
	int n_cached;                    /* lock: of which are in the KV cache (a prefix) */
	int32_t *pages;                  /* lock: [max pages] page table, one reference each (pages.c) */
	bool *wheld;                     /* lock: [max pages] it holds the window part of pages[i] (window.c) */
	int n_pages;                     /* lock: pages held */
	bool evicted;                    /* lock: lost its cache to an eviction, not rebuilt yet */
	struct eng_kv_image *offer;      /* lock: saved pages to attach before its next prefill */
	uint64_t lru;                    /* lock: step number of the last use */

	struct eng_detok detok;          /* lock: UTF-8 carry-over of the active turn */
	char *hold;                      /* lock: text held back for the stop strings */
	size_t n_hold, cap_hold;

	uint64_t total_prefill, total_gen; /* lock */
	uint64_t turn_serial;            /* lock: bumped by every eng_turn_start_locked */
	struct eng_grammar *grammar;     /* lock: the active turn's grammar (a reference), NULL none */
	struct eng_grammar_state *gstate; /* engine thread: state for turn gstate_serial */
	uint64_t gstate_serial;
	uint64_t arrival;                /* lock: order in which the active turn started (KV fairness) */
	int dropped;                     /* lock: -errno of a queued turn dropped when it came to run */
	bool ignore_eog;                 /* lock: bench: generate past end-of-generation */
	bool watch_tokens;               /* lock: its token view was asked for (tokview.c) */
};

struct eng_model {
	struct gguf_ctx *g;
	struct eng_config cfg;
	struct eng_weights w;
	struct eng_tokenizer *tok;
	struct eng_template tmpl;
	const struct eng_backend_ops *ops;
	struct eng_backend *be;
	struct eng_model_params p;       /* resolved (no zeros) */
	int n_ctx;
	int max_pages_seq;               /* pages of one full context */
	int max_seqs;                    /* most sequences in one forward pass */
	size_t page_bytes;               /* eng_kv_page_bytes: every layer (saved images) */
	size_t gpage_bytes, wpage_bytes; /* of which outside / in the sliding-window layers */
	int n_pages;                     /* pool size */
	int n_wpages;                    /* window pages (window.c; 0: no sliding-window layers) */
	char path[4096];

	pthread_mutex_t lock;
	pthread_cond_t work;             /* signalled when there may be work */
	int32_t *free_pages;             /* lock: stack of free page ids */
	int n_free;
	int32_t *page_refs;              /* lock: [n_pages] page tables holding each page */
	struct eng_session *sessions;    /* lock: list head */
	int n_sessions;
	struct eng_stats stats;          /* lock */
	uint64_t step_no;                /* lock */
	bool weights_lost;               /* lock: the mapped model file changed (gguf_file_changed) */
	char weights_why[120];           /* lock: why, for user.status */
	uint64_t n_arrivals;             /* lock: turns started so far */
	bool kv_waiting;                 /* lock: a turn waited for KV pages in the last step */
	struct eng_window {              /* lock: window pages (window.c); n == 0: off */
		int n;                   /* window pages in the pool */
		int n_swa;               /* keys a query sees */
		int32_t *of_page;        /* [n_pages] the window page paired with a page, -1 none */
		int32_t *refs;           /* [n_pages] holders of the page's window part */
		int32_t *page_of;        /* [n] the page a window page is paired with, -1 none */
		int32_t *prev, *next;    /* [n] free queue, least recently freed at the head */
		unsigned char *queued;   /* [n] in the free queue */
		int head, tail, n_free;
	} win;
	struct eng_prefix {              /* lock: shared prefixes (prefix.c); bucket NULL: off */
		int32_t *bucket;         /* [NB] first page of each chain, -1 none */
		int32_t *next;           /* [NP] next page in the chain */
		uint64_t *hash;          /* [NP] chained hash naming the prefix up to the page's end */
		int32_t *tokens;         /* [NP][P] the page's tokens (collision check) */
		bool *in;                /* [NP] the page is in the table */
		uint32_t mask;           /* NB - 1 */
		int n_in;
	} prefix;

	eng_notify_fn notify;
	void *notify_user;
	eng_event_fn on_event;
	void *event_user;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;

	struct eng_grammar_entry {
		char *name, *text;        /* the GBNF source as written */
		size_t len;
		struct eng_grammar *g;    /* compiled (a reference) */
		struct eng_grammar_entry *next;
	} *grammars;                      /* lock: the grammars/ folder */
	struct eng_grammar_entry *schemas; /* lock: the schemas/ folder (text: the JSON Schema) */
	struct eng_grammar_vocab *gvocab; /* lock: built at the first constrained turn */
	unsigned char *dry_breaker;       /* lock: [V], built at the first DRY turn */
	struct eng_grammar *json_grammar; /* lock: mode = json, compiled at its first turn */

	/* step scratch, engine thread only */
	struct step_arena {
		struct eng_batch_seq *seqs;   /* [max_sessions] */
		struct eng_sample_req *reqs;  /* [max_sessions] */
		int32_t *out;                 /* [max_sessions] sampled tokens */
		uint64_t *pending;            /* [max_batch_tokens / P + max_sessions]: prefix hashes of
		                               * the pages this step's prefill chunks complete */
		int n_pending;
		int32_t *found;               /* [max pages] shared-prefix pages found for one session */
		struct step_entry {
			struct eng_session *s;
			uint64_t epoch;
			int n_tokens;
			bool final;           /* the chunk ends the history: sample */
			bool prefill;         /* prompt processing (else decode) */
			struct eng_sample_lp lp; /* log-probabilities of the sampled token, when asked (tokview.c) */
		} *ent;                       /* [max_sessions] */
		int32_t *buf;                 /* tokens, page tables, recent tokens */
		size_t cap;
		struct eng_session **notify;  /* [max_sessions * 3]: notifications, candidates */
		struct step_event {
			struct eng_session *s; /* holds a reference */
			enum eng_event ev;
		} *events;                    /* [4 * max_sessions]: for on_event after the step */
		int n_events;
	} arena;
};

// ---- internal entry points (session.c, step.c, settings.c, history.c)

void eng_session_unref_locked(struct eng_session *s); /* frees at 0 refs (lock held) */

/* Queues an event for the engine's on_event callback after this step (lock
 * held, engine thread). */
void eng_event_queue_locked(struct eng_session *s, enum eng_event ev);

/* pages.c: the page pool (lock held).  alloc: a page with one reference, or
 * -ENOSPC; release frees the page at its last reference. */
int eng_page_alloc_locked(struct eng_model *m);
void eng_page_retain_locked(struct eng_model *m, int32_t page);
void eng_page_release_locked(struct eng_model *m, int32_t page);
bool eng_page_shared_locked(const struct eng_model *m, int32_t page);
/* Gives s its own copy of s->pages[i] (keep: slots that must be copied). */
int eng_page_unshare_locked(struct eng_model *m, struct eng_session *s, int i, int keep);
/* Releases every page of s (n_pages = n_cached = 0). */
void eng_pages_release_locked(struct eng_model *m, struct eng_session *s);
int eng_model_n_pages_shared(struct eng_model *m);
/* window.c: window pages of sliding-window layers (lock held; no-ops when
 * the model has none).  first: the first page index whose window part a
 * cache of c positions still needs; give: a fresh window page for
 * s->pages[i] (-ENOSPC: none free); take: s holds pages[i]'s window part,
 * false when its content is gone; drop: lets go of it (before pages[i] is
 * released or replaced); retain/release: the same for a holder that is not
 * a session (a saved image); ready: before s's pass, its window parts held
 * (1: gone, the cache was dropped and is rebuilt); slide: after it, the
 * parts no query will see go back; table: the window page of each index of
 * s's table (-1 not held); page_freed: pages.c at a page's last reference. */
int eng_window_init(struct eng_model *m, int n);
void eng_window_free(struct eng_model *m);
int eng_window_first(const struct eng_model *m, int c);
int eng_window_n_free(const struct eng_model *m);
int eng_window_give_locked(struct eng_model *m, struct eng_session *s, int i);
bool eng_window_take_locked(struct eng_model *m, struct eng_session *s, int i);
void eng_window_drop_locked(struct eng_model *m, struct eng_session *s, int i);
bool eng_window_retain_locked(struct eng_model *m, int32_t page);
void eng_window_release_locked(struct eng_model *m, int32_t page);
bool eng_window_has_locked(const struct eng_model *m, int32_t page);
int32_t eng_window_page_locked(const struct eng_model *m, int32_t page);
int eng_window_ready_locked(struct eng_model *m, struct eng_session *s);
void eng_window_slide_locked(struct eng_model *m, struct eng_session *s);
void eng_window_table_locked(const struct eng_model *m, const struct eng_session *s, int32_t *out);
void eng_window_page_freed_locked(struct eng_model *m, int32_t page);
int eng_window_pages_used(const struct eng_model *m);
/* prefix.c: the shared-prefix table (lock held).  chain: the hash of a
 * page of P tokens after a prefix hashed prev (0: the first page);
 * hash_to: of the first n_pages pages of a history; find: the page named
 * h holding exactly tok[P], or -1; add: names a full, finished page (no-op
 * when it or another page already has the name); drop: forgets a page
 * (freed, or about to be written by its only holder). */
int eng_prefix_init(struct eng_model *m);
void eng_prefix_free(struct eng_model *m);
uint64_t eng_prefix_chain(uint64_t prev, const int32_t *tok);
uint64_t eng_prefix_hash_to(const int32_t *tokens, int n_pages);
int32_t eng_prefix_find_locked(struct eng_model *m, uint64_t h, const int32_t *tok);
void eng_prefix_add_locked(struct eng_model *m, int32_t page, uint64_t h, const int32_t *tok);
void eng_prefix_drop_locked(struct eng_model *m, int32_t page);
bool eng_prefix_named_locked(const struct eng_model *m, int32_t page);
/* kvimage.c: attaches s->offer (engine thread, lock held, before s's
 * prefill is planned); make_room evicts idle sessions for the pages. */
void eng_kv_offer_attach_locked(struct eng_session *s, int (*make_room)(struct eng_model *));
/* Tokens the KV pool holds at most: min(n_ctx, pool) bounds one session. */
int eng_model_kv_limit(const struct eng_model *m);
/* Starts the first queued turn of an idle session (lock held).  Returns 0,
 * or -errno after dropping that turn (-EFBIG …: it never ran, so it leaves
 * no trace in the conversation; s->dropped says why). */
int eng_turn_start_locked(struct eng_session *s);
/* Ends the active turn (lock held): flushes held text, records the reason. */
void eng_turn_finish_locked(struct eng_session *s, enum eng_stop_reason why, int err);
bool eng_session_has_work_locked(const struct eng_session *s);
bool eng_model_has_work_locked(const struct eng_model *m);
/* turn.c: the tokens turn idx (not started) adds — new[n] replacing the
 * history from *keep, the reply's tokens appended when reply != NULL
 * (journal replay); -EFBIG if it does not fit.  Changes nothing. */
int eng_turn_tokens(struct eng_session *s, int idx, const char *reply, size_t rlen,
                    int32_t **out, int *n, int *keep);
void eng_turn_apply_tokens(struct eng_session *s, const int32_t *v, int n, int keep);
void eng_conv_set_system(struct eng_session *s, enum eng_mode mode);
enum eng_mode eng_effective_mode(const struct eng_session *s);
uint64_t eng_random_seed(void);
/* Appends bytes to a turn's reply (lock held). 0 / -ENOMEM. */
int eng_turn_append_reply(struct eng_turn *t, const char *s, size_t n);
/* The chat template text to detect the family from: tokenizer.chat_template,
 * or for Gemma files without one (that have <start_of_turn>/<end_of_turn>)
 * the Gemma family's marker; NULL → raw mode. */
const char *eng_chat_template_text(const struct gguf_ctx *g, const struct eng_config *cfg,
                                   const struct eng_tokenizer *tok);
/* Describes a bound model without a backend (for `promptfs info`). */
int eng_describe(const struct gguf_ctx *g, const struct eng_config *cfg, const struct eng_weights *w,
                 const struct eng_tokenizer *tok, const struct eng_template *tmpl,
                 const char *backend, const char *device, char **out);

/* grammars.c: the compiled grammar named name (a new reference) or NULL. */
struct eng_grammar *eng_grammar_lookup_locked(struct eng_model *m, const char *name);
/* The per-model tables the host sampler needs, built on first use (lock
 * held); NULL when out of memory. */
const struct eng_grammar_vocab *eng_model_gvocab_locked(struct eng_model *m);
const unsigned char *eng_model_dry_breakers_locked(struct eng_model *m);
/* [V] 1 for tokens whose text (control tokens rendered) contains one of
 * llama.cpp's default DRY sequence breakers "\n" ":" "\"" "*"; malloc'd. */
unsigned char *eng_dry_breakers_build(const struct eng_tokenizer *t);
/* The built-in grammar of mode = json (any JSON value), a new reference. */
struct eng_grammar *eng_model_json_grammar_locked(struct eng_model *m);
/* Binds the grammar of the turn that starts (lock held): the first set of
 * json_schema, schema, grammar, mode json (s->grammar, a reference, NULL
 * for none).  -EINVAL: the named schema or grammar does not exist (logged);
 * -ENOMEM. */
int eng_turn_bind_grammar_locked(struct eng_session *s);
/* Frees the registry and tables (eng_model_free). */
void eng_grammars_free(struct eng_model *m);

/* tokview.c (lock held, engine thread): asks the sampler for the
 * log-probabilities of a sampled token when the session's token view
 * wants them (lp: where they go); records a sampled token (lp NULL: none
 * computed) in turn t's view, t->n_gen already counting it. */
void eng_tokview_request_locked(struct eng_session *s, struct eng_sample_req *r, struct eng_sample_lp *lp);
void eng_tokview_add_locked(struct eng_session *s, struct eng_turn *t, int32_t id, const struct eng_sample_lp *lp);

// ---- extra entry points for the CLI bench and the tests

/* Adds a raw-mode turn made of exactly these tokens (no template, no BOS
 * added) that generates up to max_tokens tokens, past end-of-generation
 * tokens when ignore_eog.  Same errors as eng_session_submit(). */
int eng_session_submit_tokens(struct eng_session *s, const int32_t *tokens, int n, int max_tokens,
                              bool ignore_eog);
/* The latest turn (queued or running) generates past end-of-generation
 * tokens, to max_tokens (bench: replies of one length). */
void eng_session_set_ignore_eog(struct eng_session *s);
/* Copies the session's token history (n_past tokens) into *out (malloc'd). */
int eng_session_tokens(struct eng_session *s, int32_t **out, int *n);
/* Drops the session's KV pages as an eviction would (n_cached = 0). */
void eng_session_evict(struct eng_session *s);
const struct eng_template *eng_model_template(const struct eng_model *m);
struct eng_backend *eng_model_backend(const struct eng_model *m, const struct eng_backend_ops **ops);
const struct eng_weights *eng_model_weights(const struct eng_model *m);
size_t eng_model_page_bytes(const struct eng_model *m);

#endif /* PROMPTFS_ENGINE_INTERNAL_H */
