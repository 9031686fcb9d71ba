/*
 * journal.c — the state directory (--state-dir): sessions survive a restart.
 *
 * One append-only file per session, DIR/<16 hex digits>.journal (the id is
 * the file's, so session names never need escaping: a name is a record).
 * Records, each a text header line and raw bytes:
 *     promptfs-journal 1            first line
 *     N <len>\n<name>\n             the session's name (last one wins)
 *     S <klen> <vlen>\n<key><val>\n setting override (xattr)
 *     U <klen>\n<key>\n             override removed
 *     T <ulen> <rlen>\n<user><reply>\n   a finished turn
 *     R\n                           reset: the turns before are dropped
 * Every append is fsync'd.  A record cut short by a crash ends the replay.
 *
 * One thread does all file work, in the order events were posted (from
 * handlers, with fs->lock held: posting only queues).  Finished turns are
 * taken from the engine's JSON history when the session is idle, so turns
 * that ran back to back from a queue are all recorded.  At start the files
 * are replayed (eng_session_restore_turn: the KV cache is rebuilt on first
 * use) and rewritten compactly.
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

// ---- a byte buffer for records

void fs_buf_add(struct fs_buf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void jb_head(struct fs_buf *b, const char *fmt, size_t a, size_t c, int nums)
{
	char line[64];
	int n = nums == 2 ? snprintf(line, sizeof(line), fmt, a, c)
	      : nums == 1 ? snprintf(line, sizeof(line), fmt, a) : snprintf(line, sizeof(line), "%s", fmt);
	fs_buf_add(b, line, (size_t)n);
}

static void rec_name(struct fs_buf *b, const char *name)
{
	jb_head(b, "N %zu\n", strlen(name), 0, 1);
	fs_buf_add(b, name, strlen(name));
	fs_buf_add(b, "\n", 1);
}

static void rec_setting(struct fs_buf *b, const char *key, const char *val, size_t vlen)
{
	if (val) {
		jb_head(b, "S %zu %zu\n", strlen(key), vlen, 2);
		fs_buf_add(b, key, strlen(key));
		fs_buf_add(b, val, vlen);
	} else {
		jb_head(b, "U %zu\n", strlen(key), 0, 1);
		fs_buf_add(b, key, strlen(key));
	}
	fs_buf_add(b, "\n", 1);
}

static void rec_turn(struct fs_buf *b, const char *u, size_t ulen, const char *r, size_t rlen)
{
	jb_head(b, "T %zu %zu\n", ulen, rlen, 2);
	fs_buf_add(b, u, ulen);
	fs_buf_add(b, r, rlen);
	fs_buf_add(b, "\n", 1);
}

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
		if (w <= 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Appends (or, with fresh, atomically replaces the file with) b. */
static int jwrite(const struct fs_journal *j, uint64_t jid, const struct fs_buf *b, bool fresh)
{
	char *path = jpath(j, jid, fresh ? ".tmp" : "");
	int fd, rc;

	if (!path || b->oom) {
		free(path);
		return -ENOMEM;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : O_APPEND), 0600);
	if (fd < 0) {
		rc = -errno;
		LOG_ERR("journal %s: %s", path, strerror(errno));
		goto out_path;
	}
	rc = write_all(fd, b->p, b->len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && fresh) {
		char *final = jpath(j, jid, "");
		if (!final || rename(path, final) < 0)
			rc = final ? -errno : -ENOMEM;
		free(final);
		sync_dir(j);
	}
	if (rc < 0)
		LOG_ERR("journal %s: %s", path, strerror(-rc));
out_path:
	free(path);
	return rc;
}

// ---- events

/* Appends records for the session's finished turns (journal thread). */
static void do_turns(struct fs *fs, uint64_t ino)
{
	struct fs_journal *j = fs->journal;
	struct fs_buf b = {0};
	struct fs_turn_text *pr = NULL;
	char *js = NULL;
	size_t js_len = 0;
	uint64_t jid = 0, epoch = 0;
	int from = 0, np = 0;
	bool reset = false, final = false;
	struct fs_node *n;

	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ino);
	if (n && n->sess && n->jid) {
		struct eng_session_info info;

		jid = n->jid;
		epoch = n->epoch;
		reset = n->j_epoch != epoch;
		from = reset ? 0 : n->n_journaled;
		eng_session_info(n->sess, &info);
		final = info.state == ENG_STATE_DONE || info.state == ENG_STATE_EMPTY ||
			info.state == ENG_STATE_ERROR;
		if (final && eng_session_history(n->sess, true, &js, &js_len) < 0)
			js = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!jid)
		return;
	if (js) {
		np = fs_history_turns(js, js_len, &pr);
		if (np < 0)
			np = 0;
	}
	if (np < from) { /* the engine's conversation is shorter: start over */
		reset = true;
		from = 0;
	}
	if (reset)
		fs_buf_add(&b, "R\n", 2);
	for (int i = from; i < np; i++)
		rec_turn(&b, pr[i].user, pr[i].ulen, pr[i].reply, pr[i].rlen);
	if (b.len && jwrite(j, jid, &b, false) == 0) {
		pthread_mutex_lock(&fs->lock);
		n = fs_node_find(fs, ino);
		if (n) {
			n->j_epoch = epoch;
			if (final)
				n->n_journaled = np;
			else if (reset)
				n->n_journaled = 0;
		}
		pthread_mutex_unlock(&fs->lock);
	}
	fs_turn_texts_free(pr, np);
	free(js);
	free(b.p);
}

/* Name and settings records of a node (lock held); unset keys get a U
 * record only where an earlier S may have to be undone. */
static void node_records(struct fs_node *n, struct fs_buf *b, bool name, bool settings, bool undo)
{
	if (name)
		rec_name(b, n->name);
	char *val = settings ? malloc(ENG_MAX_SYSTEM + 1024) : NULL;

	for (int i = 0; val && i < ENG_KEY_COUNT; i++) {
		bool set = n->over_mask & (1ull << i);
		int len = set ? eng_settings_get(&n->over, eng_settings_keys[i], val, ENG_MAX_SYSTEM + 1024) : 0;

		if (set && len >= 0)
			rec_setting(b, eng_settings_keys[i], val, (size_t)len);
		else if (undo)
			rec_setting(b, eng_settings_keys[i], NULL, 0);
	}
	if (settings && !val)
		LOG_ERR("session '%s': no memory to journal its settings", n->name);
	free(val);
}

static void do_event(struct fs *fs, const struct jev *ev)
{
	struct fs_journal *j = fs->journal;
	struct fs_buf b = {0};
	uint64_t jid = 0;
	struct fs_node *n;

	if (ev->ev == FS_JOURNAL_DELETE) {
		char *path = jpath(j, ev->jid, "");
		if (path && unlink(path) < 0 && errno != ENOENT)
			LOG_ERR("journal %s: %s", path, strerror(errno));
		free(path);
		sync_dir(j);
		return;
	}
	if (ev->ev == FS_JOURNAL_TURNS) {
		do_turns(fs, ev->ino);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ev->ino);
	if (n && n->linked && n->jid) {
		jid = n->jid;
		if (ev->ev == FS_JOURNAL_CREATE)
			fs_buf_add(&b, "promptfs-journal 1\n", 19);
		node_records(n, &b, ev->ev != FS_JOURNAL_SETTINGS, ev->ev != FS_JOURNAL_NAME,
			     ev->ev == FS_JOURNAL_SETTINGS);
	}
	pthread_mutex_unlock(&fs->lock);
	if (jid)
		jwrite(j, jid, &b, ev->ev == FS_JOURNAL_CREATE);
	free(b.p);
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

struct rsess {
	char *name;
	char *over[ENG_KEY_COUNT];  /* raw values read from the journal, parsed at restore */
	size_t over_len[ENG_KEY_COUNT];
	struct fs_turn_text *turns;
	int n_turns, cap;
};

static void rsess_free(struct rsess *r)
{
	free(r->name);
	for (int i = 0; i < ENG_KEY_COUNT; i++)
		free(r->over[i]);
	fs_turn_texts_free(r->turns, r->n_turns);
}

static char *dup_bytes(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* Replays one record at *p; 0, or -1 at the end or a damaged record. */
static int parse_record(const char **p, const char *e, struct rsess *r)
{
	const char *nl = memchr(*p, '\n', (size_t)(e - *p));
	unsigned long long a = 0, c = 0;
	char type;
	int k;

	if (!nl)
		return -1;
	type = **p;
	k = sscanf(*p + 1, " %llu %llu", &a, &c);
	const char *d = nl + 1;
	size_t need = type == 'R' ? 0 : type == 'N' || type == 'U' ? a : a + c;
	if ((type != 'R' && k < 1) || (uint64_t)(e - d) < need + (type == 'R' ? 0 : 1))
		return -1;
	if (type != 'R' && d[need] != '\n')
		return -1;
	*p = d + need + (type == 'R' ? 0 : 1);
	switch (type) {
	case 'N':
		free(r->name);
		r->name = dup_bytes(d, a);
		return 0;
	case 'S':
	case 'U': {
		char key[32];
		int i;
		if (a >= sizeof(key))
			return 0;
		memcpy(key, d, a);
		key[a] = 0;
		if ((i = eng_settings_key_index(key)) < 0)
			return 0;
		free(r->over[i]);
		r->over[i] = type == 'S' ? dup_bytes(d + a, c) : NULL;
		r->over_len[i] = type == 'S' ? c : 0;
		return 0;
	}
	case 'T':
		if (r->n_turns == r->cap) {
			int cap = r->cap ? 2 * r->cap : 8;
			struct fs_turn_text *t = realloc(r->turns, (size_t)cap * sizeof(*t));
			if (!t)
				return -1;
			r->turns = t;
			r->cap = cap;
		}
		r->turns[r->n_turns++] = (struct fs_turn_text){dup_bytes(d, a), dup_bytes(d + a, c), a, c};
		return 0;
	case 'R':
		fs_turn_texts_free(r->turns, r->n_turns);
		r->turns = NULL;
		r->n_turns = r->cap = 0;
		return 0;
	}
	return -1;
}

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct fs_buf b = {0};
	char chunk[65536];
	size_t n;

	if (!f)
		return -errno;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fs_buf_add(&b, chunk, n);
	fclose(f);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* Brings one session back: name, settings, turns (fs->lock held). */
static int restore_one(struct fs *fs, uint64_t jid, struct rsess *r)
{
	struct eng_session *s = NULL;
	struct fs_node *n;
	int rc, k;

	if (!r->name || fs_name_check(r->name) < 0 || fs_node_by_name(fs, r->name)) {
		LOG_WARN("journal %016" PRIx64 ": no usable name; skipped", jid);
		return -EINVAL;
	}
	rc = eng_session_init(fs->model, &fs->defaults, &s);
	if (rc < 0) {
		LOG_ERR("journal: cannot re-create session '%s': %s", r->name, fs_errno_name(rc));
		return rc;
	}
	rc = fs_node_new(fs, r->name, s, &n);
	if (rc < 0) {
		eng_session_free(s);
		return rc;
	}
	n->jid = jid;
	for (int i = 0; i < ENG_KEY_COUNT; i++) {
		if (!r->over[i])
			continue;
		if (eng_settings_set(&n->over, eng_settings_keys[i], r->over[i], r->over_len[i]) == 0)
			n->over_mask |= 1ull << i;
		else
			LOG_WARN("session '%s': journaled %s no longer valid; using the default", r->name,
			         eng_settings_keys[i]);
	}
	fs_settings_push(fs, n);
	for (k = 0; k < r->n_turns; k++) {
		rc = eng_session_restore_turn(s, r->turns[k].user, r->turns[k].ulen, r->turns[k].reply,
					      r->turns[k].rlen);
		if (rc < 0) {
			LOG_WARN("session '%s': turn %d of %d not restored: %s", r->name, k + 1,
				 r->n_turns, fs_errno_name(rc));
			break;
		}
	}
	n->n_journaled = k;
	n->j_epoch = n->epoch;
	fs_kvstate_restore(fs, n); /* its KV pages, when a page file is there */
	LOG_INFO("session '%s' restored: %d turns", r->name, k);
	return k;
}

static bool journal_name(const char *name, uint64_t *jid)
{
	char *end;

	if (strlen(name) != 16 + 8 || strcmp(name + 16, ".journal"))
		return false;
	*jid = strtoull(name, &end, 16);
	return end == name + 16 && *jid != 0;
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
		struct rsess r = {0};
		char *path, *buf = NULL;
		size_t len = 0;
		uint64_t jid;

		if (!journal_name(de->d_name, &jid))
			continue;
		if (jid >= j->next_jid)
			j->next_jid = jid + 1;
		path = jpath(j, jid, "");
		if (!path || read_file(path, &buf, &len) < 0 || len < 19 ||
		    memcmp(buf, "promptfs-journal 1\n", 19)) {
			LOG_WARN("%s: not a promptfs journal; skipped", path ? path : de->d_name);
			free(path);
			free(buf);
			continue;
		}
		const char *p = buf + 19, *e = buf + len;
		while (p < e && parse_record(&p, e, &r) == 0)
			;
		if (p < e)
			LOG_WARN("%s: damaged after byte %zu; the rest is ignored", path, (size_t)(p - buf));
		pthread_mutex_lock(&fs->lock);
		int k = restore_one(fs, jid, &r);
		pthread_mutex_unlock(&fs->lock);
		if (k >= 0) {
			/* rewrite compactly: header, name, settings, the restored turns */
			struct fs_buf b = {0};
			fs_buf_add(&b, "promptfs-journal 1\n", 19);
			rec_name(&b, r.name);
			pthread_mutex_lock(&fs->lock);
			struct fs_node *n = fs_node_by_name(fs, r.name);
			if (n)
				node_records(n, &b, false, true, false);
			pthread_mutex_unlock(&fs->lock);
			for (int i = 0; i < k; i++)
				rec_turn(&b, r.turns[i].user, r.turns[i].ulen, r.turns[i].reply, r.turns[i].rlen);
			jwrite(j, jid, &b, true);
			free(b.p);
			n_sessions++;
		}
		rsess_free(&r);
		free(buf);
		free(path);
	}
	closedir(d);
	if (n_sessions)
		LOG_INFO("%d sessions restored from %s", n_sessions, j->dir);
	return n_sessions;
}
