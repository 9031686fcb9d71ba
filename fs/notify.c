/*
 * notify.c — parked reads and the notifier thread.
 *
 * A read at the end of a reply that is still being generated is parked: the
 * fuse_req_t is kept in fs->parked and no worker thread waits.  The engine's
 * notify callback (engine thread) only queues the session's inode; the
 * notifier thread then answers every parked read that now has bytes (or
 * EOF / EIO), wakes poll()ers and, at the end of a turn, invalidates the
 * kernel's cached attributes and asks the journal to record the turn.  Only
 * this thread sends kernel notifications, so none is ever sent from inside
 * a request handler or with an engine lock held.
 *
 * Interrupts (Ctrl-C, kill -9 on a waiting cat): fuse_req_interrupt_func is
 * registered with the parked read's id (never a pointer: the entry may be
 * answered and freed by the notifier while libfuse is about to call back).
 * Whoever takes the entry off fs->parked under fs->lock answers it; a read
 * interrupted before it was parked (state NEW) is answered EINTR by its own
 * handler.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_internal.h"

// ---- reading a reply

ssize_t fs_session_read(struct fs *fs, struct fs_node *n, bool tokens, uint64_t off, size_t size, char **out)
{
	struct eng_session_info info;
	bool final = true;
	size_t got;
	char *buf;

	*out = NULL;
	if (!n->sess)
		return 0; /* removed: EOF */
	buf = malloc(size ? size : 1);
	if (!buf)
		return -ENOMEM;
	got = tokens ? eng_session_read_tokens(n->sess, off, buf, size, &final)
	             : eng_session_read_reply(n->sess, off, buf, size, &final);
	if (got > 0) {
		*out = buf;
		return (ssize_t)got;
	}
	free(buf);
	if (!final)
		return fs->draining ? 0 : -EAGAIN;
	eng_session_info(n->sess, &info);
	if (info.state == ENG_STATE_ERROR) {
		LOG_WARN("read of '%s': the turn failed: %s", n->name, info.status);
		return -EIO;
	}
	return 0;
}

static void reply_read(fuse_req_t req, ssize_t r, char *buf)
{
	if (r >= 0)
		fuse_reply_buf(req, buf, (size_t)r);
	else
		fuse_reply_err(req, (int)-r);
	free(buf);
}

// ---- the parked list (fs->lock held)

static void park_insert(struct fs *fs, struct fs_parked *p)
{
	p->prev = NULL;
	p->next = fs->parked;
	if (fs->parked)
		fs->parked->prev = p;
	fs->parked = p;
	p->node->refs++;
}

static void park_remove(struct fs *fs, struct fs_parked *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		fs->parked = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->next = p->prev = NULL;
	fs_node_unref(fs, p->node);
	p->node = NULL;
}

static struct fs_parked *park_find(struct fs *fs, uint64_t id)
{
	for (struct fs_parked *p = fs->parked; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* libfuse calls this with the request's own lock held (from the thread
 * that got the INTERRUPT, or from fuse_req_interrupt_func if the request
 * was already interrupted). */
static void park_interrupted(fuse_req_t req, void *data)
{
	struct fs *fs = fs_of(req);
	uint64_t id = (uint64_t)(uintptr_t)data;
	struct fs_parked *p;

	pthread_mutex_lock(&fs->lock);
	p = park_find(fs, id);
	if (p && p->state == FS_PARK_NEW) {
		p->state = FS_PARK_INTERRUPTED; /* its handler answers */
		p = NULL;
	} else if (p) {
		park_remove(fs, p);
		fs->n_interrupts++;
	}
	pthread_mutex_unlock(&fs->lock);
	if (p) {
		fuse_reply_err(p->req, EINTR);
		free(p);
	}
}

void fs_park_read(struct fs *fs, fuse_req_t req, struct fs_node *n, bool tokens, uint64_t off, size_t size)
{
	struct fs_parked *p = calloc(1, sizeof(*p));
	ssize_t r;
	char *buf = NULL;

	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->off = off;
	p->size = size;
	p->tokens = tokens;
	p->node = n;
	pthread_mutex_lock(&fs->lock);
	p->id = ++fs->next_park_id;
	p->state = FS_PARK_NEW;
	park_insert(fs, p);
	fs->n_parks++;
	pthread_mutex_unlock(&fs->lock);

	/* outside fs->lock: libfuse may call park_interrupted right here */
	fuse_req_interrupt_func(req, park_interrupted, (void *)(uintptr_t)p->id);

	pthread_mutex_lock(&fs->lock);
	if (p->state == FS_PARK_INTERRUPTED) {
		r = -EINTR;
		fs->n_interrupts++;
	} else {
		/* the reply may have grown or ended since the first try */
		r = fs_session_read(fs, p->node, p->tokens, off, size, &buf);
		if (r == -EAGAIN) {
			p->state = FS_PARK_PARKED;
			pthread_mutex_unlock(&fs->lock);
			return;
		}
	}
	if (r > 0)
		fs->bytes_read += (uint64_t)r;
	park_remove(fs, p);
	pthread_mutex_unlock(&fs->lock);
	reply_read(req, r, buf);
	free(p);
}

struct fs_parked *fs_parked_take(struct fs *fs, struct fs_node *n)
{
	struct fs_parked *done = NULL, *p, *next;

	for (p = fs->parked; p; p = next) {
		next = p->next;
		if (p->state != FS_PARK_PARKED || (n && p->node != n))
			continue;
		park_remove(fs, p);
		p->next = done;
		done = p;
	}
	return done;
}

void fs_parked_reply_eof(struct fs_parked *list)
{
	struct fs_parked *next;

	for (struct fs_parked *p = list; p; p = next) {
		next = p->next;
		fuse_reply_buf(p->req, NULL, 0); /* EOF: the session is gone */
		free(p);
	}
}

void fs_parked_answer_all(struct fs *fs, struct fs_node *n)
{
	struct fs_parked *done;

	pthread_mutex_lock(&fs->lock);
	done = fs_parked_take(fs, n);
	pthread_mutex_unlock(&fs->lock);
	fs_parked_reply_eof(done);
}

// ---- the queue (engine thread → notifier)

void fs_notify_ino(struct fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->q_lock);
	for (int i = 0; i < fs->q_len; i++)
		if (fs->q[i] == ino)
			goto out_unlock;
	if (fs->q_len == fs->q_cap) {
		int cap = fs->q_cap ? 2 * fs->q_cap : 64;
		uint64_t *q = realloc(fs->q, (size_t)cap * sizeof(*q));

		if (!q) {
			LOG_ERR("out of memory queueing inode %llu", (unsigned long long)ino);
			goto out_unlock;
		}
		fs->q = q;
		fs->q_cap = cap;
	}
	fs->q[fs->q_len++] = ino;
	pthread_cond_signal(&fs->q_cond);
out_unlock:
	pthread_mutex_unlock(&fs->q_lock);
}

void fs_engine_notify(void *user, struct eng_session *s)
{
	struct fs *fs = user;

	fs_notify_ino(fs, (uint64_t)(uintptr_t)eng_session_get_user(s));
	if (fs->test_delay_us) /* PROMPTFS_TEST_STEP_DELAY_MS: tests need live replies */
		usleep(fs->test_delay_us);
}

// ---- the notifier thread

struct answer {
	fuse_req_t req;
	ssize_t r;
	char *buf;
};

/* Everything one change of one session needs, done with the lock held;
 * replies and kernel notifications are collected for after. */
static int collect(struct fs *fs, struct fs_node *n, struct answer **ans, int *n_ans,
                   bool *turn_ended)
{
	struct fs_parked *p, *next;
	struct eng_session_info info;
	int cap = 0;

	fs_timespec_now(&n->mtime);
	for (p = fs->parked; p; p = next) {
		char *buf = NULL;
		ssize_t r;

		next = p->next;
		if (p->node != n || p->state != FS_PARK_PARKED)
			continue;
		r = fs_session_read(fs, n, p->tokens, p->off, p->size, &buf);
		if (r == -EAGAIN)
			continue;
		if (*n_ans == cap) {
			cap = cap ? 2 * cap : 8;
			struct answer *a = realloc(*ans, (size_t)cap * sizeof(**ans));
			if (!a) {
				free(buf);
				return -ENOMEM;
			}
			*ans = a;
		}
		if (r > 0)
			fs->bytes_read += (uint64_t)r;
		(*ans)[(*n_ans)++] = (struct answer){p->req, r, buf};
		park_remove(fs, p);
		free(p);
	}
	if (n->sess) {
		eng_session_info(n->sess, &info);
		bool final = info.state == ENG_STATE_DONE || info.state == ENG_STATE_ERROR ||
			     info.state == ENG_STATE_EMPTY;
		*turn_ended = final && !n->was_final;
		n->was_final = final;
	}
	return 0;
}

static void process(struct fs *fs, uint64_t ino)
{
	struct answer *ans = NULL;
	struct fuse_pollhandle **phs = NULL;
	int n_ans = 0, n_phs = 0;
	bool turn_ended = false, known = false;
	struct fs_node *n;

	if (ino == FS_INO_EVENTS) {
		fs_events_wake(fs, false);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ino);
	if (n) {
		n->refs++; /* answering its readers drops their refs */
		collect(fs, n, &ans, &n_ans, &turn_ended);
		n_phs = fs_node_take_polls(fs, n, &phs);
		known = n->nlookup > 0;
		fs_node_unref(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);

	for (int i = 0; i < n_ans; i++)
		reply_read(ans[i].req, ans[i].r, ans[i].buf);
	for (int i = 0; i < n_phs; i++) {
		fuse_lowlevel_notify_poll(phs[i]);
		fuse_pollhandle_destroy(phs[i]);
	}
	if (turn_ended && known && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0); /* attributes only */
	if (turn_ended)
		fs_journal_post(fs, FS_JOURNAL_TURNS, ino, 0);
	free(ans);
	free(phs);
}

static void *notifier_main(void *arg)
{
	struct fs *fs = arg;
	uint64_t *batch = NULL;
	int cap = 0;

	for (;;) {
		int len;

		pthread_mutex_lock(&fs->q_lock);
		while (!fs->q_len && !fs->q_stop)
			pthread_cond_wait(&fs->q_cond, &fs->q_lock);
		if (!fs->q_len && fs->q_stop) {
			pthread_mutex_unlock(&fs->q_lock);
			break;
		}
		/* swap the queue with our batch array: producers never wait on us */
		uint64_t *q = fs->q;
		int q_cap = fs->q_cap;
		len = fs->q_len;
		fs->q = batch;
		fs->q_cap = cap;
		fs->q_len = 0;
		batch = q;
		cap = q_cap;
		pthread_mutex_unlock(&fs->q_lock);
		for (int i = 0; i < len; i++)
			process(fs, batch[i]);
	}
	free(batch);
	return NULL;
}

int fs_notifier_start(struct fs *fs)
{
	sigset_t block, old;
	int rc;

	/* signals go to the main thread (libfuse's loop), never here */
	sigfillset(&block);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&fs->notifier, NULL, notifier_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		LOG_ERR("cannot start the notifier thread: %s", strerror(rc));
		return -rc;
	}
	fs->notifier_started = true;
	return 0;
}

void fs_notifier_stop(struct fs *fs)
{
	if (!fs->notifier_started)
		return;
	pthread_mutex_lock(&fs->q_lock);
	fs->q_stop = true;
	pthread_cond_broadcast(&fs->q_cond);
	pthread_mutex_unlock(&fs->q_lock);
	pthread_join(fs->notifier, NULL);
	fs->notifier_started = false;
}
