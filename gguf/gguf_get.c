/*
 * gguf_get.c — typed metadata getters, value handles (nested arrays) and the
 * by-key conversions model code uses.  Typed getters assert the type: asking
 * for the wrong type is a caller bug, not bad input (callers that handle
 * arbitrary files check gguf_kv_type first or use the *_key / gguf_val_*
 * functions, which return -EINVAL instead).
 *
 * Conversions: gguf_val_int accepts every integer type (u64 above INT64_MAX
 * is out of range), bool as 0/1, and floats holding an integral value;
 * gguf_val_float accepts integers and floats, not bools.
 */
#include "gguf_internal.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

// ---- typed getters (assert the type: a mismatch is a caller bug)

static const struct gguf_val *kv_val_typed(const struct gguf_ctx *ctx, int64_t id, uint32_t type)
{
	PF_ASSERT(id >= 0 && id < ctx->n_kv);
	PF_ASSERT(ctx->kv[id].val.type == type);
	return &ctx->kv[id].val;
}

const char *gguf_kv_key(const struct gguf_ctx *ctx, int64_t id)
{
	PF_ASSERT(id >= 0 && id < ctx->n_kv);
	return ctx->kv[id].key;
}

enum gguf_vtype gguf_kv_type(const struct gguf_ctx *ctx, int64_t id)
{
	PF_ASSERT(id >= 0 && id < ctx->n_kv);
	return (enum gguf_vtype)ctx->kv[id].val.type;
}

const struct gguf_val *gguf_kv_val(const struct gguf_ctx *ctx, int64_t id)
{
	PF_ASSERT(id >= 0 && id < ctx->n_kv);
	return &ctx->kv[id].val;
}

uint8_t gguf_get_u8(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_UINT8)->u.u8; }
int8_t gguf_get_i8(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_INT8)->u.i8; }
uint16_t gguf_get_u16(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_UINT16)->u.u16; }
int16_t gguf_get_i16(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_INT16)->u.i16; }
uint32_t gguf_get_u32(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_UINT32)->u.u32; }
int32_t gguf_get_i32(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_INT32)->u.i32; }
uint64_t gguf_get_u64(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_UINT64)->u.u64; }
int64_t gguf_get_i64(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_INT64)->u.i64; }
float gguf_get_f32(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_FLOAT32)->u.f32; }
double gguf_get_f64(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_FLOAT64)->u.f64; }
bool gguf_get_bool(const struct gguf_ctx *ctx, int64_t id) { return kv_val_typed(ctx, id, GGUF_VTYPE_BOOL)->u.u8 != 0; }

const char *gguf_get_str(const struct gguf_ctx *ctx, int64_t id, size_t *len)
{
	const struct gguf_val *v = kv_val_typed(ctx, id, GGUF_VTYPE_STRING);

	if (len)
		*len = (size_t)v->n;
	return v->u.str;
}

enum gguf_vtype gguf_get_arr_type(const struct gguf_ctx *ctx, int64_t id)
{
	return (enum gguf_vtype)kv_val_typed(ctx, id, GGUF_VTYPE_ARRAY)->arr_type;
}

uint64_t gguf_get_arr_n(const struct gguf_ctx *ctx, int64_t id)
{
	return kv_val_typed(ctx, id, GGUF_VTYPE_ARRAY)->n;
}

const void *gguf_get_arr_data(const struct gguf_ctx *ctx, int64_t id)
{
	const struct gguf_val *v = kv_val_typed(ctx, id, GGUF_VTYPE_ARRAY);

	PF_ASSERT(gguf_vtype_size(v->arr_type) != 0);
	return v->u.data;
}

const char *gguf_get_arr_str(const struct gguf_ctx *ctx, int64_t id, uint64_t i, size_t *len)
{
	const struct gguf_val *v = kv_val_typed(ctx, id, GGUF_VTYPE_ARRAY);

	PF_ASSERT(v->arr_type == GGUF_VTYPE_STRING && i < v->n);
	if (len)
		*len = (size_t)v->u.elems[i].n;
	return v->u.elems[i].u.str;
}

// ---- value handles

enum gguf_vtype gguf_val_type(const struct gguf_val *v) { return (enum gguf_vtype)v->type; }

uint64_t gguf_val_arr_n(const struct gguf_val *v)
{
	return v->type == GGUF_VTYPE_ARRAY ? v->n : 0;
}

enum gguf_vtype gguf_val_arr_type(const struct gguf_val *v)
{
	PF_ASSERT(v->type == GGUF_VTYPE_ARRAY);
	return (enum gguf_vtype)v->arr_type;
}

/* Element i of an array; NULL when v is not an array, i is out of range or
 * (numeric arrays, first call) memory runs out. */
const struct gguf_val *gguf_val_arr_get(const struct gguf_val *v, uint64_t i)
{
	if (v->type != GGUF_VTYPE_ARRAY || i >= v->n)
		return NULL;
	size_t es = gguf_vtype_size(v->arr_type);
	if (!es)
		return &v->u.elems[i];
	struct gguf_val *el = atomic_load(&((struct gguf_val *)v)->lazy);
	if (!el) {
		struct gguf_val *fresh = calloc((size_t)v->n, sizeof(*fresh));
		if (!fresh)
			return NULL;
		for (uint64_t k = 0; k < v->n; k++) {
			fresh[k].type = v->arr_type;
			memcpy(fresh[k].u.raw, (const uint8_t *)v->u.data + k * es, es);
		}
		struct gguf_val *expect = NULL;
		if (atomic_compare_exchange_strong(&((struct gguf_val *)v)->lazy, &expect, fresh)) {
			el = fresh;
		} else {
			free(fresh); /* another thread won */
			el = expect;
		}
	}
	return &el[i];
}

int gguf_val_int(const struct gguf_val *v, int64_t *out)
{
	switch (v->type) {
	case GGUF_VTYPE_BOOL: *out = v->u.u8 != 0; return 0;
	case GGUF_VTYPE_UINT8: *out = v->u.u8; return 0;
	case GGUF_VTYPE_INT8: *out = v->u.i8; return 0;
	case GGUF_VTYPE_UINT16: *out = v->u.u16; return 0;
	case GGUF_VTYPE_INT16: *out = v->u.i16; return 0;
	case GGUF_VTYPE_UINT32: *out = v->u.u32; return 0;
	case GGUF_VTYPE_INT32: *out = v->u.i32; return 0;
	case GGUF_VTYPE_INT64: *out = v->u.i64; return 0;
	case GGUF_VTYPE_UINT64:
		if (v->u.u64 > INT64_MAX)
			return -EINVAL;
		*out = (int64_t)v->u.u64;
		return 0;
	case GGUF_VTYPE_FLOAT32:
	case GGUF_VTYPE_FLOAT64: {
		/* a float holding an integral value in range converts */
		double d = v->type == GGUF_VTYPE_FLOAT32 ? v->u.f32 : v->u.f64;
		if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (double)(int64_t)d)
			return -EINVAL;
		*out = (int64_t)d;
		return 0;
	}
	default:
		return -EINVAL;
	}
}

int gguf_val_float(const struct gguf_val *v, double *out)
{
	int64_t i;

	if (v->type == GGUF_VTYPE_BOOL || v->type == GGUF_VTYPE_STRING || v->type == GGUF_VTYPE_ARRAY)
		return -EINVAL;
	if (v->type == GGUF_VTYPE_FLOAT32) {
		*out = v->u.f32;
		return 0;
	}
	if (v->type == GGUF_VTYPE_FLOAT64) {
		*out = v->u.f64;
		return 0;
	}
	if (v->type == GGUF_VTYPE_UINT64) {
		*out = (double)v->u.u64;
		return 0;
	}
	if (gguf_val_int(v, &i))
		return -EINVAL;
	*out = (double)i;
	return 0;
}

const char *gguf_val_str(const struct gguf_val *v, size_t *len)
{
	if (v->type != GGUF_VTYPE_STRING)
		return NULL;
	if (len)
		*len = (size_t)v->n;
	return v->u.str;
}

// ---- by-key convenience for model code

int gguf_get_int_key(const struct gguf_ctx *ctx, const char *key, int64_t *out)
{
	int64_t id = gguf_find_key(ctx, key);

	if (id < 0)
		return -ENOENT;
	return gguf_val_int(&ctx->kv[id].val, out);
}

int gguf_get_float_key(const struct gguf_ctx *ctx, const char *key, double *out)
{
	int64_t id = gguf_find_key(ctx, key);

	if (id < 0)
		return -ENOENT;
	return gguf_val_float(&ctx->kv[id].val, out);
}

int gguf_get_bool_key(const struct gguf_ctx *ctx, const char *key, bool *out)
{
	int64_t id = gguf_find_key(ctx, key);
	int64_t i;

	if (id < 0)
		return -ENOENT;
	if (ctx->kv[id].val.type == GGUF_VTYPE_BOOL) {
		*out = ctx->kv[id].val.u.u8 != 0;
		return 0;
	}
	/* integers 0 / 1 are accepted as booleans; floats are not */
	if (ctx->kv[id].val.type == GGUF_VTYPE_FLOAT32 || ctx->kv[id].val.type == GGUF_VTYPE_FLOAT64 ||
	    gguf_val_int(&ctx->kv[id].val, &i) || (i != 0 && i != 1))
		return -EINVAL;
	*out = i != 0;
	return 0;
}

const char *gguf_get_str_key(const struct gguf_ctx *ctx, const char *key)
{
	int64_t id = gguf_find_key(ctx, key);

	if (id < 0 || ctx->kv[id].val.type != GGUF_VTYPE_STRING)
		return NULL;
	return ctx->kv[id].val.u.str;
}
