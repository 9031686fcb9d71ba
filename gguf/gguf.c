/*
 * gguf.c — the GGUF reader: maps a file, validates every byte of its header
 * before use, and serves typed metadata and tensor views.  The format and
 * the list of checks are in gguf.h's header comment.
 *
 * Design:
 *  - Every read goes through a cursor (struct rd) that checks the bytes left
 *    before copying; nothing is ever read in place from the header.
 *  - Counts are bounded by what the remaining bytes could hold before any
 *    allocation sized by them (n_kv, n_tensors, array lengths, strings).
 *  - Every refusal logs exactly one line naming the item (key or tensor
 *    name) and file offset, and returns -EINVAL.
 *  - Parsed strings and values live in an arena owned by the context;
 *    per-element handles of numeric arrays (gguf_val_arr_get) are built on
 *    first use, so a large u8 array costs its bytes, not 40 bytes each.
 *  - Keys and tensor names are kept in sorted index arrays: duplicates are
 *    found as equal neighbours, lookups are binary searches.
 *
 * Test: tests/test_gguf.c (round trips, corrupt files, truncation / byte-flip
 * loop); fuzz: tests/fuzz_gguf.c.
 */
#define _GNU_SOURCE /* qsort_r */
#include "gguf.h"
#include "gguf_internal.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define MAX_ARR_DEPTH 4       /* nesting of arrays inside arrays */
#define MIN_KV_BYTES 14       /* key len 8 + 1 byte + vtype 4 + smallest value 1 */
#define MIN_TENSOR_BYTES 33   /* name len 8 + 1 + n_dims 4 + ne 8 + dtype 4 + offset 8 */
#define ARENA_BLOCK (1u << 20)

/* The cursor.  `where` names the item being read for error lines. */
struct rd {
	const uint8_t *p;
	size_t size, pos;
	const char *src;
	char where[GGUF_MAX_NAME + 64];
	struct gguf_ctx *ctx;
};

#define PERR(r, fmt, ...) \
	pf_log(PF_LOG_LEVEL_ERROR, "gguf_open", "%s: %s" fmt, (r)->src, (r)->where, __VA_ARGS__)

/* Bytes of one scalar of value type t (gguf_internal.h). */
size_t gguf_vtype_size(uint32_t t)
{
	switch (t) {
	case GGUF_VTYPE_UINT8: case GGUF_VTYPE_INT8: case GGUF_VTYPE_BOOL: return 1;
	case GGUF_VTYPE_UINT16: case GGUF_VTYPE_INT16: return 2;
	case GGUF_VTYPE_UINT32: case GGUF_VTYPE_INT32: case GGUF_VTYPE_FLOAT32: return 4;
	case GGUF_VTYPE_UINT64: case GGUF_VTYPE_INT64: case GGUF_VTYPE_FLOAT64: return 8;
	default: return 0; /* string, array, invalid */
	}
}

/* Fewest file bytes one value of type t can take (for bounding counts). */
static size_t vtype_min_bytes(uint32_t t)
{
	if (t == GGUF_VTYPE_STRING)
		return 8;
	if (t == GGUF_VTYPE_ARRAY)
		return 12;
	return gguf_vtype_size(t);
}

// ---- arena

static void *arena_alloc(struct gguf_ctx *ctx, size_t n)
{
	struct arena_block *b = ctx->arena;

	n = (n + 15) & ~(size_t)15;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->used = 0;
		b->cap = cap;
		if (n > ARENA_BLOCK / 4 && ctx->arena) {
			/* big one-off block: keep the current block for small ones */
			b->next = ctx->arena->next;
			ctx->arena->next = b;
		} else {
			b->next = ctx->arena;
			ctx->arena = b;
		}
	}
	void *p = b->data + b->used;
	b->used += n;
	return p;
}

static void arena_free(struct arena_block *b)
{
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
}

// ---- cursor

static int rd_bytes(struct rd *r, void *dst, size_t n, const char *field)
{
	if (r->size - r->pos < n) {
		PERR(r, "truncated reading %s at offset %zu: need %zu bytes, %zu left",
		     field, r->pos, n, r->size - r->pos);
		return -EINVAL;
	}
	memcpy(dst, r->p + r->pos, n);
	r->pos += n;
	return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *field) { return rd_bytes(r, v, 4, field); }
static int rd_u64(struct rd *r, uint64_t *v, const char *field) { return rd_bytes(r, v, 8, field); }
static size_t rd_left(const struct rd *r) { return r->size - r->pos; }

/* Reads a gguf_string into a NUL-terminated arena copy.  max_len bounds
 * names (0: only the bytes left bound it); names (keys, tensor names) may
 * not hold control bytes: NUL cannot be looked up, newlines would split
 * the log lines that name them. */
static int rd_string(struct rd *r, const char *field, size_t max_len, bool is_name,
		     const char **out, uint64_t *out_len)
{
	uint64_t len;
	size_t at = r->pos;
	int err = rd_u64(r, &len, field);

	if (err)
		return err;
	if (len > rd_left(r)) {
		PERR(r, "%s length %llu at offset %zu exceeds the %zu bytes left",
		     field, (unsigned long long)len, at, rd_left(r));
		return -EINVAL;
	}
	if (is_name && (len == 0 || (max_len && len > max_len))) {
		PERR(r, "%s length %llu at offset %zu is out of range 1..%zu",
		     field, (unsigned long long)len, at, max_len ? max_len : rd_left(r));
		return -EINVAL;
	}
	for (size_t i = 0; is_name && i < len; i++) {
		uint8_t c = r->p[r->pos + i];
		if (c < 0x20 || c == 0x7f) { /* NUL or a byte that would break log lines */
			PERR(r, "%s at offset %zu contains control byte 0x%02x", field, at, c);
			return -EINVAL;
		}
	}
	char *s = arena_alloc(r->ctx, (size_t)len + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, r->p + r->pos, (size_t)len);
	s[len] = '\0';
	r->pos += (size_t)len;
	*out = s;
	if (out_len)
		*out_len = len;
	return 0;
}

// ---- metadata values

static int rd_value(struct rd *r, uint32_t type, int depth, struct gguf_val *v);

static int rd_array(struct rd *r, int depth, struct gguf_val *v)
{
	uint32_t et;
	uint64_t n;
	size_t at = r->pos;
	int err;

	if (depth >= MAX_ARR_DEPTH) {
		PERR(r, "arrays nested deeper than %d at offset %zu", MAX_ARR_DEPTH, at);
		return -EINVAL;
	}
	if ((err = rd_u32(r, &et, "array element type")) || (err = rd_u64(r, &n, "array length")))
		return err;
	if (et >= GGUF_VTYPE_COUNT) {
		PERR(r, "bad array element type %u at offset %zu", et, at);
		return -EINVAL;
	}
	if (n > rd_left(r) / vtype_min_bytes(et)) {
		PERR(r, "array length %llu at offset %zu exceeds what the %zu bytes left can hold",
		     (unsigned long long)n, at, rd_left(r));
		return -EINVAL;
	}
	v->arr_type = et;
	v->n = n;
	size_t es = gguf_vtype_size(et);
	if (es) {
		/* numeric / bool: one packed, aligned copy */
		void *d = arena_alloc(r->ctx, n ? (size_t)n * es : 1);
		if (!d)
			return -ENOMEM;
		if ((err = rd_bytes(r, d, (size_t)n * es, "array data")))
			return err;
		v->u.data = d;
		return 0;
	}
	struct gguf_val *el = arena_alloc(r->ctx, n ? (size_t)n * sizeof(*el) : 1);
	if (!el)
		return -ENOMEM;
	memset(el, 0, (size_t)n * sizeof(*el));
	v->u.elems = el;
	for (uint64_t i = 0; i < n; i++)
		if ((err = rd_value(r, et, depth + 1, &el[i])))
			return err;
	return 0;
}

static int rd_value(struct rd *r, uint32_t type, int depth, struct gguf_val *v)
{
	memset(v, 0, sizeof(*v));
	v->type = type;
	if (type == GGUF_VTYPE_STRING)
		return rd_string(r, "string", 0, false, &v->u.str, &v->n);
	if (type == GGUF_VTYPE_ARRAY)
		return rd_array(r, depth, v);
	size_t es = gguf_vtype_size(type);
	if (!es) {
		PERR(r, "bad value type %u before offset %zu", type, r->pos);
		return -EINVAL;
	}
	return rd_bytes(r, v->u.raw, es, "value");
}

static int rd_kvs(struct rd *r, struct gguf_ctx *ctx, uint64_t n_kv)
{
	int err;

	ctx->kv = calloc(n_kv ? n_kv : 1, sizeof(*ctx->kv));
	if (!ctx->kv)
		return -ENOMEM;
	for (uint64_t i = 0; i < n_kv; i++) {
		struct gguf_kv *kv = &ctx->kv[i];
		uint32_t type;

		snprintf(r->where, sizeof(r->where), "key #%llu: ", (unsigned long long)i);
		if ((err = rd_string(r, "key", 0, true, &kv->key, NULL)))
			return err;
		ctx->n_kv = (int64_t)i + 1;
		snprintf(r->where, sizeof(r->where), "key '%.*s': ", GGUF_MAX_NAME, kv->key);
		if ((err = rd_u32(r, &type, "value type")))
			return err;
		if (type >= GGUF_VTYPE_COUNT) {
			PERR(r, "bad value type %u at offset %zu", type, r->pos - 4);
			return -EINVAL;
		}
		if ((err = rd_value(r, type, 0, &kv->val)))
			return err;
	}
	r->where[0] = '\0';
	return 0;
}

// ---- tensor table

static int rd_tensor(struct rd *r, uint64_t i, struct gguf_tensor_info *t)
{
	uint32_t n_dims, dtype;
	int64_t nel = 1;
	int err;

	snprintf(r->where, sizeof(r->where), "tensor #%llu: ", (unsigned long long)i);
	if ((err = rd_string(r, "tensor name", GGUF_MAX_NAME, true, &t->name, NULL)))
		return err;
	snprintf(r->where, sizeof(r->where), "tensor '%s': ", t->name);
	if ((err = rd_u32(r, &n_dims, "n_dims")))
		return err;
	if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
		PERR(r, "n_dims %u at offset %zu is out of range 1..%d", n_dims, r->pos - 4, GGUF_MAX_DIMS);
		return -EINVAL;
	}
	t->n_dims = (int)n_dims;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (uint32_t d = 0; d < n_dims; d++) {
		uint64_t ne;
		if ((err = rd_u64(r, &ne, "ne")))
			return err;
		if (ne < 1 || ne > INT64_MAX) {
			PERR(r, "ne[%u] = %llu at offset %zu is out of range", d,
			     (unsigned long long)ne, r->pos - 8);
			return -EINVAL;
		}
		t->ne[d] = (int64_t)ne;
		if (__builtin_mul_overflow(nel, (int64_t)ne, &nel)) {
			PERR(r, "element count overflows at ne[%u] = %llu", d, (unsigned long long)ne);
			return -EINVAL;
		}
	}
	if ((err = rd_u32(r, &dtype, "dtype")))
		return err;
	const struct gguf_type_traits *tr = gguf_type_traits((int)dtype);
	if (!tr || !tr->is_weight) {
		PERR(r, "unsupported tensor type %s at offset %zu", gguf_dtype_name((int)dtype), r->pos - 4);
		return -EINVAL;
	}
	t->type = (enum gguf_dtype)dtype;
	if (t->ne[0] % tr->blck_size) {
		PERR(r, "ne[0] = %lld is not a multiple of the %s block size %lld",
		     (long long)t->ne[0], tr->name, (long long)tr->blck_size);
		return -EINVAL;
	}
	size_t row = gguf_row_size(t->type, t->ne[0]);
	if (__builtin_mul_overflow(row, (uint64_t)(nel / t->ne[0]), &t->nbytes)) {
		PERR(r, "byte size overflows (%lld elements of %s)", (long long)nel, tr->name);
		return -EINVAL;
	}
	return rd_u64(r, &t->offset, "data offset");
}

static int cmp_tensor_name(const void *a, const void *b, void *c)
{
	const struct gguf_ctx *ctx = c;
	return strcmp(ctx->tensors[*(const int64_t *)a].name, ctx->tensors[*(const int64_t *)b].name);
}

static int cmp_key(const void *a, const void *b, void *c)
{
	const struct gguf_ctx *ctx = c;
	return strcmp(ctx->kv[*(const int64_t *)a].key, ctx->kv[*(const int64_t *)b].key);
}

static int cmp_offset(const void *a, const void *b, void *c)
{
	const struct gguf_ctx *ctx = c;
	uint64_t x = ctx->tensors[*(const int64_t *)a].offset, y = ctx->tensors[*(const int64_t *)b].offset;
	return x < y ? -1 : x > y;
}

/* Sorted id array 0..n-1 by cmp. */
static int64_t *sorted_ids(struct gguf_ctx *ctx, int64_t n, int (*cmp)(const void *, const void *, void *))
{
	int64_t *ids = malloc((size_t)(n ? n : 1) * sizeof(*ids));

	if (!ids)
		return NULL;
	for (int64_t i = 0; i < n; i++)
		ids[i] = i;
	qsort_r(ids, (size_t)n, sizeof(*ids), cmp, ctx);
	return ids;
}

/* Names unique, keys unique. */
static int check_unique(struct rd *r, struct gguf_ctx *ctx)
{
	ctx->kv_sorted = sorted_ids(ctx, ctx->n_kv, cmp_key);
	ctx->tensor_sorted = sorted_ids(ctx, ctx->n_tensors, cmp_tensor_name);
	if (!ctx->kv_sorted || !ctx->tensor_sorted)
		return -ENOMEM;
	for (int64_t i = 1; i < ctx->n_kv; i++) {
		const char *k = ctx->kv[ctx->kv_sorted[i]].key;
		if (!strcmp(k, ctx->kv[ctx->kv_sorted[i - 1]].key)) {
			PERR(r, "duplicate key '%s'", k);
			return -EINVAL;
		}
	}
	for (int64_t i = 1; i < ctx->n_tensors; i++) {
		const char *k = ctx->tensors[ctx->tensor_sorted[i]].name;
		if (!strcmp(k, ctx->tensors[ctx->tensor_sorted[i - 1]].name)) {
			PERR(r, "duplicate tensor name '%s'", k);
			return -EINVAL;
		}
	}
	return 0;
}

/* general.alignment: optional, u32, a power of two. */
static int read_alignment(struct rd *r, struct gguf_ctx *ctx)
{
	int64_t id = gguf_find_key(ctx, "general.alignment");

	ctx->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (id < 0)
		return 0;
	const struct gguf_val *v = &ctx->kv[id].val;
	if (v->type != GGUF_VTYPE_UINT32) {
		PERR(r, "general.alignment has type %u, expected uint32 (%d)", v->type, GGUF_VTYPE_UINT32);
		return -EINVAL;
	}
	uint32_t a = v->u.u32;
	if (a == 0 || (a & (a - 1))) {
		PERR(r, "general.alignment = %u is not a power of two", a);
		return -EINVAL;
	}
	ctx->alignment = a;
	return 0;
}

/* Data offsets aligned, inside the file, not overlapping. */
static int check_data(struct rd *r, struct gguf_ctx *ctx)
{
	size_t a = ctx->alignment;
	size_t end = r->pos;

	ctx->data_offset = (end + a - 1) / a * a;
	if (ctx->n_tensors == 0)
		return 0;
	if (ctx->data_offset > ctx->size) {
		PERR(r, "file of %zu bytes ends before the data section at offset %zu",
		     ctx->size, ctx->data_offset);
		return -EINVAL;
	}
	size_t avail = ctx->size - ctx->data_offset;
	for (int64_t i = 0; i < ctx->n_tensors; i++) {
		struct gguf_tensor_info *t = &ctx->tensors[i];
		if (t->offset % a) {
			PERR(r, "tensor '%s': data offset %llu is not aligned to %zu", t->name,
			     (unsigned long long)t->offset, a);
			return -EINVAL;
		}
		if (t->offset > avail || t->nbytes > avail - t->offset) {
			PERR(r, "tensor '%s': data [%llu, +%zu) runs past the end of the file (data section %zu bytes)",
			     t->name, (unsigned long long)t->offset, t->nbytes, avail);
			return -EINVAL;
		}
		t->data = ctx->base + ctx->data_offset + t->offset;
	}
	int64_t *by_off = sorted_ids(ctx, ctx->n_tensors, cmp_offset);
	if (!by_off)
		return -ENOMEM;
	int err = 0;
	for (int64_t i = 1; i < ctx->n_tensors; i++) {
		const struct gguf_tensor_info *p = &ctx->tensors[by_off[i - 1]], *t = &ctx->tensors[by_off[i]];
		if (p->offset + p->nbytes > t->offset) {
			PERR(r, "tensors '%s' (offset %llu, %zu bytes) and '%s' (offset %llu) overlap",
			     p->name, (unsigned long long)p->offset, p->nbytes, t->name,
			     (unsigned long long)t->offset);
			err = -EINVAL;
			break;
		}
	}
	free(by_off);
	return err;
}

static int parse_header(struct rd *r, struct gguf_ctx *ctx)
{
	uint32_t magic;
	uint64_t n_tensors, n_kv;
	int err;

	if ((err = rd_u32(r, &magic, "magic")))
		return err;
	if (magic != GGUF_MAGIC) {
		PERR(r, "bad magic 0x%08x (expected 0x%08x \"GGUF\")", magic, GGUF_MAGIC);
		return -EINVAL;
	}
	if ((err = rd_u32(r, &ctx->version, "version")))
		return err;
	if (ctx->version != 2 && ctx->version != 3) {
		PERR(r, "unsupported version %u (2 and 3 are read%s)", ctx->version,
		     ctx->version > 0xffff ? "; big-endian file?" : "");
		return -EINVAL;
	}
	if ((err = rd_u64(r, &n_tensors, "n_tensors")) || (err = rd_u64(r, &n_kv, "n_kv")))
		return err;
	if (n_kv > rd_left(r) / MIN_KV_BYTES) {
		PERR(r, "n_kv = %llu exceeds what the %zu bytes left can hold",
		     (unsigned long long)n_kv, rd_left(r));
		return -EINVAL;
	}
	if (n_tensors > rd_left(r) / MIN_TENSOR_BYTES) {
		PERR(r, "n_tensors = %llu exceeds what the %zu bytes left can hold",
		     (unsigned long long)n_tensors, rd_left(r));
		return -EINVAL;
	}
	if ((err = rd_kvs(r, ctx, n_kv)))
		return err;
	if (n_tensors > rd_left(r) / MIN_TENSOR_BYTES) {
		PERR(r, "n_tensors = %llu exceeds what the %zu bytes left after the metadata can hold",
		     (unsigned long long)n_tensors, rd_left(r));
		return -EINVAL;
	}
	ctx->tensors = calloc(n_tensors ? n_tensors : 1, sizeof(*ctx->tensors));
	if (!ctx->tensors)
		return -ENOMEM;
	for (uint64_t i = 0; i < n_tensors; i++) {
		if ((err = rd_tensor(r, i, &ctx->tensors[i])))
			return err;
		ctx->n_tensors = (int64_t)i + 1;
	}
	r->where[0] = '\0';
	if ((err = check_unique(r, ctx)) || (err = read_alignment(r, ctx)))
		return err;
	return check_data(r, ctx);
}

static int open_common(const void *buf, size_t size, void *map, const char *src, struct gguf_ctx **out)
{
	struct gguf_ctx *ctx = calloc(1, sizeof(*ctx));
	struct rd r = { .p = buf, .size = size, .src = src, .ctx = ctx };
	int err;

	*out = NULL;
	if (!ctx) {
		if (map)
			munmap(map, size);
		return -ENOMEM;
	}
	ctx->base = buf;
	ctx->size = size;
	ctx->map = map;
	ctx->fd = -1;
	ctx->guard = -1;
	err = parse_header(&r, ctx);
	if (err == -ENOMEM)
		LOG_ERR("%s: out of memory while parsing the header", src);
	if (err) {
		gguf_free(ctx);
		return err;
	}
	*out = ctx;
	return 0;
}

/* Reads the whole file into fresh anonymous memory (gguf_open_copy). */
static int read_copy(int fd, const char *path, size_t size, void **out)
{
	void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t done = 0;

	if (map == MAP_FAILED) {
		LOG_ERR("cannot allocate %zu bytes for %s: %s", size, path, strerror(errno));
		return -ENOMEM;
	}
	while (done < size) {
		ssize_t n = pread(fd, (char *)map + done, size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;
			LOG_ERR("reading %s: %s at byte %zu of %zu", path,
				n < 0 ? strerror(errno) : "the file got shorter", done, size);
			munmap(map, size);
			return err;
		}
		done += (size_t)n;
	}
	mprotect(map, size, PROT_READ);
	*out = map;
	return 0;
}

static int open_path(const char *path, bool copy, struct gguf_ctx **out)
{
	struct stat st;
	void *map = NULL;
	int fd, err;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		LOG_ERR("cannot open %s: %s", path, strerror(errno));
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		LOG_ERR("cannot stat %s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > SIZE_MAX) {
		err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		LOG_ERR("%s: not a non-empty regular file (size %lld)", path, (long long)st.st_size);
		goto out_close;
	}
	if (copy) {
		if ((err = read_copy(fd, path, (size_t)st.st_size, &map)) < 0)
			goto out_close;
	} else {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			err = -errno;
			LOG_ERR("cannot map %s (%lld bytes): %s", path, (long long)st.st_size, strerror(errno));
			goto out_close;
		}
	}
	err = open_common(map, (size_t)st.st_size, map, path, out);
	if (err == 0 && !copy) {
		/* kept open: gguf_file_changed() compares it with st */
		(*out)->fd = fd;
		(*out)->st0 = st;
		(*out)->guard = gguf_guard_add(map, (size_t)st.st_size);
		return 0;
	}
out_close:
	close(fd);
	return err;
}

int gguf_open(const char *path, struct gguf_ctx **out)
{
	return open_path(path, false, out);
}

int gguf_open_copy(const char *path, struct gguf_ctx **out)
{
	return open_path(path, true, out);
}

int gguf_open_buffer(const void *buf, size_t size, struct gguf_ctx **out)
{
	*out = NULL;
	if (!buf && size) {
		LOG_ERR("NULL buffer of %zu bytes", size);
		return -EINVAL;
	}
	return open_common(buf ? buf : "", size, NULL, "<buffer>", out);
}

static void free_lazy(struct gguf_val *v)
{
	if (v->type != GGUF_VTYPE_ARRAY)
		return;
	free(atomic_load(&v->lazy));
	if (!gguf_vtype_size(v->arr_type) && v->u.elems)
		for (uint64_t i = 0; i < v->n; i++)
			free_lazy(&v->u.elems[i]);
}

void gguf_free(struct gguf_ctx *ctx)
{
	if (!ctx)
		return;
	if (ctx->kv)
		for (int64_t i = 0; i < ctx->n_kv; i++)
			free_lazy(&ctx->kv[i].val);
	free(ctx->kv);
	free(ctx->kv_sorted);
	free(ctx->tensors);
	free(ctx->tensor_sorted);
	arena_free(ctx->arena);
	gguf_guard_remove(ctx->guard);
	if (ctx->map)
		munmap(ctx->map, ctx->size);
	if (ctx->fd >= 0)
		close(ctx->fd);
	free(ctx);
}

// ---- header facts

uint32_t gguf_version(const struct gguf_ctx *ctx) { return ctx->version; }
size_t gguf_alignment(const struct gguf_ctx *ctx) { return ctx->alignment; }
size_t gguf_data_offset(const struct gguf_ctx *ctx) { return ctx->data_offset; }
size_t gguf_file_size(const struct gguf_ctx *ctx) { return ctx->size; }

int gguf_file_changed(const struct gguf_ctx *ctx, char *why, size_t cap)
{
	struct stat st;

	if (ctx->fd < 0)
		return 0;
	if (gguf_guard_faults(ctx->guard)) {
		snprintf(why, cap, "the model file was truncated (a read past its new end)");
		return 1;
	}
	if (fstat(ctx->fd, &st) < 0) {
		snprintf(why, cap, "the model file cannot be checked: %s", strerror(errno));
		return 1;
	}
	if (st.st_size != ctx->st0.st_size) {
		snprintf(why, cap, "the model file changed size (%lld -> %lld bytes)", (long long)ctx->st0.st_size,
			 (long long)st.st_size);
		return 1;
	}
	if (st.st_mtim.tv_sec != ctx->st0.st_mtim.tv_sec || st.st_mtim.tv_nsec != ctx->st0.st_mtim.tv_nsec) {
		snprintf(why, cap, "the model file was rewritten (modification time changed)");
		return 1;
	}
	return 0;
}

// ---- lookups (binary search over the sorted id arrays)

int64_t gguf_n_kv(const struct gguf_ctx *ctx) { return ctx->n_kv; }

int64_t gguf_find_key(const struct gguf_ctx *ctx, const char *key)
{
	if (!ctx->kv_sorted) { /* during parsing, before sorting */
		for (int64_t i = 0; i < ctx->n_kv; i++)
			if (!strcmp(ctx->kv[i].key, key))
				return i;
		return -1;
	}
	int64_t lo = 0, hi = ctx->n_kv;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ctx->kv[ctx->kv_sorted[mid]].key, key);
		if (c == 0)
			return ctx->kv_sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int64_t gguf_n_tensors(const struct gguf_ctx *ctx) { return ctx->n_tensors; }

int64_t gguf_find_tensor(const struct gguf_ctx *ctx, const char *name)
{
	int64_t lo = 0, hi = ctx->n_tensors;

	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ctx->tensors[ctx->tensor_sorted[mid]].name, name);
		if (c == 0)
			return ctx->tensor_sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

const struct gguf_tensor_info *gguf_get_tensor(const struct gguf_ctx *ctx, int64_t id)
{
	PF_ASSERT(id >= 0 && id < ctx->n_tensors);
	return &ctx->tensors[id];
}

