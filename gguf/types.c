/*
 * types.c — the tensor-type table: block size and bytes per block of every
 * ggml type promptfs supports, its name, and row sizes.
 *
 * The table is indexed by the file's dtype id (ggml numbering, gguf.h) and
 * sized GGUF_DTYPE_COUNT; ids without an entry are unknown and every file
 * that uses one is refused.  Block sizes are tied to the struct layouts of
 * quant.h by static assertions, so a layout change cannot drift from the
 * sizes the reader validates against.
 */
#include "gguf.h"

#include <stdio.h>

#define T(nm, blck, size, q, w) { .name = nm, .blck_size = blck, .type_size = size, .is_quantized = q, .is_weight = w }

static const struct gguf_type_traits type_table[] = {
	[GGUF_DTYPE_F32] = T("F32", 1, sizeof(float), false, true),
	[GGUF_DTYPE_F16] = T("F16", 1, sizeof(gguf_half), false, true),
	[GGUF_DTYPE_Q4_0] = T("Q4_0", QK4_0, sizeof(struct block_q4_0), true, true),
	[GGUF_DTYPE_Q4_1] = T("Q4_1", QK4_1, sizeof(struct block_q4_1), true, true),
	[GGUF_DTYPE_Q5_0] = T("Q5_0", QK5_0, sizeof(struct block_q5_0), true, true),
	[GGUF_DTYPE_Q5_1] = T("Q5_1", QK5_1, sizeof(struct block_q5_1), true, true),
	[GGUF_DTYPE_Q8_0] = T("Q8_0", QK8_0, sizeof(struct block_q8_0), true, true),
	[GGUF_DTYPE_Q8_1] = T("Q8_1", QK8_1, sizeof(struct block_q8_1), true, false),
	[GGUF_DTYPE_Q2_K] = T("Q2_K", QK_K, sizeof(struct block_q2_K), true, true),
	[GGUF_DTYPE_Q3_K] = T("Q3_K", QK_K, sizeof(struct block_q3_K), true, true),
	[GGUF_DTYPE_Q4_K] = T("Q4_K", QK_K, sizeof(struct block_q4_K), true, true),
	[GGUF_DTYPE_Q5_K] = T("Q5_K", QK_K, sizeof(struct block_q5_K), true, true),
	[GGUF_DTYPE_Q6_K] = T("Q6_K", QK_K, sizeof(struct block_q6_K), true, true),
	[GGUF_DTYPE_Q8_K] = T("Q8_K", QK_K, sizeof(struct block_q8_K), true, false),
	[GGUF_DTYPE_BF16] = T("BF16", 1, sizeof(gguf_bf16), false, true),
	/* 39 is the last id the lookup covers; it has no type (keeps the size). */
	[GGUF_DTYPE_COUNT - 1] = { 0 },
};

#undef T

/* The table must span exactly the id range of the enum, and every named
 * enum value must fall inside it. */
_Static_assert(sizeof(type_table) / sizeof(type_table[0]) == GGUF_DTYPE_COUNT,
	       "type_table must cover every dtype id below GGUF_DTYPE_COUNT");
_Static_assert(GGUF_DTYPE_BF16 < GGUF_DTYPE_COUNT, "BF16 id inside the table");
_Static_assert(GGUF_DTYPE_Q8_K < GGUF_DTYPE_COUNT, "Q8_K id inside the table");
_Static_assert(sizeof(gguf_half) == 2 && sizeof(gguf_bf16) == 2 && sizeof(float) == 4,
	       "scalar element sizes");

const struct gguf_type_traits *gguf_type_traits(int dtype)
{
	if (dtype < 0 || dtype >= GGUF_DTYPE_COUNT || !type_table[dtype].name)
		return NULL;
	return &type_table[dtype];
}

const char *gguf_dtype_name(int dtype)
{
	static _Thread_local char buf[32];
	const struct gguf_type_traits *t = gguf_type_traits(dtype);

	if (t)
		return t->name;
	snprintf(buf, sizeof(buf), "unknown(%d)", dtype);
	return buf;
}

/* 0 when the type is unknown or n is negative or not a multiple of the
 * block size (callers validating untrusted shapes check before). */
size_t gguf_row_size(enum gguf_dtype type, int64_t n)
{
	const struct gguf_type_traits *t = gguf_type_traits((int)type);

	if (!t || n < 0 || n % t->blck_size != 0)
		return 0;
	return (size_t)(n / t->blck_size) * t->type_size;
}
