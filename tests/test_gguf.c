/*
 * test_gguf.c — the GGUF reader, writer and type table.
 *
 *  1. type table: every named dtype has traits matching quant.h's blocks.
 *  2. round trip: the writer writes every value type (scalars, strings,
 *     numeric and string arrays, nested arrays via copy_kv from a handcrafted
 *     file) and a tensor of every weight dtype, in memory and streamed in
 *     chunks, v2 and v3, alignment 32 and 64; the reader gives back exactly
 *     what went in, and both outputs are byte-identical.
 *  3. real files: stories260K and every vocab GGUF open, and the facts their
 *     README states hold; the real model ($PROMPTFS_MODEL) opens.
 *  4. corrupt files: one handcrafted file per failure stage; each is refused
 *     with -EINVAL and exactly one log line that names the bad value.
 *  5. robustness: a valid file truncated at every byte of its header region,
 *     and seeded random byte flips; the reader must never crash (run under
 *     -DPROMPTFS_SANITIZE=ON to have ASan/UBSan check every read).
 *
 * Run: ctest -R '^gguf$'  (or build/test_gguf directly).
 */
#include "gguf/gguf.h"
#include "gguf/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PROMPTFS_SHARED_DEFAULT
#define PROMPTFS_SHARED_DEFAULT "/work/shared" /* ctest sets $PROMPTFS_SHARED */
#endif

static int g_fail, g_checks;

#define CHECK(c)                                                                    \
	do {                                                                        \
		g_checks++;                                                         \
		if (!(c)) {                                                         \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
			g_fail++;                                                   \
		}                                                                   \
	} while (0)

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

// ---- byte builder for handcrafted files

struct bb {
	uint8_t *p;
	size_t n, cap;
};

static void bb_put(struct bb *b, const void *src, size_t n)
{
	if (b->cap - b->n < n) {
		b->cap = (b->cap + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
}
static void bb_u8(struct bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(struct bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(struct bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(struct bb *b, const char *s) { bb_u64(b, strlen(s)); bb_put(b, s, strlen(s)); }
static void bb_pad(struct bb *b, size_t a) { while (b->n % a) bb_u8(b, 0); }
static void bb_kv_u32(struct bb *b, const char *k, uint32_t v) { bb_str(b, k); bb_u32(b, GGUF_VTYPE_UINT32); bb_u32(b, v); }

static void bb_tensor(struct bb *b, const char *name, int n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
	bb_str(b, name);
	bb_u32(b, (uint32_t)n_dims);
	for (int i = 0; i < n_dims; i++)
		bb_u64(b, ne[i]);
	bb_u32(b, type);
	bb_u64(b, off);
}

// ---- log capture: pf_log lines go to a temp file we read back

static FILE *g_logf;

static void log_capture_begin(void)
{
	if (!g_logf && !(g_logf = tmpfile()))
		abort();
	if (ftruncate(fileno(g_logf), 0) != 0 || lseek(fileno(g_logf), 0, SEEK_SET) != 0)
		abort();
	pf_log_set_fd(fileno(g_logf));
}

/* Returns the captured text (static buffer) and restores stderr. */
static const char *log_capture_end(void)
{
	static char text[8192];
	ssize_t n = pread(fileno(g_logf), text, sizeof(text) - 1, 0);

	text[n > 0 ? n : 0] = '\0';
	pf_log_set_fd(2);
	return text;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static char *write_temp(const void *p, size_t n)
{
	static int seq;
	char *path = malloc(128);
	snprintf(path, 128, "/tmp/test_gguf.%d.%d.gguf", (int)getpid(), seq++);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		abort();
	return path;
}

static void *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *p = malloc(sz > 0 ? (size_t)sz : 1);
	*n = fread(p, 1, (size_t)sz, f);
	fclose(f);
	return p;
}

// ---- 1. type table

static void test_types(void)
{
	static const struct { int id; const char *name; int64_t blck; size_t size; } want[] = {
		{ GGUF_DTYPE_F32, "F32", 1, 4 }, { GGUF_DTYPE_F16, "F16", 1, 2 }, { GGUF_DTYPE_BF16, "BF16", 1, 2 },
		{ GGUF_DTYPE_Q4_0, "Q4_0", 32, 18 }, { GGUF_DTYPE_Q4_1, "Q4_1", 32, 20 },
		{ GGUF_DTYPE_Q5_0, "Q5_0", 32, 22 }, { GGUF_DTYPE_Q5_1, "Q5_1", 32, 24 },
		{ GGUF_DTYPE_Q8_0, "Q8_0", 32, 34 }, { GGUF_DTYPE_Q8_1, "Q8_1", 32, 36 },
		{ GGUF_DTYPE_Q2_K, "Q2_K", 256, 84 }, { GGUF_DTYPE_Q3_K, "Q3_K", 256, 110 },
		{ GGUF_DTYPE_Q4_K, "Q4_K", 256, 144 }, { GGUF_DTYPE_Q5_K, "Q5_K", 256, 176 },
		{ GGUF_DTYPE_Q6_K, "Q6_K", 256, 210 }, { GGUF_DTYPE_Q8_K, "Q8_K", 256, 292 },
	};
	int known = 0;

	/* sizes as ggml documents them (ggml-common.h), not read from our structs */
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct gguf_type_traits *t = gguf_type_traits(want[i].id);
		CHECK(t && !strcmp(t->name, want[i].name) && t->blck_size == want[i].blck && t->type_size == want[i].size);
		CHECK(!strcmp(gguf_dtype_name(want[i].id), want[i].name));
		CHECK(gguf_row_size((enum gguf_dtype)want[i].id, want[i].blck * 3) == want[i].size * 3);
	}
	for (int id = -2; id < GGUF_DTYPE_COUNT + 3; id++)
		known += gguf_type_traits(id) != NULL;
	CHECK(known == (int)(sizeof(want) / sizeof(want[0])));
	CHECK(!strcmp(gguf_dtype_name(17), "unknown(17)"));
	CHECK(gguf_type_traits(GGUF_DTYPE_Q8_K)->is_weight == false);
	CHECK(gguf_type_traits(GGUF_DTYPE_Q4_K)->is_weight && gguf_type_traits(GGUF_DTYPE_Q4_K)->is_quantized);
	CHECK(gguf_row_size(GGUF_DTYPE_Q4_K, 100) == 0); /* not a block multiple */
}

// ---- 2. round trip

static const int weight_types[] = {
	GGUF_DTYPE_F32, GGUF_DTYPE_F16, GGUF_DTYPE_BF16, GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1, GGUF_DTYPE_Q5_0,
	GGUF_DTYPE_Q5_1, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q2_K, GGUF_DTYPE_Q3_K, GGUF_DTYPE_Q4_K,
	GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q6_K,
};
#define N_WT ((int)(sizeof(weight_types) / sizeof(weight_types[0])))

/* A handcrafted file holding nested arrays (the writer has no nested setter;
 * it gets them through copy_kv): [[1,2,3],[4]] of i16, [["a","bc"],[]],
 * [[[7.5]]] of f64, and a string with an embedded NUL. */
static struct bb nested_source(void)
{
	struct bb b = { 0 };
	bb_u32(&b, GGUF_MAGIC); bb_u32(&b, 3); bb_u64(&b, 0); bb_u64(&b, 4);
	bb_str(&b, "n.i16"); bb_u32(&b, GGUF_VTYPE_ARRAY); bb_u32(&b, GGUF_VTYPE_ARRAY); bb_u64(&b, 2);
	bb_u32(&b, GGUF_VTYPE_INT16); bb_u64(&b, 3);
	for (int16_t v = 1; v <= 3; v++) bb_put(&b, &v, 2);
	bb_u32(&b, GGUF_VTYPE_INT16); bb_u64(&b, 1);
	int16_t four = -4; bb_put(&b, &four, 2);
	bb_str(&b, "n.str"); bb_u32(&b, GGUF_VTYPE_ARRAY); bb_u32(&b, GGUF_VTYPE_ARRAY); bb_u64(&b, 2);
	bb_u32(&b, GGUF_VTYPE_STRING); bb_u64(&b, 2); bb_str(&b, "a"); bb_str(&b, "bc");
	bb_u32(&b, GGUF_VTYPE_STRING); bb_u64(&b, 0);
	bb_str(&b, "n.deep"); bb_u32(&b, GGUF_VTYPE_ARRAY); bb_u32(&b, GGUF_VTYPE_ARRAY); bb_u64(&b, 1);
	bb_u32(&b, GGUF_VTYPE_ARRAY); bb_u64(&b, 1); bb_u32(&b, GGUF_VTYPE_FLOAT64); bb_u64(&b, 1);
	double d = 7.5; bb_put(&b, &d, 8);
	bb_str(&b, "n.nul"); bb_u32(&b, GGUF_VTYPE_STRING); bb_u64(&b, 3); bb_put(&b, "x\0y", 3);
	return b;
}

static void check_nested(const struct gguf_ctx *g)
{
	int64_t id = gguf_find_key(g, "n.i16"), x;
	double d;
	size_t len;

	CHECK(id >= 0 && gguf_kv_type(g, id) == GGUF_VTYPE_ARRAY && gguf_get_arr_type(g, id) == GGUF_VTYPE_ARRAY);
	if (id < 0)
		return;
	const struct gguf_val *v = gguf_kv_val(g, id);
	CHECK(gguf_val_arr_n(v) == 2 && gguf_val_arr_n(gguf_val_arr_get(v, 0)) == 3);
	CHECK(gguf_val_arr_type(gguf_val_arr_get(v, 1)) == GGUF_VTYPE_INT16);
	CHECK(gguf_val_int(gguf_val_arr_get(gguf_val_arr_get(v, 0), 2), &x) == 0 && x == 3);
	CHECK(gguf_val_int(gguf_val_arr_get(gguf_val_arr_get(v, 1), 0), &x) == 0 && x == -4);
	CHECK(gguf_val_arr_get(v, 2) == NULL);
	v = gguf_kv_val(g, gguf_find_key(g, "n.str"));
	CHECK(!strcmp(gguf_val_str(gguf_val_arr_get(gguf_val_arr_get(v, 0), 1), &len), "bc") && len == 2);
	CHECK(gguf_val_arr_n(gguf_val_arr_get(v, 1)) == 0);
	v = gguf_kv_val(g, gguf_find_key(g, "n.deep"));
	CHECK(gguf_val_float(gguf_val_arr_get(gguf_val_arr_get(gguf_val_arr_get(v, 0), 0), 0), &d) == 0 && d == 7.5);
	const char *s = gguf_get_str(g, gguf_find_key(g, "n.nul"), &len);
	CHECK(len == 3 && !memcmp(s, "x\0y", 4));
}

/* Fills a writer with every value type and one tensor per weight dtype. */
static void fill_writer(struct gguf_writer *w, const struct gguf_ctx *nested, uint8_t **data)
{
	uint8_t u8 = 200; int8_t i8 = -100; uint16_t u16 = 60000; int16_t i16 = -30000;
	int64_t i64 = -5000000000ll; double f64 = -1.25e300;
	static const uint8_t arr_u8[] = { 0, 1, 255 };
	static const int32_t arr_i32[] = { -1, 0, 2147483647 };
	static const float arr_f32[] = { 1.5f, -0.0f, 3e38f };
	static const uint64_t arr_u64[] = { 18446744073709551615ull };
	static const uint8_t arr_bool[] = { 1, 0, 1 };
	static const char *strs[] = { "", "hello", "ĠĠ ĠĠ", "<|im_end|>" };

	CHECK(gguf_writer_set_scalar(w, "v.u8", GGUF_VTYPE_UINT8, &u8) == 0);
	CHECK(gguf_writer_set_scalar(w, "v.i8", GGUF_VTYPE_INT8, &i8) == 0);
	CHECK(gguf_writer_set_scalar(w, "v.u16", GGUF_VTYPE_UINT16, &u16) == 0);
	CHECK(gguf_writer_set_scalar(w, "v.i16", GGUF_VTYPE_INT16, &i16) == 0);
	CHECK(gguf_writer_set_u32(w, "v.u32", 4000000000u) == 0);
	CHECK(gguf_writer_set_i32(w, "v.i32", -2000000000) == 0);
	CHECK(gguf_writer_set_f32(w, "v.f32", 0.1f) == 0);
	CHECK(gguf_writer_set_bool(w, "v.bool", true) == 0);
	CHECK(gguf_writer_set_str(w, "v.str", "temporary") == 0);
	CHECK(gguf_writer_set_str(w, "v.str", "{{ messages }}\n") == 0); /* replaces */
	CHECK(gguf_writer_set_u64(w, "v.u64", 18446744073709551615ull) == 0);
	CHECK(gguf_writer_set_scalar(w, "v.i64", GGUF_VTYPE_INT64, &i64) == 0);
	CHECK(gguf_writer_set_scalar(w, "v.f64", GGUF_VTYPE_FLOAT64, &f64) == 0);
	log_capture_begin();
	CHECK(gguf_writer_set_scalar(w, "v.bad", GGUF_VTYPE_STRING, &u8) == -EINVAL);
	CHECK(count_lines(log_capture_end()) == 1);
	CHECK(gguf_writer_set_arr_data(w, "a.u8", GGUF_VTYPE_UINT8, arr_u8, 3) == 0);
	CHECK(gguf_writer_set_arr_data(w, "a.i32", GGUF_VTYPE_INT32, arr_i32, 3) == 0);
	CHECK(gguf_writer_set_arr_data(w, "a.f32", GGUF_VTYPE_FLOAT32, arr_f32, 3) == 0);
	CHECK(gguf_writer_set_arr_data(w, "a.u64", GGUF_VTYPE_UINT64, arr_u64, 1) == 0);
	CHECK(gguf_writer_set_arr_data(w, "a.bool", GGUF_VTYPE_BOOL, arr_bool, 3) == 0);
	CHECK(gguf_writer_set_arr_data(w, "a.empty", GGUF_VTYPE_INT64, NULL, 0) == 0);
	CHECK(gguf_writer_set_arr_str(w, "a.str", strs, 4) == 0);
	CHECK(gguf_writer_copy_kv(w, nested, NULL, NULL) == 0);
	for (int i = 0; i < N_WT; i++) {
		const struct gguf_type_traits *t = gguf_type_traits(weight_types[i]);
		int64_t ne[3] = { t->blck_size * (i + 1), 3, i % 2 + 1 };
		size_t nb = gguf_row_size((enum gguf_dtype)weight_types[i], ne[0]) * (size_t)(ne[1] * ne[2]);
		char name[32];
		data[i] = malloc(nb);
		for (size_t k = 0; k < nb; k++)
			data[i][k] = (uint8_t)rnd();
		snprintf(name, sizeof(name), "t.%s", t->name);
		CHECK(gguf_writer_add_tensor(w, name, (enum gguf_dtype)weight_types[i], i % 2 ? 3 : 2, ne, NULL) == 0);
		CHECK(gguf_writer_set_tensor_data(w, name, data[i]) == 0);
	}
	/* refused additions */
	int64_t bad_ne[2] = { 33, 1 };
	log_capture_begin();
	CHECK(gguf_writer_add_tensor(w, "t.F32", GGUF_DTYPE_F32, 1, bad_ne, NULL) == -EINVAL);
	CHECK(gguf_writer_add_tensor(w, "t.bad", GGUF_DTYPE_Q4_0, 1, bad_ne, NULL) == -EINVAL);
	CHECK(gguf_writer_add_tensor(w, "t.q8k", GGUF_DTYPE_Q8_K, 1, (int64_t[]){ 256 }, NULL) == -EINVAL);
	CHECK(gguf_writer_add_tensor(w, "t.d5", GGUF_DTYPE_F32, 5, (int64_t[]){ 1, 1, 1, 1, 1 }, NULL) == -EINVAL);
	CHECK(gguf_writer_add_tensor(w, "t.\nx", GGUF_DTYPE_F32, 1, (int64_t[]){ 1 }, NULL) == -EINVAL);
	CHECK(gguf_writer_set_u32(w, "k\tx", 1) == -EINVAL && gguf_writer_set_u32(w, "", 1) == -EINVAL);
	CHECK(count_lines(log_capture_end()) == 7);
}

static void check_roundtrip(const struct gguf_ctx *g, uint8_t **data, size_t align, uint32_t version)
{
	int64_t x;
	double d;
	bool bl;
	size_t len;

	CHECK(gguf_version(g) == version && gguf_alignment(g) == align && gguf_data_offset(g) % align == 0);
	CHECK(gguf_get_u8(g, gguf_find_key(g, "v.u8")) == 200 && gguf_get_i8(g, gguf_find_key(g, "v.i8")) == -100);
	CHECK(gguf_get_u16(g, gguf_find_key(g, "v.u16")) == 60000 && gguf_get_i16(g, gguf_find_key(g, "v.i16")) == -30000);
	CHECK(gguf_get_u32(g, gguf_find_key(g, "v.u32")) == 4000000000u);
	CHECK(gguf_get_i32(g, gguf_find_key(g, "v.i32")) == -2000000000);
	CHECK(gguf_get_f32(g, gguf_find_key(g, "v.f32")) == 0.1f && gguf_get_bool(g, gguf_find_key(g, "v.bool")));
	CHECK(!strcmp(gguf_get_str(g, gguf_find_key(g, "v.str"), &len), "{{ messages }}\n") && len == 15);
	CHECK(gguf_get_u64(g, gguf_find_key(g, "v.u64")) == 18446744073709551615ull);
	CHECK(gguf_get_i64(g, gguf_find_key(g, "v.i64")) == -5000000000ll);
	CHECK(gguf_get_f64(g, gguf_find_key(g, "v.f64")) == -1.25e300);
	CHECK(gguf_find_key(g, "v.bad") == -1 && gguf_find_key(g, "absent") == -1);
	/* by-key conversions */
	CHECK(gguf_get_int_key(g, "v.u32", &x) == 0 && x == 4000000000ll);
	CHECK(gguf_get_int_key(g, "v.i8", &x) == 0 && x == -100);
	CHECK(gguf_get_int_key(g, "v.u64", &x) == -EINVAL);   /* above INT64_MAX */
	CHECK(gguf_get_int_key(g, "v.f32", &x) == -EINVAL);   /* 0.1 is not integral */
	CHECK(gguf_get_int_key(g, "v.str", &x) == -EINVAL && gguf_get_int_key(g, "absent", &x) == -ENOENT);
	CHECK(gguf_get_float_key(g, "v.f32", &d) == 0 && (float)d == 0.1f);
	CHECK(gguf_get_float_key(g, "v.i32", &d) == 0 && d == -2e9);
	CHECK(gguf_get_float_key(g, "a.u8", &d) == -EINVAL);
	CHECK(gguf_get_bool_key(g, "v.bool", &bl) == 0 && bl);
	CHECK(gguf_get_bool_key(g, "v.u32", &bl) == -EINVAL);
	CHECK(gguf_get_str_key(g, "v.u32") == NULL && gguf_get_str_key(g, "absent") == NULL);
	/* arrays */
	int64_t id = gguf_find_key(g, "a.i32");
	CHECK(gguf_get_arr_type(g, id) == GGUF_VTYPE_INT32 && gguf_get_arr_n(g, id) == 3);
	CHECK(((const int32_t *)gguf_get_arr_data(g, id))[2] == 2147483647);
	CHECK(gguf_val_int(gguf_val_arr_get(gguf_kv_val(g, id), 0), &x) == 0 && x == -1);
	id = gguf_find_key(g, "a.f32");
	CHECK(((const float *)gguf_get_arr_data(g, id))[2] == 3e38f);
	CHECK(((const uint8_t *)gguf_get_arr_data(g, gguf_find_key(g, "a.u8")))[2] == 255);
	CHECK(((const uint64_t *)gguf_get_arr_data(g, gguf_find_key(g, "a.u64")))[0] == 18446744073709551615ull);
	CHECK(!memcmp(gguf_get_arr_data(g, gguf_find_key(g, "a.bool")), "\1\0\1", 3));
	CHECK(gguf_get_arr_n(g, gguf_find_key(g, "a.empty")) == 0);
	id = gguf_find_key(g, "a.str");
	CHECK(gguf_get_arr_n(g, id) == 4 && !strcmp(gguf_get_arr_str(g, id, 0, &len), "") && len == 0);
	CHECK(!strcmp(gguf_get_arr_str(g, id, 2, &len), "ĠĠ ĠĠ"));
	check_nested(g);
	/* tensors */
	CHECK(gguf_n_tensors(g) == N_WT && gguf_find_tensor(g, "nope") == -1);
	for (int i = 0; i < N_WT; i++) {
		const struct gguf_type_traits *tt = gguf_type_traits(weight_types[i]);
		char name[32];
		snprintf(name, sizeof(name), "t.%s", tt->name);
		int64_t tid = gguf_find_tensor(g, name);
		CHECK(tid == i);
		if (tid < 0)
			continue;
		const struct gguf_tensor_info *t = gguf_get_tensor(g, tid);
		CHECK((int)t->type == weight_types[i] && t->n_dims == (i % 2 ? 3 : 2));
		CHECK(t->ne[0] == tt->blck_size * (i + 1) && t->ne[1] == 3 && t->ne[2] == (i % 2 ? 2 : 1) && t->ne[3] == 1);
		CHECK(t->offset % align == 0 && t->nbytes == gguf_row_size(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2]));
		CHECK(!memcmp(t->data, data[i], t->nbytes));
	}
}

static void test_roundtrip(void)
{
	struct bb nb = nested_source();
	struct gguf_ctx *nested = NULL, *g = NULL;
	uint8_t *data[N_WT];

	CHECK(gguf_open_buffer(nb.p, nb.n, &nested) == 0);
	if (!nested)
		return;
	check_nested(nested);
	for (int pass = 0; pass < 2; pass++) {
		size_t align = pass ? 64 : 32;
		uint32_t version = pass ? 2 : 3;
		struct gguf_writer *w = gguf_writer_init();
		char mem[64], streamed[64];
		snprintf(mem, sizeof(mem), "/tmp/test_gguf.%d.mem.gguf", (int)getpid());
		snprintf(streamed, sizeof(streamed), "/tmp/test_gguf.%d.stream.gguf", (int)getpid());
		gguf_writer_set_version(w, version);
		fill_writer(w, nested, data);
		if (pass)
			gguf_writer_set_alignment(w, align); /* after the adds: offsets re-laid */
		CHECK(gguf_writer_write(w, mem) == 0);
		/* streamed, each tensor in 1..3 chunks */
		CHECK(gguf_writer_stream_begin(w, streamed) == 0);
		for (int i = 0; i < N_WT; i++) {
			const struct gguf_type_traits *tt = gguf_type_traits(weight_types[i]);
			size_t n = gguf_row_size((enum gguf_dtype)weight_types[i], tt->blck_size * (i + 1)) * 3 * (size_t)(i % 2 + 1);
			size_t a = n / 3, b = n / 2;
			CHECK(gguf_writer_stream_tensor(w, data[i], a) == 0);
			CHECK(gguf_writer_stream_tensor(w, data[i] + a, b - a) == 0);
			CHECK(gguf_writer_stream_tensor(w, data[i] + b, n - b) == 0);
		}
		CHECK(gguf_writer_stream_end(w) == 0);
		size_t n1, n2;
		uint8_t *f1 = read_all(mem, &n1), *f2 = read_all(streamed, &n2);
		CHECK(f1 && f2 && n1 == n2 && !memcmp(f1, f2, n1) && n1 % align == 0);
		free(f1);
		free(f2);
		CHECK(gguf_open(mem, &g) == 0);
		if (g) {
			check_roundtrip(g, data, align, version);
			FILE *devnull = fopen("/dev/null", "w");
			CHECK(gguf_dump(g, devnull, true) == 0);
			fclose(devnull);
			/* copy_kv of a whole parsed file reproduces its KVs (minus alignment) */
			struct gguf_writer *w2 = gguf_writer_init();
			CHECK(gguf_writer_copy_kv(w2, g, NULL, NULL) == 0);
			CHECK(gguf_writer_write(w2, streamed) == 0);
			struct gguf_ctx *g2 = NULL;
			CHECK(gguf_open(streamed, &g2) == 0);
			CHECK(g2 && gguf_n_kv(g2) == gguf_n_kv(g) - (int64_t)pass && gguf_n_tensors(g2) == 0);
			if (g2)
				check_nested(g2);
			gguf_free(g2);
			gguf_writer_free(w2);
		}
		gguf_free(g);
		g = NULL;
		/* a stream that stops early is an error */
		log_capture_begin();
		CHECK(gguf_writer_stream_begin(w, streamed) == 0);
		CHECK(gguf_writer_stream_tensor(w, data[0], 10) == 0);
		CHECK(gguf_writer_stream_end(w) == -EINVAL);
		CHECK(count_lines(log_capture_end()) == 1);
		gguf_writer_free(w);
		for (int i = 0; i < N_WT; i++)
			free(data[i]);
		unlink(mem);
		unlink(streamed);
	}
	gguf_free(nested);
	free(nb.p);
}

// ---- 3. real files

static void test_real_files(void)
{
	const char *shared = getenv("PROMPTFS_SHARED");
	const char *model = getenv("PROMPTFS_MODEL");
	static const struct { const char *name; uint64_t n_tokens; } vocabs[] = {
		{ "qwen2", 151936 }, { "llama-bpe", 128256 }, { "gpt-2", 50257 },
		{ "llama-spm", 32000 }, { "phi-3", 32064 },
	};
	struct gguf_ctx *g = NULL;
	char path[4096];
	int64_t x;
	double d;

	if (!shared)
		shared = PROMPTFS_SHARED_DEFAULT;
	/* stories260K: the facts shared/models/README.md states */
	snprintf(path, sizeof(path), "%s/models/stories260K.gguf", shared);
	CHECK(gguf_open(path, &g) == 0);
	if (g) {
		CHECK(gguf_version(g) == 3 && gguf_n_tensors(g) == 48 && gguf_file_size(g) == 1185376);
		CHECK(!strcmp(gguf_get_str_key(g, "general.architecture"), "llama"));
		CHECK(gguf_get_int_key(g, "llama.block_count", &x) == 0 && x == 5);
		CHECK(gguf_get_int_key(g, "llama.embedding_length", &x) == 0 && x == 64);
		CHECK(gguf_get_int_key(g, "llama.feed_forward_length", &x) == 0 && x == 172);
		CHECK(gguf_get_int_key(g, "llama.attention.head_count", &x) == 0 && x == 8);
		CHECK(gguf_get_int_key(g, "llama.attention.head_count_kv", &x) == 0 && x == 4);
		CHECK(gguf_get_float_key(g, "llama.attention.layer_norm_rms_epsilon", &d) == 0 && fabs(d - 1e-5) < 1e-9);
		CHECK(gguf_get_int_key(g, "tokenizer.ggml.bos_token_id", &x) == 0 && x == 1);
		CHECK(gguf_get_int_key(g, "tokenizer.ggml.eos_token_id", &x) == 0 && x == 2);
		int64_t tok = gguf_find_key(g, "tokenizer.ggml.tokens");
		CHECK(tok >= 0 && gguf_get_arr_n(g, tok) == 512);
		CHECK(tok >= 0 && !strcmp(gguf_get_arr_str(g, tok, 3 + 0x41, NULL), "<0x41>"));
		CHECK(gguf_get_arr_n(g, gguf_find_key(g, "tokenizer.ggml.scores")) == 512);
		int64_t out = gguf_find_tensor(g, "output.weight");
		CHECK(out >= 0);
		size_t total = 0;
		for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
			CHECK(gguf_get_tensor(g, i)->type == GGUF_DTYPE_F32);
			total += gguf_get_tensor(g, i)->nbytes;
		}
		/* all F32, packed: the data section is the tensors plus alignment slack */
		CHECK(total <= gguf_file_size(g) - gguf_data_offset(g) &&
		      total + 48 * 32 >= gguf_file_size(g) - gguf_data_offset(g));
	}
	gguf_free(g);
	for (size_t i = 0; i < sizeof(vocabs) / sizeof(vocabs[0]); i++) {
		snprintf(path, sizeof(path), "%s/models/vocab/ggml-vocab-%s.gguf", shared, vocabs[i].name);
		g = NULL;
		CHECK(gguf_open(path, &g) == 0);
		if (!g)
			continue;
		int64_t tok = gguf_find_key(g, "tokenizer.ggml.tokens");
		CHECK(tok >= 0 && gguf_get_arr_n(g, tok) == vocabs[i].n_tokens && gguf_n_tensors(g) == 0);
		CHECK(gguf_get_str_key(g, "tokenizer.ggml.model") != NULL);
		gguf_free(g);
	}
	/* the real model (common.md: qwen2, 24 layers, C=896, …, separate Q8_0 output) */
	CHECK(model != NULL);
	g = NULL;
	CHECK(model && gguf_open(model, &g) == 0);
	if (g) {
		CHECK(!strcmp(gguf_get_str_key(g, "general.architecture"), "qwen2") && gguf_n_tensors(g) == 291);
		CHECK(gguf_get_int_key(g, "qwen2.block_count", &x) == 0 && x == 24);
		CHECK(gguf_get_int_key(g, "qwen2.embedding_length", &x) == 0 && x == 896);
		CHECK(gguf_get_int_key(g, "qwen2.feed_forward_length", &x) == 0 && x == 4864);
		int64_t o = gguf_find_tensor(g, "output.weight"), e = gguf_find_tensor(g, "token_embd.weight");
		CHECK(o >= 0 && gguf_get_tensor(g, o)->type == GGUF_DTYPE_Q8_0 && gguf_get_tensor(g, o)->ne[1] == 151936);
		CHECK(e >= 0 && gguf_get_tensor(g, e)->type == GGUF_DTYPE_Q5_0);
		CHECK(gguf_get_arr_n(g, gguf_find_key(g, "tokenizer.ggml.merges")) > 100000);
		CHECK(strstr(gguf_get_str_key(g, "tokenizer.chat_template"), "<|im_start|>") != NULL);
	}
	gguf_free(g);
}

// ---- 4. corrupt files, one per failure stage

enum bad {
	OK, BAD_MAGIC, BAD_VERSION, V1, TRUNC_KV, BAD_VTYPE, BIG_STRING, DIMS_OVERFLOW, NE0_BLOCK,
	MISALIGNED, OVERLAP, DUP_TENSOR, DUP_KEY, SHORT_DATA, BAD_ALIGN, ALIGN_TYPE, TOO_MANY_DIMS,
	TRUNC_TENSORS, HUGE_NKV, HUGE_NTENSORS, DEEP_ARRAY, ZERO_NE, UNKNOWN_DTYPE, ACT_DTYPE,
	EMPTY_KEY, LONG_NAME, HUGE_ARR, BAD_ARR_TYPE, NUL_IN_NAME, N_BAD
};

/* What the one log line must contain for each refusal. */
static const char *const bad_msg[N_BAD] = {
	[BAD_MAGIC] = "bad magic 0x58554747", [BAD_VERSION] = "unsupported version 4",
	[V1] = "unsupported version 1", [TRUNC_KV] = "key 'test.value': truncated reading value",
	[BAD_VTYPE] = "key 'test.value': bad value type 13", [BIG_STRING] = "string length 1099511627776",
	[DIMS_OVERFLOW] = "tensor 'a': element count overflows", [NE0_BLOCK] = "tensor 'b': ne[0] = 33",
	[MISALIGNED] = "tensor 'b': data offset 80 is not aligned to 32",
	[OVERLAP] = "'a' (offset 0, 64 bytes) and 'b' (offset 32) overlap",
	[DUP_TENSOR] = "duplicate tensor name 'a'", [DUP_KEY] = "duplicate key 'test.value'",
	[SHORT_DATA] = "tensor 'b': data [64, +18) runs past the end",
	[BAD_ALIGN] = "general.alignment = 48 is not a power of two",
	[ALIGN_TYPE] = "general.alignment has type 10", [TOO_MANY_DIMS] = "tensor 'a': n_dims 5",
	[TRUNC_TENSORS] = "tensor 'b': truncated reading ne at offset", [HUGE_NKV] = "n_kv = 1099511627776",
	[HUGE_NTENSORS] = "n_tensors = 1099511627776", [DEEP_ARRAY] = "nested deeper than 4",
	[ZERO_NE] = "tensor 'a': ne[1] = 0", [UNKNOWN_DTYPE] = "tensor 'a': unsupported tensor type unknown(17)",
	[ACT_DTYPE] = "unsupported tensor type Q8_K", [EMPTY_KEY] = "key #0: key length 0",
	[LONG_NAME] = "tensor name length 300", [HUGE_ARR] = "array length 1125899906842624",
	[BAD_ARR_TYPE] = "bad array element type 13", [NUL_IN_NAME] = "tensor #1: tensor name at offset 222 contains control byte 0x00",
};

static void build_kvs(struct bb *b, enum bad v)
{
	bb_str(b, v == EMPTY_KEY ? "" : "general.architecture");
	bb_u32(b, GGUF_VTYPE_STRING);
	bb_str(b, "test");
	if (v == ALIGN_TYPE) {
		bb_str(b, "general.alignment"); bb_u32(b, GGUF_VTYPE_UINT64); bb_u64(b, 32);
	} else {
		bb_kv_u32(b, "general.alignment", v == BAD_ALIGN ? 48 : 32);
	}
	bb_str(b, "test.tokens");
	bb_u32(b, GGUF_VTYPE_ARRAY);
	if (v == DEEP_ARRAY) {
		for (int i = 0; i < 5; i++) { bb_u32(b, GGUF_VTYPE_ARRAY); bb_u64(b, 1); }
		bb_u32(b, GGUF_VTYPE_UINT8); bb_u64(b, 1); bb_u8(b, 1);
	} else {
		bb_u32(b, v == BAD_ARR_TYPE ? 13 : GGUF_VTYPE_STRING);
		bb_u64(b, v == HUGE_ARR ? (1ull << 50) : 2);
		bb_str(b, "a");
		bb_str(b, "bc");
	}
	bb_str(b, "test.value");
	if (v == BIG_STRING) {
		bb_u32(b, GGUF_VTYPE_STRING); bb_u64(b, 1ull << 40); bb_put(b, "xyz", 3);
	} else if (v == TRUNC_KV) {
		bb_u32(b, GGUF_VTYPE_UINT32); bb_put(b, "\7\0", 2); /* file ends inside the value */
	} else {
		bb_u32(b, v == BAD_VTYPE ? 13 : GGUF_VTYPE_UINT32); bb_u32(b, 7);
	}
	if (v == DUP_KEY)
		bb_kv_u32(b, "test.value", 8);
}

/* magic, version, counts, 4 KVs, tensors a [8,2] F32 @0 and b [32] Q4_0 @64. */
static struct bb build(enum bad v)
{
	struct bb b = { 0 };
	uint64_t ne_a[5] = { 8, 2, 1, 1, 1 }, ne_b[1] = { v == NE0_BLOCK ? 33 : 32 };
	char long_name[301];

	bb_u32(&b, v == BAD_MAGIC ? 0x58554747 : GGUF_MAGIC);
	bb_u32(&b, v == BAD_VERSION ? 4 : v == V1 ? 1 : 3);
	bb_u64(&b, v == HUGE_NTENSORS ? (1ull << 40) : v == DUP_TENSOR ? 3 : 2);
	bb_u64(&b, v == HUGE_NKV ? (1ull << 40) : v == DUP_KEY ? 5 : 4);
	build_kvs(&b, v);
	if (v == TRUNC_KV)
		return b;
	if (v == DIMS_OVERFLOW)
		ne_a[0] = ne_a[1] = 1ull << 32;
	if (v == ZERO_NE)
		ne_a[1] = 0;
	memset(long_name, 'x', 300);
	long_name[300] = '\0';
	/* 4 dims when truncating the table, so the bytes left still pass the
	 * n_tensors bound and the cut is met by the cursor */
	bb_tensor(&b, v == LONG_NAME ? long_name : "a", v == TOO_MANY_DIMS ? 5 : v == TRUNC_TENSORS ? 4 : 2, ne_a,
		  v == UNKNOWN_DTYPE ? 17 : v == ACT_DTYPE ? GGUF_DTYPE_Q8_K : GGUF_DTYPE_F32, 0);
	if (v == NUL_IN_NAME) {
		bb_u64(&b, 3); bb_put(&b, "b\0c", 3);
	} else {
		bb_str(&b, "b");
	}
	bb_u32(&b, 1);
	if (v == TRUNC_TENSORS) {
		bb_put(&b, ne_b, 4); /* file ends inside ne[0] */
		return b;
	}
	bb_u64(&b, ne_b[0]); bb_u32(&b, GGUF_DTYPE_Q4_0);
	bb_u64(&b, v == MISALIGNED ? 80 : v == OVERLAP ? 32 : 64);
	if (v == DUP_TENSOR)
		bb_tensor(&b, "a", 1, ne_a, GGUF_DTYPE_F32, 96);
	bb_pad(&b, 32);
	size_t data = v == SHORT_DATA ? 70 : v == DUP_TENSOR ? 128 : 96;
	for (size_t i = 0; i < data; i++)
		bb_u8(&b, (uint8_t)i);
	return b;
}

static void test_corrupt(void)
{
	for (int v = 0; v < N_BAD; v++) {
		struct bb b = build((enum bad)v);
		uint8_t *exact = malloc(b.n); /* exact size: ASan sees any over-read */
		struct gguf_ctx *g = NULL;
		memcpy(exact, b.p, b.n);
		log_capture_begin();
		int rc = gguf_open_buffer(exact, b.n, &g);
		const char *log = log_capture_end();
		if (v == OK) {
			CHECK(rc == 0 && g && gguf_n_tensors(g) == 2 && log[0] == '\0');
			CHECK(g && ((const float *)gguf_get_tensor(g, 0)->data)[0] == *(const float *)"\0\1\2\3");
		} else {
			int lines = count_lines(log);
			bool named = strstr(log, bad_msg[v]) != NULL;
			CHECK(rc == -EINVAL && g == NULL);
			CHECK(lines == 1 && named);
			if (rc != -EINVAL || lines != 1 || !named)
				fprintf(stderr, "  case %d: rc %d, want '%s', log: %s\n", v, rc, bad_msg[v], log);
			/* the same through a real file: same refusal, path in the line */
			char *path = write_temp(b.p, b.n);
			log_capture_begin();
			CHECK(gguf_open(path, &g) == -EINVAL && g == NULL);
			log = log_capture_end();
			CHECK(count_lines(log) == 1 && strstr(log, path) && strstr(log, bad_msg[v]));
			unlink(path);
			free(path);
		}
		gguf_free(g);
		free(exact);
		free(b.p);
	}
	/* OS errors pass through as -errno */
	struct gguf_ctx *g = NULL;
	log_capture_begin();
	CHECK(gguf_open("/nonexistent/x.gguf", &g) == -ENOENT && !g);
	CHECK(gguf_open("/tmp", &g) == -EISDIR && !g);
	CHECK(gguf_open_buffer("", 0, &g) == -EINVAL && !g);
	CHECK(count_lines(log_capture_end()) == 3);
}

// ---- 5. truncation at every header byte, random byte flips

/* Touches everything a parsed file exposes (under ASan: proves it is in bounds). */
static void walk(const struct gguf_ctx *g, FILE *sink)
{
	volatile uint8_t acc = 0;

	gguf_dump(g, sink, false);
	for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
		const struct gguf_tensor_info *t = gguf_get_tensor(g, i);
		acc ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
	}
	(void)acc;
}

static void fuzz_file(const char *what, const uint8_t *file, size_t size, int n_flips)
{
	struct gguf_ctx *g = NULL;
	FILE *sink = fopen("/dev/null", "w");
	size_t header_end, data_end = 0;
	int ok = 0, refused = 0;

	CHECK(gguf_open_buffer(file, size, &g) == 0);
	if (!g)
		return;
	header_end = gguf_data_offset(g) < size ? gguf_data_offset(g) : size;
	for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
		const struct gguf_tensor_info *t = gguf_get_tensor(g, i);
		if (gguf_data_offset(g) + t->offset + t->nbytes > data_end)
			data_end = gguf_data_offset(g) + t->offset + t->nbytes;
	}
	gguf_free(g);
	for (size_t cut = 0; cut < header_end + 64 && cut < size; cut++) {
		uint8_t *p = malloc(cut ? cut : 1);
		memcpy(p, file, cut);
		log_capture_begin();
		int rc = gguf_open_buffer(p, cut, &g);
		int lines = count_lines(log_capture_end());
		CHECK(rc == -EINVAL || (rc == 0 && cut >= data_end));
		CHECK(lines == (rc ? 1 : 0)); /* each refusal: exactly one line */
		if (g)
			walk(g, sink);
		gguf_free(g);
		free(p);
	}
	uint8_t *p = malloc(size);
	memcpy(p, file, size);
	for (int it = 0; it < n_flips; it++) {
		int k = 1 + (int)(rnd() % 4);
		size_t at[4];
		uint8_t old[4];
		for (int j = 0; j < k; j++) {
			at[j] = rnd() % header_end;
			old[j] = p[at[j]];
			uint64_t r = rnd();
			p[at[j]] = r % 4 == 0 ? 0xff : r % 4 == 1 ? 0 : r % 4 == 2 ? (uint8_t)(old[j] ^ (1u << (r >> 8) % 8)) : (uint8_t)(r >> 16);
		}
		log_capture_begin();
		int rc = gguf_open_buffer(p, size, &g);
		int lines = count_lines(log_capture_end());
		CHECK(rc == 0 || rc == -EINVAL);
		CHECK(lines == (rc ? 1 : 0));
		if (lines != (rc ? 1 : 0))
			fprintf(stderr, "  flip: rc %d, %d lines: %s\n", rc, lines, log_capture_end());
		if (g) {
			walk(g, sink);
			ok++;
		} else {
			refused++;
		}
		gguf_free(g);
		for (int j = k - 1; j >= 0; j--)
			p[at[j]] = old[j];
	}
	printf("fuzz %s: %zu header bytes truncated; %d flips: %d parsed, %d refused\n", what, header_end + 64,
	       n_flips, ok, refused);
	free(p);
	fclose(sink);
}

static void test_fuzz(void)
{
	const char *shared = getenv("PROMPTFS_SHARED");
	char path[4096];
	size_t n;

	struct bb b = build(OK);
	fuzz_file("handcrafted", b.p, b.n, 20000);
	free(b.p);
	b = nested_source();
	fuzz_file("nested", b.p, b.n, 20000);
	free(b.p);
	snprintf(path, sizeof(path), "%s/models/stories260K.gguf", shared ? shared : PROMPTFS_SHARED_DEFAULT);
	uint8_t *f = read_all(path, &n);
	CHECK(f != NULL);
	if (f)
		fuzz_file("stories260K", f, n, 5000);
	free(f);
}

int main(void)
{
	test_types();
	test_roundtrip();
	test_real_files();
	test_corrupt();
	test_fuzz();
	printf("test_gguf: %d checks, %d failed\n", g_checks, g_fail);
	return g_fail ? 1 : 0;
}
