/*
 * gramstore.c — the grammars/ and schemas/ folders kept in the state
 * directory (--state-dir DIR), so that a session whose user.grammar or
 * user.schema names one finds it again after a restart.
 *
 * Layout: DIR/grammars/NAME and DIR/schemas/NAME, each file the text as
 * written into the mount (names follow the mount's rules: no '/', not
 * starting with '.', so they are plain file names).  A change is written
 * whole to DIR/<folder>/.tmp-N, fsync'd and renamed over NAME (a removed
 * or renamed-away name is unlinked), the folder fsync'd.  One thread does
 * the file work, in the order the changes were posted (posting, from
 * handlers with fs->lock held, only queues); it writes what the engine
 * holds for the name when it gets to it, so changes in quick succession
 * end in the latest text.  At start every file is loaded into the engine
 * (a file that no longer parses or converts is logged, left on disk and
 * not loaded); leftover .tmp-* files are removed.  Sessions' settings
 * (the name, an inline json_schema) are journaled by journal.c as any
 * other setting.
 */
#define _GNU_SOURCE /* asprintf */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_internal.h"

struct gsev {
	bool schema;
	char *name;
	struct gsev *next;
};

struct fs_gramstore {
	char *dir[2];            /* DIR/grammars, DIR/schemas */
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct gsev *head, *tail; /* protected by lock */
	bool stop;                /* protected by lock */
	unsigned serial;          /* the writer thread's temporary names */
};

static const char *const folder[2] = { "grammars", "schemas" };

static int text_of(struct fs *fs, bool schema, const char *name, char **text, size_t *len)
{
	return schema ? eng_schemas_text(fs->model, name, text, len) : eng_grammars_text(fs->model, name, text, len);
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

// ---- the writer

static int write_file(struct fs_gramstore *g, const char *dir, const char *name, const char *text, size_t len)
{
	char *tmp = NULL, *path = NULL;
	int fd = -1, rc = 0;

	if (asprintf(&tmp, "%s/.tmp-%u", dir, g->serial++) < 0 || asprintf(&path, "%s/%s", dir, name) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	for (size_t off = 0; off < len && rc == 0;) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = w < 0 ? -errno : -EIO;
		else
			off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
out:
	if (rc < 0)
		LOG_ERR("state: %s/%s: %s", dir, name, strerror(-rc));
	free(tmp);
	free(path);
	return rc;
}

static void do_event(struct fs *fs, const struct gsev *ev)
{
	struct fs_gramstore *g = fs->gstore;
	const char *dir = g->dir[ev->schema];
	char *text = NULL, *path = NULL;
	size_t len = 0;
	int rc = text_of(fs, ev->schema, ev->name, &text, &len);

	if (rc == 0) {
		write_file(g, dir, ev->name, text, len);
	} else if (rc == -ENOENT) {
		if (asprintf(&path, "%s/%s", dir, ev->name) >= 0 && unlink(path) < 0 && errno != ENOENT)
			LOG_ERR("state: %s: %s", path, strerror(errno));
	} else {
		LOG_ERR("state: %s/%s not saved: %s", dir, ev->name, strerror(-rc));
	}
	sync_dir(dir);
	free(text);
	free(path);
}

static void *store_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_gramstore *g = fs->gstore;

	for (;;) {
		struct gsev *ev;

		pthread_mutex_lock(&g->lock);
		while (!g->head && !g->stop)
			pthread_cond_wait(&g->cond, &g->lock);
		if ((ev = g->head) && !(g->head = ev->next))
			g->tail = NULL;
		pthread_mutex_unlock(&g->lock);
		if (!ev)
			break; /* stopped, and everything queued is written */
		do_event(fs, ev);
		free(ev->name);
		free(ev);
	}
	return NULL;
}

void fs_gramstore_post(struct fs *fs, bool schema, const char *name)
{
	struct fs_gramstore *g = fs->gstore;
	struct gsev *ev;

	if (!g)
		return;
	if (!(ev = calloc(1, sizeof(*ev))) || !(ev->name = strdup(name))) {
		LOG_ERR("out of memory: %s/%s will not be saved in the state directory", folder[schema], name);
		free(ev);
		return;
	}
	ev->schema = schema;
	pthread_mutex_lock(&g->lock);
	if (g->tail)
		g->tail->next = ev;
	else
		g->head = ev;
	g->tail = ev;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

// ---- loading

static int read_all(const char *path, char **out, size_t *len)
{
	struct stat st;
	char *b = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	size_t got = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)ENG_GRAMMAR_MAX_TEXT) {
		rc = -EINVAL;
		goto out;
	}
	if (!(b = malloc((size_t)st.st_size + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, b + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)r;
	}
	*out = b;
	*len = got;
	b = NULL;
out:
	free(b);
	close(fd);
	return rc;
}

/* Loads one folder; returns the files loaded. */
static int load(struct fs *fs, bool schema, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d) {
		LOG_ERR("state: %s: %s", dir, strerror(errno));
		return 0;
	}
	while ((de = readdir(d))) {
		char *path = NULL, *text = NULL;
		size_t len = 0;
		int rc;

		if (de->d_name[0] == '.') {
			if (!strncmp(de->d_name, ".tmp-", 5) && asprintf(&path, "%s/%s", dir, de->d_name) >= 0)
				unlink(path); /* a write cut short */
			free(path);
			continue;
		}
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0)
			break;
		rc = fs_name_check(de->d_name);
		if (rc == 0)
			rc = read_all(path, &text, &len);
		if (rc == 0)
			rc = schema ? eng_schemas_put(fs->model, de->d_name, text, len)
			            : eng_grammars_put(fs->model, de->d_name, text, len);
		if (rc == 0)
			n++;
		else
			LOG_WARN("state: %s not loaded (%s); the file is left as it is", path, strerror(-rc));
		free(text);
		free(path);
	}
	closedir(d);
	return n;
}

// ---- open, close

int fs_gramstore_open(struct fs *fs, const char *dir)
{
	struct fs_gramstore *g = calloc(1, sizeof(*g));
	sigset_t block, old;
	int rc = -ENOMEM, n[2];

	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	for (int k = 0; k < 2; k++) {
		if (asprintf(&g->dir[k], "%s/%s", dir, folder[k]) < 0) {
			g->dir[k] = NULL;
			goto fail;
		}
		if (mkdir(g->dir[k], 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			LOG_ERR("state: %s: %s", g->dir[k], strerror(errno));
			goto fail;
		}
	}
	for (int k = 0; k < 2; k++)
		n[k] = load(fs, k, g->dir[k]);
	if (n[0] || n[1])
		LOG_INFO("state: %d grammars and %d schemas loaded from %s", n[0], n[1], dir);
	fs->gstore = g;
	sigfillset(&block);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = -pthread_create(&g->thread, NULL, store_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		fs->gstore = NULL;
		goto fail;
	}
	g->started = true;
	return 0;
fail:
	free(g->dir[0]);
	free(g->dir[1]);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cond);
	free(g);
	return rc;
}

void fs_gramstore_close(struct fs *fs)
{
	struct fs_gramstore *g = fs->gstore;

	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	if (g->started)
		pthread_join(g->thread, NULL);
	fs->gstore = NULL;
	free(g->dir[0]);
	free(g->dir[1]);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cond);
	free(g);
}
