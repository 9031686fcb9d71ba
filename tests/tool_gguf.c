/*
 * tool_gguf.c — GGUF helper for test scripts, through our reader.
 *
 *   tool_gguf dump FILE [--all]     gguf_dump()
 *   tool_gguf layout FILE           one line per tensor: name type ne0 ne1 ne2 ne3
 *   tool_gguf same-shape SRC COPY   exit 0 iff COPY has every KV of SRC with an
 *                                   identical value (general.alignment aside) and
 *                                   the same tensors (name, type, shape, order);
 *                                   prints each difference
 *   tool_gguf differs SRC COPY      exit 0 iff every tensor's data differs
 *                                   between the two (random weights, not a copy)
 */
#include "gguf/gguf.h"

#include <stdio.h>
#include <string.h>

/* Deep equality of two values (any vtype, nested arrays). */
static bool val_eq(const struct gguf_val *a, const struct gguf_val *b)
{
	enum gguf_vtype t = gguf_val_type(a);
	size_t la, lb;
	int64_t ia, ib;
	double fa, fb;

	if (t != gguf_val_type(b))
		return false;
	if (t == GGUF_VTYPE_STRING) {
		const char *sa = gguf_val_str(a, &la), *sb = gguf_val_str(b, &lb);
		return la == lb && !memcmp(sa, sb, la);
	}
	if (t == GGUF_VTYPE_ARRAY) {
		if (gguf_val_arr_type(a) != gguf_val_arr_type(b) || gguf_val_arr_n(a) != gguf_val_arr_n(b))
			return false;
		for (uint64_t i = 0; i < gguf_val_arr_n(a); i++)
			if (!val_eq(gguf_val_arr_get(a, i), gguf_val_arr_get(b, i)))
				return false;
		return true;
	}
	if (t == GGUF_VTYPE_FLOAT32 || t == GGUF_VTYPE_FLOAT64)
		return gguf_val_float(a, &fa) == 0 && gguf_val_float(b, &fb) == 0 && !memcmp(&fa, &fb, sizeof(fa));
	if (gguf_val_int(a, &ia) == 0)
		return gguf_val_int(b, &ib) == 0 && ia == ib;
	return gguf_val_float(a, &fa) == 0 && gguf_val_float(b, &fb) == 0 && fa == fb; /* u64 > INT64_MAX */
}

static int same_shape(const struct gguf_ctx *a, const struct gguf_ctx *b)
{
	int diffs = 0;

	for (int64_t i = 0; i < gguf_n_kv(a); i++) {
		const char *k = gguf_kv_key(a, i);
		int64_t j = gguf_find_key(b, k);
		if (!strcmp(k, "general.alignment"))
			continue;
		if (j < 0 || !val_eq(gguf_kv_val(a, i), gguf_kv_val(b, j))) {
			printf("key %s: %s\n", k, j < 0 ? "missing" : "differs");
			diffs++;
		}
	}
	if (gguf_n_tensors(a) != gguf_n_tensors(b)) {
		printf("tensor count %lld vs %lld\n", (long long)gguf_n_tensors(a), (long long)gguf_n_tensors(b));
		diffs++;
	}
	for (int64_t i = 0; i < gguf_n_tensors(a) && i < gguf_n_tensors(b); i++) {
		const struct gguf_tensor_info *x = gguf_get_tensor(a, i), *y = gguf_get_tensor(b, i);
		if (strcmp(x->name, y->name) || x->type != y->type || x->n_dims != y->n_dims ||
		    memcmp(x->ne, y->ne, sizeof(x->ne))) {
			printf("tensor %lld: %s %s vs %s %s\n", (long long)i, x->name, gguf_dtype_name(x->type),
			       y->name, gguf_dtype_name(y->type));
			diffs++;
		}
	}
	printf("%d differences\n", diffs);
	return diffs ? 1 : 0;
}

static int differs(const struct gguf_ctx *a, const struct gguf_ctx *b)
{
	int same = 0;

	for (int64_t i = 0; i < gguf_n_tensors(a); i++) {
		const struct gguf_tensor_info *x = gguf_get_tensor(a, i);
		int64_t j = gguf_find_tensor(b, x->name);
		if (j < 0)
			continue;
		const struct gguf_tensor_info *y = gguf_get_tensor(b, j);
		if (x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes)) {
			printf("tensor %s: identical data\n", x->name);
			same++;
		}
	}
	return same ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct gguf_ctx *a = NULL, *b = NULL;
	int rc = 2;

	if (argc < 3 || gguf_open(argv[2], &a))
		goto usage;
	if (!strcmp(argv[1], "dump")) {
		rc = gguf_dump(a, stdout, argc > 3 && !strcmp(argv[3], "--all")) ? 1 : 0;
	} else if (!strcmp(argv[1], "layout")) {
		for (int64_t i = 0; i < gguf_n_tensors(a); i++) {
			const struct gguf_tensor_info *t = gguf_get_tensor(a, i);
			printf("%s %s %lld %lld %lld %lld\n", t->name, gguf_dtype_name(t->type), (long long)t->ne[0],
			       (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
		}
		rc = 0;
	} else if (argc == 4 && gguf_open(argv[3], &b) == 0) {
		if (!strcmp(argv[1], "same-shape"))
			rc = same_shape(a, b);
		else if (!strcmp(argv[1], "differs"))
			rc = differs(a, b);
	}
usage:
	if (rc == 2)
		fprintf(stderr, "usage: tool_gguf dump|layout FILE | same-shape|differs SRC COPY\n");
	gguf_free(a);
	gguf_free(b);
	return rc;
}
