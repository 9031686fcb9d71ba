/*
 * journal.c — the state directory (--state-dir): sessions survive a restart.
 *
 * One file per session, DIR/<16 hex digits>.journal (the id is the file's,
 * so session names never need escaping: a name is a record).  The format
 * and its parser are in journal_parse.c: checksummed records (name, setting
 * overrides, finished turns, resets), appended and fsync'd.
 *
 * ---- Nothing lost ----
 * An append is all or nothing: a failed write or fsync truncates the file
 * back to its length before the append, the session's user.status says
 * "not saved" and why, and the next event for the session rewrites the
 * whole file (a fresh file renamed over the old one) instead of appending
 * behind a damaged tail.  When a file holds far more dead records (turns
 * before a reset, superseded names and settings) than live ones, it is
 * rewritten the same way (online compaction).  At start every file is
 * parsed (damaged records skipped, see journal_parse.c) and its sessions
 * re-created (eng_session_restore_turn: KV caches are rebuilt on first use).
 * Turns that no longer fit the context (a smaller -c) stay in the file and
 * in history/; the file is never shortened at start.  A file with damaged
 * records is kept beside as .journal.damaged and rewritten from what was
 * intact; a format-1 file is rewritten in format 2.
 *
 * One thread does all file work, in the order events were posted (from
 * handlers, with fs->lock held: posting only queues).  Finished turns are
 * taken from the engine (eng_session_turns), so turns that ran back to back
 * from a queue are all recorded.
 */
#define _GNU_SOURCE /* asprintf */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_internal.h"

#define MAGIC "promptfs-journal 2\n"
#define MAGIC_LEN 19
/* compaction: dead records beyond this many times the live ones (plus slack) */
#define COMPACT_RATIO 3
#define COMPACT_SLACK 32

struct jev {
	enum fs_journal_ev ev;
	uint64_t ino, jid;
	struct jev *next;
};

struct fs_journal {
	char *dir;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct jev *head, *tail; /* protected by lock */
	bool stop;               /* protected by lock */
	uint64_t next_jid;       /* protected by fs->lock */
};

// ---- files

static char *jpath(const struct fs_journal *j, uint64_t jid, const char *suffix)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%016" PRIx64 ".journal%s", j->dir, jid, suffix) < 0)
		return NULL;
	return p;
}

static void sync_dir(const struct fs_journal *j)
{
	int fd = open(j->dir, O_RDONLY | O_DIRECTORY);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Appends b to the file, all or nothing: on a failed write or fsync the
 * file is cut back to its old length. */
static int jappend(const struct fs_journal *j, uint64_t jid, const struct fs_buf *b)
{
	char *path = jpath(j, jid, "");
	struct stat sb;
	int fd = -1, rc;

	if (!path || b->oom) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	rc = write_all(fd, b->p, b->len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc < 0 && (ftruncate(fd, sb.st_size) < 0 || fsync(fd) < 0))
		LOG_ERR("journal %s: cannot cut the failed append back to %lld bytes: %s", path,
			(long long)sb.st_size, strerror(errno));
out:
	if (rc < 0)
		LOG_ERR("journal %s: append of %zu bytes failed: %s", path ? path : "?", b->len,
			strerror(-rc));
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

/* Replaces the file with b atomically (a fresh file renamed over it). */
static int jreplace(const struct fs_journal *j, uint64_t jid, const struct fs_buf *b)
{
	char *tmp = jpath(j, jid, ".tmp"), *final = jpath(j, jid, "");
	int fd = -1, rc = 0;

	if (!tmp || !final || b->oom) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = write_all(fd, b->p, b->len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, final) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	else
		sync_dir(j);
out:
	if (rc < 0)
		LOG_ERR("journal %s: writing %zu bytes failed: %s", final ? final : "?", b->len,
			strerror(-rc));
	free(tmp);
	free(final);
	return rc;
}

// ---- records of a node

static void owner_record(const struct fs_node *n, struct fs_buf *b)
{
	char o[48];
	int len = snprintf(o, sizeof(o), "%u %u %u", (unsigned)n->uid, (unsigned)n->gid,
			   (unsigned)n->mode);

	fs_journal_record(b, 'O', o, (size_t)len, "", 0);
}

static int over_count(const struct fs_node *n)
{
	return __builtin_popcountll(n->over_mask);
}

/* One S record per overridden setting (its value as the xattr reads it),
 * and a U record for each key of `removed` no longer set (lock held).
 * Returns the number of records; b->oom when there was no memory. */
static int setting_records(const struct fs_node *n, struct fs_buf *b, uint64_t removed)
{
	size_t cap = ENG_MAX_SYSTEM + 1024;
	char *val = malloc(cap);
	int k = 0;

	if (!val) {
		b->oom = true;
		return 0;
	}
	for (int i = 0; i < ENG_KEY_COUNT; i++) {
		const char *key = eng_settings_keys[i];
		bool set = n->over_mask & (1ull << i);
		int len = set ? eng_settings_get(&n->over, key, val, cap) : -1;

		if (len >= 0)
			fs_journal_record(b, 'S', key, strlen(key), val, (size_t)len);
		else if (removed & (1ull << i))
			fs_journal_record(b, 'U', key, strlen(key), "", 0);
		else
			continue;
		k++;
	}
	free(val);
	return k;
}

/* The whole file for node n (lock held): header, name, overrides, turns,
 * the turns that did not fit.  Returns the number of records. */
static int full_records(const struct fs_node *n, const struct eng_turn_text *t, int nt,
			struct fs_buf *b)
{
	int k = 0;

	fs_buf_add(b, MAGIC, MAGIC_LEN);
	fs_journal_record(b, 'N', n->name, strlen(n->name), "", 0);
	owner_record(n, b);
	k += 2;
	k += setting_records(n, b, 0);
	for (int i = 0; i < nt; i++, k++)
		fs_journal_record(b, 'T', t[i].user, t[i].ulen, t[i].reply, t[i].rlen);
	for (int i = 0; i < n->n_rest; i++, k++)
		fs_journal_record(b, 'T', n->rest[i].user, n->rest[i].ulen, n->rest[i].reply,
				  n->rest[i].rlen);
	return k;
}

// ---- events

struct jwork {
	uint64_t jid, epoch;
	bool full;              /* rewrite the whole file */
	int n_turns;            /* engine turns the file holds afterwards */
	int n_records;          /* records this write adds (full: the file's) */
	struct fs_buf b;
};

/* Builds what event ev writes for node n (lock held).  false: nothing. */
static bool plan(struct fs_node *n, enum fs_journal_ev ev, bool compact, struct jwork *w)
{
	struct eng_turn_text *t = NULL;
	int nt = 0;
	bool reset;

	if (!n->sess || !n->jid || (!n->linked && ev != FS_JOURNAL_TURNS))
		return false;
	nt = eng_session_turns(n->sess, &t);
	if (nt < 0)
		return false;
	w->jid = n->jid;
	w->epoch = n->epoch;
	w->full = compact || n->j_err || ev == FS_JOURNAL_CREATE;
	w->n_turns = n->n_journaled;
	reset = n->j_epoch != n->epoch || nt < n->n_journaled;
	if (w->full) {
		w->n_records = full_records(n, t, nt, &w->b);
		n->j_mask = n->over_mask;
		w->n_turns = nt;
	} else if (ev == FS_JOURNAL_NAME) {
		fs_journal_record(&w->b, 'N', n->name, strlen(n->name), "", 0);
		w->n_records = 1;
	} else if (ev == FS_JOURNAL_SETTINGS) {
		owner_record(n, &w->b); /* chmod posts this event too */
		w->n_records++;
		w->n_records += setting_records(n, &w->b, n->j_mask);
		n->j_mask = n->over_mask; /* a failed write rewrites the whole file next */
	} else if (ev == FS_JOURNAL_TURNS) {
		int from = reset ? 0 : n->n_journaled;
		if (reset) {
			fs_journal_record(&w->b, 'R', "", 0, "", 0);
			w->n_records++;
		}
		for (int i = from; i < nt; i++, w->n_records++)
			fs_journal_record(&w->b, 'T', t[i].user, t[i].ulen, t[i].reply, t[i].rlen);
		w->n_turns = nt;
	}
	eng_turn_texts_free(t, nt);
	return w->b.len > 0 || w->b.oom;
}

/* Writes one event's records; returns true when the file should now be
 * compacted.  A failed write is told in user.status and, once per new
 * failure, as an `events` line "not saved ERRNO". */
static bool sync_node(struct fs *fs, const struct jev *ev, bool compact)
{
	struct jwork w = {0};
	struct fs_node *n;
	bool again = false;
	int rc;

	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ev->ino);
	bool any = n && plan(n, ev->ev, compact, &w);
	pthread_mutex_unlock(&fs->lock);
	if (!any)
		goto out;
	rc = w.full ? jreplace(fs->journal, w.jid, &w.b) : jappend(fs->journal, w.jid, &w.b);
	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ev->ino);
	if (n && n->jid == w.jid) {
		if (rc < 0 && n->name)
			LOG_ERR("session '%s': not saved to the state directory: %s", n->name,
				fs_errno_name(rc));
		if (rc < 0 && n->name && n->linked && n->j_err != rc) { /* once per new failure */
			char what[64];

			snprintf(what, sizeof(what), "not saved %s", fs_errno_name(rc));
			fs_event_post(fs, n->name, what);
		}
		n->j_err = rc;
		if (rc == 0) {
			n->j_epoch = w.epoch;
			n->n_journaled = w.n_turns;
			n->j_records = w.full ? w.n_records : n->j_records + w.n_records;
			n->j_live = 2 + over_count(n) + w.n_turns + n->n_rest;
			again = !w.full && n->j_records > COMPACT_RATIO * n->j_live + COMPACT_SLACK;
		}
	}
	pthread_mutex_unlock(&fs->lock);
out:
	free(w.b.p);
	return again;
}

static void do_event(struct fs *fs, const struct jev *ev)
{
	struct fs_journal *j = fs->journal;

	if (ev->ev == FS_JOURNAL_DELETE) {
		char *path = jpath(j, ev->jid, "");
		if (path && unlink(path) < 0 && errno != ENOENT)
			LOG_ERR("journal %s: %s", path, strerror(errno));
		free(path);
		sync_dir(j);
		return;
	}
	if (sync_node(fs, ev, false))
		sync_node(fs, ev, true); /* online compaction */
}

static void *journal_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_journal *j = fs->journal;

	for (;;) {
		struct jev *ev;

		pthread_mutex_lock(&j->lock);
		while (!j->head && !j->stop)
			pthread_cond_wait(&j->cond, &j->lock);
		ev = j->head;
		if (ev) {
			j->head = ev->next;
			if (!j->head)
				j->tail = NULL;
		}
		pthread_mutex_unlock(&j->lock);
		if (!ev)
			break; /* stop, and the queue is drained */
		do_event(fs, ev);
		free(ev);
	}
	return NULL;
}

void fs_journal_post(struct fs *fs, enum fs_journal_ev what, uint64_t ino, uint64_t jid)
{
	struct fs_journal *j = fs->journal;
	struct jev *ev;

	if (!j || (what == FS_JOURNAL_DELETE && !jid))
		return;
	ev = calloc(1, sizeof(*ev));
	if (!ev) {
		LOG_ERR("out of memory: journal event for inode %llu lost", (unsigned long long)ino);
		return;
	}
	*ev = (struct jev){what, ino, jid, NULL};
	pthread_mutex_lock(&j->lock);
	if (j->tail)
		j->tail->next = ev;
	else
		j->head = ev;
	j->tail = ev;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

uint64_t fs_journal_new_id(struct fs *fs)
{
	return fs->journal ? fs->journal->next_jid++ : 0;
}

// ---- open, restore, close

int fs_journal_open(struct fs *fs, const char *dir)
{
	struct fs_journal *j = calloc(1, sizeof(*j));
	sigset_t block, old;
	int rc;

	if (!j || !(j->dir = strdup(dir))) {
		free(j);
		return -ENOMEM;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		LOG_ERR("state directory %s: %s", dir, strerror(errno));
		goto out_free;
	}
	if (access(dir, W_OK | X_OK) < 0) {
		rc = -errno;
		LOG_ERR("state directory %s: %s", dir, strerror(errno));
		goto out_free;
	}
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	j->next_jid = 1;
	fs->journal = j;
	sigfillset(&block);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&j->thread, NULL, journal_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		fs->journal = NULL;
		rc = -rc;
		goto out_free;
	}
	j->started = true;
	return 0;
out_free:
	free(j->dir);
	free(j);
	return rc;
}

void fs_journal_close(struct fs *fs)
{
	struct fs_journal *j = fs->journal;

	if (!j)
		return;
	pthread_mutex_lock(&fs->lock);
	for (struct fs_node *n = fs->nodes; n; n = n->next)
		if (n->linked)
			fs_journal_post(fs, FS_JOURNAL_TURNS, n->ino, 0);
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	if (j->started)
		pthread_join(j->thread, NULL);
	fs->journal = NULL;
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j->dir);
	free(j);
}

// ---- restore

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct fs_buf b = {0};
	char chunk[65536];
	size_t n;
	int rc = 0;

	if (!f)
		return -errno;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fs_buf_add(&b, chunk, n);
	if (ferror(f))
		rc = -EIO;
	fclose(f);
	if (b.oom)
		rc = -ENOMEM;
	if (rc < 0) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* The name a session comes back under: the journal's, or, when its name
 * record is damaged or taken, "recovered-<id>". */
static char *restore_name(struct fs *fs, uint64_t jid, const struct fs_jstate *st)
{
	char *name = NULL;

	if (st->name && fs_name_check(st->name) == 0 && !fs_name_reserved(st->name) &&
	    !fs_node_by_name(fs, st->name))
		return strdup(st->name);
	if (asprintf(&name, "recovered-%016" PRIx64, jid) < 0)
		return NULL;
	LOG_WARN("journal %016" PRIx64 ": name %s%s%s; restored as '%s'", jid,
		 st->name ? "'" : "record damaged", st->name ? st->name : "",
		 st->name ? "' unusable or taken" : "", name);
	return name;
}

/* Brings one session back: name, settings, turns (fs->lock held).  Turns
 * that do not fit the context stay in n->rest.  Returns the node or NULL. */
static struct fs_node *restore_one(struct fs *fs, uint64_t jid, struct fs_jstate *st)
{
	struct eng_session *s = NULL;
	struct fs_node *n = NULL;
	char *name = restore_name(fs, jid, st);
	int rc, k;

	if (!name)
		return NULL;
	rc = eng_session_init(fs->model, &fs->defaults, &s);
	if (rc < 0) {
		LOG_ERR("journal: cannot re-create session '%s': %s", name, fs_errno_name(rc));
		goto out;
	}
	rc = fs_node_new(fs, name, s, &n);
	if (rc < 0) {
		eng_session_free(s);
		n = NULL;
		goto out;
	}
	n->jid = jid;
	if (st->has_owner) {
		n->uid = (uid_t)st->uid;
		n->gid = (gid_t)st->gid;
		n->mode = (mode_t)st->mode;
	}
	for (int i = 0; i < st->n_set; i++) {
		int ki = eng_settings_key_index(st->set[i].key);

		if (ki < 0) {
			LOG_WARN("journal %016" PRIx64 ": unknown setting '%s' ignored", jid, st->set[i].key);
			continue;
		}
		if (!st->set[i].val)
			continue; /* removed again later in the file */
		if (eng_settings_set(&n->over, eng_settings_keys[ki], st->set[i].val, st->set[i].vlen) == 0)
			n->over_mask |= 1ull << ki;
		else
			LOG_WARN("session '%s': journaled %s no longer valid; using the default", name,
				 eng_settings_keys[ki]);
	}
	fs_settings_push(fs, n);
	for (k = 0; k < st->n_turns; k++) {
		const struct eng_turn_text *t = &st->turns[k];
		rc = eng_session_restore_turn(s, t->user, t->ulen, t->reply, t->rlen);
		if (rc < 0)
			break;
	}
	if (k < st->n_turns) {
		/* the rest stays on disk and in history/: the file is not shortened */
		LOG_WARN("session '%s': %d of %d journaled turns fit the context of %d tokens (%s); "
			 "the other %d are kept in the journal and history/ (remount with a larger -c to use them)",
			 name, k, st->n_turns, fs->n_ctx, fs_errno_name(rc), st->n_turns - k);
		n->n_rest = st->n_turns - k;
		n->rest = malloc((size_t)n->n_rest * sizeof(*n->rest));
		if (!n->rest) {
			n->n_rest = 0;
			n->j_err = -ENOMEM; /* the next write rewrites the file: keep it safe */
		}
		for (int i = 0; n->rest && i < n->n_rest; i++) {
			n->rest[i] = st->turns[k + i];
			st->turns[k + i] = (struct eng_turn_text){0};
		}
	}
	n->n_journaled = k;
	n->j_epoch = n->epoch;
	n->j_records = (int)st->n_records;
	n->j_live = 2 + over_count(n) + st->n_turns;
	n->j_mask = n->over_mask;
	fs_kvstate_restore(fs, n); /* its KV pages, when a page file is there */
	LOG_INFO("session '%s' restored: %d turns", name, k);
out:
	free(name);
	return n;
}

static bool journal_name(const char *name, uint64_t *jid)
{
	char *end;

	if (strlen(name) != 16 + 8 || strcmp(name + 16, ".journal"))
		return false;
	for (int i = 0; i < 16; i++)
		if (!strchr("0123456789abcdef", name[i]))
			return false;
	*jid = strtoull(name, &end, 16);
	return end == name + 16 && *jid != 0;
}

/* A file with damaged records is kept as .journal.damaged (a hard link to
 * the old bytes) and rewritten from what was intact; a format-1 file is
 * rewritten in format 2. */
static void restore_rewrite(struct fs *fs, uint64_t ino, uint64_t jid, const char *path,
			    const struct fs_jstate *st)
{
	struct fs_journal *j = fs->journal;
	struct fs_buf b = {0};
	struct eng_turn_text *t = NULL;
	struct fs_node *n;
	int nt = 0, rc;

	if (st->n_damaged) {
		char *keep = jpath(j, jid, ".damaged");
		if (keep && (unlink(keep), link(path, keep)) == 0)
			LOG_WARN("%s: the damaged file is kept as %s", path, keep);
		free(keep);
	}
	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ino);
	if (n && (nt = eng_session_turns(n->sess, &t)) >= 0) {
		n->j_records = full_records(n, t, nt, &b);
		n->j_live = n->j_records;
	}
	pthread_mutex_unlock(&fs->lock);
	if (b.len && (rc = jreplace(j, jid, &b)) < 0) {
		pthread_mutex_lock(&fs->lock);
		if ((n = fs_node_find(fs, ino)))
			n->j_err = rc;
		pthread_mutex_unlock(&fs->lock);
	}
	eng_turn_texts_free(t, nt > 0 ? nt : 0);
	free(b.p);
}

int fs_journal_restore(struct fs *fs)
{
	struct fs_journal *j = fs->journal;
	struct dirent *de;
	DIR *d;
	int n_sessions = 0;

	if (!j)
		return 0;
	d = opendir(j->dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct fs_jstate st;
		char *path, *buf = NULL;
		size_t len = 0;
		uint64_t jid;
		int rc;

		if (!journal_name(de->d_name, &jid))
			continue;
		if (jid >= j->next_jid)
			j->next_jid = jid + 1;
		path = jpath(j, jid, "");
		rc = path ? read_file(path, &buf, &len) : -ENOMEM;
		if (rc == 0)
			rc = fs_journal_parse(path, buf, len, &st);
		else
			memset(&st, 0, sizeof(st));
		if (rc < 0) {
			LOG_WARN("%s: %s; skipped (the file is left as it is)", path ? path : de->d_name,
				 rc == -EINVAL ? "no intact promptfs journal record" : fs_errno_name(rc));
		} else {
			pthread_mutex_lock(&fs->lock);
			struct fs_node *n = restore_one(fs, jid, &st);
			uint64_t ino = n ? n->ino : 0;
			pthread_mutex_unlock(&fs->lock);
			if (n) {
				n_sessions++;
				if (st.n_damaged || st.version == 1)
					restore_rewrite(fs, ino, jid, path, &st);
			}
		}
		fs_jstate_free(&st);
		free(buf);
		free(path);
	}
	closedir(d);
	if (n_sessions)
		LOG_INFO("%d sessions restored from %s", n_sessions, j->dir);
	return n_sessions;
}
