/*
 * fs_internal.h — the FUSE daemon's shared state (fs/daemon.c, ops.c, io.c,
 * inode.c, ctl.c, xattr.c, notify.c, journal.c, fork.c, events.c,
 * kvstate.c).
 *
 * ---- Inodes ----
 * Fixed inodes 1-9 (root, README, model, stats, defaults, history/,
 * events, grammars/, schemas/).  Each session takes a block of 2^FS_INO_SHIFT numbers starting at
 * FS_INO_FIRST_SESSION: ino+0 the session file, ino+1 history/NAME, ino+2
 * history/NAME.json, ino+3 the directory history/NAME.d/, ino+4 the token
 * view NAME.tokens (at the root, looked up but never listed), ino+16+j its
 * message j (eng_session_message numbering: 000-system, 001-user,
 * 002-assistant …).  Numbers are never reused, so a stale kernel inode can
 * never alias a newer session.
 * Sessions belong to the name: a node lives while it is linked, opened,
 * parked on, or known to the kernel (nlookup), whichever is last.
 *
 * ---- Locking ----
 * One mutex, fs->lock, protects every field marked so.  Under it the code
 * may call the engine's eng_session_* functions (they take the engine lock
 * briefly and never wait for a forward pass), never eng_session_free (it may
 * wait for a step), never fuse_reply_* or a kernel notification, never
 * fuse_req_interrupt_func (libfuse calls the interrupt callback with the
 * request's lock held, and the callback takes fs->lock).  The engine's
 * notify callback runs with no engine lock held and only queues the inode
 * for the notifier thread, which answers parked reads and sends
 * fuse_lowlevel_notify_poll/inval_inode from outside any request handler.
 */
#ifndef PROMPTFS_FS_INTERNAL_H
#define PROMPTFS_FS_INTERNAL_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/engine.h"
#include "gguf/log.h"

// ---- inode numbers and kinds

#define FS_INO_ROOT 1
#define FS_INO_README 2
#define FS_INO_MODEL 3
#define FS_INO_STATS 4
#define FS_INO_DEFAULTS 5
#define FS_INO_HISTORY 6
#define FS_INO_EVENTS 7
#define FS_INO_GRAMMARS 8
#define FS_INO_SCHEMAS 9
#define FS_INO_FIRST_GRAMMAR (1ull << 48) /* grammars/NAME: one number per name, never reused */
#define FS_INO_SHIFT 24
#define FS_INO_FIRST_SESSION ((uint64_t)1 << FS_INO_SHIFT)
#define FS_INO_SUB(ino) ((ino) & (((uint64_t)1 << FS_INO_SHIFT) - 1)) /* 0..3, 16+j */
#define FS_INO_SESSION(ino) ((ino) - FS_INO_SUB(ino))
#define FS_INO_MSG0 16 /* sub-number of message 0 */

enum fs_kind {
	FS_KIND_NONE = 0,
	FS_KIND_ROOT,
	FS_KIND_README,
	FS_KIND_MODEL,
	FS_KIND_STATS,
	FS_KIND_DEFAULTS,
	FS_KIND_HISTDIR,
	FS_KIND_SESSION,
	FS_KIND_HIST_TEXT,
	FS_KIND_GRAMDIR,
	FS_KIND_GRAMMAR,
	FS_KIND_HIST_JSON,
	FS_KIND_HIST_DIR,  /* history/NAME.d/ */
	FS_KIND_HIST_MSG,  /* history/NAME.d/NNN-role */
	FS_KIND_EVENTS,
	FS_KIND_TOKENS,    /* NAME.tokens: the token view of the latest reply */
};

#define FS_NAME_MAX 255
#define FS_WRITE_MAX (16u << 20) /* bytes one open may write before EFBIG */
#define FS_HASH 256


// ---- options (daemon.c fills them)

struct fs_opts {
	const char *model_path;   /* absolute */
	const char *mountpoint;   /* absolute */
	const char *backend;      /* NULL = auto */
	int n_ctx, max_sessions, n_threads;
	int max_batch_tokens;     /* --batch-tokens (0: the engine's default) */
	int max_batch_seqs;       /* --batch-seqs (0: the engine's default) */
	bool no_prefix_share;     /* --no-prefix-share */
	int window_pages;         /* --window-pages (0: the engine's split) */
	size_t kv_bytes;
	const char *state_dir;    /* absolute or NULL */
	const char *log_file;
	int log_level;
	bool foreground, debug;
	bool map_model;           /* --mmap: map the model file (default: read it into memory) */
	bool allow_other;         /* -o allow_other given (default_permissions is added) */
	unsigned umask;           /* --umask: new sessions get 0666 & ~umask (default 077) */
	const char *sets[32];     /* --set KEY=VALUE for the defaults */
	int n_sets;
};

// ---- nodes

struct fs_node {
	uint64_t ino;             /* the session file; its history entries follow (see above) */
	char *name;               /* protected by lock */
	struct eng_session *sess; /* protected by lock; NULL once removed */
	bool linked;              /* protected by lock: reachable by name */
	uint64_t nlookup;         /* protected by lock: kernel references to any of its numbers */
	char *fork_from;          /* protected by lock: user.fork_from as last set ("a@3"), or NULL */
	uint64_t kv_saved_sig;    /* protected by lock: the cache last saved to its page file (kvstate.c) */
	int refs;                 /* protected by lock: link + open handles + parked reads */
	struct eng_settings over; /* protected by lock: xattr overrides, parsed once at setxattr */
	uint64_t over_mask;       /* protected by lock: bit k set = key k (enum eng_key) is overridden */
	uint64_t j_mask;          /* protected by lock: the keys the journal holds as set (journal.c) */
	uint64_t epoch;           /* protected by lock: bumped at every reset / new conversation */
	uid_t uid;                /* protected by lock: the creator (from the request) */
	gid_t gid;
	mode_t mode;              /* protected by lock: permission bits (0666 at most) */
	struct timespec ctime, mtime;   /* protected by lock */
	bool was_final;           /* protected by lock: last state the notifier saw */
	struct fuse_pollhandle **phs; /* protected by lock: poll()ers to wake */
	int n_phs;
	/* journal bookkeeping, protected by lock, used by the journal thread */
	uint64_t jid;             /* journal file id (state dir), 0 = none yet */
	uint64_t j_epoch;
	int n_journaled;          /* turns of the current conversation in the file */
	int j_records, j_live;    /* records in the file, of which still meaningful (compaction) */
	int j_err;                /* -errno of the last failed append (0: all saved) */
	struct eng_turn_text *rest; /* journaled turns that did not fit the context (-c) */
	int n_rest;
	struct fs_node *hnext;    /* protected by lock: ino hash chain */
	struct fs_node *next, *prev; /* protected by lock: list of all nodes */
};

// ---- open handles (fi->fh)

struct fs_handle {
	enum fs_kind kind;
	struct fs_node *node;     /* sessions and history entries; holds a ref */
	bool wr;                  /* opened for writing */
	bool trunc;               /* O_TRUNC on an existing session: reset at open */
	bool append;              /* O_APPEND: the prompt is the next turn (else a new conversation) */
	size_t tok_len;           /* buffer length at the last write-time token count */
	bool submitted;           /* a prompt went out from this open */
	int werr;                 /* sticky write error (-EFBIG), reported at flush */
	char *buf;                /* what this open wrote */
	size_t len, cap;
	char *snap;               /* control files, history: the content at open */
	size_t snap_len;
	uint64_t forked_from;     /* copy_file_range made this session a fork of that inode */
	struct fs_ev_reader *ev;  /* the events file: this open's position */
	uint64_t read_end;        /* offset after the last read: poll readiness */
	uint64_t gram_ino;        /* grammars/NAME handles: the file */
	bool gram_pending;        /* this open created it (fs_gram_unpend at release) */
	uint64_t id;              /* fi->fh: handles are found by id, never by pointer, since a
	                           * release may overtake a read of a killed process */
	struct fs_handle *next, *prev; /* protected by lock: fs->handles */
	struct fs_handle *hnext;  /* protected by lock: id hash chain */
};

// ---- parked reads

enum fs_park_state { FS_PARK_NEW = 0, FS_PARK_PARKED, FS_PARK_INTERRUPTED };

struct fs_parked {
	uint64_t id;              /* the interrupt callback's data: never a pointer */
	fuse_req_t req;
	struct fs_node *node;     /* holds a ref */
	uint64_t off;
	size_t size;
	bool tokens;              /* a read of NAME.tokens (else of the reply) */
	enum fs_park_state state;
	struct fs_parked *next, *prev;
};

// ---- the daemon

struct fs_journal;
struct fs_events;
struct fs_kvstate;
struct fs_gramstore;

struct fs {
	const struct fs_opts *opts;
	struct eng_model *model;
	struct fuse_session *se;
	int n_ctx;
	size_t max_piece;         /* longest token in bytes: write-time EFBIG bound */
	char *model_text;         /* eng_model_describe, made once */
	uid_t uid;
	gid_t gid;
	struct timespec t_start;
	unsigned test_delay_us;   /* PROMPTFS_TEST_STEP_DELAY_MS (tests only): slows each notified step */

	pthread_mutex_t lock;
	struct fs_node *hash[FS_HASH];  /* protected by lock */
	struct fs_node *nodes;          /* protected by lock */
	uint64_t next_ino;              /* protected by lock */
	int n_linked;                   /* protected by lock */
	struct eng_settings defaults;   /* protected by lock */
	struct fs_parked *parked;       /* protected by lock */
	struct fs_handle *handles;      /* protected by lock: every open file, for the exit */
	struct fs_handle *hhash[FS_HASH]; /* protected by lock: open files by id */
	struct fs_dir_snap *dirs;       /* protected by lock: open directories (ops.c), by id */
	uint64_t next_handle_id;        /* protected by lock */
	uint64_t next_park_id;          /* protected by lock */
	uint64_t n_reads, n_parks, n_interrupts, bytes_read; /* protected by lock */

	/* notifier thread: inodes whose reply changed */
	pthread_t notifier;
	bool notifier_started;
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	uint64_t *q;              /* protected by q_lock */
	int q_len, q_cap;         /* protected by q_lock */
	bool q_stop;              /* protected by q_lock */

	struct fs_gram *gram;           /* protected by lock: grammars/ names seen, [n_gram] */
	int n_gram, cap_gram;

	struct fs_journal *journal; /* NULL without --state-dir */
	struct fs_events *events;   /* the events file (events.c) */
	struct fs_kvstate *kv;      /* KV page files (kvstate.c); NULL without --state-dir */
	struct fs_gramstore *gstore; /* grammars/ and schemas/ files (gramstore.c); NULL without --state-dir */
	atomic_bool draining;     /* unmounting: reads at the end get EOF, nothing parks */
	atomic_bool shut_down;
};

// ---- inode.c
struct fs_node *fs_node_find(struct fs *fs, uint64_t ino);           /* lock held; any of the 4 numbers */
struct fs_node *fs_node_by_name(struct fs *fs, const char *name);    /* lock held; linked sessions */
enum fs_kind fs_ino_kind(struct fs *fs, uint64_t ino);               /* lock held; NONE if unknown */
int fs_name_check(const char *name);                                  /* 0 / -EINVAL / -ENAMETOOLONG */
bool fs_name_reserved(const char *name);
/* Makes a linked session node for a new engine session (lock held), owned
 * by the mount's owner with mode 0666 & ~umask (callers set the creator). */
int fs_node_new(struct fs *fs, const char *name, struct eng_session *sess, struct fs_node **out);
/* Takes the node off its name (lock held); returns the engine session to free
 * after unlocking (NULL if none). */
struct eng_session *fs_node_unlink(struct fs *fs, struct fs_node *n);
void fs_node_unref(struct fs *fs, struct fs_node *n);                 /* lock held */
void fs_node_forget(struct fs *fs, uint64_t ino, uint64_t nlookup);   /* lock held */
/* May uid write `defaults` (the mount's owner and root only)? */
bool fs_may_write_defaults(const struct fs *fs, uid_t uid);
void fs_nodes_free_all(struct fs *fs);                                /* at exit, no lock */
int fs_node_add_poll(struct fs_node *n, struct fuse_pollhandle *ph);  /* lock held */
/* Takes the node's poll handles (lock held); notify and destroy them after unlocking. */
int fs_node_take_polls(struct fs *fs, struct fs_node *n, struct fuse_pollhandle ***out);
void fs_timespec_now(struct timespec *ts);

// ---- grammars.c: the grammars/ and schemas/ folders, views of the engine's registries
struct fs_gram {
	uint64_t ino;
	char *name;
	bool schema;              /* schemas/NAME (else grammars/NAME) */
	int pending;              /* opens that created it and have not written it yet */
};
static inline bool fs_gram_dir(uint64_t ino) { return ino == FS_INO_GRAMMARS || ino == FS_INO_SCHEMAS; }
/* All lock held; dir is FS_INO_GRAMMARS or FS_INO_SCHEMAS.  The engine
 * (eng_grammars_*, eng_schemas_*) owns the text and the compiled grammar;
 * fs keeps only name <-> inode and files created but not yet written. */
bool fs_gram_exists(struct fs *fs, uint64_t ino);
bool fs_gram_is_schema(struct fs *fs, uint64_t ino);
uint64_t fs_gram_lookup(struct fs *fs, uint64_t dir, const char *name);          /* 0: none */
const char *fs_gram_name(struct fs *fs, uint64_t ino);             /* NULL: none */
int fs_gram_attr(struct fs *fs, uint64_t ino, struct stat *st);
int fs_gram_create(struct fs *fs, uint64_t dir, const char *name, uint64_t *ino); /* a pending new file */
int fs_gram_text(struct fs *fs, uint64_t ino, char **text, size_t *len);
/* Parses (converts) and stores what an open wrote: 0 / -EINVAL (logged). */
int fs_gram_commit(struct fs *fs, uint64_t ino, const char *buf, size_t len);
void fs_gram_unpend(struct fs *fs, uint64_t ino);
int fs_gram_unlink(struct fs *fs, uint64_t dir, const char *name);
int fs_gram_rename(struct fs *fs, uint64_t dir, const char *from, const char *to);
/* Names for readdir (registry + pending), sorted; free(*names). */
int fs_gram_names(struct fs *fs, uint64_t dir, char ***names, int *n);
void fs_gram_free_all(struct fs *fs);                              /* at exit */
/* A value of the grammar or schema key (enum eng_key) names a file that
 * exists (or none); other keys: 0.  0 / -EINVAL. */
int fs_gram_known(struct fs *fs, int key, const char *value, size_t size);
/* io.c: create (or open with O_CREAT) DIR/NAME: the handle and entry. */
int fs_gram_create_open(struct fs *fs, uint64_t dir, const char *name, int flags, struct fs_handle **h,
                        struct fuse_entry_param *e);

// ---- gramstore.c: grammars/ and schemas/ kept in the state directory
/* Loads DIR/grammars/ and DIR/schemas/ into the engine, starts the writer. */
int fs_gramstore_open(struct fs *fs, const char *dir);
/* The file NAME of that folder changed (lock held: only queues). */
void fs_gramstore_post(struct fs *fs, bool schema, const char *name);
void fs_gramstore_close(struct fs *fs); /* writes what is queued, stops */

// ---- ctl.c
/* The text of a control file or history entry (malloc'd).  Lock held. */
int fs_ctl_content(struct fs *fs, uint64_t ino, char **out, size_t *len);
/* Its size: history entries are counted by the engine without building
 * the text; the small control files are built.  Lock held. */
int fs_ctl_size(struct fs *fs, uint64_t ino, size_t *len);
/* The name of message j in history/NAME.d/ ("001-user"); false if none. */
bool fs_ctl_msg_name(struct fs_node *n, int j, char *buf, size_t cap);
/* The message number a history/NAME.d/ entry name stands for, or -1. */
int fs_ctl_msg_index(struct fs_node *n, const char *name);
/* Applies `key = value` lines to the defaults: all or nothing.  replace:
 * keys not named go back to the built-in defaults.  Lock held. */
int fs_ctl_defaults_apply(struct fs *fs, const char *text, size_t len, bool replace);
/* The settings a session's next turn uses: defaults + its overrides.  Lock held. */
int fs_settings_effective(struct fs *fs, const struct fs_node *n, struct eng_settings *out);
/* Pushes the effective settings into the engine session.  Lock held. */
int fs_settings_push(struct fs *fs, struct fs_node *n);
const char *fs_state_name(enum eng_state st);
const char *fs_errno_name(int err);

// ---- io.c (file handles: open, read, write, flush, release, poll)
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct fuse_pollhandle *ph);
/* A handle for a session (open, create); lock held. */
struct fs_handle *fs_handle_new_session(struct fs *fs, struct fs_node *n, int flags, bool created);
/* The open file fi->fh names (lock held), NULL once released. */
struct fs_handle *fs_handle_find(struct fs *fs, uint64_t id);
/* Drops a handle the kernel will never release (interrupted open); lock held. */
void fs_handle_drop(struct fs *fs, struct fs_handle *h);
/* At exit: handles whose release never came (the connection ended first). */
void fs_handles_free_all(struct fs *fs);
/* Resets a session (truncate to 0, `: > s`): lock held. */
void fs_session_reset(struct fs *fs, struct fs_node *n);

// ---- notify.c (parked reads, the notifier thread)
int fs_notifier_start(struct fs *fs);
void fs_notifier_stop(struct fs *fs);
void fs_engine_notify(void *user, struct eng_session *s); /* engine thread */
void fs_notify_ino(struct fs *fs, uint64_t ino);          /* queue a wake-up (any thread) */
/* Parks a read (of the reply, or of NAME.tokens) that found nothing (not holding the lock). */
void fs_park_read(struct fs *fs, fuse_req_t req, struct fs_node *n, bool tokens, uint64_t off, size_t size);
/* Answers every parked read of node n (NULL: all) with EOF. */
void fs_parked_answer_all(struct fs *fs, struct fs_node *n);
/* The same in two halves: take them off the list (lock held), answer them
 * EOF after unlocking. */
struct fs_parked *fs_parked_take(struct fs *fs, struct fs_node *n);
void fs_parked_reply_eof(struct fs_parked *list);
/* Reads the reply (tokens: the token view) at off into a fresh buffer:
 * >0 bytes, 0 = EOF, -EAGAIN (nothing yet, live), -EIO (failed turn).
 * Lock held. */
ssize_t fs_session_read(struct fs *fs, struct fs_node *n, bool tokens, uint64_t off, size_t size, char **out);

// ---- xattr.c
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* A growable byte buffer (journal records).  An allocation
 * failure sticks in oom and later adds are dropped; callers check oom once. */
struct fs_buf {
	char *p;
	size_t len, cap;
	bool oom;
};
void fs_buf_add(struct fs_buf *b, const void *s, size_t n); /* journal_parse.c */

// ---- journal.c (--state-dir)
enum fs_journal_ev {
	FS_JOURNAL_CREATE = 1, /* new session: new file with its name and settings */
	FS_JOURNAL_TURNS,      /* finished turns / reset: append them */
	FS_JOURNAL_NAME,       /* renamed */
	FS_JOURNAL_SETTINGS,   /* xattr overrides changed */
	FS_JOURNAL_DELETE,     /* removed: delete the file (jid given) */
};
int fs_journal_open(struct fs *fs, const char *dir);   /* creates dir, starts the thread */
/* Re-creates journaled sessions (before mounting; no lock needed). */
int fs_journal_restore(struct fs *fs);
void fs_journal_post(struct fs *fs, enum fs_journal_ev ev, uint64_t ino, uint64_t jid);
void fs_journal_close(struct fs *fs);                  /* drains, stops, frees */
uint64_t fs_journal_new_id(struct fs *fs);             /* lock held; 0 without a journal */

// ---- fork.c (cp a b, user.fork_from)
/* Makes dst a fork of src's first n_turns finished turns (-1: all): the
 * conversation, KV pages (shared), setting overrides.  Lock held. */
int fs_session_fork(struct fs *fs, struct fs_node *dst, struct fs_node *src, int n_turns);
/* user.fork_from = "NAME" or "NAME@TURN" on dst.  Lock held. */
int fs_session_fork_spec(struct fs *fs, struct fs_node *dst, const char *spec, size_t len);
void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                           struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                           struct fuse_file_info *fi_out, size_t len, int flags);

// ---- events.c (the events file)
int fs_events_init(struct fs *fs);
void fs_events_free(struct fs *fs);
/* Appends one line "TIME NAME WHAT" (any thread, any lock); name is escaped. */
void fs_event_post(struct fs *fs, const char *name, const char *what);
void fs_event_post_renamed(struct fs *fs, const char *from, const char *to); /* "renamed TO" */
/* The engine's eviction callback (engine thread). */
void fs_engine_event(void *user, struct eng_session *s, enum eng_event ev);
struct fs_ev_reader *fs_events_open(struct fs *fs);
void fs_events_close(struct fs *fs, struct fs_ev_reader *r);
void fs_events_read(fuse_req_t req, struct fs *fs, struct fs_ev_reader *r, size_t size, bool nonblock);
unsigned fs_events_poll(struct fs *fs, struct fs_ev_reader *r, struct fuse_pollhandle *ph);
/* Answers the events file's parked reads (notifier thread; drain: EOF). */
void fs_events_wake(struct fs *fs, bool drain);

// ---- kvstate.c (KV page files in the state dir)
int fs_kvstate_open(struct fs *fs, const char *dir);
void fs_kvstate_close(struct fs *fs);   /* saves what is unsaved, stops the thread */
/* Loads the page file of a journal-restored session (before the engine runs). */
void fs_kvstate_restore(struct fs *fs, struct fs_node *n);
void fs_kvstate_post(struct fs *fs, uint64_t ino); /* a turn ended: save when idle */
/* Before a turn: an evicted session's page file is offered back to the
 * engine (lock held; dropped while the file is read). */
void fs_kvstate_reload(struct fs *fs, struct fs_node *n);
void fs_kvstate_delete(struct fs *fs, uint64_t jid);
void fs_kvstate_stats(struct fs *fs, uint64_t *saved, uint64_t *loaded, uint64_t *ignored);

// ---- ops.c
const struct fuse_lowlevel_ops *fs_ops_table(void);
int fs_node_attr(struct fs *fs, uint64_t ino, struct stat *st);       /* lock held; 0 / -ENOENT */
void fs_dirs_free_all(struct fs *fs); /* at exit: directories whose releasedir never came */

// ---- journal_parse.c (the journal's format; see there)
#define FS_JOURNAL_MAX_SET 32  /* distinct setting keys one journal may name */
struct fs_jstate {             /* what a journal file says */
	int version;               /* 1 or 2 */
	char *name;                /* the last intact N record, NULL if none */
	struct { char key[32]; char *val; size_t vlen; } set[FS_JOURNAL_MAX_SET]; /* val NULL: removed */
	int n_set;
	bool has_owner;            /* an O record: uid gid mode */
	uint32_t uid, gid, mode;
	struct eng_turn_text *turns; /* [n_turns] since the last reset */
	int n_turns, cap_turns;
	size_t n_records;          /* intact records */
	int n_damaged;             /* damaged records (or regions) skipped */
};
/* Parses a whole journal (what names it in log lines): 0, -EINVAL when no
 * record is intact, -ENOMEM.  Free st with fs_jstate_free in every case. */
int fs_journal_parse(const char *what, const char *buf, size_t len, struct fs_jstate *st);
void fs_jstate_free(struct fs_jstate *st);
/* Appends one format-2 record (type N S U T R, payload a then c) to b. */
void fs_journal_record(struct fs_buf *b, char type, const void *a, size_t alen, const void *c,
                       size_t clen);
uint32_t fs_crc32(uint32_t crc, const void *p, size_t n);
void fs_shutdown(struct fs *fs); /* destroy: stops the threads (idempotent) */

static inline struct fs *fs_of(fuse_req_t req) { return (struct fs *)fuse_req_userdata(req); }


#endif /* PROMPTFS_FS_INTERNAL_H */
