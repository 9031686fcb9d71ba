/*
 * kvstate.c — KV page files in the state directory: a session's KV cache
 * survives a restart, so its next turn prefills only its own tokens.
 *
 * One file per session, DIR/<16 hex>.kv (the journal's id), written whole
 * to DIR/<id>.kv.tmp, fsync'd and renamed over the old one:
 *
 *     struct kv_header               magic "PFSKV001", the eng_kv_id it is
 *                                    tied to (model file size, header hash,
 *                                    KV type, backend, page geometry),
 *                                    n_tokens, n_pages, hashes of the
 *                                    tokens and of the pages, and a hash
 *                                    of the header itself
 *     int32  tokens[n_tokens]        the cached prefix of the history
 *     uint8  pages[n_pages][page_bytes]
 *
 * Saved by this module's thread when a session goes idle (a turn ended, a
 * fork was made) and, for every session not saved since, at unmount.  An
 * idle session's pages do not change until its next turn, so an eviction
 * finds them saved already; a session evicted before its save ran keeps
 * its previous file, whose tokens are still a prefix of its history.
 * Files are read when the journal restores its session (before the engine
 * runs; pages attached as far as the pool has free ones), and again when a
 * session whose cache was evicted gets its next turn (fs_kvstate_reload:
 * the engine attaches the pages before the prefill, evicting idle sessions
 * if it must).  A file that is torn (a hash does not match, short),
 * foreign (another model file, KV type, backend or geometry) or unreadable
 * is ignored with a log line: the session is prefilled from its history on
 * first use, as without page files.  Only the prefix where the file's
 * tokens equal the restored history is used.
 */
#define _GNU_SOURCE /* asprintf */
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

#define KV_MAGIC "PFSKV001"

struct kv_header {
	char magic[8];
	struct eng_kv_id id;
	uint32_t n_tokens, n_pages;
	uint64_t tokens_hash, pages_hash;
	uint64_t header_hash; /* of every byte above */
};

struct kv_job {
	uint64_t ino, jid;    /* jid set: delete that file */
	struct kv_job *next;
};

struct fs_kvstate {
	char *dir;
	struct eng_kv_id id;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct kv_job *head, *tail; /* protected by lock */
	bool stop;                  /* protected by lock */
	uint64_t n_saved, n_loaded, n_ignored; /* protected by lock */
};

static char *kv_path(const struct fs_kvstate *k, uint64_t jid, const char *suffix)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%016" PRIx64 ".kv%s", k->dir, jid, suffix) < 0)
		return NULL;
	return p;
}

static uint64_t header_hash(const struct kv_header *h)
{
	return eng_hash64(0, h, offsetof(struct kv_header, header_hash));
}

// ---- saving (the kvstate thread)

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_file(struct fs_kvstate *k, uint64_t jid, const struct eng_kv_image *img)
{
	struct kv_header h;
	char *tmp = kv_path(k, jid, ".tmp"), *final = kv_path(k, jid, "");
	size_t pb = (size_t)img->n_pages * img->page_bytes;
	int fd = -1, rc;

	if (!tmp || !final) {
		rc = -ENOMEM;
		goto out;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, KV_MAGIC, 8);
	h.id = k->id;
	h.n_tokens = (uint32_t)img->n_tokens;
	h.n_pages = (uint32_t)img->n_pages;
	h.tokens_hash = eng_hash64(0, img->tokens, sizeof(*img->tokens) * (size_t)img->n_tokens);
	h.pages_hash = eng_hash64(0, img->pages, pb);
	h.header_hash = header_hash(&h);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = write_all(fd, &h, sizeof(h));
	if (rc == 0)
		rc = write_all(fd, img->tokens, sizeof(*img->tokens) * (size_t)img->n_tokens);
	if (rc == 0)
		rc = write_all(fd, img->pages, pb);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, final) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
out:
	if (rc < 0)
		LOG_ERR("KV page file %s: %s", final ? final : "?", strerror(-rc));
	free(tmp);
	free(final);
	return rc;
}

/* Saves one session's cache if it changed since the last save. */
static void save_one(struct fs *fs, struct fs_kvstate *k, uint64_t ino)
{
	struct eng_kv_image img;
	struct eng_session *s = NULL;
	struct fs_node *n;
	uint64_t jid = 0, sig, saved = 0;
	char *path;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	n = fs_node_find(fs, ino);
	if (n && n->linked && n->sess && n->jid) {
		s = n->sess;
		jid = n->jid;
		saved = n->kv_saved_sig;
		rc = eng_session_kv_export(s, &img); /* takes the engine lock briefly */
	}
	pthread_mutex_unlock(&fs->lock);
	if (!s || rc < 0)
		return; /* gone, or busy: its next idle posts again */
	sig = eng_hash64((uint64_t)img.n_tokens + 1, img.tokens, sizeof(*img.tokens) * (size_t)img.n_tokens);
	if (sig != saved) {
		if (img.n_tokens == 0) { /* reset: nothing worth keeping */
			path = kv_path(k, jid, "");
			if (path && unlink(path) == 0)
				LOG_DEBUG("KV page file %s removed (no cache)", path);
			free(path);
			rc = 0;
		} else if ((rc = eng_kv_image_read(&img)) == 0) {
			rc = write_file(k, jid, &img);
		}
		if (rc == 0) {
			pthread_mutex_lock(&fs->lock);
			n = fs_node_find(fs, ino);
			if (n && n->jid == jid)
				n->kv_saved_sig = sig;
			pthread_mutex_unlock(&fs->lock);
			pthread_mutex_lock(&k->lock);
			k->n_saved += img.n_tokens > 0;
			pthread_mutex_unlock(&k->lock);
		}
	}
	eng_kv_image_free(&img);
}

static void *kv_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_kvstate *k = fs->kv;

	for (;;) {
		struct kv_job *j;

		pthread_mutex_lock(&k->lock);
		while (!k->head && !k->stop)
			pthread_cond_wait(&k->cond, &k->lock);
		j = k->head;
		if (j) {
			k->head = j->next;
			if (!k->head)
				k->tail = NULL;
		}
		pthread_mutex_unlock(&k->lock);
		if (!j)
			break; /* stopped and drained */
		if (j->jid) {
			char *path = kv_path(k, j->jid, "");

			if (path && unlink(path) < 0 && errno != ENOENT)
				LOG_ERR("KV page file %s: %s", path, strerror(errno));
			free(path);
		} else {
			save_one(fs, k, j->ino);
		}
		free(j);
	}
	return NULL;
}

static void post(struct fs *fs, uint64_t ino, uint64_t jid)
{
	struct fs_kvstate *k = fs->kv;
	struct kv_job *j;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	if (!jid) /* one pending save per session is enough */
		for (j = k->head; j; j = j->next)
			if (!j->jid && j->ino == ino) {
				pthread_mutex_unlock(&k->lock);
				return;
			}
	pthread_mutex_unlock(&k->lock);
	j = calloc(1, sizeof(*j));
	if (!j) {
		LOG_ERR("out of memory: KV page file job for inode %llu lost", (unsigned long long)ino);
		return;
	}
	j->ino = ino;
	j->jid = jid;
	pthread_mutex_lock(&k->lock);
	if (k->tail)
		k->tail->next = j;
	else
		k->head = j;
	k->tail = j;
	pthread_cond_signal(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

void fs_kvstate_post(struct fs *fs, uint64_t ino)
{
	post(fs, ino, 0);
}

void fs_kvstate_delete(struct fs *fs, uint64_t jid)
{
	if (jid)
		post(fs, 0, jid);
}

// ---- loading (at restore, before the engine runs; fs->lock held)

static int read_exact(int fd, void *p, size_t n)
{
	char *c = p;

	while (n) {
		ssize_t r = read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Why a header cannot be used, or NULL. */
static const char *header_problem(const struct fs_kvstate *k, const struct kv_header *h, off_t size)
{
	const struct eng_kv_id *a = &h->id, *b = &k->id;

	if (memcmp(h->magic, KV_MAGIC, 8))
		return "not a promptfs KV page file";
	if (h->header_hash != header_hash(h))
		return "header damaged";
	if (a->file_size != b->file_size || a->header_hash != b->header_hash)
		return "saved for another model file";
	if (strncmp(a->kv_type, b->kv_type, sizeof(a->kv_type)) ||
	    strncmp(a->backend, b->backend, sizeof(a->backend)))
		return "saved with another KV type or backend";
	if (a->n_layer != b->n_layer || a->n_head_kv != b->n_head_kv || a->head_dim != b->head_dim ||
	    a->page_tokens != b->page_tokens || a->page_bytes != b->page_bytes)
		return "saved with another KV geometry";
	if ((uint64_t)h->n_pages * a->page_tokens < h->n_tokens ||
	    (uint64_t)h->n_pages > ((uint64_t)h->n_tokens + a->page_tokens - 1) / a->page_tokens ||
	    (uint64_t)size != sizeof(*h) + 4ull * h->n_tokens + (uint64_t)h->n_pages * a->page_bytes)
		return "torn (size does not match its header)";
	return NULL;
}

static int load_image(struct fs_kvstate *k, const char *path, struct eng_kv_image *img, const char **why)
{
	struct kv_header h;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	memset(img, 0, sizeof(*img));
	*why = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || (rc = read_exact(fd, &h, sizeof(h))) < 0) {
		*why = "unreadable or shorter than its header";
		rc = -EIO;
		goto out;
	}
	if ((*why = header_problem(k, &h, st.st_size))) {
		rc = -EINVAL;
		goto out;
	}
	img->n_tokens = (int)h.n_tokens;
	img->n_pages = (int)h.n_pages;
	img->page_bytes = h.id.page_bytes;
	img->tokens = malloc(4 * (size_t)h.n_tokens + 4);
	img->pages = malloc((size_t)h.n_pages * h.id.page_bytes + 1);
	if (!img->tokens || !img->pages) {
		*why = "out of memory";
		rc = -ENOMEM;
		goto out;
	}
	rc = read_exact(fd, img->tokens, 4 * (size_t)h.n_tokens);
	if (rc == 0)
		rc = read_exact(fd, img->pages, (size_t)h.n_pages * h.id.page_bytes);
	if (rc < 0)
		*why = "unreadable";
	else if (eng_hash64(0, img->tokens, 4 * (size_t)h.n_tokens) != h.tokens_hash ||
		 eng_hash64(0, img->pages, (size_t)h.n_pages * h.id.page_bytes) != h.pages_hash) {
		*why = "torn or damaged (content hash does not match)";
		rc = -EINVAL;
	}
out:
	close(fd);
	if (rc < 0)
		eng_kv_image_free(img);
	return rc;
}

void fs_kvstate_restore(struct fs *fs, struct fs_node *n)
{
	struct fs_kvstate *k = fs->kv;
	struct eng_kv_image img;
	struct eng_session_info info;
	const char *why = NULL;
	char *path;
	int rc;

	if (!k || !n->sess || !n->jid || !(path = kv_path(k, n->jid, "")))
		return;
	rc = load_image(k, path, &img, &why);
	if (rc == -ENOENT) {
		free(path);
		return;
	}
	if (rc == 0) {
		rc = eng_session_kv_import(n->sess, &img);
		if (rc >= 0) {
			n->kv_saved_sig = eng_hash64((uint64_t)img.n_tokens + 1, img.tokens,
						     sizeof(*img.tokens) * (size_t)img.n_tokens);
			eng_session_info(n->sess, &info);
			LOG_INFO("session '%s': %d of %d history tokens cached from %s", n->name, rc,
				 info.n_past, path);
		} else {
			why = "does not fit this session";
		}
		eng_kv_image_free(&img);
	}
	pthread_mutex_lock(&k->lock);
	if (rc >= 0)
		k->n_loaded++;
	else
		k->n_ignored++;
	pthread_mutex_unlock(&k->lock);
	if (rc < 0)
		LOG_WARN("session '%s': KV page file %s ignored (%s); its history is prefilled on first use",
			 n->name, path, why ? why : strerror(-rc));
	free(path);
}

/* Before a turn of a session whose cache was evicted (fs->lock held; it is
 * dropped while the file is read): its page file, if it is the one last
 * saved, is offered to the engine, which attaches it before the prefill. */
void fs_kvstate_reload(struct fs *fs, struct fs_node *n)
{
	struct fs_kvstate *k = fs->kv;
	struct eng_session_info info;
	struct eng_kv_image img;
	uint64_t sig, jid = n->jid;
	const char *why;
	char *path;
	int rc;

	if (!k || !n->sess || !jid || !n->kv_saved_sig)
		return;
	eng_session_info(n->sess, &info);
	if (info.n_cached > 0 || info.n_past == 0 || info.state == ENG_STATE_QUEUED ||
	    info.state == ENG_STATE_PREFILL || info.state == ENG_STATE_GENERATING)
		return;
	sig = n->kv_saved_sig;
	if (!(path = kv_path(k, jid, "")))
		return;
	pthread_mutex_unlock(&fs->lock);
	rc = load_image(k, path, &img, &why);
	pthread_mutex_lock(&fs->lock);
	if (rc == 0 && eng_hash64((uint64_t)img.n_tokens + 1, img.tokens,
				  sizeof(*img.tokens) * (size_t)img.n_tokens) != sig)
		rc = -ESTALE, why = "older than the last save";
	if (rc == 0 && n->sess && n->jid == jid) {
		LOG_INFO("session '%s': evicted KV cache offered back from %s (%d tokens)", n->name, path,
			 img.n_tokens);
		eng_session_kv_offer(n->sess, &img);
		pthread_mutex_lock(&k->lock);
		k->n_loaded++;
		pthread_mutex_unlock(&k->lock);
	} else if (rc < 0 && rc != -ENOENT) {
		LOG_WARN("session '%s': KV page file %s not used (%s); the history is prefilled", n->name, path,
			 why ? why : strerror(-rc));
	}
	eng_kv_image_free(&img);
	free(path);
}

// ---- open and close

int fs_kvstate_open(struct fs *fs, const char *dir)
{
	struct fs_kvstate *k = calloc(1, sizeof(*k));
	sigset_t block, old;
	int rc;

	if (!k || !(k->dir = strdup(dir))) {
		free(k);
		return -ENOMEM;
	}
	rc = eng_model_kv_id(fs->model, &k->id);
	if (rc < 0)
		goto out_free;
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
	fs->kv = k;
	sigfillset(&block);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = -pthread_create(&k->thread, NULL, kv_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		fs->kv = NULL;
		pthread_mutex_destroy(&k->lock);
		pthread_cond_destroy(&k->cond);
		goto out_free;
	}
	k->started = true;
	return 0;
out_free:
	free(k->dir);
	free(k);
	return rc;
}

void fs_kvstate_stats(struct fs *fs, uint64_t *saved, uint64_t *loaded, uint64_t *ignored)
{
	struct fs_kvstate *k = fs->kv;

	*saved = *loaded = *ignored = 0;
	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	*saved = k->n_saved;
	*loaded = k->n_loaded;
	*ignored = k->n_ignored;
	pthread_mutex_unlock(&k->lock);
}

void fs_kvstate_close(struct fs *fs)
{
	struct fs_kvstate *k = fs->kv;

	if (!k)
		return;
	pthread_mutex_lock(&fs->lock);
	for (struct fs_node *n = fs->nodes; n; n = n->next)
		if (n->linked)
			fs_kvstate_post(fs, n->ino); /* unchanged ones are skipped */
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_lock(&k->lock);
	k->stop = true;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	if (k->started)
		pthread_join(k->thread, NULL);
	fs->kv = NULL;
	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->cond);
	free(k->dir);
	free(k);
}
