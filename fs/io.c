/*
 * io.c — open files: open, read, write, flush, release, fsync, poll.
 *
 * Session files (direct_io: no page cache, every read comes here):
 *   - O_TRUNC resets the session at open, as it empties any file (`: > s`;
 *     a running turn is cancelled).  A flush with nothing written does
 *     nothing: shells dup2 and close the descriptor before the command
 *     writes, so that first close must not count.
 *   - writes are copied into the open's own buffer; the prompt is submitted
 *     at the first flush (close) that has data, so that when `echo` returns
 *     the session is already busy and an immediate `cat` waits for the new
 *     reply.  One trailing newline is dropped.  O_APPEND → next turn (the
 *     engine queues it behind a running one); otherwise → a new conversation
 *     (reset again, then submit).
 *   - EFBIG as early as it is known: at write() when the buffer cannot fit
 *     the context whatever the tokenizer does (more than n_ctx × the
 *     longest token) or when a token count says so (counted each time the
 *     buffer doubles past n_ctx bytes), else at flush from the engine.  The
 *     failed prompt adds nothing: `>>` keeps the conversation as it was,
 *     `>` leaves it empty (the open truncated it), both stay usable.
 *   - reads copy the latest reply by offset (non-destructive); at the end
 *     of a live reply the read is parked (notify.c).
 * Control files and history entries are snapshots taken at open.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "fs_internal.h"

struct fs_handle *fs_handle_find(struct fs *fs, uint64_t id)
{
	struct fs_handle *h = fs->hhash[id % FS_HASH];

	while (h && h->id != id)
		h = h->hnext;
	return h;
}

/* The handle of a request (lock held); NULL (answer EBADF) once released. */
static struct fs_handle *fh_of(struct fs *fs, struct fuse_file_info *fi)
{
	struct fs_handle *h = fs_handle_find(fs, fi->fh);

	if (!h)
		LOG_INFO("file handle %llu already released", (unsigned long long)fi->fh);
	return h;
}

static void handle_track(struct fs *fs, struct fs_handle *h)
{
	h->id = ++fs->next_handle_id;
	h->hnext = fs->hhash[h->id % FS_HASH];
	fs->hhash[h->id % FS_HASH] = h;
	h->prev = NULL;
	h->next = fs->handles;
	if (fs->handles)
		fs->handles->prev = h;
	fs->handles = h;
}

static void handle_free(struct fs_handle *h)
{
	free(h->buf);
	free(h->snap);
	free(h);
}

void fs_handle_drop(struct fs *fs, struct fs_handle *h)
{
	struct fs_handle **pp = &fs->hhash[h->id % FS_HASH];

	while (*pp && *pp != h)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = h->hnext;
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	if (h->node)
		fs_node_unref(fs, h->node);
	if (h->gram_pending)
		fs_gram_unpend(fs, h->gram_ino);
	handle_free(h);
}

void fs_handles_free_all(struct fs *fs)
{
	while (fs->handles) {
		struct fs_handle *h = fs->handles;

		fs->handles = h->next;
		handle_free(h); /* nodes go with fs_nodes_free_all */
	}
}

struct fs_handle *fs_handle_new_session(struct fs *fs, struct fs_node *n, int flags, bool created)
{
	struct fs_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	handle_track(fs, h);
	h->kind = FS_KIND_SESSION;
	h->node = n;
	n->refs++;
	h->wr = (flags & O_ACCMODE) != O_RDONLY;
	h->trunc = h->wr && (flags & O_TRUNC) && !created;
	h->append = (flags & O_APPEND) != 0;
	return h;
}

void fs_session_reset(struct fs *fs, struct fs_node *n)
{
	if (!n->sess)
		return;
	eng_session_reset(n->sess);
	eng_turn_texts_free(n->rest, n->n_rest); /* the journal records the reset */
	n->rest = NULL;
	n->n_rest = 0;
	n->epoch++;
	fs_timespec_now(&n->mtime);
	fs_journal_post(fs, FS_JOURNAL_TURNS, n->ino, 0);
	fs_kvstate_post(fs, n->ino); /* an empty cache: its page file goes */
	fs_notify_ino(fs, n->ino); /* parked readers now see EOF */
}

// ---- open

/* A grammars/NAME or schemas/NAME handle (lock held).  Reading sees the text at open;
 * writing replaces the whole grammar at close (O_APPEND starts from the
 * current text). */
static int gram_open(struct fs *fs, uint64_t ino, int flags, bool created, struct fs_handle **out)
{
	struct fs_handle *h = calloc(1, sizeof(*h));
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!h)
		return -ENOMEM;
	handle_track(fs, h);
	h->kind = FS_KIND_GRAMMAR;
	h->gram_ino = ino;
	h->gram_pending = created;
	h->wr = (flags & O_ACCMODE) != O_RDONLY;
	h->trunc = h->wr && (flags & O_TRUNC);
	h->append = (flags & O_APPEND) != 0;
	rc = fs_gram_text(fs, ino, &text, &len);
	if (rc == 0 && (flags & O_ACCMODE) != O_WRONLY) {
		h->snap = text;
		h->snap_len = len;
		text = NULL;
	}
	if (rc == 0 && h->append && len && (h->buf = malloc(len))) {
		memcpy(h->buf, h->snap ? h->snap : text, len);
		h->len = h->cap = len;
	}
	free(text);
	if (rc < 0) {
		fs_handle_drop(fs, h);
		return rc;
	}
	*out = h;
	return 0;
}

int fs_gram_create_open(struct fs *fs, uint64_t dir, const char *name, int flags, struct fs_handle **h,
                        struct fuse_entry_param *e)
{
	uint64_t ino = fs_gram_lookup(fs, dir, name);
	bool created = false;
	int rc = 0;

	if (ino && (flags & O_EXCL))
		return -EEXIST;
	if (!ino) {
		rc = fs_gram_create(fs, dir, name, &ino);
		created = rc == 0;
	}
	if (rc == 0)
		rc = gram_open(fs, ino, flags, created, h);
	if (rc < 0) {
		if (created)
			fs_gram_unpend(fs, ino);
		return rc;
	}
	e->ino = ino;
	fs_node_attr(fs, ino, &e->attr);
	return 0;
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = NULL;
	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	enum fs_kind kind = fs_ino_kind(fs, ino);
	switch (kind) {
	case FS_KIND_NONE:
		rc = -ENOENT;
		break;
	case FS_KIND_ROOT:
	case FS_KIND_HISTDIR:
	case FS_KIND_HIST_DIR:
		rc = -EISDIR;
		break;
	case FS_KIND_EVENTS:
		if (wr) {
			LOG_ERR("events is read-only (flags 0%o)", fi->flags);
			rc = -EACCES;
			break;
		}
		h = calloc(1, sizeof(*h));
		if (!h || !(h->ev = fs_events_open(fs))) {
			free(h);
			h = NULL;
			rc = -ENOMEM;
			break;
		}
		handle_track(fs, h);
		h->kind = kind;
		break;
	case FS_KIND_GRAMDIR:
		rc = -EISDIR;
		break;
	case FS_KIND_TOKENS: { /* read live, like the reply */
		struct fs_node *n = fs_node_find(fs, ino);

		if (wr || !n->sess) {
			if (wr)
				LOG_ERR("%s.tokens is read-only (flags 0%o)", n->name, fi->flags);
			rc = wr ? -EACCES : -ENOENT;
			break;
		}
		if (!(h = calloc(1, sizeof(*h)))) {
			rc = -ENOMEM;
			break;
		}
		handle_track(fs, h);
		h->kind = kind;
		h->node = n;
		n->refs++;
		eng_session_watch_tokens(n->sess);
		break;
	}
	case FS_KIND_GRAMMAR:
		rc = gram_open(fs, ino, fi->flags, false, &h);
		break;
	case FS_KIND_SESSION: {
		struct fs_node *n = fs_node_find(fs, ino);

		if (!n->sess) {
			rc = -ENOENT;
			break;
		}
		h = fs_handle_new_session(fs, n, fi->flags, false);
		rc = h ? 0 : -ENOMEM;
		if (h && h->trunc)
			fs_session_reset(fs, n); /* O_TRUNC empties the file at open, as anywhere */
		break;
	}
	default:
		if (wr && kind == FS_KIND_DEFAULTS && !fs_may_write_defaults(fs, fuse_req_ctx(req)->uid)) {
			LOG_ERR("defaults: uid %u is not the mount's owner", (unsigned)fuse_req_ctx(req)->uid);
			rc = -EACCES;
			break;
		}
		if (wr && kind != FS_KIND_DEFAULTS) {
			LOG_ERR("inode %llu is read-only (flags 0%o)", (unsigned long long)ino, fi->flags);
			rc = -EACCES;
			break;
		}
		h = calloc(1, sizeof(*h));
		if (!h) {
			rc = -ENOMEM;
			break;
		}
		handle_track(fs, h);
		h->kind = kind;
		h->wr = wr;
		h->trunc = wr && (fi->flags & O_TRUNC);
		h->append = (fi->flags & O_APPEND) != 0;
		if (kind == FS_KIND_HIST_TEXT || kind == FS_KIND_HIST_JSON || kind == FS_KIND_HIST_MSG) {
			h->node = fs_node_find(fs, ino);
			h->node->refs++;
		}
		if ((fi->flags & O_ACCMODE) != O_WRONLY)
			rc = fs_ctl_content(fs, ino, &h->snap, &h->snap_len);
		if (rc < 0) {
			fs_handle_drop(fs, h);
			h = NULL;
		}
	}
	if (h)
		fi->fh = h->id;
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->direct_io = 1;
	fi->keep_cache = 0;
	if (fuse_reply_open(req, fi) == -ENOENT) { /* interrupted open: undo */
		pthread_mutex_lock(&fs->lock);
		fs_handle_drop(fs, h);
		pthread_mutex_unlock(&fs->lock);
	}
}

// ---- read

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h;
	struct fs_node *node;
	char *buf = NULL;
	bool tokens;
	ssize_t r;

	pthread_mutex_lock(&fs->lock);
	h = fh_of(fs, fi);
	if (h && h->kind == FS_KIND_EVENTS) {
		/* under the lock, so a release cannot free the reader meanwhile
		 * (events.c never takes fs->lock) */
		fs_events_read(req, fs, h->ev, size, (fi->flags & O_NONBLOCK) != 0);
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	if (!h || (h->kind != FS_KIND_SESSION && h->kind != FS_KIND_TOKENS)) {
		/* a snapshot: the slice is copied under the lock, since the
		 * handle may be released the moment the lock is let go */
		size_t len = h ? h->snap_len : 0;
		size_t o = (uint64_t)off < len ? (size_t)off : len;
		size_t n = len - o < size ? len - o : size;

		r = !h ? -EBADF : (buf = malloc(n ? n : 1)) ? (ssize_t)n : -ENOMEM;
		if (r > 0)
			memcpy(buf, h->snap + o, n);
		pthread_mutex_unlock(&fs->lock);
		if (r >= 0)
			fuse_reply_buf(req, buf, (size_t)r);
		else
			fuse_reply_err(req, (int)-r);
		free(buf);
		return;
	}
	node = h->node;
	node->refs++; /* for the park below, which may outlive the handle */
	tokens = h->kind == FS_KIND_TOKENS;
	fs->n_reads++;
	r = fs_session_read(fs, h->node, tokens, (uint64_t)off, size, &buf);
	h->read_end = (uint64_t)off + (r > 0 ? (uint64_t)r : 0);
	if (r > 0)
		fs->bytes_read += (uint64_t)r;
	pthread_mutex_unlock(&fs->lock);
	if (r == -EAGAIN && (fi->flags & O_NONBLOCK)) {
		fuse_reply_err(req, EAGAIN);
	} else if (r == -EAGAIN) {
		fs_park_read(fs, req, node, tokens, (uint64_t)off, size);
	} else if (r >= 0) {
		fuse_reply_buf(req, buf, (size_t)r);
	} else {
		fuse_reply_err(req, (int)-r);
	}
	free(buf);
	pthread_mutex_lock(&fs->lock);
	fs_node_unref(fs, node);
	pthread_mutex_unlock(&fs->lock);
}

// ---- write

static int buf_append(struct fs_handle *h, const char *data, size_t size)
{
	if (h->len + size > h->cap) {
		size_t cap = h->cap ? h->cap : 4096;
		while (cap < h->len + size)
			cap *= 2;
		char *p = realloc(h->buf, cap);
		if (!p)
			return -ENOMEM;
		h->buf = p;
		h->cap = cap;
	}
	memcpy(h->buf + h->len, data, size);
	h->len += size;
	return 0;
}

static void fail_write(struct fs_handle *h, int err)
{
	h->werr = err;
	free(h->buf);
	h->buf = NULL;
	h->len = h->cap = 0;
}

/* Tokens the buffer needs, counted outside fs->lock on a private copy.
 * Returns -EFBIG when it cannot fit next to the conversation, else 0. */
static int count_fits(struct fs *fs, struct fs_handle *h)
{
	const struct eng_tokenizer *tok = eng_model_tokenizer(fs->model);
	struct eng_session_info info;
	int32_t *ids = NULL;
	size_t n_ids = 0, len = h->len;
	char *copy = malloc(len);
	int room = fs->n_ctx, rc = 0;

	if (!copy || !tok)
		goto out_copy;
	memcpy(copy, h->buf, len);
	if (h->append && h->node->sess) {
		eng_session_info(h->node->sess, &info);
		room -= info.n_past;
	}
	h->tok_len = len;
	pthread_mutex_unlock(&fs->lock);
	if (eng_tokenize(tok, copy, len, 0, &ids, &n_ids) == 0 && (int64_t)n_ids >= room)
		rc = -EFBIG;
	pthread_mutex_lock(&fs->lock);
	if (rc < 0)
		LOG_ERR("prompt of %zu bytes is %zu tokens: the context holds %d (room %d)",
			len, n_ids, fs->n_ctx, room);
	free(ids);
out_copy:
	free(copy);
	return rc;
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	h = fh_of(fs, fi);
	if (!h || !h->wr || (h->kind != FS_KIND_SESSION && h->kind != FS_KIND_DEFAULTS && h->kind != FS_KIND_GRAMMAR)) {
		rc = -EBADF;
		goto out_unlock;
	}
	if (h->werr) {
		rc = h->werr;
		goto out_unlock;
	}
	if (h->len + size > FS_WRITE_MAX) {
		LOG_ERR("write of %zu bytes after %zu: one open may write at most %u", size, h->len,
			FS_WRITE_MAX);
		fail_write(h, -EFBIG);
		rc = -EFBIG;
		goto out_unlock;
	}
	if (h->kind == FS_KIND_SESSION && fs->max_piece &&
	    h->len + size > (size_t)fs->n_ctx * fs->max_piece) {
		LOG_ERR("prompt of %zu+ bytes cannot fit a context of %d tokens", h->len + size,
			fs->n_ctx);
		fail_write(h, -EFBIG);
		rc = -EFBIG;
		goto out_unlock;
	}
	rc = buf_append(h, data, size);
	if (rc == 0 && h->kind == FS_KIND_SESSION && h->len > (size_t)fs->n_ctx &&
	    h->len >= 2 * h->tok_len) {
		rc = count_fits(fs, h);
		if (rc < 0)
			fail_write(h, rc);
	}
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

// ---- flush: submit

/* Sends what this open wrote (lock held). */
static int session_submit(struct fs *fs, struct fs_handle *h)
{
	struct fs_node *n = h->node;
	size_t len = h->len;
	int rc;

	if (h->werr)
		return h->werr;
	if (h->len == 0)
		return 0; /* a close with nothing written (the shell's dup2 dance, `: > s`) */
	if (!n->sess)
		return -ENOENT;
	if (h->buf[len - 1] == '\n')
		len--;
	h->len = 0;
	if (len == 0) {
		if (!h->append)
			return 0; /* `echo > s`: an empty prompt after the reset at open */
		LOG_ERR("session '%s': empty prompt", n->name);
		return -EINVAL;
	}
	if (h->append && n->n_rest) {
		LOG_ERR("session '%s': %d journaled turns do not fit the context of %d tokens, so no turn "
			"can follow them (EFBIG); remount with a larger -c, or start over with >",
			n->name, n->n_rest, fs->n_ctx);
		return -EFBIG;
	}
	fs_settings_push(fs, n);
	if (!h->append && !h->submitted)
		fs_session_reset(fs, n); /* a new conversation, whatever came in since open */
	else
		fs_kvstate_reload(fs, n); /* evicted: its saved pages, not a prefill (drops the lock) */
	if (!n->sess)
		return -ENOENT; /* removed while the page file was read */
	rc = eng_session_submit(n->sess, h->buf, len);
	if (rc < 0) {
		LOG_ERR("session '%s': prompt of %zu bytes refused: %s", n->name, len,
			rc == -EFBIG ? "too long for the context (EFBIG)" : fs_errno_name(rc));
		return rc;
	}
	h->submitted = true;
	n->was_final = false;
	fs_timespec_now(&n->mtime);
	fs_notify_ino(fs, n->ino);
	fs_event_post(fs, n->name, "submitted");
	return 0;
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	h = fh_of(fs, fi);
	if (!h || !h->wr) {
		rc = h ? 0 : -EBADF;
	} else if (h->kind == FS_KIND_SESSION) {
		rc = session_submit(fs, h);
	} else if (h->kind == FS_KIND_GRAMMAR) {
		/* all or nothing: the grammar is parsed here, EINVAL if it does not */
		if (h->werr) {
			rc = h->werr;
		} else if (h->len) {
			rc = fs_gram_commit(fs, h->gram_ino, h->buf, h->len);
			h->len = 0;
			h->submitted = true;
			if (rc == 0 && h->gram_pending) {
				fs_gram_unpend(fs, h->gram_ino);
				h->gram_pending = false;
			}
		}
	} else if (h->kind == FS_KIND_DEFAULTS) {
		/* like a session: a close with nothing written does nothing (the
		 * shell's dup2 dance); `>` replaces the set, `>>` merges */
		if (h->werr) {
			rc = h->werr;
		} else if (h->len) {
			rc = fs_ctl_defaults_apply(fs, h->buf, h->len, !h->append && !h->submitted);
			h->len = 0;
			h->submitted = true;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_err(req, -rc);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h;

	pthread_mutex_lock(&fs->lock);
	h = fh_of(fs, fi);
	if (!h) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, 0);
		return;
	}
	if (h->wr && h->len && !h->werr)
		LOG_WARN("inode %llu: %zu bytes written but never flushed", (unsigned long long)ino, h->len);
	if (h->kind == FS_KIND_DEFAULTS && h->trunc && !h->submitted && !h->werr)
		fs_ctl_defaults_apply(fs, "", 0, true); /* `: > defaults`: the built-in values */
	if (h->ev)
		fs_events_close(fs, h->ev);
	fs_handle_drop(fs, h);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_err(req, 0);
}

// ---- poll

void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct fuse_pollhandle *ph)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h;
	unsigned revents = POLLOUT | POLLWRNORM;
	struct eng_session_info info;

	pthread_mutex_lock(&fs->lock);
	h = fh_of(fs, fi);
	if (h && h->kind == FS_KIND_EVENTS) {
		revents = fs_events_poll(fs, h->ev, ph); /* under the lock, as in read */
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_poll(req, revents);
		return;
	}
	if (!h) {
		revents = POLLERR;
	} else if ((h->kind != FS_KIND_SESSION && h->kind != FS_KIND_TOKENS) || !h->node->sess) {
		revents |= POLLIN | POLLRDNORM;
	} else {
		eng_session_info(h->node->sess, &info);
		bool final = info.state == ENG_STATE_DONE || info.state == ENG_STATE_ERROR ||
			     info.state == ENG_STATE_EMPTY;
		if (final || (h->kind == FS_KIND_TOKENS ? info.tokens_bytes : info.reply_bytes) > h->read_end)
			revents |= POLLIN | POLLRDNORM;
	}
	if (ph && h && !(revents & (POLLIN | POLLERR)) && fs_node_add_poll(h->node, ph) == 0)
		ph = NULL; /* the notifier wakes it */
	pthread_mutex_unlock(&fs->lock);
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, revents);
}
