/*
 * dump.c — gguf_dump(): a gguf-dump-style description of a parsed file, for
 * `promptfs info --all`, debugging and tests.  Reads only through the public
 * getters and value handles.
 *
 *   GGUF v3: 26 keys, 291 tensors, alignment 32, data at 5947776, 491400064 bytes
 *   * 26 key/value pairs
 *       1: general.architecture                     str       = "qwen2"
 *      20: tokenizer.ggml.tokens                    [str;151936] = ["!", "\"", …]
 *   * 291 tensors
 *       1: token_embd.weight                  Q5_0   [896, 151936]   77.9 MiB  @0
 *
 * all_kv prints whole strings and arrays; otherwise strings are cut at 80
 * bytes and arrays at 8 elements.
 */
#include "gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define SHORT_STR 80
#define SHORT_ARR 8

static const char *vtype_name(enum gguf_vtype t)
{
	static const char *names[GGUF_VTYPE_COUNT] = {
		"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
	};
	return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "?";
}

/* A string, quoted, with control bytes and quotes escaped. */
static void put_str(FILE *f, const char *s, size_t len, bool all)
{
	size_t n = !all && len > SHORT_STR ? SHORT_STR : len;

	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
	if (n < len)
		fprintf(f, "…(%zu bytes)", len);
}

static void put_val(FILE *f, const struct gguf_val *v, bool all)
{
	enum gguf_vtype t = gguf_val_type(v);
	int64_t i;
	double d;
	size_t len;

	if (t == GGUF_VTYPE_STRING) {
		const char *s = gguf_val_str(v, &len);
		put_str(f, s, len, all);
	} else if (t == GGUF_VTYPE_ARRAY) {
		uint64_t n = gguf_val_arr_n(v);
		uint64_t shown = !all && n > SHORT_ARR ? SHORT_ARR : n;
		fputc('[', f);
		for (uint64_t k = 0; k < shown; k++) {
			const struct gguf_val *e = gguf_val_arr_get(v, k);
			if (k)
				fputs(", ", f);
			if (e)
				put_val(f, e, all);
		}
		if (shown < n)
			fputs(", …", f);
		fputc(']', f);
	} else if (t == GGUF_VTYPE_BOOL) {
		gguf_val_int(v, &i) == 0 ? fputs(i ? "true" : "false", f) : fputs("?", f);
	} else if (t == GGUF_VTYPE_FLOAT32 || t == GGUF_VTYPE_FLOAT64) {
		if (gguf_val_float(v, &d) == 0)
			fprintf(f, "%.9g", d);
	} else if (t == GGUF_VTYPE_UINT64) {
		if (gguf_val_int(v, &i) == 0)
			fprintf(f, "%" PRId64, i);
		else if (gguf_val_float(v, &d) == 0)
			fprintf(f, "%.0f", d);
	} else if (gguf_val_int(v, &i) == 0) {
		fprintf(f, "%" PRId64, i);
	}
}

static void put_kv(FILE *f, const struct gguf_ctx *ctx, int64_t id, bool all)
{
	const struct gguf_val *v = gguf_kv_val(ctx, id);
	char type[48];

	if (gguf_val_type(v) == GGUF_VTYPE_ARRAY)
		snprintf(type, sizeof(type), "[%s;%" PRIu64 "]", vtype_name(gguf_val_arr_type(v)),
			 gguf_val_arr_n(v));
	else
		snprintf(type, sizeof(type), "%s", vtype_name(gguf_val_type(v)));
	fprintf(f, "  %5" PRId64 ": %-44s %-12s = ", id + 1, gguf_kv_key(ctx, id), type);
	put_val(f, v, all);
	fputc('\n', f);
}

static void put_tensor(FILE *f, const struct gguf_ctx *ctx, int64_t id)
{
	const struct gguf_tensor_info *t = gguf_get_tensor(ctx, id);
	char shape[96];
	int n = snprintf(shape, sizeof(shape), "[%" PRId64, t->ne[0]);

	for (int d = 1; d < t->n_dims && n > 0 && (size_t)n < sizeof(shape); d++)
		n += snprintf(shape + n, sizeof(shape) - (size_t)n, ", %" PRId64, t->ne[d]);
	if (n > 0 && (size_t)n < sizeof(shape) - 1)
		snprintf(shape + n, sizeof(shape) - (size_t)n, "]");
	fprintf(f, "  %5" PRId64 ": %-34s %-5s %-18s %9.3f MiB  @%" PRIu64 "\n", id + 1, t->name,
		gguf_dtype_name(t->type), shape, (double)t->nbytes / (1024.0 * 1024.0), t->offset);
}

int gguf_dump(const struct gguf_ctx *ctx, void *FILE_stream, bool all_kv)
{
	FILE *f = FILE_stream;
	uint64_t total = 0;

	fprintf(f, "GGUF v%u: %" PRId64 " keys, %" PRId64 " tensors, alignment %zu, data at %zu, %zu bytes\n",
		gguf_version(ctx), gguf_n_kv(ctx), gguf_n_tensors(ctx), gguf_alignment(ctx),
		gguf_data_offset(ctx), gguf_file_size(ctx));
	fprintf(f, "* %" PRId64 " key/value pairs\n", gguf_n_kv(ctx));
	for (int64_t i = 0; i < gguf_n_kv(ctx); i++)
		put_kv(f, ctx, i, all_kv);
	fprintf(f, "* %" PRId64 " tensors\n", gguf_n_tensors(ctx));
	for (int64_t i = 0; i < gguf_n_tensors(ctx); i++) {
		put_tensor(f, ctx, i);
		total += gguf_get_tensor(ctx, i)->nbytes;
	}
	fprintf(f, "* tensor data: %" PRIu64 " bytes (%.2f MiB)\n", total, (double)total / (1024.0 * 1024.0));
	return ferror(f) ? -EIO : 0;
}
