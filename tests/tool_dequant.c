/*
 * tool_dequant.c — exposes gguf/quant.c to tests/test_quant.py, which
 * compares it with the `gguf` Python package.
 *
 *   tool_dequant dequant TYPE IN OUT   blocks of TYPE → f32
 *   tool_dequant quant   TYPE IN OUT   f32 → blocks of TYPE
 *   tool_dequant h2f  - IN OUT         u16 halves → f32
 *   tool_dequant f2h  - IN OUT         f32 → u16 halves
 *   tool_dequant bf2f - IN OUT         u16 bfloat16 → f32
 *   tool_dequant f2bf - IN OUT         f32 → u16 bfloat16
 *   tool_dequant act  TYPE IN OUT      f32 → TYPE by cpu_quantize_act (the
 *                                      CPU matmul's activation quantiser)
 * TYPE is a name as gguf_dtype_name prints it ("Q4_K").  Files are raw
 * little-endian arrays; the element count follows from IN's size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/cpu.h"
#include "gguf/gguf.h"

static int find_type(const char *name)
{
	for (int t = 0; t < GGUF_DTYPE_COUNT; t++) {
		const struct gguf_type_traits *tr = gguf_type_traits(t);
		if (tr && strcmp(tr->name, name) == 0)
			return t;
	}
	return -1;
}

static void *read_all(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	void *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto close_file;
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	*size = (size_t)n;
close_file:
	fclose(f);
	return buf;
}

static int write_all(const char *path, const void *buf, size_t size)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -errno;
	size_t w = fwrite(buf, 1, size, f);
	if (fclose(f) != 0 || w != size)
		return -EIO;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s dequant|quant|act|h2f|f2h|bf2f|f2bf TYPE|- IN OUT\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	size_t in_size = 0, out_size = 0;
	void *in = read_all(argv[3], &in_size), *out = NULL;
	int rc = 1;

	if (!in) {
		fprintf(stderr, "cannot read %s\n", argv[3]);
		return 1;
	}
	if (!strcmp(mode, "h2f") || !strcmp(mode, "bf2f")) {
		size_t n = in_size / 2;
		float *y = out = malloc(n * sizeof(float) + 1);
		for (size_t i = 0; y && i < n; i++) {
			uint16_t h = ((const uint16_t *)in)[i];
			y[i] = mode[0] == 'h' ? gguf_half_to_f32(h) : gguf_bf16_to_f32(h);
		}
		out_size = n * sizeof(float);
		rc = y ? 0 : 1;
	} else if (!strcmp(mode, "f2h") || !strcmp(mode, "f2bf")) {
		size_t n = in_size / 4;
		uint16_t *y = out = malloc(n * 2 + 1);
		for (size_t i = 0; y && i < n; i++) {
			float f = ((const float *)in)[i];
			y[i] = mode[2] == 'h' ? gguf_f32_to_half(f) : gguf_f32_to_bf16(f);
		}
		out_size = n * 2;
		rc = y ? 0 : 1;
	} else {
		int type = find_type(argv[2]);
		const struct gguf_type_traits *tr = gguf_type_traits(type);
		if (!tr) {
			fprintf(stderr, "unknown type %s\n", argv[2]);
			goto free_in;
		}
		if (!strcmp(mode, "dequant")) {
			int64_t n = (int64_t)(in_size / tr->type_size) * tr->blck_size;
			out_size = (size_t)n * sizeof(float);
			out = malloc(out_size + 1);
			rc = out && gguf_dequantize_row(type, in, out, n) == 0 ? 0 : 1;
		} else if (!strcmp(mode, "quant") || !strcmp(mode, "act")) {
			int64_t n = (int64_t)(in_size / 4);
			out_size = gguf_row_size(type, n);
			out = malloc(out_size + 1);
			if (out && mode[0] == 'q')
				rc = gguf_quantize_row(type, in, out, n) == 0 ? 0 : 1;
			else if (out)
				cpu_quantize_act(type, in, out, n), rc = 0;
		} else {
			fprintf(stderr, "unknown mode %s\n", mode);
		}
	}
	if (rc == 0 && write_all(argv[4], out, out_size) != 0) {
		fprintf(stderr, "cannot write %s\n", argv[4]);
		rc = 1;
	}
	free(out);
free_in:
	free(in);
	return rc;
}
