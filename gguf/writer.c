/*
 * writer.c — writes GGUF v3 (or v2) files for tools and tests: the synthetic
 * model generator, round-trip tests, handcrafted fixtures.
 *
 * Metadata is kept serialized: each key holds the exact bytes it will have
 * in the file (key string, vtype, value), in insertion order; setting an
 * existing key replaces its bytes in place.  Tensors keep name, type, shape
 * and their data offset, assigned at add time (each offset aligned to
 * general.alignment, default 32).
 *
 * Two ways out:
 *  - gguf_writer_write(): every tensor's data was given (copied) at add time
 *    or through gguf_writer_set_tensor_data();
 *  - streaming: gguf_writer_stream_begin() writes header and tables, then
 *    gguf_writer_stream_tensor() takes the tensors' bytes in add order —
 *    a tensor may arrive in several calls (chunks), each tensor is padded to
 *    the alignment once complete — and gguf_writer_stream_end() checks that
 *    every byte came and closes the file.
 *    Instead of a tensor's bytes, gguf_writer_stream_skip() leaves a hole
 *    (it reads as zeros and takes no disk): a layout file for tools that
 *    read only the tables.
 * Errors: -errno and a LOG_ERR line naming the key, tensor or path.
 */
#include "gguf.h"
#include "gguf_internal.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- byte buffer

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static int buf_put(struct buf *b, const void *src, size_t n)
{
	if (n == 0)
		return 0;
	if (b->cap - b->n < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->n < n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
	return 0;
}

static int buf_u32(struct buf *b, uint32_t v) { return buf_put(b, &v, 4); }
static int buf_u64(struct buf *b, uint64_t v) { return buf_put(b, &v, 8); }

static int buf_str(struct buf *b, const char *s, size_t len)
{
	int err = buf_u64(b, len);
	return err ? err : buf_put(b, s, len);
}

/* Keys and tensor names: the reader refuses control bytes in them. */
static bool name_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

// ---- the writer

struct wkv {
	char *key;
	struct buf bytes; /* key string + vtype + value, as in the file */
};

struct wtensor {
	char *name;
	enum gguf_dtype type;
	int n_dims;
	int64_t ne[GGUF_MAX_DIMS];
	uint64_t offset; /* in the data section */
	size_t nbytes;
	void *data;      /* owned copy, or NULL */
};

struct gguf_writer {
	uint32_t version;
	size_t alignment;
	bool bad_alignment;
	struct wkv *kv;
	size_t n_kv, cap_kv;
	struct wtensor *t;
	size_t n_t, cap_t;
	/* streaming state */
	FILE *f;
	char *path;
	bool skipped;    /* a tensor was skipped (gguf_writer_stream_skip) */
	size_t cur;      /* tensor being streamed */
	size_t cur_done; /* its bytes written so far */
	int stream_err;
};

struct gguf_writer *gguf_writer_init(void)
{
	struct gguf_writer *w = calloc(1, sizeof(*w));

	if (w) {
		w->version = 3;
		w->alignment = GGUF_DEFAULT_ALIGNMENT;
	}
	return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].bytes.p);
	}
	for (size_t i = 0; i < w->n_t; i++) {
		free(w->t[i].name);
		free(w->t[i].data);
	}
	free(w->kv);
	free(w->t);
	if (w->f)
		fclose(w->f);
	free(w->path);
	free(w);
}

void gguf_writer_set_version(struct gguf_writer *w, uint32_t version) { w->version = version; }

static uint64_t align_up(uint64_t x, size_t a) { return (x + a - 1) / a * a; }

/* Recomputes every tensor offset (the alignment may change after adds). */
static void layout_tensors(struct gguf_writer *w)
{
	uint64_t off = 0;

	for (size_t i = 0; i < w->n_t; i++) {
		w->t[i].offset = off;
		off = align_up(off + w->t[i].nbytes, w->alignment);
	}
}

// ---- metadata

/* The slot for key (existing: emptied for new bytes; else appended). */
static struct wkv *kv_slot(struct gguf_writer *w, const char *key)
{
	for (size_t i = 0; i < w->n_kv; i++) {
		if (!strcmp(w->kv[i].key, key)) {
			w->kv[i].bytes.n = 0;
			return &w->kv[i];
		}
	}
	if (w->n_kv == w->cap_kv) {
		size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
		struct wkv *kv = realloc(w->kv, cap * sizeof(*kv));
		if (!kv)
			return NULL;
		w->kv = kv;
		w->cap_kv = cap;
	}
	struct wkv *s = &w->kv[w->n_kv];
	memset(s, 0, sizeof(*s));
	s->key = strdup(key);
	if (!s->key)
		return NULL;
	w->n_kv++;
	return s;
}

/* Starts key's bytes: key string and vtype; the caller appends the value. */
static int kv_begin(struct gguf_writer *w, const char *key, enum gguf_vtype t, struct buf **out)
{
	if (!key || !key[0] || !name_ok(key)) {
		LOG_ERR("empty key or key with control bytes");
		return -EINVAL;
	}
	struct wkv *s = kv_slot(w, key);
	if (!s)
		return -ENOMEM;
	*out = &s->bytes;
	int err = buf_str(&s->bytes, key, strlen(key));
	return err ? err : buf_u32(&s->bytes, (uint32_t)t);
}

void gguf_writer_set_alignment(struct gguf_writer *w, size_t align)
{
	if (align == 0 || (align & (align - 1)) || align > UINT32_MAX) {
		LOG_ERR("alignment %zu is not a power of two below 2^32", align);
		w->bad_alignment = true; /* reported again by write */
		return;
	}
	w->alignment = align;
	w->bad_alignment = false;
	layout_tensors(w);
	if (gguf_writer_set_u32(w, "general.alignment", (uint32_t)align))
		w->bad_alignment = true;
}

int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype t, const void *v)
{
	size_t es = gguf_vtype_size(t);
	struct buf *b;
	int err;

	if (!es) {
		LOG_ERR("key '%s': vtype %d is not a scalar type", key, (int)t);
		return -EINVAL;
	}
	if ((err = kv_begin(w, key, t, &b)))
		return err;
	return buf_put(b, v, es);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	return gguf_writer_set_scalar(w, key, GGUF_VTYPE_UINT32, &v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	return gguf_writer_set_scalar(w, key, GGUF_VTYPE_INT32, &v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	return gguf_writer_set_scalar(w, key, GGUF_VTYPE_UINT64, &v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
	return gguf_writer_set_scalar(w, key, GGUF_VTYPE_FLOAT32, &v);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
	uint8_t b = v ? 1 : 0;
	return gguf_writer_set_scalar(w, key, GGUF_VTYPE_BOOL, &b);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
	struct buf *b;
	int err = kv_begin(w, key, GGUF_VTYPE_STRING, &b);
	return err ? err : buf_str(b, v, strlen(v));
}

int gguf_writer_set_arr_data(struct gguf_writer *w, const char *key, enum gguf_vtype t,
			     const void *data, uint64_t n)
{
	size_t es = gguf_vtype_size(t);
	struct buf *b;
	int err;

	if (!es || n > SIZE_MAX / es) {
		LOG_ERR("key '%s': array of vtype %d × %llu is not a numeric array", key, (int)t,
			(unsigned long long)n);
		return -EINVAL;
	}
	if ((err = kv_begin(w, key, GGUF_VTYPE_ARRAY, &b)) || (err = buf_u32(b, (uint32_t)t)) ||
	    (err = buf_u64(b, n)))
		return err;
	return buf_put(b, data, (size_t)n * es);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs, uint64_t n)
{
	struct buf *b;
	int err;

	if ((err = kv_begin(w, key, GGUF_VTYPE_ARRAY, &b)) || (err = buf_u32(b, GGUF_VTYPE_STRING)) ||
	    (err = buf_u64(b, n)))
		return err;
	for (uint64_t i = 0; i < n && !err; i++)
		err = buf_str(b, strs[i], strlen(strs[i]));
	return err;
}

/* Serializes a parsed value (any vtype, nested arrays included). */
static int put_val(struct buf *b, const struct gguf_val *v)
{
	size_t es;
	int err = 0;

	if (v->type == GGUF_VTYPE_STRING)
		return buf_str(b, v->u.str, (size_t)v->n);
	if (v->type != GGUF_VTYPE_ARRAY)
		return buf_put(b, v->u.raw, gguf_vtype_size(v->type));
	if ((err = buf_u32(b, v->arr_type)) || (err = buf_u64(b, v->n)))
		return err;
	es = gguf_vtype_size(v->arr_type);
	if (es)
		return buf_put(b, v->u.data, (size_t)v->n * es);
	for (uint64_t i = 0; i < v->n && !err; i++)
		err = put_val(b, &v->u.elems[i]);
	return err;
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_ctx *src,
			bool (*skip)(const char *key, void *user), void *user)
{
	for (int64_t i = 0; i < gguf_n_kv(src); i++) {
		const char *key = gguf_kv_key(src, i);
		const struct gguf_val *v = gguf_kv_val(src, i);
		struct buf *b;
		int err;

		if (!strcmp(key, "general.alignment") || (skip && skip(key, user)))
			continue;
		if ((err = kv_begin(w, key, (enum gguf_vtype)v->type, &b)) || (err = put_val(b, v)))
			return err;
	}
	return 0;
}

// ---- tensors

static struct wtensor *find_tensor(struct gguf_writer *w, const char *name)
{
	for (size_t i = 0; i < w->n_t; i++)
		if (!strcmp(w->t[i].name, name))
			return &w->t[i];
	return NULL;
}

/* Shape and type checks the reader would apply; fills nbytes. */
static int check_tensor(const char *name, enum gguf_dtype type, int n_dims, const int64_t *ne,
			size_t *nbytes)
{
	const struct gguf_type_traits *tr = gguf_type_traits((int)type);
	size_t len = name ? strlen(name) : 0;
	uint64_t rows = 1;

	if (len == 0 || len > GGUF_MAX_NAME || !name_ok(name)) {
		LOG_ERR("tensor name of %zu bytes is empty, longer than %d bytes or holds control bytes",
			len, GGUF_MAX_NAME);
		return -EINVAL;
	}
	if (!tr || !tr->is_weight || n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
		LOG_ERR("tensor '%s': type %s with %d dims is not writable", name,
			gguf_dtype_name((int)type), n_dims);
		return -EINVAL;
	}
	for (int d = 0; d < n_dims; d++) {
		if (ne[d] < 1 || (d > 0 && __builtin_mul_overflow(rows, (uint64_t)ne[d], &rows))) {
			LOG_ERR("tensor '%s': ne[%d] = %lld out of range", name, d, (long long)ne[d]);
			return -EINVAL;
		}
	}
	if (ne[0] % tr->blck_size ||
	    __builtin_mul_overflow(gguf_row_size(type, ne[0]), rows, nbytes)) {
		LOG_ERR("tensor '%s': ne[0] = %lld is not a multiple of the %s block size %lld (or size overflows)",
			name, (long long)ne[0], tr->name, (long long)tr->blck_size);
		return -EINVAL;
	}
	return 0;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum gguf_dtype type,
			   int n_dims, const int64_t *ne, const void *data)
{
	size_t nbytes;
	int err = check_tensor(name, type, n_dims, ne, &nbytes);

	if (err)
		return err;
	if (find_tensor(w, name)) {
		LOG_ERR("duplicate tensor name '%s'", name);
		return -EINVAL;
	}
	if (w->n_t == w->cap_t) {
		size_t cap = w->cap_t ? w->cap_t * 2 : 64;
		struct wtensor *t = realloc(w->t, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		w->t = t;
		w->cap_t = cap;
	}
	struct wtensor *t = &w->t[w->n_t];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name)
		return -ENOMEM;
	t->type = type;
	t->n_dims = n_dims;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = d < n_dims ? ne[d] : 1;
	t->nbytes = nbytes;
	w->n_t++;
	layout_tensors(w);
	return data ? gguf_writer_set_tensor_data(w, name, data) : 0;
}

int gguf_writer_set_tensor_data(struct gguf_writer *w, const char *name, const void *data)
{
	struct wtensor *t = find_tensor(w, name);

	if (!t) {
		LOG_ERR("no tensor '%s'", name);
		return -ENOENT;
	}
	void *copy = malloc(t->nbytes ? t->nbytes : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, t->nbytes);
	free(t->data);
	t->data = copy;
	return 0;
}

// ---- output

static int serialize_header(const struct gguf_writer *w, struct buf *b)
{
	int err;

	if ((err = buf_u32(b, GGUF_MAGIC)) || (err = buf_u32(b, w->version)) ||
	    (err = buf_u64(b, w->n_t)) || (err = buf_u64(b, w->n_kv)))
		return err;
	for (size_t i = 0; i < w->n_kv; i++)
		if ((err = buf_put(b, w->kv[i].bytes.p, w->kv[i].bytes.n)))
			return err;
	for (size_t i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		if ((err = buf_str(b, t->name, strlen(t->name))) || (err = buf_u32(b, (uint32_t)t->n_dims)))
			return err;
		for (int d = 0; d < t->n_dims; d++)
			if ((err = buf_u64(b, (uint64_t)t->ne[d])))
				return err;
		if ((err = buf_u32(b, (uint32_t)t->type)) || (err = buf_u64(b, t->offset)))
			return err;
	}
	static const uint8_t zeros[64];
	while (b->n % w->alignment && !err)
		err = buf_put(b, zeros, w->alignment - b->n % w->alignment < sizeof(zeros) ?
				     w->alignment - b->n % w->alignment : sizeof(zeros));
	return err;
}

static int write_bytes(struct gguf_writer *w, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, w->f) != n) {
		int err = errno ? -errno : -EIO;
		LOG_ERR("write to %s failed: %s", w->path, strerror(-err));
		return err;
	}
	return 0;
}

static int write_padding(struct gguf_writer *w, size_t n)
{
	static const uint8_t zeros[256];
	int err = 0;

	while (n && !err) {
		size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
		err = write_bytes(w, zeros, k);
		n -= k;
	}
	return err;
}

int gguf_writer_stream_begin(struct gguf_writer *w, const char *path)
{
	struct buf b = { 0 };
	int err;

	if (w->bad_alignment) {
		LOG_ERR("%s: the writer's alignment is invalid", path);
		return -EINVAL;
	}
	if (w->f) {
		LOG_ERR("%s: a stream is already open (%s)", path, w->path);
		return -EBUSY;
	}
	layout_tensors(w);
	if ((err = serialize_header(w, &b)))
		goto out_buf;
	free(w->path);
	w->path = strdup(path);
	w->f = fopen(path, "wb");
	if (!w->path || !w->f) {
		err = w->path ? -errno : -ENOMEM;
		LOG_ERR("cannot create %s: %s", path, strerror(-err));
		goto out_buf;
	}
	w->cur = 0;
	w->cur_done = 0;
	w->skipped = false;
	w->stream_err = write_bytes(w, b.p, b.n);
	err = w->stream_err;
out_buf:
	free(b.p);
	return err;
}

int gguf_writer_stream_tensor(struct gguf_writer *w, const void *data, size_t nbytes)
{
	if (!w->f || w->stream_err)
		return w->stream_err ? w->stream_err : -EINVAL;
	while (nbytes) {
		if (w->cur >= w->n_t) {
			LOG_ERR("%s: %zu bytes beyond the last tensor", w->path, nbytes);
			return (w->stream_err = -EINVAL);
		}
		const struct wtensor *t = &w->t[w->cur];
		size_t k = t->nbytes - w->cur_done < nbytes ? t->nbytes - w->cur_done : nbytes;
		if ((w->stream_err = write_bytes(w, data, k)))
			return w->stream_err;
		data = (const uint8_t *)data + k;
		nbytes -= k;
		w->cur_done += k;
		if (w->cur_done == t->nbytes) {
			/* complete: pad to the alignment (after the last one too) */
			size_t pad = (size_t)(align_up(t->nbytes, w->alignment) - t->nbytes);
			if ((w->stream_err = write_padding(w, pad)))
				return w->stream_err;
			w->cur++;
			w->cur_done = 0;
		}
	}
	return 0;
}

int gguf_writer_stream_skip(struct gguf_writer *w)
{
	if (!w->f || w->stream_err)
		return w->stream_err ? w->stream_err : -EINVAL;
	if (w->cur >= w->n_t || w->cur_done != 0) {
		LOG_ERR("%s: skip at tensor %zu of %zu, %zu bytes into it", w->path, w->cur, w->n_t, w->cur_done);
		return (w->stream_err = -EINVAL);
	}
	if (fseeko(w->f, (off_t)align_up(w->t[w->cur].nbytes, w->alignment), SEEK_CUR) != 0) {
		w->stream_err = errno ? -errno : -EIO;
		LOG_ERR("%s: cannot seek past tensor '%s': %s", w->path, w->t[w->cur].name, strerror(-w->stream_err));
		return w->stream_err;
	}
	w->cur++;
	w->skipped = true;
	return 0;
}

int gguf_writer_stream_end(struct gguf_writer *w)
{
	int err = w->stream_err;

	if (!w->f)
		return -EINVAL;
	/* zero-byte tensors cannot exist (ne >= 1), so cur counts completed ones */
	if (!err && w->cur != w->n_t) {
		LOG_ERR("%s: stream ended at tensor %zu of %zu ('%s')", w->path, w->cur, w->n_t,
			w->t[w->cur].name);
		err = -EINVAL;
	}
	/* a skip at the end left the file short of its size: extend it (a hole) */
	if (!err && w->skipped && (fflush(w->f) != 0 || ftruncate(fileno(w->f), ftello(w->f)) != 0)) {
		err = errno ? -errno : -EIO;
		LOG_ERR("%s: cannot extend the file over the skipped tensors: %s", w->path, strerror(-err));
	}
	if (fclose(w->f) != 0 && !err) {
		err = -errno;
		LOG_ERR("closing %s failed: %s", w->path, strerror(errno));
	}
	w->f = NULL;
	w->stream_err = 0;
	return err;
}

int gguf_writer_write(struct gguf_writer *w, const char *path)
{
	int err;

	for (size_t i = 0; i < w->n_t; i++) {
		if (!w->t[i].data) {
			LOG_ERR("%s: tensor '%s' has no data", path, w->t[i].name);
			return -EINVAL;
		}
	}
	if ((err = gguf_writer_stream_begin(w, path)))
		return err;
	for (size_t i = 0; i < w->n_t && !err; i++)
		err = gguf_writer_stream_tensor(w, w->t[i].data, w->t[i].nbytes);
	int end = gguf_writer_stream_end(w);
	return err ? err : end;
}
