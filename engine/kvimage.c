/*
 * kvimage.c — a session's KV cache as host bytes, for the page files of the
 * state directory (fs/kvstate.c): export the cached prefix (its tokens and
 * the pages holding them) and import it into a restored session, plus the
 * identity a page file is tied to (model file size, a hash of its header,
 * KV type, backend, page geometry).
 *
 * Export takes a reference on the pages under m->lock and copies them out
 * without it: a shared page is never written (step.c copies it first), so
 * the bytes cannot change while they are read, and the engine thread does
 * not wait for the copy.
 */
#include "engine_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../gguf/log.h"

/* FNV-1a over 64-bit words (then the tail bytes): fast enough for pages. */
uint64_t eng_hash64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i = 0;

	if (!h)
		h = 0xcbf29ce484222325ull;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
	}
	for (; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

int eng_model_kv_id(const struct eng_model *m, struct eng_kv_id *id)
{
	size_t n = gguf_data_offset(m->g), off = 0;
	char *buf = malloc(1 << 20);
	int fd = open(m->path, O_RDONLY | O_CLOEXEC), rc = 0;
	uint64_t h = 0;

	memset(id, 0, sizeof(*id));
	if (fd < 0 || !buf) {
		rc = fd < 0 ? -errno : -ENOMEM;
		LOG_ERR("model identity: cannot read %s: %s", m->path, strerror(-rc));
		goto out;
	}
	while (off < n) {
		ssize_t r = pread(fd, buf, n - off < (1 << 20) ? n - off : (1 << 20), (off_t)off);

		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			LOG_ERR("model identity: %s: short read at %zu", m->path, off);
			goto out;
		}
		h = eng_hash64(h, buf, (size_t)r);
		off += (size_t)r;
	}
	id->file_size = gguf_file_size(m->g);
	id->header_hash = h;
	snprintf(id->kv_type, sizeof(id->kv_type), "f16");
	snprintf(id->backend, sizeof(id->backend), "%s", m->ops->name);
	id->n_layer = (uint32_t)m->cfg.n_layer;
	id->n_head_kv = (uint32_t)m->cfg.n_head_kv;
	id->head_dim = (uint32_t)m->cfg.head_dim;
	id->page_tokens = ENG_KV_PAGE;
	id->page_bytes = m->page_bytes;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

/* Lock held: lets go of the pages (and window parts) an export holds. */
static void release_pages(struct eng_kv_image *img)
{
	for (int i = 0; i < img->n_pages; i++) {
		if (img->wpage_ids[i] >= 0)
			eng_window_release_locked(img->m, img->page_ids[i]);
		eng_page_release_locked(img->m, img->page_ids[i]);
	}
}

void eng_kv_image_free(struct eng_kv_image *img)
{
	if (img->page_ids) { /* taken, never read */
		pthread_mutex_lock(&img->m->lock);
		release_pages(img);
		pthread_mutex_unlock(&img->m->lock);
	}
	free(img->page_ids);
	free(img->wpage_ids);
	free(img->tokens);
	free(img->pages);
	memset(img, 0, sizeof(*img));
}

int eng_session_kv_export(struct eng_session *s, struct eng_kv_image *img)
{
	struct eng_model *m = s->m;
	int np, n, rc = 0;

	memset(img, 0, sizeof(*img));
	pthread_mutex_lock(&m->lock);
	if (s->cur >= 0 || eng_session_has_work_locked(s) || s->in_batch) {
		rc = -EBUSY;
		goto out_unlock;
	}
	eng_window_ready_locked(m, s); /* its window parts, or no cache to save */
	n = s->n_cached;
	np = (n + ENG_KV_PAGE - 1) / ENG_KV_PAGE;
	img->tokens = malloc(sizeof(*img->tokens) * (size_t)(n + 1));
	img->page_ids = malloc(sizeof(*img->page_ids) * (size_t)(np + 1));
	img->wpage_ids = malloc(sizeof(*img->wpage_ids) * (size_t)(np + 1));
	if (!img->tokens || !img->page_ids || !img->wpage_ids) {
		free(img->tokens);
		free(img->page_ids);
		free(img->wpage_ids);
		img->tokens = NULL;
		img->page_ids = NULL;
		img->wpage_ids = NULL;
		rc = -ENOMEM;
		goto out_unlock;
	}
	memcpy(img->tokens, s->tokens, sizeof(*img->tokens) * (size_t)n);
	for (int i = 0; i < np; i++) {
		img->page_ids[i] = s->pages[i];
		eng_page_retain_locked(m, s->pages[i]); /* read-only from here: shared */
		img->wpage_ids[i] = -1;
		if (s->wheld[i] && eng_window_retain_locked(m, s->pages[i]))
			img->wpage_ids[i] = eng_window_page_locked(m, s->pages[i]);
	}
	img->m = m;
	img->n_tokens = n;
	img->n_pages = np;
	img->page_bytes = m->page_bytes;
out_unlock:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int eng_kv_image_read(struct eng_kv_image *img)
{
	struct eng_model *m = img->m;
	int rc = 0;

	if (!img->page_ids)
		return 0;
	img->pages = malloc(m->page_bytes * (size_t)img->n_pages + 1);
	if (!img->pages)
		rc = -ENOMEM;
	for (int i = 0; rc == 0 && i < img->n_pages; i++)
		rc = m->ops->kv_page_read(m->be, img->page_ids[i], img->wpage_ids[i],
		                          img->pages + (size_t)i * m->page_bytes);
	pthread_mutex_lock(&m->lock);
	release_pages(img);
	pthread_mutex_unlock(&m->lock);
	free(img->page_ids);
	free(img->wpage_ids);
	img->page_ids = NULL;
	img->wpage_ids = NULL;
	return rc;
}

/* Lock held, s holds no pages: the image's pages holding its first
 * `common` tokens into s's table, as far as the pool has room (make_room:
 * evicts idle sessions for it; NULL: only free pages).  The window parts
 * (sliding-window layers) are in the image for the pages an image of
 * n_tokens needs, so a cache cut shorter than that would need window parts
 * the image does not have: then nothing is attached.  Returns 0 or the
 * backend's -errno; s->n_cached says what was attached. */
static int attach(struct eng_session *s, const struct eng_kv_image *img, int common,
                  int (*make_room)(struct eng_model *))
{
	struct eng_model *m = s->m;
	int np = (common + ENG_KV_PAGE - 1) / ENG_KV_PAGE, wlo = eng_window_first(m, img->n_tokens), got, rc = 0;

	if (eng_window_first(m, common) < wlo)
		return 0;
	for (got = 0; got < np; got++) {
		bool win = m->n_wpages && got >= wlo;
		int p;

		if (make_room && (rc = make_room(m)) < 0) {
			rc = 0;
			break;
		}
		if (m->n_free == 0 || (win && eng_window_n_free(m) == 0))
			break; /* the pool is full: the rest is prefilled when used */
		s->pages[got] = p = eng_page_alloc_locked(m);
		s->wheld[got] = false;
		if (win)
			eng_window_give_locked(m, s, got);
		rc = m->ops->kv_page_write(m->be, p, win ? eng_window_page_locked(m, p) : -1,
		                           img->pages + (size_t)got * m->page_bytes);
		if (rc < 0) {
			eng_window_drop_locked(m, s, got);
			eng_page_release_locked(m, p);
			break;
		}
	}
	s->n_pages = got;
	s->n_cached = got * ENG_KV_PAGE < common ? got * ENG_KV_PAGE : common;
	eng_window_ready_locked(m, s); /* a cut shorter than the window: rebuilt */
	return rc;
}

int eng_session_kv_import(struct eng_session *s, const struct eng_kv_image *img)
{
	struct eng_model *m = s->m;
	int common = 0, rc = 0;

	if (img->page_bytes != m->page_bytes || img->n_pages * ENG_KV_PAGE < img->n_tokens)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	if (s->cur >= 0 || s->in_batch || s->n_cached > 0) {
		rc = -EBUSY;
		goto out;
	}
	while (common < img->n_tokens && common < s->n_past && s->tokens[common] == img->tokens[common])
		common++;
	rc = attach(s, img, common, NULL);
	rc = rc < 0 ? rc : s->n_cached;
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void eng_session_kv_offer(struct eng_session *s, struct eng_kv_image *img)
{
	struct eng_kv_image *o = malloc(sizeof(*o)), *old;

	if (!o) {
		eng_kv_image_free(img);
		return;
	}
	*o = *img;
	memset(img, 0, sizeof(*img));
	pthread_mutex_lock(&s->m->lock);
	old = s->offer;
	s->offer = o;
	pthread_mutex_unlock(&s->m->lock);
	if (old) {
		eng_kv_image_free(old);
		free(old);
	}
}

void eng_kv_offer_attach_locked(struct eng_session *s, int (*make_room)(struct eng_model *))
{
	struct eng_model *m = s->m;
	struct eng_kv_image *img = s->offer;
	int common = 0;

	s->offer = NULL;
	if (!img->pages || img->page_bytes != m->page_bytes || s->n_cached > 0 || s->n_pages > 0)
		goto out;
	while (common < img->n_tokens && common < s->n_past - 1 && s->tokens[common] == img->tokens[common])
		common++;
	attach(s, img, common, make_room);
	LOG_DEBUG("saved KV cache attached: %d of %d history tokens", s->n_cached, s->n_past);
out:
	eng_kv_image_free(img);
	free(img);
}

