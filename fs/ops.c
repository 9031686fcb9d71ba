/*
 * ops.c — the FUSE low-level operations on names and attributes (lookup,
 * getattr, setattr, readdir, create, mknod, unlink, rename, statfs, forget,
 * init, destroy), the attributes of every inode, and, at the bottom, the
 * operations table.  File I/O lives in io.c, extended attributes in
 * xattr.c, copy_file_range (cp forks) in fork.c.
 *
 * Every handler replies exactly once.  Entries and attributes are never
 * cached by the kernel (timeouts 0): a reply grows, sessions come and go.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "fs_internal.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static const struct {
	const char *name;
	uint64_t ino;
} root_files[] = {
	{"README", FS_INO_README}, {"model", FS_INO_MODEL},       {"stats", FS_INO_STATS},
	{"defaults", FS_INO_DEFAULTS}, {"history", FS_INO_HISTORY}, {"events", FS_INO_EVENTS},
	{"grammars", FS_INO_GRAMMARS}, {"schemas", FS_INO_SCHEMAS},
};
#define N_ROOT_FILES ((int)(sizeof(root_files) / sizeof(root_files[0])))

// ---- start and stop

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* O_TRUNC arrives with open (no separate setattr), so `: > s` and
	 * `echo x > s` are told apart at close */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	LOG_INFO("mounted: protocol %u.%u", conn->proto_major, conn->proto_minor);
}

void fs_shutdown(struct fs *fs)
{
	if (atomic_exchange(&fs->shut_down, true))
		return;
	atomic_store(&fs->draining, true);
	fs_parked_answer_all(fs, NULL);
	fs_events_wake(fs, true);
	fs_notifier_stop(fs);
	eng_model_stop(fs->model);
	fs_kvstate_close(fs); /* saves the KV pages not saved yet */
	fs_journal_close(fs);
}

static void op_destroy(void *userdata)
{
	fs_shutdown(userdata);
}

// ---- attributes (lock held)

static size_t size_of(struct fs *fs, uint64_t ino)
{
	size_t len = 0;

	return fs_ctl_size(fs, ino, &len) < 0 ? 0 : len;
}

static void session_attr(struct fs *fs, enum fs_kind kind, uint64_t ino, struct stat *st)
{
	struct fs_node *n = fs_node_find(fs, ino);
	struct eng_session_info info;
	mode_t r = n->mode & 0444; /* history views: readable as the session is */

	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_nlink = n->linked ? 1 : 0;
	st->st_ctim = n->ctime;
	st->st_mtim = st->st_atim = n->mtime;
	if (kind == FS_KIND_SESSION || kind == FS_KIND_TOKENS) {
		st->st_mode = S_IFREG | (kind == FS_KIND_SESSION ? n->mode : r);
		if (n->sess) {
			eng_session_info(n->sess, &info);
			st->st_size = (off_t)(kind == FS_KIND_SESSION ? info.reply_bytes : info.tokens_bytes);
		}
	} else if (kind == FS_KIND_HIST_DIR) {
		st->st_mode = S_IFDIR | r | (r >> 2);
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | r;
		st->st_size = n->sess ? (off_t)size_of(fs, ino) : 0;
	}
	st->st_blocks = (st->st_size + 511) / 512;
}

bool fs_may_write_defaults(const struct fs *fs, uid_t uid)
{
	return uid == fs->uid || uid == 0;
}

int fs_node_attr(struct fs *fs, uint64_t ino, struct stat *st)
{
	enum fs_kind kind = fs_ino_kind(fs, ino);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	st->st_atim = st->st_mtim = st->st_ctim = fs->t_start;
	switch (kind) {
	case FS_KIND_NONE:
		return -ENOENT;
	case FS_KIND_ROOT:
	case FS_KIND_HISTDIR:
	case FS_KIND_GRAMDIR:
		/* the root is like /tmp: anyone who can reach the mount creates
		 * sessions; only a session's owner removes or renames it */
		st->st_mode = S_IFDIR | (kind == FS_KIND_ROOT ? 01777 : kind == FS_KIND_HISTDIR ? 0555 : 0755);
		st->st_nlink = 2;
		return 0;
	case FS_KIND_GRAMMAR:
		return fs_gram_attr(fs, ino, st);
	case FS_KIND_README:
	case FS_KIND_MODEL:
	case FS_KIND_STATS:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)size_of(fs, ino);
		if (kind == FS_KIND_STATS)
			fs_timespec_now(&st->st_mtim);
		return 0;
	case FS_KIND_EVENTS: /* a stream: size 0, like a pipe that never ends */
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		fs_timespec_now(&st->st_mtim);
		return 0;
	case FS_KIND_DEFAULTS:
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = (off_t)size_of(fs, ino);
		return 0;
	case FS_KIND_HIST_MSG:
		if (!fs_node_find(fs, ino)->sess || fs_ctl_size(fs, ino, &(size_t){0}) < 0)
			return -ENOENT;
		/* fall through */
	default:
		session_attr(fs, kind, ino, st);
		return 0;
	}
}

// ---- entries

static void reply_entry_for(fuse_req_t req, struct fs *fs, uint64_t ino, int rc)
{
	struct fuse_entry_param e;

	if (rc == 0) {
		memset(&e, 0, sizeof(e));
		pthread_mutex_lock(&fs->lock);
		rc = fs_node_attr(fs, ino, &e.attr);
		pthread_mutex_unlock(&fs->lock);
		e.ino = ino;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_entry(req, &e) == -ENOENT) { /* interrupted: the kernel never saw it */
		pthread_mutex_lock(&fs->lock);
		fs_node_forget(fs, ino, 1);
		pthread_mutex_unlock(&fs->lock);
	}
}

/* The session whose name is `name` minus `suffix` (lock held). */
static struct fs_node *by_base(struct fs *fs, const char *name, const char *suffix)
{
	size_t len = strlen(name), sl = strlen(suffix);
	char base[FS_NAME_MAX + 1];

	if (len <= sl || len - sl > FS_NAME_MAX || strcmp(name + len - sl, suffix))
		return NULL;
	memcpy(base, name, len - sl);
	base[len - sl] = 0;
	return fs_node_by_name(fs, base);
}

/* ino of name in the history directory (lock held): NAME is the text,
 * NAME.json the JSON form, NAME.d/ the per-message directory; a session
 * actually called "x.json" or "x.d" wins. */
static uint64_t history_lookup(struct fs *fs, const char *name)
{
	struct fs_node *n = fs_node_by_name(fs, name);

	if (n)
		return n->ino + 1;
	if ((n = by_base(fs, name, ".json")))
		return n->ino + 2;
	if ((n = by_base(fs, name, ".d")))
		return n->ino + 3;
	return 0;
}

/* NAME.tokens at the root: the token view of session NAME (lock held);
 * asking for it turns the view on (eng_session_watch_tokens). */
static uint64_t tokens_lookup(struct fs *fs, const char *name)
{
	struct fs_node *n = by_base(fs, name, ".tokens");

	if (!n || !n->sess)
		return 0;
	eng_session_watch_tokens(n->sess);
	return n->ino + 4;
}

/* ino of a message in history/NAME.d/ (lock held). */
static uint64_t message_lookup(struct fs *fs, uint64_t dir, const char *name)
{
	struct fs_node *n = fs_node_find(fs, dir);
	int j = n && n->sess ? fs_ctl_msg_index(n, name) : -1;

	return j < 0 ? 0 : n->ino + FS_INO_MSG0 + (uint64_t)j;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	uint64_t ino = 0;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	if (parent == FS_INO_ROOT) {
		for (int i = 0; i < N_ROOT_FILES && !ino; i++)
			if (!strcmp(name, root_files[i].name))
				ino = root_files[i].ino;
		if (!ino) {
			struct fs_node *n = fs_node_by_name(fs, name);
			ino = n ? n->ino : 0;
		}
		if (!ino)
			ino = tokens_lookup(fs, name); /* a session actually called "x.tokens" wins */
	} else if (parent == FS_INO_HISTORY) {
		ino = history_lookup(fs, name);
	} else if (fs_ino_kind(fs, parent) == FS_KIND_HIST_DIR) {
		ino = message_lookup(fs, parent, name);
	} else if (fs_gram_dir(parent)) {
		ino = fs_gram_lookup(fs, parent, name);
	} else {
		rc = -ENOTDIR;
	}
	if (!ino && !rc)
		rc = -ENOENT;
	if (ino >= FS_INO_FIRST_SESSION && ino < FS_INO_FIRST_GRAMMAR)
		fs_node_find(fs, ino)->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	reply_entry_for(req, fs, ino, rc);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);

	pthread_mutex_lock(&fs->lock);
	fs_node_forget(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++)
		fs_node_forget(fs, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

// ---- attributes

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = fs_node_attr(fs, ino, &st);
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0.0);
}

/* truncate(2)/ftruncate: size 0 resets a session (or the defaults); the
 * current size is a no-op; anything else is EINVAL.  Times are accepted
 * (touch); owner and mode changes are refused. */
static int setattr_locked(struct fs *fs, uid_t uid, uint64_t ino, struct stat *attr, int to_set)
{
	enum fs_kind kind = fs_ino_kind(fs, ino);
	struct stat cur;
	int rc = fs_node_attr(fs, ino, &cur);

	if (rc < 0)
		return rc;
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		LOG_ERR("inode %llu: the owner is fixed (the session's creator)", (unsigned long long)ino);
		return -EPERM;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		struct fs_node *n = kind == FS_KIND_SESSION ? fs_node_find(fs, ino) : NULL;
		if (!n || (uid != n->uid && uid != 0) || (attr->st_mode & 07111)) {
			LOG_ERR("inode %llu: chmod 0%o refused: only a session's owner may change its read/write bits",
				(unsigned long long)ino, (unsigned)(attr->st_mode & 07777));
			return -EPERM;
		}
		n->mode = attr->st_mode & 0666;
		fs_journal_post(fs, FS_JOURNAL_SETTINGS, n->ino, 0);
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && kind == FS_KIND_DEFAULTS && !fs_may_write_defaults(fs, uid)) {
		LOG_ERR("defaults: uid %u is not the mount's owner", (unsigned)uid);
		return -EACCES;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (kind == FS_KIND_SESSION && attr->st_size == 0) {
			fs_session_reset(fs, fs_node_find(fs, ino));
		} else if (kind == FS_KIND_GRAMMAR && attr->st_size != cur.st_size) {
			LOG_ERR("%s/%s: truncate to %lld: write the whole file instead",
				fs_gram_is_schema(fs, ino) ? "schemas" : "grammars", fs_gram_name(fs, ino),
				(long long)attr->st_size);
			rc = -EINVAL;
		} else if (kind == FS_KIND_GRAMMAR) {
			rc = 0;
		} else if (kind == FS_KIND_DEFAULTS && attr->st_size == 0) {
			rc = fs_ctl_defaults_apply(fs, "", 0, true);
		} else if (kind == FS_KIND_SESSION || kind == FS_KIND_DEFAULTS) {
			if (attr->st_size != cur.st_size) {
				LOG_ERR("inode %llu: truncate to %lld: only 0 (reset) is supported",
					(unsigned long long)ino, (long long)attr->st_size);
				rc = -EINVAL;
			}
		} else {
			LOG_ERR("inode %llu is read-only", (unsigned long long)ino);
			rc = -EACCES;
		}
	}
	if (rc == 0 && kind == FS_KIND_SESSION &&
	    (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) {
		struct fs_node *n = fs_node_find(fs, ino);

		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			fs_timespec_now(&n->mtime);
		else
			n->mtime = attr->st_mtim;
	}
	return rc;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = setattr_locked(fs, fuse_req_ctx(req)->uid, ino, attr, to_set);
	if (rc == 0)
		rc = fs_node_attr(fs, ino, &st);
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0.0);
}

// ---- directories: a snapshot at opendir, read by index

struct dirent_snap {
	char *name;
	uint64_t ino;
	mode_t mode;
};

/* fi->fh is the snapshot's id, found under fs->lock: a releasedir may
 * overtake a readdir of a killed process (as for files, fs/io.c). */
struct fs_dir_snap {
	struct dirent_snap *e;
	int n, cap;
	uint64_t id;
	struct fs_dir_snap *next; /* protected by fs->lock: fs->dirs */
};

static struct fs_dir_snap **dir_slot(struct fs *fs, uint64_t id)
{
	struct fs_dir_snap **pp = &fs->dirs;

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static int snap_add(struct fs_dir_snap *d, const char *name, const char *suffix, uint64_t ino, mode_t mode)
{
	size_t a = strlen(name), b = suffix ? strlen(suffix) : 0;
	char *s = malloc(a + b + 1);

	if (!s)
		return -ENOMEM;
	memcpy(s, name, a);
	if (b)
		memcpy(s + a, suffix, b);
	s[a + b] = 0;
	if (d->n == d->cap) {
		int cap = d->cap ? 2 * d->cap : 16;
		struct dirent_snap *e = realloc(d->e, (size_t)cap * sizeof(*e));

		if (!e) {
			free(s);
			return -ENOMEM;
		}
		d->e = e;
		d->cap = cap;
	}
	d->e[d->n++] = (struct dirent_snap){s, ino, mode};
	return 0;
}

static void snap_free(struct fs_dir_snap *d)
{
	for (int i = 0; d && i < d->n; i++)
		free(d->e[i].name);
	if (d)
		free(d->e);
	free(d);
}

/* history/NAME.d/: one entry per message (lock held). */
static int snap_messages(struct fs_dir_snap *d, struct fs_node *n)
{
	char name[32];
	int rc = 0, k = n && n->sess ? eng_session_n_messages(n->sess) : 0;

	for (int j = 0; j < k && !rc; j++)
		if (fs_ctl_msg_name(n, j, name, sizeof(name)))
			rc = snap_add(d, name, NULL, n->ino + FS_INO_MSG0 + (uint64_t)j, S_IFREG);
	return rc;
}

static void op_releasedir_id(struct fs *fs, uint64_t id)
{
	struct fs_dir_snap **pp, *d;

	pthread_mutex_lock(&fs->lock);
	pp = dir_slot(fs, id);
	d = *pp;
	if (d)
		*pp = d->next;
	pthread_mutex_unlock(&fs->lock);
	snap_free(d);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_dir_snap *d = calloc(1, sizeof(*d));
	int rc = d ? 0 : -ENOMEM;

	pthread_mutex_lock(&fs->lock);
	if (ino != FS_INO_ROOT && ino != FS_INO_HISTORY && !fs_gram_dir(ino) &&
	    fs_ino_kind(fs, ino) != FS_KIND_HIST_DIR) {
		pthread_mutex_unlock(&fs->lock);
		free(d);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (!rc)
		rc = snap_add(d, ".", NULL, ino, S_IFDIR);
	if (!rc)
		rc = snap_add(d, "..", NULL, ino >= FS_INO_FIRST_SESSION ? FS_INO_HISTORY : FS_INO_ROOT, S_IFDIR);
	if (!rc && ino >= FS_INO_FIRST_SESSION)
		rc = snap_messages(d, fs_node_find(fs, ino));
	for (int i = 0; !rc && ino == FS_INO_ROOT && i < N_ROOT_FILES; i++)
		rc = snap_add(d, root_files[i].name, NULL, root_files[i].ino,
			      root_files[i].ino == FS_INO_HISTORY || fs_gram_dir(root_files[i].ino)
				      ? S_IFDIR : S_IFREG);
	if (!rc && fs_gram_dir(ino)) {
		char **names;
		int k;

		rc = fs_gram_names(fs, ino, &names, &k);
		for (int i = 0; !rc && i < k; i++)
			rc = snap_add(d, names[i], NULL, fs_gram_lookup(fs, ino, names[i]), S_IFREG);
		if (rc == 0 || k)
			free(names);
	}
	for (struct fs_node *n = fs->nodes; !rc && n && ino < FS_INO_FIRST_SESSION && !fs_gram_dir(ino);
	     n = n->next) {
		if (!n->linked)
			continue;
		if (ino == FS_INO_ROOT) {
			rc = snap_add(d, n->name, NULL, n->ino, S_IFREG);
		} else {
			rc = snap_add(d, n->name, NULL, n->ino + 1, S_IFREG);
			if (!rc)
				rc = snap_add(d, n->name, ".json", n->ino + 2, S_IFREG);
			if (!rc)
				rc = snap_add(d, n->name, ".d", n->ino + 3, S_IFDIR);
		}
	}
	if (rc == 0) {
		d->id = ++fs->next_handle_id;
		d->next = fs->dirs;
		fs->dirs = d;
		fi->fh = d->id;
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0) {
		snap_free(d);
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_open(req, fi) == -ENOENT)
		op_releasedir_id(fs, fi->fh);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	char *buf = malloc(size ? size : 1);
	struct fs_dir_snap *d;
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	d = *dir_slot(fs, fi->fh);
	if (!d) {
		pthread_mutex_unlock(&fs->lock);
		free(buf);
		fuse_reply_err(req, EBADF);
		return;
	}
	for (off_t i = off; i >= 0 && i < d->n; i++) {
		struct stat st = {.st_ino = d->e[i].ino, .st_mode = d->e[i].mode};
		size_t need = fuse_add_direntry(req, buf + used, size - used, d->e[i].name, &st, i + 1);

		if (need > size - used)
			break;
		used += need;
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	op_releasedir_id(fs_of(req), fi->fh);
	fuse_reply_err(req, 0);
}

void fs_dirs_free_all(struct fs *fs)
{
	while (fs->dirs)
		op_releasedir_id(fs, fs->dirs->id);
}

// ---- making and removing sessions

/* Finds or creates the session called name (lock held).  *created tells
 * which.  -EEXIST when it exists and excl; -ENOSPC at max_sessions. */
static int session_get(struct fs *fs, fuse_req_t req, mode_t mode, const char *name, bool excl,
		       struct fs_node **out, bool *created)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct eng_session *s = NULL;
	struct fs_node *n = fs_node_by_name(fs, name);
	int rc;

	*created = false;
	if (n) {
		*out = n;
		return excl ? -EEXIST : 0;
	}
	rc = eng_session_init(fs->model, &fs->defaults, &s);
	if (rc < 0) {
		LOG_ERR("cannot create session '%s': %s", name,
			rc == -ENOSPC ? "too many sessions (ENOSPC; see --max-sessions)" : fs_errno_name(rc));
		return rc;
	}
	rc = fs_node_new(fs, name, s, out);
	if (rc < 0) {
		eng_session_free(s);
		return rc;
	}
	*created = true;
	(*out)->uid = ctx->uid; /* the creator owns it; the kernel has applied its umask */
	(*out)->gid = ctx->gid;
	(*out)->mode = mode & 0666 & ~(mode_t)fs->opts->umask;
	(*out)->jid = fs_journal_new_id(fs);
	fs_journal_post(fs, FS_JOURNAL_CREATE, (*out)->ino, 0);
	return 0;
}

static int check_new_entry(fuse_ino_t parent, const char *name)
{
	if (fs_gram_dir(parent))
		return fs_name_check(name);
	if (parent == FS_INO_HISTORY) {
		LOG_ERR("history/ is read-only ('%s')", name);
		return -EACCES;
	}
	if (parent != FS_INO_ROOT)
		return -ENOTDIR;
	return fs_name_check(name);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct fs_handle *h = NULL;
	struct fs_node *n = NULL;
	bool created = false;
	int rc = check_new_entry(parent, name);

	memset(&e, 0, sizeof(e));
	pthread_mutex_lock(&fs->lock);
	if (rc == 0 && fs_gram_dir(parent)) {
		rc = fs_gram_create_open(fs, parent, name, fi->flags, &h, &e);
		if (rc == 0 && h)
			fi->fh = h->id;
		pthread_mutex_unlock(&fs->lock);
		goto reply;
	}
	if (rc == 0)
		rc = session_get(fs, req, mode, name, (fi->flags & O_EXCL) != 0, &n, &created);
	if (rc == 0) {
		h = fs_handle_new_session(fs, n, fi->flags, created);
		rc = h ? 0 : -ENOMEM;
		if (h && h->trunc)
			fs_session_reset(fs, n);
	}
	if (rc == 0) {
		n->nlookup++;
		e.ino = n->ino;
		fs_node_attr(fs, n->ino, &e.attr);
	}
	if (h)
		fi->fh = h->id;
	pthread_mutex_unlock(&fs->lock);
reply:
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->direct_io = 1;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) { /* interrupted: undo the open */
		pthread_mutex_lock(&fs->lock);
		fs_node_forget(fs, e.ino, 1);
		fs_handle_drop(fs, h);
		pthread_mutex_unlock(&fs->lock);
	}
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fs *fs = fs_of(req);
	struct fs_node *n = NULL;
	bool created;
	int rc = S_ISREG(mode) ? check_new_entry(parent, name) : -EPERM;

	if (rc == 0 && fs_gram_dir(parent))
		rc = -EACCES; /* grammars and schemas are made by writing them */
	pthread_mutex_lock(&fs->lock);
	if (rc == 0)
		rc = session_get(fs, req, mode, name, true, &n, &created);
	if (rc == 0)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	reply_entry_for(req, fs, n ? n->ino : 0, rc);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	LOG_ERR("mkdir '%s': sessions are files; there are no directories to make", name);
	fuse_reply_err(req, EPERM);
}

static int root_file_error(fuse_ino_t parent, const char *name)
{
	if (parent == FS_INO_HISTORY)
		return -EACCES;
	if (parent != FS_INO_ROOT)
		return -ENOTDIR;
	return fs_name_reserved(name) ? -EACCES : 0;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct eng_session *s = NULL;
	struct fs_parked *parked = NULL;
	struct fs_node *n;
	int rc = root_file_error(parent, name);

	if (fs_gram_dir(parent)) {
		pthread_mutex_lock(&fs->lock);
		rc = fs_gram_unlink(fs, parent, name);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, -rc);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	n = rc ? NULL : fs_node_by_name(fs, name);
	if (!rc && !n)
		rc = -ENOENT;
	if (n) {
		uint64_t ino = n->ino;

		fs_journal_post(fs, FS_JOURNAL_DELETE, ino, n->jid);
		fs_kvstate_delete(fs, n->jid);
		fs_event_post(fs, n->name, "removed");
		parked = fs_parked_take(fs, n);
		s = fs_node_unlink(fs, n); /* n may be gone from here on */
		fs_notify_ino(fs, ino);    /* wakes poll()ers */
	}
	pthread_mutex_unlock(&fs->lock);
	fs_parked_reply_eof(parked);
	if (s)
		eng_session_free(s); /* cancels its turn; may wait for the engine step */
	fuse_reply_err(req, -rc);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, parent == FS_INO_ROOT && (!strcmp(name, "history") || !strcmp(name, "grammars") ||
	                                              !strcmp(name, "schemas"))
				    ? EACCES : ENOTDIR);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	struct eng_session *old = NULL;
	struct fs_parked *parked = NULL;
	struct fs_node *n, *dst;
	char *copy = NULL;
	int rc = root_file_error(parent, name);

	if (fs_gram_dir(parent) || fs_gram_dir(newparent)) {
		rc = parent != newparent ? -EXDEV : (flags & RENAME_EXCHANGE) ? -EINVAL : 0;
		pthread_mutex_lock(&fs->lock);
		if (!rc && (flags & RENAME_NOREPLACE) && strcmp(name, newname) && fs_gram_lookup(fs, parent, newname))
			rc = -EEXIST;
		if (!rc && strcmp(name, newname))
			rc = fs_gram_rename(fs, parent, name, newname);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, -rc);
		return;
	}
	if (!rc)
		rc = check_new_entry(newparent, newname);
	if (!rc && (flags & ~(unsigned)RENAME_NOREPLACE)) {
		LOG_ERR("rename '%s': flags 0x%x not supported (RENAME_EXCHANGE, RENAME_WHITEOUT: EINVAL)",
			name, flags);
		rc = -EINVAL;
	}
	pthread_mutex_lock(&fs->lock);
	n = rc ? NULL : fs_node_by_name(fs, name);
	if (!rc && !n)
		rc = -ENOENT;
	dst = rc ? NULL : fs_node_by_name(fs, newname);
	if (dst == n)
		goto out_unlock; /* same name: nothing to do */
	if (dst && (flags & RENAME_NOREPLACE))
		rc = -EEXIST;
	copy = rc ? NULL : strdup(newname);
	if (!rc && !copy)
		rc = -ENOMEM;
	if (!rc) {
		if (dst) { /* rename over another session: that one is removed */
			fs_journal_post(fs, FS_JOURNAL_DELETE, dst->ino, dst->jid);
			fs_kvstate_delete(fs, dst->jid);
			fs_event_post(fs, dst->name, "removed");
			parked = fs_parked_take(fs, dst);
			fs_notify_ino(fs, dst->ino);
			old = fs_node_unlink(fs, dst);
		}
		fs_event_post_renamed(fs, n->name, copy);
		free(n->name);
		n->name = copy;
		fs_timespec_now(&n->ctime);
		fs_journal_post(fs, FS_JOURNAL_NAME, n->ino, 0);
	}
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	fs_parked_reply_eof(parked);
	if (old)
		eng_session_free(old);
	fuse_reply_err(req, -rc);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EPERM);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv;
	int max = fs->opts->max_sessions > 0 ? fs->opts->max_sessions : 256;

	memset(&sv, 0, sizeof(sv));
	pthread_mutex_lock(&fs->lock);
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_files = (fsfilcnt_t)max;
	sv.f_ffree = sv.f_favail = (fsfilcnt_t)(max > fs->n_linked ? max - fs->n_linked : 0);
	sv.f_namemax = FS_NAME_MAX;
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_statfs(req, &sv);
}

// ---- the table

static const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = fs_op_open,
	.read = fs_op_read,
	.write = fs_op_write,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.create = op_create,
	.poll = fs_op_poll,
	.copy_file_range = fs_op_copy_file_range,
};

const struct fuse_lowlevel_ops *fs_ops_table(void)
{
	return &fs_ops;
}
