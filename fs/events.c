/*
 * events.c — the `events` file: one line per change, streamed to every
 * open from the moment it was opened (FUSE raises no inotify events for
 * what the daemon does itself).
 *
 *   TIME NAME WHAT\n
 *   TIME  seconds since the epoch with microseconds (1733234567.123456)
 *   NAME  the session, bytes <= 0x20, 0x7f and '\' escaped as \xHH, so
 *         `while read -r t s e` splits every line the same way
 *   WHAT  submitted | done | context full | cancelled | error | evicted |
 *         restored | preempted | not saved REASON | removed | renamed NEWNAME | forked SRC[@TURN]
 *
 * The daemon keeps the last FS_EVENTS_KEEP lines in a ring.  Each open has
 * its own position; a reader that falls more than FS_EVENTS_KEEP lines
 * behind first gets "TIME - missed N" and then continues with the oldest
 * line kept.  A read at the end waits (parked like a session read, Ctrl-C
 * interrupts it, O_NONBLOCK gets EAGAIN); at unmount it gets EOF.  Posting
 * takes only this module's lock, so it is allowed from any thread with any
 * other lock held; parked reads are answered by the notifier thread
 * (fs_notify_ino(FS_INO_EVENTS) → fs_events_wake), never by the poster.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_internal.h"

#define FS_EVENTS_KEEP 4096 /* lines a slow reader may fall behind without losing any */
#define LINE_MAX_BYTES (2 * 4 * FS_NAME_MAX + 64)

struct fs_ev_reader {
	uint64_t seq;               /* protected by ev->lock: next line to read */
	char *part;                 /* protected by ev->lock: rest of a line a short read cut */
	size_t part_len, part_off;
	struct fuse_pollhandle *ph; /* protected by ev->lock */
	struct fs_ev_reader *next, *prev;
};

struct ev_park {
	uint64_t id;
	fuse_req_t req;
	struct fs_ev_reader *r;
	size_t size;
	int state;                  /* 0 new, 1 parked, 2 interrupted */
	struct ev_park *next;
};

struct fs_events {
	pthread_mutex_t lock;
	char *line[FS_EVENTS_KEEP]; /* protected by lock: line seq % KEEP */
	uint64_t next_seq;          /* protected by lock */
	struct fs_ev_reader *readers;
	struct ev_park *parked;
	uint64_t next_park_id;
	bool drain;
};

int fs_events_init(struct fs *fs)
{
	struct fs_events *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return -ENOMEM;
	pthread_mutex_init(&ev->lock, NULL);
	fs->events = ev;
	return 0;
}

void fs_events_free(struct fs *fs)
{
	struct fs_events *ev = fs->events;

	if (!ev)
		return;
	for (int i = 0; i < FS_EVENTS_KEEP; i++)
		free(ev->line[i]);
	while (ev->readers) {
		struct fs_ev_reader *r = ev->readers;

		ev->readers = r->next;
		if (r->ph)
			fuse_pollhandle_destroy(r->ph);
		free(r->part);
		free(r);
	}
	pthread_mutex_destroy(&ev->lock);
	free(ev);
	fs->events = NULL;
}

// ---- posting

static size_t escape_name(char *o, size_t cap, const char *name)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p && n + 5 < cap; p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '\\')
			n += (size_t)snprintf(o + n, cap - n, "\\x%02x", *p);
		else
			o[n++] = (char)*p;
	}
	o[n] = 0;
	return n;
}

static void post_line(struct fs *fs, const char *name, const char *what, const char *arg)
{
	struct fs_events *ev = fs->events;
	char buf[LINE_MAX_BYTES], esc[4 * FS_NAME_MAX + 8], earg[4 * FS_NAME_MAX + 24];
	struct timespec ts;
	char *copy;

	if (!ev)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	escape_name(esc, sizeof(esc), name);
	if (arg)
		escape_name(earg, sizeof(earg), arg);
	snprintf(buf, sizeof(buf), "%lld.%06ld %s %s%s%s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000, esc,
		 what, arg ? " " : "", arg ? earg : "");
	copy = strdup(buf);
	if (!copy) {
		LOG_ERR("out of memory: event '%s %s' lost", name, what);
		return;
	}
	pthread_mutex_lock(&ev->lock);
	free(ev->line[ev->next_seq % FS_EVENTS_KEEP]);
	ev->line[ev->next_seq % FS_EVENTS_KEEP] = copy;
	ev->next_seq++;
	pthread_mutex_unlock(&ev->lock);
	fs_notify_ino(fs, FS_INO_EVENTS);
}

void fs_event_post(struct fs *fs, const char *name, const char *what)
{
	const char *sp = strchr(what, ' ');

	/* "forked SRC": the argument is a session name, escaped like one */
	if (sp && !strncmp(what, "forked ", 7)) {
		char head[8] = "forked";
		post_line(fs, name, head, sp + 1);
		return;
	}
	post_line(fs, name, what, NULL);
}

void fs_event_post_renamed(struct fs *fs, const char *from, const char *to)
{
	post_line(fs, from, "renamed", to);
}

void fs_engine_event(void *user, struct eng_session *s, enum eng_event e)
{
	struct fs *fs = user;
	uint64_t ino = (uint64_t)(uintptr_t)eng_session_get_user(s);
	static const char *const names[] = {
		[ENG_EVENT_EVICTED] = "evicted", [ENG_EVENT_RESTORED] = "restored",
		[ENG_EVENT_DONE] = "done", [ENG_EVENT_CONTEXT_FULL] = "context full",
		[ENG_EVENT_CANCELLED] = "cancelled", [ENG_EVENT_ERROR] = "error",
		[ENG_EVENT_PREEMPTED] = "preempted",
	};
	char name[FS_NAME_MAX + 1] = "";
	struct fs_node *n;

	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ino);
	if (n && n->linked && n->sess == s)
		snprintf(name, sizeof(name), "%s", n->name);
	pthread_mutex_unlock(&fs->lock);
	if (name[0] && e >= ENG_EVENT_EVICTED && e <= ENG_EVENT_PREEMPTED)
		fs_event_post(fs, name, names[e]);
	if (e != ENG_EVENT_EVICTED && e != ENG_EVENT_RESTORED && e != ENG_EVENT_PREEMPTED && name[0])
		fs_kvstate_post(fs, ino); /* idle now: its KV pages may be saved */
}

// ---- readers

struct fs_ev_reader *fs_events_open(struct fs *fs)
{
	struct fs_events *ev = fs->events;
	struct fs_ev_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	pthread_mutex_lock(&ev->lock);
	r->seq = ev->next_seq; /* from the moment it is opened */
	r->next = ev->readers;
	if (ev->readers)
		ev->readers->prev = r;
	ev->readers = r;
	pthread_mutex_unlock(&ev->lock);
	return r;
}

void fs_events_close(struct fs *fs, struct fs_ev_reader *r)
{
	struct fs_events *ev = fs->events;

	pthread_mutex_lock(&ev->lock);
	if (r->prev)
		r->prev->next = r->next;
	else
		ev->readers = r->next;
	if (r->next)
		r->next->prev = r->prev;
	pthread_mutex_unlock(&ev->lock);
	if (r->ph)
		fuse_pollhandle_destroy(r->ph);
	free(r->part);
	free(r);
}

/* Lock held: up to size bytes of whole lines (or the rest of a cut one)
 * into a fresh buffer; 0 when nothing is there yet. */
static ssize_t take_lines(struct fs_events *ev, struct fs_ev_reader *r, size_t size, char **out)
{
	char *buf = malloc(size ? size : 1), missed[64];
	size_t used = 0;

	*out = buf;
	if (!buf)
		return -ENOMEM;
	while (used < size) {
		const char *src;
		uint64_t adv;
		size_t len;

		if (r->part) {
			len = r->part_len - r->part_off < size - used ? r->part_len - r->part_off : size - used;
			memcpy(buf + used, r->part + r->part_off, len);
			used += len;
			r->part_off += len;
			if (r->part_off == r->part_len) {
				free(r->part);
				r->part = NULL;
			}
			continue;
		}
		if (r->seq == ev->next_seq)
			break;
		if (ev->next_seq - r->seq > FS_EVENTS_KEEP) {
			struct timespec ts;

			adv = ev->next_seq - FS_EVENTS_KEEP - r->seq;
			clock_gettime(CLOCK_REALTIME, &ts);
			snprintf(missed, sizeof(missed), "%lld.%06ld - missed %llu\n", (long long)ts.tv_sec,
				 ts.tv_nsec / 1000, (unsigned long long)adv);
			src = missed;
		} else {
			src = ev->line[r->seq % FS_EVENTS_KEEP];
			adv = 1;
		}
		len = strlen(src);
		if (len > size - used && used > 0)
			break; /* whole lines only: the next read starts with it */
		r->seq += adv;
		if (len > size - used) { /* a read shorter than one line: the rest next time */
			r->part = strdup(src);
			r->part_len = len;
			r->part_off = 0;
			if (!r->part)
				break;
			continue;
		}
		memcpy(buf + used, src, len);
		used += len;
	}
	return (ssize_t)used;
}

static void park_interrupted(fuse_req_t req, void *data)
{
	struct fs *fs = fs_of(req);
	struct fs_events *ev = fs->events;
	uint64_t id = (uint64_t)(uintptr_t)data;
	struct ev_park **pp, *p = NULL;

	pthread_mutex_lock(&ev->lock);
	for (pp = &ev->parked; *pp; pp = &(*pp)->next)
		if ((*pp)->id == id) {
			p = *pp;
			if (p->state == 0) {
				p->state = 2; /* its handler answers */
				p = NULL;
			} else {
				*pp = p->next;
			}
			break;
		}
	pthread_mutex_unlock(&ev->lock);
	if (p) {
		fuse_reply_err(p->req, EINTR);
		free(p);
	}
}

static bool at_end(struct fs *fs, const struct fs_events *ev)
{
	return ev->drain || atomic_load(&fs->draining);
}

static void unpark(struct fs_events *ev, struct ev_park *p)
{
	for (struct ev_park **pp = &ev->parked; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
}

void fs_events_read(fuse_req_t req, struct fs *fs, struct fs_ev_reader *r, size_t size, bool nonblock)
{
	struct fs_events *ev = fs->events;
	struct ev_park *p = NULL;
	bool parked = false;
	char *buf = NULL;
	ssize_t n;

	pthread_mutex_lock(&ev->lock);
	n = take_lines(ev, r, size, &buf);
	if (n == 0 && nonblock && !at_end(fs, ev))
		n = -EAGAIN;
	if (n != 0 || at_end(fs, ev))
		goto out_unlock; /* lines, an error, or end-of-file */
	p = calloc(1, sizeof(*p));
	if (!p) {
		n = -ENOMEM;
		goto out_unlock;
	}
	*p = (struct ev_park){ ++ev->next_park_id, req, r, size, 0, ev->parked };
	ev->parked = p;
	pthread_mutex_unlock(&ev->lock);

	/* outside the lock: libfuse may call park_interrupted right here */
	fuse_req_interrupt_func(req, park_interrupted, (void *)(uintptr_t)p->id);

	pthread_mutex_lock(&ev->lock);
	free(buf);
	buf = NULL;
	n = p->state == 2 ? -EINTR : take_lines(ev, r, size, &buf);
	if (n == 0 && !ev->drain) {
		p->state = 1; /* fs_events_wake answers it */
		parked = true;
	} else {
		unpark(ev, p);
	}
out_unlock:
	pthread_mutex_unlock(&ev->lock);
	if (!parked) {
		if (n < 0)
			fuse_reply_err(req, (int)-n);
		else
			fuse_reply_buf(req, buf, (size_t)n);
		free(p);
	}
	free(buf);
}

unsigned fs_events_poll(struct fs *fs, struct fs_ev_reader *r, struct fuse_pollhandle *ph)
{
	struct fs_events *ev = fs->events;
	unsigned revents = 0;
	struct fuse_pollhandle *old = NULL;

	pthread_mutex_lock(&ev->lock);
	if (r->part || r->seq != ev->next_seq || ev->drain)
		revents = POLLIN | POLLRDNORM;
	else if (ph) {
		old = r->ph;
		r->ph = ph;
		ph = NULL;
	}
	pthread_mutex_unlock(&ev->lock);
	if (old)
		fuse_pollhandle_destroy(old);
	if (ph)
		fuse_pollhandle_destroy(ph);
	return revents;
}

/* Notifier thread (or shutdown): answers parked reads that have lines now,
 * and wakes pollers. */
void fs_events_wake(struct fs *fs, bool drain)
{
	struct fs_events *ev = fs->events;
	struct ev_park *done = NULL, **pp, *p;
	struct fuse_pollhandle **phs = NULL;
	int n_phs = 0, cap = 0;

	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	if (drain)
		ev->drain = true;
	for (pp = &ev->parked; (p = *pp);) {
		char *buf = NULL;
		ssize_t n = p->state == 1 ? take_lines(ev, p->r, p->size, &buf) : 0;

		if (p->state != 1 || (n == 0 && !ev->drain)) {
			free(buf);
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		p->next = done;
		done = p;
		p->size = n < 0 ? 0 : (size_t)n;
		p->r = (struct fs_ev_reader *)buf; /* the reply's bytes from here on */
	}
	for (struct fs_ev_reader *r = ev->readers; r; r = r->next) {
		if (!r->ph || (r->seq == ev->next_seq && !ev->drain))
			continue;
		if (n_phs == cap) {
			cap = cap ? 2 * cap : 8;
			struct fuse_pollhandle **a = realloc(phs, (size_t)cap * sizeof(*a));
			if (!a)
				break;
			phs = a;
		}
		phs[n_phs++] = r->ph;
		r->ph = NULL;
	}
	pthread_mutex_unlock(&ev->lock);
	while (done) {
		p = done;
		done = p->next;
		fuse_reply_buf(p->req, (char *)p->r, p->size);
		free(p->r);
		free(p);
	}
	for (int i = 0; i < n_phs; i++) {
		fuse_lowlevel_notify_poll(phs[i]);
		fuse_pollhandle_destroy(phs[i]);
	}
	free(phs);
}
